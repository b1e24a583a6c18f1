//! The group-commit statement of the adapter (migration 0005, decision 0010) timed through each
//! driver on one connection, as the adapter's single writer sends it: one call after another,
//! each a group of G one-event appends to G streams with exact expected versions. This is the
//! statement that holds the log's head lock, so what a driver saves on it is what a group
//! saves. `SELECT 1` on the same connections gives the bare round trip of each driver.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, ensure};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::report::{Sample, Summary};

/// The adapter's call, verbatim.
const APPEND_GROUP: &str = "\
    SELECT accepted, versions, positions \
    FROM strata_append_group($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Driver {
    Sqlx,
    TokioPostgres,
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlx => "sqlx",
            Self::TokioPostgres => "tokio-postgres",
        }
    }
}

/// The statement's arguments for one group: stream i is at version `round` before it.
struct Group {
    streams: Vec<String>,
    kinds: Vec<i16>,
    versions: Vec<i64>,
    counts: Vec<i32>,
    event_ids: Vec<Uuid>,
    event_types: Vec<String>,
    schema_versions: Vec<i32>,
    /// JSON text, as the adapter binds it since migration 0006 (`jsonb[]` before).
    data: Vec<String>,
    metadata: Vec<String>,
    recorded_at: Vec<OffsetDateTime>,
}

impl Group {
    fn new(driver: Driver, size: usize, round: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            streams: (0..size)
                .map(|i| format!("order-{}-{size}-{i}", driver.name()))
                .collect(),
            // 1: no stream yet; 3: exactly `round`.
            kinds: vec![if round == 0 { 1 } else { 3 }; size],
            versions: vec![round; size],
            counts: vec![1; size],
            event_ids: (0..size).map(|_| Uuid::new_v4()).collect(),
            event_types: vec!["ItemAdded".into(); size],
            schema_versions: vec![1; size],
            // The size of the `append` workload's events.
            data: (0..size)
                .map(|i| json!({"sku": format!("SKU-{i}"), "quantity": 1, "unit_price": {"cents": 1999, "currency": "EUR"}}).to_string())
                .collect(),
            metadata: (0..size)
                .map(|_| json!({"correlationId": Uuid::new_v4(), "userId": "bench"}).to_string())
                .collect(),
            recorded_at: vec![now; size],
        }
    }

    fn check(&self, accepted: &[bool], versions: &[i64], round: i64) -> anyhow::Result<()> {
        ensure!(
            accepted.len() == self.streams.len() && accepted.iter().all(|&a| a),
            "an append of the group was refused"
        );
        ensure!(
            versions.iter().all(|&v| v == round + 1),
            "a stream is not at version {}",
            round + 1
        );
        Ok(())
    }
}

/// One connection of either driver, with the statement prepared.
enum Client {
    Sqlx(PgConnection),
    TokioPostgres {
        client: tokio_postgres::Client,
        append: tokio_postgres::Statement,
        select_one: tokio_postgres::Statement,
    },
}

impl Client {
    async fn connect(driver: Driver, url: &str) -> anyhow::Result<Self> {
        Ok(match driver {
            Driver::Sqlx => Self::Sqlx(PgConnection::connect(url).await?),
            Driver::TokioPostgres => {
                let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
                tokio::spawn(connection);
                let append = client.prepare(APPEND_GROUP).await?;
                let select_one = client.prepare("SELECT 1").await?;
                Self::TokioPostgres {
                    client,
                    append,
                    select_one,
                }
            }
        })
    }

    async fn append(&mut self, group: &Group) -> anyhow::Result<(Vec<bool>, Vec<i64>)> {
        Ok(match self {
            Self::Sqlx(connection) => {
                let (accepted, versions, _positions): (Vec<bool>, Vec<i64>, Vec<i64>) =
                    sqlx::query_as(APPEND_GROUP)
                        .bind(&group.streams)
                        .bind(&group.kinds)
                        .bind(&group.versions)
                        .bind(&group.counts)
                        .bind(&group.event_ids)
                        .bind(&group.event_types)
                        .bind(&group.schema_versions)
                        .bind(&group.data)
                        .bind(&group.metadata)
                        .bind(&group.recorded_at)
                        .fetch_one(&mut *connection)
                        .await?;
                (accepted, versions)
            }
            Self::TokioPostgres { client, append, .. } => {
                let row = client
                    .query_one(
                        &*append,
                        &[
                            &group.streams,
                            &group.kinds,
                            &group.versions,
                            &group.counts,
                            &group.event_ids,
                            &group.event_types,
                            &group.schema_versions,
                            &group.data,
                            &group.metadata,
                            &group.recorded_at,
                        ],
                    )
                    .await?;
                (row.try_get(0)?, row.try_get(1)?)
            }
        })
    }

    async fn select_one(&mut self) -> anyhow::Result<()> {
        let one: i32 = match self {
            Self::Sqlx(connection) => {
                sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut *connection)
                    .await?
            }
            Self::TokioPostgres {
                client, select_one, ..
            } => client.query_one(&*select_one, &[]).await?.try_get(0)?,
        };
        ensure!(one == 1, "SELECT 1 answered {one}");
        Ok(())
    }
}

/// What is timed: `SELECT 1`, or the group statement with groups of this many appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Call {
    SelectOne,
    Group(usize),
}

/// Times `calls` calls of each group size (and `SELECT 1`) on each driver, interleaved, `repeats`
/// times, each run on a fresh database `name` at `url`, and prints the runs and a summary.
pub async fn run(
    admin: &mut PgConnection,
    name: &str,
    url: &str,
    sizes: &[usize],
    calls: usize,
    repeats: usize,
) -> anyhow::Result<()> {
    ensure!(
        sizes.iter().all(|&s| s >= 1),
        "group sizes must be at least 1"
    );
    let warm_up = 50;
    let mut configurations = vec![Call::SelectOne];
    configurations.extend(sizes.iter().map(|&s| Call::Group(s)));
    println!("calls per run: {calls} (after {warm_up} untimed), repeats: {repeats}");
    println!("\nrun  driver           call        calls/s  appends/s  p50 µs  p99 µs");
    let mut samples: BTreeMap<(Call, Driver), Vec<Sample>> = BTreeMap::new();
    for repeat in 1..=repeats {
        for &call in &configurations {
            for driver in [Driver::Sqlx, Driver::TokioPostgres] {
                crate::fresh_database(admin, name, url).await?;
                let mut client = Client::connect(driver, url)
                    .await
                    .with_context(|| format!("connecting with {}", driver.name()))?;
                let mut latencies = Vec::with_capacity(calls);
                let mut started = Instant::now();
                for n in 0..warm_up + calls {
                    if n == warm_up {
                        started = Instant::now();
                    }
                    let round = i64::try_from(n)?;
                    let group = match call {
                        Call::SelectOne => None,
                        Call::Group(size) => Some(Group::new(driver, size, round)),
                    };
                    let sent = Instant::now();
                    let answer = match &group {
                        None => client.select_one().await.map(|()| None)?,
                        Some(group) => Some(client.append(group).await?),
                    };
                    latencies.push(u64::try_from(sent.elapsed().as_micros())?);
                    if let (Some(group), Some((accepted, versions))) = (&group, answer) {
                        group.check(&accepted, &versions, round)?;
                    }
                }
                let seconds = started.elapsed().as_secs_f64();
                latencies.drain(..warm_up);
                let sample = Sample::new(calls as f64 / seconds, &mut latencies);
                let appends = match call {
                    Call::SelectOne => 0.0,
                    Call::Group(size) => sample.per_second * size as f64,
                };
                println!(
                    "{repeat:>3}  {:<15}  {:<10}  {:>7.0}  {appends:>9.0}  {:>6}  {:>6}",
                    driver.name(),
                    call_name(call),
                    sample.per_second,
                    sample.p50_us,
                    sample.p99_us
                );
                samples.entry((call, driver)).or_default().push(sample);
            }
        }
    }
    println!(
        "\n| call | driver | calls/s median | min–max | appends/s | p50 µs | p99 µs | p50 vs sqlx |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (&(call, driver), runs) in &samples {
        let here = Summary::of(runs);
        let sqlx_p50 = samples
            .get(&(call, Driver::Sqlx))
            .map(|s| Summary::of(s).p50_us);
        let appends = match call {
            Call::SelectOne => "".to_owned(),
            Call::Group(size) => format!("{:.0}", here.per_second * size as f64),
        };
        println!(
            "| {} | {} | {:.0} | {:.0}–{:.0} | {appends} | {:.0} | {:.0} | {} |",
            call_name(call),
            driver.name(),
            here.per_second,
            here.low,
            here.high,
            here.p50_us,
            here.p99_us,
            sqlx_p50.map_or("".to_owned(), |b| format!("{:+.0} µs", here.p50_us - b)),
        );
    }
    Ok(())
}

fn call_name(call: Call) -> String {
    match call {
        Call::SelectOne => "SELECT 1".to_owned(),
        Call::Group(size) => format!("group of {size}"),
    }
}
