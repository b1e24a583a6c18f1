//! Property tests: arbitrary command sequences against both aggregates, checking after every step
//! the invariants the rules promise, a small independent model of the rules, that state is a pure
//! fold of the accepted events, and that every accepted event reads back as written.

mod support;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use strata_domain::account::{Account, AccountCommand, AccountEvent, AccountState};
use strata_domain::order::{LineItem, Order, OrderCommand, OrderEvent, OrderState, OrderStatus};
use strata_domain::values::Quantity;
use strata_domain::{Aggregate, DomainEvent};

use support::fixtures::{deposit, line, open, place, product, reason, tracking, withdraw};

use OrderStatus::{Cancelled, Confirmed, Delivered, Pending, Shipped};

// Few products and prices, so merges, mismatches and duplicates happen often; the huge price
// makes a 64-bit total overflow reachable in a handful of steps.
static PRODUCTS: &[&str] = &["apple", "pear", "plum"];
static PRICES: &[i64] = &[0, 1, 333, 1_000, i64::MAX / 4];

/// Every status change an accepted command may cause; `None` is "not placed yet".
const LIFECYCLE: &[(Option<OrderStatus>, OrderStatus)] = &[
    (None, Pending),
    (Some(Pending), Pending),
    (Some(Pending), Confirmed),
    (Some(Pending), Cancelled),
    (Some(Confirmed), Shipped),
    (Some(Confirmed), Cancelled),
    (Some(Shipped), Delivered),
];

fn line_item() -> impl Strategy<Value = LineItem> {
    (select(PRODUCTS), 1u32..=4, select(PRICES))
        .prop_map(|(product_id, quantity, price)| line(product_id, quantity, price))
}

fn order_command() -> impl Strategy<Value = OrderCommand> {
    prop_oneof![
        2 => vec(line_item(), 0..=3).prop_map(place),
        4 => line_item().prop_map(OrderCommand::AddItem),
        2 => select(PRODUCTS).prop_map(|id| OrderCommand::RemoveItem { product_id: product(id) }),
        2 => Just(OrderCommand::Confirm),
        2 => Just(OrderCommand::Ship { tracking_number: tracking("T-1") }),
        2 => Just(OrderCommand::Deliver),
        1 => Just(OrderCommand::Cancel { reason: reason("changed my mind") }),
    ]
}

/// Amounts from a small pool (so balances return to zero and closing succeeds), from a wider
/// range (so withdrawals overdraw), and one huge value (so balances can overflow).
fn amount_cents() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => select(&[1_i64, 2, 5, 10][..]),
        2 => 1_i64..=100,
        1 => Just(i64::MAX / 2),
    ]
}

fn account_command() -> impl Strategy<Value = AccountCommand> {
    prop_oneof![
        1 => Just(open()),
        4 => amount_cents().prop_map(deposit),
        4 => amount_cents().prop_map(withdraw),
        2 => Just(AccountCommand::Close),
    ]
}

/// One command of a generated history: the state it met, the answer, and the state after.
struct Step<A: Aggregate> {
    before: A::State,
    command: A::Command,
    result: Result<Vec<A::Event>, A::Error>,
    after: A::State,
}

/// Judges each command in turn, folding the events of those accepted.
fn replay<A: Aggregate>(commands: &[A::Command]) -> Vec<Step<A>>
where
    A::Command: Clone,
{
    let mut state = A::State::default();
    commands
        .iter()
        .map(|command| {
            let before = state.clone();
            let result = A::decide(&before, command.clone());
            if let Ok(events) = &result {
                state = A::fold(state.clone(), events);
            }
            Step {
                before,
                command: command.clone(),
                result,
                after: state.clone(),
            }
        })
        .collect()
}

fn accepted_events<A: Aggregate>(steps: &[Step<A>]) -> Vec<A::Event> {
    steps
        .iter()
        .filter_map(|step| step.result.as_ref().ok())
        .flatten()
        .cloned()
        .collect()
}

/// Σ quantity × unit price in 128 bits, so it cannot overflow where the code under test might.
fn exact_total(lines: &[LineItem]) -> i128 {
    lines
        .iter()
        .map(|l| i128::from(l.quantity.get()) * i128::from(l.unit_price.cents()))
        .sum()
}

/// What an order should be, kept apart from the aggregate and moved by the written rules.
#[derive(Debug, Clone, PartialEq, Default)]
struct OrderModel {
    status: Option<OrderStatus>,
    lines: Vec<LineItem>,
}

impl OrderModel {
    fn of(state: &OrderState) -> Self {
        Self {
            status: state.as_ref().map(|o| o.status),
            lines: state.as_ref().map(|o| o.items.clone()).unwrap_or_default(),
        }
    }

    /// The model after `command`, or `None` when the rules refuse it.
    fn after(&self, command: &OrderCommand) -> Option<Self> {
        let fits = |lines: &[LineItem]| exact_total(lines) <= i128::from(i64::MAX);
        let mut next = self.clone();
        match (self.status, command) {
            (None, OrderCommand::PlaceOrder(order)) => {
                let items = &order.items;
                let distinct = items.iter().enumerate().all(|(index, item)| {
                    items[..index]
                        .iter()
                        .all(|i| i.product_id != item.product_id)
                });
                if items.is_empty() || !distinct || !fits(items) {
                    return None;
                }
                next.status = Some(Pending);
                next.lines.clone_from(items);
            }
            (Some(Pending), OrderCommand::AddItem(item)) => {
                match next
                    .lines
                    .iter_mut()
                    .find(|l| l.product_id == item.product_id)
                {
                    Some(l) if l.unit_price == item.unit_price => {
                        let merged = l.quantity.get().checked_add(item.quantity.get())?;
                        l.quantity = Quantity::new(merged).ok()?;
                    }
                    Some(_) => return None,
                    None => next.lines.push(item.clone()),
                }
                if !fits(&next.lines) {
                    return None;
                }
            }
            (Some(Pending), OrderCommand::RemoveItem { product_id }) => {
                let count = next.lines.len();
                next.lines.retain(|l| &l.product_id != product_id);
                if next.lines.len() == count || next.lines.is_empty() {
                    return None;
                }
            }
            (Some(Pending), OrderCommand::Confirm) => next.status = Some(Confirmed),
            (Some(Confirmed), OrderCommand::Ship { .. }) => next.status = Some(Shipped),
            (Some(Shipped), OrderCommand::Deliver) => next.status = Some(Delivered),
            (Some(Pending | Confirmed), OrderCommand::Cancel { .. }) => {
                next.status = Some(Cancelled);
            }
            _ => return None,
        }
        Some(next)
    }
}

/// What an account should be, kept apart from the aggregate and moved by the written rules.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct AccountModel {
    opened: bool,
    closed: bool,
    balance: i128,
}

impl AccountModel {
    fn of(state: &AccountState) -> Self {
        state.as_ref().map_or_else(Self::default, |a| Self {
            opened: true,
            closed: a.closed,
            balance: i128::from(a.balance_cents),
        })
    }

    /// The model after `command`, or `None` when the rules refuse it.
    fn after(self, command: &AccountCommand) -> Option<Self> {
        match command {
            AccountCommand::Open { .. } => (!self.opened).then_some(Self {
                opened: true,
                ..self
            }),
            _ if !self.opened || self.closed => None,
            AccountCommand::Deposit { amount, .. } => {
                let balance = self.balance + i128::from(amount.cents());
                (balance <= i128::from(i64::MAX)).then_some(Self { balance, ..self })
            }
            AccountCommand::Withdraw { amount, .. } => {
                let balance = self.balance - i128::from(amount.cents());
                (balance >= 0).then_some(Self { balance, ..self })
            }
            AccountCommand::Close => (self.balance == 0).then_some(Self {
                closed: true,
                ..self
            }),
        }
    }
}

/// The name of an enum variant from its `Debug` form (`CannotShip(Pending)` → `CannotShip`).
fn variant_name(value: &impl std::fmt::Debug) -> String {
    format!("{value:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

/// What one order step showed: the error it met, or the status it reached (and whether it merged).
fn order_outcome(step: &Step<Order>) -> String {
    match (&step.result, &step.after, &step.command) {
        (Err(error), _, _) => variant_name(error),
        (Ok(_), _, OrderCommand::AddItem(item))
            if step
                .before
                .as_ref()
                .is_some_and(|o| o.items.iter().any(|i| i.product_id == item.product_id)) =>
        {
            "merged".to_owned()
        }
        (Ok(_), after, _) => format!(
            "reached {}",
            after.as_ref().map_or("nothing", |o| o.status.as_str())
        ),
    }
}

/// What one account step showed: the error it met, or whether the account is open or closed.
fn account_outcome(step: &Step<Account>) -> String {
    match (&step.result, &step.after) {
        (Err(error), _) => variant_name(error),
        (Ok(_), Some(account)) if account.closed => "reached closed".to_owned(),
        (Ok(_), _) => "reached open".to_owned(),
    }
}

/// A property over histories that never reach a rule proves nothing about it, so this checks
/// that the generators, run deterministically, reach every status, every error and a merge.
#[test]
fn the_generated_histories_reach_every_rule() {
    use std::collections::BTreeSet;

    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut orders = BTreeSet::new();
    let mut accounts = BTreeSet::new();
    for _ in 0..512 {
        let commands = vec(order_command(), 1..60)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        orders.extend(replay::<Order>(&commands).iter().map(order_outcome));
        let commands = vec(account_command(), 1..60)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        accounts.extend(replay::<Account>(&commands).iter().map(account_outcome));
    }

    let expected_orders = [
        "reached PENDING",
        "reached CONFIRMED",
        "reached SHIPPED",
        "reached DELIVERED",
        "reached CANCELLED",
        "merged",
        "AlreadyPlaced",
        "NotPlaced",
        "NoItems",
        "DuplicateProduct",
        "TotalOverflow",
        "CannotChangeItems",
        "ItemNotInOrder",
        "CannotRemoveLastItem",
        "PriceMismatch",
        "CannotConfirm",
        "CannotShip",
        "CannotDeliver",
        "CannotCancel",
    ];
    let expected_accounts = [
        "reached open",
        "reached closed",
        "AlreadyOpened",
        "NotOpened",
        "Closed",
        "InsufficientFunds",
        "BalanceNotZero",
        "BalanceOverflow",
    ];
    assert_eq!(orders, expected_orders.map(str::to_owned).into());
    assert_eq!(accounts, expected_accounts.map(str::to_owned).into());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn an_order_total_is_always_the_exact_sum_of_its_lines(
        commands in vec(order_command(), 1..60),
    ) {
        for step in replay::<Order>(&commands) {
            if let Some(order) = &step.after {
                prop_assert_eq!(i128::from(order.total_cents), exact_total(&order.items));
            }
        }
    }

    #[test]
    fn a_placed_order_always_has_items(commands in vec(order_command(), 1..60)) {
        for step in replay::<Order>(&commands) {
            if let Some(order) = &step.after {
                prop_assert!(!order.items.is_empty(), "after {:?}", step.command);
            }
        }
    }

    #[test]
    fn nothing_is_accepted_once_an_order_is_delivered_or_cancelled(
        commands in vec(order_command(), 1..60),
    ) {
        for step in replay::<Order>(&commands) {
            if step.before.as_ref().is_some_and(|o| o.status.is_terminal()) {
                prop_assert!(step.result.is_err(), "{:?} was accepted", step.command);
                prop_assert_eq!(&step.after, &step.before);
            }
        }
    }

    #[test]
    fn an_order_status_only_moves_along_the_lifecycle(commands in vec(order_command(), 1..60)) {
        for step in replay::<Order>(&commands) {
            let from = step.before.as_ref().map(|o| o.status);
            let to = step.after.as_ref().map(|o| o.status);
            if step.result.is_ok() {
                let edge = to.map(|to| (from, to));
                prop_assert!(
                    edge.is_some_and(|edge| LIFECYCLE.contains(&edge)),
                    "{:?} moved the order from {:?} to {:?}", step.command, from, to
                );
            }
            if let Some(order) = &step.after {
                let shipped = matches!(order.status, Shipped | Delivered);
                prop_assert_eq!(order.tracking_number.is_some(), shipped);
                prop_assert_eq!(order.cancellation_reason.is_some(), order.status == Cancelled);
            }
        }
    }

    #[test]
    fn the_order_accepts_exactly_what_the_rules_allow(commands in vec(order_command(), 1..60)) {
        let mut model = OrderModel::default();
        for step in replay::<Order>(&commands) {
            let expected = model.after(&step.command);
            prop_assert_eq!(
                step.result.is_ok(), expected.is_some(),
                "{:?} on {:?} gave {:?}", step.command, step.before, step.result
            );
            if let Some(next) = expected {
                model = next;
            }
            prop_assert_eq!(OrderModel::of(&step.after), model.clone());
        }
    }

    #[test]
    fn an_order_state_is_a_pure_fold_of_its_events(commands in vec(order_command(), 1..60)) {
        let steps = replay::<Order>(&commands);
        let step_by_step = steps.last().map(|s| s.after.clone()).unwrap_or_default();
        let all_at_once = Order::fold(OrderState::default(), &accepted_events(&steps));
        prop_assert_eq!(all_at_once, step_by_step);
    }

    #[test]
    fn every_accepted_order_event_reads_back_as_written(commands in vec(order_command(), 1..60)) {
        for event in accepted_events(&replay::<Order>(&commands)) {
            let stored = event.encode();
            prop_assert_eq!(
                Some(stored.schema_version),
                OrderEvent::current_version(&stored.event_type)
            );
            prop_assert_eq!(OrderEvent::decode(stored), Ok(event));
        }
    }

    #[test]
    fn an_account_balance_is_never_negative_and_is_deposits_minus_withdrawals(
        commands in vec(account_command(), 1..60),
    ) {
        let mut deposits_minus_withdrawals: i128 = 0;
        for step in replay::<Account>(&commands) {
            match (&step.command, &step.result) {
                (AccountCommand::Deposit { amount, .. }, Ok(_)) => {
                    deposits_minus_withdrawals += i128::from(amount.cents());
                }
                (AccountCommand::Withdraw { amount, .. }, Ok(_)) => {
                    deposits_minus_withdrawals -= i128::from(amount.cents());
                }
                _ => {}
            }
            if let Some(account) = &step.after {
                prop_assert!(account.balance_cents >= 0, "after {:?}", step.command);
                prop_assert_eq!(i128::from(account.balance_cents), deposits_minus_withdrawals);
            }
        }
    }

    #[test]
    fn nothing_is_accepted_once_an_account_is_closed(commands in vec(account_command(), 1..60)) {
        for step in replay::<Account>(&commands) {
            if step.before.as_ref().is_some_and(|a| a.closed) {
                prop_assert!(step.result.is_err(), "{:?} was accepted", step.command);
                prop_assert_eq!(&step.after, &step.before);
            }
        }
    }

    #[test]
    fn the_account_accepts_exactly_what_the_rules_allow(
        commands in vec(account_command(), 1..60),
    ) {
        let mut model = AccountModel::default();
        for step in replay::<Account>(&commands) {
            let expected = model.after(&step.command);
            prop_assert_eq!(
                step.result.is_ok(), expected.is_some(),
                "{:?} on {:?} gave {:?}", step.command, step.before, step.result
            );
            if let Some(next) = expected {
                model = next;
            }
            prop_assert_eq!(AccountModel::of(&step.after), model);
        }
    }

    #[test]
    fn an_account_state_is_a_pure_fold_of_its_events(commands in vec(account_command(), 1..60)) {
        let steps = replay::<Account>(&commands);
        let step_by_step = steps.last().map(|s| s.after.clone()).unwrap_or_default();
        let all_at_once = Account::fold(AccountState::default(), &accepted_events(&steps));
        prop_assert_eq!(all_at_once, step_by_step);
    }

    #[test]
    fn every_accepted_account_event_reads_back_as_written(
        commands in vec(account_command(), 1..60),
    ) {
        for event in accepted_events(&replay::<Account>(&commands)) {
            let stored = event.encode();
            prop_assert_eq!(
                Some(stored.schema_version),
                AccountEvent::current_version(&stored.event_type)
            );
            prop_assert_eq!(AccountEvent::decode(stored), Ok(event));
        }
    }
}
