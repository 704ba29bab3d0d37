/*
 * The engine: a set of loaded pipelines (so `call` steps can find each
 * other), the globals they share, and op_engine_run(), which executes one
 * pipeline on one input message. Runs are independent and may happen on many
 * threads at once; the set itself is changed only before runs start.
 */
#ifndef OP_ENGINE_ENGINE_H
#define OP_ENGINE_ENGINE_H

#include <cjson/cJSON.h>
#include <stdatomic.h>

#include "agent/core/diag.h"
#include "agent/core/err.h"
#include "agent/engine/pipeline.h"

struct op_account;
struct op_db_pools;
struct op_engine;

/* What went wrong in a failed execution: the error object users see. */
struct op_fail {
	op_err cls;
	/* A bound of the whole execution was hit (timeout, step or iteration
	 * limit, cancellation): block and call onError handlers do not catch it. */
	bool run_level;
	char code[64];
	char step[256];
	char msg[1024];
};

/* The failure as {code, message, step, class}; NULL on OOM. */
cJSON *op_fail_to_json(const struct op_fail *f);

struct op_engine *op_engine_new(void);
void op_engine_free(struct op_engine *e);

/* Adds p to the set; the engine owns p from then on, also on error.
 * OP_EINVAL when a pipeline of that name is already there. */
op_err op_engine_add(struct op_engine *e, struct op_pipeline *p, char *err, size_t errlen) OP_WUR;
/* The pipeline named name, or NULL; borrowed for the life of e. */
const struct op_pipeline *op_engine_find(const struct op_engine *e, const char *name);
/* Checks that every `call` names a pipeline in the set; problems into d. */
op_err op_engine_link(const struct op_engine *e, struct op_diag *d) OP_WUR;
/* Replaces the globals (taken; may be NULL for {}). */
void op_engine_set_globals(struct op_engine *e, cJSON *globals);

/*
 * Publishes event (a valid event name) with payload to every pipeline that
 * subscribes to it; meta is the publishing execution's metadata. Sets
 * *delivered to the number of subscribers that got a durable copy, also on
 * error (those already enqueued keep theirs). Returns OP_OK, or the class of
 * the first enqueue that failed (OP_EFULL, OP_ENOMEM: retryable). Called on
 * execution threads, so it must be thread-safe.
 */
typedef op_err (*op_engine_publish_fn)(void *ud, const char *event, const cJSON *payload,
                                       const cJSON *meta, size_t *delivered);

/*
 * Sets the publisher `event-publish` steps call (NULL: none, and those steps
 * fail with class unsupported). ud is stored, not owned: it must outlive e.
 * Set before runs start, like the globals.
 */
void op_engine_set_publisher(struct op_engine *e, op_engine_publish_fn fn, void *ud);

/*
 * What the host process lends to connector steps: what it owns and shares
 * between executions. outpostd lends the MQTT clients of the config's
 * [broker NAME] sections and the accounts of its vault; outpostctl run lends
 * the accounts only, and only when told which agent's vault to use. Every
 * function is optional: NULL means the host has none, and steps that need it
 * fail with class unsupported. Functions are called on execution threads,
 * many at once, so they must be thread-safe; they make one attempt and never
 * retry (the engine owns retries).
 */
struct op_host {
	/*
	 * Publishes len bytes at payload (borrowed for the call) to topic, an
	 * MQTT topic name (1 to 65535 bytes of UTF-8, no '+', '#' or NUL), at
	 * the [broker NAME] of the agent's config called broker, with qos 0 or
	 * 1 and the retained flag. Waits at most timeout_ms: with QoS 1 until
	 * the broker acknowledged the message (PUBACK), with QoS 0 until the
	 * client took it. Returns OP_OK, or a class with why (whylen bytes, may
	 * be 0) saying what went wrong for users:
	 *   OP_ENOCONN   not connected to the broker, or the connection was lost
	 *                before the acknowledgement: retry later
	 *   OP_ETIMEOUT  no acknowledgement in time (it may still come, so a
	 *                retry may publish twice)
	 *   OP_EBUSY     too many messages in flight to that broker: retry later
	 *   OP_EAUTH, OP_EREJECTED  the broker refused the client's connection
	 *   OP_ENOTFOUND no broker of that name
	 *   OP_EINVAL    not a valid topic name, or qos not 0 or 1
	 *   OP_ELIMIT    the message is larger than an MQTT packet may be
	 *   OP_ENOMEM
	 */
	op_err (*mqtt_publish)(void *ud, const char *broker, const char *topic, const void *payload,
	                       size_t len, int qos, bool retained, long long timeout_ms, char *why,
	                       size_t whylen);
	/*
	 * Opens the account called name into *out, which the step frees with
	 * op_account_free (agent/account/account.h) as soon as it is done, so
	 * secrets live no longer than the call that needs them. why never holds
	 * a secret. Classes as op_accounts_get (agent/account/lookup.h):
	 * OP_ENOTFOUND, OP_ECONFIG, OP_EAUTH, OP_ECORRUPT, OP_EIO, OP_ENOMEM.
	 */
	op_err (*account_get)(void *ud, const char *name, struct op_account **out, char *why,
	                      size_t whylen);
	/* Database connection pools (connectors/db/pool.h), shared by db steps
	 * of every pipeline set; NULL: none. */
	struct op_db_pools *db_pools;
	/* Folders file steps (and sftp's localDir) may use ([files] dirs): absolute paths without a
	 * trailing slash, borrowed for the host's life; none when n is 0. */
	const char *const *file_dirs;
	size_t n_file_dirs;
	void *ud; /* passed to every function; stored, not owned: must outlive e */
};

/*
 * Sets the host resources steps reach through op_exec_host(); *h is copied
 * (NULL clears: steps that need the host fail with class unsupported). ud is
 * stored, not owned: it must outlive e. Set before runs start, like the
 * globals and the publisher.
 */
void op_engine_set_host(struct op_engine *e, const struct op_host *h);

/* Per-run inputs beyond the message. Everything is borrowed. */
struct op_run_opts {
	const char *execution_id; /* NULL: a new UUID */
	const char *event_id;     /* NULL: same as execution id */
	const cJSON *trigger;     /* trigger data for metadata.trigger, NULL = {};
	                           * referred to, so kept until the run returns */
	long long attempt;        /* 0 means 1 */
	/* Set by another thread to stop the execution at its next step (it then
	 * fails with code CANCELLED, class cancelled); NULL: never. */
	const atomic_bool *stop;
	/* A tighter deadline than the pipeline's settings.timeoutMs (a sync HTTP
	 * trigger's timeoutMs); 0 or more than the pipeline's: the pipeline's. */
	long long timeout_ms;
};

/* Number of pipelines in e, and the i-th in the order they were added. */
size_t op_engine_count(const struct op_engine *e);
const struct op_pipeline *op_engine_at(const struct op_engine *e, size_t i);

/*
 * Runs p on input (taken). On OP_OK *out holds the result (caller deletes):
 * the last step's message, or what onError produced after a failure. On an
 * error *out is NULL and f describes the failure (when onError itself
 * failed, that failure).
 */
op_err op_engine_run(struct op_engine *e, const struct op_pipeline *p, cJSON *input,
                     const struct op_run_opts *opts, cJSON **out, struct op_fail *f) OP_WUR;

#endif
