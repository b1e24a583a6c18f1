//! Connecting and migrating, and how an unreachable database is reported.

use std::time::Duration;

use sqlx::PgPool;
use strata_adapters_postgres::{
    ConnectError, PgEventStore, PgSettings, PgSnapshotStore, connect, connect_lazy, migrate,
};
use strata_ports::{EventStore, EventStoreError, ExpectedVersion, SnapshotError, SnapshotStore};

use crate::helpers::{request, stream};

/// Nothing listens on port 1, so every connection attempt is refused at once.
fn unreachable() -> PgSettings {
    PgSettings {
        url: "postgres://postgres@127.0.0.1:1/postgres".into(),
        max_connections: 1,
        acquire_timeout: Duration::from_millis(300),
    }
}

#[tokio::test]
async fn an_unreachable_database_makes_the_event_store_unavailable() {
    let store = PgEventStore::new(connect_lazy(&unreachable()).unwrap());

    let appended = store
        .append(request(&stream("order"), ExpectedVersion::Any, 1))
        .await;
    let read = store.read_all(0, 10).await;
    let head = store.head_position().await;

    assert!(
        matches!(appended, Err(EventStoreError::Unavailable(_))),
        "{appended:?}"
    );
    assert!(
        matches!(read, Err(EventStoreError::Unavailable(_))),
        "{read:?}"
    );
    assert!(
        matches!(head, Err(EventStoreError::Unavailable(_))),
        "{head:?}"
    );
}

#[tokio::test]
async fn an_unreachable_database_makes_the_snapshot_store_unavailable() {
    let snapshots = PgSnapshotStore::new(connect_lazy(&unreachable()).unwrap());

    let loaded = snapshots.load(&stream("account")).await;

    assert!(
        matches!(loaded, Err(SnapshotError::Unavailable(_))),
        "{loaded:?}"
    );
}

#[tokio::test]
async fn connecting_to_an_unreachable_database_is_unavailable() {
    let connected = connect(&unreachable()).await;

    assert!(
        matches!(connected, Err(ConnectError::Unavailable(_))),
        "{connected:?}"
    );
}

#[tokio::test]
async fn a_malformed_url_is_invalid_settings() {
    let settings = PgSettings {
        url: "not a url".into(),
        ..unreachable()
    };

    let connected = connect_lazy(&settings);

    assert!(
        matches!(connected, Err(ConnectError::InvalidSettings(_))),
        "{connected:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn migrate_creates_an_empty_log_and_can_run_again(pool: PgPool) {
    migrate(&pool).await.unwrap();

    let again = migrate(&pool).await;

    assert_eq!(again, Ok(()));
    assert_eq!(PgEventStore::new(pool).head_position().await.unwrap(), 0);
}
