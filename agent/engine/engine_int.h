/*
 * Private to agent/engine/: the load context shared by the loader and the
 * config binder, and the execution context shared by the executor and the
 * logic steps.
 */
#ifndef OP_ENGINE_ENGINE_INT_H
#define OP_ENGINE_ENGINE_INT_H

#include <stdatomic.h>

#include "agent/core/diag.h"
#include "agent/engine/engine.h"
#include "agent/engine/pipeline.h"
#include "agent/engine/step.h"

/* Deepest nesting of step lists a document may have. */
#define OP_LOAD_MAX_NESTING 32

struct op_load {
	struct op_diag *d;
	int nesting;         /* step lists entered */
	struct op_step *cur; /* step being prepared, for op_load_problem() */
	size_t cur_mark;     /* diag path length of cur's config */
	bool waits;          /* a step of a type that waits was loaded */
};

/* The keys of a step object (type, name, description, output, config). */
extern const struct op_conf_table op_engine__step_table;

/* Loads a JSON array of steps into out (zeroed). Problems into ld. */
op_err op_engine__load_steps(struct op_load *ld, const cJSON *arr, struct op_steps *out) OP_WUR;
void op_engine__free_steps(struct op_steps *s);

/* What the top pipeline's onError may still use after the run hit a bound. */
#define OP_ONERROR_GRACE_MS    5000
#define OP_ONERROR_GRACE_STEPS 1000

/* Most threads one execution may start for parallel work, all groups together. */
#define OP_RUN_MAX_THREADS 64

/* State of one execution shared by every thread working on it. */
struct op_run {
	struct op_engine *eng;
	const cJSON *globals;
	atomic_llong steps;
	atomic_llong iterations;
	atomic_int threads;      /* threads started for parallel work, now running */
	long long deadline_ns;   /* CLOCK_MONOTONIC; 0 = none; moved only by grant_grace */
	long long timeout_ms;    /* the top pipeline's settings.timeoutMs */
	bool grace_used;         /* onError's grace was granted (top thread only) */
	const atomic_bool *stop; /* op_run_opts.stop: the owner wants it to end */
};

/* Set when a sibling in a parallel group failed; groups nest. */
struct op_cancel {
	atomic_bool flag;
	const struct op_cancel *parent;
};

/* One thread of control in an execution (forked for parallel branches). */
struct op_exec {
	struct op_run *run;
	const struct op_pipeline *p; /* the pipeline being run (changes in call) */
	const cJSON *metadata;
	const struct op_limits *lim;
	long long depth;
	const struct op_step *step; /* step running now, for failures */
	const struct op_cancel *cancel;
	struct op_fail fail;
};

/* A child context for a parallel branch or nested run: same run, same
 * pipeline, empty failure. */
void op_exec__fork(const struct op_exec *parent, struct op_exec *child);

/* Runs pipeline p (steps then onError) inside an existing run. */
op_err op_engine__run_pipeline(struct op_exec *x, const struct op_pipeline *p,
                               const cJSON *metadata, cJSON *msg, cJSON **out) OP_WUR;
/* Builds metadata for a run of p. */
cJSON *op_engine__metadata(const struct op_pipeline *p, const struct op_run_opts *o);

long long op_engine__now_ns(void);
/* Marks x's failure as a bound of the whole run (see op_fail.run_level); returns rc. */
op_err op_exec__fail_run(op_err rc, struct op_exec *x);
/* True when x's failure is a bound of the whole run. */
bool op_exec__run_level(const struct op_exec *x);
/* Why op_exec_cancelled() is true, for the error text. */
const char *op_exec__cancel_reason(const struct op_exec *x);
/* Waits ms milliseconds or until the deadline or a cancellation; returns
 * OP_ETIMEOUT past the deadline, OP_ECANCELED when cancelled. */
op_err op_exec__wait(struct op_exec *x, long long ms);
/* Publishes through e's publisher (op_engine_set_publisher); OP_EUNSUPPORTED
 * with *delivered = 0 when e has none. */
op_err op_engine__publish(struct op_engine *e, const char *event, const cJSON *payload,
                          const cJSON *meta, size_t *delivered) OP_WUR;
/* The target of a call step (for linking). */
const char *op_engine__call_target(const struct op_step *st);

/* The engine's step types (registered in connectors/registry.c). */
extern const struct op_step_type op_step_choice, op_step_for_each, op_step_do_while,
    op_step_parallel, op_step_retry, op_step_block, op_step_throw_error, op_step_log, op_step_set,
    op_step_call, op_step_event_publish;

#endif
