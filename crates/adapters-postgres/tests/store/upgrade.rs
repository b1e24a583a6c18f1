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

/// A role that could call the group function of 0006 may call the one of 0008, which takes the
/// claims too; nobody else may (a role made for the test, dropped again at its end).
#[sqlx::test(migrations = false)]
async fn a_role_granted_the_old_group_function_may_call_the_new_one(pool: PgPool) {
    migrations_up_to(7).run(&pool).await.unwrap();
    let role = format!("strata_upgrade_{}", uuid::Uuid::new_v4().simple());
    let other = format!("{role}_other");
    for name in [&role, &other] {
        execute(&pool, format!("CREATE ROLE {name}")).await;
    }
    execute(
        &pool,
        format!(
            "GRANT EXECUTE ON FUNCTION strata_append_group(TEXT[], SMALLINT[], BIGINT[], INT[], \
             UUID[], TEXT[], INT[], TEXT[], TEXT[], TIMESTAMPTZ[]) TO {role}"
        ),
    )
    .await;

    MIGRATOR.run(&pool).await.unwrap();

    let may = |name: String| {
        let pool = pool.clone();
        async move {
            let allowed: bool = sqlx::query_scalar(
                "SELECT has_function_privilege($1, 'strata_append_group(TEXT[], SMALLINT[], \
                 BIGINT[], INT[], UUID[], TEXT[], INT[], TEXT[], TEXT[], TIMESTAMPTZ[], TEXT[], \
                 TEXT[], TEXT[])', 'EXECUTE')",
            )
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
            allowed
        }
    };
    let (granted, not_granted) = (may(role.clone()).await, may(other.clone()).await);
    let old_functions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE proname = 'strata_append_group'")
            .fetch_one(&pool)
            .await
            .unwrap();
    for name in [&role, &other] {
        execute(&pool, format!("DROP OWNED BY {name}")).await;
        execute(&pool, format!("DROP ROLE {name}")).await;
    }
    assert!(granted);
    assert!(!not_granted);
    assert_eq!(old_functions, 1);
}

/// Runs a statement built from the test's own role names (hex digits after a fixed stem).
async fn execute(pool: &PgPool, sql: String) {
    sqlx::query(AssertSqlSafe(sql)).execute(pool).await.unwrap();
}
