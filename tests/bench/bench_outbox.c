/*
 * Benchmark of the store's outbox, the store side of the control link's
 * drain (target: >= 50,000 records/s end to end): detached adds of ~200-byte
 * log records until committed, reads of 1,000-record batches, acks of
 * 1,000 records at a time, then one thread adding while another reads and
 * acknowledges, as the drain does (without MQTT). Default LMDB sync mode.
 * Runs in a fresh directory under $TMPDIR (default /var/tmp), removed after.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/alloc.h"
#include "agent/core/log.h"
#include "agent/store/store.h"

#define N     200000 /* records a phase */
#define BATCH 1000   /* records a read and an ack */

static const char line[] =
    "{\"at\":\"2026-11-24T10:15:02.123Z\",\"level\":\"warn\",\"module\":\"runtime\","
    "\"message\":\"orders: execution 01a20be9-08b8-76f5-88dc-dbba5de36840 failed: "
    "HTTP 503 from erp.example.internal (attempt 2)\"}";

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void rmtree(const char *dir)
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

/* Adds n records to the logs and waits for their commit; records/s. */
static double adds(struct op_store *s, long n)
{
	double t0 = now_s();
	for (long i = 0; i < n; i++)
		if (op_store_outbox_add(s, OP_OUTBOX_LOGS, line, sizeof(line) - 1) != OP_OK)
			return -1;
	if (op_store_flush(s) != OP_OK)
		return -1;
	return (double)n / (now_s() - t0);
}

/* Reads every log record in batches; records/s, and the slowest batch. */
static double reads(struct op_store *s, long want, double *worst_ms)
{
	uint64_t after = 0;
	long got = 0;
	*worst_ms = 0;
	double t0 = now_s();
	while (got < want) {
		struct op_outbox_batch b;
		double b0 = now_s();
		if (op_store_outbox_read(s, OP_OUTBOX_LOGS, after, BATCH, 256 << 10, &b) != OP_OK ||
		    b.n == 0)
			return -1;
		double ms = (now_s() - b0) * 1e3;
		*worst_ms = ms > *worst_ms ? ms : *worst_ms;
		after = b.v[b.n - 1].seq;
		got += (long)b.n;
		op_outbox_batch_free(&b);
	}
	return (double)got / (now_s() - t0);
}

/* Acknowledges the log records BATCH at a time up to last, then waits for
 * the commit; records/s. */
static double acks(struct op_store *s, uint64_t first, uint64_t last)
{
	double t0 = now_s();
	for (uint64_t upto = first + BATCH - 1; upto < last + BATCH; upto += BATCH)
		if (op_store_outbox_ack(s, OP_OUTBOX_LOGS, upto < last ? upto : last) != OP_OK)
			return -1;
	if (op_store_flush(s) != OP_OK)
		return -1;
	return (double)(last - first + 1) / (now_s() - t0);
}

struct drain {
	struct op_store *s;
	atomic_long want;
	long got;
	int failed;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool hint; /* under mu: the store committed records since the last read */
};

/* The store's writer thread: records were committed. */
static void on_add(void *ud)
{
	struct drain *d = ud;
	pthread_mutex_lock(&d->mu);
	d->hint = true;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

/* The drain's loop: read a batch after the last one sent, acknowledge it. */
static void *drain_main(void *p)
{
	struct drain *d = p;
	uint64_t after = 0;
	while (d->got < atomic_load(&d->want)) {
		struct op_outbox_batch b;
		if (op_store_outbox_read(d->s, OP_OUTBOX_LOGS, after, BATCH, 256 << 10, &b) !=
		    OP_OK) {
			d->failed = 1;
			return NULL;
		}
		if (b.n == 0) {
			/* Nothing committed yet: wait for the hook (a hint that came
			 * between the read and here is not lost: it is still set). */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_mutex_lock(&d->mu);
			while (!d->hint && pthread_cond_timedwait(&d->cv, &d->mu, &ts) == 0)
				;
			d->hint = false;
			pthread_mutex_unlock(&d->mu);
			continue;
		}
		after = b.v[b.n - 1].seq;
		d->got += (long)b.n;
		op_outbox_batch_free(&b);
		if (op_store_outbox_ack(d->s, OP_OUTBOX_LOGS, after) != OP_OK) {
			d->failed = 1;
			return NULL;
		}
	}
	return NULL;
}

/* One thread adds n while the drain takes them; records/s through both. */
static double end_to_end(struct op_store *s, long n)
{
	struct drain d = {.s = s};
	double rate = -1;
	atomic_store(&d.want, n);
	pthread_mutex_init(&d.mu, NULL);
	pthread_cond_init(&d.cv, NULL);
	op_store_outbox_on_add(s, on_add, &d);
	pthread_t th;
	double t0 = now_s();
	if (pthread_create(&th, NULL, drain_main, &d) != 0)
		goto out;
	int failed = 0;
	for (long i = 0; i < n && !failed; i++)
		failed = op_store_outbox_add(s, OP_OUTBOX_LOGS, line, sizeof(line) - 1) != OP_OK;
	if (failed)
		atomic_store(&d.want, 0);
	pthread_join(th, NULL);
	if (!failed && !d.failed)
		rate = (double)n / (now_s() - t0);
out:
	op_store_outbox_on_add(s, NULL, NULL);
	pthread_cond_destroy(&d.cv);
	pthread_mutex_destroy(&d.mu);
	return rate;
}

int main(void)
{
	op_alloc_init();
	op_log_set_level(OP_LOG_WARN);
	const char *tmp = getenv("TMPDIR");
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/op-bench-outbox-XXXXXX", tmp && *tmp ? tmp : "/var/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	struct op_store_opts o = {.dir = dir, .map_initial = 64 << 20};
	struct op_store *s;
	char err[256];
	if (op_store_open(&o, &s, err, sizeof(err)) != OP_OK) {
		fprintf(stderr, "bench: open: %s\n", err);
		rmtree(dir);
		return 1;
	}
	struct op_outbox_limits l = {10000000, 0};
	op_store_outbox_limits(s, &l);
	struct op_store_stats a, b;
	double worst = 0, add_rate = -1, read_rate = -1, ack_rate = -1, e2e = -1, batch = 0;
	if (op_store_stats(s, &a) == OP_OK) {
		add_rate = adds(s, N);
		if (op_store_stats(s, &b) == OP_OK && b.txns > a.txns)
			batch = (double)(b.requests - a.requests) / (double)(b.txns - a.txns);
	}
	if (add_rate > 0)
		read_rate = reads(s, N, &worst);
	if (read_rate > 0)
		ack_rate = acks(s, 1, N);
	if (ack_rate > 0)
		e2e = end_to_end(s, N);
	op_store_close(s);
	rmtree(dir);
	if (e2e <= 0) {
		fprintf(stderr, "bench: outbox failed\n");
		return 1;
	}
	printf("bench: outbox_add %.0f records/s (committed, %.0f per commit)\n", add_rate, batch);
	printf("bench: outbox_read %.0f records/s (%.3f ms a batch of %d, slowest %.2f ms)\n",
	       read_rate, BATCH * 1e3 / read_rate, BATCH, worst);
	printf("bench: outbox_ack %.0f records/s (%d a call)\n", ack_rate, BATCH);
	printf("bench: outbox_add_read_ack %.0f records/s (one adder, one drain)\n", e2e);
	return 0;
}
