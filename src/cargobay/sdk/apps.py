"""SDK calls for app instances (the MAI launcher, ``/v1/apps``)::

    with CargoBayClient() as client:
        apps = AppsClient(client)
        apps.create({"name": "bot1", "deploy_mode": "docker"})
        for event in apps.deploy("bot1"):          # NDJSON task events, then done
            print(event["type"], event.get("percent"), event.get("message"))
        print(apps.status("bot1")["containers"])
        apps.stop("bot1")

A failed deployment ends its event stream with an ``error`` event, raised here as the
``CargoBayError`` its code names (``AppDeployError``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from cargobay.sdk.client import AsyncCargoBayClient, CargoBayClient, _Call, _seg

__all__ = ["AppsClient", "AsyncAppsClient"]

PREFIX = "/v1/apps"
_Rows = list[dict[str, Any]]
SLOW = 300.0  # stop/restart/delete wait for containers (10 s grace each, in order)


class _Calls:
    @staticmethod
    def list() -> _Call:
        return _Call("GET", PREFIX)

    @staticmethod
    def create(body: Mapping[str, Any]) -> _Call:
        return _Call("POST", PREFIX, json=dict(body))

    @staticmethod
    def get(name: str) -> _Call:
        return _Call("GET", f"{PREFIX}/{_seg(name)}")

    @staticmethod
    def update(name: str, changes: Mapping[str, Any]) -> _Call:
        return _Call("PATCH", f"{PREFIX}/{_seg(name)}", json=dict(changes))

    @staticmethod
    def delete(name: str, keep_data: bool) -> _Call:
        params = {"keep_data": "true"} if keep_data else None
        return _Call("DELETE", f"{PREFIX}/{_seg(name)}", params=params, timeout=SLOW)

    @staticmethod
    def deploy(name: str, follow: bool) -> _Call:
        params = {"follow": "true"} if follow else None
        return _Call(
            "POST", f"{PREFIX}/{_seg(name)}/deploy", params=params, timeout=None if follow else SLOW
        )

    @staticmethod
    def task_events(name: str, task_id: str, since: int) -> _Call:
        return _Call(
            "GET",
            f"{PREFIX}/{_seg(name)}/tasks/{_seg(task_id)}/events",
            params={"since": since},
            timeout=None,
        )

    @staticmethod
    def task(name: str, task_id: str) -> _Call:
        return _Call("GET", f"{PREFIX}/{_seg(name)}/tasks/{_seg(task_id)}")

    @staticmethod
    def verb(name: str, verb: str, services: Sequence[str]) -> _Call:
        return _Call(
            "POST", f"{PREFIX}/{_seg(name)}/{verb}", json={"services": list(services)}, timeout=SLOW
        )

    @staticmethod
    def get_sub(name: str, what: str) -> _Call:
        return _Call("GET", f"{PREFIX}/{_seg(name)}/{what}", timeout=SLOW)

    @staticmethod
    def logs(
        name: str, services: Sequence[str], follow: bool, tail: int | None, grep: str | None
    ) -> _Call:
        params: dict[str, Any] = {"service": list(services), "follow": follow}
        if tail is not None:
            params["tail"] = tail
        if grep:
            params["grep"] = grep
        return _Call(
            "GET", f"{PREFIX}/{_seg(name)}/logs", params=params, timeout=None if follow else SLOW
        )

    @staticmethod
    def edit_config(name: str, kind: str, body: Mapping[str, Any]) -> _Call:
        return _Call(
            "PATCH", f"{PREFIX}/{_seg(name)}/config/{_seg(kind)}", json=dict(body), timeout=SLOW
        )

    @staticmethod
    def provider(method: str, name: str, provider: str, body: Mapping[str, Any] | None) -> _Call:
        return _Call(
            method,
            f"{PREFIX}/{_seg(name)}/providers/{_seg(provider)}",
            json=dict(body) if body is not None else None,
            timeout=SLOW,
        )

    @staticmethod
    def import_legacy(path: str) -> _Call:
        return _Call("POST", f"{PREFIX}/import-legacy", json={"path": path})


class AppsClient:
    def __init__(self, client: CargoBayClient) -> None:
        self._client = client

    def list(self) -> _Rows:
        result: _Rows = self._client._request(_Calls.list())
        return result

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.create(body))
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.get(name))
        return result

    def update(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.update(name, changes))
        return result

    def delete(self, name: str, *, keep_data: bool = False) -> None:
        self._client._request(_Calls.delete(name, keep_data))

    def deploy(self, name: str) -> Iterator[dict[str, Any]]:
        """The task (``{"type": "task"}``), then its events until ``done``."""
        return self._client._events(_Calls.deploy(name, True))

    def deploy_background(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.deploy(name, False))
        return result

    def task(self, name: str, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.task(name, task_id))
        return result

    def follow(self, name: str, task_id: str, *, since: int = 0) -> Iterator[dict[str, Any]]:
        return self._client._events(_Calls.task_events(name, task_id, since))

    def start(self, name: str, services: Sequence[str] = ()) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.verb(name, "start", services))
        return result

    def stop(self, name: str, services: Sequence[str] = ()) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.verb(name, "stop", services))
        return result

    def restart(self, name: str, services: Sequence[str] = ()) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.verb(name, "restart", services))
        return result

    def status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.get_sub(name, "status"))
        return result

    def stats(self, name: str) -> _Rows:
        result: _Rows = self._client._request(_Calls.get_sub(name, "stats"))
        return result

    def images(self, name: str) -> _Rows:
        result: _Rows = self._client._request(_Calls.get_sub(name, "images"))
        return result

    def updates(self, name: str) -> _Rows:
        """Per image: ``update_available`` (None with ``error`` when the registry failed)."""
        result: _Rows = self._client._request(_Calls.get_sub(name, "updates"))
        return result

    def compose_file(self, name: str) -> str:
        return b"".join(self._client._stream(_Calls.get_sub(name, "compose"))).decode()

    def logs(
        self,
        name: str,
        *,
        services: Sequence[str] = (),
        follow: bool = False,
        tail: int | None = None,
        grep: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        return self._client._events(_Calls.logs(name, services, follow, tail, grep))

    def import_legacy(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.import_legacy(path))
        return result

    def config(self, name: str, kind: str) -> dict[str, Any]:
        """``kind``: bot, model or adapter; values with API keys masked."""
        result: dict[str, Any] = self._client._request(_Calls.get_sub(name, f"config/{kind}"))
        return result

    def edit_config(
        self,
        name: str,
        kind: str,
        *,
        set_values: Mapping[str, Any] | None = None,
        delete: Sequence[str] = (),
        create: bool = False,
        restart: bool = True,
    ) -> dict[str, Any]:
        body = {
            "set": dict(set_values or {}),
            "delete": list(delete),
            "create": create,
            "restart": restart,
        }
        result: dict[str, Any] = self._client._request(_Calls.edit_config(name, kind, body))
        return result

    def providers(self, name: str) -> _Rows:
        result: _Rows = self._client._request(_Calls.get_sub(name, "providers"))
        return result

    def put_provider(self, name: str, provider: str, **fields: Any) -> dict[str, Any]:
        call = _Calls.provider("PUT", name, provider, fields)
        result: dict[str, Any] = self._client._request(call)
        return result

    def delete_provider(self, name: str, provider: str) -> None:
        self._client._request(_Calls.provider("DELETE", name, provider, None))

    def backup(self, name: str, dest: str | None = None) -> dict[str, Any]:
        """``dest``: an absolute path (default: the daemon's app-backups directory)."""
        call = _Call("POST", f"{PREFIX}/{_seg(name)}/backup", json={"dest": dest}, timeout=SLOW)
        result: dict[str, Any] = self._client._request(call)
        return result

    def restore(self, archive: str, name: str) -> dict[str, Any]:
        call = _Call(
            "POST", f"{PREFIX}/restore", json={"archive": archive, "name": name}, timeout=SLOW
        )
        result: dict[str, Any] = self._client._request(call)
        return result


class AsyncAppsClient:
    def __init__(self, client: AsyncCargoBayClient) -> None:
        self._client = client

    async def list(self) -> _Rows:
        result: _Rows = await self._client._request(_Calls.list())
        return result

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.create(body))
        return result

    async def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.get(name))
        return result

    async def delete(self, name: str, *, keep_data: bool = False) -> None:
        await self._client._request(_Calls.delete(name, keep_data))

    def deploy(self, name: str) -> AsyncIterator[dict[str, Any]]:
        return self._client._events(_Calls.deploy(name, True))

    def follow(self, name: str, task_id: str, *, since: int = 0) -> AsyncIterator[dict[str, Any]]:
        return self._client._events(_Calls.task_events(name, task_id, since))

    async def start(self, name: str, services: Sequence[str] = ()) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.verb(name, "start", services))
        return result

    async def stop(self, name: str, services: Sequence[str] = ()) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.verb(name, "stop", services))
        return result

    async def restart(self, name: str, services: Sequence[str] = ()) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.verb(name, "restart", services))
        return result

    async def status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.get_sub(name, "status"))
        return result

    def logs(
        self,
        name: str,
        *,
        services: Sequence[str] = (),
        follow: bool = False,
        tail: int | None = None,
        grep: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        return self._client._events(_Calls.logs(name, services, follow, tail, grep))
