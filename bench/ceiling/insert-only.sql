-- Ceiling (b): one event row inserted and committed per transaction (one WAL flush, default
-- durable settings), with no read at all: what the database can commit when nothing else is
-- asked of it. Streams apart from (a)'s; a random version among 10^12. Two draws of one client
-- do meet (a run of 400,000 rows on one stream does so about one time in twelve), and the unique
-- index must not abort the run then: such a row is skipped, the index still checked for every
-- row as an append's would be. Run by `cargo xtask bench --ceiling`.
\set version random(1, 1000000000000)
INSERT INTO ceiling_events (stream_id, version, event_type, data)
VALUES (1000000 + :client_id, :version, 'ItemAdded',
        '{"product_id": "sku-1", "quantity": 1, "unit_price": 101}')
ON CONFLICT (stream_id, version) DO NOTHING;
