"""``cargobay vm disk resize NAME SIZE`` / ``aiva disk resize NAME SIZE``: grow a machine's
data volume.

The daemon does the work (``PATCH /v1/machines/{name}/config`` with ``disk``, through
``machines.settings``): the size only grows, on a stopped machine (the sparse file is
extended and its ext4 grown with ``resize2fs``); a smaller size, or a running machine, is
refused with what to do.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cargobay.cli.app import EXIT_CODES_HELP
from cargobay.cli.inputs import size_arg
from cargobay.cli.output import emit_document, note, pick_format, spinner
from cargobay.cli.session import connect

__all__ = ["register", "resize"]


def resize(
    name: Annotated[str, typer.Argument(help="Machine name.", show_default=False)],
    size: Annotated[str, typer.Argument(help="New size, like 4GB.", show_default=False)],
    json_flag: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Grow a stopped machine's data volume (it never shrinks)."""
    value = size_arg(size, "disk size")
    with spinner(f"growing the data disk of {name} ..."):
        result = connect().set_machine_config(name, {"disk": value})
    if json_flag:
        emit_document(result, pick_format(None, True))
        return
    disk = result.get("settings", {}).get("disk", "?")
    if "disk" in result.get("changed", []):
        note(f"the data disk of {name} is now {disk}")
    else:
        note(f"the data disk of {name} is already {disk}")


def register(app: typer.Typer) -> None:
    disk = typer.Typer(help="The machine's data volume.", no_args_is_help=True)
    disk.command("resize", epilog=EXIT_CODES_HELP)(resize)
    app.add_typer(disk, name="disk")
