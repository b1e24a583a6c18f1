//! `/v1/accounts`: the ledger commands, the audit trail and the balance of one account.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use strata_application::{AsOf, Principal, Target};
use strata_domain::account::{Account, AccountCommand};
use strata_domain::values::{Amount, Currency, CustomerId, Reference};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, CommandHeaders, etag};
use crate::routes::common::{AuditTrail, acknowledge, parse_instant};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts", post(open))
        .route("/v1/accounts/{id}/deposits", post(deposit))
        .route("/v1/accounts/{id}/withdrawals", post(withdraw))
        .route("/v1/accounts/{id}/close", post(close))
        .route("/v1/accounts/{id}/events", get(events))
        .route("/v1/accounts/{id}/balance", get(balance))
}

/// Opens an account for a customer, in one currency.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenAccountRequest {
    #[schema(example = "cust-1")]
    pub owner_customer_id: String,
    #[schema(example = "EUR")]
    pub currency: String,
}

/// Moves money in or out: a positive amount in minor units, with the caller's reference.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MovementRequest {
    #[schema(example = 2500)]
    pub amount_cents: i64,
    #[schema(example = "invoice-2026-001")]
    pub reference: String,
}

impl MovementRequest {
    fn parts(self) -> Result<(Amount, Reference), ApiError> {
        Ok((
            Amount::new(self.amount_cents)?,
            Reference::new(self.reference)?,
        ))
    }
}

/// Where an account command landed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountAck {
    pub account_id: Uuid,
    pub version: u64,
    pub position: u64,
}

/// An account's balance as rebuilt from its events.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalanceDto {
    pub account_id: Uuid,
    pub version: u64,
    pub owner_customer_id: String,
    pub currency: String,
    pub balance_cents: i64,
    pub closed: bool,
}

/// When to read the balance: an RFC 3339 instant, or now when absent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BalanceParams {
    pub at: Option<String>,
}

async fn execute(
    state: &AppState,
    principal: Principal,
    headers: CommandHeaders,
    target: Target,
    command: AccountCommand,
) -> Result<Response, ApiError> {
    let ack = state
        .commands
        .execute::<Account>(&headers.context(principal), target, command)
        .await?;
    let location = (target == Target::New).then(|| format!("/v1/accounts/{}", ack.aggregate_id));
    Ok(acknowledge(ack, "accountId", location))
}

/// Open an account.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = OpenAccountRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = AccountAck, headers(("Location" = String), ("ETag" = String))),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn open(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<OpenAccountRequest>,
) -> Result<Response, ApiError> {
    let command = AccountCommand::Open {
        owner_customer_id: CustomerId::new(body.owner_customer_id)?,
        currency: Currency::new(&body.currency)?,
    };
    execute(&state, principal, headers, Target::New, command).await
}

/// Deposit money.
#[utoipa::path(post, path = "/v1/accounts/{id}/deposits", tag = "accounts", request_body = MovementRequest,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = AccountAck), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "The account is closed", body = Problem), (status = 412, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn deposit(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<MovementRequest>,
) -> Result<Response, ApiError> {
    let (amount, reference) = body.parts()?;
    execute(
        &state,
        principal,
        headers,
        Target::Existing(id),
        AccountCommand::Deposit { amount, reference },
    )
    .await
}

/// Withdraw money; never below a zero balance.
#[utoipa::path(post, path = "/v1/accounts/{id}/withdrawals", tag = "accounts", request_body = MovementRequest,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = AccountAck), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "Insufficient funds or closed", body = Problem), (status = 412, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn withdraw(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<MovementRequest>,
) -> Result<Response, ApiError> {
    let (amount, reference) = body.parts()?;
    execute(
        &state,
        principal,
        headers,
        Target::Existing(id),
        AccountCommand::Withdraw { amount, reference },
    )
    .await
}

/// Close an account at zero balance.
#[utoipa::path(post, path = "/v1/accounts/{id}/close", tag = "accounts",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = AccountAck), (status = 404, body = Problem),
        (status = 409, description = "Balance not zero, or already closed", body = Problem), (status = 412, body = Problem)),
    security(("bearer" = [])))]
pub async fn close(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
) -> Result<Response, ApiError> {
    execute(
        &state,
        principal,
        headers,
        Target::Existing(id),
        AccountCommand::Close,
    )
    .await
}

/// The account's audit trail.
#[utoipa::path(get, path = "/v1/accounts/{id}/events", tag = "accounts", params(("id" = Uuid, Path)),
    responses((status = 200, body = AuditTrail), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<AuditTrail>, ApiError> {
    let events = state.history.audit_trail::<Account>(&principal, id).await?;
    Ok(axum::Json(AuditTrail::new(id, events)))
}

/// The balance now, or as of an instant, rebuilt from the account's events.
#[utoipa::path(get, path = "/v1/accounts/{id}/balance", tag = "accounts", params(("id" = Uuid, Path), BalanceParams),
    responses((status = 200, body = BalanceDto), (status = 400, body = Problem),
        (status = 404, description = "Unknown, not yours, or not yet opened at that instant", body = Problem)),
    security(("bearer" = [])))]
pub async fn balance(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<BalanceParams>,
) -> Result<Response, ApiError> {
    let as_of = match params.at.as_deref() {
        Some(at) => AsOf::Time(parse_instant(at)?),
        None => AsOf::Latest,
    };
    let loaded = state
        .history
        .state_as_of::<Account>(&principal, id, as_of)
        .await?;
    let account = loaded
        .state
        .ok_or_else(|| ApiError::NotFound("account not found".to_owned()))?;
    let body = BalanceDto {
        account_id: id,
        version: loaded.version,
        owner_customer_id: account.owner_customer_id.to_string(),
        currency: account.currency.to_string(),
        balance_cents: account.balance_cents,
        closed: account.closed,
    };
    Ok((
        [(axum::http::header::ETAG, etag(loaded.version))],
        axum::Json(body),
    )
        .into_response())
}
