-- The event store on SQLite: the append-only log, each stream's current version, the idempotency
-- records written in the same transaction as the events, and the snapshots.
--
-- Why positions need no counter here: SQLite has one writer at a time, and every append runs in
-- a `BEGIN IMMEDIATE` transaction, which takes the write lock before its first read. An append
-- numbers its events after the highest position in the table, so positions are dense and follow
-- commit order: a reader can never pass over an event that commits later (the gap problem of
-- PostgreSQL's concurrent writers does not exist on a single-writer database).
--
-- Times are INTEGER microseconds since the Unix epoch, UTC (PostgreSQL's precision, and an
-- order that sorts); UUIDs are hyphenated TEXT; JSON is TEXT.

CREATE TABLE streams (
    stream_id TEXT PRIMARY KEY,
    version   INTEGER NOT NULL CHECK (version >= 0)
) WITHOUT ROWID;

CREATE TABLE events (
    -- An alias of the rowid: position lookups and range scans are on the table's own b-tree.
    global_position INTEGER PRIMARY KEY CHECK (global_position >= 1),
    event_id        TEXT NOT NULL UNIQUE,
    stream_id       TEXT NOT NULL,
    stream_version  INTEGER NOT NULL CHECK (stream_version >= 1),
    event_type      TEXT NOT NULL,
    schema_version  INTEGER NOT NULL CHECK (schema_version >= 0),
    data            TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    recorded_at     INTEGER NOT NULL,
    -- The last line of defence of optimistic concurrency; its index serves stream reads.
    UNIQUE (stream_id, stream_version)
);

CREATE TABLE idempotency_keys (
    principal       TEXT NOT NULL,
    key             TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    stream_id       TEXT NOT NULL,
    stream_version  INTEGER NOT NULL CHECK (stream_version >= 1),
    global_position INTEGER NOT NULL CHECK (global_position >= 1),
    recorded_at     INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
) WITHOUT ROWID;

-- The log is immutable, and the database says so, whoever connects. (SQLite has no TRUNCATE;
-- a DELETE without WHERE fires these triggers too, since triggers disable its shortcut.)
CREATE TRIGGER events_are_immutable_on_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;

CREATE TRIGGER events_are_immutable_on_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;

-- `INSERT OR REPLACE` deletes the row it replaces without firing DELETE triggers (unless a
-- connection turns `recursive_triggers` on, which no client has to): refuse any insert onto a
-- taken position, event id or stream version instead, whoever connects.
CREATE TRIGGER events_are_never_replaced BEFORE INSERT ON events
WHEN EXISTS (
    SELECT 1 FROM events
    WHERE global_position = NEW.global_position
       OR event_id = NEW.event_id
       OR (stream_id = NEW.stream_id AND stream_version = NEW.stream_version)
)
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;

-- An idempotency record is the acknowledgement of an applied command: it never changes.
-- Deleting old records stays possible, for a future expiry job.
CREATE TRIGGER idempotency_keys_are_immutable BEFORE UPDATE ON idempotency_keys
BEGIN
    SELECT RAISE(ABORT, 'idempotency records are immutable');
END;

CREATE TRIGGER idempotency_keys_are_never_replaced BEFORE INSERT ON idempotency_keys
WHEN EXISTS (
    SELECT 1 FROM idempotency_keys WHERE principal = NEW.principal AND key = NEW.key
)
BEGIN
    SELECT RAISE(ABORT, 'idempotency records are immutable');
END;

-- The latest folded state of each stream, replaceable only by a snapshot at the same or a later
-- stream version (the upsert in SqliteSnapshotStore::save says so).
CREATE TABLE snapshots (
    stream_id      TEXT PRIMARY KEY,
    stream_version INTEGER NOT NULL CHECK (stream_version >= 0),
    state_version  INTEGER NOT NULL CHECK (state_version >= 0),
    state          TEXT NOT NULL,
    taken_at       INTEGER NOT NULL
) WITHOUT ROWID;
