"""The daemon's /v1/compose endpoints that need no engine (config, export, validation and
file errors before any stream starts), through FastAPI's TestClient over the real app."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from fastapi.testclient import TestClient

from cargobay.daemon.app import DaemonState, create_app
from cargobay.paths import Paths


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    paths = Paths.from_env({"CARGOBAY_HOME": str(tmp_path / "home")})
    state = DaemonState(paths=paths, service=cast(Any, None), images=cast(Any, None))
    # no lifespan (not used as a context manager): no machines service is needed
    return TestClient(create_app(state, recover=False), raise_server_exceptions=False)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "Shop"
    directory.mkdir()
    (directory / "compose.yaml").write_text(
        "services:\n"
        "  web:\n"
        "    image: web:${TAG}\n"
        "    container_name: the-web\n"
        "    ports: ['8080:80']\n"
        "    depends_on: {db: {condition: service_healthy}}\n"
        "  db:\n"
        "    image: db:1\n"
        "    healthcheck: {test: 'true'}\n"
    )
    return directory


def body(directory: Path, **more: Any) -> dict[str, Any]:
    return {"working_dir": str(directory), "env": {"TAG": "2"}, **more}


def test_config_uses_the_callers_environment(client: TestClient, project_dir: Path) -> None:
    reply = client.post("/v1/compose/config", json=body(project_dir))
    assert reply.status_code == 200, reply.text
    doc = reply.json()["project"]
    assert doc["name"] == "shop"
    assert doc["services"]["web"]["image"] == "web:2"
    assert reply.json()["warnings"] == []
    reply = client.post("/v1/compose/config", json=body(project_dir, env={}))
    assert reply.json()["project"]["services"]["web"]["image"] == "web:"
    assert "TAG" in reply.json()["warnings"][0]


def test_export(client: TestClient, project_dir: Path) -> None:
    reply = client.post("/v1/compose/export", json=body(project_dir, format="swarm"))
    assert reply.status_code == 200, reply.text
    out = reply.json()
    assert yaml.safe_load(out["yaml"])["services"]["web"]["image"] == "web:2"
    assert any("container_name" in w for w in out["warnings"])
    reply = client.post("/v1/compose/export", json=body(project_dir, format="kubernetes"))
    kinds = [d["kind"] for d in yaml.safe_load_all(reply.json()["yaml"])]
    assert kinds == ["Deployment", "Service", "Deployment"]
    reply = client.post("/v1/compose/export", json=body(project_dir, format="nomad"))
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "invalid_input"


@pytest.mark.parametrize("endpoint", ["config", "up", "down", "ps", "logs", "export", "deploy"])
def test_file_errors_are_400_before_any_stream(
    client: TestClient, project_dir: Path, endpoint: str
) -> None:
    (project_dir / "compose.yaml").write_text("services:\n  web:\n    image: x\n    portz: []\n")
    extra = {"format": "swarm"} if endpoint == "export" else {}
    reply = client.post(f"/v1/compose/{endpoint}", json=body(project_dir, **extra))
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "compose_file_error"
    assert "compose.yaml: service 'web': key 'portz': unknown key" in error["message"]


def test_request_validation(client: TestClient, project_dir: Path) -> None:
    reply = client.post("/v1/compose/config", json={"files": []})
    assert reply.status_code == 400
    assert "working_dir" in reply.json()["error"]["message"]
    reply = client.post("/v1/compose/up", json=body(project_dir, wait_timeout=-1))
    assert reply.status_code == 400
    reply = client.post("/v1/compose/config", json=body(project_dir, bogus=1))
    assert reply.status_code == 400
    assert "unknown field" in reply.json()["error"]["message"]


def test_no_compose_file(client: TestClient, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    reply = client.post("/v1/compose/config", json=body(empty))
    assert reply.status_code == 400
    assert "no compose file" in reply.json()["error"]["message"]
