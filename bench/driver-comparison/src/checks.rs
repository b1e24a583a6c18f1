//! What every run must leave behind: a refused or failed append changes nothing, and the log is
//! dense and consistent with the streams afterwards.

use anyhow::{bail, ensure};
use sqlx::{Connection, PgConnection};
use strata_ports::{ExpectedVersion, StreamId};
use uuid::Uuid;

use crate::appenders::{AppendError, Appender};
use crate::request;

/// Appends at version 0, then (1) again expecting 0, which must be refused as a conflict, and
/// (2) to a new stream with an event id already stored, which must fail in the insert statement,
/// after the stream row was upserted: both must leave the streams, the head counter and the log
/// as they were, and the connection fit for the next append. Returns how many events it
/// appended (2).
pub async fn check_conflict_rolls_back(appender: &Appender, url: &str) -> anyhow::Result<usize> {
    let stream = StreamId::new("conflict", Uuid::new_v4());
    let first_request = request(&stream, ExpectedVersion::Exact(0));
    let taken_event_id = first_request.events[0].event_id;
    let first = appender
        .append(first_request)
        .await
        .map_err(|e| anyhow::anyhow!("first append of the conflict check failed: {e:?}"))?;
    let before = log_state(url).await?;

    match appender
        .append(request(&stream, ExpectedVersion::Exact(0)))
        .await
    {
        Err(AppendError::Conflict { actual: 1 }) => {}
        other => bail!("a stale expected version was not refused as a conflict: {other:?}"),
    }
    let after = log_state(url).await?;
    ensure!(
        before == after,
        "a refused append changed the log: {before:?} -> {after:?}"
    );

    let mut duplicate = request(
        &StreamId::new("conflict", Uuid::new_v4()),
        ExpectedVersion::Exact(0),
    );
    duplicate.events[0].event_id = taken_event_id;
    match appender.append(duplicate).await {
        Err(AppendError::Failed(_)) => {}
        other => bail!("an append with a stored event id did not fail: {other:?}"),
    }
    let after = log_state(url).await?;
    ensure!(
        before == after,
        "a failed insert left changes behind: {before:?} -> {after:?}"
    );

    let second = appender
        .append(request(&stream, ExpectedVersion::Exact(1)))
        .await
        .map_err(|e| anyhow::anyhow!("append after a conflict failed: {e:?}"))?;
    ensure!(
        second.stream_version == 2 && second.global_position == first.global_position + 1,
        "append after a conflict landed at {second:?}, first was {first:?}"
    );
    Ok(2)
}

/// (head position, events, streams, sum of stream versions).
async fn log_state(url: &str) -> anyhow::Result<(i64, i64, i64, i64)> {
    let mut conn = PgConnection::connect(url).await?;
    let state = sqlx::query_as(
        "SELECT (SELECT position FROM event_log_head), \
                (SELECT count(*) FROM events), \
                (SELECT count(*) FROM streams), \
                (SELECT coalesce(sum(version), 0)::bigint FROM streams)",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(state)
}

/// The log after a run: positions dense from 1 and equal to the head, every stream's versions
/// dense and equal to its recorded version, and (for our clients) exactly the expected count.
pub async fn verify_log(url: &str, expected: Option<u64>) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    let (head, count, max_position, stream_sum): (i64, i64, Option<i64>, i64) = sqlx::query_as(
        "SELECT (SELECT position FROM event_log_head), count(*), max(global_position), \
                (SELECT coalesce(sum(version), 0)::bigint FROM streams) \
         FROM events",
    )
    .fetch_one(&mut conn)
    .await?;
    let broken_streams: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM streams s \
         LEFT JOIN (SELECT stream_id, count(*) AS n, max(stream_version) AS top \
                    FROM events GROUP BY stream_id) e USING (stream_id) \
         WHERE s.version <> coalesce(e.n, 0) OR s.version <> coalesce(e.top, 0)",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    ensure!(
        head == count && max_position.unwrap_or(0) == count && stream_sum == count,
        "log is inconsistent: head {head}, {count} events, max position {max_position:?}, \
         stream versions sum to {stream_sum}"
    );
    ensure!(
        broken_streams == 0,
        "{broken_streams} streams disagree with their events"
    );
    if let Some(expected) = expected {
        ensure!(
            u64::try_from(count)? == expected,
            "{count} events in the log, expected {expected}"
        );
    }
    Ok(())
}
