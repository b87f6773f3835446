"""Round trips of the ATP's control channels, each against virsh in the same run.

One libvirt domain (TCG) boots from the default CargoBay image; then, alternating sides
so load changes hit both:

1. QMP ``query-status``: through the host pool (``LibvirtQmp``: one shared libvirt
   connection, ``qemuMonitorCommand``) against ``virsh qemu-monitor-command`` run once per
   call (what scripts do), and against one long-lived ``virsh`` shell fed the same
   command on stdin (virsh's best case: its connection is open too).
2. QGA ``guest-exec`` of ``true`` until ``guest-exec-status`` says it exited: through the
   pool (``LibvirtQga.run``) against the same two virsh forms (``qemu-agent-command``
   guest-exec, then guest-exec-status until exited).
3. Spice: from TCP connect to MAIN_INIT, and to every listed channel linked, against the
   domain's Spice server (QEMU's, configured by libvirt, with a password).  No headless
   Spice client exists to compare with; these are reported as measured.

Each over ``qemu:///system`` and ``qemu+tcp://127.0.0.1/system``.  The report gives
p50/p99 per side and the ratio of the p50s (pool / virsh).  Results go to
bench/results/vmcontrol_rtt-*.json.  Needs root and libvirtd (started like the tests do
when it is not running: tests/integration/libvirt_env.py).

    .venv/bin/python bench/vmcontrol_rtt.py [--calls 200] [--virsh-calls 30] [--spice 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cargobay.images import ImageStore, build_image  # noqa: E402
from cargobay.paths import Paths  # noqa: E402
from cargobay.vmcontrol.config import HostInfo, TransportConfig  # noqa: E402
from cargobay.vmcontrol.domains import (  # noqa: E402
    SpiceGraphics,
    destroy_domain,
    start_image_domain,
)
from cargobay.vmcontrol.libvirt_channels import LibvirtQga, LibvirtQmp  # noqa: E402
from cargobay.vmcontrol.manager import TransportManager  # noqa: E402
from cargobay.vmcontrol.spice.client import probe  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PASSWORD = "bench-pw"
QUERY_STATUS = '{"execute":"query-status"}'
MARK = "__cargobay_bench_end__"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(pct(samples, 0.5) * 1000, 3),
        "p99_ms": round(pct(samples, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(samples) * 1000, 3),
    }


class VirshShell:
    """One ``virsh`` process for many commands; ``echo MARK`` ends each answer."""

    def __init__(self, uri: str) -> None:
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", "virsh", "-q", "-c", uri],  # line-buffered: answers as they come
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )

    def run(self, command: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        # virsh flushes a command's output when it prompts for the next one: the second
        # (local, no RPC) echo makes it print the marker now
        self.proc.stdin.write(f"{command}\necho {MARK}\necho\n")
        self.proc.stdin.flush()
        lines = []
        # the marker comes out as "MARK" directly followed by the next prompt
        while (line := self.proc.stdout.readline()) and not line.startswith(MARK):
            lines.append(line)
        if not line:
            raise RuntimeError(f"virsh ended: {''.join(lines)}")
        return "".join(lines)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def virsh_once(uri: str, *args: str) -> str:
    done = subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"virsh {args[0]}: {done.stderr.strip()}")
    return done.stdout


def _json_in(text: str) -> Any:
    """The JSON answer in virsh's output (the shell adds prompts and echo lines)."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON answer in virsh output: {text!r}")


def qga_exec_true(call: Any) -> None:
    """guest-exec true, then guest-exec-status until exited, through ``call(json)``."""
    started = _json_in(call(json.dumps({"execute": "guest-exec", "arguments": {
        "path": "true", "capture-output": True}})))  # fmt: skip
    pid = started["return"]["pid"]
    delay = 0.001
    while True:
        status = _json_in(call(json.dumps(
            {"execute": "guest-exec-status", "arguments": {"pid": pid}})))  # fmt: skip
        if status["return"]["exited"]:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


async def measure_host(
    uri: str, domain_name: str, manager: TransportManager, host_id: str, args: argparse.Namespace
) -> dict[str, Any]:
    host = await manager.get_libvirt_connection(host_id)
    qmp = await LibvirtQmp.open(host, domain_name)
    qga = await LibvirtQga.open(host, domain_name, timeout=10)
    shell = VirshShell(uri)
    out: dict[str, dict[str, list[float]]] = {
        "qmp": {"pool": [], "virsh_shell": [], "virsh_per_call": []},
        "qga": {"pool": [], "virsh_shell": [], "virsh_per_call": []},
    }
    try:
        # warm-up: first calls pay for lookups and caches on every side
        await qmp.query_status()
        await qga.run(["true"])
        shell.run(f"qemu-monitor-command {domain_name} '{QUERY_STATUS}'")
        for i in range(args.calls):
            t = time.perf_counter()
            await qmp.query_status()
            out["qmp"]["pool"].append(time.perf_counter() - t)
            t = time.perf_counter()
            shell.run(f"qemu-monitor-command {domain_name} '{QUERY_STATUS}'")
            out["qmp"]["virsh_shell"].append(time.perf_counter() - t)
            if i < args.virsh_calls:
                t = time.perf_counter()
                virsh_once(uri, "qemu-monitor-command", domain_name, QUERY_STATUS)
                out["qmp"]["virsh_per_call"].append(time.perf_counter() - t)
        for i in range(args.qga_calls):
            t = time.perf_counter()
            result = await qga.run(["true"])
            out["qga"]["pool"].append(time.perf_counter() - t)
            assert result.exit_code == 0
            t = time.perf_counter()
            qga_exec_true(lambda c: shell.run(f"qemu-agent-command {domain_name} '{c}'"))
            out["qga"]["virsh_shell"].append(time.perf_counter() - t)
            if i < args.virsh_calls:
                t = time.perf_counter()
                qga_exec_true(lambda c: virsh_once(uri, "qemu-agent-command", domain_name, c))
                out["qga"]["virsh_per_call"].append(time.perf_counter() - t)
    finally:
        shell.close()
        await qmp.close()
    report: dict[str, Any] = {}
    for channel, sides in out.items():
        report[channel] = {side: summary(samples) for side, samples in sides.items()}
        pool = report[channel]["pool"]["p50_ms"]
        report[channel]["ratio_pool_vs_virsh_shell"] = round(
            pool / report[channel]["virsh_shell"]["p50_ms"], 3
        )
        report[channel]["ratio_pool_vs_virsh_per_call"] = round(
            pool / report[channel]["virsh_per_call"]["p50_ms"], 3
        )
    return report


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from tests.integration.libvirt_env import LibvirtEnv

    paths = Paths.from_env()
    build_image(paths, "default", progress=lambda e: None)
    store = ImageStore(paths.images)
    env = LibvirtEnv.start()
    manager = TransportManager(TransportConfig())
    uris = {"unix": env.local_uri, "tcp": env.tcp_uri}
    try:
        for host_id, uri in uris.items():
            await manager.add_host(HostInfo(id=host_id, uri=uri), require=True)
        host = await manager.get_libvirt_connection("unix")
        name = f"cb-bench-{uuid.uuid4().hex[:6]}"
        domain, info = await start_image_domain(
            host,
            store.path("default"),
            store.get("default"),
            name,
            display="vga",
            spice=SpiceGraphics(password=PASSWORD),
        )
        try:
            qga = await LibvirtQga.open(host, name, timeout=3)
            deadline = time.monotonic() + 180
            while True:
                try:
                    await qga.ping(timeout=2)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
            result: dict[str, Any] = {"calls": args.calls, "virsh_calls": args.virsh_calls}
            for host_id, uri in uris.items():
                print(f"measuring over {uri} ...", file=sys.stderr)
                result[host_id] = await measure_host(uri, name, manager, host_id, args)
            assert info.spice_port is not None
            main_init, all_linked, connect = [], [], []
            for _ in range(args.spice):
                probed = await probe("127.0.0.1", info.spice_port, PASSWORD)
                connect.append(probed.tcp_connect_ms / 1000)
                main_init.append(probed.main_init_at_ms / 1000)
                all_linked.append(probed.all_linked_at_ms / 1000)
            result["spice"] = {
                "tcp_connect": summary(connect),
                "connect_to_main_init": summary(main_init),
                "connect_to_all_channels_linked": summary(all_linked),
                "channels": probed.channels,
            }
        finally:
            await destroy_domain(host, domain)
    finally:
        await manager.close()
        env.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="QMP calls per side")
    parser.add_argument("--qga-calls", type=int, default=60, help="QGA exec runs per side")
    parser.add_argument("--virsh-calls", type=int, default=30, help="per-call virsh runs")
    parser.add_argument("--spice", type=int, default=20, help="Spice probes")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (libvirtd, qemu:///system)", file=sys.stderr)
        return 2
    result = asyncio.run(main_async(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"vmcontrol_rtt-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    for host_id in ("unix", "tcp"):
        for channel in ("qmp", "qga"):
            r = result[host_id][channel]
            print(
                f"{host_id:4s} {channel}: pool p50 {r['pool']['p50_ms']:.2f} ms "
                f"p99 {r['pool']['p99_ms']:.2f} | virsh shell p50 "
                f"{r['virsh_shell']['p50_ms']:.2f} p99 {r['virsh_shell']['p99_ms']:.2f} | "
                f"virsh per call p50 {r['virsh_per_call']['p50_ms']:.2f} | ratio "
                f"{r['ratio_pool_vs_virsh_shell']:.2f}x shell, "
                f"{r['ratio_pool_vs_virsh_per_call']:.3f}x per call"
            )
    s = result["spice"]
    print(
        f"spice: tcp connect p50 {s['tcp_connect']['p50_ms']:.2f} ms, to MAIN_INIT p50 "
        f"{s['connect_to_main_init']['p50_ms']:.2f} ms (p99 "
        f"{s['connect_to_main_init']['p99_ms']:.2f}), all {len(s['channels'])} channels "
        f"linked p50 {s['connect_to_all_channels_linked']['p50_ms']:.2f} ms"
    )
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
