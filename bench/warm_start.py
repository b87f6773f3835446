"""Warm starts against a cold boot, in one run: time to first exec and host memory.

One machine (256 MiB, 1 vCPU, the default image) is measured four ways, each to the
first answered ``exec true`` through the machines service (real QEMU, the guest agent):

1. cold: create + boot + exec (the machine's data disk made, the kernel booted);
2. snapshot: a stopped machine warm-started from a snapshot (its full RAM loaded from the
   state file, the data disk copied back);
3. template: one clone forked from the snapshot's shared-memory template (device state
   only; the RAM file mapped copy-on-write);  goal: <= 0.1x cold;
4. template xN: N clones forked at once (wall time for all N).

Host memory per extra sandbox beyond its guest RAM: the proportional set size (PSS, from
/proc/PID/smaps_rollup) of each clone's QEMU, where pages the clones share from the
template's page cache are split between them, against a cold-booted VM's PSS.

Runs alternate, so load changes hit every variant; the report is medians and ratios.
Results go to bench/results/warm_start.json.

    sudo .venv/bin/python bench/warm_start.py [--runs 5] [--clones 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cargobay.hypervisors.qemu import QemuHypervisor  # noqa: E402
from cargobay.images import ImageStore  # noqa: E402
from cargobay.machines.agent import ExecRequest, GuestAgentConnector  # noqa: E402
from cargobay.machines.models import VMConfig, VMInstance  # noqa: E402
from cargobay.machines.service import MachineService  # noqa: E402
from cargobay.machines.snapshot_service import SnapshotService  # noqa: E402
from cargobay.paths import Paths  # noqa: E402
from cargobay.store import Store  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MEMORY_MB = 256


async def first_exec(service: MachineService, name: str) -> None:
    events = await service.exec(name, ExecRequest(argv=["true"], timeout=30))
    async for _ in events:
        pass


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def pid_of(service: MachineService, name: str) -> int:
    handle = service.get_machine(name).runtime.handle or {}
    return int(handle["pid"])


async def timed(step: Callable[[], Awaitable[object]]) -> float:
    t0 = time.perf_counter()
    await step()
    return time.perf_counter() - t0


async def main(runs: int, clones: int, images: Path) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="cb-bench-", dir="/tmp"))
    paths = Paths(
        home / "data", home / "state", ROOT / ".artifacts" / "cache", home / "run", images
    )
    paths.ensure()
    store = Store.open(paths.db)
    service = MachineService(
        paths,
        store,
        lambda _name: QemuHypervisor(paths=paths),
        ImageStore(paths.images),
        GuestAgentConnector(),
    )
    snaps = SnapshotService(service)
    times: dict[str, list[float]] = {"cold": [], "snapshot": [], "template": [], "template_n": []}
    memory: dict[str, list[int]] = {"cold_pss_kib": [], "clone_pss_kib": []}
    config = VMConfig(memory_mb=MEMORY_MB, disk_mb=256)
    try:
        for run in range(runs):
            name = f"b{run}"

            async def cold(name: str = name) -> None:
                await service.create(VMInstance(name=name, config=config), boot_timeout=240)
                await first_exec(service, name)

            times["cold"].append(await timed(cold))
            await asyncio.sleep(2)  # idle, as the clones will be
            memory["cold_pss_kib"].append(pss_kib(pid_of(service, name)))
            await snaps.snapshot(name, tag="t")
            await snaps.fork(name, 1, tag="t")  # makes the template form (not timed)
            await service.delete(f"{name}-1", force=True)
            await service.stop(name, force=True)

            async def warm(name: str = name) -> None:
                await service.start(name, snapshot="t")
                await first_exec(service, name)

            times["snapshot"].append(await timed(warm))

            async def one_clone(name: str = name) -> None:
                (clone,) = await snaps.fork(name, 1, tag="t")
                await first_exec(service, clone.name)

            times["template"].append(await timed(one_clone))

            async def n_clones(name: str = name) -> None:
                made = await snaps.fork(name, clones, tag="t")
                await asyncio.gather(*(first_exec(service, c.name) for c in made))

            times["template_n"].append(await timed(n_clones))
            await asyncio.sleep(2)
            for vm in service.list_machines():
                if vm.name.startswith(f"{name}-"):
                    memory["clone_pss_kib"].append(pss_kib(pid_of(service, vm.name)))
            for vm in service.list_machines():
                await service.delete(vm.name, force=True)
            print(
                f"run {run + 1}/{runs}: "
                + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()),
                flush=True,
            )
    finally:
        for vm in service.list_machines():
            with contextlib.suppress(Exception):
                await service.delete(vm.name, force=True)
        await service.close()
        store.close()
        for pid in _qemus(str(home)):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    mem = {k: statistics.median(v) for k, v in memory.items()}
    return {
        "runs": runs,
        "clones": clones,
        "memory_mb": MEMORY_MB,
        "seconds_median": med,
        "ratio_vs_cold": {k: med[k] / med["cold"] for k in ("snapshot", "template", "template_n")},
        "pss_kib_median": mem,
        "clone_pss_vs_cold": mem["clone_pss_kib"] / mem["cold_pss_kib"],
        "raw": {"seconds": times, "pss_kib": memory},
    }


def _qemus(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes()
                if b"qemu-system" in argv and marker.encode() in argv:
                    pids.append(int(entry.name))
    return pids


def report(result: dict[str, object]) -> None:
    med = result["seconds_median"]
    ratio = result["ratio_vs_cold"]
    mem = result["pss_kib_median"]
    assert isinstance(med, dict)
    assert isinstance(ratio, dict)
    assert isinstance(mem, dict)
    n = result["clones"]
    print(f"\nmedian of {result['runs']} runs, {MEMORY_MB} MiB guest, time to first exec:")
    print(f"  cold boot            {med['cold']:.3f} s")
    print(f"  from snapshot        {med['snapshot']:.3f} s   {ratio['snapshot']:.3f}x")
    print(
        f"  from template        {med['template']:.3f} s   {ratio['template']:.3f}x  (goal <= 0.1x)"
    )
    print(
        f"  {n} from template    {med['template_n']:.3f} s   {ratio['template_n']:.3f}x (all {n})"
    )
    print("host memory (PSS of the QEMU process, idle):")
    print(f"  cold-booted VM       {mem['cold_pss_kib'] / 1024:.1f} MiB")
    print(
        f"  each template clone  {mem['clone_pss_kib'] / 1024:.1f} MiB "
        f"({result['clone_pss_vs_cold']:.2f}x; the guest RAM it did not write is shared)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clones", type=int, default=4)
    parser.add_argument(
        "--images",
        type=Path,
        default=Path(os.environ.get("CARGOBAY_IMAGES", ROOT / ".artifacts" / "images")),
    )
    args = parser.parse_args()
    out = asyncio.run(main(args.runs, args.clones, args.images))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "warm_start.json").write_text(json.dumps(out, indent=2) + "\n")
    report(out)
