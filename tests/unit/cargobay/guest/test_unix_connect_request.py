"""The ``unix.connect`` request: encoding and validation."""

from __future__ import annotations

import json

import pytest

from cargobay.guest.protocol import (
    FRAME_HEADER,
    RequestError,
    UnixConnectRequest,
    encode_request,
    parse_request,
)


def _payload(obj: dict[str, object]) -> bytes:
    return json.dumps(obj).encode()


def test_round_trip() -> None:
    frame = encode_request(UnixConnectRequest(path="/run/docker.sock"))
    payload = frame[FRAME_HEADER.size :]
    assert json.loads(payload) == {"op": "unix.connect", "path": "/run/docker.sock"}
    assert parse_request(payload) == UnixConnectRequest(path="/run/docker.sock")


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"op": "unix.connect"}, "'path' must be a string"),
        ({"op": "unix.connect", "path": 3}, "'path' must be a string"),
        ({"op": "unix.connect", "path": "run/docker.sock"}, "absolute path"),
        ({"op": "unix.connect", "path": "/run/\0x"}, "NUL"),
        ({"op": "unix.connect", "path": "/" + "d" * 107}, "too long"),
    ],
)
def test_invalid(obj: dict[str, object], message: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(_payload(obj))
    assert caught.value.kind == "invalid"
    assert message in caught.value.message


def test_longest_path_is_accepted() -> None:
    path = "/" + "d" * 106
    assert parse_request(_payload({"op": "unix.connect", "path": path})).path == path
