//! Rebuilds on PostgreSQL: the tables of a projection are copied empty into the schema
//! `strata_rebuild_<projection>`; a rebuild batch puts that schema first on its `search_path`, so
//! the same unqualified statements fill the copies. The checkpoint and dead-letter tables are
//! always named `public.…`. The swap moves the live tables out and the rebuilt ones in, in one
//! transaction that holds the live checkpoint row. The schema copy, its grants and the index
//! names serve the search index's rebuild too.

use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use strata_ports::{Generation, ProjectionName, ReadModelError, RebuildSwap};

use crate::checkpoints::{db, lock_checkpoint};
use crate::rows::to_i64;

/// `GRANT` statements that give `schema`'s copy of a table what the table ($1) grants to roles
/// other than its owner.
const COPY_GRANTS: &str = "\
    SELECT format('GRANT %s ON %I.%I TO %s', a.privilege_type, $2, c.relname, \
                  CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
                       ELSE quote_ident(pg_get_userbyid(a.grantee)) END) \
    FROM pg_class c, aclexplode(c.relacl) a \
    WHERE c.oid = $1::regclass AND a.grantee <> c.relowner";

/// `ALTER INDEX` statements that rename the indexes of the new table ($2) to the names of the
/// old table's ($1) indexes with the same definition.
const RESTORE_INDEX_NAMES: &str = "\
    SELECT format('ALTER INDEX public.%I RENAME TO %I', n.relname, o.relname) \
    FROM pg_index oi JOIN pg_class o ON o.oid = oi.indexrelid, \
         pg_index ni JOIN pg_class n ON n.oid = ni.indexrelid \
    WHERE oi.indrelid = $1::regclass AND ni.indrelid = $2::regclass \
      AND n.relname <> o.relname \
      AND regexp_replace(pg_get_indexdef(oi.indexrelid), '^.* USING ', '') \
        = regexp_replace(pg_get_indexdef(ni.indexrelid), '^.* USING ', '') \
      AND oi.indisunique = ni.indisunique";

/// Grants `schema`'s copy of `public.<table>` what the live table grants.
pub(crate) async fn copy_grants(
    conn: &mut PgConnection,
    table: &str,
    schema: &str,
) -> Result<(), sqlx::Error> {
    let grants: Vec<String> = sqlx::query_scalar(COPY_GRANTS)
        .bind(format!("public.{table}"))
        .bind(schema)
        .fetch_all(&mut *conn)
        .await?;
    execute_all(conn, grants).await
}

/// Runs statements built from trusted parts (schema and table names of this adapter), in order.
pub(crate) async fn execute_all(
    conn: &mut PgConnection,
    statements: impl IntoIterator<Item = String>,
) -> Result<(), sqlx::Error> {
    for sql in statements {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Gives the indexes of `public.<table>` (just swapped in) the names of the indexes of
/// `<retired>.<table>` (just swapped out).
pub(crate) async fn restore_index_names(
    conn: &mut PgConnection,
    retired: &str,
    table: &str,
) -> Result<(), sqlx::Error> {
    let renames: Vec<String> = sqlx::query_scalar(RESTORE_INDEX_NAMES)
        .bind(format!("{retired}.{table}"))
        .bind(format!("public.{table}"))
        .fetch_all(&mut *conn)
        .await?;
    execute_all(conn, renames).await
}

/// DDL of rebuilds says "does not exist, skipping" and "drop cascades": expected, not news.
const QUIET: &str = "SET LOCAL client_min_messages = warning";

/// The schema of a rebuild. `projection`'s name is a safe identifier (`ProjectionName::as_str`).
pub(crate) fn rebuild_schema(projection: ProjectionName) -> String {
    format!("strata_rebuild_{projection}")
}

/// Creates the rebuild schema of `projection` with empty copies of its tables, and resets the
/// rebuild's checkpoint and dead letters.
pub(crate) async fn start(pool: &PgPool, projection: ProjectionName) -> Result<(), ReadModelError> {
    let tables = projection.tables();
    let schema = rebuild_schema(projection);
    let mut tx = pool.begin().await.map_err(db)?;
    let mut statements = vec![
        QUIET.to_owned(),
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ];
    for table in tables {
        statements.push(format!(
            "CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)"
        ));
    }
    execute_all(&mut tx, statements).await.map_err(db)?;
    // LIKE copies no privileges: grant the copies what the live tables grant, so the roles
    // of decision 0006 can still read and write once they are swapped in.
    for table in tables {
        copy_grants(&mut tx, table, &schema).await.map_err(db)?;
    }
    let rebuild = projection.key(Generation::Rebuild);
    sqlx::query("DELETE FROM public.projection_dead_letters WHERE projection = $1")
        .bind(&rebuild)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query(
        "INSERT INTO public.projection_checkpoints (projection, position, updated_at) \
         VALUES ($1, 0, now()) ON CONFLICT (projection) DO UPDATE \
         SET position = 0, updated_at = now()",
    )
    .bind(&rebuild)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)
}

/// Swaps the rebuilt tables of `projection` in, once the rebuild has caught up with the live
/// checkpoint (`false`, changing nothing, until then).
pub(crate) async fn finish(
    pool: &PgPool,
    projection: ProjectionName,
    also: &dyn RebuildSwap,
) -> Result<bool, ReadModelError> {
    let tables = projection.tables();
    let schema = rebuild_schema(projection);
    let live = projection.key(Generation::Live);
    let rebuild = projection.key(Generation::Rebuild);
    let mut tx = pool.begin().await.map_err(db)?;
    // The swap needs an exclusive lock on each live table; waiting behind a long reader
    // would queue every new read behind the swap. Give up quickly instead: the caller
    // catches up and tries again.
    sqlx::query("SET LOCAL lock_timeout = '2s'")
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    // Holding the live checkpoint row keeps the live worker between two batches until the
    // swap commits; its next batch then continues from the rebuilt tables' position.
    let live_position = lock_checkpoint(&mut tx, &live).await?;
    let rebuilt_position = lock_checkpoint(&mut tx, &rebuild).await?;
    if rebuilt_position < live_position {
        return Ok(false);
    }
    let retired = format!("strata_retired_{projection}");
    let mut statements = vec![
        QUIET.to_owned(),
        format!("DROP SCHEMA IF EXISTS {retired} CASCADE"),
        format!("CREATE SCHEMA {retired}"),
    ];
    for table in tables {
        statements.push(format!("ALTER TABLE public.{table} SET SCHEMA {retired}"));
        statements.push(format!("ALTER TABLE {schema}.{table} SET SCHEMA public"));
    }
    execute_all(&mut tx, statements).await.map_err(db)?;
    // LIKE names the copied indexes after their columns: give them the live names back, so
    // the schema stays what the migrations created.
    for table in tables {
        restore_index_names(&mut tx, &retired, table)
            .await
            .map_err(db)?;
    }
    execute_all(
        &mut tx,
        [
            format!("DROP SCHEMA {retired} CASCADE"),
            format!("DROP SCHEMA {schema} CASCADE"),
        ],
    )
    .await
    .map_err(db)?;
    // The live dead letters belong to the retired tables; the rebuild's take their place.
    sqlx::query("DELETE FROM public.projection_dead_letters WHERE projection = $1")
        .bind(&live)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query("UPDATE public.projection_dead_letters SET projection = $1 WHERE projection = $2")
        .bind(&live)
        .bind(&rebuild)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query(
        "UPDATE public.projection_checkpoints SET position = $2, updated_at = now() \
         WHERE projection = $1",
    )
    .bind(&live)
    .bind(to_i64(rebuilt_position, "checkpoint")?)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    sqlx::query("DELETE FROM public.projection_checkpoints WHERE projection = $1")
        .bind(&rebuild)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    // Last, so that a failure here still rolls everything above back. Should the commit
    // fail after it succeeded, the live worker replays from its old checkpoint into what
    // was swapped, which its idempotent writes allow.
    also.swap().await?;
    tx.commit().await.map_err(db)?;
    Ok(true)
}

/// Drops the rebuild schema of `projection` with the rebuild's checkpoint and dead letters.
pub(crate) async fn abandon(
    pool: &PgPool,
    projection: ProjectionName,
) -> Result<(), ReadModelError> {
    let rebuild = projection.key(Generation::Rebuild);
    let mut tx = pool.begin().await.map_err(db)?;
    let sql = format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        rebuild_schema(projection)
    );
    sqlx::query(AssertSqlSafe(sql))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    for table in ["projection_dead_letters", "projection_checkpoints"] {
        let sql = format!("DELETE FROM public.{table} WHERE projection = $1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(&rebuild)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}
