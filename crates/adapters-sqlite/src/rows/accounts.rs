//! The accounts read model on SQLite: accounts and their transaction lines to and from their
//! columns, written by a batch and read by the queries.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use strata_ports::{
    AccountQueries, AccountRow, AccountRows, Positioned, ProjectionName, ReadModelError,
    TransactionKind, TransactionRow,
};
use uuid::Uuid;

use super::{corrupt, count, id, instant, int, text, to_i64};
use crate::batch::SqliteBatch;
use crate::checkpoints::db;
use crate::codec::{self, micros};
use crate::queries::SqliteReadModels;

fn account_of(row: &SqliteRow) -> Result<AccountRow, ReadModelError> {
    Ok(AccountRow {
        account_id: id(row, "account_id")?,
        owner_customer_id: text(row, "owner_customer_id")?,
        currency: text(row, "currency")?,
        balance_cents: int(row, "balance_cents")?,
        closed: int(row, "closed")? != 0,
        transaction_count: count(row, "transaction_count")?,
        opened_at: instant(row, "opened_at")?,
        updated_at: instant(row, "updated_at")?,
        version: count(row, "version")?,
    })
}

fn transaction_of(row: &SqliteRow) -> Result<TransactionRow, ReadModelError> {
    let kind = text(row, "kind")?;
    Ok(TransactionRow {
        account_id: id(row, "account_id")?,
        version: count(row, "version")?,
        global_position: count(row, "global_position")?,
        kind: TransactionKind::parse(&kind)
            .ok_or_else(|| corrupt(format!("transaction kind {kind:?}")))?,
        amount_cents: int(row, "amount_cents")?,
        reference: text(row, "reference")?,
        balance_after_cents: int(row, "balance_after_cents")?,
        recorded_at: instant(row, "recorded_at")?,
    })
}

const UPSERT_ACCOUNT: &str = "\
    INSERT INTO {p}account_summaries (account_id, owner_customer_id, currency, balance_cents, \
        closed, transaction_count, opened_at, updated_at, version) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
    ON CONFLICT (account_id) DO UPDATE SET \
        owner_customer_id = excluded.owner_customer_id, currency = excluded.currency, \
        balance_cents = excluded.balance_cents, closed = excluded.closed, \
        transaction_count = excluded.transaction_count, opened_at = excluded.opened_at, \
        updated_at = excluded.updated_at, version = excluded.version \
    WHERE {p}account_summaries.version < excluded.version";

const INSERT_TRANSACTION: &str = "\
    INSERT INTO {p}account_transactions (account_id, version, global_position, kind, \
        amount_cents, reference, balance_after_cents, recorded_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
    ON CONFLICT (account_id, version) DO NOTHING";

#[async_trait]
impl AccountRows for SqliteBatch {
    async fn account(&mut self, id: Uuid) -> Result<Option<AccountRow>, ReadModelError> {
        let sql = self.sql("SELECT * FROM {p}account_summaries WHERE account_id = ?1");
        let row = sqlx::query(sql)
            .bind(codec::text_id(id))
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(db)?;
        row.as_ref().map(account_of).transpose()
    }

    async fn put_account(&mut self, row: &AccountRow) -> Result<(), ReadModelError> {
        let sql = self.sql(UPSERT_ACCOUNT);
        sqlx::query(sql)
            .bind(codec::text_id(row.account_id))
            .bind(&row.owner_customer_id)
            .bind(&row.currency)
            .bind(row.balance_cents)
            .bind(i64::from(row.closed))
            .bind(to_i64(row.transaction_count, "transaction count")?)
            .bind(micros(row.opened_at))
            .bind(micros(row.updated_at))
            .bind(to_i64(row.version, "version")?)
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn add_transaction(&mut self, row: &TransactionRow) -> Result<(), ReadModelError> {
        let sql = self.sql(INSERT_TRANSACTION);
        sqlx::query(sql)
            .bind(codec::text_id(row.account_id))
            .bind(to_i64(row.version, "version")?)
            .bind(to_i64(row.global_position, "position")?)
            .bind(row.kind.as_str())
            .bind(row.amount_cents)
            .bind(&row.reference)
            .bind(row.balance_after_cents)
            .bind(micros(row.recorded_at))
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[async_trait]
impl AccountQueries for SqliteReadModels {
    async fn account(&self, id: Uuid) -> Result<Positioned<Option<AccountRow>>, ReadModelError> {
        self.positioned(ProjectionName::Accounts, async {
            let row = sqlx::query("SELECT * FROM account_summaries WHERE account_id = ?1")
                .bind(codec::text_id(id))
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
            rows.iter().map(transaction_of).collect()
        })
        .await
    }
}
