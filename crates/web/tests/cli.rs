//! The `strata-web` binary as an operator runs it on the embedded SQLite storage: `backup --to`
//! while the database is in use, its refusals (an existing file, PostgreSQL), and a SIGTERM
//! after which `strata.db` alone holds every acknowledged event; and what its `--help` says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::json;
use sqlx::{Connection, SqliteConnection};
use strata_adapters_sqlite::{SqliteEventStore, SqliteSettings};
use strata_ports::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use uuid::Uuid;

/// `strata-web` with `args`, nothing taken from the test's environment.
fn strata_web(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata-web"));
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env_remove("STRATA_DATA_DIR")
        .env_remove("STRATA_JWT_SECRET")
        .env_remove("ELASTICSEARCH_URL")
        .stdin(Stdio::null());
    command
}

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A migrated database in `dir` with `n` events, its pool left open (the events still in the
/// write-ahead log, as on a running server).
async fn database_with_events(dir: &Path, n: usize) -> sqlx::SqlitePool {
    let settings = SqliteSettings::at(dir.join("strata.db"));
    let pool = strata_adapters_sqlite::connect(&settings).await.unwrap();
    strata_adapters_sqlite::migrate(&pool).await.unwrap();
    let store = SqliteEventStore::new(pool.clone());
    for _ in 0..n {
        let request = AppendRequest {
            stream_id: StreamId::new("order", Uuid::now_v7()),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "Tested".into(),
                schema_version: 1,
                data: json!({}),
                metadata: Metadata::default(),
                recorded_at: time::OffsetDateTime::now_utc(),
            }],
            idempotency: None,
        };
        store.append(request).await.unwrap();
    }
    pool
}

/// The number of events in a SQLite file and the highest position.
async fn events_in(file: &Path) -> (i64, i64) {
    let url = format!("sqlite://{}?mode=ro", file.display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    let counted = sqlx::query_as("SELECT count(*), coalesce(max(global_position), 0) FROM events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    counted
}

fn wal_len(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

#[tokio::test]
async fn backup_copies_a_database_in_use_with_every_event_and_says_what_it_wrote() {
    let data = tempfile::tempdir().unwrap();
    let pool = database_with_events(data.path(), 25).await;
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("nightly/copy.db");

    let output = run(strata_web(&[
        "--data-dir",
        arg(data.path()),
        "backup",
        "--to",
        arg(&to),
    ]))
    .await;

    assert!(output.status.success(), "{}", text(&output.stderr));
    let said = text(&output.stdout);
    assert!(said.contains(arg(&to.canonicalize().unwrap())), "{said}");
    assert!(said.contains("25 events, last position 25"), "{said}");
    assert_eq!(events_in(&to).await, (25, 25));
    pool.close().await;
}

#[tokio::test]
async fn backup_refuses_to_overwrite_an_existing_file() {
    let data = tempfile::tempdir().unwrap();
    let pool = database_with_events(data.path(), 1).await;
    let to = data.path().join("exists.db");
    std::fs::write(&to, "keep me").unwrap();
    let url = format!("sqlite://{}", data.path().join("strata.db").display());

    let output = run(strata_web(&[
        "--database-url",
        &url,
        "backup",
        "--to",
        arg(&to),
    ]))
    .await;

    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("exists already"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&to).unwrap(), "keep me");
    pool.close().await;
}

#[tokio::test]
async fn backup_refuses_postgresql_and_points_at_its_own_tools() {
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("copy.db");

    let output = run(strata_web(&[
        "--database-url",
        "postgres://strata@127.0.0.1:9/strata",
        "backup",
        "--to",
        arg(&to),
    ]))
    .await;

    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(stderr.contains("PITR"), "{stderr}");
    assert!(!to.exists());
}

#[cfg(unix)]
mod sigterm {
    use std::io::{BufRead, BufReader};
    use std::time::Duration;

    use strata_web::auth::{Claims, JwtKeys};
    use strata_web::settings::DEVELOPMENT_JWT_SECRET;

    use super::*;

    fn operator_token() -> String {
        JwtKeys::new(DEVELOPMENT_JWT_SECRET.as_bytes())
            .sign(&Claims::issued_now(
                "operator-1",
                "operator",
                None,
                Duration::from_secs(600),
            ))
            .unwrap()
    }

    #[tokio::test]
    async fn after_sigterm_the_database_file_alone_holds_every_acknowledged_event() {
        let data = tempfile::tempdir().unwrap();
        let mut child = strata_web(&[
            "--dev",
            "--data-dir",
            arg(data.path()),
            "--http-addr",
            "127.0.0.1:0",
            // 200 commands as fast as one token can send them: beyond the default rate.
            "--rate-limit-commands",
            "0",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        // The log (JSON lines on a pipe) names the address; it is read to the end meanwhile, so
        // that the server never blocks on a full pipe.
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                if line.contains("listening") {
                    let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let _ = address_tx.send(parsed["address"].as_str().unwrap().to_owned());
                }
                lines.push(line);
            }
            lines
        });
        let address = address_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let client = reqwest::Client::new();
        let token = operator_token();
        let mut positions = Vec::new();
        for n in 0..200 {
            let body = json!({
                "customerId": format!("c{n}"),
                "currency": "EUR",
                "items": [{"productId": "sku-1", "quantity": 1, "unitPriceCents": 100}],
                "shippingAddress": "1 Main Street",
            });
            let answer = client
                .post(format!("http://{address}/v1/orders"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 201);
            let answer: serde_json::Value = answer.json().await.unwrap();
            positions.push(answer["position"].as_i64().unwrap());
        }
        let db = data.path().join("strata.db");
        assert!(wal_len(&db) > 0, "the latest commits are in the log");

        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();

        assert!(status.success(), "{status}");
        assert_eq!(wal_len(&db), 0, "the write-ahead log is empty or gone");
        let copy = tempfile::tempdir().unwrap();
        let file = copy.path().join("strata.db");
        std::fs::copy(&db, &file).unwrap();
        let acknowledged = i64::try_from(positions.len()).unwrap();
        let last = positions.iter().copied().max().unwrap();
        assert_eq!(events_in(&file).await, (acknowledged, last));
        let log = log.join().unwrap();
        assert!(
            log.iter()
                .any(|l| l.contains("checkpointed the write-ahead log")),
            "{log:#?}"
        );
    }
}

/// A password no output of the binary may show.
const PASSWORD: &str = "hunter2-do-not-print";

#[tokio::test]
async fn help_shows_no_secret_or_password_from_the_environment() {
    let mut command = strata_web(&["--help"]);
    command
        .env(
            "DATABASE_URL",
            format!("postgres://app:{PASSWORD}@db:5432/strata"),
        )
        .env(
            "ELASTICSEARCH_URL",
            format!("https://elastic:{PASSWORD}@es:9200"),
        )
        .env("STRATA_JWT_SECRET", format!("{PASSWORD}-0123456789abcdef"))
        .env(
            "STRATA_JWT_PREVIOUS_SECRETS",
            format!("{PASSWORD}-fedcba9876543210"),
        );

    let output = run(command).await;

    assert!(output.status.success());
    let shown = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(shown.contains("DATABASE_URL"), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");
}

#[tokio::test]
async fn a_refused_database_url_is_echoed_without_its_password() {
    let mut command = strata_web(&["migrate"]);
    command.env("DATABASE_URL", format!("mysql://app:{PASSWORD}@db/strata"));

    let output = run(command).await;

    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("mysql://app:***@db/strata"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[tokio::test]
async fn development_mode_refuses_an_address_other_than_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let refused = run({
        let mut command = strata_web(&["--dev", "--http-addr", "0.0.0.0:0"]);
        command.env("STRATA_DATA_DIR", dir.path());
        command
    });
    // A server that starts would never exit: bound the wait.
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), refused)
        .await
        .expect("strata-web exits at once");

    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[tokio::test]
async fn start_up_logs_show_no_password_of_the_search_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = strata_web(&["--dev", "--http-addr", "127.0.0.1:0"]);
    command
        .env("RUST_LOG", "info")
        .env("STRATA_DATA_DIR", dir.path())
        // Nothing listens there: the server starts anyway, searches answer 503.
        .env(
            "ELASTICSEARCH_URL",
            format!("http://elastic:{PASSWORD}@127.0.0.1:9"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let listening = line.contains("strata-web listening");
            seen.push(line);
            if listening {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(std::time::Duration::from_secs(60), lines)
        .await
        .expect("the server starts")
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();

    let log = lines.join("\n");
    assert!(log.contains("search runs on Elasticsearch"), "{log}");
    assert!(log.contains("elastic:***@127.0.0.1:9"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
}

/// The help of one flag in `--help` output: its line and the lines under it, up to the next
/// flag, with white space folded (clap may wrap long help).
fn flag_help(help: &str, flag: &str) -> String {
    let mut lines = help
        .lines()
        .skip_while(|line| !line.trim_start().starts_with(&format!("{flag} ")));
    let mut text: Vec<&str> = lines.next().into_iter().collect();
    text.extend(lines.take_while(|line| !line.trim_start().starts_with('-')));
    text.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn help_names_the_search_and_pools_of_the_default_sqlite_storage_too() {
    let output = run(strata_web(&["--help"])).await;

    assert!(output.status.success(), "{}", text(&output.stderr));
    let help = text(&output.stdout);
    // Without ELASTICSEARCH_URL the default storage searches with SQLite FTS5, not PostgreSQL.
    let search = flag_help(&help, "--elasticsearch-url");
    assert!(search.contains("SQLite FTS5"), "{search}");
    assert!(search.contains("PostgreSQL's"), "{search}");
    // The pool size applies to SQLite's pools as well as to PostgreSQL's.
    let pools = flag_help(&help, "--db-max-connections");
    assert!(pools.contains("PostgreSQL"), "{pools}");
    assert!(pools.contains("SQLite"), "{pools}");
}
