//! The broker the projector's publisher hands the log to (decision 0016): NATS JetStream.

use std::sync::Arc;
use std::time::Duration;

use strata_adapters_nats::{NatsPublisher, NatsSettings};
use strata_ports::EventPublisher;

use crate::error::WiringError;

/// Where and how the log is published (`STRATA_NATS_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherSettings {
    /// `nats://host:port`, or several, comma-separated (the nodes of a cluster).
    pub url: String,
    /// The first token of every subject.
    pub subject_prefix: String,
    /// The JetStream stream's name.
    pub stream: String,
    /// Copies of each message in a cluster.
    pub replicas: usize,
    /// How long the broker recognises a repeated message id.
    pub duplicate_window: Duration,
}

/// A publisher to the JetStream stream these settings name. It connects in the background and
/// keeps trying while the server is down, so the projector starts without it; the stream is
/// created (or checked: one that differs is reported, never changed) before the first publish.
///
/// # Errors
/// [`WiringError::Publisher`] for a subject prefix or URL the client refuses.
pub async fn publisher(
    settings: &PublisherSettings,
) -> Result<Arc<dyn EventPublisher>, WiringError> {
    let nats = NatsSettings {
        url: settings.url.clone(),
        subject_prefix: settings.subject_prefix.clone(),
        stream: settings.stream.clone(),
        replicas: settings.replicas,
        duplicate_window: settings.duplicate_window,
    };
    let publisher = NatsPublisher::start(&nats)
        .await
        .map_err(|error| WiringError::Publisher(Box::new(error)))?;
    Ok(Arc::new(publisher))
}
