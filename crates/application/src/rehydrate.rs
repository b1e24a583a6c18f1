//! Rebuilding an aggregate's state from the log: the latest usable snapshot, then the events
//! after it, each brought to its current schema by the domain's upcasters before it is applied.

use std::ops::ControlFlow;
use std::sync::Arc;

use strata_domain::{Aggregate, DomainEvent, EventDecodeError};
use strata_ports::{
    EventStore, EventStoreError, PayloadRef, PayloadVisitor, RecordedEvent, SnapshotStore, StreamId,
};

/// A state folded up to `version` (0: no event).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<S> {
    pub state: S,
    pub version: u64,
}

/// Why a stream could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] EventStoreError),
    #[error("event {position} of {stream_id} cannot be read: {source}")]
    Decode {
        stream_id: String,
        position: u64,
        source: EventDecodeError,
    },
}

/// Reads a stored event back into the aggregate's event type, upcasting older schemas.
///
/// # Errors
/// [`LoadError::Decode`] for an unknown type, a failing upcaster or malformed data.
pub fn decode<A: Aggregate>(recorded: &RecordedEvent) -> Result<A::Event, LoadError> {
    A::Event::decode_stored(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.data,
    )
    .map_err(|source| LoadError::Decode {
        stream_id: recorded.stream_id.to_string(),
        position: recorded.global_position,
        source,
    })
}

/// Loads aggregates through an event store and a snapshot store.
#[derive(Clone)]
pub struct Rehydrator {
    store: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
}

impl std::fmt::Debug for Rehydrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rehydrator").finish_non_exhaustive()
    }
}

impl Rehydrator {
    pub fn new(store: Arc<dyn EventStore>, snapshots: Arc<dyn SnapshotStore>) -> Self {
        Self { store, snapshots }
    }

    /// The current state of a stream: from the latest snapshot of the aggregate's current state
    /// version (any other is ignored, never misread), then the events after it.
    ///
    /// # Errors
    /// Event store failures and undecodable events. A failing snapshot store is not an error: it
    /// only costs a full replay.
    pub async fn load<A: Aggregate>(
        &self,
        stream_id: &StreamId,
    ) -> Result<Loaded<A::State>, LoadError> {
        let start = self.snapshot_start::<A>(stream_id).await;
        self.catch_up::<A>(stream_id, start).await
    }

    /// `known`, a state of the stream at its version, brought to the stream's current version:
    /// only the events after it are read. A command that lost a race holds the state it decided
    /// on, exact at its version (events never change), so it need not load the stream again.
    ///
    /// # Errors
    /// Event store failures and undecodable events.
    pub async fn catch_up<A: Aggregate>(
        &self,
        stream_id: &StreamId,
        known: Loaded<A::State>,
    ) -> Result<Loaded<A::State>, LoadError> {
        let mut fold = Fold::<A> {
            stream_id,
            loaded: known,
            failed: None,
        };
        let read = self
            .store
            .visit_stream(stream_id, fold.loaded.version, &mut fold)
            .await;
        // An undecodable event is the cause; a store error after it is only a consequence.
        if let Some(error) = fold.failed {
            return Err(error);
        }
        read?;
        Ok(fold.loaded)
    }

    async fn snapshot_start<A: Aggregate>(&self, stream_id: &StreamId) -> Loaded<A::State> {
        let empty = Loaded {
            state: A::State::default(),
            version: 0,
        };
        let snapshot = match self.snapshots.load(stream_id).await {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => return empty,
            Err(error) => {
                tracing::warn!(%stream_id, %error, "snapshot store failed; replaying the whole stream");
                return empty;
            }
        };
        if snapshot.state_version != A::STATE_VERSION {
            tracing::debug!(%stream_id, found = snapshot.state_version, current = A::STATE_VERSION,
                "ignoring a snapshot of another state version");
            return empty;
        }
        match serde_json::from_value(snapshot.state) {
            Ok(state) => Loaded {
                state,
                version: snapshot.stream_version,
            },
            Err(error) => {
                tracing::warn!(%stream_id, %error, "unreadable snapshot; replaying the whole stream");
                empty
            }
        }
    }

    /// Every stored event of a stream, as recorded (for audit trails and time travel).
    ///
    /// # Errors
    /// Event store failures.
    pub async fn history(&self, stream_id: &StreamId) -> Result<Vec<RecordedEvent>, LoadError> {
        Ok(self.store.read_stream(stream_id, 0).await?)
    }
}

/// Applies recorded events to a loaded state.
///
/// # Errors
/// [`LoadError::Decode`] for an event that cannot be read.
pub fn fold<A: Aggregate>(
    start: Loaded<A::State>,
    events: &[RecordedEvent],
) -> Result<Loaded<A::State>, LoadError> {
    evolve_all::<A>(
        start,
        events
            .iter()
            .map(|recorded| Ok((decode::<A>(recorded)?, recorded.stream_version))),
    )
}

/// Decodes and applies the events of a stream as the store reads them, stopping at the first
/// that cannot be decoded.
struct Fold<'a, A: Aggregate> {
    stream_id: &'a StreamId,
    loaded: Loaded<A::State>,
    failed: Option<LoadError>,
}

impl<A: Aggregate> PayloadVisitor for Fold<'_, A> {
    fn visit(&mut self, payload: PayloadRef<'_>) -> ControlFlow<()> {
        if self.failed.is_some() {
            // A store that reads on after a break must not replace the first failure.
            return ControlFlow::Break(());
        }
        match A::Event::decode_stored_text(payload.event_type, payload.schema_version, payload.data)
        {
            Ok(event) => {
                let state = std::mem::take(&mut self.loaded.state);
                self.loaded.state = A::evolve(state, &event);
                self.loaded.version = payload.stream_version;
                ControlFlow::Continue(())
            }
            Err(source) => {
                self.failed = Some(LoadError::Decode {
                    stream_id: self.stream_id.to_string(),
                    position: payload.global_position,
                    source,
                });
                ControlFlow::Break(())
            }
        }
    }
}

/// Applies decoded events, each with its stream version, stopping at the first that failed.
fn evolve_all<A: Aggregate>(
    start: Loaded<A::State>,
    events: impl IntoIterator<Item = Result<(A::Event, u64), LoadError>>,
) -> Result<Loaded<A::State>, LoadError> {
    let mut loaded = start;
    for decoded in events {
        let (event, version) = decoded?;
        loaded.state = A::evolve(loaded.state, &event);
        loaded.version = version;
    }
    Ok(loaded)
}
