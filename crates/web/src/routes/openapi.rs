//! The OpenAPI 3 document, generated from the handlers' annotations, served at `/openapi.json`
//! with Swagger UI at `/docs` (assets vendored into the binary, so it works offline).

mod answers;
mod links;
#[cfg(test)]
mod tests;

use answers::SharedAnswers;
use links::Links;

use axum::Router;
use strata_domain::values::Currency;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::error::Problem;
use crate::routes::{
    account_queries, accounts, common, events, health, metrics, order_queries, orders, projections,
    search,
};
use crate::state::AppState;

/// The API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Strata", description = "Event-sourced order management and account ledger. \
        Errors are application/problem+json (RFC 9457).\n\n\
        Limits, checked before anything is stored: no text (path, query, header or JSON string) \
        may hold control characters (NUL, tab, line breaks), the Unicode line and paragraph \
        separators U+2028/U+2029, or bidirectional formatting characters (U+061C, U+200E, \
        U+200F, U+202A to U+202E, U+2066 to U+2069): 422 in a command's body, 400 elsewhere. \
        Customer and product ids: 1 to 64 of A-Z a-z 0-9 - _ . : (a customer id in a path or \
        a search that breaks this is 400). Shipping address and cancellation reason: at most \
        500 characters; tracking number 100; reference 200; search words 200. An order has at \
        most 100 lines. Idempotency-Key: 1 to 200 visible ASCII characters. A token's sub: at \
        most 256 bytes. Amounts and totals are 64-bit integers of minor units: a command whose \
        total would not fit is 422, and a read-model total that would not fit is reported as \
        a dead letter of its projection, never saturated.\n\n\
        Load: any route behind a token may answer 429 when its principal is over its rate of \
        commands or of queries, and any route but /health/live 503 when the server handles its \
        limit of requests or a request outlives its deadline; both carry Retry-After (seconds). An \
        X-Min-Position beyond the head of the log is 400 at once."),
    paths(
        orders::place_order, orders::add_item, orders::remove_item, orders::confirm, orders::ship,
        orders::deliver, orders::cancel, orders::events, orders::state,
        accounts::open, accounts::deposit, accounts::withdraw, accounts::close, accounts::events,
        accounts::balance, order_queries::order, order_queries::customer_orders,
        order_queries::customer_stats, search::search, account_queries::account, account_queries::transactions,
        projections::projections, metrics::metrics, health::live, health::ready,
        events::page, events::stream,
    ),
    components(schemas(Problem, common::EventDto, common::EventMetadataDto, common::AuditTrail,
        common::OrderStatusName, events::LogEventDto, events::LogPageDto, events::CutoffDto)),
    modifiers(&BearerAuth, &CurrencyCodes, &SharedAnswers, &Links),
    tags((name = "orders"), (name = "accounts"),
        (name = "queries", description = "Read models, kept up to date by the projector. Send \
            X-Min-Position with a command's position to read your own writes."),
        (name = "events", description = "The global log, for other services: pages of it, and \
            the same as Server-Sent Events (catch-up, then live). Customers see their own \
            orders' and accounts' events only."),
        (name = "operations"), (name = "health")),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The currencies a command accepts, listed from the domain's own table (an attribute cannot
/// hold it), on every request schema with a `currency` field.
struct CurrencyCodes;

impl Modify for CurrencyCodes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (name, schema) in &mut components.schemas {
            let RefOr::T(Schema::Object(object)) = schema else {
                continue;
            };
            if !name.ends_with("Request") {
                continue;
            }
            if let Some(RefOr::T(Schema::Object(currency))) = object.properties.get_mut("currency")
            {
                currency.enum_values = Some(Currency::codes().iter().map(|&c| c.into()).collect());
            }
        }
    }
}

/// `/openapi.json`, and Swagger UI at `/docs` when `docs` is on.
pub fn router(docs: bool) -> Router<AppState> {
    if docs {
        Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
    } else {
        let document = ApiDoc::openapi();
        Router::new().route(
            "/openapi.json",
            axum::routing::get(move || std::future::ready(axum::Json(document.clone()))),
        )
    }
}
