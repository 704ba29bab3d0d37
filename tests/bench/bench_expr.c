/*
 * Expression benchmark, one thread, about one second per case: a plain path
 * lookup ({{ message.order.customer.id }}), an expression of five nested
 * function calls, and the rendering of a small `set` template. Prints
 * evaluations per second, allocations per evaluation, and the ratio of a
 * path lookup to the same lookup done by hand with cJSON (a yardstick that
 * moves with the machine's load).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/expr/expr.h"

static const char msg_text[] =
    "{\"id\":\"ORD-2026-000123\",\"order\":{\"id\":\"ORD-2026-000123\",\"customer\":{\"id\":"
    "4711,\"name\":\"ACME Industrial Supplies\",\"country\":\"DE\"},\"items\":[{\"sku\":"
    "\"SKU-01000\",\"qty\":1,\"price\":3.25},{\"sku\":\"SKU-01001\",\"qty\":2,\"price\":13.25}]},"
    "\"notes\":\"deliver to gate 4\"}";

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile double sink;

struct result {
	double per_sec;
	double allocs;
};

/* Evaluates e repeatedly for about a second. */
static int run_expr(const struct op_expr *e, const struct op_expr_env *env, struct result *r)
{
	char err[256];
	long n = 0;
	uint64_t a0 = op_alloc_count();
	double t0 = now(), t1;
	do {
		for (int i = 0; i < 4096; i++, n++) {
			struct op_val v;
			if (op_expr_eval(e, env, &v, err, sizeof(err)) != OP_OK) {
				fprintf(stderr, "bench: eval failed: %s\n", err);
				return -1;
			}
			sink += cJSON_IsNumber(v.v) ? v.v->valuedouble : 1;
			op_val_drop(&v);
		}
		t1 = now();
	} while (t1 - t0 < 1.0);
	r->per_sec = (double)n / (t1 - t0);
	r->allocs = (double)(op_alloc_count() - a0) / (double)n;
	return 0;
}

static struct op_expr *compile(const char *src)
{
	struct op_expr *e = NULL;
	char err[256];
	if (op_expr_compile(src, &e, err, sizeof(err)) != OP_OK)
		fprintf(stderr, "bench: %s: %s\n", src, err);
	return e;
}

int main(void)
{
	op_alloc_init();
	cJSON *msg = cJSON_Parse(msg_text);
	struct op_expr_env env = {.message = msg};
	struct result path, fn5, tm, base;
	int rc = 1;

	struct op_expr *e1 = compile("{{ message.order.customer.id }}");
	struct op_expr *e5 = compile("{{ LOWER(REPLACE(UPPER(TRIM(CONCAT(' ', message.order.id, "
	                             "'-', message.order.customer.name, ' '))), '-', '_')) }}");
	if (msg == NULL || e1 == NULL || e5 == NULL)
		goto out;
	if (run_expr(e1, &env, &path) || run_expr(e5, &env, &fn5))
		goto out;

	/* The same lookup by hand, the best an interpreter could hope for. */
	long n = 0;
	double t0 = now(), t1;
	do {
		for (int i = 0; i < 4096; i++, n++) {
			const cJSON *o = cJSON_GetObjectItemCaseSensitive(msg, "order");
			const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "customer");
			const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
			sink += id ? id->valuedouble : 0;
			__asm__ volatile("" ::: "memory");
		}
		t1 = now();
	} while (t1 - t0 < 1.0);
	base.per_sec = (double)n / (t1 - t0);

	/* A set step's template: two expressions, one mixed string, constants. */
	cJSON *src = cJSON_Parse("{\"ref\":\"{{ CONCAT(message.order.customer.country, '-', "
	                         "message.id) }}\",\"count\":\"{{ SIZE(message.order.items) }}\","
	                         "\"note\":\"order {{ message.id }}\",\"source\":\"erp\",\"v\":2}");
	struct op_diag d;
	op_diag_init(&d);
	struct op_tmpl *t = NULL;
	if (src == NULL || op_tmpl_compile(src, &d, &t) != OP_OK) {
		fprintf(stderr, "bench: template does not compile\n");
		cJSON_Delete(src);
		op_diag_fini(&d);
		goto out;
	}
	cJSON_Delete(src);
	op_diag_fini(&d);
	n = 0;
	uint64_t a0 = op_alloc_count();
	t0 = now();
	do {
		for (int i = 0; i < 1024; i++, n++) {
			cJSON *o = NULL;
			char err[256];
			if (op_tmpl_render(t, &env, &o, err, sizeof(err)) != OP_OK) {
				fprintf(stderr, "bench: render failed: %s\n", err);
				op_tmpl_free(t);
				goto out;
			}
			cJSON_Delete(o);
		}
		t1 = now();
	} while (t1 - t0 < 1.0);
	tm.per_sec = (double)n / (t1 - t0);
	tm.allocs = (double)(op_alloc_count() - a0) / (double)n;
	op_tmpl_free(t);

	printf("bench: expr_path_lookup %.0f evals/s\n", path.per_sec);
	printf("bench: expr_path_lookup_allocs %.2f allocs/eval\n", path.allocs);
	printf("bench: expr_5_functions %.0f evals/s\n", fn5.per_sec);
	printf("bench: expr_5_functions_allocs %.2f allocs/eval\n", fn5.allocs);
	printf("bench: expr_path_lookup_vs_cjson_get %.3f ratio\n", path.per_sec / base.per_sec);
	printf("bench: tmpl_render %.0f renders/s\n", tm.per_sec);
	printf("bench: tmpl_render_allocs %.2f allocs/render\n", tm.allocs);
	rc = 0;
out:
	op_expr_free(e1);
	op_expr_free(e5);
	cJSON_Delete(msg);
	return rc;
}
