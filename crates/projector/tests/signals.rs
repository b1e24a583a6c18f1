//! The `strata-projector` binary against a real PostgreSQL: SIGTERM (what service managers and
//! container runtimes send) and SIGINT (Ctrl-C) stop `follow` cleanly, with a success status.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use support::url_of;
use uuid::Uuid;

async fn append_one(pool: PgPool) {
    let request = AppendRequest {
        stream_id: StreamId::new("order", Uuid::now_v7()),
        expected: ExpectedVersion::Any,
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "Tested".to_owned(),
            schema_version: 1,
            data: json!({}),
            metadata: Metadata::default(),
            recorded_at: time::OffsetDateTime::now_utc(),
        }],
        idempotency: None,
    };
    PgEventStore::new(pool).append(request).await.unwrap();
}

/// Starts a live follower and returns once it has printed the first event, so its signal
/// handlers are in place.
async fn spawn_follower(url: String) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata-projector"))
        .args(["--database-url", &url, "follow", "--poll-ms", "20"])
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("strata-projector starts");
    let stdout = child.stdout.take().unwrap();
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(30), first_line).await;
    if !matches!(line, Ok(Ok(Ok(ref text))) if text.contains("\"globalPosition\":1")) {
        let _ = child.kill();
        panic!("the follower printed no event: {line:?}");
    }
    child
}

async fn send_and_wait(mut child: Child, signal: &str) -> ExitStatus {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal} failed");
    for _ in 0..1000 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill();
    panic!("the follower did not stop within 10 s of SIG{signal}");
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn sigterm_stops_a_live_follower_cleanly(pool: PgPool) {
    let url = url_of(&pool);
    append_one(pool).await;
    let child = spawn_follower(url).await;

    let status = send_and_wait(child, "TERM").await;

    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn sigint_stops_a_live_follower_cleanly(pool: PgPool) {
    let url = url_of(&pool);
    append_one(pool).await;
    let child = spawn_follower(url).await;

    let status = send_and_wait(child, "INT").await;

    assert!(status.success(), "exit status after SIGINT: {status}");
}
