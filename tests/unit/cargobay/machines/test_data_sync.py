"""Transfer planning and the escape checks of ``machines.data_sync`` (host side runs on a
temporary directory; the guest side of a transfer is covered by the integration tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cargobay.errors import InvalidInput
from cargobay.machines.data_sync import Entry, check_link, check_member, host_manifest, plan
from cargobay.machines.data_transfer import _apply_host, _host_path, _link_host, _write_host


def f(data: bytes, mode: int = 0o644) -> Entry:
    import hashlib

    return Entry(type="file", size=len(data), mode=mode, sha256=hashlib.sha256(data).hexdigest())


D = Entry(type="dir", mode=0o755)


@pytest.mark.parametrize("rel", ["/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\0b"])
def test_escaping_member_names_are_refused(rel: str) -> None:
    with pytest.raises(InvalidInput, match="refused"):
        check_member(rel)
    with pytest.raises(InvalidInput, match="refused"):
        plan({"": D, rel: f(b"x")}, {}, only_changed=False)


@pytest.mark.parametrize(
    ("rel", "target"), [("a", "/etc"), ("a", ".."), ("d/a", "../../x"), ("a", "b/../../c")]
)
def test_links_pointing_outside_are_refused(rel: str, target: str) -> None:
    with pytest.raises(InvalidInput, match="points outside"):
        check_link(rel, target)
    link = Entry(type="symlink", target=target)
    with pytest.raises(InvalidInput, match="points outside"):
        plan({"d": D, rel: link}, {}, only_changed=False)
    # a target's own links may point anywhere: they are replaced, never followed
    p = plan({"d": D, rel: f(b"x")}, {"d": D, rel: link}, only_changed=True)
    assert p.remove == [rel]
    assert p.send == [rel]


def test_links_inside_are_kept() -> None:
    assert check_link("d/a", "../b") == "../b"
    assert check_link("a", "d/e") == "d/e"


def test_sync_sends_only_what_changed() -> None:
    source = {"a": f(b"1"), "d": D, "d/b": f(b"22"), "d/c": f(b"3", 0o755), "l": Entry(
        type="symlink", target="a")}  # fmt: skip
    target = {"a": f(b"1"), "d": D, "d/b": f(b"20"), "d/c": f(b"3"), "old": f(b"x")}
    p = plan(source, target, only_changed=True)
    assert p.skip == ["a", "d"]
    assert p.send == ["l", "d/b", "d/c"]  # changed content, changed mode, new link
    assert p.remove == []
    assert p.bytes == 3
    p = plan(source, target, only_changed=True, delete=True)
    assert p.remove == ["old"]
    p = plan(source, target, only_changed=False)
    assert p.skip == []
    assert sorted(p.send) == ["a", "d/b", "d/c", "l"]


def test_a_link_in_the_way_is_removed_before_writing_through_it() -> None:
    source = {"d": D, "d/x": f(b"x")}
    target = {"d": Entry(type="symlink", target="e"), "e": D}
    p = plan(source, target, only_changed=True)
    assert p.remove == ["d"]
    assert p.mkdirs == ["d"]
    assert p.send == ["d/x"]


def test_delete_removes_a_directory_once() -> None:
    p = plan({"": D}, {"": D, "d": D, "d/a": f(b"a"), "d/e": D}, only_changed=True, delete=True)
    assert p.remove == ["d"]


def test_host_manifest(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir(mode=0o750)
    (tmp_path / "d" / "a").write_bytes(b"hello")
    os.chmod(tmp_path / "d", 0o750)
    (tmp_path / "l").symlink_to("d/a")
    os.mkfifo(tmp_path / "fifo")
    m = host_manifest(tmp_path)
    assert set(m) == {"", "d", "d/a", "l"}  # the fifo is not transferred
    assert m["d"].mode == 0o750
    assert m["d/a"] == f(b"hello")
    assert m["l"].target == "d/a"
    assert host_manifest(tmp_path / "d" / "a") == {"": f(b"hello")}
    assert host_manifest(tmp_path / "missing") == {}


def test_host_writes_do_not_follow_links_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "sub").symlink_to(outside)
    with pytest.raises(InvalidInput, match="outside"):
        _host_path(root, "sub/passwd")
    with pytest.raises(InvalidInput, match="outside"):
        _write_host(root, "sub/passwd", b"pwned", 0o644)
    assert list(outside.iterdir()) == []
    # a link at the name itself is replaced, not written through
    (root / "name").symlink_to(outside / "victim")
    _write_host(root, "name", b"data", 0o600)
    assert not (outside / "victim").exists()
    assert (root / "name").read_bytes() == b"data"
    assert (root / "name").stat().st_mode & 0o777 == 0o600
    with pytest.raises(InvalidInput, match="points outside"):
        _link_host(root, "evil", "../outside")
    _apply_host(root, ["sub"], [("new", 0o700)])
    assert not os.path.lexists(root / "sub")
    assert outside.exists()
    assert (root / "new").stat().st_mode & 0o777 == 0o700
