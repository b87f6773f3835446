"""Engine detection against the real dockerd, and socket selection with real sockets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cargobay.containers.detect import EngineEndpoint, detect, resolve_endpoint
from cargobay.errors import EngineUnavailable

pytestmark = pytest.mark.integration


async def test_detect_the_running_engine(docker_engine: str) -> None:
    report = await detect(docker_engine)
    assert report.ping == "OK"
    assert report.os == "linux"
    assert report.version
    assert tuple(int(p) for p in report.api_version.split(".")) >= (1, 40)
    assert report.root_dir is not None
    assert report.disk_free is not None
    assert report.disk_total is not None
    assert 0 < report.disk_free <= report.disk_total
    assert report.storage_driver
    assert report.compose.builtin


async def test_detect_with_nothing_listening(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match=r"no Docker Engine found.*install"):
        await detect(f"unix://{tmp_path}/missing.sock")
    dead = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(dead))  # a socket file nobody accepts on
    with pytest.raises(EngineUnavailable, match="does not answer"):
        await detect(f"unix://{dead}")


def test_resolve_picks_the_first_existing_socket(tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir()
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    system_socket = Path("/var/run/docker.sock").is_socket()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(runtime / "docker.sock"))
        found = resolve_endpoint(env=env, home=tmp_path, system="linux")
    if system_socket:
        assert found == EngineEndpoint("unix:///var/run/docker.sock", "socket")
    else:
        assert found == EngineEndpoint(f"unix://{runtime}/docker.sock", "rootless")
