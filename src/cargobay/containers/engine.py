"""``DockerEngine``: a thin async client for the Docker Engine API, over aiodocker.

Methods map Engine endpoints one to one (docker-py's ``api/`` layer) and return the
Engine's own JSON as dicts, so higher layers (images, logs, stats, the compose engine)
decide what to model.  aiodocker does the transport (Unix socket, TCP, TLS, named pipe,
SSH) and API version negotiation; requests go through its ``_query`` so every call,
including the streaming ones, maps errors the same way:

* no engine, a refused or dropped connection, an engine that goes away in the middle of
  a stream -> :class:`EngineUnavailable`;
* 404 -> ``ContainerNotFound`` / ``ImageNotFound`` / ``NetworkNotFound`` /
  ``VolumeNotFound`` by what was asked for; 409 -> ``ContainerConflict``; an
  "invalid reference format" -> ``InvalidReference``; any other status ->
  :class:`EngineError` carrying the Engine's status and message;
* an ``error``/``errorDetail`` line inside a 200 progress stream (pull, push, build,
  import) -> :class:`EngineStreamError`.

Every message names what was being done (``pull 127.0.0.1:5000/app:1: ...``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiodocker
import aiohttp

from cargobay.containers.buildcontext import tar_context
from cargobay.errors import (
    ContainerConflict,
    ContainerError,
    ContainerNotFound,
    EngineError,
    EngineStreamError,
    EngineUnavailable,
    ImageNotFound,
    InvalidReference,
    NetworkNotFound,
    VolumeNotFound,
)

__all__ = ["JSON", "DockerEngine", "Kind", "ProgressCallback", "label_filters"]

JSON = dict[str, Any]
Kind = Literal["container", "image", "network", "volume", "engine", "exec"]
ProgressCallback = Callable[[JSON], None]

_NOT_FOUND: dict[str, type[ContainerError]] = {
    "container": ContainerNotFound,
    "image": ImageNotFound,
    "network": NetworkNotFound,
    "volume": VolumeNotFound,
    "exec": ContainerNotFound,
}
CONNECT_TIMEOUT = 10.0
"""Seconds to wait for the first answer (``/_ping``) in :meth:`DockerEngine.connect`."""


def label_filters(labels: Mapping[str, str | None] | Iterable[str] | None) -> list[str]:
    """``{"a": "1", "b": None}`` -> ``["a=1", "b"]`` (a label with any value)."""
    if labels is None:
        return []
    if isinstance(labels, Mapping):
        return [key if value is None else f"{key}={value}" for key, value in labels.items()]
    return list(labels)


def _filters(**kinds: list[str] | None) -> dict[str, str]:
    present = {key: value for key, value in kinds.items() if value}
    return {"filters": json.dumps(present)} if present else {}


def map_docker_error(err: aiodocker.DockerError, what: str, kind: Kind) -> ContainerError:
    """The typed error for an aiodocker error raised while doing ``what``."""
    status, message = err.status, str(err.message).strip()
    if isinstance(err, aiodocker.exceptions.DockerStreamError):
        return EngineStreamError(f"{what}: {message}", engine_message=message)
    if status == 900:  # aiodocker's code for "could not connect"
        return EngineUnavailable(
            f"{what}: cannot reach the Docker Engine ({message}); is dockerd running? "
            "`cargobay engine info` says how to get one"
        )
    if status == 404 and kind in _NOT_FOUND:
        return _NOT_FOUND[kind](f"{what}: {message}")
    if "invalid reference format" in message:
        return InvalidReference(f"{what}: {message}")
    if status == 409:
        return ContainerConflict(f"{what}: {message}")
    return EngineError(
        f"{what}: the Docker Engine answered {status}: {message}",
        engine_status=status,
        engine_message=message,
    )


class DockerEngine:
    """One connection pool to one Docker Engine.  Use ``await DockerEngine.connect(url)``
    (``None``: found like the Docker CLI finds it, see ``detect.resolve_endpoint``) and
    close it with ``await engine.close()`` or ``async with``."""

    def __init__(self, docker: aiodocker.Docker, url: str) -> None:
        self._docker = docker
        self.url = url

    @classmethod
    async def connect(cls, url: str | None = None, *, timeout: float = CONNECT_TIMEOUT) -> Self:
        if url is None:
            from cargobay.containers.detect import resolve_endpoint

            url = resolve_endpoint().url  # DOCKER_HOST, the current context, the sockets
        try:
            docker = aiodocker.Docker(url=url)
        except (ValueError, OSError, aiodocker.DockerError) as err:
            raise EngineUnavailable(
                f"cannot set up a Docker Engine client for {url}: {err}"
            ) from err
        engine = cls(docker, url)
        try:
            async with asyncio.timeout(timeout):
                await engine.ping()
        except TimeoutError as err:
            await engine.close()
            raise EngineUnavailable(
                f"the Docker Engine at {engine.url} did not answer /_ping within {timeout:g} s"
            ) from err
        except BaseException:
            await engine.close()
            raise
        return engine

    async def close(self) -> None:
        await self._docker.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def docker(self) -> aiodocker.Docker:
        """The underlying aiodocker client, for what this class does not map."""
        return self._docker

    # --- plumbing ----------------------------------------------------------------------

    @asynccontextmanager
    async def _response(
        self,
        method: str,
        path: str,
        what: str,
        kind: Kind,
        *,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        versioned: bool = True,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        try:
            async with self._docker._query(
                path,
                method,
                params=dict(params) if params else None,
                data=data,
                headers=dict(headers) if headers else None,
                timeout=None,
                versioned_api=versioned,
            ) as response:
                try:
                    yield response
                finally:
                    response.release()
        except aiodocker.DockerError as err:
            raise map_docker_error(err, what, kind) from err
        except (aiohttp.ClientError, ConnectionError) as err:
            raise EngineUnavailable(
                f"{what}: lost the connection to the Docker Engine at {self.url} ({err!r})"
            ) from err

    async def _json(
        self,
        method: str,
        path: str,
        what: str,
        kind: Kind,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        versioned: bool = True,
    ) -> Any:
        data = json.dumps(body) if body is not None else None
        async with self._response(
            method, path, what, kind, params=params, data=data, versioned=versioned
        ) as response:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, ConnectionError) as err:
                raise EngineUnavailable(
                    f"{what}: lost the connection to the Docker Engine ({err!r})"
                ) from err
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    async def _lines(self, response: aiohttp.ClientResponse, what: str) -> AsyncIterator[bytes]:
        """Lines of a streamed body (any length: aiohttp's readline refuses lines over
        128 KiB, which a build step can print); a connection lost before the end is an
        error."""
        buffer = b""
        try:
            async for chunk in response.content.iter_any():
                buffer += chunk
                if b"\n" in buffer:
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        yield line + b"\n"
            if buffer:
                yield buffer
        except (aiohttp.ClientError, ConnectionError) as err:
            raise EngineUnavailable(
                f"{what}: the Docker Engine went away in the middle of the stream ({err!r})"
            ) from err

    async def _progress_stream(
        self,
        method: str,
        path: str,
        what: str,
        kind: Kind,
        *,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[JSON]:
        """Run a JSON-lines progress endpoint to its end; return every message."""
        messages: list[JSON] = []
        async with self._response(
            method, path, what, kind, params=params, data=data, headers=headers
        ) as response:
            async for line in self._lines(response, what):
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError as err:
                    raise EngineError(
                        f"{what}: the Docker Engine sent a line that is not JSON: {line[:200]!r}"
                    ) from err
                if not isinstance(message, dict):
                    continue
                error = message.get("errorDetail") or message.get("error")
                if error:
                    text = error.get("message") if isinstance(error, dict) else str(error)
                    text = str(text or message.get("error") or "unknown error")
                    raise EngineStreamError(f"{what}: {text}", engine_message=text)
                messages.append(message)
                if on_progress is not None:
                    on_progress(message)
        return messages

    # --- system ------------------------------------------------------------------------

    async def ping(self) -> str:
        async with self._response("GET", "_ping", "ping", "engine", versioned=False) as response:
            return (await response.read()).decode(errors="replace")

    async def version(self) -> JSON:
        result: JSON = await self._json("GET", "version", "version", "engine", versioned=False)
        return result

    async def info(self) -> JSON:
        result: JSON = await self._json("GET", "info", "info", "engine")
        return result

    async def api_version(self) -> str:
        """The API version in use (negotiated: the engine's, which aiodocker adopts)."""
        await self._docker._check_version()
        return str(self._docker.api_version).lstrip("v")

    @asynccontextmanager
    async def events_stream(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        labels: Mapping[str, str | None] | Iterable[str] | None = None,
    ) -> AsyncIterator[AsyncIterator[JSON]]:
        """``GET /events``; entered once the Engine has answered, so events that happen
        after entering are seen."""
        params: dict[str, Any] = _filters(label=label_filters(labels))
        if since:
            params["since"] = since
        if until:
            params["until"] = until
        async with self._response("GET", "events", "events", "engine", params=params) as resp:
            yield self._json_lines(resp, "events")

    async def _json_lines(self, response: aiohttp.ClientResponse, what: str) -> AsyncIterator[JSON]:
        async for line in self._lines(response, what):
            if line.strip():
                yield json.loads(line)

    async def events(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        labels: Mapping[str, str | None] | Iterable[str] | None = None,
    ) -> AsyncIterator[JSON]:
        """The events as an iterator (subscribes on the first ``anext``)."""
        async with self.events_stream(since=since, until=until, labels=labels) as stream:
            async for event in stream:
                yield event

    # --- containers --------------------------------------------------------------------

    async def create_container(
        self, name: str | None, config: Mapping[str, Any], *, platform: str | None = None
    ) -> str:
        params: dict[str, Any] = {}
        if name:
            params["name"] = name
        if platform:
            params["platform"] = platform
        what = f"create container {name or '(unnamed)'}"
        kind: Kind = "image"  # a 404 here means the image is missing
        result = await self._json(
            "POST", "containers/create", what, kind, params=params, body=dict(config)
        )
        return str(result["Id"])

    async def start_container(self, container: str) -> None:
        await self._json("POST", f"containers/{container}/start", f"start {container}", "container")

    async def stop_container(self, container: str, *, timeout: int | None = None) -> None:
        params = {"t": timeout} if timeout is not None else None
        await self._json(
            "POST", f"containers/{container}/stop", f"stop {container}", "container", params=params
        )

    async def restart_container(self, container: str, *, timeout: int | None = None) -> None:
        params = {"t": timeout} if timeout is not None else None
        await self._json(
            "POST",
            f"containers/{container}/restart",
            f"restart {container}",
            "container",
            params=params,
        )

    async def kill_container(self, container: str, *, signal: str = "SIGKILL") -> None:
        await self._json(
            "POST",
            f"containers/{container}/kill",
            f"kill {container}",
            "container",
            params={"signal": signal},
        )

    async def remove_container(
        self, container: str, *, force: bool = False, volumes: bool = False
    ) -> None:
        await self._json(
            "DELETE",
            f"containers/{container}",
            f"remove container {container}",
            "container",
            params={"force": force, "v": volumes},
        )

    async def inspect_container(self, container: str) -> JSON:
        result: JSON = await self._json(
            "GET", f"containers/{container}/json", f"inspect container {container}", "container"
        )
        return result

    async def list_containers(
        self,
        *,
        all: bool = False,
        labels: Mapping[str, str | None] | Iterable[str] | None = None,
        filters: Mapping[str, list[str]] | None = None,
    ) -> list[JSON]:
        params: dict[str, Any] = {"all": all}
        merged = {key: list(value) for key, value in (filters or {}).items()}
        merged.setdefault("label", []).extend(label_filters(labels))
        params.update(_filters(**merged))
        result: list[JSON] = await self._json(
            "GET", "containers/json", "list containers", "engine", params=params
        )
        return result

    async def wait_container(self, container: str, *, condition: str = "not-running") -> JSON:
        result: JSON = await self._json(
            "POST",
            f"containers/{container}/wait",
            f"wait for {container}",
            "container",
            params={"condition": condition},
        )
        return result

    async def rename_container(self, container: str, name: str) -> None:
        await self._json(
            "POST",
            f"containers/{container}/rename",
            f"rename {container} to {name}",
            "container",
            params={"name": name},
        )

    @asynccontextmanager
    async def container_logs_stream(
        self,
        container: str,
        *,
        follow: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        since: int | float | None = None,
        until: int | float | None = None,
        timestamps: bool = False,
        tail: int | None = None,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """The raw log body (multiplexed frames unless the container has a TTY)."""
        params: dict[str, Any] = {
            "follow": follow,
            "stdout": stdout,
            "stderr": stderr,
            "timestamps": timestamps,
            "tail": "all" if tail is None else str(tail),
        }
        if since is not None:
            params["since"] = str(since)
        if until is not None:
            params["until"] = str(until)
        what = f"logs of {container}"
        async with self._response(
            "GET", f"containers/{container}/logs", what, "container", params=params
        ) as response:
            yield self._chunks(response, what)

    async def _chunks(self, response: aiohttp.ClientResponse, what: str) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, ConnectionError) as err:
            raise EngineUnavailable(
                f"{what}: the Docker Engine went away in the middle of the stream ({err!r})"
            ) from err

    async def container_stats(
        self, container: str, *, stream: bool = True, one_shot: bool = False
    ) -> AsyncIterator[JSON]:
        """Stats samples as the Engine sends them (one per second when streaming)."""
        params = {"stream": stream, "one-shot": one_shot}
        what = f"stats of {container}"
        async with self._response(
            "GET", f"containers/{container}/stats", what, "container", params=params
        ) as response:
            async for line in self._lines(response, what):
                if line.strip():
                    yield json.loads(line)

    async def exec_run(
        self, container: str, cmd: list[str], *, user: str | None = None
    ) -> tuple[int, bytes]:
        """Run ``cmd`` in a running container; return (exit code, raw multiplexed output)."""
        body: JSON = {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True}
        if user:
            body["User"] = user
        what = f"exec {cmd[0] if cmd else ''} in {container}"
        created = await self._json(
            "POST", f"containers/{container}/exec", what, "container", body=body
        )
        exec_id = str(created["Id"])
        async with self._response(
            "POST",
            f"exec/{exec_id}/start",
            what,
            "exec",
            data=json.dumps({"Detach": False, "Tty": False}),
        ) as response:
            output = await response.read()
        inspected = await self._json("GET", f"exec/{exec_id}/json", what, "exec")
        return int(inspected.get("ExitCode") or 0), output

    # --- networks ----------------------------------------------------------------------

    async def create_network(
        self,
        name: str,
        *,
        driver: str = "bridge",
        labels: Mapping[str, str] | None = None,
        internal: bool = False,
        attachable: bool = False,
        enable_ipv6: bool = False,
        options: Mapping[str, str] | None = None,
        ipam: Mapping[str, Any] | None = None,
        check_duplicate: bool = True,
    ) -> str:
        body: JSON = {
            "Name": name,
            "Driver": driver,
            "Labels": dict(labels or {}),
            "Internal": internal,
            "Attachable": attachable,
            "EnableIPv6": enable_ipv6,
            "Options": dict(options or {}),
            "CheckDuplicate": check_duplicate,
        }
        if ipam is not None:
            body["IPAM"] = dict(ipam)
        result = await self._json(
            "POST", "networks/create", f"create network {name}", "network", body=body
        )
        return str(result["Id"])

    async def inspect_network(self, network: str) -> JSON:
        result: JSON = await self._json(
            "GET", f"networks/{network}", f"inspect network {network}", "network"
        )
        return result

    async def list_networks(
        self, *, labels: Mapping[str, str | None] | Iterable[str] | None = None
    ) -> list[JSON]:
        params = _filters(label=label_filters(labels))
        result: list[JSON] = await self._json(
            "GET", "networks", "list networks", "engine", params=params
        )
        return result

    async def remove_network(self, network: str) -> None:
        await self._json("DELETE", f"networks/{network}", f"remove network {network}", "network")

    async def connect_network(
        self,
        network: str,
        container: str,
        *,
        aliases: list[str] | None = None,
        ipv4_address: str | None = None,
    ) -> None:
        endpoint: JSON = {}
        if aliases:
            endpoint["Aliases"] = list(aliases)
        if ipv4_address:
            endpoint["IPAMConfig"] = {"IPv4Address": ipv4_address}
        await self._json(
            "POST",
            f"networks/{network}/connect",
            f"connect {container} to network {network}",
            "network",
            body={"Container": container, "EndpointConfig": endpoint},
        )

    async def disconnect_network(
        self, network: str, container: str, *, force: bool = False
    ) -> None:
        await self._json(
            "POST",
            f"networks/{network}/disconnect",
            f"disconnect {container} from network {network}",
            "network",
            body={"Container": container, "Force": force},
        )

    async def prune_networks(
        self, *, labels: Mapping[str, str | None] | Iterable[str] | None = None
    ) -> JSON:
        params = _filters(label=label_filters(labels))
        result: JSON = await self._json(
            "POST", "networks/prune", "prune networks", "engine", params=params
        )
        return result

    # --- volumes -----------------------------------------------------------------------

    async def create_volume(
        self,
        name: str,
        *,
        driver: str = "local",
        labels: Mapping[str, str] | None = None,
        driver_opts: Mapping[str, str] | None = None,
    ) -> JSON:
        body = {
            "Name": name,
            "Driver": driver,
            "Labels": dict(labels or {}),
            "DriverOpts": dict(driver_opts or {}),
        }
        result: JSON = await self._json(
            "POST", "volumes/create", f"create volume {name}", "volume", body=body
        )
        return result

    async def inspect_volume(self, volume: str) -> JSON:
        result: JSON = await self._json(
            "GET", f"volumes/{volume}", f"inspect volume {volume}", "volume"
        )
        return result

    async def list_volumes(
        self, *, labels: Mapping[str, str | None] | Iterable[str] | None = None
    ) -> list[JSON]:
        params = _filters(label=label_filters(labels))
        result = await self._json("GET", "volumes", "list volumes", "engine", params=params)
        return list(result.get("Volumes") or [])

    async def remove_volume(self, volume: str, *, force: bool = False) -> None:
        await self._json(
            "DELETE",
            f"volumes/{volume}",
            f"remove volume {volume}",
            "volume",
            params={"force": force},
        )

    # --- images ------------------------------------------------------------------------

    async def inspect_image(self, image: str) -> JSON:
        result: JSON = await self._json(
            "GET", f"images/{image}/json", f"inspect image {image}", "image"
        )
        return result

    async def list_images(
        self,
        *,
        all: bool = False,
        labels: Mapping[str, str | None] | Iterable[str] | None = None,
        reference: str | None = None,
        dangling: bool | None = None,
    ) -> list[JSON]:
        kinds: dict[str, list[str] | None] = {"label": label_filters(labels)}
        if reference:
            kinds["reference"] = [reference]
        if dangling is not None:
            kinds["dangling"] = ["true" if dangling else "false"]
        params: dict[str, Any] = {"all": all, **_filters(**kinds)}
        result: list[JSON] = await self._json(
            "GET", "images/json", "list images", "engine", params=params
        )
        return result

    async def remove_image(
        self, image: str, *, force: bool = False, noprune: bool = False
    ) -> list[JSON]:
        result = await self._json(
            "DELETE",
            f"images/{image}",
            f"remove image {image}",
            "image",
            params={"force": force, "noprune": noprune},
        )
        return list(result or [])

    async def prune_images(
        self,
        *,
        dangling: bool = True,
        labels: Mapping[str, str | None] | Iterable[str] | None = None,
    ) -> JSON:
        params = _filters(dangling=["true" if dangling else "false"], label=label_filters(labels))
        result: JSON = await self._json(
            "POST", "images/prune", "prune images", "engine", params=params
        )
        return result

    async def tag_image(self, image: str, repo: str, tag: str | None = None) -> None:
        params = {"repo": repo, **({"tag": tag} if tag else {})}
        await self._json(
            "POST",
            f"images/{image}/tag",
            f"tag {image} as {repo}:{tag or 'latest'}",
            "image",
            params=params,
        )

    async def pull_image(
        self,
        image: str,
        *,
        tag: str | None = None,
        platform: str | None = None,
        auth: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[JSON]:
        """``POST /images/create?fromImage=`` to the end of its progress stream."""
        params: dict[str, Any] = {"fromImage": image}
        if tag:
            params["tag"] = tag
        if platform:
            params["platform"] = platform
        headers = {"X-Registry-Auth": auth} if auth else None
        return await self._progress_stream(
            "POST",
            "images/create",
            f"pull {image}{':' + tag if tag else ''}",
            "image",
            params=params,
            headers=headers,
            on_progress=on_progress,
        )

    async def push_image(
        self,
        image: str,
        *,
        tag: str | None = None,
        auth: str = "e30=",  # base64 of "{}": the Engine insists on the header
        on_progress: ProgressCallback | None = None,
    ) -> list[JSON]:
        params = {"tag": tag} if tag else None
        return await self._progress_stream(
            "POST",
            f"images/{image}/push",
            f"push {image}{':' + tag if tag else ''}",
            "image",
            params=params,
            headers={"X-Registry-Auth": auth},
            on_progress=on_progress,
        )

    async def import_image(
        self,
        tarball: bytes,
        *,
        repo: str,
        tag: str | None = None,
        changes: list[str] | None = None,
        message: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> str:
        """``docker import``: a root filesystem tarball becomes an image; returns its id."""
        params: dict[str, Any] = {"fromSrc": "-", "repo": repo}
        if tag:
            params["tag"] = tag
        if message:
            params["message"] = message
        query = list(params.items()) + [("changes", change) for change in changes or []]
        path = "images/create?" + "&".join(f"{key}={_quote(str(value))}" for key, value in query)
        messages = await self._progress_stream(
            "POST",
            path,
            f"import image {repo}:{tag or 'latest'}",
            "image",
            data=tarball,
            headers={"Content-Type": "application/x-tar"},
            on_progress=on_progress,
        )
        for message_ in reversed(messages):
            status = str(message_.get("status", ""))
            if status.startswith("sha256:"):
                return status
        return str((await self.inspect_image(f"{repo}:{tag or 'latest'}"))["Id"])

    async def build_image(
        self,
        context: Path | bytes,
        *,
        dockerfile: str = "Dockerfile",
        tag: str | list[str] | None = None,
        buildargs: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        target: str | None = None,
        network_mode: str | None = None,
        pull: bool = False,
        nocache: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> str:
        """``POST /build`` (the classic builder) from a directory or a tar; returns the id."""
        if isinstance(context, bytes):
            tarball = context
        else:
            tarball = await asyncio.to_thread(tar_context, Path(context), dockerfile)
        tags = [tag] if isinstance(tag, str) else list(tag or [])
        params: list[tuple[str, str]] = [("dockerfile", dockerfile), ("rm", "1")]
        params += [("t", item) for item in tags]
        if buildargs:
            params.append(("buildargs", json.dumps(dict(buildargs))))
        if labels:
            params.append(("labels", json.dumps(dict(labels))))
        if target:
            params.append(("target", target))
        if network_mode:
            params.append(("networkmode", network_mode))
        if pull:
            params.append(("pull", "1"))
        if nocache:
            params.append(("nocache", "1"))
        path = "build?" + "&".join(f"{key}={_quote(value)}" for key, value in params)
        where = tags[0] if tags else str(context if isinstance(context, Path) else "tar")
        messages = await self._progress_stream(
            "POST",
            path,
            f"build {where}",
            "image",
            data=tarball,
            headers={"Content-Type": "application/x-tar"},
            on_progress=on_progress,
        )
        for message in reversed(messages):
            aux = message.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                return str(aux["ID"])
        for message in reversed(messages):
            stream = str(message.get("stream", ""))
            if stream.startswith("Successfully built "):
                return stream.split()[-1]
        raise EngineError(f"build {where}: the Docker Engine reported no image id")

    async def disk_usage(self) -> JSON:
        result: JSON = await self._json("GET", "system/df", "disk usage", "engine")
        return result

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        what: str | None = None,
        kind: Kind = "engine",
    ) -> Any:
        """Any other endpoint (swarm, services, plugins, ...), with the same error mapping:
        ``await engine.request_json("POST", "swarm/leave", params={"force": True})``."""
        label = what or f"{method} /{path.lstrip('/')}"
        return await self._json(method, path.lstrip("/"), label, kind, params=params, body=body)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
