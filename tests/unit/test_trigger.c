/*
 * Unit tests of trigger types: loading each type's config (valid, and
 * invalid with the JSON path of every problem), the compiled data the
 * accessors give the daemon, the HTTP request -> message and result ->
 * answer mappings, the rate limiter, and out-of-memory during a load.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "agent/auth/auth.h"
#include "agent/engine/pipeline.h"
#include "agent/http/route.h"
#include "agent/trigger/http_map.h"
#include "agent/trigger/trigger.h"
#include "tests/unit/test.h"

#define STEPS "\"steps\":[{\"type\":\"log\",\"config\":{\"message\":\"hi\"}}]"

/* A pipeline document with trigger t (JSON text). */
static char *doc_with(const char *t)
{
	static char buf[8192];
	snprintf(buf, sizeof(buf), "{\"name\":\"p\",\"version\":\"1\",\"trigger\":%s," STEPS "}",
	         t);
	return buf;
}

static struct op_pipeline *load_trigger(const char *t, struct op_diag *d)
{
	const char *text = doc_with(t);
	struct op_pipeline *p = NULL;
	op_err rc = op_pipeline_load(text, strlen(text), "test", d, &p);
	ck_assert(rc == OP_OK || p == NULL);
	return p;
}

static struct op_pipeline *load_ok(const char *t)
{
	struct op_diag d;
	op_diag_init(&d);
	struct op_pipeline *p = load_trigger(t, &d);
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "  %s: %s\n", d.v[i].path, d.v[i].msg);
	ck_assert_msg(p != NULL, "pipeline did not load");
	op_diag_fini(&d);
	return p;
}

/* Loads t, which must fail with exactly the problems "path: message" given
 * (NULL-terminated), in order; a message given as "path: ~text" only has to
 * contain text. */
static void load_fails(const char *t, const char *const *want)
{
	struct op_diag d;
	op_diag_init(&d);
	struct op_pipeline *p = load_trigger(t, &d);
	ck_assert_ptr_null(p);
	size_t n = 0;
	while (want[n])
		n++;
	for (size_t i = 0; d.n != n && i < d.n; i++)
		fprintf(stderr, "  %s: %s\n", d.v[i].path, d.v[i].msg);
	ck_assert_uint_eq(d.n, n);
	for (size_t i = 0; i < n; i++) {
		const char *colon = strstr(want[i], ": ");
		ck_assert_ptr_nonnull(colon);
		size_t plen = (size_t)(colon - want[i]);
		ck_assert_msg(
		    strlen(d.v[i].path) == plen && strncmp(d.v[i].path, want[i], plen) == 0,
		    "problem %zu at %s, expected %.*s", i, d.v[i].path, (int)plen, want[i]);
		const char *msg = colon + 2;
		if (msg[0] == '~')
			ck_assert_msg(strstr(d.v[i].msg, msg + 1) != NULL, "problem %zu: \"%s\"", i,
			              d.v[i].msg);
		else
			ck_assert_str_eq(d.v[i].msg, msg);
	}
	op_diag_fini(&d);
}

/* --- loading ---------------------------------------------------------------- */

START_TEST(manual_and_remote)
{
	struct op_pipeline *p = load_ok("{}");
	ck_assert_int_eq(op_trigger_kind(p), OP_TRIGGER_MANUAL);
	ck_assert_ptr_null(op_trigger_http(p));
	ck_assert_ptr_null(op_trigger_schedule(p));
	op_pipeline_free(p);
	p = load_ok("{\"type\":\"remote\",\"config\":{}}");
	ck_assert_int_eq(op_trigger_kind(p), OP_TRIGGER_REMOTE);
	ck_assert_ptr_null(op_trigger_mqtt(p));
	op_pipeline_free(p);
	load_fails(
	    "{\"type\":\"manual\",\"config\":{\"a\":1}}",
	    (const char *const[]){"trigger.config: trigger type manual takes no config", NULL});
	load_fails(
	    "{\"type\":\"remote\",\"config\":[]}",
	    (const char *const[]){"trigger.config: trigger type remote takes no config", NULL});
	/* A wrong type is one problem; its config is not judged by another type. */
	load_fails("{\"type\":\"htp\",\"config\":{\"path\":7}}",
	           (const char *const[]){"trigger.type: ~unknown value \"htp\"", NULL});
}
END_TEST

START_TEST(http_defaults)
{
	struct op_pipeline *p =
	    load_ok("{\"type\":\"http\",\"config\":{\"path\":\"/orders/{id}\"}}");
	const struct op_http_trigger *h = op_trigger_http(p);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(op_trigger_kind(p), OP_TRIGGER_HTTP);
	ck_assert_str_eq(h->method, "POST");
	ck_assert_str_eq(op_http_route_template(h->route), "/orders/{id}");
	ck_assert_int_eq(h->mode, OP_HTTP_SYNC);
	ck_assert_str_eq(op_auth_type(h->auth), "none");
	ck_assert_ptr_null(h->rate);
	ck_assert_int_eq(h->timeout_ms, 30000);
	ck_assert_int_eq(h->status, 200);
	ck_assert_json_text(h->headers, "{}");
	ck_assert_ptr_null(h->secret_header);
	cJSON *params = NULL;
	ck_assert_int_eq(op_http_route_match(h->route, "/orders/42", &params), OP_OK);
	ck_assert_json_text(params, "{\"id\":\"42\"}");
	cJSON_Delete(params);
	op_pipeline_free(p);
}
END_TEST

static bool get_header(void *ud, const char *name, const char **val, size_t *len)
{
	const char *const *kv = ud;
	for (; kv[0]; kv += 2) {
		if (strcasecmp(kv[0], name) == 0) {
			*val = kv[1];
			*len = strlen(kv[1]);
			return true;
		}
	}
	return false;
}

START_TEST(http_full)
{
	char hash[OP_AUTH_APIKEY_HASH_LEN + 1];
	ck_assert_int_eq(op_auth_hash_apikey("k3y", 3, hash, sizeof(hash)), OP_OK);
	char t[1024];
	snprintf(
	    t, sizeof(t),
	    "{\"type\":\"http\",\"config\":{\"method\":\"PUT\",\"path\":\"/a/{x}/{rest*}\","
	    "\"mode\":\"async\",\"auth\":{\"type\":\"apikey\",\"header\":\"X-Shop-Key\","
	    "\"keys\":[{\"name\":\"shop\",\"hash\":\"%s\"}]},\"rateLimit\":{\"perSecond\":2.5},"
	    "\"timeoutMs\":500,\"response\":{\"status\":201,\"headers\":{\"X-A\":\"1\"}}}}",
	    hash);
	struct op_pipeline *p = load_ok(t);
	const struct op_http_trigger *h = op_trigger_http(p);
	ck_assert_ptr_nonnull(h);
	ck_assert_str_eq(h->method, "PUT");
	ck_assert_int_eq(h->mode, OP_HTTP_ASYNC);
	ck_assert_int_eq(h->timeout_ms, 500);
	ck_assert_int_eq(h->status, 201);
	ck_assert_json_text(h->headers, "{\"X-A\":\"1\"}");
	ck_assert_str_eq(h->secret_header, "x-shop-key");
	/* The verifier is the compiled auth config. */
	const char *good[] = {"X-Shop-Key", "k3y", NULL};
	const char *bad[] = {"X-Shop-Key", "nope", NULL};
	struct op_auth_request ar = {.header = get_header, .ud = good};
	cJSON *claims = NULL;
	ck_assert_int_eq(op_auth_check(h->auth, &ar, &claims, NULL, 0), OP_OK);
	ck_assert_json_text(claims, "{\"type\":\"apikey\",\"key\":\"shop\"}");
	cJSON_Delete(claims);
	ar.ud = bad;
	ck_assert_int_eq(op_auth_check(h->auth, &ar, &claims, NULL, 0), OP_EAUTH);
	/* burst defaults to perSecond rounded up: 3. */
	ck_assert_ptr_nonnull(h->rate);
	for (int i = 0; i < 3; i++)
		ck_assert(op_rate_take(h->rate, 1000, NULL));
	uint64_t wait = 0;
	ck_assert(!op_rate_take(h->rate, 1000, &wait));
	ck_assert_uint_eq(wait, 400);
	op_pipeline_free(p);
}
END_TEST

START_TEST(http_problems)
{
	load_fails(
	    "{\"type\":\"http\"}",
	    (const char *const[]){"trigger.config.path: missing required key (string)", NULL});
	load_fails(
	    "{\"type\":\"http\",\"config\":{\"method\":\"HEAD\",\"path\":\"orders/{id\",\"mode\":1,"
	    "\"auth\":{\"type\":\"jwt\",\"keys\":[{\"alg\":\"RS256\",\"pem\":\"nope\"}]},"
	    "\"rateLimit\":{\"burst\":0},\"timeoutMs\":0,\"response\":{\"status\":99,"
	    "\"headers\":{\"Content-Length\":\"3\",\"a "
	    "b\":\"x\",\"X\":1,\"Y\":\"a\\nb\"}},\"x\":1}}",
	    (const char *const[]){
	        "trigger.config.x: ~unknown key; expected one of: method, path, mode",
	        "trigger.config.method: ~unknown value \"HEAD\"",
	        "trigger.config.mode: ~expected one of \"sync\", \"async\", got a number",
	        "trigger.config.rateLimit.burst: 0 is out of range; expected 1 to 1000000",
	        "trigger.config.timeoutMs: 0 is out of range; expected 1 to 3600000",
	        "trigger.config.response.status: 99 is out of range; expected 200 to 599",
	        "trigger.config.path: ~orders/{id", "trigger.config.auth.keys[0].pem: ~",
	        "trigger.config.rateLimit.perSecond: missing required key (number)",
	        "trigger.config.response.headers.Content-Length: ~sets this header itself",
	        "trigger.config.response.headers[\"a b\"]: not a valid header name",
	        "trigger.config.response.headers.X: ~expected a string",
	        "trigger.config.response.headers.Y: a header value cannot hold CR or LF", NULL});
	load_fails("{\"type\":\"http\",\"config\":{\"path\":\"/a\",\"rateLimit\":{\"perSecond\":0},"
	           "\"auth\":\"none\"}}",
	           (const char *const[]){
	               "trigger.config.auth: expected an object {\"type\": ...}",
	               "trigger.config.rateLimit.perSecond: expected a number greater than 0",
	               NULL});
	load_fails("{\"type\":\"http\",\"config\":7}",
	           (const char *const[]){"trigger.config: expected an object, got a number",
	                                 "trigger.config.path: missing required key (string)",
	                                 NULL});
}
END_TEST

START_TEST(schedule_load)
{
	struct op_pipeline *p =
	    load_ok("{\"type\":\"schedule\",\"config\":{\"cron\":\"*/5 * * * *\"}}");
	const struct op_schedule_trigger *s = op_trigger_schedule(p);
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_null(op_trigger_http(p));
	ck_assert_str_eq(s->expr, "*/5 * * * *");
	ck_assert_str_eq(op_tz_name(s->tz), "UTC");
	ck_assert(!s->overlap);
	ck_assert_int_eq(s->missed, OP_MISSED_SKIP);
	ck_assert_json_text(s->input, "{}");
	int64_t next = 0;
	ck_assert_int_eq(op_cron_next(&s->cron, s->tz, 1000, &next), OP_OK);
	ck_assert_int_eq(next, 300000);
	op_pipeline_free(p);

	p = load_ok(
	    "{\"type\":\"schedule\",\"config\":{\"cron\":\"@daily\",\"timezone\":\"+02:00\","
	    "\"overlap\":true,\"missed\":\"once\",\"input\":{\"job\":\"nightly\"}}}");
	s = op_trigger_schedule(p);
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(op_tz_name(s->tz), "+02:00");
	ck_assert(s->overlap);
	ck_assert_int_eq(s->missed, OP_MISSED_ONCE);
	ck_assert_json_text(s->input, "{\"job\":\"nightly\"}");
	op_pipeline_free(p);

	load_fails("{\"type\":\"schedule\",\"config\":{\"cron\":\"0 0 25 * * *\",\"timezone\":"
	           "\"Mars/Base\",\"missed\":\"twice\",\"overlap\":1}}",
	           (const char *const[]){
	               "trigger.config.overlap: expected boolean, got a number",
	               "trigger.config.missed: ~unknown value \"twice\"",
	               "trigger.config.cron: ~(hour): 25 is out of range 0-23 (column 5)",
	               "trigger.config.timezone: ~Mars/Base", NULL});
	load_fails(
	    "{\"type\":\"schedule\"}",
	    (const char *const[]){"trigger.config.cron: missing required key (string)", NULL});
}
END_TEST

START_TEST(event_load)
{
	struct op_pipeline *p =
	    load_ok("{\"type\":\"event\",\"config\":{\"name\":\"order.created-v1\"}}");
	ck_assert_str_eq(op_trigger_event(p)->name, "order.created-v1");
	ck_assert_ptr_null(op_trigger_mqtt(p));
	op_pipeline_free(p);
	load_fails("{\"type\":\"event\",\"config\":{\"name\":\"a b\"}}",
	           (const char *const[]){"trigger.config.name: ~got \"a b\"", NULL});
	load_fails("{\"type\":\"event\",\"config\":{\"name\":\"\"}}",
	           (const char *const[]){"trigger.config.name: ~expected 1 to 128", NULL});
	load_fails(
	    "{\"type\":\"event\",\"config\":{}}",
	    (const char *const[]){"trigger.config.name: missing required key (string)", NULL});
}
END_TEST

START_TEST(mqtt_load)
{
	struct op_pipeline *p =
	    load_ok("{\"type\":\"mqtt\",\"config\":{\"broker\":\"plant\",\"topic\":\"a/+/c/#\"}}");
	const struct op_mqtt_trigger *m = op_trigger_mqtt(p);
	ck_assert_ptr_nonnull(m);
	ck_assert_str_eq(m->broker, "plant");
	ck_assert_str_eq(m->topic, "a/+/c/#");
	ck_assert_int_eq(m->qos, 1);
	ck_assert_int_eq(m->consumers, 1);
	ck_assert_int_eq(m->payload, OP_MQTT_PAYLOAD_JSON);
	op_pipeline_free(p);
	p = load_ok("{\"type\":\"mqtt\",\"config\":{\"broker\":\"b\",\"topic\":\"#\",\"qos\":0,"
	            "\"consumers\":32,\"payload\":\"base64\"}}");
	m = op_trigger_mqtt(p);
	ck_assert_int_eq(m->qos, 0);
	ck_assert_int_eq(m->consumers, 32);
	ck_assert_int_eq(m->payload, OP_MQTT_PAYLOAD_BASE64);
	op_pipeline_free(p);
	load_fails("{\"type\":\"mqtt\",\"config\":{\"topic\":\"a/b#\",\"qos\":2,\"consumers\":0,"
	           "\"payload\":\"xml\"}}",
	           (const char *const[]){
	               "trigger.config.broker: missing required key (string)",
	               "trigger.config.qos: 2 is out of range; expected 0 to 1",
	               "trigger.config.consumers: 0 is out of range; expected 1 to 32",
	               "trigger.config.payload: ~unknown value \"xml\"",
	               "trigger.config.topic: ~'#' must be the whole last level (column 4)", NULL});
	load_fails("{\"type\":\"mqtt\",\"config\":{\"broker\":\"\",\"topic\":\"a/x+\"}}",
	           (const char *const[]){
	               "trigger.config.broker: ~got \"\"",
	               "trigger.config.topic: ~'+' must be a whole level (column 4)", NULL});
}
END_TEST

START_TEST(mqtt_filters)
{
	char why[128];
	const char *ok[] = {"a", "a/b", "+", "#", "+/+", "a/+/b", "a/#", "/", "/a/", "é/+", NULL};
	const char *bad[] = {"", "a#", "#/a", "a/#/b", "+a", "a+/b", "$share/g/a", "\xff", NULL};
	for (size_t i = 0; ok[i]; i++)
		ck_assert_msg(op_mqtt_filter_valid(ok[i], why, sizeof(why)), "%s: %s", ok[i], why);
	for (size_t i = 0; bad[i]; i++)
		ck_assert_msg(!op_mqtt_filter_valid(bad[i], why, sizeof(why)), "%s accepted",
		              bad[i]);
}
END_TEST

/* --- request -> message -------------------------------------------------------- */

struct req_fixture {
	cJSON *query, *headers;
	struct op_http_request req;
};

static void req_init(struct req_fixture *f, const char *ct, const char *body, size_t len)
{
	f->query = op_test_json("{\"page\":\"2\",\"tag\":[\"a\",\"b\"]}");
	f->headers = op_test_json(
	    "{\"authorization\":\"Bearer x\",\"cookie\":\"s=1\",\"x-api-key\":\"k\","
	    "\"proxy-authorization\":\"p\",\"x-shop-key\":\"secret\",\"x-trace\":\"t1\"}");
	f->req = (struct op_http_request){
	    .method = "POST",
	    .path = "/orders/4%202",
	    .query = f->query,
	    .headers = f->headers,
	    .body = body,
	    .body_len = len,
	    .content_type = ct,
	    .remote_addr = "127.0.0.1",
	};
}

static void req_fini(struct req_fixture *f)
{
	cJSON_Delete(f->query);
	cJSON_Delete(f->headers);
}

START_TEST(message_json)
{
	struct req_fixture f;
	const char *body = "{\"qty\":3,\"sku\":\"A-1\"}";
	req_init(&f, "application/json; charset=utf-8", body, strlen(body));
	cJSON *params = op_test_json("{\"id\":\"4 2\"}");
	struct op_http_trigger t = {.secret_header = "x-shop-key"};
	struct op_http_response resp = {0};
	cJSON *msg = NULL;
	ck_assert_int_eq(op_http_trigger_message(&t, &f.req, params, &msg, &resp), OP_OK);
	ck_assert_json_text(msg, "{\"method\":\"POST\",\"path\":\"/orders/4%202\","
	                         "\"params\":{\"id\":\"4 2\"},\"query\":{\"page\":\"2\","
	                         "\"tag\":[\"a\",\"b\"]},\"headers\":{\"x-trace\":\"t1\"},"
	                         "\"body\":{\"qty\":3,\"sku\":\"A-1\"}}");
	ck_assert_int_eq(resp.status, 0);
	cJSON_Delete(msg);
	/* Without the trigger, only the standard secret headers are left out. */
	ck_assert_int_eq(op_http_trigger_message(NULL, &f.req, NULL, &msg, &resp), OP_OK);
	ck_assert_json_text(cJSON_GetObjectItem(msg, "headers"),
	                    "{\"x-shop-key\":\"secret\",\"x-trace\":\"t1\"}");
	ck_assert_json_text(cJSON_GetObjectItem(msg, "params"), "{}");
	cJSON_Delete(msg);
	cJSON_Delete(params);
	req_fini(&f);
}
END_TEST

START_TEST(message_bodies)
{
	struct req_fixture f;
	struct op_http_response resp = {0};
	cJSON *msg = NULL;
	/* No body: null. */
	req_init(&f, "", "", 0);
	ck_assert_int_eq(op_http_trigger_message(NULL, &f.req, NULL, &msg, &resp), OP_OK);
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(msg, "body")));
	ck_assert_ptr_null(cJSON_GetObjectItem(msg, "bodyEncoding"));
	cJSON_Delete(msg);
	req_fini(&f);
	/* No Content-Type with a body: JSON. */
	req_init(&f, "", "[1,2]", 5);
	ck_assert_int_eq(op_http_trigger_message(NULL, &f.req, NULL, &msg, &resp), OP_OK);
	ck_assert_json_text(cJSON_GetObjectItem(msg, "body"), "[1,2]");
	cJSON_Delete(msg);
	req_fini(&f);
	/* Text. */
	req_init(&f, "text/plain", "héllo", strlen("héllo"));
	ck_assert_int_eq(op_http_trigger_message(NULL, &f.req, NULL, &msg, &resp), OP_OK);
	ck_assert_json_text(cJSON_GetObjectItem(msg, "body"), "\"héllo\"");
	ck_assert_ptr_null(cJSON_GetObjectItem(msg, "bodyEncoding"));
	cJSON_Delete(msg);
	req_fini(&f);
	/* Bytes that are not UTF-8 (and a NUL): base64. */
	const char bin[] = {'\x00', '\xff', 'a', 'b', '\0'};
	req_init(&f, "application/octet-stream", bin, 4);
	ck_assert_int_eq(op_http_trigger_message(NULL, &f.req, NULL, &msg, &resp), OP_OK);
	ck_assert_json_text(cJSON_GetObjectItem(msg, "body"), "\"AP9hYg==\"");
	ck_assert_json_text(cJSON_GetObjectItem(msg, "bodyEncoding"), "\"base64\"");
	cJSON_Delete(msg);
	req_fini(&f);
	req_init(&f, "application/octet-stream", "\xc3", 1);
	ck_assert_int_eq(op_http_trigger_message(NULL, &f.req, NULL, &msg, &resp), OP_OK);
	ck_assert_json_text(cJSON_GetObjectItem(msg, "body"), "\"ww==\"");
	cJSON_Delete(msg);
	req_fini(&f);
}
END_TEST

START_TEST(message_bad_json)
{
	struct req_fixture f;
	const char *body = "{\"a\":\n  1,}";
	req_init(&f, "application/vnd.shop+json", body, strlen(body));
	struct op_http_response resp = {0};
	cJSON *msg = NULL;
	ck_assert_int_eq(op_http_trigger_message(NULL, &f.req, NULL, &msg, &resp), OP_EPARSE);
	ck_assert_ptr_null(msg);
	ck_assert_int_eq(resp.status, 400);
	ck_assert_str_eq(resp.content_type, "application/json");
	cJSON *b = cJSON_ParseWithLength(resp.body, resp.body_len);
	ck_assert_ptr_nonnull(b);
	cJSON *e = cJSON_GetObjectItem(b, "error");
	ck_assert_str_eq(cJSON_GetObjectItem(e, "code")->valuestring, "INVALID_BODY");
	ck_assert_msg(strstr(cJSON_GetObjectItem(e, "message")->valuestring, "line 2") != NULL,
	              "%s", cJSON_GetObjectItem(e, "message")->valuestring);
	cJSON_Delete(b);
	op_http_response_fini(&resp);
	req_fini(&f);
}
END_TEST

START_TEST(trigger_data)
{
	struct op_pipeline *p =
	    load_ok("{\"type\":\"http\",\"config\":{\"path\":\"/orders/{id}\"}}");
	struct req_fixture f;
	req_init(&f, "", "", 0);
	cJSON *claims = op_test_json("{\"sub\":\"u1\"}");
	cJSON *d = op_http_trigger_data(op_trigger_http(p), &f.req, claims);
	ck_assert_json_text(d, "{\"type\":\"http\",\"method\":\"POST\",\"path\":\"/orders/4%202\","
	                       "\"route\":\"/orders/{id}\",\"remote\":\"127.0.0.1\","
	                       "\"auth\":{\"sub\":\"u1\"}}");
	cJSON_Delete(d);
	d = op_http_trigger_data(NULL, &f.req, NULL);
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(d, "auth")));
	ck_assert(cJSON_IsNull(cJSON_GetObjectItem(d, "route")));
	cJSON_Delete(d);
	cJSON_Delete(claims);
	req_fini(&f);
	op_pipeline_free(p);
}
END_TEST

/* --- result -> answer ------------------------------------------------------------ */

static const char *resp_header(const struct op_http_response *r, const char *name)
{
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(r->headers, name);
	return cJSON_IsString(h) ? h->valuestring : NULL;
}

static void assert_body(const struct op_http_response *r, const char *text)
{
	ck_assert_uint_eq(r->body_len, strlen(text));
	ck_assert_msg(memcmp(r->body, text, r->body_len) == 0, "body %.*s", (int)r->body_len,
	              r->body);
}

START_TEST(respond_plain)
{
	struct op_pipeline *p =
	    load_ok("{\"type\":\"http\",\"config\":{\"path\":\"/a\",\"response\":{\"status\":201,"
	            "\"headers\":{\"X-Src\":\"outpost\",\"Cache-Control\":\"no-store\"}}}}");
	const struct op_http_trigger *t = op_trigger_http(p);
	struct op_http_response r = {0};
	cJSON *res = op_test_json("{\"id\":5,\"ok\":true}");
	ck_assert_int_eq(op_http_trigger_respond(t, res, &r), OP_OK);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(r.content_type, "application/json");
	assert_body(&r, "{\"id\":5,\"ok\":true}");
	ck_assert_str_eq(resp_header(&r, "X-Src"), "outpost");
	ck_assert_str_eq(resp_header(&r, "Cache-Control"), "no-store");
	op_http_response_fini(&r);
	cJSON_Delete(res);
	/* No trigger: 200, no headers; a non-object result is a JSON body too. */
	res = op_test_json("[1,\"x\"]");
	ck_assert_int_eq(op_http_trigger_respond(NULL, res, &r), OP_OK);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_null(r.headers);
	assert_body(&r, "[1,\"x\"]");
	op_http_response_fini(&r);
	cJSON_Delete(res);
	op_pipeline_free(p);
}
END_TEST

START_TEST(respond_http_key)
{
	struct op_pipeline *p =
	    load_ok("{\"type\":\"http\",\"config\":{\"path\":\"/a\",\"response\":"
	            "{\"headers\":{\"X-Src\":\"outpost\",\"X-Over\":\"old\"}}}}");
	const struct op_http_trigger *t = op_trigger_http(p);
	struct op_http_response r = {0};
	/* status, headers (overriding a default, any case) and body. */
	cJSON *res = op_test_json("{\"$http\":{\"status\":202,\"headers\":{\"x-over\":\"new\","
	                          "\"Location\":\"/a/7\"},\"body\":{\"id\":7}},\"ignored\":1}");
	ck_assert_int_eq(op_http_trigger_respond(t, res, &r), OP_OK);
	ck_assert_int_eq(r.status, 202);
	assert_body(&r, "{\"id\":7}");
	ck_assert_str_eq(resp_header(&r, "x-over"), "new");
	ck_assert_ptr_null(resp_header(&r, "X-Over"));
	ck_assert_str_eq(resp_header(&r, "Location"), "/a/7");
	ck_assert_str_eq(resp_header(&r, "X-Src"), "outpost");
	op_http_response_fini(&r);
	cJSON_Delete(res);
	/* No body: the rest of the result is the body. */
	res = op_test_json("{\"$http\":{\"status\":409},\"error\":\"dup\"}");
	ck_assert_int_eq(op_http_trigger_respond(t, res, &r), OP_OK);
	ck_assert_int_eq(r.status, 409);
	assert_body(&r, "{\"error\":\"dup\"}");
	op_http_response_fini(&r);
	cJSON_Delete(res);
	/* A string body with a Content-Type goes out as it is. */
	res = op_test_json("{\"$http\":{\"headers\":{\"Content-Type\":\"text/csv\"},"
	                   "\"body\":\"a,b\\n1,2\\n\"}}");
	ck_assert_int_eq(op_http_trigger_respond(t, res, &r), OP_OK);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.content_type, "text/csv");
	ck_assert_ptr_null(resp_header(&r, "Content-Type"));
	assert_body(&r, "a,b\n1,2\n");
	op_http_response_fini(&r);
	cJSON_Delete(res);
	/* 204: no body. */
	res = op_test_json("{\"$http\":{\"status\":204},\"x\":1}");
	ck_assert_int_eq(op_http_trigger_respond(t, res, &r), OP_OK);
	ck_assert_int_eq(r.status, 204);
	ck_assert_uint_eq(r.body_len, 0);
	op_http_response_fini(&r);
	cJSON_Delete(res);
	op_pipeline_free(p);
}
END_TEST

static void respond_bad(const char *result, const char *why)
{
	struct op_http_response r = {0};
	cJSON *res = op_test_json(result);
	ck_assert_int_eq(op_http_trigger_respond(NULL, res, &r), OP_EINVAL);
	ck_assert_int_eq(r.status, 500);
	ck_assert_ptr_nonnull(r.body);
	ck_assert_msg(strstr(r.body, "INVALID_HTTP_RESPONSE") && strstr(r.body, why), "%s", r.body);
	op_http_response_fini(&r);
	cJSON_Delete(res);
}

START_TEST(respond_http_key_bad)
{
	respond_bad("{\"$http\":1}", "must be an object");
	respond_bad("{\"$http\":{\"code\":1}}", "unknown key");
	respond_bad("{\"$http\":{\"status\":99}}", "status must be");
	respond_bad("{\"$http\":{\"status\":200.5}}", "status must be");
	respond_bad("{\"$http\":{\"headers\":[]}}", "headers must be");
	respond_bad("{\"$http\":{\"headers\":{\"Content-Length\":\"1\"}}}", "cannot be set");
	respond_bad("{\"$http\":{\"headers\":{\"X\":\"a\\r\\nb\"}}}", "without CR/LF");
	respond_bad("{\"$http\":{\"headers\":{\"X\":1}}}", "without CR/LF");
}
END_TEST

START_TEST(respond_fail_and_others)
{
	struct op_fail f = {.cls = OP_EINVAL};
	snprintf(f.code, sizeof(f.code), "VALIDATION");
	snprintf(f.msg, sizeof(f.msg), "qty must be > 0");
	snprintf(f.step, sizeof(f.step), "check");
	struct op_http_response r = {0};
	ck_assert_int_eq(op_http_trigger_respond_fail(&f, &r), OP_OK);
	ck_assert_int_eq(r.status, 400);
	cJSON *b = cJSON_ParseWithLength(r.body, r.body_len);
	ck_assert_json_text(b,
	                    "{\"error\":{\"code\":\"VALIDATION\",\"message\":\"qty must be > 0\","
	                    "\"step\":\"check\"}}");
	cJSON_Delete(b);
	op_http_response_fini(&r);
	f.cls = OP_ETIMEOUT;
	ck_assert_int_eq(op_http_trigger_respond_fail(&f, &r), OP_OK);
	ck_assert_int_eq(r.status, 504);
	op_http_response_fini(&r);
	f.cls = OP_EUSER;
	ck_assert_int_eq(op_http_trigger_respond_fail(&f, &r), OP_OK);
	ck_assert_int_eq(r.status, 500);
	op_http_response_fini(&r);

	ck_assert_int_eq(op_http_trigger_respond_accepted("ev-1", &r), OP_OK);
	ck_assert_int_eq(r.status, 202);
	assert_body(&r, "{\"eventId\":\"ev-1\"}");
	op_http_response_fini(&r);

	ck_assert_int_eq(op_http_respond_rate_limited(1001, &r), OP_OK);
	ck_assert_int_eq(r.status, 429);
	ck_assert_str_eq(resp_header(&r, "Retry-After"), "2");
	ck_assert_ptr_nonnull(strstr(r.body, "RATE_LIMITED"));
	op_http_response_fini(&r);
	ck_assert_int_eq(op_http_respond_rate_limited(0, &r), OP_OK);
	ck_assert_str_eq(resp_header(&r, "Retry-After"), "1");
	op_http_response_fini(&r);
}
END_TEST

/* --- rate limiter ------------------------------------------------------------------ */

START_TEST(rate_bucket)
{
	struct op_rate *r = NULL;
	ck_assert_int_eq(op_rate_new(0, 1, &r), OP_EINVAL);
	ck_assert_ptr_null(r);
	ck_assert_int_eq(op_rate_new(2, 0, &r), OP_EINVAL);
	ck_assert_int_eq(op_rate_new(2, 3, &r), OP_OK);
	uint64_t now = 5000, wait = 0;
	/* A full bucket: burst requests at once, then 1 token per 500 ms. */
	for (int i = 0; i < 3; i++)
		ck_assert(op_rate_take(r, now, &wait));
	ck_assert(!op_rate_take(r, now, &wait));
	ck_assert_uint_eq(wait, 500);
	ck_assert(!op_rate_take(r, now + 499, &wait));
	ck_assert_uint_eq(wait, 1);
	ck_assert(op_rate_take(r, now + 500, &wait));
	ck_assert(!op_rate_take(r, now + 500, &wait));
	ck_assert_uint_eq(wait, 500);
	/* A refused request costs nothing: after a quiet time the bucket is full again. */
	now += 10000;
	for (int i = 0; i < 3; i++)
		ck_assert(op_rate_take(r, now, NULL));
	ck_assert(!op_rate_take(r, now, NULL));
	/* A steady 2/s is always allowed. */
	now += 10000;
	for (int i = 0; i < 20; i++)
		ck_assert(op_rate_take(r, now + (uint64_t)i * 500, NULL));
	op_rate_free(r);

	/* Fractional rates: 0.5/s with burst 1 allows one request per 2 s. */
	ck_assert_int_eq(op_rate_new(0.5, 1, &r), OP_OK);
	ck_assert(op_rate_take(r, 0, NULL));
	ck_assert(!op_rate_take(r, 1999, &wait));
	ck_assert_uint_eq(wait, 1);
	ck_assert(op_rate_take(r, 2000, NULL));
	op_rate_free(r);
	op_rate_free(NULL);
}
END_TEST

/* --- out of memory ----------------------------------------------------------------- */

static const char oom_trigger[] =
    "{\"type\":\"http\",\"config\":{\"method\":\"POST\",\"path\":\"/orders/{id}/{rest*}\","
    "\"auth\":{\"type\":\"jwt\",\"issuer\":\"idp\",\"audience\":[\"outpost\"],\"keys\":["
    "{\"kid\":\"s\",\"alg\":\"HS256\",\"secret\":\"0123456789abcdef0123456789abcdef\"},"
    "{\"kid\":\"e\",\"alg\":\"ES256\",\"jwk\":{\"kty\":\"EC\",\"crv\":\"P-256\","
    "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
    "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}}]},"
    "\"rateLimit\":{\"perSecond\":10},\"response\":{\"headers\":{\"X-A\":\"1\"}}}}";

START_TEST(oom_load)
{
	const char *text = doc_with(oom_trigger);
	size_t len = strlen(text);
	bool reached_end = false;
	int ok_loads = 0;
	for (uint64_t n = 1; n < 20000 && !reached_end; n++) {
		struct op_diag d;
		op_diag_init(&d);
		struct op_pipeline *p = NULL;
		uint64_t c0 = op_alloc_count();
		op_alloc_fail_at(n);
		op_err rc = op_pipeline_load(text, len, "oom", &d, &p);
		op_alloc_fail_at(0);
		bool untouched = op_alloc_count() - c0 < n;
		op_diag_fini(&d);
		if (rc != OP_OK) {
			ck_assert_msg(rc == OP_ENOMEM || rc == OP_EPARSE,
			              "load failed with %s at n=%llu", op_err_name(rc),
			              (unsigned long long)n);
			ck_assert_ptr_null(p);
			continue;
		}
		ok_loads++;
		/* A pipeline that loaded is whole. */
		const struct op_http_trigger *h = op_trigger_http(p);
		ck_assert_ptr_nonnull(h);
		ck_assert_ptr_nonnull(h->route);
		ck_assert_ptr_nonnull(h->auth);
		ck_assert_ptr_nonnull(h->rate);
		reached_end = untouched;
		op_pipeline_free(p);
	}
	ck_assert(reached_end);
	ck_assert_int_ge(ok_loads, 1);
}
END_TEST

START_TEST(oom_message)
{
	struct req_fixture f;
	const char *body = "{\"a\":[1,2,{\"b\":\"c\"}]}";
	req_init(&f, "application/json", body, strlen(body));
	cJSON *params = op_test_json("{\"id\":\"1\"}");
	cJSON *res = op_test_json("{\"$http\":{\"status\":201,\"headers\":{\"X\":\"y\"}},\"k\":1}");
	bool done = false;
	for (uint64_t n = 1; n < 5000 && !done; n++) {
		struct op_http_response r = {0};
		cJSON *msg = NULL;
		uint64_t c0 = op_alloc_count();
		op_alloc_fail_at(n);
		op_err rc = op_http_trigger_message(NULL, &f.req, params, &msg, &r);
		op_err rc2 = op_http_trigger_respond(NULL, res, &r);
		op_alloc_fail_at(0);
		done = op_alloc_count() - c0 < n;
		ck_assert(rc == OP_OK || rc == OP_ENOMEM);
		ck_assert(rc2 == OP_OK || rc2 == OP_ENOMEM);
		ck_assert(rc == OP_OK ? msg != NULL : msg == NULL);
		if (rc2 == OP_ENOMEM)
			ck_assert_ptr_null(r.body);
		cJSON_Delete(msg);
		op_http_response_fini(&r);
	}
	ck_assert(done);
	cJSON_Delete(res);
	cJSON_Delete(params);
	req_fini(&f);
}
END_TEST

static Suite *trigger_suite(void)
{
	Suite *s = suite_create("trigger");
	TCase *tc = tcase_create("load");
	tcase_add_test(tc, manual_and_remote);
	tcase_add_test(tc, http_defaults);
	tcase_add_test(tc, http_full);
	tcase_add_test(tc, http_problems);
	tcase_add_test(tc, schedule_load);
	tcase_add_test(tc, event_load);
	tcase_add_test(tc, mqtt_load);
	tcase_add_test(tc, mqtt_filters);
	suite_add_tcase(s, tc);
	tc = tcase_create("http_map");
	tcase_add_test(tc, message_json);
	tcase_add_test(tc, message_bodies);
	tcase_add_test(tc, message_bad_json);
	tcase_add_test(tc, trigger_data);
	tcase_add_test(tc, respond_plain);
	tcase_add_test(tc, respond_http_key);
	tcase_add_test(tc, respond_http_key_bad);
	tcase_add_test(tc, respond_fail_and_others);
	tcase_add_test(tc, rate_bucket);
	suite_add_tcase(s, tc);
	tc = tcase_create("oom");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, oom_load);
	tcase_add_test(tc, oom_message);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(trigger_suite)
