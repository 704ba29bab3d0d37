/*
 * The executor: runs step lists on a message, one step after another, and
 * enforces what stops a runaway execution (deadline, step count, loop
 * iterations, nesting depth, message size). Invariant: exactly one owner
 * holds the message at any time; a failing step has freed it, and the
 * failure it recorded (class, code, text, step) is what the user sees.
 */
#define OP_LOG_MODULE "engine"
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/log.h"
#include "agent/core/uuid.h"
#include "agent/engine/engine_int.h"

/* xorshift64, seeded per thread from the clock and the thread: jitter only
 * spreads retries apart, it needs no secret. */
static unsigned long long jitter_rand(void)
{
	static _Thread_local unsigned long long s;
	if (s == 0)
		s = ((unsigned long long)op_engine__now_ns() ^ (unsigned long long)(uintptr_t)&s) |
		    1;
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return s;
}

long long op_retry_wait_ms(const struct op_retry_policy *r, long long attempt)
{
	double w = (double)r->backoff_ms;
	for (long long i = 1; i < attempt && w < (double)r->max_backoff_ms; i++)
		w *= r->multiplier;
	if (w > (double)r->max_backoff_ms)
		w = (double)r->max_backoff_ms;
	long long ms = (long long)w;
	if (r->jitter && ms > 1)
		ms = ms / 2 + (long long)(jitter_rand() % (unsigned long long)(ms / 2 + 1));
	return ms;
}

long long op_engine__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

op_err op_exec_fail(struct op_exec *x, op_err cls, const char *code, const char *fmt, ...)
{
	struct op_fail *f = &x->fail;
	f->cls = cls;
	f->run_level = false;
	snprintf(f->code, sizeof(f->code), "%s", code ? code : "ERROR");
	snprintf(f->step, sizeof(f->step), "%s", x->step ? x->step->name : "");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
	va_end(ap);
	return cls;
}

cJSON *op_fail_to_json(const struct op_fail *f)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL || !cJSON_AddStringToObject(o, "code", f->code) ||
	    !cJSON_AddStringToObject(o, "message", f->msg) ||
	    !cJSON_AddStringToObject(o, "step", f->step) ||
	    !cJSON_AddStringToObject(o, "class", op_err_name(f->cls))) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

cJSON *op_exec_error_json(const struct op_exec *x)
{
	return op_fail_to_json(&x->fail);
}

void op_exec_env(const struct op_exec *x, const cJSON *msg, struct op_expr_env *env)
{
	env->message = msg;
	env->globals = x->run->globals;
	env->metadata = x->metadata;
}

op_err op_exec_eval(struct op_exec *x, const struct op_expr *e, const char *key, const cJSON *msg,
                    struct op_val *out)
{
	struct op_expr_env env;
	char err[512];
	err[0] = '\0';
	op_exec_env(x, msg, &env);
	op_err rc = op_expr_eval(e, &env, out, err, sizeof(err));
	if (rc)
		return op_exec_fail(x, rc, "EXPRESSION", "config.%s: %s", key, err);
	return OP_OK;
}

op_err op_exec_eval_bool(struct op_exec *x, const struct op_expr *e, const char *key,
                         const cJSON *msg, bool *out)
{
	struct op_expr_env env;
	char err[512];
	err[0] = '\0';
	op_exec_env(x, msg, &env);
	op_err rc = op_expr_eval_bool(e, &env, out, err, sizeof(err));
	if (rc)
		return op_exec_fail(x, rc, "EXPRESSION", "config.%s: %s", key, err);
	return OP_OK;
}

op_err op_exec_render(struct op_exec *x, const struct op_tmpl *t, const char *key, const cJSON *msg,
                      cJSON **out)
{
	struct op_expr_env env;
	char err[512];
	err[0] = '\0';
	op_exec_env(x, msg, &env);
	op_err rc = op_tmpl_render(t, &env, out, err, sizeof(err));
	if (rc)
		return op_exec_fail(x, rc, "EXPRESSION", "config.%s: %s", key, err);
	return OP_OK;
}

op_err op_exec__fail_run(op_err rc, struct op_exec *x)
{
	x->fail.run_level = true;
	return rc;
}

const char *op_exec_id(const struct op_exec *x)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(x->metadata, "execution_id");
	return cJSON_IsString(id) ? id->valuestring : "-";
}

bool op_exec__run_level(const struct op_exec *x)
{
	return x->fail.run_level;
}

const char *op_exec__cancel_reason(const struct op_exec *x)
{
	if (x->run->stop && atomic_load_explicit(x->run->stop, memory_order_relaxed))
		return "cancelled: the execution was stopped (the agent is shutting down)";
	return "cancelled because a parallel branch failed";
}

bool op_exec_cancelled(const struct op_exec *x)
{
	if (x->run->stop && atomic_load_explicit(x->run->stop, memory_order_relaxed))
		return true;
	for (const struct op_cancel *c = x->cancel; c; c = c->parent) {
		if (atomic_load_explicit(&c->flag, memory_order_relaxed))
			return true;
	}
	return false;
}

long long op_exec_remaining_ms(const struct op_exec *x)
{
	if (x->run->deadline_ns == 0)
		return LLONG_MAX;
	long long left = x->run->deadline_ns - op_engine__now_ns();
	return left > 0 ? left / 1000000 : 0;
}

long long op_exec_timeout_ms(const struct op_exec *x, long long timeout_ms)
{
	long long left = op_exec_remaining_ms(x);
	if (left < timeout_ms)
		timeout_ms = left;
	return timeout_ms > 0 ? timeout_ms : 1;
}

op_err op_exec__wait(struct op_exec *x, long long ms)
{
	/* Wait in short slices so a cancelled or timed-out execution stops soon. */
	while (ms > 0) {
		if (op_exec_cancelled(x))
			return OP_ECANCELED;
		long long left = op_exec_remaining_ms(x);
		if (left <= 0)
			return OP_ETIMEOUT;
		long long slice = ms < 50 ? ms : 50;
		if (slice > left)
			slice = left;
		struct timespec ts = {.tv_sec = slice / 1000, .tv_nsec = (slice % 1000) * 1000000};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		ms -= slice;
	}
	return OP_OK;
}

op_err op_exec_iteration(struct op_exec *x)
{
	long long n = atomic_fetch_add_explicit(&x->run->iterations, 1, memory_order_relaxed) + 1;
	if (n > x->lim->max_iterations)
		return op_exec__fail_run(op_exec_fail(x, OP_ELIMIT, "ITERATION_LIMIT",
		                                      "more than %lld loop iterations in one "
		                                      "execution (settings.limits.maxIterations)",
		                                      x->lim->max_iterations),
		                         x);
	return OP_OK;
}

/* Size of v as compact JSON text, roughly (escapes and number digits are
 * estimated); stops counting once past cap. */
static size_t json_size(const cJSON *v, size_t cap)
{
	size_t n = 0;
	switch (v->type & 0xff) {
	case cJSON_String:
		n = strlen(v->valuestring) + 2;
		break;
	case cJSON_Number:
		n = 8;
		break;
	case cJSON_Array:
	case cJSON_Object:
		n = 2;
		for (const cJSON *c = v->child; c && n <= cap; c = c->next) {
			n += json_size(c, cap) + 1;
			if (c->string)
				n += strlen(c->string) + 3;
		}
		break;
	default:
		n = 5;
		break;
	}
	return n;
}

void op_exec__fork(const struct op_exec *parent, struct op_exec *child)
{
	memset(child, 0, sizeof(*child));
	child->run = parent->run;
	child->p = parent->p;
	child->metadata = parent->metadata;
	child->lim = parent->lim;
	child->depth = parent->depth;
	child->step = parent->step;
	child->cancel = parent->cancel;
}

/* Stores result (taken) at the step's output path in msg. */
static op_err store_output(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON *result)
{
	cJSON *at = msg;
	for (size_t i = 0; st->output[i]; i++) {
		if (!cJSON_IsObject(at)) {
			cJSON_Delete(result);
			return op_exec_fail(x, OP_EINVAL, "OUTPUT_PATH",
			                    "output: cannot store the result under \"%s\": the "
			                    "message there is not an object",
			                    st->output[i]);
		}
		const char *key = st->output[i];
		if (st->output[i + 1] == NULL) {
			cJSON_DeleteItemFromObjectCaseSensitive(at, key);
			if (!cJSON_AddItemToObject(at, key, result)) {
				cJSON_Delete(result);
				return op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
			}
			return OP_OK;
		}
		cJSON *next = cJSON_GetObjectItemCaseSensitive(at, key);
		if (next == NULL && (next = cJSON_AddObjectToObject(at, key)) == NULL) {
			cJSON_Delete(result);
			return op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		}
		at = next;
	}
	cJSON_Delete(result);
	return OP_EINTERNAL;
}

/* Runs one step; with an output path it runs on a copy and stores the
 * result into the message. */
static op_err run_step(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	*out = NULL;
	if (st->output == NULL)
		return st->type->run(x, st, msg, out);
	if (st->type->view) {
		cJSON *res = NULL;
		op_err rc = st->type->view(x, st, msg, &res);
		if (rc == OP_OK)
			rc = store_output(x, st, msg, res);
		if (rc) {
			cJSON_Delete(msg);
			return rc;
		}
		*out = msg;
		return OP_OK;
	}
	cJSON *copy = cJSON_Duplicate(msg, 1);
	if (copy == NULL) {
		cJSON_Delete(msg);
		return op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
	}
	cJSON *res = NULL;
	op_err rc = st->type->run(x, st, copy, &res);
	if (rc == OP_OK)
		rc = store_output(x, st, msg, res);
	if (rc) {
		cJSON_Delete(msg);
		return rc;
	}
	*out = msg;
	return OP_OK;
}

op_err op_exec_steps(struct op_exec *x, const struct op_steps *s, cJSON *msg, cJSON **out)
{
	*out = NULL;
	if (x->depth >= x->lim->max_depth) {
		cJSON_Delete(msg);
		return op_exec_fail(x, OP_ELIMIT, "DEPTH_LIMIT",
		                    "steps nested deeper than %lld at run time "
		                    "(settings.limits.maxDepth)",
		                    x->lim->max_depth);
	}
	const struct op_step *outer = x->step;
	op_err rc = OP_OK;
	x->depth++;
	for (size_t i = 0; i < s->n; i++) {
		const struct op_step *st = &s->v[i];
		x->step = st;
		if (op_exec_cancelled(x)) {
			rc = op_exec__fail_run(op_exec_fail(x, OP_ECANCELED, "CANCELLED", "%s",
			                                    op_exec__cancel_reason(x)),
			                       x);
			break;
		}
		if (x->run->deadline_ns && op_engine__now_ns() > x->run->deadline_ns) {
			rc =
			    op_exec__fail_run(op_exec_fail(x, OP_ETIMEOUT, "EXECUTION_TIMEOUT",
			                                   "execution exceeded its timeout of %lld "
			                                   "ms (settings.timeoutMs)",
			                                   x->run->timeout_ms),
			                      x);
			break;
		}
		long long n = atomic_fetch_add_explicit(&x->run->steps, 1, memory_order_relaxed);
		if (n >= x->lim->max_steps) {
			rc = op_exec__fail_run(op_exec_fail(x, OP_ELIMIT, "STEP_LIMIT",
			                                    "more than %lld steps in one execution "
			                                    "(settings.limits.maxSteps)",
			                                    x->lim->max_steps),
			                       x);
			break;
		}
		cJSON *next = NULL;
		x->fail.code[0] = '\0';
		rc = run_step(x, st, msg, &next);
		msg = NULL;
		if (rc) {
			cJSON_Delete(next);
			if (x->fail.code[0] == '\0')
				op_exec_fail(x, rc, "STEP_FAILED", "%s", op_err_str(rc));
			OP_LOGD("%s exec=%s: step %s failed: %s", x->p->name, op_exec_id(x),
			        st->name, x->fail.msg);
			break;
		}
		if (next == NULL) {
			rc = op_exec_fail(x, OP_EINTERNAL, "NO_OUTPUT", "step produced no message");
			break;
		}
		size_t cap = (size_t)x->lim->max_message_bytes;
		if (json_size(next, cap) > cap) {
			cJSON_Delete(next);
			rc = op_exec_fail(x, OP_ELIMIT, "MESSAGE_TOO_LARGE",
			                  "the step's output is larger than %lld bytes "
			                  "(settings.limits.maxMessageBytes)",
			                  x->lim->max_message_bytes);
			break;
		}
		msg = next;
	}
	x->depth--;
	x->step = outer;
	if (rc) {
		cJSON_Delete(msg);
		return rc;
	}
	*out = msg;
	return OP_OK;
}

/*
 * Lets the top pipeline's onError run after the execution hit a bound of
 * its own: a fresh deadline of up to OP_ONERROR_GRACE_MS and room for
 * OP_ONERROR_GRACE_STEPS more steps and iterations. Once per execution, and
 * never after a cancellation (someone else decided the execution is over).
 */
static bool grant_grace(struct op_exec *x)
{
	struct op_run *r = x->run;
	if (r->grace_used || x->fail.cls == OP_ECANCELED || op_exec_cancelled(x))
		return false;
	r->grace_used = true;
	long long ms = r->timeout_ms < OP_ONERROR_GRACE_MS ? r->timeout_ms : OP_ONERROR_GRACE_MS;
	long long deadline = op_engine__now_ns() + ms * 1000000LL;
	if (r->deadline_ns && r->deadline_ns < deadline)
		r->deadline_ns = deadline;
	long long steps = x->lim->max_steps - OP_ONERROR_GRACE_STEPS;
	long long iters = x->lim->max_iterations - OP_ONERROR_GRACE_STEPS;
	if (atomic_load(&r->steps) > steps)
		atomic_store(&r->steps, steps < 0 ? 0 : steps);
	if (atomic_load(&r->iterations) > iters)
		atomic_store(&r->iterations, iters < 0 ? 0 : iters);
	return true;
}

op_err op_engine__run_pipeline(struct op_exec *x, const struct op_pipeline *p,
                               const cJSON *metadata, cJSON *msg, cJSON **out)
{
	const struct op_pipeline *saved_p = x->p;
	const cJSON *saved_meta = x->metadata;
	x->p = p;
	x->metadata = metadata;
	bool top = x->depth == 0;
	op_err rc = op_exec_steps(x, &p->steps, msg, out);
	/* A bound of the whole run ends it, except that the top pipeline's
	 * onError still gets one small budget to report it. */
	if (rc && p->on_error.n > 0 && (!x->fail.run_level || (top && grant_grace(x)))) {
		OP_LOGI("%s exec=%s: step %s failed (%s: %s); running onError", p->name,
		        op_exec_id(x), x->fail.step, x->fail.code, x->fail.msg);
		cJSON *err = op_exec_error_json(x);
		if (err == NULL) {
			rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		} else {
			memset(&x->fail, 0, sizeof(x->fail));
			rc = op_exec_steps(x, &p->on_error, err, out);
		}
	}
	x->p = saved_p;
	x->metadata = saved_meta;
	return rc;
}

cJSON *op_engine__metadata(const struct op_pipeline *p, const struct op_run_opts *o)
{
	char id[OP_UUID_LEN + 1];
	const char *exec_id = o ? o->execution_id : NULL;
	if (exec_id == NULL) {
		if (op_uuid_v7(id) != OP_OK)
			return NULL;
		exec_id = id;
	}
	const char *event_id = o && o->event_id ? o->event_id : exec_id;
	long long attempt = o && o->attempt > 0 ? o->attempt : 1;
	char started[64];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(started, sizeof(started), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         ts.tv_nsec / 1000000);

	cJSON *m = cJSON_CreateObject();
	cJSON *pl = cJSON_CreateObject();
	/* The caller's trigger data outlives the run and nothing changes
	 * metadata, so it is referred to, not copied (a copy is every node of
	 * it allocated and freed again per execution). */
	cJSON *tr = o == NULL || o->trigger == NULL ? cJSON_CreateObject()
	            : cJSON_IsObject(o->trigger)    ? cJSON_CreateObjectReference(o->trigger->child)
	                                            : cJSON_Duplicate(o->trigger, 1);
	if (m == NULL || pl == NULL || tr == NULL)
		goto fail;
	cJSON *pln = pl;
	if (!cJSON_AddItemToObject(m, "pipeline", pl))
		goto fail;
	pl = NULL;
	if (!cJSON_AddItemToObject(m, "trigger", tr))
		goto fail;
	tr = NULL;
	if (!cJSON_AddStringToObject(m, "execution_id", exec_id) ||
	    !cJSON_AddStringToObject(m, "event_id", event_id) ||
	    !cJSON_AddNumberToObject(m, "attempt", (double)attempt) ||
	    !cJSON_AddStringToObject(m, "started_at", started) ||
	    !cJSON_AddStringToObject(pln, "name", p->name) ||
	    !cJSON_AddStringToObject(pln, "version", p->version))
		goto fail;
	return m;
fail:
	cJSON_Delete(m);
	cJSON_Delete(pl);
	cJSON_Delete(tr);
	return NULL;
}
