//! Authentication over HTTP: tokens are required, checked, and turned into roles.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TEST_SECRET, TestApp, expired_claims, order_body, spawn_app, spawn_app_with};

async fn place_with(app: &TestApp, authorization: Option<&str>) -> crate::helpers::Answer {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    app.send(
        Method::POST,
        "/v1/orders",
        None,
        Some(order_body("c1")),
        &headers,
    )
    .await
}

#[tokio::test]
async fn a_request_without_a_token_is_401_with_a_bearer_challenge() {
    let app = spawn_app().await;

    let answer = place_with(&app, None).await.expect_problem(401);

    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn malformed_forged_and_expired_tokens_are_401() {
    let app = spawn_app().await;
    let forged = strata_web::auth::JwtKeys::new(b"another-secret-another-secret-xx")
        .sign(&expired_claims("operator", None))
        .unwrap();
    let mut valid_but_forged = expired_claims("operator", None);
    valid_but_forged.exp += 7200;
    let forged_live = strata_web::auth::JwtKeys::new(b"another-secret-another-secret-xx")
        .sign(&valid_but_forged)
        .unwrap();
    let expired = app.sign(expired_claims("operator", None));

    for authorization in [
        "Basic dXNlcjpwYXNz".to_owned(),
        "Bearer ".to_owned(),
        "Bearer not-a-jwt".to_owned(),
        format!("Bearer {forged}"),
        format!("Bearer {forged_live}"),
        format!("Bearer {expired}"),
    ] {
        place_with(&app, Some(&authorization))
            .await
            .expect_problem(401);
    }
}

#[tokio::test]
async fn a_token_with_an_unknown_role_or_a_customer_without_customer_id_is_401() {
    let app = spawn_app().await;
    let mut claims = expired_claims("admin", None);
    claims.exp += 7200;
    let unknown_role = app.sign(claims.clone());
    claims.role = "customer".to_owned();
    let customer_without_id = app.sign(claims);

    app.post("/v1/orders", &unknown_role, order_body("c1"))
        .await
        .expect_problem(401);
    app.post("/v1/orders", &customer_without_id, order_body("c1"))
        .await
        .expect_problem(401);
}

#[tokio::test]
async fn health_and_api_documents_need_no_token() {
    let app = spawn_app().await;

    for path in ["/health/live", "/health/ready", "/openapi.json"] {
        app.send(Method::GET, path, None, None, &[])
            .await
            .expect(200);
    }
    let docs = app
        .client
        .get(format!("{}/docs/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(
        docs.text().await.unwrap().contains("swagger"),
        "the docs page is Swagger UI"
    );
}

#[tokio::test]
async fn a_token_whose_subject_is_empty_or_has_control_characters_is_401() {
    let app = spawn_app().await;

    for sub in ["", "   ", "op\u{0}erator", "operator\n", "op\u{9b}erator"] {
        let mut claims = expired_claims("operator", None);
        claims.exp += 7200;
        claims.sub = sub.to_owned();
        let answer = app
            .post("/v1/orders", &app.sign(claims), order_body("c1"))
            .await;
        assert_eq!(answer.status, 401, "sub {sub:?} → {}", answer.body);
        answer.expect_problem(401);
    }
}

/// The one detail of every 401 for a token that is present but refused: which check failed is
/// logged, never sent.
const REFUSED_TOKEN: &str = "the access token is malformed, expired or otherwise invalid";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Valid operator claims, issued now and living ten minutes, to be made invalid one at a time.
fn operator_claims() -> Value {
    json!({"sub": "operator-1", "role": "operator", "iat": now(), "exp": now() + 600})
}

/// Any claims under any header, signed with HS256 and `secret`.
fn sign_with(header: &Header, claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// Claims signed with the test server's secret under a plain HS256 header.
fn sign(claims: &Value) -> String {
    sign_with(&Header::new(Algorithm::HS256), claims, TEST_SECRET)
}

async fn place_with_token(app: &TestApp, token: &str) -> crate::helpers::Answer {
    app.post("/v1/orders", token, order_body("c1")).await
}

#[tokio::test]
async fn a_token_not_yet_valid_or_issued_in_the_future_is_401() {
    let app = spawn_app().await;
    let mut not_yet_valid = operator_claims();
    not_yet_valid["nbf"] = json!(now() + 3600);
    not_yet_valid["exp"] = json!(now() + 7200);
    let mut issued_in_the_future = operator_claims();
    issued_in_the_future["iat"] = json!(now() + 3600);
    issued_in_the_future["exp"] = json!(now() + 7200);
    let mut valid_from_now = operator_claims();
    valid_from_now["nbf"] = json!(now());

    for claims in [not_yet_valid, issued_in_the_future] {
        let answer = place_with_token(&app, &sign(&claims)).await;
        assert_eq!(answer.status, 401, "{claims} → {}", answer.body);
    }
    place_with_token(&app, &sign(&valid_from_now))
        .await
        .expect(201);
}

#[tokio::test]
async fn a_token_whose_header_has_a_crit_parameter_is_401() {
    let app = spawn_app().await;

    for crit in [vec!["anything".to_owned()], vec!["exp".to_owned()], vec![]] {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(crit.clone());
        let answer =
            place_with_token(&app, &sign_with(&header, &operator_claims(), TEST_SECRET)).await;
        assert_eq!(answer.status, 401, "crit {crit:?} → {}", answer.body);
    }
}

#[tokio::test]
async fn a_token_living_longer_than_a_day_is_401() {
    let app = spawn_app().await;
    let forever = json!({"sub": "operator-1", "role": "operator", "iat": now(), "exp": u64::MAX});
    let forever_without_iat = json!({"sub": "operator-1", "role": "operator", "exp": u64::MAX});
    let a_day_and_a_second =
        json!({"sub": "operator-1", "role": "operator", "iat": now(), "exp": now() + 86_401});
    let a_week_without_iat =
        json!({"sub": "operator-1", "role": "operator", "exp": now() + 7 * 86_400});
    let exactly_a_day =
        json!({"sub": "operator-1", "role": "operator", "iat": now(), "exp": now() + 86_400});

    for claims in [
        forever,
        forever_without_iat,
        a_day_and_a_second,
        a_week_without_iat,
    ] {
        let answer = place_with_token(&app, &sign(&claims)).await;
        assert_eq!(answer.status, 401, "{claims} → {}", answer.body);
    }
    place_with_token(&app, &sign(&exactly_a_day))
        .await
        .expect(201);
}

#[tokio::test]
async fn every_refused_token_gets_the_same_detail_that_names_no_check() {
    let app = spawn_app().await;
    let valid = sign(&operator_claims());
    let payload = valid.split('.').nth(1).unwrap();
    // {"alg":"none","typ":"JWT"}: the library's message names its list of algorithms.
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let mut expired = operator_claims();
    expired["exp"] = json!(now() - 3600);
    let mut admin = operator_claims();
    admin["role"] = json!("admin");
    let mut customer_without_id = operator_claims();
    customer_without_id["role"] = json!("customer");
    let mut empty_subject = operator_claims();
    empty_subject["sub"] = json!(" ");
    let mut not_yet_valid = operator_claims();
    not_yet_valid["nbf"] = json!(now() + 3600);

    for token in [
        "not-a-jwt".to_owned(),
        unsigned,
        sign_with(
            &Header::new(Algorithm::HS256),
            &operator_claims(),
            "another-secret-another-secret-xx",
        ),
        sign(&expired),
        sign(&admin),
        sign(&customer_without_id),
        sign(&empty_subject),
        sign(&not_yet_valid),
    ] {
        let answer = place_with_token(&app, &token).await.expect_problem(401);
        assert_eq!(answer.body["detail"], REFUSED_TOKEN, "{token}");
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    }
}

#[tokio::test]
async fn a_request_without_a_bearer_token_is_told_to_send_one() {
    let app = spawn_app().await;

    for authorization in [None, Some("Basic dXNlcjpwYXNz"), Some("Bearer ")] {
        let answer = place_with(&app, authorization).await.expect_problem(401);
        assert_eq!(
            answer.body["detail"], "this request needs an Authorization: Bearer <token> header",
            "{authorization:?}"
        );
    }
}

#[tokio::test]
async fn a_shorter_configured_maximum_lifetime_refuses_longer_tokens() {
    let app = spawn_app_with(|settings| settings.jwt_max_lifetime = Duration::from_secs(300)).await;
    let mut an_hour = operator_claims();
    an_hour["exp"] = json!(now() + 3600);
    let mut five_minutes = operator_claims();
    five_minutes["exp"] = json!(now() + 300);

    place_with_token(&app, &sign(&an_hour))
        .await
        .expect_problem(401);
    place_with_token(&app, &sign(&five_minutes))
        .await
        .expect(201);
}

#[tokio::test]
async fn a_configured_issuer_and_audience_are_required() {
    let app = spawn_app_with(|settings| {
        settings.jwt_issuer = Some("https://idp.example".to_owned());
        settings.jwt_audience = Some("strata".to_owned());
    })
    .await;
    let with = |iss: Option<&str>, aud: Option<Value>| {
        let mut claims = operator_claims();
        if let Some(iss) = iss {
            claims["iss"] = json!(iss);
        }
        if let Some(aud) = aud {
            claims["aud"] = aud;
        }
        sign(&claims)
    };
    let idp = Some("https://idp.example");

    for (what, token) in [
        ("neither", with(None, None)),
        ("no audience", with(idp, None)),
        ("no issuer", with(None, Some(json!("strata")))),
        (
            "another issuer",
            with(Some("https://evil.example"), Some(json!("strata"))),
        ),
        ("another audience", with(idp, Some(json!("billing")))),
        ("the app's own token", app.operator()),
    ] {
        let answer = place_with_token(&app, &token).await;
        assert_eq!(answer.status, 401, "{what}: {}", answer.body);
    }
    place_with_token(&app, &with(idp, Some(json!("strata"))))
        .await
        .expect(201);
    place_with_token(&app, &with(idp, Some(json!(["billing", "strata"]))))
        .await
        .expect(201);
}

#[tokio::test]
async fn without_a_configured_issuer_or_audience_a_token_needs_neither() {
    let app = spawn_app().await;
    let mut from_anyone = operator_claims();
    from_anyone["iss"] = json!("https://anyone.example");

    place_with_token(&app, &app.operator()).await.expect(201);
    place_with_token(&app, &sign(&from_anyone))
        .await
        .expect(201);
}

#[tokio::test]
async fn during_a_rotation_tokens_of_the_current_and_previous_secrets_are_accepted() {
    const NEW_SECRET: &str = "rotated-end-to-end-secret-fedcba9876543210";
    // The test client keeps signing with TEST_SECRET, now the previous one.
    let app = spawn_app_with(|settings| {
        settings.jwt_secret = NEW_SECRET.into();
        settings.jwt_previous_secrets = vec![TEST_SECRET.into()];
    })
    .await;
    let header = Header::new(Algorithm::HS256);

    place_with_token(&app, &app.operator()).await.expect(201);
    place_with_token(&app, &sign_with(&header, &operator_claims(), NEW_SECRET))
        .await
        .expect(201);
    let stranger = sign_with(
        &header,
        &operator_claims(),
        "never-configured-secret-0123456789abcdef",
    );
    place_with_token(&app, &stranger).await.expect_problem(401);
}

#[tokio::test]
async fn page_cursors_are_sealed_with_the_current_secret_only() {
    const NEW_SECRET: &str = "rotated-end-to-end-secret-fedcba9876543210";
    let before = spawn_app().await;
    let (_, position) = before.place_order_at(&before.operator(), "c1").await;
    let page = before
        .get_after(
            "/v1/customers/c1/orders?limit=1",
            &before.operator(),
            position,
        )
        .await
        .expect(200);
    let cursor = page.body["nextCursor"].as_str().unwrap().to_owned();
    let next_page = format!("/v1/customers/c1/orders?limit=1&cursor={cursor}");
    // Both accept the test client's tokens; only the second still seals with the test secret.
    let rotated = spawn_app_with(|settings| {
        settings.jwt_secret = NEW_SECRET.into();
        settings.jwt_previous_secrets = vec![TEST_SECRET.into()];
    })
    .await;
    let not_rotated =
        spawn_app_with(|settings| settings.jwt_previous_secrets = vec![NEW_SECRET.into()]).await;

    rotated
        .get(&next_page, &rotated.operator())
        .await
        .expect_problem(400);
    not_rotated
        .get(&next_page, &not_rotated.operator())
        .await
        .expect(200);
}
