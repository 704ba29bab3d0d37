/*
 * Shared helpers for the unit tests. Each tests/unit/test_*.c is its own
 * program built on Check (each test forked, with a timeout) and ends with
 * OP_TEST_MAIN(suite_function). tests/run.sh runs them all and sums up.
 */
#ifndef OP_TESTS_UNIT_TEST_H
#define OP_TESTS_UNIT_TEST_H

#include <check.h>
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "agent/core/alloc.h"
#include "agent/core/err.h"

/* Parses JSON text; fails the test if it is not valid. Caller deletes. */
cJSON *op_test_json(const char *text);
/* Asserts that two JSON values are equal (ordering of object keys ignored). */
#define ck_assert_json_eq(a, b) op_test_assert_json_eq((a), (b), __FILE__, __LINE__)
void op_test_assert_json_eq(const cJSON *got, const cJSON *want, const char *file, int line);
/* Like ck_assert_json_eq with the expected value as JSON text. */
#define ck_assert_json_text(a, text) op_test_assert_json_text((a), (text), __FILE__, __LINE__)
void op_test_assert_json_text(const cJSON *got, const char *want, const char *file, int line);

/* Removes dir and everything below it (no links followed); fails the test
 * on an error. */
void op_test_rmtree(const char *dir);

/*
 * Loads the pipeline text and runs it once on {} through an engine whose
 * host lends the n folders dirs as [files] dirs (no host at all when n is
 * -1). Returns the run's result, with *out (OP_OK) or *f (a failure) set.
 */
struct op_fail;
op_err op_test_run_with_dirs(const char *pipeline, const char *const *dirs, int n, cJSON **out,
                             struct op_fail *f);

int op_test_run(Suite *s);

#define OP_TEST_MAIN(suite_fn)                  \
	int main(void)                          \
	{                                       \
		op_alloc_init();                \
		return op_test_run(suite_fn()); \
	}

#endif
