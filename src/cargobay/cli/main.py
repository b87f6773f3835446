"""``cargobay``: the command line of CargoBay.

    cargobay daemon start|stop|status
    cargobay vm create|start|stop|pause|resume|ls|status|exec|logs|rm
    cargobay image build [NAME] [--force] | ls | rm NAME
    cargobay run [--image default] [--rm] [--cpus --memory --disk] -- CMD...

Everything goes through cargobayd (started on demand, see ``session``).  ``run`` is the
main job in one command: create a machine with a generated name, boot it, run CMD with
its output streamed to ours, and report how long each step took on stderr (stdout is
the command's output), passing the command's exit code through.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cargobay.cli import apps as app_verbs
from cargobay.cli import compose as compose_verbs
from cargobay.cli import config as config_verbs
from cargobay.cli import containers as container_verbs
from cargobay.cli import docker_socket as docker_socket_verbs
from cargobay.cli import hosts as host_verbs
from cargobay.cli import machines as verbs
from cargobay.cli import mcp as mcp_verbs
from cargobay.cli import plugins as plugin_verbs
from cargobay.cli import scenarios as scenario_verbs
from cargobay.cli import ui as ui_verbs
from cargobay.cli.app import EXIT_CODES_HELP, EXIT_DAEMON, new_app
from cargobay.cli.inputs import command_text, format_mib, parse_env
from cargobay.cli.output import (
    IMAGE_HEADERS,
    Format,
    Stopwatch,
    accel_notice,
    age,
    as_data,
    emit_document,
    image_rows,
    note,
    pick_format,
    print_pairs,
    print_table,
    progress_events,
    spinner,
    step,
)
from cargobay.cli.session import connect, current_paths, make_client, probe, start_daemon
from cargobay.errors import CargoBayError, DaemonError, ImageError, InvalidInput

__all__ = ["app", "main"]

app = new_app(
    "cargobay",
    "CargoBay: isolated workloads in lightweight VMs. Commands talk to cargobayd, which "
    "is started when it is not running.",
)
daemon_app = new_app("daemon", "Start, stop and inspect cargobayd.")
vm_app = new_app("vm", "Create, run and remove machines.")
image_app = new_app("image", "Build, list and remove guest images.")
spice_app = new_app("spice", "Talk to a VM's Spice server.")
app.add_typer(daemon_app, name="daemon")
app.add_typer(vm_app, name="vm")
app.add_typer(image_app, name="image")
app.add_typer(spice_app, name="spice")
app.add_typer(host_verbs.app, name="host")
app.add_typer(scenario_verbs.app, name="test")
app.add_typer(container_verbs.app)  # engine, images, containers (top-level groups)
app.add_typer(compose_verbs.app, name="compose")
app.add_typer(app_verbs.app, name="app")
app.add_typer(config_verbs.app, name="config")
app.add_typer(plugin_verbs.app, name="plugins")
app.command("docker-socket")(docker_socket_verbs.docker_socket)
app.command("mcp")(mcp_verbs.mcp)
app.command("ui")(ui_verbs.ui)
verbs.register(vm_app, aiva=False)


# -- daemon -------------------------------------------------------------------------------


@daemon_app.command("start")
def daemon_start() -> None:
    """Start cargobayd in the background (nothing happens when it already runs)."""
    paths = current_paths()
    t0 = time.monotonic()
    info, started = start_daemon(paths, make_client(paths), quiet=True)
    if started:
        note(
            f"started cargobayd (pid {info.get('pid')}) in {time.monotonic() - t0:.2f} s; "
            f"socket {paths.daemon_socket}, log {paths.daemon_log}"
        )
    else:
        note(f"cargobayd is already running (pid {info.get('pid')})")


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@daemon_app.command("stop")
def daemon_stop(
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for it to exit.")
    ] = 15.0,
) -> None:
    """Stop cargobayd. Running machines keep running and are adopted by the next daemon."""
    paths = current_paths()
    client = make_client(paths)
    info = probe(client)
    if info is None:
        note("cargobayd is not running")
        return
    pid = info.get("pid")
    client.shutdown_daemon()
    deadline = time.monotonic() + timeout
    while probe(client) is not None or _pid_alive(pid):
        if time.monotonic() > deadline:
            raise DaemonError(
                f"cargobayd (pid {pid}) did not exit within {timeout:g} s; "
                f"see {paths.daemon_log}, or kill it"
            )
        time.sleep(0.1)
    note(f"stopped cargobayd (pid {pid}); running machines keep running")


@daemon_app.command("status")
def daemon_status(fmt: verbs.FormatOpt = None, json_flag: verbs.JsonOpt = False) -> None:
    """Show whether cargobayd runs, its pid, version, accelerator and paths (exit 5 when
    it is not running)."""
    out = pick_format(fmt, json_flag)
    paths = current_paths()
    info = probe(make_client(paths))
    data: dict[str, Any] = {"running": info is not None, "socket": str(paths.daemon_socket)}
    if info is not None:
        data.update(as_data(info))
    if out is not Format.TABLE:
        emit_document(data, out)
    elif info is None:
        note(f"cargobayd is not running (socket {paths.daemon_socket})")
    else:
        uptime = info.get("uptime")
        print_pairs(
            [
                ("running", f"yes, pid {info.get('pid')}"),
                ("version", f"{info.get('version')} (API v{info.get('api_version')})"),
                ("uptime", f"{uptime:.0f} s" if isinstance(uptime, int | float) else "-"),
                ("accel", str(info.get("accel") or "-")),
                ("backends", ", ".join(map(str, info.get("backends") or [])) or "-"),
                ("socket", str(paths.daemon_socket)),
                ("log", str(paths.daemon_log)),
            ]
        )
    if info is None:
        raise typer.Exit(EXIT_DAEMON)


# -- spice --------------------------------------------------------------------------------


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"bad Spice address {text!r}: use HOST:PORT, like 127.0.0.1:5900")
    return host, int(port)


@spice_app.command("probe")
def spice_probe(
    address: Annotated[str, typer.Argument(help="HOST:PORT of the Spice server.")],
    password_file: Annotated[
        Path | None, typer.Option("--password-file", help="File holding the Spice password.")
    ] = None,
    tls: Annotated[bool, typer.Option("--tls", help="ADDRESS is the server's tls-port.")] = False,
    ca: Annotated[Path | None, typer.Option("--ca", help="CA certificate for --tls.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds for each step.")] = 10.0,
    fmt: verbs.FormatOpt = None,
    json_flag: verbs.JsonOpt = False,
) -> None:
    """Link the main channel, list the server's channels, link each, and show how long
    every step took."""
    out = pick_format(fmt, json_flag)
    host, port = _host_port(address)
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text().rstrip("\n")
        except OSError as err:
            raise InvalidInput(
                f"cannot read --password-file {password_file}: {err.strerror}"
            ) from err
    result = connect().spice_probe(
        host,
        port,
        password=password,
        tls=tls,
        ca_file=str(ca.absolute()) if ca else None,
        timeout=timeout,
    )
    if out is not Format.TABLE:
        emit_document(result, out)
        return
    print_pairs(
        [
            (
                "server",
                f"{host}:{port}{' (TLS)' if tls else ''}, session {result.get('session_id')}",
            ),
            ("tcp connect", f"{result.get('tcp_connect_ms', 0):.1f} ms"),
            ("main linked", f"{result.get('link_main_ms', 0):.1f} ms"),
            ("MAIN_INIT at", f"{result.get('main_init_at_ms', 0):.1f} ms"),
            ("channels at", f"{result.get('channels_list_at_ms', 0):.1f} ms"),
            ("all linked at", f"{result.get('all_linked_at_ms', 0):.1f} ms"),
        ]
    )
    links = result.get("channel_link_ms") or {}
    errors = result.get("channel_errors") or {}
    rows = []
    for name in result.get("channels") or []:
        if name in errors:
            rows.append([name, "failed", str(errors[name])])
        elif name in links:
            rows.append([name, f"{links[name]:.1f} ms", ""])
        else:
            rows.append([name, "main", ""])
    print_table(["CHANNEL", "LINK", "ERROR"], rows)


# -- images -------------------------------------------------------------------------------


def _image_summary(img: Mapping[str, Any]) -> str:
    rootfs = img.get("rootfs") or {}
    size = rootfs.get("size")
    size_text = format_mib(round(size / 2**20)) if isinstance(size, int) else "?"
    took = img.get("build_seconds")
    took_text = f" in {took:.0f} s" if isinstance(took, int | float) else ""
    return (
        f"kernel {img.get('kernel_version', '?')}, rootfs {size_text}; "
        f"built {age(img.get('built_at'))} ago{took_text}"
    )


class KernelChoice(StrEnum):
    debian = "debian"
    minimal = "minimal"


@image_app.command("build")
def image_build(
    name: Annotated[
        str | None,
        typer.Argument(help="Image name (default: default, or debian with --kernel debian)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Build again even if up to date.")] = False,
    kernel: Annotated[
        KernelChoice | None,
        typer.Option(
            "--kernel",
            help="minimal: our own kernel, compiled from linux-source-6.1 (about 10 minutes "
            "the first time, then cached); debian: Debian's cloud kernel.  Default: the "
            "image's recipe (default: minimal; debian and docker: debian).",
        ),
    ] = None,
) -> None:
    """Build a guest image (kernel + debootstrap rootfs + the guest agent).

    An image that is already built from the same recipe is kept unless --force."""
    if name is None:
        name = "debian" if kernel is KernelChoice.debian else "default"
    client = connect()
    t0 = time.monotonic()
    events = client.build_image(name, force=force, kernel=kernel.value if kernel else None)
    done = progress_events(events, f"image {name}")
    if done is None:
        raise ImageError(
            f"the build of image {name!r} ended without a result; see the daemon log "
            "(`cargobay daemon status` shows where it is)"
        )
    img = as_data(done.get("image") or {})
    note(f"image {name} is ready ({time.monotonic() - t0:.2f} s): {_image_summary(img)}")


@image_app.command("ls")
def image_ls(fmt: verbs.FormatOpt = None, json_flag: verbs.JsonOpt = False) -> None:
    """List built images."""
    out = pick_format(fmt, json_flag)
    images = [as_data(i) for i in connect().list_images()]
    images.sort(key=lambda i: str(i.get("name", "")))
    if out is Format.TABLE:
        print_table(IMAGE_HEADERS, image_rows(images))
    else:
        emit_document(images, out)


@image_app.command("rm")
def image_rm(name: Annotated[str, typer.Argument(help="Image name.")]) -> None:
    """Remove a built image (refused while a machine uses it)."""
    connect().delete_image(name)
    note(f"removed image {name}")


# -- run ----------------------------------------------------------------------------------


@app.command("run", epilog=EXIT_CODES_HELP)
def run(
    command: verbs.CmdArg,
    image: Annotated[str, typer.Option("--image", help="Image to boot.")] = "default",
    rm: Annotated[bool, typer.Option("--rm", help="Remove the machine afterwards.")] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Machine name (default run-XXXXXX).")
    ] = None,
    cpus: verbs.CpusOpt = None,
    memory: verbs.MemoryOpt = None,
    disk: verbs.DiskOpt = None,
    ports: verbs.PortsOpt = None,
    env: verbs.EnvOpt = None,
    workdir: verbs.WorkdirOpt = None,
    tty: verbs.TtyOpt = False,
    interactive: verbs.StdinOpt = False,
    timeout: verbs.TimeoutOpt = None,
    boot_timeout: verbs.BootTimeoutOpt = 120.0,
) -> None:
    """Boot a fresh machine, run a command in it and pass its exit code through.

    Step timings go to stderr, the command's output to stdout."""
    spec = verbs.resources(cpus, memory, disk, ports, None)
    env_map = parse_env(env or ())
    stdin = sys.stdin.buffer.read() if interactive else None
    name = name or f"run-{secrets.token_hex(3)}"
    client = connect()
    sw = Stopwatch()
    m = verbs.as_machine(client.create_machine(name=name, image=image, start=False, **spec))
    config = m.get("config") or {}
    step(
        "create",
        sw.lap(),
        f"{name}: image {config.get('image', image)}, {config.get('cpus', '?')} vCPU, "
        f"{format_mib(config.get('memory_mb'))}",
    )
    code = 1
    try:
        with spinner(f"booting {name} ..."):
            m = verbs.as_machine(client.start(name, boot_timeout=boot_timeout))
        runtime = m.get("runtime") or {}
        step("boot", sw.lap(), f"{name}: {runtime.get('accel') or '?'}, guest agent ready")
        if notice := accel_notice(m):
            note(f"note: {notice}")
        code = verbs.exec_command(
            client, name, command, env=env_map, cwd=workdir, stdin=stdin, tty=tty, timeout=timeout
        )
        step("exec", sw.lap(), f"{command_text(command)} -> exit {code}")
    finally:
        if rm:
            _remove_quietly(client, name, sw)
    step("total", sw.total())
    if not rm:
        note(f"{name} is still running; remove it with `cargobay vm rm --force {name}`")
    raise typer.Exit(code)


def _remove_quietly(client: Any, name: str, sw: Stopwatch) -> None:
    """--rm cleanup: never hides the error that got us here, and says when it fails."""
    sw.lap()
    try:
        client.delete(name, force=True)
    except CargoBayError as err:
        note(f"warning: could not remove {name}: {err}")
        return
    step("remove", sw.lap(), name)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
