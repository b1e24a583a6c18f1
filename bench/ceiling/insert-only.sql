-- Ceiling (b): one event row inserted and committed per transaction (one WAL flush, default
-- durable settings), with no read at all: what the database can commit when nothing else is
-- asked of it. Streams apart from (a)'s; a random version, so no two rows collide (about one
-- chance in 10^7 per million rows). Run by `cargo xtask bench --ceiling`.
\set version random(1, 1000000000000)
INSERT INTO ceiling_events (stream_id, version, event_type, data)
VALUES (1000000 + :client_id, :version, 'ItemAdded',
        '{"product_id": "sku-1", "quantity": 1, "unit_price": 101}');
