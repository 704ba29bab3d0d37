/*
 * The event bus of the daemon: one durable enqueue per subscribed pipeline
 * (see events.h). The set of subscribers is the set running at the moment
 * of publishing, held by reference while the copies are enqueued.
 */
#define OP_LOG_MODULE "events"
#include "agent/daemon/events.h"

#include <string.h>

#include "agent/core/log.h"
#include "agent/trigger/trigger.h"

/* {"type":"event","name":...,"publisher":{...}} from the publisher's metadata. */
static cJSON *trigger_data(const char *event, const cJSON *meta)
{
	const cJSON *pl = cJSON_GetObjectItemCaseSensitive(meta, "pipeline");
	const cJSON *pname = cJSON_GetObjectItemCaseSensitive(pl, "name");
	const cJSON *exec = cJSON_GetObjectItemCaseSensitive(meta, "execution_id");
	const cJSON *evid = cJSON_GetObjectItemCaseSensitive(meta, "event_id");
	cJSON *t = cJSON_CreateObject();
	cJSON *pub = cJSON_CreateObject();
	if (t == NULL || pub == NULL || !cJSON_AddStringToObject(t, "type", "event") ||
	    !cJSON_AddStringToObject(t, "name", event) ||
	    !cJSON_AddStringToObject(pub, "pipeline",
	                             cJSON_IsString(pname) ? pname->valuestring : "") ||
	    !cJSON_AddStringToObject(pub, "execution_id",
	                             cJSON_IsString(exec) ? exec->valuestring : "") ||
	    !cJSON_AddStringToObject(pub, "event_id",
	                             cJSON_IsString(evid) ? evid->valuestring : "") ||
	    !cJSON_AddItemToObject(t, "publisher", pub)) {
		cJSON_Delete(pub);
		cJSON_Delete(t);
		return NULL;
	}
	return t;
}

/* The publishing execution's id from its metadata, for log lines. */
static const char *exec_of(const cJSON *meta)
{
	const char *s =
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "execution_id"));
	return s ? s : "-";
}

op_err op_events_publish(void *ud, const char *event, const cJSON *payload, const cJSON *meta,
                         size_t *delivered)
{
	struct op_runtime *rt = ud;
	*delivered = 0;
	cJSON *trigger = trigger_data(event, meta);
	if (trigger == NULL)
		return OP_ENOMEM;
	struct op_runtime_set *set = op_runtime_get(rt);
	const struct op_engine *e = op_runtime_engine(set);
	op_err rc = OP_OK;
	for (size_t i = 0; i < op_engine_count(e) && rc == OP_OK; i++) {
		const struct op_pipeline *p = op_engine_at(e, i);
		const struct op_event_trigger *t = op_trigger_event(p);
		if (t == NULL || strcmp(t->name, event) != 0)
			continue;
		char id[OP_UUID_LEN + 1];
		rc = op_runtime_submit(rt, p->name, payload, trigger, id);
		if (rc == OP_OK) {
			(*delivered)++;
			OP_LOGD("event \"%s\" of exec=%s queued for %s as %s", event, exec_of(meta),
			        p->name, id);
		} else if (rc == OP_ENOTFOUND) {
			rc = OP_OK; /* removed by a reload since we looked */
		} else {
			OP_LOGW("event \"%s\" of exec=%s: cannot queue it for %s: %s", event,
			        exec_of(meta), p->name, op_err_str(rc));
		}
	}
	op_runtime_put(rt, set);
	cJSON_Delete(trigger);
	return rc;
}
