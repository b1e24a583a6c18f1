//! Leases and wake-ups on SQLite. A lease is a row of `projection_leases` with an expiry that a
//! background task of its holder renews; a holder that dies stops renewing, and a standby takes
//! the row over once it has expired (within [`LEASE_TTL`]). Wake-ups are in-process: the event
//! store signals its own commits; appends of another process reach its projectors by polling.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use strata_ports::{
    Generation, LogWakeup, LogWakeups, ProjectionLease, ProjectionLeases, ProjectionName,
    ReadModelError,
};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::checkpoints::db;
use crate::codec::micros;
use crate::write::write_one;

/// How long a lease outlives its last renewal: the longest a dead holder blocks a standby.
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// How often a holder renews.
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// Takes the lease when nobody holds it or its holder let it expire.
const TAKE: &str = "\
    INSERT INTO projection_leases (projection, holder, expires_at) VALUES (?1, ?2, ?3) \
    ON CONFLICT (projection) DO UPDATE \
    SET holder = excluded.holder, expires_at = excluded.expires_at \
    WHERE projection_leases.expires_at < ?4";

const RENEW: &str =
    "UPDATE projection_leases SET expires_at = ?3 WHERE projection = ?1 AND holder = ?2";

const RELEASE: &str = "DELETE FROM projection_leases WHERE projection = ?1 AND holder = ?2";

/// How much sooner than the stored expiry a holder stops believing it holds the lease, for
/// the clocks of two processes reading the row.
const MARGIN: Duration = Duration::from_secs(1);

fn expiry_from_now() -> i64 {
    micros(OffsetDateTime::now_utc() + LEASE_TTL)
}

/// Until when the holder may believe the lease is its own: the stored expiry was computed when
/// the write was attempted, before it waited for the write lock, so count from then.
#[derive(Debug, Clone)]
struct ValidUntil(Arc<Mutex<Instant>>);

impl ValidUntil {
    fn from_attempt(attempted: Instant) -> Self {
        Self(Arc::new(Mutex::new(attempted + LEASE_TTL - MARGIN)))
    }

    fn renewed(&self, attempted: Instant) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = attempted + LEASE_TTL - MARGIN;
    }

    fn passed(&self) -> bool {
        Instant::now() >= *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Grants leases stored in the database, so that instances in other processes see them too.
#[derive(Debug, Clone)]
pub struct SqliteLeases {
    pool: SqlitePool,
}

impl SqliteLeases {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl ProjectionLeases for SqliteLeases {
    async fn try_acquire(
        &self,
        projection: ProjectionName,
        generation: Generation,
    ) -> Result<Option<Box<dyn ProjectionLease>>, ReadModelError> {
        let projection = projection.key(generation);
        let holder = Uuid::new_v4().to_string();
        let attempted = Instant::now();
        let take = sqlx::query(TAKE)
            .bind(&projection)
            .bind(&holder)
            .bind(expiry_from_now())
            .bind(micros(OffsetDateTime::now_utc()));
        let taken = write_one(&self.pool, take)
            .await
            .map_err(db)?
            .rows_affected()
            == 1;
        if !taken {
            return Ok(None);
        }
        let valid_until = ValidUntil::from_attempt(attempted);
        let renewer = tokio::spawn(renew(
            self.pool.clone(),
            projection.clone(),
            holder.clone(),
            valid_until.clone(),
        ));
        Ok(Some(Box::new(SqliteLease {
            pool: self.pool.clone(),
            projection,
            holder,
            valid_until,
            renewer,
        })))
    }
}

/// Renews the lease until it is dropped; returns (which is how the holder learns it) when
/// another holder has the row or the expiry passed without a renewal.
async fn renew(pool: SqlitePool, projection: String, holder: String, valid_until: ValidUntil) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let attempted = Instant::now();
        let renew = sqlx::query(RENEW)
            .bind(&projection)
            .bind(&holder)
            .bind(expiry_from_now());
        let renewed = write_one(&pool, renew).await;
        match renewed {
            Ok(done) if done.rows_affected() == 1 => valid_until.renewed(attempted),
            Ok(_) => {
                tracing::warn!(projection, "lease taken over by another holder");
                return;
            }
            // A busy database is not a lost lease, unless it stays busy past the expiry.
            Err(error) if !valid_until.passed() => {
                tracing::warn!(projection, %error, "cannot renew the lease; retrying");
            }
            Err(error) => {
                tracing::warn!(projection, %error, "lease expired without renewal");
                return;
            }
        }
    }
}

#[derive(Debug)]
struct SqliteLease {
    pool: SqlitePool,
    projection: String,
    holder: String,
    valid_until: ValidUntil,
    /// Ends only when the lease is lost (or on drop).
    renewer: JoinHandle<()>,
}

#[async_trait]
impl ProjectionLease for SqliteLease {
    async fn check(&mut self) -> Result<(), ReadModelError> {
        // Past its expiry the row may be another holder's already, even before the renewer
        // learns it.
        if self.renewer.is_finished() || self.valid_until.passed() {
            return Err(ReadModelError::NotFound(format!(
                "the lease of {} is lost",
                self.projection
            )));
        }
        Ok(())
    }
}

impl Drop for SqliteLease {
    fn drop(&mut self) {
        self.renewer.abort();
        // Hand the lease over at once instead of at its expiry; without a runtime (the process
        // is ending) the expiry does it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pool = self.pool.clone();
            let projection = std::mem::take(&mut self.projection);
            let holder = std::mem::take(&mut self.holder);
            runtime.spawn(async move {
                let release = sqlx::query(RELEASE).bind(&projection).bind(&holder);
                let released = write_one(&pool, release).await;
                if let Err(error) = released {
                    tracing::debug!(projection, %error, "cannot release the lease; it expires");
                }
            });
        }
    }
}

/// Subscriptions to the commits of one [`crate::SqliteEventStore`] (and its clones).
#[derive(Debug, Clone)]
pub struct SqliteLogWakeups {
    appended: Arc<watch::Sender<u64>>,
}

impl SqliteLogWakeups {
    pub(crate) fn new(appended: Arc<watch::Sender<u64>>) -> Self {
        Self { appended }
    }
}

#[async_trait]
impl LogWakeups for SqliteLogWakeups {
    async fn subscribe(&self) -> Result<Box<dyn LogWakeup>, ReadModelError> {
        Ok(Box::new(SqliteLogWakeup {
            appended: self.appended.subscribe(),
        }))
    }
}

#[derive(Debug)]
struct SqliteLogWakeup {
    appended: watch::Receiver<u64>,
}

#[async_trait]
impl LogWakeup for SqliteLogWakeup {
    async fn wait(&mut self) -> Result<(), ReadModelError> {
        // A burst of appends is one change of the watched counter: one wake-up.
        self.appended
            .changed()
            .await
            .map_err(|_| ReadModelError::Unavailable("the event store is gone".into()))
    }
}
