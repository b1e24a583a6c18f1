//! The JetStream stream the log is published to: created with explicit settings, or checked.

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{Context, GetStreamErrorKind};
use async_nats::jetstream::stream::{Config, StorageType};
use strata_ports::PublishError;

use crate::NatsSettings;

/// The stream's settings for `settings`: every subject under the prefix, on disk.
fn wanted(settings: &NatsSettings) -> Config {
    Config {
        name: settings.stream.clone(),
        description: Some("the event log of Strata, one message per event".to_owned()),
        subjects: vec![format!("{}.>", settings.subject_prefix)],
        storage: StorageType::File,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window,
        ..Config::default()
    }
}

/// Creates the stream, or checks the one that exists: its subjects and storage must be these
/// (a stream made for something else is reported, never changed); its replicas and duplicate
/// window are brought to these, which JetStream may refuse (reported too).
pub(crate) async fn ensure(
    jetstream: &Context,
    settings: &NatsSettings,
) -> Result<(), PublishError> {
    let wanted = wanted(settings);
    let existing = match jetstream.get_stream(&settings.stream).await {
        Ok(stream) => stream.cached_info().config.clone(),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                jetstream.create_stream(wanted).await.map_err(|e| {
                    PublishError::Misconfigured(format!(
                        "cannot create stream {}: {e}",
                        settings.stream
                    ))
                })?;
                tracing::info!(stream = %settings.stream, "created the JetStream stream");
                return Ok(());
            }
            _ => {
                return Err(PublishError::Unavailable(format!(
                    "stream {}: {e}",
                    settings.stream
                )));
            }
        },
    };
    if existing.subjects != wanted.subjects || existing.storage != wanted.storage {
        return Err(PublishError::Misconfigured(format!(
            "stream {} exists with subjects {:?} on {:?} storage; the publisher needs {:?} on \
             file storage: change it, or publish to another stream",
            settings.stream, existing.subjects, existing.storage, wanted.subjects
        )));
    }
    if existing.num_replicas != wanted.num_replicas
        || existing.duplicate_window != wanted.duplicate_window
    {
        let updated = Config {
            num_replicas: wanted.num_replicas,
            duplicate_window: wanted.duplicate_window,
            ..existing
        };
        jetstream.update_stream(&updated).await.map_err(|e| {
            PublishError::Misconfigured(format!("cannot update stream {}: {e}", settings.stream))
        })?;
        tracing::info!(stream = %settings.stream, "updated the JetStream stream's replicas and duplicate window");
    }
    Ok(())
}
