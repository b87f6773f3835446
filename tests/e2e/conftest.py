"""End-to-end fixtures: the real ``cargobay``/``aiva`` commands against a real cargobayd
and real QEMU.

``bay`` gives a module its own short CARGOBAY_HOME (``/tmp/cbe-XXXXXX``) sharing the test
image store (``default_image`` from tests/integration/conftest.py, built once per session),
and runs the command lines as child processes in it.  The first command starts the
daemon (the CLI does that itself).  Teardown removes every machine left, stops the
daemon, and as a last resort kills, by pid, any process started for this home (a daemon
or a QEMU that outlived a failed test: its command line or CARGOBAY_HOME names the
home).  After a failure the home is kept and the end of the daemon log is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import default_image

__all__ = ["Bay", "Run", "bay", "default_image"]

CLI_TIMEOUT = 240.0


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n-> exit {self.returncode}\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )

    @property
    def error_line(self) -> str:
        """The single ``error: ...`` line of a failed command (asserting there is one)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1, self
        assert "Traceback" not in self.stderr, self
        return errors[0]


def _entry(name: str) -> list[str]:
    """The installed console script next to this Python, else ``python -m``."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    module = "cargobay.cli" if name == "cargobay" else "cargobay.cli.aiva"
    return [sys.executable, "-m", module]


@dataclass
class Bay:
    home: Path
    images: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, prog: str, *args: str, timeout: float = CLI_TIMEOUT) -> Run:
        argv = [*_entry(prog), *args]
        proc = subprocess.run(
            argv,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return Run([prog, *args], proc.returncode, proc.stdout, proc.stderr)

    def cargobay(self, *args: str, timeout: float = CLI_TIMEOUT) -> Run:
        return self.run("cargobay", *args, timeout=timeout)

    def aiva(self, *args: str, timeout: float = CLI_TIMEOUT) -> Run:
        return self.run("aiva", *args, timeout=timeout)

    def machines(self) -> list[dict[str, Any]]:
        r = self.cargobay("vm", "ls", "--json")
        assert r.returncode == 0, r
        data = json.loads(r.stdout)
        assert isinstance(data, list), r
        return data

    def daemon_answers(self) -> bool:
        r = self.cargobay("daemon", "status", "--json", timeout=30)
        return r.returncode == 0 and json.loads(r.stdout).get("running") is True

    @property
    def daemon_log(self) -> Path:
        return self.home / "state" / "logs" / "cargobayd.log"


def _our_processes(home: Path) -> list[int]:
    """Pids of processes started for ``home``: their command line names it (QEMU's
    sockets) or their environment has CARGOBAY_HOME=home (the daemon and its children)."""
    in_cmdline = str(home).encode()
    in_environ = b"CARGOBAY_HOME=" + str(home).encode() + b"\0"
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if in_cmdline in cmdline or in_environ in environ:
            pids.append(int(entry.name))
    return pids


def _daemon_pid(home: Path) -> int | None:
    try:
        return int((home / "run" / "cargobayd.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def bay(request: pytest.FixtureRequest, default_image: tuple[Path, object]) -> Iterator[Bay]:
    image_dir, _manifest = default_image
    home = Path(tempfile.mkdtemp(prefix="cbe-", dir="/tmp"))
    env = dict(os.environ)
    env.pop("CARGOBAY_AUTOSTART", None)
    env.update(CARGOBAY_HOME=str(home), CARGOBAY_IMAGES=str(image_dir.parent))
    b = Bay(home=home, images=image_dir.parent, env=env)
    failed_before = request.session.testsfailed
    try:
        yield b
    finally:
        leftovers: list[str] = []
        if (home / "run" / "cargobayd.sock").exists() and b.daemon_answers():
            for m in b.machines():
                leftovers.append(str(m.get("name")))
                b.cargobay("vm", "rm", "--force", str(m.get("name")), timeout=120)
            b.cargobay("daemon", "stop", timeout=60)
        pid = _daemon_pid(home)
        if pid is not None and pid in _our_processes(home):
            _kill(pid)
        time.sleep(0.2)
        stray = _our_processes(home)
        for p in stray:
            _kill(p)
        tests_failed = request.session.testsfailed > failed_before
        if tests_failed or stray:
            log = b.daemon_log.read_text(errors="replace") if b.daemon_log.exists() else ""
            print(f"\nkept the CargoBay home {home}; daemon log ends with:\n{log[-4000:]}")
        else:
            shutil.rmtree(home, ignore_errors=True)
        assert not stray, f"processes outlived the daemon: {stray}"
        # After a failed test, leftovers are its consequence, not news.
        assert tests_failed or not leftovers, f"machines left behind by the tests: {leftovers}"
