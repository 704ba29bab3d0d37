/*
 * The admin JSON API under /api/ on the admin endpoint: the deployed
 * pipelines with their queues, recent execution records, dead letters and
 * their replay. outpostctl is its client.
 *
 * There is no authentication: the admin listener must stay on loopback
 * (127.0.0.1 or ::1, the default), where only local users reach it. Key
 * invariant: every answer is bounded (lists at most OP_ADMIN_LIMIT_MAX
 * entries, payloads at most OP_ADMIN_PAYLOAD_MAX bytes) and every error has
 * the server's one shape {"error":{"code":"...","message":"..."}}.
 *
 *   GET  /api/pipelines                          pipelines, triggers, queues
 *   GET  /api/executions?limit=N&pipeline=P      newest execution records first
 *   GET  /api/executions/{id}                    one execution record
 *   GET  /api/dead?limit=N&pipeline=P            dead letters, no payload
 *   GET  /api/dead/{id}                          one dead letter with its payload
 *   POST /api/dead/{id}/replay                   back into its queue, attempt 1
 */
#ifndef OP_DAEMON_ADMIN_H
#define OP_DAEMON_ADMIN_H

#include <stdbool.h>

#include "agent/core/err.h"
#include "agent/daemon/runtime.h"
#include "agent/http/server.h"

#define OP_ADMIN_LIMIT_DEFAULT 50
#define OP_ADMIN_LIMIT_MAX     1000
/* Execution records searched when listing one pipeline's executions. */
#define OP_ADMIN_EXEC_SCAN 10000
/* Larger dead-letter payloads are left out of GET /api/dead/{id}. */
#define OP_ADMIN_PAYLOAD_MAX (1u << 20)

/* True for the paths this API serves ("/api" and below). */
bool op_admin_is_api(const char *path);

/*
 * Answers one admin API request from rt's pipeline set and store (both
 * borrowed for the call). Returns OP_OK with resp filled, including the 4xx
 * answers (400 BAD_REQUEST, 404 NOT_FOUND, 405 METHOD_NOT_ALLOWED) and store
 * failures (503 STORE_FULL with Retry-After, 500 STORE_ERROR); OP_ENOMEM with
 * resp left empty (the server answers 503). Thread-safe.
 */
op_err op_admin_handle(struct op_runtime *rt, const struct op_http_request *req,
                       struct op_http_response *resp) OP_WUR;

#endif
