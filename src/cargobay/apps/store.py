"""App instances in the daemon's SQLite store (migration 0004_apps.sql).

Each instance is stored as its JSON document plus the columns that are looked up or must
be unique (id, name, deploy_mode).  A name clash is an :class:`AppConflict` naming the
instance; a missing one an :class:`AppNotFound`.  The store's own connection and
transaction helper are used, so app rows share its WAL database, lock and backups.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cargobay.apps.models import Instance, utcnow
from cargobay.errors import AppConflict, AppNotFound, StoreError
from cargobay.store.sqlite import Store

__all__ = ["AppStore"]


class AppStore:
    """Instance CRUD on a :class:`Store` (whose migrations include 0004)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.store._lock:
            return list(self.store._conn.execute(sql, args).fetchall())

    def insert(self, instance: Instance) -> Instance:
        try:
            with self.store._tx() as conn:
                conn.execute(
                    "INSERT INTO app_instances (id, name, deploy_mode, doc, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        instance.id,
                        instance.name,
                        instance.deploy_mode.value,
                        instance.model_dump_json(),
                        instance.created_at.isoformat(),
                        instance.updated_at.isoformat(),
                    ),
                )
        except sqlite3.IntegrityError as err:
            raise AppConflict(
                f"an app instance named {instance.name!r} already exists; "
                "choose another name or remove it with `cargobay app rm`"
            ) from err
        except sqlite3.Error as err:
            raise StoreError(f"cannot save app instance {instance.name}: {err}") from err
        return instance

    def save(self, instance: Instance) -> Instance:
        """Write back a changed instance (its ``updated_at`` is set now)."""
        instance = instance.model_copy(update={"updated_at": utcnow()})
        try:
            with self.store._tx() as conn:
                changed = conn.execute(
                    "UPDATE app_instances SET name = ?, deploy_mode = ?, doc = ?, updated_at = ? "
                    "WHERE id = ?",
                    (
                        instance.name,
                        instance.deploy_mode.value,
                        instance.model_dump_json(),
                        instance.updated_at.isoformat(),
                        instance.id,
                    ),
                ).rowcount
        except sqlite3.IntegrityError as err:
            raise AppConflict(f"an app instance named {instance.name!r} already exists") from err
        except sqlite3.Error as err:
            raise StoreError(f"cannot save app instance {instance.name}: {err}") from err
        if not changed:
            raise AppNotFound(f"no app instance {instance.name!r} (it was removed)")
        return instance

    def find(self, name_or_id: str) -> Instance | None:
        rows = self._read(
            "SELECT doc FROM app_instances WHERE name = ? OR id = ? ORDER BY name = ? DESC",
            (name_or_id, name_or_id, name_or_id),
        )
        return Instance.model_validate_json(rows[0][0]) if rows else None

    def get(self, name_or_id: str) -> Instance:
        found = self.find(name_or_id)
        if found is None:
            raise AppNotFound(f"no app instance {name_or_id!r}; `cargobay app ls` lists them")
        return found

    def list(self) -> list[Instance]:
        rows = self._read("SELECT doc FROM app_instances ORDER BY name")
        return [Instance.model_validate_json(r[0]) for r in rows]

    def delete(self, instance_id: str) -> bool:
        try:
            with self.store._tx() as conn:
                return (
                    conn.execute("DELETE FROM app_instances WHERE id = ?", (instance_id,)).rowcount
                    > 0
                )
        except sqlite3.Error as err:
            raise StoreError(f"cannot delete app instance {instance_id}: {err}") from err

    # -- legacy imports -----------------------------------------------------------------

    def legacy_import(self, sha256: str) -> dict[str, Any] | None:
        rows = self._read(
            "SELECT source, backup, report, imported_at FROM app_legacy_imports WHERE sha256 = ?",
            (sha256,),
        )
        if not rows:
            return None
        source, backup, report, at = rows[0]
        return {"source": source, "backup": backup, "imported_at": at, **json.loads(report)}

    def import_instances(
        self,
        instances: Sequence[Instance],
        *,
        sha256: str,
        source: str,
        backup: str,
        report: dict[str, Any],
    ) -> None:
        """Insert imported instances and record the import, all in one transaction: a
        clash leaves nothing half-imported."""
        try:
            with self.store._tx() as conn:
                for instance in instances:
                    try:
                        conn.execute(
                            "INSERT INTO app_instances (id, name, deploy_mode, doc, created_at, "
                            "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                            (
                                instance.id,
                                instance.name,
                                instance.deploy_mode.value,
                                instance.model_dump_json(),
                                instance.created_at.isoformat(),
                                instance.updated_at.isoformat(),
                            ),
                        )
                    except sqlite3.IntegrityError as err:
                        raise AppConflict(
                            f"cannot import legacy instance {instance.name!r}: an app instance "
                            "with that name or id already exists; rename or remove it first"
                        ) from err
                conn.execute(
                    "INSERT INTO app_legacy_imports (sha256, source, backup, report, "
                    "imported_at) VALUES (?, ?, ?, ?, ?)",
                    (sha256, source, backup, json.dumps(report), datetime.now(UTC).isoformat()),
                )
        except sqlite3.Error as err:
            raise StoreError(f"cannot import {source}: {err}") from err
