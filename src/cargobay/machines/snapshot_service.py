"""Snapshots, warm starts and forks of machines: ``snapshot``, ``snapshots``, ``fork``.

``snapshot NAME`` stops the vCPUs, saves the VM's state and a copy of its data disk
(``cargobay.machines.snapshots`` has the layout), and lets the VM run on.  A warm start
(``MachineService.start(name, snapshot=TAG)``) loads it back instead of booting.

``fork NAME --count N`` starts N new machines from one snapshot (a fresh one unless a
tag is given) through its *template form*: the first fork of a snapshot loads its state
once into a paused QEMU whose RAM is a shared file (``memory.ram``) and saves it again
with ``x-ignore-shared`` (``state.shared``: device state only).  Every clone then maps
``memory.ram`` privately (copy-on-write) and loads the small stream, so N clones start in
about the time of one and share every page none of them has written.

Each clone is an ordinary machine (``NAME-1`` ... or the next free numbers): its own id,
run directory and sockets, its own copy of the data disk, its host name set after the
restore.  A fork is all or nothing: if one clone fails, the others are removed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cargobay.errors import Conflict, InvalidInput
from cargobay.machines.models import VMInstance, VMStateKind
from cargobay.machines.service import MachineService, _require_handle
from cargobay.machines.snapshot_boot import check_shape, require_snapshotting
from cargobay.machines.snapshots import (
    Restore,
    SnapshotDir,
    SnapshotInfo,
    check_tag,
    copy_sparse,
    new_tag,
)
from cargobay.machines.validation import check_boot_timeout

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["MAX_FORK", "SnapshotService"]

log = logging.getLogger(__name__)

MAX_FORK = 32


class SnapshotService:
    def __init__(self, machines: MachineService) -> None:
        self.machines = machines
        self._template_locks: dict[str, asyncio.Lock] = {}

    def _dir(self, vm: VMInstance) -> SnapshotDir:
        return SnapshotDir(self.machines.machine_dir(vm), vm.name)

    def list_snapshots(self, name: str) -> list[SnapshotInfo]:
        return self._dir(self.machines.get_machine(name)).list()

    def delete_snapshot(self, name: str, tag: str) -> None:
        self._dir(self.machines.get_machine(name)).delete(tag)

    async def snapshot(self, name: str, tag: str | None = None) -> SnapshotInfo:
        """Save a running (or paused) machine's state and disk under ``tag``."""
        tag = check_tag(tag) if tag else new_tag()
        m = self.machines
        async with m._operation(name, "taking a snapshot"):
            vm = m.store.get_machine(name)
            if vm.state.kind not in (VMStateKind.RUNNING, VMStateKind.PAUSED):
                raise Conflict(
                    f"machine {name!r} is {vm.state}; only a running or paused machine has "
                    "a state to save (start it first)"
                )
            hv = require_snapshotting(m.hypervisor(vm.config.backend))
            handle = _require_handle(vm)
            snaps = self._dir(vm)
            snaps.sweep()
            partial = snaps.begin(tag)
            try:
                try:
                    await hv.save_state(handle, partial / "state", ignore_shared=False)
                    # The vCPUs are stopped and QEMU flushed the disk: state and disk agree.
                    await copy_sparse(m.data_disk(vm), partial / "data.img")
                finally:
                    if vm.state.kind is VMStateKind.RUNNING:
                        await asyncio.shield(m.hypervisor(vm.config.backend).resume(handle))
                info = SnapshotInfo(
                    tag=tag,
                    machine=vm.name,
                    created_at=datetime.now(UTC),
                    cpus=vm.config.cpus,
                    memory_mb=vm.config.memory_mb,
                    image=vm.config.image,
                    backend=vm.config.backend,
                )
                return snaps.commit(tag, info)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise

    async def fork(
        self,
        name: str,
        count: int,
        tag: str | None = None,
        boot_timeout: float = 120.0,
    ) -> list[VMInstance]:
        """Start ``count`` clones of ``name`` from snapshot ``tag`` (a new one if None)."""
        if not 1 <= count <= MAX_FORK:
            raise InvalidInput(f"bad count {count}: fork 1 to {MAX_FORK} machines at a time")
        check_boot_timeout(boot_timeout)
        source = self.machines.get_machine(name)
        if source.config.network == "bridge":
            raise Conflict(
                f"machine {name!r} has bridged networking; its clones would share its "
                "address: fork a machine with user-mode networking"
            )
        if tag is None:
            tag = (await self.snapshot(name)).tag
        snaps = self._dir(source)
        info = snaps.get(tag)
        check_shape(source, info)
        path = snaps.path(tag)
        lock = self._template_locks.setdefault(source.id, asyncio.Lock())
        async with lock:
            if not snaps.get(tag).template:
                await self._make_template(source, path)
                snaps.mark_template(tag)
        names = self._clone_names(name, count)
        results = await asyncio.gather(
            *(self._clone(source, path, clone, boot_timeout) for clone in names),
            return_exceptions=True,
        )
        clones = [r for r in results if isinstance(r, VMInstance)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for clone in clones:  # all or nothing
                with contextlib.suppress(Exception):
                    await self.machines.delete(clone.name, force=True)
            raise errors[0]
        return clones

    def _clone_names(self, name: str, count: int) -> list[str]:
        taken = {vm.name for vm in self.machines.list_machines()}
        names: list[str] = []
        n = 1
        while len(names) < count:
            candidate = f"{name[:56]}-{n}"
            if candidate not in taken:
                names.append(candidate)
            n += 1
        return names

    async def _make_template(self, source: VMInstance, path: Path) -> None:
        """Load the snapshot's full state into a paused QEMU whose RAM is the shared file
        ``memory.ram``, and save its device state again with ``x-ignore-shared``."""
        m = self.machines
        hv = require_snapshotting(m.hypervisor(source.config.backend))
        helper_id = uuid.uuid4().hex
        run_dir = m.paths.machine_run_dir(helper_id)
        run_dir.mkdir(parents=True, mode=0o700)
        state_dir = path / "template-boot"
        state_dir.mkdir(exist_ok=True)
        ram = path / "memory.ram"
        ram.unlink(missing_ok=True)
        spec = m.machine_spec(source, helper_id, run_dir, state_dir, path / "data.img")
        spec = dataclasses.replace(
            spec,
            extra={
                # The same devices as the saved VM, without its host port forwards
                # (the source still holds those ports).
                **({"user_nic": "1"} if source.config.ports else {}),
                "incoming": "defer",
                "memory_file": str(ram),
                "memory_share": "on",
                "start_paused": "1",
            },
        )
        backend = m.hypervisor(source.config.backend)
        handle = await backend.start(spec)
        try:
            await hv.load_state(handle, path / "state", ignore_shared=False, resume=False)
            await hv.save_state(handle, path / "state.shared", ignore_shared=True)
        except BaseException:
            ram.unlink(missing_ok=True)
            raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(backend.kill(handle))
            shutil.rmtree(run_dir, ignore_errors=True)

    async def _clone(
        self, source: VMInstance, path: Path, name: str, boot_timeout: float
    ) -> VMInstance:
        m = self.machines
        # Host ports belong to the source; a clone gets none.
        vm = VMInstance(name=name, config=source.config.model_copy(update={"ports": ()}))
        async with m._operation(name, "being forked"):
            if m.store.find_machine(name) is not None:
                raise Conflict(f"a machine named {name!r} already exists")
            m.store.insert_machine(vm)
            try:
                m.machine_dir(vm).mkdir(parents=True, exist_ok=False)
                await copy_sparse(path / "data.img", m.data_disk(vm))
                restore = Restore(
                    state=path / "state.shared",
                    ignore_shared=True,
                    memory_file=path / "memory.ram",
                    memory_share=False,
                    hostname=name,
                    user_nic=bool(source.config.ports),
                )
                return await m._boot(vm, boot_timeout, restore)
            except BaseException:
                await m._discard(vm)
                raise
