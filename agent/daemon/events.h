/*
 * The event trigger's bus: fans an event published by an `event-publish`
 * step out to every pipeline of the running set whose trigger is `event`
 * with that name, one durable copy each (op_runtime_submit), so each
 * subscriber retries and dead-letters on its own.
 *
 * Invariant: a copy counts as delivered only once its enqueue committed.
 * Delivery is at-least-once: a failed enqueue fails the publishing step,
 * whose retry publishes to every subscriber again.
 */
#ifndef OP_DAEMON_EVENTS_H
#define OP_DAEMON_EVENTS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "agent/core/err.h"
#include "agent/daemon/runtime.h"

/*
 * An op_engine_publish_fn; ud is the struct op_runtime (set it with
 * op_engine_set_publisher(e, op_events_publish, rt) from the runtime's
 * engine_new hook). Each subscriber's event gets payload as its message and
 * the trigger data {"type":"event","name":event,"publisher":{"pipeline",
 * "execution_id","event_id"}} (from meta). Subscribers are taken from the set
 * running now, in load order; none is OP_OK with *delivered = 0. Stops at the
 * first enqueue that fails and returns its class (OP_EFULL, OP_ENOMEM:
 * retryable; OP_ECANCELED: closing); *delivered counts the copies committed
 * before. A subscriber removed by a reload meanwhile is skipped.
 */
op_err op_events_publish(void *ud, const char *event, const cJSON *payload, const cJSON *meta,
                         size_t *delivered) OP_WUR;

#endif
