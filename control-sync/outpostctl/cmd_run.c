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

#include "agent/account/lookup.h"
#include "agent/core/alloc.h"
#include "agent/core/file.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/daemon/config.h"
#include "agent/engine/engine.h"
#include "agent/engine/loader.h"
#include "connectors/db/pool.h"
#include "control-sync/outpostctl/ctl.h"

#define MAX_INPUT_BYTES (64u << 20)

op_err op_ctl_read_file(const char *path, size_t max, char **out, size_t *len)
{
	char err[256] = "";
	op_err rc = op_file_read(path, max, out, len, err, sizeof(err));
	if (rc)
		fprintf(stderr, "outpostctl: %s: %s\n", path, err);
	return rc;
}

void op_ctl_print_problems(const char *file, const struct op_diag *d)
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

/* The loader's report callback: prints the problems, counts them in *ud. */
static void report(void *ud, const char *file, const struct op_diag *d)
{
	op_ctl_print_problems(file, d);
	*(int *)ud += (int)op_diag_count(d);
}

struct run_args {
	const char *pipeline;
	const char *dir;
	const char *input;
	const char *globals_file;
	cJSON *globals;
	bool compact;
	const char *config; /* whose accounts steps may use */
	bool dev;
};

/* --help or -h: usage on stdout, exit 0. */
static bool is_help(const char *arg)
{
	return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* The usage of run: on stdout for --help, on stderr for a usage error. */
static void usage_run(FILE *f)
{
	fputs("usage: outpostctl run PIPELINE.json [--input FILE|-] [--global NAME=VALUE]...\n"
	      "                      [--globals FILE] [--pipelines DIR] [--log-level LEVEL]\n"
	      "                      [--compact] [--config FILE | --dev]\n"
	      "Runs the pipeline once. Prints the result on stdout (exit 0), the error object\n"
	      "on stderr (exit 1), or every problem of an invalid pipeline (exit 2).\n"
	      "Steps may use the accounts and [files] folders of the agent whose config\n"
	      "is FILE, or the accounts of `outpostd --dev` with --dev; without either,\n"
	      "none.\n"
	      "VALUE is parsed as JSON when it is valid JSON, else taken as a string.\n",
	      f);
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
		if (is_help(o))
			return 1;
		if (strcmp(o, "--compact") == 0) {
			a->compact = true;
		} else if (strcmp(o, "--dev") == 0) {
			a->dev = true;
		} else if (strcmp(o, "--config") == 0 && val) {
			a->config = val;
			i++;
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
	if (a->dev && a->config) {
		fprintf(stderr, "outpostctl: --config and --dev name two agents; give one\n");
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
	const struct op_pipeline *p = NULL;
	if (op_engine_load_file(e, file, report, &problems) == OP_OK)
		p = op_engine_at(e, op_engine_count(e) - 1);
	else if (problems == 0)
		problems++;
	if (dir) {
		char *skip[] = {(char *)file};
		if (op_engine_load_dir(e, dir, skip, 1, report, &problems, NULL) != OP_OK &&
		    problems == 0)
			problems++;
	}
	if (problems == 0) {
		struct op_diag d;
		op_diag_init(&d);
		if (op_engine_link(e, &d) != OP_OK) {
			op_ctl_print_problems(file, &d);
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
	*main_p = p;
	return e;
}

static op_err host_account(void *ud, const char *name, struct op_account **out, char *why,
                           size_t whylen)
{
	return op_accounts_get(ud, name, out, why, whylen);
}

int op_ctl_run(int argc, char **argv)
{
	struct run_args a = {0};
	struct op_accounts *accounts = NULL;
	struct op_db_pools *pools = NULL;
	char **dirs = NULL;
	size_t ndirs = 0;
	struct op_engine *e = NULL;
	cJSON *input = NULL, *out = NULL;
	int rc = CTL_INVALID;
	a.globals = cJSON_CreateObject();
	int pr = a.globals ? parse_run_args(argc, argv, &a) : -1;
	if (pr != 0) {
		cJSON_Delete(a.globals);
		usage_run(pr > 0 ? stdout : stderr);
		return pr > 0 ? CTL_OK : CTL_INVALID;
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
	if (a.config || a.dev) {
		char dir[4096], key[4096];
		rc = op_ctl_agent_paths(a.config, a.dev, dir, sizeof(dir), key, sizeof(key), &dirs,
		                        &ndirs);
		if (rc)
			goto out;
		rc = CTL_INVALID;
		if (op_accounts_new(dir, key, &accounts) != OP_OK ||
		    op_db_pools_new(&pools) != OP_OK) {
			fprintf(stderr, "outpostctl: out of memory\n");
			goto out;
		}
		struct op_host h = {.account_get = host_account,
		                    .db_pools = pools,
		                    .file_dirs = (const char *const *)dirs,
		                    .n_file_dirs = ndirs,
		                    .ud = accounts};
		op_engine_set_host(e, &h);
	}
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
	op_db_pools_free(pools);
	op_accounts_free(accounts);
	op_config_file_dirs_free(dirs, ndirs);
	return rc;
}

static const char check_usage[] =
    "usage: outpostctl check PIPELINE.json... [--pipelines DIR]\n"
    "Loads the pipelines (and the folder's, for calls) and lists every problem.\n";

int op_ctl_check(int argc, char **argv)
{
	const char *dir = NULL;
	int files = 0, problems = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--pipelines") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (argv[i][0] == '-') {
			fputs(check_usage, is_help(argv[i]) ? stdout : stderr);
			return is_help(argv[i]) ? CTL_OK : CTL_INVALID;
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
		if (op_engine_load_file(e, argv[i], report, &problems) != OP_OK && problems == 0)
			problems++;
	}
	if (dir && op_engine_load_dir(e, dir, given, (size_t)files, report, &problems, NULL) &&
	    problems == 0)
		problems++;
	op_free(given);
	if (problems == 0) {
		struct op_diag d;
		op_diag_init(&d);
		if (op_engine_link(e, &d) != OP_OK) {
			op_ctl_print_problems(dir ? dir : "pipelines", &d);
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
