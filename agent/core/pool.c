/*
 * The thread pool of pool.h. Invariant, under mu: every queued job is owed a
 * thread, i.e. while jobs wait, either idle >= queued (woken threads take
 * them) or at least one thread runs a job and will take it next. Threads
 * are joinable: one that exits puts itself on `dead`; op_pool_run joins
 * those that have ended (without waiting: a thread's end runs thread-local
 * destructors, the jq states' among them), op_pool_free all of them, so no
 * thread outlives the pool.
 */
#define OP_LOG_MODULE "pool"
#include "agent/core/pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/clock.h"
#include "agent/core/log.h"

struct job {
	op_pool_fn fn;
	void *ud;
	struct job *next;
};

struct thread {
	pthread_t t;
	struct op_pool *p;
	struct thread *next; /* on p->dead */
};

struct op_pool {
	char name[16];
	unsigned max;
	size_t max_queued;
	int idle_ms;

	pthread_mutex_t mu;  /* everything below */
	pthread_cond_t work; /* a job was queued, or the pool closes */
	pthread_cond_t gone; /* a thread exited, or a job ended */
	struct job *head, *tail;
	size_t queued;
	unsigned threads;    /* started and not exited */
	unsigned idle;       /* of them, waiting for a job */
	struct thread *dead; /* exited, not joined yet */
	bool closing;
	bool start_failed; /* the last thread start failed (logged once) */
};

static void *thread_main(void *arg)
{
	struct thread *self = arg;
	struct op_pool *p = self->p;
	(void)pthread_setname_np(pthread_self(), p->name);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct job *j = p->head;
		if (j != NULL) {
			p->head = j->next;
			if (p->head == NULL)
				p->tail = NULL;
			p->queued--;
			pthread_mutex_unlock(&p->mu);
			j->fn(j->ud);
			op_free(j);
			pthread_mutex_lock(&p->mu);
			pthread_cond_broadcast(&p->gone); /* op_pool_wait_idle */
			continue;
		}
		if (p->closing)
			break;
		struct timespec ts;
		op_mono_deadline(p->idle_ms, &ts);
		p->idle++;
		int rc = pthread_cond_timedwait(&p->work, &p->mu, &ts);
		p->idle--;
		if (rc == ETIMEDOUT && p->head == NULL)
			break;
	}
	p->threads--;
	self->next = p->dead;
	p->dead = self;
	pthread_cond_broadcast(&p->gone);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Joins the threads that exited; with wait false, only those that have
 * ended (the others stay on the list). Without p->mu. */
static void reap(struct op_pool *p, bool wait)
{
	pthread_mutex_lock(&p->mu);
	struct thread *t = p->dead, *keep = NULL;
	p->dead = NULL;
	pthread_mutex_unlock(&p->mu);
	while (t != NULL) {
		struct thread *next = t->next;
		if (wait ? pthread_join(t->t, NULL) == 0 : pthread_tryjoin_np(t->t, NULL) == 0) {
			op_free(t);
		} else {
			t->next = keep;
			keep = t;
		}
		t = next;
	}
	if (keep == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	struct thread *last = keep;
	while (last->next)
		last = last->next;
	last->next = p->dead;
	p->dead = keep;
	pthread_mutex_unlock(&p->mu);
}

/* One more thread, with every signal blocked (the daemon takes them on its
 * main thread). Under p->mu. */
static op_err start_locked(struct op_pool *p)
{
	struct thread *t = op_calloc(1, sizeof(*t));
	if (t == NULL)
		return OP_ENOMEM;
	t->p = p;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&t->t, NULL, thread_main, t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		op_free(t);
		return OP_ENOMEM;
	}
	p->threads++;
	return OP_OK;
}

op_err op_pool_new(const struct op_pool_opts *o, struct op_pool **out)
{
	*out = NULL;
	if (o == NULL || o->name == NULL || o->max_threads == 0 || o->idle_ms < 1)
		return OP_EINVAL;
	struct op_pool *p = op_calloc(1, sizeof(*p));
	if (p == NULL)
		return OP_ENOMEM;
	snprintf(p->name, sizeof(p->name), "%s", o->name);
	p->max = o->max_threads;
	p->max_queued = o->max_queued;
	p->idle_ms = o->idle_ms;
	pthread_mutex_init(&p->mu, NULL);
	op_cond_init_mono(&p->work);
	op_cond_init_mono(&p->gone);
	*out = p;
	return OP_OK;
}

op_err op_pool_run(struct op_pool *p, op_pool_fn fn, void *ud)
{
	reap(p, false);
	struct job *j = op_malloc(sizeof(*j));
	if (j == NULL)
		return OP_ENOMEM;
	*j = (struct job){fn, ud, NULL};
	op_err rc = OP_OK;
	pthread_mutex_lock(&p->mu);
	if (p->closing) {
		rc = OP_ECANCELED;
	} else if (p->idle <= p->queued) {
		/* No idle thread left for it: a new one, or a place in the queue. */
		bool started = false;
		if (p->threads < p->max) {
			started = start_locked(p) == OP_OK;
			if (!started && !p->start_failed)
				OP_LOGW("%s: cannot start a thread (%u run)", p->name, p->threads);
			p->start_failed = !started;
		}
		if (!started && (p->threads == 0 || p->queued >= p->max_queued))
			rc = p->threads == 0 ? OP_ENOMEM : OP_EBUSY;
	}
	if (rc == OP_OK) {
		if (p->tail)
			p->tail->next = j;
		else
			p->head = j;
		p->tail = j;
		p->queued++;
		pthread_cond_signal(&p->work);
	}
	pthread_mutex_unlock(&p->mu);
	if (rc)
		op_free(j);
	return rc;
}

void op_pool_stats(struct op_pool *p, unsigned *threads, unsigned *busy, size_t *queued)
{
	pthread_mutex_lock(&p->mu);
	if (threads)
		*threads = p->threads;
	if (busy)
		*busy = p->threads - p->idle;
	if (queued)
		*queued = p->queued;
	pthread_mutex_unlock(&p->mu);
}

bool op_pool_wait_idle(struct op_pool *p, int ms)
{
	struct timespec ts;
	op_mono_deadline(ms, &ts);
	pthread_mutex_lock(&p->mu);
	int rc = 0;
	while ((p->threads > p->idle || p->queued > 0) && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&p->gone, &p->mu, &ts);
	bool idle = p->threads == p->idle && p->queued == 0;
	pthread_mutex_unlock(&p->mu);
	return idle;
}

void op_pool_free(struct op_pool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->closing = true;
	pthread_cond_broadcast(&p->work);
	while (p->threads > 0)
		pthread_cond_wait(&p->gone, &p->mu);
	pthread_mutex_unlock(&p->mu);
	reap(p, true);
	pthread_cond_destroy(&p->gone);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->mu);
	op_free(p);
}
