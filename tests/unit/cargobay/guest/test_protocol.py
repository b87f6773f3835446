"""The agent wire protocol: frames, request encoding/validation, errno mapping."""

from __future__ import annotations

import errno
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cargobay.guest.protocol import (
    ERROR_KINDS,
    FRAME_HEADER,
    MAX_FRAME,
    PROTOCOL_VERSION,
    ExecRequest,
    FileListRequest,
    FileReadRequest,
    FileStatRequest,
    FileWriteRequest,
    InfoRequest,
    Kind,
    Request,
    RequestError,
    ShutdownRequest,
    decode_header,
    decode_json,
    encode_frame,
    encode_json,
    encode_request,
    error_from_oserror,
    is_valid_nonce,
    kind_for_errno,
    parse_request,
)

ALL_KINDS = [v for k, v in vars(Kind).items() if k.isupper()]


def split(frame: bytes) -> tuple[bytes, bytes]:
    kind, length = decode_header(frame[: FRAME_HEADER.size])
    payload = frame[FRAME_HEADER.size :]
    assert len(payload) == length
    return kind, payload


@pytest.mark.parametrize("kind", ALL_KINDS)
@given(payload=st.binary(max_size=2048))
def test_frame_round_trip(kind: bytes, payload: bytes) -> None:
    assert split(encode_frame(kind, payload)) == (kind, payload)


def test_frame_layout_is_kind_then_big_endian_length() -> None:
    assert encode_frame(Kind.STDOUT, b"abc") == b"O\x00\x00\x00\x03abc"
    assert encode_frame(Kind.END) == b"Z\x00\x00\x00\x00"


def test_kinds_are_distinct_single_bytes() -> None:
    assert len(set(ALL_KINDS)) == len(ALL_KINDS) == 12
    assert all(len(k) == 1 for k in ALL_KINDS)


def test_json_frame() -> None:
    kind, payload = split(encode_json(Kind.EXIT, {"exit_code": 3, "signal": None}))
    assert kind == Kind.EXIT
    assert decode_json(payload) == {"exit_code": 3, "signal": None}


@pytest.mark.parametrize(
    ("header", "what"),
    [
        (b"?\x00\x00\x00\x00", "unknown frame kind"),
        (FRAME_HEADER.pack(Kind.DATA, MAX_FRAME + 1), "exceeds"),
        (b"D\x00\x00", "5 bytes"),
    ],
)
def test_bad_headers_are_protocol_errors(header: bytes, what: str) -> None:
    with pytest.raises(RequestError, match=what) as info:
        decode_header(header)
    assert info.value.kind == "protocol"


def test_largest_frame_is_accepted() -> None:
    assert decode_header(FRAME_HEADER.pack(Kind.DATA, MAX_FRAME)) == (Kind.DATA, MAX_FRAME)


def test_decode_json_wants_an_object() -> None:
    with pytest.raises(ValueError, match="object"):
        decode_json(b"[1, 2]")


REQUESTS: list[Request] = [
    InfoRequest(client="tests"),
    ExecRequest(argv=("sh", "-c", "echo hi")),
    ExecRequest(
        argv=("cat",),
        env={"A": "1", "B": ""},
        cwd="/tmp",
        stdin=True,
        tty=True,
        timeout=2.5,
        rows=50,
        cols=132,
        started=False,
    ),
    FileReadRequest(path="/etc/hostname"),
    FileReadRequest(path="/x", offset=10, length=0),
    FileWriteRequest(path="/tmp/f", mode=0o600, append=True, mkdirs=True),
    FileStatRequest(path="/"),
    FileListRequest(path="/tmp"),
    ShutdownRequest(reboot=True),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_requests_round_trip(request_: Request) -> None:
    kind, payload = split(encode_request(request_))
    assert kind == Kind.REQUEST
    assert json.loads(payload)["op"] == request_.op
    assert parse_request(payload) == request_


def raw(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def test_defaults_are_filled_and_unknown_fields_ignored() -> None:
    req = parse_request(raw({"op": "exec", "argv": ["true"], "future": 1}))
    assert req == ExecRequest(argv=("true",))
    assert isinstance(req, ExecRequest)
    assert (req.rows, req.cols, req.stdin, req.tty, req.timeout) == (24, 80, False, False, None)
    assert req.started is True


@pytest.mark.parametrize(
    ("obj", "kind", "what"),
    [
        ({"op": "exec", "argv": []}, "invalid", "argv"),
        ({"op": "exec", "argv": "ls"}, "invalid", "argv"),
        ({"op": "exec", "argv": ["ls", 1]}, "invalid", "argv"),
        ({"op": "exec", "argv": [""]}, "invalid", "program"),
        ({"op": "exec", "argv": ["a\x00b"]}, "invalid", "NUL"),
        ({"op": "exec", "argv": ["ls"], "env": {"A": 1}}, "invalid", "env"),
        ({"op": "exec", "argv": ["ls"], "env": {"A=B": "1"}}, "invalid", "environment"),
        ({"op": "exec", "argv": ["ls"], "env": ["A"]}, "invalid", "env"),
        ({"op": "exec", "argv": ["ls"], "cwd": "tmp"}, "invalid", "absolute"),
        ({"op": "exec", "argv": ["ls"], "timeout": 0}, "invalid", "timeout"),
        ({"op": "exec", "argv": ["ls"], "timeout": -1}, "invalid", "timeout"),
        ({"op": "exec", "argv": ["ls"], "timeout": True}, "invalid", "timeout"),
        ({"op": "exec", "argv": ["ls"], "timeout": "1"}, "invalid", "timeout"),
        ({"op": "exec", "argv": ["ls"], "stdin": 1}, "invalid", "stdin"),
        ({"op": "exec", "argv": ["ls"], "started": "no"}, "invalid", "started"),
        ({"op": "exec", "argv": ["ls"], "rows": 0}, "invalid", "rows"),
        ({"op": "exec", "argv": ["ls"], "cols": 70000}, "invalid", "cols"),
        ({"op": "exec", "argv": ["ls"], "rows": True}, "invalid", "rows"),
        ({"op": "file.read", "path": "relative"}, "invalid", "absolute"),
        ({"op": "file.read"}, "invalid", "path"),
        ({"op": "file.read", "path": "/x", "offset": -1}, "invalid", "offset"),
        ({"op": "file.read", "path": "/x", "length": 1.5}, "invalid", "length"),
        ({"op": "file.write", "path": "/x", "mode": 0o10000}, "invalid", "mode"),
        ({"op": "file.write", "path": "/x\x00y"}, "invalid", "NUL"),
        ({"op": "file.stat", "path": 3}, "invalid", "path"),
        ({"op": "file.list", "path": ""}, "invalid", "absolute"),
        ({"op": "shutdown", "reboot": "yes"}, "invalid", "reboot"),
        ({"op": "format-disk"}, "protocol", "unknown operation"),
        ({"argv": ["ls"]}, "protocol", "unknown operation"),
        ({"op": "info", "protocol": PROTOCOL_VERSION + 1}, "protocol", "protocol"),
        ({"op": "info"}, "protocol", "protocol"),
    ],
)
def test_invalid_requests(obj: dict[str, Any], kind: str, what: str) -> None:
    with pytest.raises(RequestError, match=what) as info:
        parse_request(raw(obj))
    assert info.value.kind == kind
    assert info.value.payload()["kind"] == kind


@pytest.mark.parametrize("payload", [b"", b"{", b"[1]", b"\xff\xfe", b"null"])
def test_undecodable_requests_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(payload)
    assert info.value.kind == "protocol"


@given(st.binary(max_size=256))
def test_parse_request_never_fails_otherwise(payload: bytes) -> None:
    kind = None
    try:
        parse_request(payload)
    except RequestError as err:
        kind = err.kind
    assert kind is None or kind in ERROR_KINDS


@pytest.mark.parametrize(
    ("number", "kind"),
    [
        (errno.ENOENT, "not_found"),
        (errno.EACCES, "permission"),
        (errno.EPERM, "permission"),
        (errno.EEXIST, "exists"),
        (errno.EISDIR, "is_a_directory"),
        (errno.ENOTDIR, "not_a_directory"),
        (errno.EINVAL, "invalid"),
        (errno.EIO, "io"),
        (errno.ENOSPC, "io"),
        (None, "io"),
    ],
)
def test_errno_kinds(number: int | None, kind: str) -> None:
    assert kind_for_errno(number) == kind
    assert kind in ERROR_KINDS


def test_error_from_oserror_keeps_errno_and_names_the_operation() -> None:
    err = error_from_oserror(FileNotFoundError(errno.ENOENT, "No such file"), "cannot open /x")
    assert err.payload() == {
        "error": "cannot open /x: No such file",
        "kind": "not_found",
        "errno": errno.ENOENT,
    }
    assert error_from_oserror(OSError(errno.ENOENT, "x"), "run", kind="exec").kind == "exec"


def test_unknown_error_kind_becomes_internal() -> None:
    assert RequestError("nonsense", "x").kind == "internal"


@pytest.mark.parametrize(
    ("nonce", "ok"),
    [
        (b"0123abcdef", True),
        (b"A.b_c-D", True),
        (b"x" * 64, True),
        (b"", False),
        (b"x" * 65, False),
        (b"a b", False),
        (b"a\nb", False),
        (b"caf\xc3\xa9", False),
    ],
)
def test_nonces(nonce: bytes, ok: bool) -> None:
    assert is_valid_nonce(nonce) is ok
