-- 0003: the libvirt hosts of the pool (`cargobay host add|rm`), reconnected at daemon start.
CREATE TABLE hosts (
    id        TEXT PRIMARY KEY,
    uri       TEXT NOT NULL,
    tags      TEXT NOT NULL DEFAULT '[]',
    added_at  TEXT NOT NULL
);
