//! Concurrent writers and readers, through the port alone. The operations are futures joined
//! in one task (the store is borrowed, so nothing can be spawned): an adapter that awaits real
//! I/O runs them interleaved, and on a pool of several connections truly at once in the backend.

use std::iter;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use futures::future::{join_all, poll_fn};

use crate::event_store::{EventStore, ExpectedVersion};

use super::{
    after, append, claiming, fresh_key, head, positions, read_after, read_stream, request, stream,
    taken, versions, wrong,
};

/// How many writers each case sets against each other.
const WRITERS: usize = 8;

/// Lets the other joined futures run once, so a reader that finds nothing new does not spin
/// without ever giving the writers a turn on a backend that never makes it wait.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// Of many writers expecting the same version, exactly one appends; every other one is refused
/// with the winner's version, because the check sees the winner's commit rather than the
/// version the loser read before it.
pub async fn only_one_of_many_concurrent_writers_at_the_same_version_succeeds(
    store: &dyn EventStore,
) {
    let order = stream("order");
    append(store, &order, ExpectedVersion::NoStream, 1)
        .await
        .unwrap();
    let start = head(store).await;

    let results =
        join_all((0..WRITERS).map(|_| append(store, &order, ExpectedVersion::Exact(1), 2))).await;

    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(winners[0].stream_version, 3);
    assert_eq!(winners[0].global_position, start + 2);
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused, &wrong(&order, ExpectedVersion::Exact(1), 3));
    }
    assert_eq!(versions(&read_stream(store, &order).await), [1, 2, 3]);
    assert_eq!(positions(&read_after(store, start).await), after(start, 2));
}

/// Whatever the interleaving, concurrent appends to many streams leave dense positions, each
/// stream's versions counting from one without gaps, and each append's events in one block.
pub async fn concurrent_appends_to_many_streams_get_dense_unique_versions_and_positions(
    store: &dyn EventStore,
) {
    const APPENDS_PER_STREAM: usize = 8;
    const EVENTS_PER_APPEND: u64 = 2;
    let start = head(store).await;
    let streams: Vec<_> = (0..WRITERS).map(|_| stream("account")).collect();

    let results = join_all(
        streams
            .iter()
            .flat_map(|s| iter::repeat_n(s, APPENDS_PER_STREAM))
            .map(|s| append(store, s, ExpectedVersion::Any, EVENTS_PER_APPEND)),
    )
    .await;

    let outcomes: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    let appends = (WRITERS * APPENDS_PER_STREAM) as u64;
    let log = read_after(store, start).await;
    assert_eq!(positions(&log), after(start, appends * EVENTS_PER_APPEND));
    let per_stream = APPENDS_PER_STREAM as u64 * EVENTS_PER_APPEND;
    for s in &streams {
        let in_log: Vec<_> = log.iter().filter(|e| &e.stream_id == s).cloned().collect();
        assert_eq!(versions(&in_log), (1..=per_stream).collect::<Vec<_>>());
    }
    let mut last_positions: Vec<u64> = outcomes.iter().map(|o| o.global_position).collect();
    last_positions.sort_unstable();
    let block_ends: Vec<u64> = (1..=appends)
        .map(|n| start + n * EVENTS_PER_APPEND)
        .collect();
    assert_eq!(last_positions, block_ends);
    for pair in log.chunks(EVENTS_PER_APPEND as usize) {
        assert_eq!(pair[0].stream_id, pair[1].stream_id);
        assert_eq!(pair[0].stream_version + 1, pair[1].stream_version);
    }
}

/// A reader that follows the log from its checkpoint, a few events per read, while writers
/// append, gets every event exactly once and in position order: an event it has not seen yet
/// never lands below a position it has already passed.
pub async fn a_reader_following_the_log_while_writers_append_gets_every_event_once_in_order(
    store: &dyn EventStore,
) {
    const APPENDS_PER_WRITER: u64 = 5;
    const EVENTS_PER_APPEND: u64 = 2;
    let start = head(store).await;
    let streams: Vec<_> = (0..WRITERS).map(|_| stream("account")).collect();
    let finished = AtomicUsize::new(0);
    let writers = streams.iter().map(|s| {
        let finished = &finished;
        async move {
            for _ in 0..APPENDS_PER_WRITER {
                append(store, s, ExpectedVersion::Any, EVENTS_PER_APPEND)
                    .await
                    .unwrap();
            }
            finished.fetch_add(1, Ordering::SeqCst);
        }
    });
    let reader = async {
        let (mut checkpoint, mut delivered) = (start, Vec::new());
        loop {
            // Looked at before the read: when every writer was done before it and the read
            // still finds nothing, nothing more will come.
            let writers_done = finished.load(Ordering::SeqCst) == WRITERS;
            let page = store.read_all(checkpoint, 3).await.unwrap();
            match page.last() {
                Some(last) => {
                    checkpoint = last.global_position;
                    delivered.extend(page);
                }
                None if writers_done => return delivered,
                None => yield_now().await,
            }
        }
    };

    let (delivered, _) = futures::join!(reader, join_all(writers));

    let total = WRITERS as u64 * APPENDS_PER_WRITER * EVENTS_PER_APPEND;
    assert_eq!(positions(&delivered), after(start, total));
    assert_eq!(delivered, read_after(store, start).await);
    for s in &streams {
        let seen: Vec<_> = delivered
            .iter()
            .filter(|e| &e.stream_id == s)
            .cloned()
            .collect();
        let per_stream = APPENDS_PER_WRITER * EVENTS_PER_APPEND;
        assert_eq!(versions(&seen), (1..=per_stream).collect::<Vec<_>>());
    }
}

/// Concurrent appends to different streams that claim the same key: exactly one is applied,
/// the others are refused as a taken key and leave neither events nor holes in the log.
pub async fn concurrent_claims_of_one_key_on_many_streams_apply_exactly_one_append(
    store: &dyn EventStore,
) {
    let key = fresh_key();
    let start = head(store).await;
    let streams: Vec<_> = (0..WRITERS).map(|_| stream("order")).collect();

    let results = join_all(
        streams
            .iter()
            .map(|s| store.append(claiming(request(s, ExpectedVersion::Any, 2), "alice", &key))),
    )
    .await;

    let winners: Vec<_> = streams
        .iter()
        .zip(&results)
        .filter_map(|(s, r)| r.as_ref().ok().map(|outcome| (s, outcome)))
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let (winning_stream, outcome) = winners[0];
    assert_eq!(outcome.global_position, start + 2);
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused, &taken(&key));
    }
    let log = read_after(store, start).await;
    assert_eq!(positions(&log), after(start, 2));
    assert!(log.iter().all(|e| &e.stream_id == winning_stream));
    let record = store
        .find_idempotency("alice", &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&record.stream_id, winning_stream);
    assert_eq!(record.global_position, outcome.global_position);
}

/// Concurrent retries of one command (the same key, the same expected version of the same
/// stream): it is applied once, and every other attempt is told the key is taken, not that the
/// version moved, so each can be answered with a replay.
pub async fn concurrent_retries_of_one_command_on_its_stream_apply_it_once_and_get_a_taken_key(
    store: &dyn EventStore,
) {
    let (order, key) = (stream("order"), fresh_key());
    append(store, &order, ExpectedVersion::NoStream, 1)
        .await
        .unwrap();
    let start = head(store).await;

    let results = join_all((0..WRITERS).map(|_| {
        store.append(claiming(
            request(&order, ExpectedVersion::Exact(1), 1),
            "alice",
            &key,
        ))
    }))
    .await;

    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(winners[0].stream_version, 2);
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused, &taken(&key));
    }
    assert_eq!(versions(&read_stream(store, &order).await), [1, 2]);
    assert_eq!(positions(&read_after(store, start).await), [start + 1]);
    let record = store
        .find_idempotency("alice", &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.global_position, start + 1);
}
