"""Report shapes: JUnit XML (one testcase per step), JSON, self-contained HTML."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from cargobay.scenarios.report import html_report, junit_xml, write_reports
from cargobay.scenarios.results import RunResult, StepResult, VMResult
from cargobay.scenarios.traffic import MAX_VALUE_CHARS, TrafficLog

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def a_result() -> RunResult:
    return RunResult(
        scenario="demo",
        source="demo.yaml",
        run_id="abc123",
        started_at="2025-01-01T00:00:00+00:00",
        status="failed",
        duration_s=3.5,
        vms=[
            VMResult("main", "booted", 1.2, info={"accel": "tcg"}, console_log="console/main.log")
        ],
        steps=[
            StepResult(
                0,
                "screenshot",
                "take one",
                "main",
                "screenshot s.png",
                "passed",
                0.1,
                artifacts=["screenshots/main-s.png"],
            ),
            StepResult(
                1,
                "qga_exec",
                "exit <b>3</b>",
                "main",
                "qga_exec",
                "failed",
                0.2,
                message="exit 3, expected exit 0",
                details={"exit": 3},
                artifacts=["failure/step-01/traffic.json"],
            ),
            StepResult(2, "qmp", "boom", "main", "qmp stop", "error", 0.0, message="QmpError"),
            StepResult(3, "sleep", "sleep 1s", None, "sleep 1s"),
        ],
        screenshots=["screenshots/main-s.png"],
    )


def test_junit_has_one_testcase_per_step_with_the_right_outcome() -> None:
    root = ET.fromstring(junit_xml(a_result()))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.attrib["name"] == "demo"
    assert (suite.attrib["tests"], suite.attrib["failures"]) == ("4", "1")
    assert (suite.attrib["errors"], suite.attrib["skipped"]) == ("1", "1")
    cases = suite.findall("testcase")
    assert [c.attrib["name"] for c in cases] == [
        "01 screenshot: take one",
        "02 qga_exec: exit <b>3</b>",
        "03 qmp: boom",
        "04 sleep: sleep 1s",
    ]
    assert all(c.attrib["classname"] == "scenario.demo" for c in cases)
    assert [child.tag for child in cases[0]] == ["system-out"]
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.attrib["message"] == "exit 3, expected exit 0"
    assert json.loads(failure.text or "") == {"exit": 3}
    assert cases[2].find("error") is not None
    assert cases[3].find("skipped") is not None
    props = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert props["vm.main.accel"] == "tcg"


def test_a_boot_failure_is_an_error_testcase() -> None:
    result = a_result()
    result.vms.append(VMResult("other", "failed", 0.5, message="no such image"))
    suite = ET.fromstring(junit_xml(result)).find("testsuite")
    assert suite is not None
    assert suite.attrib["errors"] == "2"
    boot = suite.find("testcase[@name='boot other']/error")
    assert boot is not None
    assert boot.attrib["message"] == "no such image"


def test_json_and_html_reports(tmp_path: Path) -> None:
    (tmp_path / "screenshots").mkdir()
    (tmp_path / "screenshots" / "main-s.png").write_bytes(PNG)
    traffic = TrafficLog()
    traffic.step = 1
    traffic.add("main", "qga", "request", {"buf-b64": "A" * (MAX_VALUE_CHARS + 10)})
    write_reports(a_result(), tmp_path, traffic)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["status"] == "failed"
    assert data["counts"] == {"passed": 1, "failed": 1, "error": 1, "skipped": 1}
    assert [s["status"] for s in data["steps"]] == ["passed", "failed", "error", "skipped"]
    assert data["steps"][1]["details"] == {"exit": 3}
    assert data["vms"][0]["info"] == {"accel": "tcg"}
    records = json.loads((tmp_path / "traffic.json").read_text())
    assert records[0]["step"] == 1
    assert records[0]["channel"] == "qga"
    assert records[0]["data"]["buf-b64"].endswith("...[10 more chars]")
    page = (tmp_path / "report.html").read_text()
    assert page == html_report(a_result(), tmp_path)
    assert base64.b64encode(PNG).decode() in page  # embedded, not linked
    assert "exit &lt;b&gt;3&lt;/b&gt;" in page  # escaped
    assert 'href="failure/step-01/traffic.json"' in page
    assert ET.fromstring((tmp_path / "junit.xml").read_text()).tag == "testsuites"
