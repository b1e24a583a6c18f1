//! `PgSearchIndex` against the real PostgreSQL: the shared search behaviours of every adapter,
//! and what only this one can show (the swap keeps index names).

use sqlx::PgPool;
use strata_adapters_postgres::PgSearchIndex;
use strata_ports::SearchIndex;
use strata_ports::search_suite;

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn the_postgres_index_shows_every_shared_search_behaviour(pool: PgPool) {
    let index = PgSearchIndex::new(pool);
    index.prepare().await.unwrap();

    search_suite::run(&index).await;
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn a_rebuild_swap_keeps_the_index_names(pool: PgPool) {
    let index = PgSearchIndex::new(pool.clone());
    let names = || async {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes \
             WHERE schemaname = 'public' AND tablename = 'order_search' ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        names
    };
    let before = names().await;

    index.start_rebuild().await.unwrap();
    index.finish_rebuild().await.unwrap();

    assert_eq!(names().await, before);
    assert!(before.contains(&"order_search_document".to_owned()));
}
