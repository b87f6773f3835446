"""SDK calls for scenario runs (``/v1/scenarios``)::

with CargoBayClient() as client:
    tests = ScenariosClient(client)
    print(tests.validate("examples/scenarios/smoke.yaml")["description"])
    for event in tests.run("examples/scenarios/smoke.yaml", report_dir="/tmp/smoke"):
        ...   # {"type": "progress", "line"} ..., then {"type": "done", "result"}
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from cargobay.sdk.client import CargoBayClient, _Call

__all__ = ["ScenariosClient"]

PREFIX = "/v1/scenarios"


class ScenariosClient:
    def __init__(self, client: CargoBayClient) -> None:
        self._client = client

    def validate(self, file: str, *, working_dir: str | None = None) -> dict[str, Any]:
        body = {"file": file, "working_dir": working_dir or os.getcwd()}
        result: dict[str, Any] = self._client._request(
            _Call("POST", f"{PREFIX}/validate", json=body, timeout=60.0)
        )
        return result

    def run(
        self,
        file: str,
        *,
        report_dir: str | None = None,
        keep_going: bool = False,
        working_dir: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The run's events; an ``error`` event is raised as the daemon's typed error."""
        body = {
            "file": file,
            "working_dir": working_dir or os.getcwd(),
            "report_dir": report_dir,
            "keep_going": keep_going,
        }
        yield from self._client._events(_Call("POST", f"{PREFIX}/run", json=body, timeout=None))
