"""The daemon's compose endpoints (``/v1/compose/...``).

Every request names a project the way the ``docker compose`` command line does: the
compose files (absolute, or relative to ``working_dir``), an optional project name and
``--env-file``, profiles, and the caller's environment, which interpolation and bare
``environment`` entries read (the daemon's own environment is not the user's).  The
handler loads the project (a bad file is a 400 naming the file, service and key), then
calls :class:`cargobay.containers.compose.service.ComposeService`.

Long operations (``up``, ``down``, ``stop``, ``start``, ``restart``, ``logs``,
``deploy``) answer NDJSON: ``progress`` events per network, volume and container,
``warning`` and ``plan`` events, and a final ``done``; a failure midway ends the stream
with an ``error`` event naming the service (and what ``up`` rolled back).  The engine is
``DOCKER_HOST`` from the caller's environment if set, else the one the daemon uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from cargobay.containers.compose.executor import Event
from cargobay.containers.compose.export import config_document, export_kubernetes, export_swarm
from cargobay.containers.compose.loader import (
    DEFAULT_FILES,
    LoadedProject,
    bare_project,
    load_project,
)
from cargobay.containers.compose.service import ComposeService

__all__ = ["router"]

NDJSON = "application/x-ndjson"
router = APIRouter(prefix="/v1/compose", tags=["compose"])
_NDJSON_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {NDJSON: {}}, "description": "NDJSON progress events, then done"}
}


class ProjectRef(BaseModel):
    """Which project: files, name, environment (as the compose command line gives them)."""

    model_config = ConfigDict(extra="forbid")
    files: list[str] = Field(default_factory=list, description="compose files (-f), in order")
    project_name: str | None = Field(default=None, description="-p")
    working_dir: str = Field(description="the caller's directory; relative paths start here")
    env: dict[str, str] = Field(default_factory=dict, description="the caller's environment")
    env_file: str | None = Field(default=None, description="--env-file")
    profiles: list[str] = Field(default_factory=list)


class UpRequest(ProjectRef):
    services: list[str] = Field(default_factory=list)
    build: bool = False
    force_recreate: bool = False
    no_recreate: bool = False
    remove_orphans: bool = False
    wait_timeout: float = Field(default=300.0, gt=0, le=3600)
    wait: bool = Field(default=False, description="until healthy (services with a check)")


class DownRequest(ProjectRef):
    volumes: bool = False
    remove_orphans: bool = False
    timeout: int | None = Field(default=None, ge=0, le=3600)


class ServicesRequest(ProjectRef):
    services: list[str] = Field(default_factory=list)
    timeout: int | None = Field(default=None, ge=0, le=3600)


class LogsRequest(ProjectRef):
    services: list[str] = Field(default_factory=list)
    follow: bool = False
    tail: int | None = Field(default=None, ge=0)
    timestamps: bool = False
    grep: str | None = Field(default=None, description="only lines matching this regex")


class ExportRequest(ProjectRef):
    format: Literal["swarm", "kubernetes"]
    namespace: str | None = None
    storage: str = "1Gi"


class DeployRequest(ProjectRef):
    target: Literal["swarm"] = "swarm"


def _load(ref: ProjectRef, *, by_name: bool = False) -> LoadedProject:
    """The project; with ``by_name`` (ps, logs, stop, down), ``-p NAME`` alone is enough
    when there is no compose file (the project is found by its labels)."""
    no_file = not ref.files and not ref.env.get("COMPOSE_FILE") and not _has_default_file(ref)
    if by_name and ref.project_name and no_file:
        return bare_project(ref.project_name, ref.working_dir)
    return load_project(
        ref.files,
        project_name=ref.project_name,
        working_dir=ref.working_dir,
        env=ref.env,
        env_file=ref.env_file,
        profiles=ref.profiles,
    )


def _has_default_file(ref: ProjectRef) -> bool:
    from pathlib import Path

    return any((Path(ref.working_dir) / name).is_file() for name in DEFAULT_FILES)


def _service(ref: ProjectRef) -> ComposeService:
    docker_host = ref.env.get("DOCKER_HOST")
    if docker_host:
        return ComposeService(docker_host)
    from cargobay.containers.detect import resolve_endpoint
    from cargobay.containers.settings import load_settings

    return ComposeService(resolve_endpoint(load_settings().docker_host).url)


async def _events(
    run: Callable[[Callable[[Event], None]], Awaitable[dict[str, Any]]],
) -> AsyncIterator[dict[str, Any]]:
    """Run an operation that reports through a callback, as an event stream; its result
    becomes the ``done`` event."""
    queue: asyncio.Queue[Event | None] = asyncio.Queue()

    async def work() -> dict[str, Any]:
        try:
            return await run(queue.put_nowait)
        finally:
            queue.put_nowait(None)

    task = asyncio.create_task(work())
    try:
        while (event := await queue.get()) is not None:
            yield event
        yield {"type": "done", **(await task)}
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _stream(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    from cargobay.daemon.app import _prefetched  # the app imports this module

    return await _prefetched(events)


@router.post("/config")
async def compose_config(body: ProjectRef) -> dict[str, Any]:
    """The resolved project (interpolated, merged, normalized) and the loader's warnings."""
    loaded = _load(body)
    return {"project": config_document(loaded), "warnings": loaded.warnings}


@router.post("/up", response_class=StreamingResponse, responses=_NDJSON_DOC)
async def compose_up(body: UpRequest) -> StreamingResponse:
    loaded = _load(body)
    service = _service(body)

    async def run(emit: Callable[[Event], None]) -> dict[str, Any]:
        plan = await service.up(
            loaded,
            services=body.services or None,
            build=body.build,
            force_recreate=body.force_recreate,
            no_recreate=body.no_recreate,
            remove_orphans=body.remove_orphans,
            wait_timeout=body.wait_timeout,
            wait=body.wait,
            emit=emit,
        )
        return {
            "project": loaded.project.name,
            "services": {name: p.action for name, p in plan.services.items()},
            "changed": plan.changes,
        }

    return await _stream(_events(run))


@router.post("/down", response_class=StreamingResponse, responses=_NDJSON_DOC)
async def compose_down(body: DownRequest) -> StreamingResponse:
    loaded = _load(body, by_name=True)
    service = _service(body)

    async def run(emit: Callable[[Event], None]) -> dict[str, Any]:
        await service.down(
            loaded,
            volumes=body.volumes,
            remove_orphans=body.remove_orphans,
            timeout=body.timeout,
            emit=emit,
        )
        return {"project": loaded.project.name}

    return await _stream(_events(run))


def _verb(name: Literal["stop", "start", "restart"]) -> Any:
    async def handler(body: ServicesRequest) -> StreamingResponse:
        loaded = _load(body, by_name=name == "stop")
        service = _service(body)

        async def run(emit: Callable[[Event], None]) -> dict[str, Any]:
            services = body.services or None
            if name == "stop":
                await service.stop(loaded, services=services, timeout=body.timeout, emit=emit)
            elif name == "start":
                await service.start(loaded, services=services, emit=emit)
            else:
                await service.restart(loaded, services=services, timeout=body.timeout, emit=emit)
            return {"project": loaded.project.name}

        return await _stream(_events(run))

    handler.__name__ = f"compose_{name}"
    handler.__doc__ = f"{name.capitalize()} the project's containers (dependency order)."
    return handler


for _name in ("stop", "start", "restart"):
    router.add_api_route(
        f"/{_name}",
        _verb(_name),
        methods=["POST"],
        response_class=StreamingResponse,
        responses=_NDJSON_DOC,
    )


@router.post("/ps")
async def compose_ps(body: ServicesRequest) -> list[dict[str, Any]]:
    """One row per container of the project (started by us or by docker-compose)."""
    loaded = _load(body, by_name=True)
    return await _service(body).ps(loaded.project.name, services=body.services or None)


@router.post("/logs", response_class=StreamingResponse, responses=_NDJSON_DOC)
async def compose_logs(body: LogsRequest) -> StreamingResponse:
    """Log lines (``{"type": "log", "container", "service", "stream", "line"}``)."""
    loaded = _load(body, by_name=True)
    events = _service(body).logs(
        loaded.project.name,
        services=body.services or None,
        follow=body.follow,
        tail=body.tail,
        timestamps=body.timestamps,
        grep=body.grep,
    )
    return await _stream(_with_done(events))


async def _with_done(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    async for event in events:
        yield event
    yield {"type": "done"}


@router.post("/export")
async def compose_export(body: ExportRequest) -> dict[str, Any]:
    """A Swarm stack file or Kubernetes manifests (YAML text) with the keys the target
    ignores listed as warnings."""
    loaded = _load(body)
    if body.format == "swarm":
        result = export_swarm(loaded)
    else:
        result = export_kubernetes(loaded, storage=body.storage, namespace=body.namespace)
    return {"format": body.format, "yaml": result.yaml(), "warnings": result.warnings}


@router.post("/deploy", response_class=StreamingResponse, responses=_NDJSON_DOC)
async def compose_deploy(body: DeployRequest) -> StreamingResponse:
    """Deploy the project as a Swarm stack (``docker stack deploy`` semantics)."""
    from cargobay.containers.compose.swarm import deploy_stack

    loaded = _load(body)
    service = _service(body)

    async def run(emit: Callable[[Event], None]) -> dict[str, Any]:
        result = await deploy_stack(service.engine_url, loaded, emit=emit)
        return {"project": loaded.project.name, **result}

    return await _stream(_events(run))
