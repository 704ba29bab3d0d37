/*
 * Helpers shared by the unit test programs: JSON parsing and comparison with
 * readable failure messages, one pipeline run through an engine with a host,
 * and the Check runner setup.
 */
#include "tests/unit/test.h"

#include <ftw.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/diag.h"
#include "agent/engine/engine.h"

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(path);
}

void op_test_rmtree(const char *dir)
{
	ck_assert_msg(nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0, "cannot remove %s",
	              dir);
}

int op_test_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}

cJSON *op_test_json(const char *text)
{
	cJSON *j = cJSON_Parse(text);
	ck_assert_msg(j != NULL, "test JSON does not parse: %s", text);
	return j;
}

void op_test_assert_json_eq(const cJSON *got, const cJSON *want, const char *file, int line)
{
	if (got != NULL && want != NULL && cJSON_Compare(got, want, 1))
		return;
	char *g = got ? cJSON_PrintUnformatted(got) : NULL;
	char *w = want ? cJSON_PrintUnformatted(want) : NULL;
	ck_abort_msg("%s:%d: JSON differs\n  got:  %s\n  want: %s", file, line, g ? g : "(null)",
	             w ? w : "(null)");
}

void op_test_assert_json_text(const cJSON *got, const char *want, const char *file, int line)
{
	cJSON *w = op_test_json(want);
	op_test_assert_json_eq(got, w, file, line);
	cJSON_Delete(w);
}

op_err op_test_run_with_dirs(const char *pipeline, const char *const *dirs, int n, cJSON **out,
                             struct op_fail *f)
{
	struct op_diag d;
	op_diag_init(&d);
	struct op_pipeline *p = NULL;
	ck_assert_int_eq(op_pipeline_load(pipeline, strlen(pipeline), "test", &d, &p), OP_OK);
	op_diag_fini(&d);
	struct op_engine *e = op_engine_new();
	ck_assert_ptr_nonnull(e);
	if (n >= 0) {
		struct op_host h = {.file_dirs = dirs, .n_file_dirs = (size_t)n};
		op_engine_set_host(e, &h);
	}
	*out = NULL;
	op_err rc = op_engine_run(e, p, cJSON_CreateObject(), NULL, out, f);
	op_pipeline_free(p);
	op_engine_free(e);
	return rc;
}
