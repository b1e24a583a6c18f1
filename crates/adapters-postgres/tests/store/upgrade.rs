//! A database made by an earlier release keeps its log through the migrations of a later one.

use std::borrow::Cow;

use serde_json::json;
use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, PgPool};
use strata_adapters_postgres::{MIGRATOR, PgEventStore};
use strata_ports::{EventStore, ExpectedVersion};

use crate::helpers::{request, stream};

/// The migrations up to and including `last`, as a release that ended there shipped them.
fn migrations_up_to(last: i64) -> Migrator {
    Migrator {
        migrations: Cow::Owned(
            MIGRATOR
                .iter()
                .filter(|m| m.version <= last)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    }
}

/// Events stored as `jsonb` (through 0005) read back the same once 0006 stores them as `json`
/// text, and the stream goes on from where it was.
#[sqlx::test(migrations = false)]
async fn events_stored_as_jsonb_read_back_the_same_after_the_json_migration(pool: PgPool) {
    migrations_up_to(5).run(&pool).await.unwrap();
    let order = stream("order");
    // The 0005 group function, called as the adapter of that release called it.
    let (accepted,): (Vec<bool>,) = sqlx::query_as(
        "SELECT accepted FROM strata_append_group(ARRAY[$1], ARRAY[1]::smallint[], \
             ARRAY[0]::bigint[], ARRAY[2], ARRAY[gen_random_uuid(), gen_random_uuid()], \
             ARRAY['OrderPlaced', 'ItemAdded'], ARRAY[1, 1], \
             ARRAY['{\"b\": 1, \"a\": [1, 2.5, \"x\"]}'::jsonb, '{}'::jsonb], \
             ARRAY['{\"correlationId\": \"c-1\"}'::jsonb, '{}'::jsonb], \
             ARRAY[now(), now()])",
    )
    .bind(order.as_str())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(accepted, [true]);

    MIGRATOR.run(&pool).await.unwrap();

    let store = PgEventStore::new(pool.clone());
    let read = store.read_stream(&order, 0).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].data, json!({"a": [1, 2.5, "x"], "b": 1}));
    assert_eq!(read[0].metadata.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(read[1].data, json!({}));
    let outcome = store
        .append(request(&order, ExpectedVersion::Exact(2), 1))
        .await
        .unwrap();
    assert_eq!((outcome.stream_version, outcome.global_position), (3, 3));
    let column_types: Vec<String> = sqlx::query_scalar(
        "SELECT data_type FROM information_schema.columns \
         WHERE table_name = 'events' AND column_name IN ('data', 'metadata')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(column_types, ["json", "json"]);
}

/// Two roles made for a test (dropped again at its end), the first granted EXECUTE on
/// `granted` with the migrations up to `before` applied; after every migration, whether each
/// may execute `asked`.
async fn grant_carried_over(
    pool: &PgPool,
    before: i64,
    granted: &str,
    asked: &str,
) -> (bool, bool) {
    migrations_up_to(before).run(pool).await.unwrap();
    let role = format!("strata_upgrade_{}", uuid::Uuid::new_v4().simple());
    let other = format!("{role}_other");
    for name in [&role, &other] {
        execute(pool, format!("CREATE ROLE {name}")).await;
    }
    execute(
        pool,
        format!("GRANT EXECUTE ON FUNCTION {granted} TO {role}"),
    )
    .await;

    MIGRATOR.run(pool).await.unwrap();

    let mut may = Vec::new();
    for name in [&role, &other] {
        let allowed: bool = sqlx::query_scalar("SELECT has_function_privilege($1, $2, 'EXECUTE')")
            .bind(name)
            .bind(asked)
            .fetch_one(pool)
            .await
            .unwrap();
        may.push(allowed);
    }
    for name in [&role, &other] {
        execute(pool, format!("DROP OWNED BY {name}")).await;
        execute(pool, format!("DROP ROLE {name}")).await;
    }
    (may[0], may[1])
}

/// The group function of 0008, which takes the claims too.
const GROUP_FUNCTION: &str = "strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], UUID[], \
     TEXT[], INT[], TEXT[], TEXT[], TIMESTAMPTZ[], TEXT[], TEXT[], TEXT[])";

/// A role that could call the group function of 0006 may call the one of 0008; nobody else may.
#[sqlx::test(migrations = false)]
async fn a_role_granted_the_old_group_function_may_call_the_new_one(pool: PgPool) {
    let old = "strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], UUID[], TEXT[], INT[], \
         TEXT[], TEXT[], TIMESTAMPTZ[])";
    let (granted, not_granted) = grant_carried_over(&pool, 7, old, GROUP_FUNCTION).await;
    let old_functions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE proname = 'strata_append_group'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(granted);
    assert!(!not_granted);
    assert_eq!(old_functions, 1);
}

/// A role that could call the group function before migration 0011 may call the one-event
/// function it adds; nobody else may.
#[sqlx::test(migrations = false)]
async fn a_role_granted_the_group_function_may_call_the_one_event_function(pool: PgPool) {
    let one = "strata_append_one(TEXT, BIGINT, UUID, TEXT, INT, TEXT, TEXT, TIMESTAMPTZ)";
    let (granted, not_granted) = grant_carried_over(&pool, 10, GROUP_FUNCTION, one).await;
    assert!(granted);
    assert!(!not_granted);
}

/// Runs a statement built from the test's own role names (hex digits after a fixed stem).
async fn execute(pool: &PgPool, sql: String) {
    sqlx::query(AssertSqlSafe(sql)).execute(pool).await.unwrap();
}
