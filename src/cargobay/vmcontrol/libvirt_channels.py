"""QMP, QGA and virtio-serial channels of a libvirt-managed domain, through the host pool.

The seed's ``ProtocolType`` (QMP, QGA, VirtioSerial(name), Spice) says which channel a
caller wants; for libvirt domains:

- ``LibvirtQmp``: QMP through ``virDomainQemuMonitorCommand`` (libvirt owns the monitor
  socket), QMP events through ``virConnectDomainQemuMonitorEventRegister``; screenshots
  through ``virDomainScreenshot`` (the image comes back over a libvirt stream, so it
  works on a remote host; PPM is converted to PNG here).  It offers the methods of
  ``vmcontrol.qmp.QmpConnection`` that the scenarios use.
- ``LibvirtQga``: the ``QgaCommands`` set through ``virDomainQemuAgentCommand`` (libvirt
  owns the agent socket and does the guest-sync itself); ``guest-shutdown`` never replies,
  so shutdown is ``virDomainShutdownFlags(GUEST_AGENT)``.
- ``StreamChannel``: a byte stream from ``virDomainOpenChannel`` (a virtio-serial port by
  name) or ``virDomainOpenConsole`` (the serial console).  Blocking ``recv`` runs in a
  worker thread; ``send`` likewise.  ``open_virtio_serial`` also opens a port directly on
  its chardev socket when the domain runs on this machine (``direct=True``).

Every blocking libvirt call goes through ``HostConnection.call`` (errors name the host).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cargobay.errors import GuestError, GuestTimeout
from cargobay.vmcontrol.hosts import HostConnection, LibvirtCallError, Subscription
from cargobay.vmcontrol.qga import QgaCommandError, QgaCommands
from cargobay.vmcontrol.qmp import QmpCommandError, QmpCommands, QmpError

__all__ = [
    "LibvirtQga",
    "LibvirtQmp",
    "ProtocolKind",
    "ProtocolType",
    "StreamChannel",
    "open_virtio_serial",
    "ppm_to_png",
]


class ProtocolKind(enum.StrEnum):
    QMP = "qmp"
    QGA = "qga"
    VIRTIO_SERIAL = "virtio-serial"
    SPICE = "spice"


@dataclass(frozen=True)
class ProtocolType:
    """The seed's ``ProtocolType``: ``ProtocolType.virtio_serial("org.example.0")``."""

    kind: ProtocolKind
    name: str | None = None

    @classmethod
    def virtio_serial(cls, name: str) -> ProtocolType:
        if not name or "/" in name:
            raise ValueError(f"bad virtio-serial port name {name!r}")
        return cls(ProtocolKind.VIRTIO_SERIAL, name)

    def __str__(self) -> str:
        return f"{self.kind.value}({self.name})" if self.name else self.kind.value


QMP = ProtocolType(ProtocolKind.QMP)
QGA = ProtocolType(ProtocolKind.QGA)
SPICE = ProtocolType(ProtocolKind.SPICE)


async def lookup_domain(host: HostConnection, name: str) -> Any:
    return await host.call(lambda conn: conn.lookupByName(name), what=f"domain {name!r}")


# --- QMP ------------------------------------------------------------------------------


class LibvirtQmp(QmpCommands):
    """QMP of a libvirt domain (see the module docstring)."""

    def __init__(self, host: HostConnection, domain: Any, *, timeout: float = 30.0) -> None:
        self.host, self.domain, self.timeout = host, domain, timeout
        self.name = str(domain.name())
        self.address = f"libvirt:{host.host_id}/{self.name}"
        self._queues: list[tuple[str | None, asyncio.Queue[dict[str, Any]]]] = []
        self._sub: Subscription | None = None

    @classmethod
    async def open(cls, host: HostConnection, name: str, *, timeout: float = 30.0) -> LibvirtQmp:
        qmp = cls(host, await lookup_domain(host, name), timeout=timeout)
        await qmp._subscribe()
        return qmp

    async def _subscribe(self) -> None:
        import libvirt_qemu

        domain = self.domain

        def on_event(
            _conn: Any, _dom: Any, event: str, secs: int, usecs: int, details: Any, _opaque: Any
        ) -> None:
            record = {
                "event": event,
                "data": details or {},
                "timestamp": {"seconds": secs, "microseconds": usecs},
            }
            self.host.dispatch(self._deliver, record)

        self._sub = await self.host.subscribe(
            Subscription(
                name=f"QMP events of {self.name}",
                register=lambda conn: libvirt_qemu.qemuMonitorEventRegister(
                    conn, domain, None, on_event, None, 0
                ),
                deregister=lambda conn, cid: libvirt_qemu.qemuMonitorEventDeregister(conn, cid),
            )
        )

    def _deliver(self, record: dict[str, Any]) -> None:
        for name, queue in self._queues:
            if name is None or name == record["event"]:
                queue.put_nowait(record)

    async def execute(
        self, command: str, arguments: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        import libvirt_qemu

        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        text = json.dumps(request)
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                raw = await self.host.call(
                    lambda _conn: libvirt_qemu.qemuMonitorCommand(self.domain, text, 0),
                    what=f"QMP {command} on {self.name}",
                )
        except TimeoutError as err:
            raise QmpError(f"QMP {command} on {self.address}: no answer within {limit} s") from err
        except LibvirtCallError as err:
            raise QmpError(str(err)) from err
        reply = json.loads(raw)
        if "error" in reply:
            error = reply["error"]
            raise QmpCommandError(command, str(error.get("class")), str(error.get("desc")))
        return reply.get("return")

    async def screendump(self, path: str | Path, *, device: str | None = None) -> Path:
        """The display as PNG at ``path`` on this machine (via ``virDomainScreenshot``)."""
        target = Path(path)

        def shoot(conn: Any) -> tuple[str, bytes]:
            stream = conn.newStream(0)
            try:
                mime = self.domain.screenshot(stream, 0, 0)
                parts: list[bytes] = []
                stream.recvAll(lambda _s, data, acc: acc.append(data) or 0, parts)
                stream.finish()
            except BaseException:
                with contextlib.suppress(Exception):
                    stream.abort()
                raise
            return str(mime), b"".join(parts)

        try:
            mime, data = await self.host.call(shoot, what=f"screenshot of {self.name}")
        except LibvirtCallError as err:
            raise QmpError(str(err)) from err
        if mime == "image/png":
            png = data
        elif mime in ("image/x-portable-pixmap", "image/x-portable-anymap"):
            png = ppm_to_png(data)
        else:
            raise QmpError(f"screenshot of {self.name}: unexpected image type {mime}")
        await asyncio.to_thread(target.write_bytes, png)
        return target

    async def wait_event(self, name: str, *, timeout: float | None = None) -> dict[str, Any]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        entry = (name, queue)
        self._queues.append(entry)
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                return await queue.get()
        except TimeoutError as err:
            raise QmpError(f"no QMP event {name} from {self.address} within {limit} s") from err
        finally:
            self._queues.remove(entry)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await self.host.unsubscribe(sub)


# --- QGA ------------------------------------------------------------------------------


_AGENT_FAILED = re.compile(r"unable to execute QEMU agent command '[^']*': (.*)", re.S)


class LibvirtQga(QgaCommands):
    """qemu-ga of a libvirt domain through ``qemuAgentCommand``."""

    def __init__(self, host: HostConnection, domain: Any, *, timeout: float = 10.0) -> None:
        self.host, self.domain, self.timeout = host, domain, timeout
        self.name = str(domain.name())

    @classmethod
    async def open(cls, host: HostConnection, name: str, *, timeout: float = 10.0) -> LibvirtQga:
        return cls(host, await lookup_domain(host, name), timeout=timeout)

    async def execute(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        expect_reply: bool = True,
    ) -> Any:
        import libvirt_qemu

        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        text = json.dumps(request)
        limit = self.timeout if timeout is None else timeout
        seconds = max(1, int(limit + 0.999))
        try:
            raw = await self.host.call(
                lambda _conn: libvirt_qemu.qemuAgentCommand(self.domain, text, seconds, 0),
                what=f"qemu-ga {command} on {self.name}",
            )
        except LibvirtCallError as err:
            detail = err.detail
            lowered = detail.lower()
            failed = _AGENT_FAILED.search(detail)
            if failed is not None:  # qemu-ga answered with an error object
                raise QgaCommandError(
                    command, {"class": "GenericError", "desc": failed.group(1)}
                ) from err
            where = f"qemu-ga {command} on {self.name} (host {self.host.host_id})"
            if "timeout" in lowered or "not responding" in lowered:
                raise GuestTimeout(f"{where}: {detail}") from err
            if "not connected" in lowered or "agent is not" in lowered:
                raise GuestError(f"{where}: {detail} (is qemu-ga running in the guest?)") from err
            raise GuestError(f"{where}: {detail}") from err
        reply = json.loads(raw)
        if "error" in reply:
            raise QgaCommandError(command, reply["error"])
        return reply.get("return")

    async def shutdown(self, mode: str = "powerdown") -> None:
        import libvirt

        if mode not in ("powerdown", "halt", "reboot"):
            raise ValueError(f"bad shutdown mode {mode!r}: use powerdown, halt or reboot")
        if mode == "reboot":
            flag = libvirt.VIR_DOMAIN_REBOOT_GUEST_AGENT
            await self.host.call(lambda _c: self.domain.reboot(flag), what=f"reboot {self.name}")
        else:
            flag = libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT
            await self.host.call(
                lambda _c: self.domain.shutdownFlags(flag), what=f"shutdown {self.name}"
            )

    async def close(self) -> None:
        return None


# --- byte streams: virtio-serial ports and the console ----------------------------------


class StreamChannel:
    """A libvirt stream to a guest port.  ``read`` returns b"" at end of stream."""

    def __init__(self, host: HostConnection, stream: Any, description: str) -> None:
        self.host, self._stream, self.description = host, stream, description
        self._closed = False
        self._send_lock = asyncio.Lock()

    @classmethod
    async def open_channel(cls, host: HostConnection, domain: Any, port: str) -> StreamChannel:
        def work(conn: Any) -> Any:
            stream = conn.newStream(0)
            domain.openChannel(port, stream, 0)
            return stream

        stream = await host.call(work, what=f"opening channel {port} of {domain.name()}")
        return cls(host, stream, f"libvirt:{host.host_id}/{domain.name()}/{port}")

    @classmethod
    async def open_console(cls, host: HostConnection, domain: Any) -> StreamChannel:
        def work(conn: Any) -> Any:
            import libvirt

            stream = conn.newStream(0)
            domain.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
            return stream

        stream = await host.call(work, what=f"opening the console of {domain.name()}")
        return cls(host, stream, f"libvirt:{host.host_id}/{domain.name()}/console")

    async def read(self, max_bytes: int = 65536) -> bytes:
        if self._closed:
            return b""

        def recv(_conn: Any) -> bytes:
            data = self._stream.recv(max_bytes)
            return data if isinstance(data, bytes) else b""

        try:
            # not under the host's operation limit: a reader can wait for a long time
            return await asyncio.to_thread(recv, None)
        except Exception as err:
            if self._closed:
                return b""
            raise LibvirtCallError(self.host.host_id, f"reading {self.description}: {err}") from err

    async def write(self, data: bytes) -> None:
        async with self._send_lock:
            view = memoryview(data)
            while view:
                sent = await asyncio.to_thread(self._stream.send, bytes(view))
                if sent < 0:
                    raise LibvirtCallError(self.host.host_id, f"writing {self.description} failed")
                view = view[sent:]

    async def copy_to(self, path: Path) -> None:
        """Append everything read to ``path`` until the stream ends (a console log)."""
        with path.open("ab") as out:
            while data := await self.read():
                out.write(data)
                out.flush()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        stream = self._stream

        def finish() -> None:
            with contextlib.suppress(Exception):
                stream.abort()

        await asyncio.to_thread(finish)


@dataclass
class _DirectChannel:
    """A virtio-serial port opened on its chardev socket (the domain is on this machine)."""

    conn: Any
    description: str

    async def read(self, max_bytes: int = 65536) -> bytes:
        data: bytes = await self.conn.read(max_bytes)
        return data

    async def write(self, data: bytes) -> None:
        await self.conn.write_all(data)

    async def close(self) -> None:
        await self.conn.close()


async def open_virtio_serial(
    host: HostConnection, name: str, port: str, *, direct: bool = False
) -> StreamChannel | _DirectChannel:
    """Port ``port`` of domain ``name``: a libvirt stream, or with ``direct`` the unix
    chardev socket libvirt gave QEMU (readable only on the host itself, as root)."""
    domain = await lookup_domain(host, name)
    if not direct:
        return await StreamChannel.open_channel(host, domain, port)
    if not host.info.uri.on_this_machine:
        raise GuestError(
            f"port {port} of {name}: a direct chardev connection needs the domain on this "
            f"machine, but host {host.host_id} is {host.uri}; open it through libvirt instead"
        )
    from cargobay.vmcontrol.domains import parse_live_xml
    from virga.connection import connect

    xml = await host.call(lambda _c: domain.XMLDesc(0), what=f"XML of {name}")
    path = parse_live_xml(xml).channel_paths.get(port)
    if path is None:
        raise GuestError(f"domain {name} has no unix channel named {port}")
    conn = await connect(f"unix:{path}", timeout=10)
    return _DirectChannel(conn, f"unix:{path}")


# --- PPM -> PNG -------------------------------------------------------------------------


def ppm_to_png(data: bytes) -> bytes:
    """A binary PPM (P6, maxval 255) as PNG: what QEMU's screendump gives libvirt."""
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while end < len(data) and not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    pos += 1  # the single whitespace byte before the raster
    if fields[0] != b"P6" or int(fields[3]) != 255:
        raise ValueError("not a binary PPM with maxval 255")
    width, height = int(fields[1]), int(fields[2])
    row = width * 3
    raster = data[pos : pos + row * height]
    if len(raster) != row * height:
        raise ValueError("truncated PPM")
    raw = b"".join(b"\x00" + raster[y * row : (y + 1) * row] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
