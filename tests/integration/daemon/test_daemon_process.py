"""cargobayd as a process: socket permissions, the pid-file lock, restart after SIGKILL,
SIGTERM and API shutdown, ensure_daemon (also racing), bad requests; no VM is booted."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from cargobay.errors import DaemonError, InvalidInput, NotFound
from cargobay.paths import Paths
from cargobay.sdk import AsyncCargoBayClient, CargoBayClient, daemon_environment, ensure_daemon
from tests.integration.daemon.conftest import Daemon

StartDaemon = Callable[[Paths], Daemon]


def test_socket_and_pidfile(test_paths: Paths, daemons: StartDaemon) -> None:
    daemon = daemons(test_paths)
    mode = stat.S_IMODE(test_paths.daemon_socket.stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(test_paths.runtime.stat().st_mode) == 0o700
    assert test_paths.daemon_pidfile.read_text().strip() == str(daemon.pid)
    info = daemon.client.info()
    assert info["pid"] == daemon.pid
    assert info["api_version"] == 1
    assert info["paths"]["socket"] == str(test_paths.daemon_socket)
    assert "qemu" in info["backends"]


def test_second_daemon_refuses_to_start(test_paths: Paths, daemons: StartDaemon) -> None:
    daemon = daemons(test_paths)
    second = subprocess.run(
        [sys.executable, "-m", "cargobay.daemon.server"],
        env=daemon_environment(test_paths),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert f"already running (pid {daemon.pid})" in second.stderr
    assert daemon.client.info()["pid"] == daemon.pid  # the first one is unharmed


def test_restart_after_sigkill(test_paths: Paths, daemons: StartDaemon) -> None:
    first = daemons(test_paths)
    first.kill(signal.SIGKILL)
    assert test_paths.daemon_socket.exists()  # stale
    with pytest.raises(DaemonError, match="not running; start it with `cargobay daemon start`"):
        first.client.info()
    second = daemons(test_paths)
    assert second.client.info()["pid"] == second.pid != first.pid


def test_sigterm_and_api_shutdown_clean_up(test_paths: Paths, daemons: StartDaemon) -> None:
    daemon = daemons(test_paths)
    assert daemon.kill(signal.SIGTERM) == 0
    assert not test_paths.daemon_socket.exists()
    assert not test_paths.daemon_pidfile.exists()
    daemon = daemons(test_paths)
    daemon.client.shutdown_daemon()
    assert daemon.proc.wait(timeout=30) == 0
    assert not test_paths.daemon_socket.exists()


def test_ensure_daemon_starts_one_detached_daemon_even_when_racing(test_paths: Paths) -> None:
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(ensure_daemon(test_paths, timeout=60))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pids = {r["pid"] for r in results}
    assert len(pids) == 1
    (pid,) = pids
    try:
        assert os.getsid(pid) == pid  # its own session: it outlives the caller's terminal
        assert ensure_daemon(test_paths, timeout=5)["pid"] == pid  # already running: reused
    finally:
        os.kill(pid, signal.SIGTERM)
    client = CargoBayClient(paths=test_paths)
    for _ in range(400):
        try:
            client.info()
        except DaemonError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("cargobayd still answers 20 s after SIGTERM")
    # No late starter takes over once the winner is gone (each racer used to spawn a
    # daemon of its own; a slow one could outlive the winner and keep running).
    time.sleep(2.5)
    with pytest.raises(DaemonError):
        client.info()


def test_bad_requests_do_not_hurt_the_daemon(test_paths: Paths, daemons: StartDaemon) -> None:
    daemon = daemons(test_paths)
    # Not HTTP at all, then a truncated request, then a connection closed at once.
    for payload in (b"\x00\xffgarbage\r\n\r\n", b"POST /v1/machines HTTP/1.1\r\nContent-Le", b""):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(test_paths.daemon_socket))
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(10)
            with_answer = sock.recv(4096)
            assert with_answer == b"" or with_answer.startswith(b"HTTP/1.1 4")
    with pytest.raises(InvalidInput, match="memory"):
        daemon.client.create_machine("box", memory="8XB")
    with pytest.raises(NotFound, match="no machine named 'ghost'"):
        daemon.client.exec("ghost", ["true"])
    assert daemon.client.info()["pid"] == daemon.pid
    assert daemon.alive()


async def test_async_client(test_paths: Paths, daemons: StartDaemon) -> None:
    daemon = daemons(test_paths)
    async with AsyncCargoBayClient(paths=test_paths) as client:
        assert (await client.info())["pid"] == daemon.pid
        assert await client.list_machines() == []
        with pytest.raises(NotFound):
            await client.get_machine("ghost")
        with pytest.raises(NotFound):
            [e async for e in client.exec_stream("ghost", ["true"])]


def test_client_without_a_daemon(test_paths: Paths) -> None:
    with pytest.raises(DaemonError, match="cargobayd is not running"):
        CargoBayClient(paths=test_paths).list_machines()


def test_daemon_environment_round_trips(tmp_path: Any) -> None:
    custom = Paths(
        data=tmp_path / "d" / "cargobay",
        state=tmp_path / "s" / "cargobay",
        cache=tmp_path / "c" / "cargobay",
        runtime=tmp_path / "r" / "cargobay",
        images_override=tmp_path / "img",
    )
    env = daemon_environment(custom, base={"HOME": str(tmp_path)})
    # no config directory of its own: the daemon's is the environment's default
    assert dataclasses.replace(Paths.from_env(env), config_dir=None) == custom
    assert Paths.from_env(env).config == tmp_path / ".config" / "cargobay"
    with_config = dataclasses.replace(custom, config_dir=tmp_path / "cfg" / "cargobay")
    env = daemon_environment(with_config, base={"HOME": str(tmp_path)})
    assert Paths.from_env(env) == with_config
