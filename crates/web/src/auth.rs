//! Bearer-token authentication: HS256 JWTs whose claims become the application's `Principal`.
//!
//! A token is accepted when its signature verifies with the current secret or a previous one,
//! its header has no `crit` parameter, it is neither expired nor not yet valid (`nbf`), was not
//! issued in the future (`iat`), lives no longer than the configured maximum, carries the
//! configured issuer and audience, and its `sub`, `role` and `customerId` make a principal.
//! Every refusal answers the same 401; the reason is logged at debug level only.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, TokenData, Validation};
use serde::{Deserialize, Serialize};
use strata_application::{Principal, Role};
use strata_domain::ValidationError;
use strata_domain::values::{CustomerId, has_forbidden_chars};
use strata_ports::limits::MAX_PRINCIPAL_BYTES;

use crate::error::ApiError;
use crate::limits::{Kind, RateLimiters};

#[cfg(test)]
mod tests;

/// The detail of every 401 for a token that was sent but refused. It names no check, so a
/// client probing the server learns nothing about which one failed.
pub const REFUSED_TOKEN: &str = "the access token is malformed, expired or otherwise invalid";

/// The detail of a 401 for a request that sent no Bearer token at all.
pub const NO_TOKEN: &str = "this request needs an Authorization: Bearer <token> header";

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

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
    /// Issuer; required (and compared) only when the server is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience; required (and compared) only when the server is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

impl Claims {
    /// The claims of a token for `sub` in `role` (a customer's with its `customer_id`), issued
    /// now and expiring `ttl` later, without issuer or audience: what tools and tests mint.
    pub fn issued_now(
        sub: impl Into<String>,
        role: &str,
        customer_id: Option<&str>,
        ttl: Duration,
    ) -> Self {
        let now = jsonwebtoken::get_current_timestamp();
        Self {
            sub: sub.into(),
            role: role.to_owned(),
            customer_id: customer_id.map(str::to_owned),
            exp: now.saturating_add(ttl.as_secs()),
            iat: Some(now),
            iss: None,
            aud: None,
        }
    }
}

/// The `aud` claim: one audience, or several (RFC 7519 §4.1.3 allows both forms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// What a token must satisfy besides its signature and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    /// Longest accepted `exp - iat` (or `exp - now` for a token without `iat`).
    pub max_lifetime: Duration,
    /// The `iss` a token must carry; `None`: not checked.
    pub issuer: Option<String>,
    /// The audience a token's `aud` must name; `None`: a token naming any audience is refused.
    pub audience: Option<String>,
}

impl Default for TokenRules {
    fn default() -> Self {
        Self {
            max_lifetime: Duration::from_secs(86_400),
            issuer: None,
            audience: None,
        }
    }
}

/// Why a token was refused: logged at debug level, never sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum TokenRejection {
    /// Malformed, badly signed (by every secret), expired, not yet valid (`nbf`), a wrong
    /// issuer or audience, or claims of the wrong shape: the library's own checks.
    #[error("{0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("the header has a crit parameter {0:?}, and no extension is understood here")]
    CriticalHeader(Vec<String>),
    #[error("issued in the future: iat {iat} is after now ({now}) plus the leeway")]
    IssuedInTheFuture { iat: u64, now: u64 },
    #[error("expires (exp {exp}) before it was issued (iat {iat})")]
    ExpiresBeforeIssued { exp: u64, iat: u64 },
    #[error("lives {lifetime} s, longer than the maximum of {max} s")]
    LivesTooLong { lifetime: u64, max: u64 },
    #[error(
        "the sub claim must be non-empty text of at most {MAX_PRINCIPAL_BYTES} bytes without control characters"
    )]
    BadSubject,
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    #[error("a customer token needs a customerId claim")]
    MissingCustomerId,
    #[error("bad customerId claim: {0}")]
    BadCustomerId(ValidationError),
}

/// Verifies HS256 tokens with the current secret and any previous ones, and signs with the
/// current one.
#[derive(Clone)]
pub struct JwtKeys {
    current: DecodingKey,
    /// Tried in order when the current secret's signature does not match.
    previous: Vec<DecodingKey>,
    encoding: EncodingKey,
    validation: Validation,
    max_lifetime_secs: u64,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    /// One secret and the default rules (a day at most, no issuer or audience).
    pub fn new(secret: &[u8]) -> Self {
        Self::with_rules(secret, &[], TokenRules::default())
    }

    /// `current` signs and verifies; each of `previous` only verifies (key rotation).
    pub fn with_rules(current: &[u8], previous: &[&[u8]], rules: TokenRules) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &rules.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &rules.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self {
            current: DecodingKey::from_secret(current),
            previous: previous
                .iter()
                .map(|s| DecodingKey::from_secret(s))
                .collect(),
            encoding: EncodingKey::from_secret(current),
            validation,
            max_lifetime_secs: rules.max_lifetime.as_secs(),
        }
    }

    /// Signs claims with the current secret (used by tests and tooling; the service itself only
    /// verifies).
    ///
    /// # Errors
    /// When the claims cannot be encoded.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// The principal a token stands for; a refusal is logged with its reason at debug level
    /// and answered with one fixed sentence.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] for any token [`JwtKeys::verify`] refuses.
    pub fn principal(&self, token: &str) -> Result<Principal, ApiError> {
        self.verify(token).map_err(|reason| {
            tracing::debug!(%reason, "access token refused");
            ApiError::Unauthorized(REFUSED_TOKEN.to_owned())
        })
    }

    /// Checks a token and turns its claims into a principal.
    ///
    /// # Errors
    /// A [`TokenRejection`] saying which check failed.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenRejection> {
        let TokenData { header, claims } = self.decode(token)?;
        // RFC 7515 §4.1.11: a recipient must refuse a crit extension it does not understand,
        // and this one understands none (an empty list is malformed).
        if let Some(crit) = header.crit {
            return Err(TokenRejection::CriticalHeader(crit));
        }
        self.check_lifetime(&claims, jsonwebtoken::get_current_timestamp())?;
        principal_of(claims)
    }

    /// Decodes with the first secret whose signature verifies; the library checks the rest
    /// (`alg`, `exp`, `nbf`, `iss`, `aud`, required claims) once, for that secret.
    fn decode(&self, token: &str) -> Result<TokenData<Claims>, TokenRejection> {
        let mut decoded = jsonwebtoken::decode::<Claims>(token, &self.current, &self.validation);
        for key in &self.previous {
            match &decoded {
                Err(error) if matches!(error.kind(), ErrorKind::InvalidSignature) => {
                    decoded = jsonwebtoken::decode::<Claims>(token, key, &self.validation);
                }
                _ => break,
            }
        }
        Ok(decoded?)
    }

    /// `iat` not in the future, and a lifetime (from `iat`, else from now) within the maximum,
    /// so that a leaked token cannot be used for years.
    fn check_lifetime(&self, claims: &Claims, now: u64) -> Result<(), TokenRejection> {
        let lifetime = match claims.iat {
            Some(iat) if iat > now.saturating_add(LEEWAY_SECS) => {
                return Err(TokenRejection::IssuedInTheFuture { iat, now });
            }
            Some(iat) => {
                claims
                    .exp
                    .checked_sub(iat)
                    .ok_or(TokenRejection::ExpiresBeforeIssued {
                        exp: claims.exp,
                        iat,
                    })?
            }
            // The issuer's clock may run ahead of ours by the leeway.
            None => claims.exp.saturating_sub(now).saturating_sub(LEEWAY_SECS),
        };
        if lifetime > self.max_lifetime_secs {
            return Err(TokenRejection::LivesTooLong {
                lifetime,
                max: self.max_lifetime_secs,
            });
        }
        Ok(())
    }
}

/// The principal of verified claims.
fn principal_of(claims: Claims) -> Result<Principal, TokenRejection> {
    // The subject scopes idempotency keys and is stored in every event's metadata: bounded
    // so that an idempotency record's key always fits the storage's index.
    if claims.sub.trim().is_empty()
        || claims.sub.len() > MAX_PRINCIPAL_BYTES
        || has_forbidden_chars(&claims.sub)
    {
        return Err(TokenRejection::BadSubject);
    }
    let role = match claims.role.as_str() {
        "customer" => Role::Customer,
        "operator" => Role::Operator,
        "auditor" => Role::Auditor,
        _ => return Err(TokenRejection::UnknownRole(claims.role)),
    };
    let customer_id = match (role, claims.customer_id) {
        (Role::Customer, None) => return Err(TokenRejection::MissingCustomerId),
        (_, Some(id)) => Some(CustomerId::new(id).map_err(TokenRejection::BadCustomerId)?),
        (_, None) => None,
    };
    Ok(Principal {
        user_id: claims.sub,
        role,
        customer_id,
    })
}

/// What the authenticating extractors need of the handler state: the token keys and the rate
/// limits. The state implements it (`state.rs`), so this module needs nothing of that one.
pub trait Gatekeeper {
    /// The keys that verify bearer tokens.
    fn jwt(&self) -> &JwtKeys;
    /// The per-principal rate limits of commands and queries.
    fn rate_limits(&self) -> &RateLimiters;
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl<S: Gatekeeper + Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = authenticate(parts, state)?;
        state.rate_limits().check(Kind::Query, &principal.user_id)?;
        Ok(Self(principal))
    }
}

/// The principal of the request's bearer token.
fn authenticate(parts: &Parts, state: &impl Gatekeeper) -> Result<Principal, ApiError> {
    // No header, another scheme, or no token: the client did not try a token, so it may be
    // told what to send; a token that was sent gets only the fixed sentence.
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized(NO_TOKEN.to_owned()))?;
    state.jwt().principal(token)
}

/// The authenticated caller of a command. It refuses a principal that may not issue commands
/// (an auditor) with 403 before the body is read, so an auditor's malformed body is a 403, not
/// a 400: put it before any body extractor.
#[derive(Debug, Clone)]
pub struct Commander(pub Principal);

impl<S: Gatekeeper + Send + Sync> FromRequestParts<S> for Commander {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = authenticate(parts, state)?;
        principal.may_command()?;
        state
            .rate_limits()
            .check(Kind::Command, &principal.user_id)?;
        Ok(Self(principal))
    }
}
