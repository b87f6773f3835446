"""An asyncio client for qemu-guest-agent over its channel (a virga address, usually the
host side of the VM's ``org.qemu.guest_agent.0`` virtio-serial port).

qemu.qmp cannot do this: QGA has no greeting and needs ``guest-sync-delimited``.  The
protocol logic is in ``qga_protocol``; this module moves bytes and enforces timeouts.
A command that times out leaves the channel unsynchronised; the next command syncs
first, so a late reply is never taken for the answer to a newer command.

    async with await QgaClient.connect("unix:/run/cargobay/vm/ab12/qga.sock") as qga:
        await qga.ping()
        result = await qga.run(["/bin/true"])
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from cargobay.errors import GuestError, GuestTimeout
from cargobay.vmcontrol.qga_protocol import QgaProtocol, QgaProtocolError, Reply, SyncState
from virga.connection import Connection, connect
from virga.errors import VirgaError

__all__ = ["QgaClient", "QgaCommandError", "QgaCommands", "QgaExecResult"]

_ids = itertools.count(int(time.time()) & 0x3FFFFFFF)


class QgaCommandError(GuestError):
    """qemu-ga answered with an error object."""

    def __init__(self, command: str, error: dict[str, Any]) -> None:
        self.command = command
        self.error_class = str(error.get("class", "GenericError"))
        self.desc = str(error.get("desc", error))
        super().__init__(f"qemu-ga {command}: {self.error_class}: {self.desc}")


@dataclass(frozen=True, slots=True)
class QgaExecResult:
    pid: int
    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool


class QgaCommands:
    """The QGA commands, built on one ``execute``.  ``QgaClient`` runs them over the agent
    socket; ``libvirt_channels.LibvirtQga`` runs them through libvirt's
    ``qemuAgentCommand``."""

    async def execute(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        expect_reply: bool = True,
    ) -> Any:
        raise NotImplementedError

    # -- commands ------------------------------------------------------------------------

    async def ping(self, *, timeout: float | None = None) -> None:
        await self.execute("guest-ping", timeout=timeout)

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.execute("guest-info")
        return result

    async def get_osinfo(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.execute("guest-get-osinfo")
        return result

    async def exec(
        self,
        argv: list[str],
        *,
        env: list[str] | None = None,
        input_data: bytes | None = None,
        capture_output: bool = True,
    ) -> int:
        """``guest-exec``: start ``argv`` and return its pid (poll with ``exec_status``)."""
        args: dict[str, Any] = {"path": argv[0], "arg": argv[1:], "capture-output": capture_output}
        if env is not None:
            args["env"] = env
        if input_data is not None:
            args["input-data"] = base64.b64encode(input_data).decode()
        result = await self.execute("guest-exec", args)
        return int(result["pid"])

    async def exec_status(self, pid: int) -> dict[str, Any]:
        result: dict[str, Any] = await self.execute("guest-exec-status", {"pid": pid})
        return result

    async def run(
        self,
        argv: list[str],
        *,
        input_data: bytes | None = None,
        timeout: float = 60.0,
        poll_interval: float = 0.001,
        max_interval: float = 0.05,
    ) -> QgaExecResult:
        """``guest-exec`` then poll ``guest-exec-status`` (backing off) until it exits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pid = await self.exec(argv, input_data=input_data)
        interval = poll_interval
        while True:
            status = await self.exec_status(pid)
            if status.get("exited"):
                return QgaExecResult(
                    pid=pid,
                    exit_code=status.get("exitcode"),
                    signal=status.get("signal"),
                    stdout=base64.b64decode(status.get("out-data", "")),
                    stderr=base64.b64decode(status.get("err-data", "")),
                    truncated=bool(status.get("out-truncated") or status.get("err-truncated")),
                )
            if loop.time() + interval > deadline:
                raise GuestTimeout(f"qemu-ga: {argv[0]} (pid {pid}) still running after {timeout}s")
            await asyncio.sleep(interval)
            interval = min(interval * 2, max_interval)

    async def file_read(self, path: str, *, chunk: int = 48 * 1024) -> bytes:
        handle = await self.execute("guest-file-open", {"path": path, "mode": "r"})
        parts: list[bytes] = []
        try:
            while True:
                result = await self.execute("guest-file-read", {"handle": handle, "count": chunk})
                parts.append(base64.b64decode(result.get("buf-b64", "")))
                if result.get("eof") or not result.get("count"):
                    break
        finally:
            await self.execute("guest-file-close", {"handle": handle})
        return b"".join(parts)

    async def file_write(self, path: str, data: bytes, *, chunk: int = 48 * 1024) -> None:
        handle = await self.execute("guest-file-open", {"path": path, "mode": "w"})
        try:
            for start in range(0, len(data), chunk):
                piece = base64.b64encode(data[start : start + chunk]).decode()
                await self.execute("guest-file-write", {"handle": handle, "buf-b64": piece})
        finally:
            await self.execute("guest-file-close", {"handle": handle})

    async def shutdown(self, mode: str = "powerdown") -> None:
        """``guest-shutdown`` never replies (the guest goes away); send it and return."""
        if mode not in ("powerdown", "halt", "reboot"):
            raise ValueError(f"bad shutdown mode {mode!r}: use powerdown, halt or reboot")
        await self.execute("guest-shutdown", {"mode": mode}, expect_reply=False)


class QgaClient(QgaCommands):
    def __init__(self, conn: Connection, *, timeout: float = 10.0) -> None:
        self._conn = conn
        self._proto = QgaProtocol()
        self.timeout = timeout
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, address: str, *, timeout: float = 10.0) -> QgaClient:
        try:
            conn = await connect(address, timeout=timeout)
        except VirgaError as err:
            raise GuestError(f"cannot reach qemu-ga at {address}: {err}") from err
        return cls(conn, timeout=timeout)

    @property
    def synced(self) -> bool:
        return self._proto.state is SyncState.READY

    async def _feed(self) -> None:
        data = await self._conn.read()
        if not data:
            raise GuestError(f"qemu-ga channel {self._conn.description} closed")
        self._proto.receive_data(data)

    async def _await_sync(self) -> None:
        while True:
            self._proto.next_reply()  # consumes junk and stale answers; no replies while syncing
            if self._proto.state is SyncState.READY:
                return
            await self._feed()

    async def _await_reply(self) -> Reply:
        while True:
            reply = self._proto.next_reply()
            if reply is not None:
                return reply
            await self._feed()

    async def _sync(self, deadline: float) -> None:
        """Sync; re-send the request every second (an agent that is still starting, or a
        port that dropped our bytes, gets another chance) until ``deadline``."""
        loop = asyncio.get_running_loop()
        while True:
            self._conn.write(self._proto.begin_sync(next(_ids)))
            await self._conn.drain()
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(min(1.0, left)):
                    await self._await_sync()
                return
            except TimeoutError:
                continue
        self._proto.desync()
        raise GuestTimeout(
            f"qemu-ga on {self._conn.description} did not answer guest-sync-delimited "
            "(is qemu-ga running in the guest?)"
        )

    async def execute(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        expect_reply: bool = True,
    ) -> Any:
        """Run one QGA command and return its ``return`` value."""
        limit = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        async with self._lock:
            deadline = loop.time() + limit
            try:
                if self._proto.state is not SyncState.READY:
                    await self._sync(deadline)
                self._conn.write(self._proto.command(command, arguments))
                await self._conn.drain()
                if not expect_reply:
                    return None
                async with asyncio.timeout_at(deadline):
                    reply = await self._await_reply()
            except GuestError:
                raise  # GuestTimeout is a TimeoutError too: don't re-wrap the sync failure
            except TimeoutError as err:
                self._proto.desync()
                raise GuestTimeout(f"qemu-ga {command}: no reply within {limit}s") from err
            except QgaProtocolError as err:
                raise GuestError(f"qemu-ga {command}: {err}") from err
            except VirgaError as err:
                self._proto.desync()
                raise GuestError(f"qemu-ga {command}: channel failed: {err}") from err
        if not reply.ok:
            raise QgaCommandError(command, reply.value)
        return reply.value

    async def close(self) -> None:
        await self._conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
