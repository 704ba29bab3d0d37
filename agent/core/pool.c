/*
 * The thread pool of pool.h. Invariant, under mu: every queued job is owed a
 * thread, i.e. while jobs wait, either idle >= queued (woken threads take
 * them) or every one of max threads runs a job. Threads are joinable: one
 * that exits puts itself on `dead`, and whoever next takes the lock outside
 * a job (op_pool_run, op_pool_free) joins it, so no thread outlives the pool.
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
	int idle_ms;

	pthread_mutex_t mu;  /* everything below */
	pthread_cond_t work; /* a job was queued, or the pool closes */
	pthread_cond_t gone; /* a thread exited */
	struct job *head, *tail;
	size_t queued;
	unsigned threads;    /* started and not exited */
	unsigned idle;       /* of them, waiting for a job */
	struct thread *dead; /* exited, not joined yet */
	bool closing;
};

static void deadline(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

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
			continue;
		}
		if (p->closing)
			break;
		struct timespec ts;
		deadline(&ts, p->idle_ms);
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

/* Joins the threads that exited. Without p->mu. */
static void reap(struct op_pool *p)
{
	pthread_mutex_lock(&p->mu);
	struct thread *t = p->dead;
	p->dead = NULL;
	pthread_mutex_unlock(&p->mu);
	while (t != NULL) {
		struct thread *next = t->next;
		pthread_join(t->t, NULL);
		op_free(t);
		t = next;
	}
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
	p->idle_ms = o->idle_ms;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, &ca);
	pthread_cond_init(&p->gone, NULL);
	pthread_condattr_destroy(&ca);
	*out = p;
	return OP_OK;
}

op_err op_pool_run(struct op_pool *p, op_pool_fn fn, void *ud)
{
	reap(p);
	struct job *j = op_malloc(sizeof(*j));
	if (j == NULL)
		return OP_ENOMEM;
	*j = (struct job){fn, ud, NULL};
	pthread_mutex_lock(&p->mu);
	if (p->closing) {
		pthread_mutex_unlock(&p->mu);
		op_free(j);
		return OP_ECANCELED;
	}
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	p->queued++;
	if (p->queued > p->idle && p->threads < p->max && start_locked(p) != OP_OK) {
		if (p->threads == 0) {
			/* Nobody would ever take it: it leaves the queue again. */
			p->head = p->tail = NULL;
			p->queued = 0;
			pthread_mutex_unlock(&p->mu);
			op_free(j);
			return OP_ENOMEM;
		}
		OP_LOGW("%s: cannot start another thread (%u run): the job waits for one", p->name,
		        p->threads);
	}
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
	return OP_OK;
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
	reap(p);
	pthread_cond_destroy(&p->gone);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->mu);
	op_free(p);
}
