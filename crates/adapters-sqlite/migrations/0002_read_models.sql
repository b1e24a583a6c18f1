-- The read side: projection checkpoints, dead letters, leases, and the read models of the
-- "orders" and "accounts" projections. A rebuild fills copies named `rebuild_<table>` (created
-- from these definitions by SqliteProjectionStore::start_rebuild) and copies them over the live
-- tables in the swap's transaction.

-- One row per projection (and per rebuild in progress, as '<projection>:rebuild').
CREATE TABLE projection_checkpoints (
    projection       TEXT PRIMARY KEY,
    position         INTEGER NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at       INTEGER,
    state            TEXT,
    state_updated_at INTEGER
) WITHOUT ROWID;

-- Events a projection could not apply (blocked_by IS NULL), and the later events of the same
-- stream that wait behind them (blocked_by = the failed event's position).
CREATE TABLE projection_dead_letters (
    projection      TEXT NOT NULL,
    global_position INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    stream_id       TEXT NOT NULL,
    stream_version  INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    schema_version  INTEGER NOT NULL,
    data            TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    recorded_at     INTEGER NOT NULL,
    error           TEXT NOT NULL,
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    blocked_by      INTEGER,
    parked_at       INTEGER NOT NULL,
    PRIMARY KEY (projection, global_position)
) WITHOUT ROWID;

CREATE INDEX projection_dead_letters_by_stream
    ON projection_dead_letters (projection, stream_id);

-- Who runs each projection: a holder renews its row while it runs; a row whose time has passed
-- belongs to nobody (its holder died), so a standby takes it over.
CREATE TABLE projection_leases (
    projection TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Projection "orders".
CREATE TABLE order_summaries (
    order_id            TEXT PRIMARY KEY,
    customer_id         TEXT NOT NULL,
    status              TEXT NOT NULL,
    items               TEXT NOT NULL,
    item_count          INTEGER NOT NULL,
    total_cents         INTEGER NOT NULL,
    currency            TEXT NOT NULL,
    shipping_address    TEXT NOT NULL,
    tracking_number     TEXT,
    cancellation_reason TEXT,
    placed_at           INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    version             INTEGER NOT NULL,
    placed_position     INTEGER NOT NULL
);

CREATE INDEX order_summaries_by_customer
    ON order_summaries (customer_id, placed_position DESC);

CREATE TABLE customer_stats (
    customer_id    TEXT PRIMARY KEY,
    order_count    INTEGER NOT NULL,
    pending        INTEGER NOT NULL,
    confirmed      INTEGER NOT NULL,
    shipped        INTEGER NOT NULL,
    delivered      INTEGER NOT NULL,
    cancelled      INTEGER NOT NULL,
    lifetime_value TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- Projection "accounts".
CREATE TABLE account_summaries (
    account_id        TEXT PRIMARY KEY,
    owner_customer_id TEXT NOT NULL,
    currency          TEXT NOT NULL,
    balance_cents     INTEGER NOT NULL,
    closed            INTEGER NOT NULL,
    transaction_count INTEGER NOT NULL,
    opened_at         INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    version           INTEGER NOT NULL
);

CREATE TABLE account_transactions (
    account_id          TEXT NOT NULL,
    version             INTEGER NOT NULL,
    global_position     INTEGER NOT NULL,
    kind                TEXT NOT NULL,
    amount_cents        INTEGER NOT NULL,
    reference           TEXT NOT NULL,
    balance_after_cents INTEGER NOT NULL,
    recorded_at         INTEGER NOT NULL,
    PRIMARY KEY (account_id, version)
);
