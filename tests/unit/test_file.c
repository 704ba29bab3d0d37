/*
 * Unit tests of the file connector's CSV reader and writer: RFC 4180
 * quoting, CRLF and LF, blank lines, headers, other delimiters, errors
 * with their line, and a write read back unchanged. The step itself is
 * tested end to end in tests/e2e/test_file.sh.
 */
#include <string.h>

#include "connectors/file/csv.h"
#include "tests/unit/test.h"

static char err[256];

static void parses(const char *text, char delim, bool header, const char *json)
{
	cJSON *v = NULL;
	ck_assert_msg(op_csv_parse(text, strlen(text), delim, header, &v, err, sizeof(err)) ==
	                  OP_OK,
	              "%s: %s", text, err);
	ck_assert_json_text(v, json);
	cJSON_Delete(v);
}

static void refused(const char *text, const char *msg)
{
	cJSON *v = (cJSON *)1;
	ck_assert_int_eq(op_csv_parse(text, strlen(text), ',', true, &v, err, sizeof(err)),
	                 OP_EPARSE);
	ck_assert_ptr_null(v);
	ck_assert_msg(strstr(err, msg) != NULL, "%s: got \"%s\"", text, err);
}

START_TEST(csv_reads_rfc4180)
{
	parses("a,b\r\n1,2\r\n", ',', true, "[{\"a\":\"1\",\"b\":\"2\"}]");
	parses("a,b\n1,2", ',', true, "[{\"a\":\"1\",\"b\":\"2\"}]");
	parses("a,b\n\n1\n\n", ',', true, "[{\"a\":\"1\",\"b\":\"\"}]");
	parses("a\tb\n\"x\ty\"\t\"q\"\"q\"\n", '\t', true, "[{\"a\":\"x\\ty\",\"b\":\"q\\\"q\"}]");
	parses("\"multi\nline\",2\n", ',', false, "[[\"multi\\nline\",\"2\"]]");
	parses(",\n", ',', false, "[[\"\",\"\"]]");
	parses("\"\"\n", ',', false, "[[\"\"]]");
	parses("", ',', true, "[]");
	parses("a,b\n", ',', true, "[]");
	refused("a,b\n1,2,3\n", "line 2: 3 fields, the header names 2");
	refused("a\n\"open\n", "line 2: a quoted field is not closed");
	refused("a\nx\"y\n", "line 2: a quote inside a field");
	refused("a\n\"x\"y\n", "line 2: a quote inside a field");
}
END_TEST

START_TEST(csv_writes_and_reads_back)
{
	cJSON *rows = cJSON_Parse("[{\"id\":1,\"name\":\"Smith, J\",\"note\":\"say \\\"hi\\\"\\n\","
	                          "\"ok\":true},{\"id\":2.5,\"name\":null,\"ok\":false}]");
	struct op_buf b;
	op_buf_init(&b, 1 << 20);
	ck_assert_int_eq(op_csv_write(&b, rows, ',', true, err, sizeof(err)), OP_OK);
	ck_assert_str_eq(op_buf_str(&b), "id,name,note,ok\r\n1,\"Smith, J\",\"say \"\"hi\"\"\n\","
	                                 "true\r\n2.5,,,false\r\n");
	cJSON *back = NULL;
	ck_assert_int_eq(op_csv_parse(b.data, b.len, ',', true, &back, err, sizeof(err)), OP_OK);
	ck_assert_json_text(back, "[{\"id\":\"1\",\"name\":\"Smith, J\",\"note\":\"say "
	                          "\\\"hi\\\"\\n\",\"ok\":\"true\"},{\"id\":\"2.5\",\"name\":\"\","
	                          "\"note\":\"\",\"ok\":\"false\"}]");
	cJSON_Delete(back);
	cJSON_Delete(rows);
	op_buf_reset(&b);
	rows = cJSON_Parse("[[1,\"a;b\"],{\"x\":1}]");
	ck_assert_int_eq(op_csv_write(&b, rows, ';', false, err, sizeof(err)), OP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "row 1: expected an array like the first row"));
	cJSON_Delete(rows);
	op_buf_fini(&b);
}
END_TEST

static Suite *file_suite(void)
{
	Suite *s = suite_create("file");
	TCase *tc = tcase_create("csv");
	tcase_add_test(tc, csv_reads_rfc4180);
	tcase_add_test(tc, csv_writes_and_reads_back);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(file_suite)
