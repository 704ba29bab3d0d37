/*
 * Unit tests of the db connector's pure parts: SQL templates (placeholders,
 * expressions refused inside quotes, identifiers, $-strings and comments),
 * bind parameter text, and exact decimals. Statements against a real
 * PostgreSQL are tested in tests/e2e/test_db.sh.
 */
#include <string.h>

#include "agent/core/alloc.h"
#include "connectors/db/db_int.h"
#include "connectors/db/sql.h"
#include "tests/unit/test.h"

static char err[512];

static void compiles(const char *src, enum op_sql_style st, const char *text, size_t n)
{
	struct op_sql *q = NULL;
	ck_assert_msg(op_sql_compile(src, st, &q, err, sizeof(err)) == OP_OK, "%s: %s", src, err);
	ck_assert_str_eq(q->text, text);
	ck_assert_uint_eq(q->n, n);
	op_sql_free(q);
}

static void refused(const char *src, const char *msg)
{
	struct op_sql *q = (struct op_sql *)1;
	ck_assert_int_eq(op_sql_compile(src, OP_SQL_DOLLAR, &q, err, sizeof(err)), OP_EPARSE);
	ck_assert_ptr_null(q);
	ck_assert_msg(strstr(err, msg) != NULL, "%s: got \"%s\", expected \"%s\"", src, err, msg);
}

START_TEST(sql_templates_bind_every_value)
{
	compiles("SELECT * FROM t WHERE a = {{ message.a }} AND b > {{ message.b + 1 }}",
	         OP_SQL_DOLLAR, "SELECT * FROM t WHERE a = $1 AND b > $2", 2);
	compiles("INSERT INTO t VALUES ({{ message.a }},{{ message.b }})", OP_SQL_QUESTION,
	         "INSERT INTO t VALUES (?,?)", 2);
	/* Quotes, identifiers, escapes and comments pass through untouched. */
	compiles(
	    "SELECT 'it''s', \"Col\"\"x\", E'a\\'b', $$x{y}$$, $t$ $$ $t$ -- c\n, a/* b /* c */ */",
	    OP_SQL_DOLLAR,
	    "SELECT 'it''s', \"Col\"\"x\", E'a\\'b', $$x{y}$$, $t$ $$ $t$ -- c\n, a/* b /* c */ */",
	    0);
	/* An expression with "}}" inside its own string. */
	compiles("SELECT {{ CONCAT(\"}}\", message.a) }}", OP_SQL_DOLLAR, "SELECT $1", 1);
	/* A jsonb ? operator is fine with $n placeholders; an identifier with $. */
	compiles("SELECT doc ? 'k', a$1 FROM t", OP_SQL_DOLLAR, "SELECT doc ? 'k', a$1 FROM t", 0);
}
END_TEST

START_TEST(sql_expressions_never_inside_quotes)
{
	refused("SELECT 1 WHERE a = '{{ message.a }}'",
	        "column 21: an expression inside a quoted string (opened at column 20)");
	refused("SELECT \"{{ message.col }}\" FROM t", "inside a quoted identifier");
	refused("SELECT $$ {{ message.a }} $$", "inside a $-quoted string");
	refused("SELECT 1 -- {{ message.a }}", "inside a comment");
	refused("SELECT 1 /* /* */ {{ message.a }} */", "inside a comment");
	refused("SELECT 'abc", "a quoted string opened at column 8 is not closed");
	refused("SELECT {{ message.a ", "column 8: {{ without }}");
	refused("SELECT {{ nope( }}", "column 8:");
	refused("SELECT * FROM t WHERE a = $1",
	        "column 27: write values as {{ expressions }}, not $n");
	refused("", "the statement is empty");
	struct op_sql *q = NULL;
	ck_assert_int_eq(op_sql_compile("SELECT ?", OP_SQL_QUESTION, &q, err, sizeof(err)),
	                 OP_EPARSE);
	ck_assert_ptr_nonnull(strstr(err, "not ?"));
}
END_TEST

START_TEST(parameters_and_decimals)
{
	static const struct {
		const char *json;
		const char *text; /* NULL: SQL NULL */
	} params[] = {
	    {"\"x'y\"", "x'y"}, {"12.5", "12.5"},           {"true", "true"},
	    {"null", NULL},     {"[1,\"a\"]", "[1,\"a\"]"}, {"{\"k\":null}", "{\"k\":null}"},
	    {"1e300", "1e300"},
	};
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		cJSON *v = cJSON_Parse(params[i].json);
		char *t = (char *)1;
		ck_assert_int_eq(op_db__param_text(v, &t), OP_OK);
		if (params[i].text)
			ck_assert_str_eq(t, params[i].text);
		else
			ck_assert_ptr_null(t);
		op_free(t);
		cJSON_Delete(v);
	}
	static const struct {
		const char *in;
		const char *json;
	} dec[] = {
	    {"12.50", "12.5"},
	    {"-0.050", "-0.05"},
	    {"100", "100"},
	    {"0", "0"},
	    {"9007199254740992", "9007199254740992"},
	    {"9007199254740993", "\"9007199254740993\""},
	    {"123456789012345678901234567890.123", "\"123456789012345678901234567890.123\""},
	    {"0.1", "0.1"},
	    {"0.10000000000000000001", "\"0.10000000000000000001\""},
	    {"NaN", "\"NaN\""},
	    {"1e21", "1e21"},
	};
	for (size_t i = 0; i < sizeof(dec) / sizeof(dec[0]); i++) {
		cJSON *v = op_db__decimal(dec[i].in);
		ck_assert_json_text(v, dec[i].json);
		cJSON_Delete(v);
	}
}
END_TEST

static void rows_text(const char *src, size_t rows, const char *want)
{
	struct op_sql *q = NULL;
	ck_assert_msg(op_sql_compile(src, OP_SQL_DOLLAR, &q, err, sizeof(err)) == OP_OK, "%s: %s",
	              src, err);
	char *t = op_sql_rows_text(q, rows);
	if (want == NULL) {
		ck_assert_msg(t == NULL, "%s: rewritten as %s", src, t);
	} else {
		ck_assert_ptr_nonnull(t);
		ck_assert_str_eq(t, want);
	}
	op_free(t);
	op_sql_free(q);
}

START_TEST(inserts_rewrite_to_many_rows)
{
	rows_text("INSERT INTO t (a, b) VALUES ({{ message.a }}, {{ message.b }})", 3,
	          "INSERT INTO t (a, b) VALUES ($1, $2),($3, $4),($5, $6)");
	rows_text("insert into t values ({{ message.a }}, 'lit $1 (x)', now()) "
	          "ON CONFLICT (a) DO NOTHING",
	          2,
	          "insert into t values ($1, 'lit $1 (x)', now()),($2, 'lit $1 (x)', now()) "
	          "ON CONFLICT (a) DO NOTHING");
	/* Not of the shape: left alone. */
	rows_text("INSERT INTO t VALUES (1, 2), ({{ message.a }}, 3)", 2, NULL);
	rows_text("INSERT INTO t VALUES ({{ message.a }}) ON CONFLICT (a) DO UPDATE SET b = "
	          "{{ message.b }}",
	          2, NULL);
	rows_text("INSERT INTO t SELECT {{ message.a }}", 2, NULL);
	rows_text("UPDATE t SET a = {{ message.a }}", 2, NULL);
	rows_text("WITH x AS (SELECT 1) INSERT INTO t VALUES ({{ message.a }})", 2, NULL);
}
END_TEST

static Suite *db_suite(void)
{
	Suite *s = suite_create("db");
	TCase *tc = tcase_create("db");
	tcase_add_test(tc, sql_templates_bind_every_value);
	tcase_add_test(tc, sql_expressions_never_inside_quotes);
	tcase_add_test(tc, parameters_and_decimals);
	tcase_add_test(tc, inserts_rewrite_to_many_rows);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(db_suite)
