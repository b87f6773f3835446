"""CargoBay guest images as libvirt domains, on any host of the pool.

A remote host cannot see our image store, so the image travels through libvirt itself:
``ensure_image`` puts the kernel, initramfs and root image into a storage pool on the
host (``cargobay``, a directory pool under /var/lib/libvirt/images/cargobay, defined on
first use) with ``virStorageVolUpload``, once per image content (volume names carry the
file's SHA-256 prefix).  An upload is complete only when its ``.ok`` marker volume
exists; a volume without one (an upload cut short) is deleted and sent again.

``domain_xml`` is pure: it turns a ``DomainSpec`` into domain XML (q35, direct kernel
boot, the read-only root image on virtio-blk, a pty serial console that libvirt streams to
us, virtio-serial channels for qemu-ga, the CargoBay agent and any custom ports, and
optionally a VGA display with a Spice server).  Domains are transient (``createXML``):
destroying one leaves nothing defined on the host.  QEMU runs under TCG where KVM is
missing (``<domain type='qemu'>``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from cargobay.hypervisors.qemu_cmdline import AGENT_PORT_NAME, QGA_PORT_NAME
from cargobay.images.manifest import ImageManifest
from cargobay.vmcontrol.hosts import HostConnection, LibvirtCallError

__all__ = [
    "POOL_NAME",
    "ChannelSpec",
    "DomainSpec",
    "SpiceGraphics",
    "destroy_domain",
    "domain_xml",
    "ensure_image",
    "start_image_domain",
]

POOL_NAME = "cargobay"
POOL_PATH = "/var/lib/libvirt/images/cargobay"
_CHUNK = 1 << 20
_upload_locks: dict[tuple[str, str], asyncio.Lock] = {}


@dataclass(frozen=True)
class ChannelSpec:
    """A virtio-serial port: ``unix`` (QEMU listens on a socket libvirt names; reachable
    directly on that host and through ``virDomainOpenChannel``) or ``pty``."""

    name: str
    kind: str = "unix"


@dataclass(frozen=True)
class SpiceGraphics:
    port: int | None = None
    """None: libvirt picks one (autoport)."""
    password: str | None = None
    listen: str = "127.0.0.1"


@dataclass
class DomainSpec:
    name: str
    kernel: str
    rootfs: str
    cmdline: str
    initrd: str | None = None
    cpus: int = 1
    memory_mb: int = 384
    machine: str = "q35"
    display: str = "none"
    """``none`` or ``vga``."""
    spice: SpiceGraphics | None = None
    channels: Sequence[ChannelSpec] = field(default_factory=tuple)
    accel: str = "qemu"
    """``qemu`` (TCG) or ``kvm``."""


def domain_xml(spec: DomainSpec) -> str:
    """The domain XML for ``spec`` (always with qemu-ga and CargoBay agent channels)."""
    if spec.accel not in ("qemu", "kvm"):
        raise ValueError(f"accel must be qemu or kvm, not {spec.accel!r}")
    if spec.display not in ("none", "vga"):
        raise ValueError(f"display must be none or vga, not {spec.display!r}")
    dom = ET.Element("domain", type=spec.accel)
    ET.SubElement(dom, "name").text = spec.name
    ET.SubElement(dom, "memory", unit="MiB").text = str(spec.memory_mb)
    ET.SubElement(dom, "vcpu").text = str(spec.cpus)
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine=spec.machine).text = "hvm"
    ET.SubElement(os_el, "kernel").text = spec.kernel
    if spec.initrd:
        ET.SubElement(os_el, "initrd").text = spec.initrd
    ET.SubElement(os_el, "cmdline").text = spec.cmdline
    features = ET.SubElement(dom, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    ET.SubElement(dom, "on_reboot").text = "destroy"
    ET.SubElement(dom, "on_crash").text = "destroy"
    devices = ET.SubElement(dom, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw")
    ET.SubElement(disk, "source", file=spec.rootfs)
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    ET.SubElement(disk, "readonly")
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")
    names = [QGA_PORT_NAME, AGENT_PORT_NAME]
    channels = [ChannelSpec(QGA_PORT_NAME), ChannelSpec(AGENT_PORT_NAME)]
    for extra in spec.channels:
        if extra.name in names:
            raise ValueError(f"channel {extra.name!r} is given twice")
        if extra.kind not in ("unix", "pty"):
            raise ValueError(f"channel {extra.name!r}: kind must be unix or pty")
        names.append(extra.name)
        channels.append(extra)
    for chan in channels:
        el = ET.SubElement(devices, "channel", type=chan.kind)
        if chan.kind == "unix":
            ET.SubElement(el, "source", mode="bind")
        ET.SubElement(el, "target", type="virtio", name=chan.name)
    if spec.display == "vga":
        video = ET.SubElement(devices, "video")
        ET.SubElement(video, "model", type="vga")
        # a pointer with absolute coordinates (virtio: the guest's init loads its driver),
        # so Spice can run its mouse in client mode and move_to means a screen position
        ET.SubElement(devices, "input", type="tablet", bus="virtio")
    if spec.spice is not None:
        attrs = {"autoport": "yes"} if spec.spice.port is None else {"port": str(spec.spice.port)}
        if spec.spice.password is not None:
            attrs["passwd"] = spec.spice.password
        graphics = ET.SubElement(devices, "graphics", {"type": "spice", **attrs})
        ET.SubElement(graphics, "listen", type="address", address=spec.spice.listen)
    ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")


@dataclass(frozen=True)
class DomainInfo:
    """What the running domain's live XML says."""

    name: str
    channel_paths: dict[str, str]
    spice_port: int | None


def parse_live_xml(xml: str) -> DomainInfo:
    root = ET.fromstring(xml)
    paths: dict[str, str] = {}
    for chan in root.findall("./devices/channel"):
        target, source = chan.find("target"), chan.find("source")
        if target is not None and source is not None and source.get("path"):
            paths[str(target.get("name"))] = str(source.get("path"))
    spice_port = None
    graphics = root.find("./devices/graphics[@type='spice']")
    if graphics is not None and graphics.get("port") not in (None, "-1"):
        spice_port = int(str(graphics.get("port")))
    return DomainInfo(name=str(root.findtext("name")), channel_paths=paths, spice_port=spice_port)


# --- image volumes ----------------------------------------------------------------------


async def ensure_image(
    host: HostConnection,
    image_dir: Path,
    manifest: ImageManifest,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Upload the image's files to the host's ``cargobay`` pool where missing; their paths
    on the host: ``{"kernel": ..., "initrd": ..., "rootfs": ...}``."""
    pool = await _ensure_pool(host)
    files = {"kernel": manifest.kernel, "rootfs": manifest.rootfs}
    if manifest.initrd is not None:
        files["initrd"] = manifest.initrd
    result: dict[str, str] = {}
    for role, entry in files.items():
        name = f"{manifest.name}-{entry.sha256[:16]}-{Path(entry.path).name}"
        # Several pool hosts may be one libvirtd (one machine reached over unix, tcp and
        # ssh): uploads are serialised per machine, not per host id.
        machine = host.health().hostname or host.host_id
        lock = _upload_locks.setdefault((machine, name), asyncio.Lock())
        async with lock:
            result[role] = await _ensure_volume(
                host, pool, name, image_dir / entry.path, entry.size, progress
            )
    return result


async def _ensure_pool(host: HostConnection) -> Any:
    def work(conn: Any) -> Any:
        import libvirt

        try:
            pool = conn.storagePoolLookupByName(POOL_NAME)
        except libvirt.libvirtError:
            xml = (
                f"<pool type='dir'><name>{POOL_NAME}</name>"
                f"<target><path>{POOL_PATH}</path>"
                "<permissions><mode>0755</mode></permissions></target></pool>"
            )
            try:
                pool = conn.storagePoolDefineXML(xml, 0)
                pool.build(0)
            except libvirt.libvirtError:
                pool = conn.storagePoolLookupByName(POOL_NAME)  # defined meanwhile
        if not pool.isActive():
            with contextlib.suppress(libvirt.libvirtError):
                pool.create(0)
        pool.refresh(0)
        return pool

    return await host.call(work, what=f"preparing the storage pool {POOL_NAME}")


async def _ensure_volume(
    host: HostConnection,
    pool: Any,
    name: str,
    source: Path,
    size: int,
    progress: Callable[[str], None] | None,
) -> str:
    def lookup(_conn: Any) -> tuple[str | None, bool]:
        import libvirt

        try:
            vol = pool.storageVolLookupByName(name)
        except libvirt.libvirtError:
            return None, False
        try:
            pool.storageVolLookupByName(name + ".ok")
        except libvirt.libvirtError:
            return vol.path(), False
        return vol.path(), True

    path, complete = await host.call(lookup, what=f"looking up volume {name}")
    if path is not None and complete:
        return path
    if progress:
        progress(f"uploading {source.name} ({size / 1e6:.0f} MB) to {host.host_id}")

    def upload(conn: Any) -> str:
        import libvirt

        with contextlib.suppress(libvirt.libvirtError):
            pool.storageVolLookupByName(name).delete(0)  # a cut-short upload
        vol = pool.createXML(_volume_xml(name, size), 0)
        try:
            stream = conn.newStream(0)
            vol.upload(stream, 0, size, 0)
            with source.open("rb") as f:
                stream.sendAll(lambda _stream, nbytes, fh: fh.read(min(nbytes, _CHUNK)), f)
            stream.finish()
            pool.createXML(_volume_xml(name + ".ok", 0), 0)
        except BaseException:
            with contextlib.suppress(Exception):
                vol.delete(0)
            raise
        return str(vol.path())

    try:
        return await host.call(upload, what=f"uploading {source.name} as volume {name}")
    except OSError as err:
        raise LibvirtCallError(host.host_id, f"reading {source}: {err}") from err


def _volume_xml(name: str, size: int) -> str:
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(size)
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", type="raw")
    perms = ET.SubElement(target, "permissions")
    ET.SubElement(perms, "mode").text = "0644"
    return ET.tostring(vol, encoding="unicode")


# --- booting ----------------------------------------------------------------------------


async def start_image_domain(
    host: HostConnection,
    image_dir: Path,
    manifest: ImageManifest,
    name: str,
    *,
    cpus: int = 1,
    memory_mb: int = 384,
    display: str = "none",
    spice: SpiceGraphics | None = None,
    channels: Sequence[ChannelSpec] = (),
    accel: str = "qemu",
    progress: Callable[[str], None] | None = None,
) -> tuple[Any, DomainInfo]:
    """Upload the image where needed and start a transient domain ``name`` from it; the
    ``virDomain`` and what its live XML says (channel socket paths, the Spice port)."""
    from cargobay.hypervisors.accel import tcg_kernel_params

    files = await ensure_image(host, image_dir, manifest, progress=progress)
    extra = tcg_kernel_params() if accel == "qemu" else []
    spec = DomainSpec(
        name=name,
        kernel=files["kernel"],
        initrd=files.get("initrd"),
        rootfs=files["rootfs"],
        cmdline=" ".join([manifest.cmdline, f"cargobay.name={name}", *extra]),
        cpus=cpus,
        memory_mb=memory_mb,
        display=display,
        spice=spice,
        channels=channels,
        accel=accel,
    )
    xml = domain_xml(spec)
    domain = await host.call(lambda conn: conn.createXML(xml, 0), what=f"starting domain {name}")
    try:
        live = await host.call(lambda _conn: domain.XMLDesc(0), what=f"XML of {name}")
    except BaseException:
        await destroy_domain(host, domain)
        raise
    return domain, parse_live_xml(live)


async def destroy_domain(host: HostConnection, domain: Any) -> None:
    """Destroy a transient domain; one that is already gone is fine."""
    import libvirt

    def work(_conn: Any) -> None:
        try:
            domain.destroy()
        except libvirt.libvirtError as err:
            if err.get_error_code() not in (
                libvirt.VIR_ERR_NO_DOMAIN,
                libvirt.VIR_ERR_OPERATION_INVALID,
            ):
                raise

    await host.call(work, what="destroying a domain")
