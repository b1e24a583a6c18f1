//! `SqliteReadModels`: the read side's queries. Each answer carries the projection's checkpoint,
//! read just before the rows: the rows reflect at least that position (they commit together,
//! and are read later).

use async_trait::async_trait;
use sqlx::SqlitePool;
use strata_ports::limits::{MAX_LOOKUP_BYTES, check_text};
use strata_ports::{
    AccountRow, CheckpointRow, CustomerStatsRow, OrderSummaryRow, Positioned, ProjectionName,
    ReadModelError, ReadModels, TransactionRow,
};
use uuid::Uuid;

use crate::codec;
use crate::projection_store::{checkpoint_of, db};
use crate::rows::{self, to_i64};

/// The read models' queries on a SQLite pool.
#[derive(Debug, Clone)]
pub struct SqliteReadModels {
    pool: SqlitePool,
}

impl SqliteReadModels {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    async fn checkpoint(&self, projection: ProjectionName) -> Result<u64, ReadModelError> {
        Ok(checkpoint_of(&self.pool, projection.as_str())
            .await?
            .unwrap_or(0))
    }

    async fn positioned<T>(
        &self,
        projection: ProjectionName,
        rows: impl std::future::Future<Output = Result<T, ReadModelError>>,
    ) -> Result<Positioned<T>, ReadModelError> {
        let position = self.checkpoint(projection).await?;
        Ok(Positioned {
            value: rows.await?,
            position,
        })
    }
}

#[async_trait]
impl ReadModels for SqliteReadModels {
    async fn order_summary(
        &self,
        id: Uuid,
    ) -> Result<Positioned<Option<OrderSummaryRow>>, ReadModelError> {
        self.positioned(ProjectionName::Orders, async {
            let row = sqlx::query("SELECT * FROM order_summaries WHERE order_id = ?1")
                .bind(codec::text_id(id))
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.as_ref().map(rows::order_of).transpose()
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
        self.positioned(ProjectionName::Orders, async {
            let rows = sqlx::query(
                "SELECT * FROM order_summaries WHERE customer_id = ?1 AND placed_position < ?2 \
                 ORDER BY placed_position DESC LIMIT ?3",
            )
            .bind(customer_id)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.iter().map(rows::order_of).collect()
        })
        .await
    }

    async fn customer_stats(
        &self,
        customer_id: &str,
    ) -> Result<Positioned<Option<CustomerStatsRow>>, ReadModelError> {
        check_text("customer id", customer_id, MAX_LOOKUP_BYTES)?;
        self.positioned(ProjectionName::Orders, async {
            let row = sqlx::query("SELECT * FROM customer_stats WHERE customer_id = ?1")
                .bind(customer_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.as_ref().map(rows::stats_of).transpose()
        })
        .await
    }

    async fn account(&self, id: Uuid) -> Result<Positioned<Option<AccountRow>>, ReadModelError> {
        self.positioned(ProjectionName::Accounts, async {
            let row = sqlx::query("SELECT * FROM account_summaries WHERE account_id = ?1")
                .bind(codec::text_id(id))
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.as_ref().map(rows::account_of).transpose()
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
        self.positioned(ProjectionName::Accounts, async {
            let rows = sqlx::query(
                "SELECT * FROM account_transactions WHERE account_id = ?1 AND version > ?2 \
                 ORDER BY version LIMIT ?3",
            )
            .bind(codec::text_id(id))
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.iter().map(rows::transaction_of).collect()
        })
        .await
    }

    async fn position(&self, projection: ProjectionName) -> Result<u64, ReadModelError> {
        self.checkpoint(projection).await
    }

    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, ReadModelError> {
        let rows = sqlx::query(
            "SELECT c.projection, c.position, c.updated_at, c.state, c.state_updated_at, \
                    (SELECT e.recorded_at FROM events e WHERE e.global_position = c.position) \
                        AS position_recorded_at, \
                    (SELECT count(*) FROM projection_dead_letters d \
                      WHERE d.projection = c.projection) AS dead_letters \
             FROM projection_checkpoints c ORDER BY c.projection",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::checkpoint_row_of).collect()
    }

    async fn oldest_open_transaction_age(&self) -> Result<Option<f64>, ReadModelError> {
        // SQLite keeps no record of other connections' transactions. A long one cannot hold
        // readers back here anyway: positions follow commit order without a visibility horizon.
        Ok(None)
    }
}
