//! How long a measured run lasts: a number of operations, or a time (`--seconds`) that starts
//! when the measurement does, so set-up never eats into it.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// This many operations, split over the tasks.
    Ops(u64),
    /// As many operations as fit in this time, once started.
    For(Duration),
    /// As many operations as fit before this instant.
    Until(Instant),
}

impl Budget {
    /// The budget of a measurement starting now.
    pub fn start(self) -> Self {
        match self {
            Self::For(duration) => Self::Until(Instant::now() + duration),
            other => other,
        }
    }

    /// The part of task `task` of `tasks`: an even share of the operations, or the same time.
    pub fn share(self, task: u64, tasks: u64) -> Self {
        match self {
            Self::Ops(ops) => {
                let tasks = tasks.max(1);
                Self::Ops(ops / tasks + u64::from(task < ops % tasks))
            }
            other => other,
        }
    }

    /// Whether an operation may begin after `done` of them. A time not yet started allows
    /// none, so a forgotten [`Budget::start`] shows as an empty run, not an endless one.
    pub fn allows(self, done: u64) -> bool {
        match self {
            Self::Ops(ops) => done < ops,
            Self::For(_) => false,
            Self::Until(deadline) => Instant::now() < deadline,
        }
    }
}
