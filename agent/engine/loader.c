/*
 * Pipeline files and folders into an engine. Invariant: a file is either
 * added whole (loaded, compiled, name free) or reported and left out.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/file.h"
#include "agent/engine/loader.h"

/* Reports one problem that has no JSON path (I/O, a taken name). */
static void report_one(op_load_report_fn report, void *ud, const char *file, const char *msg)
{
	struct op_diag d;
	op_diag_init(&d);
	op_diag_add_at(&d, "", "%s", msg);
	if (report)
		report(ud, file, &d);
	op_diag_fini(&d);
}

op_err op_engine_load_file(struct op_engine *e, const char *path, op_load_report_fn report,
                           void *ud)
{
	char *text = NULL, err[512] = "";
	size_t len = 0;
	op_err rc = op_file_read(path, OP_PIPELINE_MAX_BYTES, &text, &len, err, sizeof(err));
	if (rc) {
		report_one(report, ud, path, err);
		return rc;
	}
	struct op_diag d;
	op_diag_init(&d);
	struct op_pipeline *p = NULL;
	rc = op_pipeline_load(text, len, path, &d, &p);
	op_free(text);
	if (rc) {
		if (rc == OP_ENOMEM && op_diag_count(&d) == 0)
			op_diag_add_at(&d, "", "out of memory");
		if (report)
			report(ud, path, &d);
		op_diag_fini(&d);
		return rc == OP_ENOMEM ? rc : OP_ECONFIG;
	}
	op_diag_fini(&d);
	rc = op_engine_add(e, p, err, sizeof(err));
	if (rc) {
		/* op_engine_add freed p; err names the file already. */
		report_one(report, ud, path, err);
		return rc == OP_ENOMEM ? rc : OP_ECONFIG;
	}
	return OP_OK;
}

static int json_file(const struct dirent *de)
{
	size_t n = strlen(de->d_name);
	return de->d_name[0] != '.' && n > 5 && strcmp(de->d_name + n - 5, ".json") == 0;
}

/* True when path names the same file as one of the n paths in files. */
static bool same_file_as_any(const char *path, char *const *files, size_t n)
{
	char real[PATH_MAX], other[PATH_MAX];
	if (n == 0 || realpath(path, real) == NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (realpath(files[i], other) && strcmp(real, other) == 0)
			return true;
	}
	return false;
}

op_err op_engine_load_dir(struct op_engine *e, const char *dir, char *const *skip, size_t nskip,
                          op_load_report_fn report, void *ud, size_t *bad)
{
	struct dirent **list = NULL;
	size_t nbad = 0;
	int n = scandir(dir, &list, json_file, alphasort);
	if (n < 0) {
		char eb[128];
		int er = errno;
		report_one(report, ud, dir, strerror_r(er, eb, sizeof(eb)));
		if (bad)
			*bad = 1;
		return op_err_from_errno(er);
	}
	op_err rc = OP_OK;
	for (int i = 0; i < n; i++) {
		char path[PATH_MAX];
		int w = snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
		free(list[i]);
		if (w < 0 || (size_t)w >= sizeof(path)) {
			report_one(report, ud, dir, "a file name in it is too long");
			nbad++;
			continue;
		}
		if (same_file_as_any(path, skip, nskip))
			continue;
		op_err r = op_engine_load_file(e, path, report, ud);
		if (r) {
			nbad++;
			if (rc == OP_OK || r == OP_ENOMEM)
				rc = r == OP_ENOMEM ? r : OP_ECONFIG;
		}
	}
	free(list);
	if (bad)
		*bad = nbad;
	return rc;
}
