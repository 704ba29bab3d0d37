/*
 * Rolling desired state out to agents, as `outpostctl deploy` and
 * `outpostctl rollback` do (docs/protocol.md, "outpostctl deploy"): the
 * next seq of each target from what the broker retains, the document
 * {"seq", "agent", "issued", "pipelines"} signed and published retained to
 * the agent's desired topic, the wait for the agent's reported to say
 * applied or refused, and the outcome printed one line per target (or as
 * JSON).
 *
 * Key invariant: a seq is never used twice for an agent (the next one is
 * above its retained desired, reported and refused seqs), so a refusal
 * reported for the seq is about this document.
 */
#ifndef OP_OUTPOSTCTL_CTL_ROLLOUT_H
#define OP_OUTPOSTCTL_CTL_ROLLOUT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control-sync/envelope.h"
#include "control-sync/outpostctl/ctl_mqtt.h"
#include "control-sync/outpostctl/ctl_plane.h"

enum op_ctl_result {
	OP_CTL_R_PENDING,
	OP_CTL_R_PUBLISHED, /* acknowledged by the broker; no report yet */
	OP_CTL_R_APPLIED,   /* reported.seq reached the document's */
	OP_CTL_R_REFUSED,   /* reported.lastError names the document's seq */
	OP_CTL_R_TIMEOUT,   /* no report in time, or the connection was lost */
	OP_CTL_R_FAILED,    /* not published */
};

/* One agent's document and how it went. */
struct op_ctl_target {
	char id[OP_CTL_AGENT_ID_MAX + 1];
	uint64_t seq;
	uint64_t from;         /* rollback: the seq whose pipelines these are; 0: a deploy */
	const cJSON *set;      /* the pipelines (a JSON array), borrowed */
	const cJSON *accounts; /* sealed accounts by name (an object), borrowed; NULL: none */
	enum op_ctl_result result;
	char code[64];
	char message[1024];
	long long t0, t1, deadline; /* monotonic ms: publish start, outcome, report due */
	char env_digest[OP_ENV_DIGEST_LEN + 1]; /* of the envelope published */
};

/* What every target of one command shares; c and s are borrowed. */
struct op_ctl_rollout {
	const struct op_ctl_conn *c;
	const struct op_ctl_signer *s;
	char issued[32]; /* UTC, RFC 3339, seconds */
	bool json;       /* print_results prints a JSON array */
};

/* Fills r, issued from this host's clock. */
void op_ctl__rollout_init(struct op_ctl_rollout *r, const struct op_ctl_conn *c,
                          const struct op_ctl_signer *s, bool json);

/* CTL_OK when the set fits one signed document, else CTL_INVALID after
 * saying why (CTL_FAILED when out of memory). cmd names the command. */
int op_ctl__set_fits(const char *cmd, const cJSON *set);

/* Sets t->seq to the next seq of t->id: one above its retained desired
 * document's, its reported seq and its last refused seq in f (1 with
 * none). False past 2^53. */
bool op_ctl__next_seq(const struct op_ctl_fleet *f, struct op_ctl_target *t);

/* Signs t's document and publishes it retained on its desired topic;
 * t->result says how it went (PUBLISHED or FAILED with the reason).
 * CTL_FAILED only when out of memory. */
int op_ctl__publish_desired(const struct op_ctl_rollout *r, struct op_ctl_mqtt *m,
                            struct op_ctl_target *t);

/* Waits for the reports of the published targets, each until its deadline
 * (the timeout after its publish), reading them into f. */
void op_ctl__wait_reports(const struct op_ctl_rollout *r, struct op_ctl_mqtt *m,
                          struct op_ctl_fleet *f, struct op_ctl_target *t, size_t n);

/* Prints the outcome; the exit code: CTL_OK when every target applied it
 * (or, without waiting, it was published), else CTL_FAILED. */
int op_ctl__print_results(const struct op_ctl_rollout *r, const struct op_ctl_target *t, size_t n);

#endif
