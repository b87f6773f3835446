"""``cargobay ui``: the web GUI's address, with the token that lets a browser in.

    cargobay ui [--open] [--json]

The GUI is served by cargobayd on TCP only when it was started with ``--listen-tcp``
(or ``CARGOBAY_LISTEN_TCP``, which ``cargobay daemon start`` passes on).  The address
printed carries the token; opening it once sets the browser's cookie (the token leaves
the address bar).  The token is a secret: anyone with it controls the daemon.
"""

from __future__ import annotations

import webbrowser
from typing import Annotated

import typer

from cargobay.cli.output import Format, emit_document, note, pick_format
from cargobay.cli.session import connect
from cargobay.errors import Conflict

__all__ = ["ui"]

HINT = (
    "cargobayd is not listening on TCP, so the web UI cannot be reached from a browser; "
    "restart it with one, e.g. `cargobay daemon stop && "
    "CARGOBAY_LISTEN_TCP=127.0.0.1:8765 cargobay daemon start`"
)


def ui(
    open_browser: Annotated[
        bool, typer.Option("--open", help="Also open the address in a web browser.")
    ] = False,
    fmt: Annotated[
        Format | None, typer.Option("--format", "-o", help="table (default), json or yaml.")
    ] = None,
    json_flag: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Print the web UI's address (with its access token); --open opens it."""
    from cargobay.sdk.webui import WebUIClient

    out = pick_format(fmt, json_flag)
    access = WebUIClient(connect()).access()
    if not access.get("tcp"):
        raise Conflict(HINT)
    if out is not Format.TABLE:
        emit_document(access, out)
    else:
        typer.echo(access["url"])
        if not access.get("built"):
            note("the web UI is not built yet: run scripts/setup.sh (or npm run build in web/)")
        note(f"the token is in {access['token_file']}; keep the address private")
    if open_browser and not webbrowser.open(str(access["url"])):
        note("could not start a web browser; open the address above yourself")
