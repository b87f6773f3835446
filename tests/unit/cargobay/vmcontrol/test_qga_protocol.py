"""The sans-IO QGA protocol: sync with junk and stale answers, replies in order, errors."""

from __future__ import annotations

import json

import pytest

from cargobay.vmcontrol.qga_protocol import SENTINEL, QgaProtocol, QgaProtocolError, SyncState


def synced(sync_id: int = 7) -> QgaProtocol:
    proto = QgaProtocol()
    proto.begin_sync(sync_id)
    proto.receive_data(SENTINEL + json.dumps({"return": sync_id}).encode() + b"\n")
    assert proto.next_reply() is None
    assert proto.state is SyncState.READY
    return proto


def test_sync_request_bytes() -> None:
    data = QgaProtocol().begin_sync(42)
    assert data[:1] == SENTINEL
    assert json.loads(data[1:]) == {"execute": "guest-sync-delimited", "arguments": {"id": 42}}
    assert data.endswith(b"\n")


def test_sync_skips_junk_and_stale_answers() -> None:
    proto = QgaProtocol()
    proto.begin_sync(5)
    stale = SENTINEL + b'{"return": 4}\n'
    junk = b'{"return": {"late": "reply to an old command"}}\n\x00garbage'
    proto.receive_data(junk + stale)
    assert proto.next_reply() is None
    assert proto.state is SyncState.SYNCING
    proto.receive_data(SENTINEL + b'{"return": 5}\n{"return": {}}\n')
    assert proto.next_reply() is None
    assert proto.state is SyncState.READY
    reply = proto.next_reply()  # the reply that followed the sync answer in the same read
    assert reply is not None
    assert reply.ok
    assert reply.value == {}


def test_sync_answer_split_byte_by_byte() -> None:
    proto = QgaProtocol()
    proto.begin_sync(9)
    for byte in SENTINEL + b'{"return": 9}\n':
        assert proto.next_reply() is None
        proto.receive_data(bytes([byte]))
    proto.next_reply()
    assert proto.state is SyncState.READY


def test_replies_and_errors_in_order() -> None:
    proto = synced()
    assert json.loads(proto.command("guest-ping")) == {"execute": "guest-ping"}
    proto.receive_data(b'{"return": {}}\n{"error": {"class": "GenericError", "desc": "no"}}\n')
    first, second = proto.next_reply(), proto.next_reply()
    assert first is not None
    assert first.ok
    assert second is not None
    assert not second.ok
    assert second.value["desc"] == "no"
    assert proto.next_reply() is None


def test_command_refused_before_sync() -> None:
    with pytest.raises(QgaProtocolError, match="unsynced"):
        QgaProtocol().command("guest-ping")


def test_timeout_desyncs_and_drops_late_replies() -> None:
    proto = synced()
    proto.desync()
    proto.receive_data(b'{"return": {"late": true}}\n')
    assert proto.next_reply() is None  # never delivered
    proto.begin_sync(8)
    proto.receive_data(SENTINEL + b'{"return": 8}\n')
    proto.next_reply()
    assert proto.state is SyncState.READY


def test_garbage_after_sync_is_an_error_and_desyncs() -> None:
    proto = synced()
    proto.receive_data(b"not json\n")
    with pytest.raises(QgaProtocolError, match="not JSON"):
        proto.next_reply()
    assert proto.state is SyncState.UNSYNCED
