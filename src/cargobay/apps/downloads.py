"""HTTP downloads for the MAI launcher: concurrent, resumable, SHA-256 verified.

The NapCat installer and the app service fetch release files with this module.

API::

    spec = DownloadSpec.of("http://…/NapCat.zip", Path("…/NapCat.zip"), sha256="ab…")
    path = await download(spec, on_progress=print)            # one file
    paths = await download_all([spec, …], concurrency=4)      # many, at most 4 at a time

Invariants:

- Bytes go to ``<dest>.part``; ``dest`` is replaced (``os.replace``) only once the whole file is
  there and its SHA-256 matches.  A failed or mismatching download never touches a previous
  good ``dest``.
- A ``.part`` left by an interrupted run (or by a dropped connection during this one) is
  continued with ``Range: bytes=N-``.  A server that ignores Range (answers 200) restarts the
  file from zero; a 416 restarts it too.
- Transient failures (connection errors, a body cut short, 408/429/5xx) are retried with
  exponential backoff, resuming from the ``.part``; a checksum mismatch removes the ``.part``
  and raises :class:`~cargobay.errors.ChecksumMismatch`; other 4xx raise at once.
- Progress events (:class:`DownloadProgress`) report bytes done/total per file, at most
  every ``PROGRESS_INTERVAL`` seconds while bytes flow.
- A ``dest`` that already has the expected SHA-256 is not fetched again; a ``.part`` that
  already holds the whole file (the server answers 416 for the rest) is only verified.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from cargobay.errors import ChecksumMismatch, DownloadError, InvalidInput

PROGRESS_INTERVAL = 0.1
"""Seconds between two "progress" events of one file (the last chunk always reports)."""
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_CONTENT_RANGE_416 = re.compile(r"^bytes \*/(\d+)$")


class DownloadSpec(BaseModel):
    """One file to fetch: where from, where to, and (optionally) its SHA-256 and size."""

    model_config = ConfigDict(frozen=True)

    url: str
    dest: Path
    sha256: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not _SHA256.match(value):
            raise ValueError("sha256 must be 64 hexadecimal characters")
        return value

    @classmethod
    def of(cls, url: str, dest: Path, sha256: str | None = None) -> DownloadSpec:
        """Like the constructor, but a bad value is an InvalidInput naming the field."""
        try:
            return cls(url=url, dest=dest, sha256=sha256)
        except ValidationError as err:
            problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in err.errors())
            raise InvalidInput(f"bad download {url!r}: {problems}") from err

    @property
    def part(self) -> Path:
        return self.dest.with_name(self.dest.name + ".part")


class DownloadProgress(BaseModel):
    """A progress event; ``total`` is None when the server did not say."""

    url: str
    dest: Path
    state: Literal["started", "progress", "retrying", "done", "failed"]
    done: int
    total: int | None = None
    attempt: int = 1
    message: str = ""


ProgressCallback = Callable[[DownloadProgress], None]


class _Transient(Exception):
    """Internal: a failure worth retrying (the ``.part`` keeps what arrived)."""


def _emit(cb: ProgressCallback | None, spec: DownloadSpec, **fields: object) -> None:
    if cb is not None:
        cb(DownloadProgress(url=spec.url, dest=spec.dest, **fields))  # type: ignore[arg-type]


def _hash_file(path: Path) -> hashlib._Hash:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest


def _matches(path: Path, sha256: str) -> bool:
    return path.is_file() and _hash_file(path).hexdigest() == sha256


async def _attempt(
    client: httpx.AsyncClient,
    spec: DownloadSpec,
    attempt: int,
    on_progress: ProgressCallback | None,
) -> None:
    """One GET into ``spec.part``, continuing it when the server honours Range."""
    part = spec.part
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        async with client.stream("GET", spec.url, headers=headers) as resp:
            if resp.status_code == 416 and have:
                size = _CONTENT_RANGE_416.match(resp.headers.get("content-range", ""))
                if size and int(size[1]) == have:
                    return  # the .part is already the whole file: go on to verify it
                part.unlink()  # what we hold does not fit the file any more: start over
                raise _Transient(f"{spec.url}: range not satisfiable; restarting")
            if resp.status_code in TRANSIENT_STATUS:
                raise _Transient(f"{spec.url}: HTTP {resp.status_code}")
            if resp.status_code not in (200, 206):
                raise DownloadError(
                    f"{spec.url}: HTTP {resp.status_code} {resp.reason_phrase}; check the URL"
                )
            total: int | None = None
            if resp.status_code == 206:
                match = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
                if not match or int(match[1]) != have:
                    part.unlink(missing_ok=True)
                    raise _Transient(f"{spec.url}: unexpected Content-Range; restarting")
                total = int(match[3]) if match[3] != "*" else None
                mode, done = "ab", have
            else:  # 200: the whole file, Range ignored (or not asked for)
                length = resp.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                mode, done = "wb", 0
            _emit(on_progress, spec, state="started", done=done, total=total, attempt=attempt)
            last = 0.0
            with part.open(mode) as fh:
                async for chunk in resp.aiter_bytes():  # as it arrives: a cut keeps all
                    fh.write(chunk)
                    done += len(chunk)
                    now = time.monotonic()
                    if now - last >= PROGRESS_INTERVAL or done == total:
                        last = now
                        _emit(
                            on_progress,
                            spec,
                            state="progress",
                            done=done,
                            total=total,
                            attempt=attempt,
                        )
            if total is not None and done != total:
                raise _Transient(f"{spec.url}: got {done} of {total} bytes")
    except httpx.TransportError as err:  # connect refused, reset, body cut short, timeouts
        raise _Transient(f"{spec.url}: {type(err).__name__}: {err}") from err


async def download(
    spec: DownloadSpec,
    *,
    client: httpx.AsyncClient | None = None,
    on_progress: ProgressCallback | None = None,
    retries: int = 4,
    backoff: float = 0.5,
) -> Path:
    """Fetch ``spec`` to ``spec.dest`` (see the module invariants); returns ``spec.dest``.

    Raises :class:`DownloadError` (4xx, retries exhausted) or :class:`ChecksumMismatch`."""
    if retries < 0 or backoff < 0:
        raise InvalidInput("retries and backoff must not be negative")
    if client is None:
        async with httpx.AsyncClient(follow_redirects=True, timeout=30.0) as own:
            return await download(
                spec, client=own, on_progress=on_progress, retries=retries, backoff=backoff
            )
    if spec.sha256 is not None and await asyncio.to_thread(_matches, spec.dest, spec.sha256):
        size = spec.dest.stat().st_size
        _emit(on_progress, spec, state="done", done=size, total=size, message="already there")
        return spec.dest
    spec.dest.parent.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        attempt += 1
        try:
            await _attempt(client, spec, attempt, on_progress)
            break
        except _Transient as err:
            have = spec.part.stat().st_size if spec.part.exists() else 0
            if attempt > retries:
                _emit(
                    on_progress, spec, state="failed", done=have, attempt=attempt, message=str(err)
                )
                raise DownloadError(
                    f"{err} (gave up after {attempt} attempts; run again to resume)"
                ) from err
            _emit(on_progress, spec, state="retrying", done=have, attempt=attempt, message=str(err))
            await asyncio.sleep(backoff * 2 ** (attempt - 1))
        except DownloadError as err:
            _emit(on_progress, spec, state="failed", done=0, attempt=attempt, message=str(err))
            raise
    size = spec.part.stat().st_size
    if spec.sha256 is not None:
        actual = await asyncio.to_thread(lambda: _hash_file(spec.part).hexdigest())
        if actual != spec.sha256:
            spec.part.unlink(missing_ok=True)
            message = f"{spec.url}: SHA-256 {actual} does not match the expected {spec.sha256}"
            _emit(on_progress, spec, state="failed", done=size, total=size, message=message)
            raise ChecksumMismatch(message + "; the bad download was removed")
    os.replace(spec.part, spec.dest)
    _emit(on_progress, spec, state="done", done=size, total=size)
    return spec.dest


async def download_all(
    specs: Sequence[DownloadSpec],
    *,
    concurrency: int = 4,
    client: httpx.AsyncClient | None = None,
    on_progress: ProgressCallback | None = None,
    retries: int = 4,
    backoff: float = 0.5,
) -> list[Path]:
    """Fetch every spec, at most ``concurrency`` at a time; returns the paths in order.

    Every file is attempted; if any failed, the first error is raised once all have finished
    (the ones that succeeded stay in place, the failed ones keep their ``.part`` to resume)."""
    if concurrency < 1:
        raise InvalidInput("concurrency must be at least 1")
    dests = [spec.dest.resolve() for spec in specs]
    if len(set(dests)) != len(dests):
        raise InvalidInput("two downloads share one destination")
    if client is None:
        async with httpx.AsyncClient(follow_redirects=True, timeout=30.0) as own:
            return await download_all(
                specs,
                concurrency=concurrency,
                client=own,
                on_progress=on_progress,
                retries=retries,
                backoff=backoff,
            )
    gate = asyncio.Semaphore(concurrency)

    async def one(spec: DownloadSpec) -> Path:
        async with gate:
            return await download(
                spec, client=client, on_progress=on_progress, retries=retries, backoff=backoff
            )

    results = await asyncio.gather(*(one(s) for s in specs), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if isinstance(r, Path)]
