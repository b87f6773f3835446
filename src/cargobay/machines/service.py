"""The machines service: the lifecycle of VMs, persisted, with the seed's state machine.

``MachineService`` owns every machine's life: create (validate, persist, data disk,
boot), start, stop (graceful through the guest agent, forced after a timeout),
pause/resume, delete, exec, logs, status; it notices VM processes that die and re-adopts
running VMs when the daemon starts again.  The daemon's handlers only parse requests and
call it.

Invariants:

- Every state change is written to the store (``Store.transition``) *before* the action
  it announces starts, so a daemon killed at any point finds, on its next start, a state
  that says what may be half done, and a runtime handle for any VM process it launched:
  the handle is saved the moment the hypervisor returns it, before the boot wait.
- A machine whose create (or create-and-start) fails leaves nothing behind: the VM
  process is killed, the data disk and run directory removed and the row deleted.  A
  start of an existing machine that fails moves it to ERROR with the reason (its data
  disk is the user's and is kept).
- Lifecycle operations on one machine are serialised by a per-name lock; a second one
  arriving while one is in flight is refused at once with ``Conflict`` (naming the
  operation in flight) rather than queued behind a boot that may take minutes.
- One monitor task per live VM waits for its process to end (``process.py``); an end
  the service did not ask for moves the machine to ERROR.

Collaborators are injected, so tests run the real store, hypervisor, images and agent:
``hypervisor_factory(backend_name) -> Hypervisor``, ``images`` (``ImageSource``) and
``agent_connector`` (``AgentConnector``: ``wait_ready``/``connect`` returning an agent
client).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cargobay.errors import (
    CargoBayError,
    Conflict,
    GuestError,
    GuestTimeout,
    HypervisorError,
    InvalidInput,
)
from cargobay.hypervisors.base import Hypervisor, VMHandle, VMSpec, VMStatus
from cargobay.images.manifest import ImageManifest
from cargobay.machines import guest_files, network_service, shares
from cargobay.machines import logs as machine_logs
from cargobay.machines.agent import (
    AgentClientLike,
    AgentConnector,
    AgentPool,
    ExecEvent,
    ExecRequest,
    ImageSource,
    exec_events,
)
from cargobay.machines.app_service import app_logs, start_recorded_apps
from cargobay.machines.files import create_data_disk, read_log, tail_lines
from cargobay.machines.guest_files import MAX_FILE_BYTES, FileEntry
from cargobay.machines.models import (
    RuntimeInfo,
    VMInstance,
    VMState,
    VMStateKind,
)
from cargobay.machines.network import HostNetwork
from cargobay.machines.process import ProcessWatcher, process_alive, wait_process_exit
from cargobay.machines.restart_scheduler import RestartScheduler
from cargobay.machines.settings import Plan, grow_data_disk, plan_changes
from cargobay.machines.snapshot_boot import (
    load_restore,
    prepare_warm_start,
    restore_spec,
    set_hostname,
)
from cargobay.machines.snapshots import Restore
from cargobay.machines.validation import check_boot_timeout, check_host_ports, new_instance
from cargobay.paths import Paths
from cargobay.store import Store

__all__ = ["CONSOLE_TAIL_LINES", "MachineService"]

log = logging.getLogger(__name__)

CONSOLE_TAIL_LINES = 12
"""Console lines quoted in the error about a guest that never answered."""
AGENT_CONNECT_TIMEOUT = 10.0
AGENT_SHUTDOWN_TIMEOUT = 5.0

_RUNNING = VMState(kind=VMStateKind.RUNNING)
_PAUSED = VMState(kind=VMStateKind.PAUSED)
_STOPPING = VMState(kind=VMStateKind.STOPPING)
_STOPPED = VMState(kind=VMStateKind.STOPPED)
_CREATING = VMState(kind=VMStateKind.CREATING)
_LIVE = (VMStateKind.RUNNING, VMStateKind.PAUSED)


class MachineService:
    def __init__(
        self,
        paths: Paths,
        store: Store,
        hypervisor_factory: Callable[[str], Hypervisor],
        images: ImageSource,
        agent_connector: AgentConnector,
    ) -> None:
        self.paths = paths
        self.store = store
        self._hypervisor_factory = hypervisor_factory
        self._hypervisors: dict[str, Hypervisor] = {}
        self.images = images
        self._connector = agent_connector
        self._locks: dict[str, asyncio.Lock] = {}
        self._busy: dict[str, str] = {}
        self._agents = AgentPool(agent_connector)
        self._monitor = ProcessWatcher()
        self._restarts = RestartScheduler(self)
        self.host_network = HostNetwork()
        """Where bridged machines' devices and rules go (tests: a namespace of their own)."""
        self.hooks: Any = None
        """Plugin hooks (``cargobay.plugins.PluginManager``): ``await vm_started(vm)`` /
        ``vm_stopped(vm)``; they never raise."""

    # -- collaborators --------------------------------------------------------------------

    def hypervisor(self, backend: str) -> Hypervisor:
        hv = self._hypervisors.get(backend)
        if hv is None:
            hv = self._hypervisors[backend] = self._hypervisor_factory(backend)
        return hv

    def _image(self, name: str) -> tuple[Path, ImageManifest]:
        manifest = self.images.get(name)
        return self.images.path(name), manifest

    def machine_dir(self, vm: VMInstance) -> Path:
        return self.paths.machines / vm.id

    def data_disk(self, vm: VMInstance) -> Path:
        return self.machine_dir(vm) / "data.ext4"

    def console_log(self, vm: VMInstance) -> Path:
        if vm.runtime.console_log:
            return Path(vm.runtime.console_log)
        return self.machine_dir(vm) / "console.log"

    # -- locking --------------------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def _operation(self, name: str, what: str) -> AsyncIterator[None]:
        """Run a lifecycle operation on ``name``, refusing if another one is in flight."""
        lock = self._lock(name)
        if lock.locked():
            doing = self._busy.get(name, "busy")
            raise Conflict(
                f"machine {name!r} is {doing} right now; try again when that has finished"
            )
        async with lock:
            self._busy[name] = what
            try:
                yield
            finally:
                self._busy.pop(name, None)

    # -- startup and shutdown -------------------------------------------------------------

    async def recover(self) -> None:
        """Adopt the VMs a previous daemon left running; settle half-done operations.

        RUNNING/PAUSED with a live process: kept (monitor started, agent reconnected on
        first use).  Gone: ERROR.  STOPPING: finished.  CREATING: a first create that
        never finished is removed completely; an interrupted start becomes ERROR."""
        for vm in self.store.list_machines():
            async with self._lock(vm.name):
                try:
                    await self._recover_one(vm)
                except CargoBayError as err:
                    log.warning("recovering machine %s failed: %s", vm.name, err)

    async def _recover_one(self, vm: VMInstance) -> None:
        handle = _handle(vm)
        kind = vm.state.kind
        if kind in _LIVE:
            status = await self._status(vm, handle) if handle else VMStatus.STOPPED
            if status is VMStatus.STOPPED:
                await self._release(vm)
                self.store.transition(
                    vm,
                    VMState.error(
                        "the VM process ended while cargobayd was not running; "
                        f"see `cargobay vm logs {vm.name}`, then start it again"
                    ),
                    vm.runtime.model_copy(update={"handle": None}),
                )
                return
            assert handle is not None
            if status is VMStatus.PAUSED and kind is VMStateKind.RUNNING:
                vm = self.store.transition(vm, _PAUSED)
            elif status is VMStatus.RUNNING and kind is VMStateKind.PAUSED:
                vm = self.store.transition(vm, _RUNNING)
            log.info("adopted machine %s (pid %d)", vm.name, handle.pid)
            self._start_monitor(vm, handle)
        elif kind is VMStateKind.STOPPING:
            if handle:
                await self.hypervisor(vm.config.backend).kill(handle)
            await self._release(vm)
            self.store.transition(vm, _STOPPED, _stopped_runtime(vm))
        elif kind is VMStateKind.CREATING:
            if handle:
                await self.hypervisor(vm.config.backend).kill(handle)
            await self._release(vm)
            events = self.store.events(vm.id)
            if len(events) <= 1:
                self._remove_files(vm)
                self.store.delete_machine(vm.id)
                log.info("removed machine %s: its creation never finished", vm.name)
            else:
                self.store.transition(
                    vm,
                    VMState.error(
                        "cargobayd stopped while this machine was booting; "
                        f"start it again with `cargobay vm start {vm.name}`"
                    ),
                    vm.runtime.model_copy(update={"handle": None}),
                )

    async def close(self) -> None:
        """Stop watching and drop agent connections; the VMs keep running."""
        await self._restarts.close()
        await self._monitor.close()
        await self._agents.close()

    # -- queries --------------------------------------------------------------------------

    def list_machines(self) -> list[VMInstance]:
        return self.store.list_machines()

    def get_machine(self, name: str) -> VMInstance:
        return self.store.get_machine(name)

    def agent_ready(self, vm: VMInstance) -> bool:
        return vm.state.kind in _LIVE and self._agents.ready(vm.id)

    def machines_using_image(self, image: str) -> list[str]:
        return [vm.name for vm in self.store.list_machines() if vm.config.image == image]

    def accel(self) -> str | None:
        """The acceleration the most recently started live machine got, if any."""
        live = [vm for vm in self.store.list_machines() if vm.state.kind in _LIVE]
        live.sort(key=lambda vm: vm.runtime.started_at or vm.created_at)
        return live[-1].runtime.accel if live else None

    # -- create / start -------------------------------------------------------------------

    def validate(
        self,
        name: str,
        *,
        image: str = "default",
        cpus: int = 1,
        memory: str | int = "512MB",
        disk: str | int = "2GB",
        ports: list[str] | tuple[str, ...] = (),
        template: str | None = None,
        backend: str = "qemu",
    ) -> VMInstance:
        """Check a create request and return the machine it describes (not yet stored)."""
        vm = new_instance(
            name,
            image=image,
            cpus=cpus,
            memory=memory,
            disk=disk,
            ports=ports,
            template=template,
            backend=backend,
        )
        check_host_ports(vm, self.store.list_machines())
        return vm

    async def create(
        self, vm: VMInstance, *, start: bool = True, boot_timeout: float = 120.0
    ) -> VMInstance:
        """Persist a validated machine, make its data disk and (with ``start``) boot it.

        On any failure nothing is left: no VM process, no files, no row."""
        check_boot_timeout(boot_timeout)
        async with self._operation(vm.name, "being created"):
            if self.store.find_machine(vm.name) is not None:
                raise Conflict(
                    f"a machine named {vm.name!r} already exists; choose another name "
                    f"or remove it with `cargobay vm rm {vm.name}`"
                )
            image_dir, manifest = self._image(vm.config.image)
            vm = vm.model_copy(
                update={
                    "config": vm.config.model_copy(
                        update={
                            "kernel_path": str(image_dir / manifest.kernel.path),
                            "initrd_path": (
                                str(image_dir / manifest.initrd.path) if manifest.initrd else None
                            ),
                            "rootfs_path": str(image_dir / manifest.rootfs.path),
                        }
                    )
                }
            )
            self.store.insert_machine(vm)
            try:
                self.machine_dir(vm).mkdir(parents=True, exist_ok=False)
                await create_data_disk(self.data_disk(vm), vm.config.disk_mb)
                if start:
                    vm = await self._boot(vm, boot_timeout)
                else:
                    vm = self.store.transition(vm, _STOPPED)
            except BaseException:
                await self._discard(vm)
                raise
            return vm

    async def start(
        self,
        name: str,
        boot_timeout: float = 120.0,
        snapshot: str | None = None,
        *,
        automatic: bool = False,
    ) -> VMInstance:
        """Boot a stopped machine, or with ``snapshot`` warm-start it from that snapshot
        (its data disk is replaced by the snapshot's).  ``automatic``: a restart by the
        machine's restart policy, which keeps counting (a user's start resets the count)."""
        check_boot_timeout(boot_timeout)
        async with self._operation(name, "starting"):
            vm = self.store.get_machine(name)
            kind = vm.state.kind
            if kind is VMStateKind.RUNNING:
                raise Conflict(f"machine {name!r} is already running")
            if kind is VMStateKind.PAUSED:
                raise Conflict(
                    f"machine {name!r} is paused; resume it with `cargobay vm resume {name}`"
                )
            if kind not in (VMStateKind.STOPPED, VMStateKind.ERROR):
                raise Conflict(f"machine {name!r} is {kind.value}; wait for it to settle")
            handle = _handle(vm)
            if handle is not None:  # an ERROR machine whose process may linger
                await self.hypervisor(vm.config.backend).kill(handle)
            if not self.data_disk(vm).exists():
                raise Conflict(
                    f"the data disk of machine {name!r} is missing ({self.data_disk(vm)}); "
                    f"remove the machine with `cargobay vm rm {name}` and create it again"
                )
            restore = await prepare_warm_start(self, vm, snapshot) if snapshot else None
            vm = self.store.transition(vm, _CREATING, _stopped_runtime(vm, keep_restarts=automatic))
            try:
                return await self._boot(vm, boot_timeout, restore)
            except BaseException as err:
                reason = _first_line(str(err)) or type(err).__name__
                current = self.store.get_machine_by_id(vm.id)
                if current is not None and current.state.kind is VMStateKind.CREATING:
                    self.store.transition(current, VMState.error(reason), _stopped_runtime(current))
                raise

    async def _boot(
        self, vm: VMInstance, boot_timeout: float, restore: Restore | None = None
    ) -> VMInstance:
        """Launch the VM of a CREATING machine and wait for its agent; -> RUNNING.

        With ``restore`` the VM does not boot: it loads a saved state (a snapshot or a
        template, ``cargobay.machines.snapshots``) and its agent is reached afresh.
        On failure the VM process is killed and its run directory removed; the caller
        decides what becomes of the machine."""
        try:
            run_dir = self.paths.machine_run_dir(vm.id)
        except ValueError as err:  # the runtime directory is too long for socket paths
            raise HypervisorError(str(err)) from err
        self._clean_run_dir(vm)
        run_dir.mkdir(parents=True, mode=0o700)
        spec = self.machine_spec(vm, vm.id, run_dir, self.machine_dir(vm), self.data_disk(vm))
        spec, share_devs = await shares.attach(vm.config, spec)
        vm, spec = await network_service.attach(self, vm, spec)
        hv = self.hypervisor(vm.config.backend)
        if restore is not None:
            spec = restore_spec(spec, hv, restore)
        began = time.monotonic()
        started_at = datetime.now(UTC)
        try:
            handle = await hv.start(spec)
        except BaseException:
            await self._release(vm)
            raise
        try:
            # Saved before the wait: a daemon killed now finds the process on restart.
            vm = self.store.save_machine(
                vm.model_copy(
                    update={
                        "runtime": RuntimeInfo(
                            handle=handle.to_dict(),
                            started_at=started_at,
                            accel=handle.accel,
                            console_log=handle.console_log,
                            restarts=vm.runtime.restarts,
                            last_exit=vm.runtime.last_exit,
                        )
                    }
                )
            )
            if restore is not None:
                await load_restore(hv, handle, restore)
            remaining = boot_timeout - (time.monotonic() - began)
            agent = await self._wait_for_agent(vm, hv, handle, remaining, boot_timeout)
            if restore is None:
                await network_service.configure_guest(self, agent, vm)
                await shares.mount_with_agent(agent, vm.config, share_devs)
                await start_recorded_apps(agent, vm)
            if restore is not None and restore.hostname:
                await set_hostname(agent, restore.hostname)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(hv.kill(handle))
            await self._release(vm)
            raise
        boot_seconds = time.monotonic() - began
        try:
            vm = self.store.transition(
                vm, _RUNNING, vm.runtime.model_copy(update={"boot_seconds": boot_seconds})
            )
        except BaseException:
            await agent.close()
            with contextlib.suppress(Exception):
                await asyncio.shield(hv.kill(handle))
            await self._release(vm)
            raise
        self._agents.put(vm.id, agent)
        self._start_monitor(vm, handle)
        log.info("machine %s is running (pid %d, %.1f s)", vm.name, handle.pid, boot_seconds)
        if self.hooks is not None:
            await self.hooks.vm_started(vm)
        return vm

    def machine_spec(
        self, vm: VMInstance, vm_id: str, run_dir: Path, state_dir: Path, data_disk: Path
    ) -> VMSpec:
        """What the hypervisor boots for ``vm`` (its image, shape and ports)."""
        image_dir, manifest = self._image(vm.config.image)
        return VMSpec(
            vm_id=vm_id,
            name=vm.name,
            cpus=vm.config.cpus,
            memory_mb=vm.config.memory_mb,
            kernel=image_dir / manifest.kernel.path,
            initrd=image_dir / manifest.initrd.path if manifest.initrd else None,
            rootfs=image_dir / manifest.rootfs.path,
            data_disk=data_disk,
            run_dir=run_dir,
            state_dir=state_dir,
            cmdline=manifest.cmdline,
            extra={"ports": ",".join(str(p) for p in vm.config.ports)} if vm.config.ports else {},
        )

    async def _wait_for_agent(
        self,
        vm: VMInstance,
        hv: Hypervisor,
        handle: VMHandle,
        remaining: float,
        boot_timeout: float,
    ) -> AgentClientLike:
        """The agent once it answers; fails early if the VM process ends first."""
        ready = asyncio.create_task(
            self._connector.wait_ready(handle.agent_address, max(remaining, 0.1))
        )
        gone = asyncio.create_task(wait_process_exit(handle.pid))
        try:
            done, _ = await asyncio.wait(
                {ready, gone}, timeout=max(remaining, 0.1) + 2, return_when="FIRST_COMPLETED"
            )
        finally:
            gone.cancel()
            if not ready.done():
                ready.cancel()
                with contextlib.suppress(BaseException):
                    await ready
        log_path = Path(handle.console_log)
        if ready in done:
            try:
                return ready.result()
            except (GuestTimeout, TimeoutError) as err:
                raise GuestTimeout(_never_answered(vm.name, boot_timeout, log_path)) from err
            except CargoBayError as err:
                raise GuestError(
                    f"machine {vm.name!r}: the guest agent failed during boot: "
                    f"{_first_line(str(err))}" + _console_tail(log_path)
                ) from err
        if gone in done:
            raise HypervisorError(
                f"machine {vm.name!r}: the VM process exited during boot; "
                f"see the console log below" + _console_tail(log_path)
            )
        raise GuestTimeout(_never_answered(vm.name, boot_timeout, log_path))

    async def _discard(self, vm: VMInstance) -> None:
        """Remove every trace of a machine whose creation failed."""
        current = self.store.get_machine_by_id(vm.id) or vm
        handle = _handle(current)
        if handle is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.hypervisor(vm.config.backend).kill(handle))
        self._monitor.unwatch(vm.id)
        await self._agents.drop(vm.id)
        await self._release(vm)
        self._remove_files(vm)
        self.store.delete_machine(vm.id)

    async def configure(self, name: str, changes: dict[str, object]) -> tuple[VMInstance, Plan]:
        """Change settings of machine ``name`` (``machines.settings``): all or none."""
        async with self._operation(name, "being reconfigured"):
            vm = self.store.get_machine(name)
            plan = plan_changes(vm, changes, self.store.list_machines())
            if plan.grow_disk_to_mb is not None:
                await grow_data_disk(self.data_disk(vm), plan.grow_disk_to_mb)
            return self.store.save_machine(vm.model_copy(update={"config": plan.config})), plan

    # -- stop / pause / resume / delete ---------------------------------------------------

    async def stop(self, name: str, force: bool = False, timeout: float = 10.0) -> VMInstance:
        if timeout < 0 or timeout > 3600:
            raise InvalidInput(f"bad timeout {timeout}: use 0 to 3600 seconds")
        async with self._operation(name, "stopping"):
            return await self._stop(self.store.get_machine(name), force, timeout)

    async def _stop(self, vm: VMInstance, force: bool, timeout: float) -> VMInstance:
        kind = vm.state.kind
        if kind is VMStateKind.STOPPED:
            return vm
        if kind is VMStateKind.CREATING:
            raise Conflict(f"machine {vm.name!r} is being created; wait for it to finish")
        if kind is not VMStateKind.STOPPING:
            vm = self.store.transition(vm, _STOPPING)
        handle = _handle(vm)
        self._monitor.unwatch(vm.id)
        if handle is not None:
            hv = self.hypervisor(vm.config.backend)
            if force or kind is VMStateKind.ERROR:
                await hv.kill(handle)
            else:
                await self._graceful_stop(vm, hv, handle, timeout)
        await self._agents.drop(vm.id)
        await self._release(vm)
        vm = self.store.transition(vm, _STOPPED, _stopped_runtime(vm, keep_restarts=False))
        if self.hooks is not None:
            await self.hooks.vm_stopped(vm)
        return vm

    async def _graceful_stop(
        self, vm: VMInstance, hv: Hypervisor, handle: VMHandle, timeout: float
    ) -> None:
        """Ask the guest to power off (agent, else the hypervisor); kill after ``timeout``."""
        deadline = time.monotonic() + timeout
        if not process_alive(handle.pid):
            await hv.kill(handle)  # lets the backend reap and clean up
            return
        if vm.state.kind is VMStateKind.PAUSED or await self._status(vm, handle) is VMStatus.PAUSED:
            with contextlib.suppress(CargoBayError):
                await hv.resume(handle)
        asked = False
        try:
            agent = await asyncio.wait_for(
                self._agent(vm, handle), min(AGENT_CONNECT_TIMEOUT, max(timeout, 0.1))
            )
            await asyncio.wait_for(agent.shutdown(), min(AGENT_SHUTDOWN_TIMEOUT, max(timeout, 0.1)))
            asked = True
        except (CargoBayError, TimeoutError) as err:
            log.info("machine %s: agent shutdown failed (%s); using the hypervisor", vm.name, err)
        if asked:
            log.debug("machine %s: the agent accepted the shutdown", vm.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    wait_process_exit(handle.pid), max(deadline - time.monotonic(), 0.0)
                )
            log.debug("machine %s: VM process gone: %s", vm.name, not process_alive(handle.pid))
            await hv.kill(handle)  # no-op if it powered off; reaps the process
        else:
            await hv.stop(handle, timeout=max(deadline - time.monotonic(), 0.0))

    async def pause(self, name: str) -> VMInstance:
        async with self._operation(name, "pausing"):
            vm = self.store.get_machine(name)
            if vm.state.kind is VMStateKind.PAUSED:
                return vm
            if vm.state.kind is not VMStateKind.RUNNING:
                raise Conflict(f"machine {name!r} is {vm.state}; only a running machine pauses")
            hv = self.hypervisor(vm.config.backend)
            if not hv.features.pause:
                raise Conflict(f"the {hv.name} backend cannot pause machines")
            handle = _require_handle(vm)
            vm = self.store.transition(vm, _PAUSED)
            try:
                await hv.pause(handle)
            except CargoBayError as err:
                await self._after_failed_action(vm, handle, _RUNNING, err)
                raise
            return vm

    async def resume(self, name: str) -> VMInstance:
        async with self._operation(name, "resuming"):
            vm = self.store.get_machine(name)
            if vm.state.kind is VMStateKind.RUNNING:
                return vm
            if vm.state.kind is not VMStateKind.PAUSED:
                raise Conflict(f"machine {name!r} is {vm.state}; only a paused machine resumes")
            hv = self.hypervisor(vm.config.backend)
            handle = _require_handle(vm)
            vm = self.store.transition(vm, _RUNNING)
            try:
                await hv.resume(handle)
            except CargoBayError as err:
                await self._after_failed_action(vm, handle, _PAUSED, err)
                raise
            return vm

    async def _after_failed_action(
        self, vm: VMInstance, handle: VMHandle, back: VMState, err: Exception
    ) -> None:
        """A pause/resume failed after its state was persisted: go back, or to ERROR."""
        status = await self._status(vm, handle)
        expected = VMStatus.RUNNING if back.kind is VMStateKind.RUNNING else VMStatus.PAUSED
        if status is expected:
            self.store.transition(vm, back)
        else:
            self.store.transition(vm, VMState.error(_first_line(str(err))))

    async def delete(self, name: str, force: bool = False) -> None:
        async with self._operation(name, "being deleted"):
            vm = self.store.get_machine(name)
            kind = vm.state.kind
            if kind in (*_LIVE, VMStateKind.STOPPING, VMStateKind.CREATING):
                if not force:
                    raise Conflict(
                        f"machine {name!r} is {kind.value}; stop it first with "
                        f"`cargobay vm stop {name}` or delete it with --force"
                    )
                if kind is VMStateKind.CREATING:
                    await self._discard(vm)
                    return
                vm = await self._stop(vm, force=True, timeout=0)
            handle = _handle(vm)
            if handle is not None:
                await self.hypervisor(vm.config.backend).kill(handle)
            self._monitor.unwatch(vm.id)
            await self._agents.drop(vm.id)
            await self._release(vm)
            self._remove_files(vm)
            self.store.delete_machine(vm.id)

    # -- exec and logs --------------------------------------------------------------------

    async def exec(self, name: str, request: ExecRequest) -> AsyncIterator[ExecEvent]:
        """Check the request and reach the agent, then return the command's events:
        started, output chunks, exit.  Errors before the command runs raise here."""
        if not request.argv or not all(isinstance(a, str) for a in request.argv):
            raise InvalidInput("exec needs a command: argv must be a non-empty list of strings")
        vm = self._running(name)
        agent = await self._agent(vm, _require_handle(vm))
        return self._exec_events(vm, agent, request)

    def _running(self, name: str) -> VMInstance:
        """The machine, if it is running (``Conflict`` naming the way out if not)."""
        vm = self.store.get_machine(name)
        if vm.state.kind is VMStateKind.PAUSED:
            raise Conflict(
                f"machine {name!r} is paused; resume it with `cargobay vm resume {name}`"
            )
        if vm.state.kind is not VMStateKind.RUNNING:
            raise Conflict(
                f"machine {name!r} is {vm.state}; start it with `cargobay vm start {name}`"
            )
        return vm

    async def _exec_events(
        self, vm: VMInstance, agent: AgentClientLike, request: ExecRequest
    ) -> AsyncIterator[ExecEvent]:
        try:
            async for event in exec_events(agent, request):
                yield event
        except GuestError:
            if agent.closed:
                await self._agents.drop(vm.id, agent)
            raise

    async def logs(
        self,
        name: str,
        tail: int | None = None,
        follow: bool = False,
        sources: Sequence[str] = ("console",),
    ) -> AsyncIterator[str]:
        """The console log (its last ``tail`` lines), then with ``follow`` what the guest
        prints next, until the machine is no longer running.  Other ``sources``
        (``machines.logs``): the hypervisor's log, the daemon's lines about the machine."""
        if tail is not None and tail < 0:
            raise InvalidInput(f"bad tail {tail}: use a number of lines, 0 or more")
        chosen = machine_logs.check_sources(sources)
        vm = self.store.get_machine(name)

        def still_running() -> bool:
            current = self.store.get_machine_by_id(vm.id)
            return current is not None and current.state.kind in (*_LIVE, VMStateKind.CREATING)

        files = {"console": self.console_log(vm), "hypervisor": self.machine_dir(vm) / "qemu.log"}
        streams = {
            s: read_log(files[s], tail, follow, still_running)
            if s in files
            else app_logs(self, vm, tail, follow)
            if s == "app"
            else machine_logs.platform_log(
                self.paths.daemon_log, (vm.name, vm.id), tail, follow, still_running
            )
            for s in chosen
        }
        async for text in machine_logs.merged_log(streams, follow):
            yield text

    # -- files in the guest (rules and error translation: guest_files) -------------------

    @contextlib.asynccontextmanager
    async def _guest(self, name: str) -> AsyncIterator[AgentClientLike]:
        """The agent of running machine ``name``; dropped if a call finds it broken."""
        vm = self._running(name)
        agent = await self._agent(vm, _require_handle(vm))
        try:
            yield agent
        except GuestError:
            if agent.closed:
                await self._agents.drop(vm.id, agent)
            raise

    async def read_file(self, name: str, path: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
        guest_files.check_guest_path(path)
        async with self._guest(name) as agent:
            return await guest_files.read_file(agent, name, path, max_bytes)

    async def write_file(
        self, name: str, path: str, data: bytes, *, mode: int | None = None, mkdirs: bool = False
    ) -> int:
        guest_files.check_guest_path(path)
        guest_files.check_mode(mode)
        async with self._guest(name) as agent:
            return await guest_files.write_file(agent, name, path, data, mode=mode, mkdirs=mkdirs)

    async def list_files(self, name: str, path: str) -> list[FileEntry]:
        guest_files.check_guest_path(path)
        async with self._guest(name) as agent:
            return await guest_files.list_dir(agent, name, path)

    async def open_guest_socket(self, name: str, path: str) -> object:
        """A byte stream (a yamux ``Stream``) to the Unix socket ``path`` in running
        machine ``name``: the agent's ``unix.connect``, used by the Docker socket
        forwarder (``cargobay.dockersock``) once per client connection."""
        async with self._guest(name) as agent:
            return await agent.connect_unix(path)

    # -- agent connections and the process monitor ------------------------------------

    async def _agent(self, vm: VMInstance, handle: VMHandle) -> AgentClientLike:
        """The machine's agent connection, connecting (again) when there is none."""
        try:
            return await self._agents.get(vm.id, handle.agent_address, AGENT_CONNECT_TIMEOUT)
        except CargoBayError as err:
            raise GuestError(
                f"cannot reach the guest agent of machine {vm.name!r}: "
                f"{_first_line(str(err))}; check `cargobay vm logs {vm.name}` or restart it"
            ) from err

    def _start_monitor(self, vm: VMInstance, handle: VMHandle) -> None:
        name, vm_id = vm.name, vm.id
        self._monitor.watch(vm_id, handle.pid, lambda: self._process_ended(name, vm_id, handle))

    async def _process_ended(self, name: str, vm_id: str, handle: VMHandle) -> None:
        """The VM process ended without being asked to: the machine is in ERROR."""
        async with self._lock(name):
            vm = self.store.get_machine_by_id(vm_id)
            if vm is None or vm.state.kind not in _LIVE:
                return
            current = _handle(vm)
            if current is None or current.pid != handle.pid:
                return
            log.warning("machine %s: the VM process %d ended unexpectedly", name, handle.pid)
            with contextlib.suppress(Exception):
                await self.hypervisor(vm.config.backend).kill(handle)  # reap, clean up
            await self._agents.drop(vm_id)
            await self._release(vm)
            ended = f"the VM process (pid {handle.pid}) ended unexpectedly"
            vm = self.store.transition(
                vm,
                VMState.error(
                    f"{ended}; see `cargobay vm logs {name}`, then start it again with "
                    f"`cargobay vm start {name}`"
                ),
                vm.runtime.model_copy(update={"handle": None, "last_exit": ended}),
            )
            if self.hooks is not None:
                await self.hooks.vm_stopped(vm)
            self._restarts.consider(vm)

    # -- helpers --------------------------------------------------------------------------

    async def _status(self, vm: VMInstance, handle: VMHandle) -> VMStatus:
        try:
            return await self.hypervisor(vm.config.backend).status(handle)
        except CargoBayError as err:
            log.warning("machine %s: status failed: %s", vm.name, err)
            return VMStatus.UNKNOWN if process_alive(handle.pid) else VMStatus.STOPPED

    async def _release(self, vm: VMInstance) -> None:
        """What a VM process held once it is gone: its run directory, its TAP device and
        its port forwards (bridged networking)."""
        self._clean_run_dir(vm)
        if vm.config.network == "bridge":
            try:
                await asyncio.shield(network_service.detach(self, vm))
            except Exception as err:
                log.warning("machine %s: network cleanup failed: %s", vm.name, err)

    def _clean_run_dir(self, vm: VMInstance) -> None:
        with contextlib.suppress(ValueError):
            shutil.rmtree(self.paths.machine_run_dir(vm.id), ignore_errors=True)

    def _remove_files(self, vm: VMInstance) -> None:
        shutil.rmtree(self.machine_dir(vm), ignore_errors=True)


# -- module helpers -----------------------------------------------------------------------


def _handle(vm: VMInstance) -> VMHandle | None:
    data = vm.runtime.handle
    return VMHandle.from_dict(data) if data else None


def _require_handle(vm: VMInstance) -> VMHandle:
    handle = _handle(vm)
    if handle is None:
        raise Conflict(
            f"machine {vm.name!r} has no VM process on record; stop it with "
            f"`cargobay vm stop {vm.name}` and start it again"
        )
    return handle


def _stopped_runtime(vm: VMInstance, *, keep_restarts: bool = True) -> RuntimeInfo:
    """What is kept of the runtime record once the VM process is gone (the automatic
    restart count too, unless the user acted: ``keep_restarts=False``)."""
    if not keep_restarts:
        return RuntimeInfo(console_log=vm.runtime.console_log)
    return RuntimeInfo(
        console_log=vm.runtime.console_log,
        restarts=vm.runtime.restarts,
        last_exit=vm.runtime.last_exit,
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _console_tail(path: Path) -> str:
    lines = tail_lines(path, CONSOLE_TAIL_LINES)
    if not lines:
        return f"\n(the console log {path} is empty)"
    return f"\nlast console lines ({path}):\n" + "\n".join("  " + line for line in lines)


def _never_answered(name: str, timeout: float, console: Path) -> str:
    return (
        f"machine {name!r}: the guest agent did not answer within {timeout:.0f} s; "
        "check the console log below, or allow more time with --boot-timeout"
        + _console_tail(console)
    )
