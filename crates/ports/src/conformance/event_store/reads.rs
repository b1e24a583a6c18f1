//! Reading streams and the log: contiguity, bounds, the head, and the envelope kept as written.

use std::ops::ControlFlow;

use serde_json::json;

use crate::event_store::{
    AppendRequest, EventStore, ExpectedVersion, Metadata, PayloadRef, PayloadVisitor, StreamId,
};

use super::{
    RECORDED_AT, after, append, event, head, positions, read_after, read_stream, stream, versions,
};

/// An empty log is at position 0 and has nothing to read; needs the empty store [`super::run`]
/// is given.
pub async fn an_empty_log_is_at_position_zero_and_reads_nothing(store: &dyn EventStore) {
    let position = store.head_position().await.unwrap();
    let log = store.read_all(0, 10).await.unwrap();

    assert_eq!(position, 0);
    assert!(log.is_empty(), "{log:?}");
}

/// Versions count per stream and positions count for the whole log, both from one without
/// gaps, and the log lists appends in the order they committed.
pub async fn versions_and_positions_are_contiguous_across_streams_in_commit_order(
    store: &dyn EventStore,
) {
    let start = head(store).await;
    let (order, account) = (stream("order"), stream("account"));

    append(store, &order, ExpectedVersion::Any, 2)
        .await
        .unwrap();
    append(store, &account, ExpectedVersion::Any, 3)
        .await
        .unwrap();
    append(store, &order, ExpectedVersion::Any, 2)
        .await
        .unwrap();

    let log = read_after(store, start).await;
    assert_eq!(positions(&log), after(start, 7));
    let trail: Vec<_> = log
        .iter()
        .map(|e| (e.stream_id.clone(), e.stream_version))
        .collect();
    assert_eq!(
        trail,
        [
            (order.clone(), 1),
            (order.clone(), 2),
            (account.clone(), 1),
            (account.clone(), 2),
            (account.clone(), 3),
            (order.clone(), 3),
            (order.clone(), 4),
        ]
    );
}

/// An append's outcome is the stream version and global position of its last event.
pub async fn an_append_reports_its_last_version_and_position(store: &dyn EventStore) {
    let (order, account) = (stream("order"), stream("account"));
    append(store, &account, ExpectedVersion::Any, 4)
        .await
        .unwrap();
    let start = head(store).await;

    let outcome = append(store, &order, ExpectedVersion::Any, 3)
        .await
        .unwrap();

    assert_eq!(outcome.stream_version, 3);
    assert_eq!(outcome.global_position, start + 3);
    let last = read_stream(store, &order).await.pop().unwrap();
    assert_eq!(last.global_position, outcome.global_position);
}

/// A stream reads in version order from just after the given version, without other streams'
/// events; after its last version it reads as empty.
pub async fn read_stream_returns_the_events_after_a_version_in_order(store: &dyn EventStore) {
    let (order, account) = (stream("order"), stream("account"));
    append(store, &order, ExpectedVersion::Any, 2)
        .await
        .unwrap();
    append(store, &account, ExpectedVersion::Any, 1)
        .await
        .unwrap();
    append(store, &order, ExpectedVersion::Any, 2)
        .await
        .unwrap();

    let whole = store.read_stream(&order, 0).await.unwrap();
    let tail = store.read_stream(&order, 2).await.unwrap();
    let past_end = store.read_stream(&order, 4).await.unwrap();

    assert_eq!(versions(&whole), [1, 2, 3, 4]);
    assert_eq!(versions(&tail), [3, 4]);
    assert!(past_end.is_empty(), "{past_end:?}");
    assert!(whole.iter().all(|e| e.stream_id == order));
}

/// A stream nobody wrote to is not an error: it is empty.
pub async fn an_unknown_stream_reads_as_empty(store: &dyn EventStore) {
    let events = store.read_stream(&stream("order"), 0).await.unwrap();

    assert!(events.is_empty(), "{events:?}");
}

/// `read_all` returns at most `limit` events, starting just after the given position; a limit
/// of 0 returns nothing, and so does a position at the head.
pub async fn read_all_returns_at_most_limit_events_after_a_position(store: &dyn EventStore) {
    let start = head(store).await;
    append(store, &stream("order"), ExpectedVersion::Any, 3)
        .await
        .unwrap();
    append(store, &stream("account"), ExpectedVersion::Any, 3)
        .await
        .unwrap();

    let page = store.read_all(start + 2, 3).await.unwrap();
    let rest = store.read_all(start + 5, 3).await.unwrap();
    let none = store.read_all(start + 6, 3).await.unwrap();
    let zero = store.read_all(start, 0).await.unwrap();
    let zero_from_the_start = store.read_all(0, 0).await.unwrap();

    assert_eq!(positions(&page), [start + 3, start + 4, start + 5]);
    assert_eq!(positions(&rest), [start + 6]);
    assert!(none.is_empty(), "{none:?}");
    assert!(zero.is_empty(), "{zero:?}");
    assert!(zero_from_the_start.is_empty(), "{zero_from_the_start:?}");
}

/// The head is the position of the last committed event, and moves with each append.
pub async fn head_position_is_the_position_of_the_last_committed_event(store: &dyn EventStore) {
    let before = store.head_position().await.unwrap();

    append(store, &stream("order"), ExpectedVersion::Any, 3)
        .await
        .unwrap();
    let now = store.head_position().await.unwrap();

    assert_eq!(now, before + 3);
    let last = read_after(store, before).await.pop().unwrap();
    assert_eq!(last.global_position, now);
    assert!(read_after(store, now).await.is_empty());
}

/// Every field of an event comes back as written, whether read from its stream or from the log.
pub async fn a_recorded_event_keeps_its_whole_envelope(store: &dyn EventStore) {
    let start = head(store).await;
    let order = stream("order");
    let mut new = event("OrderPlaced", 7);
    new.schema_version = 3;
    new.data = json!({
        "customerId": "c-1",
        "items": [{ "productId": "lamp-7", "quantity": 2 }],
        "note": null,
        "gift": true,
    });
    new.metadata = Metadata {
        correlation_id: Some("req-7".to_owned()),
        causation_id: Some("cmd-7".to_owned()),
        user_id: Some("alice".to_owned()),
        idempotency_key: Some("key-7".to_owned()),
    };

    store
        .append(AppendRequest {
            stream_id: order.clone(),
            expected: ExpectedVersion::NoStream,
            events: vec![new.clone()],
            idempotency: None,
        })
        .await
        .unwrap();

    let recorded = read_stream(store, &order).await.remove(0);
    assert_eq!(recorded.event_id, new.event_id);
    assert_eq!(recorded.stream_id, order);
    assert_eq!(recorded.stream_version, 1);
    assert_eq!(recorded.global_position, start + 1);
    assert_eq!(recorded.event_type, "OrderPlaced");
    assert_eq!(recorded.schema_version, 3);
    assert_eq!(recorded.data, new.data);
    assert_eq!(recorded.metadata, new.metadata);
    assert_eq!(recorded.recorded_at, RECORDED_AT);
    assert_eq!(read_after(store, start).await, [recorded]);
}

/// Events of an older schema version come back as stored: upcasting is the application's job.
pub async fn events_of_an_older_schema_version_are_returned_as_stored(store: &dyn EventStore) {
    let order = stream("order");
    let mut v1 = event("OrderPlaced", 1);
    v1.data = json!({ "customer": "c-1", "total": 1250 });
    let mut v2 = event("OrderPlaced", 2);
    v2.schema_version = 2;
    v2.data = json!({ "customerId": "c-1", "total": { "amount": 1250, "currency": "EUR" } });

    store
        .append(AppendRequest {
            stream_id: order.clone(),
            expected: ExpectedVersion::NoStream,
            events: vec![v1.clone(), v2.clone()],
            idempotency: None,
        })
        .await
        .unwrap();

    let read = read_stream(store, &order).await;
    assert_eq!(read.len(), 2);
    assert_eq!((read[0].schema_version, &read[0].data), (1, &v1.data));
    assert_eq!((read[1].schema_version, &read[1].data), (2, &v2.data));
}

/// An owned copy of what `visit_stream` hands on, as `(version, position, type, schema
/// version, data)`.
type Visited = (u64, u64, String, u32, serde_json::Value);

/// Keeps owned copies of the events handed on, and stops the read after `limit` of them.
struct Collect {
    visited: Vec<Visited>,
    limit: usize,
}

impl PayloadVisitor for Collect {
    fn visit(&mut self, p: PayloadRef<'_>) -> ControlFlow<()> {
        let data = serde_json::from_str(p.data).unwrap();
        let (version, position) = (p.stream_version, p.global_position);
        let (event_type, schema_version) = (p.event_type.to_owned(), p.schema_version);
        self.visited
            .push((version, position, event_type, schema_version, data));
        if self.visited.len() < self.limit {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }
}

async fn visit(
    store: &dyn EventStore,
    stream_id: &StreamId,
    after: u64,
    limit: usize,
) -> Vec<Visited> {
    let mut collect = Collect {
        visited: Vec::new(),
        limit,
    };
    store
        .visit_stream(stream_id, after, &mut collect)
        .await
        .unwrap();
    collect.visited
}

/// `visit_stream` is `read_stream` cut down to what a fold needs: the same events in the same
/// order, after the same version, with the same versions, positions, types, schema versions and
/// data (as JSON text), whatever other streams hold. A visitor that breaks gets no further
/// event, and the store reads on normally afterwards.
pub async fn a_stream_visit_is_the_stream_read_cut_down(store: &dyn EventStore) {
    let (order, other) = (stream("order"), stream("order"));
    let mut older = event("OrderPlaced", 1);
    older.data = json!({ "customer": "c-1", "lines": [1, 2.5, "three", null], "note": "a\u{0}b" });
    older.schema_version = 0;
    store
        .append(AppendRequest {
            stream_id: order.clone(),
            expected: ExpectedVersion::NoStream,
            events: vec![older],
            idempotency: None,
        })
        .await
        .unwrap();
    append(store, &other, ExpectedVersion::Any, 2)
        .await
        .unwrap();
    append(store, &order, ExpectedVersion::Any, 3)
        .await
        .unwrap();

    for after in [0, 1, 3, 4, 9] {
        let cut: Vec<Visited> = store
            .read_stream(&order, after)
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                let (version, position) = (e.stream_version, e.global_position);
                (version, position, e.event_type, e.schema_version, e.data)
            })
            .collect();
        assert_eq!(
            visit(store, &order, after, usize::MAX).await,
            cut,
            "after version {after}"
        );
    }
    assert!(
        visit(store, &stream("order"), 0, usize::MAX)
            .await
            .is_empty()
    );

    let first_two = visit(store, &order, 0, 2).await;
    assert_eq!(
        first_two.iter().map(|v| v.0).collect::<Vec<_>>(),
        [1, 2],
        "a visitor that breaks gets nothing more"
    );
    assert_eq!(
        versions(&read_stream(store, &order).await),
        [1, 2, 3, 4],
        "the store reads on"
    );
}
