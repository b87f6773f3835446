"""``data``: files between the host and a running machine (seed 004's ``Data`` verb), for
``cargobay vm`` and ``aiva``; plus the ``--share``/``--cache`` options of ``create``.

    data NAME push HOST_PATH GUEST_PATH            copy host -> guest (every file)
    data NAME pull GUEST_PATH HOST_PATH            copy guest -> host (every file)
    data NAME sync HOST_PATH GUEST_PATH [--delete] [--reverse]
                                                   only what changed (size + sha256, mode)
    data NAME image HOST_DIR GUEST_PATH            read-only ext4 image of HOST_DIR,
                                                   mounted from the next start
    data NAME volume SIZE GUEST_PATH               empty scratch disk, new at every start
    data NAME detach GUEST_PATH                    drop an image or volume

Through the guest agent (``machines.data_transfer``); a rich progress bar on a terminal,
``--json`` prints the final summary (sent, skipped, removed, bytes, seconds).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from cargobay.cli.app import EXIT_CODES_HELP
from cargobay.cli.output import _stderr_console, emit_document, note, pick_format, stderr_is_tty
from cargobay.cli.session import connect

__all__ = ["CacheOpt", "ShareOpt", "data", "register", "share_arg"]

ShareOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--share",
        help="Share a host folder: HOST_PATH:GUEST_PATH[:ro] (repeatable; virtio-9p; "
        "prefix virtiofs: for virtiofs).",
    ),
]
CacheOpt = Annotated[
    str | None,
    typer.Option(
        "--cache",
        help="Data disk cache: writeback, writethrough, none, directsync, unsafe.",
    ),
]


def _host(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _show(events: Any, total_hint: str) -> dict[str, Any]:
    done: dict[str, Any] = {}
    if not stderr_is_tty():
        for ev in events:
            if ev.get("type") == "plan":
                note(
                    f"{total_hint}: {ev['send']} to send ({ev['bytes']} bytes), "
                    f"{ev['skip']} up to date, {ev['remove']} to remove"
                )
            elif ev.get("type") == "done":
                done = ev
        return done
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[path]}"),
        console=_stderr_console(),
        transient=True,
    ) as bar:
        task = bar.add_task(total_hint, total=None, path="")
        for ev in events:
            kind = ev.get("type")
            if kind == "plan":
                bar.update(task, total=max(int(ev["bytes"]), 1))
            elif kind == "file":
                bar.update(task, advance=int(ev.get("bytes", 0)), path=ev.get("path", ""))
            elif kind == "done":
                done = ev
    return done


def data(
    name: Annotated[str, typer.Argument(help="Machine name.", show_default=False)],
    op: Annotated[
        Literal["push", "pull", "sync", "image", "volume", "detach"],
        typer.Argument(help="push, pull, sync; image, volume, detach (next start)."),
    ],
    src: Annotated[
        str,
        typer.Argument(
            help="push/sync/image: host path; pull: guest path; volume: size; detach: guest path."
        ),
    ],
    dst: Annotated[
        str | None, typer.Argument(help="push/sync/image/volume: guest path; pull: host.")
    ] = None,
    delete: Annotated[
        bool, typer.Option("--delete", help="sync: remove what the source lacks.")
    ] = False,
    reverse: Annotated[
        bool,
        typer.Option("--reverse", help="sync from GUEST_PATH (2nd) to HOST_PATH (1st)."),
    ] = False,
    json_flag: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Copy files between the host and a running machine (sync: only what changed); or
    give it a read-only image of a host folder / an empty scratch volume (from its next
    start), or take one away."""
    client = connect()
    if op in ("image", "volume", "detach"):
        if op == "detach":
            result = client.detach_data(name, src)
        elif dst is None:
            raise typer.BadParameter(f"data {op} needs a guest path")
        elif op == "image":
            result = client.attach_data(name, "image", dst, host_path=_host(src))
        else:
            result = client.attach_data(name, "volume", dst, size=src)
        if json_flag:
            emit_document(result, pick_format(None, True))
        else:
            for a in result.get("attachments", []):
                note(f"{a['kind']:6} {a['guest_path']}  (mounted from the next start)")
        return
    if dst is None:
        raise typer.BadParameter(f"data {op} needs a source and a target")
    host, guest = (dst, src) if op == "pull" else (src, dst)
    events = client.transfer_data(name, op, _host(host), guest, delete=delete, reverse=reverse)
    done = _show(events, f"{op} {name}")
    if json_flag:
        emit_document(done, pick_format(None, True))
        return
    note(
        f"{op} {name}: {len(done.get('sent', []))} sent, {len(done.get('skipped', []))} "
        f"skipped, {len(done.get('removed', []))} removed, {done.get('bytes', 0)} bytes "
        f"in {done.get('seconds', 0)} s"
    )


def register(app: typer.Typer) -> None:
    app.command("data", epilog=EXIT_CODES_HELP)(data)


def share_arg(text: str) -> str:
    """``--share`` with its host path made absolute here (the daemon has another cwd)."""
    prefix = ""
    for p in ("virtiofs:", "9p:"):
        if text.startswith(p):
            prefix, text = p, text[len(p) :]
    host, sep, rest = text.partition(":")
    return f"{prefix}{_host(host) if host else host}{sep}{rest}"
