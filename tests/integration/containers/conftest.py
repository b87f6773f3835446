"""Session fixtures for every Docker test (this folder and ``compose/`` below it).

``docker_engine``  the URL of a Docker Engine that answers ``/_ping``: the one already
                   listening on /var/run/docker.sock, else a ``dockerd`` this fixture starts
                   as root (log in a temp dir, printed if it fails to come up) and stops at
                   the end of the session.  No root or no dockerd: skip on a laptop, fail
                   under CI=true.
``busybox_image``  ``cargobay-test/busybox:1``, imported (``docker import`` through the
                   Engine API) from Debian's busybox-static with a symlink per applet,
                   ``/etc/passwd``, ``/etc/group`` and ``/tmp``; ``CMD ["sh"]``.  No
                   registry is involved.  Reused when it already exists with the same
                   content label.
``local_registry`` Debian's ``docker-registry`` on 127.0.0.1:<free port> with its storage
                   in a temp dir (loopback registries are "insecure" to dockerd by default,
                   so plain HTTP works); stopped at the end.

``engine`` (function scope) is a connected :class:`DockerEngine` for async tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import require, require_binary

if TYPE_CHECKING:
    from cargobay.containers.engine import DockerEngine

DOCKER_SOCKET = Path("/var/run/docker.sock")
DOCKER_URL = f"unix://{DOCKER_SOCKET}"
BUSYBOX_IMAGE = "cargobay-test/busybox:1"
BUSYBOX_STATIC = Path("/bin/busybox")
START_TIMEOUT = 60.0


def _ping(socket_path: Path = DOCKER_SOCKET) -> bool:
    """True when something on ``socket_path`` answers ``GET /_ping`` with OK."""
    if not socket_path.is_socket():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(socket_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """The URL of a running Docker Engine (started here if needed, stopped if started)."""
    if _ping():
        yield DOCKER_URL
        return
    dockerd = shutil.which("dockerd") or (
        "/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None
    )
    require(dockerd is not None, "dockerd not found (Debian: apt-get install docker.io)")
    require(os.geteuid() == 0, "root, to start dockerd (or start dockerd yourself)")
    assert dockerd is not None
    workdir = Path(tempfile.mkdtemp(prefix="cb-dockerd-"))
    log_path = workdir / "dockerd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [dockerd, "--host", DOCKER_URL],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not _ping():
        if process.poll() is not None:
            # another session may have started one at the same moment: use it
            if _ping():
                break
            pytest.fail(
                f"dockerd exited with {process.returncode} before answering; "
                f"log: {log_path}\n{log_path.read_text(errors='replace')[-3000:]}",
                pytrace=False,
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                f"dockerd did not answer /_ping within {START_TIMEOUT:g} s; log: {log_path}",
                pytrace=False,
            )
        time.sleep(0.1)
    try:
        yield DOCKER_URL
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _busybox_applets(binary: Path) -> list[str]:
    listing = subprocess.run(
        [str(binary), "--list-full"], check=True, capture_output=True, text=True
    ).stdout
    return sorted(line.strip() for line in listing.splitlines() if line.strip())


def busybox_rootfs_tar(binary: Path = BUSYBOX_STATIC) -> bytes:
    """A root filesystem tarball: busybox-static, its applet links, passwd/group, /tmp."""
    buffer = io.BytesIO()
    mtime = int(binary.stat().st_mtime)

    def add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, mtime
        tar.addfile(info)

    def add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, mtime
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "var"):
            add_dir(tar, name)
        add_dir(tar, "tmp", 0o1777)
        add_file(tar, "bin/busybox", binary.read_bytes(), 0o755)
        for applet in _busybox_applets(binary):
            if applet in ("bin/busybox", "busybox"):
                continue
            info = tarfile.TarInfo(applet)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "/bin/busybox", mtime
            tar.addfile(info)
        add_file(
            tar,
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )
        add_file(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buffer.getvalue()


async def import_busybox(url: str, reference: str = BUSYBOX_IMAGE) -> str:
    """Import the busybox rootfs as ``reference`` (skipped when the same content is there)."""
    from cargobay.containers.engine import DockerEngine
    from cargobay.errors import ImageNotFound

    tarball = busybox_rootfs_tar()
    digest = hashlib.sha256(tarball).hexdigest()[:16]
    repo, _, tag = reference.rpartition(":")
    async with await DockerEngine.connect(url) as engine:
        try:
            existing = await engine.inspect_image(reference)
            labels = (existing.get("Config") or {}).get("Labels") or {}
            if labels.get("org.cargobay.test.rootfs") == digest:
                return str(existing["Id"])
        except ImageNotFound:
            pass
        return await engine.import_image(
            tarball,
            repo=repo,
            tag=tag,
            changes=[
                'CMD ["sh"]',
                "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                f"LABEL org.cargobay.test.rootfs={digest}",
            ],
            message="cargobay test image from Debian's busybox-static",
        )


@pytest.fixture(scope="session")
def busybox_image(docker_engine: str) -> str:
    """``cargobay-test/busybox:1``, imported from Debian's busybox-static (no registry)."""
    require(
        BUSYBOX_STATIC.exists() and b"ld-linux" not in BUSYBOX_STATIC.read_bytes()[:8192],
        "a static /bin/busybox (Debian: apt-get install busybox-static)",
    )
    asyncio.run(import_busybox(docker_engine))
    return BUSYBOX_IMAGE


@dataclass(frozen=True)
class LocalRegistry:
    """A registry on loopback: push to ``f"{host}/name:tag"``, talk HTTP to ``url``;
    ``username``/``password`` are set when it wants HTTP Basic credentials."""

    host: str
    url: str
    root: Path
    username: str | None = None
    password: str | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _registry_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=1) as reply:
            return int(reply.status) == 200
    except urllib.error.HTTPError as err:
        return err.code == 401  # up, and wants credentials
    except (urllib.error.URLError, OSError):
        return False


def _bcrypt(password: str) -> str:
    """A bcrypt hash for the registry's htpasswd file (libxcrypt through ``crypt``)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            crypt = None  # type: ignore[assignment]
    require(crypt is not None, "Python's crypt module (bcrypt hashes for htpasswd)")
    # cost 4: the registry checks the hash on every request; tests need no slow hash
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    require(bool(hashed) and hashed.startswith("$2"), "bcrypt support in libcrypt")
    return hashed


@contextlib.contextmanager
def run_registry(
    credentials: tuple[str, str] | None = None, auth_config: str = ""
) -> Iterator[LocalRegistry]:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage in a temp dir; with
    ``credentials``, behind htpasswd (HTTP Basic) authentication; ``auth_config`` is an
    ``auth:`` section of the registry's YAML configuration (token auth, ...)."""
    binary = require_binary("docker-registry", "Debian: apt-get install docker-registry")
    root = Path(tempfile.mkdtemp(prefix="cb-registry-"))
    port = _free_port()
    auth = auth_config
    if credentials is not None:
        (root / "htpasswd").write_text(f"{credentials[0]}:{_bcrypt(credentials[1])}\n")
        auth = f"auth:\n  htpasswd:\n    realm: cargobay-test\n    path: {root / 'htpasswd'}\n"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n" + auth
    )
    log_path = root / "registry.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not _registry_answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                f"docker-registry did not come up on {url}; "
                f"log:\n{log_path.read_text(errors='replace')[-3000:]}",
                pytrace=False,
            )
        time.sleep(0.05)
    user, password = credentials if credentials is not None else (None, None)
    try:
        yield LocalRegistry(f"127.0.0.1:{port}", url, root, user, password)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def local_registry(docker_engine: str) -> Iterator[LocalRegistry]:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage in a temp dir."""
    with run_registry() as registry:
        yield registry


@pytest.fixture(scope="session")
def private_registry(docker_engine: str) -> Iterator[LocalRegistry]:
    """Like ``local_registry``, but wanting HTTP Basic credentials (htpasswd)."""
    with run_registry(("cbtuser", os.urandom(6).hex())) as registry:
        yield registry


@pytest.fixture
async def engine(docker_engine: str) -> AsyncIterator[DockerEngine]:
    """A connected :class:`cargobay.containers.engine.DockerEngine` (closed afterwards)."""
    from cargobay.containers.engine import DockerEngine

    async with await DockerEngine.connect(docker_engine) as connected:
        yield connected


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A short name no other test (or run) uses: ``cbt-<test>-<random>``."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:24]
    return f"cbt-{stem.strip('-')}-{os.urandom(3).hex()}"


@dataclass
class CargoBayd:
    """A cargobayd for this session with its own short CARGOBAY_HOME; ``cli`` runs the
    ``cargobay`` command line against it (CARGOBAY_AUTOSTART=0: it must already answer)."""

    home: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        return self.home / "state" / "logs" / "cargobayd.log"

    def cli(
        self, *args: str, timeout: float = 120.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        script = Path(sys.executable).parent / "cargobay"
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "cargobay.cli"]
        return subprocess.run(
            [*argv, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )


@pytest.fixture(scope="session")
def cargobayd(docker_engine: str) -> Iterator[CargoBayd]:
    """A real cargobayd (``python -m cargobay.daemon.server``) for engine API/CLI tests."""
    from cargobay.paths import Paths
    from cargobay.sdk import CargoBayClient, daemon_environment

    home = Path(tempfile.mkdtemp(prefix="cbd-", dir="/tmp"))
    paths = Paths.from_env({"CARGOBAY_HOME": str(home)})
    paths.ensure()
    env = daemon_environment(paths)
    env["CARGOBAY_AUTOSTART"] = "0"
    env["DOCKER_HOST"] = docker_engine
    with paths.daemon_log.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cargobay.daemon.server"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
    daemon = CargoBayd(home, env, process)
    client = CargoBayClient(paths=paths)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                client.info()
                break
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    pytest.fail(
                        f"cargobayd did not come up; log:\n"
                        f"{daemon.log.read_text(errors='replace')[-3000:]}",
                        pytrace=False,
                    )
                time.sleep(0.05)
    finally:
        client.close()
    try:
        yield daemon
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(home, ignore_errors=True)
