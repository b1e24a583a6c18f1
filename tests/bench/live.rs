//! `lag` and `publish-lag`: commands at a steady rate while a projection follows the log live,
//! and how long after a command's acknowledgement its effect is seen: in the order summaries
//! (`lag`), or by a JetStream consumer of the published log (`publish-lag`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, json};
use strata_application::projection::{
    OrdersProjection, Projection, ProjectionWorker, ProjectorConfig,
};
use strata_application::{CommandConfig, CommandContext};
use strata_domain::order::Order;
use strata_ports::{Generation, ProjectionName};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use crate::stats::Latencies;
use crate::storage::Fresh;
use crate::workloads::{Measured, commands, operator, order_command};

/// Orders written at the same time: each lane sends its commands one after the other to its
/// own order, so the rate is not bent by conflicts.
pub const LANES: usize = 32;

/// How often the reader looks at the projection's position (the resolution of the figures).
const POLL: Duration = Duration::from_micros(500);

/// `lag`: `ops` commands at `rate` per second, open loop (a slow command does not delay the
/// next one's start), with the `orders` projection live; each op's latency is from its
/// acknowledgement until a reader sees the projection at or past its position.
pub async fn lag(fresh: &Fresh, rate: u64, ops: u64) -> anyhow::Result<Measured> {
    // The reader: what a client polling the read model would see.
    let (seen_tx, seen) = watch::channel(0u64);
    let (stop_tx, stop) = watch::channel(false);
    let reader = tokio::spawn({
        let models = fresh.models.clone();
        let mut stop = stop.clone();
        async move {
            while !*stop.borrow() {
                if let Ok(position) = models.position(ProjectionName::Orders).await {
                    seen_tx.send_if_modified(|seen| {
                        let moved = position > *seen;
                        *seen = position.max(*seen);
                        moved
                    });
                }
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    });
    let measured = follow(fresh, Arc::new(OrdersProjection), rate, ops, seen).await;
    let _ = stop_tx.send(true);
    reader.await.context("the reader task failed")?;
    let mut measured = measured?;
    measured
        .extra
        .insert("latency_of".to_owned(), json!("ack to visible"));
    measured
        .extra
        .insert("poll_us".to_owned(), json!(POLL.as_micros()));
    Ok(measured)
}

/// `ops` commands at `rate` per second with `projection` live; each op's latency is from its
/// acknowledgement until `seen` reaches its position.
pub async fn follow(
    fresh: &Fresh,
    projection: Arc<dyn Projection>,
    rate: u64,
    ops: u64,
    seen: watch::Receiver<u64>,
) -> anyhow::Result<Measured> {
    let config = ProjectorConfig {
        linger: if fresh.kind == "sqlite" {
            // The projector's pause before a batch on SQLite, as `strata-web` runs it there.
            strata_wiring::SQLITE_LINGER
        } else {
            Duration::ZERO
        },
        ..ProjectorConfig::default()
    };
    let worker = ProjectionWorker::new(
        fresh.worker_deps(true),
        projection,
        Generation::Live,
        config,
    );
    let (stop_tx, stop) = watch::channel(false);
    let projector = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });

    let service = Arc::new(commands(fresh, CommandConfig::default().snapshot_every));
    let (latency_tx, mut latency_rx) = mpsc::unbounded_channel::<Duration>();
    let mut lanes = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..LANES {
        let (tick_tx, mut ticks) = mpsc::unbounded_channel::<u64>();
        senders.push(tick_tx);
        let service = service.clone();
        let latency_tx = latency_tx.clone();
        let seen = seen.clone();
        lanes.push(tokio::spawn(async move {
            let context = CommandContext::new(operator());
            let mut order = Uuid::nil();
            let mut sent = 0u64;
            while let Some(n) = ticks.recv().await {
                let (target, command) = order_command(n, sent, order)?;
                let ack = service.execute::<Order>(&context, target, command).await?;
                let acknowledged = Instant::now();
                order = ack.aggregate_id;
                sent += 1;
                let mut seen = seen.clone();
                let latency_tx = latency_tx.clone();
                tokio::spawn(async move {
                    if seen.wait_for(|p| *p >= ack.position).await.is_ok() {
                        let _ = latency_tx.send(acknowledged.elapsed());
                    }
                });
            }
            anyhow::Ok(())
        }));
    }
    drop(latency_tx);

    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    for n in 0..ops {
        ticker.tick().await;
        let lane = usize::try_from(n)? % LANES;
        senders[lane]
            .send(n)
            .map_err(|_| anyhow::anyhow!("a command lane stopped"))?;
        if n > 0 && n % (rate.max(1) * 5) == 0 {
            eprintln!("  lag: {n}/{ops} commands sent");
        }
    }
    drop(senders);
    let mut lanes_done = Ok(());
    for lane in lanes {
        let done = lane.await.map_err(anyhow::Error::from).and_then(|r| r);
        lanes_done = lanes_done.and(done);
    }
    if lanes_done.is_err() {
        // Stop the projector before the storage is removed.
        let _ = stop_tx.send(true);
    }
    lanes_done?;
    let sent_for = started.elapsed();
    let mut latencies = Latencies::default();
    let mut visible = 0u64;
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    while visible < ops {
        tokio::select! {
            latency = latency_rx.recv() => match latency {
                Some(latency) => {
                    latencies.record(latency);
                    visible += 1;
                }
                None => break,
            },
            () = &mut deadline => break,
        }
    }
    let _ = stop_tx.send(true);
    projector.await.context("the projector task failed")?;
    anyhow::ensure!(visible == ops, "only {visible} of {ops} commands were seen");

    let mut extra = Map::new();
    extra.insert("target_rate".to_owned(), json!(rate));
    Ok(Measured {
        ops,
        elapsed: sent_for,
        latencies,
        extra,
    })
}
