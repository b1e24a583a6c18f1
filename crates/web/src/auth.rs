//! Bearer-token authentication: HS256 JWTs whose claims become the application's `Principal`.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use strata_application::{Principal, Role};
use strata_domain::values::{CustomerId, has_forbidden_chars};
use strata_ports::limits::MAX_PRINCIPAL_BYTES;

use crate::error::ApiError;
use crate::state::AppState;

/// The claims Strata reads from (and, for tooling and tests, writes into) a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub sub: String,
    /// `customer`, `operator` or `auditor`.
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Checks signatures and expiry of HS256 tokens.
#[derive(Clone)]
pub struct JwtKeys {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        Self {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs claims (used by tests and tooling; the service itself only verifies).
    ///
    /// # Errors
    /// When the claims cannot be encoded.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// The principal a token stands for.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] for a bad signature, an expired token, or unusable claims.
    pub fn principal(&self, token: &str) -> Result<Principal, ApiError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| ApiError::Unauthorized(format!("invalid access token: {e}")))?
            .claims;
        // The subject scopes idempotency keys and is stored in every event's metadata: bounded
        // so that an idempotency record's key always fits the storage's index.
        if claims.sub.trim().is_empty()
            || claims.sub.len() > MAX_PRINCIPAL_BYTES
            || has_forbidden_chars(&claims.sub)
        {
            return Err(ApiError::Unauthorized(format!(
                "the sub claim must be non-empty text of at most {MAX_PRINCIPAL_BYTES} bytes \
                 without control characters"
            )));
        }
        let role = match claims.role.as_str() {
            "customer" => Role::Customer,
            "operator" => Role::Operator,
            "auditor" => Role::Auditor,
            other => {
                return Err(ApiError::Unauthorized(format!(
                    "unknown role {other:?} in access token"
                )));
            }
        };
        let customer_id = match (role, claims.customer_id) {
            (Role::Customer, None) => {
                return Err(ApiError::Unauthorized(
                    "a customer token needs a customerId claim".to_owned(),
                ));
            }
            (_, Some(id)) => Some(
                CustomerId::new(id)
                    .map_err(|e| ApiError::Unauthorized(format!("bad customerId claim: {e}")))?,
            ),
            (_, None) => None,
        };
        Ok(Principal {
            user_id: claims.sub,
            role,
            customer_id,
        })
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized("missing Authorization: Bearer <token> header".to_owned())
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be Bearer <token>".to_owned())
            })?;
        state.jwt.principal(token).map(Self)
    }
}

/// The authenticated caller of a command. It refuses a principal that may not issue commands
/// (an auditor) with 403 before the body is read, so an auditor's malformed body is a 403, not
/// a 400: put it before any body extractor.
#[derive(Debug, Clone)]
pub struct Commander(pub Principal);

impl FromRequestParts<AppState> for Commander {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Authenticated(principal) = Authenticated::from_request_parts(parts, state).await?;
        principal.may_command()?;
        Ok(Self(principal))
    }
}
