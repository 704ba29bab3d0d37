/*
 * The transform step: the message goes through a jq program compiled at
 * load (connectors/transform/jq.c), with $globals and $metadata bound.
 */
#include "connectors/transform/step.h"

#include "connectors/transform/jq.h"

struct transform_cfg {
	char *program;
};

static const struct op_conf_field transform_fields[] = {
    {.name = "program",
     .type = OP_CONF_STRING,
     .off = offsetof(struct transform_cfg, program),
     .required = true,
     .help = "jq program; its one output is the new message ($globals, $metadata "
             "are bound)"},
};
static const struct op_conf_table transform_table =
    OP_CONF_TABLE("transform", struct transform_cfg, transform_fields);

static op_err transform_prepare(struct op_load *ld, struct op_step *st)
{
	const struct transform_cfg *c = st->cfg;
	struct op_jq *q = NULL;
	char err[1024];
	op_err rc = op_jq_compile(c->program, &q, err, sizeof(err));
	if (rc == OP_ENOMEM)
		return rc;
	if (rc) {
		op_load_problem(ld, "program", "jq program does not compile: %s", err);
		return OP_ECONFIG;
	}
	st->priv = q;
	return OP_OK;
}

static op_err transform_view(struct op_exec *x, const struct op_step *st, const cJSON *msg,
                             cJSON **out)
{
	struct op_expr_env env;
	char err[1024];
	op_exec_env(x, msg, &env);
	op_err rc = op_jq_run(st->priv, msg, env.globals, env.metadata, out, err, sizeof(err));
	if (rc)
		return op_exec_fail(x, rc, rc == OP_ENOMEM ? "NOMEM" : "JQ_ERROR", "%s", err);
	return OP_OK;
}

static op_err transform_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	op_err rc = transform_view(x, st, msg, out);
	cJSON_Delete(msg);
	return rc;
}

static void transform_release(struct op_step *st)
{
	op_jq_free(st->priv);
	st->priv = NULL;
}

const struct op_step_type op_step_transform = {
    .name = "transform",
    .summary = "reshape the message with a jq program",
    .conf = &transform_table,
    .prepare = transform_prepare,
    .run = transform_run,
    .view = transform_view,
    .release = transform_release,
};
