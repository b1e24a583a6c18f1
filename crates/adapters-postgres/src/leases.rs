//! Leases and wake-ups on PostgreSQL. `PgLeases` takes a session advisory lock per projection
//! on a connection taken out of the pool; `PgLogWakeup` LISTENs on the channel every append
//! notifies on commit.

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgListener;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres};
use strata_ports::{
    Generation, LogWakeup, LogWakeups, ProjectionLease, ProjectionLeases, ProjectionName,
    ReadModelError,
};

use crate::checkpoints::db;

/// The channel every append notifies on commit (in the append functions, migrations 0005 to
/// 0007). The payload is empty: a notification is only a wake-up.
pub const EVENTS_CHANNEL: &str = "strata_events";

/// Wakes on the notification every append sends on commit.
#[derive(Debug)]
pub struct PgLogWakeup {
    listener: PgListener,
}

impl PgLogWakeup {
    /// Listens on [`EVENTS_CHANNEL`] on a connection of its own.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn listen(pool: &PgPool) -> Result<Self, ReadModelError> {
        let mut listener = PgListener::connect_with(pool).await.map_err(db)?;
        listener.listen(EVENTS_CHANNEL).await.map_err(db)?;
        Ok(Self { listener })
    }
}

#[async_trait]
impl LogWakeup for PgLogWakeup {
    async fn wait(&mut self) -> Result<(), ReadModelError> {
        // sqlx reconnects a lost listener inside `recv` (notifications sent meanwhile are lost:
        // the worker's poll covers them).
        self.listener.recv().await.map_err(db)?;
        // A burst of appends is one wake-up: drop what has already arrived, so the worker does
        // not run one empty batch per notification.
        while self.listener.next_buffered().is_some() {}
        Ok(())
    }
}

/// Opens a [`PgLogWakeup`] per subscription.
#[derive(Debug, Clone)]
pub struct PgLogWakeups {
    pool: PgPool,
}

impl PgLogWakeups {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl LogWakeups for PgLogWakeups {
    async fn subscribe(&self) -> Result<Box<dyn LogWakeup>, ReadModelError> {
        Ok(Box::new(PgLogWakeup::listen(&self.pool).await?))
    }
}

/// Session advisory locks, one per projection, each on a connection taken out of the pool: the
/// lock lives exactly as long as that connection (a dead process releases it at once).
#[derive(Debug, Clone)]
pub struct PgLeases {
    pool: PgPool,
}

impl PgLeases {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const LEASE_KEY: &str = "hashtextextended('strata.projection.' || $1, 0)";

#[async_trait]
impl ProjectionLeases for PgLeases {
    async fn try_acquire(
        &self,
        projection: ProjectionName,
        generation: Generation,
    ) -> Result<Option<Box<dyn ProjectionLease>>, ReadModelError> {
        let mut connection: PoolConnection<Postgres> = self.pool.acquire().await.map_err(db)?;
        let taken: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT pg_try_advisory_lock({LEASE_KEY})"
        )))
        .bind(projection.key(generation))
        .fetch_one(&mut *connection)
        .await
        .map_err(db)?;
        if !taken {
            // Nothing is held on it: back to the pool, no new connection per retry.
            return Ok(None);
        }
        // The lock lives as long as this session: take the connection out of the pool, and make
        // the server notice a vanished holder (host crash, partition) within about 20 seconds
        // instead of the default two hours of TCP keepalive.
        let mut connection = connection.detach();
        sqlx::query(
            "SELECT set_config('tcp_keepalives_idle', '10', false), \
                    set_config('tcp_keepalives_interval', '5', false), \
                    set_config('tcp_keepalives_count', '2', false)",
        )
        .execute(&mut connection)
        .await
        .map_err(db)?;
        Ok(Some(Box::new(PgLease { connection })))
    }
}

#[derive(Debug)]
struct PgLease {
    connection: PgConnection,
}

#[async_trait]
impl ProjectionLease for PgLease {
    async fn check(&mut self) -> Result<(), ReadModelError> {
        sqlx::query("SELECT 1")
            .execute(&mut self.connection)
            .await
            .map_err(db)?;
        Ok(())
    }
}
