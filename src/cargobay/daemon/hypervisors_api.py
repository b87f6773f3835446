"""``GET /v1/hypervisors``: every backend CargoBay knows, whether it is offered on this
host, and if not, why (a backend that cannot run is not registered: a create with it is
refused naming the available ones)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from cargobay.hypervisors import available, register
from cargobay.hypervisors.firecracker import FirecrackerHypervisor, availability
from cargobay.paths import Paths

__all__ = ["BackendInfo", "register_optional_backends", "router"]

router = APIRouter(tags=["daemon"])


class BackendInfo(BaseModel):
    name: str
    available: bool
    reason: str


def register_optional_backends(paths: Paths) -> list[BackendInfo]:
    """Register the backends that can run here; describe every known one."""
    infos = [BackendInfo(name="qemu", available="qemu" in available(), reason="QEMU (KVM or TCG)")]
    fc = availability(paths.cache)
    if fc.ok and fc.binary is not None:
        binary = fc.binary
        register("firecracker", lambda: FirecrackerHypervisor(binary))
    infos.append(BackendInfo(name="firecracker", available=fc.ok, reason=fc.reason))
    return infos


@router.get("/v1/hypervisors", response_model=list[BackendInfo])
async def hypervisors(request: Request) -> list[BackendInfo]:
    infos: list[BackendInfo] = request.app.state.backends
    return infos
