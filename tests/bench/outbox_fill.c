/*
 * outbox_fill: the backlog of tests/bench/bench_control.sh's drain.
 *
 *   outbox_fill STORE_DIR N
 *
 * Opens (creating) the agent's store at STORE_DIR (its data_dir/store),
 * turns the outbox on with bounds above N, adds N log records of about 200
 * bytes each (as an agent whose link was down for a long time would have
 * kept them), waits for their commit and closes. What an agent started on
 * that store then drains is what the benchmark times. Prints one line:
 *   outbox_fill: N records in MS ms
 * and exits 0, or 1 with the store's error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "agent/core/log.h"
#include "agent/store/store.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	char *end = NULL;
	long n = argc == 3 ? strtol(argv[2], &end, 10) : 0;
	if (argc != 3 || n <= 0 || *end != '\0') {
		fprintf(stderr, "usage: outbox_fill STORE_DIR N\n");
		return 2;
	}
	op_log_set_level(OP_LOG_ERROR);
	struct op_store_opts o = {.dir = argv[1], .map_max = (size_t)4 << 30};
	struct op_store *s = NULL;
	char err[256];
	if (op_store_open(&o, &s, err, sizeof(err)) != OP_OK) {
		fprintf(stderr, "outbox_fill: %s\n", err);
		return 1;
	}
	struct op_outbox_limits lim = {.max_records = (uint64_t)n * 2,
	                               .max_bytes = (uint64_t)n * 1024};
	op_store_outbox_limits(s, &lim);
	double t0 = now_s();
	char rec[256];
	for (long i = 0; i < n; i++) {
		int len = snprintf(rec, sizeof(rec),
		                   "{\"at\":\"2026-11-24T10:15:02.123Z\",\"level\":\"warn\","
		                   "\"module\":\"runtime\",\"message\":\"orders: execution %ld "
		                   "failed: HTTP 503 from erp.example.internal (attempt 2)\"}",
		                   i);
		if (op_store_outbox_add(s, OP_OUTBOX_LOGS, rec, (size_t)len) != OP_OK) {
			fprintf(stderr, "outbox_fill: record %ld was refused\n", i);
			op_store_close(s);
			return 1;
		}
	}
	op_err rc = op_store_flush(s);
	struct op_outbox_stats st;
	op_store_outbox_stats(s, &st);
	op_store_close(s);
	if (rc != OP_OK || st.records[OP_OUTBOX_LOGS] != (uint64_t)n) {
		fprintf(stderr, "outbox_fill: %llu records kept of %ld (%s)\n",
		        (unsigned long long)st.records[OP_OUTBOX_LOGS], n, op_err_str(rc));
		return 1;
	}
	printf("outbox_fill: %ld records in %.0f ms\n", n, (now_s() - t0) * 1000);
	return 0;
}
