//! `PgReadModels`: the read side's queries on PostgreSQL. Each answer carries the projection's
//! checkpoint, read just before the rows: the rows reflect at least that position (they commit
//! together, and are read later).

use async_trait::async_trait;
use sqlx::{PgPool, Row};
use strata_ports::limits::{MAX_LOOKUP_BYTES, check_text};
use strata_ports::{
    AccountRow, CheckpointRow, CustomerStatsRow, OrderSummaryRow, Positioned, ReadModelError,
    ReadModels, TransactionRow,
};
use uuid::Uuid;

use crate::projections::db;
use crate::rows::{account_of, corrupt, order_of, stats_of, to_i64, to_u64, transaction_of};

/// The read models' queries on a PostgreSQL pool.
#[derive(Debug, Clone)]
pub struct PgReadModels {
    pool: PgPool,
}

impl PgReadModels {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn checkpoint(&self, projection: &str) -> Result<u64, ReadModelError> {
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM public.projection_checkpoints WHERE projection = $1",
        )
        .bind(projection)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        to_u64(position.unwrap_or(0), "checkpoint")
    }
}

/// A query's rows with the checkpoint read just before them: the rows reflect at least that
/// position (the checkpoint and the rows commit together, and the rows are read later).
async fn positioned<T>(
    models: &PgReadModels,
    projection: &str,
    rows: impl std::future::Future<Output = Result<T, ReadModelError>>,
) -> Result<Positioned<T>, ReadModelError> {
    let position = models.checkpoint(projection).await?;
    Ok(Positioned {
        value: rows.await?,
        position,
    })
}

#[async_trait]
impl ReadModels for PgReadModels {
    async fn order_summary(
        &self,
        id: Uuid,
    ) -> Result<Positioned<Option<OrderSummaryRow>>, ReadModelError> {
        positioned(self, "orders", async {
            let row = sqlx::query("SELECT * FROM order_summaries WHERE order_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.as_ref().map(order_of).transpose()
        })
        .await
    }

    async fn customer_orders(
        &self,
        customer_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Positioned<Vec<OrderSummaryRow>>, ReadModelError> {
        let before = match before {
            Some(position) => to_i64(position, "cursor")?,
            None => i64::MAX,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        check_text("customer id", customer_id, MAX_LOOKUP_BYTES)?;
        positioned(self, "orders", async {
            let rows = sqlx::query(
                "SELECT * FROM order_summaries WHERE customer_id = $1 AND placed_position < $2 \
                 ORDER BY placed_position DESC LIMIT $3",
            )
            .bind(customer_id)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.iter().map(order_of).collect()
        })
        .await
    }

    async fn customer_stats(
        &self,
        customer_id: &str,
    ) -> Result<Positioned<Option<CustomerStatsRow>>, ReadModelError> {
        check_text("customer id", customer_id, MAX_LOOKUP_BYTES)?;
        positioned(self, "orders", async {
            let row = sqlx::query("SELECT * FROM customer_stats WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.as_ref().map(stats_of).transpose()
        })
        .await
    }

    async fn account(&self, id: Uuid) -> Result<Positioned<Option<AccountRow>>, ReadModelError> {
        positioned(self, "accounts", async {
            let row = sqlx::query("SELECT * FROM account_summaries WHERE account_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.as_ref().map(account_of).transpose()
        })
        .await
    }

    async fn account_transactions(
        &self,
        id: Uuid,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Positioned<Vec<TransactionRow>>, ReadModelError> {
        let after = to_i64(after.unwrap_or(0), "cursor")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        positioned(self, "accounts", async {
            let rows = sqlx::query(
                "SELECT * FROM account_transactions WHERE account_id = $1 AND version > $2 \
                 ORDER BY version LIMIT $3",
            )
            .bind(id)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.iter().map(transaction_of).collect()
        })
        .await
    }

    async fn position(&self, projection: &str) -> Result<u64, ReadModelError> {
        self.checkpoint(projection).await
    }

    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, ReadModelError> {
        let rows = sqlx::query(
            "SELECT c.projection, c.position, c.updated_at, c.state, c.state_updated_at, \
                    (SELECT e.recorded_at FROM events e WHERE e.global_position = c.position) \
                        AS position_recorded_at, \
                    (SELECT count(*) FROM public.projection_dead_letters d \
                      WHERE d.projection = c.projection) AS dead_letters \
             FROM public.projection_checkpoints c ORDER BY c.projection",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                Ok(CheckpointRow {
                    projection: row.try_get("projection").map_err(corrupt)?,
                    position: to_u64(row.try_get("position").map_err(corrupt)?, "checkpoint")?,
                    updated_at: row.try_get("updated_at").map_err(corrupt)?,
                    position_recorded_at: row.try_get("position_recorded_at").map_err(corrupt)?,
                    dead_letters: to_u64(row.try_get("dead_letters").map_err(corrupt)?, "count")?,
                    state: row.try_get("state").map_err(corrupt)?,
                    state_updated_at: row.try_get("state_updated_at").map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn oldest_open_transaction_age(&self) -> Result<Option<f64>, ReadModelError> {
        sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM (now() - min(xact_start)))::float8 \
             FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() \
             AND datname = current_database()",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }
}
