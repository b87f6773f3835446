"""What the machines service needs from its collaborators, and the exec events it yields.

The service is given an image source and an agent connector rather than importing
concrete ones, so tests (and other daemons) pass the real components they want:

- ``ImageSource``: ``get(name)`` (the manifest; ``NotFound`` when the image is not built)
  and ``path(name)`` (its directory), as ``cargobay.images.store.ImageStore`` has them;
- ``AgentConnector.wait_ready(address, timeout)`` (retries until the guest agent answers:
  used while a VM boots) and ``connect(address, timeout)`` (one attempt: used to reach
  the agent of a running VM, e.g. after the daemon restarted).  Both return a client
  with ``exec_stream``, ``shutdown`` and ``close``.

Exec output reaches the daemon as ``ExecStarted``, ``ExecOutput`` ... ``ExecExit``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from cargobay.images.manifest import ImageManifest

__all__ = [
    "AgentClientLike",
    "AgentConnector",
    "AgentPool",
    "ExecEvent",
    "ExecExit",
    "ExecOutput",
    "ExecProcessLike",
    "ExecRequest",
    "ExecStarted",
    "GuestAgentConnector",
    "ImageSource",
    "exec_events",
]


class ImageSource(Protocol):
    """The part of ``cargobay.images.store.ImageStore`` the service uses."""

    def path(self, name: str) -> Path:
        """The image's directory (``InvalidInput`` for a bad name)."""
        ...

    def get(self, name: str) -> ImageManifest:
        """The manifest of a built image; ``NotFound`` if it is not built."""
        ...


class ExecProcessLike(Protocol):
    """What ``cargobay.guest.client.ExecProcess`` offers: its pid, output chunks (objects
    with ``stream`` and ``data``) by iteration, and ``wait()`` for the exit status."""

    pid: int

    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def wait(self) -> Any: ...


class AgentClientLike(Protocol):
    """The part of ``cargobay.guest.client.AgentClient`` the service uses."""

    @property
    def closed(self) -> bool: ...

    def exec_stream(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bool | bytes = False,
        tty: bool = False,
        timeout: float | None = None,
    ) -> AbstractAsyncContextManager[Any]: ...

    async def shutdown(self) -> None: ...

    async def connect_unix(self, path: str) -> Any:
        """A stream connected to the guest's Unix socket ``path``."""
        ...

    async def close(self) -> None: ...


class AgentConnector(Protocol):
    async def wait_ready(self, address: str, timeout: float) -> AgentClientLike: ...

    async def connect(self, address: str, timeout: float) -> AgentClientLike: ...


class GuestAgentConnector:
    """The real connector: ``cargobay.guest.client``."""

    async def wait_ready(self, address: str, timeout: float) -> AgentClientLike:
        from cargobay.guest.client import wait_ready

        return await wait_ready(address, timeout)

    async def connect(self, address: str, timeout: float) -> AgentClientLike:
        from cargobay.guest.client import AgentClient

        return await AgentClient.connect(address, timeout=timeout)


class AgentPool:
    """One agent connection per machine, made when first needed and shared by all of its
    requests (each is a yamux stream).  A connection found closed is replaced."""

    def __init__(self, connector: AgentConnector) -> None:
        self._connector = connector
        self._agents: dict[str, AgentClientLike] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def ready(self, vm_id: str) -> bool:
        agent = self._agents.get(vm_id)
        return agent is not None and not agent.closed

    def put(self, vm_id: str, agent: AgentClientLike) -> None:
        self._agents[vm_id] = agent

    async def get(self, vm_id: str, address: str, timeout: float) -> AgentClientLike:
        """The live connection, else a new one (the connector's errors propagate)."""
        async with self._locks.setdefault(vm_id, asyncio.Lock()):
            agent = self._agents.get(vm_id)
            if agent is not None and not agent.closed:
                return agent
            if agent is not None:
                await self.drop(vm_id, agent)
            agent = await self._connector.connect(address, timeout)
            self._agents[vm_id] = agent
            return agent

    async def drop(self, vm_id: str, agent: AgentClientLike | None = None) -> None:
        """Close the machine's connection (or ``agent``, if that is still the one)."""
        current = self._agents.get(vm_id)
        if agent is None or current is agent:
            self._agents.pop(vm_id, None)
        target = agent or current
        if target is not None:
            with contextlib.suppress(Exception):
                await target.close()

    async def close(self) -> None:
        for vm_id in list(self._agents):
            await self.drop(vm_id)


@dataclass(frozen=True, slots=True)
class ExecRequest:
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    stdin: bytes | None = None
    tty: bool = False
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class ExecStarted:
    pid: int
    type: Literal["started"] = "started"


@dataclass(frozen=True, slots=True)
class ExecOutput:
    stream: Literal["stdout", "stderr"]
    data: bytes


@dataclass(frozen=True, slots=True)
class ExecExit:
    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration: float
    type: Literal["exit"] = "exit"


ExecEvent = ExecStarted | ExecOutput | ExecExit


async def exec_events(agent: AgentClientLike, request: ExecRequest) -> AsyncIterator[ExecEvent]:
    """Run ``request`` through the agent client and translate its events.

    Closing this generator before the exit (a client that went away) leaves the agent's
    ``exec_stream`` block, which resets the stream: the agent then kills the process."""
    async with agent.exec_stream(
        list(request.argv),
        env=dict(request.env) or None,
        cwd=request.cwd,
        stdin=False if request.stdin is None else request.stdin,
        tty=request.tty,
        timeout=request.timeout,
    ) as proc:
        yield ExecStarted(pid=int(proc.pid))
        async for chunk in proc:
            yield ExecOutput("stderr" if chunk.stream == "stderr" else "stdout", bytes(chunk.data))
        status = await proc.wait()
        yield ExecExit(
            exit_code=status.exit_code,
            signal=status.signal,
            timed_out=bool(status.timed_out),
            duration=float(status.duration),
        )
