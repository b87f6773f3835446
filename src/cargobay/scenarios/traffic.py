"""Protocol traffic of a scenario run: every QMP and QGA request, reply, error and event.

The runner tags each record with the step that caused it, so a failed step's report can
carry exactly the exchanges of that step.  The recording happens in thin subclasses of
the vmcontrol clients (``execute`` is the one path every command takes), so the
recorded bytes are what the clients really sent and got.  Large values (file contents
in base64) are cut to ``MAX_VALUE_CHARS`` to keep reports readable.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from cargobay.vmcontrol.libvirt_channels import LibvirtQga, LibvirtQmp
from cargobay.vmcontrol.qga import QgaClient
from cargobay.vmcontrol.qmp import QmpConnection

__all__ = [
    "RecordingLibvirtQga",
    "RecordingLibvirtQmp",
    "RecordingQga",
    "RecordingQmp",
    "TrafficLog",
    "TrafficRecord",
]

MAX_VALUE_CHARS = 2048


def _clip(value: Any) -> Any:
    """``value`` made JSON-safe, with long strings cut."""
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            return value[:MAX_VALUE_CHARS] + f"...[{len(value) - MAX_VALUE_CHARS} more chars]"
        return value
    if isinstance(value, dict):
        return {str(k): _clip(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clip(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clip(repr(value))


@dataclass(frozen=True, slots=True)
class TrafficRecord:
    time: float
    """Seconds since the log started."""
    step: int | None
    """Index of the step running when it happened (None: boot or teardown)."""
    vm: str
    channel: str
    """``qmp`` or ``qga``."""
    kind: str
    """``request``, ``reply``, ``error`` or ``event``."""
    data: Any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrafficLog:
    def __init__(self) -> None:
        self._start = time.monotonic()
        self.records: list[TrafficRecord] = []
        self.step: int | None = None

    def add(self, vm: str, channel: str, kind: str, data: Any) -> None:
        self.records.append(
            TrafficRecord(
                round(time.monotonic() - self._start, 6), self.step, vm, channel, kind, _clip(data)
            )
        )

    def for_step(self, step: int) -> list[TrafficRecord]:
        return [r for r in self.records if r.step == step]

    def dumps(self, records: list[TrafficRecord] | None = None) -> str:
        chosen = self.records if records is None else records
        return json.dumps([r.to_dict() for r in chosen], indent=1)


class _QmpRecorder:
    """Mixin: writes every QMP command, its outcome and awaited events to a ``TrafficLog``
    (put before the client class in the bases)."""

    traffic: TrafficLog | None = None
    vm_name: str = ""

    def attach(self, traffic: TrafficLog, vm_name: str) -> None:
        self.traffic, self.vm_name = traffic, vm_name

    async def execute(
        self, command: str, arguments: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        log = self.traffic
        if log is not None:
            log.add(self.vm_name, "qmp", "request", {"execute": command, "arguments": arguments})
        try:
            result = await super().execute(command, arguments, timeout=timeout)  # type: ignore[misc]
        except Exception as err:
            if log is not None:
                log.add(self.vm_name, "qmp", "error", str(err))
            raise
        if log is not None:
            log.add(self.vm_name, "qmp", "reply", {"return": result})
        return result

    async def wait_event(self, name: str, *, timeout: float | None = None) -> dict[str, Any]:
        event: dict[str, Any] = await super().wait_event(name, timeout=timeout)  # type: ignore[misc]
        if self.traffic is not None:
            self.traffic.add(self.vm_name, "qmp", "event", event)
        return event


class _QgaRecorder:
    """Mixin: writes every QGA command and its outcome to a ``TrafficLog``."""

    traffic: TrafficLog | None = None
    vm_name: str = ""

    def attach(self, traffic: TrafficLog, vm_name: str) -> None:
        self.traffic, self.vm_name = traffic, vm_name

    async def execute(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        expect_reply: bool = True,
    ) -> Any:
        log = self.traffic
        if log is not None:
            log.add(self.vm_name, "qga", "request", {"execute": command, "arguments": arguments})
        try:
            result = await super().execute(  # type: ignore[misc]
                command, arguments, timeout=timeout, expect_reply=expect_reply
            )
        except Exception as err:
            if log is not None:
                log.add(self.vm_name, "qga", "error", str(err))
            raise
        if log is not None:
            log.add(self.vm_name, "qga", "reply", {"return": result})
        return result


class RecordingQmp(_QmpRecorder, QmpConnection):
    """A ``QmpConnection`` (QEMU's socket) that records its traffic."""


class RecordingQga(_QgaRecorder, QgaClient):
    """A ``QgaClient`` (the agent socket) that records its traffic."""


class RecordingLibvirtQmp(_QmpRecorder, LibvirtQmp):
    """QMP through libvirt (``qemuMonitorCommand``), recorded."""


class RecordingLibvirtQga(_QgaRecorder, LibvirtQga):
    """QGA through libvirt (``qemuAgentCommand``), recorded."""
