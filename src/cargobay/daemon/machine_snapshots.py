"""The daemon's side of snapshots, warm starts and forks (``machines.snapshot_service``).

    GET    /v1/machines/{name}/snapshots          -> [SnapshotInfo]
    POST   /v1/machines/{name}/snapshots          <- {"tag": "t1"} (optional) -> SnapshotInfo
    DELETE /v1/machines/{name}/snapshots/{tag}    -> 204
    POST   /v1/machines/{name}/fork               <- {"count": 3, "snapshot": "t1"}
                                                  -> [Machine] (the clones, running)
    POST   /v1/machines/{name}/start              (app.py) <- {"snapshot": "t1"}: warm start

A fork without ``snapshot`` takes a new one first.  Forks are all or nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from cargobay.daemon.schemas import Machine
from cargobay.machines.snapshot_service import MAX_FORK, SnapshotService
from cargobay.machines.snapshots import SnapshotInfo

__all__ = ["ForkRequest", "SnapshotRequest", "router"]

router = APIRouter(prefix="/v1/machines/{name}", tags=["machines"])


class SnapshotRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: str | None = Field(default=None, description="Default: snap-<UTC time>.")


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=1, ge=1, le=MAX_FORK)
    snapshot: str | None = Field(default=None, description="Default: take a new snapshot.")
    boot_timeout: float = 120.0


def _snapshots(request: Request) -> SnapshotService:
    snapshots: SnapshotService = request.app.state.snapshots
    return snapshots


@router.get("/snapshots", response_model=list[SnapshotInfo])
async def list_snapshots(name: str, request: Request) -> list[SnapshotInfo]:
    return _snapshots(request).list_snapshots(name)


@router.post("/snapshots", status_code=201, response_model=SnapshotInfo)
async def take_snapshot(
    name: str, request: Request, body: SnapshotRequest | None = None
) -> SnapshotInfo:
    """Save a running machine's state and data disk; the machine keeps running."""
    return await _snapshots(request).snapshot(name, (body or SnapshotRequest()).tag)


@router.delete("/snapshots/{tag}", status_code=204)
async def delete_snapshot(name: str, tag: str, request: Request) -> Response:
    _snapshots(request).delete_snapshot(name, tag)
    return Response(status_code=204)


@router.post("/fork", status_code=201, response_model=list[Machine])
async def fork_machine(name: str, body: ForkRequest, request: Request) -> list[Machine]:
    """Start ``count`` clones from a snapshot's shared-memory template."""
    snapshots = _snapshots(request)
    clones = await snapshots.fork(name, body.count, body.snapshot, body.boot_timeout)
    machines = snapshots.machines
    return [Machine(**vm.model_dump(), agent_ready=machines.agent_ready(vm)) for vm in clones]
