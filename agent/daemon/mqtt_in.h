/*
 * MQTT triggers: for every pipeline whose trigger is `mqtt`, its consumers
 * (config.consumers, each an outpostd --mqtt-consumer process, see
 * agent/trigger/mqtt_wire.h) subscribe at the named [broker NAME] of the
 * config, and each message they receive is durably enqueued for the
 * pipeline before the consumer may acknowledge it.
 *
 * One thread ("mqtt-in") owns the consumers: it reads their frames, turns
 * messages into events (op_runtime_submit_cb), answers each consumer when
 * its event is committed or refused (backpressure: the consumer offers the
 * message again later, unacknowledged), logs their connection states and
 * restarts a consumer process that died, with backoff.
 *
 * Message of an event: the payload parsed as JSON (`payload: json`), as a
 * string (`text`) or as a base64 string (`base64`). Its metadata.trigger is
 * {"type":"mqtt","broker":NAME,"topic":TOPIC,"qos":N,"retained":B,"dup":B}.
 * A payload that does not fit its mode (not JSON, not UTF-8, over the size
 * cap) is still enqueued, with "payloadError" in the trigger data, and the
 * runtime dead-letters it with code BAD_PAYLOAD: nothing the broker handed
 * over is dropped silently.
 */
#ifndef OP_DAEMON_MQTT_IN_H
#define OP_DAEMON_MQTT_IN_H

#include <pthread.h>
#include <stdint.h>

#include "agent/core/diag.h"
#include "agent/daemon/config.h"
#include "agent/daemon/runtime.h"
#include "agent/engine/engine.h"

struct op_mqtt_in;

/* Counters since start, for metrics and tests. */
struct op_mqtt_in_stats {
	uint64_t consumers;   /* consumer processes wanted now */
	uint64_t connected;   /* of those, connected to their broker now */
	uint64_t subscribed;  /* of those, subscribed now */
	uint64_t received;    /* messages received */
	uint64_t accepted;    /* messages durably enqueued (then acknowledged) */
	uint64_t bad_payload; /* of accepted, enqueued with a payloadError */
	uint64_t busy;        /* backpressure answers (queue or store full) */
	uint64_t restarts;    /* consumer processes restarted after they died */
};

/*
 * Starts the consumers of every mqtt pipeline of rt's current set. exe is
 * the program to run as a consumer ("/proc/self/exe" in outpostd: the same
 * binary, even after an upgrade replaced the file). cfg and rt must outlive
 * the trigger set. The trigger thread reads cfg's brokers with cfg_mu held:
 * whoever changes them (a reload) holds it too.
 */
op_err op_mqtt_in_start(struct op_runtime *rt, const struct op_config *cfg, pthread_mutex_t *cfg_mu,
                        const char *exe, struct op_mqtt_in **out) OP_WUR;

/*
 * Waits at most timeout_ms until every consumer that m's start wanted is
 * subscribed (at once without mqtt pipelines). False when some are not: their
 * broker is slow or down, and they go on trying.
 */
bool op_mqtt_in_wait_subscribed(struct op_mqtt_in *m, int64_t timeout_ms);

/*
 * Follows rt's current set after a reload: consumers whose pipeline and
 * settings are unchanged keep running; others stop (leaving their
 * subscription) and new ones start. Returns at once; OP_ENOMEM when the
 * trigger thread a set's first mqtt trigger needs cannot start.
 */
op_err op_mqtt_in_reload(struct op_mqtt_in *m) OP_WUR;

/*
 * Stops every consumer (they disconnect without acknowledging what they
 * hold; the broker redelivers it) and the thread. Waits for events being
 * committed. NULL is a no-op.
 */
void op_mqtt_in_stop(struct op_mqtt_in *m);

void op_mqtt_in_stats(struct op_mqtt_in *m, struct op_mqtt_in_stats *st);

/*
 * For a candidate pipeline set: every mqtt trigger names a [broker NAME] of
 * cfg. Problems into d (path: the pipeline's file); OP_ECONFIG if any.
 */
op_err op_mqtt_in_check(const struct op_config *cfg, const struct op_engine *e,
                        struct op_diag *d) OP_WUR;

#endif
