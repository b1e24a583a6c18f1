//! What the projector's process tests share: the test database's URL and a real event.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod log;

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

/// The URL of the test's own database: `DATABASE_URL` with its database part replaced.
pub fn url_of(pool: &PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for sqlx::test");
    let (base, _) = server
        .rsplit_once('/')
        .expect("DATABASE_URL has a database part");
    let database = pool.connect_options().get_database().unwrap().to_owned();
    format!("{base}/{database}")
}

/// Appends an `OrderPlaced` to a new order stream; returns its position.
pub async fn place_order(pool: &PgPool) -> u64 {
    place_order_in(&PgEventStore::new(pool.clone())).await
}

/// Appends an `OrderPlaced` to a new order stream of `store`; returns its position.
pub async fn place_order_in(store: &dyn EventStore) -> u64 {
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
    store.append(request).await.unwrap().global_position
}

/// A running `strata-projector run` and the log lines it has written so far.
pub struct Instance {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    /// Starts `strata-projector run` with `extra` arguments, logging at info to a pipe.
    pub fn start(url: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata-projector"))
            .args(["--database-url", url, "run"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("ELASTICSEARCH_URL")
            .env_remove("STRATA_NATS_URL")
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

    pub fn logged(&self, text: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(text))
            .count()
    }

    pub async fn wait_for_log(&self, text: &str, count: usize) {
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
