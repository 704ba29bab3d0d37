/*
 * outpostctl's MQTT client (paho MQTTAsync, MQTT 5 over TLS): the control
 * plane's side of the link (docs/protocol.md), made to feel synchronous for
 * a command-line tool. Every call blocks until its answer or a deadline.
 *
 * Messages that arrive on the subscriptions are copied into a bounded
 * queue by paho's thread and handed out, in arrival order, by
 * op_ctl_mqtt_next() on the caller's thread; nothing of paho leaves this
 * module. op_ctl_mqtt_sync() is how a caller learns that the retained
 * messages of its subscriptions have all arrived: it publishes a unique
 * probe to a topic this client is subscribed to (<root>_ctl/<client id>),
 * and the broker delivers it after the retained messages of every
 * subscription made before.
 *
 * Deadlines are CLOCK_MONOTONIC milliseconds (op_mono_ms()).
 */
#ifndef OP_OUTPOSTCTL_CTL_MQTT_H
#define OP_OUTPOSTCTL_CTL_MQTT_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/core/clock.h"
#include "agent/core/err.h"

struct op_ctl_mqtt_opts {
	const char *broker; /* mqtts://host:port; nothing else is accepted */
	const char *ca;     /* PEM: the CA that signed the broker's certificate */
	const char *cert;   /* PEM: this client's certificate */
	const char *key;    /* PEM: its private key */
	const char *prefix; /* fleet topic prefix, "" for none */
	size_t max_payload; /* larger messages are handed out without payload */
};

/* One received message; op_ctl_msg_free() frees it. */
struct op_ctl_msg {
	char *topic;    /* NUL-terminated; never holds a NUL itself */
	char *payload;  /* len bytes and a NUL; NULL when too_large */
	size_t len;     /* the payload's size as received */
	bool too_large; /* len > max_payload: the payload was not kept */
	bool retained;  /* sent from the broker's retained store */
	char *corr;     /* its MQTT 5 correlation data (corr_len bytes), or NULL */
	size_t corr_len;
	struct op_ctl_msg *next;
};

struct op_ctl_mqtt;

/*
 * Connects (MQTT 5, clean start, client id outpostctl-<pid>-<random>) and
 * subscribes to its probe topic. A network failure is retried twice
 * (after 0.25 s, then 0.5 s) within deadline; a refusal (TLS, CONNACK)
 * ends it at once. The broker's certificate is
 * always verified against o->ca, with its host name. On OP_OK *out is the
 * client (op_ctl_mqtt_close). Errors, with why for the user:
 *   OP_EINVAL    the URL is not mqtts://HOST:PORT, or the prefix is not a
 *                topic level sequence (no wildcards, no leading or trailing /)
 *   OP_EAUTH     the broker refused the certificate or the client (TLS or
 *                CONNACK); retrying will not help
 *   OP_ENOCONN   no connection before deadline (refused, unreachable)
 *   OP_ENOMEM, OP_EINTERNAL (paho would not create the client)
 */
op_err op_ctl_mqtt_connect(const struct op_ctl_mqtt_opts *o, long long deadline,
                           struct op_ctl_mqtt **out, char *why, size_t whylen) OP_WUR;

/* Disconnects (bounded), destroys the paho client and frees m and every
 * message still queued. NULL is a no-op. */
void op_ctl_mqtt_close(struct op_ctl_mqtt *m);

/* "<prefix>/outpost/v1/" or "outpost/v1/": the root of every agent topic.
 * Borrowed for the life of m. */
const char *op_ctl_mqtt_root(const struct op_ctl_mqtt *m);

/* The client id; borrowed for the life of m. */
const char *op_ctl_mqtt_client_id(const struct op_ctl_mqtt *m);

/*
 * Subscribes (QoS 1) to the n filters and waits for the broker's SUBACKs.
 * OP_EAUTH when the broker refused one (why names it and the reason code),
 * OP_ETIMEOUT, OP_ENOCONN (the connection was lost), OP_ENOMEM.
 */
op_err op_ctl_mqtt_subscribe(struct op_ctl_mqtt *m, const char *const *filters, size_t n,
                             long long deadline, char *why, size_t whylen) OP_WUR;

/*
 * Publishes len bytes (QoS 1, retained when asked) and waits for the
 * PUBACK. OP_EAUTH when its MQTT 5 reason code is 0x80 or above (why names
 * it, "Not authorized (0x87)"), OP_ETIMEOUT, OP_ENOCONN, OP_EINVAL (a bad
 * topic), OP_ENOMEM, OP_EINTERNAL.
 */
op_err op_ctl_mqtt_publish(struct op_ctl_mqtt *m, const char *topic, const void *payload,
                           size_t len, bool retained, long long deadline, char *why,
                           size_t whylen) OP_WUR;

/* A request's MQTT 5 properties: where the answer should go, and the bytes
 * it should echo so that it can be told from others. */
struct op_ctl_mqtt_req {
	const char *response_topic;
	const void *corr;
	size_t corr_len;
};

/*
 * op_ctl_mqtt_publish (QoS 1, not retained) of a request carrying r's
 * response topic and correlation data. The same errors, and OP_EINVAL for
 * a response topic that is not a topic name.
 */
op_err op_ctl_mqtt_request(struct op_ctl_mqtt *m, const char *topic, const void *payload,
                           size_t len, const struct op_ctl_mqtt_req *r, long long deadline,
                           char *why, size_t whylen) OP_WUR;

/*
 * Waits until the next message arrives or deadline passes and hands it to
 * the caller in *msg. The probes of op_ctl_mqtt_sync() are never handed
 * out. OP_ETIMEOUT at the deadline (*msg NULL), OP_ENOCONN once the
 * connection is lost and the queue is empty, OP_ECANCELED after
 * op_ctl_mqtt_interrupt(), OP_ELIMIT when messages were
 * dropped (more than the queue's bound waited), OP_ENOMEM when one could
 * not be copied; why says which.
 */
op_err op_ctl_mqtt_next(struct op_ctl_mqtt *m, long long deadline, struct op_ctl_msg **msg,
                        char *why, size_t whylen) OP_WUR;

/* Makes the op_ctl_mqtt_next() waiting now, or the next one, return
 * OP_ECANCELED ("interrupted") before it hands out anything more. For a
 * thread that learnt of a signal; safe from any thread but a signal
 * handler. */
void op_ctl_mqtt_interrupt(struct op_ctl_mqtt *m);

/* A message handler of op_ctl_mqtt_sync: borrows msg for the call. */
typedef void (*op_ctl_msg_fn)(void *ud, const struct op_ctl_msg *msg);

/*
 * Publishes a unique probe to this client's probe topic and calls fn on
 * every message that arrives before it, so that on OP_OK every retained
 * message of the subscriptions made before has been through fn. Errors as
 * op_ctl_mqtt_publish() and op_ctl_mqtt_next().
 */
op_err op_ctl_mqtt_sync(struct op_ctl_mqtt *m, long long deadline, op_ctl_msg_fn fn, void *ud,
                        char *why, size_t whylen) OP_WUR;

void op_ctl_msg_free(struct op_ctl_msg *msg);

#endif
