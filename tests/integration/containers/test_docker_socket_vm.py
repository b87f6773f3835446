"""``cargobay docker-socket --vm``: the stock docker CLI through cargobayd to dockerd in a
machine of the ``docker`` image (TCG here: the boot and dockerd's start take 20-40 s).

One machine serves the whole scenario (booting is the expensive part): refusals before
the boot (a machine of the default image has no engine; a stopped machine is named),
then ``docker version``/``ps``, ``docker load`` of the host engine's ``docker save`` of
the busybox test image, ``docker run --rm``, and the error the CLI prints once the
machine is stopped under the socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import require_binary

from .conftest import BUSYBOX_IMAGE

if TYPE_CHECKING:
    from cargobay.images import ImageManifest
    from cargobay.paths import Paths

EXIT_NOT_FOUND, EXIT_CONFLICT = 3, 4


@dataclass
class Daemon:
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path

    def cli(self, *args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
        script = Path(sys.executable).parent / "cargobay"
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "cargobay.cli"]
        return subprocess.run(
            [*argv, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )


@pytest.fixture
def daemon(test_paths: Paths) -> Iterator[Daemon]:
    from cargobay.sdk import CargoBayClient, daemon_environment

    test_paths.ensure()
    env = daemon_environment(test_paths)
    env["CARGOBAY_AUTOSTART"] = "0"
    with test_paths.daemon_log.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cargobay.daemon.server"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    handle = Daemon(env, proc, test_paths.daemon_log)
    client = CargoBayClient(paths=test_paths)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                client.info()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"cargobayd did not come up:\n{handle.log.read_text()[-3000:]}")
                time.sleep(0.05)
    finally:
        client.close()
    try:
        yield handle
    finally:
        if proc.poll() is None:
            handle.cli("vm", "rm", "--force", "dock", timeout=60)
            handle.cli("vm", "rm", "--force", "plain", timeout=60)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        print(f"--- {handle.log} (end) ---\n{handle.log.read_text(errors='replace')[-4000:]}")


def docker(host: str, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    binary = require_binary("docker", "Debian: apt-get install docker.io")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = host
    return subprocess.run(
        [binary, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: {done.stderr}"
    return done.stdout


def test_docker_cli_through_a_machine(
    daemon: Daemon,
    docker_image: tuple[Path, ImageManifest],
    default_image: tuple[Path, ImageManifest],
    busybox_image: str,
    docker_engine: str,
    test_paths: Paths,
) -> None:
    assert "docker.io" in docker_image[1].packages
    tarball = test_paths.data.parent / "busybox.tar"
    ok(docker(docker_engine, "save", "-o", str(tarball), busybox_image))
    sock = test_paths.runtime / "docker-dock.sock"

    # Refusals that need no boot: no engine in the image; a machine that is not running.
    ok(daemon.cli("vm", "create", "plain", "--image", "default"))
    done = daemon.cli("docker-socket", "--vm", "plain", "--detach")
    assert done.returncode == EXIT_NOT_FOUND, done.stderr
    assert "has no Docker engine" in done.stderr
    assert "cargobay image build docker" in done.stderr
    ok(daemon.cli("vm", "create", "dock", "--image", "docker", "--memory", "768MB"))
    done = daemon.cli("docker-socket", "--vm", "dock", "--detach")
    assert done.returncode == EXIT_CONFLICT, done.stderr
    assert "start it" in done.stderr
    assert not sock.exists()

    started = time.monotonic()
    ok(daemon.cli("vm", "start", "dock"))
    booted = time.monotonic() - started
    done = daemon.cli("docker-socket", "--vm", "dock", "--wait", "120", "--detach")
    assert done.returncode == 0, done.stderr
    ready = time.monotonic() - started
    print(f"machine booted in {booted:.1f} s, dockerd answered after {ready:.1f} s")
    assert done.stdout.strip() == f"export DOCKER_HOST=unix://{sock}"
    host = f"unix://{sock}"

    version = ok(docker(host, "version", "--format", "{{.Server.Version}} {{.Server.Os}}"))
    assert version.split()[1] == "linux"
    assert version.split()[0].startswith("20.10")  # Debian bookworm's docker.io
    info = ok(docker(host, "info", "--format", "{{.Name}} {{.Driver}}"))
    assert info.split() == ["dock", "overlay2"]  # the guest's engine, not the host's
    assert "CONTAINER ID" in ok(docker(host, "ps"))
    ok(docker(host, "load", "-i", str(tarball)))
    assert ok(docker(host, "run", "--rm", BUSYBOX_IMAGE, "echo", "hi")) == "hi\n"
    assert ok(docker(host, "ps", "-a", "-q")) == ""  # --rm removed it
    # bridge networks (the bridge and veth modules cargobay-init loads)
    ok(docker(host, "network", "create", "appnet"))
    addr = ok(docker(host, "run", "--rm", "--network", "appnet", BUSYBOX_IMAGE, "ip", "-4", "a"))
    assert "eth0" in addr

    # dockerd goes away inside the machine: the CLI is told so (with where its log is),
    # and a new socket for the machine waits for it, then gives up naming why.
    ok(daemon.cli("vm", "exec", "dock", "--", "sh", "-c", "kill $(cat /var/run/docker.pid)"))
    for _ in range(100):
        if daemon.cli("vm", "exec", "dock", "--", "test", "-S", "/run/docker.sock").returncode:
            break
        time.sleep(0.2)
    done = docker(host, "ps")
    assert done.returncode != 0
    assert "dockerd in machine 'dock' does not answer" in done.stderr
    assert "/run/cargobay/dockerd.log" in done.stderr
    other = test_paths.runtime / "other.sock"
    done = daemon.cli("docker-socket", "--vm", "dock", "--wait", "1", "--socket", str(other))
    assert done.returncode == EXIT_NOT_FOUND, done.stderr
    assert "does not answer" in done.stderr
    assert not other.exists()

    # The machine stops under the socket: the CLI gets an error naming it.
    ok(daemon.cli("vm", "stop", "dock"))
    done = docker(host, "ps")
    assert done.returncode != 0
    assert "Error response from daemon" in done.stderr
    assert "dock" in done.stderr
    assert "start it" in done.stderr

    ok(daemon.cli("docker-socket", "--stop", str(sock)))
    assert not sock.exists()
    tarball.unlink()


def test_sockets_go_with_the_daemon(daemon: Daemon, docker_engine: str, test_paths: Paths) -> None:
    """A detached socket lives as long as the daemon: stopping cargobayd removes it."""
    sock = test_paths.runtime / "docker-host.sock"
    done = daemon.cli("docker-socket", "--host-engine", "--detach")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"export DOCKER_HOST=unix://{sock}"
    assert "CONTAINER ID" in ok(docker(f"unix://{sock}", "ps"))
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=30) == 0
    assert not sock.exists()
