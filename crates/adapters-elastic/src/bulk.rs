//! Writing documents with `_bulk` and external versions, retrying what may succeed later.
//!
//! A `_bulk` answered 200 can still carry failed items, so every item's status is read:
//! 2xx is written; 409 (the stored version is the same or newer: a replay or a late write) is
//! written too; 429 and 5xx are sent again with backoff; anything else is refused for good and
//! returned as an `IndexFailure`. When retries run out the whole call is `Unavailable`, so no
//! lost document is ever reported as written.

use std::time::Duration;

use elasticsearch::params::{Refresh, VersionType};
use elasticsearch::{BulkOperation, BulkOperations, BulkParts, Elasticsearch};
use serde_json::Value;
use strata_ports::{IndexFailure, SearchDocument, SearchError};

use crate::error::{error_reason, is_retryable};
use crate::mapping::Source;
use crate::transport::Answer;

/// The first pause before a retry; it doubles each time, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(MAX_BACKOFF)
}

/// What became of one item of a `_bulk`.
enum Outcome {
    Written,
    Retry(String),
    Refused(String),
}

pub(crate) async fn upsert(
    client: &Elasticsearch,
    alias: &str,
    documents: &[SearchDocument],
    wait_for_refresh: bool,
    max_retries: u32,
) -> Result<Vec<IndexFailure>, SearchError> {
    let mut failures = Vec::new();
    let mut pending: Vec<(&SearchDocument, i64)> = Vec::with_capacity(documents.len());
    for document in documents {
        // Elasticsearch versions are signed 64-bit numbers.
        match i64::try_from(document.version) {
            Ok(version) => pending.push((document, version)),
            Err(_) => failures.push(failure(document, "version too large for elasticsearch")),
        }
    }
    let mut attempt = 0;
    while !pending.is_empty() {
        let mut retry = Vec::new();
        let mut last_reason = String::new();
        match send(client, alias, &pending, wait_for_refresh).await {
            Ok(outcomes) => {
                for ((document, version), outcome) in pending.iter().zip(outcomes) {
                    match outcome {
                        Outcome::Written => {}
                        Outcome::Retry(reason) => {
                            retry.push((*document, *version));
                            last_reason = reason;
                        }
                        Outcome::Refused(reason) => failures.push(failure(document, &reason)),
                    }
                }
            }
            Err(SearchError::Unavailable(reason)) => {
                retry = pending;
                last_reason = reason;
            }
            Err(other) => return Err(other),
        }
        if retry.is_empty() {
            break;
        }
        if attempt >= max_retries {
            return Err(SearchError::Unavailable(format!(
                "{} of {} documents not written after {} attempts: {last_reason}",
                retry.len(),
                documents.len(),
                attempt + 1
            )));
        }
        tracing::warn!(
            documents = retry.len(),
            attempt = attempt + 1,
            reason = %last_reason,
            "search index write failed, retrying"
        );
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
        pending = retry;
    }
    Ok(failures)
}

fn failure(document: &SearchDocument, reason: &str) -> IndexFailure {
    IndexFailure {
        order_id: document.order_id,
        version: document.version,
        reason: reason.to_owned(),
    }
}

/// One `_bulk` request; the outcome of each item, in the order of `documents`.
async fn send(
    client: &Elasticsearch,
    alias: &str,
    documents: &[(&SearchDocument, i64)],
    wait_for_refresh: bool,
) -> Result<Vec<Outcome>, SearchError> {
    let mut operations = BulkOperations::new();
    for (document, version) in documents {
        operations
            .push(
                BulkOperation::index(Source::from(*document))
                    .id(document.order_id.to_string())
                    .version(*version)
                    .version_type(VersionType::External),
            )
            .map_err(|e| SearchError::Backend(format!("cannot encode a document: {e}")))?;
    }
    let refresh = if wait_for_refresh {
        Refresh::WaitFor
    } else {
        Refresh::False
    };
    // `require_alias`: a missing alias is an error, not a new index with a guessed mapping.
    let sent = client
        .bulk(BulkParts::Index(alias))
        .require_alias(true)
        .refresh(refresh)
        .body(vec![operations])
        .send()
        .await;
    let body = Answer::of(sent).await?.json("bulk")?;
    outcomes(&body, documents.len())
}

/// Reads the items of a `_bulk` answer.
fn outcomes(body: &Value, expected: usize) -> Result<Vec<Outcome>, SearchError> {
    let items = body
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| SearchError::Protocol("bulk answer without items".to_owned()))?;
    if items.len() != expected {
        return Err(SearchError::Protocol(format!(
            "bulk answer has {} items for {expected} documents",
            items.len()
        )));
    }
    items.iter().map(outcome).collect()
}

fn outcome(item: &Value) -> Result<Outcome, SearchError> {
    // Each item is `{"index": {...}}`: one action name and its result.
    let result = item
        .as_object()
        .and_then(|fields| fields.values().next())
        .ok_or_else(|| SearchError::Protocol(format!("bulk item without a result: {item}")))?;
    let status = result
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| SearchError::Protocol(format!("bulk item without a status: {item}")))?;
    let reason = || {
        let error = result.get("error").map(error_reason).unwrap_or_default();
        format!("status {status}: {error}")
    };
    Ok(match status {
        200..=299 | 409 => Outcome::Written,
        // 404: the alias is gone (`require_alias`), 403: the index is blocked (read-only, disk
        // full). Neither is about the document: retried, then the whole write is unavailable,
        // so nothing is parked for it and the checkpoint waits.
        s if is_retryable(s) || s == 403 || s == 404 => Outcome::Retry(reason()),
        _ => Outcome::Refused(reason()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_ceiling() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
