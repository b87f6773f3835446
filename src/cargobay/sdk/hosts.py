"""SDK calls for the libvirt host pool (``/v1/hosts``)::

with CargoBayClient() as client:
    hosts = HostsClient(client)
    hosts.add("lab1", "qemu+ssh://root@lab1/system", tags=["lab"])
    for host in hosts.list():
        print(host["id"], host["state"], host["last_check_ms"])
    hosts.remove("lab1")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cargobay.sdk.client import AsyncCargoBayClient, CargoBayClient, _Call, _seg

__all__ = ["AsyncHostsClient", "HostsClient"]

PREFIX = "/v1/hosts"
# adding a host waits for its connection (the pool's connect timeout, 10 s by default)
ADD_TIMEOUT = 60.0


class _Calls:
    @staticmethod
    def list() -> _Call:
        return _Call("GET", PREFIX, timeout=ADD_TIMEOUT)

    @staticmethod
    def get(host_id: str) -> _Call:
        return _Call("GET", f"{PREFIX}/{_seg(host_id)}", timeout=ADD_TIMEOUT)

    @staticmethod
    def add(host_id: str, uri: str, tags: Sequence[str], keep_unreachable: bool) -> _Call:
        body = {"id": host_id, "uri": uri, "tags": list(tags), "keep_unreachable": keep_unreachable}
        return _Call("POST", PREFIX, json=body, timeout=ADD_TIMEOUT)

    @staticmethod
    def remove(host_id: str) -> _Call:
        return _Call("DELETE", f"{PREFIX}/{_seg(host_id)}", timeout=ADD_TIMEOUT)


class HostsClient:
    def __init__(self, client: CargoBayClient) -> None:
        self._client = client

    def list(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._client._request(_Calls.list())
        return result

    def get(self, host_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.get(host_id))
        return result

    def add(
        self, host_id: str, uri: str, *, tags: Sequence[str] = (), keep_unreachable: bool = False
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(
            _Calls.add(host_id, uri, tags, keep_unreachable)
        )
        return result

    def remove(self, host_id: str) -> None:
        self._client._request(_Calls.remove(host_id))


class AsyncHostsClient:
    def __init__(self, client: AsyncCargoBayClient) -> None:
        self._client = client

    async def list(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._client._request(_Calls.list())
        return result

    async def get(self, host_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.get(host_id))
        return result

    async def add(
        self, host_id: str, uri: str, *, tags: Sequence[str] = (), keep_unreachable: bool = False
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(
            _Calls.add(host_id, uri, tags, keep_unreachable)
        )
        return result

    async def remove(self, host_id: str) -> None:
        await self._client._request(_Calls.remove(host_id))
