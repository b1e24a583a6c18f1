//! A group's appends inside its transaction: checked in memory against what the group started
//! from, then written in batches, each a multi-statement query with a savepoint per append
//! (decision 0010, "SQLite"). The queue and the writer are `group_commit.rs`'s.

use std::collections::{HashMap, HashSet};

use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, SqliteConnection};
use strata_ports::{AppendOutcome, AppendRequest, EventStoreError};
use time::OffsetDateTime;

use crate::codec::{self, micros};
use crate::error::event_store_error;
use crate::event_store::{HEAD_POSITION, to_u64};

/// An append's answer.
pub(crate) type Answer = Result<AppendOutcome, EventStoreError>;

/// What the appends of a group have left so far, inside its transaction: the log's head, the
/// version of each of its streams and the claims taken (the write lock is held, so only the
/// group changes them). Read once for the whole group, so that the appends are checked in
/// memory and written together, a few round trips to the connection's thread for the group
/// rather than several for each append.
#[derive(Clone)]
pub(crate) struct Group {
    head: i64,
    versions: HashMap<String, i64>,
    /// (principal, key) of every claim of the group already stored or just written.
    claims: HashSet<(String, String)>,
}

/// What a group starts from, in one query: the log's head (kind 0), the versions of the group's
/// streams (kind 1; `?1`, a JSON array of ids; a stream without a row is at 0), and the group's
/// claims that are stored already (kind 2; `?2`, a JSON array of [principal, key]).
const GROUP_START: &str = "\
    SELECT 0, NULL, NULL, coalesce(max(global_position), 0) FROM events \
    UNION ALL \
    SELECT 1, s.stream_id, NULL, s.version FROM json_each(?1) AS j \
    JOIN streams AS s ON s.stream_id = j.value \
    UNION ALL \
    SELECT 2, k.principal, k.key, 0 FROM json_each(?2) AS j \
    JOIN idempotency_keys AS k ON k.principal = j.value ->> 0 AND k.key = j.value ->> 1";

/// The most events written by one query: its parameters stay far below SQLite's limit.
const EVENTS_PER_QUERY: usize = 64;

// The statements of the appends' queries. Their parameters are anonymous: sqlx binds those of a
// multi-statement query in order across its statements (numbered ones it binds per statement,
// and skips them after a gap).

const INSERT_EVENT: &str = "\
    INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, \
                        schema_version, data, metadata, recorded_at) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);";

const SET_STREAM_VERSION: &str = "\
    INSERT INTO streams (stream_id, version) VALUES (?, ?) \
    ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version;";

const INSERT_IDEMPOTENCY: &str = "\
    INSERT INTO idempotency_keys (principal, key, fingerprint, stream_id, stream_version, \
                                  global_position, recorded_at) \
    VALUES (?, ?, ?, ?, ?, ?, ?);";

/// An accepted append, as checked: where it goes.
struct Accepted {
    /// Its index in the group.
    index: usize,
    outcome: AppendOutcome,
    /// The stream's version and the log's head before it, and the stream's version after it.
    version_before: i64,
    head_before: i64,
    version: i64,
    head: i64,
}

impl Group {
    /// Reads the head, the streams' versions and the claims taken, for `requests`.
    pub(crate) async fn read(
        conn: &mut SqliteConnection,
        requests: &[&AppendRequest],
    ) -> Result<Self, sqlx::Error> {
        let encode = |e: serde_json::Error| sqlx::Error::Encode(Box::new(e));
        let streams: Vec<&str> = requests.iter().map(|r| r.stream_id.as_str()).collect();
        let claimed: Vec<[&str; 2]> = requests
            .iter()
            .filter_map(|r| r.idempotency.as_ref())
            .map(|c| [c.principal.as_str(), c.key.as_str()])
            .collect();
        let rows: Vec<(i64, Option<String>, Option<String>, i64)> = sqlx::query_as(GROUP_START)
            .bind(serde_json::to_string(&streams).map_err(encode)?)
            .bind(serde_json::to_string(&claimed).map_err(encode)?)
            .fetch_all(&mut *conn)
            .await?;
        let mut head = None;
        let mut versions: HashMap<String, i64> = HashMap::with_capacity(streams.len());
        let mut claims = HashSet::new();
        for row in rows {
            match row {
                (0, None, None, position) => head = Some(position),
                (1, Some(stream), None, version) => {
                    versions.insert(stream, version);
                }
                (2, Some(principal), Some(key), _) => {
                    claims.insert((principal, key));
                }
                _ => {
                    return Err(sqlx::Error::Protocol(
                        "unexpected row starting a group".into(),
                    ));
                }
            }
        }
        let head = head.ok_or_else(|| sqlx::Error::Protocol("no head starting a group".into()))?;
        for stream in streams {
            versions.entry(stream.to_owned()).or_insert(0);
        }
        Ok(Self {
            head,
            versions,
            claims,
        })
    }

    /// Checks and writes every append of the group, in order: the answer of each.
    ///
    /// The accepted appends are written in batches, each a multi-statement query in which
    /// every append has a savepoint of its own. When a statement fails, the query stops there:
    /// the append it belongs to is rolled back to its savepoint, found by the log's head (the
    /// appends before it in the batch stand, and numbered the log densely), answered with the
    /// error, and the appends after it are checked again without it.
    ///
    /// # Errors
    /// A failure of the savepoints themselves: the transaction can no longer be trusted.
    pub(crate) async fn append_all(
        &mut self,
        conn: &mut SqliteConnection,
        requests: &[&AppendRequest],
    ) -> Result<Vec<Answer>, sqlx::Error> {
        let mut answers: Vec<Option<Answer>> = requests.iter().map(|_| None).collect();
        let mut next = 0;
        while next < requests.len() {
            let before = self.clone();
            let mut batch = Vec::new();
            let mut events = 0;
            while next < requests.len() && events < EVENTS_PER_QUERY {
                let request = requests[next];
                // A large append goes alone, in queries of its own.
                if !batch.is_empty() && events + request.events.len() > EVENTS_PER_QUERY {
                    break;
                }
                match self.check(next, request) {
                    Ok(accepted) => {
                        self.accept(request, &accepted);
                        events += request.events.len();
                        batch.push(accepted);
                    }
                    Err(error) => {
                        tracing::debug!(stream_id = %request.stream_id, %error, "append refused");
                        answers[next] = Some(Err(error));
                    }
                }
                next += 1;
            }
            let Err(error) = write(conn, requests, &batch).await else {
                for accepted in batch {
                    answers[accepted.index] = Some(Ok(accepted.outcome));
                }
                continue;
            };
            // Undoes what the failed append wrote before its error (its first events before a
            // duplicate event id), and nothing of the appends before it.
            if let Err(undo) = sqlx::raw_sql("ROLLBACK TO strata_append; RELEASE strata_append")
                .execute(&mut *conn)
                .await
            {
                // The transaction is gone with its savepoint (SQLite rolls back all of it on
                // a full disk or an I/O error): the statement's own error says why.
                tracing::debug!(error = %undo, "rollback to an append's savepoint failed");
                return Err(error);
            }
            let head: i64 = sqlx::query_scalar(HEAD_POSITION)
                .fetch_one(&mut *conn)
                .await?;
            let Some(failed) = batch.iter().position(|a| a.head > head) else {
                return Err(error);
            };
            if batch[failed].head_before != head {
                // The log is not where the appends before the failed one left it.
                return Err(error);
            }
            *self = before;
            for accepted in &batch[..failed] {
                self.accept(requests[accepted.index], accepted);
                answers[accepted.index] = Some(Ok(accepted.outcome));
            }
            let index = batch[failed].index;
            let error = event_store_error(&error);
            tracing::debug!(stream_id = %requests[index].stream_id, %error, "append failed");
            answers[index] = Some(Err(error));
            // The appends after it were checked with it in: check them again.
            next = index + 1;
        }
        Ok(answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| {
                    Err(EventStoreError::Backend("an append went unanswered".into()))
                })
            })
            .collect())
    }

    /// Records an accepted append in the group's state.
    fn accept(&mut self, request: &AppendRequest, accepted: &Accepted) {
        self.head = accepted.head;
        self.versions
            .insert(request.stream_id.as_str().to_owned(), accepted.version);
        if let Some(claim) = &request.idempotency {
            self.claims
                .insert((claim.principal.clone(), claim.key.clone()));
        }
    }

    /// The checks of the group's append `index` against the group's state: where it goes, or
    /// its refusal.
    fn check(&self, index: usize, request: &AppendRequest) -> Result<Accepted, EventStoreError> {
        let stream = request.stream_id.as_str();
        let current = self.versions.get(stream).copied().unwrap_or(0);
        // The key first, as on PostgreSQL: a retry of an applied command is a replay, not a
        // version conflict.
        if let Some(claim) = &request.idempotency
            && self
                .claims
                .contains(&(claim.principal.clone(), claim.key.clone()))
        {
            return Err(EventStoreError::IdempotencyKeyTaken {
                key: claim.key.clone(),
            });
        }
        request
            .expected
            .check(&request.stream_id, to_u64(current, "stream version")?)?;
        let count = i64::try_from(request.events.len())
            .map_err(|_| EventStoreError::Backend("too many events in one append".into()))?;
        let version = current.checked_add(count).ok_or_else(|| {
            EventStoreError::Backend(format!("stream {stream} is out of versions"))
        })?;
        let head = self
            .head
            .checked_add(count)
            .ok_or_else(|| EventStoreError::Backend("the log is out of positions".into()))?;
        Ok(Accepted {
            index,
            outcome: AppendOutcome {
                stream_version: to_u64(version, "stream version")?,
                global_position: to_u64(head, "global position")?,
            },
            version_before: current,
            head_before: self.head,
            version,
            head,
        })
    }
}

/// Writes a batch of accepted appends, each between `SAVEPOINT` and `RELEASE`, in one query
/// (a large append alone, in queries of [`EVENTS_PER_QUERY`] events). On an error, the
/// savepoint of the append that failed is left open.
async fn write(
    conn: &mut SqliteConnection,
    requests: &[&AppendRequest],
    batch: &[Accepted],
) -> Result<(), sqlx::Error> {
    let mut query = Query::default();
    for accepted in batch {
        let request = requests[accepted.index];
        let stream = request.stream_id.as_str();
        query.sql.push_str("SAVEPOINT strata_append;");
        let (mut version, mut position) = (accepted.version_before, accepted.head_before);
        for event in &request.events {
            if query.events == EVENTS_PER_QUERY {
                query.execute(conn).await?;
            }
            // Cannot overflow: `Group::check` added the event count to both.
            version += 1;
            position += 1;
            let metadata = serde_json::to_string(&event.metadata)
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            query.sql.push_str(INSERT_EVENT);
            query.events += 1;
            query.add(position)?;
            query.add(codec::text_id(event.event_id))?;
            query.add(stream.to_owned())?;
            query.add(version)?;
            query.add(event.event_type.clone())?;
            query.add(i64::from(event.schema_version))?;
            query.add(event.data.to_string())?;
            query.add(metadata)?;
            query.add(micros(event.recorded_at))?;
        }
        query.sql.push_str(SET_STREAM_VERSION);
        query.add(stream.to_owned())?;
        query.add(version)?;
        if let Some(claim) = &request.idempotency {
            query.sql.push_str(INSERT_IDEMPOTENCY);
            query.add(claim.principal.clone())?;
            query.add(claim.key.clone())?;
            query.add(claim.fingerprint.clone())?;
            query.add(stream.to_owned())?;
            query.add(version)?;
            query.add(position)?;
            query.add(micros(OffsetDateTime::now_utc()))?;
        }
        query.sql.push_str("RELEASE strata_append;");
    }
    query.execute(conn).await
}

/// A multi-statement query being built.
#[derive(Default)]
struct Query {
    sql: String,
    args: SqliteArguments,
    events: usize,
}

impl Query {
    fn add<T>(&mut self, value: T) -> Result<(), sqlx::Error>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        self.args.add(value).map_err(sqlx::Error::Encode)
    }

    /// Runs what was built, and starts again empty.
    async fn execute(&mut self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        let Self { sql, args, .. } = std::mem::take(self);
        if sql.is_empty() {
            return Ok(());
        }
        // The statement cache keeps one prepared query per shape (its sequence of statements):
        // few, as groups are mostly of appends of one or a few events.
        sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
