"""Local mode: an instance's repository cloned from a loopback HTTP git server (dulwich's
smart-HTTP app under wsgiref), a venv made with a real Python, requirements installed; a
repository URL that fails leaves nothing behind and the instance as it was (but for its
status: error)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from dulwich import porcelain
from dulwich.repo import Repo
from dulwich.server import DictBackend
from dulwich.web import make_wsgi_chain

from cargobay.apps.models import DeployMode, InstanceCreate
from cargobay.apps.service import AppService
from cargobay.errors import AppConflict
from cargobay.store.sqlite import Store

BOT = (
    "import sys, time\n"
    "print('\\x1b[32mstand-in MaiBot\\x1b[0m tty=%s' % sys.stdout.isatty(), flush=True)\n"
    "time.sleep(120)\n"
)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def repo_url(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "maibot-standin"
    path.mkdir()
    porcelain.init(str(path)).close()
    for name, text in (
        ("bot.py", BOT),
        ("requirements.txt", "# stand-in: nothing to install\n"),
    ):
        (path / name).write_text(text)
        porcelain.add(str(path), [str(path / name)])
    porcelain.commit(
        str(path), b"stand-in", author=b"T <t@example.org>", committer=b"T <t@example.org>"
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


@pytest.fixture
def service(tmp_path: Path) -> Iterator[AppService]:
    store = Store.open(tmp_path / "state.db")
    yield AppService(store, tmp_path / "apps", engine_url="unix:///nonexistent")
    store.close()


async def test_local_deploy_clone_venv_requirements(service: AppService, repo_url: str) -> None:
    service.create(InstanceCreate(name="local1", deploy_mode=DeployMode.LOCAL, repo_url=repo_url))
    task = service.deploy("local1")
    events = [e async for e in service.tasks.follow(task.id)]
    assert events[-1].type == "done", [e.message for e in events]
    assert [e.step for e in events if e.type == "step"] == [
        "clone",
        "python",
        "venv",
        "requirements",
    ]
    instance = service.get("local1")
    app, venv = Path(instance.paths["app"]), Path(instance.paths["venv"])
    assert (await asyncio.to_thread((app / "bot.py").read_text)) == BOT
    assert await asyncio.to_thread((venv / "bin" / "python").exists)
    assert instance.status == "stopped"

    # a second deploy pulls (nothing new) and keeps the venv
    again = service.deploy("local1")
    final = await service.tasks.wait(again.id)
    assert final.state == "succeeded", final.error

    # the app's process under a PTY: output with its ANSI colours, stopped with no zombie
    running = await service.start("local1")
    assert running.status == "running"
    [proc] = service.local.processes(running)
    assert proc["state"] == "running"
    lines: list[str] = []
    for _ in range(100):
        lines = [e["line"] async for e in await service.logs("local1")]
        if lines:
            break
        await asyncio.sleep(0.1)
    assert lines == ["\x1b[32mstand-in MaiBot\x1b[0m tty=True"]
    with pytest.raises(AppConflict, match="already running"):
        await service.start("local1")
    stopped = await service.stop("local1")
    assert stopped.status == "stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(proc["pid"], 0)  # gone and reaped


async def test_a_bad_repository_url_leaves_nothing(service: AppService) -> None:
    service.create(
        InstanceCreate(
            name="local2",
            deploy_mode=DeployMode.LOCAL,
            repo_url="http://127.0.0.1:9/nothing-here.git",
        )
    )
    before = service.get("local2")
    task = service.deploy("local2")
    final = await service.tasks.wait(task.id)
    assert final.state == "failed"
    assert "127.0.0.1:9" in str(final.error)
    assert not await asyncio.to_thread((service.root / "local2" / "app").exists)
    # the instance is as it was, but for its status: error, with the task's message
    after = service.get("local2")
    assert (after.status, after.status_message) == ("error", final.error)
    changed = {"status", "status_message", "updated_at"}
    assert after.model_dump(exclude=changed) == before.model_dump(exclude=changed)
