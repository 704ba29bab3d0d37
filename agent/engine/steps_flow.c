/*
 * The control-flow steps: choice, for-each, do-while, parallel, retry, block
 * and call. Each holds nested step lists and runs them through
 * op_exec_steps(), so limits, deadlines and failure reporting work the same
 * at every depth. Parallel work (for-each with parallel, parallel) runs on
 * short-lived threads bounded by maxParallel; the calling thread takes part,
 * and the first failure cancels the siblings of its group only.
 */
#define OP_LOG_MODULE "engine"
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/engine/engine_int.h"

/* --- choice ---------------------------------------------------------------- */

struct choice_when {
	struct op_expr *cond;
	struct op_steps steps;
};

struct choice_cfg {
	struct op_conf_list when;
	struct op_steps otherwise;
};

static const struct op_conf_field choice_when_fields[] = {
    {.name = "if",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct choice_when, cond),
     .required = true,
     .help = "condition, e.g. \"{{ message.total > 100 }}\""},
    {.name = "steps",
     .type = OP_CONF_STEPS,
     .off = offsetof(struct choice_when, steps),
     .required = true,
     .help = "steps run when the condition is true"},
};
static const struct op_conf_table choice_when_table =
    OP_CONF_TABLE("when", struct choice_when, choice_when_fields);

static const struct op_conf_field choice_fields[] = {
    {.name = "when",
     .type = OP_CONF_LIST,
     .off = offsetof(struct choice_cfg, when),
     .required = true,
     .sub = &choice_when_table,
     .help = "conditions tried in order; the first true one runs its steps"},
    {.name = "otherwise",
     .type = OP_CONF_STEPS,
     .off = offsetof(struct choice_cfg, otherwise),
     .help = "steps run when no condition is true (default: pass the message on)"},
};
static const struct op_conf_table choice_table =
    OP_CONF_TABLE("choice", struct choice_cfg, choice_fields);

static op_err choice_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	const struct choice_cfg *c = st->cfg;
	for (size_t i = 0; i < c->when.n; i++) {
		const struct choice_when *w = op_conf_list_at(&c->when, &choice_when_table, i);
		bool yes;
		char key[32];
		snprintf(key, sizeof(key), "when[%zu].if", i);
		op_err rc = op_exec_eval_bool(x, w->cond, key, msg, &yes);
		if (rc) {
			cJSON_Delete(msg);
			return rc;
		}
		if (yes)
			return op_exec_steps(x, &w->steps, msg, out);
	}
	return op_exec_steps(x, &c->otherwise, msg, out);
}

const struct op_step_type op_step_choice = {
    .name = "choice",
    .summary = "run the steps of the first condition that holds, or otherwise",
    .conf = &choice_table,
    .run = choice_run,
};

/* --- running step lists in parallel ---------------------------------------- */

struct par_job {
	struct op_exec *parent;
	size_t n;
	const cJSON **inputs;          /* borrowed; each worker copies its own */
	const struct op_steps **steps; /* per task */
	cJSON **results;               /* per task, filled by workers */
	bool collect;                  /* failures become {"error": ...} results */
	_Atomic size_t next;
	struct op_cancel cancel;
	pthread_mutex_t lock;
	op_err rc;
	struct op_fail fail;
};

static void par_record_failure(struct par_job *j, op_err rc, const struct op_fail *f)
{
	pthread_mutex_lock(&j->lock);
	/* The first real failure wins; cancellations of siblings are echoes. */
	if (j->rc == OP_OK || (j->rc == OP_ECANCELED && rc != OP_ECANCELED)) {
		j->rc = rc;
		j->fail = *f;
	}
	pthread_mutex_unlock(&j->lock);
	atomic_store(&j->cancel.flag, true);
}

static void *par_worker(void *arg)
{
	struct par_job *j = arg;
	struct op_exec x;
	op_exec__fork(j->parent, &x);
	x.cancel = &j->cancel;
	/* On a thread of its own, log lines that do not know the execution still
	 * name it (op_log_exec_id); the caller's thread gets its own back. */
	const char *outer = op_log_exec_id();
	op_log_set_exec_id(op_exec_id(&x));
	for (;;) {
		size_t i = atomic_fetch_add(&j->next, 1);
		if (i >= j->n || op_exec_cancelled(&x))
			break;
		op_err rc = op_exec_iteration(&x);
		cJSON *in = NULL;
		if (rc == OP_OK) {
			in = cJSON_Duplicate(j->inputs[i], 1);
			if (in == NULL)
				rc = op_exec_fail(&x, OP_ENOMEM, "NOMEM", "out of memory");
		}
		if (rc == OP_OK)
			rc = op_exec_steps(&x, j->steps[i], in, &j->results[i]);
		if (rc && j->collect && !op_exec__run_level(&x)) {
			cJSON *e = op_exec_error_json(&x);
			cJSON *w = cJSON_CreateObject();
			if (e && w && cJSON_AddItemToObject(w, "error", e)) {
				j->results[i] = w;
				continue;
			}
			cJSON_Delete(e);
			cJSON_Delete(w);
			rc = op_exec_fail(&x, OP_ENOMEM, "NOMEM", "out of memory");
		}
		if (rc) {
			par_record_failure(j, rc, &x.fail);
			break;
		}
	}
	op_log_set_exec_id(outer);
	return NULL;
}

/*
 * Takes up to want (at most n) threads from the run's budget of
 * OP_RUN_MAX_THREADS, so nested parallel groups cannot multiply into
 * thousands of threads; the caller gives them back after joining.
 */
static size_t reserve_threads(struct op_run *r, size_t want, size_t n)
{
	if (want > n)
		want = n;
	int cur = atomic_load(&r->threads);
	for (;;) {
		int room = OP_RUN_MAX_THREADS - cur;
		int take = room <= 0 ? 0 : (want < (size_t)room ? (int)want : room);
		if (take == 0)
			return 0;
		if (atomic_compare_exchange_weak(&r->threads, &cur, cur + take))
			return (size_t)take;
	}
}

/* Runs n tasks with at most bound at once; results into an array in task order. */
static op_err par_run(struct op_exec *x, size_t n, long long bound, const cJSON **inputs,
                      const struct op_steps **steps, bool collect, cJSON **out)
{
	op_err rc = OP_OK;
	pthread_t *tids = NULL;
	size_t started = 0;
	struct par_job j = {
	    .parent = x,
	    .n = n,
	    .inputs = inputs,
	    .steps = steps,
	    .collect = collect,
	    .cancel = {.parent = x->cancel},
	};
	if (pthread_mutex_init(&j.lock, NULL) != 0)
		return op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of resources for a lock");
	j.results = op_calloc(n ? n : 1, sizeof(cJSON *));
	size_t extra = reserve_threads(x->run, (size_t)(bound < 1 ? 1 : bound) - 1, n);
	tids = op_calloc(extra ? extra : 1, sizeof(pthread_t));
	if (j.results == NULL || tids == NULL) {
		rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	for (; started < extra; started++) {
		/* Fewer threads than asked is fine: this thread does the rest. */
		if (pthread_create(&tids[started], NULL, par_worker, &j) != 0)
			break;
	}
	par_worker(&j);
	for (size_t i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	if (j.rc) {
		x->fail = j.fail;
		rc = j.rc;
		goto out;
	}
	/* Workers stop without a failure of their own when an enclosing group
	 * was cancelled; the tasks they skipped have no result. */
	for (size_t i = 0; i < n; i++) {
		if (j.results[i] == NULL) {
			rc = op_exec__fail_run(op_exec_fail(x, OP_ECANCELED, "CANCELLED",
			                                    "cancelled because a parallel branch "
			                                    "failed"),
			                       x);
			goto out;
		}
	}
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; arr && i < n; i++) {
		if (!cJSON_AddItemToArray(arr, j.results[i])) {
			cJSON_Delete(arr);
			arr = NULL;
			break;
		}
		j.results[i] = NULL;
	}
	if (arr == NULL) {
		rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	*out = arr;
out:
	for (size_t i = 0; j.results && i < n; i++)
		cJSON_Delete(j.results[i]);
	op_free(j.results);
	op_free(tids);
	atomic_fetch_sub(&x->run->threads, (int)extra);
	pthread_mutex_destroy(&j.lock);
	return rc;
}

/* --- for-each -------------------------------------------------------------- */

static const char *const item_error_modes[] = {"fail", "collect", NULL};

struct foreach_cfg {
	struct op_expr *items;
	struct op_steps steps;
	bool parallel;
	long long max_parallel;
	int on_item_error;
};

static const struct op_conf_field foreach_fields[] = {
    {.name = "items",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct foreach_cfg, items),
     .def = "\"{{ message }}\"",
     .help = "expression giving the array to walk"},
    {.name = "steps",
     .type = OP_CONF_STEPS,
     .off = offsetof(struct foreach_cfg, steps),
     .required = true,
     .help = "steps run with each item as the message"},
    {.name = "parallel",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct foreach_cfg, parallel),
     .def = "false",
     .help = "run items concurrently, at most maxParallel at once"},
    {.name = "maxParallel",
     .type = OP_CONF_INT,
     .off = offsetof(struct foreach_cfg, max_parallel),
     .def = "4",
     .min = 1,
     .max = 64,
     .help = "items run at once when parallel"},
    {.name = "onItemError",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct foreach_cfg, on_item_error),
     .def = "\"fail\"",
     .choices = item_error_modes,
     .help = "fail: the first failing item fails the step; collect: its result is "
             "{\"error\": {...}} and the loop goes on"},
};
static const struct op_conf_table foreach_table =
    OP_CONF_TABLE("for-each", struct foreach_cfg, foreach_fields);

static op_err foreach_view(struct op_exec *x, const struct op_step *st, const cJSON *msg,
                           cJSON **out)
{
	const struct foreach_cfg *c = st->cfg;
	struct op_val items = {0};
	const cJSON **inputs = NULL;
	const struct op_steps **steps = NULL;
	op_err rc = op_exec_eval(x, c->items, "items", msg, &items);
	if (rc)
		goto out;
	if (!cJSON_IsArray(items.v)) {
		rc = op_exec_fail(x, OP_EINVAL, "ITEMS_NOT_ARRAY",
		                  "config.items: expected an array, got %s", op_json_kind(items.v));
		goto out;
	}
	size_t n = (size_t)cJSON_GetArraySize(items.v);
	inputs = op_calloc(n ? n : 1, sizeof(*inputs));
	steps = op_calloc(n ? n : 1, sizeof(*steps));
	if (inputs == NULL || steps == NULL) {
		rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	size_t i = 0;
	const cJSON *it;
	cJSON_ArrayForEach (it, items.v) {
		inputs[i] = it;
		steps[i++] = &c->steps;
	}
	rc = par_run(x, n, c->parallel ? c->max_parallel : 1, inputs, steps, c->on_item_error == 1,
	             out);
out:
	op_free(inputs);
	op_free(steps);
	op_val_drop(&items);
	return rc;
}

static op_err foreach_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	op_err rc = foreach_view(x, st, msg, out);
	cJSON_Delete(msg);
	return rc;
}

const struct op_step_type op_step_for_each = {
    .name = "for-each",
    .summary = "run steps for each item of an array, in sequence or in parallel; "
               "the results form an array",
    .conf = &foreach_table,
    .run = foreach_run,
    .view = foreach_view,
};

/* --- parallel -------------------------------------------------------------- */

struct branch_cfg {
	char *name;
	struct op_steps steps;
};

struct parallel_cfg {
	struct op_conf_list branches;
	long long max_parallel;
};

static const struct op_conf_field branch_fields[] = {
    {.name = "name",
     .type = OP_CONF_STRING,
     .off = offsetof(struct branch_cfg, name),
     .help = "a name for logs"},
    {.name = "steps",
     .type = OP_CONF_STEPS,
     .off = offsetof(struct branch_cfg, steps),
     .required = true,
     .help = "the branch's steps, run on a copy of the message"},
};
static const struct op_conf_table branch_table =
    OP_CONF_TABLE("branch", struct branch_cfg, branch_fields);

static const struct op_conf_field parallel_fields[] = {
    {.name = "branches",
     .type = OP_CONF_LIST,
     .off = offsetof(struct parallel_cfg, branches),
     .required = true,
     .sub = &branch_table,
     .help = "branches run concurrently; results joined into an array in this order"},
    {.name = "maxParallel",
     .type = OP_CONF_INT,
     .off = offsetof(struct parallel_cfg, max_parallel),
     .def = "8",
     .min = 1,
     .max = 64,
     .help = "branches run at once"},
};
static const struct op_conf_table parallel_table =
    OP_CONF_TABLE("parallel", struct parallel_cfg, parallel_fields);

static op_err parallel_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	const struct parallel_cfg *c = st->cfg;
	size_t n = c->branches.n;
	op_err rc;
	const cJSON **inputs = op_calloc(n ? n : 1, sizeof(*inputs));
	const struct op_steps **steps = op_calloc(n ? n : 1, sizeof(*steps));
	if (inputs == NULL || steps == NULL) {
		rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct branch_cfg *b = op_conf_list_at(&c->branches, &branch_table, i);
		inputs[i] = msg;
		steps[i] = &b->steps;
	}
	rc = par_run(x, n, c->max_parallel, inputs, steps, false, out);
out:
	op_free(inputs);
	op_free(steps);
	cJSON_Delete(msg);
	return rc;
}

const struct op_step_type op_step_parallel = {
    .name = "parallel",
    .summary = "run branches concurrently on copies of the message; results joined "
               "into an array",
    .conf = &parallel_table,
    .run = parallel_run,
};

/* --- do-while -------------------------------------------------------------- */

struct dowhile_cfg {
	struct op_expr *cond;
	struct op_steps steps;
	long long max_iterations;
};

static const struct op_conf_field dowhile_fields[] = {
    {.name = "condition",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct dowhile_cfg, cond),
     .required = true,
     .help = "checked after each pass on its output; true runs another pass"},
    {.name = "steps",
     .type = OP_CONF_STEPS,
     .off = offsetof(struct dowhile_cfg, steps),
     .required = true,
     .help = "the body; each pass gets the previous pass's output"},
    {.name = "maxIterations",
     .type = OP_CONF_INT,
     .off = offsetof(struct dowhile_cfg, max_iterations),
     .def = "1000",
     .min = 1,
     .max = 10000000,
     .help = "passes allowed; a condition still true after them is an error"},
};
static const struct op_conf_table dowhile_table =
    OP_CONF_TABLE("do-while", struct dowhile_cfg, dowhile_fields);

static op_err dowhile_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	const struct dowhile_cfg *c = st->cfg;
	for (long long i = 0;; i++) {
		if (i >= c->max_iterations) {
			cJSON_Delete(msg);
			return op_exec_fail(x, OP_ELIMIT, "MAX_ITERATIONS",
			                    "condition still true after %lld passes "
			                    "(config.maxIterations)",
			                    c->max_iterations);
		}
		op_err rc = op_exec_iteration(x);
		cJSON *next = NULL;
		if (rc == OP_OK)
			rc = op_exec_steps(x, &c->steps, msg, &next);
		else
			cJSON_Delete(msg);
		bool again = false;
		if (rc == OP_OK)
			rc = op_exec_eval_bool(x, c->cond, "condition", next, &again);
		if (rc) {
			cJSON_Delete(next);
			return rc;
		}
		msg = next;
		if (!again)
			break;
	}
	*out = msg;
	return OP_OK;
}

const struct op_step_type op_step_do_while = {
    .name = "do-while",
    .summary = "run steps, then again while a condition holds (bounded)",
    .conf = &dowhile_table,
    .run = dowhile_run,
};

/* --- retry ----------------------------------------------------------------- */

struct retry_cfg {
	struct op_steps steps;
	struct op_retry_policy pol;
};

static const struct op_conf_field retry_fields[] = {
    {.name = "steps",
     .type = OP_CONF_STEPS,
     .off = offsetof(struct retry_cfg, steps),
     .required = true,
     .help = "steps tried again, from the same input, when they fail with a "
             "retryable class"},
    {.name = "attempts",
     .type = OP_CONF_INT,
     .off = offsetof(struct retry_cfg, pol.attempts),
     .def = "3",
     .min = 1,
     .max = 100,
     .help = "attempts, the first included"},
    {.name = "backoffMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct retry_cfg, pol.backoff_ms),
     .def = "200",
     .min = 0,
     .max = 3600000,
     .help = "wait before the second attempt"},
    {.name = "maxBackoffMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct retry_cfg, pol.max_backoff_ms),
     .def = "10000",
     .min = 0,
     .max = 3600000,
     .help = "longest wait between attempts"},
    {.name = "multiplier",
     .type = OP_CONF_NUMBER,
     .off = offsetof(struct retry_cfg, pol.multiplier),
     .def = "2",
     .min = 1,
     .max = 100,
     .help = "each wait is the previous one times this (1 to 100)"},
    {.name = "jitter",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct retry_cfg, pol.jitter),
     .def = "true",
     .help = "wait a random time between half and all of the backoff"},
};
static const struct op_conf_table retry_table =
    OP_CONF_TABLE("retry", struct retry_cfg, retry_fields);

static op_err retry_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	const struct retry_cfg *c = st->cfg;
	op_err rc = OP_OK;
	for (long long attempt = 1;; attempt++) {
		bool last = attempt >= c->pol.attempts;
		cJSON *in = last ? msg : cJSON_Duplicate(msg, 1);
		if (last)
			msg = NULL;
		if (in == NULL) {
			rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
			break;
		}
		rc = op_exec_steps(x, &c->steps, in, out);
		if (rc == OP_OK || last || !op_err_retryable(rc) || x->fail.run_level ||
		    op_exec_cancelled(x))
			break;
		long long wait = op_retry_wait_ms(&c->pol, attempt);
		OP_LOGI(
		    "%s exec=%s: step %s attempt %lld of %lld failed (%s: %s); retrying in %lld "
		    "ms",
		    x->p->name, op_exec_id(x), st->name, attempt, c->pol.attempts, x->fail.code,
		    x->fail.msg, wait);
		op_err w = op_exec__wait(x, wait);
		if (w == OP_ETIMEOUT) {
			char prev[sizeof(x->fail.msg) / 2];
			if (snprintf(prev, sizeof(prev), "%s: %s", x->fail.code, x->fail.msg) < 0)
				prev[0] = 0;
			rc =
			    op_exec__fail_run(op_exec_fail(x, OP_ETIMEOUT, "EXECUTION_TIMEOUT",
			                                   "execution exceeded its timeout of %lld "
			                                   "ms while waiting to retry (last error "
			                                   "%s)",
			                                   x->run->timeout_ms, prev),
			                      x);
			break;
		}
		if (w) {
			rc = op_exec__fail_run(op_exec_fail(x, OP_ECANCELED, "CANCELLED",
			                                    "cancelled while waiting to retry"),
			                       x);
			break;
		}
	}
	cJSON_Delete(msg);
	return rc;
}

const struct op_step_type op_step_retry = {
    .name = "retry",
    .summary = "run steps again with backoff and jitter when they fail with a retryable class",
    .conf = &retry_table,
    .run = retry_run,
    .waits = true, /* the backoff between attempts */
};

/* --- block ----------------------------------------------------------------- */

struct block_cfg {
	struct op_steps steps;
	struct op_steps on_error;
};

static const struct op_conf_field block_fields[] = {
    {.name = "steps",
     .type = OP_CONF_STEPS,
     .off = offsetof(struct block_cfg, steps),
     .required = true,
     .help = "the sub-flow"},
    {.name = "onError",
     .type = OP_CONF_STEPS,
     .off = offsetof(struct block_cfg, on_error),
     .help = "run on the error object {code, message, step, class} when a step of "
             "the sub-flow fails; its output is the block's output"},
};
static const struct op_conf_table block_table =
    OP_CONF_TABLE("block", struct block_cfg, block_fields);

static op_err block_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	const struct block_cfg *c = st->cfg;
	op_err rc = op_exec_steps(x, &c->steps, msg, out);
	if (rc == OP_OK || c->on_error.n == 0 || op_exec__run_level(x))
		return rc;
	OP_LOGD("%s exec=%s: block %s caught %s: %s", x->p->name, op_exec_id(x), st->name,
	        x->fail.code, x->fail.msg);
	cJSON *err = op_exec_error_json(x);
	if (err == NULL)
		return op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
	memset(&x->fail, 0, sizeof(x->fail));
	return op_exec_steps(x, &c->on_error, err, out);
}

const struct op_step_type op_step_block = {
    .name = "block",
    .summary = "a sub-flow with its own onError handler",
    .conf = &block_table,
    .run = block_run,
};

/* --- call ------------------------------------------------------------------ */

struct call_cfg {
	char *pipeline;
	struct op_tmpl *input;
};

static const struct op_conf_field call_fields[] = {
    {.name = "pipeline",
     .type = OP_CONF_STRING,
     .off = offsetof(struct call_cfg, pipeline),
     .required = true,
     .help = "name of the pipeline to run"},
    {.name = "input",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct call_cfg, input),
     .help = "its input message (default: this message)"},
};
static const struct op_conf_table call_table = OP_CONF_TABLE("call", struct call_cfg, call_fields);

const char *op_engine__call_target(const struct op_step *st)
{
	if (st->type != &op_step_call || st->cfg == NULL)
		return NULL;
	return ((const struct call_cfg *)st->cfg)->pipeline;
}

static op_err call_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	const struct call_cfg *c = st->cfg;
	cJSON *meta = NULL;
	op_err rc;
	const struct op_pipeline *target = op_engine_find(x->run->eng, c->pipeline);
	if (target == NULL) {
		rc = op_exec_fail(x, OP_ENOTFOUND, "PIPELINE_NOT_FOUND",
		                  "no pipeline named \"%s\" is loaded", c->pipeline);
		goto out;
	}
	if (c->input) {
		cJSON *in = NULL;
		rc = op_exec_render(x, c->input, "input", msg, &in);
		if (rc)
			goto out;
		cJSON_Delete(msg);
		msg = in;
	}
	meta = cJSON_Duplicate(x->metadata, 1);
	cJSON *pl = cJSON_CreateObject();
	if (meta == NULL || pl == NULL || !cJSON_AddStringToObject(pl, "name", target->name) ||
	    !cJSON_AddStringToObject(pl, "version", target->version) ||
	    !cJSON_ReplaceItemInObjectCaseSensitive(meta, "pipeline", pl)) {
		cJSON_Delete(pl);
		rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	if (!cJSON_AddStringToObject(meta, "caller", x->p->name)) {
		rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	struct op_exec child;
	op_exec__fork(x, &child);
	rc = op_engine__run_pipeline(&child, target, meta, msg, out);
	msg = NULL;
	if (rc) {
		x->fail = child.fail;
		char inner[sizeof(x->fail.step)];
		snprintf(inner, sizeof(inner), "%s", child.fail.step);
		/* A long chain of names is cut; the start says where it began. */
		if (snprintf(x->fail.step, sizeof(x->fail.step), "%s > %s:%s", st->name,
		             target->name, inner) >= (int)sizeof(x->fail.step))
			OP_LOGD("%s: failing step name was shortened", x->p->name);
	}
out:
	cJSON_Delete(meta);
	cJSON_Delete(msg);
	return rc;
}

const struct op_step_type op_step_call = {
    .name = "call",
    .summary = "run another pipeline with this message as its input and take its result",
    .conf = &call_table,
    .run = call_run,
    .waits = true, /* whether the pipeline it calls waits is not known at load */
};
