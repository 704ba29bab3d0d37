/*
 * The scheduler and the event bus end to end in one process: a real runtime
 * (store in a temporary folder, pipelines from files, worker threads), the
 * scheduler thread on the real clock. Pipelines that fail on purpose
 * (throw-error, class invalid) are dead-lettered at once, which keeps their
 * event, its message and its trigger data for the test to read. Waits poll
 * a condition with a deadline, never a fixed sleep.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/daemon/events.h"
#include "agent/daemon/runtime.h"
#include "agent/daemon/scheduler.h"
#include "tests/unit/rt_fixture.h"
#include "tests/unit/test.h"

static struct op_rt_fixture fx;

#define NOOP_STEPS "[{\"type\":\"log\",\"config\":{\"level\":\"debug\",\"message\":\"x\"}}]"

#define FAIL_STEPS                                                                          \
	"[{\"type\":\"throw-error\",\"config\":{\"code\":\"ON_PURPOSE\",\"message\":\"x\"," \
	"\"class\":\"invalid\"}}]"

static void write_pipeline(const char *name, const char *json)
{
	op_rt_fixture_pipeline(&fx, name, json);
}

/* A pipeline with a schedule trigger; extra is more trigger config keys. */
static void write_scheduled(const char *name, const char *cron, const char *extra,
                            const char *steps)
{
	char json[2048];
	snprintf(json, sizeof(json),
	         "{\"name\":\"%s\",\"version\":\"1\",\"trigger\":{\"type\":\"schedule\","
	         "\"config\":{\"cron\":\"%s\"%s}},\"steps\":%s}",
	         name, cron, extra, steps);
	write_pipeline(name, json);
}

static void setup(void)
{
	op_rt_fixture_init(&fx, "op_test_sched");
}

static void teardown(void)
{
	op_rt_fixture_fini(&fx);
}

static void with_bus(void *ud, struct op_runtime *rt, struct op_engine *e)
{
	(void)ud;
	op_engine_set_publisher(e, op_events_publish, rt);
}

static struct op_runtime *open_rt(bool bus)
{
	struct op_runtime_hooks hooks = {.engine_new = with_bus};
	return op_rt_fixture_open(&fx, bus ? &hooks : NULL);
}

static struct op_scheduler *start_sched(struct op_runtime *rt)
{
	struct op_scheduler *s = NULL;
	ck_assert_int_eq(op_scheduler_start(rt, &s), OP_OK);
	ck_assert_ptr_nonnull(s);
	return s;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* Dead letters of pipeline (count only when evs is NULL). */
static size_t dead_of(struct op_runtime *rt, const char *pipeline, struct op_store_event ***evs)
{
	struct op_store_event **v = NULL;
	size_t n = 0;
	ck_assert_int_eq(op_store_list_dead(op_runtime_store(rt), pipeline, 100, &v, &n), OP_OK);
	if (evs == NULL) {
		op_store_events_free(v, n);
		return n;
	}
	/* The listing leaves payloads out: read each dead letter whole. */
	for (size_t i = 0; i < n; i++) {
		struct op_store_event *full = NULL;
		ck_assert_int_eq(op_store_get_dead(op_runtime_store(rt), v[i]->id, &full), OP_OK);
		op_store_event_free(v[i]);
		v[i] = full;
	}
	*evs = v;
	return n;
}

/* Execution records of pipeline with status (NULL: any). */
static size_t execs_of(struct op_runtime *rt, const char *pipeline, const char *status)
{
	struct op_store_exec **recs;
	size_t n, k = 0;
	ck_assert_int_eq(op_store_list_execs(op_runtime_store(rt), 1000, &recs, &n), OP_OK);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(recs[i]->pipeline, pipeline) == 0 &&
		    (status == NULL || strcmp(recs[i]->status, status) == 0))
			k++;
	}
	op_store_execs_free(recs, n);
	return k;
}

static int64_t stored_last_fire(struct op_runtime *rt, const char *pipeline)
{
	char key[300], *val = NULL;
	size_t len = 0;
	snprintf(key, sizeof(key), "schedule/%s", pipeline);
	op_err rc = op_store_get(op_runtime_store(rt), OP_STORE_STATE, key, &val, &len);
	if (rc == OP_ENOTFOUND)
		return -1;
	ck_assert_int_eq(rc, OP_OK);
	cJSON *j = cJSON_ParseWithLength(val, len);
	op_free(val);
	const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "lastFireMs");
	ck_assert(cJSON_IsNumber(ms));
	int64_t v = (int64_t)ms->valuedouble;
	cJSON_Delete(j);
	return v;
}

static void put_last_fire(struct op_runtime *rt, const char *pipeline, int64_t ms)
{
	char key[300], val[128];
	snprintf(key, sizeof(key), "schedule/%s", pipeline);
	int n = snprintf(val, sizeof(val), "{\"lastFireMs\":%lld}", (long long)ms);
	ck_assert_int_eq(op_store_put(op_runtime_store(rt), OP_STORE_STATE, key, val, (size_t)n),
	                 OP_OK);
}

START_TEST(every_second_fires_with_trigger_data)
{
	write_scheduled("tick", "* * * * * *", ",\"input\":{\"k\":1}", FAIL_STEPS);
	struct op_runtime *rt = open_rt(false);
	struct op_scheduler *s = start_sched(rt);
	int64_t t0 = wall_ms();
	int64_t deadline = t0 + 15000;
	while (dead_of(rt, "tick", NULL) < 2 && wall_ms() < deadline)
		pause_ms(20);
	op_scheduler_stop(s);
	struct op_store_event **evs;
	size_t n = dead_of(rt, "tick", &evs);
	ck_assert_uint_ge(n, 2);
	for (size_t i = 0; i < n; i++) {
		cJSON *m = cJSON_ParseWithLength(evs[i]->payload, evs[i]->payload_len);
		ck_assert_json_text(m, "{\"k\":1}");
		cJSON_Delete(m);
		cJSON *t = cJSON_Parse(evs[i]->trigger);
		ck_assert_ptr_nonnull(t);
		ck_assert_str_eq(cJSON_GetObjectItem(t, "type")->valuestring, "schedule");
		ck_assert_str_eq(cJSON_GetObjectItem(t, "cron")->valuestring, "* * * * * *");
		ck_assert_str_eq(cJSON_GetObjectItem(t, "timezone")->valuestring, "UTC");
		const char *at = cJSON_GetObjectItem(t, "scheduledAt")->valuestring;
		ck_assert_uint_eq(strlen(at), 20); /* 2026-11-23T17:00:00Z */
		ck_assert_int_eq(at[10], 'T');
		ck_assert_int_eq(at[19], 'Z');
		ck_assert_ptr_null(cJSON_GetObjectItem(t, "missed"));
		cJSON_Delete(t);
	}
	op_store_events_free(evs, n);
	ck_assert_uint_ge(execs_of(rt, "tick", "error"), 2);
	/* The last fire time handled is kept for the missed-run check. */
	ck_assert_int_ge(stored_last_fire(rt, "tick"), t0 - 1000);
	op_runtime_close(rt);
}
END_TEST

/* Runs about 2.5 s: a retry step waits its backoff, then the block's
 * onError turns the failure into a success. */
#define SLOW_STEPS                                                                                 \
	"[{\"type\":\"block\",\"config\":{\"steps\":[{\"type\":\"retry\",\"config\":{"             \
	"\"attempts\":2,\"backoffMs\":2500,\"jitter\":false,\"steps\":[{\"type\":\"throw-error\"," \
	"\"config\":{\"message\":\"again\",\"class\":\"retry\"}}]}}],\"onError\":[{\"type\":"      \
	"\"set\",\"config\":{\"template\":{}}}]}}]"

START_TEST(no_overlap_skips_fires_while_running)
{
	write_scheduled("slow", "* * * * * *", "", SLOW_STEPS);
	struct op_runtime *rt = open_rt(false);
	struct op_scheduler *s = start_sched(rt);
	struct op_scheduler_stats st = {0};
	int64_t deadline = wall_ms() + 20000;
	while (wall_ms() < deadline) {
		op_scheduler_stats(s, &st);
		if (st.skipped >= 2)
			break;
		pause_ms(20);
	}
	op_scheduler_stop(s);
	ck_assert_uint_ge(st.skipped, 2);
	ck_assert_uint_ge(st.fired, 1);
	/* Each run spans two or more fire times, so skips outnumber runs. */
	ck_assert_uint_le(st.fired, st.skipped);
	op_runtime_close(rt);
}
END_TEST

START_TEST(overlap_allowed_never_skips)
{
	write_scheduled("slowok", "* * * * * *", ",\"overlap\":true", SLOW_STEPS);
	struct op_runtime *rt = open_rt(false);
	struct op_scheduler *s = start_sched(rt);
	struct op_scheduler_stats st = {0};
	int64_t deadline = wall_ms() + 20000;
	while (wall_ms() < deadline) {
		op_scheduler_stats(s, &st);
		if (st.fired >= 3)
			break;
		pause_ms(20);
	}
	op_scheduler_stop(s);
	ck_assert_uint_ge(st.fired, 3);
	ck_assert_uint_eq(st.skipped, 0);
	op_runtime_close(rt);
}
END_TEST

START_TEST(missed_runs_after_downtime)
{
	write_scheduled("once", "0 0 0 * * *", ",\"missed\":\"once\",\"input\":{\"m\":1}",
	                FAIL_STEPS);
	write_scheduled("skip", "0 0 0 * * *", ",\"missed\":\"skip\"", FAIL_STEPS);
	write_scheduled("fresh", "0 0 0 * * *", ",\"missed\":\"once\"", FAIL_STEPS);
	struct op_runtime *rt = open_rt(false);
	/* Down for three days: (last, now] holds exactly three midnights. */
	int64_t last = wall_ms() - 3 * 86400000LL;
	put_last_fire(rt, "once", last);
	put_last_fire(rt, "skip", last);
	op_runtime_close(rt);

	rt = open_rt(false);
	int64_t t0 = wall_ms();
	struct op_scheduler *s = start_sched(rt);
	struct op_scheduler_stats st;
	op_scheduler_stats(s, &st);
	ck_assert_uint_eq(st.schedules, 3);
	ck_assert_uint_eq(st.missed, 6);
	ck_assert_uint_eq(st.caught_up, 1);
	ck_assert_uint_eq(st.fired, 0);
	op_scheduler_stop(s);
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);

	struct op_store_event **evs;
	size_t n = dead_of(rt, "once", &evs);
	ck_assert_uint_eq(n, 1);
	cJSON *t = cJSON_Parse(evs[0]->trigger);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(cJSON_GetObjectItem(t, "missed")->valueint, 3);
	ck_assert_ptr_nonnull(
	    strstr(cJSON_GetObjectItem(t, "scheduledAt")->valuestring, "T00:00:00Z"));
	cJSON_Delete(t);
	cJSON *m = cJSON_ParseWithLength(evs[0]->payload, evs[0]->payload_len);
	ck_assert_json_text(m, "{\"m\":1}");
	cJSON_Delete(m);
	op_store_events_free(evs, n);
	ck_assert_uint_eq(dead_of(rt, "skip", NULL), 0);
	ck_assert_uint_eq(execs_of(rt, "skip", NULL), 0);
	ck_assert_uint_eq(execs_of(rt, "fresh", NULL), 0);
	/* Handled: the latest missed midnight; first seen: now. */
	int64_t midnight = t0 - t0 % 86400000LL;
	ck_assert_int_ge(stored_last_fire(rt, "once"), midnight - 86400000LL);
	ck_assert_int_ge(stored_last_fire(rt, "skip"), midnight - 86400000LL);
	ck_assert_int_ge(stored_last_fire(rt, "fresh"), t0);
	op_runtime_close(rt);

	/* A restart right after: nothing more was missed. */
	rt = open_rt(false);
	s = start_sched(rt);
	op_scheduler_stats(s, &st);
	ck_assert_uint_eq(st.missed, 0);
	ck_assert_uint_eq(st.caught_up, 0);
	op_scheduler_stop(s);
	op_runtime_close(rt);
}
END_TEST

START_TEST(reload_adds_schedules)
{
	write_pipeline("plain", "{\"name\":\"plain\",\"version\":\"1\",\"steps\":" NOOP_STEPS "}");
	struct op_runtime *rt = open_rt(false);
	struct op_scheduler *s = start_sched(rt);
	struct op_scheduler_stats st;
	op_scheduler_stats(s, &st);
	ck_assert_uint_eq(st.schedules, 0);
	write_scheduled("tick", "* * * * * *", "", FAIL_STEPS);
	struct op_diag d;
	op_diag_init(&d);
	ck_assert_int_eq(op_runtime_reload(rt, NULL, NULL, &d), OP_OK);
	op_diag_fini(&d);
	ck_assert_int_eq(op_scheduler_reload(s), OP_OK);
	op_scheduler_stats(s, &st);
	ck_assert_uint_eq(st.schedules, 1);
	int64_t deadline = wall_ms() + 15000;
	while (wall_ms() < deadline) {
		op_scheduler_stats(s, &st);
		if (st.fired >= 1)
			break;
		pause_ms(20);
	}
	op_scheduler_stop(s);
	ck_assert_uint_ge(st.fired, 1);
	op_runtime_close(rt);
}
END_TEST

START_TEST(events_fan_out_to_each_subscriber)
{
	write_pipeline("pub", "{\"name\":\"pub\",\"version\":\"1\",\"steps\":[{\"type\":"
	                      "\"event-publish\",\"config\":{\"name\":\"orders.new\",\"payload\":"
	                      "{\"id\":\"{{ message.id }}\"}}},{\"type\":\"event-publish\","
	                      "\"config\":{\"name\":\"nobody.listens\"}}]}");
	write_pipeline("sub1",
	               "{\"name\":\"sub1\",\"version\":\"1\",\"trigger\":{\"type\":"
	               "\"event\",\"config\":{\"name\":\"orders.new\"}},\"steps\":" NOOP_STEPS "}");
	write_pipeline("sub2",
	               "{\"name\":\"sub2\",\"version\":\"1\",\"trigger\":{\"type\":"
	               "\"event\",\"config\":{\"name\":\"orders.new\"}},\"steps\":" FAIL_STEPS "}");
	write_pipeline("other",
	               "{\"name\":\"other\",\"version\":\"1\",\"trigger\":{\"type\":"
	               "\"event\",\"config\":{\"name\":\"orders.old\"}},\"steps\":" NOOP_STEPS "}");
	struct op_runtime *rt = open_rt(true);
	cJSON *out = NULL;
	struct op_fail f;
	ck_assert_int_eq(
	    op_runtime_run(rt, "pub", op_test_json("{\"id\":7,\"x\":1}"), NULL, 0, &out, &f),
	    OP_OK);
	ck_assert_json_text(out, "{\"id\":7,\"x\":1}"); /* passes through */
	cJSON_Delete(out);
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);

	ck_assert_uint_eq(execs_of(rt, "pub", "success"), 1);
	ck_assert_uint_eq(execs_of(rt, "sub1", "success"), 1);
	ck_assert_uint_eq(execs_of(rt, "sub2", "error"), 1);
	ck_assert_uint_eq(execs_of(rt, "sub2", NULL), 1);
	ck_assert_uint_eq(execs_of(rt, "other", NULL), 0);

	struct op_store_exec **recs;
	size_t nrec;
	ck_assert_int_eq(op_store_list_execs(op_runtime_store(rt), 10, &recs, &nrec), OP_OK);
	const char *pub_id = NULL;
	for (size_t i = 0; i < nrec; i++) {
		if (strcmp(recs[i]->pipeline, "pub") == 0)
			pub_id = recs[i]->id;
	}
	ck_assert_ptr_nonnull(pub_id);
	struct op_store_event **evs;
	size_t n = dead_of(rt, "sub2", &evs);
	ck_assert_uint_eq(n, 1);
	cJSON *m = cJSON_ParseWithLength(evs[0]->payload, evs[0]->payload_len);
	ck_assert_json_text(m, "{\"id\":7}");
	cJSON_Delete(m);
	cJSON *t = cJSON_Parse(evs[0]->trigger);
	ck_assert_ptr_nonnull(t);
	ck_assert_str_eq(cJSON_GetObjectItem(t, "type")->valuestring, "event");
	ck_assert_str_eq(cJSON_GetObjectItem(t, "name")->valuestring, "orders.new");
	const cJSON *pub = cJSON_GetObjectItem(t, "publisher");
	ck_assert_str_eq(cJSON_GetObjectItem(pub, "pipeline")->valuestring, "pub");
	ck_assert_str_eq(cJSON_GetObjectItem(pub, "execution_id")->valuestring, pub_id);
	cJSON_Delete(t);
	op_store_events_free(evs, n);
	op_store_execs_free(recs, nrec);
	op_runtime_close(rt);
}
END_TEST

START_TEST(publish_without_bus_fails_unsupported)
{
	write_pipeline("pub", "{\"name\":\"pub\",\"version\":\"1\",\"steps\":[{\"type\":"
	                      "\"event-publish\",\"config\":{\"name\":\"orders.new\"}}]}");
	write_pipeline("sub",
	               "{\"name\":\"sub\",\"version\":\"1\",\"trigger\":{\"type\":"
	               "\"event\",\"config\":{\"name\":\"orders.new\"}},\"steps\":" NOOP_STEPS "}");
	struct op_runtime *rt = open_rt(false);
	cJSON *out = NULL;
	struct op_fail f;
	ck_assert_int_eq(op_runtime_run(rt, "pub", op_test_json("{}"), NULL, 0, &out, &f),
	                 OP_EUNSUPPORTED);
	ck_assert_str_eq(f.code, "NO_EVENT_BUS");
	ck_assert_ptr_nonnull(strstr(f.msg, "orders.new"));
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);
	ck_assert_uint_eq(execs_of(rt, "sub", NULL), 0);
	op_runtime_close(rt);
}
END_TEST

START_TEST(bad_event_name_is_refused_at_load)
{
	write_pipeline("pub", "{\"name\":\"pub\",\"version\":\"1\",\"steps\":[{\"type\":"
	                      "\"event-publish\",\"config\":{\"name\":\"a b\"}}]}");
	struct op_diag d;
	op_diag_init(&d);
	struct op_runtime *rt = NULL;
	ck_assert_int_eq(op_runtime_open(&fx.cfg, NULL, &rt, &d), OP_ECONFIG);
	ck_assert_uint_eq(d.n, 1);
	ck_assert_ptr_nonnull(strstr(d.v[0].msg, "steps[0].config.name"));
	op_diag_fini(&d);
}
END_TEST

static Suite *scheduler_suite(void)
{
	Suite *s = suite_create("scheduler");
	TCase *tc = tcase_create("scheduler");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, every_second_fires_with_trigger_data);
	tcase_add_test(tc, no_overlap_skips_fires_while_running);
	tcase_add_test(tc, overlap_allowed_never_skips);
	tcase_add_test(tc, missed_runs_after_downtime);
	tcase_add_test(tc, reload_adds_schedules);
	tcase_add_test(tc, events_fan_out_to_each_subscriber);
	tcase_add_test(tc, publish_without_bus_fails_unsupported);
	tcase_add_test(tc, bad_event_name_is_refused_at_load);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(scheduler_suite)
