"""``cargobay plugins ls``: the daemon's plugins (entry-point group ``cargobay.plugins``).

    cargobay plugins ls [--json]

A plugin that failed to load or initialize is listed as ``failed`` with its error; hook
errors (a hook that raised or timed out) are counted, with the last one.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cargobay.cli.app import new_app
from cargobay.cli.output import Format, emit_document, note, pick_format, print_table
from cargobay.cli.session import connect

__all__ = ["app"]

app = new_app("plugins", "The daemon's plugins (Python entry points in group cargobay.plugins).")


@app.command("ls")
def list_plugins(
    fmt: Annotated[
        Format | None, typer.Option("--format", "-o", help="table (default), json or yaml.")
    ] = None,
    json_flag: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """List the plugins the daemon loaded, and the ones that failed (with why)."""
    out = pick_format(fmt, json_flag)
    plugins = connect().list_plugins()
    if out is not Format.TABLE:
        emit_document(plugins, out)
        return
    if not plugins:
        note("no plugins: install a package with an entry point in group cargobay.plugins")
        return
    rows = []
    for p in plugins:
        problem = p.get("error") or p.get("last_hook_error") or ""
        if p.get("hook_errors"):
            problem = f"{p['hook_errors']} hook error(s), last: {problem}"
        rows.append(
            [
                p.get("name") or "-",
                p.get("version") or "-",
                p["state"],
                p["entry_point"],
                p["value"],
                problem,
            ]
        )
    print_table(["NAME", "VERSION", "STATE", "ENTRY POINT", "OBJECT", "ERROR"], rows)
