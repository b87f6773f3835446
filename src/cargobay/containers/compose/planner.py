"""Plan ``up``: given the project and what the engine runs now, what to do (sans-IO).

The planner never talks to the engine.  The caller observes the current state (the
project's containers with their labels, the networks and volumes that exist) and
computes each service's wanted config hash (which needs the image id), then asks for a
``Plan``; the executor carries it out.  That keeps every decision unit-testable:

- networks, then volumes, that do not exist yet are created (external ones must exist);
- a service with no container is created (numbers 1..replicas);
- a service whose containers carry another config hash (the file or the image changed),
  or ``force_recreate``, is recreated; extra replicas above the wanted count are removed
  (highest numbers first) and missing numbers created;
- stopped containers that are up to date are started; running ones are left alone;
- containers of services no longer in the file are orphans: reported, and removed with
  ``remove_orphans``.

Services are grouped in dependency layers (``layers``): the executor runs every service
whose dependencies are satisfied in parallel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cargobay.containers.compose import labels as L
from cargobay.containers.compose.model import ComposeProject
from cargobay.errors import ComposeError

__all__ = [
    "NetworkAction",
    "ObservedContainer",
    "Plan",
    "ServicePlan",
    "VolumeAction",
    "layers",
    "observe_containers",
    "plan_up",
]


@dataclass(frozen=True)
class ObservedContainer:
    """One container of the project as the engine lists it."""

    id: str
    name: str
    service: str
    number: int
    config_hash: str | None
    running: bool
    state: str = ""
    image_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


def observe_containers(listing: Iterable[Mapping[str, Any]]) -> list[ObservedContainer]:
    """``ObservedContainer``s from ``GET /containers/json`` entries (one-off containers of
    ``docker-compose run`` are left out)."""
    out = []
    for entry in listing:
        labels = entry.get("Labels") or {}
        if labels.get(L.ONEOFF) == "True" or L.SERVICE not in labels:
            continue
        names = entry.get("Names") or [""]
        try:
            number = int(labels.get(L.CONTAINER_NUMBER, "0"))
        except ValueError:
            number = 0
        out.append(
            ObservedContainer(
                id=str(entry["Id"]),
                name=str(names[0]).lstrip("/"),
                service=labels[L.SERVICE],
                number=number,
                config_hash=labels.get(L.CONFIG_HASH),
                running=entry.get("State") == "running",
                state=str(entry.get("State", "")),
                image_id=str(entry.get("ImageID", "")),
                labels=dict(labels),
            )
        )
    return sorted(out, key=lambda c: (c.service, c.number, c.name))


@dataclass(frozen=True)
class NetworkAction:
    key: str
    name: str


@dataclass(frozen=True)
class VolumeAction:
    key: str
    name: str


@dataclass
class ServicePlan:
    """What ``up`` does for one service."""

    service: str
    action: Literal["create", "recreate", "start", "noop", "scale"]
    create: list[int] = field(default_factory=list)
    """Container numbers to create (fresh)."""
    recreate: list[ObservedContainer] = field(default_factory=list)
    """Containers to replace by a new one with the same number."""
    start: list[ObservedContainer] = field(default_factory=list)
    remove: list[ObservedContainer] = field(default_factory=list)
    """Extra replicas to remove."""
    keep: list[ObservedContainer] = field(default_factory=list)
    """Running, up to date: nothing to do."""

    @property
    def changes(self) -> bool:
        return bool(self.create or self.recreate or self.start or self.remove)


@dataclass
class Plan:
    networks: list[NetworkAction] = field(default_factory=list)
    volumes: list[VolumeAction] = field(default_factory=list)
    services: dict[str, ServicePlan] = field(default_factory=dict)
    orphans: list[ObservedContainer] = field(default_factory=list)
    remove_orphans: bool = False

    @property
    def changes(self) -> bool:
        return bool(
            self.networks
            or self.volumes
            or any(p.changes for p in self.services.values())
            or (self.remove_orphans and self.orphans)
        )


def layers(project: ComposeProject, services: Iterable[str] | None = None) -> list[list[str]]:
    """Services in dependency order: each layer depends only on earlier layers.  With
    ``services``, those and everything they depend on."""
    wanted = set(project.services if services is None else _with_dependencies(project, services))
    done: set[str] = set()
    out: list[list[str]] = []
    while len(done) < len(wanted):
        layer = sorted(
            name
            for name in wanted - done
            if all(
                dep in done or dep not in wanted for dep in project.services[name].all_dependencies
            )
        )
        if not layer:
            raise ComposeError(f"dependency cycle among {', '.join(sorted(wanted - done))}")
        out.append(layer)
        done.update(layer)
    return out


def _with_dependencies(project: ComposeProject, services: Iterable[str]) -> set[str]:
    out: set[str] = set()
    todo = list(services)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        if name not in project.services:
            raise ComposeError(
                f"no such service: {name!r} (the project has {', '.join(sorted(project.services))})"
            )
        out.add(name)
        todo.extend(project.services[name].all_dependencies)
    return out


def plan_up(
    project: ComposeProject,
    *,
    hashes: Mapping[str, str],
    containers: Sequence[ObservedContainer],
    existing_networks: Iterable[str],
    existing_volumes: Iterable[str],
    services: Sequence[str] | None = None,
    force_recreate: bool = False,
    no_recreate: bool = False,
    remove_orphans: bool = False,
) -> Plan:
    """The plan that brings the engine to the project (see the module docstring)."""
    if force_recreate and no_recreate:
        raise ComposeError("force_recreate and no_recreate exclude each other")
    networks_present = set(existing_networks)
    volumes_present = set(existing_volumes)
    plan = Plan(remove_orphans=remove_orphans)
    selected = [name for layer in layers(project, services) for name in layer]

    used_networks: list[str] = []
    for name in selected:
        for key in project.service_networks(project.services[name]):
            if key not in used_networks:
                used_networks.append(key)
    for key in sorted(used_networks):
        cfg = project.networks.get(key)
        engine_name = project.network_name(key)
        if engine_name in networks_present:
            continue
        if cfg is not None and cfg.external:
            raise ComposeError(
                f"network {engine_name} is declared external but does not exist; "
                f"create it with `docker network create {engine_name}`"
            )
        plan.networks.append(NetworkAction(key, engine_name))
    for key, vol_cfg in sorted(project.volumes.items()):
        engine_name = project.volume_name(key)
        if engine_name in volumes_present:
            continue
        if vol_cfg.external:
            raise ComposeError(
                f"volume {engine_name} is declared external but does not exist; "
                f"create it with `docker volume create {engine_name}`"
            )
        plan.volumes.append(VolumeAction(key, engine_name))

    by_service: dict[str, list[ObservedContainer]] = {}
    for container in containers:
        by_service.setdefault(container.service, []).append(container)
    for name in selected:
        service = project.services[name]
        plan.services[name] = _plan_service(
            name,
            service.replicas,
            hashes[name],
            by_service.get(name, []),
            force_recreate=force_recreate,
            no_recreate=no_recreate,
        )
    plan.orphans = [c for c in containers if c.service not in project.services]
    return plan


def _plan_service(
    name: str,
    replicas: int,
    wanted_hash: str,
    current: list[ObservedContainer],
    *,
    force_recreate: bool,
    no_recreate: bool,
) -> ServicePlan:
    current = sorted(current, key=lambda c: c.number)
    if not current:
        return ServicePlan(name, "create", create=list(range(1, replicas + 1)))
    keep_count = replicas
    kept, extra = current[:keep_count], current[keep_count:]
    numbers = {c.number for c in kept}
    missing = [n for n in range(1, replicas + 1) if n not in numbers]
    # numbers above the replica count held by kept containers shift the missing ones
    missing = missing[: max(0, replicas - len(kept))]
    diverged = any(c.config_hash != wanted_hash for c in kept)
    if (force_recreate or diverged) and not no_recreate:
        return ServicePlan(name, "recreate", create=missing, recreate=kept, remove=extra)
    stopped = [c for c in kept if not c.running]
    running = [c for c in kept if c.running]
    if stopped:
        action: Literal["start", "noop", "scale"] = "start"
    elif missing or extra:
        action = "scale"
    else:
        action = "noop"
    return ServicePlan(name, action, create=missing, start=stopped, remove=extra, keep=running)
