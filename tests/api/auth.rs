//! Authentication over HTTP: tokens are required, checked, and turned into roles.

use reqwest::Method;

use crate::helpers::{TestApp, expired_claims, order_body, spawn_app};

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
