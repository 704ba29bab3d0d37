/* OData text of the sap step: filters with values as literals (no
 * injection), key predicates, V2 answers made plain, SAP error bodies. */
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "connectors/sap/odata.h"
#include "tests/unit/test.h"

/* Renders filter src against the message msg (JSON text) into out. */
static op_err render(const char *src, const char *msg, char *out, size_t outlen)
{
	struct op_odata_filter *f = NULL;
	char why[256];
	op_err rc = op_odata_filter_compile(src, &f, why, sizeof(why));
	ck_assert_msg(rc == OP_OK, "%s: %s", src, why);
	cJSON *m = op_test_json(msg);
	struct op_expr_env env = {.message = m};
	struct op_buf b;
	op_buf_init(&b, 4096);
	rc = op_odata_filter_render(f, &env, &b, why, sizeof(why));
	snprintf(out, outlen, "%s", rc ? why : op_buf_str(&b));
	op_buf_fini(&b);
	cJSON_Delete(m);
	op_odata_filter_free(f);
	return rc;
}

START_TEST(filter_values_are_literals)
{
	char out[512];
	ck_assert_int_eq(render("SoldToParty eq {{ message.bp }} and TotalNetAmount gt {{ "
	                        "message.min }}",
	                        "{\"bp\":\"1000001\",\"min\":5000.5}", out, sizeof(out)),
	                 OP_OK);
	ck_assert_str_eq(out, "SoldToParty eq '1000001' and TotalNetAmount gt 5000.5");
	/* A quote in a value stays inside the literal: the classic injection. */
	ck_assert_int_eq(render("LastName eq {{ message.n }}", "{\"n\":\"x' or 1 eq 1 or 'a\"}",
	                        out, sizeof(out)),
	                 OP_OK);
	ck_assert_str_eq(out, "LastName eq 'x'' or 1 eq 1 or ''a'");
	/* Inside a typed literal the value is text, quotes doubled. */
	ck_assert_int_eq(render("CreationDate ge datetime'{{ message.since }}' and Name eq 'O''{{ "
	                        "message.s }}'",
	                        "{\"since\":\"2024-06-01T00:00:00\",\"s\":\"Brien'\"}", out,
	                        sizeof(out)),
	                 OP_OK);
	ck_assert_str_eq(out, "CreationDate ge datetime'2024-06-01T00:00:00' and Name eq "
	                      "'O''Brien'''");
	ck_assert_int_eq(render("A eq {{ message.t }} and B eq {{ message.z }}",
	                        "{\"t\":true,\"z\":null}", out, sizeof(out)),
	                 OP_OK);
	ck_assert_str_eq(out, "A eq true and B eq null");
	ck_assert_int_eq(render("A eq {{ message.o }}", "{\"o\":{\"x\":1}}", out, sizeof(out)),
	                 OP_EINVAL);
	ck_assert_msg(strstr(out, "an object") != NULL, "%s", out);
}
END_TEST

START_TEST(filter_compile_errors_name_the_column)
{
	struct op_odata_filter *f = NULL;
	char why[256];
	ck_assert_int_eq(op_odata_filter_compile("A eq {{ message.x", &f, why, sizeof(why)),
	                 OP_EPARSE);
	ck_assert_msg(strstr(why, "column 6") != NULL, "%s", why);
	ck_assert_int_eq(op_odata_filter_compile("A eq 'open", &f, why, sizeof(why)), OP_EPARSE);
	ck_assert_msg(strstr(why, "column 6") != NULL && strstr(why, "quote"), "%s", why);
	ck_assert_int_eq(op_odata_filter_compile("A eq {{ NOSUCH(1) }}", &f, why, sizeof(why)),
	                 OP_EPARSE);
	ck_assert_msg(strstr(why, "column 6") != NULL, "%s", why);
	ck_assert_ptr_null(f);
}
END_TEST

static void expect_key(const char *json, const char *want)
{
	cJSON *k = op_test_json(json);
	struct op_buf b;
	op_buf_init(&b, 1024);
	char why[256];
	op_err rc = op_odata_key(&b, k, why, sizeof(why));
	if (want) {
		ck_assert_msg(rc == OP_OK, "%s: %s", json, why);
		ck_assert_str_eq(op_buf_str(&b), want);
	} else {
		ck_assert_int_eq(rc, OP_EINVAL);
	}
	op_buf_fini(&b);
	cJSON_Delete(k);
}

START_TEST(key_predicates)
{
	expect_key("\"5000001\"", "('5000001')");
	expect_key("42", "(42)");
	expect_key("\"it's\"", "('it''s')");
	expect_key("{\"SalesOrder\":\"1\",\"SalesOrderItem\":\"10\"}",
	           "(SalesOrder='1',SalesOrderItem='10')");
	expect_key("{}", NULL);
	expect_key("{\"a b\":1}", NULL);
	expect_key("{\"A\":[1]}", NULL);
	expect_key("[1]", NULL);
	expect_key("null", NULL);
}
END_TEST

START_TEST(v2_answers_made_plain)
{
	cJSON *v = op_test_json(
	    "{\"SalesOrder\":\"5000001\",\"CreationDate\":\"/Date(1701302400000)/\","
	    "\"Changed\":\"/Date(1701302400123+0060)/\",\"Text\":\"/Date(x)/\","
	    "\"__metadata\":{\"uri\":\"u\",\"etag\":\"W/\\\"1\\\"\"},"
	    "\"to_Partner\":{\"__deferred\":{\"uri\":\"u2\"}},"
	    "\"to_Item\":{\"results\":[{\"Item\":\"10\",\"__metadata\":{\"uri\":\"u3\"}}]}}");
	op_odata_v2_plain(v);
	ck_assert_json_text(v,
	                    "{\"SalesOrder\":\"5000001\",\"CreationDate\":\"2023-11-30T00:00:00Z\","
	                    "\"Changed\":\"2023-11-30T00:00:00.123Z\",\"Text\":\"/Date(x)/\","
	                    "\"@odata.etag\":\"W/\\\"1\\\"\",\"to_Item\":[{\"Item\":\"10\"}]}");
	cJSON_Delete(v);
	/* Collections inside arrays, one after another (each replaced in place). */
	v = op_test_json("[{\"x\":[{\"results\":[1]},{\"results\":[\"/Date(0)/\"]}]}]");
	op_odata_v2_plain(v);
	ck_assert_json_text(v, "[{\"x\":[[1],[\"1970-01-01T00:00:00Z\"]]}]");
	cJSON_Delete(v);
}
END_TEST

static void expect_error(const char *body, const char *code, const char *msg)
{
	char c[64], m[512];
	op_odata_error(body, strlen(body), c, sizeof(c), m, sizeof(m));
	ck_assert_str_eq(c, code);
	ck_assert_str_eq(m, msg);
}

START_TEST(sap_error_bodies)
{
	expect_error(
	    "{\"error\":{\"code\":\"V1/302\",\"message\":{\"lang\":\"en\",\"value\":\"Sold-to "
	    "party 999 does not exist\"},\"target\":\"SoldToParty\",\"innererror\":{"
	    "\"errordetails\":[{\"code\":\"V1/302\",\"message\":\"Sold-to party 999 does "
	    "not exist\"},{\"code\":\"V1/555\",\"message\":\"Check the partner\"}]}}}",
	    "V1/302",
	    "Sold-to party 999 does not exist [SoldToParty]; V1/555: Check the "
	    "partner");
	expect_error(
	    "{\"error\":{\"code\":\"404\",\"message\":\"Not Found\",\"target\":\"/#TRANSIENT#\"}}",
	    "404", "Not Found");
	expect_error("<?xml version=\"1.0\"?><error><code>SY/530</code><message "
	             "xml:lang=\"en\">No authorization</message></error>",
	             "SY/530", "No authorization");
	expect_error("<html><body><h1>Logon failed</h1>\n<p>Try again</p></body></html>", "",
	             "Logon failed Try again");
	expect_error("CSRF token validation failed", "", "CSRF token validation failed");
}
END_TEST

static Suite *sap_suite(void)
{
	Suite *s = suite_create("sap");
	TCase *tc = tcase_create("odata");
	tcase_add_test(tc, filter_values_are_literals);
	tcase_add_test(tc, filter_compile_errors_name_the_column);
	tcase_add_test(tc, key_predicates);
	tcase_add_test(tc, v2_answers_made_plain);
	tcase_add_test(tc, sap_error_bodies);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(sap_suite)
