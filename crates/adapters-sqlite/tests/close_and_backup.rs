//! A database file that is complete on its own: after `close` (the write-ahead log checkpointed
//! into it), and as `backup` copies it while writers go on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;
use sqlx::{Connection, SqliteConnection, SqlitePool};
use strata_adapters_sqlite::{BackupError, SqliteEventStore, SqliteSearchIndex, SqliteSettings};
use strata_ports::{
    AppendRequest, EventStore, ExpectedVersion, Metadata, NewEvent, SearchIndex, StreamId,
};
use time::OffsetDateTime;
use uuid::Uuid;

use support::fresh;

async fn append(store: &SqliteEventStore) -> u64 {
    let request = AppendRequest {
        stream_id: StreamId::new("order", Uuid::now_v7()),
        expected: ExpectedVersion::NoStream,
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "OrderPlaced".into(),
            schema_version: 1,
            data: json!({"note": "x".repeat(200)}),
            metadata: Metadata::default(),
            recorded_at: OffsetDateTime::now_utc(),
        }],
        idempotency: None,
    };
    store.append(request).await.unwrap().global_position
}

/// Opens a copy read-only and answers its events' positions, in order.
async fn positions(file: &Path) -> Vec<i64> {
    let mut conn = open(file).await;
    let positions = sqlx::query_scalar("SELECT global_position FROM events ORDER BY 1")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    positions
}

async fn open(file: &Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}?mode=ro", file.display()))
        .await
        .unwrap()
}

fn wal_len(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// A second pool on the file, as another process would hold: closing the first pool's
/// connections then checkpoints nothing by itself (only the last connection to close does).
async fn another_process(settings: &SqliteSettings) -> SqlitePool {
    let pool = strata_adapters_sqlite::connect(settings).await.unwrap();
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    pool
}

#[tokio::test]
async fn closing_checkpoints_the_log_so_that_the_file_alone_holds_every_commit() {
    let db = fresh().await;
    let other = another_process(&db.settings).await;
    let store = SqliteEventStore::new(db.pool.clone());
    let mut last = 0;
    for _ in 0..200 {
        last = append(&store).await;
    }
    assert!(wal_len(&db.settings.path) > 0, "the commits are in the log");

    let checkpoint = strata_adapters_sqlite::close(&db.pool).await.unwrap();

    assert!(checkpoint.complete, "{checkpoint:?}");
    assert!(checkpoint.wal_pages > 0, "{checkpoint:?}");
    assert_eq!(wal_len(&db.settings.path), 0, "the log is truncated");
    assert!(db.pool.is_closed());
    let copy = tempfile::tempdir().unwrap();
    let file = copy.path().join("strata.db");
    std::fs::copy(&db.settings.path, &file).unwrap();
    let copied = positions(&file).await;
    assert_eq!(copied.len(), 200);
    assert_eq!(copied.last().copied(), Some(i64::try_from(last).unwrap()));
    other.close().await;
}

#[tokio::test]
async fn a_checkpoint_kept_from_completing_by_a_reader_is_reported_incomplete() {
    let db = fresh().await;
    let store = SqliteEventStore::new(db.pool.clone());
    append(&store).await;
    // A read transaction in another process pins an older snapshot: the log cannot be emptied.
    let other = another_process(&db.settings).await;
    let mut reader = other.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM events")
        .fetch_one(&mut *reader)
        .await
        .unwrap();
    append(&store).await;

    let checkpoint = strata_adapters_sqlite::close(&db.pool).await.unwrap();

    assert!(!checkpoint.complete, "{checkpoint:?}");
    assert_eq!(checkpoint.attempts, 3);
    assert!(db.pool.is_closed(), "the pool is closed all the same");
    reader.rollback().await.unwrap();
    other.close().await;
}

#[tokio::test]
async fn a_backup_copies_the_database_and_the_search_index_beside_it() {
    let db = fresh().await;
    let store = SqliteEventStore::new(db.pool.clone());
    for _ in 0..5 {
        append(&store).await;
    }
    SqliteSearchIndex::new(
        strata_adapters_sqlite::connect_search(&db.settings)
            .await
            .unwrap(),
    )
    .prepare()
    .await
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("nested/copy.db");

    let backup = strata_adapters_sqlite::backup(&db.settings, &to)
        .await
        .unwrap();

    assert_eq!(backup.database.path, to.canonicalize().unwrap());
    assert_eq!(backup.events, Some(5));
    assert_eq!(backup.last_position, Some(5));
    assert_eq!(positions(&to).await, vec![1, 2, 3, 4, 5]);
    let search = backup.search.expect("the search index is copied");
    assert_eq!(
        search.path,
        out.path()
            .join("nested/copy-search.db")
            .canonicalize()
            .unwrap()
    );
    assert_eq!(search.bytes, std::fs::metadata(&search.path).unwrap().len());
    assert_eq!(wal_len(&to), 0, "a copy is one file");
}

#[tokio::test]
async fn a_backup_never_overwrites_a_file_nor_takes_a_path_sqlite_cannot_name() {
    let db = fresh().await;
    let out = tempfile::tempdir().unwrap();
    let existing = out.path().join("existing.db");
    std::fs::write(&existing, b"keep me").unwrap();

    let refused = strata_adapters_sqlite::backup(&db.settings, &existing)
        .await
        .unwrap_err();
    let nul = strata_adapters_sqlite::backup(&db.settings, Path::new("copy\0.db"))
        .await
        .unwrap_err();
    let missing = SqliteSettings::at(out.path().join("missing.db"));
    let no_database = strata_adapters_sqlite::backup(&missing, &out.path().join("x.db"))
        .await
        .unwrap_err();

    assert!(matches!(refused, BackupError::TargetExists(_)), "{refused}");
    assert!(
        refused.to_string().contains("never overwrites"),
        "{refused}"
    );
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    assert!(matches!(nul, BackupError::InvalidTarget(_)), "{nul}");
    assert!(
        matches!(no_database, BackupError::NoDatabase(_)),
        "{no_database}"
    );
    assert!(
        !missing.path.exists(),
        "nothing is created where there was no database"
    );
}

#[tokio::test]
async fn a_path_with_quotes_is_copied_to_exactly_that_path() {
    let db = fresh().await;
    append(&SqliteEventStore::new(db.pool.clone())).await;
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("it's a \"copy\"; DROP TABLE events.db");

    let backup = strata_adapters_sqlite::backup(&db.settings, &to)
        .await
        .unwrap();

    assert_eq!(backup.events, Some(1));
    assert!(to.is_file());
}

#[tokio::test]
async fn a_backup_taken_while_writes_go_on_is_consistent() {
    let db = fresh().await;
    let store = SqliteEventStore::new(db.pool.clone());
    for _ in 0..50 {
        append(&store).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            let mut written = 0;
            while !stop.load(Ordering::Relaxed) {
                append(&store).await;
                written += 1;
            }
            written
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("copy.db");
    let committed_before = last_position(&db.pool).await;

    let backup = strata_adapters_sqlite::backup(&db.settings, &to)
        .await
        .unwrap();
    // Until the log has grown past the copy, so that the copy is shown to be a snapshot.
    let copied_last = i64::try_from(backup.last_position.unwrap()).unwrap();
    while last_position(&db.pool).await <= copied_last {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written_during = writer.await.unwrap();

    assert!(written_during > 0, "writes went on");
    let mut conn = open(&to).await;
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    let copied = positions(&to).await;
    let n = i64::try_from(copied.len()).unwrap();
    assert!(n >= 50);
    assert_eq!(copied, (1..=n).collect::<Vec<_>>(), "positions are dense");
    assert_eq!(backup.events, Some(u64::try_from(n).unwrap()));
    assert_eq!(copied_last, n);
    assert!(
        n >= committed_before,
        "every commit before the backup is in it"
    );
}

async fn last_position(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}
