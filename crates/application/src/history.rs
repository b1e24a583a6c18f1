//! Questions answered from the event log itself: an aggregate's audit trail, and its state as of
//! a stream version or a moment in the past.

use strata_ports::{RecordedEvent, StreamId};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::access::{Owned, Principal};
use crate::error::CommandError;
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

impl AsOf {
    /// Whether an event belongs to the history up to this point.
    fn includes(self, event: &RecordedEvent) -> bool {
        match self {
            Self::Latest => true,
            Self::Version(version) => event.stream_version <= version,
            Self::Time(at) => event.recorded_at <= at,
        }
    }
}

/// A stream the principal may read, folded once: its events, its state at the requested point,
/// and its latest version.
struct Readable<S> {
    events: Vec<RecordedEvent>,
    then: Loaded<S>,
    latest_version: u64,
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
        Ok(self.read::<A>(principal, id, AsOf::Latest).await?.events)
    }

    /// The state of an aggregate as of a point in its history.
    ///
    /// # Errors
    /// [`CommandError::NotFound`] when the aggregate does not exist or the principal may not
    /// see it; [`CommandError::NotAtThatPoint`] when it exists but did not exist then, or the
    /// version is beyond the end of the stream (a version that does not exist yet has no
    /// state); `Unavailable` / `Internal` for store failures.
    pub async fn state_as_of<A: Owned>(
        &self,
        principal: &Principal,
        id: Uuid,
        as_of: AsOf,
    ) -> Result<Loaded<A::State>, CommandError> {
        let read = self.read::<A>(principal, id, as_of).await?;
        // Only a reader who may see the aggregate gets here, so saying when it began leaks
        // nothing; a plain "not found" would tell them the aggregate they see does not exist.
        let absent = |why: String| CommandError::NotAtThatPoint {
            category: A::CATEGORY,
            id,
            why,
        };
        if let AsOf::Version(version) = as_of
            && version > read.latest_version
        {
            return Err(absent(format!(
                "has no version {version} yet: its latest is {}",
                read.latest_version
            )));
        }
        if !A::exists(&read.then.state) {
            return Err(absent(not_yet(as_of, read.events.first())));
        }
        Ok(read.then)
    }

    /// Reads a stream and folds it once, keeping the state as of `as_of` on the way. Whether the
    /// principal may see it is judged on the latest state, whatever point was asked for.
    async fn read<A: Owned>(
        &self,
        principal: &Principal,
        id: Uuid,
        as_of: AsOf,
    ) -> Result<Readable<A::State>, CommandError> {
        let events = self
            .rehydrator
            .history(&StreamId::new(A::CATEGORY, id))
            .await?;
        let cut = events.iter().take_while(|e| as_of.includes(e)).count();
        let (before, after) = events.split_at(cut);
        let then = fold::<A>(
            Loaded {
                state: A::State::default(),
                version: 0,
            },
            before,
        )?;
        let latest = fold::<A>(then.clone(), after)?;
        if !A::exists(&latest.state) || !principal.can_read(A::owner(&latest.state)) {
            return Err(CommandError::NotFound(A::CATEGORY));
        }
        Ok(Readable {
            latest_version: latest.version,
            then,
            events,
        })
    }
}

/// Why an aggregate has no state at `as_of` although it exists: the point lies before its first
/// event.
fn not_yet(as_of: AsOf, first: Option<&RecordedEvent>) -> String {
    match (as_of, first) {
        (AsOf::Time(at), Some(first)) => format!(
            "did not exist yet at {} (its first event was recorded at {})",
            rfc3339(at),
            rfc3339(first.recorded_at)
        ),
        (AsOf::Version(version), Some(first)) => format!(
            "did not exist yet at version {version} (its first event is version {})",
            first.stream_version
        ),
        _ => "did not exist at that point of its history".to_owned(),
    }
}

/// An instant as the audit trail shows it (RFC 3339, UTC), so the two can be compared by eye.
fn rfc3339(at: OffsetDateTime) -> String {
    let utc = at.to_offset(UtcOffset::UTC);
    utc.format(&Rfc3339).unwrap_or_else(|_| utc.to_string())
}
