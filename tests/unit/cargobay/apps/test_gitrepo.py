"""cargobay.apps.gitrepo: argument checks and progress-line splitting (no network)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cargobay.apps.gitrepo import _ProgressStream, clone, switch_branch
from cargobay.errors import InvalidInput


async def test_progress_lines_split_on_cr_and_lf() -> None:
    lines: list[str] = []
    stream = _ProgressStream(asyncio.get_running_loop(), lines.append)
    stream.write(b"Counting objects:  50% (1/2)\rCounting objects: 100% (2/2), done.\nRecei")
    stream.write(b"ving objects: 100%\n\n")
    await asyncio.sleep(0)
    assert lines == [
        "Counting objects:  50% (1/2)",
        "Counting objects: 100% (2/2), done.",
        "Receiving objects: 100%",
    ]


def _empty(path: Path) -> bool:
    return not any(path.iterdir())


@pytest.mark.parametrize("url", ["/etc/passwd", "-uhttp://x", "ext::sh -c id", "http://a b"])
async def test_bad_urls_refused_before_anything_happens(url: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a repository URL"):
        await clone(url, tmp_path / "x")
    assert _empty(tmp_path)


@pytest.mark.parametrize("branch", ["-f", "a..b", "a b", "x/", ""])
async def test_bad_branch_names(branch: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a valid branch"):
        await switch_branch(tmp_path, branch)


async def test_bad_depth(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="depth"):
        await clone("http://127.0.0.1:9/x", tmp_path / "x", depth=0)
