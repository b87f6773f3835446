"""The qemu-guest-agent wire protocol, sans-IO.

QGA speaks QMP-style JSON over a byte stream (a virtio-serial port; on the host, QEMU's
chardev socket) with one twist: there is no connection setup, so a client that
(re)connects may find stale replies in the stream, and a reply to a command that timed
out may arrive later.  ``guest-sync-delimited`` resynchronises: the client sends
``0xFF`` (which makes the agent drop any partial input) and
``{"execute": "guest-sync-delimited", "arguments": {"id": N}}``; the agent answers with
a ``0xFF`` sentinel byte followed by ``{"return": N}``.  Everything before the sentinel
is junk; any reply whose id is not N is stale.

``QgaProtocol`` tracks that: ``begin_sync(id) -> bytes`` to send, ``command(...) ->
bytes``, ``receive_data(bytes)``, ``next_reply()`` -> the next ``Reply`` or ``None``.
Invariants: while syncing, no reply is delivered except the sync answer with the
expected id; after sync, replies are delivered in order, one per command sent.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["SENTINEL", "QgaProtocol", "Reply", "SyncState"]

SENTINEL: Final = b"\xff"
_MAX_LINE: Final = 64 * 1024 * 1024


class SyncState(enum.Enum):
    UNSYNCED = "unsynced"
    SYNCING = "syncing"
    READY = "ready"


@dataclass(frozen=True, slots=True)
class Reply:
    ok: bool
    value: Any
    """``return`` on success; the ``error`` object ({"class", "desc"}) otherwise."""


class QgaProtocolError(ValueError):
    """The byte stream could not be understood (the caller resyncs)."""


class QgaProtocol:
    def __init__(self) -> None:
        self.state = SyncState.UNSYNCED
        self._buf = bytearray()
        self._sync_id: int | None = None
        self._seen_sentinel = False

    def begin_sync(self, sync_id: int) -> bytes:
        """Start (re)synchronising: drop what is buffered, return the bytes to send."""
        self.state = SyncState.SYNCING
        self._sync_id = sync_id
        self._seen_sentinel = False
        self._buf.clear()
        request = {"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}
        return SENTINEL + json.dumps(request).encode() + b"\n"

    def command(self, name: str, arguments: dict[str, Any] | None = None) -> bytes:
        if self.state is not SyncState.READY:
            raise QgaProtocolError(f"cannot send {name}: the channel is {self.state.value}")
        request: dict[str, Any] = {"execute": name}
        if arguments:
            request["arguments"] = arguments
        return json.dumps(request).encode() + b"\n"

    def desync(self) -> None:
        """A command timed out: its reply may still come, so sync before the next one."""
        self.state = SyncState.UNSYNCED

    def receive_data(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > _MAX_LINE:
            self._buf.clear()
            self.state = SyncState.UNSYNCED
            raise QgaProtocolError("qemu-ga sent more than 64 MiB without a line break")

    def _take_line(self) -> bytes | None:
        end = self._buf.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return line

    def next_reply(self) -> Reply | None:
        """The next reply to a command, or ``None`` if more bytes are needed."""
        if self.state is SyncState.UNSYNCED:
            self._buf.clear()  # nothing before a sync can be trusted
            return None
        while self.state is SyncState.SYNCING:
            if not self._seen_sentinel:
                at = self._buf.find(SENTINEL)
                if at < 0:
                    self._buf.clear()
                    return None
                del self._buf[: at + 1]
                self._seen_sentinel = True
            line = self._take_line()
            if line is None:
                return None
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and obj.get("return") == self._sync_id:
                self.state = SyncState.READY
                return None
            self._seen_sentinel = False  # a stale answer: look for the next sentinel
        while True:
            line = self._take_line()
            if line is None:
                return None
            line = line.strip().lstrip(SENTINEL)
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError as err:
                self.state = SyncState.UNSYNCED
                raise QgaProtocolError(
                    f"qemu-ga sent something that is not JSON: {line[:80]!r}"
                ) from err
            if not isinstance(obj, dict):
                self.state = SyncState.UNSYNCED
                raise QgaProtocolError(f"qemu-ga sent a JSON {type(obj).__name__}, not an object")
            if "return" in obj:
                return Reply(True, obj["return"])
            if "error" in obj:
                return Reply(False, obj["error"])
            # Anything else (an event, say) is not a reply; skip it.
