//! Two `strata-projector run` processes against one database: only one runs each projection;
//! when it dies (SIGKILL: no clean-up), the other takes over and goes on from the checkpoint.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use strata_adapters_postgres::PgEventStore;
use strata_domain::DomainEvent;
use strata_domain::order::{LineItem, OrderEvent};
use strata_domain::values::{
    Currency, CustomerId, ProductId, Quantity, ShippingAddress, UnitPrice,
};
use strata_ports::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use uuid::Uuid;

fn url_of(pool: &PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for sqlx::test");
    let (base, _) = server
        .rsplit_once('/')
        .expect("DATABASE_URL has a database part");
    let database = pool.connect_options().get_database().unwrap().to_owned();
    format!("{base}/{database}")
}

async fn place_order(pool: &PgPool) -> u64 {
    let event = OrderEvent::OrderPlaced {
        customer_id: CustomerId::new("c-1").unwrap(),
        currency: Currency::new("EUR").unwrap(),
        items: vec![LineItem {
            product_id: ProductId::new("p-1").unwrap(),
            quantity: Quantity::new(1).unwrap(),
            unit_price: UnitPrice::new(100).unwrap(),
        }],
        shipping_address: ShippingAddress::new("1 Main Street").unwrap(),
    }
    .encode();
    let request = AppendRequest {
        stream_id: StreamId::new("order", Uuid::now_v7()),
        expected: ExpectedVersion::NoStream,
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event.event_type,
            schema_version: event.schema_version,
            data: event.data,
            metadata: Metadata::default(),
            recorded_at: time::OffsetDateTime::now_utc(),
        }],
        idempotency: None,
    };
    PgEventStore::new(pool.clone())
        .append(request)
        .await
        .unwrap()
        .global_position
}

/// A running `strata-projector run` and the log lines it has written so far.
struct Instance {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    fn start(url: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata-projector"))
            .args(["--database-url", url, "run", "--poll-ms", "50"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata-projector starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            }
        });
        Self { child, log }
    }

    fn logged(&self, text: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(text))
            .count()
    }

    async fn wait_for_log(&self, text: &str, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.logged(text) < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never logged {text:?} {count} times; log: {:#?}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for_checkpoint(pool: &PgPool, position: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reached: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM projection_checkpoints WHERE projection = 'orders'",
        )
        .fetch_optional(pool)
        .await
        .unwrap();
        if reached.unwrap_or(0) >= i64::try_from(position).unwrap() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "orders stayed at {reached:?}, not {position}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_second_instance_waits_and_takes_over_when_the_first_dies(pool: PgPool) {
    let url = url_of(&pool);
    let first_order = place_order(&pool).await;
    let mut first = Instance::start(&url);
    first.wait_for_log("lease taken", 2).await;
    wait_for_checkpoint(&pool, first_order).await;

    let second = Instance::start(&url);
    second.wait_for_log("another instance runs it", 2).await;
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        held, 2,
        "one lease per projection, both held by the first instance"
    );
    assert_eq!(second.logged("lease taken"), 0);

    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let later_order = place_order(&pool).await;

    second.wait_for_log("lease taken", 2).await;
    wait_for_checkpoint(&pool, later_order).await;
    let summaries: i64 = sqlx::query_scalar("SELECT count(*) FROM order_summaries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(summaries, 2);
}
