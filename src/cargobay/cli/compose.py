"""``cargobay compose``: our compose engine, through cargobayd (``cargobay.sdk.compose``).

    cargobay compose [-f FILE]... [-p NAME] [--env-file F] [--profile P]... COMMAND
        up [-d] [--wait] [--build] [--force-recreate] [--no-recreate] [--remove-orphans]
           [SERVICE...]
        down [-v] [--remove-orphans] [-t SECONDS]
        stop|restart [-t SECONDS] [SERVICE...]  |  start [SERVICE...]
        ps [SERVICE...] [--json]
        logs [-f] [--tail N] [-t] [--grep REGEX] [SERVICE...]
        config [--json]
        export --swarm|--kubernetes [--namespace NS] [--output FILE]
        deploy --swarm

The CLI sends the file paths, its working directory and its environment (interpolation
and bare ``environment`` entries read the caller's variables, as with docker compose);
the daemon does the work.  Progress goes to stderr, one line per container step;
``--json`` prints the events (or the document) as JSON on stdout instead.  ``up``
without ``-d`` follows the logs afterwards and stops the project on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cargobay.cli.app import new_app
from cargobay.cli.output import Format, emit_document, note, pick_format, print_table
from cargobay.cli.session import connect
from cargobay.errors import InvalidInput

__all__ = ["app"]

app = new_app(
    "compose",
    "Run multi-container projects from Compose files (our engine, compatible with "
    "docker compose's labels and config hash).",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout.")]
ServicesArg = Annotated[list[str] | None, typer.Argument(help="Services (default: all).")]
TimeoutOpt = Annotated[
    int | None, typer.Option("--timeout", "-t", min=0, help="Seconds to wait before killing.")
]


@dataclass
class _Options:
    files: list[str]
    project_name: str | None
    env_file: str | None
    profiles: list[str]


@app.callback()
def compose_options(
    ctx: typer.Context,
    file: Annotated[
        list[Path] | None, typer.Option("--file", "-f", help="Compose file; repeatable.")
    ] = None,
    project_name: Annotated[
        str | None, typer.Option("--project-name", "-p", help="Project name.")
    ] = None,
    env_file: Annotated[
        Path | None, typer.Option("--env-file", help="Variables file (default: .env).")
    ] = None,
    profile: Annotated[
        list[str] | None, typer.Option("--profile", help="Enable a profile; repeatable.")
    ] = None,
) -> None:
    ctx.obj = _Options(
        files=[str(f) for f in file or []],
        project_name=project_name,
        env_file=str(env_file) if env_file is not None else None,
        profiles=list(profile or []),
    )


def _compose(ctx: typer.Context) -> Any:
    from cargobay.sdk.compose import ComposeClient, ProjectSpec

    options: _Options = ctx.obj
    spec = ProjectSpec.here(
        options.files,
        project_name=options.project_name,
        env_file=options.env_file,
        profiles=options.profiles,
    )
    return ComposeClient(connect(), spec)


def _show(events: Iterable[Mapping[str, Any]], json_out: bool) -> Mapping[str, Any]:
    """Print progress (stderr) or the events (stdout, --json); the ``done`` event."""
    done: Mapping[str, Any] = {}
    for event in events:
        if json_out:
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
        kind = event.get("type")
        if kind == "done":
            done = event
        elif json_out:
            continue
        elif kind == "progress":
            what = str(event.get("resource", "")).capitalize()
            print(f"{what} {event.get('name')}  {event.get('status')}", file=sys.stderr)
        elif kind == "warning":
            note(f"warning: {event.get('message')}")
        elif kind == "build":
            print(f"  {event.get('service')} | {event.get('line')}", file=sys.stderr)
    return done


@app.command("up")
def up(
    ctx: typer.Context,
    services: ServicesArg = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Do not follow logs.")] = False,
    build: Annotated[bool, typer.Option("--build", help="Build images first.")] = False,
    force_recreate: Annotated[
        bool, typer.Option("--force-recreate", help="Recreate even what did not change.")
    ] = False,
    no_recreate: Annotated[
        bool, typer.Option("--no-recreate", help="Keep existing containers even if changed.")
    ] = False,
    remove_orphans: Annotated[
        bool, typer.Option("--remove-orphans", help="Remove containers of removed services.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Until healthy (services with a check); implies -d.")
    ] = False,
    wait_timeout: Annotated[
        float, typer.Option("--wait-timeout", min=1, help="Seconds for health waits.")
    ] = 300.0,
    json_out: JsonOpt = False,
) -> None:
    """Create and start the project (only what changed is recreated)."""
    compose = _compose(ctx)
    done = _show(
        compose.up(services or [], build=build, force_recreate=force_recreate,
                   no_recreate=no_recreate, remove_orphans=remove_orphans, wait=wait,
                   wait_timeout=wait_timeout),
        json_out,
    )  # fmt: skip
    detach = detach or wait
    if not json_out and done and not done.get("changed"):
        note(f"project {done.get('project')} is up to date")
    if detach or json_out:
        return
    try:
        _print_logs(compose.logs(services or [], follow=True))
    except KeyboardInterrupt:
        note("stopping (Ctrl-C again to leave them running)")
        _show(compose.stop(services or []), False)


def _print_logs(events: Iterable[Mapping[str, Any]], json_out: bool = False) -> None:
    for event in events:
        if event.get("type") != "log":
            continue
        if json_out:
            sys.stdout.write(json.dumps(event) + "\n")
        else:
            sys.stdout.write(f"{event.get('container')}  | {event.get('line')}\n")
        sys.stdout.flush()


@app.command("down")
def down(
    ctx: typer.Context,
    volumes: Annotated[bool, typer.Option("--volumes", "-v", help="Remove volumes too.")] = False,
    remove_orphans: Annotated[
        bool, typer.Option("--remove-orphans", help="Also containers of removed services.")
    ] = False,
    timeout: TimeoutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Stop and remove the project's containers and networks (-v: and volumes)."""
    compose = _compose(ctx)
    _show(compose.down(volumes=volumes, remove_orphans=remove_orphans, timeout=timeout), json_out)


@app.command("stop")
def stop(
    ctx: typer.Context, services: ServicesArg = None, timeout: TimeoutOpt = None,
    json_out: JsonOpt = False,
) -> None:  # fmt: skip
    """Stop containers (dependents first)."""
    _show(_compose(ctx).stop(services or [], timeout=timeout), json_out)


@app.command("start")
def start(ctx: typer.Context, services: ServicesArg = None, json_out: JsonOpt = False) -> None:
    """Start existing containers (dependencies first)."""
    _show(_compose(ctx).start(services or []), json_out)


@app.command("restart")
def restart(
    ctx: typer.Context, services: ServicesArg = None, timeout: TimeoutOpt = None,
    json_out: JsonOpt = False,
) -> None:  # fmt: skip
    """Restart containers."""
    _show(_compose(ctx).restart(services or [], timeout=timeout), json_out)


@app.command("ps")
def ps(ctx: typer.Context, services: ServicesArg = None, json_out: JsonOpt = False) -> None:
    """The project's containers (also those docker-compose started)."""
    rows = _compose(ctx).ps(services or [])
    if json_out:
        emit_document(rows, Format.JSON)
        return
    print_table(
        ["NAME", "SERVICE", "STATUS", "PORTS"],
        [[r["name"], r["service"], r["status"], ", ".join(r["ports"])] for r in rows],
    )


@app.command("logs")
def logs(
    ctx: typer.Context,
    services: ServicesArg = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following.")] = False,
    tail: Annotated[int | None, typer.Option("--tail", min=0, help="Last N lines each.")] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-t", help="Prefix the engine's timestamps.")
    ] = False,
    grep: Annotated[
        str | None, typer.Option("--grep", help="Only lines matching this regular expression.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """The containers' output, prefixed with the container name."""
    events = _compose(ctx).logs(
        services or [], follow=follow, tail=tail, timestamps=timestamps, grep=grep
    )
    with contextlib.suppress(KeyboardInterrupt):
        _print_logs(events, json_out)


@app.command("config")
def config(
    ctx: typer.Context,
    json_out: JsonOpt = False,
    fmt: Annotated[Format | None, typer.Option("--format", "-o", help="yaml or json.")] = None,
) -> None:
    """The resolved project (interpolated, merged, normalized)."""
    result = _compose(ctx).config()
    for warning in result.get("warnings", []):
        note(f"warning: {warning}")
    chosen = pick_format(fmt, json_out)
    emit_document(result["project"], Format.JSON if chosen is Format.JSON else Format.YAML)


@app.command("export")
def export(
    ctx: typer.Context,
    swarm: Annotated[bool, typer.Option("--swarm", help="A docker stack deploy file.")] = False,
    kubernetes: Annotated[
        bool, typer.Option("--kubernetes", help="Deployments, Services, PVCs.")
    ] = False,
    namespace: Annotated[str | None, typer.Option("--namespace")] = None,
    storage: Annotated[str, typer.Option("--storage", help="PVC size.")] = "1Gi",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
) -> None:
    """Hand the project to Swarm or Kubernetes; a warning for each key they ignore."""
    if swarm == kubernetes:
        raise InvalidInput("say one of --swarm or --kubernetes")
    result = _compose(ctx).export(
        "swarm" if swarm else "kubernetes", namespace=namespace, storage=storage
    )
    for warning in result["warnings"]:
        note(f"warning: {warning}")
    if output is not None:
        output.write_text(result["yaml"])
        note(f"wrote {output}")
    else:
        sys.stdout.write(result["yaml"])


@app.command("deploy")
def deploy(
    ctx: typer.Context,
    swarm: Annotated[bool, typer.Option("--swarm", help="Deploy as a Swarm stack.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Deploy the project to the engine's Swarm (docker stack deploy semantics)."""
    if not swarm:
        raise InvalidInput("say where: --swarm")
    done = _show(_compose(ctx).deploy(), json_out)
    if not json_out and done:
        note(f"stack {done.get('stack')}: services {', '.join(done.get('services', []))}")
