//! What the read models' rows must survive on PostgreSQL beyond the conformance suite: rows
//! stored before the order lines had a serde type still decode, and a stored status this code
//! does not know is corrupt data, never guessed at.

use sqlx::PgPool;
use strata_adapters_postgres::PgReadModels;
use strata_ports::{OrderLineRow, OrderQueries, OrderSummaryStatus, ReadModelError};
use uuid::Uuid;

/// A summary row as the hand-written `json!` codec wrote it, with `status`.
async fn stored_order(pool: &PgPool, status: &str) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO order_summaries (order_id, customer_id, status, items, item_count, \
             total_cents, currency, shipping_address, placed_at, updated_at, version, \
             placed_position) \
         VALUES ($1, 'alice', $2, \
             '[{\"productId\": \"lamp-7\", \"quantity\": 2, \"unitPriceCents\": 1250, \
                \"lineTotalCents\": 2500}]'::jsonb, \
             2, 2500, 'EUR', '12 Harbour Street', now(), now(), 1, 1)",
    )
    .bind(id)
    .bind(status)
    .execute(pool)
    .await
    .unwrap();
    id
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn an_order_stored_by_the_earlier_codec_reads_back(pool: PgPool) {
    let id = stored_order(&pool, "SHIPPED").await;

    let row = PgReadModels::new(pool)
        .order_summary(id)
        .await
        .unwrap()
        .value
        .unwrap();

    assert_eq!(row.status, OrderSummaryStatus::Shipped);
    assert_eq!(
        row.items,
        [OrderLineRow {
            line_total_cents: 2_500,
            product_id: "lamp-7".to_owned(),
            quantity: 2,
            unit_price_cents: 1_250,
        }]
    );
}

#[sqlx::test(migrator = "strata_adapters_postgres::MIGRATOR")]
async fn an_unknown_stored_status_is_corrupt(pool: PgPool) {
    let id = stored_order(&pool, "LOST").await;

    let read = PgReadModels::new(pool).order_summary(id).await;

    assert!(matches!(read, Err(ReadModelError::Corrupt(_))), "{read:?}");
}
