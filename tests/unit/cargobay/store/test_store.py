"""The SQLite store: migrations (fresh, upgrade with backup, too new, failing), machine rows,
state transitions and their history."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargobay.errors import Conflict, NotFound, StoreError
from cargobay.machines.models import (
    PortForward,
    RuntimeInfo,
    VMConfig,
    VMInstance,
    VMState,
    VMStateKind,
)
from cargobay.store import Migration, Store, current_version, load_migrations

RUNNING = VMState(kind=VMStateKind.RUNNING)
STOPPING = VMState(kind=VMStateKind.STOPPING)
STOPPED = VMState(kind=VMStateKind.STOPPED)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "cargobay.db")
    yield s
    s.close()


def _make_v1_database(path: Path) -> None:
    """A database as cargobay with only migration 0001 left it, with one machine in it."""
    first = load_migrations()[0]
    assert first.version == 1
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at TEXT NOT NULL);" + first.sql
    )
    conn.execute("INSERT INTO schema_version VALUES (1, 'machines', '2024-01-01T00:00:00+00:00')")
    conn.execute(
        "INSERT INTO machines VALUES (?,?,?,?,?,?,?,?)",
        (
            "0123456789abcdef0123456789abcdef",
            "old-box",
            "stopped",
            None,
            '{"cpus": 2, "memory_mb": 384, "disk_mb": 1024, "image": "default"}',
            "{}",
            "2024-01-01T00:00:00+00:00",
            "2024-01-01T00:00:00+00:00",
        ),
    )
    conn.commit()
    conn.close()


def test_fresh_database_is_wal_at_newest_version_without_backup(tmp_path: Path) -> None:
    db = tmp_path / "cargobay.db"
    s = Store.open(db)
    try:
        assert s.schema_version == len(load_migrations()) >= 2
        assert s.upgraded_from is None
        assert s.backup_path is None
    finally:
        s.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == list(range(1, len(load_migrations()) + 1))
    conn.close()
    assert list(tmp_path.glob("*.bak")) == []


def test_old_database_is_upgraded_and_a_backup_kept(tmp_path: Path) -> None:
    db = tmp_path / "cargobay.db"
    _make_v1_database(db)
    s = Store.open(db)
    try:
        assert s.upgraded_from == 1
        assert s.schema_version == len(load_migrations())
        backup = s.backup_path
        assert backup is not None
        assert backup.parent == tmp_path
        assert backup.name.startswith("cargobay.db.v1-")
        assert backup.name.endswith(".bak")
        # The old row survives and is readable by the new code.
        vm = s.get_machine("old-box")
        assert vm.config.cpus == 2
        assert vm.config.memory_mb == 384
        assert vm.state.kind is VMStateKind.STOPPED
        # The new table works for the old row.
        started = s.transition(vm, VMState(kind=VMStateKind.CREATING))
        assert [e.to_state for e in s.events(vm.id)] == [VMStateKind.CREATING]
        assert started.state.kind is VMStateKind.CREATING
    finally:
        s.close()
    # The backup is the database as it was: version 1 with the machine.
    conn = sqlite3.connect(backup)
    assert current_version(conn) == 1
    assert conn.execute("SELECT name, state FROM machines").fetchall() == [("old-box", "stopped")]
    assert (
        conn.execute("SELECT name FROM sqlite_master WHERE name = 'machine_events'").fetchone()
        is None
    )
    conn.close()
    # Opening again does not upgrade or back up again.
    again = Store.open(db)
    assert again.upgraded_from is None
    again.close()
    assert len(list(tmp_path.glob("*.bak"))) == 1


def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "cargobay.db"
    Store.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO schema_version VALUES (99, 'future', '2099-01-01T00:00:00+00:00')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="upgrade cargobay") as info:
        Store.open(db)
    assert "99" in str(info.value)
    assert list(tmp_path.glob("*.bak")) == []


def test_failing_migration_rolls_back_and_keeps_the_backup(tmp_path: Path) -> None:
    db = tmp_path / "cargobay.db"
    first = load_migrations()[0]
    Store.open(db, migrations=[first]).close()
    broken = Migration(2, "broken", "CREATE TABLE half (x INTEGER);\nTHIS IS NOT SQL;")
    with pytest.raises(StoreError, match="0002_broken") as info:
        Store.open(db, migrations=[first, broken])
    assert "backup" in str(info.value)
    conn = sqlite3.connect(db)
    assert current_version(conn) == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    conn.close()
    assert len(list(tmp_path.glob("cargobay.db.v1-*.bak"))) == 1


def test_migration_files_are_numbered_without_gaps(tmp_path: Path) -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x);")
    (tmp_path / "0003_c.sql").write_text("CREATE TABLE c (x);")
    with pytest.raises(StoreError, match="0002 is missing"):
        load_migrations(tmp_path)
    (tmp_path / "0003_c.sql").unlink()
    (tmp_path / "2_bad-name.sql").write_text("")
    with pytest.raises(StoreError, match="badly named"):
        load_migrations(tmp_path)


def test_garbage_file_is_a_store_error(tmp_path: Path) -> None:
    db = tmp_path / "cargobay.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="unreadable"):
        Store.open(db)


def test_machine_round_trip(store: Store) -> None:
    vm = VMInstance(
        name="box",
        config=VMConfig(cpus=2, memory_mb=256, ports=(PortForward(host=8080, guest=80),)),
    )
    store.insert_machine(vm)
    got = store.get_machine("box")
    assert got == vm
    assert store.get_machine_by_id(vm.id) == vm
    assert store.find_machine("nope") is None
    assert [m.name for m in store.list_machines()] == ["box"]
    runtime = RuntimeInfo(handle={"pid": 42}, accel="tcg")
    saved = store.save_machine(got.model_copy(update={"runtime": runtime}))
    assert store.get_machine("box").runtime == runtime
    assert saved.updated_at >= vm.updated_at


def test_duplicate_name_is_a_conflict(store: Store) -> None:
    store.insert_machine(VMInstance(name="box"))
    with pytest.raises(Conflict, match="already exists"):
        store.insert_machine(VMInstance(name="box"))
    assert len(store.list_machines()) == 1


def test_unknown_machine_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="no machine named 'ghost'"):
        store.get_machine("ghost")


def test_transitions_are_checked_and_recorded(store: Store) -> None:
    vm = VMInstance(name="box")
    store.insert_machine(vm)
    vm = store.transition(vm, RUNNING)
    with pytest.raises(Conflict, match="cannot become stopped"):
        store.transition(vm, STOPPED)
    vm = store.transition(vm, STOPPING)
    vm = store.transition(vm, VMState.error("it broke"))
    assert store.get_machine("box").state == VMState.error("it broke")
    events = store.events(vm.id)
    assert [(e.from_state, e.to_state) for e in events] == [
        (None, VMStateKind.CREATING),
        (VMStateKind.CREATING, VMStateKind.RUNNING),
        (VMStateKind.RUNNING, VMStateKind.STOPPING),
        (VMStateKind.STOPPING, VMStateKind.ERROR),
    ]
    assert events[-1].reason == "it broke"


def test_transition_from_a_stale_state_is_a_conflict(store: Store) -> None:
    vm = VMInstance(name="box")
    store.insert_machine(vm)
    store.transition(vm, RUNNING)
    # ``vm`` still says CREATING; the stored state moved on.
    with pytest.raises(Conflict, match="meanwhile"):
        store.transition(vm, VMState.error("late"))
    assert store.get_machine("box").state == RUNNING


def test_transition_of_a_deleted_machine_is_not_found(store: Store) -> None:
    vm = VMInstance(name="box")
    store.insert_machine(vm)
    assert store.delete_machine(vm.id)
    with pytest.raises(NotFound):
        store.transition(vm, RUNNING)
    assert not store.delete_machine(vm.id)


def test_delete_removes_the_history(store: Store) -> None:
    vm = VMInstance(name="box")
    store.insert_machine(vm)
    store.transition(vm, RUNNING)
    store.delete_machine(vm.id)
    assert store.events(vm.id) == []
    assert store.list_machines() == []


def test_state_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "cargobay.db"
    s = Store.open(db)
    vm = VMInstance(name="box")
    s.insert_machine(vm)
    s.transition(vm, RUNNING, RuntimeInfo(handle={"pid": 7}))
    s.close()
    s = Store.open(db)
    got = s.get_machine("box")
    s.close()
    assert got.state == RUNNING
    assert got.runtime.handle == {"pid": 7}
