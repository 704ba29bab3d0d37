/*
 * UUIDs as RFC 9562 defines them, with random bits from getrandom(2):
 * version 4 (122 random bits) for the expression function UUID(), and
 * version 7 for the agent's own event and execution ids: a 48-bit Unix time
 * in milliseconds, then a 12-bit counter, then 62 random bits. Version 7 ids
 * sort by creation time, so the store's B-trees keyed by them (in-flight
 * leases, dead letters, the execution index) grow at their right edge and a
 * commit touches a few pages instead of one random page per id.
 *
 * The counter (RFC 9562 section 6.2, method 1) makes ids of one process
 * strictly increasing: it starts at a random value below 2048 each new
 * millisecond and counts up; if it runs out, the time field moves on one
 * millisecond. A clock that steps back keeps the last time field until the
 * clock passes it again.
 */
#include "agent/core/uuid.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

op_err op_random_bytes(void *buf, size_t len)
{
	uint8_t *b = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = getrandom(b + got, len - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return OP_EIO;
		}
		got += (size_t)n;
	}
	return OP_OK;
}

static void format(const uint8_t b[16], char out[OP_UUID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	char *o = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 15];
	}
	*o = '\0';
}

op_err op_uuid_v4(char out[OP_UUID_LEN + 1])
{
	uint8_t b[16];
	if (op_random_bytes(b, sizeof(b)) != OP_OK)
		return OP_EIO;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	format(b, out);
	return OP_OK;
}

/*
 * The random tail of a v7 id comes from a small per-thread pool, refilled
 * from the kernel a pool at a time: one getrandom(2) call per 25 ids instead
 * of one per id, which an event's intake and execution would otherwise each
 * pay. The bits are as unpredictable; a v7 id already shows its time, and
 * its order is what it is for. Nonces, keys and v4 ids read the kernel
 * directly. A forked child must not make ids from its copy of the pool
 * (the one fork, jq's program check, makes none).
 */
#define POOL_LEN  250
#define V7_RANDOM 10 /* the counter's seed (2 bytes) and 62 bits (8) */

static _Thread_local struct {
	uint8_t b[POOL_LEN];
	unsigned used;
} pool = {.used = POOL_LEN};

static op_err pool_take(uint8_t out[V7_RANDOM])
{
	if (pool.used + V7_RANDOM > POOL_LEN) {
		if (op_random_bytes(pool.b, sizeof(pool.b)) != OP_OK)
			return OP_EIO;
		pool.used = 0;
	}
	memcpy(out, pool.b + pool.used, V7_RANDOM);
	pool.used += V7_RANDOM;
	return OP_OK;
}

static pthread_mutex_t v7_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t v7_ms;  /* time field of the last id; v7_lock */
static unsigned v7_seq; /* its counter, 12 bits; v7_lock */

op_err op_uuid_v7(char out[OP_UUID_LEN + 1])
{
	uint8_t b[16];
	if (pool_take(b + 6) != OP_OK)
		return OP_EIO;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	pthread_mutex_lock(&v7_lock);
	if (now > v7_ms) {
		v7_ms = now;
		v7_seq = ((unsigned)b[6] << 8 | b[7]) & 0x7ff;
	} else if (++v7_seq > 0xfff) {
		v7_ms++;
		v7_seq = 0;
	}
	uint64_t ms = v7_ms;
	unsigned seq = v7_seq;
	pthread_mutex_unlock(&v7_lock);
	for (int i = 5; i >= 0; i--, ms >>= 8)
		b[i] = (uint8_t)(ms & 0xff);
	b[6] = (uint8_t)(0x70 | (seq >> 8));
	b[7] = (uint8_t)(seq & 0xff);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	format(b, out);
	return OP_OK;
}
