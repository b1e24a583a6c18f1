//! Idempotency claims among appends made at the same moment: a store that writes concurrent
//! appends together (one transaction for many, as PostgreSQL's group writer does) must answer
//! each one as if it had been written alone. All the appends of a case are started in one poll
//! of one task, so such a store receives them together; a store that serialises its appends
//! must give the same answers in whatever order it takes them.

use futures::future::join_all;

use crate::event_store::{
    AppendOutcome, AppendRequest, EventStore, EventStoreError, ExpectedVersion,
};

use super::{
    after, append, claiming, fresh_key, head, positions, read_after, read_stream, request, stream,
    taken, versions, wrong,
};

/// How many plain appends to fresh streams surround the claims of each case.
const BYSTANDERS: usize = 6;

/// Appends of one event each to fresh streams, which nothing can refuse.
fn bystanders() -> Vec<AppendRequest> {
    (0..BYSTANDERS)
        .map(|_| request(&stream("account"), ExpectedVersion::NoStream, 1))
        .collect()
}

/// Starts every request at once and waits for all the answers, in the requests' order.
async fn all_at_once(
    store: &dyn EventStore,
    requests: Vec<AppendRequest>,
) -> Vec<Result<AppendOutcome, EventStoreError>> {
    join_all(requests.into_iter().map(|r| store.append(r))).await
}

/// Two appends to different streams claiming one key, among others, all at once: exactly one
/// lands with its claim; the other is refused as a taken key and writes nothing; the others
/// land; the log stays dense.
pub async fn two_claims_of_one_key_at_once_apply_one_and_refuse_the_other_as_taken(
    store: &dyn EventStore,
) {
    let (key, first, second) = (fresh_key(), stream("order"), stream("order"));
    let start = head(store).await;
    let mut requests = bystanders();
    requests.insert(
        1,
        claiming(request(&first, ExpectedVersion::Any, 2), "alice", &key),
    );
    requests.insert(
        4,
        claiming(request(&second, ExpectedVersion::Any, 2), "alice", &key),
    );

    let mut results = all_at_once(store, requests).await;

    let second_result = results.remove(4);
    let first_result = results.remove(1);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let (winner, outcome, loser_result) = match (&first_result, &second_result) {
        (Ok(outcome), Err(_)) => (&first, outcome, &second_result),
        (Err(_), Ok(outcome)) => (&second, outcome, &first_result),
        _ => panic!("not exactly one claim applied: {first_result:?}, {second_result:?}"),
    };
    assert_eq!(loser_result, &Err(taken(&key)));
    let loser = if winner == &first { &second } else { &first };
    assert!(read_stream(store, loser).await.is_empty());
    assert_eq!(versions(&read_stream(store, winner).await), [1, 2]);
    let log = read_after(store, start).await;
    assert_eq!(positions(&log), after(start, BYSTANDERS as u64 + 2));
    let record = store
        .find_idempotency("alice", &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&record.stream_id, winner);
    assert_eq!(
        (record.stream_version, record.global_position),
        (outcome.stream_version, outcome.global_position)
    );
}

/// A claimed append and a plain one expecting the same version of one stream, and a claimed
/// append whose expected version is already wrong, all at once among others: one of the two
/// racing appends lands, the other gets its own version conflict; the claim refused by its
/// version records nothing and leaves its key free; a claim is recorded only if its append
/// landed.
pub async fn a_claim_and_conflicting_appends_at_once_are_each_answered_exactly(
    store: &dyn EventStore,
) {
    let (order, key, doomed_key) = (stream("order"), fresh_key(), fresh_key());
    append(store, &order, ExpectedVersion::NoStream, 1)
        .await
        .unwrap();
    let start = head(store).await;
    let mut requests = bystanders();
    requests.insert(
        1,
        claiming(request(&order, ExpectedVersion::Exact(1), 1), "alice", &key),
    );
    requests.insert(2, request(&order, ExpectedVersion::Exact(1), 2));
    requests.insert(
        5,
        claiming(
            request(&order, ExpectedVersion::Exact(0), 1),
            "alice",
            &doomed_key,
        ),
    );

    let mut results = all_at_once(store, requests).await;

    let doomed = results.remove(5);
    let plain = results.remove(2);
    let claimed = results.remove(1);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(
        matches!(
            &doomed,
            Err(EventStoreError::WrongExpectedVersion {
                stream_id,
                expected: ExpectedVersion::Exact(0),
                actual: 1..,
            }) if stream_id == &order
        ),
        "{doomed:?}"
    );
    let record = store.find_idempotency("alice", &key).await.unwrap();
    match (&claimed, &plain) {
        (Ok(outcome), Err(refused)) => {
            assert_eq!(outcome.stream_version, 2);
            assert_eq!(refused, &wrong(&order, ExpectedVersion::Exact(1), 2));
            let record = record.unwrap();
            assert_eq!(
                (record.stream_version, record.global_position),
                (2, outcome.global_position)
            );
        }
        (Err(refused), Ok(outcome)) => {
            assert_eq!(outcome.stream_version, 3);
            assert_eq!(refused, &wrong(&order, ExpectedVersion::Exact(1), 3));
            assert_eq!(record, None);
        }
        _ => panic!("not exactly one racing append applied: {claimed:?}, {plain:?}"),
    }
    assert_eq!(store.find_idempotency("alice", &doomed_key).await, Ok(None));
    let log = read_after(store, start).await;
    let landed = if claimed.is_ok() { 1 } else { 2 };
    assert_eq!(positions(&log), after(start, BYSTANDERS as u64 + landed));
    // The doomed claim's key is free for the client's corrected request.
    let corrected = store
        .append(claiming(
            request(&order, ExpectedVersion::Any, 1),
            "alice",
            &doomed_key,
        ))
        .await;
    assert!(corrected.is_ok(), "{corrected:?}");
}

/// Replays among other appends, all at once: a retry of a command applied earlier, the same
/// key claimed on another stream, and a command together with its own retry. Each replay is
/// refused as a taken key (never as a version conflict, though its expected version is gone
/// too), writes nothing, and leaves the original record as it was; everything else lands.
pub async fn replays_at_once_with_other_appends_are_refused_as_taken_keys(store: &dyn EventStore) {
    let (order, applied_key) = (stream("order"), fresh_key());
    append(store, &order, ExpectedVersion::NoStream, 1)
        .await
        .unwrap();
    let command = || {
        claiming(
            request(&order, ExpectedVersion::Exact(1), 1),
            "alice",
            &applied_key,
        )
    };
    let original = store.append(command()).await.unwrap();
    let (elsewhere, fresh, new_key) = (stream("order"), stream("order"), fresh_key());
    let new_command = || {
        claiming(
            request(&fresh, ExpectedVersion::NoStream, 1),
            "bob",
            &new_key,
        )
    };
    let start = head(store).await;
    let mut requests = bystanders();
    requests.insert(1, command());
    requests.insert(
        3,
        claiming(
            request(&elsewhere, ExpectedVersion::Any, 1),
            "alice",
            &applied_key,
        ),
    );
    requests.insert(4, new_command());
    requests.insert(6, new_command());

    let mut results = all_at_once(store, requests).await;

    let new_retry = results.remove(6);
    let new_first = results.remove(4);
    let elsewhere_result = results.remove(3);
    let retry = results.remove(1);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(retry, Err(taken(&applied_key)));
    assert_eq!(elsewhere_result, Err(taken(&applied_key)));
    let (applied, replayed) = match (new_first, new_retry) {
        (Ok(applied), replayed @ Err(_)) | (replayed @ Err(_), Ok(applied)) => (applied, replayed),
        other => panic!("not exactly one attempt of the new command applied: {other:?}"),
    };
    assert_eq!(replayed, Err(taken(&new_key)));
    assert_eq!(applied.stream_version, 1);
    assert_eq!(versions(&read_stream(store, &order).await), [1, 2]);
    assert!(read_stream(store, &elsewhere).await.is_empty());
    assert_eq!(versions(&read_stream(store, &fresh).await), [1]);
    let log = read_after(store, start).await;
    assert_eq!(positions(&log), after(start, BYSTANDERS as u64 + 1));
    let record = store
        .find_idempotency("alice", &applied_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&record.stream_id, record.global_position),
        (&order, original.global_position)
    );
    let new_record = store
        .find_idempotency("bob", &new_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new_record.global_position, applied.global_position);
}
