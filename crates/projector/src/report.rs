//! What the projector prints: the status table (or JSON), the dead letters, and the progress
//! of a rebuild (a bar with events/s and ETA on a terminal, plain lines otherwise).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressState, ProgressStyle};
use serde_json::json;
use strata_application::ProjectionStatus;
use strata_application::projection::RebuildProgress;
use strata_ports::{DeadLetter, ProjectionName};

use crate::console;

/// The status as a table, one projection per line.
pub fn statuses_table(statuses: &[ProjectionStatus]) -> String {
    let mut out = format!(
        "{:<10} {:>12} {:>12} {:>10} {:>9} {:>6}  {}\n",
        "PROJECTION", "CHECKPOINT", "HEAD", "LAG", "LAG (s)", "DLQ", "STATE"
    );
    for s in statuses {
        let mut state = s.state.clone();
        match s.rebuild_checkpoint {
            Some(rebuilt) if s.state == "rebuilding" => {
                let _ = write!(state, " (rebuild at {rebuilt})");
            }
            Some(rebuilt) => {
                let _ = write!(
                    state,
                    " (a rebuild stopped at {rebuilt}: `strata-projector rebuild {} --abandon`)",
                    s.name
                );
            }
            None => {}
        }
        let _ = writeln!(
            out,
            "{:<10} {:>12} {:>12} {:>10} {:>9.1} {:>6}  {}",
            s.name, s.checkpoint, s.head, s.lag_events, s.lag_seconds, s.dead_letters, state
        );
    }
    out
}

/// The status as one JSON document (the same fields as `GET /v1/projections`).
pub fn statuses_json(statuses: &[ProjectionStatus]) -> serde_json::Value {
    json!({
        "projections": statuses.iter().map(|s| json!({
            "name": s.name,
            "checkpoint": s.checkpoint,
            "head": s.head,
            "lagEvents": s.lag_events,
            "lagSeconds": s.lag_seconds,
            "deadLetters": s.dead_letters,
            "state": s.state,
            "rebuildCheckpoint": s.rebuild_checkpoint,
        })).collect::<Vec<_>>()
    })
}

/// The dead letters as a table.
pub fn dead_letters_table(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no parked events\n".to_owned();
    }
    let mut out = format!(
        "{:<18} {:>10} {:<46} {:>7} {:<16} {:>8}  {}\n",
        "PROJECTION", "POSITION", "STREAM", "VERSION", "TYPE", "ATTEMPTS", "ERROR"
    );
    for l in letters {
        let error = match l.blocked_by {
            Some(failed) => format!("waits behind position {failed}"),
            None => l.error.clone(),
        };
        let _ = writeln!(
            out,
            "{:<18} {:>10} {:<46} {:>7} {:<16} {:>8}  {}",
            l.projection,
            l.event.global_position,
            l.event.stream_id.as_str(),
            l.event.stream_version,
            l.event.event_type,
            l.attempts,
            error
        );
    }
    out
}

/// Progress of a rebuild on stderr.
#[derive(Debug)]
pub struct RebuildBar {
    name: ProjectionName,
    /// Where the bar is drawn, on a terminal; plain lines otherwise.
    bars: Option<MultiProgress>,
    /// Made at the first progress, when the total is known: a bar made earlier would be drawn
    /// as a full "0/0".
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
    last: Option<RebuildProgress>,
}

impl RebuildBar {
    /// A bar when stderr is a terminal (with the log scrolling above it), plain lines every few
    /// seconds otherwise.
    pub fn new(name: ProjectionName) -> Self {
        Self::drawn_on(name, std::io::stderr().is_terminal().then(console::bars))
    }

    fn drawn_on(name: ProjectionName, bars: Option<MultiProgress>) -> Self {
        Self {
            name,
            bars,
            bar: None,
            started: Instant::now(),
            last_line: Instant::now(),
            last: None,
        }
    }

    pub fn update(&mut self, progress: RebuildProgress) {
        self.last = Some(progress);
        if let Some(bars) = &self.bars {
            let name = &self.name;
            let bar = self.bar.get_or_insert_with(|| {
                // Its length is set before it is added, so its first frame shows the total.
                bars.add(
                    ProgressBar::new(progress.head)
                        .with_position(progress.checkpoint)
                        .with_style(bar_style())
                        .with_message(format!("rebuilding {name}")),
                )
            });
            bar.set_length(progress.head);
            bar.set_position(progress.checkpoint);
        } else if self.last_line.elapsed() >= Duration::from_secs(2) {
            self.last_line = Instant::now();
            eprintln!("{}", self.line(progress));
        }
    }

    fn line(&self, p: RebuildProgress) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = p.events_applied as f64 / seconds;
        let left = p.head.saturating_sub(p.checkpoint) as f64;
        let eta = if rate > 0.0 { left / rate } else { 0.0 };
        format!(
            "rebuilding {}: position {}/{} ({:.0} events/s, ETA {:.0}s)",
            self.name, p.checkpoint, p.head, rate, eta
        )
    }

    pub fn finish(&self, swapped: bool) {
        let outcome = if swapped {
            "swapped in"
        } else {
            "not swapped in"
        };
        if let Some(bar) = &self.bar {
            if let (true, Some(last)) = (swapped, self.last) {
                bar.set_position(last.checkpoint.max(last.head));
            }
            bar.finish_with_message(format!("rebuilt {}: {outcome}", self.name));
        } else if let Some(last) = self.last {
            eprintln!("{}; {outcome}", self.line(last));
        } else {
            eprintln!("rebuilt {}: {outcome}", self.name);
        }
    }
}

/// The bar's look: what is rebuilt, how far, how fast, how long to go.
fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({rate}, ETA {eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{:.0} events/s", state.per_sec());
            },
        )
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use indicatif::{InMemoryTerm, ProgressDrawTarget};

    use super::*;

    fn progress(checkpoint: u64, head: u64) -> RebuildProgress {
        RebuildProgress {
            checkpoint,
            head,
            events_applied: checkpoint,
        }
    }

    #[test]
    fn the_bar_is_drawn_only_once_the_total_is_known_and_its_first_frame_shows_it() {
        let term = InMemoryTerm::new(4, 120);
        let bars =
            MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(term.clone())));
        let mut rebuild = RebuildBar::drawn_on(ProjectionName::Orders, Some(bars));
        assert_eq!(term.contents().trim(), "", "drawn before any progress");

        rebuild.update(progress(250, 1_000));
        let first = term.contents();
        assert!(first.contains("rebuilding orders"), "{first:?}");
        assert!(first.contains("250/1000"), "{first:?}");
        assert!(!first.contains("0/0"), "{first:?}");

        rebuild.update(progress(1_000, 1_200));
        rebuild.finish(true);
        let last = term.contents();
        assert!(last.contains("rebuilt orders: swapped in"), "{last:?}");
        assert!(last.contains("1200/1200"), "{last:?}");
    }
}
