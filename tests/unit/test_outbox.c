/*
 * Unit tests of the store's outbox: order and seqs per stream (also across
 * reopen and after everything was acknowledged), read limits, exact
 * acknowledgement, the bounds (logs, then metrics, execution records only
 * past twice the bounds) and their persisted drop counts, the execution
 * record copies and their JSON, off meaning nothing kept, quarantine of a
 * damaged record, the on_add hook, a full map, concurrent adders against a
 * draining reader, and out-of-memory. Each test works in its own mkdtemp
 * directory; waits poll a condition with a deadline.
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
#include "agent/store/store.h"
#include "agent/store/store_int.h"
#include "tests/unit/test.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/op-outbox-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	op_log_set_level(OP_LOG_ERROR);
}

static void teardown(void)
{
	op_test_rmtree(dir);
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

/* A store with the outbox on, bounded by max_records and max_bytes. */
static struct op_store *open_on(uint64_t max_records, uint64_t max_bytes)
{
	struct op_store_opts o = {0};
	struct op_store *s = open_opts(&o);
	struct op_outbox_limits l = {max_records, max_bytes};
	op_store_outbox_limits(s, &l);
	return s;
}

static void add(struct op_store *s, enum op_outbox_stream st, const char *rec)
{
	ck_assert_int_eq(op_store_outbox_add(s, st, rec, strlen(rec)), OP_OK);
}

static void flush(struct op_store *s)
{
	ck_assert_int_eq(op_store_flush(s), OP_OK);
}

static struct op_outbox_stats ostats(struct op_store *s)
{
	struct op_outbox_stats st;
	op_store_outbox_stats(s, &st);
	return st;
}

static struct op_store_stats sstats(struct op_store *s)
{
	struct op_store_stats st;
	ck_assert_int_eq(op_store_stats(s, &st), OP_OK);
	return st;
}

/* Reads everything of st after `after` (up to 100000) into b. */
static void read_all(struct op_store *s, enum op_outbox_stream st, uint64_t after,
                     struct op_outbox_batch *b)
{
	ck_assert_int_eq(op_store_outbox_read(s, st, after, 100000, SIZE_MAX, b), OP_OK);
}

static struct op_store_exec exec_rec(const char *pipeline, int64_t duration)
{
	struct op_store_exec r = {.pipeline = (char *)pipeline,
	                          .version = "1.0",
	                          .trigger = "http",
	                          .start_ms = 1795454918120,
	                          .duration_ms = duration,
	                          .status = "success",
	                          .attempt = 1};
	return r;
}

static void record(struct op_store *s, int64_t duration)
{
	struct op_store_exec r = exec_rec("p", duration);
	ck_assert_int_eq(op_store_record(s, &r), OP_OK);
}

START_TEST(order_and_seq_per_stream)
{
	struct op_store *s = open_on(1000, 0);
	char rec[64];
	for (int i = 1; i <= 5; i++) {
		snprintf(rec, sizeof(rec), "{\"log\":%d}", i);
		add(s, OP_OUTBOX_LOGS, rec);
	}
	for (int i = 1; i <= 3; i++) {
		snprintf(rec, sizeof(rec), "{\"metric\":%d}", i);
		add(s, OP_OUTBOX_METRICS, rec);
	}
	flush(s);
	struct op_outbox_batch b;
	read_all(s, OP_OUTBOX_LOGS, 0, &b);
	ck_assert_uint_eq(b.n, 5);
	for (size_t i = 0; i < b.n; i++) {
		snprintf(rec, sizeof(rec), "{\"log\":%zu}", i + 1);
		ck_assert_uint_eq(b.v[i].seq, i + 1);
		ck_assert_uint_eq(b.v[i].len, strlen(rec));
		ck_assert_str_eq(b.v[i].data, rec); /* NUL-terminated */
	}
	op_outbox_batch_free(&b);
	ck_assert_ptr_null(b.v);
	read_all(s, OP_OUTBOX_METRICS, 0, &b);
	ck_assert_uint_eq(b.n, 3);
	ck_assert_uint_eq(b.v[0].seq, 1);
	ck_assert_str_eq(b.v[2].data, "{\"metric\":3}");
	op_outbox_batch_free(&b);
	read_all(s, OP_OUTBOX_LOGS, 3, &b);
	ck_assert_uint_eq(b.n, 2);
	ck_assert_uint_eq(b.v[0].seq, 4);
	ck_assert_uint_eq(b.v[1].seq, 5);
	op_outbox_batch_free(&b);
	read_all(s, OP_OUTBOX_LOGS, 5, &b);
	ck_assert_uint_eq(b.n, 0);
	op_outbox_batch_free(&b);
	read_all(s, OP_OUTBOX_EXECS, 0, &b);
	ck_assert_uint_eq(b.n, 0);
	op_outbox_batch_free(&b);
	ck_assert_int_eq(op_store_outbox_read(s, OP_OUTBOX_LOGS, UINT64_MAX, 10, 100, &b), OP_OK);
	ck_assert_uint_eq(b.n, 0);
	op_outbox_batch_free(&b);

	struct op_outbox_stats st = ostats(s);
	ck_assert_uint_eq(st.records[OP_OUTBOX_LOGS], 5);
	ck_assert_uint_eq(st.records[OP_OUTBOX_METRICS], 3);
	ck_assert_uint_eq(st.bytes[OP_OUTBOX_LOGS], 5 * strlen("{\"log\":1}"));
	ck_assert_uint_eq(st.last_seq[OP_OUTBOX_LOGS], 5);
	ck_assert_uint_eq(st.last_seq[OP_OUTBOX_METRICS], 3);
	ck_assert_uint_eq(st.last_seq[OP_OUTBOX_EXECS], 0);
	ck_assert_uint_eq(sstats(s).entries[OP_STORE_DB_OUTBOX], 8);

	/* Arguments. */
	ck_assert_int_eq(op_store_outbox_add(s, OP_OUTBOX_EXECS, "{}", 2), OP_EINVAL);
	ck_assert_int_eq(op_store_outbox_add(s, (enum op_outbox_stream)7, "{}", 2), OP_EINVAL);
	ck_assert_int_eq(op_store_outbox_add(s, OP_OUTBOX_LOGS, NULL, 2), OP_EINVAL);
	ck_assert_int_eq(op_store_outbox_add(s, OP_OUTBOX_LOGS, "{}", 0), OP_EINVAL);
	char *big = op_calloc(1, OP_OUTBOX_RECORD_MAX + 1);
	ck_assert_ptr_nonnull(big);
	ck_assert_int_eq(op_store_outbox_add(s, OP_OUTBOX_LOGS, big, OP_OUTBOX_RECORD_MAX + 1),
	                 OP_ELIMIT);
	op_free(big);
	ck_assert_int_eq(op_store_outbox_read(s, OP_OUTBOX_LOGS, 0, 0, 100, &b), OP_EINVAL);
	ck_assert_int_eq(op_store_outbox_read(s, OP_OUTBOX_STREAMS, 0, 1, 100, &b), OP_EINVAL);
	ck_assert_int_eq(op_store_outbox_ack(s, OP_OUTBOX_STREAMS, 1), OP_EINVAL);
	flush(s);
	ck_assert_uint_eq(ostats(s).last_seq[OP_OUTBOX_LOGS], 5);
	op_store_close(s);
}
END_TEST

/* Seqs are never reused: not after everything was acknowledged, not across
 * restarts; what was not acknowledged is there after a reopen. */
START_TEST(seq_survives_ack_and_reopen)
{
	struct op_store *s = open_on(1000, 0);
	add(s, OP_OUTBOX_LOGS, "{\"a\":1}");
	add(s, OP_OUTBOX_LOGS, "{\"a\":2}");
	add(s, OP_OUTBOX_LOGS, "{\"a\":3}");
	add(s, OP_OUTBOX_METRICS, "{\"m\":1}");
	flush(s);
	ck_assert_int_eq(op_store_outbox_ack(s, OP_OUTBOX_LOGS, 3), OP_OK);
	flush(s);
	ck_assert_uint_eq(ostats(s).records[OP_OUTBOX_LOGS], 0);
	ck_assert_uint_eq(ostats(s).bytes[OP_OUTBOX_LOGS], 0);
	add(s, OP_OUTBOX_LOGS, "{\"a\":4}");
	flush(s);
	struct op_outbox_batch b;
	read_all(s, OP_OUTBOX_LOGS, 0, &b);
	ck_assert_uint_eq(b.n, 1);
	ck_assert_uint_eq(b.v[0].seq, 4);
	op_outbox_batch_free(&b);
	ck_assert_int_eq(op_store_outbox_ack(s, OP_OUTBOX_LOGS, 4), OP_OK);
	op_store_close(s);

	/* Reopened: the limits are the caller's to set again. */
	s = open_on(1000, 0);
	struct op_outbox_stats st = ostats(s);
	ck_assert_uint_eq(st.records[OP_OUTBOX_LOGS], 0);
	ck_assert_uint_eq(st.last_seq[OP_OUTBOX_LOGS], 4);
	ck_assert_uint_eq(st.records[OP_OUTBOX_METRICS], 1);
	ck_assert_uint_eq(st.bytes[OP_OUTBOX_METRICS], strlen("{\"m\":1}"));
	ck_assert_uint_eq(st.last_seq[OP_OUTBOX_METRICS], 1);
	add(s, OP_OUTBOX_LOGS, "{\"a\":5}");
	add(s, OP_OUTBOX_METRICS, "{\"m\":2}");
	flush(s);
	read_all(s, OP_OUTBOX_LOGS, 0, &b);
	ck_assert_uint_eq(b.n, 1);
	ck_assert_uint_eq(b.v[0].seq, 5);
	ck_assert_str_eq(b.v[0].data, "{\"a\":5}");
	op_outbox_batch_free(&b);
	read_all(s, OP_OUTBOX_METRICS, 0, &b);
	ck_assert_uint_eq(b.n, 2);
	ck_assert_str_eq(b.v[0].data, "{\"m\":1}");
	ck_assert_uint_eq(b.v[1].seq, 2);
	op_outbox_batch_free(&b);
	op_store_close(s);
}
END_TEST

/* A crash (no close) keeps every committed record and its seq. */
START_TEST(crash_keeps_committed)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct op_store_opts o = {.dir = dir};
		struct op_store *s;
		if (op_store_open(&o, &s, NULL, 0) != OP_OK)
			_exit(2);
		struct op_outbox_limits l = {100, 0};
		op_store_outbox_limits(s, &l);
		for (int i = 0; i < 10; i++)
			if (op_store_outbox_add(s, OP_OUTBOX_LOGS, "{}", 2) != OP_OK)
				_exit(3);
		if (op_store_flush(s) != OP_OK || op_store_outbox_ack(s, OP_OUTBOX_LOGS, 4) ||
		    op_store_flush(s) != OP_OK)
			_exit(4);
		_exit(0);
	}
	int ws;
	ck_assert_int_eq(waitpid(pid, &ws, 0), pid);
	ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	struct op_store *s = open_on(100, 0);
	struct op_outbox_stats st = ostats(s);
	ck_assert_uint_eq(st.records[OP_OUTBOX_LOGS], 6);
	ck_assert_uint_eq(st.last_seq[OP_OUTBOX_LOGS], 10);
	struct op_outbox_batch b;
	read_all(s, OP_OUTBOX_LOGS, 0, &b);
	ck_assert_uint_eq(b.n, 6);
	ck_assert_uint_eq(b.v[0].seq, 5);
	op_outbox_batch_free(&b);
	op_store_close(s);
}
END_TEST

START_TEST(read_limits)
{
	struct op_store *s = open_on(1000, 0);
	char rec[128];
	memset(rec, 'x', sizeof(rec));
	rec[0] = '{';
	rec[99] = '}';
	rec[100] = 0; /* 100 bytes */
	for (int i = 0; i < 10; i++)
		add(s, OP_OUTBOX_LOGS, rec);
	char *huge = op_malloc(1000 + 1);
	ck_assert_ptr_nonnull(huge);
	memset(huge, 'y', 1000);
	huge[1000] = 0;
	add(s, OP_OUTBOX_LOGS, huge); /* seq 11 */
	add(s, OP_OUTBOX_LOGS, rec);  /* seq 12 */
	flush(s);
	struct op_outbox_batch b;
	ck_assert_int_eq(op_store_outbox_read(s, OP_OUTBOX_LOGS, 0, 4, 100000, &b), OP_OK);
	ck_assert_uint_eq(b.n, 4);
	ck_assert_uint_eq(b.v[3].seq, 4);
	op_outbox_batch_free(&b);
	ck_assert_int_eq(op_store_outbox_read(s, OP_OUTBOX_LOGS, 2, 100, 250, &b), OP_OK);
	ck_assert_uint_eq(b.n, 2);
	ck_assert_uint_eq(b.v[0].seq, 3);
	op_outbox_batch_free(&b);
	ck_assert_int_eq(op_store_outbox_read(s, OP_OUTBOX_LOGS, 0, 100, 300, &b), OP_OK);
	ck_assert_uint_eq(b.n, 3); /* exactly at the bound */
	op_outbox_batch_free(&b);
	/* Smaller than one record: that one, alone. */
	ck_assert_int_eq(op_store_outbox_read(s, OP_OUTBOX_LOGS, 0, 100, 10, &b), OP_OK);
	ck_assert_uint_eq(b.n, 1);
	ck_assert_uint_eq(b.v[0].len, 100);
	op_outbox_batch_free(&b);
	/* The big one stops the batch before it, then comes alone. */
	ck_assert_int_eq(op_store_outbox_read(s, OP_OUTBOX_LOGS, 8, 100, 500, &b), OP_OK);
	ck_assert_uint_eq(b.n, 2);
	ck_assert_uint_eq(b.v[1].seq, 10);
	op_outbox_batch_free(&b);
	ck_assert_int_eq(op_store_outbox_read(s, OP_OUTBOX_LOGS, 10, 100, 500, &b), OP_OK);
	ck_assert_uint_eq(b.n, 1);
	ck_assert_uint_eq(b.v[0].seq, 11);
	ck_assert_uint_eq(b.v[0].len, 1000);
	ck_assert_str_eq(b.v[0].data, huge);
	op_outbox_batch_free(&b);
	ck_assert_int_eq(op_store_outbox_read(s, OP_OUTBOX_LOGS, 11, 100, 500, &b), OP_OK);
	ck_assert_uint_eq(b.n, 1);
	ck_assert_uint_eq(b.v[0].seq, 12);
	op_outbox_batch_free(&b);
	op_free(huge);
	/* A zeroed batch frees fine; so does NULL. */
	memset(&b, 0, sizeof(b));
	op_outbox_batch_free(&b);
	op_outbox_batch_free(NULL);
	op_store_close(s);
}
END_TEST

START_TEST(ack_deletes_exactly_upto)
{
	struct op_store *s = open_on(1000, 0);
	for (int i = 0; i < 10; i++) {
		add(s, OP_OUTBOX_LOGS, "{\"l\":1}");
		add(s, OP_OUTBOX_METRICS, "{\"m\":1}");
	}
	flush(s);
	ck_assert_int_eq(op_store_outbox_ack(s, OP_OUTBOX_LOGS, 4), OP_OK);
	ck_assert_int_eq(op_store_outbox_ack(s, OP_OUTBOX_LOGS, 0), OP_OK);
	flush(s);
	struct op_outbox_batch b;
	read_all(s, OP_OUTBOX_LOGS, 0, &b);
	ck_assert_uint_eq(b.n, 6);
	ck_assert_uint_eq(b.v[0].seq, 5);
	ck_assert_uint_eq(b.v[5].seq, 10);
	op_outbox_batch_free(&b);
	read_all(s, OP_OUTBOX_METRICS, 0, &b);
	ck_assert_uint_eq(b.n, 10); /* other streams untouched */
	op_outbox_batch_free(&b);
	struct op_outbox_stats st = ostats(s);
	ck_assert_uint_eq(st.records[OP_OUTBOX_LOGS], 6);
	ck_assert_uint_eq(st.bytes[OP_OUTBOX_LOGS], 6 * strlen("{\"l\":1}"));
	ck_assert_uint_eq(st.dropped[OP_OUTBOX_LOGS], 0);
	/* Again, and past the end. */
	ck_assert_int_eq(op_store_outbox_ack(s, OP_OUTBOX_LOGS, 4), OP_OK);
	ck_assert_int_eq(op_store_outbox_ack(s, OP_OUTBOX_METRICS, 1000), OP_OK);
	flush(s);
	st = ostats(s);
	ck_assert_uint_eq(st.records[OP_OUTBOX_LOGS], 6);
	ck_assert_uint_eq(st.records[OP_OUTBOX_METRICS], 0);
	ck_assert_uint_eq(st.bytes[OP_OUTBOX_METRICS], 0);
	ck_assert_uint_eq(sstats(s).entries[OP_STORE_DB_OUTBOX], 6);
	op_store_close(s);
}
END_TEST

static uint64_t first_seq(struct op_store *s, enum op_outbox_stream st)
{
	struct op_outbox_batch b;
	ck_assert_int_eq(op_store_outbox_read(s, st, 0, 1, 100, &b), OP_OK);
	uint64_t seq = b.n ? b.v[0].seq : 0;
	op_outbox_batch_free(&b);
	return seq;
}

static void check(struct op_store *s, uint64_t logs, uint64_t metrics, uint64_t execs)
{
	flush(s);
	struct op_outbox_stats st = ostats(s);
	ck_assert_uint_eq(st.records[OP_OUTBOX_LOGS], logs);
	ck_assert_uint_eq(st.records[OP_OUTBOX_METRICS], metrics);
	ck_assert_uint_eq(st.records[OP_OUTBOX_EXECS], execs);
	ck_assert_uint_eq(sstats(s).entries[OP_STORE_DB_OUTBOX], logs + metrics + execs);
}

static void check_dropped(struct op_store *s, uint64_t logs, uint64_t metrics, uint64_t execs)
{
	struct op_outbox_stats st = ostats(s);
	ck_assert_uint_eq(st.dropped[OP_OUTBOX_LOGS], logs);
	ck_assert_uint_eq(st.dropped[OP_OUTBOX_METRICS], metrics);
	ck_assert_uint_eq(st.dropped[OP_OUTBOX_EXECS], execs);
}

START_TEST(bounds_drop_logs_then_metrics_then_execs)
{
	struct op_store *s = open_on(10, 0);
	for (int i = 0; i < 4; i++) {
		add(s, OP_OUTBOX_LOGS, "{\"l\":1}");
		add(s, OP_OUTBOX_METRICS, "{\"m\":1}");
	}
	record(s, 1);
	record(s, 2);
	check(s, 4, 4, 2);
	check_dropped(s, 0, 0, 0);

	/* Full: a metric pushes out the oldest log. */
	add(s, OP_OUTBOX_METRICS, "{\"m\":5}");
	check(s, 3, 5, 2);
	check_dropped(s, 1, 0, 0);
	ck_assert_uint_eq(first_seq(s, OP_OUTBOX_LOGS), 2);
	/* A log pushes out the oldest log, not a metric. */
	add(s, OP_OUTBOX_LOGS, "{\"l\":5}");
	check(s, 3, 5, 2);
	check_dropped(s, 2, 0, 0);
	ck_assert_uint_eq(first_seq(s, OP_OUTBOX_LOGS), 3);
	/* Execution records push out logs, then metrics. */
	for (int i = 0; i < 3; i++)
		record(s, 10 + i);
	check(s, 0, 5, 5);
	check_dropped(s, 5, 0, 0);
	record(s, 20);
	check(s, 0, 4, 6);
	check_dropped(s, 5, 1, 0);
	ck_assert_uint_eq(first_seq(s, OP_OUTBOX_METRICS), 2);
	/* A log with no older log to push out goes itself, counted, with its seq. */
	add(s, OP_OUTBOX_LOGS, "{\"l\":7}");
	check(s, 0, 4, 6);
	check_dropped(s, 6, 1, 0);
	ck_assert_uint_eq(ostats(s).last_seq[OP_OUTBOX_LOGS], 6);
	/* A metric pushes out the oldest metric when there is no log. */
	add(s, OP_OUTBOX_METRICS, "{\"m\":6}");
	check(s, 0, 4, 6);
	check_dropped(s, 6, 2, 0);
	ck_assert_uint_eq(first_seq(s, OP_OUTBOX_METRICS), 3);
	for (int i = 0; i < 4; i++)
		record(s, 30 + i);
	check(s, 0, 0, 10);
	check_dropped(s, 6, 6, 0);
	/* Execution records are kept up to twice the bounds. */
	for (int i = 0; i < 10; i++)
		record(s, 40 + i);
	check(s, 0, 0, 20);
	check_dropped(s, 6, 6, 0);
	ck_assert_uint_eq(first_seq(s, OP_OUTBOX_EXECS), 1);
	record(s, 50);
	check(s, 0, 0, 20);
	check_dropped(s, 6, 6, 1);
	ck_assert_uint_eq(first_seq(s, OP_OUTBOX_EXECS), 2);
	/* Nothing a metric may push out: it goes itself. */
	add(s, OP_OUTBOX_METRICS, "{\"m\":7}");
	check(s, 0, 0, 20);
	check_dropped(s, 6, 7, 1);
	struct op_outbox_stats before = ostats(s);
	op_store_close(s);

	/* Drop counts and seqs are persisted; records are counted again. */
	s = open_on(10, 0);
	struct op_outbox_stats after = ostats(s);
	for (int i = 0; i < OP_OUTBOX_STREAMS; i++) {
		ck_assert_uint_eq(after.dropped[i], before.dropped[i]);
		ck_assert_uint_eq(after.last_seq[i], before.last_seq[i]);
		ck_assert_uint_eq(after.records[i], before.records[i]);
		ck_assert_uint_eq(after.bytes[i], before.bytes[i]);
	}
	record(s, 60);
	check(s, 0, 0, 20);
	check_dropped(s, 6, 7, 2);
	ck_assert_uint_eq(first_seq(s, OP_OUTBOX_EXECS), 3);
	/* The retention bound of execution records does not touch the copies. */
	op_store_close(s);
}
END_TEST

START_TEST(byte_bound)
{
	struct op_store *s = open_on(1000, 1000);
	char rec[301];
	memset(rec, 'a', 300);
	rec[300] = 0;
	for (int i = 0; i < 3; i++)
		add(s, OP_OUTBOX_LOGS, rec);
	add(s, OP_OUTBOX_METRICS, "{\"m\":1}");
	check(s, 3, 1, 0);
	add(s, OP_OUTBOX_LOGS, rec); /* 1207 bytes: the oldest log goes */
	check(s, 3, 1, 0);
	check_dropped(s, 1, 0, 0);
	ck_assert_uint_eq(ostats(s).bytes[OP_OUTBOX_LOGS], 900);
	/* Larger than the bound: it goes, not the records already there. */
	char *big = op_malloc(1201);
	ck_assert_ptr_nonnull(big);
	memset(big, 'b', 1200);
	big[1200] = 0;
	add(s, OP_OUTBOX_LOGS, big);
	op_free(big);
	check(s, 3, 1, 0);
	check_dropped(s, 2, 0, 0);
	ck_assert_uint_eq(first_seq(s, OP_OUTBOX_LOGS), 2);
	ck_assert_uint_eq(ostats(s).last_seq[OP_OUTBOX_LOGS], 5);
	op_store_close(s);
}
END_TEST

/* Lowered bounds take effect at the next add. */
START_TEST(lowered_bounds)
{
	struct op_store *s = open_on(100, 0);
	for (int i = 0; i < 6; i++)
		add(s, OP_OUTBOX_LOGS, "{}");
	for (int i = 0; i < 6; i++)
		add(s, OP_OUTBOX_METRICS, "{}");
	check(s, 6, 6, 0);
	struct op_outbox_limits l = {5, 0};
	op_store_outbox_limits(s, &l);
	add(s, OP_OUTBOX_METRICS, "{}");
	check(s, 0, 5, 0);
	check_dropped(s, 6, 2, 0);
	ck_assert_uint_eq(first_seq(s, OP_OUTBOX_METRICS), 3);
	op_store_close(s);
}
END_TEST

/* The copy of one execution record, read back and parsed. */
static cJSON *exec_copy(struct op_store *s, uint64_t seq)
{
	struct op_outbox_batch b;
	ck_assert_int_eq(op_store_outbox_read(s, OP_OUTBOX_EXECS, seq - 1, 1, 1 << 20, &b), OP_OK);
	ck_assert_uint_eq(b.n, 1);
	ck_assert_uint_eq(b.v[0].seq, seq);
	cJSON *j = cJSON_ParseWithLength(b.v[0].data, b.v[0].len);
	ck_assert_ptr_nonnull(j);
	op_outbox_batch_free(&b);
	return j;
}

static const char *jstr(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	ck_assert_msg(cJSON_IsString(v), "%s is not a string", name);
	return v->valuestring;
}

START_TEST(exec_json_format)
{
	struct op_store_exec r = exec_rec("orders", 12);
	snprintf(r.id, sizeof(r.id), "%s", "0190a3c2-7c1e-7a00-8000-000000000001");
	cJSON *j = op_store_exec_json(&r);
	ck_assert_ptr_nonnull(j);
	char *text = cJSON_PrintUnformatted(j);
	/* Byte for byte what the admin API has always answered. */
	ck_assert_str_eq(text, "{\"id\":\"0190a3c2-7c1e-7a00-8000-000000000001\",\"eventId\":null,"
	                       "\"pipeline\":\"orders\",\"version\":\"1.0\",\"trigger\":\"http\","
	                       "\"status\":\"success\",\"error\":null,\"attempt\":1,"
	                       "\"startedAt\":\"2026-11-23T17:28:38.120Z\","
	                       "\"startedAtMs\":1795454918120,\"durationMs\":12}");
	cJSON_free(text);
	cJSON_Delete(j);
	struct op_store_exec e = {.error = "boom", .attempt = 3};
	snprintf(e.event_id, sizeof(e.event_id), "%s", "0190a3c2-7c1e-7a00-8000-000000000002");
	j = op_store_exec_json(&e);
	ck_assert_json_text(j,
	                    "{\"id\":\"\",\"eventId\":\"0190a3c2-7c1e-7a00-8000-000000000002\","
	                    "\"pipeline\":\"\",\"version\":\"\",\"trigger\":null,\"status\":\"\","
	                    "\"error\":\"boom\",\"attempt\":3,\"startedAt\":null,"
	                    "\"startedAtMs\":0,\"durationMs\":0}");
	cJSON_Delete(j);
	for (uint64_t n = 1; n < 40; n++) {
		op_alloc_fail_at(n);
		j = op_store_exec_json(&r);
		op_alloc_fail_at(0);
		cJSON_Delete(j);
	}
}
END_TEST

/* Every path that writes an execution record writes its copy, in the same
 * transaction, whatever the retention of the records themselves. */
START_TEST(exec_records_copied)
{
	struct op_store_opts o = {.exec_retention = 2};
	struct op_store *s = open_opts(&o);
	struct op_outbox_limits l = {1000, 0};
	op_store_outbox_limits(s, &l);
	struct op_store_exec r = exec_rec("sync", 5);
	ck_assert_int_eq(op_store_record(s, &r), OP_OK); /* seq 1 */
	cJSON *j = exec_copy(s, 1);
	struct op_store_exec **recs;
	size_t n;
	ck_assert_int_eq(op_store_list_execs(s, 1, &recs, &n), OP_OK);
	ck_assert_uint_eq(n, 1);
	cJSON *want = op_store_exec_json(recs[0]);
	ck_assert_json_eq(j, want); /* the id the store made included */
	ck_assert_uint_eq(strlen(jstr(j, "id")), OP_UUID_LEN);
	cJSON_Delete(want);
	cJSON_Delete(j);
	op_store_execs_free(recs, n);

	r.duration_ms = 6;
	r.error = "late";
	ck_assert_int_eq(op_store_record_nowait(s, &r), OP_OK); /* seq 2 */
	flush(s);
	j = exec_copy(s, 2);
	ck_assert_str_eq(jstr(j, "error"), "late");
	cJSON_Delete(j);
	r.error = NULL;

	/* ack, retry, dead with records; ack without one copies nothing. */
	char id[4][OP_UUID_LEN + 1];
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(op_store_enqueue(s, "q", NULL, "{}", 2, 0, id[i]), OP_OK);
	struct op_store_event *ev[4];
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(op_store_take(s, "q", 0, &ev[i]), OP_OK);
		ck_assert_str_eq(ev[i]->id, id[i]);
	}
	struct op_store_exec ra = exec_rec("q", 7);
	memcpy(ra.event_id, id[0], sizeof(ra.event_id));
	ck_assert_int_eq(op_store_ack(s, id[0], &ra), OP_OK); /* seq 3 */
	struct op_store_exec rr = exec_rec("q", 8);
	rr.status = "error";
	rr.error = "retry me";
	memcpy(rr.event_id, id[1], sizeof(rr.event_id));
	ck_assert_int_eq(op_store_retry(s, id[1], 0, "retry me", &rr), OP_OK); /* seq 4 */
	struct op_store_exec rd = exec_rec("q", 9);
	rd.status = "error";
	rd.attempt = 3;
	memcpy(rd.event_id, id[2], sizeof(rd.event_id));
	ck_assert_int_eq(op_store_dead(s, id[2], "fatal", &rd), OP_OK); /* seq 5 */
	ck_assert_int_eq(op_store_ack(s, id[3], NULL), OP_OK);
	/* Not in flight any more: the ack fails in the writer, and with it the copy. */
	struct op_store_exec rn = exec_rec("q", 10);
	ck_assert_int_eq(op_store_ack_nowait(s, ev[1]->id, &rn), OP_OK);
	for (int i = 0; i < 4; i++)
		op_store_event_free(ev[i]);
	flush(s);
	ck_assert_uint_eq(ostats(s).records[OP_OUTBOX_EXECS], 5);
	j = exec_copy(s, 3);
	ck_assert_str_eq(jstr(j, "eventId"), id[0]);
	ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(j, "durationMs")->valuedouble, 7);
	ck_assert_str_eq(jstr(j, "pipeline"), "q");
	ck_assert_str_eq(jstr(j, "version"), "1.0");
	ck_assert_str_eq(jstr(j, "trigger"), "http");
	ck_assert_str_eq(jstr(j, "startedAt"), "2026-11-23T17:28:38.120Z");
	ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "error")));
	cJSON_Delete(j);
	j = exec_copy(s, 4);
	ck_assert_str_eq(jstr(j, "eventId"), id[1]);
	ck_assert_str_eq(jstr(j, "status"), "error");
	ck_assert_str_eq(jstr(j, "error"), "retry me");
	cJSON_Delete(j);
	j = exec_copy(s, 5);
	ck_assert_str_eq(jstr(j, "eventId"), id[2]);
	ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(j, "attempt")->valuedouble, 3);
	cJSON_Delete(j);

	/* The retried event, taken again and acknowledged without waiting. */
	struct op_store_event *again;
	ck_assert_int_eq(op_store_take(s, "q", 0, &again), OP_OK);
	ck_assert_str_eq(again->id, id[1]);
	rn.attempt = 2;
	memcpy(rn.event_id, id[1], sizeof(rn.event_id));
	ck_assert_int_eq(op_store_ack_nowait(s, again->id, &rn), OP_OK); /* seq 6 */
	op_store_event_free(again);
	flush(s);
	j = exec_copy(s, 6);
	ck_assert_str_eq(jstr(j, "eventId"), id[1]);
	ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(j, "attempt")->valuedouble, 2);
	cJSON_Delete(j);

	/* A record that is refused (its id is taken) leaves no copy and no seq. */
	ck_assert_int_eq(op_store_list_execs(s, 1, &recs, &n), OP_OK);
	struct op_store_exec dup = exec_rec("dup", 1);
	memcpy(dup.id, recs[0]->id, sizeof(dup.id));
	op_store_execs_free(recs, n);
	ck_assert_int_eq(op_store_record(s, &dup), OP_EINVAL);
	struct op_outbox_stats st = ostats(s);
	ck_assert_uint_eq(st.records[OP_OUTBOX_EXECS], 6);
	ck_assert_uint_eq(st.last_seq[OP_OUTBOX_EXECS], 6);
	/* Retention kept 2 records; the copies are all there. */
	ck_assert_uint_eq(sstats(s).entries[OP_STORE_DB_EXECS], 2);
	ck_assert_uint_eq(st.dropped[OP_OUTBOX_EXECS], 0);
	op_store_close(s);
}
END_TEST

START_TEST(off_keeps_nothing)
{
	struct op_store_opts o = {0};
	struct op_store *s = open_opts(&o);
	add(s, OP_OUTBOX_LOGS, "{\"off\":1}");
	record(s, 1);
	flush(s);
	struct op_outbox_stats st = ostats(s);
	for (int i = 0; i < OP_OUTBOX_STREAMS; i++) {
		ck_assert_uint_eq(st.records[i], 0);
		ck_assert_uint_eq(st.last_seq[i], 0);
		ck_assert_uint_eq(st.dropped[i], 0);
	}
	ck_assert_uint_eq(sstats(s).entries[OP_STORE_DB_OUTBOX], 0);
	ck_assert_uint_eq(sstats(s).entries[OP_STORE_DB_EXECS], 1);
	/* Arguments are checked all the same. */
	ck_assert_int_eq(op_store_outbox_add(s, OP_OUTBOX_EXECS, "{}", 2), OP_EINVAL);

	struct op_outbox_limits l = {10, 0};
	op_store_outbox_limits(s, &l);
	add(s, OP_OUTBOX_LOGS, "{\"on\":1}");
	record(s, 2);
	flush(s);
	op_store_outbox_limits(s, NULL);
	add(s, OP_OUTBOX_LOGS, "{\"off\":2}");
	record(s, 3);
	flush(s);
	st = ostats(s);
	ck_assert_uint_eq(st.records[OP_OUTBOX_LOGS], 1);
	ck_assert_uint_eq(st.records[OP_OUTBOX_EXECS], 1);
	/* Kept records stay readable and can be acknowledged while off. */
	struct op_outbox_batch b;
	read_all(s, OP_OUTBOX_LOGS, 0, &b);
	ck_assert_uint_eq(b.n, 1);
	ck_assert_str_eq(b.v[0].data, "{\"on\":1}");
	op_outbox_batch_free(&b);
	ck_assert_int_eq(op_store_outbox_ack(s, OP_OUTBOX_LOGS, 1), OP_OK);
	flush(s);
	ck_assert_uint_eq(ostats(s).records[OP_OUTBOX_LOGS], 0);
	op_store_close(s);
}
END_TEST

/* Flips one byte of the payload of the nth outbox value through a raw LMDB
 * write transaction. */
static void corrupt_nth(int nth)
{
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi dbi;
	MDB_cursor *c;
	MDB_val k, v;
	ck_assert_int_eq(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 16);
	ck_assert_int_eq(mdb_env_open(env, dir, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
	ck_assert_int_eq(mdb_dbi_open(t, "outbox", 0, &dbi), 0);
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

static void check_quarantined(struct op_store *s, enum op_outbox_stream st, uint64_t left)
{
	struct op_outbox_batch b;
	read_all(s, st, 0, &b);
	ck_assert_uint_eq(b.n, 2);
	ck_assert_uint_eq(b.v[0].seq, 1);
	ck_assert_str_eq(b.v[0].data, "{\"n\":1}");
	ck_assert_uint_eq(b.v[1].seq, 3);
	ck_assert_str_eq(b.v[1].data, "{\"n\":3}");
	op_outbox_batch_free(&b);
	/* The read handed it to the writer; the flush waits for that. */
	flush(s);
	struct op_store_stats ss = sstats(s);
	ck_assert_uint_eq(ss.quarantined, 1);
	ck_assert_uint_eq(ss.entries[OP_STORE_DB_QUARANTINE], 1);
	ck_assert_uint_eq(ostats(s).records[st], left);
	ck_assert_uint_eq(ostats(s).bytes[st], left * strlen("{\"n\":1}"));
	read_all(s, st, 0, &b);
	ck_assert_uint_eq(b.n, 2);
	op_outbox_batch_free(&b);
	flush(s);
	ck_assert_uint_eq(sstats(s).quarantined, 1);
}

START_TEST(corrupt_record_quarantined)
{
	struct op_store *s = open_on(100, 0);
	add(s, OP_OUTBOX_LOGS, "{\"n\":1}");
	add(s, OP_OUTBOX_LOGS, "{\"n\":2}");
	add(s, OP_OUTBOX_LOGS, "{\"n\":3}");
	flush(s);
	/* Damaged while the store is open, by another process. */
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		corrupt_nth(1);
		_exit(0);
	}
	int ws;
	ck_assert_int_eq(waitpid(pid, &ws, 0), pid);
	ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	check_quarantined(s, OP_OUTBOX_LOGS, 2);
	op_store_close(s);
}
END_TEST

START_TEST(corrupt_record_found_after_reopen)
{
	struct op_store *s = open_on(100, 0);
	add(s, OP_OUTBOX_METRICS, "{\"n\":1}");
	add(s, OP_OUTBOX_METRICS, "{\"n\":2}");
	add(s, OP_OUTBOX_METRICS, "{\"n\":3}");
	op_store_close(s);
	corrupt_nth(1);
	s = open_on(100, 0);
	ck_assert_uint_eq(ostats(s).records[OP_OUTBOX_METRICS], 3);
	check_quarantined(s, OP_OUTBOX_METRICS, 2);
	op_store_close(s);
}
END_TEST

static atomic_int hook_calls;

static void hook(void *ud)
{
	ck_assert_ptr_eq(ud, &hook_calls);
	atomic_fetch_add(&hook_calls, 1);
}

static bool wait_calls(int n)
{
	int64_t deadline = op_mono_ms() + 5000;
	while (atomic_load(&hook_calls) < n && op_mono_ms() < deadline)
		sched_yield();
	return atomic_load(&hook_calls) >= n;
}

START_TEST(on_add_hook)
{
	struct op_store *s = open_on(100, 0);
	atomic_store(&hook_calls, 0);
	op_store_outbox_on_add(s, hook, &hook_calls);
	/* Without a flush: the hook is what wakes a drain. */
	add(s, OP_OUTBOX_LOGS, "{}");
	ck_assert(wait_calls(1));
	record(s, 1);
	ck_assert(wait_calls(2));
	/* Commits that store no outbox record do not call it. */
	int before = atomic_load(&hook_calls);
	ck_assert_int_eq(op_store_put(s, OP_STORE_STATE, "k", "v", 1), OP_OK);
	ck_assert_int_eq(op_store_outbox_ack(s, OP_OUTBOX_LOGS, 1), OP_OK);
	flush(s);
	ck_assert_int_eq(atomic_load(&hook_calls), before);
	op_store_outbox_on_add(s, NULL, NULL);
	add(s, OP_OUTBOX_LOGS, "{}");
	flush(s);
	ck_assert_int_eq(atomic_load(&hook_calls), before);
	op_store_close(s);
}
END_TEST

/* A read takes no part in the writer's queue: it answers while the writer
 * holds everything back, with what is committed. */
START_TEST(read_does_not_wait_for_writer)
{
	struct op_store *s = open_on(100, 0);
	add(s, OP_OUTBOX_LOGS, "{\"a\":1}");
	flush(s);
	op_store__hold(s, true);
	add(s, OP_OUTBOX_LOGS, "{\"a\":2}");
	ck_assert_int_eq(op_store_outbox_ack(s, OP_OUTBOX_LOGS, 1), OP_OK);
	struct op_outbox_batch b;
	read_all(s, OP_OUTBOX_LOGS, 0, &b);
	ck_assert_uint_eq(b.n, 1);
	ck_assert_uint_eq(b.v[0].seq, 1);
	op_outbox_batch_free(&b);
	ck_assert_uint_eq(op_store__pending(s), 2);
	op_store__hold(s, false);
	flush(s);
	read_all(s, OP_OUTBOX_LOGS, 0, &b);
	ck_assert_uint_eq(b.n, 1);
	ck_assert_uint_eq(b.v[0].seq, 2);
	op_outbox_batch_free(&b);
	op_store_close(s);
}
END_TEST

struct enq_arg {
	struct op_store *s;
	op_err e;
};

static void *enq_thread(void *p)
{
	struct enq_arg *a = p;
	a->e = op_store_enqueue(a->s, "small", NULL, "{}", 2, 0, NULL);
	return NULL;
}

/* The map cannot hold the batch's logs: they are dropped (counted, with
 * their seqs), and the other writes of the batch commit. */
START_TEST(map_full_drops_adds_not_others)
{
	struct op_store_opts o = {.map_initial = 128 * 1024, .map_max = 512 * 1024};
	struct op_store *s = open_opts(&o);
	struct op_outbox_limits l = {1000, 0};
	op_store_outbox_limits(s, &l);
	enum { N = 4, SZ = 200 * 1024 };
	char *big = op_malloc(SZ + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, 'z', SZ);
	big[SZ] = 0;
	op_store__hold(s, true);
	for (int i = 0; i < N; i++)
		add(s, OP_OUTBOX_LOGS, big);
	op_free(big);
	pthread_t th;
	struct enq_arg a = {s, OP_EINTERNAL};
	ck_assert_int_eq(pthread_create(&th, NULL, enq_thread, &a), 0);
	int64_t deadline = op_mono_ms() + 5000;
	while (op_store__pending(s) < N + 1 && op_mono_ms() < deadline)
		sched_yield();
	ck_assert_uint_eq(op_store__pending(s), N + 1);
	op_store__hold(s, false);
	pthread_join(th, NULL);
	ck_assert_int_eq(a.e, OP_OK);
	flush(s);
	struct op_outbox_stats st = ostats(s);
	ck_assert_uint_ge(st.dropped[OP_OUTBOX_LOGS], 1);
	ck_assert_uint_eq(st.records[OP_OUTBOX_LOGS] + st.dropped[OP_OUTBOX_LOGS], N);
	ck_assert_uint_eq(st.last_seq[OP_OUTBOX_LOGS], N);
	ck_assert_uint_eq(sstats(s).map_size, 512 * 1024);
	uint64_t kept = st.records[OP_OUTBOX_LOGS];
	struct op_outbox_batch b;
	read_all(s, OP_OUTBOX_LOGS, 0, &b);
	ck_assert_uint_eq(b.n, kept);
	for (size_t i = 0; i < b.n; i++)
		ck_assert_uint_eq(b.v[i].len, SZ);
	op_outbox_batch_free(&b);
	/* Draining frees the room again. */
	ck_assert_int_eq(op_store_outbox_ack(s, OP_OUTBOX_LOGS, N), OP_OK);
	flush(s);
	add(s, OP_OUTBOX_LOGS, "{\"after\":1}");
	flush(s);
	ck_assert_uint_eq(first_seq(s, OP_OUTBOX_LOGS), N + 1);
	op_store_close(s);
	s = open_opts(&o);
	st = ostats(s);
	ck_assert_uint_eq(st.dropped[OP_OUTBOX_LOGS], N - kept);
	ck_assert_uint_eq(st.last_seq[OP_OUTBOX_LOGS], N + 1);
	uint64_t ev;
	op_store_queue_depth(s, "small", &ev, NULL);
	ck_assert_uint_eq(ev, 1);
	op_store_close(s);
}
END_TEST

/* The batch's commit fails as a whole (the map is full at map_max): its logs
 * and metrics go, counted, and the rest of the batch (an event, an execution
 * record with its copy) commits without them. */
START_TEST(commit_full_drops_adds_keeps_others)
{
	struct op_store_opts o = {.map_initial = 1 << 20, .map_max = 1 << 20};
	struct op_store *s = open_opts(&o);
	struct op_outbox_limits l = {1000, 0};
	op_store_outbox_limits(s, &l);
	/* The adds go in the enqueue's batch, not on their own later. */
	op_store__set_detached_delay(s, -1);
	add(s, OP_OUTBOX_LOGS, "{\"before\":1}");
	flush(s);
	op_store__hold(s, true);
	add(s, OP_OUTBOX_LOGS, "{\"l\":2}");
	add(s, OP_OUTBOX_METRICS, "{\"m\":1}");
	add(s, OP_OUTBOX_LOGS, "{\"l\":3}");
	pthread_t th;
	struct enq_arg a = {s, OP_EINTERNAL};
	ck_assert_int_eq(pthread_create(&th, NULL, enq_thread, &a), 0);
	struct op_store_exec r = exec_rec("sync", 3);
	ck_assert_int_eq(op_store_record_nowait(s, &r), OP_OK);
	int64_t deadline = op_mono_ms() + 5000;
	while (op_store__pending(s) < 5 && op_mono_ms() < deadline)
		sched_yield();
	ck_assert_uint_eq(op_store__pending(s), 5);
	op_store__fail_commits(s, 1);
	op_store__hold(s, false);
	pthread_join(th, NULL);
	ck_assert_int_eq(a.e, OP_OK);
	flush(s);
	struct op_outbox_stats st = ostats(s);
	ck_assert_uint_eq(st.records[OP_OUTBOX_LOGS], 1);
	ck_assert_uint_eq(st.records[OP_OUTBOX_METRICS], 0);
	ck_assert_uint_eq(st.records[OP_OUTBOX_EXECS], 1);
	check_dropped(s, 2, 1, 0);
	ck_assert_uint_eq(st.last_seq[OP_OUTBOX_LOGS], 3);
	ck_assert_uint_eq(st.last_seq[OP_OUTBOX_METRICS], 1);
	ck_assert_uint_eq(sstats(s).entries[OP_STORE_DB_EXECS], 1);
	add(s, OP_OUTBOX_LOGS, "{\"l\":4}");
	flush(s);
	struct op_outbox_batch b;
	read_all(s, OP_OUTBOX_LOGS, 0, &b);
	ck_assert_uint_eq(b.n, 2);
	ck_assert_uint_eq(b.v[0].seq, 1);
	ck_assert_uint_eq(b.v[1].seq, 4);
	op_outbox_batch_free(&b);
	op_store_close(s);
	s = open_opts(&o);
	check_dropped(s, 2, 1, 0);
	ck_assert_uint_eq(ostats(s).last_seq[OP_OUTBOX_LOGS], 4);
	uint64_t ev;
	op_store_queue_depth(s, "small", &ev, NULL);
	ck_assert_uint_eq(ev, 1);
	op_store_close(s);
}
END_TEST

struct adder {
	struct op_store *s;
	int id, count;
	op_err e;
};

static void *adder_main(void *p)
{
	struct adder *a = p;
	char rec[64];
	for (int i = 0; i < a->count && a->e == OP_OK; i++) {
		int n = snprintf(rec, sizeof(rec), "{\"t\":%d,\"i\":%d}", a->id, i);
		a->e = op_store_outbox_add(a->s, a->id % 2 ? OP_OUTBOX_METRICS : OP_OUTBOX_LOGS,
		                           rec, (size_t)n);
	}
	return NULL;
}

/* Adders on several threads against a reader that drains and
 * acknowledges: every record once, in each adder's order. */
START_TEST(concurrent_adds_and_drain)
{
	enum { T = 4, PER = 3000 };
	struct op_store *s = open_on(1000000, 0);
	pthread_t th[T];
	struct adder ad[T];
	for (int i = 0; i < T; i++) {
		ad[i] = (struct adder){s, i, PER, OP_OK};
		ck_assert_int_eq(pthread_create(&th[i], NULL, adder_main, &ad[i]), 0);
	}
	int next[T] = {0};
	uint64_t after = 0, got = 0, want = (T + 1) / 2 * PER;
	int64_t deadline = op_mono_ms() + 60000;
	while (got < want && op_mono_ms() < deadline) {
		struct op_outbox_batch b;
		ck_assert_int_eq(op_store_outbox_read(s, OP_OUTBOX_LOGS, after, 500, 64 << 10, &b),
		                 OP_OK);
		for (size_t i = 0; i < b.n; i++) {
			cJSON *j = cJSON_ParseWithLength(b.v[i].data, b.v[i].len);
			ck_assert_ptr_nonnull(j);
			int t = (int)cJSON_GetObjectItemCaseSensitive(j, "t")->valuedouble;
			int k = (int)cJSON_GetObjectItemCaseSensitive(j, "i")->valuedouble;
			cJSON_Delete(j);
			ck_assert_int_eq(t % 2, 0);
			ck_assert_int_eq(k, next[t]);
			next[t]++;
			ck_assert_uint_eq(b.v[i].seq, after + 1);
			after = b.v[i].seq;
			got++;
		}
		if (b.n)
			ck_assert_int_eq(op_store_outbox_ack(s, OP_OUTBOX_LOGS, after), OP_OK);
		else
			sched_yield();
		op_outbox_batch_free(&b);
	}
	for (int i = 0; i < T; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(ad[i].e, OP_OK);
	}
	ck_assert_uint_eq(got, want);
	flush(s);
	struct op_outbox_stats st = ostats(s);
	ck_assert_uint_eq(st.records[OP_OUTBOX_LOGS], 0);
	ck_assert_uint_eq(st.records[OP_OUTBOX_METRICS], T / 2 * PER);
	ck_assert_uint_eq(st.last_seq[OP_OUTBOX_METRICS], T / 2 * PER);
	ck_assert_uint_eq(st.dropped[OP_OUTBOX_LOGS] + st.dropped[OP_OUTBOX_METRICS], 0);
	/* Group commit: many adds a transaction. */
	struct op_store_stats ss = sstats(s);
	ck_assert_uint_lt(ss.txns * 4, ss.requests);
	op_store_close(s);
}
END_TEST

START_TEST(out_of_memory)
{
	struct op_store *s = open_on(100, 0);
	for (int i = 0; i < 5; i++)
		add(s, OP_OUTBOX_LOGS, "{\"x\":1}");
	flush(s);
	int oks = 0;
	for (uint64_t n = 1; n < 10; n++) {
		struct op_outbox_batch b;
		op_alloc_fail_at(n);
		op_err e = op_store_outbox_read(s, OP_OUTBOX_LOGS, 0, 100, 1000, &b);
		op_alloc_fail_at(0);
		ck_assert_msg(e == OP_OK || e == OP_ENOMEM, "read: %s", op_err_name(e));
		if (e == OP_OK) {
			ck_assert_uint_eq(b.n, 5);
			oks++;
		} else {
			ck_assert_uint_eq(b.n, 0);
			ck_assert_ptr_null(b.v);
		}
		op_outbox_batch_free(&b);
		op_alloc_fail_at(n);
		e = op_store_outbox_add(s, OP_OUTBOX_METRICS, "{}", 2);
		op_alloc_fail_at(0);
		ck_assert(e == OP_OK || e == OP_ENOMEM);
		op_alloc_fail_at(n);
		e = op_store_outbox_ack(s, OP_OUTBOX_METRICS, 1);
		op_alloc_fail_at(0);
		ck_assert(e == OP_OK || e == OP_ENOMEM);
	}
	ck_assert_int_gt(oks, 0);
	/* Execution copies: the record and its copy stand or fall together. */
	for (uint64_t n = 1; n < 40; n++) {
		struct op_store_exec r = exec_rec("oom", (int64_t)n);
		uint64_t execs = sstats(s).entries[OP_STORE_DB_EXECS];
		uint64_t copies = ostats(s).records[OP_OUTBOX_EXECS];
		op_alloc_fail_at(n);
		op_err e = op_store_record(s, &r);
		op_alloc_fail_at(0);
		ck_assert_msg(e == OP_OK || e == OP_ENOMEM, "record: %s", op_err_name(e));
		ck_assert_uint_eq(sstats(s).entries[OP_STORE_DB_EXECS] - execs, e == OP_OK);
		ck_assert_uint_eq(ostats(s).records[OP_OUTBOX_EXECS] - copies, e == OP_OK);
	}
	flush(s);
	ck_assert_uint_eq(ostats(s).records[OP_OUTBOX_LOGS], 5);
	op_store_close(s);
}
END_TEST

static Suite *outbox_suite(void)
{
	Suite *s = suite_create("outbox");
	TCase *tc = tcase_create("outbox");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, order_and_seq_per_stream);
	tcase_add_test(tc, seq_survives_ack_and_reopen);
	tcase_add_test(tc, crash_keeps_committed);
	tcase_add_test(tc, read_limits);
	tcase_add_test(tc, ack_deletes_exactly_upto);
	tcase_add_test(tc, bounds_drop_logs_then_metrics_then_execs);
	tcase_add_test(tc, byte_bound);
	tcase_add_test(tc, lowered_bounds);
	tcase_add_test(tc, exec_json_format);
	tcase_add_test(tc, exec_records_copied);
	tcase_add_test(tc, off_keeps_nothing);
	tcase_add_test(tc, corrupt_record_quarantined);
	tcase_add_test(tc, corrupt_record_found_after_reopen);
	tcase_add_test(tc, on_add_hook);
	tcase_add_test(tc, read_does_not_wait_for_writer);
	tcase_add_test(tc, map_full_drops_adds_not_others);
	tcase_add_test(tc, commit_full_drops_adds_keeps_others);
	tcase_add_test(tc, concurrent_adds_and_drain);
	tcase_add_test(tc, out_of_memory);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(outbox_suite)
