/*
 * The pipeline loader. It binds the document through op_pipeline_table,
 * loading step lists recursively (each step's config through its type's
 * table, then the type's prepare()), and collects every problem before
 * deciding. Invariant: op_pipeline_load returns either a pipeline in which
 * everything is compiled, or nothing at all.
 */
#include "agent/engine/pipeline.h"

#include <ctype.h>
#include <stdarg.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/engine/engine_int.h"
#include "agent/trigger/trigger.h"

static const struct op_conf_field trigger_fields[] = {
    {.name = "type",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct op_trigger_conf, type),
     .def = "\"manual\"",
     .choices = op_trigger_types,
     .help = "what starts an execution"},
    {.name = "config",
     .type = OP_CONF_JSON,
     .off = offsetof(struct op_trigger_conf, config),
     .def = "{}",
     .help = "the trigger type's settings (docs/triggers.md)"},
};
static const struct op_conf_table trigger_table =
    OP_CONF_TABLE("trigger", struct op_trigger_conf, trigger_fields);

static const struct op_conf_field retry_fields[] = {
    {.name = "attempts",
     .type = OP_CONF_INT,
     .off = offsetof(struct op_retry_policy, attempts),
     .def = "1",
     .min = 1,
     .max = 100,
     .help = "attempts per event, the first included (1 = no retry)"},
    {.name = "backoffMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct op_retry_policy, backoff_ms),
     .def = "1000",
     .min = 0,
     .max = 86400000,
     .help = "wait before the second attempt"},
    {.name = "maxBackoffMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct op_retry_policy, max_backoff_ms),
     .def = "300000",
     .min = 0,
     .max = 86400000,
     .help = "longest wait between attempts"},
    {.name = "multiplier",
     .type = OP_CONF_NUMBER,
     .off = offsetof(struct op_retry_policy, multiplier),
     .def = "2",
     .min = 1,
     .max = 100,
     .help = "each wait is the previous one times this"},
    {.name = "jitter",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct op_retry_policy, jitter),
     .def = "true",
     .help = "randomise each wait between half and all of it"},
};
static const struct op_conf_table retry_table =
    OP_CONF_TABLE("retry", struct op_retry_policy, retry_fields);

static const struct op_conf_field limit_fields[] = {
    {.name = "maxSteps",
     .type = OP_CONF_INT,
     .off = offsetof(struct op_limits, max_steps),
     .def = "100000",
     .min = 1,
     .max = 100000000,
     .help = "steps run in one execution, loop bodies included"},
    {.name = "maxIterations",
     .type = OP_CONF_INT,
     .off = offsetof(struct op_limits, max_iterations),
     .def = "100000",
     .min = 1,
     .max = 100000000,
     .help = "loop iterations in one execution, all loops together"},
    {.name = "maxDepth",
     .type = OP_CONF_INT,
     .off = offsetof(struct op_limits, max_depth),
     .def = "64",
     .min = 1,
     .max = 1000,
     .help = "nesting of logic steps and pipeline calls at run time"},
    {.name = "maxMessageBytes",
     .type = OP_CONF_INT,
     .off = offsetof(struct op_limits, max_message_bytes),
     .def = "16777216",
     .min = 1024,
     .max = 1073741824,
     .help = "largest message (as JSON text) a step may produce"},
};
static const struct op_conf_table limits_table =
    OP_CONF_TABLE("limits", struct op_limits, limit_fields);

static const struct op_conf_field settings_fields[] = {
    {.name = "timeoutMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct op_settings, timeout_ms),
     .def = "30000",
     .min = 1,
     .max = 86400000,
     .help = "longest an execution may run"},
    {.name = "concurrency",
     .type = OP_CONF_INT,
     .off = offsetof(struct op_settings, concurrency),
     .def = "4",
     .min = 1,
     .max = 1024,
     .help = "executions of this pipeline running at once"},
    {.name = "retry",
     .type = OP_CONF_OBJECT,
     .off = offsetof(struct op_settings, retry),
     .sub = &retry_table,
     .help = "retry policy for failed executions (retryable errors only)"},
    {.name = "limits",
     .type = OP_CONF_OBJECT,
     .off = offsetof(struct op_settings, limits),
     .sub = &limits_table,
     .help = "bounds that stop a runaway execution"},
    {.name = "sensitiveFields",
     .type = OP_CONF_STRINGS,
     .off = offsetof(struct op_settings, sensitive),
     .help = "message fields shown as *** whenever a message is logged"},
};
static const struct op_conf_table settings_table =
    OP_CONF_TABLE("settings", struct op_settings, settings_fields);

static const struct op_conf_field pipeline_fields[] = {
    {.name = "name",
     .type = OP_CONF_STRING,
     .off = offsetof(struct op_pipeline, name),
     .required = true,
     .help = "unique name: letters, digits, '.', '_' and '-', at most 128"},
    {.name = "version",
     .type = OP_CONF_STRING,
     .off = offsetof(struct op_pipeline, version),
     .required = true,
     .help = "version of this document, e.g. \"1.4.0\""},
    {.name = "description",
     .type = OP_CONF_STRING,
     .off = offsetof(struct op_pipeline, description),
     .help = "what the pipeline is for"},
    {.name = "trigger",
     .type = OP_CONF_OBJECT,
     .off = offsetof(struct op_pipeline, trigger),
     .sub = &trigger_table,
     .help = "what starts it; absent means manual (outpostctl run, call)"},
    {.name = "steps",
     .type = OP_CONF_STEPS,
     .off = offsetof(struct op_pipeline, steps),
     .required = true,
     .help = "the steps, run in order on the message"},
    {.name = "onError",
     .type = OP_CONF_STEPS,
     .off = offsetof(struct op_pipeline, on_error),
     .help = "steps run on the error object when a step fails"},
    {.name = "settings",
     .type = OP_CONF_OBJECT,
     .off = offsetof(struct op_pipeline, settings),
     .sub = &settings_table,
     .help = "timeout, concurrency, retry policy, limits"},
};
const struct op_conf_table op_pipeline_table =
    OP_CONF_TABLE("pipeline", struct op_pipeline, pipeline_fields);

struct step_doc {
	char *type;
	char *name;
	char *description;
	char *output;
	cJSON *config;
};

static const struct op_conf_field step_fields[] = {
    {.name = "type",
     .type = OP_CONF_STRING,
     .off = offsetof(struct step_doc, type),
     .required = true,
     .help = "the step type (outpostctl steps lists them)"},
    {.name = "name",
     .type = OP_CONF_STRING,
     .off = offsetof(struct step_doc, name),
     .help = "a name for logs and errors"},
    {.name = "description",
     .type = OP_CONF_STRING,
     .off = offsetof(struct step_doc, description),
     .help = "free text"},
    {.name = "output",
     .type = OP_CONF_STRING,
     .off = offsetof(struct step_doc, output),
     .help = "store the step's result at this key path of the message (\"a.b\") "
             "instead of replacing the message"},
    {.name = "config",
     .type = OP_CONF_JSON,
     .off = offsetof(struct step_doc, config),
     .help = "the step type's settings"},
};
const struct op_conf_table op_engine__step_table =
    OP_CONF_TABLE("step", struct step_doc, step_fields);

struct op_diag *op_load_diag(struct op_load *ld)
{
	return ld->d;
}

void op_load_problem(struct op_load *ld, const char *suffix, const char *fmt, ...)
{
	struct op_buf b;
	op_buf_init(&b, 4096);
	va_list ap;
	va_start(ap, fmt);
	op_err e = op_buf_vaddf(&b, fmt, ap);
	va_end(ap);
	op_diag_add(ld->d, suffix, "%s", e ? "(problem text too long)" : op_buf_str(&b));
	op_buf_fini(&b);
}

static void free_step(struct op_step *st)
{
	if (st->type) {
		if (st->type->release)
			st->type->release(st);
		if (st->type->conf)
			op_conf_release(st->type->conf, st->cfg);
	}
	op_free(st->cfg);
	for (size_t i = 0; st->output && st->output[i]; i++)
		op_free(st->output[i]);
	op_free(st->output);
	op_free(st->name);
	op_free(st->path);
}

void op_engine__free_steps(struct op_steps *s)
{
	for (size_t i = 0; i < s->n; i++)
		free_step(&s->v[i]);
	op_free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* Splits "a.b.c" into keys; each key non-empty, at most 16 of them. */
static op_err parse_output(struct op_load *ld, const char *path, struct op_step *st)
{
	size_t n = 1;
	for (const char *c = path; *c; c++)
		n += *c == '.';
	if (n > 16 || path[0] == '\0' || path[0] == '.' || path[strlen(path) - 1] == '.' ||
	    strstr(path, "..")) {
		op_diag_add(ld->d, "output",
		            "expected a key path like \"result\" or \"order.tax\" (at most 16 "
		            "keys), got \"%.64s\"",
		            path);
		return OP_ECONFIG;
	}
	st->output = op_calloc(n + 1, sizeof(char *));
	if (st->output == NULL)
		return OP_ENOMEM;
	const char *start = path;
	for (size_t i = 0; i < n; i++) {
		const char *dot = strchr(start, '.');
		size_t len = dot ? (size_t)(dot - start) : strlen(start);
		if ((st->output[i] = op_strndup(start, len)) == NULL)
			return OP_ENOMEM;
		start += len + 1;
	}
	return OP_OK;
}

static op_err load_step(struct op_load *ld, const cJSON *j, struct op_step *st)
{
	struct step_doc doc = {0};
	op_err rc = op_conf_bind(ld, &op_engine__step_table, j, &doc);
	if (rc == OP_ENOMEM)
		goto out;
	if ((st->path = op_strdup(op_diag_path(ld->d))) == NULL) {
		rc = OP_ENOMEM;
		goto out;
	}
	if (doc.output && parse_output(ld, doc.output, st) == OP_ENOMEM) {
		rc = OP_ENOMEM;
		goto out;
	}
	if (doc.type == NULL)
		goto out;
	char why[512];
	st->type = op_step_type_find(doc.type, why, sizeof(why));
	if (st->type == NULL) {
		op_diag_add(ld->d, "type", "%s", why);
		rc = OP_ECONFIG;
		goto out;
	}
	ld->waits |= st->type->waits;
	st->name = op_strdup(doc.name ? doc.name : st->path);
	if (st->name == NULL) {
		rc = OP_ENOMEM;
		goto out;
	}
	if (st->type->conf) {
		st->cfg = op_calloc(1, st->type->conf->size);
		if (st->cfg == NULL) {
			rc = OP_ENOMEM;
			goto out;
		}
		size_t m = op_diag_push_key(ld->d, "config");
		op_err e = op_conf_bind(ld, st->type->conf, doc.config, st->cfg);
		if (e == OP_OK && st->type->prepare) {
			struct op_step *saved = ld->cur;
			ld->cur = st;
			e = st->type->prepare(ld, st);
			ld->cur = saved;
		}
		op_diag_pop(ld->d, m);
		if (e)
			rc = e;
	} else if (doc.config && cJSON_GetArraySize(doc.config) > 0) {
		op_diag_add(ld->d, "config", "step type %s takes no config", st->type->name);
		rc = OP_ECONFIG;
	}
out:
	op_conf_release(&op_engine__step_table, &doc);
	return rc;
}

op_err op_engine__load_steps(struct op_load *ld, const cJSON *arr, struct op_steps *out)
{
	if (++ld->nesting > OP_LOAD_MAX_NESTING) {
		ld->nesting--;
		op_diag_add(ld->d, NULL, "steps are nested deeper than %d levels",
		            OP_LOAD_MAX_NESTING);
		return OP_ECONFIG;
	}
	op_err rc = OP_OK;
	size_t n = (size_t)cJSON_GetArraySize(arr);
	out->v = op_calloc(n ? n : 1, sizeof(*out->v));
	if (out->v == NULL) {
		ld->nesting--;
		return OP_ENOMEM;
	}
	const cJSON *it;
	cJSON_ArrayForEach (it, arr) {
		size_t m = op_diag_push_index(ld->d, out->n);
		op_err e = load_step(ld, it, &out->v[out->n]);
		out->n++;
		op_diag_pop(ld->d, m);
		if (e == OP_ENOMEM) {
			rc = e;
			break;
		}
		if (e)
			rc = e;
	}
	ld->nesting--;
	return rc;
}

/* Binds the trigger's config through its type's table, unless the type
 * itself was wrong (that problem is already listed). */
static op_err load_trigger(struct op_load *ld, const cJSON *doc, struct op_trigger_conf *t)
{
	const cJSON *tj =
	    cJSON_IsObject(doc) ? cJSON_GetObjectItemCaseSensitive(doc, "trigger") : NULL;
	const cJSON *ty = cJSON_IsObject(tj) ? cJSON_GetObjectItemCaseSensitive(tj, "type") : NULL;
	if (tj != NULL && !cJSON_IsObject(tj))
		return OP_ECONFIG;
	if (ty != NULL &&
	    (!cJSON_IsString(ty) || strcmp(ty->valuestring, op_trigger_types[t->type]) != 0))
		return OP_ECONFIG;
	size_t m = op_diag_push_key(ld->d, "trigger");
	op_err rc = op_trigger_load(ld, t);
	op_diag_pop(ld->d, m);
	return rc;
}

static void check_name(struct op_load *ld, const char *name)
{
	size_t n = strlen(name);
	bool ok = n > 0 && n <= 128;
	for (size_t i = 0; ok && i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		ok = isalnum(c) || c == '.' || c == '_' || c == '-';
	}
	if (!ok)
		op_diag_add(ld->d, "name",
		            "expected 1 to 128 letters, digits, '.', '_' or '-', got \"%.64s\"",
		            name);
}

op_err op_pipeline_load_json(const cJSON *doc, const char *origin, struct op_diag *d,
                             struct op_pipeline **out)
{
	*out = NULL;
	struct op_load ld = {.d = d};
	size_t before = op_diag_count(d);
	struct op_pipeline *p = op_calloc(1, sizeof(*p));
	if (p == NULL)
		return OP_ENOMEM;
	op_err rc = op_conf_bind(&ld, &op_pipeline_table, doc, p);
	if (rc == OP_ENOMEM)
		goto fail;
	if (load_trigger(&ld, doc, &p->trigger) == OP_ENOMEM) {
		rc = OP_ENOMEM;
		goto fail;
	}
	if (p->name)
		check_name(&ld, p->name);
	if (p->version && (p->version[0] == '\0' || strlen(p->version) > 64))
		op_diag_add(d, "version", "expected 1 to 64 characters");
	if (p->steps.v && p->steps.n == 0)
		op_diag_add(d, "steps", "a pipeline needs at least one step");
	if (d->nomem) {
		rc = OP_ENOMEM;
		goto fail;
	}
	if (op_diag_count(d) != before) {
		rc = OP_ECONFIG;
		goto fail;
	}
	if ((p->origin = op_strdup(origin ? origin : "<input>")) == NULL) {
		rc = OP_ENOMEM;
		goto fail;
	}
	p->waits = ld.waits;
	*out = p;
	return OP_OK;
fail:
	op_pipeline_free(p);
	return rc ? rc : OP_ECONFIG;
}

op_err op_pipeline_load(const char *text, size_t len, const char *origin, struct op_diag *d,
                        struct op_pipeline **out)
{
	*out = NULL;
	if (len > OP_PIPELINE_MAX_BYTES) {
		op_diag_add(d, NULL, "document is %zu bytes; the limit is %u", len,
		            OP_PIPELINE_MAX_BYTES);
		return OP_ELIMIT;
	}
	const char *end = NULL;
	cJSON *doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (doc == NULL) {
		/* cJSON reports where it stopped; turn that into line and column. */
		if (end == NULL || end < text || end > text + len) {
			op_diag_add(d, NULL, "not valid JSON (or out of memory)");
			return OP_EPARSE;
		}
		size_t line = 1, col = 1;
		for (const char *c = text; c < end; c++) {
			if (*c == '\n') {
				line++;
				col = 1;
			} else {
				col++;
			}
		}
		op_diag_add(d, NULL, "not valid JSON: syntax error at line %zu, column %zu", line,
		            col);
		return OP_EPARSE;
	}
	op_err rc = op_pipeline_load_json(doc, origin, d, out);
	cJSON_Delete(doc);
	return rc;
}

void op_pipeline_free(struct op_pipeline *p)
{
	if (p == NULL)
		return;
	op_trigger_release(&p->trigger);
	op_conf_release(&op_pipeline_table, p);
	op_free(p->origin);
	op_free(p);
}

static void walk_steps(const struct op_steps *s, op_step_visit_fn fn, void *ud);

static void walk_cfg(const struct op_conf_table *t, const void *cfg, op_step_visit_fn fn, void *ud)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct op_conf_field *f = &t->fields[i];
		const void *p = (const char *)cfg + f->off;
		if (f->type == OP_CONF_STEPS) {
			walk_steps(p, fn, ud);
		} else if (f->type == OP_CONF_OBJECT) {
			walk_cfg(f->sub, p, fn, ud);
		} else if (f->type == OP_CONF_LIST) {
			const struct op_conf_list *l = p;
			for (size_t k = 0; k < l->n; k++)
				walk_cfg(f->sub, op_conf_list_at(l, f->sub, k), fn, ud);
		}
	}
}

static void walk_steps(const struct op_steps *s, op_step_visit_fn fn, void *ud)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct op_step *st = &s->v[i];
		fn(st, ud);
		if (st->type && st->type->conf && st->cfg)
			walk_cfg(st->type->conf, st->cfg, fn, ud);
	}
}

void op_pipeline_walk(const struct op_pipeline *p, op_step_visit_fn fn, void *ud)
{
	walk_steps(&p->steps, fn, ud);
	walk_steps(&p->on_error, fn, ud);
}
