//! Group commit on SQLite: appends that arrive while earlier ones are being written are gathered
//! by one writer into one `BEGIN IMMEDIATE` transaction, so the group waits for the write lock
//! and the WAL's fsync once instead of once per append. Each append still stands alone: it runs
//! in a savepoint of its own, checked against what the appends before it in the group left, and
//! an append that fails is rolled back to its savepoint and answered with its own error while
//! the others commit (decision 0010, "SQLite").

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqlitePool};
use strata_ports::{AppendOutcome, AppendRequest, EventStoreError};
use tokio::sync::{OnceCell, mpsc, oneshot, watch};
use tokio::time::Sleep;

use crate::error::event_store_error;
use crate::group_batch::{Answer, Group};
use crate::write::{WriteTx, begin_write_on};

/// The most appends in one group (a bound on the transaction, not a target: a group holds
/// whatever waited, and one append on an idle store is a group of one).
const MAX_GROUP: usize = 256;

/// How long the writer keeps its connection without appends before giving it back to the pool.
const KEEP_CONNECTION: Duration = Duration::from_secs(1);

/// The longest a group waits for the callers of the last one to come back (as on PostgreSQL,
/// decision 0010).
const MAX_GATHER: Duration = Duration::from_micros(100);

type Reply = oneshot::Sender<Answer>;

struct Pending {
    request: AppendRequest,
    reply: Reply,
}

/// The queue of one store's appends (shared by its clones) and its writer, started on the
/// first append inside the runtime that makes it.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    queue: OnceCell<mpsc::UnboundedSender<Pending>>,
    /// Bumped after every committed append: the in-process projectors' wake-up.
    appended: Arc<watch::Sender<u64>>,
    /// Write transactions committed by the writer: what shows that appends share them.
    commits: Arc<AtomicU64>,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            queue: OnceCell::new(),
            appended: Arc::new(watch::Sender::new(0)),
            commits: Arc::default(),
        }
    }
}

impl GroupCommit {
    /// The counter bumped after every committed group with an append in it.
    pub(crate) fn appended(&self) -> Arc<watch::Sender<u64>> {
        self.appended.clone()
    }

    /// How many write transactions the writer has committed.
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Appends `request` in the next group.
    ///
    /// # Errors
    /// As for the event store's append; [`EventStoreError::Unavailable`] for every append of a
    /// group whose commit failed (it may or may not have landed: retry with the same key).
    pub(crate) async fn append(
        &self,
        pool: &SqlitePool,
        request: AppendRequest,
    ) -> Result<AppendOutcome, EventStoreError> {
        let queue = self
            .queue
            .get_or_init(|| async {
                start(Writer {
                    pool: pool.clone(),
                    connection: None,
                    appended: self.appended.clone(),
                    commits: self.commits.clone(),
                })
            })
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

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("stream_id", &self.request.stream_id)
            .finish_non_exhaustive()
    }
}

/// Starts the one writer: the appends that arrive while it writes make the next group.
fn start(mut writer: Writer) -> mpsc::UnboundedSender<Pending> {
    let (queue, mut pending) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut gathering = Gathering {
            writers: 1,
            gather: Duration::ZERO,
            idle: Box::pin(tokio::time::sleep(KEEP_CONNECTION)),
            armed: tokio::time::Instant::now(),
        };
        while let Some(group) = gathering
            .next_group(&mut pending, &mut writer.connection)
            .await
        {
            let (began, size) = (Instant::now(), group.len());
            writer.write(group).await;
            // Those just answered, and those that queued meanwhile, are writing now.
            gathering.writers = size + pending.len();
            gathering.gather = (began.elapsed() / 2).min(MAX_GATHER);
        }
    });
    queue
}

/// How the next group is gathered.
struct Gathering {
    /// How many callers were appending when the last group was answered.
    writers: usize,
    /// How long the next group may wait for them: half the last group's write.
    gather: Duration,
    /// Fires after about [`KEEP_CONNECTION`] without appends: the connection goes back.
    idle: Pin<Box<Sleep>>,
    /// When `idle` was last set.
    armed: tokio::time::Instant,
}

impl Gathering {
    /// Waits for an append, then takes every append queued behind it (up to [`MAX_GROUP`]),
    /// waiting briefly until as many appends as there were writers have arrived: the callers
    /// answered by the last group come back a moment later, and taking only what queued
    /// meanwhile split them into two groups that took turns. `None` once every sender is gone.
    ///
    /// Gives the writer's `connection` back to the pool after [`KEEP_CONNECTION`] without
    /// appends.
    async fn next_group(
        &mut self,
        pending: &mut mpsc::UnboundedReceiver<Pending>,
        connection: &mut Option<PoolConnection<Sqlite>>,
    ) -> Option<Vec<Pending>> {
        let first = match pending.try_recv() {
            Ok(first) => first,
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => {
                // As on PostgreSQL: a timer armed for every group cost more than the group's
                // bookkeeping, so the idle timer moves on only once a quarter of its time has
                // passed (the connection goes back after 3/4 to all of KEEP_CONNECTION).
                let now = tokio::time::Instant::now();
                if now.duration_since(self.armed) >= KEEP_CONNECTION / 4 {
                    self.idle.as_mut().reset(now + KEEP_CONNECTION);
                    self.armed = now;
                }
                tokio::select! {
                    biased;
                    first = pending.recv() => first?,
                    () = self.idle.as_mut() => {
                        *connection = None;
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
            // Timers tick in milliseconds, too coarse here: let the callers run instead.
            tokio::task::yield_now().await;
        }
        Some(group)
    }
}

/// What the writer needs: the pool, the connection it keeps while appends keep coming (taking
/// one from the pool for each group cost a round trip of its own, the pool's liveness test), and
/// where to say that appends landed.
struct Writer {
    pool: SqlitePool,
    connection: Option<PoolConnection<Sqlite>>,
    appended: Arc<watch::Sender<u64>>,
    commits: Arc<AtomicU64>,
}

/// A group's transaction, given up before its commit: nothing of it was written.
struct Abandoned(EventStoreError);

impl Writer {
    /// Writes a group and answers each append. A group whose transaction broke before its
    /// commit (a savepoint that could not be rolled back to) wrote nothing: each of its appends
    /// is then written again alone, so that each gets its own exact answer.
    async fn write(&mut self, group: Vec<Pending>) {
        let requests: Vec<&AppendRequest> = group.iter().map(|p| &p.request).collect();
        match self.write_group(&requests).await {
            Ok(answers) => {
                for (pending, answer) in group.into_iter().zip(answers) {
                    reply(pending.reply, answer);
                }
            }
            Err(Abandoned(error)) if group.len() > 1 => {
                tracing::debug!(%error, appends = group.len(), "group append abandoned; appending one by one");
                for pending in group {
                    let answer = match self.write_group(&[&pending.request]).await {
                        Ok(mut answers) => answers.pop().unwrap_or_else(|| {
                            Err(EventStoreError::Backend("an append went unanswered".into()))
                        }),
                        Err(Abandoned(error)) => Err(error),
                    };
                    reply(pending.reply, answer);
                }
            }
            Err(Abandoned(error)) => {
                for pending in group {
                    reply(pending.reply, Err(error.clone()));
                }
            }
        }
    }

    /// One transaction for `requests`: the answer of each, in order.
    ///
    /// # Errors
    /// [`Abandoned`] when the transaction broke before its commit and was rolled back.
    async fn write_group(&mut self, requests: &[&AppendRequest]) -> Result<Vec<Answer>, Abandoned> {
        let written = self.write_in_connection(requests).await;
        if !matches!(written, Ok(Written::Committed(_))) {
            // The connection may be what failed: the next group takes one from the pool. Given
            // back, it passes the pool's check (`still_usable`): a transaction SQLite ended by
            // itself leaves it counted as in one, and the pool closes it.
            self.connection = None;
        }
        match written {
            Ok(Written::Committed(answers)) | Ok(Written::Refused(answers)) => Ok(answers),
            Err(abandoned) => Err(abandoned),
        }
    }

    async fn write_in_connection(
        &mut self,
        requests: &[&AppendRequest],
    ) -> Result<Written, Abandoned> {
        let mut tx = match begin_write_on(&self.pool, &mut self.connection).await {
            Ok(tx) => tx,
            // Nothing began: the same error for all; alone, each would wait as long again.
            Err(error) => {
                return Ok(Written::Refused(every(
                    requests,
                    &event_store_error(&error),
                )));
            }
        };
        let mut group = match Group::read(&mut tx, requests).await {
            Ok(group) => group,
            Err(error) => {
                rollback(tx).await;
                return Ok(Written::Refused(every(
                    requests,
                    &event_store_error(&error),
                )));
            }
        };
        let answers = match group.append_all(&mut tx, requests).await {
            Ok(answers) => answers,
            Err(error) => {
                rollback(tx).await;
                return Err(Abandoned(event_store_error(&error)));
            }
        };
        if let Err(error) = tx.commit().await {
            // A failed COMMIT (I/O, a full disk) may have left the group's frames in the WAL,
            // where recovery could find them: landed or not is unknown, so every append is
            // told to retry, which its key makes safe.
            tracing::warn!(%error, appends = requests.len(), "group commit failed");
            let error = EventStoreError::Unavailable(format!(
                "the commit failed, the append may have landed: retry with the same idempotency \
                 key: {error}"
            ));
            return Ok(Written::Refused(every(requests, &error)));
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        let landed = answers.iter().filter(|a| a.is_ok()).count();
        if landed > 0 {
            self.appended
                .send_modify(|count| *count = count.wrapping_add(1));
        }
        tracing::debug!(appends = requests.len(), landed, "group committed");
        Ok(Written::Committed(answers))
    }
}

/// How a group's transaction ended, with the answer of each append.
enum Written {
    Committed(Vec<Answer>),
    /// Begun or committed in vain: every append answered with the same error.
    Refused(Vec<Answer>),
}

fn every(requests: &[&AppendRequest], error: &EventStoreError) -> Vec<Answer> {
    requests.iter().map(|_| Err(error.clone())).collect()
}

async fn rollback(tx: WriteTx<'_>) {
    // Give the write lock back now rather than when the pool recycles the connection; the
    // group failed already, so a failed rollback adds nothing.
    if let Err(error) = tx.rollback().await {
        tracing::debug!(%error, "rollback of a group failed");
    }
}

fn reply(reply: Reply, answer: Answer) {
    // A caller that stopped waiting (its request was cancelled) leaves the outcome to the log:
    // its append stands or not, as it would had the caller waited.
    let _ = reply.send(answer);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::future::join_all;
    use strata_ports::conformance::event_store::{claiming, log_of, request, stream};
    use strata_ports::{EventStore, ExpectedVersion, StreamId};
    use tempfile::TempDir;

    use super::*;
    use crate::{SqliteEventStore, SqliteSettings};

    async fn fresh() -> (TempDir, SqliteEventStore) {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::connect(&SqliteSettings::at(dir.path().join("strata.db")))
            .await
            .unwrap();
        crate::migrate(&pool).await.unwrap();
        (dir, SqliteEventStore::new(pool))
    }

    /// A store whose database first runs `setup` (a trigger that breaks some appends), with a
    /// short busy timeout: a write lock left behind fails the next append in half a second.
    async fn fresh_with(setup: &str) -> (TempDir, SqliteEventStore) {
        let dir = tempfile::tempdir().unwrap();
        let settings = SqliteSettings {
            busy_timeout: std::time::Duration::from_millis(500),
            ..SqliteSettings::at(dir.path().join("strata.db"))
        };
        let pool = crate::connect(&settings).await.unwrap();
        crate::migrate(&pool).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(setup.to_owned()))
            .execute(&pool)
            .await
            .unwrap();
        (dir, SqliteEventStore::new(pool))
    }

    fn wrong(stream_id: &StreamId, expected: ExpectedVersion, actual: u64) -> Answer {
        Err(EventStoreError::WrongExpectedVersion {
            stream_id: stream_id.clone(),
            expected,
            actual,
        })
    }

    fn landed(stream_version: u64, global_position: u64) -> Answer {
        Ok(AppendOutcome {
            stream_version,
            global_position,
        })
    }

    // All the appends of a case are started in one poll of the test's one thread, so they are
    // all queued before the writer runs: one group, which the commit counter confirms.

    #[tokio::test]
    async fn concurrent_appends_share_one_transaction() {
        let (_dir, store) = fresh().await;
        let streams: Vec<StreamId> = (0..32).map(|_| stream("order")).collect();

        let answers = join_all(
            streams
                .iter()
                .map(|s| store.append(request(s, ExpectedVersion::Any, 1))),
        )
        .await;

        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(store.group().commits(), 1);
        assert_eq!(store.head_position().await.unwrap(), 32);
    }

    #[tokio::test]
    async fn each_append_of_a_group_gets_its_own_answer_and_only_the_accepted_ones_land() {
        let (_dir, store) = fresh().await;
        let (a, b, c, d) = (
            stream("order"),
            stream("order"),
            stream("order"),
            stream("order"),
        );
        let stored = claiming(request(&d, ExpectedVersion::Any, 1), "alice", "stored");
        store.append(stored).await.unwrap();
        let before = store.group().commits();
        let first = claiming(request(&a, ExpectedVersion::Any, 2), "alice", "k1");
        let mut duplicate = request(&b, ExpectedVersion::Any, 2);
        // Its second event reuses the first event of `first`: it fails half-way in.
        duplicate.events[1].event_id = first.events[0].event_id;
        let group = vec![
            first,
            // `a` is at 2 after the first append of the group, not at 0.
            claiming(request(&a, ExpectedVersion::Exact(0), 1), "alice", "k2"),
            duplicate,
            claiming(request(&a, ExpectedVersion::Exact(2), 1), "alice", "k3"),
            // A replay of a key claimed earlier in the group, and of one stored before it.
            claiming(request(&c, ExpectedVersion::Any, 1), "alice", "k1"),
            claiming(request(&c, ExpectedVersion::Any, 1), "alice", "stored"),
            // The same key for another principal is another key; and `b` is still new, the
            // append of two events to it having failed.
            claiming(request(&b, ExpectedVersion::NoStream, 1), "bob", "k1"),
            request(&c, ExpectedVersion::Any, 2),
        ];

        let answers = join_all(group.into_iter().map(|r| store.append(r))).await;

        assert_eq!(store.group().commits(), before + 1, "not one group");
        let taken = |key: &str| {
            Err(EventStoreError::IdempotencyKeyTaken {
                key: key.to_owned(),
            })
        };
        assert_eq!(answers[0], landed(2, 3));
        assert_eq!(answers[1], wrong(&a, ExpectedVersion::Exact(0), 2));
        assert!(
            matches!(answers[2], Err(EventStoreError::Backend(_))),
            "{:?}",
            answers[2]
        );
        assert_eq!(answers[3], landed(3, 4));
        assert_eq!(answers[4], taken("k1"));
        assert_eq!(answers[5], taken("stored"));
        assert_eq!(answers[6], landed(1, 5));
        assert_eq!(answers[7], landed(2, 7));
        let log: Vec<(StreamId, u64, u64)> = store
            .read_all(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.stream_id, e.stream_version, e.global_position))
            .collect();
        assert_eq!(
            log,
            vec![
                (d.clone(), 1, 1),
                (a.clone(), 1, 2),
                (a.clone(), 2, 3),
                (a.clone(), 3, 4),
                (b.clone(), 1, 5),
                (c.clone(), 1, 6),
                (c.clone(), 2, 7),
            ]
        );
        let record = |principal: &'static str, key: &'static str| {
            let store = store.clone();
            async move {
                store
                    .find_idempotency(principal, key)
                    .await
                    .unwrap()
                    .map(|r| (r.stream_id, r.stream_version, r.global_position))
            }
        };
        assert_eq!(record("alice", "k1").await, Some((a.clone(), 2, 3)));
        assert_eq!(record("alice", "k2").await, None);
        assert_eq!(record("alice", "k3").await, Some((a.clone(), 3, 4)));
        assert_eq!(record("bob", "k1").await, Some((b.clone(), 1, 5)));
        assert_eq!(record("alice", "stored").await, Some((d, 1, 1)));
        // The streams' versions are the accepted appends' (the next append checks them).
        assert_eq!(
            store
                .append(request(&a, ExpectedVersion::Exact(3), 1))
                .await,
            landed(4, 8)
        );
        assert_eq!(
            store
                .append(request(&b, ExpectedVersion::Exact(1), 1))
                .await,
            landed(2, 9)
        );
    }

    #[tokio::test]
    async fn many_concurrent_appends_with_conflicts_land_once_each_in_a_dense_log() {
        let (_dir, store) = fresh().await;
        let shared = stream("order");
        let appends: Vec<_> = (0..64)
            .map(|n| {
                let store = store.clone();
                let (target, expected) = if n % 2 == 0 {
                    (shared.clone(), ExpectedVersion::NoStream)
                } else {
                    (stream("order"), ExpectedVersion::NoStream)
                };
                let mut append = request(&target, expected, 2);
                if n % 3 == 0 {
                    append = claiming(append, "alice", &format!("k{}", n % 9));
                }
                tokio::spawn(async move { store.append(append).await })
            })
            .collect();
        let mut answers = Vec::new();
        for append in appends {
            answers.push(append.await.unwrap());
        }

        let landed: Vec<&AppendOutcome> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
        for answer in &answers {
            assert!(
                matches!(
                    answer,
                    Ok(_)
                        | Err(EventStoreError::WrongExpectedVersion { actual: 2, .. }
                            | EventStoreError::IdempotencyKeyTaken { .. })
                ),
                "{answer:?}"
            );
        }
        let log = store.read_all(0, 1_000).await.unwrap();
        let positions: Vec<u64> = log.iter().map(|e| e.global_position).collect();
        assert_eq!(positions, (1..=2 * landed.len() as u64).collect::<Vec<_>>());
        let mut answered: Vec<u64> = landed.iter().map(|o| o.global_position).collect();
        answered.sort_unstable();
        assert_eq!(
            answered,
            (1..=landed.len() as u64).map(|n| 2 * n).collect::<Vec<_>>()
        );
        assert_eq!(
            log.iter().filter(|e| e.stream_id == shared).count(),
            2,
            "the shared stream was created more than once"
        );
    }

    #[tokio::test]
    async fn a_failed_commit_answers_every_append_of_its_group_unavailable_and_lands_none() {
        let poisoned = stream("order");
        // A deferred foreign key broken by the poisoned stream's event: SQLite refuses the
        // COMMIT itself, after every statement of the group succeeded.
        let (_dir, store) = fresh_with(&format!(
            "CREATE TABLE parents (id INTEGER PRIMARY KEY);
             CREATE TABLE children (parent INTEGER REFERENCES parents (id)
                                    DEFERRABLE INITIALLY DEFERRED);
             CREATE TRIGGER poison AFTER INSERT ON events WHEN NEW.stream_id = '{poisoned}'
             BEGIN INSERT INTO children VALUES (1); END;"
        ))
        .await;
        let streams: Vec<StreamId> = (0..3).map(|_| stream("order")).collect();
        let before = store.group().commits();

        let answers = join_all(streams.iter().chain([&poisoned]).map(|s| {
            store.append(claiming(
                request(s, ExpectedVersion::Any, 1),
                "alice",
                &s.to_string(),
            ))
        }))
        .await;

        for answer in &answers {
            assert!(
                matches!(answer, Err(EventStoreError::Unavailable(m)) if m.contains("retry")),
                "{answer:?}"
            );
        }
        assert_eq!(store.group().commits(), before, "a commit was counted");
        assert_eq!(store.head_position().await.unwrap(), 0);
        assert!(store.read_all(0, 10).await.unwrap().is_empty());
        // The failed transaction was not left open on a connection holding the write lock:
        // the retries of the others land, keys and all, in a dense log.
        for (n, s) in streams.iter().enumerate() {
            let retry = claiming(request(s, ExpectedVersion::Any, 1), "alice", &s.to_string());
            assert_eq!(store.append(retry).await, landed(1, n as u64 + 1));
        }
        assert_eq!(store.head_position().await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_group_broken_before_its_commit_is_written_again_one_by_one() {
        let poisoned = stream("order");
        // RAISE(ROLLBACK) ends the whole transaction from inside one append's statement: no
        // savepoint is left to roll back to, so the group is abandoned and each of its appends
        // is written again alone.
        let (_dir, store) = fresh_with(&format!(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.stream_id = '{poisoned}'
             BEGIN SELECT RAISE(ROLLBACK, 'poisoned'); END;"
        ))
        .await;
        let streams: Vec<StreamId> = (0..3).map(|_| stream("order")).collect();
        let before = store.group().commits();
        let mut group: Vec<AppendRequest> = streams
            .iter()
            .map(|s| request(s, ExpectedVersion::Any, 1))
            .collect();
        group.insert(1, request(&poisoned, ExpectedVersion::Any, 1));

        let answers = join_all(group.into_iter().map(|r| store.append(r))).await;

        assert_eq!(answers[0], landed(1, 1));
        assert!(
            matches!(&answers[1], Err(e) if e.to_string().contains("poisoned")),
            "{:?}",
            answers[1]
        );
        assert_eq!(answers[2], landed(1, 2));
        assert_eq!(answers[3], landed(1, 3));
        // Three lone transactions committed; the abandoned group and the poisoned append none.
        // (The connections whose transaction SQLite ended went back to the pool marked as still
        // in one; the pool closes them now, where a later BEGIN on them failed before.)
        assert_eq!(store.group().commits(), before + 3);
        let log = log_of(&store).await;
        assert_eq!(
            log,
            vec![
                (streams[0].clone(), 1),
                (streams[1].clone(), 2),
                (streams[2].clone(), 3),
            ]
        );
    }
}
