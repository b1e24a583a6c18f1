-- The table the ceiling scripts write (`cargo xtask bench --ceiling` creates it in a scratch
-- database, dropped afterwards): an event log with a global position, a stream key and a
-- JSON payload, the least an event store's row needs.
CREATE TABLE ceiling_events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id bigint NOT NULL,
    version bigint NOT NULL,
    event_type text NOT NULL,
    data jsonb NOT NULL,
    UNIQUE (stream_id, version)
);
