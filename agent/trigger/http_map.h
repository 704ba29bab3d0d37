/*
 * The HTTP trigger's mapping between requests and pipelines: a request
 * becomes the pipeline's input message plus its trigger metadata, a result
 * (or a failure) becomes the answer of a sync trigger; and the per-trigger
 * token-bucket rate limiter. docs/triggers.md describes the shapes.
 *
 * Key invariant: secrets never enter a message. The headers that carry
 * credentials (authorization, proxy-authorization, cookie, x-api-key and an
 * apikey auth's own header) are left out of the message; what the verifier
 * learnt from them (the claims) goes to the trigger metadata instead.
 */
#ifndef OP_TRIGGER_HTTP_MAP_H
#define OP_TRIGGER_HTTP_MAP_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/core/err.h"
#include "agent/engine/engine.h"
#include "agent/http/server.h"
#include "agent/trigger/trigger.h"

/* Key of a sync result object that sets the HTTP answer. */
#define OP_HTTP_RESULT_KEY "$http"

/*
 * Builds the input message of request req matched with params (the route's
 * {name: value} object, borrowed; NULL for none):
 * {"method","path","params","query","headers","body"} plus "bodyEncoding":
 * "base64" when the body is not UTF-8 text. t (may be NULL) names an extra
 * secret header. Returns OP_OK with *msg a new value (caller deletes);
 * OP_EPARSE when a JSON body does not parse, with err_resp set to a 400
 * answer naming line and column (send it); OP_ENOMEM (answer 503), err_resp
 * untouched. On error *msg is NULL.
 */
op_err op_http_trigger_message(const struct op_http_trigger *t, const struct op_http_request *req,
                               const cJSON *params, cJSON **msg,
                               struct op_http_response *err_resp) OP_WUR;

/*
 * The trigger data for metadata.trigger: {"type":"http","method","path",
 * "route","remote","auth"}, where auth is a copy of claims (borrowed; NULL
 * gives null) and route the template. NULL on OOM. Caller deletes.
 */
cJSON *op_http_trigger_data(const struct op_http_trigger *t, const struct op_http_request *req,
                            const cJSON *claims);

/*
 * Fills resp with the answer of a sync trigger for result (borrowed). When
 * result is an object with the key "$http" ({"status", "headers", "body"},
 * each optional) that sets the answer; otherwise it is t's default status
 * and headers with result as JSON body. Returns OP_OK; OP_EINVAL when "$http"
 * is malformed, with resp already set to a 500 answer saying why; OP_ENOMEM
 * with resp emptied.
 */
op_err op_http_trigger_respond(const struct op_http_trigger *t, const cJSON *result,
                               struct op_http_response *resp) OP_WUR;

/*
 * Fills resp with the answer for a failed execution: the status of f's class
 * (op_http_status_for: invalid/parse 400, timeout 504, ...) and body
 * {"error":{"code","message","step"}}. OP_ENOMEM with resp emptied.
 */
op_err op_http_trigger_respond_fail(const struct op_fail *f, struct op_http_response *resp) OP_WUR;

/* Fills resp with 202 {"eventId": event_id} (async triggers). */
op_err op_http_trigger_respond_accepted(const char *event_id, struct op_http_response *resp) OP_WUR;

/* Fills resp with 429, a Retry-After header of retry_after_ms rounded up to
 * whole seconds (at least 1) and an error body. */
op_err op_http_respond_rate_limited(uint64_t retry_after_ms, struct op_http_response *resp) OP_WUR;

/* True for headers the server sets itself (content-length, transfer-encoding,
 * connection, keep-alive, upgrade, trailer; any case): neither the trigger's
 * response.headers nor a result's "$http" may set them. */
bool op_http_header_reserved(const char *name);

/* --- Rate limiter -------------------------------------------------------- */

/*
 * A token bucket of burst tokens refilled at per_second tokens per second
 * (kept as a GCRA "theoretical arrival time" in one atomic, so it is
 * lock-free). OP_EINVAL unless per_second > 0 and burst >= 1; OP_ENOMEM.
 * On error *out is NULL. Free with op_rate_free().
 */
op_err op_rate_new(double per_second, long long burst, struct op_rate **out) OP_WUR;
void op_rate_free(struct op_rate *r);

/*
 * Takes one token at time now_ms (any monotonic millisecond clock; the same
 * one on every call). True when allowed. False when the bucket is empty:
 * *retry_after_ms (may be NULL) is how long until a token is there (> 0).
 * Thread-safe.
 */
bool op_rate_take(struct op_rate *r, uint64_t now_ms, uint64_t *retry_after_ms);

#endif
