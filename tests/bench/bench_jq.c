/*
 * jq benchmark, one thread, CPU time of the process: what W1's transform
 * costs on the message an HTTP trigger builds from W1's request (method,
 * path, params, query, wrk's headers, the 309-byte order as body), split into
 * its parts:
 *
 * - jq_w1_transform_us: op_jq_run, as the transform step calls it: W1's
 *   program is inside the fast path's subset (connectors/transform/jq_fast.c),
 *   so it runs on the cJSON message without libjq;
 * - jq_w1_transform_libjq_us: op_jq_run with the fast path off (the message
 *   converted into jq values, libjq's run, the result converted back), and
 *   jq_w1_fast_vs_libjq, the ratio of the two;
 * - jq_w1_libjq_us: libjq alone on the same program (prelude included) and
 *   input, built once as jq values and shared by every run: the part no code
 *   of the agent's can make cheaper;
 * - jq_identity_us: op_jq_run of `.` on libjq: the conversions of the whole
 *   message, in and out, with almost nothing for libjq to do;
 * - jq_w1_vs_json_roundtrip: one transform against a cJSON parse and print of
 *   the same message measured in the same run (a yardstick that moves with
 *   the machine's load).
 *
 * The libjq figure is the floor of a libjq transform's time per request on
 * its HTTP thread (tests/bench/README.md).
 */
#include <jq.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "connectors/transform/jq.h"
#include "tests/bench/w1_program.h"

static const char msg_text[] =
    "{\"method\":\"POST\",\"path\":\"/orders\",\"params\":{},\"query\":{},\"headers\":{"
    "\"host\":\"127.0.0.1:8080\",\"content-type\":\"application/json\",\"content-length\":"
    "\"309\"},\"body\":{\"order_id\":\"SO-2026-000417\",\"customer\":{\"id\":\"C-10293\","
    "\"name\":\"Acme Industrial GmbH\",\"country\":\"DE\"},\"currency\":\"EUR\",\"items\":[{"
    "\"sku\":\"BRG-6204-2RS\",\"qty\":12,\"price\":4.35},{\"sku\":\"SEAL-35x52x7\",\"qty\":4,"
    "\"price\":1.9},{\"sku\":\"BLT-M8x40-8.8\",\"qty\":100,\"price\":0.12}],\"requested\":"
    "\"2026-12-01\",\"priority\":\"normal\"}}";

/* The bindings connectors/transform/jq.c puts before every program, without
 * the definitions W1's program does not use (libjq drops unused ones). */
/* Reshaping with the builtins a transform uses most after paths: keys,
 * to_entries, sort, join, split, has, max, ltrimstr. */
static const char builtins_program[] =
    "{skus: (.body.items | map(.sku) | sort | join(\",\")), fields: (.body | keys), "
    "headers: (.headers | to_entries | map(.key)), rush: (.body | has(\"rush\")), "
    "most: (.body.items | map(.qty) | max), order: (.body.order_id | ltrimstr(\"SO-\") | "
    "split(\"-\"))}";

static const char binds[] = "{} as $ENV | .[1] as $globals | .[2] as $metadata | .[0] | ";

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* op_jq_run of program on msg, about a second; microseconds a run, or -1. */
static double run_op(const char *program, const cJSON *msg, const cJSON *globals, const cJSON *meta)
{
	char err[512];
	struct op_jq *q = NULL;
	if (op_jq_compile(program, &q, err, sizeof(err)) != OP_OK) {
		fprintf(stderr, "bench: compile failed: %s\n", err);
		return -1;
	}
	long n = 0;
	double t0 = now(), t1;
	do {
		for (int i = 0; i < 1024; i++, n++) {
			cJSON *out = NULL;
			if (op_jq_run(q, msg, globals, meta, &out, err, sizeof(err)) != OP_OK) {
				fprintf(stderr, "bench: run failed: %s\n", err);
				op_jq_free(q);
				return -1;
			}
			cJSON_Delete(out);
		}
		t1 = now();
	} while (t1 - t0 < 1.0);
	op_jq_free(q);
	return (t1 - t0) * 1e6 / (double)n;
}

/* libjq alone: W1's program on an input built once; microseconds a run. */
static double run_libjq(void)
{
	char text[sizeof(binds) + sizeof(w1_program)];
	snprintf(text, sizeof(text), "%s%s", binds, w1_program);
	jq_state *jq = jq_init();
	if (jq == NULL)
		return -1;
	jq_set_attr(jq, jv_string("JQ_LIBRARY_PATH"), jv_array());
	if (!jq_compile_args(jq, text, jv_object())) {
		jq_teardown(&jq);
		return -1;
	}
	jv in = jv_array();
	in = jv_array_append(in, jv_parse(msg_text));
	in = jv_array_append(in, jv_parse("{\"region\":\"eu-1\"}"));
	in = jv_array_append(in, jv_parse("{\"event_id\":\"0\"}"));
	long n = 0, outputs = 0;
	double t0 = now(), t1;
	do {
		for (int i = 0; i < 1024; i++, n++) {
			jq_start(jq, jv_copy(in), 0);
			for (jv r = jq_next(jq);; r = jq_next(jq)) {
				int valid = jv_is_valid(r);
				jv_free(r);
				if (!valid)
					break;
				outputs++;
			}
		}
		t1 = now();
	} while (t1 - t0 < 1.0);
	jv_free(in);
	jq_teardown(&jq);
	if (outputs != n) {
		fprintf(stderr, "bench: libjq gave %ld outputs for %ld runs\n", outputs, n);
		return -1;
	}
	return (t1 - t0) * 1e6 / (double)n;
}

static double json_roundtrip_us(void)
{
	long n = 0;
	double t0 = now(), t1;
	do {
		for (int i = 0; i < 1024; i++, n++) {
			cJSON *j = cJSON_Parse(msg_text);
			char *s = cJSON_PrintUnformatted(j);
			op_free(s);
			cJSON_Delete(j);
		}
		t1 = now();
	} while (t1 - t0 < 1.0);
	return (t1 - t0) * 1e6 / (double)n;
}

int main(void)
{
	op_alloc_init();
	cJSON *msg = cJSON_Parse(msg_text);
	cJSON *globals = cJSON_Parse("{\"region\":\"eu-1\"}");
	cJSON *meta = cJSON_Parse("{\"event_id\":\"0\"}");
	if (msg == NULL || globals == NULL || meta == NULL)
		return 1;
	double w1 = run_op(w1_program, msg, globals, meta);
	uint64_t fast0 = op_jq_fast_runs();
	double bi = run_op(builtins_program, msg, globals, meta);
	if (op_jq_fast_runs() == fast0) {
		fprintf(stderr, "bench: the builtins program did not run on the fast path\n");
		return 1;
	}
	op_jq_fast_enable(false);
	double w1_lib = run_op(w1_program, msg, globals, meta);
	double bi_lib = run_op(builtins_program, msg, globals, meta);
	double lib = run_libjq();
	double ident = run_op(".", msg, globals, meta);
	op_jq_fast_enable(true);
	double yard = json_roundtrip_us();
	cJSON_Delete(meta);
	cJSON_Delete(globals);
	cJSON_Delete(msg);
	if (w1 < 0 || w1_lib < 0 || lib < 0 || ident < 0 || bi < 0 || bi_lib < 0)
		return 1;
	printf("bench: jq_message_bytes %zu bytes\n", strlen(msg_text));
	printf("bench: jq_w1_transform_us %.2f us\n", w1);
	printf("bench: jq_w1_transform_libjq_us %.2f us\n", w1_lib);
	printf("bench: jq_w1_fast_vs_libjq %.3f ratio\n", w1 / w1_lib);
	printf("bench: jq_w1_libjq_us %.2f us\n", lib);
	printf("bench: jq_identity_us %.2f us\n", ident);
	printf("bench: jq_builtins_transform_us %.2f us\n", bi);
	printf("bench: jq_builtins_transform_libjq_us %.2f us\n", bi_lib);
	printf("bench: jq_builtins_fast_vs_libjq %.3f ratio\n", bi / bi_lib);
	printf("bench: jq_w1_vs_json_roundtrip %.1f ratio\n", w1 / yard);
	return 0;
}
