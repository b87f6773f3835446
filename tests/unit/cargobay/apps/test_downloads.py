"""cargobay.apps.downloads: what is refused before any request is made."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cargobay.apps.downloads import DownloadSpec, download, download_all
from cargobay.errors import InvalidInput


def test_spec_validation(tmp_path: Path) -> None:
    spec = DownloadSpec(url="https://example.org/a.zip", dest=tmp_path / "a.zip", sha256="AB" * 32)
    assert spec.sha256 == "ab" * 32
    assert spec.part == tmp_path / "a.zip.part"
    with pytest.raises(ValidationError, match="not an http"):
        DownloadSpec(url="file:///etc/passwd", dest=tmp_path / "x")
    with pytest.raises(ValidationError, match="64 hexadecimal"):
        DownloadSpec(url="http://x/y", dest=tmp_path / "x", sha256="abc")


async def test_bad_arguments(tmp_path: Path) -> None:
    spec = DownloadSpec(url="http://127.0.0.1:9/x", dest=tmp_path / "x")
    with pytest.raises(InvalidInput, match="concurrency"):
        await download_all([spec], concurrency=0)
    with pytest.raises(InvalidInput, match="share one destination"):
        await download_all([spec, spec.model_copy(update={"url": "http://127.0.0.1:9/y"})])
    with pytest.raises(InvalidInput, match="negative"):
        await download(spec, retries=-1)


def test_of_raises_invalid_input(tmp_path: Path) -> None:
    assert DownloadSpec.of("http://x/y", tmp_path / "y").url == "http://x/y"
    with pytest.raises(InvalidInput, match=r"sha256: .*64 hexadecimal"):
        DownloadSpec.of("http://x/y", tmp_path / "y", sha256="nope")
    with pytest.raises(InvalidInput, match=r"url: .*not an http"):
        DownloadSpec.of("ftp://x/y", tmp_path / "y")
