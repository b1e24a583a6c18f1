//! Command handling: authorise, load, decide, append with the expected version; retry a lost
//! race when the client did not pin a version; answer a replayed idempotency key with the
//! original acknowledgement; snapshot every N events.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use strata_domain::{Aggregate, DomainError};
use strata_ports::{
    AppendRequest, Clock, EventStore, EventStoreError, ExpectedVersion, IdGenerator,
    IdempotencyClaim, IdempotencyRecord, Metadata, NewEvent, Snapshot, SnapshotStore, StreamId,
};
use uuid::Uuid;

use crate::access::{Owned, Principal, Role};
use crate::cache::AggregateCache;
use crate::error::CommandError;
use crate::rehydrate::{Loaded, Rehydrator};

/// Tunables of command handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandConfig {
    /// Take a snapshot each time a stream crosses a multiple of this many events (0: never).
    pub snapshot_every: u64,
    /// How many times a command without a client-supplied version is retried after losing a
    /// race with a concurrent writer.
    pub max_retries: u32,
    /// How many aggregates the service keeps as it last wrote them, so that the next command on
    /// one skips its load (0: load every time). See `cache.rs` for why a stale one is harmless.
    pub cached_aggregates: usize,
}

impl Default for CommandConfig {
    fn default() -> Self {
        Self {
            snapshot_every: 100,
            max_retries: 16,
            cached_aggregates: 1_000,
        }
    }
}

/// Everything about a command that is not the command itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    pub principal: Principal,
    /// The request id; stored as the events' correlation id.
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// The client's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// The client's `If-Match` version: the command applies only at exactly this version.
    pub expected_version: Option<u64>,
}

impl CommandContext {
    pub fn new(principal: Principal) -> Self {
        Self {
            principal,
            correlation_id: None,
            causation_id: None,
            idempotency_key: None,
            expected_version: None,
        }
    }
}

/// Which stream a command is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A new aggregate: the id is generated.
    New,
    Existing(Uuid),
}

/// What a command returns: where it landed, never domain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandAck {
    pub aggregate_id: Uuid,
    /// The stream version after the command.
    pub version: u64,
    /// The global position of the command's last event (for read-your-writes).
    pub position: u64,
    /// True when this answers a replayed idempotency key (nothing was appended).
    #[serde(skip)]
    pub replayed: bool,
    /// How often the command was tried again after losing a race to a concurrent writer.
    #[serde(skip)]
    pub retries: u32,
}

impl CommandAck {
    fn from_record(record: &IdempotencyRecord) -> Self {
        Self {
            aggregate_id: record.stream_id.id(),
            version: record.stream_version,
            position: record.global_position,
            replayed: true,
            retries: 0,
        }
    }
}

/// Handles commands of every aggregate.
#[derive(Clone)]
pub struct CommandService {
    store: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
    rehydrator: Rehydrator,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    config: CommandConfig,
    cache: Arc<AggregateCache>,
}

impl std::fmt::Debug for CommandService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl CommandService {
    pub fn new(
        store: Arc<dyn EventStore>,
        snapshots: Arc<dyn SnapshotStore>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        config: CommandConfig,
    ) -> Self {
        let rehydrator = Rehydrator::new(store.clone(), snapshots.clone());
        Self {
            store,
            snapshots,
            rehydrator,
            clock,
            ids,
            cache: Arc::new(AggregateCache::new(config.cached_aggregates)),
            config,
        }
    }

    /// Executes one command against one aggregate.
    ///
    /// # Errors
    /// See [`CommandError`]: every variant can occur.
    #[tracing::instrument(skip_all, fields(category = A::CATEGORY, user = %context.principal.user_id))]
    pub async fn execute<A: Owned>(
        &self,
        context: &CommandContext,
        target: Target,
        command: A::Command,
    ) -> Result<CommandAck, CommandError> {
        let principal = &context.principal;
        principal.may_command()?;
        if principal.role == Role::Customer
            && let Some(owner) = A::owner_requested(&command)
            && Some(owner) != principal.customer_id.as_ref()
        {
            return Err(CommandError::Forbidden(format!(
                "a customer may only act for their own customer id, not {owner}"
            )));
        }
        // No look-up of the key before the command: the store checks the claim with the append,
        // before the expected version, and answers a taken key; a command that fails
        // before it reaches the store (refused by the aggregate, not found, at another version,
        // out of retries) asks whether its key was applied before. A careful client's first
        // try thus costs no more round trips than a careless one's.
        let claim = match &context.idempotency_key {
            Some(key) => Some(IdempotencyClaim {
                principal: principal.user_id.clone(),
                key: key.clone(),
                fingerprint: fingerprint::<A>(target, &command)?,
            }),
            None => None,
        };
        let outcome = self
            .decide_and_append::<A>(context, target, command, claim.as_ref())
            .await;
        let outcome = match (outcome, &claim) {
            (Err(error), Some(claim)) if error.may_answer_a_replay() => {
                self.replay(claim).await?.ok_or(error)
            }
            (outcome, _) => outcome,
        };
        if let Err(CommandError::Contention { .. }) = outcome {
            metrics::counter!(crate::metrics::COMMAND_CONTENTION_TOTAL, "category" => A::CATEGORY)
                .increment(1);
        }
        outcome
    }

    /// Loads (or takes from the cache), decides and appends, retrying lost races.
    async fn decide_and_append<A: Owned>(
        &self,
        context: &CommandContext,
        target: Target,
        command: A::Command,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<CommandAck, CommandError> {
        let principal = &context.principal;
        let stream_id = match target {
            Target::New => StreamId::new(A::CATEGORY, self.ids.new_id()),
            Target::Existing(id) => StreamId::new(A::CATEGORY, id),
        };

        let mut attempt = 0;
        // Only the first attempt may start from the cache: a retry follows a lost race, and
        // starts from the state it lost with.
        let mut start = match target {
            Target::New => Start::Load,
            Target::Existing(_) => self
                .cache
                .take::<A::State>(&stream_id)
                .filter(|c| context.expected_version.is_none_or(|v| v == c.version))
                .map_or(Start::Load, Start::Cached),
        };
        loop {
            attempt += 1;
            let from_cache = matches!(start, Start::Cached(_));
            let loaded = match std::mem::replace(&mut start, Start::Load) {
                Start::Cached(loaded) => loaded,
                Start::Behind(known) => self.rehydrator.catch_up::<A>(&stream_id, known).await?,
                // A new aggregate's stream id was just generated, so its stream is empty:
                // nothing to load (were it not, the expected version 0 would refuse the append).
                Start::Load if target == Target::New => Loaded {
                    state: A::State::default(),
                    version: 0,
                },
                Start::Load => self.rehydrator.load::<A>(&stream_id).await?,
            };
            if let Target::Existing(_) = target
                && (!A::exists(&loaded.state) || !principal.can_read(A::owner(&loaded.state)))
            {
                return Err(CommandError::NotFound(A::CATEGORY));
            }
            if let Some(expected) = context.expected_version
                && expected != loaded.version
            {
                return Err(CommandError::VersionMismatch {
                    category: A::CATEGORY,
                    expected,
                    actual: loaded.version,
                });
            }
            let events = match A::decide(&loaded.state, command.clone()) {
                Ok(events) => events,
                // A refusal is checked by no store: decide it again on what the store holds.
                Err(_) if from_cache => {
                    self.cache.forget(&stream_id);
                    attempt -= 1;
                    continue;
                }
                Err(e) => {
                    return Err(CommandError::Rejected {
                        kind: e.kind(),
                        message: e.to_string(),
                    });
                }
            };
            let request = AppendRequest {
                stream_id: stream_id.clone(),
                expected: ExpectedVersion::Exact(loaded.version),
                events: self.envelope::<A>(context, &events),
                idempotency: claim.cloned(),
            };
            let appended = self.store.append(request).await;
            if appended.is_err() {
                // Lost a race, or an outcome nobody knows: the next command loads.
                self.cache.forget(&stream_id);
            }
            match appended {
                Ok(outcome) => {
                    metrics::counter!(crate::metrics::EVENTS_APPENDED_TOTAL, "category" => A::CATEGORY)
                        .increment(events.len() as u64);
                    // The state after exactly these events: folded once, from the state they
                    // were decided on.
                    let before = loaded.version;
                    let after = A::fold(loaded.state, &events);
                    self.maybe_snapshot::<A>(&stream_id, before, &after, outcome.stream_version)
                        .await;
                    self.cache.put(&stream_id, outcome.stream_version, after);
                    return Ok(CommandAck {
                        aggregate_id: stream_id.id(),
                        version: outcome.stream_version,
                        position: outcome.global_position,
                        replayed: false,
                        retries: attempt - 1,
                    });
                }
                Err(EventStoreError::WrongExpectedVersion { actual, .. }) => {
                    // The writer that moved the stream may have been this very request's
                    // original, sent again by a client that gave up waiting: then the answer
                    // is its acknowledgement, not a conflict. `execute` asks the key before it
                    // answers a mismatch or contention; a retry's append carries the claim,
                    // which the store checks.
                    if let Some(expected) = context.expected_version {
                        return Err(CommandError::VersionMismatch {
                            category: A::CATEGORY,
                            expected,
                            actual,
                        });
                    }
                    if target == Target::New || attempt > self.config.max_retries {
                        return Err(CommandError::Contention {
                            category: A::CATEGORY,
                            attempts: attempt,
                        });
                    }
                    tracing::debug!(%stream_id, attempt, "lost a race with a concurrent writer; retrying");
                    metrics::counter!(crate::metrics::COMMAND_RETRIES_TOTAL, "category" => A::CATEGORY).increment(1);
                    // The events that won are read after the state decided on, instead of
                    // the whole stream from its snapshot; a stream found behind that state
                    // (restored, say) is loaded whole.
                    if actual > loaded.version {
                        start = Start::Behind(loaded);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(EventStoreError::IdempotencyKeyTaken { key }) => {
                    // A concurrent request with the same key won: answer as its replay.
                    let claim = claim.ok_or_else(|| {
                        CommandError::Internal(format!(
                            "idempotency key {key:?} taken without a claim"
                        ))
                    })?;
                    return self.replay(claim).await?.ok_or_else(|| {
                        CommandError::Internal(format!("idempotency key {key:?} vanished"))
                    });
                }
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// The original acknowledgement when this claim's key was applied before.
    async fn replay(&self, claim: &IdempotencyClaim) -> Result<Option<CommandAck>, CommandError> {
        match self
            .store
            .find_idempotency(&claim.principal, &claim.key)
            .await?
        {
            None => Ok(None),
            Some(record) if record.fingerprint == claim.fingerprint => {
                Ok(Some(CommandAck::from_record(&record)))
            }
            Some(_) => Err(CommandError::IdempotencyKeyReused(claim.key.clone())),
        }
    }

    fn envelope<A: Aggregate>(
        &self,
        context: &CommandContext,
        events: &[A::Event],
    ) -> Vec<NewEvent> {
        let recorded_at = self.clock.now();
        events
            .iter()
            .map(|event| {
                let payload = strata_domain::DomainEvent::encode(event);
                NewEvent {
                    event_id: self.ids.new_id(),
                    event_type: payload.event_type,
                    schema_version: payload.schema_version,
                    data: payload.data,
                    metadata: Metadata {
                        correlation_id: context.correlation_id.clone(),
                        causation_id: context.causation_id.clone(),
                        user_id: Some(context.principal.user_id.clone()),
                        idempotency_key: context.idempotency_key.clone(),
                    },
                    recorded_at,
                }
            })
            .collect()
    }

    /// Saves a snapshot when the append crossed a multiple of `snapshot_every`. A failure only
    /// costs a longer replay later, so it is logged, not returned.
    async fn maybe_snapshot<A: Aggregate>(
        &self,
        stream_id: &StreamId,
        before: u64,
        state: &A::State,
        new_version: u64,
    ) {
        let every = self.config.snapshot_every;
        if every == 0 || before / every == new_version / every {
            return;
        }
        let state = match serde_json::to_value(state) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%stream_id, %error, "cannot serialise a snapshot");
                return;
            }
        };
        let snapshot = Snapshot {
            stream_id: stream_id.clone(),
            stream_version: new_version,
            state_version: A::STATE_VERSION,
            state,
            taken_at: self.clock.now(),
        };
        if let Err(error) = self.snapshots.save(snapshot).await {
            tracing::warn!(%stream_id, %error, "snapshot not saved");
        }
    }
}

/// Where an attempt of a command starts from.
enum Start<S> {
    /// The state this service last wrote, a guess the append checks.
    Cached(Loaded<S>),
    /// A state the stream has moved past (its command lost a race): exact at its version, so
    /// only the events after it are read.
    Behind(Loaded<S>),
    /// Nothing known: the stream is loaded from its snapshot.
    Load,
}

/// The version of the fingerprint's canonical form. A change to the form, or to how a command
/// serialises, changes every fingerprint, so keys recorded before it would no longer match
/// their retries: bump this and say so in the release notes (`fingerprints_are_stable` pins
/// one value so that such a change cannot go unnoticed).
const FINGERPRINT_FORM: &str = "v1";

/// What a replay is compared on: `v1:` and the SHA-256, in hex, of the canonical JSON (object
/// keys sorted at every level, no whitespace) of the aggregate category, the target id (null for
/// a creation) and the validated command. Hashed so that a large command costs 67 bytes per
/// stored key, canonical so that it does not depend on serde_json's map ordering features.
fn fingerprint<A: Aggregate>(target: Target, command: &A::Command) -> Result<String, CommandError> {
    let failed =
        |e: serde_json::Error| CommandError::Internal(format!("cannot fingerprint a command: {e}"));
    // The object {"category", "command", "target"} written out, its keys in sorted order:
    // building it as a value first, and a string per key and scalar, cost more than the hash.
    let command = serde_json::to_value(command).map_err(failed)?;
    let mut canonical = Vec::with_capacity(256);
    canonical.extend_from_slice(b"{\"category\":");
    serde_json::to_writer(&mut canonical, A::CATEGORY).map_err(failed)?;
    canonical.extend_from_slice(b",\"command\":");
    write_canonical(&command, &mut canonical).map_err(failed)?;
    canonical.extend_from_slice(b",\"target\":");
    match target {
        Target::New => canonical.extend_from_slice(b"null"),
        Target::Existing(id) => serde_json::to_writer(&mut canonical, &id).map_err(failed)?,
    }
    canonical.push(b'}');
    let digest = Sha256::digest(&canonical);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut fingerprint = String::with_capacity(FINGERPRINT_FORM.len() + 1 + 2 * digest.len());
    fingerprint.push_str(FINGERPRINT_FORM);
    fingerprint.push(':');
    for byte in digest.iter() {
        fingerprint.push(char::from(HEX[usize::from(byte >> 4)]));
        fingerprint.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    Ok(fingerprint)
}

/// Writes `value` as JSON with the keys of every object in sorted order.
fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) -> serde_json::Result<()> {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (n, key) in keys.into_iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_canonical(&fields[key], out)?;
            }
            out.push(b'}');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

/// Exponential backoff with full jitter, capped at about 50 ms.
fn backoff(attempt: u32) -> Duration {
    let ceiling_us = 500u64 << attempt.min(7);
    Duration::from_micros(rand::rng().random_range(0..=ceiling_us.min(50_000)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use strata_domain::order::{Order, OrderCommand};
    use strata_domain::values::TrackingNumber;
    use uuid::Uuid;

    use super::*;

    fn confirm_of(id: &str) -> Result<String, CommandError> {
        fingerprint::<Order>(
            Target::Existing(Uuid::parse_str(id).unwrap()),
            &OrderCommand::Confirm,
        )
    }

    #[test]
    fn fingerprints_are_stable() {
        // Pinned: if this changes, keys stored by running servers stop matching their
        // retries. Bump FINGERPRINT_FORM deliberately instead of updating the value blindly.
        let ship = OrderCommand::Ship {
            tracking_number: TrackingNumber::new("TRK-1").unwrap(),
        };
        let target =
            Target::Existing(Uuid::parse_str("0190a6b2-0000-7000-8000-000000000001").unwrap());
        assert_eq!(fingerprint::<Order>(target, &ship).unwrap(), PINNED);
    }

    // = sha256 of {"category":"order","command":{"command":"Ship","trackingNumber":"TRK-1"},"target":"0190a6b2-0000-7000-8000-000000000001"}
    const PINNED: &str = "v1:bd84b644cbc506cdd5154628c03d97d82618ac9f4057900d6767137a7339df89";

    #[test]
    fn a_creations_fingerprint_has_a_null_target() {
        // = sha256 of {"category":"order","command":{"command":"Confirm"},"target":null}
        assert_eq!(
            fingerprint::<Order>(Target::New, &OrderCommand::Confirm).unwrap(),
            "v1:11666288e83785c8a02fc339936178e96b3eef3bfe82a1483a7d9d547648428e"
        );
    }

    #[test]
    fn fingerprints_tell_targets_apart() {
        assert_ne!(
            confirm_of("0190a6b2-0000-7000-8000-000000000001").unwrap(),
            confirm_of("0190a6b2-0000-7000-8000-000000000002").unwrap()
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let value = json!({"b": [{"z": 1, "a": null}], "a": "x\"y"});
        let mut out = Vec::new();
        write_canonical(&value, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"x\"y","b":[{"a":null,"z":1}]}"#
        );
    }
}
