//! Appends: every expected-version mode accepted and refused with the stream's actual version,
//! and atomicity (an append lands whole or not at all, and never leaves a hole in the log).

use crate::event_store::{
    AppendOutcome, AppendRequest, EventStore, EventStoreError, ExpectedVersion,
};

use super::{
    after, append, head, positions, read_after, read_stream, request, stream, versions, wrong,
};

/// `NoStream` appends to a stream without events; the outcome names the append's last event.
pub async fn no_stream_is_accepted_for_a_new_stream(store: &dyn EventStore) {
    let start = head(store).await;
    let order = stream("order");

    let outcome = append(store, &order, ExpectedVersion::NoStream, 2).await;

    assert_eq!(
        outcome,
        Ok(AppendOutcome {
            stream_version: 2,
            global_position: start + 2,
        })
    );
}

/// `NoStream` is refused once the stream has events, naming the version it is at.
pub async fn no_stream_is_refused_for_an_existing_stream_with_its_actual_version(
    store: &dyn EventStore,
) {
    let order = stream("order");
    append(store, &order, ExpectedVersion::Any, 3)
        .await
        .unwrap();

    let refused = append(store, &order, ExpectedVersion::NoStream, 1).await;

    assert_eq!(refused, Err(wrong(&order, ExpectedVersion::NoStream, 3)));
    assert_eq!(read_stream(store, &order).await.len(), 3);
}

/// `StreamExists` appends after a stream's first event.
pub async fn stream_exists_is_accepted_for_an_existing_stream(store: &dyn EventStore) {
    let order = stream("order");
    append(store, &order, ExpectedVersion::Any, 1)
        .await
        .unwrap();

    let outcome = append(store, &order, ExpectedVersion::StreamExists, 1).await;

    assert_eq!(outcome.unwrap().stream_version, 2);
}

/// `StreamExists` is refused for a stream without events, which is at version 0, and the
/// refusal leaves the log as it was.
pub async fn stream_exists_is_refused_for_a_new_stream_with_version_zero(store: &dyn EventStore) {
    let start = head(store).await;
    let order = stream("order");

    let refused = append(store, &order, ExpectedVersion::StreamExists, 1).await;

    assert_eq!(
        refused,
        Err(wrong(&order, ExpectedVersion::StreamExists, 0))
    );
    assert!(read_stream(store, &order).await.is_empty());
    assert!(read_after(store, start).await.is_empty());
    assert_eq!(head(store).await, start);
}

/// `Exact(v)` appends when the stream's last event has version `v`.
pub async fn exact_version_is_accepted_when_it_matches(store: &dyn EventStore) {
    let order = stream("order");
    append(store, &order, ExpectedVersion::Any, 2)
        .await
        .unwrap();
    let start = head(store).await;

    let outcome = append(store, &order, ExpectedVersion::Exact(2), 3).await;

    assert_eq!(
        outcome,
        Ok(AppendOutcome {
            stream_version: 5,
            global_position: start + 3,
        })
    );
}

/// `Exact(v)` is refused whether the writer is behind or ahead, naming the actual version, and
/// neither refusal appends anything.
pub async fn exact_version_is_refused_behind_or_ahead_with_the_actual_version(
    store: &dyn EventStore,
) {
    let order = stream("order");
    append(store, &order, ExpectedVersion::Any, 2)
        .await
        .unwrap();

    let behind = append(store, &order, ExpectedVersion::Exact(1), 1).await;
    let ahead = append(store, &order, ExpectedVersion::Exact(3), 1).await;

    assert_eq!(behind, Err(wrong(&order, ExpectedVersion::Exact(1), 2)));
    assert_eq!(ahead, Err(wrong(&order, ExpectedVersion::Exact(3), 2)));
    assert_eq!(versions(&read_stream(store, &order).await), [1, 2]);
}

/// `Exact(0)` means "the stream is empty": accepted once, then refused.
pub async fn exact_zero_behaves_as_no_stream(store: &dyn EventStore) {
    let order = stream("order");

    let first = append(store, &order, ExpectedVersion::Exact(0), 1).await;
    let second = append(store, &order, ExpectedVersion::Exact(0), 1).await;

    assert_eq!(first.unwrap().stream_version, 1);
    assert_eq!(second, Err(wrong(&order, ExpectedVersion::Exact(0), 1)));
}

/// `Any` skips the check: it starts a stream and extends it.
pub async fn any_version_appends_to_new_and_existing_streams(store: &dyn EventStore) {
    let order = stream("order");

    let first = append(store, &order, ExpectedVersion::Any, 1).await;
    let second = append(store, &order, ExpectedVersion::Any, 2).await;

    assert_eq!(first.unwrap().stream_version, 1);
    assert_eq!(second.unwrap().stream_version, 3);
}

/// An append must carry an event, or it would acknowledge nothing at no version.
pub async fn an_append_without_events_is_refused(store: &dyn EventStore) {
    let start = head(store).await;
    let order = stream("order");

    let refused = append(store, &order, ExpectedVersion::Any, 0).await;

    assert_eq!(refused, Err(EventStoreError::EmptyAppend));
    assert!(read_stream(store, &order).await.is_empty());
    assert_eq!(head(store).await, start);
}

/// The events of one append take consecutive versions and consecutive positions, in the order
/// of the request, with no other event between them.
pub async fn a_multi_event_append_lands_as_one_contiguous_block(store: &dyn EventStore) {
    let start = head(store).await;
    let order = stream("order");
    let appended = request(&order, ExpectedVersion::NoStream, 3);
    let ids: Vec<_> = appended.events.iter().map(|e| e.event_id).collect();

    let outcome = store.append(appended).await.unwrap();

    let log = read_after(store, start).await;
    assert_eq!(positions(&log), after(start, 3));
    assert_eq!(versions(&log), [1, 2, 3]);
    assert!(log.iter().all(|e| e.stream_id == order));
    assert_eq!(log.iter().map(|e| e.event_id).collect::<Vec<_>>(), ids);
    assert_eq!(outcome.global_position, start + 3);
}

/// A refused append of several events leaves none of them, in the stream or in the log.
pub async fn a_refused_multi_event_append_leaves_nothing_behind(store: &dyn EventStore) {
    let order = stream("order");
    append(store, &order, ExpectedVersion::Any, 1)
        .await
        .unwrap();
    let start = head(store).await;

    let refused = append(store, &order, ExpectedVersion::Exact(5), 3).await;

    assert_eq!(refused, Err(wrong(&order, ExpectedVersion::Exact(5), 1)));
    assert_eq!(read_stream(store, &order).await.len(), 1);
    assert!(read_after(store, start).await.is_empty());
    assert_eq!(head(store).await, start);
}

/// A refused append takes no position: the next append gets the very next one.
pub async fn positions_stay_dense_after_a_refused_append(store: &dyn EventStore) {
    let (order, account) = (stream("order"), stream("account"));
    append(store, &order, ExpectedVersion::Any, 1)
        .await
        .unwrap();
    let start = head(store).await;
    append(store, &order, ExpectedVersion::NoStream, 3)
        .await
        .unwrap_err();

    let next = append(store, &account, ExpectedVersion::Any, 1).await;

    assert_eq!(next.unwrap().global_position, start + 1);
    assert_eq!(positions(&read_after(store, start).await), [start + 1]);
}

/// An append that fails while writing (an event id already stored) keeps none of its events and
/// no position it may have taken before failing: a reader would wait forever for that hole.
pub async fn an_append_reusing_a_stored_event_id_fails_and_leaves_no_gap(store: &dyn EventStore) {
    let account = stream("account");
    let duplicate_id = a_stored_event_id(store).await;
    // The second event is the duplicate, so the first one was already on its way in.
    let mut reused = request(&account, ExpectedVersion::Any, 2);
    reused.events[1].event_id = duplicate_id;

    fails_whole_then_the_next_lands(store, reused, ExpectedVersion::NoStream, 1).await;
    assert_eq!(read_stream(store, &account).await.len(), 1);
}

/// The same with one event at an exact version: the append a command on an existing aggregate
/// makes, which a store may write by a route of its own (PostgreSQL's `strata_append_one`). It
/// fails whole, the stream stays where it was, and the next append takes the next position.
pub async fn one_event_at_an_exact_version_reusing_a_stored_event_id_fails_and_leaves_no_gap(
    store: &dyn EventStore,
) {
    let account = stream("account");
    let duplicate_id = a_stored_event_id(store).await;
    append(store, &account, ExpectedVersion::NoStream, 1)
        .await
        .unwrap();
    let mut reused = request(&account, ExpectedVersion::Exact(1), 1);
    reused.events[0].event_id = duplicate_id;

    fails_whole_then_the_next_lands(store, reused, ExpectedVersion::Exact(1), 2).await;
}

/// The id of an event just stored in a stream of its own.
async fn a_stored_event_id(store: &dyn EventStore) -> uuid::Uuid {
    let stored = request(&stream("order"), ExpectedVersion::Any, 1);
    let id = stored.events[0].event_id;
    store.append(stored).await.unwrap();
    id
}

/// Appends `reused` (an event of it has a stored event's id): refused as the store's fault, with
/// nothing kept; the next append of its stream, expecting `next`, lands right after the head of
/// before, at `version`.
async fn fails_whole_then_the_next_lands(
    store: &dyn EventStore,
    reused: AppendRequest,
    next: ExpectedVersion,
    version: u64,
) {
    let start = head(store).await;
    let stream_id = reused.stream_id.clone();

    let failed = store.append(reused).await;
    let landed = append(store, &stream_id, next, 1).await;

    assert!(
        matches!(failed, Err(EventStoreError::Backend(_))),
        "{failed:?}"
    );
    assert_eq!(
        landed,
        Ok(AppendOutcome {
            stream_version: version,
            global_position: start + 1,
        })
    );
    assert_eq!(head(store).await, start + 1);
}
