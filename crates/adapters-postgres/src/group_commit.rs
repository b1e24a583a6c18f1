//! Group commit: appends that arrive while earlier ones are being written are coalesced into
//! one transaction. Each append still stands alone — its expected version is checked under its
//! stream's row lock against the version the appends before it in the group left, and it
//! lands whole or not at all — but the group takes the log's head lock and waits for the WAL
//! flush once, instead of once per append (decision 0010).

use std::collections::HashMap;

use sqlx::PgPool;
use strata_ports::{AppendOutcome, AppendRequest, EventStoreError};
use tokio::sync::{OnceCell, mpsc, oneshot};
use uuid::Uuid;

use crate::error::event_store_error;
use crate::event_store::{EventColumns, append_alone, to_u64};

/// The most appends in one group (a bound on the transaction, not a target: a group holds
/// whatever waited, and one append on an idle store is a group of one).
const MAX_GROUP: usize = 256;

/// Locks the rows of the group's streams (creating missing ones at version 0) in a fixed order,
/// so two groups never wait for each other in a cycle, and returns their versions.
const LOCK_STREAMS: &str = "\
    INSERT INTO streams (stream_id, version) \
    SELECT s, 0 FROM UNNEST($1::text[]) AS s ORDER BY s \
    ON CONFLICT (stream_id) DO UPDATE SET version = streams.version \
    RETURNING stream_id, version";

/// The group's events and its streams' new versions in one statement (the stream rows are
/// locked already); the head row lock is the transaction's last, held until commit, as for a
/// single append (positions follow commit order).
const INSERT_GROUP: &str = "\
    WITH versions AS ( \
        UPDATE streams SET version = v.version \
        FROM UNNEST($10::text[], $11::int8[]) AS v(stream_id, version) \
        WHERE streams.stream_id = v.stream_id \
    ), head AS ( \
        UPDATE event_log_head SET position = position + $1 RETURNING position \
    ), appended AS ( \
        INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, \
                            schema_version, data, metadata, recorded_at) \
        SELECT head.position - $1 + e.n, e.event_id, e.stream_id, e.stream_version, \
               e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at \
        FROM head, \
             UNNEST($2::uuid[], $3::text[], $4::int8[], $5::text[], $6::int[], $7::jsonb[], \
                    $8::jsonb[], $9::timestamptz[]) \
             WITH ORDINALITY AS e(event_id, stream_id, stream_version, event_type, \
                                  schema_version, data, metadata, recorded_at, n) \
    ) \
    SELECT head.position FROM head \
    CROSS JOIN LATERAL (SELECT pg_notify('strata_events', '')) AS wake_up";

type Reply = oneshot::Sender<Result<AppendOutcome, EventStoreError>>;

struct Pending {
    request: AppendRequest,
    reply: Reply,
}

/// The queue of one pool's appends and its writers (started on the first append, inside the
/// runtime that makes it).
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    queue: OnceCell<mpsc::UnboundedSender<Pending>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("stream_id", &self.request.stream_id)
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Appends `request` in the next group.
    ///
    /// # Errors
    /// As for the event store's append.
    pub(crate) async fn append(
        &self,
        pool: &PgPool,
        request: AppendRequest,
    ) -> Result<AppendOutcome, EventStoreError> {
        let queue = self
            .queue
            .get_or_init(|| async { start(pool.clone()) })
            .await;
        let (reply, answer) = oneshot::channel();
        queue
            .send(Pending { request, reply })
            .map_err(|_| EventStoreError::Unavailable("the append writer stopped".into()))?;
        answer
            .await
            .map_err(|_| EventStoreError::Unavailable("the append writer stopped".into()))?
    }
}

/// Starts the one writer. One, not two: the appends that arrive while it writes make the next
/// group; with two, each took whatever arrived alone and both queued on the head lock, as
/// single appends do.
fn start(pool: PgPool) -> mpsc::UnboundedSender<Pending> {
    let (queue, mut pending) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(group) = next_group(&mut pending).await {
            write(&pool, group).await;
        }
    });
    queue
}

/// Waits for an append, then takes every append queued behind it (up to [`MAX_GROUP`]).
/// `None` once every sender is gone.
async fn next_group(pending: &mut mpsc::UnboundedReceiver<Pending>) -> Option<Vec<Pending>> {
    let first = pending.recv().await?;
    let mut group = vec![first];
    while group.len() < MAX_GROUP {
        match pending.try_recv() {
            Ok(next) => group.push(next),
            Err(_) => break,
        }
    }
    Some(group)
}

/// Writes a group and answers each append. An append with an idempotency claim, and every
/// append of a group whose shared transaction failed as a whole, is written alone, so that
/// each gets its own exact answer.
async fn write(pool: &PgPool, group: Vec<Pending>) {
    let (claimed, plain): (Vec<Pending>, Vec<Pending>) = group
        .into_iter()
        .partition(|p| p.request.idempotency.is_some());
    write_alone(pool, claimed).await;
    if plain.len() < 2 {
        return write_alone(pool, plain).await;
    }
    let requests: Vec<&AppendRequest> = plain.iter().map(|p| &p.request).collect();
    match append_group(pool, &requests).await {
        Ok(outcomes) => {
            for (pending, outcome) in plain.into_iter().zip(outcomes) {
                answer(pending.reply, outcome);
            }
        }
        Err(error) => {
            tracing::debug!(%error, appends = plain.len(), "group append failed; appending one by one");
            write_alone(pool, plain).await;
        }
    }
}

/// Each append in its own transaction, one after the other.
async fn write_alone(pool: &PgPool, appends: Vec<Pending>) {
    for pending in appends {
        let outcome = append_alone(pool, &pending.request).await;
        answer(pending.reply, outcome);
    }
}

fn answer(reply: Reply, outcome: Result<AppendOutcome, EventStoreError>) {
    // A caller that stopped waiting (its request was cancelled) leaves the outcome to the log:
    // its append stands or not, as it would had the caller waited.
    let _ = reply.send(outcome);
}

/// One transaction for `requests`: the answer of each (a refused one is refused alone), or an
/// error of the whole transaction (nothing of it was written).
async fn append_group(
    pool: &PgPool,
    requests: &[&AppendRequest],
) -> Result<Vec<Result<AppendOutcome, EventStoreError>>, EventStoreError> {
    let db = |e: sqlx::Error| event_store_error(&e);
    let mut streams: Vec<&str> = requests.iter().map(|r| r.stream_id.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();

    let mut tx = pool.begin().await.map_err(db)?;
    let locked: Vec<(String, i64)> = sqlx::query_as(LOCK_STREAMS)
        .bind(&streams)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let mut versions: HashMap<String, u64> = HashMap::with_capacity(locked.len());
    for (stream, version) in locked {
        versions.insert(stream, to_u64(version, "stream version")?);
    }

    // Each append in arrival order, against what the ones before it left.
    let mut answers: Vec<Result<AppendOutcome, EventStoreError>> =
        Vec::with_capacity(requests.len());
    let mut columns = GroupColumns::default();
    for request in requests {
        let stream = request.stream_id.as_str();
        let current = versions
            .get(stream)
            .copied()
            .ok_or_else(|| EventStoreError::Backend(format!("stream {stream} was not locked")))?;
        if let Err(refused) = request.expected.check(&request.stream_id, current) {
            answers.push(Err(refused));
            continue;
        }
        let events = EventColumns::of(&request.events)?;
        let count = u64::try_from(request.events.len())
            .map_err(|_| EventStoreError::Backend("too many events in one append".into()))?;
        columns.push(stream, current, events)?;
        versions.insert(stream.to_owned(), current + count);
        answers.push(Ok(AppendOutcome {
            stream_version: current + count,
            // The offset of the append's last event in the group, for now.
            global_position: columns.count,
        }));
    }
    if columns.count == 0 {
        tx.rollback().await.map_err(db)?;
        return Ok(answers);
    }

    let (touched, touched_versions): (Vec<&str>, Vec<i64>) = streams
        .iter()
        .filter_map(|s| Some((*s, i64::try_from(*versions.get(*s)?).ok()?)))
        .unzip();
    let total = i64::try_from(columns.count)
        .map_err(|_| EventStoreError::Backend("too many events in one group".into()))?;
    let head: i64 = sqlx::query_scalar(INSERT_GROUP)
        .bind(total)
        .bind(&columns.event_ids)
        .bind(&columns.stream_ids)
        .bind(&columns.stream_versions)
        .bind(&columns.event_types)
        .bind(&columns.schema_versions)
        .bind(&columns.data)
        .bind(&columns.metadata)
        .bind(&columns.recorded_at)
        .bind(&touched)
        .bind(&touched_versions)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;

    let before = to_u64(head, "global position")? - columns.count;
    for outcome in answers.iter_mut().flatten() {
        outcome.global_position += before;
    }
    Ok(answers)
}

/// Every event of a group as column arrays, with its stream and stream version.
#[derive(Default)]
struct GroupColumns {
    count: u64,
    event_ids: Vec<Uuid>,
    stream_ids: Vec<String>,
    stream_versions: Vec<i64>,
    event_types: Vec<String>,
    schema_versions: Vec<i32>,
    data: Vec<serde_json::Value>,
    metadata: Vec<serde_json::Value>,
    recorded_at: Vec<time::OffsetDateTime>,
}

impl GroupColumns {
    fn push(
        &mut self,
        stream: &str,
        base: u64,
        events: EventColumns,
    ) -> Result<(), EventStoreError> {
        let base = i64::try_from(base)
            .map_err(|_| EventStoreError::Backend(format!("stream {stream} is out of versions")))?;
        for n in 1..=events.count {
            self.stream_ids.push(stream.to_owned());
            self.stream_versions.push(base + n);
        }
        self.count += u64::try_from(events.count).unwrap_or(0);
        self.event_ids.extend(events.event_ids);
        self.event_types.extend(events.event_types);
        self.schema_versions.extend(events.schema_versions);
        self.data.extend(events.data);
        self.metadata.extend(events.metadata);
        self.recorded_at.extend(events.recorded_at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use strata_ports::conformance::event_store::{request, stream};
    use strata_ports::{EventStore, ExpectedVersion};

    use super::*;
    use crate::PgEventStore;

    // The group is called directly: a whole-group failure would fall back to single appends
    // and hide a wrong check inside the group.

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_group_checks_each_expected_version_against_the_appends_before_it(pool: PgPool) {
        let a = stream("order");
        let b = stream("order");
        let first = request(&a, ExpectedVersion::Exact(0), 2);
        let racing = request(&a, ExpectedVersion::Exact(0), 1);
        let following = request(&a, ExpectedVersion::Exact(2), 1);
        let other = request(&b, ExpectedVersion::NoStream, 3);

        let answers = append_group(&pool, &[&first, &racing, &following, &other])
            .await
            .unwrap();

        assert_eq!(
            answers,
            vec![
                Ok(AppendOutcome {
                    stream_version: 2,
                    global_position: 2
                }),
                Err(EventStoreError::WrongExpectedVersion {
                    stream_id: a.clone(),
                    expected: ExpectedVersion::Exact(0),
                    actual: 2,
                }),
                Ok(AppendOutcome {
                    stream_version: 3,
                    global_position: 3
                }),
                Ok(AppendOutcome {
                    stream_version: 3,
                    global_position: 6
                }),
            ]
        );
        let store = PgEventStore::new(pool);
        let log: Vec<(String, u64, u64)> = store
            .read_all(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.stream_id.to_string(), e.stream_version, e.global_position))
            .collect();
        let (a, b) = (a.to_string(), b.to_string());
        assert_eq!(
            log,
            vec![
                (a.clone(), 1, 1),
                (a.clone(), 2, 2),
                (a, 3, 3),
                (b.clone(), 1, 4),
                (b.clone(), 2, 5),
                (b, 3, 6),
            ]
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_group_of_refused_appends_writes_nothing(pool: PgPool) {
        let a = stream("order");
        let answers = append_group(&pool, &[&request(&a, ExpectedVersion::Exact(4), 1)])
            .await
            .unwrap();

        assert!(matches!(
            answers[..],
            [Err(EventStoreError::WrongExpectedVersion { actual: 0, .. })]
        ));
        let store = PgEventStore::new(pool);
        assert_eq!(store.head_position().await.unwrap(), 0);
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn concurrent_appends_through_the_queue_each_land_once_in_a_dense_log(pool: PgPool) {
        let store = PgEventStore::new(pool);
        let shared = stream("order");
        let appends: Vec<_> = (0..64)
            .map(|n| {
                let store = store.clone();
                let target = if n % 2 == 0 {
                    shared.clone()
                } else {
                    stream("order")
                };
                tokio::spawn(async move {
                    store
                        .append(request(&target, ExpectedVersion::NoStream, 2))
                        .await
                })
            })
            .collect();
        let mut landed = 0;
        for append in appends {
            if append.await.unwrap().is_ok() {
                landed += 1;
            }
        }

        // 32 new streams, and one of the 32 racing for the shared one.
        assert_eq!(landed, 33);
        let log = store.read_all(0, 1_000).await.unwrap();
        let positions: Vec<u64> = log.iter().map(|e| e.global_position).collect();
        assert_eq!(positions, (1..=66).collect::<Vec<_>>());
    }
}
