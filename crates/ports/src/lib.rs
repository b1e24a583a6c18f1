//! The ports of Strata: object-safe async traits the application calls (event store, snapshots,
//! read models and their projections, search, the broker the log is published to), and the
//! plain data that crosses them. Adapters implement these traits and map their driver errors
//! to the enums here, so no driver type ever reaches the application. This crate depends on no
//! other crate of the workspace, not even `strata-domain`: what crosses a port is an envelope
//! and rows, never a domain type.
#![forbid(unsafe_code)]

pub mod clock;
#[cfg(feature = "testkit")]
pub mod conformance;
pub mod event_store;
pub mod limits;
pub mod projection;
pub mod publisher;
pub mod read_model;
pub mod redact;
pub mod search;
#[cfg(feature = "testkit")]
pub mod search_suite;
pub mod snapshot;
pub mod storage;

pub use clock::{Clock, IdGenerator, RandomIds, SystemClock};
pub use event_store::{
    AppendOutcome, AppendRequest, EventStore, EventStoreError, ExpectedVersion, IdempotencyClaim,
    IdempotencyRecord, Metadata, NewEvent, PayloadRef, PayloadVisitor, RecordedEvent, StreamId,
    StreamIdError, visit_recorded,
};
pub use limits::{InputError, check_text};
pub use projection::{Generation, ProjectionName, UnknownProjection};
pub use publisher::{EventPublisher, PublishError};
pub use read_model::{
    AccountQueries, AccountRow, AccountRows, CheckpointRow, CustomerStatsRow, DeadLetter,
    LogWakeup, LogWakeups, OrderLineRow, OrderQueries, OrderRows, OrderSummaryRow,
    OrderSummaryStatus, Positioned, ProjectionBatch, ProjectionLease, ProjectionLeases,
    ProjectionStore, ReadModelError, ReadModels, RebuildSwap, StatusCounts, TransactionKind,
    TransactionRow,
};
pub use redact::redact_url;
pub use search::{
    IndexFailure, SearchCursor, SearchDocument, SearchError, SearchHit, SearchIndex, SearchPage,
    SearchQuery,
};
pub use snapshot::{Snapshot, SnapshotError, SnapshotStore};
pub use storage::{ConnectError, MigrateError};

#[cfg(feature = "mocks")]
pub use clock::{MockClock, MockIdGenerator};
#[cfg(feature = "mocks")]
pub use event_store::MockEventStore;
#[cfg(feature = "mocks")]
pub use read_model::MockReadModels;
#[cfg(feature = "mocks")]
pub use search::MockSearchIndex;
#[cfg(feature = "mocks")]
pub use snapshot::MockSnapshotStore;
