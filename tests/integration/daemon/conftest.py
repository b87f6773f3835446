"""A factory for real cargobayd processes, tracked and cleaned up.

``daemons(paths)`` starts ``python -m cargobay.daemon.server`` for a CargoBay home (the
environment carries CARGOBAY_HOME / CARGOBAY_IMAGES), waits until ``/v1/info`` answers and
returns a handle.  At the end of the test every daemon still running is stopped, and so is
every QEMU process whose command line names the home (a test that kills a daemon leaves
its VMs running on purpose); the end of each daemon log is printed (pytest shows it for
a failed test).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cargobay.paths import Paths
from cargobay.sdk import CargoBayClient, daemon_environment


@dataclass
class Daemon:
    paths: Paths
    proc: subprocess.Popen[bytes]
    client: CargoBayClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = CargoBayClient(paths=self.paths)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def wait_answering(client: CargoBayClient, proc: subprocess.Popen[bytes], timeout: float) -> None:
    from cargobay.errors import DaemonError

    deadline = time.monotonic() + timeout
    while True:
        try:
            client.info()
            return
        except DaemonError:
            if proc.poll() is not None:
                raise AssertionError(f"cargobayd exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise AssertionError("cargobayd did not answer in time") from None
            time.sleep(0.05)


def qemu_pids(marker: str) -> list[int]:
    """QEMU processes whose command line contains ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and b"qemu-system" in cmdline[0] and any(marker.encode() in a for a in cmdline):
            pids.append(int(entry.name))
    return pids


def kill_qemus(marker: str) -> None:
    for pid in qemu_pids(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def daemons() -> Iterator[Callable[[Paths], Daemon]]:
    started: list[Daemon] = []

    def start(paths: Paths) -> Daemon:
        paths.ensure()
        log = paths.daemon_log.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cargobay.daemon.server"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=daemon_environment(paths),
            start_new_session=True,
        )
        log.close()
        daemon = Daemon(paths, proc)
        started.append(daemon)
        wait_answering(daemon.client, proc, 30)
        return daemon

    yield start
    for daemon in started:
        if daemon.alive():
            daemon.kill(signal.SIGTERM)
        daemon.client.close()
    homes = {str(d.paths.data.parent) for d in started}
    for home in homes:
        kill_qemus(home)
    # Shown by pytest for a failed test only.
    for log_path in {d.paths.daemon_log for d in started}:
        if log_path.exists():
            print(f"--- {log_path} (end) ---")
            print(log_path.read_text(errors="replace")[-6000:])
