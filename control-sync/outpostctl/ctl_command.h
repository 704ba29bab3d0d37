/*
 * Signed commands from outpostctl to one agent (docs/protocol.md,
 * "Commands: cmd/<id> -> cmd-result/<id>"): the document {"id", "agent",
 * "expires", "op", ...} signed into an envelope, published (QoS 1, not
 * retained) to <root><agent>/cmd/<id> with the MQTT 5 response topic
 * <root><agent>/cmd-result/<id> and the id as correlation data, and the
 * agent's answer awaited there.
 *
 * Key invariant: the answer's topic is subscribed to (SUBACK) before the
 * command is published, so an answer cannot slip past; only a message on
 * that topic with the command's correlation data is taken as its answer,
 * and it is parsed and checked like anything else from the broker.
 */
#ifndef OP_OUTPOSTCTL_CTL_COMMAND_H
#define OP_OUTPOSTCTL_CTL_COMMAND_H

#include <cjson/cJSON.h>

#include "control-sync/outpostctl/ctl_mqtt.h"
#include "control-sync/outpostctl/ctl_plane.h"

/* Largest answer read: an agent's history holds up to ten documents. */
#define OP_CTL_ANSWER_MAX (256u << 20)

/*
 * Sends op with the members of args (an object or NULL; borrowed) as a
 * signed command to agent over m and waits for the answer: subscribing
 * and publishing each within c's timeout, then up to wait_ms after the
 * broker acknowledged the command. The command expires (at the agent) at
 * min(10 minutes, wait_ms + 60 s) from now; its id is 32 random hex digits.
 *
 * CTL_OK with *answer, the answer object (cJSON_Delete), whose "ok" is a
 * boolean, whether true or false; CTL_FAILED after one line on stderr
 * ("outpostctl CMD: agent A: ...") when it was not published (the PUBACK's
 * refusal named), no answer came in time, the connection was lost, or the
 * answer is not one (not a JSON object with a boolean "ok"); CTL_INVALID
 * when the command does not fit one envelope.
 */
int op_ctl__command(struct op_ctl_mqtt *m, const struct op_ctl_conn *c,
                    const struct op_ctl_signer *s, const char *agent, const char *op,
                    const cJSON *args, long long wait_ms, cJSON **answer);

/*
 * For an answer whose "ok" is false: prints "outpostctl CMD: agent A: CODE:
 * message" on stderr, then, when its result tells (an execution that
 * failed), "  step S, class C: code: message". Returns the exit code the
 * admin commands use: CTL_NOTFOUND for NOT_FOUND and PIPELINE_NOT_FOUND,
 * CTL_INVALID for BAD_COMMAND, else CTL_FAILED.
 */
int op_ctl__command_failed(const char *cmd, const char *agent, const cJSON *answer);

#endif
