-- The event store: the append-only log, each stream's current version, the global position
-- counter, and the idempotency records written in the same transaction as the events.

-- One row per stream with its current version. An append locks this row (upserting it for a new
-- stream) before it checks the expected version, so the check is exact under concurrent writers:
-- a second writer of the same stream waits for the first to commit and then sees its version.
CREATE TABLE streams (
    stream_id TEXT PRIMARY KEY,
    version   BIGINT NOT NULL CHECK (version >= 0)
);

-- The single-row counter of the last allocated global position.
--
-- Why a counter and not a sequence: a sequence hands out numbers when rows are inserted, but
-- transactions commit in another order. A reader asking for "global_position > checkpoint" could
-- then pass over a position whose transaction commits later and never see that event (the
-- classic silent skip of PostgreSQL event stores). Every append instead allocates its positions
-- with `UPDATE event_log_head SET position = position + n RETURNING position`. The row lock is
-- held until commit, so positions are handed out in commit order, and a rolled-back append rolls
-- the counter back too: positions are dense and a reader can never skip an event that commits
-- later. The price is that appends are serialised across the database from the moment they take
-- this lock until they commit, so an append takes it as late as possible: after the stream check
-- and everything else, in the statement that inserts the events, right before the commit.
CREATE TABLE event_log_head (
    -- Always true: the primary key makes this a single-row table.
    id       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    position BIGINT NOT NULL CHECK (position >= 0)
);

INSERT INTO event_log_head (id, position) VALUES (TRUE, 0);

CREATE TABLE events (
    global_position BIGINT PRIMARY KEY CHECK (global_position >= 1),
    event_id        UUID NOT NULL,
    stream_id       TEXT NOT NULL,
    stream_version  BIGINT NOT NULL CHECK (stream_version >= 1),
    event_type      TEXT NOT NULL,
    schema_version  INT NOT NULL CHECK (schema_version >= 0),
    data            JSONB NOT NULL,
    metadata        JSONB NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- The last line of defence of optimistic concurrency (the streams row lock is the first);
    -- its index also serves stream reads by (stream_id, stream_version).
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

CREATE TABLE idempotency_keys (
    principal       TEXT NOT NULL,
    key             TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    stream_id       TEXT NOT NULL,
    stream_version  BIGINT NOT NULL CHECK (stream_version >= 1),
    global_position BIGINT NOT NULL CHECK (global_position >= 1),
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (principal, key)
);

-- The log is immutable, and the database says so, whoever connects (the table owner included):
-- statement-level triggers fire even when a statement matches no row, and cover TRUNCATE.
CREATE FUNCTION strata_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The trigger's argument is the message, so each table says why in its own words.
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER events_are_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION strata_refuse_change('events are immutable');

-- An idempotency record is the acknowledgement of an applied command: it never changes.
-- Deleting old records stays possible, for a future expiry job.
CREATE TRIGGER idempotency_keys_are_immutable
    BEFORE UPDATE ON idempotency_keys
    FOR EACH STATEMENT EXECUTE FUNCTION strata_refuse_change('idempotency records are immutable');

-- Losing the head row would stall every append; the counter only ever moves forward.
CREATE TRIGGER event_log_head_is_kept
    BEFORE DELETE OR TRUNCATE ON event_log_head
    FOR EACH STATEMENT EXECUTE FUNCTION strata_refuse_change('the event log head is never removed');
