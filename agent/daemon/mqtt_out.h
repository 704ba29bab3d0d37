/*
 * The daemon's MQTT publisher: what `mqtt-publish` steps publish through
 * (lent to the engine as op_host.mqtt_publish, see agent/engine/engine.h).
 *
 * One paho MQTTAsync client per [broker NAME] of the config, created and
 * connected on the first publish to that broker and then kept, reconnecting
 * on its own (paho's automatic reconnect, 1 to 30 s apart). Client id
 * "<prefix>-pub" (prefix: the broker's client_id, or "outpost-" and the agent
 * id), MQTT 3.1.1, clean session, the broker's max_inflight as paho's window,
 * TLS like the MQTT triggers (the broker's certificate is verified, a client
 * certificate is sent when configured).
 *
 * Publishing is thread-safe and blocks the calling worker: QoS 1 until the
 * broker's PUBACK, QoS 0 until paho took the message, never longer than the
 * caller's timeout. QoS 1 messages are kept below paho's in-flight window
 * (max_inflight - 10, or half of it when that is 20 or less): paho stalls when
 * its window fills (docs: DESIGN.md, "The MQTT stack on Debian 12"), so a
 * publisher waits here for a free slot instead.
 */
#ifndef OP_DAEMON_MQTT_OUT_H
#define OP_DAEMON_MQTT_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/diag.h"
#include "agent/core/err.h"
#include "agent/daemon/config.h"
#include "agent/engine/engine.h"

struct op_mqtt_out;

/* Counters since op_mqtt_out_new, and gauges, for metrics and tests. */
struct op_mqtt_out_stats {
	uint64_t published; /* acknowledged by the broker (QoS 1) or taken by paho (QoS 0) */
	uint64_t failed;    /* publish calls that returned an error */
	uint64_t inflight;  /* QoS 1 messages sent and not yet acknowledged or failed, now */
	uint64_t connected; /* brokers with a client connected now */
};

/*
 * A publisher for the brokers of cfg. Copies what it needs of cfg (cfg may be
 * freed afterwards) and connects to nothing yet. OP_ENOMEM, else OP_OK and
 * *out (free it with op_mqtt_out_free).
 */
op_err op_mqtt_out_new(const struct op_config *cfg, struct op_mqtt_out **out) OP_WUR;

/*
 * Makes brokers (n of them, e.g. a reloaded config's; client ids from cfg's
 * agent id) the brokers o publishes to. A broker whose settings did not
 * change keeps its client and connection. A changed one's client is
 * retired: publishes already holding it finish (paho gets up to 2 s to get
 * their messages through, then it disconnects), new ones use the new
 * settings. A removed broker's client stays, connected and found by name,
 * for the pipelines that the reload dropped and that still drain, until
 * op_mqtt_out_prune(). Call both from one thread at a time; publishes may
 * run meanwhile. OP_ENOMEM changes nothing.
 */
op_err op_mqtt_out_update(struct op_mqtt_out *o, const struct op_config *cfg,
                          const struct op_config_broker *brokers, size_t n) OP_WUR;

/* Retires the clients of removed brokers (once no dropped pipeline drains:
 * publishes to them then fail OP_ENOTFOUND); returns how many. */
unsigned op_mqtt_out_prune(struct op_mqtt_out *o);

/*
 * Disconnects and frees every client. No publish may be running or start
 * (stop the workers first); publishes that timed out earlier are fine. NULL
 * is a no-op.
 */
void op_mqtt_out_free(struct op_mqtt_out *o);

/*
 * Publishes len bytes at payload to topic at the broker called broker, with
 * qos 0 or 1 and the retained flag, waiting at most timeout_ms (1 ms to a
 * day is used): first for the connection (also capped by the broker's
 * connect_timeout; over at once when the broker refuses the client or TLS
 * fails, which a quick retry will not fix), then
 * for a free slot in the in-flight window, then, with QoS 1, for the
 * broker's acknowledgement. payload and topic are borrowed for the call.
 * Thread-safe. Classes, each with why (whylen bytes, may be 0) saying what
 * happened for users:
 *   OP_ENOCONN    "broker plant (ssl://h:p) is not connected: <last error>",
 *                 or the connection was lost before the acknowledgement
 *   OP_ETIMEOUT   no acknowledgement in time; it may still come, so a retry
 *                 may publish twice
 *   OP_EBUSY      no free in-flight slot in time (the broker is slow)
 *   OP_EAUTH      the broker refused the client's credentials (CONNACK 4, 5)
 *   OP_EREJECTED  the broker refused the connection (CONNACK 1, 2)
 *   OP_ENOTFOUND  cfg has no [broker NAME] of that name
 *   OP_EINVAL     not a topic name to publish to (op_mqtt_topic_name_valid),
 *                 or qos not 0 or 1
 *   OP_ELIMIT     the message does not fit an MQTT packet
 *   OP_ENOMEM, OP_EINTERNAL (paho refused its options: a bug)
 * The retryable ones (noconn, timeout, busy, nomem) are worth trying later.
 */
op_err op_mqtt_out_publish(struct op_mqtt_out *o, const char *broker, const char *topic,
                           const void *payload, size_t len, int qos, bool retained,
                           long long timeout_ms, char *why, size_t whylen) OP_WUR;

/*
 * Sets h->mqtt_publish and h->ud to publish through o (other members of h
 * are left alone), for op_engine_set_host(). o must outlive the engines.
 */
void op_mqtt_out_host(struct op_mqtt_out *o, struct op_host *h);

void op_mqtt_out_stats(struct op_mqtt_out *o, struct op_mqtt_out_stats *st);

/*
 * For a candidate pipeline set: every mqtt-publish step (nested and onError
 * steps included) names a [broker NAME] of cfg. Each problem goes into d with
 * the pipeline's origin as path and a message naming the step's key, e.g.
 * "steps[2].config.broker: 'x' is not a broker of the agent's config,
 * expected a [broker x] section". OP_ECONFIG if any.
 */
op_err op_mqtt_out_check(const struct op_config *cfg, const struct op_engine *e,
                         struct op_diag *d) OP_WUR;

/*
 * The reason and data of an OpenSSL 3 error line as paho's TLS error
 * callback passes it ("<thread>:error:<code>:<library>:<function>:<reason>:
 * <file>:<line>:<data>", len bytes) into out: what users need ("certificate
 * verify failed"). Other text is kept as it is.
 */
void op_mqtt_tls_reason(const char *s, size_t len, char *out, size_t outlen);

#endif
