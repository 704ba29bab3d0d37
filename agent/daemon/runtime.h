/*
 * The daemon's runtime: the deployed pipeline set, the durable store and the
 * worker pool that drains the store's queues through the engine.
 *
 * An accepted event is in the store before op_runtime_submit() returns; it
 * leaves its queue only when its execution ended (acknowledged with an
 * execution record, put back for a retry, or dead-lettered), so a crash
 * means redelivery, never loss. The pipeline set is replaced whole by
 * op_runtime_reload(); executions that started on the old set finish on it.
 */
#ifndef OP_DAEMON_RUNTIME_H
#define OP_DAEMON_RUNTIME_H

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdint.h>

#include "agent/core/diag.h"
#include "agent/core/uuid.h"
#include "agent/daemon/config.h"
#include "agent/engine/engine.h"
#include "agent/store/store.h"

struct op_runtime;

/* Observers of the runtime (metrics); any may be NULL. Called on worker and
 * trigger threads: must be quick and thread-safe. */
struct op_runtime_hooks {
	/* An execution ended with status "success", "error", "retry",
	 * "interrupted"; duration in milliseconds. */
	void (*ended)(void *ud, const char *pipeline, const char *status, int64_t duration_ms);
	/* A pipeline set was built (at open and at each reload) and is not yet
	 * in use: the place to set what the engine needs from its host (the
	 * event publisher). Called on the thread that opens or reloads. */
	void (*engine_new)(void *ud, struct op_runtime *rt, struct op_engine *e);
	/* A pipeline no longer in the set ran the last of its queued events
	 * (op_runtime_draining no longer lists it). Called on a worker. */
	void (*drained)(void *ud, const char *pipeline);
	void *ud;
};

/*
 * Opens the store under cfg->agent.data_dir, loads every pipeline of
 * cfg->agent.pipelines_dir and starts cfg->agent.workers workers. Problems
 * (a bad pipeline, a store that cannot open) go to d, one entry per problem
 * with the file as its path. cfg must outlive the runtime.
 */
op_err op_runtime_open(const struct op_config *cfg, const struct op_runtime_hooks *hooks,
                       struct op_runtime **out, struct op_diag *d) OP_WUR;

/*
 * Stops taking events, asks running executions to stop once
 * cfg->agent.shutdown_timeout_ms has passed (they are then put back in
 * their queues), waits for the workers and closes the store. NULL is a no-op.
 */
void op_runtime_close(struct op_runtime *rt);

/*
 * Checks a new pipeline set before it is swapped in (routes that clash, ...):
 * problems into d and a non-OK result refuse it. May keep what it built
 * in ud for the caller.
 */
typedef op_err (*op_runtime_check_fn)(void *ud, const struct op_engine *e, struct op_diag *d);

/*
 * Loads the pipelines folder again (and the deployed document's pipelines)
 * into a new set, lets check (may be NULL)
 * approve it, and swaps it in; or refuses it whole (problems in d) and keeps
 * the running set.
 */
op_err op_runtime_reload(struct op_runtime *rt, op_runtime_check_fn check, void *ud,
                         struct op_diag *d) OP_WUR;

/* The agent state key of the applied control-plane document. */
#define OP_RUNTIME_APPLIED_KEY "control.applied"

/*
 * Deploys a control-plane document: doc (borrowed; its text, len bytes, is
 * what the store keeps) whose "pipelines" array replaces the deployed
 * pipelines, beside the folder's. Loads the new set whole, lets check (may
 * be NULL) approve it, stores the text (OP_STORE_STATE,
 * OP_RUNTIME_APPLIED_KEY; committed before the swap), then swaps the set in.
 * On any failure the running set and document stay, with problems in d
 * (pipelines as "desired seq N: pipelines[i]"): OP_ECONFIG, a store class
 * (OP_EFULL, OP_EIO), OP_ENOMEM. Not concurrently with op_runtime_reload.
 */
op_err op_runtime_deploy(struct op_runtime *rt, const char *text, size_t len, const cJSON *doc,
                         op_runtime_check_fn check, void *ud, struct op_diag *d) OP_WUR;

/* Applied documents kept for rollbacks. */
#define OP_RUNTIME_HISTORY 10

/* The highest seq ever applied (from the history, which outlives a stored
 * document that no longer loads): the anti-replay floor. 0 when none. */
uint64_t op_runtime_seq_floor(struct op_runtime *rt);

/* Takes doc (a document just deployed whose triggers did not start, so it
 * never ran) out of the history again: it is no rollback target and does
 * not raise the floor, so after a restart the control plane's retained
 * copy of it is tried (and reported) again. */
void op_runtime_unapplied(struct op_runtime *rt, const cJSON *doc);

/* The last OP_RUNTIME_HISTORY documents applied (the running one first) as
 * a new array (NULL when the store cannot be read or out of memory). */
cJSON *op_runtime_history(struct op_runtime *rt);

/*
 * A copy of the deployed document (caller deletes), or NULL when none; err
 * (errlen bytes) gets why the stored document was dropped at open, or "".
 * The store holds it across restarts: op_runtime_open loads it with the
 * folder, and when it no longer loads runs the folder alone.
 */
cJSON *op_runtime_deployed(struct op_runtime *rt, char *err, size_t errlen);

/* True when p came from the control plane's document, not the folder. */
bool op_runtime_is_deployed(const struct op_pipeline *p);

/*
 * The pipelines that left the set (a deploy or reload dropped them) and
 * still run their queued events on their old definition, as a new array of
 * {"name", "version", "origin": "deployed" or "local"} (NULL when out of
 * memory). A dropped pipeline's
 * triggers stop at once; its queue drains first, then it goes.
 */
cJSON *op_runtime_draining(struct op_runtime *rt);

/*
 * Durably enqueues message for pipeline (returns after the commit) with
 * trigger (may be NULL) as its metadata.trigger; the event id goes to id.
 * OP_ENOTFOUND: no such pipeline. OP_EFULL: queue or store full (answer
 * with backpressure). OP_ECANCELED: the runtime is closing.
 */
op_err op_runtime_submit(struct op_runtime *rt, const char *pipeline, const cJSON *message,
                         const cJSON *trigger, char id[OP_UUID_LEN + 1]) OP_WUR;

/*
 * op_runtime_submit without waiting for the commit: done(ud, result, id) is
 * called once, on the store's completion thread, when the event is committed
 * (OP_OK) or refused. A non-OK return means done will not be called.
 */
op_err op_runtime_submit_cb(struct op_runtime *rt, const char *pipeline, const cJSON *message,
                            const cJSON *trigger, void (*done)(void *ud, op_err rc, const char *id),
                            void *ud) OP_WUR;

/*
 * Runs pipeline on message (taken) on the calling thread and records the
 * execution, within timeout_ms when that is tighter than the pipeline's
 * timeout (0: the pipeline's). On OP_OK *out is the result (caller deletes); otherwise f says
 * why (OP_ENOTFOUND: no such pipeline, f->code "PIPELINE_NOT_FOUND").
 */
op_err op_runtime_run(struct op_runtime *rt, const char *pipeline, cJSON *message,
                      const cJSON *trigger, long long timeout_ms, cJSON **out,
                      struct op_fail *f) OP_WUR;

/* op_runtime_run, stopped at its next step once stop turns true (NULL:
 * when the runtime closes, as op_runtime_run). */
op_err op_runtime_run_stoppable(struct op_runtime *rt, const char *pipeline, cJSON *message,
                                const cJSON *trigger, long long timeout_ms, const atomic_bool *stop,
                                cJSON **out, struct op_fail *f) OP_WUR;

/* op_runtime_run_stoppable on set, a reference the caller holds (NULL: the
 * current set): a request routed by a set's trigger runs that set's
 * pipeline, also when a reload came in between. */
struct op_runtime_set;
op_err op_runtime_run_on(struct op_runtime *rt, struct op_runtime_set *set, const char *pipeline,
                         cJSON *message, const cJSON *trigger, long long timeout_ms,
                         const atomic_bool *stop, cJSON **out, struct op_fail *f) OP_WUR;

/* A reference to the current pipeline set; give it back with op_runtime_put(). */
struct op_runtime_set *op_runtime_get(struct op_runtime *rt);
void op_runtime_put(struct op_runtime *rt, struct op_runtime_set *set);
const struct op_engine *op_runtime_engine(const struct op_runtime_set *set);

struct op_store *op_runtime_store(struct op_runtime *rt);

/*
 * Puts dead letter event_id back into its queue (op_store_replay: due now,
 * attempt 1) and wakes a worker for it. OP_ENOTFOUND: no such dead letter;
 * OP_EINVAL: not an event id; OP_EFULL: the store is full.
 */
op_err op_runtime_replay(struct op_runtime *rt, const char *event_id) OP_WUR;

/*
 * True when pipeline has an event queued (due or waiting for a retry) or an
 * execution running: what a schedule without overlap checks before a run.
 * A snapshot: it may change as soon as it returns.
 */
bool op_runtime_busy(struct op_runtime *rt, const char *pipeline);

/* Events of pipeline taken from its queue and not ended: running on a worker
 * or about to. A snapshot. */
uint64_t op_runtime_running(struct op_runtime *rt, const char *pipeline);

/* Executions ended since open, by outcome, and the pool now; for tests and
 * metrics. */
struct op_runtime_counts {
	uint64_t succeeded;   /* queued or synchronous */
	uint64_t failed;      /* synchronous runs that failed */
	uint64_t retried;     /* queued events put back for another attempt */
	uint64_t dead;        /* queued events dead-lettered */
	uint64_t interrupted; /* stopped by shutdown, put back in their queue */
	/* Gauges at the time of the call. */
	uint64_t running; /* executions running on workers */
	uint64_t workers; /* worker threads started (the pool grows on demand) */
};
void op_runtime_counts(struct op_runtime *rt, struct op_runtime_counts *c);

/*
 * Waits until no event is queued or running and every execution record is
 * committed, or timeout_ms passes; returns OP_OK or OP_ETIMEOUT. For tests
 * and draining.
 */
op_err op_runtime_wait_idle(struct op_runtime *rt, int64_t timeout_ms) OP_WUR;

#endif
