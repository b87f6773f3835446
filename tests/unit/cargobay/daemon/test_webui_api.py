"""The GUI's own endpoints in the daemon app (no sockets: Starlette's test client):
compose file read/validate/save, machine metrics of a stopped machine, the GUI's
address without a TCP listener, and serving the built app at /ui/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cargobay.daemon.app import DaemonState, create_app
from cargobay.daemon.images import DaemonImages
from cargobay.daemon.webui.routes import mount_ui
from cargobay.errors import GuestError
from cargobay.hypervisors.base import Hypervisor
from cargobay.machines.models import VMConfig, VMInstance, VMState, VMStateKind
from cargobay.machines.service import MachineService
from cargobay.paths import Paths
from cargobay.store import Store

COMPOSE = "services:\n  web:\n    image: busybox:1.36\n"


def no_hypervisor(name: str) -> Hypervisor:
    raise RuntimeError(f"no hypervisor in unit tests (asked for {name!r})")


class NoAgents:
    async def wait_ready(self, address: str, timeout: float) -> Any:
        raise GuestError("no guest agents in unit tests")

    async def connect(self, address: str, timeout: float) -> Any:
        raise GuestError("no guest agents in unit tests")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    paths = Paths.from_env({"CARGOBAY_HOME": str(tmp_path / "home")})
    paths.ensure()
    s = Store.open(paths.db)
    yield s
    s.close()


@pytest.fixture
def client(tmp_path: Path, store: Store) -> Iterator[TestClient]:
    paths = Paths.from_env({"CARGOBAY_HOME": str(tmp_path / "home")})
    images = DaemonImages(paths)
    service = MachineService(paths, store, no_hypervisor, images, NoAgents())
    state = DaemonState(paths=paths, service=service, images=images)
    with TestClient(create_app(state), raise_server_exceptions=False) as c:
        yield c


def test_compose_file_read(client: TestClient, tmp_path: Path) -> None:
    file = tmp_path / "compose.yaml"
    file.write_text(COMPOSE)
    r = client.get("/v1/compose/file", params={"path": str(file)})
    assert r.status_code == 200
    assert r.json()["content"] == COMPOSE
    r = client.get("/v1/compose/file", params={"path": str(tmp_path / "nope.yml")})
    assert r.status_code == 404
    assert r.json()["error"]["message"] == f"no compose file {tmp_path / 'nope.yml'}"
    for bad, says in (("compose.yaml", "not an absolute path"), ("/etc/passwd", "not a .yml")):
        r = client.get("/v1/compose/file", params={"path": bad})
        assert r.status_code == 400
        assert says in r.json()["error"]["message"]


def test_compose_file_save_validates_first(client: TestClient, tmp_path: Path) -> None:
    file = tmp_path / "compose.yaml"
    file.write_text(COMPOSE)
    broken = COMPOSE + "    bogus_key: 1\n"
    r = client.put("/v1/compose/file", json={"path": str(file), "content": broken})
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith(f"{file}: service 'web': key 'bogus_key'")
    assert file.read_text() == COMPOSE

    changed = COMPOSE.replace("1.36", "1.37")
    r = client.put(
        "/v1/compose/file", json={"path": str(file), "content": changed, "dry_run": True}
    )
    assert r.status_code == 200
    assert r.json()["saved"] is False
    assert r.json()["project"]["services"]["web"]["image"] == "busybox:1.37"
    assert file.read_text() == COMPOSE

    r = client.put("/v1/compose/file", json={"path": str(file), "content": changed})
    assert r.json()["saved"] is True
    assert file.read_text() == changed
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_metrics_of_a_stopped_machine(client: TestClient, store: Store) -> None:
    vm = VMInstance(name="box", config=VMConfig(memory_mb=384))
    store.insert_machine(vm)
    store.transition(vm, VMState(kind=VMStateKind.STOPPED))
    r = client.get("/v1/machines/box/metrics")
    assert r.status_code == 200
    m = r.json()
    assert m["state"] == "stopped"
    assert m["pid"] is None
    assert m["rss_bytes"] is None
    assert m["memory_limit_bytes"] == 384 * 1024 * 1024
    assert client.get("/v1/machines/nope/metrics").status_code == 404


def test_ui_address_without_a_tcp_listener(client: TestClient) -> None:
    r = client.get("/v1/daemon/ui")
    assert r.status_code == 200
    assert r.json()["tcp"] is None
    assert r.json()["url"] is None


def test_the_built_app_is_served_at_ui(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><div id=root></div>")
    (dist / "assets" / "app.js").write_text("console.log(1)")
    app = FastAPI()
    mount_ui(app, dist)
    with TestClient(app) as c:
        r = c.get("/ui", follow_redirects=False)
        assert r.status_code == 307
        assert r.headers["location"] == "/ui/"
        assert c.get("/ui/").text.startswith("<!doctype html>")
        assert c.get("/ui/assets/app.js").text == "console.log(1)"


def test_a_missing_build_says_how_to_make_it(tmp_path: Path) -> None:
    app = FastAPI()
    mount_ui(app, tmp_path / "missing")
    with TestClient(app) as c:
        r = c.get("/ui/")
        assert r.status_code == 503
        assert "npm run build" in r.text
