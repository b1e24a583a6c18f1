//! Queries: answered from the read models only, with the ownership rules of the commands, and
//! read-your-writes (wait until the serving projection has reached a position, up to a bound).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use strata_domain::order::OrderStatus;
use strata_domain::values::{CustomerId, has_forbidden_chars};
use strata_ports::{
    AccountRow, CustomerStatsRow, EventStore, OrderSummaryRow, Positioned, ProjectionName,
    ReadModels, SearchCursor, SearchHit, SearchIndex, SearchQuery, StatusCounts, TransactionRow,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::access::{Principal, Role};
use crate::error::QueryError;
use crate::wait::Checkpoints;

/// The longest search text accepted, in characters.
pub const MAX_SEARCH_TEXT: usize = 200;

/// Bounds of the query side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryConfig {
    /// The longest a query waits for its projection to reach a requested position.
    pub max_wait: Duration,
    /// Key of the cursors' integrity check (derive it from a secret of the deployment, so that
    /// every instance accepts the others' cursors).
    pub cursor_key: Vec<u8>,
}

/// Page sizes accepted by list queries.
pub const PAGE_LIMITS: std::ops::RangeInclusive<usize> = 1..=100;

/// One page of a list, with the cursor of the next page when there may be one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A page of search results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResults {
    /// Ranked by relevance, then newest first.
    pub hits: Vec<SearchHit>,
    /// Matches per status, for every criterion but the status filter.
    pub status_counts: BTreeMap<String, u64>,
    pub next_cursor: Option<String>,
}

/// The query use cases.
#[derive(Clone)]
pub struct QueryService {
    models: Arc<dyn ReadModels>,
    search: Arc<dyn SearchIndex>,
    checkpoints: Arc<Checkpoints>,
    config: QueryConfig,
}

impl std::fmt::Debug for QueryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryService")
            .field("max_wait", &self.config.max_wait)
            .finish_non_exhaustive()
    }
}

impl Principal {
    /// Whether this principal may see data of the customer with this id.
    pub fn can_read_customer(&self, customer_id: &str) -> bool {
        match self.role {
            Role::Operator | Role::Auditor => true,
            Role::Customer => self
                .customer_id
                .as_ref()
                .is_some_and(|own| own.as_str() == customer_id),
        }
    }
}

impl QueryService {
    /// The queries over `models` and `search`; `events` only says where the head of the log
    /// is, so that a read-your-writes position beyond it is refused instead of awaited.
    pub fn new(
        models: Arc<dyn ReadModels>,
        search: Arc<dyn SearchIndex>,
        events: Arc<dyn EventStore>,
        config: QueryConfig,
    ) -> Self {
        Self {
            checkpoints: Arc::new(Checkpoints::new(models.clone(), events)),
            models,
            search,
            config,
        }
    }

    /// Waits until `projection` has processed `position` (at most `max_wait`), sharing one
    /// poll of the checkpoint with every other request waiting for the same projection.
    ///
    /// # Errors
    /// [`QueryError::BadRequest`] for a position beyond the head of the log (no waiting can
    /// reach it); [`QueryError::NotCaughtUp`] when the wait runs out; storage failures.
    pub async fn wait_for(
        &self,
        projection: ProjectionName,
        position: Option<u64>,
    ) -> Result<(), QueryError> {
        match position {
            None => Ok(()),
            Some(wanted) => {
                self.checkpoints
                    .wait_for(projection, wanted, self.config.max_wait)
                    .await
            }
        }
    }

    /// An order's summary.
    ///
    /// # Errors
    /// `NotFound` (also for another customer's order), `NotCaughtUp`, storage failures.
    pub async fn order(
        &self,
        principal: &Principal,
        id: Uuid,
        min_position: Option<u64>,
    ) -> Result<Positioned<OrderSummaryRow>, QueryError> {
        self.wait_for(ProjectionName::Orders, min_position).await?;
        let found = self.models.order_summary(id).await?;
        visible(principal, found, "order", |row| &row.customer_id)
    }

    /// A customer's orders, newest first.
    ///
    /// # Errors
    /// `BadRequest` for a limit outside 1..=100 or a cursor this list did not issue;
    /// `NotFound` for another customer; `NotCaughtUp`; storage failures.
    pub async fn customer_orders(
        &self,
        principal: &Principal,
        customer_id: &str,
        limit: usize,
        cursor: Option<&str>,
        min_position: Option<u64>,
    ) -> Result<Positioned<Page<OrderSummaryRow>>, QueryError> {
        check_limit(limit)?;
        check_customer_id("customerId", customer_id)?;
        if !principal.can_read_customer(customer_id) {
            return Err(QueryError::NotFound("customer"));
        }
        let scope = format!("customer-orders|{customer_id}");
        let before = cursor.map(|c| self.open_cursor(&scope, c)).transpose()?;
        self.wait_for(ProjectionName::Orders, min_position).await?;
        let found = self
            .models
            .customer_orders(customer_id, before, limit)
            .await?;
        Ok(self.page(found, limit, &scope, |row| row.placed_position))
    }

    /// A customer's order statistics (all zero for a customer without orders).
    ///
    /// # Errors
    /// `NotFound` for another customer; `NotCaughtUp`; storage failures.
    pub async fn customer_stats(
        &self,
        principal: &Principal,
        customer_id: &str,
        min_position: Option<u64>,
    ) -> Result<Positioned<CustomerStatsRow>, QueryError> {
        check_customer_id("customerId", customer_id)?;
        if !principal.can_read_customer(customer_id) {
            return Err(QueryError::NotFound("customer"));
        }
        self.wait_for(ProjectionName::Orders, min_position).await?;
        let found = self.models.customer_stats(customer_id).await?;
        Ok(Positioned {
            value: found.value.unwrap_or_else(|| CustomerStatsRow {
                customer_id: customer_id.to_owned(),
                order_count: 0,
                by_status: StatusCounts::default(),
                lifetime_value_cents: Default::default(),
                updated_at: OffsetDateTime::UNIX_EPOCH,
            }),
            position: found.position,
        })
    }

    /// An account's balance.
    ///
    /// # Errors
    /// `NotFound` (also for another customer's account), `NotCaughtUp`, storage failures.
    pub async fn account(
        &self,
        principal: &Principal,
        id: Uuid,
        min_position: Option<u64>,
    ) -> Result<Positioned<AccountRow>, QueryError> {
        self.wait_for(ProjectionName::Accounts, min_position)
            .await?;
        let found = self.models.account(id).await?;
        visible(principal, found, "account", |row| &row.owner_customer_id)
    }

    /// An account's transactions, oldest first, with the balance after each.
    ///
    /// # Errors
    /// As for [`QueryService::account`] and [`QueryService::customer_orders`].
    pub async fn account_transactions(
        &self,
        principal: &Principal,
        id: Uuid,
        limit: usize,
        cursor: Option<&str>,
        min_position: Option<u64>,
    ) -> Result<Positioned<Page<TransactionRow>>, QueryError> {
        check_limit(limit)?;
        let scope = format!("account-transactions|{id}");
        let after = cursor.map(|c| self.open_cursor(&scope, c)).transpose()?;
        // Ownership first, from the same projection, so a stranger learns nothing.
        self.account(principal, id, min_position).await?;
        let found = self.models.account_transactions(id, after, limit).await?;
        Ok(self.page(found, limit, &scope, |row| row.version))
    }

    /// Orders matching words and filters, ranked by relevance then recency, with counts by
    /// status, resuming after `cursor` (`query.after` is ignored: only a sealed cursor sets it).
    /// A customer only ever finds their own orders: a search for another customer's finds
    /// nothing.
    ///
    /// # Errors
    /// `BadRequest` for a limit outside 1..=100, an unknown status, an empty range, text
    /// longer than [`MAX_SEARCH_TEXT`], or a cursor this search did not issue; `NotCaughtUp`;
    /// `Unavailable` when the search index cannot be reached.
    pub async fn search_orders(
        &self,
        principal: &Principal,
        mut query: SearchQuery,
        cursor: Option<&str>,
        min_position: Option<u64>,
    ) -> Result<Positioned<SearchResults>, QueryError> {
        check_search(&mut query)?;
        let mut nothing = false;
        if principal.role == Role::Customer {
            let own = principal
                .customer_id
                .as_ref()
                .map(|c| c.as_str().to_owned());
            nothing = own.is_none()
                || query
                    .customer_id
                    .as_ref()
                    .is_some_and(|asked| Some(asked) != own.as_ref());
            query.customer_id = own;
        }
        // The cursor is bound to the search as it runs, owner included (not to the page size).
        let scope = format!(
            "order-search|{:?}",
            (
                &query.text,
                &query.status,
                &query.customer_id,
                query.min_total_cents,
                query.max_total_cents,
                query.placed_from.map(OffsetDateTime::unix_timestamp_nanos),
                query.placed_to.map(OffsetDateTime::unix_timestamp_nanos),
            )
        );
        query.after = cursor
            .map(|c| self.open_search_cursor(&scope, c))
            .transpose()?;
        self.wait_for(ProjectionName::Search, min_position).await?;
        // Read before searching: the index then holds at least what this position says.
        let position = self.models.position(ProjectionName::Search).await?;
        if nothing {
            return Ok(Positioned {
                value: SearchResults {
                    hits: Vec::new(),
                    status_counts: BTreeMap::new(),
                    next_cursor: None,
                },
                position,
            });
        }
        let page = self.search.search(&query).await?;
        let next_cursor = page.next.map(|after| {
            let key = search_cursor_key(&after);
            format!("{key}.{}", self.cursor_mac(&scope, key.as_bytes()))
        });
        Ok(Positioned {
            value: SearchResults {
                hits: page.hits,
                status_counts: page.status_counts,
                next_cursor,
            },
            position,
        })
    }

    fn open_search_cursor(&self, scope: &str, cursor: &str) -> Result<SearchCursor, QueryError> {
        let bad = || QueryError::BadRequest("the cursor is not one this search issued".to_owned());
        let (key, mac) = cursor.rsplit_once('.').ok_or_else(bad)?;
        if mac != self.cursor_mac(scope, key.as_bytes()) {
            return Err(bad());
        }
        let mut parts = key.splitn(3, '_');
        let (Some(score), Some(nanos), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let score = u32::from_str_radix(score, 16).map_err(|_| bad())?;
        let nanos: i128 = nanos.parse().map_err(|_| bad())?;
        Ok(SearchCursor {
            score: f32::from_bits(score),
            placed_at: OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?,
            order_id: Uuid::parse_str(id).map_err(|_| bad())?,
        })
    }

    /// A page of `limit` rows: a full one gets the cursor of its last row's `key`.
    fn page<T>(
        &self,
        found: Positioned<Vec<T>>,
        limit: usize,
        scope: &str,
        key: impl Fn(&T) -> u64,
    ) -> Positioned<Page<T>> {
        let next_cursor = (found.value.len() == limit)
            .then(|| {
                found
                    .value
                    .last()
                    .map(|row| self.seal_cursor(scope, key(row)))
            })
            .flatten();
        Positioned {
            value: Page {
                items: found.value,
                next_cursor,
            },
            position: found.position,
        }
    }

    /// `<key>.<mac>`: the key in clear, and a keyed digest that binds it to this list.
    fn seal_cursor(&self, scope: &str, key: u64) -> String {
        format!("{key}.{}", self.cursor_mac(scope, &key.to_be_bytes()))
    }

    fn open_cursor(&self, scope: &str, cursor: &str) -> Result<u64, QueryError> {
        let bad = || QueryError::BadRequest("the cursor is not one this list issued".to_owned());
        let (key, mac) = cursor.split_once('.').ok_or_else(bad)?;
        let key: u64 = key.parse().map_err(|_| bad())?;
        if mac != self.cursor_mac(scope, &key.to_be_bytes()) {
            return Err(bad());
        }
        Ok(key)
    }

    fn cursor_mac(&self, scope: &str, key: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update((self.config.cursor_key.len() as u64).to_be_bytes());
        hasher.update(&self.config.cursor_key);
        hasher.update(scope.as_bytes());
        hasher.update(b"|");
        hasher.update(key);
        let digest = hasher.finalize();
        let mut text = String::with_capacity(32);
        for byte in &digest[..16] {
            let _ = write!(text, "{byte:02x}");
        }
        text
    }
}

/// The row if the principal may see its owner's data; otherwise (or without a row) not found,
/// so existence does not leak.
fn visible<T>(
    principal: &Principal,
    found: Positioned<Option<T>>,
    what: &'static str,
    owner: impl FnOnce(&T) -> &String,
) -> Result<Positioned<T>, QueryError> {
    match found.value {
        Some(row) if principal.can_read_customer(owner(&row)) => Ok(Positioned {
            value: row,
            position: found.position,
        }),
        _ => Err(QueryError::NotFound(what)),
    }
}

/// `<score bits, hex>_<placed_at, unix nanoseconds>_<order id>`: exact, and free of `.`.
fn search_cursor_key(after: &SearchCursor) -> String {
    format!(
        "{:08x}_{}_{}",
        after.score.to_bits(),
        after.placed_at.unix_timestamp_nanos(),
        after.order_id
    )
}

/// Checks a search's parts (trimming its words, an empty text is none).
fn check_search(query: &mut SearchQuery) -> Result<(), QueryError> {
    check_limit(query.limit)?;
    let bad = |reason: String| Err(QueryError::BadRequest(reason));
    // Checked before trimming, so the limit is the one the API document states.
    if let Some(text) = &query.text {
        if text.chars().count() > MAX_SEARCH_TEXT {
            return bad(format!("q must be at most {MAX_SEARCH_TEXT} characters"));
        }
        if has_forbidden_chars(text) {
            return bad(
                "q must not contain control characters (NUL, tab, line breaks and the like), \
                 Unicode line or paragraph separators, or bidirectional formatting characters"
                    .to_owned(),
            );
        }
    }
    query.text = query
        .text
        .take()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    if let Some(customer_id) = &query.customer_id {
        check_customer_id("customerId", customer_id)?;
    }
    if let Some(status) = &query.status
        && !OrderStatus::ALL.iter().any(|s| s.as_str() == status)
    {
        let known: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
        return bad(format!(
            "status must be one of {}, not {status:?}",
            known.join(", ")
        ));
    }
    if let (Some(min), Some(max)) = (query.min_total_cents, query.max_total_cents)
        && min > max
    {
        return bad(format!(
            "minTotalCents ({min}) must not be above maxTotalCents ({max})"
        ));
    }
    if let (Some(from), Some(to)) = (query.placed_from, query.placed_to)
        && from > to
    {
        return bad("placedFrom must not be after placedTo".to_owned());
    }
    Ok(())
}

/// A customer id asked for must be one a customer could have: anything else (a NUL, a `/`, a
/// path such as `../admin`) is a malformed request, refused before any storage is asked.
fn check_customer_id(name: &str, customer_id: &str) -> Result<(), QueryError> {
    // Identifiers are never trimmed: one with surrounding spaces is refused, as in a command.
    CustomerId::new(customer_id)
        .map(drop)
        .map_err(|error| QueryError::BadRequest(error.to_string().replacen("customerId", name, 1)))
}

fn check_limit(limit: usize) -> Result<(), QueryError> {
    if PAGE_LIMITS.contains(&limit) {
        Ok(())
    } else {
        Err(QueryError::BadRequest(format!(
            "limit must be between {} and {}, not {limit}",
            PAGE_LIMITS.start(),
            PAGE_LIMITS.end()
        )))
    }
}
