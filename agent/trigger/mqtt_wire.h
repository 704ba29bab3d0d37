/*
 * The frames between outpostd and its MQTT consumer processes.
 *
 * Why processes: paho's async client calls every client's message callback
 * on one library-wide thread and sends a QoS 1 PUBACK when the callback
 * returns. Acknowledging only after the durable commit therefore serialises
 * every message of the process behind one commit (about 0.4 ms with fsync).
 * Each consumer runs in its own process (outpostd re-executed with
 * --mqtt-consumer), so several consumers of one shared subscription wait for
 * their commits at the same time and the store's group commit batches them.
 *
 * Two stream sockets per consumer: fd 3 in the child carries HELLO and STOP
 * from the daemon and MSG and STATUS from the consumer; fd 4 carries only the
 * daemon's REPLY frames, read by the consumer's message callback itself (one
 * thread wake-up less per message than handing them over from the main
 * thread). A frame is a 4-byte length (host order: both ends are the same
 * binary) of what follows, a 1-byte type and the body. The consumer sends at
 * most one MSG at a time and waits for its REPLY before the callback returns
 * (and paho acks).
 */
#ifndef OP_TRIGGER_MQTT_WIRE_H
#define OP_TRIGGER_MQTT_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/buf.h"
#include "agent/core/err.h"

/* The consumer's ends of the sockets in the child process. */
#define OP_MQTT_WIRE_FD  3
#define OP_MQTT_REPLY_FD 4
/* Size of a REPLY frame: length, type, u8 reply, u32 retry_after_ms. */
#define OP_MQTT_REPLY_LEN 10

/* Largest frame either side accepts: the payload cap plus topic and header. */
#define OP_MQTT_WIRE_MAX_FRAME (16u * 1024 * 1024 + 128 * 1024)

enum op_mqtt_frame {
	/* daemon -> consumer */
	OP_MQTT_HELLO = 1, /* JSON: the consumer's settings (op_mqtt_hello) */
	OP_MQTT_REPLY = 2, /* on fd 4: u8 enum op_mqtt_reply, u32 retry_after_ms */
	OP_MQTT_STOP = 3,  /* u8 unsubscribe: leave the subscription, then exit */
	/* consumer -> daemon */
	OP_MQTT_MSG = 10,    /* u8 qos, u8 retained, u8 dup, u8 truncated, u32 topic len,
	                        u32 payload len (as received), topic, payload (none if
	                        truncated) */
	OP_MQTT_STATUS = 11, /* u8 enum op_mqtt_state, text */
};

enum op_mqtt_reply {
	OP_MQTT_COMMITTED = 0, /* durably in the queue: return from the callback, ack */
	OP_MQTT_BUSY = 1,      /* backpressure: send the same message again later */
};

enum op_mqtt_state {
	OP_MQTT_CONNECTED = 1,    /* text: the broker URI */
	OP_MQTT_LOST = 2,         /* text: why */
	OP_MQTT_CONNECT_FAIL = 3, /* text: why; the consumer retries with backoff */
	OP_MQTT_SUBSCRIBED = 4,   /* text: the filter */
	OP_MQTT_SUB_FAIL = 5,     /* text: why */
	OP_MQTT_FATAL = 6,        /* text: why; the consumer exits */
};

/* A message as the consumer forwards it. Borrowed views into a frame. */
struct op_mqtt_msg {
	int qos;
	bool retained, dup;
	bool truncated; /* over the payload cap: payload is empty, len is the size */
	const char *topic;
	size_t topic_len;
	const char *payload;
	size_t payload_len; /* as received */
};

/*
 * Appends one frame of type with body (len bytes; may be NULL when 0) to b.
 * OP_ELIMIT past OP_MQTT_WIRE_MAX_FRAME, OP_ENOMEM.
 */
op_err op_mqtt_frame_put(struct op_buf *b, enum op_mqtt_frame type, const void *body,
                         size_t len) OP_WUR;

/* Appends a MSG frame for m (m->payload is left out when truncated). */
op_err op_mqtt_frame_msg(struct op_buf *b, const struct op_mqtt_msg *m) OP_WUR;

/*
 * Finds the first whole frame in data (len bytes). OP_OK: *type, *body and
 * *body_len describe it and *used is its size; OP_ERETRY: not all of it is
 * there yet; OP_EPARSE: a length past the limit or zero.
 */
op_err op_mqtt_frame_get(const char *data, size_t len, enum op_mqtt_frame *type, const char **body,
                         size_t *body_len, size_t *used) OP_WUR;

/* Parses a MSG body into m (views into body). OP_EPARSE if malformed. */
op_err op_mqtt_msg_parse(const char *body, size_t len, struct op_mqtt_msg *m) OP_WUR;

/* Writes all of data to fd (retrying on EINTR and short writes). */
op_err op_mqtt_write_all(int fd, const void *data, size_t len) OP_WUR;

/*
 * The consumer process: fds OP_MQTT_WIRE_FD and OP_MQTT_REPLY_FD are its
 * sockets to the daemon.
 * Returns the process exit status. Called by outpostd --mqtt-consumer before
 * anything else is set up.
 */
int op_mqtt_consumer_main(void);

#endif
