//! Command handling against the in-memory doubles: acknowledgements, authorisation,
//! idempotency, client-pinned versions, snapshots, upcasting and time travel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use strata_application::{AsOf, CommandConfig, CommandContext, CommandError, Loaded, Target};
use strata_domain::account::{Account, AccountCommand};
use strata_domain::order::{LineItem, Order, OrderCommand, OrderStatus, PlaceOrder};
use strata_domain::values::{
    Amount, Currency, CustomerId, ProductId, Quantity, Reference, ShippingAddress, UnitPrice,
};
use strata_domain::{Aggregate, RejectionKind};
use strata_ports::{EventStore, StreamId};
use support::{auditor, customer, harness, operator};
use uuid::Uuid;

fn line(product: &str, quantity: u32, cents: i64) -> LineItem {
    LineItem {
        product_id: ProductId::new(product).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        unit_price: UnitPrice::new(cents).unwrap(),
    }
}

fn place(customer_id: &str) -> OrderCommand {
    OrderCommand::PlaceOrder(PlaceOrder {
        customer_id: CustomerId::new(customer_id).unwrap(),
        currency: Currency::new("EUR").unwrap(),
        items: vec![line("sku-1", 2, 500)],
        shipping_address: ShippingAddress::new("1 Main St").unwrap(),
    })
}

fn ctx(principal: strata_application::Principal) -> CommandContext {
    CommandContext::new(principal)
}

#[tokio::test]
async fn placing_an_order_returns_an_acknowledgement_of_where_it_landed() {
    let h = harness(CommandConfig::default());
    let mut context = ctx(customer("c1"));
    context.correlation_id = Some("req-1".to_owned());

    let ack = h
        .commands
        .execute::<Order>(&context, Target::New, place("c1"))
        .await
        .unwrap();

    assert_eq!((ack.version, ack.position, ack.replayed), (1, 1, false));
    let stored = h.store.all();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].stream_id,
        StreamId::new("order", ack.aggregate_id)
    );
    assert_eq!(stored[0].event_type, "OrderPlaced");
    assert_eq!(stored[0].schema_version, 2);
    assert_eq!(stored[0].metadata.correlation_id.as_deref(), Some("req-1"));
    assert_eq!(stored[0].metadata.user_id.as_deref(), Some("user-c1"));
}

#[tokio::test]
async fn an_auditor_cannot_issue_commands() {
    let h = harness(CommandConfig::default());
    let result = h
        .commands
        .execute::<Order>(&ctx(auditor()), Target::New, place("c1"))
        .await;
    assert!(matches!(result, Err(CommandError::Forbidden(_))));
    assert!(h.store.all().is_empty());
}

#[tokio::test]
async fn a_customer_cannot_place_an_order_for_another_customer() {
    let h = harness(CommandConfig::default());
    let result = h
        .commands
        .execute::<Order>(&ctx(customer("c1")), Target::New, place("c2"))
        .await;
    assert!(matches!(result, Err(CommandError::Forbidden(_))));
}

#[tokio::test]
async fn a_customer_acting_on_another_customers_order_gets_not_found() {
    let h = harness(CommandConfig::default());
    let ack = h
        .commands
        .execute::<Order>(&ctx(customer("c1")), Target::New, place("c1"))
        .await
        .unwrap();

    let result = h
        .commands
        .execute::<Order>(
            &ctx(customer("c2")),
            Target::Existing(ack.aggregate_id),
            OrderCommand::Confirm,
        )
        .await;

    assert_eq!(result, Err(CommandError::NotFound("order")));
    let by_operator = h
        .commands
        .execute::<Order>(
            &ctx(operator()),
            Target::Existing(ack.aggregate_id),
            OrderCommand::Confirm,
        )
        .await;
    assert_eq!(by_operator.map(|a| a.version), Ok(2));
}

#[tokio::test]
async fn a_command_to_an_unknown_aggregate_is_not_found() {
    let h = harness(CommandConfig::default());
    let result = h
        .commands
        .execute::<Order>(
            &ctx(operator()),
            Target::Existing(Uuid::now_v7()),
            OrderCommand::Confirm,
        )
        .await;
    assert_eq!(result, Err(CommandError::NotFound("order")));
}

#[tokio::test]
async fn a_rule_violation_is_reported_with_its_kind_and_appends_nothing() {
    let h = harness(CommandConfig::default());
    let ack = h
        .commands
        .execute::<Account>(
            &ctx(operator()),
            Target::New,
            AccountCommand::Open {
                owner_customer_id: CustomerId::new("c1").unwrap(),
                currency: Currency::new("USD").unwrap(),
            },
        )
        .await
        .unwrap();

    let result = h
        .commands
        .execute::<Account>(
            &ctx(operator()),
            Target::Existing(ack.aggregate_id),
            AccountCommand::Withdraw {
                amount: Amount::new(1).unwrap(),
                reference: Reference::new("r").unwrap(),
            },
        )
        .await;

    assert!(matches!(
        result,
        Err(CommandError::Rejected {
            kind: RejectionKind::Conflict,
            ..
        })
    ));
    assert_eq!(h.store.all().len(), 1);
}

#[tokio::test]
async fn a_client_pinned_version_that_is_stale_is_reported_not_retried() {
    let h = harness(CommandConfig::default());
    let ack = h
        .commands
        .execute::<Order>(&ctx(operator()), Target::New, place("c1"))
        .await
        .unwrap();
    h.commands
        .execute::<Order>(
            &ctx(operator()),
            Target::Existing(ack.aggregate_id),
            OrderCommand::AddItem(line("sku-2", 1, 1)),
        )
        .await
        .unwrap();
    let mut pinned = ctx(operator());
    pinned.expected_version = Some(1);

    let result = h
        .commands
        .execute::<Order>(
            &pinned,
            Target::Existing(ack.aggregate_id),
            OrderCommand::Confirm,
        )
        .await;

    assert_eq!(
        result,
        Err(CommandError::VersionMismatch {
            category: "order",
            expected: 1,
            actual: 2
        })
    );
    pinned.expected_version = Some(2);
    let ok = h
        .commands
        .execute::<Order>(
            &pinned,
            Target::Existing(ack.aggregate_id),
            OrderCommand::Confirm,
        )
        .await;
    assert_eq!(ok.map(|a| a.version), Ok(3));
}

#[tokio::test]
async fn an_idempotent_replay_returns_the_original_acknowledgement_and_appends_nothing() {
    let h = harness(CommandConfig::default());
    let mut context = ctx(customer("c1"));
    context.idempotency_key = Some("key-1".to_owned());

    let first = h
        .commands
        .execute::<Order>(&context, Target::New, place("c1"))
        .await
        .unwrap();
    let second = h
        .commands
        .execute::<Order>(&context, Target::New, place("c1"))
        .await
        .unwrap();

    assert_eq!(
        (second.aggregate_id, second.version, second.position),
        (first.aggregate_id, first.version, first.position)
    );
    assert!(second.replayed);
    assert_eq!(h.store.all().len(), 1);
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_payload_is_rejected() {
    let h = harness(CommandConfig::default());
    let mut context = ctx(operator());
    context.idempotency_key = Some("key-1".to_owned());
    h.commands
        .execute::<Order>(&context, Target::New, place("c1"))
        .await
        .unwrap();

    let result = h
        .commands
        .execute::<Order>(&context, Target::New, place("c2"))
        .await;

    assert_eq!(
        result,
        Err(CommandError::IdempotencyKeyReused("key-1".to_owned()))
    );
    assert_eq!(h.store.all().len(), 1);
}

#[tokio::test]
async fn idempotency_keys_of_different_principals_do_not_collide() {
    let h = harness(CommandConfig::default());
    let mut first = ctx(customer("c1"));
    first.idempotency_key = Some("same".to_owned());
    let mut second = ctx(customer("c2"));
    second.idempotency_key = Some("same".to_owned());

    let a = h
        .commands
        .execute::<Order>(&first, Target::New, place("c1"))
        .await
        .unwrap();
    let b = h
        .commands
        .execute::<Order>(&second, Target::New, place("c2"))
        .await
        .unwrap();

    assert_ne!(a.aggregate_id, b.aggregate_id);
    assert_eq!(h.store.all().len(), 2);
}

#[tokio::test]
async fn concurrent_commands_without_a_pinned_version_all_land_after_retries() {
    let h = std::sync::Arc::new(harness(CommandConfig {
        snapshot_every: 0,
        max_retries: 64,
        ..CommandConfig::default()
    }));
    let ack = h
        .commands
        .execute::<Order>(&ctx(operator()), Target::New, place("c1"))
        .await
        .unwrap();

    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move {
                h.commands
                    .execute::<Order>(
                        &ctx(operator()),
                        Target::Existing(ack.aggregate_id),
                        OrderCommand::AddItem(line(&format!("p-{i}"), 1, 10)),
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    let loaded = h
        .rehydrator
        .load::<Order>(&StreamId::new("order", ack.aggregate_id))
        .await
        .unwrap();
    let order = loaded.state.unwrap();
    assert_eq!(loaded.version, 17);
    assert_eq!(order.items.len(), 17);
    assert_eq!(order.total_cents, 2 * 500 + 16 * 10);
}

#[tokio::test]
async fn a_snapshot_is_taken_when_a_stream_crosses_the_interval_and_equals_a_full_replay() {
    let h = harness(CommandConfig {
        snapshot_every: 3,
        max_retries: 3,
        ..CommandConfig::default()
    });
    let ack = h
        .commands
        .execute::<Order>(&ctx(operator()), Target::New, place("c1"))
        .await
        .unwrap();
    for i in 0..6 {
        h.commands
            .execute::<Order>(
                &ctx(operator()),
                Target::Existing(ack.aggregate_id),
                OrderCommand::AddItem(line(&format!("p-{i}"), 1, 100)),
            )
            .await
            .unwrap();
    }
    let stream = StreamId::new("order", ack.aggregate_id);

    let snapshot = h
        .snapshots
        .snapshots
        .lock()
        .unwrap()
        .get(&stream)
        .cloned()
        .unwrap();
    let all = h.store.all();
    let replay = all
        .iter()
        .take(snapshot.stream_version as usize)
        .map(|e| strata_application::rehydrate::decode::<Order>(e).unwrap());
    let replayed = replay.fold(None, |s, e| Order::evolve(s, &e));

    assert_eq!(snapshot.stream_version, 6);
    assert_eq!(
        serde_json::from_value::<<Order as Aggregate>::State>(snapshot.state).unwrap(),
        replayed
    );
    let through_snapshot = h.rehydrator.load::<Order>(&stream).await.unwrap();
    let from_scratch = strata_application::rehydrate::fold::<Order>(
        Loaded {
            state: None,
            version: 0,
        },
        &all,
    )
    .unwrap();
    assert_eq!(through_snapshot, from_scratch);
    assert_eq!(through_snapshot.state.unwrap().items.len(), 7);
}

#[tokio::test]
async fn a_snapshot_of_another_state_version_is_ignored() {
    let h = harness(CommandConfig {
        snapshot_every: 0,
        max_retries: 3,
        ..CommandConfig::default()
    });
    let ack = h
        .commands
        .execute::<Order>(&ctx(operator()), Target::New, place("c1"))
        .await
        .unwrap();
    let stream = StreamId::new("order", ack.aggregate_id);
    // A well-formed state that is not the truth: the order as if it had been confirmed.
    let mut forged = h.rehydrator.load::<Order>(&stream).await.unwrap().state;
    forged.as_mut().unwrap().status = OrderStatus::Confirmed;
    let snapshot = |state_version| strata_ports::Snapshot {
        stream_id: stream.clone(),
        stream_version: 1,
        state_version,
        state: serde_json::to_value(&forged).unwrap(),
        taken_at: time::OffsetDateTime::now_utc(),
    };
    let save = |snapshot| {
        h.snapshots
            .snapshots
            .lock()
            .unwrap()
            .insert(stream.clone(), snapshot)
    };

    // Under another state version it decodes fine, yet must not be used: full replay.
    save(snapshot(Order::STATE_VERSION + 1));
    let loaded = h.rehydrator.load::<Order>(&stream).await.unwrap();
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.state.unwrap().status, OrderStatus::Pending);

    // Control: under the current state version the same snapshot is trusted, which shows that
    // only the state version kept it out above.
    save(snapshot(Order::STATE_VERSION));
    let trusted = h.rehydrator.load::<Order>(&stream).await.unwrap();
    assert_eq!(trusted.state.unwrap().status, OrderStatus::Confirmed);
}

#[tokio::test]
async fn order_placed_v1_without_a_currency_is_upcast_before_the_aggregate_sees_it() {
    let h = harness(CommandConfig::default());
    let id = Uuid::now_v7();
    let stream = StreamId::new("order", id);
    h.store.seed(
        &stream,
        "OrderPlaced",
        1,
        json!({"customerId": "c1", "items": [{"productId": "sku-1", "quantity": 1, "unitPriceCents": 250}], "shippingAddress": "x"}),
    );

    let loaded = h.rehydrator.load::<Order>(&stream).await.unwrap();
    let ack = h
        .commands
        .execute::<Order>(
            &ctx(customer("c1")),
            Target::Existing(id),
            OrderCommand::Confirm,
        )
        .await;

    assert_eq!(
        loaded.state.unwrap().currency,
        Currency::new("EUR").unwrap()
    );
    assert_eq!(ack.map(|a| a.version), Ok(2));
}

#[tokio::test]
async fn state_can_be_rebuilt_as_of_a_version_or_a_time() {
    let h = harness(CommandConfig::default());
    let ack = h
        .commands
        .execute::<Order>(&ctx(operator()), Target::New, place("c1"))
        .await
        .unwrap();
    let id = ack.aggregate_id;
    h.commands
        .execute::<Order>(
            &ctx(operator()),
            Target::Existing(id),
            OrderCommand::Confirm,
        )
        .await
        .unwrap();
    let events = h.store.all();

    let v1 = h
        .history
        .state_as_of::<Order>(&operator(), id, AsOf::Version(1))
        .await
        .unwrap();
    let at_first = h
        .history
        .state_as_of::<Order>(&operator(), id, AsOf::Time(events[0].recorded_at))
        .await
        .unwrap();
    let latest = h
        .history
        .state_as_of::<Order>(&customer("c1"), id, AsOf::Latest)
        .await
        .unwrap();
    let before = h
        .history
        .state_as_of::<Order>(
            &operator(),
            id,
            AsOf::Time(events[0].recorded_at - time::Duration::seconds(1)),
        )
        .await;
    let version_zero = h
        .history
        .state_as_of::<Order>(&operator(), id, AsOf::Version(0))
        .await;

    assert_eq!(
        (v1.version, v1.state.unwrap().status),
        (1, OrderStatus::Pending)
    );
    assert_eq!(at_first.version, 1);
    assert_eq!(
        (latest.version, latest.state.unwrap().status),
        (2, OrderStatus::Confirmed)
    );
    let why = |result: Result<_, CommandError>| match result {
        Err(CommandError::NotAtThatPoint {
            category: "order",
            id: said,
            why,
        }) if said == id => why,
        other => panic!("expected order {id} not at that point, got {other:?}"),
    };
    let first = events[0]
        .recorded_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let before = why(before);
    assert!(before.starts_with("did not exist yet at "), "{before}");
    assert!(
        before.ends_with(&format!("(its first event was recorded at {first})")),
        "{before}"
    );
    assert_eq!(
        why(version_zero),
        "did not exist yet at version 0 (its first event is version 1)"
    );
}

#[tokio::test]
async fn a_version_beyond_the_end_of_the_stream_is_absent_and_the_error_names_the_latest() {
    let h = harness(CommandConfig::default());
    let id = h
        .commands
        .execute::<Order>(&ctx(operator()), Target::New, place("c1"))
        .await
        .unwrap()
        .aggregate_id;

    let last = h
        .history
        .state_as_of::<Order>(&operator(), id, AsOf::Version(1))
        .await;
    let beyond = h
        .history
        .state_as_of::<Order>(&operator(), id, AsOf::Version(2))
        .await;

    assert_eq!(last.map(|l| l.version), Ok(1));
    assert_eq!(
        beyond,
        Err(CommandError::NotAtThatPoint {
            category: "order",
            id,
            why: "has no version 2 yet: its latest is 1".to_owned(),
        })
    );
}

#[tokio::test]
async fn the_audit_trail_is_readable_by_owner_operator_and_auditor_only() {
    let h = harness(CommandConfig::default());
    let ack = h
        .commands
        .execute::<Order>(&ctx(customer("c1")), Target::New, place("c1"))
        .await
        .unwrap();

    for reader in [customer("c1"), operator(), auditor()] {
        let trail = h
            .history
            .audit_trail::<Order>(&reader, ack.aggregate_id)
            .await
            .unwrap();
        assert_eq!(trail.len(), 1);
    }
    let stranger = h
        .history
        .audit_trail::<Order>(&customer("c2"), ack.aggregate_id)
        .await;
    assert_eq!(stranger, Err(CommandError::NotFound("order")));
}

#[tokio::test]
async fn positions_returned_by_commands_are_those_of_the_global_log() {
    let h = harness(CommandConfig::default());
    let a = h
        .commands
        .execute::<Order>(&ctx(operator()), Target::New, place("c1"))
        .await
        .unwrap();
    let b = h
        .commands
        .execute::<Order>(&ctx(operator()), Target::New, place("c2"))
        .await
        .unwrap();

    let log = h.store.read_all(0, 10).await.unwrap();

    assert_eq!(
        log.iter().map(|e| e.global_position).collect::<Vec<_>>(),
        vec![a.position, b.position]
    );
}

// The cache of aggregates the service wrote last.

fn lines_of(state: &<Order as Aggregate>::State) -> Vec<(String, u32)> {
    state
        .as_ref()
        .unwrap()
        .items
        .iter()
        .map(|i| (i.product_id.as_str().to_owned(), i.quantity.get()))
        .collect()
}

#[tokio::test]
async fn a_command_on_an_aggregate_the_service_just_wrote_skips_its_load() {
    for (cached, loads) in [(1_000, 1), (0, 2)] {
        let h = harness(CommandConfig {
            cached_aggregates: cached,
            ..CommandConfig::default()
        });
        let op = ctx(operator());
        let placed = h
            .commands
            .execute::<Order>(&op, Target::New, place("c1"))
            .await
            .unwrap();
        let before = h.store.stream_reads();
        let added = h
            .commands
            .execute::<Order>(
                &op,
                Target::Existing(placed.aggregate_id),
                OrderCommand::AddItem(line("sku-2", 1, 100)),
            )
            .await
            .unwrap();

        let after = h.store.stream_reads();
        assert_eq!(after - before + 1, loads, "cache of {cached}");
        assert_eq!(added.version, 2);
    }
}

/// An order placed through `h.commands` (which caches it at version 1), then given a line of
/// `product` by another service (version 2, unknown to that cache).
async fn placed_then_moved_elsewhere(h: &support::Harness, product: &str) -> Uuid {
    let op = ctx(operator());
    let id = h
        .commands
        .execute::<Order>(&op, Target::New, place("c1"))
        .await
        .unwrap()
        .aggregate_id;
    h.other_service()
        .execute::<Order>(
            &op,
            Target::Existing(id),
            OrderCommand::AddItem(line(product, 1, 100)),
        )
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn a_stream_another_service_moved_is_loaded_again_and_the_command_lands_after_it() {
    let h = harness(CommandConfig::default());
    let op = ctx(operator());
    let id = placed_then_moved_elsewhere(&h, "sku-2").await;

    let ack = h
        .commands
        .execute::<Order>(
            &op,
            Target::Existing(id),
            OrderCommand::AddItem(line("sku-3", 1, 100)),
        )
        .await
        .unwrap();

    assert_eq!((ack.version, ack.retries), (3, 1));
    let loaded = h
        .rehydrator
        .load::<Order>(&StreamId::new("order", id))
        .await
        .unwrap();
    assert_eq!(
        lines_of(&loaded.state),
        [
            ("sku-1".to_owned(), 2),
            ("sku-2".to_owned(), 1),
            ("sku-3".to_owned(), 1)
        ]
    );
}

#[tokio::test]
async fn a_command_that_lost_a_race_reads_only_the_events_after_the_state_it_decided_on() {
    let h = harness(CommandConfig::default());
    let op = ctx(operator());
    // Cached at version 1; the store is at version 2.
    let id = placed_then_moved_elsewhere(&h, "sku-2").await;
    let snapshot_loads = h.snapshots.loads.load(std::sync::atomic::Ordering::SeqCst);
    h.store.reads_after.lock().unwrap().clear();

    let ack = h
        .commands
        .execute::<Order>(
            &op,
            Target::Existing(id),
            OrderCommand::AddItem(line("sku-3", 1, 100)),
        )
        .await
        .unwrap();

    assert_eq!((ack.version, ack.retries), (3, 1));
    assert_eq!(
        *h.store.reads_after.lock().unwrap(),
        [1],
        "the retry reads the one event after version 1, not the whole stream"
    );
    assert_eq!(
        h.snapshots.loads.load(std::sync::atomic::Ordering::SeqCst),
        snapshot_loads,
        "nor its snapshot"
    );
    // Caught up from version 1, a state is what a load of the whole stream gives.
    let stream = StreamId::new("order", id);
    let events: Vec<_> = h
        .store
        .all()
        .into_iter()
        .filter(|e| e.stream_id == stream)
        .collect();
    let at_one = strata_application::rehydrate::fold::<Order>(
        Loaded {
            state: Default::default(),
            version: 0,
        },
        &events[..1],
    )
    .unwrap();
    let caught_up = h
        .rehydrator
        .catch_up::<Order>(&stream, at_one)
        .await
        .unwrap();
    assert_eq!(
        caught_up,
        h.rehydrator.load::<Order>(&stream).await.unwrap()
    );
    assert_eq!(caught_up.version, 3);
    let next = h
        .other_service()
        .execute::<Order>(
            &op,
            Target::Existing(id),
            OrderCommand::AddItem(line("sku-4", 1, 100)),
        )
        .await
        .unwrap();
    assert_eq!(next.version, 4);
    let loaded = h.rehydrator.load::<Order>(&stream).await.unwrap();
    assert_eq!(
        lines_of(&loaded.state),
        [
            ("sku-1".to_owned(), 2),
            ("sku-2".to_owned(), 1),
            ("sku-3".to_owned(), 1),
            ("sku-4".to_owned(), 1)
        ]
    );
}

#[tokio::test]
async fn a_command_refused_on_a_cached_state_is_decided_again_on_the_stored_one() {
    let h = harness(CommandConfig::default());
    let op = ctx(operator());
    let id = placed_then_moved_elsewhere(&h, "sku-9").await;

    // The cached order has no sku-9; the stored one has.
    let ack = h
        .commands
        .execute::<Order>(
            &op,
            Target::Existing(id),
            OrderCommand::RemoveItem {
                product_id: ProductId::new("sku-9").unwrap(),
            },
        )
        .await
        .unwrap();

    assert_eq!(ack.version, 3);
}
