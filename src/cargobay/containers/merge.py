"""Merge several async iterators into one, items in the order they arrive.

Each source runs in its own task and feeds a bounded queue (a slow consumer holds the
producers back).  The first error from any source ends the merge and is raised; when the
consumer stops early (or is cancelled), every source task is cancelled and awaited.
Used for the logs and stats of several containers at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

__all__ = ["merge"]

T = TypeVar("T")


async def merge(sources: Iterable[AsyncIterator[T]], *, maxsize: int = 256) -> AsyncIterator[T]:
    queue: asyncio.Queue[T | BaseException | None] = asyncio.Queue(maxsize=maxsize)

    async def pump(source: AsyncIterator[T]) -> None:
        try:
            async for item in source:
                await queue.put(item)
        except asyncio.CancelledError:
            raise  # the consumer is gone: put nothing (the queue may be full)
        except Exception as err:
            await queue.put(err)
        else:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(source)) for source in sources]
    running = len(tasks)
    try:
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
