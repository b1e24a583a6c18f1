//! Group commit: appends that arrive while earlier ones are being written are coalesced into
//! one transaction. Each append still stands alone — its expected version is checked under its
//! stream's row lock against the version the appends before it in the group left, and it
//! lands whole or not at all, with its idempotency claim if it has one (its key looked up under
//! the same lock, before its expected version) — but the group takes the log's head lock and
//! waits for the WAL flush once, instead of once per append (decision 0010).

use std::pin::Pin;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgArguments, PgBindIterExt};
use sqlx::{Arguments, Connection, PgConnection, PgPool};
use strata_ports::{AppendOutcome, AppendRequest, EventStoreError};
use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio::time::Sleep;

use crate::append::{
    add, add_event_columns, answer_of_outcome, append_alone, append_one, event_columns_size,
    expected_columns,
};
use crate::error::event_store_error;

/// The most appends in one group (a bound on the transaction, not a target: a group holds
/// whatever waited, and one append on an idle store is a group of one).
const MAX_GROUP: usize = 256;

/// How long the writer keeps its connection without appends before closing it.
const KEEP_CONNECTION: Duration = Duration::from_secs(1);

/// The longest the writer waits for the server to acknowledge its connection's close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest a group waits for the callers of the last one to come back. Longer held up a
/// whole group for one late caller: 100 µs beat 50, 150 and 250 µs with 8 callers (decision 0010).
const MAX_GATHER: Duration = Duration::from_micros(100);

/// The whole group in one statement, which is its own transaction (migrations 0005, 0006,
/// 0008): the appends' events and their idempotency claims.
const APPEND_GROUP: &str = "\
    SELECT outcomes, versions, positions \
    FROM strata_append_group($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

type Reply = oneshot::Sender<Result<AppendOutcome, EventStoreError>>;

struct Pending {
    request: AppendRequest,
    reply: Reply,
}

/// The queue of one pool's appends and its writer (started on the first append).
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
///
/// It is a task among the others, not a thread of its own: a thread put two wake-ups of
/// another thread in every append's path (the writer woken by the caller, the caller by the
/// writer), which cost a fifth of the rate with one client and gained nothing that could be
/// measured with 64 (decision 0010, "Back among the tasks").
fn start(pool: PgPool) -> mpsc::UnboundedSender<Pending> {
    let (queue, pending) = mpsc::unbounded_channel();
    tokio::spawn(run(pool, pending));
    queue
}

/// The writer's loop, until every sender is gone.
async fn run(pool: PgPool, mut pending: mpsc::UnboundedReceiver<Pending>) {
    let mut writer = Writer {
        pool,
        connection: None,
        writers: 1,
        gather: Duration::ZERO,
        idle: Box::pin(tokio::time::sleep(KEEP_CONNECTION)),
        armed: tokio::time::Instant::now(),
    };
    while let Some(group) = writer.next_group(&mut pending).await {
        let (began, size) = (Instant::now(), group.len());
        writer.write(group).await;
        // Those just answered, and those that queued meanwhile, are writing now.
        writer.writers = size + pending.len();
        writer.gather = (began.elapsed() / 2).min(MAX_GATHER);
    }
    writer.close().await;
}

/// The writer and the connection it keeps while appends keep coming: opening one for each
/// group, or taking one from the pool, cost a round trip of its own. The connection is the
/// writer's, one more than the pool's (`STRATA_DB_MAX_CONNECTIONS`), so that the pool's
/// connections all serve reads.
struct Writer {
    pool: PgPool,
    connection: Option<PgConnection>,
    /// How many callers were appending when the last group was answered.
    writers: usize,
    /// How long the next group may wait for them: half the last group's write.
    gather: Duration,
    /// Fires after about [`KEEP_CONNECTION`] without appends: the connection is closed.
    idle: Pin<Box<Sleep>>,
    /// When `idle` was last set.
    armed: tokio::time::Instant,
}

impl Writer {
    /// Waits for an append, then takes every append queued behind it (up to [`MAX_GROUP`]).
    /// Closes the connection after [`KEEP_CONNECTION`] without appends.
    /// `None` once every sender is gone.
    ///
    /// The callers answered by the last group come back with their next append a moment
    /// later; taking only what queued meanwhile split them into two groups that took turns,
    /// each waiting for the other's write. So the group waits, briefly, until as many appends
    /// as there were writers have arrived.
    async fn next_group(
        &mut self,
        pending: &mut mpsc::UnboundedReceiver<Pending>,
    ) -> Option<Vec<Pending>> {
        let first = match pending.try_recv() {
            Ok(first) => first,
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => {
                // Arming a timer for every group cost more than the group's own bookkeeping:
                // the idle timer moves on only once a quarter of its time has passed, so the
                // connection goes back after three quarters of KEEP_CONNECTION to all of it.
                let now = tokio::time::Instant::now();
                if now.duration_since(self.armed) >= KEEP_CONNECTION / 4 {
                    self.idle.as_mut().reset(now + KEEP_CONNECTION);
                    self.armed = now;
                }
                tokio::select! {
                    biased;
                    first = pending.recv() => first?,
                    () = self.idle.as_mut() => {
                        self.close().await;
                        pending.recv().await?
                    }
                }
            }
        };
        let mut group = vec![first];
        let wanted = self.writers.clamp(1, MAX_GROUP);
        let deadline = Instant::now() + self.gather;
        loop {
            while group.len() < MAX_GROUP {
                match pending.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            if group.len() >= wanted || Instant::now() >= deadline {
                break;
            }
            // Timers tick in milliseconds, too coarse here: let the callers run instead (the
            // other tasks, and for a moment the other threads: the database's among them).
            std::thread::yield_now();
            tokio::task::yield_now().await;
        }
        Some(group)
    }

    async fn connection(&mut self) -> Result<&mut PgConnection, EventStoreError> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => connect(&self.pool).await?,
        };
        Ok(self.connection.insert(connection))
    }

    /// Closes the connection, if open, telling the server (which then logs no lost client),
    /// but without waiting long on one that does not answer.
    async fn close(&mut self) {
        if let Some(connection) = self.connection.take() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close()).await;
        }
    }

    /// Writes a group and answers each append. Every append of a group whose shared
    /// transaction failed as a whole (a key or an event id taken by a concurrent transaction, a
    /// lost connection) is written again alone, so that each gets its own exact answer.
    async fn write(&mut self, group: Vec<Pending>) {
        let written = match self.write_lone(&group).await {
            Ok(Some(outcome)) => Ok(vec![Ok(outcome)]),
            Ok(None) => {
                let requests: Vec<&AppendRequest> = group.iter().map(|p| &p.request).collect();
                async { append_group(self.connection().await?, &requests).await }.await
            }
            Err(error) => Err(error),
        };
        match written {
            Ok(outcomes) => {
                for (pending, outcome) in group.into_iter().zip(outcomes) {
                    answer(pending.reply, outcome);
                }
            }
            Err(error) => {
                tracing::debug!(%error, appends = group.len(), "group append failed; appending one by one");
                // The connection may be what failed: the appends alone take a fresh one.
                self.connection = None;
                self.write_alone(group).await;
            }
        }
    }

    /// A group of one through the one-statement route (migration 0011), if it takes it: its
    /// answer, or `None` when it does not, or found the stream elsewhere than expected (then
    /// nothing was written, and the group function answers exactly).
    async fn write_lone(
        &mut self,
        group: &[Pending],
    ) -> Result<Option<AppendOutcome>, EventStoreError> {
        let [lone] = group else {
            return Ok(None);
        };
        append_one(self.connection().await?, &lone.request).await
    }

    /// Each append in its own transaction, one after the other.
    async fn write_alone(&mut self, appends: Vec<Pending>) {
        for pending in appends {
            let outcome =
                async { append_alone(self.connection().await?, &pending.request).await }.await;
            if matches!(
                outcome,
                Err(EventStoreError::Unavailable(_) | EventStoreError::Backend(_))
            ) {
                self.connection = None;
            }
            answer(pending.reply, outcome);
        }
    }
}

fn answer(reply: Reply, outcome: Result<AppendOutcome, EventStoreError>) {
    // A caller that stopped waiting (its request was cancelled) leaves the outcome to the log:
    // its append stands or not, as it would had the caller waited.
    let _ = reply.send(outcome);
}

/// One transaction for `requests`: the answer of each (a refused one is refused alone), or an
/// error of the whole statement (then nothing of it was written, unless the connection was
/// lost after the commit: each append written alone again is then refused by its expected
/// version or its event ids).
async fn append_group(
    connection: &mut PgConnection,
    requests: &[&AppendRequest],
) -> Result<Vec<Result<AppendOutcome, EventStoreError>>, EventStoreError> {
    let arguments = group_arguments(requests)?;
    let (outcomes, versions, positions): (Vec<i16>, Vec<i64>, Vec<Option<i64>>) =
        sqlx::query_as_with(APPEND_GROUP, arguments)
            .fetch_one(connection)
            .await
            .map_err(|e| event_store_error(&e))?;
    // From here on the group has committed: a fault is each append's answer, never a reason to
    // write them again alone.
    if outcomes.len() != requests.len()
        || versions.len() != requests.len()
        || positions.len() != requests.len()
    {
        let fault = EventStoreError::Backend(format!(
            "the group of {} appends was answered for {}",
            requests.len(),
            outcomes.len()
        ));
        return Ok(requests.iter().map(|_| Err(fault.clone())).collect());
    }
    Ok(requests
        .iter()
        .zip(outcomes.into_iter().zip(versions).zip(positions))
        .map(|(request, ((outcome, version), position))| {
            answer_of_outcome(request, outcome, version, position)
        })
        .collect())
}

/// A group as the function's arguments: per append, its stream, expected version, event count
/// and claim (null without one); then every event of every append, in order. Each array is
/// encoded straight from the requests (no vectors of copies to build and free), into one
/// buffer sized up front (bound one by one, it grew and was copied again and again).
fn group_arguments(requests: &[&AppendRequest]) -> Result<PgArguments, EventStoreError> {
    let mut kinds = Vec::with_capacity(requests.len());
    let mut versions = Vec::with_capacity(requests.len());
    let mut counts = Vec::with_capacity(requests.len());
    for request in requests {
        let (kind, version) = expected_columns(request.expected)?;
        kinds.push(kind);
        versions.push(version);
        counts.push(
            i32::try_from(request.events.len())
                .map_err(|_| EventStoreError::Backend("too many events in one append".into()))?,
        );
    }
    let events = || requests.iter().flat_map(|r| r.events.iter());
    let claims = || requests.iter().map(|r| r.idempotency.as_ref());
    let claim_size: usize = claims()
        .flatten()
        .map(|c| c.principal.len() + c.key.len() + c.fingerprint.len())
        .sum();
    let stream_size: usize = requests.iter().map(|r| r.stream_id.as_str().len()).sum();
    let mut arguments = PgArguments::default();
    arguments.reserve(
        13,
        13 * 24
            + requests.len() * (4 * 6 + 6 + 12 + 8)
            + stream_size
            + claim_size
            + event_columns_size(events()),
    );
    let streams = requests.iter().map(|r| r.stream_id.as_str());
    add(&mut arguments, streams.bind_iter())?;
    add(&mut arguments, kinds)?;
    add(&mut arguments, versions)?;
    add(&mut arguments, counts)?;
    add_event_columns(&mut arguments, events())?;
    let principals = claims().map(|c| c.map(|c| c.principal.as_str()));
    add(&mut arguments, principals.bind_iter())?;
    add(
        &mut arguments,
        claims().map(|c| c.map(|c| c.key.as_str())).bind_iter(),
    )?;
    let fingerprints = claims().map(|c| c.map(|c| c.fingerprint.as_str()));
    add(&mut arguments, fingerprints.bind_iter())?;
    Ok(arguments)
}

/// A connection of the writer's own, opened with the pool's settings. Like the pool's own
/// acquire, it tries again (after 50 ms, then twice as long each time, at most a second) until
/// the pool's acquire timeout: a server restarting, or at its connection limit, refuses for a
/// moment. A fresh one each time the writer has none: at its first append, after a second
/// without appends, and after a failure (a connection that failed is dropped, never reused).
/// None once the pool is closed.
async fn connect(pool: &PgPool) -> Result<PgConnection, EventStoreError> {
    let options = pool.connect_options();
    let timeout = pool.options().get_acquire_timeout();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        if pool.is_closed() {
            return Err(EventStoreError::Unavailable(
                "the database pool is closed".into(),
            ));
        }
        let error =
            match tokio::time::timeout_at(deadline, PgConnection::connect_with(&options)).await {
                Ok(Ok(connection)) => return Ok(connection),
                Ok(Err(error)) => event_store_error(&error),
                Err(_) => EventStoreError::Unavailable(format!(
                    "no connection for appends within {} ms",
                    timeout.as_millis()
                )),
            };
        if tokio::time::Instant::now() + pause >= deadline {
            return Err(error);
        }
        tracing::debug!(%error, "the append writer cannot connect yet; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use strata_ports::conformance::event_store::{claiming, log_of, request, stream};
    use strata_ports::{EventStore, ExpectedVersion, StreamId};

    use super::*;
    use crate::PgEventStore;
    use crate::append::{answer_of, append_in};
    use crate::testkit::wait_for_lock_waiters;

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

        let answers = append_group(
            &mut pool.acquire().await.unwrap(),
            &[&first, &racing, &following, &other],
        )
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
        // The streams' versions moved with their events.
        store
            .append(request(&a, ExpectedVersion::Exact(3), 1))
            .await
            .unwrap();
        store
            .append(request(&b, ExpectedVersion::Exact(3), 1))
            .await
            .unwrap();
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

    /// The head, the stream's version and the number of events: what a refused append must
    /// leave as it found.
    async fn written(pool: &PgPool, stream: &StreamId) -> (i64, Option<i64>, i64) {
        sqlx::query_as(
            "SELECT (SELECT position FROM event_log_head), \
                    (SELECT version FROM streams WHERE stream_id = $1), \
                    (SELECT count(*) FROM events)",
        )
        .bind(stream.as_str())
        .fetch_one(pool)
        .await
        .unwrap()
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn one_event_at_its_stream_version_lands_in_one_statement_and_nothing_else_is_taken(
        pool: PgPool,
    ) {
        let store = PgEventStore::new(pool.clone());
        let (order, missing) = (stream("order"), stream("order"));
        store
            .append(request(&order, ExpectedVersion::NoStream, 2))
            .await
            .unwrap();
        let one = |request: AppendRequest| {
            let pool = pool.clone();
            async move { append_one(&mut pool.acquire().await.unwrap(), &request).await }
        };

        assert_eq!(
            one(request(&order, ExpectedVersion::Exact(2), 1)).await,
            Ok(Some(AppendOutcome {
                stream_version: 3,
                global_position: 3
            }))
        );
        assert_eq!(written(&pool, &order).await, (3, Some(3), 3));
        assert_eq!(
            log_of(&store).await,
            vec![(order.clone(), 1), (order.clone(), 2), (order.clone(), 3)]
        );

        // Not here: another version, or no stream. Not this route's: more than one event, a
        // claim, or any other expected version. None of them writes anything.
        for not_taken in [
            request(&order, ExpectedVersion::Exact(2), 1),
            request(&order, ExpectedVersion::Exact(4), 1),
            request(&order, ExpectedVersion::Exact(3), 2),
            claiming(request(&order, ExpectedVersion::Exact(3), 1), "alice", "k1"),
            request(&order, ExpectedVersion::Any, 1),
            request(&order, ExpectedVersion::StreamExists, 1),
            request(&missing, ExpectedVersion::Exact(0), 1),
            request(&missing, ExpectedVersion::NoStream, 1),
        ] {
            assert_eq!(one(not_taken.clone()).await, Ok(None), "{not_taken:?}");
            assert_eq!(written(&pool, &order).await, (3, Some(3), 3));
            assert_eq!(written(&pool, &missing).await, (3, None, 3));
        }
        // The route moved the stream's row with its event: the group function goes on from it.
        assert_eq!(
            store
                .append(request(&order, ExpectedVersion::Exact(3), 1))
                .await,
            Ok(AppendOutcome {
                stream_version: 4,
                global_position: 4
            })
        );
    }

    /// A stream with one event.
    async fn placed(pool: &PgPool) -> StreamId {
        let order = stream("order");
        PgEventStore::new(pool.clone())
            .append(request(&order, ExpectedVersion::NoStream, 1))
            .await
            .unwrap();
        order
    }

    /// One event at version 1 of `order` through the one-statement route, in a task of its own.
    fn one_at_version_1(
        pool: &PgPool,
        order: &StreamId,
    ) -> tokio::task::JoinHandle<Result<Option<AppendOutcome>, EventStoreError>> {
        let (pool, next) = (pool.clone(), request(order, ExpectedVersion::Exact(1), 1));
        tokio::spawn(async move { append_one(&mut pool.acquire().await.unwrap(), &next).await })
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn one_event_that_waited_for_a_concurrent_append_of_its_stream_checks_its_version_again(
        pool: PgPool,
    ) {
        let order = placed(&pool).await;
        // An append of the stream, held open: it has the stream's row and the head.
        let mut holder = pool.begin().await.unwrap();
        append_in(&mut holder, &request(&order, ExpectedVersion::Exact(1), 1))
            .await
            .unwrap();
        let racing = one_at_version_1(&pool, &order);
        wait_for_lock_waiters(&pool, 1).await;
        holder.commit().await.unwrap();

        // It read version 1 before it waited; the row it got is at 2.
        assert_eq!(racing.await.unwrap(), Ok(None));
        assert_eq!(written(&pool, &order).await, (2, Some(2), 2));
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn one_event_takes_its_stream_before_the_head_as_the_group_does(pool: PgPool) {
        // The order of every append's locks: the stream's row, then the head. Were the head
        // taken first, this would deadlock: the holder has the stream and then wants the head.
        let order = placed(&pool).await;
        let mut holder = pool.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM streams WHERE stream_id = $1 FOR UPDATE")
            .bind(order.as_str())
            .execute(&mut *holder)
            .await
            .unwrap();
        let waiting = one_at_version_1(&pool, &order);
        wait_for_lock_waiters(&pool, 1).await;
        sqlx::query("UPDATE event_log_head SET position = position")
            .execute(&mut *holder)
            .await
            .unwrap();
        holder.commit().await.unwrap();

        assert_eq!(
            waiting.await.unwrap(),
            Ok(Some(AppendOutcome {
                stream_version: 2,
                global_position: 2
            }))
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn one_event_lands_on_a_stream_row_left_at_version_0_and_wakes_the_projectors(
        pool: PgPool,
    ) {
        let store = PgEventStore::new(pool.clone());
        let order = stream("order");
        // A refused append leaves the stream's row behind, at version 0, with no event.
        let refused = store
            .append(request(&order, ExpectedVersion::Exact(5), 1))
            .await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(written(&pool, &order).await, (0, Some(0), 0));
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
            .await
            .unwrap();
        listener.listen(crate::EVENTS_CHANNEL).await.unwrap();

        let landed = append_one(
            &mut pool.acquire().await.unwrap(),
            &request(&order, ExpectedVersion::Exact(0), 1),
        )
        .await;

        assert_eq!(
            landed,
            Ok(Some(AppendOutcome {
                stream_version: 1,
                global_position: 1
            }))
        );
        let woken = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await;
        assert!(matches!(woken, Ok(Ok(_))), "no wake-up: {woken:?}");
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn one_event_waits_for_the_head_and_lands_after_the_append_that_held_it(pool: PgPool) {
        let order = placed(&pool).await;
        // An append of another stream, held open: it has the head, at position 2.
        let mut holder = pool.begin().await.unwrap();
        let other = stream("order");
        append_in(&mut holder, &request(&other, ExpectedVersion::NoStream, 1))
            .await
            .unwrap();
        let waiting = one_at_version_1(&pool, &order);
        wait_for_lock_waiters(&pool, 1).await;
        holder.commit().await.unwrap();

        assert_eq!(
            waiting.await.unwrap(),
            Ok(Some(AppendOutcome {
                stream_version: 2,
                global_position: 3
            }))
        );
        assert_eq!(
            log_of(&PgEventStore::new(pool)).await,
            vec![(order.clone(), 1), (other, 2), (order, 3)]
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_lone_append_at_an_exact_version_is_answered_as_in_a_group(pool: PgPool) {
        // Groups of one: every command's group when one client writes. The writer sends those
        // that fit to `strata_append_one` first (tests above); these are the function's answers
        // for the rest, and for what that route finds not where it expected.
        let store = PgEventStore::new(pool.clone());
        let (a, b) = (stream("order"), stream("order"));
        let alone = |request: AppendRequest| {
            let pool = pool.clone();
            async move {
                append_group(&mut pool.acquire().await.unwrap(), &[&request])
                    .await
                    .unwrap()
                    .pop()
                    .unwrap()
            }
        };
        let landed = |stream_version, global_position| {
            Ok(AppendOutcome {
                stream_version,
                global_position,
            })
        };
        let wrong = |stream_id: &StreamId, expected, actual| {
            Err(EventStoreError::WrongExpectedVersion {
                stream_id: stream_id.clone(),
                expected,
                actual,
            })
        };

        assert_eq!(
            alone(request(&a, ExpectedVersion::NoStream, 2)).await,
            landed(2, 2)
        );
        let keyed = claiming(request(&a, ExpectedVersion::Exact(2), 2), "alice", "k1");
        assert_eq!(alone(keyed).await, landed(4, 4));
        assert_eq!(
            alone(request(&a, ExpectedVersion::Exact(4), 1)).await,
            landed(5, 5)
        );
        // A retry of the keyed append, at the version it saw then and at the one it would see
        // now: taken either way.
        for version in [2, 5] {
            let retry = claiming(
                request(&a, ExpectedVersion::Exact(version), 2),
                "alice",
                "k1",
            );
            assert_eq!(
                alone(retry).await,
                Err(EventStoreError::IdempotencyKeyTaken {
                    key: "k1".to_owned()
                })
            );
        }
        assert_eq!(
            alone(request(&a, ExpectedVersion::Exact(3), 1)).await,
            wrong(&a, ExpectedVersion::Exact(3), 5)
        );
        assert_eq!(
            alone(request(&b, ExpectedVersion::Exact(1), 1)).await,
            wrong(&b, ExpectedVersion::Exact(1), 0)
        );
        // A refused keyed append leaves its key free.
        let refused = claiming(request(&a, ExpectedVersion::Exact(1), 1), "alice", "k2");
        assert_eq!(
            alone(refused).await,
            wrong(&a, ExpectedVersion::Exact(1), 5)
        );

        let log = log_of(&store).await;
        assert_eq!(log, (1..=5).map(|n| (a.clone(), n)).collect::<Vec<_>>());
        let versions: Vec<u64> = store
            .read_stream(&a, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.stream_version)
            .collect();
        assert_eq!(versions, vec![1, 2, 3, 4, 5]);
        let k1 = store
            .find_idempotency("alice", "k1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (k1.stream_id, k1.stream_version, k1.global_position),
            (a.clone(), 4, 4)
        );
        assert!(
            store
                .find_idempotency("alice", "k2")
                .await
                .unwrap()
                .is_none()
        );
        // The stream's row moved with its events: the next append checks against it.
        assert_eq!(
            alone(request(&a, ExpectedVersion::Exact(5), 1)).await,
            landed(6, 6)
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_group_answers_each_claim_as_a_lone_append_and_records_the_accepted_ones(
        pool: PgPool,
    ) {
        let store = PgEventStore::new(pool.clone());
        let (a, b, c, x) = (
            stream("order"),
            stream("order"),
            stream("order"),
            stream("order"),
        );
        let applied = claiming(request(&x, ExpectedVersion::NoStream, 1), "alice", "k0");
        store.append(applied).await.unwrap();
        let group = [
            // A new key, and the same key claimed again further on: taken.
            claiming(request(&a, ExpectedVersion::NoStream, 1), "alice", "k1"),
            claiming(request(&b, ExpectedVersion::Any, 1), "alice", "k1"),
            // A retry of the applied command: taken, though its expected version is gone too.
            claiming(request(&x, ExpectedVersion::NoStream, 1), "alice", "k0"),
            // Refused by its version: its key stays free for the append after it.
            claiming(request(&a, ExpectedVersion::NoStream, 1), "alice", "k2"),
            claiming(request(&c, ExpectedVersion::NoStream, 2), "alice", "k2"),
            // The same key text of another principal is another key.
            claiming(request(&b, ExpectedVersion::NoStream, 1), "bob", "k1"),
            request(&c, ExpectedVersion::Exact(2), 1),
        ];

        let answers = append_group(
            &mut pool.acquire().await.unwrap(),
            &group.iter().collect::<Vec<_>>(),
        )
        .await
        .unwrap();

        let taken = |key: &str| {
            Err(EventStoreError::IdempotencyKeyTaken {
                key: key.to_owned(),
            })
        };
        let landed = |stream_version, global_position| {
            Ok(AppendOutcome {
                stream_version,
                global_position,
            })
        };
        assert_eq!(
            answers,
            vec![
                landed(1, 2),
                taken("k1"),
                taken("k0"),
                Err(EventStoreError::WrongExpectedVersion {
                    stream_id: a.clone(),
                    expected: ExpectedVersion::NoStream,
                    actual: 1,
                }),
                landed(2, 4),
                landed(1, 5),
                landed(3, 6),
            ]
        );
        let record = |principal: &'static str, key: &'static str| {
            let store = store.clone();
            async move {
                let found = store
                    .find_idempotency(principal, key)
                    .await
                    .unwrap()
                    .unwrap();
                (found.stream_id, found.stream_version, found.global_position)
            }
        };
        assert_eq!(record("alice", "k0").await, (x.clone(), 1, 1));
        assert_eq!(record("alice", "k1").await, (a.clone(), 1, 2));
        assert_eq!(record("alice", "k2").await, (c.clone(), 2, 4));
        assert_eq!(record("bob", "k1").await, (b.clone(), 1, 5));
        let log = log_of(&store).await;
        assert_eq!(
            log,
            vec![
                (x, 1),
                (a, 2),
                (c.clone(), 3),
                (c.clone(), 4),
                (b, 5),
                (c, 6)
            ]
        );
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_group_of_refused_claims_records_no_key(pool: PgPool) {
        let a = stream("order");
        let answers = append_group(
            &mut pool.acquire().await.unwrap(),
            &[&claiming(
                request(&a, ExpectedVersion::Exact(4), 1),
                "alice",
                "k",
            )],
        )
        .await
        .unwrap();

        assert!(matches!(
            answers[..],
            [Err(EventStoreError::WrongExpectedVersion { actual: 0, .. })]
        ));
        let store = PgEventStore::new(pool);
        assert_eq!(store.head_position().await.unwrap(), 0);
        assert_eq!(store.find_idempotency("alice", "k").await.unwrap(), None);
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_group_of_refused_appends_writes_nothing(pool: PgPool) {
        let a = stream("order");
        let answers = append_group(
            &mut pool.acquire().await.unwrap(),
            &[&request(&a, ExpectedVersion::Exact(4), 1)],
        )
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

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn appends_go_on_after_the_writers_connection_is_killed(pool: PgPool) {
        let store = PgEventStore::new(pool.clone());
        let order = stream("order");
        store
            .append(request(&order, ExpectedVersion::NoStream, 1))
            .await
            .unwrap();
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&pool)
        .await
        .unwrap();

        let outcome = store
            .append(request(&order, ExpectedVersion::Exact(1), 1))
            .await
            .unwrap();

        assert_eq!(outcome.stream_version, 2);
    }

    /// Whole-table scans of `streams` and `idempotency_keys` in the connection's transaction
    /// (its own counts: no other session's can reach them).
    async fn scans_of_whole_tables(connection: &mut PgConnection) -> i64 {
        sqlx::query_scalar(
            "SELECT coalesce(sum(seq_scan), 0)::bigint FROM pg_stat_xact_user_tables \
             WHERE relname IN ('streams', 'idempotency_keys')",
        )
        .fetch_one(&mut *connection)
        .await
        .unwrap()
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_group_on_fresh_tables_finds_its_streams_and_claims_by_index(pool: PgPool) {
        // The group function's plans are made once per connection (migration 0012), here on
        // empty tables never analysed: left to their statistics, the claims' look-up and the
        // streams' update were hash joins over whole-table scans, kept as the tables grew.
        let mut connection = pool.acquire().await.unwrap();
        let streams: Vec<StreamId> = (0..8).map(|_| stream("account")).collect();
        let opened: Vec<AppendRequest> = streams
            .iter()
            .map(|s| request(s, ExpectedVersion::NoStream, 1))
            .collect();
        // One transaction, so that the counts read are this session's alone.
        sqlx::query("BEGIN")
            .execute(&mut *connection)
            .await
            .unwrap();
        for round in 0..3u64 {
            let requests: Vec<AppendRequest> = if round == 0 {
                opened.clone()
            } else {
                streams
                    .iter()
                    .enumerate()
                    .map(|(n, s)| {
                        let key = format!("k-{round}-{n}");
                        claiming(request(s, ExpectedVersion::Exact(round), 1), "alice", &key)
                    })
                    .collect()
            };
            let answers = append_group(&mut connection, &requests.iter().collect::<Vec<_>>())
                .await
                .unwrap();
            assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        }

        assert_eq!(scans_of_whole_tables(&mut connection).await, 0);
        sqlx::query("ROLLBACK")
            .execute(&mut *connection)
            .await
            .unwrap();
    }

    #[test]
    fn an_answer_of_the_database_that_the_port_refutes_is_a_fault_not_an_outcome() {
        let order = stream("order");
        let exact = request(&order, ExpectedVersion::Exact(3), 1);
        let fault = |answer| matches!(answer, Err(EventStoreError::Backend(_)));
        // Accepted, but from version 4 (5 after one event), which Exact(3) refuses.
        assert!(fault(answer_of(&exact, true, 5, Some(9))));
        // Refused at version 3, which Exact(3) accepts.
        assert!(fault(answer_of(&exact, false, 3, None)));
        // Accepted without a position.
        assert!(fault(answer_of(&exact, true, 4, None)));
        assert_eq!(
            answer_of(&exact, true, 4, Some(9)),
            Ok(AppendOutcome {
                stream_version: 4,
                global_position: 9
            })
        );
        assert!(matches!(
            answer_of(&exact, false, 7, None),
            Err(EventStoreError::WrongExpectedVersion { actual: 7, .. })
        ));
    }
}
