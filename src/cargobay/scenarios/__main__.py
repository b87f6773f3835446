"""``python -m cargobay.scenarios run FILE.yaml [--dry-run] [--report-dir DIR] [--keep-going]``

Exit status: 0 every step passed (or the dry run found the file valid), 1 a step failed
or a VM did not boot, 2 the scenario file is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from cargobay.errors import CargoBayError
from cargobay.scenarios.schema import ScenarioError, load_scenario


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cargobay.scenarios", description="Run YAML VM test scenarios."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="validate and run a scenario file")
    run.add_argument("file", type=Path)
    run.add_argument("--dry-run", action="store_true", help="print the resolved steps only")
    run.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="where reports and artefacts go (default: ./scenario-reports/NAME)",
    )
    run.add_argument(
        "--keep-going", action="store_true", help="run the remaining steps after a failure"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        scenario = load_scenario(args.file)
    except ScenarioError as err:
        print(err, file=sys.stderr)
        return 2
    if args.dry_run:
        print(scenario.describe())
        return 0
    from cargobay.scenarios.runner import run_scenario

    report_dir = args.report_dir or Path("scenario-reports") / scenario.name

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        result = asyncio.run(
            run_scenario(scenario, report_dir, keep_going=args.keep_going, progress=progress)
        )
    except CargoBayError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"scenario {scenario.name}: {result.status} ({result.duration_s:.1f}s); reports in "
        f"{report_dir}/report.html, junit.xml, report.json"
    )
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
