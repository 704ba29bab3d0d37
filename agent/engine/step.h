/*
 * What a step type is and how it runs. A step type (a logic step in
 * agent/engine/ or a connector in connectors/) is one static const
 * op_step_type listed in connectors/registry.c (in outpostd, some connectors
 * are plugins loaded on first use). The engine binds its config
 * through its table at load, lets it compile what it needs in prepare(), and
 * calls run() once per attempt: retries, timeouts and dead-lettering belong
 * to the engine, never to a step.
 *
 * Message ownership: run() takes ownership of msg whatever it returns; on
 * success it stores the new message (which may be msg itself) in *out. On
 * failure *out is NULL and the step has described the failure with
 * op_exec_fail().
 */
#ifndef OP_ENGINE_STEP_H
#define OP_ENGINE_STEP_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/core/err.h"
#include "agent/engine/conf.h"
#include "agent/expr/expr.h"

struct op_account;
struct op_exec;
struct op_host;
struct op_load;
struct op_step;

struct op_steps {
	struct op_step *v;
	size_t n;
};

struct op_step_type {
	const char *name;
	const char *summary; /* one line, for `outpostctl steps` */
	const struct op_conf_table *conf;
	/* Optional: compile and check what binding cannot (jq, schemas). Report
	 * problems with op_load_problem() and return OP_ECONFIG. */
	op_err (*prepare)(struct op_load *ld, struct op_step *st);
	op_err (*run)(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out);
	/* Optional, for steps whose result is computed from the message without
	 * changing or keeping it (for-each, transform): the same as run() but
	 * msg stays the caller's. A step with an output path then needs no copy
	 * of the message. */
	op_err (*view)(struct op_exec *x, const struct op_step *st, const cJSON *msg, cJSON **out);
	/* Optional: frees st->priv. */
	void (*release)(struct op_step *st);
	/* run() may wait for a peer, a disk or a timer (a connector, a
	 * commit, a backoff). A sync HTTP trigger runs a pipeline with such a
	 * step off the HTTP threads, so that it holds up no other request. */
	bool waits;
};

struct op_step {
	const struct op_step_type *type;
	char *name; /* the user's name, or the path when none was given */
	char *path; /* JSON path in the pipeline document, e.g. "steps[2]" */
	void *cfg;  /* bound config, type->conf->size bytes */
	void *priv; /* built by prepare() */
	/* "output": where the result goes in the message instead of replacing
	 * it; NULL-terminated key path, NULL when the result replaces it. */
	char **output;
};

/* The step type registry (connectors/registry.c). The type called name;
 * in outpostd, a connector's plugin is loaded first if it is not yet. NULL
 * with why filled when the name is unknown or the plugin did not load. */
const struct op_step_type *op_step_type_find(const char *name, char *why, size_t whylen);
/* The i-th registered type, NULL past the end (in outpostd, types whose
 * plugin does not load are left out; asking loads every plugin). */
const struct op_step_type *op_step_type_at(size_t i);

/* --- For prepare(): load context ---------------------------------------- */

/* Records a problem at the step's config path plus suffix ("program"). */
void op_load_problem(struct op_load *ld, const char *suffix, const char *fmt, ...) OP_PRINTF(3, 4);

/* --- For run(): the execution ------------------------------------------- */

/* Describes the failure of the current step. code is a short upper-case
 * identifier ("VALIDATION", "JQ_ERROR"); returns cls for `return op_exec_fail(...)`. */
op_err op_exec_fail(struct op_exec *x, op_err cls, const char *code, const char *fmt, ...)
    OP_PRINTF(4, 5);

/* The expression roots for this execution with msg as `message`. */
void op_exec_env(const struct op_exec *x, const cJSON *msg, struct op_expr_env *env);
/* The execution id (metadata.execution_id), for log lines. */
const char *op_exec_id(const struct op_exec *x);

/*
 * The host's resources (struct op_host in agent/engine/engine.h, set with
 * op_engine_set_host) for connectors, or NULL when the host set none
 * (outpostctl run). Borrowed for the run; its functions may be NULL too.
 */
const struct op_host *op_exec_host(const struct op_exec *x);

/*
 * Borrows the account name from the host, for the config key key, into *out
 * (free with op_account_free as soon as the secret is used). types is a bit
 * set of (1u << OP_ACCOUNT_*) the step takes, and takes says so for the
 * error ("sftp takes basic (password) or key (SSH private key)"). No accounts here, a missing
 * account or one of another type fail the step (code ACCOUNT) with *out NULL.
 */
op_err op_exec_account(struct op_exec *x, const char *key, const char *name, unsigned types,
                       const char *takes, struct op_account **out) OP_WUR;

/*
 * Checks that dir, the absolute local folder in the config key key ("dir",
 * "localDir"), is one of the host's [files] dirs or a folder inside one,
 * and has no ".." component. Otherwise fails the step with code (the
 * step's own, "FILE_DIR"): class unsupported with no host (outpostctl run
 * without --config), config when the host lists no folders or none that
 * holds dir. Only the names are compared: the caller opens dir itself.
 */
op_err op_exec_file_dir(struct op_exec *x, const char *key, const char *dir,
                        const char *code) OP_WUR;

/* Evaluates an expression / renders a template against msg; on error the
 * failure is recorded (code "EXPRESSION", naming the config key). */
op_err op_exec_eval(struct op_exec *x, const struct op_expr *e, const char *key, const cJSON *msg,
                    struct op_val *out) OP_WUR;
op_err op_exec_eval_bool(struct op_exec *x, const struct op_expr *e, const char *key,
                         const cJSON *msg, bool *out) OP_WUR;
op_err op_exec_render(struct op_exec *x, const struct op_tmpl *t, const char *key, const cJSON *msg,
                      cJSON **out) OP_WUR;

/* Runs a step list on msg (taken); see op_step_type.run for ownership. */
op_err op_exec_steps(struct op_exec *x, const struct op_steps *s, cJSON *msg, cJSON **out) OP_WUR;

/* Counts one loop iteration against the execution's limit. */
op_err op_exec_iteration(struct op_exec *x) OP_WUR;

/* True when the execution should stop now (the agent is shutting down, or a
 * parallel branch failed): steps that wait on a peer poll it and give up
 * with op_exec_fail(x, OP_ECANCELED, ...). */
bool op_exec_cancelled(const struct op_exec *x);

/* Milliseconds left before the execution's deadline (LLONG_MAX if none). */
long long op_exec_remaining_ms(const struct op_exec *x);
/* A step's own timeout cut to the time left, at least 1 ms: what a call
 * to a peer may wait, never past the execution's deadline. */
long long op_exec_timeout_ms(const struct op_exec *x, long long timeout_ms);

/* The failure recorded last on x, as {code, message, step, class}; NULL on OOM. */
cJSON *op_exec_error_json(const struct op_exec *x);

#endif
