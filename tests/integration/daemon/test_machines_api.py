"""cargobayd as a process with real VMs, through the SDK: boot, exec, logs, the bad inputs
of issue 3 (each a one-line error, the daemon still up, nothing half-created left), and
re-adoption of a running VM after the daemon is killed with SIGKILL, and a VM that died
while the daemon was down becoming ERROR.

One VM is booted for the module and reused; a second boot (a guest that never answers)
is the only other one.  The daemon sees an image store holding the shared default image
and a variant whose agent never starts (see tests/integration/machines/variants.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cargobay.errors import Conflict, GuestTimeout, InvalidInput, NotFound
from cargobay.images import ImageManifest
from cargobay.machines.process import process_alive
from cargobay.paths import Paths
from cargobay.sdk import CargoBayClient, daemon_environment
from tests.integration.daemon.conftest import kill_qemus, qemu_pids, wait_answering
from tests.integration.machines.variants import (
    NEVER_ANSWERS,
    PANICS,
    image_store_with_variants,
    shared_cache_dir,
)

pytestmark = pytest.mark.slow

NAME = "api"


@dataclass
class Setup:
    paths: Paths
    client: CargoBayClient
    procs: list[subprocess.Popen[bytes]]

    def start_daemon(self) -> subprocess.Popen[bytes]:
        with self.paths.daemon_log.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cargobay.daemon.server"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=daemon_environment(self.paths),
                start_new_session=True,
            )
        self.procs.append(proc)
        wait_answering(self.client, proc, 30)
        return proc

    @property
    def daemon(self) -> subprocess.Popen[bytes]:
        return self.procs[-1]

    def assert_daemon_up(self) -> None:
        assert self.daemon.poll() is None
        assert self.client.info()["pid"] == self.daemon.pid


@pytest.fixture(scope="module")
def setup(default_image: tuple[Path, ImageManifest]) -> Iterator[Setup]:
    home = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    images = image_store_with_variants(home / "images", default_image[0])
    (home / "cache").symlink_to(shared_cache_dir())  # shares the KVM probe's verdict
    paths = Paths.from_env({"CARGOBAY_HOME": str(home), "CARGOBAY_IMAGES": str(images)})
    paths.ensure()
    s = Setup(paths, CargoBayClient(paths=paths), [])
    s.start_daemon()
    failed = True
    try:
        yield s
        failed = False
    finally:
        for proc in s.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
        s.client.close()
        leftovers = qemu_pids(str(home))
        kill_qemus(str(home))
        print(paths.daemon_log.read_text(errors="replace")[-8000:])
        if not failed:
            shutil.rmtree(home, ignore_errors=True)
        assert leftovers == [], "QEMU processes were left running"


def qemu_pid(setup: Setup) -> int:
    handle = setup.client.get_machine(NAME)["runtime"]["handle"]
    assert handle is not None
    return int(handle["pid"])


def test_images(setup: Setup, default_image: tuple[Path, ImageManifest]) -> None:
    names = [i["name"] for i in setup.client.list_images()]
    assert names == sorted(["default", NEVER_ANSWERS, PANICS])
    # The shared image is up to date (the session fixture built it): a quick "done".
    events = list(setup.client.build_image("default"))
    assert events[-1]["type"] == "done"
    assert events[-1]["image"]["recipe_hash"] == default_image[1].recipe_hash
    assert all(e["type"] == "progress" for e in events[:-1])
    assert all({"step", "fraction", "message"} <= e.keys() for e in events[:-1])
    setup.client.delete_image(PANICS)
    assert PANICS not in [i["name"] for i in setup.client.list_images()]
    assert (default_image[0] / "rootfs.ext4").is_file()  # links removed, not their targets
    with pytest.raises(NotFound, match="no image named"):
        setup.client.delete_image(PANICS)
    with pytest.raises(InvalidInput, match="invalid image name"):
        list(setup.client.build_image("Bad/Name"))


def test_create_boots_and_answers(setup: Setup) -> None:
    m = setup.client.create_machine(NAME, memory="320MB", disk="256MB", boot_timeout=180)
    assert m["name"] == NAME
    assert m["state"] == {"kind": "running", "reason": None}
    assert m["agent_ready"] is True
    assert m["config"]["memory_mb"] == 320
    assert m["runtime"]["accel"] in ("kvm", "tcg")
    assert setup.client.info()["accel"] == m["runtime"]["accel"]
    assert [x["name"] for x in setup.client.list_machines()] == [NAME]
    assert process_alive(qemu_pid(setup))


def test_exec_stream_and_result(setup: Setup) -> None:
    events = list(setup.client.exec_stream(NAME, ["sh", "-c", "echo one; echo two >&2; exit 7"]))
    assert events[0]["type"] == "started"
    assert events[-1]["type"] == "exit"
    assert events[-1]["exit_code"] == 7
    assert {e["type"] for e in events[1:-1]} <= {"stdout", "stderr"}
    result = setup.client.exec(NAME, ["cat"], stdin=b"\x00binary\xff")
    assert result.stdout == b"\x00binary\xff"
    assert result.exit_code == 0


def test_logs(setup: Setup) -> None:
    full = "".join(setup.client.logs(NAME))
    tail = "".join(setup.client.logs(NAME, tail=3))
    assert tail.count("\n") <= 3
    assert full.endswith(tail)


def test_bad_inputs_are_one_line_errors_and_the_daemon_stays_up(setup: Setup) -> None:
    c = setup.client
    cases: list[tuple[type[Exception], str, object]] = [
        (Conflict, f"used by machine(s) {NAME}", lambda: c.delete_image("default")),
        (NotFound, "no machine named 'ghost'", lambda: c.exec("ghost", ["true"])),
        (NotFound, "no machine named 'ghost'", lambda: c.stop("ghost")),
        (Conflict, "already exists", lambda: c.create_machine(NAME, start=False)),
        (InvalidInput, "bad memory '8XB'", lambda: c.create_machine("x", memory="8XB")),
        (NotFound, "cargobay image build nosuch", lambda: c.create_machine("x", image="nosuch")),
        (Conflict, f"'{NAME}' is already running", lambda: c.start(NAME)),
        (Conflict, "--force", lambda: c.delete(NAME)),
    ]
    for error, words, call in cases:
        with pytest.raises(error) as info:
            call()  # type: ignore[operator]
        assert words in str(info.value)
        assert "\n" not in str(info.value)
        setup.assert_daemon_up()
    assert [m["name"] for m in c.list_machines()] == [NAME]


def test_guest_that_never_answers(setup: Setup) -> None:
    machines_before = sorted(p.name for p in setup.paths.machines.iterdir())
    with pytest.raises(GuestTimeout) as info:
        setup.client.create_machine(
            "mute", image=NEVER_ANSWERS, memory="256MB", disk="64MB", boot_timeout=6
        )
    first_line = str(info.value).splitlines()[0]
    assert "did not answer within 6 s" in first_line
    assert "--boot-timeout" in first_line
    setup.assert_daemon_up()
    assert [m["name"] for m in setup.client.list_machines()] == [NAME]
    assert sorted(p.name for p in setup.paths.machines.iterdir()) == machines_before
    assert qemu_pids(str(setup.paths.data.parent)) == [qemu_pid(setup)]


def test_daemon_killed_and_restarted_adopts_the_running_vm(setup: Setup) -> None:
    pid_before = qemu_pid(setup)
    old = setup.daemon
    old.send_signal(signal.SIGKILL)
    old.wait(timeout=30)
    assert process_alive(pid_before)  # the VM outlives the daemon
    setup.start_daemon()
    m = setup.client.get_machine(NAME)
    assert m["state"]["kind"] == "running"
    assert m["runtime"]["handle"]["pid"] == pid_before
    assert m["agent_ready"] is False  # reconnected on first use
    result = setup.client.exec(NAME, ["echo", "still here"])
    assert result.stdout == b"still here\n"
    assert setup.client.get_machine(NAME)["agent_ready"] is True
    assert qemu_pid(setup) == pid_before
    assert qemu_pids(str(setup.paths.data.parent)) == [pid_before]


def test_daemon_shut_down_through_the_api_leaves_the_vm_running(setup: Setup) -> None:
    pid_before = qemu_pid(setup)
    setup.client.shutdown_daemon()
    assert setup.daemon.wait(timeout=30) == 0
    assert process_alive(pid_before)
    setup.start_daemon()
    assert setup.client.exec(NAME, ["true"]).exit_code == 0
    assert qemu_pid(setup) == pid_before


def test_pause_and_resume(setup: Setup) -> None:
    assert setup.client.pause(NAME)["state"]["kind"] == "paused"
    with pytest.raises(Conflict, match="paused; resume it"):
        setup.client.exec(NAME, ["true"])
    assert setup.client.resume(NAME)["state"]["kind"] == "running"
    assert setup.client.exec(NAME, ["true"]).exit_code == 0


def test_hypervisors_say_what_is_offered_and_why(setup: Setup) -> None:
    backends = {b["name"]: b for b in setup.client.hypervisors()}
    assert backends["qemu"]["available"] is True
    firecracker = backends["firecracker"]
    # No firecracker binary on these machines (and KVM cannot boot guests here).
    assert firecracker["available"] is ("firecracker" in setup.client.info()["backends"])
    if not firecracker["available"]:
        assert "firecracker" in firecracker["reason"].lower()


def test_snapshot_and_fork_through_the_api(setup: Setup) -> None:
    c = setup.client
    assert c.exec(NAME, ["sh", "-c", "echo api > /tmp/mark"]).ok
    info = c.take_snapshot(NAME, "api1")
    assert info["tag"] == "api1"
    assert [s["tag"] for s in c.snapshots(NAME)] == ["api1"]
    with pytest.raises(Conflict, match="already has a snapshot"):
        c.take_snapshot(NAME, "api1")
    with pytest.raises(InvalidInput, match="bad snapshot tag"):
        c.take_snapshot(NAME, "../x")
    with pytest.raises(NotFound, match="no snapshot 'nope'"):
        c.fork(NAME, 1, snapshot="nope")
    clones = c.fork(NAME, 1, snapshot="api1", boot_timeout=120)
    assert [m["name"] for m in clones] == [f"{NAME}-1"]
    assert clones[0]["state"]["kind"] == "running"
    result = c.exec(f"{NAME}-1", ["cat", "/tmp/mark"])
    assert result.stdout == b"api\n"
    c.delete(f"{NAME}-1", force=True)
    c.delete_snapshot(NAME, "api1")
    assert c.snapshots(NAME) == []
    setup.assert_daemon_up()


def test_vm_gone_while_the_daemon_was_down_is_an_error(setup: Setup) -> None:
    pid = qemu_pid(setup)
    setup.daemon.send_signal(signal.SIGKILL)
    setup.daemon.wait(timeout=30)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while process_alive(pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    setup.start_daemon()
    m = setup.client.get_machine(NAME)
    assert m["state"]["kind"] == "error"
    assert "ended while cargobayd was not running" in m["state"]["reason"]
    assert m["runtime"]["handle"] is None
    with pytest.raises(Conflict, match=f"cargobay vm start {NAME}"):
        setup.client.exec(NAME, ["true"])
    assert "".join(setup.client.logs(NAME, tail=5))  # the console log is kept


def test_delete_leaves_nothing(setup: Setup) -> None:
    setup.client.delete(NAME)
    assert setup.client.list_machines() == []
    assert list(setup.paths.machines.iterdir()) == []
    assert qemu_pids(str(setup.paths.data.parent)) == []
    with pytest.raises(NotFound):
        setup.client.get_machine(NAME)
    setup.assert_daemon_up()
