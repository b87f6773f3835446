"""A long-lived QMP session on a QEMU monitor socket, through qemu.qmp (QEMU's own library).

The ATP holds one ``QmpConnection`` per VM for a whole scenario: commands, events
(``wait_event``, ``events``), screendumps, keys.  qemu.qmp owns the protocol (greeting,
capabilities negotiation, ids) and its ``Runstate``; this wrapper adds timeouts on every
call, typed errors from the cargobay tree, and the few commands the scenarios use.

    async with await QmpConnection.connect("/run/cargobay/vm/ab12/qmp.sock") as qmp:
        assert await qmp.query_status() == "running"
        await qmp.screendump("/tmp/screen.png")
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError
from qemu.qmp.protocol import Runstate

from cargobay.errors import VMControlError

__all__ = ["QmpCommandError", "QmpCommands", "QmpConnection", "QmpError"]

DEFAULT_TIMEOUT = 10.0

_QMP_LOGGER = logging.getLogger("cargobay.vmcontrol.qmp.library")
"""qemu.qmp logs failed connects at ERROR; our callers get the error, so keep it quiet."""
_QMP_LOGGER.setLevel(logging.CRITICAL)


class QmpError(VMControlError):
    """The QMP session could not be opened or broke."""


class QmpCommandError(QmpError):
    """QEMU answered a command with an error object."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        self.command = command
        self.error_class = error_class
        self.desc = desc
        super().__init__(f"QMP {command}: {error_class}: {desc}")


class QmpCommands:
    """The QMP commands built on one ``execute``: ``QmpConnection`` runs them over
    QEMU's socket, ``libvirt_channels.LibvirtQmp`` through ``qemuMonitorCommand``."""

    async def execute(
        self, command: str, arguments: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        raise NotImplementedError

    # -- commands the scenarios use ------------------------------------------------------

    async def query_status(self) -> str:
        result = await self.execute("query-status")
        return str(result["status"])

    async def stop(self) -> None:
        await self.execute("stop")

    async def cont(self) -> None:
        await self.execute("cont")

    async def system_powerdown(self) -> None:
        await self.execute("system_powerdown")

    async def human(self, command_line: str) -> str:
        """An HMP command through ``human-monitor-command`` (for what QMP lacks)."""
        return str(await self.execute("human-monitor-command", {"command-line": command_line}))

    async def send_keys(self, keys: Sequence[str], *, hold_time_ms: int | None = None) -> None:
        """Press ``keys`` together (QKeyCode names: ``["ctrl", "alt", "delete"]``)."""
        args: dict[str, Any] = {"keys": [{"type": "qcode", "data": key} for key in keys]}
        if hold_time_ms is not None:
            args["hold-time"] = hold_time_ms
        await self.execute("send-key", args)


class QmpConnection(QmpCommands):
    def __init__(self, client: QMPClient, address: str, *, timeout: float) -> None:
        self._client = client
        self.address = address
        self.timeout = timeout

    @classmethod
    async def connect(
        cls, socket_path: str | Path, *, timeout: float = DEFAULT_TIMEOUT, name: str = "cargobay"
    ) -> QmpConnection:
        """Open a session (greeting and ``qmp_capabilities`` are qemu.qmp's)."""
        address = str(socket_path)
        client = QMPClient(name)
        client.logger = _QMP_LOGGER
        try:
            async with asyncio.timeout(timeout):
                await client.connect(address)
        except TimeoutError as err:
            await client.disconnect()
            raise QmpError(f"QMP on {address} did not answer within {timeout} s") from err
        except (QMPError, OSError, EOFError) as err:
            await client.disconnect()
            raise QmpError(
                f"cannot open a QMP session on {address}: {err} (is QEMU running with "
                "-qmp unix:PATH,server=on?)"
            ) from err
        return cls(client, address, timeout=timeout)

    @property
    def runstate(self) -> Runstate:
        """qemu.qmp's session state (IDLE, CONNECTING, RUNNING, DISCONNECTING)."""
        return self._client.runstate

    @property
    def greeting(self) -> dict[str, Any]:
        greeting = self._client.greeting
        return dict(greeting._raw) if greeting is not None else {}

    async def execute(
        self, command: str, arguments: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Run one QMP command; its ``return`` value."""
        if self._client.runstate is not Runstate.RUNNING:
            raise QmpError(
                f"QMP session on {self.address} is {self._client.runstate.name.lower()}; "
                "connect again"
            )
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                return await self._client.execute(command, arguments)
        except ExecuteError as err:
            error = err.error.error
            raise QmpCommandError(command, error.class_, error.desc) from err
        except TimeoutError as err:
            raise QmpError(f"QMP {command}: no answer within {limit} s") from err
        except (QMPError, OSError, EOFError) as err:
            raise QmpError(f"QMP {command} on {self.address} failed: {err}") from err

    async def screendump(self, path: str | Path, *, device: str | None = None) -> Path:
        """Save the display as PNG (QEMU >= 7.1 writes PNG itself).  ``path`` must be
        absolute: QEMU resolves a relative one against its own working directory."""
        target = Path(path)
        if not target.is_absolute():
            raise ValueError(f"screendump needs an absolute path, got {path!s}")
        args: dict[str, Any] = {"filename": str(target), "format": "png"}
        if device is not None:
            args["device"] = device
        await self.execute("screendump", args)
        return target

    # -- events --------------------------------------------------------------------------

    async def wait_event(self, name: str, *, timeout: float | None = None) -> dict[str, Any]:
        """The next event called ``name`` (listening starts now)."""
        limit = self.timeout if timeout is None else timeout
        listener = EventListener(name)
        with self._client.listen(listener):
            try:
                async with asyncio.timeout(limit):
                    event = await listener.get()
            except TimeoutError as err:
                raise QmpError(f"no QMP event {name} within {limit} s") from err
        return dict(event)

    async def events(self, names: Sequence[str] = ()) -> AsyncIterator[dict[str, Any]]:
        """Every event (or those named) from now on, until the session ends."""
        listener = EventListener(list(names) or None)
        with self._client.listen(listener):
            async for event in listener:
                yield dict(event)

    async def close(self) -> None:
        await self._client.disconnect()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
