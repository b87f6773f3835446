"""The process-wide libvirt event loop: libvirtaio on an asyncio loop of its own thread.

libvirt needs an event loop implementation for keepalive, close callbacks and domain
events, and it can be registered only once per process: the C library keeps the first
one.  Binding it to the caller's asyncio loop (plain ``virEventRegisterAsyncIOImpl()``)
would tie every libvirt connection of the process to whichever loop happened to come
first, and break as soon as that loop closes (every ``asyncio.run`` in the CLI, every
test).  So the implementation is libvirtaio, as the house plan asks, but on a dedicated
asyncio loop in a daemon thread, started on first use.  Callbacks arrive on that thread;
``HostConnection`` hands them to its owner's loop with ``call_soon_threadsafe``.

Blocking libvirt calls (open, lookups, defineXML ...) do not run here: they run in worker
threads (``asyncio.to_thread``) of the caller's loop, so a slow host never stalls the
event dispatch of the others.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

__all__ = ["ensure_event_loop", "import_libvirt"]

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def import_libvirt() -> Any:
    """The ``libvirt`` module, or an error that says how to install it."""
    from cargobay.vmcontrol.hosts import LibvirtMissing

    try:
        import libvirt
    except ImportError as err:
        raise LibvirtMissing(
            "libvirt-python is not installed: install the Debian packages libvirt-dev and "
            "pkg-config, then `pip install libvirt-python` (scripts/setup.sh test does both)"
        ) from err
    # errors come back as exceptions; without a handler libvirt also prints each to stderr
    libvirt.registerErrorHandler(_quiet, None)
    return libvirt


def _noop() -> None:
    return None


def _quiet(_ctx: object, _err: object) -> None:
    return None


def ensure_event_loop() -> asyncio.AbstractEventLoop:
    """Start the libvirt event thread once; the loop it runs."""
    global _loop
    with _lock:
        if _loop is not None:
            return _loop
        import_libvirt()
        import libvirtaio

        ready = threading.Event()
        holder: dict[str, asyncio.AbstractEventLoop] = {}

        class WakingImpl(libvirtaio.virEventAsyncIOImpl):  # type: ignore[misc]
            """libvirt adds and changes watches from whatever thread makes a call (our
            worker threads); libvirtaio applies them to the loop directly, which a loop
            asleep in select() does not notice.  Each change also wakes the loop."""

            def _wake(self) -> None:
                if threading.current_thread() is not thread:
                    self.loop.call_soon_threadsafe(_noop)

            def _add_handle(self, *args: Any) -> int:
                result: int = super()._add_handle(*args)
                self._wake()
                return result

            def _update_handle(self, *args: Any) -> None:
                super()._update_handle(*args)
                self._wake()

            def _remove_handle(self, *args: Any) -> int:
                result: int = super()._remove_handle(*args)
                self._wake()
                return result

            def _add_timeout(self, *args: Any) -> int:
                result: int = super()._add_timeout(*args)
                self._wake()
                return result

            def _update_timeout(self, *args: Any) -> None:
                super()._update_timeout(*args)
                self._wake()

            def _remove_timeout(self, *args: Any) -> int:
                result: int = super()._remove_timeout(*args)
                self._wake()
                return result

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            WakingImpl(loop=loop).register()
            holder["loop"] = loop
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        thread.start()
        ready.wait()
        _loop = holder["loop"]
        return _loop
