//! The log read as a feed, for catch-up subscriptions (`GET /v1/events` and its Server-Sent
//! Events stream): a page of the global log after a position, oldest first ([`LogFeed`]), and
//! the new events as they are committed, read once for every live subscriber ([`LiveLog`]).
//! Operators and auditors read every event; a customer only those of their own orders and
//! accounts. The owner of a stream is the customer its first event names (an order's
//! `OrderPlaced`, an account's `AccountOpened`), read once per stream and then remembered: it
//! never changes.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use strata_domain::account::Account;
use strata_domain::order::Order;
use strata_domain::values::CustomerId;
use strata_domain::{Aggregate, DomainEvent};
use strata_ports::{
    EventStore, LogWakeup, LogWakeups, PayloadRef, PayloadVisitor, RecordedEvent, StreamId,
};
use tokio::sync::{broadcast, watch};

use crate::access::{Owned, Principal, Role};
use crate::error::QueryError;

/// The most events one page may hold.
pub const MAX_PAGE: usize = 1_000;

/// The most positions one page reads through when a filter or a customer's scope leaves events
/// out: a page may then hold fewer events than asked, and `next_after` says where to go on.
const MAX_SCANNED: usize = 5_000;

/// Streams whose owner is remembered; beyond this the memory is emptied and filled again.
const MAX_OWNERS: usize = 100_000;

/// What to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// The position the page follows (0: from the start).
    pub after: u64,
    /// The most events to return, 1 to [`MAX_PAGE`].
    pub limit: usize,
    /// Only events of streams of this category (`order`, `account`).
    pub category: Option<String>,
    /// Only events of this type (`OrderPlaced`).
    pub event_type: Option<String>,
}

/// A page of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    /// The events the reader may see, oldest first.
    pub events: Vec<RecordedEvent>,
    /// The position to ask the next page after: the last position read through, whether or not
    /// its event was for this reader (equal to the query's `after` when nothing is new).
    pub next_after: u64,
    /// The page read to the end of the log (its last read found fewer events than it asked).
    pub at_head: bool,
}

/// Reads pages of the log for a principal.
pub struct LogFeed {
    events: Arc<dyn EventStore>,
    owners: Mutex<HashMap<String, Option<CustomerId>>>,
}

impl std::fmt::Debug for LogFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFeed").finish_non_exhaustive()
    }
}

impl LogFeed {
    pub fn new(events: Arc<dyn EventStore>) -> Self {
        Self {
            events,
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// The events after `query.after` that `principal` may see and the filters keep, at most
    /// `query.limit`, reading through at most a few thousand positions.
    ///
    /// # Errors
    /// `BadRequest` for a limit out of range; `Unavailable` / `Internal` for store failures.
    pub async fn page(
        &self,
        principal: &Principal,
        query: &LogQuery,
    ) -> Result<LogPage, QueryError> {
        if query.limit == 0 || query.limit > MAX_PAGE {
            return Err(QueryError::BadRequest(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let everything = principal.role != Role::Customer
            && query.category.is_none()
            && query.event_type.is_none();
        // Unfiltered, a read of `limit` is the page; filtered, reads of at least 100 positions
        // until the page is full, the log ends or enough was read through.
        let chunk = if everything {
            query.limit
        } else {
            query.limit.max(100)
        };
        let mut page = LogPage {
            events: Vec::new(),
            next_after: query.after,
            at_head: false,
        };
        let mut scanned = 0;
        while scanned < MAX_SCANNED {
            let read = self.events.read_all(page.next_after, chunk).await?;
            let full = read.len() == chunk;
            scanned += read.len();
            for event in read {
                page.next_after = event.global_position;
                if self.keeps(principal, query, &event).await? {
                    page.events.push(event);
                    if page.events.len() == query.limit {
                        return Ok(page);
                    }
                }
            }
            if !full {
                page.at_head = true;
                break;
            }
        }
        Ok(page)
    }

    /// Whether `principal` may see `event` and the filters of `query` keep it.
    ///
    /// # Errors
    /// `Unavailable` / `Internal` when the owner of its stream cannot be read.
    pub async fn keeps(
        &self,
        principal: &Principal,
        query: &LogQuery,
        event: &RecordedEvent,
    ) -> Result<bool, QueryError> {
        if query
            .category
            .as_deref()
            .is_some_and(|c| c != event.stream_id.category())
            || query
                .event_type
                .as_deref()
                .is_some_and(|t| t != event.event_type)
        {
            return Ok(false);
        }
        if principal.role != Role::Customer {
            return Ok(true);
        }
        let owner = self.owner(&event.stream_id).await?;
        Ok(principal.can_read(owner.as_ref()))
    }

    /// The customer owning a stream, as its first event says (`None`: a stream no customer
    /// owns, or of a category without owners).
    async fn owner(&self, stream_id: &StreamId) -> Result<Option<CustomerId>, QueryError> {
        if let Some(owner) = self.lock_owners().get(stream_id.as_str()) {
            return Ok(owner.clone());
        }
        let owner = match stream_id.category() {
            c if c == Order::CATEGORY => self.first_owner::<Order>(stream_id).await?,
            c if c == Account::CATEGORY => self.first_owner::<Account>(stream_id).await?,
            _ => None,
        };
        let mut owners = self.lock_owners();
        if owners.len() >= MAX_OWNERS {
            owners.clear();
        }
        owners.insert(stream_id.as_str().to_owned(), owner.clone());
        Ok(owner)
    }

    /// The owner its first event names: the store hands on that event only (the visitor stops
    /// there), so a long stream costs no more than a short one here.
    async fn first_owner<A: Owned>(
        &self,
        stream_id: &StreamId,
    ) -> Result<Option<CustomerId>, QueryError> {
        let mut first = First::<A> {
            state: None,
            failed: None,
        };
        self.events.visit_stream(stream_id, 0, &mut first).await?;
        if let Some(why) = first.failed {
            return Err(QueryError::Internal(format!("{stream_id}: {why}")));
        }
        Ok(first.state.as_ref().and_then(A::owner).cloned())
    }

    fn lock_owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<CustomerId>>> {
        // A map of facts that never change: nothing a panic elsewhere could leave half-done.
        self.owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Folds the first event of a stream, then stops the read.
struct First<A: Aggregate> {
    state: Option<A::State>,
    failed: Option<String>,
}

impl<A: Aggregate> PayloadVisitor for First<A> {
    fn visit(&mut self, payload: PayloadRef<'_>) -> ControlFlow<()> {
        match A::Event::decode_stored_text(payload.event_type, payload.schema_version, payload.data)
        {
            Ok(event) => self.state = Some(A::evolve(A::State::default(), &event)),
            Err(error) => self.failed = Some(error.to_string()),
        }
        ControlFlow::Break(())
    }
}

/// The log's new events as they are committed, read once for all live subscribers: one reader,
/// woken by the log's wake-ups (polling every second without them, or after a lost one), sends
/// each event to a bounded broadcast. A subscriber that falls further behind than the buffer
/// is told so (`Lagged`) instead of holding memory.
pub struct LiveLog {
    events: Arc<dyn EventStore>,
    wakeups: Option<Arc<dyn LogWakeups>>,
    sender: broadcast::Sender<Arc<RecordedEvent>>,
    /// Started by the first subscriber: an instance nobody subscribes to reads nothing.
    reader: OnceLock<()>,
    stop: watch::Receiver<bool>,
}

impl std::fmt::Debug for LiveLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveLog").finish_non_exhaustive()
    }
}

/// How often the reader looks at the log without a wake-up.
const LIVE_POLL: Duration = Duration::from_secs(1);

/// Events the reader reads at once.
const LIVE_READ: usize = 1_000;

impl LiveLog {
    /// A live log with room for `buffer` events per subscriber; its reader stops on `stop`.
    pub fn new(
        events: Arc<dyn EventStore>,
        wakeups: Option<Arc<dyn LogWakeups>>,
        buffer: usize,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let (sender, _) = broadcast::channel(buffer.max(1));
        Self {
            events,
            wakeups,
            sender,
            reader: OnceLock::new(),
            stop,
        }
    }

    /// The events committed from now on. The first subscriber starts the reader after `from`,
    /// the position its own reading of the log reached: nothing committed between that read and
    /// the reader's start is missed. A later subscriber may receive positions below its own
    /// (to skip) or, if it subscribed while the reader was behind, above the one it expects:
    /// it reads that gap from the log.
    pub fn subscribe(&self, from: u64) -> broadcast::Receiver<Arc<RecordedEvent>> {
        let receiver = self.sender.subscribe();
        self.reader.get_or_init(|| {
            tokio::spawn(read_on(
                self.events.clone(),
                self.wakeups.clone(),
                self.sender.clone(),
                self.stop.clone(),
                from,
            ));
        });
        receiver
    }

    /// Turns true when the service stops: subscribers end.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }
}

/// The reader: every event after `after`, in order, once.
async fn read_on(
    events: Arc<dyn EventStore>,
    wakeups: Option<Arc<dyn LogWakeups>>,
    sender: broadcast::Sender<Arc<RecordedEvent>>,
    mut stop: watch::Receiver<bool>,
    mut after: u64,
) {
    let mut wakeup: Option<Box<dyn LogWakeup>> = None;
    loop {
        if wakeup.is_none()
            && let Some(wakeups) = &wakeups
        {
            wakeup = wakeups.subscribe().await.ok();
        }
        loop {
            match events.read_all(after, LIVE_READ).await {
                Ok(read) => {
                    let full = read.len() == LIVE_READ;
                    for event in read {
                        after = event.global_position;
                        // No receiver is not an error: nobody listens right now.
                        let _ = sender.send(Arc::new(event));
                    }
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "the live log cannot read the log; trying again");
                    break;
                }
            }
        }
        let woken = async {
            match wakeup.as_mut() {
                Some(signal) => signal.wait().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ok = woken => if !ok { wakeup = None },
            () = tokio::time::sleep(LIVE_POLL) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}
