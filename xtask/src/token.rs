//! `cargo xtask token`: a signed HS256 JWT for calling the API by hand.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use time::OffsetDateTime;

/// The published development secret; `strata-web --dev` accepts tokens signed with it.
pub const DEV_JWT_SECRET: &str = "strata-development-secret-not-for-production";

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Role of the principal.
    #[arg(long, value_enum)]
    role: Role,
    /// Subject (user id); defaults to the customer id, or `<role>-dev`.
    #[arg(long)]
    sub: Option<String>,
    /// The customer the principal is (required for role customer, refused otherwise).
    #[arg(long)]
    customer_id: Option<String>,
    /// Lifetime in seconds; a negative value gives an already expired token. The server refuses
    /// tokens living longer than its STRATA_JWT_MAX_LIFETIME_SECS (default 86400).
    #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
    ttl_seconds: i64,
    /// Signing secret; defaults to the development secret.
    #[arg(long, env = "STRATA_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The `iss` claim, for a server started with STRATA_JWT_ISSUER.
    #[arg(long)]
    issuer: Option<String>,
    /// The `aud` claim, for a server started with STRATA_JWT_AUDIENCE.
    #[arg(long)]
    audience: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Operator,
    Auditor,
}

/// The claims of the contract: `sub`, `role`, `customerId` (customers only), `iat`, `exp`, and
/// `iss` and `aud` when asked for.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(rename_all = "camelCase")]
struct Claims {
    sub: String,
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// Prints the token, and nothing else, on stdout.
pub fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claims = claims(args, now)?;
    let secret = match args.secret.as_deref() {
        Some("") => bail!("the JWT secret is empty (--secret or STRATA_JWT_SECRET)"),
        Some(secret) => secret,
        None => {
            eprintln!(
                "note: signing with the development secret (set --secret or STRATA_JWT_SECRET otherwise)"
            );
            DEV_JWT_SECRET
        }
    };
    println!("{}", sign(&claims, secret)?);
    Ok(())
}

/// A token for another task (`contract`), minted as `cargo xtask token` would with these flags:
/// the subject defaults alike, and no issuer or audience is claimed.
pub fn mint(
    role: Role,
    customer_id: Option<&str>,
    secret: &str,
    ttl_seconds: i64,
) -> anyhow::Result<String> {
    let args = TokenArgs {
        role,
        sub: None,
        customer_id: customer_id.map(str::to_owned),
        ttl_seconds,
        secret: Some(secret.to_owned()),
        issuer: None,
        audience: None,
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    sign(&claims(&args, now)?, secret)
}

fn claims(args: &TokenArgs, now: i64) -> anyhow::Result<Claims> {
    let customer_id = match (args.role, args.customer_id.as_deref()) {
        (Role::Customer, None | Some("")) => bail!("--customer-id is required for role customer"),
        (Role::Customer, Some(id)) => Some(id.to_owned()),
        (_, None) => None,
        (role, Some(_)) => bail!(
            "--customer-id is only for role customer, not {}",
            role_name(role)
        ),
    };
    let sub = match (&args.sub, &customer_id) {
        (Some(sub), _) => sub.clone(),
        (None, Some(customer_id)) => customer_id.clone(),
        (None, None) => format!("{}-dev", role_name(args.role)),
    };
    let exp = now
        .checked_add(args.ttl_seconds)
        .context("--ttl-seconds is out of range")?;
    Ok(Claims {
        sub,
        role: args.role,
        customer_id,
        iat: now,
        exp,
        iss: args.issuer.clone(),
        aud: args.audience.clone(),
    })
}

fn sign(claims: &Claims, secret: &str) -> anyhow::Result<String> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("could not sign the token")
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Customer => "customer",
        Role::Operator => "operator",
        Role::Auditor => "auditor",
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    fn token_args(role: Role, customer_id: Option<&str>) -> TokenArgs {
        TokenArgs {
            role,
            sub: None,
            customer_id: customer_id.map(str::to_owned),
            ttl_seconds: 3600,
            secret: None,
            issuer: None,
            audience: None,
        }
    }

    #[test]
    fn a_customer_token_carries_the_contract_claims() {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = claims(&token_args(Role::Customer, Some("c1")), now).unwrap();
        let token = sign(&claims, DEV_JWT_SECRET).unwrap();

        let decoded = jsonwebtoken::decode::<Claims>(
            &token,
            &DecodingKey::from_secret(DEV_JWT_SECRET.as_bytes()),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap()
        .claims;
        assert_eq!(decoded, claims);
        assert_eq!(decoded.sub, "c1");
        assert_eq!(decoded.exp, now + 3600);
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["role"], "customer");
        assert_eq!(json["customerId"], "c1");
    }

    #[test]
    fn a_customer_token_needs_a_customer_id() {
        let error = claims(&token_args(Role::Customer, None), 0).unwrap_err();
        assert!(error.to_string().contains("--customer-id is required"));
    }

    #[test]
    fn staff_tokens_have_a_default_subject_and_no_customer_id() {
        let claims = claims(&token_args(Role::Auditor, None), 0).unwrap();
        assert_eq!(claims.sub, "auditor-dev");
        let json = serde_json::to_value(&claims).unwrap();
        assert!(json.get("customerId").is_none());
        assert!(super::claims(&token_args(Role::Operator, Some("c1")), 0).is_err());
    }

    #[test]
    fn an_issuer_and_an_audience_are_claimed_only_when_asked_for() {
        let mut args = token_args(Role::Operator, None);
        let plain = serde_json::to_value(claims(&args, 0).unwrap()).unwrap();
        assert!(
            plain.get("iss").is_none() && plain.get("aud").is_none(),
            "{plain}"
        );

        args.issuer = Some("https://idp.example".to_owned());
        args.audience = Some("strata".to_owned());
        let token = sign(&claims(&args, 0).unwrap(), DEV_JWT_SECRET).unwrap();

        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.set_issuer(&["https://idp.example"]);
        validation.set_audience(&["strata"]);
        validation.set_required_spec_claims(&["iss", "aud"]);
        let decoded = jsonwebtoken::decode::<Claims>(
            &token,
            &DecodingKey::from_secret(DEV_JWT_SECRET.as_bytes()),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(decoded.iss.as_deref(), Some("https://idp.example"));
        assert_eq!(decoded.aud.as_deref(), Some("strata"));
    }
}
