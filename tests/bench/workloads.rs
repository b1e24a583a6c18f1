//! The workloads: each sets up what it needs on a fresh storage (not measured), then measures
//! its operations through the application layer over the real adapters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, Value, json};
use strata_application::projection::{OrdersProjection, ProjectionWorker, ProjectorConfig};
use strata_application::{
    CommandConfig, CommandContext, CommandError, CommandService, Principal, Rehydrator, Role,
    Target,
};
use strata_domain::DomainEvent;
use strata_domain::order::{LineItem, Order, OrderCommand, OrderEvent, PlaceOrder};
use strata_domain::values::{
    Currency, CustomerId, ProductId, Quantity, ShippingAddress, UnitPrice,
};
use strata_ports::{
    AppendRequest, EventStore, ExpectedVersion, Generation, Metadata, NewEvent, RandomIds,
    StreamId, SystemClock,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::budget::Budget;
use crate::stats::Latencies;
use crate::storage::Fresh;

/// What a workload measured.
pub struct Measured {
    pub ops: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    /// Workload-specific fields of the output line.
    pub extra: Map<String, Value>,
}

/// Commands per order in `append`: the order's `PlaceOrder`, then its `AddItem`s.
pub const COMMANDS_PER_ORDER: u64 = 21;

pub fn operator() -> Principal {
    Principal {
        user_id: "bench".to_owned(),
        role: Role::Operator,
        customer_id: None,
    }
}

pub fn line(n: u64) -> anyhow::Result<LineItem> {
    Ok(LineItem {
        product_id: ProductId::new(format!("sku-{}", n % 20))?,
        quantity: Quantity::new(1)?,
        unit_price: UnitPrice::new(100 + i64::try_from(n % 20)?)?,
    })
}

pub fn place(n: u64) -> anyhow::Result<OrderCommand> {
    Ok(OrderCommand::PlaceOrder(PlaceOrder {
        customer_id: CustomerId::new(format!("customer-{}", n % 100))?,
        currency: Currency::new("EUR")?,
        items: vec![line(n)?],
        shipping_address: ShippingAddress::new("1 Main Street")?,
    }))
}

pub fn commands(fresh: &Fresh, snapshot_every: u64) -> CommandService {
    CommandService::new(
        fresh.events.clone(),
        fresh.snapshots.clone(),
        Arc::new(SystemClock),
        Arc::new(RandomIds),
        CommandConfig {
            snapshot_every,
            ..CommandConfig::default()
        },
    )
}

/// The `sent`-th command of a task working on its own orders: a `PlaceOrder` (numbered `n`)
/// every [`COMMANDS_PER_ORDER`], else an `AddItem` to its current `order`.
pub fn order_command(n: u64, sent: u64, order: Uuid) -> anyhow::Result<(Target, OrderCommand)> {
    Ok(if sent.is_multiple_of(COMMANDS_PER_ORDER) {
        (Target::New, place(n)?)
    } else {
        (Target::Existing(order), OrderCommand::AddItem(line(n)?))
    })
}

/// Splits `ops` over `tasks` as evenly as possible (as [`Budget::share`] does).
fn shares(ops: u64, tasks: usize) -> Vec<u64> {
    let tasks = u64::try_from(tasks.max(1)).unwrap_or(1);
    (0..tasks)
        .map(|t| match Budget::Ops(ops).share(t, tasks) {
            Budget::Ops(share) => share,
            _ => 0,
        })
        .collect()
}

/// `append`: each task works on its own fresh orders, a `PlaceOrder` then 20 `AddItem`s; with
/// `with_keys`, each command carries a new idempotency key.
pub async fn append(
    fresh: &Fresh,
    concurrency: usize,
    budget: Budget,
    with_keys: bool,
) -> anyhow::Result<Measured> {
    let service = Arc::new(commands(fresh, CommandConfig::default().snapshot_every));
    let tasks = u64::try_from(concurrency.max(1))?;
    let started = Instant::now();
    let budget = budget.start();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (service, budget) = (service.clone(), budget.share(task, tasks));
            tokio::spawn(async move {
                let mut context = CommandContext::new(operator());
                let mut latencies = Latencies::default();
                let mut order = Uuid::nil();
                let mut n = 0;
                while budget.allows(n) {
                    let (target, command) = order_command(n, n, order)?;
                    if with_keys {
                        context.idempotency_key = Some(Uuid::now_v7().to_string());
                    }
                    let begun = Instant::now();
                    let ack = service.execute::<Order>(&context, target, command).await?;
                    latencies.record(begun.elapsed());
                    order = ack.aggregate_id;
                    n += 1;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Latencies::default();
    for handle in handles {
        latencies.extend(handle.await??);
    }
    Ok(Measured {
        ops: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
        extra: if with_keys {
            [("with_keys".to_owned(), json!(true))]
                .into_iter()
                .collect()
        } else {
            Map::new()
        },
    })
}

/// `append-contended`: every task sends `AddItem` to the same 4 orders.
pub async fn append_contended(
    fresh: &Fresh,
    concurrency: usize,
    ops: u64,
) -> anyhow::Result<Measured> {
    let service = Arc::new(commands(fresh, CommandConfig::default().snapshot_every));
    let context = CommandContext::new(operator());
    let mut orders = Vec::new();
    for n in 0..4 {
        orders.push(
            service
                .execute::<Order>(&context, Target::New, place(n)?)
                .await?
                .aggregate_id,
        );
    }
    let orders = Arc::new(orders);
    let started = Instant::now();
    let tasks: Vec<_> = shares(ops, concurrency)
        .into_iter()
        .enumerate()
        .map(|(task, share)| {
            let (service, orders) = (service.clone(), orders.clone());
            tokio::spawn(async move {
                let context = CommandContext::new(operator());
                let (mut latencies, mut conflicts, mut retries) = (Latencies::default(), 0, 0);
                for n in 0..share {
                    let order = orders[(task + usize::try_from(n)?) % orders.len()];
                    let begun = Instant::now();
                    let outcome = service
                        .execute::<Order>(
                            &context,
                            Target::Existing(order),
                            OrderCommand::AddItem(line(n)?),
                        )
                        .await;
                    latencies.record(begun.elapsed());
                    match outcome {
                        Ok(ack) => retries += u64::from(ack.retries),
                        Err(CommandError::Contention { attempts, .. }) => {
                            conflicts += 1;
                            retries += u64::from(attempts.saturating_sub(1));
                        }
                        Err(other) => return Err(other.into()),
                    }
                }
                anyhow::Ok((latencies, conflicts, retries))
            })
        })
        .collect();
    let (mut latencies, mut conflicts, mut retries) = (Latencies::default(), 0u64, 0u64);
    for task in tasks {
        let (l, c, r) = task.await??;
        latencies.extend(l);
        conflicts += c;
        retries += r;
    }
    let mut extra = Map::new();
    extra.insert("orders".to_owned(), json!(4));
    extra.insert("conflicts".to_owned(), json!(conflicts));
    extra.insert("retries".to_owned(), json!(retries));
    Ok(Measured {
        ops,
        elapsed: started.elapsed(),
        latencies,
        extra,
    })
}

/// Stored events of one order: `OrderPlaced`, then `ItemAdded`s, `count` in all.
fn order_events(count: u64) -> anyhow::Result<Vec<NewEvent>> {
    let placed = OrderEvent::OrderPlaced {
        customer_id: CustomerId::new("customer-1")?,
        currency: Currency::new("EUR")?,
        items: vec![line(0)?],
        shipping_address: ShippingAddress::new("1 Main Street")?,
    };
    let mut events = vec![placed];
    for n in 1..count {
        let item = line(n)?;
        events.push(OrderEvent::ItemAdded {
            product_id: item.product_id,
            quantity: item.quantity,
            unit_price: item.unit_price,
        });
    }
    Ok(events
        .iter()
        .map(|event| {
            let payload = event.encode();
            NewEvent {
                event_id: Uuid::now_v7(),
                event_type: payload.event_type,
                schema_version: payload.schema_version,
                data: payload.data,
                metadata: Metadata::default(),
                recorded_at: time::OffsetDateTime::now_utc(),
            }
        })
        .collect())
}

/// Appends `events` to a new stream in appends of at most 500.
async fn seed(
    events: &dyn EventStore,
    stream_id: &StreamId,
    all: Vec<NewEvent>,
) -> anyhow::Result<()> {
    let mut version = 0;
    let mut all = all.into_iter().peekable();
    while all.peek().is_some() {
        let chunk: Vec<NewEvent> = all.by_ref().take(500).collect();
        let count = u64::try_from(chunk.len())?;
        events
            .append(AppendRequest {
                stream_id: stream_id.clone(),
                expected: ExpectedVersion::Exact(version),
                events: chunk,
                idempotency: None,
            })
            .await
            .context("seeding the log")?;
        version += count;
    }
    Ok(())
}

/// Writes `total` events beforehand as orders of `per_order` events (one append each), from
/// `writers` concurrent tasks, with progress on stderr.
pub async fn seed_orders(
    fresh: &Fresh,
    total: u64,
    per_order: u64,
    writers: usize,
) -> anyhow::Result<()> {
    let orders = total.div_ceil(per_order.max(1));
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = shares(orders, writers)
        .into_iter()
        .map(|share| {
            let events = fresh.events.clone();
            let written = written.clone();
            tokio::spawn(async move {
                for _ in 0..share {
                    let before = written.fetch_add(per_order, std::sync::atomic::Ordering::Relaxed);
                    let count = per_order.min(total.saturating_sub(before));
                    if count == 0 {
                        break;
                    }
                    let stream_id = StreamId::new("order", Uuid::now_v7());
                    seed(events.as_ref(), &stream_id, order_events(count)?).await?;
                    let after = before + count;
                    if after / 100_000 > before / 100_000 {
                        eprintln!("  seeding: {after}/{total} events written");
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// `load-N`: full loads of one order of `length` events, from a snapshot at its last version
/// or from its first event.
pub async fn load(
    fresh: &Fresh,
    length: u64,
    snapshots: bool,
    budget: Budget,
) -> anyhow::Result<Measured> {
    let id = Uuid::now_v7();
    let stream_id = StreamId::new("order", id);
    // The last event through the command handler, which snapshots it when asked to.
    seed(fresh.events.as_ref(), &stream_id, order_events(length - 1)?).await?;
    let last = commands(fresh, u64::from(snapshots));
    last.execute::<Order>(
        &CommandContext::new(operator()),
        Target::Existing(id),
        OrderCommand::AddItem(line(length)?),
    )
    .await?;
    let rehydrator = Rehydrator::new(fresh.events.clone(), fresh.snapshots.clone());
    let started = Instant::now();
    let budget = budget.start();
    // On a worker of the runtime, where strata-web's handlers load aggregates. On the thread of
    // `block_on`, each wakeup of the read would first cross from a worker thread.
    let latencies = tokio::spawn(async move {
        let mut latencies = Latencies::default();
        while budget.allows(latencies.len()) {
            let begun = Instant::now();
            let loaded = rehydrator.load::<Order>(&stream_id).await?;
            latencies.record(begun.elapsed());
            anyhow::ensure!(
                loaded.version == length,
                "loaded version {}",
                loaded.version
            );
        }
        anyhow::Ok(latencies)
    })
    .await??;
    let mut extra = Map::new();
    extra.insert("events".to_owned(), json!(length));
    extra.insert("snapshots".to_owned(), json!(snapshots));
    Ok(Measured {
        ops: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
        extra,
    })
}

/// `project`: catch-up of the order-summary projection over `events` events written
/// beforehand (orders of 100 events); ops are events, latencies are batches.
pub async fn project(fresh: &Fresh, events: u64, batch_size: usize) -> anyhow::Result<Measured> {
    seed_orders(fresh, events, 100, 4).await?;
    let worker = ProjectionWorker::new(
        fresh.worker_deps(false),
        Arc::new(OrdersProjection),
        Generation::Live,
        ProjectorConfig {
            batch_size,
            ..ProjectorConfig::default()
        },
    );
    let (elapsed, latencies) = catch_up_timed(&worker, events).await?;
    let mut extra = Map::new();
    extra.insert("batch_size".to_owned(), json!(batch_size));
    extra.insert("latency_of".to_owned(), json!("batch"));
    Ok(Measured {
        ops: events,
        elapsed,
        latencies,
        extra,
    })
}

/// Runs `worker` until it has caught up with a log of `events` events: how long it took, and
/// each batch's time.
pub async fn catch_up_timed(
    worker: &ProjectionWorker,
    events: u64,
) -> anyhow::Result<(Duration, Latencies)> {
    let (_keep, stop) = watch::channel(false);
    let mut latencies = Latencies::default();
    let mut last = Instant::now();
    let started = Instant::now();
    let reached = worker
        .catch_up(&stop, &mut |_| {
            latencies.record(last.elapsed());
            last = Instant::now();
        })
        .await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(reached == events, "caught up to {reached}, not {events}");
    Ok((elapsed, latencies))
}
