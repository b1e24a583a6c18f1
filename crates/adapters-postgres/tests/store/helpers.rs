//! Builders of requests (the conformance suite's), and a reader that follows the log like a
//! projector.

use strata_adapters_postgres::PgEventStore;
use strata_ports::{EventStore, RecordedEvent};

// The requests and events of the conformance suite, so that these tests build them alike.
pub use strata_adapters_postgres::testkit::wait_for_lock_waiters;
pub use strata_ports::conformance::event_store::{append, claiming, request, stream};

/// The whole log, in position order.
pub async fn read_everything(store: &PgEventStore) -> Vec<RecordedEvent> {
    store.read_all(0, 10_000).await.unwrap()
}

/// Follows the log from a checkpoint, a few events per read, as a projector does.
pub struct Reader {
    pub checkpoint: u64,
    pub delivered: Vec<RecordedEvent>,
}

impl Reader {
    pub fn new() -> Self {
        Self {
            checkpoint: 0,
            delivered: Vec::new(),
        }
    }

    /// Reads until the log has nothing after the checkpoint; returns how many events it got.
    pub async fn catch_up(&mut self, store: &PgEventStore) -> usize {
        let before = self.delivered.len();
        loop {
            let page = store.read_all(self.checkpoint, 2).await.unwrap();
            let Some(last) = page.last() else {
                return self.delivered.len() - before;
            };
            self.checkpoint = last.global_position;
            self.delivered.extend(page);
        }
    }

    pub fn positions(&self) -> Vec<u64> {
        self.delivered.iter().map(|e| e.global_position).collect()
    }
}
