"""Waiting for a VM process to end, whether or not it is our child.

After a daemon restart the QEMU processes it adopts are no longer its children, so
``waitpid`` cannot be used.  A pidfd (Linux 5.3+) becomes readable when the process
exits (a zombie counts as exited), and works for any process we may signal; where pidfds
are unavailable we poll ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

__all__ = ["ProcessWatcher", "process_alive", "wait_process_exit"]


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # "pid (comm) S ...": the state follows the last ')' (comm may contain ')').
    state = stat.rpartition(")")[2].split()[:1]
    return state != ["Z"] and state != ["X"]


async def wait_process_exit(pid: int, poll_interval: float = 1.0) -> None:
    """Return once process ``pid`` has exited (at once if it does not exist)."""
    if not process_alive(pid):
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (OSError, AttributeError):
        while process_alive(pid):  # noqa: ASYNC110 - nothing to wait on but time
            await asyncio.sleep(poll_interval)
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    try:
        loop.add_reader(fd, readable)
        try:
            # The pidfd is the fast path; the poll guards against a missed wakeup.
            while process_alive(pid):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), timeout=poll_interval * 5)
                if exited.done():
                    return
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


class ProcessWatcher:
    """One task per watched process: when it ends, the callback runs (once).

    ``unwatch`` (before an end someone asked for) cancels the task, so the callback only
    sees ends nobody expected."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    def watch(self, key: str, pid: int, on_exit: Callable[[], Awaitable[None]]) -> None:
        if self._closed:
            return
        self.unwatch(key)
        self._tasks[key] = asyncio.create_task(self._run(key, pid, on_exit), name=f"watch-{key}")

    def unwatch(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _run(self, key: str, pid: int, on_exit: Callable[[], Awaitable[None]]) -> None:
        await wait_process_exit(pid)
        if self._tasks.get(key) is asyncio.current_task():
            del self._tasks[key]
        await on_exit()

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
