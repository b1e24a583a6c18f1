//! The `strata-projector` commands an operator types, run as processes against a real database:
//! `status`, `dlq list`, `rebuild` (plain progress lines when not on a terminal; the search
//! projection on PostgreSQL or on the Elasticsearch of `--elasticsearch-url`), `run` woken by
//! NOTIFY long before its poll interval, and its `/metrics`.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sqlx::PgPool;
use strata_adapters_sqlite::{SqliteEventStore, SqliteSettings};
use support::{Instance, place_order, place_order_in, url_of};

async fn projector(url: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata-projector"));
    command
        .arg("--database-url")
        .arg(url)
        .args(args)
        .env("RUST_LOG", "warn")
        // PostgreSQL search unless a test names a cluster.
        .env_remove("ELASTICSEARCH_URL")
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn status_dlq_and_rebuild_answer_an_operator(pool: PgPool) {
    let url = url_of(&pool);
    for _ in 0..3 {
        place_order(&pool).await;
    }

    let status = projector(&url, &["status"]).await;
    assert!(status.status.success(), "{}", text(&status.stderr));
    let table = text(&status.stdout);
    assert!(table.starts_with("PROJECTION"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("orders") && l.contains(" 3 ") && l.ends_with("never run")),
        "{table}"
    );

    let json = projector(&url, &["status", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["projections"][0]["name"], "orders");
    assert_eq!(json["projections"][0]["lagEvents"], 3);

    let dlq = projector(&url, &["dlq", "list"]).await;
    assert_eq!(text(&dlq.stdout), "no parked events\n");

    let rebuild = projector(&url, &["rebuild", "orders"]).await;
    assert!(rebuild.status.success(), "{}", text(&rebuild.stderr));
    let progress = text(&rebuild.stderr);
    assert!(
        progress.contains("rebuilding orders: position 3/3") && progress.contains("swapped in"),
        "{progress}"
    );
    let summaries: i64 = sqlx::query_scalar("SELECT count(*) FROM order_summaries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(summaries, 3);
    let search = projector(&url, &["rebuild", "search"]).await;
    assert!(search.status.success(), "{}", text(&search.stderr));
    assert!(
        text(&search.stderr).contains("swapped in"),
        "{}",
        text(&search.stderr)
    );
    let documents: i64 = sqlx::query_scalar("SELECT count(*) FROM order_search")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(documents, 3);

    let unknown = projector(&url, &["rebuild", "nope"]).await;
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr)
            .contains("no projection named \"nope\" (known: orders, accounts, search, publisher)"),
        "{}",
        text(&unknown.stderr)
    );
    let missing = projector(&url, &["dlq", "retry", "orders", "42"]).await;
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no failed event at position 42"));
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_running_projector_is_woken_by_a_commit_and_serves_metrics(pool: PgPool) {
    let url = url_of(&pool);
    // A poll interval of ten minutes: only the NOTIFY of the append can wake it in time.
    let running = Instance::start(
        &url,
        &["--poll-ms", "600000", "--metrics-addr", "127.0.0.1:0"],
    );
    running.wait_for_log("lease taken", 3).await;
    running.wait_for_log("serving /metrics", 1).await;
    let addr = running
        .log
        .lock()
        .unwrap()
        .iter()
        .find_map(|line| line.split("addr=").nth(1).map(|a| a.trim().to_owned()))
        .unwrap();
    // The three workers have run their first (empty) batch and now wait for a wake-up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM projection_checkpoints WHERE state = 'running'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if running == 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let position = place_order(&pool).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reached: i64 = sqlx::query_scalar(
            "SELECT position FROM projection_checkpoints WHERE projection = 'orders'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if reached >= i64::try_from(position).unwrap() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not woken by the append's notification"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        body
    })
    .await
    .unwrap();
    drop(running);

    assert!(metrics.starts_with("HTTP/1.0 200"), "{metrics}");
    for expected in [
        "strata_projector_events_total{projection=\"orders\"} 1",
        "strata_projection_lag_events{projection=\"orders\"} 0",
        "strata_projection_dead_letters{projection=\"accounts\"} 0",
        "strata_projector_batch_seconds",
        "strata_oldest_open_transaction_seconds",
        "# TYPE strata_projector_batch_seconds histogram",
        "strata_projector_batch_seconds_bucket{projection=\"orders\",le=\"0.005\"}",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_start_time_seconds gauge",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in {metrics}"
        );
    }
    for family in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "no # HELP for {name}: {metrics}"
        );
    }
}

#[tokio::test]
async fn on_a_sqlite_file_status_rebuild_and_dlq_answer_as_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let settings = SqliteSettings::at(dir.path().join("strata.db"));
    let pool = strata_adapters_sqlite::connect(&settings).await.unwrap();
    strata_adapters_sqlite::migrate(&pool).await.unwrap();
    let events = SqliteEventStore::new(pool.clone());
    for _ in 0..3 {
        place_order_in(&events).await;
    }
    let url = format!("sqlite://{}", settings.path.display());

    let status = projector(&url, &["status", "--json"]).await;
    assert!(status.status.success(), "{}", text(&status.stderr));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["projections"][0]["name"], "orders");
    assert_eq!(json["projections"][0]["lagEvents"], 3);
    let rebuild = projector(&url, &["rebuild", "orders"]).await;
    assert!(rebuild.status.success(), "{}", text(&rebuild.stderr));
    assert!(text(&rebuild.stderr).contains("swapped in"));
    let search = projector(&url, &["rebuild", "search"]).await;
    assert!(search.status.success(), "{}", text(&search.stderr));
    let dlq = projector(&url, &["dlq", "list"]).await;
    assert_eq!(text(&dlq.stdout), "no parked events\n");
    let follow = projector(&url, &["follow", "--until-caught-up"]).await;
    assert!(follow.status.success(), "{}", text(&follow.stderr));

    let summaries: i64 = sqlx::query_scalar("SELECT count(*) FROM order_summaries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(summaries, 3);
    let search_pool = strata_adapters_sqlite::connect_search(&settings)
        .await
        .unwrap();
    let documents: i64 = sqlx::query_scalar("SELECT count(*) FROM order_search")
        .fetch_one(&search_pool)
        .await
        .unwrap();
    assert_eq!(documents, 3);
    assert_eq!(text(&follow.stdout).lines().count(), 3);
}

#[tokio::test]
async fn a_projector_stopped_by_sigterm_leaves_its_sqlite_files_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let settings = SqliteSettings::at(dir.path().join("strata.db"));
    // Kept open while the projector runs and stops, as a server's would be: closing the
    // projector's connections then checkpoints nothing by itself.
    let pool = strata_adapters_sqlite::connect(&settings).await.unwrap();
    strata_adapters_sqlite::migrate(&pool).await.unwrap();
    let events = SqliteEventStore::new(pool.clone());
    for _ in 0..50 {
        place_order_in(&events).await;
    }
    let url = format!("sqlite://{}", settings.path.display());
    let mut running = Instance::start(&url, &["--poll-ms", "20"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let projected: i64 = sqlx::query_scalar(
            "SELECT min(position) FROM projection_checkpoints WHERE state = 'running'",
        )
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
        if projected == 50 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never projected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The test's own connections closed first: a reader of this process could keep the
    // projector's checkpoint from truncating the log, which is not what is tested here.
    pool.close().await;

    let sent = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while running.child.try_wait().unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for file in [settings.path.clone(), settings.search_path()] {
        let mut wal = file.into_os_string();
        wal.push("-wal");
        let len = std::fs::metadata(&wal).map_or(0, |m| m.len());
        assert_eq!(len, 0, "{wal:?} is empty or gone");
    }
    running
        .wait_for_log("checkpointed the write-ahead log", 2)
        .await;
    drop(running);
}

#[tokio::test]
async fn commands_other_than_run_refuse_a_missing_sqlite_file_and_leave_none_behind() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nothing-here").join("strata.db");
    let url = format!("sqlite://{}", file.display());

    let output = projector(&url, &["status"]).await;

    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("no SQLite database at"),
        "{}",
        text(&output.stderr)
    );
    assert!(!file.exists());
}

#[sqlx::test(migrations = false)]
async fn commands_other_than_run_refuse_a_database_without_the_schema(pool: PgPool) {
    let url = url_of(&pool);
    for args in [
        &["status"][..],
        &["dlq", "list"][..],
        &["rebuild", "orders"][..],
    ] {
        let output = projector(&url, args).await;
        assert!(!output.status.success(), "{args:?}");
        assert!(
            text(&output.stderr).contains("run `strata-web migrate`"),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn elasticsearch_url_puts_the_search_projection_on_elasticsearch(pool: PgPool) {
    let Some(emulator) = strata_adapters_elastic::testkit::Emulator::start(
        "elasticsearch_url_puts_the_search_projection_on_elasticsearch",
    ) else {
        return;
    };
    let url = url_of(&pool);
    for _ in 0..3 {
        place_order(&pool).await;
    }

    let rebuild = projector(
        &url,
        &[
            "--elasticsearch-url",
            &emulator.url,
            "--search-index-prefix",
            "cli-",
            "rebuild",
            "search",
        ],
    )
    .await;

    assert!(rebuild.status.success(), "{}", text(&rebuild.stderr));
    let count: serde_json::Value = reqwest::get(format!("{}/cli-orders/_count", emulator.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count["count"], 3, "{count}");
    let in_postgres: i64 = sqlx::query_scalar("SELECT count(*) FROM order_search")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(in_postgres, 0);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn run_with_elasticsearch_url_creates_the_index_and_keeps_it_up_to_date(pool: PgPool) {
    let Some(emulator) = strata_adapters_elastic::testkit::Emulator::start(
        "run_with_elasticsearch_url_creates_the_index_and_keeps_it_up_to_date",
    ) else {
        return;
    };
    let url = url_of(&pool);
    let running = Instance::start(
        &url,
        &[
            "--poll-ms",
            "50",
            "--elasticsearch-url",
            &emulator.url,
            "--search-index-prefix",
            "run-",
        ],
    );
    running.wait_for_log("lease taken", 3).await;
    // The alias exists before any order: created on start.
    let alias = reqwest::get(format!("{}/_alias/run-orders", emulator.url))
        .await
        .unwrap();
    assert_eq!(alias.status().as_u16(), 200);

    place_order(&pool).await;
    place_order(&pool).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let count: serde_json::Value = reqwest::get(format!("{}/run-orders/_count", emulator.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if count["count"] == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not indexed: {count}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(running);
}

#[test]
fn help_shows_no_password_from_the_environment() {
    let password = "hunter2-do-not-print";
    let output = Command::new(env!("CARGO_BIN_EXE_strata-projector"))
        .arg("--help")
        .env(
            "DATABASE_URL",
            format!("postgres://app:{password}@db:5432/strata"),
        )
        .env(
            "ELASTICSEARCH_URL",
            format!("https://elastic:{password}@es:9200"),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();

    assert!(output.status.success());
    let shown = text(&output.stdout);
    assert!(shown.contains("DATABASE_URL"), "{shown}");
    assert!(!shown.contains(password), "{shown}");
}
