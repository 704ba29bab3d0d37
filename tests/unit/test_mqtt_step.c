/*
 * Unit tests of the mqtt-publish step through a fake host hook (the hook is
 * the step's whole outside world, so it is the honest unit here): config
 * problems at load, topic rendering and checks, payload bytes (a string as
 * its text, anything else as compact JSON), the message passing through,
 * NO_MQTT without a host, and the hook's classes reaching the error object.
 * The publisher behind the hook in outpostd is tested against a real broker
 * in test_mqtt_out.c.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "agent/engine/engine.h"
#include "connectors/mqtt/step.h"
#include "connectors/mqtt/topic.h"
#include "tests/unit/test.h"

/* What the fake hook saw last, and what it answers. */
static struct {
	int calls;
	char broker[64];
	char topic[256];
	char payload[80000];
	size_t len;
	int qos;
	bool retained;
	long long timeout_ms;
	op_err answer;
	const char *why;
	void *ud;
} fake;

static op_err fake_publish(void *ud, const char *broker, const char *topic, const void *payload,
                           size_t len, int qos, bool retained, long long timeout_ms, char *why,
                           size_t whylen)
{
	fake.calls++;
	fake.ud = ud;
	snprintf(fake.broker, sizeof(fake.broker), "%s", broker);
	snprintf(fake.topic, sizeof(fake.topic), "%s", topic);
	ck_assert_uint_lt(len, sizeof(fake.payload));
	memcpy(fake.payload, payload, len);
	fake.payload[len] = '\0';
	fake.len = len;
	fake.qos = qos;
	fake.retained = retained;
	fake.timeout_ms = timeout_ms;
	if (fake.why)
		snprintf(why, whylen, "%s", fake.why);
	return fake.answer;
}

static int ud_tag;

static void setup(void)
{
	memset(&fake, 0, sizeof(fake));
}

static struct op_pipeline *load(const char *text, struct op_diag *d)
{
	struct op_pipeline *p = NULL;
	op_err rc = op_pipeline_load(text, strlen(text), "test", d, &p);
	ck_assert(rc == OP_OK || p == NULL);
	return p;
}

/* A pipeline of one mqtt-publish step with config cfg (JSON object text). */
static struct op_pipeline *load_step(const char *cfg, const char *settings)
{
	char text[8192];
	snprintf(text, sizeof(text),
	         "{\"name\":\"p\",\"version\":\"1\"%s%s,\"steps\":[{\"type\":\"mqtt-publish\","
	         "\"name\":\"pub\",\"config\":%s}]}",
	         settings ? ",\"settings\":" : "", settings ? settings : "", cfg);
	struct op_diag d;
	op_diag_init(&d);
	struct op_pipeline *p = load(text, &d);
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "  %s: %s\n", d.v[i].path, d.v[i].msg);
	ck_assert_msg(p != NULL, "pipeline did not load");
	op_diag_fini(&d);
	return p;
}

/* Runs a one-step pipeline on input; with_host says whether the engine has
 * the fake hook. Returns the result (NULL on failure, then f is set). */
static cJSON *run(const char *cfg, const char *input, bool with_host, op_err *rc, struct op_fail *f)
{
	struct op_engine *e = op_engine_new();
	ck_assert_ptr_nonnull(e);
	if (with_host) {
		struct op_host h = {.mqtt_publish = fake_publish, .ud = &ud_tag};
		op_engine_set_host(e, &h);
	}
	struct op_pipeline *p = load_step(cfg, NULL);
	cJSON *out = NULL;
	*rc = op_engine_run(e, p, op_test_json(input), NULL, &out, f);
	op_pipeline_free(p);
	op_engine_free(e);
	return out;
}

START_TEST(publishes_the_message_and_passes_it_through)
{
	op_err rc;
	struct op_fail f;
	cJSON *out = run("{\"broker\":\"plant\",\"topic\":\"plant/{{ message.line }}/orders\"}",
	                 "{\"line\":7,\"id\":\"o1\",\"n\":9007199254740993}", true, &rc, &f);
	ck_assert_int_eq(rc, OP_OK);
	ck_assert_json_text(out, "{\"line\":7,\"id\":\"o1\",\"n\":9007199254740993}");
	cJSON_Delete(out);
	ck_assert_int_eq(fake.calls, 1);
	ck_assert_ptr_eq(fake.ud, &ud_tag);
	ck_assert_str_eq(fake.broker, "plant");
	ck_assert_str_eq(fake.topic, "plant/7/orders");
	/* Compact JSON, numbers printed without loss. */
	ck_assert_str_eq(fake.payload, "{\"line\":7,\"id\":\"o1\",\"n\":9007199254740992}");
	ck_assert_uint_eq(fake.len, strlen(fake.payload));
	ck_assert_int_eq(fake.qos, 1);
	ck_assert(!fake.retained);
	ck_assert_int_eq(fake.timeout_ms, 10000);
}
END_TEST

START_TEST(string_payload_is_its_text)
{
	op_err rc;
	struct op_fail f;
	cJSON *out = run("{\"broker\":\"b\",\"topic\":\"t\",\"payload\":\"line {{ message.id }}: "
	                 "\\\"ok\\\"\",\"qos\":0,\"retained\":true,\"timeoutMs\":250}",
	                 "{\"id\":3}", true, &rc, &f);
	ck_assert_int_eq(rc, OP_OK);
	ck_assert_json_text(out, "{\"id\":3}");
	cJSON_Delete(out);
	ck_assert_str_eq(fake.payload, "line 3: \"ok\"");
	ck_assert_int_eq(fake.qos, 0);
	ck_assert(fake.retained);
	ck_assert_int_eq(fake.timeout_ms, 250);

	/* A message that is itself a string goes out as its text too. */
	out = run("{\"broker\":\"b\",\"topic\":\"t\"}", "\"plain text\"", true, &rc, &f);
	ck_assert_int_eq(rc, OP_OK);
	cJSON_Delete(out);
	ck_assert_str_eq(fake.payload, "plain text");
}
END_TEST

START_TEST(other_payloads_are_compact_json)
{
	static const struct {
		const char *payload, *want;
	} cases[] = {
	    {"{\"id\":\"{{ message.id }}\",\"at\":[1, 2.5, true, null]}",
	     "{\"id\":\"x\",\"at\":[1,2.5,true,null]}"},
	    {"\"{{ message.n }}\"", "42"}, /* a whole expression keeps its type */
	    {"\"{{ message.list }}\"", "[\"a\",\"b\"]"},
	    {"null", "null"},
	    {"false", "false"},
	    {"\"\"", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cfg[512];
		snprintf(cfg, sizeof(cfg), "{\"broker\":\"b\",\"topic\":\"t\",\"payload\":%s}",
		         cases[i].payload);
		op_err rc;
		struct op_fail f;
		cJSON *out =
		    run(cfg, "{\"id\":\"x\",\"n\":42,\"list\":[\"a\",\"b\"]}", true, &rc, &f);
		ck_assert_msg(rc == OP_OK, "case %zu: %s", i, f.msg);
		ck_assert_json_text(out, "{\"id\":\"x\",\"n\":42,\"list\":[\"a\",\"b\"]}");
		cJSON_Delete(out);
		ck_assert_msg(strcmp(fake.payload, cases[i].want) == 0, "case %zu: got %s, want %s",
		              i, fake.payload, cases[i].want);
		ck_assert_uint_eq(fake.len, strlen(cases[i].want));
	}
}
END_TEST

/* The step must fail with code and class, message containing want. */
static void run_fails(const char *cfg, const char *input, bool with_host, op_err cls,
                      const char *code, const char *want)
{
	op_err rc;
	struct op_fail f;
	cJSON *out = run(cfg, input, with_host, &rc, &f);
	ck_assert_ptr_null(out);
	ck_assert_int_eq(rc, cls);
	ck_assert_int_eq(f.cls, cls);
	ck_assert_str_eq(f.code, code);
	ck_assert_str_eq(f.step, "pub");
	ck_assert_msg(strstr(f.msg, want) != NULL, "message \"%s\" lacks \"%s\"", f.msg, want);
}

START_TEST(rendered_topics_are_checked)
{
	const char *cfg = "{\"broker\":\"b\",\"topic\":\"{{ message.t }}\"}";
	run_fails(cfg, "{\"t\":\"a/+/c\"}", true, OP_EINVAL, "MQTT_TOPIC",
	          "topic \"a/+/c\" is not a topic to publish to: '+' at byte 3: wildcards are for "
	          "subscriptions, not for publishing");
	run_fails(cfg, "{\"t\":\"a/#\"}", true, OP_EINVAL, "MQTT_TOPIC", "'#' at byte 3");
	run_fails(cfg, "{\"t\":\"\"}", true, OP_EINVAL, "MQTT_TOPIC",
	          "topic \"\" is not a topic to publish to: empty topic");
	run_fails(cfg, "{\"t\":7}", true, OP_EINVAL, "MQTT_TOPIC",
	          "config.topic: expected a string, got a number");
	run_fails(cfg, "{}", true, OP_EINVAL, "MQTT_TOPIC",
	          "config.topic: expected a string, got null");
	run_fails(cfg, "{\"t\":\"caf\\u00e9/+\"}", true, OP_EINVAL, "MQTT_TOPIC",
	          "topic \"caf\xc3\xa9/+\" is not a topic to publish to: '+' at byte 7");
	ck_assert_int_eq(fake.calls, 0);

	/* Longest topic passes; one byte more does not. */
	static char input[70000];
	int n = snprintf(input, sizeof(input), "{\"t\":\"");
	memset(input + n, 'x', OP_MQTT_TOPIC_MAX);
	snprintf(input + n + OP_MQTT_TOPIC_MAX, sizeof(input) - (size_t)n - OP_MQTT_TOPIC_MAX,
	         "\"}");
	op_err rc;
	struct op_fail f;
	cJSON *out = run(cfg, input, true, &rc, &f);
	ck_assert_int_eq(rc, OP_OK);
	cJSON_Delete(out);
	ck_assert_int_eq(fake.calls, 1);
	snprintf(input + n + OP_MQTT_TOPIC_MAX, sizeof(input) - (size_t)n - OP_MQTT_TOPIC_MAX,
	         "y\"}");
	run_fails(cfg, input, true, OP_EINVAL, "MQTT_TOPIC", "65536 bytes, expected at most 65535");
	ck_assert_int_eq(fake.calls, 1);
}
END_TEST

START_TEST(topic_names)
{
	char why[128];
	ck_assert(op_mqtt_topic_name_valid("a/b", 3, why, sizeof(why)));
	ck_assert(op_mqtt_topic_name_valid("/", 1, why, sizeof(why)));
	ck_assert(op_mqtt_topic_name_valid("caf\xc3\xa9 x", 7, why, sizeof(why)));
	ck_assert(op_mqtt_topic_name_valid("$SYS/x", 6, NULL, 0));
	ck_assert(!op_mqtt_topic_name_valid("a\0b", 3, why, sizeof(why)));
	ck_assert_str_eq(why, "NUL character at byte 2");
	ck_assert(!op_mqtt_topic_name_valid("ab\xff", 3, why, sizeof(why)));
	ck_assert_str_eq(why, "not valid UTF-8 at byte 3");
	ck_assert(!op_mqtt_topic_name_valid("\xed\xa0\x80", 3, why, sizeof(why))); /* surrogate */
	ck_assert(!op_mqtt_topic_name_valid("a+", 2, why, sizeof(why)));
	ck_assert_str_eq(why, "'+' at byte 2: wildcards are for subscriptions, not for publishing");
	ck_assert(!op_mqtt_topic_name_valid("", 0, NULL, 0));
	ck_assert_uint_eq(op_mqtt_payload_max(3, 1), 268435455u - 2 - 3 - 2);
	ck_assert_uint_eq(op_mqtt_payload_max(3, 0), 268435455u - 2 - 3);
}
END_TEST

START_TEST(invalid_utf8_topic_at_run)
{
	/* cJSON keeps bytes as they come; the step must not pass them on. */
	struct op_engine *e = op_engine_new();
	struct op_host h = {.mqtt_publish = fake_publish};
	op_engine_set_host(e, &h);
	struct op_pipeline *p = load_step("{\"broker\":\"b\",\"topic\":\"x/{{ message }}\"}", NULL);
	cJSON *out = NULL;
	struct op_fail f;
	op_err rc = op_engine_run(e, p, cJSON_CreateString("a\xc3("), NULL, &out, &f);
	ck_assert_int_eq(rc, OP_EINVAL);
	ck_assert_str_eq(f.code, "MQTT_TOPIC");
	ck_assert_ptr_nonnull(strstr(f.msg, "not valid UTF-8 at byte 4"));
	ck_assert_int_eq(fake.calls, 0);
	op_pipeline_free(p);
	op_engine_free(e);
}
END_TEST

START_TEST(no_host_is_unsupported)
{
	const char *cfg = "{\"broker\":\"plant\",\"topic\":\"t/{{ message.id }}\"}";
	run_fails(cfg, "{\"id\":1}", false, OP_EUNSUPPORTED, "NO_MQTT",
	          "no MQTT connection in outpostctl run: the message to topic \"t/1\" at broker "
	          "'plant' was not published");

	/* A host without an MQTT publisher is the same; NULL clears a host. */
	struct op_engine *e = op_engine_new();
	struct op_host h = {.ud = &ud_tag};
	op_engine_set_host(e, &h);
	struct op_pipeline *p = load_step(cfg, NULL);
	cJSON *out = NULL;
	struct op_fail f;
	ck_assert_int_eq(op_engine_run(e, p, op_test_json("{\"id\":1}"), NULL, &out, &f),
	                 OP_EUNSUPPORTED);
	ck_assert_str_eq(f.code, "NO_MQTT");
	h.mqtt_publish = fake_publish;
	op_engine_set_host(e, &h);
	ck_assert_int_eq(op_engine_run(e, p, op_test_json("{\"id\":1}"), NULL, &out, &f), OP_OK);
	cJSON_Delete(out);
	op_engine_set_host(e, NULL);
	ck_assert_int_eq(op_engine_run(e, p, op_test_json("{\"id\":1}"), NULL, &out, &f),
	                 OP_EUNSUPPORTED);
	ck_assert_int_eq(fake.calls, 1);
	op_pipeline_free(p);
	op_engine_free(e);
}
END_TEST

START_TEST(hook_classes_reach_the_error)
{
	static const op_err classes[] = {OP_ENOCONN, OP_ETIMEOUT, OP_EBUSY,  OP_EREJECTED,
	                                 OP_EAUTH,   OP_EINVAL,   OP_ELIMIT, OP_ENOTFOUND,
	                                 OP_ENOMEM,  OP_EINTERNAL};
	const char *cfg = "{\"broker\":\"plant\",\"topic\":\"a/b\"}";
	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		fake.answer = classes[i];
		fake.why = "broker plant (ssl://h:8883) is not connected: refused";
		run_fails(cfg, "{}", true, classes[i], "MQTT_PUBLISH",
		          "publishing to topic \"a/b\" at broker 'plant' failed: broker plant "
		          "(ssl://h:8883) is not connected: refused");
	}
	/* Without a why, the class's own words. */
	fake.answer = OP_ETIMEOUT;
	fake.why = NULL;
	run_fails(cfg, "{}", true, OP_ETIMEOUT, "MQTT_PUBLISH",
	          "at broker 'plant' failed: timed out");
}
END_TEST

START_TEST(timeout_is_capped_by_the_execution)
{
	struct op_engine *e = op_engine_new();
	struct op_host h = {.mqtt_publish = fake_publish};
	op_engine_set_host(e, &h);
	struct op_pipeline *p = load_step("{\"broker\":\"b\",\"topic\":\"t\",\"timeoutMs\":300000}",
	                                  "{\"timeoutMs\":2000}");
	cJSON *out = NULL;
	struct op_fail f;
	ck_assert_int_eq(op_engine_run(e, p, op_test_json("1"), NULL, &out, &f), OP_OK);
	cJSON_Delete(out);
	ck_assert_int_gt(fake.timeout_ms, 0);
	ck_assert_int_le(fake.timeout_ms, 2000);
	op_pipeline_free(p);
	op_engine_free(e);
}
END_TEST

/* Loads cfg, which must fail with the given problems ("path: message"). */
static void load_fails(const char *cfg, const char *const *want)
{
	char text[4096];
	snprintf(text, sizeof(text),
	         "{\"name\":\"p\",\"version\":\"1\",\"steps\":[{\"type\":\"log\",\"config\":{"
	         "\"message\":\"x\"}},{\"type\":\"mqtt-publish\",\"config\":%s}]}",
	         cfg);
	struct op_diag d;
	op_diag_init(&d);
	ck_assert_ptr_null(load(text, &d));
	size_t n = 0;
	while (want[n])
		n++;
	if (op_diag_count(&d) != n) {
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "  %s: %s\n", d.v[i].path, d.v[i].msg);
	}
	ck_assert_uint_eq(op_diag_count(&d), n);
	for (size_t i = 0; i < n; i++) {
		char got[1024];
		snprintf(got, sizeof(got), "%s: %s", d.v[i].path, d.v[i].msg);
		/* "...~" only has to start the same. */
		size_t wl = strlen(want[i]);
		if (wl && want[i][wl - 1] == '~')
			ck_assert_msg(strncmp(got, want[i], wl - 1) == 0, "got %s", got);
		else
			ck_assert_str_eq(got, want[i]);
	}
	op_diag_fini(&d);
}

/* Whole problem lines, named so that lists of them need no concatenation. */
#define BROKER_NAME_PROBLEM                                                                \
	"steps[1].config.broker: expected the name of a broker section (1 to 64 letters, " \
	"digits, '.', '_' or '-'), got "
static const char unknown_ttl[] = "steps[1].config.ttl: unknown key; expected one of: broker, "
                                  "topic, payload, qos, retained, timeoutMs";
static const char bad_name[] = BROKER_NAME_PROBLEM "\"my broker\"";
static const char empty_name[] = BROKER_NAME_PROBLEM "\"\"";
static const char wildcard_topic[] = "steps[1].config.topic: not a topic to publish to: '#' at "
                                     "byte 3: wildcards are for subscriptions, not for publishing";

START_TEST(config_problems_at_load)
{
	load_fails("{}",
	           (const char *const[]){
	               "steps[1].config.broker: missing required key (string)",
	               "steps[1].config.topic: missing required key (expression string)", NULL});
	load_fails(
	    "{\"broker\":\"b\",\"topic\":\"t\",\"qos\":2,\"retained\":\"yes\",\"timeoutMs\":0,"
	    "\"ttl\":1}",
	    (const char *const[]){
	        unknown_ttl,
	        "steps[1].config.qos: 2 is out of range; expected 0 to 1",
	        "steps[1].config.retained: expected boolean, got a string",
	        "steps[1].config.timeoutMs: 0 is out of range; expected 1 to 300000",
	        NULL,
	    });
	load_fails("{\"broker\":\"my broker\",\"topic\":\"a/#\"}",
	           (const char *const[]){bad_name, wildcard_topic, NULL});
	load_fails("{\"broker\":\"\",\"topic\":\"\"}",
	           (const char *const[]){
	               empty_name,
	               "steps[1].config.topic: not a topic to publish to: empty topic",
	               NULL,
	           });
	load_fails("{\"broker\":\"b\",\"topic\":\"{{ NOPE() }}\"}",
	           (const char *const[]){"steps[1].config.topic: ~", NULL});
}
END_TEST

START_TEST(broker_of_steps)
{
	struct op_pipeline *p = load_step("{\"broker\":\"plant-2\",\"topic\":\"t\"}", NULL);
	ck_assert_str_eq(op_mqtt_step_broker(&p->steps.v[0]), "plant-2");
	op_pipeline_free(p);
	struct op_diag d;
	op_diag_init(&d);
	const char *doc =
	    "{\"name\":\"p\",\"version\":\"1\",\"steps\":[{\"type\":\"log\",\"config\":"
	    "{\"message\":\"x\"}}]}";
	p = load(doc, &d);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_null(op_mqtt_step_broker(&p->steps.v[0]));
	op_pipeline_free(p);
	op_diag_fini(&d);
}
END_TEST

static Suite *mqtt_step_suite(void)
{
	Suite *s = suite_create("mqtt-step");
	TCase *tc = tcase_create("mqtt-step");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, publishes_the_message_and_passes_it_through);
	tcase_add_test(tc, string_payload_is_its_text);
	tcase_add_test(tc, other_payloads_are_compact_json);
	tcase_add_test(tc, rendered_topics_are_checked);
	tcase_add_test(tc, topic_names);
	tcase_add_test(tc, invalid_utf8_topic_at_run);
	tcase_add_test(tc, no_host_is_unsupported);
	tcase_add_test(tc, hook_classes_reach_the_error);
	tcase_add_test(tc, timeout_is_capped_by_the_execution);
	tcase_add_test(tc, config_problems_at_load);
	tcase_add_test(tc, broker_of_steps);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(mqtt_step_suite)
