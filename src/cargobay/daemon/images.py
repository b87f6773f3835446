"""The daemon's view of the image store: list, delete, and builds as event streams.

``cargobay.images.build_image`` is blocking (minutes on a first build), so it runs in a
worker thread; its progress callback hands events to the event loop through a queue.
When the client goes away mid-build, the next progress callback raises, which stops the
build (it cleans up its temporary files).  One build at a time per daemon: a second
request waits for the first (the builder also locks the store across processes, which
covers a build abandoned by its client that is still winding down).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from cargobay.images import BuildEvent, ImageManifest, ImageStore, build_image
from cargobay.images.build import KernelKind
from cargobay.images.recipes import recipe_for
from cargobay.paths import Paths

__all__ = ["BuildCancelled", "DaemonImages"]


class BuildCancelled(Exception):
    """Raised in the build thread when nobody waits for the build any more."""


class DaemonImages(ImageStore):
    """``ImageStore`` plus the catalog operations of the API (``ImageCatalog``)."""

    def __init__(self, paths: Paths) -> None:
        super().__init__(paths.images)
        self.paths = paths
        self._build_lock = asyncio.Lock()
        self._workers: set[asyncio.Task[None]] = set()

    def list_images(self) -> list[ImageManifest]:
        return self.list()

    def delete_image(self, name: str) -> None:
        self.remove(name)

    async def build_image(
        self, name: str, force: bool, kernel: KernelKind | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | BaseException | ImageManifest] = asyncio.Queue()
        cancelled = threading.Event()

        def progress(event: BuildEvent) -> None:
            if cancelled.is_set():
                raise BuildCancelled("the client stopped waiting for the build")
            loop.call_soon_threadsafe(
                queue.put_nowait,
                {
                    "type": "progress",
                    "step": event.step,
                    "fraction": event.fraction,
                    "message": event.message,
                },
            )

        def run() -> None:
            try:
                manifest = build_image(
                    self.paths,
                    name,
                    progress=progress,
                    force=force,
                    recipe=recipe_for(name, kernel),
                )
            except BaseException as err:  # handed to the loop, raised there
                loop.call_soon_threadsafe(queue.put_nowait, err)
            else:
                loop.call_soon_threadsafe(queue.put_nowait, manifest)

        async with self._build_lock:
            worker = asyncio.create_task(asyncio.to_thread(run))
            try:
                while True:
                    item = await queue.get()
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, ImageManifest):
                        yield {"type": "done", "image": item.model_dump(mode="json")}
                        return
                    yield item
            finally:
                # A build still running stops at its next progress report; its own lock
                # keeps a new build from overlapping it meanwhile.
                cancelled.set()
                self._workers.add(worker)
                worker.add_done_callback(self._workers.discard)
