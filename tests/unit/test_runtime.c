/*
 * The runtime end to end in one process: a real store in a temporary folder,
 * pipelines from files, real worker threads. Waits are on conditions with
 * deadlines (op_runtime_wait_idle), never fixed sleeps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/daemon/runtime.h"
#include "tests/unit/rt_fixture.h"
#include "tests/unit/test.h"

static struct op_rt_fixture fx;

static void write_pipeline(const char *name, const char *json)
{
	op_rt_fixture_pipeline(&fx, name, json);
}

static void setup(void)
{
	op_rt_fixture_init(&fx, "op_test_runtime");
	fx.cfg.agent.workers = 3;
	write_pipeline("ok", "{\"name\":\"ok\",\"version\":\"1.2\",\"steps\":[{\"type\":\"set\","
	                     "\"config\":{\"template\":{\"n\":\"{{ message.n * 2 }}\"}}}]}");
	write_pipeline("flaky", "{\"name\":\"flaky\",\"version\":\"1\",\"settings\":{\"retry\":{"
	                        "\"attempts\":3,\"backoffMs\":1,\"jitter\":false}},\"steps\":[{"
	                        "\"type\":\"throw-error\",\"config\":{\"code\":\"DOWN\","
	                        "\"message\":\"peer down\",\"class\":\"noconn\"}}]}");
	write_pipeline("bad", "{\"name\":\"bad\",\"version\":\"1\",\"settings\":{\"retry\":{"
	                      "\"attempts\":3,\"backoffMs\":1}},\"steps\":[{\"type\":"
	                      "\"throw-error\",\"config\":{\"code\":\"NOPE\",\"message\":\"no\","
	                      "\"class\":\"invalid\"}}]}");
}

static void teardown(void)
{
	op_rt_fixture_fini(&fx);
}

static struct op_runtime *open_rt(void)
{
	return op_rt_fixture_open(&fx, NULL);
}

static void submit(struct op_runtime *rt, const char *pipeline, int n)
{
	cJSON *m = cJSON_CreateObject();
	cJSON_AddNumberToObject(m, "n", n);
	char id[OP_UUID_LEN + 1];
	ck_assert_int_eq(op_runtime_submit(rt, pipeline, m, NULL, id), OP_OK);
	ck_assert_uint_eq(strlen(id), OP_UUID_LEN);
	cJSON_Delete(m);
}

/* "spin": loops while globals.spin is true; at most concurrency at once. */
static void write_spin(int concurrency)
{
	char json[1024];
	snprintf(json, sizeof(json),
	         "{\"name\":\"spin\",\"version\":\"1\",\"settings\":{\"concurrency\":%d,"
	         "\"timeoutMs\":600000,\"limits\":{\"maxIterations\":100000000,\"maxSteps\":"
	         "100000000}},\"steps\":[{\"type\":\"do-while\",\"config\":{\"condition\":"
	         "\"{{ globals.spin == true }}\",\"maxIterations\":10000000,\"steps\":[{\"type\":"
	         "\"log\",\"config\":{\"level\":\"debug\",\"message\":\"x\"}}]}}]}",
	         concurrency);
	write_pipeline("spin", json);
}

START_TEST(events_run_and_are_recorded)
{
	struct op_runtime *rt = open_rt();
	for (int i = 0; i < 40; i++)
		submit(rt, "ok", i);
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);
	struct op_runtime_counts c;
	op_runtime_counts(rt, &c);
	ck_assert_uint_eq(c.succeeded, 40);
	struct op_store_exec **recs;
	size_t n;
	ck_assert_int_eq(op_store_list_execs(op_runtime_store(rt), 100, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 40);
	for (size_t i = 0; i < n; i++) {
		ck_assert_str_eq(recs[i]->status, "success");
		ck_assert_str_eq(recs[i]->pipeline, "ok");
		ck_assert_str_eq(recs[i]->version, "1.2");
		ck_assert_uint_eq(recs[i]->attempt, 1);
		ck_assert_uint_eq(strlen(recs[i]->event_id), OP_UUID_LEN);
	}
	op_store_execs_free(recs, n);
	char id[OP_UUID_LEN + 1];
	cJSON *m = cJSON_CreateObject();
	ck_assert_int_eq(op_runtime_submit(rt, "nosuch", m, NULL, id), OP_ENOTFOUND);
	cJSON_Delete(m);
	op_runtime_close(rt);
}
END_TEST

START_TEST(retryable_failures_retry_then_dead_letter)
{
	struct op_runtime *rt = open_rt();
	submit(rt, "flaky", 1);
	submit(rt, "bad", 1);
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);
	struct op_runtime_counts c;
	op_runtime_counts(rt, &c);
	ck_assert_uint_eq(c.retried, 2); /* flaky: attempts 1 and 2 */
	ck_assert_uint_eq(c.dead, 2);    /* flaky after attempt 3, bad at once */
	struct op_store_event **evs;
	size_t n;
	ck_assert_int_eq(op_store_list_dead(op_runtime_store(rt), "flaky", 10, &evs, &n), OP_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(evs[0]->attempt, 3);
	ck_assert_ptr_nonnull(strstr(evs[0]->error, "DOWN: peer down"));
	op_store_events_free(evs, n);
	ck_assert_int_eq(op_store_list_dead(op_runtime_store(rt), "bad", 10, &evs, &n), OP_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(evs[0]->attempt, 1);
	op_store_events_free(evs, n);
	op_runtime_close(rt);
}
END_TEST

/* Opens the runtime's store, queues an event of pipeline for each digit of
 * enqueue, takes n and closes it with them in flight: at the next open they
 * come back as if the agent had crashed. */
static void crash_with_taken_of(const char *pipeline, int n, const char *enqueue)
{
	char dir[600], err[256];
	snprintf(dir, sizeof(dir), "%s/store", fx.dir);
	struct op_store_opts o = {.dir = dir};
	struct op_store *s = NULL;
	ck_assert_int_eq(op_store_open(&o, &s, err, sizeof(err)), OP_OK);
	for (const char *p = enqueue; p && *p; p++) {
		char body[32];
		snprintf(body, sizeof(body), "{\"n\":%d}", *p - '0');
		ck_assert_int_eq(op_store_enqueue(s, pipeline, NULL, body, strlen(body), 0, NULL),
		                 OP_OK);
	}
	for (int i = 0; i < n; i++) {
		struct op_store_event *ev = NULL;
		ck_assert_int_eq(op_store_take(s, pipeline, 1, &ev), OP_OK);
		op_store_event_free(ev);
	}
	op_store_close(s);
}

static void crash_with_taken(int n, const char *enqueue)
{
	crash_with_taken_of("ok", n, enqueue);
}

/* An event in flight at three stops in a row (the policy allows 1 attempt,
 * so the bound is 3) is dead-lettered, not run a fourth time; one in flight
 * at one stop runs again. */
START_TEST(event_that_stops_the_agent_is_dead_lettered)
{
	crash_with_taken(2, "12"); /* 1 and 2 at attempt 2 */
	crash_with_taken(1, NULL); /* 1 at attempt 3 */
	crash_with_taken(1, NULL); /* 1 at attempt 4 */
	struct op_runtime *rt = open_rt();
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);
	struct op_runtime_counts c;
	op_runtime_counts(rt, &c);
	ck_assert_uint_eq(c.dead, 1);
	ck_assert_uint_eq(c.succeeded, 1);
	struct op_store_event **evs;
	size_t n;
	ck_assert_int_eq(op_store_list_dead(op_runtime_store(rt), "ok", 10, &evs, &n), OP_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(evs[0]->attempt, 4);
	ck_assert_ptr_nonnull(strstr(evs[0]->error, "AGENT_STOPPED: the agent stopped during this "
	                                            "event's last attempt, 3 of 3 at most"));
	op_store_events_free(evs, n);
	op_runtime_close(rt);
}
END_TEST

START_TEST(sync_run_returns_and_records)
{
	struct op_runtime *rt = open_rt();
	cJSON *out = NULL;
	struct op_fail f;
	ck_assert_int_eq(op_runtime_run(rt, "ok", op_test_json("{\"n\":21}"), NULL, 0, &out, &f),
	                 OP_OK);
	ck_assert_json_text(out, "{\"n\":42}");
	cJSON_Delete(out);
	ck_assert_int_eq(op_runtime_run(rt, "bad", op_test_json("{}"), NULL, 0, &out, &f),
	                 OP_EINVAL);
	ck_assert_str_eq(f.code, "NOPE");
	ck_assert_int_eq(op_runtime_run(rt, "nosuch", op_test_json("{}"), NULL, 0, &out, &f),
	                 OP_ENOTFOUND);
	ck_assert_str_eq(f.code, "PIPELINE_NOT_FOUND");
	/* Records of synchronous runs are written without waiting: flush first. */
	ck_assert_int_eq(op_store_flush(op_runtime_store(rt)), OP_OK);
	struct op_store_exec **recs;
	size_t n;
	ck_assert_int_eq(op_store_list_execs(op_runtime_store(rt), 10, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(recs[0]->status, "error");
	ck_assert_ptr_nonnull(strstr(recs[0]->error, "NOPE"));
	ck_assert_str_eq(recs[1]->status, "success");
	op_store_execs_free(recs, n);
	op_runtime_close(rt);
}
END_TEST

/* [store] exec_retention = 0 keeps no execution records (the store's own
 * 0 means its default). */
START_TEST(exec_retention_zero_keeps_none)
{
	fx.cfg.store.exec_retention = 0;
	struct op_runtime *rt = open_rt();
	cJSON *out = NULL;
	struct op_fail f;
	ck_assert_int_eq(op_runtime_run(rt, "ok", op_test_json("{\"n\":1}"), NULL, 0, &out, &f),
	                 OP_OK);
	cJSON_Delete(out);
	ck_assert_int_eq(op_store_flush(op_runtime_store(rt)), OP_OK);
	struct op_store_exec **recs;
	size_t n;
	ck_assert_int_eq(op_store_list_execs(op_runtime_store(rt), 10, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 0);
	op_store_execs_free(recs, n);
	op_runtime_close(rt);
}
END_TEST

/* A run on a set held from before a reload runs that set's pipeline: the
 * version the request was routed by, also when the reload changed it or
 * took it away; without a set, the current one. */
START_TEST(run_on_a_held_set)
{
	struct op_runtime *rt = open_rt();
	struct op_runtime_set *old = op_runtime_get(rt);
	write_pipeline("ok", "{\"name\":\"ok\",\"version\":\"2\",\"steps\":[{\"type\":\"set\","
	                     "\"config\":{\"template\":{\"v\":2}}}]}");
	char path[400];
	snprintf(path, sizeof(path), "%s/flaky.json", fx.pdir);
	ck_assert_int_eq(unlink(path), 0);
	struct op_diag d;
	op_diag_init(&d);
	ck_assert_int_eq(op_runtime_reload(rt, NULL, NULL, &d), OP_OK);
	op_diag_fini(&d);
	cJSON *out = NULL;
	struct op_fail f;
	ck_assert_int_eq(
	    op_runtime_run_on(rt, old, "ok", op_test_json("{\"n\":4}"), NULL, 0, NULL, &out, &f),
	    OP_OK);
	ck_assert_json_text(out, "{\"n\":8}");
	cJSON_Delete(out);
	ck_assert_int_eq(
	    op_runtime_run_on(rt, NULL, "ok", op_test_json("{\"n\":4}"), NULL, 0, NULL, &out, &f),
	    OP_OK);
	ck_assert_json_text(out, "{\"v\":2}");
	cJSON_Delete(out);
	/* flaky is gone from the current set, not from the held one. */
	ck_assert_int_ne(
	    op_runtime_run_on(rt, old, "flaky", op_test_json("{}"), NULL, 0, NULL, &out, &f),
	    OP_ENOTFOUND);
	ck_assert_str_eq(f.code, "DOWN"); /* it ran, and threw */
	ck_assert_int_eq(op_runtime_run(rt, "flaky", op_test_json("{}"), NULL, 0, &out, &f),
	                 OP_ENOTFOUND);
	op_runtime_put(rt, old);
	op_runtime_close(rt);
}
END_TEST

START_TEST(reload_is_whole_or_refused)
{
	struct op_runtime *rt = open_rt();
	write_pipeline("late", "{\"name\":\"late\",\"version\":\"1\",\"steps\":[{\"type\":\"log\","
	                       "\"config\":{\"message\":\"hi\",\"level\":\"debug\"}}]}");
	struct op_diag d;
	op_diag_init(&d);
	ck_assert_int_eq(op_runtime_reload(rt, NULL, NULL, &d), OP_OK);
	submit(rt, "late", 1);
	/* A broken file refuses the new set whole; the running set goes on. */
	write_pipeline("broken", "{\"name\":\"broken\",\"version\":\"1\",\"steps\":[{\"type\":"
	                         "\"nosuch\"}]}");
	write_pipeline("later",
	               "{\"name\":\"later\",\"version\":\"1\",\"steps\":[{\"type\":\"log\","
	               "\"config\":{\"message\":\"hi\"}}]}");
	ck_assert_int_eq(op_runtime_reload(rt, NULL, NULL, &d), OP_ECONFIG);
	ck_assert_uint_eq(d.n, 1);
	ck_assert_ptr_nonnull(strstr(d.v[0].path, "broken.json"));
	ck_assert_ptr_nonnull(strstr(d.v[0].msg, "steps[0].type: unknown step type"));
	op_diag_fini(&d);
	cJSON *m = cJSON_CreateObject();
	char id[OP_UUID_LEN + 1];
	ck_assert_int_eq(op_runtime_submit(rt, "later", m, NULL, id), OP_ENOTFOUND);
	cJSON_Delete(m);
	submit(rt, "late", 2);
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);
	struct op_runtime_counts c;
	op_runtime_counts(rt, &c);
	ck_assert_uint_eq(c.succeeded, 2);
	op_runtime_close(rt);
}
END_TEST

/* Shutdown stops an execution that outlives shutdown_timeout; its event goes
 * back to the queue and runs again after the next open. */
START_TEST(shutdown_requeues_running_events)
{
	write_spin(1);
	cJSON_AddTrueToObject(fx.cfg.globals, "spin");
	struct op_runtime *rt = open_rt();
	submit(rt, "spin", 1);
	/* Wait (bounded) until a worker holds it. */
	struct op_store_stats st = {0};
	for (int i = 0; i < 20000; i++) {
		ck_assert_int_eq(op_store_stats(op_runtime_store(rt), &st), OP_OK);
		if (st.inflight == 1)
			break;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_uint_eq(st.inflight, 1);
	op_runtime_close(rt);

	/* Next start: the event is queued again, attempt 2; let it finish now. */
	cJSON_ReplaceItemInObject(fx.cfg.globals, "spin", cJSON_CreateFalse());
	rt = open_rt();
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);
	struct op_store_exec **recs;
	size_t n;
	ck_assert_int_eq(op_store_list_execs(op_runtime_store(rt), 10, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(recs[0]->status, "success");
	ck_assert_uint_eq(recs[0]->attempt, 2);
	ck_assert_str_eq(recs[1]->status, "interrupted");
	ck_assert_ptr_nonnull(strstr(recs[1]->error, "CANCELLED"));
	op_store_execs_free(recs, n);
	op_runtime_close(rt);
}
END_TEST

/* Events a graceful stop took but did not start go back as they were: with
 * three workers and six events of a pipeline allowed ten at once, three run
 * and three wait taken; after the stop the three that ran are back at
 * attempt 2 (interrupted), the other three at attempt 1, and none is marked
 * as redelivered after a crash. */
START_TEST(parked_events_go_back_at_a_stop)
{
	/* Waits between attempts of a step that keeps failing, for minutes: the
	 * stop comes long before. */
	write_pipeline("wait",
	               "{\"name\":\"wait\",\"version\":\"1\",\"settings\":{\"concurrency\":10,"
	               "\"timeoutMs\":600000},\"steps\":[{\"type\":\"retry\",\"config\":{"
	               "\"attempts\":100,\"backoffMs\":5000,\"jitter\":false,\"multiplier\":1,"
	               "\"steps\":[{\"type\":\"throw-error\",\"config\":{\"message\":\"not yet\","
	               "\"class\":\"retry\"}}]}}]}");
	fx.cfg.agent.shutdown_timeout_ms = 100;
	/* Queued before the start: the first take gets all six. */
	crash_with_taken_of("wait", 0, "123456");
	struct op_runtime *rt = open_rt();
	struct op_store_stats st = {0};
	struct op_runtime_counts c = {0};
	for (int i = 0; i < 10000; i++) {
		ck_assert_int_eq(op_store_stats(op_runtime_store(rt), &st), OP_OK);
		op_runtime_counts(rt, &c);
		if (c.running == 3 && st.inflight == 6)
			break;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_uint_eq(c.running, 3);
	ck_assert_uint_eq(st.inflight, 6); /* three of them taken, not started */
	op_runtime_close(rt);

	char dir[600], err[256];
	snprintf(dir, sizeof(dir), "%s/store", fx.dir);
	struct op_store_opts o = {.dir = dir};
	struct op_store *s = NULL;
	ck_assert_int_eq(op_store_open(&o, &s, err, sizeof(err)), OP_OK);
	int at[3] = {0};
	for (int i = 0; i < 6; i++) {
		struct op_store_event *ev = NULL;
		ck_assert_int_eq(op_store_take(s, "wait", INT64_MAX, &ev), OP_OK);
		ck_assert_msg(!ev->redelivered, "event %d came back as after a crash: %s", i,
		              ev->error ? ev->error : "");
		ck_assert_uint_le(ev->attempt, 2);
		at[ev->attempt]++;
		op_store_event_free(ev);
	}
	ck_assert_int_eq(at[2], 3); /* interrupted */
	ck_assert_int_eq(at[1], 3); /* never started */
	op_store_close(s);
}
END_TEST

/* One worker while idle; under concurrent work the pool grows to
 * agent.workers (3) and runs that many at once, never more. */
START_TEST(worker_pool_grows_on_demand)
{
	write_spin(10);
	cJSON_AddTrueToObject(fx.cfg.globals, "spin");
	struct op_runtime *rt = open_rt();
	struct op_runtime_counts c;
	op_runtime_counts(rt, &c);
	ck_assert_uint_eq(c.workers, 1);
	ck_assert_uint_eq(c.running, 0);
	for (int i = 0; i < 5; i++)
		submit(rt, "spin", i);
	uint64_t most = 0;
	for (int i = 0; i < 20000; i++) {
		op_runtime_counts(rt, &c);
		if (c.running > most)
			most = c.running;
		if (c.running == 3)
			break;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_uint_eq(most, 3);
	ck_assert_uint_eq(c.workers, 3);
	/* Two more are queued, none starts: every worker is busy. */
	for (int i = 0; i < 50; i++) {
		op_runtime_counts(rt, &c);
		ck_assert_uint_le(c.running, 3);
		ck_assert_uint_eq(c.workers, 3);
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	op_runtime_close(rt);
}
END_TEST

static Suite *runtime_suite(void)
{
	Suite *s = suite_create("runtime");
	TCase *tc = tcase_create("runtime");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, events_run_and_are_recorded);
	tcase_add_test(tc, retryable_failures_retry_then_dead_letter);
	tcase_add_test(tc, sync_run_returns_and_records);
	tcase_add_test(tc, event_that_stops_the_agent_is_dead_lettered);
	tcase_add_test(tc, exec_retention_zero_keeps_none);
	tcase_add_test(tc, reload_is_whole_or_refused);
	tcase_add_test(tc, run_on_a_held_set);
	tcase_add_test(tc, shutdown_requeues_running_events);
	tcase_add_test(tc, worker_pool_grows_on_demand);
	tcase_add_test(tc, parked_events_go_back_at_a_stop);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(runtime_suite)
