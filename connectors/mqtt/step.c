/*
 * The mqtt-publish step: renders a topic and a payload from the message and
 * publishes them at a [broker NAME] of the agent's config, through the MQTT
 * clients the host lends the engine (op_host.mqtt_publish; in outpostd,
 * agent/daemon/mqtt_out.c). The step holds no connection of its own, so it
 * needs no release and shares nothing between runs but its compiled config.
 *
 * Invariant: the message passes through unchanged; the step only adds a
 * message at the broker. A JSON string payload goes out as its text, any
 * other JSON value as compact JSON text. Without a host (outpostctl run) the
 * step fails with class unsupported rather than pretend the message went
 * out. QoS 1 is at-least-once: when the acknowledgement is lost or late the
 * step fails with a retryable class and a retry publishes again.
 */
#define OP_LOG_MODULE "mqtt"
#include "connectors/mqtt/step.h"

#include <stdio.h>
#include <string.h>

#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/engine/engine.h"
#include "connectors/mqtt/topic.h"

/* Broker names as agent/daemon/config.h allows them: [A-Za-z0-9._-]{1,64}. */
#define BROKER_NAME_MAX 64

struct publish_cfg {
	char *broker;
	struct op_expr *topic;
	struct op_tmpl *payload;
	long long qos;
	bool retained;
	long long timeout_ms;
};

static const struct op_conf_field publish_fields[] = {
    {.name = "broker",
     .type = OP_CONF_STRING,
     .off = offsetof(struct publish_cfg, broker),
     .required = true,
     .help = "name of a [broker NAME] section of the agent's config"},
    {.name = "topic",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct publish_cfg, topic),
     .required = true,
     .help = "topic to publish to; after {{ }} rendering 1 to 65535 bytes of UTF-8 without "
             "'+' or '#'"},
    {.name = "payload",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct publish_cfg, payload),
     .help = "JSON template of the payload (default: the message); a string is sent as its "
             "text, anything else as compact JSON"},
    {.name = "qos",
     .type = OP_CONF_INT,
     .off = offsetof(struct publish_cfg, qos),
     .def = "1",
     .min = 0,
     .max = 1,
     .help = "0: sent once, unconfirmed; 1: the step waits for the broker's acknowledgement"},
    {.name = "retained",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct publish_cfg, retained),
     .def = "false",
     .help = "ask the broker to keep the message as the topic's last value for new "
             "subscribers"},
    {.name = "timeoutMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct publish_cfg, timeout_ms),
     .def = "10000",
     .min = 1,
     .max = 300000,
     .help = "longest wait for the connection and the acknowledgement, in milliseconds"},
};
static const struct op_conf_table publish_table =
    OP_CONF_TABLE("mqtt-publish", struct publish_cfg, publish_fields);

static bool broker_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > BROKER_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static op_err publish_prepare(struct op_load *ld, struct op_step *st)
{
	const struct publish_cfg *c = st->cfg;
	op_err rc = OP_OK;
	if (c->broker && !broker_name_ok(c->broker)) {
		op_load_problem(ld, "broker",
		                "expected the name of a broker section (1 to 64 letters, digits, "
		                "'.', '_' or '-'), got \"%.80s\"",
		                c->broker);
		rc = OP_ECONFIG;
	}
	/* A constant topic is checked now rather than at every message. */
	const char *src = c->topic ? op_expr_source(c->topic) : NULL;
	char why[128];
	if (src && !op_expr_has_code(src) &&
	    !op_mqtt_topic_name_valid(src, strlen(src), why, sizeof(why))) {
		op_load_problem(ld, "topic", "not a topic to publish to: %s", why);
		rc = OP_ECONFIG;
	}
	return rc;
}

/* The rendered payload as bytes: a string's text or the value's compact
 * JSON, at most max bytes. */
static op_err payload_bytes(const cJSON *v, size_t max, struct op_buf *b, const char **data,
                            size_t *len)
{
	if (cJSON_IsString(v)) {
		*data = v->valuestring;
		*len = strlen(v->valuestring);
		return *len > max ? OP_ELIMIT : OP_OK;
	}
	op_buf_init(b, max);
	op_err rc = op_json_append(b, v, OP_JSON_COMPACT);
	if (rc)
		return rc;
	*data = b->data ? b->data : "";
	*len = b->len;
	return OP_OK;
}

static op_err publish_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	const struct publish_cfg *c = st->cfg;
	struct op_val topic = {0};
	cJSON *rendered = NULL;
	struct op_buf text;
	op_buf_init(&text, 0);
	op_err rc = op_exec_eval(x, c->topic, "topic", msg, &topic);
	if (rc)
		goto out;
	if (!cJSON_IsString(topic.v)) {
		rc = op_exec_fail(x, OP_EINVAL, "MQTT_TOPIC",
		                  "config.topic: expected a string, got %s", op_json_kind(topic.v));
		goto out;
	}
	const char *t = topic.v->valuestring;
	size_t tlen = strlen(t);
	char why[512];
	if (!op_mqtt_topic_name_valid(t, tlen, why, sizeof(why))) {
		rc = op_exec_fail(x, OP_EINVAL, "MQTT_TOPIC",
		                  "topic \"%.200s\" is not a topic to publish to: %s", t, why);
		goto out;
	}
	if (c->payload) {
		rc = op_exec_render(x, c->payload, "payload", msg, &rendered);
		if (rc)
			goto out;
	}
	const char *data = NULL;
	size_t len = 0;
	size_t max = op_mqtt_payload_max(tlen, (int)c->qos);
	rc = payload_bytes(rendered ? rendered : msg, max, &text, &data, &len);
	if (rc == OP_ELIMIT) {
		rc = op_exec_fail(x, rc, "MQTT_PAYLOAD",
		                  "payload for topic \"%.200s\" is larger than an MQTT message may "
		                  "be (%zu bytes with this topic) or nested too deep",
		                  t, max);
		goto out;
	}
	if (rc) {
		rc = op_exec_fail(x, rc, "NOMEM", "out of memory");
		goto out;
	}
	const struct op_host *h = op_exec_host(x);
	if (h == NULL || h->mqtt_publish == NULL) {
		rc = op_exec_fail(x, OP_EUNSUPPORTED, "NO_MQTT",
		                  "no MQTT connection in outpostctl run: the message to topic "
		                  "\"%.200s\" at broker '%s' was not published",
		                  t, c->broker);
		goto out;
	}
	/* Never wait past the execution's deadline. */
	long long timeout = op_exec_timeout_ms(x, c->timeout_ms);
	why[0] = '\0';
	rc = h->mqtt_publish(h->ud, c->broker, t, data, len, (int)c->qos, c->retained, timeout, why,
	                     sizeof(why));
	if (rc) {
		rc = op_exec_fail(x, rc, "MQTT_PUBLISH",
		                  "publishing to topic \"%.200s\" at broker '%s' failed: %s", t,
		                  c->broker, why[0] ? why : op_err_str(rc));
		goto out;
	}
	OP_LOGD("%s exec=%s: published %zu bytes to topic \"%.200s\" at broker '%s' (QoS %lld)",
	        st->name, op_exec_id(x), len, t, c->broker, c->qos);
out:
	op_buf_fini(&text);
	cJSON_Delete(rendered);
	op_val_drop(&topic);
	if (rc) {
		cJSON_Delete(msg);
		return rc;
	}
	*out = msg;
	return OP_OK;
}

const char *op_mqtt_step_broker(const struct op_step *st)
{
	if (st->type != &op_step_mqtt_publish || st->cfg == NULL)
		return NULL;
	return ((const struct publish_cfg *)st->cfg)->broker;
}

const struct op_step_type op_step_mqtt_publish = {
    .name = "mqtt-publish",
    .summary = "publish to a topic at a broker of the agent's config; the message passes "
               "through",
    .conf = &publish_table,
    .prepare = publish_prepare,
    .run = publish_run,
    .waits = true,
};
