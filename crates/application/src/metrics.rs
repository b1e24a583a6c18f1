//! The metrics the application records through the `metrics` facade: their names, what each
//! means (`describe`), and the bucket bounds every duration histogram shares. The binaries
//! install the recorder that renders them; nothing here knows how they are exported.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Events appended by commands, by stream category.
pub const EVENTS_APPENDED_TOTAL: &str = "strata_events_appended_total";
/// Lost races with a concurrent writer that a command retried, by stream category.
pub const COMMAND_RETRIES_TOTAL: &str = "strata_command_retries_total";
/// Commands that gave up with `Contention` (a lost race not retried, or retries exhausted),
/// by stream category.
pub const COMMAND_CONTENTION_TOTAL: &str = "strata_command_contention_total";
/// Events a projection worker applied, by projection.
pub const PROJECTOR_EVENTS_TOTAL: &str = "strata_projector_events_total";
/// Events a projection worker parked as dead letters, by projection.
pub const PROJECTOR_PARKED_TOTAL: &str = "strata_projector_parked_total";
/// Time to apply and commit one batch, by projection (a histogram).
pub const PROJECTOR_BATCH_SECONDS: &str = "strata_projector_batch_seconds";
/// Events the publisher handed to the broker and had acknowledged.
pub const PUBLISHER_EVENTS_TOTAL: &str = "strata_publisher_events_total";
/// Failures of the broker the publisher met, by kind (`unavailable`, `refused`,
/// `misconfigured`).
pub const PUBLISHER_BROKER_ERRORS_TOTAL: &str = "strata_publisher_broker_errors_total";
/// Events between a projection's checkpoint and the head of the log.
pub const PROJECTION_LAG_EVENTS: &str = "strata_projection_lag_events";
/// Age of the oldest event a projection has not applied yet.
pub const PROJECTION_LAG_SECONDS: &str = "strata_projection_lag_seconds";
/// The position a projection has committed.
pub const PROJECTION_CHECKPOINT: &str = "strata_projection_checkpoint";
/// Events parked in a projection's dead-letter queue.
pub const PROJECTION_DEAD_LETTERS: &str = "strata_projection_dead_letters";
/// Age of the oldest open transaction in the database (PostgreSQL; 0 on SQLite).
pub const OLDEST_OPEN_TRANSACTION_SECONDS: &str = "strata_oldest_open_transaction_seconds";

/// Upper bounds, in seconds, of the buckets of every duration histogram of both binaries. One
/// set everywhere, so that latencies can be summed across instances and compared across
/// histograms; it reaches the 30 s default request deadline.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Describes the application's metrics to the installed recorder, so that `/metrics` carries a
/// `# HELP` line and a unit for each. Call once, after installing the recorder; a recorder
/// keeps the first description of a name, so a second call changes nothing.
pub fn describe() {
    describe_counter!(
        EVENTS_APPENDED_TOTAL,
        Unit::Count,
        "Events appended to the log by commands, by stream category."
    );
    describe_counter!(
        COMMAND_RETRIES_TOTAL,
        Unit::Count,
        "Races with a concurrent writer lost and retried by commands without If-Match, by stream category."
    );
    describe_counter!(
        COMMAND_CONTENTION_TOTAL,
        Unit::Count,
        "Commands that gave up after losing races with concurrent writers (answered as contention), by stream category."
    );
    describe_counter!(
        PROJECTOR_EVENTS_TOTAL,
        Unit::Count,
        "Events applied by this process's projection workers, by projection."
    );
    describe_counter!(
        PROJECTOR_PARKED_TOTAL,
        Unit::Count,
        "Events parked as dead letters by this process's projection workers, by projection."
    );
    describe_histogram!(
        PROJECTOR_BATCH_SECONDS,
        Unit::Seconds,
        "Time to apply and commit one batch of events, by projection."
    );
    describe_counter!(
        PUBLISHER_EVENTS_TOTAL,
        Unit::Count,
        "Events the publisher handed to the broker and had acknowledged (a repeat the broker already held counts too)."
    );
    describe_counter!(
        PUBLISHER_BROKER_ERRORS_TOTAL,
        Unit::Count,
        "Failures of the broker met by the publisher, by kind: unavailable (retried), refused (the event parked), misconfigured (the stream does not fit)."
    );
    describe_gauge!(
        PROJECTION_LAG_EVENTS,
        Unit::Count,
        "Events between the projection's checkpoint and the head of the log, read at each scrape."
    );
    describe_gauge!(
        PROJECTION_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest event the projection has not applied, read at each scrape."
    );
    describe_gauge!(
        PROJECTION_CHECKPOINT,
        Unit::Count,
        "Global position of the last event the projection committed, read at each scrape."
    );
    describe_gauge!(
        PROJECTION_DEAD_LETTERS,
        Unit::Count,
        "Events parked in the projection's dead-letter queue, read at each scrape."
    );
    describe_gauge!(
        OLDEST_OPEN_TRANSACTION_SECONDS,
        Unit::Seconds,
        "Age of the oldest open transaction in the database (it delays the projections), read at each scrape."
    );
}
