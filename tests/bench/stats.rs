//! Latencies of the operations of one run, and the figures printed from them.

use std::time::Duration;

/// Every operation's latency, in microseconds.
#[derive(Debug, Default)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn record(&mut self, took: Duration) {
        self.0
            .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    /// How many operations were recorded.
    pub fn len(&self) -> u64 {
        u64::try_from(self.0.len()).unwrap_or(u64::MAX)
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The latency below which `percent` of the operations fall (nearest rank).
    pub fn percentile(&mut self, percent: u64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        self.0.sort_unstable();
        let rank = (self.0.len() as u64 * percent).div_ceil(100).max(1);
        self.0[usize::try_from(rank - 1).unwrap_or(0).min(self.0.len() - 1)]
    }
}
