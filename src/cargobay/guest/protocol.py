"""The guest agent's wire protocol, shared by the agent (in the VM) and the host client.

Standard library only: the agent imports it inside the guest.

Channel
-------
The agent listens on a virtio-serial port named ``cargobay.agent`` (host side: a QEMU
chardev Unix socket), or any virga address given with ``--listen``.  Because a serial
port keeps no notion of "a new connection", every host connection starts with a sync
preamble before yamux, like qemu-ga's ``guest-sync-delimited``:

    host  -> agent   b"\\n" SYNC_REQUEST b" " NONCE b"\\n"    (re-sent every second until answered)
    agent -> host    SYNC_REPLY b" " NONCE b" " PROTOCOL_VERSION b"\\n"

The agent discards every byte before a sync request line; the host discards every byte
before the reply carrying its nonce.  Then both run a virga yamux session: the host is
the yamux client and opens one stream per request, the agent is the server.

Frames on a request stream
--------------------------
Every message on a stream is a frame: ``kind`` (1 byte), ``length`` (u32 big-endian),
``payload``.  Kinds:

    REQUEST  'Q'  JSON  host -> agent, always first: {"op": ..., ...arguments}
    RESULT   'R'  JSON  agent -> host, the final answer of a successful request
    ERROR    'E'  JSON  agent -> host, the final answer of a failed request:
                        {"error": message, "kind": one of ERROR_KINDS, "errno": int|null}
    DATA     'D'  bytes file contents, either direction
    END      'Z'  empty the sender has no more DATA / STDIN
    STARTED  'S'  JSON  exec: {"pid": int}
    STDOUT   'O'  bytes exec output (with a TTY, all output is STDOUT)
    STDERR   'e'  bytes
    STDIN    'I'  bytes host -> agent
    SIGNAL   'K'  JSON  host -> agent: {"signal": int}
    RESIZE   'W'  JSON  host -> agent: {"rows": int, "cols": int} (TTY only)
    EXIT     'X'  JSON  exec, final: {"exit_code": int|null, "signal": int|null,
                        "timed_out": bool, "duration": float}

Operations (the REQUEST's "op")
-------------------------------
    info          {"protocol": int, "client": str}  -> RESULT {"protocol", "agent_version",
                  "hostname", "kernel", "uptime", "pid", "python"}; a protocol mismatch
                  is an ERROR of kind "protocol"
    exec          {"argv": [str], "env": {str: str}|null, "cwd": str|null,
                   "stdin": bool, "tty": bool, "timeout": float|null,
                   "rows": int, "cols": int}
                  -> STARTED, STDOUT/STDERR..., EXIT.  With "stdin": the host sends STDIN
                  frames and END.  SIGNAL at any time.  A timeout kills the process group
                  (SIGKILL) and EXIT says timed_out.
    file.read     {"path", "offset": int, "length": int|null} -> DATA..., RESULT {"size"}
    file.write    {"path", "mode": int|null, "append": bool, "mkdirs": bool}
                  then host DATA..., END -> RESULT {"written": int}.  Written to a temporary
                  file and renamed, so a failed write leaves the old file intact.
    file.stat     {"path"} -> RESULT STAT
    file.list     {"path"} -> RESULT {"entries": [STAT]}
    shutdown      {"reboot": bool} -> RESULT {} and then the guest powers off
    STAT = {"name", "path", "type": "file"|"dir"|"symlink"|"other", "size", "mode",
            "mtime", "uid", "gid", "target": str|null}
"""

from __future__ import annotations

import json
import struct
from typing import Any, Final

__all__ = [
    "AGENT_PORT_NAME",
    "AGENT_VERSION",
    "ERROR_KINDS",
    "FRAME_HEADER",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "QGA_PORT_NAME",
    "SYNC_REPLY",
    "SYNC_REQUEST",
    "Kind",
    "decode_json",
    "encode_frame",
    "encode_json",
]

PROTOCOL_VERSION: Final = 1
AGENT_VERSION: Final = "0.1.0"
AGENT_PORT_NAME: Final = "cargobay.agent"
QGA_PORT_NAME: Final = "org.qemu.guest_agent.0"
SYNC_REQUEST: Final = b"CARGOBAY-SYNC"
SYNC_REPLY: Final = b"CARGOBAY-SYNC-OK"
FRAME_HEADER: Final = struct.Struct(">cI")
MAX_FRAME: Final = 16 * 1024 * 1024
"""Largest frame payload accepted; DATA/STDOUT are sent in chunks far below it."""

ERROR_KINDS: Final = (
    "protocol",  # malformed request, unknown op, version mismatch
    "not_found",  # ENOENT
    "permission",  # EACCES / EPERM
    "exists",
    "is_a_directory",
    "not_a_directory",
    "invalid",  # bad argument
    "exec",  # the program could not be started
    "io",  # any other OSError
    "internal",
)


class Kind:
    REQUEST: Final = b"Q"
    RESULT: Final = b"R"
    ERROR: Final = b"E"
    DATA: Final = b"D"
    END: Final = b"Z"
    STARTED: Final = b"S"
    STDOUT: Final = b"O"
    STDERR: Final = b"e"
    STDIN: Final = b"I"
    SIGNAL: Final = b"K"
    RESIZE: Final = b"W"
    EXIT: Final = b"X"


def encode_frame(kind: bytes, payload: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(kind, len(payload)) + payload


def encode_json(kind: bytes, obj: dict[str, Any]) -> bytes:
    return encode_frame(kind, json.dumps(obj, separators=(",", ":")).encode())


def decode_json(payload: bytes) -> dict[str, Any]:
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    return obj
