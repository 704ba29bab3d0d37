/*
 * The validate step: checks the message against a JSON Schema (draft
 * 2020-12 or draft-07) compiled at load. A valid message passes through
 * unchanged; an invalid one fails the step with class "invalid", code
 * VALIDATION and the problems found, each with its instance path.
 */
#include "connectors/validate/step.h"

#include "agent/core/buf.h"
#include "connectors/validate/schema.h"

static const char *const drafts[] = {"auto", "2020-12", "draft-07", NULL};

struct validate_cfg {
	cJSON *schema;
	int draft;
	long long max_errors;
};

static const struct op_conf_field validate_fields[] = {
    {.name = "schema",
     .type = OP_CONF_JSON,
     .off = offsetof(struct validate_cfg, schema),
     .required = true,
     .help = "the JSON Schema (an object or a boolean)"},
    {.name = "draft",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct validate_cfg, draft),
     .def = "\"auto\"",
     .choices = drafts,
     .help = "auto: from the schema's $schema, else 2020-12"},
    {.name = "maxErrors",
     .type = OP_CONF_INT,
     .off = offsetof(struct validate_cfg, max_errors),
     .def = "10",
     .min = 1,
     .max = 1000,
     .help = "problems listed in the error text"},
};
static const struct op_conf_table validate_table =
    OP_CONF_TABLE("validate", struct validate_cfg, validate_fields);

static op_err validate_prepare(struct op_load *ld, struct op_step *st)
{
	const struct validate_cfg *c = st->cfg;
	static const int draft_num[] = {0, 2020, 7};
	struct op_schema *s = NULL;
	char err[1024];
	op_err rc = op_schema_compile(c->schema, draft_num[c->draft], &s, err, sizeof(err));
	if (rc == OP_ENOMEM)
		return rc;
	if (rc) {
		op_load_problem(ld, "schema", "bad schema: %s", err);
		return OP_ECONFIG;
	}
	st->priv = s;
	return OP_OK;
}

/* The validator writes one problem per line; an error text is one line:
 * the problems joined with "; " (cut short, never overrun, at out's size). */
static const char *one_line(const struct op_buf *b, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < b->len && o + 3 < outlen; i++) {
		if (b->data[i] != '\n') {
			out[o++] = b->data[i];
		} else if (i + 1 < b->len) {
			out[o++] = ';';
			out[o++] = ' ';
		}
	}
	out[o] = '\0';
	return out;
}

static op_err validate_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	const struct validate_cfg *c = st->cfg;
	bool valid = false;
	struct op_buf errs;
	op_buf_init(&errs, 64 * 1024);
	op_err rc = op_schema_validate(st->priv, msg, &valid, &errs, (size_t)c->max_errors);
	if (rc == OP_OK && valid) {
		op_buf_fini(&errs);
		*out = msg;
		return OP_OK;
	}
	cJSON_Delete(msg);
	char text[1024];
	if (rc == OP_OK)
		op_exec_fail(x, OP_EINVAL, "VALIDATION", "message does not match the schema: %s",
		             one_line(&errs, text, sizeof(text)));
	else
		op_exec_fail(x, rc, "VALIDATION", "validation could not finish: %s",
		             op_err_str(rc));
	op_buf_fini(&errs);
	return rc == OP_OK ? OP_EINVAL : rc;
}

static void validate_release(struct op_step *st)
{
	op_schema_free(st->priv);
	st->priv = NULL;
}

const struct op_step_type op_step_validate = {
    .name = "validate",
    .summary = "check the message against a JSON Schema (draft 2020-12 or draft-07)",
    .conf = &validate_table,
    .prepare = validate_prepare,
    .run = validate_run,
    .release = validate_release,
};
