/*
 * The engine: the set of loaded pipelines, the globals they share, and the
 * entry point that runs one execution. The set is built before runs start and
 * read-only while they run, so runs need no lock.
 */
#define OP_LOG_MODULE "engine"
#include "agent/engine/engine.h"

#include <stdio.h>
#include <string.h>

#include "agent/account/account.h"
#include "agent/core/alloc.h"
#include "agent/core/log.h"
#include "agent/engine/engine_int.h"

struct op_engine {
	struct op_pipeline **v;
	size_t n, cap;
	cJSON *globals;
	op_engine_publish_fn publish; /* NULL: no event bus */
	void *publish_ud;
	struct op_host host; /* copied by op_engine_set_host */
	bool has_host;
};

struct op_engine *op_engine_new(void)
{
	struct op_engine *e = op_calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->globals = cJSON_CreateObject();
	if (e->globals == NULL) {
		op_free(e);
		return NULL;
	}
	return e;
}

void op_engine_free(struct op_engine *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->n; i++)
		op_pipeline_free(e->v[i]);
	op_free(e->v);
	cJSON_Delete(e->globals);
	op_free(e);
}

const struct op_pipeline *op_engine_find(const struct op_engine *e, const char *name)
{
	for (size_t i = 0; i < e->n; i++) {
		if (strcmp(e->v[i]->name, name) == 0)
			return e->v[i];
	}
	return NULL;
}

op_err op_engine_add(struct op_engine *e, struct op_pipeline *p, char *err, size_t errlen)
{
	if (op_engine_find(e, p->name)) {
		snprintf(err, errlen, "%s: a pipeline named \"%s\" is already loaded", p->origin,
		         p->name);
		op_pipeline_free(p);
		return OP_EINVAL;
	}
	if (e->n == e->cap) {
		size_t ncap = e->cap ? e->cap * 2 : 8;
		struct op_pipeline **v = op_realloc(e->v, ncap * sizeof(*v));
		if (v == NULL) {
			snprintf(err, errlen, "out of memory");
			op_pipeline_free(p);
			return OP_ENOMEM;
		}
		e->v = v;
		e->cap = ncap;
	}
	e->v[e->n++] = p;
	return OP_OK;
}

struct link_ctx {
	const struct op_engine *e;
	const struct op_pipeline *p;
	struct op_diag *d;
};

static void link_step(const struct op_step *st, void *ud)
{
	struct link_ctx *c = ud;
	const char *target = op_engine__call_target(st);
	if (target && op_engine_find(c->e, target) == NULL)
		op_diag_add_at(c->d, st->path,
		               "%s: step calls pipeline \"%s\", which is not loaded", c->p->name,
		               target);
}

op_err op_engine_link(const struct op_engine *e, struct op_diag *d)
{
	size_t before = op_diag_count(d);
	for (size_t i = 0; i < e->n; i++) {
		struct link_ctx c = {.e = e, .p = e->v[i], .d = d};
		op_pipeline_walk(e->v[i], link_step, &c);
	}
	return op_diag_count(d) == before ? OP_OK : OP_ECONFIG;
}

void op_engine_set_globals(struct op_engine *e, cJSON *globals)
{
	if (globals == NULL)
		globals = cJSON_CreateObject();
	if (globals == NULL)
		return; /* keep the old ones rather than none */
	cJSON_Delete(e->globals);
	e->globals = globals;
}

void op_engine_set_publisher(struct op_engine *e, op_engine_publish_fn fn, void *ud)
{
	e->publish = fn;
	e->publish_ud = ud;
}

void op_engine_set_host(struct op_engine *e, const struct op_host *h)
{
	e->has_host = h != NULL;
	e->host = h ? *h : (struct op_host){0};
}

const struct op_host *op_exec_host(const struct op_exec *x)
{
	const struct op_engine *e = x->run->eng;
	return e->has_host ? &e->host : NULL;
}

op_err op_exec_account(struct op_exec *x, const char *key, const char *name, unsigned types,
                       const char *takes, struct op_account **out)
{
	*out = NULL;
	const struct op_host *h = op_exec_host(x);
	if (h == NULL || h->account_get == NULL)
		return op_exec_fail(x, OP_EUNSUPPORTED, "ACCOUNT",
		                    "config.%s: no accounts here: account '%s' cannot be opened "
		                    "(outpostctl run needs --config or --dev for accounts)",
		                    key, name);
	char why[512] = "";
	op_err rc = h->account_get(h->ud, name, out, why, sizeof(why));
	if (rc == OP_OK && *out == NULL)
		rc = op_errf(why, sizeof(why), OP_EINTERNAL, "account '%s' came back empty", name);
	else if (rc == OP_OK && !(types & (1u << (*out)->type)))
		rc = op_errf(why, sizeof(why), OP_ECONFIG, "account '%s' is of type %s; %s", name,
		             op_account_type_name((*out)->type), takes);
	if (rc) {
		op_account_free(*out);
		*out = NULL;
		return op_exec_fail(x, rc, "ACCOUNT", "config.%s: %s", key, why);
	}
	return OP_OK;
}

op_err op_exec_file_dir(struct op_exec *x, const char *key, const char *dir, const char *code)
{
	const struct op_host *h = op_exec_host(x);
	if (h == NULL || h->n_file_dirs == 0)
		return op_exec_fail(x, h ? OP_ECONFIG : OP_EUNSUPPORTED, code,
		                    "config.%s: no local folders here: %s cannot be used ([files] "
		                    "dirs in the agent config lists the folders steps may use; "
		                    "outpostctl run reads them with --config)",
		                    key, dir);
	/* A ".." could climb back out of the folder it names: none at all. */
	for (const char *p = dir; *p;) {
		size_t len = strcspn(p, "/");
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return op_exec_fail(
			    x, OP_ECONFIG, code,
			    "config.%s: %s has a \"..\"; name the folder without it", key, dir);
		p += len;
		p += *p == '/';
	}
	for (size_t i = 0; i < h->n_file_dirs; i++) {
		const char *a = h->file_dirs[i];
		size_t n = strlen(a);
		/* A prefix only up to a '/': /srv/x2 is not inside /srv/x. */
		if (n > 0 && strncmp(dir, a, n) == 0 &&
		    (dir[n] == '\0' || dir[n] == '/' || a[n - 1] == '/'))
			return OP_OK;
	}
	return op_exec_fail(x, OP_ECONFIG, code,
	                    "config.%s: %s is not inside a folder of the agent's [files] dirs", key,
	                    dir);
}

op_err op_engine__publish(struct op_engine *e, const char *event, const cJSON *payload,
                          const cJSON *meta, size_t *delivered)
{
	*delivered = 0;
	if (e->publish == NULL)
		return OP_EUNSUPPORTED;
	return e->publish(e->publish_ud, event, payload, meta, delivered);
}

op_err op_engine_run(struct op_engine *e, const struct op_pipeline *p, cJSON *input,
                     const struct op_run_opts *opts, cJSON **out, struct op_fail *f)
{
	*out = NULL;
	memset(f, 0, sizeof(*f));
	cJSON *meta = op_engine__metadata(p, opts);
	if (meta == NULL) {
		cJSON_Delete(input);
		f->cls = OP_ENOMEM;
		snprintf(f->code, sizeof(f->code), "NOMEM");
		snprintf(f->msg, sizeof(f->msg), "out of memory");
		return OP_ENOMEM;
	}
	struct op_run run = {.eng = e,
	                     .globals = e->globals,
	                     .timeout_ms = opts && opts->timeout_ms > 0 &&
	                                           opts->timeout_ms < p->settings.timeout_ms
	                                       ? opts->timeout_ms
	                                       : p->settings.timeout_ms,
	                     .stop = opts ? opts->stop : NULL};
	run.deadline_ns = op_engine__now_ns() + run.timeout_ms * 1000000LL;
	struct op_exec x = {.run = &run, .p = p, .metadata = meta, .lim = &p->settings.limits};
	const char *outer = op_log_exec_id(); /* a run inside a run (call) */
	op_log_set_exec_id(op_exec_id(&x));
	op_err rc = op_engine__run_pipeline(&x, p, meta, input, out);
	op_log_set_exec_id(outer);
	if (rc)
		*f = x.fail;
	cJSON_Delete(meta);
	return rc;
}

size_t op_engine_count(const struct op_engine *e)
{
	return e->n;
}

const struct op_pipeline *op_engine_at(const struct op_engine *e, size_t i)
{
	return i < e->n ? e->v[i] : NULL;
}
