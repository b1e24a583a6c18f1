//! Rules of the Order aggregate, one test per rule, as given(events) / when(command) / then(...).

mod support;

use strata_domain::order::{
    LineItem, MAX_LINES_PER_ORDER, Order, OrderCommand, OrderError, OrderEvent, OrderState,
    OrderStatus, PlacedOrder,
};
use strata_domain::{Aggregate, DomainError, RejectionKind};

use support::fixtures::{item_added, line, place, placed, product, reason, tracking};
use support::{given, given_no_events};

use OrderStatus::{Cancelled, Confirmed, Delivered, Pending, Shipped};

/// 3 × 333 + 1 × 1 = 1000 cents.
fn two_lines() -> Vec<LineItem> {
    vec![line("sku-1", 3, 333), line("sku-2", 1, 1)]
}

fn shipped() -> OrderEvent {
    OrderEvent::OrderShipped {
        tracking_number: tracking("1Z999AA10123456784"),
    }
}

fn cancelled() -> OrderEvent {
    OrderEvent::OrderCancelled {
        reason: reason("changed my mind"),
    }
}

/// The shortest history of a two-line order that leaves it in `status`.
fn order_in(status: OrderStatus) -> Vec<OrderEvent> {
    let mut events = vec![placed(two_lines())];
    match status {
        Pending => {}
        Confirmed => events.push(OrderEvent::OrderConfirmed {}),
        Shipped => events.extend([OrderEvent::OrderConfirmed {}, shipped()]),
        Delivered => events.extend([
            OrderEvent::OrderConfirmed {},
            shipped(),
            OrderEvent::OrderDelivered {},
        ]),
        Cancelled => events.push(cancelled()),
    }
    events
}

/// The placed order a history folds to; fails the test if it never was placed.
#[track_caller]
fn placed_order(state: OrderState) -> PlacedOrder {
    match state {
        Some(order) => order,
        None => panic!("expected a placed order, found none"),
    }
}

fn add(product_id: &str, quantity: u32, unit_price_cents: i64) -> OrderCommand {
    OrderCommand::AddItem(line(product_id, quantity, unit_price_cents))
}

fn remove(product_id: &str) -> OrderCommand {
    OrderCommand::RemoveItem {
        product_id: product(product_id),
    }
}

// Placing an order.

#[test]
fn an_order_does_not_exist_before_it_is_placed() {
    let history = given_no_events::<Order>();
    assert_eq!(history.state(), &None);
    assert!(!Order::exists(history.state()));
}

#[test]
fn placing_an_order_records_it_as_pending_with_its_exact_total() {
    let state = given_no_events::<Order>()
        .when(place(two_lines()))
        .then_expect_events(vec![placed(two_lines())]);

    let order = placed_order(state);
    assert_eq!(order.status, Pending);
    assert_eq!(order.items, two_lines());
    assert_eq!(order.total_cents, 1000);
    assert_eq!(order.tracking_number, None);
    assert_eq!(order.cancellation_reason, None);
}

#[test]
fn placing_an_order_without_items_is_rejected() {
    given_no_events::<Order>()
        .when(place(vec![]))
        .then_expect_error(OrderError::NoItems);
}

#[test]
fn placing_an_order_with_the_same_product_twice_is_rejected() {
    given_no_events::<Order>()
        .when(place(vec![
            line("sku-1", 1, 100),
            line("sku-2", 1, 200),
            line("sku-1", 2, 100),
        ]))
        .then_expect_error(OrderError::DuplicateProduct(product("sku-1")));
}

/// `count` lines of distinct products, one unit at one cent each.
fn lines(count: usize) -> Vec<LineItem> {
    (0..count)
        .map(|i| line(&format!("sku-{i}"), 1, 1))
        .collect()
}

#[test]
fn placing_an_order_of_more_lines_than_the_limit_is_rejected() {
    given_no_events::<Order>()
        .when(place(lines(MAX_LINES_PER_ORDER + 1)))
        .then_expect_error(OrderError::TooManyLines);
}

#[test]
fn placing_an_order_of_exactly_the_most_lines_is_accepted() {
    let state = given_no_events::<Order>()
        .when(place(lines(MAX_LINES_PER_ORDER)))
        .then_expect_events(vec![placed(lines(MAX_LINES_PER_ORDER))]);
    assert_eq!(placed_order(state).items.len(), MAX_LINES_PER_ORDER);
}

#[test]
fn adding_a_new_product_to_an_order_with_the_most_lines_is_rejected() {
    given::<Order>([placed(lines(MAX_LINES_PER_ORDER))])
        .when(add("one-more", 1, 1))
        .then_expect_error(OrderError::TooManyLines);
}

#[test]
fn adding_units_of_a_product_already_in_a_full_order_is_accepted() {
    given::<Order>([placed(lines(MAX_LINES_PER_ORDER))])
        .when(add("sku-0", 2, 1))
        .then_expect_events(vec![item_added("sku-0", 2, 1)]);
}

#[test]
fn placing_an_order_twice_is_rejected() {
    given::<Order>(order_in(Pending))
        .when(place(two_lines()))
        .then_expect_error(OrderError::AlreadyPlaced);
}

#[test]
fn placing_an_order_again_after_it_was_cancelled_is_rejected() {
    given::<Order>(order_in(Cancelled))
        .when(place(two_lines()))
        .then_expect_error(OrderError::AlreadyPlaced);
}

#[test]
fn placing_an_order_with_a_line_total_beyond_64_bits_is_rejected() {
    given_no_events::<Order>()
        .when(place(vec![line("sku-1", 2, i64::MAX / 2 + 1)]))
        .then_expect_error(OrderError::TotalOverflow);
}

#[test]
fn placing_an_order_whose_lines_add_up_beyond_64_bits_is_rejected() {
    given_no_events::<Order>()
        .when(place(vec![
            line("sku-1", 1, i64::MAX / 2 + 1),
            line("sku-2", 1, i64::MAX / 2 + 1),
        ]))
        .then_expect_error(OrderError::TotalOverflow);
}

#[test]
fn placing_an_order_whose_total_is_exactly_the_largest_64_bit_value_is_accepted() {
    let items = vec![
        line("sku-1", 1, i64::MAX / 2),
        line("sku-2", 1, i64::MAX / 2 + 1),
    ];
    let state = given_no_events::<Order>()
        .when(place(items.clone()))
        .then_expect_events(vec![placed(items)]);
    assert_eq!(placed_order(state).total_cents, i64::MAX);
}

#[test]
fn every_command_on_an_order_that_was_never_placed_is_rejected_as_not_placed() {
    let commands = [
        add("sku-1", 1, 100),
        remove("sku-1"),
        OrderCommand::Confirm,
        OrderCommand::Ship {
            tracking_number: tracking("T-1"),
        },
        OrderCommand::Deliver,
        OrderCommand::Cancel {
            reason: reason("never mind"),
        },
    ];
    for command in commands {
        given_no_events::<Order>()
            .when(command)
            .then_expect_error(OrderError::NotPlaced);
    }
}

// Changing items while pending.

#[test]
fn adding_a_new_product_appends_a_line_and_raises_the_total() {
    let state = given::<Order>(order_in(Pending))
        .when(add("sku-3", 2, 250))
        .then_expect_events(vec![item_added("sku-3", 2, 250)]);

    let order = placed_order(state);
    assert_eq!(
        order.items,
        vec![
            line("sku-1", 3, 333),
            line("sku-2", 1, 1),
            line("sku-3", 2, 250)
        ]
    );
    assert_eq!(order.total_cents, 1000 + 500);
}

#[test]
fn adding_a_product_already_in_the_order_at_the_same_price_merges_the_quantity() {
    let state = given::<Order>(order_in(Pending))
        .when(add("sku-1", 4, 333))
        .then_expect_events(vec![item_added("sku-1", 4, 333)]);

    let order = placed_order(state);
    assert_eq!(
        order.items,
        vec![line("sku-1", 7, 333), line("sku-2", 1, 1)]
    );
    assert_eq!(order.total_cents, 7 * 333 + 1);
}

#[test]
fn adding_a_product_already_in_the_order_at_another_price_is_rejected() {
    given::<Order>(order_in(Pending))
        .when(add("sku-1", 1, 334))
        .then_expect_error(OrderError::PriceMismatch {
            product_id: product("sku-1"),
            existing_cents: 333,
        });
}

#[test]
fn adding_an_item_that_pushes_the_total_beyond_64_bits_is_rejected() {
    // The order is already worth 1000 cents, so this line alone fits but the sum does not.
    given::<Order>(order_in(Pending))
        .when(add("sku-3", 1, i64::MAX - 999))
        .then_expect_error(OrderError::TotalOverflow);
}

#[test]
fn adding_an_item_up_to_exactly_the_largest_64_bit_total_is_accepted() {
    let state = given::<Order>(order_in(Pending))
        .when(add("sku-3", 1, i64::MAX - 1000))
        .then_expect_events(vec![item_added("sku-3", 1, i64::MAX - 1000)]);
    assert_eq!(placed_order(state).total_cents, i64::MAX);
}

#[test]
fn merging_more_units_than_a_quantity_can_count_is_rejected() {
    // Free items keep the total at zero, so only the merged quantity can overflow.
    given::<Order>([placed(vec![line("gift", u32::MAX, 0)])])
        .when(add("gift", 1, 0))
        .then_expect_error(OrderError::TotalOverflow);
}

#[test]
fn removing_a_product_drops_its_line_and_lowers_the_total() {
    let state = given::<Order>(order_in(Pending))
        .when(remove("sku-1"))
        .then_expect_events(vec![OrderEvent::ItemRemoved {
            product_id: product("sku-1"),
        }]);

    let order = placed_order(state);
    assert_eq!(order.items, vec![line("sku-2", 1, 1)]);
    assert_eq!(order.total_cents, 1);
}

#[test]
fn removing_a_merged_product_removes_all_its_units_from_the_total() {
    let state = given::<Order>([placed(two_lines()), item_added("sku-1", 2, 333)])
        .when(remove("sku-1"))
        .then_expect_events(vec![OrderEvent::ItemRemoved {
            product_id: product("sku-1"),
        }]);
    assert_eq!(placed_order(state).total_cents, 1);
}

#[test]
fn removing_a_product_that_is_not_in_the_order_is_rejected() {
    given::<Order>(order_in(Pending))
        .when(remove("sku-9"))
        .then_expect_error(OrderError::ItemNotInOrder(product("sku-9")));
}

#[test]
fn removing_the_last_item_is_rejected() {
    given::<Order>([placed(vec![line("sku-1", 2, 100)])])
        .when(remove("sku-1"))
        .then_expect_error(OrderError::CannotRemoveLastItem);
}

#[test]
fn items_cannot_be_added_once_the_order_has_left_pending() {
    for status in [Confirmed, Shipped, Delivered, Cancelled] {
        given::<Order>(order_in(status))
            .when(add("sku-3", 1, 100))
            .then_expect_error(OrderError::CannotChangeItems(status));
    }
}

#[test]
fn items_cannot_be_removed_once_the_order_has_left_pending() {
    for status in [Confirmed, Shipped, Delivered, Cancelled] {
        given::<Order>(order_in(status))
            .when(remove("sku-1"))
            .then_expect_error(OrderError::CannotChangeItems(status));
    }
}

// The lifecycle.

#[test]
fn confirming_a_pending_order_makes_it_confirmed() {
    let state = given::<Order>(order_in(Pending))
        .when(OrderCommand::Confirm)
        .then_expect_events(vec![OrderEvent::OrderConfirmed {}]);

    let order = placed_order(state);
    assert_eq!(order.status, Confirmed);
    assert_eq!(order.total_cents, 1000);
}

#[test]
fn confirming_a_cancelled_order_is_rejected() {
    given::<Order>(order_in(Cancelled))
        .when(OrderCommand::Confirm)
        .then_expect_error(OrderError::CannotConfirm(Cancelled));
}

#[test]
fn confirming_an_order_that_is_no_longer_pending_is_rejected() {
    for status in [Confirmed, Shipped, Delivered] {
        given::<Order>(order_in(status))
            .when(OrderCommand::Confirm)
            .then_expect_error(OrderError::CannotConfirm(status));
    }
}

#[test]
fn shipping_a_confirmed_order_records_its_tracking_number() {
    let state = given::<Order>(order_in(Confirmed))
        .when(OrderCommand::Ship {
            tracking_number: tracking("1Z999AA10123456784"),
        })
        .then_expect_events(vec![shipped()]);

    let order = placed_order(state);
    assert_eq!(order.status, Shipped);
    assert_eq!(order.tracking_number, Some(tracking("1Z999AA10123456784")));
}

#[test]
fn shipping_an_order_that_is_not_confirmed_is_rejected() {
    for status in [Pending, Shipped, Delivered, Cancelled] {
        given::<Order>(order_in(status))
            .when(OrderCommand::Ship {
                tracking_number: tracking("T-2"),
            })
            .then_expect_error(OrderError::CannotShip(status));
    }
}

#[test]
fn delivering_a_shipped_order_makes_it_delivered_and_keeps_its_tracking_number() {
    let state = given::<Order>(order_in(Shipped))
        .when(OrderCommand::Deliver)
        .then_expect_events(vec![OrderEvent::OrderDelivered {}]);

    let order = placed_order(state);
    assert_eq!(order.status, Delivered);
    assert!(order.status.is_terminal());
    assert_eq!(order.tracking_number, Some(tracking("1Z999AA10123456784")));
    assert_eq!(order.total_cents, 1000);
}

#[test]
fn delivering_an_order_that_is_not_shipped_is_rejected() {
    for status in [Pending, Confirmed, Delivered, Cancelled] {
        given::<Order>(order_in(status))
            .when(OrderCommand::Deliver)
            .then_expect_error(OrderError::CannotDeliver(status));
    }
}

#[test]
fn cancelling_a_pending_order_records_the_reason() {
    let state = given::<Order>(order_in(Pending))
        .when(OrderCommand::Cancel {
            reason: reason("changed my mind"),
        })
        .then_expect_events(vec![cancelled()]);

    let order = placed_order(state);
    assert_eq!(order.status, Cancelled);
    assert!(order.status.is_terminal());
    assert_eq!(order.cancellation_reason, Some(reason("changed my mind")));
    assert_eq!(order.tracking_number, None);
}

#[test]
fn cancelling_a_confirmed_order_records_the_reason() {
    let state = given::<Order>(order_in(Confirmed))
        .when(OrderCommand::Cancel {
            reason: reason("out of stock"),
        })
        .then_expect_events(vec![OrderEvent::OrderCancelled {
            reason: reason("out of stock"),
        }]);

    let order = placed_order(state);
    assert_eq!(order.status, Cancelled);
    assert_eq!(order.cancellation_reason, Some(reason("out of stock")));
}

#[test]
fn cancelling_an_order_that_has_shipped_delivered_or_been_cancelled_is_rejected() {
    for status in [Shipped, Delivered, Cancelled] {
        given::<Order>(order_in(status))
            .when(OrderCommand::Cancel {
                reason: reason("too late"),
            })
            .then_expect_error(OrderError::CannotCancel(status));
    }
}

#[test]
fn only_delivered_and_cancelled_are_terminal() {
    let terminal: Vec<_> = [Pending, Confirmed, Shipped, Delivered, Cancelled]
        .into_iter()
        .filter(|status| status.is_terminal())
        .collect();
    assert_eq!(terminal, vec![Delivered, Cancelled]);
}

// How the layers above read a rejection.

#[test]
fn a_command_on_a_missing_order_is_a_not_found_rejection() {
    given_no_events::<Order>()
        .when(OrderCommand::Confirm)
        .then_expect_error_of_kind(OrderError::NotPlaced, RejectionKind::NotFound);
}

#[test]
fn bad_order_contents_are_invalid_rejections() {
    for error in [
        OrderError::NoItems,
        OrderError::DuplicateProduct(product("sku-1")),
        OrderError::TotalOverflow,
        OrderError::TooManyLines,
    ] {
        assert_eq!(error.kind(), RejectionKind::Invalid, "{error:?}");
    }
}

#[test]
fn commands_the_order_state_forbids_are_conflict_rejections() {
    for error in [
        OrderError::AlreadyPlaced,
        OrderError::CannotChangeItems(Confirmed),
        OrderError::ItemNotInOrder(product("sku-9")),
        OrderError::CannotRemoveLastItem,
        OrderError::PriceMismatch {
            product_id: product("sku-1"),
            existing_cents: 333,
        },
        OrderError::CannotConfirm(Cancelled),
        OrderError::CannotShip(Pending),
        OrderError::CannotDeliver(Confirmed),
        OrderError::CannotCancel(Shipped),
    ] {
        assert_eq!(error.kind(), RejectionKind::Conflict, "{error:?}");
    }
}
