//! Projection `accounts`: the balance of each account and its transaction list with the running
//! balance, both guarded by the account row's stream version.

use async_trait::async_trait;
use strata_domain::Aggregate;
use strata_domain::account::{Account, AccountEvent};
use strata_ports::{
    AccountRow, ProjectionBatch, ProjectionName, RecordedEvent, TransactionKind, TransactionRow,
};
use uuid::Uuid;

use super::{HandlerError, Projection};
use crate::rehydrate::decode;

/// Account balances and transaction lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountsProjection;

#[async_trait]
impl Projection for AccountsProjection {
    fn name(&self) -> ProjectionName {
        ProjectionName::Accounts
    }

    fn handles(&self, category: &str) -> bool {
        category == Account::CATEGORY
    }

    async fn apply(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        let decoded: AccountEvent =
            decode::<Account>(event).map_err(|e| HandlerError::Rejected(e.to_string()))?;
        let id = event.stream_id.id();
        let current = batch.account(id).await?;
        if !super::is_next("account", current.as_ref().map(|row| row.version), event)? {
            return Ok(()); // applied before: nothing changes
        }
        let mut row = match (current, &decoded) {
            (
                None,
                AccountEvent::AccountOpened {
                    owner_customer_id,
                    currency,
                },
            ) => AccountRow {
                account_id: id,
                owner_customer_id: owner_customer_id.as_str().to_owned(),
                currency: currency.as_str().to_owned(),
                balance_cents: 0,
                closed: false,
                transaction_count: 0,
                opened_at: event.recorded_at,
                updated_at: event.recorded_at,
                version: 0,
            },
            (Some(row), _) => row,
            (None, _) => {
                return Err(HandlerError::Rejected(format!(
                    "account {id}: {} before AccountOpened",
                    event.event_type
                )));
            }
        };
        let movement = match &decoded {
            AccountEvent::AccountOpened { .. } => None,
            AccountEvent::MoneyDeposited { amount, reference } => {
                row.balance_cents = checked(id, row.balance_cents.checked_add(amount.cents()))?;
                Some((TransactionKind::Deposit, amount.cents(), reference))
            }
            AccountEvent::MoneyWithdrawn { amount, reference } => {
                row.balance_cents = checked(id, row.balance_cents.checked_sub(amount.cents()))?;
                Some((TransactionKind::Withdrawal, amount.cents(), reference))
            }
            AccountEvent::AccountClosed {} => {
                row.closed = true;
                None
            }
        };
        if let Some((kind, amount_cents, reference)) = movement {
            row.transaction_count += 1;
            batch
                .add_transaction(&TransactionRow {
                    account_id: id,
                    version: event.stream_version,
                    global_position: event.global_position,
                    kind,
                    amount_cents,
                    reference: reference.as_str().to_owned(),
                    balance_after_cents: row.balance_cents,
                    recorded_at: event.recorded_at,
                })
                .await?;
        }
        row.version = event.stream_version;
        row.updated_at = event.recorded_at;
        batch.put_account(&row).await?;
        Ok(())
    }

    async fn skip(
        &self,
        batch: &mut dyn ProjectionBatch,
        event: &RecordedEvent,
    ) -> Result<(), HandlerError> {
        super::orders::skip_version!(batch, event, account, put_account)
    }
}

/// A balance that cannot be represented is refused (the event is parked), never saturated: the
/// domain refuses such a deposit, so only data written around it gets here.
fn checked(id: Uuid, balance: Option<i64>) -> Result<i64, HandlerError> {
    balance.ok_or_else(|| {
        HandlerError::Rejected(format!("account {id}: the balance does not fit in 64 bits"))
    })
}
