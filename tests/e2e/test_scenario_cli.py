"""``cargobay test run`` through a real cargobayd: a dry run, an invalid file, and a
failing scenario on a libvirt host of the daemon's pool reached over qemu+ssh on
loopback, which must keep its failure artefacts."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.e2e.conftest import Bay
from tests.integration.conftest import libvirt_env
from tests.integration.libvirt_env import LibvirtEnv
from tests.support import REPO

__all__ = ["libvirt_env"]

pytestmark = pytest.mark.integration

MULTIHOST = REPO / "examples" / "scenarios" / "multihost.yaml"

ON_THE_POOL = """\
name: on-the-pool
vms: [{name: remote, host: lab, memory: 256}]
steps:
  - wait_for: {qga_ping: true, timeout: 240}
  - qga_exec:
      argv: [/bin/sh, -c, "cat /proc/cmdline"]
      expect: {exit: 0, stdout_contains: "cargobay.name=cb-sc-"}
  - name: wrong exit
    qga_exec:
      argv: [/bin/sh, -c, "echo oops; exit 3"]
      expect: {exit: 0}
  - qga_exec: {argv: ["true"]}
"""


def test_dry_run_and_invalid_files(bay: Bay, tmp_path: Path):
    dry = bay.cargobay("test", "run", str(MULTIHOST), "--dry-run")
    assert dry.returncode == 0, dry
    assert "tcp: qemu+tcp://127.0.0.1/system" in dry.stdout
    assert "viatcp: image=default" in dry.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nvms: [{name: a, host: lab}]\nsteps: [{qga_exec: {argv: []}}]\n")
    run = bay.cargobay("test", "run", str(bad))
    assert run.returncode == 2, run
    assert "steps[0].qga_exec.argv" in run.stderr
    odd = tmp_path / "odd.yaml"
    odd.write_text("name: odd\nhosts: {x: 'qemu+nope://h/system'}\nvms: [{name: a}]\nsteps: []\n")
    run = bay.cargobay("test", "run", str(odd), "--dry-run")
    assert run.returncode == 2, run
    assert "hosts" in run.stderr
    assert "qemu+nope" in run.stderr


def test_failing_scenario_on_a_pool_host_over_ssh(
    bay: Bay, libvirt_env: LibvirtEnv, tmp_path: Path
):
    added = bay.cargobay("host", "add", "lab", libvirt_env.ssh_uri)
    assert added.returncode == 0, added
    try:
        scenario = tmp_path / "pool.yaml"
        scenario.write_text(ON_THE_POOL)
        reports = tmp_path / "reports"
        run = bay.cargobay("test", "run", str(scenario), "--report-dir", str(reports), "--json")
        assert run.returncode == 1, run
        result = json.loads(run.stdout)
        assert result["status"] == "failed"
        assert [s["status"] for s in result["steps"]] == ["passed", "passed", "failed", "skipped"]
        assert result["vms"][0]["info"]["host"] == "lab"
        assert result["vms"][0]["info"]["uri"].startswith("qemu+ssh://root@127.0.0.1:")
        assert "wrong exit" in run.stderr
        junit = ET.parse(reports / "junit.xml").getroot()
        assert junit.find(".//testcase/failure") is not None
        kept = result["steps"][2]["artifacts"]
        traffic_file = next(a for a in kept if a.endswith("traffic.json"))
        traffic = json.loads((reports / traffic_file).read_text())
        assert any(r["channel"] == "qga" and r["kind"] == "request" for r in traffic)
        assert any(a.endswith(".log") for a in kept)  # the console log of the failed step
        assert (reports / "report.html").is_file()
    finally:
        assert bay.cargobay("host", "rm", "lab").returncode == 0
