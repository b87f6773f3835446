-- 0001: machines.  One row per machine; config and runtime are JSON documents of
-- cargobay.machines.models.VMConfig / RuntimeInfo so new fields need no migration.
CREATE TABLE machines (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL,
    reason      TEXT,
    config      TEXT NOT NULL,
    runtime     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
