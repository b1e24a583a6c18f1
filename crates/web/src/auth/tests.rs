//! Unit tests of token verification: each check refuses for its own reason, and the client
//! sees none of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::*;

const SECRET: &[u8] = b"unit-test-secret-0123456789abcdefghij";
const PREVIOUS: &[u8] = b"previous-secret-9876543210zyxwvutsrq";
const STRANGER: &[u8] = b"stranger-secret-5555555555mnopqrstuv";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Valid operator claims issued now, living ten minutes; tests change one thing.
fn claims() -> Value {
    json!({"sub": "operator-1", "role": "operator", "iat": now(), "exp": now() + 600})
}

fn sign_with(header: &Header, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn sign(claims: &Value) -> String {
    sign_with(&Header::new(Algorithm::HS256), claims, SECRET)
}

fn refusal(keys: &JwtKeys, token: &str) -> TokenRejection {
    match keys.verify(token) {
        Ok(principal) => panic!("accepted as {principal:?}"),
        Err(reason) => reason,
    }
}

/// The library's reason, for the checks it makes.
fn library_kind(reason: TokenRejection) -> ErrorKind {
    match reason {
        TokenRejection::Invalid(error) => error.into_kind(),
        other => panic!("refused by Strata's own check: {other}"),
    }
}

fn with_claim(name: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[name] = value;
    claims
}

#[test]
fn a_valid_operator_token_becomes_its_principal() {
    let principal = JwtKeys::new(SECRET).verify(&sign(&claims())).unwrap();

    assert_eq!(principal.user_id, "operator-1");
    assert_eq!(principal.role, Role::Operator);
    assert_eq!(principal.customer_id, None);
}

#[test]
fn a_token_not_yet_valid_is_refused_beyond_the_leeway() {
    let keys = JwtKeys::new(SECRET);

    let reason = refusal(&keys, &sign(&with_claim("nbf", json!(now() + 3600))));

    assert!(matches!(library_kind(reason), ErrorKind::ImmatureSignature));
    keys.verify(&sign(&with_claim("nbf", json!(now() + 2))))
        .expect("within the leeway");
}

#[test]
fn a_token_issued_in_the_future_is_refused_beyond_the_leeway() {
    let keys = JwtKeys::new(SECRET);

    let reason = refusal(&keys, &sign(&with_claim("iat", json!(now() + 60))));

    assert!(
        matches!(reason, TokenRejection::IssuedInTheFuture { .. }),
        "{reason}"
    );
    keys.verify(&sign(&with_claim("iat", json!(now() + 2))))
        .expect("within the leeway");
}

#[test]
fn a_token_whose_header_has_a_crit_parameter_is_refused() {
    let keys = JwtKeys::new(SECRET);

    for crit in [vec!["b64".to_owned()], vec![]] {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(crit.clone());
        let reason = refusal(&keys, &sign_with(&header, &claims(), SECRET));
        assert!(
            matches!(&reason, TokenRejection::CriticalHeader(listed) if *listed == crit),
            "{reason}"
        );
    }
}

#[test]
fn a_lifetime_beyond_the_maximum_is_refused_from_iat_or_else_from_now() {
    let keys = JwtKeys::with_rules(
        SECRET,
        &[],
        TokenRules {
            max_lifetime: Duration::from_secs(600),
            ..TokenRules::default()
        },
    );
    let at = |iat: Option<u64>, exp: u64| Claims {
        sub: "s".to_owned(),
        role: "operator".to_owned(),
        customer_id: None,
        exp,
        iat,
        iss: None,
        aud: None,
    };
    let now = 1_800_000_000;

    for (iat, exp) in [
        (Some(now - 100), now + 501),
        (Some(now), u64::MAX),
        (None, now + 600 + LEEWAY_SECS + 1),
        (None, u64::MAX),
    ] {
        let checked = keys.check_lifetime(&at(iat, exp), now);
        assert!(
            matches!(checked, Err(TokenRejection::LivesTooLong { .. })),
            "iat {iat:?} exp {exp}: {checked:?}"
        );
    }
    for (iat, exp) in [
        (Some(now - 100), now + 500),
        (None, now + 600 + LEEWAY_SECS),
    ] {
        keys.check_lifetime(&at(iat, exp), now)
            .unwrap_or_else(|e| panic!("iat {iat:?} exp {exp}: {e}"));
    }
    assert!(matches!(
        keys.check_lifetime(&at(Some(now + 3), now + 1), now),
        Err(TokenRejection::ExpiresBeforeIssued { .. })
    ));
}

#[test]
fn a_configured_issuer_and_audience_are_required_and_compared() {
    let keys = JwtKeys::with_rules(
        SECRET,
        &[],
        TokenRules {
            issuer: Some("https://idp.example".to_owned()),
            audience: Some("strata".to_owned()),
            ..TokenRules::default()
        },
    );
    let token = |iss: Option<&str>, aud: Option<Value>| {
        let mut claims = claims();
        if let Some(iss) = iss {
            claims["iss"] = json!(iss);
        }
        if let Some(aud) = aud {
            claims["aud"] = aud;
        }
        sign(&claims)
    };
    let idp = Some("https://idp.example");

    let missing_iss = library_kind(refusal(&keys, &token(None, Some(json!("strata")))));
    let other_iss = library_kind(refusal(&keys, &token(Some("evil"), Some(json!("strata")))));
    let missing_aud = library_kind(refusal(&keys, &token(idp, None)));
    let other_aud = library_kind(refusal(&keys, &token(idp, Some(json!("billing")))));

    assert!(matches!(missing_iss, ErrorKind::MissingRequiredClaim(c) if c == "iss"));
    assert!(matches!(other_iss, ErrorKind::InvalidIssuer));
    assert!(matches!(missing_aud, ErrorKind::MissingRequiredClaim(c) if c == "aud"));
    assert!(matches!(other_aud, ErrorKind::InvalidAudience));
    keys.verify(&token(idp, Some(json!("strata")))).unwrap();
    keys.verify(&token(idp, Some(json!(["billing", "strata"]))))
        .unwrap();
}

#[test]
fn without_a_configured_issuer_any_is_accepted_but_a_named_audience_is_refused() {
    let keys = JwtKeys::new(SECRET);

    keys.verify(&sign(&with_claim("iss", json!("anyone"))))
        .unwrap();
    let reason = refusal(&keys, &sign(&with_claim("aud", json!("billing"))));

    assert!(matches!(library_kind(reason), ErrorKind::InvalidAudience));
}

#[test]
fn a_previous_secret_verifies_but_only_the_current_one_signs() {
    let rotating = JwtKeys::with_rules(SECRET, &[PREVIOUS], TokenRules::default());

    rotating.verify(&sign(&claims())).unwrap();
    rotating
        .verify(&sign_with(&Header::default(), &claims(), PREVIOUS))
        .unwrap();
    let stranger = refusal(
        &rotating,
        &sign_with(&Header::default(), &claims(), STRANGER),
    );
    assert!(matches!(
        library_kind(stranger),
        ErrorKind::InvalidSignature
    ));

    let minted = rotating
        .sign(&Claims {
            sub: "s".to_owned(),
            role: "auditor".to_owned(),
            customer_id: None,
            exp: now() + 60,
            iat: Some(now()),
            iss: None,
            aud: None,
        })
        .unwrap();
    JwtKeys::new(SECRET).verify(&minted).unwrap();
    assert!(JwtKeys::new(PREVIOUS).verify(&minted).is_err());
}

#[test]
fn a_previous_secret_does_not_rescue_an_expired_token() {
    let rotating = JwtKeys::with_rules(SECRET, &[PREVIOUS], TokenRules::default());
    let expired = with_claim("exp", json!(now() - 3600));

    let reason = refusal(
        &rotating,
        &sign_with(&Header::default(), &expired, PREVIOUS),
    );

    assert!(matches!(library_kind(reason), ErrorKind::ExpiredSignature));
}

/// A log sink for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_client_gets_one_fixed_sentence_and_the_reason_goes_to_the_debug_log() {
    let keys = JwtKeys::new(SECRET);
    let log = Captured::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();

    let answers = tracing::subscriber::with_default(subscriber, || {
        [
            sign(&with_claim("role", json!("admin"))),
            sign(&with_claim("nbf", json!(now() + 3600))),
            "not-a-jwt".to_owned(),
        ]
        .map(|token| keys.principal(&token).unwrap_err())
    });

    for answer in answers {
        assert!(
            matches!(&answer, ApiError::Unauthorized(detail) if detail == REFUSED_TOKEN),
            "{answer:?}"
        );
    }
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    for reason in [
        "unknown role \"admin\"",
        "ImmatureSignature",
        "InvalidToken",
    ] {
        assert!(log.contains(reason), "{reason} not in the log:\n{log}");
    }
    assert!(log.contains("DEBUG"), "{log}");
}

#[test]
fn claims_name_an_issuer_and_one_or_several_audiences_only_when_set() {
    let mut claims = Claims {
        sub: "s".to_owned(),
        role: "operator".to_owned(),
        customer_id: None,
        exp: 1,
        iat: None,
        iss: None,
        aud: None,
    };
    let bare = serde_json::to_value(&claims).unwrap();
    assert!(
        bare.get("iss").is_none() && bare.get("aud").is_none(),
        "{bare}"
    );

    claims.iss = Some("idp".to_owned());
    claims.aud = Some(Audience::One("strata".to_owned()));
    let json = serde_json::to_value(&claims).unwrap();
    assert_eq!(json["iss"], "idp");
    assert_eq!(json["aud"], "strata");
    let many: Claims =
        serde_json::from_value(json!({"sub": "s", "role": "r", "exp": 1, "aud": ["a", "b"]}))
            .unwrap();
    assert_eq!(
        many.aud,
        Some(Audience::Many(vec!["a".to_owned(), "b".to_owned()]))
    );
}
