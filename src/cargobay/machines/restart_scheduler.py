"""Carries out restart policies (``machines.restart``) for the machines service.

``consider(vm)`` is called once the service has moved a machine whose VM process ended
on its own to ERROR.  If the machine's policy allows another restart, a task waits the
backoff and starts the machine again (``MachineService.start(automatic=True)``), unless
by then the user has acted: the machine must still be in ERROR with the same process end
on record.  A boot that fails is counted and retried the same way, until the policy's
limit.  ``close`` cancels what is pending (the daemon is going away).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from cargobay.errors import CargoBayError
from cargobay.machines.models import VMInstance, VMStateKind
from cargobay.machines.restart import backoff, parse_restart

if TYPE_CHECKING:
    from cargobay.machines.service import MachineService

__all__ = ["RestartScheduler"]

log = logging.getLogger(__name__)


class RestartScheduler:
    def __init__(self, service: MachineService) -> None:
        self._service = service
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def pending(self, vm_id: str) -> bool:
        task = self._tasks.get(vm_id)
        return task is not None and not task.done()

    def consider(self, vm: VMInstance) -> None:
        try:
            policy = parse_restart(vm.config.restart)
        except CargoBayError:
            return
        done = vm.runtime.restarts
        if not policy.allows(done) or self.pending(vm.id):
            if policy.mode != "no":
                log.warning("machine %s: no more restarts (%d done, %s)", vm.name, done, policy)
            return
        delay = backoff(done)
        log.info("machine %s: restarting in %.0f s (restart %d)", vm.name, delay, done + 1)
        self._tasks[vm.id] = asyncio.create_task(self._restart(vm.id, vm.name, delay))

    async def _restart(self, vm_id: str, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        service = self._service
        vm = service.store.get_machine_by_id(vm_id)
        if vm is None or vm.state.kind is not VMStateKind.ERROR:
            return  # removed, stopped or started by the user meanwhile
        counted = vm.runtime.model_copy(update={"restarts": vm.runtime.restarts + 1})
        service.store.save_machine(vm.model_copy(update={"runtime": counted}))
        try:
            await service.start(name, automatic=True)
            log.info("machine %s: restarted by its policy", name)
        except CargoBayError as err:
            log.warning("machine %s: the automatic restart failed: %s", name, err)
            current = service.store.get_machine_by_id(vm_id)
            if current is not None and current.state.kind is VMStateKind.ERROR:
                self._tasks.pop(vm_id, None)
                self.consider(current)
        finally:
            if self._tasks.get(vm_id) is asyncio.current_task():
                self._tasks.pop(vm_id, None)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
