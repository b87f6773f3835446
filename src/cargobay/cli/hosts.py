"""``cargobay host add|ls|rm``: the libvirt host pool of cargobayd (``cargobay.sdk.hosts``).

    cargobay host add ID URI [--tag T]... [--keep] [--json]
    cargobay host ls [--json]      each host's connection: state, round trip, last error
    cargobay host rm ID

``add`` connects before it saves: a malformed URI is refused naming the part that is
wrong, an unreachable host is refused naming the host and why (``--keep`` saves it anyway,
as failed, and the daemon keeps retrying it).  ``ls`` exits 1 when any host is unhealthy.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import typer

from cargobay.cli.app import new_app
from cargobay.cli.output import Format, emit_document, note, pick_format, print_table
from cargobay.cli.session import connect

__all__ = ["app"]

app = new_app("host", "libvirt hosts of the pool (qemu:///system, qemu+ssh://, qemu+tcp://, ...).")

FormatOpt = Annotated[
    Format | None, typer.Option("--format", "-o", help="table (default), json or yaml.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Same as --format json.")]


def _hosts() -> Any:
    from cargobay.sdk.hosts import HostsClient

    return HostsClient(connect())


def _since(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _rtt(value: Any) -> str:
    return f"{value:.1f} ms" if isinstance(value, int | float) else "-"


@app.command("add")
def add(
    host_id: Annotated[str, typer.Argument(metavar="ID", help="A short name for the host.")],
    uri: Annotated[str, typer.Argument(help="libvirt URI, e.g. qemu+ssh://root@lab1/system.")],
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Repeatable.")] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Save the host even if it cannot be reached now.")
    ] = False,
    fmt: FormatOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Connect to a libvirt host and add it to the pool."""
    out = pick_format(fmt, json_flag)
    health = _hosts().add(host_id, uri, tags=tag or [], keep_unreachable=keep)
    if out is not Format.TABLE:
        emit_document(health, out)
        return
    if health["healthy"]:
        version = health.get("libvirt_version") or "?"
        note(f"host {host_id}: connected to {health['uri']} (libvirt {version})")
    else:
        note(f"host {host_id}: saved but not connected: {health.get('last_error') or '?'}")


@app.command("ls")
def ls(fmt: FormatOpt = None, json_flag: JsonOpt = False) -> None:
    """Each host's connection health (one round trip to each; failed hosts are retried)."""
    out = pick_format(fmt, json_flag)
    hosts = _hosts().list()
    if out is not Format.TABLE:
        emit_document(hosts, out)
    else:
        rows = [
            [
                h["id"],
                h["state"],
                _rtt(h.get("last_check_ms")),
                ",".join(h.get("tags") or []) or "-",
                str(h.get("reconnects", 0)),
                _since(h.get("connected_since")),
                h["uri"],
                h.get("last_error") or "",
            ]
            for h in hosts
        ]
        print_table(
            ["ID", "STATE", "RTT", "TAGS", "RECONNECTS", "CONNECTED SINCE", "URI", "ERROR"], rows
        )
    if any(not h["healthy"] for h in hosts):
        raise typer.Exit(1)


@app.command("rm")
def rm(host_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Close the host's connection and forget it."""
    _hosts().remove(host_id)
    note(f"host {host_id} removed")
