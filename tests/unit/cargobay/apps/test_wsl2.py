"""cargobay.apps.wsl2: the wsl.exe layer's logic, with a stand-in for Windows' wsl.exe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from cargobay.apps.wsl2 import (
    CommandResult,
    Wsl,
    decode_wsl_output,
    parse_list_verbose,
    portproxy_argv,
    windows_build_supports_wsl2,
    windows_to_wsl,
    wsl_to_windows,
)
from cargobay.errors import InvalidInput, WslError

LIST_EN = (
    "  NAME                   STATE           VERSION\r\n"
    "* Ubuntu-22.04           Running         2\r\n"
    "  docker-desktop-data    Stopped         2\r\n"
    "  Legacy                 Stopped         1\r\n"
)
LIST_ZH = "  名称            状态            版本\r\n* Ubuntu          已停止          2\r\n"


def utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


@dataclass
class FakeWindowsWslExe:
    """Stands in for Windows' wsl.exe: answers from a script, records every argv."""

    listing: bytes = field(default_factory=lambda: utf16(LIST_EN))
    inside: dict[tuple[str, ...], CommandResult] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)

    async def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        assert argv[0] == "wsl.exe"
        if list(argv[1:]) == ["--list", "--verbose"]:
            return CommandResult(0, self.listing)
        exec_at = list(argv).index("--exec")
        return self.inside.get(tuple(argv[exec_at + 1 :]), CommandResult(127, b"", b"not found"))


def test_decode_utf16_with_and_without_bom_and_utf8() -> None:
    assert decode_wsl_output(utf16(LIST_EN)).startswith("  NAME")
    assert decode_wsl_output(b"\xff\xfe" + utf16("x\r\n")) == "x\n"
    assert decode_wsl_output("内核 5.15\n".encode()) == "内核 5.15\n"


def test_parse_english_and_localised_listing() -> None:
    distros = parse_list_verbose(decode_wsl_output(utf16(LIST_EN)))
    assert [(d.name, d.state, d.version, d.default) for d in distros] == [
        ("Ubuntu-22.04", "Running", 2, True),
        ("docker-desktop-data", "Stopped", 2, False),
        ("Legacy", "Stopped", 1, False),
    ]
    zh = parse_list_verbose(decode_wsl_output(utf16(LIST_ZH)))
    assert zh[0].name == "Ubuntu"
    assert zh[0].default
    with pytest.raises(WslError, match="unexpected line"):
        parse_list_verbose("NAME STATE VERSION\ngarbage\n")


async def test_list_distributions_and_none_installed() -> None:
    fake = FakeWindowsWslExe()
    wsl = Wsl(fake)
    assert [d.name for d in await wsl.list_distributions()] == [
        "Ubuntu-22.04",
        "docker-desktop-data",
        "Legacy",
    ]
    assert (await wsl.default_distribution()).name == "Ubuntu-22.04"  # type: ignore[union-attr]

    async def none_installed(argv: Sequence[str]) -> CommandResult:
        msg = "Windows Subsystem for Linux has no installed distributions.\r\n"
        return CommandResult(4294967295, utf16(msg))

    assert await Wsl(none_installed).list_distributions() == []

    async def broken(argv: Sequence[str]) -> CommandResult:
        return CommandResult(1, utf16("The WSL optional component is not enabled.\r\n"))

    with pytest.raises(WslError, match="not enabled"):
        await Wsl(broken).list_distributions()


async def test_docker_detection_states() -> None:
    fake = FakeWindowsWslExe()
    wsl = Wsl(fake)
    missing = await wsl.docker_status("Ubuntu-22.04")
    assert (missing.installed, missing.running) == (False, False)
    fake.inside[("docker", "version", "--format", "{{.Server.Version}}")] = CommandResult(
        1, b"", b"Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
    )
    stopped = await wsl.docker_status("Ubuntu-22.04")
    assert (stopped.installed, stopped.running) == (True, False)
    assert "Cannot connect" in stopped.message
    fake.inside[("docker", "version", "--format", "{{.Server.Version}}")] = CommandResult(
        0, b"24.0.7\n"
    )
    fake.inside[("docker-compose", "version")] = CommandResult(0, b"docker-compose 1.29.2")
    ok = await wsl.docker_status("Ubuntu-22.04")
    assert (ok.running, ok.version, ok.compose) == (True, "24.0.7", "v1")
    fake.inside[("docker", "compose", "version")] = CommandResult(0, b"v2.24.0")
    assert (await wsl.docker_status("Ubuntu-22.04")).compose == "v2"


async def test_compose_runs_inside_with_translated_paths() -> None:
    fake = FakeWindowsWslExe()
    fake.inside[("docker", "version", "--format", "{{.Server.Version}}")] = CommandResult(0, b"24")
    fake.inside[("docker", "compose", "version")] = CommandResult(0, b"v2")
    up = (
        "docker",
        "compose",
        "--project-directory",
        "/mnt/d/MAI/inst1",
        "-f",
        "/mnt/d/MAI/inst1/docker-compose.yml",
        "up",
        "-d",
    )
    fake.inside[up] = CommandResult(0, b"done")
    wsl = Wsl(fake)
    result = await wsl.compose("Ubuntu-22.04", "D:\\MAI\\inst1", ["up", "-d"])
    assert result.stdout == b"done"
    assert fake.calls[-1][:5] == [
        "wsl.exe",
        "--distribution",
        "Ubuntu-22.04",
        "--cd",
        "/mnt/d/MAI/inst1",
    ]
    fake.inside[up] = CommandResult(1, b"", b"service maibot: image not found")
    with pytest.raises(WslError, match="image not found"):
        await wsl.compose("Ubuntu-22.04", "D:\\MAI\\inst1", ["up", "-d"])
    with pytest.raises(WslError, match="not installed"):
        await Wsl(FakeWindowsWslExe()).compose("Ubuntu-22.04", "D:\\x", ["up"])


async def test_run_checks_its_arguments() -> None:
    wsl = Wsl(FakeWindowsWslExe())
    with pytest.raises(InvalidInput, match="distribution name"):
        await wsl.run("Ubuntu; calc.exe", ["true"])
    with pytest.raises(InvalidInput, match="user name"):
        await wsl.run("Ubuntu", ["true"], user="root --exec calc")
    with pytest.raises(InvalidInput, match="nothing to run"):
        await wsl.run("Ubuntu", [])


async def test_ip_address() -> None:
    fake = FakeWindowsWslExe()
    fake.inside[("hostname", "-I")] = CommandResult(0, b"172.20.1.2 fd00::1 \n")
    assert await Wsl(fake).ip_address("Ubuntu") == "172.20.1.2"
    fake.inside[("hostname", "-I")] = CommandResult(0, b"\n")
    with pytest.raises(WslError, match="no IPv4"):
        await Wsl(fake).ip_address("Ubuntu")


@pytest.mark.parametrize(
    ("windows", "inside"),
    [
        ("C:\\Users\\me\\MAI", "/mnt/c/Users/me/MAI"),
        ("d:/data/", "/mnt/d/data"),
        ("C:\\", "/mnt/c"),
        ("\\\\wsl$\\Ubuntu\\home\\me", "/home/me"),
        ("\\\\wsl.localhost\\Ubuntu", "/"),
        ("relative\\dir", "relative/dir"),
    ],
)
def test_windows_to_wsl(windows: str, inside: str) -> None:
    assert windows_to_wsl(windows) == inside


@pytest.mark.parametrize("bad", ["\\\\server\\share\\x", "C:relative", ""])
def test_windows_to_wsl_refuses(bad: str) -> None:
    with pytest.raises(InvalidInput):
        windows_to_wsl(bad)


def test_wsl_to_windows_and_round_trip() -> None:
    assert wsl_to_windows("/mnt/c/Users/me", "Ubuntu") == "C:\\Users\\me"
    assert wsl_to_windows("/home/me/MAI", "Ubuntu") == "\\\\wsl.localhost\\Ubuntu\\home\\me\\MAI"
    for path in ("/mnt/e/x/y", "/home/me/MAI"):
        assert windows_to_wsl(wsl_to_windows(path, "Ubuntu")) == path
    with pytest.raises(InvalidInput):
        wsl_to_windows("home/me", "Ubuntu")


def test_windows_build_and_portproxy() -> None:
    assert windows_build_supports_wsl2("10.0.19041")
    assert windows_build_supports_wsl2("10.0.22631")
    assert not windows_build_supports_wsl2("10.0.18363")
    assert not windows_build_supports_wsl2("6.1.7601")
    assert portproxy_argv(8095, "172.20.1.2")[-2:] == [
        "connectport=8095",
        "connectaddress=172.20.1.2",
    ]
    with pytest.raises(InvalidInput):
        portproxy_argv(0, "172.20.1.2")
    with pytest.raises(InvalidInput):
        portproxy_argv(80, "172.20.1.2 & calc")
