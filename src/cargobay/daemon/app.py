"""The daemon's HTTP API v1: a FastAPI app over the machines service.

Handlers only parse and validate, then call the service (Firecracker's parse -> action
-> VMM split).  Every failure becomes a JSON error body ``{"error": {"code", "message"}}``:

- a ``CargoBayError`` -> its ``status`` and ``code``;
- a request that does not validate -> 400 ``invalid_input`` with a one-line message that
  names the field;
- anything else -> 500 ``error`` with the message, logged with its traceback; the daemon
  keeps serving.

Streams (exec, image build) are NDJSON: one JSON object per line.  Their first event is
produced before the response starts, so an error that happens up front (unknown machine,
program not found) is an ordinary HTTP error; one that happens midway ends the stream with
``{"type": "error", "code", "message"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import cargobay
from cargobay.daemon import hosts as hosts_api
from cargobay.daemon.machine_config import new_machine
from cargobay.daemon.schemas import (
    API_VERSION,
    ERROR_RESPONSES,
    BuildImageRequest,
    CreateMachineRequest,
    ExecRequestBody,
    Info,
    Machine,
    SpiceProbeRequest,
    StartRequest,
    StopRequest,
)
from cargobay.daemon.sse import sse_lines
from cargobay.errors import CargoBayError, Conflict, InvalidInput
from cargobay.hypervisors import available as available_backends
from cargobay.images.build import KernelKind
from cargobay.images.manifest import ImageManifest
from cargobay.machines.agent import ExecExit, ExecOutput, ExecRequest, ExecStarted
from cargobay.machines.logs import check_sources as check_log_sources
from cargobay.machines.models import VMInstance
from cargobay.machines.service import MachineService
from cargobay.paths import Paths
from cargobay.plugins import PluginInfo, PluginManager
from cargobay.plugins.loading import load_plugins

__all__ = ["DaemonState", "ImageCatalog", "create_app"]

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"


class ImageCatalog(Protocol):
    """The image operations the API exposes."""

    def list_images(self) -> list[ImageManifest]: ...

    def delete_image(self, name: str) -> None: ...

    def build_image(
        self, name: str, force: bool, kernel: KernelKind | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Progress events ``{"type": "progress", "step", "fraction", "message"}``, then
        ``{"type": "done", "image": manifest-as-JSON}``."""
        ...


@dataclass
class DaemonState:
    paths: Paths
    service: MachineService
    images: ImageCatalog
    request_shutdown: Callable[[], None] = lambda: None
    started: float = field(default_factory=time.monotonic)
    plugins: PluginManager = field(default_factory=PluginManager)


# -- error handling -----------------------------------------------------------------------


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _validation_message(err: RequestValidationError) -> str:
    errors = err.errors()
    if not errors:
        return "bad request"
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body",)]
    where = loc[0] if loc and loc[0] in ("query", "path") and len(loc) > 1 else None
    field_name = ".".join(loc[1:] if where else loc) or "body"
    msg = str(first.get("msg", "invalid")).rstrip(".")
    if first.get("type") == "extra_forbidden":
        msg = "unknown field"
    elif first.get("type") == "missing":
        return f"missing field {field_name!r}"
    elif first.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"bad value for {field_name!r}: {msg}{more}"


_HTTP_CODES = {400: "invalid_input", 404: "not_found", 405: "invalid_input", 409: "conflict"}


class CatchAll:
    """Turns an exception that escaped every handler into a 500 JSON body.

    Starlette's own handler for ``Exception`` re-raises after answering, which ends up in
    uvicorn's logs as a crash; this one answers, logs once, and swallows it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as err:
            log.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            if not started:
                response = error_response(500, "error", f"{type(err).__name__}: {err}")
                await response(scope, receive, send)


# -- streams ------------------------------------------------------------------------------


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _error_line(err: BaseException) -> bytes:
    if isinstance(err, CargoBayError):
        return _line({"type": "error", "code": err.code, "message": str(err)})
    return _line({"type": "error", "code": "error", "message": f"{type(err).__name__}: {err}"})


async def _ndjson(
    first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[bytes]:
    try:
        if first is not None:
            yield _line(first)
        async for event in rest:
            yield _line(event)
    except Exception as err:
        if not isinstance(err, CargoBayError):
            log.exception("stream failed")
        yield _error_line(err)
    finally:
        close = getattr(rest, "aclose", None)
        if close is not None:
            await close()


async def _prefetched(
    events: AsyncIterator[dict[str, Any]],
) -> StreamingResponse:
    """Start an NDJSON stream once its first event exists (so early errors are HTTP errors)."""
    try:
        first: dict[str, Any] | None = await anext(events)
    except StopAsyncIteration:
        first = None
    except BaseException:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
        raise
    return StreamingResponse(_ndjson(first, events), media_type=NDJSON)


async def _exec_json(events: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
    try:
        async for event in events:
            if isinstance(event, ExecOutput):
                yield {"type": event.stream, "data_b64": base64.b64encode(event.data).decode()}
            elif isinstance(event, ExecStarted):
                yield {"type": "started", "pid": event.pid}
            elif isinstance(event, ExecExit):
                yield {
                    "type": "exit",
                    "exit_code": event.exit_code,
                    "signal": event.signal,
                    "timed_out": event.timed_out,
                    "duration": event.duration,
                }
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


# -- the app ------------------------------------------------------------------------------


def create_app(state: DaemonState, *, recover: bool = True) -> FastAPI:
    """The API app.  Its lifespan re-adopts machines (``recover``) and, at the end, lets go
    of them without stopping any VM."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if recover:
            await state.service.recover()
        await load_plugins(state)
        hosts_api.startup(app)
        try:
            yield
        finally:
            await hosts_api.shutdown(app)
            await state.service.close()

    app = FastAPI(
        title="cargobayd",
        version=cargobay.__version__,
        summary="The CargoBay daemon API (v1): machines, images, streams as NDJSON.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.daemon = state
    app.add_middleware(CatchAll)

    @app.exception_handler(CargoBayError)
    async def _cargobay_error(request: Request, err: CargoBayError) -> JSONResponse:
        if err.status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, err)
        return error_response(err.status, err.code, str(err))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return error_response(400, InvalidInput.code, _validation_message(err))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(err.status_code, "error")
        message = str(err.detail)
        if err.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif err.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(err.status_code, code, message)

    service = state.service

    def machine(vm: VMInstance) -> Machine:
        return Machine(**vm.model_dump(), agent_ready=service.agent_ready(vm))

    @app.get("/v1/info", response_model=Info, tags=["daemon"])
    async def info() -> Info:
        accel = service.accel()
        return Info(
            version=cargobay.__version__,
            api_version=API_VERSION,
            pid=os.getpid(),
            uptime=round(time.monotonic() - state.started, 3),
            accel=accel if accel in ("kvm", "tcg") else None,  # type: ignore[arg-type]
            backends=available_backends(),
            paths={
                "data": str(state.paths.data),
                "state": str(state.paths.state),
                "cache": str(state.paths.cache),
                "runtime": str(state.paths.runtime),
                "images": str(state.paths.images),
                "machines": str(state.paths.machines),
                "db": str(state.paths.db),
                "socket": str(state.paths.daemon_socket),
                "log": str(state.paths.daemon_log),
            },
        )

    @app.get("/v1/plugins", response_model=list[PluginInfo], tags=["plugins"])
    async def list_plugins() -> list[PluginInfo]:
        """The plugins of entry-point group ``cargobay.plugins``, with any load error."""
        return state.plugins.infos()

    @app.get("/v1/machines", response_model=list[Machine], tags=["machines"])
    async def list_machines() -> list[Machine]:
        return [machine(vm) for vm in service.list_machines()]

    @app.post("/v1/machines", status_code=201, response_model=Machine, tags=["machines"])
    async def create_machine(body: CreateMachineRequest) -> Machine:
        vm = new_machine(service, state.paths, body)  # template, then config.yaml defaults
        return machine(await service.create(vm, start=body.start, boot_timeout=body.boot_timeout))

    @app.get("/v1/machines/{name}", response_model=Machine, tags=["machines"])
    async def get_machine(name: str) -> Machine:
        return machine(service.get_machine(name))

    @app.post("/v1/machines/{name}/start", response_model=Machine, tags=["machines"])
    async def start_machine(name: str, body: StartRequest | None = None) -> Machine:
        body = body or StartRequest()
        return machine(
            await service.start(name, boot_timeout=body.boot_timeout, snapshot=body.snapshot)
        )

    @app.post("/v1/machines/{name}/stop", response_model=Machine, tags=["machines"])
    async def stop_machine(name: str, body: StopRequest | None = None) -> Machine:
        body = body or StopRequest()
        return machine(await service.stop(name, force=body.force, timeout=body.timeout))

    @app.post("/v1/machines/{name}/pause", response_model=Machine, tags=["machines"])
    async def pause_machine(name: str) -> Machine:
        return machine(await service.pause(name))

    @app.post("/v1/machines/{name}/resume", response_model=Machine, tags=["machines"])
    async def resume_machine(name: str) -> Machine:
        return machine(await service.resume(name))

    @app.delete("/v1/machines/{name}", status_code=204, tags=["machines"])
    async def delete_machine(name: str, force: bool = False) -> Response:
        await service.delete(name, force=force)
        return Response(status_code=204)

    @app.post(
        "/v1/machines/{name}/exec",
        tags=["machines"],
        response_class=StreamingResponse,
        responses={200: {"content": {NDJSON: {}}, "description": "NDJSON exec events"}},
    )
    async def exec_in_machine(name: str, body: ExecRequestBody) -> StreamingResponse:
        stdin = None
        if body.stdin_b64 is not None:
            try:
                stdin = base64.b64decode(body.stdin_b64, validate=True)
            except (binascii.Error, ValueError) as err:
                raise InvalidInput("bad value for 'stdin_b64': not valid base64") from err
        request = ExecRequest(
            argv=body.argv,
            env=body.env,
            cwd=body.cwd,
            stdin=stdin,
            tty=body.tty,
            timeout=body.timeout,
        )
        return await _prefetched(_exec_json(await service.exec(name, request)))

    @app.get(
        "/v1/machines/{name}/logs",
        tags=["machines"],
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/plain": {}, "text/event-stream": {}},
                "description": "The console log: plain text, or one server-sent event per "
                "line (then `event: end`) when the request accepts text/event-stream",
            }
        },
    )
    async def machine_logs(
        request: Request,
        name: str,
        tail: int | None = Query(default=None, ge=0),
        follow: bool = False,
        source: list[str] = Query(  # noqa: B008
            default=["console"],
            description="console (default), hypervisor, platform, or all; repeatable",
        ),
    ) -> StreamingResponse:
        service.get_machine(name)  # 404 before the stream starts
        check_log_sources(source)  # 400 before the stream starts
        text = service.logs(name, tail=tail, follow=follow, sources=source)
        if "text/event-stream" in request.headers.get("accept", ""):
            return StreamingResponse(
                sse_lines(text),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return StreamingResponse(text, media_type="text/plain; charset=utf-8")

    @app.get("/v1/images", response_model=list[ImageManifest], tags=["images"])
    async def list_images() -> list[ImageManifest]:
        return state.images.list_images()

    @app.post(
        "/v1/images/build",
        tags=["images"],
        response_class=StreamingResponse,
        responses={200: {"content": {NDJSON: {}}, "description": "NDJSON build progress"}},
    )
    async def build_image(body: BuildImageRequest | None = None) -> StreamingResponse:
        body = body or BuildImageRequest()
        return await _prefetched(state.images.build_image(body.name, body.force, body.kernel))

    @app.delete("/v1/images/{name}", status_code=204, tags=["images"])
    async def delete_image(name: str) -> Response:
        users = service.machines_using_image(name)
        if users:
            raise Conflict(
                f"image {name!r} is used by machine(s) {', '.join(users)}; "
                "remove them first with `cargobay vm rm`"
            )
        state.images.delete_image(name)
        return Response(status_code=204)

    @app.post("/v1/spice/probe", tags=["vmcontrol"])
    async def spice_probe(body: SpiceProbeRequest) -> dict[str, Any]:
        """Link a Spice server's main channel, list its channels, link each, with timings."""
        from cargobay.vmcontrol.spice.client import probe, tls_context

        context = tls_context(body.ca_file) if body.tls else None
        result = await probe(body.host, body.port, body.password, tls=context, timeout=body.timeout)
        return result.to_dict()

    @app.post("/v1/daemon/shutdown", status_code=202, tags=["daemon"])
    async def shutdown() -> JSONResponse:
        return JSONResponse(
            {"status": "shutting down"},
            status_code=202,
            background=BackgroundTask(state.request_shutdown),
        )

    from cargobay.daemon.machine_files import router as files_router

    app.include_router(files_router)
    from cargobay.daemon.machine_config import router as machine_config_router

    app.include_router(machine_config_router)
    from cargobay.daemon.machine_data import router as machine_data_router

    app.include_router(machine_data_router)
    from cargobay.daemon.machine_snapshots import router as snapshots_router
    from cargobay.machines.snapshot_service import SnapshotService

    app.state.snapshots = SnapshotService(service)
    app.include_router(snapshots_router)
    from cargobay.daemon.machine_deploy import router as deploy_router

    app.include_router(deploy_router)
    from cargobay.daemon.hypervisors_api import register_optional_backends
    from cargobay.daemon.hypervisors_api import router as hypervisors_router

    app.state.backends = register_optional_backends(state.paths)
    app.include_router(hypervisors_router)
    from cargobay.daemon.containers import router as engine_router

    app.include_router(engine_router)
    from cargobay.daemon.compose import router as compose_router

    app.include_router(compose_router)
    app.include_router(hosts_api.router)
    from cargobay.daemon.scenarios import router as scenarios_router

    app.include_router(scenarios_router)
    from cargobay.daemon.apps import router as apps_router

    app.include_router(apps_router)
    from cargobay.daemon.docker_sockets import router as docker_sockets_router

    app.include_router(docker_sockets_router)
    from cargobay.daemon.webui.routes import mount_ui
    from cargobay.daemon.webui.routes import router as webui_router

    app.include_router(webui_router)
    mount_ui(app)
    _document_errors_as_400(app)
    return app


def _document_errors_as_400(app: FastAPI) -> None:
    """FastAPI documents validation failures as 422; this API answers them with 400 and
    the common error body, so the generated document says that instead."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build()
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = doc.get("components", {}).get("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
