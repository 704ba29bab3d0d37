/*
 * The simple logic steps: set (build the message from a template), log
 * (write a line, message passes through) and throw-error (fail on purpose).
 * Logged values have the pipeline's sensitive fields masked as "***" at any
 * depth before they are printed.
 */
#define OP_LOG_MODULE "pipeline"
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/engine/engine_int.h"

/* --- set ------------------------------------------------------------------- */

struct set_cfg {
	struct op_tmpl *tmpl;
	bool merge;
};

static const struct op_conf_field set_fields[] = {
    {.name = "template",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct set_cfg, tmpl),
     .required = true,
     .help = "JSON template of the new message; strings may hold {{ }} expressions"},
    {.name = "merge",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct set_cfg, merge),
     .def = "false",
     .help = "merge the template's keys into the message (both objects) instead of "
             "replacing it"},
};
static const struct op_conf_table set_table = OP_CONF_TABLE("set", struct set_cfg, set_fields);

static op_err set_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	const struct set_cfg *c = st->cfg;
	cJSON *v = NULL;
	op_err rc = op_exec_render(x, c->tmpl, "template", msg, &v);
	if (rc) {
		cJSON_Delete(msg);
		return rc;
	}
	if (!c->merge || !cJSON_IsObject(msg) || !cJSON_IsObject(v)) {
		cJSON_Delete(msg);
		*out = v;
		return OP_OK;
	}
	/* Move each rendered key into the message, replacing what was there. */
	while (v->child) {
		cJSON *it = cJSON_DetachItemViaPointer(v, v->child);
		cJSON_DeleteItemFromObjectCaseSensitive(msg, it->string);
		cJSON_AddItemToArray(msg, it); /* keeps it->string as the key */
	}
	cJSON_Delete(v);
	*out = msg;
	return OP_OK;
}

const struct op_step_type op_step_set = {
    .name = "set",
    .summary = "build a new message from a JSON template with expressions",
    .conf = &set_table,
    .run = set_run,
};

/* --- log ------------------------------------------------------------------- */

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

struct log_cfg {
	int level;
	struct op_expr *text;
};

static const struct op_conf_field log_fields[] = {
    {.name = "level",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct log_cfg, level),
     .def = "\"info\"",
     .choices = log_levels,
     .help = "error, warn, info or debug"},
    {.name = "message",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct log_cfg, text),
     .required = true,
     .help = "what to log; a value that is not a string is logged as JSON"},
};
static const struct op_conf_table log_table = OP_CONF_TABLE("log", struct log_cfg, log_fields);

static bool is_sensitive(const struct op_conf_strings *s, const char *key)
{
	for (size_t i = 0; key && i < s->n; i++) {
		if (strcmp(s->v[i], key) == 0)
			return true;
	}
	return false;
}

/*
 * Masks sensitive keys of v in place (v is a private copy): each such
 * member's value becomes "***", whatever its type. Returns false when out of
 * memory, and then v must not be logged.
 */
static bool mask(cJSON *v, const struct op_conf_strings *s)
{
	for (cJSON *c = v->child; c; c = c->next) {
		if (cJSON_IsObject(v) && is_sensitive(s, c->string)) {
			cJSON *star = cJSON_CreateString("***");
			if (star == NULL)
				return false;
			/* The replacement takes the member's place and its key. */
			star->string = c->string;
			star->type |= c->type & cJSON_StringIsConst;
			c->string = NULL;
			c->type &= ~cJSON_StringIsConst;
			if (!cJSON_ReplaceItemViaPointer(v, c, star)) {
				cJSON_Delete(star);
				return false;
			}
			c = star;
			continue;
		}
		if (!mask(c, s))
			return false;
	}
	return true;
}

static op_err log_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	const struct log_cfg *c = st->cfg;
	enum op_log_level lvl = (enum op_log_level)c->level;
	if (!op_log_enabled(lvl)) {
		*out = msg;
		return OP_OK;
	}
	/* With sensitiveFields, the expression reads a masked copy of the
	 * message: "{{ message.password }}" and "got {{ message }}" show "***"
	 * as a logged object does. */
	bool masking = x->p->settings.sensitive.n > 0;
	cJSON *masked = NULL;
	if (masking) {
		masked = cJSON_Duplicate(msg, true);
		if (masked == NULL || !mask(masked, &x->p->settings.sensitive)) {
			cJSON_Delete(masked);
			op_log_write_always(lvl, OP_LOG_MODULE, "%s/%s exec=%s: (out of memory)",
			                    x->p->name, st->name, op_exec_id(x));
			*out = msg;
			return OP_OK;
		}
	}
	struct op_val v = {0};
	op_err rc = op_exec_eval(x, c->text, "message", masked ? masked : msg, &v);
	if (rc) {
		cJSON_Delete(masked);
		cJSON_Delete(msg);
		return rc;
	}
	if (cJSON_IsString(v.v)) {
		op_log_write_always(lvl, OP_LOG_MODULE, "%s/%s exec=%s: %s", x->p->name, st->name,
		                    op_exec_id(x), v.v->valuestring);
	} else {
		cJSON *copy = masking ? op_val_take(&v) : NULL;
		char *text = NULL;
		if (!masking)
			text = op_json_print(v.v, OP_JSON_COMPACT);
		else if (copy && mask(copy, &x->p->settings.sensitive))
			text = op_json_print(copy, OP_JSON_COMPACT);
		op_log_write_always(lvl, OP_LOG_MODULE, "%s/%s exec=%s: %s", x->p->name, st->name,
		                    op_exec_id(x), text ? text : "(out of memory)");
		op_free(text);
		cJSON_Delete(copy);
	}
	op_val_drop(&v);
	cJSON_Delete(masked);
	*out = msg;
	return OP_OK;
}

const struct op_step_type op_step_log = {
    .name = "log",
    .summary = "log a line built from an expression; the message passes through",
    .conf = &log_table,
    .run = log_run,
};

/* --- throw-error ----------------------------------------------------------- */

/* The classes a pipeline may raise: every class but "ok" and "cancelled". */
static const char *const error_classes[] = {
    "retry",   "timeout",     "noconn", "busy",     "full",  "nomem",    "io",
    "invalid", "config",      "auth",   "rejected", "parse", "notfound", "corrupt",
    "limit",   "unsupported", "user",   "internal", NULL};

struct throw_cfg {
	char *code;
	struct op_expr *text;
	int cls;    /* index into error_classes */
	op_err err; /* that class, resolved by prepare */
};

static const struct op_conf_field throw_fields[] = {
    {.name = "code",
     .type = OP_CONF_STRING,
     .off = offsetof(struct throw_cfg, code),
     .def = "\"USER_ERROR\"",
     .help = "the error's code, e.g. \"ORDER_REJECTED\""},
    {.name = "message",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct throw_cfg, text),
     .required = true,
     .help = "the error's text"},
    {.name = "class",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct throw_cfg, cls),
     .def = "\"user\"",
     .choices = error_classes,
     .help = "error class; retryable ones (retry, timeout, noconn, busy, full, io) "
             "let retry steps and the retry policy try again"},
};
static const struct op_conf_table throw_table =
    OP_CONF_TABLE("throw-error", struct throw_cfg, throw_fields);

static op_err throw_prepare(struct op_load *ld, struct op_step *st)
{
	struct throw_cfg *c = st->cfg;
	op_err cls;
	if (!op_err_from_name(error_classes[c->cls], &cls)) {
		op_load_problem(ld, "class", "unknown class \"%s\"", error_classes[c->cls]);
		return OP_EINTERNAL;
	}
	c->err = cls;
	return OP_OK;
}

static op_err throw_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	const struct throw_cfg *c = st->cfg;
	struct op_val v = {0};
	(void)out;
	op_err rc = op_exec_eval(x, c->text, "message", msg, &v);
	if (rc == OP_OK) {
		char *text = cJSON_IsString(v.v) ? NULL : op_json_print(v.v, OP_JSON_COMPACT);
		rc = op_exec_fail(x, c->err, c->code, "%s",
		                  text                  ? text
		                  : cJSON_IsString(v.v) ? v.v->valuestring
		                                        : "(out of memory)");
		op_free(text);
	}
	op_val_drop(&v);
	cJSON_Delete(msg);
	return rc;
}

const struct op_step_type op_step_throw_error = {
    .name = "throw-error",
    .summary = "fail the execution with a code, a message and a class",
    .conf = &throw_table,
    .prepare = throw_prepare,
    .run = throw_run,
};
