"""The three steps ``MachineService._boot`` takes differently when it restores a saved
state instead of booting (``cargobay.machines.snapshots``): the start options, loading
the state, and giving a clone its own host name.

After a restore the host connects to the new VM process's agent socket and runs the
channel's sync preamble again (``cargobay.guest.channel``): the guest agent, which was
mid-session with the old host when the state was saved, answers the new host's sync
request, so no guest change is needed for the channel to come back.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from cargobay.errors import Conflict, GuestError
from cargobay.hypervisors.base import Hypervisor, Snapshotting, VMHandle, VMSpec
from cargobay.machines.agent import AgentClientLike, ExecExit, ExecRequest, exec_events
from cargobay.machines.models import VMInstance
from cargobay.machines.snapshots import Restore, SnapshotDir, SnapshotInfo, copy_sparse

if TYPE_CHECKING:
    from cargobay.machines.service import MachineService

__all__ = [
    "check_shape",
    "load_restore",
    "prepare_warm_start",
    "require_snapshotting",
    "restore_spec",
    "set_hostname",
]


def require_snapshotting(hv: Hypervisor) -> Snapshotting:
    if not isinstance(hv, Snapshotting):
        raise Conflict(f"the {hv.name} backend cannot save or restore a machine's state")
    return hv


def restore_spec(spec: VMSpec, hv: Hypervisor, restore: Restore) -> VMSpec:
    """``spec`` with the start options that make the VM wait for a state."""
    require_snapshotting(hv)
    extra = {**spec.extra, "incoming": "defer"}
    if restore.user_nic:
        extra["user_nic"] = "1"
    if restore.memory_file is not None:
        extra["memory_file"] = str(restore.memory_file)
        extra["memory_share"] = "on" if restore.memory_share else "off"
    return dataclasses.replace(spec, extra=extra)


async def load_restore(hv: Hypervisor, handle: VMHandle, restore: Restore) -> None:
    await require_snapshotting(hv).load_state(
        handle, restore.state, ignore_shared=restore.ignore_shared
    )


async def set_hostname(agent: AgentClientLike, name: str) -> None:
    """Give a restored guest ``name`` as its host name (the kernel's, not /etc/hostname)."""
    request = ExecRequest(
        argv=["sh", "-c", 'printf %s "$1" > /proc/sys/kernel/hostname', "sh", name], timeout=10
    )
    async for event in exec_events(agent, request):
        if isinstance(event, ExecExit) and event.exit_code != 0:
            raise GuestError(f"could not set the host name {name!r} in the restored guest")


def check_shape(vm: VMInstance, info: SnapshotInfo) -> None:
    """A saved state only loads into a VM of the same shape (devices, RAM, CPUs)."""
    want = (info.cpus, info.memory_mb, info.image, info.backend)
    have = (vm.config.cpus, vm.config.memory_mb, vm.config.image, vm.config.backend)
    if want != have:
        raise Conflict(
            f"snapshot {info.tag!r} was taken with cpus={info.cpus}, memory={info.memory_mb} "
            f"MiB, image {info.image!r}, backend {info.backend!r}; machine {vm.name!r} now has "
            f"cpus={vm.config.cpus}, memory={vm.config.memory_mb} MiB, image "
            f"{vm.config.image!r}, backend {vm.config.backend!r}: set them back to restore it"
        )


async def prepare_warm_start(service: MachineService, vm: VMInstance, tag: str) -> Restore:
    """Check ``tag`` fits ``vm``, put the snapshot's data disk in place, and say what to
    load.  The machine's current data disk is replaced (the snapshot is a point in time of
    both RAM and disk; one without the other would corrupt the file system)."""
    snaps = SnapshotDir(service.machine_dir(vm), vm.name)
    info = snaps.get(tag)
    require_snapshotting(service.hypervisor(vm.config.backend))
    check_shape(vm, info)
    path = snaps.path(tag)
    await copy_sparse(path / "data.img", service.data_disk(vm))
    return Restore(state=path / "state")
