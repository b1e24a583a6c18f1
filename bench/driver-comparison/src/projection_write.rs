//! The projection write path: a batch of order-summary rows written in one transaction, as the
//! projector does after folding a batch of events (decision 0010). The adapter's statement (one
//! `INSERT … SELECT * FROM UNNEST(…) ON CONFLICT DO UPDATE`) on sqlx and on tokio-postgres,
//! against tokio-postgres's binary COPY into a staging table followed by the same upsert from it.
//! Each run writes `rows` new orders (the rebuild case), then updates every one of them once
//! (the catch-up case: a later event of an order already in the read model).

use std::collections::BTreeMap;
use std::pin::pin;
use std::time::Instant;

use anyhow::ensure;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;
use tokio_postgres::NoTls;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use crate::report::{Sample, Summary};

const COLUMNS: &str = "order_id, customer_id, status, items, item_count, total_cents, currency, \
    shipping_address, tracking_number, cancellation_reason, placed_at, updated_at, version, \
    placed_position";

/// The adapter's `ON CONFLICT` clause, verbatim.
const ON_CONFLICT: &str = "\
    ON CONFLICT (order_id) DO UPDATE SET \
        customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, items = EXCLUDED.items, \
        item_count = EXCLUDED.item_count, total_cents = EXCLUDED.total_cents, \
        currency = EXCLUDED.currency, shipping_address = EXCLUDED.shipping_address, \
        tracking_number = EXCLUDED.tracking_number, \
        cancellation_reason = EXCLUDED.cancellation_reason, placed_at = EXCLUDED.placed_at, \
        updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, \
        placed_position = EXCLUDED.placed_position \
    WHERE order_summaries.version < EXCLUDED.version";

/// The adapter's `UPSERT_ORDERS` source.
const UNNEST: &str = "\
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int8[], \
        $6::int8[], $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[], \
        $12::timestamptz[], $13::int8[], $14::int8[])";

const COLUMN_TYPES: [Type; 14] = [
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::INT8,
    Type::INT8,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Writer {
    SqlxUnnest,
    TpUnnest,
    TpBinaryCopy,
}

impl Writer {
    fn name(self) -> &'static str {
        match self {
            Self::SqlxUnnest => "sqlx-unnest",
            Self::TpUnnest => "tp-unnest",
            Self::TpBinaryCopy => "tp-binary-copy",
        }
    }
}

/// A batch as column arrays, the shape both statements take.
struct Batch {
    order_ids: Vec<Uuid>,
    customer_ids: Vec<String>,
    statuses: Vec<String>,
    items: Vec<Value>,
    item_counts: Vec<i64>,
    totals: Vec<i64>,
    currencies: Vec<String>,
    addresses: Vec<String>,
    tracking: Vec<Option<String>>,
    reasons: Vec<Option<String>>,
    placed_at: Vec<OffsetDateTime>,
    updated_at: Vec<OffsetDateTime>,
    versions: Vec<i64>,
    positions: Vec<i64>,
}

impl Batch {
    /// Orders `first..first + size`, at `version`, with the 21 lines the `append` workload gives
    /// an order.
    fn new(first: usize, size: usize, version: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        let ids = first..first + size;
        let lines: Value = (0..21)
            .map(|line| {
                json!({"productId": format!("SKU-{line}"), "quantity": 1,
                       "unitPriceCents": 1999, "lineTotalCents": 1999})
            })
            .collect();
        Self {
            order_ids: ids
                .clone()
                .map(|i| Uuid::from_u128(i as u128 + 1))
                .collect(),
            customer_ids: ids
                .clone()
                .map(|i| format!("customer-{}", i % 1000))
                .collect(),
            statuses: vec![if version == 1 { "PENDING" } else { "CONFIRMED" }.into(); size],
            items: vec![lines; size],
            item_counts: vec![21; size],
            totals: vec![21 * 1999; size],
            currencies: vec!["EUR".into(); size],
            addresses: vec!["1 Main Street, Springfield".into(); size],
            tracking: vec![None; size],
            reasons: vec![None; size],
            placed_at: vec![now; size],
            updated_at: vec![now; size],
            versions: vec![version; size],
            positions: ids.map(|i| i as i64 * 21 + 1).collect(),
        }
    }
}

enum Client {
    Sqlx(PgConnection),
    Tp {
        client: tokio_postgres::Client,
        unnest: tokio_postgres::Statement,
        from_staging: tokio_postgres::Statement,
    },
}

fn upsert() -> String {
    format!("INSERT INTO order_summaries ({COLUMNS}) {UNNEST} {ON_CONFLICT}")
}

impl Client {
    async fn connect(writer: Writer, url: &str) -> anyhow::Result<Self> {
        Ok(match writer {
            Writer::SqlxUnnest => Self::Sqlx(PgConnection::connect(url).await?),
            Writer::TpUnnest | Writer::TpBinaryCopy => {
                let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(
                        "CREATE TEMP TABLE staging (LIKE order_summaries) ON COMMIT DELETE ROWS",
                    )
                    .await?;
                let unnest = client.prepare(&upsert()).await?;
                let from_staging = client
                    .prepare(&format!(
                        "INSERT INTO order_summaries ({COLUMNS}) \
                         SELECT {COLUMNS} FROM staging {ON_CONFLICT}"
                    ))
                    .await?;
                Self::Tp {
                    client,
                    unnest,
                    from_staging,
                }
            }
        })
    }

    /// Writes `batch` in one transaction; returns the rows it changed.
    async fn write(&mut self, writer: Writer, batch: &Batch) -> anyhow::Result<u64> {
        match self {
            Self::Sqlx(connection) => {
                let mut tx = connection.begin().await?;
                let done = sqlx::query(sqlx::AssertSqlSafe(upsert()))
                    .bind(&batch.order_ids)
                    .bind(&batch.customer_ids)
                    .bind(&batch.statuses)
                    .bind(&batch.items)
                    .bind(&batch.item_counts)
                    .bind(&batch.totals)
                    .bind(&batch.currencies)
                    .bind(&batch.addresses)
                    .bind(&batch.tracking)
                    .bind(&batch.reasons)
                    .bind(&batch.placed_at)
                    .bind(&batch.updated_at)
                    .bind(&batch.versions)
                    .bind(&batch.positions)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }
            Self::Tp {
                client,
                unnest,
                from_staging,
            } => {
                let tx = client.transaction().await?;
                let done = if writer == Writer::TpUnnest {
                    tx.execute(
                        &*unnest,
                        &[
                            &batch.order_ids,
                            &batch.customer_ids,
                            &batch.statuses,
                            &batch.items,
                            &batch.item_counts,
                            &batch.totals,
                            &batch.currencies,
                            &batch.addresses,
                            &batch.tracking,
                            &batch.reasons,
                            &batch.placed_at,
                            &batch.updated_at,
                            &batch.versions,
                            &batch.positions,
                        ],
                    )
                    .await?
                } else {
                    let sink = tx
                        .copy_in(&format!("COPY staging ({COLUMNS}) FROM STDIN BINARY"))
                        .await?;
                    let mut rows = pin!(BinaryCopyInWriter::new(sink, &COLUMN_TYPES));
                    for i in 0..batch.order_ids.len() {
                        let row: [&(dyn ToSql + Sync); 14] = [
                            &batch.order_ids[i],
                            &batch.customer_ids[i],
                            &batch.statuses[i],
                            &batch.items[i],
                            &batch.item_counts[i],
                            &batch.totals[i],
                            &batch.currencies[i],
                            &batch.addresses[i],
                            &batch.tracking[i],
                            &batch.reasons[i],
                            &batch.placed_at[i],
                            &batch.updated_at[i],
                            &batch.versions[i],
                            &batch.positions[i],
                        ];
                        rows.as_mut().write(&row).await?;
                    }
                    rows.finish().await?;
                    tx.execute(&*from_staging, &[]).await?
                };
                tx.commit().await?;
                Ok(done)
            }
        }
    }
}

/// Each writer with each batch size, interleaved, `repeats` times, each run on a fresh database
/// `name` at `url`: `rows` inserted, then the same rows updated.
pub async fn run(
    admin: &mut PgConnection,
    name: &str,
    url: &str,
    sizes: &[usize],
    rows: usize,
    repeats: usize,
) -> anyhow::Result<()> {
    ensure!(
        sizes.iter().all(|&s| s >= 1),
        "batch sizes must be at least 1"
    );
    println!("rows per run: {rows} inserted, then updated; repeats: {repeats}");
    println!("\nrun  writer           batch  phase    rows/s  p50 µs/batch  p99 µs/batch");
    let mut samples: BTreeMap<(usize, &str, Writer), Vec<Sample>> = BTreeMap::new();
    for repeat in 1..=repeats {
        for &size in sizes {
            for writer in [Writer::SqlxUnnest, Writer::TpUnnest, Writer::TpBinaryCopy] {
                crate::fresh_database(admin, name, url).await?;
                let mut client = Client::connect(writer, url).await?;
                for (phase, version) in [("insert", 1), ("update", 2)] {
                    let mut latencies = Vec::new();
                    let started = Instant::now();
                    for first in (0..rows).step_by(size) {
                        let batch = Batch::new(first, size.min(rows - first), version);
                        let sent = Instant::now();
                        let changed = client.write(writer, &batch).await?;
                        latencies.push(u64::try_from(sent.elapsed().as_micros())?);
                        ensure!(
                            changed == batch.order_ids.len() as u64,
                            "{} changed {changed} of {} rows",
                            writer.name(),
                            batch.order_ids.len()
                        );
                    }
                    let sample = Sample::new(
                        rows as f64 / started.elapsed().as_secs_f64(),
                        &mut latencies,
                    );
                    println!(
                        "{repeat:>3}  {:<15}  {size:>5}  {phase:<6}  {:>7.0}  {:>12}  {:>12}",
                        writer.name(),
                        sample.per_second,
                        sample.p50_us,
                        sample.p99_us
                    );
                    samples
                        .entry((size, phase, writer))
                        .or_default()
                        .push(sample);
                }
            }
        }
    }
    println!(
        "\n| batch | phase | writer | rows/s median | min–max | vs sqlx-unnest | p50 µs/batch |"
    );
    println!("|---:|---|---|---:|---:|---:|---:|");
    for (&(size, phase, writer), runs) in &samples {
        let here = Summary::of(runs);
        let baseline = samples
            .get(&(size, phase, Writer::SqlxUnnest))
            .map(|s| Summary::of(s).per_second);
        println!(
            "| {size} | {phase} | {} | {:.0} | {:.0}–{:.0} | {} | {:.0} |",
            writer.name(),
            here.per_second,
            here.low,
            here.high,
            baseline.map_or("".to_owned(), |b| format!("{:.2}×", here.per_second / b)),
            here.p50_us,
        );
    }
    Ok(())
}
