"""The daemon's side of plugin loading: build each plugin's context and attach the
manager to the machines service, so its hooks run when machines start and stop."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import cargobay
from cargobay.plugins.base import PluginContext

if TYPE_CHECKING:
    from cargobay.daemon.app import DaemonState

__all__ = ["load_plugins"]


async def load_plugins(state: DaemonState) -> None:
    """Load ``state.plugins`` (never raises for a broken plugin) and hand it to the service."""

    def context_for(name: str) -> PluginContext:
        return PluginContext(
            paths=state.paths,
            logger=logging.getLogger(f"cargobay.plugins.{name}"),
            daemon_version=cargobay.__version__,
        )

    await state.plugins.load(context_for)
    state.service.hooks = state.plugins
