//! The append statement and its columns, shared by the event store and the group writer: one
//! append written alone in the caller's transaction (`strata_append`, migration 0007), events
//! and expected versions as the append functions' column arrays, and the check of each answer
//! the database gives against the port's own rule.

use sqlx::PgConnection;
use strata_ports::{AppendOutcome, AppendRequest, EventStoreError, ExpectedVersion, NewEvent};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{Failure, event_store_error};

/// One append in the caller's transaction (migration 0007): the function locks the stream's
/// row, looks the idempotency key up under that lock, checks the expected version, then moves the
/// head counter and inserts the events and the claim, just before the caller's commit. It runs
/// as the tables' owner: the service's role may append only through it (decision 0006).
/// Parameters: $1 stream id, $2 and $3 the expected version (as for the group function),
/// $4..$9 the event columns, $10..$12 the idempotency claim (all null without one).
const APPEND: &str = "\
    SELECT outcome, at_version, at_position \
    FROM strata_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// The append functions' answers (see `APPEND`; the group function answers each append alike).
const APPENDED: i16 = 0;
const REFUSED_BY_VERSION: i16 = 1;
const KEY_TAKEN: i16 = 2;

/// One append in its own transaction.
pub(crate) async fn append_alone(
    connection: &mut PgConnection,
    request: &AppendRequest,
) -> Result<AppendOutcome, EventStoreError> {
    let mut tx = sqlx::Connection::begin(connection)
        .await
        .map_err(|e| event_store_error(&e))?;
    match append_in(&mut tx, request).await {
        Ok(outcome) => {
            tx.commit().await.map_err(|e| event_store_error(&e))?;
            tracing::debug!(
                stream_id = %request.stream_id,
                stream_version = outcome.stream_version,
                global_position = outcome.global_position,
                events = request.events.len(),
                "appended"
            );
            Ok(outcome)
        }
        Err(error) => {
            // Release the stream lock now rather than when the pool recycles the connection;
            // the append failed already, so a failed rollback adds nothing to report.
            if let Err(rollback) = tx.rollback().await {
                tracing::debug!(error = %rollback, "rollback after a failed append failed");
            }
            tracing::debug!(stream_id = %request.stream_id, %error, "append refused");
            Err(error)
        }
    }
}

/// Runs an append inside a transaction the caller owns, up to but excluding the commit; on
/// success the head counter row stays locked until the caller commits or rolls back.
/// [`crate::PgEventStore`]'s append is this plus begin and commit. Public only so that tests
/// can hold an append open and watch what concurrent writers and readers do meanwhile.
///
/// # Errors
/// As for [`strata_ports::EventStore::append`]. After an error the transaction is aborted:
/// roll it back.
#[doc(hidden)]
pub async fn append_in(
    conn: &mut PgConnection,
    request: &AppendRequest,
) -> Result<AppendOutcome, EventStoreError> {
    if request.events.is_empty() {
        return Err(EventStoreError::EmptyAppend);
    }
    request.check_input()?;
    let stream = request.stream_id.as_str();
    let (kind, expected_version) = expected_columns(request.expected)?;
    let columns = EventColumns::of(&request.events)?;
    let claim = request.idempotency.as_ref();
    let (outcome, version, position): (i16, i64, Option<i64>) = sqlx::query_as(APPEND)
        .bind(stream)
        .bind(kind)
        .bind(expected_version)
        .bind(columns.event_ids)
        .bind(columns.event_types)
        .bind(columns.schema_versions)
        .bind(columns.data)
        .bind(columns.metadata)
        .bind(columns.recorded_at)
        .bind(claim.map(|c| c.principal.as_str()))
        .bind(claim.map(|c| c.key.as_str()))
        .bind(claim.map(|c| c.fingerprint.as_str()))
        .fetch_one(&mut *conn)
        .await
        .map_err(|error| match Failure::of(&error) {
            // The stream row lock makes this unreachable unless `streams` and `events` disagree;
            // the version the row claimed (the DETAIL) is the best this append knows.
            Failure::StreamVersionTaken => {
                tracing::warn!(%stream, %error, "stream version taken despite the stream lock");
                match claimed_version(&error) {
                    Some(actual) => EventStoreError::WrongExpectedVersion {
                        stream_id: request.stream_id.clone(),
                        expected: request.expected,
                        actual,
                    },
                    None => event_store_error(&error),
                }
            }
            // A concurrent claim of the key committed after this one looked it up; without a
            // claim of its own, the append cannot have hit the key index: a store fault.
            Failure::IdempotencyKeyTaken => match claim {
                Some(claim) => EventStoreError::IdempotencyKeyTaken {
                    key: claim.key.clone(),
                },
                None => event_store_error(&error),
            },
            Failure::Unavailable(_) | Failure::Backend(_) => event_store_error(&error),
        })?;
    answer_of_outcome(request, outcome, version, position)
}

/// One append's answer from an append function's (`strata_append`, or one append's entry of
/// `strata_append_group`): the outcome code, the stream's version and the last event's position,
/// checked against the port's own rule.
pub(crate) fn answer_of_outcome(
    request: &AppendRequest,
    outcome: i16,
    version: i64,
    position: Option<i64>,
) -> Result<AppendOutcome, EventStoreError> {
    match (outcome, &request.idempotency) {
        (KEY_TAKEN, Some(claim)) => Err(EventStoreError::IdempotencyKeyTaken {
            key: claim.key.clone(),
        }),
        (APPENDED | REFUSED_BY_VERSION, _) => {
            answer_of(request, outcome == APPENDED, version, position)
        }
        _ => Err(EventStoreError::Backend(format!(
            "the append function answered {outcome} for an append to {}",
            request.stream_id
        ))),
    }
}

/// The stream version `strata_append` puts in the DETAIL of the violation it raises when the
/// stream's row lags behind its events.
fn claimed_version(error: &sqlx::Error) -> Option<u64> {
    error
        .as_database_error()?
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?
        .detail()?
        .parse()
        .ok()
}

/// Events as column arrays, for a single `UNNEST` insert.
#[derive(Default)]
pub(crate) struct EventColumns {
    pub(crate) event_ids: Vec<Uuid>,
    pub(crate) event_types: Vec<String>,
    pub(crate) schema_versions: Vec<i32>,
    /// JSON text: the log stores it as given (migration 0006).
    pub(crate) data: Vec<String>,
    pub(crate) metadata: Vec<String>,
    pub(crate) recorded_at: Vec<OffsetDateTime>,
}

impl EventColumns {
    pub(crate) fn of(events: &[NewEvent]) -> Result<Self, EventStoreError> {
        let mut columns = Self::default();
        columns.extend(events)?;
        Ok(columns)
    }

    /// Adds `events` after the ones already here.
    pub(crate) fn extend(&mut self, events: &[NewEvent]) -> Result<(), EventStoreError> {
        for event in events {
            let schema_version = i32::try_from(event.schema_version).map_err(|_| {
                EventStoreError::Backend(format!(
                    "schema version {} of event {} does not fit the store",
                    event.schema_version, event.event_id
                ))
            })?;
            let metadata = serde_json::to_string(&event.metadata).map_err(|e| {
                EventStoreError::Backend(format!("metadata of event {}: {e}", event.event_id))
            })?;
            let data = serde_json::to_string(&event.data).map_err(|e| {
                EventStoreError::Backend(format!("data of event {}: {e}", event.event_id))
            })?;
            self.event_ids.push(event.event_id);
            self.event_types.push(event.event_type.clone());
            self.schema_versions.push(schema_version);
            self.data.push(data);
            self.metadata.push(metadata);
            self.recorded_at.push(event.recorded_at);
        }
        Ok(())
    }
}

/// One append's answer from the database's, checked against the port's own rule: an outcome
/// the two disagree on is reported as a fault of the store, never as an answer.
pub(crate) fn answer_of(
    request: &AppendRequest,
    accepted: bool,
    version: i64,
    position: Option<i64>,
) -> Result<AppendOutcome, EventStoreError> {
    let disagree = || {
        EventStoreError::Backend(format!(
            "the database and the port disagree on an append to {} expecting {}",
            request.stream_id, request.expected
        ))
    };
    let version = to_u64(version, "stream version")?;
    if !accepted {
        return match request.expected.check(&request.stream_id, version) {
            Err(refused) => Err(refused),
            Ok(()) => Err(disagree()),
        };
    }
    let count = u64::try_from(request.events.len()).map_err(|_| disagree())?;
    let before = version.checked_sub(count).ok_or_else(disagree)?;
    request
        .expected
        .check(&request.stream_id, before)
        .map_err(|_| disagree())?;
    let position = position.ok_or_else(disagree)?;
    Ok(AppendOutcome {
        stream_version: version,
        global_position: to_u64(position, "global position")?,
    })
}

/// An expected version as the append functions take it: a kind (0 any, 1 no stream, 2 an
/// existing stream, 3 exactly) and the version of kind 3.
pub(crate) fn expected_columns(expected: ExpectedVersion) -> Result<(i16, i64), EventStoreError> {
    Ok(match expected {
        ExpectedVersion::Any => (0, 0),
        ExpectedVersion::NoStream => (1, 0),
        ExpectedVersion::StreamExists => (2, 0),
        ExpectedVersion::Exact(version) => (
            3,
            i64::try_from(version).map_err(|_| {
                EventStoreError::Backend(format!("version {version} does not fit the store"))
            })?,
        ),
    })
}

/// A stored version or position; negative ones break the envelope's rules.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, EventStoreError> {
    u64::try_from(value).map_err(|_| EventStoreError::Corrupt(format!("negative {what} {value}")))
}
