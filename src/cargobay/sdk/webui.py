"""SDK calls for the endpoints the web GUI added (``cargobay.daemon.webui``)::

with CargoBayClient() as client:
    ui = WebUIClient(client)
    print(ui.access()["url"])              # the GUI's address with the token
    print(ui.metrics("box")["cpu_percent"])
    ui.save_compose_file("/srv/app/compose.yaml", text, dry_run=True)  # validate only
"""

from __future__ import annotations

from typing import Any

from cargobay.sdk.client import AsyncCargoBayClient, CargoBayClient, _Call, _seg

__all__ = ["AsyncWebUIClient", "WebUIClient"]


class _Calls:
    @staticmethod
    def access() -> _Call:
        return _Call("GET", "/v1/daemon/ui")

    @staticmethod
    def settings() -> _Call:
        return _Call("GET", "/v1/daemon/settings")

    @staticmethod
    def metrics(name: str) -> _Call:
        return _Call("GET", f"/v1/machines/{_seg(name)}/metrics")

    @staticmethod
    def read_compose_file(path: str) -> _Call:
        return _Call("GET", "/v1/compose/file", params={"path": path})

    @staticmethod
    def save_compose_file(path: str, content: str, dry_run: bool) -> _Call:
        body = {"path": path, "content": content, "dry_run": dry_run}
        return _Call("PUT", "/v1/compose/file", json=body)


class WebUIClient:
    def __init__(self, client: CargoBayClient) -> None:
        self._client = client

    def access(self) -> dict[str, Any]:
        """``{"tcp", "url", "token_file", "built"}``; ``tcp`` is None without a listener."""
        result: dict[str, Any] = self._client._request(_Calls.access())
        return result

    def settings(self) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.settings())
        return result

    def metrics(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.metrics(name))
        return result

    def read_compose_file(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.read_compose_file(path))
        return result

    def save_compose_file(
        self, path: str, content: str, *, dry_run: bool = False
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(
            _Calls.save_compose_file(path, content, dry_run)
        )
        return result


class AsyncWebUIClient:
    def __init__(self, client: AsyncCargoBayClient) -> None:
        self._client = client

    async def access(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.access())
        return result

    async def settings(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.settings())
        return result

    async def metrics(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.metrics(name))
        return result

    async def read_compose_file(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.read_compose_file(path))
        return result

    async def save_compose_file(
        self, path: str, content: str, *, dry_run: bool = False
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(
            _Calls.save_compose_file(path, content, dry_run)
        )
        return result
