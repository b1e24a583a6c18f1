//! Links between operations (OpenAPI `links`): where a client goes next with what a command
//! answered — the new id, and its `ETag` as the next `If-Match`. Generators turn them into
//! typed follow-ups, and a stateful fuzzer walks an order from placement to delivery with them.

use utoipa::Modify;
use utoipa::openapi::RefOr;
use utoipa::openapi::link::LinkBuilder;

/// The modifier: adds [`FOLLOWS`] to the document.
pub struct Links;

/// Commands on an existing order: they take its id and, to be safe, the version last seen.
const ORDER_COMMANDS: &[&str] = &[
    "addOrderItem",
    "confirmOrder",
    "shipOrder",
    "deliverOrder",
    "cancelOrder",
];
/// Every command on an existing order: what any of them answers leads to the same places.
const ORDER_CHANGES: &[&str] = &[
    "addOrderItem",
    "removeOrderItem",
    "confirmOrder",
    "shipOrder",
    "deliverOrder",
    "cancelOrder",
];
const ORDER_READS: &[&str] = &["orderState", "orderEvents", "orderSummary"];
const ACCOUNT_COMMANDS: &[&str] = &["deposit", "withdraw", "closeAccount"];
const ACCOUNT_READS: &[&str] = &[
    "accountBalance",
    "accountEvents",
    "accountSummary",
    "accountTransactions",
];

/// From the answers of some operations, to other operations, with their parameters taken from
/// the answer (or the request).
struct Follow {
    from: &'static [&'static str],
    status: &'static str,
    to: &'static [&'static str],
    parameters: &'static [(&'static str, &'static str)],
}

const ORDER_ID: (&str, &str) = ("path.id", "$response.body#/orderId");
const ACCOUNT_ID: (&str, &str) = ("path.id", "$response.body#/accountId");
const NEXT_VERSION: (&str, &str) = ("header.If-Match", "$response.header.ETag");

const FOLLOWS: &[Follow] = &[
    Follow {
        from: &["placeOrder"],
        status: "201",
        to: ORDER_COMMANDS,
        parameters: &[ORDER_ID, NEXT_VERSION],
    },
    Follow {
        from: &["placeOrder"],
        status: "201",
        to: ORDER_READS,
        parameters: &[ORDER_ID],
    },
    Follow {
        from: &["placeOrder"],
        status: "201",
        to: &["removeOrderItem"],
        parameters: &[
            ORDER_ID,
            NEXT_VERSION,
            ("path.productId", "$request.body#/items/0/productId"),
        ],
    },
    Follow {
        from: &["addOrderItem"],
        status: "200",
        to: &["removeOrderItem"],
        parameters: &[
            ORDER_ID,
            NEXT_VERSION,
            ("path.productId", "$request.body#/productId"),
        ],
    },
    Follow {
        from: ORDER_CHANGES,
        status: "200",
        to: ORDER_COMMANDS,
        parameters: &[ORDER_ID, NEXT_VERSION],
    },
    Follow {
        from: ORDER_CHANGES,
        status: "200",
        to: ORDER_READS,
        parameters: &[ORDER_ID],
    },
    Follow {
        from: &["orderSummary"],
        status: "200",
        to: &["customerOrders", "customerStats"],
        parameters: &[("path.customerId", "$response.body#/customerId")],
    },
    Follow {
        from: &["openAccount"],
        status: "201",
        to: ACCOUNT_COMMANDS,
        parameters: &[ACCOUNT_ID, NEXT_VERSION],
    },
    Follow {
        from: &["openAccount"],
        status: "201",
        to: ACCOUNT_READS,
        parameters: &[ACCOUNT_ID],
    },
    Follow {
        from: ACCOUNT_COMMANDS,
        status: "200",
        to: ACCOUNT_COMMANDS,
        parameters: &[ACCOUNT_ID, NEXT_VERSION],
    },
    Follow {
        from: ACCOUNT_COMMANDS,
        status: "200",
        to: ACCOUNT_READS,
        parameters: &[ACCOUNT_ID],
    },
];

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let Some(id) = operation.operation_id.clone() else {
                    continue;
                };
                for follow in FOLLOWS.iter().filter(|f| f.from.contains(&id.as_str())) {
                    let Some(RefOr::T(response)) =
                        operation.responses.responses.get_mut(follow.status)
                    else {
                        continue;
                    };
                    for to in follow.to {
                        let link = follow.parameters.iter().fold(
                            LinkBuilder::new().operation_id(*to),
                            |link, (name, value)| link.parameter(*name, *value),
                        );
                        response.links.insert((*to).to_owned(), link.build().into());
                    }
                }
            }
        }
    }
}
