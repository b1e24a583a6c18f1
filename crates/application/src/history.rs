//! Questions answered from the event log itself: an aggregate's audit trail, and its state as of
//! a stream version or a moment in the past.

use strata_ports::{RecordedEvent, StreamId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::access::{Owned, Principal};
use crate::command::CommandError;
use crate::rehydrate::{Loaded, Rehydrator, fold};

/// The point in a stream's history to rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Now: every event.
    Latest,
    /// Just after the event with this stream version.
    Version(u64),
    /// Including every event recorded at or before this instant.
    Time(OffsetDateTime),
}

/// Reads the history of aggregates, with the same ownership rules as commands.
#[derive(Debug, Clone)]
pub struct HistoryService {
    rehydrator: Rehydrator,
}

impl HistoryService {
    pub fn new(rehydrator: Rehydrator) -> Self {
        Self { rehydrator }
    }

    /// Every event of an aggregate's stream, as stored (the audit trail).
    ///
    /// # Errors
    /// [`CommandError::NotFound`] when the stream is empty or the principal may not see it;
    /// `Unavailable` / `Internal` for store failures.
    pub async fn audit_trail<A: Owned>(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> Result<Vec<RecordedEvent>, CommandError> {
        let events = self
            .rehydrator
            .history(&StreamId::new(A::CATEGORY, id))
            .await?;
        let current = fold::<A>(
            Loaded {
                state: A::State::default(),
                version: 0,
            },
            &events,
        )?;
        if !A::exists(&current.state) || !principal.can_read(A::owner(&current.state)) {
            return Err(CommandError::NotFound(A::CATEGORY));
        }
        Ok(events)
    }

    /// The state of an aggregate as of a point in its history.
    ///
    /// # Errors
    /// [`CommandError::NotFound`] when the aggregate did not exist then (or the principal may
    /// not see it); `Unavailable` / `Internal` for store failures.
    pub async fn state_as_of<A: Owned>(
        &self,
        principal: &Principal,
        id: Uuid,
        as_of: AsOf,
    ) -> Result<Loaded<A::State>, CommandError> {
        let events = self.audit_trail::<A>(principal, id).await?;
        let upto = events.iter().take_while(|e| match as_of {
            AsOf::Latest => true,
            AsOf::Version(version) => e.stream_version <= version,
            AsOf::Time(at) => e.recorded_at <= at,
        });
        let upto: Vec<RecordedEvent> = upto.cloned().collect();
        let loaded = fold::<A>(
            Loaded {
                state: A::State::default(),
                version: 0,
            },
            &upto,
        )?;
        if !A::exists(&loaded.state) {
            return Err(CommandError::NotFound(A::CATEGORY));
        }
        Ok(loaded)
    }
}
