/*
 * Trigger types: what starts an execution of a pipeline (manual, http,
 * schedule, event, mqtt, remote). Each type is one static const
 * op_trigger_type in the table of trigger.c, with a config table (the
 * "trigger.config" object is bound through it like a step's config) and a
 * prepare() that compiles what binding cannot: the HTTP route and auth
 * verifier, the cron expression and time zone, the MQTT topic filter. The
 * pipeline loader calls op_trigger_load(), so a pipeline with a bad trigger
 * is refused whole with every problem at its JSON path
 * ("trigger.config.auth.keys[0].pem").
 *
 * Key invariant: once the pipeline is loaded, its trigger's compiled data is
 * immutable (the rate limiter is the one exception and is thread-safe) and
 * lives exactly as long as the pipeline; the accessors below borrow it.
 */
#ifndef OP_TRIGGER_TRIGGER_H
#define OP_TRIGGER_TRIGGER_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/core/err.h"
#include "agent/core/tz.h"
#include "agent/engine/conf.h"
#include "agent/engine/pipeline.h"
#include "agent/trigger/cron.h"

struct op_load;
struct op_http_route;
struct op_auth;
struct op_rate;

/* X(NAME, "name"): the order is the index stored in op_trigger_conf.type. */
#define OP_TRIGGER_KINDS(X)     \
	X(MANUAL, "manual")     \
	X(HTTP, "http")         \
	X(SCHEDULE, "schedule") \
	X(EVENT, "event")       \
	X(MQTT, "mqtt")         \
	X(REMOTE, "remote")

enum op_trigger_kind {
#define OP_TRIGGER_ENUM(name, str) OP_TRIGGER_##name,
	OP_TRIGGER_KINDS(OP_TRIGGER_ENUM)
#undef OP_TRIGGER_ENUM
	    OP_TRIGGER_N
};

struct op_trigger_type {
	const char *name;
	const char *summary;              /* one line, for docs */
	const struct op_conf_table *conf; /* NULL: the type takes no config */
	/* Optional: compiles what binding cannot into t->priv. Called even when
	 * binding found problems (fields that failed are zero), so that one load
	 * reports everything. Problems via op_load_problem(), then OP_ECONFIG. */
	op_err (*prepare)(struct op_load *ld, struct op_trigger_conf *t);
	/* Optional: frees t->priv. */
	void (*release)(struct op_trigger_conf *t);
};

/* The i-th trigger type (i is an enum op_trigger_kind), NULL past the end. */
const struct op_trigger_type *op_trigger_type_at(size_t i);

/*
 * For the pipeline loader: binds t->config (the diag path must be at the
 * trigger object) through the table of type t->type into t->cfg, then
 * prepares t->priv. Returns OP_OK, OP_ECONFIG with every problem in the
 * load's diagnostics, or OP_ENOMEM. Whatever the result, t is left in a
 * state op_trigger_release() frees.
 */
op_err op_trigger_load(struct op_load *ld, struct op_trigger_conf *t) OP_WUR;
/* Frees t->cfg and t->priv (not t->config, which the pipeline table owns). */
void op_trigger_release(struct op_trigger_conf *t);

/* --- Accessors for the daemon ------------------------------------------- */

/* Which trigger starts p. */
enum op_trigger_kind op_trigger_kind(const struct op_pipeline *p);

enum op_http_mode {
	OP_HTTP_SYNC,  /* run the pipeline, answer with its result */
	OP_HTTP_ASYNC, /* answer 202 {"eventId"} after the durable commit */
};

/* An http trigger, compiled. Everything is borrowed from the pipeline. */
struct op_http_trigger {
	const char *method;                /* "GET", "POST", "PUT", "PATCH" or "DELETE" */
	const struct op_http_route *route; /* compiled from config.path */
	enum op_http_mode mode;
	const struct op_auth *auth; /* never NULL; type "none" when not configured */
	/* NULL without config.rateLimit. Not const: op_rate_take() updates it
	 * (thread-safe). */
	struct op_rate *rate;
	long long timeout_ms; /* sync: answer 504 past it */
	int status;           /* config.response.status: default status of sync answers */
	const cJSON *headers; /* config.response.headers: object name -> string */
	/* Lower-case name of a header that carries a secret besides the usual
	 * authorization, proxy-authorization, cookie and x-api-key (an apikey
	 * auth's "header"), kept out of messages; NULL for none. */
	const char *secret_header;
};

enum op_missed_policy {
	OP_MISSED_SKIP, /* after downtime, wait for the next fire time */
	OP_MISSED_ONCE, /* after downtime, run once for all missed fire times */
};

/* A schedule trigger, compiled. Borrowed from the pipeline. */
struct op_schedule_trigger {
	const char *expr;       /* the cron text as configured */
	struct op_cron cron;    /* parsed */
	const struct op_tz *tz; /* lives until the process ends */
	bool overlap;           /* runs may overlap */
	enum op_missed_policy missed;
	const cJSON *input; /* the message each run starts with */
};

/* An event trigger. Borrowed from the pipeline. */
struct op_event_trigger {
	const char *name; /* [A-Za-z0-9._-]{1,128} */
};

enum op_mqtt_payload {
	OP_MQTT_PAYLOAD_JSON,   /* parsed JSON; a bad payload fails the event */
	OP_MQTT_PAYLOAD_TEXT,   /* a string (UTF-8) */
	OP_MQTT_PAYLOAD_BASE64, /* a string of the payload's bytes in base64 */
};

/* An mqtt trigger. Borrowed from the pipeline. */
struct op_mqtt_trigger {
	const char *broker; /* name of a broker section of the daemon config */
	const char *topic;  /* a valid topic filter, without "$share/" */
	int qos;            /* 0 or 1 */
	int consumers;      /* 1..32 clients in one shared subscription */
	enum op_mqtt_payload payload;
};

/* Each returns p's compiled trigger, or NULL when p's trigger is of another
 * type. Valid as long as p. */
const struct op_http_trigger *op_trigger_http(const struct op_pipeline *p);
const struct op_schedule_trigger *op_trigger_schedule(const struct op_pipeline *p);
const struct op_event_trigger *op_trigger_event(const struct op_pipeline *p);
const struct op_mqtt_trigger *op_trigger_mqtt(const struct op_pipeline *p);

/* Checks an MQTT topic filter (levels split on '/', '+' a whole level, '#'
 * a whole last level, 1 to 65535 bytes of UTF-8 without NUL). On false,
 * why (whylen bytes) says what is wrong. */
bool op_mqtt_filter_valid(const char *s, char *why, size_t whylen);

#endif
