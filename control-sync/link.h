/*
 * The control-plane link (docs/protocol.md): one outbound MQTT 5 connection
 * over TLS with a client certificate to the control plane's broker, run by
 * one thread of its own.
 *
 * On every connect it publishes status "online" (retained; the Last Will is
 * "offline"), subscribes to its retained desired envelope and publishes
 * reported. A desired envelope is opened (control-sync/envelope.h: form,
 * trusted key id, Ed25519 signature, then the document and its seq) before
 * anything in it is read, checked to name this agent, and handed to the
 * apply hook; reported then says what runs, or why the document was
 * refused. Lost connections are retried with exponential backoff and full
 * jitter; nothing spins while offline. The link is never on the path of an
 * execution: the agent runs the same with it down.
 *
 * The outbox (agent/store/store.h): log lines at [control] log_level and
 * up (through the logger's tap), a metrics snapshot every metrics_interval
 * and every execution record (copied by the store in the same transaction)
 * wait in the store; a drain thread sends them in order, in batches of up
 * to OP_OUTBOX_BATCH_RECORDS per message, a few messages in flight per
 * stream, and deletes them once the broker acknowledged them. After a
 * reconnect it starts again after the last acknowledged record, so a
 * record may arrive twice (its seq tells), never not at all.
 *
 * paho calls back on one thread for every client of the process (the MQTT
 * publisher's too), so its callbacks here only record and signal; the work
 * is done on the link's thread.
 */
#ifndef OP_CONTROL_SYNC_LINK_H
#define OP_CONTROL_SYNC_LINK_H

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/buf.h"
#include "agent/core/err.h"
#include "agent/daemon/config.h"
#include "agent/store/store.h"

struct op_link;

struct op_link_hooks {
	/*
	 * Applies a verified document for this agent: text is its exact bytes
	 * (len), doc the parsed form (borrowed). Called on the link's thread.
	 * OP_OK once it runs and is stored; otherwise *code (static: PIPELINES,
	 * START, STORE) and msg (msglen bytes) say why, and what ran before
	 * still runs.
	 */
	op_err (*apply)(void *ud, const char *text, size_t len, const cJSON *doc, const char **code,
	                char *msg, size_t msglen);
	/* The pipelines member of reported: a new array of {name, version,
	 * origin, status}; NULL when out of memory. Called on the link's thread. */
	cJSON *(*pipelines)(void *ud);
	/*
	 * Runs a verified command for this agent (docs/protocol.md, cmd/<id>):
	 * op and its document (borrowed). Called on a command thread of its
	 * own (a few at once). stop turns true when the agent stops and the
	 * command should give up. OP_OK with *result, a new JSON value for the
	 * answer's "result"; otherwise *code (static) and msg say why, and
	 * *result may hold details (or NULL).
	 */
	op_err (*command)(void *ud, const char *id, const char *op, const cJSON *doc,
	                  const atomic_bool *stop, cJSON **result, const char **code, char *msg,
	                  size_t msglen);
	/* The agent's metrics in the Prometheus text format, appended to out;
	 * for the metrics records. May be NULL. Called on the drain thread. */
	op_err (*metrics)(void *ud, struct op_buf *out);
	void *ud;
};

struct op_link_opts {
	const struct op_config *cfg; /* [agent] id and [control]; must outlive the link */
	struct op_store *store;      /* the outbox; must outlive the link */
	uint64_t applied_seq;        /* seq of the document the agent runs, 0: none */
	const char *startup_error;   /* why the stored document was dropped, or NULL/"" */
	const char *version;         /* the agent's version, for status and reported */
	const char *seal_key;        /* base64 X25519 key accounts are sealed to, or NULL */
};

/*
 * Reads the trusted keys, creates the MQTT client and starts the link's
 * thread, which connects in the background. OP_ECONFIG (a trusted key file
 * that is not a public key, an agent id that cannot be a topic level),
 * OP_ENOMEM, OP_EINTERNAL (paho refused its options); why says which and
 * starts with the section it is about ("[control] trusted_keys: FILE: ...",
 * "[agent] id ...", "[control]: out of memory").
 */
op_err op_link_start(const struct op_link_opts *o, const struct op_link_hooks *h,
                     struct op_link **out, char *why, size_t whylen) OP_WUR;

/*
 * What op_link_start checks in cfg (a config with a [control] url) before it
 * makes anything, for `outpostd --check-config`: the agent id as a topic
 * level, the length of the topics, and every trusted key file read and
 * parsed. Nothing is connected or kept. OP_ECONFIG with why as op_link_start
 * gives it (the first problem), OP_ENOMEM.
 */
op_err op_link_check_config(const struct op_config *cfg, char *why, size_t whylen) OP_WUR;

/*
 * Publishes status "offline" (waiting a second at most), disconnects
 * without the Last Will, stops the thread and frees l. NULL is a no-op.
 */
void op_link_stop(struct op_link *l);

/* The pipeline set changed locally (a reload): publish reported again. */
void op_link_changed(struct op_link *l);

struct op_link_stats {
	bool connected;
	uint64_t sent[OP_OUTBOX_STREAMS]; /* outbox records acknowledged by the broker */
	uint64_t batches;                 /* outbox messages acknowledged */
	uint64_t connects;                /* connections made */
	uint64_t applied;                 /* documents applied */
	uint64_t refused;                 /* documents refused */
	uint64_t seq;                     /* seq of the document that runs */
	uint64_t last_error_ms;           /* when the last refusal happened, 0: none */
};

void op_link_stats(struct op_link *l, struct op_link_stats *st);

#endif
