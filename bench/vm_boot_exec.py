"""Boot and exec benchmarks of the main job, each against a peer measured in the same run.

1. boot: a cold ``cargobay run --rm -- true`` (the CLI against a running cargobayd, the
   default image already built: create, boot to the guest agent, exec, remove) against
   plain QEMU booting the same kernel, initramfs and rootfs with the same devices straight
   into a ``python3`` init that prints a marker and powers off.  Goal: <= 1.15x.
2. exec: the round trip of ``true`` through the cargobay guest agent (AgentClient.exec)
   against qemu-ga's guest-exec + guest-exec-status, both from the host over their
   virtio-serial ports of the same running VM.  qemu-ga has no exit notification, so
   its time depends on how the client polls; two clients are measured: a backing-off
   poll (1 ms, doubling to 50 ms, what a careful client does) and a tight poll (status
   requests back to back: qemu-ga's best case).  Goal: <= 0.5x.

Runs alternate between the two sides, so load changes hit both; the report is medians
and their ratios.  Results go to bench/results/vm_boot_exec.json.

    .venv/bin/python bench/vm_boot_exec.py [--boots 5] [--execs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cargobay.guest.client import wait_ready
from cargobay.hypervisors import VMSpec
from cargobay.hypervisors.accel import tcg_kernel_params
from cargobay.hypervisors.qemu import QemuHypervisor
from cargobay.hypervisors.qemu_cmdline import QemuOptions, build_argv
from cargobay.images import ImageStore, build_image
from cargobay.paths import Paths
from cargobay.vmcontrol.qga import QgaClient

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CARGOBAY = ROOT / ".venv" / "bin" / "cargobay"
MARKER = "CARGOBAY-BENCH-BOOTED"
BENCH_INIT = f"""#!/usr/bin/python3
print("{MARKER}", flush=True)
open("/proc/sysrq-trigger", "w").write("o")
"""


def data_disk(path: Path, *, with_init: bool, size_mb: int = 256) -> None:
    """An ext4 data disk (LABEL=cbdata) made with mke2fs -d; optionally carrying the
    baseline's init in the overlay's upper directory, so it appears at /bench-init."""
    with tempfile.TemporaryDirectory() as tree:
        upper = Path(tree, "upper")
        upper.mkdir()
        Path(tree, "work").mkdir()
        if with_init:
            init = upper / "bench-init"
            init.write_text(BENCH_INIT)
            init.chmod(0o755)
        subprocess.run(
            [
                "mke2fs",
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                "cbdata",
                "-d",
                tree,
                str(path),
                f"{size_mb}M",
            ],
            check=True,
        )


def spec_for(
    paths: Paths,
    image_dir: Path,
    manifest_cmdline: str,
    name: str,
    disk: Path,
    *,
    init: str | None = None,
) -> VMSpec:
    run_dir = paths.machine_run_dir(name)
    state_dir = paths.machines / name
    for d in (run_dir, state_dir):
        d.mkdir(parents=True, exist_ok=True)
    cmdline = manifest_cmdline + (f" init={init}" if init else "")
    return VMSpec(
        vm_id=name,
        name=name,
        cpus=1,
        memory_mb=512,
        kernel=next(image_dir / k for k in ("vmlinux", "vmlinuz") if (image_dir / k).exists()),
        initrd=image_dir / "initrd.img",
        rootfs=image_dir / "rootfs.ext4",
        data_disk=disk,
        run_dir=run_dir,
        state_dir=state_dir,
        cmdline=cmdline,
    )


def raw_qemu_boot(paths: Paths, image_dir: Path, cmdline: str, n: int) -> float:
    """One plain QEMU boot into the python3 init; seconds from spawn to QEMU's exit."""
    disk = paths.cache / f"raw-{n}.img"
    data_disk(disk, with_init=True)
    spec = spec_for(paths, image_dir, cmdline, f"raw{n}", disk, init="/bench-init")
    argv = build_argv(
        shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
        spec,
        QemuOptions(accel="tcg", extra_kernel_params=tuple(tcg_kernel_params()), daemonize=False),
    )
    start = time.perf_counter()
    subprocess.run(argv, check=True, timeout=120, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    console = (spec.state_dir / "console.log").read_text(errors="replace")
    if MARKER not in console:
        raise RuntimeError(f"the raw boot did not reach its init:\n{console[-2000:]}")
    disk.unlink()
    return elapsed


def cargobay_run(env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [str(CARGOBAY), "run", "--rm", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"cargobay run failed ({done.returncode}): {done.stderr}")
    return elapsed


async def exec_roundtrips(
    paths: Paths, image_dir: Path, cmdline: str, n: int
) -> tuple[list[float], list[float]]:
    disk = paths.cache / "exec.img"
    data_disk(disk, with_init=False)
    spec = spec_for(paths, image_dir, cmdline, "execbench", disk)
    hv = QemuHypervisor(paths=paths, env={**os.environ, "CARGOBAY_ACCEL": "tcg"})
    handle = await hv.start(spec)
    agent_times: list[float] = []
    qga_times: list[float] = []
    tight_times: list[float] = []
    try:
        agent = await wait_ready(handle.agent_address, 180)
        assert handle.qga_address is not None
        qga = await QgaClient.connect(handle.qga_address, timeout=60)
        await qga.ping(timeout=60)
        for _ in range(3):  # warm both paths (page cache, bytecode, first fork)
            await agent.exec(["true"])
            await qga.run(["/bin/true"])
        for _ in range(n):
            t = time.perf_counter()
            result = await agent.exec(["true"])
            agent_times.append(time.perf_counter() - t)
            assert result.returncode == 0
            t = time.perf_counter()
            qresult = await qga.run(["/bin/true"])
            qga_times.append(time.perf_counter() - t)
            assert qresult.exit_code == 0
            t = time.perf_counter()
            qresult = await qga.run(["/bin/true"], poll_interval=0, max_interval=0)
            tight_times.append(time.perf_counter() - t)
            assert qresult.exit_code == 0
        await qga.close()
        await agent.close()
    finally:
        await hv.kill(handle)
        disk.unlink(missing_ok=True)
    return agent_times, qga_times, tight_times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boots", type=int, default=5)
    parser.add_argument("--execs", type=int, default=40)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="cbb-", dir="/tmp"))
    images = Path(os.environ.get("CARGOBAY_IMAGES") or Paths.from_env().images)
    env = {
        **os.environ,
        "CARGOBAY_HOME": str(home),
        "CARGOBAY_IMAGES": str(images),
        "CARGOBAY_ACCEL": os.environ.get("CARGOBAY_ACCEL", "tcg"),
    }
    paths = Paths.from_env(env)
    paths.ensure()
    print(f"bench home {home}; images {images}", file=sys.stderr)
    manifest = build_image(paths, "default")
    image_dir = ImageStore(paths.images).path("default")
    results: dict[str, object] = {"image": manifest.model_dump(mode="json")["kernel_version"]}
    try:
        subprocess.run([str(CARGOBAY), "daemon", "start"], env=env, check=True, timeout=120)
        cargobay_run(env)  # the first run pays for one-off work (KVM probe verdict, caches)
        raw, ours = [], []
        for i in range(args.boots):
            ours.append(cargobay_run(env))
            raw.append(raw_qemu_boot(paths, image_dir, manifest.cmdline, i))
            print(
                f"boot {i}: cargobay run {ours[-1]:.2f}s, raw QEMU {raw[-1]:.2f}s", file=sys.stderr
            )
        agent, qga, tight = asyncio.run(
            exec_roundtrips(paths, image_dir, manifest.cmdline, args.execs)
        )
    finally:
        subprocess.run([str(CARGOBAY), "daemon", "stop"], env=env, timeout=60, check=False)
        shutil.rmtree(home, ignore_errors=True)

    med = statistics.median
    results.update(
        {
            "boot": {
                "cargobay_run_s": ours,
                "raw_qemu_s": raw,
                "ratio": med(ours) / med(raw),
                "goal": 1.15,
            },
            "exec": {
                "agent_ms": [t * 1e3 for t in agent],
                "qga_backoff_ms": [t * 1e3 for t in qga],
                "qga_tight_ms": [t * 1e3 for t in tight],
                "ratio_backoff": med(agent) / med(qga),
                "ratio_tight": med(agent) / med(tight),
                "goal": 0.5,
            },
        }
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "vm_boot_exec.json").write_text(json.dumps(results, indent=2))
    print(f"{'measure':40} {'cargobay':>10} {'peer':>10} {'ratio':>7} {'goal':>6}")
    print(
        f"{'cold run -- true vs raw QEMU boot (s)':40} {med(ours):10.2f} {med(raw):10.2f} "
        f"{med(ours) / med(raw):7.2f} {'<=1.15':>6}"
    )
    for label, peer in (("backoff poll", qga), ("tight poll", tight)):
        print(
            f"{'exec true: agent vs qemu-ga, ' + label + ' (ms)':40} {med(agent) * 1e3:10.1f} "
            f"{med(peer) * 1e3:10.1f} {med(agent) / med(peer):7.2f} {'<=0.5':>6}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
