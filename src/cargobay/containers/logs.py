"""Container logs: the Engine's multiplexed stream decoded sans-IO, then lines.

``GET /containers/{id}/logs`` (and attach, exec) sends, for a container without a TTY,
frames of an 8-byte header and a payload::

    [stream: 1 byte (0 stdin, 1 stdout, 2 stderr, 3 system error)] [0 0 0]
    [payload size: 4 bytes, big endian] [payload]

A frame boundary is not a line boundary (a long line spans frames; one frame may hold
many lines), and a chunk read from the socket may end anywhere, header included.
:class:`Demuxer` takes bytes as they arrive (``receive_data``) and hands out whole
frames (``next_frame``); :class:`LineAssembler` turns frames into lines per stream;
with ``timestamps`` each line starts with the Engine's RFC 3339 time, split off here.
A container with a TTY sends raw bytes instead: ``Demuxer(raw=True)``.

:func:`follow_logs` runs that over one or many containers (all containers of a compose
service: label ``com.docker.compose.service``), merges them, and filters by a search
pattern; ``since``/``until`` accept Unix times, RFC 3339 times or durations ("10m").
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from cargobay.containers.engine import DockerEngine
from cargobay.containers.merge import merge
from cargobay.containers.resources import resolve_containers
from cargobay.errors import EngineError, InvalidInput

__all__ = [
    "Demuxer",
    "LineAssembler",
    "LogFrame",
    "LogLine",
    "follow_logs",
    "parse_time",
]

Stream = Literal["stdin", "stdout", "stderr", "system"]
STREAMS: dict[int, Stream] = {0: "stdin", 1: "stdout", 2: "stderr", 3: "system"}
HEADER = struct.Struct(">BxxxL")
SERVICE_LABEL = "com.docker.compose.service"
PROJECT_LABEL = "com.docker.compose.project"
MAX_FRAME = 64 * 1024 * 1024
"""A larger frame means the stream is not multiplexed (or is corrupt)."""


@dataclass(frozen=True, slots=True)
class LogFrame:
    stream: Stream
    data: bytes


class Demuxer:
    """Sans-IO decoder of the multiplexed stream (or pass-through when ``raw``)."""

    def __init__(self, *, raw: bool = False) -> None:
        self.raw = raw
        self._buffer = bytearray()
        self._pos = 0  # start of the undecoded bytes; compacted on the next receive_data
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        """Feed bytes; ``b""`` means end of stream."""
        if not data:
            self._eof = True
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def next_frame(self) -> LogFrame | None:
        """The next whole frame, or ``None`` until more bytes arrive.  At end of stream
        a truncated frame is an :class:`EngineError`."""
        if self.raw:
            if self._pos >= len(self._buffer):
                return None
            data = bytes(self._buffer[self._pos :])
            self._pos = len(self._buffer)
            return LogFrame("stdout", data)
        pos, available = self._pos, len(self._buffer) - self._pos
        if available < HEADER.size:
            if self._eof and available:
                raise EngineError(
                    f"log stream ended inside a frame header ({available} of 8 bytes)"
                )
            return None
        kind, size = HEADER.unpack_from(self._buffer, pos)
        if kind not in STREAMS or self._buffer[pos + 1 : pos + 4] != b"\0\0\0" or size > MAX_FRAME:
            raise EngineError(
                f"malformed log frame header {bytes(self._buffer[pos : pos + 8]).hex()} "
                "(is the container running with a TTY? then the stream is raw)"
            )
        end = pos + HEADER.size + size
        if len(self._buffer) < end:
            if self._eof:
                raise EngineError(
                    f"log stream ended inside a frame ({available - 8} of {size} bytes)"
                )
            return None
        data = bytes(self._buffer[pos + HEADER.size : end])
        self._pos = end
        return LogFrame(STREAMS[kind], data)

    def frames(self) -> Iterator[LogFrame]:
        while (frame := self.next_frame()) is not None:
            yield frame


@dataclass(frozen=True, slots=True)
class LogLine:
    container: str
    stream: Stream
    text: str
    timestamp: str | None = None
    service: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "container": self.container,
            "service": self.service,
            "stream": self.stream,
            "timestamp": self.timestamp,
            "text": self.text,
        }


@dataclass
class LineAssembler:
    """Frames -> lines, per stream; a trailing partial line waits for more or for
    :meth:`flush`.  ``timestamps``: split the Engine's leading timestamp off."""

    container: str
    timestamps: bool = False
    service: str | None = None
    _partial: dict[str, bytes] = field(default_factory=dict)

    def feed(self, frame: LogFrame) -> list[LogLine]:
        data = self._partial.pop(frame.stream, b"") + frame.data
        *lines, rest = data.split(b"\n")
        if rest:
            self._partial[frame.stream] = rest
        return [self._line(frame.stream, line) for line in lines]

    def flush(self) -> list[LogLine]:
        out = [self._line(stream, data) for stream, data in self._partial.items()]  # type: ignore[arg-type]
        self._partial.clear()
        return out

    def _line(self, stream: Stream, raw: bytes) -> LogLine:
        text = raw.decode("utf-8", errors="replace").removesuffix("\r")
        timestamp = None
        if self.timestamps:
            head, sep, rest = text.partition(" ")
            if sep and head[:4].isdigit() and "T" in head:
                timestamp, text = head, rest
        return LogLine(self.container, stream, text, timestamp, self.service)


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(value: str | float | int, *, now: float | None = None) -> float:
    """A Unix time from ``1700000000``, ``2024-01-02T03:04:05Z`` or ``10m`` (ago)."""
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if _DURATION.fullmatch(text):
        seconds = sum(float(n) * _UNIT[u] for n, u in _DURATION_PART.findall(text))
        return (time.time() if now is None else now) - seconds
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as err:
        raise InvalidInput(
            f"bad time {value!r}: use Unix seconds, RFC 3339 (2024-01-02T03:04:05Z) "
            "or a duration such as 90s, 10m, 2h"
        ) from err


async def _container_lines(
    engine: DockerEngine,
    cid: str,
    *,
    follow: bool,
    since: float | None,
    until: float | None,
    tail: int | None,
    timestamps: bool,
) -> AsyncIterator[LogLine]:
    inspected = await engine.inspect_container(cid)
    name = str(inspected.get("Name", cid[:12])).lstrip("/")
    tty = bool((inspected.get("Config") or {}).get("Tty"))
    labels = (inspected.get("Config") or {}).get("Labels") or {}
    demux = Demuxer(raw=tty)
    lines = LineAssembler(name, timestamps=timestamps, service=labels.get(SERVICE_LABEL))
    async with engine.container_logs_stream(
        cid, follow=follow, since=since, until=until, tail=tail, timestamps=timestamps
    ) as chunks:
        async for chunk in chunks:
            demux.receive_data(chunk)
            for frame in demux.frames():
                for line in lines.feed(frame):
                    yield line
    demux.receive_data(b"")
    for frame in demux.frames():
        for line in lines.feed(frame):
            yield line
    for line in lines.flush():
        yield line


async def follow_logs(
    engine: DockerEngine,
    containers: list[str] | None = None,
    *,
    service: str | None = None,
    project: str | None = None,
    follow: bool = False,
    since: str | float | None = None,
    until: str | float | None = None,
    tail: int | None = None,
    timestamps: bool = False,
    search: str | None = None,
    regex: bool = False,
    ignore_case: bool = False,
) -> AsyncIterator[LogLine]:
    """Lines of the named containers (or of a service/project), merged as they come;
    only lines matching ``search`` (a substring, or a regex with ``regex``)."""
    targets = await resolve_containers(
        engine, list(containers or []), service=service, project=project, purpose="logs"
    )
    flags = re.IGNORECASE if ignore_case else 0
    pattern = None
    if search:
        try:
            pattern = re.compile(search if regex else re.escape(search), flags)
        except re.error as err:
            raise InvalidInput(f"bad search pattern {search!r}: {err}") from err
    since_t = parse_time(since) if since is not None else None
    until_t = parse_time(until) if until is not None else None

    async def lines(container: str) -> AsyncIterator[LogLine]:
        async for line in _container_lines(
            engine,
            container,
            follow=follow,
            since=since_t,
            until=until_t,
            tail=tail,
            timestamps=timestamps,
        ):
            if pattern is None or pattern.search(line.text):
                yield line

    async for line in merge((lines(target) for target in targets), maxsize=1024):
        yield line
