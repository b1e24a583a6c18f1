-- Appends with an idempotency claim join the group (issue 23, decision 0010 revised): the group
-- function takes each append's claim beside its expected version, looks the keys up under the
-- streams' locks, and records the claims of the appends it accepts in the same statement as
-- their events. Before, each claimed append was written alone (strata_append), one transaction
-- after another on the group writer's one connection, ~15x slower than a group.
--
-- The function of 0006 is replaced (its signature changes); whoever could call it may call the
-- new one. A binary of the release before calls the old one and fails; its group writer then
-- writes each append alone with strata_append, which is unchanged, so it keeps appending,
-- slowly, until it is replaced.

-- p_principals, p_keys and p_fingerprints hold each append's claim (all three null for an append
-- without one). Returns, per append, outcome 0 (appended: versions is the stream's new version,
-- positions the last event's global position), 1 (refused by its expected version: versions is
-- the stream's version at its turn) or 2 (its key is taken: recorded before, or claimed by an
-- append accepted earlier in this group), as strata_append answers a lone append. The key is
-- looked up before the expected version, as there: a retry of an applied command is a replay,
-- not a version conflict. A refused append writes nothing and leaves its key free. A key or an
-- event id taken by a concurrent transaction raises the unique violation of its constraint, and
-- nothing of the group is written (the adapter then writes each append alone).
CREATE FUNCTION strata_append_group(
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
    -- The appends whose keys were recorded before this group.
    taken_before    INT[];
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

    -- Under the streams' locks, as strata_append looks its key up: a claim of the same stream
    -- committed by another transaction before these locks were granted is seen here. A group
    -- without claims skips the statement (an expression, not a query, decides).
    taken_before := '{}';
    IF cardinality(array_remove(p_principals, NULL)) > 0 THEN
        SELECT coalesce(array_agg(c.n), '{}') INTO taken_before
        FROM unnest(p_principals, p_keys) WITH ORDINALITY AS c(principal, key, n)
        WHERE c.principal IS NOT NULL AND EXISTS (
            SELECT 1 FROM idempotency_keys AS k
            WHERE k.principal = c.principal AND k.key = c.key
        );
    END IF;

    outcomes := array_fill(1::SMALLINT, ARRAY[appends]);
    versions := array_fill(0::BIGINT, ARRAY[appends]);
    -- Until the head is known, an accepted append's position is its last event's ordinal
    -- among the kept ones.
    positions := array_fill(NULL::BIGINT, ARRAY[appends]);
    FOR i IN 1..appends LOOP
        slot := array_position(locked_ids, p_streams[i]);
        current_version := locked_versions[slot];
        versions[i] := current_version;
        IF p_principals[i] IS NOT NULL AND (
            i = ANY (taken_before)
            OR quote_literal(p_principals[i]) || quote_literal(p_keys[i]) = ANY (claimed_here)
        ) THEN
            outcomes[i] := 2;
            first_event := first_event + p_event_counts[i];
            CONTINUE;
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
    -- The claims, with what their appends are acknowledged with, in the same statement.
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

-- As in 0007: the owner's rights, a fixed search_path, and no EXECUTE for PUBLIC.
ALTER FUNCTION strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], UUID[], TEXT[], INT[],
                                   TEXT[], TEXT[], TIMESTAMPTZ[], TEXT[], TEXT[], TEXT[])
    SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE EXECUTE ON FUNCTION strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], UUID[],
                                               TEXT[], INT[], TEXT[], TEXT[], TIMESTAMPTZ[],
                                               TEXT[], TEXT[], TEXT[])
    FROM PUBLIC;

-- Whoever may call the old function may call the new one; then the old one goes.
DO $$
DECLARE
    grantee TEXT;
BEGIN
    FOR grantee IN
        SELECT DISTINCT quote_ident(pg_get_userbyid(a.grantee))
        FROM pg_proc AS p, aclexplode(p.proacl) AS a
        WHERE p.oid = 'strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], UUID[], TEXT[], '
                      'INT[], TEXT[], TEXT[], TIMESTAMPTZ[])'::regprocedure
          AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner AND a.grantee <> 0
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION strata_append_group(TEXT[], SMALLINT[], '
                       'BIGINT[], INT[], UUID[], TEXT[], INT[], TEXT[], TEXT[], TIMESTAMPTZ[], '
                       'TEXT[], TEXT[], TEXT[]) TO %s', grantee);
    END LOOP;
END
$$;

DROP FUNCTION strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], UUID[], TEXT[], INT[],
                                  TEXT[], TEXT[], TIMESTAMPTZ[]);
