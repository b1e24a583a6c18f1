-- The group's claims looked up by one statement, and its streams moved by one (issue 23).
-- Profiled under `cargo xtask bench --workload http-commands` (groups of about 34 deposits,
-- each with a key), the group function spent most of its time starting statements: one
-- look-up per claim (migration 0009) and one update per stream (0005), each an executor of its
-- own. Timed on a scratch database, one group of 34 claimed appends per call, each its own
-- transaction: 3.9-4.9 ms per group before, 3.0-3.8 ms after; without claims, the streams'
-- update alone went from about 800 to 350 us per group.
--
-- Both were one statement per row because a statement over the group's arrays was planned
-- again at every call: PL/pgSQL keeps a generic plan only when its estimated cost is no worse
-- than the custom plans', and the estimates of a join with a parameter array lost to them. The
-- function now runs with plan_cache_mode = force_generic_plan, so each of its statements is
-- planned once per connection; and without hash, merge or bitmap scans, so that plan is a
-- nested loop over the arrays with one index look-up per row whatever the tables' statistics.
-- Left to the statistics, a fresh database (empty tables, not analysed yet) got hash joins over
-- whole-table scans, kept for the life of the plan: under load, a claimed append cost more
-- with every key recorded (measured: 2,993 keyed deposits/s instead of about 4,400). These
-- settings hold for the function's own statements only; none of them needs to read a whole
-- table but the one row of event_log_head.
--
-- Every answer is as before: the look-up still runs after the streams' locks are granted (a
-- claim committed by another transaction before them is seen), and a key claimed twice within
-- the group is still caught by claimed_here.
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
    -- The group's keys claimed before it, as (principal, key) texts like claimed_here's.
    taken           TEXT[] := '{}';
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
    -- committed by another transaction before these locks were granted is seen here. Skipped
    -- (an expression, no statement) when no append of the group has a claim.
    IF cardinality(array_remove(p_principals, NULL)) > 0 THEN
        SELECT coalesce(array_agg(quote_literal(k.principal) || quote_literal(k.key)), '{}')
        INTO taken
        FROM unnest(p_principals, p_keys) AS c(principal, key)
        JOIN idempotency_keys AS k ON k.principal = c.principal AND k.key = c.key;
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
        -- Nested, so that an append without a claim compares nothing here.
        IF p_principals[i] IS NOT NULL THEN
            IF quote_literal(p_principals[i]) || quote_literal(p_keys[i]) = ANY (claimed_here)
               OR quote_literal(p_principals[i]) || quote_literal(p_keys[i]) = ANY (taken) THEN
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

    -- Every stream the group moved, by one statement (an index look-up per stream).
    UPDATE streams AS s SET version = m.version
    FROM unnest(locked_ids, locked_versions, locked_before) AS m(stream_id, version, before)
    WHERE s.stream_id = m.stream_id AND m.version <> m.before;

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
    -- of the group's at once (migration 0010).
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
    SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    SET plan_cache_mode = force_generic_plan
    SET enable_hashjoin = off SET enable_mergejoin = off SET enable_bitmapscan = off;
