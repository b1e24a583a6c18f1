//! The operator's dead-letter tools: a parked event applied again, or skipped for good, with the
//! events of its stream that waited behind it.

use strata_ports::{DeadLetter, Generation, RecordedEvent};

use super::Projection;
use super::step::{
    ProjectorError, Refused, Step, apply_or_park, failure, flush_error, park, refused,
};
use super::worker::WorkerDeps;

/// What a retry or a skip of a parked event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqOutcome {
    /// Events applied (the parked one and those that waited behind it).
    pub applied: usize,
    /// Events parked again because one failed once more.
    pub parked_again: usize,
}

/// Applies a parked event again, then the events of its stream that waited behind it, in one
/// batch that holds the checkpoint (so the live worker waits). If one fails again, it and the
/// rest are parked again; what was applied before it stays applied.
///
/// # Errors
/// [`ReadModelError::NotFound`](strata_ports::ReadModelError::NotFound) when no event failed at
/// `position`; storage failures.
pub async fn dlq_retry(
    deps: &WorkerDeps,
    projection: &dyn Projection,
    position: u64,
) -> Result<DlqOutcome, ProjectorError> {
    replay_dead_letters(deps, projection, position, false).await
}

/// Drops a parked event for good and applies the events that waited behind it.
///
/// # Errors
/// As for [`dlq_retry`].
pub async fn dlq_skip(
    deps: &WorkerDeps,
    projection: &dyn Projection,
    position: u64,
) -> Result<DlqOutcome, ProjectorError> {
    replay_dead_letters(deps, projection, position, true).await
}

async fn replay_dead_letters(
    deps: &WorkerDeps,
    projection: &dyn Projection,
    position: u64,
    skip_first: bool,
) -> Result<DlqOutcome, ProjectorError> {
    let mut batch = deps
        .store
        .begin(projection.name(), Generation::Live)
        .await?;
    let checkpoint = batch.checkpoint().await?;
    let letters = batch.take_dead_letters(position).await?;
    let mut outcome = DlqOutcome {
        applied: 0,
        parked_again: 0,
    };
    let mut failed: Option<u64> = None;
    let mut applied: Vec<&DeadLetter> = Vec::with_capacity(letters.len());
    for (index, letter) in letters.iter().enumerate() {
        if index == 0 && skip_first {
            projection
                .skip(&mut *batch, &letter.event)
                .await
                .map_err(|e| failure(&letter.event, e))?;
            tracing::info!(
                projection = projection.name().as_str(),
                position,
                "parked event skipped"
            );
            continue;
        }
        let event = &letter.event;
        if let Some(failed) = failed {
            let (error, attempts) = (letter.error.clone(), letter.attempts);
            let clock = &*deps.clock;
            park(
                &mut *batch,
                projection,
                event,
                error,
                attempts,
                Some(failed),
                clock,
            )
            .await?;
            outcome.parked_again += 1;
            continue;
        }
        let tried = letter.attempts + 1;
        match apply_or_park(&mut *batch, projection, event, tried, &*deps.clock).await? {
            Step::Applied => {
                applied.push(letter);
                outcome.applied += 1;
            }
            Step::Parked(_) => {
                failed = Some(event.global_position);
                outcome.parked_again += 1;
            }
        }
    }
    // A skipped event is handed to the flush too: a projection that folds whole streams
    // (search) writes the stream's state again, leaving out only what it cannot read.
    let skipped = letters.first().filter(|_| skip_first);
    let applied_events: Vec<&RecordedEvent> = applied.iter().map(|l| &l.event).collect();
    let flushed = projection
        .flush_parked(skipped.map(|l| &l.event), &applied_events)
        .await
        .map_err(|e| flush_error(e, position))?;
    let flushed_letters: Vec<&DeadLetter> = skipped.into_iter().chain(applied).collect();
    let events: Vec<&RecordedEvent> = flushed_letters.iter().map(|l| &l.event).collect();
    // The checkpoint is not this batch's to move: a refusal that `stops` parks the rest
    // behind it (`behind`) instead.
    for Refused {
        event,
        reason,
        behind,
        stops: _,
    } in refused(&events, flushed, position)?
    {
        // `refused` names only events of `events`, which are the letters' own.
        let attempts = flushed_letters
            .iter()
            .find(|l| l.event.global_position == event.global_position)
            .map_or(1, |letter| letter.attempts + 1);
        park(
            &mut *batch,
            projection,
            event,
            reason,
            attempts,
            behind,
            &*deps.clock,
        )
        .await?;
        if skipped.is_none_or(|s| s.event.global_position != event.global_position) {
            outcome.applied -= 1;
        }
        outcome.parked_again += 1;
    }
    batch.commit(checkpoint).await?;
    Ok(outcome)
}
