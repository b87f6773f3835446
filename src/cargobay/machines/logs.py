"""A machine's logs from several sources, one stream (seed 004 section 5.2).

Sources:

- ``console``: the guest system, the serial console (kernel and cargobay-init);
- ``hypervisor``: QEMU's own log (``-D``, errors and warnings of the VM process);
- ``platform``: the daemon's log lines about this machine (its name or id appears in
  them): what CargoBay did to it, plugin errors included;
- ``app``: the deployed applications' output (``machines.deploy``), read in the guest by
  ``tail`` through the agent (``-F`` to follow); nothing when the machine is not running.

Asked for one source, the text is passed through as it is (the console log as before).
Asked for several, whole lines are written with a ``[source] `` prefix; with ``follow``
the sources are read concurrently and their lines interleave as they come.  ``tail``
counts lines per source.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from cargobay.errors import InvalidInput
from cargobay.machines.files import read_log

__all__ = ["SOURCES", "check_sources", "merged_log", "platform_log"]

SOURCES = ("console", "hypervisor", "platform", "app")


def check_sources(sources: Sequence[str]) -> list[str]:
    """The sources asked for, in order without repeats; ``all`` means every one."""
    chosen: list[str] = []
    for source in sources or ["console"]:
        names = SOURCES if source == "all" else (source,)
        for name in names:
            if name not in SOURCES:
                raise InvalidInput(f"bad log source {name!r}: use {', '.join(SOURCES)} or all")
            if name not in chosen:
                chosen.append(name)
    return chosen


async def _lines(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """Whole lines (with their newline) from text chunks; a last partial line is ended."""
    pending = ""
    async for chunk in chunks:
        pending += chunk
        *done, pending = pending.split("\n")
        for line in done:
            yield line + "\n"
    if pending:
        yield pending + "\n"


async def platform_log(
    path: Path,
    needles: Sequence[str],
    tail: int | None,
    follow: bool,
    still_running: Callable[[], bool],
) -> AsyncIterator[str]:
    """The lines of the daemon log that name the machine: the last ``tail`` of them
    (all when None), then, with ``follow``, new ones."""

    def wanted(line: str) -> bool:
        return any(needle in line for needle in needles)

    try:
        text = await asyncio.to_thread(path.read_text, errors="replace")
    except FileNotFoundError:
        text = ""
    matching = [line for line in text.splitlines() if wanted(line)]
    for line in matching if tail is None else matching[-tail:] if tail else []:
        yield line + "\n"
    if follow:
        async for line in _lines(read_log(path, 0, True, still_running)):
            if wanted(line):
                yield line


async def merged_log(streams: dict[str, AsyncIterator[str]], follow: bool) -> AsyncIterator[str]:
    """One source: its text as is.  Several: ``[source] line`` lines, source by source
    (or interleaved as they come with ``follow``)."""
    if len(streams) == 1:
        (only,) = streams.values()
        async for text in only:
            yield text
        return
    if not follow:
        for source, stream in streams.items():
            async for line in _lines(stream):
                yield f"[{source}] {line}"
        return
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1000)

    async def pump(source: str, stream: AsyncIterator[str]) -> None:
        try:
            async for line in _lines(stream):
                await queue.put(f"[{source}] {line}")
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(s, st)) for s, st in streams.items()]
    try:
        open_streams = len(tasks)
        while open_streams:
            item = await queue.get()
            if item is None:
                open_streams -= 1
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
