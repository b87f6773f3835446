"""Fixtures for the app (MAI launcher) integration tests.

``maibot_standins``  stand-in images for the MaiBot stack, built locally FROM the busybox
                     test image (Docker Hub is unreachable): one image tagged
                     ``cargobay-test/maibot-standin:1``, ``cargobay-test/napcat-standin:1``,
                     ``cargobay-test/adapter-standin:1`` and ``cargobay-test/sqlite-web-standin:1``.
                     Its entry script finds its role from what is mounted (the core's
                     ``/MaiMBot/config``, NapCat's ``/app/napcat/config``, the adapter's
                     ``/adapters/config.toml``, sqlite-web's ``SQLITE_DATABASE``), listens with
                     busybox httpd on that service's real port (8001, 6099, 8095, 8080) and
                     serves ``role=<role>`` followed by the mounted config file.
``app_service``      an :class:`AppService` on a fresh store and data directory (function
                     scope: its tasks belong to the test's event loop), sharing one
                     ``CARGOBAY_HOME``-like directory per module.
"""

from __future__ import annotations

import asyncio
import io
import socket
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.containers.conftest import (  # noqa: F401 - fixtures used here
    busybox_image,
    cargobayd,
    docker_engine,
    local_registry,
)

STANDINS = {
    "core_image": "cargobay-test/maibot-standin:1",
    "napcat_image": "cargobay-test/napcat-standin:1",
    "adapter_image": "cargobay-test/adapter-standin:1",
    "sqlite_web_image": "cargobay-test/sqlite-web-standin:1",
}

ENTRY = r"""#!/bin/sh
# a stand-in for a MaiBot stack service (cargobay tests): not the real thing
role=unknown; port=80; cfg=
if [ -d /MaiMBot/config ]; then role=core; port=8001; cfg=/MaiMBot/config/bot_config.toml
elif [ -d /app/napcat/config ]; then role=napcat; port=6099; cfg=/app/napcat/config/onebot11.json
elif [ -f /adapters/config.toml ]; then role=adapter; port=8095; cfg=/adapters/config.toml
elif [ -n "$SQLITE_DATABASE" ]; then role=sqlite-web; port=8080; cfg="/data/$SQLITE_DATABASE"
fi
mkdir -p /www
{ echo "role=$role"; if [ -f "$cfg" ]; then cat "$cfg"; fi; } > /www/index.html
echo "stand-in $role listening on $port (config: ${cfg:-none})"
httpd -f -p "$port" -h /www &
pid=$!
trap 'kill $pid; exit 0' TERM INT
wait $pid
"""


def _context(base: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data, mode in (
            ("Dockerfile", f'FROM {base}\nCOPY entry.sh /entry.sh\nCMD ["/entry.sh"]\n', 0o644),
            ("entry.sh", ENTRY, 0o755),
        ):
            raw = data.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(raw), mode
            tar.addfile(info, io.BytesIO(raw))
    return buffer.getvalue()


async def _build(url: str, base: str) -> None:
    from cargobay.containers.engine import DockerEngine

    async with await DockerEngine.connect(url) as engine:
        await engine.build_image(
            _context(base),
            tag=list(STANDINS.values()),
            labels={"org.cargobay.test": "maibot-standin"},
        )


@pytest.fixture(scope="session")
def maibot_standins(docker_engine: str, busybox_image: str) -> dict[str, str]:  # noqa: F811
    asyncio.run(_build(docker_engine, busybox_image))
    return dict(STANDINS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def apps_home() -> Iterator[Path]:
    import shutil

    home = Path(tempfile.mkdtemp(prefix="cb-apps-", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)
