//! What the server shows of itself: headers that keep browsers and caches from misusing its
//! answers, a strict policy on Swagger UI, Swagger UI that can be switched off, and `/metrics`
//! that can move off the API's address.

use reqwest::Method;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> crate::helpers::Answer {
    app.send(Method::GET, path, token, None, &[]).await
}

#[tokio::test]
async fn every_answer_forbids_sniffing_and_answers_with_personal_data_are_never_stored() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.place_order(&token, "c1").await;

    for (path, token) in [
        (format!("/v1/orders/{id}/events"), Some(token.as_str())),
        (format!("/v1/orders/{id}/state"), Some(token.as_str())),
        ("/v1/customers/c1/stats".to_owned(), Some(token.as_str())),
        ("/v1/orders/not-an-id".to_owned(), Some(token.as_str())),
        ("/v1/projections".to_owned(), None),
        ("/health/live".to_owned(), None),
    ] {
        let answer = get(&app, &path, token).await;
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
    }
    let created = app
        .post("/v1/orders", &token, crate::helpers::order_body("c1"))
        .await
        .expect(201);
    assert_eq!(created.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn swagger_ui_is_served_under_a_strict_content_security_policy() {
    let app = spawn_app().await;

    let page = app
        .client
        .get(format!("{}/docs/", app.address))
        .send()
        .await
        .unwrap();

    assert_eq!(page.status(), 200);
    let policy = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe-eval"), "{policy}");
    assert_eq!(
        page.headers().get("x-content-type-options").unwrap(),
        "nosniff"
    );
    // Swagger UI's page runs no inline script, which the policy would block.
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>"), "{html}");
}

#[tokio::test]
async fn swagger_ui_can_be_switched_off_and_the_document_stays() {
    let app = spawn_app_with(|settings| settings.docs = false).await;

    assert_eq!(get(&app, "/docs/", None).await.status, 404);
    let document = get(&app, "/openapi.json", None).await.expect(200);
    assert_eq!(document.body["info"]["title"], "Strata");
}

#[tokio::test]
async fn metrics_on_their_own_address_are_off_the_api_listener() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = probe.local_addr().unwrap();
    drop(probe);
    let app = spawn_app_with(|settings| settings.metrics_addr = Some(metrics_addr)).await;

    assert_eq!(get(&app, "/metrics", None).await.status, 404);
    let scraped = app
        .client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.unwrap();
    assert!(text.contains("strata_projection_checkpoint"), "{text}");
}

/// The first Chromium on the `PATH`, if any.
fn chromium() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

#[tokio::test]
async fn swagger_ui_renders_its_operations_in_a_browser_despite_the_policy() {
    let Some(browser) = chromium() else {
        eprintln!(
            "swagger_ui_renders_its_operations_in_a_browser_despite_the_policy: skipped: \
             no chromium on the PATH (apt-get install chromium)"
        );
        return;
    };
    let app = spawn_app().await;
    let url = format!("{}/docs/", app.address);

    let rendered = tokio::task::spawn_blocking(move || {
        std::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                // Without it the DOM is dumped before the scripts have run.
                "--virtual-time-budget=10000",
                "--dump-dom",
                &url,
            ])
            .stderr(std::process::Stdio::null())
            .output()
    });
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), rendered)
        .await
        .expect("the browser finishes")
        .unwrap()
        .unwrap();

    let dom = String::from_utf8_lossy(&output.stdout);
    // Rendered by Swagger UI's scripts from /openapi.json: both were allowed to load and run.
    assert!(dom.contains(r#"data-path="/v1/orders""#), "{dom}");
    assert!(dom.contains(r#"data-path="/v1/orders/search""#), "{dom}");
}

#[tokio::test]
async fn the_api_document_says_which_routes_answer_429_and_503_with_retry_after() {
    let app = spawn_app().await;

    let document = get(&app, "/openapi.json", None).await.expect(200).body;

    let paths = document["paths"].as_object().unwrap();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let responses = &operation["responses"];
            let behind_token = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            assert_eq!(
                responses.get("429").is_some(),
                behind_token,
                "{method} {path}: 429 exactly where a token is needed"
            );
            if path == "/health/live" {
                assert!(responses.get("503").is_none(), "{responses}");
                continue;
            }
            for status in ["429", "503"] {
                if let Some(answer) = responses.get(status) {
                    assert!(
                        answer["headers"]["Retry-After"].is_object(),
                        "{method} {path} {status}: {answer}"
                    );
                }
            }
            assert!(responses.get("503").is_some(), "{method} {path}");
        }
    }
    assert_eq!(
        paths["/v1/orders"]["post"]["responses"]["429"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["application/problem+json"]
    );
}
