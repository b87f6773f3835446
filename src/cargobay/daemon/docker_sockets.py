"""The daemon's Docker socket endpoints (``/v1/docker-sockets``): start, list, stop.

Handlers parse and validate, then call ``cargobay.dockersock.DockerSocketService``,
which lives on the app state (made on first use) and is closed with the daemon: every
socket it listens on is removed then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response

from cargobay.dockersock import DockerSocketCreate, DockerSocketInfo, DockerSocketService

__all__ = ["docker_socket_service", "router"]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        service: DockerSocketService | None = getattr(app.state, "docker_sockets", None)
        if service is not None:
            app.state.docker_sockets = None
            await service.close()


router = APIRouter(prefix="/v1/docker-sockets", tags=["docker-sockets"], lifespan=_lifespan)


def docker_socket_service(request: Request) -> DockerSocketService:
    service: DockerSocketService | None = getattr(request.app.state, "docker_sockets", None)
    if service is None:
        state = request.app.state.daemon
        service = DockerSocketService(state.service, state.paths.runtime)
        request.app.state.docker_sockets = service
    return service


@router.get("", response_model=list[DockerSocketInfo])
async def list_docker_sockets(request: Request) -> list[DockerSocketInfo]:
    return docker_socket_service(request).list_sockets()


@router.post("", status_code=201, response_model=DockerSocketInfo)
async def create_docker_socket(request: Request, body: DockerSocketCreate) -> DockerSocketInfo:
    """Listen on a Unix socket that forwards the Docker Engine API to a machine's dockerd
    (``vm``) or to the host's engine (``host_engine``).  With ``vm``, waits up to ``wait``
    seconds for dockerd in the machine to answer."""
    return await docker_socket_service(request).start(body)


@router.get("/{ident}", response_model=DockerSocketInfo)
async def get_docker_socket(request: Request, ident: str) -> DockerSocketInfo:
    return docker_socket_service(request).get(ident)


@router.delete("/{ident}", status_code=204)
async def delete_docker_socket(request: Request, ident: str) -> Response:
    """Stop forwarding: open connections are cut and the socket file is removed."""
    await docker_socket_service(request).stop(ident)
    return Response(status_code=204)
