//! Pure business rules of Strata: aggregates as `decide` and `evolve`, with no async runtime and no IO.
//!
//! An aggregate's state is a left fold of its events (`evolve`); a command is judged against the
//! current state (`decide`) and either yields new events or a typed error. Everything a decision
//! needs is passed in, so every rule can be tested as given(events) / when(command) / then(...).
#![forbid(unsafe_code)]

pub mod account;
pub mod event;
pub mod order;
pub mod values;

pub use event::{DomainEvent, EventDecodeError, EventPayload, Upcast, UpcastError};
pub use values::ValidationError;

use serde::{Serialize, de::DeserializeOwned};

/// How the outside world should read a rejected command.
///
/// The HTTP edge maps these to status codes, the application to retries; the domain only says
/// which kind of "no" it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// A value breaks a validation rule whatever the state (e.g. an empty tracking number).
    Invalid,
    /// The aggregate does not exist (yet) for a command that needs it.
    NotFound,
    /// The aggregate's current state forbids the command (e.g. confirm a cancelled order).
    Conflict,
}

/// An error returned by `decide`, classified for the layers above.
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    /// Which kind of rejection this is.
    fn kind(&self) -> RejectionKind;
}

/// An event-sourced aggregate: a decision function and a fold.
///
/// The stream category and the state's schema version are stored (in stream ids and snapshots),
/// so they must stay stable for as long as data written with them exists.
pub trait Aggregate: Send + Sync + 'static {
    /// Stream category, stored as the prefix of every stream id of this aggregate (`order`).
    const CATEGORY: &'static str;
    /// Version of the serialised `State`; a snapshot written under another version is ignored.
    const STATE_VERSION: u32;

    /// The folded state. `Default` is the state before the first event.
    type State: Default
        + Clone
        + std::fmt::Debug
        + PartialEq
        + Serialize
        + DeserializeOwned
        + Send
        + Sync;
    /// What callers ask for.
    type Command: std::fmt::Debug + Clone + Serialize + Send + Sync;
    /// What happened.
    type Event: DomainEvent + std::fmt::Debug + Clone + PartialEq + Send + Sync;
    /// Why a command was refused.
    type Error: DomainError;

    /// Judges `command` against `state`: the events to record, or why not.
    ///
    /// # Errors
    /// Returns the aggregate's error when a business rule forbids the command.
    fn decide(state: &Self::State, command: Self::Command)
    -> Result<Vec<Self::Event>, Self::Error>;

    /// Applies one event to the state. Never fails: events are facts already accepted.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// Whether the aggregate exists in this state (it has had its creation event).
    fn exists(state: &Self::State) -> bool;

    /// Folds a sequence of events onto a state.
    fn fold<'a>(
        state: Self::State,
        events: impl IntoIterator<Item = &'a Self::Event>,
    ) -> Self::State
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(state, Self::evolve)
    }
}
