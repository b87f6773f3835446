"""What a plugin is (a typing Protocol), what it is given, and how the daemon reports it.

A plugin is any object with ``name``, ``version``, ``initialize(context)``,
``on_vm_start(vm)`` and ``on_vm_stop(vm)``; each method may be a plain function or a
coroutine function.  The entry point names either such an object or a class/factory
that makes one when called with no arguments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from cargobay.paths import Paths

__all__ = ["ENTRY_POINT_GROUP", "Plugin", "PluginContext", "PluginInfo", "PluginState"]

ENTRY_POINT_GROUP = "cargobay.plugins"


@runtime_checkable
class Plugin(Protocol):
    """The seed's ``MCPAgentPlugin``; hooks may return an awaitable."""

    name: str
    version: str

    def initialize(self, context: PluginContext) -> Any: ...

    def on_vm_start(self, vm: Any) -> Any: ...

    def on_vm_stop(self, vm: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class PluginContext:
    """Handed to ``initialize``: where the daemon keeps things, a logger named after the
    plugin (``cargobay.plugins.<name>``), and the daemon's version."""

    paths: Paths
    logger: logging.Logger
    daemon_version: str


class PluginState(StrEnum):
    ACTIVE = "active"
    FAILED = "failed"
    """failed to load or initialize: its hooks are never called"""


class PluginInfo(BaseModel):
    """One plugin as ``GET /v1/plugins`` lists it."""

    entry_point: str = Field(description="the entry point's name in group cargobay.plugins")
    value: str = Field(description="what the entry point points at (module:attr)")
    distribution: str | None = None
    name: str | None = Field(default=None, description="the plugin's own name (None: never loaded)")
    version: str | None = None
    state: PluginState
    error: str | None = Field(default=None, description="why it failed to load or initialize")
    hook_errors: int = Field(default=0, description="hook calls that raised or timed out")
    last_hook_error: str | None = None
