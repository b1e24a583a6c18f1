//! JetStream's acknowledgements of one publish call's messages, read from one subscription.
//!
//! Each message is sent as a core NATS publish whose reply subject is `<inbox>.<index>`; the
//! stream answers there with its `PublishAck` or an error. One subscription for the whole call
//! instead of async-nats's `send_publish` (an inbox, a channel, two timers and a boxed future
//! per message) lets the publisher keep up with the broker: measured in docs/performance.md.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::response::Response;
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{Client, Message, StatusCode, Subscriber};
use futures::StreamExt;
use strata_ports::PublishError;

/// The acknowledgements still to come for messages sent, oldest first.
pub(crate) struct Acks {
    inbox: String,
    subscription: Subscriber,
    /// The position of each message sent and not yet acknowledged, in the order sent.
    waiting: VecDeque<u64>,
    /// The index of the oldest of them: messages are numbered from 0 in the order sent.
    oldest: usize,
    /// Acknowledgements that arrived ahead of an older one, by index.
    early: BTreeMap<usize, Message>,
    /// The stream's last sequence after the messages acknowledged so far.
    sequence: u64,
    timeout: Duration,
}

impl Acks {
    /// Subscribes to a fresh inbox; `sequence` is the stream's last sequence before the
    /// first message.
    pub(crate) async fn subscribe(
        client: &Client,
        sequence: u64,
        timeout: Duration,
    ) -> Result<Self, PublishError> {
        let inbox = client.new_inbox();
        let subscription = tokio::time::timeout(timeout, client.subscribe(format!("{inbox}.*")))
            .await
            .map_err(|_| PublishError::Unavailable(format!("cannot subscribe in {timeout:?}")))?
            .map_err(|e| PublishError::Unavailable(format!("cannot subscribe for acks: {e}")))?;
        Ok(Self {
            inbox,
            subscription,
            waiting: VecDeque::new(),
            oldest: 0,
            early: BTreeMap::new(),
            sequence,
            timeout,
        })
    }

    /// The reply subject of the next message sent.
    pub(crate) fn next_reply(&self) -> String {
        format!("{}.{}", self.inbox, self.oldest + self.waiting.len())
    }

    /// Records a message sent (with the subject `next_reply` gave).
    pub(crate) fn sent(&mut self, position: u64) {
        self.waiting.push_back(position);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// Awaits the oldest acknowledgement still to come.
    pub(crate) async fn settle_oldest(&mut self) -> Result<(), PublishError> {
        let Some(&position) = self.waiting.front() else {
            return Ok(());
        };
        let message = match self.early.remove(&self.oldest) {
            Some(message) => message,
            None => self.receive(position).await?,
        };
        self.waiting.pop_front();
        self.oldest += 1;
        self.sequence = acknowledged(position, &message, self.sequence)?;
        Ok(())
    }

    /// Awaits every acknowledgement still to come, in order: the first failure is the answer
    /// (a refusal after it only if every message before it was acknowledged). Returns the
    /// stream's last sequence after them.
    pub(crate) async fn settle(mut self) -> Result<u64, PublishError> {
        while !self.waiting.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(self.sequence)
    }

    /// Receives until the oldest message's acknowledgement arrives, keeping any newer one.
    async fn receive(&mut self, position: u64) -> Result<Message, PublishError> {
        loop {
            let message = match tokio::time::timeout(self.timeout, self.subscription.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => {
                    return Err(PublishError::Unavailable(format!(
                        "event at position {position}: the connection to NATS closed"
                    )));
                }
                Err(_) => {
                    return Err(PublishError::Unavailable(format!(
                        "event at position {position}: no acknowledgement in {:?}",
                        self.timeout
                    )));
                }
            };
            match index_of(&message) {
                Some(index) if index == self.oldest => return Ok(message),
                Some(index) if index > self.oldest && index < self.oldest + self.waiting.len() => {
                    self.early.insert(index, message);
                }
                // Not one this call waits for (a repeat, or garbage on its inbox): ignored.
                _ => {}
            }
        }
    }
}

fn index_of(message: &Message) -> Option<usize> {
    message.subject.rsplit_once('.')?.1.parse().ok()
}

/// The stream's last sequence once `message` acknowledged the message of the event at
/// `position` (`sequence` for a repeat, which the broker recognised and did not store).
fn acknowledged(position: u64, message: &Message, sequence: u64) -> Result<u64, PublishError> {
    if message.status == Some(StatusCode::NO_RESPONDERS) {
        return Err(PublishError::Unavailable(format!(
            "event at position {position}: no stream takes its subject"
        )));
    }
    match serde_json::from_slice::<Response<PublishAck>>(&message.payload) {
        Ok(Response::Ok(ack)) if ack.duplicate => Ok(sequence),
        Ok(Response::Ok(ack)) => Ok(ack.sequence),
        Ok(Response::Err { error }) => Err(refusal(position, &error)),
        Err(e) => Err(PublishError::Unavailable(format!(
            "event at position {position}: an acknowledgement that does not parse: {e}"
        ))),
    }
}

/// A refusal for good (the message can never fit), or an outage to wait out.
pub(crate) fn refusal(position: u64, error: &jetstream::Error) -> PublishError {
    match error.error_code() {
        ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM | ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM => {
            PublishError::Refused {
                position,
                reason: format!("too large for the broker: {error}"),
            }
        }
        _ => PublishError::Unavailable(format!("event at position {position}: {error}")),
    }
}

/// A message the client would not send: too large for the server (for good), or the
/// connection is gone (for now).
pub(crate) fn send_error(position: u64, error: &async_nats::client::PublishError) -> PublishError {
    match error.kind() {
        async_nats::client::PublishErrorKind::MaxPayloadExceeded => PublishError::Refused {
            position,
            reason: format!("too large for the broker: {error}"),
        },
        _ => PublishError::Unavailable(format!("event at position {position}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::testkit::NatsServer;

    /// Answers each reply subject of `acks` (in the order `order` gives, indices into the
    /// messages sent) with the body `answer(index)`.
    async fn answer(
        client: &Client,
        replies: &[String],
        order: &[usize],
        answer: impl Fn(usize) -> String,
    ) {
        for &index in order {
            client
                .publish(replies[index].clone(), answer(index).into())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
    }

    /// A server of the test's own, a client of it, and acknowledgements to come after sequence 10.
    async fn started(test: &str) -> Option<(NatsServer, Client, Acks)> {
        let server = NatsServer::start(test)?;
        let client = async_nats::connect(server.url.as_str()).await.unwrap();
        let acks = Acks::subscribe(&client, 10, Duration::from_secs(5))
            .await
            .unwrap();
        Some((server, client, acks))
    }

    async fn sent(acks: &mut Acks, count: u64) -> Vec<String> {
        let mut replies = Vec::new();
        for position in 0..count {
            replies.push(acks.next_reply());
            acks.sent(100 + position);
        }
        replies
    }

    #[tokio::test]
    async fn acknowledgements_arriving_out_of_order_are_settled_in_order() {
        let Some((_server, client, mut acks)) = started("acks_out_of_order").await else {
            return;
        };
        let replies = sent(&mut acks, 4).await;
        answer(&client, &replies, &[2, 0, 3, 1], |i| {
            format!(r#"{{"stream":"S","seq":{}}}"#, 11 + i)
        })
        .await;
        assert_eq!(acks.settle().await.unwrap(), 14);
    }

    #[tokio::test]
    async fn a_repeat_keeps_the_sequence_and_a_message_too_large_is_refused() {
        let Some((_server, client, mut acks)) = started("acks_refused").await else {
            return;
        };
        let replies = sent(&mut acks, 3).await;
        answer(&client, &replies, &[0, 1, 2], |i| match i {
            0 => r#"{"stream":"S","seq":11}"#.to_owned(),
            // The sequence of the message it repeats, long before.
            1 => r#"{"stream":"S","seq":5,"duplicate":true}"#.to_owned(),
            _ => r#"{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}"#.to_owned(),
        })
        .await;
        acks.settle_oldest().await.unwrap();
        acks.settle_oldest().await.unwrap();
        assert_eq!(acks.sequence, 11, "a repeat does not move the sequence");
        match acks.settle().await {
            Err(PublishError::Refused { position, reason }) => {
                assert_eq!(position, 102);
                assert!(reason.contains("too large"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_refusal_waits_for_the_acknowledgements_before_it() {
        let Some((_server, client, mut acks)) = started("acks_refusal_waits").await else {
            return;
        };
        acks.timeout = Duration::from_millis(300);
        let replies = sent(&mut acks, 3).await;
        // The refusal of the last arrives first; the first is never acknowledged.
        answer(&client, &replies, &[2, 1], |i| match i {
            2 => r#"{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}"#.to_owned(),
            _ => format!(r#"{{"stream":"S","seq":{}}}"#, 11 + i),
        })
        .await;
        match acks.settle().await {
            Err(PublishError::Unavailable(why)) => assert!(why.contains("position 100"), "{why}"),
            other => panic!("the message at 100 was never acknowledged: {other:?}"),
        }
    }

    #[tokio::test]
    async fn acknowledgements_of_no_message_waited_for_are_ignored() {
        let Some((_server, client, mut acks)) = started("acks_stale").await else {
            return;
        };
        let replies = sent(&mut acks, 1).await;
        let inbox = replies[0].trim_end_matches(".0").to_owned();
        for stale in ["7", "1", "x"] {
            let body = r#"{"error":{"code":400,"err_code":10054,"description":"x"}}"#;
            client
                .publish(format!("{inbox}.{stale}"), body.into())
                .await
                .unwrap();
        }
        answer(&client, &replies, &[0], |_| {
            r#"{"stream":"S","seq":11}"#.to_owned()
        })
        .await;
        assert_eq!(acks.settle().await.unwrap(), 11);
    }

    #[tokio::test]
    async fn a_subject_no_stream_takes_is_an_outage() {
        let Some(server) = NatsServer::start("acks_no_responders") else {
            return;
        };
        let client = async_nats::connect(server.url.as_str()).await.unwrap();
        let mut acks = Acks::subscribe(&client, 10, Duration::from_secs(5))
            .await
            .unwrap();
        client
            .publish_with_reply("nobody.listens", acks.next_reply(), "{}".into())
            .await
            .unwrap();
        acks.sent(100);
        match acks.settle().await {
            Err(PublishError::Unavailable(why)) => assert!(why.contains("no stream"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_message_over_the_servers_maximum_is_refused_for_good() {
        let too_large = async_nats::client::PublishError::new(
            async_nats::client::PublishErrorKind::MaxPayloadExceeded,
        );
        assert!(matches!(
            send_error(7, &too_large),
            PublishError::Refused { position: 7, .. }
        ));
        let gone =
            async_nats::client::PublishError::new(async_nats::client::PublishErrorKind::Send);
        assert!(matches!(send_error(7, &gone), PublishError::Unavailable(_)));
    }

    #[tokio::test]
    async fn a_missing_an_unreadable_or_an_other_error_acknowledgement_is_an_outage() {
        let Some(server) = NatsServer::start("acks_outage") else {
            return;
        };
        let client = async_nats::connect(server.url.as_str()).await.unwrap();
        for body in [
            None,
            Some("not json"),
            Some(
                r#"{"error":{"code":503,"err_code":10008,"description":"jetstream not enabled"}}"#,
            ),
        ] {
            let mut acks = Acks::subscribe(&client, 10, Duration::from_millis(300))
                .await
                .unwrap();
            let replies = sent(&mut acks, 1).await;
            if let Some(body) = body {
                answer(&client, &replies, &[0], |_| body.to_owned()).await;
            }
            match acks.settle().await {
                Err(PublishError::Unavailable(why)) => {
                    assert!(why.contains("position 100"), "{why}");
                }
                other => panic!("{body:?}: {other:?}"),
            }
        }
    }
}
