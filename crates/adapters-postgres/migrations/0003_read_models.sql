-- The read side: projection checkpoints, dead letters, and the read models of the "orders" and
-- "accounts" projections. Read models are denormalised: every query is one indexed lookup or
-- range scan. A rebuild fills copies of a projection's tables in the schema
-- strata_rebuild_<projection> and swaps them in (see PgProjectionStore::finish_rebuild); the
-- checkpoint and dead-letter tables always stay in public (the adapter qualifies them).

-- One row per projection (and per rebuild in progress, as '<projection>:rebuild'). A batch locks
-- its row for its whole transaction and moves it with the batch's read-model changes.
CREATE TABLE projection_checkpoints (
    projection       TEXT PRIMARY KEY,
    position         BIGINT NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at       TIMESTAMPTZ,
    state            TEXT,
    state_updated_at TIMESTAMPTZ
);

-- Events a projection could not apply (blocked_by IS NULL), and the later events of the same
-- stream that wait behind them (blocked_by = the failed event's position).
CREATE TABLE projection_dead_letters (
    projection      TEXT NOT NULL,
    global_position BIGINT NOT NULL,
    event_id        UUID NOT NULL,
    stream_id       TEXT NOT NULL,
    stream_version  BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    schema_version  INT NOT NULL,
    data            JSONB NOT NULL,
    metadata        JSONB NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    error           TEXT NOT NULL,
    attempts        INT NOT NULL CHECK (attempts >= 0),
    blocked_by      BIGINT,
    parked_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT projection_dead_letters_pkey PRIMARY KEY (projection, global_position)
);

CREATE INDEX projection_dead_letters_by_stream
    ON projection_dead_letters (projection, stream_id);

-- Projection "orders".
CREATE TABLE order_summaries (
    order_id            UUID PRIMARY KEY,
    customer_id         TEXT NOT NULL,
    status              TEXT NOT NULL,
    items               JSONB NOT NULL,
    item_count          BIGINT NOT NULL,
    total_cents         BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    shipping_address    TEXT NOT NULL,
    tracking_number     TEXT,
    cancellation_reason TEXT,
    placed_at           TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    version             BIGINT NOT NULL,
    placed_position     BIGINT NOT NULL
);

-- A customer's orders, newest first, with keyset pagination on placed_position.
CREATE INDEX order_summaries_by_customer
    ON order_summaries (customer_id, placed_position DESC);

CREATE TABLE customer_stats (
    customer_id    TEXT PRIMARY KEY,
    order_count    BIGINT NOT NULL,
    pending        BIGINT NOT NULL,
    confirmed      BIGINT NOT NULL,
    shipped        BIGINT NOT NULL,
    delivered      BIGINT NOT NULL,
    cancelled      BIGINT NOT NULL,
    -- {"EUR": 1234, ...}: totals of delivered orders per currency.
    lifetime_value JSONB NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

-- Projection "accounts".
CREATE TABLE account_summaries (
    account_id        UUID PRIMARY KEY,
    owner_customer_id TEXT NOT NULL,
    currency          TEXT NOT NULL,
    balance_cents     BIGINT NOT NULL,
    closed            BOOLEAN NOT NULL,
    transaction_count BIGINT NOT NULL,
    opened_at         TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    version           BIGINT NOT NULL
);

CREATE TABLE account_transactions (
    account_id          UUID NOT NULL,
    version             BIGINT NOT NULL,
    global_position     BIGINT NOT NULL,
    kind                TEXT NOT NULL,
    amount_cents        BIGINT NOT NULL,
    reference           TEXT NOT NULL,
    balance_after_cents BIGINT NOT NULL,
    recorded_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, version)
);
