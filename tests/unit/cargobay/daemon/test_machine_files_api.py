"""The guest file endpoints' checks at the edge (``daemon.machine_files``) and the error
translation of ``machines.guest_files``, through FastAPI's TestClient over the real app,
store and service; no VM is booted (every request here is refused before a guest)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cargobay.daemon import machine_files
from cargobay.daemon.app import DaemonState, create_app
from cargobay.daemon.images import DaemonImages
from cargobay.errors import FileTooLarge, GuestError, InvalidInput, NotFound
from cargobay.guest.client import AgentError
from cargobay.machines import guest_files
from cargobay.machines.models import VMStateKind
from cargobay.machines.service import MachineService
from cargobay.paths import Paths
from cargobay.store import Store
from tests.unit.cargobay.daemon.test_api import NoAgents, error_of, no_hypervisor, put_machine


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Store]]:
    paths = Paths.from_env({"CARGOBAY_HOME": str(tmp_path / "home")})
    paths.ensure()
    store = Store.open(paths.db)
    images = DaemonImages(paths)
    service = MachineService(paths, store, no_hypervisor, images, NoAgents())
    state = DaemonState(paths=paths, service=service, images=images)
    with TestClient(create_app(state), raise_server_exceptions=False) as c:
        yield c, store
    store.close()


def test_unknown_machine_is_404(api: tuple[TestClient, Store]) -> None:
    client, _ = api
    for method, url in [
        ("GET", "/v1/machines/ghost/files?path=/etc/hostname"),
        ("PUT", "/v1/machines/ghost/files?path=/tmp/x"),
        ("GET", "/v1/machines/ghost/files/list?path=/"),
    ]:
        status, code, message = error_of(client.request(method, url, content=b"x"))
        assert (status, code) == (404, "not_found"), (method, url)
        assert "ghost" in message


@pytest.mark.parametrize(
    ("method", "url", "words"),
    [
        ("GET", "/v1/machines/box/files?path=etc/hostname", "absolute"),
        ("PUT", "/v1/machines/box/files?path=tmp/x", "absolute"),
        ("GET", "/v1/machines/box/files/list?path=tmp", "absolute"),
        ("GET", "/v1/machines/box/files", "missing field 'path'"),
        ("GET", "/v1/machines/box/files?path=", "path"),
        ("GET", "/v1/machines/box/files?path=/a%00b", "NUL"),
        ("PUT", "/v1/machines/box/files?path=/tmp/x&mode=99999", "mode"),
        ("PUT", "/v1/machines/box/files?path=/tmp/x&mode=rw", "mode"),
    ],
)
def test_bad_input_is_400_before_the_guest(
    api: tuple[TestClient, Store], method: str, url: str, words: str
) -> None:
    client, store = api
    put_machine(store, "box", VMStateKind.RUNNING)
    status, code, message = error_of(client.request(method, url, content=b"data"))
    assert (status, code) == (400, "invalid_input"), message
    assert words in message


def test_stopped_machine_is_409_naming_the_way_out(api: tuple[TestClient, Store]) -> None:
    client, store = api
    put_machine(store, "box", VMStateKind.STOPPED)
    status, code, message = error_of(client.get("/v1/machines/box/files/list?path=/"))
    assert (status, code) == (409, "conflict")
    assert "cargobay vm start box" in message


def test_a_body_over_the_limit_is_413(
    api: tuple[TestClient, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, store = api
    put_machine(store, "box", VMStateKind.RUNNING)
    monkeypatch.setattr(machine_files, "MAX_FILE_BYTES", 10)
    # with a Content-Length: refused up front
    url = "/v1/machines/box/files?path=/x"
    status, code, message = error_of(client.put(url, content=b"y" * 11))
    assert (status, code) == (413, "file_too_large")
    assert "/x (11 bytes) is larger than 10 bytes" in message
    # chunked, without one: refused once the count passes the limit

    def chunks() -> Iterator[bytes]:
        yield b"y" * 6
        yield b"y" * 6

    status, code, _ = error_of(client.put(url, content=chunks()))
    assert (status, code) == (413, "file_too_large")


# -- guest_files: the agent's error kinds become API errors ------------------------------


class RefusingAgent:
    """Stands in for the guest agent's file calls, answering each with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def read_file(self, path: str, *, offset: int = 0, length: int | None = None) -> bytes:
        raise self.error

    async def write_file(
        self, path: str, data: bytes, *, mode: int | None = None, mkdirs: bool = False
    ) -> int:
        raise self.error

    async def list_dir(self, path: str) -> Sequence[Any]:
        raise self.error


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("not_found", NotFound),
        ("is_a_directory", InvalidInput),
        ("not_a_directory", InvalidInput),
        ("permission", InvalidInput),
        ("io", GuestError),
        ("connection", GuestError),
    ],
)
async def test_agent_error_kinds(kind: str, expected: type[Exception]) -> None:
    agent = RefusingAgent(AgentError(f"reading /x: {kind}", kind=kind))
    with pytest.raises(expected) as info:
        await guest_files.read_file(agent, "box", "/x")
    assert str(info.value).startswith("machine 'box': reading /x")
    if expected is GuestError:
        assert not isinstance(info.value, NotFound | InvalidInput)


class FileOfSize(RefusingAgent):
    def __init__(self, size: int) -> None:
        super().__init__(RuntimeError("unused"))
        self.size = size

    async def read_file(self, path: str, *, offset: int = 0, length: int | None = None) -> bytes:
        return b"z" * (self.size if length is None else min(self.size, length))


async def test_a_read_over_the_limit_is_refused() -> None:
    assert await guest_files.read_file(FileOfSize(3), "box", "/x", max_bytes=3) == b"zzz"
    with pytest.raises(FileTooLarge, match="/x is larger than 3 bytes"):
        await guest_files.read_file(FileOfSize(4), "box", "/x", max_bytes=3)


def test_check_guest_path() -> None:
    assert guest_files.check_guest_path("/root/a b") == "/root/a b"
    for bad, words in [("", "missing"), ("a", "absolute"), ("/a\0", "NUL"), ("/" * 5000, "4096")]:
        with pytest.raises(InvalidInput, match=words):
            guest_files.check_guest_path(bad)
