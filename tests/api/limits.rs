//! What one client may take of the server: idle and dripping connections are closed within the
//! header-read timeout and cannot hold the server, connections and requests in flight are
//! capped, a request has a deadline, principals have a rate, and a read-your-writes position
//! beyond the head of the log is refused at once instead of awaited.

use std::time::{Duration, Instant};

use reqwest::Method;
use strata_web::Settings;
use strata_web::limits::RateLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, order_body, spawn_app, spawn_app_with};

/// Longest a test waits for something that must happen well before it (a hang detector, not
/// a measurement).
const PATIENCE: Duration = Duration::from_secs(10);

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address).await.unwrap()
}

/// Whether the server closed `stream` (end of file or reset) within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0_u8; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A 408 or the like before closing: keep reading until the end.
            Ok(Ok(_)) => {}
        }
    }
}

fn with_header_timeout(settings: &mut Settings, timeout: Duration) {
    settings.limits.connections.header_read_timeout = timeout;
}

#[tokio::test]
async fn idle_and_dripping_connections_neither_delay_requests_nor_stay_open() {
    let app = spawn_app_with(|s| with_header_timeout(s, Duration::from_secs(1))).await;
    let token = app.operator();
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(connect(&app).await);
    }
    let mut dripping = Vec::new();
    for _ in 0..100 {
        let mut stream = connect(&app).await;
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        dripping.push(stream);
    }
    let drip = tokio::spawn(async move {
        // A header byte every 200 ms: never a complete head.
        for _ in 0..20 {
            for stream in &mut dripping {
                let _ = stream.write_all(b"X").await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        dripping
    });

    let served = tokio::time::timeout(
        PATIENCE,
        app.send(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(order_body("c1")),
            &[],
        ),
    )
    .await
    .expect("a normal request is answered while slow clients hold connections");
    served.expect(201);

    for (n, stream) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream, PATIENCE).await,
            "idle connection {n} is still open"
        );
    }
    for (n, stream) in drip.await.unwrap().iter_mut().enumerate() {
        assert!(
            closed_by_server(stream, PATIENCE).await,
            "dripping connection {n} is still open"
        );
    }
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_once_idle_for_the_header_timeout() {
    let app = spawn_app_with(|s| with_header_timeout(s, Duration::from_millis(500))).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    assert!(closed_by_server(&mut stream, PATIENCE).await);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_and_the_server_recovers() {
    let app = spawn_app_with(|s| {
        s.limits.connections.max_connections = 20;
        with_header_timeout(s, Duration::from_secs(3));
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect(&app).await);
    }

    // The server may not have accepted all 20 yet: the first extra connections may be held
    // too, until one is refused, long before the held ones time out.
    let mut refused = false;
    for _ in 0..10 {
        let mut one_too_many = connect(&app).await;
        if closed_by_server(&mut one_too_many, Duration::from_millis(200)).await {
            refused = true;
            break;
        }
        held.push(one_too_many);
    }
    assert!(refused, "a connection beyond the cap was kept");

    // The idle ones time out, and their places are free again.
    for stream in &mut held {
        assert!(closed_by_server(stream, PATIENCE).await);
    }
    app.send(Method::GET, "/health/live", None, None, &[])
        .await
        .expect(200);
}

#[tokio::test]
async fn a_client_that_stops_reading_its_responses_loses_its_connection() {
    let app = spawn_app_with(|s| {
        s.limits.connections.max_connections = 1;
        s.limits.connections.write_stall_timeout = Duration::from_secs(1);
    })
    .await;
    // Far more response bytes than the loopback buffers hold, and never a byte read.
    let mut greedy = connect(&app).await;
    let request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(500);
    greedy.write_all(&request).await.unwrap();

    // The only connection's place comes free once its writes have stalled for a second.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = app
            .client
            .get(format!("{}/health/live", app.address))
            .send()
            .await;
        if answer.is_ok_and(|a| a.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the non-reading client still holds the only connection"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(greedy);
}

/// Sends a command's head announcing a body of `length` bytes, and only its first byte.
async fn start_dripping_command(app: &TestApp, token: &str, length: usize) -> TcpStream {
    let mut stream = connect(app).await;
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Reads an answer's status line and headers (up to the blank line) as text.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .unwrap();
        assert_eq!(read, 1, "closed before the head ended: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_lowercase()
}

#[tokio::test]
async fn a_request_that_outlives_its_deadline_is_503_with_retry_after() {
    let app = spawn_app_with(|s| s.limits.request_timeout = Duration::from_millis(500)).await;
    let token = app.operator();

    let started = Instant::now();
    let mut stream = start_dripping_command(&app, &token, 500).await;
    let head = read_head(&mut stream).await;

    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(started.elapsed() < PATIENCE);
}

#[tokio::test]
async fn requests_beyond_the_in_flight_cap_are_503_at_once_but_health_answers() {
    let app = spawn_app_with(|s| s.limits.max_in_flight = 2).await;
    let token = app.operator();
    let _first = start_dripping_command(&app, &token, 500).await;
    let _second = start_dripping_command(&app, &token, 500).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let shed = app.get("/v1/projections", &token).await.expect_problem(503);
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(shed.body["type"], "urn:strata:problem:overloaded");
    // Readiness and metrics query the database and need no token: shed too. Liveness is not.
    for path in ["/health/ready", "/metrics"] {
        app.send(Method::GET, path, None, None, &[])
            .await
            .expect_problem(503);
    }
    app.send(Method::GET, "/health/live", None, None, &[])
        .await
        .expect(200);
}

#[tokio::test]
async fn a_principal_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    // One a second, so that a slow machine cannot earn a new token between two requests.
    let app = spawn_app_with(|s| {
        s.limits.rate = RateLimits {
            commands_per_second: 1,
            queries_per_second: 1,
        };
    })
    .await;
    let (alice, bob) = (app.customer("alice"), app.customer("bob"));

    app.post("/v1/orders", &alice, order_body("alice"))
        .await
        .expect(201);
    let limited = app
        .post("/v1/orders", &alice, order_body("alice"))
        .await
        .expect_problem(429);
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(limited.body["type"], "urn:strata:problem:rate-limited");
    app.post("/v1/orders", &bob, order_body("bob"))
        .await
        .expect(201);

    // Queries have their own rate.
    app.get("/v1/customers/alice/stats", &alice)
        .await
        .expect(200);
    app.get("/v1/customers/alice/stats", &alice)
        .await
        .expect_problem(429);

    tokio::time::sleep(Duration::from_secs(1)).await;
    app.post("/v1/orders", &alice, order_body("alice"))
        .await
        .expect(201);
}

#[tokio::test]
async fn a_min_position_beyond_the_head_of_the_log_is_400_at_once() {
    let app = spawn_app().await;
    let token = app.operator();
    let (id, position) = app.place_order_at(&token, "c1").await;

    for beyond in [position + 1_000, u64::MAX] {
        let started = Instant::now();
        let answer = app
            .get_after(&format!("/v1/orders/{id}"), &token, beyond)
            .await
            .expect_problem(400);
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .contains("beyond the head"),
            "{}",
            answer.body
        );
        // Not after the read wait of 5 s: waiting could never reach it.
        assert!(started.elapsed() < Duration::from_secs(4), "it waited");
    }
    app.get_after(&format!("/v1/orders/{id}"), &token, position)
        .await
        .expect(200);
}
