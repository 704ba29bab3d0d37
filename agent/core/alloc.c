/*
 * The allocator wrappers: malloc (jemalloc in outpostd, see the Makefile)
 * plus a per-thread counter and an optional failure point for out-of-memory
 * tests. The counter is per thread because every thread allocates all the
 * time: one process-wide atomic was a cache line that every allocation on
 * every core wrote, 7% of the CPU of an HTTP thread under load. The failure
 * point is one relaxed load while off; a test that arms it makes allocations
 * on every thread count towards it.
 */
#include "agent/core/alloc.h"

#include <cjson/cJSON.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* jemalloc's control call: not NULL when the binary links jemalloc
 * (outpostd, see the Makefile). */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
    __attribute__((weak));

static _Thread_local uint64_t n_thread; /* this thread's allocations */
static atomic_uint_fast64_t fail_at;    /* 0 = never fail; else the n-th since armed */
static atomic_uint_fast64_t n_armed;    /* allocations since op_alloc_fail_at armed it */

static int should_fail(void)
{
	n_thread++;
	uint64_t f = atomic_load_explicit(&fail_at, memory_order_acquire);
	if (f == 0)
		return 0;
	return atomic_fetch_add_explicit(&n_armed, 1, memory_order_relaxed) + 1 >= f;
}

void *op_malloc(size_t n)
{
	if (should_fail())
		return NULL;
	return malloc(n ? n : 1);
}

void *op_calloc(size_t nmemb, size_t size)
{
	if (should_fail())
		return NULL;
	return calloc(nmemb ? nmemb : 1, size ? size : 1);
}

void *op_realloc(void *p, size_t n)
{
	if (should_fail())
		return NULL;
	return realloc(p, n ? n : 1);
}

void op_free(void *p)
{
	free(p);
}

void op_free_secret(void *p, size_t n)
{
	if (p == NULL)
		return;
	volatile unsigned char *v = p;
	while (n--)
		*v++ = 0;
	free(p);
}

char *op_strndup(const char *s, size_t n)
{
	char *d = op_malloc(n + 1);
	if (d == NULL)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *op_strdup(const char *s)
{
	return op_strndup(s, strlen(s));
}

void op_alloc_trim(void)
{
	if (mallctl == NULL)
		(void)malloc_trim(0);
}

static void *cjson_malloc(size_t n)
{
	return op_malloc(n);
}

void op_alloc_init(void)
{
	cJSON_Hooks h = {.malloc_fn = cjson_malloc, .free_fn = op_free};
	cJSON_InitHooks(&h);
}

uint64_t op_alloc_count(void)
{
	return n_thread;
}

void op_alloc_fail_at(uint64_t n)
{
	atomic_store_explicit(&fail_at, 0, memory_order_relaxed);
	atomic_store_explicit(&n_armed, 0, memory_order_relaxed);
	atomic_store_explicit(&fail_at, n, memory_order_release); /* after the reset count */
}
