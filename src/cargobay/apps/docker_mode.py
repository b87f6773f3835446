"""Docker mode: the MaiBot stack's compose file, generated from an instance, and its
lifecycle through the compose engine (:class:`ComposeService`).

The generated file follows MaiBot's own ``docker-compose.yml`` (MaiM-with-u/MaiBot):

- ``core`` (``sengokucola/maibot``): WebUI on container port 8001 (published as
  ``webui_port``, 18001 by default), ``TZ``, ``WEBUI_HOST=0.0.0.0``, EULA/privacy
  acknowledgements when given; ``./docker-config/mmc`` -> ``/MaiMBot/config`` (bot_config.toml,
  model_config.toml), ``./data/MaiMBot`` -> ``/MaiMBot/data``, plugins and logs below it;
- ``napcat`` (``mlikiowa/napcat-docker``): WebUI 6099, ``NAPCAT_UID``/``NAPCAT_GID``;
  ``./docker-config/napcat`` -> ``/app/napcat/config``, ``./data/qq`` -> ``/app/.config/QQ``,
  the shared ``./data/MaiMBot``;
- ``adapters`` (``unclas/maimbot-adapter``): ``./docker-config/adapters/config.toml`` ->
  ``/adapters/config.toml``, ``./data/adapters`` -> ``/adapters/data``; port 8095 only
  published when ``adapter_port`` is set (as upstream, where it is commented out);
- ``sqlite-web`` (optional, ``coleifer/sqlite-web``): 8080 published as 8120,
  ``SQLITE_DATABASE=MaiMBot/MaiBot.db`` over ``./data/MaiMBot`` -> ``/data/MaiMBot``;
- every service ``restart: always`` on the bridge network ``maim_bot``.

Upstream fixes ``container_name`` (maim-bot-core ...), which allows one stack per host;
here containers are named by compose from the project (``maibot-<instance>``), and the
network becomes ``maibot-<instance>_maim_bot``: one network per instance (the RFC's open
question 4), so several instances run side by side.  Image names come from the instance's
:class:`StackConfig`, so a mirror (or a test's stand-in images) can be used.

The file is written atomically and only after the compose loader accepted it, so a bad
configuration leaves the previous file (and the running stack) as they were.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cargobay.apps.models import Instance, StackConfig
from cargobay.containers.compose.loader import LoadedProject, load_project
from cargobay.errors import AppInputError, ComposeFileError

__all__ = [
    "ADAPTER_CONFIG",
    "COMPOSE_FILE",
    "WslStack",
    "compose_document",
    "load_stack",
    "network_name",
    "prepare_directories",
    "project_name",
    "write_compose",
]

COMPOSE_FILE = "docker-compose.yml"
NETWORK = "maim_bot"
ADAPTER_CONFIG = "docker-config/adapters/config.toml"

_DEFAULT_ADAPTER_CONFIG = """\
# MaiBot-Napcat-Adapter configuration (written by cargobay; edit with `cargobay app config`)
[napcat_server]
host = "0.0.0.0"   # NapCat connects here (reverse WebSocket)
port = 8095

[maibot_server]
host = "core"      # the core service on the instance's network
port = 8000
"""

_DEFAULT_BOT_CONFIG = """\
# MaiBot bot_config.toml (written by cargobay; edit with `cargobay app config`)
[inner]
version = "0.0.0"

[bot]
nickname = "MaiMai"
"""


def project_name(instance: Instance) -> str:
    return f"maibot-{instance.name}"


def network_name(instance: Instance) -> str:
    return f"{project_name(instance)}_{NETWORK}"


def _port(bind: str, host_port: int | None, container_port: int) -> list[str]:
    return [] if host_port is None else [f"{bind}:{host_port}:{container_port}"]


def compose_document(instance: Instance) -> dict[str, Any]:
    """The compose document (compose file format 3.8, which docker-compose 1.29 reads)."""
    s: StackConfig = instance.stack
    tz = f"TZ={s.timezone}"
    core_env = [tz, "WEBUI_HOST=0.0.0.0"]
    if s.eula_agree:
        core_env.append(f"EULA_AGREE={s.eula_agree}")
    if s.privacy_agree:
        core_env.append(f"PRIVACY_AGREE={s.privacy_agree}")
    core_env += [f"{k}={v}" for k, v in sorted(s.environment.items())]
    labels = {"org.cargobay.app.instance": instance.id, "org.cargobay.app.name": instance.name}

    def service(image: str, **rest: Any) -> dict[str, Any]:
        return {
            "image": image,
            "restart": s.restart,
            "networks": [NETWORK],
            "labels": dict(labels),
            **rest,
        }

    services: dict[str, Any] = {
        "core": service(
            s.core_image,
            environment=core_env,
            ports=_port(s.bind_address, s.webui_port, 8001),
            volumes=[
                "./docker-config/mmc:/MaiMBot/config",
                "./data/MaiMBot:/MaiMBot/data",
                "./data/MaiMBot/plugins:/MaiMBot/plugins",
                "./data/MaiMBot/logs:/MaiMBot/logs",
            ],
        ),
        "napcat": service(
            s.napcat_image,
            environment=[f"NAPCAT_UID={s.napcat_uid}", f"NAPCAT_GID={s.napcat_gid}", tz],
            ports=_port(s.bind_address, s.napcat_port, 6099),
            volumes=[
                "./docker-config/napcat:/app/napcat/config",
                "./data/qq:/app/.config/QQ",
                "./data/MaiMBot:/MaiMBot/data",
            ],
        ),
        "adapters": service(
            s.adapter_image,
            environment=[tz],
            ports=_port(s.bind_address, s.adapter_port, 8095),
            volumes=[
                f"./{ADAPTER_CONFIG}:/adapters/config.toml",
                "./data/adapters:/adapters/data",
            ],
        ),
    }
    if s.sqlite_web:
        services["sqlite-web"] = service(
            s.sqlite_web_image,
            environment=["SQLITE_DATABASE=MaiMBot/MaiBot.db"],
            ports=_port(s.bind_address, s.sqlite_web_port, 8080),
            volumes=["./data/MaiMBot:/data/MaiMBot"],
        )
    for body in services.values():
        if not body["ports"]:
            del body["ports"]
    return {
        "version": "3.8",
        "services": services,
        "networks": {NETWORK: {"driver": "bridge", "labels": dict(labels)}},
    }


def prepare_directories(root: Path) -> list[Path]:
    """The bind-mounted directories and default config files (existing ones are kept);
    the paths created, so a failed first deploy can remove exactly those."""
    created: list[Path] = []
    for rel in (
        "docker-config/mmc",
        "docker-config/napcat",
        "docker-config/adapters",
        "data/MaiMBot/plugins",
        "data/MaiMBot/logs",
        "data/qq",
        "data/adapters",
    ):
        path = root / rel
        missing = [p for p in (path, *path.parents) if not p.exists() and root in p.parents]
        path.mkdir(parents=True, exist_ok=True)
        created += missing
    for rel, text in (
        (ADAPTER_CONFIG, _DEFAULT_ADAPTER_CONFIG),
        ("docker-config/mmc/bot_config.toml", _DEFAULT_BOT_CONFIG),
    ):
        path = root / rel
        if not path.exists():
            path.write_text(text, encoding="utf-8")
            created.append(path)
    return created


def load_stack(instance: Instance, compose_path: Path) -> LoadedProject:
    """The project from ``compose_path`` under the instance's project name."""
    return load_project(
        [compose_path],
        project_name=project_name(instance),
        working_dir=compose_path.parent,
        env={},
    )


def write_compose(instance: Instance, root: Path) -> tuple[Path, LoadedProject]:
    """Write ``root/docker-compose.yml`` for ``instance`` (validated first, then renamed
    into place) and return it with the loaded project."""
    root.mkdir(parents=True, exist_ok=True)
    text = "# generated by cargobay from the instance configuration; edits are replaced\n"
    text += yaml.safe_dump(compose_document(instance), sort_keys=False, allow_unicode=True)
    target = root / COMPOSE_FILE
    fd, tmp = tempfile.mkstemp(prefix=".compose-", suffix=".yml", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            loaded = load_stack(instance, Path(tmp))
        except ComposeFileError as err:  # nothing replaced; name the real file
            raise AppInputError(
                f"the generated compose file for app instance {instance.name!r} is not valid "
                f"(check the instance's stack settings): {str(err).replace(tmp, str(target))}"
            ) from err
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    del loaded
    return target, load_stack(instance, target)


class WslStack:
    """The same stack run by ``docker compose`` inside a WSL2 distribution (wsl2_docker
    mode, Windows only): the compose file is generated and validated here, in the
    instance's Windows directory, and ``wsl.exe`` runs compose on it
    (:class:`cargobay.apps.wsl2.Wsl`).  ``host_path`` turns the instance directory into
    the Windows path WSL translates (``str`` on Windows)."""

    def __init__(self, wsl: Any, host_path: Callable[[Path], str] = str) -> None:
        self.wsl = wsl
        self.host_path = host_path

    async def _compose(self, instance: Instance, root: Path, args: list[str]) -> str:
        from cargobay.apps.wsl2 import decode_wsl_output

        result = await self.wsl.compose(
            str(instance.wsl_distro),
            self.host_path(root),
            ["-p", project_name(instance), *args],
        )
        return decode_wsl_output(result.stdout)

    async def deploy(self, instance: Instance, root: Path, report: Any) -> list[str]:
        """Prepare, write, ``up -d``; the container ids.  A failed first deploy is taken
        down and its files removed."""
        first = not (root / COMPOSE_FILE).exists()
        report.step("prepare", f"preparing {root}")
        created = prepare_directories(root)
        try:
            report.step("compose file", "generating the MaiBot stack's compose file")
            write_compose(instance, root)
            report.step("docker in wsl", f"checking Docker in {instance.wsl_distro}")
            status = await self.wsl.docker_status(str(instance.wsl_distro))
            report.log(
                f"{instance.wsl_distro}: Docker {status.version or '?'} "
                f"(compose {status.compose or 'missing'})"
            )
            report.step("containers", f"docker compose up in {instance.wsl_distro}")
            await self._compose(instance, root, ["up", "-d", "--remove-orphans"])
        except BaseException:
            if first:
                with contextlib.suppress(Exception):
                    await self._compose(instance, root, ["down", "-v"])
                (root / COMPOSE_FILE).unlink(missing_ok=True)
                for path in sorted(created, key=lambda p: len(p.parts), reverse=True):
                    with contextlib.suppress(OSError):
                        path.unlink() if path.is_file() else path.rmdir()
            raise
        return (await self._compose(instance, root, ["ps", "-q"])).split()

    async def verb(self, instance: Instance, root: Path, verb: str, services: list[str]) -> int:
        """start/stop/restart; how many containers run afterwards."""
        await self._compose(instance, root, [verb, *services])
        running = await self._compose(instance, root, ["ps", "-q", "--status", "running"])
        return len(running.split())

    async def logs(self, instance: Instance, root: Path, tail: int | None) -> list[str]:
        args = ["logs", "--no-color"] + (["--tail", str(tail)] if tail is not None else [])
        return (await self._compose(instance, root, args)).splitlines()

    async def down(self, instance: Instance, root: Path) -> None:
        await self._compose(instance, root, ["down", "-v", "--remove-orphans"])
