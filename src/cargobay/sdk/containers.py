"""SDK calls for the daemon's Docker Engine endpoints (``/v1/engine``).

Wrappers around an existing client, so the machines client stays as it is::

    with CargoBayClient() as client:
        engine = EngineClient(client)
        engine.info()
        for event in engine.pull("busybox:1.36"):
            ...                                 # "layer"/"status" events, then "done"
        engine.images()

``AsyncEngineClient`` is the same over ``AsyncCargoBayClient``.  Stream errors (an
``error`` event) are raised as the typed error the daemon reported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from cargobay.sdk.client import AsyncCargoBayClient, CargoBayClient, _Call, _seg

__all__ = ["AsyncEngineClient", "EngineClient"]

PREFIX = "/v1/engine"


def _flag(value: bool) -> str:
    return "true" if value else "false"


class _Calls:
    @staticmethod
    def info() -> _Call:
        return _Call("GET", PREFIX, timeout=30.0)

    @staticmethod
    def images(all: bool, labels: Sequence[str]) -> _Call:
        return _Call("GET", f"{PREFIX}/images", params={"all": _flag(all), "label": list(labels)})

    @staticmethod
    def pull(reference: str) -> _Call:
        return _Call("POST", f"{PREFIX}/images/pull", json={"reference": reference}, timeout=None)

    @staticmethod
    def remove_image(reference: str, force: bool) -> _Call:
        return _Call(
            "DELETE",
            f"{PREFIX}/images/{_seg(reference)}",
            params={"force": _flag(force)},
            timeout=120.0,
        )

    @staticmethod
    def prune_images(all: bool, labels: Sequence[str]) -> _Call:
        body = {"all": all, "label": list(labels)}
        return _Call("POST", f"{PREFIX}/images/prune", json=body, timeout=300.0)

    @staticmethod
    def check_update(reference: str) -> _Call:
        return _Call(
            "POST", f"{PREFIX}/images/check-update", json={"reference": reference}, timeout=60.0
        )

    @staticmethod
    def containers(
        all: bool, labels: Sequence[str], project: str | None, service: str | None
    ) -> _Call:
        params: dict[str, Any] = {"all": _flag(all), "label": list(labels)}
        if project:
            params["project"] = project
        if service:
            params["service"] = service
        return _Call("GET", f"{PREFIX}/containers", params=params)

    @staticmethod
    def container_action(container: str, action: str, timeout: int | None) -> _Call:
        body = {"timeout": timeout} if action in ("stop", "restart") else None
        return _Call(
            "POST",
            f"{PREFIX}/containers/{_seg(container)}/{action}",
            json=body,
            timeout=(timeout or 10) + 30.0,
        )

    @staticmethod
    def remove_container(container: str, force: bool, volumes: bool) -> _Call:
        return _Call(
            "DELETE",
            f"{PREFIX}/containers/{_seg(container)}",
            params={"force": _flag(force), "volumes": _flag(volumes)},
            timeout=60.0,
        )

    @staticmethod
    def logs(containers: Sequence[str], options: dict[str, Any]) -> _Call:
        params: dict[str, Any] = {"container": list(containers)}
        for key, value in options.items():
            if value is None:
                continue
            params[key] = _flag(value) if isinstance(value, bool) else value
        return _Call("GET", f"{PREFIX}/logs", params=params, timeout=None)

    @staticmethod
    def stats(container: str, stream: bool, samples: int | None) -> _Call:
        params: dict[str, Any] = {"stream": _flag(stream)}
        if samples is not None:
            params["samples"] = samples
        return _Call(
            "GET", f"{PREFIX}/containers/{_seg(container)}/stats", params=params, timeout=None
        )

    @staticmethod
    def events(labels: Sequence[str], since: str | None, until: str | None) -> _Call:
        params: dict[str, Any] = {"label": list(labels)}
        if since:
            params["since"] = since
        if until:
            params["until"] = until
        return _Call("GET", f"{PREFIX}/events", params=params, timeout=None)

    @staticmethod
    def stats_many(
        containers: Sequence[str],
        service: str | None,
        project: str | None,
        stream: bool,
        samples: int | None,
    ) -> _Call:
        params: dict[str, Any] = {"container": list(containers), "stream": _flag(stream)}
        if service:
            params["service"] = service
        if project:
            params["project"] = project
        if samples is not None:
            params["samples"] = samples
        return _Call("GET", f"{PREFIX}/stats", params=params, timeout=None)

    @staticmethod
    def networks(labels: Sequence[str]) -> _Call:
        return _Call("GET", f"{PREFIX}/networks", params={"label": list(labels)})

    @staticmethod
    def volumes(labels: Sequence[str]) -> _Call:
        return _Call("GET", f"{PREFIX}/volumes", params={"label": list(labels)})


def _log_options(
    service: str | None,
    project: str | None,
    follow: bool,
    since: str | None,
    until: str | None,
    tail: int | None,
    timestamps: bool,
    search: str | None,
    regex: bool,
    ignore_case: bool,
) -> dict[str, Any]:
    return {
        "service": service,
        "project": project,
        "follow": follow,
        "since": since,
        "until": until,
        "tail": tail,
        "timestamps": timestamps,
        "search": search,
        "regex": regex,
        "ignore_case": ignore_case,
    }


class EngineClient:
    """Blocking Docker Engine calls through cargobayd."""

    def __init__(self, client: CargoBayClient) -> None:
        self._client = client

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.info())
        return result

    def images(self, *, all: bool = False, labels: Sequence[str] = ()) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._client._request(_Calls.images(all, labels))
        return result

    def pull(self, reference: str) -> Iterator[dict[str, Any]]:
        return self._client._events(_Calls.pull(reference))

    def remove_image(self, reference: str, *, force: bool = False) -> list[dict[str, str]]:
        result: list[dict[str, str]] = self._client._request(_Calls.remove_image(reference, force))
        return result

    def prune_images(self, *, all: bool = False, labels: Sequence[str] = ()) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.prune_images(all, labels))
        return result

    def check_update(self, reference: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(_Calls.check_update(reference))
        return result

    def containers(
        self,
        *,
        all: bool = False,
        labels: Sequence[str] = (),
        project: str | None = None,
        service: str | None = None,
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._client._request(
            _Calls.containers(all, labels, project, service)
        )
        return result

    def start(self, container: str) -> None:
        self._client._request(_Calls.container_action(container, "start", None))

    def stop(self, container: str, *, timeout: int | None = None) -> None:
        self._client._request(_Calls.container_action(container, "stop", timeout))

    def restart(self, container: str, *, timeout: int | None = None) -> None:
        self._client._request(_Calls.container_action(container, "restart", timeout))

    def remove(self, container: str, *, force: bool = False, volumes: bool = False) -> None:
        self._client._request(_Calls.remove_container(container, force, volumes))

    def logs(
        self,
        containers: Sequence[str] = (),
        *,
        service: str | None = None,
        project: str | None = None,
        follow: bool = False,
        since: str | None = None,
        until: str | None = None,
        tail: int | None = None,
        timestamps: bool = False,
        search: str | None = None,
        regex: bool = False,
        ignore_case: bool = False,
    ) -> Iterator[dict[str, Any]]:
        options = _log_options(
            service, project, follow, since, until, tail, timestamps, search, regex, ignore_case
        )
        return self._client._events(_Calls.logs(containers, options))

    def stats(
        self, container: str, *, stream: bool = True, samples: int | None = None
    ) -> Iterator[dict[str, Any]]:
        return self._client._events(_Calls.stats(container, stream, samples))

    def events(
        self, *, labels: Sequence[str] = (), since: str | None = None, until: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """``{"type": "subscribed"}`` once listening, then ``{"type": "event", ...}``."""
        return self._client._events(_Calls.events(labels, since, until))

    def stats_many(
        self,
        containers: Sequence[str] = (),
        *,
        service: str | None = None,
        project: str | None = None,
        stream: bool = True,
        samples: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Samples of several containers (or a compose service/project), merged."""
        call = _Calls.stats_many(containers, service, project, stream, samples)
        return self._client._events(call)

    def networks(self, *, labels: Sequence[str] = ()) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._client._request(_Calls.networks(labels))
        return result

    def volumes(self, *, labels: Sequence[str] = ()) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._client._request(_Calls.volumes(labels))
        return result


class AsyncEngineClient:
    """asyncio Docker Engine calls through cargobayd."""

    def __init__(self, client: AsyncCargoBayClient) -> None:
        self._client = client

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.info())
        return result

    async def images(
        self, *, all: bool = False, labels: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._client._request(_Calls.images(all, labels))
        return result

    def pull(self, reference: str) -> AsyncIterator[dict[str, Any]]:
        return self._client._events(_Calls.pull(reference))

    async def remove_image(self, reference: str, *, force: bool = False) -> list[dict[str, str]]:
        result: list[dict[str, str]] = await self._client._request(
            _Calls.remove_image(reference, force)
        )
        return result

    async def prune_images(
        self, *, all: bool = False, labels: Sequence[str] = ()
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.prune_images(all, labels))
        return result

    async def check_update(self, reference: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._request(_Calls.check_update(reference))
        return result

    async def containers(
        self,
        *,
        all: bool = False,
        labels: Sequence[str] = (),
        project: str | None = None,
        service: str | None = None,
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._client._request(
            _Calls.containers(all, labels, project, service)
        )
        return result

    async def start(self, container: str) -> None:
        await self._client._request(_Calls.container_action(container, "start", None))

    async def stop(self, container: str, *, timeout: int | None = None) -> None:
        await self._client._request(_Calls.container_action(container, "stop", timeout))

    async def restart(self, container: str, *, timeout: int | None = None) -> None:
        await self._client._request(_Calls.container_action(container, "restart", timeout))

    async def remove(self, container: str, *, force: bool = False, volumes: bool = False) -> None:
        await self._client._request(_Calls.remove_container(container, force, volumes))

    def logs(
        self,
        containers: Sequence[str] = (),
        *,
        service: str | None = None,
        project: str | None = None,
        follow: bool = False,
        since: str | None = None,
        until: str | None = None,
        tail: int | None = None,
        timestamps: bool = False,
        search: str | None = None,
        regex: bool = False,
        ignore_case: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        options = _log_options(
            service, project, follow, since, until, tail, timestamps, search, regex, ignore_case
        )
        return self._client._events(_Calls.logs(containers, options))

    def stats(
        self, container: str, *, stream: bool = True, samples: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        return self._client._events(_Calls.stats(container, stream, samples))

    def events(
        self, *, labels: Sequence[str] = (), since: str | None = None, until: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """``{"type": "subscribed"}`` once listening, then ``{"type": "event", ...}``."""
        return self._client._events(_Calls.events(labels, since, until))

    def stats_many(
        self,
        containers: Sequence[str] = (),
        *,
        service: str | None = None,
        project: str | None = None,
        stream: bool = True,
        samples: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Samples of several containers (or a compose service/project), merged."""
        call = _Calls.stats_many(containers, service, project, stream, samples)
        return self._client._events(call)

    async def networks(self, *, labels: Sequence[str] = ()) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._client._request(_Calls.networks(labels))
        return result

    async def volumes(self, *, labels: Sequence[str] = ()) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._client._request(_Calls.volumes(labels))
        return result
