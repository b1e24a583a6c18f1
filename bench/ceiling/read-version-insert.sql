-- Ceiling (a): the minimum durable work of one append command, as a pgbench transaction. Each
-- client appends to a stream of its own (as each task of `append` works on its own orders):
-- it reads the stream's current version, inserts the next event, commits (one WAL flush, with
-- the server's default durable settings). No aggregate is loaded, nothing is decoded: the
-- database's cost of a command and nothing else. Run by `cargo xtask bench --ceiling`.
BEGIN;
SELECT coalesce(max(version), 0) AS current FROM ceiling_events WHERE stream_id = :client_id \gset
INSERT INTO ceiling_events (stream_id, version, event_type, data)
VALUES (:client_id, :current + 1, 'ItemAdded',
        '{"product_id": "sku-1", "quantity": 1, "unit_price": 101}');
COMMIT;
