"""The snapshot directory layout: tags, atomic commit, sweep of crash leftovers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cargobay.errors import Conflict, InvalidInput, NotFound
from cargobay.machines.snapshots import SnapshotDir, SnapshotInfo, check_tag, new_tag


def info(tag: str) -> SnapshotInfo:
    return SnapshotInfo(
        tag=tag,
        machine="m",
        created_at=datetime.now(UTC),
        cpus=1,
        memory_mb=256,
        image="default",
        backend="qemu",
    )


@pytest.mark.parametrize("tag", ["", "../x", "a/b", ".hidden", "x" * 64, "a b"])
def test_bad_tags_are_refused(tag: str) -> None:
    with pytest.raises(InvalidInput):
        check_tag(tag)


def test_generated_tags_are_valid_and_ordered() -> None:
    a = new_tag(datetime(2026, 1, 1, tzinfo=UTC))
    b = new_tag(datetime(2026, 1, 2, tzinfo=UTC))
    assert check_tag(a) == a
    assert a < b


def test_commit_is_atomic_and_sweep_removes_partials(tmp_path: Path) -> None:
    snaps = SnapshotDir(tmp_path, "m")
    partial = snaps.begin("t1")
    (partial / "state").write_bytes(b"x" * 5000)
    assert snaps.list() == []  # a partial snapshot is not a snapshot
    with pytest.raises(NotFound, match="no snapshot 't1'"):
        snaps.get("t1")
    committed = snaps.commit("t1", info("t1"))
    assert committed.size_bytes >= 5000
    assert [s.tag for s in snaps.list()] == ["t1"]
    with pytest.raises(Conflict):
        snaps.begin("t1")
    snaps.begin("t2")  # a crash here leaves t2.partial
    snaps.sweep()
    assert sorted(p.name for p in snaps.root.iterdir()) == ["t1"]
    snaps.mark_template("t1")
    assert snaps.get("t1").template
    snaps.delete("t1")
    assert snaps.list() == []
    with pytest.raises(NotFound):
        snaps.delete("t1")
