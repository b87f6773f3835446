"""The daemon's side of templates, ``config.yaml`` defaults and per-machine settings.

    POST  /v1/machines                      (app.py) -> ``new_machine`` fills what the
                                            request leaves out: the template's values,
                                            then config.yaml's ``defaults``
    GET   /v1/machines/{name}/config        -> {name, settings}
    PATCH /v1/machines/{name}/config        <- {"set": {"memory": "768MB", ...}}
                                            -> {name, settings, changed, restart_required}

config.yaml is read on every create, so an edit (``cargobay config set``) applies to the
next machine without restarting the daemon; an invalid file is a 400 naming the key.  A
PATCH checks every value before any is applied (``machines.settings.plan_changes``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from cargobay.config import load_config
from cargobay.daemon.schemas import CreateMachineRequest
from cargobay.machines.models import VMInstance
from cargobay.machines.network_service import with_network
from cargobay.machines.restart import check_restart
from cargobay.machines.service import MachineService
from cargobay.machines.settings import machine_settings, plan_changes
from cargobay.machines.shares import with_storage
from cargobay.machines.templates import resolve_template
from cargobay.paths import Paths

__all__ = ["MachineSettings", "SetMachineConfig", "new_machine", "router"]

router = APIRouter(prefix="/v1/machines/{name}/config", tags=["machines"])


class SetMachineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    set: dict[str, Any] = Field(
        min_length=1,
        description="Settings to change: cpus, memory, disk (grow only), ports, env.",
    )


class MachineSettings(BaseModel):
    name: str
    settings: dict[str, Any]
    changed: list[str] = Field(default_factory=list)
    restart_required: list[str] = Field(
        default_factory=list,
        description="Changed settings that apply only after the machine is restarted.",
    )


def new_machine(service: MachineService, paths: Paths, body: CreateMachineRequest) -> VMInstance:
    """The machine a create request describes, with template and config.yaml defaults."""
    defaults = load_config(paths.config_file).defaults
    image, cpus, memory, disk = body.image, body.cpus, body.memory, body.disk
    ports, env = body.ports, body.env
    template = None
    if body.template is not None:
        t = resolve_template(body.template)
        template = t.name
        image = image if image is not None else t.image
        cpus = cpus if cpus is not None else t.profile.cpus
        memory = memory if memory is not None else f"{t.profile.memory_mib}MB"
        disk = disk if disk is not None else f"{t.profile.disk_mib}MB"
        ports = ports if ports is not None else list(t.ports)
        env = env if env is not None else t.env
    vm = service.validate(
        body.name,
        image=image or "default",
        cpus=cpus if cpus is not None else defaults.cpus,
        memory=memory if memory is not None else defaults.memory,
        disk=disk if disk is not None else defaults.disk,
        ports=ports or (),
        template=template,
    )
    if env:
        vm = vm.model_copy(update={"config": plan_changes(vm, {"env": env}, ()).config})
    if body.network is not None:
        vm = with_network(vm, body.network)
    if body.restart is not None:
        vm = vm.model_copy(
            update={"config": vm.config.model_copy(update={"restart": check_restart(body.restart)})}
        )
    return with_storage(vm, body.shares or (), body.cache_strategy or defaults.cache_strategy)


def _service(request: Request) -> MachineService:
    service: MachineService = request.app.state.daemon.service
    return service


@router.get("", response_model=MachineSettings)
async def get_config(name: str, request: Request) -> MachineSettings:
    """A machine's settings."""
    vm = _service(request).get_machine(name)
    return MachineSettings(name=vm.name, settings=machine_settings(vm))


@router.patch("", response_model=MachineSettings)
async def set_config(name: str, body: SetMachineConfig, request: Request) -> MachineSettings:
    """Change settings; nothing changes if one value is invalid (400 naming its key)."""
    vm, plan = await _service(request).configure(name, body.set)
    return MachineSettings(
        name=vm.name,
        settings=machine_settings(vm),
        changed=list(plan.changed),
        restart_required=list(plan.restart_required),
    )
