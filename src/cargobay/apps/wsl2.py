"""The wsl.exe command layer for the wsl2_docker deploy mode (Windows only).

WSL2 serves as the Docker host when Docker Desktop is absent: the launcher lists the
distributions, checks Docker inside one, runs ``docker compose`` there, and translates
paths between Windows and the distribution.  The logic here is plain Python and tested on
Linux; the command runner is injected (:func:`subprocess_runner` on Windows), and the app
service registers this mode only when ``sys.platform == "win32"`` (:func:`available`).

API::

    wsl = Wsl(runner)                                  # runner: argv -> CommandResult
    distros = await wsl.list_distributions()           # `wsl.exe -l -v`, UTF-16LE parsed
    status = await wsl.docker_status("Ubuntu")         # installed/running/version/compose
    result = await wsl.compose("Ubuntu", r"C:\\MAI\\inst1", ["up", "-d"])
    result = await wsl.run("Ubuntu", ["uname", "-r"])
    windows_to_wsl(r"C:\\Users\\me") == "/mnt/c/Users/me"
    wsl_to_windows("/home/me", "Ubuntu") == r"\\\\wsl.localhost\\Ubuntu\\home\\me"
    windows_build_supports_wsl2("10.0.19045")          # Windows 10 2004 (build 19041)+
    portproxy_argv(8095, "172.20.1.2")                 # netsh line to expose a port on the LAN
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from cargobay.errors import InvalidInput, WslError

WSL_EXE = "wsl.exe"
WSL2_MIN_BUILD = 19041
_DISTRO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NO_DISTROS = ("has no installed distributions", "没有已安装的分发")


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: bytes
    stderr: bytes = b""


Runner = Callable[[Sequence[str]], Awaitable[CommandResult]]


async def subprocess_runner(argv: Sequence[str]) -> CommandResult:
    """Run a command for real (the runner used on Windows)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as err:
        raise WslError(f"cannot run {argv[0]}: {err}; is WSL installed?") from err
    out, err_out = await proc.communicate()
    return CommandResult(proc.returncode or 0, out, err_out)


def available() -> bool:
    """The wsl2_docker mode exists only on Windows."""
    return sys.platform == "win32"


def decode_wsl_output(data: bytes) -> str:
    """wsl.exe's own messages are UTF-16LE (often without a BOM); programs run inside
    write UTF-8.  Decide by the BOM or by NULs in the odd bytes; normalise newlines."""
    if data.startswith(b"\xff\xfe"):
        text = data[2:].decode("utf-16-le", "replace")
    elif len(data) >= 2 and data[1::2].count(0) >= len(data) // 4:
        text = data.decode("utf-16-le", "replace")
    else:
        text = data.decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


class Distro(BaseModel):
    name: str
    state: str
    """As wsl.exe says it (Running, Stopped, Installing, Converting...; localised)."""
    version: Literal[1, 2]
    default: bool = False


def parse_list_verbose(text: str) -> list[Distro]:
    """Parse ``wsl -l -v``: a header line (localised, ignored) then
    ``[*] NAME STATE VERSION`` rows, the ``*`` marking the default."""
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines or any(marker in text for marker in _NO_DISTROS):
        return []
    distros: list[Distro] = []
    for line in lines[1:]:
        default = line.lstrip().startswith("*")
        fields = line.strip().lstrip("*").split()
        if len(fields) < 3 or fields[-1] not in ("1", "2"):
            raise WslError(f"unexpected line in `wsl -l -v` output: {line!r}")
        name = " ".join(fields[:-2])
        distros.append(
            Distro(
                name=name,
                state=fields[-2],
                version=int(fields[-1]),  # type: ignore[arg-type]
                default=default,
            )
        )
    return distros


def check_distro(name: str) -> str:
    if not _DISTRO.match(name):
        raise InvalidInput(f"not a WSL distribution name: {name!r}")
    return name


def windows_to_wsl(path: str) -> str:
    """A Windows path as the distribution sees it: ``C:\\x`` → ``/mnt/c/x``; a
    ``\\\\wsl$\\Distro\\p`` or ``\\\\wsl.localhost\\Distro\\p`` path → ``/p``; relative
    paths get forward slashes.  Other UNC paths have no WSL equivalent."""
    if not path:
        raise InvalidInput("empty path")
    unified = path.replace("\\", "/")
    drive = re.match(r"^([A-Za-z]):(/.*)?$", unified)
    if drive:
        rest = (drive[2] or "/").rstrip("/")
        return f"/mnt/{drive[1].lower()}{rest}" if rest else f"/mnt/{drive[1].lower()}"
    unc = re.match(r"^//(wsl\$|wsl\.localhost)/([^/]+)(/.*)?$", unified, re.IGNORECASE)
    if unc:
        return unc[3] or "/"
    if unified.startswith("//"):
        raise InvalidInput(f"{path}: a network path cannot be reached from WSL; copy it first")
    if re.match(r"^[A-Za-z]:[^/]", unified):
        raise InvalidInput(f"{path}: a drive-relative path; give the full path")
    return unified


def wsl_to_windows(path: str, distro: str) -> str:
    """A path inside ``distro`` as Windows sees it: ``/mnt/c/x`` → ``C:\\x``, any other
    absolute path → ``\\\\wsl.localhost\\<distro>\\...``."""
    check_distro(distro)
    if not path.startswith("/"):
        raise InvalidInput(f"{path}: not an absolute path inside the distribution")
    mnt = re.match(r"^/mnt/([a-z])(/.*)?$", path)
    if mnt:
        return f"{mnt[1].upper()}:" + ((mnt[2] or "/").replace("/", "\\"))
    return f"\\\\wsl.localhost\\{distro}" + path.replace("/", "\\")


def windows_build_supports_wsl2(version: str) -> bool:
    """True for Windows 10 build 19041 (2004) and later, from ``platform.version()``."""
    match = re.match(r"^10\.0\.(\d+)", version)
    return bool(match) and int(match[1]) >= WSL2_MIN_BUILD  # type: ignore[index]


def portproxy_argv(port: int, wsl_ip: str, *, listen: str = "0.0.0.0") -> list[str]:
    """The netsh command that exposes a port of the distribution on the LAN.  WSL2 already
    forwards ``localhost`` ports to Windows (localhostForwarding, on by default); other
    machines need this proxy (run as administrator) and a firewall rule."""
    if not 1 <= port <= 65535:
        raise InvalidInput(f"port {port} out of range")
    if not re.match(r"^\d{1,3}(\.\d{1,3}){3}$", wsl_ip):
        raise InvalidInput(f"not an IPv4 address: {wsl_ip!r}")
    return [
        "netsh",
        "interface",
        "portproxy",
        "add",
        "v4tov4",
        f"listenport={port}",
        f"listenaddress={listen}",
        f"connectport={port}",
        f"connectaddress={wsl_ip}",
    ]


class DockerStatus(BaseModel):
    installed: bool
    running: bool
    version: str | None = None
    compose: Literal["v2", "v1"] | None = None
    message: str = ""


class Wsl:
    """wsl.exe, through an injected runner."""

    def __init__(self, runner: Runner = subprocess_runner, exe: str = WSL_EXE) -> None:
        self._runner = runner
        self.exe = exe

    async def _wsl(self, args: Sequence[str]) -> CommandResult:
        return await self._runner([self.exe, *args])

    async def list_distributions(self) -> list[Distro]:
        result = await self._wsl(["--list", "--verbose"])
        text = decode_wsl_output(result.stdout + result.stderr)
        if result.returncode != 0:
            if any(marker in text for marker in _NO_DISTROS):
                return []
            raise WslError(f"`wsl --list --verbose` failed ({result.returncode}): {text.strip()}")
        return parse_list_verbose(text)

    async def default_distribution(self) -> Distro | None:
        return next((d for d in await self.list_distributions() if d.default), None)

    async def run(
        self,
        distro: str,
        argv: Sequence[str],
        *,
        user: str | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` inside ``distro`` (no shell: arguments pass as they are)."""
        if not argv:
            raise InvalidInput("nothing to run")
        args = ["--distribution", check_distro(distro)]
        if user is not None:
            if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", user):
                raise InvalidInput(f"not a user name: {user!r}")
            args += ["--user", user]
        if cwd is not None:
            args += ["--cd", cwd]
        return await self._wsl([*args, "--exec", *argv])

    async def docker_status(self, distro: str) -> DockerStatus:
        version = await self.run(distro, ["docker", "version", "--format", "{{.Server.Version}}"])
        out = decode_wsl_output(version.stdout).strip()
        err = decode_wsl_output(version.stderr).strip()
        if version.returncode in (126, 127) or "not found" in err.lower():
            return DockerStatus(
                installed=False, running=False, message=f"Docker is not installed in {distro}"
            )
        if version.returncode != 0 or not out:
            return DockerStatus(
                installed=True, running=False, message=err or "the Docker daemon does not answer"
            )
        compose: Literal["v2", "v1"] | None = None
        if (await self.run(distro, ["docker", "compose", "version"])).returncode == 0:
            compose = "v2"
        elif (await self.run(distro, ["docker-compose", "version"])).returncode == 0:
            compose = "v1"
        return DockerStatus(installed=True, running=True, version=out, compose=compose)

    async def compose(
        self,
        distro: str,
        project_dir: str,
        args: Sequence[str],
        *,
        compose_file: str = "docker-compose.yml",
    ) -> CommandResult:
        """``docker compose`` (or docker-compose v1) in ``distro`` for the project in the
        Windows directory ``project_dir``; WslError with compose's output when it fails."""
        status = await self.docker_status(distro)
        if not status.running:
            raise WslError(f"{distro}: {status.message}")
        if status.compose is None:
            raise WslError(f"{distro}: neither `docker compose` nor docker-compose is installed")
        inside = windows_to_wsl(project_dir)
        base = ["docker", "compose"] if status.compose == "v2" else ["docker-compose"]
        argv = [*base, "--project-directory", inside, "-f", f"{inside}/{compose_file}", *args]
        result = await self.run(distro, argv, cwd=inside)
        if result.returncode != 0:
            text = decode_wsl_output(result.stderr or result.stdout).strip()
            raise WslError(f"{distro}: `{' '.join(base + list(args))}` failed: {text}")
        return result

    async def ip_address(self, distro: str) -> str:
        """The distribution's first IPv4 address (for :func:`portproxy_argv`)."""
        result = await self.run(distro, ["hostname", "-I"])
        for word in decode_wsl_output(result.stdout).split():
            if re.match(r"^\d{1,3}(\.\d{1,3}){3}$", word):
                return word
        raise WslError(f"{distro}: no IPv4 address in `hostname -I`")
