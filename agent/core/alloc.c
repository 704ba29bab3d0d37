/*
 * The allocator wrappers: libc malloc plus a process-wide counter and an
 * optional failure point for out-of-memory tests. Both are relaxed atomics:
 * they are statistics and a test switch, not synchronisation.
 */
#include "agent/core/alloc.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_uint_fast64_t n_allocs;
static atomic_uint_fast64_t fail_at; /* 0 = never fail */

static int should_fail(void)
{
	uint64_t n = atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed) + 1;
	uint64_t f = atomic_load_explicit(&fail_at, memory_order_relaxed);
	return f != 0 && n >= f;
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
	return atomic_load_explicit(&n_allocs, memory_order_relaxed);
}

void op_alloc_fail_at(uint64_t n)
{
	uint64_t now = atomic_load_explicit(&n_allocs, memory_order_relaxed);
	atomic_store_explicit(&fail_at, n ? now + n : 0, memory_order_relaxed);
}
