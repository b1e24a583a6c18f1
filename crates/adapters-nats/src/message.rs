//! One event as one JetStream message: its subject, its headers, its body.

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::message::PublishMessage;
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

/// The message of `event`: the envelope in headers, the data (JSON) as the body; `through`, for
/// a message out of order, the highest position the stream holds.
///
/// # Errors
/// Why the event cannot be written as a message.
pub(crate) fn build(event: &RecordedEvent, through: Option<u64>) -> Result<PublishMessage, String> {
    let body = serde_json::to_vec(&event.data).map_err(|e| format!("data: {e}"))?;
    let recorded_at = event
        .recorded_at
        .format(&Rfc3339)
        .map_err(|e| format!("recorded at: {e}"))?;
    let event_id = event.event_id.to_string();
    let mut headers = HeaderMap::new();
    // The broker drops a repeated id within its duplicate window.
    headers.insert(NATS_MESSAGE_ID, event_id.as_str());
    headers.insert("Strata-Event-Id", event_id.as_str());
    headers.insert("Strata-Stream-Id", event.stream_id.as_str());
    headers.insert(
        "Strata-Stream-Version",
        event.stream_version.to_string().as_str(),
    );
    headers.insert(POSITION_HEADER, event.global_position.to_string().as_str());
    headers.insert("Strata-Event-Type", event.event_type.as_str());
    headers.insert(
        "Strata-Schema-Version",
        event.schema_version.to_string().as_str(),
    );
    headers.insert("Strata-Recorded-At", recorded_at.as_str());
    if let Some(correlation) = &event.metadata.correlation_id {
        headers.insert("Strata-Correlation-Id", correlation.as_str());
    }
    if let Some(causation) = &event.metadata.causation_id {
        headers.insert("Strata-Causation-Id", causation.as_str());
    }
    if let Some(through) = through {
        headers.insert(PUBLISHED_THROUGH_HEADER, through.to_string().as_str());
    }
    headers.insert("Content-Type", "application/json");
    Ok(PublishMessage::build()
        .headers(headers)
        .payload(Bytes::from(body)))
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
