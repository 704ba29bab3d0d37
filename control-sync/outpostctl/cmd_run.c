/*
 * `outpostctl run` and `outpostctl check`: load a pipeline (and the folder
 * of pipelines it may call), report every problem, and for run execute it
 * once on an input message. This is how users try a pipeline before rollout
 * and how the end-to-end tests drive the engine.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/engine/engine.h"
#include "control-sync/outpostctl/ctl.h"

#define MAX_INPUT_BYTES (64u << 20)

op_err op_ctl_read_file(const char *path, size_t max, char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (f == NULL) {
		char eb[128];
		int e = errno;
		fprintf(stderr, "outpostctl: %s: %s\n", path, strerror_r(e, eb, sizeof(eb)));
		return op_err_from_errno(e);
	}
	size_t cap = 4096, n = 0;
	char *buf = op_malloc(cap);
	op_err rc = OP_OK;
	while (buf) {
		if (n + 1 >= cap) {
			if (cap > max) {
				fprintf(stderr, "outpostctl: %s: larger than %zu bytes\n", path,
				        max);
				rc = OP_ELIMIT;
				break;
			}
			char *nb = op_realloc(buf, cap * 2);
			if (nb == NULL) {
				fprintf(stderr, "outpostctl: %s: out of memory\n", path);
				rc = OP_ENOMEM;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0) {
			if (ferror(f)) {
				fprintf(stderr, "outpostctl: %s: read error\n", path);
				rc = OP_EIO;
			}
			break;
		}
	}
	if (f != stdin)
		fclose(f);
	if (buf == NULL || (rc == OP_OK && n > max)) {
		if (buf == NULL)
			fprintf(stderr, "outpostctl: out of memory\n");
		op_free(buf);
		return buf == NULL ? OP_ENOMEM : OP_ELIMIT;
	}
	if (rc) {
		op_free(buf);
		return rc;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return OP_OK;
}

static void print_problems(const char *file, const struct op_diag *d)
{
	for (size_t i = 0; i < d->n; i++) {
		if (d->v[i].path[0])
			fprintf(stderr, "%s: %s: %s\n", file, d->v[i].path, d->v[i].msg);
		else
			fprintf(stderr, "%s: %s\n", file, d->v[i].msg);
	}
	if (d->lost)
		fprintf(stderr, "%s: ... and %zu more problems\n", file, d->lost);
}

/* Loads one file; prints its problems. Returns NULL when it is invalid. */
static struct op_pipeline *load_file(const char *path, int *problems)
{
	char *text = NULL;
	size_t len = 0;
	struct op_pipeline *p = NULL;
	if (op_ctl_read_file(path, OP_PIPELINE_MAX_BYTES, &text, &len) != OP_OK) {
		(*problems)++;
		return NULL;
	}
	struct op_diag d;
	op_diag_init(&d);
	op_err rc = op_pipeline_load(text, len, path, &d, &p);
	if (rc) {
		print_problems(path, &d);
		if (rc == OP_ENOMEM)
			fprintf(stderr, "%s: out of memory\n", path);
		*problems += (int)op_diag_count(&d) + (rc == OP_ENOMEM);
	}
	op_diag_fini(&d);
	op_free(text);
	return p;
}

static int json_file(const struct dirent *de)
{
	size_t n = strlen(de->d_name);
	return de->d_name[0] != '.' && n > 5 && strcmp(de->d_name + n - 5, ".json") == 0;
}

/* True when path names the same file as one of the n paths in files. */
static bool same_file_as_any(const char *path, char *const *files, int n)
{
	char real[PATH_MAX], other[PATH_MAX];
	if (n == 0 || realpath(path, real) == NULL)
		return false;
	for (int i = 0; i < n; i++) {
		if (realpath(files[i], other) && strcmp(real, other) == 0)
			return true;
	}
	return false;
}

/* Adds every pipeline of dir except the n files in skip (already loaded). */
static int load_dir(struct op_engine *e, const char *dir, char *const *skip, int nskip,
                    int *problems)
{
	struct dirent **list = NULL;
	int n = scandir(dir, &list, json_file, alphasort);
	if (n < 0) {
		char eb[128];
		fprintf(stderr, "outpostctl: %s: %s\n", dir, strerror_r(errno, eb, sizeof(eb)));
		(*problems)++;
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
		free(list[i]);
		if (same_file_as_any(path, skip, nskip))
			continue;
		struct op_pipeline *p = load_file(path, problems);
		char err[512];
		if (p && op_engine_add(e, p, err, sizeof(err)) != OP_OK) {
			fprintf(stderr, "%s\n", err);
			(*problems)++;
		}
	}
	free(list);
	return 0;
}

struct run_args {
	const char *pipeline;
	const char *dir;
	const char *input;
	const char *globals_file;
	cJSON *globals;
	bool compact;
};

static int usage_run(void)
{
	fputs("usage: outpostctl run PIPELINE.json [--input FILE|-] [--global NAME=VALUE]...\n"
	      "                      [--globals FILE] [--pipelines DIR] [--log-level LEVEL]\n"
	      "                      [--compact]\n"
	      "Runs the pipeline once. Prints the result on stdout (exit 0), the error object\n"
	      "on stderr (exit 1), or every problem of an invalid pipeline (exit 2).\n"
	      "VALUE is parsed as JSON when it is valid JSON, else taken as a string.\n",
	      stderr);
	return CTL_INVALID;
}

static int add_global(cJSON *g, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (eq == NULL || eq == kv) {
		fprintf(stderr, "outpostctl: --global expects NAME=VALUE, got \"%s\"\n", kv);
		return -1;
	}
	char *name = op_strndup(kv, (size_t)(eq - kv));
	cJSON *v = cJSON_Parse(eq + 1);
	if (v == NULL)
		v = cJSON_CreateString(eq + 1);
	if (name == NULL || v == NULL) {
		op_free(name);
		cJSON_Delete(v);
		return -1;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(g, name);
	bool added = cJSON_AddItemToObject(g, name, v);
	op_free(name);
	if (!added) {
		cJSON_Delete(v);
		return -1;
	}
	return 0;
}

static int parse_run_args(int argc, char **argv, struct run_args *a)
{
	for (int i = 0; i < argc; i++) {
		const char *o = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (o == NULL)
			break;
		if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0)
			return -1;
		if (strcmp(o, "--compact") == 0) {
			a->compact = true;
		} else if (strcmp(o, "--input") == 0 && val) {
			a->input = val;
			i++;
		} else if (strcmp(o, "--pipelines") == 0 && val) {
			a->dir = val;
			i++;
		} else if (strcmp(o, "--globals") == 0 && val) {
			a->globals_file = val;
			i++;
		} else if (strcmp(o, "--global") == 0 && val) {
			if (add_global(a->globals, val) != 0)
				return -1;
			i++;
		} else if (strcmp(o, "--log-level") == 0 && val) {
			enum op_log_level l;
			if (!op_log_level_from_name(val, &l)) {
				fprintf(stderr, "outpostctl: unknown log level \"%s\"\n", val);
				return -1;
			}
			op_log_set_level(l);
			i++;
		} else if (o[0] == '-' && o[1] != '\0') {
			fprintf(stderr, "outpostctl: unknown or incomplete option \"%s\"\n", o);
			return -1;
		} else if (a->pipeline == NULL) {
			a->pipeline = o;
		} else {
			fprintf(stderr, "outpostctl: unexpected argument \"%s\"\n", o);
			return -1;
		}
	}
	if (a->pipeline == NULL) {
		fprintf(stderr, "outpostctl: which pipeline? give a PIPELINE.json\n");
		return -1;
	}
	return 0;
}

static cJSON *read_json(const char *path, const char *what)
{
	char *text = NULL;
	size_t len = 0;
	if (op_ctl_read_file(path, MAX_INPUT_BYTES, &text, &len) != OP_OK)
		return NULL;
	cJSON *j = cJSON_ParseWithLength(text, len);
	if (j == NULL)
		fprintf(stderr, "outpostctl: %s %s is not valid JSON\n", what, path);
	op_free(text);
	return j;
}

/* Loads the pipeline and its folder into a new engine; NULL if invalid. */
static struct op_engine *load_all(const char *file, const char *dir,
                                  const struct op_pipeline **main_p)
{
	int problems = 0;
	struct op_engine *e = op_engine_new();
	if (e == NULL) {
		fprintf(stderr, "outpostctl: out of memory\n");
		return NULL;
	}
	struct op_pipeline *p = load_file(file, &problems);
	const char *name = p ? p->name : NULL;
	char err[512];
	if (p && op_engine_add(e, p, err, sizeof(err)) != OP_OK) {
		fprintf(stderr, "%s\n", err);
		problems++;
		name = NULL;
	}
	if (dir)
		load_dir(e, dir, (char *const *)&file, 1, &problems);
	if (problems == 0) {
		struct op_diag d;
		op_diag_init(&d);
		if (op_engine_link(e, &d) != OP_OK) {
			print_problems(file, &d);
			problems++;
		}
		op_diag_fini(&d);
	}
	if (problems) {
		fprintf(stderr, "outpostctl: %d problem%s; nothing was run\n", problems,
		        problems == 1 ? "" : "s");
		op_engine_free(e);
		return NULL;
	}
	*main_p = op_engine_find(e, name);
	return e;
}

int op_ctl_run(int argc, char **argv)
{
	struct run_args a = {0};
	struct op_engine *e = NULL;
	cJSON *input = NULL, *out = NULL;
	int rc = CTL_INVALID;
	a.globals = cJSON_CreateObject();
	if (a.globals == NULL || parse_run_args(argc, argv, &a) != 0) {
		cJSON_Delete(a.globals);
		return usage_run();
	}
	if (a.globals_file) {
		cJSON *g = read_json(a.globals_file, "globals file");
		if (g == NULL || !cJSON_IsObject(g)) {
			if (g)
				fprintf(stderr, "outpostctl: %s: globals must be a JSON object\n",
				        a.globals_file);
			cJSON_Delete(g);
			goto out;
		}
		/* --global values win over the file's. */
		for (cJSON *c = a.globals->child; c; c = c->next)
			cJSON_DeleteItemFromObjectCaseSensitive(g, c->string);
		while (a.globals->child)
			cJSON_AddItemToArray(
			    g, cJSON_DetachItemViaPointer(a.globals, a.globals->child));
		cJSON_Delete(a.globals);
		a.globals = g;
	}
	input = a.input ? read_json(a.input, "input") : cJSON_CreateObject();
	if (input == NULL)
		goto out;
	const struct op_pipeline *p = NULL;
	e = load_all(a.pipeline, a.dir, &p);
	if (e == NULL)
		goto out;
	op_engine_set_globals(e, a.globals);
	a.globals = NULL;
	struct op_fail f;
	cJSON *trig = cJSON_CreateObject();
	if (trig)
		cJSON_AddStringToObject(trig, "type", "manual");
	struct op_run_opts o = {.trigger = trig};
	op_err err = op_engine_run(e, p, input, &o, &out, &f);
	cJSON_Delete(trig);
	input = NULL;
	if (err) {
		cJSON *ej = op_fail_to_json(&f);
		char *s = ej ? op_json_print(ej, OP_JSON_PRETTY) : NULL;
		fprintf(stderr, "%s\n", s ? s : f.msg);
		op_free(s);
		cJSON_Delete(ej);
		rc = CTL_FAILED;
		goto out;
	}
	char *s = op_json_print(out, a.compact ? OP_JSON_COMPACT : OP_JSON_PRETTY);
	if (s == NULL) {
		fprintf(stderr, "outpostctl: out of memory printing the result\n");
		rc = CTL_FAILED;
		goto out;
	}
	printf("%s\n", s);
	op_free(s);
	rc = fflush(stdout) == 0 ? CTL_OK : CTL_FAILED;
out:
	cJSON_Delete(a.globals);
	cJSON_Delete(input);
	cJSON_Delete(out);
	op_engine_free(e);
	return rc;
}

int op_ctl_check(int argc, char **argv)
{
	const char *dir = NULL;
	int files = 0, problems = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--pipelines") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (argv[i][0] == '-') {
			fputs("usage: outpostctl check PIPELINE.json... [--pipelines DIR]\n"
			      "Loads the pipelines (and the folder's, for calls) and lists every "
			      "problem.\n",
			      stderr);
			return CTL_INVALID;
		}
	}
	struct op_engine *e = op_engine_new();
	char **given = op_calloc((size_t)argc + 1, sizeof(*given));
	if (e == NULL || given == NULL) {
		op_engine_free(e);
		op_free(given);
		fputs("outpostctl: out of memory\n", stderr);
		return CTL_FAILED;
	}
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--pipelines") == 0) {
			i++;
			continue;
		}
		given[files++] = argv[i];
		struct op_pipeline *p = load_file(argv[i], &problems);
		char err[512];
		if (p && op_engine_add(e, p, err, sizeof(err)) != OP_OK) {
			fprintf(stderr, "%s\n", err);
			problems++;
		}
	}
	if (dir)
		load_dir(e, dir, given, files, &problems);
	op_free(given);
	if (problems == 0) {
		struct op_diag d;
		op_diag_init(&d);
		if (op_engine_link(e, &d) != OP_OK) {
			print_problems(dir ? dir : "pipelines", &d);
			problems += (int)op_diag_count(&d);
		}
		op_diag_fini(&d);
	}
	op_engine_free(e);
	if (files == 0 && dir == NULL) {
		fputs("outpostctl: check what? give PIPELINE.json files or --pipelines DIR\n",
		      stderr);
		return CTL_INVALID;
	}
	if (problems) {
		fprintf(stderr, "%d problem%s\n", problems, problems == 1 ? "" : "s");
		return CTL_INVALID;
	}
	printf("ok\n");
	return CTL_OK;
}
