"""CLI verbs for the Docker Engine, through cargobayd (``cargobay.sdk.containers``):

    cargobay engine info [--json]
    cargobay images ls [--all] [--label K=V] [--json]
    cargobay images pull REF [--json]          progress bar per layer
    cargobay images rm REF... [--force]
    cargobay images prune [--all] [--json]
    cargobay images check-update REF [--json]  exit 0 up to date, 10 update available
    cargobay containers ls [--all] [--project P] [--service S] [--json]
    cargobay containers logs [NAME...] [--service S] [-f] [--since] [--tail N] [-t] [--search]
    cargobay containers stats [NAME...] [--project P] [--service S] [--no-stream] [--json]
    cargobay containers start|stop|restart|rm NAME...

``app`` holds the three groups and is added to the main CLI without a name, so they sit
at the top level.  Tables and documents go to stdout; progress goes to stderr (a rich
bar per layer on a terminal, one line per layer and status otherwise).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import typer

from cargobay.cli.app import new_app
from cargobay.cli.output import (
    Format,
    emit_document,
    note,
    pick_format,
    print_pairs,
    print_table,
    stderr_is_tty,
)
from cargobay.cli.session import connect

__all__ = ["app"]

app = typer.Typer()
engine_app = new_app("engine", "The Docker Engine CargoBay uses: where it is, what it is.")
images_app = new_app("images", "Container images on the Docker Engine.")
containers_app = new_app("containers", "Containers on the Docker Engine: list, logs, stats.")
app.add_typer(engine_app, name="engine")
app.add_typer(images_app, name="images")
app.add_typer(containers_app, name="containers")

EXIT_UPDATE_AVAILABLE = 10

FormatOpt = Annotated[
    Format | None, typer.Option("--format", "-o", help="table (default), json or yaml.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
LabelOpt = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="Filter: KEY or KEY=VALUE; repeatable.")
]


def _engine() -> Any:
    from cargobay.sdk.containers import EngineClient

    return EngineClient(connect())


def _bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def _ago(epoch: Any) -> str:
    if not isinstance(epoch, int | float) or epoch <= 0:
        return "-"
    seconds = max(0, int(time.time() - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


# -- engine -------------------------------------------------------------------------------


@engine_app.command("info")
def engine_info(fmt: FormatOpt = None, json_flag: JsonOpt = False) -> None:
    """Find the engine (DOCKER_HOST, contexts, sockets) and describe it."""
    out = pick_format(fmt, json_flag)
    info = _engine().info()
    if out is not Format.TABLE:
        emit_document(info, out)
        return
    compose = info.get("compose") or {}
    extra = [p for p in (compose.get("docker_compose_v1"), compose.get("docker_cli_plugin")) if p]
    disk = "-"
    if info.get("disk_free") is not None:
        disk = f"{_bytes(info['disk_free'])} free of {_bytes(info.get('disk_total'))}"
        if info.get("disk_low"):
            disk += " (low: images may not fit)"
    print_pairs(
        [
            ("Endpoint", f"{info['url']} (from {info['source']})"),
            ("Engine", f"{info['version']} (API {info['api_version']})"),
            ("OS", f"{info.get('operating_system') or info['os']} {info['arch']}"),
            ("Kernel", str(info.get("kernel") or "-")),
            ("Storage", f"{info.get('storage_driver') or '-'} in {info.get('root_dir') or '-'}"),
            ("Disk", disk),
            ("Cgroups", f"v{info.get('cgroup_version') or '?'}"),
            ("Rootless", "yes" if info.get("rootless") else "no"),
            (
                "Containers",
                f"{info.get('containers', 0)} ({info.get('containers_running', 0)} running)",
            ),
            ("Images", str(info.get("images", 0))),
            ("Compose", "cargobay compose" + (f"; also {', '.join(extra)}" if extra else "")),
        ]
    )


# -- images -------------------------------------------------------------------------------


def _image_rows(images: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for image in images:
        tags = image.get("repo_tags") or ["<none>:<none>"]
        for tag in tags:
            repo, _, version = str(tag).rpartition(":")
            rows.append(
                [
                    repo,
                    version,
                    str(image.get("id", "")).removeprefix("sha256:")[:12],
                    _ago(image.get("created")),
                    _bytes(image.get("size")),
                ]
            )
    return rows


@images_app.command("ls")
def images_ls(
    all: Annotated[bool, typer.Option("--all", "-a", help="Intermediate images too.")] = False,
    label: LabelOpt = None,
    fmt: FormatOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """List images on the engine."""
    out = pick_format(fmt, json_flag)
    images = _engine().images(all=all, labels=label or [])
    if out is Format.TABLE:
        print_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], _image_rows(images))
    else:
        emit_document(images, out)


def _show_pull(events: Iterable[Mapping[str, Any]], reference: str) -> Mapping[str, Any] | None:
    if stderr_is_tty():
        return _pull_bars(events, reference)
    done = None
    last: dict[str, str] = {}
    for event in events:
        kind = event.get("type")
        if kind == "done":
            done = event
        elif kind == "layer":
            layer, status = str(event.get("id")), str(event.get("status"))
            if last.get(layer) != status:  # one line per layer and status, not per byte
                last[layer] = status
                note(f"{reference}: {layer}: {status}")
        elif kind == "status" and event.get("status"):
            note(f"{reference}: {event['status']}")
    return done


def _pull_bars(events: Iterable[Mapping[str, Any]], reference: str) -> Mapping[str, Any] | None:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    done = None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        DownloadColumn(),
        console=Console(file=sys.stderr),
    ) as progress:
        tasks: dict[str, Any] = {}
        for event in events:
            kind = event.get("type")
            if kind == "done":
                done = event
            elif kind == "status" and event.get("status"):
                progress.console.print(f"{reference}: {event['status']}")
            elif kind == "layer":
                layer = str(event.get("id"))
                total = int(event.get("total") or 0) or None
                if layer not in tasks:
                    tasks[layer] = progress.add_task(layer, total=total, status="")
                progress.update(
                    tasks[layer],
                    total=total,
                    completed=int(event.get("current") or 0)
                    if event.get("fraction", 0) < 1
                    else (total or 1),
                    status=str(event.get("status", "")),
                )
    return done


@images_app.command("pull")
def images_pull(
    reference: Annotated[str, typer.Argument(help="Image reference, e.g. busybox:1.36.")],
    fmt: FormatOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Pull an image (through the configured registry mirrors), with progress per layer."""
    out = pick_format(fmt, json_flag)
    events = _engine().pull(reference)
    if out is not Format.TABLE:
        done = None
        for event in events:
            done = event if event.get("type") == "done" else done
        emit_document((done or {}).get("result"), out)
        return
    done = _show_pull(events, reference)
    result = (done or {}).get("result") or {}
    via = result.get("pulled_from")
    if via and via != result.get("reference"):
        note(f"pulled {result.get('reference')} from mirror {via}")
    print(result.get("image_id", ""))


@images_app.command("rm")
def images_rm(
    references: Annotated[list[str], typer.Argument(help="Image references or ids.")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Even if in use.")] = False,
) -> None:
    """Remove images."""
    engine = _engine()
    for reference in references:
        for item in engine.remove_image(reference, force=force):
            for key, value in item.items():
                print(f"{key}: {value}")


@images_app.command("prune")
def images_prune(
    all: Annotated[
        bool, typer.Option("--all", "-a", help="Every unused image, not only dangling ones.")
    ] = False,
    label: LabelOpt = None,
    fmt: FormatOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Remove unused images."""
    out = pick_format(fmt, json_flag)
    result = _engine().prune_images(all=all, labels=label or [])
    if out is not Format.TABLE:
        emit_document(result, out)
        return
    for image in result.get("deleted") or []:
        print(image)
    note(f"reclaimed {_bytes(result.get('space_reclaimed', 0))}")


@images_app.command("check-update")
def images_check_update(
    reference: Annotated[str, typer.Argument(help="Image reference.")],
    fmt: FormatOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Compare the local image's digest with the registry's (exit 10: update available)."""
    out = pick_format(fmt, json_flag)
    check = _engine().check_update(reference)
    if out is not Format.TABLE:
        emit_document(check, out)
    elif not check.get("present"):
        print(f"{check['reference']}: not pulled; the registry has {check['remote_digest']}")
    elif check.get("update_available"):
        print(f"{check['reference']}: update available ({check['remote_digest']})")
    else:
        print(f"{check['reference']}: up to date ({check['remote_digest']})")
    if check.get("update_available"):
        raise typer.Exit(EXIT_UPDATE_AVAILABLE)


# -- containers ---------------------------------------------------------------------------


def _ports(ports: Iterable[Mapping[str, Any]]) -> str:
    shown = []
    for port in ports:
        private = f"{port.get('private')}/{port.get('protocol', 'tcp')}"
        if port.get("public"):
            shown.append(f"{port.get('ip') or '0.0.0.0'}:{port['public']}->{private}")
        else:
            shown.append(private)
    return ", ".join(dict.fromkeys(shown))


@containers_app.command("ls")
def containers_ls(
    all: Annotated[bool, typer.Option("--all", "-a", help="Stopped ones too.")] = False,
    project: Annotated[str | None, typer.Option(help="Compose project.")] = None,
    service: Annotated[str | None, typer.Option(help="Compose service.")] = None,
    label: LabelOpt = None,
    fmt: FormatOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """List containers."""
    out = pick_format(fmt, json_flag)
    items = _engine().containers(all=all, labels=label or [], project=project, service=service)
    if out is not Format.TABLE:
        emit_document(items, out)
        return
    print_table(
        ["NAME", "IMAGE", "STATUS", "PORTS", "PROJECT", "SERVICE"],
        [
            [
                c["name"],
                c["image"],
                c["status"],
                _ports(c.get("ports") or []),
                c.get("project") or "",
                c.get("service") or "",
            ]
            for c in items
        ],
    )


@containers_app.command("logs")
def containers_logs(
    names: Annotated[list[str] | None, typer.Argument(help="Containers.")] = None,
    service: Annotated[
        str | None, typer.Option(help="All containers of a compose service.")
    ] = None,
    project: Annotated[str | None, typer.Option(help="Compose project.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    since: Annotated[
        str | None, typer.Option(help="Unix time, RFC 3339 or a duration (10m).")
    ] = None,
    until: Annotated[str | None, typer.Option()] = None,
    tail: Annotated[int | None, typer.Option("--tail", "-n", min=0)] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t")] = False,
    search: Annotated[str | None, typer.Option(help="Only lines containing this.")] = None,
    regex: Annotated[bool, typer.Option(help="--search is a regular expression.")] = False,
    ignore_case: Annotated[bool, typer.Option("--ignore-case", "-i")] = False,
    json_flag: JsonOpt = False,
) -> None:
    """Print container logs (one prefix per container when there are several)."""
    lines = _engine().logs(
        names or [],
        service=service,
        project=project,
        follow=follow,
        since=since,
        until=until,
        tail=tail,
        timestamps=timestamps,
        search=search,
        regex=regex,
        ignore_case=ignore_case,
    )
    prefix = service is not None or project is not None or len(names or []) > 1
    for line in lines:
        if json_flag:
            print(json.dumps({k: v for k, v in line.items() if k != "type"}), flush=follow)
            continue
        text = str(line.get("text", ""))
        if timestamps and line.get("timestamp"):
            text = f"{line['timestamp']} {text}"
        if prefix:
            text = f"{line.get('container')} | {text}"
        stream = sys.stderr if line.get("stream") == "stderr" else sys.stdout
        print(text, file=stream, flush=follow)


@containers_app.command("stats")
def containers_stats(
    names: Annotated[list[str] | None, typer.Argument(help="Containers.")] = None,
    service: Annotated[str | None, typer.Option(help="Running containers of a service.")] = None,
    project: Annotated[str | None, typer.Option(help="Running containers of a project.")] = None,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="One sample each.")] = False,
    samples: Annotated[
        int | None, typer.Option(min=1, help="Stop after N samples of each container.")
    ] = None,
    json_flag: JsonOpt = False,
) -> None:
    """CPU %, memory, network and block I/O, as ``docker stats`` computes them: one row
    per container, redrawn in place on a terminal; otherwise one table per round (when
    every container has a new sample)."""
    events = _engine().stats_many(
        names or [], service=service, project=project, stream=not no_stream, samples=samples
    )
    if json_flag:
        for sample in events:
            print(json.dumps({k: v for k, v in sample.items() if k != "type"}), flush=True)
        return
    latest: dict[str, Mapping[str, Any]] = {}
    if not sys.stdout.isatty():
        fresh: set[str] = set()
        for sample in events:
            key = str(sample["id"])
            if key in fresh:  # a new round begins: show the one that is complete
                print_table(STATS_HEADERS, _stats_rows(latest))
                fresh.clear()
            latest[key] = sample
            fresh.add(key)
        if latest:
            print_table(STATS_HEADERS, _stats_rows(latest))
        return
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    def table() -> Table:
        shown = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
        for header in STATS_HEADERS:
            shown.add_column(header, no_wrap=True)
        for row in _stats_rows(latest):
            shown.add_row(*row)
        return shown

    with Live(console=Console(), auto_refresh=False) as live:
        for sample in events:
            latest[str(sample["id"])] = sample
            live.update(table(), refresh=True)


STATS_HEADERS = ["NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]


def _stats_rows(latest: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    return [_stats_row(sample) for sample in sorted(latest.values(), key=lambda s: s["name"])]


def _stats_row(sample: Mapping[str, Any]) -> list[str]:
    return [
        str(sample["name"]),
        f"{sample['cpu_percent']:.2f}%",
        f"{_bytes(sample['memory_usage'])} / {_bytes(sample['memory_limit'])}",
        f"{sample['memory_percent']:.2f}%",
        f"{_bytes(sample['net_rx'])} / {_bytes(sample['net_tx'])}",
        f"{_bytes(sample['block_read'])} / {_bytes(sample['block_write'])}",
        str(sample["pids"]),
    ]


ContainersArg = Annotated[list[str], typer.Argument(help="Containers.")]
TimeoutOpt = Annotated[
    int | None, typer.Option("--time", "-t", min=0, help="Seconds to wait before killing.")
]


@containers_app.command("start")
def containers_start(names: ContainersArg) -> None:
    """Start containers."""
    engine = _engine()
    for name in names:
        engine.start(name)
        print(name)


@containers_app.command("stop")
def containers_stop(names: ContainersArg, timeout: TimeoutOpt = None) -> None:
    """Stop containers (SIGTERM, then SIGKILL after the timeout)."""
    engine = _engine()
    for name in names:
        engine.stop(name, timeout=timeout)
        print(name)


@containers_app.command("restart")
def containers_restart(names: ContainersArg, timeout: TimeoutOpt = None) -> None:
    """Restart containers."""
    engine = _engine()
    for name in names:
        engine.restart(name, timeout=timeout)
        print(name)


@containers_app.command("rm")
def containers_rm(
    names: ContainersArg,
    force: Annotated[bool, typer.Option("--force", "-f", help="Even if running.")] = False,
    volumes: Annotated[bool, typer.Option("--volumes", "-v", help="Anonymous volumes.")] = False,
) -> None:
    """Remove containers."""
    engine = _engine()
    for name in names:
        engine.remove(name, force=force, volumes=volumes)
        print(name)
