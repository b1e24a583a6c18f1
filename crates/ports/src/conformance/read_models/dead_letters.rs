//! Dead letters: a parked event keeps its whole envelope, is parked once, blocks its stream,
//! and is taken back (with the events waiting behind it) only by a batch that commits.

use std::collections::HashMap;

use super::{
    ACCOUNTS, ORDERS, head, is_not_found, letter, park, parked_positions, positions, recorded,
    stream,
};
use crate::projection::Generation;
use crate::read_model::{DeadLetter, ProjectionStore, ReadModels};

/// Every field of the event and of the letter reads back as parked.
pub async fn a_parked_event_reads_back_with_its_whole_envelope(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let failed = letter(ORDERS, recorded(&stream("order"), 4, base + 1), None);
    let mut bare = letter(
        ORDERS,
        recorded(&stream("order"), 1, base + 2),
        Some(base + 1),
    );
    bare.event.metadata = crate::event_store::Metadata::default();
    bare.event.data = serde_json::json!([]);
    bare.error = String::new();
    // JSON that PostgreSQL's `jsonb` refuses: a store parks whatever its log took.
    let mut unusual = letter(
        ORDERS,
        recorded(&stream("order"), 1, base + 3),
        Some(base + 1),
    );
    unusual.event.data = serde_json::json!({"note": "before\u{0}after"});
    unusual.event.metadata.correlation_id = Some("req\u{0}1".to_owned());

    park(store, ORDERS, &[&failed, &bare, &unusual]).await;

    let parked = store.dead_letters(Some(ORDERS)).await.unwrap();
    let find = |position: u64| {
        parked
            .iter()
            .find(|l| l.event.global_position == position)
            .cloned()
    };
    assert_eq!(find(base + 1), Some(failed));
    assert_eq!(find(base + 2), Some(bare));
    assert_eq!(find(base + 3), Some(unusual));
}

/// Parking an event already parked changes nothing: the first record (its error, attempts and
/// time) stays, within one batch or across batches.
pub async fn parking_the_same_event_twice_keeps_the_first_record(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let first = letter(ORDERS, recorded(&stream("order"), 1, base + 1), None);
    let again = DeadLetter {
        error: "a later failure".to_owned(),
        attempts: 7,
        parked_at: first.parked_at + time::Duration::hours(1),
        ..first.clone()
    };

    park(store, ORDERS, &[&first, &again]).await;
    park(store, ORDERS, &[&again]).await;

    let parked: Vec<DeadLetter> = store
        .dead_letters(Some(ORDERS))
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.event.global_position == base + 1)
        .collect();
    assert_eq!(parked, vec![first]);
}

/// Only streams with a failed event in this projection are blocked, each with the position of
/// that failed event (not of the events waiting behind it).
pub async fn blocked_streams_name_the_streams_whose_event_failed_with_its_position(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let blocked = stream("order");
    let clean = stream("order");
    let elsewhere = stream("account");
    park(
        store,
        ORDERS,
        &[
            &letter(ORDERS, recorded(&blocked, 3, base + 1), None),
            &letter(ORDERS, recorded(&blocked, 4, base + 2), Some(base + 1)),
        ],
    )
    .await;
    park(
        store,
        ACCOUNTS,
        &[&letter(ACCOUNTS, recorded(&elsewhere, 1, base + 3), None)],
    )
    .await;
    let asked = [&blocked, &clean, &elsewhere].map(|s| s.as_str().to_owned());

    let mut orders = store.begin(ORDERS, Generation::Live).await.unwrap();
    let in_orders = orders.blocked_streams(&asked).await.unwrap();
    let none_asked = orders.blocked_streams(&[]).await.unwrap();
    drop(orders);
    let mut accounts = store.begin(ACCOUNTS, Generation::Live).await.unwrap();
    let in_accounts = accounts.blocked_streams(&asked).await.unwrap();
    drop(accounts);

    assert_eq!(
        in_orders,
        HashMap::from([(blocked.as_str().to_owned(), base + 1)])
    );
    assert!(none_asked.is_empty(), "{none_asked:?}");
    assert_eq!(
        in_accounts,
        HashMap::from([(elsewhere.as_str().to_owned(), base + 3)])
    );
}

/// Taking the failed event at `p` returns it and every event waiting behind it, sorted by
/// position however they were parked; other failed events stay parked.
pub async fn taking_dead_letters_returns_the_failed_event_and_those_behind_it_in_position_order(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let s = stream("order");
    let other = stream("order");
    let failed = letter(ORDERS, recorded(&s, 2, base + 1), None);
    let unrelated = letter(ORDERS, recorded(&other, 1, base + 2), None);
    let second = letter(ORDERS, recorded(&s, 3, base + 3), Some(base + 1));
    let third = letter(ORDERS, recorded(&s, 4, base + 4), Some(base + 1));
    let behind_unrelated = letter(ORDERS, recorded(&other, 2, base + 5), Some(base + 2));
    park(
        store,
        ORDERS,
        &[&third, &behind_unrelated, &failed, &unrelated, &second],
    )
    .await;

    let mut batch = store.begin(ORDERS, Generation::Live).await.unwrap();
    let checkpoint = batch.checkpoint().await.unwrap();
    let taken = batch.take_dead_letters(base + 1).await.unwrap();
    let still_blocked = batch
        .blocked_streams(&[s.as_str().to_owned(), other.as_str().to_owned()])
        .await
        .unwrap();
    batch.commit(checkpoint).await.unwrap();

    assert_eq!(taken, vec![failed, second, third]);
    assert_eq!(
        still_blocked,
        HashMap::from([(other.as_str().to_owned(), base + 2)]),
        "within the batch"
    );
    let left: Vec<u64> = parked_positions(store, ORDERS)
        .await
        .into_iter()
        .filter(|p| *p > base)
        .collect();
    assert_eq!(left, vec![base + 2, base + 5]);
}

/// A batch dropped after taking dead letters leaves them parked and their stream blocked.
pub async fn taken_dead_letters_stay_parked_unless_the_batch_commits(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let s = stream("order");
    let failed = letter(ORDERS, recorded(&s, 1, base + 1), None);
    let waiting = letter(ORDERS, recorded(&s, 2, base + 2), Some(base + 1));
    park(store, ORDERS, &[&failed, &waiting]).await;

    let mut batch = store.begin(ORDERS, Generation::Live).await.unwrap();
    let taken = batch.take_dead_letters(base + 1).await.unwrap();
    drop(batch);

    assert_eq!(positions(&taken), vec![base + 1, base + 2]);
    let left: Vec<u64> = parked_positions(store, ORDERS)
        .await
        .into_iter()
        .filter(|p| *p > base)
        .collect();
    assert_eq!(left, vec![base + 1, base + 2]);
    let mut next = store.begin(ORDERS, Generation::Live).await.unwrap();
    let blocked = next
        .blocked_streams(&[s.as_str().to_owned()])
        .await
        .unwrap();
    assert_eq!(blocked, HashMap::from([(s.as_str().to_owned(), base + 1)]));
}

/// Only a failed event of this projection can be taken: not an empty position, not an event
/// that only waits, not another projection's; and a refused take removes nothing.
pub async fn taking_dead_letters_where_no_event_failed_is_not_found(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let s = stream("order");
    let failed = letter(ORDERS, recorded(&s, 1, base + 1), None);
    let waiting = letter(ORDERS, recorded(&s, 2, base + 2), Some(base + 1));
    let in_accounts = letter(ACCOUNTS, recorded(&stream("account"), 1, base + 3), None);
    park(store, ORDERS, &[&failed, &waiting]).await;
    park(store, ACCOUNTS, &[&in_accounts]).await;

    let mut batch = store.begin(ORDERS, Generation::Live).await.unwrap();
    let checkpoint = batch.checkpoint().await.unwrap();
    let nothing_there = batch.take_dead_letters(base + 100).await;
    let only_waits = batch.take_dead_letters(base + 2).await;
    let other_projection = batch.take_dead_letters(base + 3).await;
    batch.commit(checkpoint).await.unwrap();

    assert!(is_not_found(&nothing_there), "{nothing_there:?}");
    assert!(is_not_found(&only_waits), "{only_waits:?}");
    assert!(is_not_found(&other_projection), "{other_projection:?}");
    let orders: Vec<u64> = parked_positions(store, ORDERS)
        .await
        .into_iter()
        .filter(|p| *p > base)
        .collect();
    assert_eq!(orders, vec![base + 1, base + 2]);
    assert!(
        parked_positions(store, ACCOUNTS)
            .await
            .contains(&(base + 3))
    );
}

/// `dead_letters(Some(p))` lists only `p`'s, by position; `dead_letters(None)` lists every
/// projection's, by projection and then by position.
pub async fn dead_letters_are_listed_per_projection_or_all_in_position_order(
    store: &dyn ProjectionStore,
    models: &dyn ReadModels,
) {
    let base = head(store, models).await;
    let orders_late = letter(ORDERS, recorded(&stream("order"), 1, base + 3), None);
    let orders_early = letter(ORDERS, recorded(&stream("order"), 1, base + 1), None);
    let accounts = letter(ACCOUNTS, recorded(&stream("account"), 1, base + 2), None);
    park(store, ORDERS, &[&orders_late, &orders_early]).await;
    park(store, ACCOUNTS, &[&accounts]).await;

    let new = |letters: Vec<DeadLetter>| -> Vec<(String, u64)> {
        letters
            .into_iter()
            .filter(|l| l.event.global_position > base)
            .map(|l| (l.projection, l.event.global_position))
            .collect()
    };
    let orders = new(store.dead_letters(Some(ORDERS)).await.unwrap());
    let all = new(store.dead_letters(None).await.unwrap());

    assert_eq!(
        orders,
        vec![
            (ORDERS.to_string(), base + 1),
            (ORDERS.to_string(), base + 3)
        ]
    );
    assert_eq!(
        all,
        vec![
            (ACCOUNTS.to_string(), base + 2),
            (ORDERS.to_string(), base + 1),
            (ORDERS.to_string(), base + 3),
        ]
    );
    // Each listing is sorted as a whole, not only the letters of this case.
    let everything = store.dead_letters(None).await.unwrap();
    let keys: Vec<(&str, u64)> = everything
        .iter()
        .map(|l| (l.projection.as_str(), l.event.global_position))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
}
