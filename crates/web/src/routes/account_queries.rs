//! The account queries, answered by the `accounts` projection's read models (never the event
//! store): an account's balance and its transactions with the running balance.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;
use strata_application::Page;
use strata_ports::{AccountRow, TransactionRow};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, MinPosition, MinPositionParams};
use crate::routes::common::{PageParams, positioned};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts/{id}", get(account))
        .route("/v1/accounts/{id}/transactions", get(transactions))
}

/// An account as the accounts projection last saw it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountDto {
    pub account_id: Uuid,
    pub owner_customer_id: String,
    pub currency: String,
    pub balance_cents: i64,
    pub closed: bool,
    /// Deposits and withdrawals so far.
    pub transaction_count: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub opened_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// The account's stream version the row includes.
    pub version: u64,
}

impl From<AccountRow> for AccountDto {
    fn from(row: AccountRow) -> Self {
        Self {
            account_id: row.account_id,
            owner_customer_id: row.owner_customer_id,
            currency: row.currency,
            balance_cents: row.balance_cents,
            closed: row.closed,
            transaction_count: row.transaction_count,
            opened_at: row.opened_at,
            updated_at: row.updated_at,
            version: row.version,
        }
    }
}

/// The kind of a transaction, as answers spell it (documentation only: the answers carry the
/// read model's text, which is one of these).
#[derive(Debug, ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum TransactionKind {
    DEPOSIT,
    WITHDRAWAL,
}

/// A deposit or a withdrawal, with the balance just after it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionDto {
    /// The account's stream version of the event.
    pub version: u64,
    /// The global log position of the event.
    pub position: u64,
    /// Which way the money went.
    #[schema(value_type = TransactionKind, example = "DEPOSIT")]
    pub kind: String,
    /// Always positive: `kind` says which way the money went.
    pub amount_cents: i64,
    pub reference: String,
    pub balance_after_cents: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: OffsetDateTime,
}

impl From<TransactionRow> for TransactionDto {
    fn from(row: TransactionRow) -> Self {
        Self {
            version: row.version,
            position: row.global_position,
            kind: row.kind.as_str().to_owned(),
            amount_cents: row.amount_cents,
            reference: row.reference,
            balance_after_cents: row.balance_after_cents,
            recorded_at: row.recorded_at,
        }
    }
}

/// A page of an account's transactions, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionPage {
    pub items: Vec<TransactionDto>,
    /// Pass it as `cursor` for the next page; `null` when this page is the last.
    pub next_cursor: Option<String>,
}

impl From<Page<TransactionRow>> for TransactionPage {
    fn from(page: Page<TransactionRow>) -> Self {
        Self {
            items: page.items.into_iter().map(TransactionDto::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// An account's balance, from the read model.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "queries", operation_id = "accountSummary",
    params(("id" = Uuid, Path, description = "The account's id"), MinPositionParams),
    responses(
        (status = 200, description = "The account's summary", body = AccountDto, headers(("X-Projection-Position" = u64, description = "The log position the projection had processed when it answered"))),
        (status = 400, description = "A malformed id or X-Min-Position, or one beyond the head of the log"),
        (status = 401),
        (status = 404, description = "Unknown, or not yours"),
        (status = 503, description = "The accounts projection did not reach X-Min-Position in time")),
    security(("bearer" = [])))]
pub async fn account(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    MinPosition(min_position): MinPosition,
) -> Result<Response, ApiError> {
    let found = state.queries.account(&principal, id, min_position).await?;
    Ok(positioned(AccountDto::from(found.value), found.position))
}

/// An account's deposits and withdrawals, oldest first, each with the balance after it.
#[utoipa::path(get, path = "/v1/accounts/{id}/transactions", tag = "queries", operation_id = "accountTransactions",
    params(("id" = Uuid, Path, description = "The account's id"), PageParams, MinPositionParams),
    responses(
        (status = 200, description = "A page of the account's deposits and withdrawals, oldest first", body = TransactionPage, headers(("X-Projection-Position" = u64, description = "The log position the projection had processed when it answered"))),
        (status = 400, description = "A malformed id or X-Min-Position, one beyond the head of the log, a limit outside 1..=100, a cursor this list did not issue, an unknown parameter"),
        (status = 401),
        (status = 404, description = "Unknown, or not yours"),
        (status = 503, description = "The accounts projection did not reach X-Min-Position in time")),
    security(("bearer" = [])))]
pub async fn transactions(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<PageParams>,
    MinPosition(min_position): MinPosition,
) -> Result<Response, ApiError> {
    let found = state
        .queries
        .account_transactions(
            &principal,
            id,
            page.limit(),
            page.cursor.as_deref(),
            min_position,
        )
        .await?;
    Ok(positioned(
        TransactionPage::from(found.value),
        found.position,
    ))
}
