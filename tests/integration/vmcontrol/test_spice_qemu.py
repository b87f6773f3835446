"""The Spice client against QEMU's own Spice server (spice-server inside qemu-system-x86_64).

One paused QEMU (``-S``: no guest code runs, the Spice server and the QXL card's VGA
surface exist anyway) per module, with a password and both a plain and a TLS port; the
TLS certificates are made here with ``cryptography``.  QEMU is killed in teardown.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cargobay.vmcontrol.spice import messages as m
from cargobay.vmcontrol.spice.client import (
    ChannelRunState,
    SpiceChannel,
    SpiceVmConnection,
    probe,
    tls_context,
)
from cargobay.vmcontrol.spice.constants import ChannelType, LinkErr, MouseButton
from cargobay.vmcontrol.spice.errors import SpiceAuthError, SpiceConnectionError, SpiceLinkError
from tests.support import require_binary

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Spice"


@dataclass
class SpiceServer:
    port: int
    tls_port: int
    ca_file: Path
    other_ca_file: Path
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def write_x509_dir(directory: Path) -> tuple[Path, Path]:
    """QEMU's x509-dir (ca-cert.pem, server-cert.pem, server-key.pem) for 127.0.0.1, plus a
    second, unrelated CA for the negative test."""
    ca_key, ca_cert = make_ca("cargobay test Spice CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    directory.mkdir()
    (directory / "ca-cert.pem").write_bytes(ca_cert.public_bytes(pem))
    (directory / "server-cert.pem").write_bytes(cert.public_bytes(pem))
    (directory / "server-key.pem").write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    _, other = make_ca("some other CA")
    (directory.parent / "other-ca.pem").write_bytes(other.public_bytes(pem))
    return directory / "ca-cert.pem", directory.parent / "other-ca.pem"


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"QEMU exited ({proc.returncode}): {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"QEMU's Spice port {port} never opened: {log.read_text()}")


@pytest.fixture(scope="module")
def x509_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_x509_dir(tmp_path_factory.mktemp("spice-pki") / "x509")


@pytest.fixture(scope="module")
def spice_server(
    tmp_path_factory: pytest.TempPathFactory, x509_dir: tuple[Path, Path]
) -> Iterator[SpiceServer]:
    """One QEMU for the module; every test's session is closed before the next begins."""
    qemu = require_binary("qemu-system-x86_64", "apt-get install qemu-system-x86")
    tmp = tmp_path_factory.mktemp("spice")
    pwfile = tmp / "password"
    pwfile.write_text(PASSWORD)
    ca_file, other_ca = x509_dir
    port, tls_port = free_port(), free_port()
    log = tmp / "qemu.log"
    spice = (
        f"port={port},tls-port={tls_port},addr=127.0.0.1,password-secret=sec0,"
        f"x509-dir={ca_file.parent}"
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [qemu, "-M", "pc", "-accel", "tcg", "-m", "64", "-display", "none",
             "-vga", "qxl", "-nodefaults", "-S",
             "-object", f"secret,id=sec0,file={pwfile}", "-spice", spice],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_listening(port, proc, log)
        wait_listening(tls_port, proc, log)
        yield SpiceServer(port, tls_port, ca_file, other_ca, log)
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def test_main_channel_init_and_channels_list(spice_server: SpiceServer) -> None:
    async with SpiceVmConnection("127.0.0.1", spice_server.port, PASSWORD, timeout=5) as vm:
        assert vm.init is not None
        assert vm.session_id == vm.init.session_id != 0
        assert vm.init.supported_mouse_modes & 1  # server mode is always offered
        listed = {(ChannelType(t), i) for t, i in vm.available}
        assert {(ChannelType.DISPLAY, 0), (ChannelType.INPUTS, 0), (ChannelType.CURSOR, 0)} <= (
            listed
        )
        assert vm.timings["tcp_connect"] <= vm.timings["main_init"] <= vm.timings["channels_list"]
        main = vm.channel(ChannelType.MAIN)
        assert main.state is ChannelRunState.READY
        assert main.protocol is not None
        assert main.protocol.mini_header  # requested, and QEMU's server agrees


async def test_inputs_keys_and_mouse(spice_server: SpiceServer) -> None:
    async with SpiceVmConnection("127.0.0.1", spice_server.port, PASSWORD, timeout=5) as vm:
        await vm.type_text("root\n")
        await vm.send_keys("ctrl+alt+f2")
        inputs = vm.channel(ChannelType.INPUTS)
        assert isinstance(await inputs.wait_for(m.InputsInit, 5), m.InputsInit)
        # The server acknowledges every 4th relative motion: proof it parsed them.
        for _ in range(4):
            await vm.mouse_motion(3, -2)
        await inputs.wait_for(m.MouseMotionAck, 5)
        await vm.mouse_click(MouseButton.RIGHT)
        await vm.mouse_position(10, 20)
        for _ in range(4):
            await vm.mouse_motion(-1, 1)
        await inputs.wait_for(m.MouseMotionAck, 5)
        assert inputs.state is ChannelRunState.READY
        assert vm.channel(ChannelType.MAIN).state is ChannelRunState.READY


async def test_display_and_cursor_channels(spice_server: SpiceServer) -> None:
    async with SpiceVmConnection("127.0.0.1", spice_server.port, PASSWORD, timeout=5) as vm:
        display = await vm.open_channel(ChannelType.DISPLAY)
        surface = await display.wait_for(m.SurfaceCreate, 5)
        assert surface.primary
        assert surface.width > 0
        assert surface.height > 0
        await display.wait_for(m.DisplayMark, 5)
        cursor = await vm.open_channel(ChannelType.CURSOR)
        await cursor.wait_for(m.CursorInit, 5)
        # Closing one channel leaves the others running.
        await vm.close_channel(ChannelType.DISPLAY)
        assert display.state is ChannelRunState.CLOSED
        assert cursor.state is ChannelRunState.READY
        await vm.type_text("x")


async def test_wrong_password_is_an_auth_error(spice_server: SpiceServer) -> None:
    vm = SpiceVmConnection("127.0.0.1", spice_server.port, "not-the-password", timeout=5)
    with pytest.raises(SpiceAuthError, match="PERMISSION_DENIED") as info:
        await vm.connect()
    assert info.value.link_error == LinkErr.PERMISSION_DENIED
    with pytest.raises(SpiceAuthError):
        await probe("127.0.0.1", spice_server.port, None, timeout=5)


async def test_unknown_session_is_a_link_error(spice_server: SpiceServer) -> None:
    channel = SpiceChannel(
        "127.0.0.1",
        spice_server.port,
        ChannelType.INPUTS,
        password=PASSWORD,
        connection_id=0x12345678,
        timeout=5,
    )
    with pytest.raises(SpiceLinkError, match="BAD_CONNECTION_ID"):
        await channel.open()
    assert channel.state is ChannelRunState.FAILED


async def test_closed_port_is_a_connection_error() -> None:
    port = free_port()
    with pytest.raises(SpiceConnectionError, match=f"cannot connect to spice://127.0.0.1:{port}"):
        await SpiceVmConnection("127.0.0.1", port, PASSWORD, timeout=5).connect()


async def test_probe_reports_channels_and_timings(spice_server: SpiceServer) -> None:
    result = await probe("127.0.0.1", spice_server.port, PASSWORD, timeout=5)
    assert result.session_id != 0
    assert {"main:0", "display:0", "inputs:0", "cursor:0"} <= set(result.channels)
    assert result.channel_errors == {}
    assert set(result.channel_link_ms) == set(result.channels) - {"main:0"}
    assert result.tcp_connect_ms > 0
    assert 0 < result.link_main_ms <= result.main_init_at_ms <= result.channels_list_at_ms
    assert result.channels_list_at_ms <= result.all_linked_at_ms
    assert all(v > 0 for v in result.channel_link_ms.values())
    assert result.to_dict()["main_init"]["session_id"] == result.session_id


async def test_tls_port_with_ca_check(spice_server: SpiceServer) -> None:
    ctx = tls_context(str(spice_server.ca_file))
    result = await probe("127.0.0.1", spice_server.tls_port, PASSWORD, tls=ctx, timeout=5)
    assert result.tls
    assert result.channel_errors == {}
    assert {"main:0", "display:0", "inputs:0", "cursor:0"} <= set(result.channels)


async def test_tls_session_types_and_sees_the_display(spice_server: SpiceServer) -> None:
    ctx = tls_context(str(spice_server.ca_file))
    async with SpiceVmConnection(
        "127.0.0.1", spice_server.tls_port, PASSWORD, tls=ctx, timeout=5
    ) as vm:
        await vm.type_text("tls")
        await vm.open_channel(ChannelType.DISPLAY)
        await vm.channel(ChannelType.DISPLAY).wait_for(m.SurfaceCreate, 5)


async def test_tls_with_the_wrong_ca_is_refused(spice_server: SpiceServer) -> None:
    ctx = tls_context(str(spice_server.other_ca_file))
    with pytest.raises(SpiceConnectionError, match="certificate"):
        await probe("127.0.0.1", spice_server.tls_port, PASSWORD, tls=ctx, timeout=5)


async def test_plain_client_on_the_tls_port_fails_clearly(spice_server: SpiceServer) -> None:
    port = spice_server.tls_port
    with pytest.raises(SpiceConnectionError, match=f"spice://127.0.0.1:{port} channel main:0"):
        await asyncio.wait_for(
            SpiceVmConnection("127.0.0.1", port, PASSWORD, timeout=2).connect(), 10
        )
