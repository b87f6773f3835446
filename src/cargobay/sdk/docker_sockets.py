"""SDK calls for Docker-compatible sockets (``/v1/docker-sockets``)::

with CargoBayClient() as client:
    sockets = DockerSocketsClient(client)
    info = sockets.create(vm="dock")              # or host_engine=True
    # DOCKER_HOST=info["docker_host"] docker ps ...
    sockets.delete(info["id"])
"""

from __future__ import annotations

from typing import Any

from cargobay.sdk.client import DEFAULT_TIMEOUT, AsyncCargoBayClient, CargoBayClient, _Call, _seg

__all__ = ["AsyncDockerSocketsClient", "DockerSocketsClient"]

PREFIX = "/v1/docker-sockets"


class _Calls:
    @staticmethod
    def list() -> _Call:
        return _Call("GET", PREFIX)

    @staticmethod
    def get(ident: str) -> _Call:
        return _Call("GET", f"{PREFIX}/{_seg(ident)}")

    @staticmethod
    def create(vm: str | None, host_engine: bool, socket: str | None, wait: float) -> _Call:
        body: dict[str, Any] = {"vm": vm, "host_engine": host_engine, "socket": socket}
        body["wait"] = wait
        return _Call("POST", PREFIX, json=body, timeout=wait + DEFAULT_TIMEOUT)

    @staticmethod
    def delete(ident: str) -> _Call:
        return _Call("DELETE", f"{PREFIX}/{_seg(ident)}")


class DockerSocketsClient:
    def __init__(self, client: CargoBayClient) -> None:
        self._client = client

    def list(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._client._request(_Calls.list())
        return result

    def get(self, ident: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.get(ident))
        return result

    def create(
        self,
        *,
        vm: str | None = None,
        host_engine: bool = False,
        socket: str | None = None,
        wait: float = 60.0,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.create(vm, host_engine, socket, wait))
        return result

    def delete(self, ident: str) -> None:
        self._client._request(_Calls.delete(ident))


class AsyncDockerSocketsClient:
    def __init__(self, client: AsyncCargoBayClient) -> None:
        self._client = client

    async def list(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._client._request(_Calls.list())
        return result

    async def get(self, ident: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.get(ident))
        return result

    async def create(
        self,
        *,
        vm: str | None = None,
        host_engine: bool = False,
        socket: str | None = None,
        wait: float = 60.0,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(
            _Calls.create(vm, host_engine, socket, wait)
        )
        return result

    async def delete(self, ident: str) -> None:
        await self._client._request(_Calls.delete(ident))
