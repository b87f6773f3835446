"""Domain XML from a DomainSpec, the live-XML reader, PPM->PNG and ProtocolType (pure)."""

from __future__ import annotations

import struct
import zlib
from xml.etree import ElementTree as ET

import pytest

from cargobay.vmcontrol.domains import (
    ChannelSpec,
    DomainSpec,
    SpiceGraphics,
    domain_xml,
    parse_live_xml,
)
from cargobay.vmcontrol.libvirt_channels import ProtocolKind, ProtocolType, ppm_to_png


def _spec(**changes: object) -> DomainSpec:
    base = DomainSpec(
        name="vm1",
        kernel="/pool/vmlinuz",
        initrd="/pool/initrd.img",
        rootfs="/pool/rootfs.ext4",
        cmdline="console=ttyS0 quiet",
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_domain_xml_boots_the_image_read_only_with_agent_channels():
    root = ET.fromstring(domain_xml(_spec(cpus=2, memory_mb=512)))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "vm1"
    assert root.findtext("vcpu") == "2"
    assert root.find("memory").get("unit") == "MiB"
    assert root.findtext("memory") == "512"
    assert root.find("os/type").get("machine") == "q35"
    assert root.findtext("os/kernel") == "/pool/vmlinuz"
    assert root.findtext("os/initrd") == "/pool/initrd.img"
    assert root.findtext("os/cmdline") == "console=ttyS0 quiet"
    disk = root.find("devices/disk")
    assert disk.find("source").get("file") == "/pool/rootfs.ext4"
    assert disk.find("readonly") is not None
    names = [c.find("target").get("name") for c in root.findall("devices/channel")]
    assert names == ["org.qemu.guest_agent.0", "cargobay.agent"]
    assert root.find("devices/graphics") is None
    assert root.find("devices/video") is None
    assert root.find("devices/console").get("type") == "pty"


def test_domain_xml_display_spice_and_custom_channels():
    xml = domain_xml(
        _spec(
            display="vga",
            spice=SpiceGraphics(port=5999, password="pw"),
            channels=[ChannelSpec("org.example.0"), ChannelSpec("org.example.1", "pty")],
            accel="kvm",
        )
    )
    root = ET.fromstring(xml)
    assert root.get("type") == "kvm"
    assert root.find("devices/video/model").get("type") == "vga"
    graphics = root.find("devices/graphics")
    assert (graphics.get("type"), graphics.get("port"), graphics.get("passwd")) == (
        "spice",
        "5999",
        "pw",
    )
    assert graphics.find("listen").get("address") == "127.0.0.1"
    kinds = {c.find("target").get("name"): c.get("type") for c in root.findall("devices/channel")}
    assert kinds["org.example.0"] == "unix"
    assert kinds["org.example.1"] == "pty"
    # autoport when no port is given
    auto = ET.fromstring(domain_xml(_spec(spice=SpiceGraphics())))
    assert auto.find("devices/graphics").get("autoport") == "yes"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"accel": "xen"}, "accel must be qemu or kvm"),
        ({"display": "gtk"}, "display must be none or vga"),
        ({"channels": [ChannelSpec("cargobay.agent")]}, "given twice"),
        ({"channels": [ChannelSpec("x", "tcp")]}, "kind must be unix or pty"),
    ],
)
def test_domain_xml_rejects_bad_specs(changes: dict[str, object], message: str):
    with pytest.raises(ValueError, match=message):
        domain_xml(_spec(**changes))


def test_domain_xml_escapes_names():
    root = ET.fromstring(domain_xml(_spec(cmdline="a=<b> & 'c'")))
    assert root.findtext("os/cmdline") == "a=<b> & 'c'"


def test_parse_live_xml_reads_channel_paths_and_spice_port():
    xml = """<domain><name>vm1</name><devices>
      <channel type='unix'><source mode='bind' path='/run/x/qga.0'/>
        <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
      <channel type='pty'><source path='/dev/pts/3'/><target type='virtio' name='p'/></channel>
      <graphics type='spice' port='5901' autoport='yes'/></devices></domain>"""
    info = parse_live_xml(xml)
    assert info.name == "vm1"
    assert info.channel_paths == {"org.qemu.guest_agent.0": "/run/x/qga.0", "p": "/dev/pts/3"}
    assert info.spice_port == 5901
    not_started = parse_live_xml(
        "<domain><name>v</name><devices><graphics type='spice' port='-1'/></devices></domain>"
    )
    assert not_started.spice_port is None


def _png_pixels(png: bytes) -> tuple[int, int, bytes]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def test_ppm_to_png_keeps_every_pixel():
    pixels = bytes(range(2 * 3 * 3))  # 3 wide, 2 high
    ppm = b"P6\n# a comment\n3 2\n255\n" + pixels
    width, height, raw = _png_pixels(ppm_to_png(ppm))
    assert (width, height) == (3, 2)
    assert raw == b"\x00" + pixels[:9] + b"\x00" + pixels[9:]


@pytest.mark.parametrize(
    "bad", [b"P5\n1 1\n255\n\x00", b"P6\n2 2\n255\n\x00\x00", b"P6\n1 1\n65535\n\x00\x00\x00"]
)
def test_ppm_to_png_rejects_what_it_cannot_convert(bad: bytes):
    with pytest.raises(ValueError, match="PPM"):
        ppm_to_png(bad)


def test_protocol_type_names():
    port = ProtocolType.virtio_serial("org.example.0")
    assert port.kind is ProtocolKind.VIRTIO_SERIAL
    assert str(port) == "virtio-serial(org.example.0)"
    assert str(ProtocolType(ProtocolKind.QMP)) == "qmp"
    with pytest.raises(ValueError, match="bad virtio-serial port name"):
        ProtocolType.virtio_serial("../etc")
