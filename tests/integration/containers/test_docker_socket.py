"""``cargobay docker-socket --host-engine``: the stock docker CLI through cargobayd's
forwarding socket to the host's dockerd (the session's ``docker_engine``), and the
rules on socket paths (stale sockets replaced, live ones and other files refused)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require_binary

from .conftest import BUSYBOX_IMAGE, CargoBayd

EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT = 2, 3, 4


def docker(
    sock: Path, *args: str, stdin: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    binary = require_binary("docker", "Debian: apt-get install docker.io")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = f"unix://{sock}"
    return subprocess.run(
        [binary, *args],
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[bytes]) -> str:
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode()


def sockets(cargobayd: CargoBayd) -> list[dict[str, object]]:
    done = cargobayd.cli("docker-socket", "--list", "--json")
    assert done.returncode == 0, done.stderr
    result: list[dict[str, object]] = json.loads(done.stdout)
    return result


def test_the_docker_cli_through_the_socket(
    cargobayd: CargoBayd, busybox_image: str, docker_engine: str, tmp_path: Path
) -> None:
    sock = tmp_path / "d.sock"
    done = cargobayd.cli("docker-socket", "--host-engine", "--socket", str(sock), "--detach")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"export DOCKER_HOST=unix://{sock}"
    assert sock.is_socket()
    assert (sock.stat().st_mode & 0o777) == 0o600
    try:
        direct = Path(docker_engine.removeprefix("unix://"))
        fmt = "{{.Server.Version}} {{.Server.APIVersion}}"
        assert ok(docker(sock, "version", "--format", fmt)) == ok(
            docker(direct, "version", "--format", fmt)
        )
        assert "CONTAINER ID" in ok(docker(sock, "ps"))
        assert ok(docker(sock, "run", "--rm", BUSYBOX_IMAGE, "echo", "hi")) == "hi\n"
        # stdin through a hijacked attach, ended by the client's half-close
        data = os.urandom(200_000).hex().encode()
        out = docker(sock, "run", "--rm", "-i", BUSYBOX_IMAGE, "sha256sum", stdin=data)
        assert ok(out).split()[0] == hashlib.sha256(data).hexdigest()
        listed = [s for s in sockets(cargobayd) if s["socket"] == str(sock)]
        assert len(listed) == 1
        assert listed[0]["target"] == "host"
        assert listed[0]["upstream"] == docker_engine
        assert isinstance(listed[0]["connections"], int)
        assert listed[0]["connections"] >= 4
        assert isinstance(listed[0]["bytes_in"], int)
        assert listed[0]["bytes_in"] > len(data)
    finally:
        done = cargobayd.cli("docker-socket", "--stop", str(sock))
    assert done.returncode == 0, done.stderr
    assert not sock.exists()
    assert not [s for s in sockets(cargobayd) if s["socket"] == str(sock)]


def test_foreground_until_ctrl_c(cargobayd: CargoBayd, docker_engine: str, tmp_path: Path) -> None:
    sock = tmp_path / "fg.sock"
    script = Path(sys.executable).parent / "cargobay"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "cargobay.cli"]
    proc = subprocess.Popen(
        [*argv, "docker-socket", "--host-engine", "--socket", str(sock)],
        env=cargobayd.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.strip() == f"export DOCKER_HOST=unix://{sock}"
        assert sock.is_socket()
        assert "CONTAINER ID" in ok(docker(sock, "ps"))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not sock.exists()
    assert not [s for s in sockets(cargobayd) if s["socket"] == str(sock)]


def test_socket_paths_in_use_are_refused_stale_ones_replaced(
    cargobayd: CargoBayd, docker_engine: str, tmp_path: Path
) -> None:
    def start(path: Path) -> subprocess.CompletedProcess[str]:
        return cargobayd.cli("docker-socket", "--host-engine", "--socket", str(path), "-d")

    plain = tmp_path / "plain"
    plain.write_text("keep me")
    done = start(plain)
    assert done.returncode == EXIT_CONFLICT
    assert "not a socket" in done.stderr
    assert plain.read_text() == "keep me"

    live = tmp_path / "live.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(live))
    server.listen()
    try:
        done = start(live)
        assert done.returncode == EXIT_CONFLICT
        assert "in use" in done.stderr
    finally:
        server.close()
    # now nobody listens on it: a stale socket, replaced
    assert live.is_socket()
    done = start(live)
    assert done.returncode == 0, done.stderr
    try:
        assert "CONTAINER ID" in ok(docker(live, "ps"))
        again = start(live)
        assert again.returncode == EXIT_CONFLICT
        assert "already a docker socket of this daemon" in again.stderr
    finally:
        assert cargobayd.cli("docker-socket", "--stop", str(live)).returncode == 0
    assert not live.exists()


def test_usage_and_missing_targets(cargobayd: CargoBayd, tmp_path: Path) -> None:
    done = cargobayd.cli("docker-socket")
    assert done.returncode == EXIT_USAGE
    assert "--vm NAME" in done.stderr
    done = cargobayd.cli("docker-socket", "--vm", "nosuchvm", "--socket", str(tmp_path / "x"))
    assert done.returncode == EXIT_NOT_FOUND
    assert "nosuchvm" in done.stderr
    assert not (tmp_path / "x").exists()
    done = cargobayd.cli("docker-socket", "--stop", "/tmp/no/such.sock")
    assert done.returncode == EXIT_NOT_FOUND


async def test_async_sdk(cargobayd: CargoBayd, docker_engine: str, tmp_path: Path) -> None:
    from cargobay.errors import NotFound
    from cargobay.sdk import AsyncCargoBayClient
    from cargobay.sdk.docker_sockets import AsyncDockerSocketsClient

    sock = tmp_path / "sdk.sock"
    async with AsyncCargoBayClient(socket_path=cargobayd.home / "run" / "cargobayd.sock") as c:
        api = AsyncDockerSocketsClient(c)
        info = await api.create(host_engine=True, socket=str(sock))
        assert info["docker_host"] == f"unix://{sock}"
        assert (await api.get(info["id"]))["socket"] == str(sock)
        assert info["id"] in [s["id"] for s in await api.list()]
        await api.delete(info["id"])
        assert not sock.exists()
        with pytest.raises(NotFound, match="no docker socket"):
            await api.get(info["id"])
