//! The aggregates this command service wrote last, at the version it wrote them, so that the
//! next command on one of them skips its load. A cached state is only ever a guess checked by
//! the store: a command decided on it appends with the cached version as the exact expected
//! version, so a stream another process moved meanwhile fails that check and is loaded again;
//! and a command refused on a cached state is decided again on a fresh load, since the refusal
//! reaches no such check.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use strata_ports::StreamId;

use crate::rehydrate::Loaded;

/// A bounded map from stream to its last written state (oldest entries go first).
#[derive(Default)]
pub(crate) struct AggregateCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, (u64, Arc<dyn Any + Send + Sync>)>,
    /// Streams in the order they entered; may name streams forgotten since.
    order: VecDeque<String>,
}

impl std::fmt::Debug for AggregateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl AggregateCache {
    /// Keeps at most `capacity` aggregates (0: none).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the map consistent: a panic elsewhere cannot break it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state last written to `stream`, if it is still here.
    pub(crate) fn get<S: Clone + 'static>(&self, stream: &StreamId) -> Option<Loaded<S>> {
        let inner = self.lock();
        let (version, state) = inner.entries.get(stream.as_str())?;
        let state = state.downcast_ref::<S>()?.clone();
        Some(Loaded {
            state,
            version: *version,
        })
    }

    /// Remembers `state` at `version`, unless a later version is remembered already (two
    /// commands of this service on one stream may finish in either order).
    pub(crate) fn put<S: Send + Sync + 'static>(&self, stream: &StreamId, version: u64, state: S) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if let Some((known, _)) = inner.entries.get(stream.as_str())
            && *known >= version
        {
            return;
        }
        let fresh = inner
            .entries
            .insert(stream.to_string(), (version, Arc::new(state)))
            .is_none();
        if fresh {
            inner.order.push_back(stream.to_string());
        }
        while inner.entries.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.entries.remove(&oldest);
        }
        if inner.order.len() > 2 * self.capacity {
            // Forgotten streams pile up in the order: keep only those still here.
            let Inner { entries, order } = &mut *inner;
            order.retain(|s| entries.contains_key(s));
        }
    }

    /// Drops what is known of `stream` (its last append's outcome is unknown, or lost a race).
    pub(crate) fn forget(&self, stream: &StreamId) {
        self.lock().entries.remove(stream.as_str());
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn stream() -> StreamId {
        StreamId::new("order", Uuid::now_v7())
    }

    #[test]
    fn a_state_reads_back_at_its_version_and_an_older_one_never_replaces_it() {
        let cache = AggregateCache::new(10);
        let s = stream();
        cache.put(&s, 3, "v3".to_owned());
        cache.put(&s, 2, "v2".to_owned());

        let loaded = cache.get::<String>(&s).unwrap();
        assert_eq!((loaded.state.as_str(), loaded.version), ("v3", 3));
        assert!(cache.get::<u64>(&s).is_none(), "another type is a miss");
        cache.forget(&s);
        assert!(cache.get::<String>(&s).is_none());
    }

    #[test]
    fn the_oldest_entries_go_first_and_nothing_is_kept_at_capacity_zero() {
        let cache = AggregateCache::new(2);
        let (a, b, c) = (stream(), stream(), stream());
        cache.put(&a, 1, 1u8);
        cache.put(&b, 1, 2u8);
        cache.put(&c, 1, 3u8);

        assert!(cache.get::<u8>(&a).is_none());
        assert_eq!(cache.get::<u8>(&b).map(|l| l.state), Some(2));
        assert_eq!(cache.get::<u8>(&c).map(|l| l.state), Some(3));
        let none = AggregateCache::new(0);
        none.put(&a, 1, 1u8);
        assert!(none.get::<u8>(&a).is_none());
    }
}
