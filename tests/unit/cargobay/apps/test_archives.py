"""cargobay.apps.archives: good archives unpack; malicious ones are refused and leave nothing."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from cargobay.apps.archives import ArchiveLimits, archive_format, unpack, unpack_async
from cargobay.errors import ArchiveError, InvalidInput

Member = tarfile.TarInfo | tuple[str, bytes]


def _tar(
    path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz"
) -> Path:
    with tarfile.open(path, mode) as tf:  # type: ignore[call-overload]
        for member in members:
            if isinstance(member, tuple):
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                info.mode = 0o4755
                tf.addfile(info, io.BytesIO(member[1]))
            else:
                tf.addfile(member)
    return path


def _info(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _zip(
    path: Path, members: list[tuple[str, bytes]], symlinks: dict[str, str] | None = None
) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _left_over(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


@pytest.mark.parametrize("mode", ["w:gz", "w:xz", "w"])
def test_tar_unpacks_files_dirs_and_inside_links(tmp_path: Path, mode: str) -> None:
    archive = _tar(
        tmp_path / "a.tar",
        [
            _info("app", tarfile.DIRTYPE),
            ("app/run.sh", b"#!/bin/sh\n"),
            ("app/lib/data.txt", b"data"),
            _info("app/current", tarfile.SYMTYPE, "lib/data.txt"),
            _info("app/copy.sh", tarfile.LNKTYPE, "app/run.sh"),
        ],
        mode,
    )
    target = tmp_path / "out" / "napcat"
    names = unpack(archive, target)
    assert archive_format(archive) == "tar"
    assert (target / "app/run.sh").read_bytes() == b"#!/bin/sh\n"
    assert (target / "app/current").read_text() == "data"
    assert (target / "app/copy.sh").stat().st_ino == (target / "app/run.sh").stat().st_ino
    assert stat.S_IMODE((target / "app/run.sh").stat().st_mode) == 0o755  # setuid dropped
    assert "app/lib/data.txt" in names
    assert _left_over(tmp_path / "out") == ["napcat"]


def test_zip_unpacks_with_inside_symlink(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path / "a.zip",
        [("NapCat/napcat.mjs", b"x" * 1000), ("NapCat/conf/", b"")],
        symlinks={"NapCat/link": "napcat.mjs"},
    )
    target = tmp_path / "t"
    unpack(archive, target)
    assert archive_format(archive) == "zip"
    assert (target / "NapCat/link").read_bytes() == b"x" * 1000
    assert (target / "NapCat/conf").is_dir()


@pytest.mark.parametrize(
    "members",
    [
        [("../evil", b"x")],
        [("/etc/evil", b"x")],
        [("a/../../evil", b"x")],
        [("C:/evil", b"x")],
        [("a\\..\\evil", b"x")],
        [_info("link", tarfile.SYMTYPE, "/etc/passwd")],
        [_info("link", tarfile.SYMTYPE, "../outside")],
        [_info("sub/c", tarfile.SYMTYPE, ".."), _info("g", tarfile.SYMTYPE, "sub/c/..")],
        [_info("hard", tarfile.LNKTYPE, "/etc/passwd")],
        [_info("hard", tarfile.LNKTYPE, "../x")],
        [_info("dev", tarfile.CHRTYPE)],
        [_info("blk", tarfile.BLKTYPE)],
        [_info("fifo", tarfile.FIFOTYPE)],
    ],
    ids=[
        "dotdot",
        "absolute",
        "nested-dotdot",
        "drive",
        "backslash",
        "abs-symlink",
        "up-symlink",
        "symlink-through-symlink",
        "abs-hardlink",
        "up-hardlink",
        "chardev",
        "blockdev",
        "fifo",
    ],
)
def test_malicious_tar_refused_and_nothing_left(tmp_path: Path, members: list[Member]) -> None:
    archive = _tar(tmp_path / "evil.tar.gz", [("ok.txt", b"fine"), *members])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArchiveError):
        unpack(archive, out / "target")
    assert _left_over(out) == []
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize("name", ["../evil", "/abs/evil", "x/../../evil"])
def test_malicious_zip_names_refused(tmp_path: Path, name: str) -> None:
    archive = _zip(tmp_path / "evil.zip", [("fine.txt", b"ok"), (name, b"x")])
    with pytest.raises(ArchiveError, match=r"outside|absolute"):
        unpack(archive, tmp_path / "out" / "t")
    assert _left_over(tmp_path / "out") == []


def test_zip_symlink_out_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "evil.zip", [("a.txt", b"ok")], symlinks={"l": "../../etc"})
    with pytest.raises(ArchiveError, match="points outside"):
        unpack(archive, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_zip_bomb_stops_at_the_total_limit(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "bomb.zip", [(f"f{i}", b"\0" * 100_000) for i in range(5)])
    assert archive.stat().st_size < 10_000
    with pytest.raises(ArchiveError, match="more than 250000 bytes"):
        unpack(archive, tmp_path / "t", limits=ArchiveLimits(max_total_bytes=250_000))
    with pytest.raises(ArchiveError, match="larger than 50000"):
        unpack(archive, tmp_path / "t", limits=ArchiveLimits(max_file_bytes=50_000))
    assert _left_over(tmp_path) == ["bomb.zip"]


def test_member_count_limit(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "many.tar", [(f"f{i}", b"") for i in range(20)], "w")
    with pytest.raises(ArchiveError, match="more than 10 members"):
        unpack(archive, tmp_path / "t", limits=ArchiveLimits(max_files=10))


def test_existing_target_kept_unless_replace(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    (target / "old.txt").write_text("old")
    good = _tar(tmp_path / "good.tar", [("new.txt", b"new")], "w")
    with pytest.raises(ArchiveError, match="already exists"):
        unpack(good, target)
    evil = _tar(tmp_path / "evil.tar", [("new.txt", b"new"), ("../x", b"")], "w")
    with pytest.raises(ArchiveError):
        unpack(evil, target, replace=True)
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]  # previous state intact
    unpack(good, target, replace=True)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert _left_over(tmp_path) == ["evil.tar", "good.tar", "t"]


def test_not_an_archive_and_truncated(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not an archive at all" * 10)
    with pytest.raises(ArchiveError, match="neither a zip nor a tar"):
        unpack(junk, tmp_path / "t")
    whole = _tar(tmp_path / "whole.tar.gz", [("big", bytes(range(256)) * 4000)])
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ArchiveError):
        unpack(cut, tmp_path / "t")
    assert not (tmp_path / "t").exists()
    assert issubclass(ArchiveError, InvalidInput)


async def test_unpack_async(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", [("x.txt", b"hi")])
    assert await unpack_async(archive, tmp_path / "t") == ["x.txt"]


def test_strip_components_drops_the_top_folder(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path / "NapCat.Shell.zip",
        [
            ("NapCat.Shell/", b""),
            ("NapCat.Shell/napcat.mjs", b"js"),
            ("NapCat.Shell/config/onebot11.json", b"{}"),
            ("README-top.txt", b"x"),
        ],
    )
    target = tmp_path / "napcat"
    names = unpack(archive, target, strip_components=1)
    assert sorted(names) == ["config/onebot11.json", "napcat.mjs"]
    assert (target / "napcat.mjs").read_bytes() == b"js"
    tar = _tar(
        tmp_path / "t.tar",
        [
            ("top/a", b"a"),
            _info("top/b", tarfile.LNKTYPE, "top/a"),
            _info("top/up", tarfile.SYMTYPE, "../../x"),
        ],
        "w",
    )
    with pytest.raises(ArchiveError, match="points outside"):
        unpack(tar, tmp_path / "t", strip_components=1)
    with pytest.raises(ArchiveError, match="negative"):
        unpack(tar, tmp_path / "t", strip_components=-1)
    assert _left_over(tmp_path) == ["NapCat.Shell.zip", "napcat", "t.tar"]
