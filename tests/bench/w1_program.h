/*
 * W1's jq transform, as tests/bench/bench_http.sh runs it: renames the
 * order's fields, computes line amounts and a total, adds fields of its own
 * and one from globals. Shared by bench_jq and the jq unit tests.
 */
#ifndef OP_TESTS_BENCH_W1_PROGRAM_H
#define OP_TESTS_BENCH_W1_PROGRAM_H

static const char w1_program[] =
    "{orderId: .body.order_id, customerId: .body.customer.id, customerName: "
    ".body.customer.name, country: .body.customer.country, lines: [.body.items[] | {article: "
    ".sku, quantity: .qty, unitPrice: .price, amount: (.qty * .price)}], total: "
    "([.body.items[] | .qty * .price] | add), currency: .body.currency, deliveryDate: "
    ".body.requested, rush: (.body.priority == \"high\"), source: \"outpost\", region: "
    "$globals.region}";

#endif
