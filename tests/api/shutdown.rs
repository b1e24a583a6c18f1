//! A graceful stop of the embedded server leaves `strata.db` complete on its own: every
//! acknowledged event is in the file, nothing is left in `strata.db-wal`. On SQLite whichever
//! storage the suite runs on, since this is about the embedded deployment.

use std::path::Path;

use futures::StreamExt;
use sqlx::{Connection, SqliteConnection};
use strata_web::Application;
use tokio::sync::oneshot;

use crate::helpers::{TestApp, order_body, start, test_settings};

const ORDERS: usize = 300;

fn wal_len(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// Places `ORDERS` orders, eight at a time; answers every acknowledged position.
async fn place_orders(app: &TestApp) -> Vec<u64> {
    let token = app.operator();
    futures::stream::iter(0..ORDERS)
        .map(|n| {
            let token = token.clone();
            async move {
                app.post("/v1/orders", &token, order_body(&format!("c{n}")))
                    .await
                    .expect(201)
                    .position()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

#[tokio::test]
async fn after_a_graceful_stop_the_database_file_alone_holds_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("strata.db");
    let url = format!("sqlite://{}", db.display());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let app = Application::build(test_settings(&url)).await.unwrap();
    let (app, server) = start(app, url.clone(), async {
        let _ = stop_rx.await;
    });
    // Another process's connection, left open: closing the server's own connections then
    // checkpoints nothing by itself (only the last connection to a file does), as when the
    // server's process exits without closing them. Only the server's checkpoint empties the log.
    let mut other = SqliteConnection::connect(&url).await.unwrap();
    let positions = place_orders(&app).await;
    assert!(wal_len(&db) > 0, "the latest commits are in the log");

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();

    assert_eq!(wal_len(&db), 0, "the write-ahead log is empty or gone");
    let backup = tempfile::tempdir().unwrap();
    let copy = backup.path().join("strata.db");
    std::fs::copy(&db, &copy).unwrap();
    let mut copied = SqliteConnection::connect(&format!("sqlite://{}?mode=ro", copy.display()))
        .await
        .unwrap();
    let (count, last): (i64, i64) =
        sqlx::query_as("SELECT count(*), max(global_position) FROM events")
            .fetch_one(&mut copied)
            .await
            .unwrap();
    let acknowledged_last = positions.iter().copied().max().unwrap();
    assert_eq!(usize::try_from(count).unwrap(), positions.len());
    assert_eq!(u64::try_from(last).unwrap(), acknowledged_last);
    let present: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position = ?")
        .bind(i64::try_from(acknowledged_last).unwrap())
        .fetch_one(&mut copied)
        .await
        .unwrap();
    assert_eq!(present, 1);
    copied.close().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
}
