/*
 * Unit tests of the engine: config binding, loading, execution semantics
 * that are hard to reach from outpostctl (a step that fails then succeeds,
 * cancellation, concurrency) and out-of-memory at every allocation.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/log.h"
#include "agent/engine/engine.h"
#include "agent/engine/engine_int.h"
#include "connectors/validate/schema.h"
#include "tests/unit/test.h"

static struct op_pipeline *load(const char *text, struct op_diag *d)
{
	struct op_pipeline *p = NULL;
	op_err rc = op_pipeline_load(text, strlen(text), "test", d, &p);
	if (rc != OP_OK) {
		for (size_t i = 0; i < d->n; i++)
			fprintf(stderr, "  %s: %s\n", d->v[i].path, d->v[i].msg);
	}
	return p;
}

static struct op_pipeline *load_ok(const char *text)
{
	struct op_diag d;
	op_diag_init(&d);
	struct op_pipeline *p = load(text, &d);
	ck_assert_msg(p != NULL, "pipeline did not load");
	op_diag_fini(&d);
	return p;
}

static cJSON *run_text(struct op_engine *e, const struct op_pipeline *p, const char *in, op_err *rc,
                       struct op_fail *f)
{
	cJSON *out = NULL;
	*rc = op_engine_run(e, p, op_test_json(in), NULL, &out, f);
	return out;
}

START_TEST(defaults_are_bound)
{
	struct op_pipeline *p =
	    load_ok("{\"name\":\"a\",\"version\":\"1\",\"steps\":[{\"type\":\"log\",\"config\":{"
	            "\"message\":\"hi\"}}]}");
	ck_assert_int_eq(p->settings.timeout_ms, 30000);
	ck_assert_int_eq(p->settings.retry.attempts, 1);
	ck_assert(p->settings.retry.jitter);
	ck_assert_int_eq(p->settings.limits.max_depth, 64);
	ck_assert_int_eq(p->trigger.type, 0); /* manual */
	ck_assert_uint_eq(p->steps.n, 1);
	ck_assert_str_eq(p->steps.v[0].name, "steps[0]");
	ck_assert_str_eq(p->steps.v[0].type->name, "log");
	op_pipeline_free(p);
}
END_TEST

START_TEST(problems_have_paths)
{
	struct op_diag d;
	op_diag_init(&d);
	struct op_pipeline *p =
	    load("{\"name\":\"a\",\"version\":\"1\",\"settings\":{\"retry\":{\"attempts\":0,"
	         "\"multiplier\":0.5}},\"steps\":[{\"type\":\"choice\",\"config\":{\"when\":"
	         "[{\"if\":\"{{ 1 }}\",\"steps\":[{\"type\":\"set\",\"name\":7}]}]}}]}",
	         &d);
	ck_assert_ptr_null(p);
	ck_assert_uint_eq(op_diag_count(&d), 4);
	ck_assert_str_eq(d.v[0].path, "steps[0].config.when[0].steps[0].name");
	ck_assert_str_eq(d.v[0].msg, "expected string, got a number");
	ck_assert_str_eq(d.v[1].path, "steps[0].config.when[0].steps[0].config.template");
	ck_assert_str_eq(d.v[1].msg, "missing required key (JSON template)");
	ck_assert_str_eq(d.v[2].path, "settings.retry.attempts");
	ck_assert_str_eq(d.v[2].msg, "0 is out of range; expected 1 to 100");
	ck_assert_str_eq(d.v[3].path, "settings.retry.multiplier");
	op_diag_fini(&d);
}
END_TEST

/* A step that fails with a retryable class until it has been called
 * `flaky_fail_times` times. */
static atomic_int flaky_calls;
static int flaky_fail_times;

static op_err flaky_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	(void)st;
	if (atomic_fetch_add(&flaky_calls, 1) < flaky_fail_times) {
		cJSON_Delete(msg);
		return op_exec_fail(x, OP_ENOCONN, "DOWN", "peer down");
	}
	*out = msg;
	return OP_OK;
}

static struct op_step_type flaky_type = {.name = "flaky", .run = flaky_run};

static void swap_flaky(const struct op_step *st, void *ud)
{
	const struct op_step_type **saved = ud;
	if (strcmp(st->name, "flaky") == 0) {
		*saved = st->type;
		flaky_type.conf = st->type->conf;
		((struct op_step *)st)->type = &flaky_type;
	}
}

static void unswap_flaky(const struct op_step *st, void *ud)
{
	if (st->type == &flaky_type)
		((struct op_step *)st)->type = *(const struct op_step_type **)ud;
}

static const char retry_doc[] =
    "{\"name\":\"r\",\"version\":\"1\",\"steps\":[{\"type\":\"retry\",\"config\":{"
    "\"attempts\":4,\"backoffMs\":0,\"steps\":[{\"type\":\"throw-error\",\"name\":\"flaky\","
    "\"config\":{\"message\":\"x\"}}]}}]}";

static void check_retry(int fail_times, op_err want_rc, int want_calls)
{
	const struct op_step_type *orig = NULL;
	struct op_engine *e = op_engine_new();
	struct op_pipeline *p = load_ok(retry_doc);
	op_pipeline_walk(p, swap_flaky, &orig);
	ck_assert_ptr_nonnull(orig);
	flaky_fail_times = fail_times;
	atomic_store(&flaky_calls, 0);
	op_err rc;
	struct op_fail f;
	cJSON *out = run_text(e, p, "{\"v\":1}", &rc, &f);
	ck_assert_int_eq(rc, want_rc);
	ck_assert_int_eq(atomic_load(&flaky_calls), want_calls);
	if (rc == OP_OK) {
		ck_assert_json_text(out, "{\"v\":1}");
	} else {
		ck_assert_str_eq(f.code, "DOWN");
		ck_assert_str_eq(f.step, "flaky");
	}
	cJSON_Delete(out);
	op_pipeline_walk(p, unswap_flaky, &orig);
	op_pipeline_free(p);
	op_engine_free(e);
}

START_TEST(retry_succeeds_after_failures)
{
	check_retry(2, OP_OK, 3);
}
END_TEST

START_TEST(retry_gives_up_after_attempts)
{
	check_retry(10, OP_ENOCONN, 4);
}
END_TEST

START_TEST(parallel_failure_is_not_masked_by_cancellation)
{
	/* One branch fails at once; the other loops until cancelled. The
	 * reported failure must be the real one, never CANCELLED. */
	struct op_engine *e = op_engine_new();
	struct op_pipeline *p = load_ok(
	    "{\"name\":\"p\",\"version\":\"1\",\"steps\":[{\"type\":\"parallel\",\"config\":{"
	    "\"branches\":[{\"steps\":[{\"type\":\"do-while\",\"config\":{\"condition\":\"{{ "
	    "true }}\",\"maxIterations\":10000000,\"steps\":[{\"type\":\"set\",\"config\":{"
	    "\"template\":1}}]}}]},{\"steps\":[{\"type\":\"throw-error\",\"name\":\"boom\","
	    "\"config\":{\"code\":\"BOOM\",\"message\":\"x\"}}]}]}}]}");
	op_err rc;
	struct op_fail f;
	cJSON *out = run_text(e, p, "{}", &rc, &f);
	ck_assert_ptr_null(out);
	ck_assert_int_eq(rc, OP_EUSER);
	ck_assert_str_eq(f.code, "BOOM");
	op_pipeline_free(p);
	op_engine_free(e);
}
END_TEST

struct thread_arg {
	struct op_engine *e;
	const struct op_pipeline *p;
	int ok;
};

static void *run_many(void *v)
{
	struct thread_arg *a = v;
	for (int i = 0; i < 200; i++) {
		cJSON *in = cJSON_CreateObject();
		cJSON_AddNumberToObject(in, "n", i);
		cJSON *out = NULL;
		struct op_fail f;
		if (op_engine_run(a->e, a->p, in, NULL, &out, &f) == OP_OK &&
		    cJSON_GetArraySize(out) == 3 &&
		    cJSON_GetArrayItem(out, 2)->valuedouble == (double)(i * 3))
			a->ok++;
		cJSON_Delete(out);
	}
	return NULL;
}

START_TEST(runs_concurrently)
{
	struct op_engine *e = op_engine_new();
	struct op_pipeline *p = load_ok(
	    "{\"name\":\"c\",\"version\":\"1\",\"steps\":[{\"type\":\"for-each\",\"config\":{"
	    "\"items\":\"{{ [message.n, message.n, message.n] }}\",\"parallel\":true,"
	    "\"steps\":[{\"type\":\"transform\",\"config\":{\"program\":\". \"}}]}},"
	    "{\"type\":\"transform\",\"config\":{\"program\":\"[.[0], .[1], (.|add)]\"}}]}");
	pthread_t t[4];
	struct thread_arg a[4];
	for (int i = 0; i < 4; i++) {
		a[i] = (struct thread_arg){.e = e, .p = p};
		pthread_create(&t[i], NULL, run_many, &a[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(a[i].ok, 200);
	}
	op_pipeline_free(p);
	op_engine_free(e);
}
END_TEST

struct stop_arg {
	struct op_engine *e;
	const struct op_pipeline *p;
	atomic_bool stop;
	op_err rc;
	struct op_fail f;
};

static void *run_until_stopped(void *arg)
{
	struct stop_arg *a = arg;
	struct op_run_opts o = {.stop = &a->stop};
	cJSON *out = NULL;
	a->rc = op_engine_run(a->e, a->p, cJSON_CreateObject(), &o, &out, &a->f);
	cJSON_Delete(out);
	return NULL;
}

/* A run names its execution to code that logs without knowing it (jq's
 * debug), and only while it runs. */
static char *seen;

static atomic_int debug_lines, debug_named;
static const char *debug_want; /* "exec=<id>:" */

static void keep_line(enum op_log_level lvl, const char *module, const char *line, void *ud)
{
	(void)lvl;
	(void)module;
	(void)ud;
	if (strstr(line, "jq debug") == NULL)
		return;
	atomic_fetch_add(&debug_lines, 1);
	if (debug_want && strstr(line, debug_want))
		atomic_fetch_add(&debug_named, 1);
	if (seen == NULL)
		seen = strdup(line);
}

/* metadata.trigger is the caller's trigger data, in jq (both the fast form
 * and libjq's), in templates and in the branches of a parallel step; the
 * run reads it and leaves it as it was. */
START_TEST(run_sees_the_callers_trigger)
{
	struct op_pipeline *p =
	    load_ok("{\"name\":\"t\",\"version\":\"1\",\"steps\":["
	            "{\"type\":\"transform\",\"config\":{\"program\":"
	            "\"{fast: $metadata.trigger}\"}},"
	            "{\"type\":\"transform\",\"config\":{\"program\":"
	            "\". + {lib: ($metadata.trigger | to_entries | from_entries)}\"}},"
	            "{\"type\":\"parallel\",\"config\":{\"branches\":["
	            "{\"steps\":[{\"type\":\"set\",\"config\":{\"template\":"
	            "{\"m\":\"{{ message }}\",\"path\":\"{{ metadata.trigger.path }}\"}}}]}"
	            "]}}]}");
	struct op_engine *e = op_engine_new();
	cJSON *trigger = op_test_json("{\"type\":\"http\",\"path\":\"/orders/7\","
	                              "\"headers\":{\"x-a\":\"b\"},\"n\":[1,2]}");
	cJSON *before = cJSON_Duplicate(trigger, 1);
	struct op_run_opts o = {.trigger = trigger};
	cJSON *out = NULL;
	struct op_fail f;
	op_err rc = op_engine_run(e, p, op_test_json("{}"), &o, &out, &f);
	ck_assert_msg(rc == OP_OK, "%s: %s", f.code, f.msg);
	ck_assert(cJSON_Compare(trigger, before, 1));
	char *text = cJSON_PrintUnformatted(out);
	const char *t = "{\"type\":\"http\",\"path\":\"/orders/7\",\"headers\":{\"x-a\":\"b\"},"
	                "\"n\":[1,2]}";
	char want[512];
	snprintf(want, sizeof(want), "[{\"m\":{\"fast\":%s,\"lib\":%s},\"path\":\"/orders/7\"}]", t,
	         t);
	ck_assert_str_eq(text, want);
	free(text);
	cJSON_Delete(out);
	cJSON_Delete(before);
	cJSON_Delete(trigger);
	op_pipeline_free(p);
	op_engine_free(e);
}
END_TEST

START_TEST(run_names_its_execution_to_the_log)
{
	struct op_pipeline *p = load_ok("{\"name\":\"d\",\"version\":\"1\",\"steps\":[{\"type\":"
	                                "\"transform\",\"config\":{\"program\":\".n | debug\"}}]}");
	struct op_engine *e = op_engine_new();
	struct op_run_opts o = {.execution_id = "01a20e56-0000-7000-8000-000000000042"};
	cJSON *out = NULL;
	struct op_fail f;
	op_log_set_level(OP_LOG_DEBUG);
	op_log_set_sink(keep_line, NULL);
	op_err rc = op_engine_run(e, p, op_test_json("{\"n\":3}"), &o, &out, &f);
	op_log_set_sink(NULL, NULL);
	op_log_set_level(OP_LOG_INFO);
	ck_assert_int_eq(rc, OP_OK);
	ck_assert_ptr_null(op_log_exec_id());
	ck_assert_ptr_nonnull(seen);
	ck_assert_str_eq(seen, "jq debug exec=01a20e56-0000-7000-8000-000000000042: 3");
	free(seen);
	seen = NULL;
	cJSON_Delete(out);
	op_pipeline_free(p);

	/* Branches of a parallel step, on threads of their own, name it too. */
	p = load_ok(
	    "{\"name\":\"d\",\"version\":\"1\",\"steps\":[{\"type\":\"parallel\","
	    "\"config\":{\"maxParallel\":4,\"branches\":["
	    "{\"steps\":[{\"type\":\"transform\",\"config\":{\"program\":\".n | debug\"}}]},"
	    "{\"steps\":[{\"type\":\"transform\",\"config\":{\"program\":\".n | debug\"}}]},"
	    "{\"steps\":[{\"type\":\"transform\",\"config\":{\"program\":\".n | debug\"}}]},"
	    "{\"steps\":[{\"type\":\"transform\",\"config\":{\"program\":\".n | debug\"}}]}"
	    "]}}]}");
	atomic_store(&debug_lines, 0);
	atomic_store(&debug_named, 0);
	debug_want = "jq debug exec=01a20e56-0000-7000-8000-000000000042: 3";
	op_log_set_level(OP_LOG_DEBUG);
	op_log_set_sink(keep_line, NULL);
	rc = op_engine_run(e, p, op_test_json("{\"n\":3}"), &o, &out, &f);
	op_log_set_sink(NULL, NULL);
	op_log_set_level(OP_LOG_INFO);
	debug_want = NULL;
	ck_assert_int_eq(rc, OP_OK);
	ck_assert_int_eq(atomic_load(&debug_lines), 4);
	ck_assert_int_eq(atomic_load(&debug_named), 4);
	ck_assert_ptr_null(op_log_exec_id());
	free(seen);
	seen = NULL;
	cJSON_Delete(out);
	op_engine_free(e);
	op_pipeline_free(p);
}
END_TEST

/* The retry wait: exponential, capped, and with jitter spread over [w/2, w]. */
START_TEST(retry_waits_grow_cap_and_jitter)
{
	struct op_retry_policy r = {
	    .attempts = 10, .backoff_ms = 1000, .max_backoff_ms = 5000, .multiplier = 2};
	static const long long want[] = {1000, 2000, 4000, 5000, 5000};
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(op_retry_wait_ms(&r, i + 1), want[i]);
	r.multiplier = 1;
	ck_assert_int_eq(op_retry_wait_ms(&r, 7), 1000);
	r.multiplier = 2;
	r.jitter = true;
	long long lo = 1 << 30, hi = 0;
	for (int i = 0; i < 2000; i++) {
		long long w = op_retry_wait_ms(&r, 3);
		ck_assert_int_ge(w, 2000);
		ck_assert_int_le(w, 4000);
		lo = w < lo ? w : lo;
		hi = w > hi ? w : hi;
	}
	/* 2000 draws from 2001 values: both ends of the range are near. */
	ck_assert_int_lt(lo, 2100);
	ck_assert_int_gt(hi, 3900);
	r.backoff_ms = r.max_backoff_ms = 1;
	ck_assert_int_eq(op_retry_wait_ms(&r, 1), 1);
}
END_TEST

/* The owner of a run stops it: the run fails with CANCELLED at its next step,
 * without running onError, however far it got. */
START_TEST(owner_stops_a_run)
{
	struct op_engine *e = op_engine_new();
	struct op_pipeline *p =
	    load_ok("{\"name\":\"loop\",\"version\":\"1\",\"settings\":{\"timeoutMs\":600000,"
	            "\"limits\":{\"maxIterations\":100000000,\"maxSteps\":100000000}},"
	            "\"steps\":[{\"type\":\"do-while\",\"config\":{\"condition\":\"{{ true }}\","
	            "\"maxIterations\":10000000,\"steps\":[{\"type\":\"log\",\"config\":{"
	            "\"level\":\"debug\",\"message\":\"x\"}}]}}],"
	            "\"onError\":[{\"type\":\"set\",\"config\":{\"template\":\"handled\"}}]}");
	struct stop_arg a = {.e = e, .p = p};
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, run_until_stopped, &a), 0);
	atomic_store(&a.stop, true);
	pthread_join(t, NULL);
	ck_assert_int_eq(a.rc, OP_ECANCELED);
	ck_assert_str_eq(a.f.code, "CANCELLED");
	ck_assert(a.f.run_level);
	op_pipeline_free(p);
	op_engine_free(e);
}
END_TEST

START_TEST(output_path_needs_an_object)
{
	struct op_engine *e = op_engine_new();
	struct op_pipeline *p = load_ok(
	    "{\"name\":\"o\",\"version\":\"1\",\"steps\":[{\"type\":\"set\",\"output\":\"a.b\","
	    "\"config\":{\"template\":\"{{ message.a }}\"}}]}");
	op_err rc;
	struct op_fail f;
	cJSON *out = run_text(e, p, "{\"a\":{\"x\":1}}", &rc, &f);
	ck_assert_int_eq(rc, OP_OK);
	ck_assert_json_text(out, "{\"a\":{\"x\":1,\"b\":{\"x\":1}}}");
	cJSON_Delete(out);
	out = run_text(e, p, "{\"a\":[1]}", &rc, &f);
	ck_assert_int_eq(rc, OP_EINVAL);
	ck_assert_str_eq(f.code, "OUTPUT_PATH");
	ck_assert_ptr_null(out);
	op_pipeline_free(p);
	op_engine_free(e);
}
END_TEST

static const char oom_doc[] =
    "{\"name\":\"oom\",\"version\":\"1\",\"settings\":{\"sensitiveFields\":[\"pw\"]},"
    "\"steps\":[{\"type\":\"validate\",\"config\":{\"schema\":{\"type\":\"object\","
    "\"required\":[\"a\"]}}},{\"type\":\"set\",\"output\":\"r\",\"config\":{\"template\":{"
    "\"x\":\"{{ UPPER(message.s) }}\"}}},{\"type\":\"choice\",\"config\":{\"when\":[{\"if\":"
    "\"{{ message.a > 1 }}\",\"steps\":[{\"type\":\"log\",\"config\":{\"level\":\"debug\","
    "\"message\":\"{{ message }}\"}}]}]}},{\"type\":\"for-each\",\"config\":{\"items\":\"{{ "
    "message.list }}\",\"steps\":[{\"type\":\"transform\",\"config\":{\"program\":\". + 1\"}}]}}],"
    "\"onError\":[{\"type\":\"set\",\"config\":{\"template\":\"{{ message.code }}\"}}]}";

/* A pipeline waits when any of its steps may: nested ones and onError's
 * count; logic and data steps alone do not. */
START_TEST(waits_when_a_step_may)
{
	struct op_pipeline *p = load_ok(oom_doc);
	ck_assert(!p->waits);
	op_pipeline_free(p);
	static const char *const waiting[] = {
	    "{\"name\":\"w\",\"version\":\"1\",\"steps\":[{\"type\":\"choice\",\"config\":{"
	    "\"when\":[{\"if\":\"{{ message.a }}\",\"steps\":[{\"type\":\"rest\",\"config\":{"
	    "\"url\":\"http://127.0.0.1:9/x\"}}]}]}}]}",
	    "{\"name\":\"w\",\"version\":\"1\",\"steps\":[{\"type\":\"set\",\"config\":{"
	    "\"template\":{}}}],\"onError\":[{\"type\":\"event-publish\",\"config\":{\"name\":"
	    "\"failed\"}}]}",
	    "{\"name\":\"w\",\"version\":\"1\",\"steps\":[{\"type\":\"retry\",\"config\":{"
	    "\"steps\":[{\"type\":\"set\",\"config\":{\"template\":{}}}]}}]}",
	};
	for (size_t i = 0; i < sizeof(waiting) / sizeof(waiting[0]); i++) {
		p = load_ok(waiting[i]);
		ck_assert_msg(p->waits, "pipeline %zu", i);
		op_pipeline_free(p);
	}
}
END_TEST

START_TEST(out_of_memory_anywhere)
{
	/* Fail the n-th allocation for every n that the load and the run make:
	 * each must end cleanly with OP_ENOMEM (or succeed), never crash or
	 * leak (the ASan run checks the leaks). */
	int ok_runs = 0;
	bool reached_end = false;
	for (uint64_t n = 1; n < 100000 && !reached_end; n++) {
		struct op_diag d;
		op_diag_init(&d);
		struct op_pipeline *p = NULL;
		uint64_t c0 = op_alloc_count();
		op_alloc_fail_at(n);
		op_err rc = op_pipeline_load(oom_doc, strlen(oom_doc), "oom", &d, &p);
		op_alloc_fail_at(0);
		bool load_untouched = op_alloc_count() - c0 < n;
		op_diag_fini(&d);
		if (rc != OP_OK) {
			ck_assert_msg(rc == OP_ENOMEM || rc == OP_ECONFIG || rc == OP_EPARSE,
			              "load failed with %s at n=%llu", op_err_name(rc),
			              (unsigned long long)n);
			continue;
		}
		struct op_engine *e = op_engine_new();
		ck_assert_ptr_nonnull(e);
		cJSON *in = op_test_json("{\"a\":2,\"s\":\"abc\",\"pw\":1,\"list\":[1,2,3]}");
		cJSON *out = NULL;
		struct op_fail f;
		c0 = op_alloc_count();
		op_alloc_fail_at(n);
		rc = op_engine_run(e, p, in, NULL, &out, &f);
		op_alloc_fail_at(0);
		if (rc == OP_OK) {
			ok_runs++;
			ck_assert_ptr_nonnull(out);
			/* Neither the load nor the run reached the n-th allocation:
			 * every larger n would repeat this run. */
			reached_end = load_untouched && op_alloc_count() - c0 < n;
		}
		cJSON_Delete(out);
		op_pipeline_free(p);
		op_engine_free(e);
	}
	ck_assert_int_gt(ok_runs, 0);
	ck_assert_msg(reached_end, "load and run never completed without a failed allocation");
}
END_TEST

START_TEST(generated_schema_accepts_the_demo)
{
	cJSON *schema = op_pipeline_json_schema();
	ck_assert_ptr_nonnull(schema);
	struct op_schema *s = NULL;
	char err[256];
	ck_assert_int_eq(op_schema_compile(schema, 0, &s, err, sizeof(err)), OP_OK);
	FILE *f = fopen("packaging/demo/pipelines/demo-orders.json", "r");
	ck_assert_ptr_nonnull(f);
	char buf[16384];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	cJSON *doc = op_test_json(buf);
	bool valid = false;
	ck_assert_int_eq(op_schema_validate(s, doc, &valid, NULL, 0), OP_OK);
	ck_assert(valid);
	cJSON *bad = op_test_json(
	    "{\"name\":\"x\",\"version\":\"1\",\"steps\":[{\"type\":\"choice\",\"config\":{"
	    "\"when\":[{\"if\":\"x\"}]}}]}");
	ck_assert_int_eq(op_schema_validate(s, bad, &valid, NULL, 0), OP_OK);
	ck_assert(!valid);
	cJSON_Delete(bad);
	cJSON_Delete(doc);
	op_schema_free(s);
	cJSON_Delete(schema);
}
END_TEST

static Suite *engine_suite(void)
{
	Suite *s = suite_create("engine");
	TCase *tc = tcase_create("engine");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, defaults_are_bound);
	tcase_add_test(tc, waits_when_a_step_may);
	tcase_add_test(tc, problems_have_paths);
	tcase_add_test(tc, retry_succeeds_after_failures);
	tcase_add_test(tc, retry_gives_up_after_attempts);
	tcase_add_test(tc, parallel_failure_is_not_masked_by_cancellation);
	tcase_add_test(tc, runs_concurrently);
	tcase_add_test(tc, output_path_needs_an_object);
	tcase_add_test(tc, retry_waits_grow_cap_and_jitter);
	tcase_add_test(tc, run_sees_the_callers_trigger);
	tcase_add_test(tc, run_names_its_execution_to_the_log);
	tcase_add_test(tc, owner_stops_a_run);
	tcase_add_test(tc, out_of_memory_anywhere);
	tcase_add_test(tc, generated_schema_accepts_the_demo);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(engine_suite)
