"""Python clients of the cargobayd API v1 (sync and asyncio), over its Unix socket.

    with CargoBayClient() as bay:              # paths from CARGOBAY_HOME / XDG
        bay.create_machine("box", memory="384MB")
        result = bay.exec("box", ["uname", "-a"])
        print(result.exit_code, result.stdout.decode())

Methods map the endpoints one to one (docker-py's ``api`` layer) and return the JSON the
daemon sent (dicts); streams are iterators of event dicts (NDJSON) or text chunks.  A
daemon error is raised again as the ``CargoBayError`` subclass its code names, with the
daemon's message; a daemon that does not answer on its socket is a ``DaemonError``
saying how to start it.  Request building and error decoding are shared by both clients
(``_Requests``); only the I/O differs.
"""

from __future__ import annotations

import base64
import codecs
import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from cargobay.errors import ERROR_TYPES, CargoBayError, DaemonError
from cargobay.paths import Paths

__all__ = ["AsyncCargoBayClient", "CargoBayClient", "ExecResult", "raise_for_event"]

DEFAULT_TIMEOUT = 30.0
SNAPSHOT_TIMEOUT = 180.0
"""A snapshot writes the guest's RAM and copies its data disk."""
"""Seconds for an ordinary request; boots and stops get their own timeout plus this."""
FILE_TIMEOUT = 120.0
"""Seconds for a file transfer (up to 64 MiB through the guest agent)."""
NOT_RUNNING = "cargobayd is not running; start it with `cargobay daemon start`"


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration: float
    stdout: bytes
    stderr: bytes
    pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    url: str
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    timeout: float | None = DEFAULT_TIMEOUT
    """Read timeout; None waits forever (streams)."""
    content: bytes | None = None
    """A raw request body (instead of ``json``)."""
    raw: bool = False
    """Answer the response body as bytes rather than decoded JSON."""


def _error_from(response: httpx.Response, body: bytes) -> CargoBayError:
    try:
        detail = json.loads(body)["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        text = body.decode(errors="replace").strip()[:300]
        return CargoBayError(f"cargobayd answered HTTP {response.status_code}: {text}")
    return ERROR_TYPES.get(code, CargoBayError)(message)


def raise_for_event(event: Mapping[str, Any]) -> None:
    """Raise the error an NDJSON ``{"type": "error"}`` event reports."""
    if event.get("type") == "error":
        code = str(event.get("code", "error"))
        raise ERROR_TYPES.get(code, CargoBayError)(str(event.get("message", "unknown error")))


def _transport_error(err: httpx.TransportError) -> DaemonError:
    if isinstance(err, httpx.ConnectError):
        return DaemonError(NOT_RUNNING)
    if isinstance(err, httpx.TimeoutException):
        return DaemonError(f"cargobayd did not answer in time ({err or type(err).__name__})")
    return DaemonError(
        f"lost the connection to cargobayd ({err or type(err).__name__}); "
        "check `cargobay daemon status` and the daemon log"
    )


def _timeout(call: _Call) -> httpx.Timeout:
    return httpx.Timeout(DEFAULT_TIMEOUT, read=call.timeout)


def _socket_path(paths: Paths | None, socket_path: str | Path | None) -> str:
    if socket_path is not None:
        return str(socket_path)
    return str((paths or Paths.from_env()).daemon_socket)


class _Requests:
    """The API as request descriptions (shared by the sync and async clients)."""

    @staticmethod
    def info() -> _Call:
        return _Call("GET", "/v1/info", timeout=10.0)

    @staticmethod
    def machine_metrics(name: str) -> _Call:
        return _Call("GET", f"/v1/machines/{_seg(name)}/metrics", timeout=30.0)

    @staticmethod
    def list_plugins() -> _Call:
        return _Call("GET", "/v1/plugins", timeout=10.0)

    @staticmethod
    def spice_probe(body: dict[str, Any]) -> _Call:
        return _Call("POST", "/v1/spice/probe", json=body, timeout=float(body["timeout"]) + 5)

    @staticmethod
    def list_machines() -> _Call:
        return _Call("GET", "/v1/machines")

    @staticmethod
    def create_machine(
        name: str,
        image: str | None,
        cpus: int | None,
        memory: str | int | None,
        disk: str | int | None,
        ports: Sequence[str] | None,
        template: str | None,
        start: bool,
        boot_timeout: float,
        env: Mapping[str, str] | None = None,
        shares: Sequence[str] | None = None,
        cache_strategy: str | None = None,
        restart: str | None = None,
        network: str | None = None,
    ) -> _Call:
        # Left-out values are not sent: the daemon fills them from the template, then
        # from config.yaml's defaults.
        given = {
            "image": image,
            "cpus": cpus,
            "memory": memory,
            "disk": disk,
            "ports": None if ports is None else list(ports),
            "env": None if env is None else dict(env),
            "template": template,
            "shares": None if shares is None else list(shares),
            "cache_strategy": cache_strategy,
            "restart": restart,
            "network": network,
        }
        body = {
            "name": name,
            **{k: v for k, v in given.items() if v is not None},
            "start": start,
            "boot_timeout": boot_timeout,
        }
        return _Call("POST", "/v1/machines", json=body, timeout=boot_timeout + DEFAULT_TIMEOUT)

    @staticmethod
    def get_machine(name: str) -> _Call:
        return _Call("GET", f"/v1/machines/{_seg(name)}")

    @staticmethod
    def machine_config(name: str) -> _Call:
        return _Call("GET", f"/v1/machines/{_seg(name)}/config")

    @staticmethod
    def set_machine_config(name: str, settings: Mapping[str, Any]) -> _Call:
        return _Call("PATCH", f"/v1/machines/{_seg(name)}/config", json={"set": dict(settings)})

    @staticmethod
    def start(name: str, boot_timeout: float, snapshot: str | None = None) -> _Call:
        body: dict[str, Any] = {"boot_timeout": boot_timeout}
        if snapshot is not None:
            body["snapshot"] = snapshot
        return _Call(
            "POST",
            f"/v1/machines/{_seg(name)}/start",
            json=body,
            timeout=boot_timeout + DEFAULT_TIMEOUT,
        )

    @staticmethod
    def deploy(name: str, path: str, command: str | None, restart: bool) -> _Call:
        body: dict[str, Any] = {"path": path, "restart": restart}
        if command is not None:
            body["command"] = command
        return _Call(
            "POST", f"/v1/machines/{_seg(name)}/deploy", json=body, timeout=SNAPSHOT_TIMEOUT
        )

    @staticmethod
    def hypervisors() -> _Call:
        return _Call("GET", "/v1/hypervisors")

    @staticmethod
    def snapshots(name: str) -> _Call:
        return _Call("GET", f"/v1/machines/{_seg(name)}/snapshots")

    @staticmethod
    def take_snapshot(name: str, tag: str | None) -> _Call:
        body = {} if tag is None else {"tag": tag}
        return _Call(
            "POST", f"/v1/machines/{_seg(name)}/snapshots", json=body, timeout=SNAPSHOT_TIMEOUT
        )

    @staticmethod
    def delete_snapshot(name: str, tag: str) -> _Call:
        return _Call("DELETE", f"/v1/machines/{_seg(name)}/snapshots/{_seg(tag)}")

    @staticmethod
    def fork(name: str, count: int, snapshot: str | None, boot_timeout: float) -> _Call:
        body: dict[str, Any] = {"count": count, "boot_timeout": boot_timeout}
        if snapshot is not None:
            body["snapshot"] = snapshot
        return _Call(
            "POST",
            f"/v1/machines/{_seg(name)}/fork",
            json=body,
            timeout=boot_timeout + SNAPSHOT_TIMEOUT,
        )

    @staticmethod
    def stop(name: str, force: bool, timeout: float) -> _Call:
        return _Call(
            "POST",
            f"/v1/machines/{_seg(name)}/stop",
            json={"force": force, "timeout": timeout},
            timeout=timeout + DEFAULT_TIMEOUT,
        )

    @staticmethod
    def pause(name: str) -> _Call:
        return _Call("POST", f"/v1/machines/{_seg(name)}/pause")

    @staticmethod
    def resume(name: str) -> _Call:
        return _Call("POST", f"/v1/machines/{_seg(name)}/resume")

    @staticmethod
    def delete(name: str, force: bool) -> _Call:
        return _Call(
            "DELETE",
            f"/v1/machines/{_seg(name)}",
            params={"force": "true" if force else "false"},
            timeout=60.0 + DEFAULT_TIMEOUT,
        )

    @staticmethod
    def exec(
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        cwd: str | None,
        stdin: bytes | None,
        tty: bool,
        timeout: float | None,
    ) -> _Call:
        body = {
            "argv": list(argv),
            "env": dict(env or {}),
            "cwd": cwd,
            "stdin_b64": base64.b64encode(stdin).decode() if stdin is not None else None,
            "tty": tty,
            "timeout": timeout,
        }
        return _Call("POST", f"/v1/machines/{_seg(name)}/exec", json=body, timeout=None)

    @staticmethod
    def logs(
        name: str, tail: int | None, follow: bool, sources: Sequence[str] | None = None
    ) -> _Call:
        params: dict[str, Any] = {"follow": "true" if follow else "false"}
        if sources:
            params["source"] = list(sources)
        if tail is not None:
            params["tail"] = tail
        return _Call("GET", f"/v1/machines/{_seg(name)}/logs", params=params, timeout=None)

    @staticmethod
    def read_file(name: str, path: str) -> _Call:
        url = f"/v1/machines/{_seg(name)}/files"
        return _Call("GET", url, params={"path": path}, timeout=FILE_TIMEOUT, raw=True)

    @staticmethod
    def write_file(name: str, path: str, data: bytes, mode: int | None, mkdirs: bool) -> _Call:
        params: dict[str, Any] = {"path": path, "mkdirs": "true" if mkdirs else "false"}
        if mode is not None:
            params["mode"] = mode
        url = f"/v1/machines/{_seg(name)}/files"
        return _Call("PUT", url, params=params, content=data, timeout=FILE_TIMEOUT)

    @staticmethod
    def list_files(name: str, path: str) -> _Call:
        return _Call("GET", f"/v1/machines/{_seg(name)}/files/list", params={"path": path})

    @staticmethod
    def list_images() -> _Call:
        return _Call("GET", "/v1/images")

    @staticmethod
    def build_image(name: str, force: bool, kernel: str | None = None) -> _Call:
        body: dict[str, Any] = {"name": name, "force": force}
        if kernel is not None:
            body["kernel"] = kernel
        return _Call("POST", "/v1/images/build", json=body, timeout=None)

    @staticmethod
    def delete_image(name: str) -> _Call:
        return _Call("DELETE", f"/v1/images/{_seg(name)}")

    @staticmethod
    def transfer_data(
        name: str, op: str, host_path: str, guest_path: str, delete: bool, reverse: bool
    ) -> _Call:
        body: dict[str, Any] = {"op": op, "host_path": host_path, "guest_path": guest_path}
        body |= {"delete": delete, "reverse": reverse}
        return _Call("POST", f"/v1/machines/{_seg(name)}/data", json=body, timeout=None)

    @staticmethod
    def attach_data(
        name: str, kind: str, guest_path: str, host_path: str | None, size: str | int | None
    ) -> _Call:
        body: dict[str, Any] = {"kind": kind, "guest_path": guest_path}
        body |= {k: v for k, v in (("host_path", host_path), ("size", size)) if v is not None}
        url = f"/v1/machines/{_seg(name)}/data/attachments"
        return _Call("POST", url, json=body, timeout=600.0)

    @staticmethod
    def detach_data(name: str, guest_path: str) -> _Call:
        url = f"/v1/machines/{_seg(name)}/data/attachments"
        return _Call("DELETE", url, params={"guest_path": guest_path})

    @staticmethod
    def shutdown_daemon() -> _Call:
        return _Call("POST", "/v1/daemon/shutdown")


def _result(events: list[dict[str, Any]]) -> ExecResult:
    out, err = bytearray(), bytearray()
    pid: int | None = None
    exit_event: dict[str, Any] | None = None
    for event in events:
        kind = event.get("type")
        if kind == "stdout":
            out += base64.b64decode(event.get("data_b64") or "")
        elif kind == "stderr":
            err += base64.b64decode(event.get("data_b64") or "")
        elif kind == "started":
            pid = event.get("pid")
        elif kind == "exit":
            exit_event = event
    if exit_event is None:
        raise DaemonError("the exec stream ended without an exit event; see the daemon log")
    return ExecResult(
        exit_code=exit_event.get("exit_code"),
        signal=exit_event.get("signal"),
        timed_out=bool(exit_event.get("timed_out")),
        duration=float(exit_event.get("duration") or 0.0),
        stdout=bytes(out),
        stderr=bytes(err),
        pid=pid,
    )


class CargoBayClient:
    """Blocking client (httpx over the daemon's Unix socket)."""

    def __init__(
        self,
        paths: Paths | None = None,
        socket_path: str | Path | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.socket_path = _socket_path(paths, socket_path)
        self._http = httpx.Client(
            # verify=False: no TLS over a Unix socket, and building the default SSL
            # context (loading the CA bundle) costs ~70 ms of every CLI command.
            transport=httpx.HTTPTransport(uds=self.socket_path, verify=False),
            base_url="http://cargobayd",
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _request(self, call: _Call) -> Any:
        try:
            response = self._http.request(
                call.method,
                call.url,
                json=call.json,
                params=call.params,
                content=call.content,
                timeout=_timeout(call),
            )
        except httpx.TransportError as err:
            raise _transport_error(err) from err
        if response.status_code >= 400:
            raise _error_from(response, response.content)
        if call.raw:
            return response.content
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _stream(self, call: _Call) -> Iterator[bytes]:
        try:
            with self._http.stream(
                call.method, call.url, json=call.json, params=call.params, timeout=_timeout(call)
            ) as response:
                if response.status_code >= 400:
                    raise _error_from(response, response.read())
                yield from response.iter_raw()
        except httpx.TransportError as err:
            raise _transport_error(err) from err

    def _events(self, call: _Call) -> Iterator[dict[str, Any]]:
        buffer = b""
        for chunk in self._stream(call):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    event = json.loads(line)
                    raise_for_event(event)
                    yield event
        if buffer.strip():
            event = json.loads(buffer)
            raise_for_event(event)
            yield event

    # -- endpoints ------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request(_Requests.info())
        return result

    def machine_metrics(self, name: str) -> dict[str, Any]:
        """CPU, memory, disk/network I/O and uptime of machine ``name`` (host and guest)."""
        result: dict[str, Any] = self._request(_Requests.machine_metrics(name))
        return result

    def list_plugins(self) -> list[dict[str, Any]]:
        """The daemon's plugins (entry-point group ``cargobay.plugins``), with load errors."""
        result: list[dict[str, Any]] = self._request(_Requests.list_plugins())
        return result

    def spice_probe(
        self,
        host: str,
        port: int,
        *,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """What a Spice server offers, and how long linking each channel took (ms)."""
        body = {"host": host, "port": port, "password": password, "tls": tls,
                "ca_file": ca_file, "timeout": timeout}  # fmt: skip
        result: dict[str, Any] = self._request(_Requests.spice_probe(body))
        return result

    def list_machines(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request(_Requests.list_machines())
        return result

    def create_machine(
        self,
        name: str,
        *,
        image: str | None = None,
        cpus: int | None = None,
        memory: str | int | None = None,
        disk: str | int | None = None,
        ports: Sequence[str] | None = None,
        template: str | None = None,
        start: bool = True,
        boot_timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
        shares: Sequence[str] | None = None,
        cache_strategy: str | None = None,
        restart: str | None = None,
        network: str | None = None,
    ) -> dict[str, Any]:
        call = _Requests.create_machine(
            name,
            image,
            cpus,
            memory,
            disk,
            ports,
            template,
            start,
            boot_timeout,
            env,
            shares,
            cache_strategy,
            restart,
            network,
        )
        result: dict[str, Any] = self._request(call)
        return result

    def get_machine(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(_Requests.get_machine(name))
        return result

    def machine_config(self, name: str) -> dict[str, Any]:
        """A machine's settings: ``{"name", "settings": {cpus, memory, ...}}``."""
        result: dict[str, Any] = self._request(_Requests.machine_config(name))
        return result

    def set_machine_config(self, name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Change settings all at once (none if one is invalid); says what needs a restart."""
        result: dict[str, Any] = self._request(_Requests.set_machine_config(name, settings))
        return result

    def start(
        self, name: str, *, boot_timeout: float = 120.0, snapshot: str | None = None
    ) -> dict[str, Any]:
        """Boot a stopped machine, or warm-start it from ``snapshot``."""
        result: dict[str, Any] = self._request(_Requests.start(name, boot_timeout, snapshot))
        return result

    def snapshots(self, name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request(_Requests.snapshots(name))
        return result

    def hypervisors(self) -> list[dict[str, Any]]:
        """Every known backend: ``{"name", "available", "reason"}``."""
        result: list[dict[str, Any]] = self._request(_Requests.hypervisors())
        return result

    def deploy(
        self, name: str, path: str, *, command: str | None = None, restart: bool = False
    ) -> dict[str, Any]:
        """Copy the application at host ``path`` into running machine ``name`` and run it."""
        result: dict[str, Any] = self._request(_Requests.deploy(name, path, command, restart))
        return result

    def take_snapshot(self, name: str, tag: str | None = None) -> dict[str, Any]:
        """Save a running machine's state and data disk; it keeps running."""
        result: dict[str, Any] = self._request(_Requests.take_snapshot(name, tag))
        return result

    def delete_snapshot(self, name: str, tag: str) -> None:
        self._request(_Requests.delete_snapshot(name, tag))

    def fork(
        self,
        name: str,
        count: int = 1,
        *,
        snapshot: str | None = None,
        boot_timeout: float = 120.0,
    ) -> list[dict[str, Any]]:
        """Start ``count`` running clones from a snapshot (a new one if not given)."""
        result: list[dict[str, Any]] = self._request(
            _Requests.fork(name, count, snapshot, boot_timeout)
        )
        return result

    def stop(self, name: str, *, force: bool = False, timeout: float = 10.0) -> dict[str, Any]:
        result: dict[str, Any] = self._request(_Requests.stop(name, force, timeout))
        return result

    def pause(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(_Requests.pause(name))
        return result

    def resume(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(_Requests.resume(name))
        return result

    def delete(self, name: str, *, force: bool = False) -> None:
        self._request(_Requests.delete(name, force))

    def exec_stream(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        tty: bool = False,
        timeout: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Events as they come: started, stdout/stderr (``data_b64``), exit."""
        return self._events(_Requests.exec(name, argv, env, cwd, stdin, tty, timeout))

    def exec(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        tty: bool = False,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run a command to completion; its output and exit status."""
        events = self.exec_stream(
            name, argv, env=env, cwd=cwd, stdin=stdin, tty=tty, timeout=timeout
        )
        return _result(list(events))

    def logs(
        self,
        name: str,
        *,
        tail: int | None = None,
        follow: bool = False,
        sources: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """Console log by default; ``sources``: console, hypervisor, platform or all."""
        decoder = _utf8_decoder()
        for chunk in self._stream(_Requests.logs(name, tail, follow, sources)):
            if text := decoder.decode(chunk):
                yield text
        if rest := decoder.decode(b"", final=True):
            yield rest

    def read_file(self, name: str, path: str) -> bytes:
        """The contents of ``path`` (absolute) in running machine ``name`` (64 MiB at most)."""
        result: bytes = self._request(_Requests.read_file(name, path))
        return result

    def write_file(
        self,
        name: str,
        path: str,
        data: bytes,
        *,
        mode: int | None = None,
        mkdirs: bool = False,
    ) -> dict[str, Any]:
        """Create or replace ``path`` atomically; ``{"path", "written"}``."""
        result: dict[str, Any] = self._request(
            _Requests.write_file(name, path, bytes(data), mode, mkdirs)
        )
        return result

    def list_files(self, name: str, path: str) -> list[dict[str, Any]]:
        """The entries of directory ``path``: name, path, type, size, mode, mtime ..."""
        result: list[dict[str, Any]] = self._request(_Requests.list_files(name, path))
        return result

    def list_images(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request(_Requests.list_images())
        return result

    def build_image(
        self, name: str = "default", *, force: bool = False, kernel: str | None = None
    ) -> Iterator[dict[str, Any]]:
        return self._events(_Requests.build_image(name, force, kernel))

    def delete_image(self, name: str) -> None:
        self._request(_Requests.delete_image(name))

    def transfer_data(
        self,
        name: str,
        op: str,
        host_path: str,
        guest_path: str,
        *,
        delete: bool = False,
        reverse: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """``data push|pull|sync``: progress events (plan, file..., done)."""
        call = _Requests.transfer_data(name, op, host_path, guest_path, delete, reverse)
        return self._events(call)

    def attach_data(
        self,
        name: str,
        kind: str,
        guest_path: str,
        *,
        host_path: str | None = None,
        size: str | int | None = None,
    ) -> dict[str, Any]:
        """A block image (``kind="image"``, built from ``host_path``) or a scratch volume
        (``kind="volume"``, ``size``) mounted at ``guest_path`` from the next start."""
        call = _Requests.attach_data(name, kind, guest_path, host_path, size)
        result: dict[str, Any] = self._request(call)
        return result

    def detach_data(self, name: str, guest_path: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(_Requests.detach_data(name, guest_path))
        return result

    def shutdown_daemon(self) -> None:
        self._request(_Requests.shutdown_daemon())


class AsyncCargoBayClient:
    """asyncio client (httpx.AsyncClient over the daemon's Unix socket)."""

    def __init__(
        self,
        paths: Paths | None = None,
        socket_path: str | Path | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.socket_path = _socket_path(paths, socket_path)
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=self.socket_path, verify=False),
            base_url="http://cargobayd",
            timeout=timeout,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _request(self, call: _Call) -> Any:
        try:
            response = await self._http.request(
                call.method,
                call.url,
                json=call.json,
                params=call.params,
                content=call.content,
                timeout=_timeout(call),
            )
        except httpx.TransportError as err:
            raise _transport_error(err) from err
        if response.status_code >= 400:
            raise _error_from(response, response.content)
        if call.raw:
            return response.content
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def _stream(self, call: _Call) -> AsyncIterator[bytes]:
        try:
            async with self._http.stream(
                call.method, call.url, json=call.json, params=call.params, timeout=_timeout(call)
            ) as response:
                if response.status_code >= 400:
                    raise _error_from(response, await response.aread())
                async for chunk in response.aiter_raw():
                    yield chunk
        except httpx.TransportError as err:
            raise _transport_error(err) from err

    async def _events(self, call: _Call) -> AsyncIterator[dict[str, Any]]:
        buffer = b""
        async for chunk in self._stream(call):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    event = json.loads(line)
                    raise_for_event(event)
                    yield event
        if buffer.strip():
            event = json.loads(buffer)
            raise_for_event(event)
            yield event

    # -- endpoints ------------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(_Requests.info())
        return result

    async def machine_metrics(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(_Requests.machine_metrics(name))
        return result

    async def list_plugins(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request(_Requests.list_plugins())
        return result

    async def list_machines(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request(_Requests.list_machines())
        return result

    async def create_machine(
        self,
        name: str,
        *,
        image: str | None = None,
        cpus: int | None = None,
        memory: str | int | None = None,
        disk: str | int | None = None,
        ports: Sequence[str] | None = None,
        template: str | None = None,
        start: bool = True,
        boot_timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
        shares: Sequence[str] | None = None,
        cache_strategy: str | None = None,
        restart: str | None = None,
        network: str | None = None,
    ) -> dict[str, Any]:
        call = _Requests.create_machine(
            name,
            image,
            cpus,
            memory,
            disk,
            ports,
            template,
            start,
            boot_timeout,
            env,
            shares,
            cache_strategy,
            restart,
            network,
        )
        result: dict[str, Any] = await self._request(call)
        return result

    async def get_machine(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(_Requests.get_machine(name))
        return result

    async def machine_config(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(_Requests.machine_config(name))
        return result

    async def set_machine_config(self, name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(_Requests.set_machine_config(name, settings))
        return result

    async def start(
        self, name: str, *, boot_timeout: float = 120.0, snapshot: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(_Requests.start(name, boot_timeout, snapshot))
        return result

    async def deploy(
        self, name: str, path: str, *, command: str | None = None, restart: bool = False
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(_Requests.deploy(name, path, command, restart))
        return result

    async def snapshots(self, name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request(_Requests.snapshots(name))
        return result

    async def take_snapshot(self, name: str, tag: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(_Requests.take_snapshot(name, tag))
        return result

    async def delete_snapshot(self, name: str, tag: str) -> None:
        await self._request(_Requests.delete_snapshot(name, tag))

    async def fork(
        self,
        name: str,
        count: int = 1,
        *,
        snapshot: str | None = None,
        boot_timeout: float = 120.0,
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request(
            _Requests.fork(name, count, snapshot, boot_timeout)
        )
        return result

    async def stop(
        self, name: str, *, force: bool = False, timeout: float = 10.0
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(_Requests.stop(name, force, timeout))
        return result

    async def pause(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(_Requests.pause(name))
        return result

    async def resume(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(_Requests.resume(name))
        return result

    async def delete(self, name: str, *, force: bool = False) -> None:
        await self._request(_Requests.delete(name, force))

    def exec_stream(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        tty: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        return self._events(_Requests.exec(name, argv, env, cwd, stdin, tty, timeout))

    async def exec(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        tty: bool = False,
        timeout: float | None = None,
    ) -> ExecResult:
        stream = self.exec_stream(
            name, argv, env=env, cwd=cwd, stdin=stdin, tty=tty, timeout=timeout
        )
        return _result([event async for event in stream])

    async def logs(
        self,
        name: str,
        *,
        tail: int | None = None,
        follow: bool = False,
        sources: Sequence[str] | None = None,
    ) -> AsyncIterator[str]:
        decoder = _utf8_decoder()
        async for chunk in self._stream(_Requests.logs(name, tail, follow, sources)):
            if text := decoder.decode(chunk):
                yield text
        if rest := decoder.decode(b"", final=True):
            yield rest

    async def read_file(self, name: str, path: str) -> bytes:
        result: bytes = await self._request(_Requests.read_file(name, path))
        return result

    async def write_file(
        self,
        name: str,
        path: str,
        data: bytes,
        *,
        mode: int | None = None,
        mkdirs: bool = False,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            _Requests.write_file(name, path, bytes(data), mode, mkdirs)
        )
        return result

    async def list_files(self, name: str, path: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request(_Requests.list_files(name, path))
        return result

    async def list_images(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request(_Requests.list_images())
        return result

    def build_image(
        self, name: str = "default", *, force: bool = False, kernel: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        return self._events(_Requests.build_image(name, force, kernel))

    async def delete_image(self, name: str) -> None:
        await self._request(_Requests.delete_image(name))

    def transfer_data(
        self,
        name: str,
        op: str,
        host_path: str,
        guest_path: str,
        *,
        delete: bool = False,
        reverse: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        """``data push|pull|sync``: progress events (plan, file..., done)."""
        call = _Requests.transfer_data(name, op, host_path, guest_path, delete, reverse)
        return self._events(call)

    async def attach_data(
        self,
        name: str,
        kind: str,
        guest_path: str,
        *,
        host_path: str | None = None,
        size: str | int | None = None,
    ) -> dict[str, Any]:
        call = _Requests.attach_data(name, kind, guest_path, host_path, size)
        result: dict[str, Any] = await self._request(call)
        return result

    async def detach_data(self, name: str, guest_path: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(_Requests.detach_data(name, guest_path))
        return result

    async def shutdown_daemon(self) -> None:
        await self._request(_Requests.shutdown_daemon())


def _utf8_decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def _seg(name: str) -> str:
    """A name as one URL path segment."""
    return quote(name, safe="")
