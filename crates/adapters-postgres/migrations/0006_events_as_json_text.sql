-- Events keep their payload as the JSON text they were appended with (`json`), not as `jsonb`.
--
-- Nothing in the database looks inside an event: it stores and returns it. `jsonb` made every
-- read pay for turning the binary form back into text (a third of PostgreSQL's time in a load of
-- a 1,000-event stream) and every append pay for parsing it; `json` only checks the syntax on
-- the way in and hands the text back unchanged, so what a reader gets is byte for byte what
-- was appended. See docs/performance.md for the figures.
--
-- Upgrading rewrites the events table under an exclusive lock: appends and reads wait for it
-- (about 3 s per million events on the benchmark machine, see decision 0011).

ALTER TABLE events
    ALTER COLUMN data TYPE JSON USING data::json,
    ALTER COLUMN metadata TYPE JSON USING metadata::json;

-- A dead letter is a copy of an event: it takes whatever the log took (a payload `jsonb`
-- refuses would otherwise leave its projection unable to park it).
ALTER TABLE projection_dead_letters
    ALTER COLUMN data TYPE JSON USING data::json,
    ALTER COLUMN metadata TYPE JSON USING metadata::json;

-- The group function of 0005, taking the payloads as text.
DROP FUNCTION strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], UUID[], TEXT[], INT[],
                                  JSONB[], JSONB[], TIMESTAMPTZ[]);

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
    OUT accepted        BOOLEAN[],
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
    appends         INT := coalesce(cardinality(p_streams), 0);
    first_event     INT := 0;
    total           BIGINT := 0;
    slot            INT;
    current_version BIGINT;
    head            BIGINT;
    ok              BOOLEAN;
BEGIN
    IF appends <> cardinality(p_expected_kinds) OR appends <> cardinality(p_expected_versions)
       OR appends <> cardinality(p_event_counts) THEN
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

    accepted := array_fill(false, ARRAY[appends]);
    versions := array_fill(0::BIGINT, ARRAY[appends]);
    -- Until the head is known, an accepted append's position is its last event's ordinal
    -- among the kept ones.
    positions := array_fill(NULL::BIGINT, ARRAY[appends]);
    FOR i IN 1..appends LOOP
        slot := array_position(locked_ids, p_streams[i]);
        current_version := locked_versions[slot];
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
        END IF;
        accepted[i] := ok;
        versions[i] := current_version;
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

    UPDATE event_log_head SET position = position + total RETURNING position INTO head;
    INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type,
                        schema_version, data, metadata, recorded_at)
    SELECT head - total + k.n, p_event_ids[k.e], k.s, k.v, p_event_types[k.e],
           p_schema_versions[k.e], p_data[k.e]::json, p_metadata[k.e]::json, p_recorded_at[k.e]
    FROM unnest(kept_events, kept_streams, kept_versions) WITH ORDINALITY AS k(e, s, v, n);
    FOR i IN 1..appends LOOP
        IF accepted[i] THEN
            positions[i] := head - total + positions[i];
        END IF;
    END LOOP;
    -- A wake-up for the projectors, sent when (and only if) the group commits.
    PERFORM pg_notify('strata_events', '');
END
$$;
