"""Import an older MAI launcher database (its Python/SQLAlchemy backend) into the store.

The older schema (see ``tests/fixtures/legacy_launcher.sql`` for a full example) has an
``instances`` table without ``deploy_mode`` (id, name, version, path, status, host, port,
token, created_at, updated_at), a ``services`` table (the processes of an instance:
maibot, adapter, napcat, each with path, status, port, run_cmd), a ``deployments``
history and Alembic's ``alembic_version``.  Column sets vary between releases, so rows
are read by column name and unknown columns are kept.

The import (seed 002, section 8.1):

- opens the old file read-only and first copies it, with SQLite's backup API, to
  ``<file>.legacy-<UTC time>.bak`` next to it; the old file itself is never changed;
- makes every old instance a ``local`` instance: ``path`` becomes ``paths["app"]``, the
  services' ports ``ports[<service>]``, and everything else (the original name, status,
  host/port, token, the service and deployment rows) goes into ``Instance.legacy``;
- a name that is not a valid instance name (spaces, CJK, capitals) is turned into one
  (the original stays in ``legacy["name"]`` and in the description);
- accounts for every row: the report counts rows per table read and where they went
  (instances, attached to an instance, or kept in the report as unattached), and the
  counts must add up or nothing is written;
- is recorded by the file's SHA-256, so a second run of the same file is a no-op that
  returns the first report; everything is written in one transaction.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cargobay.apps.models import NAME_RE, DeployMode, Instance, InstanceStatus
from cargobay.apps.store import AppStore
from cargobay.errors import AppInputError, StoreError

__all__ = ["import_legacy", "legacy_name"]

_KNOWN_INSTANCE_COLUMNS = {"id", "name", "version", "path", "status", "created_at", "updated_at"}


def legacy_name(name: str, instance_id: str, taken: Callable[[str], bool]) -> str:
    """A valid instance name for an old one: lower-cased, other characters as ``-``; a
    name with no usable character becomes ``legacy-<hash of id>``; ``-2``, ``-3`` ... until
    ``taken`` says no."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")[:40]
    if not slug or not NAME_RE.match(slug):
        slug = "legacy-" + hashlib.sha256(instance_id.encode()).hexdigest()[:8]
    candidate, n = slug, 1
    while taken(candidate):
        n += 1
        candidate = f"{slug}-{n}"
    return candidate


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _time(value: Any) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)  # SQLAlchemy: naive UTC


def _rows(conn: sqlite3.Connection, table: str) -> list[dict[str, Any]]:
    cursor = conn.execute(f'SELECT * FROM "{table}"')
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _backup(source: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = source.with_name(f"{source.name}.legacy-{stamp}.bak")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    except sqlite3.Error as err:
        target.unlink(missing_ok=True)
        raise StoreError(f"cannot back up {source} to {target}: {err}") from err
    finally:
        src.close()
    return target


def import_legacy(store: AppStore, source: Path) -> dict[str, Any]:
    """Import ``source`` (see the module docstring); the report: ``imported`` (names),
    ``tables`` (rows read per table), ``accounted`` (where each went), ``backup``,
    ``already_imported`` (True on a repeated run)."""
    if not source.is_file():
        raise AppInputError(f"no legacy launcher database at {source}")
    sha = _sha256(source)
    previous = store.legacy_import(sha)
    if previous is not None:
        return {**previous, "already_imported": True}
    try:
        conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    except sqlite3.Error as err:
        raise AppInputError(f"cannot open {source}: {err}") from err
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        if "instances" not in tables:
            raise AppInputError(
                f"{source} is not an older MAI launcher database (it has no instances table)"
            )
        data = {table: _rows(conn, table) for table in tables}
    except sqlite3.DatabaseError as err:
        raise AppInputError(f"cannot read {source}: {err}") from err
    finally:
        conn.close()

    existing = {i.name for i in store.list()}
    existing_ids = {i.id for i in store.list()}
    chosen: set[str] = set()
    by_old_id: dict[str, Instance] = {}
    accounted: dict[str, dict[str, int]] = {t: {} for t in data}

    def count(table: str, where: str) -> None:
        accounted[table][where] = accounted[table].get(where, 0) + 1

    for row in data["instances"]:
        old_id = str(row["id"])
        name = legacy_name(
            str(row.get("name") or ""), old_id, lambda n: n in existing or n in chosen
        )
        chosen.add(name)
        new_id = re.sub(r"[^0-9a-f]", "", old_id.lower())[-12:] or None
        if new_id is None or new_id in existing_ids:
            new_id = hashlib.sha256(old_id.encode()).hexdigest()[:12]
        extra = {k: v for k, v in row.items() if k not in _KNOWN_INSTANCE_COLUMNS}
        original = str(row.get("name") or "")
        instance = Instance(
            id=new_id,
            name=name,
            version=str(row.get("version") or "latest")[:64],
            description=f"imported from the older launcher as {original!r}",
            deploy_mode=DeployMode.LOCAL,
            status=InstanceStatus.STOPPED,
            paths={"app": str(row["path"])} if row.get("path") else {},
            created_at=_time(row.get("created_at")),
            updated_at=_time(row.get("updated_at") or row.get("created_at")),
            legacy={
                "id": old_id,
                "name": original,
                "status": row.get("status"),
                **extra,
                "services": [],
                "deployments": [],
            },
        )
        by_old_id[old_id] = instance
        count("instances", "instances")

    unattached: dict[str, list[dict[str, Any]]] = {}
    for table, rows in data.items():
        if table == "instances":
            continue
        for row in rows:
            owner = by_old_id.get(str(row.get("instance_id"))) if "instance_id" in row else None
            if owner is not None:
                owner.legacy.setdefault(table, []).append(row)
                if table == "services" and row.get("port") and row.get("name"):
                    owner.ports[str(row["name"])] = int(row["port"])
                count(table, "attached")
            else:
                unattached.setdefault(table, []).append(row)
                count(table, "unattached")

    read = {table: len(rows) for table, rows in data.items()}
    for table, n in read.items():
        if sum(accounted[table].values()) != n:  # an invariant: never write a lossy import
            raise StoreError(f"legacy import of {source}: table {table} lost rows")
    backup = _backup(source)
    report: dict[str, Any] = {
        "imported": [i.name for i in by_old_id.values()],
        "renamed": {
            i.legacy["name"]: i.name for i in by_old_id.values() if i.legacy["name"] != i.name
        },
        "tables": read,
        "accounted": accounted,
        "unattached": unattached,
    }
    try:
        store.import_instances(
            list(by_old_id.values()),
            sha256=sha,
            source=str(source),
            backup=str(backup),
            report=report,
        )
    except BaseException:
        backup.unlink(missing_ok=True)
        raise
    return {**report, "source": str(source), "backup": str(backup), "already_imported": False}
