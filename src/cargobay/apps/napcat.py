"""The NapCat installer for local mode: a release archive fetched, verified and unpacked
into the instance's directory (``<instance>/napcat``).

API::

    result = await install_napcat(root / "napcat", NapCatSource(url=…, sha256=…, version=…),
                                  on_progress=print)
    result.changed        # False: that version was already installed, nothing was fetched
    installed_version(root / "napcat")   # -> the recorded version or None

Built on :func:`cargobay.apps.archives.install_archive` (resumable download with SHA-256
check, safe unpacking into a staging directory swapped in at the end), so a failed
download, a checksum mismatch or a bad archive leaves the previous install as it was.
The installed version is recorded in ``<target>/.cargobay-napcat.json``
(``{"version", "sha256", "url"}``); installing the version already recorded (same
SHA-256) is a no-op.  The archive is downloaded to ``<target's parent>/downloads/``
(where an interrupted download is resumed) and removed after a successful install.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
from pydantic import BaseModel

from cargobay.apps.archives import ArchiveLimits, install_archive
from cargobay.apps.downloads import DownloadSpec, ProgressCallback
from cargobay.apps.models import NapCatSource

__all__ = ["VERSION_FILE", "NapCatInstall", "NapCatSource", "install_napcat", "installed"]

VERSION_FILE = ".cargobay-napcat.json"


class NapCatInstall(BaseModel):
    """The outcome of :func:`install_napcat`."""

    path: Path
    version: str
    changed: bool
    files: int = 0


def installed(target: Path) -> dict[str, str] | None:
    """The recorded install (``version``, ``sha256``, ``url``), or None if there is none
    (or the record is unreadable: then the next install replaces the tree)."""
    try:
        data = json.loads((target / VERSION_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        return None
    return {k: str(v) for k, v in data.items()}


def _archive_name(source: NapCatSource) -> str:
    tail = source.url.rsplit("/", 1)[-1].split("?", 1)[0]
    suffix = next(
        (s for s in (".tar.gz", ".tar.xz", ".tar.bz2", ".tgz", ".zip") if tail.endswith(s)), ""
    )
    return f"napcat-{source.version}{suffix or '.archive'}"


def _already(target: Path, source: NapCatSource) -> bool:
    current = installed(target)
    return (
        current is not None
        and target.is_dir()
        and current.get("version") == source.version
        and current.get("sha256") == source.sha256
    )


def _record(target: Path, source: NapCatSource) -> None:
    tmp = target / (VERSION_FILE + ".tmp")
    record = {"version": source.version, "sha256": source.sha256, "url": source.url}
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, target / VERSION_FILE)


async def install_napcat(
    target: Path,
    source: NapCatSource,
    *,
    on_progress: ProgressCallback | None = None,
    strip_components: int = 0,
    limits: ArchiveLimits | None = None,
    client: httpx.AsyncClient | None = None,
) -> NapCatInstall:
    """Install ``source`` into ``target`` unless that version (and SHA-256) is already
    there.  Raises DownloadError, ChecksumMismatch or ArchiveError with the previous
    install untouched."""
    if await asyncio.to_thread(_already, target, source):
        return NapCatInstall(path=target, version=source.version, changed=False)
    downloads = target.parent / "downloads"
    await asyncio.to_thread(downloads.mkdir, parents=True, exist_ok=True)
    spec = DownloadSpec.of(source.url, downloads / _archive_name(source), source.sha256)
    names = await install_archive(
        spec,
        target,
        strip_components=strip_components,
        limits=limits,
        on_progress=on_progress,
        client=client,
    )
    await asyncio.to_thread(_record, target, source)
    await asyncio.to_thread(spec.dest.unlink, missing_ok=True)
    return NapCatInstall(path=target, version=source.version, changed=True, files=len(names))
