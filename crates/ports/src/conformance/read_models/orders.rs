//! The orders read model: an order summary and the customer statistics read back exactly as
//! written, the version guard keeps a replayed or late older summary from replacing a newer
//! one, the bulk forms are the rows one at a time, and a customer's orders come in their order
//! page by page.

use uuid::Uuid;

use super::{ORDERS, customer, head, order, order_at_version, order_now, put_orders, stats};
use crate::projection::Generation;
use crate::read_model::{
    CustomerStatsRow, OrderSummaryRow, OrderSummaryStatus, ProjectionStore, ReadModelError,
    ReadModels, StatusCounts,
};

/// Every field of an order summary, set or empty, through the batch and through the queries.
pub async fn an_order_summary_reads_back_exactly_as_written(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let c = customer("order-fields");
    let plain = order(&c, base + 1, 1);
    let full = OrderSummaryRow {
        status: OrderSummaryStatus::Cancelled,
        tracking_number: Some("TRK-42".to_owned()),
        cancellation_reason: Some("changed my mind, sorry — ü".to_owned()),
        total_cents: -5,
        currency: "NOK".to_owned(),
        version: 9,
        ..order(&c, base + 2, 9)
    };

    let mut batch = store.begin(ORDERS, Generation::Live).await.unwrap();
    let position = batch.checkpoint().await.unwrap() + 1;
    batch.put_order_summary(&plain).await.unwrap();
    batch.put_order_summary(&full).await.unwrap();
    let inside = batch.order_summary(full.order_id).await.unwrap();
    let missing = batch.order_summary(Uuid::now_v7()).await.unwrap();
    batch.commit(position).await.unwrap();

    assert_eq!(inside.as_ref(), Some(&full), "within the batch");
    assert_eq!(missing, None);
    assert_eq!(order_now(models, plain.order_id).await, Some(plain));
    assert_eq!(order_now(models, full.order_id).await, Some(full));
    assert_eq!(order_now(models, Uuid::now_v7()).await, None);
}

/// A put with a lower or equal version than the stored row's is ignored, within a batch or
/// across batches; a higher version replaces the row.
pub async fn an_order_summary_is_replaced_only_by_a_higher_version(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let placed = order(&customer("order-versions"), base + 1, 1);
    let confirmed = order_at_version(&placed, 2, OrderSummaryStatus::Confirmed);
    let replayed = order_at_version(&placed, 2, OrderSummaryStatus::Cancelled);
    let shipped = order_at_version(&placed, 3, OrderSummaryStatus::Shipped);
    put_orders(store, &[&confirmed]).await;

    put_orders(store, &[&placed, &replayed]).await;
    let after_older = order_now(models, placed.order_id).await;
    put_orders(store, &[&shipped, &confirmed]).await;
    let after_newer = order_now(models, placed.order_id).await;

    assert_eq!(after_older, Some(confirmed), "lower and equal versions");
    assert_eq!(
        after_newer,
        Some(shipped),
        "a higher version, then a lower one"
    );
}

/// The bulk reads answer the rows that exist (none for unknown keys, nothing for no keys); the
/// bulk writes store every field, order summaries with the version guard of the single write.
pub async fn bulk_reads_answer_the_rows_that_exist_and_bulk_writes_store_every_field(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let c = customer("bulk");
    let plain = order(&c, base + 1, 1);
    let full = OrderSummaryRow {
        status: OrderSummaryStatus::Cancelled,
        tracking_number: Some("TRK-7".to_owned()),
        cancellation_reason: Some("ü, and a \"quote\"".to_owned()),
        version: 4,
        ..order(&c, base + 2, 4)
    };
    let newer = order_at_version(&plain, 2, OrderSummaryStatus::Confirmed);
    let stale = order_at_version(&full, 3, OrderSummaryStatus::Pending);
    let first_stats = stats(&c);
    let other = CustomerStatsRow {
        lifetime_value_cents: Default::default(),
        ..stats(&customer("bulk-other"))
    };

    let mut batch = store.begin(ORDERS, Generation::Live).await.unwrap();
    let position = batch.checkpoint().await.unwrap() + 1;
    batch.put_order_summaries(&[]).await.unwrap();
    batch
        .put_order_summaries(&[plain.clone(), full.clone()])
        .await
        .unwrap();
    batch
        .put_order_summaries(&[newer.clone(), stale])
        .await
        .unwrap();
    let mut inside = batch
        .order_summaries(&[full.order_id, Uuid::now_v7(), plain.order_id])
        .await
        .unwrap();
    let none = batch.order_summaries(&[]).await.unwrap();
    batch.put_customer_stats_many(&[]).await.unwrap();
    batch
        .put_customer_stats_many(&[first_stats.clone(), other.clone()])
        .await
        .unwrap();
    let mut stats_inside = batch
        .customer_stats_many(&[other.customer_id.clone(), customer("nobody")])
        .await
        .unwrap();
    stats_inside.extend(
        batch
            .customer_stats_many(std::slice::from_ref(&c))
            .await
            .unwrap(),
    );
    batch.commit(position).await.unwrap();

    inside.sort_by_key(|row| row.version);
    assert_eq!(
        inside,
        vec![newer.clone(), full.clone()],
        "within the batch"
    );
    assert!(none.is_empty());
    assert_eq!(stats_inside, vec![other.clone(), first_stats.clone()]);
    assert_eq!(order_now(models, plain.order_id).await, Some(newer));
    assert_eq!(order_now(models, full.order_id).await, Some(full));
    assert_eq!(
        models.customer_stats(&c).await.unwrap().value,
        Some(first_stats)
    );
    assert_eq!(
        models
            .customer_stats(&other.customer_id)
            .await
            .unwrap()
            .value,
        Some(other)
    );
}

/// A customer's orders, newest placed first; `before` is exclusive and need not be a position
/// of theirs; `limit` caps a page; other customers' orders never appear.
pub async fn a_customers_orders_come_newest_first_page_by_page_without_other_customers(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let c = customer("customer-orders");
    let at = |offset: u64| order(&c, base + offset, 1);
    let (o10, o20, o30, o40) = (at(10), at(20), at(30), at(40));
    let someone_else = order(&customer("someone-else"), base + 25, 1);
    put_orders(store, &[&o30, &o10, &someone_else, &o40, &o20]).await;
    let page = |before: Option<u64>, limit: usize| {
        let c = c.clone();
        async move {
            let rows = models.customer_orders(&c, before, limit).await.unwrap();
            rows.value
                .into_iter()
                .map(|row| row.placed_position - base)
                .collect::<Vec<_>>()
        }
    };

    let everything = models.customer_orders(&c, None, 10).await.unwrap().value;

    assert_eq!(everything, [o40, o30, o20, o10]);
    assert_eq!(page(None, 2).await, [40, 30]);
    assert_eq!(page(Some(base + 30), 2).await, [20, 10]);
    assert_eq!(page(Some(base + 31), 1).await, [30]);
    assert_eq!(page(Some(base + 10), 10).await, Vec::<u64>::new());
    assert!(
        models
            .customer_orders(&customer("nobody"), None, 10)
            .await
            .unwrap()
            .value
            .is_empty()
    );
}

/// Every field of the customer statistics, lifetime values per currency included; a later put
/// replaces them (they carry no version: the projection reads, changes and writes them).
pub async fn customer_stats_read_back_exactly_as_written_and_a_later_put_replaces_them(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let c = customer("stats");
    let first = stats(&c);
    let later = CustomerStatsRow {
        order_count: 7,
        by_status: StatusCounts {
            pending: 0,
            confirmed: 2,
            shipped: 1,
            delivered: 3,
            cancelled: 1,
        },
        lifetime_value_cents: [("EUR", 45_000), ("NOK", 129_900), ("USD", 1)]
            .into_iter()
            .map(|(currency, cents)| (currency.to_owned(), cents))
            .collect(),
        updated_at: first.updated_at + time::Duration::microseconds(1),
        ..first.clone()
    };
    let mut batch = store.begin(ORDERS, Generation::Live).await.unwrap();
    let position = batch.checkpoint().await.unwrap() + 1;
    batch
        .put_customer_stats_many(std::slice::from_ref(&first))
        .await
        .unwrap();
    let inside = batch
        .customer_stats_many(std::slice::from_ref(&c))
        .await
        .unwrap();
    batch.commit(position).await.unwrap();
    let read_first = models.customer_stats(&c).await.unwrap().value;

    let mut batch = store.begin(ORDERS, Generation::Live).await.unwrap();
    let position = batch.checkpoint().await.unwrap() + 1;
    batch
        .put_customer_stats_many(std::slice::from_ref(&later))
        .await
        .unwrap();
    batch.commit(position).await.unwrap();

    assert_eq!(inside, std::slice::from_ref(&first), "within the batch");
    assert_eq!(read_first, Some(first));
    assert_eq!(models.customer_stats(&c).await.unwrap().value, Some(later));
    assert_eq!(
        models
            .customer_stats(&customer("nobody"))
            .await
            .unwrap()
            .value,
        None
    );
}

/// A customer id with a NUL or longer than [`crate::limits::MAX_LOOKUP_BYTES`] is refused as
/// invalid input before any statement runs (a statement's failure would be `Backend`).
pub async fn customer_lookups_with_nul_or_oversized_ids_are_refused_as_invalid_input(
    _store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let long = "c".repeat(crate::limits::MAX_LOOKUP_BYTES + 1);
    for id in ["alice\0", "\0", long.as_str()] {
        let orders = models.customer_orders(id, None, 10).await;
        assert!(
            matches!(orders, Err(ReadModelError::InvalidInput(_))),
            "orders of {:?}: {orders:?}",
            id.get(..10)
        );
        let stats = models.customer_stats(id).await;
        assert!(
            matches!(stats, Err(ReadModelError::InvalidInput(_))),
            "stats of {:?}: {stats:?}",
            id.get(..10)
        );
    }
}
