//! The publisher (decision 0016) through the real worker, against a real `nats-server` per test
//! (a three-node cluster in one): every event once and in order as a consumer that does not
//! de-duplicate sees it, under concurrent appends and a held writer, across a broker restart, a
//! restart after the duplicate window, a `kill -9` of the projector, and the loss of the stream's
//! leader; a refused message parked with its stream's later events, then retried or skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures::StreamExt;
use sqlx::PgPool;
use strata_adapters_nats::testkit::{NatsCluster, NatsServer};
use strata_adapters_nats::{NatsPublisher, NatsSettings};
use strata_adapters_postgres::testkit::wait_for_lock_waiters;
use strata_adapters_postgres::{PgEventStore, PgProjectionStore, PgReadModels, append_in};
use strata_application::projection::{
    Projection, ProjectionWorker, ProjectorConfig, ProjectorError, PublisherProjection, dlq_retry,
    dlq_skip, rebuild,
};
use strata_ports::{
    AppendRequest, EventPublisher, EventStore, ExpectedVersion, Generation, Metadata, NewEvent,
    ProjectionName, ProjectionStore, PublishError, ReadModels, StreamId,
};
use support::log::{
    added, append, append_request, config, deps, order_stream, placed, spawn_live, spawn_writer,
    wait_for_head,
};
use support::{Instance, url_of};
use tokio::sync::watch;
use uuid::Uuid;

const PUBLISHER: ProjectionName = ProjectionName::Publisher;

/// One message as a consumer that does not de-duplicate sees it: its position and event id.
type Seen = (u64, Uuid);

/// Every message of stream `STRATA` at `url`, in the stream's order. A cluster that lost a
/// node may take a few seconds to answer (a new leader is elected): asked again until it does.
async fn consume(url: &str) -> Vec<Seen> {
    let client = async_nats::connect(url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (count, consumer) = loop {
        let made = async {
            let stream = jetstream.get_stream("STRATA").await?;
            let count = usize::try_from(stream.cached_info().state.messages).unwrap();
            let consumer = stream
                .create_consumer(OrderedConfig {
                    deliver_policy: DeliverPolicy::All,
                    ..OrderedConfig::default()
                })
                .await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((count, consumer))
        };
        match made.await {
            Ok(made) => break made,
            Err(error) => {
                assert!(std::time::Instant::now() < deadline, "{error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let mut messages = consumer.messages().await.unwrap().take(count);
    let mut seen = Vec::with_capacity(count);
    while let Some(message) = tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .expect("a message within 30 s")
    {
        let message = message.unwrap();
        let headers = message.headers.as_ref().unwrap();
        let header = |name: &str| headers.get(name).unwrap().as_str().to_owned();
        seen.push((
            header("Strata-Position").parse().unwrap(),
            header("Strata-Event-Id").parse().unwrap(),
        ));
    }
    seen
}

/// The log as a consumer must see it: every event once, in global order.
async fn the_log(pool: &PgPool) -> Vec<Seen> {
    PgEventStore::new(pool.clone())
        .read_all(0, 1_000_000)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.global_position, e.event_id))
        .collect()
}

async fn checkpoint(pool: &PgPool) -> u64 {
    PgReadModels::new(pool.clone())
        .position(PUBLISHER)
        .await
        .unwrap()
}

fn publisher_projection(publisher: Arc<NatsPublisher>) -> Arc<dyn Projection> {
    Arc::new(PublisherProjection::new(publisher))
}

fn worker_with(pool: &PgPool, projection: Arc<dyn Projection>, batch: usize) -> ProjectionWorker {
    let config = ProjectorConfig {
        batch_size: batch,
        ..config()
    };
    ProjectionWorker::new(deps(pool), projection, Generation::Live, config)
}

/// A note on stream `stream` with `bytes` of text: any size, unlike the domain's events.
fn note(stream: &StreamId, bytes: usize) -> AppendRequest {
    AppendRequest {
        stream_id: stream.clone(),
        expected: ExpectedVersion::Any,
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "NoteAdded".to_owned(),
            schema_version: 1,
            data: serde_json::json!({ "note": "x".repeat(bytes) }),
            metadata: Metadata::default(),
            recorded_at: time::OffsetDateTime::now_utc(),
        }],
        idempotency: None,
    }
}

/// `streams` order streams of `per_stream` events each, written stream by stream (so that
/// consecutive positions mostly share a stream).
async fn write_orders(pool: &PgPool, streams: usize, per_stream: usize) {
    let store = PgEventStore::new(pool.clone());
    for _ in 0..streams {
        let stream = order_stream();
        let mut events = vec![placed("c-1", "p-1", 1, 100)];
        events.extend((1..per_stream).map(|n| added(&format!("p-{n}"), 1, 1)));
        store
            .append(append_request(&stream, &events))
            .await
            .unwrap();
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn every_event_is_published_once_in_order_under_concurrent_appends_and_a_held_writer(
    pool: PgPool,
) {
    let Some(server) = NatsServer::start(
        "every_event_is_published_once_in_order_under_concurrent_appends_and_a_held_writer",
    ) else {
        return;
    };
    let publisher = Arc::new(server.publisher().await);
    let streams: Vec<StreamId> = (0..4).map(|_| order_stream()).collect();
    for stream in &streams {
        append(&pool, stream, &[placed("c-1", "p-1", 1, 100)]).await;
    }
    let (stop_tx, stop) = watch::channel(false);
    let live = spawn_live(&pool, publisher_projection(publisher.clone()), &stop);
    let writer = spawn_writer(&pool, &streams, 120);
    // A writer holds its append open: those after it wait, and the worker must not skip it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut held = pool.begin().await.unwrap();
    append_in(
        &mut held,
        &append_request(&streams[0], &[added("held", 1, 1)]),
    )
    .await
    .unwrap();
    wait_for_lock_waiters(&pool, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.commit().await.unwrap();
    writer.await.unwrap();
    wait_for_head(&pool, PUBLISHER).await;
    stop_tx.send(true).unwrap();
    live.await.unwrap();

    let log = the_log(&pool).await;
    assert_eq!(log.len(), 4 + 120 + 1);
    assert_eq!(consume(&server.url).await, log);
    assert_eq!(publisher.last_published().await, Ok(Some(125)));
}

/// Waits until the stream at `url` holds at least `count` messages; returns how many it held.
async fn until_holding(url: &str, count: u64) -> u64 {
    let client = async_nats::connect(url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    loop {
        if let Ok(mut stream) = jetstream.get_stream("STRATA").await
            && let Ok(info) = stream.info().await
            && info.state.messages >= count
        {
            return info.state.messages;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_broker_killed_mid_publish_holds_the_checkpoint_until_it_is_back(pool: PgPool) {
    let Some(mut server) =
        NatsServer::start("a_broker_killed_mid_publish_holds_the_checkpoint_until_it_is_back")
    else {
        return;
    };
    let publisher = Arc::new(server.publisher().await);
    write_orders(&pool, 100, 100).await;
    let worker = worker_with(&pool, publisher_projection(publisher.clone()), 10_000);
    // Killed while the batch's messages are on their way.
    let url = server.url.clone();
    let killer = tokio::spawn(async move {
        let held = until_holding(&url, 1_000).await;
        assert!(held < 10_000, "killed while publishing ({held} held)");
        server.kill();
        server
    });

    let down = worker.run_batch().await;

    let mut server = killer.await.unwrap();
    assert!(matches!(&down, Err(e) if e.is_unavailable()), "{down:?}");
    assert_eq!(checkpoint(&pool).await, 0, "the checkpoint holds");
    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match worker.run_batch().await {
            Ok(report) if report.caught_up => break,
            Ok(_) => {}
            Err(error) => {
                assert!(error.is_unavailable(), "{error:?}");
                assert!(std::time::Instant::now() < deadline, "never resumed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert_eq!(checkpoint(&pool).await, 10_000);
    assert_eq!(consume(&server.url).await, the_log(&pool).await);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_publisher_resuming_after_the_duplicate_window_publishes_nothing_twice(pool: PgPool) {
    let Some(server) = NatsServer::start(
        "a_publisher_resuming_after_the_duplicate_window_publishes_nothing_twice",
    ) else {
        return;
    };
    let settings = NatsSettings {
        duplicate_window: Duration::from_millis(200),
        ..NatsSettings::new(&server.url)
    };
    write_orders(&pool, 2, 15).await;
    let first = Arc::new(NatsPublisher::connect(&settings).await.unwrap());
    let worker = worker_with(&pool, publisher_projection(first), 100);
    assert!(worker.run_batch().await.unwrap().caught_up);
    // A crash after the broker acknowledged, before the checkpoint committed, leaves the
    // checkpoint behind what the broker holds.
    sqlx::query("UPDATE projection_checkpoints SET position = 12 WHERE projection = 'publisher'")
        .execute(&pool)
        .await
        .unwrap();
    // Restarted once the broker no longer recognises the repeats.
    tokio::time::sleep(Duration::from_millis(600)).await;
    write_orders(&pool, 1, 5).await;
    let second = Arc::new(NatsPublisher::connect(&settings).await.unwrap());
    let worker = worker_with(&pool, publisher_projection(second), 100);

    assert!(worker.run_batch().await.unwrap().caught_up);

    assert_eq!(checkpoint(&pool).await, 35);
    assert_eq!(consume(&server.url).await, the_log(&pool).await);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_refused_message_is_parked_with_its_streams_later_events_then_retried_or_skipped(
    pool: PgPool,
) {
    let Some(server) = NatsServer::start(
        "a_refused_message_is_parked_with_its_streams_later_events_then_retried_or_skipped",
    ) else {
        return;
    };
    let (jetstream, mut stream_config) = server.stream_of_small_messages(2_048).await;
    let publisher = Arc::new(server.publisher().await);
    let projection = publisher_projection(publisher.clone());
    let store = PgEventStore::new(pool.clone());
    let (a, b, c) = (order_stream(), order_stream(), order_stream());
    // Positions: a1 b1 a2(too large) b2 a3 c1 c2(too large) c3.
    for (stream, bytes) in [
        (&a, 10),
        (&b, 10),
        (&a, 4_096),
        (&b, 10),
        (&a, 10),
        (&c, 10),
        (&c, 4_096),
        (&c, 10),
    ] {
        store.append(note(stream, bytes)).await.unwrap();
    }
    let worker = worker_with(&pool, projection.clone(), 100);
    let first = worker.run_batch().await.unwrap();

    // The batch stops at the refusal: nothing after it is published before it is parked, so a
    // batch that failed after it could not leave the broker past an event it has not taken.
    assert_eq!((first.to, first.parked, first.caught_up), (3, 1, false));
    let positions: Vec<u64> = consume(&server.url).await.iter().map(|s| s.0).collect();
    assert_eq!(positions, [1, 2]);
    while !worker.run_batch().await.unwrap().caught_up {}
    assert_eq!(checkpoint(&pool).await, 8);
    let positions: Vec<u64> = consume(&server.url).await.iter().map(|s| s.0).collect();
    assert_eq!(positions, [1, 2, 4, 6], "a3 and c3 wait behind a2 and c2");
    let letters = PgProjectionStore::new(pool.clone())
        .dead_letters(Some(PUBLISHER))
        .await
        .unwrap();
    let parked: Vec<(u64, Option<u64>)> = letters
        .iter()
        .map(|l| (l.event.global_position, l.blocked_by))
        .collect();
    assert_eq!(parked, [(3, None), (5, Some(3)), (7, None), (8, Some(7))]);
    assert!(letters[0].error.contains("too large"), "{:?}", letters[0]);
    // A later event of a parked stream waits too; another stream's goes out.
    store.append(note(&a, 10)).await.unwrap();
    store.append(note(&b, 10)).await.unwrap();
    while !worker.run_batch().await.unwrap().caught_up {}

    // The operator lets larger messages through, retries a2 and skips c2.
    stream_config.max_message_size = -1;
    jetstream.update_stream(stream_config).await.unwrap();
    let retried = dlq_retry(&deps(&pool), &*projection, 3).await.unwrap();
    let skipped = dlq_skip(&deps(&pool), &*projection, 7).await.unwrap();

    assert_eq!((retried.applied, retried.parked_again), (3, 0));
    assert_eq!((skipped.applied, skipped.parked_again), (1, 0));
    let log = the_log(&pool).await;
    let expected: Vec<Seen> = [1, 2, 4, 6, 10, 3, 5, 9, 8]
        .into_iter()
        .map(|p| log[usize::try_from(p - 1).unwrap()])
        .collect();
    assert_eq!(consume(&server.url).await, expected);
    assert!(
        PgProjectionStore::new(pool.clone())
            .dead_letters(Some(PUBLISHER))
            .await
            .unwrap()
            .is_empty()
    );
    // The resume point is still the highest position published: nothing goes out again.
    assert_eq!(publisher.last_published().await, Ok(Some(10)));
    let after = worker_with(&pool, projection.clone(), 100)
        .run_batch()
        .await
        .unwrap();
    assert_eq!(after.events, 0);
    assert_eq!(consume(&server.url).await.len(), 9);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn the_publisher_cannot_be_rebuilt(pool: PgPool) {
    let Some(server) = NatsServer::start("the_publisher_cannot_be_rebuilt") else {
        return;
    };
    let publisher = Arc::new(server.publisher().await);
    let (_stop_tx, stop) = watch::channel(false);

    let refused = rebuild(
        &deps(&pool),
        publisher_projection(publisher),
        config(),
        &stop,
        &mut |_| {},
    )
    .await;

    assert!(
        matches!(&refused, Err(ProjectorError::NotRebuildable { name, .. }) if name == "publisher"),
        "{refused:?}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing of a rebuild was started");
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_projector_killed_mid_stream_resumes_without_a_gap_or_a_duplicate(pool: PgPool) {
    let Some(server) =
        NatsServer::start("a_projector_killed_mid_stream_resumes_without_a_gap_or_a_duplicate")
    else {
        return;
    };
    write_orders(&pool, 40, 100).await;
    let url = url_of(&pool);
    let args = [
        "--nats-url",
        server.url.as_str(),
        "--projection",
        "publisher",
        "--nats-batch-size",
        "100",
        "--poll-ms",
        "50",
    ];
    let mut first = Instance::start(&url, &args);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while checkpoint(&pool).await < 500 {
        assert!(tokio::time::Instant::now() < deadline, "never published");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let at_kill = checkpoint(&pool).await;
    assert!(at_kill < 4_000, "killed before the end ({at_kill})");
    let second = Instance::start(&url, &args);
    wait_for_head(&pool, PUBLISHER).await;

    assert_eq!(consume(&server.url).await, the_log(&pool).await);
    // The status lists the publisher once it has run.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_strata-projector"))
        .args(["--database-url", &url, "status", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("\"publisher\""), "{text}");
    drop(second);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_cluster_losing_its_stream_leader_delivers_every_event_once_in_order(pool: PgPool) {
    let Some(cluster) =
        NatsCluster::start("a_cluster_losing_its_stream_leader_delivers_every_event_once_in_order")
    else {
        return;
    };
    let settings = NatsSettings {
        replicas: 3,
        ..NatsSettings::new(cluster.url())
    };
    // The cluster takes a stream once it has elected its meta leader.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let publisher = loop {
        match NatsPublisher::connect(&settings).await {
            Ok(publisher) => break Arc::new(publisher),
            Err(error) => {
                assert!(std::time::Instant::now() < deadline, "{error:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    write_orders(&pool, 100, 100).await;
    let worker = worker_with(&pool, publisher_projection(publisher.clone()), 500);
    // The stream's leader is killed while messages are on their way to it.
    let urls = cluster.urls.clone();
    let cluster = Arc::new(std::sync::Mutex::new(cluster));
    let killer = tokio::spawn({
        let (url, cluster) = (urls[0].clone(), cluster.clone());
        async move {
            let held = until_holding(&url, 2_000).await;
            let leader = leader(&url).await;
            let index: usize = leader.trim_start_matches('n').parse().unwrap();
            cluster.lock().unwrap().kill(index);
            (index, held)
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let batch = worker.run_batch().await;
        // Whatever happened, the checkpoint is never past what the broker holds.
        let held = loop {
            match publisher.last_published().await {
                Ok(held) => break held.unwrap_or(0),
                Err(PublishError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(other) => panic!("{other:?}"),
            }
        };
        let at = checkpoint(&pool).await;
        assert!(at <= held, "checkpoint {at} past the broker's {held}");
        match batch {
            Ok(report) if report.caught_up => break,
            Ok(_) => {}
            Err(error) => {
                assert!(error.is_unavailable(), "{error:?}");
                assert!(std::time::Instant::now() < deadline, "never recovered");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let (killed, held_then) = killer.await.unwrap();
    assert!(
        held_then < 10_000,
        "killed while publishing ({held_then} held)"
    );
    let survivor = (0..3).find(|i| *i != killed).unwrap();

    let seen = consume(&urls[survivor]).await;

    assert_eq!(seen.len(), 10_000);
    assert_eq!(seen, the_log(&pool).await);
}

/// The server name of the stream's leader, as a node at `url` says.
async fn leader(url: &str) -> String {
    let client = async_nats::connect(url).await.unwrap();
    let mut stream = async_nats::jetstream::new(client)
        .get_stream("STRATA")
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    info.cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("the stream has a leader")
}
