-- Snapshots: the latest folded state of each stream, replaceable only by a snapshot at the same or
-- a later stream version (the upsert in PgSnapshotStore::save says so).
CREATE TABLE snapshots (
    stream_id      TEXT PRIMARY KEY,
    stream_version BIGINT NOT NULL CHECK (stream_version >= 0),
    state_version  INT NOT NULL CHECK (state_version >= 0),
    state          JSONB NOT NULL,
    taken_at       TIMESTAMPTZ NOT NULL
);
