"""Docker socket request checks, socket paths and the HTTP error answer (no sockets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from cargobay.cli.docker_socket import check_options
from cargobay.dockersock.listener import error_reply
from cargobay.dockersock.models import (
    DockerSocketCreate,
    check_target,
    default_socket_path,
    forwarder_id,
    resolve_socket_path,
)
from cargobay.errors import (
    DockerSocketInUse,
    EngineUnavailable,
    InvalidInput,
    NoDockerEngine,
)


def test_exactly_one_target() -> None:
    check_target(DockerSocketCreate(vm="dock"))
    check_target(DockerSocketCreate(host_engine=True))
    with pytest.raises(InvalidInput, match="not both"):
        check_target(DockerSocketCreate(vm="dock", host_engine=True))
    with pytest.raises(InvalidInput, match="--vm NAME"):
        check_target(DockerSocketCreate())


def test_request_model_rejects_unknown_fields_and_bad_waits() -> None:
    with pytest.raises(ValidationError, match="sock"):
        DockerSocketCreate.model_validate({"vm": "x", "sock": "/tmp/x"})
    with pytest.raises(ValidationError, match="wait"):
        DockerSocketCreate(vm="x", wait=-1)
    with pytest.raises(ValidationError, match="wait"):
        DockerSocketCreate(vm="x", wait=601)


def test_default_paths(tmp_path: Path) -> None:
    assert default_socket_path(tmp_path, "dock") == str(tmp_path / "docker-dock.sock")
    assert default_socket_path(tmp_path, None) == str(tmp_path / "docker-host.sock")
    runtime = tmp_path / "run" / "cargobay"  # missing: made for a default path
    assert resolve_socket_path(None, runtime, "dock") == str(runtime / "docker-dock.sock")
    assert runtime.is_dir()


def test_given_paths_are_checked(tmp_path: Path) -> None:
    assert resolve_socket_path(f"{tmp_path}//a/../d.sock", tmp_path, None) == str(
        tmp_path / "d.sock"
    )
    with pytest.raises(InvalidInput, match="not an absolute path"):
        resolve_socket_path("d.sock", tmp_path, None)
    with pytest.raises(InvalidInput, match="at most 107"):
        resolve_socket_path("/tmp/" + "x" * 110, tmp_path, None)
    with pytest.raises(InvalidInput, match="does not exist"):
        resolve_socket_path(str(tmp_path / "nodir" / "d.sock"), tmp_path, None)
    assert not (tmp_path / "nodir").exists()  # never made for a path the user gave
    with pytest.raises(InvalidInput, match="NUL"):
        resolve_socket_path("/tmp/a\0b", tmp_path, None)
    with pytest.raises(InvalidInput, match="directory"):
        resolve_socket_path("/", tmp_path, None)


def test_ids_are_stable_and_distinct() -> None:
    assert forwarder_id("/tmp/a.sock") == forwarder_id("/tmp/a.sock")
    assert forwarder_id("/tmp/a.sock") != forwarder_id("/tmp/b.sock")
    assert len(forwarder_id("/tmp/a.sock")) == 12


def _parse(reply: bytes) -> tuple[int, dict[str, str], dict[str, str]]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert lines[0].startswith("HTTP/1.1 ")
    assert int(headers["Content-Length"]) == len(body)
    return status, headers, json.loads(body)


@pytest.mark.parametrize(
    ("err", "status"),
    [
        (NoDockerEngine("machine 'dock' has no Docker engine"), 404),
        (DockerSocketInUse("in use"), 409),
        (EngineUnavailable("the host's engine is gone"), 503),
        (InvalidInput("bad"), 400),
        (RuntimeError("bug"), 502),
    ],
)
def test_error_reply_is_an_engine_style_http_answer(err: Exception, status: int) -> None:
    got, headers, body = _parse(error_reply(err))
    assert got == status
    assert headers["Connection"] == "close"
    assert headers["Content-Type"] == "application/json"
    assert body == {"message": f"cargobay docker-socket: {err}"}


def test_cli_options() -> None:
    check_options("dock", False, False, None, False)
    check_options(None, True, False, None, True)
    check_options(None, False, True, None, False)
    check_options(None, False, False, "/tmp/d.sock", False)
    with pytest.raises(InvalidInput, match="not both"):
        check_options("dock", True, False, None, False)
    with pytest.raises(InvalidInput, match="--host-engine"):
        check_options(None, False, False, None, False)
    with pytest.raises(InvalidInput, match="--list or --stop"):
        check_options(None, False, True, "x", False)
    with pytest.raises(InvalidInput, match="takes no"):
        check_options("dock", False, True, None, False)
