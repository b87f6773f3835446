"""Scenarios: YAML VM test cases (issue 4), their runner and reports.

    python -m cargobay.scenarios run examples/scenarios/smoke.yaml --report-dir out/

``schema`` is the file format, ``runner`` boots the VMs through a ``provider`` (QEMU
here; the libvirt host pool later) and runs the steps over QMP and qemu-guest-agent,
``report`` writes JSON, JUnit XML and HTML.  The ``cargobay test run`` CLI verb (through
the daemon) is not wired up yet.
"""

from __future__ import annotations

from cargobay.scenarios.results import RunResult, StepResult, VMResult
from cargobay.scenarios.schema import Scenario, ScenarioError, load_scenario, parse_scenario

__all__ = [
    "RunResult",
    "Scenario",
    "ScenarioError",
    "StepResult",
    "VMResult",
    "load_scenario",
    "parse_scenario",
]
