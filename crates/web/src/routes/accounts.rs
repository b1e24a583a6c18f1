//! `/v1/accounts`: the ledger commands, the audit trail and the balance of one account.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use strata_application::Target;
use strata_domain::account::{Account, AccountCommand, AccountState};
use strata_domain::values::{Amount, Currency, CustomerId, Reference};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Authenticated, Commander};
use crate::error::ApiError;
use crate::extract::{
    ApiJson, ApiPath, ApiQuery, CommandHeaders, IdempotencyKeyParams, IfMatchParams, json_integer,
};
use crate::routes::common::{
    AsOfParams, AuditTrail, Resource, audit_trail, execute, free_text_schema, identifier_schema,
    view_as_of,
};
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

impl Resource for Account {
    const ID_FIELD: &'static str = "accountId";
    type View = BalanceDto;

    fn location(id: Uuid) -> String {
        format!("/v1/accounts/{id}/balance")
    }

    fn view(id: Uuid, version: u64, state: AccountState) -> Option<BalanceDto> {
        state.map(|account| BalanceDto {
            account_id: id,
            version,
            owner_customer_id: account.owner_customer_id.to_string(),
            currency: account.currency.to_string(),
            balance_cents: account.balance_cents,
            closed: account.closed,
        })
    }

    fn command_name(command: &AccountCommand) -> &'static str {
        match command {
            AccountCommand::Open { .. } => "OpenAccount",
            AccountCommand::Deposit { .. } => "Deposit",
            AccountCommand::Withdraw { .. } => "Withdraw",
            AccountCommand::Close => "CloseAccount",
        }
    }
}

/// Opens an account for a customer, in one currency.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenAccountRequest {
    #[schema(schema_with = identifier_schema)]
    pub owner_customer_id: String,
    /// ISO 4217 code of the account (the enum lists every one accepted).
    #[schema(example = "EUR")]
    pub currency: String,
}

/// Moves money in or out: a positive amount in minor units, with the caller's reference.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MovementRequest {
    /// Minor units (cents): 1 or more.
    #[schema(example = 2500, minimum = 1)]
    #[serde(deserialize_with = "json_integer")]
    pub amount_cents: i64,
    /// The caller's reference (an invoice or transfer id).
    #[schema(schema_with = free_text_schema::<200>)]
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

/// Open an account.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", operation_id = "openAccount", request_body = OpenAccountRequest,
    params(IfMatchParams, IdempotencyKeyParams),
    responses(
        (status = 201, description = "Account opened (or the first answer to this Idempotency-Key, replayed)", body = AccountAck, headers(
            ("Location" = String, description = "Where the new account can be read: /v1/accounts/{id}/balance"),
            ("ETag" = String, description = "The account's version, for If-Match"))),
        (status = 400), (status = 401), (status = 403, description = "An auditor, or a customer opening an account for another owner"),
        (status = 412, description = "If-Match named a version other than 0: a new account has none yet"), (status = 415), (status = 422)),
    security(("bearer" = [])))]
pub async fn open(
    State(state): State<AppState>,
    Commander(principal): Commander,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<OpenAccountRequest>,
) -> Result<Response, ApiError> {
    let command = AccountCommand::Open {
        owner_customer_id: CustomerId::new(body.owner_customer_id)?,
        currency: Currency::new(&body.currency)?,
    };
    execute::<Account>(&state, principal, headers, Target::New, command).await
}

/// Deposit money.
#[utoipa::path(post, path = "/v1/accounts/{id}/deposits", tag = "accounts", operation_id = "deposit", request_body = MovementRequest,
    params(("id" = Uuid, Path, description = "The account's id"), IfMatchParams, IdempotencyKeyParams),
    responses((status = 200, description = "Applied (or the first answer to this Idempotency-Key, replayed)", body = AccountAck, headers(("ETag" = String, description = "The account's new version, for If-Match"))),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409, description = "The account is closed"), (status = 412), (status = 415), (status = 422)),
    security(("bearer" = [])))]
pub async fn deposit(
    State(state): State<AppState>,
    Commander(principal): Commander,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<MovementRequest>,
) -> Result<Response, ApiError> {
    let (amount, reference) = body.parts()?;
    execute::<Account>(
        &state,
        principal,
        headers,
        Target::Existing(id),
        AccountCommand::Deposit { amount, reference },
    )
    .await
}

/// Withdraw money; never below a zero balance.
#[utoipa::path(post, path = "/v1/accounts/{id}/withdrawals", tag = "accounts", operation_id = "withdraw", request_body = MovementRequest,
    params(("id" = Uuid, Path, description = "The account's id"), IfMatchParams, IdempotencyKeyParams),
    responses((status = 200, description = "Applied (or the first answer to this Idempotency-Key, replayed)", body = AccountAck, headers(("ETag" = String, description = "The account's new version, for If-Match"))),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409, description = "Insufficient funds, or the account is closed"), (status = 412), (status = 415), (status = 422)),
    security(("bearer" = [])))]
pub async fn withdraw(
    State(state): State<AppState>,
    Commander(principal): Commander,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    ApiJson(body): ApiJson<MovementRequest>,
) -> Result<Response, ApiError> {
    let (amount, reference) = body.parts()?;
    execute::<Account>(
        &state,
        principal,
        headers,
        Target::Existing(id),
        AccountCommand::Withdraw { amount, reference },
    )
    .await
}

/// Close an account at zero balance.
#[utoipa::path(post, path = "/v1/accounts/{id}/close", tag = "accounts", operation_id = "closeAccount",
    params(("id" = Uuid, Path, description = "The account's id"), IfMatchParams, IdempotencyKeyParams),
    responses((status = 200, description = "Applied (or the first answer to this Idempotency-Key, replayed)", body = AccountAck, headers(("ETag" = String, description = "The account's new version, for If-Match"))),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409, description = "The balance is not zero, or the account is already closed"), (status = 412), (status = 422)),
    security(("bearer" = [])))]
pub async fn close(
    State(state): State<AppState>,
    Commander(principal): Commander,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
) -> Result<Response, ApiError> {
    execute::<Account>(
        &state,
        principal,
        headers,
        Target::Existing(id),
        AccountCommand::Close,
    )
    .await
}

/// The account's audit trail.
#[utoipa::path(get, path = "/v1/accounts/{id}/events", tag = "accounts", operation_id = "accountEvents",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses((status = 200, description = "Every event of the account, oldest first", body = AuditTrail),
        (status = 400), (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<AuditTrail>, ApiError> {
    audit_trail::<Account>(&state, &principal, id).await
}

/// The balance as of a stream version or an instant (now by default), rebuilt from the account's events.
#[utoipa::path(get, path = "/v1/accounts/{id}/balance", tag = "accounts", operation_id = "accountBalance",
    params(("id" = Uuid, Path, description = "The account's id"), AsOfParams),
    responses((status = 200, description = "The account at that point", body = BalanceDto, headers(("ETag" = String, description = "The version the state is at"))),
        (status = 400, description = "Both version and at, a malformed one, or an unknown parameter"),
        (status = 401),
        (status = 404, description = "Unknown, not yours, not yet opened at that point, or a version beyond the end")),
    security(("bearer" = [])))]
pub async fn balance(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<AsOfParams>,
) -> Result<Response, ApiError> {
    view_as_of::<Account>(&state, &principal, id, &params).await
}
