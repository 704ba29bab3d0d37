/*
 * Engine benchmark: a 6-step pipeline (set, choice, for-each over 10 items
 * with a set inside, transform, validate) on a ~1 KB message, run on one
 * thread. Prints executions per second, allocations per execution, and the
 * ratio of one execution to a cJSON parse + print of the same message
 * measured in the same run (a yardstick that moves with the machine's load).
 * Times are CPU time of the process, so other load on a shared machine
 * does not count against us.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/engine/engine.h"

static const char doc[] =
    "{\"name\":\"bench\",\"version\":\"1\",\"steps\":["
    "{\"type\":\"set\",\"config\":{\"merge\":true,\"template\":{\"ref\":\"{{ CONCAT(message."
    "customer.country, '-', message.id) }}\",\"count\":\"{{ SIZE(message.items) }}\"}}},"
    "{\"type\":\"choice\",\"config\":{\"when\":[{\"if\":\"{{ message.count > 5 }}\",\"steps\":"
    "[{\"type\":\"set\",\"config\":{\"merge\":true,\"template\":{\"big\":true}}}]}],"
    "\"otherwise\":[{\"type\":\"set\",\"config\":{\"merge\":true,\"template\":{\"big\":false}}}"
    "]}},"
    "{\"type\":\"for-each\",\"output\":\"lines\",\"config\":{\"items\":\"{{ message.items }}\","
    "\"steps\":[{\"type\":\"set\",\"config\":{\"template\":{\"sku\":\"{{ message.sku }}\","
    "\"amount\":\"{{ message.qty * message.price }}\"}}}]}},"
    "{\"type\":\"transform\",\"config\":{\"program\":\"{id, ref, big, lines, total: "
    "([.lines[].amount] | add)}\"}},"
    "{\"type\":\"validate\",\"config\":{\"schema\":{\"type\":\"object\",\"required\":[\"id\","
    "\"total\",\"lines\"],\"properties\":{\"id\":{\"type\":\"string\"},\"total\":{\"type\":"
    "\"number\",\"minimum\":0},\"lines\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
    "\"required\":[\"sku\",\"amount\"]}}}}}}]}";

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *make_message(void)
{
	static char buf[4096];
	size_t n =
	    (size_t)snprintf(buf, sizeof(buf),
	                     "{\"id\":\"ORD-2026-000123\",\"customer\":{\"name\":\"ACME "
	                     "Industrial Supplies\",\"country\":\"DE\",\"email\":"
	                     "\"buyer@acme.example\"},\"notes\":\"deliver to gate 4, ask for the "
	                     "goods-in supervisor\",\"shipping\":{\"street\":\"Industriestrasse "
	                     "12\",\"city\":\"Stuttgart\",\"zip\":\"70565\",\"country\":\"DE\"},"
	                     "\"channel\":\"edi\",\"currency\":\"EUR\","
	                     "\"items\":[");
	for (int i = 0; i < 10; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n,
		                      "%s{\"sku\":\"SKU-%05d\",\"name\":\"Part number %d\","
		                      "\"qty\":%d,\"price\":%d.25}",
		                      i ? "," : "", 1000 + i, i, i + 1, 10 * i + 3);
	snprintf(buf + n, sizeof(buf) - n, "]}");
	return buf;
}

int main(void)
{
	op_alloc_init();
	struct op_diag d;
	op_diag_init(&d);
	struct op_pipeline *p = NULL;
	if (op_pipeline_load(doc, strlen(doc), "bench", &d, &p) != OP_OK) {
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "%s: %s\n", d.v[i].path, d.v[i].msg);
		return 1;
	}
	op_diag_fini(&d);
	struct op_engine *e = op_engine_new();
	const char *text = make_message();
	cJSON *msg = cJSON_Parse(text);
	const int iters = 50000;

	/* Warm up (per-thread jq state, caches). */
	for (int i = 0; i < 100; i++) {
		cJSON *out = NULL;
		struct op_fail f;
		if (op_engine_run(e, p, cJSON_Duplicate(msg, 1), NULL, &out, &f) != OP_OK) {
			fprintf(stderr, "bench pipeline failed: %s %s at %s\n", f.code, f.msg,
			        f.step);
			return 1;
		}
		cJSON_Delete(out);
	}

	uint64_t a0 = op_alloc_count();
	int failed = 0;
	double t0 = now();
	for (int i = 0; i < iters; i++) {
		cJSON *out = NULL;
		struct op_fail f;
		if (op_engine_run(e, p, cJSON_Duplicate(msg, 1), NULL, &out, &f) != OP_OK)
			failed++;
		cJSON_Delete(out);
	}
	double t1 = now();
	if (failed) {
		fprintf(stderr, "bench: %d executions failed\n", failed);
		return 1;
	}
	uint64_t a1 = op_alloc_count();

	/* Yardstick: parse and print the same message. */
	double t2 = now();
	for (int i = 0; i < iters; i++) {
		cJSON *j = cJSON_Parse(text);
		char *s = cJSON_PrintUnformatted(j);
		op_free(s);
		cJSON_Delete(j);
	}
	double t3 = now();

	double per = (t1 - t0) / iters;
	printf("bench: engine_message_bytes %zu bytes\n", strlen(text));
	printf("bench: engine_6_step_execs %.0f execs/s\n", 1.0 / per);
	printf("bench: engine_6_step_allocs %.1f allocs/exec\n", (double)(a1 - a0) / iters);
	printf("bench: engine_exec_vs_json_roundtrip %.2f ratio\n", per / ((t3 - t2) / iters));
	cJSON_Delete(msg);
	op_engine_free(e);
	op_pipeline_free(p);
	return 0;
}
