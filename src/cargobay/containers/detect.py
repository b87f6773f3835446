"""Find the Docker Engine the way the Docker CLI does, and describe it.

Where the endpoint comes from, in the CLI's order (first hit wins):

1. ``DOCKER_HOST``;
2. the context named by ``DOCKER_CONTEXT`` or by ``currentContext`` in
   ``$DOCKER_CONFIG/config.json`` (``~/.docker``): its endpoint is ``Endpoints.docker.Host``
   in ``contexts/meta/<sha256(name)>/meta.json``; ``default`` means "no context";
3. the platform's sockets: on Linux ``/var/run/docker.sock`` then the rootless socket
   ``$XDG_RUNTIME_DIR/docker.sock`` (``/run/user/<uid>/docker.sock``); on macOS also
   Docker Desktop's ``~/.docker/run/docker.sock``, Colima's and OrbStack's; on Windows
   the named pipe ``npipe:////./pipe/docker_engine``.

The path logic is pure (environment, home and platform are parameters) so every branch
is unit-tested here on Linux.  :func:`detect` then pings the endpoint and reports the
version, API version, OS, storage driver, compose availability and the free space of
the Docker root directory; with no engine it raises :class:`EngineUnavailable` whose
message says how to get one on this OS.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from cargobay.errors import EngineUnavailable

__all__ = [
    "ComposeAvailability",
    "EngineEndpoint",
    "EngineReport",
    "candidate_endpoints",
    "context_endpoint",
    "detect",
    "install_hint",
    "resolve_endpoint",
]

Source = Literal[
    "DOCKER_HOST", "context", "socket", "rootless", "npipe", "wsl2", "argument", "config"
]
WINDOWS_PIPE = "npipe:////./pipe/docker_engine"
WSL2_TCP = "tcp://127.0.0.1:2375"
LOW_DISK = 2 * 1024**3
"""Below this much free space in the Docker root directory, ``disk_low`` is set: pulling
the images of one bot stack (a few hundred MB to a few GB) may not fit."""
CLI_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


@dataclass(frozen=True, slots=True)
class EngineEndpoint:
    url: str
    source: Source
    context: str | None = None

    @property
    def socket_path(self) -> Path | None:
        """The Unix socket path for ``unix://`` URLs."""
        if self.url.startswith("unix://"):
            return Path(self.url[len("unix://") :])
        return None


def docker_config_dir(env: Mapping[str, str], home: Path) -> Path:
    configured = env.get("DOCKER_CONFIG")
    return Path(configured) if configured else home / ".docker"


def current_context(env: Mapping[str, str], home: Path) -> str | None:
    """The context name in force (``DOCKER_CONTEXT``, else config.json), ``None`` for
    ``default``; an unreadable config.json is ignored like the CLI ignores a missing one."""
    name = env.get("DOCKER_CONTEXT")
    if not name:
        config = docker_config_dir(env, home) / "config.json"
        try:
            name = json.loads(config.read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            name = None
    if not name or name == "default":
        return None
    return str(name)


def context_endpoint(name: str, env: Mapping[str, str], home: Path) -> str:
    """The docker endpoint of context ``name`` (raises if the context is unusable)."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = docker_config_dir(env, home) / "contexts" / "meta" / digest / "meta.json"
    try:
        data = json.loads(meta.read_text())
        host = data["Endpoints"]["docker"]["Host"]
    except FileNotFoundError as err:
        raise EngineUnavailable(
            f"Docker context {name!r} does not exist (no {meta}); "
            f"list them with `docker context ls` or unset DOCKER_CONTEXT"
        ) from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EngineUnavailable(
            f"Docker context {name!r} is unreadable ({meta}: {err!r}); recreate it with "
            "`docker context create`"
        ) from err
    return str(host)


def candidate_endpoints(
    env: Mapping[str, str],
    home: Path,
    *,
    system: str | None = None,
    uid: int | None = None,
) -> list[EngineEndpoint]:
    """Where to look, best first.  ``DOCKER_HOST`` or a context is the only candidate
    when set (the CLI does not fall back from an explicit choice)."""
    system = system or sys.platform
    host = env.get("DOCKER_HOST")
    if host:
        return [EngineEndpoint(host, "DOCKER_HOST")]
    context = current_context(env, home)
    if context is not None:
        return [EngineEndpoint(context_endpoint(context, env, home), "context", context)]
    if system == "win32":
        # Docker Desktop's pipe; else a dockerd inside WSL 2 published on loopback
        # (`dockerd -H unix:///var/run/docker.sock -H tcp://127.0.0.1:2375`): WSL 2
        # forwards localhost, while its Unix sockets are not reachable from Windows
        return [EngineEndpoint(WINDOWS_PIPE, "npipe"), EngineEndpoint(WSL2_TCP, "wsl2")]
    found = [EngineEndpoint("unix:///var/run/docker.sock", "socket")]
    if system == "darwin":
        for path in (
            home / ".docker" / "run" / "docker.sock",  # Docker Desktop
            home / ".colima" / "default" / "docker.sock",
            home / ".orbstack" / "run" / "docker.sock",
            home / ".rd" / "docker.sock",  # Rancher Desktop
        ):
            found.append(EngineEndpoint(f"unix://{path}", "socket"))
        return found
    runtime = env.get("XDG_RUNTIME_DIR")
    uid = os.getuid() if uid is None else uid
    rootless = [Path(runtime) / "docker.sock"] if runtime else []
    if uid != 0:
        rootless.append(Path(f"/run/user/{uid}/docker.sock"))
    seen: set[str] = set()
    for path in rootless:
        if str(path) not in seen:
            seen.add(str(path))
            found.append(EngineEndpoint(f"unix://{path}", "rootless"))
    return found


def _windows_pipe_exists(url: str) -> bool:
    """Whether a named pipe exists (only meaningful on Windows)."""
    pipe = "\\\\.\\pipe\\" + url.rsplit("/", 1)[-1]
    try:
        return os.path.exists(pipe)
    except OSError as err:  # ERROR_PIPE_BUSY: every instance busy, but it exists
        return getattr(err, "winerror", None) == 231


def resolve_endpoint(
    url: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    system: str | None = None,
    pipe_exists: Callable[[str], bool] = _windows_pipe_exists,
) -> EngineEndpoint:
    """The endpoint to use: ``url`` if given; an explicit DOCKER_HOST/context; else the
    first platform socket (or Windows pipe) that exists, then a WSL 2 dockerd on
    loopback; else the first candidate, so errors name it."""
    if url:
        return EngineEndpoint(url, "argument")
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    candidates = candidate_endpoints(env, home, system=system)
    for candidate in candidates:
        if candidate.source in ("DOCKER_HOST", "context", "wsl2"):
            return candidate
        if candidate.source == "npipe":
            if pipe_exists(candidate.url):
                return candidate
            continue
        path = candidate.socket_path
        if path is not None and path.is_socket():
            return candidate
    return candidates[0]


def _os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def install_hint(system: str | None = None, os_release: Mapping[str, str] | None = None) -> str:
    """How to get a Docker Engine on this OS, in one paragraph."""
    system = system or sys.platform
    if system == "darwin":
        return (
            "macOS has no native Docker Engine: install Docker Desktop "
            "(https://docs.docker.com/desktop/), or Colima (`brew install colima docker && "
            "colima start`), or OrbStack, then run this again"
        )
    if system == "win32":
        return (
            "on Windows, install Docker Desktop with the WSL 2 backend, or install WSL 2 "
            "(`wsl --install -d Debian`) and inside it `sudo apt-get install docker.io` and "
            "start it with `sudo service docker start`"
        )
    release = _os_release() if os_release is None else os_release
    ids = {release.get("ID", "")} | set(release.get("ID_LIKE", "").split())
    start = "then start it with `sudo systemctl enable --now docker` (or `sudo dockerd &`)"
    if ids & {"debian", "ubuntu"}:
        install = "`sudo apt-get install docker.io`"
    elif ids & {"fedora", "rhel", "centos"}:
        install = "`sudo dnf install moby-engine` (or docker-ce from Docker's repository)"
    elif "arch" in ids:
        install = "`sudo pacman -S docker`"
    elif ids & {"opensuse", "suse"}:
        install = "`sudo zypper install docker`"
    else:
        install = "Docker Engine from your distribution (https://docs.docker.com/engine/install/)"
    return (
        f"install {install}, {start}; to use it without root add yourself to the docker "
        "group (`sudo usermod -aG docker $USER`, then log in again) or run rootless Docker "
        "(`dockerd-rootless-setuptool.sh install`)"
    )


class ComposeAvailability(BaseModel):
    builtin: bool = True
    """CargoBay's own compose engine (``cargobay compose``) is always there."""
    docker_compose_v1: str | None = None
    """Path of a ``docker-compose`` binary (the Python 1.x one or a v2 standalone)."""
    docker_cli_plugin: str | None = None
    """Path of the ``docker compose`` CLI plugin."""


def compose_availability(env: Mapping[str, str], home: Path) -> ComposeAvailability:
    plugin_dirs = [docker_config_dir(env, home) / "cli-plugins", *map(Path, CLI_PLUGIN_DIRS)]
    plugin = next(
        (str(d / "docker-compose") for d in plugin_dirs if (d / "docker-compose").is_file()), None
    )
    return ComposeAvailability(
        docker_compose_v1=shutil.which("docker-compose", path=env.get("PATH")),
        docker_cli_plugin=plugin,
    )


class EngineReport(BaseModel):
    """What ``cargobay engine info`` shows."""

    url: str
    source: str
    context: str | None = None
    ping: str
    version: str
    api_version: str
    min_api_version: str | None = None
    os: str
    arch: str
    kernel: str | None = None
    operating_system: str | None = None
    storage_driver: str | None = None
    cgroup_version: str | None = None
    root_dir: str | None = None
    rootless: bool = False
    containers: int = 0
    containers_running: int = 0
    images: int = 0
    cpus: int | None = None
    memory: int | None = None
    disk_free: int | None = None
    """Free bytes on the filesystem of the Docker root directory (when it is local)."""
    disk_total: int | None = None
    disk_low: bool = False
    """Less than :data:`LOW_DISK` free."""
    compose: ComposeAvailability


def _disk(root: str | None, local: bool) -> tuple[int | None, int | None]:
    if not root or not local:
        return None, None
    try:
        usage = shutil.disk_usage(root)
    except OSError:
        return None, None
    return usage.free, usage.total


def unavailable(endpoint: EngineEndpoint, err: BaseException) -> EngineUnavailable:
    """The error for an engine that does not answer, with what to do about it."""
    detail = str(err)
    path = endpoint.socket_path
    if "Permission denied" in detail or "PermissionError" in detail:
        what = (
            f"permission denied on {endpoint.url}: add yourself to the docker group "
            "(`sudo usermod -aG docker $USER`, then log in again) or use rootless Docker"
        )
    elif path is not None and not path.exists():
        what = f"no Docker Engine found (nothing at {path}, from {endpoint.source}); " + (
            install_hint()
        )
    else:
        what = (
            f"the Docker Engine at {endpoint.url} (from {endpoint.source}) does not answer "
            f"({detail}); is dockerd running? " + install_hint()
        )
    return EngineUnavailable(what)


async def detect(url: str | None = None, *, endpoint: EngineEndpoint | None = None) -> EngineReport:
    """Find, ping and describe the engine (at ``url`` or ``endpoint`` if given);
    :class:`EngineUnavailable` says how to fix it."""
    from cargobay.containers.engine import DockerEngine

    endpoint = endpoint or resolve_endpoint(url)
    try:
        engine = await DockerEngine.connect(endpoint.url)
    except EngineUnavailable as err:
        raise unavailable(endpoint, err) from err
    async with engine:
        ping = await engine.ping()
        version = await engine.version()
        info = await engine.info()
    options = [str(o) for o in info.get("SecurityOptions") or []]
    root = info.get("DockerRootDir")
    local = endpoint.url.startswith("unix://") and (
        endpoint.socket_path is None or endpoint.socket_path.exists()
    )
    free, total = _disk(root, local)
    return EngineReport(
        url=endpoint.url,
        source=endpoint.source,
        context=endpoint.context,
        ping=ping,
        version=str(version.get("Version", "")),
        api_version=str(version.get("ApiVersion", "")),
        min_api_version=version.get("MinAPIVersion"),
        os=str(version.get("Os", "")),
        arch=str(version.get("Arch", "")),
        kernel=version.get("KernelVersion"),
        operating_system=info.get("OperatingSystem"),
        storage_driver=info.get("Driver"),
        cgroup_version=info.get("CgroupVersion"),
        root_dir=root,
        rootless=any("rootless" in option for option in options),
        containers=int(info.get("Containers") or 0),
        containers_running=int(info.get("ContainersRunning") or 0),
        images=int(info.get("Images") or 0),
        cpus=info.get("NCPU"),
        memory=info.get("MemTotal"),
        disk_free=free,
        disk_total=total,
        disk_low=free is not None and free < LOW_DISK,
        compose=compose_availability(os.environ, Path.home()),
    )
