//! The event store port: append to a stream with an expected version, read a stream, and read
//! the global log in order. Also the event envelope and the idempotency record that is written
//! in the same transaction as the events it acknowledges.

use std::fmt;
use std::ops::ControlFlow;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;
use uuid::fmt::Hyphenated;

/// The identity of a stream: `<category>-<uuid>`, e.g. `order-0190…`. Stored; never reformat.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    value: String,
    id: Uuid,
    category_len: usize,
}

/// A string that is not `<category>-<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stream id (expected <category>-<uuid>): {0:?}")]
pub struct StreamIdError(pub String);

impl StreamId {
    /// The stream of aggregate `id` in `category` (lower-case letters).
    pub fn new(category: &str, id: Uuid) -> Self {
        // Written out rather than format!ted: every command builds one.
        let mut value = String::with_capacity(category.len() + 1 + Hyphenated::LENGTH);
        value.push_str(category);
        value.push('-');
        value.push_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        Self {
            value,
            id,
            category_len: category.len(),
        }
    }

    /// Parses a stored stream id.
    ///
    /// # Errors
    /// [`StreamIdError`] when the text is not `<category>-<uuid>`.
    pub fn parse(text: &str) -> Result<Self, StreamIdError> {
        let error = || StreamIdError(text.to_owned());
        let (category, id) = text.split_once('-').ok_or_else(error)?;
        if category.is_empty() || !category.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(error());
        }
        let id = Uuid::parse_str(id).map_err(|_| error())?;
        Ok(Self::new(category, id))
    }

    pub fn category(&self) -> &str {
        &self.value[..self.category_len]
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.value)
    }
}

/// What the writer believes about the stream it appends to (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must have no events.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this version (0 = empty stream).
    Exact(u64),
}

impl ExpectedVersion {
    /// The optimistic concurrency check: `Ok` when an append expecting `self` may go on at
    /// `stream_id`, whose last version is `actual` (read under the adapter's write lock).
    ///
    /// # Errors
    /// [`EventStoreError::WrongExpectedVersion`] with `actual`.
    pub fn check(self, stream_id: &StreamId, actual: u64) -> Result<(), EventStoreError> {
        let accepted = match self {
            Self::Any => true,
            Self::NoStream => actual == 0,
            Self::StreamExists => actual >= 1,
            Self::Exact(version) => actual == version,
        };
        if accepted {
            Ok(())
        } else {
            Err(EventStoreError::WrongExpectedVersion {
                stream_id: stream_id.clone(),
                expected: self,
                actual,
            })
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("an existing stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Who did what, and why: stored with every event. The correlation id is the HTTP request id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// An event to append. Versions and positions are assigned by the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: Value,
    pub metadata: Metadata,
    pub recorded_at: OffsetDateTime,
}

/// An event as stored: the envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream_id: StreamId,
    /// 1 for a stream's first event, then +1 per event, without gaps.
    pub stream_version: u64,
    /// 1 for the log's first event, then +1 per event, without gaps, in commit order.
    pub global_position: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub data: Value,
    pub metadata: Metadata,
    pub recorded_at: OffsetDateTime,
}

/// What a rehydration needs of a stored event: where it stands, what it is, and its data as the
/// JSON text the store holds, not yet parsed (and not checked: the decoder parses it anyway and
/// refuses damaged text). Borrowed from the store's read buffer, so a long stream is folded
/// without a copy of each event: building a `serde_json::Value` per event, reading the rest of
/// the envelope, and then collecting owned copies cost more than the fold itself (decisions
/// 0011 and 0012).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadRef<'a> {
    pub stream_version: u64,
    pub global_position: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub data: &'a str,
}

/// Takes the events of one stream read, one at a time and in version order, while the store
/// reads them: a fold decodes an event while the next is still on its way.
pub trait PayloadVisitor: Send {
    /// One event. [`ControlFlow::Break`] ends the read: the store hands on no further event
    /// (a fold that met an event it cannot decode has nothing to gain from the rest). It saves
    /// the visitor's work, not necessarily the store's: a server may still send what is left.
    fn visit(&mut self, payload: PayloadRef<'_>) -> ControlFlow<()>;
}

/// Hands recorded envelopes on to `visitor` as [`EventStore::visit_stream`] would, each one's
/// data written out as JSON text: the default of that method, and what test doubles answer.
///
/// # Errors
/// `Backend` if a `data` cannot be written as JSON text (a `Value` always can).
pub fn visit_recorded(
    events: &[RecordedEvent],
    visitor: &mut dyn PayloadVisitor,
) -> Result<(), EventStoreError> {
    for event in events {
        let data = serde_json::to_string(&event.data).map_err(|e| {
            EventStoreError::Backend(format!("data of event {}: {e}", event.event_id))
        })?;
        let payload = PayloadRef {
            stream_version: event.stream_version,
            global_position: event.global_position,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            data: &data,
        };
        if visitor.visit(payload).is_break() {
            break;
        }
    }
    Ok(())
}

/// Claims an idempotency key for an append: stored atomically with the events, so a command is
/// applied at most once per (principal, key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// Whose key this is: keys of different users never collide.
    pub principal: String,
    pub key: String,
    /// A canonical description of the request; a replay must match it exactly.
    pub fingerprint: String,
}

impl IdempotencyClaim {
    /// Refuses what no store may be asked to index ([`crate::limits`]).
    ///
    /// # Errors
    /// A NUL character, or a principal or key longer than the limits.
    pub fn check_input(&self) -> Result<(), crate::limits::InputError> {
        check_idempotency_lookup(&self.principal, &self.key)?;
        crate::limits::check_text("fingerprint", &self.fingerprint, MAX_FINGERPRINT_BYTES)
    }
}

/// Longest fingerprint of an idempotent request (the application's is a short digest).
const MAX_FINGERPRINT_BYTES: usize = 512;

/// Refuses a principal or idempotency key no store may be asked to look up ([`crate::limits`]).
///
/// # Errors
/// A NUL character, or longer than the limits.
pub fn check_idempotency_lookup(
    principal: &str,
    key: &str,
) -> Result<(), crate::limits::InputError> {
    use crate::limits::{MAX_IDEMPOTENCY_KEY_BYTES, MAX_PRINCIPAL_BYTES, check_text};
    check_text("principal", principal, MAX_PRINCIPAL_BYTES)?;
    check_text("idempotency key", key, MAX_IDEMPOTENCY_KEY_BYTES)
}

/// An applied idempotent command: what was asked and what it was acknowledged with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub principal: String,
    pub key: String,
    pub fingerprint: String,
    pub stream_id: StreamId,
    pub stream_version: u64,
    pub global_position: u64,
}

/// One atomic append: all events land, contiguously in the stream, or none do.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    pub stream_id: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub idempotency: Option<IdempotencyClaim>,
}

impl AppendRequest {
    /// Refuses what no store may be asked to index ([`crate::limits`]): the idempotency claim.
    /// Event data and metadata are stored as JSON text, where a NUL is an escape like any other.
    ///
    /// # Errors
    /// The first value that breaks a limit.
    pub fn check_input(&self) -> Result<(), crate::limits::InputError> {
        self.idempotency
            .as_ref()
            .map_or(Ok(()), IdempotencyClaim::check_input)
    }
}

/// Where an append landed: the stream version and global position of its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub stream_version: u64,
    pub global_position: u64,
}

/// Why the event store refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStoreError {
    /// Optimistic concurrency: the stream is not where the writer expected it.
    #[error("wrong expected version for {stream_id}: expected {expected}, stream is at {actual}")]
    WrongExpectedVersion {
        stream_id: StreamId,
        expected: ExpectedVersion,
        actual: u64,
    },
    /// Another append already claimed this (principal, key); look the record up.
    #[error("idempotency key {key:?} is already used")]
    IdempotencyKeyTaken { key: String },
    /// An append must carry at least one event.
    #[error("an append needs at least one event")]
    EmptyAppend,
    /// A value the store refuses before any statement ([`crate::limits`]): a NUL character, or
    /// longer than the store can index.
    #[error("refused input: {0}")]
    InvalidInput(#[from] crate::limits::InputError),
    /// The store cannot be reached now (connection refused, pool timeout): worth retrying later.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// Stored data this code cannot interpret (a row that breaks the envelope's rules).
    #[error("corrupt event store data: {0}")]
    Corrupt(String),
    /// Any other failure of the backing store.
    #[error("event store failed: {0}")]
    Backend(String),
}

/// The append-only event log.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends events to one stream atomically, after checking `expected`, and records the
    /// idempotency claim in the same transaction.
    ///
    /// # Errors
    /// [`EventStoreError::WrongExpectedVersion`] when the check fails (also when a concurrent
    /// writer took the same versions); [`EventStoreError::IdempotencyKeyTaken`] when the claim's
    /// key is already recorded; [`EventStoreError::EmptyAppend`]; `Unavailable` / `Backend`.
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, EventStoreError>;

    /// The events of a stream with a version greater than `after_version`, in version order
    /// (`0` reads the whole stream; an unknown stream reads as empty).
    ///
    /// # Errors
    /// `Unavailable`, `Corrupt` or `Backend`.
    async fn read_stream(
        &self,
        stream_id: &StreamId,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, EventStoreError>;

    /// Hands the events of [`EventStore::read_stream`] to `visitor`, each with only what
    /// folding it needs, as they are read. A store that can read less than the whole envelope,
    /// or stream its rows, overrides this; by default it is `read_stream`'s envelopes, cut down.
    /// A decorator of a store must forward it, or it loses the store's faster read.
    ///
    /// # Errors
    /// As for `read_stream`. Events already handed on stay handed on: a caller that meets an
    /// error keeps nothing of what it folded.
    // The named lifetime keeps mockall's copy of this signature in step with async-trait's;
    // that copy drops the parentheses the type needs.
    #[allow(unused_parens)]
    async fn visit_stream<'v>(
        &self,
        stream_id: &StreamId,
        after_version: u64,
        visitor: &mut (dyn PayloadVisitor + 'v),
    ) -> Result<(), EventStoreError> {
        visit_recorded(&self.read_stream(stream_id, after_version).await?, visitor)
    }

    /// Up to `limit` events of the whole log with a position greater than `after_position`, in
    /// position order. Never skips: an event not returned now has a position above the last one
    /// returned, whatever order concurrent writers commit in.
    ///
    /// # Errors
    /// `Unavailable`, `Corrupt` or `Backend`.
    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError>;

    /// The position of the last committed event of the log (0 when empty).
    ///
    /// # Errors
    /// `Unavailable` or `Backend`.
    async fn head_position(&self) -> Result<u64, EventStoreError>;

    /// The record of an applied idempotent command, if the principal used this key before.
    ///
    /// # Errors
    /// `Unavailable`, `Corrupt` or `Backend`.
    async fn find_idempotency(
        &self,
        principal: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, EventStoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modes() -> Vec<ExpectedVersion> {
        let mut modes = vec![
            ExpectedVersion::Any,
            ExpectedVersion::NoStream,
            ExpectedVersion::StreamExists,
        ];
        modes.extend((0..6).map(ExpectedVersion::Exact));
        modes
    }

    #[test]
    fn the_check_accepts_exactly_what_each_mode_promises() {
        let stream = StreamId::new("order", Uuid::now_v7());
        for actual in 0..6 {
            for mode in modes() {
                let accepted = match mode {
                    ExpectedVersion::Any => true,
                    ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => actual == 0,
                    ExpectedVersion::StreamExists => actual > 0,
                    ExpectedVersion::Exact(version) => version == actual,
                };
                let checked = mode.check(&stream, actual);
                assert_eq!(checked.is_ok(), accepted, "{mode} at {actual}");
                if let Err(error) = checked {
                    assert_eq!(
                        error,
                        EventStoreError::WrongExpectedVersion {
                            stream_id: stream.clone(),
                            expected: mode,
                            actual,
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn a_stream_id_round_trips_through_its_text() {
        let id = Uuid::now_v7();
        let stream = StreamId::new("order", id);
        let parsed = StreamId::parse(stream.as_str()).unwrap();
        assert_eq!(parsed, stream);
        assert_eq!(parsed.category(), "order");
        assert_eq!(parsed.id(), id);
    }

    #[test]
    fn malformed_stream_ids_are_rejected() {
        for text in [
            "",
            "order",
            "order-",
            "-0190",
            "Order-00000000-0000-0000-0000-000000000000",
            "order-xyz",
        ] {
            assert!(StreamId::parse(text).is_err(), "{text:?} parsed");
        }
    }
}
