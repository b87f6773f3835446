"""The guest agent's wire protocol, shared by the agent (in the VM) and the host client.

Standard library only: the agent imports it inside the guest.

Channel
-------
The agent listens on a virtio-serial port named ``cargobay.agent`` (host side: a QEMU
chardev Unix socket), or any virga address given with ``--listen``.  Because a serial
port keeps no notion of "a new connection", every host connection starts with a sync
preamble before yamux, like qemu-ga's ``guest-sync-delimited``:

    host  -> agent   b"\\n" SYNC_REQUEST b" " NONCE b"\\n"    (re-sent until answered)
    agent -> host    SYNC_REPLY b" " NONCE b" " PROTOCOL_VERSION b"\\n"

NONCE is 1-64 characters of ``[A-Za-z0-9._-]``, fresh for every host connection.  The
agent discards every byte before a sync request line; the host discards every byte
before the reply carrying its nonce.  Then both run a virga yamux session: the host is
the yamux client and opens one stream per request, the agent is the server.

The host re-sends its request after 0.1 s, then at doubling intervals up to every
second: a request written while the guest port was closed is dropped by QEMU, and one
that reaches a stale session of the agent (a host that left and came back before the
agent noticed) breaks that session instead of being answered.  When the agent opens
the channel (a virtio-serial port once a host is there, or an accepted connection) it
announces itself, and a host still waiting re-sends its request at once:

    agent -> host    SYNC_HELLO b" " PROTOCOL_VERSION b"\\n"

Because the host re-sends its request until it sees the reply, the agent may read the
same request again after it has answered (several may be queued while the guest boots).
So after answering, the agent keeps skipping lines until the first yamux byte (a frame
header starts with version 0, a NUL byte, which no sync line does): a repeated request
with the answered nonce is dropped silently; a request with another nonce comes from a
new host (the previous one left before starting yamux) and is answered in turn.

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
    SIGNAL   'K'  JSON  host -> agent: {"signal": int, "group": bool (default false)}
    RESIZE   'W'  JSON  host -> agent: {"rows": int, "cols": int} (TTY only)
    EXIT     'X'  JSON  exec, final: {"exit_code": int|null, "signal": int|null,
                        "timed_out": bool, "duration": float, "pid": int}

After its final frame the agent half-closes the stream; the host closes its side.
Unknown fields in a JSON payload are ignored (forward compatibility).

Operations (the REQUEST's "op")
-------------------------------
    info          {"protocol": int, "client": str}  -> RESULT {"protocol", "agent_version",
                  "hostname", "kernel", "uptime", "pid", "python"}; a protocol mismatch
                  is an ERROR of kind "protocol"
    exec          {"argv": [str], "env": {str: str}|null, "cwd": str|null,
                   "stdin": bool, "tty": bool, "timeout": float|null,
                   "rows": int, "cols": int, "started": bool (default true)}
                  -> STARTED, STDOUT/STDERR..., EXIT.  With "stdin": the host sends STDIN
                  frames and END.  SIGNAL at any time.  A timeout kills the process group
                  (SIGKILL) and EXIT says timed_out.  "started": false leaves out STARTED
                  (one message less for a host that only collects the result).
    file.read     {"path", "offset": int, "length": int|null} -> DATA..., RESULT {"size"}
    file.write    {"path", "mode": int|null, "append": bool, "mkdirs": bool}
                  then host DATA..., END -> RESULT {"written": int}.  Written to a temporary
                  file and renamed, so a failed write leaves the old file intact.
    file.stat     {"path"} -> RESULT STAT
    file.list     {"path"} -> RESULT {"entries": [STAT]}
    unix.connect  {"path"} -> RESULT {} once the agent is connected to the Unix stream
                  socket at path in the guest; from then on the stream carries raw bytes
                  both ways (no more frames), and a FIN on either side is passed on as a
                  half-close (shutdown(SHUT_WR)) of the other.  A failed connect is an
                  ERROR (not_found: no such socket; io: connection refused ...).  The
                  Docker socket forwarder reaches the guest's /run/docker.sock this way.
    shutdown      {"reboot": bool} -> RESULT {}; then the agent waits (up to a second)
                  for the host to close the stream, and powers the guest off (reboot(2)
                  as PID 1; an agent that is not PID 1 just exits)
    STAT = {"name", "path", "type": "file"|"dir"|"symlink"|"other", "size", "mode",
            "mtime", "uid", "gid", "target": str|null}

Semantics, in detail:

* The process runs in a new session (its own process group, pgid = pid).  ``env`` is
  added to the agent's environment (PATH gets a default if the agent has none; with a
  TTY, TERM defaults to ``xterm-256color``; as PID 1 the agent drops its own PYTHONPATH
  and sets HOME to /root).  ``cwd`` and every path are absolute.
* Without "stdin" the process reads ``/dev/null``.  With a TTY the process gets a new
  pty as its controlling terminal (``rows`` x ``cols``; RESIZE changes it and the
  foreground group gets SIGWINCH); END then sends the terminal's EOF character (^D).
  STDIN after END is dropped.
* A program that cannot be started (missing, not executable, bad cwd) is an ERROR of
  kind "exec" with its errno, before any STARTED.
* EXIT is sent once the process has exited and its output has reached end of file, or,
  when background processes keep the output open, ``EXIT_OUTPUT_GRACE`` seconds after
  the exit as soon as no output is waiting: the agent then closes its end (later writers
  get EPIPE) and leaves those processes running.
* SIGNAL goes to the process, or with "group" to its whole process group.
* If the stream breaks (the host reset it, or the connection went away) before EXIT,
  the agent kills the process group with SIGKILL: nothing runs on unobserved.
* ``file.write`` with "append" appends in place (not atomic); "mode" is applied to the
  new file, else an existing file's mode is kept, else 0644.  A path that is a symlink
  is written through (its target is replaced).
"""

from __future__ import annotations

import errno as _errno
import json
import math
import struct
from dataclasses import dataclass
from typing import Any, ClassVar, Final

__all__ = [
    "AGENT_PORT_NAME",
    "AGENT_VERSION",
    "DATA_CHUNK",
    "ERROR_KINDS",
    "EXIT_OUTPUT_GRACE",
    "FRAME_HEADER",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "QGA_PORT_NAME",
    "SYNC_HELLO",
    "SYNC_REPLY",
    "SYNC_REQUEST",
    "ExecRequest",
    "FileListRequest",
    "FileReadRequest",
    "FileStatRequest",
    "FileWriteRequest",
    "InfoRequest",
    "Kind",
    "Request",
    "RequestError",
    "ShutdownRequest",
    "UnixConnectRequest",
    "decode_header",
    "decode_json",
    "encode_frame",
    "encode_json",
    "encode_request",
    "error_from_oserror",
    "is_valid_nonce",
    "kind_for_errno",
    "parse_request",
]

PROTOCOL_VERSION: Final = 1
AGENT_VERSION: Final = "0.2.0"
"""0.2.0: the unix.connect operation (an older agent answers it "unknown operation")."""
AGENT_PORT_NAME: Final = "cargobay.agent"
QGA_PORT_NAME: Final = "org.qemu.guest_agent.0"
SYNC_REQUEST: Final = b"CARGOBAY-SYNC"
SYNC_REPLY: Final = b"CARGOBAY-SYNC-OK"
SYNC_HELLO: Final = b"CARGOBAY-AGENT-HELLO"
FRAME_HEADER: Final = struct.Struct(">cI")
MAX_FRAME: Final = 16 * 1024 * 1024
"""Largest frame payload accepted; DATA/STDOUT are sent in chunks far below it."""
DATA_CHUNK: Final = 64 * 1024
"""The size of the DATA/STDOUT/STDERR/STDIN chunks both sides send."""
EXIT_OUTPUT_GRACE: Final = 0.5
"""Seconds exec output may stay open after the process exited (background children)."""

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


KINDS: Final = frozenset(
    {
        Kind.REQUEST,
        Kind.RESULT,
        Kind.ERROR,
        Kind.DATA,
        Kind.END,
        Kind.STARTED,
        Kind.STDOUT,
        Kind.STDERR,
        Kind.STDIN,
        Kind.SIGNAL,
        Kind.RESIZE,
        Kind.EXIT,
    }
)


class RequestError(Exception):
    """A request failed; becomes an ERROR frame.  ``kind`` is one of ``ERROR_KINDS``."""

    def __init__(self, kind: str, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind if kind in ERROR_KINDS else "internal"
        self.message = message
        self.errno = errno

    def payload(self) -> dict[str, Any]:
        return {"error": self.message, "kind": self.kind, "errno": self.errno}


# -- frames -----------------------------------------------------------------------------


def encode_frame(kind: bytes, payload: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(kind, len(payload)) + payload


def encode_json(kind: bytes, obj: dict[str, Any]) -> bytes:
    return encode_frame(kind, json.dumps(obj, separators=(",", ":")).encode())


def decode_header(header: bytes) -> tuple[bytes, int]:
    """``(kind, length)`` of a 5-byte frame header; ``RequestError`` (protocol) if invalid."""
    if len(header) != FRAME_HEADER.size:
        raise RequestError("protocol", f"a frame header is {FRAME_HEADER.size} bytes")
    kind, length = FRAME_HEADER.unpack(header)
    if kind not in KINDS:
        raise RequestError("protocol", f"unknown frame kind {kind!r}")
    if length > MAX_FRAME:
        raise RequestError("protocol", f"frame of {length} bytes exceeds {MAX_FRAME}")
    return kind, length


def decode_json(payload: bytes) -> dict[str, Any]:
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    return obj


def is_valid_nonce(nonce: bytes) -> bool:
    return 1 <= len(nonce) <= 64 and all(
        48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"._-" for c in nonce
    )


# -- errors ---------------------------------------------------------------------------------

_ERRNO_KINDS: Final = {
    _errno.ENOENT: "not_found",
    _errno.EACCES: "permission",
    _errno.EPERM: "permission",
    _errno.EROFS: "permission",
    _errno.EEXIST: "exists",
    _errno.ENOTEMPTY: "exists",
    _errno.EISDIR: "is_a_directory",
    _errno.ENOTDIR: "not_a_directory",
    _errno.EINVAL: "invalid",
    _errno.ENAMETOOLONG: "invalid",
    _errno.ELOOP: "invalid",
}


def kind_for_errno(number: int | None) -> str:
    return _ERRNO_KINDS.get(number or 0, "io")


def error_from_oserror(err: OSError, what: str, *, kind: str | None = None) -> RequestError:
    """``what`` failed because of ``err``: a ``RequestError`` with the errno's kind."""
    reason = err.strerror or str(err)
    return RequestError(kind or kind_for_errno(err.errno), f"{what}: {reason}", err.errno)


# -- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InfoRequest:
    protocol: int = PROTOCOL_VERSION
    client: str = ""
    op: ClassVar[str] = "info"


@dataclass(frozen=True, slots=True)
class ExecRequest:
    argv: tuple[str, ...]
    env: dict[str, str] | None = None
    cwd: str | None = None
    stdin: bool = False
    tty: bool = False
    timeout: float | None = None
    rows: int = 24
    cols: int = 80
    started: bool = True
    op: ClassVar[str] = "exec"


@dataclass(frozen=True, slots=True)
class FileReadRequest:
    path: str
    offset: int = 0
    length: int | None = None
    op: ClassVar[str] = "file.read"


@dataclass(frozen=True, slots=True)
class FileWriteRequest:
    path: str
    mode: int | None = None
    append: bool = False
    mkdirs: bool = False
    op: ClassVar[str] = "file.write"


@dataclass(frozen=True, slots=True)
class FileStatRequest:
    path: str
    op: ClassVar[str] = "file.stat"


@dataclass(frozen=True, slots=True)
class FileListRequest:
    path: str
    op: ClassVar[str] = "file.list"


@dataclass(frozen=True, slots=True)
class ShutdownRequest:
    reboot: bool = False
    op: ClassVar[str] = "shutdown"


@dataclass(frozen=True, slots=True)
class UnixConnectRequest:
    path: str
    op: ClassVar[str] = "unix.connect"


Request = (
    InfoRequest
    | ExecRequest
    | FileReadRequest
    | FileWriteRequest
    | FileStatRequest
    | FileListRequest
    | ShutdownRequest
    | UnixConnectRequest
)


def encode_request(request: Request) -> bytes:
    """The REQUEST frame for ``request``."""
    obj: dict[str, Any] = {"op": request.op}
    for name in request.__dataclass_fields__:
        value = getattr(request, name)
        obj[name] = list(value) if isinstance(value, tuple) else value
    return encode_json(Kind.REQUEST, obj)


def _bad(message: str) -> RequestError:
    return RequestError("invalid", message)


def _get_str(obj: dict[str, Any], key: str, *, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise _bad(f"{key!r} must be a string")
    if "\0" in value:
        raise _bad(f"{key!r} must not contain NUL characters")
    return value


def _get_path(obj: dict[str, Any], key: str = "path") -> str:
    path = _get_str(obj, key)
    if not path.startswith("/"):
        raise _bad(f"{key!r} must be an absolute path, not {path!r}")
    return path


def _get_bool(obj: dict[str, Any], key: str, *, default: bool = False) -> bool:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(f"{key!r} must be true or false")
    return value


def _get_int(obj: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = obj.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _bad(f"{key!r} must be an integer from {low} to {high}")
    return value


def _get_req_int(obj: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = _get_int(obj, key, default, low, high)
    return default if value is None else value


def _parse_exec(obj: dict[str, Any]) -> ExecRequest:
    argv = obj.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise _bad("'argv' must be a non-empty list of strings")
    if any("\0" in a for a in argv):
        raise _bad("'argv' must not contain NUL characters")
    if not argv[0]:
        raise _bad("'argv[0]' (the program) must not be empty")
    env = obj.get("env")
    if env is not None:
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise _bad("'env' must be an object of strings")
        for key, value in env.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise _bad(f"invalid environment variable {key!r}")
    cwd = None if obj.get("cwd") is None else _get_path(obj, "cwd")
    timeout = obj.get("timeout")
    if timeout is not None and (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise _bad("'timeout' must be a positive number of seconds or null")
    return ExecRequest(
        argv=tuple(argv),
        env=env,
        cwd=cwd,
        stdin=_get_bool(obj, "stdin"),
        tty=_get_bool(obj, "tty"),
        timeout=None if timeout is None else float(timeout),
        rows=_get_req_int(obj, "rows", 24, 1, 0xFFFF),
        cols=_get_req_int(obj, "cols", 80, 1, 0xFFFF),
        started=_get_bool(obj, "started", default=True),
    )


def _parse_info(obj: dict[str, Any]) -> InfoRequest:
    protocol = _get_req_int(obj, "protocol", -1, 0, 0xFFFFFFFF) if "protocol" in obj else -1
    if protocol != PROTOCOL_VERSION:
        raise RequestError(
            "protocol",
            f"the host speaks agent protocol {protocol}, this agent {PROTOCOL_VERSION}: "
            "rebuild the guest image or update the host",
        )
    client = obj.get("client", "")
    return InfoRequest(protocol, client if isinstance(client, str) else "")


def parse_request(payload: bytes) -> Request:
    """Decode and validate a REQUEST payload; ``RequestError`` says what is wrong."""
    try:
        obj = decode_json(payload)
    except ValueError as err:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestError("protocol", f"the request is not a JSON object: {err}") from err
    op = obj.get("op")
    if op == "exec":
        return _parse_exec(obj)
    if op == "info":
        return _parse_info(obj)
    if op == "file.read":
        return FileReadRequest(
            path=_get_path(obj),
            offset=_get_req_int(obj, "offset", 0, 0, 2**63 - 1),
            length=_get_int(obj, "length", None, 0, 2**63 - 1),
        )
    if op == "file.write":
        return FileWriteRequest(
            path=_get_path(obj),
            mode=_get_int(obj, "mode", None, 0, 0o7777),
            append=_get_bool(obj, "append"),
            mkdirs=_get_bool(obj, "mkdirs"),
        )
    if op == "file.stat":
        return FileStatRequest(path=_get_path(obj))
    if op == "file.list":
        return FileListRequest(path=_get_path(obj))
    if op == "shutdown":
        return ShutdownRequest(reboot=_get_bool(obj, "reboot"))
    if op == "unix.connect":
        path = _get_path(obj)
        if len(path.encode()) > 107:
            raise _bad(f"'path' is too long for a Unix socket address: {path!r}")
        return UnixConnectRequest(path=path)
    raise RequestError("protocol", f"unknown operation {op!r}")
