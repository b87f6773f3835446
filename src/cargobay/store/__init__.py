"""cargobay.store: the daemon's SQLite store (WAL, numbered migrations, backup before upgrade)."""

from cargobay.store.migrate import Migration, current_version, load_migrations
from cargobay.store.sqlite import MachineEvent, Store

__all__ = ["MachineEvent", "Migration", "Store", "current_version", "load_migrations"]
