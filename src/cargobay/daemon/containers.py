"""The daemon's Docker Engine endpoints (``/v1/engine/...``): engine info, images,
containers, logs, stats, networks, volumes.

Handlers parse and validate, then call ``cargobay.containers``.  Each request opens its
own connection to the engine (found like the Docker CLI finds it, or ``docker_host`` in
``containers.toml``) and closes it when the response (or stream) ends, so a restarted
dockerd needs nothing from us and no idle connection outlives a request.  Streams are
NDJSON like the rest of the API: pull progress (``layer``/``status`` then ``done``), log
lines (``line``), stats samples (``stats``); an error before the first event is an HTTP
error, one midway (the engine went away) ends the stream with an ``error`` event.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from cargobay.containers.detect import (
    EngineEndpoint,
    EngineReport,
    detect,
    resolve_endpoint,
    unavailable,
)
from cargobay.containers.engine import DockerEngine
from cargobay.containers.images import ImageService, ImageSummary, UpdateCheck, check_image_name
from cargobay.containers.logs import follow_logs
from cargobay.containers.reference import parse_reference
from cargobay.containers.resources import (
    ContainerSummary,
    NetworkSummary,
    VolumeSummary,
    list_containers,
    list_networks,
    list_volumes,
    resolve_containers,
)
from cargobay.containers.settings import ContainerSettings, load_settings
from cargobay.containers.stats import stream_stats, stream_stats_many
from cargobay.errors import EngineUnavailable, InvalidInput

__all__ = ["router"]

NDJSON = "application/x-ndjson"
router = APIRouter(prefix="/v1/engine", tags=["engine"])
_NDJSON_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {NDJSON: {}}, "description": "NDJSON events"}
}


LabelQuery = Annotated[list[str] | None, Query(description="KEY or KEY=VALUE; repeatable")]


class PullRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(min_length=1, description="an image reference, e.g. busybox:1.36")


class CheckUpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str = Field(min_length=1)


class PruneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: bool = Field(default=False, description="every unused image, not only dangling ones")
    label: list[str] = Field(default_factory=list, description="only images with these labels")


class StopContainerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: int | None = Field(default=None, ge=0, le=3600)


def _labels(values: list[str] | None) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidInput(f"bad label filter {item!r}: use KEY or KEY=VALUE")
        out[key] = value if sep else None
    return out


def _endpoint(settings: ContainerSettings) -> EngineEndpoint:
    if settings.docker_host:
        return EngineEndpoint(settings.docker_host, "config")
    return resolve_endpoint()


async def _connect() -> tuple[DockerEngine, ContainerSettings]:
    settings = load_settings()
    endpoint = _endpoint(settings)
    try:
        return await DockerEngine.connect(endpoint.url), settings
    except EngineUnavailable as err:
        raise unavailable(endpoint, err) from err


async def _on_engine(
    make: Callable[[DockerEngine, ContainerSettings], AsyncIterator[dict[str, Any]]],
) -> AsyncIterator[dict[str, Any]]:
    engine, settings = await _connect()
    try:
        async for event in make(engine, settings):
            yield event
    finally:
        await engine.close()


async def _stream(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    from cargobay.daemon.app import _prefetched  # the app imports this module

    return await _prefetched(events)


@router.get("", response_model=EngineReport)
async def engine_info() -> EngineReport:
    """Find and describe the Docker Engine (or say how to get one)."""
    return await detect(endpoint=_endpoint(load_settings()))


@router.get("/images", response_model=list[ImageSummary])
async def images_list(all: bool = False, label: LabelQuery = None) -> list[ImageSummary]:
    labels = _labels(label)
    engine, settings = await _connect()
    async with engine:
        return await ImageService(engine, settings).list_images(all=all, labels=labels)


@router.post("/images/pull", response_class=StreamingResponse, responses=_NDJSON_DOC)
async def images_pull(body: PullRequest) -> StreamingResponse:
    """Pull through the configured mirrors: ``layer`` and ``status`` events, then ``done``."""
    parse_reference(body.reference)  # a bad reference is a 400 before anything else

    def run(engine: DockerEngine, settings: ContainerSettings) -> AsyncIterator[dict[str, Any]]:
        return ImageService(engine, settings).pull_events(body.reference)

    return await _stream(_on_engine(run))


@router.post("/images/check-update", response_model=UpdateCheck)
async def images_check_update(body: CheckUpdateRequest) -> UpdateCheck:
    parse_reference(body.reference)
    engine, settings = await _connect()
    async with engine:
        return await ImageService(engine, settings).check_update(body.reference)


@router.post("/images/prune")
async def images_prune(body: PruneRequest | None = None) -> dict[str, Any]:
    body = body or PruneRequest()
    labels = _labels(body.label)
    engine, settings = await _connect()
    async with engine:
        return await ImageService(engine, settings).prune(all=body.all, labels=labels)


@router.delete("/images/{reference:path}")
async def images_remove(reference: str, force: bool = False) -> list[dict[str, str]]:
    check_image_name(reference)
    engine, settings = await _connect()
    async with engine:
        return await ImageService(engine, settings).remove(reference, force=force)


@router.get("/containers", response_model=list[ContainerSummary])
async def containers_list(
    all: bool = False,
    label: LabelQuery = None,
    project: str | None = None,
    service: str | None = None,
) -> list[ContainerSummary]:
    labels = _labels(label)
    if project:
        labels["com.docker.compose.project"] = project
    if service:
        labels["com.docker.compose.service"] = service
    engine, _ = await _connect()
    async with engine:
        return await list_containers(engine, all=all, labels=labels)


@router.post("/containers/{container}/start", status_code=204)
async def containers_start(container: str) -> Response:
    engine, _ = await _connect()
    async with engine:
        await engine.start_container(container)
    return Response(status_code=204)


@router.post("/containers/{container}/stop", status_code=204)
async def containers_stop(container: str, body: StopContainerRequest | None = None) -> Response:
    body = body or StopContainerRequest()
    engine, _ = await _connect()
    async with engine:
        await engine.stop_container(container, timeout=body.timeout)
    return Response(status_code=204)


@router.post("/containers/{container}/restart", status_code=204)
async def containers_restart(container: str, body: StopContainerRequest | None = None) -> Response:
    body = body or StopContainerRequest()
    engine, _ = await _connect()
    async with engine:
        await engine.restart_container(container, timeout=body.timeout)
    return Response(status_code=204)


@router.delete("/containers/{container}", status_code=204)
async def containers_remove(container: str, force: bool = False, volumes: bool = False) -> Response:
    engine, _ = await _connect()
    async with engine:
        await engine.remove_container(container, force=force, volumes=volumes)
    return Response(status_code=204)


@router.get("/logs", response_class=StreamingResponse, responses=_NDJSON_DOC)
async def logs(
    container: Annotated[list[str] | None, Query()] = None,
    service: str | None = None,
    project: str | None = None,
    follow: bool = False,
    since: str | None = None,
    until: str | None = None,
    tail: int | None = Query(default=None, ge=0),
    timestamps: bool = False,
    search: str | None = None,
    regex: bool = False,
    ignore_case: bool = False,
) -> StreamingResponse:
    """Log lines of containers, or of a compose service/project: ``line`` events."""
    from cargobay.containers.logs import parse_time

    # bad input is refused before anything talks to the engine
    since_t = parse_time(since) if since else None
    until_t = parse_time(until) if until else None
    if not container and not service and not project:
        raise InvalidInput("name a container, or a service (and project) to read logs of")
    if search and regex:
        try:
            re.compile(search)
        except re.error as err:
            raise InvalidInput(f"bad search pattern {search!r}: {err}") from err

    async def run(engine: DockerEngine, _: ContainerSettings) -> AsyncIterator[dict[str, Any]]:
        async for line in follow_logs(
            engine,
            container or [],
            service=service,
            project=project,
            follow=follow,
            since=since_t,
            until=until_t,
            tail=tail,
            timestamps=timestamps,
            search=search,
            regex=regex,
            ignore_case=ignore_case,
        ):
            yield {"type": "line", **line.as_dict()}

    return await _stream(_on_engine(run))


@router.get(
    "/containers/{container}/stats", response_class=StreamingResponse, responses=_NDJSON_DOC
)
async def container_stats(
    container: str, stream: bool = True, samples: int | None = Query(default=None, ge=1)
) -> StreamingResponse:
    """``docker stats`` numbers: one ``stats`` event per second (or one with stream=false)."""

    async def run(engine: DockerEngine, _: ContainerSettings) -> AsyncIterator[dict[str, Any]]:
        async for sample in stream_stats(engine, container, stream=stream, samples=samples):
            yield {"type": "stats", **sample.model_dump(mode="json")}

    return await _stream(_on_engine(run))


@router.get("/stats", response_class=StreamingResponse, responses=_NDJSON_DOC)
async def stats_many(
    container: Annotated[list[str] | None, Query()] = None,
    service: str | None = None,
    project: str | None = None,
    stream: bool = True,
    samples: int | None = Query(default=None, ge=1),
) -> StreamingResponse:
    """``stats`` events of several containers, or of the running containers of a compose
    service/project, merged as they come (``samples`` counts per container)."""
    if not container and not service and not project:
        raise InvalidInput("name a container, or a service (and project), for stats")

    async def run(engine: DockerEngine, _: ContainerSettings) -> AsyncIterator[dict[str, Any]]:
        ids = await resolve_containers(
            engine, container or [], service=service, project=project, running=True
        )
        async for sample in stream_stats_many(engine, ids, stream=stream, samples=samples):
            yield {"type": "stats", **sample.model_dump(mode="json")}

    return await _stream(_on_engine(run))


@router.get("/networks", response_model=list[NetworkSummary])
async def networks_list(label: LabelQuery = None) -> list[NetworkSummary]:
    labels = _labels(label)
    engine, _ = await _connect()
    async with engine:
        return await list_networks(engine, labels=labels)


@router.get("/volumes", response_model=list[VolumeSummary])
async def volumes_list(label: LabelQuery = None) -> list[VolumeSummary]:
    labels = _labels(label)
    engine, _ = await _connect()
    async with engine:
        return await list_volumes(engine, labels=labels)


@router.get("/events", response_class=StreamingResponse, responses=_NDJSON_DOC)
async def events(
    label: LabelQuery = None, since: str | None = None, until: str | None = None
) -> StreamingResponse:
    """The Engine's events (container start/die/health_status, image pull, ...) as they
    happen: ``event`` lines carrying the Engine's own JSON.  ``since``/``until`` accept
    Unix times, RFC 3339 times or durations (``10m``)."""
    from cargobay.containers.logs import parse_time

    since_t = str(parse_time(since)) if since else None
    until_t = str(parse_time(until)) if until else None
    labels = _labels(label)

    async def run(engine: DockerEngine, _: ContainerSettings) -> AsyncIterator[dict[str, Any]]:
        async with engine.events_stream(labels=labels, since=since_t, until=until_t) as stream:
            yield {"type": "subscribed"}  # the Engine has answered: later events are seen
            async for event in stream:
                yield {"type": "event", "event": event}

    return await _stream(_on_engine(run))
