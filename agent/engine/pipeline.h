/*
 * A pipeline: one JSON document (name, version, description, trigger,
 * steps, onError, settings) compiled whole at load. Loading binds every
 * step's config through its table, parses every expression, compiles every
 * jq program and schema; a document with any problem is refused whole, with
 * every problem listed by JSON path. A loaded pipeline is immutable and may
 * be run by many threads at once.
 */
#ifndef OP_ENGINE_PIPELINE_H
#define OP_ENGINE_PIPELINE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/core/diag.h"
#include "agent/core/err.h"
#include "agent/engine/conf.h"
#include "agent/engine/step.h"

/* Bounds that stop a runaway execution; each breach is an OP_ELIMIT error. */
struct op_limits {
	long long max_steps;         /* steps run in one execution, all loops included */
	long long max_iterations;    /* loop iterations in one execution */
	long long max_depth;         /* nesting of logic steps and calls */
	long long max_message_bytes; /* size of a message as JSON text, estimated */
};

struct op_retry_policy {
	long long attempts; /* 1 = no retry */
	long long backoff_ms;
	long long max_backoff_ms;
	double multiplier;
	bool jitter;
};

/*
 * The wait after attempt (1 = the first) failed: backoff_ms x
 * multiplier^(attempt - 1), at most max_backoff_ms; with jitter, uniformly
 * random between half of that and all of it. For the pipeline's retry policy
 * and the retry step alike.
 */
long long op_retry_wait_ms(const struct op_retry_policy *r, long long attempt);

struct op_settings {
	long long timeout_ms;  /* whole execution */
	long long concurrency; /* executions of this pipeline at once (runtime) */
	struct op_retry_policy retry;
	struct op_limits limits;
	struct op_conf_strings sensitive; /* message fields masked as *** in logs */
};

/* The trigger; agent/trigger/trigger.h binds config and reads cfg and priv. */
struct op_trigger_conf {
	int type;      /* index into op_trigger_types (enum op_trigger_kind) */
	cJSON *config; /* as given */
	void *cfg;     /* config bound through the trigger type's table */
	void *priv;    /* compiled by the trigger type's prepare() */
};

struct op_pipeline {
	char *name;
	char *version;
	char *description;
	struct op_trigger_conf trigger;
	struct op_steps steps;
	struct op_steps on_error;
	struct op_settings settings;
	char *origin; /* file name or "<input>", for messages */
	bool waits;   /* a step (onError's included) may wait: op_step_type.waits */
};

/* Trigger type names, NULL-terminated (agent/trigger/trigger.c). */
extern const char *const op_trigger_types[];
extern const struct op_conf_table op_pipeline_table;

/*
 * Loads a pipeline from JSON text (len bytes; need not be NUL-terminated).
 * origin names the source in messages. On OP_ECONFIG/OP_EPARSE the problems
 * are in d and *out is NULL; OP_ENOMEM likewise.
 */
op_err op_pipeline_load(const char *text, size_t len, const char *origin, struct op_diag *d,
                        struct op_pipeline **out) OP_WUR;
/* Loads from a parsed document (borrowed). */
op_err op_pipeline_load_json(const cJSON *doc, const char *origin, struct op_diag *d,
                             struct op_pipeline **out) OP_WUR;
void op_pipeline_free(struct op_pipeline *p);

/* The diagnostics of a load in progress, for prepare() functions that hand
 * them to another compiler (op_auth_compile). Borrowed for the load. */
struct op_diag *op_load_diag(struct op_load *ld);

/* Calls fn on every step of p, nested ones included, in document order. */
typedef void (*op_step_visit_fn)(const struct op_step *st, void *ud);
void op_pipeline_walk(const struct op_pipeline *p, op_step_visit_fn fn, void *ud);

/* The JSON Schema of the pipeline format, generated from the config tables
 * (docs/pipeline.schema.json); NULL on OOM. Caller deletes. */
cJSON *op_pipeline_json_schema(void);

/* Most bytes of pipeline JSON text accepted. */
#define OP_PIPELINE_MAX_BYTES (4u << 20)

#endif
