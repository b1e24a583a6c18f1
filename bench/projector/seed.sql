-- Seeds a migrated, empty Strata database with 10,000 orders of three events each (OrderPlaced,
-- ItemAdded, OrderConfirmed): 30,000 events, written straight into the log so that seeding takes
-- seconds. Used to measure the projector; see docs/performance.md.
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f bench/projector/seed.sql
WITH o AS (SELECT i, gen_random_uuid() AS id FROM generate_series(1, 10000) i)
INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type,
                    schema_version, data, metadata, recorded_at)
SELECT 3 * (o.i - 1) + k, gen_random_uuid(), 'order-' || o.id, k,
       CASE k WHEN 1 THEN 'OrderPlaced' WHEN 2 THEN 'ItemAdded' ELSE 'OrderConfirmed' END,
       CASE k WHEN 1 THEN 2 ELSE 1 END,
       CASE k
           WHEN 1 THEN jsonb_build_object(
               'customerId', 'c-' || (o.i % 100), 'currency', 'EUR',
               'items', jsonb_build_array(jsonb_build_object(
                   'productId', 'p-1', 'quantity', 1, 'unitPriceCents', 100)),
               'shippingAddress', '1 Main St')
           WHEN 2 THEN '{"productId": "p-2", "quantity": 2, "unitPriceCents": 50}'::jsonb
           ELSE '{}'::jsonb
       END,
       '{}'::jsonb, now()
FROM o, generate_series(1, 3) k;

INSERT INTO streams (stream_id, version)
SELECT stream_id, max(stream_version) FROM events GROUP BY stream_id;

UPDATE event_log_head SET position = (SELECT max(global_position) FROM events);
