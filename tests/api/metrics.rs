//! `/metrics`: Prometheus text without a token, with the command, event and projection series.

use reqwest::Method;

use crate::helpers::spawn_app;

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
