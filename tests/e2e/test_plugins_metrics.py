"""Plugins and metrics against a real cargobayd and a real VM (default image).

The plugins are real installed distributions as far as ``importlib.metadata`` is
concerned: a directory with ``*.dist-info`` (METADATA + entry_points.txt) and modules, put
on the daemon's PYTHONPATH.  One records its hooks in a file; one raises in
``on_vm_start``; one does not import.  The machine must run regardless, the recorder must
see the start and the stop, and ``cargobay plugins ls`` must list all three.

Logs: ``vm logs NAME --source all`` merges the console and the daemon's lines about it.

Metrics: ``cargobay vm status NAME --json`` of the running machine: the guest's MemTotal
close to the configured memory, disk reads after boot, and uptimes that grow.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Bay

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "plugvm"
MEMORY_MB = 384

RECORDER = """
import json, os, pathlib

class Recorder:
    name = "recorder"
    version = "0.1"

    def initialize(self, context):
        self.out = pathlib.Path(OUT)
        self._write("init", context.daemon_version)

    def _write(self, *event):
        with self.out.open("a") as f:
            f.write(json.dumps(list(event)) + "\\n")

    async def on_vm_start(self, vm):
        self._write("start", vm.name, vm.state.kind.value)

    def on_vm_stop(self, vm):
        self._write("stop", vm.name, vm.state.kind.value)
"""

RAISER = """
class Raiser:
    name = "raiser"
    version = "0.2"
    def initialize(self, context): pass
    def on_vm_start(self, vm):
        raise RuntimeError("raiser refuses " + vm.name)
    def on_vm_stop(self, vm): pass
"""


def _install(site: Path, events: Path) -> None:
    site.mkdir()
    (site / "cbtest_recorder.py").write_text(f"OUT = {str(events)!r}\n" + RECORDER)
    (site / "cbtest_raiser.py").write_text(RAISER)
    (site / "cbtest_broken.py").write_text("import cbtest_no_such_module\n")
    info = site / "cbtest_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cbtest-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[cargobay.plugins]\n"
        "recorder = cbtest_recorder:Recorder\n"
        "raiser = cbtest_raiser:Raiser\n"
        "broken = cbtest_broken:Plugin\n"
    )


def _events(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _status(bay: Bay) -> dict[str, Any]:
    r = bay.cargobay("vm", "status", NAME, "--json")
    assert r.returncode == 0, r
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def test_plugins_hooks_and_metrics_on_a_real_machine(bay: Bay) -> None:
    events = bay.home / "plugin-events.jsonl"
    _install(bay.home / "site", events)
    bay.env["PYTHONPATH"] = str(bay.home / "site")  # the daemon the first command starts

    r = bay.cargobay("vm", "create", NAME, "--memory", f"{MEMORY_MB}MB")
    assert r.returncode == 0, r
    r = bay.cargobay("vm", "start", NAME)
    assert r.returncode == 0, r

    # the raising plugin left the machine running; the recorder saw the start
    m = _status(bay)
    assert m["state"]["kind"] == "running", m
    assert ["start", NAME, "running"] in _events(events)
    assert _events(events)[0][0] == "init"

    r = bay.cargobay("plugins", "ls", "--json")
    assert r.returncode == 0, r
    plugins = {p["entry_point"]: p for p in json.loads(r.stdout)}
    assert plugins["recorder"]["state"] == "active"
    assert plugins["recorder"]["distribution"] == "cbtest-plugins"
    assert plugins["raiser"]["state"] == "active"
    assert plugins["raiser"]["hook_errors"] == 1
    assert "raiser refuses plugvm" in plugins["raiser"]["last_hook_error"]
    assert plugins["broken"]["state"] == "failed"
    assert "cbtest_no_such_module" in plugins["broken"]["error"]
    table = bay.cargobay("plugins", "ls")
    assert "recorder" in table.stdout
    assert "failed" in table.stdout
    assert "plugin raiser" in bay.daemon_log.read_text(errors="replace")

    # metrics
    first = m["metrics"]
    assert first is not None, m
    assert first["pid"] == m["runtime"]["handle"]["pid"]
    assert first["rss_bytes"] > 0
    assert first["guest_error"] is None, first
    total = first["guest"]["memory"]["total_mb"]
    assert MEMORY_MB * 0.8 <= total <= MEMORY_MB, first["guest"]
    assert 0 < first["guest"]["memory"]["available_mb"] <= total
    drives = {d["drive"]: d for d in first["disks"]}
    assert drives["root"]["read_bytes"] > 0, drives
    assert drives["root"]["write_bytes"] == 0  # the root disk is read-only
    assert first["network"] is None  # no ports, no NIC
    time.sleep(1.5)
    second = _status(bay)["metrics"]
    assert second["uptime_seconds"] > first["uptime_seconds"]
    assert second["guest"]["uptime_seconds"] > first["guest"]["uptime_seconds"]
    assert second["cpu_percent"] is not None
    assert second["guest"]["cpu_percent"] is not None
    table = bay.cargobay("vm", "status", NAME)
    assert "guest memory" in table.stdout, table
    assert "disk root" in table.stdout

    # unified logs: the console and the daemon's lines about this machine, prefixed
    r = bay.cargobay("vm", "logs", NAME, "--source", "all", "--tail", "400")
    assert r.returncode == 0, r
    assert "[console] " in r.stdout, r
    assert "[platform] " in r.stdout, r
    assert f"on_vm_start({NAME})" in r.stdout, r
    plain = bay.cargobay("vm", "logs", NAME, "--tail", "5")
    assert plain.returncode == 0, plain
    assert "[console]" not in plain.stdout
    bad = bay.cargobay("vm", "logs", NAME, "--source", "kernel")
    assert bad.returncode != 0
    assert "bad log source 'kernel'" in bad.stderr

    r = bay.cargobay("vm", "stop", NAME)
    assert r.returncode == 0, r
    assert ["stop", NAME, "stopped"] in _events(events)
    assert _status(bay)["metrics"] is None
    r = bay.cargobay("vm", "rm", NAME)
    assert r.returncode == 0, r
