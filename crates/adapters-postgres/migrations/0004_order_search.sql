-- Order search on PostgreSQL full-text search (the default when no Elasticsearch is configured):
-- one row per order, replaced only by a higher stream version. `search_text` is what words match
-- (product ids, shipping address, tracking number, order id), indexed through the generated
-- tsvector with the 'simple' configuration (no stemming: ids and addresses are not prose).
CREATE TABLE order_search (
    order_id         UUID PRIMARY KEY,
    customer_id      TEXT NOT NULL,
    status           TEXT NOT NULL,
    product_ids      TEXT[] NOT NULL,
    shipping_address TEXT NOT NULL,
    tracking_number  TEXT,
    total_cents      BIGINT NOT NULL,
    currency         TEXT NOT NULL,
    item_count       BIGINT NOT NULL,
    placed_at        TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    version          BIGINT NOT NULL,
    search_text      TEXT NOT NULL,
    document         TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', search_text)) STORED
);

CREATE INDEX order_search_document ON order_search USING GIN (document);
CREATE INDEX order_search_by_customer ON order_search (customer_id, placed_at DESC);
CREATE INDEX order_search_by_placed_at ON order_search (placed_at DESC);
