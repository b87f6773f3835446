"""The minimal kernel against Debian's cloud kernel, same root filesystem, in one run.

Two images from the same recipe apart from the kernel: ``debian`` (Debian's
``linux-image-cloud-amd64`` with its modules in the root image and the initramfs) and
``default`` (the minimal kernel: built from linux-source-6.1 with ``kconfig/minimal.config``,
everything built in, started at its PVH entry).  Measured:

1. time to first exec: a cold ``cargobay run --rm --image IMAGE -- true`` through a
   running cargobayd (create, boot to the guest agent, exec, remove).  Goal: minimal
   <= 0.5x Debian's.
2. guest memory after boot: one VM of each (512 MiB, 1 vCPU), the agent ready and the
   guest idle for 2 s, then ``/proc/meminfo`` in the guest.  "In use" is the VM's RAM
   minus MemFree (the kernel's own reservations, slab, page tables, page cache and the
   processes).  Goal: minimal <= 0.7x Debian's.  Also shown: MemTotal, and the QEMU
   process's RSS on the host (the guest pages it has touched).
3. the kernel build time: from the cache's record of the build (``build.json``), or
   measured now with ``--rebuild-kernel`` (into a temporary cache: ~10 min on 2 cores).

Runs alternate between the images, so load changes hit both; the report is medians and
ratios.  Results go to bench/results/minimal_kernel.json.

    .venv/bin/python bench/minimal_kernel.py [--boots 5] [--rebuild-kernel]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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
from cargobay.hypervisors.qemu import QemuHypervisor
from cargobay.images import ImageManifest, ImageStore, build_image
from cargobay.images.minikernel import build_minimal_kernel
from cargobay.images.recipes import recipe_for
from cargobay.images.tools import ToolRunner
from cargobay.paths import Paths

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CARGOBAY = ROOT / ".venv" / "bin" / "cargobay"
DEBIAN, MINIMAL = "debian", "default"
"""The image names: ``default`` has the minimal kernel, ``debian`` the same rootfs with
Debian's cloud kernel."""
IMAGES = (DEBIAN, MINIMAL)
MEMORY_MB = 512


def cargobay_run(env: dict[str, str], image: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [str(CARGOBAY), "run", "--rm", "--image", image, "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"cargobay run --image {image} failed ({done.returncode}): {done.stderr}"
        )
    return elapsed


def meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as KiB values."""
    table = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if rest.split():
            table[key] = int(rest.split()[0])
    return table


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def memory_after_boot(paths: Paths, image: str) -> dict[str, object]:
    image_dir = ImageStore(paths.images).path(image)
    manifest = ImageStore(paths.images).get(image)
    name = f"mem-{image}"
    run_dir, state_dir = paths.machine_run_dir(name), paths.machines / name
    for d in (run_dir, state_dir):
        d.mkdir(parents=True, exist_ok=True)
    disk = state_dir / "data.img"
    mke2fs = ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "cbdata", str(disk), "256M"]
    await asyncio.to_thread(subprocess.run, mke2fs, check=True)
    spec = VMSpec(
        vm_id=name,
        name=name,
        cpus=1,
        memory_mb=MEMORY_MB,
        kernel=image_dir / manifest.kernel.path,
        initrd=image_dir / "initrd.img",
        rootfs=image_dir / "rootfs.ext4",
        data_disk=disk,
        run_dir=run_dir,
        state_dir=state_dir,
        cmdline=manifest.cmdline,
    )
    hv = QemuHypervisor(paths=paths, env={**os.environ, "CARGOBAY_ACCEL": "tcg"})
    handle = await hv.start(spec)
    try:
        agent = await wait_ready(handle.agent_address, 300)
        await asyncio.sleep(2)
        info = meminfo((await agent.exec(["cat", "/proc/meminfo"])).stdout.decode())
        release = (await agent.exec(["uname", "-r"])).stdout.decode().strip()
        await agent.close()
        return {
            "release": release,
            "in_use_kib": MEMORY_MB * 1024 - info["MemFree"],
            "mem_total_kib": info["MemTotal"],
            "mem_available_kib": info["MemAvailable"],
            "qemu_rss_kib": rss_kib(handle.pid),
        }
    finally:
        await hv.kill(handle)
        shutil.rmtree(state_dir, ignore_errors=True)


def initrd_size(manifest: ImageManifest) -> int:
    return manifest.initrd.size if manifest.initrd is not None else 0


def kernel_build_seconds(paths: Paths, rebuild: bool) -> tuple[float, str]:
    if rebuild:
        with tempfile.TemporaryDirectory(prefix="cbk-", dir=paths.cache) as tmp:
            started = time.monotonic()
            build_minimal_kernel(
                ToolRunner({}),
                Path(tmp),
                on_progress=lambda f, m: print(f"  kernel {f:4.0%} {m}", file=sys.stderr),
            )
            return time.monotonic() - started, "measured now"
    kernel = build_minimal_kernel(ToolRunner({}), paths.cache / "images")
    return kernel.build_seconds, "recorded by the cached build"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boots", type=int, default=5)
    parser.add_argument("--rebuild-kernel", action="store_true")
    parser.add_argument(
        "--cache",
        type=Path,
        help="build cache to use (e.g. .artifacts/cache, the tests' cache, whose kernel and "
        "base system are reused); default: the user's cache",
    )
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="cbk-", dir="/tmp"))
    images = Path(os.environ.get("CARGOBAY_IMAGES") or Paths.from_env().images)
    env = {
        **os.environ,
        "CARGOBAY_HOME": str(home),
        "CARGOBAY_IMAGES": str(images),
        "CARGOBAY_ACCEL": os.environ.get("CARGOBAY_ACCEL", "tcg"),
    }
    paths = Paths.from_env(env)
    paths.ensure()
    # Build into the shared cache (CARGOBAY_CACHE or the default): kernels are reused.
    build_paths = Paths.from_env({**os.environ, "CARGOBAY_IMAGES": str(images)})
    if args.cache is not None:
        build_paths = dataclasses.replace(build_paths, cache=args.cache.absolute())
    print(f"bench home {home}; images {images}", file=sys.stderr)
    manifests: dict[str, ImageManifest] = {}
    for image in IMAGES:
        started = time.monotonic()
        manifests[image] = build_image(build_paths, image, recipe=recipe_for(image))
        print(f"image {image}: ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
    build_s, build_how = kernel_build_seconds(build_paths, args.rebuild_kernel)

    times: dict[str, list[float]] = {image: [] for image in IMAGES}
    memory: dict[str, dict[str, object]] = {}
    try:
        subprocess.run([str(CARGOBAY), "daemon", "start"], env=env, check=True, timeout=120)
        for image in IMAGES:
            cargobay_run(env, image)  # one-off work (KVM probe verdict, page cache)
        for i in range(args.boots):
            for image in IMAGES if i % 2 == 0 else reversed(IMAGES):
                times[image].append(cargobay_run(env, image))
            print(
                f"boot {i}: " + ", ".join(f"{image} {times[image][-1]:.2f}s" for image in IMAGES),
                file=sys.stderr,
            )
        for image in IMAGES:
            memory[image] = asyncio.run(memory_after_boot(paths, image))
    finally:
        subprocess.run([str(CARGOBAY), "daemon", "stop"], env=env, timeout=60, check=False)
        shutil.rmtree(home, ignore_errors=True)

    med = statistics.median
    debian, minimal = (med(times[image]) for image in IMAGES)
    used = {image: int(str(memory[image]["in_use_kib"])) for image in IMAGES}
    results = {
        "kernels": {image: manifests[image].kernel_version for image in IMAGES},
        "first_exec_s": times,
        "first_exec_ratio": minimal / debian,
        "memory": memory,
        "memory_ratio": used[MINIMAL] / used[DEBIAN],
        "kernel_build_s": build_s,
        "kernel_build_how": build_how,
        "kernel_size_bytes": {image: manifests[image].kernel.size for image in IMAGES},
        "initrd_size_bytes": {image: initrd_size(manifests[image]) for image in IMAGES},
        "rootfs_size_bytes": {image: manifests[image].rootfs.size for image in IMAGES},
        "goals": {"first_exec_ratio": 0.5, "memory_ratio": 0.7},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "minimal_kernel.json").write_text(json.dumps(results, indent=2))

    def mib(kib: object) -> str:
        return f"{int(str(kib)) / 1024:.1f}"

    print(f"{'measure':44} {'minimal':>10} {'debian':>10} {'ratio':>7} {'goal':>6}")
    print(
        f"{'cargobay run --rm -- true (s, median)':44} {minimal:10.2f} {debian:10.2f} "
        f"{minimal / debian:7.2f} {'<=0.5':>6}"
    )
    print(
        f"{'guest RAM in use after boot (MiB)':44} {mib(used[MINIMAL]):>10} "
        f"{mib(used[DEBIAN]):>10} {used[MINIMAL] / used[DEBIAN]:7.2f} {'<=0.7':>6}"
    )
    for key, label in (("mem_total_kib", "guest MemTotal (MiB)"), ("qemu_rss_kib", "QEMU RSS")):
        a, b = memory[MINIMAL][key], memory[DEBIAN][key]
        print(
            f"{label + ' (MiB)' if 'RSS' in label else label:44} {mib(a):>10} {mib(b):>10} "
            f"{int(str(a)) / int(str(b)):7.2f}"
        )
    for key, label in (
        ("kernel_size_bytes", "kernel file (MiB)"),
        ("initrd_size_bytes", "initramfs (MiB)"),
    ):
        sizes = results[key]
        assert isinstance(sizes, dict)
        print(f"{label:44} {sizes[MINIMAL] / 2**20:10.2f} {sizes[DEBIAN] / 2**20:10.2f}")
    print(f"minimal kernel build: {build_s:.0f} s ({build_how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
