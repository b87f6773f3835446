"""Engine discovery path logic (DOCKER_HOST, contexts, sockets, rootless, macOS, Windows)
and the install hints, with temp dirs for homes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cargobay.containers.detect import (
    WINDOWS_PIPE,
    EngineEndpoint,
    candidate_endpoints,
    compose_availability,
    context_endpoint,
    current_context,
    install_hint,
    resolve_endpoint,
    unavailable,
)
from cargobay.errors import EngineUnavailable


def make_context(home: Path, name: str, host: str) -> Path:
    meta = home / ".docker" / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host}}})
    )
    return meta / "meta.json"


def use_context(home: Path, name: str) -> None:
    (home / ".docker").mkdir(exist_ok=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"currentContext": name}))


def test_docker_host_wins(tmp_path: Path) -> None:
    make_context(tmp_path, "remote", "tcp://10.0.0.1:2376")
    use_context(tmp_path, "remote")
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2375"}
    assert candidate_endpoints(env, tmp_path, system="linux") == [
        EngineEndpoint("tcp://127.0.0.1:2375", "DOCKER_HOST")
    ]


def test_current_context_from_config(tmp_path: Path) -> None:
    make_context(tmp_path, "colima", "unix:///Users/me/.colima/default/docker.sock")
    use_context(tmp_path, "colima")
    assert current_context({}, tmp_path) == "colima"
    assert candidate_endpoints({}, tmp_path, system="darwin") == [
        EngineEndpoint("unix:///Users/me/.colima/default/docker.sock", "context", "colima")
    ]


def test_docker_context_env_overrides_config(tmp_path: Path) -> None:
    make_context(tmp_path, "a", "unix:///a.sock")
    make_context(tmp_path, "b", "ssh://me@b")
    use_context(tmp_path, "a")
    assert context_endpoint("b", {}, tmp_path) == "ssh://me@b"
    [only] = candidate_endpoints({"DOCKER_CONTEXT": "b"}, tmp_path, system="linux")
    assert (only.url, only.context) == ("ssh://me@b", "b")


def test_docker_config_dir(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"currentContext": "x"}))
    meta = config / "contexts" / "meta" / hashlib.sha256(b"x").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Endpoints": {"docker": {"Host": "unix:///x"}}}))
    [only] = candidate_endpoints({"DOCKER_CONFIG": str(config)}, tmp_path / "home", system="linux")
    assert only.url == "unix:///x"


@pytest.mark.parametrize("content", ["{not json", json.dumps({"currentContext": "default"})])
def test_default_or_broken_config_means_no_context(tmp_path: Path, content: str) -> None:
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(content)
    assert current_context({}, tmp_path) is None


def test_missing_or_broken_context(tmp_path: Path) -> None:
    use_context(tmp_path, "gone")
    with pytest.raises(EngineUnavailable, match="context 'gone' does not exist"):
        candidate_endpoints({}, tmp_path, system="linux")
    path = make_context(tmp_path, "broken", "x")
    path.write_text(json.dumps({"Endpoints": {}}))
    with pytest.raises(EngineUnavailable, match="context 'broken' is unreadable"):
        context_endpoint("broken", {}, tmp_path)


def test_linux_sockets_root_and_rootless(tmp_path: Path) -> None:
    root = candidate_endpoints({}, tmp_path, system="linux", uid=0)
    assert [e.url for e in root] == ["unix:///var/run/docker.sock"]
    user = candidate_endpoints(
        {"XDG_RUNTIME_DIR": "/run/user/1000"}, tmp_path, system="linux", uid=1000
    )
    assert [(e.url, e.source) for e in user] == [
        ("unix:///var/run/docker.sock", "socket"),
        ("unix:///run/user/1000/docker.sock", "rootless"),
    ]
    other = candidate_endpoints({"XDG_RUNTIME_DIR": "/tmp/rt"}, tmp_path, system="linux", uid=1000)
    assert [e.url for e in other][1:] == [
        "unix:///tmp/rt/docker.sock",
        "unix:///run/user/1000/docker.sock",
    ]


def test_macos_sockets(tmp_path: Path) -> None:
    urls = [e.url for e in candidate_endpoints({}, tmp_path, system="darwin")]
    assert urls[0] == "unix:///var/run/docker.sock"
    assert f"unix://{tmp_path}/.docker/run/docker.sock" in urls
    assert f"unix://{tmp_path}/.colima/default/docker.sock" in urls
    assert f"unix://{tmp_path}/.orbstack/run/docker.sock" in urls


def test_windows_named_pipe_path_logic_only(tmp_path: Path) -> None:
    assert candidate_endpoints({}, tmp_path, system="win32") == [
        EngineEndpoint(WINDOWS_PIPE, "npipe"),
        EngineEndpoint("tcp://127.0.0.1:2375", "wsl2"),
    ]

    def windows_pipe_present_stub(url: str) -> bool:  # stands in for a Windows-only check
        return url == WINDOWS_PIPE

    def windows_pipe_absent_stub(url: str) -> bool:
        return False

    found = resolve_endpoint(
        env={}, home=tmp_path, system="win32", pipe_exists=windows_pipe_present_stub
    )
    assert found.url == "npipe:////./pipe/docker_engine"
    found = resolve_endpoint(
        env={}, home=tmp_path, system="win32", pipe_exists=windows_pipe_absent_stub
    )
    assert found == EngineEndpoint("tcp://127.0.0.1:2375", "wsl2")


def test_resolve_explicit_choices(tmp_path: Path) -> None:
    assert resolve_endpoint("tcp://h:1").source == "argument"
    found = resolve_endpoint(env={"DOCKER_HOST": "ssh://me@box"}, home=tmp_path, system="linux")
    assert found == EngineEndpoint("ssh://me@box", "DOCKER_HOST")


@pytest.mark.parametrize(
    ("system", "release", "expected"),
    [
        ("linux", {"ID": "debian"}, "apt-get install docker.io"),
        ("linux", {"ID": "ubuntu", "ID_LIKE": "debian"}, "apt-get install docker.io"),
        ("linux", {"ID": "linuxmint", "ID_LIKE": "ubuntu debian"}, "apt-get install docker.io"),
        ("linux", {"ID": "fedora"}, "dnf install moby-engine"),
        ("linux", {"ID": "rocky", "ID_LIKE": "rhel centos fedora"}, "dnf install"),
        ("linux", {"ID": "arch"}, "pacman -S docker"),
        ("linux", {}, "docs.docker.com/engine/install"),
        ("darwin", {}, "Docker Desktop"),
        ("darwin", {}, "colima start"),
        ("win32", {}, "WSL 2"),
    ],
)
def test_install_hints(system: str, release: dict[str, str], expected: str) -> None:
    assert expected in install_hint(system, release)


def test_linux_hint_mentions_the_group_and_starting() -> None:
    hint = install_hint("linux", {"ID": "debian"})
    assert "systemctl enable --now docker" in hint
    assert "usermod -aG docker" in hint


def test_unavailable_messages(tmp_path: Path) -> None:
    missing = EngineEndpoint(f"unix://{tmp_path}/none.sock", "socket")
    assert "no Docker Engine found" in str(unavailable(missing, OSError("x")))
    denied = EngineEndpoint("unix:///var/run/docker.sock", "socket")
    err = unavailable(denied, OSError("[Errno 13] Permission denied"))
    assert "docker group" in str(err)
    remote = EngineEndpoint("tcp://10.1.1.1:2375", "DOCKER_HOST")
    assert "does not answer" in str(unavailable(remote, OSError("timed out")))


def test_compose_availability(tmp_path: Path) -> None:
    plugins = tmp_path / ".docker" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "docker-compose"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    found = compose_availability({"PATH": str(bin_dir)}, tmp_path)
    assert found.builtin
    assert found.docker_cli_plugin == str(plugins / "docker-compose")
    assert found.docker_compose_v1 == str(tool)
    assert (
        compose_availability({"PATH": str(tmp_path / "none")}, tmp_path / "x").docker_compose_v1
        is None
    )
