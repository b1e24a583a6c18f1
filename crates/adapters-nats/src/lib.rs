//! NATS JetStream adapter of the publisher port (decision 0016): each event of the log becomes
//! one JetStream message on `<prefix>.<category>.<EventType>`, its envelope in headers, its data
//! as the body; publishes are pipelined and their acknowledgements awaited in order.
#![forbid(unsafe_code)]

mod acks;
mod message;
mod stream;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::time::Duration;

use async_nats::header::NATS_EXPECTED_LAST_SEQUENCE;
use async_nats::jetstream;
use async_nats::jetstream::context::{Context, ContextBuilder};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_trait::async_trait;
use strata_ports::{EventPublisher, PublishError, RecordedEvent};

use crate::acks::Acks;

pub use message::{POSITION_HEADER, subject_of};

/// Where and how the log is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// The server: `nats://host:port`, or several separated by commas (the nodes of a cluster).
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

/// How long a publish waits for its acknowledgement (or for the client to take the message),
/// and an API request for its answer. A cluster elects a new stream leader in 4–9 s: shorter,
/// and a failover reads as an outage.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The log's publisher to one JetStream stream.
#[derive(Debug)]
pub struct NatsPublisher {
    /// Publishes, and receives their acknowledgements (`acks.rs`).
    client: async_nats::Client,
    /// Creates and reads the stream.
    jetstream: Context,
    settings: NatsSettings,
    /// Set once the stream was created or checked: until then, every call tries again.
    ready: tokio::sync::OnceCell<()>,
    /// What the stream held after this publisher's last publish, so that the next one asks
    /// the server nothing first. Forgotten on any failure; if another publisher wrote since
    /// (a lease taken over), the first message's expected sequence is refused, the batch fails
    /// and the next one reads the stream again.
    held: std::sync::Mutex<Option<Held>>,
}

/// The stream's last sequence and the highest position it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    sequence: u64,
    through: u64,
}

impl NatsPublisher {
    /// Connects, then creates the stream or checks the one that exists: one that differs from
    /// these settings is reported, never changed (`stream.rs`).
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached; `Misconfigured` for a prefix that is not
    /// one subject token, or a stream that exists with settings this publisher cannot use.
    pub async fn connect(settings: &NatsSettings) -> Result<Self, PublishError> {
        check_prefix(settings)?;
        let client = async_nats::ConnectOptions::new()
            .name("strata-publisher")
            .connection_timeout(Duration::from_secs(5))
            .connect(servers(settings).as_slice())
            .await
            .map_err(|e| PublishError::Unavailable(format!("cannot connect to NATS: {e}")))?;
        let publisher = Self::with_client(client, settings);
        publisher.ready().await?;
        Ok(publisher)
    }

    /// A publisher that connects in the background, and keeps trying while the server is
    /// down: a projector starts without its broker, and publishes once the broker is there.
    /// The stream is created or checked before the first publish.
    ///
    /// # Errors
    /// `Misconfigured` for a prefix that is not one subject token, or a URL that does not parse.
    pub async fn start(settings: &NatsSettings) -> Result<Self, PublishError> {
        check_prefix(settings)?;
        let client = async_nats::ConnectOptions::new()
            .name("strata-publisher")
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .connect(servers(settings).as_slice())
            .await
            .map_err(|e| PublishError::Misconfigured(format!("NATS URL: {e}")))?;
        Ok(Self::with_client(client, settings))
    }

    fn with_client(client: async_nats::Client, settings: &NatsSettings) -> Self {
        Self {
            jetstream: ContextBuilder::new()
                .timeout(ACK_TIMEOUT)
                .build(client.clone()),
            client,
            settings: settings.clone(),
            ready: tokio::sync::OnceCell::new(),
            held: std::sync::Mutex::new(None),
        }
    }

    /// Creates or checks the stream, once.
    async fn ready(&self) -> Result<(), PublishError> {
        self.ready
            .get_or_try_init(|| stream::ensure(&self.jetstream, &self.settings))
            .await?;
        Ok(())
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream, PublishError> {
        self.ready().await?;
        let name = &self.settings.stream;
        self.jetstream
            .get_stream(name)
            .await
            .map_err(|e| PublishError::Unavailable(format!("stream {name}: {e}")))
    }

    /// The highest position the stream holds, as its last message says (`None`: it holds
    /// none of ours).
    async fn held_through(
        &self,
        stream: &jetstream::stream::Stream,
    ) -> Result<Option<u64>, PublishError> {
        let last = match stream
            .get_last_raw_message_by_subject(&format!("{}.>", self.settings.subject_prefix))
            .await
        {
            Ok(last) => last,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => return Err(PublishError::Unavailable(format!("last message: {e}"))),
        };
        message::held_through(&last.headers)
            .map(Some)
            .ok_or_else(|| {
                PublishError::Misconfigured(format!(
                    "the last message of stream {} (sequence {}) has no {POSITION_HEADER} header",
                    self.settings.stream, last.sequence
                ))
            })
    }

    /// What the stream holds: as this publisher left it, or read from the server.
    async fn held(&self) -> Result<Held, PublishError> {
        if let Some(held) = *self.lock_held() {
            return Ok(held);
        }
        let stream = self.stream().await?;
        Ok(Held {
            sequence: stream.cached_info().state.last_sequence,
            through: self.held_through(&stream).await?.unwrap_or(0),
        })
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        // A cache: a panic elsewhere leaves at worst a value the next publish checks anyway.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes `events` pipelined, each message expecting the stream's sequence the one
    /// before it left: if the connection drops a message, those queued behind it are refused
    /// instead of landing past a gap. At most [`WINDOW`] await their acknowledgement: the
    /// oldest is awaited before one more is sent, so the broker always has work queued.
    /// `through` marks messages out of order. Returns the stream's last sequence after them.
    async fn publish_from(
        &self,
        mut sequence: u64,
        events: &[&RecordedEvent],
        through: Option<u64>,
    ) -> Result<u64, PublishError> {
        if events.is_empty() {
            return Ok(sequence);
        }
        let mut acks = Acks::subscribe(&self.client, sequence, ACK_TIMEOUT).await?;
        for &event in events {
            if acks.in_flight() >= WINDOW {
                acks.settle_oldest().await?;
            }
            // Nothing after a message that cannot be built is sent; those before it still
            // count once acknowledged, so the refusal waits for them.
            let built = subject_of(&self.settings.subject_prefix, event)
                .and_then(|subject| Ok((subject, message::parts(event, through)?)));
            let (subject, (mut headers, body)) = match built {
                Ok(built) => built,
                Err(why) => {
                    acks.settle().await?;
                    return Err(refused(event, why));
                }
            };
            headers.insert(NATS_EXPECTED_LAST_SEQUENCE, sequence.to_string());
            // The client's queue is bounded: a connection down long enough fills it.
            let send = self.client.publish_with_reply_and_headers(
                subject,
                acks.next_reply(),
                headers,
                body,
            );
            let failed = match tokio::time::timeout(ACK_TIMEOUT, send).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(acks::send_error(event.global_position, &e)),
                Err(_) => Some(PublishError::Unavailable(format!(
                    "event at position {}: not sent in {ACK_TIMEOUT:?}",
                    event.global_position
                ))),
            };
            if let Some(failed) = failed {
                acks.settle().await?;
                return Err(failed);
            }
            acks.sent(event.global_position);
            sequence += 1;
        }
        let sequence = acks.settle().await?;
        if let (Some(first), Some(last)) = (events.first(), events.last()) {
            tracing::trace!(
                from = first.global_position,
                to = last.global_position,
                out_of_order = through.is_some(),
                "published"
            );
        }
        Ok(sequence)
    }
}

/// The servers of `settings.url`: one URL, or several separated by commas (a cluster's nodes,
/// which the client fails over between).
fn servers(settings: &NatsSettings) -> Vec<&str> {
    settings
        .url
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .collect()
}

fn check_prefix(settings: &NatsSettings) -> Result<(), PublishError> {
    message::check_token(&settings.subject_prefix).map_err(|why| {
        PublishError::Misconfigured(format!(
            "subject prefix {:?}: {why}",
            settings.subject_prefix
        ))
    })
}

/// The most messages awaiting their acknowledgement at once: enough to keep the broker busy, few
/// enough that the client's queue (2,048 commands) never holds a whole window.
const WINDOW: usize = 1_000;

#[async_trait]
impl EventPublisher for NatsPublisher {
    async fn last_published(&self) -> Result<Option<u64>, PublishError> {
        let stream = self.stream().await?;
        self.held_through(&stream).await
    }

    /// Events the stream already holds (at or below the highest position it holds) are
    /// skipped: a repeat would not move the stream's sequence, and those after it would then
    /// expect the wrong one.
    async fn publish(&self, events: &[&RecordedEvent]) -> Result<(), PublishError> {
        let held = self.held().await?;
        // Unknown while publishing: a failure leaves the next publish to read the stream.
        *self.lock_held() = None;
        let fresh = events.partition_point(|e| e.global_position <= held.through);
        let sequence = self
            .publish_from(held.sequence, &events[fresh..], None)
            .await?;
        let through = events
            .last()
            .map_or(held.through, |e| e.global_position.max(held.through));
        *self.lock_held() = Some(Held { sequence, through });
        Ok(())
    }

    /// Each message names the highest position the stream held before it, so the stream's
    /// resume point stays there. A repeat within the duplicate window is acknowledged without
    /// moving the stream's sequence: each message is sent alone, the stream read before it.
    async fn publish_parked(&self, events: &[&RecordedEvent]) -> Result<(), PublishError> {
        *self.lock_held() = None;
        for &event in events {
            // Read from the server each time: the cache stays empty while parked events go out.
            let held = self.held().await?;
            let through = held.through.max(event.global_position);
            self.publish_from(held.sequence, &[event], Some(through))
                .await?;
        }
        Ok(())
    }
}

fn refused(event: &RecordedEvent, reason: String) -> PublishError {
    PublishError::Refused {
        position: event.global_position,
        reason,
    }
}
