"""The daemon's libvirt host pool endpoints (``/v1/hosts``).

``GET /v1/hosts`` answers each host's health after one round trip to it (failed hosts
are retried once); ``POST /v1/hosts`` validates the URI, connects, then saves the host
(an unreachable host is a 503 naming it, unless ``keep_unreachable``); ``DELETE`` closes
the connection and forgets the host.  The registry lives on the app state, created on
first use from the daemon's store, and is closed with the daemon.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from cargobay.vmcontrol.registry import HostRegistry

__all__ = ["host_registry", "router"]

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])


class AddHostRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=64)]
    uri: Annotated[str, Field(min_length=1, max_length=2048)]
    tags: list[str] = []
    keep_unreachable: bool = False


class HostHealthModel(BaseModel):
    id: str
    uri: str
    state: str
    healthy: bool
    tags: list[str]
    connected_since: float | None
    last_error: str | None
    reconnects: int
    last_check_ms: float | None
    calls_in_flight: int
    hostname: str | None
    libvirt_version: str | None


def host_registry(request: Request) -> HostRegistry:
    """The app's registry, created (and its saved hosts reconnecting) on first use."""
    startup(request.app)
    registry: HostRegistry = request.app.state.hosts
    return registry


@router.get("", response_model=list[HostHealthModel])
async def list_hosts(request: Request) -> list[dict[str, Any]]:
    return [h.to_dict() for h in await host_registry(request).list()]


@router.post("", status_code=201, response_model=HostHealthModel)
async def add_host(request: Request, body: AddHostRequest) -> dict[str, Any]:
    health = await host_registry(request).add(
        body.id, body.uri, body.tags, keep_unreachable=body.keep_unreachable
    )
    return health.to_dict()


@router.get("/{host_id}", response_model=HostHealthModel)
async def get_host(request: Request, host_id: str) -> dict[str, Any]:
    return (await host_registry(request).get(host_id)).to_dict()


@router.delete("/{host_id}", status_code=204)
async def remove_host(request: Request, host_id: str) -> Response:
    await host_registry(request).remove(host_id)
    return Response(status_code=204)


def startup(app: Any) -> None:
    """At daemon start: reconnect the saved hosts (in the background)."""
    state = app.state.daemon
    if getattr(app.state, "hosts", None) is None and state.service is not None:
        registry = HostRegistry(state.service.store)
        registry.start()
        app.state.hosts = registry


async def shutdown(app: Any) -> None:
    registry: HostRegistry | None = getattr(app.state, "hosts", None)
    if registry is not None:
        app.state.hosts = None
        await registry.close()
