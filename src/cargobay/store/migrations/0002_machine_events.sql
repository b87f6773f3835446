-- 0002: the history of every state transition, written in the same transaction as the
-- machine row, so "what happened to this machine" survives daemon restarts.
CREATE TABLE machine_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id  TEXT NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    at          TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    reason      TEXT
);
CREATE INDEX machine_events_machine ON machine_events(machine_id, seq);
