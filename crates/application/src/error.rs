//! Why a use case was not carried out: [`CommandError`] for commands (and the history queries,
//! which answer as a command would), [`QueryError`] for queries of the read models. Each maps
//! the ports' errors it meets; here, apart from the services, so that the ownership rules and
//! the read-your-writes waits can return them without importing a service.

use strata_domain::RejectionKind;
use strata_ports::{EventStoreError, ProjectionName, ReadModelError, SearchError};
use uuid::Uuid;

use crate::rehydrate::LoadError;

/// Why a command was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A business rule refused it.
    #[error("{message}")]
    Rejected {
        kind: RejectionKind,
        message: String,
    },
    /// No such aggregate, or one the caller may not see.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The aggregate exists, but not at the point of its history that was asked for (before its
    /// first event, or a version beyond its last): `why` says which, for the problem detail.
    #[error("{category} {id} {why}")]
    NotAtThatPoint {
        category: &'static str,
        id: Uuid,
        why: String,
    },
    /// The caller may not issue this command.
    #[error("{0}")]
    Forbidden(String),
    /// The client's expected version is not the stream's.
    #[error("the {category} is at version {actual}, not {expected}")]
    VersionMismatch {
        category: &'static str,
        expected: u64,
        actual: u64,
    },
    /// Concurrent writers kept winning; the client may retry.
    #[error("the {category} is being changed concurrently; gave up after {attempts} attempts")]
    Contention {
        category: &'static str,
        attempts: u32,
    },
    /// The idempotency key was used before for a different request.
    #[error("idempotency key {0:?} was already used for a different request")]
    IdempotencyKeyReused(String),
    /// A value the store refuses to be asked for (a NUL character, longer than it can index):
    /// the request is malformed, the edge should have refused it.
    #[error("{0}")]
    InvalidInput(String),
    /// The store cannot be reached now.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Anything else: stored data that cannot be read, a failing backend.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CommandError {
    /// Whether a command with an idempotency key that failed so may be a retry of one applied
    /// before, whose original acknowledgement is then the answer: the aggregate has moved on
    /// since, so deciding again refuses, or finds another version, or keeps losing races. A
    /// failure to reach the store is not asked about: the look-up would fail alike.
    pub(crate) fn may_answer_a_replay(&self) -> bool {
        matches!(
            self,
            Self::Rejected { .. }
                | Self::NotFound(_)
                | Self::VersionMismatch { .. }
                | Self::Contention { .. }
        )
    }
}

impl From<EventStoreError> for CommandError {
    fn from(error: EventStoreError) -> Self {
        match error {
            EventStoreError::Unavailable(reason) => Self::Unavailable(reason),
            EventStoreError::InvalidInput(input) => Self::InvalidInput(input.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<LoadError> for CommandError {
    fn from(error: LoadError) -> Self {
        match error {
            LoadError::Store(store) => store.into(),
            decode @ LoadError::Decode { .. } => Self::Internal(decode.to_string()),
        }
    }
}

/// Why a query was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No such thing, or one the caller may not see.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A parameter is out of range or malformed (a page size, a cursor).
    #[error("{0}")]
    BadRequest(String),
    /// The projection has not reached the requested position within the wait.
    #[error(
        "the {projection} projection is at position {position}, not yet at {wanted}; retry shortly"
    )]
    NotCaughtUp {
        projection: ProjectionName,
        position: u64,
        wanted: u64,
    },
    /// The read models cannot be reached now.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<SearchError> for QueryError {
    fn from(error: SearchError) -> Self {
        match error {
            SearchError::Unavailable(reason) => Self::Unavailable(reason),
            SearchError::InvalidInput(input) => Self::BadRequest(input.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<EventStoreError> for QueryError {
    fn from(error: EventStoreError) -> Self {
        match error {
            EventStoreError::Unavailable(reason) => Self::Unavailable(reason),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<ReadModelError> for QueryError {
    fn from(error: ReadModelError) -> Self {
        match error {
            ReadModelError::Unavailable(reason) => Self::Unavailable(reason),
            ReadModelError::InvalidInput(input) => Self::BadRequest(input.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}
