//! Who may do what: the principal behind a request and the ownership rules of each aggregate.
//!
//! A customer acts only on what they own (anything else reads as "not found", so existence does
//! not leak); an operator acts on everything; an auditor only reads.

use strata_domain::Aggregate;
use strata_domain::account::{Account, AccountCommand, AccountState};
use strata_domain::order::{Order, OrderCommand, OrderState};
use strata_domain::values::CustomerId;

use crate::error::CommandError;

/// The role claimed by an authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Customer,
    Operator,
    Auditor,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The stable user id (the token's subject); scopes idempotency keys.
    pub user_id: String,
    pub role: Role,
    /// The customer a `Customer` acts as; `None` for staff.
    pub customer_id: Option<CustomerId>,
}

impl Principal {
    /// Whether this principal may see an aggregate owned by `owner`.
    pub fn can_read(&self, owner: Option<&CustomerId>) -> bool {
        match self.role {
            Role::Operator | Role::Auditor => true,
            Role::Customer => owner.is_some() && owner == self.customer_id.as_ref(),
        }
    }

    /// Whether this principal may issue commands at all: auditors only read. The HTTP edge asks
    /// before it reads a body, and the command service asks again.
    ///
    /// # Errors
    /// [`CommandError::Forbidden`] for an auditor.
    pub fn may_command(&self) -> Result<(), CommandError> {
        match self.role {
            Role::Auditor => Err(CommandError::Forbidden("auditors may only read".to_owned())),
            Role::Customer | Role::Operator => Ok(()),
        }
    }
}

/// An aggregate whose streams belong to a customer.
pub trait Owned: Aggregate {
    /// The owner recorded in a state (`None` before creation).
    fn owner(state: &Self::State) -> Option<&CustomerId>;

    /// The owner a creation command asks for, if this command creates a stream.
    fn owner_requested(command: &Self::Command) -> Option<&CustomerId>;
}

impl Owned for Order {
    fn owner(state: &OrderState) -> Option<&CustomerId> {
        state.as_ref().map(|o| &o.customer_id)
    }

    fn owner_requested(command: &OrderCommand) -> Option<&CustomerId> {
        match command {
            OrderCommand::PlaceOrder(place) => Some(&place.customer_id),
            _ => None,
        }
    }
}

impl Owned for Account {
    fn owner(state: &AccountState) -> Option<&CustomerId> {
        state.as_ref().map(|a| &a.owner_customer_id)
    }

    fn owner_requested(command: &AccountCommand) -> Option<&CustomerId> {
        match command {
            AccountCommand::Open {
                owner_customer_id, ..
            } => Some(owner_customer_id),
            _ => None,
        }
    }
}
