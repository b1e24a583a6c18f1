//! The aggregates this command service wrote last, at the version it wrote them, so that the
//! next command on one of them skips its load. A cached state is only ever a guess checked by
//! the store: a command decided on it appends with the cached version as the exact expected
//! version, so a stream another process moved meanwhile fails that check and is loaded again;
//! and a command refused on a cached state is decided again on a fresh load, since the refusal
//! reaches no such check.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

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
    /// The state is `None` while a command holds it (see [`AggregateCache::take`]).
    entries: HashMap<String, (u64, Option<Box<dyn Any + Send + Sync>>)>,
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

    /// The state last written to `stream`, if it is still here, taken out: the command about
    /// to run on it owns it (no copy) and puts back the state it leads to. A concurrent command
    /// on the same aggregate finds no state meanwhile and loads, as after any miss. The entry
    /// keeps its place and version.
    pub(crate) fn take<S: 'static>(&self, stream: &StreamId) -> Option<Loaded<S>> {
        let mut inner = self.lock();
        let (version, state) = inner.entries.get_mut(stream.as_str())?;
        let state = state.take()?.downcast::<S>().ok()?;
        Some(Loaded {
            state: *state,
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
        match inner.entries.get_mut(stream.as_str()) {
            Some((known, _)) if *known >= version => return,
            Some(entry) => *entry = (version, Some(Box::new(state))),
            None => {
                inner
                    .entries
                    .insert(stream.to_string(), (version, Some(Box::new(state))));
                inner.order.push_back(stream.to_string());
            }
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
    fn a_state_is_taken_at_its_version_and_an_older_one_never_replaces_it() {
        let cache = AggregateCache::new(10);
        let s = stream();
        cache.put(&s, 3, "v3".to_owned());
        cache.put(&s, 2, "v2".to_owned());

        let loaded = cache.take::<String>(&s).unwrap();
        assert_eq!((loaded.state.as_str(), loaded.version), ("v3", 3));
        assert!(
            cache.take::<String>(&s).is_none(),
            "taken: a miss until put back"
        );
        cache.put(&s, 4, "v4".to_owned());
        assert!(cache.take::<u64>(&s).is_none(), "another type is a miss");
        cache.put(&s, 5, "v5".to_owned());
        cache.forget(&s);
        assert!(cache.take::<String>(&s).is_none());
    }

    #[test]
    fn a_state_put_back_keeps_its_place() {
        // Taking and putting back must not queue the stream twice: a second place in the
        // order would evict it early, and the order would outgrow the cache.
        let cache = AggregateCache::new(2);
        let (a, b) = (stream(), stream());
        cache.put(&a, 1, 1u8);
        cache.put(&b, 1, 2u8);
        for version in 2..10 {
            let taken = cache.take::<u8>(&a).unwrap();
            cache.put(&a, version, taken.state);
        }

        assert_eq!(cache.lock().order.len(), 2);
        assert_eq!(cache.take::<u8>(&b).map(|l| l.state), Some(2));
    }

    #[test]
    fn the_oldest_entries_go_first_and_nothing_is_kept_at_capacity_zero() {
        let cache = AggregateCache::new(2);
        let (a, b, c) = (stream(), stream(), stream());
        cache.put(&a, 1, 1u8);
        cache.put(&b, 1, 2u8);
        cache.put(&c, 1, 3u8);

        assert!(cache.take::<u8>(&a).is_none());
        assert_eq!(cache.take::<u8>(&b).map(|l| l.state), Some(2));
        assert_eq!(cache.take::<u8>(&c).map(|l| l.state), Some(3));
        let none = AggregateCache::new(0);
        none.put(&a, 1, 1u8);
        assert!(none.take::<u8>(&a).is_none());
    }
}
