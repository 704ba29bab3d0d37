/*
 * Benchmark of the store's durable enqueue: one thread alone, then 32 threads
 * at once, each call returning only after its event is committed (default
 * LMDB sync mode, so every transaction is an fsync). Group commit is what
 * lets 32 callers share one fsync; the batch line shows how many did.
 * Runs in a fresh directory under $TMPDIR (default /var/tmp), removed after.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/alloc.h"
#include "agent/core/log.h"
#include "agent/store/store.h"

#define SECONDS 2.0

static const char order[] =
    "{\"orderId\":\"SO-1000234\",\"customer\":{\"id\":\"C-778\",\"name\":\"ACME Industrial\","
    "\"country\":\"DE\"},\"lines\":[{\"sku\":\"BRG-6204\",\"qty\":40,\"price\":3.85},"
    "{\"sku\":\"SEAL-22x35\",\"qty\":120,\"price\":0.42}],\"currency\":\"EUR\","
    "\"requestedDelivery\":\"2026-12-01\",\"channel\":\"edi\",\"priority\":\"normal\"}";

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct worker {
	struct op_store *s;
	double until;
	long done;
	int failed;
};

static void *run(void *p)
{
	struct worker *w = p;
	while (now_s() < w->until) {
		if (op_store_enqueue(w->s, "orders", "{\"type\":\"http\"}", order,
		                     sizeof(order) - 1, 0, NULL) != OP_OK) {
			w->failed = 1;
			break;
		}
		w->done++;
	}
	return NULL;
}

/* Events per second with n threads; batch gets requests per transaction. */
static double phase(struct op_store *s, int n, double *batch)
{
	pthread_t th[32];
	struct worker w[32];
	struct op_store_stats a, b;
	if (op_store_stats(s, &a) != OP_OK)
		return -1;
	double t0 = now_s();
	for (int i = 0; i < n; i++) {
		w[i] = (struct worker){s, t0 + SECONDS, 0, 0};
		pthread_create(&th[i], NULL, run, &w[i]);
	}
	long total = 0;
	int failed = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		total += w[i].done;
		failed |= w[i].failed;
	}
	double dt = now_s() - t0;
	if (failed || op_store_stats(s, &b) != OP_OK)
		return -1;
	*batch = (double)(b.requests - a.requests) / (double)(b.txns - a.txns);
	return (double)total / dt;
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

int main(void)
{
	op_alloc_init();
	op_log_set_level(OP_LOG_WARN);
	const char *tmp = getenv("TMPDIR");
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/op-bench-store-XXXXXX", tmp && *tmp ? tmp : "/var/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	struct op_store_opts o = {.dir = dir,
	                          .map_initial = 64 << 20,
	                          .queue_max_events = 10000000,
	                          .queue_max_bytes = (uint64_t)1 << 30};
	struct op_store *s;
	char err[256];
	if (op_store_open(&o, &s, err, sizeof(err)) != OP_OK) {
		fprintf(stderr, "bench: open: %s\n", err);
		rmtree(dir);
		return 1;
	}
	double b1 = 0, b32 = 0;
	double one = phase(s, 1, &b1);
	double many = phase(s, 32, &b32);
	op_store_close(s);
	rmtree(dir);
	if (one <= 0 || many <= 0) {
		fprintf(stderr, "bench: store enqueue failed\n");
		return 1;
	}
	printf("bench: store_enqueue_1_thread %.0f events/s\n", one);
	printf("bench: store_enqueue_32_threads %.0f events/s\n", many);
	printf("bench: store_group_commit_batch %.1f events/txn\n", b32);
	printf("bench: store_enqueue_32_vs_1_thread %.2f ratio\n", many / one);
	return 0;
}
