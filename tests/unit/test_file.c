/*
 * Unit tests of the file connector's CSV reader and writer: RFC 4180
 * quoting, CRLF and LF, blank lines, headers, other delimiters, errors
 * with their line, and a write read back unchanged; and the step's dir
 * held to the folders the host lends (op_exec_file_dir). The step itself
 * is tested end to end in tests/e2e/test_file.sh.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/engine/engine.h"
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

/* Runs a file step reading dir/path as text; dirs (n of them) are the
 * host's [files] dirs, no host at all when n is -1. NULL on failure, then
 * f is set. */
static cJSON *read_in(const char *dir, const char *path, const char *const *dirs, int n,
                      struct op_fail *f)
{
	char text[2048];
	snprintf(text, sizeof(text),
	         "{\"name\":\"p\",\"version\":\"1\",\"steps\":[{\"type\":\"file\","
	         "\"config\":{\"dir\":\"%s\",\"path\":\"%s\",\"format\":\"text\"}}]}",
	         dir, path);
	cJSON *out = NULL;
	op_err rc = op_test_run_with_dirs(text, dirs, n, &out, f);
	ck_assert(rc == OP_OK ? out != NULL : out == NULL && rc == f->cls);
	return out;
}

/* The step fails with FILE_DIR, class cls, and a message holding msg. */
static void dir_refused(const char *dir, const char *const *dirs, int n, op_err cls,
                        const char *msg)
{
	struct op_fail f;
	cJSON *out = read_in(dir, "a.txt", dirs, n, &f);
	ck_assert_msg(out == NULL, "%s: read", dir);
	ck_assert_str_eq(f.code, "FILE_DIR");
	ck_assert_msg(f.cls == cls, "%s: class %s", dir, op_err_str(f.cls));
	ck_assert_msg(strstr(f.msg, msg) != NULL, "%s: got \"%s\"", dir, f.msg);
}

START_TEST(dir_is_a_folder_the_host_lends)
{
	char root[64], ok[128], in[128], near[128], p[256];
	snprintf(root, sizeof(root), "/tmp/op-file-unit-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(ok, sizeof(ok), "%s/ok", root);
	snprintf(in, sizeof(in), "%s/ok/in", root);
	snprintf(near, sizeof(near), "%s/ok2", root);
	ck_assert_int_eq(mkdir(ok, 0755), 0);
	ck_assert_int_eq(mkdir(in, 0755), 0);
	ck_assert_int_eq(mkdir(near, 0755), 0);
	const char *const names[] = {in, near};
	for (size_t i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/a.txt", names[i]);
		FILE *fp = fopen(p, "w");
		ck_assert_ptr_nonnull(fp);
		fputs(i ? "near" : "in", fp);
		fclose(fp);
	}
	const char *const dirs[] = {"/nonexistent/first", ok};
	struct op_fail f;
	cJSON *out = read_in(in, "a.txt", dirs, 2, &f);
	ck_assert_json_text(out, "\"in\"");
	cJSON_Delete(out);
	out = read_in(ok, "in/a.txt", dirs, 2, &f);
	ck_assert_json_text(out, "\"in\"");
	cJSON_Delete(out);
	/* A neighbour whose name starts the same is another folder. */
	dir_refused(near, dirs, 2, OP_ECONFIG,
	            "is not inside a folder of the agent's [files] dirs");
	dir_refused("/tmp", dirs, 2, OP_ECONFIG, "is not inside a folder");
	snprintf(p, sizeof(p), "%s/../ok2", ok);
	dir_refused(p, dirs, 2, OP_ECONFIG, "has a \"..\"; name the folder without it");
	snprintf(p, sizeof(p), "%s/in/..", ok);
	dir_refused(p, dirs, 2, OP_ECONFIG, "has a \"..\"");
	dir_refused(in, dirs, 0, OP_ECONFIG,
	            "cannot be used ([files] dirs in the agent config lists the folders");
	dir_refused(in, NULL, -1, OP_EUNSUPPORTED, "outpostctl run reads them with --config");
	/* "/" lends everything. */
	const char *const all[] = {"/"};
	out = read_in(near, "a.txt", all, 1, &f);
	ck_assert_json_text(out, "\"near\"");
	cJSON_Delete(out);
	op_test_rmtree(root);
}
END_TEST

static Suite *file_suite(void)
{
	Suite *s = suite_create("file");
	TCase *tc = tcase_create("csv");
	tcase_add_test(tc, csv_reads_rfc4180);
	tcase_add_test(tc, csv_writes_and_reads_back);
	suite_add_tcase(s, tc);
	tc = tcase_create("step");
	tcase_add_test(tc, dir_is_a_folder_the_host_lends);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(file_suite)
