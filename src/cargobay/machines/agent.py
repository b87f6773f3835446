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

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from cargobay.images.manifest import ImageManifest

__all__ = [
    "AgentClientLike",
    "AgentConnector",
    "ExecEvent",
    "ExecExit",
    "ExecOutput",
    "ExecRequest",
    "ExecStarted",
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


class AgentClientLike(Protocol):
    def exec_stream(self, argv: list[str], **kwargs: Any) -> AsyncIterator[Any]: ...

    async def shutdown(self) -> Any: ...

    async def close(self) -> None: ...


class AgentConnector(Protocol):
    async def wait_ready(self, address: str, timeout: float) -> AgentClientLike: ...

    async def connect(self, address: str, timeout: float) -> AgentClientLike: ...


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
    """Run ``request`` through the agent client and translate its events."""
    stream = agent.exec_stream(
        list(request.argv),
        env=dict(request.env) or None,
        cwd=request.cwd,
        stdin=request.stdin,
        tty=request.tty,
        timeout=request.timeout,
    )
    async for event in stream:
        yield _translate(event)


def _translate(event: Any) -> ExecEvent:
    kind = _field(event, "type", None) or _field(event, "kind", None)
    if kind is None:
        kind = type(event).__name__.lower()
    kind = str(kind).lower()
    if "start" in kind:
        return ExecStarted(pid=int(_field(event, "pid")))
    if "exit" in kind:
        return ExecExit(
            exit_code=_field(event, "exit_code", None),
            signal=_field(event, "signal", None),
            timed_out=bool(_field(event, "timed_out", False)),
            duration=float(_field(event, "duration", 0.0)),
        )
    if "err" in kind:
        return ExecOutput("stderr", bytes(_field(event, "data")))
    if "out" in kind:
        return ExecOutput("stdout", bytes(_field(event, "data")))
    raise ValueError(f"unknown exec event {event!r}")


def _field(event: Any, name: str, *default: Any) -> Any:
    if isinstance(event, Mapping):
        return event[name] if not default else event.get(name, default[0])
    return getattr(event, name, *default)
