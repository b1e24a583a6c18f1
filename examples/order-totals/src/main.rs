//! `order-totals`: an example of another service consuming Strata's published log (issue 24,
//! decision 0016). It keeps its own table of order totals from a durable JetStream pull
//! consumer with explicit acknowledgements, using Strata's domain crate to read and fold the
//! events. Each message is applied in a transaction guarded by the stream version, then
//! acknowledged: a message redelivered after a crash is recognised and acknowledged again, so
//! the table is exact although JetStream delivers at least once.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer};
use clap::Parser;
use futures::StreamExt;
use sqlx::PgPool;
use strata_domain::order::{Order, OrderEvent, OrderState};
use strata_domain::{Aggregate, DomainEvent};
use uuid::Uuid;

/// Keeps a table of order totals from Strata's events on NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "order-totals", version)]
struct Cli {
    /// The NATS server(s) Strata publishes to (comma-separated for a cluster's nodes).
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// This service's own PostgreSQL database (the table `order_totals` is created in it).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Strata's subject prefix (`STRATA_NATS_SUBJECT_PREFIX`).
    #[arg(long, default_value = "strata")]
    subject_prefix: String,
    /// Strata's JetStream stream (`STRATA_NATS_STREAM`).
    #[arg(long, default_value = "STRATA")]
    stream: String,
    /// The durable consumer's name: where this service is in the stream survives restarts.
    #[arg(long, default_value = "order-totals")]
    consumer: String,
}

/// How long JetStream waits for an acknowledgement before it delivers a message again: how
/// long a message taken by an instance that died waits before another gets it.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// Deliveries of a message that comes before its turn (about 10 s at 200 ms each) after which
/// the version it waits for is taken as never coming, and it is folded all the same: Strata's
/// operator skipped that event (`strata-projector dlq skip publisher`), so it was never
/// published.
const MAX_EARLY_DELIVERIES: i64 = 50;

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    /// Folded into its order's row.
    Folded,
    /// Its order's row is at or past its version already: a redelivery.
    Repeated,
    /// Its order's row is not at the version before it: an earlier event is still to come.
    Early,
    /// It cannot be folded (an order's event whose `OrderPlaced` never came): logged, dropped.
    Dropped,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let pool = PgPool::connect(&cli.database_url)
        .await
        .context("cannot connect to the database")?;
    create_table(&pool).await?;
    let servers: Vec<&str> = cli.nats_url.split(',').map(str::trim).collect();
    let client = async_nats::connect(servers.as_slice())
        .await
        .context("cannot connect to NATS")?;
    let stream = jetstream::new(client)
        .get_stream(&cli.stream)
        .await
        .with_context(|| format!("no stream {} (is strata-projector publishing?)", cli.stream))?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &cli.consumer,
            consumer::pull::Config {
                durable_name: Some(cli.consumer.clone()),
                filter_subject: format!("{}.order.>", cli.subject_prefix),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                // One message at a time: the next is delivered once this one is acknowledged,
                // so the order of the stream holds across crashes and redeliveries.
                max_ack_pending: 1,
                deliver_policy: consumer::DeliverPolicy::All,
                ..consumer::pull::Config::default()
            },
        )
        .await
        .context("cannot create the durable consumer")?;
    let mut messages = consumer.messages().await.context("cannot pull messages")?;
    tracing::info!(consumer = cli.consumer, "consuming");
    loop {
        let message = tokio::select! {
            next = messages.next() => match next {
                Some(message) => message.context("the consumer failed")?,
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let (stream_id, version) = (
            header(&message, "Strata-Stream-Id")?,
            header(&message, "Strata-Stream-Version")?,
        );
        // Past the limit, a version that waits for one that never comes is folded anyway.
        let give_up = message
            .info()
            .is_ok_and(|info| info.delivered >= MAX_EARLY_DELIVERIES);
        let applied = apply(&pool, &message, give_up)
            .await
            .with_context(|| format!("{stream_id} version {version}"))?;
        tracing::debug!(stream_id, version, ?applied, "message");
        match applied {
            // Acknowledged only after the commit, and confirmed by the server: a crash in
            // between delivers the message again, which then counts as `Repeated`.
            Applied::Folded | Applied::Repeated | Applied::Dropped => message
                .double_ack()
                .await
                .map_err(|e| anyhow::anyhow!("cannot acknowledge: {e}"))?,
            // Delivered again after a pause, by when the earlier event has been applied.
            Applied::Early => message
                .ack_with(AckKind::Nak(Some(Duration::from_millis(200))))
                .await
                .map_err(|e| anyhow::anyhow!("cannot ask for redelivery: {e}"))?,
        }
    }
}

async fn create_table(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS order_totals (
             order_id    UUID PRIMARY KEY,
             version     BIGINT NOT NULL,
             status      TEXT NOT NULL,
             total_cents BIGINT NOT NULL,
             item_count  INT NOT NULL,
             state       JSONB NOT NULL
         )",
    )
    .execute(pool)
    .await
    .context("cannot create table order_totals")?;
    Ok(())
}

fn header<'m>(message: &'m jetstream::Message, name: &str) -> anyhow::Result<&'m str> {
    message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(name))
        .map(|value| value.as_str())
        .with_context(|| format!("a message without {name}"))
}

/// Folds the message's event into its order's row, in one transaction that locks the row;
/// `give_up`: even if the row is not at the version before it.
async fn apply(
    pool: &PgPool,
    message: &jetstream::Message,
    give_up: bool,
) -> anyhow::Result<Applied> {
    let stream_id = header(message, "Strata-Stream-Id")?;
    let order_id: Uuid = stream_id
        .strip_prefix("order-")
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("not an order stream: {stream_id}"))?;
    let version: i64 = header(message, "Strata-Stream-Version")?.parse()?;
    let schema_version: u32 = header(message, "Strata-Schema-Version")?.parse()?;
    let event_type = header(message, "Strata-Event-Type")?;
    let mut tx = pool.begin().await?;
    let row: Option<(i64, serde_json::Value)> =
        sqlx::query_as("SELECT version, state FROM order_totals WHERE order_id = $1 FOR UPDATE")
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
    let (held, state) = match row {
        Some((held, state)) => (held, serde_json::from_value::<OrderState>(state)?),
        None => (0, OrderState::default()),
    };
    if version <= held {
        return Ok(Applied::Repeated);
    }
    if version != held + 1 {
        if !give_up {
            return Ok(Applied::Early);
        }
        tracing::warn!(
            stream_id,
            version,
            held,
            "the versions between never came (skipped in Strata?): folding without them"
        );
    }
    let data: serde_json::Value = serde_json::from_slice(&message.payload)?;
    let event = OrderEvent::decode_stored(event_type, schema_version, &data)?;
    let state = Order::evolve(state, &event);
    let Some(order) = state.as_ref() else {
        tracing::error!(
            stream_id,
            version,
            event_type,
            "no OrderPlaced before it: dropped"
        );
        return Ok(Applied::Dropped);
    };
    sqlx::query(
        "INSERT INTO order_totals (order_id, version, status, total_cents, item_count, state)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (order_id) DO UPDATE SET version = $2, status = $3, total_cents = $4,
             item_count = $5, state = $6",
    )
    .bind(order_id)
    .bind(version)
    .bind(order.status.as_str())
    .bind(order.total_cents)
    .bind(i32::try_from(order.items.len())?)
    .bind(serde_json::to_value(&state)?)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Applied::Folded)
}
