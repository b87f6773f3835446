"""Carry out ``up`` plans against the Docker Engine, and undo a failed ``up``.

The executor is the only part of ``up`` that does I/O.  It creates the plan's networks,
then volumes, then runs one asyncio task per service: a task first waits until every
``depends_on`` condition of its service holds (``service_started``: the dependency's
task finished starting it; ``service_healthy``: each of its containers reports
``healthy``; ``service_completed_successfully``: each exited with 0), then creates,
recreates, starts or removes that service's containers, replicas in parallel.
Independent services therefore start at the same time.

Everything this ``up`` changes is written in a ``Journal``; when a step fails, the
journal is undone in reverse (new containers removed, replaced containers renamed back
and restarted, new volumes and networks removed) and the error names the service and
says what was rolled back.  Recreating renames the old container out of the way
(``<id12>_<name>``, as docker-compose does) and removes it only once the new one runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from cargobay.containers.compose.model import ComposeProject
from cargobay.containers.compose.planner import ObservedContainer, Plan, ServicePlan
from cargobay.containers.compose.spec import (
    ContainerSpec,
    container_create_body,
    network_create_args,
    volume_create_args,
)
from cargobay.containers.engine import DockerEngine
from cargobay.errors import CargoBayError, ComposeError, ContainerError, NotFound

__all__ = ["Event", "Journal", "UpExecutor", "wait_healthy"]

log = logging.getLogger(__name__)

Event = dict[str, Any]
EventSink = Callable[[Event], None]

HEALTH_POLL = 0.1
"""Seconds between health polls while a dependent waits for ``service_healthy``."""


def _event(kind: str, name: str, status: str, service: str | None = None, **more: Any) -> Event:
    event: Event = {"type": "progress", "resource": kind, "name": name, "status": status}
    if service is not None:
        event["service"] = service
    event.update(more)
    return event


@dataclass
class Rollback:
    """What undoing a failed ``up`` could not do, and the first reason why."""

    left: list[str] = field(default_factory=list)
    reason: str = ""


@dataclass
class Journal:
    """What an ``up`` changed, so a failure can undo it."""

    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    containers: list[tuple[str, str]] = field(default_factory=list)
    """(id, name) of containers this ``up`` created."""
    renamed: list[tuple[str, str, bool]] = field(default_factory=list)
    """(id, original name, was running) of containers moved aside for a recreate."""
    started: list[tuple[str, str]] = field(default_factory=list)
    """(id, name) of existing containers this ``up`` started."""

    async def undo(self, engine: DockerEngine, emit: EventSink) -> Rollback:
        """Undo in reverse order; what could not be undone is returned (and logged)."""
        result = Rollback()

        async def attempt(what: str, step: Any) -> None:
            try:
                await step
            except NotFound:
                pass
            except CargoBayError as err:
                log.warning("rollback: %s failed: %s", what, err)
                result.left.append(what)
                result.reason = result.reason or str(err)

        await asyncio.gather(
            *(
                attempt(f"container {name} (new)", engine.remove_container(cid, force=True))
                for cid, name in reversed(self.containers)
            )
        )
        for cid, name, was_running in reversed(self.renamed):
            await attempt(
                f"container {name} (renamed {cid[:12]}_{name})", engine.rename_container(cid, name)
            )
            if was_running:
                await attempt(f"container {name} (stopped)", engine.start_container(cid))
        for cid, name in self.started:
            await attempt(f"container {name} (started)", engine.stop_container(cid))
        for volume in reversed(self.volumes):
            await attempt(f"volume {volume}", engine.remove_volume(volume))
        for network in reversed(self.networks):
            await attempt(f"network {network}", engine.remove_network(network))
        emit({"type": "rollback", "left": result.left})
        return result


async def wait_healthy(engine: DockerEngine, container_id: str, name: str, timeout: float) -> None:
    """Until the container's health check reports healthy; an error if it turns unhealthy,
    stops, or has no health check."""
    deadline = time.monotonic() + timeout
    while True:
        state = (await engine.inspect_container(container_id)).get("State") or {}
        health = (state.get("Health") or {}).get("Status")
        if health == "healthy":
            return
        if health is None:
            raise ComposeError(f"container {name} has no health check to wait for")
        if health == "unhealthy":
            raise ComposeError(f"container {name} is unhealthy")
        if not state.get("Running"):
            raise ComposeError(
                f"container {name} exited with code {state.get('ExitCode')} "
                "before it became healthy"
            )
        if time.monotonic() > deadline:
            raise ComposeError(f"container {name} did not become healthy within {timeout:g} s")
        await asyncio.sleep(HEALTH_POLL)


class UpExecutor:
    """Runs one ``Plan`` (see the module docstring)."""

    def __init__(
        self,
        engine: DockerEngine,
        project: ComposeProject,
        *,
        hashes: Mapping[str, str],
        environment: Mapping[str, str],
        environment_file: str | None,
        emit: EventSink,
        wait_timeout: float = 300.0,
        rehash: Callable[[str, Mapping[str, str]], str] | None = None,
    ) -> None:
        self.engine = engine
        self.rehash = rehash
        self.project = project
        self.hashes = hashes
        self.environment = environment
        self.environment_file = environment_file
        self.emit = emit
        self.wait_timeout = wait_timeout
        self.journal = Journal()
        self._started: dict[str, asyncio.Event] = {}
        self._roots: list[asyncio.Event] = []
        self._containers: dict[str, list[tuple[str, str]]] = {}
        """service -> (id, name) of its containers once started."""

    async def run(self, plan: Plan) -> None:
        try:
            await self._run(plan)
        except BaseException as err:
            rollback = await asyncio.shield(self.journal.undo(self.engine, self.emit))
            if isinstance(err, Exception):
                raise _with_rollback(err, rollback) from err
            raise
        # success: the containers moved aside by recreates can go
        for cid, _name, _running in self.journal.renamed:
            with contextlib.suppress(NotFound):
                await self.engine.remove_container(cid, force=True)
        self.journal = Journal()

    async def _run(self, plan: Plan) -> None:
        for action in plan.networks:
            self.emit(_event("network", action.name, "Creating"))
            await self.engine.create_network(**network_create_args(self.project, action.key))
            self.journal.networks.append(action.name)
            self.emit(_event("network", action.name, "Created"))
        for volume in plan.volumes:
            self.emit(_event("volume", volume.name, "Creating"))
            await self.engine.create_volume(**volume_create_args(self.project, volume.key))
            self.journal.volumes.append(volume.name)
            self.emit(_event("volume", volume.name, "Created"))
        self._started = {name: asyncio.Event() for name in plan.services}
        roots = [
            n for n in plan.services
            if not any(d in plan.services for d in self.project.services[n].all_dependencies)
        ]  # fmt: skip
        self._roots = [self._started[n] for n in roots]
        try:
            async with asyncio.TaskGroup() as group:
                for name, service_plan in plan.services.items():
                    group.create_task(self._service(service_plan), name=f"compose-{name}")
                if plan.remove_orphans and plan.orphans:
                    group.create_task(self._remove_orphans(plan.orphans))
        except ExceptionGroup as group_error:
            raise _first_error(group_error) from None
        for orphan in [] if plan.remove_orphans else plan.orphans:
            self.emit(
                {
                    "type": "warning",
                    "message": f"found orphan container {orphan.name} (service "
                    f"{orphan.service!r} is not in the project); remove it with "
                    "--remove-orphans",
                }
            )

    async def _service(self, plan: ServicePlan) -> None:
        name = plan.service
        service = self.project.services[name]
        try:
            # Creating needs nothing from the dependencies (unless the container joins
            # one's namespace or links to it), so new containers are created while the
            # dependencies wait to be healthy; only their start waits for the conditions.
            # The services nothing depends on start first, with the engine to themselves.
            early: list[tuple[str, str]] = []
            if (
                plan.create
                and not service.implicit_dependencies
                and not (service.network_mode or "").startswith("container:")
            ):
                if service.depends_on:
                    await asyncio.gather(*(event.wait() for event in self._roots))
                early = list(await asyncio.gather(*(self._make(name, n) for n in plan.create)))
                plan = dataclasses.replace(plan, create=[])
            for dep in service.implicit_dependencies:  # created (and started) first
                if dep in self._started:
                    await self._started[dep].wait()
            for dep, condition in service.depends_on.items():
                if dep not in self._started:
                    continue
                await self._started[dep].wait()
                if condition.condition == "service_healthy":
                    await self._wait_all(dep, self._healthy)
                elif condition.condition == "service_completed_successfully":
                    await self._wait_all(dep, self._completed)
            await asyncio.gather(*(self._start_new(name, cid, cname) for cid, cname in early))
            await self._apply(plan)
        except ComposeError as err:
            if f"service {name!r}" in str(err):
                raise
            raise ComposeError(f"service {name!r}: {err}") from err
        except ContainerError as err:
            raise ComposeError(f"service {name!r}: {err}") from err
        self._started[name].set()

    async def _wait_all(self, dep: str, check: Callable[[str, str], Any]) -> None:
        await asyncio.gather(*(check(cid, cname) for cid, cname in self._containers.get(dep, [])))

    async def _healthy(self, cid: str, cname: str) -> None:
        self.emit(_event("container", cname, "Waiting"))
        try:
            await wait_healthy(self.engine, cid, cname, self.wait_timeout)
        except ComposeError as err:
            raise ComposeError(f"dependency failed to start: {err}") from err
        self.emit(_event("container", cname, "Healthy"))

    async def _completed(self, cid: str, cname: str) -> None:
        self.emit(_event("container", cname, "Waiting"))
        try:
            async with asyncio.timeout(self.wait_timeout):
                result = await self.engine.wait_container(cid)
        except TimeoutError as err:
            raise ComposeError(
                f"dependency {cname} did not exit within {self.wait_timeout:g} s"
            ) from err
        code = result.get("StatusCode")
        if code != 0:
            raise ComposeError(
                f"dependency {cname} did not complete successfully (exit code {code})"
            )
        self.emit(_event("container", cname, "Exited", exit_code=code))

    async def _apply(self, plan: ServicePlan) -> None:
        name = plan.service
        steps: list[Coroutine[Any, Any, Any]] = [self._create(name, n) for n in plan.create]
        steps += [self._recreate(name, old) for old in plan.recreate]
        steps += [self._start_existing(name, c) for c in plan.start]
        steps += [self._remove(c) for c in plan.remove]
        for kept in plan.keep:
            self.emit(_event("container", kept.name, "Running", name))
        await asyncio.gather(*steps)
        containers = [(c.id, c.name) for c in plan.keep]
        containers += self._containers.get(name, [])
        self._containers[name] = sorted(set(containers), key=lambda item: item[1])

    def _spec(self, service: str, number: int) -> ContainerSpec:
        config_hash = self.hashes[service]
        if self.rehash is not None and self.project.services[service].implicit_dependencies:
            # 1.29 hashes `service:NAME` modes as NAME's container id, known only now
            ids = {name: found[-1][0] for name, found in self._containers.items() if found}
            config_hash = self.rehash(service, ids)
        return container_create_body(
            self.project,
            self.project.services[service],
            number,
            config_hash=config_hash,
            environment=self.environment,
            environment_file=self.environment_file,
        )

    async def _create(self, service: str, number: int) -> str:
        cid, name = await self._make(service, number)
        await self._start_new(service, cid, name)
        return cid

    async def _make(self, service: str, number: int) -> tuple[str, str]:
        """Create (not start) a container, joined to all its networks."""
        spec = self._spec(service, number)
        self.emit(_event("container", spec.name, "Creating", service))
        cid = await self.engine.create_container(spec.name, spec.body)
        self.journal.containers.append((cid, spec.name))
        for network, endpoint in spec.extra_networks.items():
            await self.engine.connect_network(
                network,
                cid,
                aliases=endpoint["aliases"],
                ipv4_address=endpoint.get("ipv4_address"),
            )
        self.emit(_event("container", spec.name, "Created", service))
        return cid, spec.name

    async def _start_new(self, service: str, cid: str, name: str) -> None:
        self.emit(_event("container", name, "Starting", service))
        await self.engine.start_container(cid)
        self._containers.setdefault(service, []).append((cid, name))
        self.emit(_event("container", name, "Started", service))

    async def _recreate(self, service: str, old: ObservedContainer) -> None:
        self.emit(_event("container", old.name, "Recreating", service))
        grace = self.project.services[service].stop_grace_period
        if old.running:
            await self.engine.stop_container(old.id, timeout=int(grace or 10))
        aside = f"{old.id[:12]}_{old.name}"
        await self.engine.rename_container(old.id, aside)
        self.journal.renamed.append((old.id, old.name, old.running))
        await self._create(service, old.number or 1)
        # the old container is removed once the whole `up` succeeded (see `run`)
        self.emit(_event("container", old.name, "Recreated", service))

    async def _start_existing(self, service: str, container: ObservedContainer) -> None:
        self.emit(_event("container", container.name, "Starting", service))
        await self.engine.start_container(container.id)
        self.journal.started.append((container.id, container.name))
        self._containers.setdefault(service, []).append((container.id, container.name))
        self.emit(_event("container", container.name, "Started", service))

    async def _remove(self, container: ObservedContainer) -> None:
        self.emit(_event("container", container.name, "Removing", container.service))
        await self.engine.remove_container(container.id, force=True)
        self.emit(_event("container", container.name, "Removed", container.service))

    async def _remove_orphans(self, orphans: list[ObservedContainer]) -> None:
        await asyncio.gather(*(self._remove(c) for c in orphans))


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for err in group.exceptions:
        if isinstance(err, BaseExceptionGroup):
            return _first_error(err)
        if not isinstance(err, asyncio.CancelledError):
            return err
    return group.exceptions[0]


def _with_rollback(err: Exception, rollback: Rollback) -> ComposeError:
    message = str(err)
    if rollback.left:
        message += (
            f"; could not undo this `up` for {', '.join(rollback.left)} ({rollback.reason}); "
            "run `down` (or `up`) once the engine answers again"
        )
    else:
        message += "; everything this `up` created was removed again"
    return ComposeError(message)
