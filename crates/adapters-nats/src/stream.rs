//! The JetStream stream the log is published to: created with explicit settings, or checked.

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{Context, CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use strata_ports::PublishError;

use crate::NatsSettings;

/// The stream's settings for `settings`: every subject under the prefix, on disk, every message
/// kept until the limits say otherwise.
fn wanted(settings: &NatsSettings) -> Config {
    Config {
        name: settings.stream.clone(),
        description: Some("the event log of Strata, one message per event".to_owned()),
        subjects: vec![format!("{}.>", settings.subject_prefix)],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window,
        ..Config::default()
    }
}

/// Creates the stream, or checks the one that exists. One that differs in what the publisher
/// relies on (subjects, storage, retention, acknowledgements, replicas, duplicate window, not
/// sealed) is reported and left as it is: an update would also rewrite the settings this
/// client does not know of (those of newer servers), behind the operator's back.
pub(crate) async fn ensure(
    jetstream: &Context,
    settings: &NatsSettings,
) -> Result<(), PublishError> {
    let name = &settings.stream;
    let wanted = wanted(settings);
    let existing = match jetstream.get_stream(name).await {
        Ok(stream) => stream.cached_info().config.clone(),
        Err(e) => {
            return match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    create(jetstream, wanted).await
                }
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED
                        || j.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT =>
                {
                    Err(PublishError::Misconfigured(format!(
                        "JetStream is not enabled on the server: {e}"
                    )))
                }
                _ => Err(PublishError::Unavailable(format!("stream {name}: {e}"))),
            };
        }
    };
    let differences = [
        (existing.subjects != wanted.subjects).then(|| {
            format!(
                "subjects {:?} (wanted {:?})",
                existing.subjects, wanted.subjects
            )
        }),
        (existing.storage != wanted.storage)
            .then(|| format!("{:?} storage (wanted file)", existing.storage)),
        (existing.retention != wanted.retention)
            .then(|| format!("{:?} retention (wanted limits)", existing.retention)),
        existing
            .no_ack
            .then(|| "no acknowledgements (no_ack)".to_owned()),
        existing.sealed.then(|| "sealed".to_owned()),
        (existing.num_replicas != wanted.num_replicas).then(|| {
            format!(
                "{} replicas (wanted {})",
                existing.num_replicas, wanted.num_replicas
            )
        }),
        (existing.duplicate_window != wanted.duplicate_window).then(|| {
            format!(
                "a duplicate window of {:?} (wanted {:?})",
                existing.duplicate_window, wanted.duplicate_window
            )
        }),
    ];
    let differences: Vec<String> = differences.into_iter().flatten().collect();
    if differences.is_empty() {
        return Ok(());
    }
    Err(PublishError::Misconfigured(format!(
        "stream {name} exists with {}: change it (`nats stream edit`), or publish to another stream",
        differences.join(", ")
    )))
}

async fn create(jetstream: &Context, wanted: Config) -> Result<(), PublishError> {
    let name = wanted.name.clone();
    match jetstream.create_stream(wanted).await {
        Ok(_) => {
            tracing::info!(stream = %name, "created the JetStream stream");
            Ok(())
        }
        Err(e) => Err(match e.kind() {
            CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => {
                PublishError::Unavailable(format!("cannot create stream {name}: {e}"))
            }
            _ => PublishError::Misconfigured(format!("cannot create stream {name}: {e}")),
        }),
    }
}
