"""The daemon's endpoint for ``data NAME push|pull|sync`` (``machines.data_transfer``).

    POST /v1/machines/{name}/data   {op, host_path, guest_path, delete, reverse}
        -> NDJSON: plan, file..., done   (an error after the first event: an error event)

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
from cargobay.machines.data_transfer import transfer
from cargobay.machines.service import MachineService

__all__ = ["DataRequest", "router"]

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
