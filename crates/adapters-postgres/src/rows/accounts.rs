//! The accounts read model on PostgreSQL: accounts and their transaction lines to and from their
//! columns, written by a batch and read by the queries.

use async_trait::async_trait;
use sqlx::Row;
use strata_ports::{
    AccountQueries, AccountRow, AccountRows, Positioned, ProjectionName, ReadModelError,
    TransactionKind, TransactionRow,
};
use uuid::Uuid;

use super::{corrupt, to_i64, to_u64};
use crate::batch::PgBatch;
use crate::checkpoints::db;
use crate::queries::{PgReadModels, positioned};

fn account_of(row: &sqlx::postgres::PgRow) -> Result<AccountRow, ReadModelError> {
    Ok(AccountRow {
        account_id: row.try_get("account_id").map_err(corrupt)?,
        owner_customer_id: row.try_get("owner_customer_id").map_err(corrupt)?,
        currency: row.try_get("currency").map_err(corrupt)?,
        balance_cents: row.try_get("balance_cents").map_err(corrupt)?,
        closed: row.try_get("closed").map_err(corrupt)?,
        transaction_count: to_u64(
            row.try_get("transaction_count").map_err(corrupt)?,
            "transaction count",
        )?,
        opened_at: row.try_get("opened_at").map_err(corrupt)?,
        updated_at: row.try_get("updated_at").map_err(corrupt)?,
        version: to_u64(row.try_get("version").map_err(corrupt)?, "version")?,
    })
}

fn transaction_of(row: &sqlx::postgres::PgRow) -> Result<TransactionRow, ReadModelError> {
    let kind: String = row.try_get("kind").map_err(corrupt)?;
    Ok(TransactionRow {
        account_id: row.try_get("account_id").map_err(corrupt)?,
        version: to_u64(row.try_get("version").map_err(corrupt)?, "version")?,
        global_position: to_u64(row.try_get("global_position").map_err(corrupt)?, "position")?,
        kind: TransactionKind::parse(&kind)
            .ok_or_else(|| ReadModelError::Corrupt(format!("transaction kind {kind:?}")))?,
        amount_cents: row.try_get("amount_cents").map_err(corrupt)?,
        reference: row.try_get("reference").map_err(corrupt)?,
        balance_after_cents: row.try_get("balance_after_cents").map_err(corrupt)?,
        recorded_at: row.try_get("recorded_at").map_err(corrupt)?,
    })
}

const UPSERT_ACCOUNT: &str = "\
    INSERT INTO account_summaries (account_id, owner_customer_id, currency, balance_cents, \
        closed, transaction_count, opened_at, updated_at, version) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
    ON CONFLICT (account_id) DO UPDATE SET \
        owner_customer_id = EXCLUDED.owner_customer_id, currency = EXCLUDED.currency, \
        balance_cents = EXCLUDED.balance_cents, closed = EXCLUDED.closed, \
        transaction_count = EXCLUDED.transaction_count, opened_at = EXCLUDED.opened_at, \
        updated_at = EXCLUDED.updated_at, version = EXCLUDED.version \
    WHERE account_summaries.version < EXCLUDED.version";

const INSERT_TRANSACTION: &str = "\
    INSERT INTO account_transactions (account_id, version, global_position, kind, amount_cents, \
        reference, balance_after_cents, recorded_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (account_id, version) DO NOTHING";

#[async_trait]
impl AccountRows for PgBatch {
    async fn account(&mut self, id: Uuid) -> Result<Option<AccountRow>, ReadModelError> {
        let row = sqlx::query("SELECT * FROM account_summaries WHERE account_id = $1")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)?;
        row.as_ref().map(account_of).transpose()
    }

    async fn put_account(&mut self, row: &AccountRow) -> Result<(), ReadModelError> {
        sqlx::query(UPSERT_ACCOUNT)
            .bind(row.account_id)
            .bind(&row.owner_customer_id)
            .bind(&row.currency)
            .bind(row.balance_cents)
            .bind(row.closed)
            .bind(to_i64(row.transaction_count, "transaction count")?)
            .bind(row.opened_at)
            .bind(row.updated_at)
            .bind(to_i64(row.version, "version")?)
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn add_transaction(&mut self, row: &TransactionRow) -> Result<(), ReadModelError> {
        sqlx::query(INSERT_TRANSACTION)
            .bind(row.account_id)
            .bind(to_i64(row.version, "version")?)
            .bind(to_i64(row.global_position, "position")?)
            .bind(row.kind.as_str())
            .bind(row.amount_cents)
            .bind(&row.reference)
            .bind(row.balance_after_cents)
            .bind(row.recorded_at)
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[async_trait]
impl AccountQueries for PgReadModels {
    async fn account(&self, id: Uuid) -> Result<Positioned<Option<AccountRow>>, ReadModelError> {
        positioned(self, ProjectionName::Accounts, async {
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
        positioned(self, ProjectionName::Accounts, async {
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
}
