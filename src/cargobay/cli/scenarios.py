"""``cargobay test run FILE.yaml``: run a VM test scenario through cargobayd.

    cargobay test run FILE [--dry-run] [--report-dir DIR] [--keep-going] [--json]

Progress (VMs booting, each step with its time) goes to stderr; the last line says where
the reports are (report.html with the screenshots, junit.xml, report.json).  ``--json``
prints the whole result on stdout.  Exit status: 0 every step passed (or the dry run
found the file valid), 1 a step failed or a VM did not boot, 2 the file is invalid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cargobay.cli.app import new_app
from cargobay.cli.output import Format, emit_document, note
from cargobay.cli.session import connect

__all__ = ["app"]

app = new_app("test", "VM test scenarios (YAML): QMP, QGA, console, keys, screenshots.")


@app.command("run")
def run(
    file: Annotated[Path, typer.Argument(help="The scenario file (YAML).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and print the resolved steps.")
    ] = False,
    report_dir: Annotated[
        Path | None,
        typer.Option("--report-dir", help="Where reports go (default ./scenario-reports/NAME)."),
    ] = None,
    keep_going: Annotated[
        bool, typer.Option("--keep-going", help="Run the remaining steps after a failure.")
    ] = False,
    json_flag: Annotated[
        bool, typer.Option("--json", help="The result as JSON on stdout.")
    ] = False,
) -> None:
    """Validate and run a scenario file."""
    from cargobay.sdk.scenarios import ScenariosClient

    client = ScenariosClient(connect())
    path = str(file.absolute())
    if dry_run:
        checked = client.validate(path)
        if json_flag:
            emit_document(checked, Format.JSON)
        else:
            print(checked["description"])
        return
    result: dict[str, Any] | None = None
    for event in client.run(
        path,
        report_dir=str(report_dir.absolute()) if report_dir else None,
        keep_going=keep_going,
    ):
        if event.get("type") == "progress":
            note(str(event["line"]))
        elif event.get("type") == "done":
            result = event["result"]
    assert result is not None, "the daemon ended the run without a result"
    if json_flag:
        emit_document(result, Format.JSON)
    where = result.get("report_dir", "")
    note(
        f"scenario {result.get('name')}: {result['status']} ({result.get('duration_s', 0):.1f}s); "
        f"reports in {where}/report.html, junit.xml, report.json"
    )
    if result["status"] != "passed":
        raise typer.Exit(1)
