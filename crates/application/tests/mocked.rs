//! Command handling with mockall ports: the exact calls made on a lost race, on exhausted
//! retries, on an idempotency race, and when a store is down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::ControlFlow;
use std::sync::Arc;

use mockall::Sequence;
use mockall::predicate::{always, eq};
use serde_json::json;
use strata_application::{
    CommandConfig, CommandContext, CommandError, CommandService, LoadError, Principal, Rehydrator,
    Role, Target,
};
use strata_domain::Aggregate;
use strata_domain::order::{LineItem, Order, OrderCommand, PlaceOrder};
use strata_domain::values::{
    Currency, CustomerId, ProductId, Quantity, ShippingAddress, UnitPrice,
};
use strata_ports::{
    AppendOutcome, EventStoreError, ExpectedVersion, IdempotencyRecord, MockEventStore,
    MockSnapshotStore, PayloadRef, PayloadVisitor, RandomIds, RecordedEvent, Snapshot,
    SnapshotError, StreamId, SystemClock, visit_recorded,
};
use time::OffsetDateTime;
use uuid::Uuid;

fn operator() -> CommandContext {
    CommandContext::new(Principal {
        user_id: "op".to_owned(),
        role: Role::Operator,
        customer_id: None,
    })
}

fn recorded(
    stream: &StreamId,
    version: u64,
    event_type: &str,
    data: serde_json::Value,
) -> RecordedEvent {
    RecordedEvent {
        event_id: Uuid::now_v7(),
        stream_id: stream.clone(),
        stream_version: version,
        global_position: version,
        event_type: event_type.to_owned(),
        schema_version: 1,
        data,
        metadata: Default::default(),
        recorded_at: OffsetDateTime::now_utc(),
    }
}

/// What the event store's `visit_stream` does with these events: hands each on, as stored.
fn visit(
    events: Vec<RecordedEvent>,
    visitor: &mut dyn PayloadVisitor,
) -> Result<(), EventStoreError> {
    visit_recorded(&events, visitor)
}

fn placed(stream: &StreamId) -> RecordedEvent {
    let mut event = recorded(
        stream,
        1,
        "OrderPlaced",
        json!({"customerId": "c1", "currency": "EUR", "items": [{"productId": "a", "quantity": 1, "unitPriceCents": 1}], "shippingAddress": "x"}),
    );
    event.schema_version = 2;
    event
}

fn item_added(stream: &StreamId, version: u64, product: &str) -> RecordedEvent {
    recorded(
        stream,
        version,
        "ItemAdded",
        json!({"productId": product, "quantity": 1, "unitPriceCents": 1}),
    )
}

fn add(product: &str) -> OrderCommand {
    OrderCommand::AddItem(LineItem {
        product_id: ProductId::new(product).unwrap(),
        quantity: Quantity::new(1).unwrap(),
        unit_price: UnitPrice::new(1).unwrap(),
    })
}

fn no_snapshots() -> MockSnapshotStore {
    let mut snapshots = MockSnapshotStore::new();
    snapshots.expect_load().returning(|_| Ok(None));
    snapshots
}

fn service(
    store: MockEventStore,
    snapshots: MockSnapshotStore,
    config: CommandConfig,
) -> CommandService {
    CommandService::new(
        Arc::new(store),
        Arc::new(snapshots),
        Arc::new(SystemClock),
        Arc::new(RandomIds),
        config,
    )
}

#[tokio::test]
async fn a_lost_race_reloads_the_stream_and_appends_at_the_new_version() {
    let id = Uuid::now_v7();
    let stream = StreamId::new("order", id);
    let mut store = MockEventStore::new();
    let mut seq = Sequence::new();
    let s = stream.clone();
    store
        .expect_visit_stream()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, _, visitor| visit(vec![placed(&s)], visitor));
    let s = stream.clone();
    store
        .expect_append()
        .withf(|r| r.expected == ExpectedVersion::Exact(1))
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_| {
            Err(EventStoreError::WrongExpectedVersion {
                stream_id: s.clone(),
                expected: ExpectedVersion::Exact(1),
                actual: 2,
            })
        });
    let s = stream.clone();
    store
        .expect_visit_stream()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, _, visitor| visit(vec![placed(&s), item_added(&s, 2, "b")], visitor));
    store
        .expect_append()
        .withf(|r| r.expected == ExpectedVersion::Exact(2) && r.events.len() == 1)
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| {
            Ok(AppendOutcome {
                stream_version: 3,
                global_position: 3,
            })
        });

    let ack = service(store, no_snapshots(), CommandConfig::default())
        .execute::<Order>(&operator(), Target::Existing(id), add("c"))
        .await;

    assert_eq!(
        ack.map(|a| (a.version, a.position, a.retries)),
        Ok((3, 3, 1))
    );
}

/// A store whose order `id` always moved on before the append: `attempts` loads and appends,
/// each append a lost race.
fn always_racing(id: Uuid, attempts: usize) -> MockEventStore {
    let stream = StreamId::new("order", id);
    let mut store = MockEventStore::new();
    let s = stream.clone();
    store
        .expect_visit_stream()
        .times(attempts)
        .returning(move |_, _, visitor| visit(vec![placed(&s)], visitor));
    store.expect_append().times(attempts).returning(move |_| {
        Err(EventStoreError::WrongExpectedVersion {
            stream_id: stream.clone(),
            expected: ExpectedVersion::Exact(1),
            actual: 2,
        })
    });
    store
}

/// Two retries, then contention.
fn two_retries() -> CommandConfig {
    CommandConfig {
        snapshot_every: 0,
        max_retries: 2,
        ..CommandConfig::default()
    }
}

#[tokio::test]
async fn retries_are_bounded_and_then_reported_as_contention() {
    let id = Uuid::now_v7();

    let result = service(always_racing(id, 3), no_snapshots(), two_retries())
        .execute::<Order>(&operator(), Target::Existing(id), add("c"))
        .await;

    assert_eq!(
        result,
        Err(CommandError::Contention {
            category: "order",
            attempts: 3
        })
    );
}

/// The value of `name`'s sample labelled `category="order"` in Prometheus text, if any.
fn order_sample(text: &str, name: &str) -> Option<f64> {
    let series = format!("{name}{{category=\"order\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.parse().ok())
}

#[test]
fn each_retried_race_and_the_final_contention_are_counted_by_category() {
    // A recorder of this thread only: other tests of this process record elsewhere.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let id = Uuid::now_v7();

    let result = metrics::with_local_recorder(&recorder, || {
        runtime.block_on(
            service(always_racing(id, 3), no_snapshots(), two_retries()).execute::<Order>(
                &operator(),
                Target::Existing(id),
                add("c"),
            ),
        )
    });

    assert!(matches!(result, Err(CommandError::Contention { .. })));
    let text = handle.render();
    assert_eq!(
        order_sample(&text, "strata_command_retries_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        order_sample(&text, "strata_command_contention_total"),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_pinned_version_that_loses_the_race_is_reported_once() {
    let id = Uuid::now_v7();
    let stream = StreamId::new("order", id);
    let mut store = MockEventStore::new();
    let s = stream.clone();
    store
        .expect_visit_stream()
        .times(1)
        .returning(move |_, _, visitor| visit(vec![placed(&s)], visitor));
    let s = stream.clone();
    store.expect_append().times(1).returning(move |_| {
        Err(EventStoreError::WrongExpectedVersion {
            stream_id: s.clone(),
            expected: ExpectedVersion::Exact(1),
            actual: 2,
        })
    });
    let mut context = operator();
    context.expected_version = Some(1);

    let result = service(store, no_snapshots(), CommandConfig::default())
        .execute::<Order>(&context, Target::Existing(id), add("c"))
        .await;

    assert_eq!(
        result,
        Err(CommandError::VersionMismatch {
            category: "order",
            expected: 1,
            actual: 2
        })
    );
}

/// A store in which key "k" of principal "op" is free when the command starts, the append is
/// refused with `refusal` because a request with the same key got there first, and the key
/// then holds that request's record (version 2, position 9) with this request's fingerprint.
fn store_where_the_same_request_won(stream: &StreamId, refusal: EventStoreError) -> MockEventStore {
    let mut store = MockEventStore::new();
    let mut seq = Sequence::new();
    let s = stream.clone();
    store
        .expect_visit_stream()
        .returning(move |_, _, visitor| visit(vec![placed(&s)], visitor));
    // The winner's fingerprint is the one this request sends with its append.
    let fingerprint = Arc::new(std::sync::Mutex::new(String::new()));
    let sent = fingerprint.clone();
    store
        .expect_append()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |request| {
            *sent.lock().unwrap() = request.idempotency.unwrap().fingerprint;
            Err(refusal.clone())
        });
    let s = stream.clone();
    store
        .expect_find_idempotency()
        .with(eq("op"), eq("k"))
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, _| {
            Ok(Some(IdempotencyRecord {
                principal: "op".to_owned(),
                key: "k".to_owned(),
                fingerprint: fingerprint.lock().unwrap().clone(),
                stream_id: s.clone(),
                stream_version: 2,
                global_position: 9,
            }))
        });
    store
}

#[tokio::test]
async fn a_concurrent_request_with_the_same_idempotency_key_is_answered_as_its_replay() {
    let id = Uuid::now_v7();
    let store = store_where_the_same_request_won(
        &StreamId::new("order", id),
        EventStoreError::IdempotencyKeyTaken {
            key: "k".to_owned(),
        },
    );
    let mut context = operator();
    context.idempotency_key = Some("k".to_owned());

    let ack = service(store, no_snapshots(), CommandConfig::default())
        .execute::<Order>(&context, Target::Existing(id), add("c"))
        .await
        .unwrap();

    assert_eq!((ack.version, ack.position, ack.replayed), (2, 9, true));
}

#[tokio::test]
async fn a_version_conflict_caused_by_the_same_keyed_request_is_answered_as_its_replay() {
    // A client retries while its original is still committing: the retry loaded the stream
    // before the original's events, so its append meets a moved stream. With a claim, the
    // conflict is first checked against the key, even though the client pinned a version.
    let id = Uuid::now_v7();
    let stream = StreamId::new("order", id);
    let store = store_where_the_same_request_won(
        &stream,
        EventStoreError::WrongExpectedVersion {
            stream_id: stream.clone(),
            expected: ExpectedVersion::Exact(1),
            actual: 2,
        },
    );
    let mut context = operator();
    context.idempotency_key = Some("k".to_owned());
    context.expected_version = Some(1);

    let ack = service(store, no_snapshots(), CommandConfig::default())
        .execute::<Order>(&context, Target::Existing(id), add("c"))
        .await;

    assert_eq!(
        ack.map(|ack| (ack.version, ack.position, ack.replayed)),
        Ok((2, 9, true))
    );
}

/// A store holding a confirmed order, whose key "k" was recorded for the fingerprint `key_of`
/// (none: no look-up expected) and that must not be appended to.
fn store_with_a_confirmed_order(stream: &StreamId, key_of: Option<String>) -> MockEventStore {
    let mut store = MockEventStore::new();
    let s = stream.clone();
    store.expect_visit_stream().returning(move |_, _, visitor| {
        visit(
            vec![placed(&s), recorded(&s, 2, "OrderConfirmed", json!({}))],
            visitor,
        )
    });
    store.expect_append().times(0);
    let s = stream.clone();
    let lookups = usize::from(key_of.is_some());
    store
        .expect_find_idempotency()
        .with(eq("op"), eq("k"))
        .times(lookups)
        .returning(move |_, _| {
            Ok(key_of.clone().map(|fingerprint| IdempotencyRecord {
                principal: "op".to_owned(),
                key: "k".to_owned(),
                fingerprint,
                stream_id: s.clone(),
                stream_version: 2,
                global_position: 7,
            }))
        });
    store
}

/// The fingerprint a request sends with its append, learnt from a store that refuses it.
async fn fingerprint_of(id: Uuid, command: OrderCommand) -> String {
    let mut store = MockEventStore::new();
    let s = StreamId::new("order", id);
    store
        .expect_visit_stream()
        .returning(move |_, _, visitor| visit(vec![placed(&s)], visitor));
    let sent = Arc::new(std::sync::Mutex::new(String::new()));
    let seen = sent.clone();
    store.expect_append().returning(move |request| {
        *seen.lock().unwrap() = request.idempotency.unwrap().fingerprint;
        Err(EventStoreError::Unavailable(
            "only the fingerprint was wanted".to_owned(),
        ))
    });
    let mut context = operator();
    context.idempotency_key = Some("k".to_owned());
    let _ = service(store, no_snapshots(), CommandConfig::default())
        .execute::<Order>(&context, Target::Existing(id), command)
        .await;
    sent.lock().unwrap().clone()
}

#[tokio::test]
async fn a_first_keyed_command_costs_no_look_up_of_its_key() {
    // The claim travels with the append, which checks it: no round trip before it.
    let id = Uuid::now_v7();
    let mut store = MockEventStore::new();
    let s = StreamId::new("order", id);
    store
        .expect_visit_stream()
        .returning(move |_, _, visitor| visit(vec![placed(&s)], visitor));
    store.expect_find_idempotency().times(0);
    store.expect_append().times(1).returning(|request| {
        assert_eq!(request.idempotency.map(|c| c.key), Some("k".to_owned()));
        Ok(AppendOutcome {
            stream_version: 2,
            global_position: 5,
        })
    });
    let mut context = operator();
    context.idempotency_key = Some("k".to_owned());

    let ack = service(store, no_snapshots(), CommandConfig::default())
        .execute::<Order>(&context, Target::Existing(id), add("c"))
        .await
        .unwrap();

    assert_eq!((ack.version, ack.replayed), (2, false));
}

/// Sends `Confirm` with key "k" to a confirmed order whose key "k" was recorded for
/// `recorded_for`.
async fn confirm_again_with_a_key_recorded_for(
    recorded_for: OrderCommand,
) -> Result<(u64, u64, bool), CommandError> {
    let id = Uuid::now_v7();
    let fingerprint = fingerprint_of(id, recorded_for).await;
    let store = store_with_a_confirmed_order(&StreamId::new("order", id), Some(fingerprint));
    let mut context = operator();
    context.idempotency_key = Some("k".to_owned());

    service(store, no_snapshots(), CommandConfig::default())
        .execute::<Order>(&context, Target::Existing(id), OrderCommand::Confirm)
        .await
        .map(|ack| (ack.version, ack.position, ack.replayed))
}

#[tokio::test]
async fn a_replay_that_the_aggregate_now_refuses_is_answered_with_the_original_acknowledgement() {
    // Confirm, applied before with key "k", sent again: the order is confirmed now, so deciding
    // refuses; the key's record answers.
    let answer = confirm_again_with_a_key_recorded_for(OrderCommand::Confirm).await;

    assert_eq!(answer, Ok((2, 7, true)));
}

#[tokio::test]
async fn a_refused_command_whose_key_served_another_request_is_reported_as_a_reused_key() {
    let answer = confirm_again_with_a_key_recorded_for(add("other")).await;

    assert_eq!(
        answer,
        Err(CommandError::IdempotencyKeyReused("k".to_owned()))
    );
}

#[tokio::test]
async fn a_refused_command_without_a_key_asks_for_no_replay() {
    let id = Uuid::now_v7();
    let store = store_with_a_confirmed_order(&StreamId::new("order", id), None);

    let refused = service(store, no_snapshots(), CommandConfig::default())
        .execute::<Order>(&operator(), Target::Existing(id), OrderCommand::Confirm)
        .await;

    assert!(
        matches!(refused, Err(CommandError::Rejected { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_creation_reads_nothing_and_appends_at_no_stream() {
    // Its stream id was just generated: there is nothing to load.
    let mut store = MockEventStore::new();
    store.expect_visit_stream().times(0);
    store.expect_append().times(1).returning(|request| {
        assert_eq!(request.expected, ExpectedVersion::Exact(0));
        Ok(AppendOutcome {
            stream_version: 1,
            global_position: 1,
        })
    });
    let place = OrderCommand::PlaceOrder(PlaceOrder {
        customer_id: CustomerId::new("c1").unwrap(),
        currency: Currency::new("EUR").unwrap(),
        items: vec![LineItem {
            product_id: ProductId::new("a").unwrap(),
            quantity: Quantity::new(1).unwrap(),
            unit_price: UnitPrice::new(1).unwrap(),
        }],
        shipping_address: ShippingAddress::new("x").unwrap(),
    });

    let ack = service(store, no_snapshots(), CommandConfig::default())
        .execute::<Order>(&operator(), Target::New, place)
        .await
        .unwrap();

    assert_eq!((ack.version, ack.position), (1, 1));
}

#[tokio::test]
async fn an_unreachable_event_store_is_reported_as_unavailable() {
    let mut store = MockEventStore::new();
    store.expect_visit_stream().returning(|_, _, _| {
        Err(EventStoreError::Unavailable(
            "connection refused".to_owned(),
        ))
    });

    let result = service(store, no_snapshots(), CommandConfig::default())
        .execute::<Order>(&operator(), Target::Existing(Uuid::now_v7()), add("c"))
        .await;

    assert_eq!(
        result,
        Err(CommandError::Unavailable("connection refused".to_owned()))
    );
}

#[tokio::test]
async fn loading_reads_only_the_events_after_the_snapshot() {
    let id = Uuid::now_v7();
    let stream = StreamId::new("order", id);
    let mut snapshots = MockSnapshotStore::new();
    let s = stream.clone();
    snapshots.expect_load().returning(move |_| {
        let mut state = Order::fold(None, &[]);
        state = Order::evolve(
            state,
            &strata_application::rehydrate::decode::<Order>(&placed(&s)).unwrap(),
        );
        Ok(Some(Snapshot {
            stream_id: s.clone(),
            stream_version: 1,
            state_version: Order::STATE_VERSION,
            state: serde_json::to_value(state).unwrap(),
            taken_at: OffsetDateTime::now_utc(),
        }))
    });
    let mut store = MockEventStore::new();
    let s = stream.clone();
    store
        .expect_visit_stream()
        .with(always(), eq(1), always())
        .times(1)
        .returning(move |_, _, visitor| visit(vec![item_added(&s, 2, "b")], visitor));
    store
        .expect_append()
        .withf(|r| r.expected == ExpectedVersion::Exact(2))
        .times(1)
        .returning(|_| {
            Ok(AppendOutcome {
                stream_version: 3,
                global_position: 7,
            })
        });

    let ack = service(
        store,
        snapshots,
        CommandConfig {
            snapshot_every: 0,
            max_retries: 0,
            ..CommandConfig::default()
        },
    )
    .execute::<Order>(&operator(), Target::Existing(id), add("c"))
    .await;

    assert_eq!(ack.map(|a| a.version), Ok(3));
}

#[tokio::test]
async fn a_failing_snapshot_store_costs_a_full_replay_not_the_command() {
    let id = Uuid::now_v7();
    let stream = StreamId::new("order", id);
    let mut snapshots = MockSnapshotStore::new();
    snapshots
        .expect_load()
        .returning(|_| Err(SnapshotError::Unavailable("down".to_owned())));
    snapshots
        .expect_save()
        .times(1)
        .returning(|_| Err(SnapshotError::Unavailable("down".to_owned())));
    let mut store = MockEventStore::new();
    let s = stream.clone();
    store
        .expect_visit_stream()
        .with(always(), eq(0), always())
        .returning(move |_, _, visitor| visit(vec![placed(&s)], visitor));
    store.expect_append().returning(|_| {
        Ok(AppendOutcome {
            stream_version: 2,
            global_position: 2,
        })
    });

    let ack = service(
        store,
        snapshots,
        CommandConfig {
            snapshot_every: 2,
            max_retries: 0,
            ..CommandConfig::default()
        },
    )
    .execute::<Order>(&operator(), Target::Existing(id), add("c"))
    .await;

    assert_eq!(ack.map(|a| a.version), Ok(2));
}

/// A load stops at the first event it cannot decode: it reports that event's position, and asks
/// the store for nothing after it.
#[tokio::test]
async fn a_load_stops_at_the_first_event_it_cannot_decode() {
    let stream = StreamId::new("order", Uuid::now_v7());
    let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut store = MockEventStore::new();
    let (s, seen) = (stream.clone(), answers.clone());
    store
        .expect_visit_stream()
        .times(1)
        .returning(move |_, _, visitor| {
            let mut unknown = item_added(&s, 2, "b");
            unknown.event_type = "ItemTeleported".to_owned();
            for event in [placed(&s), unknown, item_added(&s, 3, "c")] {
                let data = event.data.to_string();
                let answer = visitor.visit(PayloadRef {
                    stream_version: event.stream_version,
                    global_position: event.global_position,
                    event_type: &event.event_type,
                    schema_version: event.schema_version,
                    data: &data,
                });
                seen.lock().unwrap().push(answer);
            }
            Ok(())
        });
    let rehydrator = Rehydrator::new(Arc::new(store), Arc::new(no_snapshots()));

    let loaded = rehydrator.load::<Order>(&stream).await;

    assert!(
        matches!(&loaded, Err(LoadError::Decode { position: 2, .. })),
        "{loaded:?}"
    );
    // The third answer is what a store that reads on after a break would get: still Break.
    assert_eq!(
        *answers.lock().unwrap(),
        [
            ControlFlow::Continue(()),
            ControlFlow::Break(()),
            ControlFlow::Break(())
        ]
    );
}
