"""The daemon's host pool: ``TransportManager`` plus the saved list of hosts.

``cargobay host add ID URI`` validates the URI (``LibvirtUriError`` names the part that is
wrong), connects, and only then saves the host, so a typo or a host that is down is
reported at once and nothing is kept; ``keep_unreachable=True`` (``--keep``) saves it
anyway, in state ``failed``, for a host that is down for now.  At daemon start the saved
hosts reconnect in the background: one slow or dead host never delays the daemon or the
others.  ``host ls`` makes one round trip to every connected host and retries failed ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from cargobay.errors import Conflict, InvalidInput
from cargobay.store.sqlite import Store
from cargobay.vmcontrol.config import HostInfo, TransportConfig, TransportConfigError
from cargobay.vmcontrol.config import _validated as validated
from cargobay.vmcontrol.hosts import HostHealth
from cargobay.vmcontrol.manager import TransportManager

__all__ = ["HostRegistry"]

log = logging.getLogger(__name__)


class HostRegistry:
    def __init__(self, store: Store, config: TransportConfig | None = None) -> None:
        self.store = store
        self.manager = TransportManager(config)
        self._started: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Reconnect the saved hosts in the background."""
        saved = self.store.list_hosts()
        if not saved:
            return

        async def connect_all() -> None:
            async def one(host_id: str, uri: str, tags: list[str]) -> None:
                try:
                    info = HostInfo.model_validate({"id": host_id, "uri": uri, "tags": tags})
                    await self.manager.add_host(info)
                except Exception as err:  # one bad saved host must not stop the others
                    log.warning("saved host %s (%s) not added: %s", host_id, uri, err)

            await asyncio.gather(*(one(*row) for row in saved))

        self._started = asyncio.get_running_loop().create_task(connect_all())

    async def _ready(self) -> None:
        if self._started is not None:
            await asyncio.shield(self._started)

    async def add(
        self, host_id: str, uri: str, tags: Sequence[str] = (), *, keep_unreachable: bool = False
    ) -> HostHealth:
        await self._ready()
        try:
            data = {"id": host_id, "uri": uri, "tags": tuple(tags)}
            info = validated(HostInfo, data, f"host {host_id!r}")
        except TransportConfigError as err:
            raise InvalidInput(str(err)) from None
        if host_id in self.manager.host_ids():
            raise Conflict(f"host {host_id!r} already exists ({self.manager.host(host_id).uri})")
        health = await self.manager.add_host(info, require=not keep_unreachable)
        try:
            self.store.insert_host(info.id, str(info.uri), list(info.tags))
        except BaseException:
            with contextlib.suppress(Exception):
                await self.manager.remove_host(info.id)
            raise
        return health

    async def remove(self, host_id: str) -> None:
        await self._ready()
        self.manager.host(host_id)  # UnknownHost names the known ones
        await self.manager.remove_host(host_id)
        self.store.delete_host(host_id)

    async def list(self, *, check: bool = True) -> list[HostHealth]:
        await self._ready()
        return await self.manager.health(check=check)

    async def get(self, host_id: str) -> HostHealth:
        await self._ready()
        return await self.manager.host_health(host_id)

    async def close(self) -> None:
        if self._started is not None:
            self._started.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._started
        await self.manager.close()
