"""Build contexts as tar streams with .dockerignore rules."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from cargobay.containers.buildcontext import IgnoreRules, tar_context
from cargobay.errors import InvalidInput


def names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return set(tar.getnames())


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*.log"], "a.log", True),
        (["*.log"], "dir/a.log", False),  # * does not cross directories
        (["**/*.log"], "dir/sub/a.log", True),
        (["**/*.log"], "a.log", True),
        (["node_modules"], "node_modules/x/y.js", True),  # a directory takes its contents
        (["build/"], "build/out.o", True),
        (["/secret.txt"], "secret.txt", True),
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README.md"], "CHANGES.md", True),
        (["!README.md", "*.md"], "README.md", True),  # the last match wins
        (["te?t"], "test", True),
        (["te?t"], "teest", False),
        (["[a-c].txt"], "b.txt", True),
        (["[!a-c].txt"], "d.txt", True),
        (["[!a-c].txt"], "a.txt", False),
        (["# comment", "", "  spaced.txt  "], "spaced.txt", True),
        (["./x"], "x", True),
    ],
)
def test_rules(patterns: list[str], path: str, excluded: bool) -> None:
    assert IgnoreRules(patterns).excluded(path) is excluded


def test_tar_context(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    (tmp_path / "debug.log").write_text("x")
    (tmp_path / "node_modules" / "pkg").mkdir(parents=True)
    (tmp_path / "node_modules" / "pkg" / "index.js").write_text("")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("")
    (tmp_path / "docs" / "keep.md").write_text("")
    (tmp_path / ".dockerignore").write_text(
        "*.log\nnode_modules\ndocs/*.md\n!docs/keep.md\nDockerfile\n.dockerignore\n"
    )
    got = names(tar_context(tmp_path))
    assert got == {"Dockerfile", ".dockerignore", "app.py", "docs", "docs/keep.md"}
    assert tar_context(tmp_path) == tar_context(tmp_path)  # same context, same bytes


def test_owner_is_zeroed(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with tarfile.open(fileobj=io.BytesIO(tar_context(tmp_path))) as tar:
        member = tar.getmember("Dockerfile")
    assert (member.uid, member.gid, member.uname) == (0, 0, "")


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a directory"):
        tar_context(tmp_path / "absent")


def test_bad_pattern() -> None:
    with pytest.raises(InvalidInput, match="unterminated"):
        IgnoreRules(["[abc"])
