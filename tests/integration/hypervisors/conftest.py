"""Fixtures for the hypervisor tests: VMs from the default image, tracked and cleaned up.

``vms`` is a factory (like Firecracker's ``microvm_factory``): ``vms.spec(...)`` makes a
``VMSpec`` from the default image with its own short run/state directories and a fresh
sparse ext4 data disk (``mke2fs -L cbdata``); ``vms.start(hv, spec)`` boots it and
remembers the handle.  At teardown every VM still alive is killed, and the console and
QEMU logs of each are printed (pytest shows them for a failing test).

Every test shares one CARGOBAY_HOME for the session (``hv_home``), so the KVM probe runs
once per session and its verdict is reused from the cache.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cargobay import hypervisors
from cargobay.hypervisors.base import Hypervisor, VMHandle, VMSpec
from tests.support import require

if TYPE_CHECKING:
    from cargobay.images import ImageManifest


def _mke2fs() -> str | None:
    return shutil.which("mke2fs") or next(
        (p for p in ("/sbin/mke2fs", "/usr/sbin/mke2fs") if Path(p).exists()), None
    )


def without_quiet(cmdline: str) -> str:
    return " ".join(word for word in cmdline.split() if word != "quiet")


async def wait_for_text(path: Path, needle: str, timeout: float) -> str:
    """Poll ``path`` until it contains ``needle``; fail with its tail after ``timeout``."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = path.read_text(errors="replace")  # noqa: ASYNC240 - a small log file
        except FileNotFoundError:
            text = ""
        if needle in text:
            return text
        await asyncio.sleep(0.1)
    tail = "\n".join(text.splitlines()[-25:])
    raise AssertionError(f"{needle!r} not in {path} after {timeout:.0f} s; it ends with:\n{tail}")


def pid_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


async def wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pid_gone(pid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def processes_using(path: Path) -> list[int]:
    """Pids whose command line mentions ``path`` (QEMUs of one test VM)."""
    needle = str(path).encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if needle in Path(entry.path, "cmdline").read_bytes() and not pid_gone(
                    int(entry.name)
                ):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class VMFactory:
    def __init__(self, image_dir: Path, manifest: ImageManifest, root: Path) -> None:
        self.image_dir = image_dir
        self.manifest = manifest
        self.root = root
        self.started: list[tuple[Hypervisor, VMHandle]] = []
        self.dirs: list[Path] = []

    @property
    def kernel(self) -> Path:
        return self.image_dir / self.manifest.kernel.path

    @property
    def initrd(self) -> Path | None:
        return self.image_dir / self.manifest.initrd.path if self.manifest.initrd else None

    @property
    def rootfs(self) -> Path:
        return self.image_dir / self.manifest.rootfs.path

    def spec(
        self,
        name: str | None = None,
        *,
        cpus: int = 1,
        memory_mb: int = 256,
        quiet: bool = True,
        cmdline: str | None = None,
        **changes: Any,
    ) -> VMSpec:
        short = uuid.uuid4().hex[:8]
        base = self.root / short
        base.mkdir(parents=True)
        self.dirs.append(base)
        disk = base / "data.img"
        mke2fs = _mke2fs()
        require(mke2fs is not None, "mke2fs (Debian: apt-get install e2fsprogs)")
        assert mke2fs is not None
        subprocess.run(
            [mke2fs, "-t", "ext4", "-L", "cbdata", "-F", "-q", str(disk), "512M"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        if cmdline is None:
            cmdline = self.manifest.cmdline if quiet else without_quiet(self.manifest.cmdline)
        fields: dict[str, Any] = {
            "vm_id": uuid.uuid4().hex,
            "name": name or f"t-{short}",
            "cpus": cpus,
            "memory_mb": memory_mb,
            "kernel": self.kernel,
            "initrd": self.initrd,
            "rootfs": self.rootfs,
            "data_disk": disk,
            "run_dir": base / "r",
            "state_dir": base / "s",
            "cmdline": cmdline,
        }
        fields.update(changes)
        return VMSpec(**fields)

    async def start(self, hv: Hypervisor, spec: VMSpec) -> VMHandle:
        handle = await hv.start(spec)
        self.started.append((hv, handle))
        return handle

    async def cleanup(self) -> None:
        for hv, handle in self.started:
            try:
                await hv.kill(handle)
            except Exception as err:  # report, and go on cleaning the others
                print(f"cleanup: killing {handle.vm_id} failed: {err}")
        for base in self.dirs:
            for pid in processes_using(base):
                print(f"cleanup: a process of {base} was still running: {pid}")
                os.kill(pid, 9)

    def report(self) -> None:
        for base in self.dirs:
            for log in sorted((base / "s").glob("*.log")):
                text = log.read_text(errors="replace").splitlines()
                print(f"==== {log} (last 40 lines)")
                print("\n".join(text[-40:]))


@pytest.fixture(scope="session")
def hv_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="cbhv-", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def hv_env(hv_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CARGOBAY_HOME for the test: the session's (the KVM verdict is cached there)."""
    monkeypatch.setenv("CARGOBAY_HOME", str(hv_home))
    return hv_home


@pytest.fixture(params=hypervisors.available())
def hv(request: pytest.FixtureRequest, hv_env: Path) -> Hypervisor:
    """Each registered backend in turn (the conformance suite runs against all of them)."""
    return hypervisors.get(str(request.param))


@pytest.fixture
def qemu_hv(hv_env: Path) -> Hypervisor:
    require("qemu" in hypervisors.available(), "the qemu backend (Linux only)")
    return hypervisors.get("qemu")


@pytest.fixture
async def vms(default_image: tuple[Path, ImageManifest], hv_home: Path) -> AsyncIterator[VMFactory]:
    image_dir, manifest = default_image
    factory = VMFactory(image_dir, manifest, hv_home / "vm")
    try:
        yield factory
    finally:
        await factory.cleanup()
        factory.report()
