//! The read of a whole stream, as a load without a snapshot does it: the adapter's
//! `read_stream` and `visit_stream`, against the same queries through tokio-postgres and
//! variants that leave the payloads as text or pack the rows on the server. What it shows is the
//! drivers' per-row cost on the read path, which the `load-1000` workload is bound by (decisions
//! 0011 and 0012). `READERS=name,name` runs only those readers.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Instant;

use anyhow::ensure;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sqlx::PgConnection;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{
    AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, PayloadRef, PayloadVisitor,
    RecordedEvent, StreamId,
};
use time::OffsetDateTime;
use tokio_postgres::NoTls;
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::report::{Sample, Summary};

/// The adapter's `READ_STREAM`, verbatim.
const READ_STREAM: &str = "\
    SELECT global_position, event_id, stream_id, stream_version, event_type, schema_version, \
           data, metadata, recorded_at \
    FROM events WHERE stream_id = $1 AND stream_version > $2 \
    ORDER BY stream_version";

/// The adapter's `READ_STREAM_PAYLOADS`, verbatim.
const READ_PAYLOADS: &str = "\
    SELECT global_position, stream_version, event_type, schema_version, data \
    FROM events WHERE stream_id = $1 AND stream_version > $2 \
    ORDER BY stream_version";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reader {
    SqlxAdapter,
    TokioPostgres,
    /// tokio-postgres, every column decoded but the payloads left as borrowed JSON text: the
    /// floor of the driver's read, without building `Value`s.
    TokioPostgresRaw,
    /// sqlx, the same: payloads left as JSON text.
    SqlxRaw,
    /// The adapter's `visit_stream`: only what a fold needs, each row handed on borrowed as it
    /// arrives (decision 0012). (The first run of 2026-12-04 in `results/` timed the same
    /// five-column query collected into rows, as `sqlx-lean-raw`; the second, as
    /// `sqlx-adapter-payloads`, the adapter's `read_stream_payloads`, which collected them.)
    SqlxAdapterVisit,
    /// sqlx, the same columns packed by the server into one JSON array text, one row in all.
    SqlxPacked,
    /// The five columns through `COPY (…) TO STDOUT (FORMAT binary)` (one sqlx stream, no
    /// `PgRow`), the literals written into the statement.
    SqlxCopyBinary,
    /// tokio-postgres, the five columns, payloads borrowed.
    TokioPostgresPayloads,
}

impl Reader {
    fn name(self) -> &'static str {
        match self {
            Self::SqlxAdapter => "sqlx-adapter",
            Self::TokioPostgres => "tokio-postgres",
            Self::TokioPostgresRaw => "tp-raw-payloads",
            Self::SqlxRaw => "sqlx-raw-payloads",
            Self::SqlxAdapterVisit => "sqlx-adapter-visit",
            Self::SqlxPacked => "sqlx-packed",
            Self::SqlxCopyBinary => "sqlx-copy-binary",
            Self::TokioPostgresPayloads => "tp-payloads",
        }
    }
}

/// Counts the events a visit hands on.
struct Count(usize);

impl PayloadVisitor for Count {
    fn visit(&mut self, _: PayloadRef<'_>) -> ControlFlow<()> {
        self.0 += 1;
        ControlFlow::Continue(())
    }
}

/// The events of the `load-1000` workload's order: `ItemAdded`s of one line each.
fn events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|n| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "ItemAdded".into(),
            schema_version: 1,
            data: json!({"productId": format!("sku-{}", n % 20), "quantity": 1,
                         "unitPriceCents": 100 + n % 20}),
            metadata: Metadata::default(),
            recorded_at: OffsetDateTime::now_utc(),
        })
        .collect()
}

/// The tokio-postgres read, decoded into the port's envelope as the adapter does.
async fn read_with_tokio_postgres(
    client: &tokio_postgres::Client,
    statement: &tokio_postgres::Statement,
    stream_id: &StreamId,
) -> anyhow::Result<Vec<RecordedEvent>> {
    let rows = client
        .query(statement, &[&stream_id.as_str(), &0_i64])
        .await?;
    rows.iter()
        .map(|row| {
            let metadata: serde_json::value::Value = row.try_get(7)?;
            Ok(RecordedEvent {
                global_position: u64::try_from(row.try_get::<_, i64>(0)?)?,
                event_id: row.try_get(1)?,
                stream_id: stream_id.clone(),
                stream_version: u64::try_from(row.try_get::<_, i64>(3)?)?,
                event_type: row.try_get(4)?,
                schema_version: u32::try_from(row.try_get::<_, i32>(5)?)?,
                data: row.try_get::<_, Value>(6)?,
                metadata: serde_json::from_value(metadata)?,
                recorded_at: row.try_get(8)?,
            })
        })
        .collect()
}

/// Reads a stream of `length` events `reads` times with each reader, interleaved, `repeats`
/// times, on a fresh database `name` at `url` per run.
pub async fn run(
    admin: &mut PgConnection,
    name: &str,
    url: &str,
    length: usize,
    reads: usize,
    repeats: usize,
) -> anyhow::Result<()> {
    ensure!(length >= 1, "the stream needs at least one event");
    println!(
        "stream of {length} events, {reads} reads per run (after 20 untimed), repeats: {repeats}"
    );
    println!("\nrun  reader           reads/s  p50 µs  p99 µs");
    let mut samples: BTreeMap<Reader, Vec<Sample>> = BTreeMap::new();
    for repeat in 1..=repeats {
        for reader in [
            Reader::SqlxAdapter,
            Reader::TokioPostgres,
            Reader::TokioPostgresRaw,
            Reader::SqlxRaw,
            Reader::SqlxAdapterVisit,
            Reader::SqlxPacked,
            Reader::SqlxCopyBinary,
            Reader::TokioPostgresPayloads,
        ]
        .into_iter()
        .filter(|r| std::env::var("READERS").map_or(true, |v| v.split(',').any(|n| n == r.name())))
        {
            crate::fresh_database(admin, name, url).await?;
            // As the adapter's pool: no ping before every use.
            let pool = sqlx::postgres::PgPoolOptions::new()
                .test_before_acquire(false)
                .connect(url)
                .await?;
            let store = PgEventStore::new(pool.clone());
            let stream_id = StreamId::new("order", Uuid::now_v7());
            let mut version = 0;
            for chunk in events(length).chunks(500) {
                store
                    .append(AppendRequest {
                        stream_id: stream_id.clone(),
                        expected: ExpectedVersion::Exact(version),
                        events: chunk.to_vec(),
                        idempotency: None,
                    })
                    .await?;
                version += chunk.len() as u64;
            }
            let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
            tokio::spawn(connection);
            let statement = client.prepare(READ_STREAM).await?;
            let payloads_statement = client.prepare(READ_PAYLOADS).await?;
            let mut latencies = Vec::with_capacity(reads);
            let mut started = Instant::now();
            for n in 0..20 + reads {
                if n == 20 {
                    started = Instant::now();
                }
                let sent = Instant::now();
                let read = match reader {
                    Reader::SqlxAdapter => store.read_stream(&stream_id, 0).await?.len(),
                    Reader::SqlxAdapterVisit => {
                        let mut count = Count(0);
                        store.visit_stream(&stream_id, 0, &mut count).await?;
                        count.0
                    }
                    Reader::TokioPostgres => {
                        read_with_tokio_postgres(&client, &statement, &stream_id)
                            .await?
                            .len()
                    }
                    Reader::SqlxRaw => {
                        type RawRow = (
                            i64,
                            Uuid,
                            String,
                            i64,
                            String,
                            i32,
                            sqlx::types::Json<Box<RawValue>>,
                            sqlx::types::Json<Box<RawValue>>,
                            OffsetDateTime,
                        );
                        let rows: Vec<RawRow> = sqlx::query_as(READ_STREAM)
                            .bind(stream_id.as_str())
                            .bind(0_i64)
                            .fetch_all(&pool)
                            .await?;
                        rows.len()
                    }
                    Reader::SqlxPacked => {
                        let packed: Option<String> = sqlx::query_scalar(
                            "SELECT '[' || string_agg('[' || stream_version || ',' || \
                             global_position || ',' || to_json(event_type)::text || ',' || \
                             schema_version || ',' || data::text || ']', ',' \
                             ORDER BY stream_version) || ']' \
                             FROM events WHERE stream_id = $1 AND stream_version > $2",
                        )
                        .bind(stream_id.as_str())
                        .bind(0_i64)
                        .fetch_one(&pool)
                        .await?;
                        let rows: Vec<(u64, u64, String, u32, Box<RawValue>)> =
                            serde_json::from_str(packed.as_deref().unwrap_or("[]"))?;
                        rows.len()
                    }
                    Reader::SqlxCopyBinary => {
                        use futures_util::TryStreamExt;
                        let mut conn = pool.acquire().await?;
                        // COPY takes no parameters. Safe here only because this crate made the
                        // stream id (`order-<uuid>`); the adapter would have to quote it.
                        let sql = format!(
                            "COPY (SELECT global_position, stream_version, event_type, \
                             schema_version, data FROM events WHERE stream_id = '{}' AND \
                             stream_version > 0 ORDER BY stream_version) TO STDOUT (FORMAT binary)",
                            stream_id.as_str()
                        );
                        let mut copy = conn.copy_out_raw(&sql).await?;
                        let mut rows = 0;
                        let mut bytes = 0;
                        let mut first = true;
                        while let Some(chunk) = copy.try_next().await? {
                            let mut at: &[u8] = &chunk;
                            if first {
                                // signature (11) + flags (4) + extension length (4)
                                at = &at[19..];
                                first = false;
                            }
                            let fields = i16::from_be_bytes([at[0], at[1]]);
                            if fields == -1 {
                                continue;
                            }
                            at = &at[2..];
                            for _ in 0..fields {
                                let len = i32::from_be_bytes([at[0], at[1], at[2], at[3]]);
                                at = &at[4..];
                                let len = usize::try_from(len)?;
                                bytes += len;
                                at = &at[len..];
                            }
                            rows += 1;
                        }
                        ensure!(bytes > 0, "no payloads");
                        rows
                    }
                    Reader::TokioPostgresPayloads => {
                        let rows = client
                            .query(&payloads_statement, &[&stream_id.as_str(), &0_i64])
                            .await?;
                        let mut bytes = 0;
                        for row in &rows {
                            let _: (i64, i64, &str, i32) = (
                                row.try_get(0)?,
                                row.try_get(1)?,
                                row.try_get(2)?,
                                row.try_get(3)?,
                            );
                            let data: Json<&RawValue> = row.try_get(4)?;
                            bytes += data.0.get().len();
                        }
                        ensure!(bytes > 0, "no payloads");
                        rows.len()
                    }
                    Reader::TokioPostgresRaw => {
                        let rows = client
                            .query(&statement, &[&stream_id.as_str(), &0_i64])
                            .await?;
                        let mut bytes = 0;
                        for row in &rows {
                            let _: (i64, Uuid, &str, i64, &str, i32, OffsetDateTime) = (
                                row.try_get(0)?,
                                row.try_get(1)?,
                                row.try_get(2)?,
                                row.try_get(3)?,
                                row.try_get(4)?,
                                row.try_get(5)?,
                                row.try_get(8)?,
                            );
                            let data: Json<&RawValue> = row.try_get(6)?;
                            let metadata: Json<&RawValue> = row.try_get(7)?;
                            bytes += data.0.get().len() + metadata.0.get().len();
                        }
                        ensure!(bytes > 0, "no payloads");
                        rows.len()
                    }
                };
                latencies.push(u64::try_from(sent.elapsed().as_micros())?);
                ensure!(read == length, "read {read} events");
            }
            let seconds = started.elapsed().as_secs_f64();
            latencies.drain(..20);
            let sample = Sample::new(reads as f64 / seconds, &mut latencies);
            println!(
                "{repeat:>3}  {:<15}  {:>7.0}  {:>6}  {:>6}",
                reader.name(),
                sample.per_second,
                sample.p50_us,
                sample.p99_us
            );
            samples.entry(reader).or_default().push(sample);
            pool.close().await;
        }
    }
    println!("\n| reader | reads/s median | min–max | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|---:|");
    for (reader, runs) in &samples {
        let here = Summary::of(runs);
        println!(
            "| {} | {:.0} | {:.0}–{:.0} | {:.0} | {:.0} |",
            reader.name(),
            here.per_second,
            here.low,
            here.high,
            here.p50_us,
            here.p99_us
        );
    }
    Ok(())
}
