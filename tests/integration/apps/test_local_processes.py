"""Local mode runs all of the app's processes: MaiBot's core, the adapter (a second git
repository served over loopback HTTP, cloned next to the core with its own venv) and
NapCat (a stand-in release archive served by nginx on loopback, whose start script is a
tiny shell loop), each under its own PTY with its own status, logs and restart policy."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer, make_server

import pytest
from dulwich import porcelain
from dulwich.repo import Repo
from dulwich.server import DictBackend
from dulwich.web import make_wsgi_chain

from cargobay.apps.models import DeployMode, InstanceCreate, LocalAdapter, NapCatSource
from cargobay.apps.service import AppService
from tests.integration.apps.test_downloads import Nginx, nginx  # noqa: F401 - fixture
from tests.integration.apps.test_local_mode import _Quiet, repo_url, service  # noqa: F401
from tests.integration.apps.test_napcat import _release

ADAPTER = (
    "import sys, time\n"
    "print('stand-in adapter tty=%s' % sys.stdout.isatty(), flush=True)\n"
    "time.sleep(300)\n"
)
STANDIN_NAPCAT = "echo 'stand-in napcat up'\nwhile :; do sleep 1; done\n"


@pytest.fixture
def adapter_url(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "adapter-standin"
    path.mkdir()
    porcelain.init(str(path)).close()
    for name, text in (("main.py", ADAPTER), ("requirements.txt", "# stand-in\n")):
        (path / name).write_text(text)
        porcelain.add(str(path), [str(path / name)])
    porcelain.commit(
        str(path), b"adapter", author=b"T <t@example.org>", committer=b"T <t@example.org>"
    )
    server = make_server(
        "127.0.0.1", 0, make_wsgi_chain(DictBackend({"/": Repo(str(path))})), WSGIServer, _Quiet
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def _lines(apps: AppService, name: str, *processes: str) -> list[tuple[str, str]]:
    for _ in range(200):
        events = [e async for e in await apps.logs(name, services=processes)]
        got = [(e["service"], e["line"]) for e in events]
        if {s for s, _ in got} >= set(processes):
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"no output from {processes}")


async def test_core_adapter_and_napcat_each_under_a_pty(
    service: AppService,  # noqa: F811
    repo_url: str,  # noqa: F811
    adapter_url: str,
    nginx: Nginx,  # noqa: F811
) -> None:
    sha = _release(nginx, "standin-napcat.zip", {"standin-napcat.sh": STANDIN_NAPCAT.encode()})
    service.create(
        InstanceCreate(
            name="all3",
            deploy_mode=DeployMode.LOCAL,
            repo_url=repo_url,
            adapter=LocalAdapter(repo_url=adapter_url),
            napcat=NapCatSource(url=nginx.url("standin-napcat.zip"), sha256=sha, version="0.1"),
            napcat_command=["sh", "standin-napcat.sh"],
        )
    )
    task = service.deploy("all3")
    events = [e async for e in service.tasks.follow(task.id)]
    assert events[-1].type == "done", [e.message for e in events]
    steps = [e.step for e in events if e.type == "step"]
    assert steps == ["clone", "python", "venv", "requirements", "adapter", "napcat"]
    instance = service.get("all3")
    root = service.directory(instance)
    assert instance.paths["adapter"] == str(root / "adapter")
    assert (root / "adapter" / "main.py").read_text() == ADAPTER
    assert (root / "adapter-venv" / "bin" / "python").exists()

    running = await service.start("all3")
    assert running.status == "running"
    procs = {p["name"]: p for p in service.local.processes(running)}
    assert set(procs) == {"core", "adapter", "napcat"}
    assert {p["state"] for p in procs.values()} == {"running"}
    assert len({p["pid"] for p in procs.values()}) == 3

    # each process's own log, by filter
    assert await _lines(service, "all3", "adapter") == [("adapter", "stand-in adapter tty=True")]
    assert await _lines(service, "all3", "napcat") == [("napcat", "stand-in napcat up")]
    both = await _lines(service, "all3", "core", "napcat")
    assert {s for s, _ in both} == {"core", "napcat"}

    # NapCat killed: the restart policy brings it back, the others untouched
    os.kill(procs["napcat"]["pid"], signal.SIGKILL)
    for _ in range(200):
        again = {p["name"]: p for p in service.local.processes(running)}
        if again["napcat"]["restarts"] >= 1 and again["napcat"]["state"] == "running":
            break
        await asyncio.sleep(0.05)
    assert again["napcat"]["state"] == "running"
    assert again["napcat"]["pid"] != procs["napcat"]["pid"]
    assert again["core"]["pid"] == procs["core"]["pid"]
    assert again["adapter"]["restarts"] == 0

    stopped = await service.stop("all3")
    assert stopped.status == "stopped"
    for pid in [p["pid"] for p in again.values()]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_without_adapter_and_napcat_only_the_core_runs(
    service: AppService,  # noqa: F811
    repo_url: str,  # noqa: F811
) -> None:
    service.create(InstanceCreate(name="core1", deploy_mode=DeployMode.LOCAL, repo_url=repo_url))
    final = await service.tasks.wait(service.deploy("core1").id)
    assert final.state == "succeeded", final.error
    assert "adapter" not in final.steps
    running = await service.start("core1")
    assert [p["name"] for p in service.local.processes(running)] == ["core"]
    assert not (service.directory(running) / "adapter").exists()
    await service.stop("core1")


async def test_a_bad_adapter_url_fails_the_first_deploy_and_leaves_nothing(
    service: AppService,  # noqa: F811
    repo_url: str,  # noqa: F811
) -> None:
    service.create(
        InstanceCreate(
            name="badadapter",
            deploy_mode=DeployMode.LOCAL,
            repo_url=repo_url,
            adapter=LocalAdapter(repo_url="http://127.0.0.1:9/adapter.git"),
        )
    )
    final = await service.tasks.wait(service.deploy("badadapter").id)
    assert final.state == "failed"
    assert "127.0.0.1:9" in str(final.error)
    root = service.root / "badadapter"
    assert not (root / "adapter").exists()
    assert not (root / "adapter-venv").exists()
    assert not (root / "app").exists()
    assert service.get("badadapter").status == "error"
