/* Unit tests of the core library: error classes, capped buffers, diagnostics. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/buf.h"
#include "agent/core/diag.h"
#include "agent/core/err.h"
#include "agent/core/json.h"
#include "tests/unit/test.h"

START_TEST(err_names_and_classes)
{
	op_err e;
	ck_assert_str_eq(op_err_name(OP_ETIMEOUT), "timeout");
	ck_assert(op_err_retryable(OP_ETIMEOUT));
	ck_assert(!op_err_retryable(OP_EINVAL));
	ck_assert(!op_err_retryable(OP_OK));
	ck_assert(op_err_from_name("auth", &e));
	ck_assert_int_eq(e, OP_EAUTH);
	ck_assert(!op_err_from_name("nonsense", &e));
	ck_assert_int_eq(op_err_from_errno(ENOSPC), OP_EFULL);
	ck_assert_str_eq(op_err_name((op_err)999), "internal");
}
END_TEST

START_TEST(buf_caps_without_truncating)
{
	struct op_buf b;
	op_buf_init(&b, 8);
	ck_assert_int_eq(op_buf_adds(&b, "abcd"), OP_OK);
	ck_assert_int_eq(op_buf_addf(&b, "%d", 123), OP_OK);
	ck_assert_str_eq(op_buf_str(&b), "abcd123");
	/* Two more bytes would pass the cap: refused whole, content kept. */
	ck_assert_int_eq(op_buf_adds(&b, "xy"), OP_ELIMIT);
	ck_assert_str_eq(op_buf_str(&b), "abcd123");
	ck_assert_uint_eq(b.len, 7);
	ck_assert_int_eq(op_buf_addc(&b, 'z'), OP_OK);
	ck_assert_str_eq(op_buf_str(&b), "abcd123z");
	char *s = op_buf_take(&b);
	ck_assert_str_eq(s, "abcd123z");
	op_free(s);
	ck_assert_str_eq(op_buf_str(&b), "");
	op_buf_fini(&b);
}
END_TEST

START_TEST(buf_out_of_memory_leaves_buffer)
{
	struct op_buf b;
	op_buf_init(&b, 1 << 20);
	ck_assert_int_eq(op_buf_adds(&b, "keep"), OP_OK);
	op_alloc_fail_at(1);
	char big[200];
	memset(big, 'x', sizeof(big));
	op_err e = op_buf_add(&b, big, sizeof(big));
	op_alloc_fail_at(0);
	ck_assert_int_eq(e, OP_ENOMEM);
	ck_assert_str_eq(op_buf_str(&b), "keep");
	op_buf_fini(&b);
}
END_TEST

START_TEST(diag_paths)
{
	struct op_diag d;
	op_diag_init(&d);
	size_t m0 = op_diag_push_key(&d, "steps");
	size_t m1 = op_diag_push_index(&d, 2);
	op_diag_push_key(&d, "config");
	op_diag_push_key(&d, "when");
	op_diag_push_index(&d, 0);
	op_diag_add(&d, "if", "expected %s", "an expression");
	op_diag_pop(&d, m1);
	op_diag_push_index(&d, 3);
	op_diag_add(&d, "key with spaces", "bad");
	op_diag_pop(&d, m0);
	op_diag_add(&d, NULL, "at root");
	ck_assert_uint_eq(op_diag_count(&d), 3);
	ck_assert_str_eq(d.v[0].path, "steps[2].config.when[0].if");
	ck_assert_str_eq(d.v[0].msg, "expected an expression");
	ck_assert_str_eq(d.v[1].path, "steps[3][\"key with spaces\"]");
	ck_assert_str_eq(d.v[2].path, "");
	op_diag_fini(&d);
}
END_TEST

/* Every number reads back as the same double; integers print without exponent. */
START_TEST(json_numbers_round_trip)
{
	static const char *const cases[][2] = {
	    {"9007199254740992", "9007199254740992"},
	    {"1234567890123456", "1234567890123456"},
	    {"0.1", "0.1"},
	    {"-2.5", "-2.5"},
	    {"1e300", "1e300"},
	    {"1.5e-7", "1.5e-7"},
	    {"123456789012345680000", "123456789012345680000"},
	    {"0.30000000000000004", "0.30000000000000004"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *v = op_test_json(cases[i][0]);
		char *s = op_json_print(v, OP_JSON_COMPACT);
		ck_assert_ptr_nonnull(s);
		ck_assert_double_eq(strtod(s, NULL), v->valuedouble);
		if (i < 6)
			ck_assert_str_eq(s, cases[i][1]);
		op_free(s);
		cJSON_Delete(v);
	}
	char tmp[64];
	op_json_num_format(1.0 / 0.0, tmp, sizeof(tmp));
	ck_assert_str_eq(tmp, "null");
}
END_TEST

START_TEST(json_strings_and_layout)
{
	cJSON *v = op_test_json("{\"a\":[1,{\"b\":\"q\\\"\\\\\\n\\u0001\"}],\"e\":{},\"f\":[]}");
	char *s = op_json_print(v, OP_JSON_COMPACT);
	ck_assert_str_eq(s, "{\"a\":[1,{\"b\":\"q\\\"\\\\\\n\\u0001\"}],\"e\":{},\"f\":[]}");
	op_free(s);
	s = op_json_print(v, OP_JSON_PRETTY);
	ck_assert_str_eq(
	    s, "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"q\\\"\\\\\\n\\u0001\"\n    }\n  ],\n"
	       "  \"e\": {},\n  \"f\": []\n}");
	op_free(s);
	cJSON_Delete(v);

	/* Too deep to print is an error, not a stack overflow. */
	cJSON *deep = cJSON_CreateArray();
	cJSON *cur = deep;
	for (int i = 0; i < OP_JSON_MAX_DEPTH + 5; i++) {
		cJSON *n = cJSON_CreateArray();
		cJSON_AddItemToArray(cur, n);
		cur = n;
	}
	ck_assert_ptr_null(op_json_print(deep, OP_JSON_COMPACT));
	cJSON_Delete(deep);
}
END_TEST

static Suite *core_suite(void)
{
	Suite *s = suite_create("core");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, err_names_and_classes);
	tcase_add_test(tc, buf_caps_without_truncating);
	tcase_add_test(tc, buf_out_of_memory_leaves_buffer);
	tcase_add_test(tc, diag_paths);
	tcase_add_test(tc, json_numbers_round_trip);
	tcase_add_test(tc, json_strings_and_layout);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(core_suite)
