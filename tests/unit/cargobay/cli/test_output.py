"""Formatting: machine/image tables, JSON/YAML documents, exec streams and exit codes."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import typer
import yaml

from cargobay.cli.app import EXIT_USAGE, exit_code_for
from cargobay.cli.machines import copy_exec_output, exit_status
from cargobay.cli.output import (
    Format,
    age,
    emit_document,
    image_rows,
    machine_detail,
    machine_rows,
    pick_format,
    state_text,
)
from cargobay.errors import (
    CargoBayError,
    Conflict,
    DaemonError,
    GuestError,
    GuestTimeout,
    HypervisorError,
    ImageError,
    InvalidInput,
    NotFound,
)
from cargobay.machines.models import (
    PortForward,
    RuntimeInfo,
    VMConfig,
    VMInstance,
    VMState,
    VMStateKind,
)

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def machine_json(name: str = "box", **state: Any) -> dict[str, Any]:
    """A Machine as the daemon sends it: VMInstance in JSON mode plus agent_ready."""
    vm = VMInstance(
        name=name,
        state=VMState(kind=state.get("kind", VMStateKind.RUNNING), reason=state.get("reason")),
        config=VMConfig(
            cpus=2, memory_mb=1536, disk_mb=4096, ports=(PortForward(host=8080, guest=80),)
        ),
        runtime=RuntimeInfo(accel="tcg", boot_seconds=3.25, started_at=NOW),
        created_at=NOW - timedelta(minutes=5),
    )
    return {**vm.model_dump(mode="json"), "agent_ready": True}


def test_machine_rows_from_the_daemons_json() -> None:
    rows = machine_rows([machine_json()], now=NOW)
    assert rows == [["box", "running", "default", "2", "1.5 GiB", "4 GiB", "8080:80/tcp", "5m"]]


def test_error_state_shows_its_reason() -> None:
    m = machine_json(kind=VMStateKind.ERROR, reason="qemu exited with status 1")
    assert state_text(m) == "error: qemu exited with status 1"
    assert machine_rows([m], now=NOW)[0][1] == "error: qemu exited with status 1"


def test_machine_detail() -> None:
    pairs = dict(machine_detail(machine_json(), now=NOW))
    assert pairs["state"] == "running"
    assert pairs["agent"] == "ready"
    assert pairs["accel"] == "tcg"
    assert pairs["boot"] == "3.25 s"
    assert pairs["memory"] == "1.5 GiB"
    assert pairs["created"].endswith("(5m ago)")


def test_image_rows() -> None:
    img = {
        "name": "default",
        "kernel_version": "6.1.0-28-cloud-amd64",
        "rootfs": {"path": "rootfs.ext4", "size": 600 * 2**20, "sha256": "0" * 64},
        "agent_version": "1",
        "built_at": (NOW - timedelta(hours=3)).isoformat(),
    }
    assert image_rows([img], now=NOW) == [
        ["default", "6.1.0-28-cloud-amd64", "600 MiB", "1", "3h ago"]
    ]


@pytest.mark.parametrize(
    ("delta", "text"),
    [(timedelta(seconds=5), "5s"), (timedelta(hours=49), "2d"), (timedelta(minutes=61), "1h")],
)
def test_age(delta: timedelta, text: str) -> None:
    assert age((NOW - delta).isoformat().replace("+00:00", "Z"), now=NOW) == text
    assert age(None) == "-"
    assert age("yesterday") == "-"


def test_documents_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    data = [machine_json("a"), machine_json("b")]
    emit_document(data, Format.JSON)
    assert json.loads(capsys.readouterr().out) == data
    emit_document(data, Format.YAML)
    assert yaml.safe_load(capsys.readouterr().out) == data


def test_pick_format() -> None:
    assert pick_format(None, False) is Format.TABLE
    assert pick_format(None, True) is Format.JSON
    assert pick_format(Format.YAML, False) is Format.YAML
    assert pick_format(Format.JSON, True) is Format.JSON
    with pytest.raises(InvalidInput, match="contradict"):
        pick_format(Format.YAML, True)


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (InvalidInput("x"), 2),
        (NotFound("x"), 3),
        (Conflict("x"), 4),
        (DaemonError("x"), 5),
        (ImageError("x"), 1),
        (HypervisorError("x"), 1),
        (GuestError("x"), 1),
        (GuestTimeout("x"), 1),
        (CargoBayError("x"), 1),
        (typer.BadParameter("x"), EXIT_USAGE),
    ],
)
def test_exit_codes_by_kind(err: BaseException, code: int) -> None:
    assert exit_code_for(err) == code


class _Streams:
    def __init__(self) -> None:
        self.out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        self.err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")

    def value(self, stream: io.TextIOWrapper) -> bytes:
        stream.flush()
        raw = stream.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue()


def _data(kind: str, data: bytes) -> dict[str, Any]:
    return {"type": kind, "data_b64": base64.b64encode(data).decode()}


def test_exec_output_is_copied_byte_for_byte() -> None:
    s = _Streams()
    events = [
        {"type": "started", "pid": 42},
        _data("stdout", b"hello "),
        _data("stderr", b"warn\n"),
        _data("stdout", b"\xff\xfeworld\n"),
        {"type": "exit", "exit_code": 7, "signal": None, "timed_out": False, "duration": 0.1},
    ]
    exit_event = copy_exec_output(events, s.out, s.err)
    assert exit_event is not None
    assert exit_status(exit_event) == 7
    assert s.value(s.out) == b"hello \xff\xfeworld\n"
    assert s.value(s.err) == b"warn\n"


def test_exec_stream_without_exit_event() -> None:
    s = _Streams()
    assert copy_exec_output([_data("stdout", b"x")], s.out, s.err) is None


def test_exec_stream_error_event_raises_its_class() -> None:
    s = _Streams()
    events = [
        _data("stdout", b"partial"),
        {"type": "error", "code": "guest_timeout", "message": "m"},
    ]
    with pytest.raises(GuestTimeout, match=r"^m$"):
        copy_exec_output(events, s.out, s.err)
    assert s.value(s.out) == b"partial"


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({"exit_code": 0}, 0),
        ({"exit_code": 7}, 7),
        ({"exit_code": 255}, 255),
        ({"exit_code": None, "signal": 9}, 137),
        ({"exit_code": -15, "signal": 15}, 143),
        ({"exit_code": None, "signal": 9, "timed_out": True}, 124),
        ({"exit_code": None, "signal": None}, 1),
    ],
)
def test_exit_status(event: dict[str, Any], code: int) -> None:
    assert exit_status({"type": "exit", **event}) == code
