/*
 * The event-publish step: publishes a named event that every pipeline with
 * an `event` trigger of that name receives as its own durable copy. The
 * engine knows nothing of queues: it hands the event to the publisher the
 * host set with op_engine_set_publisher() (the daemon's fans out through the
 * runtime's durable enqueue). Without a publisher (outpostctl run) the step
 * fails with class unsupported rather than pretend the event went out.
 *
 * Invariant: the message passes through unchanged; the step only adds
 * events. Delivery is at-least-once: when one subscriber's enqueue fails the
 * step fails with that class, and a retry publishes again to all of them,
 * so subscribers that already got the event may get it twice (the event ids
 * differ; deduplicate on the payload's own id if needed).
 */
#define OP_LOG_MODULE "pipeline"
#include <ctype.h>
#include <string.h>

#include "agent/core/log.h"
#include "agent/engine/engine_int.h"

#define EVENT_NAME_MAX 128

struct publish_cfg {
	char *name;
	struct op_tmpl *payload;
};

static const struct op_conf_field publish_fields[] = {
    {.name = "name",
     .type = OP_CONF_STRING,
     .off = offsetof(struct publish_cfg, name),
     .required = true,
     .help = "event name: 1 to 128 letters, digits, '.', '_' or '-'; pipelines with an "
             "event trigger of this name receive it"},
    {.name = "payload",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct publish_cfg, payload),
     .help = "JSON template of the event's message (default: the message)"},
};
static const struct op_conf_table publish_table =
    OP_CONF_TABLE("event-publish", struct publish_cfg, publish_fields);

static op_err publish_prepare(struct op_load *ld, struct op_step *st)
{
	const struct publish_cfg *c = st->cfg;
	if (c->name == NULL)
		return OP_OK; /* binding reported it */
	size_t n = strlen(c->name);
	bool ok = n > 0 && n <= EVENT_NAME_MAX;
	for (size_t i = 0; ok && i < n; i++) {
		unsigned char ch = (unsigned char)c->name[i];
		ok = isalnum(ch) || ch == '.' || ch == '_' || ch == '-';
	}
	if (!ok) {
		op_load_problem(ld, "name",
		                "expected 1 to 128 letters, digits, '.', '_' or '-', got \"%.64s\"",
		                c->name);
		return OP_ECONFIG;
	}
	return OP_OK;
}

static op_err publish_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	const struct publish_cfg *c = st->cfg;
	cJSON *rendered = NULL;
	op_err rc = OP_OK;
	if (c->payload) {
		rc = op_exec_render(x, c->payload, "payload", msg, &rendered);
		if (rc)
			goto out;
	}
	size_t delivered = 0;
	rc = op_engine__publish(x->run->eng, c->name, rendered ? rendered : msg, x->metadata,
	                        &delivered);
	if (rc == OP_EUNSUPPORTED) {
		rc = op_exec_fail(x, rc, "NO_EVENT_BUS",
		                  "no event bus in outpostctl run: event \"%s\" was not published",
		                  c->name);
	} else if (rc) {
		rc = op_exec_fail(x, rc, "EVENT_PUBLISH",
		                  "event \"%s\" reached %zu subscribers, then could not be queued "
		                  "for the next: %s",
		                  c->name, delivered, op_err_str(rc));
	} else {
		OP_LOGD("%s/%s exec=%s: event \"%s\" published to %zu subscribers", x->p->name,
		        st->name, op_exec_id(x), c->name, delivered);
	}
out:
	cJSON_Delete(rendered);
	if (rc) {
		cJSON_Delete(msg);
		return rc;
	}
	*out = msg;
	return OP_OK;
}

const struct op_step_type op_step_event_publish = {
    .name = "event-publish",
    .summary = "publish a named event to every pipeline subscribed to it; the message passes "
               "through",
    .conf = &publish_table,
    .prepare = publish_prepare,
    .run = publish_run,
    .waits = true,
};
