"""The snapshot verbs of ``cargobay vm`` and ``aiva``: ``snapshot``, ``snapshots``, ``fork``
(a warm start is ``start NAME --snapshot TAG`` in ``cli.machines``), and ``deploy``.

    cargobay vm snapshot NAME [--tag T] [--json]      save state + data disk, keep running
    cargobay vm snapshots NAME [--json] [--rm TAG]    list (or delete) snapshots
    cargobay vm fork NAME [--count N] [--snapshot T]  N running clones from a template
    cargobay vm deploy NAME PATH [--restart]          an application copied in and run
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from cargobay.cli.app import EXIT_CODES_HELP
from cargobay.cli.output import (
    MACHINE_HEADERS,
    emit_document,
    machine_rows,
    note,
    pick_format,
    print_table,
    spinner,
)
from cargobay.cli.session import connect

__all__ = ["deploy", "fork", "register", "snapshot", "snapshots"]

NameArg = Annotated[str, typer.Argument(help="Machine name.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def snapshot(
    name: NameArg,
    tag: Annotated[
        str | None, typer.Option("--tag", help="Snapshot name (default snap-<UTC time>).")
    ] = None,
    json_flag: JsonOpt = False,
) -> None:
    """Save a running machine's memory, devices and data disk; it keeps running."""
    t0 = time.monotonic()
    with spinner(f"saving {name} ..."):
        info = connect().take_snapshot(name, tag)
    if json_flag:
        emit_document(info, pick_format(None, True))
        return
    note(
        f"snapshot {info['tag']} of {name}: {_size(int(info.get('size_bytes', 0)))} on disk, "
        f"{time.monotonic() - t0:.2f} s; warm start with "
        f"`cargobay vm start {name} --snapshot {info['tag']}`"
    )


def snapshots(
    name: NameArg,
    rm: Annotated[str | None, typer.Option("--rm", help="Delete this snapshot.")] = None,
    json_flag: JsonOpt = False,
) -> None:
    """List a machine's snapshots (or delete one with --rm)."""
    client = connect()
    if rm is not None:
        client.delete_snapshot(name, rm)
        note(f"deleted snapshot {rm} of {name}")
        return
    items: list[dict[str, Any]] = client.snapshots(name)
    if json_flag:
        emit_document(items, pick_format(None, True))
        return
    print_table(
        ["TAG", "CREATED", "CPUS", "MEMORY", "SIZE", "TEMPLATE"],
        [
            [
                str(i["tag"]),
                str(i["created_at"])[:19].replace("T", " "),
                str(i["cpus"]),
                f"{i['memory_mb']} MiB",
                _size(int(i.get("size_bytes", 0))),
                "yes" if i.get("template") else "no",
            ]
            for i in items
        ],
    )


def fork(
    name: NameArg,
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=32, help="Clones.")] = 1,
    snapshot_tag: Annotated[
        str | None,
        typer.Option("--snapshot", help="Start from this snapshot (default: take one now)."),
    ] = None,
    boot_timeout: Annotated[float, typer.Option("--boot-timeout", min=1)] = 120.0,
    json_flag: JsonOpt = False,
) -> None:
    """Start running clones of a machine from a snapshot's shared-memory template."""
    t0 = time.monotonic()
    with spinner(f"forking {count} clone(s) of {name} ..."):
        clones = connect().fork(name, count, snapshot=snapshot_tag, boot_timeout=boot_timeout)
    if json_flag:
        emit_document(clones, pick_format(None, True))
        return
    print_table(MACHINE_HEADERS, machine_rows(clones))
    note(f"forked {len(clones)} clone(s) of {name} in {time.monotonic() - t0:.2f} s")


def deploy(
    name: NameArg,
    path: Annotated[str, typer.Argument(help="A directory or .tar/.tar.gz.", show_default=False)],
    command: Annotated[
        str | None, typer.Option("--command", help="Default: command: in cargobay-app.yaml.")
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Replace the running application.")
    ] = False,
    json_flag: JsonOpt = False,
) -> None:
    """Copy an application into a running machine and run it (logs: `logs --source app`)."""
    from pathlib import Path

    host_path = str(Path(path).expanduser().absolute())
    with spinner(f"deploying {path} to {name} ..."):
        result = connect().deploy(name, host_path, command=command, restart=restart)
    if json_flag:
        emit_document(result, pick_format(None, True))
        return
    note(
        f"deployed {result['app']} to {name}:{result['guest_dir']} and started "
        f"`{result['command']}`; its output: `logs {name} --source app`"
    )


def register(app: typer.Typer) -> None:
    verbs = (("snapshot", snapshot), ("snapshots", snapshots), ("fork", fork), ("deploy", deploy))
    for verb, func in verbs:
        app.command(verb, epilog=EXIT_CODES_HELP)(func)
