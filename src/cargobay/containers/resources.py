"""Containers, networks and volumes as typed summaries, plus idempotent helpers.

The Engine's list endpoints answer with loosely shaped JSON; the daemon, the CLI and
the compose engine want a few stable fields.  The ``ensure_*`` helpers create a network
or volume only when no object of that name exists (and then check it carries the
expected labels, as compose does), and the ``discard_*`` helpers remove something that
may already be gone, so rollbacks and ``down`` can be re-run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from cargobay.containers.engine import DockerEngine
from cargobay.errors import (
    Conflict,
    ContainerNotFound,
    InvalidInput,
    NetworkNotFound,
    VolumeNotFound,
)

__all__ = [
    "ContainerSummary",
    "NetworkSummary",
    "VolumeSummary",
    "discard_container",
    "discard_network",
    "discard_volume",
    "ensure_network",
    "ensure_volume",
    "health_from_status",
    "list_containers",
    "list_networks",
    "list_volumes",
    "resolve_containers",
]


class PortBinding(BaseModel):
    private: int
    public: int | None = None
    ip: str | None = None
    protocol: str = "tcp"


def health_from_status(status: str) -> str | None:
    """The health in the Engine's status text: ``Up 3 minutes (healthy)``,
    ``Up 1 second (health: starting)``, ``Up 2 hours (unhealthy)``."""
    if "(healthy)" in status:
        return "healthy"
    if "(unhealthy)" in status:
        return "unhealthy"
    if "(health: starting)" in status:
        return "starting"
    return None


class ContainerSummary(BaseModel):
    id: str
    name: str
    image: str
    state: str
    status: str
    created: int = 0
    ports: list[PortBinding] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    project: str | None = None
    service: str | None = None
    health: str | None = None
    """``healthy``, ``unhealthy`` or ``starting`` for a container with a health check."""

    @classmethod
    def from_engine(cls, item: Mapping[str, Any]) -> ContainerSummary:
        labels = dict(item.get("Labels") or {})
        names = [str(n).lstrip("/") for n in item.get("Names") or []]
        ports = [
            PortBinding(
                private=int(p.get("PrivatePort") or 0),
                public=p.get("PublicPort"),
                ip=p.get("IP"),
                protocol=str(p.get("Type") or "tcp"),
            )
            for p in item.get("Ports") or []
        ]
        return cls(
            id=str(item.get("Id", "")),
            name=names[0] if names else str(item.get("Id", ""))[:12],
            image=str(item.get("Image", "")),
            state=str(item.get("State", "")),
            status=str(item.get("Status", "")),
            created=int(item.get("Created") or 0),
            ports=ports,
            labels=labels,
            project=labels.get("com.docker.compose.project"),
            service=labels.get("com.docker.compose.service"),
            health=health_from_status(str(item.get("Status", ""))),
        )


class NetworkSummary(BaseModel):
    id: str
    name: str
    driver: str
    scope: str = "local"
    internal: bool = False
    labels: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_engine(cls, item: Mapping[str, Any]) -> NetworkSummary:
        return cls(
            id=str(item.get("Id", "")),
            name=str(item.get("Name", "")),
            driver=str(item.get("Driver", "")),
            scope=str(item.get("Scope", "local")),
            internal=bool(item.get("Internal")),
            labels=dict(item.get("Labels") or {}),
        )


class VolumeSummary(BaseModel):
    name: str
    driver: str
    mountpoint: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_engine(cls, item: Mapping[str, Any]) -> VolumeSummary:
        return cls(
            name=str(item.get("Name", "")),
            driver=str(item.get("Driver", "")),
            mountpoint=item.get("Mountpoint"),
            labels=dict(item.get("Labels") or {}),
        )


async def resolve_containers(
    engine: DockerEngine,
    names: list[str],
    *,
    service: str | None = None,
    project: str | None = None,
    running: bool = False,
    purpose: str = "this",
) -> list[str]:
    """Container ids: the named ones (each must exist), else every container of a compose
    service and/or project (``running``: only running ones), sorted by name."""
    if names:
        return [str((await engine.inspect_container(name))["Id"]) for name in names]
    labels: dict[str, str | None] = {}
    if service:
        labels["com.docker.compose.service"] = service
    if project:
        labels["com.docker.compose.project"] = project
    if not labels:
        raise InvalidInput(f"name a container, or a service (and project), for {purpose}")
    found = await engine.list_containers(all=not running, labels=labels)
    if not found:
        what = f"service {service!r}" if service else f"project {project!r}"
        state = "running " if running else ""
        raise ContainerNotFound(f"no {state}containers of {what}")
    found.sort(key=lambda item: str((item.get("Names") or [""])[0]))
    return [str(item["Id"]) for item in found]


async def list_containers(
    engine: DockerEngine, *, all: bool = False, labels: Mapping[str, str | None] | None = None
) -> list[ContainerSummary]:
    items = await engine.list_containers(all=all, labels=labels)
    return sorted((ContainerSummary.from_engine(i) for i in items), key=lambda c: c.name)


async def list_networks(
    engine: DockerEngine, *, labels: Mapping[str, str | None] | None = None
) -> list[NetworkSummary]:
    items = await engine.list_networks(labels=labels)
    return sorted((NetworkSummary.from_engine(i) for i in items), key=lambda n: n.name)


async def list_volumes(
    engine: DockerEngine, *, labels: Mapping[str, str | None] | None = None
) -> list[VolumeSummary]:
    items = await engine.list_volumes(labels=labels)
    return sorted((VolumeSummary.from_engine(i) for i in items), key=lambda v: v.name)


def _check_labels(kind: str, name: str, have: Mapping[str, str], want: Mapping[str, str]) -> None:
    wrong = {key: value for key, value in want.items() if have.get(key) != value}
    if wrong:
        shown = ", ".join(f"{k}={have.get(k)!r} (expected {v!r})" for k, v in wrong.items())
        raise Conflict(
            f"{kind} {name!r} already exists but was not created for this: {shown}; "
            f"remove it (`docker {kind} rm {name}`) or choose another name"
        )


async def ensure_network(
    engine: DockerEngine,
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    check_labels: Mapping[str, str] | None = None,
    **options: Any,
) -> tuple[str, bool]:
    """``(id, created)``: the existing network named ``name`` or a new one."""
    try:
        found = await engine.inspect_network(name)
    except NetworkNotFound:
        return await engine.create_network(name, labels=labels, **options), True
    _check_labels("network", name, found.get("Labels") or {}, check_labels or {})
    return str(found["Id"]), False


async def ensure_volume(
    engine: DockerEngine,
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    check_labels: Mapping[str, str] | None = None,
    driver: str = "local",
    driver_opts: Mapping[str, str] | None = None,
) -> tuple[str, bool]:
    """``(name, created)``: the existing volume ``name`` or a new one."""
    try:
        found = await engine.inspect_volume(name)
    except VolumeNotFound:
        created = await engine.create_volume(
            name, labels=labels, driver=driver, driver_opts=driver_opts
        )
        return str(created["Name"]), True
    _check_labels("volume", name, found.get("Labels") or {}, check_labels or {})
    return str(found["Name"]), False


async def discard_container(engine: DockerEngine, container: str, *, volumes: bool = False) -> bool:
    """Force-remove ``container``; ``False`` when it was already gone."""
    try:
        await engine.remove_container(container, force=True, volumes=volumes)
    except ContainerNotFound:
        return False
    return True


async def discard_network(engine: DockerEngine, network: str) -> bool:
    try:
        await engine.remove_network(network)
    except NetworkNotFound:
        return False
    return True


async def discard_volume(engine: DockerEngine, volume: str) -> bool:
    try:
        await engine.remove_volume(volume)
    except VolumeNotFound:
        return False
    return True
