"""The macOS platform layer: a Lima instance is the Linux that runs the VMs, or a VM is
booted straight on Virtualization.framework with ``vfkit``.

Lima (``limactl``)::

    limactl create --tty=false --name=cargobay /…/cargobay.yaml    the YAML below
    limactl start --tty=false cargobay
    limactl stop [--force] cargobay
    limactl shell [--workdir DIR] cargobay -- ARGV...
    limactl copy [-r] SRC cargobay:DST   /   limactl copy [-r] cargobay:SRC DST
    limactl list --json cargobay                                   one JSON object a line

The instance YAML (``lima_yaml``) takes the ``platform.macos`` section of config.yaml
(instance name, CPUs, memory, ``vmType`` vz or qemu): Debian 12 cloud images for both
architectures, CargoBay's data directory mounted writable at the same path (virtiofs
with vz, 9p with qemu), nested virtualization asked for (vz on M3 and later, macOS 15:
then KVM works inside), no containerd, and a provisioning script that installs QEMU and
e2fsprogs.  Lima mounts a host folder at the same path, so a host path under a mount is
the same path inside (``linux_path``); any other path must be copied in.

Virtualization.framework through ``vfkit`` (``vfkit_argv``): a Linux kernel booted
directly, raw disk images (vz reads no qcow2), the serial console to a log file, the
guest agent's vsock port exposed as a Unix socket (``listen``: host connections go to
the guest port), user-mode NAT networking, host folders over virtio-fs, and a REST
endpoint on a Unix socket for state changes.  macOS limits Unix socket paths to 103
bytes (``sun_path`` is 104 with the NUL), checked here.

Only command lines and paths: running them is for a ``Runner`` on a Mac (tests use a
stand-in named ``FakeMacOnlyLimactl``).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import yaml

from cargobay.apps.wsl2 import CommandResult, Runner
from cargobay.config.settings import MacosSettings, size_mib
from cargobay.errors import InvalidInput, PlatformError
from cargobay.platforms.base import PlatformFeatures

__all__ = [
    "DARWIN_SUN_PATH_MAX",
    "LimaInstance",
    "MacOSPlatform",
    "VfkitSpec",
    "lima_home",
    "lima_yaml",
    "parse_limactl_list",
    "vfkit_argv",
]

LIMACTL = "limactl"
VFKIT = "vfkit"
DARWIN_SUN_PATH_MAX = 103
DEBIAN_IMAGES = {
    "aarch64": "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-arm64.qcow2",
    "x86_64": "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
}
PROVISION = """#!/bin/sh
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    qemu-system-x86 qemu-system-arm qemu-utils e2fsprogs python3-venv
"""


def lima_home(env: Mapping[str, str], home: str) -> str:
    """Lima's directory: ``$LIMA_HOME``, else ``~/.lima``."""
    value = env.get("LIMA_HOME")
    return value if value and value.startswith("/") else posixpath.join(home, ".lima")


def _mib(value: str | int, what: str) -> str:
    try:
        return f"{size_mib(value, what)}MiB"
    except ValueError as err:
        raise InvalidInput(str(err)) from err


def lima_yaml(
    settings: MacosSettings,
    *,
    mounts: Sequence[str],
    disk: str | int = "100GB",
    images: Mapping[str, str] = DEBIAN_IMAGES,
) -> str:
    """The Lima instance file for the CargoBay host Linux."""
    for m in mounts:
        if not m.startswith("/"):
            raise InvalidInput(f"Lima mount {m!r}: give an absolute path")
    doc = {
        "vmType": settings.vm_type,
        "cpus": settings.lima_cpus,
        "memory": _mib(settings.lima_memory, "lima_memory"),
        "disk": _mib(disk, "disk"),
        "images": [{"location": url, "arch": arch} for arch, url in images.items()],
        "mountType": "virtiofs" if settings.vm_type == "vz" else "9p",
        "mounts": [{"location": m, "writable": True} for m in mounts],
        "nestedVirtualization": settings.vm_type == "vz",
        "containerd": {"system": False, "user": False},
        "provision": [{"mode": "system", "script": PROVISION}],
    }
    text: str = yaml.safe_dump(doc, sort_keys=False)
    return text


@dataclass(frozen=True, slots=True)
class LimaInstance:
    name: str
    status: str
    """As limactl says it: Running, Stopped, Broken."""
    dir: str
    vm_type: str | None = None
    arch: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "Running"


def parse_limactl_list(text: str) -> list[LimaInstance]:
    """``limactl list --json``: one JSON object per line."""
    found: list[LimaInstance] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise PlatformError(f"unexpected line from `limactl list --json`: {line!r}") from err
        if not isinstance(obj, dict) or "name" not in obj:
            raise PlatformError(f"unexpected object from `limactl list --json`: {line!r}")
        found.append(
            LimaInstance(
                name=str(obj["name"]),
                status=str(obj.get("status", "")),
                dir=str(obj.get("dir", "")),
                vm_type=obj.get("vmType"),
                arch=obj.get("arch"),
            )
        )
    return found


class MacOSPlatform:
    """The Lima instance named in config.yaml's ``platform.macos``."""

    name = "macos"

    def __init__(
        self,
        settings: MacosSettings | None = None,
        *,
        yaml_path: str = "/tmp/cargobay-lima.yaml",
        mounts: Sequence[str] = (),
        limactl: str = LIMACTL,
    ) -> None:
        self.settings = settings or MacosSettings()
        self.instance = self.settings.lima_instance
        self.yaml_path = yaml_path
        self.mounts = tuple(posixpath.normpath(m) for m in mounts)
        self.limactl = limactl
        self.features = PlatformFeatures(
            host_is_linux=False,
            file_sharing="virtiofs" if self.settings.vm_type == "vz" else "9p",
            nested_virtualization=self.settings.vm_type == "vz",
        )

    def instance_yaml(self) -> str:
        return lima_yaml(self.settings, mounts=self.mounts)

    def create_argv(self) -> list[list[str]]:
        return [[self.limactl, "create", "--tty=false", f"--name={self.instance}", self.yaml_path]]

    def start_argv(self) -> list[str] | None:
        return [self.limactl, "start", "--tty=false", self.instance]

    def stop_argv(self, force: bool = False) -> list[str] | None:
        return [self.limactl, "stop", *(["--force"] if force else []), self.instance]

    def list_argv(self) -> list[str]:
        return [self.limactl, "list", "--json", self.instance]

    def exec_argv(self, argv: Sequence[str], workdir: str | None = None) -> list[str]:
        if not argv:
            raise InvalidInput("nothing to run")
        cmd = [self.limactl, "shell"]
        if workdir is not None:
            cmd.append(f"--workdir={workdir}")
        return [*cmd, self.instance, "--", *argv]

    def _remote(self, path: str) -> str:
        if not path.startswith("/"):
            raise InvalidInput(f"{path}: give an absolute path inside the Lima instance")
        return f"{self.instance}:{path}"

    def copy_in_argv(self, host_path: str, linux_path: str) -> list[str]:
        return [self.limactl, "copy", "-r", host_path, self._remote(linux_path)]

    def copy_out_argv(self, linux_path: str, host_path: str) -> list[str]:
        return [self.limactl, "copy", "-r", self._remote(linux_path), host_path]

    def linux_path(self, host_path: str) -> str:
        """Lima mounts a folder at the same path: a path under a mount is unchanged."""
        if not host_path.startswith("/"):
            raise InvalidInput(f"{host_path}: give an absolute path")
        path = PurePosixPath(posixpath.normpath(host_path))
        for mount in self.mounts:
            if path == PurePosixPath(mount) or PurePosixPath(mount) in path.parents:
                return str(path)
        shared = ", ".join(self.mounts) or "none"
        raise InvalidInput(
            f"{host_path} is not in a folder shared with the Lima instance {self.instance!r} "
            f"(shared: {shared}); copy it in with `limactl copy`"
        )

    async def status(self, runner: Runner) -> LimaInstance | None:
        """The instance as ``limactl list`` reports it (None: not created yet)."""
        result: CommandResult = await runner(self.list_argv())
        if result.returncode != 0:
            err = result.stderr.decode(errors="replace").strip()
            if "not found" in err or "No instance" in err:
                return None
            raise PlatformError(f"`limactl list` failed ({result.returncode}): {err}")
        found = [i for i in parse_limactl_list(result.stdout.decode()) if i.name == self.instance]
        return found[0] if found else None


@dataclass(frozen=True)
class VfkitSpec:
    """One VM on Virtualization.framework."""

    cpus: int
    memory_mib: int
    kernel: str
    initrd: str | None
    cmdline: str
    disks: Sequence[str]
    console_log: str
    agent_socket: str
    agent_port: int = 1024
    rest_socket: str | None = None
    shared_dirs: Mapping[str, str] = field(default_factory=dict)
    """mount tag -> host directory (virtio-fs)."""
    nat: bool = True


def _check_socket(path: str, what: str) -> None:
    if not path.startswith("/"):
        raise InvalidInput(f"{what} {path!r}: give an absolute path")
    if len(path.encode()) > DARWIN_SUN_PATH_MAX:
        raise InvalidInput(
            f"{what} {path!r} is {len(path.encode())} bytes; macOS allows Unix socket paths "
            f"of at most {DARWIN_SUN_PATH_MAX}: use a shorter directory"
        )


def _no_comma(value: str, what: str) -> str:
    if "," in value or '"' in value:
        raise InvalidInput(f"{what} {value!r}: vfkit options cannot hold ',' or '\"'")
    return value


def vfkit_argv(spec: VfkitSpec, vfkit: str = VFKIT) -> list[str]:
    """The ``vfkit`` command line that boots ``spec``."""
    if not 1 <= spec.cpus <= 64:
        raise InvalidInput(f"cpus {spec.cpus}: use 1 to 64")
    if spec.memory_mib < 64:
        raise InvalidInput(f"memory {spec.memory_mib} MiB: use at least 64")
    if not spec.disks:
        raise InvalidInput("vfkit needs at least one disk (the root file system)")
    _check_socket(spec.agent_socket, "agent socket")
    boot = f"linux,kernel={_no_comma(spec.kernel, 'kernel')}"
    if spec.initrd:
        boot += f",initrd={_no_comma(spec.initrd, 'initrd')}"
    if '"' in spec.cmdline:
        raise InvalidInput("the kernel command line cannot hold '\"' for vfkit")
    boot += f',cmdline="{spec.cmdline}"'
    argv = [vfkit, "--cpus", str(spec.cpus), "--memory", str(spec.memory_mib), "--bootloader", boot]
    for disk in spec.disks:
        if disk.endswith(".qcow2"):
            raise InvalidInput(f"{disk}: Virtualization.framework reads raw images only")
        argv += ["--device", f"virtio-blk,path={_no_comma(disk, 'disk')}"]
    argv += ["--device", f"virtio-serial,logFilePath={_no_comma(spec.console_log, 'log')}"]
    argv += [
        "--device",
        f"virtio-vsock,port={spec.agent_port},socketURL={spec.agent_socket},listen",
    ]
    if spec.nat:
        argv += ["--device", "virtio-net,nat"]
    for tag, directory in spec.shared_dirs.items():
        shared = _no_comma(directory, "shared dir")
        argv += ["--device", f"virtio-fs,sharedDir={shared},mountTag={_no_comma(tag, 'tag')}"]
    argv += ["--device", "virtio-rng"]
    if spec.rest_socket:
        _check_socket(spec.rest_socket, "REST socket")
        argv += ["--restful-uri", f"unix://{spec.rest_socket}"]
    return argv
