/*
 * The runtime: pipeline sets, the store and the workers.
 *
 * Invariants. A pipeline set (an engine) is reference-counted: the current
 * one is held by the runtime, and every worker or caller that uses one holds
 * a reference for as long as it runs on it, so a reload never frees a set
 * under an execution. A worker takes an event out of its queue only into a
 * lease (op_store_take), and every lease ends in exactly one of ack, retry
 * or dead; a lease left by a crash is redelivered by the store at the next
 * open. Workers sleep on a condition variable when nothing is due: they are
 * woken by a submit or a retry, or by the earliest known due time.
 */
#define OP_LOG_MODULE "runtime"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/clock.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/daemon/jq_cache.h"
#include "agent/daemon/runtime.h"
#include "agent/engine/loader.h"
#include "connectors/transform/jq.h"

/* Longest a worker sleeps while events are queued but none is due. */
#define IDLE_RECHECK_MS 1000

struct op_runtime_set {
	struct op_engine *e;
	int refs;                         /* under rt->mu */
	struct op_runtime_set *next_free; /* on a list of sets to free, once refs is 0 */
};

/* Executions running per pipeline, for settings.concurrency. */
struct running {
	char *name;
	long long n;    /* executions running */
	long long held; /* taken into rt->ready, not started yet */
};

struct op_runtime {
	const struct op_config *cfg;
	struct op_runtime_hooks hooks;
	struct op_store *store;
	uint64_t jq_saved; /* generation of the known jq programs in the store */

	pthread_mutex_t mu;
	pthread_cond_t cv;      /* work may be available, or stopping */
	pthread_cond_t idle_cv; /* an execution ended */
	struct op_runtime_set *set;
	/* The applied control-plane document (its "pipelines" run beside the
	 * folder's), as stored; NULL: none. Changed under mu, by deploys. */
	cJSON *deployed;
	char deploy_error[512]; /* why the stored document did not load at open */
	/* Pipelines a new set dropped while they had events queued or running:
	 * they run on their old set (a reference each) until their queue is
	 * empty, then go. Under mu. */
	struct drain {
		char *name;
		struct op_runtime_set *set;
	} * drain;
	size_t ndrain;
	struct op_store_event *ready, *ready_tail; /* taken, slot held, not yet run */
	struct running *run;
	size_t nrun, caprun;
	uint64_t wake;       /* bumped by submits and retries */
	int64_t next_due_ms; /* earliest known not-before of a delayed event */
	bool stopping;
	long long active; /* executions running */
	struct op_runtime_counts counts;

	atomic_bool stop_runs; /* tells running executions to stop */
	pthread_t *workers;    /* maxworkers slots, nworkers started (under mu) */
	size_t nworkers, maxworkers;
	size_t idle; /* workers waiting for work, under mu */
	unsigned rr; /* round-robin start, under mu */
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- pipeline sets ---- */

struct op_runtime_set *op_runtime_get(struct op_runtime *rt)
{
	pthread_mutex_lock(&rt->mu);
	struct op_runtime_set *s = rt->set;
	s->refs++;
	pthread_mutex_unlock(&rt->mu);
	return s;
}

static void set_free(struct op_runtime_set *s)
{
	if (s == NULL)
		return;
	op_engine_free(s->e);
	op_free(s);
}

void op_runtime_put(struct op_runtime *rt, struct op_runtime_set *s)
{
	pthread_mutex_lock(&rt->mu);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&rt->mu);
	if (last)
		set_free(s);
}

const struct op_engine *op_runtime_engine(const struct op_runtime_set *s)
{
	return s->e;
}

struct op_store *op_runtime_store(struct op_runtime *rt)
{
	return rt->store;
}

struct load_report {
	struct op_diag *d;
};

/* Copies a file's problems into the caller's diagnostics, the file as path. */
static void report(void *ud, const char *file, const struct op_diag *fd)
{
	struct load_report *r = ud;
	for (size_t i = 0; i < fd->n; i++) {
		if (fd->v[i].path[0])
			op_diag_add_at(r->d, file, "%s: %s", fd->v[i].path, fd->v[i].msg);
		else
			op_diag_add_at(r->d, file, "%s", fd->v[i].msg);
	}
	if (fd->lost)
		op_diag_add_at(r->d, file, "... and %zu more problems", fd->lost);
}

/* Adds the pipelines of a control-plane document to e; problems in d. */
static op_err load_deployed(struct op_engine *e, const cJSON *doc, struct op_diag *d)
{
	const cJSON *seq = cJSON_GetObjectItemCaseSensitive(doc, "seq");
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "pipelines");
	char origin[64];
	snprintf(origin, sizeof(origin), "desired seq %.0f",
	         cJSON_IsNumber(seq) ? seq->valuedouble : 0);
	if (!cJSON_IsArray(list)) {
		op_diag_add_at(d, origin, "pipelines: expected an array of pipelines");
		return OP_ECONFIG;
	}
	op_err rc = OP_OK;
	int i = 0;
	const cJSON *pj;
	cJSON_ArrayForEach (pj, list) {
		char where[96];
		snprintf(where, sizeof(where), "%s: pipelines[%d]", origin, i++);
		struct op_diag pd;
		op_diag_init(&pd);
		struct op_pipeline *p = NULL;
		op_err r = op_pipeline_load_json(pj, where, &pd, &p);
		for (size_t k = 0; k < pd.n; k++)
			op_diag_add_at(d, where, "%s%s%s", pd.v[k].path,
			               pd.v[k].path[0] ? ": " : "", pd.v[k].msg);
		if (r == OP_ENOMEM && pd.n == 0)
			op_diag_add_at(d, where, "out of memory");
		op_diag_fini(&pd);
		if (r == OP_OK) {
			char err[512] = "";
			r = op_engine_add(e, p, err, sizeof(err));
			if (r) /* err names the pipeline's origin, where */
				op_diag_add_at(d, "", "%s", err);
		}
		if (r && rc == OP_OK)
			rc = r == OP_ENOMEM ? r : OP_ECONFIG;
	}
	return rc;
}

/* Builds a pipeline set from the folder and the document deployed (NULL:
 * none); NULL with problems in d. */
static struct op_runtime_set *set_load(struct op_runtime *rt, const cJSON *deployed,
                                       struct op_diag *d)
{
	const struct op_config *cfg = rt->cfg;
	struct op_runtime_set *s = op_calloc(1, sizeof(*s));
	if (s == NULL || (s->e = op_engine_new()) == NULL) {
		op_free(s);
		op_diag_add_at(d, cfg->agent.pipelines_dir, "out of memory");
		return NULL;
	}
	size_t before = op_diag_count(d);
	struct load_report r = {d};
	op_err rc = op_engine_load_dir(s->e, cfg->agent.pipelines_dir, NULL, 0, report, &r, NULL);
	if (rc == OP_OK && deployed)
		rc = load_deployed(s->e, deployed, d);
	if (rc == OP_OK)
		rc = op_engine_link(s->e, d);
	cJSON *g = cJSON_Duplicate(cfg->globals, 1);
	if (rc == OP_OK && g == NULL) {
		op_diag_add_at(d, "globals", "out of memory");
		rc = OP_ENOMEM;
	}
	if (rc != OP_OK || op_diag_count(d) != before) {
		cJSON_Delete(g);
		set_free(s);
		return NULL;
	}
	op_engine_set_globals(s->e, g);
	if (rt->hooks.engine_new)
		rt->hooks.engine_new(rt->hooks.ud, rt, s->e);
	s->refs = 1;
	return s;
}

/*
 * After a set was built: the jq programs that compiled are remembered, and the
 * heap the compiles used (libjq compiles its builtins for every program, then
 * the state is dropped: op_jq_keep_validated) goes back to the system, so that
 * an agent whose pipelines have not run yet holds no more than after a restart.
 */
static void set_loaded(struct op_runtime *rt)
{
	op_jq_cache_save(rt->store, &rt->jq_saved);
	op_alloc_trim();
}

/* Under rt->mu: drain entry i goes; a set left without references goes on
 * *dead, to be freed after unlocking (drains_free). */
static void drain_remove_locked(struct op_runtime *rt, size_t i, struct op_runtime_set **dead)
{
	struct op_runtime_set *set = rt->drain[i].set;
	op_free(rt->drain[i].name);
	rt->drain[i] = rt->drain[--rt->ndrain];
	if (--set->refs == 0) {
		set->next_free = *dead;
		*dead = set;
	}
}

static void drains_free(struct op_runtime_set *dead)
{
	while (dead) {
		struct op_runtime_set *next = dead->next_free;
		set_free(dead);
		dead = next;
	}
}

static bool busy_locked(struct op_runtime *rt, const char *name)
{
	for (size_t i = 0; i < rt->nrun; i++)
		if (strcmp(rt->run[i].name, name) == 0)
			return rt->run[i].n > 0 || rt->run[i].held > 0;
	return false;
}

/*
 * Under rt->mu, when old gives way to s: each pipeline of old that s does
 * not have and that has events queued or running drains on old; one that
 * s has again stops draining (s runs its queue). Sets left without
 * references go on *dead.
 */
static void drains_update_locked(struct op_runtime *rt, struct op_runtime_set *old,
                                 struct op_runtime_set *s, struct op_runtime_set **dead)
{
	for (size_t i = 0; i < rt->ndrain;) {
		if (op_engine_find(s->e, rt->drain[i].name))
			drain_remove_locked(rt, i, dead);
		else
			i++;
	}
	for (size_t i = 0; old && i < op_engine_count(old->e); i++) {
		const char *name = op_engine_at(old->e, i)->name;
		if (op_engine_find(s->e, name))
			continue;
		uint64_t events = 0, bytes = 0;
		op_store_queue_depth(rt->store, name, &events, &bytes);
		if (events == 0 && !busy_locked(rt, name))
			continue;
		struct drain *v = op_realloc(rt->drain, (rt->ndrain + 1) * sizeof(*v));
		char *dup = v ? op_strdup(name) : NULL;
		if (v)
			rt->drain = v;
		if (dup == NULL) {
			OP_LOGE(
			    "%s: out of memory: its %llu queued events wait for a set that has it",
			    name, (unsigned long long)events);
			continue;
		}
		old->refs++;
		rt->drain[rt->ndrain++] = (struct drain){.name = dup, .set = old};
		OP_LOGI("%s: no longer deployed; draining %llu queued events first", name,
		        (unsigned long long)events);
	}
}

/* Swaps s in (and doc, taken, as the deployed document when swap_doc). */
static void set_swap(struct op_runtime *rt, struct op_runtime_set *s, bool swap_doc, cJSON *doc)
{
	struct op_runtime_set *dead = NULL;
	pthread_mutex_lock(&rt->mu);
	struct op_runtime_set *old = rt->set;
	drains_update_locked(rt, old, s, &dead);
	rt->set = s;
	cJSON *old_doc = NULL;
	if (swap_doc) {
		old_doc = rt->deployed;
		rt->deployed = doc;
	}
	rt->wake++;
	pthread_cond_broadcast(&rt->cv);
	pthread_mutex_unlock(&rt->mu);
	cJSON_Delete(old_doc);
	drains_free(dead);
	op_runtime_put(rt, old);
}

op_err op_runtime_reload(struct op_runtime *rt, op_runtime_check_fn check, void *ud,
                         struct op_diag *d)
{
	/* The deploy thread is the only other writer of rt->deployed, and
	 * reloads and deploys do not overlap (the daemon serialises them). */
	struct op_runtime_set *s = set_load(rt, rt->deployed, d);
	if (s == NULL)
		return OP_ECONFIG;
	set_loaded(rt);
	op_err rc = check ? check(ud, s->e, d) : OP_OK;
	if (rc) {
		set_free(s);
		return rc;
	}
	set_swap(rt, s, false, NULL);
	OP_LOGI("pipelines reloaded: %zu deployed", op_engine_count(s->e));
	return OP_OK;
}

/* ---- the history of applied documents ---- */

#define HISTORY_PREFIX "control.history."

/* The history's keys, oldest first (the store lists keys in order and
 * their seq is zero-padded). */
static op_err history_keys(struct op_runtime *rt, char ***out, size_t *n)
{
	char **keys = NULL;
	size_t nk = 0, k = 0;
	op_err rc = op_store_list(rt->store, OP_STORE_STATE, &keys, &nk);
	if (rc)
		return rc;
	for (size_t i = 0; i < nk; i++) {
		if (strncmp(keys[i], HISTORY_PREFIX, strlen(HISTORY_PREFIX)) == 0)
			keys[k++] = keys[i];
		else
			op_free(keys[i]);
	}
	*out = keys;
	*n = k;
	return OP_OK;
}

/* Keeps doc's text as the newest of the last OP_RUNTIME_HISTORY documents
 * applied; a failure costs history, never the deploy. */
static void history_add(struct op_runtime *rt, const cJSON *doc, const char *text, size_t len)
{
	const cJSON *seq = cJSON_GetObjectItemCaseSensitive(doc, "seq");
	/* seq 0: the empty set restored after a failed start, not a document. */
	if (!cJSON_IsNumber(seq) || seq->valuedouble < 1)
		return;
	char key[64];
	snprintf(key, sizeof(key), HISTORY_PREFIX "%020.0f", seq->valuedouble);
	if (op_store_put(rt->store, OP_STORE_STATE, key, text, len) != OP_OK) {
		OP_LOGW("the applied document is not kept in the history");
		return;
	}
	char **keys = NULL;
	size_t n = 0;
	if (history_keys(rt, &keys, &n) != OP_OK)
		return;
	for (size_t i = 0; i + OP_RUNTIME_HISTORY < n; i++) {
		op_err ignored = op_store_del(rt->store, OP_STORE_STATE, keys[i]);
		(void)ignored;
	}
	op_store_keys_free(keys, n);
}

void op_runtime_unapplied(struct op_runtime *rt, const cJSON *doc)
{
	const cJSON *seq = cJSON_GetObjectItemCaseSensitive(doc, "seq");
	if (!cJSON_IsNumber(seq) || seq->valuedouble < 1)
		return;
	char key[64];
	snprintf(key, sizeof(key), HISTORY_PREFIX "%020.0f", seq->valuedouble);
	op_err rc = op_store_del(rt->store, OP_STORE_STATE, key);
	if (rc && rc != OP_ENOTFOUND)
		OP_LOGW("the document of seq %.0f stays in the history: %s", seq->valuedouble,
		        op_err_name(rc));
}

uint64_t op_runtime_seq_floor(struct op_runtime *rt)
{
	char **keys = NULL;
	size_t n = 0;
	uint64_t floor = 0;
	if (history_keys(rt, &keys, &n) == OP_OK && n > 0)
		floor = strtoull(keys[n - 1] + strlen(HISTORY_PREFIX), NULL, 10);
	op_store_keys_free(keys, n);
	return floor;
}

cJSON *op_runtime_history(struct op_runtime *rt)
{
	char **keys = NULL;
	size_t n = 0;
	if (history_keys(rt, &keys, &n) != OP_OK)
		return NULL;
	cJSON *a = cJSON_CreateArray();
	for (size_t i = n; a && i-- > 0;) {
		char *text = NULL;
		size_t len = 0;
		if (op_store_get(rt->store, OP_STORE_STATE, keys[i], &text, &len) != OP_OK)
			continue;
		cJSON *d = cJSON_ParseWithLength(text, len);
		op_free(text);
		if (d && !cJSON_AddItemToArray(a, d))
			cJSON_Delete(d);
	}
	op_store_keys_free(keys, n);
	return a;
}

op_err op_runtime_deploy(struct op_runtime *rt, const char *text, size_t len, const cJSON *doc,
                         op_runtime_check_fn check, void *ud, struct op_diag *d)
{
	struct op_runtime_set *s = set_load(rt, doc, d);
	if (s == NULL)
		return OP_ECONFIG;
	op_err rc = check ? check(ud, s->e, d) : OP_OK;
	if (rc) {
		set_free(s);
		return rc;
	}
	cJSON *copy = cJSON_Duplicate(doc, 1);
	if (copy == NULL) {
		set_free(s);
		op_diag_add_at(d, "", "out of memory");
		return OP_ENOMEM;
	}
	/* Durable before it runs: a restart comes back to what runs now. */
	rc = op_store_put(rt->store, OP_STORE_STATE, OP_RUNTIME_APPLIED_KEY, text, len);
	if (rc) {
		cJSON_Delete(copy);
		set_free(s);
		op_diag_add_at(d, "", "the store cannot keep the document: %s", op_err_name(rc));
		return rc;
	}
	history_add(rt, doc, text, len);
	set_loaded(rt);
	set_swap(rt, s, true, copy);
	pthread_mutex_lock(&rt->mu);
	rt->deploy_error[0] = '\0';
	pthread_mutex_unlock(&rt->mu);
	OP_LOGI("pipelines deployed: %zu in the set", op_engine_count(s->e));
	return OP_OK;
}

cJSON *op_runtime_deployed(struct op_runtime *rt, char *err, size_t errlen)
{
	pthread_mutex_lock(&rt->mu);
	cJSON *c = rt->deployed ? cJSON_Duplicate(rt->deployed, 1) : NULL;
	snprintf(err, errlen, "%s", rt->deploy_error);
	pthread_mutex_unlock(&rt->mu);
	return c;
}

/* ---- running counts (under rt->mu) ---- */

static struct running *running_of(struct op_runtime *rt, const char *name)
{
	for (size_t i = 0; i < rt->nrun; i++) {
		if (strcmp(rt->run[i].name, name) == 0)
			return &rt->run[i];
	}
	if (rt->nrun == rt->caprun) {
		size_t cap = rt->caprun ? rt->caprun * 2 : 16;
		struct running *v = op_realloc(rt->run, cap * sizeof(*v));
		if (v == NULL)
			return NULL;
		rt->run = v;
		rt->caprun = cap;
	}
	char *n = op_strdup(name);
	if (n == NULL)
		return NULL;
	rt->run[rt->nrun] = (struct running){.name = n, .n = 0};
	return &rt->run[rt->nrun++];
}

/* ---- executions ---- */

static void fail_text(const struct op_fail *f, char *buf, size_t len)
{
	snprintf(buf, len, "%s: %s (step %s, class %s)", f->code, f->msg,
	         f->step[0] ? f->step : "-", op_err_name(f->cls));
}

/* Wait before attempt `attempt + 1` under policy r, with jitter. */
static const char *trigger_type(const cJSON *trigger)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(trigger, "type");
	return cJSON_IsString(t) ? t->valuestring : "manual";
}

static void count(struct op_runtime *rt, uint64_t *which)
{
	pthread_mutex_lock(&rt->mu);
	(*which)++;
	pthread_mutex_unlock(&rt->mu);
}

/*
 * A redelivered event (its last attempt ended with the agent: crash, kill -9,
 * power loss) that is past this many attempts, or its policy's attempts if
 * more, is dead-lettered rather than run again: an event that makes the agent
 * crash would otherwise crash it at every start.
 */
#define STOPPED_ATTEMPTS 3

/* Runs one taken event to its end: ack, retry or dead letter. */
static void execute(struct op_runtime *rt, const struct op_pipeline *p, const struct op_engine *e,
                    struct op_store_event *ev)
{
	char err[1400] = "";
	struct op_fail f = {0};
	cJSON *out = NULL;
	cJSON *trigger = ev->trigger[0] ? cJSON_Parse(ev->trigger) : NULL;
	cJSON *msg = cJSON_ParseWithLength(ev->payload, ev->payload_len);
	struct op_store_exec rec = {.event_id = "",
	                            .pipeline = p->name,
	                            .version = p->version,
	                            .trigger = (char *)trigger_type(trigger),
	                            .attempt = ev->attempt,
	                            .start_ms = now_ms()};
	memcpy(rec.event_id, ev->id, sizeof(rec.event_id));
	op_err rc = op_uuid_v7(rec.id);
	const cJSON *bad = cJSON_GetObjectItemCaseSensitive(trigger, "payloadError");
	if (rc == OP_OK && cJSON_IsString(bad)) {
		/* A trigger took in what it could not turn into a message (an MQTT
		 * payload that is not JSON): kept for the operator, never run. */
		snprintf(err, sizeof(err), "BAD_PAYLOAD: %.1300s", bad->valuestring);
		rec.status = "error";
		rec.error = err;
		rec.duration_ms = 0;
		if (op_store_dead(rt->store, ev->id, err, &rec) == OP_OK)
			count(rt, &rt->counts.dead);
		OP_LOGW("%s: execution %s (event %s) not run: %s; dead-lettered", p->name, rec.id,
		        ev->id, err);
		goto out;
	}
	if (rc == OP_OK && msg == NULL) {
		/* Checksummed, so not corruption: text we could not parse back. */
		snprintf(err, sizeof(err), "STORED_PAYLOAD: the event is not valid JSON");
		rec.status = "error";
		rec.error = err;
		rec.duration_ms = 0;
		if (op_store_dead(rt->store, ev->id, err, &rec) == OP_OK)
			count(rt, &rt->counts.dead);
		OP_LOGW("%s: execution %s (event %s) not run: %s; dead-lettered", p->name, rec.id,
		        ev->id, err);
		goto out;
	}
	long long most = p->settings.retry.attempts > STOPPED_ATTEMPTS ? p->settings.retry.attempts
	                                                               : STOPPED_ATTEMPTS;
	if (rc == OP_OK && ev->redelivered && (long long)ev->attempt > most) {
		snprintf(err, sizeof(err),
		         "AGENT_STOPPED: the agent stopped during this event's last attempt, %u of "
		         "%lld at most; not run again, so that it cannot stop the agent again",
		         ev->attempt - 1, most);
		rec.status = "error";
		rec.error = err;
		rec.duration_ms = 0;
		if (op_store_dead(rt->store, ev->id, err, &rec) == OP_OK)
			count(rt, &rt->counts.dead);
		OP_LOGE("%s: execution %s (event %s): %s; dead-lettered", p->name, rec.id, ev->id,
		        err);
		goto out;
	}
	if (rc == OP_OK) {
		struct op_run_opts o = {.execution_id = rec.id,
		                        .event_id = ev->id,
		                        .trigger = trigger,
		                        .attempt = ev->attempt,
		                        .stop = &rt->stop_runs};
		rc = op_engine_run((struct op_engine *)e, p, msg, &o, &out, &f);
		msg = NULL;
	} else {
		f.cls = rc;
		snprintf(f.code, sizeof(f.code), "NOMEM");
		snprintf(f.msg, sizeof(f.msg), "out of memory");
	}
	rec.duration_ms = now_ms() - rec.start_ms;
	op_err sr;
	if (rc == OP_OK) {
		/* The lease ends with the next commit; a crash before it means
		 * one more run, which at-least-once allows. */
		rec.status = "success";
		sr = op_store_ack_nowait(rt->store, ev->id, &rec);
		if (sr == OP_OK)
			count(rt, &rt->counts.succeeded);
	} else {
		fail_text(&f, err, sizeof(err));
		rec.error = err;
		const struct op_retry_policy *pol = &p->settings.retry;
		if (f.cls == OP_ECANCELED && atomic_load(&rt->stop_runs)) {
			/* Stopped by shutdown: back to the queue, due at once. */
			rec.status = "interrupted";
			sr = op_store_retry(rt->store, ev->id, 0, err, &rec);
			if (sr == OP_OK)
				count(rt, &rt->counts.interrupted);
		} else if (op_err_retryable(f.cls) && (long long)ev->attempt < pol->attempts) {
			int64_t due = now_ms() + op_retry_wait_ms(pol, ev->attempt);
			rec.status = "retry";
			sr = op_store_retry(rt->store, ev->id, due, err, &rec);
			if (sr == OP_OK) {
				pthread_mutex_lock(&rt->mu);
				rt->counts.retried++;
				if (due < rt->next_due_ms)
					rt->next_due_ms = due;
				rt->wake++;
				pthread_cond_broadcast(&rt->cv);
				pthread_mutex_unlock(&rt->mu);
			}
			OP_LOGI("%s: execution %s (event %s, attempt %u) failed: %s; retrying in "
			        "%lld ms",
			        p->name, rec.id, ev->id, ev->attempt, err,
			        (long long)(due - now_ms()));
		} else {
			rec.status = "error";
			sr = op_store_dead(rt->store, ev->id, err, &rec);
			if (sr == OP_OK)
				count(rt, &rt->counts.dead);
			OP_LOGW("%s: execution %s (event %s, attempt %u) failed: %s; dead-lettered",
			        p->name, rec.id, ev->id, ev->attempt, err);
		}
	}
	if (rt->hooks.ended && rec.status)
		rt->hooks.ended(rt->hooks.ud, p->name, rec.status, rec.duration_ms);
	if (sr != OP_OK)
		OP_LOGE("%s: event %s: cannot record the end of its execution (%s); it will run "
		        "again after a restart",
		        p->name, ev->id, op_err_str(sr));
out:
	cJSON_Delete(msg);
	cJSON_Delete(out);
	cJSON_Delete(trigger);
}

/* Most events one take moves into flight (they wait in rt->ready). */
#define TAKE_BATCH 32

/*
 * Takes due events of a pipeline of the set that is below its concurrency,
 * starting after the last pipeline served: one to run now in *ev (its slot
 * counted), up to TAKE_BATCH more onto rt->ready (held: taken into flight,
 * run as slots free up). Sets *queued when some queue holds events.
 */
/* Looks up drain entry (name, set) under rt->mu; its index or ndrain. */
static size_t drain_find_locked(struct op_runtime *rt, const char *name,
                                const struct op_runtime_set *set)
{
	for (size_t i = 0; i < rt->ndrain; i++)
		if (rt->drain[i].set == set && strcmp(rt->drain[i].name, name) == 0)
			return i;
	return rt->ndrain;
}

/* A reference to the old set of the draining pipeline name, or NULL. */
static struct op_runtime_set *drain_ref(struct op_runtime *rt, const char *name)
{
	struct op_runtime_set *set = NULL;
	pthread_mutex_lock(&rt->mu);
	for (size_t i = 0; i < rt->ndrain && set == NULL; i++) {
		if (strcmp(rt->drain[i].name, name) == 0) {
			set = rt->drain[i].set;
			set->refs++;
		}
	}
	pthread_mutex_unlock(&rt->mu);
	return set;
}

/*
 * One event of a pipeline that left the set, to run on its old set (*use,
 * a reference the caller puts), one at a time within its concurrency; a
 * pipeline whose queue is empty and that runs nothing stops draining. The
 * store is asked outside rt->mu.
 */
static op_err take_draining(struct op_runtime *rt, struct op_store_event **ev,
                            struct op_runtime_set **use, bool *queued)
{
	pthread_mutex_lock(&rt->mu);
	size_t n = rt->ndrain;
	struct drain *v = n ? op_calloc(n, sizeof(*v)) : NULL;
	for (size_t i = 0; v && i < n; i++) {
		v[i].name = op_strdup(rt->drain[i].name);
		v[i].set = rt->drain[i].set;
		v[i].set->refs++;
	}
	pthread_mutex_unlock(&rt->mu);
	if (v == NULL)
		return OP_ENOTFOUND;
	op_err rc = OP_ENOTFOUND;
	for (size_t i = 0; i < n && rc != OP_OK; i++) {
		if (v[i].name == NULL)
			continue;
		const struct op_pipeline *p = op_engine_find(v[i].set->e, v[i].name);
		uint64_t events = 0, bytes = 0;
		op_store_queue_depth(rt->store, v[i].name, &events, &bytes);
		bool slot = false;
		struct op_runtime_set *dead = NULL;
		pthread_mutex_lock(&rt->mu);
		struct running *r = running_of(rt, v[i].name);
		bool drained = false;
		if (events == 0 && !busy_locked(rt, v[i].name)) {
			size_t k = drain_find_locked(rt, v[i].name, v[i].set);
			if (k < rt->ndrain) {
				OP_LOGI("%s: drained; it leaves the agent", v[i].name);
				drain_remove_locked(rt, k, &dead);
				drained = true;
			}
		} else if (events > 0) {
			*queued = true;
			if (r && p && !rt->stopping && r->n < p->settings.concurrency) {
				r->n++;
				slot = true;
			}
		}
		pthread_mutex_unlock(&rt->mu);
		drains_free(dead);
		if (drained && rt->hooks.drained)
			rt->hooks.drained(rt->hooks.ud, v[i].name);
		if (!slot)
			continue;
		size_t got = 0;
		struct op_store_event *e1 = NULL;
		op_err trc = op_store_take_n(rt->store, v[i].name, 0, &e1, 1, &got);
		if (got == 1) {
			*ev = e1;
			*use = v[i].set;
			v[i].set = NULL; /* the caller's reference now */
			rc = OP_OK;
			break;
		}
		pthread_mutex_lock(&rt->mu);
		r = running_of(rt, v[i].name);
		if (r)
			r->n--;
		pthread_mutex_unlock(&rt->mu);
		if (trc != OP_OK && trc != OP_ENOTFOUND && trc != OP_EBUSY)
			OP_LOGE("%s: cannot take events from the queue: %s", v[i].name,
			        op_err_str(trc));
	}
	for (size_t i = 0; i < n; i++) {
		if (v[i].set)
			op_runtime_put(rt, v[i].set);
		op_free(v[i].name);
	}
	op_free(v);
	return rc;
}

static op_err take_one(struct op_runtime *rt, struct op_runtime_set *set,
                       struct op_store_event **ev, struct op_runtime_set **use, bool *queued)
{
	size_t n = op_engine_count(set->e);
	pthread_mutex_lock(&rt->mu);
	unsigned start = rt->rr++;
	pthread_mutex_unlock(&rt->mu);
	*queued = false;
	for (size_t k = 0; k < n; k++) {
		const struct op_pipeline *p = op_engine_at(set->e, (start + k) % n);
		uint64_t events = 0, bytes = 0;
		op_store_queue_depth(rt->store, p->name, &events, &bytes);
		if (events == 0)
			continue;
		*queued = true;
		pthread_mutex_lock(&rt->mu);
		struct running *r = running_of(rt, p->name);
		long long want = 0;
		if (r && !rt->stopping && r->n < p->settings.concurrency) {
			/* held can pass TAKE_BATCH: workers take concurrently. */
			want = TAKE_BATCH - r->held;
			if (want > 0 && (uint64_t)want > events)
				want = (long long)events;
		}
		if (want > 0)
			r->n++; /* the slot of the one that runs now */
		pthread_mutex_unlock(&rt->mu);
		if (want <= 0)
			continue;
		struct op_store_event *evs[TAKE_BATCH];
		size_t got = 0;
		op_err rc = op_store_take_n(rt->store, p->name, 0, evs, (size_t)want, &got);
		pthread_mutex_lock(&rt->mu);
		if (got == 0)
			r->n--;
		for (size_t i = 1; i < got; i++) {
			evs[i]->next_ready = NULL;
			if (rt->ready_tail)
				rt->ready_tail->next_ready = evs[i];
			else
				rt->ready = evs[i];
			rt->ready_tail = evs[i];
			r->held++;
		}
		if (got > 1) {
			rt->wake++;
			pthread_cond_broadcast(&rt->cv);
		}
		pthread_mutex_unlock(&rt->mu);
		if (got > 0) {
			*ev = evs[0];
			return OP_OK;
		}
		if (rc != OP_OK && rc != OP_ENOTFOUND && rc != OP_EBUSY)
			OP_LOGE("%s: cannot take events from the queue: %s", p->name,
			        op_err_str(rc));
	}
	return take_draining(rt, ev, use, queued);
}

/*
 * The first held event whose pipeline has a free slot (the slot is taken),
 * or NULL. Under rt->mu. A pipeline no longer deployed always has room (its
 * event is dead-lettered by run_event).
 */
static struct op_store_event *ready_pop(struct op_runtime *rt, const struct op_runtime_set *set)
{
	struct op_store_event *prev = NULL;
	for (struct op_store_event *ev = rt->ready; ev; prev = ev, ev = ev->next_ready) {
		struct running *r = running_of(rt, ev->pipeline);
		const struct op_pipeline *p = set ? op_engine_find(set->e, ev->pipeline) : NULL;
		if (set && r && p && r->n >= p->settings.concurrency)
			continue;
		if (prev)
			prev->next_ready = ev->next_ready;
		else
			rt->ready = ev->next_ready;
		if (rt->ready_tail == ev)
			rt->ready_tail = prev;
		ev->next_ready = NULL;
		if (r) {
			r->held--;
			r->n++;
		}
		return ev;
	}
	return NULL;
}

/* Runs ev on the set's pipeline of that name, or dead-letters it if gone. */
static void run_event(struct op_runtime *rt, struct op_runtime_set *set, struct op_store_event *ev)
{
	const struct op_pipeline *p = op_engine_find(set->e, ev->pipeline);
	if (p == NULL) {
		char err[256];
		snprintf(err, sizeof(err), "PIPELINE_GONE: no pipeline named \"%s\" is deployed",
		         ev->pipeline);
		struct op_store_exec rec = {.pipeline = ev->pipeline,
		                            .status = "error",
		                            .error = err,
		                            .attempt = ev->attempt,
		                            .start_ms = now_ms()};
		memcpy(rec.event_id, ev->id, sizeof(rec.event_id));
		if (op_uuid_v7(rec.id) == OP_OK &&
		    op_store_dead(rt->store, ev->id, err, &rec) == OP_OK)
			count(rt, &rt->counts.dead);
		return;
	}
	execute(rt, p, set->e, ev);
}

static void *worker_main(void *arg);

/*
 * The pool grows on demand: one worker at start, and one more whenever a
 * worker starts an execution while none waits, up to agent.workers. An idle
 * agent keeps one thread (each costs a stack and wolfSSL's 48 KiB
 * thread-local block); workers never exit before close. Under rt->mu.
 */
static void grow_locked(struct op_runtime *rt)
{
	if (rt->stopping || rt->idle > 0 || rt->nworkers == rt->maxworkers)
		return;
	if (pthread_create(&rt->workers[rt->nworkers], NULL, worker_main, rt) == 0)
		rt->nworkers++;
	else if (rt->nworkers == 1)
		OP_LOGW("cannot start a second worker: executions run one at a time");
}

static void *worker_main(void *arg)
{
	struct op_runtime *rt = arg;
	(void)pthread_setname_np(pthread_self(), "op-worker");
	for (;;) {
		struct op_runtime_set *set = op_runtime_get(rt);
		pthread_mutex_lock(&rt->mu);
		if (rt->stopping) {
			pthread_mutex_unlock(&rt->mu);
			op_runtime_put(rt, set);
			break;
		}
		uint64_t seen = rt->wake;
		struct op_store_event *ev = ready_pop(rt, set);
		pthread_mutex_unlock(&rt->mu);

		bool queued = false;
		struct op_runtime_set *use = NULL; /* a draining pipeline's old set */
		if (ev != NULL || take_one(rt, set, &ev, &use, &queued) == OP_OK) {
			/* Taken ahead (held) before a deploy dropped its pipeline:
			 * it drains on the old set too. */
			if (use == NULL && op_engine_find(set->e, ev->pipeline) == NULL)
				use = drain_ref(rt, ev->pipeline);
			pthread_mutex_lock(&rt->mu);
			rt->active++;
			grow_locked(rt);
			pthread_mutex_unlock(&rt->mu);
			run_event(rt, use ? use : set, ev);
			pthread_mutex_lock(&rt->mu);
			rt->active--;
			struct running *r = running_of(rt, ev->pipeline);
			if (r)
				r->n--;
			/* A concurrency slot is free again. This worker looks for
			 * work itself next; one more, woken, is enough for the slot
			 * (waking them all cost every event a herd of wake-ups). */
			rt->wake++;
			pthread_cond_signal(&rt->cv);
			pthread_cond_broadcast(&rt->idle_cv);
			pthread_mutex_unlock(&rt->mu);
			op_store_event_free(ev);
			if (use)
				op_runtime_put(rt, use);
			op_runtime_put(rt, set);
			continue;
		}
		op_runtime_put(rt, set);

		pthread_mutex_lock(&rt->mu);
		if (!rt->stopping && rt->wake == seen) {
			if (queued) {
				/* Events wait for their retry time: sleep until the
				 * earliest we know of, and check now and then. */
				int64_t wait = IDLE_RECHECK_MS;
				int64_t now = now_ms();
				if (rt->next_due_ms > now && rt->next_due_ms - now < wait)
					wait = rt->next_due_ms - now;
				else if (rt->next_due_ms <= now)
					rt->next_due_ms = INT64_MAX;
				struct timespec ts;
				op_mono_deadline(wait < 1 ? 1 : wait, &ts);
				rt->idle++;
				pthread_cond_timedwait(&rt->cv, &rt->mu, &ts);
				rt->idle--;
			} else {
				pthread_cond_broadcast(&rt->idle_cv);
				rt->idle++;
				pthread_cond_wait(&rt->cv, &rt->mu);
				rt->idle--;
			}
		}
		pthread_mutex_unlock(&rt->mu);
	}
	return NULL;
}

/* ---- open, close ---- */

/* The applied document from the store into rt->deployed, if there is one. */
static void deployed_open(struct op_runtime *rt)
{
	char *text = NULL;
	size_t len = 0;
	op_err rc = op_store_get(rt->store, OP_STORE_STATE, OP_RUNTIME_APPLIED_KEY, &text, &len);
	if (rc == OP_ENOTFOUND)
		return;
	if (rc == OP_OK) {
		rt->deployed = cJSON_ParseWithLength(text, len);
		if (rt->deployed == NULL || !cJSON_IsObject(rt->deployed)) {
			cJSON_Delete(rt->deployed);
			rt->deployed = NULL;
			rc = OP_ECORRUPT;
		}
	}
	op_free(text);
	if (rc) {
		snprintf(rt->deploy_error, sizeof(rt->deploy_error),
		         "the applied document cannot be read from the store: %s", op_err_name(rc));
		OP_LOGE("%s", rt->deploy_error);
	}
}

op_err op_runtime_open(const struct op_config *cfg, const struct op_runtime_hooks *hooks,
                       struct op_runtime **out, struct op_diag *d)
{
	*out = NULL;
	struct op_runtime *rt = op_calloc(1, sizeof(*rt));
	if (rt == NULL)
		return OP_ENOMEM;
	rt->cfg = cfg;
	if (hooks)
		rt->hooks = *hooks;
	rt->next_due_ms = INT64_MAX;
	if (pthread_mutex_init(&rt->mu, NULL) || op_cond_init_mono(&rt->cv) ||
	    op_cond_init_mono(&rt->idle_cv)) {
		op_free(rt);
		return OP_ENOMEM;
	}

	char path[4096], err[512] = "";
	if (mkdir(cfg->agent.data_dir, 0700) != 0 && errno != EEXIST) {
		char eb[128];
		op_diag_add_at(d, cfg->agent.data_dir, "cannot create the data folder: %s",
		               strerror_r(errno, eb, sizeof(eb)));
		op_runtime_close(rt);
		return OP_EIO;
	}
	snprintf(path, sizeof(path), "%s/store", cfg->agent.data_dir);
	struct op_store_opts so = {.dir = path,
	                           .map_initial = cfg->store.map_initial,
	                           .map_max = cfg->store.map_max,
	                           .exec_retention = cfg->store.exec_retention > 0
	                                                 ? (uint64_t)cfg->store.exec_retention
	                                                 : OP_STORE_KEEP_NONE,
	                           .queue_max_events = (uint64_t)cfg->store.queue_max_events,
	                           .queue_max_bytes = cfg->store.queue_max_bytes,
	                           .disk_reserve = cfg->store.disk_reserve};
	op_err rc = op_store_open(&so, &rt->store, err, sizeof(err));
	if (rc) {
		op_diag_add_at(d, path, "cannot open the store: %s", err);
		op_runtime_close(rt);
		return rc;
	}
	/* Before the set: programs that compiled before load without a compile. */
	op_jq_keep_validated(false);
	rt->jq_saved = op_jq_cache_load(rt->store);
	deployed_open(rt);
	if (rt->deployed) {
		/* When the stored document no longer loads, the folder alone, so
		 * that the agent comes up and can take a new document; the stored
		 * one is reported as the problem. */
		struct op_diag dd;
		op_diag_init(&dd);
		rt->set = set_load(rt, rt->deployed, &dd);
		if (rt->set == NULL) {
			snprintf(rt->deploy_error, sizeof(rt->deploy_error),
			         "the applied document does not load any more: %s: %s",
			         dd.n ? dd.v[0].path : "", dd.n ? dd.v[0].msg : "out of memory");
			OP_LOGE("%s; running the pipelines folder only", rt->deploy_error);
			cJSON_Delete(rt->deployed);
			rt->deployed = NULL;
		}
		op_diag_fini(&dd);
	}
	if (rt->set == NULL)
		rt->set = set_load(rt, NULL, d);
	if (rt->set == NULL) {
		op_runtime_close(rt);
		return OP_ECONFIG;
	}
	set_loaded(rt);
	size_t n = (size_t)(cfg->agent.workers > 0 ? cfg->agent.workers : 1);
	rt->workers = op_calloc(n, sizeof(*rt->workers));
	if (rt->workers == NULL) {
		op_runtime_close(rt);
		return OP_ENOMEM;
	}
	/* Under mu: the first worker may grow the pool at once. */
	pthread_mutex_lock(&rt->mu);
	rt->maxworkers = n;
	if (pthread_create(&rt->workers[0], NULL, worker_main, rt) == 0)
		rt->nworkers = 1;
	pthread_mutex_unlock(&rt->mu);
	if (rt->nworkers == 0) {
		op_diag_add_at(d, "agent.workers", "cannot start a worker thread");
		op_runtime_close(rt);
		return OP_ENOMEM;
	}
	OP_LOGI("runtime ready: %zu pipelines, up to %zu workers, store %s",
	        op_engine_count(rt->set->e), n, path);
	*out = rt;
	return OP_OK;
}

void op_runtime_close(struct op_runtime *rt)
{
	if (rt == NULL)
		return;
	pthread_mutex_lock(&rt->mu);
	rt->stopping = true;
	pthread_cond_broadcast(&rt->cv);
	/* Let running executions finish within the bound, then stop them. */
	struct timespec ts;
	op_mono_deadline((int64_t)rt->cfg->agent.shutdown_timeout_ms, &ts);
	while (rt->active > 0) {
		if (pthread_cond_timedwait(&rt->idle_cv, &rt->mu, &ts) != 0)
			break;
	}
	if (rt->active > 0)
		OP_LOGW("%lld executions still running after %llu ms: stopping them; their "
		        "events go back to their queues",
		        rt->active, (unsigned long long)rt->cfg->agent.shutdown_timeout_ms);
	pthread_mutex_unlock(&rt->mu);
	atomic_store(&rt->stop_runs, true);
	/* Stopping: the pool no longer grows. */
	pthread_mutex_lock(&rt->mu);
	size_t nw = rt->nworkers;
	pthread_mutex_unlock(&rt->mu);
	for (size_t i = 0; i < nw; i++)
		pthread_join(rt->workers[i], NULL);
	/* Taken but never started: back into their queues as they were. One
	 * that cannot go back stays in flight, and the next open puts it back
	 * counting an attempt (as after a crash). */
	for (struct op_store_event *ev; (ev = ready_pop(rt, NULL)) != NULL;) {
		op_err e = op_store_release(rt->store, ev->id);
		if (e)
			OP_LOGW("%s: event %s taken but not run stays in flight: %s", ev->pipeline,
			        ev->id, op_err_str(e));
		op_store_event_free(ev);
	}
	op_free(rt->workers);
	op_store_close(rt->store);
	if (rt->set)
		op_runtime_put(rt, rt->set);
	for (size_t i = 0; i < rt->nrun; i++)
		op_free(rt->run[i].name);
	op_free(rt->run);
	cJSON_Delete(rt->deployed);
	for (size_t i = 0; i < rt->ndrain; i++) {
		op_free(rt->drain[i].name);
		if (--rt->drain[i].set->refs == 0)
			set_free(rt->drain[i].set);
	}
	op_free(rt->drain);
	pthread_cond_destroy(&rt->cv);
	pthread_cond_destroy(&rt->idle_cv);
	pthread_mutex_destroy(&rt->mu);
	op_free(rt);
}

/* ---- entry points for triggers ---- */

op_err op_runtime_submit(struct op_runtime *rt, const char *pipeline, const cJSON *message,
                         const cJSON *trigger, char id[OP_UUID_LEN + 1])
{
	struct op_runtime_set *set = op_runtime_get(rt);
	bool known = op_engine_find(set->e, pipeline) != NULL;
	op_runtime_put(rt, set);
	if (!known)
		return OP_ENOTFOUND;
	char *payload = op_json_print(message, OP_JSON_COMPACT);
	char *trig = trigger ? op_json_print(trigger, OP_JSON_COMPACT) : NULL;
	op_err rc = OP_ENOMEM;
	if (payload && (trigger == NULL || trig))
		rc = op_store_enqueue(rt->store, pipeline, trig, payload, strlen(payload), 0, id);
	op_free(payload);
	op_free(trig);
	if (rc == OP_OK) {
		pthread_mutex_lock(&rt->mu);
		rt->wake++;
		pthread_cond_signal(&rt->cv);
		pthread_mutex_unlock(&rt->mu);
	}
	return rc;
}

struct submit_wait {
	struct op_runtime *rt;
	void (*done)(void *ud, op_err rc, const char *id);
	void *ud;
};

static void submitted(void *arg, op_err rc, const char *id)
{
	struct submit_wait *w = arg;
	struct op_runtime *rt = w->rt;
	if (rc == OP_OK) {
		pthread_mutex_lock(&rt->mu);
		rt->wake++;
		pthread_cond_signal(&rt->cv);
		pthread_mutex_unlock(&rt->mu);
	}
	w->done(w->ud, rc, id);
	op_free(w);
}

op_err op_runtime_submit_cb(struct op_runtime *rt, const char *pipeline, const cJSON *message,
                            const cJSON *trigger, void (*done)(void *ud, op_err rc, const char *id),
                            void *ud)
{
	struct op_runtime_set *set = op_runtime_get(rt);
	bool known = op_engine_find(set->e, pipeline) != NULL;
	op_runtime_put(rt, set);
	if (!known)
		return OP_ENOTFOUND;
	struct submit_wait *w = op_malloc(sizeof(*w));
	char *payload = op_json_print(message, OP_JSON_COMPACT);
	char *trig = trigger ? op_json_print(trigger, OP_JSON_COMPACT) : NULL;
	op_err rc = OP_ENOMEM;
	if (w && payload && (trigger == NULL || trig)) {
		*w = (struct submit_wait){rt, done, ud};
		rc = op_store_enqueue_cb(rt->store, pipeline, trig, payload, strlen(payload), 0,
		                         submitted, w);
	}
	if (rc)
		op_free(w);
	op_free(payload);
	op_free(trig);
	return rc;
}

op_err op_runtime_run(struct op_runtime *rt, const char *pipeline, cJSON *message,
                      const cJSON *trigger, long long timeout_ms, cJSON **out, struct op_fail *f)
{
	return op_runtime_run_stoppable(rt, pipeline, message, trigger, timeout_ms, NULL, out, f);
}

op_err op_runtime_run_stoppable(struct op_runtime *rt, const char *pipeline, cJSON *message,
                                const cJSON *trigger, long long timeout_ms, const atomic_bool *stop,
                                cJSON **out, struct op_fail *f)
{
	return op_runtime_run_on(rt, NULL, pipeline, message, trigger, timeout_ms, stop, out, f);
}

op_err op_runtime_run_on(struct op_runtime *rt, struct op_runtime_set *on, const char *pipeline,
                         cJSON *message, const cJSON *trigger, long long timeout_ms,
                         const atomic_bool *stop, cJSON **out, struct op_fail *f)
{
	*out = NULL;
	memset(f, 0, sizeof(*f));
	struct op_runtime_set *set = on ? on : op_runtime_get(rt);
	const struct op_pipeline *p = op_engine_find(set->e, pipeline);
	if (p == NULL) {
		if (on == NULL)
			op_runtime_put(rt, set);
		cJSON_Delete(message);
		f->cls = OP_ENOTFOUND;
		snprintf(f->code, sizeof(f->code), "PIPELINE_NOT_FOUND");
		snprintf(f->msg, sizeof(f->msg), "no pipeline named \"%s\" is deployed", pipeline);
		return OP_ENOTFOUND;
	}
	struct op_store_exec rec = {.pipeline = p->name,
	                            .version = p->version,
	                            .trigger = (char *)trigger_type(trigger),
	                            .attempt = 1,
	                            .start_ms = now_ms()};
	op_err rc = op_uuid_v7(rec.id);
	if (rc == OP_OK) {
		struct op_run_opts o = {.execution_id = rec.id,
		                        .trigger = trigger,
		                        .stop = stop ? stop : &rt->stop_runs,
		                        .timeout_ms = timeout_ms};
		rc = op_engine_run(set->e, p, message, &o, out, f);
	} else {
		cJSON_Delete(message);
		f->cls = rc;
		snprintf(f->code, sizeof(f->code), "NOMEM");
		snprintf(f->msg, sizeof(f->msg), "out of memory");
	}
	char err[1400];
	rec.duration_ms = now_ms() - rec.start_ms;
	rec.status = rc == OP_OK ? "success" : "error";
	if (rc) {
		fail_text(f, err, sizeof(err));
		rec.error = err;
	}
	if (rt->hooks.ended)
		rt->hooks.ended(rt->hooks.ud, p->name, rec.status, rec.duration_ms);
	/* The answer does not wait for the record's fsync: a synchronous run has
	 * no event to lose, only its record (see op_store_record_nowait). */
	op_err sr = op_store_record_nowait(rt->store, &rec);
	if (sr)
		OP_LOGW("%s: execution %s: cannot store its record: %s", p->name, rec.id,
		        op_err_str(sr));
	count(rt, rc == OP_OK ? &rt->counts.succeeded : &rt->counts.failed);
	if (on == NULL)
		op_runtime_put(rt, set);
	return rc;
}

bool op_runtime_busy(struct op_runtime *rt, const char *pipeline)
{
	uint64_t events = 0;
	op_store_queue_depth(rt->store, pipeline, &events, NULL);
	if (events > 0)
		return true;
	bool running = false;
	pthread_mutex_lock(&rt->mu);
	for (size_t i = 0; i < rt->nrun && !running; i++)
		running =
		    strcmp(rt->run[i].name, pipeline) == 0 && rt->run[i].n + rt->run[i].held > 0;
	pthread_mutex_unlock(&rt->mu);
	return running;
}

uint64_t op_runtime_running(struct op_runtime *rt, const char *pipeline)
{
	uint64_t n = 0;
	pthread_mutex_lock(&rt->mu);
	for (size_t i = 0; i < rt->nrun; i++) {
		if (strcmp(rt->run[i].name, pipeline) == 0) {
			n = (uint64_t)(rt->run[i].n + rt->run[i].held);
			break;
		}
	}
	pthread_mutex_unlock(&rt->mu);
	return n;
}

bool op_runtime_is_deployed(const struct op_pipeline *p)
{
	return strncmp(p->origin, "desired seq ", 12) == 0;
}

cJSON *op_runtime_draining(struct op_runtime *rt)
{
	cJSON *a = cJSON_CreateArray();
	pthread_mutex_lock(&rt->mu);
	for (size_t i = 0; a && i < rt->ndrain; i++) {
		const struct op_pipeline *p =
		    op_engine_find(rt->drain[i].set->e, rt->drain[i].name);
		cJSON *o = cJSON_CreateObject();
		bool ok = o && p && cJSON_AddStringToObject(o, "name", p->name) &&
		          cJSON_AddStringToObject(o, "version", p->version ? p->version : "") &&
		          cJSON_AddStringToObject(o, "origin",
		                                  op_runtime_is_deployed(p) ? "deployed" : "local");
		if (ok && cJSON_AddItemToArray(a, o))
			continue;
		cJSON_Delete(o);
		cJSON_Delete(a);
		a = NULL;
	}
	pthread_mutex_unlock(&rt->mu);
	return a;
}

op_err op_runtime_replay(struct op_runtime *rt, const char *event_id)
{
	op_err rc = op_store_replay(rt->store, event_id);
	if (rc == OP_OK) {
		pthread_mutex_lock(&rt->mu);
		rt->wake++;
		pthread_cond_signal(&rt->cv);
		pthread_mutex_unlock(&rt->mu);
	}
	return rc;
}

void op_runtime_counts(struct op_runtime *rt, struct op_runtime_counts *c)
{
	pthread_mutex_lock(&rt->mu);
	*c = rt->counts;
	c->running = (uint64_t)rt->active;
	c->workers = rt->nworkers;
	pthread_mutex_unlock(&rt->mu);
}

op_err op_runtime_wait_idle(struct op_runtime *rt, int64_t timeout_ms)
{
	struct timespec ts;
	op_mono_deadline(timeout_ms, &ts);
	op_err rc = OP_OK;
	pthread_mutex_lock(&rt->mu);
	for (;;) {
		struct op_store_stats st;
		bool idle = rt->active == 0 && op_store_stats(rt->store, &st) == OP_OK &&
		            st.queued == 0 && st.inflight == 0;
		if (idle)
			break;
		/* Acknowledgements commit after the executions end: look again
		 * every few milliseconds, not only when an execution ends. */
		struct timespec slice;
		op_mono_deadline(5, &slice);
		bool last = slice.tv_sec > ts.tv_sec ||
		            (slice.tv_sec == ts.tv_sec && slice.tv_nsec >= ts.tv_nsec);
		if (pthread_cond_timedwait(&rt->idle_cv, &rt->mu, last ? &ts : &slice) != 0 &&
		    last) {
			rc = OP_ETIMEOUT;
			break;
		}
	}
	pthread_mutex_unlock(&rt->mu);
	/* Records written without waiting (synchronous runs) are in too. */
	if (rc == OP_OK)
		rc = op_store_flush(rt->store);
	return rc;
}
