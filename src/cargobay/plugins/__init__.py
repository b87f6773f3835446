"""Daemon plugins (seed 004 section 7.1): objects found through the ``cargobay.plugins``
entry-point group, initialized when the daemon starts and told when a machine starts and
stops.  A broken plugin is recorded and skipped; it never stops the daemon or a machine.
"""

from cargobay.plugins.base import (
    ENTRY_POINT_GROUP,
    Plugin,
    PluginContext,
    PluginInfo,
    PluginState,
)
from cargobay.plugins.manager import PluginManager

__all__ = [
    "ENTRY_POINT_GROUP",
    "Plugin",
    "PluginContext",
    "PluginInfo",
    "PluginManager",
    "PluginState",
]
