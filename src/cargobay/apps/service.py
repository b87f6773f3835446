"""The app instances service: what the daemon's ``/v1/apps`` endpoints call.

It owns the instances (in the store), their directories (``<data>/apps/<name>/``), and
the deployment tasks.  Per deploy mode:

- ``docker``: :mod:`cargobay.apps.docker_mode` writes the compose file, the compose
  engine brings it up; start/stop/restart/status/logs/stats go to the compose project
  ``maibot-<name>``;
- ``local``: :mod:`cargobay.apps.local_mode` (clone, venv, processes under a PTY);
- ``wsl2_docker``: refused unless on Windows (the WSL command layer lives in
  :mod:`cargobay.apps.wsl2`).

Failure rules (the issue's "bad input"): a name clash is refused before anything is
written; a deploy that fails removes what it created for a first deploy (containers,
network, directories, compose file) and otherwise leaves the previous compose file and
containers as they were; the instance's saved state only changes when a step succeeds
(local mode: its status is ``deploying`` meanwhile and ``error`` after a failure, or the
previous status while the old processes still run).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cargobay.apps import docker_mode, local_mode
from cargobay.apps import instance_files as files
from cargobay.apps.legacy import import_legacy
from cargobay.apps.models import (
    ContainerInfo,
    DeploymentTask,
    DeployMode,
    ImageInfo,
    Instance,
    InstanceCreate,
    InstanceStatus,
    InstanceUpdate,
)
from cargobay.apps.store import AppStore
from cargobay.apps.tasks import TaskManager, TaskReporter
from cargobay.containers.compose.executor import Event
from cargobay.containers.compose.loader import LoadedProject, bare_project
from cargobay.containers.compose.service import ComposeService
from cargobay.containers.engine import DockerEngine
from cargobay.containers.reference import parse_reference
from cargobay.containers.stats import ContainerStats, stream_stats
from cargobay.errors import AppConflict, AppDeployError, AppInputError, ImageNotFound, NotFound
from cargobay.store.sqlite import Store

__all__ = ["AppService", "status_of"]

DOCKER_STEPS = ("prepare", "compose file", "images", "containers", "verify")
WSL_STEPS = ("prepare", "compose file", "docker in wsl", "containers")


def status_of(rows: Sequence[dict[str, Any]]) -> InstanceStatus:
    """An instance's status from its containers' ``ps`` rows."""
    if not rows:
        return InstanceStatus.STOPPED
    running = [r for r in rows if r.get("state") == "running"]
    if len(running) == len(rows):
        return InstanceStatus.RUNNING
    return InstanceStatus.PARTIAL if running else InstanceStatus.STOPPED


def _event_line(event: Event) -> str:
    kind = event.get("type")
    if kind == "progress":
        parts = (event.get("kind"), event.get("name"), event.get("status"))
        return " ".join(str(p) for p in parts if p)
    if kind in ("warning", "plan"):
        rest = {k: v for k, v in event.items() if k != "type"}
        return f"{kind}: " + ", ".join(f"{k}={v}" for k, v in rest.items())
    return str(dict(event))


class AppService:
    """App instances on the daemon's store, data directory and Docker engine."""

    def __init__(
        self,
        store: Store,
        root: Path,
        *,
        engine_url: str | None = None,
        platform: str = sys.platform,
        wsl: docker_mode.WslStack | None = None,
    ) -> None:
        """``platform``/``wsl``: wsl2_docker instances are managed only on Windows, through
        ``wsl`` (default: wsl.exe); tests on Linux inject both."""
        self.platform = platform
        self._wsl = wsl
        self.apps = AppStore(store)
        self.root = root
        self.tasks = TaskManager()
        self._engine_url = engine_url
        self.local = local_mode.LocalRunner()

    # -- plumbing ------------------------------------------------------------------------

    @property
    def engine_url(self) -> str:
        if self._engine_url is None:
            from cargobay.containers.detect import resolve_endpoint
            from cargobay.containers.settings import load_settings

            self._engine_url = resolve_endpoint(load_settings().docker_host).url
        return self._engine_url

    def compose(self) -> ComposeService:
        return ComposeService(self.engine_url)

    def directory(self, instance: Instance) -> Path:
        return self.root / instance.name

    def _loaded(self, instance: Instance) -> LoadedProject:
        self._require_docker(instance)
        if not instance.docker_compose_path or not Path(instance.docker_compose_path).is_file():
            raise AppConflict(
                f"app instance {instance.name!r} is not deployed yet; "
                f"run `cargobay app deploy {instance.name}` first"
            )
        return docker_mode.load_stack(instance, Path(instance.docker_compose_path))

    @property
    def wsl(self) -> docker_mode.WslStack:
        if self._wsl is None:
            from cargobay.apps.wsl2 import Wsl

            self._wsl = docker_mode.WslStack(Wsl())
        return self._wsl

    def _require_docker(self, instance: Instance, *, engine: bool = True) -> None:
        """Docker instances; wsl2_docker ones only on Windows, and (``engine``) only for
        what needs the local Docker Engine API, which WSL's Docker does not expose."""
        if instance.deploy_mode is DeployMode.LOCAL:
            raise AppConflict(f"app instance {instance.name!r} runs in local mode, not Docker")
        if instance.deploy_mode is DeployMode.WSL2_DOCKER and engine and self.platform == "win32":
            raise AppConflict(
                f"app instance {instance.name!r} runs in WSL2: container details, stats and "
                "images are not available for it here (use `wsl docker ...`)"
            )
        if instance.deploy_mode is DeployMode.WSL2_DOCKER and self.platform != "win32":
            raise AppConflict(
                f"app instance {instance.name!r} is a wsl2_docker instance: it can only be "
                "managed on Windows"
            )

    async def close(self) -> None:
        await self.tasks.close()
        await self.local.close()

    # -- CRUD ----------------------------------------------------------------------------

    def create(self, body: InstanceCreate) -> Instance:
        if body.deploy_mode is DeployMode.WSL2_DOCKER and self.platform != "win32":
            raise AppInputError(
                "bad value for 'deploy_mode': wsl2_docker is only available on Windows "
                "(use docker on this host)"
            )
        if body.deploy_mode is DeployMode.LOCAL and not body.repo_url:
            raise AppInputError("missing field 'repo_url': local mode clones the app repository")
        if self.apps.find(body.name) is not None:
            raise AppConflict(f"an app instance named {body.name!r} already exists")
        instance = Instance(**body.model_dump())
        instance.paths.setdefault("root", str(self.root / instance.name))
        if instance.deploy_mode is not DeployMode.LOCAL:
            instance.docker_network = docker_mode.network_name(instance)
        return self.apps.insert(instance)

    def list_instances(self) -> list[Instance]:
        return self.apps.list()

    def get(self, name: str) -> Instance:
        return self.apps.get(name)

    def update(self, name: str, body: InstanceUpdate) -> Instance:
        """Change settings; a deployed Docker instance picks them up at its next deploy."""
        instance = self.apps.get(name)
        changes = {key: value for key, value in body if value is not None}  # models stay
        if "napcat" in changes and instance.deploy_mode is not DeployMode.LOCAL:
            raise AppInputError("napcat is only for deploy_mode local")
        return self.apps.save(instance.model_copy(update=changes))

    async def delete(self, name: str, *, keep_data: bool = False) -> None:
        """Remove the instance: its containers, network and volumes (Docker) or its
        processes (local), its directory unless ``keep_data``, then its row."""
        instance = self.apps.get(name)
        if any(t.state == "running" for t in self.tasks.list(instance.id)):
            raise AppConflict(f"app instance {name!r} has a deployment running; wait for it")
        if instance.deploy_mode is DeployMode.LOCAL:
            await self.local.stop(instance)
        elif instance.deploy_mode is DeployMode.WSL2_DOCKER:
            self._require_docker(instance, engine=False)
            if instance.docker_compose_path:
                await self.wsl.down(instance, self.directory(instance))
        else:  # by the project's labels: also what a half-finished deploy left
            self._require_docker(instance)
            project = bare_project(docker_mode.project_name(instance), self.directory(instance))
            await self.compose().down(project, volumes=True, remove_orphans=True)
        if not keep_data:
            directory = self.directory(instance)
            if directory.is_dir():
                shutil.rmtree(directory)
        self.apps.delete(instance.id)

    def import_legacy(self, path: Path) -> dict[str, Any]:
        return import_legacy(self.apps, path)

    # -- deploy --------------------------------------------------------------------------

    def deploy(self, name: str) -> DeploymentTask:
        instance = self.apps.get(name)
        task = DeploymentTask(instance_id=instance.id, instance_name=instance.name)
        if instance.deploy_mode is DeployMode.LOCAL:
            return self._deploy_local(instance, task)
        if instance.deploy_mode is DeployMode.WSL2_DOCKER:
            self._require_docker(instance, engine=False)
            return self.tasks.start(task, WSL_STEPS, lambda r: self._deploy_wsl(instance, r))
        self._require_docker(instance)
        return self.tasks.start(task, DOCKER_STEPS, lambda r: self._deploy_docker(instance, r))

    def _deploy_local(self, instance: Instance, task: DeploymentTask) -> DeploymentTask:
        """The saved status is ``deploying`` while it runs; a failure leaves ``error`` (or
        the previous status while the old processes still run), the message kept in
        ``status_message``."""

        async def tracked(report: TaskReporter) -> str:
            try:
                return await self.local.deploy(
                    self.apps, instance, self.directory(instance), report
                )
            except BaseException as err:
                current = self.apps.find(instance.id)
                if current is not None:  # (not deleted meanwhile)
                    interrupted = isinstance(err, asyncio.CancelledError)
                    message = "the deploy was interrupted" if interrupted else str(err)
                    still = self.local.running(instance)
                    status = instance.status if still else InstanceStatus.ERROR
                    update = {"status": status, "status_message": message or repr(err)}
                    self.apps.save(current.model_copy(update=update))
                raise

        started = self.tasks.start(task, local_mode.STEPS, tracked)
        update = {"status": InstanceStatus.DEPLOYING, "status_message": None}
        self.apps.save(self.apps.get(instance.id).model_copy(update=update))
        return started

    async def _deploy_wsl(self, instance: Instance, report: TaskReporter) -> str:
        root = self.directory(instance)
        try:
            ids = await self.wsl.deploy(instance, root, report)
        except Exception as err:
            if isinstance(err, AppDeployError):
                raise
            raise AppDeployError(f"deploying app instance {instance.name!r} failed: {err}") from err
        current = self.apps.get(instance.id).model_copy(
            update={
                "docker_compose_path": str(root / docker_mode.COMPOSE_FILE),
                "container_ids": ids,
                "status": InstanceStatus.RUNNING if ids else InstanceStatus.STOPPED,
            }
        )
        self.apps.save(current)
        return f"{instance.name}: {len(ids)} container(s) in {instance.wsl_distro}"

    async def _wsl_verb(self, instance: Instance, verb: str, services: Sequence[str]) -> Instance:
        self._require_docker(instance, engine=False)
        running = await self.wsl.verb(instance, self.directory(instance), verb, list(services))
        total = len(instance.container_ids)
        status = (
            InstanceStatus.STOPPED
            if not running
            else InstanceStatus.RUNNING
            if running >= total
            else InstanceStatus.PARTIAL
        )
        return self.apps.save(self.apps.get(instance.id).model_copy(update={"status": status}))

    async def _deploy_docker(self, instance: Instance, report: TaskReporter) -> str:
        root = self.directory(instance)
        compose_file = root / docker_mode.COMPOSE_FILE
        first = not compose_file.exists()
        previous = None if first else compose_file.read_text(encoding="utf-8")
        report.step("prepare", f"preparing {root}")
        root_existed = root.exists()
        created = docker_mode.prepare_directories(root)
        try:
            report.step("compose file", "generating the MaiBot stack's compose file")
            path, loaded = docker_mode.write_compose(instance, root)
            report.log(f"wrote {path} (services: {', '.join(loaded.project.services)})")

            report.step("images", "checking the stack's images")
            images = await self._images(instance, loaded)
            for n, image in enumerate(images, 1):
                where = "present" if image.present else "missing (will be pulled)"
                report.log(f"image {image.repository}:{image.tag} {where}")
                report.progress(n / len(images))

            report.step("containers", f"bringing up project {loaded.project.name}")
            await self.compose().up(
                loaded, remove_orphans=True, emit=lambda e: report.log(_event_line(e))
            )
        except BaseException as err:
            if first:
                await self._undo_first_deploy(instance, root, root_existed, created, report)
            elif previous is not None:  # the compose file goes back to what is running
                compose_file.write_text(previous, encoding="utf-8")
            if isinstance(err, Exception) and not isinstance(err, AppDeployError):
                undone = (
                    "; what it had created was removed"
                    if first
                    else "; the previous compose file and containers were kept"
                )
                raise AppDeployError(
                    f"deploying app instance {instance.name!r} failed: {err}{undone}"
                ) from err
            raise

        report.step("verify", "reading the containers' state")
        rows = await self.compose().ps(loaded.project.name)
        current = self.apps.get(instance.id)
        current = current.model_copy(
            update={
                "docker_compose_path": str(path),
                "docker_network": loaded.project.network_name(docker_mode.NETWORK),
                "container_ids": [r["id"] for r in rows],
                "status": status_of(rows),
            }
        )
        self.apps.save(current)
        return f"{instance.name}: {len(rows)} container(s), {current.status.value}"

    async def _undo_first_deploy(
        self,
        instance: Instance,
        root: Path,
        root_existed: bool,
        created: list[Path],
        report: TaskReporter,
    ) -> None:
        report.log("cleaning up the failed first deploy")
        with contextlib.suppress(Exception):
            project = bare_project(docker_mode.project_name(instance), root)
            await self.compose().down(project, volumes=True, remove_orphans=True)
        (root / docker_mode.COMPOSE_FILE).unlink(missing_ok=True)
        for path in sorted(created, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                path.unlink() if path.is_file() else path.rmdir()
        if not root_existed:
            shutil.rmtree(root, ignore_errors=True)

    # -- lifecycle -----------------------------------------------------------------------

    async def _refresh(self, instance: Instance) -> Instance:
        rows = await self.compose().ps(docker_mode.project_name(instance))
        return self.apps.save(
            self.apps.get(instance.id).model_copy(
                update={"container_ids": [r["id"] for r in rows], "status": status_of(rows)}
            )
        )

    async def start(self, name: str, services: Sequence[str] = ()) -> Instance:
        instance = self.apps.get(name)
        if instance.deploy_mode is DeployMode.LOCAL:
            return await self.local.start(self.apps, instance, self.directory(instance))
        if instance.deploy_mode is DeployMode.WSL2_DOCKER:
            return await self._wsl_verb(instance, "start", services)
        await self.compose().start(self._loaded(instance), services=list(services) or None)
        return await self._refresh(instance)

    async def stop(self, name: str, services: Sequence[str] = ()) -> Instance:
        instance = self.apps.get(name)
        if instance.deploy_mode is DeployMode.LOCAL:
            await self.local.stop(instance)
            return self.apps.save(instance.model_copy(update={"status": InstanceStatus.STOPPED}))
        if instance.deploy_mode is DeployMode.WSL2_DOCKER:
            return await self._wsl_verb(instance, "stop", services)
        await self.compose().stop(self._loaded(instance), services=list(services) or None)
        return await self._refresh(instance)

    async def restart(self, name: str, services: Sequence[str] = ()) -> Instance:
        instance = self.apps.get(name)
        if instance.deploy_mode is DeployMode.LOCAL:
            await self.local.stop(instance)
            return await self.local.start(self.apps, instance, self.directory(instance))
        if instance.deploy_mode is DeployMode.WSL2_DOCKER:
            return await self._wsl_verb(instance, "restart", services)
        await self.compose().restart(self._loaded(instance), services=list(services) or None)
        return await self._refresh(instance)

    async def containers(self, name: str) -> list[ContainerInfo]:
        instance = self.apps.get(name)
        self._require_docker(instance)
        rows = await self.compose().ps(docker_mode.project_name(instance))
        return [
            ContainerInfo(
                container_id=r["id"],
                instance_id=instance.id,
                name=r["name"],
                service=r["service"],
                image=r["image"],
                status=r["status"],
                state=r["state"],
                ports=r["ports"],
            )
            for r in rows
        ]

    async def status(self, name: str) -> dict[str, Any]:
        instance = self.apps.get(name)
        if instance.deploy_mode is DeployMode.LOCAL:
            return {"instance": instance, "containers": [],
                    "processes": self.local.processes(instance)}  # fmt: skip
        if instance.deploy_mode is DeployMode.WSL2_DOCKER:
            self._require_docker(instance, engine=False)
            return {"instance": instance, "containers": [], "processes": []}
        containers = await self.containers(name)
        if instance.docker_compose_path:
            instance = await self._refresh(instance)
        return {"instance": instance, "containers": containers, "processes": []}

    async def logs(
        self,
        name: str,
        *,
        services: Sequence[str] = (),
        follow: bool = False,
        tail: int | None = None,
        grep: str | None = None,
    ) -> AsyncIterator[Event]:
        instance = self.apps.get(name)
        if instance.deploy_mode is DeployMode.LOCAL:
            return self.local.logs(instance, follow=follow, tail=tail, names=services)
        if instance.deploy_mode is DeployMode.WSL2_DOCKER:
            self._require_docker(instance, engine=False)
            lines = await self.wsl.logs(instance, self.directory(instance), tail)
            return _log_events(lines)
        self._require_docker(instance)
        return self.compose().logs(
            docker_mode.project_name(instance),
            services=list(services) or None,
            follow=follow,
            tail=tail,
            grep=grep,
        )

    async def stats(self, name: str) -> list[ContainerStats]:
        """One sample per container (CPU, memory, network, block I/O)."""
        containers = [c for c in await self.containers(name) if c.state == "running"]
        async with await DockerEngine.connect(self.engine_url) as engine:

            async def one(container: ContainerInfo) -> ContainerStats | None:
                async for sample in stream_stats(
                    engine, container.container_id, stream=False, samples=1
                ):
                    return sample.model_copy(update={"name": container.name})
                return None

            samples = await asyncio.gather(*(one(c) for c in containers))
        return [s for s in samples if s is not None]

    async def images(self, name: str) -> list[ImageInfo]:
        instance = self.apps.get(name)
        self._require_docker(instance)
        compose = docker_mode.compose_document(instance)
        return await self._image_infos([str(s["image"]) for s in compose["services"].values()])

    async def check_updates(self, name: str) -> list[dict[str, Any]]:
        """For each of the stack's images: is a newer one behind its tag in the registry
        (the registry's digest is not among the local image's RepoDigests)?  A registry
        that cannot be asked gives that image an ``error`` instead."""
        from cargobay.containers.images import ImageService
        from cargobay.containers.settings import load_settings
        from cargobay.errors import CargoBayError

        instance = self.apps.get(name)
        self._require_docker(instance)
        references = [
            str(s["image"]) for s in docker_mode.compose_document(instance)["services"].values()
        ]
        settings = await asyncio.to_thread(load_settings)
        async with await DockerEngine.connect(self.engine_url) as engine:
            images = ImageService(engine, settings)

            async def one(reference: str) -> dict[str, Any]:
                try:
                    check = await images.check_update(reference)
                except CargoBayError as err:
                    return {"reference": reference, "update_available": None, "error": str(err)}
                return {**check.model_dump(), "error": None}

            return list(await asyncio.gather(*(one(r) for r in references)))

    async def _images(self, instance: Instance, loaded: LoadedProject) -> list[ImageInfo]:
        images = [str(s.image) for s in loaded.project.services.values() if s.image]
        return await self._image_infos(images)

    async def _image_infos(self, references: Sequence[str]) -> list[ImageInfo]:
        out = []
        async with await DockerEngine.connect(self.engine_url) as engine:
            for ref in references:
                parsed = parse_reference(ref)
                tag = parsed.tag_or_latest
                repository = parsed.familiar().split("@")[0].removesuffix(f":{tag}")
                try:
                    info = await engine.inspect_image(ref)
                except (ImageNotFound, NotFound):
                    out.append(ImageInfo(image_id=None, repository=repository, tag=tag,
                                         present=False))  # fmt: skip
                    continue
                tagged = (info.get("Metadata") or {}).get("LastTagTime")
                out.append(
                    ImageInfo(
                        image_id=str(info.get("Id")),
                        repository=repository,
                        tag=tag,
                        size=int(info.get("Size") or 0),
                        pulled_at=_parse_time(tagged) or _parse_time(info.get("Created")),
                    )
                )
        return out

    # -- files: config TOML, API providers, backup (cargobay.apps.instance_files) ---------

    def config_path(self, instance: Instance, kind: str) -> Path:
        return files.config_path(instance, self.directory(instance), kind)

    def read_config(self, name: str, kind: str) -> dict[str, Any]:
        """The file's values (API keys masked) and problems with known keys."""
        return files.read_config(self.config_path(self.apps.get(name), kind), kind)

    async def edit_config(
        self,
        name: str,
        kind: str,
        *,
        set_values: dict[str, Any],
        delete: Sequence[str] = (),
        create: bool = False,
        restart: bool = True,
    ) -> dict[str, Any]:
        """Change keys (comments and order kept), all or nothing; then a running Docker
        instance restarts the service that reads the file."""
        instance = self.apps.get(name)
        path = self.config_path(instance, kind)
        await asyncio.to_thread(files.edit_config, path, kind, set_values, list(delete), create)
        restarted = await self._restart_reader(instance, kind) if restart else []
        return {"path": str(path), "changed": [*set_values, *delete], "restarted": restarted}

    async def _restart_reader(self, instance: Instance, kind: str) -> list[str]:
        if instance.deploy_mode is not DeployMode.DOCKER or not instance.docker_compose_path:
            return []
        service = files.CONFIG_SERVICE[kind]
        rows = await self.compose().ps(docker_mode.project_name(instance), services=[service])
        if not any(r["state"] == "running" for r in rows):
            return []
        await self.compose().restart(self._loaded(instance), services=[service])
        return [service]

    def list_providers(self, name: str) -> list[dict[str, Any]]:
        return files.providers(self.directory(self.apps.get(name))).public()

    async def put_provider(self, name: str, provider: dict[str, Any]) -> dict[str, Any]:
        """Save a provider, write it into model_config.toml (0600), restart the core."""
        instance = self.apps.get(name)
        model = self.config_path(instance, "model")
        public = await asyncio.to_thread(
            files.put_provider, self.directory(instance), model, provider
        )
        return {"provider": public, "restarted": await self._restart_reader(instance, "model")}

    def delete_provider(self, name: str, provider: str) -> None:
        files.providers(self.directory(self.apps.get(name))).remove(provider)

    async def backup(self, name: str, dest: Path | None = None) -> dict[str, Any]:
        instance = self.apps.get(name)
        dest = dest or files.default_archive(self.root.parent / "app-backups", instance)
        return await files.backup_instance(instance, self.directory(instance), dest)

    async def restore(self, archive: Path, new_name: str) -> Instance:
        """A new instance from a backup (not deployed).  A name clash is refused before
        anything is written; a failed restore leaves nothing."""
        if self.apps.find(new_name) is not None:
            raise AppConflict(f"an app instance named {new_name!r} already exists")
        root = self.root / new_name
        instance = await files.restore_instance(archive, new_name, root)
        try:
            return self.apps.insert(instance)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, root, True)
            raise


async def _log_events(lines: Sequence[str]) -> AsyncIterator[Event]:
    """``docker compose logs`` lines (``service-1  | text``) as log events."""
    for line in lines:
        service, sep, text = line.partition("|")
        if sep:
            yield {"type": "log", "service": service.strip(), "line": text.removeprefix(" ")}
        else:
            yield {"type": "log", "service": "", "line": line}


def _parse_time(value: Any) -> datetime | None:
    if not value or str(value).startswith("0001-"):
        return None
    text = str(value).replace("Z", "+00:00")
    if "." in text:  # the Engine gives nanoseconds; Python takes microseconds
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
