//! Pieces shared by the resource modules: running a command (with its metrics) and rendering its
//! acknowledgement, the audit-trail shape, the `?version=` / `?at=` time-travel parameters, and
//! the paging parameters and position header of queries.

use std::time::Instant;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_application::{AsOf, CommandAck, Owned, Principal, Target};
use strata_ports::RecordedEvent;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{CommandHeaders, PROJECTION_POSITION, etag, parse_digits};
use crate::state::AppState;

/// An aggregate as the API shows it.
pub trait Resource: Owned {
    /// The name of the id field in acknowledgements (`orderId`).
    const ID_FIELD: &'static str;

    /// What a read of the aggregate's state answers.
    type View: Serialize;

    /// Where a created aggregate can be read: the `Location` of a 201. It must be a route that
    /// answers `GET` with the same token.
    fn location(id: Uuid) -> String;

    /// The view of a state at `version`; `None` when the aggregate does not exist in it.
    fn view(id: Uuid, version: u64, state: Self::State) -> Option<Self::View>;

    /// The command's name in metrics (`PlaceOrder`).
    fn command_name(command: &Self::Command) -> &'static str;
}

/// Runs one command through the application and renders its acknowledgement.
///
/// # Errors
/// The application's refusal, as an [`ApiError`].
pub async fn execute<R: Resource>(
    state: &AppState,
    principal: Principal,
    headers: CommandHeaders,
    target: Target,
    command: R::Command,
) -> Result<Response, ApiError> {
    let name = R::command_name(&command);
    let started = Instant::now();
    let result = state
        .commands
        .execute::<R>(&headers.context(principal), target, command)
        .await
        .map_err(ApiError::from);
    let outcome = match &result {
        Ok(ack) if ack.replayed => "replayed",
        Ok(_) => "accepted",
        Err(error) => error.slug(),
    };
    crate::metrics::record_command(name, outcome, started.elapsed());
    let ack = result?;
    let location = (target == Target::New).then(|| R::location(ack.aggregate_id));
    Ok(acknowledge(ack, R::ID_FIELD, location))
}

/// Answers an aggregate's audit trail.
///
/// # Errors
/// Unknown or not visible to the principal (404), or the store fails.
pub async fn audit_trail<R: Resource>(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
) -> Result<axum::Json<AuditTrail>, ApiError> {
    let events = state.history.audit_trail::<R>(principal, id).await?;
    Ok(axum::Json(AuditTrail::new(id, events)))
}

/// Answers an aggregate's view as of the point `params` name, with an `ETag` of its version.
///
/// # Errors
/// Bad parameters (400); unknown, not visible, or not existing at that point (404); the store
/// fails.
pub async fn view_as_of<R: Resource>(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    params: &AsOfParams,
) -> Result<Response, ApiError> {
    let loaded = state
        .history
        .state_as_of::<R>(principal, id, params.as_of()?)
        .await?;
    let view = R::view(id, loaded.version, loaded.state)
        .ok_or_else(|| ApiError::NotFound(format!("{} not found", R::CATEGORY)))?;
    Ok(([(header::ETAG, etag(loaded.version))], axum::Json(view)).into_response())
}

/// Renders a command acknowledgement as `{<id_field>, version, position}` with an `ETag` of the
/// new version, and a `Location` when the command created the resource.
fn acknowledge(ack: CommandAck, id_field: &str, location: Option<String>) -> Response {
    let body = serde_json::json!({
        id_field: ack.aggregate_id,
        "version": ack.version,
        "position": ack.position,
    });
    let status = if location.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag(ack.version)) {
        headers.insert(header::ETAG, value);
    }
    if let Some(value) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, value);
    }
    response
}

/// Who caused an event, and in answer to which request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadataDto {
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub user_id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// One event of an audit trail, as stored.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventDto {
    pub event_id: Uuid,
    pub event_type: String,
    /// The schema version the data was written with.
    pub schema_version: u32,
    pub stream_version: u64,
    pub global_position: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: OffsetDateTime,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub metadata: EventMetadataDto,
}

impl From<RecordedEvent> for EventDto {
    fn from(event: RecordedEvent) -> Self {
        Self {
            event_id: event.event_id,
            event_type: event.event_type,
            schema_version: event.schema_version,
            stream_version: event.stream_version,
            global_position: event.global_position,
            recorded_at: event.recorded_at,
            data: event.data,
            metadata: EventMetadataDto {
                correlation_id: event.metadata.correlation_id,
                causation_id: event.metadata.causation_id,
                user_id: event.metadata.user_id,
                idempotency_key: event.metadata.idempotency_key,
            },
        }
    }
}

/// An aggregate's complete audit trail.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditTrail {
    pub aggregate_id: Uuid,
    pub events: Vec<EventDto>,
}

impl AuditTrail {
    pub fn new(aggregate_id: Uuid, events: Vec<RecordedEvent>) -> Self {
        Self {
            aggregate_id,
            events: events.into_iter().map(EventDto::from).collect(),
        }
    }
}

/// When to rebuild the state: give at most one of `version` and `at`; neither means now. Any
/// other parameter is a 400, so a typo is not silently answered with the latest state.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsOfParams {
    /// A stream version: the state just after that event (404 beyond the end of the stream).
    #[param(value_type = u64, required = false, minimum = 0)]
    pub version: Option<String>,
    /// An RFC 3339 instant: the state including every event recorded at or before it.
    #[param(value_type = String, required = false, format = DateTime)]
    pub at: Option<String>,
}

impl AsOfParams {
    /// # Errors
    /// [`ApiError::BadRequest`] for both parameters, a non-numeric version or a bad instant.
    pub fn as_of(&self) -> Result<AsOf, ApiError> {
        match (&self.version, &self.at) {
            (Some(_), Some(_)) => Err(ApiError::BadRequest(
                "give either version or at, not both".to_owned(),
            )),
            (Some(version), None) => {
                parse_digits(version, 20).map(AsOf::Version).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "version must be a non-negative integer, not {version:?}"
                    ))
                })
            }
            (None, Some(at)) => parse_instant("at", at).map(AsOf::Time),
            (None, None) => Ok(AsOf::Latest),
        }
    }
}

/// The pattern of identifiers (customer and product ids) in the API document: exactly what
/// `CustomerId::new` and `ProductId::new` accept (a test checks them against each other).
pub const IDENTIFIER_PATTERN: &str = "^[A-Za-z0-9._:-]{1,64}$";

/// The characters no text may hold (`strata_domain::values::is_forbidden_char`), as a regular
/// expression class body.
macro_rules! forbidden {
    () => {
        r"\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
    };
}

/// The pattern of free text (addresses, reasons, tracking numbers, references, search words):
/// no forbidden character, and at least one that is not white space.
pub const FREE_TEXT_PATTERN: &str = concat!(
    "^[^",
    forbidden!(),
    "]*[^\\s",
    forbidden!(),
    "][^",
    forbidden!(),
    "]*$"
);

/// The schema of an identifier (`schema_with`).
pub fn identifier_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(IDENTIFIER_PATTERN))
        .min_length(Some(1))
        .max_length(Some(64))
        .description(Some("1 to 64 of A-Z a-z 0-9 - _ . :"))
        .build()
}

/// The schema of free text of at most `MAX` characters (`schema_with`).
pub fn free_text_schema<const MAX: usize>() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(FREE_TEXT_PATTERN))
        .min_length(Some(1))
        .max_length(Some(MAX))
        .description(Some(format!(
            "At most {MAX} characters, not only white space; no control characters, Unicode \
             line or paragraph separators, or bidirectional formatting characters"
        )))
        .build()
}

/// The status of an order, as every answer, filter and count spells it (documentation: the
/// values are `OrderStatus::as_str`, which a test checks).
#[derive(Debug, ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum OrderStatusName {
    PENDING,
    CONFIRMED,
    SHIPPED,
    DELIVERED,
    CANCELLED,
}

/// Items per page of a list when the client does not say.
pub const DEFAULT_PAGE_LIMIT: usize = 20;

/// One page of a list: `limit` items at most, after the page `cursor` ended. Any other
/// parameter is a 400 (a typo such as `limt` is not silently answered with 20 items).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page: 1 to 100 (default 20); anything else is a 400.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<usize>,
    /// The `nextCursor` of the previous page of the same list (400 for any other value).
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_PAGE_LIMIT)
    }
}

/// Answers a query: the JSON body, with the position of the projection it was read from in
/// `X-Projection-Position`.
pub fn positioned<T: Serialize>(body: T, position: u64) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(PROJECTION_POSITION, HeaderValue::from(position));
    response
}

/// Parses the RFC 3339 instant of the parameter `name`.
///
/// # Errors
/// [`ApiError::BadRequest`] naming the parameter and the expected format.
pub fn parse_instant(name: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        ApiError::BadRequest(format!(
            "{name} must be an RFC 3339 instant such as 2026-01-31T12:00:00Z: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use strata_domain::order::OrderStatus;
    use utoipa::PartialSchema;

    use super::*;

    #[test]
    fn the_documented_status_names_are_those_every_answer_spells() {
        let schema = serde_json::to_value(OrderStatusName::schema()).unwrap();
        let spelled: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(schema["enum"], serde_json::json!(spelled));
    }

    #[test]
    fn time_travel_parameters_are_validated() {
        let params = |version: Option<&str>, at: Option<&str>| AsOfParams {
            version: version.map(str::to_owned),
            at: at.map(str::to_owned),
        };
        assert_eq!(params(None, None).as_of().unwrap(), AsOf::Latest);
        assert_eq!(params(Some("3"), None).as_of().unwrap(), AsOf::Version(3));
        assert!(matches!(
            params(Some("x"), None).as_of(),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            params(Some("1"), Some("2026-01-01T00:00:00Z")).as_of(),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            params(None, Some("yesterday")).as_of(),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            params(None, Some("2026-01-01T00:00:00+02:00")).as_of(),
            Ok(AsOf::Time(_))
        ));
    }
}
