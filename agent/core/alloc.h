/*
 * Allocation wrappers. Every allocation in Outpost (and in cJSON, through its
 * hooks) goes through here so that out-of-memory is an error the caller
 * handles, never an abort, and so tests can make the Nth allocation fail and
 * benchmarks can count allocations. op_free(NULL) is a no-op.
 */
#ifndef OP_CORE_ALLOC_H
#define OP_CORE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *op_malloc(size_t n) __attribute__((malloc));
void *op_calloc(size_t nmemb, size_t size) __attribute__((malloc));
void *op_realloc(void *p, size_t n);
void op_free(void *p);
char *op_strdup(const char *s) __attribute__((malloc));
char *op_strndup(const char *s, size_t n) __attribute__((malloc));
/* Zeroes n bytes at p (not optimised away), then frees p. For secrets. */
void op_free_secret(void *p, size_t n);

/*
 * Gives the heap's free memory back to the system now (malloc_trim), unless
 * the binary has jemalloc (outpostd): that returns it by itself, a few
 * seconds after the next allocations, and its purge call would first
 * allocate its statistics tables, which cost more than a purge frees.
 */
void op_alloc_trim(void);

/* Routes cJSON's allocations through these wrappers. Call once at start. */
void op_alloc_init(void);

/* Number of allocations the calling thread has made so far. */
uint64_t op_alloc_count(void);

/*
 * Test hook: the n-th allocation from now (1 = the next one), on any thread,
 * and every one after it fail until op_alloc_fail_at(0) switches failures off.
 */
void op_alloc_fail_at(uint64_t n);

#endif
