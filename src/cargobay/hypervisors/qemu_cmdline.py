"""The QEMU command line for one VM: a pure function of the ``VMSpec`` and a few choices.

Kept apart from the process handling in ``qemu`` so the boot contract is testable without
QEMU.  The contract (shared with the image builder, the guest init and the agent):

    machine    microvm (virtio-mmio devices, qboot, ACPI for the power button), TCG or KVM
    console    the ISA serial port (ttyS0) -> STATE_DIR/console.log
    control    QMP on RUN_DIR/qmp.sock
    channels   one virtio-serial device with two ports on Unix sockets (server, no wait):
                 cargobay.agent          -> RUN_DIR/agent.sock  (the guest agent, virga)
                 org.qemu.guest_agent.0  -> RUN_DIR/qga.sock    (qemu-ga)
    disks      the image's rootfs, virtio-blk, read-only (shared by every VM, never written);
               the per-VM data disk, virtio-blk, read-write (discard passes through, so
               the sparse file stays sparse)
    entropy    virtio-rng fed from the host's /dev/urandom (needs virtio_rng in the guest)
    kernel     -kernel/-initrd/-append: the image's cmdline + ``cargobay.name=NAME`` (+ the
               TCG clock parameters from ``accel.tcg_kernel_params``; ``pci=off`` on microvm)
    process    -daemonize with -pidfile RUN_DIR/qemu.pid: QEMU reports start-up errors on
               stderr and exits non-zero, otherwise its launcher exits once QEMU is
               initialised (sockets listening) and the VM runs in its own session, a child
               of init, so it outlives the daemon.  -D STATE_DIR/qemu.log keeps QEMU's later
               stderr (without -D it would go to /dev/null).
    options    -no-reboot: a guest reboot or panic (``panic=-1``) ends the process.

``machine="q35"`` swaps the virtio-mmio devices for their PCI twins.  microvm does
everything this contract needs; q35 is there for what microvm cannot do: PCI devices
(VFIO passthrough, a virtio-gpu/Spice display, hotplug).  It boots about 1 s slower
(SeaBIOS).  Ports (``extra["ports"]``, ``8080:80/tcp,...``) add a user-mode NIC with
host forwards bound to 127.0.0.1; a vsock CID adds ``vhost-vsock`` (only where
``/dev/vhost-vsock`` exists).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cargobay.errors import InvalidInput
from cargobay.hypervisors.base import VMSpec
from cargobay.hypervisors.qemu_storage import ShareDevice, data_drive_options, share_args

__all__ = [
    "AGENT_PORT_NAME",
    "QGA_PORT_NAME",
    "QemuLayout",
    "QemuOptions",
    "build_argv",
    "kernel_cmdline",
    "opt",
    "parse_ports",
]

AGENT_PORT_NAME = "cargobay.agent"
QGA_PORT_NAME = "org.qemu.guest_agent.0"
SUN_PATH_MAX = 107

Machine = Literal["microvm", "q35"]

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class QemuLayout:
    """Where one VM's files live: sockets in the (short) run dir, logs in the state dir."""

    run_dir: Path
    state_dir: Path

    @classmethod
    def of(cls, spec: VMSpec) -> QemuLayout:
        return cls(spec.run_dir, spec.state_dir)

    @property
    def qmp_socket(self) -> Path:
        return self.run_dir / "qmp.sock"

    @property
    def agent_socket(self) -> Path:
        return self.run_dir / "agent.sock"

    @property
    def qga_socket(self) -> Path:
        return self.run_dir / "qga.sock"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "qemu.pid"

    @property
    def console_log(self) -> Path:
        return self.state_dir / "console.log"

    @property
    def qemu_log(self) -> Path:
        return self.state_dir / "qemu.log"

    def sockets(self) -> tuple[Path, ...]:
        return (self.qmp_socket, self.agent_socket, self.qga_socket)


@dataclass(frozen=True, slots=True)
class QemuOptions:
    accel: Literal["kvm", "tcg"] = "tcg"
    machine: Machine = "microvm"
    extra_kernel_params: tuple[str, ...] = ()
    """Appended to the kernel command line (the TCG clock parameters)."""
    vsock_cid: int | None = None
    ports: tuple[tuple[str, int, int], ...] = ()
    """(protocol, host port, guest port) forwards; any adds a user-mode NIC."""
    daemonize: bool = True
    display: Literal["none", "vga"] = "none"
    """``vga`` adds a VGA adapter (q35 only: microvm has no display), for screendumps."""
    memory_file: str | None = None
    """Guest RAM in this file (``memory-backend-file``) instead of anonymous memory: the
    shared-memory templates of ``cargobay.machines.snapshots``."""
    memory_share: bool = True
    """``share=on``: writes reach the file (a template being made); ``share=off``: a
    private copy-on-write mapping (a clone started from a template)."""
    incoming: bool = False
    """``-incoming defer``: the VM waits for its state (``migrate-incoming``) and does not
    boot."""
    tap: str | None = None
    """A NIC on this existing TAP device (bridged networking, ``machines.network``);
    replaces the user-mode NIC (port forwards are then nftables rules)."""
    mac: str | None = None
    user_nic: bool = False
    """A user-mode NIC even without port forwards (a clone of a VM that had some: the
    device layout must match the saved state)."""
    sandbox: bool = True
    """QEMU's seccomp filter (``-sandbox on``, see ``SANDBOX``)."""
    start_paused: bool = False
    """``-S``: the vCPUs stay stopped until ``cont`` (also after an incoming migration)."""
    data_cache: str = "writeback"
    """The data drive's cache strategy (``qemu_storage.CACHE_OPTIONS``)."""
    shares: tuple[ShareDevice, ...] = ()
    """Host folders shared into the guest (``qemu_storage.share_args``)."""
    extra_args: tuple[str, ...] = field(default=())


SANDBOX = "on,obsolete=deny,resourcecontrol=deny"
"""QEMU's seccomp filter: obsolete system calls and scheduler/affinity changes are
refused.  ``spawn`` stays allowed: saving and loading a VM's state (snapshots, templates:
``qemu_snapshot``) goes through ``exec:cat``, which QEMU 7.2 runs as a child (it has no
``file:`` migration URI).  ``elevateprivileges`` stays allowed because ``-daemonize``
calls setsid() after the filter is in place (QEMU 7.2 exits with status 1 otherwise,
measured here)."""


def opt(value: object) -> str:
    """A value inside a QEMU ``key=value,...`` option: commas are doubled."""
    return str(value).replace(",", ",,")


def parse_ports(text: str) -> tuple[tuple[str, int, int], ...]:
    """``"8080:80/tcp,5353:53/udp"`` (how the machines service passes ``extra["ports"]``)."""
    forwards = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        mapping, _, proto = item.partition("/")
        proto = proto or "tcp"
        host, sep, guest = mapping.partition(":")
        try:
            host_port, guest_port = int(host), int(guest)
        except ValueError:
            host_port = guest_port = 0
        if (
            not sep
            or proto not in ("tcp", "udp")
            or not (0 < host_port < 65536 and 0 < guest_port < 65536)
        ):
            raise InvalidInput(f"bad port forward {item!r}: use HOST:GUEST[/tcp|udp]")
        forwards.append((proto, host_port, guest_port))
    return tuple(forwards)


def kernel_cmdline(spec: VMSpec, extra_params: tuple[str, ...] | list[str] = ()) -> str:
    """The image's command line plus ours, kept before a ``--`` (what follows goes to init).

    A parameter the image already sets (same ``key=``) is not added twice."""
    if not _NAME_OK.match(spec.name):
        raise InvalidInput(
            f"VM name {spec.name!r} cannot go on the kernel command line: use letters, "
            "digits, '.', '_' and '-', starting with a letter or digit"
        )
    base, dashes, init_args = spec.cmdline.partition(" -- ")
    if not dashes and base.endswith(" --"):
        base, dashes = base[: -len(" --")], " --"
    present = {word.split("=", 1)[0] for word in base.split()}
    ours = [
        p
        for p in (f"cargobay.name={spec.name}", *extra_params)
        if p.split("=", 1)[0] not in present
    ]
    words = [*base.split(), *ours]
    line = " ".join(words)
    if dashes:
        line = f"{line} --" + (f" {init_args}" if init_args else "")
    return line


def build_argv(qemu: str, spec: VMSpec, options: QemuOptions) -> list[str]:
    """The full argv (``qemu`` first).  Raises ``InvalidInput`` for an unusable spec."""
    layout = QemuLayout.of(spec)
    for sock in layout.sockets():
        if len(str(sock)) > SUN_PATH_MAX:
            raise InvalidInput(
                f"socket path {sock} is longer than {SUN_PATH_MAX} bytes; "
                "use a shorter run directory (set CARGOBAY_HOME or XDG_RUNTIME_DIR)"
            )
    if spec.cpus < 1 or spec.memory_mb < 16:
        raise InvalidInput(
            f"a VM needs at least 1 CPU and 16 MB (got {spec.cpus}, {spec.memory_mb} MB)"
        )
    microvm = options.machine == "microvm"
    bus = "device" if microvm else "pci"  # virtio-blk-device (mmio) vs virtio-blk-pci

    if microvm:
        machine = f"microvm,accel={options.accel},acpi=on,rtc=on"
    else:
        machine = f"q35,accel={options.accel}"
    # Guest RAM is always a memory backend named "mem" (anonymous RAM by default), so a
    # saved state names the same RAM block whether it is loaded into anonymous memory or
    # into a template's file: QEMU refuses a state whose RAM block names differ.
    machine += ",memory-backend=mem"
    # fmt: off
    argv = [
        qemu,
        "-name", opt(spec.name),
        "-machine", machine,
        *(["-cpu", "host"] if options.accel == "kvm" else []),
        "-m", str(spec.memory_mb),
        "-smp", str(spec.cpus),
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-no-reboot",
        "-msg", "timestamp=on",
    ]
    if options.daemonize:
        argv += ["-daemonize", "-pidfile", str(layout.pidfile), "-D", str(layout.qemu_log)]
    argv += ["-kernel", str(spec.kernel)]
    if spec.initrd is not None:
        argv += ["-initrd", str(spec.initrd)]
    # microvm has no PCI bus: pci=off spares the guest a probe and a "PCI: Fatal" line.
    params = (*options.extra_kernel_params, *(["pci=off"] if microvm else []))
    argv += ["-append", kernel_cmdline(spec, params)]
    argv += [
        "-chardev", f"file,id=console,path={opt(layout.console_log)}",
        "-serial", "chardev:console",
        "-chardev", f"socket,id=qmp,path={opt(layout.qmp_socket)},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-drive", f"id=root,file={opt(spec.rootfs)},format=raw,if=none,readonly=on",
        "-device", f"virtio-blk-{bus},drive=root,serial=cbroot",
        "-drive",
        f"id=data,file={opt(spec.data_disk)},format=raw,if=none,discard=unmap,"
        f"detect-zeroes=unmap,{data_drive_options(options.data_cache)}",
        "-device", f"virtio-blk-{bus},drive=data,serial=cbdata",
        "-device", f"virtio-serial-{bus},id=vser",
        "-chardev", f"socket,id=agent,path={opt(layout.agent_socket)},server=on,wait=off",
        "-device", f"virtserialport,bus=vser.0,chardev=agent,name={AGENT_PORT_NAME}",
        "-chardev", f"socket,id=qga,path={opt(layout.qga_socket)},server=on,wait=off",
        "-device", f"virtserialport,bus=vser.0,chardev=qga,name={QGA_PORT_NAME}",
        "-object", "rng-random,id=rng,filename=/dev/urandom",
        "-device", f"virtio-rng-{bus},rng=rng",
    ]
    # fmt: on
    if options.tap is not None:
        mac = f",mac={options.mac}" if options.mac else ""
        argv += [
            "-netdev", f"tap,id=net0,ifname={opt(options.tap)},script=no,downscript=no",
            "-device", f"virtio-net-{bus},netdev=net0{mac}",
        ]  # fmt: skip
    elif options.ports or options.user_nic:
        netdev = ",".join(
            ["user,id=net0"]
            + [f"hostfwd={proto}:127.0.0.1:{host}-:{guest}" for proto, host, guest in options.ports]
        )
        argv += ["-netdev", netdev, "-device", f"virtio-net-{bus},netdev=net0"]
    argv += share_args(options.shares, bus)
    if options.display == "vga":
        if microvm:
            raise InvalidInput("a VGA display needs the q35 machine (microvm has no display)")
        argv += ["-device", "VGA"]
    if options.vsock_cid is not None:
        if not 3 <= options.vsock_cid < 0xFFFFFFFF:
            raise InvalidInput(f"vsock CID {options.vsock_cid} is reserved or out of range")
        argv += ["-device", f"vhost-vsock-{bus},guest-cid={options.vsock_cid}"]
    if options.memory_file is not None:
        share = "on" if options.memory_share else "off"
        argv += [
            "-object",
            f"memory-backend-file,id=mem,size={spec.memory_mb}M,"
            f"mem-path={opt(options.memory_file)},share={share}",
        ]
    else:
        argv += ["-object", f"memory-backend-ram,id=mem,size={spec.memory_mb}M"]
    if options.sandbox:
        argv += ["-sandbox", SANDBOX]
    if options.incoming:
        argv += ["-incoming", "defer"]
    if options.start_paused:
        argv.append("-S")
    argv += list(options.extra_args)
    return argv
