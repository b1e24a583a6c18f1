-- One event appended at an exact version of an existing stream, without an idempotency claim,
-- in one statement (issue 23): what a command on an existing aggregate asks when no other
-- append waits beside it (a group of one). The group function runs five statements and a loop
-- for it; this runs one. Measured with `pgbench -c 1` (one durable transaction per call, the
-- same machine, interleaved): 2,241-2,808 calls/s against 1,995-2,281 for the group function.
--
-- It answers only "appended" (the event's global position) or "not here" (null): when the
-- stream is missing or at another version, nothing is written and the caller asks the group
-- function, which answers exactly (decision 0010, "A group of one in one statement").
--
-- The stream's row is locked (and moved) first, then the head, as in the group function: the
-- head's update waits on `moved` through its condition, so no order of the two functions'
-- locks can deadlock. Under READ COMMITTED, an update that waited for a concurrent append of
-- the stream checks its condition again on the row that append left: a stream moved past the
-- expected version is "not here".

CREATE FUNCTION strata_append_one(
    p_stream         TEXT,
    p_expected       BIGINT,
    p_event_id       UUID,
    p_event_type     TEXT,
    p_schema_version INT,
    -- JSON text, stored as given: the cast to json checks that it is JSON and nothing more.
    p_data           TEXT,
    p_metadata       TEXT,
    p_recorded_at    TIMESTAMPTZ,
    OUT at_position  BIGINT
) LANGUAGE plpgsql AS $$
BEGIN
    WITH moved AS (
        UPDATE streams SET version = version + 1
        WHERE stream_id = p_stream AND version = p_expected
        RETURNING stream_id, version
    ), head AS (
        -- From here to the commit, every other append in the database waits.
        UPDATE event_log_head SET position = event_log_head.position + 1
        WHERE EXISTS (SELECT 1 FROM moved)
        RETURNING event_log_head.position
    ), inserted AS (
        INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type,
                            schema_version, data, metadata, recorded_at)
        SELECT head.position, p_event_id, moved.stream_id, moved.version, p_event_type,
               p_schema_version, p_data::json, p_metadata::json, p_recorded_at
        FROM moved, head
        RETURNING global_position
    )
    SELECT inserted.global_position INTO at_position FROM inserted;
    IF at_position IS NOT NULL THEN
        -- A wake-up for the projectors, sent when (and only if) the event commits.
        PERFORM pg_notify('strata_events', '');
    END IF;
END
$$;

ALTER FUNCTION strata_append_one(TEXT, BIGINT, UUID, TEXT, INT, TEXT, TEXT, TIMESTAMPTZ)
    SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;

REVOKE EXECUTE ON FUNCTION strata_append_one(TEXT, BIGINT, UUID, TEXT, INT, TEXT, TEXT,
                                             TIMESTAMPTZ) FROM PUBLIC;

-- Whoever may call the group function may call this one.
DO $$
DECLARE
    grantee TEXT;
BEGIN
    FOR grantee IN
        SELECT DISTINCT quote_ident(pg_get_userbyid(a.grantee))
        FROM pg_proc AS p, aclexplode(p.proacl) AS a
        WHERE p.oid = 'strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], UUID[], TEXT[], '
                      'INT[], TEXT[], TEXT[], TIMESTAMPTZ[], TEXT[], TEXT[], TEXT[])'::regprocedure
          AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner AND a.grantee <> 0
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION strata_append_one(TEXT, BIGINT, UUID, TEXT, '
                       'INT, TEXT, TEXT, TIMESTAMPTZ) TO %s', grantee);
    END LOOP;
END
$$;
