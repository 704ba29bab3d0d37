/*
 * The trigger type registry: one static table of trigger types, each with
 * its config table and a prepare() compiling the parts binding cannot check
 * (route, auth verifier, cron, time zone, topic filter). Invariant: a
 * trigger's priv is either NULL (no prepare, or a problem was found) or
 * fully built, and release() frees whatever prepare() left, so a failed
 * load frees cleanly.
 */
#include "agent/trigger/trigger.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "agent/auth/auth.h"
#include "agent/core/alloc.h"
#include "agent/http/route.h"
#include "agent/trigger/http_map.h"

const char *const op_trigger_types[] = {
#define OP_TRIGGER_NAME(name, str) str,
    OP_TRIGGER_KINDS(OP_TRIGGER_NAME)
#undef OP_TRIGGER_NAME
        NULL};

/* --- http ------------------------------------------------------------------ */

static const char *const http_methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
static const char *const http_modes[] = {"sync", "async", NULL};

struct http_rate_conf {
	double per_second;
	long long burst;
};

struct http_resp_conf {
	long long status;
	cJSON *headers;
};

struct http_conf {
	int method;
	char *path;
	int mode;
	cJSON *auth;
	struct http_rate_conf rate;
	long long timeout_ms;
	struct http_resp_conf response;
};

static const struct op_conf_field http_rate_fields[] = {
    {.name = "perSecond",
     .type = OP_CONF_NUMBER,
     .off = offsetof(struct http_rate_conf, per_second),
     .min = 0,
     .max = 1000000,
     .help = "required: requests per second allowed on average (> 0)"},
    {.name = "burst",
     .type = OP_CONF_INT,
     .off = offsetof(struct http_rate_conf, burst),
     .min = 1,
     .max = 1000000,
     .help = "requests allowed at once after a quiet time; default perSecond rounded up"},
};
static const struct op_conf_table http_rate_table =
    OP_CONF_TABLE("rateLimit", struct http_rate_conf, http_rate_fields);

static const struct op_conf_field http_resp_fields[] = {
    {.name = "status",
     .type = OP_CONF_INT,
     .off = offsetof(struct http_resp_conf, status),
     .def = "200",
     .min = 200,
     .max = 599,
     .help = "status of a sync answer unless the result sets one"},
    {.name = "headers",
     .type = OP_CONF_JSON,
     .off = offsetof(struct http_resp_conf, headers),
     .def = "{}",
     .help = "headers of every sync answer: an object of name -> string"},
};
static const struct op_conf_table http_resp_table =
    OP_CONF_TABLE("response", struct http_resp_conf, http_resp_fields);

static const struct op_conf_field http_fields[] = {
    {.name = "method",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct http_conf, method),
     .def = "\"POST\"",
     .choices = http_methods,
     .help = "HTTP method answered (HEAD is answered with GET)"},
    {.name = "path",
     .type = OP_CONF_STRING,
     .off = offsetof(struct http_conf, path),
     .required = true,
     .help = "path template, e.g. /orders/{id}; parameters go to message.params"},
    {.name = "mode",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct http_conf, mode),
     .def = "\"sync\"",
     .choices = http_modes,
     .help = "sync: answer with the result; async: answer 202 after the durable commit"},
    {.name = "auth",
     .type = OP_CONF_JSON,
     .off = offsetof(struct http_conf, auth),
     .def = "{\"type\":\"none\"}",
     .help = "authentication: {\"type\": \"apikey\" | \"basic\" | \"jwt\" | \"none\", ...} "
             "(docs/auth.md)"},
    {.name = "rateLimit",
     .type = OP_CONF_OBJECT,
     .off = offsetof(struct http_conf, rate),
     .sub = &http_rate_table,
     .help = "token bucket for this trigger; past it 429 with Retry-After"},
    {.name = "timeoutMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct http_conf, timeout_ms),
     .def = "30000",
     .min = 1,
     .max = 3600000,
     .help = "sync: answer 504 when the execution takes longer ([http] timeout bounds it)"},
    {.name = "response",
     .type = OP_CONF_OBJECT,
     .off = offsetof(struct http_conf, response),
     .sub = &http_resp_table,
     .help = "defaults of sync answers"},
};
static const struct op_conf_table http_table = OP_CONF_TABLE("http", struct http_conf, http_fields);

struct http_priv {
	struct op_http_trigger pub;
	struct op_http_route *route;
	struct op_auth *auth;
	struct op_rate *rate;
	char *secret_header;
};

static bool is_tchar(unsigned char c)
{
	return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Checks one header of response.headers; the path is at the header. */
static void check_header(struct op_diag *d, const cJSON *it)
{
	bool name_ok = it->string[0] != '\0';
	for (const char *c = it->string; name_ok && *c; c++)
		name_ok = is_tchar((unsigned char)*c);
	if (!name_ok)
		op_diag_add(d, NULL, "not a valid header name");
	else if (op_http_header_reserved(it->string))
		op_diag_add(d, NULL, "the server sets this header itself");
	else if (!cJSON_IsString(it))
		op_diag_add(d, NULL, "expected a string, got another JSON value");
	else if (strpbrk(it->valuestring, "\r\n") != NULL)
		op_diag_add(d, NULL, "a header value cannot hold CR or LF");
	else if (strcasecmp(it->string, "content-type") == 0 && strlen(it->valuestring) >= 128)
		op_diag_add(d, NULL, "expected at most 127 characters");
}

/* Checks response.headers; problems at response.headers.NAME. */
static void check_headers(struct op_diag *d, const cJSON *h)
{
	if (h == NULL)
		return;
	size_t m = op_diag_push_key(d, "response");
	op_diag_push_key(d, "headers");
	if (!cJSON_IsObject(h)) {
		op_diag_add(d, NULL, "expected an object of name -> string");
	} else {
		const cJSON *it;
		cJSON_ArrayForEach (it, h) {
			size_t k = op_diag_push_key(d, it->string);
			check_header(d, it);
			op_diag_pop(d, k);
		}
	}
	op_diag_pop(d, m);
}

/* The apikey auth's own header, lower-cased, or NULL. */
static op_err secret_header(const cJSON *auth, char **out)
{
	*out = NULL;
	const cJSON *ty = cJSON_GetObjectItemCaseSensitive(auth, "type");
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(auth, "header");
	if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "apikey") != 0 || !cJSON_IsString(h))
		return OP_OK;
	if ((*out = op_strdup(h->valuestring)) == NULL)
		return OP_ENOMEM;
	for (char *c = *out; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	return OP_OK;
}

static void http_release(struct op_trigger_conf *t)
{
	struct http_priv *hp = t->priv;
	if (hp == NULL)
		return;
	op_http_route_free(hp->route);
	op_auth_free(hp->auth);
	op_rate_free(hp->rate);
	op_free(hp->secret_header);
	op_free(hp);
	t->priv = NULL;
}

static op_err http_prepare(struct op_load *ld, struct op_trigger_conf *t)
{
	struct http_conf *c = t->cfg;
	struct op_diag *d = op_load_diag(ld);
	struct op_http_route *route = NULL;
	struct op_auth *auth = NULL;
	struct op_rate *rate = NULL;
	op_err rc = OP_OK, e;
	char err[256];

	if (c->path) {
		e = op_http_route_compile(c->path, &route, err, sizeof(err));
		if (e == OP_ENOMEM) {
			rc = e;
			goto out;
		}
		if (e) {
			op_load_problem(ld, "path", "%s", err);
			rc = OP_ECONFIG;
		}
	}
	if (cJSON_IsObject(c->auth)) {
		size_t m = op_diag_push_key(d, "auth");
		e = op_auth_compile(c->auth, d, &auth);
		op_diag_pop(d, m);
		if (e == OP_ENOMEM) {
			rc = e;
			goto out;
		}
		if (e == OP_EINTERNAL)
			op_load_problem(ld, "auth",
			                "could not be compiled (crypto library failure)");
		if (e)
			rc = OP_ECONFIG;
	} else if (c->auth) {
		op_load_problem(ld, "auth", "expected an object {\"type\": ...}");
		rc = OP_ECONFIG;
	}
	const cJSON *rl = cJSON_IsObject(t->config)
	                      ? cJSON_GetObjectItemCaseSensitive(t->config, "rateLimit")
	                      : NULL;
	if (cJSON_IsObject(rl)) {
		const cJSON *ps = cJSON_GetObjectItemCaseSensitive(rl, "perSecond");
		const char *bad = ps == NULL ? "missing required key (number)"
		                  : cJSON_IsNumber(ps) && !(c->rate.per_second > 0)
		                      ? "expected a number greater than 0"
		                      : NULL;
		if (bad) {
			size_t m = op_diag_push_key(d, "rateLimit");
			op_diag_add(d, "perSecond", "%s", bad);
			op_diag_pop(d, m);
			rc = OP_ECONFIG;
		} else if (c->rate.per_second > 0) {
			long long burst =
			    c->rate.burst ? c->rate.burst : (long long)ceil(c->rate.per_second);
			if ((e = op_rate_new(c->rate.per_second, burst, &rate)) == OP_ENOMEM) {
				rc = e;
				goto out;
			}
			if (e) {
				op_load_problem(ld, "rateLimit", "not a valid rate limit");
				rc = OP_ECONFIG;
			}
		}
	}
	check_headers(d, c->response.headers);
	if (rc != OP_OK || route == NULL || auth == NULL)
		goto out;

	struct http_priv *hp = op_calloc(1, sizeof(*hp));
	if (hp == NULL) {
		rc = OP_ENOMEM;
		goto out;
	}
	if (secret_header(c->auth, &hp->secret_header) != OP_OK) {
		op_free(hp);
		rc = OP_ENOMEM;
		goto out;
	}
	hp->route = route;
	hp->auth = auth;
	hp->rate = rate;
	hp->pub = (struct op_http_trigger){
	    .method = http_methods[c->method],
	    .route = route,
	    .mode = c->mode == 1 ? OP_HTTP_ASYNC : OP_HTTP_SYNC,
	    .auth = auth,
	    .rate = rate,
	    .timeout_ms = c->timeout_ms,
	    .status = (int)c->response.status,
	    .headers = c->response.headers,
	    .secret_header = hp->secret_header,
	};
	route = NULL;
	auth = NULL;
	rate = NULL;
	t->priv = hp;
out:
	op_http_route_free(route);
	op_auth_free(auth);
	op_rate_free(rate);
	return rc;
}

/* --- schedule -------------------------------------------------------------- */

static const char *const missed_policies[] = {"skip", "once", NULL};

struct schedule_conf {
	char *cron;
	char *timezone;
	bool overlap;
	int missed;
	cJSON *input;
};

static const struct op_conf_field schedule_fields[] = {
    {.name = "cron",
     .type = OP_CONF_STRING,
     .off = offsetof(struct schedule_conf, cron),
     .required = true,
     .help = "cron expression: \"sec min hour dom month dow\", five fields, or @daily "
             "(docs/schedule.md)"},
    {.name = "timezone",
     .type = OP_CONF_STRING,
     .off = offsetof(struct schedule_conf, timezone),
     .def = "\"UTC\"",
     .help = "time zone of the expression: IANA name (\"Europe/Berlin\"), UTC or \"+01:00\""},
    {.name = "overlap",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct schedule_conf, overlap),
     .def = "false",
     .help = "start a run even when the previous one is still running"},
    {.name = "missed",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct schedule_conf, missed),
     .def = "\"skip\"",
     .choices = missed_policies,
     .help = "fire times missed while the agent was down: skip them, or run once"},
    {.name = "input",
     .type = OP_CONF_JSON,
     .off = offsetof(struct schedule_conf, input),
     .def = "{}",
     .help = "the message each run starts with"},
};
static const struct op_conf_table schedule_table =
    OP_CONF_TABLE("schedule", struct schedule_conf, schedule_fields);

static op_err schedule_prepare(struct op_load *ld, struct op_trigger_conf *t)
{
	struct schedule_conf *c = t->cfg;
	struct op_cron cron;
	const struct op_tz *tz = NULL;
	char msg[OP_CRON_MSG_LEN > 256 ? OP_CRON_MSG_LEN : 256];
	op_err rc = OP_OK;

	if (c->cron && op_cron_parse(&cron, c->cron, strlen(c->cron), msg, sizeof(msg)) != OP_OK) {
		op_load_problem(ld, "cron", "%s", msg);
		rc = OP_ECONFIG;
	}
	if (c->timezone) {
		op_err e = op_tz_get(c->timezone, strlen(c->timezone), &tz, msg, sizeof(msg));
		if (e == OP_ENOMEM)
			return e;
		if (e) {
			op_load_problem(ld, "timezone", "%s", msg);
			rc = OP_ECONFIG;
		}
	}
	if (rc != OP_OK || c->cron == NULL || tz == NULL)
		return rc;
	struct op_schedule_trigger *s = op_calloc(1, sizeof(*s));
	if (s == NULL)
		return OP_ENOMEM;
	*s = (struct op_schedule_trigger){
	    .expr = c->cron,
	    .cron = cron,
	    .tz = tz,
	    .overlap = c->overlap,
	    .missed = c->missed == 1 ? OP_MISSED_ONCE : OP_MISSED_SKIP,
	    .input = c->input,
	};
	t->priv = s;
	return OP_OK;
}

/* --- event ----------------------------------------------------------------- */

struct event_conf {
	char *name;
};

static const struct op_conf_field event_fields[] = {
    {.name = "name",
     .type = OP_CONF_STRING,
     .off = offsetof(struct event_conf, name),
     .required = true,
     .help = "event name: 1 to 128 letters, digits, '.', '_' or '-'"},
};
static const struct op_conf_table event_table =
    OP_CONF_TABLE("event", struct event_conf, event_fields);

static op_err event_prepare(struct op_load *ld, struct op_trigger_conf *t)
{
	struct event_conf *c = t->cfg;
	if (c->name == NULL)
		return OP_OK;
	size_t n = strlen(c->name);
	bool ok = n > 0 && n <= 128;
	for (size_t i = 0; ok && i < n; i++) {
		unsigned char ch = (unsigned char)c->name[i];
		ok = isalnum(ch) || ch == '.' || ch == '_' || ch == '-';
	}
	if (!ok) {
		op_load_problem(ld, "name",
		                "expected 1 to 128 letters, digits, '.', '_' or '-', got \"%.64s\"",
		                c->name);
		return OP_ECONFIG;
	}
	struct op_event_trigger *ev = op_calloc(1, sizeof(*ev));
	if (ev == NULL)
		return OP_ENOMEM;
	ev->name = c->name;
	t->priv = ev;
	return OP_OK;
}

/* --- mqtt ------------------------------------------------------------------ */

static const char *const mqtt_payloads[] = {"json", "text", "base64", NULL};

struct mqtt_conf {
	char *broker;
	char *topic;
	long long qos;
	long long consumers;
	int payload;
};

static const struct op_conf_field mqtt_fields[] = {
    {.name = "broker",
     .type = OP_CONF_STRING,
     .off = offsetof(struct mqtt_conf, broker),
     .required = true,
     .help = "name of a broker section of the daemon config"},
    {.name = "topic",
     .type = OP_CONF_STRING,
     .off = offsetof(struct mqtt_conf, topic),
     .required = true,
     .help = "topic filter; '+' matches one level, '#' (last) the rest"},
    {.name = "qos",
     .type = OP_CONF_INT,
     .off = offsetof(struct mqtt_conf, qos),
     .def = "1",
     .min = 0,
     .max = 1,
     .help = "0: at most once; 1: acknowledged after the durable commit"},
    {.name = "consumers",
     .type = OP_CONF_INT,
     .off = offsetof(struct mqtt_conf, consumers),
     .def = "1",
     .min = 1,
     .max = 32,
     .help = "clients in one shared subscription (more batch their commits together)"},
    {.name = "payload",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct mqtt_conf, payload),
     .def = "\"json\"",
     .choices = mqtt_payloads,
     .help = "how the payload becomes the message: parsed JSON, a string, or base64"},
};
static const struct op_conf_table mqtt_table = OP_CONF_TABLE("mqtt", struct mqtt_conf, mqtt_fields);

/* Length of a valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	if (s[0] < 0x80)
		return 1;
	size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
	if (len == 0 || s[0] > 0xf4 || len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	}
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
		return 0;
	return len;
}

bool op_mqtt_filter_valid(const char *s, char *why, size_t whylen)
{
	size_t n = strlen(s);
	if (n == 0 || n > 65535) {
		snprintf(why, whylen, "expected 1 to 65535 bytes");
		return false;
	}
	if (strncmp(s, "$share/", 7) == 0) {
		snprintf(why, whylen,
		         "give the plain topic; the agent adds $share/ itself for consumers > 1");
		return false;
	}
	for (size_t i = 0; i < n;) {
		const unsigned char *c = (const unsigned char *)s + i;
		size_t k = utf8_len(c, n - i);
		if (k == 0) {
			snprintf(why, whylen, "not valid UTF-8 at byte %zu", i + 1);
			return false;
		}
		bool level_start = i == 0 || s[i - 1] == '/';
		bool level_end = i + 1 == n || s[i + 1] == '/';
		if (*c == '+' && !(level_start && level_end)) {
			snprintf(why, whylen, "'+' must be a whole level (column %zu)", i + 1);
			return false;
		}
		if (*c == '#' && !(level_start && i + 1 == n)) {
			snprintf(why, whylen, "'#' must be the whole last level (column %zu)",
			         i + 1);
			return false;
		}
		i += k;
	}
	return true;
}

static op_err mqtt_prepare(struct op_load *ld, struct op_trigger_conf *t)
{
	struct mqtt_conf *c = t->cfg;
	op_err rc = OP_OK;
	char why[128];
	if (c->broker && c->broker[0] == '\0') {
		op_load_problem(ld, "broker", "expected the name of a broker section, got \"\"");
		rc = OP_ECONFIG;
	}
	if (c->topic && !op_mqtt_filter_valid(c->topic, why, sizeof(why))) {
		op_load_problem(ld, "topic", "bad topic filter: %s", why);
		rc = OP_ECONFIG;
	}
	if (rc != OP_OK || c->broker == NULL || c->topic == NULL)
		return rc;
	struct op_mqtt_trigger *m = op_calloc(1, sizeof(*m));
	if (m == NULL)
		return OP_ENOMEM;
	*m = (struct op_mqtt_trigger){
	    .broker = c->broker,
	    .topic = c->topic,
	    .qos = (int)c->qos,
	    .consumers = (int)c->consumers,
	    .payload = (enum op_mqtt_payload)c->payload,
	};
	t->priv = m;
	return OP_OK;
}

/* Frees priv of the types whose priv holds nothing of its own. */
static void plain_release(struct op_trigger_conf *t)
{
	op_free(t->priv);
	t->priv = NULL;
}

/* --- registry -------------------------------------------------------------- */

static const struct op_trigger_type trigger_types[OP_TRIGGER_N] = {
    [OP_TRIGGER_MANUAL] = {.name = "manual",
                           .summary = "started by outpostctl run or a call step; no config"},
    [OP_TRIGGER_HTTP] = {.name = "http",
                         .summary = "an HTTP endpoint on the agent",
                         .conf = &http_table,
                         .prepare = http_prepare,
                         .release = http_release},
    [OP_TRIGGER_SCHEDULE] = {.name = "schedule",
                             .summary = "a cron schedule in a time zone",
                             .conf = &schedule_table,
                             .prepare = schedule_prepare,
                             .release = plain_release},
    [OP_TRIGGER_EVENT] = {.name = "event",
                          .summary = "a named event published by an event-publish step",
                          .conf = &event_table,
                          .prepare = event_prepare,
                          .release = plain_release},
    [OP_TRIGGER_MQTT] = {.name = "mqtt",
                         .summary = "messages on an MQTT topic of a configured broker",
                         .conf = &mqtt_table,
                         .prepare = mqtt_prepare,
                         .release = plain_release},
    [OP_TRIGGER_REMOTE] = {.name = "remote", .summary = "invoked by the control plane; no config"},
};

const struct op_trigger_type *op_trigger_type_at(size_t i)
{
	return i < OP_TRIGGER_N ? &trigger_types[i] : NULL;
}

op_err op_trigger_load(struct op_load *ld, struct op_trigger_conf *t)
{
	const struct op_trigger_type *tt = op_trigger_type_at((size_t)t->type);
	if (tt == NULL)
		return OP_EINTERNAL;
	struct op_diag *d = op_load_diag(ld);
	size_t m = op_diag_push_key(d, "config");
	op_err rc = OP_OK;
	if (tt->conf == NULL) {
		if (t->config && (!cJSON_IsObject(t->config) || t->config->child != NULL)) {
			op_load_problem(ld, NULL, "trigger type %s takes no config", tt->name);
			rc = OP_ECONFIG;
		}
		goto out;
	}
	if ((t->cfg = op_calloc(1, tt->conf->size)) == NULL) {
		rc = OP_ENOMEM;
		goto out;
	}
	size_t before = op_diag_count(d);
	rc = op_conf_bind(ld, tt->conf, t->config, t->cfg);
	if (rc != OP_ENOMEM && tt->prepare) {
		op_err e = tt->prepare(ld, t);
		if (e)
			rc = e;
	}
	if (rc == OP_OK && op_diag_count(d) != before)
		rc = OP_ECONFIG;
out:
	op_diag_pop(d, m);
	return rc;
}

void op_trigger_release(struct op_trigger_conf *t)
{
	const struct op_trigger_type *tt = op_trigger_type_at((size_t)t->type);
	if (tt && tt->release)
		tt->release(t);
	if (tt && tt->conf && t->cfg)
		op_conf_release(tt->conf, t->cfg);
	op_free(t->cfg);
	t->cfg = NULL;
	t->priv = NULL;
}

/* --- accessors ------------------------------------------------------------- */

enum op_trigger_kind op_trigger_kind(const struct op_pipeline *p)
{
	return (enum op_trigger_kind)p->trigger.type;
}

static const void *priv_of(const struct op_pipeline *p, enum op_trigger_kind k)
{
	return p->trigger.type == (int)k ? p->trigger.priv : NULL;
}

const struct op_http_trigger *op_trigger_http(const struct op_pipeline *p)
{
	const struct http_priv *hp = priv_of(p, OP_TRIGGER_HTTP);
	return hp ? &hp->pub : NULL;
}

const struct op_schedule_trigger *op_trigger_schedule(const struct op_pipeline *p)
{
	return priv_of(p, OP_TRIGGER_SCHEDULE);
}

const struct op_event_trigger *op_trigger_event(const struct op_pipeline *p)
{
	return priv_of(p, OP_TRIGGER_EVENT);
}

const struct op_mqtt_trigger *op_trigger_mqtt(const struct op_pipeline *p)
{
	return priv_of(p, OP_TRIGGER_MQTT);
}
