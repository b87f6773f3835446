"""The /v1/engine endpoints refuse bad input before talking to any engine (in-process
ASGI; the configured engine is a socket path that does not exist, so a request that got
that far would answer 503 engine_unavailable instead of 400)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from cargobay.daemon.app import DaemonState, create_app
from cargobay.paths import Paths


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    config = tmp_path / "containers.toml"
    config.write_text(f'docker_host = "unix://{tmp_path}/no-engine.sock"\n')
    monkeypatch.setenv("CARGOBAY_CONTAINERS_CONFIG", str(config))
    paths = Paths.from_env({"CARGOBAY_HOME": str(tmp_path / "home")})
    state = DaemonState(paths=paths, service=cast(Any, None), images=cast(Any, None))
    return TestClient(create_app(state, recover=False))  # no lifespan: nothing to recover


def error(response: Any) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


@pytest.mark.parametrize(
    ("method", "url", "body", "code", "message"),
    [
        ("post", "/v1/engine/images/pull", {}, "invalid_input", "missing field 'reference'"),
        ("post", "/v1/engine/images/pull", {"reference": ""}, "invalid_input", "reference"),
        (
            "post",
            "/v1/engine/images/pull",
            {"reference": "x", "extra": 1},
            "invalid_input",
            "unknown field",
        ),
        (
            "post",
            "/v1/engine/images/pull",
            {"reference": "Bad:Ref"},
            "invalid_reference",
            "lowercase",
        ),
        (
            "post",
            "/v1/engine/images/check-update",
            {"reference": "a:b:c"},
            "invalid_reference",
            "invalid",
        ),
        ("post", "/v1/engine/images/prune", {"label": ["=x"]}, "invalid_input", "bad label filter"),
        ("get", "/v1/engine/images?label==v", None, "invalid_input", "bad label filter"),
        ("get", "/v1/engine/logs", None, "invalid_input", "name a container"),
        ("get", "/v1/engine/logs?container=c&since=yesterday", None, "invalid_input", "bad time"),
        (
            "get",
            "/v1/engine/logs?container=c&search=(&regex=true",
            None,
            "invalid_input",
            "bad search pattern",
        ),
        ("get", "/v1/engine/logs?container=c&tail=-1", None, "invalid_input", "tail"),
        ("get", "/v1/engine/containers/c/stats?samples=0", None, "invalid_input", "samples"),
        ("post", "/v1/engine/containers/c/stop", {"timeout": -1}, "invalid_input", "timeout"),
        ("get", "/v1/engine/events?since=soon", None, "invalid_input", "bad time"),
    ],
)
def test_bad_input_is_400(
    client: TestClient, method: str, url: str, body: Any, code: str, message: str
) -> None:
    response = client.request(method.upper(), url, json=body)
    status, got_code, got_message = error(response)
    assert (status, got_code) == (400, code), got_message
    assert message in got_message


def test_without_an_engine_it_is_503_with_a_hint(client: TestClient, tmp_path: Path) -> None:
    for url in ("/v1/engine", "/v1/engine/images", "/v1/engine/containers?all=true"):
        status, code, message = error(client.get(url))
        assert (status, code) == (503, "engine_unavailable")
        assert f"{tmp_path}/no-engine.sock" in message
        assert "install" in message
    status, code, _ = error(client.post("/v1/engine/images/pull", json={"reference": "busybox"}))
    assert (status, code) == (503, "engine_unavailable")  # before the stream starts


def test_bad_image_name_on_remove(client: TestClient) -> None:
    status, code, message = error(client.delete("/v1/engine/images/Bad%2FName"))
    assert (status, code) == (400, "invalid_reference")
    assert "lowercase" in message


def test_engine_info_names_the_configured_socket(client: TestClient) -> None:
    _, _, message = error(client.get("/v1/engine"))
    assert "from config" in message
