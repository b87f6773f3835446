"""The daemon API's request validation and error mapping, through FastAPI's TestClient over
the real app, store and image store; no VM is booted (nothing here gets that far)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cargobay.daemon.app import DaemonState, create_app
from cargobay.daemon.images import DaemonImages
from cargobay.errors import GuestError
from cargobay.hypervisors.base import Hypervisor
from cargobay.machines.models import VMConfig, VMInstance, VMState, VMStateKind, parse_port
from cargobay.machines.service import MachineService
from cargobay.paths import Paths
from cargobay.store import Store


class NoHypervisor(RuntimeError):
    pass


def no_hypervisor(name: str) -> Hypervisor:
    """These tests never reach a hypervisor; one that does fails loudly (an HTTP 500)."""
    raise NoHypervisor(f"no hypervisor in unit tests (asked for {name!r})")


class NoAgents:
    async def wait_ready(self, address: str, timeout: float) -> Any:
        raise GuestError("no guest agents in unit tests")

    async def connect(self, address: str, timeout: float) -> Any:
        raise GuestError("no guest agents in unit tests")


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths.from_env({"CARGOBAY_HOME": str(tmp_path / "home")})
    p.ensure()
    return p


@pytest.fixture
def store(paths: Paths) -> Iterator[Store]:
    s = Store.open(paths.db)
    yield s
    s.close()


@pytest.fixture
def shutdowns() -> list[bool]:
    return []


@pytest.fixture
def client(paths: Paths, store: Store, shutdowns: list[bool]) -> Iterator[TestClient]:
    images = DaemonImages(paths)
    service = MachineService(paths, store, no_hypervisor, images, NoAgents())
    state = DaemonState(
        paths=paths,
        service=service,
        images=images,
        request_shutdown=lambda: shutdowns.append(True),
    )
    with TestClient(create_app(state), raise_server_exceptions=False) as c:
        yield c


def put_machine(store: Store, name: str, kind: VMStateKind, **config: Any) -> VMInstance:
    vm = VMInstance(name=name, config=VMConfig(**config))
    store.insert_machine(vm)
    path = {
        VMStateKind.CREATING: [],
        VMStateKind.RUNNING: [VMStateKind.RUNNING],
        VMStateKind.PAUSED: [VMStateKind.RUNNING, VMStateKind.PAUSED],
        VMStateKind.STOPPED: [VMStateKind.STOPPED],
        VMStateKind.ERROR: [VMStateKind.ERROR],
    }[kind]
    for step in path:
        state = VMState.error("test") if step is VMStateKind.ERROR else VMState(kind=step)
        vm = store.transition(vm, state)
    return vm


def error_of(response: Any) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return response.status_code, body["error"]["code"], body["error"]["message"]


def test_info(client: TestClient, paths: Paths) -> None:
    info = client.get("/v1/info").json()
    assert info["api_version"] == 1
    assert info["version"]
    assert info["pid"] > 0
    assert info["uptime"] >= 0
    assert info["accel"] is None  # nothing running
    assert isinstance(info["backends"], list)
    assert info["paths"]["socket"] == str(paths.daemon_socket)


def test_empty_lists(client: TestClient) -> None:
    assert client.get("/v1/machines").json() == []
    assert client.get("/v1/images").json() == []


def test_unknown_machine_is_404_everywhere(client: TestClient) -> None:
    for method, url, body in [
        ("GET", "/v1/machines/ghost", None),
        ("POST", "/v1/machines/ghost/start", {}),
        ("POST", "/v1/machines/ghost/stop", {}),
        ("POST", "/v1/machines/ghost/pause", None),
        ("POST", "/v1/machines/ghost/resume", None),
        ("DELETE", "/v1/machines/ghost", None),
        ("POST", "/v1/machines/ghost/exec", {"argv": ["true"]}),
        ("GET", "/v1/machines/ghost/logs", None),
    ]:
        response = client.request(method, url, json=body)
        status, code, message = error_of(response)
        assert (status, code) == (404, "not_found"), (method, url, response.text)
        assert "ghost" in message
        assert "\n" not in message


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": "box", "memory": "8XB"}, "memory", "512MB"),
        ({"name": "box", "disk": "lots"}, "disk", "2GB"),
        ({"name": "Bad Name!"}, "name", "lower-case"),
        ({"name": "box", "cpus": 0}, "cpus", "1 to 64"),
        ({"name": "box", "ports": ["80"]}, "port", "HOST:GUEST"),
        ({"name": "box", "ports": ["8080:80", "8080:81"]}, "8080", "twice"),
        ({"name": "box", "boot_timeout": 0}, "boot_timeout", "seconds"),
    ],
)
def test_bad_create_input_is_400_with_one_line(
    client: TestClient, body: dict[str, Any], field: str, words: str
) -> None:
    status, code, message = error_of(client.post("/v1/machines", json=body))
    assert (status, code) == (400, "invalid_input")
    assert field in message
    assert words in message
    assert "\n" not in message
    assert client.get("/v1/machines").json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "box", "cpus": "two"}, "cpus"),
        ({"name": "box", "colour": "red"}, "colour"),
        ({}, "name"),
        ({"name": "box", "ports": "8080:80"}, "ports"),
    ],
)
def test_malformed_body_is_400_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    status, code, message = error_of(client.post("/v1/machines", json=body))
    assert (status, code) == (400, "invalid_input")
    assert repr(field) in message
    assert "\n" not in message


def test_invalid_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/v1/machines", content=b"{not json", headers={"content-type": "application/json"}
    )
    status, code, message = error_of(response)
    assert (status, code) == (400, "invalid_input")
    assert "JSON" in message


def test_bad_query_parameter_is_400(client: TestClient, store: Store) -> None:
    put_machine(store, "box", VMStateKind.STOPPED)
    status, code, message = error_of(client.get("/v1/machines/box/logs?tail=-3"))
    assert (status, code) == (400, "invalid_input")
    assert "tail" in message


def test_missing_image_is_404(client: TestClient) -> None:
    status, code, message = error_of(
        client.post("/v1/machines", json={"name": "box", "image": "nosuch"})
    )
    assert (status, code) == (404, "not_found")
    assert "cargobay image build nosuch" in message
    assert client.get("/v1/machines").json() == []


def test_duplicate_name_is_409(client: TestClient, store: Store) -> None:
    put_machine(store, "box", VMStateKind.STOPPED)
    status, code, message = error_of(client.post("/v1/machines", json={"name": "box"}))
    assert (status, code) == (409, "conflict")
    assert "already exists" in message
    assert len(client.get("/v1/machines").json()) == 1


def test_host_port_taken_by_another_machine_is_409(client: TestClient, store: Store) -> None:
    client_ports = {"name": "two", "ports": ["8080:80"]}
    put_machine(store, "one", VMStateKind.STOPPED, ports=(parse_port("8080:8000"),))
    status, code, message = error_of(client.post("/v1/machines", json=client_ports))
    assert (status, code) == (409, "conflict")
    assert "'one'" in message


def test_machine_json_shape(client: TestClient, store: Store) -> None:
    vm = put_machine(store, "box", VMStateKind.STOPPED, cpus=2, memory_mb=384)
    got = client.get("/v1/machines/box").json()
    assert got["id"] == vm.id
    assert got["name"] == "box"
    assert got["state"] == {"kind": "stopped", "reason": None}
    assert got["config"]["cpus"] == 2
    assert got["config"]["memory_mb"] == 384
    assert got["agent_ready"] is False
    assert client.get("/v1/machines").json() == [got]


def test_wrong_state_operations_are_409(client: TestClient, store: Store) -> None:
    put_machine(store, "stopped", VMStateKind.STOPPED)
    put_machine(store, "running", VMStateKind.RUNNING)
    put_machine(store, "paused", VMStateKind.PAUSED)
    cases = [
        ("POST", "/v1/machines/running/start", {}, "already running"),
        ("POST", "/v1/machines/paused/start", {}, "resume"),
        ("POST", "/v1/machines/stopped/pause", None, "only a running machine"),
        ("POST", "/v1/machines/stopped/resume", None, "only a paused machine"),
        ("POST", "/v1/machines/stopped/exec", {"argv": ["true"]}, "cargobay vm start stopped"),
        ("POST", "/v1/machines/paused/exec", {"argv": ["true"]}, "resume"),
        ("DELETE", "/v1/machines/running", None, "--force"),
        ("DELETE", "/v1/machines/paused", None, "--force"),
    ]
    for method, url, body, words in cases:
        status, code, message = error_of(client.request(method, url, json=body))
        assert (status, code) == (409, "conflict"), (url, message)
        assert words in message, (url, message)
    # Nothing changed.
    states = {m["name"]: m["state"]["kind"] for m in client.get("/v1/machines").json()}
    assert states == {"stopped": "stopped", "running": "running", "paused": "paused"}


def test_stop_of_a_stopped_machine_is_a_no_op(client: TestClient, store: Store) -> None:
    vm = put_machine(store, "box", VMStateKind.STOPPED)
    response = client.post("/v1/machines/box/stop", json={"force": True})
    assert response.status_code == 200
    assert response.json()["state"]["kind"] == "stopped"
    assert len(store.events(vm.id)) == 2  # created, stopped: no new transition


def test_delete_of_a_stopped_machine(client: TestClient, store: Store, paths: Paths) -> None:
    vm = put_machine(store, "box", VMStateKind.STOPPED)
    machine_dir = paths.machines / vm.id
    machine_dir.mkdir(parents=True)
    (machine_dir / "data.ext4").write_bytes(b"x")
    assert client.delete("/v1/machines/box").status_code == 204
    assert not machine_dir.exists()
    assert store.find_machine("box") is None
    status, code, _ = error_of(client.delete("/v1/machines/box"))
    assert (status, code) == (404, "not_found")


def test_exec_validation(client: TestClient, store: Store) -> None:
    put_machine(store, "box", VMStateKind.RUNNING)
    for body, field in [
        ({"argv": []}, "argv"),
        ({"argv": ["true"], "timeout": -1}, "timeout"),
        ({"argv": ["true"], "stdin_b64": "***"}, "stdin_b64"),
        ({"argv": "true"}, "argv"),
    ]:
        status, code, message = error_of(client.post("/v1/machines/box/exec", json=body))
        assert (status, code) == (400, "invalid_input"), (body, message)
        assert field in message


def test_unexpected_exception_is_500_and_the_app_keeps_serving(
    client: TestClient, store: Store
) -> None:
    put_machine(store, "box", VMStateKind.RUNNING)
    status, code, message = error_of(client.post("/v1/machines/box/pause"))
    assert (status, code) == (500, "error")
    assert "no hypervisor in unit tests" in message
    assert client.get("/v1/info").status_code == 200
    # The failed pause happened before any transition: the machine is still running.
    assert client.get("/v1/machines/box").json()["state"]["kind"] == "running"


def test_start_without_a_data_disk_is_409(client: TestClient, store: Store) -> None:
    put_machine(store, "box", VMStateKind.STOPPED)
    status, code, message = error_of(client.post("/v1/machines/box/start", json={}))
    assert (status, code) == (409, "conflict")
    assert "data disk" in message
    assert "cargobay vm rm box" in message
    assert client.get("/v1/machines/box").json()["state"]["kind"] == "stopped"


def test_unknown_endpoint_and_method(client: TestClient) -> None:
    status, code, message = error_of(client.get("/v1/nothing"))
    assert (status, code) == (404, "not_found")
    assert "/v1/nothing" in message
    status, code, _ = error_of(client.put("/v1/machines"))
    assert status == 405


def test_image_delete(client: TestClient, store: Store, paths: Paths) -> None:
    status, code, message = error_of(client.delete("/v1/images/nosuch"))
    assert (status, code) == (404, "not_found")
    put_machine(store, "box", VMStateKind.STOPPED, image="default")
    (paths.images / "default").mkdir(parents=True)
    status, code, message = error_of(client.delete("/v1/images/default"))
    assert (status, code) == (409, "conflict")
    assert "box" in message
    assert (paths.images / "default").is_dir()


def test_shutdown_is_202_and_asks_the_server_to_stop(
    client: TestClient, shutdowns: list[bool]
) -> None:
    response = client.post("/v1/daemon/shutdown")
    assert response.status_code == 202
    assert shutdowns == [True]


def test_openapi_is_served_and_has_no_422(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert "/v1/machines/{name}/exec" in doc["paths"]
    assert '"422"' not in json.dumps(doc)
