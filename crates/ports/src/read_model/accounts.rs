//! The accounts read model: each account's balance and its transaction lines, as a projection
//! batch writes them ([`AccountRows`]) and as the queries read them ([`AccountQueries`]).

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Positioned, ReadModelError};

/// The account balance read model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub account_id: Uuid,
    pub owner_customer_id: String,
    pub currency: String,
    pub balance_cents: i64,
    pub closed: bool,
    pub transaction_count: u64,
    pub opened_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The stream version of the last event applied: the per-row idempotency guard.
    pub version: u64,
}

/// A deposit or a withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    Deposit,
    Withdrawal,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deposit => "DEPOSIT",
            Self::Withdrawal => "WITHDRAWAL",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "DEPOSIT" => Some(Self::Deposit),
            "WITHDRAWAL" => Some(Self::Withdrawal),
            _ => None,
        }
    }
}

/// One line of an account's transaction list, with the balance after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRow {
    pub account_id: Uuid,
    /// The stream version of the event: unique per account, the pagination key.
    pub version: u64,
    pub global_position: u64,
    pub kind: TransactionKind,
    pub amount_cents: i64,
    pub reference: String,
    pub balance_after_cents: i64,
    pub recorded_at: OffsetDateTime,
}

/// The accounts read model inside a projection batch (see [`super::ProjectionBatch`]).
#[async_trait]
pub trait AccountRows: Send {
    /// The account `id` in the batch's generation, as the batch sees it.
    ///
    /// # Errors
    /// `Corrupt` for a stored row this code cannot read; `Unavailable` / `Backend`.
    async fn account(&mut self, id: Uuid) -> Result<Option<AccountRow>, ReadModelError>;
    /// Writes the account, unless the stored row's version is the same or higher.
    ///
    /// # Errors
    /// `Backend` for a count or version beyond the storage's integers; `Unavailable` /
    /// `Backend`.
    async fn put_account(&mut self, row: &AccountRow) -> Result<(), ReadModelError>;
    /// Adds a transaction line; a line already there (same account and version) is kept as is.
    ///
    /// # Errors
    /// As for [`AccountRows::put_account`].
    async fn add_transaction(&mut self, row: &TransactionRow) -> Result<(), ReadModelError>;
}

/// The queries of the accounts read model; each answer carries the accounts projection's
/// position.
#[async_trait]
pub trait AccountQueries: Send + Sync {
    /// The account `id`, if the projection has it.
    ///
    /// # Errors
    /// `Corrupt` for a stored row this code cannot read; `Unavailable` / `Backend`.
    async fn account(&self, id: Uuid) -> Result<Positioned<Option<AccountRow>>, ReadModelError>;
    /// An account's transactions, oldest first, after stream version `after`.
    ///
    /// # Errors
    /// `Backend` for an `after` beyond the storage's integers; `Corrupt`, `Unavailable` /
    /// `Backend`.
    async fn account_transactions(
        &self,
        id: Uuid,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Positioned<Vec<TransactionRow>>, ReadModelError>;
}
