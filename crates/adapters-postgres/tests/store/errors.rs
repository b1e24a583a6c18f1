//! Connecting and migrating, and how an unreachable database is reported.

use std::time::Duration;

use sqlx::PgPool;
use strata_adapters_postgres::{
    ConnectError, MigrateError, PgEventStore, PgSettings, PgSnapshotStore, connect, connect_lazy,
    migrate,
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

#[sqlx::test(migrations = false)]
async fn migrate_refuses_an_applied_history_this_build_did_not_write_even_with_nothing_to_apply(
    pool: PgPool,
) {
    // Every migration applied, so migrate only reads the history: it must still check it as
    // sqlx's migrator would.
    migrate(&pool).await.unwrap();
    let checksum: Vec<u8> =
        sqlx::query_scalar("SELECT checksum FROM _sqlx_migrations WHERE version = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    let set_checksum = |checksum: Vec<u8>| {
        sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 1")
            .bind(checksum)
            .execute(&pool)
    };
    set_checksum(vec![0]).await.unwrap();

    let changed = migrate(&pool).await;
    set_checksum(checksum).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a newer build', true, '\\x00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let newer = migrate(&pool).await;

    assert!(
        matches!(&changed, Err(MigrateError::Failed(m)) if m.contains("modified")),
        "{changed:?}"
    );
    assert!(
        matches!(&newer, Err(MigrateError::Failed(m)) if m.contains("9999")),
        "{newer:?}"
    );
}

/// Settings of a pool of the adapter's own (not the test's) on the fresh database `admin` is
/// connected to.
async fn settings_of(admin: &PgPool, max_connections: u32) -> PgSettings {
    PgSettings {
        url: url_of(admin).await,
        max_connections,
        acquire_timeout: Duration::from_secs(5),
    }
}

/// The url of the fresh database `pool` is connected to, on `DATABASE_URL`'s server.
async fn url_of(pool: &PgPool) -> String {
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let (server, query) = server.split_once('?').unwrap_or((&server, ""));
    let (base, _) = server.rsplit_once('/').expect("a url with a database");
    if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    }
}

/// Pooled connections are not pinged on every use (sqlx checks them when they come back), but
/// one that sat idle is checked before it is handed out: the server may have closed it since.
#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_pooled_connection_the_server_closed_while_idle_is_replaced(admin: PgPool) {
    let pool = connect(&settings_of(&admin, 1).await).await.unwrap();
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Longer than the adapter lets a connection sit idle unchecked (1 s).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
        .bind(backend)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(killed);

    let head = PgEventStore::new(pool).head_position().await;

    assert_eq!(head, Ok(0));
}

/// Every connection of the database killed at once (a restart, a failover): the group writer's,
/// and the pooled ones, which the pool hands out unchecked right after their last use. The
/// group fails with the writer's connection, and its appends, written alone, must not take a
/// dead pooled connection and fail too.
#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn appends_go_on_after_every_connection_of_the_pool_is_killed(admin: PgPool) {
    let store = PgEventStore::new(connect(&settings_of(&admin, 4).await).await.unwrap());
    let order = stream("order");
    store
        .append(request(&order, ExpectedVersion::NoStream, 1))
        .await
        .unwrap();
    // A pooled connection, back in the pool a moment ago.
    store.read_stream(&order, 0).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&admin)
    .await
    .unwrap();

    let outcome = store
        .append(request(&order, ExpectedVersion::Exact(1), 1))
        .await;

    assert_eq!(outcome.map(|o| o.stream_version), Ok(2));
}
