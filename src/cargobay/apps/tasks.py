"""Deployment tasks whose progress can be followed (seed 002: deployment_service).

A task runs in the background (an ``asyncio.Task`` owned by the :class:`TaskManager`);
it reports through a :class:`TaskReporter`: ``step(name)``, ``progress(percent)``,
``log(line)``.  Every report becomes a numbered :class:`TaskEvent` kept with the task, so
a client that follows late (or reconnects with ``since``) still sees every event from
the beginning, then waits for new ones until the final ``done`` or ``error``.

Tasks live in memory in the daemon: a restart forgets them (the instance's own status in
the store says how the last deploy ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from cargobay.apps.models import DeploymentTask, TaskEvent, TaskState, utcnow
from cargobay.errors import AppConflict, AppNotFound, CargoBayError

__all__ = ["TaskManager", "TaskReporter"]

log = logging.getLogger(__name__)

KEEP_FINISHED = 100
"""Finished tasks kept for ``GET /v1/apps/tasks`` (oldest forgotten first)."""


class _Record:
    def __init__(self, task: DeploymentTask) -> None:
        self.task = task
        self.events: list[TaskEvent] = []
        self.waker = asyncio.Event()  # set (and replaced) on every new event
        self.runner: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.task.state in (TaskState.SUCCEEDED, TaskState.FAILED)


class TaskReporter:
    """What a running task uses to report; ``steps`` are the planned step names (the
    percentage of a step is spread over its share of the whole)."""

    def __init__(self, record: _Record) -> None:
        self._record = record

    def _add(self, type_: str, message: str = "") -> None:
        record = self._record
        event = TaskEvent(
            type=type_,  # type: ignore[arg-type]
            task_id=record.task.id,
            seq=len(record.events),
            message=message,
            step=record.task.step,
            percent=round(record.task.percent, 1),
        )
        record.events.append(event)
        waker, record.waker = record.waker, asyncio.Event()
        waker.set()

    def step(self, name: str, message: str = "") -> None:
        task = self._record.task
        if name not in task.steps:
            task.steps.append(name)
        task.step = name
        task.percent = max(task.percent, 100.0 * task.steps.index(name) / len(task.steps))
        self._add("step", message or name)

    def progress(self, fraction: float, message: str = "") -> None:
        """``fraction`` (0..1) of the current step is done."""
        task = self._record.task
        if task.step is None:
            return
        share = 100.0 / len(task.steps)
        base = share * task.steps.index(task.step)
        task.percent = max(task.percent, min(100.0, base + share * max(0.0, min(1.0, fraction))))
        self._add("progress", message)

    def log(self, line: str) -> None:
        self._record.task.log.append(line)
        if len(self._record.task.log) > 2000:
            del self._record.task.log[:500]
        self._add("log", line)


class TaskManager:
    """The daemon's deployment tasks; at most one unfinished task per instance."""

    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}

    def start(
        self,
        task: DeploymentTask,
        steps: Sequence[str],
        work: Callable[[TaskReporter], Awaitable[str]],
    ) -> DeploymentTask:
        """Run ``work`` in the background; its result is the ``done`` message.  A
        ``CargoBayError`` (or anything else) fails the task with its message."""
        for other in self._records.values():
            if other.task.instance_id == task.instance_id and not other.finished:
                raise AppConflict(
                    f"app instance {task.instance_name!r} already has a {other.task.kind} "
                    f"task running ({other.task.id}); follow it with `cargobay app task "
                    f"{other.task.id}` or wait for it"
                )
        task.steps = list(steps)
        task.state = TaskState.RUNNING
        record = _Record(task)
        self._records[task.id] = record
        self._forget_old()
        reporter = TaskReporter(record)

        async def run() -> None:
            try:
                message = await work(reporter)
            except asyncio.CancelledError:
                task.state, task.error = TaskState.FAILED, "cancelled (the daemon stopped)"
                task.finished_at = utcnow()
                reporter._add("error", task.error)
                raise
            except Exception as err:  # the task's failure is its result
                if not isinstance(err, CargoBayError):
                    log.exception("task %s failed", task.id)
                task.state, task.error = TaskState.FAILED, str(err)
                task.finished_at = utcnow()
                reporter._add("error", str(err))
            else:
                task.state, task.percent, task.finished_at = TaskState.SUCCEEDED, 100.0, utcnow()
                reporter._add("done", message)

        record.runner = asyncio.get_running_loop().create_task(run())
        return task

    def _forget_old(self) -> None:
        finished = [r for r in self._records.values() if r.finished]
        for record in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._records[record.task.id]

    def get(self, task_id: str) -> DeploymentTask:
        return self._record(task_id).task

    def _record(self, task_id: str) -> _Record:
        record = self._records.get(task_id)
        if record is None:
            raise AppNotFound(f"no deployment task {task_id!r} (tasks are forgotten on restart)")
        return record

    def list(self, instance_id: str | None = None) -> list[DeploymentTask]:
        return [
            r.task
            for r in self._records.values()
            if instance_id is None or r.task.instance_id == instance_id
        ]

    async def follow(self, task_id: str, since: int = 0) -> AsyncIterator[TaskEvent]:
        """Every event from ``since`` on, then new ones until the task finishes."""
        record = self._record(task_id)
        seq = since
        while True:
            while seq < len(record.events):
                event = record.events[seq]
                seq += 1
                yield event
                if event.type in ("done", "error"):
                    return
            if record.finished and seq >= len(record.events):
                return
            waker = record.waker
            if seq < len(record.events):
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), timeout=5.0)

    async def wait(self, task_id: str) -> DeploymentTask:
        record = self._record(task_id)
        if record.runner is not None:
            await asyncio.gather(record.runner, return_exceptions=True)
        return record.task

    async def close(self) -> None:
        """Cancel unfinished tasks (daemon shutdown)."""
        runners = [r.runner for r in self._records.values() if r.runner and not r.runner.done()]
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
