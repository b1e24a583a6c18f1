//! Rebuilds: a second generation of a projection's tables, checkpoint and dead letters, filled
//! beside the live one without being seen, swapped in whole once it has caught up, or dropped.
//! Every case leaves no rebuild in progress behind.

use super::{
    ORDERS, SEARCH, Swap, customer, head, is_not_found, letter, order, order_now, park, put_orders,
    recorded, stats, stream,
};
use crate::projection::Generation;
use crate::projection::ProjectionName;
use crate::read_model::{DeadLetter, ProjectionStore, ReadModels};

/// The dead letters of a generation, as `dead_letters` lists them (rebuilds under their own
/// name, so only `projection`'s own rows).
async fn letters_of(store: &dyn ProjectionStore, projection: ProjectionName) -> Vec<DeadLetter> {
    store.dead_letters(Some(projection)).await.unwrap()
}

/// Without `start_rebuild` there is no rebuild generation; after it, the rebuild sees none of
/// the live rows or dead letters and starts at checkpoint 0, while readers still see the live
/// generation.
pub async fn a_rebuild_starts_empty_at_checkpoint_zero_without_the_live_dead_letters(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let c = customer("rebuild-empty");
    let live = order(&c, base + 1, 1);
    put_orders(store, &[&live]).await;
    let s = stream("order");
    park(
        store,
        ORDERS,
        &[&letter(ORDERS, recorded(&s, 1, base + 5), None)],
    )
    .await;
    let live_position = models.position(ORDERS).await.unwrap();
    let live_letters = letters_of(store, ORDERS).await;

    let before_start = store.begin(ORDERS, Generation::Rebuild).await;
    store.start_rebuild(ORDERS).await.unwrap();
    let mut batch = store.begin(ORDERS, Generation::Rebuild).await.unwrap();
    let checkpoint = batch.checkpoint().await.unwrap();
    let row = batch.order_summary(live.order_id).await.unwrap();
    let blocked = batch
        .blocked_streams(&[s.as_str().to_owned()])
        .await
        .unwrap();
    let take = batch.take_dead_letters(base + 5).await;
    drop(batch);
    store.abandon_rebuild(ORDERS).await.unwrap();

    assert!(is_not_found(&before_start));
    assert_eq!(checkpoint, 0);
    assert_eq!(row, None);
    assert!(blocked.is_empty(), "{blocked:?}");
    assert!(is_not_found(&take), "{take:?}");
    assert_eq!(order_now(models, live.order_id).await, Some(live));
    assert_eq!(models.position(ORDERS).await.unwrap(), live_position);
    assert_eq!(letters_of(store, ORDERS).await, live_letters);
}

/// What a rebuild writes is not read until it is swapped in; a rebuild short of the live
/// checkpoint is not swapped in (and the swap of the other port is not called).
pub async fn a_rebuild_behind_the_live_checkpoint_stays_invisible_and_is_not_swapped_in(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let c = customer("rebuild-behind");
    let live = order(&c, base + 1, 1);
    put_orders(store, &[&live]).await;
    let live_position = put_orders(store, &[]).await;
    let rebuilt = order(&c, 1, 1);

    store.start_rebuild(ORDERS).await.unwrap();
    let mut batch = store.begin(ORDERS, Generation::Rebuild).await.unwrap();
    batch.put_order_summary(&rebuilt).await.unwrap();
    batch.put_customer_stats_many(&[stats(&c)]).await.unwrap();
    batch.commit(live_position - 1).await.unwrap();
    let seen = order_now(models, rebuilt.order_id).await;
    let seen_stats = models.customer_stats(&c).await.unwrap().value;
    let swap = Swap::default();
    let finished = store.finish_rebuild(ORDERS, &swap).await.unwrap();
    let mut again = store.begin(ORDERS, Generation::Rebuild).await.unwrap();
    let rebuild_checkpoint = again.checkpoint().await.unwrap();
    drop(again);
    store.abandon_rebuild(ORDERS).await.unwrap();

    assert_eq!(seen, None);
    assert_eq!(seen_stats, None);
    assert!(!finished);
    assert_eq!(swap.calls(), 0);
    assert_eq!(rebuild_checkpoint, live_position - 1, "the rebuild goes on");
    assert_eq!(order_now(models, live.order_id).await, Some(live));
    assert_eq!(models.position(ORDERS).await.unwrap(), live_position);
}

/// A rebuild at or past the live checkpoint replaces the live rows (those it did not write are
/// gone), the live checkpoint (now the rebuild's) and the live dead letters (now the
/// rebuild's), calling the other port's swap once; the rebuild generation is gone after.
pub async fn a_caught_up_rebuild_replaces_the_live_rows_checkpoint_and_dead_letters(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let c = customer("rebuild-swap");
    let retired = order(&c, base + 1, 1);
    put_orders(store, &[&retired]).await;
    park(
        store,
        ORDERS,
        &[&letter(
            ORDERS,
            recorded(&stream("order"), 1, base + 2),
            None,
        )],
    )
    .await;
    let live_position = models.position(ORDERS).await.unwrap();
    let rebuilt = order(&c, base + 1, 1);
    let rebuilt_stats = stats(&c);
    let rebuilt_letter = letter(ORDERS, recorded(&stream("order"), 1, base + 3), None);

    store.start_rebuild(ORDERS).await.unwrap();
    let mut batch = store.begin(ORDERS, Generation::Rebuild).await.unwrap();
    batch.put_order_summary(&rebuilt).await.unwrap();
    batch
        .put_customer_stats_many(std::slice::from_ref(&rebuilt_stats))
        .await
        .unwrap();
    batch.park(&rebuilt_letter).await.unwrap();
    batch.commit(live_position + 1).await.unwrap();
    let swap = Swap::default();
    let finished = store.finish_rebuild(ORDERS, &swap).await.unwrap();

    assert!(finished);
    assert_eq!(swap.calls(), 1);
    assert_eq!(order_now(models, retired.order_id).await, None);
    assert_eq!(order_now(models, rebuilt.order_id).await, Some(rebuilt));
    assert_eq!(
        models.customer_stats(&c).await.unwrap().value,
        Some(rebuilt_stats)
    );
    assert_eq!(models.position(ORDERS).await.unwrap(), live_position + 1);
    assert_eq!(letters_of(store, ORDERS).await, vec![rebuilt_letter]);
    let after = store.begin(ORDERS, Generation::Rebuild).await;
    assert!(is_not_found(&after), "the rebuild generation is gone");
    let mut next = store.begin(ORDERS, Generation::Live).await.unwrap();
    assert_eq!(next.checkpoint().await.unwrap(), live_position + 1);
    // The swapped-in tables take writes like the old ones.
    let written = order(&c, base + 4, 1);
    next.put_order_summary(&written).await.unwrap();
    next.commit(live_position + 2).await.unwrap();
    assert_eq!(order_now(models, written.order_id).await, Some(written));
}

/// When the other port's swap fails, `finish_rebuild` fails and nothing moved: readers see the
/// live generation, and the rebuild is still there to finish later.
pub async fn a_failed_swap_leaves_the_live_generation_and_the_rebuild_as_they_were(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let c = customer("rebuild-failed-swap");
    let live = order(&c, base + 1, 1);
    let live_position = put_orders(store, &[&live]).await;
    let live_letters = letters_of(store, ORDERS).await;
    let rebuilt = order(&c, base + 2, 1);

    store.start_rebuild(ORDERS).await.unwrap();
    let mut batch = store.begin(ORDERS, Generation::Rebuild).await.unwrap();
    batch.put_order_summary(&rebuilt).await.unwrap();
    batch.commit(live_position).await.unwrap();
    let failing = Swap::failing();
    let outcome = store.finish_rebuild(ORDERS, &failing).await;
    let mut kept = store.begin(ORDERS, Generation::Rebuild).await.unwrap();
    let kept_checkpoint = kept.checkpoint().await.unwrap();
    let kept_row = kept.order_summary(rebuilt.order_id).await.unwrap();
    drop(kept);
    let live_row = order_now(models, live.order_id).await;
    let seen_rebuilt = order_now(models, rebuilt.order_id).await;
    let position = models.position(ORDERS).await.unwrap();
    let letters = letters_of(store, ORDERS).await;
    store.abandon_rebuild(ORDERS).await.unwrap();

    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(failing.calls(), 1);
    assert_eq!(live_row, Some(live));
    assert_eq!(seen_rebuilt, None);
    assert_eq!(position, live_position);
    assert_eq!(letters, live_letters);
    assert_eq!(kept_checkpoint, live_position);
    assert_eq!(kept_row, Some(rebuilt));
}

/// Abandoning drops the rebuild's rows, checkpoint and dead letters and touches nothing live;
/// the next rebuild starts empty again. Abandoning when there is no rebuild does nothing.
pub async fn an_abandoned_rebuild_is_gone_and_the_live_generation_is_untouched(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let c = customer("rebuild-abandoned");
    let live = order(&c, base + 1, 1);
    let live_position = put_orders(store, &[&live]).await;
    let live_letters = letters_of(store, ORDERS).await;
    let all_letters = store.dead_letters(None).await.unwrap();
    let rebuilt = order(&c, base + 2, 1);
    let rebuilt_letter = letter(ORDERS, recorded(&stream("order"), 1, base + 3), None);

    store.start_rebuild(ORDERS).await.unwrap();
    let mut batch = store.begin(ORDERS, Generation::Rebuild).await.unwrap();
    batch.put_order_summary(&rebuilt).await.unwrap();
    batch.park(&rebuilt_letter).await.unwrap();
    batch.commit(live_position + 1).await.unwrap();
    store.abandon_rebuild(ORDERS).await.unwrap();
    let gone = store.begin(ORDERS, Generation::Rebuild).await;
    let letters_after = store.dead_letters(None).await.unwrap();
    store.start_rebuild(ORDERS).await.unwrap();
    let mut fresh = store.begin(ORDERS, Generation::Rebuild).await.unwrap();
    let fresh_checkpoint = fresh.checkpoint().await.unwrap();
    let fresh_row = fresh.order_summary(rebuilt.order_id).await.unwrap();
    let fresh_blocked = fresh
        .blocked_streams(&[rebuilt_letter.event.stream_id.as_str().to_owned()])
        .await
        .unwrap();
    drop(fresh);
    store.abandon_rebuild(ORDERS).await.unwrap();
    let twice = store.abandon_rebuild(ORDERS).await;

    assert!(is_not_found(&gone), "the rebuild generation is gone");
    assert_eq!(letters_after, all_letters);
    assert_eq!(fresh_checkpoint, 0);
    assert_eq!(fresh_row, None);
    assert!(fresh_blocked.is_empty(), "{fresh_blocked:?}");
    assert!(twice.is_ok(), "{twice:?}");
    assert_eq!(order_now(models, live.order_id).await, Some(live));
    assert_eq!(models.position(ORDERS).await.unwrap(), live_position);
    assert_eq!(letters_of(store, ORDERS).await, live_letters);
}

/// A projection whose data lives behind another port (search) still rebuilds its checkpoint
/// and dead letters here, and swaps them in with the other port's swap.
pub async fn a_projection_without_tables_rebuilds_its_checkpoint_and_dead_letters(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    park(
        store,
        SEARCH,
        &[&letter(
            SEARCH,
            recorded(&stream("order"), 1, base + 1),
            None,
        )],
    )
    .await;
    let live_position = models.position(SEARCH).await.unwrap();
    let rebuilt_letter = letter(SEARCH, recorded(&stream("order"), 1, base + 2), None);

    store.start_rebuild(SEARCH).await.unwrap();
    let mut batch = store.begin(SEARCH, Generation::Rebuild).await.unwrap();
    let start = batch.checkpoint().await.unwrap();
    batch.park(&rebuilt_letter).await.unwrap();
    batch.commit(live_position).await.unwrap();
    let swap = Swap::default();
    let finished = store.finish_rebuild(SEARCH, &swap).await.unwrap();

    assert_eq!(start, 0);
    assert!(finished);
    assert_eq!(swap.calls(), 1);
    assert_eq!(models.position(SEARCH).await.unwrap(), live_position);
    assert_eq!(letters_of(store, SEARCH).await, vec![rebuilt_letter]);
    assert!(is_not_found(
        &store.begin(SEARCH, Generation::Rebuild).await
    ));
}
