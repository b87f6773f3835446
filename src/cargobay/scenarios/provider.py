"""Where a scenario's VMs come from: a small ``VMProvider`` Protocol and its QEMU provider.

The runner needs, per VM, a QMP channel, a QGA channel and the serial console log; it
does not care who booted the VM.  ``QemuProvider`` boots VMs with cargobay's own QEMU
backend (``hypervisors.qemu``) from images in the local image store, each with a fresh
data disk, and kills them afterwards.  A libvirt provider (the host pool of issue 4)
will implement the same Protocol with QMP/QGA through ``qemuMonitorCommand`` /
``qemuAgentCommand`` adapters that offer the methods of ``QmpChannel``/``QgaChannel``.

Displays.  microvm has no display device, so QMP ``screendump`` answers "There is no
console".  A VM with ``display: vga`` boots as q35 with ``-device VGA``
(``VMSpec.extra["display"] = "vga"``, which the QEMU backend maps onto its command line).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cargobay.hypervisors.base import VMHandle, VMSpec
from cargobay.hypervisors.qemu import QemuHypervisor
from cargobay.images import ImageStore
from cargobay.machines.files import create_data_disk
from cargobay.paths import Paths
from cargobay.scenarios.schema import VMDef
from cargobay.scenarios.traffic import RecordingQga, RecordingQmp, TrafficLog
from cargobay.vmcontrol.qga import QgaExecResult

__all__ = ["BootedVM", "QemuProvider", "QgaChannel", "QmpChannel", "VMProvider"]

CONNECT_TIMEOUT = 10.0


class QmpChannel(Protocol):
    """What the runner uses of a QMP session (``vmcontrol.qmp.QmpConnection`` has it)."""

    async def execute(
        self, command: str, arguments: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any: ...

    async def query_status(self) -> str: ...

    async def screendump(self, path: str | Path, *, device: str | None = None) -> Path: ...

    async def send_keys(self, keys: list[str], *, hold_time_ms: int | None = None) -> None: ...

    async def wait_event(self, name: str, *, timeout: float | None = None) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class QgaChannel(Protocol):
    """What the runner uses of a QGA client (``vmcontrol.qga.QgaClient`` has it)."""

    async def ping(self, *, timeout: float | None = None) -> None: ...

    async def run(
        self, argv: list[str], *, input_data: bytes | None = None, timeout: float = 60.0
    ) -> QgaExecResult: ...

    async def file_read(self, path: str) -> bytes: ...

    async def file_write(self, path: str, data: bytes) -> None: ...

    async def close(self) -> None: ...


@dataclass
class BootedVM:
    name: str
    qmp: QmpChannel
    qga: QgaChannel | None
    console_log: Path
    boot_seconds: float
    info: dict[str, str] = field(default_factory=dict)
    """Shown in reports: machine, accel, pid, ..."""
    private: Any = None
    """The provider's own handle."""
    spice: Any = None
    """A ``SpiceVmConnection`` (not yet connected) when the VM has a Spice server."""


class VMProvider(Protocol):
    name: str

    async def boot(self, vm: VMDef, *, run_id: str, index: int, traffic: TrafficLog) -> BootedVM:
        """Start ``vm`` and open its control channels (without waiting for the guest)."""
        ...

    async def teardown(self, booted: BootedVM) -> None:
        """Close the channels and end the VM; never raises for a VM that is already gone."""
        ...


@dataclass
class _QemuVM:
    handle: VMHandle
    state_dir: Path
    run_dir: Path


class QemuProvider:
    """Boots scenario VMs with ``QemuHypervisor`` from the local image store."""

    name = "qemu"

    def __init__(self, *, paths: Paths | None = None, env: Mapping[str, str] | None = None):
        self._paths = paths or Paths.from_env(env)
        self._hv = QemuHypervisor(paths=self._paths, env=env)

    async def boot(self, vm: VMDef, *, run_id: str, index: int, traffic: TrafficLog) -> BootedVM:
        paths = self._paths
        paths.ensure()
        store = ImageStore(paths.images)
        manifest = store.get(vm.image)  # NotFound names the image and the store
        image_dir = store.path(vm.image)
        vm_id = f"sc{run_id}{index:02d}"
        state_dir = paths.machines / vm_id
        run_dir = paths.machine_run_dir(vm_id)
        state_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        disk = state_dir / "data.img"
        handle: VMHandle | None = None
        qmp: RecordingQmp | None = None
        try:
            await create_data_disk(disk, vm.disk_mb)
            spec = VMSpec(
                vm_id=vm_id,
                name=vm.name,
                cpus=vm.cpus,
                memory_mb=vm.memory_mb,
                kernel=image_dir / manifest.kernel.path,
                initrd=image_dir / manifest.initrd.path if manifest.initrd else None,
                rootfs=image_dir / manifest.rootfs.path,
                data_disk=disk,
                run_dir=run_dir,
                state_dir=state_dir,
                cmdline=manifest.cmdline,
                extra={
                    "machine": vm.resolved_machine,
                    "display": vm.resolved_display,
                    "vsock": "off",
                },
            )
            handle = await self._hv.start(spec)
            connected = await RecordingQmp.connect(handle.control_socket, timeout=CONNECT_TIMEOUT)
            assert isinstance(connected, RecordingQmp)
            qmp = connected
            qmp.attach(traffic, vm.name)
            qga: RecordingQga | None = None
            if handle.qga_address is not None:
                client = await RecordingQga.connect(handle.qga_address, timeout=CONNECT_TIMEOUT)
                assert isinstance(client, RecordingQga)
                qga = client
                qga.attach(traffic, vm.name)
        except BaseException:
            if qmp is not None:
                with contextlib.suppress(Exception):
                    await qmp.close()
            if handle is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._hv.kill(handle))
            _remove(state_dir, run_dir)
            raise
        return BootedVM(
            name=vm.name,
            qmp=qmp,
            qga=qga,
            console_log=Path(handle.console_log),
            boot_seconds=time.monotonic() - started,
            info={
                "provider": self.name,
                "machine": handle.extra.get("machine", ""),
                "accel": handle.accel,
                "pid": str(handle.pid),
                "image": vm.image,
            },
            private=_QemuVM(handle, state_dir, run_dir),
        )

    async def teardown(self, booted: BootedVM) -> None:
        for channel in (booted.qga, booted.qmp):
            if channel is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.close(), timeout=5)
        vm: _QemuVM = booted.private
        try:
            await self._hv.kill(vm.handle)
        finally:
            _remove(vm.state_dir, vm.run_dir)


def _remove(*dirs: Path) -> None:
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)
