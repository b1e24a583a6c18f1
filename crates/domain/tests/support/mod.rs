//! Given/when/then harness for any `strata_domain::Aggregate`, shared by the domain's test binaries.
//!
//! Modelled on serverlesstechnology/cqrs `src/test/framework.rs`: `given` folds past events with
//! `Aggregate::evolve` from `State::default()`, `when` calls `decide`, and the `then_*` methods
//! assert on the outcome. Each test binary uses only part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod fixtures;

use strata_domain::{Aggregate, DomainError, RejectionKind};

/// The history of an aggregate: the state folded from the events it was given.
pub struct Given<A: Aggregate> {
    state: A::State,
}

/// Starts a scenario from these past events, folded in order.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let state = events
        .into_iter()
        .fold(A::State::default(), |state, event| A::evolve(state, &event));
    Given { state }
}

/// Starts a scenario on a stream that has no events yet.
pub fn given_no_events<A: Aggregate>() -> Given<A> {
    Given {
        state: A::State::default(),
    }
}

impl<A: Aggregate> Given<A> {
    /// Judges `command` against the given history.
    pub fn when(self, command: A::Command) -> Outcome<A> {
        let result = A::decide(&self.state, command);
        Outcome {
            state: self.state,
            result,
        }
    }

    /// The state folded from the given events, for assertions on the history itself.
    pub fn state(&self) -> &A::State {
        &self.state
    }
}

/// What `decide` answered, together with the state it was asked about.
pub struct Outcome<A: Aggregate> {
    state: A::State,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Outcome<A> {
    /// Asserts that the command was accepted with exactly these events, and returns the state
    /// after folding them, so the test can check what the events did.
    #[track_caller]
    pub fn then_expect_events(self, expected: Vec<A::Event>) -> A::State {
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "the command produced other events");
                A::fold(self.state, &events)
            }
            Err(error) => {
                panic!("expected events {expected:?}, but the command was rejected: {error:?}")
            }
        }
    }

    /// Asserts that the command was rejected with exactly this error, and returns it.
    #[track_caller]
    pub fn then_expect_error(self, expected: A::Error) -> A::Error
    where
        A::Error: PartialEq,
    {
        match self.result {
            Ok(events) => {
                panic!("expected error {expected:?}, but the command produced {events:?}")
            }
            Err(error) => {
                assert_eq!(
                    error, expected,
                    "the command was rejected for another reason"
                );
                error
            }
        }
    }

    /// Asserts that the command was rejected with this error, classified as `kind`.
    #[track_caller]
    pub fn then_expect_error_of_kind(self, expected: A::Error, kind: RejectionKind)
    where
        A::Error: PartialEq,
    {
        let error = self.then_expect_error(expected);
        assert_eq!(error.kind(), kind, "the error {error:?} is misclassified");
    }

    /// The raw answer, for checks the `then_*` methods do not cover.
    pub fn result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }
}
