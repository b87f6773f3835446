"""cargobay.apps.downloads against real HTTP servers on loopback.

Debian's nginx (Range support built in) serves a temp directory for the resume, checksum,
404 and concurrency cases; a tiny asyncio server of our own plays the misbehaving servers
nginx will not imitate: one that drops the connection midway, one that ignores Range.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import io
import os
import pwd
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cargobay.apps.archives import install_archive
from cargobay.apps.downloads import DownloadProgress, DownloadSpec, download, download_all
from cargobay.errors import ChecksumMismatch, DownloadError
from tests.support import require_binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Nginx:
    root: Path
    port: int
    access_log: Path

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    binary = require_binary("nginx", "apt install nginx-light (scripts/setup.sh apt_test)")
    base = tmp_path_factory.mktemp("nginx")
    root = base / "www"
    root.mkdir()
    os.chmod(base, 0o755)
    port = _free_port()
    user = ""
    if os.geteuid() == 0:  # nginx's workers would drop to nobody, who cannot read a 0700 tmp
        user = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(0).gr_name};"
    temp = {k: base / k for k in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    conf = base / "nginx.conf"
    conf.write_text(
        f"""{user}
daemon off;
worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {base}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""
    )
    proc = subprocess.Popen(
        [binary, "-p", str(base), "-c", str(conf), "-e", str(base / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"nginx did not start: {err}")
            time.sleep(0.05)
    try:
        yield Nginx(root=root, port=port, access_log=base / "access.log")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _publish(nginx: Nginx, name: str, size: int) -> bytes:
    data = os.urandom(size)
    (nginx.root / name).write_bytes(data)
    return data


async def test_truncated_download_is_resumed_with_range(nginx: Nginx, tmp_path: Path) -> None:
    data = _publish(nginx, "resume.bin", 300_000)
    dest = tmp_path / "resume.bin"
    spec = DownloadSpec(
        url=nginx.url("resume.bin"), dest=dest, sha256=hashlib.sha256(data).hexdigest()
    )
    spec.part.write_bytes(data[:123_456])  # what an interrupted run left
    events: list[DownloadProgress] = []
    assert await download(spec, on_progress=events.append) == dest
    assert dest.read_bytes() == data
    assert not spec.part.exists()
    started = [e for e in events if e.state == "started"]
    assert started[0].done == 123_456
    assert started[0].total == 300_000
    assert events[-1].state == "done"
    assert events[-1].done == 300_000
    progress = [e.done for e in events if e.state == "progress"]
    assert progress == sorted(progress)
    assert progress[-1] == 300_000  # the last chunk always reports
    assert '"GET /resume.bin HTTP/1.1" 206' in nginx.access_log.read_text()


async def test_checksum_mismatch_removes_bad_file_keeps_good_one(
    nginx: Nginx, tmp_path: Path
) -> None:
    _publish(nginx, "bad.bin", 10_000)
    dest = tmp_path / "bad.bin"
    dest.write_bytes(b"previous good version")
    spec = DownloadSpec(url=nginx.url("bad.bin"), dest=dest, sha256="0" * 64)
    with pytest.raises(ChecksumMismatch, match="does not match"):
        await download(spec)
    assert dest.read_bytes() == b"previous good version"
    assert not spec.part.exists()


async def test_404_is_a_clear_error_without_retries(nginx: Nginx, tmp_path: Path) -> None:
    spec = DownloadSpec(url=nginx.url("missing.bin"), dest=tmp_path / "missing.bin")
    events: list[DownloadProgress] = []
    with pytest.raises(DownloadError, match="HTTP 404"):
        await download(spec, on_progress=events.append, backoff=5.0)
    assert [e.state for e in events] == ["failed"]
    assert not spec.dest.exists()


async def test_many_files_with_bounded_concurrency(nginx: Nginx, tmp_path: Path) -> None:
    blobs = {f"f{i}.bin": _publish(nginx, f"f{i}.bin", 20_000 + i) for i in range(6)}
    specs = [
        DownloadSpec(
            url=nginx.url(name), dest=tmp_path / name, sha256=hashlib.sha256(data).hexdigest()
        )
        for name, data in blobs.items()
    ]
    done: set[str] = set()
    paths = await download_all(
        specs,
        concurrency=2,
        on_progress=lambda e: done.add(e.dest.name) if e.state == "done" else None,
    )
    assert paths == [s.dest for s in specs]
    assert done == set(blobs)
    for name, data in blobs.items():
        assert (tmp_path / name).read_bytes() == data


# --- misbehaving servers ------------------------------------------------------------------


@dataclass
class Flaky:
    """Serves ``data``; drops the first ``drops`` responses halfway; may ignore Range."""

    data: bytes
    drops: int = 0
    honour_range: bool = True
    requests: list[str] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        rng = next(
            (
                line.split("=", 1)[1]
                for line in head.split("\r\n")
                if line.lower().startswith("range:")
            ),
            None,
        )
        self.requests.append(rng or "")
        start = int(rng.split("-")[0]) if rng and self.honour_range else 0
        body = self.data[start:]
        if start:
            status = "206 Partial Content"
            extra = f"Content-Range: bytes {start}-{len(self.data) - 1}/{len(self.data)}\r\n"
        else:
            status, extra = "200 OK", ""
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n".encode()
        )
        if self.drops:
            self.drops -= 1
            writer.write(body[: len(body) // 2])
            writer.close()  # flushes what was written, then EOF: the body is cut short
            await writer.wait_closed()
            return
        writer.write(body)
        await writer.drain()
        writer.close()


async def _serve(flaky: Flaky) -> asyncio.Server:
    server = await asyncio.start_server(flaky.handle, "127.0.0.1", 0)
    flaky.port = server.sockets[0].getsockname()[1]
    return server


async def test_dropped_connection_is_retried_and_resumed(tmp_path: Path) -> None:
    flaky = Flaky(data=os.urandom(200_000), drops=2)
    async with await _serve(flaky):
        spec = DownloadSpec(
            url=f"http://127.0.0.1:{flaky.port}/x",
            dest=tmp_path / "x",
            sha256=hashlib.sha256(flaky.data).hexdigest(),
        )
        events: list[DownloadProgress] = []
        await download(spec, on_progress=events.append, backoff=0.01)
    assert spec.dest.read_bytes() == flaky.data
    assert [e.state for e in events].count("retrying") == 2
    assert flaky.requests[0] == ""
    assert flaky.requests[1] == "100000-"
    assert flaky.requests[2] == "150000-"


async def test_server_ignoring_range_restarts_cleanly(tmp_path: Path) -> None:
    flaky = Flaky(data=os.urandom(50_000), honour_range=False)
    async with await _serve(flaky):
        spec = DownloadSpec(
            url=f"http://127.0.0.1:{flaky.port}/y",
            dest=tmp_path / "y",
            sha256=hashlib.sha256(flaky.data).hexdigest(),
        )
        spec.part.write_bytes(b"stale bytes from some other version")
        await download(spec)
    assert flaky.requests == ["35-"]
    assert spec.dest.read_bytes() == flaky.data


async def test_gives_up_after_retries_and_keeps_the_part(tmp_path: Path) -> None:
    flaky = Flaky(data=os.urandom(40_000), drops=10)
    async with await _serve(flaky):
        spec = DownloadSpec(url=f"http://127.0.0.1:{flaky.port}/z", dest=tmp_path / "z")
        with pytest.raises(DownloadError, match="gave up after 3 attempts"):
            await download(spec, retries=2, backoff=0.01)
    assert spec.part.stat().st_size > 0  # resumable by the next run
    assert not spec.dest.exists()


async def test_concurrency_is_bounded(tmp_path: Path) -> None:
    active = 0
    peak = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active, peak
        await reader.readuntil(b"\r\n\r\n")
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        specs = [
            DownloadSpec(url=f"http://127.0.0.1:{port}/{i}", dest=tmp_path / str(i))
            for i in range(6)
        ]
        await download_all(specs, concurrency=2)
    assert peak == 2
    assert all((tmp_path / str(i)).read_bytes() == b"ok" for i in range(6))


async def test_complete_part_is_verified_not_refetched(nginx: Nginx, tmp_path: Path) -> None:
    data = _publish(nginx, "whole.bin", 5_000)
    spec = DownloadSpec(
        url=nginx.url("whole.bin"),
        dest=tmp_path / "whole.bin",
        sha256=hashlib.sha256(data).hexdigest(),
    )
    spec.part.write_bytes(data)
    await download(spec, backoff=5.0)
    assert spec.dest.read_bytes() == data
    assert '"GET /whole.bin HTTP/1.1" 416' in nginx.access_log.read_text()
    # and once it is in place with the right checksum, nothing is fetched at all
    before = nginx.access_log.read_text().count("/whole.bin")
    events: list[DownloadProgress] = []
    await download(spec, on_progress=events.append)
    assert nginx.access_log.read_text().count("/whole.bin") == before
    assert [(e.state, e.message) for e in events] == [("done", "already there")]


async def test_install_archive_downloads_verifies_and_unpacks(nginx: Nginx, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("NapCat.Shell/napcat.mjs", "// stand-in for NapCat\n")
        zf.writestr("NapCat.Shell/config/onebot11.json", "{}")
    data = buffer.getvalue()
    (nginx.root / "NapCat.Shell.zip").write_bytes(data)
    target = tmp_path / "napcat"
    target.mkdir()
    (target / "old-version.txt").write_text("old")
    spec = DownloadSpec.of(
        nginx.url("NapCat.Shell.zip"),
        tmp_path / "cache" / "NapCat.Shell.zip",
        hashlib.sha256(data).hexdigest(),
    )
    names = await install_archive(spec, target, strip_components=1)
    assert sorted(names) == ["config/onebot11.json", "napcat.mjs"]
    assert sorted(p.name for p in target.iterdir()) == ["config", "napcat.mjs"]
    bad = DownloadSpec.of(nginx.url("NapCat.Shell.zip"), tmp_path / "cache" / "other.zip", "0" * 64)
    with pytest.raises(ChecksumMismatch):
        await install_archive(bad, target, strip_components=1)
    assert (target / "napcat.mjs").exists()  # the installed version is untouched
