"""Loads the plugins of the ``cargobay.plugins`` entry-point group and calls their hooks.

Each step is fenced: an entry point that does not import, an object that is not a plugin,
an ``initialize`` that raises or hangs, and a hook that raises or hangs are logged with the
plugin's name and recorded on its :class:`PluginInfo`; the daemon and the machine carry on.
Every call is bounded by ``timeout`` seconds.  A sync hook runs in a worker thread, so a
hung one is abandoned (its thread keeps running) rather than blocking the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from cargobay.errors import PluginError
from cargobay.plugins.base import (
    ENTRY_POINT_GROUP,
    Plugin,
    PluginContext,
    PluginInfo,
    PluginState,
)

__all__ = ["PluginManager", "discover", "instantiate"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0


def discover(group: str = ENTRY_POINT_GROUP) -> list[EntryPoint]:
    """The group's entry points, sorted by name (one per name: the first found wins)."""
    seen: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        seen.setdefault(ep.name, ep)
    return [seen[name] for name in sorted(seen)]


def instantiate(ep: EntryPoint) -> Plugin:
    """Import the entry point; a class or factory is called with no arguments."""
    try:
        target = ep.load()
    except Exception as err:
        raise PluginError(f"cannot import {ep.value}: {type(err).__name__}: {err}") from err
    obj = target
    if inspect.isclass(target) or (callable(target) and not isinstance(target, Plugin)):
        try:
            obj = target()
        except Exception as err:
            raise PluginError(
                f"creating the plugin {ep.value}() raised {type(err).__name__}: {err}"
            ) from err
    if not isinstance(obj, Plugin):
        missing = [
            attr
            for attr in ("name", "version", "initialize", "on_vm_start", "on_vm_stop")
            if not hasattr(obj, attr)
        ]
        raise PluginError(f"{ep.value} is not a plugin: it lacks {', '.join(missing)}")
    return obj


async def _call(func: Callable[..., Any], arg: Any, timeout: float) -> None:
    async def run() -> None:
        if inspect.iscoroutinefunction(func):
            await func(arg)
            return
        result = await asyncio.to_thread(func, arg)
        if inspect.isawaitable(result):
            await result

    await asyncio.wait_for(run(), timeout)


def _describe(err: BaseException, timeout: float) -> str:
    if isinstance(err, TimeoutError):
        return f"did not finish within {timeout:g} s"
    return f"{type(err).__name__}: {err}"


class PluginManager:
    """The daemon's plugins.  ``load`` once at start; then ``vm_started``/``vm_stopped``
    (the machines service calls them) and ``infos`` (``GET /v1/plugins``)."""

    def __init__(self, group: str = ENTRY_POINT_GROUP, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.group = group
        self.timeout = timeout
        self._infos: list[PluginInfo] = []
        self._active: list[tuple[PluginInfo, Plugin]] = []

    def infos(self) -> list[PluginInfo]:
        return [info.model_copy() for info in self._infos]

    async def load(self, context_for: Callable[[str], PluginContext]) -> list[PluginInfo]:
        """Discover, import and initialize every plugin of the group.  ``context_for(name)``
        makes the context handed to the plugin called ``name``."""
        for ep in discover(self.group):
            dist = ep.dist.name if ep.dist is not None else None
            info = PluginInfo(
                entry_point=ep.name, value=ep.value, distribution=dist, state=PluginState.FAILED
            )
            self._infos.append(info)
            try:
                plugin = instantiate(ep)
                info.name = str(plugin.name)
                info.version = str(plugin.version)
                await _call(plugin.initialize, context_for(info.name), self.timeout)
            except PluginError as err:
                info.error = str(err)
            except Exception as err:
                info.error = f"initialize {_describe(err, self.timeout)}"
            if info.error is not None:
                log.warning("plugin %s (%s): %s", info.name or ep.name, ep.value, info.error)
                continue
            info.state = PluginState.ACTIVE
            self._active.append((info, plugin))
            log.info("plugin %s %s loaded (%s)", info.name, info.version, ep.value)
        return self.infos()

    async def vm_started(self, vm: Any) -> None:
        await self._hook("on_vm_start", vm)

    async def vm_stopped(self, vm: Any) -> None:
        await self._hook("on_vm_stop", vm)

    async def _hook(self, hook: str, vm: Any) -> None:
        """Call ``hook`` on every active plugin, concurrently; never raises (but lets a
        cancellation through)."""

        async def one(info: PluginInfo, plugin: Plugin) -> None:
            try:
                await _call(getattr(plugin, hook), vm, self.timeout)
            except Exception as err:
                info.hook_errors += 1
                info.last_hook_error = f"{hook}: {_describe(err, self.timeout)}"
                log.warning(
                    "plugin %s: %s(%s) %s",
                    info.name,
                    hook,
                    getattr(vm, "name", "?"),
                    _describe(err, self.timeout),
                )

        if self._active:
            await asyncio.gather(*(one(info, plugin) for info, plugin in self._active))
