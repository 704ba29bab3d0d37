/*
 * The scheduler thread (see scheduler.h for the rules it follows).
 *
 * Invariants. The schedule entries borrow their pipeline name and compiled
 * trigger from a pipeline set the scheduler holds a reference to, so a
 * runtime reload never frees them under it; op_scheduler_reload() swaps
 * entries and set together under s->mu. Everything the thread does
 * (computing next fire times, firing, storing the last fire time) happens
 * with s->mu held, so a reload or a stop waits for a firing pass to end and
 * never sees an entry half updated. The thread sleeps only on s->cv.
 */
#define OP_LOG_MODULE "scheduler"
#include "agent/daemon/scheduler.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/clock.h"
#include "agent/core/fault.h"
#include "agent/core/log.h"
#include "agent/trigger/trigger.h"

/* Longest single wait: how soon a clock that was set is noticed. */
#define MAX_WAIT_MS 10000
/* A real-time clock found this much behind the last reading was set back. */
#define CLOCK_BACK_MS 1000
#define NEVER         INT64_MAX

struct entry {
	const char *pipeline;                /* borrowed from s->set */
	const struct op_schedule_trigger *t; /* borrowed from s->set */
	int64_t next_ms;                     /* next fire time; NEVER: none */
};

struct op_scheduler {
	struct op_runtime *rt;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC; reload or stop */
	bool stopping;
	bool thread_started;
	pthread_t th;
	struct op_runtime_set *set; /* the entries borrow from it */
	struct entry *v;
	size_t n;
	int64_t last_now_ms; /* real-time clock at the last wake */
	struct op_scheduler_stats stats;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 2026-11-23T17:00:00Z (fire times are whole seconds). */
static void iso_utc(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL) {
		snprintf(buf, len, "%lld", (long long)ms);
		return;
	}
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void state_key(const char *pipeline, char *key, size_t len)
{
	snprintf(key, len, "schedule/%s", pipeline);
}

/* The stored last fire time of pipeline: OP_OK, or OP_ENOTFOUND when there
 * is none or it cannot be read (then the pipeline counts as first seen). */
static op_err state_load(struct op_scheduler *s, const char *pipeline, int64_t *last_ms)
{
	char key[OP_STORE_KEY_MAX + 16];
	char *val = NULL;
	size_t len = 0;
	*last_ms = 0;
	state_key(pipeline, key, sizeof(key));
	op_err rc = op_store_get(op_runtime_store(s->rt), OP_STORE_STATE, key, &val, &len);
	if (rc == OP_ENOTFOUND)
		return rc;
	if (rc) {
		OP_LOGW("%s: cannot read the last fire time (%s): no missed runs counted", pipeline,
		        op_err_str(rc));
		return OP_ENOTFOUND;
	}
	cJSON *j = cJSON_ParseWithLength(val, len);
	const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "lastFireMs");
	rc = OP_ENOTFOUND;
	if (cJSON_IsNumber(ms) && ms->valuedouble >= 0 && ms->valuedouble < 9.0e15) {
		*last_ms = (int64_t)ms->valuedouble;
		rc = OP_OK;
	} else {
		OP_LOGW("%s: stored last fire time %s is not valid: no missed runs counted",
		        pipeline, key);
	}
	cJSON_Delete(j);
	op_free(val);
	return rc;
}

static void state_save(struct op_scheduler *s, const char *pipeline, int64_t fire_ms)
{
	char key[OP_STORE_KEY_MAX + 16], iso[40], val[128];
	state_key(pipeline, key, sizeof(key));
	iso_utc(fire_ms, iso, sizeof(iso));
	int n = snprintf(val, sizeof(val), "{\"lastFireMs\":%lld,\"lastFire\":\"%s\"}",
	                 (long long)fire_ms, iso);
	op_err rc = op_store_put(op_runtime_store(s->rt), OP_STORE_STATE, key, val, (size_t)n);
	if (rc)
		OP_LOGW("%s: cannot store the last fire time %s (%s): a restart may count it as "
		        "missed",
		        pipeline, iso, op_err_str(rc));
}

static cJSON *trigger_data(const struct op_schedule_trigger *t, int64_t fire_ms, uint32_t missed)
{
	char iso[40];
	iso_utc(fire_ms, iso, sizeof(iso));
	cJSON *o = cJSON_CreateObject();
	if (o == NULL || !cJSON_AddStringToObject(o, "type", "schedule") ||
	    !cJSON_AddStringToObject(o, "cron", t->expr) ||
	    !cJSON_AddStringToObject(o, "scheduledAt", iso) ||
	    !cJSON_AddStringToObject(o, "timezone", op_tz_name(t->tz)) ||
	    (missed && !cJSON_AddNumberToObject(o, "missed", missed))) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* Runs e for fire time fire_ms (missed > 0: a `missed: once` catch-up), or
 * skips it when busy and overlap is off; then stores fire_ms as handled. */
static void fire(struct op_scheduler *s, const struct entry *e, int64_t fire_ms, uint32_t missed)
{
	char iso[40];
	iso_utc(fire_ms, iso, sizeof(iso));
	if (!e->t->overlap && op_runtime_busy(s->rt, e->pipeline)) {
		s->stats.skipped++;
		OP_LOGI("%s: run for %s skipped: the previous run is still queued or running "
		        "(overlap is off)",
		        e->pipeline, iso);
	} else {
		char id[OP_UUID_LEN + 1] = "";
		cJSON *trig = trigger_data(e->t, fire_ms, missed);
		op_err rc =
		    trig ? op_runtime_submit(s->rt, e->pipeline, e->t->input, trig, id) : OP_ENOMEM;
		cJSON_Delete(trig);
		if (rc == OP_OK) {
			if (missed)
				s->stats.caught_up++;
			else
				s->stats.fired++;
			OP_LOGD("%s: run for %s queued as event %s", e->pipeline, iso, id);
		} else {
			s->stats.failed++;
			OP_LOGW("%s: run for %s not started: cannot queue it: %s", e->pipeline, iso,
			        op_err_str(rc));
		}
	}
	state_save(s, e->pipeline, fire_ms);
}

static int64_t next_after(const struct entry *e, int64_t after_ms)
{
	int64_t next = 0;
	if (op_cron_next(&e->t->cron, e->t->tz, after_ms, &next) != OP_OK)
		return NEVER;
	return next;
}

/* The missed-run check of a pipeline the scheduler starts tracking. */
static void catch_up(struct op_scheduler *s, const struct entry *e, int64_t now)
{
	int64_t last = 0;
	if (state_load(s, e->pipeline, &last) != OP_OK || last > now) {
		/* First seen (or a stored time ahead of the clock): nothing missed. */
		state_save(s, e->pipeline, now);
		return;
	}
	uint32_t count = 0;
	int64_t latest = 0;
	if (op_cron_missed(&e->t->cron, e->t->tz, last, now, &count, &latest) != OP_OK ||
	    count == 0)
		return;
	s->stats.missed += count;
	char since[40];
	iso_utc(last, since, sizeof(since));
	const char *more = count >= OP_CRON_MISSED_CAP ? " or more" : "";
	if (e->t->missed == OP_MISSED_SKIP) {
		OP_LOGI("%s: %u%s scheduled runs missed since %s; missed: skip, none is run",
		        e->pipeline, count, more, since);
		state_save(s, e->pipeline, latest);
		return;
	}
	OP_LOGI("%s: %u%s scheduled runs missed since %s; missed: once, running once now",
	        e->pipeline, count, more, since);
	fire(s, e, latest, count);
}

/*
 * Builds the entries of rt's current set (keeping the next fire time of
 * unchanged schedules in the old entries) and swaps them in. With s->mu
 * held, or before the thread exists.
 */
static op_err rebuild(struct op_scheduler *s)
{
	struct op_runtime_set *set = op_runtime_get(s->rt);
	const struct op_engine *eng = op_runtime_engine(set);
	size_t cnt = op_engine_count(eng);
	/* The fault stands for this allocation failing, before anything ran. */
	bool fault = false;
	for (size_t i = 0; i < cnt && !fault; i++) {
		const struct op_pipeline *p = op_engine_at(eng, i);
		fault = op_trigger_schedule(p) && op_fault("schedule-start", p->name);
	}
	struct entry *v = fault ? NULL : op_calloc(cnt ? cnt : 1, sizeof(*v));
	if (v == NULL) {
		op_runtime_put(s->rt, set);
		return OP_ENOMEM;
	}
	size_t n = 0;
	int64_t now = now_ms();
	for (size_t i = 0; i < cnt; i++) {
		const struct op_pipeline *p = op_engine_at(eng, i);
		const struct op_schedule_trigger *t = op_trigger_schedule(p);
		if (t == NULL)
			continue;
		struct entry *e = &v[n++];
		*e = (struct entry){.pipeline = p->name, .t = t, .next_ms = NEVER};
		const struct entry *old = NULL;
		for (size_t k = 0; k < s->n && old == NULL; k++) {
			if (strcmp(s->v[k].pipeline, p->name) == 0)
				old = &s->v[k];
		}
		if (old && strcmp(old->t->expr, t->expr) == 0 && old->t->tz == t->tz) {
			e->next_ms = old->next_ms;
			continue;
		}
		if (old == NULL)
			catch_up(s, e, now);
		e->next_ms = next_after(e, now);
		if (e->next_ms == NEVER)
			OP_LOGW("%s: schedule \"%s\" never fires after now", p->name, t->expr);
	}
	struct op_runtime_set *old_set = s->set;
	op_free(s->v);
	s->v = v;
	s->n = n;
	s->set = set;
	s->stats.schedules = n;
	if (old_set)
		op_runtime_put(s->rt, old_set);
	return OP_OK;
}

static void deadline_ts(int64_t ms, struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static void *scheduler_main(void *arg)
{
	struct op_scheduler *s = arg;
	(void)pthread_setname_np(pthread_self(), "op-schedule");
	pthread_mutex_lock(&s->mu);
	while (!s->stopping) {
		int64_t now = now_ms();
		if (now < s->last_now_ms - CLOCK_BACK_MS) {
			OP_LOGW("the clock was set back by %lld ms: next fire times recomputed",
			        (long long)(s->last_now_ms - now));
			for (size_t i = 0; i < s->n; i++)
				s->v[i].next_ms = next_after(&s->v[i], now);
		}
		s->last_now_ms = now;
		int64_t earliest = NEVER;
		for (size_t i = 0; i < s->n; i++) {
			struct entry *e = &s->v[i];
			if (e->next_ms <= now) {
				/* Overdue by any amount (a clock set forward): one run. */
				fire(s, e, e->next_ms, 0);
				e->next_ms = next_after(e, now);
			}
			if (e->next_ms < earliest)
				earliest = e->next_ms;
		}
		if (s->stopping)
			break;
		int64_t wait = MAX_WAIT_MS;
		now = now_ms();
		if (earliest != NEVER && earliest - now < wait)
			wait = earliest - now;
		if (wait <= 0)
			continue;
		struct timespec ts;
		deadline_ts(wait, &ts);
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* The thread starts with the first set that has a schedule (it costs a stack
 * and wolfSSL's thread-local block), and then stays. */
static op_err start_thread(struct op_scheduler *s)
{
	s->last_now_ms = now_ms();
	if (pthread_create(&s->th, NULL, scheduler_main, s) != 0)
		return OP_ENOMEM;
	s->thread_started = true;
	return OP_OK;
}

op_err op_scheduler_start(struct op_runtime *rt, struct op_scheduler **out)
{
	*out = NULL;
	struct op_scheduler *s = op_calloc(1, sizeof(*s));
	if (s == NULL)
		return OP_ENOMEM;
	s->rt = rt;
	bool mu_ok = pthread_mutex_init(&s->mu, NULL) == 0;
	bool cv_ok = op_cond_init_mono(&s->cv) == 0;
	op_err rc = mu_ok && cv_ok ? rebuild(s) : OP_ENOMEM;
	if (rc == OP_OK && s->n > 0)
		rc = start_thread(s);
	if (rc) {
		if (s->set)
			op_runtime_put(rt, s->set);
		op_free(s->v);
		if (cv_ok)
			pthread_cond_destroy(&s->cv);
		if (mu_ok)
			pthread_mutex_destroy(&s->mu);
		op_free(s);
		return rc;
	}
	OP_LOGI("scheduler started: %zu schedules", s->n);
	*out = s;
	return OP_OK;
}

op_err op_scheduler_reload(struct op_scheduler *s)
{
	pthread_mutex_lock(&s->mu);
	op_err rc = rebuild(s);
	size_t n = s->n;
	if (rc == OP_OK && n > 0 && !s->thread_started)
		rc = start_thread(s);
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (rc)
		OP_LOGE("schedules not reloaded: %s; the previous ones go on", op_err_str(rc));
	else
		OP_LOGI("schedules reloaded: %zu", n);
	return rc;
}

void op_scheduler_stop(struct op_scheduler *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	s->stopping = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (s->thread_started)
		pthread_join(s->th, NULL);
	if (s->set)
		op_runtime_put(s->rt, s->set);
	op_free(s->v);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	op_free(s);
}

void op_scheduler_stats(struct op_scheduler *s, struct op_scheduler_stats *st)
{
	if (s == NULL) {
		memset(st, 0, sizeof(*st));
		return;
	}
	pthread_mutex_lock(&s->mu);
	*st = s->stats;
	pthread_mutex_unlock(&s->mu);
}
