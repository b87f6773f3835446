"""Scenario reports: JSON (the full result), JUnit XML (CI dashboards), one HTML page.

All three are written into the run's report directory next to the artefacts:

    report.json     RunResult.to_dict()
    junit.xml       one <testsuite> per scenario, one <testcase> per step (plus one per VM
                    that failed to boot); failed -> <failure>, error -> <error>,
                    skipped -> <skipped>
    report.html     self-contained: screenshots embedded as base64 data URLs, other
                    artefacts linked relative to the page
    traffic.json    every QMP/QGA request, reply and event of the run
"""

from __future__ import annotations

import base64
import html
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from cargobay.scenarios.results import RunResult
from cargobay.scenarios.traffic import TrafficLog

__all__ = ["html_report", "json_report", "junit_xml", "write_reports"]


def json_report(result: RunResult) -> str:
    return json.dumps(result.to_dict(), indent=2, default=repr)


def junit_xml(result: RunResult) -> str:
    counts = result.counts()
    cases: list[ET.Element] = []
    for vm in result.vms:
        if vm.status == "failed":
            case = ET.Element(
                "testcase",
                classname=f"scenario.{result.scenario}",
                name=f"boot {vm.name}",
                time=f"{vm.boot_s:.3f}",
            )
            ET.SubElement(case, "error", message=vm.message, type="boot")
            cases.append(case)
    for step in result.steps:
        case = ET.Element(
            "testcase",
            classname=f"scenario.{result.scenario}",
            name=f"{step.index + 1:02d} {step.kind}: {step.title}",
            time=f"{step.duration_s:.3f}",
        )
        if step.status in ("failed", "error"):
            tag = "failure" if step.status == "failed" else "error"
            problem = ET.SubElement(case, tag, message=step.message, type=step.kind)
            problem.text = json.dumps(step.details, indent=1, default=repr)
        elif step.status == "skipped":
            ET.SubElement(
                case, "skipped", message="not run: an earlier step failed or a VM did not boot"
            )
        out = [f"vm: {step.vm}"] if step.vm else []
        out += [f"artifact: {a}" for a in step.artifacts]
        if out:
            ET.SubElement(case, "system-out").text = "\n".join(out)
        cases.append(case)
    errors = counts["error"] + sum(vm.status == "failed" for vm in result.vms)
    suite_attrs = {
        "name": result.scenario,
        "tests": str(len(cases)),
        "failures": str(counts["failed"]),
        "errors": str(errors),
        "skipped": str(counts["skipped"]),
        "time": f"{result.duration_s:.3f}",
        "timestamp": result.started_at,
    }
    root = ET.Element("testsuites", {**suite_attrs, "name": "cargobay scenarios"})
    suite = ET.SubElement(root, "testsuite", suite_attrs)
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="source", value=result.source)
    ET.SubElement(props, "property", name="run_id", value=result.run_id)
    for vm in result.vms:
        for key, value in vm.info.items():
            ET.SubElement(props, "property", name=f"vm.{vm.name}.{key}", value=value)
    suite.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;text-align:left}.passed{background:#e6f4e6}.failed{background:#fbe3e3}
.error{background:#fde9cf}.skipped{color:#888}pre{white-space:pre-wrap;margin:0;
font-size:85%}img{max-width:640px;border:1px solid #999;display:block;margin:4px 0}
"""


def _image(report_dir: Path, relative: str) -> str:
    path = report_dir / relative
    try:
        data = base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return f'<a href="{html.escape(relative)}">{html.escape(relative)}</a> (missing)'
    return (
        f'<figure><img alt="{html.escape(relative)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(relative)}</figcaption></figure>"
    )


def _artifact(report_dir: Path, relative: str) -> str:
    if relative.endswith(".png"):
        return _image(report_dir, relative)
    escaped = html.escape(relative)
    return f'<div><a href="{escaped}">{escaped}</a></div>'


def html_report(result: RunResult, report_dir: Path) -> str:
    esc = html.escape
    counts = result.counts()
    rows = []
    for step in result.steps:
        details: dict[str, Any] = step.details
        detail_text = json.dumps(details, indent=1, default=repr) if details else ""
        rows.append(
            f'<tr class="{step.status}"><td>{step.index + 1}</td><td>{esc(step.vm or "")}</td>'
            f"<td><b>{esc(step.kind)}</b><br>{esc(step.title)}</td><td>{step.status}</td>"
            f"<td>{step.duration_s:.2f}s</td><td>{esc(step.message)}"
            + (f"<pre>{esc(detail_text)}</pre>" if detail_text else "")
            + "".join(_artifact(report_dir, a) for a in step.artifacts)
            + "</td></tr>"
        )
    vms = "".join(
        f"<tr><td>{esc(vm.name)}</td><td>{vm.status}</td><td>{vm.boot_s:.2f}s</td>"
        f"<td>{esc(', '.join(f'{k}={v}' for k, v in vm.info.items()))}"
        + (f"<br>{esc(vm.message)}" if vm.message else "")
        + "</td><td>"
        + (_artifact(report_dir, vm.console_log) if vm.console_log else "")
        + "</td></tr>"
        for vm in result.vms
    )
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>scenario {esc(result.scenario)}: {result.status}</title><style>{_STYLE}</style></head>
<body>
<h1 class="{result.status}">scenario {esc(result.scenario)}: {result.status}</h1>
<p>{esc(result.source)} &middot; run {result.run_id} &middot; started {esc(result.started_at)}
&middot; {result.duration_s:.1f}s &middot; {esc(summary)}</p>
{f"<p><b>{esc(result.message)}</b></p>" if result.message else ""}
<h2>VMs</h2>
<table><tr><th>name</th><th>status</th><th>boot</th><th>info</th><th>console</th></tr>
{vms}</table>
<h2>Steps</h2>
<table><tr><th>#</th><th>vm</th><th>step</th><th>status</th><th>time</th><th>result</th></tr>
{"".join(rows)}</table>
<h2>Screenshots</h2>
{"".join(_image(report_dir, s) for s in result.screenshots) or "<p>none</p>"}
<p><a href="report.json">report.json</a> &middot; <a href="junit.xml">junit.xml</a>
&middot; <a href="traffic.json">traffic.json</a></p>
</body></html>
"""


def write_reports(result: RunResult, report_dir: Path, traffic: TrafficLog | None = None) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json_report(result))
    (report_dir / "junit.xml").write_text(junit_xml(result))
    (report_dir / "report.html").write_text(html_report(result, report_dir))
    if traffic is not None:
        (report_dir / "traffic.json").write_text(traffic.dumps())
