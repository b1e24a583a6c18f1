//! Snapshots: a stream's folded state at a version, so loading need not replay from the start.

use async_trait::async_trait;
use serde_json::Value;
use time::OffsetDateTime;

use crate::event_store::StreamId;

/// A stream's state as of `stream_version`, serialised under the aggregate's `state_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub stream_id: StreamId,
    pub stream_version: u64,
    /// The schema version of `state`; the application ignores a snapshot of another version.
    pub state_version: u32,
    pub state: Value,
    pub taken_at: OffsetDateTime,
}

/// Why the snapshot store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot store unavailable: {0}")]
    Unavailable(String),
    #[error("snapshot store failed: {0}")]
    Backend(String),
}

/// Keeps the latest snapshot of each stream.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// The latest snapshot of a stream, if any.
    ///
    /// # Errors
    /// [`SnapshotError::Unavailable`] when the store cannot be reached; `Backend` otherwise.
    async fn load(&self, stream_id: &StreamId) -> Result<Option<Snapshot>, SnapshotError>;

    /// Stores a snapshot, unless one at a higher stream version is already stored (so a slow
    /// writer never replaces a newer snapshot with an older one).
    ///
    /// # Errors
    /// As for [`SnapshotStore::load`].
    async fn save(&self, snapshot: Snapshot) -> Result<(), SnapshotError>;
}
