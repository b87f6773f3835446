"""The daemon's scenario endpoints (``/v1/scenarios``): ``cargobay test run`` runs here.

``POST /v1/scenarios/validate`` loads a scenario file and answers its resolved form (what
``--dry-run`` prints); an invalid file is a 400 whose message names every bad field.
``POST /v1/scenarios/run`` validates first (the same 400, before any stream), then runs
it and answers NDJSON: ``{"type": "progress", "line"}`` as VMs boot and steps finish,
then ``{"type": "done", "result"}`` with the whole result (also written as report.json,
junit.xml and report.html into ``report_dir``).  VMs with ``host:`` run on the
scenario's own hosts or on the daemon's pool (``cargobay host add``).  Paths are the
caller's: absolute, or relative to ``working_dir``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from cargobay.daemon.hosts import host_registry
from cargobay.errors import CargoBayError
from cargobay.scenarios.schema import load_scenario

__all__ = ["router"]

router = APIRouter(prefix="/v1/scenarios", tags=["scenarios"])
NDJSON = "application/x-ndjson"


class ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: Annotated[str, Field(min_length=1)]
    working_dir: str | None = None


class RunScenarioRequest(ScenarioFile):
    report_dir: str | None = None
    """Default: ``scenario-reports/NAME`` under ``working_dir``."""
    keep_going: bool = False


def _path(value: str, working_dir: str | None) -> Path:
    path = Path(value)
    if not path.is_absolute():
        path = Path(working_dir or Path.cwd()) / path
    return path


@router.post("/validate")
async def validate(body: ScenarioFile) -> dict[str, Any]:
    scenario = await asyncio.to_thread(load_scenario, _path(body.file, body.working_dir))
    return {
        "name": scenario.name,
        "vms": [vm.name for vm in scenario.vms],
        "hosts": dict(scenario.hosts),
        "steps": len(scenario.steps),
        "description": scenario.describe(),
    }


@router.post("/run")
async def run(request: Request, body: RunScenarioRequest) -> StreamingResponse:
    from cargobay.scenarios.runner import run_scenario

    scenario = await asyncio.to_thread(load_scenario, _path(body.file, body.working_dir))
    report_dir = _path(body.report_dir or f"scenario-reports/{scenario.name}", body.working_dir)
    pool = host_registry(request).manager if any(vm.host for vm in scenario.vms) else None
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def work() -> None:
        try:
            result = await run_scenario(
                scenario,
                report_dir,
                keep_going=body.keep_going,
                progress=lambda line: queue.put_nowait({"type": "progress", "line": line}),
                pool=pool,
            )
            data = result.to_dict()
            data["report_dir"] = str(report_dir)
            queue.put_nowait({"type": "done", "result": data})
        except CargoBayError as err:
            queue.put_nowait({"type": "error", "code": err.code, "message": str(err)})
        except Exception as err:
            queue.put_nowait({"type": "error", "code": "error", "message": f"{err!r}"})
        finally:
            queue.put_nowait(None)

    task = asyncio.get_running_loop().create_task(work())

    async def lines() -> AsyncIterator[bytes]:
        try:
            while (event := await queue.get()) is not None:
                yield (json.dumps(event) + "\n").encode()
        finally:
            if not task.done():  # the client went away: stop the run, tear the VMs down
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return StreamingResponse(lines(), media_type=NDJSON)
