// A client written the way a user of the API would write one: against the types that
// openapi-typescript generates from /openapi.json (`./api`, written beside this file by the test
// `contract::types_generated_from_the_document_compile_in_a_strict_client`). Every type is looked
// up by path, method, status and media type, so a document that loses a schema, a field, a
// header, a status or the problem+json media type makes `tsc --noEmit --strict` fail here.

import type { paths } from "./api";

type Json<T> = T extends { content: { "application/json": infer Body } } ? Body : never;

// Placing an order: the request body, the 201 acknowledgement, and the problem of a refusal.
type PlaceOrder = paths["/v1/orders"]["post"]["requestBody"]["content"]["application/json"];
type OrderAck = paths["/v1/orders"]["post"]["responses"][201]["content"]["application/json"];
type Problem = paths["/v1/orders"]["post"]["responses"][400]["content"]["application/problem+json"];
type Idempotency = NonNullable<paths["/v1/orders"]["post"]["parameters"]["header"]>;

// Reading an order back, as of a version if asked.
type OrderStateQuery = NonNullable<paths["/v1/orders/{id}/state"]["get"]["parameters"]["query"]>;
type OrderState = Json<paths["/v1/orders/{id}/state"]["get"]["responses"][200]>;
type NotFound =
  paths["/v1/orders/{id}/state"]["get"]["responses"][404]["content"]["application/problem+json"];

// A state change guarded by the version the client saw, refused with 409 or 412.
type Confirm = paths["/v1/orders/{id}/confirm"]["post"];
type Guard = NonNullable<Confirm["parameters"]["header"]>;
type Conflict = Confirm["responses"][409]["content"]["application/problem+json"];
type Stale = Confirm["responses"][412]["content"]["application/problem+json"];

// A customer's orders, and an order's status as the document names it.
type CustomerOrders = paths["/v1/customers/{customerId}/orders"]["get"];
type OrderStatus = "PENDING" | "CONFIRMED" | "SHIPPED" | "DELIVERED" | "CANCELLED";

// Searching: the query parameters and a page of hits.
type SearchQuery = NonNullable<paths["/v1/orders/search"]["get"]["parameters"]["query"]>;
type SearchResults = Json<paths["/v1/orders/search"]["get"]["responses"][200]>;

// Accounts: opening one and moving money.
type OpenAccount = paths["/v1/accounts"]["post"]["requestBody"]["content"]["application/json"];
type Movement =
  paths["/v1/accounts/{id}/deposits"]["post"]["requestBody"]["content"]["application/json"];

export const order: PlaceOrder = {
  customerId: "c1",
  currency: "EUR",
  items: [{ productId: "sku-1", quantity: 2, unitPriceCents: 1250 }],
  shippingAddress: "1 Main Street, Springfield",
};

export const openAccount: OpenAccount = { ownerCustomerId: "c1", currency: "EUR" };

export function deposit(amountCents: number, reference: string): Movement {
  return { amountCents, reference };
}

export const search: SearchQuery = { q: "sku-1", limit: 20 };

export function asOf(version: number): OrderStateQuery {
  return { version };
}

/** A customer's orders, a page at a time: the path parameter is camelCase like the bodies. */
export function customerOrders(customerId: string, cursor?: string): CustomerOrders["parameters"] {
  return { path: { customerId }, query: { limit: 20, cursor }, header: { "X-Min-Position": 2 } };
}

/** Units and lines of an order, and its status as one of the five names. */
export function describe(order: OrderState): string {
  const status: OrderStatus = order.status;
  return `${status}: ${order.itemCount} lines, ${order.unitCount} units`;
}

export function guarded(version: number, key: string): Guard & Idempotency {
  return { "If-Match": `"${version}"`, "Idempotency-Key": key };
}

/** What a client shows of any refusal: every problem document has the same fields. */
export function explain(problem: Problem | NotFound | Conflict | Stale): string {
  const reference = problem.requestId ? ` (request ${problem.requestId})` : "";
  return `${problem.status} ${problem.title}: ${problem.detail} [${problem.type}]${reference}`;
}

export function acknowledged(ack: OrderAck): { id: string; position: number; version: number } {
  return { id: ack.orderId, position: ack.position, version: ack.version };
}

export function lines(state: OrderState): string[] {
  return state.items.map(
    (line) => `${line.quantity} × ${line.productId} = ${line.lineTotalCents} ${state.currency}`,
  );
}

export function orderIds(page: SearchResults): { ids: string[]; next: string | null } {
  return { ids: page.items.map((hit) => hit.orderId), next: page.nextCursor ?? null };
}

/** A typed call, as a client library would wrap `fetch`. */
export async function place(
  base: string,
  token: string,
  body: PlaceOrder,
): Promise<OrderAck | Problem> {
  const response = await fetch(`${base}/v1/orders`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return response.status === 201
    ? ((await response.json()) as OrderAck)
    : ((await response.json()) as Problem);
}
