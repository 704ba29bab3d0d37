/*
 * Unit tests of the expression language: paths, literals and operators,
 * whole versus mixed templates, compile errors with columns, every function
 * (normal and error cases), JSON templates with diagnostic paths, the MATCHES
 * pattern cache under several threads, and out-of-memory at every
 * allocation.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/diag.h"
#include "agent/expr/expr.h"
#include "tests/unit/test.h"

/* ---- environment and helpers ---- */

static const char msg_text[] =
    "{\"order\":{\"id\":\"A-1\",\"customer\":{\"id\":42,\"name\":\"Ana\"},"
    "\"items\":[{\"sku\":\"S1\",\"qty\":2,\"price\":1.5},{\"sku\":\"S2\",\"qty\":1,\"price\":10}],"
    "\"tags\":[\"x\",\"y\"]},"
    "\"n\":42,\"f\":2.5,\"s\":\"  Hello World  \",\"u\":\"\xc3\xa7\x61\x66\xc3\xa9\xc3\x85\","
    "\"empty\":\"\",\"nil\":null,\"t\":true,\"key with spaces\":\"spaced\",\"idx\":1,"
    "\"nums\":[3,-1,7,null],\"json\":\"{\\\"a\\\":[1,2]}\",\"fmt\":\"{} and {}\","
    "\"deep\":{\"a\":{\"b\":{\"c\":1}}}}";

static struct op_expr_env test_env;

static const struct op_expr_env *env(void)
{
	if (test_env.message == NULL) {
		cJSON *m = cJSON_Parse(msg_text);
		ck_assert_ptr_nonnull(m);
		/* A string with a byte that is not UTF-8 (cJSON does not check). */
		cJSON_AddItemToObject(m, "bad",
		                      cJSON_CreateString("a\xff"
		                                         "b"));
		test_env.message = m;
		test_env.globals =
		    cJSON_Parse("{\"region\":\"eu-1\",\"taxRates\":{\"DE\":0.19,\"FR\":0.2}}");
		test_env.metadata =
		    cJSON_Parse("{\"pipeline\":{\"name\":\"p\",\"version\":\"1\"},\"attempt\":1}");
	}
	return &test_env;
}

static void env_free(void)
{
	cJSON_Delete((cJSON *)test_env.message);
	cJSON_Delete((cJSON *)test_env.globals);
	cJSON_Delete((cJSON *)test_env.metadata);
	memset(&test_env, 0, sizeof(test_env));
}

static void setup(void)
{
	op_alloc_init();
	(void)env();
}

static void teardown(void)
{
	env_free();
}

#define OK(src, want) expect_ok((src), (want), __LINE__)
static void expect_ok(const char *src, const char *want, int line)
{
	struct op_expr *e = NULL;
	char err[512];
	op_err rc = op_expr_compile(src, &e, err, sizeof(err));
	ck_assert_msg(rc == OP_OK, "line %d: %s: compile failed: %s", line, src, err);
	struct op_val v;
	rc = op_expr_eval(e, env(), &v, err, sizeof(err));
	ck_assert_msg(rc == OP_OK, "line %d: %s: eval failed (%s): %s", line, src, op_err_name(rc),
	              err);
	cJSON *w = cJSON_Parse(want);
	ck_assert_msg(w != NULL, "line %d: bad expected JSON %s", line, want);
	if (!cJSON_Compare(v.v, w, 1)) {
		char *g = cJSON_PrintUnformatted(v.v);
		ck_abort_msg("line %d: %s\n  got:  %s\n  want: %s", line, src, g, want);
	}
	cJSON_Delete(w);
	op_val_drop(&v);
	op_expr_free(e);
}

/* Compiles fine, evaluation fails with code and a message containing part. */
#define EVAL_ERR(src, code, part) expect_eval_err((src), (code), (part), __LINE__)
static void expect_eval_err(const char *src, op_err code, const char *part, int line)
{
	struct op_expr *e = NULL;
	char err[512];
	op_err rc = op_expr_compile(src, &e, err, sizeof(err));
	ck_assert_msg(rc == OP_OK, "line %d: %s: compile failed: %s", line, src, err);
	struct op_val v = {(cJSON *)1, true};
	rc = op_expr_eval(e, env(), &v, err, sizeof(err));
	ck_assert_msg(rc == code, "line %d: %s: got %s (%s), want %s", line, src, op_err_name(rc),
	              err, op_err_name(code));
	ck_assert_msg(strstr(err, part) != NULL, "line %d: %s: message \"%s\" lacks \"%s\"", line,
	              src, err, part);
	ck_assert_ptr_null(v.v);
	ck_assert(!v.owned);
	op_expr_free(e);
}

/* Compilation fails with OP_EPARSE and a message containing part. */
#define COMPILE_ERR(src, part) expect_compile_err((src), (part), __LINE__)
static void expect_compile_err(const char *src, const char *part, int line)
{
	struct op_expr *e = (struct op_expr *)1;
	char err[512];
	op_err rc = op_expr_compile(src, &e, err, sizeof(err));
	ck_assert_msg(rc == OP_EPARSE, "line %d: %s: got %s, want parse error", line, src,
	              op_err_name(rc));
	ck_assert_ptr_null(e);
	ck_assert_msg(strstr(err, part) != NULL, "line %d: %s: message \"%s\" lacks \"%s\"", line,
	              src, err, part);
}

/* ---- paths ---- */

START_TEST(paths)
{
	OK("{{ message.order.customer.id }}", "42");
	OK("{{ message.order.items[0].sku }}", "\"S1\"");
	OK("{{ message.order.items[1].price }}", "10");
	OK("{{ message.order.items[-1].sku }}", "\"S2\"");
	OK("{{ message.order.items[-2].sku }}", "\"S1\"");
	OK("{{ message.order.items[-3] }}", "null");
	OK("{{ message.order.items[2] }}", "null");
	OK("{{ message[\"key with spaces\"] }}", "\"spaced\"");
	OK("{{ message['key with spaces'] }}", "\"spaced\"");
	OK("{{ message.order.items[message.idx].sku }}", "\"S2\"");
	OK("{{ message.order['cust' + 'omer'].name }}", "\"Ana\"");
	OK("{{ message.missing.deeper[3].x }}", "null");
	OK("{{ message.n.x }}", "null");
	OK("{{ message.order.tags[0].x }}", "null");
	/* Paths on built values keep only the part reached. */
	OK("{{ CONCAT('a', 'b').x }}", "null");
	OK("{{ UPPER('ab')[0] }}", "null");
	OK("{{ FROMJSON('{\"a\":{\"b\":[1,2]}}').a.b[-1] }}", "2");
	OK("{{ FROMJSON('{\"a\":1}').zz }}", "null");
	OK("{{ SPLIT('a,b', ',')[1] }}", "\"b\"");
	OK("{{ globals.region }}", "\"eu-1\"");
	OK("{{ globals.taxRates.DE }}", "0.19");
	OK("{{ metadata.pipeline.name }}", "\"p\"");
	OK("{{ message.order.tags }}", "[\"x\",\"y\"]");
	EVAL_ERR("{{ message.order.items[message.t] }}", OP_EINVAL,
	         "column 24: an index must be a number or a string, got boolean");
}
END_TEST

START_TEST(path_lookup_borrows)
{
	struct op_expr *e;
	char err[256];
	ck_assert_int_eq(op_expr_compile("{{ message.order.customer }}", &e, err, sizeof(err)),
	                 OP_OK);
	struct op_val v;
	uint64_t before = op_alloc_count();
	ck_assert_int_eq(op_expr_eval(e, env(), &v, err, sizeof(err)), OP_OK);
	ck_assert_uint_eq(op_alloc_count(), before);
	ck_assert(!v.owned);
	const cJSON *order = cJSON_GetObjectItem(env()->message, "order");
	ck_assert_ptr_eq(v.v, cJSON_GetObjectItem(order, "customer"));
	cJSON *copy = op_val_take(&v);
	ck_assert_ptr_ne(copy, cJSON_GetObjectItem(order, "customer"));
	ck_assert_json_text(copy, "{\"id\":42,\"name\":\"Ana\"}");
	cJSON_Delete(copy);
	op_expr_free(e);

	/* Missing roots read as null. */
	struct op_expr_env empty = {0};
	ck_assert_int_eq(
	    op_expr_compile("{{ message.a ?? globals.b ?? 'none' }}", &e, err, sizeof(err)), OP_OK);
	ck_assert_int_eq(op_expr_eval(e, &empty, &v, err, sizeof(err)), OP_OK);
	ck_assert_json_text(v.v, "\"none\"");
	op_val_drop(&v);
	op_expr_free(e);
}
END_TEST

/* ---- whole versus mixed ---- */

START_TEST(whole_and_mixed)
{
	OK("{{ message.n }}", "42");
	OK("{{message.n}}", "42");
	OK("n={{ message.n }}", "\"n=42\"");
	OK(" {{ message.n }}", "\" 42\"");
	OK("{{ message.t }} {{ message.f }}", "\"true 2.5\"");
	OK("a{{ message.nil }}b", "\"ab\"");
	OK("tags: {{ message.order.tags }}", "\"tags: [\\\"x\\\",\\\"y\\\"]\"");
	OK("{{ message.order.customer }}", "{\"id\":42,\"name\":\"Ana\"}");
	OK("plain text", "\"plain text\"");
	OK("", "\"\"");
	OK("\\{{ not code }}", "\"{{ not code }}\"");
	OK("\\\\{{ message.n }}", "\"\\\\42\"");
	OK("{{ {a: message.n, \"b c\": [1, message.f]} }}", "{\"a\":42,\"b c\":[1,2.5]}");
	OK("{{ {a: {b: message.n}} }}", "{\"a\":{\"b\":42}}");
	OK("{{ [1, 'two', null, true] }}", "[1,\"two\",null,true]");
	OK("{{ 1.5e3 }}", "1500");
	OK("{{ \"\\u00e9\\n\" }}", "\"\xc3\xa9\\n\"");
	ck_assert(op_expr_has_code("a {{ b }}"));
	ck_assert(!op_expr_has_code("a { b }"));
	ck_assert(!op_expr_has_code(NULL));

	/* The source is kept; constants are returned borrowed. */
	struct op_expr *e;
	char err[64];
	ck_assert_int_eq(op_expr_compile("just text", &e, err, sizeof(err)), OP_OK);
	ck_assert_str_eq(op_expr_source(e), "just text");
	struct op_val v;
	ck_assert_int_eq(op_expr_eval(e, env(), &v, err, sizeof(err)), OP_OK);
	ck_assert(!v.owned);
	ck_assert_str_eq(v.v->valuestring, "just text");
	op_expr_free(e);
}
END_TEST

START_TEST(eval_bool)
{
	static const struct {
		const char *src;
		bool want;
	} cases[] = {
	    {"{{ message.n > 40 }}", true},
	    {"{{ message.nil }}", false},
	    {"{{ message.empty }}", false},
	    {"{{ message.order }}", true},
	    {"{{ 0 }}", false},
	    {"x{{ message.nil }}", true},
	    {"{{ message.missing }}", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct op_expr *e;
		char err[128];
		bool b = !cases[i].want;
		ck_assert_int_eq(op_expr_compile(cases[i].src, &e, err, sizeof(err)), OP_OK);
		ck_assert_int_eq(op_expr_eval_bool(e, env(), &b, err, sizeof(err)), OP_OK);
		ck_assert_msg(b == cases[i].want, "%s", cases[i].src);
		op_expr_free(e);
	}
	cJSON *z = cJSON_CreateNumber(0);
	ck_assert(!op_json_truthy(z));
	ck_assert(!op_json_truthy(NULL));
	cJSON_Delete(z);
}
END_TEST

/* ---- operators ---- */

START_TEST(operators)
{
	OK("{{ 1 + 2 * 3 }}", "7");
	OK("{{ (1 + 2) * 3 }}", "9");
	OK("{{ 10 - 2 - 3 }}", "5");
	OK("{{ 7 % 4 }}", "3");
	OK("{{ 10 / 4 }}", "2.5");
	OK("{{ -message.n }}", "-42");
	OK("{{ - -3 }}", "3");
	OK("{{ 'a' + 1 }}", "\"a1\"");
	OK("{{ message.order.id + '/' + message.n }}", "\"A-1/42\"");
	OK("{{ [1] + [2, 3] }}", "[1,2,3]");
	OK("{{ message.n > 40 && message.f < 3 }}", "true");
	OK("{{ message.n < 40 || message.empty }}", "false");
	OK("{{ message.nil ?? message.missing ?? 'dflt' }}", "\"dflt\"");
	OK("{{ message.empty ?? 'dflt' }}", "\"\"");
	OK("{{ !message.empty }}", "true");
	OK("{{ !!message.n }}", "true");
	OK("{{ message.order.tags == ['x', 'y'] }}", "true");
	OK("{{ {a: 1, b: [2]} == {b: [2], a: 1} }}", "true");
	OK("{{ 1 != 1 }}", "false");
	OK("{{ 'b' > 'a' }}", "true");
	OK("{{ 2 <= 2 }}", "true");
	OK("{{ message.nil < 1 }}", "false");
	OK("{{ 1 == '1' }}", "false");
	/* && and || short-circuit. */
	OK("{{ false && 1 / 0 }}", "false");
	OK("{{ true || 1 / 0 }}", "true");
	EVAL_ERR("{{ 1 / 0 }}", OP_EINVAL, "operator '/': division by zero");
	EVAL_ERR("{{ 1 % 0 }}", OP_EINVAL, "division by zero");
	EVAL_ERR("{{ 'a' < 1 }}", OP_EINVAL, "operator '<': cannot compare string and number");
	EVAL_ERR("{{ -'a' }}", OP_EINVAL, "operator '-': expected a number, got string");
	EVAL_ERR("{{ true + 1 }}", OP_EINVAL, "operator '+': cannot add boolean and number");
	EVAL_ERR("{{ 1e308 * 10 }}", OP_EINVAL, "result out of range");
	EVAL_ERR("{{ 'a' * 2 }}", OP_EINVAL,
	         "operator '*': expected numbers, got string and number");
}
END_TEST

/* ---- compile errors ---- */

START_TEST(compile_errors)
{
	COMPILE_ERR("x {{ CONCAT(1, }}", "column 16: expected an expression, found '}}'");
	COMPILE_ERR("{{ FOO(1) }}", "column 4: unknown function FOO");
	COMPILE_ERR("{{ UPPER() }}", "column 4: UPPER takes 1 argument, got 0");
	COMPILE_ERR("{{ SUBSTRING('a') }}", "column 4: SUBSTRING takes 2 to 3 arguments, got 1");
	COMPILE_ERR("{{ CONCAT() }}", "CONCAT takes at least 1 argument, got 0");
	COMPILE_ERR("{{ message.n", "expected '}}' to close '{{' at column 1");
	COMPILE_ERR("{{ message. }}", "column 13: expected a name after '.'");
	COMPILE_ERR("{{ nosuch }}", "column 4: unknown name 'nosuch'");
	COMPILE_ERR("{{ 'abc }}", "column 4: unterminated string");
	COMPILE_ERR("{{ message.n = 1 }}", "column 14: unexpected '=' (use '==' to compare)");
	COMPILE_ERR("{{ message.items[1.5] }}", "index must be an integer");
	COMPILE_ERR("ok {{ 1 }} then {{ (1 }}",
	            "column 23: expected ')' to close '(' at column 20");
	/* Literal arguments are checked at compile time, with their column. */
	COMPILE_ERR("{{ MATCHES(message.s, '(') }}",
	            "column 23: MATCHES: argument 2: invalid pattern at offset 1");
	COMPILE_ERR("{{ MATCHES('a', 'a', 'q') }}",
	            "column 22: MATCHES: argument 3: unknown flag 'q'");
	COMPILE_ERR("{{ HASH('x', 'md4') }}",
	            "column 14: HASH: argument 2: unknown algorithm 'md4'");
	COMPILE_ERR("{{ HASH('x', 'sha1', 'oct') }}", "HASH: argument 3: unknown encoding 'oct'");
	COMPILE_ERR("{{ HMAC('x', 'k', 'crc') }}", "HMAC: argument 3: unknown algorithm 'crc'");
	COMPILE_ERR(
	    "{{ FORMAT('{} {}', 1) }}",
	    "column 11: FORMAT: argument 1: placeholder at offset 3 wants argument 1, but 1 "
	    "is given");
	COMPILE_ERR("{{ FORMAT('{x}') }}", "FORMAT: argument 1: bad placeholder at offset 0");
	COMPILE_ERR("{{ FORMAT('a } b') }}", "FORMAT: argument 1: unmatched '}' at offset 2");
	COMPILE_ERR("{{ JSONPATH(message, '$.a[') }}", "column 22: JSONPATH: argument 2: bad path");
	COMPILE_ERR("{{ JSONPATH(message, '$.a[x]') }}", "bad path");
	COMPILE_ERR("{{ BASE64ENCODE('a', 'weird') }}",
	            "BASE64ENCODE: argument 2: unknown variant 'weird'");
	/* Function names are case-insensitive. */
	OK("{{ upper('a') }}", "\"A\"");
	OK("{{ Concat('a', 'b') }}", "\"ab\"");
	/* Nesting is bounded. */
	char deep[400];
	size_t n = 0;
	n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{{ ");
	for (int i = 0; i < 70; i++)
		deep[n++] = '(';
	deep[n++] = '1';
	for (int i = 0; i < 70; i++)
		deep[n++] = ')';
	snprintf(deep + n, sizeof(deep) - n, " }}");
	COMPILE_ERR(deep, "nested too deeply");
}
END_TEST

/* ---- string functions ---- */

START_TEST(fn_concat_and_text)
{
	OK("{{ CONCAT('a', 1, true, message.nil, message.order.tags) }}",
	   "\"a1true[\\\"x\\\",\\\"y\\\"]\"");
	OK("{{ CONCAT(message.order.id) }}", "\"A-1\"");
	OK("{{ CONCAT(1.25) }}", "\"1.25\"");
	OK("{{ TOSTRING(1.5) }}", "\"1.5\"");
	OK("{{ TOSTRING({a: 1}) }}", "\"{\\\"a\\\":1}\"");
	OK("{{ TOSTRING(message.nil) }}", "\"\"");
	OK("{{ LENGTH(message.u) }}", "5");
	OK("{{ LENGTH(123) }}", "3");
	OK("{{ LENGTH(message.bad) }}", "3");
	OK("{{ LENGTH(message.nil) }}", "0");
	EVAL_ERR("{{ LENGTH([1]) }}", OP_EINVAL,
	         "LENGTH: argument 1: expected a string, got array");
}
END_TEST

START_TEST(fn_substring_trim)
{
	OK("{{ SUBSTRING(message.u, 1, 3) }}", "\"af\"");
	OK("{{ SUBSTRING(message.u, 2) }}", "\"f\xc3\xa9\xc3\x85\"");
	OK("{{ SUBSTRING(message.u, -2) }}", "\"\xc3\xa9\xc3\x85\"");
	OK("{{ SUBSTRING(message.u, 0, -1) }}", "\"\xc3\xa7\x61\x66\xc3\xa9\"");
	OK("{{ SUBSTRING(message.u, 3, 1) }}", "\"\"");
	OK("{{ SUBSTRING(message.u, 10) }}", "\"\"");
	OK("{{ SUBSTRING(message.u, -10, 1) }}", "\"\xc3\xa7\"");
	OK("{{ SUBSTRING(message.u, 1, null) }}", "\"af\xc3\xa9\xc3\x85\"");
	OK("{{ SUBSTRING(12345, 1, 3) }}", "\"23\"");
	OK("{{ TRIM(message.s) }}", "\"Hello World\"");
	OK("{{ LTRIM(message.s) }}", "\"Hello World  \"");
	OK("{{ RTRIM(message.s) }}", "\"  Hello World\"");
	OK("{{ TRIM('   ') }}", "\"\"");
	/* Slices of slices, of owned strings, spliced into text. */
	OK("{{ SUBSTRING(TRIM(message.s), 6) }}", "\"World\"");
	OK("{{ SUBSTRING(UPPER(message.s), 2, 7) }}", "\"HELLO\"");
	OK("[{{ TRIM(message.s) }}]", "\"[Hello World]\"");
	OK("{{ TRIM(CONCAT(' a ', ' ')) }}", "\"a\"");
	EVAL_ERR("{{ SUBSTRING('abc', 1.5) }}", OP_EINVAL,
	         "SUBSTRING: argument 2: expected an integer");
	EVAL_ERR("{{ SUBSTRING('abc', 'x') }}", OP_EINVAL,
	         "SUBSTRING: argument 2: expected a number, got string");
	EVAL_ERR("{{ TRIM({}) }}", OP_EINVAL, "TRIM: argument 1: expected a string, got object");
}
END_TEST

START_TEST(fn_case)
{
	OK("{{ UPPER(message.u) }}", "\"\xc3\x87\x41\x46\xc3\x89\xc3\x85\"");
	OK("{{ LOWER('\xc3\x87\x41\x46\xc3\x89 \xc3\x85\xce\xa3') }}",
	   "\"\xc3\xa7\x61\x66\xc3\xa9 \xc3\xa5\xcf\x83\"");
	OK("{{ UPPER('abc-1') }}", "\"ABC-1\"");
	OK("{{ UPPER('ABC') }}", "\"ABC\"");
	OK("{{ LOWER('ABC') }}", "\"abc\"");
	OK("{{ UPPER(1) }}", "\"1\"");
	OK("{{ UPPER(message.nil) }}", "\"\"");
	/* Owned arguments are changed in place; borrowed ones never. */
	OK("{{ UPPER(LOWER('AbC')) }}", "\"ABC\"");
	OK("{{ LOWER(CONCAT(message.order.id, 'X')) + message.order.id }}", "\"a-1xA-1\"");
	/* A byte that is not UTF-8 passes through unchanged. */
	struct op_expr *e;
	char err[128];
	struct op_val v;
	ck_assert_int_eq(op_expr_compile("{{ UPPER(message.bad) }}", &e, err, sizeof(err)), OP_OK);
	ck_assert_int_eq(op_expr_eval(e, env(), &v, err, sizeof(err)), OP_OK);
	ck_assert_str_eq(v.v->valuestring, "A\xff"
	                                   "B");
	op_val_drop(&v);
	op_expr_free(e);
	EVAL_ERR("{{ UPPER([]) }}", OP_EINVAL, "UPPER: argument 1: expected a string, got array");
}
END_TEST

START_TEST(fn_replace_split_join)
{
	OK("{{ REPLACE('a-b-c', '-', '+') }}", "\"a+b+c\"");
	OK("{{ REPLACE('aaa', 'a', 'bb') }}", "\"bbbbbb\"");
	OK("{{ REPLACE('abc', 'x', 'y') }}", "\"abc\"");
	OK("{{ REPLACE('a--b', '--', '') }}", "\"ab\"");
	EVAL_ERR("{{ REPLACE('abc', '', 'y') }}", OP_EINVAL,
	         "REPLACE: argument 2: expected a non-empty string");
	OK("{{ SPLIT('a,b,,c', ',') }}", "[\"a\",\"b\",\"\",\"c\"]");
	OK("{{ SPLIT('a::b', '::') }}", "[\"a\",\"b\"]");
	OK("{{ SPLIT('\xc3\xa7\xc3\xa9x', '') }}", "[\"\xc3\xa7\",\"\xc3\xa9\",\"x\"]");
	OK("{{ SPLIT('', ',') }}", "[\"\"]");
	OK("{{ SPLIT('abc', ',') }}", "[\"abc\"]");
	OK("{{ SPLIT(message.order.id, '-')[1] }}", "\"1\"");
	EVAL_ERR("{{ SPLIT([1], ',') }}", OP_EINVAL, "SPLIT: argument 1: expected a string");
	OK("{{ JOIN(['a', 1, null, true], '-') }}", "\"a-1--true\"");
	OK("{{ JOIN(message.order.tags) }}", "\"x,y\"");
	OK("{{ JOIN(SPLIT('a b c', ' '), '+') }}", "\"a+b+c\"");
	OK("{{ JOIN([], '-') }}", "\"\"");
	OK("{{ JOIN(message.nil) }}", "\"\"");
	OK("{{ JOIN([[1], {a: 2}], ';') }}", "\"[1];{\\\"a\\\":2}\"");
	EVAL_ERR("{{ JOIN('x', ',') }}", OP_EINVAL,
	         "JOIN: argument 1: expected an array, got string");
}
END_TEST

START_TEST(fn_search_and_pad)
{
	OK("{{ STARTSWITH('hello', 'he') }}", "true");
	OK("{{ STARTSWITH('he', 'hello') }}", "false");
	OK("{{ ENDSWITH('hello', 'lo') }}", "true");
	OK("{{ ENDSWITH('lo', 'hello') }}", "false");
	OK("{{ ENDSWITH('abc', '') }}", "true");
	OK("{{ CONTAINS('hello', 'ell') }}", "true");
	OK("{{ CONTAINS('hello', 'xyz') }}", "false");
	OK("{{ CONTAINS(message.order.tags, 'y') }}", "true");
	OK("{{ CONTAINS([1, {a: 2}], {a: 2}) }}", "true");
	OK("{{ CONTAINS([1], 2) }}", "false");
	OK("{{ INDEXOF('\xc3\xa7\x61\x66\xc3\xa9x', 'x') }}", "4");
	OK("{{ INDEXOF('abc', 'z') }}", "-1");
	OK("{{ PADLEFT('7', 3, '0') }}", "\"007\"");
	OK("{{ PADLEFT(7, 3, '0') }}", "\"007\"");
	OK("{{ PADLEFT('1234', 3, '0') }}", "\"1234\"");
	OK("{{ PADRIGHT('ab', 4) }}", "\"ab  \"");
	OK("{{ PADLEFT('a', 3, '\xc3\xa9') }}", "\"\xc3\xa9\xc3\xa9\x61\"");
	EVAL_ERR("{{ PADLEFT('a', 3, 'ab') }}", OP_EINVAL,
	         "PADLEFT: argument 3: expected one character, got \"ab\"");
	EVAL_ERR("{{ PADLEFT('a', -1) }}", OP_EINVAL,
	         "PADLEFT: argument 2: expected an integer from 0 to 1000000, got -1");
	EVAL_ERR("{{ STARTSWITH({}, 'a') }}", OP_EINVAL, "STARTSWITH: argument 1");
}
END_TEST

START_TEST(fn_format)
{
	OK("{{ FORMAT('{} of {}', 1, 'ten') }}", "\"1 of ten\"");
	OK("{{ FORMAT('{1}-{0}-{1}', 'a', 'b') }}", "\"b-a-b\"");
	OK("{{ FORMAT('{:.2} EUR', 3.14159) }}", "\"3.14 EUR\"");
	OK("{{ FORMAT('{0:.0}', 2.5) }}", "\"2\"");
	OK("{{ FORMAT('{{}} {}', 1) }}", "\"{} 1\"");
	OK("{{ FORMAT('no placeholders') }}", "\"no placeholders\"");
	OK("{{ FORMAT('{}', message.order.tags) }}", "\"[\\\"x\\\",\\\"y\\\"]\"");
	OK("{{ FORMAT(message.fmt, 1, 2) }}", "\"1 and 2\"");
	EVAL_ERR("{{ FORMAT(message.fmt, 1) }}", OP_EINVAL,
	         "FORMAT: argument 1: placeholder at offset 7 wants argument 1, but 1 is given");
	EVAL_ERR("{{ FORMAT('{:.2}', 'x') }}", OP_EINVAL,
	         "FORMAT: argument 2: expected a number, got string");
}
END_TEST

/* ---- number functions ---- */

START_TEST(fn_numbers)
{
	OK("{{ TONUMBER('42') }}", "42");
	OK("{{ TONUMBER(' -1.5e2 ') }}", "-150");
	OK("{{ TONUMBER('+.5') }}", "0.5");
	OK("{{ TONUMBER(7) }}", "7");
	OK("{{ TONUMBER(true) }}", "1");
	OK("{{ TONUMBER(message.nil) }}", "null");
	OK("{{ TONUMBER(SUBSTRING('x12', 1)) + 1 }}", "13");
	EVAL_ERR("{{ TONUMBER('abc') }}", OP_EINVAL,
	         "TONUMBER: argument 1: \"abc\" is not a number");
	EVAL_ERR("{{ TONUMBER('0x10') }}", OP_EINVAL, "is not a number");
	EVAL_ERR("{{ TONUMBER('nan') }}", OP_EINVAL, "is not a number");
	EVAL_ERR("{{ TONUMBER('') }}", OP_EINVAL, "is not a number");
	EVAL_ERR("{{ TONUMBER('1e999') }}", OP_EINVAL, "out of range");
	EVAL_ERR("{{ TONUMBER([1]) }}", OP_EINVAL,
	         "TONUMBER: argument 1: expected a string or a number, got array");

	OK("{{ ROUND(2.5) }}", "3");
	OK("{{ ROUND(-2.5) }}", "-3");
	OK("{{ ROUND(2.4) }}", "2");
	OK("{{ ROUND(1.005, 2) }}", "1.01");
	OK("{{ ROUND(1.2345, 3) }}", "1.235");
	OK("{{ ROUND(1234.5, -2) }}", "1200");
	OK("{{ ROUND(1250, -2) }}", "1300");
	OK("{{ ROUND(9.995, 2) }}", "10");
	OK("{{ ROUND(0.004, 2) }}", "0");
	OK("{{ ROUND(-0.004, 2) }}", "0");
	OK("{{ ROUND(0.005, 2) }}", "0.01");
	OK("{{ ROUND(12, 2) }}", "12");
	OK("{{ ROUND(1e-20, 2) }}", "0");
	OK("{{ ROUND(message.order.items[0].price * 3, 1) }}", "4.5");
	OK("{{ ROUND(0.1 + 0.2, 2) }}", "0.3");
	EVAL_ERR("{{ ROUND('1') }}", OP_EINVAL, "ROUND: argument 1: expected a number, got string");
	EVAL_ERR("{{ ROUND(1, 16) }}", OP_EINVAL,
	         "ROUND: argument 2: expected an integer from -15 to 15, got 16");
	EVAL_ERR("{{ ROUND(message.nil) }}", OP_EINVAL, "expected a number, got null");

	OK("{{ ABS(-3) }}", "3");
	OK("{{ ABS(3) }}", "3");
	OK("{{ FLOOR(-1.5) }}", "-2");
	OK("{{ CEIL(1.2) }}", "2");
	EVAL_ERR("{{ ABS('x') }}", OP_EINVAL, "ABS: argument 1: expected a number, got string");

	OK("{{ MIN(3, 1, 2) }}", "1");
	OK("{{ MAX(3, 1, 2) }}", "3");
	OK("{{ MIN(message.nums) }}", "-1");
	OK("{{ MAX(message.nums, 10) }}", "10");
	OK("{{ MAX(message.nil, 2) }}", "2");
	OK("{{ MIN([]) }}", "null");
	OK("{{ SUM(message.nums) }}", "9");
	OK("{{ SUM([]) }}", "0");
	OK("{{ AVG([1, 2, 3, 4]) }}", "2.5");
	OK("{{ AVG(message.nil) }}", "null");
	EVAL_ERR("{{ MAX(1, 'a') }}", OP_EINVAL,
	         "MAX: argument 2: expected a number or an array of numbers, got string");
	EVAL_ERR("{{ MIN([1, 'a']) }}", OP_EINVAL,
	         "MIN: argument 1: item 1: expected a number, got string");
	EVAL_ERR("{{ SUM([1e308, 1e308]) }}", OP_EINVAL, "SUM: result out of range");
}
END_TEST

/* ---- JSON functions ---- */

START_TEST(fn_json)
{
	OK("{{ TOJSON(message.order.tags) }}", "\"[\\\"x\\\",\\\"y\\\"]\"");
	OK("{{ TOJSON('a\"b') }}", "\"\\\"a\\\\\\\"b\\\"\"");
	OK("{{ TOJSON(1.5) }}", "\"1.5\"");
	OK("{{ TOJSON(message.nil) }}", "\"null\"");
	OK("{{ FROMJSON(message.json) }}", "{\"a\":[1,2]}");
	OK("{{ FROMJSON(message.json).a[1] }}", "2");
	OK("{{ FROMJSON(' 3 ') }}", "3");
	OK("{{ FROMJSON('\"s\"') }}", "\"s\"");
	OK("{{ FROMJSON(null) }}", "null");
	OK("{{ FROMJSON(TOJSON(message.order)) == message.order }}", "true");
	EVAL_ERR("{{ FROMJSON('{') }}", OP_EINVAL, "FROMJSON: argument 1: invalid JSON at offset");
	EVAL_ERR("{{ FROMJSON('1 2') }}", OP_EINVAL, "invalid JSON at offset 2");
	EVAL_ERR("{{ FROMJSON(1) }}", OP_EINVAL,
	         "FROMJSON: argument 1: expected a string, got number");

	OK("{{ SIZE(message.order.items) }}", "2");
	OK("{{ SIZE(message.order) }}", "4");
	OK("{{ SIZE('\xc3\xa7\xc3\xa9') }}", "2");
	OK("{{ SIZE(message.missing) }}", "0");
	EVAL_ERR("{{ SIZE(1) }}", OP_EINVAL,
	         "SIZE: argument 1: expected an array, an object or a string, got number");

	OK("{{ KEYS({b: 1, a: 2}) }}", "[\"b\",\"a\"]");
	OK("{{ KEYS(message.order.customer) }}", "[\"id\",\"name\"]");
	OK("{{ KEYS(message.nil) }}", "[]");
	OK("{{ VALUES({a: 1, b: [2]}) }}", "[1,[2]]");
	EVAL_ERR("{{ KEYS([1]) }}", OP_EINVAL, "KEYS: argument 1: expected an object, got array");

	OK("{{ TYPEOF(1) }}", "\"number\"");
	OK("{{ TYPEOF(message.order) }}", "\"object\"");
	OK("{{ TYPEOF(message.order.tags) }}", "\"array\"");
	OK("{{ TYPEOF(message.missing) }}", "\"null\"");
	OK("{{ TYPEOF('') }}", "\"string\"");

	OK("{{ DEFAULT(message.missing, 'x') }}", "\"x\"");
	OK("{{ DEFAULT(message.n, 'x') }}", "42");
	OK("{{ DEFAULT(message.nil, message.nil2, 3) }}", "3");
	OK("{{ DEFAULT(message.nil, message.nil2) }}", "null");
	OK("{{ DEFAULT(message.empty, 'x') }}", "\"\"");
	OK("{{ DEFAULT(1, 1 / 0) }}", "1");
	OK("{{ DEFAULT(JSONPATH(globals, CONCAT('$.taxRates.', 'XX')), 0.2) }}", "0.2");
	OK("{{ DEFAULT(JSONPATH(globals, CONCAT('$.taxRates.', 'DE')), 0.2) }}", "0.19");
}
END_TEST

START_TEST(fn_jsonpath)
{
	OK("{{ JSONPATH(message, '$.order.items[0].sku') }}", "\"S1\"");
	OK("{{ JSONPATH(message, '$..sku') }}", "[\"S1\",\"S2\"]");
	OK("{{ JSONPATH(message, '$.order.items[*].qty') }}", "[2,1]");
	OK("{{ JSONPATH(message, '$.order.items.*.sku') }}", "[\"S1\",\"S2\"]");
	OK("{{ JSONPATH(message, '$.order.items[-1].price') }}", "10");
	OK("{{ JSONPATH(message, \"$['key with spaces']\") }}", "\"spaced\"");
	OK("{{ JSONPATH(message, '$[\"order\"][\"customer\"].name') }}", "\"Ana\"");
	OK("{{ JSONPATH(message, '$.order.nope') }}", "null");
	OK("{{ JSONPATH(message, '$.order.nope[*]') }}", "[]");
	OK("{{ JSONPATH(message.order.tags, '$') }}", "[\"x\",\"y\"]");
	OK("{{ JSONPATH(message.deep, '$..c') }}", "[1]");
	OK("{{ JSONPATH(message.deep, '$.*') }}", "[{\"b\":{\"c\":1}}]");
	OK("{{ JSONPATH(message.deep, '$..*') }}", "[{\"b\":{\"c\":1}},{\"c\":1},1]");
	OK("{{ JSONPATH(message.order.items, '$..[0]') }}",
	   "[{\"sku\":\"S1\",\"qty\":2,\"price\":1.5}]");
	OK("{{ JSONPATH(message.order, 'customer.id') }}", "42");
	OK("{{ JSONPATH(message, '$.order.tags[ 1 ]') }}", "\"y\"");
	OK("{{ JSONPATH(globals, CONCAT('$.taxRates.', 'FR')) }}", "0.2");
	OK("{{ JSONPATH(FROMJSON('{\"a\":{\"b\":[5,6]}}'), '$.a.b[1]') }}", "6");
	OK("{{ JSONPATH(FROMJSON('{\"a\":[{\"b\":1},{\"b\":2}]}'), '$.a[*].b') }}", "[1,2]");
	OK("{{ JSONPATH('str', '$.a') }}", "null");
	OK("{{ JSONPATH('str', '$') }}", "\"str\"");
	OK("{{ JSONPATH(message.nil, '$..a') }}", "[]");
	EVAL_ERR("{{ JSONPATH(message, CONCAT('$.a[', 'x')) }}", OP_EINVAL,
	         "JSONPATH: argument 2: bad path: expected *, an index or a quoted name after '['");
	EVAL_ERR("{{ JSONPATH(message, CONCAT('$.a', '..')) }}", OP_EINVAL, "expected a name");
	EVAL_ERR("{{ JSONPATH(message, [1]) }}", OP_EINVAL,
	         "JSONPATH: argument 2: expected a string, got array");
}
END_TEST

START_TEST(fn_conditionals)
{
	OK("{{ IF(message.n > 40, 'big', 'small') }}", "\"big\"");
	OK("{{ IF(message.n > 50, 'big', 'small') }}", "\"small\"");
	OK("{{ IF(false, 1) }}", "null");
	OK("{{ IF(message.nil, 1, 2) }}", "2");
	OK("{{ IF(message.order, message.order.customer.id, 0) }}", "42");
	/* Only the chosen branch is evaluated. */
	OK("{{ IF(true, 1, 1 / 0) }}", "1");
	OK("{{ IF(false, 1 / 0, 2) }}", "2");
	EVAL_ERR("{{ IF(true, 1 / 0, 2) }}", OP_EINVAL, "division by zero");
	OK("{{ AND(true, 1, 'x') }}", "true");
	OK("{{ AND(true, 0) }}", "false");
	OK("{{ AND(false, 1 / 0) }}", "false");
	OK("{{ OR(false, 0, 'a') }}", "true");
	OK("{{ OR(true, 1 / 0) }}", "true");
	OK("{{ OR(message.nil) }}", "false");
	OK("{{ NOT(0) }}", "true");
	OK("{{ NOT('a') }}", "false");
	OK("{{ EQUALS(1, 1.0) }}", "true");
	OK("{{ EQUALS({a: [1]}, {a: [1]}) }}", "true");
	OK("{{ EQUALS('1', 1) }}", "false");
	OK("{{ EQUALS(message.order.tags, ['x', 'y']) }}", "true");
	OK("{{ ISNULL(message.missing) }}", "true");
	OK("{{ ISNULL(message.nil) }}", "true");
	OK("{{ ISNULL(0) }}", "false");
	OK("{{ ISEMPTY('') }}", "true");
	OK("{{ ISEMPTY([]) }}", "true");
	OK("{{ ISEMPTY({}) }}", "true");
	OK("{{ ISEMPTY(message.order) }}", "false");
	OK("{{ ISEMPTY(0) }}", "false");
}
END_TEST

/* ---- crypto, encoding, UUID ---- */

START_TEST(fn_crypto)
{
	OK("{{ HASH('abc') }}",
	   "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"");
	OK("{{ HASH('') }}",
	   "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"");
	OK("{{ HASH('abc', 'sha1') }}", "\"a9993e364706816aba3e25717850c26c9cd0d89d\"");
	OK("{{ HASH('abc', 'MD5') }}", "\"900150983cd24fb0d6963f7d28e17f72\"");
	OK("{{ HASH('abc', 'sha512') }}", "\"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eee"
	                                  "e64b55d39a2192992a274fc1a836ba3c"
	                                  "23a3feebbd454d4423643ce80e2a9ac94fa54ca49f\"");
	OK("{{ HASH('abc', 'sha3-256') }}",
	   "\"3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532\"");
	OK("{{ HASH('abc', 'sha256', 'base64') }}",
	   "\"ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=\"");
	OK("{{ HASH('abc', 'sha256', 'base64url') }}",
	   "\"ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0\"");
	OK("{{ HASH(42) == HASH('42') }}", "true");
	EVAL_ERR("{{ HASH('x', CONCAT('md', '4')) }}", OP_EINVAL,
	         "HASH: argument 2: unknown algorithm 'md4'");
	OK("{{ HMAC('what do ya want for nothing?', 'Jefe') }}",
	   "\"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843\"");
	OK("{{ HMAC('The quick brown fox jumps over the lazy dog', 'key', 'sha1') }}",
	   "\"de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9\"");
	OK("{{ BASE64ENCODE('hello') }}", "\"aGVsbG8=\"");
	OK("{{ BASE64ENCODE('') }}", "\"\"");
	OK("{{ BASE64ENCODE('\xc3\xa7\xc3\xa9?>') }}", "\"w6fDqT8+\"");
	OK("{{ BASE64ENCODE('\xc3\xa7\xc3\xa9?>', 'url') }}", "\"w6fDqT8-\"");
	OK("{{ BASE64ENCODE('?\?>>', 'url') }}", "\"Pz8-Pg\"");
	OK("{{ BASE64DECODE('aGVsbG8=') }}", "\"hello\"");
	OK("{{ BASE64DECODE('aGVsbG8') }}", "\"hello\"");
	OK("{{ BASE64DECODE('aGVs bG8=\\n') }}", "\"hello\"");
	OK("{{ BASE64DECODE('Pz8-Pg') }}", "\"?\?>>\"");
	OK("{{ BASE64DECODE('') }}", "\"\"");
	OK("{{ BASE64DECODE(BASE64ENCODE(message.u)) == message.u }}", "true");
	EVAL_ERR("{{ BASE64DECODE('a') }}", OP_EINVAL,
	         "BASE64DECODE: argument 1: invalid base64 (truncated)");
	EVAL_ERR("{{ BASE64DECODE('aGVsbG8=aGVs') }}", OP_EINVAL, "invalid base64 (data after '='");
	EVAL_ERR("{{ BASE64DECODE('!!!!') }}", OP_EINVAL,
	         "invalid base64 (unexpected '!' at offset 0)");
	EVAL_ERR("{{ BASE64DECODE('=abc') }}", OP_EINVAL, "misplaced '='");
	EVAL_ERR("{{ BASE64DECODE('aGVsbA=') }}", OP_EINVAL, "truncated");
	EVAL_ERR("{{ BASE64DECODE('/w==') }}", OP_EINVAL, "the decoded bytes are not UTF-8 text");
	EVAL_ERR("{{ BASE64DECODE('AA==') }}", OP_EINVAL, "not UTF-8 text");
	OK("{{ LENGTH(UUID()) }}", "36");
	OK("{{ MATCHES(UUID(), "
	   "'^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$') }}",
	   "true");
	OK("{{ UUID() != UUID() }}", "true");
}
END_TEST

/* ---- MATCHES ---- */

START_TEST(fn_matches)
{
	OK("{{ MATCHES('Hello', '^h', 'i') }}", "true");
	OK("{{ MATCHES('Hello', '^h') }}", "false");
	OK("{{ MATCHES('Hello', 'll') }}", "true");
	OK("{{ MATCHES('a\\nb', '^b$', 'm') }}", "true");
	OK("{{ MATCHES('a\\nb', '^b$') }}", "false");
	OK("{{ MATCHES('\xc3\xa7\xc3\xa9', '^..$') }}", "true");
	OK("{{ MATCHES(message.order.id, '^[A-Z]-\\\\d+$') }}", "true");
	OK("{{ MATCHES(message.bad, 'b$') }}", "true");
	OK("{{ MATCHES(message.nil, '^$') }}", "true");
	OK("{{ MATCHES(123, '^\\\\d+$') }}", "true");
	/* Computed patterns and flags go through the cache. */
	OK("{{ MATCHES('abc', CONCAT('^a', 'b')) }}", "true");
	OK("{{ MATCHES('ABC', CONCAT('^a', 'b'), CONCAT('i')) }}", "true");
	OK("{{ MATCHES('ABC', '^ab', CONCAT('')) }}", "false");
	EVAL_ERR("{{ MATCHES('a', CONCAT('(', '')) }}", OP_EINVAL,
	         "MATCHES: argument 2: invalid pattern at offset 1");
	EVAL_ERR("{{ MATCHES('a', 'a', CONCAT('q')) }}", OP_EINVAL,
	         "MATCHES: argument 3: unknown flag 'q'");
	EVAL_ERR("{{ MATCHES([1], 'a') }}", OP_EINVAL, "MATCHES: argument 1: expected a string");
	/* Catastrophic backtracking hits the match limit instead of hanging. */
	EVAL_ERR("{{ MATCHES(PADLEFT('b', 40, 'a'), '^(a+)+$') }}", OP_ELIMIT,
	         "MATCHES: the pattern needs too much backtracking");
	EVAL_ERR("{{ MATCHES(PADLEFT('b', 40, 'a'), CONCAT('^(a+)+$')) }}", OP_ELIMIT,
	         "too much backtracking");
}
END_TEST

struct rx_thread {
	const struct op_expr *e;
	int id;
	int failures;
};

static void *rx_worker(void *arg)
{
	struct rx_thread *t = arg;
	char pat[32], subj[64];
	for (int i = 0; i < 1500; i++) {
		/* 24 patterns per thread: more than the cache holds, so entries get
		 * evicted while other threads are matching with them. */
		int k = (i * 7 + t->id) % 24 + 1;
		bool want = (i % 3) != 0;
		snprintf(pat, sizeof(pat), "^a{%d}$", k);
		memset(subj, 'a', sizeof(subj));
		subj[want ? k : k + 1] = '\0';
		cJSON *m = cJSON_CreateObject();
		cJSON_AddStringToObject(m, "s", subj);
		cJSON_AddStringToObject(m, "p", pat);
		struct op_expr_env en = {.message = m};
		struct op_val v;
		char err[256];
		if (op_expr_eval(t->e, &en, &v, err, sizeof(err)) != OP_OK || !cJSON_IsBool(v.v) ||
		    cJSON_IsTrue(v.v) != want)
			t->failures++;
		op_val_drop(&v);
		cJSON_Delete(m);
	}
	return NULL;
}

START_TEST(matches_cache_threads)
{
	struct op_expr *e;
	char err[256];
	ck_assert_int_eq(
	    op_expr_compile("{{ MATCHES(message.s, message.p) }}", &e, err, sizeof(err)), OP_OK);
	enum { N = 6 };
	pthread_t th[N];
	struct rx_thread t[N];
	for (int i = 0; i < N; i++) {
		t[i] = (struct rx_thread){.e = e, .id = i};
		ck_assert_int_eq(pthread_create(&th[i], NULL, rx_worker, &t[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
		ck_assert_int_eq(t[i].failures, 0);
	}
	op_expr_free(e);
}
END_TEST

/* ---- templates ---- */

static struct op_tmpl *tmpl_of(const char *json)
{
	cJSON *src = op_test_json(json);
	struct op_diag d;
	op_diag_init(&d);
	struct op_tmpl *t = NULL;
	op_err rc = op_tmpl_compile(src, &d, &t);
	ck_assert_msg(rc == OP_OK, "%s: %s", json, d.n ? d.v[0].msg : "?");
	op_diag_fini(&d);
	cJSON_Delete(src);
	return t;
}

START_TEST(tmpl_render)
{
	struct op_tmpl *t =
	    tmpl_of("{\"a\":\"{{ message.n }}\",\"b\":[\"x\",\"{{ "
	            "UPPER(message.order.id) }}\",{\"c\":\"n={{ message.n }}\"}],"
	            "\"k\":1,\"const\":{\"x\":[1,2]},\"o\":\"{{ message.order.customer }}\","
	            "\"m\":\"{{ message.missing }}\",\"esc\":\"\\\\{{ x }}\"}");
	ck_assert(!op_tmpl_is_constant(t));
	cJSON *a = NULL, *b = NULL;
	char err[256];
	ck_assert_int_eq(op_tmpl_render(t, env(), &a, err, sizeof(err)), OP_OK);
	ck_assert_json_text(a, "{\"a\":42,\"b\":[\"x\",\"A-1\",{\"c\":\"n=42\"}],\"k\":1,"
	                       "\"const\":{\"x\":[1,2]},\"o\":{\"id\":42,\"name\":\"Ana\"},"
	                       "\"m\":null,\"esc\":\"{{ x }}\"}");
	/* Each render is a new value: changing one leaves the next alone. */
	cJSON_DeleteItemFromObject(cJSON_GetObjectItem(a, "const"), "x");
	cJSON_DeleteItemFromObject(cJSON_GetObjectItem(a, "o"), "id");
	ck_assert_int_eq(op_tmpl_render(t, env(), &b, err, sizeof(err)), OP_OK);
	ck_assert_json_text(cJSON_GetObjectItem(b, "const"), "{\"x\":[1,2]}");
	ck_assert_json_text(cJSON_GetObjectItem(b, "o"), "{\"id\":42,\"name\":\"Ana\"}");
	ck_assert_json_text(
	    cJSON_GetObjectItem(cJSON_GetObjectItem(env()->message, "order"), "customer"),
	    "{\"id\":42,\"name\":\"Ana\"}");
	cJSON_Delete(a);
	cJSON_Delete(b);
	op_tmpl_free(t);

	/* Scalars and constants. */
	t = tmpl_of("\"{{ message.n + 1 }}\"");
	ck_assert(!op_tmpl_is_constant(t));
	ck_assert_int_eq(op_tmpl_render(t, env(), &a, err, sizeof(err)), OP_OK);
	ck_assert_json_text(a, "43");
	cJSON_Delete(a);
	op_tmpl_free(t);
	t = tmpl_of("{\"a\":[1,\"x { y }\",null,{\"b\":false}]}");
	ck_assert(op_tmpl_is_constant(t));
	ck_assert_int_eq(op_tmpl_render(t, env(), &a, err, sizeof(err)), OP_OK);
	ck_assert_json_text(a, "{\"a\":[1,\"x { y }\",null,{\"b\":false}]}");
	cJSON_Delete(a);
	op_tmpl_free(t);
	t = tmpl_of("7");
	ck_assert(op_tmpl_is_constant(t));
	ck_assert_int_eq(op_tmpl_render(t, NULL, &a, err, sizeof(err)), OP_OK);
	ck_assert_json_text(a, "7");
	cJSON_Delete(a);
	op_tmpl_free(t);
	op_tmpl_free(NULL);
}
END_TEST

START_TEST(tmpl_render_errors)
{
	struct op_tmpl *t = tmpl_of("{\"x\":{\"y\":[0,\"{{ 1 / 0 }}\"]}}");
	cJSON *out = (cJSON *)1;
	char err[256];
	ck_assert_int_eq(op_tmpl_render(t, env(), &out, err, sizeof(err)), OP_EINVAL);
	ck_assert_ptr_null(out);
	ck_assert_str_eq(err, "at x.y[1]: operator '/': division by zero");
	op_tmpl_free(t);
	t = tmpl_of("\"{{ HASH([1], 'x' + 'y') }}\"");
	ck_assert_int_eq(op_tmpl_render(t, env(), &out, err, sizeof(err)), OP_EINVAL);
	ck_assert_str_eq(err,
	                 "HASH: argument 2: unknown algorithm 'xy' (expected one of md5, sha1, "
	                 "sha224, sha256, sha384, sha512, sha3-256, sha3-384, sha3-512)");
	op_tmpl_free(t);
}
END_TEST

START_TEST(tmpl_diag_paths)
{
	cJSON *src = op_test_json("{\"a\":\"{{ message.x + }}\",\"b\":[1,\"{{ FOO() }}\"],"
	                          "\"ok\":\"{{ 1 }}\",\"key with spaces\":{\"d\":\"x {{ (}}\"},"
	                          "\"c\":\"{{ HASH('a', 'md4') }}\"}");
	struct op_diag d;
	op_diag_init(&d);
	size_t m0 = op_diag_push_key(&d, "steps");
	op_diag_push_index(&d, 0);
	op_diag_push_key(&d, "config");
	op_diag_push_key(&d, "template");
	struct op_tmpl *t = (struct op_tmpl *)1;
	ck_assert_int_eq(op_tmpl_compile(src, &d, &t), OP_ECONFIG);
	ck_assert_ptr_null(t);
	ck_assert_uint_eq(op_diag_count(&d), 4);
	ck_assert_str_eq(d.v[0].path, "steps[0].config.template.a");
	ck_assert_str_eq(d.v[0].msg,
	                 "bad expression: column 16: expected an expression, found '}}'");
	ck_assert_str_eq(d.v[1].path, "steps[0].config.template.b[1]");
	ck_assert_str_eq(d.v[1].msg, "bad expression: column 4: unknown function FOO");
	ck_assert_str_eq(d.v[2].path, "steps[0].config.template[\"key with spaces\"].d");
	ck_assert(strstr(d.v[2].msg, "column 7: expected an expression") != NULL);
	ck_assert_str_eq(d.v[3].path, "steps[0].config.template.c");
	ck_assert(strstr(d.v[3].msg, "column 14: HASH: argument 2: unknown algorithm 'md4'") !=
	          NULL);
	/* The caller's path is as it was. */
	ck_assert_str_eq(op_diag_path(&d), "steps[0].config.template");
	op_diag_pop(&d, m0);
	op_diag_fini(&d);
	cJSON_Delete(src);
}
END_TEST

/* ---- out of memory ---- */

static const char *const oom_exprs[] = {
    "{{ message.order.items[-1].sku }}",
    "n={{ message.n }} of {{ message.order.tags }}",
    "{{ {a: message.n, b: [message.f, 'x']} }}",
    "{{ [1] + message.order.tags }}",
    "{{ CONCAT(UPPER(message.u), LOWER('AB'), TRIM(message.s), SUBSTRING(message.u, 1)) }}",
    "{{ JOIN(SPLIT(REPLACE('a-b-c', '-', '+'), '+'), ',') }}",
    "{{ FORMAT('{} {:.1}', PADLEFT(7, 3, '0'), 2.25) + TOSTRING(message.order) }}",
    "{{ ROUND(SUM(message.nums) / 3, 2) + MAX(message.nums) + TONUMBER('5') }}",
    "{{ FROMJSON(TOJSON(message.order)).items[0] }}",
    "{{ KEYS(message.order) + VALUES(message.order.customer) }}",
    "{{ JSONPATH(message, '$..sku') + JSONPATH(message, CONCAT('$.order', '.tags[*]')) }}",
    "{{ JSONPATH(FROMJSON(message.json), '$.a[1]') }}",
    "{{ IF(MATCHES(message.order.id, '^A'), HASH('x', 'sha1'), 'no') }}",
    "{{ MATCHES(message.order.id, CONCAT('^', 'A-\\\\d')) }}",
    "{{ BASE64DECODE(BASE64ENCODE(message.u, 'url')) + HMAC('a', 'k') }}",
    "{{ LENGTH(UUID()) + SIZE(message.order) }}",
    "{{ DEFAULT(message.nil, CONTAINS(message.order.tags, 'x')) }}",
};

START_TEST(oom_expressions)
{
	for (size_t k = 0; k < sizeof(oom_exprs) / sizeof(oom_exprs[0]); k++) {
		const char *src = oom_exprs[k];
		bool done = false;
		for (uint64_t n = 1; !done && n < 100000; n++) {
			struct op_expr *e = NULL;
			struct op_val v = {0};
			char err[256];
			op_alloc_fail_at(n);
			op_err rc = op_expr_compile(src, &e, err, sizeof(err));
			if (rc == OP_OK) {
				rc = op_expr_eval(e, env(), &v, err, sizeof(err));
				if (rc == OP_OK) {
					cJSON *copy = op_val_take(&v);
					if (copy == NULL)
						rc = OP_ENOMEM;
					cJSON_Delete(copy);
				}
			}
			op_alloc_fail_at(0);
			ck_assert_msg(rc == OP_OK || rc == OP_ENOMEM, "%s at %llu: %s: %s", src,
			              (unsigned long long)n, op_err_name(rc), err);
			if (rc == OP_ENOMEM)
				ck_assert_msg(v.v == NULL, "%s: value left on error", src);
			op_val_drop(&v);
			op_expr_free(e);
			done = rc == OP_OK;
		}
		ck_assert_msg(done, "%s never succeeded", src);
	}
}
END_TEST

START_TEST(oom_templates)
{
	const char *good = "{\"a\":\"{{ UPPER(message.order.id) }}\",\"b\":[1,\"x{{ message.n }}\","
	                   "{\"c\":\"{{ message.order }}\"}],\"k\":{\"z\":[true]}}";
	const char *bad = "{\"a\":\"{{ ( }}\",\"b\":[\"{{ NOPE() }}\",\"{{ 1 }}\"]}";
	cJSON *g = op_test_json(good), *b = op_test_json(bad);
	bool done = false;
	for (uint64_t n = 1; !done && n < 100000; n++) {
		struct op_diag d;
		op_diag_init(&d);
		struct op_tmpl *t = NULL;
		cJSON *out = NULL;
		char err[256];
		op_alloc_fail_at(n);
		op_err rc = op_tmpl_compile(g, &d, &t);
		if (rc == OP_OK)
			rc = op_tmpl_render(t, env(), &out, err, sizeof(err));
		struct op_tmpl *t2 = NULL;
		op_err rc2 = op_tmpl_compile(b, &d, &t2) == OP_ENOMEM ? OP_ENOMEM : OP_OK;
		ck_assert_ptr_null(t2);
		op_alloc_fail_at(0);
		ck_assert_msg(rc == OP_OK || rc == OP_ENOMEM, "at %llu: %s", (unsigned long long)n,
		              op_err_name(rc));
		if (rc == OP_OK) {
			ck_assert_json_text(
			    out, "{\"a\":\"A-1\",\"b\":[1,\"x42\",{\"c\":{\"id\":\"A-1\","
			         "\"customer\":{\"id\":42,\"name\":\"Ana\"},\"items\":["
			         "{\"sku\":\"S1\",\"qty\":2,\"price\":1.5},{\"sku\":\"S2\","
			         "\"qty\":1,\"price\":10}],\"tags\":[\"x\",\"y\"]}}],"
			         "\"k\":{\"z\":[true]}}");
		} else {
			ck_assert_ptr_null(out);
		}
		cJSON_Delete(out);
		op_tmpl_free(t);
		op_diag_fini(&d);
		done = rc == OP_OK && rc2 == OP_OK;
	}
	ck_assert(done);
	cJSON_Delete(g);
	cJSON_Delete(b);
}
END_TEST

static Suite *expr_suite(void)
{
	Suite *s = suite_create("expr");
	TCase *tc = tcase_create("expr");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, paths);
	tcase_add_test(tc, path_lookup_borrows);
	tcase_add_test(tc, whole_and_mixed);
	tcase_add_test(tc, eval_bool);
	tcase_add_test(tc, operators);
	tcase_add_test(tc, compile_errors);
	tcase_add_test(tc, fn_concat_and_text);
	tcase_add_test(tc, fn_substring_trim);
	tcase_add_test(tc, fn_case);
	tcase_add_test(tc, fn_replace_split_join);
	tcase_add_test(tc, fn_search_and_pad);
	tcase_add_test(tc, fn_format);
	tcase_add_test(tc, fn_numbers);
	tcase_add_test(tc, fn_json);
	tcase_add_test(tc, fn_jsonpath);
	tcase_add_test(tc, fn_conditionals);
	tcase_add_test(tc, fn_crypto);
	tcase_add_test(tc, fn_matches);
	tcase_add_test(tc, matches_cache_threads);
	tcase_add_test(tc, tmpl_render);
	tcase_add_test(tc, tmpl_render_errors);
	tcase_add_test(tc, tmpl_diag_paths);
	tcase_add_test(tc, oom_expressions);
	tcase_add_test(tc, oom_templates);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(expr_suite)
