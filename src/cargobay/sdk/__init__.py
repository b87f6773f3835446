"""cargobay.sdk: Python clients of the cargobayd API, ``ensure_daemon`` to start it, and
sandboxes (``Sandbox``/``AsyncSandbox``: create, commands.run, files, kill)."""

from cargobay.sdk.async_sandbox import AsyncSandbox
from cargobay.sdk.client import AsyncCargoBayClient, CargoBayClient, ExecResult, raise_for_event
from cargobay.sdk.daemon import daemon_environment, ensure_daemon
from cargobay.sdk.sandbox import Sandbox
from cargobay.sdk.sandbox_models import CommandResult, EntryInfo, SandboxInfo, WriteInfo

__all__ = [
    "AsyncCargoBayClient",
    "AsyncSandbox",
    "CargoBayClient",
    "CommandResult",
    "EntryInfo",
    "ExecResult",
    "Sandbox",
    "SandboxInfo",
    "WriteInfo",
    "daemon_environment",
    "ensure_daemon",
    "raise_for_event",
]
