"""The daemon's side of ``deploy`` (``machines.deploy`` / ``machines.app_service``).

    POST /v1/machines/{name}/deploy  <- {"path": "/abs/host/dir-or.tar.gz",
                                         "command": "...", "restart": false}
                                     -> {machine, app, command, guest_dir, log, bytes}

The path is read by the daemon (it runs on the same host as its clients).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from cargobay.machines.app_service import deploy_app
from cargobay.machines.service import MachineService

__all__ = ["DeployRequest", "router"]

router = APIRouter(prefix="/v1/machines/{name}", tags=["machines"])


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Absolute host path: a directory or a .tar/.tar.gz.")
    command: str | None = Field(
        default=None, description="Default: command: in the application's cargobay-app.yaml."
    )
    restart: bool = Field(default=False, description="Replace a running application.")


class Deployed(BaseModel):
    machine: str
    app: str
    command: str
    guest_dir: str
    log: str
    bytes: int


@router.post("/deploy", response_model=Deployed)
async def deploy(name: str, body: DeployRequest, request: Request) -> Any:
    """Copy an application into a running machine and (re)start it."""
    service: MachineService = request.app.state.daemon.service
    return await deploy_app(service, name, body.path, body.command, body.restart)
