"""Scenarios end to end on real QEMU VMs (TCG) with qemu-guest-agent: the shipped smoke
example passes, and a scenario with a wrong expected exit code fails through the CLI
and leaves its failure artefacts.  Two VM boots in all (q35 + VGA, 1 vCPU, 256-384 MB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from cargobay.images import ImageManifest
from cargobay.paths import Paths
from cargobay.scenarios import load_scenario
from cargobay.scenarios.provider import QemuProvider
from cargobay.scenarios.runner import run_scenario
from tests.support import REPO

SMOKE = REPO / "examples" / "scenarios" / "smoke.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

FAILING = """\
name: failing
vms: [{name: bad, memory: 256, display: vga}]
steps:
  - wait_for: {qga_ping: true, timeout: 240}
  - qga_exec: {argv: [/bin/sh, -c, "echo scenario-marker-42 > /dev/console"]}
  - wait_for: {console_regex: 'scenario-marker-\\d+', timeout: 30}
  - screenshot: {name: before}
  - name: wrong exit
    qga_exec:
      argv: [/bin/sh, -c, "echo oops; exit 3"]
      expect: {exit: 0, stdout_contains: oops}
  - assert_status: {status: running}
"""


def qemu_processes_under(root: Path) -> list[int]:
    """Live processes whose command line mentions ``root`` (our VMs' QEMUs)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if str(root).encode() in cmdline and b"qemu" in cmdline:
                found.append(int(entry.name))
    return found


async def test_the_smoke_example_passes(
    default_image: tuple[Path, ImageManifest], test_paths: Paths, tmp_path: Path
) -> None:
    reports = tmp_path / "smoke"
    result = await run_scenario(
        load_scenario(SMOKE), reports, provider=QemuProvider(paths=test_paths)
    )
    assert result.status == "passed", json.dumps(result.to_dict(), indent=1, default=repr)
    assert result.counts()["passed"] == len(result.steps)
    assert result.vms[0].info["machine"] == "q35"
    uname = result.steps[1]
    assert uname.title == "the kernel is Linux"
    assert "Linux" in uname.details["stdout"]
    assert (reports / "files" / "smoke.txt").read_text() == "hello from a cargobay scenario\n"
    shot = reports / "screenshots" / "main-console.png"
    assert shot.read_bytes().startswith(PNG_MAGIC)
    assert result.screenshots == ["screenshots/main-console.png"]
    assert not (reports / "failure").exists()
    suite = ET.parse(reports / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.attrib["tests"], suite.attrib["failures"]) == (str(len(result.steps)), "0")
    assert "data:image/png;base64," in (reports / "report.html").read_text()
    traffic = json.loads((reports / "traffic.json").read_text())
    commands = {r["data"]["execute"] for r in traffic if r["kind"] == "request"}
    assert {"guest-ping", "guest-exec", "guest-file-write", "send-key", "screendump"} <= commands
    assert qemu_processes_under(test_paths.runtime) == []
    assert not any(test_paths.machines.iterdir())


def test_a_failing_scenario_keeps_its_artefacts(
    default_image: tuple[Path, ImageManifest], test_paths: Paths, tmp_path: Path
) -> None:
    scenario = tmp_path / "failing.yaml"
    scenario.write_text(FAILING)
    reports = tmp_path / "reports"
    done = subprocess.run(
        [sys.executable, "-m", "cargobay.scenarios", "run", str(scenario), "--report-dir", reports],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert done.returncode == 1, done.stderr
    assert "exit 3, expected exit 0" in done.stderr

    report = json.loads((reports / "report.json").read_text())
    assert report["status"] == "failed"
    assert [s["status"] for s in report["steps"]] == [
        "passed",
        "passed",
        "passed",
        "passed",
        "failed",
        "skipped",
    ]
    failed = report["steps"][4]
    assert failed["details"]["exit"] == 3
    assert failed["details"]["stdout"] == "oops\n"
    assert sorted(failed["artifacts"]) == [
        "failure/step-04/bad-console.log",
        "failure/step-04/bad-screen.png",
        "failure/step-04/traffic.json",
    ]
    folder = reports / "failure" / "step-04"
    assert "scenario-marker-42" in (folder / "bad-console.log").read_text(errors="replace")
    assert (folder / "bad-screen.png").read_bytes().startswith(PNG_MAGIC)
    traffic = json.loads((folder / "traffic.json").read_text())
    assert {r["step"] for r in traffic} == {4}
    requests = [r["data"] for r in traffic if r["kind"] == "request"]
    assert requests[0]["execute"] == "guest-exec"
    assert requests[0]["arguments"]["arg"] == ["-c", "echo oops; exit 3"]
    exited = [r["data"]["return"] for r in traffic if r["kind"] == "reply"]
    assert any(isinstance(r, dict) and r.get("exitcode") == 3 for r in exited)

    cases = ET.parse(reports / "junit.xml").getroot().iter("testcase")
    outcome = {c.attrib["name"][:2]: [child.tag for child in c] for c in cases}
    assert "failure" in outcome["05"]
    assert "skipped" in outcome["06"]
    assert qemu_processes_under(test_paths.runtime) == []
