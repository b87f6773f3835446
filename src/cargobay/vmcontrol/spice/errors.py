"""Typed errors of the Spice client.

    VMControlError
    └── SpiceError
        ├── SpiceConnectionError     TCP/TLS connect failed, the peer closed, a timeout
        ├── SpiceProtocolError       the server sent bytes that break the protocol (remote)
        ├── SpiceUsageError          we were asked to do something the state forbids (local)
        └── SpiceLinkError           the server refused the link (carries the SpiceLinkErr code)
            └── SpiceAuthError       wrong or missing password, unsupported auth mechanism

Remote and local protocol errors are different classes, as in h11: a SpiceProtocolError
means the server (or something pretending to be one) misbehaved; a SpiceUsageError is a
bug or a wrong call on our side.
"""

from __future__ import annotations

from cargobay.errors import VMControlError

__all__ = [
    "SpiceAuthError",
    "SpiceConnectionError",
    "SpiceError",
    "SpiceLinkError",
    "SpiceProtocolError",
    "SpiceUsageError",
]


class SpiceError(VMControlError):
    code = "spice_error"


class SpiceConnectionError(SpiceError, ConnectionError):
    code = "spice_connection_error"


class SpiceProtocolError(SpiceError):
    code = "spice_protocol_error"


class SpiceUsageError(SpiceError):
    code = "spice_usage_error"
    status = 409


class SpiceLinkError(SpiceError):
    """The server answered the link with a SpiceLinkErr other than OK."""

    code = "spice_link_error"

    def __init__(self, message: str, link_error: int = 1) -> None:
        super().__init__(message)
        self.link_error = link_error


class SpiceAuthError(SpiceLinkError, PermissionError):
    code = "spice_auth_error"
    status = 401
