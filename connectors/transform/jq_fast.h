/*
 * The transform step's fast path: a subset of jq evaluated on cJSON values,
 * used by connectors/transform/jq.c for programs entirely inside it. libjq
 * remains the reference: op_jqf_run gives up, with no effect, wherever its
 * answer could differ from libjq's, and the caller then runs libjq.
 */
#ifndef OP_CONNECTORS_TRANSFORM_JQ_FAST_H
#define OP_CONNECTORS_TRANSFORM_JQ_FAST_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

struct op_jqf;

/*
 * The fast form of program (a jq program that libjq compiled, without the
 * prelude jq.c adds), or NULL when the program uses anything outside the
 * subset (or memory ran out): the program then always runs on libjq.
 */
struct op_jqf *op_jqf_compile(const char *program);

void op_jqf_free(struct op_jqf *f);

/*
 * Runs f on in, with $globals and $metadata bound to globals and metadata
 * (NULL: null). true: *out is the single output (null when there was none),
 * built as jq.c's conversion of libjq's result would build it, and no larger
 * than output_max by that conversion's count. false: nothing was done, and
 * the caller runs libjq, which gives the answer (an error, several outputs)
 * this path does not.
 */
bool op_jqf_run(const struct op_jqf *f, const cJSON *in, const cJSON *globals,
                const cJSON *metadata, size_t output_max, cJSON **out);

#endif
