//! NATS JetStream adapter of the publisher port (decision 0016): each event of the log becomes
//! one JetStream message on `<prefix>.<category>.<EventType>`, its envelope in headers, its data
//! as the body; publishes are pipelined and their acknowledgements awaited in order.
#![forbid(unsafe_code)]

mod message;
mod stream;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::time::Duration;

use async_nats::jetstream::context::{Context, ContextBuilder, PublishErrorKind};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, ErrorCode};
use async_trait::async_trait;
use strata_ports::{EventPublisher, PublishError, RecordedEvent};

pub use message::{POSITION_HEADER, subject_of};

/// Where and how the log is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// The server(s): `nats://host:port`.
    pub url: String,
    /// The first token of every subject (`strata`: `strata.order.OrderPlaced`).
    pub subject_prefix: String,
    /// The JetStream stream that keeps the messages (`STRATA`).
    pub stream: String,
    /// Copies of each message in a JetStream cluster (1 on a single server).
    pub replicas: usize,
    /// How long JetStream recognises a repeated `Nats-Msg-Id` (2 minutes). Past it, the
    /// publisher's resume point alone prevents duplicates.
    pub duplicate_window: Duration,
}

impl NatsSettings {
    /// The defaults for a server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            subject_prefix: "strata".to_owned(),
            stream: "STRATA".to_owned(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// How long a publish waits for its acknowledgement, and an API request for its answer. A
/// cluster elects a new stream leader in 4–9 s: shorter, and a failover reads as an outage.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The log's publisher to one JetStream stream.
#[derive(Debug, Clone)]
pub struct NatsPublisher {
    jetstream: Context,
    stream: String,
    prefix: String,
}

impl NatsPublisher {
    /// Connects, then creates the stream or checks the one that exists: one that differs from
    /// these settings is reported, never changed (`stream.rs`).
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached; `Misconfigured` for a prefix that is not
    /// one subject token, or a stream that exists with settings this publisher cannot use.
    pub async fn connect(settings: &NatsSettings) -> Result<Self, PublishError> {
        message::check_token(&settings.subject_prefix).map_err(|why| {
            PublishError::Misconfigured(format!(
                "subject prefix {:?}: {why}",
                settings.subject_prefix
            ))
        })?;
        let client = async_nats::ConnectOptions::new()
            .name("strata-publisher")
            .connection_timeout(Duration::from_secs(5))
            .connect(settings.url.as_str())
            .await
            .map_err(|e| PublishError::Unavailable(format!("cannot connect to NATS: {e}")))?;
        let jetstream = ContextBuilder::new().timeout(ACK_TIMEOUT).build(client);
        stream::ensure(&jetstream, settings).await?;
        Ok(Self {
            jetstream,
            stream: settings.stream.clone(),
            prefix: settings.subject_prefix.clone(),
        })
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream, PublishError> {
        self.jetstream
            .get_stream(&self.stream)
            .await
            .map_err(|e| PublishError::Unavailable(format!("stream {}: {e}", self.stream)))
    }

    /// The stream's last message's position (`None`: it holds none of ours).
    async fn last_position(
        &self,
        stream: &jetstream::stream::Stream,
    ) -> Result<Option<u64>, PublishError> {
        let last = match stream
            .get_last_raw_message_by_subject(&format!("{}.>", self.prefix))
            .await
        {
            Ok(last) => last,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => return Err(PublishError::Unavailable(format!("last message: {e}"))),
        };
        message::position_of(&last.headers)
            .map(Some)
            .ok_or_else(|| {
                PublishError::Misconfigured(format!(
                    "the last message of stream {} (sequence {}) has no {POSITION_HEADER} header",
                    self.stream, last.sequence
                ))
            })
    }

    /// Sends `events` pipelined, the first expecting the stream's sequence `sequence`, and
    /// awaits their acknowledgements in order.
    async fn publish_window(
        &self,
        events: &[RecordedEvent],
        mut sequence: u64,
    ) -> Result<(), PublishError> {
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            // Nothing after a message that cannot be built is sent; those before it still
            // count once acknowledged, so the refusal waits for them.
            let built = subject_of(&self.prefix, event)
                .and_then(|subject| Ok((subject, message::build(event)?)));
            let (subject, outbound) = match built {
                Ok(built) => built,
                Err(why) => return settle(pending, Some(refused(event, why))).await,
            };
            match self
                .jetstream
                .send_publish(subject, outbound.expected_last_sequence(sequence))
                .await
            {
                Ok(ack) => pending.push((event.global_position, ack)),
                Err(e) => {
                    let error = publish_error(event.global_position, &e);
                    return settle(pending, Some(error)).await;
                }
            }
            sequence += 1;
        }
        settle(pending, None).await
    }
}

/// The most messages awaiting their acknowledgement at once: async-nats lets 5,000 wait, and
/// then blocks the next publish until one is awaited, which here comes only after the loop.
const WINDOW: usize = 1_000;

#[async_trait]
impl EventPublisher for NatsPublisher {
    async fn last_published(&self) -> Result<Option<u64>, PublishError> {
        let stream = self.stream().await?;
        self.last_position(&stream).await
    }

    /// Events the stream already holds (at or below its last message's position) are skipped:
    /// a repeat would not move the stream's sequence, and those after it would then expect the
    /// wrong one.
    async fn publish(&self, events: &[RecordedEvent]) -> Result<(), PublishError> {
        let stream = self.stream().await?;
        // Each message expects the stream's sequence the one before it left: if the connection
        // drops a message, those queued behind it are refused instead of landing past a gap.
        let mut sequence = stream.cached_info().state.last_sequence;
        let held = self.last_position(&stream).await?.unwrap_or(0);
        let fresh = events.partition_point(|e| e.global_position <= held);
        for window in events[fresh..].chunks(WINDOW) {
            self.publish_window(window, sequence).await?;
            sequence += window.len() as u64;
        }
        if let (Some(first), Some(last)) = (events.get(fresh), events.last()) {
            tracing::trace!(
                from = first.global_position,
                to = last.global_position,
                "published"
            );
        }
        Ok(())
    }
}

/// Awaits the acknowledgements in order: the first failure is the batch's answer (a refusal
/// only if every message before it was acknowledged), else `then`.
async fn settle(
    pending: Vec<(u64, jetstream::context::PublishAckFuture)>,
    then: Option<PublishError>,
) -> Result<(), PublishError> {
    for (position, ack) in pending {
        if let Err(e) = ack.await {
            return Err(publish_error(position, &e));
        }
    }
    then.map_or(Ok(()), Err)
}

fn refused(event: &RecordedEvent, reason: String) -> PublishError {
    PublishError::Refused {
        position: event.global_position,
        reason,
    }
}

/// A refusal for good (the message can never fit), or an outage to wait out.
fn publish_error(position: u64, error: &jetstream::context::PublishError) -> PublishError {
    let code = std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .map(jetstream::Error::error_code);
    match (error.kind(), code) {
        (PublishErrorKind::MaxPayloadExceeded, _)
        | (
            _,
            Some(
                ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM
                | ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM,
            ),
        ) => PublishError::Refused {
            position,
            reason: format!("too large for the broker: {error}"),
        },
        _ => PublishError::Unavailable(format!("event at position {position}: {error}")),
    }
}
