"""``up`` and ``down`` of a 10-service stack with dependencies and health checks: our
compose engine (``ComposeService``, in process) against Debian's docker-compose 1.29.2,
on the same dockerd and the same file, in one run.  Goal: ours <= 0.5x theirs.

The stack (``--services`` services, default 10) is a chain of layers: ``db`` has a
health check (a file its command touches), three services depend on it being healthy,
the rest depend on those (started), one runs to completion and one waits for it
(``service_completed_successfully``).  Every container is busybox (imported from
busybox-static like the tests) with ``stop_signal: SIGKILL`` so ``down`` measures the
tools, not a 10 s stop timeout.

    .venv/bin/python bench/compose_up_down.py [--repeat 3] [--services 10]

Needs a running dockerd (root, or the docker group) and docker-compose.  Results go to
stdout and bench/results/compose_up_down-<time>.json.  Measures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.integration.containers.conftest import BUSYBOX_IMAGE, import_busybox  # noqa: E402

from cargobay.containers.compose.loader import load_project  # noqa: E402
from cargobay.containers.compose.service import ComposeService  # noqa: E402

DOCKER_URL = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def stack_file(services: int) -> str:
    lines = ["services:"]

    def service(name: str, command: str, extra: list[str]) -> None:
        lines.extend([f"  {name}:", f"    image: {BUSYBOX_IMAGE}",
                      f"    command: [\"sh\", \"-c\", \"{command}\"]",
                      "    stop_signal: SIGKILL", *extra])  # fmt: skip

    service(
        "db",
        "touch /tmp/ready; exec sleep 600",
        ["    healthcheck:", "      test: [\"CMD\", \"test\", \"-f\", \"/tmp/ready\"]",
         "      interval: 500ms", "      timeout: 1s", "      retries: 10"],
    )  # fmt: skip
    service("migrate", "exit 0", ["    depends_on: {db: {condition: service_healthy}}"])
    middle = [f"api{i}" for i in range(1, 4)]
    for name in middle:
        service(name, "exec sleep 600", ["    depends_on: {db: {condition: service_healthy}}"])
    service(
        "app",
        "exec sleep 600",
        ["    depends_on: {migrate: {condition: service_completed_successfully}}"],
    )
    for i in range(services - 6):
        dep = middle[i % len(middle)]
        service(f"worker{i + 1}", "exec sleep 600", [f"    depends_on: [{dep}]"])
    return "\n".join(lines) + "\n"


def run_compose(args: list[str], directory: Path, project: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["docker-compose", "-p", project, *args],
        cwd=directory,
        env={**os.environ, "DOCKER_HOST": DOCKER_URL},
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


async def run_ours(directory: Path, project: str) -> tuple[float, float]:
    service = ComposeService(DOCKER_URL)
    started = time.perf_counter()
    loaded = load_project(working_dir=directory, project_name=project, env=dict(os.environ))
    await service.up(loaded)
    up = time.perf_counter() - started
    started = time.perf_counter()
    loaded = load_project(working_dir=directory, project_name=project, env=dict(os.environ))
    await service.down(loaded, volumes=True)
    return up, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--services", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("docker-compose") is None:
        print("docker-compose not found (Debian: apt-get install docker-compose)")
        return 1
    asyncio.run(import_busybox(DOCKER_URL))
    directory = Path(tempfile.mkdtemp(prefix="cb-bench-compose-"))
    (directory / "docker-compose.yml").write_text(stack_file(args.services))
    results: dict[str, list[float]] = {"ours_up": [], "ours_down": [], "theirs_up": [],
                                       "theirs_down": []}  # fmt: skip
    try:
        for round_ in range(args.repeat):
            project = f"cbbench{os.getpid()}r{round_}"
            up, down = asyncio.run(run_ours(directory, project + "a"))
            results["ours_up"].append(up)
            results["ours_down"].append(down)
            results["theirs_up"].append(run_compose(["up", "-d"], directory, project + "b"))
            results["theirs_down"].append(run_compose(["down", "-v"], directory, project + "b"))
            theirs = f"up {results['theirs_up'][-1]:.2f} s down {results['theirs_down'][-1]:.2f} s"
            print(f"round {round_ + 1}: ours up {up:.2f} s down {down:.2f} s; compose {theirs}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    medians = {key: statistics.median(values) for key, values in results.items()}
    summary = {
        "services": args.services,
        "repeat": args.repeat,
        "median_seconds": {k: round(v, 3) for k, v in medians.items()},
        "ratio_up": round(medians["ours_up"] / medians["theirs_up"], 3),
        "ratio_down": round(medians["ours_down"] / medians["theirs_down"], 3),
        "goal": "ratio <= 0.5",
    }
    print(json.dumps(summary, indent=2))
    out = ROOT / "bench" / "results" / f"compose_up_down-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
