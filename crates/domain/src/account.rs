//! The Account aggregate: a ledger in one currency whose balance never goes below zero and that,
//! once closed (only at zero balance), accepts nothing more.

use serde::{Deserialize, Serialize};

use crate::event::{DomainEvent, Upcast};
use crate::values::{Amount, Currency, CustomerId, Reference};
use crate::{Aggregate, DomainError, RejectionKind};

/// An opened account, as folded from its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenAccount {
    pub owner_customer_id: CustomerId,
    pub currency: Currency,
    pub balance_cents: i64,
    pub closed: bool,
}

/// The state of an account stream: `None` until `AccountOpened`.
pub type AccountState = Option<OpenAccount>;

/// What can be asked of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all_fields = "camelCase")]
pub enum AccountCommand {
    Open {
        owner_customer_id: CustomerId,
        currency: Currency,
    },
    Deposit {
        amount: Amount,
        reference: Reference,
    },
    Withdraw {
        amount: Amount,
        reference: Reference,
    },
    Close,
}

/// What happened to an account. Stored names and shapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum AccountEvent {
    AccountOpened {
        owner_customer_id: CustomerId,
        currency: Currency,
    },
    MoneyDeposited {
        #[serde(rename = "amountCents")]
        amount: Amount,
        reference: Reference,
    },
    MoneyWithdrawn {
        #[serde(rename = "amountCents")]
        amount: Amount,
        reference: Reference,
    },
    AccountClosed {},
}

impl DomainEvent for AccountEvent {
    const SCHEMA: &'static [(&'static str, u32)] = &[
        ("AccountOpened", 1),
        ("MoneyDeposited", 1),
        ("MoneyWithdrawn", 1),
        ("AccountClosed", 1),
    ];
    const UPCASTERS: &'static [Upcast] = &[];

    fn event_type(&self) -> &'static str {
        match self {
            Self::AccountOpened { .. } => "AccountOpened",
            Self::MoneyDeposited { .. } => "MoneyDeposited",
            Self::MoneyWithdrawn { .. } => "MoneyWithdrawn",
            Self::AccountClosed {} => "AccountClosed",
        }
    }
}

/// Why an account command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("the account is already open")]
    AlreadyOpened,
    #[error("the account does not exist")]
    NotOpened,
    #[error("the account is closed")]
    Closed,
    #[error("insufficient funds: balance {balance_cents}, requested {requested_cents}")]
    InsufficientFunds {
        balance_cents: i64,
        requested_cents: i64,
    },
    #[error("the account can only be closed at zero balance; balance is {0}")]
    BalanceNotZero(i64),
    #[error("the balance would not fit in 64 bits")]
    BalanceOverflow,
}

impl DomainError for AccountError {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::NotOpened => RejectionKind::NotFound,
            Self::BalanceOverflow => RejectionKind::Invalid,
            Self::AlreadyOpened
            | Self::Closed
            | Self::InsufficientFunds { .. }
            | Self::BalanceNotZero(_) => RejectionKind::Conflict,
        }
    }
}

/// The Account aggregate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Account;

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    const STATE_VERSION: u32 = 1;
    type State = AccountState;
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;

    fn decide(
        state: &AccountState,
        command: AccountCommand,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        if let AccountCommand::Open {
            owner_customer_id,
            currency,
        } = command
        {
            return match state {
                Some(_) => Err(AccountError::AlreadyOpened),
                None => Ok(vec![AccountEvent::AccountOpened {
                    owner_customer_id,
                    currency,
                }]),
            };
        }
        let account = state.as_ref().ok_or(AccountError::NotOpened)?;
        if account.closed {
            return Err(AccountError::Closed);
        }
        match command {
            AccountCommand::Open { .. } => Err(AccountError::AlreadyOpened),
            AccountCommand::Deposit { amount, reference } => {
                account
                    .balance_cents
                    .checked_add(amount.cents())
                    .ok_or(AccountError::BalanceOverflow)?;
                Ok(vec![AccountEvent::MoneyDeposited { amount, reference }])
            }
            AccountCommand::Withdraw { amount, reference } => {
                if amount.cents() > account.balance_cents {
                    return Err(AccountError::InsufficientFunds {
                        balance_cents: account.balance_cents,
                        requested_cents: amount.cents(),
                    });
                }
                Ok(vec![AccountEvent::MoneyWithdrawn { amount, reference }])
            }
            AccountCommand::Close => match account.balance_cents {
                0 => Ok(vec![AccountEvent::AccountClosed {}]),
                balance => Err(AccountError::BalanceNotZero(balance)),
            },
        }
    }

    fn evolve(state: AccountState, event: &AccountEvent) -> AccountState {
        if let AccountEvent::AccountOpened {
            owner_customer_id,
            currency,
        } = event
        {
            return Some(OpenAccount {
                owner_customer_id: owner_customer_id.clone(),
                currency: *currency,
                balance_cents: 0,
                closed: false,
            });
        }
        let mut account = state?;
        match event {
            AccountEvent::AccountOpened { .. } => {}
            AccountEvent::MoneyDeposited { amount, .. } => {
                account.balance_cents = account.balance_cents.saturating_add(amount.cents());
            }
            AccountEvent::MoneyWithdrawn { amount, .. } => {
                account.balance_cents = account.balance_cents.saturating_sub(amount.cents());
            }
            AccountEvent::AccountClosed {} => account.closed = true,
        }
        Some(account)
    }

    fn exists(state: &AccountState) -> bool {
        state.is_some()
    }
}
