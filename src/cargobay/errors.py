"""The root of every CargoBay error, and one subtree per domain.

Every user-facing error says what failed and what to do about it.  ``code`` is a short
stable identifier the daemon puts in its JSON error bodies and the CLI maps to exit codes;
``status`` is the HTTP status the daemon answers with.

    CargoBayError
    ├── InvalidInput (400)            a bad name, size, port mapping, argument
    ├── NotFound (404)                unknown machine or image
    ├── Conflict (409)                duplicate name, wrong state for the operation
    ├── ImageError                    building, finding or reading a guest image
    ├── HypervisorError               starting, stopping or talking to a VM process
    │   └── AccelerationError         KVM/TCG selection
    ├── GuestError                    the guest agent failed or did not answer
    │   └── GuestTimeout
    ├── VMControlError                QMP, QGA, Spice, libvirt sessions to a running VM
    ├── StoreError                    the SQLite store, its migrations
    └── DaemonError                   reaching or starting cargobayd
"""

from __future__ import annotations

from typing import ClassVar


class CargoBayError(Exception):
    """Root of every error raised by cargobay."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500


class InvalidInput(CargoBayError, ValueError):
    code = "invalid_input"
    status = 400


class NotFound(CargoBayError, LookupError):
    code = "not_found"
    status = 404


class Conflict(CargoBayError):
    code = "conflict"
    status = 409


class ImageError(CargoBayError):
    code = "image_error"
    status = 500


class HypervisorError(CargoBayError):
    code = "hypervisor_error"
    status = 500


class AccelerationError(HypervisorError):
    code = "acceleration_error"


class GuestError(CargoBayError):
    code = "guest_error"
    status = 502


class GuestTimeout(GuestError, TimeoutError):
    code = "guest_timeout"
    status = 504


class VMControlError(CargoBayError):
    code = "vmcontrol_error"
    status = 502


class StoreError(CargoBayError):
    code = "store_error"
    status = 500


class DaemonError(CargoBayError):
    code = "daemon_error"
    status = 503


ERROR_TYPES: dict[str, type[CargoBayError]] = {
    cls.code: cls
    for cls in (
        CargoBayError,
        InvalidInput,
        NotFound,
        Conflict,
        ImageError,
        HypervisorError,
        AccelerationError,
        GuestError,
        GuestTimeout,
        VMControlError,
        StoreError,
        DaemonError,
    )
}
"""Error classes by code, so the SDK can re-raise what the daemon reported."""
