"""Snapshots, warm starts and forks with real QEMU, the default image and the agent.

One machine is booted for the module.  A marker goes into the guest's tmpfs (RAM only)
and one onto its data disk; a snapshot is taken and the machine runs on and changes both.
A warm start from the snapshot must bring back the RAM marker (the guest did not boot:
its boot id is the one saved) and the disk as it was.  A fork of two clones through the
snapshot's shared-memory template must give two machines that each answer exec, have
their own host name and sockets, and see the snapshot's RAM marker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from cargobay.errors import CargoBayError, Conflict, NotFound
from cargobay.hypervisors.base import VMHandle, VMStatus
from cargobay.hypervisors.cgroups import limits_for
from cargobay.hypervisors.qemu import QemuHypervisor
from cargobay.images import ImageManifest, ImageStore
from cargobay.machines.agent import ExecExit, ExecOutput, ExecRequest, GuestAgentConnector
from cargobay.machines.models import VMInstance, VMStateKind, parse_size_mb
from cargobay.machines.service import MachineService
from cargobay.machines.snapshot_service import SnapshotService
from cargobay.paths import Paths
from cargobay.store import Store
from tests.integration.machines.test_lifecycle import qemu_processes
from tests.integration.machines.variants import image_store_with_variants, shared_cache_dir

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

NAME = "snap"


@dataclass
class Env:
    paths: Paths
    service: MachineService
    snapshots: SnapshotService


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(default_image: tuple[Path, ImageManifest]) -> AsyncIterator[Env]:
    home = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    images = image_store_with_variants(home / "images", default_image[0])
    paths = Paths(home / "data", home / "state", shared_cache_dir(), home / "run", images)
    paths.ensure()
    store = Store.open(paths.db)
    service = MachineService(
        paths,
        store,
        lambda _name: QemuHypervisor(paths=paths),
        ImageStore(paths.images),
        GuestAgentConnector(),
    )
    try:
        yield Env(paths, service, SnapshotService(service))
    finally:
        for vm in store.list_machines():
            with contextlib.suppress(CargoBayError):
                await service.delete(vm.name, force=True)
        await service.close()
        store.close()
        for pid in qemu_processes(str(home)):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


async def run(service: MachineService, name: str, script: str) -> str:
    out = b""
    code = None
    events = await service.exec(name, ExecRequest(argv=["sh", "-c", script], timeout=60))
    async for event in events:
        if isinstance(event, ExecOutput):
            out += event.data
        elif isinstance(event, ExecExit):
            code = event.exit_code
    assert code == 0, out
    return out.decode().strip()


BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


def exists(paths: list[str]) -> list[str]:
    return [p for p in paths if p and Path(p).exists()]


def check_confined(vm: VMInstance) -> None:
    """QEMU runs under its seccomp filter, in a cgroup of its own with the VM's limits."""
    handle = vm.runtime.handle or {}
    pid = int(handle["pid"])
    status = Path(f"/proc/{pid}/status").read_text()
    assert "\nSeccomp:\t2\n" in status
    if os.geteuid() != 0:
        assert "root" in handle["extra"]["cgroup_note"]
        return
    groups = handle["extra"]["cgroups"].split(":")
    membership = Path(f"/proc/{pid}/cgroup").read_text()
    limits = limits_for(vm.config.cpus, vm.config.memory_mb)
    for group in groups:
        assert f"/cargobay/{vm.id[:12]}" in group
        assert group.split("/sys/fs/cgroup", 1)[1].split("/", 2)[-1] in membership
    if handle["extra"]["cgroup_version"] == "2":
        (group,) = groups
        assert Path(group, "cpu.max").read_text().split() == [str(limits.cpu_quota_us), "100000"]
        assert int(Path(group, "memory.max").read_text()) == limits.memory_bytes
    else:
        cpu, memory = groups
        assert int(Path(cpu, "cpu.cfs_quota_us").read_text()) == limits.cpu_quota_us
        assert int(Path(memory, "memory.limit_in_bytes").read_text()) == limits.memory_bytes


async def test_snapshot_then_warm_start_restores_ram_and_disk(env: Env) -> None:
    vm = VMInstance(name=NAME)
    vm = vm.model_copy(
        update={"config": vm.config.model_copy(update={"memory_mb": parse_size_mb("256MB")})}
    )
    vm = await env.service.create(vm, boot_timeout=240)
    check_confined(vm)
    boot_id = await run(
        env.service, NAME, f"echo ram-1 > /tmp/marker; echo disk-1 > /root/d; sync; {BOOT_ID}"
    )

    with pytest.raises(NotFound):
        await env.snapshots.fork(NAME, 1, tag="nope")
    info = await env.snapshots.snapshot(NAME, tag="t1")
    assert info.tag == "t1"
    assert info.size_bytes > 0
    assert not info.template
    assert [s.tag for s in env.snapshots.list_snapshots(NAME)] == ["t1"]
    with pytest.raises(Conflict):
        await env.snapshots.snapshot(NAME, tag="t1")

    # The machine runs on after the snapshot, and changes RAM and disk.
    assert env.service.get_machine(NAME).state.kind is VMStateKind.RUNNING
    await run(env.service, NAME, "echo ram-2 > /tmp/marker; echo disk-2 > /root/d; sync")
    groups = (env.service.get_machine(NAME).runtime.handle or {})["extra"].get("cgroups", "")
    await env.service.stop(NAME, timeout=30)
    assert not exists(groups.split(":"))  # removed with the VM
    with pytest.raises(Conflict):  # nothing to save on a stopped machine
        await env.snapshots.snapshot(NAME, tag="t2")

    vm = await env.service.start(NAME, boot_timeout=120, snapshot="t1")
    assert vm.state.kind is VMStateKind.RUNNING
    state = await run(env.service, NAME, f"cat /tmp/marker /root/d; {BOOT_ID}")
    assert state.split() == ["ram-1", "disk-1", boot_id]

    # A paused machine stays paused through a snapshot, and resumes.
    await env.service.pause(NAME)
    await env.snapshots.snapshot(NAME, tag="paused")
    vm = env.service.get_machine(NAME)
    assert vm.state.kind is VMStateKind.PAUSED
    handle = VMHandle.from_dict(vm.runtime.handle or {})
    assert await QemuHypervisor(paths=env.paths).status(handle) is VMStatus.PAUSED
    await env.service.resume(NAME)
    assert await run(env.service, NAME, "cat /tmp/marker") == "ram-1"
    env.snapshots.delete_snapshot(NAME, "paused")


async def test_fork_starts_clones_from_the_template(env: Env) -> None:
    clones = await env.snapshots.fork(NAME, 2, tag="t1", boot_timeout=120)
    names = sorted(c.name for c in clones)
    assert names == [f"{NAME}-1", f"{NAME}-2"]
    assert env.snapshots.list_snapshots(NAME)[0].template
    sockets = set()
    for clone in clones:
        assert clone.state.kind is VMStateKind.RUNNING
        handle = clone.runtime.handle or {}
        sockets.add(handle["agent_address"])
        out = await run(env.service, clone.name, "hostname; cat /tmp/marker /root/d")
        assert out.split() == [clone.name, "ram-1", "disk-1"]
    assert len(sockets) == 2
    # Each clone has its own disk: a write in one is not seen in the other.
    await run(env.service, f"{NAME}-1", "echo mine > /root/d; sync")
    assert await run(env.service, f"{NAME}-2", "cat /root/d") == "disk-1"
    for name in names:
        await env.service.delete(name, force=True)
    env.snapshots.delete_snapshot(NAME, "t1")
    assert env.snapshots.list_snapshots(NAME) == []
