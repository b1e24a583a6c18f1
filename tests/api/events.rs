//! `GET /v1/events` and `GET /v1/events/stream`: pages of the global log and the same as
//! Server-Sent Events (catch-up then live, resumed with `Last-Event-ID`), scoped to a customer's
//! own streams, bounded in subscribers, a subscriber that falls behind the live buffer cut off
//! with where to resume, and streams ended when the server stops.

use std::time::Duration;

use serde_json::{Value, json};
use strata_ports::{AppendRequest, ExpectedVersion, Metadata, NewEvent, StreamId};
use strata_wiring::{Database, Storage};
use uuid::Uuid;

use crate::helpers::{TestApp, item, spawn_app, spawn_app_with, spawn_stoppable_app_with};

/// The positions of a page's events.
fn positions(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["globalPosition"].as_u64().expect("globalPosition"))
        .collect()
}

/// Two customers' orders and accounts: alice's order (1), bob's order (2), alice's item (3),
/// bob's account (4), alice's account (5).
async fn two_customers(app: &TestApp) -> (String, String) {
    let operator = app.operator();
    let (alice_order, _) = app.place_order_at(&operator, "alice").await;
    app.place_order(&operator, "bob").await;
    app.post(
        &format!("/v1/orders/{alice_order}/items"),
        &operator,
        item("p-9", 1, 5),
    )
    .await
    .expect(200);
    app.open_account(&operator, "bob").await;
    let alice_account = app.open_account(&operator, "alice").await;
    (alice_order, alice_account)
}

#[tokio::test]
async fn a_page_of_the_log_is_every_event_for_staff_and_a_customer_s_own_for_a_customer() {
    let app = spawn_app().await;
    let (alice_order, alice_account) = two_customers(&app).await;

    let all = app.get("/v1/events", &app.operator()).await.expect(200);
    let alice = app
        .get("/v1/events", &app.customer("alice"))
        .await
        .expect(200);
    let carol = app
        .get("/v1/events", &app.customer("carol"))
        .await
        .expect(200);

    assert_eq!(positions(&all.body), [1, 2, 3, 4, 5]);
    assert_eq!(all.body["nextAfter"], 5);
    let first = &all.body["events"][0];
    assert_eq!(first["streamId"], format!("order-{alice_order}"));
    assert_eq!(first["category"], "order");
    assert_eq!(first["eventType"], "OrderPlaced");
    assert_eq!(first["streamVersion"], 1);
    assert_eq!(first["data"]["customerId"], "alice");
    assert!(first["metadata"]["userId"].is_string(), "{first}");
    assert_eq!(positions(&alice.body), [1, 3, 5]);
    assert_eq!(
        alice.body["events"][2]["streamId"],
        format!("account-{alice_account}")
    );
    // What a customer may not see is read through all the same: the next page starts after.
    assert_eq!(alice.body["nextAfter"], 5);
    assert_eq!(positions(&carol.body), Vec::<u64>::new());
    assert_eq!(carol.body["nextAfter"], 5);
    let auditor = app.get("/v1/events", &app.auditor()).await.expect(200);
    assert_eq!(positions(&auditor.body), [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn pages_follow_on_from_next_after_and_filters_narrow_them() {
    let app = spawn_app().await;
    two_customers(&app).await;
    let operator = app.operator();

    let first = app.get("/v1/events?limit=2", &operator).await.expect(200);
    let second = app
        .get("/v1/events?after=2&limit=2", &operator)
        .await
        .expect(200);
    let last = app
        .get("/v1/events?after=4&limit=2", &operator)
        .await
        .expect(200);
    let past = app.get("/v1/events?after=5", &operator).await.expect(200);
    let orders = app
        .get("/v1/events?category=order", &operator)
        .await
        .expect(200);
    let opened = app
        .get("/v1/events?type=AccountOpened&limit=1", &operator)
        .await
        .expect(200);

    assert_eq!(
        (positions(&first.body), first.body["nextAfter"].clone()),
        (vec![1, 2], json!(2))
    );
    assert_eq!(positions(&second.body), [3, 4]);
    assert_eq!(positions(&last.body), [5]);
    assert_eq!(
        (positions(&past.body), past.body["nextAfter"].clone()),
        (vec![], json!(5))
    );
    assert_eq!(positions(&orders.body), [1, 2, 3]);
    assert_eq!(positions(&opened.body), [4]);
    assert_eq!(opened.body["nextAfter"], 4);
}

#[tokio::test]
async fn a_malformed_page_request_is_a_400_problem() {
    let app = spawn_app().await;
    let operator = app.operator();
    for query in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "after=-1",
        "after=1e3",
        "after=9223372036854775808",
        "category=a.b",
        "category=",
        "type=Order%20Placed",
        "typ=OrderPlaced",
    ] {
        app.get(&format!("/v1/events?{query}"), &operator)
            .await
            .expect_problem(400);
    }
    app.send(reqwest::Method::GET, "/v1/events", None, None, &[])
        .await
        .expect_problem(401);
}

/// An open event stream, read as it arrives.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

/// One Server-Sent Event: its `event` (empty for a plain one), `id` and `data`.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    event: String,
    id: String,
    data: Value,
}

impl EventStream {
    async fn open(app: &TestApp, query: &str, token: &str, last_id: Option<&str>) -> Self {
        let mut request = app
            .client
            .get(format!("{}/v1/events/stream{query}", app.address))
            .bearer_auth(token);
        if let Some(id) = last_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("stream opened");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` when the stream ended; fails after 10 s.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut sse = Sse {
                    event: String::new(),
                    id: String::new(),
                    data: Value::Null,
                };
                let mut comment = true;
                for line in frame.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        sse.event = value.trim().to_owned();
                        comment = false;
                    } else if let Some(value) = line.strip_prefix("id:") {
                        sse.id = value.trim().to_owned();
                        comment = false;
                    } else if let Some(value) = line.strip_prefix("data:") {
                        sse.data = serde_json::from_str(value.trim()).expect("JSON data");
                        comment = false;
                    }
                }
                if comment {
                    continue;
                }
                return Some(sse);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .expect("the stream reads");
            match chunk {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }

    /// The next `count` events' ids.
    async fn ids(&mut self, count: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            ids.push(self.next().await.expect("an event").id);
        }
        ids
    }
}

#[tokio::test]
async fn the_stream_catches_up_then_goes_live_and_resumes_after_the_last_event_id() {
    let app = spawn_app().await;
    two_customers(&app).await;
    let operator = app.operator();

    let mut stream = EventStream::open(&app, "?after=2", &operator, None).await;
    assert_eq!(stream.ids(3).await, ["3", "4", "5"]);
    let (order, position) = app.place_order_at(&operator, "dave").await;
    let live = stream.next().await.expect("the live event");

    assert_eq!(live.id, position.to_string());
    assert_eq!(live.event, "");
    assert_eq!(live.data["streamId"], format!("order-{order}"));
    assert_eq!(live.data["globalPosition"], position);
    drop(stream);
    // Two more while disconnected: a reconnection with Last-Event-ID gets exactly those.
    app.place_order(&operator, "dave").await;
    app.place_order(&operator, "erin").await;
    let mut resumed =
        EventStream::open(&app, "?after=0", &operator, Some(&position.to_string())).await;
    assert_eq!(
        resumed.ids(2).await,
        [(position + 1).to_string(), (position + 2).to_string()]
    );
}

#[tokio::test]
async fn a_customer_s_stream_carries_only_their_own_events_and_filters_apply() {
    let app = spawn_app().await;
    two_customers(&app).await;
    let operator = app.operator();

    let mut alice = EventStream::open(&app, "", &app.customer("alice"), None).await;
    let mut orders = EventStream::open(&app, "?category=order", &operator, None).await;
    assert_eq!(alice.ids(3).await, ["1", "3", "5"]);
    assert_eq!(orders.ids(3).await, ["1", "2", "3"]);
    app.place_order(&operator, "bob").await; // 6: not alice's
    app.open_account(&operator, "bob").await; // 7: not an order
    app.place_order(&operator, "alice").await; // 8

    assert_eq!(alice.next().await.expect("alice's order").id, "8");
    assert_eq!(orders.ids(2).await, ["6", "8"]);
}

#[tokio::test]
async fn a_malformed_stream_request_is_a_400_and_a_full_instance_a_503_with_retry_after() {
    let app = spawn_app_with(|settings| settings.subscriptions.max_subscribers = 1).await;
    let operator = app.operator();
    for (query, last_id) in [
        ("?after=x", None),
        ("?type=a*b", None),
        ("?limit=5", None),
        ("", Some("-1")),
        ("", Some("12a")),
        ("", Some("9223372036854775808")),
        ("?after=18446744073709551615", None),
    ] {
        let mut headers = Vec::new();
        if let Some(id) = last_id {
            headers.push(("Last-Event-ID", id));
        }
        app.send(
            reqwest::Method::GET,
            &format!("/v1/events/stream{query}"),
            Some(&operator),
            None,
            &headers,
        )
        .await
        .expect_problem(400);
    }

    let first = EventStream::open(&app, "", &operator, None).await;
    let second = app
        .send(
            reqwest::Method::GET,
            "/v1/events/stream",
            Some(&operator),
            None,
            &[],
        )
        .await
        .expect_problem(503);

    assert_eq!(second.header("retry-after"), Some("1"));
    drop(first);
    // The permit is given back when the client goes away.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = app
            .client
            .get(format!("{}/v1/events/stream", app.address))
            .bearer_auth(&operator)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends `count` events to a new stream in one commit, past the server.
async fn burst(app: &TestApp, count: usize) {
    let storage = Storage::resolve(Some(&app.database_url), std::path::Path::new("data")).unwrap();
    let events = Database::open(&storage, 2).await.unwrap().events();
    let request = AppendRequest {
        stream_id: StreamId::new("note", Uuid::now_v7()),
        expected: ExpectedVersion::NoStream,
        events: (0..count)
            .map(|n| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "NoteAdded".to_owned(),
                schema_version: 1,
                data: json!({ "n": n }),
                metadata: Metadata::default(),
                recorded_at: time::OffsetDateTime::now_utc(),
            })
            .collect(),
        idempotency: None,
    };
    events.append(request).await.unwrap();
}

#[tokio::test]
async fn a_live_subscriber_that_falls_behind_the_buffer_is_cut_off_with_where_to_resume() {
    let app = spawn_app_with(|settings| settings.subscriptions.buffer = 4).await;
    let operator = app.operator();
    app.place_order(&operator, "alice").await;
    let mut stream = EventStream::open(&app, "", &operator, None).await;
    assert_eq!(stream.ids(1).await, ["1"]);
    // Caught up: it listens live once its next read of the log finds nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;

    burst(&app, 50).await;

    let cutoff = stream.next().await.expect("the last event");
    assert_eq!(cutoff.event, "cutoff");
    assert_eq!(cutoff.id, "1");
    assert_eq!(cutoff.data["resumeAfter"], 1);
    assert!(
        cutoff.data["reason"].as_str().unwrap().contains("behind"),
        "{cutoff:?}"
    );
    assert_eq!(stream.next().await, None, "the stream ends after it");
    // Resumed from there, it catches up from the log.
    let mut resumed = EventStream::open(&app, "", &operator, Some("1")).await;
    let ids = resumed.ids(50).await;
    assert_eq!(ids.first().map(String::as_str), Some("2"));
    assert_eq!(ids.last().map(String::as_str), Some("51"));
}

#[tokio::test]
async fn open_streams_end_when_the_server_stops() {
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let (app, server) = spawn_stoppable_app_with(|_| {}, async move {
        let _ = stop.await;
    })
    .await;
    let operator = app.operator();
    app.place_order(&operator, "alice").await;
    let mut stream = EventStream::open(&app, "", &operator, None).await;
    assert_eq!(stream.ids(1).await, ["1"]);

    stop_tx.send(()).unwrap();

    assert_eq!(stream.next().await, None);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops without waiting for the stream")
        .unwrap()
        .unwrap();
}
