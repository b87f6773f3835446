"""The command lines end to end: real cargobayd, real QEMU (TCG here), the built image.

Boots are few (each is seconds under TCG): one per ``cargobay run`` test and one machine,
``box``, that the aiva flow and the bad-input tests share.  Tests run in file order and
the flow's last test stops and removes ``box``; the ``bay`` fixture then checks that no
machine and no process was left behind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Bay

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BOX = "box"
SMALL = ("--memory", "384MB")


def assert_nothing_left(bay: Bay, *keep: str) -> None:
    assert sorted(str(m["name"]) for m in bay.machines()) == sorted(keep)


# -- cargobay run ---------------------------------------------------------------------------


def test_run_echo(bay: Bay) -> None:
    """The main job: the first command starts the daemon (with a note), boots, runs, removes."""
    r = bay.cargobay("run", "--rm", *SMALL, "--", "echo", "hi")
    assert r.returncode == 0, r
    assert r.stdout == "hi\n", r
    assert "cargobayd is not running; starting it" in r.stderr
    steps = [line.split()[0] for line in r.stderr.splitlines() if line.strip()]
    for step in ("create", "boot", "exec", "remove", "total"):
        assert step in steps, r
    assert_nothing_left(bay)
    assert bay.daemon_answers()


def test_run_passes_the_exit_code_through(bay: Bay) -> None:
    r = bay.cargobay("run", "--rm", *SMALL, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7, r
    assert r.stdout == "out\n", r
    assert "err\n" in r.stderr
    assert "starting it" not in r.stderr  # the daemon from the first test is still up
    assert_nothing_left(bay)


# -- the aiva flow, on one machine -----------------------------------------------------------


def test_aiva_init_creates_without_starting(bay: Bay) -> None:
    r = bay.aiva("init", BOX, *SMALL)
    assert r.returncode == 0, r
    r = bay.aiva("status", BOX, "--format", "json")
    assert r.returncode == 0, r
    m = json.loads(r.stdout)
    assert m["name"] == BOX
    assert m["state"]["kind"] == "stopped"
    assert m["config"]["memory_mb"] == 384


def test_aiva_start(bay: Bay) -> None:
    r = bay.aiva("start", BOX)
    assert r.returncode == 0, r
    assert f"{BOX} is running" in r.stderr
    r = bay.aiva("status", BOX, "--format", "json")
    m = json.loads(r.stdout)
    assert m["state"]["kind"] == "running", m
    assert m["agent_ready"] is True
    assert m["runtime"]["accel"] in ("kvm", "tcg")


def test_aiva_status_formats(bay: Bay) -> None:
    listing = json.loads(bay.aiva("status", "--format", "json").stdout)
    assert [m["name"] for m in listing] == [BOX]
    yaml_text = bay.aiva("status", BOX, "--format", "yaml").stdout
    assert f"name: {BOX}" in yaml_text
    table = bay.aiva("status").stdout.splitlines()
    assert table[0].split()[:2] == ["NAME", "STATE"]
    assert table[1].split()[:2] == [BOX, "running"]
    assert json.loads(bay.cargobay("vm", "ls", "--json").stdout) == listing


def test_aiva_exec(bay: Bay) -> None:
    r = bay.aiva("exec", BOX, "--", "sh", "-c", "uname -n; echo to-stderr >&2")
    assert r.returncode == 0, r
    assert r.stdout == f"{BOX}\n"
    assert r.stderr == "to-stderr\n"
    assert bay.aiva("exec", BOX, "--", "sh", "-c", "exit 7").returncode == 7
    assert bay.aiva("exec", BOX, "--", "sh", "-c", "kill -9 $$").returncode == 137
    r = bay.cargobay("vm", "exec", "-e", "GREETING=hello", BOX, "--", "sh", "-c", "echo $GREETING")
    assert (r.returncode, r.stdout) == (0, "hello\n"), r


def test_aiva_exec_writes_persist_on_the_data_disk(bay: Bay) -> None:
    r = bay.aiva("exec", BOX, "--", "sh", "-c", "echo kept > /root/note && sync")
    assert r.returncode == 0, r
    assert bay.aiva("exec", BOX, "--", "cat", "/root/note").stdout == "kept\n"


def test_aiva_logs(bay: Bay) -> None:
    """The serial console log: a line the guest writes to its console shows up in it."""
    marker = "cli-e2e-console-marker"
    r = bay.aiva("exec", BOX, "--", "sh", "-c", f"echo {marker} > /dev/console")
    assert r.returncode == 0, r
    r = bay.aiva("logs", BOX)
    assert r.returncode == 0, r
    assert marker in r.stdout, r.stdout[-2000:]
    tail = bay.aiva("logs", BOX, "--tail", "2")
    assert tail.returncode == 0, tail
    lines = [line.strip() for line in tail.stdout.splitlines()]
    assert 1 <= len(lines) <= 2, tail
    assert marker in lines, tail


# -- bad input, with box running ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("aiva", "status", "ghost"), 3, "ghost"),
        (("aiva", "exec", "ghost", "--", "true"), 3, "ghost"),
        (("aiva", "stop", "ghost"), 3, "ghost"),
        (("aiva", "rm", "ghost"), 3, "ghost"),
        (("aiva", "init", BOX), 4, BOX),
        (("aiva", "start", BOX), 4, BOX),
        (("aiva", "rm", BOX), 4, BOX),
        (("aiva", "init", "Bad_Name!"), 2, "Bad_Name!"),
        (("aiva", "init", "x", "--memory", "8XB"), 2, "8XB"),
        (("cargobay", "run", "--rm", "--image", "nosuch", "--", "true"), 3, "nosuch"),
        (("cargobay", "image", "rm", "nosuch"), 3, "nosuch"),
        (("aiva", "start", "slow", "--boot-timeout", "0.5"), 1, "did not answer"),
        (("cargobay", "run", "--rm", "--boot-timeout", "0.5", "--", "true"), 1, "did not answer"),
    ],
    ids=[
        "unknown-status",
        "unknown-exec",
        "unknown-stop",
        "unknown-rm",
        "duplicate-name",
        "second-start",
        "rm-running",
        "bad-name",
        "bad-memory",
        "missing-image",
        "rm-missing-image",
        "guest-never-answers",
        "run-guest-never-answers",
    ],
)
def test_bad_input(bay: Bay, args: tuple[str, ...], code: int, words: str) -> None:
    """One line that says what is wrong, a non-zero exit of the right kind, the daemon
    still up, nothing half-made left behind, box untouched."""
    r = bay.run(*args)
    assert r.returncode == code, r
    assert words in r.error_line
    assert r.stdout == ""
    # One call shows the daemon answering, nothing new left behind and box untouched.
    machines = bay.machines()
    assert [(m["name"], m["state"]["kind"]) for m in machines] == [(BOX, "running")]


# -- the end of the flow ----------------------------------------------------------------------


def test_deploy_and_app_logs(bay: Bay, tmp_path: Path) -> None:
    app = tmp_path / "hello"
    app.mkdir()
    (app / "cargobay-app.yaml").write_text("name: hello\ncommand: sh run.sh v1\n")
    (app / "run.sh").write_text('echo "hello $1 from $(pwd)"; exec sleep 600\n')
    r = bay.aiva("deploy", BOX, str(app), "--json")
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["guest_dir"] == "/root/apps/hello"
    assert wait_app_log(bay, "hello v1 from /root/apps/hello")
    r = bay.aiva("deploy", BOX, str(app))  # running: replacing it needs --restart
    assert r.returncode != 0
    assert "--restart" in r.stderr
    r = bay.cargobay("vm", "deploy", BOX, str(app), "--command", "sh run.sh v2", "--restart")
    assert r.returncode == 0, r
    assert wait_app_log(bay, "hello v2 from /root/apps/hello")
    count = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done | grep -c '^sleep 600'"
    r = bay.aiva("exec", BOX, "--", "sh", "-c", count)
    assert r.stdout.strip() == "1", r  # the first one was stopped
    status = json.loads(bay.aiva("status", BOX, "--json").stdout)
    assert status["config"]["apps"] == {"hello": "sh run.sh v2"}
    r = bay.aiva("logs", BOX, "--source", "all", "--tail", "5")
    assert "[app] hello v2" in r.stdout, r


def wait_app_log(bay: Bay, line: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = bay.aiva("logs", BOX, "--source", "app")
        if line in r.stdout:
            return True
        time.sleep(0.5)
    return False


def test_snapshot_and_fork(bay: Bay) -> None:
    assert bay.aiva("exec", BOX, "--", "sh", "-c", "echo in-ram > /tmp/mark").returncode == 0
    r = bay.aiva("snapshot", BOX, "--tag", "c1", "--json")
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["tag"] == "c1"
    listed = json.loads(bay.cargobay("vm", "snapshots", BOX, "--json").stdout)
    assert [s["tag"] for s in listed] == ["c1"]
    assert bay.aiva("snapshot", BOX, "--tag", "c1").returncode != 0  # the tag is taken
    r = bay.cargobay("vm", "fork", BOX, "--count", "1", "--snapshot", "c1", "--json")
    assert r.returncode == 0, r
    (clone,) = json.loads(r.stdout)
    assert clone["name"] == f"{BOX}-1"
    r = bay.aiva("exec", clone["name"], "--", "sh", "-c", "uname -n; cat /tmp/mark")
    assert (r.returncode, r.stdout) == (0, f"{BOX}-1\nin-ram\n"), r
    assert bay.aiva("rm", "--force", clone["name"]).returncode == 0


def test_aiva_stop_and_rm(bay: Bay) -> None:
    r = bay.aiva("stop", BOX)
    assert r.returncode == 0, r
    assert json.loads(bay.aiva("status", BOX, "--json").stdout)["state"]["kind"] == "stopped"
    # A warm start from the snapshot: the guest's RAM (its tmpfs) is back, no boot.
    r = bay.aiva("start", BOX, "--snapshot", "c1")
    assert r.returncode == 0, r
    assert bay.aiva("exec", BOX, "--", "cat", "/tmp/mark").stdout == "in-ram\n"
    assert bay.aiva("stop", BOX).returncode == 0
    # The data volume grows on a stopped machine and never shrinks.
    r = bay.aiva("disk", "resize", BOX, "3GB")
    assert r.returncode == 0, r
    assert json.loads(bay.aiva("status", BOX, "--json").stdout)["config"]["disk_mb"] == 3072
    r = bay.cargobay("vm", "disk", "resize", BOX, "1GB")
    assert r.returncode != 0
    assert "only grows" in r.stderr
    r = bay.aiva("stop", BOX)
    assert r.returncode == 0, r  # stopping a stopped machine changes nothing
    r = bay.aiva("rm", BOX)
    assert r.returncode == 0, r
    assert_nothing_left(bay)
    assert bay.aiva("status", BOX).returncode == 3


def test_images_and_daemon(bay: Bay) -> None:
    images = json.loads(bay.cargobay("image", "ls", "--json").stdout)
    assert "default" in [i["name"] for i in images]
    status = json.loads(bay.cargobay("daemon", "status", "--json").stdout)
    assert status["running"] is True
    assert status["api_version"] == 1
    r = bay.cargobay("daemon", "stop")
    assert r.returncode == 0, r
    assert not bay.daemon_answers()
    assert bay.cargobay("daemon", "status").returncode == 5
