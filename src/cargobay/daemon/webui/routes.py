"""The endpoints the web GUI needs beyond the rest of the API, and the GUI itself.

- ``GET /v1/machines/{name}/metrics``: host-side CPU %, resident memory, uptime and disk
  I/O of the machine's QEMU process and the guest's memory/CPU/uptime
  (:mod:`cargobay.machines.metrics`), for the detail page's charts;
- ``GET /v1/daemon/ui``: how to reach the GUI: the TCP address and, for a caller on the Unix
  socket (or one that already has the token), the address with the token
  (``cargobay ui``);
- ``GET /v1/daemon/settings``: what the daemon knows for the settings page: the container
  settings file (engine, registry mirrors) and the machine defaults;
- ``GET``/``PUT /v1/compose/file``: read and save a compose file of a stack; a save (or
  ``dry_run``) first loads the new text with the compose loader, so a file that does not
  validate is refused with the loader's 400 and never written;
- ``/ui/``: the built React app (``web/`` builds into ``dist/`` next to this module).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from cargobay.errors import CargoBayError, Conflict, InvalidInput, NotFound
from cargobay.machines.metrics import MachineMetrics, MetricsCollector

__all__ = ["DIST", "UiAccess", "mount_ui", "router"]

DIST = Path(__file__).resolve().parent / "dist"
"""Where ``npm run build`` (in ``web/``) writes the app."""
COMPOSE_SUFFIXES = (".yml", ".yaml")

router = APIRouter()


@dataclass(frozen=True, slots=True)
class UiAccess:
    """Set on ``app.state.ui_access`` by the server when it listens on TCP."""

    address: str
    """``http://HOST:PORT``"""
    token: str
    token_file: Path


@router.get("/v1/machines/{name}/metrics", response_model=MachineMetrics, tags=["machines"])
async def machine_metrics(
    request: Request,
    name: str,
    guest: bool = Query(True, description="also read the guest's /proc through its agent"),
) -> MachineMetrics:
    """Host-side CPU %, RSS, uptime and disk I/O of the machine's hypervisor process, and
    the guest's memory, CPU % and uptime from its /proc (``cargobay.machines.metrics``)."""
    collector = getattr(request.app.state, "metrics_collector", None)
    if collector is None:
        collector = MetricsCollector(request.app.state.daemon.service)
        request.app.state.metrics_collector = collector
    result: MachineMetrics = await collector.collect(name, guest=guest)
    return result


def _over_unix(request: Request) -> bool:
    from cargobay.daemon.webui.auth import over_unix_socket

    return over_unix_socket(request.scope)


@router.get("/v1/daemon/ui", tags=["daemon"])
async def ui_access(request: Request) -> dict[str, Any]:
    """Where the web GUI is; ``url`` carries the token (opening it sets the cookie)."""
    access: UiAccess | None = getattr(request.app.state, "ui_access", None)
    built = (DIST / "index.html").is_file()
    if access is None:
        return {"tcp": None, "url": None, "token_file": None, "built": built}
    return {
        "tcp": access.address,
        "url": f"{access.address}/ui/?token={access.token}",
        "token_file": str(access.token_file),
        "built": built,
    }


@router.get("/v1/daemon/settings", tags=["daemon"])
async def ui_settings(request: Request) -> dict[str, Any]:
    """The container settings (engine address, registry mirrors) and machine defaults."""
    from cargobay.containers.settings import config_path, load_settings
    from cargobay.machines.models import VMConfig

    defaults = VMConfig()
    return {
        "containers": load_settings().model_dump(mode="json"),
        "containers_file": str(config_path()),
        "machine_defaults": {
            "image": defaults.image,
            "cpus": defaults.cpus,
            "memory_mb": defaults.memory_mb,
            "disk_mb": defaults.disk_mb,
        },
    }


# -- compose files --------------------------------------------------------------------------


class ComposeFileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="absolute path of the compose file (.yml/.yaml)")
    content: str = Field(max_length=1024 * 1024)
    dry_run: bool = Field(default=False, description="only validate")


def _compose_path(value: str) -> Path:
    path = Path(value)
    if not path.is_absolute():
        raise InvalidInput(f"bad value for 'path': {value!r} is not an absolute path")
    if path.suffix not in COMPOSE_SUFFIXES:
        raise InvalidInput(f"bad value for 'path': {value!r} is not a .yml or .yaml file")
    return path


@router.get("/v1/compose/file", tags=["compose"])
async def read_compose_file(path: str = Query(description="absolute path")) -> dict[str, Any]:
    file = _compose_path(path)
    try:
        content = file.read_text()
    except FileNotFoundError as err:
        raise NotFound(f"no compose file {path}") from err
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as err:
        raise InvalidInput(f"cannot read {path}: {err}") from err
    return {"path": str(file), "content": content, "modified": file.stat().st_mtime}


@router.put("/v1/compose/file", tags=["compose"])
async def save_compose_file(body: ComposeFileBody) -> dict[str, Any]:
    """Validate the text as this stack's file (same directory, same project), then save."""
    from cargobay.containers.compose.export import config_document
    from cargobay.containers.compose.loader import load_project

    file = _compose_path(body.path)
    if not file.parent.is_dir():
        raise NotFound(f"no directory {file.parent}")
    tmp = file.with_name(f".{file.name}.cargobay-{os.getpid()}{file.suffix}")
    try:
        tmp.write_text(body.content)
        try:
            loaded = load_project([tmp], working_dir=file.parent, env={})
        except CargoBayError as err:  # name the file the user edits, not the scratch copy
            err.args = (str(err).replace(str(tmp), str(file)),)
            raise
        document = config_document(loaded)
        if not body.dry_run:
            if file.is_dir():
                raise Conflict(f"{file} is a directory")
            os.replace(tmp, file)
    except PermissionError as err:
        raise InvalidInput(f"cannot write in {file.parent}: {err}") from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return {"saved": not body.dry_run, "project": document, "warnings": loaded.warnings}


# -- the app --------------------------------------------------------------------------------

_NOT_BUILT = """<!doctype html><title>CargoBay</title>
<p>The CargoBay web UI is not built. Run <code>scripts/setup.sh test</code>, or
<code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>, then reload.</p>"""


def mount_ui(app: FastAPI, dist: Path = DIST) -> None:
    """Serve the built app at ``/ui/`` (``/ui`` redirects there)."""

    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    if (dist / "index.html").is_file():
        app.mount("/ui/", StaticFiles(directory=dist, html=True), name="ui")
    else:

        @app.get("/ui/{rest:path}", include_in_schema=False)
        async def ui_missing(rest: str) -> HTMLResponse:
            return HTMLResponse(_NOT_BUILT, status_code=503)
