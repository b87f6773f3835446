"""Yamux session configuration, validated on construction.

Defaults follow hashicorp/yamux: 256 KiB initial stream window, accept backlog 256,
keepalive every 30 s, 10 s connection write timeout, 75 s stream open timeout and
5 min stream close timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from virga.errors import ConfigError

__all__ = ["INITIAL_STREAM_WINDOW", "MAX_FRAME_PAYLOAD_LIMIT", "YamuxConfig"]

INITIAL_STREAM_WINDOW: Final = 256 * 1024
"""Every stream starts with this window in each direction (the spec's fixed value)."""

MAX_FRAME_PAYLOAD_LIMIT: Final = 1024 * 1024
"""No Data frame this side sends is ever larger than this, whatever the configuration."""


@dataclass(frozen=True, slots=True)
class YamuxConfig:
    accept_backlog: int = 256
    """Incoming streams waiting for ``accept_stream``; further SYNs are answered with RST."""

    enable_keepalive: bool = True
    keepalive_interval: float = 30.0
    """Seconds between keepalive pings; a ping unanswered within
    ``connection_write_timeout`` closes the session."""

    connection_write_timeout: float = 10.0
    """Seconds a write to the underlying connection (and a keepalive ping) may take."""

    stream_open_timeout: float = 75.0
    """Seconds an opened stream may wait for the peer's ACK before the session is closed
    (the peer is unresponsive); 0 disables."""

    stream_close_timeout: float = 300.0
    """Seconds after our FIN to wait for the peer's FIN before the stream is reset; 0 disables."""

    max_window: int = INITIAL_STREAM_WINDOW
    """The largest receive window a stream advertises."""

    auto_tune_window: bool = False
    """Start at 256 KiB and double the receive window (up to ``max_window``) when the reader
    drains it faster than two round trips, as rust-yamux 0.13 does.  Off: advertise
    ``max_window`` from the start."""

    max_frame_payload: int = 64 * 1024
    """Outgoing Data frames are split at this size (at most 1 MiB)."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            value = getattr(self, name)
            return ConfigError(f"yamux config: {name}={value!r} is invalid: {why}")

        if self.accept_backlog < 1:
            raise bad("accept_backlog", "must be at least 1")
        for name in (
            "keepalive_interval",
            "connection_write_timeout",
        ):
            if getattr(self, name) <= 0:
                raise bad(name, "must be positive")
        for name in ("stream_open_timeout", "stream_close_timeout"):
            if getattr(self, name) < 0:
                raise bad(name, "must be zero (disabled) or positive")
        if self.max_window < INITIAL_STREAM_WINDOW:
            raise bad(
                "max_window", f"must be at least {INITIAL_STREAM_WINDOW} (the initial window)"
            )
        if self.max_window > 0xFFFFFFFF:
            raise bad("max_window", "must fit in 32 bits")
        if not 1 <= self.max_frame_payload <= MAX_FRAME_PAYLOAD_LIMIT:
            raise bad("max_frame_payload", f"must be between 1 and {MAX_FRAME_PAYLOAD_LIMIT}")

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
