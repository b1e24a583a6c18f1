//! `publish` and `publish-lag`: the publisher (decision 0016) to a `nats-server` with JetStream
//! of the run's own (the Debian package; a fresh store per run).

use std::sync::Arc;

use anyhow::Context;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures::StreamExt;
use serde_json::{Map, json};
use strata_adapters_nats::testkit::NatsServer;
use strata_application::projection::{ProjectionWorker, ProjectorConfig, PublisherProjection};
use strata_ports::{EventPublisher, Generation};
use tokio::sync::watch;

use crate::storage::Fresh;
use crate::workloads::{Measured, catch_up_timed, seed_orders};

fn server(workload: &str) -> anyhow::Result<NatsServer> {
    NatsServer::start(workload)
        .context("cannot start nats-server (apt-get install nats-server; .ci/run does)")
}

/// `publish`: `events` events written beforehand (orders of 100), published from the log
/// until JetStream acknowledged the last; ops are events, latencies are batches.
pub async fn publish(fresh: &Fresh, events: u64, batch_size: usize) -> anyhow::Result<Measured> {
    let server = server("publish")?;
    seed_orders(fresh, events, 100, 4).await?;
    let publisher = Arc::new(server.publisher().await);
    let worker = ProjectionWorker::new(
        fresh.worker_deps(false),
        Arc::new(PublisherProjection::new(publisher.clone())),
        Generation::Live,
        ProjectorConfig {
            batch_size,
            ..ProjectorConfig::default()
        },
    );
    let (elapsed, latencies) = catch_up_timed(&worker, events).await?;
    let held = publisher.last_published().await?;
    anyhow::ensure!(held == Some(events), "the stream holds up to {held:?}");
    let mut extra = Map::new();
    extra.insert("batch_size".to_owned(), json!(batch_size));
    extra.insert("latency_of".to_owned(), json!("batch"));
    extra.insert(
        "broker".to_owned(),
        json!("nats-server, one node, file storage"),
    );
    Ok(Measured {
        ops: events,
        elapsed,
        latencies,
        extra,
    })
}

/// `publish-lag`: `ops` commands at `rate` per second with the publisher live (woken by the
/// log's notifications); each op's latency is from its acknowledgement until a JetStream
/// consumer (ordered, push-free pull) has received its message.
pub async fn publish_lag(fresh: &Fresh, rate: u64, ops: u64) -> anyhow::Result<Measured> {
    let server = server("publish-lag")?;
    let publisher = Arc::new(server.publisher().await);
    let client = async_nats::connect(server.url.as_str()).await?;
    let stream = async_nats::jetstream::new(client)
        .get_stream("STRATA")
        .await
        .context("the publisher made no stream")?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..OrderedConfig::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let (seen_tx, seen) = watch::channel(0u64);
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            let position = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get("Strata-Position"))
                .and_then(|value| value.as_str().parse::<u64>().ok());
            if let Some(position) = position {
                seen_tx.send_if_modified(|seen| {
                    let moved = position > *seen;
                    *seen = position.max(*seen);
                    moved
                });
            }
            if seen_tx.is_closed() {
                break;
            }
        }
    });
    let projection = Arc::new(PublisherProjection::new(publisher));
    let measured = crate::live::follow(fresh, projection, rate, ops, seen).await;
    reader.abort();
    let mut measured = measured?;
    measured.extra.insert(
        "latency_of".to_owned(),
        json!("ack to received by a JetStream consumer"),
    );
    Ok(measured)
}
