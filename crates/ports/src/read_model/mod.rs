//! The read side's ports: the unit of work a projection writes a batch through (read-model
//! changes, dead letters and the checkpoint commit together or not at all), the queries that
//! serve the API, the wake-up signal of the log and the single-instance lease of a projection.
//! Each read model brings its rows, its batch-side trait and its query trait in a module of its
//! own (`orders.rs`, `accounts.rs`); [`ProjectionBatch`] and [`ReadModels`] name them as
//! supertraits, so adding a read model is one module and one supertrait line each.

mod accounts;
mod orders;

pub use accounts::{AccountQueries, AccountRow, AccountRows, TransactionKind, TransactionRow};
pub use orders::{
    CustomerStatsRow, OrderLineRow, OrderQueries, OrderRows, OrderSummaryRow, OrderSummaryStatus,
    StatusCounts,
};

use std::collections::HashMap;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::event_store::RecordedEvent;
use crate::projection::{Generation, ProjectionName};

/// An event a projection could not apply, parked with why; later events of its stream wait
/// behind it (`blocked_by` names the parked event they wait for).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The stored key of the projection's generation that parked it
    /// ([`ProjectionName::key`]: `orders`, or `orders:rebuild` during a rebuild); ignored by
    /// [`ProjectionBatch::park`], which parks in its own batch's generation.
    pub projection: String,
    pub event: RecordedEvent,
    pub error: String,
    pub attempts: u32,
    /// `None`: this event failed. `Some(p)`: it only waits behind the failed event at `p`.
    pub blocked_by: Option<u64>,
    pub parked_at: OffsetDateTime,
}

/// A read value with the position of the projection it was read from, in the same snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positioned<T> {
    pub value: T,
    pub position: u64,
}

/// A projection's checkpoint and dead letters, as the status shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// The stored key ([`ProjectionName::key`]): a projection's name, or `<name>:rebuild` for
    /// the checkpoint of a rebuild in progress.
    pub projection: String,
    pub position: u64,
    pub updated_at: Option<OffsetDateTime>,
    /// Recorded time of the event at `position` (for lag in seconds), if any.
    pub position_recorded_at: Option<OffsetDateTime>,
    pub dead_letters: u64,
    /// What the running worker last said it does (`running`, `catching up`, `rebuilding`, ...).
    pub state: Option<String>,
    pub state_updated_at: Option<OffsetDateTime>,
}

/// Why the read side's storage failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadModelError {
    /// The storage cannot be reached now: worth retrying later.
    #[error("read model storage unavailable: {0}")]
    Unavailable(String),
    /// Another worker moved the checkpoint: this batch was not applied.
    #[error("projection {projection}: checkpoint moved from {expected} (another worker?)")]
    CheckpointMoved { projection: String, expected: u64 },
    /// Stored data this code cannot interpret.
    #[error("corrupt read model data: {0}")]
    Corrupt(String),
    /// A value the storage refuses before any statement ([`crate::limits`]): a NUL character,
    /// or longer than the storage can index.
    #[error("refused input: {0}")]
    InvalidInput(#[from] crate::limits::InputError),
    /// Asked for something that does not exist (an unknown dead letter, say).
    #[error("not found: {0}")]
    NotFound(String),
    /// Any other failure of the storage.
    #[error("read model storage failed: {0}")]
    Backend(String),
}

/// A batch of one projection: one transaction. Dropping it without `commit` rolls back every
/// change made through it. The read models' rows are written through its supertraits.
#[async_trait]
pub trait ProjectionBatch: OrderRows + AccountRows + Send {
    /// The projection's checkpoint, locked until the batch ends (a second worker waits).
    ///
    /// # Errors
    /// `Unavailable` / `Backend` (adapters read it when the batch begins and cannot fail here).
    async fn checkpoint(&mut self) -> Result<u64, ReadModelError>;

    /// Marks a point the batch can go back to (before one event).
    ///
    /// # Errors
    /// `Unavailable` / `Backend`; the batch is then to be dropped.
    async fn savepoint(&mut self) -> Result<(), ReadModelError>;
    /// Undoes everything since the last savepoint.
    ///
    /// # Errors
    /// As for [`ProjectionBatch::savepoint`].
    async fn rollback_to_savepoint(&mut self) -> Result<(), ReadModelError>;
    /// Forgets the last savepoint, keeping its changes.
    ///
    /// # Errors
    /// As for [`ProjectionBatch::savepoint`].
    async fn release_savepoint(&mut self) -> Result<(), ReadModelError>;

    /// Which of these streams have a parked event in this projection (their later events wait
    /// behind it), with the position of the event that failed.
    ///
    /// # Errors
    /// `Unavailable` / `Backend`.
    async fn blocked_streams(
        &mut self,
        streams: &[String],
    ) -> Result<HashMap<String, u64>, ReadModelError>;
    /// Parks an event (once: parking the same event again keeps the first record).
    ///
    /// # Errors
    /// `Backend` for a position or version beyond the storage's integers or metadata that
    /// cannot be written; `Unavailable` / `Backend`.
    async fn park(&mut self, letter: &DeadLetter) -> Result<(), ReadModelError>;
    /// Removes the parked event at `position` and the events waiting behind it, and returns
    /// them in position order, so that the caller applies them again (retry) or all but the
    /// first (skip) in this batch: the removal commits with their effects or not at all.
    ///
    /// # Errors
    /// [`ReadModelError::NotFound`] when no event failed at `position` in this projection;
    /// `Corrupt` for a parked event this code cannot read; `Unavailable` / `Backend`.
    async fn take_dead_letters(&mut self, position: u64)
    -> Result<Vec<DeadLetter>, ReadModelError>;

    /// Moves the checkpoint to `position` and commits everything.
    ///
    /// # Errors
    /// [`ReadModelError::CheckpointMoved`] when the checkpoint is no longer what
    /// [`ProjectionBatch::checkpoint`] read; nothing is committed then. `Unavailable` /
    /// `Backend` when the commit fails (nothing is committed either).
    async fn commit(self: Box<Self>, position: u64) -> Result<(), ReadModelError>;
}

/// The read models' storage, as projections write it.
#[async_trait]
pub trait ProjectionStore: Send + Sync {
    /// Begins a batch of `projection` in `generation`, waiting while another batch of it runs.
    ///
    /// # Errors
    /// `NotFound` for the rebuild generation when no rebuild of `projection` is in progress;
    /// `Unavailable` when the storage (or its write lock) cannot be had in time; `Backend`.
    async fn begin(
        &self,
        projection: ProjectionName,
        generation: Generation,
    ) -> Result<Box<dyn ProjectionBatch>, ReadModelError>;

    /// Records what the worker of a projection is doing, for the status.
    ///
    /// # Errors
    /// `Unavailable` / `Backend`.
    async fn set_state(
        &self,
        projection: ProjectionName,
        state: &str,
    ) -> Result<(), ReadModelError>;

    /// Starts a rebuild of `projection`: empty tables of the rebuild generation, checkpoint 0.
    ///
    /// # Errors
    /// `Backend` when a live table cannot be copied (or the role may not create one);
    /// `Unavailable` / `Backend`.
    async fn start_rebuild(&self, projection: ProjectionName) -> Result<(), ReadModelError>;
    /// Replaces the live tables of `projection` with the rebuilt ones, in one transaction, once
    /// the rebuild has reached the live checkpoint (returns `false`, changing nothing, if not).
    /// `also` runs inside that window, after the check and before the commit, while the live
    /// worker is held between two batches: it swaps what the projection keeps elsewhere (the
    /// search index); if it fails, nothing is swapped here.
    ///
    /// # Errors
    /// `NotFound` when no rebuild of `projection` is in progress; the error of `also`;
    /// `Unavailable` / `Backend`. Nothing is swapped in any of these cases.
    async fn finish_rebuild(
        &self,
        projection: ProjectionName,
        also: &dyn RebuildSwap,
    ) -> Result<bool, ReadModelError>;
    /// Drops an unfinished rebuild of `projection` (its tables, checkpoint and dead letters);
    /// none is fine.
    ///
    /// # Errors
    /// `Unavailable` / `Backend`.
    async fn abandon_rebuild(&self, projection: ProjectionName) -> Result<(), ReadModelError>;

    /// The dead letters of a projection in position order; all of them when `None`, by
    /// projection and then by position.
    ///
    /// # Errors
    /// `Corrupt` for a parked event this code cannot read; `Unavailable` / `Backend`.
    async fn dead_letters(
        &self,
        projection: Option<ProjectionName>,
    ) -> Result<Vec<DeadLetter>, ReadModelError>;
}

/// What a projection swaps outside the read models' storage when its rebuild is swapped in.
#[async_trait]
pub trait RebuildSwap: Send + Sync {
    /// Swaps it; called once, inside [`ProjectionStore::finish_rebuild`]'s window.
    ///
    /// # Errors
    /// Whatever kept the swap from happening: `finish_rebuild` then swaps nothing either.
    async fn swap(&self) -> Result<(), ReadModelError>;
}

/// The queries of the read side; each answer carries the projection position it was read at.
/// The read models' queries are its supertraits.
#[async_trait]
pub trait ReadModels: OrderQueries + AccountQueries + Send + Sync {
    /// The checkpoint of a projection (0 before its first batch).
    ///
    /// # Errors
    /// `Corrupt` for a stored position this code cannot read; `Unavailable` / `Backend`.
    async fn position(&self, projection: ProjectionName) -> Result<u64, ReadModelError>;
    /// Every stored checkpoint row (a rebuild in progress has its own), by key.
    ///
    /// # Errors
    /// `Corrupt` for a stored row this code cannot read; `Unavailable` / `Backend`.
    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, ReadModelError>;
    /// The age of the oldest transaction still open in the database, in seconds (it holds
    /// back what readers of the log can see); `None` when there is none or the database keeps
    /// no such record.
    ///
    /// # Errors
    /// `Unavailable` / `Backend`.
    async fn oldest_open_transaction_age(&self) -> Result<Option<f64>, ReadModelError>;
}

// A double of the whole query side, for the application's tests: `automock` cannot mock a
// trait through its supertraits, `mock!` implements each of them on one struct.
#[cfg(feature = "mocks")]
mockall::mock! {
    pub ReadModels {}

    #[async_trait]
    impl OrderQueries for ReadModels {
        async fn order_summary(
            &self,
            id: uuid::Uuid,
        ) -> Result<Positioned<Option<OrderSummaryRow>>, ReadModelError>;
        async fn customer_orders(
            &self,
            customer_id: &str,
            before: Option<u64>,
            limit: usize,
        ) -> Result<Positioned<Vec<OrderSummaryRow>>, ReadModelError>;
        async fn customer_stats(
            &self,
            customer_id: &str,
        ) -> Result<Positioned<Option<CustomerStatsRow>>, ReadModelError>;
    }

    #[async_trait]
    impl AccountQueries for ReadModels {
        async fn account(
            &self,
            id: uuid::Uuid,
        ) -> Result<Positioned<Option<AccountRow>>, ReadModelError>;
        async fn account_transactions(
            &self,
            id: uuid::Uuid,
            after: Option<u64>,
            limit: usize,
        ) -> Result<Positioned<Vec<TransactionRow>>, ReadModelError>;
    }

    #[async_trait]
    impl ReadModels for ReadModels {
        async fn position(&self, projection: ProjectionName) -> Result<u64, ReadModelError>;
        async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, ReadModelError>;
        async fn oldest_open_transaction_age(&self) -> Result<Option<f64>, ReadModelError>;
    }
}

/// A signal that the log may have grown. Only a wake-up: it carries no data and may be lost,
/// so its users also poll.
#[async_trait]
pub trait LogWakeup: Send {
    /// Returns when new events may have been appended (or at once after a reconnection).
    ///
    /// # Errors
    /// `Unavailable` / `Backend` when the signal's channel fails: the caller polls instead.
    async fn wait(&mut self) -> Result<(), ReadModelError>;
}

/// Opens wake-up subscriptions; a worker subscribes only while it holds its lease, so a standby
/// keeps no listener whose unread notifications would pin the server's queue.
#[async_trait]
pub trait LogWakeups: Send + Sync {
    /// A new subscription, woken by appends from now on.
    ///
    /// # Errors
    /// `Unavailable` / `Backend` when the channel cannot be opened: the caller polls instead.
    async fn subscribe(&self) -> Result<Box<dyn LogWakeup>, ReadModelError>;
}

/// Exclusive right to run a projection. Released when dropped or when its holder dies.
#[async_trait]
pub trait ProjectionLease: Send {
    /// Whether the lease is still held (its connection is alive).
    ///
    /// # Errors
    /// The lease is lost (`NotFound` once its holder knows another may hold it; `Unavailable`
    /// / `Backend` when its connection failed): the holder stops working at once.
    async fn check(&mut self) -> Result<(), ReadModelError>;
}

/// Grants [`ProjectionLease`]s: at most one holder per projection at a time.
#[async_trait]
pub trait ProjectionLeases: Send + Sync {
    /// Tries once for `projection` in `generation` (a rebuild has a lease of its own, apart
    /// from the live worker's); `None` when another instance holds it.
    ///
    /// # Errors
    /// `Unavailable` / `Backend`: whether the lease is held is not known, so it is not.
    async fn try_acquire(
        &self,
        projection: ProjectionName,
        generation: Generation,
    ) -> Result<Option<Box<dyn ProjectionLease>>, ReadModelError>;
}
