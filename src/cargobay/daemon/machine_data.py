"""The daemon's endpoint for ``data NAME push|pull|sync`` (``machines.data_transfer``).

    POST /v1/machines/{name}/data   {op, host_path, guest_path, delete, reverse}
        -> NDJSON: plan, file..., done   (an error after the first event: an error event)
    POST   /v1/machines/{name}/data/attachments  {kind: image|volume, guest_path,
                                                  host_path (image), size (volume)}
    DELETE /v1/machines/{name}/data/attachments?guest_path=...
        -> {name, attachments}   (``machines.attachments``: from the next start)

The host path is a path on the daemon's host (the daemon listens on a local Unix socket,
so it is the caller's host); it must be absolute.  Errors found before anything moves (a
bad path, a member escaping its root, a stopped machine) are plain HTTP errors.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from cargobay.errors import InvalidInput
from cargobay.machines.attachments import Attachment, attach_to, detach_from
from cargobay.machines.data_transfer import transfer
from cargobay.machines.models import parse_size_mb
from cargobay.machines.service import MachineService

__all__ = ["AttachRequest", "Attachments", "DataRequest", "router"]

router = APIRouter(prefix="/v1/machines/{name}/data", tags=["machines"])
NDJSON = "application/x-ndjson"


class DataRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: Literal["push", "pull", "sync"]
    host_path: str = Field(min_length=1, description="Absolute path on the host.")
    guest_path: str = Field(min_length=1, description="Absolute path in the guest.")
    delete: bool = Field(default=False, description="sync: remove what the source lacks.")
    reverse: bool = Field(default=False, description="sync from the guest to the host.")


@router.post(
    "",
    response_class=StreamingResponse,
    responses={200: {"content": {NDJSON: {}}, "description": "NDJSON transfer progress"}},
)
async def transfer_data(name: str, body: DataRequest, request: Request) -> StreamingResponse:
    """Copy files between the host and a running machine through its guest agent."""
    from cargobay.daemon.app import _prefetched

    if body.delete and body.op != "sync":
        raise InvalidInput("--delete goes with sync only")
    service: MachineService = request.app.state.daemon.service
    service.get_machine(name)
    pull = body.op == "pull" or (body.op == "sync" and body.reverse)
    events = transfer(
        service,
        name,
        body.host_path,
        body.guest_path,
        "pull" if pull else "push",
        only_changed=body.op == "sync",
        delete=body.delete,
    )
    return await _prefetched(events)


class AttachRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["image", "volume"]
    guest_path: str = Field(min_length=1, description="Where the guest mounts it.")
    host_path: str | None = Field(
        default=None, description="image: the host folder the ext4 image is built from."
    )
    size: str | int | None = Field(default=None, description="volume: 256MB, 1GB, or MiB.")


class Attachments(BaseModel):
    name: str
    attachments: list[Attachment]


@router.post("/attachments", response_model=Attachments)
async def attach(name: str, body: AttachRequest, request: Request) -> Attachments:
    """Give a machine a read-only ext4 image built from a host folder, or an empty scratch
    volume; attached and mounted at its next start (a volume is new at every start)."""
    service: MachineService = request.app.state.daemon.service
    size_mb = parse_size_mb(body.size, "size") if body.size is not None else None
    vm = await attach_to(service, name, body.kind, body.guest_path, body.host_path, size_mb)
    return Attachments(name=vm.name, attachments=list(vm.config.attachments))


@router.delete("/attachments", response_model=Attachments)
async def detach(name: str, guest_path: str, request: Request) -> Attachments:
    """Drop the image or volume mounted at ``guest_path`` (from the next start)."""
    service: MachineService = request.app.state.daemon.service
    vm = await detach_from(service, name, guest_path)
    return Attachments(name=vm.name, attachments=list(vm.config.attachments))
