//! Test doubles for the application's tests: an in-memory event store and snapshot store with
//! the same contract as the real adapters, a steppable clock, and a few builders.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use strata_application::{
    CommandConfig, CommandService, HistoryService, Principal, Rehydrator, Role,
};
use strata_domain::values::CustomerId;
use strata_ports::event_store::check_idempotency_lookup;
use strata_ports::{
    AppendOutcome, AppendRequest, Clock, EventStore, EventStoreError, ExpectedVersion,
    IdempotencyRecord, RandomIds, RecordedEvent, Snapshot, SnapshotError, SnapshotStore, StreamId,
};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

/// An event store in memory: one global vector, checked like the real ones (`conformance.rs`
/// runs the ports' event-store suite against it).
#[derive(Debug, Default)]
pub struct MemoryEventStore {
    inner: Mutex<MemoryLog>,
    pub appends: AtomicU32,
    /// The version after which each stream read started, in order.
    pub reads_after: Mutex<Vec<u64>>,
}

#[derive(Debug, Default)]
struct MemoryLog {
    events: Vec<RecordedEvent>,
    idempotency: HashMap<(String, String), IdempotencyRecord>,
}

impl MemoryEventStore {
    /// How many stream reads there were.
    pub fn stream_reads(&self) -> usize {
        self.reads_after.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<RecordedEvent> {
        self.inner.lock().unwrap().events.clone()
    }

    /// Stores an event as it is (any schema version), bypassing the application.
    pub fn seed(
        &self,
        stream_id: &StreamId,
        event_type: &str,
        schema_version: u32,
        data: serde_json::Value,
    ) {
        let mut log = self.inner.lock().unwrap();
        let version = log
            .events
            .iter()
            .filter(|e| &e.stream_id == stream_id)
            .count() as u64
            + 1;
        let position = log.events.len() as u64 + 1;
        log.events.push(RecordedEvent {
            event_id: uuid::Uuid::now_v7(),
            stream_id: stream_id.clone(),
            stream_version: version,
            global_position: position,
            event_type: event_type.to_owned(),
            schema_version,
            data,
            metadata: Default::default(),
            recorded_at: OffsetDateTime::now_utc(),
        });
    }
}

#[async_trait]
impl EventStore for MemoryEventStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, EventStoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        if request.events.is_empty() {
            return Err(EventStoreError::EmptyAppend);
        }
        request.check_input()?;
        let mut log = self.inner.lock().unwrap();
        let current = log
            .events
            .iter()
            .filter(|e| e.stream_id == request.stream_id)
            .count() as u64;
        // As in PostgreSQL: a taken key is the verdict before the expected version.
        if let Some(claim) = &request.idempotency
            && log
                .idempotency
                .contains_key(&(claim.principal.clone(), claim.key.clone()))
        {
            return Err(EventStoreError::IdempotencyKeyTaken {
                key: claim.key.clone(),
            });
        }
        let ok = match request.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::StreamExists => current > 0,
            ExpectedVersion::Exact(v) => current == v,
        };
        if !ok {
            return Err(EventStoreError::WrongExpectedVersion {
                stream_id: request.stream_id,
                expected: request.expected,
                actual: current,
            });
        }
        // As a unique index would: an event id stored twice fails the whole append.
        let mut ids: HashSet<Uuid> = log.events.iter().map(|e| e.event_id).collect();
        if let Some(taken) = request.events.iter().find(|e| !ids.insert(e.event_id)) {
            return Err(EventStoreError::Backend(format!(
                "event id {} is already stored",
                taken.event_id
            )));
        }
        let mut outcome = AppendOutcome {
            stream_version: current,
            global_position: 0,
        };
        for event in request.events {
            outcome.stream_version += 1;
            outcome.global_position = log.events.len() as u64 + 1;
            log.events.push(RecordedEvent {
                event_id: event.event_id,
                stream_id: request.stream_id.clone(),
                stream_version: outcome.stream_version,
                global_position: outcome.global_position,
                event_type: event.event_type,
                schema_version: event.schema_version,
                data: event.data,
                metadata: event.metadata,
                recorded_at: event.recorded_at,
            });
        }
        if let Some(claim) = request.idempotency {
            log.idempotency.insert(
                (claim.principal.clone(), claim.key.clone()),
                IdempotencyRecord {
                    principal: claim.principal,
                    key: claim.key,
                    fingerprint: claim.fingerprint,
                    stream_id: request.stream_id,
                    stream_version: outcome.stream_version,
                    global_position: outcome.global_position,
                },
            );
        }
        Ok(outcome)
    }

    async fn read_stream(
        &self,
        stream_id: &StreamId,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        self.reads_after.lock().unwrap().push(after_version);
        let log = self.inner.lock().unwrap();
        Ok(log
            .events
            .iter()
            .filter(|e| &e.stream_id == stream_id && e.stream_version > after_version)
            .cloned()
            .collect())
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let log = self.inner.lock().unwrap();
        Ok(log
            .events
            .iter()
            .filter(|e| e.global_position > after_position)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn head_position(&self) -> Result<u64, EventStoreError> {
        Ok(self.inner.lock().unwrap().events.len() as u64)
    }

    async fn find_idempotency(
        &self,
        principal: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, EventStoreError> {
        check_idempotency_lookup(principal, key)?;
        let log = self.inner.lock().unwrap();
        Ok(log
            .idempotency
            .get(&(principal.to_owned(), key.to_owned()))
            .cloned())
    }
}

/// Snapshots in memory; like the real one, a save replaces the stream's snapshot unless that
/// one is of a later stream version (`conformance.rs` runs the snapshot suite against it).
#[derive(Debug, Default)]
pub struct MemorySnapshotStore {
    pub snapshots: Mutex<HashMap<StreamId, Snapshot>>,
    pub loads: AtomicU32,
}

#[async_trait]
impl SnapshotStore for MemorySnapshotStore {
    async fn load(&self, stream_id: &StreamId) -> Result<Option<Snapshot>, SnapshotError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(self.snapshots.lock().unwrap().get(stream_id).cloned())
    }

    async fn save(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        let mut all = self.snapshots.lock().unwrap();
        let newer = all
            .get(&snapshot.stream_id)
            .is_none_or(|s| s.stream_version <= snapshot.stream_version);
        if newer {
            all.insert(snapshot.stream_id.clone(), snapshot);
        }
        Ok(())
    }
}

/// A clock that advances one second each time it is read, from a fixed start.
#[derive(Debug)]
pub struct SteppingClock {
    ticks: Mutex<OffsetDateTime>,
}

impl Default for SteppingClock {
    fn default() -> Self {
        Self {
            ticks: Mutex::new(datetime!(2026-01-01 00:00:00 UTC)),
        }
    }
}

impl Clock for SteppingClock {
    fn now(&self) -> OffsetDateTime {
        let mut now = self.ticks.lock().unwrap();
        *now += time::Duration::seconds(1);
        *now
    }
}

/// The application wired to in-memory doubles.
pub struct Harness {
    pub store: Arc<MemoryEventStore>,
    pub snapshots: Arc<MemorySnapshotStore>,
    pub commands: CommandService,
    pub history: HistoryService,
    pub rehydrator: Rehydrator,
}

impl Harness {
    /// Another command service over the same stores (another process, with its own cache).
    pub fn other_service(&self) -> CommandService {
        CommandService::new(
            self.store.clone(),
            self.snapshots.clone(),
            Arc::new(SteppingClock::default()),
            Arc::new(RandomIds),
            CommandConfig::default(),
        )
    }
}

pub fn harness(config: CommandConfig) -> Harness {
    let store = Arc::new(MemoryEventStore::default());
    let snapshots = Arc::new(MemorySnapshotStore::default());
    let commands = CommandService::new(
        store.clone(),
        snapshots.clone(),
        Arc::new(SteppingClock::default()),
        Arc::new(RandomIds),
        config,
    );
    let rehydrator = Rehydrator::new(store.clone(), snapshots.clone());
    let history = HistoryService::new(rehydrator.clone());
    Harness {
        store,
        snapshots,
        commands,
        history,
        rehydrator,
    }
}

pub fn customer(id: &str) -> Principal {
    Principal {
        user_id: format!("user-{id}"),
        role: Role::Customer,
        customer_id: Some(CustomerId::new(id).unwrap()),
    }
}

pub fn operator() -> Principal {
    Principal {
        user_id: "op-1".to_owned(),
        role: Role::Operator,
        customer_id: None,
    }
}

pub fn auditor() -> Principal {
    Principal {
        user_id: "audit-1".to_owned(),
        role: Role::Auditor,
        customer_id: None,
    }
}
