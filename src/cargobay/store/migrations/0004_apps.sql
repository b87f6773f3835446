-- 0004: the MAI launcher's app instances (cargobay.apps).  The whole instance is a JSON
-- document in `doc`; the columns that are looked up or must be unique are copied out.
CREATE TABLE app_instances (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    deploy_mode  TEXT NOT NULL CHECK (deploy_mode IN ('local', 'docker', 'wsl2_docker')),
    doc          TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

-- one row per older launcher database imported (cargobay.apps.legacy): a second import of
-- the same file (same SHA-256) is a no-op.
CREATE TABLE app_legacy_imports (
    sha256       TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    backup       TEXT NOT NULL,
    report       TEXT NOT NULL,
    imported_at  TEXT NOT NULL
);
