//! Rules of the Account aggregate, one test per rule, as given(events) / when(command) / then(...).

mod support;

use strata_domain::account::{Account, AccountCommand, AccountError, AccountEvent, AccountState};
use strata_domain::{Aggregate, DomainError, RejectionKind};

use support::fixtures::{customer, deposit, deposited, eur, open, opened, withdraw, withdrawn};
use support::{given, given_no_events};

/// The balance of an opened account; fails the test if it was never opened.
#[track_caller]
fn balance(state: &AccountState) -> i64 {
    match state {
        Some(account) => account.balance_cents,
        None => panic!("expected an opened account, found none"),
    }
}

#[track_caller]
fn is_closed(state: &AccountState) -> bool {
    match state {
        Some(account) => account.closed,
        None => panic!("expected an opened account, found none"),
    }
}

fn closed_account() -> Vec<AccountEvent> {
    vec![opened(), AccountEvent::AccountClosed {}]
}

// Opening.

#[test]
fn an_account_does_not_exist_before_it_is_opened() {
    let history = given_no_events::<Account>();
    assert_eq!(history.state(), &None);
    assert!(!Account::exists(history.state()));
}

#[test]
fn opening_an_account_starts_it_open_at_zero_balance() {
    let state = given_no_events::<Account>()
        .when(open())
        .then_expect_events(vec![opened()]);

    let account = state.clone().unwrap();
    assert_eq!(account.owner_customer_id, customer());
    assert_eq!(account.currency, eur());
    assert_eq!(balance(&state), 0);
    assert!(!is_closed(&state));
}

#[test]
fn opening_an_account_twice_is_rejected() {
    given::<Account>([opened()])
        .when(open())
        .then_expect_error(AccountError::AlreadyOpened);
}

#[test]
fn reopening_a_closed_account_is_rejected_as_already_opened() {
    given::<Account>(closed_account())
        .when(open())
        .then_expect_error(AccountError::AlreadyOpened);
}

#[test]
fn every_command_on_an_account_that_was_never_opened_is_rejected_as_not_opened() {
    for command in [deposit(100), withdraw(100), AccountCommand::Close] {
        given_no_events::<Account>()
            .when(command)
            .then_expect_error(AccountError::NotOpened);
    }
}

// Moving money.

#[test]
fn depositing_raises_the_balance_by_the_amount() {
    let state = given::<Account>([opened(), deposited(250)])
        .when(deposit(100))
        .then_expect_events(vec![deposited(100)]);
    assert_eq!(balance(&state), 350);
}

#[test]
fn withdrawing_less_than_the_balance_lowers_it_by_the_amount() {
    let state = given::<Account>([opened(), deposited(1000)])
        .when(withdraw(999))
        .then_expect_events(vec![withdrawn(999)]);
    assert_eq!(balance(&state), 1);
}

#[test]
fn withdrawing_exactly_the_balance_leaves_zero() {
    let state = given::<Account>([opened(), deposited(1000)])
        .when(withdraw(1000))
        .then_expect_events(vec![withdrawn(1000)]);
    assert_eq!(balance(&state), 0);
}

#[test]
fn withdrawing_one_cent_more_than_the_balance_is_rejected() {
    given::<Account>([opened(), deposited(1000)])
        .when(withdraw(1001))
        .then_expect_error(AccountError::InsufficientFunds {
            balance_cents: 1000,
            requested_cents: 1001,
        });
}

#[test]
fn withdrawing_from_an_empty_account_is_rejected() {
    given::<Account>([opened()])
        .when(withdraw(1))
        .then_expect_error(AccountError::InsufficientFunds {
            balance_cents: 0,
            requested_cents: 1,
        });
}

#[test]
fn the_balance_is_deposits_minus_withdrawals_to_the_cent() {
    let history = given::<Account>([
        opened(),
        deposited(10_000),
        withdrawn(3_333),
        deposited(1),
        withdrawn(6_667),
        deposited(42),
    ]);
    assert_eq!(balance(history.state()), 10_000 - 3_333 + 1 - 6_667 + 42);
}

#[test]
fn a_deposit_that_would_push_the_balance_beyond_64_bits_is_rejected() {
    given::<Account>([opened(), deposited(i64::MAX)])
        .when(deposit(1))
        .then_expect_error(AccountError::BalanceOverflow);
}

#[test]
fn a_deposit_up_to_exactly_the_largest_64_bit_balance_is_accepted() {
    let state = given::<Account>([opened(), deposited(i64::MAX - 1)])
        .when(deposit(1))
        .then_expect_events(vec![deposited(1)]);
    assert_eq!(balance(&state), i64::MAX);
}

// Closing.

#[test]
fn closing_an_account_at_zero_balance_closes_it() {
    let state = given::<Account>([opened(), deposited(500), withdrawn(500)])
        .when(AccountCommand::Close)
        .then_expect_events(vec![AccountEvent::AccountClosed {}]);
    assert!(is_closed(&state));
    assert_eq!(balance(&state), 0);
}

#[test]
fn closing_an_account_that_still_holds_money_is_rejected() {
    given::<Account>([opened(), deposited(500), withdrawn(499)])
        .when(AccountCommand::Close)
        .then_expect_error(AccountError::BalanceNotZero(1));
}

#[test]
fn depositing_into_a_closed_account_is_rejected() {
    given::<Account>(closed_account())
        .when(deposit(100))
        .then_expect_error(AccountError::Closed);
}

#[test]
fn withdrawing_from_a_closed_account_is_rejected() {
    given::<Account>(closed_account())
        .when(withdraw(1))
        .then_expect_error(AccountError::Closed);
}

#[test]
fn closing_a_closed_account_is_rejected() {
    given::<Account>(closed_account())
        .when(AccountCommand::Close)
        .then_expect_error(AccountError::Closed);
}

// How the layers above read a rejection.

#[test]
fn a_command_on_a_missing_account_is_a_not_found_rejection() {
    given_no_events::<Account>()
        .when(deposit(1))
        .then_expect_error_of_kind(AccountError::NotOpened, RejectionKind::NotFound);
}

#[test]
fn a_balance_overflow_is_an_invalid_rejection() {
    given::<Account>([opened(), deposited(i64::MAX)])
        .when(deposit(i64::MAX))
        .then_expect_error_of_kind(AccountError::BalanceOverflow, RejectionKind::Invalid);
}

#[test]
fn commands_the_account_state_forbids_are_conflict_rejections() {
    for error in [
        AccountError::AlreadyOpened,
        AccountError::Closed,
        AccountError::InsufficientFunds {
            balance_cents: 0,
            requested_cents: 1,
        },
        AccountError::BalanceNotZero(1),
    ] {
        assert_eq!(error.kind(), RejectionKind::Conflict, "{error:?}");
    }
}
