"""The compose service: ``up``, ``down``, ``stop``, ``start``, ``restart``, ``ps``, ``logs``
and ``config`` of a loaded project, against one Docker Engine.

This is what the daemon calls.  ``up`` is: images (build or find, pull as a last resort),
config hashes (``hashing``), the current state (containers by the project label,
networks, volumes), a plan (``planner``, sans-IO), and the executor (``executor``), which
rolls back a failed ``up``.  Progress goes to an ``emit`` callback as event dicts, which
the daemon streams as NDJSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cargobay.containers.compose import labels as L
from cargobay.containers.compose.executor import Event, UpExecutor, wait_healthy
from cargobay.containers.compose.hashing import config_hash
from cargobay.containers.compose.loader import LoadedProject
from cargobay.containers.compose.model import ComposeProject
from cargobay.containers.compose.planner import (
    ObservedContainer,
    Plan,
    layers,
    observe_containers,
    plan_up,
)
from cargobay.containers.compose.spec import image_name
from cargobay.containers.engine import DockerEngine
from cargobay.errors import (
    CargoBayError,
    ComposeError,
    ContainerError,
    ImageNotFound,
    InvalidInput,
    NotFound,
)

__all__ = ["ComposeService", "ps_rows"]

log = logging.getLogger(__name__)

EventSink = Callable[[Event], None]


_LOCKS: dict[tuple[int, str, str], asyncio.Lock] = {}


def _ignore(_: Event) -> None:
    pass


class ComposeService:
    """Compose operations on the engine at ``engine_url`` (None: the default engine)."""

    def __init__(self, engine_url: str | None = None) -> None:
        self.engine_url = engine_url

    async def _engine(self) -> DockerEngine:
        return await DockerEngine.connect(self.engine_url)

    def _locked(self, project: str) -> asyncio.Lock:
        """One changing operation at a time per project and engine (in this process): two
        ``up``s of one project at once would both create its containers."""
        key = (id(asyncio.get_running_loop()), self.engine_url or "", project)
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = asyncio.Lock()
        return lock

    # -- up ------------------------------------------------------------------------------

    async def up(
        self,
        loaded: LoadedProject,
        *,
        services: Sequence[str] | None = None,
        build: bool = False,
        force_recreate: bool = False,
        no_recreate: bool = False,
        remove_orphans: bool = False,
        wait_timeout: float = 300.0,
        wait: bool = False,
        emit: EventSink = _ignore,
    ) -> Plan:
        """Bring the project up (idempotent); the plan that was carried out.  With
        ``wait``, return only once every service with a health check is healthy and the
        others run (``docker compose up --wait``)."""
        project = loaded.project
        for warning in loaded.warnings:
            emit({"type": "warning", "message": warning})
        async with self._locked(project.name), await self._engine() as engine:
            selected = [n for layer in layers(project, services or None) for n in layer]
            image_ids = await self._images(engine, project, selected, build, emit)
            containers = await self._containers(engine, project.name)
            running = {c.service: c.id for c in reversed(containers) if c.running}

            def rehash(name: str, service_containers: Mapping[str, str]) -> str:
                return config_hash(
                    project,
                    name,
                    loaded.raw_services[name],
                    loaded.environment,
                    image_ids[name],
                    service_containers,
                )

            hashes = {name: rehash(name, running) for name in selected}
            networks = {str(n.get("Name")) for n in await engine.list_networks()}
            volumes = {str(v.get("Name")) for v in await engine.list_volumes()}
            plan = plan_up(
                project,
                hashes=hashes,
                containers=containers,
                existing_networks=networks,
                existing_volumes=volumes,
                services=services or None,
                force_recreate=force_recreate,
                no_recreate=no_recreate,
                remove_orphans=remove_orphans,
            )
            for name, service_plan in plan.services.items():
                emit({"type": "plan", "service": name, "action": service_plan.action})
            executor = UpExecutor(
                engine,
                project,
                hashes=hashes,
                environment=loaded.environment,
                environment_file=loaded.env_file,
                emit=emit,
                wait_timeout=wait_timeout,
                rehash=rehash,
            )
            await executor.run(plan)
            if wait:
                await self._wait_ready(engine, project, list(plan.services), wait_timeout, emit)
            return plan

    async def _wait_ready(
        self,
        engine: DockerEngine,
        project: ComposeProject,
        services: Sequence[str],
        timeout: float,
        emit: EventSink,
    ) -> None:
        containers = [c for c in await self._containers(engine, project.name)
                      if c.service in services]  # fmt: skip

        async def ready(container: ObservedContainer) -> None:
            service = project.services[container.service]
            check = service.healthcheck
            if check is not None and not check.disable and check.test != ["NONE"]:
                try:
                    await wait_healthy(engine, container.id, container.name, timeout)
                except ComposeError as err:
                    raise ComposeError(f"service {container.service!r}: {err}") from err
                emit(_progress("container", container.name, "Healthy", container.service))
            elif not container.running and container.state != "exited":
                raise ComposeError(
                    f"service {container.service!r}: container {container.name} is "
                    f"{container.state or 'not running'}"
                )

        await asyncio.gather(*(ready(c) for c in containers))

    async def _images(
        self,
        engine: DockerEngine,
        project: ComposeProject,
        selected: Sequence[str],
        build: bool,
        emit: EventSink,
    ) -> dict[str, str | None]:
        async def one(name: str) -> tuple[str, str | None]:
            service = project.services[name]
            image = image_name(project, service)
            if service.build is not None and (build or service.pull_policy == "build"):
                return name, await self._build(engine, project, name, emit)
            if service.pull_policy == "always" and service.build is None:
                return name, await self._pull(engine, name, image, emit)
            try:
                return name, str((await engine.inspect_image(image))["Id"])
            except ImageNotFound:
                pass
            if service.build is not None:
                return name, await self._build(engine, project, name, emit)
            if service.pull_policy == "never":
                raise ComposeError(
                    f"service {name!r}: image {image} is not present and pull_policy is never"
                )
            return name, await self._pull(engine, name, image, emit)

        results = await asyncio.gather(*(one(name) for name in selected))
        return dict(results)

    @staticmethod
    async def _pull(engine: DockerEngine, name: str, image: str, emit: EventSink) -> str:
        emit({"type": "progress", "resource": "image", "name": image, "status": "Pulling",
              "service": name})  # fmt: skip
        try:
            await engine.pull_image(image)
            image_id = str((await engine.inspect_image(image))["Id"])
        except ContainerError as err:
            raise ComposeError(
                f"service {name!r}: image {image} is not present locally and pulling it "
                f"failed ({err}); build it, load it or fix the name"
            ) from err
        emit({"type": "progress", "resource": "image", "name": image, "status": "Pulled",
              "service": name})  # fmt: skip
        return image_id

    async def _build(
        self, engine: DockerEngine, project: ComposeProject, name: str, emit: EventSink
    ) -> str:
        service = project.services[name]
        assert service.build is not None
        build = service.build
        image = image_name(project, service)
        emit({"type": "progress", "resource": "image", "name": image, "status": "Building",
              "service": name})  # fmt: skip

        def progress(message: Mapping[str, Any]) -> None:
            text = str(message.get("stream", "")).rstrip()
            if text:
                emit({"type": "build", "service": name, "line": text})

        context = Path(build.context)
        if not await asyncio.to_thread(context.is_dir):
            raise ComposeError(f"service {name!r}: build context {context} is not a directory")
        try:
            image_id = await engine.build_image(
                context,
                dockerfile=build.dockerfile or "Dockerfile",
                tag=image,
                buildargs={k: v for k, v in build.args.items() if v is not None},
                labels=build.labels or None,
                target=build.target,
                network_mode=build.network,
                on_progress=progress,
            )
        except ContainerError as err:
            raise ComposeError(f"service {name!r}: building {image} failed: {err}") from err
        emit({"type": "progress", "resource": "image", "name": image, "status": "Built",
              "service": name})  # fmt: skip
        return image_id

    @staticmethod
    async def _containers(engine: DockerEngine, project: str) -> list[ObservedContainer]:
        listing = await engine.list_containers(all=True, labels={L.PROJECT: project})
        return observe_containers(listing)

    # -- down, stop, start, restart ------------------------------------------------------

    async def down(
        self,
        loaded: LoadedProject,
        *,
        volumes: bool = False,
        remove_orphans: bool = False,
        timeout: int | None = None,
        emit: EventSink = _ignore,
    ) -> None:
        """Stop and remove the project's containers and networks (and with ``volumes``
        its named and anonymous volumes)."""
        project = loaded.project
        async with self._locked(project.name), await self._engine() as engine:
            containers = await self._containers(engine, project.name)
            bare = not project.services  # known by name only: everything labelled is ours
            ours = [
                c for c in containers if c.service in project.services or remove_orphans or bare
            ]
            for orphan in (c for c in containers if c not in ours):
                emit({"type": "warning", "message": f"found orphan container {orphan.name}; "
                      "remove it with --remove-orphans"})  # fmt: skip
            await self._stop_in_order(engine, project, ours, timeout, emit)

            async def remove(container: ObservedContainer) -> None:
                emit(_progress("container", container.name, "Removing", container.service))
                with contextlib.suppress(NotFound):
                    await engine.remove_container(container.id, force=True, volumes=volumes)
                emit(_progress("container", container.name, "Removed", container.service))

            await asyncio.gather(*(remove(c) for c in ours))
            networks: set[str] = set()
            keys = {key for s in project.services.values() for key in project.service_networks(s)}
            for key in keys | set(project.networks):
                cfg = project.networks.get(key)
                if cfg is None or not cfg.external:
                    networks.add(project.network_name(key))
            # and those the project's label names (created by another file version/tool)
            for net in await engine.list_networks(labels={L.PROJECT: project.name}):
                networks.add(str(net.get("Name")))
            for name in sorted(networks):
                try:
                    await engine.remove_network(name)
                except NotFound:
                    continue
                except ContainerError as err:  # still used by a container we left
                    emit({"type": "warning", "message": f"network {name} not removed: {err}"})
                    continue
                emit(_progress("network", name, "Removed"))
            if volumes:
                names = {
                    project.volume_name(key)
                    for key, vol in project.volumes.items()
                    if not vol.external
                }
                if bare:
                    listed = await engine.list_volumes(labels={L.PROJECT: project.name})
                    names |= {str(v.get("Name")) for v in listed}
                for name in sorted(names):
                    try:
                        await engine.remove_volume(name)
                    except NotFound:
                        continue
                    emit(_progress("volume", name, "Removed"))

    async def _stop_in_order(
        self,
        engine: DockerEngine,
        project: ComposeProject,
        containers: Sequence[ObservedContainer],
        timeout: int | None,
        emit: EventSink,
    ) -> None:
        """Stop dependents before what they depend on; each layer in parallel."""
        order = [name for layer in reversed(layers(project)) for name in [*layer, ""]]
        groups: list[list[ObservedContainer]] = [[]]
        for name in order:
            if name == "":
                groups.append([])
                continue
            groups[-1].extend(c for c in containers if c.service == name and c.running)
        groups.append([c for c in containers if c.service not in project.services and c.running])

        async def stop(container: ObservedContainer) -> None:
            service = project.services.get(container.service)
            grace = timeout
            if grace is None and service is not None and service.stop_grace_period is not None:
                grace = int(service.stop_grace_period)
            emit(_progress("container", container.name, "Stopping", container.service))
            try:
                await engine.stop_container(container.id, timeout=grace)
            except NotFound:
                return
            emit(_progress("container", container.name, "Stopped", container.service))

        for group in groups:
            await asyncio.gather(*(stop(c) for c in group))

    async def stop(
        self,
        loaded: LoadedProject,
        *,
        services: Sequence[str] | None = None,
        timeout: int | None = None,
        emit: EventSink = _ignore,
    ) -> None:
        project = loaded.project
        async with self._locked(project.name), await self._engine() as engine:
            containers = await self._selected(engine, project, services)
            await self._stop_in_order(engine, project, containers, timeout, emit)

    async def start(
        self,
        loaded: LoadedProject,
        *,
        services: Sequence[str] | None = None,
        emit: EventSink = _ignore,
    ) -> None:
        """Start existing containers in dependency order (``up`` creates missing ones)."""
        project = loaded.project
        async with self._locked(project.name), await self._engine() as engine:
            containers = await self._selected(engine, project, services)
            if not containers:
                raise ComposeError(
                    f"project {project.name!r} has no containers to start; run `up` first"
                )
            for layer in layers(project, services or None):
                group = [c for c in containers if c.service in layer]

                async def start(container: ObservedContainer) -> None:
                    emit(_progress("container", container.name, "Starting", container.service))
                    await engine.start_container(container.id)
                    emit(_progress("container", container.name, "Started", container.service))

                await asyncio.gather(*(start(c) for c in group))

    async def restart(
        self,
        loaded: LoadedProject,
        *,
        services: Sequence[str] | None = None,
        timeout: int | None = None,
        emit: EventSink = _ignore,
    ) -> None:
        project = loaded.project
        async with self._locked(project.name), await self._engine() as engine:
            containers = await self._selected(engine, project, services)
            for layer in layers(project, services or None):
                group = [c for c in containers if c.service in layer]

                async def restart(container: ObservedContainer) -> None:
                    emit(_progress("container", container.name, "Restarting", container.service))
                    await engine.restart_container(container.id, timeout=timeout)
                    emit(_progress("container", container.name, "Restarted", container.service))

                await asyncio.gather(*(restart(c) for c in group))

    async def _selected(
        self, engine: DockerEngine, project: ComposeProject, services: Sequence[str] | None
    ) -> list[ObservedContainer]:
        for name in services or ():
            if name not in project.services:
                raise ComposeError(f"no such service: {name!r}")
        containers = await self._containers(engine, project.name)
        if not project.services:  # known by name only (``bare_project``): all of it
            return containers
        wanted = set(services) if services else set(project.services)
        return [c for c in containers if c.service in wanted]

    # -- ps, logs ------------------------------------------------------------------------

    async def ps(
        self, project_name: str, *, services: Sequence[str] | None = None, all: bool = True
    ) -> list[dict[str, Any]]:
        """One row per container of the project (docker-compose's or ours)."""
        async with await self._engine() as engine:
            listing = await engine.list_containers(all=all, labels={L.PROJECT: project_name})
        rows = ps_rows(listing)
        if services:
            rows = [row for row in rows if row["service"] in services]
        return rows

    async def logs(
        self,
        project_name: str,
        *,
        services: Sequence[str] | None = None,
        follow: bool = False,
        tail: int | None = None,
        timestamps: bool = False,
        grep: str | None = None,
    ) -> AsyncIterator[Event]:
        """Log lines of the project's containers as ``{"type": "log", "container",
        "service", "stream", "line"}``, interleaved as they come; with ``grep`` (a regular
        expression) only the lines that match."""
        try:
            pattern = re.compile(grep) if grep else None
        except re.error as err:
            raise InvalidInput(f"bad --grep pattern {grep!r}: {err}") from err
        engine = await self._engine()
        try:
            listing = await engine.list_containers(all=True, labels={L.PROJECT: project_name})
            containers = [
                c for c in observe_containers(listing) if not services or c.service in services
            ]
            queue: asyncio.Queue[Event | BaseException | None] = asyncio.Queue(maxsize=1000)

            async def pump(container: ObservedContainer) -> None:
                try:
                    info = await engine.inspect_container(container.id)
                    tty = bool((info.get("Config") or {}).get("Tty"))
                    async with engine.container_logs_stream(
                        container.id, follow=follow, tail=tail, timestamps=timestamps
                    ) as chunks:
                        async for stream, line in _log_lines(chunks, tty):
                            if pattern is not None and not pattern.search(line):
                                continue
                            await queue.put(
                                {"type": "log", "container": container.name,
                                 "service": container.service, "stream": stream, "line": line}
                            )  # fmt: skip
                except CargoBayError as err:
                    await queue.put(err)

            tasks = [asyncio.create_task(pump(c)) for c in containers]

            async def closer() -> None:
                await asyncio.gather(*tasks, return_exceptions=True)
                await queue.put(None)

            done = asyncio.create_task(closer())
            try:
                while True:
                    item = await queue.get()
                    if item is None:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                for task in tasks:
                    task.cancel()
                done.cancel()
                await asyncio.gather(*tasks, done, return_exceptions=True)
        finally:
            await engine.close()


def _progress(kind: str, name: str, status: str, service: str | None = None) -> Event:
    event: Event = {"type": "progress", "resource": kind, "name": name, "status": status}
    if service is not None:
        event["service"] = service
    return event


async def _log_lines(chunks: AsyncIterator[bytes], tty: bool) -> AsyncIterator[tuple[str, str]]:
    """(stream, line) from a logs body: raw text with a TTY, else 8-byte-header frames
    (stream type 1 stdout, 2 stderr, then a big-endian length)."""
    buffer = b""
    pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    async for chunk in chunks:
        buffer += chunk
        while True:
            if tty:
                frames = [("stdout", buffer)]
                buffer = b""
            else:
                if len(buffer) < 8:
                    break
                kind, size = buffer[0], struct.unpack(">I", buffer[4:8])[0]
                if len(buffer) < 8 + size:
                    break
                stream = "stderr" if kind == 2 else "stdout"
                frames = [(stream, buffer[8 : 8 + size])]
                buffer = buffer[8 + size :]
            for stream, data in frames:
                pending[stream] += data
                *lines, pending[stream] = pending[stream].split(b"\n")
                for line in lines:
                    yield stream, line.decode(errors="replace").rstrip("\r")
            if tty or not buffer:
                break
    for stream, rest in pending.items():
        if rest:
            yield stream, rest.decode(errors="replace")


def ps_rows(listing: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``ps`` rows from ``GET /containers/json`` entries."""
    rows = []
    for entry in listing:
        labels = entry.get("Labels") or {}
        if labels.get(L.ONEOFF) == "True":
            continue
        status = str(entry.get("Status", ""))
        health = None
        for word in ("healthy", "unhealthy", "starting"):
            if f"({word})" in status or f"(health: {word})" in status:
                health = word
        ports = []
        for port in entry.get("Ports") or []:
            if port.get("PublicPort"):
                ports.append(
                    f"{port.get('IP', '')}:{port['PublicPort']}->{port['PrivatePort']}/"
                    f"{port.get('Type', 'tcp')}"
                )
            else:
                ports.append(f"{port['PrivatePort']}/{port.get('Type', 'tcp')}")
        rows.append(
            {
                "name": str((entry.get("Names") or [""])[0]).lstrip("/"),
                "id": str(entry.get("Id", ""))[:12],
                "service": labels.get(L.SERVICE, ""),
                "number": int(labels.get(L.CONTAINER_NUMBER, "0") or 0),
                "image": entry.get("Image", ""),
                "command": entry.get("Command", ""),
                "state": entry.get("State", ""),
                "status": status,
                "health": health,
                "ports": sorted(set(ports)),
                "config_hash": labels.get(L.CONFIG_HASH),
                "created_by": labels.get(L.VERSION),
            }
        )
    return sorted(rows, key=lambda r: (r["service"], r["number"], r["name"]))
