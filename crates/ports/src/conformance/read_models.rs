//! The behaviours every read-side adapter must show: a [`ProjectionStore`] and the
//! [`ReadModels`] over the same storage, run by each adapter's own tests against a real backend.
//! Only what the ports promise is checked, never how one backend keeps it.
//!
//! [`run`] takes a freshly migrated, empty storage and runs every case on it, one after
//! another: so each case uses fresh ids and positions above everything written before it (see
//! [`head`]), never assumes a checkpoint of 0, and leaves no rebuild in progress behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

mod accounts;
mod batches;
mod dead_letters;
mod orders;
mod rebuilds;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::json;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::event_store::{Metadata, RecordedEvent, StreamId};
use crate::projection::Generation;
use crate::projection::ProjectionName;
use crate::read_model::{
    AccountRow, CustomerStatsRow, DeadLetter, OrderLineRow, OrderSummaryRow, OrderSummaryStatus,
    ProjectionStore, ReadModelError, ReadModels, RebuildSwap, StatusCounts, TransactionKind,
    TransactionRow,
};

pub use accounts::{
    a_transaction_line_is_added_once_per_account_and_version,
    an_account_is_replaced_only_by_a_higher_version, an_account_reads_back_exactly_as_written,
    an_accounts_transactions_come_oldest_first_page_by_page_without_other_accounts,
};
pub use batches::{
    a_batch_dropped_without_commit_leaves_no_trace,
    a_committed_batch_makes_its_rows_dead_letters_and_checkpoint_visible_together,
    a_second_batch_of_a_projection_waits_for_the_first_and_starts_from_its_checkpoint,
    changes_after_a_savepoint_are_undone_by_rolling_back_to_it_and_kept_by_releasing_it,
    checkpoints_show_each_projections_position_state_and_dead_letter_count,
    every_answer_carries_the_checkpoint_of_its_projection,
};
pub use dead_letters::{
    a_parked_event_reads_back_with_its_whole_envelope,
    blocked_streams_name_the_streams_whose_event_failed_with_its_position,
    dead_letters_are_listed_per_projection_or_all_in_position_order,
    parking_the_same_event_twice_keeps_the_first_record,
    taken_dead_letters_stay_parked_unless_the_batch_commits,
    taking_dead_letters_returns_the_failed_event_and_those_behind_it_in_position_order,
    taking_dead_letters_where_no_event_failed_is_not_found,
};
pub use orders::{
    a_customers_orders_come_newest_first_page_by_page_without_other_customers,
    an_order_summary_is_replaced_only_by_a_higher_version,
    an_order_summary_reads_back_exactly_as_written,
    bulk_reads_answer_the_rows_that_exist_and_bulk_writes_store_every_field,
    customer_lookups_with_nul_or_oversized_ids_are_refused_as_invalid_input,
    customer_stats_read_back_exactly_as_written_and_a_later_put_replaces_them,
};
pub use rebuilds::{
    a_caught_up_rebuild_replaces_the_live_rows_checkpoint_and_dead_letters,
    a_failed_swap_leaves_the_live_generation_and_the_rebuild_as_they_were,
    a_projection_without_tables_rebuilds_its_checkpoint_and_dead_letters,
    a_rebuild_behind_the_live_checkpoint_stays_invisible_and_is_not_swapped_in,
    a_rebuild_starts_empty_at_checkpoint_zero_without_the_live_dead_letters,
    an_abandoned_rebuild_is_gone_and_the_live_generation_is_untouched,
};

/// The projection of order summaries and customer statistics.
const ORDERS: ProjectionName = ProjectionName::Orders;
/// The projection of accounts and their transactions.
const ACCOUNTS: ProjectionName = ProjectionName::Accounts;
/// The projection whose data lives behind another port: only its checkpoint and dead letters.
const SEARCH: ProjectionName = ProjectionName::Search;

/// Every behaviour, one after another on the same storage.
pub async fn run(store: &dyn ProjectionStore, models: &dyn ReadModels) {
    a_committed_batch_makes_its_rows_dead_letters_and_checkpoint_visible_together(store, models)
        .await;
    a_batch_dropped_without_commit_leaves_no_trace(store, models).await;
    a_second_batch_of_a_projection_waits_for_the_first_and_starts_from_its_checkpoint(
        store, models,
    )
    .await;
    changes_after_a_savepoint_are_undone_by_rolling_back_to_it_and_kept_by_releasing_it(
        store, models,
    )
    .await;
    checkpoints_show_each_projections_position_state_and_dead_letter_count(store, models).await;

    an_order_summary_reads_back_exactly_as_written(store, models).await;
    an_order_summary_is_replaced_only_by_a_higher_version(store, models).await;
    a_customers_orders_come_newest_first_page_by_page_without_other_customers(store, models).await;
    customer_stats_read_back_exactly_as_written_and_a_later_put_replaces_them(store, models).await;
    bulk_reads_answer_the_rows_that_exist_and_bulk_writes_store_every_field(store, models).await;
    an_account_reads_back_exactly_as_written(store, models).await;
    an_account_is_replaced_only_by_a_higher_version(store, models).await;
    a_transaction_line_is_added_once_per_account_and_version(store, models).await;
    an_accounts_transactions_come_oldest_first_page_by_page_without_other_accounts(store, models)
        .await;
    every_answer_carries_the_checkpoint_of_its_projection(store, models).await;
    customer_lookups_with_nul_or_oversized_ids_are_refused_as_invalid_input(store, models).await;

    a_parked_event_reads_back_with_its_whole_envelope(store, models).await;
    parking_the_same_event_twice_keeps_the_first_record(store, models).await;
    blocked_streams_name_the_streams_whose_event_failed_with_its_position(store, models).await;
    taking_dead_letters_returns_the_failed_event_and_those_behind_it_in_position_order(
        store, models,
    )
    .await;
    taken_dead_letters_stay_parked_unless_the_batch_commits(store, models).await;
    taking_dead_letters_where_no_event_failed_is_not_found(store, models).await;
    dead_letters_are_listed_per_projection_or_all_in_position_order(store, models).await;

    // Last: a finished rebuild replaces every live row of its projection, the other cases'
    // included.
    a_rebuild_starts_empty_at_checkpoint_zero_without_the_live_dead_letters(store, models).await;
    a_rebuild_behind_the_live_checkpoint_stays_invisible_and_is_not_swapped_in(store, models).await;
    a_caught_up_rebuild_replaces_the_live_rows_checkpoint_and_dead_letters(store, models).await;
    a_failed_swap_leaves_the_live_generation_and_the_rebuild_as_they_were(store, models).await;
    an_abandoned_rebuild_is_gone_and_the_live_generation_is_untouched(store, models).await;
    a_projection_without_tables_rebuilds_its_checkpoint_and_dead_letters(store, models).await;
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A microsecond-precise instant, the precision every backend keeps, so rows compare equal.
const T0: OffsetDateTime = datetime!(2026-11-02 09:30:00.123456 UTC);

/// `seconds` after [`T0`].
fn at(seconds: i64) -> OffsetDateTime {
    T0 + Duration::seconds(seconds)
}

/// The highest position the storage knows of: every checkpoint and every parked event. Each
/// case positions what it writes above it, so earlier cases' dead letters never collide.
async fn head(store: &dyn ProjectionStore, models: &dyn ReadModels) -> u64 {
    let mut head = 0;
    for projection in [ORDERS, ACCOUNTS, SEARCH] {
        head = head.max(models.position(projection).await.unwrap());
    }
    let parked = store.dead_letters(None).await.unwrap();
    parked
        .iter()
        .map(|letter| letter.event.global_position)
        .fold(head, u64::max)
}

/// A customer id no other case uses.
fn customer(label: &str) -> String {
    format!("suite-{label}-{}", Uuid::now_v7())
}

/// A fresh stream of `category`.
fn stream(category: &str) -> StreamId {
    StreamId::new(category, Uuid::now_v7())
}

/// A pending order of two lines, the optional fields empty.
fn order(customer_id: &str, placed_position: u64, version: u64) -> OrderSummaryRow {
    OrderSummaryRow {
        order_id: Uuid::now_v7(),
        customer_id: customer_id.to_owned(),
        status: OrderSummaryStatus::Pending,
        items: vec![
            OrderLineRow {
                product_id: "lamp-7".to_owned(),
                quantity: 2,
                unit_price_cents: 1_250,
                line_total_cents: 2_500,
            },
            OrderLineRow {
                product_id: "desk-3".to_owned(),
                quantity: 1,
                unit_price_cents: 19_900,
                line_total_cents: 19_900,
            },
        ],
        item_count: 3,
        total_cents: 22_400,
        currency: "EUR".to_owned(),
        shipping_address: "12 Harbour Street, Oslo".to_owned(),
        tracking_number: None,
        cancellation_reason: None,
        placed_at: at(0),
        updated_at: at(60),
        version,
        placed_position,
    }
}

/// `row` as a later event of its stream left it.
fn order_at_version(
    row: &OrderSummaryRow,
    version: u64,
    status: OrderSummaryStatus,
) -> OrderSummaryRow {
    OrderSummaryRow {
        status,
        version,
        updated_at: at(3_600 * i64::try_from(version).unwrap()),
        ..row.clone()
    }
}

fn stats(customer_id: &str) -> CustomerStatsRow {
    CustomerStatsRow {
        customer_id: customer_id.to_owned(),
        order_count: 6,
        by_status: StatusCounts {
            pending: 1,
            confirmed: 2,
            shipped: 0,
            delivered: 2,
            cancelled: 1,
        },
        lifetime_value_cents: BTreeMap::from([
            ("EUR".to_owned(), 45_000),
            ("NOK".to_owned(), 129_900),
        ]),
        updated_at: at(120),
    }
}

fn account(owner: &str, version: u64) -> AccountRow {
    AccountRow {
        account_id: Uuid::now_v7(),
        owner_customer_id: owner.to_owned(),
        currency: "EUR".to_owned(),
        balance_cents: 10_000,
        closed: false,
        transaction_count: 1,
        opened_at: at(0),
        updated_at: at(30),
        version,
    }
}

fn transaction(account_id: Uuid, version: u64, global_position: u64) -> TransactionRow {
    TransactionRow {
        account_id,
        version,
        global_position,
        kind: if version.is_multiple_of(2) {
            TransactionKind::Withdrawal
        } else {
            TransactionKind::Deposit
        },
        amount_cents: 1_000 + i64::try_from(version).unwrap(),
        reference: format!("ref-{version}"),
        balance_after_cents: 50_000 - i64::try_from(version).unwrap(),
        recorded_at: at(i64::try_from(version).unwrap()),
    }
}

/// An event of `stream_id` at `stream_version` and `global_position`, every envelope field set.
fn recorded(stream_id: &StreamId, stream_version: u64, global_position: u64) -> RecordedEvent {
    RecordedEvent {
        event_id: Uuid::now_v7(),
        stream_id: stream_id.clone(),
        stream_version,
        global_position,
        event_type: "OrderPlaced".to_owned(),
        schema_version: 2,
        data: json!({
            "customerId": "c-1",
            "items": [{ "productId": "lamp-7", "quantity": 2 }],
            "note": null,
            "gift": true,
        }),
        metadata: Metadata {
            correlation_id: Some("req-7".to_owned()),
            causation_id: Some("cmd-7".to_owned()),
            user_id: Some("alice".to_owned()),
            idempotency_key: Some("key-7".to_owned()),
        },
        recorded_at: at(-60),
    }
}

/// `event` parked by `projection`: failed (`blocked_by: None`) or waiting behind a failed one.
fn letter(projection: ProjectionName, event: RecordedEvent, blocked_by: Option<u64>) -> DeadLetter {
    DeadLetter {
        projection: projection.to_string(),
        error: match blocked_by {
            None => "unknown product lamp-7".to_owned(),
            Some(_) => "waits behind a parked event".to_owned(),
        },
        attempts: u32::from(blocked_by.is_none()),
        blocked_by,
        parked_at: at(-30),
        event,
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Writes order summaries in one live batch, committed one position further; returns it.
async fn put_orders(store: &dyn ProjectionStore, rows: &[&OrderSummaryRow]) -> u64 {
    let mut batch = store.begin(ORDERS, Generation::Live).await.unwrap();
    let position = batch.checkpoint().await.unwrap() + 1;
    for row in rows {
        batch.put_order_summary(row).await.unwrap();
    }
    batch.commit(position).await.unwrap();
    position
}

/// Parks letters in one live batch of `projection`, committed at the last of their positions
/// (or one further than the checkpoint, whichever is higher); returns that position.
async fn park(
    store: &dyn ProjectionStore,
    projection: ProjectionName,
    letters: &[&DeadLetter],
) -> u64 {
    let mut batch = store.begin(projection, Generation::Live).await.unwrap();
    let checkpoint = batch.checkpoint().await.unwrap();
    for letter in letters {
        batch.park(letter).await.unwrap();
    }
    let position = letters
        .iter()
        .map(|l| l.event.global_position)
        .fold(checkpoint + 1, u64::max);
    batch.commit(position).await.unwrap();
    position
}

/// The order summary readers see now.
async fn order_now(models: &dyn ReadModels, id: Uuid) -> Option<OrderSummaryRow> {
    models.order_summary(id).await.unwrap().value
}

/// The positions of `projection`'s dead letters, in the order they are listed.
async fn parked_positions(store: &dyn ProjectionStore, projection: ProjectionName) -> Vec<u64> {
    store
        .dead_letters(Some(projection))
        .await
        .unwrap()
        .iter()
        .map(|l| l.event.global_position)
        .collect()
}

fn positions(letters: &[DeadLetter]) -> Vec<u64> {
    letters.iter().map(|l| l.event.global_position).collect()
}

fn is_not_found<T>(result: &Result<T, ReadModelError>) -> bool {
    matches!(result, Err(ReadModelError::NotFound(_)))
}

/// A [`RebuildSwap`] that counts its calls, and fails them if told to.
#[derive(Debug, Default)]
struct Swap {
    fails: bool,
    calls: AtomicUsize,
}

impl Swap {
    fn failing() -> Self {
        Self {
            fails: true,
            ..Self::default()
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl RebuildSwap for Swap {
    async fn swap(&self) -> Result<(), ReadModelError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fails {
            Err(ReadModelError::Unavailable(
                "search index unreachable".to_owned(),
            ))
        } else {
            Ok(())
        }
    }
}
