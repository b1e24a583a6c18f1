//! `/metrics`: Prometheus text without a token, with the command, event, projection, HTTP and
//! process series, each family described by a `# HELP` line, every duration a histogram.

use std::collections::BTreeSet;

use reqwest::Method;
use strata_web::limits::RateLimits;

use crate::helpers::{order_body, spawn_app, spawn_app_with};

/// The value of the first sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
                && labels.iter().all(|label| series.contains(label))
        })
        .and_then(|(_, value)| value.parse().ok())
}

/// Scrapes `/metrics` as Prometheus does: without a token.
async fn scrape(app: &crate::helpers::TestApp) -> String {
    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_commands_by_type_and_outcome_and_show_the_projections() {
    let app = spawn_app().await;
    let token = app.operator();
    let accepted = [r#"command="PlaceOrder""#, r#"outcome="accepted""#];
    let not_found = [r#"command="Confirm""#, r#"outcome="not-found""#];
    let before = scrape(&app).await;

    app.place_order(&token, "c1").await;
    app.send(
        Method::POST,
        &format!("/v1/orders/{}/confirm", uuid::Uuid::now_v7()),
        Some(&token),
        None,
        &[],
    )
    .await
    .expect_problem(404);
    let after = scrape(&app).await;

    // The recorder is shared by every server of this test process: compare, never equate.
    let count =
        |text: &str, labels: &[&str]| sample(text, "strata_commands_total", labels).unwrap_or(0.0);
    assert!(
        count(&after, &accepted) >= count(&before, &accepted) + 1.0,
        "{after}"
    );
    assert!(
        count(&after, &not_found) >= count(&before, &not_found) + 1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "strata_command_seconds_bucket",
            &[r#"command="PlaceOrder""#]
        )
        .is_some(),
        "no latency histogram: {after}"
    );
    assert!(
        sample(
            &after,
            "strata_command_seconds_count",
            &[r#"command="PlaceOrder""#]
        ) >= Some(1.0)
    );
    assert!(
        sample(
            &after,
            "strata_events_appended_total",
            &[r#"category="order""#]
        ) >= Some(1.0),
        "{after}"
    );
    for projection in ["orders", "accounts"] {
        let label = format!(r#"projection="{projection}""#);
        for gauge in [
            "strata_projection_lag_events",
            "strata_projection_lag_seconds",
            "strata_projection_dead_letters",
        ] {
            assert!(
                sample(&after, gauge, &[&label]).is_some(),
                "no {gauge} of {projection}: {after}"
            );
        }
    }
    assert!(sample(&after, "strata_oldest_open_transaction_seconds", &[]).is_some());
}

/// The families named by `# TYPE` lines, with their type.
fn families(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .collect()
}

/// How many requests `/metrics` counts of `method` on `route` answered `status`.
fn requests(text: &str, method: &str, route: &str, status: u16) -> f64 {
    let labels = [
        format!(r#"method="{method}""#),
        format!(r#"route="{route}""#),
        format!(r#"status="{status}""#),
    ];
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    sample(text, "strata_http_requests_total", &labels).unwrap_or(0.0)
}

#[tokio::test]
async fn a_request_is_counted_and_timed_under_its_route_template_never_its_raw_path() {
    let app = spawn_app().await;
    let token = app.operator();
    let id = app.place_order(&token, "c1").await;
    let stray = uuid::Uuid::now_v7();
    let before = scrape(&app).await;

    app.get(&format!("/v1/orders/{id}/state"), &token)
        .await
        .expect(200);
    app.get(&format!("/no/such/{stray}"), &token)
        .await
        .expect_problem(404);
    let after = scrape(&app).await;

    let template = "/v1/orders/{id}/state";
    assert!(
        requests(&after, "GET", template, 200) >= requests(&before, "GET", template, 200) + 1.0,
        "{after}"
    );
    assert!(
        requests(&after, "GET", "unmatched", 404)
            >= requests(&before, "GET", "unmatched", 404) + 1.0,
        "an unmatched path is counted under a fixed label: {after}"
    );
    let route = format!(r#"route="{template}""#);
    let bucket = sample(
        &after,
        "strata_http_request_duration_seconds_bucket",
        &[&route, r#"le="0.005""#],
    );
    assert!(
        bucket.is_some(),
        "no duration histogram with buckets: {after}"
    );
    assert!(
        sample(
            &after,
            "strata_http_request_duration_seconds_count",
            &[&route]
        ) >= Some(1.0)
    );
    for raw in [id.to_string(), stray.to_string()] {
        assert!(!after.contains(&raw), "a raw path became a label: {after}");
    }
}

#[tokio::test]
async fn every_family_has_help_every_duration_is_a_histogram_and_the_process_is_measured() {
    let app = spawn_app().await;
    let token = app.operator();
    app.place_order(&token, "c1").await;
    let text = scrape(&app).await;

    let described: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split_once(' ').map(|(name, _)| name))
        .collect();
    let families = families(&text);
    assert!(families.len() > 10, "{text}");
    for (name, kind) in &families {
        assert!(described.contains(name), "no # HELP for {name}: {text}");
        assert_ne!(*kind, "summary", "{name} is a summary: {text}");
    }
    let kind = |name: &str| families.iter().find(|(n, _)| *n == name).map(|(_, k)| *k);
    for histogram in [
        "strata_command_seconds",
        "strata_http_request_duration_seconds",
    ] {
        assert_eq!(kind(histogram), Some("histogram"), "{text}");
    }
    assert_eq!(kind("strata_http_requests_total"), Some("counter"));
    assert_eq!(kind("strata_http_requests_shed_total"), Some("counter"));
    assert_eq!(kind("process_cpu_seconds_total"), Some("counter"));
    for gauge in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert_eq!(kind(gauge), Some("gauge"), "{gauge}: {text}");
        assert!(sample(&text, gauge, &[]) > Some(0.0), "{gauge}: {text}");
    }
}

#[tokio::test]
async fn the_edges_own_refusals_are_counted_with_their_route_and_status() {
    // The recorder belongs to the test process: read it directly, since a server that sheds
    // every request sheds its own /metrics too.
    let recorder = strata_web::metrics::recorder();
    let shedding = spawn_app_with(|s| s.limits.max_in_flight = 0).await;
    let limited = spawn_app_with(|s| {
        s.body_limit = 4 * 1024;
        s.limits.rate = RateLimits {
            commands_per_second: 1,
            queries_per_second: 1,
        };
    })
    .await;
    let token = limited.customer("c1");
    let before = recorder.render();

    shedding
        .get("/v1/projections", &shedding.operator())
        .await
        .expect_problem(503);
    limited
        .get("/v1/customers/c1/stats", &token)
        .await
        .expect(200);
    limited
        .get("/v1/customers/c1/stats", &token)
        .await
        .expect_problem(429);
    let mut oversized = order_body("c1");
    oversized["shippingAddress"] = serde_json::json!("x".repeat(8 * 1024));
    limited
        .post("/v1/orders", &token, oversized)
        .await
        .expect_problem(413);
    let after = recorder.render();

    for (method, route, status) in [
        ("GET", "/v1/projections", 503),
        ("GET", "/v1/customers/{customerId}/stats", 429),
        ("POST", "/v1/orders", 413),
    ] {
        assert!(
            requests(&after, method, route, status)
                >= requests(&before, method, route, status) + 1.0,
            "{method} {route} {status} not counted: {after}"
        );
    }
}
