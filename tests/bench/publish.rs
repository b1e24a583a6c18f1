//! `publish` and `publish-lag`: the publisher (decision 0016) to a `nats-server` with JetStream
//! of the run's own (the Debian package; a fresh store per run).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use async_nats::header::NATS_EXPECTED_LAST_SEQUENCE;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::response::Response;
use futures::StreamExt;
use serde_json::{Map, json};
use strata_adapters_nats::testkit::{NatsServer, message_of};
use strata_adapters_nats::{NatsPublisher, NatsSettings};
use strata_application::projection::{ProjectionWorker, ProjectorConfig, PublisherProjection};
use strata_ports::{EventPublisher, Generation, RecordedEvent};
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
    let started = Instant::now();
    let log = read_log(fresh, events, batch_size).await?;
    let read = per_second(log.len(), started.elapsed());
    extra.insert("log_read_alone_events_per_s".to_owned(), json!(read));
    let alone = publisher_alone(&server, &log, batch_size).await?;
    extra.insert("publisher_alone_events_per_s".to_owned(), json!(alone));
    let broker = broker_alone(&server, &log).await?;
    extra.insert("broker_alone_events_per_s".to_owned(), json!(broker));
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

/// The whole log, in memory, read in batches as the worker reads it.
async fn read_log(
    fresh: &Fresh,
    events: u64,
    batch_size: usize,
) -> anyhow::Result<Vec<RecordedEvent>> {
    let mut log = Vec::new();
    while (log.len() as u64) < events {
        let after = log.last().map_or(0, |e: &RecordedEvent| e.global_position);
        let page = fresh.events.read_all(after, batch_size.max(1)).await?;
        anyhow::ensure!(!page.is_empty(), "the log ends at {after}");
        log.extend(page);
    }
    Ok(log)
}

fn per_second(events: usize, elapsed: std::time::Duration) -> u64 {
    (events as f64 / elapsed.as_secs_f64()).round() as u64
}

/// Events/s of the publisher with the log already in memory and no checkpoint: the same
/// batches to a stream of their own.
async fn publisher_alone(
    server: &NatsServer,
    log: &[RecordedEvent],
    batch_size: usize,
) -> anyhow::Result<u64> {
    let settings = NatsSettings {
        subject_prefix: "alone".to_owned(),
        stream: "ALONE".to_owned(),
        ..NatsSettings::new(&server.url)
    };
    let publisher = NatsPublisher::connect(&settings).await?;
    let refs: Vec<&RecordedEvent> = log.iter().collect();
    let started = Instant::now();
    for batch in refs.chunks(batch_size.max(1)) {
        publisher.publish(batch).await?;
    }
    Ok(per_second(log.len(), started.elapsed()))
}

/// Events/s of the bare client with the messages built beforehand, to a stream of their own,
/// as the publisher sends them: each expecting the stream's sequence the one before left, at
/// most 1,000 awaiting their acknowledgement (on one subscription).
async fn broker_alone(server: &NatsServer, log: &[RecordedEvent]) -> anyhow::Result<u64> {
    let client = async_nats::connect(server.url.as_str()).await?;
    async_nats::jetstream::new(client.clone())
        .create_stream(async_nats::jetstream::stream::Config {
            name: "BARE".to_owned(),
            subjects: vec!["bare.>".to_owned()],
            storage: async_nats::jetstream::stream::StorageType::File,
            duplicate_window: std::time::Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
    let mut messages = Vec::with_capacity(log.len());
    for (sequence, event) in (0u64..).zip(log) {
        let (mut headers, body) = message_of(event).map_err(anyhow::Error::msg)?;
        headers.insert(NATS_EXPECTED_LAST_SEQUENCE, sequence.to_string());
        messages.push((format!("bare.{}", event.event_type), headers, body));
    }
    let mut acks = client.subscribe("bare-acks.*").await?;
    let started = Instant::now();
    let mut in_flight = 0;
    for (index, (subject, headers, body)) in messages.into_iter().enumerate() {
        if in_flight == 1_000 {
            acknowledged(acks.next().await)?;
            in_flight -= 1;
        }
        let reply = format!("bare-acks.{index}");
        client
            .publish_with_reply_and_headers(subject, reply, headers, body)
            .await?;
        in_flight += 1;
    }
    for _ in 0..in_flight {
        acknowledged(acks.next().await)?;
    }
    Ok(per_second(log.len(), started.elapsed()))
}

fn acknowledged(ack: Option<async_nats::Message>) -> anyhow::Result<()> {
    let ack = ack.context("the acknowledgements ended")?;
    let response: Response<PublishAck> = serde_json::from_slice(&ack.payload)?;
    match response {
        Response::Ok(_) => Ok(()),
        Response::Err { error } => anyhow::bail!("refused: {error}"),
    }
}
