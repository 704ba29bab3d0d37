/*
 * Runs the official JSON-Schema-Test-Suite (its required, non-optional cases
 * for draft2020-12 and draft7) against connectors/validate/schema.h and
 * prints one line per draft: "draft2020-12: N passed, M failed". The suite's
 * remotes/ files are handed to the compiler as known documents under
 * http://localhost:1234/, as the suite intends; nothing is fetched. Each case
 * is validated twice, without and with an error sink, and counts as passed
 * only if both answers are right and an invalid answer comes with at least
 * one error line. Usage: schema-suite [-v] [-f] [SUITE_DIR], SUITE_DIR
 * defaulting to ../shared/json-schema-test-suite; -v lists each failed case,
 * -f also runs the optional format cases with format assertion on (reported
 * only). Exits 0 when both drafts pass at least 95% of their required
 * cases.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "connectors/validate/schema.h"

#define FILE_MAX  ((size_t)16 << 20)
#define PATH_LEN  4096
#define REMOTE    "http://localhost:1234/"
#define MAX_ERRS  50
#define ERRS_SIZE ((size_t)1 << 20)
/* The suite's checkout beside the repository, as `make conformance` uses. */
#define DEFAULT_SUITE "../shared/json-schema-test-suite"

struct docs {
	struct op_schema_doc *v;
	cJSON **json;
	char **uri;
	size_t n, cap;
};

struct tally {
	unsigned long pass, fail;
};

static bool verbose;

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	if (f == NULL)
		return NULL;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			if (cap >= FILE_MAX)
				goto fail;
			cap = cap ? cap * 2 : 65536;
			char *nb = op_realloc(buf, cap);
			if (nb == NULL)
				goto fail;
			buf = nb;
		}
		size_t k = fread(buf + len, 1, cap - len - 1, f);
		len += k;
		if (k == 0)
			break;
	}
	if (ferror(f))
		goto fail;
	fclose(f);
	buf[len] = '\0';
	return buf;
fail:
	fclose(f);
	op_free(buf);
	return NULL;
}

static cJSON *read_json(const char *path)
{
	char *text = read_text(path);
	if (text == NULL)
		return NULL;
	cJSON *j = cJSON_Parse(text);
	op_free(text);
	return j;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the entries of dir (excluding "." and ".."). */
static char **list_dir(const char *dir, size_t *count)
{
	DIR *d = opendir(dir);
	char **v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	*count = 0;
	if (d == NULL)
		return NULL;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nv = op_realloc(v, cap * sizeof(*v));
			if (nv == NULL)
				break;
			v = nv;
		}
		if ((v[n] = op_strdup(e->d_name)) != NULL)
			n++;
	}
	closedir(d);
	if (n > 0)
		qsort(v, n, sizeof(*v), cmp_names);
	*count = n;
	return v;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		op_free(v[i]);
	op_free(v);
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void add_doc(struct docs *d, const char *uri, cJSON *json)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct op_schema_doc *nv = op_realloc(d->v, cap * sizeof(*nv));
		if (nv != NULL)
			d->v = nv;
		cJSON **nj = op_realloc(d->json, cap * sizeof(*nj));
		if (nj != NULL)
			d->json = nj;
		char **nu = op_realloc(d->uri, cap * sizeof(*nu));
		if (nu != NULL)
			d->uri = nu;
		if (nv == NULL || nj == NULL || nu == NULL) {
			cJSON_Delete(json);
			return;
		}
		d->cap = cap;
	}
	char *u = op_strdup(uri);
	if (u == NULL) {
		cJSON_Delete(json);
		return;
	}
	d->json[d->n] = json;
	d->uri[d->n] = u;
	d->n++;
}

/* Loads every *.json under dir as REMOTE + rel. */
static void load_remotes(const char *dir, const char *rel, struct docs *d)
{
	size_t n;
	char **names = list_dir(dir, &n);
	for (size_t i = 0; i < n; i++) {
		char path[PATH_LEN], sub[PATH_LEN / 2];
		if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= (int)sizeof(path) ||
		    snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", names[i]) >=
		        (int)sizeof(sub))
			continue;
		if (is_dir(path)) {
			load_remotes(path, sub, d);
		} else if (ends_with(names[i], ".json")) {
			cJSON *j = read_json(path);
			char uri[PATH_LEN];
			snprintf(uri, sizeof(uri), "%s%s", REMOTE, sub);
			if (j != NULL)
				add_doc(d, uri, j);
			else
				fprintf(stderr, "schema-suite: cannot read %s\n", path);
		}
	}
	free_list(names, n);
}

static void fail_case(struct tally *t, const char *file, const char *group, const char *test,
                      const char *why)
{
	t->fail++;
	if (verbose)
		printf("FAIL %s: %s / %s: %s\n", file, group, test, why);
}

static void run_group(const cJSON *g, const char *file, int draft, bool formats,
                      const struct docs *d, struct tally *t)
{
	const cJSON *desc = cJSON_GetObjectItemCaseSensitive(g, "description");
	const cJSON *schema = cJSON_GetObjectItemCaseSensitive(g, "schema");
	const cJSON *tests = cJSON_GetObjectItemCaseSensitive(g, "tests");
	const char *gname = cJSON_IsString(desc) ? desc->valuestring : "?";
	struct op_schema_opts o = {
	    .draft = draft, .format_assert = formats, .docs = d->v, .ndocs = d->n};
	struct op_schema *s = NULL;
	char err[512];
	const cJSON *c;

	op_err e =
	    schema != NULL ? op_schema_compile_opts(schema, &o, &s, err, sizeof(err)) : OP_EINVAL;
	cJSON_ArrayForEach (c, tests) {
		const cJSON *td = cJSON_GetObjectItemCaseSensitive(c, "description");
		const cJSON *data = cJSON_GetObjectItemCaseSensitive(c, "data");
		const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, "valid");
		const char *tname = cJSON_IsString(td) ? td->valuestring : "?";
		char why[1024];
		if (e) {
			snprintf(why, sizeof(why), "compile: %s: %s", op_err_name(e), err);
			fail_case(t, file, gname, tname, why);
			continue;
		}
		bool v1 = false, v2 = false;
		struct op_buf errs;
		op_buf_init(&errs, ERRS_SIZE);
		op_err e1 = data != NULL ? op_schema_validate(s, data, &v1, NULL, 0) : OP_EINVAL;
		op_err e2 =
		    data != NULL ? op_schema_validate(s, data, &v2, &errs, MAX_ERRS) : OP_EINVAL;
		if (e1 || e2) {
			snprintf(why, sizeof(why), "validate: %s", op_err_name(e1 ? e1 : e2));
			fail_case(t, file, gname, tname, why);
		} else if (v1 != cJSON_IsTrue(want) || v2 != v1) {
			snprintf(why, sizeof(why), "expected %s, got %s%s%s",
			         cJSON_IsTrue(want) ? "valid" : "invalid", v1 ? "valid" : "invalid",
			         v2 != v1 ? " (and the opposite with errors on)" : "",
			         errs.len ? "; errors:\n" : "");
			fail_case(t, file, gname, tname, why);
			if (verbose && errs.len)
				fputs(op_buf_str(&errs), stdout);
		} else if (!v2 && errs.len == 0) {
			fail_case(t, file, gname, tname, "invalid without any error line");
		} else {
			t->pass++;
		}
		op_buf_fini(&errs);
	}
	op_schema_free(s);
}

/* Runs the .json files of tests/<name>, or with formats those of
 * tests/<name>/optional/format with format assertion on. */
static void run_draft(const char *suite, const char *name, int draft, bool formats,
                      const struct docs *d, struct tally *t)
{
	char dir[PATH_LEN];
	size_t n;
	snprintf(dir, sizeof(dir), "%s/tests/%s%s", suite, name, formats ? "/optional/format" : "");
	char **files = list_dir(dir, &n);
	if (files == NULL)
		fprintf(stderr, "schema-suite: cannot list %s\n", dir);
	for (size_t i = 0; i < n; i++) {
		char path[PATH_LEN];
		/* optional/ is a folder: its cases are not required. */
		if (!ends_with(files[i], ".json") ||
		    snprintf(path, sizeof(path), "%s/%s", dir, files[i]) >= (int)sizeof(path))
			continue;
		cJSON *groups = read_json(path);
		if (groups == NULL) {
			fprintf(stderr, "schema-suite: cannot read %s\n", path);
			t->fail++;
			continue;
		}
		const cJSON *g;
		cJSON_ArrayForEach (g, groups) {
			run_group(g, files[i], draft, formats, d, t);
		}
		cJSON_Delete(groups);
	}
	free_list(files, n);
}

int main(int argc, char **argv)
{
	const char *suite = DEFAULT_SUITE;
	struct docs d = {0};
	struct tally t2020 = {0}, t7 = {0};
	bool formats = false;

	op_alloc_init();
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-v") == 0) {
			verbose = true;
		} else if (strcmp(argv[i], "-f") == 0) {
			formats = true;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "usage: schema-suite [-v] [-f] [SUITE_DIR]\n");
			return 2;
		} else {
			suite = argv[i];
		}
	}
	if (!is_dir(suite)) {
		fprintf(stderr, "schema-suite: %s: not a directory\n", suite);
		return 2;
	}
	char rdir[PATH_LEN];
	snprintf(rdir, sizeof(rdir), "%s/remotes", suite);
	load_remotes(rdir, "", &d);
	for (size_t i = 0; i < d.n; i++)
		d.v[i] = (struct op_schema_doc){.uri = d.uri[i], .json = d.json[i]};

	run_draft(suite, "draft2020-12", OP_SCHEMA_AUTO, false, &d, &t2020);
	run_draft(suite, "draft7", OP_SCHEMA_DRAFT7, false, &d, &t7);
	printf("draft2020-12: %lu passed, %lu failed\n", t2020.pass, t2020.fail);
	printf("draft7: %lu passed, %lu failed\n", t7.pass, t7.fail);
	if (formats) {
		/* Optional cases: reported, never part of the exit status. */
		struct tally f2020 = {0}, f7 = {0};
		run_draft(suite, "draft2020-12", OP_SCHEMA_AUTO, true, &d, &f2020);
		run_draft(suite, "draft7", OP_SCHEMA_DRAFT7, true, &d, &f7);
		printf("draft2020-12 formats (optional): %lu passed, %lu failed\n", f2020.pass,
		       f2020.fail);
		printf("draft7 formats (optional): %lu passed, %lu failed\n", f7.pass, f7.fail);
	}

	for (size_t i = 0; i < d.n; i++) {
		cJSON_Delete(d.json[i]);
		op_free(d.uri[i]);
	}
	op_free(d.v);
	op_free(d.json);
	op_free(d.uri);
	bool ok2020 = t2020.pass * 100 >= (t2020.pass + t2020.fail) * 95 && t2020.pass > 0;
	bool ok7 = t7.pass * 100 >= (t7.pass + t7.fail) * 95 && t7.pass > 0;
	return ok2020 && ok7 ? 0 : 1;
}
