"""The Firecracker backend's HTTP client over a real Unix socket, and its verdict here.

Firecracker itself cannot run on this project's machines (no binary in Debian, and KVM
does not boot guests here: see FIELD-NOTES), so the peer is a stand-in that says so in its
name: a real HTTP server on a Unix socket that checks every request against Firecracker's
published swagger and answers as Firecracker documents (204, or 400 with a
``fault_message``).  It checks our requests and our handling of replies; it says nothing
about Firecracker's behaviour beyond its API description."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio
import uvicorn

from cargobay.errors import HypervisorError
from cargobay.hypervisors import firecracker_api as api
from cargobay.hypervisors.firecracker import FirecrackerApi, availability
from tests.unit.cargobay.hypervisors.test_firecracker_api import SPEC, validate

pytestmark = [pytest.mark.asyncio(loop_scope="module")]


class SwaggerCheckingStandInNoFirecrackerHere:
    """An ASGI app: validates each request against the swagger, records it, and answers
    204, or 400 with a fault for a body that fails validation or a ``/boot-source`` whose
    kernel path is ``/missing`` (as Firecracker does for a kernel it cannot open)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any] | None]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw) if raw else None
        request = api.ApiRequest(scope["method"], scope["path"], body)
        self.calls.append((scope["method"], scope["path"], body))
        status, reply = 204, b""
        try:
            validate(request)
        except (jsonschema.ValidationError, AssertionError) as err:
            status, reply = 400, json.dumps({"fault_message": f"bad request: {err}"}).encode()
        if body and body.get("kernel_image_path") == "/missing":
            status = 400
            reply = json.dumps({"fault_message": "Cannot open kernel image"}).encode()
        if scope["path"] == "/" and status == 204:
            status, reply = 200, json.dumps({"id": "x", "state": "Running"}).encode()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": reply})


@pytest_asyncio.fixture(loop_scope="module")
async def stand_in() -> AsyncIterator[tuple[SwaggerCheckingStandInNoFirecrackerHere, str]]:
    app = SwaggerCheckingStandInNoFirecrackerHere()
    sock = Path(tempfile.mkdtemp(prefix="cb-fc-")) / "fc.sock"
    server = uvicorn.Server(uvicorn.Config(app, uds=str(sock), log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # uvicorn offers no event for "listening"
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield app, str(sock)
    finally:
        server.should_exit = True
        await task
        sock.unlink(missing_ok=True)
        os.rmdir(sock.parent)


async def test_boot_sequence_over_the_socket(
    stand_in: tuple[SwaggerCheckingStandInNoFirecrackerHere, str],
) -> None:
    app, sock = stand_in
    client = FirecrackerApi(sock)
    try:
        for request in api.boot_requests(SPEC, vsock_uds="/run/v.sock", log_path="/l"):
            assert await client.send(request) is None
        assert await client.send(api.describe()) == {"id": "x", "state": "Running"}
    finally:
        await client.close()
    assert [c[:2] for c in app.calls][:3] == [
        ("PUT", "/logger"),
        ("PUT", "/machine-config"),
        ("PUT", "/boot-source"),
    ]
    assert app.calls[-2] == ("PUT", "/actions", {"action_type": "InstanceStart"})


async def test_faults_are_raised_with_firecrackers_message(
    stand_in: tuple[SwaggerCheckingStandInNoFirecrackerHere, str],
) -> None:
    _, sock = stand_in
    client = FirecrackerApi(sock)
    try:
        with pytest.raises(HypervisorError, match="HTTP 400\\): Cannot open kernel image"):
            await client.send(api.boot_source("/missing", "console=ttyS0"))
        with pytest.raises(HypervisorError, match="bad request"):
            await client.send(api.ApiRequest("PUT", "/machine-config", {"vcpu_count": 1}))
    finally:
        await client.close()
    with pytest.raises(HypervisorError, match="failed"):
        await FirecrackerApi(sock + ".absent").send(api.describe())


async def test_not_offered_on_this_machine(tmp_path: Path) -> None:
    """No firecracker binary here; the reason says where to get it."""
    verdict = availability(tmp_path)
    if os.environ.get("CARGOBAY_FIRECRACKER") is None and verdict.binary is None:
        assert not verdict.ok
        assert "github.com/firecracker-microvm/firecracker/releases" in verdict.reason
    else:  # a host with firecracker: then it must still refuse without a proven KVM
        assert verdict.ok or "KVM" in verdict.reason
