"""``cargobay app ...``: MAI launcher app instances through cargobayd (``cargobay.sdk.apps``).

    cargobay app create NAME [--mode docker|local|wsl2_docker] [--version V] [--repo URL]
                             [--branch B] [--wsl-distro D] [--sqlite-web] [--set KEY=VALUE]...
                             [--napcat-url URL --napcat-sha256 HEX --napcat-version V]  (local)
    cargobay app ls | show NAME | status NAME | stats NAME | images NAME | compose NAME
    cargobay app updates NAME                newer images behind the stack's tags? (exit 1)
    cargobay app deploy NAME [--detach]      progress bar (a plain line per step when piped)
    cargobay app start|stop|restart NAME [--service S]...
    cargobay app logs NAME [--service S]... [-f] [--tail N] [--grep REGEX]   (-f: local too)
    cargobay app rm NAME [--keep-data]
    cargobay app import-legacy PATH          an older launcher's database (run once)
    cargobay app config NAME bot|model|adapter [--set KEY=VALUE]... [--unset KEY]... [--no-restart]
    cargobay app provider ls|set|rm NAME ...  API providers (keys stored 0600, shown masked)
    cargobay app backup NAME [--output PATH] | restore ARCHIVE NEW_NAME

``--set`` sets a stack setting (``webui_port=18001``, ``core_image=...``,
``bind_address=127.0.0.1``; see ``StackConfig``).  Every command takes ``--json``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
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
    progress_events,
)
from cargobay.cli.session import connect
from cargobay.errors import InvalidInput

__all__ = ["app"]

app = new_app("app", "MAI launcher app instances (MaiBot: local, Docker, WSL2+Docker).")

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output.")]
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The instance's name.")]
ServiceOpt = Annotated[
    list[str] | None, typer.Option("--service", "-s", help="Only this service (repeatable).")
]


def _apps() -> Any:
    from cargobay.sdk.apps import AppsClient

    return AppsClient(connect())


def _out(json_flag: bool) -> Format:
    return pick_format(None, json_flag)


def _parse_sets(items: list[str]) -> dict[str, Any]:
    stack: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"bad --set {item!r}: expected KEY=VALUE")
        lowered = value.lower()
        parsed: Any = value
        if lowered in ("true", "false"):
            parsed = lowered == "true"
        elif lowered in ("none", "null", ""):
            parsed = None
        elif value.isdigit():
            parsed = int(value)
        stack[key] = parsed
    return stack


def _ports(instance: Mapping[str, Any]) -> str:
    stack = instance.get("stack") or {}
    names = ("webui_port", "napcat_port", "adapter_port", "sqlite_web_port")
    shown = [f"{n.removesuffix('_port')}={stack[n]}" for n in names if stack.get(n)]
    return ",".join(shown) or "-"


@app.command("create")
def create(
    name: NameArg,
    mode: Annotated[str, typer.Option("--mode", "-m", help="docker, local or wsl2_docker.")] = (
        "docker"
    ),
    version: Annotated[str, typer.Option("--version", help="MaiBot version.")] = "latest",
    repo: Annotated[str | None, typer.Option("--repo", help="local mode: repository URL.")] = None,
    branch: Annotated[str | None, typer.Option("--branch", help="local mode: branch.")] = None,
    wsl_distro: Annotated[str | None, typer.Option("--wsl-distro")] = None,
    sqlite_web: Annotated[bool, typer.Option("--sqlite-web", help="Add sqlite-web.")] = False,
    napcat_url: Annotated[
        str | None, typer.Option("--napcat-url", help="local mode: NapCat release archive URL.")
    ] = None,
    napcat_sha256: Annotated[
        str | None, typer.Option("--napcat-sha256", help="local mode: its SHA-256.")
    ] = None,
    napcat_version: Annotated[
        str | None, typer.Option("--napcat-version", help="local mode: its version.")
    ] = None,
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Stack setting KEY=VALUE (repeatable).")
    ] = None,
    json_flag: JsonOpt = False,
) -> None:
    """Create an instance (nothing runs until `cargobay app deploy`)."""
    stack = _parse_sets(sets or [])
    if sqlite_web:
        stack["sqlite_web"] = True
    body: dict[str, Any] = {"name": name, "deploy_mode": mode, "version": version, "stack": stack}
    for key, value in (("repo_url", repo), ("branch", branch), ("wsl_distro", wsl_distro)):
        if value is not None:
            body[key] = value
    napcat = {"url": napcat_url, "sha256": napcat_sha256, "version": napcat_version}
    if any(v is not None for v in napcat.values()):
        if any(v is None for v in napcat.values()):
            raise typer.BadParameter(
                "give --napcat-url, --napcat-sha256 and --napcat-version together"
            )
        body["napcat"] = napcat
    instance = _apps().create(body)
    if _out(json_flag) is not Format.TABLE:
        emit_document(instance, Format.JSON)
        return
    note(
        f"app {name} created ({instance['deploy_mode']}); "
        f"deploy it with `cargobay app deploy {name}`"
    )


@app.command("ls")
def ls(json_flag: JsonOpt = False) -> None:
    """The instances."""
    instances = _apps().list()
    if _out(json_flag) is not Format.TABLE:
        emit_document(instances, Format.JSON)
        return
    rows = [
        [i["name"], i["deploy_mode"], i["version"], i["status"], _ports(i), i["id"]]
        for i in instances
    ]
    print_table(["NAME", "MODE", "VERSION", "STATUS", "PORTS", "ID"], rows)


@app.command("show")
def show(name: NameArg, json_flag: JsonOpt = False) -> None:
    """One instance's settings."""
    i = _apps().get(name)
    if _out(json_flag) is not Format.TABLE:
        emit_document(i, Format.JSON)
        return
    print_pairs(
        [
            ("name", i["name"]),
            ("id", i["id"]),
            ("mode", i["deploy_mode"]),
            ("version", i["version"]),
            ("status", i["status"]),
            ("ports", _ports(i)),
            ("network", i.get("docker_network") or "-"),
            ("compose file", i.get("docker_compose_path") or "-"),
            ("containers", ",".join(i.get("container_ids") or []) or "-"),
            ("repository", i.get("repo_url") or "-"),
            ("created", str(i["created_at"])),
        ]
    )


def _as_progress(events: Iterator[dict[str, Any]], json_flag: bool) -> Iterator[dict[str, Any]]:
    for event in events:
        if json_flag:
            emit_document(event, Format.JSON)
        if event.get("type") == "done":
            yield {"type": "done", "message": event.get("message")}
        elif event.get("type") in ("step", "progress", "log"):
            yield {
                "type": "progress",
                "step": event.get("step") or "",
                "fraction": float(event.get("percent") or 0.0) / 100.0,
                "message": event.get("message") or "",
            }


@app.command("deploy")
def deploy(
    name: NameArg,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Do not follow.")] = False,
    json_flag: JsonOpt = False,
) -> None:
    """Deploy (or update) an instance: Docker: compose file, images, containers."""
    apps = _apps()
    if detach:
        task = apps.deploy_background(name)
        if json_flag:
            emit_document(task, Format.JSON)
        else:
            note(f"deploying {name}: task {task['id']}")
        return
    events = _as_progress(apps.deploy(name), json_flag)
    if json_flag:
        for _ in events:
            pass
        return
    done = progress_events(events, f"deploy {name}")
    note(str((done or {}).get("message") or f"app {name} deployed"))


def _verb(verb: str, doc: str) -> None:
    def command(name: NameArg, service: ServiceOpt = None, json_flag: JsonOpt = False) -> None:
        instance = getattr(_apps(), verb)(name, service or [])
        if json_flag:
            emit_document(instance, Format.JSON)
        else:
            note(f"app {name}: {instance['status']}")

    command.__doc__ = doc
    app.command(verb)(command)


_verb("start", "Start the instance's containers or processes.")
_verb("stop", "Stop the instance's containers or processes.")
_verb("restart", "Restart the instance (or some services).")


@app.command("status")
def status(name: NameArg, json_flag: JsonOpt = False) -> None:
    """The instance's status and its containers."""
    result = _apps().status(name)
    if json_flag:
        emit_document(result, Format.JSON)
        return
    note(f"app {name}: {result['instance']['status']}")
    rows = [
        [c["name"], c["service"], c["status"], ",".join(c["ports"]) or "-"]
        for c in result["containers"]
    ]
    print_table(["NAME", "SERVICE", "STATUS", "PORTS"], rows)


@app.command("stats")
def stats(name: NameArg, json_flag: JsonOpt = False) -> None:
    """CPU, memory and network of each running container (one sample)."""
    samples = _apps().stats(name)
    if json_flag:
        emit_document(samples, Format.JSON)
        return
    rows = [
        [
            s["name"],
            f"{s['cpu_percent']:.1f}%",
            f"{s['memory_usage'] / 2**20:.1f} MiB",
            f"{s['net_rx']}/{s['net_tx']}",
            str(s["pids"]),
        ]
        for s in samples
    ]
    print_table(["NAME", "CPU", "MEM", "NET RX/TX", "PIDS"], rows)


@app.command("images")
def images(name: NameArg, json_flag: JsonOpt = False) -> None:
    """The stack's images and whether they are present."""
    result = _apps().images(name)
    if json_flag:
        emit_document(result, Format.JSON)
        return
    rows = [
        [
            f"{i['repository']}:{i['tag']}",
            "yes" if i["present"] else "no",
            (i.get("image_id") or "-")[:19],
            str(i.get("size") or "-"),
        ]
        for i in result
    ]
    print_table(["IMAGE", "PRESENT", "ID", "SIZE"], rows)


@app.command("updates")
def updates(name: NameArg, json_flag: JsonOpt = False) -> None:
    """Check the registries for newer images behind the stack's tags (exit 1: some)."""
    result = _apps().updates(name)
    if json_flag:
        emit_document(result, Format.JSON)
    else:
        rows = [
            [
                r["reference"],
                {True: "yes", False: "no"}.get(r["update_available"], "?"),
                r.get("error") or "",
            ]
            for r in result
        ]
        print_table(["IMAGE", "UPDATE", "ERROR"], rows)
    if any(r["update_available"] for r in result):
        raise typer.Exit(1)


@app.command("compose")
def compose(name: NameArg) -> None:
    """Print the generated compose file."""
    typer.echo(_apps().compose_file(name), nl=False)


@app.command("logs")
def logs(
    name: NameArg,
    service: ServiceOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    tail: Annotated[int | None, typer.Option("--tail", "-n")] = None,
    grep: Annotated[str | None, typer.Option("--grep", help="Only matching lines.")] = None,
    json_flag: JsonOpt = False,
) -> None:
    """The instance's log lines, prefixed with the service."""
    for event in _apps().logs(name, services=service or [], follow=follow, tail=tail, grep=grep):
        if json_flag:
            emit_document(event, Format.JSON)
        elif event.get("type") == "log":
            typer.echo(f"{event.get('service', '')} | {event.get('line', '')}")


@app.command("rm")
def rm(
    name: NameArg,
    keep_data: Annotated[bool, typer.Option("--keep-data", help="Keep its directory.")] = False,
) -> None:
    """Remove the instance: containers, network, volumes, directory (unless --keep-data)."""
    _apps().delete(name, keep_data=keep_data)
    note(f"app {name} removed")


@app.command("import-legacy")
def import_legacy(
    path: Annotated[Path, typer.Argument(help="The older launcher's SQLite database.")],
    json_flag: JsonOpt = False,
) -> None:
    """Import an older launcher's instances as local instances (a backup is kept)."""
    report = _apps().import_legacy(str(path.absolute()))
    if json_flag:
        emit_document(report, Format.JSON)
        return
    if report.get("already_imported"):
        note(f"{path} was already imported ({len(report['imported'])} instance(s))")
        return
    note(f"imported {len(report['imported'])} instance(s): {', '.join(report['imported'])}")
    note(f"backup of the old database: {report['backup']}")


@app.command("config")
def config(
    name: NameArg,
    kind: Annotated[str, typer.Argument(help="bot, model or adapter.")],
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="KEY=VALUE (dotted key; repeatable).")
    ] = None,
    unset: Annotated[list[str] | None, typer.Option("--unset", help="Remove KEY.")] = None,
    create: Annotated[bool, typer.Option("--create", help="Create missing tables.")] = False,
    no_restart: Annotated[bool, typer.Option("--no-restart")] = False,
    json_flag: JsonOpt = False,
) -> None:
    """Show or edit an instance's config file (comments and order are kept)."""
    apps = _apps()
    if not sets and not unset:
        result = apps.config(name, kind)
        if json_flag:
            emit_document(result, Format.JSON)
        else:
            emit_document(result["values"], Format.JSON)
            for problem in result["problems"]:
                note(f"problem: {problem}")
        return
    result = apps.edit_config(
        name,
        kind,
        set_values=_parse_sets(sets or []),
        delete=unset or [],
        create=create,
        restart=not no_restart,
    )
    if json_flag:
        emit_document(result, Format.JSON)
        return
    restarted = ", ".join(result["restarted"]) or "nothing"
    note(f"{result['path']}: changed {', '.join(result['changed'])}; restarted {restarted}")


@app.command("backup")
def backup(
    name: NameArg,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Archive path.")] = None,
    json_flag: JsonOpt = False,
) -> None:
    """Back up the instance's settings, configuration, data and secrets (one .tar.gz)."""
    result = _apps().backup(name, str(output.absolute()) if output else None)
    if json_flag:
        emit_document(result, Format.JSON)
    else:
        note(f"app {name} backed up to {result['archive']}")


@app.command("restore")
def restore(
    archive: Annotated[Path, typer.Argument(help="A backup made by `cargobay app backup`.")],
    name: Annotated[str, typer.Argument(metavar="NEW_NAME")],
    json_flag: JsonOpt = False,
) -> None:
    """Restore a backup as a new instance (deploy it to run it)."""
    instance = _apps().restore(str(archive.absolute()), name)
    if json_flag:
        emit_document(instance, Format.JSON)
    else:
        note(f"app {name} restored from {archive}; deploy it with `cargobay app deploy {name}`")


provider_app = new_app("provider", "API providers of an instance (keys stored 0600, masked).")
app.add_typer(provider_app, name="provider")


@provider_app.command("ls")
def provider_ls(name: NameArg, json_flag: JsonOpt = False) -> None:
    """The instance's API providers (keys masked)."""
    providers = _apps().providers(name)
    if json_flag:
        emit_document(providers, Format.JSON)
        return
    rows = [[p["name"], p["client_type"], p["base_url"], p["api_key"]] for p in providers]
    print_table(["NAME", "CLIENT", "BASE URL", "KEY"], rows)


@provider_app.command("set")
def provider_set(
    name: NameArg,
    provider: Annotated[str, typer.Argument(metavar="PROVIDER")],
    base_url: Annotated[str, typer.Option("--base-url")],
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", help="Read the key from this environment variable.")
    ] = "CARGOBAY_API_KEY",
    client_type: Annotated[str, typer.Option("--client-type")] = "openai",
    max_retry: Annotated[int, typer.Option("--max-retry")] = 2,
) -> None:
    """Add or replace a provider; the key comes from the environment (never argv)."""
    import os

    key = os.environ.get(api_key_env)
    if not key:
        raise InvalidInput(f"set the API key in ${api_key_env} (it is not read from argv)")
    result = _apps().put_provider(
        name,
        provider,
        base_url=base_url,
        api_key=key,
        client_type=client_type,
        max_retry=max_retry,
    )
    note(f"provider {provider} saved (key {result['provider']['api_key']})")


@provider_app.command("rm")
def provider_rm(
    name: NameArg, provider: Annotated[str, typer.Argument(metavar="PROVIDER")]
) -> None:
    """Remove a provider from the launcher's store."""
    _apps().delete_provider(name, provider)
    note(f"provider {provider} removed")
