//! Projection `search`: one document per order in the [`SearchIndex`], written once per batch
//! for the orders the batch touched. A document is folded from the order's stream up to the
//! version the batch reached, by the domain's own `evolve`, so it is a function of that prefix
//! alone: writing it again, or late, changes nothing, because the index keeps the highest
//! version of each order. Its checkpoint and dead letters live with the other projections'.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use strata_domain::Aggregate;
use strata_domain::order::{Order, OrderState, PlacedOrder};
use strata_ports::{
    EventStore, Generation, ProjectionBatch, ProjectionName, RecordedEvent, SearchDocument,
    SearchIndex,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{FlushFailure, Flushed, HandlerError, Projection};
use crate::rehydrate::decode;

/// The order search index.
#[derive(Clone)]
pub struct SearchProjection {
    events: Arc<dyn EventStore>,
    index: Arc<dyn SearchIndex>,
    /// Whether `prepare` succeeded once (it is idempotent, so a race only repeats it).
    prepared: Arc<AtomicBool>,
    /// Orders as earlier batches folded them: a stream prefix never changes, so these stay
    /// true for any generation and any replay.
    folded: Arc<Mutex<HashMap<Uuid, Folded>>>,
}

impl SearchProjection {
    pub fn new(events: Arc<dyn EventStore>, index: Arc<dyn SearchIndex>) -> Self {
        Self {
            events,
            index,
            prepared: Arc::new(AtomicBool::new(false)),
            folded: Arc::default(),
        }
    }

    /// Creates the index before the first write: an engine that is down when the projector
    /// starts then only delays this projection (its batches fail and are retried).
    async fn prepare(&self) -> Result<(), HandlerError> {
        if !self.prepared.load(Ordering::Acquire) {
            self.index.prepare().await?;
            self.prepared.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// The document of the order of `last` as of `last`'s version, or why there is none. The
    /// fold starts from the order as an earlier batch left it when it can (reading only the
    /// events after it), else from the start of the stream (a replay from an older position).
    async fn document(
        &self,
        last: &RecordedEvent,
    ) -> Result<Result<SearchDocument, String>, HandlerError> {
        let id = last.stream_id.id();
        let cached = self
            .folded()
            .get(&id)
            .filter(|f| f.version <= last.stream_version)
            .cloned();
        let mut folded = cached.unwrap_or_default();
        if folded.version < last.stream_version {
            let events = self
                .events
                .read_stream(&last.stream_id, folded.version)
                .await?;
            for recorded in events
                .iter()
                .take_while(|e| e.stream_version <= last.stream_version)
            {
                folded.apply(recorded);
            }
        }
        let order = match (&folded.state, folded.placed_at) {
            _ if folded.version != last.stream_version => {
                return Ok(Err(format!(
                    "order {id}: version {} not in the stream",
                    last.stream_version
                )));
            }
            // A total beyond 64 bits (written around the domain) is parked, never indexed
            // saturated.
            (Some(order), Some(_)) if order.checked_total() != Some(order.total_cents) => {
                return Ok(Err(format!(
                    "order {id}: the total does not fit in 64 bits"
                )));
            }
            (Some(order), Some(placed_at)) => document_of(id, order, placed_at, &folded),
            _ => {
                return Ok(Err(format!(
                    "order {id}: no OrderPlaced up to version {}",
                    last.stream_version
                )));
            }
        };
        let mut cache = self.folded();
        if cache.len() >= FOLDED_CAPACITY && !cache.contains_key(&id) {
            cache.clear(); // a bound, not an LRU: a cold cache only costs full reads
        }
        cache.insert(id, folded);
        Ok(Ok(order))
    }

    fn folded(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Folded>> {
        // The map holds only complete folds, so one left by a panicking holder is still valid.
        self.folded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How many folded orders a search projection keeps between batches.
const FOLDED_CAPACITY: usize = 10_000;

/// An order folded up to `version` (0: nothing yet).
#[derive(Debug, Clone, Default)]
struct Folded {
    version: u64,
    state: OrderState,
    placed_at: Option<OffsetDateTime>,
    updated_at: Option<OffsetDateTime>,
}

impl Folded {
    fn apply(&mut self, recorded: &RecordedEvent) {
        match decode::<Order>(recorded) {
            Ok(event) => self.state = Order::evolve(self.state.take(), &event),
            // Only an event an operator skipped gets here (the worker parks the events it
            // cannot read, and the later ones of their stream wait behind them): the document
            // goes on without it, as the other read models do.
            Err(error) => {
                tracing::warn!(position = recorded.global_position, %error,
                    "search: leaving an unreadable (skipped) event out of the document");
            }
        }
        self.placed_at.get_or_insert(recorded.recorded_at);
        self.updated_at = Some(recorded.recorded_at);
        self.version = recorded.stream_version;
    }
}

impl std::fmt::Debug for SearchProjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchProjection").finish_non_exhaustive()
    }
}

fn document_of(
    order_id: Uuid,
    order: &PlacedOrder,
    placed_at: OffsetDateTime,
    folded: &Folded,
) -> SearchDocument {
    SearchDocument {
        order_id,
        customer_id: order.customer_id.as_str().to_owned(),
        status: order.status.as_str().to_owned(),
        product_ids: order
            .items
            .iter()
            .map(|i| i.product_id.as_str().to_owned())
            .collect(),
        shipping_address: order.shipping_address.as_str().to_owned(),
        tracking_number: order
            .tracking_number
            .as_ref()
            .map(|t| t.as_str().to_owned()),
        total_cents: order.total_cents,
        currency: order.currency.as_str().to_owned(),
        item_count: order
            .items
            .iter()
            .map(|i| u64::from(i.quantity.get()))
            .sum(),
        placed_at,
        updated_at: folded.updated_at.unwrap_or(placed_at),
        version: folded.version,
    }
}

#[async_trait]
impl Projection for SearchProjection {
    fn name(&self) -> ProjectionName {
        ProjectionName::Search
    }

    fn handles(&self, category: &str) -> bool {
        category == Order::CATEGORY
    }

    /// Only checks the event can be read: the document is written by [`Self::flush`].
    async fn apply(
        &self,
        _batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        decode::<Order>(event)
            .map(|_| ())
            .map_err(|e| HandlerError::Rejected(e.to_string()))
    }

    /// Nothing to move past: documents are folded from the stream, not from the last one.
    async fn skip(
        &self,
        _batch: &mut dyn ProjectionBatch,
        _event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn flush(
        &self,
        generation: Generation,
        applied: &[&RecordedEvent],
    ) -> Result<Flushed, HandlerError> {
        // The last event of each order: its document covers the earlier ones.
        let mut last: BTreeMap<Uuid, &RecordedEvent> = BTreeMap::new();
        for &event in applied {
            let entry = last.entry(event.stream_id.id()).or_insert(event);
            if event.stream_version > entry.stream_version {
                *entry = event;
            }
        }
        self.prepare().await?;
        let mut failures = Vec::new();
        let mut documents = Vec::with_capacity(last.len());
        for event in last.values() {
            match self.document(event).await? {
                Ok(document) => documents.push(document),
                Err(reason) => failures.push(FlushFailure {
                    position: event.global_position,
                    reason,
                    behind: None,
                    stops: false,
                }),
            }
        }
        if documents.is_empty() {
            return Ok(failures);
        }
        let refused = match self.index.upsert(generation, &documents).await {
            Ok(refused) => refused,
            Err(error) => {
                // The index may have gone (a wiped cluster): create it again next time.
                self.prepared.store(false, Ordering::Release);
                return Err(error.into());
            }
        };
        for refused in refused {
            let Some(event) = last.get(&refused.order_id) else {
                return Err(HandlerError::Rejected(format!(
                    "the search index refused order {}, which this batch did not write",
                    refused.order_id
                )));
            };
            failures.push(FlushFailure {
                position: event.global_position,
                reason: format!(
                    "the search index refused order {} at version {}: {}",
                    refused.order_id, refused.version, refused.reason
                ),
                behind: None,
                stops: false,
            });
        }
        Ok(failures)
    }

    async fn start_rebuild(&self) -> Result<(), HandlerError> {
        self.prepare().await?;
        Ok(self.index.start_rebuild().await?)
    }

    async fn swap_rebuilt(&self) -> Result<(), HandlerError> {
        Ok(self.index.finish_rebuild().await?)
    }

    async fn abandon_rebuild(&self) -> Result<(), HandlerError> {
        Ok(self.index.abandon_rebuild().await?)
    }
}
