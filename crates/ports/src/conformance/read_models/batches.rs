//! Batches: one unit of work whose rows, dead letters and checkpoint commit together or not at
//! all, that a second worker of the same projection waits for, with savepoints inside; the
//! status rows the checkpoints feed, and the checkpoint every query answers with.

use futures::future::{Either, select};
use uuid::Uuid;

use super::{
    ACCOUNTS, ORDERS, SEARCH, account, customer, head, letter, order, order_at_version, order_now,
    park, parked_positions, recorded, stats, stream, transaction,
};
use crate::projection::Generation;
use crate::projection::ProjectionName;
use crate::read_model::{OrderSummaryStatus, ProjectionStore, ReadModelError, ReadModels};

/// After `commit(p)` readers see the batch's rows and dead letters, and the checkpoint is `p`.
pub async fn a_committed_batch_makes_its_rows_dead_letters_and_checkpoint_visible_together(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let before = models.position(ORDERS).await.unwrap();
    let c = customer("commit");
    let row = order(&c, base + 1, 1);
    let stats = stats(&c);
    let failed = letter(ORDERS, recorded(&stream("order"), 1, base + 2), None);

    let mut batch = store.begin(ORDERS, Generation::Live).await.unwrap();
    assert_eq!(batch.checkpoint().await.unwrap(), before);
    batch.put_order_summary(&row).await.unwrap();
    batch
        .put_customer_stats_many(std::slice::from_ref(&stats))
        .await
        .unwrap();
    batch.park(&failed).await.unwrap();
    batch.commit(base + 3).await.unwrap();

    assert_eq!(order_now(models, row.order_id).await, Some(row));
    assert_eq!(models.customer_stats(&c).await.unwrap().value, Some(stats));
    let parked = store.dead_letters(Some(ORDERS)).await.unwrap();
    assert!(parked.contains(&failed), "{parked:?}");
    assert_eq!(models.position(ORDERS).await.unwrap(), base + 3);
    let mut next = store.begin(ORDERS, Generation::Live).await.unwrap();
    assert_eq!(next.checkpoint().await.unwrap(), base + 3);
}

/// Dropping a batch without `commit` undoes its rows and dead letters; the checkpoint stays.
pub async fn a_batch_dropped_without_commit_leaves_no_trace(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let before = models.position(ORDERS).await.unwrap();
    let c = customer("dropped");
    let row = order(&c, base + 1, 1);
    let failed = letter(ORDERS, recorded(&stream("order"), 1, base + 2), None);

    let mut batch = store.begin(ORDERS, Generation::Live).await.unwrap();
    batch.put_order_summary(&row).await.unwrap();
    batch.put_customer_stats_many(&[stats(&c)]).await.unwrap();
    batch.park(&failed).await.unwrap();
    drop(batch);

    assert_eq!(order_now(models, row.order_id).await, None);
    assert_eq!(models.customer_stats(&c).await.unwrap().value, None);
    assert!(!parked_positions(store, ORDERS).await.contains(&(base + 2)));
    assert_eq!(models.position(ORDERS).await.unwrap(), before);
    let mut next = store.begin(ORDERS, Generation::Live).await.unwrap();
    assert_eq!(next.checkpoint().await.unwrap(), before);
}

/// While one batch holds a projection's checkpoint, a second batch of it does not get the
/// checkpoint; once the first commits, the second starts from the position it committed.
///
/// This is what makes [`ReadModelError::CheckpointMoved`] unreachable through the ports: no
/// port call can move a checkpoint that a batch holds, so that error is only the backstop for
/// a storage whose lock failed, and no case here can provoke it.
pub async fn a_second_batch_of_a_projection_waits_for_the_first_and_starts_from_its_checkpoint(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    // Two connections open before the race, so the second batch is not slowed by connecting
    // while the first works.
    let (warm, _) = futures::join!(models.position(ORDERS), models.position(ACCOUNTS));
    warm.unwrap();
    let mut first = store.begin(ORDERS, Generation::Live).await.unwrap();
    let start = first.checkpoint().await.unwrap();
    // Whether an adapter takes the checkpoint in `begin` or in `checkpoint`, the second worker
    // must wait in one of them.
    let mut second = Box::pin(async {
        let mut batch = store.begin(ORDERS, Generation::Live).await?;
        let checkpoint = batch.checkpoint().await?;
        Ok::<_, ReadModelError>((batch, checkpoint))
    });

    for _ in 0..50 {
        match select(&mut second, first.order_summary(Uuid::now_v7())).await {
            Either::Left((outcome, _)) => panic!(
                "a second batch got past the checkpoint the first one holds: {:?}",
                outcome.map(|(_, checkpoint)| checkpoint)
            ),
            Either::Right((read, _)) => assert_eq!(read.unwrap(), None),
        }
    }
    first.commit(start + 1).await.unwrap();
    let (batch, checkpoint) = second.await.unwrap();
    batch.commit(start + 2).await.unwrap();

    assert_eq!(checkpoint, start + 1);
    assert_eq!(models.position(ORDERS).await.unwrap(), start + 2);
}

/// A savepoint before each event: rolling back to it undoes that event's changes (rows and
/// dead letters), releasing it keeps them, and the batch goes on either way.
pub async fn changes_after_a_savepoint_are_undone_by_rolling_back_to_it_and_kept_by_releasing_it(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let c = customer("savepoints");
    let kept = order(&c, base + 1, 1);
    let confirmed = order_at_version(&kept, 2, OrderSummaryStatus::Confirmed);
    let shipped = order_at_version(&kept, 3, OrderSummaryStatus::Shipped);
    let released = order(&c, base + 2, 1);
    let undone = order(&c, base + 3, 1);
    let after_rollback = order(&c, base + 4, 1);
    let undone_letter = letter(ORDERS, recorded(&stream("order"), 1, base + 3), None);

    let mut batch = store.begin(ORDERS, Generation::Live).await.unwrap();
    batch.put_order_summary(&kept).await.unwrap();
    batch.savepoint().await.unwrap();
    batch.put_order_summary(&confirmed).await.unwrap();
    batch.put_order_summary(&released).await.unwrap();
    batch.release_savepoint().await.unwrap();
    batch.savepoint().await.unwrap();
    batch.put_order_summary(&shipped).await.unwrap();
    batch.put_order_summary(&undone).await.unwrap();
    batch.park(&undone_letter).await.unwrap();
    batch.rollback_to_savepoint().await.unwrap();
    let inside = (
        batch.order_summary(kept.order_id).await.unwrap(),
        batch.order_summary(undone.order_id).await.unwrap(),
    );
    batch.savepoint().await.unwrap();
    batch.put_order_summary(&after_rollback).await.unwrap();
    batch.release_savepoint().await.unwrap();
    batch.commit(base + 4).await.unwrap();

    assert_eq!(inside, (Some(confirmed.clone()), None), "within the batch");
    assert_eq!(order_now(models, kept.order_id).await, Some(confirmed));
    assert_eq!(order_now(models, released.order_id).await, Some(released));
    assert_eq!(order_now(models, undone.order_id).await, None);
    assert_eq!(
        order_now(models, after_rollback.order_id).await,
        Some(after_rollback)
    );
    assert!(!parked_positions(store, ORDERS).await.contains(&(base + 3)));
}

/// The status rows: what `set_state` said last, the checkpoint, and how many events are parked.
pub async fn checkpoints_show_each_projections_position_state_and_dead_letter_count(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let search_position = models.position(SEARCH).await.unwrap();
    let parked_before = parked_positions(store, ORDERS).await.len();
    let s = stream("order");
    let failed = letter(ORDERS, recorded(&s, 1, base + 1), None);
    let waiting = letter(ORDERS, recorded(&s, 2, base + 2), Some(base + 1));
    park(store, ORDERS, &[&failed, &waiting]).await;

    store.set_state(SEARCH, "catching up").await.unwrap();
    let first = models.checkpoints().await.unwrap();
    store.set_state(SEARCH, "running").await.unwrap();
    let second = models.checkpoints().await.unwrap();

    let row = |rows: &[crate::read_model::CheckpointRow], name: ProjectionName| {
        rows.iter()
            .find(|r| r.projection == name.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no checkpoint row of {name}: {rows:?}"))
    };
    let search = row(&first, SEARCH);
    assert_eq!(search.state.as_deref(), Some("catching up"));
    assert!(search.state_updated_at.is_some());
    assert_eq!(
        search.position, search_position,
        "set_state moves no checkpoint"
    );
    assert_eq!(row(&second, SEARCH).state.as_deref(), Some("running"));
    assert_eq!(models.position(SEARCH).await.unwrap(), search_position);
    let orders = row(&second, ORDERS);
    assert_eq!(orders.position, models.position(ORDERS).await.unwrap());
    assert_eq!(
        orders.dead_letters,
        u64::try_from(parked_before + 2).unwrap()
    );
}

/// Each query answers with the checkpoint of the projection that writes what it reads (orders
/// for orders and customer statistics, accounts for accounts and transactions), found rows or
/// not.
pub async fn every_answer_carries_the_checkpoint_of_its_projection(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    // Two different checkpoints, so that answering with the wrong projection's shows.
    let base = head(store, models).await;
    let (orders_at, accounts_at) = (base + 1, base + 2);
    let c = customer("positions");
    let row = order(&c, base + 1, 1);
    let owner = account(&c, 1);
    let mut batch = store.begin(ORDERS, Generation::Live).await.unwrap();
    batch.put_order_summary(&row).await.unwrap();
    batch.put_customer_stats_many(&[stats(&c)]).await.unwrap();
    batch.commit(orders_at).await.unwrap();
    let mut batch = store.begin(ACCOUNTS, Generation::Live).await.unwrap();
    batch.put_account(&owner).await.unwrap();
    batch
        .add_transaction(&transaction(owner.account_id, 1, base + 2))
        .await
        .unwrap();
    batch.commit(accounts_at).await.unwrap();

    let id = row.order_id;
    let found = [
        models.order_summary(id).await.unwrap().position,
        models.customer_orders(&c, None, 10).await.unwrap().position,
        models.customer_stats(&c).await.unwrap().position,
    ];
    let missing = [
        models.order_summary(Uuid::now_v7()).await.unwrap().position,
        models
            .customer_orders("nobody", None, 10)
            .await
            .unwrap()
            .position,
        models.customer_stats("nobody").await.unwrap().position,
    ];
    let accounts = [
        models.account(owner.account_id).await.unwrap().position,
        (models
            .account_transactions(owner.account_id, None, 10)
            .await)
            .unwrap()
            .position,
        models.account(Uuid::now_v7()).await.unwrap().position,
        (models.account_transactions(Uuid::now_v7(), None, 10).await)
            .unwrap()
            .position,
    ];

    assert_eq!(found, [orders_at; 3], "orders, found");
    assert_eq!(missing, [orders_at; 3], "orders, missing");
    assert_eq!(accounts, [accounts_at; 4], "accounts, found and missing");
    assert_eq!(models.position(ORDERS).await.unwrap(), orders_at);
    assert_eq!(models.position(ACCOUNTS).await.unwrap(), accounts_at);
}
