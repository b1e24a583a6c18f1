-- A group's claims are recorded by one statement again (issue 23). Migration 0009 inserted
-- them one statement per claim, for the cached plan its per-claim look-up needed; the insert
-- needs no such care (its only plan scans the array of kept claims), and one statement per
-- claim cost about 20 us more of the server's CPU per claimed append than one for the group
-- (measured on a scratch database: groups of 20 deposits, with keys and without). The
-- look-ups stay one per claim, as 0009 has them; every answer is as before.
--
-- CREATE OR REPLACE keeps the owner and the grants; the attributes are given again below.

CREATE OR REPLACE FUNCTION strata_append_group(
    p_streams           TEXT[],
    p_expected_kinds    SMALLINT[],
    p_expected_versions BIGINT[],
    p_event_counts      INT[],
    p_event_ids         UUID[],
    p_event_types       TEXT[],
    p_schema_versions   INT[],
    -- JSON text, stored as given: the cast to json checks that it is JSON and nothing more.
    p_data              TEXT[],
    p_metadata          TEXT[],
    p_recorded_at       TIMESTAMPTZ[],
    p_principals        TEXT[],
    p_keys              TEXT[],
    p_fingerprints      TEXT[],
    OUT outcomes        SMALLINT[],
    OUT versions        BIGINT[],
    OUT positions       BIGINT[]
) LANGUAGE plpgsql AS $$
DECLARE
    locked_ids      TEXT[];
    locked_versions BIGINT[];
    locked_before   BIGINT[];
    -- The events of accepted appends: their ordinal in the p_event_* arrays, stream, version.
    kept_events     INT[] := '{}';
    kept_streams    TEXT[] := '{}';
    kept_versions   BIGINT[] := '{}';
    -- The accepted appends with a claim, and their (principal, key) as one text each: two
    -- quoted literals, which no principal or key can make ambiguous.
    kept_claims     INT[] := '{}';
    claimed_here    TEXT[] := '{}';
    appends         INT := coalesce(cardinality(p_streams), 0);
    first_event     INT := 0;
    total           BIGINT := 0;
    slot            INT;
    current_version BIGINT;
    head            BIGINT;
    ok              BOOLEAN;
BEGIN
    IF appends <> cardinality(p_expected_kinds) OR appends <> cardinality(p_expected_versions)
       OR appends <> cardinality(p_event_counts) OR appends <> cardinality(p_principals)
       OR appends <> cardinality(p_keys) OR appends <> cardinality(p_fingerprints) THEN
        RAISE EXCEPTION 'strata_append_group: per-append arrays of different lengths';
    END IF;

    WITH locked AS (
        INSERT INTO streams (stream_id, version)
        SELECT DISTINCT s, 0 FROM unnest(p_streams) AS s ORDER BY s
        ON CONFLICT (stream_id) DO UPDATE SET version = streams.version
        RETURNING streams.stream_id, streams.version
    )
    SELECT array_agg(l.stream_id ORDER BY l.stream_id), array_agg(l.version ORDER BY l.stream_id)
    INTO locked_ids, locked_versions
    FROM locked AS l;
    locked_before := locked_versions;

    outcomes := array_fill(1::SMALLINT, ARRAY[appends]);
    versions := array_fill(0::BIGINT, ARRAY[appends]);
    -- Until the head is known, an accepted append's position is its last event's ordinal
    -- among the kept ones.
    positions := array_fill(NULL::BIGINT, ARRAY[appends]);
    FOR i IN 1..appends LOOP
        slot := array_position(locked_ids, p_streams[i]);
        current_version := locked_versions[slot];
        versions[i] := current_version;
        -- Under the streams' locks, as strata_append looks its key up: a claim of the same
        -- stream committed by another transaction before these locks were granted is seen here.
        -- One indexed look-up per claim, its plan cached: a look-up of all the group's keys
        -- at once, through unnest, was planned again at every call (its generic plan, a scan
        -- of the keys, lost to a fresh one each time), which doubled a claimed append's cost.
        -- Nested, so that an append without a claim runs no query here.
        IF p_principals[i] IS NOT NULL THEN
            IF quote_literal(p_principals[i]) || quote_literal(p_keys[i]) = ANY (claimed_here)
               OR EXISTS (
                   SELECT 1 FROM idempotency_keys AS k
                   WHERE k.principal = p_principals[i] AND k.key = p_keys[i]
               ) THEN
                outcomes[i] := 2;
                first_event := first_event + p_event_counts[i];
                CONTINUE;
            END IF;
        END IF;
        ok := CASE p_expected_kinds[i]
            WHEN 0 THEN true
            WHEN 1 THEN current_version = 0
            WHEN 2 THEN current_version >= 1
            WHEN 3 THEN current_version = p_expected_versions[i]
        END;
        IF ok IS NULL THEN
            RAISE EXCEPTION 'strata_append_group: unknown expected version kind %',
                p_expected_kinds[i];
        END IF;
        IF ok THEN
            FOR n IN 1..p_event_counts[i] LOOP
                kept_events := kept_events || (first_event + n);
                kept_streams := kept_streams || p_streams[i];
                kept_versions := kept_versions || (current_version + n);
            END LOOP;
            current_version := current_version + p_event_counts[i];
            locked_versions[slot] := current_version;
            total := total + p_event_counts[i];
            positions[i] := total;
            outcomes[i] := 0;
            versions[i] := current_version;
            IF p_principals[i] IS NOT NULL THEN
                kept_claims := kept_claims || i;
                claimed_here := claimed_here
                    || (quote_literal(p_principals[i]) || quote_literal(p_keys[i]));
            END IF;
        END IF;
        first_event := first_event + p_event_counts[i];
    END LOOP;
    IF first_event <> coalesce(cardinality(p_event_ids), 0) THEN
        RAISE EXCEPTION 'strata_append_group: % events counted, % given',
            first_event, coalesce(cardinality(p_event_ids), 0);
    END IF;
    IF total = 0 THEN
        RETURN;
    END IF;

    -- One indexed update per stream: a join with the arrays was planned as a scan of streams.
    FOR j IN 1..cardinality(locked_ids) LOOP
        IF locked_versions[j] <> locked_before[j] THEN
            UPDATE streams SET version = locked_versions[j] WHERE stream_id = locked_ids[j];
        END IF;
    END LOOP;

    -- From here to the commit, every other append in the database waits.
    UPDATE event_log_head SET position = position + total RETURNING position INTO head;
    INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type,
                        schema_version, data, metadata, recorded_at)
    SELECT head - total + k.n, p_event_ids[k.e], k.s, k.v, p_event_types[k.e],
           p_schema_versions[k.e], p_data[k.e]::json, p_metadata[k.e]::json, p_recorded_at[k.e]
    FROM unnest(kept_events, kept_streams, kept_versions) WITH ORDINALITY AS k(e, s, v, n);
    FOR i IN 1..appends LOOP
        IF outcomes[i] = 0 THEN
            positions[i] := head - total + positions[i];
        END IF;
    END LOOP;
    -- The claims, with what their appends are acknowledged with, in the same statement: all
    -- of the group's at once. Unlike the look-up, this statement has one plan whatever the
    -- arrays hold (a scan of the array, an insert per row), so it is planned once; a statement
    -- per claim cost twice as much server CPU per claimed append (each starts an executor,
    -- and checks the table's constraints afresh).
    IF cardinality(kept_claims) > 0 THEN
        INSERT INTO idempotency_keys (principal, key, fingerprint, stream_id, stream_version,
                                      global_position)
        SELECT p_principals[c.i], p_keys[c.i], p_fingerprints[c.i], p_streams[c.i],
               versions[c.i], positions[c.i]
        FROM unnest(kept_claims) AS c(i);
    END IF;
    -- A wake-up for the projectors, sent when (and only if) the group commits.
    PERFORM pg_notify('strata_events', '');
END
$$;

ALTER FUNCTION strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], UUID[], TEXT[], INT[],
                                   TEXT[], TEXT[], TIMESTAMPTZ[], TEXT[], TEXT[], TEXT[])
    SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
