/*
 * The admin JSON API driven directly through op_admin_handle(), on a real
 * runtime (store in a temporary folder, pipelines from files, real workers).
 * Waits are on conditions with deadlines (op_runtime_wait_idle).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/daemon/admin.h"
#include "tests/unit/rt_fixture.h"
#include "tests/unit/test.h"

static struct op_rt_fixture fx;

static void write_pipeline(const char *name, const char *json)
{
	op_rt_fixture_pipeline(&fx, name, json);
}

static void setup(void)
{
	op_rt_fixture_init(&fx, "op_test_admin");
	write_pipeline("ok", "{\"name\":\"ok\",\"version\":\"1.2\",\"trigger\":{\"type\":\"http\","
	                     "\"config\":{\"method\":\"POST\",\"path\":\"/ok/{id}\",\"mode\":"
	                     "\"async\"}},\"steps\":[{\"type\":\"set\",\"config\":{\"template\":"
	                     "{\"n\":\"{{ message.n }}\"}}}]}");
	write_pipeline("bad", "{\"name\":\"bad\",\"version\":\"7\",\"steps\":[{\"type\":"
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

static void submit(struct op_runtime *rt, const char *pipeline, int n, char id[OP_UUID_LEN + 1])
{
	cJSON *m = cJSON_CreateObject();
	cJSON_AddNumberToObject(m, "n", n);
	ck_assert_int_eq(op_runtime_submit(rt, pipeline, m, NULL, id), OP_OK);
	cJSON_Delete(m);
}

/* Calls the API: method, path and query (JSON object text or NULL). Returns
 * the parsed body (caller deletes) and the status in *status. */
static cJSON *api(struct op_runtime *rt, const char *method, const char *path, const char *query,
                  int *status)
{
	cJSON *q = query ? op_test_json(query) : cJSON_CreateObject();
	cJSON *h = cJSON_CreateObject();
	struct op_http_request req = {.method = method,
	                              .path = path,
	                              .query = q,
	                              .headers = h,
	                              .body = "",
	                              .content_type = "",
	                              .remote_addr = "127.0.0.1"};
	struct op_http_response resp = {0};
	ck_assert(op_admin_is_api(path));
	ck_assert_int_eq(op_admin_handle(rt, &req, &resp), OP_OK);
	cJSON_Delete(q);
	cJSON_Delete(h);
	*status = resp.status;
	ck_assert_ptr_nonnull(resp.body);
	cJSON *v = cJSON_ParseWithLength(resp.body, resp.body_len);
	ck_assert_ptr_nonnull(v);
	if (resp.status == 405) {
		const cJSON *allow = cJSON_GetObjectItemCaseSensitive(resp.headers, "Allow");
		ck_assert_ptr_nonnull(allow);
		cJSON_AddStringToObject(v, "allow", allow->valuestring);
	}
	op_http_response_fini(&resp);
	return v;
}

static const char *error_code(const cJSON *v)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(v, "error");
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "code"));
}

static const cJSON *find(const cJSON *a, const char *key, const char *val)
{
	const cJSON *it;
	cJSON_ArrayForEach (it, a) {
		const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, key));
		if (s && strcmp(s, val) == 0)
			return it;
	}
	return NULL;
}

/* s as JSON string text (ids need no escaping). */
static const char *quoted(const char *s, char out[64])
{
	snprintf(out, 64, "\"%s\"", s);
	return out;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

START_TEST(pipelines_show_trigger_queue_and_dead_letters)
{
	struct op_runtime *rt = open_rt();
	char id[OP_UUID_LEN + 1];
	submit(rt, "bad", 1, id);
	submit(rt, "bad", 2, id);
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);
	/* Due in an hour: stays queued. */
	ck_assert_int_eq(
	    op_store_enqueue(op_runtime_store(rt), "ok", NULL, "{}", 2, now_ms() + 3600000, NULL),
	    OP_OK);
	int st;
	cJSON *v = api(rt, "GET", "/api/pipelines", NULL, &st);
	ck_assert_int_eq(st, 200);
	ck_assert_int_eq(cJSON_GetArraySize(v), 2);
	const cJSON *ok = find(v, "name", "ok");
	ck_assert_ptr_nonnull(ok);
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(ok, "trigger"),
	                    "{\"type\":\"http\",\"method\":\"POST\",\"path\":\"/ok/{id}\","
	                    "\"mode\":\"async\"}");
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(ok, "queued"), "1");
	ck_assert(cJSON_GetObjectItemCaseSensitive(ok, "queuedBytes")->valuedouble >= 2);
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(ok, "deadLetters"), "0");
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(ok, "status"), "\"running\"");
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(ok, "running"), "0");
	const cJSON *bad = find(v, "name", "bad");
	ck_assert_ptr_nonnull(bad);
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(bad, "version"), "\"7\"");
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(bad, "trigger"),
	                    "{\"type\":\"manual\"}");
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(bad, "queued"), "0");
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(bad, "deadLetters"), "2");
	cJSON_Delete(v);

	v = api(rt, "GET", "/api/pipelines", "{\"limit\":\"3\"}", &st);
	ck_assert_int_eq(st, 400);
	ck_assert_str_eq(error_code(v), "BAD_REQUEST");
	cJSON_Delete(v);
	v = api(rt, "POST", "/api/pipelines", NULL, &st);
	ck_assert_int_eq(st, 405);
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(v, "allow"), "\"GET, HEAD\"");
	cJSON_Delete(v);
	v = api(rt, "GET", "/api/nope", NULL, &st);
	ck_assert_int_eq(st, 404);
	ck_assert_str_eq(error_code(v), "NOT_FOUND");
	cJSON_Delete(v);
	op_runtime_close(rt);
}
END_TEST

START_TEST(executions_newest_first_filtered_and_bounded)
{
	struct op_runtime *rt = open_rt();
	char id[OP_UUID_LEN + 1], q[64];
	for (int i = 0; i < 5; i++)
		submit(rt, "ok", i, id);
	submit(rt, "bad", 0, id);
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);
	int st;
	cJSON *v = api(rt, "GET", "/api/executions", "{\"limit\":\"4\"}", &st);
	ck_assert_int_eq(st, 200);
	ck_assert_int_eq(cJSON_GetArraySize(v), 4);
	double prev = 1e300;
	const cJSON *e;
	cJSON_ArrayForEach (e, v) {
		double t = cJSON_GetObjectItemCaseSensitive(e, "startedAtMs")->valuedouble;
		ck_assert(t <= prev);
		prev = t;
		ck_assert_int_eq((int)strlen(cJSON_GetStringValue(
		                     cJSON_GetObjectItemCaseSensitive(e, "startedAt"))),
		                 24);
	}
	cJSON_Delete(v);

	v = api(rt, "GET", "/api/executions", "{\"pipeline\":\"bad\"}", &st);
	ck_assert_int_eq(st, 200);
	ck_assert_int_eq(cJSON_GetArraySize(v), 1);
	const cJSON *b = cJSON_GetArrayItem(v, 0);
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(b, "status"), "\"error\"");
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(b, "eventId"), quoted(id, q));
	const char *eid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "id"));
	ck_assert_ptr_nonnull(
	    strstr(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "error")), "NOPE"));
	char path[128];
	snprintf(path, sizeof(path), "/api/executions/%s", eid);
	cJSON *one = api(rt, "GET", path, NULL, &st);
	ck_assert_int_eq(st, 200);
	ck_assert_json_eq(one, b);
	cJSON_Delete(one);
	cJSON_Delete(v);

	v = api(rt, "GET", "/api/executions", "{\"pipeline\":\"nosuch\"}", &st);
	ck_assert_int_eq(st, 200);
	ck_assert_int_eq(cJSON_GetArraySize(v), 0);
	cJSON_Delete(v);
	v = api(rt, "GET", "/api/executions", NULL, &st);
	ck_assert_int_eq(cJSON_GetArraySize(v), 6);
	cJSON_Delete(v);

	static const char *const bad_queries[] = {
	    "{\"limit\":\"0\"}",         "{\"limit\":\"1001\"}",
	    "{\"limit\":\"12x\"}",       "{\"limit\":\"\"}",
	    "{\"limit\":[\"1\",\"2\"]}", "{\"pipeline\":\"\"}",
	    "{\"order\":\"asc\"}",       "{\"limit\":\"99999999999999999999999\"}",
	};
	for (size_t i = 0; i < sizeof(bad_queries) / sizeof(bad_queries[0]); i++) {
		v = api(rt, "GET", "/api/executions", bad_queries[i], &st);
		ck_assert_msg(st == 400, "%s: %d", bad_queries[i], st);
		ck_assert_str_eq(error_code(v), "BAD_REQUEST");
		cJSON_Delete(v);
	}
	v = api(rt, "GET", "/api/executions", "{\"limit\":\"1000\"}", &st);
	ck_assert_int_eq(st, 200);
	cJSON_Delete(v);
	v = api(rt, "GET", "/api/executions/00000000-0000-4000-8000-000000000000", NULL, &st);
	ck_assert_int_eq(st, 404);
	cJSON_Delete(v);
	v = api(rt, "GET", "/api/executions/not-an-id", NULL, &st);
	ck_assert_int_eq(st, 404);
	cJSON_Delete(v);
	op_runtime_close(rt);
}
END_TEST

START_TEST(dead_letters_listed_shown_and_replayed)
{
	struct op_runtime *rt = open_rt();
	char id[OP_UUID_LEN + 1], other[OP_UUID_LEN + 1], q[64];
	submit(rt, "bad", 41, id);
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);
	int st;
	cJSON *v = api(rt, "GET", "/api/dead", "{\"pipeline\":\"bad\"}", &st);
	ck_assert_int_eq(st, 200);
	ck_assert_int_eq(cJSON_GetArraySize(v), 1);
	const cJSON *d = cJSON_GetArrayItem(v, 0);
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(d, "eventId"), quoted(id, q));
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(d, "attempt"), "1");
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(d, "payload"));
	ck_assert_ptr_nonnull(
	    strstr(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "error")), "NOPE"));
	double dead1 = cJSON_GetObjectItemCaseSensitive(d, "deadAtMs")->valuedouble;
	ck_assert(dead1 > 0);
	cJSON_Delete(v);
	v = api(rt, "GET", "/api/dead", "{\"pipeline\":\"ok\"}", &st);
	ck_assert_int_eq(cJSON_GetArraySize(v), 0);
	cJSON_Delete(v);

	char path[128];
	snprintf(path, sizeof(path), "/api/dead/%s", id);
	v = api(rt, "GET", path, NULL, &st);
	ck_assert_int_eq(st, 200);
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(v, "payload"), "{\"n\":41}");
	cJSON_Delete(v);

	snprintf(path, sizeof(path), "/api/dead/%s/replay", id);
	v = api(rt, "GET", path, NULL, &st);
	ck_assert_int_eq(st, 405);
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(v, "allow"), "\"POST\"");
	cJSON_Delete(v);
	v = api(rt, "POST", path, NULL, &st);
	ck_assert_int_eq(st, 200);
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(v, "replayed"), quoted(id, q));
	cJSON_Delete(v);
	/* It runs again, fails again and is back among the dead letters. */
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);
	v = api(rt, "GET", "/api/executions", "{\"pipeline\":\"bad\"}", &st);
	ck_assert_int_eq(cJSON_GetArraySize(v), 2);
	cJSON_Delete(v);
	snprintf(path, sizeof(path), "/api/dead/%s", id);
	v = api(rt, "GET", path, NULL, &st);
	ck_assert_int_eq(st, 200);
	ck_assert(cJSON_GetObjectItemCaseSensitive(v, "deadAtMs")->valuedouble >= dead1);
	cJSON_Delete(v);

	v = api(rt, "POST", "/api/dead/00000000-0000-4000-8000-000000000000/replay", NULL, &st);
	ck_assert_int_eq(st, 404);
	ck_assert_str_eq(error_code(v), "NOT_FOUND");
	cJSON_Delete(v);
	v = api(rt, "GET", "/api/dead/nope", NULL, &st);
	ck_assert_int_eq(st, 404);
	cJSON_Delete(v);

	/* A payload over the cap is left out of the one-letter view. */
	size_t big = OP_ADMIN_PAYLOAD_MAX + 10;
	char *p = op_malloc(big + 1);
	ck_assert_ptr_nonnull(p);
	memset(p, 'a', big);
	p[big] = '\0';
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "s", p);
	op_free(p);
	ck_assert_int_eq(op_runtime_submit(rt, "bad", m, NULL, other), OP_OK);
	cJSON_Delete(m);
	ck_assert_int_eq(op_runtime_wait_idle(rt, 20000), OP_OK);
	snprintf(path, sizeof(path), "/api/dead/%s", other);
	v = api(rt, "GET", path, NULL, &st);
	ck_assert_int_eq(st, 200);
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(v, "payload"));
	ck_assert_json_text(cJSON_GetObjectItemCaseSensitive(v, "payloadOmitted"), "true");
	ck_assert(cJSON_GetObjectItemCaseSensitive(v, "payloadBytes")->valuedouble > big);
	cJSON_Delete(v);
	v = api(rt, "GET", "/api/dead", "{\"limit\":\"1\"}", &st);
	ck_assert_int_eq(cJSON_GetArraySize(v), 1);
	cJSON_Delete(v);
	op_runtime_close(rt);
}
END_TEST

START_TEST(api_paths)
{
	ck_assert(op_admin_is_api("/api"));
	ck_assert(op_admin_is_api("/api/dead"));
	ck_assert(!op_admin_is_api("/apis"));
	ck_assert(!op_admin_is_api("/metrics"));
}
END_TEST

static Suite *admin_suite(void)
{
	Suite *s = suite_create("admin");
	TCase *tc = tcase_create("admin");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, pipelines_show_trigger_queue_and_dead_letters);
	tcase_add_test(tc, executions_newest_first_filtered_and_bounded);
	tcase_add_test(tc, dead_letters_listed_shown_and_replayed);
	tcase_add_test(tc, api_paths);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(admin_suite)
