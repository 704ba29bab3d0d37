/* Unit tests of the thread pool: growth to the maximum, order of the jobs
 * that wait, idle threads leaving, and the end that waits for every job. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/pool.h"
#include "tests/unit/test.h"

/* Jobs that wait for the gate to open, and say in which order they ran. */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool open;
	int order[16];
	int n;
};

struct gated {
	struct gate *g;
	int id;
};

static void gated_job(void *ud)
{
	struct gated *j = ud;
	pthread_mutex_lock(&j->g->mu);
	j->g->order[j->g->n++] = j->id;
	while (!j->g->open)
		pthread_cond_wait(&j->g->cv, &j->g->mu);
	pthread_mutex_unlock(&j->g->mu);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static int gate_started(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	int n = g->n;
	pthread_mutex_unlock(&g->mu);
	return n;
}

/* Polls until the pool has want threads and busy of them busy (5 s at most). */
static bool wait_stats(struct op_pool *p, unsigned want, unsigned busy, size_t queued)
{
	for (int i = 0; i < 5000; i++) {
		unsigned t, b;
		size_t q;
		op_pool_stats(p, &t, &b, &q);
		if (t == want && b == busy && q == queued)
			return true;
		nanosleep(&(struct timespec){0, 1000000}, NULL); /* poll interval */
	}
	return false;
}

static atomic_int ran;

static void count_job(void *ud)
{
	(void)ud;
	atomic_fetch_add(&ran, 1);
}

START_TEST(jobs_run_and_free_waits_for_them)
{
	struct op_pool *p;
	ck_assert_int_eq(op_pool_new(&(struct op_pool_opts){"t-pool", 4, 1000, 60000}, &p), OP_OK);
	atomic_store(&ran, 0);
	for (int i = 0; i < 200; i++)
		ck_assert_int_eq(op_pool_run(p, count_job, NULL), OP_OK);
	unsigned threads;
	op_pool_stats(p, &threads, NULL, NULL);
	ck_assert_uint_le(threads, 4);
	op_pool_free(p);
	ck_assert_int_eq(atomic_load(&ran), 200);
	op_pool_free(NULL);
}
END_TEST

/* Up to the maximum each job gets a thread of its own at once; past it up to
 * max_queued wait, and start in the order they came; more are refused. */
START_TEST(grows_to_the_maximum_then_queues_in_order)
{
	struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, {0}, 0};
	struct gated j[6];
	struct op_pool *p;
	ck_assert_int_eq(op_pool_new(&(struct op_pool_opts){"t-pool", 3, 3, 60000}, &p), OP_OK);
	for (int i = 0; i < 3; i++) {
		j[i] = (struct gated){&g, i};
		ck_assert_int_eq(op_pool_run(p, gated_job, &j[i]), OP_OK);
	}
	ck_assert(wait_stats(p, 3, 3, 0));
	ck_assert_int_eq(gate_started(&g), 3);
	for (int i = 3; i < 6; i++) {
		j[i] = (struct gated){&g, i};
		ck_assert_int_eq(op_pool_run(p, gated_job, &j[i]), OP_OK);
	}
	ck_assert(wait_stats(p, 3, 3, 3));
	ck_assert_int_eq(gate_started(&g), 3);
	/* max_queued wait already: the next is refused, not queued. */
	struct gated extra = {&g, 9};
	ck_assert_int_eq(op_pool_run(p, gated_job, &extra), OP_EBUSY);
	ck_assert(!op_pool_wait_idle(p, 20));
	gate_open(&g);
	ck_assert(op_pool_wait_idle(p, 5000));
	op_pool_free(p);
	ck_assert_int_eq(g.n, 6);

	/* The order they start in: with one thread, as they came (with more,
	 * the threads that take them race to say so). */
	struct gate o = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, {0}, 0};
	ck_assert_int_eq(op_pool_new(&(struct op_pool_opts){"t-pool", 1, 3, 60000}, &p), OP_OK);
	for (int i = 0; i < 4; i++) {
		j[i] = (struct gated){&o, i};
		ck_assert_int_eq(op_pool_run(p, gated_job, &j[i]), OP_OK);
		if (i == 0)
			ck_assert(wait_stats(p, 1, 1, 0)); /* the thread holds it */
	}
	ck_assert(wait_stats(p, 1, 1, 3));
	gate_open(&o);
	op_pool_free(p);
	ck_assert_int_eq(o.n, 4);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(o.order[i], i);
}
END_TEST

/* With max_queued 0 a job runs at once or is refused. */
START_TEST(without_a_queue_busy_when_all_run)
{
	struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, {0}, 0};
	struct gated j[3] = {{&g, 0}, {&g, 1}, {&g, 2}};
	struct op_pool *p;
	ck_assert_int_eq(op_pool_new(&(struct op_pool_opts){"t-pool", 2, 0, 60000}, &p), OP_OK);
	ck_assert(op_pool_wait_idle(p, 0));
	ck_assert_int_eq(op_pool_run(p, gated_job, &j[0]), OP_OK);
	ck_assert_int_eq(op_pool_run(p, gated_job, &j[1]), OP_OK);
	ck_assert(wait_stats(p, 2, 2, 0));
	ck_assert_int_eq(op_pool_run(p, gated_job, &j[2]), OP_EBUSY);
	gate_open(&g);
	ck_assert(op_pool_wait_idle(p, 5000));
	ck_assert(wait_stats(p, 2, 0, 0));
	/* Both threads idle: the refused job now runs. */
	ck_assert_int_eq(op_pool_run(p, gated_job, &j[2]), OP_OK);
	op_pool_free(p);
	ck_assert_int_eq(g.n, 3);
}
END_TEST

/* An idle thread leaves after idle_ms; the next job starts a new one. A job
 * may hand work to the pool itself. */
static struct op_pool *nest_pool;

static void nesting_job(void *ud)
{
	(void)ud;
	ck_assert_int_eq(op_pool_run(nest_pool, count_job, NULL), OP_OK);
}

START_TEST(idle_threads_leave)
{
	struct op_pool *p;
	ck_assert_int_eq(op_pool_new(&(struct op_pool_opts){"t-pool", 2, 0, 20}, &p), OP_OK);
	atomic_store(&ran, 0);
	ck_assert_int_eq(op_pool_run(p, count_job, NULL), OP_OK);
	ck_assert(wait_stats(p, 0, 0, 0));
	ck_assert_int_eq(atomic_load(&ran), 1);
	nest_pool = p;
	ck_assert_int_eq(op_pool_run(p, nesting_job, NULL), OP_OK);
	ck_assert(wait_stats(p, 0, 0, 0));
	ck_assert_int_eq(atomic_load(&ran), 2);
	op_pool_free(p);
}
END_TEST

START_TEST(bad_options_and_no_memory)
{
	struct op_pool *p = (struct op_pool *)1;
	ck_assert_int_eq(op_pool_new(&(struct op_pool_opts){"t", 0, 0, 10}, &p), OP_EINVAL);
	ck_assert_ptr_null(p);
	ck_assert_int_eq(op_pool_new(&(struct op_pool_opts){"t", 1, 0, 0}, &p), OP_EINVAL);
	ck_assert_int_eq(op_pool_new(&(struct op_pool_opts){NULL, 1, 0, 10}, &p), OP_EINVAL);
	ck_assert_int_eq(op_pool_new(&(struct op_pool_opts){"t", 1, 0, 10}, &p), OP_OK);
	atomic_store(&ran, 0);
	op_alloc_fail_at(1);
	ck_assert_int_eq(op_pool_run(p, count_job, NULL), OP_ENOMEM);
	op_alloc_fail_at(0);
	/* The job's memory came, the thread's did not: no thread, so no job. */
	op_alloc_fail_at(2);
	ck_assert_int_eq(op_pool_run(p, count_job, NULL), OP_ENOMEM);
	op_alloc_fail_at(0);
	ck_assert(wait_stats(p, 0, 0, 0));
	ck_assert_int_eq(op_pool_run(p, count_job, NULL), OP_OK);
	op_pool_free(p);
	ck_assert_int_eq(atomic_load(&ran), 1);
}
END_TEST

static Suite *pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("pool");
	tcase_add_test(tc, jobs_run_and_free_waits_for_them);
	tcase_add_test(tc, grows_to_the_maximum_then_queues_in_order);
	tcase_add_test(tc, without_a_queue_busy_when_all_run);
	tcase_add_test(tc, idle_threads_leave);
	tcase_add_test(tc, bad_options_and_no_memory);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(pool_suite)
