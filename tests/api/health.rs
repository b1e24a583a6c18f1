//! Health probes and shutdown: readiness follows the database, liveness does not, and a stop
//! signal lets the requests in flight finish.

use std::time::Duration;

use reqwest::Method;
use strata_adapters_postgres::testkit::wait_for_lock_waiters;
use strata_web::{Application, Stores};
use tokio::sync::oneshot;

use crate::helpers::{skipped_on_sqlite, spawn_stoppable_app_with, start, test_settings};

/// A local port that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn readiness_is_503_while_the_database_is_unreachable_but_liveness_is_200() {
    let url = format!("postgres://postgres@127.0.0.1:{}/strata", closed_port());
    let stores = Stores::postgres_lazy(&url, 1, Duration::from_millis(500)).unwrap();
    let application = Application::with_stores(test_settings(&url), stores)
        .await
        .unwrap();
    let (app, _server) = start(application, url, std::future::pending());

    let live = app.send(Method::GET, "/health/live", None, None, &[]).await;
    let ready = app
        .send(Method::GET, "/health/ready", None, None, &[])
        .await;

    live.expect(200);
    let ready = ready.expect_problem(503);
    assert_eq!(ready.header("retry-after"), Some("1"));
    assert_eq!(ready.body["type"], "urn:strata:problem:unavailable");
}

#[tokio::test]
async fn a_request_in_flight_when_shutdown_is_signalled_is_completed() {
    if skipped_on_sqlite("holds a PostgreSQL row lock to keep a command in flight") {
        return;
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let (app, mut server) = spawn_stoppable_app_with(|_| {}, async {
        let _ = stopped.await;
    })
    .await;
    let token = app.operator();
    let id = app.place_order(&token, "c1").await;
    // Every append takes this row's lock: holding it keeps the next command inside the server.
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("SELECT position FROM event_log_head FOR UPDATE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let confirm = tokio::spawn(
        app.client
            .post(format!("{}/v1/orders/{id}/confirm", app.address))
            .bearer_auth(&token)
            .send(),
    );
    wait_for_lock_waiters(&pool, 1).await;

    stop.send(()).unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), &mut server).await;
    assert!(
        early.is_err(),
        "the server stopped with a request in flight: {early:?}"
    );
    blocker.rollback().await.unwrap();
    let answer = confirm.await.unwrap().unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(10), server).await;

    assert_eq!(answer.status(), 200);
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "the server stops once the request is answered: {finished:?}"
    );
}

#[tokio::test]
async fn a_graceful_shutdown_stops_the_in_process_projection_workers_too() {
    let (stop, stopped) = oneshot::channel::<()>();
    let (app, server) = spawn_stoppable_app_with(|_| {}, async {
        let _ = stopped.await;
    })
    .await;
    let database = app.database().await;
    let states =
        || database.strings("SELECT state FROM projection_checkpoints ORDER BY projection");
    let running = || vec![Some("running".to_owned()); 3];
    for _ in 0..100 {
        if states().await == running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(states().await, running(), "the workers never ran");

    stop.send(()).unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(10), server).await;

    assert!(matches!(finished, Ok(Ok(Ok(())))), "{finished:?}");
    assert_eq!(
        states().await,
        vec![Some("stopped".to_owned()); 3],
        "a worker outlived the server"
    );
}
