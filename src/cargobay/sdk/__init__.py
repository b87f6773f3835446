"""cargobay.sdk: Python clients of the cargobayd API, and ``ensure_daemon`` to start it."""

from cargobay.sdk.client import AsyncCargoBayClient, CargoBayClient, ExecResult, raise_for_event
from cargobay.sdk.daemon import daemon_environment, ensure_daemon

__all__ = [
    "AsyncCargoBayClient",
    "CargoBayClient",
    "ExecResult",
    "daemon_environment",
    "ensure_daemon",
    "raise_for_event",
]
