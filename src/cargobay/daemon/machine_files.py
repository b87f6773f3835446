"""The daemon's endpoints for files inside a running machine (the sandbox SDK's ``files``).

    GET  /v1/machines/{name}/files?path=/etc/hostname        -> the bytes (octet-stream)
    PUT  /v1/machines/{name}/files?path=/tmp/x[&mode=420][&mkdirs=true]
                                                             <- the bytes; -> {path, written}
    GET  /v1/machines/{name}/files/list?path=/tmp            -> [FileEntry, ...]

Handlers check what they can see (an absolute path, the body's size against the limit of
one transfer, ``guest_files.MAX_FILE_BYTES``; a body over it is refused with 413 before it
is read to the end) and call the machines service, which reaches the guest agent.  A
write is atomic in the guest: the old file stays whole until the new one is complete.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from cargobay.errors import InvalidInput
from cargobay.machines.guest_files import (
    MAX_FILE_BYTES,
    FileEntry,
    check_guest_path,
    too_large,
)
from cargobay.machines.service import MachineService

__all__ = ["WriteResult", "router"]

router = APIRouter(prefix="/v1/machines/{name}/files", tags=["machines"])

OCTET = "application/octet-stream"
GuestPath = Annotated[
    str, Query(min_length=1, description="Absolute path in the guest, like /root/notes.txt.")
]


class WriteResult(BaseModel):
    path: str
    written: int


def _service(request: Request) -> MachineService:
    service: MachineService = request.app.state.daemon.service
    return service


@router.get(
    "",
    response_class=Response,
    responses={200: {"content": {OCTET: {}}, "description": "The file's contents"}},
)
async def read_file(name: str, path: GuestPath, request: Request) -> Response:
    """Read a file in a running machine (at most 64 MiB)."""
    data = await _service(request).read_file(name, check_guest_path(path))
    return Response(content=data, media_type=OCTET)


@router.put(
    "",
    response_model=WriteResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {OCTET: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def write_file(
    name: str,
    path: GuestPath,
    request: Request,
    mode: Annotated[
        int | None,
        Query(ge=0, le=0o7777, description="Permission bits (420 = 0o644); default: kept."),
    ] = None,
    mkdirs: Annotated[bool, Query(description="Create missing parent directories.")] = False,
) -> WriteResult:
    """Write (create or replace, atomically) a file in a running machine (at most 64 MiB)."""
    check_guest_path(path)
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise InvalidInput(f"bad Content-Length {length!r}")
        if int(length) > MAX_FILE_BYTES:
            raise too_large(path, int(length), MAX_FILE_BYTES)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FILE_BYTES:
            raise too_large(path, limit=MAX_FILE_BYTES)
    written = await _service(request).write_file(name, path, bytes(body), mode=mode, mkdirs=mkdirs)
    return WriteResult(path=path, written=written)


@router.get("/list", response_model=list[FileEntry])
async def list_files(name: str, path: GuestPath, request: Request) -> list[FileEntry]:
    """List a directory in a running machine (entries by name; symlinks not followed)."""
    return await _service(request).list_files(name, check_guest_path(path))
