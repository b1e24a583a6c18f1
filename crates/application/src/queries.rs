//! Queries: answered from the read models only, with the ownership rules of the commands, and
//! read-your-writes (wait until the serving projection has reached a position, up to a bound).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use strata_ports::{
    AccountRow, CustomerStatsRow, OrderSummaryRow, Positioned, ReadModelError, ReadModels,
    StatusCounts, TransactionRow,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::access::{Principal, Role};

/// The projection serving order queries.
pub const ORDERS: &str = "orders";
/// The projection serving account queries.
pub const ACCOUNTS: &str = "accounts";

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

/// Why a query was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No such thing, or one the caller may not see.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A parameter is out of range or malformed (a page size, a cursor).
    #[error("{0}")]
    BadRequest(String),
    /// The projection has not reached the requested position within the wait.
    #[error(
        "the {projection} projection is at position {position}, not yet at {wanted}; retry shortly"
    )]
    NotCaughtUp {
        projection: &'static str,
        position: u64,
        wanted: u64,
    },
    /// The read models cannot be reached now.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ReadModelError> for QueryError {
    fn from(error: ReadModelError) -> Self {
        match error {
            ReadModelError::Unavailable(reason) => Self::Unavailable(reason),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// One page of a list, with the cursor of the next page when there may be one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The query use cases.
#[derive(Clone)]
pub struct QueryService {
    models: Arc<dyn ReadModels>,
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
    pub fn new(models: Arc<dyn ReadModels>, config: QueryConfig) -> Self {
        Self { models, config }
    }

    /// Waits until `projection` has processed `position` (at most `max_wait`).
    ///
    /// # Errors
    /// [`QueryError::NotCaughtUp`] when the wait runs out; storage failures.
    pub async fn wait_for(
        &self,
        projection: &'static str,
        position: Option<u64>,
    ) -> Result<(), QueryError> {
        let Some(wanted) = position else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + self.config.max_wait;
        let mut pause = Duration::from_millis(5);
        loop {
            let reached = self.models.position(projection).await?;
            if reached >= wanted {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(QueryError::NotCaughtUp {
                    projection,
                    position: reached,
                    wanted,
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(100));
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
        self.wait_for(ORDERS, min_position).await?;
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
        if !principal.can_read_customer(customer_id) {
            return Err(QueryError::NotFound("customer"));
        }
        let scope = format!("customer-orders|{customer_id}");
        let before = cursor.map(|c| self.open_cursor(&scope, c)).transpose()?;
        self.wait_for(ORDERS, min_position).await?;
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
        if !principal.can_read_customer(customer_id) {
            return Err(QueryError::NotFound("customer"));
        }
        self.wait_for(ORDERS, min_position).await?;
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
        self.wait_for(ACCOUNTS, min_position).await?;
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
        format!("{key}.{}", self.cursor_mac(scope, key))
    }

    fn open_cursor(&self, scope: &str, cursor: &str) -> Result<u64, QueryError> {
        let bad = || QueryError::BadRequest("the cursor is not one this list issued".to_owned());
        let (key, mac) = cursor.split_once('.').ok_or_else(bad)?;
        let key: u64 = key.parse().map_err(|_| bad())?;
        if mac != self.cursor_mac(scope, key) {
            return Err(bad());
        }
        Ok(key)
    }

    fn cursor_mac(&self, scope: &str, key: u64) -> String {
        let mut hasher = Sha256::new();
        hasher.update((self.config.cursor_key.len() as u64).to_be_bytes());
        hasher.update(&self.config.cursor_key);
        hasher.update(scope.as_bytes());
        hasher.update(b"|");
        hasher.update(key.to_be_bytes());
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
