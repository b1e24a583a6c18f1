//! The JetStream publisher against a real `nats-server` (one per test, started by the testkit;
//! a test says why it is skipped when the server is not installed).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::{Config, StorageType};
use futures::StreamExt;
use serde_json::json;
use strata_adapters_nats::testkit::NatsServer;
use strata_adapters_nats::{NatsPublisher, NatsSettings};
use strata_ports::{EventPublisher, Metadata, PublishError, RecordedEvent, StreamId};
use uuid::Uuid;

/// The event at `position` of a log: orders and accounts in turn.
fn event(position: u64, data: serde_json::Value) -> RecordedEvent {
    let category = if position % 2 == 1 {
        "order"
    } else {
        "account"
    };
    RecordedEvent {
        event_id: Uuid::now_v7(),
        stream_id: StreamId::new(category, Uuid::from_u128(u128::from(position % 2))),
        stream_version: position.div_ceil(2),
        global_position: position,
        event_type: if position % 2 == 1 {
            "ItemAdded"
        } else {
            "MoneyDeposited"
        }
        .to_owned(),
        schema_version: 1,
        data,
        metadata: Metadata {
            correlation_id: Some(format!("req-{position}")),
            ..Metadata::default()
        },
        recorded_at: time::macros::datetime!(2026-12-06 12:00 UTC),
    }
}

fn events(positions: std::ops::RangeInclusive<u64>) -> Vec<RecordedEvent> {
    positions.map(|p| event(p, json!({ "n": p }))).collect()
}

fn refs(events: &[RecordedEvent]) -> Vec<&RecordedEvent> {
    events.iter().collect()
}

/// Every message of the stream, in its order: subject, position header, body.
async fn messages(url: &str) -> Vec<(String, String, serde_json::Value)> {
    let client = async_nats::connect(url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream.get_stream("STRATA").await.unwrap();
    let count = stream.cached_info().state.messages;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..OrderedConfig::default()
        })
        .await
        .unwrap();
    let mut delivered = consumer
        .messages()
        .await
        .unwrap()
        .take(usize::try_from(count).unwrap());
    let mut seen = Vec::new();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), delivered.next())
        .await
        .unwrap()
    {
        let message = message.unwrap();
        let headers = message.headers.clone().unwrap();
        seen.push((
            message.subject.to_string(),
            headers.get("Strata-Position").unwrap().as_str().to_owned(),
            serde_json::from_slice(&message.payload).unwrap(),
        ));
    }
    seen
}

#[tokio::test]
async fn events_are_published_once_in_order_with_their_envelope() {
    let Some(server) = NatsServer::start("events_are_published_once_in_order_with_their_envelope")
    else {
        return;
    };
    let publisher = server.publisher().await;
    assert_eq!(publisher.last_published().await, Ok(None));
    let log = events(1..=5);

    publisher.publish(&refs(&log)).await.unwrap();
    // A retry of what was acknowledged (a publisher that crashed before its checkpoint moved),
    // with what follows it: only what follows lands.
    let mut more = log[3..].to_vec();
    more.extend(events(6..=7));
    publisher.publish(&refs(&more)).await.unwrap();
    // A repeat sent past the publisher (a message resent on a new connection) is recognised by
    // the broker by the event's id.
    let client = async_nats::connect(server.url.as_str()).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", log[4].event_id.to_string().as_str());
    let ack = async_nats::jetstream::new(client)
        .publish_with_headers("strata.order.ItemAdded", headers, "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.duplicate, "{ack:?}");

    assert_eq!(publisher.last_published().await, Ok(Some(7)));
    let seen = messages(&server.url).await;
    assert_eq!(
        seen,
        (1..=7)
            .map(|p| {
                let subject = if p % 2 == 1 {
                    "strata.order.ItemAdded"
                } else {
                    "strata.account.MoneyDeposited"
                };
                (subject.to_owned(), p.to_string(), json!({ "n": p }))
            })
            .collect::<Vec<_>>()
    );
    // The whole envelope, on the first message.
    let client = async_nats::connect(server.url.as_str()).await.unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream("STRATA")
        .await
        .unwrap();
    let first = stream.get_raw_message(1).await.unwrap();
    let header = |name: &str| first.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header("Nats-Msg-Id"), Some(log[0].event_id.to_string()));
    assert_eq!(header("Strata-Event-Id"), Some(log[0].event_id.to_string()));
    assert_eq!(
        header("Strata-Stream-Id"),
        Some(log[0].stream_id.to_string())
    );
    assert_eq!(header("Strata-Stream-Version"), Some("1".to_owned()));
    assert_eq!(header("Strata-Event-Type"), Some("ItemAdded".to_owned()));
    assert_eq!(header("Strata-Schema-Version"), Some("1".to_owned()));
    assert_eq!(header("Strata-Correlation-Id"), Some("req-1".to_owned()));
    assert_eq!(header("Strata-Causation-Id"), None);
    assert_eq!(
        header("Strata-Recorded-At"),
        Some("2026-12-06T12:00:00Z".to_owned())
    );
    assert_eq!(header("Content-Type"), Some("application/json".to_owned()));
}

/// Starts a server (`None` if there is none) holding stream `STRATA` made as `made`, then
/// connects a publisher: its answer, and the stream's settings afterwards.
async fn connect_beside(
    test: &str,
    made: Config,
) -> Option<(Result<NatsPublisher, PublishError>, Config)> {
    let server = NatsServer::start(test)?;
    let client = async_nats::connect(server.url.as_str()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    jetstream.create_stream(made).await.unwrap();
    let connected = NatsPublisher::connect(&NatsSettings::new(&server.url)).await;
    let kept = jetstream.get_stream("STRATA").await.unwrap();
    Some((connected, kept.cached_info().config.clone()))
}

#[tokio::test]
async fn a_stream_made_for_other_subjects_is_reported_and_left_as_it_is() {
    let made = Config {
        name: "STRATA".to_owned(),
        subjects: vec!["orders.>".to_owned()],
        storage: StorageType::Memory,
        ..Config::default()
    };
    let Some((connected, kept)) = connect_beside(
        "a_stream_made_for_other_subjects_is_reported_and_left_as_it_is",
        made,
    )
    .await
    else {
        return;
    };

    assert!(
        matches!(&connected, Err(PublishError::Misconfigured(why))
            if why.contains("orders.>") && why.contains("Memory storage")),
        "{connected:?}"
    );
    assert_eq!(kept.subjects, ["orders.>"]);
}

#[tokio::test]
async fn a_stream_with_another_duplicate_window_is_reported_and_left_as_it_is() {
    let made = Config {
        name: "STRATA".to_owned(),
        subjects: vec!["strata.>".to_owned()],
        storage: StorageType::File,
        duplicate_window: Duration::from_secs(30),
        ..Config::default()
    };
    let Some((connected, kept)) = connect_beside(
        "a_stream_with_another_duplicate_window_is_reported_and_left_as_it_is",
        made,
    )
    .await
    else {
        return;
    };

    assert!(
        matches!(&connected, Err(PublishError::Misconfigured(why)) if why.contains("duplicate window")),
        "{connected:?}"
    );
    assert_eq!(kept.duplicate_window, Duration::from_secs(30));
}

#[tokio::test]
async fn a_message_the_stream_will_never_take_is_refused_and_those_before_it_are_kept() {
    let Some(server) = NatsServer::start(
        "a_message_the_stream_will_never_take_is_refused_and_those_before_it_are_kept",
    ) else {
        return;
    };
    server.stream_of_small_messages(2_048).await;
    let publisher = server.publisher().await;
    let mut log = events(1..=3);
    log[1].data = json!({ "note": "x".repeat(4_096) });

    let refused = publisher.publish(&refs(&log)).await;

    assert!(
        matches!(&refused, Err(PublishError::Refused { position: 2, .. })),
        "{refused:?}"
    );
    assert_eq!(publisher.last_published().await, Ok(Some(1)));
    // After it is parked, the rest goes on.
    publisher.publish(&refs(&log[2..])).await.unwrap();
    let positions: Vec<String> = messages(&server.url)
        .await
        .into_iter()
        .map(|m| m.1)
        .collect();
    assert_eq!(positions, ["1", "3"]);
}

#[tokio::test]
async fn a_broker_that_went_down_is_unavailable() {
    let Some(mut server) = NatsServer::start("a_broker_that_went_down_is_unavailable") else {
        return;
    };
    let publisher = server.publisher().await;
    server.kill();

    let published = publisher.publish(&refs(&events(1..=2))).await;

    assert!(
        matches!(published, Err(PublishError::Unavailable(_))),
        "{published:?}"
    );
    let unreachable = NatsPublisher::connect(&NatsSettings::new(&server.url)).await;
    assert!(
        matches!(unreachable, Err(PublishError::Unavailable(_))),
        "{unreachable:?}"
    );
}

#[tokio::test]
async fn an_event_that_cannot_be_a_message_is_refused_after_those_before_it_are_kept() {
    let Some(server) = NatsServer::start(
        "an_event_that_cannot_be_a_message_is_refused_after_those_before_it_are_kept",
    ) else {
        return;
    };
    let publisher = server.publisher().await;
    let mut log = events(1..=3);
    log[1].event_type = "Money.Deposited".to_owned();

    let refused = publisher.publish(&refs(&log)).await;

    assert!(
        matches!(&refused, Err(PublishError::Refused { position: 2, reason }) if reason.contains("event type")),
        "{refused:?}"
    );
    assert_eq!(publisher.last_published().await, Ok(Some(1)));
}

#[tokio::test]
async fn a_batch_larger_than_the_acknowledgements_allowed_in_flight_is_published_whole() {
    let Some(server) = NatsServer::start(
        "a_batch_larger_than_the_acknowledgements_allowed_in_flight_is_published_whole",
    ) else {
        return;
    };
    let publisher = server.publisher().await;
    let log = events(1..=6_000);

    let published =
        tokio::time::timeout(Duration::from_secs(30), publisher.publish(&refs(&log))).await;

    assert_eq!(published, Ok(Ok(())));
    assert_eq!(publisher.last_published().await, Ok(Some(6_000)));
}

/// The positions of the stream's messages, in its order.
async fn positions(url: &str) -> Vec<u64> {
    messages(url)
        .await
        .into_iter()
        .map(|m| m.1.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn a_parked_message_published_late_keeps_the_resume_point_and_lands_once() {
    let Some(server) =
        NatsServer::start("a_parked_message_published_late_keeps_the_resume_point_and_lands_once")
    else {
        return;
    };
    let (jetstream, mut config) = server.stream_of_small_messages(2_048).await;
    let publisher = server.publisher().await;
    let mut log = events(1..=4);
    log[1].data = json!({ "note": "x".repeat(4_096) });
    let refused = publisher.publish(&refs(&log)).await;
    assert!(
        matches!(&refused, Err(PublishError::Refused { position: 2, .. })),
        "{refused:?}"
    );
    publisher.publish(&refs(&log[2..3])).await.unwrap();
    // An operator lets the stream take larger messages, then retries the parked one.
    config.max_message_size = -1;
    jetstream.update_stream(config).await.unwrap();

    publisher.publish_parked(&[&log[1]]).await.unwrap();

    // The resume point is still the highest position held, not the late message's own.
    assert_eq!(publisher.last_published().await, Ok(Some(3)));
    // A resume from an older checkpoint sends only what is new.
    publisher.publish(&refs(&log[2..])).await.unwrap();
    // A retry repeated within the duplicate window is dropped by the broker.
    publisher.publish_parked(&[&log[1]]).await.unwrap();
    assert_eq!(positions(&server.url).await, [1, 3, 2, 4]);
    let stream = jetstream.get_stream("STRATA").await.unwrap();
    let late = stream.get_raw_message(3).await.unwrap();
    assert_eq!(
        late.headers
            .get("Strata-Published-Through")
            .map(|v| v.as_str().to_owned()),
        Some("3".to_owned())
    );
    assert_eq!(publisher.last_published().await, Ok(Some(4)));
}

#[tokio::test]
async fn a_publisher_started_without_its_broker_publishes_once_the_broker_is_back() {
    let Some(mut server) = NatsServer::start(
        "a_publisher_started_without_its_broker_publishes_once_the_broker_is_back",
    ) else {
        return;
    };
    let publisher = server.publisher().await;
    publisher.publish(&refs(&events(1..=3))).await.unwrap();
    server.kill();
    // Started while the broker is down: it does not fail, it waits for the broker.
    let started = NatsPublisher::start(&NatsSettings::new(&server.url))
        .await
        .unwrap();
    let down = publisher.publish(&refs(&events(4..=5))).await;
    assert!(
        matches!(down, Err(PublishError::Unavailable(_))),
        "{down:?}"
    );
    assert!(matches!(
        started.last_published().await,
        Err(PublishError::Unavailable(_))
    ));

    server.restart();

    // Both reconnect by themselves; what the broker acknowledged before survived.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while publisher.publish(&refs(&events(4..=5))).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while started.publish(&refs(&events(1..=6))).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(positions(&server.url).await, [1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn a_publisher_whose_stream_another_wrote_to_reads_it_again_and_repeats_nothing() {
    let Some(server) = NatsServer::start(
        "a_publisher_whose_stream_another_wrote_to_reads_it_again_and_repeats_nothing",
    ) else {
        return;
    };
    let log = events(1..=7);
    let first = server.publisher().await;
    first.publish(&refs(&log[..3])).await.unwrap();
    // Another instance took over (a lease lost and taken) and went on.
    let second = server.publisher().await;
    second.publish(&refs(&log[3..5])).await.unwrap();

    // The first one's idea of the stream (sequence 3) is stale: its next messages expect the
    // wrong sequence and are refused, not landed after the other's; its next try reads the
    // stream again.
    let stale = first.publish(&refs(&log[5..])).await;
    assert!(
        matches!(stale, Err(PublishError::Unavailable(_))),
        "{stale:?}"
    );
    first.publish(&refs(&log[3..])).await.unwrap();

    assert_eq!(positions(&server.url).await, [1, 2, 3, 4, 5, 6, 7]);
}
