//! The log and worker helpers of the projection tests: real events appended through the
//! PostgreSQL event store, and a worker wired to the PostgreSQL read side.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use strata_adapters_postgres::{PgEventStore, PgLeases, PgProjectionStore, PgReadModels};
use strata_application::projection::{Projection, ProjectionWorker, ProjectorConfig, WorkerDeps};
use strata_domain::DomainEvent;
use strata_domain::order::{LineItem, OrderEvent};
use strata_domain::values::{
    Currency, CustomerId, ProductId, Quantity, ShippingAddress, UnitPrice,
};
use strata_ports::{
    AppendRequest, EventStore, ExpectedVersion, Generation, Metadata, NewEvent, ProjectionName,
    ReadModels, StreamId, SystemClock,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub fn config() -> ProjectorConfig {
    ProjectorConfig {
        batch_size: 3,
        poll_interval: Duration::from_millis(20),
        max_attempts: 2,
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        lease_retry: Duration::from_millis(50),
        heartbeat: Duration::from_secs(1),
        linger: Duration::ZERO,
    }
}

pub fn deps(pool: &PgPool) -> WorkerDeps {
    WorkerDeps {
        events: Arc::new(PgEventStore::new(pool.clone())),
        store: Arc::new(PgProjectionStore::new(pool.clone())),
        leases: Arc::new(PgLeases::new(pool.clone())),
        clock: Arc::new(SystemClock),
        wakeups: None,
    }
}

pub fn worker(pool: &PgPool, projection: Arc<dyn Projection>) -> ProjectionWorker {
    ProjectionWorker::new(deps(pool), projection, Generation::Live, config())
}

pub fn new_event<E: DomainEvent>(event: &E) -> NewEvent {
    let payload = event.encode();
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: payload.event_type,
        schema_version: payload.schema_version,
        data: payload.data,
        metadata: Metadata::default(),
        recorded_at: time::OffsetDateTime::now_utc(),
    }
}

pub fn append_request<E: DomainEvent>(stream: &StreamId, events: &[E]) -> AppendRequest {
    AppendRequest {
        stream_id: stream.clone(),
        expected: ExpectedVersion::Any,
        events: events.iter().map(new_event).collect(),
        idempotency: None,
    }
}

pub async fn append<E: DomainEvent>(pool: &PgPool, stream: &StreamId, events: &[E]) -> u64 {
    PgEventStore::new(pool.clone())
        .append(append_request(stream, events))
        .await
        .unwrap()
        .global_position
}

pub fn placed(customer: &str, product: &str, quantity: u32, cents: i64) -> OrderEvent {
    OrderEvent::OrderPlaced {
        customer_id: CustomerId::new(customer).unwrap(),
        currency: Currency::new("EUR").unwrap(),
        items: vec![item(product, quantity, cents)],
        shipping_address: ShippingAddress::new("1 Main Street").unwrap(),
    }
}

/// An `OrderPlaced` whose two lines add up beyond 64 bits: the domain refuses to decide it, so
/// only data written around the domain holds one.
pub fn placed_beyond_64_bits(customer: &str) -> OrderEvent {
    OrderEvent::OrderPlaced {
        customer_id: CustomerId::new(customer).unwrap(),
        currency: Currency::new("EUR").unwrap(),
        items: vec![item("p-1", 1, i64::MAX), item("p-2", 1, 1)],
        shipping_address: ShippingAddress::new("1 Main Street").unwrap(),
    }
}

pub fn item(product: &str, quantity: u32, cents: i64) -> LineItem {
    LineItem {
        product_id: ProductId::new(product).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        unit_price: UnitPrice::new(cents).unwrap(),
    }
}

pub fn added(product: &str, quantity: u32, cents: i64) -> OrderEvent {
    let line = item(product, quantity, cents);
    OrderEvent::ItemAdded {
        product_id: line.product_id,
        quantity: line.quantity,
        unit_price: line.unit_price,
    }
}

pub fn order_stream() -> StreamId {
    StreamId::new("order", Uuid::now_v7())
}

/// Runs the live worker of `projection` until `stop`.
pub fn spawn_live(
    pool: &PgPool,
    projection: Arc<dyn Projection>,
    stop: &watch::Receiver<bool>,
) -> JoinHandle<()> {
    let worker = worker(pool, projection);
    let stop = stop.clone();
    tokio::spawn(async move { worker.run(stop).await })
}

/// Commands arriving meanwhile: `count` `ItemAdded`, round-robin over `streams`.
pub fn spawn_writer(pool: &PgPool, streams: &[StreamId], count: u32) -> JoinHandle<()> {
    let pool = pool.clone();
    let streams = streams.to_vec();
    tokio::spawn(async move {
        for n in 0..count {
            let stream = &streams[(n as usize) % streams.len()];
            append(&pool, stream, &[added(&format!("x-{n}"), 1, 1)]).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

/// Waits (10 s at most) until the checkpoint of `projection` reaches the head of the log.
pub async fn wait_for_head(pool: &PgPool, projection: ProjectionName) {
    let head = PgEventStore::new(pool.clone())
        .head_position()
        .await
        .unwrap();
    let models = PgReadModels::new(pool.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while models.position(projection).await.unwrap() < head {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the live worker of {projection} did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
