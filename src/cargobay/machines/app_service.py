"""The machines service's side of ``deploy`` and of the ``app`` log source: it copies an
application (``machines.deploy``) into a running machine through the agent, runs it,
records it on the machine, starts recorded applications after a boot, and streams their
logs."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cargobay.errors import CargoBayError, Conflict, InvalidInput
from cargobay.machines import deploy
from cargobay.machines.agent import (
    AgentClientLike,
    ExecExit,
    ExecOutput,
    ExecRequest,
    exec_events,
)
from cargobay.machines.guest_files import MAX_FILE_BYTES
from cargobay.machines.models import VMInstance

if TYPE_CHECKING:
    from cargobay.machines.service import MachineService

__all__ = ["app_logs", "deploy_app", "start_recorded_apps"]


def _collect_runner(events_for: Any) -> deploy.Runner:
    async def run(argv: list[str]) -> tuple[int, str]:
        out = b""
        code = -1
        async for event in await events_for(ExecRequest(argv=argv, timeout=60)):
            if isinstance(event, ExecOutput):
                out += event.data
            elif isinstance(event, ExecExit):
                code = event.exit_code if event.exit_code is not None else -1
        return code, out.decode(errors="replace")

    return run


def service_runner(service: MachineService, name: str) -> deploy.Runner:
    async def events(request: ExecRequest) -> Any:
        return await service.exec(name, request)

    return _collect_runner(events)


def agent_runner(agent: AgentClientLike) -> deploy.Runner:
    async def events(request: ExecRequest) -> Any:
        return exec_events(agent, request)

    return _collect_runner(events)


async def deploy_app(
    service: MachineService, name: str, path: str, command: str | None, restart: bool
) -> dict[str, Any]:
    """Copy the application at host ``path`` into running machine ``name`` and run it."""
    if not path or not Path(path).is_absolute():
        raise InvalidInput(f"bad application path {path!r}: give an absolute host path")
    vm = service.get_machine(name)
    workdir = Path(tempfile.mkdtemp(prefix="deploy-", dir=service.machine_dir(vm)))
    try:
        app = await asyncio.to_thread(deploy.load_app, Path(path), command, workdir)
        data = await asyncio.to_thread(deploy.pack, app.root)
        if len(data) > MAX_FILE_BYTES:
            raise InvalidInput(
                f"application {app.name!r} is {len(data) >> 20} MiB; deploy takes up to "
                f"{MAX_FILE_BYTES >> 20} MiB (copy larger data with `cargobay vm data push`)"
            )
        run = service_runner(service, name)
        if await deploy.is_running(run, app.name):
            if not restart:
                raise Conflict(
                    f"application {app.name!r} is running in {name!r}; "
                    "deploy with --restart to replace it"
                )
            await deploy.stop_app(run, app.name)
        upload = f"{deploy.APPS_DIR}/.{app.name}.upload.tar"
        await service.write_file(name, upload, data, mkdirs=True)
        await deploy.install(run, app.name, upload)
        await deploy.start_app(run, app.name, app.command, restart=restart)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    vm = service.get_machine(name)
    apps = {**vm.config.apps, app.name: app.command}
    service.store.save_machine(
        vm.model_copy(update={"config": vm.config.model_copy(update={"apps": apps})})
    )
    return {
        "machine": name,
        "app": app.name,
        "command": app.command,
        "guest_dir": f"{deploy.APPS_DIR}/{app.name}",
        "log": deploy.app_log(app.name),
        "bytes": len(data),
    }


async def start_recorded_apps(agent: AgentClientLike, vm: VMInstance) -> None:
    """Start the machine's deployed applications after a boot (not after a restore: their
    processes came back with the RAM)."""
    run = agent_runner(agent)
    for app, command in vm.config.apps.items():
        with contextlib.suppress(CargoBayError):
            await deploy.start_app(run, app, command, restart=False)


async def app_logs(
    service: MachineService, vm: VMInstance, tail: int | None, follow: bool
) -> AsyncIterator[str]:
    """The applications' logs, by ``tail`` in the guest (``-F`` with ``follow``)."""
    if not vm.config.apps or not service.agent_ready(service.get_machine(vm.name)):
        return
    argv = deploy.tail_command(sorted(vm.config.apps), tail, follow)
    try:
        events = await service.exec(vm.name, ExecRequest(argv=argv))
        async for event in events:
            if isinstance(event, ExecOutput) and event.stream == "stdout":
                yield event.data.decode(errors="replace")
    except CargoBayError:
        return  # the machine stopped while following
