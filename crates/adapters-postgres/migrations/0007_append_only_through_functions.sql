-- The service's role appends only through functions that run as the tables' owner (issue 20,
-- decision 0006 revised): it keeps no INSERT or UPDATE on events, streams, event_log_head or
-- idempotency_keys, so it cannot write an event beside the append path nor move the log's head.

-- One append in the caller's transaction, with its idempotency claim: the single-append path of
-- PgEventStore (appends with a claim, and those a failed group is split into). The same steps,
-- in the same order, as the statements the adapter sent before: lock the stream's row (upserting
-- it for a new stream), look the key up under that lock, check the expected version, then move
-- the stream's version, the head counter (the transaction's last lock, held until commit), insert
-- the events and the claim, and queue the projectors' wake-up.
--
-- expected_kind as for strata_append_group (0 any, 1 no stream, 2 an existing stream, 3 exactly
-- p_expected_version). Without a claim p_principal, p_key and p_fingerprint are null.
--
-- Returns outcome 0 (appended: at_version is the stream's new version, at_position the last
-- event's global position), 1 (refused by the expected version: at_version is the stream's
-- current one) or 2 (the key is taken). A refused append has written nothing but the new
-- stream's row, which the caller's rollback removes. A key or an event id taken by a concurrent
-- transaction raises the unique violation of its constraint, as the plain statements did, and
-- so does a stream version taken (its DETAIL is the version the stream's row claimed).
CREATE FUNCTION strata_append(
    p_stream           TEXT,
    p_expected_kind    SMALLINT,
    p_expected_version BIGINT,
    p_event_ids        UUID[],
    p_event_types      TEXT[],
    p_schema_versions  INT[],
    p_data             TEXT[],
    p_metadata         TEXT[],
    p_recorded_at      TIMESTAMPTZ[],
    p_principal        TEXT,
    p_key              TEXT,
    p_fingerprint      TEXT,
    OUT outcome        SMALLINT,
    OUT at_version     BIGINT,
    OUT at_position    BIGINT
) LANGUAGE plpgsql AS $$
DECLARE
    current_version BIGINT;
    total           BIGINT := coalesce(cardinality(p_event_ids), 0);
    head            BIGINT;
    kept            BIGINT;
    ok              BOOLEAN;
BEGIN
    IF total = 0 THEN
        RAISE EXCEPTION 'strata_append: no events';
    END IF;

    INSERT INTO streams AS s (stream_id, version) VALUES (p_stream, 0)
    ON CONFLICT (stream_id) DO UPDATE SET version = s.version
    RETURNING s.version INTO current_version;

    IF p_principal IS NOT NULL AND EXISTS (
        SELECT 1 FROM idempotency_keys AS k WHERE k.principal = p_principal AND k.key = p_key
    ) THEN
        outcome := 2;
        at_version := current_version;
        RETURN;
    END IF;

    ok := CASE p_expected_kind
        WHEN 0 THEN true
        WHEN 1 THEN current_version = 0
        WHEN 2 THEN current_version >= 1
        WHEN 3 THEN current_version = p_expected_version
    END;
    IF ok IS NULL THEN
        RAISE EXCEPTION 'strata_append: unknown expected version kind %', p_expected_kind;
    END IF;
    IF NOT ok THEN
        outcome := 1;
        at_version := current_version;
        RETURN;
    END IF;

    at_version := current_version + total;
    UPDATE streams AS s SET version = at_version WHERE s.stream_id = p_stream;

    -- From here to the caller's commit, every other append in the database waits.
    UPDATE event_log_head AS h SET position = h.position + total RETURNING h.position INTO head;
    INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type,
                        schema_version, data, metadata, recorded_at)
    SELECT head - total + e.n, e.event_id, p_stream, current_version + e.n, e.event_type,
           e.schema_version, e.data::json, e.metadata::json, e.recorded_at
    FROM unnest(p_event_ids, p_event_types, p_schema_versions, p_data, p_metadata,
                p_recorded_at)
         WITH ORDINALITY AS e(event_id, event_type, schema_version, data, metadata,
                              recorded_at, n)
    ON CONFLICT ON CONSTRAINT events_stream_version_key DO NOTHING;
    -- The stream's row lags behind its events (a bug of the lock protocol, or a hand edit): the
    -- constraint's violation, with the version the row claimed, which the adapter reports as
    -- the stream's actual version. The statement fails, so nothing of the append is kept.
    GET DIAGNOSTICS kept = ROW_COUNT;
    IF kept < total THEN
        RAISE EXCEPTION 'stream % has events beyond version % of its row', p_stream,
            current_version
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'events_stream_version_key',
                  DETAIL = current_version::text;
    END IF;
    IF p_principal IS NOT NULL THEN
        INSERT INTO idempotency_keys (principal, key, fingerprint, stream_id, stream_version,
                                      global_position)
        VALUES (p_principal, p_key, p_fingerprint, p_stream, at_version, head);
    END IF;
    -- A wake-up for the projectors, sent when (and only if) the append commits.
    PERFORM pg_notify('strata_events', '');
    outcome := 0;
    at_position := head;
END
$$;

-- Both append functions run with their owner's rights, so a caller needs only EXECUTE. The
-- search_path is fixed so that a caller's own objects (a temporary table named events, a function
-- in a schema it may create in) can never stand in for the ones the functions mean: pg_temp,
-- searched first for tables unless named, comes last.
ALTER FUNCTION strata_append(TEXT, SMALLINT, BIGINT, UUID[], TEXT[], INT[], TEXT[], TEXT[],
                             TIMESTAMPTZ[], TEXT, TEXT, TEXT)
    SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], UUID[], TEXT[], INT[],
                                   TEXT[], TEXT[], TIMESTAMPTZ[])
    SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;

-- Every role may execute a new function; these only the roles granted it.
REVOKE EXECUTE ON FUNCTION strata_append(TEXT, SMALLINT, BIGINT, UUID[], TEXT[], INT[], TEXT[],
                                         TEXT[], TIMESTAMPTZ[], TEXT, TEXT, TEXT) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], UUID[],
                                               TEXT[], INT[], TEXT[], TEXT[], TIMESTAMPTZ[])
    FROM PUBLIC;

-- A role that could append before this migration (INSERT on events, as decision 0006's grants
-- gave strata_app) may still: it calls the functions now. `strata-web roles grant` then takes
-- its table privileges away.
DO $$
DECLARE
    grantee TEXT;
BEGIN
    FOR grantee IN
        SELECT DISTINCT quote_ident(pg_get_userbyid(a.grantee))
        FROM pg_class AS c, aclexplode(c.relacl) AS a
        WHERE c.oid = 'public.events'::regclass AND a.privilege_type = 'INSERT'
          AND a.grantee <> c.relowner AND a.grantee <> 0
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION strata_append(TEXT, SMALLINT, BIGINT, UUID[], '
                       'TEXT[], INT[], TEXT[], TEXT[], TIMESTAMPTZ[], TEXT, TEXT, TEXT) TO %s',
                       grantee);
        EXECUTE format('GRANT EXECUTE ON FUNCTION strata_append_group(TEXT[], SMALLINT[], '
                       'BIGINT[], INT[], UUID[], TEXT[], INT[], TEXT[], TEXT[], TIMESTAMPTZ[]) '
                       'TO %s', grantee);
    END LOOP;
END
$$;
