/*
 * The commands the control plane sends (docs/protocol.md, "Commands"), run
 * against the daemon's runtime once the link has verified them:
 *
 *   invoke       {"pipeline", "input", "timeoutMs"}: runs the pipeline now,
 *                on the command's thread, and answers with its result
 *   pipelines    the deployed pipelines with their queues
 *   executions   {"limit", "pipeline"}: recent execution records
 *   execution    {"execution"}: one execution record
 *   dead         {"limit", "pipeline"}: dead letters
 *   dead-letter  {"eventId"}: one dead letter with its payload
 *   replay       {"eventId"}: a dead letter back into its queue
 *   history      the last documents applied (for rollbacks), newest first
 *   log-level    {"level"}: the agent's log level from now on
 *
 * The queries answer what the local admin API answers (agent/daemon/admin.h),
 * through it, so both stay the same.
 */
#ifndef OP_DAEMON_REMOTE_H
#define OP_DAEMON_REMOTE_H

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stddef.h>

#include "agent/core/err.h"
#include "agent/daemon/runtime.h"

/* Longest invoke: commands run on threads of their own, a few at once. */
#define OP_REMOTE_INVOKE_MAX_MS 300000

/*
 * Runs command op (id, its document doc borrowed) on rt; an invoke stops at
 * its next step once stop (may be NULL) turns true. OP_OK with *result
 * (a new JSON value); otherwise *code (static: BAD_COMMAND, UNKNOWN_OP, the
 * admin API's codes, an execution's code) and msg say why, with *result
 * the failure's details when there are some (an execution's step and class).
 */
op_err op_remote_command(struct op_runtime *rt, const char *id, const char *op, const cJSON *doc,
                         const atomic_bool *stop, cJSON **result, const char **code, char *msg,
                         size_t msglen) OP_WUR;

#endif
