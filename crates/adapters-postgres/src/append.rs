//! The append statement and its columns, shared by the event store and the group writer: one
//! append written alone in the caller's transaction (`strata_append`, migration 0007), events
//! and expected versions as the append functions' column arrays, and the check of each answer
//! the database gives against the port's own rule.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgArguments, PgBindIterExt, PgHasArrayType, PgTypeInfo};
use sqlx::{Arguments, PgConnection, Postgres};
use strata_ports::{AppendOutcome, AppendRequest, EventStoreError, ExpectedVersion, NewEvent};

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

/// One event at an exact version of an existing stream, without a claim, in one statement that
/// is its own transaction (migration 0011).
const APPEND_ONE: &str =
    "SELECT at_position FROM strata_append_one($1, $2, $3, $4, $5, $6, $7, $8)";

/// Appends `request` by [`APPEND_ONE`] when it is what that statement takes (one event, an exact
/// expected version, no claim): `Some` of where it landed, or `None` when it is not such an
/// append, or when its stream is missing or at another version. Nothing is written then, and
/// the group function gives the exact answer.
///
/// # Errors
/// As for the event store's append; nothing is written then either (the statement is its own
/// transaction), unless the connection was lost after the commit.
pub(crate) async fn append_one(
    connection: &mut PgConnection,
    request: &AppendRequest,
) -> Result<Option<AppendOutcome>, EventStoreError> {
    let (ExpectedVersion::Exact(expected), [event], None) =
        (request.expected, &request.events[..], &request.idempotency)
    else {
        return Ok(None);
    };
    let (_, expected_version) = expected_columns(request.expected)?;
    let schema_version = schema_version_of(event)?;
    let mut arguments = PgArguments::default();
    arguments.reserve(8, 64 + event_columns_size(std::iter::once(event)));
    add(&mut arguments, request.stream_id.as_str())?;
    add(&mut arguments, expected_version)?;
    add(&mut arguments, event.event_id)?;
    add(&mut arguments, event.event_type.as_str())?;
    add(&mut arguments, schema_version)?;
    add(&mut arguments, JsonText(&event.data))?;
    add(&mut arguments, JsonText(&event.metadata))?;
    add(&mut arguments, event.recorded_at)?;
    let position: Option<i64> = sqlx::query_scalar_with(APPEND_ONE, arguments)
        .fetch_one(connection)
        .await
        .map_err(|e| event_store_error(&e))?;
    let Some(position) = position else {
        return Ok(None);
    };
    let stream_version = expected.checked_add(1).ok_or_else(|| {
        EventStoreError::Backend(format!("version {expected} does not fit the store"))
    })?;
    Ok(Some(AppendOutcome {
        stream_version,
        global_position: to_u64(position, "global position")?,
    }))
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
    let claim = request.idempotency.as_ref();
    let mut arguments = PgArguments::default();
    arguments.reserve(12, 256 + event_columns_size(request.events.iter()));
    add(&mut arguments, stream)?;
    add(&mut arguments, kind)?;
    add(&mut arguments, expected_version)?;
    add_event_columns(&mut arguments, request.events.iter())?;
    add(&mut arguments, claim.map(|c| c.principal.as_str()))?;
    add(&mut arguments, claim.map(|c| c.key.as_str()))?;
    add(&mut arguments, claim.map(|c| c.fingerprint.as_str()))?;
    let (outcome, version, position): (i16, i64, Option<i64>) =
        sqlx::query_as_with(APPEND, arguments)
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

/// Adds the append functions' event columns (ids, types, schema versions, data, metadata,
/// times) for `events` to `arguments`. Each array is encoded from the events as it is written,
/// data and metadata serialised straight into the buffer ([`JsonText`]): collecting them into
/// vectors and strings first was a fifth of an append's work.
///
/// # Errors
/// A schema version the store cannot hold; an argument that cannot be encoded.
pub(crate) fn add_event_columns<'a, I>(
    arguments: &mut PgArguments,
    events: I,
) -> Result<(), EventStoreError>
where
    I: Iterator<Item = &'a NewEvent> + Clone,
{
    let schema_versions = events
        .clone()
        .map(schema_version_of)
        .collect::<Result<Vec<i32>, _>>()?;
    add(arguments, events.clone().map(|e| e.event_id).bind_iter())?;
    add(
        arguments,
        events.clone().map(|e| e.event_type.as_str()).bind_iter(),
    )?;
    add(arguments, schema_versions)?;
    add(
        arguments,
        events.clone().map(|e| JsonText(&e.data)).bind_iter(),
    )?;
    add(
        arguments,
        events.clone().map(|e| JsonText(&e.metadata)).bind_iter(),
    )?;
    add(arguments, events.map(|e| e.recorded_at).bind_iter())
}

/// `event`'s schema version as the store's column holds it.
fn schema_version_of(event: &NewEvent) -> Result<i32, EventStoreError> {
    i32::try_from(event.schema_version).map_err(|_| {
        EventStoreError::Backend(format!(
            "schema version {} of event {} does not fit the store",
            event.schema_version, event.event_id
        ))
    })
}

/// Adds one argument; an encoding failure is the store's fault.
pub(crate) fn add<'q, T>(arguments: &mut PgArguments, value: T) -> Result<(), EventStoreError>
where
    T: sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>,
{
    arguments
        .add(value)
        .map_err(|e| EventStoreError::Backend(format!("cannot encode an append: {e}")))
}

/// About how many bytes the event columns of `events` take encoded (to size the buffer once).
pub(crate) fn event_columns_size<'a>(events: impl Iterator<Item = &'a NewEvent>) -> usize {
    events
        .map(|e| 4 + e.event_type.len() + 20 + 8 + 12 + 2 * EVENT_JSON_GUESS)
        .sum()
}

/// The bytes guessed per data or metadata element: most events' are shorter.
const EVENT_JSON_GUESS: usize = 4 + 200;

/// A value as PostgreSQL `text` holding its JSON, serialised straight into the statement's
/// arguments (the log stores the text as given, migration 0006); as an iterator's items,
/// `bind_iter` makes the `text[]` of them.
struct JsonText<'a, T>(&'a T);

impl<T> sqlx::Type<Postgres> for JsonText<'_, T> {
    fn type_info() -> PgTypeInfo {
        <&str as sqlx::Type<Postgres>>::type_info()
    }
}

impl<T> PgHasArrayType for JsonText<'_, T> {
    fn array_type_info() -> PgTypeInfo {
        <&str as PgHasArrayType>::array_type_info()
    }
}

impl<T: serde::Serialize> sqlx::Encode<'_, Postgres> for JsonText<'_, T> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let bytes: &mut Vec<u8> = buf;
        serde_json::to_writer(bytes, self.0)?;
        Ok(IsNull::No)
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
