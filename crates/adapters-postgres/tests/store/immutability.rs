//! The database itself refuses to change the log, even for the role that owns the tables.

use sqlx::PgPool;
use strata_adapters_postgres::PgEventStore;
use strata_ports::{EventStore, ExpectedVersion};

use crate::helpers::{append, claiming, read_everything, request, stream};

/// Runs `sql` as the connecting role (the owner of the tables) and returns the database's
/// refusal message.
async fn refusal(pool: &PgPool, sql: &'static str) -> String {
    let error = sqlx::query(sql).execute(pool).await.unwrap_err();
    error
        .as_database_error()
        .map(|db| db.message().to_owned())
        .unwrap_or_else(|| panic!("not a database error: {error}"))
}

async fn owner_of_events(pool: &PgPool) -> (String, String) {
    sqlx::query_as(
        "SELECT tableowner::text, current_user::text FROM pg_tables WHERE tablename = 'events'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn log_with_two_events(pool: &PgPool) -> PgEventStore {
    let store = PgEventStore::new(pool.clone());
    append(&store, &stream("order"), ExpectedVersion::Any, 2)
        .await
        .unwrap();
    store
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn the_table_owner_cannot_update_events(pool: PgPool) {
    let store = log_with_two_events(&pool).await;
    let (owner, me) = owner_of_events(&pool).await;

    let message = refusal(&pool, "UPDATE events SET event_type = 'Rewritten'").await;

    assert_eq!(owner, me);
    assert_eq!(message, "events are immutable");
    assert!(
        read_everything(&store)
            .await
            .iter()
            .all(|e| e.event_type == "ItemAdded")
    );
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn the_table_owner_cannot_delete_events(pool: PgPool) {
    let store = log_with_two_events(&pool).await;

    let message = refusal(&pool, "DELETE FROM events WHERE global_position = 1").await;

    assert_eq!(message, "events are immutable");
    assert_eq!(read_everything(&store).await.len(), 2);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn the_table_owner_cannot_truncate_events(pool: PgPool) {
    let store = log_with_two_events(&pool).await;

    let message = refusal(&pool, "TRUNCATE events").await;

    assert_eq!(message, "events are immutable");
    assert_eq!(read_everything(&store).await.len(), 2);
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn even_an_empty_log_refuses_changes(pool: PgPool) {
    // Statement-level triggers fire even when no row matches.
    let message = refusal(&pool, "DELETE FROM events").await;

    assert_eq!(message, "events are immutable");
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn idempotency_records_cannot_be_rewritten(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    store
        .append(claiming(
            request(&stream("order"), ExpectedVersion::Any, 1),
            "alice",
            "k",
        ))
        .await
        .unwrap();

    let message = refusal(&pool, "UPDATE idempotency_keys SET fingerprint = 'other'").await;

    assert_eq!(message, "idempotency records are immutable");
}
