/*
 * Unit tests of the jq runtime (connectors/transform/jq.c): compile errors,
 * results and output counts, runtime errors, $globals/$metadata, what is kept
 * from programs (environment, input, halt, modules, stdio), conversions,
 * limits, threads, out-of-memory on our side, and the set of programs known
 * to compile.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/log.h"
#include "connectors/transform/jq.h"
#include "connectors/transform/jq_fast.h"
#include "tests/bench/w1_program.h"
#include "tests/unit/test.h"

static char err[1024];

static struct op_jq *compile_ok(const char *program)
{
	struct op_jq *q = NULL;
	op_err e = op_jq_compile(program, &q, err, sizeof(err));
	ck_assert_msg(e == OP_OK, "compile %s: %s (%s)", program, op_err_name(e), err);
	ck_assert_ptr_nonnull(q);
	return q;
}

/* Runs program on input text; returns the class and the output in *out. */
static op_err run_text(const char *program, const char *input, cJSON **out)
{
	struct op_jq *q = compile_ok(program);
	cJSON *in = op_test_json(input);
	op_err e = op_jq_run(q, in, NULL, NULL, out, err, sizeof(err));
	cJSON_Delete(in);
	op_jq_free(q);
	return e;
}

/* Asserts that program on input gives exactly the JSON text want. */
static void expect(const char *program, const char *input, const char *want)
{
	cJSON *out = NULL;
	op_err e = run_text(program, input, &out);
	ck_assert_msg(e == OP_OK, "run %s: %s (%s)", program, op_err_name(e), err);
	ck_assert_json_text(out, want);
	cJSON_Delete(out);
}

/* Asserts that program on input fails with class want and a message holding msg. */
static void expect_fail(const char *program, const char *input, op_err want, const char *msg)
{
	cJSON *out = (cJSON *)1;
	op_err e = run_text(program, input, &out);
	ck_assert_msg(e == want, "run %s: got %s (%s), want %s", program, op_err_name(e), err,
	              op_err_name(want));
	ck_assert_ptr_null(out);
	ck_assert_msg(strstr(err, msg) != NULL, "run %s: message '%s' lacks '%s'", program, err,
	              msg);
}

static char *print(const cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);
	ck_assert_ptr_nonnull(s);
	return s;
}

static void teardown(void)
{
	op_jq_fast_enable(true);
	op_jq_thread_cleanup();
}

START_TEST(compile_error_has_jq_messages)
{
	struct op_jq *q = (struct op_jq *)1;
	ck_assert_int_eq(op_jq_compile(".a | @@@", &q, err, sizeof(err)), OP_ECONFIG);
	ck_assert_ptr_null(q);
	ck_assert_ptr_nonnull(strstr(err, "syntax error"));
	ck_assert_ptr_nonnull(strstr(err, "line 1:\n.a | @@@"));
	/* The prelude never shows, and jq's padding is trimmed. */
	ck_assert_ptr_null(strstr(err, "def env"));
	ck_assert_ptr_null(strstr(err, "@@@ "));

	/* All messages, with the user's line numbers. */
	ck_assert_int_eq(op_jq_compile(".a\n| foo(1)\n| bar", &q, err, sizeof(err)), OP_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "foo/1 is not defined at <top-level>, line 2:"));
	ck_assert_ptr_nonnull(strstr(err, "bar/0 is not defined at <top-level>, line 3:"));
	ck_assert_ptr_nonnull(strstr(err, "jq: 2 compile errors"));
	ck_assert_ptr_null(q);

	/* A short buffer truncates the message but stays terminated. */
	char small[8];
	ck_assert_int_eq(op_jq_compile("@@@", &q, small, sizeof(small)), OP_ECONFIG);
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
	ck_assert_int_eq(op_jq_compile(NULL, &q, err, sizeof(err)), OP_EINVAL);
}
END_TEST

START_TEST(transform_result)
{
	expect("{id: .order.id, total: (.items | map(.price) | add)}",
	       "{\"order\":{\"id\":42,\"name\":\"x\"},\"items\":[{\"price\":10.25},{\"price\":20."
	       "25}]}",
	       "{\"id\":42,\"total\":30.5}");
	/* Definitions in the program, comments, and the empty program. */
	expect("# double it\ndef twice(f): f | f; .n | twice(. * 2)", "{\"n\":3}", "12");
	expect("", "{\"a\":1}", "{\"a\":1}");
	expect("  # nothing\n", "[1]", "[1]");
	expect("[.a, .b] | map(tostring) | join(\",\")", "{\"a\":1,\"b\":2}", "\"1,2\"");
}
END_TEST

START_TEST(zero_and_many_outputs)
{
	expect("empty", "{}", "null");
	expect(".[] | select(. > 5)", "[1,2,3]", "null");
	expect(".[] | select(. > 2)", "[1,2,3]", "3");
	expect_fail(".[]", "[1,2,3]", OP_EINVAL,
	            "jq program produced 3 outputs; wrap it in [ ... ] to collect them");
	expect("[.[]]", "[1,2,3]", "[1,2,3]");
	/* Endless output streams stop at the count. */
	expect_fail("repeat(1)", "null", OP_EINVAL, "more than 100 outputs");
	expect_fail("range(1e18)", "null", OP_EINVAL, "more than 100 outputs");
	expect("first(range(1e18))", "null", "0");
}
END_TEST

START_TEST(runtime_error_text)
{
	expect_fail("error(\"boom\")", "null", OP_EINVAL, "jq error: boom");
	expect_fail(".a + 1", "{\"a\":\"x\"}", OP_EINVAL,
	            "jq error: string (\"x\") and number (1) cannot be added");
	expect_fail("error({code: 7})", "null", OP_EINVAL, "jq error (not a string): {\"code\":7}");
	/* An error after an output fails the run. */
	expect_fail("1, error(\"late\")", "null", OP_EINVAL, "jq error: late");
	expect("try error(\"x\") catch (\"caught \" + .)", "null", "\"caught x\"");

	/* The same program keeps working after a failed run on this thread. */
	struct op_jq *q = compile_ok("if . == 0 then error(\"zero\") else 10 / . end");
	cJSON *in = op_test_json("0"), *out = NULL;
	ck_assert_int_eq(op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err)), OP_EINVAL);
	ck_assert_str_eq(err, "jq error: zero");
	cJSON_SetNumberValue(in, 4);
	ck_assert_int_eq(op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_json_text(out, "2.5");
	cJSON_Delete(out);
	cJSON_Delete(in);
	op_jq_free(q);
}
END_TEST

START_TEST(globals_and_metadata)
{
	struct op_jq *q = compile_ok("{x: $globals.x, id: $metadata.executionId, v: .v}");
	cJSON *in = op_test_json("{\"v\":1}");
	cJSON *g = op_test_json("{\"x\":\"gx\"}");
	cJSON *m = op_test_json("{\"executionId\":\"e-1\"}");
	cJSON *out = NULL;
	ck_assert_int_eq(op_jq_run(q, in, g, m, &out, err, sizeof(err)), OP_OK);
	ck_assert_json_text(out, "{\"x\":\"gx\",\"id\":\"e-1\",\"v\":1}");
	cJSON_Delete(out);
	/* Per run, not baked in at compile time. */
	cJSON_ReplaceItemInObject(m, "executionId", cJSON_CreateString("e-2"));
	ck_assert_int_eq(op_jq_run(q, in, g, m, &out, err, sizeof(err)), OP_OK);
	ck_assert_json_text(out, "{\"x\":\"gx\",\"id\":\"e-2\",\"v\":1}");
	cJSON_Delete(out);
	/* NULL binds null. */
	ck_assert_int_eq(op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_json_text(out, "{\"x\":null,\"id\":null,\"v\":1}");
	cJSON_Delete(out);
	op_jq_free(q);

	/* Spelled with a space, as jq 1.6 allows, they are still bound. */
	q = compile_ok("[$ globals, $metadata] | map(type)");
	ck_assert_int_eq(op_jq_run(q, in, g, m, &out, err, sizeof(err)), OP_OK);
	ck_assert_json_text(out, "[\"object\",\"object\"]");
	cJSON_Delete(out);
	op_jq_free(q);
	cJSON_Delete(in);
	cJSON_Delete(g);
	cJSON_Delete(m);
}
END_TEST

START_TEST(environment_not_exposed)
{
	ck_assert_int_eq(setenv("OP_TEST_SECRET", "hunter2-secret", 1), 0);
	cJSON *out = NULL;
	ck_assert_int_eq(run_text("[env, $ENV, (env | keys), ($ENV | length), $ENV.OP_TEST_SECRET, "
	                          "env.OP_TEST_SECRET, (env | tostring), ($ENV | tojson)]",
	                          "null", &out),
	                 OP_OK);
	ck_assert_json_text(out, "[{},{},[],0,null,null,\"{}\",\"{}\"]");
	char *s = print(out);
	ck_assert_ptr_null(strstr(s, "hunter2"));
	cJSON_free(s);
	cJSON_Delete(out);
	/* Nor through a function of the user's that calls env. */
	expect("def f: env; f | length", "null", "0");
	unsetenv("OP_TEST_SECRET");
}
END_TEST

START_TEST(input_halt_and_modules_refused)
{
	expect_fail("input", "null", OP_EINVAL, "input is not available in transform steps");
	expect_fail("[inputs]", "null", OP_EINVAL, "inputs is not available in transform steps");
	expect_fail("\"x\" | modulemeta", "null", OP_EINVAL, "modulemeta is not available");
	expect("input_filename", "null", "null");
	expect_fail("halt", "null", OP_EINVAL, "jq program called halt");
	expect_fail("\"bye\" | halt_error(1)", "null", OP_EINVAL, "halt_error: bye");
	expect_fail("{a: 1} | halt_error", "null", OP_EINVAL, "halt_error: {\"a\":1}");
	expect_fail("1, halt", "null", OP_EINVAL, "called halt");

	/* A halted state is usable again. */
	struct op_jq *q = compile_ok("if . == 1 then halt else . + 1 end");
	cJSON *one = op_test_json("1"), *two = op_test_json("2"), *out = NULL;
	ck_assert_int_eq(op_jq_run(q, one, NULL, NULL, &out, err, sizeof(err)), OP_EINVAL);
	ck_assert_int_eq(op_jq_run(q, two, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_json_text(out, "3");
	cJSON_Delete(out);
	cJSON_Delete(one);
	cJSON_Delete(two);
	op_jq_free(q);

	const char *mods[] = {"import \"a\" as a; .", "include \"a\"; .",
	                      "# lib\n  import \"a\" as $d; .", "module {a: 1}; ."};
	for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
		q = (struct op_jq *)1;
		ck_assert_int_eq(op_jq_compile(mods[i], &q, err, sizeof(err)), OP_ECONFIG);
		ck_assert_ptr_null(q);
		ck_assert_msg(strstr(err, "modules are not supported") != NULL, "%s", err);
	}
	/* Anywhere else it is a syntax error, never a module load (libjq 1.6 would
	 * abort on one without a library path). */
	ck_assert_int_eq(op_jq_compile(".a | import \"a\" as a; .", &q, err, sizeof(err)),
	                 OP_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "syntax error"));
}
END_TEST

/*
 * libjq 1.6 frees a halt_error message at every reset after the halt (see
 * unwind() in jq.c). The message here is the program's own constant, so an
 * extra free releases it under the bytecode: later runs return freed memory
 * and ASan reports a double free. Each run must give the same answer.
 */
START_TEST(halted_state_reused)
{
	struct op_jq *q = compile_ok("if . == 1 then \"bye\" | halt_error(1) "
	                             "elif . == 2 then {m: \"bye\"} | halt_error "
	                             "elif . == 3 then halt else \"bye\" end");
	const int seq[] = {1, 1, 0, 2, 1, 3, 0, 2, 2, 0, 1};
	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		cJSON *in = cJSON_CreateNumber(seq[i]), *out = NULL;
		op_err e = op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err));
		cJSON_Delete(in);
		if (seq[i] == 0) {
			ck_assert_msg(e == OP_OK, "run %zu: %s", i, err);
			ck_assert_json_text(out, "\"bye\"");
			cJSON_Delete(out);
			continue;
		}
		ck_assert_int_eq(e, OP_EINVAL);
		ck_assert_ptr_null(out);
		ck_assert_str_eq(err, seq[i] == 1 ? "jq program called halt_error: bye"
		                      : seq[i] == 2
		                          ? "jq program called halt_error: {\"m\":\"bye\"}"
		                          : "jq program called halt, which transform steps "
		                            "do not support");
	}
	op_jq_free(q);
	/* Torn down straight after a halt, with no run in between. */
	q = compile_ok("\"bye\" | halt_error(1)");
	cJSON *in = cJSON_CreateNull(), *out = NULL;
	ck_assert_int_eq(op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err)), OP_EINVAL);
	cJSON_Delete(in);
	op_jq_free(q);
}
END_TEST

/* input_filename and input_line_number read libjq's input callback, which
 * jq_init leaves uninitialised in 1.6. */
START_TEST(input_metadata_builtins)
{
	expect("input_filename", "null", "null");
	expect("[try input_line_number catch \"none\"] | length", "null", "1");
	expect_fail("[limit(1; inputs)]", "null", OP_EINVAL, "inputs is not available");
}
END_TEST

static char *log_seen;

static void capture_sink(enum op_log_level lvl, const char *module, const char *line, void *ud)
{
	(void)lvl;
	(void)module;
	(void)ud;
	size_t old = log_seen ? strlen(log_seen) : 0, n = strlen(line);
	char *p = realloc(log_seen, old + n + 2);
	ck_assert_ptr_nonnull(p);
	memcpy(p + old, line, n);
	p[old + n] = '\n';
	p[old + n + 1] = '\0';
	log_seen = p;
}

START_TEST(debug_and_stderr_go_to_the_log)
{
	char path[] = "/tmp/op_test_jq_XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	unlink(path);
	op_log_set_level(OP_LOG_DEBUG);
	op_log_set_sink(capture_sink, NULL);
	fflush(stdout);
	fflush(stderr);
	int o1 = dup(1), o2 = dup(2);
	dup2(fd, 1);
	dup2(fd, 2);
	cJSON *out = NULL;
	op_err e =
	    run_text("(.a | debug) as $x | {\"sec\": 5} | stderr | .sec + $x", "{\"a\":1}", &out);
	fflush(stdout);
	fflush(stderr);
	dup2(o1, 1);
	dup2(o2, 2);
	close(o1);
	close(o2);
	op_log_set_sink(NULL, NULL);
	op_log_set_level(OP_LOG_INFO);
	ck_assert_int_eq(e, OP_OK);
	ck_assert_json_text(out, "6");
	cJSON_Delete(out);
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	close(fd);
	ck_assert_ptr_nonnull(log_seen);
	ck_assert_ptr_nonnull(strstr(log_seen, "jq debug exec=-: 1\n"));
	ck_assert_ptr_nonnull(strstr(log_seen, "jq debug exec=-: {\"sec\":5}\n"));
	free(log_seen);
	log_seen = NULL;

	/* Inside an execution (op_engine_run sets it), its id. */
	op_log_set_level(OP_LOG_DEBUG);
	op_log_set_sink(capture_sink, NULL);
	op_log_set_exec_id("run-7");
	e = run_text(".a | debug", "{\"a\":2}", &out);
	op_log_set_exec_id(NULL);
	op_log_set_sink(NULL, NULL);
	op_log_set_level(OP_LOG_INFO);
	ck_assert_int_eq(e, OP_OK);
	cJSON_Delete(out);
	ck_assert_ptr_nonnull(log_seen);
	ck_assert_ptr_nonnull(strstr(log_seen, "jq debug exec=run-7: 2\n"));
	free(log_seen);
	log_seen = NULL;
}
END_TEST

START_TEST(numbers_round_trip)
{
	const double v[] = {0,
	                    -1,
	                    1.5,
	                    0.1,
	                    9007199254740992.0,
	                    -9007199254740992.0,
	                    1e300,
	                    -2.5e-300,
	                    123456789012.0,
	                    4294967296.0};
	cJSON *in = cJSON_CreateArray(), *out = NULL;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		cJSON_AddItemToArray(in, cJSON_CreateNumber(v[i]));
	struct op_jq *q = compile_ok(".");
	ck_assert_int_eq(op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_int_eq(cJSON_GetArraySize(out), (int)(sizeof(v) / sizeof(v[0])));
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		ck_assert_msg(cJSON_GetArrayItem(out, (int)i)->valuedouble == v[i], "item %zu", i);
	cJSON_Delete(out);
	cJSON_Delete(in);
	op_jq_free(q);

	/* Integers stay exact doubles (9007199254740993 is not one: jq parses it
	 * to 2^53, as cJSON would), and jq prints them as integers. */
	ck_assert_int_eq(run_text("[12345678901, 2.5 * 2, (1 / 3 | . * 3), 9007199254740993, "
	                          "-9007199254740992, 1e17]",
	                          "null", &out),
	                 OP_OK);
	const double want[] = {12345678901.0, 5, 1, 9007199254740992.0, -9007199254740992.0, 1e17};
	for (int i = 0; i < 6; i++)
		ck_assert_msg(cJSON_GetArrayItem(out, i)->valuedouble == want[i], "item %d", i);
	cJSON_Delete(out);
	expect(
	    "[12345678901, 9007199254740992, -9007199254740992, 0.1 + 0.2, 1e17, 1e300] | tojson",
	    "null",
	    "\"[12345678901,9007199254740992,-9007199254740992,0.30000000000000004,"
	    "1e+17,1e+300]\"");
	/* Message numbers in, jq text out: no digit lost on the way. */
	in = op_test_json("{\"big\":9007199254740992,\"neg\":-9007199254740991,\"f\":0.1}");
	q = compile_ok("[.big, .neg, .f] | map(tostring) | join(\" \")");
	ck_assert_int_eq(op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_json_text(out, "\"9007199254740992 -9007199254740991 0.1\"");
	cJSON_Delete(out);
	cJSON_Delete(in);
	op_jq_free(q);
	ck_assert_int_eq(run_text("[nan, infinite, -infinite]", "null", &out), OP_OK);
	ck_assert(cJSON_IsNull(cJSON_GetArrayItem(out, 0)));
	ck_assert(cJSON_GetArrayItem(out, 1)->valuedouble == DBL_MAX);
	ck_assert(cJSON_GetArrayItem(out, 2)->valuedouble == -DBL_MAX);
	cJSON_Delete(out);
}
END_TEST

START_TEST(strings_keys_and_unicode)
{
	expect(".", "{\"s\":\"h\\u00e9llo \\u2713 \\ud83d\\ude00\"}",
	       "{\"s\":\"h\\u00e9llo \\u2713 \\ud83d\\ude00\"}");
	expect(".s | [length, utf8bytelength]", "{\"s\":\"h\\u00e9\\ud83d\\ude00\"}", "[3,7]");
	expect("\"\\u00e9\" | explode", "null", "[233]");

	/* Object key order survives both ways. */
	cJSON *out = NULL;
	ck_assert_int_eq(run_text(". + {d: 4} | del(.a)", "{\"b\":1,\"a\":2,\"c\":3}", &out),
	                 OP_OK);
	char *s = print(out);
	ck_assert_str_eq(s, "{\"b\":1,\"c\":3,\"d\":4}");
	cJSON_free(s);
	cJSON_Delete(out);

	/* Invalid UTF-8 from our side becomes U+FFFD, never invalid jq strings. */
	cJSON *in = cJSON_CreateString("a\xff"
	                               "b");
	struct op_jq *q = compile_ok("[length, explode]");
	ck_assert_int_eq(op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_json_text(out, "[3,[97,65533,98]]");
	cJSON_Delete(out);
	cJSON_Delete(in);
	op_jq_free(q);

	/* jq strings carry their length; cJSON's cannot hold a NUL, so refuse. */
	expect("\"a\\u0000b\" | length", "null", "3");
	expect_fail("\"a\\u0000b\"", "null", OP_EINVAL, "string contains a NUL character");
	expect_fail("{\"k\\u0000\": 1}", "null", OP_EINVAL, "object key contains a NUL character");
	expect_fail("[1, {a: \"\\u0000\"}]", "null", OP_EINVAL, "NUL");
}
END_TEST

static cJSON *nest(int levels)
{
	cJSON *j = cJSON_CreateNumber(0);
	for (int i = 0; i < levels; i++) {
		cJSON *a = cJSON_CreateArray();
		cJSON_AddItemToArray(a, j);
		j = a;
	}
	return j;
}

START_TEST(nesting_limits)
{
	struct op_jq *q = compile_ok("[paths] | length");
	cJSON *ok = nest(OP_JQ_DEPTH_MAX), *deep = nest(OP_JQ_DEPTH_MAX + 1), *out = NULL;
	ck_assert_int_eq(op_jq_run(q, ok, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_json_text(out, "1000");
	cJSON_Delete(out);
	ck_assert_int_eq(op_jq_run(q, deep, NULL, NULL, &out, err, sizeof(err)), OP_ELIMIT);
	ck_assert_ptr_null(out);
	ck_assert_ptr_nonnull(strstr(err, "input nests deeper than 1000 levels"));
	/* Also as $globals. */
	op_jq_free(q);
	q = compile_ok("$globals | length");
	ck_assert_int_eq(op_jq_run(q, ok, deep, NULL, &out, err, sizeof(err)), OP_ELIMIT);
	cJSON_Delete(ok);
	cJSON_Delete(deep);
	op_jq_free(q);

	ck_assert_int_eq(run_text("reduce range(1000) as $i (0; [.])", "null", &out), OP_OK);
	cJSON_Delete(out);
	expect_fail("reduce range(1001) as $i (0; [.])", "null", OP_ELIMIT,
	            "jq output nests deeper than 1000 levels");
	expect_fail("reduce range(1001) as $i (0; {a: .})", "null", OP_ELIMIT, "nests deeper");
}
END_TEST

START_TEST(output_cap)
{
	struct op_jq *q = compile_ok("[range(.) | \"xxxxxxxx\"]");
	op_jq_set_output_max(q, 1000);
	cJSON *small = cJSON_CreateNumber(50), *big = cJSON_CreateNumber(200), *out = NULL;
	ck_assert_int_eq(op_jq_run(q, small, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_int_eq(cJSON_GetArraySize(out), 50);
	cJSON_Delete(out);
	ck_assert_int_eq(op_jq_run(q, big, NULL, NULL, &out, err, sizeof(err)), OP_ELIMIT);
	ck_assert_ptr_null(out);
	ck_assert_ptr_nonnull(strstr(err, "larger than 1000 bytes"));
	cJSON_Delete(small);
	cJSON_Delete(big);
	op_jq_free(q);
	/* The default cap holds 16 MiB. */
	expect_fail("[range(20) | \"x\" * 1000000]", "null", OP_ELIMIT, "larger than 16777216");
}
END_TEST

START_TEST(dates_are_utc_whatever_the_tz)
{
	/* Debian's libjq 1.6 builtin is an hour off here in summer. */
	ck_assert_int_eq(setenv("TZ", "Europe/Berlin", 1), 0);
	tzset();
	expect("\"2015-07-05T23:51:47Z\" | fromdate", "null", "1436140307");
	expect("\"2015-07-05T23:51:47Z\" | fromdateiso8601", "null", "1436140307");
	expect("\"2015-01-05T23:51:47Z\" | strptime(\"%Y-%m-%dT%H:%M:%SZ\") | mktime", "null",
	       "1420501907");
	/* gmtime | mktime is the identity on whole seconds, across eras and leap days. */
	expect("[-62135596800, -86400, -1, 0, 951782400, 951868799, 1436140307.9, 4102444800, "
	       "253402300799] | map(gmtime | mktime)",
	       "null",
	       "[-62135596800,-86400,-1,0,951782400,951868799,1436140307,4102444800,253402300799]");
	/* Month overflow normalises as timegm does. */
	expect("[2015,12,1,0,0,0,0,0] | mktime", "null", "1451606400");
	expect_fail("[2015,1,1] | mktime", "null", OP_EINVAL, "mktime requires array of 6 numbers");
	expect_fail("[2015,1,1,0,0,0] | mktime", "null", OP_EINVAL, "parsed datetime inputs");
	unsetenv("TZ");
	tzset();
}
END_TEST

/* Compiles program with HOME set to dir; restores HOME. */
static op_err compile_with_home(const char *dir, const char *program, struct op_jq **q)
{
	const char *old = getenv("HOME");
	char *saved = old ? strdup(old) : NULL;
	ck_assert_int_eq(setenv("HOME", dir, 1), 0);
	op_err e = op_jq_compile(program, q, err, sizeof(err));
	if (saved) {
		setenv("HOME", saved, 1);
		free(saved);
	} else {
		unsetenv("HOME");
	}
	return e;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

/* libjq 1.6 would read $HOME/.jq into every program: a file there is
 * refused, a .jq directory is not (libjq reads nothing from it). */
START_TEST(home_jq_file_refused)
{
	char dir[] = "/tmp/op_test_jq_home_XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char dotjq[64];
	snprintf(dotjq, sizeof(dotjq), "%s/.jq", dir);
	struct op_jq *q = NULL;
	cJSON *in = cJSON_CreateNull(), *out = NULL;

	/* Nothing there: compiles and runs with jq's own map. */
	ck_assert_int_eq(compile_with_home(dir, "[1] | map(. + 1)", &q), OP_OK);
	ck_assert_int_eq(op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_json_text(out, "[2]");
	cJSON_Delete(out);
	op_jq_free(q);

	write_file(dotjq, "def map(f): \"hijacked\";\n");
	q = (struct op_jq *)1;
	op_err e1 = compile_with_home(dir, "[1] | map(.)", &q);
	char msg1[sizeof(err)];
	memcpy(msg1, err, sizeof(err));
	ck_assert_ptr_null(q);
	unlink(dotjq);

	ck_assert_int_eq(mkdir(dotjq, 0700), 0);
	op_err e2 = compile_with_home(dir, "[1] | map(. + 1)", &q);
	if (e2 == OP_OK) {
		ck_assert_int_eq(op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err)), OP_OK);
		ck_assert_json_text(out, "[2]");
		cJSON_Delete(out);
		op_jq_free(q);
	}
	cJSON_Delete(in);
	rmdir(dotjq);
	rmdir(dir);

	ck_assert_int_eq(e1, OP_ECONFIG);
	ck_assert_msg(strstr(msg1, "/.jq exists") != NULL, "%s", msg1);
	ck_assert_int_eq(e2, OP_OK);
}
END_TEST

/* ---- threads ---- */

#define STRESS_N       400
#define STRESS_THREADS 4

static const char *stress_prog =
    "{id: .order.id, total: (.items | map(.price) | add), skus: ([.items[].sku] | sort | "
    "join(\",\")), up: (.order.name | ascii_upcase), re: (.order.name | test(\"^ord-[0-9]+$\")), "
    "sub: (.order.name | sub(\"-\"; \"_\")), when: (.ts | todate), back: (.ts | todate | "
    "fromdate), n: (.items | length | tostring | tonumber), g: $globals.region, "
    "keys: (.order | keys_unsorted)}";

static cJSON *stress_input(int i)
{
	char buf[512];
	snprintf(buf, sizeof(buf),
	         "{\"order\":{\"id\":%d,\"name\":\"ord-%d\",\"prio\":%d},\"ts\":%d,\"items\":["
	         "{\"sku\":\"s%d\",\"price\":%d.25},{\"sku\":\"a%d\",\"price\":%d.5},"
	         "{\"sku\":\"m%d\",\"price\":0.1}]}",
	         i, i, i % 7, 1400000000 + i * 3601, i * 7 % 13, i, i * 3 % 11, i % 50, i);
	return op_test_json(buf);
}

struct stress {
	const struct op_jq *q;
	const cJSON *globals;
	cJSON **want;
	int mismatches;
	int failures;
	int offset;
};

static void *stress_thread(void *arg)
{
	struct stress *st = arg;
	char e[256];
	for (int k = 0; k < STRESS_N; k++) {
		int i = (k + st->offset) % STRESS_N;
		cJSON *in = stress_input(i), *out = NULL;
		if (op_jq_run(st->q, in, st->globals, NULL, &out, e, sizeof(e)) != OP_OK)
			st->failures++;
		else if (!cJSON_Compare(out, st->want[i], 1))
			st->mismatches++;
		cJSON_Delete(out);
		cJSON_Delete(in);
	}
	return NULL;
}

START_TEST(threads_match_single_thread)
{
	struct op_jq *q = compile_ok(stress_prog);
	cJSON *g = op_test_json("{\"region\":\"eu\"}");
	cJSON *want[STRESS_N];
	for (int i = 0; i < STRESS_N; i++) {
		cJSON *in = stress_input(i);
		ck_assert_int_eq(op_jq_run(q, in, g, NULL, &want[i], err, sizeof(err)), OP_OK);
		cJSON_Delete(in);
	}
	cJSON *w7 = want[7];
	ck_assert_json_text(cJSON_GetObjectItem(w7, "re"), "true");
	ck_assert_json_text(cJSON_GetObjectItem(w7, "sub"), "\"ord_7\"");
	ck_assert_json_text(cJSON_GetObjectItem(w7, "back"), "1400025207");
	ck_assert_json_text(cJSON_GetObjectItem(w7, "g"), "\"eu\"");

	pthread_t t[STRESS_THREADS];
	struct stress st[STRESS_THREADS];
	for (int i = 0; i < STRESS_THREADS; i++) {
		st[i] = (struct stress){.q = q, .globals = g, .want = want, .offset = i * 97};
		ck_assert_int_eq(pthread_create(&t[i], NULL, stress_thread, &st[i]), 0);
	}
	for (int i = 0; i < STRESS_THREADS; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_int_eq(st[i].failures, 0);
		ck_assert_int_eq(st[i].mismatches, 0);
	}
	for (int i = 0; i < STRESS_N; i++)
		cJSON_Delete(want[i]);
	cJSON_Delete(g);
	op_jq_free(q);
}
END_TEST

/* Errors, halts and successes interleaved on every thread. */
#define MIXED_N 300

static const char *mixed_prog =
    "if .i % 4 == 0 then error(\"e\\(.i)\") elif .i % 4 == 1 then \"h\\(.i)\" | halt_error(1) "
    "elif .i % 4 == 2 then [range(.i % 7)][] else {i: .i, s: (\"x\\(.i)\" | test(\"^x[0-9]+$\"))} "
    "end";

struct mixed {
	const struct op_jq *q;
	int offset;
	int wrong;
};

/* The class and text run i must give, in buf; 0 if it must succeed. */
static op_err mixed_want(int i, char *buf, size_t cap)
{
	switch (i % 4) {
	case 0:
		snprintf(buf, cap, "jq error: e%d", i);
		return OP_EINVAL;
	case 1:
		snprintf(buf, cap, "jq program called halt_error: h%d", i);
		return OP_EINVAL;
	case 2:
		if (i % 7 > 1) {
			snprintf(buf, cap,
			         "jq program produced %d outputs; wrap it in [ ... ] to "
			         "collect them",
			         i % 7);
			return OP_EINVAL;
		}
		snprintf(buf, cap, "%s", i % 7 == 1 ? "0" : "null");
		return OP_OK;
	default:
		snprintf(buf, cap, "{\"i\":%d,\"s\":true}", i);
		return OP_OK;
	}
}

static void *mixed_thread(void *arg)
{
	struct mixed *m = arg;
	char e[256], want[256];
	for (int k = 0; k < MIXED_N; k++) {
		int i = (k + m->offset) % MIXED_N;
		cJSON *in = cJSON_CreateObject(), *out = NULL;
		cJSON_AddNumberToObject(in, "i", i);
		op_err got = op_jq_run(m->q, in, NULL, NULL, &out, e, sizeof(e));
		op_err wc = mixed_want(i, want, sizeof(want));
		if (got != wc) {
			m->wrong++;
		} else if (got != OP_OK) {
			m->wrong += strcmp(e, want) != 0 || out != NULL;
		} else {
			char *s = cJSON_PrintUnformatted(out);
			m->wrong += s == NULL || strcmp(s, want) != 0;
			cJSON_free(s);
		}
		cJSON_Delete(out);
		cJSON_Delete(in);
	}
	op_jq_thread_cleanup();
	return NULL;
}

START_TEST(threads_with_errors_and_halts)
{
	/* Two programs at once, so that threads also compile concurrently. */
	struct op_jq *q[2] = {compile_ok(mixed_prog), compile_ok(mixed_prog)};
	pthread_t t[STRESS_THREADS];
	struct mixed m[STRESS_THREADS];
	for (int i = 0; i < STRESS_THREADS; i++) {
		m[i] = (struct mixed){.q = q[i % 2], .offset = i * 61};
		ck_assert_int_eq(pthread_create(&t[i], NULL, mixed_thread, &m[i]), 0);
	}
	for (int i = 0; i < STRESS_THREADS; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_int_eq(m[i].wrong, 0);
	}
	op_jq_free(q[0]);
	op_jq_free(q[1]);
}
END_TEST

/* A worker that holds a cached state while its program is freed and replaced. */
struct handoff {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int step;
	struct op_jq *q;
	char got[2][160];
};

static void wait_step(struct handoff *h, int step)
{
	pthread_mutex_lock(&h->mu);
	while (h->step < step)
		pthread_cond_wait(&h->cv, &h->mu);
	pthread_mutex_unlock(&h->mu);
}

static void set_step(struct handoff *h, int step)
{
	pthread_mutex_lock(&h->mu);
	h->step = step;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

static void *handoff_worker(void *arg)
{
	struct handoff *h = arg;
	char e[128];
	cJSON *in = cJSON_CreateNull();
	for (int round = 0; round < 2; round++) {
		wait_step(h, 2 * round + 1);
		cJSON *out = NULL;
		if (op_jq_run(h->q, in, NULL, NULL, &out, e, sizeof(e)) == OP_OK) {
			char *s = cJSON_PrintUnformatted(out);
			snprintf(h->got[round], sizeof(h->got[round]), "%s", s);
			cJSON_free(s);
		} else {
			snprintf(h->got[round], sizeof(h->got[round]), "error: %s", e);
		}
		cJSON_Delete(out);
		set_step(h, 2 * round + 2);
	}
	cJSON_Delete(in);
	return NULL;
}

START_TEST(free_while_other_threads_cache_states)
{
	/* libjq's own states: the fast path would answer these programs. */
	op_jq_fast_enable(false);
	struct handoff h = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	pthread_t t;
	h.q = compile_ok("\"first\"");
	/* Also cached on this thread, so that two threads hold states of it. */
	cJSON *in = cJSON_CreateNull(), *out = NULL;
	ck_assert_int_eq(op_jq_run(h.q, in, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	cJSON_Delete(out);
	ck_assert_int_eq(pthread_create(&t, NULL, handoff_worker, &h), 0);
	set_step(&h, 1);
	wait_step(&h, 2);
	/* The worker is idle but still caches a state of the first program. */
	op_jq_free(h.q);
	h.q = compile_ok("\"second\"");
	set_step(&h, 3);
	wait_step(&h, 4);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_str_eq(h.got[0], "\"first\"");
	ck_assert_str_eq(h.got[1], "\"second\"");
	ck_assert_int_eq(op_jq_run(h.q, in, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_json_text(out, "\"second\"");
	cJSON_Delete(out);
	cJSON_Delete(in);
	op_jq_free(h.q);
}
END_TEST

START_TEST(thread_cache_evicts_and_recompiles)
{
	/* libjq's own states: the fast path would answer these programs. */
	op_jq_fast_enable(false);
	enum { N = OP_JQ_THREAD_CACHE_MAX + 3 };
	struct op_jq *q[N];
	cJSON *in = cJSON_CreateNull(), *out = NULL;
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < N; i++) {
			char prog[32];
			snprintf(prog, sizeof(prog), "%d", i);
			if (round == 0)
				q[i] = compile_ok(prog);
			ck_assert_int_eq(op_jq_run(q[i], in, NULL, NULL, &out, err, sizeof(err)),
			                 OP_OK);
			ck_assert_int_eq(out->valueint, i);
			cJSON_Delete(out);
		}
	}
	/* Cleanup mid-life leaves the thread able to run again. */
	op_jq_thread_cleanup();
	ck_assert_int_eq(op_jq_run(q[0], in, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_int_eq(out->valueint, 0);
	cJSON_Delete(out);
	for (int i = 0; i < N; i++)
		op_jq_free(q[i]);
	cJSON_Delete(in);
}
END_TEST

START_TEST(out_of_memory_on_our_side)
{
	const char *in_text =
	    "{\"order\":{\"id\":1},\"items\":[{\"price\":1},{\"price\":2}],\"tags\":[\"a\",\"b\"]}";
	/* On libjq's path, then on the fast path, whose failures fall back to libjq. */
	int mode = _i;
	op_jq_fast_enable(mode == 1);
	int saw_ok = 0, saw_nomem = 0;
	for (uint64_t n = 1; n < 200; n++) {
		cJSON *in = op_test_json(in_text), *out = NULL;
		struct op_jq *q = NULL;
		op_alloc_fail_at(n);
		op_err e = op_jq_compile("{id: .order.id, total: (.items | map(.price) | add), "
		                         "tags: .tags}",
		                         &q, err, sizeof(err));
		if (e == OP_OK)
			e = op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err));
		/* Again, through this thread's cached state. */
		if (e == OP_OK) {
			cJSON_Delete(out);
			e = op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err));
		}
		op_alloc_fail_at(0);
		ck_assert_msg(e == OP_OK || e == OP_ENOMEM, "n=%d: %s (%s)", (int)n, op_err_name(e),
		              err);
		if (e == OP_OK) {
			ck_assert_json_text(out, "{\"id\":1,\"total\":3,\"tags\":[\"a\",\"b\"]}");
			saw_ok++;
		} else {
			ck_assert_ptr_null(out);
			saw_nomem++;
		}
		cJSON_Delete(out);
		cJSON_Delete(in);
		op_jq_free(q);
		op_jq_thread_cleanup();
		if (saw_ok >= 3)
			break;
	}
	ck_assert_int_gt(saw_nomem, 5);
	ck_assert_int_ge(saw_ok, 3);
}
END_TEST

struct first_run {
	const struct op_jq *q;
	const cJSON *in;
	bool ok;
};

static void *first_run_thread(void *arg)
{
	struct first_run *f = arg;
	char e[256];
	cJSON *out = NULL;
	f->ok = op_jq_run(f->q, f->in, NULL, NULL, &out, e, sizeof(e)) == OP_OK &&
	        cJSON_IsTrue(cJSON_GetObjectItem(out, "re")) &&
	        cJSON_GetObjectItem(out, "n")->valuedouble == 42;
	cJSON_Delete(out);
	return NULL;
}

/* The state a compile validated with is handed to the first run, unless the
 * process said not to keep it (the daemon, whose programs mostly wait): then
 * every run compiles its own, and runs with a regex are still right when
 * their first runs start on several threads at once. */
START_TEST(validated_state_kept_or_dropped)
{
	const char *prog = "{re: (.s | test(\"^ord-[0-9]+$\")), n: (.n * 2)}";
	cJSON *in = op_test_json("{\"s\":\"ord-17\",\"n\":21}");
	op_jq_known_clear();
	uint64_t c0 = op_jq_compiles();
	struct op_jq *q = compile_ok(prog);
	struct first_run f = {q, in, false};
	first_run_thread(&f);
	ck_assert(f.ok);
	ck_assert_uint_eq(op_jq_compiles() - c0, 1); /* the run took the spare */
	op_jq_free(q);

	op_jq_known_clear();
	op_jq_keep_validated(false);
	c0 = op_jq_compiles();
	q = compile_ok(prog);
	ck_assert_uint_eq(op_jq_compiles() - c0, 1);
	pthread_t t[4];
	struct first_run fr[4];
	for (int i = 0; i < 4; i++) {
		fr[i] = (struct first_run){q, in, false};
		ck_assert_int_eq(pthread_create(&t[i], NULL, first_run_thread, &fr[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert(fr[i].ok);
	}
	/* The validation, then one state for each thread that ran. */
	ck_assert_uint_eq(op_jq_compiles() - c0, 5);
	op_jq_free(q);
	op_jq_keep_validated(true);
	op_jq_known_clear();
	cJSON_Delete(in);
}
END_TEST

/* Without a kept state the check runs in a child process: it answers what
 * a check in the caller answers, class and jq's message, and the caller's
 * compile count still counts it. */
START_TEST(checked_apart_answers_the_same)
{
	/* libjq's own states: the fast path would answer these programs. */
	op_jq_fast_enable(false);
	static const char *bad[] = {
	    "{a: .b", ".a | nosuchfunction", "$undefined_var", "def f: .; f(1)", "reduce . as $x",
	};
	char here[1024];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		op_jq_known_clear();
		op_jq_keep_validated(true);
		struct op_jq *q = NULL;
		op_err e1 = op_jq_compile(bad[i], &q, here, sizeof(here));
		ck_assert_ptr_null(q);
		op_jq_keep_validated(false);
		uint64_t c0 = op_jq_compiles(), a0 = op_jq_checks_apart();
		op_err e2 = op_jq_compile(bad[i], &q, err, sizeof(err));
		ck_assert_uint_eq(op_jq_checks_apart() - a0, 1);
		ck_assert_ptr_null(q);
		ck_assert_msg(e1 == e2, "%s: %s here, %s apart", bad[i], op_err_name(e1),
		              op_err_name(e2));
		ck_assert_int_ne(e2, OP_OK);
		ck_assert_str_eq(err, here);
		ck_assert_uint_le(op_jq_compiles() - c0, 1);
	}
	/* A good one: the check passes, and the first run compiles its own. */
	op_jq_known_clear();
	uint64_t c0 = op_jq_compiles();
	struct op_jq *q = compile_ok(".a + 1");
	ck_assert_uint_eq(op_jq_compiles() - c0, 1);
	cJSON *in = op_test_json("{\"a\":41}");
	cJSON *out = NULL;
	ck_assert_int_eq(op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_double_eq(cJSON_GetNumberValue(out), 42);
	ck_assert_uint_eq(op_jq_compiles() - c0, 2);
	cJSON_Delete(out);
	cJSON_Delete(in);
	op_jq_free(q);
	op_jq_keep_validated(true);
	op_jq_known_clear();
}
END_TEST

#ifdef OP_FAULTS
/* A check whose child never answers: past the timeout the child is killed
 * and reaped, the check runs here and answers as it would have, and the
 * log says so. */
START_TEST(stuck_check_is_done_here)
{
	op_jq_fast_enable(false);
	char here[1024];
	op_jq_known_clear();
	op_jq_keep_validated(true);
	struct op_jq *q = NULL;
	op_err e1 = op_jq_compile("{a: .b", &q, here, sizeof(here));
	ck_assert_int_ne(e1, OP_OK);

	setenv("OUTPOST_FAULTS", "jq-check-hang=child", 1);
	op_jq_set_check_timeout(200);
	op_jq_keep_validated(false);
	op_jq_known_clear();
	op_log_set_sink(capture_sink, NULL);
	uint64_t a0 = op_jq_checks_apart();
	op_err e2 = op_jq_compile("{a: .b", &q, err, sizeof(err));
	op_log_set_sink(NULL, NULL);
	ck_assert_uint_eq(op_jq_checks_apart() - a0, 1);
	ck_assert_int_eq(e2, e1);
	ck_assert_str_eq(err, here);
	ck_assert_ptr_nonnull(log_seen);
	ck_assert_msg(strstr(log_seen, "gave no answer in 200 ms; checking it here"), "%s",
	              log_seen);
	/* The child is gone, not left a zombie. */
	ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
	ck_assert_int_eq(errno, ECHILD);
	free(log_seen);
	log_seen = NULL;

	/* A good program passes the same way. */
	op_jq_known_clear();
	ck_assert_int_eq(op_jq_compile(".a + 1", &q, err, sizeof(err)), OP_OK);
	op_jq_free(q);
	free(log_seen);
	log_seen = NULL;
	op_jq_keep_validated(true);
	op_jq_known_clear();
	unsetenv("OUTPOST_FAULTS");
}
END_TEST
#endif

/* A program that compiled is known: its hash is what op_jq_known_hash says,
 * the saved set brings it back, and a known text is accepted without a
 * compile, which shows with a text that does not compile: its runs fail. */
START_TEST(known_programs_skip_the_compile)
{
	const char *prog = "{total: ([.items[] | .qty * .price] | add)}";
	const char *in = "{\"items\":[{\"qty\":2,\"price\":1.5},{\"qty\":1,\"price\":4}]}";
	uint8_t h[OP_JQ_KNOWN_SIZE];
	uint64_t g0 = op_jq_known_gen();
	struct op_jq *q = compile_ok(prog);
	ck_assert_uint_gt(op_jq_known_gen(), g0);
	op_jq_free(q);
	void *buf;
	size_t len;
	uint64_t gen;
	ck_assert_int_eq(op_jq_known_export(&buf, &len, &gen), OP_OK);
	ck_assert_uint_eq(len, OP_JQ_KNOWN_SIZE);
	ck_assert_uint_eq(gen, op_jq_known_gen());
	ck_assert_int_eq(op_jq_known_hash(prog, h), OP_OK);
	ck_assert_int_eq(memcmp(buf, h, sizeof(h)), 0);

	/* As in a new process: nothing known, then the saved set imported. */
	op_jq_known_clear();
	ck_assert_int_eq(op_jq_known_import(buf, len), OP_OK);
	op_free(buf);
	g0 = op_jq_known_gen();
	q = compile_ok(prog);
	ck_assert_uint_eq(op_jq_known_gen(), g0); /* nothing new */
	cJSON *j = op_test_json(in), *out = NULL;
	ck_assert_int_eq(op_jq_run(q, j, NULL, NULL, &out, err, sizeof(err)), OP_OK);
	ck_assert_json_text(out, "{\"total\":7}");
	cJSON_Delete(out);
	op_jq_free(q);

	/* A known text is not compiled at load: planted for a broken program,
	 * the load succeeds and each run fails with jq's message. */
	const char *broken = ".a | @@@";
	ck_assert_int_eq(op_jq_known_hash(broken, h), OP_OK);
	ck_assert_int_eq(op_jq_known_import(h, sizeof(h)), OP_OK);
	q = compile_ok(broken);
	out = (cJSON *)1;
	ck_assert_int_eq(op_jq_run(q, j, NULL, NULL, &out, err, sizeof(err)), OP_EINTERNAL);
	ck_assert_ptr_null(out);
	ck_assert_msg(strstr(err, "@@@") != NULL, "message: %s", err);
	op_jq_free(q);
	/* Without the planted entry it is refused at load, as always. */
	op_jq_known_clear();
	struct op_jq *bad = NULL;
	ck_assert_int_eq(op_jq_compile(broken, &bad, err, sizeof(err)), OP_ECONFIG);
	ck_assert_ptr_null(bad);
	cJSON_Delete(j);
}
END_TEST

/* ---- the fast path (jq_fast.c) against libjq ---- */

/* One run's class and its output text or message, new; whether the fast path answered. */
static char *outcome(struct op_jq *q, const cJSON *in, const cJSON *g, const cJSON *m, bool fast,
                     bool *answered)
{
	char e[1024], *text;
	cJSON *out = NULL;
	op_jq_fast_enable(fast);
	uint64_t f0 = op_jq_fast_runs();
	op_err rc = op_jq_run(q, in, g, m, &out, e, sizeof(e));
	*answered = op_jq_fast_runs() != f0;
	if (rc == OP_OK) {
		char *s = print(out);
		text = op_strdup(s);
		cJSON_free(s);
	} else {
		size_t n = strlen(e) + 32;
		text = op_malloc(n);
		ck_assert_ptr_nonnull(text);
		snprintf(text, n, "%s: %s", op_err_name(rc), e);
	}
	ck_assert_ptr_nonnull(text);
	cJSON_Delete(out);
	op_jq_fast_enable(true);
	return text;
}

/*
 * libjq 1.6 leaks the keys of an object whose iteration (`.[]`, `map`, `add`)
 * ends in a jq error, a few bytes a run (connectors/transform/README.md).
 * The differential tests meet such errors by the hundred, so under ASan
 * their libjq runs are left out of the leak check; the fast path's runs are
 * checked, called directly.
 */
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#define LIBJQ_LEAKS_BEGIN() __lsan_disable()
#define LIBJQ_LEAKS_END()   __lsan_enable()
#else
#define LIBJQ_LEAKS_BEGIN() ((void)0)
#define LIBJQ_LEAKS_END()   ((void)0)
#endif

/*
 * Runs prog (compiled as q, output cap cap) on in: on libjq, on the fast
 * path directly, and through op_jq_run with the fast path on. Asserts that
 * the fast path's answer, when it gives one, is libjq's, and that op_jq_run
 * answers the same either way; returns whether the fast path answered.
 */
static bool same_answer_cap(struct op_jq *q, const char *prog, size_t cap, const cJSON *in,
                            const cJSON *g, const cJSON *m)
{
	bool lib_fast, via;
	LIBJQ_LEAKS_BEGIN();
	char *want = outcome(q, in, g, m, false, &lib_fast);
	LIBJQ_LEAKS_END();
	ck_assert(!lib_fast);

	struct op_jqf *f = op_jqf_compile(prog);
	ck_assert_msg(f != NULL, "%s has no fast form", prog);
	cJSON *out = NULL;
	bool fast = op_jqf_run(f, in, strstr(prog, "globals") ? g : NULL,
	                       strstr(prog, "metadata") ? m : NULL, cap, &out);
	op_jqf_free(f);
	if (fast) {
		char *s = print(out);
		if (strcmp(s, want) != 0) {
			char *it = print(in);
			ck_abort_msg("%s on %s: libjq %s, fast path %s", prog, it, want, s);
		}
		cJSON_free(s);
		cJSON_Delete(out);
	}

	if (!fast)
		LIBJQ_LEAKS_BEGIN();
	char *got = outcome(q, in, g, m, true, &via);
	if (!fast)
		LIBJQ_LEAKS_END();
	ck_assert_msg(via == fast, "%s: op_jq_run and the fast path disagree on taking it", prog);
	if (strcmp(want, got) != 0) {
		char *it = print(in);
		ck_abort_msg("%s on %s: libjq %s, op_jq_run %s", prog, it, want, got);
	}
	op_free(want);
	op_free(got);
	return fast;
}

static bool same_answer(struct op_jq *q, const char *prog, const cJSON *in, const cJSON *g,
                        const cJSON *m)
{
	return same_answer_cap(q, prog, OP_JQ_OUTPUT_MAX_DEFAULT, in, g, m);
}

/* W1's order as an HTTP trigger makes it a message (tests/bench). */
static const char order_input[] =
    "{\"body\":{\"order_id\":\"SO-1\",\"customer\":{\"id\":\"C-1\",\"name\":\"Acme\",\"country\":"
    "\"DE\"},\"currency\":\"EUR\",\"items\":[{\"sku\":\"A\",\"qty\":12,\"price\":4.35},{\"sku\":"
    "\"B\",\"qty\":4,\"price\":1.9}],\"requested\":\"2026-12-01\",\"priority\":\"high\"}}";

static const char *fast_inputs[] = {
    order_input,
    "{\"a\":{\"b\":1,\"c\":[1,2]},\"b\":[3,4],\"s\":\"MiXed \xc3\x9cn\xc3\xaf\",\"x\":2}",
    "{\"a\":[{\"x\":1},{\"x\":\"y\"},{\"x\":null},{\"x\":3}],\"b\":{\"p\":1,\"q\":\"r\"}}",
    "[1,2,\"x\",null,true,{\"x\":5},[0],-0.5]",
    "\"text\"",
    "42",
    "null",
    "true",
    "[]",
    "{}",
    "{\"a\":null,\"b\":false,\"s\":\"\"}",
    "{\"a\":\"x\",\"b\":\"x\",\"s\":\"ab\"}",
    "{\"a\":{\"k\":[1,{\"z\":null}]},\"b\":{\"k\":[1,{\"z\":null}]}}",
    "{\"a\":[1,2],\"b\":[1,2,3],\"s\":\"\xe2\x82\xac\"}",
    "{\"a\":{\"x\":1,\"y\":2},\"b\":{\"y\":2,\"x\":1}}",
    "{\"a\":\"abc\",\"b\":\"abd\",\"x\":1e300}",
    "{\"a\":[\"q\",\"r\"],\"b\":[[1],[2]],\"x\":0}",
    "{\"a\":3,\"b\":4.5,\"x\":-7,\"s\":\"A-z\"}",
    "{\"zeta\":1,\"Alpha\":2,\"\xc3\xa9t\xc3\xa9\":3,\"a\":4,\"s\":\"ab\",\"x\":16}",
    "[3,1,2,1,\"b\",\"a\",null,true,false,[2],[1,2],0,-0,2.5]",
    "[[3,1,2],[\"b\",\"a\",\"b\"],[],[null,false],[1,{\"a\":1}],[0,-0],[-0,0]]",
    "{\"a\":\"12\",\"b\":\"-0.5e2\",\"s\":\"1,2,,3,\",\"x\":2.75}",
    "[\"12\",\" 12\",\"1e999\",\"0x10\",\"01\",\"1.\",\"-\",\"3.25E-2\",\"nan\"]",
    "{\"a\":[\"x\",null,1.5,true,\"y\"],\"b\":[],\"s\":\":\",\"x\":-2}",
    "[\"abc\",\"cab\",\"a\",\"\",\"c\",\"abca\"]",
    "[{\"x\":1},{\"y\":null},{},{\"x\":false,\"z\":2}]",
    "[[1,2],[],[\"a\"],{\"k\":\"v\"},\"s\",9]",
};

/* Inputs jq.c's conversion changes or refuses: the fast path must not answer. */
static const char *fast_refused_inputs[] = {
    "{\"a\":1,\"a\":2}",
    "{\"a\":{\"b\":[{\"c\":1,\"c\":2}]},\"b\":1}",
    "{\"a\":\"\xff\xfe\",\"b\":1}",
    "{\"a\":\"x\",\"\xc3\":1}",
    "{\"a\":1e999,\"b\":1}",
};

static const char *fast_programs[] = {
    ".",
    ".a",
    ".a.b",
    ".a.b.c",
    ".a[1]",
    ".[0]",
    ".[7]",
    ".[\"a\"]",
    ".\"a\"",
    ".a[]",
    "[.[]]",
    "[.a[] | .x]",
    "map(.x)",
    "map(select(.x > 1))",
    "[.[] | select(type == \"number\")]",
    "{a, b: .b, \"c d\": 1, c: (.a // \"dflt\")}",
    "{a: 1, b: 3, a: 2}",
    "{x: .a} + {y: .b}",
    ". + {z: 1, a: 0}",
    "[.a, .b] | add",
    "add",
    "length",
    "map(length)",
    "[.[] | tostring]",
    "(.a + .b) * 2 - 1 / 4",
    ".x * 3 / 2 - .x",
    ".x / 0",
    ".x * .x * .x",
    ".a == .b",
    ".a != 1",
    ".a < .b",
    ".a <= .b",
    ".a > .b",
    ".a >= .b",
    "[1, \"a\", null, true, false, [1], {}] | map(. < 2)",
    "[.[] | . <= \"m\"]",
    "if .a then \"yes\" elif .b then \"maybe\" else \"no\" end",
    "[if (.a, .b) then 1 else 2 end]",
    ".a and .b",
    ".a or .b",
    "[(.a, .b) and true]",
    "[(.a, .b) or (true, false)]",
    "[.a // empty]",
    "[.a // .b // \"c\"]",
    "[empty]",
    "empty",
    "[.[] | not]",
    "type",
    "map(type)",
    ".s | ascii_downcase",
    ".s | ascii_upcase",
    ".s | length",
    "[.a, .b] | length",
    "\"\xc3\xa9\\u00e9\\u20ac\\n\\t\\\"\\/\"",
    "[1.5e3, .5, 1e2, 0.1, 3.]",
    "{\"k\\u00e9y\": .a, if: 1, and: 2, true: 3, null}",
    "$globals",
    "$globals.region",
    "$metadata.event_id",
    "{g: $globals.nothing, m: $metadata}",
    "# a comment\n.a # and one after\n",
    ".a | .b",
    "[.a | (.b, .c)]",
    "[.a, .b, .s] | map(. + .)",
    "[.a] + [.b]",
    ".s + \"!\"",
    "null + .a",
    ".a + null",
    "{a: .a} | .a",
    "[.b[] | {v: ., w: (. * 2)}]",
    "[1 - 2 - 3, 8 / 4 / 2, 1 + 2 * 3 - 4 / 2 * 3]",
    "[.a or .b and .x, .a and .b or .x, .x > 1 and .x < 5 or .a == null]",
    "[1, 2 | . * 10, . // 0, null // false // 3]",
    "\"id-\\(.a)/\\(.b) \\(.x)\"",
    "\"\\(.s)\\(\"in\\(.a)side\")!\"",
    "[.[] | tostring]",
    "[.a, .b, .x] | map(\"<\\(.)>\")",
    "\"\\(.a | length) items\"",
    "\"\\(.a[0])\"",
    w1_program,
    "keys",
    "keys_unsorted",
    "to_entries",
    ".a | keys",
    "map(keys)",
    "[.[] | to_entries]",
    "first",
    "last",
    "[.a, .b] | [first, last]",
    ".a | first",
    "min",
    "max",
    "sort",
    "unique",
    "[.[] | min]",
    "[.a, .b, .x, .s] | sort",
    "[.b, .a, .b] | unique",
    "[.x, .a, .x] | [min, max]",
    "[.[] | floor]",
    "[.[] | sqrt]",
    ".x | [floor, sqrt]",
    "[.[] | tonumber]",
    "[.a, .b] | map(tonumber)",
    "any",
    "all",
    "[.[] | any, all]",
    "[.[] | values]",
    "[.[] | nulls]",
    "[.[] | booleans]",
    "[.[] | numbers]",
    "[.[] | strings]",
    "[.[] | arrays]",
    "[.[] | objects]",
    "[.[] | iterables]",
    "[.[] | scalars]",
    "has(\"a\")",
    "has(\"zz\")",
    "has(0)",
    "has(3)",
    "[has(\"a\"), has(\"b\")]",
    ".a | has(1)",
    "[.[] | has(\"x\")]",
    ".s | [startswith(\"M\"), endswith(\"b\"), startswith(\"\")]",
    "[.a, .s] | map(startswith(\"a\"))",
    "[.[] | ltrimstr(\"a\")]",
    "[.[] | rtrimstr(\"c\")]",
    ".s | [ltrimstr(.s), rtrimstr(\"\")]",
    "join(\", \")",
    "[.[] | join(\"-\")]",
    ".a | join(\":\")",
    "[.a, .b, .x] | join(\"/\")",
    ".s | split(\"b\")",
    ".s | [split(\"x\"), split(\"b\")]",
    "[.[] | split(\",\")]",
    "\"a,b,,c,\" | split(\",\")",
    "\",a\" | split(\",\")",
    "\"\" | split(\",\")",
    "to_entries | map(.key)",
    "keys | join(\",\")",
};

START_TEST(fast_path_matches_libjq)
{
	cJSON *g = op_test_json("{\"region\":\"eu-1\",\"n\":[1,2]}");
	cJSON *m = op_test_json("{\"event_id\":\"e-1\"}");
	size_t ni = sizeof(fast_inputs) / sizeof(fast_inputs[0]);
	size_t np = sizeof(fast_programs) / sizeof(fast_programs[0]);
	size_t nr = sizeof(fast_refused_inputs) / sizeof(fast_refused_inputs[0]);
	size_t answered = 0, runs = 0;
	for (size_t p = 0; p < np; p++) {
		struct op_jq *q = compile_ok(fast_programs[p]);
		ck_assert_msg(op_jq_is_fast(q), "%s has no fast form", fast_programs[p]);
		size_t mine = 0;
		for (size_t i = 0; i < ni; i++) {
			cJSON *in = op_test_json(fast_inputs[i]);
			mine += same_answer(q, fast_programs[p], in, g, m);
			runs++;
			cJSON_Delete(in);
		}
		/* Every program here has an input the fast path answers. */
		ck_assert_msg(mine > 0 || strstr(fast_programs[p], "/ 0") != NULL,
		              "%s: the fast path answered nothing", fast_programs[p]);
		answered += mine;
		for (size_t i = 0; i < nr; i++) {
			cJSON *in = op_test_json(fast_refused_inputs[i]);
			ck_assert_msg(!same_answer(q, fast_programs[p], in, g, m),
			              "%s answered on %s", fast_programs[p],
			              fast_refused_inputs[i]);
			cJSON_Delete(in);
		}
		op_jq_free(q);
	}
	ck_assert_uint_gt(answered, runs / 3);

	/* Nesting past the limit, and the output cap, are libjq's answers. */
	char deep[2 * OP_JQ_DEPTH_MAX + 8];
	memset(deep, '[', OP_JQ_DEPTH_MAX + 1);
	memset(deep + OP_JQ_DEPTH_MAX + 1, ']', OP_JQ_DEPTH_MAX + 1);
	deep[2 * OP_JQ_DEPTH_MAX + 2] = '\0';
	cJSON *in = cJSON_ParseWithOpts(deep, NULL, false);
	if (in != NULL) { /* cJSON may refuse the depth itself */
		struct op_jq *q = compile_ok(".");
		ck_assert(!same_answer(q, ".", in, NULL, NULL));
		op_jq_free(q);
		cJSON_Delete(in);
	}
	struct op_jq *q = compile_ok("[.[], .[], .[]]");
	op_jq_set_output_max(q, 20);
	in = op_test_json("[\"abcdef\",\"ghijkl\"]");
	ck_assert(!same_answer_cap(q, "[.[], .[], .[]]", 20, in, NULL, NULL));
	op_jq_set_output_max(q, 200);
	ck_assert(same_answer_cap(q, "[.[], .[], .[]]", 200, in, NULL, NULL));
	cJSON_Delete(in);
	op_jq_free(q);
	cJSON_Delete(g);
	cJSON_Delete(m);
}
END_TEST

/* Members whose keys are constants (cJSON_AddItemToObjectCS) keep them
 * through a merge that replaces them: nothing frees a key it does not own. */
START_TEST(fast_path_constant_keys)
{
	static const char *progs[] = {". + {a: 2}", "[., {a: 3}] | add", "{a: 0} + .", "."};
	for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
		cJSON *in = cJSON_CreateObject();
		ck_assert(cJSON_AddItemToObjectCS(in, "a", cJSON_CreateNumber(1)));
		ck_assert(cJSON_AddItemToObjectCS(in, "b", cJSON_CreateString("x")));
		struct op_jq *q = compile_ok(progs[i]);
		ck_assert(same_answer(q, progs[i], in, NULL, NULL));
		cJSON *out = NULL;
		ck_assert_int_eq(op_jq_run(q, in, NULL, NULL, &out, err, sizeof(err)), OP_OK);
		cJSON_Delete(in); /* the output outlives the input */
		ck_assert_ptr_nonnull(cJSON_GetObjectItem(out, "a"));
		ck_assert_ptr_nonnull(cJSON_GetObjectItem(out, "b"));
		cJSON_Delete(out);
		op_jq_free(q);
	}
}
END_TEST

/* Programs outside the subset have no fast form. */
START_TEST(fast_path_takes_only_the_subset)
{
	static const char *rest[] = {
	    "def f: .; f",
	    ".a as $x | $x",
	    ".a?",
	    "@text \"\\(.a)\"",
	    ".[1:2]",
	    "-.a",
	    ".a % 2",
	    "..",
	    ".a |= 1",
	    "reduce .[] as $x (0; . + $x)",
	    "try .a",
	    "@base64",
	    "$ENV",
	    "$__loc__",
	    "env",
	    "from_entries",
	    ".a[.b]",
	    "{(.a): 1}",
	    "{$globals}",
	    "tojson",
	    ".[-1]",
	    ".[1.5]",
	    "map(.)?",
	    "[.[] | ceil]",
	    "has",
	    "join(\",\"; 1)",
	    "split(\",\"; \"g\")",
	    "keys(1)",
	    "del(.a)",
	    "with_entries(.)",
	    "\"\\u0000\"",
	    "\"\\ud83d\\ude00\"",
	    ".a // = 1",
	    "1 as $x | 2",
	    "label $f | 1",
	    "input_line_number",
	    "length(1)",
	    "{a: -1}",
	    ".a.b |= 3",
	    "not(1)",
	    "$globals::x",
	    "[limit(1; .[])]",
	};
	for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]); i++) {
		struct op_jq *q = NULL;
		if (op_jq_compile(rest[i], &q, err, sizeof(err)) != OP_OK)
			continue; /* not jq at all */
		ck_assert_msg(!op_jq_is_fast(q), "%s has a fast form", rest[i]);
		op_jq_free(q);
	}
}
END_TEST

/* Numbers as text (tostring, interpolation): jq's own digits and notation. */
START_TEST(fast_path_number_text)
{
	static const char prog[] = "[tostring, \"n=\\(.)\"]";
	struct op_jq *q = compile_ok(prog);
	uint64_t x = 0x2545f4914f6cdd1du;
	double p10[] = {1, 10, 100, 1e3, 1e5, 1e9};
	double fixed[] = {0,
	                  -0.0,
	                  1,
	                  100,
	                  1e6,
	                  1e15,
	                  1e16,
	                  1e17,
	                  123456789012,
	                  1e-4,
	                  1e-5,
	                  0.1,
	                  0.5,
	                  1.5e-7,
	                  3.0,
	                  1e300,
	                  5e-324,
	                  -2.5e-300,
	                  12345678901234567890.0,
	                  72057594037927936.0,
	                  9007199254740993.0,
	                  0.30000000000000004,
	                  1e21,
	                  1.7976931348623157e308,
	                  4.35 * 12};
	size_t n = sizeof(fixed) / sizeof(fixed[0]);
	for (size_t i = 0; i < n + 3000; i++) {
		double d;
		if (i < n) {
			d = fixed[i];
		} else {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			if (i % 2) {
				memcpy(&d, &x, sizeof(d));
				if (!isfinite(d))
					continue;
			} else {
				d = (double)(int64_t)(x % 20000001 - 10000000) / p10[x % 6];
			}
		}
		cJSON *in = cJSON_CreateNumber(d);
		bool answered = same_answer(q, prog, in, NULL, NULL);
		int be;
		ck_assert(answered || fabs(frexp(d, &be)) == 0.5); /* below */
		cJSON_Delete(in);
	}
	/* Every power of two: libjq's dtoa finds a shorter text for some
	 * (2^-24, 2^89), which the fast path leaves to libjq. */
	size_t answered = 0;
	for (int e = -1074; e <= 1023; e++) {
		cJSON *in = cJSON_CreateNumber(ldexp(1, e));
		answered += same_answer(q, prog, in, NULL, NULL);
		cJSON_Delete(in);
	}
	ck_assert_uint_gt(answered, 200); /* those of 15 digits or fewer */
	op_jq_free(q);
}
END_TEST

/* A random program of the subset, depth d, appended to b. */
static void random_program(struct op_buf *b, unsigned *seed, int d)
{
	static const char *leaves[] = {
	    ".",    ".a",         ".b", ".x",    ".a.b",  ".[0]", ".[\"a\"]",
	    "1",    "2.5",        "0",  "\"x\"", "\"a\"", "true", "false",
	    "null", "$globals.n", "[]", "{}",    ".s",    ".a.k", "$globals.region",
	};
	static const char *unary[] = {
	    "[%s]",
	    "{a: (%s), \"b c\": 1}",
	    "(%s).a",
	    "(%s)[]",
	    "(%s)[1]",
	    "(%s | add)",
	    "(%s | length)",
	    "(%s | not)",
	    "(%s | type)",
	    "(%s | tostring)",
	    "(%s | ascii_downcase)",
	    "map(%s)",
	    "select(%s)",
	    "{a: (%s), a: 2}",
	    "\"<\\(%s)>\"",
	};
	static const char *binary[] = {
	    "(%s | %s)",   "(%s , %s)",          "(%s // %s)",
	    "(%s and %s)", "(%s or %s)",         "(%s == %s)",
	    "(%s != %s)",  "(%s < %s)",          "(%s >= %s)",
	    "(%s + %s)",   "(%s - %s)",          "(%s * %s)",
	    "(%s / %s)",   "{x: (%s), y: (%s)}", "if %s then %s else empty end",
	};
	int r = rand_r(seed) % 8;
	if (d == 0 || r == 0) {
		const char *l = leaves[rand_r(seed) % (sizeof(leaves) / sizeof(leaves[0]))];
		ck_assert_int_eq(op_buf_add(b, l, strlen(l)), OP_OK);
		return;
	}
	bool two = r > 3;
	const char *f = two ? binary[rand_r(seed) % (sizeof(binary) / sizeof(binary[0]))]
	                    : unary[rand_r(seed) % (sizeof(unary) / sizeof(unary[0]))];
	const char *hole = strstr(f, "%s");
	ck_assert_int_eq(op_buf_add(b, f, (size_t)(hole - f)), OP_OK);
	random_program(b, seed, d - 1);
	f = hole + 2;
	if (two) {
		hole = strstr(f, "%s");
		ck_assert_int_eq(op_buf_add(b, f, (size_t)(hole - f)), OP_OK);
		random_program(b, seed, d - 1);
		f = hole + 2;
	}
	ck_assert_int_eq(op_buf_add(b, f, strlen(f)), OP_OK);
}

/* Random programs of the subset on the inputs above: the same answers as libjq's. */
START_TEST(fast_path_random_programs)
{
	unsigned seed = 20261124;
	cJSON *g = op_test_json("{\"region\":\"eu-1\",\"n\":[1,2]}");
	size_t ni = sizeof(fast_inputs) / sizeof(fast_inputs[0]);
	size_t answered = 0, runs = 0;
	for (int p = 0; p < 120; p++) {
		struct op_buf b;
		op_buf_init(&b, 1 << 20);
		random_program(&b, &seed, 4);
		ck_assert_int_eq(op_buf_add(&b, "", 1), OP_OK);
		struct op_jq *q = compile_ok(b.data);
		ck_assert_msg(op_jq_is_fast(q), "%s has no fast form", b.data);
		for (size_t i = 0; i < ni; i++) {
			cJSON *in = op_test_json(fast_inputs[i]);
			answered += same_answer(q, b.data, in, g, NULL);
			runs++;
			cJSON_Delete(in);
		}
		op_jq_free(q);
		op_buf_fini(&b);
	}
	ck_assert_uint_gt(answered, runs / 8);
	cJSON_Delete(g);
}
END_TEST

/* Imports must be whole hashes; the set keeps the most recent OP_JQ_KNOWN_MAX. */
START_TEST(known_set_is_bounded)
{
	op_jq_known_clear();
	ck_assert_int_eq(op_jq_known_import("x", 1), OP_EINVAL);
	size_t n = OP_JQ_KNOWN_MAX + 10;
	uint8_t *b = op_calloc(n, OP_JQ_KNOWN_SIZE);
	ck_assert_ptr_nonnull(b);
	for (size_t i = 0; i < n; i++)
		memcpy(b + i * OP_JQ_KNOWN_SIZE, &i, sizeof(i));
	ck_assert_int_eq(op_jq_known_import(b, n * OP_JQ_KNOWN_SIZE), OP_OK);
	void *out;
	size_t len;
	uint64_t gen;
	ck_assert_int_eq(op_jq_known_export(&out, &len, &gen), OP_OK);
	ck_assert_uint_eq(len, (size_t)OP_JQ_KNOWN_MAX * OP_JQ_KNOWN_SIZE);
	/* The oldest ten went first. */
	ck_assert_int_eq(memcmp(out, b + 10 * OP_JQ_KNOWN_SIZE, len), 0);
	op_free(out);
	op_free(b);
	op_jq_known_clear();
	ck_assert_int_eq(op_jq_known_export(&out, &len, &gen), OP_OK);
	ck_assert_ptr_null(out);
	ck_assert_uint_eq(len, 0);
}
END_TEST

static Suite *jq_suite(void)
{
	Suite *s = suite_create("jq");
	TCase *tc = tcase_create("jq");
	tcase_add_checked_fixture(tc, NULL, teardown);
	/* libjq compiles take ~15 ms each (more under ASan or valgrind). */
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, compile_error_has_jq_messages);
	tcase_add_test(tc, transform_result);
	tcase_add_test(tc, zero_and_many_outputs);
	tcase_add_test(tc, runtime_error_text);
	tcase_add_test(tc, globals_and_metadata);
	tcase_add_test(tc, environment_not_exposed);
	tcase_add_test(tc, input_halt_and_modules_refused);
	tcase_add_test(tc, halted_state_reused);
	tcase_add_test(tc, input_metadata_builtins);
	tcase_add_test(tc, debug_and_stderr_go_to_the_log);
	tcase_add_test(tc, numbers_round_trip);
	tcase_add_test(tc, strings_keys_and_unicode);
	tcase_add_test(tc, nesting_limits);
	tcase_add_test(tc, output_cap);
	tcase_add_test(tc, dates_are_utc_whatever_the_tz);
	tcase_add_test(tc, home_jq_file_refused);
	tcase_add_test(tc, threads_match_single_thread);
	tcase_add_test(tc, threads_with_errors_and_halts);
	tcase_add_test(tc, free_while_other_threads_cache_states);
	tcase_add_test(tc, thread_cache_evicts_and_recompiles);
	tcase_add_loop_test(tc, out_of_memory_on_our_side, 0, 2);
	tcase_add_test(tc, validated_state_kept_or_dropped);
	tcase_add_test(tc, checked_apart_answers_the_same);
#ifdef OP_FAULTS
	tcase_add_test(tc, stuck_check_is_done_here);
#endif
	tcase_add_test(tc, known_programs_skip_the_compile);
	tcase_add_test(tc, known_set_is_bounded);
	tcase_add_test(tc, fast_path_matches_libjq);
	tcase_add_test(tc, fast_path_constant_keys);
	tcase_add_test(tc, fast_path_number_text);
	tcase_add_test(tc, fast_path_takes_only_the_subset);
	tcase_add_test(tc, fast_path_random_programs);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(jq_suite)
