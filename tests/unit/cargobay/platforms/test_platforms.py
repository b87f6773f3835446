"""Platform layers: the registry offers only the host's layer; the command lines and path
logic of Linux, macOS (Lima, vfkit) and Windows (WSL2).  The macOS and Windows programs do
not exist here: their stand-ins say so in their names."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from cargobay.apps.wsl2 import CommandResult
from cargobay.config import Config, parse_config
from cargobay.config.settings import MacosSettings, WindowsSettings
from cargobay.errors import InvalidInput, PlatformError
from cargobay.platforms import PlatformLayer, available, current
from cargobay.platforms.linux import LinuxPlatform
from cargobay.platforms.macos import MacOSPlatform, VfkitSpec, lima_home, lima_yaml, vfkit_argv
from cargobay.platforms.windows import WindowsPlatform, wslconfig

# -- registry -----------------------------------------------------------------------------


def test_only_the_hosts_layer_is_offered() -> None:
    assert available("linux") == ["linux"]
    assert available("darwin") == ["macos"]
    assert available("win32") == ["windows"]
    assert available("sunos5") == []
    if sys.platform.startswith("linux"):
        assert available() == ["linux"]
        assert isinstance(current(), LinuxPlatform)


def test_current_builds_from_config_and_refuses_unknown_platforms() -> None:
    config = parse_config("platform:\n  macos:\n    lima_instance: aiva-host\n")
    mac = current(config, platform="darwin")
    assert isinstance(mac, MacOSPlatform)
    assert mac.instance == "aiva-host"
    assert isinstance(current(Config(), platform="win32"), WindowsPlatform)
    with pytest.raises(PlatformError, match="no platform layer"):
        current(Config(), platform="sunos5")


@pytest.mark.parametrize(
    "layer", [LinuxPlatform(), MacOSPlatform(mounts=["/Users/me"]), WindowsPlatform()]
)
def test_every_layer_meets_the_protocol(layer: PlatformLayer) -> None:
    assert isinstance(layer, PlatformLayer)
    assert layer.exec_argv(["uname", "-r"])[-2:] == ["uname", "-r"]
    with pytest.raises(InvalidInput):
        layer.exec_argv([])


# -- linux --------------------------------------------------------------------------------


def test_linux_runs_commands_as_they_are(tmp_path: Path) -> None:
    linux = LinuxPlatform()
    assert linux.create_argv() == []
    assert linux.start_argv() is None
    assert linux.exec_argv(["ls", "-l"]) == ["ls", "-l"]
    argv = linux.exec_argv(["ls", "a b"], workdir="/tmp/x y")
    assert argv[:2] == ["sh", "-c"]
    assert argv[-2:] == ["ls", "a b"]
    assert linux.linux_path("/srv/data") == "/srv/data"


def test_linux_detection_reports_missing_qemu_and_kvm(tmp_path: Path) -> None:
    missing = LinuxPlatform(qemu_binary=str(tmp_path / "no-qemu"))
    status = missing.detect()
    assert not status.ready
    assert "not found" in status.message
    qemu = tmp_path / "qemu"
    qemu.write_text("#!/bin/sh\n")
    qemu.chmod(0o755)
    status = LinuxPlatform(qemu_binary=str(qemu), kvm_device=tmp_path / "kvm").detect()
    assert status.ready
    assert "TCG" in status.message


# -- macOS: Lima and vfkit ----------------------------------------------------------------


class FakeMacOnlyLimactl:
    """Stands in for macOS's `limactl` (not on Linux): answers `list --json`."""

    def __init__(self, lines: list[dict[str, object]], returncode: int = 0) -> None:
        self.lines = lines
        self.returncode = returncode
        self.calls: list[list[str]] = []

    async def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        out = "".join(json.dumps(obj) + "\n" for obj in self.lines).encode()
        err = b"" if self.returncode == 0 else b'instance "cargobay" not found'
        return CommandResult(self.returncode, out, err)


def test_limactl_command_lines() -> None:
    mac = MacOSPlatform(yaml_path="/Users/me/.cb/lima.yaml", mounts=["/Users/me/cargobay"])
    assert mac.create_argv() == [
        ["limactl", "create", "--tty=false", "--name=cargobay", "/Users/me/.cb/lima.yaml"]
    ]
    assert mac.start_argv() == ["limactl", "start", "--tty=false", "cargobay"]
    assert mac.stop_argv() == ["limactl", "stop", "cargobay"]
    assert mac.stop_argv(force=True) == ["limactl", "stop", "--force", "cargobay"]
    assert mac.exec_argv(["qemu-img", "info", "x"], workdir="/tmp") == [
        "limactl", "shell", "--workdir=/tmp", "cargobay", "--", "qemu-img", "info", "x",
    ]  # fmt: skip
    assert mac.copy_in_argv("/Users/me/a.txt", "/tmp/a.txt") == [
        "limactl", "copy", "-r", "/Users/me/a.txt", "cargobay:/tmp/a.txt",
    ]  # fmt: skip
    assert mac.copy_out_argv("/var/log/x", "/Users/me/x") == [
        "limactl", "copy", "-r", "cargobay:/var/log/x", "/Users/me/x",
    ]  # fmt: skip
    with pytest.raises(InvalidInput):
        mac.copy_in_argv("/Users/me/a", "relative/path")


def test_lima_paths_are_the_same_under_a_mount_only() -> None:
    mac = MacOSPlatform(mounts=["/Users/me/cargobay/"])
    assert mac.linux_path("/Users/me/cargobay/machines/x") == "/Users/me/cargobay/machines/x"
    assert mac.linux_path("/Users/me/cargobay") == "/Users/me/cargobay"
    with pytest.raises(InvalidInput, match="not in a folder shared"):
        mac.linux_path("/Users/me/cargobay-other/x")
    with pytest.raises(InvalidInput, match="not in a folder shared"):
        mac.linux_path("/Users/me/cargobay/../secrets")
    with pytest.raises(InvalidInput):
        mac.linux_path("relative")
    assert lima_home({}, "/Users/me") == "/Users/me/.lima"
    assert lima_home({"LIMA_HOME": "/opt/lima"}, "/Users/me") == "/opt/lima"


def test_lima_yaml_follows_the_config() -> None:
    doc = yaml.safe_load(
        lima_yaml(MacosSettings(lima_cpus=8, lima_memory="16GB"), mounts=["/Users/me/cargobay"])
    )
    assert doc["vmType"] == "vz"
    assert (doc["cpus"], doc["memory"]) == (8, "16384MiB")
    assert doc["mountType"] == "virtiofs"
    assert doc["mounts"] == [{"location": "/Users/me/cargobay", "writable": True}]
    assert doc["nestedVirtualization"] is True
    assert {i["arch"] for i in doc["images"]} == {"aarch64", "x86_64"}
    assert "qemu-system" in doc["provision"][0]["script"]
    qemu = yaml.safe_load(lima_yaml(MacosSettings(vm_type="qemu"), mounts=[]))
    assert qemu["mountType"] == "9p"
    assert qemu["nestedVirtualization"] is False
    with pytest.raises(InvalidInput):
        lima_yaml(MacosSettings(), mounts=["relative"])


async def test_lima_status_through_a_mac_only_limactl() -> None:
    fake = FakeMacOnlyLimactl(
        [{"name": "cargobay", "status": "Running", "dir": "/Users/me/.lima/cargobay"}]
    )
    mac = MacOSPlatform()
    inst = await mac.status(fake)
    assert inst is not None
    assert inst.running
    assert fake.calls == [["limactl", "list", "--json", "cargobay"]]
    assert await mac.status(FakeMacOnlyLimactl([], returncode=1)) is None


def test_vfkit_argv() -> None:
    spec = VfkitSpec(
        cpus=2,
        memory_mib=512,
        kernel="/Users/me/cb/vmlinux",
        initrd="/Users/me/cb/initrd.img",
        cmdline="console=hvc0 root=/dev/vda ro",
        disks=["/Users/me/cb/rootfs.img", "/Users/me/cb/data.img"],
        console_log="/Users/me/cb/console.log",
        agent_socket="/tmp/cb/agent.sock",
        rest_socket="/tmp/cb/rest.sock",
        shared_dirs={"share": "/Users/me/project"},
    )
    argv = vfkit_argv(spec)
    assert argv[:5] == ["vfkit", "--cpus", "2", "--memory", "512"]
    assert argv[argv.index("--bootloader") + 1] == (
        "linux,kernel=/Users/me/cb/vmlinux,initrd=/Users/me/cb/initrd.img,"
        'cmdline="console=hvc0 root=/dev/vda ro"'
    )
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "--device"]
    assert devices == [
        "virtio-blk,path=/Users/me/cb/rootfs.img",
        "virtio-blk,path=/Users/me/cb/data.img",
        "virtio-serial,logFilePath=/Users/me/cb/console.log",
        "virtio-vsock,port=1024,socketURL=/tmp/cb/agent.sock,listen",
        "virtio-net,nat",
        "virtio-fs,sharedDir=/Users/me/project,mountTag=share",
        "virtio-rng",
    ]
    assert argv[-2:] == ["--restful-uri", "unix:///tmp/cb/rest.sock"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"agent_socket": "/tmp/" + "x" * 120 + ".sock"}, "at most 103"),
        ({"disks": ["/Users/me/root.qcow2"]}, "raw images only"),
        ({"disks": []}, "at least one disk"),
        ({"kernel": "/Users/me/a,b"}, "cannot hold ','"),
        ({"cpus": 0}, "cpus 0"),
    ],
)
def test_vfkit_refuses(change: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "cpus": 1,
        "memory_mib": 256,
        "kernel": "/k",
        "initrd": None,
        "cmdline": "console=hvc0",
        "disks": ["/root.img"],
        "console_log": "/c.log",
        "agent_socket": "/tmp/a.sock",
    }
    with pytest.raises(InvalidInput, match=message):
        vfkit_argv(VfkitSpec(**{**base, **change}))  # type: ignore[arg-type]


# -- Windows: WSL2 ------------------------------------------------------------------------


class FakeWindowsOnlyWsl:
    """Stands in for Windows' `wsl.exe` (not on Linux): `--list --verbose` in UTF-16LE."""

    def __init__(self, listing: str) -> None:
        self.listing = listing
        self.calls: list[list[str]] = []

    async def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        return CommandResult(0, self.listing.encode("utf-16-le"))


def test_wsl_command_lines() -> None:
    win = WindowsPlatform(WindowsSettings(wsl_distro="aiva-wsl"))
    assert win.create_argv() == [
        ["wsl.exe", "--import", "aiva-wsl", r"C:\ProgramData\CargoBay\wsl",
         r"C:\ProgramData\CargoBay\cargobay-wsl.tar", "--version", "2"],
    ]  # fmt: skip
    assert win.start_argv() == [
        "wsl.exe", "--distribution", "aiva-wsl", "--exec", "sleep", "infinity",
    ]  # fmt: skip
    assert win.stop_argv() == ["wsl.exe", "--terminate", "aiva-wsl"]
    assert win.exec_argv(["uname", "-r"], workdir="/root") == [
        "wsl.exe", "--distribution", "aiva-wsl", "--cd", "/root", "--exec", "uname", "-r",
    ]  # fmt: skip
    assert win.copy_in_argv(r"C:\Users\me\app.tar", "/srv/app.tar")[-4:] == [
        "-a", "--", "/mnt/c/Users/me/app.tar", "/srv/app.tar",
    ]  # fmt: skip
    assert win.copy_out_argv("/var/log/x", r"D:\logs\x")[-2:] == ["/var/log/x", "/mnt/d/logs/x"]
    with pytest.raises(InvalidInput, match="network path"):
        win.copy_in_argv(r"\\server\share\x", "/srv/x")


def test_wsl_paths_both_ways() -> None:
    win = WindowsPlatform()
    assert win.linux_path(r"C:\Users\me\cb") == "/mnt/c/Users/me/cb"
    assert win.linux_path(r"\\wsl.localhost\cargobay-wsl\srv\x") == "/srv/x"
    assert win.windows_path("/mnt/d/data") == r"D:\data"
    assert win.windows_path("/srv/x") == r"\\wsl.localhost\cargobay-wsl\srv\x"


def test_wslconfig_and_bad_distro_names() -> None:
    text = wslconfig(WindowsSettings(), memory="8GB", cpus=4)
    assert text == "[wsl2]\nnestedVirtualization=true\nmemory=8192MB\nprocessors=4\n"
    off = wslconfig(WindowsSettings(nested_virtualization=False))
    assert "nestedVirtualization=false" in off
    with pytest.raises(InvalidInput):
        WindowsPlatform(WindowsSettings.model_construct(wsl_distro="bad name;rm"))


async def test_wsl_status_through_a_windows_only_wsl() -> None:
    listing = "  NAME            STATE           VERSION\n* cargobay-wsl    Running         2\n"
    fake = FakeWindowsOnlyWsl(listing)
    distro = await WindowsPlatform().status(fake)
    assert distro is not None
    assert distro.state == "Running"
    assert fake.calls == [["wsl.exe", "--list", "--verbose"]]
    v1 = FakeWindowsOnlyWsl("  NAME  STATE  VERSION\n* cargobay-wsl  Stopped  1\n")
    with pytest.raises(PlatformError, match="WSL 1"):
        await WindowsPlatform().status(v1)
