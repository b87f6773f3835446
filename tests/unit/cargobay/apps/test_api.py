"""/v1/apps through FastAPI's TestClient over the real app and store: CRUD, validation
errors that name the field, a name clash that names the instance, the legacy import.
Nothing here reaches Docker or starts a process."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cargobay.daemon.app import DaemonState, create_app
from cargobay.daemon.images import DaemonImages
from cargobay.machines.service import MachineService
from cargobay.paths import Paths
from cargobay.store import Store
from tests.unit.cargobay.daemon.test_api import NoAgents, no_hypervisor

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "legacy_launcher.sql"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    paths = Paths.from_env({"CARGOBAY_HOME": str(tmp_path / "home")})
    paths.ensure()
    store = Store.open(paths.db)
    images = DaemonImages(paths)
    service = MachineService(paths, store, no_hypervisor, images, NoAgents())
    state = DaemonState(paths=paths, service=service, images=images)
    with TestClient(create_app(state, recover=False), raise_server_exceptions=False) as c:
        yield c
    store.close()


def test_crud(client: TestClient) -> None:
    created = client.post("/v1/apps", json={"name": "bot1", "stack": {"sqlite_web": True}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["deploy_mode"] == "docker"
    assert body["docker_network"] == "maibot-bot1_maim_bot"
    assert body["status"] == "created"
    assert client.get("/v1/apps/bot1").json()["id"] == body["id"]
    assert [i["name"] for i in client.get("/v1/apps").json()] == ["bot1"]
    patched = client.patch("/v1/apps/bot1", json={"version": "0.9.1"})
    assert patched.json()["version"] == "0.9.1"
    assert patched.json()["stack"]["sqlite_web"] is True
    assert client.get("/v1/apps/bot1/tasks").json() == []


def test_errors_name_the_field_or_the_instance(client: TestClient) -> None:
    assert client.post("/v1/apps", json={"name": "bot1"}).status_code == 201
    clash = client.post("/v1/apps", json={"name": "bot1"})
    assert clash.status_code == 409
    assert "'bot1'" in clash.json()["error"]["message"]
    bad = client.post("/v1/apps", json={"name": "Bad Name"})
    assert bad.status_code == 400
    assert "'name'" in bad.json()["error"]["message"]
    port = client.post("/v1/apps", json={"name": "b2", "stack": {"webui_port": 70000}})
    assert port.status_code == 400
    assert "stack.webui_port" in port.json()["error"]["message"]
    wsl = client.post(
        "/v1/apps", json={"name": "w", "deploy_mode": "wsl2_docker", "wsl_distro": "Ubuntu"}
    )
    assert wsl.status_code == 400
    assert "only available on Windows" in wsl.json()["error"]["message"]
    local = client.post("/v1/apps", json={"name": "l", "deploy_mode": "local"})
    assert local.status_code == 400
    assert "repo_url" in local.json()["error"]["message"]
    missing = client.get("/v1/apps/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "app_not_found"
    undeployed = client.post("/v1/apps/bot1/stop")
    assert undeployed.status_code == 409
    assert "not deployed" in undeployed.json()["error"]["message"]
    assert client.get("/v1/apps/bot1/config/nope").status_code == 400
    assert [i["name"] for i in client.get("/v1/apps").json()] == ["bot1"]  # nothing half-made


def test_import_legacy_and_remove(client: TestClient, tmp_path: Path) -> None:
    relative = client.post("/v1/apps/import-legacy", json={"path": "launcher.db"})
    assert relative.status_code == 400
    db = tmp_path / "launcher.db"
    conn = sqlite3.connect(db)
    conn.executescript(FIXTURE.read_text(encoding="utf-8"))
    conn.close()
    report = client.post("/v1/apps/import-legacy", json={"path": str(db)}).json()
    assert sorted(report["imported"])[1:] == ["old-bot", "test-bot"]
    again = client.post("/v1/apps/import-legacy", json={"path": str(db)}).json()
    assert again["already_imported"] is True
    for name in report["imported"]:
        assert client.delete(f"/v1/apps/{name}", params={"keep_data": "true"}).status_code == 204
    assert client.get("/v1/apps").json() == []


def test_the_service_is_closed_with_the_daemon(tmp_path: Path) -> None:
    """The router's lifespan closes the app service (its tasks and local processes)."""
    paths = Paths.from_env({"CARGOBAY_HOME": str(tmp_path / "home")})
    paths.ensure()
    store = Store.open(paths.db)
    images = DaemonImages(paths)
    service = MachineService(paths, store, no_hypervisor, images, NoAgents())
    app = create_app(DaemonState(paths=paths, service=service, images=images), recover=False)
    with TestClient(app) as c:
        assert c.get("/v1/apps").status_code == 200
        assert app.state.apps is not None
    assert app.state.apps is None
    store.close()


def test_napcat_source_is_validated_and_updatable_for_local_mode(client: TestClient) -> None:
    napcat = {"url": "http://127.0.0.1/NapCat.zip", "sha256": "A" * 64, "version": "4.1"}
    body = {"name": "loc", "deploy_mode": "local", "repo_url": "http://127.0.0.1/r.git"}
    created = client.post("/v1/apps", json={**body, "napcat": napcat})
    assert created.status_code == 201, created.text
    assert created.json()["napcat"] == {**napcat, "sha256": "a" * 64}
    bad = client.post(
        "/v1/apps", json={**body, "name": "loc2", "napcat": {**napcat, "sha256": "x"}}
    )
    assert bad.status_code == 400
    assert "sha256" in bad.json()["error"]["message"]
    newer = {**napcat, "version": "4.2", "sha256": "b" * 64}
    patched = client.patch("/v1/apps/loc", json={"napcat": newer})
    assert patched.status_code == 200, patched.text
    assert patched.json()["napcat"]["version"] == "4.2"
    assert patched.json()["repo_url"] == "http://127.0.0.1/r.git"
    assert client.post("/v1/apps", json={"name": "dock"}).status_code == 201
    refused = client.patch("/v1/apps/dock", json={"napcat": newer})
    assert refused.status_code == 400
    assert "only for deploy_mode local" in refused.json()["error"]["message"]
    on_docker = client.post("/v1/apps", json={"name": "dock2", "napcat": napcat})
    assert on_docker.status_code == 400
