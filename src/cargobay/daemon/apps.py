"""The daemon's app (MAI launcher) endpoints: ``/v1/apps``.

CRUD of instances; ``deploy`` starts a deployment task (``202`` with the task, or with
``follow=true`` an NDJSON stream of the task's events ending in ``done`` or ``error``);
a task's events can be followed later (``/v1/apps/{name}/tasks/{id}/events?since=N``);
``start``/``stop``/``restart`` (optionally some services), ``status`` (the instance and
its containers), ``logs`` (NDJSON), ``stats``, ``images``, the generated ``compose``
file, and ``import-legacy`` (an older launcher database).  Handlers parse and validate,
then call :class:`cargobay.apps.service.AppService`, which lives on the app state and is
closed (its tasks cancelled) with the daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from cargobay.apps.models import (
    ContainerInfo,
    DeploymentTask,
    ImageInfo,
    Instance,
    InstanceCreate,
    InstanceUpdate,
)
from cargobay.apps.service import AppService
from cargobay.containers.stats import ContainerStats
from cargobay.errors import AppConflict, AppInputError

__all__ = ["app_service", "router"]

NDJSON = "application/x-ndjson"
_NDJSON_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {NDJSON: {}}, "description": "NDJSON events"}
}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        service: AppService | None = getattr(app.state, "apps", None)
        if service is not None:
            app.state.apps = None
            await service.close()


router = APIRouter(prefix="/v1/apps", tags=["apps"], lifespan=_lifespan)


def app_service(request: Request) -> AppService:
    """The daemon's service, created on first use (store: the daemon's; data: <data>/apps)."""
    service: AppService | None = getattr(request.app.state, "apps", None)
    if service is None:
        state = request.app.state.daemon
        service = AppService(state.service.store, state.paths.data / "apps")
        request.app.state.apps = service
    return service


class ServicesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    services: list[str] = Field(default_factory=list, description="only these (default: all)")


class ImportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="the older launcher's SQLite file, on the daemon's host")


class Status(BaseModel):
    instance: Instance
    containers: list[ContainerInfo]
    processes: list[dict[str, Any]]


async def _stream(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    from cargobay.daemon.app import _prefetched  # the app imports this module

    return await _prefetched(events)


async def _task_events(
    service: AppService, task: DeploymentTask, since: int, announce: bool
) -> AsyncIterator[dict[str, Any]]:
    if announce:
        yield {"type": "task", "task": task.model_dump(mode="json")}
    async for event in service.tasks.follow(task.id, since=since):
        line = event.model_dump(mode="json")
        if event.type == "error":  # the stream's error convention (sdk.raise_for_event)
            line["code"] = "app_deploy_error"
        yield line


@router.get("", response_model=list[Instance])
async def list_apps(request: Request) -> list[Instance]:
    return app_service(request).list_instances()


@router.post("", status_code=201, response_model=Instance)
async def create_app(request: Request, body: InstanceCreate) -> Instance:
    return app_service(request).create(body)


@router.post("/import-legacy")
async def import_legacy(request: Request, body: ImportBody) -> dict[str, Any]:
    """Import an older (Python/SQLAlchemy) launcher database; a second run is a no-op."""
    path = Path(body.path)
    if not path.is_absolute():
        raise AppInputError(f"bad value for 'path': {body.path!r} is not an absolute path")
    return app_service(request).import_legacy(path)


@router.get("/{name}", response_model=Instance)
async def get_app(request: Request, name: str) -> Instance:
    return app_service(request).get(name)


@router.patch("/{name}", response_model=Instance)
async def update_app(request: Request, name: str, body: InstanceUpdate) -> Instance:
    return app_service(request).update(name, body)


@router.delete("/{name}", status_code=204)
async def delete_app(request: Request, name: str, keep_data: bool = False) -> Response:
    await app_service(request).delete(name, keep_data=keep_data)
    return Response(status_code=204)


@router.post(
    "/{name}/deploy",
    status_code=202,
    response_model=DeploymentTask,
    responses=_NDJSON_DOC,
)
async def deploy_app(request: Request, name: str, follow: bool = False) -> Any:
    """Start a deployment task; ``follow``: stream its events (first ``{"type": "task"}``)."""
    service = app_service(request)
    task = service.deploy(name)
    if follow:
        return await _stream(_task_events(service, task, 0, True))
    return JSONResponse(task.model_dump(mode="json"), status_code=202)


@router.get("/{name}/tasks", response_model=list[DeploymentTask])
async def list_tasks(request: Request, name: str) -> list[DeploymentTask]:
    service = app_service(request)
    return service.tasks.list(service.get(name).id)


def _task(service: AppService, name: str, task_id: str) -> DeploymentTask:
    instance = service.get(name)
    task = service.tasks.get(task_id)
    if task.instance_id != instance.id:
        raise AppConflict(f"task {task_id} is not a task of app instance {name!r}")
    return task


@router.get("/{name}/tasks/{task_id}", response_model=DeploymentTask)
async def get_task(request: Request, name: str, task_id: str) -> DeploymentTask:
    return _task(app_service(request), name, task_id)


@router.get("/{name}/tasks/{task_id}/events", response_class=StreamingResponse,
            responses=_NDJSON_DOC)  # fmt: skip
async def follow_task(
    request: Request, name: str, task_id: str, since: int = Query(default=0, ge=0)
) -> StreamingResponse:
    service = app_service(request)
    task = _task(service, name, task_id)
    return await _stream(_task_events(service, task, since, False))


def _verb(verb: str) -> Any:
    async def handler(request: Request, name: str, body: ServicesBody | None = None) -> Instance:
        service = app_service(request)
        services = (body or ServicesBody()).services
        result: Instance = await getattr(service, verb)(name, services)
        return result

    handler.__name__ = f"{verb}_app"
    handler.__doc__ = f"{verb.capitalize()} the instance (or some of its services)."
    return handler


for _verb_name in ("start", "stop", "restart"):
    router.add_api_route(
        f"/{{name}}/{_verb_name}", _verb(_verb_name), methods=["POST"], response_model=Instance
    )


@router.get("/{name}/status", response_model=Status)
async def app_status(request: Request, name: str) -> Status:
    return Status(**await app_service(request).status(name))


@router.get("/{name}/logs", response_class=StreamingResponse, responses=_NDJSON_DOC)
async def app_logs(
    request: Request,
    name: str,
    service: Annotated[list[str] | None, Query()] = None,
    follow: bool = False,
    tail: int | None = Query(default=None, ge=0),
    grep: str | None = None,
) -> StreamingResponse:
    """Log lines ``{"type": "log", "container", "service", "stream", "line"}``."""
    events = await app_service(request).logs(
        name, services=service or [], follow=follow, tail=tail, grep=grep
    )
    return await _stream(events)


@router.get("/{name}/stats", response_model=list[ContainerStats])
async def app_stats(request: Request, name: str) -> list[ContainerStats]:
    return await app_service(request).stats(name)


@router.get("/{name}/images", response_model=list[ImageInfo])
async def app_images(request: Request, name: str) -> list[ImageInfo]:
    return await app_service(request).images(name)


@router.get("/{name}/updates")
async def app_updates(request: Request, name: str) -> list[dict[str, Any]]:
    """Per image of the stack: whether its registry has a newer image behind the tag."""
    return await app_service(request).check_updates(name)


@router.get("/{name}/compose", response_class=PlainTextResponse)
async def app_compose(request: Request, name: str) -> PlainTextResponse:
    """The generated compose file (as deployed)."""
    instance = app_service(request).get(name)
    if not instance.docker_compose_path:
        raise AppConflict(f"app instance {name!r} has no compose file (not deployed with Docker)")
    text = await asyncio.to_thread(Path(instance.docker_compose_path).read_text, "utf-8")
    return PlainTextResponse(text, media_type="application/yaml")


class ConfigEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted key -> value")
    delete: list[str] = Field(default_factory=list, description="dotted keys to remove")
    create: bool = Field(default=False, description="create missing tables")
    restart: bool = Field(default=True, description="restart the service that reads the file")


@router.get("/{name}/config/{kind}")
async def get_config(request: Request, name: str, kind: str) -> dict[str, Any]:
    """``kind``: bot, model or adapter.  API keys are masked."""
    return app_service(request).read_config(name, kind)


@router.patch("/{name}/config/{kind}")
async def edit_config(request: Request, name: str, kind: str, body: ConfigEdit) -> dict[str, Any]:
    """Change keys, keeping comments and order; all or nothing; then restart the reader."""
    return await app_service(request).edit_config(
        name,
        kind,
        set_values=body.set,
        delete=body.delete,
        create=body.create,
        restart=body.restart,
    )


@router.get("/{name}/providers")
async def list_providers(request: Request, name: str) -> list[dict[str, Any]]:
    """The instance's API providers, keys masked."""
    return app_service(request).list_providers(name)


@router.put("/{name}/providers/{provider}")
async def put_provider(
    request: Request, name: str, provider: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Add or replace a provider (name, base_url, api_key, client_type, max_retry, ...)."""
    return await app_service(request).put_provider(name, {**body, "name": provider})


@router.delete("/{name}/providers/{provider}", status_code=204)
async def delete_provider(request: Request, name: str, provider: str) -> Response:
    app_service(request).delete_provider(name, provider)
    return Response(status_code=204)


class BackupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dest: str | None = Field(default=None, description="absolute path of the archive to write")


class RestoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    archive: str = Field(description="absolute path of a backup archive")
    name: str = Field(description="the new instance's name")


def _absolute(value: str, field: str) -> Path:
    path = Path(value)
    if not path.is_absolute():
        raise AppInputError(f"bad value for {field!r}: {value!r} is not an absolute path")
    return path


@router.post("/{name}/backup")
async def backup_app(request: Request, name: str, body: BackupBody | None = None) -> dict[str, Any]:
    """Configuration, data and secrets of the instance in one .tar.gz."""
    dest = body.dest if body is not None else None
    return await app_service(request).backup(name, _absolute(dest, "dest") if dest else None)


@router.post("/restore", status_code=201, response_model=Instance)
async def restore_app(request: Request, body: RestoreBody) -> Instance:
    """A new instance from a backup (under a new name; deploy it to run it)."""
    return await app_service(request).restore(_absolute(body.archive, "archive"), body.name)
