"""QMP, QGA, virtio-serial, the console and Spice of a real libvirt domain (TCG), through
the host pool.  One domain boots for the module from the default CargoBay image, which
carries qemu-guest-agent; the image reaches libvirt by storage-pool upload."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from cargobay.errors import GuestError
from cargobay.images import ImageManifest
from cargobay.vmcontrol.config import HostInfo, TransportConfig
from cargobay.vmcontrol.domains import (
    ChannelSpec,
    DomainInfo,
    SpiceGraphics,
    destroy_domain,
    start_image_domain,
)
from cargobay.vmcontrol.hosts import HostConnection
from cargobay.vmcontrol.libvirt_channels import (
    LibvirtQga,
    LibvirtQmp,
    StreamChannel,
    open_virtio_serial,
)
from cargobay.vmcontrol.manager import TransportManager
from cargobay.vmcontrol.qga import QgaCommandError
from cargobay.vmcontrol.qmp import QmpCommandError
from tests.integration.libvirt_env import LibvirtEnv

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PORT_STREAM = "org.cargobay.test.0"
PORT_DIRECT = "org.cargobay.test.1"
SPICE_PASSWORD = "s3cret-test"
BOOT_TIMEOUT = 120


@dataclass
class BootedDomain:
    manager: TransportManager
    host: HostConnection
    domain: Any
    info: DomainInfo
    qmp: LibvirtQmp
    qga: LibvirtQga
    console: Path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vm(
    libvirt_env: LibvirtEnv,
    default_image: tuple[Path, ImageManifest],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[BootedDomain]:
    image_dir, manifest = default_image
    manager = TransportManager(TransportConfig())
    await manager.add_host(HostInfo(id="tcp", uri=libvirt_env.tcp_uri), require=True)
    host = await manager.get_libvirt_connection("tcp")
    name = f"cb-test-{uuid.uuid4().hex[:8]}"
    domain, info = await start_image_domain(
        host,
        image_dir,
        manifest,
        name,
        display="vga",
        spice=SpiceGraphics(password=SPICE_PASSWORD),
        channels=[ChannelSpec(PORT_STREAM), ChannelSpec(PORT_DIRECT)],
    )
    console_log = tmp_path_factory.mktemp("console") / "console.log"
    pump: asyncio.Task[None] | None = None
    try:
        console = await StreamChannel.open_console(host, domain)
        pump = asyncio.create_task(console.copy_to(console_log))
        qmp = await LibvirtQmp.open(host, name)
        qga = await LibvirtQga.open(host, name, timeout=5)
        async with asyncio.timeout(BOOT_TIMEOUT):
            while True:
                try:
                    await qga.ping(timeout=2)
                    break
                except GuestError:
                    await asyncio.sleep(0.5)
        yield BootedDomain(manager, host, domain, info, qmp, qga, console_log)
        await qmp.close()
        await console.close()
    finally:
        await destroy_domain(host, domain)
        if pump is not None:
            pump.cancel()
        await manager.close()


async def test_qga_through_libvirt(vm: BootedDomain):
    result = await vm.qga.run(["/bin/sh", "-c", "uname -s; echo oops >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"Linux\n", b"oops\n")
    osinfo = await vm.qga.get_osinfo()
    assert osinfo["kernel-release"] == "6.1.0-56-cloud-amd64" or osinfo["id"] == "debian"
    payload = bytes(range(256)) * 600  # several guest-file-write chunks
    await vm.qga.file_write("/tmp/blob", payload)
    assert await vm.qga.file_read("/tmp/blob") == payload
    with pytest.raises(QgaCommandError, match="guest-file-open"):
        await vm.qga.file_read("/nonexistent/file")


async def test_qmp_commands_events_and_screenshot(vm: BootedDomain, tmp_path: Path):
    assert await vm.qmp.query_status() == "running"
    stopped = asyncio.create_task(vm.qmp.wait_event("STOP", timeout=20))
    await asyncio.sleep(0.2)  # the waiter is registered before the command
    await vm.qmp.execute("stop")
    event = await stopped
    assert event["event"] == "STOP"
    assert event["timestamp"]["seconds"] > 0
    assert await vm.qmp.query_status() == "paused"
    # libvirt refuses agent commands to a paused guest: a clear error, not a hang
    with pytest.raises(
        GuestError, match=r"qemu-ga guest-ping on cb-test-\w+ \(host tcp\).*not running"
    ):
        await vm.qga.ping(timeout=2)
    await vm.qmp.execute("cont")
    assert await vm.qmp.query_status() == "running"
    with pytest.raises(QmpCommandError, match="no-such-command"):
        await vm.qmp.execute("no-such-command")
    shot = await vm.qmp.screendump(tmp_path / "screen.png")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 320
    assert height >= 200


async def _guest_port_script(port: str) -> str:
    """Shell for the guest: find the port's device (no udev there), open it once (a port
    closed and reopened drops what arrived in between), write a greeting, then copy one
    line from the host into /tmp/<port>."""
    return (
        "for p in /sys/class/virtio-ports/*; do read n < $p/name; "
        f'[ "$n" = {port} ] && d=/dev/${{p##*/}}; done; '
        f"{{ echo hello-from-guest >&0; head -n1 > /tmp/{port}; }} <>$d"
    )


@pytest.mark.parametrize(("port", "direct"), [(PORT_STREAM, False), (PORT_DIRECT, True)])
async def test_virtio_serial_by_name(vm: BootedDomain, port: str, direct: bool):
    """A custom port, through a libvirt stream and directly on its chardev socket."""
    channel = await open_virtio_serial(vm.host, vm.info.name, port, direct=direct)
    try:
        pid = await vm.qga.exec(["/bin/sh", "-c", await _guest_port_script(port)])
        async with asyncio.timeout(30):
            got = b""
            while b"\n" not in got:
                got += await channel.read()
        assert got == b"hello-from-guest\n"
        await channel.write(b"ping-from-host\n")
        async with asyncio.timeout(30):
            while True:  # polling is all guest-exec-status offers
                if (await vm.qga.exec_status(pid)).get("exited"):
                    break
                await asyncio.sleep(0.1)
        assert await vm.qga.file_read(f"/tmp/{port}") == b"ping-from-host\n"
    finally:
        await channel.close()
    with pytest.raises(GuestError, match="no-such-port"):
        await open_virtio_serial(vm.host, vm.info.name, "no-such-port", direct=True)


async def test_console_stream_carries_what_the_guest_prints(vm: BootedDomain):
    marker = f"console-marker-{uuid.uuid4().hex[:8]}"
    result = await vm.qga.run(["/bin/sh", "-c", f"echo {marker} > /dev/ttyS0"])
    assert result.exit_code == 0
    async with asyncio.timeout(30):
        while True:  # the pump task writes the file; poll it
            if marker.encode() in vm.console.read_bytes():
                break
            await asyncio.sleep(0.2)


async def test_spice_of_a_libvirt_domain_through_the_manager(vm: BootedDomain):
    from cargobay.vmcontrol.spice.client import SpiceVmConnection
    from cargobay.vmcontrol.spice.errors import SpiceAuthError

    assert vm.info.spice_port is not None
    vm.manager.add_spice_vm("good", "127.0.0.1", vm.info.spice_port, password=SPICE_PASSWORD)
    conn = await vm.manager.get_spice_connection("good")
    assert isinstance(conn, SpiceVmConnection)
    assert await vm.manager.get_spice_connection("good") is conn  # kept and shared
    assert conn.session_id != 0
    listed = {ctype for ctype, _ in conn.available}
    assert {2, 3, 4} <= listed  # display, inputs, cursor
    vm.manager.add_spice_vm("wrong", "127.0.0.1", vm.info.spice_port, password="wrong")
    with pytest.raises(SpiceAuthError):
        await vm.manager.get_spice_connection("wrong")
