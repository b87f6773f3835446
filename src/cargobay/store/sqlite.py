"""The daemon's persistent state: machines and their state history, in SQLite.

One database file (``Paths.db``) in WAL mode, so readers never block the writer and a
crash mid-write loses nothing that was committed.  The schema is versioned by numbered
migrations (``cargobay.store.migrate``), applied when the store opens.

Every write is one transaction.  A state change (``transition``) checks the allowed edges
of the machine state machine, compares the stored state with the one the caller read
(so two writers cannot silently overwrite each other) and records the change in
``machine_events`` in the same transaction.

Calls are short (a few rows on a local file) and synchronous; the connection is shared
under a lock, so callers may also use it from ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cargobay.errors import Conflict, NotFound, StoreError
from cargobay.machines.models import (
    RuntimeInfo,
    VMConfig,
    VMInstance,
    VMState,
    VMStateKind,
    check_transition,
)
from cargobay.store.migrate import Migration, apply_migrations, load_migrations

__all__ = ["MachineEvent", "Store"]

_COLUMNS = "id, name, state, reason, config, runtime, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class MachineEvent:
    """One persisted state change of a machine."""

    seq: int
    machine_id: str
    at: datetime
    from_state: VMStateKind | None
    to_state: VMStateKind
    reason: str | None


class Store:
    """The SQLite store.  ``Store.open(path)`` creates or upgrades the database."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()
        self.upgraded_from: int | None = None
        """The schema version before this open upgraded it (None: no upgrade)."""
        self.backup_path: Path | None = None
        """The backup made before the upgrade, if any."""

    @classmethod
    def open(cls, path: Path, migrations: list[Migration] | None = None) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        except sqlite3.Error as err:
            raise StoreError(f"cannot open the database {path}: {err}") from err
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"the database {path} cannot use WAL mode (got {mode!r}); "
                    "put the state directory on a local filesystem"
                )
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            old, new, backup = apply_migrations(
                conn, path, load_migrations() if migrations is None else migrations
            )
        except sqlite3.DatabaseError as err:
            conn.close()
            raise StoreError(
                f"the database {path} is unreadable ({err}); move it away and restart cargobayd "
                "(machines it listed must then be cleaned up by hand)"
            ) from err
        except BaseException:
            conn.close()
            raise
        store = cls(conn, path)
        if new != old and old > 0:
            store.upgraded_from = old
            store.backup_path = backup
        return store

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            return int(row.fetchone()[0])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise StoreError(f"cannot write to the database {self.path}: {err}") from err
            try:
                yield self._conn
            except BaseException:
                self._conn.rollback()
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as err:
                self._conn.rollback()
                raise StoreError(f"cannot write to the database {self.path}: {err}") from err

    # -- machines -------------------------------------------------------------------------

    def insert_machine(self, vm: VMInstance) -> None:
        """Add a new machine; ``Conflict`` if its name (or id) is taken."""
        try:
            with self._tx() as conn:
                conn.execute(
                    f"INSERT INTO machines ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", _row(vm)
                )
                _event(conn, vm.id, None, vm.state)
        except sqlite3.IntegrityError as err:
            raise Conflict(
                f"a machine named {vm.name!r} already exists; choose another name "
                f"or remove it with `cargobay vm rm {vm.name}`"
            ) from err
        except sqlite3.Error as err:
            raise StoreError(f"cannot save machine {vm.name!r}: {err}") from err

    def save_machine(self, vm: VMInstance) -> VMInstance:
        """Write config and runtime of ``vm`` (not its state: use ``transition`` for that)."""
        vm = vm.model_copy(update={"updated_at": datetime.now(UTC)})
        try:
            with self._tx() as conn:
                cur = conn.execute(
                    "UPDATE machines SET config = ?, runtime = ?, updated_at = ? WHERE id = ?",
                    (
                        vm.config.model_dump_json(),
                        vm.runtime.model_dump_json(),
                        vm.updated_at.isoformat(),
                        vm.id,
                    ),
                )
                if cur.rowcount == 0:
                    raise NotFound(f"machine {vm.name!r} no longer exists")
        except sqlite3.Error as err:
            raise StoreError(f"cannot save machine {vm.name!r}: {err}") from err
        return vm

    def transition(
        self, vm: VMInstance, new: VMState, runtime: RuntimeInfo | None = None
    ) -> VMInstance:
        """Persist ``vm``'s move to state ``new`` (and optionally a new runtime record).

        Refuses an edge the state machine does not allow, and a machine whose stored
        state is no longer ``vm.state`` (someone else changed it).  Returns the updated
        instance."""
        check_transition(vm.name, vm.state.kind, new.kind)
        updated = vm.model_copy(
            update={
                "state": new,
                "runtime": vm.runtime if runtime is None else runtime,
                "updated_at": datetime.now(UTC),
            }
        )
        try:
            with self._tx() as conn:
                cur = conn.execute(
                    "UPDATE machines SET state = ?, reason = ?, runtime = ?, updated_at = ? "
                    "WHERE id = ? AND state = ? AND reason IS ?",
                    (
                        new.kind.value,
                        new.reason,
                        updated.runtime.model_dump_json(),
                        updated.updated_at.isoformat(),
                        vm.id,
                        vm.state.kind.value,
                        vm.state.reason,
                    ),
                )
                if cur.rowcount == 0:
                    stored = self._get(conn, "id", vm.id)
                    if stored is None:
                        raise NotFound(f"machine {vm.name!r} no longer exists")
                    raise Conflict(
                        f"machine {vm.name!r} changed to {stored.state} meanwhile; try again"
                    )
                _event(conn, vm.id, vm.state.kind, new)
        except sqlite3.Error as err:
            raise StoreError(f"cannot save the state of machine {vm.name!r}: {err}") from err
        return updated

    def find_machine(self, name: str) -> VMInstance | None:
        with self._lock:
            return self._get(self._conn, "name", name)

    def get_machine(self, name: str) -> VMInstance:
        vm = self.find_machine(name)
        if vm is None:
            raise NotFound(f"no machine named {name!r}; list machines with `cargobay vm status`")
        return vm

    def get_machine_by_id(self, machine_id: str) -> VMInstance | None:
        with self._lock:
            return self._get(self._conn, "id", machine_id)

    def list_machines(self) -> list[VMInstance]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM machines ORDER BY created_at, name"
            ).fetchall()
        return [_instance(row) for row in rows]

    def delete_machine(self, machine_id: str) -> bool:
        """Remove a machine and its history; False if it did not exist."""
        try:
            with self._tx() as conn:
                cur = conn.execute("DELETE FROM machines WHERE id = ?", (machine_id,))
                return cur.rowcount > 0
        except sqlite3.Error as err:
            raise StoreError(f"cannot delete machine {machine_id}: {err}") from err

    # -- libvirt hosts of the pool ----------------------------------------------------------

    def insert_host(self, host_id: str, uri: str, tags: list[str]) -> None:
        """Remember a pool host; ``Conflict`` if the id is taken."""
        try:
            with self._tx() as conn:
                conn.execute(
                    "INSERT INTO hosts (id, uri, tags, added_at) VALUES (?, ?, ?, ?)",
                    (host_id, uri, json.dumps(tags), datetime.now(UTC).isoformat()),
                )
        except sqlite3.IntegrityError as err:
            raise Conflict(f"host {host_id!r} already exists") from err
        except sqlite3.Error as err:
            raise StoreError(f"cannot save host {host_id}: {err}") from err

    def delete_host(self, host_id: str) -> bool:
        try:
            with self._tx() as conn:
                return conn.execute("DELETE FROM hosts WHERE id = ?", (host_id,)).rowcount > 0
        except sqlite3.Error as err:
            raise StoreError(f"cannot delete host {host_id}: {err}") from err

    def list_hosts(self) -> list[tuple[str, str, list[str]]]:
        """``(id, uri, tags)`` of every saved host, in the order they were added."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, uri, tags FROM hosts ORDER BY added_at, id"
            ).fetchall()
        return [(str(r[0]), str(r[1]), list(json.loads(r[2]))) for r in rows]

    def events(self, machine_id: str) -> list[MachineEvent]:
        """The machine's state history, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, machine_id, at, from_state, to_state, reason FROM machine_events "
                "WHERE machine_id = ? ORDER BY seq",
                (machine_id,),
            ).fetchall()
        return [
            MachineEvent(
                seq=seq,
                machine_id=mid,
                at=datetime.fromisoformat(at),
                from_state=VMStateKind(frm) if frm else None,
                to_state=VMStateKind(to),
                reason=reason,
            )
            for seq, mid, at, frm, to, reason in rows
        ]

    @staticmethod
    def _get(conn: sqlite3.Connection, column: str, value: str) -> VMInstance | None:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM machines WHERE {column} = ?", (value,)
        ).fetchone()
        return _instance(row) if row else None


def _row(vm: VMInstance) -> tuple[str | None, ...]:
    return (
        vm.id,
        vm.name,
        vm.state.kind.value,
        vm.state.reason,
        vm.config.model_dump_json(),
        vm.runtime.model_dump_json(),
        vm.created_at.isoformat(),
        vm.updated_at.isoformat(),
    )


def _instance(row: tuple[str, ...]) -> VMInstance:
    mid, name, state, reason, config, runtime, created_at, updated_at = row
    try:
        return VMInstance(
            id=mid,
            name=name,
            state=VMState(kind=VMStateKind(state), reason=reason),
            config=VMConfig.model_validate(json.loads(config)),
            runtime=RuntimeInfo.model_validate(json.loads(runtime)),
            created_at=datetime.fromisoformat(created_at),
            updated_at=datetime.fromisoformat(updated_at),
        )
    except ValueError as err:
        raise StoreError(
            f"the stored record of machine {name!r} is unreadable ({err}); "
            "was the database written by another cargobay version? upgrade cargobay"
        ) from err


def _event(
    conn: sqlite3.Connection, machine_id: str, old: VMStateKind | None, new: VMState
) -> None:
    conn.execute(
        "INSERT INTO machine_events (machine_id, at, from_state, to_state, reason) "
        "VALUES (?, ?, ?, ?, ?)",
        (
            machine_id,
            datetime.now(UTC).isoformat(),
            old.value if old else None,
            new.kind.value,
            new.reason,
        ),
    )
