"""The frame both command lines share: error reporting, exit codes, the typer group.

Every failure a user can cause or fix prints exactly one line, ``error: <message>``, on
stderr and exits with a code that says what kind of failure it was (``EXIT_CODES``).  The
message is the daemon's own (it says what to do); the CLI adds none of its own wording
except for problems it finds before talking to the daemon.  Tracebacks are for bugs.

Usage errors found by typer (an unknown option, ``--format xml``, ``--cpus 0``) go
through the same path, so a script sees one line and exit code 2 for every kind of bad
input, whether the CLI or the daemon noticed it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import httpx
import typer
from typer.core import TyperGroup

from cargobay.errors import (
    CargoBayError,
    Conflict,
    DaemonError,
    InvalidInput,
    NotFound,
)

__all__ = [
    "EXIT_CODES_HELP",
    "EXIT_CONFLICT",
    "EXIT_DAEMON",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "CliGroup",
    "exit_code_for",
    "fail",
    "new_app",
]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_DAEMON = 5
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 other failure (image, hypervisor, guest); 2 bad input or usage; "
    "3 not found; 4 conflict (duplicate name, wrong state); 5 cargobayd unreachable; "
    "130 interrupted. exec and run pass the command's own exit code through "
    "(128+N when a signal N killed it, 124 when --timeout expired)."
)


def exit_code_for(err: BaseException) -> int:
    """The exit code for an error, by kind (subclasses map like their parents)."""
    if isinstance(err, InvalidInput):
        return EXIT_USAGE
    if isinstance(err, typer.TyperException):
        return err.exit_code
    if isinstance(err, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(err, Conflict):
        return EXIT_CONFLICT
    if isinstance(err, DaemonError | httpx.TransportError):
        return EXIT_DAEMON
    return EXIT_ERROR


def _one_line(message: str) -> str:
    """Errors are one line: fold any newlines a message may carry."""
    return " ".join(part.strip() for part in message.strip().splitlines() if part.strip())


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Report an error found by the CLI itself and exit."""
    raise typer.Exit(_report(message, code))


def _report(message: str, code: int) -> int:
    sys.stdout.flush()
    print(f"error: {_one_line(message) or 'unknown error'}", file=sys.stderr, flush=True)
    return code


class CliGroup(TyperGroup):
    """A typer group whose ``main`` turns every expected failure into one line.

    It runs typer in non-standalone mode so that its own usage errors reach us
    instead of being printed as a multi-line box, then exits with the mapped code.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        code = self._run(args, prog_name, complete_var, windows_expand_args, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        windows_expand_args: bool,
        **extra: Any,
    ) -> int:
        try:
            rv = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except typer.TyperException as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # a bare `cargobay`: the help
                if text := err.format_message().strip():  # (rich has printed it already)
                    print(text, file=sys.stderr)
                return EXIT_USAGE
            return _report(_usage_message(err), exit_code_for(err))
        except typer.Abort:
            return _report("aborted", EXIT_INTERRUPTED)
        except CargoBayError as err:
            return _report(str(err), exit_code_for(err))
        except httpx.TimeoutException as err:
            return _report(
                f"cargobayd did not answer in time ({err or type(err).__name__}); "
                "see `cargobay daemon status` and the daemon log",
                EXIT_DAEMON,
            )
        except httpx.TransportError as err:
            return _report(
                f"lost the connection to cargobayd ({err or type(err).__name__}); "
                "see `cargobay daemon status` and the daemon log",
                EXIT_DAEMON,
            )
        except KeyboardInterrupt:
            return _report("interrupted", EXIT_INTERRUPTED)
        return rv if isinstance(rv, int) else 0


_COMMAND_TAKERS = frozenset({"exec", "run"})


def _usage_message(err: typer.TyperException) -> str:
    """Typer's message, plus the `--` hint when a command's own option was taken for ours."""
    message = err.format_message()
    ctx = getattr(err, "ctx", None)
    command = getattr(getattr(ctx, "command", None), "name", None)
    if type(err).__name__ == "NoSuchOption" and command in _COMMAND_TAKERS:
        message += "; put the command after --, like: exec NAME -- ls -la"
    return message


def new_app(name: str, help_text: str) -> typer.Typer:
    """A typer app using ``CliGroup``, with the exit codes in its help epilog."""
    return typer.Typer(
        name=name,
        cls=CliGroup,
        help=help_text,
        epilog=EXIT_CODES_HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
