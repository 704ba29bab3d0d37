/*
 * Unit tests of the shared HTTP client's pure parts (connectors/httpc): the
 * status mapping of the house style, percent-encoding for queries and forms,
 * URLs shown in messages without credentials or queries, and the JSON
 * parser with positions that reads response bodies. Exchanges with real
 * servers are tested end to end in tests/e2e/test_rest.sh.
 */
#include <string.h>

#include "agent/core/json.h"
#include "connectors/httpc/httpc.h"
#include "tests/unit/test.h"

START_TEST(status_classes_follow_the_house_mapping)
{
	static const struct {
		long status;
		op_err cls;
	} cases[] = {
	    {200, OP_OK},        {201, OP_OK},        {204, OP_OK},        {299, OP_OK},
	    {408, OP_ETIMEOUT},  {429, OP_EBUSY},     {500, OP_ERETRY},    {502, OP_ERETRY},
	    {503, OP_ERETRY},    {599, OP_ERETRY},    {401, OP_EAUTH},     {403, OP_EAUTH},
	    {404, OP_ENOTFOUND}, {410, OP_ENOTFOUND}, {413, OP_ELIMIT},    {400, OP_EREJECTED},
	    {409, OP_EREJECTED}, {422, OP_EREJECTED}, {301, OP_EREJECTED}, {100, OP_EREJECTED},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_msg(op_httpc_status_class(cases[i].status) == cases[i].cls, "status %ld",
		              cases[i].status);
		/* Retryable exactly for 408, 429 and 5xx. */
		long s = cases[i].status;
		ck_assert_int_eq(op_err_retryable(op_httpc_status_class(s)),
		                 s == 408 || s == 429 || (s >= 500 && s < 600));
	}
}
END_TEST

START_TEST(escaping_keeps_only_unreserved)
{
	struct op_buf b;
	op_buf_init(&b, 1024);
	const char in[] = "a b&c=d/é~._-%+\n";
	ck_assert_int_eq(op_httpc_escape(&b, in, strlen(in)), OP_OK);
	ck_assert_str_eq(op_buf_str(&b), "a%20b%26c%3Dd%2F%C3%A9~._-%25%2B%0A");
	op_buf_reset(&b);
	ck_assert_int_eq(op_httpc_form_add(&b, "grant type", "x"), OP_OK);
	ck_assert_int_eq(op_httpc_form_add(&b, "k", ""), OP_OK);
	ck_assert_str_eq(op_buf_str(&b), "grant%20type=x&k=");
	/* Bytes with NUL inside are encoded too (length, not terminator). */
	op_buf_reset(&b);
	ck_assert_int_eq(op_httpc_escape(&b, "a\0b", 3), OP_OK);
	ck_assert_str_eq(op_buf_str(&b), "a%00b");
	/* Past the cap: an error, never a cut result. */
	struct op_buf small;
	op_buf_init(&small, 5);
	ck_assert_int_eq(op_httpc_escape(&small, "////", 4), OP_ELIMIT);
	op_buf_fini(&small);
	op_buf_fini(&b);
}
END_TEST

START_TEST(urls_in_messages_hide_credentials_and_queries)
{
	char out[256];
	op_httpc_url_for_humans("https://user:pw@api.example:8443/v1/orders?key=s3cret#frag", out,
	                        sizeof(out));
	ck_assert_str_eq(out, "https://api.example:8443/v1/orders");
	op_httpc_url_for_humans("http://h/a@b?x=1", out, sizeof(out));
	ck_assert_str_eq(out, "http://h/a@b");
	op_httpc_url_for_humans("http://h", out, sizeof(out));
	ck_assert_str_eq(out, "http://h");
	op_httpc_url_for_humans("http://u@h#x", out, sizeof(out));
	ck_assert_str_eq(out, "http://h");
}
END_TEST

START_TEST(json_parse_says_where)
{
	static const struct {
		const char *text;
		const char *err;
	} bad[] = {
	    {"{\"a\": ", "invalid JSON at line 1, column 7: unexpected end of input"},
	    {"{\"a\": 1,\n \"b\" 2}",
	     "invalid JSON at line 2, column 6: unexpected text near \"2}\""},
	    {"[1] x", "invalid JSON at line 1, column 5: unexpected text near \"x\""},
	    {"", "invalid JSON at line 1, column 1: unexpected end of input"},
	};
	char err[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *v = (cJSON *)1;
		ck_assert_int_eq(
		    op_json_parse(bad[i].text, strlen(bad[i].text), &v, err, sizeof(err)),
		    OP_EPARSE);
		ck_assert_ptr_null(v);
		ck_assert_str_eq(err, bad[i].err);
	}
	const char nul[] = "{\"a\":\0}";
	cJSON *v = NULL;
	ck_assert_int_eq(op_json_parse(nul, sizeof(nul) - 1, &v, err, sizeof(err)), OP_EPARSE);
	ck_assert_str_eq(err, "invalid JSON: NUL byte at offset 5");
	ck_assert_int_eq(op_json_parse("{\"a\": [1, 2]}", 13, &v, err, sizeof(err)), OP_OK);
	ck_assert_json_text(v, "{\"a\":[1,2]}");
	cJSON_Delete(v);
	ck_assert(op_json_media_type("application/json"));
	ck_assert(op_json_media_type("Application/JSON; charset=utf-8"));
	ck_assert(op_json_media_type("application/problem+json"));
	ck_assert(!op_json_media_type("text/json+x"));
	ck_assert(!op_json_media_type("application/jsonx"));
	ck_assert(!op_json_media_type(""));
}
END_TEST

static Suite *httpc_suite(void)
{
	Suite *s = suite_create("httpc");
	TCase *tc = tcase_create("httpc");
	tcase_add_test(tc, status_classes_follow_the_house_mapping);
	tcase_add_test(tc, escaping_keeps_only_unreserved);
	tcase_add_test(tc, urls_in_messages_hide_credentials_and_queries);
	tcase_add_test(tc, json_parse_says_where);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(httpc_suite)
