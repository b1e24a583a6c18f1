-- What each role of decision 0006 may do in this database. Run as {owner}, the owner of the
-- tables, after every `strata-web migrate`: `strata-web roles grant` runs it, with the names of
-- its --prefix in place of {owner}, {app}, {projector} and {auditor}; `--print` shows it.
-- Running it again is harmless: it first takes back whatever the three roles held, then grants
-- exactly what is below, so a privilege dropped from this file is dropped from the database.

-- The database: only these roles (and its owner, and superusers) connect; nobody else creates
-- schemas or temporary tables. Only the database's owner may change these; for another role
-- PostgreSQL warns and changes nothing.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC, {app}, {projector}, {auditor}',
                   current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO {owner}, {app}, {projector}, {auditor}',
                   current_database());
END
$$;

-- The schema: nobody but its owner creates in it (PostgreSQL before 15 let every role). A role
-- that may create there could shadow what the owner's code names without a schema.
REVOKE CREATE ON SCHEMA public FROM PUBLIC, {app}, {projector}, {auditor};
GRANT USAGE ON SCHEMA public TO {app}, {projector}, {auditor};

-- Start from nothing.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC, {app}, {projector}, {auditor};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC, {app}, {projector}, {auditor};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC, {app}, {projector}, {auditor};

-- {app}: strata-web. It appends only through the append functions, which run as {owner}
-- (migrations 0007, 0008 and 0011): no INSERT, UPDATE, DELETE or TRUNCATE on events, streams,
-- event_log_head or idempotency_keys, so it can neither write an event beside the append path
-- nor move the head.
GRANT EXECUTE ON FUNCTION
    strata_append(TEXT, SMALLINT, BIGINT, UUID[], TEXT[], INT[], TEXT[], TEXT[], TIMESTAMPTZ[],
                  TEXT, TEXT, TEXT),
    strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], UUID[], TEXT[], INT[], TEXT[],
                        TEXT[], TIMESTAMPTZ[], TEXT[], TEXT[], TEXT[]),
    strata_append_one(TEXT, BIGINT, UUID, TEXT, INT, TEXT, TEXT, TIMESTAMPTZ)
    TO {app};
-- Stream and log reads, the head for X-Min-Position and the status, idempotency look-ups.
GRANT SELECT ON events, event_log_head, idempotency_keys TO {app};
GRANT SELECT, INSERT, UPDATE ON snapshots TO {app};
-- Queries, search on PostgreSQL, the projections' status.
GRANT SELECT ON order_summaries, customer_stats, account_summaries, account_transactions,
      order_search, projection_checkpoints, projection_dead_letters TO {app};
-- Start-up checks that every migration is applied (it migrates only when one is missing).
GRANT SELECT ON _sqlx_migrations TO {app};

-- {projector}: `strata-projector run`, `status`, `follow` and `dlq`. It reads the log, writes the
-- read models with their checkpoints and dead letters. `rebuild` creates and swaps tables: only
-- their owner may, so it runs as {owner} (the swap copies these grants to the new tables).
GRANT SELECT ON events, event_log_head TO {projector};
GRANT SELECT, INSERT, UPDATE ON order_summaries, customer_stats, account_summaries,
      order_search, projection_checkpoints TO {projector};
GRANT SELECT, INSERT ON account_transactions TO {projector};
GRANT SELECT, INSERT, UPDATE, DELETE ON projection_dead_letters TO {projector};
GRANT SELECT ON _sqlx_migrations TO {projector};

-- {auditor}: reads everything, changes nothing, calls no function of ours.
GRANT SELECT ON events, streams, event_log_head, idempotency_keys, snapshots, order_summaries,
      customer_stats, account_summaries, account_transactions, order_search,
      projection_checkpoints, projection_dead_letters, _sqlx_migrations TO {auditor};
