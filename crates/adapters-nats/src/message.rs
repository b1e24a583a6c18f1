//! One event as one JetStream message: its subject, its headers, its body.

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use bytes::Bytes;
use strata_ports::RecordedEvent;
use time::format_description::well_known::Rfc3339;

/// The header with the event's global position: what a consumer orders and resumes by, and
/// where the publisher resumes after a restart.
pub const POSITION_HEADER: &str = "Strata-Position";

/// The header of a message published out of order (a parked event retried): the highest
/// position the stream held before it, which stays the publisher's resume point.
pub const PUBLISHED_THROUGH_HEADER: &str = "Strata-Published-Through";

/// `<prefix>.<category>.<EventType>`.
///
/// # Errors
/// Why the category or the event type cannot be a subject token.
pub fn subject_of(prefix: &str, event: &RecordedEvent) -> Result<String, String> {
    let category = event.stream_id.category();
    check_token(category).map_err(|why| format!("category {category:?}: {why}"))?;
    check_token(&event.event_type)
        .map_err(|why| format!("event type {:?}: {why}", event.event_type))?;
    Ok(format!("{prefix}.{category}.{}", event.event_type))
}

/// A subject token: not empty, and no separator, wildcard or white space.
pub(crate) fn check_token(token: &str) -> Result<(), &'static str> {
    if token.is_empty() {
        return Err("empty");
    }
    if token
        .chars()
        .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
    {
        return Err("holds a '.', a wildcard, white space or a control character");
    }
    Ok(())
}

/// The names of the headers, made once: a name built from a `&str` is checked and copied on
/// every message.
mod name {
    use async_nats::HeaderName;

    pub const EVENT_ID: HeaderName = HeaderName::from_static("Strata-Event-Id");
    pub const STREAM_ID: HeaderName = HeaderName::from_static("Strata-Stream-Id");
    pub const STREAM_VERSION: HeaderName = HeaderName::from_static("Strata-Stream-Version");
    pub const POSITION: HeaderName = HeaderName::from_static(super::POSITION_HEADER);
    pub const EVENT_TYPE: HeaderName = HeaderName::from_static("Strata-Event-Type");
    pub const SCHEMA_VERSION: HeaderName = HeaderName::from_static("Strata-Schema-Version");
    pub const RECORDED_AT: HeaderName = HeaderName::from_static("Strata-Recorded-At");
    pub const CORRELATION_ID: HeaderName = HeaderName::from_static("Strata-Correlation-Id");
    pub const CAUSATION_ID: HeaderName = HeaderName::from_static("Strata-Causation-Id");
    pub const PUBLISHED_THROUGH: HeaderName =
        HeaderName::from_static(super::PUBLISHED_THROUGH_HEADER);
    pub const CONTENT_TYPE: HeaderName = HeaderName::from_static("Content-Type");
}

/// The headers and the body of `event`'s message: the envelope in headers, the data (JSON) as
/// the body; `through`, for a message out of order, the highest position the stream holds.
///
/// # Errors
/// Why the event cannot be written as a message.
pub(crate) fn parts(
    event: &RecordedEvent,
    through: Option<u64>,
) -> Result<(HeaderMap, Bytes), String> {
    let body = serde_json::to_vec(&event.data).map_err(|e| format!("data: {e}"))?;
    let recorded_at = event
        .recorded_at
        .format(&Rfc3339)
        .map_err(|e| format!("recorded at: {e}"))?;
    let event_id = event.event_id.to_string();
    let mut headers = HeaderMap::new();
    // Values are moved in as `String`s: a `&str` would be copied once more.
    headers.insert(name::EVENT_ID, event_id.clone());
    // The broker drops a repeated id within its duplicate window.
    headers.insert(NATS_MESSAGE_ID, event_id);
    headers.insert(name::STREAM_ID, event.stream_id.as_str().to_owned());
    headers.insert(name::STREAM_VERSION, event.stream_version.to_string());
    headers.insert(name::POSITION, event.global_position.to_string());
    headers.insert(name::EVENT_TYPE, event.event_type.clone());
    headers.insert(name::SCHEMA_VERSION, event.schema_version.to_string());
    headers.insert(name::RECORDED_AT, recorded_at);
    if let Some(correlation) = &event.metadata.correlation_id {
        headers.insert(name::CORRELATION_ID, correlation.clone());
    }
    if let Some(causation) = &event.metadata.causation_id {
        headers.insert(name::CAUSATION_ID, causation.clone());
    }
    if let Some(through) = through {
        headers.insert(name::PUBLISHED_THROUGH, through.to_string());
    }
    headers.insert(name::CONTENT_TYPE, "application/json".to_owned());
    Ok((headers, Bytes::from(body)))
}

/// The highest global position the stream held once this message was in: its own, or for a
/// message out of order, the one it names.
pub(crate) fn held_through(headers: &HeaderMap) -> Option<u64> {
    let position: u64 = headers.get(POSITION_HEADER)?.as_str().parse().ok()?;
    match headers.get(PUBLISHED_THROUGH_HEADER) {
        Some(through) => Some(through.as_str().parse::<u64>().ok()?.max(position)),
        None => Some(position),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_subject_token_is_refused_with_a_separator_a_wildcard_or_white_space() {
        for bad in ["", "a.b", "a*", ">", "a b", "a\tb", "a\u{0}b"] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
        for good in ["order", "OrderPlaced", "account-2", "x_y"] {
            assert_eq!(check_token(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn an_event_whose_type_cannot_be_a_token_has_no_subject() {
        let event = RecordedEvent {
            event_id: uuid::Uuid::nil(),
            stream_id: strata_ports::StreamId::new("order", uuid::Uuid::nil()),
            stream_version: 1,
            global_position: 1,
            event_type: "Order.Placed".to_owned(),
            schema_version: 1,
            data: serde_json::json!({}),
            metadata: strata_ports::Metadata::default(),
            recorded_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        assert!(
            subject_of("strata", &event)
                .unwrap_err()
                .contains("event type")
        );
        let placed = RecordedEvent {
            event_type: "OrderPlaced".to_owned(),
            ..event
        };
        assert_eq!(
            subject_of("strata", &placed).unwrap(),
            "strata.order.OrderPlaced"
        );
    }
}
