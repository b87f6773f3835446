"""Numbered schema migrations for the SQLite store, with a backup before each upgrade.

Migrations are SQL files ``NNNN_name.sql`` in ``cargobay/store/migrations/``, numbered
from 0001 without gaps.  The ``schema_version`` table holds one row per applied migration;
the database's version is the highest one.  Each migration runs in its own transaction
together with its ``schema_version`` row, so a failed migration leaves the database at
the previous version (SQLite DDL is transactional).

Before the first migration is applied to a database that already holds a schema (and so,
possibly, data), the whole database is copied with SQLite's online backup API to
``<db>.v<old version>-<UTC timestamp>.bak`` next to it: an upgrade that goes wrong, or a
downgrade of cargobay, can be undone by putting that file back.

A database whose version is higher than the newest migration this code knows was written
by a newer cargobay; opening it is refused rather than guessed at.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from cargobay.errors import StoreError

__all__ = [
    "Migration",
    "apply_migrations",
    "backup_database",
    "current_version",
    "load_migrations",
]

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_SCHEMA_VERSION_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default: the package's own), in order.

    Raises ``StoreError`` for a badly named file or a gap in the numbering: both are
    packaging mistakes that must not reach a user's database."""
    if directory is None:
        root = resources.files("cargobay.store").joinpath("migrations")
        entries = [(entry.name, entry.read_text(encoding="utf-8")) for entry in root.iterdir()]
    else:
        entries = [(p.name, p.read_text(encoding="utf-8")) for p in directory.iterdir()]
    migrations = []
    for filename, sql in entries:
        if not filename.endswith(".sql"):
            continue
        m = _FILE_RE.match(filename)
        if not m:
            raise StoreError(f"badly named migration file {filename!r}: expected NNNN_name.sql")
        migrations.append(Migration(int(m.group(1)), m.group(2), sql))
    migrations.sort(key=lambda mig: mig.version)
    for expected, mig in enumerate(migrations, start=1):
        if mig.version != expected:
            raise StoreError(
                f"migration {expected:04d} is missing (found {mig.version:04d}_{mig.name}.sql); "
                "the cargobay installation is incomplete: reinstall it"
            )
    return migrations


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version of an open database (0 for an empty one)."""
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return 0
    (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(version)


def backup_database(conn: sqlite3.Connection, db_path: Path, version: int) -> Path:
    """Copy the open database to ``<db>.v<version>-<timestamp>.bak`` and return the path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = db_path.with_name(f"{db_path.name}.v{version}-{stamp}.bak")
    try:
        dest = sqlite3.connect(target)
        try:
            conn.backup(dest)
        finally:
            dest.close()
    except sqlite3.Error as err:
        target.unlink(missing_ok=True)
        raise StoreError(
            f"could not back up {db_path} to {target} before upgrading it: {err}; "
            "free some disk space or check the permissions of that directory"
        ) from err
    return target


def apply_migrations(
    conn: sqlite3.Connection, db_path: Path, migrations: list[Migration]
) -> tuple[int, int, Path | None]:
    """Bring the database up to the newest migration.

    ``conn`` must be in autocommit mode (``isolation_level=None``): each migration is run
    between an explicit ``BEGIN IMMEDIATE`` and ``COMMIT``.  Returns ``(old version, new
    version, backup path or None)``."""
    newest = migrations[-1].version if migrations else 0
    old = current_version(conn)
    if old > newest:
        raise StoreError(
            f"the database {db_path} has schema version {old}, but this cargobay only knows "
            f"versions up to {newest}: it was written by a newer cargobay; upgrade cargobay"
        )
    if old == newest:
        return old, old, None
    backup = backup_database(conn, db_path, old) if old > 0 else None
    for mig in migrations[old:]:
        try:
            # executescript runs the statements as written; the explicit BEGIN/COMMIT make
            # the migration and its schema_version row one transaction.
            conn.executescript(
                "BEGIN IMMEDIATE;\n"
                + _SCHEMA_VERSION_DDL
                + ";\n"
                + mig.sql
                + "\n;INSERT INTO schema_version (version, name, applied_at) VALUES ("
                + f"{mig.version}, '{mig.name}', '{datetime.now(UTC).isoformat()}');\n"
                + "COMMIT;"
            )
        except sqlite3.Error as err:
            if conn.in_transaction:
                conn.rollback()
            where = f"; a backup of the previous database is at {backup}" if backup else ""
            raise StoreError(
                f"migration {mig.version:04d}_{mig.name} failed on {db_path}: {err}{where}"
            ) from err
    return old, newest, backup
