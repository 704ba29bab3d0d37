/*
 * What outpostctl's control-plane commands (deploy, rollback, status,
 * invoke, logs, and the admin commands with --agent) share: text from the
 * wire made safe for a terminal, values read from the wire with their
 * types checked, the connection options (--broker, --ca, --cert, --key,
 * --prefix, --timeout and their environment variables), the signing key,
 * and the fleet as the broker's retained status, reported and desired
 * messages tell it (docs/protocol.md).
 *
 * Key invariant: what comes from the broker is never trusted. A payload is
 * bounded, parsed as JSON and read member by member with its type checked;
 * what does not parse is reported and skipped; text from the wire is
 * stripped of control characters before it reaches a terminal.
 */
#ifndef OP_OUTPOSTCTL_CTL_PLANE_H
#define OP_OUTPOSTCTL_CTL_PLANE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "agent/core/err.h"
#include "control-sync/envelope.h"
#include "control-sync/outpostctl/ctl_mqtt.h"

#define OP_CTL_AGENT_ID_MAX 64
/* Highest seq: the largest integer a double holds exactly, 2^53. */
#define OP_CTL_SEQ_MAX 9007199254740992ULL
/* Largest status or reported payload read (docs/protocol.md). */
#define OP_CTL_STATE_MAX (1u << 20)

/* ---- text for terminals ---- */

/* Replaces control characters (C0, DEL, and UTF-8 encoded C1) in s by '?',
 * so that text from the wire cannot drive the terminal. */
void op_ctl__clean(char *s);

/* Prints one line of fmt's text (which ends in a newline; at most 2 KiB),
 * cleaned, on f: a newline from the wire cannot forge a line of its own. */
void op_ctl__emit(FILE *f, const char *fmt, ...) OP_PRINTF(2, 3);

/* Prints v as pretty JSON and a newline. CTL_OK, or CTL_FAILED when out of
 * memory (said on stderr). */
int op_ctl__print_json(const cJSON *v);

/* ---- values from the wire ---- */

/* True when id (len bytes) is 1 to 64 letters, digits, '.', '_' or '-':
 * an agent id, or a command id. */
bool op_ctl__agent_id_ok(const char *id, size_t len);
/* Member name of o when o is an object, else NULL; borrowed from o. */
const cJSON *op_ctl__member(const cJSON *o, const char *name);
/* The string member name of o, or NULL; borrowed from o. */
const char *op_ctl__str_of(const cJSON *o, const char *name);
/* v as a seq: an integer from 0 to 2^53. False (*out untouched) else. */
bool op_ctl__seq_of(const cJSON *v, uint64_t *out);
/* Milliseconds since the epoch, by this host's clock. */
long long op_ctl__wall_ms(void);

/* ---- connection options ---- */

struct op_ctl_conn {
	const char *cmd; /* "deploy", "status", ...: for messages */
	const char *broker, *ca, *cert, *key, *prefix;
	double timeout_s;
	bool timeout_given;
};

/* If argv[*i] is a connection option, takes it (and its value, advancing
 * *i): 1. Not one: 0. One without a value or with a bad one: -1 after
 * saying why. */
int op_ctl__conn_opt(struct op_ctl_conn *c, int argc, char **argv, int *i);

/* Fills what the options left out from the environment and checks that
 * everything needed is there (the files readable). CTL_OK, or CTL_INVALID
 * after one line on stderr for each problem. */
int op_ctl__conn_finish(struct op_ctl_conn *c);

/* The --timeout in milliseconds. */
long long op_ctl__timeout_ms(const struct op_ctl_conn *c);

/* Connects within the timeout; messages larger than max_payload are handed
 * out without their payload. CTL_OK with *m (op_ctl_mqtt_close), or
 * CTL_INVALID (a bad URL or prefix) / CTL_FAILED after saying why. */
int op_ctl__conn_open(const struct op_ctl_conn *c, size_t max_payload, struct op_ctl_mqtt **m);

/* The usage lines of the connection options, for --help texts. */
extern const char op_ctl__conn_usage[];

/* ---- the signing key ---- */

struct op_ctl_signer {
	struct op_env_key key;
	unsigned char seed[OP_ENV_KEY_LEN]; /* wiped by op_ctl__signer_wipe */
};

/* Reads the private key file path (outpostctl keygen) into s. CTL_OK, or
 * CTL_INVALID after saying why. */
int op_ctl__signer_read(const char *path, struct op_ctl_signer *s);
/* Wipes the private seed. */
void op_ctl__signer_wipe(struct op_ctl_signer *s);

/* ---- the fleet, as the broker's retained messages tell it ---- */

/*
 * {"<agent id>": {"status": {...}, "reported": {...}, "desiredSeq": N}},
 * from messages on <root><id>/status, /reported and /desired (whose
 * document's seq is kept as "desiredSeq", read without verifying the
 * signature: it only chooses the next seq). Messages that are not an
 * agent's, or whose payload does not parse, are reported on stderr and
 * skipped. The caller sets cmd, root (borrowed) and agents (an empty
 * object it deletes).
 */
struct op_ctl_fleet {
	const char *cmd;
	const char *root;
	cJSON *agents;
	size_t n;
	bool full, nomem;
};

/* Takes one message into the fleet; returns the agent's entry (borrowed
 * from f->agents) when the message changed it, else NULL. */
cJSON *op_ctl__fleet_take(struct op_ctl_fleet *f, const struct op_ctl_msg *msg);

/* Subscribes to the n filters (each after the root) and takes every
 * retained message they bring (ctl_mqtt's probe). CTL_OK, or CTL_FAILED
 * after saying why. */
int op_ctl__fleet_load(struct op_ctl_fleet *f, struct op_ctl_mqtt *m, const struct op_ctl_conn *c,
                       const char *const *filters, size_t n);

/* The fleet's entries sorted by agent id into *out (op_free; NULL when
 * there are none; the entries borrowed from f) and *n. False when out of
 * memory. */
bool op_ctl__fleet_sorted(const struct op_ctl_fleet *f, const cJSON ***out, size_t *n);

#endif
