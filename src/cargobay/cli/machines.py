"""The machine verbs, shared by ``cargobay vm ...`` and ``aiva ...``.

Each verb is one typer command function registered on both apps (``create`` is called
``init`` in aiva, as in seed 004).  A verb checks its arguments locally (``inputs``), then
makes one or two SDK calls; everything else is the daemon's job.  ``exec_command`` is also
what ``cargobay run`` uses to stream a command's output.
"""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, TextIO

import typer

from cargobay.cli.app import EXIT_CODES_HELP, EXIT_TIMEOUT, fail
from cargobay.cli.inputs import parse_env, parse_port, size_arg
from cargobay.cli.machine_data import CacheOpt, ShareOpt, share_arg
from cargobay.cli.metrics_view import metrics_pairs
from cargobay.cli.output import (
    MACHINE_HEADERS,
    Format,
    accel_notice,
    as_data,
    emit_document,
    machine_detail,
    machine_rows,
    note,
    pick_format,
    print_pairs,
    print_table,
    spinner,
)
from cargobay.cli.session import connect
from cargobay.cli.templates import resolve_template
from cargobay.errors import ERROR_TYPES, CargoBayError, GuestError, NotFound

__all__ = [
    "as_machine",
    "copy_exec_output",
    "exec_command",
    "exit_status",
    "raise_stream_error",
    "register",
    "resources",
]

# -- option types shared by the verbs ---------------------------------------------------

NameArg = Annotated[str, typer.Argument(help="Machine name.", show_default=False)]
CmdArg = Annotated[
    list[str],
    typer.Argument(help="The command and its arguments (put them after --).", show_default=False),
]
RestartOpt = Annotated[
    str | None,
    typer.Option(
        "--restart",
        help="When the VM process ends on its own: no (default), on-failure[:N], always.",
    ),
]
ImageOpt = Annotated[str | None, typer.Option("--image", help="Image to boot (default default).")]
CpusOpt = Annotated[int | None, typer.Option("--cpus", min=1, max=64, help="vCPUs (default 1).")]
MemoryOpt = Annotated[
    str | None, typer.Option("--memory", "-m", help="Memory, like 512MB or 2GB (default 512MB).")
]
DiskOpt = Annotated[
    str | None, typer.Option("--disk", help="Writable data disk, like 2GB (default 2GB).")
]
PortsOpt = Annotated[
    list[str] | None,
    typer.Option("--ports", "-p", help="Port mapping HOST:GUEST or HOST:GUEST/udp; repeatable."),
]
TemplateOpt = Annotated[
    str | None,
    typer.Option(
        "--template",
        help="Resource profile (minimal, standard, performance: scaled to this host) or "
        "shipped template (mcp-server, agent, inference); see `aiva templates`. "
        "--image/--cpus/--memory/--disk/--ports override it.",
    ),
]
BootTimeoutOpt = Annotated[
    float, typer.Option("--boot-timeout", min=0.1, help="Seconds to wait for the guest agent.")
]
FormatOpt = Annotated[
    Format | None, typer.Option("--format", "-f", help="Output format (default table).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
EnvOpt = Annotated[
    list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE for the command; repeatable.")
]
WorkdirOpt = Annotated[
    str | None, typer.Option("--workdir", "-w", help="Working directory in the guest.")
]
TtyOpt = Annotated[bool, typer.Option("--tty", help="Run the command on a pseudo-terminal.")]
StdinOpt = Annotated[
    bool, typer.Option("--interactive", "-i", help="Send this process's stdin to the command.")
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", min=0.1, help="Kill the command after this many seconds."),
]


def as_machine(obj: Any) -> dict[str, Any]:
    data = as_data(obj)
    return data if isinstance(data, dict) else {}


def resources(
    cpus: int | None,
    memory: str | None,
    disk: str | None,
    ports: list[str] | None,
    template: str | None,
) -> dict[str, Any]:
    """Checked creation arguments; a template fills what the options leave out."""
    spec: dict[str, Any] = {}
    if template is not None:  # checked here for a quick answer; the daemon resolves it
        resolve_template(template)
        spec["template"] = template.strip().lower()
    if cpus is not None:
        spec["cpus"] = cpus
    if (mem := size_arg(memory, "memory")) is not None:
        spec["memory"] = mem
    if (dsk := size_arg(disk, "disk size")) is not None:
        spec["disk"] = dsk
    if ports:
        spec["ports"] = [parse_port(p) for p in ports]
    return spec


def _boot_note(m: Mapping[str, Any], wall: float) -> None:
    runtime = m.get("runtime") or {}
    accel = runtime.get("accel") or "?"
    note(f"{m.get('name')} is running (booted in {wall:.2f} s, {accel})")
    if notice := accel_notice(m):
        note(f"note: {notice}")


# -- verbs --------------------------------------------------------------------------------


def create(
    name: NameArg,
    template: TemplateOpt = None,
    image: ImageOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    disk: DiskOpt = None,
    ports: PortsOpt = None,
    shares: ShareOpt = None,
    cache: CacheOpt = None,
    restart: RestartOpt = None,
    network: Annotated[
        str | None,
        typer.Option(
            "--network",
            help="user (default), bridge (a TAP on config.yaml's bridge; root daemon) or none.",
        ),
    ] = None,
) -> None:
    """Create a machine without starting it."""
    spec = resources(cpus, memory, disk, ports, template)
    if image is not None:
        spec["image"] = image
    if shares:
        spec["shares"] = [share_arg(s) for s in shares]
    if cache is not None:
        spec["cache_strategy"] = cache
    if restart is not None:
        spec["restart"] = restart
    if network is not None:
        spec["network"] = network
    client = connect()
    m = as_machine(client.create_machine(name=name, start=False, **spec))
    config = m.get("config") or {}
    note(
        f"created {name} ({config.get('cpus', '?')} vCPU, "
        f"{config.get('memory_mb', '?')} MiB, image {config.get('image', '?')}); "
        f"start it with `start {name}`"
    )


def start(
    name: NameArg,
    image: ImageOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    disk: DiskOpt = None,
    ports: PortsOpt = None,
    template: TemplateOpt = None,
    boot_timeout: BootTimeoutOpt = 120.0,
    snapshot: Annotated[
        str | None,
        typer.Option("--snapshot", help="Warm-start from this snapshot instead of booting."),
    ] = None,
) -> None:
    """Start a machine, creating it first when it does not exist."""
    spec = resources(cpus, memory, disk, ports, template)
    if image is not None:
        spec["image"] = image
    client = connect()
    try:
        client.get_machine(name)
        exists = True
    except NotFound:
        exists = False
    t0 = time.monotonic()
    if exists:
        if spec:
            note(
                f"note: {name} exists; --image/--template/--cpus/--memory/--disk/--ports "
                "apply only when a machine is created"
            )
        what = f"restoring {name} from {snapshot}" if snapshot else f"booting {name}"
        with spinner(f"{what} ..."):
            m = as_machine(client.start(name, boot_timeout=boot_timeout, snapshot=snapshot))
    elif snapshot is not None:
        fail(f"machine {name!r} does not exist; a snapshot starts an existing machine")
    else:
        with spinner(f"creating and booting {name} ..."):
            m = as_machine(
                client.create_machine(name=name, start=True, boot_timeout=boot_timeout, **spec)
            )
    _boot_note(m, time.monotonic() - t0)


def stop(
    name: NameArg,
    force: Annotated[
        bool, typer.Option("--force", help="Power off at once instead of shutting down.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds to wait for a clean shutdown.")
    ] = 10.0,
) -> None:
    """Stop a machine (a clean shutdown, then power off after --timeout)."""
    client = connect()
    t0 = time.monotonic()
    with spinner(f"stopping {name} ..."):
        client.stop(name, force=force, timeout=timeout)
    note(f"stopped {name} in {time.monotonic() - t0:.2f} s")


def pause(name: NameArg) -> None:
    """Pause a running machine (its vCPUs stop; memory is kept)."""
    connect().pause(name)
    note(f"paused {name}")


def resume(name: NameArg) -> None:
    """Resume a paused machine."""
    connect().resume(name)
    note(f"resumed {name}")


def status(
    name: Annotated[
        str | None, typer.Argument(help="Machine name; all machines when left out.")
    ] = None,
    fmt: FormatOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Show one machine, or list all of them."""
    out = pick_format(fmt, json_flag)
    client = connect()
    if name is None:
        _list(client, out, quiet=False)
        return
    m = as_machine(client.get_machine(name))
    metrics = _metrics(client, m)
    if out is Format.TABLE:
        print_pairs(machine_detail(m) + metrics_pairs(metrics or {}))
    else:
        emit_document({**m, "metrics": metrics}, out)


def _metrics(client: Any, m: Mapping[str, Any]) -> dict[str, Any] | None:
    """The machine's metrics while it has a process (None otherwise, or from a daemon
    without the endpoint)."""
    state = m.get("state")
    kind = state.get("kind") if isinstance(state, Mapping) else state
    if kind not in ("running", "paused", "stopping"):
        return None
    try:
        result: dict[str, Any] = client.machine_metrics(m["name"])
    except NotFound:
        return None
    return result


def ls(
    fmt: FormatOpt = None,
    json_flag: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print names only.")] = False,
) -> None:
    """List machines."""
    out = pick_format(fmt, json_flag)
    _list(connect(), out, quiet=quiet)


def _list(client: Any, out: Format, *, quiet: bool) -> None:
    machines = [as_machine(m) for m in client.list_machines()]
    machines.sort(key=lambda m: str(m.get("name", "")))
    if quiet:
        for m in machines:
            print(m.get("name"))
    elif out is Format.TABLE:
        print_table(MACHINE_HEADERS, machine_rows(machines))
    else:
        emit_document(machines, out)


def exec_(
    name: NameArg,
    command: CmdArg,
    env: EnvOpt = None,
    workdir: WorkdirOpt = None,
    tty: TtyOpt = False,
    interactive: StdinOpt = False,
    timeout: TimeoutOpt = None,
) -> None:
    """Run a command in a machine; its output streams back and its exit code is ours."""
    env_map = parse_env(env or ())
    stdin = sys.stdin.buffer.read() if interactive else None
    client = connect()
    code = exec_command(
        client, name, command, env=env_map, cwd=workdir, stdin=stdin, tty=tty, timeout=timeout
    )
    raise typer.Exit(code)


def logs(
    name: NameArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", "-n", min=0, help="Only the last N lines.")
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            "-s",
            help="console (default), hypervisor, platform, app or all; repeatable. Several are "
            "merged, each line prefixed with [source].",
        ),
    ] = None,
) -> None:
    """Print a machine's logs (the serial console unless --source says otherwise)."""
    client = connect()
    out = sys.stdout
    for chunk in client.logs(name, tail=tail, follow=follow, sources=source):
        if isinstance(chunk, bytes):
            out.flush()
            out.buffer.write(chunk)
            out.buffer.flush()
        else:
            out.write(chunk)
            out.flush()


def rm(
    name: NameArg,
    force: Annotated[bool, typer.Option("--force", help="Stop the machine first.")] = False,
) -> None:
    """Remove a machine and its disk (a running one only with --force)."""
    connect().delete(name, force=force)
    note(f"removed {name}")


# -- exec streaming ---------------------------------------------------------------------


def raise_stream_error(event: Mapping[str, Any]) -> None:
    """An ``{"type": "error"}`` line ends a failed stream: raise it as its error class."""
    cls = ERROR_TYPES.get(str(event.get("code")), CargoBayError)
    raise cls(str(event.get("message") or "the daemon reported an error without a message"))


def exec_command(
    client: Any,
    name: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    stdin: bytes | None = None,
    tty: bool = False,
    timeout: float | None = None,
) -> int:
    """Run ``argv`` in machine ``name``, copying its stdout/stderr to ours; its exit code."""
    if not argv:
        fail("no command given; put it after --, like: exec NAME -- uname -a", 2)
    events = client.exec_stream(
        name, argv, env=env or {}, cwd=cwd, stdin=stdin, tty=tty, timeout=timeout
    )
    exit_event = copy_exec_output(events, sys.stdout, sys.stderr)
    if exit_event is None:
        raise GuestError(
            f"the output of the command in {name!r} ended without an exit status; "
            f"see `cargobay vm logs {name}` and the daemon log"
        )
    if exit_event.get("timed_out"):
        note(f"note: the command was killed after its --timeout of {timeout:g} s")
    return exit_status(exit_event)


def copy_exec_output(
    events: Iterable[Mapping[str, Any]], out: TextIO, err: TextIO
) -> Mapping[str, Any] | None:
    """Write an exec stream's output to ``out``/``err`` as it comes; the exit event.

    Bytes are written as they are (the guest's output need not be UTF-8); an error
    event raises its error class."""
    exit_event: Mapping[str, Any] | None = None
    for ev in events:
        kind = ev.get("type")
        if kind in ("stdout", "stderr"):
            stream = out if kind == "stdout" else err
            stream.flush()
            stream.buffer.write(base64.b64decode(ev.get("data_b64") or b""))
            stream.buffer.flush()
        elif kind == "exit":
            exit_event = ev
        elif kind == "error":
            raise_stream_error(ev)
    return exit_event


def exit_status(exit_event: Mapping[str, Any]) -> int:
    """Our exit code for a command's exit event.

    Its own exit code; 128+N when signal N killed it (as a shell reports it); 124 when
    the daemon killed it for its ``timeout`` (as timeout(1) does)."""
    if exit_event.get("timed_out"):
        return EXIT_TIMEOUT
    code = exit_event.get("exit_code")
    if isinstance(code, int) and code >= 0:
        return code
    signal = exit_event.get("signal")
    if isinstance(signal, int) and signal > 0:
        return 128 + signal
    return 1


# -- registration -------------------------------------------------------------------------


def register(app: typer.Typer, *, aiva: bool) -> None:
    """Add the machine verbs to ``app`` (aiva: seed 004's names and set)."""
    verbs: list[tuple[str, Any]] = [("init" if aiva else "create", create), ("start", start)]
    verbs.append(("stop", stop))
    if not aiva:
        verbs += [("pause", pause), ("resume", resume), ("ls", ls)]
    verbs += [("status", status), ("exec", exec_), ("logs", logs), ("rm", rm)]
    from cargobay.cli.config import machine_config

    verbs.append(("config", machine_config))
    for name, func in verbs:
        app.command(name, epilog=EXIT_CODES_HELP)(func)
    from cargobay.cli import machine_disk, machine_snapshots

    machine_snapshots.register(app)
    machine_disk.register(app)
    from cargobay.cli import machine_data

    machine_data.register(app)
