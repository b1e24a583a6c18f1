//! The behaviours every [`EventStore`] adapter must show: expected versions, atomic appends,
//! reads of streams and of the log, idempotency claims, and what concurrent writers and readers
//! may rely on. Run by each adapter's own tests against a real backend; only what the port
//! promises is checked, never how one backend keeps it.
//!
//! [`run`] takes a freshly migrated, empty store and runs every case on it, one after another:
//! so each case writes to fresh streams and fresh idempotency keys, and expects positions
//! relative to the head it finds when it starts, never position 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

mod appends;
mod claims_together;
mod concurrency;
mod idempotency;
mod limits;
mod reads;

use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

use crate::event_store::{
    AppendOutcome, AppendRequest, EventStore, EventStoreError, ExpectedVersion, IdempotencyClaim,
    Metadata, NewEvent, RecordedEvent, StreamId,
};

pub use appends::{
    a_multi_event_append_lands_as_one_contiguous_block,
    a_refused_multi_event_append_leaves_nothing_behind,
    an_append_reusing_a_stored_event_id_fails_and_leaves_no_gap,
    an_append_without_events_is_refused, any_version_appends_to_new_and_existing_streams,
    exact_version_is_accepted_when_it_matches,
    exact_version_is_refused_behind_or_ahead_with_the_actual_version,
    exact_zero_behaves_as_no_stream, no_stream_is_accepted_for_a_new_stream,
    no_stream_is_refused_for_an_existing_stream_with_its_actual_version,
    one_event_at_an_exact_version_reusing_a_stored_event_id_fails_and_leaves_no_gap,
    positions_stay_dense_after_a_refused_append, stream_exists_is_accepted_for_an_existing_stream,
    stream_exists_is_refused_for_a_new_stream_with_version_zero,
};
pub use claims_together::{
    a_claim_and_conflicting_appends_at_once_are_each_answered_exactly,
    replays_at_once_with_other_appends_are_refused_as_taken_keys,
    two_claims_of_one_key_at_once_apply_one_and_refuse_the_other_as_taken,
};
pub use concurrency::{
    a_reader_following_the_log_while_writers_append_gets_every_event_once_in_order,
    concurrent_appends_to_many_streams_get_dense_unique_versions_and_positions,
    concurrent_claims_of_one_key_on_many_streams_apply_exactly_one_append,
    concurrent_retries_of_one_command_on_its_stream_apply_it_once_and_get_a_taken_key,
    only_one_of_many_concurrent_writers_at_the_same_version_succeeds,
};
pub use idempotency::{
    a_refused_append_records_no_key_and_leaves_it_free,
    a_retry_of_an_applied_command_is_refused_as_a_taken_key_not_a_version_conflict,
    a_second_append_with_the_same_key_is_refused_and_appends_nothing,
    an_append_with_a_claim_stores_its_idempotency_record, an_unused_key_has_no_record,
    the_same_key_for_another_principal_is_accepted,
};
pub use limits::{
    appends_with_nul_or_oversized_values_are_refused_as_invalid_input,
    lookups_with_nul_or_oversized_values_are_refused_as_invalid_input,
    the_longest_principal_and_key_are_stored_and_found_again,
};
pub use reads::{
    a_recorded_event_keeps_its_whole_envelope, a_stream_visit_is_the_stream_read_cut_down,
    an_append_reports_its_last_version_and_position,
    an_empty_log_is_at_position_zero_and_reads_nothing, an_unknown_stream_reads_as_empty,
    events_of_an_older_schema_version_are_returned_as_stored,
    head_position_is_the_position_of_the_last_committed_event,
    read_all_returns_at_most_limit_events_after_a_position,
    read_stream_returns_the_events_after_a_version_in_order,
    versions_and_positions_are_contiguous_across_streams_in_commit_order,
};

/// Every behaviour, one after another on the same store, which must be migrated and empty.
pub async fn run(store: &dyn EventStore) {
    // First: the only case that needs the log empty.
    an_empty_log_is_at_position_zero_and_reads_nothing(store).await;

    no_stream_is_accepted_for_a_new_stream(store).await;
    no_stream_is_refused_for_an_existing_stream_with_its_actual_version(store).await;
    stream_exists_is_accepted_for_an_existing_stream(store).await;
    stream_exists_is_refused_for_a_new_stream_with_version_zero(store).await;
    exact_version_is_accepted_when_it_matches(store).await;
    exact_version_is_refused_behind_or_ahead_with_the_actual_version(store).await;
    exact_zero_behaves_as_no_stream(store).await;
    any_version_appends_to_new_and_existing_streams(store).await;
    an_append_without_events_is_refused(store).await;
    a_multi_event_append_lands_as_one_contiguous_block(store).await;
    a_refused_multi_event_append_leaves_nothing_behind(store).await;
    positions_stay_dense_after_a_refused_append(store).await;
    an_append_reusing_a_stored_event_id_fails_and_leaves_no_gap(store).await;
    one_event_at_an_exact_version_reusing_a_stored_event_id_fails_and_leaves_no_gap(store).await;

    versions_and_positions_are_contiguous_across_streams_in_commit_order(store).await;
    an_append_reports_its_last_version_and_position(store).await;
    read_stream_returns_the_events_after_a_version_in_order(store).await;
    an_unknown_stream_reads_as_empty(store).await;
    read_all_returns_at_most_limit_events_after_a_position(store).await;
    head_position_is_the_position_of_the_last_committed_event(store).await;
    a_recorded_event_keeps_its_whole_envelope(store).await;
    events_of_an_older_schema_version_are_returned_as_stored(store).await;
    a_stream_visit_is_the_stream_read_cut_down(store).await;

    an_append_with_a_claim_stores_its_idempotency_record(store).await;
    an_unused_key_has_no_record(store).await;
    a_second_append_with_the_same_key_is_refused_and_appends_nothing(store).await;
    the_same_key_for_another_principal_is_accepted(store).await;
    a_refused_append_records_no_key_and_leaves_it_free(store).await;
    a_retry_of_an_applied_command_is_refused_as_a_taken_key_not_a_version_conflict(store).await;

    appends_with_nul_or_oversized_values_are_refused_as_invalid_input(store).await;
    lookups_with_nul_or_oversized_values_are_refused_as_invalid_input(store).await;
    the_longest_principal_and_key_are_stored_and_found_again(store).await;

    only_one_of_many_concurrent_writers_at_the_same_version_succeeds(store).await;
    concurrent_appends_to_many_streams_get_dense_unique_versions_and_positions(store).await;
    a_reader_following_the_log_while_writers_append_gets_every_event_once_in_order(store).await;
    concurrent_claims_of_one_key_on_many_streams_apply_exactly_one_append(store).await;
    concurrent_retries_of_one_command_on_its_stream_apply_it_once_and_get_a_taken_key(store).await;
    two_claims_of_one_key_at_once_apply_one_and_refuse_the_other_as_taken(store).await;
    a_claim_and_conflicting_appends_at_once_are_each_answered_exactly(store).await;
    replays_at_once_with_other_appends_are_refused_as_taken_keys(store).await;
}

// ---------------------------------------------------------------------------------------------
// Fixtures (public: an adapter's own tests build their requests with them too)

/// A microsecond-precise instant, the precision every backend keeps (PostgreSQL keeps no
/// more), so envelopes compare equal after a round trip.
const RECORDED_AT: OffsetDateTime = datetime!(2026-11-02 09:30:00.123456 UTC);

/// A fresh stream of `category`.
pub fn stream(category: &str) -> StreamId {
    StreamId::new(category, Uuid::now_v7())
}

/// An idempotency key no other case uses.
fn fresh_key() -> String {
    format!("key-{}", Uuid::now_v7())
}

/// An event of `event_type`, schema version 1, carrying `n` in its data.
pub fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data: json!({ "n": n }),
        metadata: Metadata {
            correlation_id: Some("req-1".to_owned()),
            user_id: Some("alice".to_owned()),
            ..Metadata::default()
        },
        recorded_at: RECORDED_AT,
    }
}

/// An append of `count` events to `stream_id`, without idempotency claim.
pub fn request(stream_id: &StreamId, expected: ExpectedVersion, count: u64) -> AppendRequest {
    AppendRequest {
        stream_id: stream_id.clone(),
        expected,
        events: (1..=count).map(|n| event("ItemAdded", n)).collect(),
        idempotency: None,
    }
}

/// `request`, claiming `key` for `principal`.
pub fn claiming(mut request: AppendRequest, principal: &str, key: &str) -> AppendRequest {
    request.idempotency = Some(IdempotencyClaim {
        principal: principal.to_owned(),
        key: key.to_owned(),
        fingerprint: format!("POST /orders {key}"),
    });
    request
}

/// The refusal of an append that expected `expected` of a stream at `actual`.
fn wrong(stream_id: &StreamId, expected: ExpectedVersion, actual: u64) -> EventStoreError {
    EventStoreError::WrongExpectedVersion {
        stream_id: stream_id.clone(),
        expected,
        actual,
    }
}

fn taken(key: &str) -> EventStoreError {
    EventStoreError::IdempotencyKeyTaken {
        key: key.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Appends `count` events to `stream_id`.
///
/// # Errors
/// Whatever the store refuses the append with.
pub async fn append(
    store: &dyn EventStore,
    stream_id: &StreamId,
    expected: ExpectedVersion,
    count: u64,
) -> Result<AppendOutcome, EventStoreError> {
    store.append(request(stream_id, expected, count)).await
}

/// The log from its start, as the stream and global position of each event (up to 1,000).
pub async fn log_of(store: &dyn EventStore) -> Vec<(StreamId, u64)> {
    let events = store.read_all(0, 1_000).await.unwrap();
    events
        .into_iter()
        .map(|e| (e.stream_id, e.global_position))
        .collect()
}

/// The head position now: where a case's first event will land, plus one.
async fn head(store: &dyn EventStore) -> u64 {
    store.head_position().await.unwrap()
}

/// Every event of the log after `position`, in position order, read in one go.
async fn read_after(store: &dyn EventStore, position: u64) -> Vec<RecordedEvent> {
    store.read_all(position, 10_000).await.unwrap()
}

/// The events of a whole stream.
async fn read_stream(store: &dyn EventStore, stream_id: &StreamId) -> Vec<RecordedEvent> {
    store.read_stream(stream_id, 0).await.unwrap()
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.global_position).collect()
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.stream_version).collect()
}

/// The positions `start + 1 ..= start + count`.
fn after(start: u64, count: u64) -> Vec<u64> {
    (start + 1..=start + count).collect()
}
