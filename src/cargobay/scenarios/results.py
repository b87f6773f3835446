"""What a scenario run produced: per-VM and per-step results, with the files they left.

Plain dataclasses, built by the runner and read by the report writers; ``to_dict`` is
the JSON report's shape.  Artefact paths are relative to the report directory, so a
report directory can be moved or archived (CI artefacts) as a whole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["RunResult", "StepResult", "StepStatus", "VMResult"]

StepStatus = Literal["passed", "failed", "error", "skipped"]
"""``failed``: an expectation was not met; ``error``: the step could not run (a channel
broke, a command was refused); ``skipped``: an earlier step stopped the run."""


@dataclass
class StepResult:
    index: int
    """0-based, as in ``steps[N]`` of the scenario's error messages."""
    kind: str
    title: str
    vm: str | None
    description: str
    status: StepStatus = "skipped"
    duration_s: float = 0.0
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)


@dataclass
class VMResult:
    name: str
    status: Literal["booted", "failed", "not-started"] = "not-started"
    boot_s: float = 0.0
    message: str = ""
    info: dict[str, str] = field(default_factory=dict)
    console_log: str | None = None


@dataclass
class RunResult:
    scenario: str
    source: str
    run_id: str
    started_at: str
    """ISO 8601, UTC."""
    status: Literal["passed", "failed", "error"] = "passed"
    duration_s: float = 0.0
    vms: list[VMResult] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    message: str = ""
    """Why the run as a whole failed (boot failure), if it did."""
    screenshots: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def counts(self) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for step in self.steps:
            counts[step.status] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = self.counts()
        return data
