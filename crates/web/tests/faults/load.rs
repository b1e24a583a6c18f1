//! A command load: clients that each place orders and add items to them, every command with a
//! key of its own, sent again with the same key after any unknown outcome until acknowledged;
//! and what they saw on the way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{CLIENT_TIMEOUT, operator_token};

/// A command acknowledgement, as the client got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub order_id: Uuid,
    pub version: u64,
    pub position: u64,
}

/// One command sent with its key, so that it can be sent again exactly as it was.
#[derive(Debug, Clone)]
pub struct Sent {
    pub key: String,
    pub path: String,
    pub body: Value,
}

/// What the clients saw, over the whole load.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every acknowledged command and its first acknowledgement.
    pub acks: Vec<(Sent, Ack)>,
    /// Answers no client may ever get: a 5xx but 503, a 503 without `Retry-After`, a 4xx, a
    /// request unanswered within [`CLIENT_TIMEOUT`].
    pub violations: Vec<String>,
    /// Requests whose outcome the client could not know (connection refused or cut).
    pub unknown_outcomes: usize,
    /// 503 answers, each with `Retry-After`.
    pub unavailable: usize,
}

/// The clients of a command load, and what they saw.
#[derive(Debug, Clone)]
pub struct Load {
    pub base: Arc<str>,
    pub token: String,
    pub client: reqwest::Client,
    pub seen: Arc<Mutex<Seen>>,
    pub acked: Arc<AtomicUsize>,
}

impl Load {
    pub fn new(base: String) -> Self {
        Self {
            base: base.into(),
            token: operator_token(),
            client: reqwest::Client::builder()
                .timeout(CLIENT_TIMEOUT)
                .build()
                .expect("HTTP client"),
            seen: Arc::default(),
            acked: Arc::default(),
        }
    }

    /// Starts `clients` tasks, each placing `orders` orders of its own customer and adding
    /// `adds` items to each; every command has a key of its own.
    pub fn spawn(
        &self,
        clients: usize,
        orders: usize,
        adds: usize,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..clients)
            .map(|client| {
                let load = self.clone();
                tokio::spawn(async move {
                    for order in 0..orders {
                        let key = format!("c{client}-o{order}-place");
                        let body = json!({
                            "customerId": format!("customer-{client}"),
                            "currency": "EUR",
                            "items": [{"productId": "sku-0", "quantity": 1, "unitPriceCents": 100}],
                            "shippingAddress": "1 Main Street",
                        });
                        let ack = load.until_acked(key, "/v1/orders".into(), body).await;
                        for add in 1..=adds {
                            let key = format!("c{client}-o{order}-add{add}");
                            let path = format!("/v1/orders/{}/items", ack.order_id);
                            let body = json!({
                                "productId": format!("sku-{add}"),
                                "quantity": add,
                                "unitPriceCents": 10 * add,
                            });
                            load.until_acked(key, path, body).await;
                        }
                    }
                })
            })
            .collect()
    }

    /// Sends a command until it is acknowledged, with the same key every time; records what
    /// was seen on the way.
    pub async fn until_acked(&self, key: String, path: String, body: Value) -> Ack {
        let sent = Sent { key, path, body };
        let ack = self.send_until_acked(&sent).await;
        self.seen.lock().expect("seen").acks.push((sent, ack));
        self.acked.fetch_add(1, Ordering::SeqCst);
        ack
    }

    /// Sends `sent` until a 2xx answer; every other outcome is counted or recorded. Gives up
    /// (panics) after a few answers no client may get, or a minute: a broken server fails the
    /// test quickly, saying why.
    pub async fn send_until_acked(&self, sent: &Sent) -> Ack {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let violations: Vec<String> = {
                let seen = self.seen.lock().expect("seen");
                let mine = seen
                    .violations
                    .iter()
                    .filter(|v| v.starts_with(&format!("{}:", sent.key)));
                mine.cloned().collect()
            };
            assert!(
                violations.len() < 3 && Instant::now() < deadline,
                "{} never acknowledged; answers no client may get: {violations:#?}",
                sent.key
            );
            let base = &self.base;
            let answer = self
                .client
                .post(format!("{base}{}", sent.path))
                .bearer_auth(&self.token)
                .header("Idempotency-Key", &sent.key)
                .json(&sent.body)
                .send()
                .await;
            let outcome = match answer {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response.headers().contains_key("retry-after");
                    // A body cut off with the connection is an unknown outcome too.
                    response
                        .text()
                        .await
                        .map(|text| (status, retry_after, text))
                }
                Err(error) => Err(error),
            };
            match outcome {
                Ok((status, _, text)) if (200..300).contains(&status) => {
                    let body: Value = serde_json::from_str(&text).expect("acknowledgement");
                    return ack_of(&body);
                }
                Ok((503, true, _)) => self.note(|seen| seen.unavailable += 1),
                Ok((status, _, text)) => {
                    self.note(|seen| {
                        seen.violations
                            .push(format!("{}: {status} {text}", sent.key))
                    });
                }
                Err(error) if error.is_timeout() => self.note(|seen| {
                    let hang = format!("{}: no answer within {CLIENT_TIMEOUT:?}", sent.key);
                    seen.violations.push(hang);
                }),
                Err(_) => self.note(|seen| seen.unknown_outcomes += 1),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn note(&self, what: impl FnOnce(&mut Seen)) {
        what(&mut self.seen.lock().expect("seen"));
    }
}

fn ack_of(body: &Value) -> Ack {
    Ack {
        order_id: body["orderId"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no orderId in {body}")),
        version: body["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no version in {body}")),
        position: body["position"]
            .as_u64()
            .unwrap_or_else(|| panic!("no position in {body}")),
    }
}
