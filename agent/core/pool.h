/*
 * A pool of threads for jobs that may wait a long time (a sync pipeline
 * calling a slow peer), so that threads which must stay responsive
 * (libmicrohttpd's) hand such jobs over instead of running them. A thread
 * starts when a job comes and none is idle, up to a maximum; past it, up to
 * max_queued jobs wait in the order they came, and more are refused. A
 * thread idle for idle_ms exits, so an agent between bursts keeps none.
 * op_pool_free waits for every job given.
 */
#ifndef OP_CORE_POOL_H
#define OP_CORE_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/core/err.h"

struct op_pool;

typedef void (*op_pool_fn)(void *ud);

struct op_pool_opts {
	const char *name;     /* the threads' name (at most 15 bytes are kept) */
	unsigned max_threads; /* at least 1 */
	size_t max_queued;    /* jobs that may wait for a thread (0: none) */
	int idle_ms;          /* an idle thread exits after this long; at least 1 */
};

/* A pool with no thread yet. OP_EINVAL (a bad option), OP_ENOMEM. */
op_err op_pool_new(const struct op_pool_opts *o, struct op_pool **out) OP_WUR;

/*
 * Runs fn(ud) on a pool thread: an idle one, else a new one while fewer
 * than max_threads run, else the first that frees up after the jobs queued
 * before. fn runs with every signal blocked. Never waits for a thread to end.
 * Errors (fn is not called; the caller runs the job itself or fails it):
 *   OP_EBUSY      every thread runs a job and max_queued wait already (or
 *                 no thread could be started and max_queued is 0);
 *   OP_ECANCELED  op_pool_free has begun;
 *   OP_ENOMEM     no memory for the job, or no thread runs and none could
 *                 be started.
 */
op_err op_pool_run(struct op_pool *p, op_pool_fn fn, void *ud) OP_WUR;

/* Threads started and not exited, how many of them run a job, and jobs
 * waiting for a thread. Any pointer may be NULL. */
void op_pool_stats(struct op_pool *p, unsigned *threads, unsigned *busy, size_t *queued);

/* Waits until no job runs or waits, or ms pass; true when none does. */
bool op_pool_wait_idle(struct op_pool *p, int ms);

/* Takes no more jobs, waits for the queued and running ones to end and for
 * every thread to exit, and frees p. NULL is a no-op. */
void op_pool_free(struct op_pool *p);

#endif
