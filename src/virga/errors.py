"""The error layer of virga: one root, ``VirgaError``, and a subtree per layer.

Every error keeps its cause (``raise X(...) from err``) and says what failed and,
where the caller can do something about it, what to do.  ``asyncio.CancelledError``
is never wrapped.

Protocol errors come in two kinds, as in h11: a ``LocalProtocolError`` means *we*
were asked to do something the protocol forbids (a bug or misuse on this side);
a ``RemoteProtocolError`` means the peer sent something invalid.

    VirgaError
    ├── ConfigError (also ValueError)          bad configuration or address
    ├── ConnectError                           could not establish a connection
    ├── TransportError                         protocol layer (yamux, xtransport)
    │   ├── LocalProtocolError
    │   ├── RemoteProtocolError                carries the GoAway code to send
    │   ├── StreamResetError                   the stream was reset (RST)
    │   ├── GoAwayError                        the session was told to go away
    │   └── MiddlewareError                    a middleware could not transform a message
    │       └── AuthenticationError            a message failed decryption/authentication
    ├── VirgaTimeoutError (also TimeoutError)  a deadline passed
    └── ClosedError                            the thing is closed
        ├── ConnectionLostError                the byte stream broke or hit EOF
        ├── StreamClosedError
        └── SessionClosedError
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ClosedError",
    "ConfigError",
    "ConnectError",
    "ConnectionLostError",
    "GoAwayError",
    "LocalProtocolError",
    "MiddlewareError",
    "RemoteProtocolError",
    "SessionClosedError",
    "StreamClosedError",
    "StreamResetError",
    "TransportError",
    "VirgaError",
    "VirgaTimeoutError",
]


class VirgaError(Exception):
    """Root of every error raised by virga."""


class ConfigError(VirgaError, ValueError):
    """A configuration value or an address string is invalid."""


class ConnectError(VirgaError):
    """A connection could not be established (refused, unreachable, handshake failed)."""

    def __init__(self, message: str, *, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class TransportError(VirgaError):
    """An error in a transport protocol (yamux, xtransport)."""


class LocalProtocolError(TransportError):
    """This side tried to do something the protocol forbids."""


class RemoteProtocolError(TransportError):
    """The peer sent something the protocol forbids.

    ``goaway_code`` is the yamux GoAway code a session answers with (1: protocol error).
    """

    def __init__(self, message: str, *, goaway_code: int = 1) -> None:
        super().__init__(message)
        self.goaway_code = goaway_code


class StreamResetError(TransportError):
    """The stream was reset, by the peer (RST) or locally."""


class GoAwayError(TransportError):
    """The peer sent GoAway; no new streams may be opened on this session."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


class MiddlewareError(TransportError):
    """A middleware (compression, encryption, ...) could not transform a message.

    On the receiving side the message is dropped; the connection itself is intact, but
    both peers' middleware chains probably disagree.
    """


class AuthenticationError(MiddlewareError):
    """A message failed authentication: wrong key, tampered, truncated or not encrypted."""


class VirgaTimeoutError(VirgaError, TimeoutError):
    """A deadline or timeout passed before the operation completed."""


class ClosedError(VirgaError):
    """The connection, session or stream is closed."""


class ConnectionLostError(ClosedError):
    """The underlying byte stream failed or reached end of file."""


class StreamClosedError(ClosedError):
    """The stream is closed in the direction that was used."""


class SessionClosedError(ClosedError):
    """The session is closed; nothing more can be sent or opened on it."""
