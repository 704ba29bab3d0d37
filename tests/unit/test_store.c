/*
 * Unit tests of the LMDB store: queue round trips and ordering, group commit,
 * crash recovery in a forked child, corruption and quarantine, map and queue
 * bounds, execution record retention and out-of-memory behaviour. Each test
 * works in its own mkdtemp directory.
 */
#include <dirent.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/clock.h"
#include "agent/core/log.h"
#include "agent/core/uuid.h"
#include "agent/store/store.h"
#include "agent/store/store_int.h"
#include "tests/unit/test.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/op-store-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	op_log_set_level(OP_LOG_ERROR);
}

static void teardown(void)
{
	char p[512];
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(dir);
}

static struct op_store *open_opts(struct op_store_opts *o)
{
	struct op_store *s = NULL;
	char err[256];
	o->dir = dir;
	op_err e = op_store_open(o, &s, err, sizeof(err));
	ck_assert_msg(e == OP_OK, "open: %s (%s)", op_err_name(e), err);
	return s;
}

static struct op_store *open_default(void)
{
	struct op_store_opts o = {0};
	return open_opts(&o);
}

static void enq(struct op_store *s, const char *p, const char *payload, int64_t nb, char *id)
{
	op_err e = op_store_enqueue(s, p, "{\"type\":\"test\"}", payload, strlen(payload), nb, id);
	ck_assert_int_eq(e, OP_OK);
}

static uint64_t depth(struct op_store *s, const char *p)
{
	uint64_t ev;
	op_store_queue_depth(s, p, &ev, NULL);
	return ev;
}

static struct op_store_stats stats(struct op_store *s)
{
	struct op_store_stats st;
	ck_assert_int_eq(op_store_stats(s, &st), OP_OK);
	return st;
}

START_TEST(round_trip)
{
	struct op_store *s = open_default();
	char id[3][OP_UUID_LEN + 1];
	enq(s, "orders", "{\"n\":1}", 0, id[0]);
	enq(s, "orders", "{\"n\":2}", 0, id[1]);
	enq(s, "orders", "{\"n\":3}", 0, id[2]);
	ck_assert_uint_eq(strlen(id[0]), OP_UUID_LEN);
	ck_assert_str_ne(id[0], id[1]);
	ck_assert_uint_eq(depth(s, "orders"), 3);

	struct op_store_event *ev = NULL;
	int64_t now = op_store__now_ms();
	ck_assert_int_eq(op_store_take(s, "orders", now, &ev), OP_OK);
	ck_assert_str_eq(ev->id, id[0]);
	ck_assert_str_eq(ev->payload, "{\"n\":1}");
	ck_assert_uint_eq(ev->payload_len, 7);
	ck_assert_str_eq(ev->trigger, "{\"type\":\"test\"}");
	ck_assert_str_eq(ev->pipeline, "orders");
	ck_assert_uint_eq(ev->attempt, 1);
	ck_assert(!ev->redelivered);
	ck_assert_ptr_null(ev->error);
	ck_assert_int_eq(ev->taken_ms, now);
	ck_assert_uint_eq(depth(s, "orders"), 2);
	ck_assert_uint_eq(stats(s).inflight, 1);

	struct op_store_exec rec = {.pipeline = "orders",
	                            .version = "1.4.0",
	                            .trigger = "http",
	                            .start_ms = now,
	                            .duration_ms = 12,
	                            .status = "success",
	                            .attempt = 1};
	memcpy(rec.event_id, ev->id, sizeof(rec.event_id));
	ck_assert_int_eq(op_store_ack(s, ev->id, &rec), OP_OK);
	ck_assert_int_eq(op_store_ack(s, ev->id, NULL), OP_ENOTFOUND);
	ck_assert_uint_eq(stats(s).inflight, 0);
	op_store_event_free(ev);

	struct op_store_exec **recs;
	size_t n;
	ck_assert_int_eq(op_store_list_execs(s, 10, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(recs[0]->event_id, id[0]);
	ck_assert_str_eq(recs[0]->status, "success");
	ck_assert_str_eq(recs[0]->version, "1.4.0");
	ck_assert_int_eq(recs[0]->duration_ms, 12);
	struct op_store_exec *one;
	ck_assert_int_eq(op_store_get_exec(s, recs[0]->id, &one), OP_OK);
	ck_assert_str_eq(one->pipeline, "orders");
	ck_assert_uint_eq(one->seq, recs[0]->seq);
	op_store_exec_free(one);
	op_store_execs_free(recs, n);

	/* retry: back to the queue, not due before its time, attempt + 1 */
	ck_assert_int_eq(op_store_take(s, "orders", now, &ev), OP_OK);
	ck_assert_str_eq(ev->id, id[1]);
	ck_assert_int_eq(op_store_retry(s, ev->id, now + 60000, "boom", NULL), OP_OK);
	op_store_event_free(ev);
	ck_assert_int_eq(op_store_take(s, "orders", now, &ev), OP_OK);
	ck_assert_str_eq(ev->id, id[2]);
	op_store_event_free(ev);
	ck_assert_int_eq(op_store_take(s, "orders", now, &ev), OP_ENOTFOUND);
	ck_assert_ptr_null(ev);
	ck_assert_int_eq(op_store_take(s, "orders", now + 60000, &ev), OP_OK);
	ck_assert_str_eq(ev->id, id[1]);
	ck_assert_uint_eq(ev->attempt, 2);
	ck_assert_str_eq(ev->error, "boom");

	/* dead letter, list, replay */
	ck_assert_int_eq(op_store_dead(s, ev->id, "fatal", NULL), OP_OK);
	ck_assert_int_eq(op_store_dead(s, ev->id, "fatal", NULL), OP_ENOTFOUND);
	op_store_event_free(ev);
	struct op_store_event **dl;
	ck_assert_int_eq(op_store_list_dead(s, NULL, 10, &dl, &n), OP_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(dl[0]->id, id[1]);
	ck_assert_str_eq(dl[0]->error, "fatal");
	ck_assert_uint_eq(dl[0]->attempt, 2);
	/* Listed without the payload, with its size. */
	ck_assert_ptr_null(dl[0]->payload);
	ck_assert_uint_gt(dl[0]->payload_len, 0);
	struct op_store_event *whole;
	ck_assert_int_eq(op_store_get_dead(s, id[1], &whole), OP_OK);
	ck_assert_uint_eq(whole->payload_len, dl[0]->payload_len);
	ck_assert_ptr_nonnull(whole->payload);
	op_store_event_free(whole);
	op_store_events_free(dl, n);
	ck_assert_int_eq(op_store_list_dead(s, "other", 10, &dl, &n), OP_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_uint_eq(stats(s).dead, 1);
	ck_assert_int_eq(op_store_replay(s, id[1]), OP_OK);
	ck_assert_int_eq(op_store_replay(s, id[1]), OP_ENOTFOUND);
	ck_assert_uint_eq(stats(s).dead, 0);
	ck_assert_int_eq(op_store_take(s, NULL, now, &ev), OP_OK);
	ck_assert_str_eq(ev->id, id[1]);
	ck_assert_uint_eq(ev->attempt, 1);
	ck_assert_ptr_null(ev->error);
	op_store_event_free(ev);
	ck_assert_int_eq(op_store_enqueue(s, "bad\nname", NULL, "", 0, 0, NULL), OP_EINVAL);
	ck_assert_int_eq(op_store_ack(s, "short", NULL), OP_EINVAL);
	op_store_close(s);
}
END_TEST

/* One process owns a store: a second open (as by a second outpostd on the
 * same data_dir) is refused before it touches anything, with the owner's
 * pid; once the owner closes, it opens. */
START_TEST(second_owner_refused)
{
	struct op_store *s = open_default();
	char id[OP_UUID_LEN + 1];
	enq(s, "orders", "{\"n\":1}", 0, id);
	struct op_store_event *ev = NULL;
	ck_assert_int_eq(op_store_take(s, "orders", 0, &ev), OP_OK);

	struct op_store *two = NULL;
	struct op_store_opts o = {.dir = dir};
	char err[256], want[64];
	ck_assert_int_eq(op_store_open(&o, &two, err, sizeof(err)), OP_EBUSY);
	ck_assert_ptr_null(two);
	snprintf(want, sizeof(want), "in use by another process (pid %ld on this host)",
	         (long)getpid());
	ck_assert_msg(strstr(err, want) != NULL, "err: %s", err);
	/* The owner's taken event is still in flight, not requeued. */
	ck_assert_uint_eq(stats(s).inflight, 1);
	ck_assert_uint_eq(depth(s, "orders"), 0);
	op_store_event_free(ev);
	op_store_close(s);

	s = open_default();
	ck_assert_uint_eq(depth(s, "orders"), 1); /* recovered by the new owner */
	op_store_close(s);
}
END_TEST

static atomic_int stall_done;
static void on_stalled_commit(void *ud, op_err rc, const char *id)
{
	(void)ud;
	(void)id;
	atomic_store(&stall_done, rc == OP_OK ? 1 : 2);
}

/* A writer stuck on a batch (a disk that stopped answering: the debug
 * build's fault injection) shows as a growing stall; an idle one as 0. */
START_TEST(stall_is_measured)
{
#ifdef OP_FAULTS
	setenv("OUTPOST_FAULTS", "store-stall=stuck", 1);
	struct op_store *s = open_default();
	char id[OP_UUID_LEN + 1];
	enq(s, "orders", "{}", 0, id);
	ck_assert_int_eq(op_store_stall_ms(s), 0);
	ck_assert_int_eq(op_store_enqueue_cb(s, "stuck", "{}", "{}", 2, 0, on_stalled_commit, NULL),
	                 OP_OK);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do { /* a poll with a deadline */
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (op_store_stall_ms(s) < 50 && t.tv_sec - t0.tv_sec < 10);
	ck_assert_int_ge(op_store_stall_ms(s), 50);
	ck_assert_int_eq(atomic_load(&stall_done), 0);
	op_store_close(s); /* releases the stall; the write is applied */
	ck_assert_int_eq(atomic_load(&stall_done), 1);
	unsetenv("OUTPOST_FAULTS");
#endif
}
END_TEST

/* Callbacks and commits, for callback_does_not_hold_commits. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool gate;       /* the first callback may return */
	size_t in_first; /* 1: the first callback is running */
	int calls[2];    /* which callback ran first, second (1 or 2) */
	size_t ncalls;
	size_t committed; /* requests committed, from the commit hook */
} cb = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void on_commit_count(void *ud, double seconds, size_t requests)
{
	(void)ud;
	(void)seconds;
	pthread_mutex_lock(&cb.mu);
	cb.committed += requests;
	pthread_cond_broadcast(&cb.cv);
	pthread_mutex_unlock(&cb.mu);
}

static void on_enqueued(void *ud, op_err rc, const char *id)
{
	int which = (int)(intptr_t)ud;
	(void)id;
	ck_assert_int_eq(rc, OP_OK);
	pthread_mutex_lock(&cb.mu);
	if (cb.ncalls < 2)
		cb.calls[cb.ncalls] = which;
	cb.ncalls++;
	if (which == 1) {
		cb.in_first = 1;
		pthread_cond_broadcast(&cb.cv);
		while (!cb.gate)
			pthread_cond_wait(&cb.cv, &cb.mu);
	}
	pthread_cond_broadcast(&cb.cv);
	pthread_mutex_unlock(&cb.mu);
}

/* With cb.mu held: waits (at most 10 s) until *v > after; false at the
 * deadline. */
static bool wait_above(const size_t *v, size_t after)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 10;
	int rc = 0;
	while (*v <= after && rc == 0)
		rc = pthread_cond_timedwait(&cb.cv, &cb.mu, &dl);
	return *v > after;
}

/*
 * The writer does not wait for completion callbacks: while the first
 * enqueue's callback is still running, a second enqueue is committed (the
 * commit hook counts it, and it is in the queue). Callbacks still run one at
 * a time, in commit order: the second one waits for the first to return.
 */
START_TEST(callback_does_not_hold_commits)
{
	struct op_store *s = open_default();
	op_store_on_commit(s, on_commit_count, NULL);
	ck_assert_int_eq(op_store_enqueue_cb(s, "orders", NULL, "{}", 2, 0, on_enqueued, (void *)1),
	                 OP_OK);
	pthread_mutex_lock(&cb.mu);
	ck_assert(wait_above(&cb.in_first, 0));
	size_t before = cb.committed;
	pthread_mutex_unlock(&cb.mu);
	ck_assert_int_eq(op_store_enqueue_cb(s, "orders", NULL, "{}", 2, 0, on_enqueued, (void *)2),
	                 OP_OK);
	pthread_mutex_lock(&cb.mu);
	ck_assert(wait_above(&cb.committed, before));
	ck_assert_uint_eq(cb.ncalls, 1); /* the second callback waits its turn */
	pthread_mutex_unlock(&cb.mu);
	ck_assert_uint_eq(depth(s, "orders"), 2);

	pthread_mutex_lock(&cb.mu);
	cb.gate = true;
	pthread_cond_broadcast(&cb.cv);
	ck_assert(wait_above(&cb.ncalls, 1));
	ck_assert_int_eq(cb.calls[0], 1);
	ck_assert_int_eq(cb.calls[1], 2);
	pthread_mutex_unlock(&cb.mu);
	op_store_close(s);
}
END_TEST

/* A synchronous run's record has no event: it is stored and listed all the same. */
START_TEST(record_without_event)
{
	struct op_store_opts o = {0};
	struct op_store *s = open_opts(&o);
	struct op_store_exec rec = {.pipeline = "sync",
	                            .version = "2",
	                            .status = "success",
	                            .attempt = 1,
	                            .duration_ms = 42};
	ck_assert_int_eq(op_store_record(s, &rec), OP_OK);
	struct op_store_exec **recs;
	size_t n;
	ck_assert_int_eq(op_store_list_execs(s, 10, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(recs[0]->pipeline, "sync");
	ck_assert_str_eq(recs[0]->version, "2");
	ck_assert_int_eq(recs[0]->duration_ms, 42);
	ck_assert_str_eq(recs[0]->event_id, "");
	struct op_store_exec *one;
	ck_assert_int_eq(op_store_get_exec(s, recs[0]->id, &one), OP_OK);
	ck_assert_str_eq(one->status, "success");
	op_store_exec_free(one);
	op_store_execs_free(recs, n);
	ck_assert_int_eq(op_store_record(s, NULL), OP_EINVAL);

	/* Without waiting: the record is a copy, stored by the next commit. */
	char err[32];
	snprintf(err, sizeof(err), "%s", "boom");
	struct op_store_exec later = {
	    .pipeline = "sync", .version = "3", .status = "error", .error = err, .attempt = 1};
	ck_assert_int_eq(op_store_record_nowait(s, &later), OP_OK);
	err[0] = 'X'; /* the caller's buffers are free once it returns */
	ck_assert_int_eq(op_store_flush(s), OP_OK);
	ck_assert_int_eq(op_store_list_execs(s, 10, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(recs[0]->version, "3");
	ck_assert_str_eq(recs[0]->error, "boom");
	op_store_execs_free(recs, n);
	op_store_close(s);
}
END_TEST

/* Workers take events in batches and acknowledge without waiting. */
START_TEST(take_many_ack_without_waiting)
{
	struct op_store_opts o = {0};
	struct op_store *s = open_opts(&o);
	for (int i = 0; i < 10; i++)
		enq(s, "batch", "{}", 0, NULL);
	enq(s, "other", "{}", 0, NULL);
	struct op_store_event *evs[16];
	size_t n = 0;
	ck_assert_int_eq(op_store_take_n(s, "batch", 0, evs, 4, &n), OP_OK);
	ck_assert_uint_eq(n, 4);
	ck_assert_int_eq(op_store_take_n(s, "batch", 0, evs + 4, 12, &n), OP_OK);
	ck_assert_uint_eq(n, 6); /* only this pipeline's */
	ck_assert_int_eq(op_store_take_n(s, "batch", 0, evs, 4, &n), OP_ENOTFOUND);
	ck_assert_uint_eq(n, 0);
	ck_assert_uint_eq(depth(s, "batch"), 0);
	ck_assert_uint_eq(depth(s, "other"), 1);
	ck_assert_int_eq(op_store_take_n(s, NULL, 0, evs, 4, &n), OP_EINVAL);
	for (int i = 0; i < 10; i++) {
		struct op_store_exec rec = {.pipeline = "batch", .status = "success", .attempt = 1};
		memcpy(rec.event_id, evs[i]->id, sizeof(rec.event_id));
		ck_assert_int_eq(op_store_ack_nowait(s, evs[i]->id, &rec), OP_OK);
		op_store_event_free(evs[i]);
	}
	ck_assert_int_eq(op_store_flush(s), OP_OK);
	struct op_store_stats st = stats(s);
	ck_assert_uint_eq(st.inflight, 0);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_EXECS], 10);
	op_store_close(s);
}
END_TEST

/* Writes nobody waits for (acknowledgements here) do not ride in the
 * commits of writes somebody waits for: they wait, in order, until their
 * delay is up, 512 of them, a flush or the close. So the lease, record and
 * index pages are written a few times a second, not in every commit. */
START_TEST(unwaited_writes_keep_out_of_waited_commits)
{
	struct op_store *s = open_default();
	op_store__set_detached_delay(s, 3600 * 1000);
	for (int i = 0; i < 4; i++)
		enq(s, "p", "{}", 0, NULL);
	struct op_store_event *evs[4];
	size_t n = 0;
	ck_assert_int_eq(op_store_take_n(s, "p", 0, evs, 4, &n), OP_OK);
	ck_assert_uint_eq(n, 4);
	for (int i = 0; i < 4; i++) {
		struct op_store_exec rec = {.pipeline = "p", .status = "success", .attempt = 1};
		memcpy(rec.event_id, evs[i]->id, sizeof(rec.event_id));
		if (i < 3)
			ck_assert_int_eq(op_store_ack_nowait(s, evs[i]->id, &rec), OP_OK);
	}
	uint64_t txns = stats(s).txns;
	enq(s, "p", "{}", 0, NULL);
	struct op_store_stats st = stats(s);
	ck_assert_uint_eq(st.txns, txns + 1);
	ck_assert_uint_eq(st.queued, 1);
	ck_assert_uint_eq(st.inflight, 4); /* the three acknowledgements still wait */
	ck_assert_uint_eq(st.entries[OP_STORE_DB_EXECS], 0);
	ck_assert_uint_eq(op_store__pending(s), 3);

	ck_assert_int_eq(op_store_flush(s), OP_OK);
	st = stats(s);
	ck_assert_uint_eq(st.inflight, 1);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_EXECS], 3);
	ck_assert_uint_eq(op_store__pending(s), 0);

	/* Alone, they go when their delay is up. */
	op_store__set_detached_delay(s, 1);
	ck_assert_int_eq(op_store_ack_nowait(s, evs[3]->id, NULL), OP_OK);
	int64_t deadline = op_mono_ms() + 10000;
	while (stats(s).inflight != 0 && op_mono_ms() < deadline) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_uint_eq(stats(s).inflight, 0);
	for (int i = 0; i < 4; i++)
		op_store_event_free(evs[i]);
	op_store_close(s);
}
END_TEST

START_TEST(order_by_not_before)
{
	struct op_store *s = open_default();
	char a[OP_UUID_LEN + 1], b[OP_UUID_LEN + 1], c[OP_UUID_LEN + 1], d[OP_UUID_LEN + 1],
	    x[OP_UUID_LEN + 1];
	enq(s, "p", "1", 3000, a);
	enq(s, "p", "2", 1000, b);
	enq(s, "p", "3", 2000, c);
	enq(s, "p", "4", 1000, d);
	enq(s, "q", "5", 1500, x);
	struct op_store_event *ev;
	ck_assert_int_eq(op_store_take(s, "p", 999, &ev), OP_ENOTFOUND);
	ck_assert_int_eq(op_store_take(s, NULL, 999, &ev), OP_ENOTFOUND);
	const char *want_p[] = {b, d, c, a};
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(op_store_take(s, "p", 5000, &ev), OP_OK);
		ck_assert_str_eq(ev->id, want_p[i]);
		op_store_event_free(ev);
	}
	ck_assert_int_eq(op_store_take(s, "p", 5000, &ev), OP_ENOTFOUND);
	ck_assert_uint_eq(depth(s, "q"), 1);
	op_store_close(s);

	/* Across pipelines: the earliest due of all, FIFO among equals. */
	teardown();
	setup();
	s = open_default();
	enq(s, "zeta", "1", 2000, a);
	enq(s, "alpha", "2", 3000, b);
	enq(s, "mid", "3", 1000, c);
	enq(s, "alpha", "4", 1000, d);
	const char *want_any[] = {c, d, a, b};
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(op_store_take(s, NULL, 5000, &ev), OP_OK);
		ck_assert_str_eq(ev->id, want_any[i]);
		op_store_event_free(ev);
	}
	op_store_close(s);
}
END_TEST

struct enq_arg {
	struct op_store *s;
	int i;
	op_err e;
};

static void *enq_thread(void *p)
{
	struct enq_arg *a = p;
	char payload[32];
	snprintf(payload, sizeof(payload), "{\"i\":%d}", a->i);
	a->e = op_store_enqueue(a->s, a->i % 2 ? "odd" : "even", NULL, payload, strlen(payload), 0,
	                        NULL);
	return NULL;
}

/* Waits (up to 5 s) until n requests wait for the held writer; how many do. */
static size_t pending_reaches(struct op_store *s, size_t n)
{
	int64_t deadline = op_mono_ms() + 5000;
	while (op_store__pending(s) < n && op_mono_ms() < deadline)
		sched_yield();
	return op_store__pending(s);
}

START_TEST(group_commit_batches)
{
	enum { N = 16 };
	struct op_store *s = open_default();
	pthread_t th[N];
	struct enq_arg args[N];
	uint64_t before = stats(s).txns;
	/* Hold the writer until all N requests wait, so the batch is certain. */
	op_store__hold(s, true);
	for (int i = 0; i < N; i++) {
		args[i] = (struct enq_arg){s, i, OP_EINTERNAL};
		ck_assert_int_eq(pthread_create(&th[i], NULL, enq_thread, &args[i]), 0);
	}
	ck_assert_uint_eq(pending_reaches(s, N), N);
	op_store__hold(s, false);
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(args[i].e, OP_OK);
	}
	struct op_store_stats st = stats(s);
	ck_assert_uint_eq(st.txns - before, 1);
	ck_assert_uint_lt(st.txns - before, N);
	ck_assert_uint_eq(depth(s, "odd") + depth(s, "even"), N);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_QUEUE], N);

	/* Free-running: 2 rounds of N concurrent enqueues need fewer than 2N commits. */
	before = st.txns;
	for (int r = 0; r < 2; r++) {
		for (int i = 0; i < N; i++) {
			args[i] = (struct enq_arg){s, i, OP_EINTERNAL};
			ck_assert_int_eq(pthread_create(&th[i], NULL, enq_thread, &args[i]), 0);
		}
		for (int i = 0; i < N; i++) {
			pthread_join(th[i], NULL);
			ck_assert_int_eq(args[i].e, OP_OK);
		}
	}
	ck_assert_uint_le(stats(s).txns - before, 2 * N);
	ck_assert_uint_eq(stats(s).entries[OP_STORE_DB_QUEUE], 3 * N);
	op_store_close(s);
}
END_TEST

/* One failing request in a batch does not fail the others. */
START_TEST(batch_isolates_failures)
{
	struct op_store_opts o = {.queue_max_events = 3};
	struct op_store *s = open_opts(&o);
	enum { N = 6 };
	pthread_t th[N];
	struct enq_arg args[N];
	op_store__hold(s, true);
	for (int i = 0; i < N; i++) {
		args[i] = (struct enq_arg){s, 2 * i, OP_EINTERNAL}; /* all "even" */
		ck_assert_int_eq(pthread_create(&th[i], NULL, enq_thread, &args[i]), 0);
	}
	(void)pending_reaches(s, N);
	op_store__hold(s, false);
	int ok = 0, full = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		ok += args[i].e == OP_OK;
		full += args[i].e == OP_EFULL;
	}
	ck_assert_int_eq(ok, 3);
	ck_assert_int_eq(full, 3);
	ck_assert_uint_eq(depth(s, "even"), 3);
	ck_assert_uint_eq(stats(s).full, 3);
	op_store_close(s);
	s = open_opts(&o);
	ck_assert_uint_eq(depth(s, "even"), 3);
	op_store_close(s);
}
END_TEST

struct put_arg {
	struct op_store *s;
	size_t len;
	op_err e;
};

static void *put_thread(void *p)
{
	struct put_arg *a = p;
	char *v = op_calloc(1, a->len);
	a->e = v ? op_store_put(a->s, OP_STORE_STATE, a->len > 1000 ? "huge" : "small", v, a->len)
	         : OP_ENOMEM;
	op_free(v);
	return NULL;
}

struct ack_arg {
	struct op_store *s;
	const char *id;
	const struct op_store_exec *rec;
	op_err e;
};

static void *ack_thread(void *p)
{
	struct ack_arg *a = p;
	a->e = op_store_ack(a->s, a->id, a->rec);
	return NULL;
}

/*
 * A request that fails after it wrote (an ack whose record id is taken: the
 * lease was deleted first) undoes its own writes only, and the rest of its
 * batch commits once: the batch first runs in one transaction, then, since
 * one request failed, each in its own.
 */
START_TEST(failed_request_undone_alone)
{
	struct op_store *s = open_default();
	char id[OP_UUID_LEN + 1];
	enq(s, "p", "{}", 0, id);
	struct op_store_event *ev;
	ck_assert_int_eq(op_store_take(s, "p", 0, &ev), OP_OK);
	struct op_store_exec rec = {
	    .pipeline = "p", .version = "1", .status = "success", .attempt = 1};
	ck_assert_int_eq(op_uuid_v7(rec.id), OP_OK);
	ck_assert_int_eq(op_store_record(s, &rec), OP_OK);

	enum { N = 4 };
	pthread_t th[N], ah;
	struct enq_arg args[N];
	struct ack_arg aa = {s, ev->id, &rec, OP_EINTERNAL};
	uint64_t before = stats(s).txns;
	op_store__hold(s, true);
	for (int i = 0; i < N; i++) {
		args[i] = (struct enq_arg){s, i, OP_EINTERNAL};
		ck_assert_int_eq(pthread_create(&th[i], NULL, enq_thread, &args[i]), 0);
		if (i == 1)
			ck_assert_int_eq(pthread_create(&ah, NULL, ack_thread, &aa), 0);
	}
	ck_assert_uint_eq(pending_reaches(s, N + 1), N + 1);
	op_store__hold(s, false);
	pthread_join(ah, NULL);
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(args[i].e, OP_OK);
	}
	ck_assert_int_eq(aa.e, OP_EINVAL);
	struct op_store_stats st = stats(s);
	ck_assert_uint_eq(st.txns - before, 1);
	ck_assert_uint_eq(st.inflight, 1);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_INFLIGHT], 1);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_QUEUE], N);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_EXECS], 1);
	ck_assert_uint_eq(depth(s, "odd") + depth(s, "even"), N);
	op_store_close(s);
	/* The lease is whole: after the restart its event runs again. */
	s = open_default();
	ck_assert_uint_eq(depth(s, "odd") + depth(s, "even"), N);
	struct op_store_event *again;
	ck_assert_int_eq(op_store_take(s, "p", 0, &again), OP_OK);
	ck_assert_str_eq(again->id, ev->id);
	ck_assert(again->redelivered);
	op_store_event_free(again);
	op_store_event_free(ev);
	op_store_close(s);
}
END_TEST

/* A request that does not fit the map fails alone; its batch commits. */
START_TEST(batch_isolates_map_full)
{
	struct op_store_opts o = {.map_initial = 128 * 1024, .map_max = 512 * 1024};
	struct op_store *s = open_opts(&o);
	enum { N = 4 };
	pthread_t th[N], ph;
	struct enq_arg args[N];
	struct put_arg pa = {s, 1 << 20, OP_EINTERNAL};
	op_store__hold(s, true);
	for (int i = 0; i < N; i++) {
		args[i] = (struct enq_arg){s, i, OP_EINTERNAL};
		ck_assert_int_eq(pthread_create(&th[i], NULL, enq_thread, &args[i]), 0);
	}
	ck_assert_int_eq(pthread_create(&ph, NULL, put_thread, &pa), 0);
	ck_assert_uint_eq(pending_reaches(s, N + 1), N + 1);
	uint64_t before = stats(s).txns;
	op_store__hold(s, false);
	pthread_join(ph, NULL);
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(args[i].e, OP_OK);
	}
	ck_assert_int_eq(pa.e, OP_EFULL);
	struct op_store_stats st = stats(s);
	ck_assert_uint_eq(st.txns - before, 1);
	ck_assert_uint_eq(st.map_size, 512 * 1024);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_QUEUE], N);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_STATE], 0);
	op_store_close(s);
	s = open_opts(&o);
	ck_assert_uint_eq(depth(s, "odd") + depth(s, "even"), N);
	op_store_close(s);
}
END_TEST

START_TEST(crash_recovery)
{
	char taken[3][OP_UUID_LEN + 1];
	int fds[2];
	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct op_store_opts o = {.dir = dir};
		struct op_store *s;
		struct op_store_event *ev;
		char err[128];
		if (op_store_open(&o, &s, err, sizeof(err)) != OP_OK)
			_exit(2);
		for (int i = 0; i < 10; i++) {
			char p[16];
			snprintf(p, sizeof(p), "%d", i);
			if (op_store_enqueue(s, "crash", NULL, p, strlen(p), 0, NULL) != OP_OK)
				_exit(3);
		}
		/* The first goes through a retry so its attempt is 2 at the crash. */
		if (op_store_take(s, "crash", 1, &ev) != OP_OK ||
		    op_store_retry(s, ev->id, 0, "x", NULL) != OP_OK)
			_exit(4);
		op_store_event_free(ev);
		for (int i = 0; i < 3; i++) {
			if (op_store_take(s, "crash", 1, &ev) != OP_OK)
				_exit(5);
			if (write(fds[1], ev->id, OP_UUID_LEN + 1) != OP_UUID_LEN + 1)
				_exit(6);
		}
		_exit(0); /* no close: the store sees a crash */
	}
	close(fds[1]);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(read(fds[0], taken[i], OP_UUID_LEN + 1), OP_UUID_LEN + 1);
	close(fds[0]);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	struct op_store *s = open_default();
	ck_assert_uint_eq(depth(s, "crash"), 10);
	ck_assert_uint_eq(stats(s).inflight, 0);
	ck_assert_uint_eq(stats(s).entries[OP_STORE_DB_INFLIGHT], 0);
	int found = 0;
	struct op_store_event *ev;
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(op_store_take(s, "crash", 1, &ev), OP_OK);
		for (int j = 0; j < 3; j++) {
			if (strcmp(ev->id, taken[j]) == 0) {
				found++;
				ck_assert(ev->redelivered);
				/* The attempt the crash cut short counts: taken[0] was
				 * the retried one, at attempt 2. */
				ck_assert_uint_eq(ev->attempt, j == 0 ? 3 : 2);
				ck_assert_ptr_nonnull(ev->error);
				ck_assert_str_eq(ev->error,
				                 j == 0 ? "AGENT_STOPPED: the agent stopped "
				                          "(crash, kill or power loss) during "
				                          "attempt 2"
				                        : "AGENT_STOPPED: the agent stopped "
				                          "(crash, kill or power loss) during "
				                          "attempt 1");
			}
		}
		op_store_event_free(ev);
	}
	ck_assert_int_eq(found, 3);
	ck_assert_int_eq(op_store_take(s, "crash", 1, &ev), OP_ENOTFOUND);
	op_store_close(s);
}
END_TEST

/* Opens the store's environment bare (flags: 0 or MDB_RDONLY) and begins a
 * transaction on it: db's handle; *env and *t to commit or abort and close. */
static MDB_dbi raw_begin(const char *db, unsigned flags, MDB_env **env, MDB_txn **t)
{
	MDB_dbi dbi;
	ck_assert_int_eq(mdb_env_create(env), 0);
	mdb_env_set_maxdbs(*env, 16);
	ck_assert_int_eq(mdb_env_open(*env, dir, flags, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(*env, NULL, flags, t), 0);
	ck_assert_int_eq(mdb_dbi_open(*t, db, 0, &dbi), 0);
	return dbi;
}

/* Flips one byte of the n-th value of db through a raw LMDB write. */
static void corrupt_nth(const char *db, int nth)
{
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi dbi = raw_begin(db, 0, &env, &t);
	MDB_cursor *c;
	MDB_val k, v;
	ck_assert_int_eq(mdb_cursor_open(t, dbi, &c), 0);
	ck_assert_int_eq(mdb_cursor_get(c, &k, &v, MDB_FIRST), 0);
	for (int i = 0; i < nth; i++)
		ck_assert_int_eq(mdb_cursor_get(c, &k, &v, MDB_NEXT), 0);
	uint8_t buf[4096];
	ck_assert_uint_le(v.mv_size, sizeof(buf));
	memcpy(buf, v.mv_data, v.mv_size);
	buf[v.mv_size - 2] ^= 0x20;
	MDB_val nv = {v.mv_size, buf};
	ck_assert_int_eq(mdb_cursor_put(c, &k, &nv, MDB_CURRENT), 0);
	mdb_cursor_close(c);
	ck_assert_int_eq(mdb_txn_commit(t), 0);
	mdb_env_close(env);
}

/* How full the leaf pages of db are: the bytes its records take (node
 * header, key, value, slot) over the leaf pages' room. */
static double leaf_fill(const char *db, size_t *entries)
{
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi dbi = raw_begin(db, MDB_RDONLY, &env, &t);
	MDB_cursor *c;
	MDB_val k, v;
	MDB_stat st;
	ck_assert_int_eq(mdb_stat(t, dbi, &st), 0);
	ck_assert_int_eq(mdb_cursor_open(t, dbi, &c), 0);
	size_t used = 0;
	for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
		used += 8 + k.mv_size + v.mv_size + 2;
	mdb_cursor_close(c);
	mdb_txn_abort(t);
	mdb_env_close(env);
	*entries = st.ms_entries;
	return st.ms_leaf_pages ? (double)used / ((double)st.ms_leaf_pages * (st.ms_psize - 16))
	                        : 0;
}

/*
 * Records whose keys only grow (queue keys of one pipeline, in-flight ids)
 * fill their pages: put with MDB_APPEND, a split starts a new page instead
 * of sharing the last one's records out, which left these pages (a few
 * large records each) a fifth to a third empty and commits writing more.
 */
START_TEST(growing_keys_fill_their_pages)
{
	enum { N = 300 };
	char payload[501];
	memset(payload, 'x', 500);
	payload[0] = '"';
	payload[499] = '"';
	payload[500] = '\0';
	struct op_store *s = open_default();
	char id[OP_UUID_LEN + 1];
	for (int i = 0; i < N; i++)
		enq(s, "fill", payload, 0, id);
	op_store_close(s);
	size_t n;
	double fill = leaf_fill("queue", &n);
	ck_assert_uint_eq(n, N);
	ck_assert_msg(fill > 0.9, "queue pages %.2f full", fill); /* 0.82 split */

	s = open_default();
	for (size_t got = 0; got < N;) {
		struct op_store_event *evs[64];
		size_t k;
		ck_assert_int_eq(op_store_take_n(s, "fill", 0, evs, 64, &k), OP_OK);
		for (size_t i = 0; i < k; i++) {
			struct op_store_exec rec = {.pipeline = "fill", .status = "success"};
			memcpy(rec.event_id, evs[i]->id, sizeof(rec.event_id));
			if (i % 2 == 0)
				ck_assert_int_eq(op_store_ack_nowait(s, evs[i]->id, &rec), OP_OK);
			op_store_event_free(evs[i]);
		}
		got += k;
	}
	op_store_close(s);
	fill = leaf_fill("inflight", &n);
	ck_assert_uint_eq(n, N / 2);
	/* Every other lease ended: under half the room of pages that were
	 * full (0.33 when each split left 2/3 of a page). */
	ck_assert_msg(fill > 0.38, "inflight pages %.2f full", fill);
}
END_TEST

START_TEST(corrupt_queue_record_quarantined)
{
	struct op_store *s = open_default();
	char id[3][OP_UUID_LEN + 1];
	for (int i = 0; i < 3; i++)
		enq(s, "c", "{\"payload\":true}", 0, id[i]);
	op_store_close(s);
	corrupt_nth("queue", 1);
	s = open_default();
	struct op_store_stats st = stats(s);
	ck_assert_uint_eq(st.quarantined, 1); /* moved by open's check of the queue */
	ck_assert_uint_eq(st.entries[OP_STORE_DB_QUARANTINE], 1);
	ck_assert_uint_eq(depth(s, "c"), 2);
	struct op_store_event *ev;
	ck_assert_int_eq(op_store_take(s, "c", 1, &ev), OP_OK);
	ck_assert_str_eq(ev->id, id[0]);
	op_store_event_free(ev);
	ck_assert_int_eq(op_store_take(s, "c", 1, &ev), OP_OK);
	ck_assert_str_eq(ev->id, id[2]);
	op_store_event_free(ev);
	ck_assert_int_eq(op_store_take(s, "c", 1, &ev), OP_ENOTFOUND);
	op_store_close(s);
}
END_TEST

/* Corrupted while the store is open (by another process): take skips it. */
START_TEST(corrupt_record_found_by_take)
{
	struct op_store *s = open_default();
	char id[3][OP_UUID_LEN + 1];
	for (int i = 0; i < 3; i++)
		enq(s, "t", "{\"payload\":true}", 0, id[i]);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		corrupt_nth("queue", 1);
		_exit(0);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	struct op_store_event *ev;
	ck_assert_int_eq(op_store_take(s, NULL, 1, &ev), OP_OK);
	ck_assert_str_eq(ev->id, id[0]);
	op_store_event_free(ev);
	ck_assert_int_eq(op_store_take(s, NULL, 1, &ev), OP_OK);
	ck_assert_str_eq(ev->id, id[2]);
	op_store_event_free(ev);
	ck_assert_int_eq(op_store_take(s, NULL, 1, &ev), OP_ENOTFOUND);
	struct op_store_stats sst = stats(s);
	ck_assert_uint_eq(sst.quarantined, 1);
	ck_assert_uint_eq(sst.entries[OP_STORE_DB_QUARANTINE], 1);
	ck_assert_uint_eq(depth(s, "t"), 0);
	ck_assert_uint_eq(sst.inflight, 2);
	op_store_close(s);
}
END_TEST

START_TEST(corrupt_exec_record_quarantined_on_read)
{
	struct op_store *s = open_default();
	struct op_store_event *ev;
	for (int i = 0; i < 3; i++) {
		char id[OP_UUID_LEN + 1];
		enq(s, "c", "{}", 0, id);
		ck_assert_int_eq(op_store_take(s, "c", 1, &ev), OP_OK);
		struct op_store_exec rec = {.pipeline = "c", .status = "success", .attempt = 1};
		memcpy(rec.event_id, id, sizeof(id));
		ck_assert_int_eq(op_store_ack(s, ev->id, &rec), OP_OK);
		op_store_event_free(ev);
	}
	op_store_close(s);
	corrupt_nth("execs", 1);
	s = open_default();
	struct op_store_exec **recs;
	size_t n;
	ck_assert_int_eq(op_store_list_execs(s, 10, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_gt(recs[0]->seq, recs[1]->seq);
	op_store_execs_free(recs, n);
	struct op_store_stats st = stats(s);
	ck_assert_uint_eq(st.quarantined, 1);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_EXECS], 2);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_QUARANTINE], 1);
	/* the store keeps working */
	enq(s, "c", "{}", 0, NULL);
	ck_assert_int_eq(op_store_list_execs(s, 10, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 2);
	op_store_execs_free(recs, n);
	op_store_close(s);
}
END_TEST

START_TEST(corrupt_state_value)
{
	struct op_store *s = open_default();
	ck_assert_int_eq(op_store_put(s, OP_STORE_STATE, "a", "one", 3), OP_OK);
	ck_assert_int_eq(op_store_put(s, OP_STORE_STATE, "b", "two", 3), OP_OK);
	op_store_close(s);
	corrupt_nth("state", 0);
	s = open_default();
	char *v;
	size_t len;
	ck_assert_int_eq(op_store_get(s, OP_STORE_STATE, "a", &v, &len), OP_ECORRUPT);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(op_store_get(s, OP_STORE_STATE, "a", &v, &len), OP_ENOTFOUND);
	ck_assert_int_eq(op_store_get(s, OP_STORE_STATE, "b", &v, &len), OP_OK);
	ck_assert_str_eq(v, "two");
	op_free(v);
	ck_assert_uint_eq(stats(s).quarantined, 1);
	op_store_close(s);
}
END_TEST

START_TEST(map_full_keeps_committed)
{
	struct op_store_opts o = {.map_initial = 128 * 1024,
	                          .map_max = 512 * 1024,
	                          .queue_max_events = 1000000,
	                          .queue_max_bytes = 1 << 30};
	struct op_store *s = open_opts(&o);
	char payload[2000];
	memset(payload, 'x', sizeof(payload));
	payload[0] = '"';
	payload[sizeof(payload) - 1] = '"';
	static char ids[2000][OP_UUID_LEN + 1];
	int n = 0;
	op_err e = OP_OK;
	/* One value bigger than the largest map: LMDB's MDB_MAP_FULL, after growing. */
	char *huge = op_calloc(1, 1 << 20);
	ck_assert_ptr_nonnull(huge);
	ck_assert_int_eq(op_store_put(s, OP_STORE_STATE, "huge", huge, 1 << 20), OP_EFULL);
	op_free(huge);
	ck_assert_uint_eq(stats(s).map_size, 512 * 1024);
	ck_assert_int_eq(op_store_put(s, OP_STORE_STATE, "small", "1", 1), OP_OK);
	while (n < 2000) {
		e = op_store_enqueue(s, "full", NULL, payload, sizeof(payload), 0, ids[n]);
		if (e)
			break;
		n++;
	}
	ck_assert_int_eq(e, OP_EFULL);
	ck_assert_int_gt(n, 50);
	struct op_store_stats st = stats(s);
	ck_assert_uint_gt(st.map_grows, 0);
	ck_assert_uint_eq(st.map_size, 512 * 1024);
	ck_assert_uint_ge(st.full, 1);
	/* Draining still works at the limit. */
	struct op_store_event *ev;
	ck_assert_int_eq(op_store_take(s, "full", 1, &ev), OP_OK);
	ck_assert_str_eq(ev->id, ids[0]);
	ck_assert_int_eq(op_store_ack(s, ev->id, NULL), OP_OK);
	op_store_event_free(ev);
	op_store_close(s);

	s = open_opts(&o);
	ck_assert_uint_eq(depth(s, "full"), (uint64_t)n - 1);
	for (int i = 1; i < n; i++) {
		ck_assert_int_eq(op_store_take(s, "full", 1, &ev), OP_OK);
		ck_assert_str_eq(ev->id, ids[i]);
		ck_assert_uint_eq(ev->payload_len, sizeof(payload));
		op_store_event_free(ev);
	}
	op_store_close(s);
}
END_TEST

START_TEST(queue_bound)
{
	struct op_store_opts o = {.queue_max_events = 3, .queue_max_bytes = 100000};
	struct op_store *s = open_opts(&o);
	for (int i = 0; i < 3; i++)
		enq(s, "b", "{}", 0, NULL);
	ck_assert_int_eq(op_store_enqueue(s, "b", NULL, "{}", 2, 0, NULL), OP_EFULL);
	enq(s, "other", "{}", 0, NULL); /* per pipeline */
	struct op_store_event *ev;
	ck_assert_int_eq(op_store_take(s, "b", 1, &ev), OP_OK);
	enq(s, "b", "{}", 0, NULL);
	/* a retry is not refused: the event was accepted already */
	ck_assert_int_eq(op_store_retry(s, ev->id, 0, NULL, NULL), OP_OK);
	ck_assert_uint_eq(depth(s, "b"), 4);
	op_store_event_free(ev);
	op_store_close(s);

	struct op_store_opts ob = {.queue_max_events = 100, .queue_max_bytes = 1000};
	s = open_opts(&ob);
	char big[400];
	memset(big, 'a', sizeof(big));
	ck_assert_int_eq(op_store_enqueue(s, "bytes", NULL, big, sizeof(big), 0, NULL), OP_OK);
	ck_assert_int_eq(op_store_enqueue(s, "bytes", NULL, big, sizeof(big), 0, NULL), OP_EFULL);
	ck_assert_int_eq(op_store_enqueue(s, "bytes", NULL, big, 2000, 0, NULL), OP_ELIMIT);
	op_store_close(s);
}
END_TEST

START_TEST(exec_retention)
{
	struct op_store_opts o = {.exec_retention = 5};
	struct op_store *s = open_opts(&o);
	char first[OP_UUID_LEN + 1] = "";
	for (int i = 0; i < 8; i++) {
		struct op_store_event *ev;
		enq(s, "r", "{}", 0, NULL);
		ck_assert_int_eq(op_store_take(s, "r", 1, &ev), OP_OK);
		struct op_store_exec rec = {.pipeline = "r", .status = "success", .attempt = 1};
		ck_assert_int_eq(op_uuid_v4(rec.id), OP_OK);
		rec.duration_ms = i;
		if (i == 0)
			memcpy(first, rec.id, sizeof(first));
		ck_assert_int_eq(op_store_ack(s, ev->id, &rec), OP_OK);
		op_store_event_free(ev);
	}
	struct op_store_exec **recs;
	size_t n;
	ck_assert_int_eq(op_store_list_execs(s, 100, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 5);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(recs[i]->duration_ms, 7 - (int64_t)i);
	op_store_execs_free(recs, n);
	ck_assert_int_eq(op_store_list_execs(s, 2, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(recs[0]->duration_ms, 7);
	op_store_execs_free(recs, n);
	struct op_store_exec *one;
	ck_assert_int_eq(op_store_get_exec(s, first, &one), OP_ENOTFOUND);
	struct op_store_stats st = stats(s);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_EXECS], 5);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_EXECIDX], 5);
	op_store_close(s);
}
END_TEST

/* Past a larger bound the oldest go in one batch, down to the bound less a
 * 32nd of it, so the count never passes the bound and the first pages are
 * rewritten once a batch; OP_STORE_KEEP_NONE keeps none. */
static void run_one(struct op_store *s, int i)
{
	struct op_store_event *ev;
	enq(s, "r", "{}", 0, NULL);
	ck_assert_int_eq(op_store_take(s, "r", 1, &ev), OP_OK);
	struct op_store_exec rec = {.pipeline = "r", .status = "success", .attempt = 1};
	rec.duration_ms = i;
	ck_assert_int_eq(op_store_ack(s, ev->id, &rec), OP_OK);
	op_store_event_free(ev);
}

START_TEST(exec_retention_in_batches)
{
	struct op_store_opts o = {.exec_retention = 64};
	struct op_store *s = open_opts(&o);
	int i = 0;
	for (; i < 64; i++)
		run_one(s, i);
	ck_assert_uint_eq(stats(s).entries[OP_STORE_DB_EXECS], 64);
	run_one(s, i++); /* 65 > 64: down to 64 - 2 */
	struct op_store_stats st = stats(s);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_EXECS], 62);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_EXECIDX], 62);
	struct op_store_exec **recs;
	size_t n;
	ck_assert_int_eq(op_store_list_execs(s, 100, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 62);
	ck_assert_int_eq(recs[0]->duration_ms, 64);
	ck_assert_int_eq(recs[n - 1]->duration_ms, 3);
	op_store_execs_free(recs, n);
	for (; i < 67; i++)
		run_one(s, i);
	ck_assert_uint_eq(stats(s).entries[OP_STORE_DB_EXECS], 64);
	run_one(s, i++);
	ck_assert_uint_eq(stats(s).entries[OP_STORE_DB_EXECS], 62);
	op_store_close(s);

	o = (struct op_store_opts){.exec_retention = OP_STORE_KEEP_NONE};
	s = open_opts(&o);
	for (i = 0; i < 3; i++)
		run_one(s, i);
	st = stats(s);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_EXECS], 0);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_EXECIDX], 0);
	ck_assert_uint_eq(st.entries[OP_STORE_DB_INFLIGHT], 0);
	op_store_close(s);
}
END_TEST

/* Release puts a taken event back as it was: its attempt, and its mark
 * when it came back from a crash. */
START_TEST(release_keeps_the_event_as_it_was)
{
	struct op_store *s = open_default();
	enq(s, "r", "{}", 0, NULL);
	struct op_store_event *ev;
	ck_assert_int_eq(op_store_take(s, "r", 1, &ev), OP_OK);
	ck_assert_int_eq(op_store_release(s, ev->id), OP_OK);
	ck_assert_int_eq(op_store_release(s, ev->id), OP_ENOTFOUND);
	op_store_event_free(ev);
	ck_assert_int_eq(op_store_take(s, "r", 1, &ev), OP_OK);
	ck_assert_uint_eq(ev->attempt, 1);
	ck_assert(!ev->redelivered);
	ck_assert_ptr_null(ev->error);
	op_store_event_free(ev);
	op_store_close(s); /* in flight: the next open puts it back as after a crash */

	s = open_default();
	ck_assert_int_eq(op_store_take(s, "r", 1, &ev), OP_OK);
	ck_assert(ev->redelivered);
	ck_assert_uint_eq(ev->attempt, 2);
	ck_assert_int_eq(op_store_release(s, ev->id), OP_OK);
	op_store_event_free(ev);
	ck_assert_uint_eq(stats(s).inflight, 0);
	ck_assert_int_eq(op_store_take(s, "r", 1, &ev), OP_OK);
	ck_assert(ev->redelivered);
	ck_assert_uint_eq(ev->attempt, 2);
	ck_assert_ptr_nonnull(strstr(ev->error, "AGENT_STOPPED"));
	op_store_event_free(ev);
	op_store_close(s);
}
END_TEST

START_TEST(kv_tables)
{
	struct op_store *s = open_default();
	const char *doc = "{\"name\":\"orders\",\"steps\":[]}";
	ck_assert_int_eq(op_store_put(s, OP_STORE_PIPELINES, "orders", doc, strlen(doc)), OP_OK);
	ck_assert_int_eq(op_store_put(s, OP_STORE_PIPELINES, "billing", "{}", 2), OP_OK);
	ck_assert_int_eq(op_store_put(s, OP_STORE_STATE, "orders", "x", 1), OP_OK);
	char *v;
	size_t len;
	ck_assert_int_eq(op_store_get(s, OP_STORE_PIPELINES, "orders", &v, &len), OP_OK);
	ck_assert_str_eq(v, doc);
	ck_assert_uint_eq(len, strlen(doc));
	op_free(v);
	char **keys;
	size_t n;
	ck_assert_int_eq(op_store_list(s, OP_STORE_PIPELINES, &keys, &n), OP_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(keys[0], "billing");
	ck_assert_str_eq(keys[1], "orders");
	op_store_keys_free(keys, n);
	ck_assert_int_eq(op_store_del(s, OP_STORE_PIPELINES, "orders"), OP_OK);
	ck_assert_int_eq(op_store_del(s, OP_STORE_PIPELINES, "orders"), OP_ENOTFOUND);
	ck_assert_int_eq(op_store_get(s, OP_STORE_PIPELINES, "orders", &v, &len), OP_ENOTFOUND);
	ck_assert_int_eq(op_store_get(s, OP_STORE_STATE, "orders", &v, &len), OP_OK);
	ck_assert_str_eq(v, "x");
	op_free(v);
	op_store_close(s);
	s = open_default();
	ck_assert_int_eq(op_store_get(s, OP_STORE_PIPELINES, "billing", &v, &len), OP_OK);
	op_free(v);
	op_store_close(s);
}
END_TEST

START_TEST(newer_format_refused)
{
	struct op_store *s = open_default();
	op_store_close(s);
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi dbi = raw_begin("meta", 0, &env, &t);
	uint8_t buf[OP_STORE__HDR + 8];
	MDB_val k = {6, "format"}, v = {sizeof(buf), buf};
	op_store__put_u64be(buf + OP_STORE__HDR, 99);
	op_store__seal(buf, &k, OP_STORE__K_META, 8);
	ck_assert_int_eq(mdb_put(t, dbi, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(t), 0);
	mdb_env_close(env);
	struct op_store_opts o = {.dir = dir};
	char err[256];
	ck_assert_int_eq(op_store_open(&o, &s, err, sizeof(err)), OP_EUNSUPPORTED);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, "format 99"));
}
END_TEST

START_TEST(out_of_memory)
{
	struct op_store *s = open_default();
	for (int i = 0; i < 3; i++)
		enq(s, "m", "{\"a\":1}", 0, NULL);
	/* Every allocation point of take and ack fails once in turn. */
	int oks = 0;
	for (uint64_t n = 1; n < 30; n++) {
		struct op_store_event *ev = NULL;
		op_alloc_fail_at(n);
		op_err e = op_store_take(s, "m", 1, &ev);
		op_alloc_fail_at(0);
		ck_assert_msg(e == OP_OK || e == OP_ENOMEM, "take: %s", op_err_name(e));
		if (e == OP_OK) {
			oks++;
			ck_assert_int_eq(op_store_retry(s, ev->id, 0, NULL, NULL), OP_OK);
			op_store_event_free(ev);
		} else {
			ck_assert_ptr_null(ev);
		}
		struct op_store_stats st = stats(s);
		ck_assert_uint_eq(st.queued, 3);
		ck_assert_uint_eq(st.entries[OP_STORE_DB_QUEUE], 3);
		ck_assert_uint_eq(st.inflight, 0);
	}
	ck_assert_int_gt(oks, 0);
	for (uint64_t n = 1; n < 20; n++) {
		struct op_store_event **dl;
		struct op_store_exec **recs;
		size_t cnt;
		op_alloc_fail_at(n);
		op_err e1 = op_store_list_dead(s, NULL, 10, &dl, &cnt);
		op_alloc_fail_at(0);
		if (e1 == OP_OK)
			op_store_events_free(dl, cnt);
		op_alloc_fail_at(n);
		op_err e2 = op_store_list_execs(s, 10, &recs, &cnt);
		op_alloc_fail_at(0);
		if (e2 == OP_OK)
			op_store_execs_free(recs, cnt);
		ck_assert(e1 == OP_OK || e1 == OP_ENOMEM);
		ck_assert(e2 == OP_OK || e2 == OP_ENOMEM);
	}
	op_store_close(s);
	/* open itself */
	for (uint64_t n = 1; n < 12; n++) {
		struct op_store_opts o = {.dir = dir};
		op_alloc_fail_at(n);
		op_err e = op_store_open(&o, &s, NULL, 0);
		op_alloc_fail_at(0);
		ck_assert_msg(e == OP_OK || e == OP_ENOMEM, "open: %s", op_err_name(e));
		if (e == OP_OK)
			op_store_close(s);
	}
	s = open_default();
	ck_assert_uint_eq(depth(s, "m"), 3);
	op_store_close(s);
}
END_TEST

struct rd_arg {
	struct op_store *s;
	atomic_int *stop;
	int reads;
};

static void *reader_thread(void *p)
{
	struct rd_arg *a = p;
	while (!atomic_load(a->stop)) {
		struct op_store_stats st;
		struct op_store_event **dl;
		size_t n;
		if (op_store_stats(a->s, &st) == OP_OK)
			a->reads++;
		if (op_store_list_dead(a->s, NULL, 5, &dl, &n) == OP_OK)
			op_store_events_free(dl, n);
	}
	return NULL;
}

struct big_arg {
	struct op_store *s;
	int count;
	op_err e;
};

static void *big_writer(void *p)
{
	struct big_arg *a = p;
	char payload[3000];
	memset(payload, 'y', sizeof(payload));
	for (int i = 0; i < a->count && a->e == OP_OK; i++)
		a->e = op_store_enqueue(a->s, "grow", NULL, payload, sizeof(payload), 0, NULL);
	return NULL;
}

/* The map grows under concurrent readers and writers. */
START_TEST(map_grows_under_readers)
{
	struct op_store_opts o = {.map_initial = 64 * 1024, .map_max = 64 << 20};
	struct op_store *s = open_opts(&o);
	atomic_int stop = 0;
	pthread_t rt[2], wt[4];
	struct rd_arg ra[2];
	struct big_arg wa[4];
	for (int i = 0; i < 2; i++) {
		ra[i] = (struct rd_arg){s, &stop, 0};
		pthread_create(&rt[i], NULL, reader_thread, &ra[i]);
	}
	for (int i = 0; i < 4; i++) {
		wa[i] = (struct big_arg){s, 100, OP_OK};
		pthread_create(&wt[i], NULL, big_writer, &wa[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(wt[i], NULL);
		ck_assert_int_eq(wa[i].e, OP_OK);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(rt[i], NULL);
	struct op_store_stats st = stats(s);
	ck_assert_uint_gt(st.map_grows, 0);
	ck_assert_uint_gt(st.map_size, 64 * 1024);
	ck_assert_uint_eq(depth(s, "grow"), 400);
	op_store_close(s);
}
END_TEST

static Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, second_owner_refused);
	tcase_add_test(tc, stall_is_measured);
	tcase_add_test(tc, callback_does_not_hold_commits);
	tcase_add_test(tc, growing_keys_fill_their_pages);
	tcase_add_test(tc, order_by_not_before);
	tcase_add_test(tc, take_many_ack_without_waiting);
	tcase_add_test(tc, unwaited_writes_keep_out_of_waited_commits);
	tcase_add_test(tc, record_without_event);
	tcase_add_test(tc, group_commit_batches);
	tcase_add_test(tc, batch_isolates_failures);
	tcase_add_test(tc, batch_isolates_map_full);
	tcase_add_test(tc, failed_request_undone_alone);
	tcase_add_test(tc, crash_recovery);
	tcase_add_test(tc, corrupt_queue_record_quarantined);
	tcase_add_test(tc, corrupt_record_found_by_take);
	tcase_add_test(tc, corrupt_exec_record_quarantined_on_read);
	tcase_add_test(tc, corrupt_state_value);
	tcase_add_test(tc, map_full_keeps_committed);
	tcase_add_test(tc, queue_bound);
	tcase_add_test(tc, exec_retention);
	tcase_add_test(tc, exec_retention_in_batches);
	tcase_add_test(tc, release_keeps_the_event_as_it_was);
	tcase_add_test(tc, kv_tables);
	tcase_add_test(tc, newer_format_refused);
	tcase_add_test(tc, out_of_memory);
	tcase_add_test(tc, map_grows_under_readers);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(store_suite)
