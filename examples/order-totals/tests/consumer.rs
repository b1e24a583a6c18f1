//! The example consumer against a real log: orders appended to Strata's event store, published
//! by Strata's publisher worker to a `nats-server` of the test's own, and consumed by the
//! `order-totals` binary into its table, which must then match Strata's own order summaries;
//! after a `kill -9` mid-stream and a restart too, and after every message was delivered again
//! (redeliveries change nothing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use strata_adapters_nats::testkit::NatsServer;
use strata_adapters_postgres::{PgEventStore, PgLeases, PgProjectionStore};
use strata_application::projection::{
    OrdersProjection, Projection, ProjectionWorker, ProjectorConfig, PublisherProjection,
    WorkerDeps,
};
use strata_domain::DomainEvent;
use strata_domain::order::{LineItem, OrderEvent};
use strata_domain::values::{
    Currency, CustomerId, ProductId, Quantity, ShippingAddress, UnitPrice,
};
use strata_ports::{
    AppendRequest, EventStore, ExpectedVersion, Generation, Metadata, NewEvent, StreamId,
    SystemClock,
};
use uuid::Uuid;

fn line(product: &str, quantity: u32, cents: i64) -> LineItem {
    LineItem {
        product_id: ProductId::new(product).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        unit_price: UnitPrice::new(cents).unwrap(),
    }
}

/// An order's events: placed, `n` items added, the first removed.
fn order_events(n: usize) -> Vec<OrderEvent> {
    let mut events = vec![OrderEvent::OrderPlaced {
        customer_id: CustomerId::new("c-1").unwrap(),
        currency: Currency::new("EUR").unwrap(),
        items: vec![line("p-0", 2, 150)],
        shipping_address: ShippingAddress::new("1 Main Street").unwrap(),
    }];
    for i in 1..=n {
        let item = line(&format!("p-{i}"), 1, 10 * i64::try_from(i).unwrap());
        events.push(OrderEvent::ItemAdded {
            product_id: item.product_id,
            quantity: item.quantity,
            unit_price: item.unit_price,
        });
    }
    events.push(OrderEvent::ItemRemoved {
        product_id: ProductId::new("p-0").unwrap(),
    });
    events
}

/// `orders` orders of `n` items each, one append of a few events at a time, interleaved.
async fn write_orders(pool: &PgPool, orders: usize, n: usize) {
    let store = PgEventStore::new(pool.clone());
    let streams: Vec<(StreamId, Vec<OrderEvent>)> = (0..orders)
        .map(|_| (StreamId::new("order", Uuid::now_v7()), order_events(n)))
        .collect();
    for chunk in 0..=(n + 1) / 3 {
        for (stream, events) in &streams {
            let part: Vec<NewEvent> = events
                .iter()
                .skip(chunk * 3)
                .take(3)
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
                .collect();
            if part.is_empty() {
                continue;
            }
            store
                .append(AppendRequest {
                    stream_id: stream.clone(),
                    expected: ExpectedVersion::Any,
                    events: part,
                    idempotency: None,
                })
                .await
                .unwrap();
        }
    }
}

/// Runs `projection` over the whole log.
async fn catch_up(pool: &PgPool, projection: Arc<dyn Projection>) {
    let deps = WorkerDeps {
        events: Arc::new(PgEventStore::new(pool.clone())),
        store: Arc::new(PgProjectionStore::new(pool.clone())),
        leases: Arc::new(PgLeases::new(pool.clone())),
        clock: Arc::new(SystemClock),
        wakeups: None,
    };
    let config = ProjectorConfig {
        batch_size: 200,
        ..ProjectorConfig::default()
    };
    let worker = ProjectionWorker::new(deps, projection, Generation::Live, config);
    while !worker.run_batch().await.unwrap().caught_up {}
}

/// `DATABASE_URL` with the test database's name.
fn url_of(pool: &PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for sqlx::test");
    let (base, _) = server.rsplit_once('/').unwrap();
    let database = pool.connect_options().get_database().unwrap().to_owned();
    format!("{base}/{database}")
}

fn start_consumer(nats: &str, database: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_order-totals"))
        .args(["--nats-url", nats, "--database-url", database])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("order-totals starts")
}

type Totals = Vec<(Uuid, i64, i64, String)>;

/// The consumer's table: order, version, total, status.
async fn consumer_totals(pool: &PgPool) -> Totals {
    sqlx::query_as("SELECT order_id, version, total_cents, status FROM order_totals ORDER BY 1")
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

/// Strata's own read model of the same orders.
async fn strata_totals(pool: &PgPool) -> Totals {
    sqlx::query_as("SELECT order_id, version, total_cents, status FROM order_summaries ORDER BY 1")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn wait_until_equal(pool: &PgPool) {
    let expected = strata_totals(pool).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = consumer_totals(pool).await;
        if seen == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer's totals never matched: {} of {} rows",
            seen.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn the_consumer_keeps_strata_s_order_totals_exactly_across_a_kill(pool: PgPool) {
    let Some(server) =
        NatsServer::start("the_consumer_keeps_strata_s_order_totals_exactly_across_a_kill")
    else {
        return;
    };
    let publisher = Arc::new(server.publisher().await);
    let publishing: Arc<dyn Projection> = Arc::new(PublisherProjection::new(publisher));
    write_orders(&pool, 20, 10).await;
    catch_up(&pool, publishing.clone()).await;
    catch_up(&pool, Arc::new(OrdersProjection)).await;
    let url = url_of(&pool);

    let mut consumer = start_consumer(&server.url, &url);
    wait_until_equal(&pool).await;

    // More orders, published, and the consumer killed while it folds them.
    write_orders(&pool, 100, 10).await;
    catch_up(&pool, publishing.clone()).await;
    catch_up(&pool, Arc::new(OrdersProjection)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while consumer_totals(&pool).await.len() < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer stalled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    consumer.kill().unwrap();
    consumer.wait().unwrap();
    assert_ne!(consumer_totals(&pool).await, strata_totals(&pool).await);
    let mut consumer = start_consumer(&server.url, &url);
    wait_until_equal(&pool).await;
    consumer.kill().unwrap();
    consumer.wait().unwrap();

    // Every message delivered again (the durable consumer deleted: the service recreates it
    // from the start of the stream): redeliveries change nothing.
    let client = async_nats::connect(server.url.as_str()).await.unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream("STRATA")
        .await
        .unwrap();
    stream.delete_consumer("order-totals").await.unwrap();
    let mut consumer = start_consumer(&server.url, &url);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = match stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>("order-totals")
            .await
        {
            Ok(mut made) => {
                let info = made.info().await.unwrap();
                info.num_pending == 0
                    && info.num_ack_pending == 0
                    && info.delivered.stream_sequence > 0
            }
            Err(_) => false,
        };
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never consumed again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(consumer_totals(&pool).await, strata_totals(&pool).await);
    consumer.kill().unwrap();
    consumer.wait().unwrap();
}
