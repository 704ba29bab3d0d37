/*
 * The admin JSON API (see admin.h): reads the running pipeline set and the
 * store, and replays dead letters. It keeps no state of its own: the route
 * table is built per request (six routes, microseconds, on an endpoint that
 * people and outpostctl call now and then), so the daemon's lifecycle does
 * not change and the API can be driven directly from tests. Key invariant:
 * the pipeline set is referenced only during a request, and every list is
 * bounded by OP_ADMIN_LIMIT_MAX.
 */
#define OP_LOG_MODULE "admin"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/daemon/admin.h"
#include "agent/http/route.h"
#include "agent/trigger/trigger.h"

typedef op_err (*api_fn)(struct op_runtime *rt, const struct op_http_request *req,
                         const cJSON *params, struct op_http_response *resp);

struct api_route {
	const char *method;
	const char *tmpl;
	api_fn fn;
};

/* ---- answers ---- */

/* Answers 400; returns OP_EINVAL ("resp holds the answer") or OP_ENOMEM. */
__attribute__((format(printf, 2, 3))) static op_err bad_request(struct op_http_response *resp,
                                                                const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	op_err rc = op_http_respond_error(resp, 400, "BAD_REQUEST", msg);
	return rc ? rc : OP_EINVAL;
}

static op_err not_found(struct op_http_response *resp, const char *what, const char *id)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "no %s with id %s", what, id);
	return op_http_respond_error(resp, 404, "NOT_FOUND", msg);
}

/* Answers a store failure: full is 503 with Retry-After, the rest 500. */
static op_err store_fail(struct op_http_response *resp, op_err e, const char *what)
{
	if (e == OP_ENOMEM)
		return e;
	char msg[256];
	snprintf(msg, sizeof(msg), "%s: %s", what, op_err_str(e));
	if (e == OP_EFULL) {
		op_err rc = op_http_respond_error(resp, 503, "STORE_FULL", msg);
		return rc ? rc : op_http_response_header(resp, "Retry-After", "1");
	}
	OP_LOGW("%s", msg);
	return op_http_respond_error(resp, 500, "STORE_ERROR", msg);
}

static op_err respond(struct op_http_response *resp, int status, cJSON *v)
{
	op_err rc = v ? op_http_respond_json(resp, status, v) : OP_ENOMEM;
	cJSON_Delete(v);
	return rc;
}

/* ---- query parameters ---- */

/* The string value of query parameter name, or NULL when absent. OP_EINVAL
 * (resp holds a 400) when it is repeated. */
static op_err query_get(const struct op_http_request *req, struct op_http_response *resp,
                        const char *name, const char **out)
{
	*out = NULL;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->query, name);
	if (v == NULL)
		return OP_OK;
	if (!cJSON_IsString(v))
		return bad_request(resp, "query parameter \"%s\" is given more than once", name);
	*out = v->valuestring;
	return OP_OK;
}

/* Refuses query parameters other than those in allowed (NULL-terminated). */
static op_err query_check(const struct op_http_request *req, struct op_http_response *resp,
                          const char *const *allowed)
{
	const cJSON *it;
	cJSON_ArrayForEach (it, req->query) {
		bool ok = false;
		for (size_t i = 0; allowed[i] && !ok; i++)
			ok = strcmp(it->string, allowed[i]) == 0;
		if (!ok)
			return bad_request(resp, "unknown query parameter \"%.64s\"", it->string);
	}
	return OP_OK;
}

/* ?limit=N: 1..OP_ADMIN_LIMIT_MAX, default OP_ADMIN_LIMIT_DEFAULT. */
static op_err query_limit(const struct op_http_request *req, struct op_http_response *resp,
                          size_t *out)
{
	const char *s;
	*out = OP_ADMIN_LIMIT_DEFAULT;
	op_err rc = query_get(req, resp, "limit", &s);
	if (rc || s == NULL)
		return rc;
	size_t n = 0;
	bool ok = *s != '\0';
	for (const char *p = s; *p && ok; p++) {
		ok = *p >= '0' && *p <= '9';
		n = n * 10 + (size_t)(*p - '0');
		ok = ok && n <= OP_ADMIN_LIMIT_MAX;
	}
	if (!ok || n == 0)
		return bad_request(resp, "limit must be a whole number from 1 to %d",
		                   OP_ADMIN_LIMIT_MAX);
	*out = n;
	return OP_OK;
}

/* ?pipeline=NAME, NULL when absent. */
static op_err query_pipeline(const struct op_http_request *req, struct op_http_response *resp,
                             const char **out)
{
	op_err rc = query_get(req, resp, "pipeline", out);
	if (rc == OP_OK && *out && (**out == '\0' || strlen(*out) > OP_STORE_NAME_MAX)) {
		*out = NULL;
		return bad_request(resp, "pipeline must be 1 to %d bytes", OP_STORE_NAME_MAX);
	}
	return rc;
}

/* ---- JSON of the records ---- */

/* A dead letter; with its trigger data and payload (up to the cap) if full. */
static cJSON *dead_json(const struct op_store_event *ev, bool full)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *trig = ev->trigger && *ev->trigger ? cJSON_Parse(ev->trigger) : NULL;
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(trig, "type");
	bool ok = o && cJSON_AddStringToObject(o, "eventId", ev->id) &&
	          cJSON_AddStringToObject(o, "pipeline", ev->pipeline ? ev->pipeline : "") &&
	          op_json_add_str_or_null(o, "triggerType",
	                                  cJSON_IsString(type) ? type->valuestring : NULL) &&
	          op_json_add_str_or_null(o, "error", ev->error) &&
	          cJSON_AddNumberToObject(o, "attempt", ev->attempt) &&
	          op_json_add_time_ms(o, "enqueuedAt", ev->enqueued_ms) &&
	          op_json_add_time_ms(o, "deadAt", ev->dead_ms) &&
	          cJSON_AddNumberToObject(o, "payloadBytes", (double)ev->payload_len);
	if (ok && full) {
		if (trig) {
			ok = cJSON_AddItemToObject(o, "trigger", trig);
			trig = ok ? NULL : trig;
		} else {
			ok = cJSON_AddNullToObject(o, "trigger") != NULL;
		}
	}
	if (ok && full && ev->payload_len > OP_ADMIN_PAYLOAD_MAX) {
		ok = cJSON_AddTrueToObject(o, "payloadOmitted") != NULL;
	} else if (ok && full) {
		/* The store holds JSON text; anything else is shown as a string. */
		cJSON *p = cJSON_ParseWithLength(ev->payload, ev->payload_len);
		if (p == NULL)
			p = cJSON_CreateString(ev->payload);
		ok = p && cJSON_AddItemToObject(o, "payload", p);
		if (!ok)
			cJSON_Delete(p);
	}
	cJSON_Delete(trig);
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static bool trigger_json(cJSON *o, const struct op_pipeline *p)
{
	enum op_trigger_kind k = op_trigger_kind(p);
	const struct op_trigger_type *tt = op_trigger_type_at(k);
	cJSON *t = cJSON_AddObjectToObject(o, "trigger");
	bool ok = t && cJSON_AddStringToObject(t, "type", tt ? tt->name : "unknown");
	const struct op_http_trigger *h = op_trigger_http(p);
	const struct op_schedule_trigger *s = op_trigger_schedule(p);
	const struct op_event_trigger *e = op_trigger_event(p);
	const struct op_mqtt_trigger *m = op_trigger_mqtt(p);
	if (ok && h)
		ok =
		    cJSON_AddStringToObject(t, "method", h->method) &&
		    cJSON_AddStringToObject(t, "path", op_http_route_template(h->route)) &&
		    cJSON_AddStringToObject(t, "mode", h->mode == OP_HTTP_ASYNC ? "async" : "sync");
	if (ok && s)
		ok = cJSON_AddStringToObject(t, "cron", s->expr) != NULL;
	if (ok && e)
		ok = cJSON_AddStringToObject(t, "event", e->name) != NULL;
	if (ok && m)
		ok = cJSON_AddStringToObject(t, "broker", m->broker) &&
		     cJSON_AddStringToObject(t, "topic", m->topic);
	return ok;
}

/* ---- the endpoints ---- */

/* The queue numbers of pipeline name into o; OP_EINVAL with resp set when the
 * dead letters cannot be counted. */
static op_err queue_json(struct op_runtime *rt, cJSON *o, const char *name,
                         struct op_http_response *resp)
{
	struct op_store *s = op_runtime_store(rt);
	uint64_t events = 0, bytes = 0, dead = 0;
	op_store_queue_depth(s, name, &events, &bytes);
	op_err dr = op_store_dead_count(s, name, &dead);
	if (dr) {
		op_err rc = store_fail(resp, dr, "counting dead letters");
		return rc ? rc : OP_EINVAL;
	}
	bool ok = cJSON_AddNumberToObject(o, "queued", (double)events) &&
	          cJSON_AddNumberToObject(o, "queuedBytes", (double)bytes) &&
	          cJSON_AddNumberToObject(o, "running", (double)op_runtime_running(rt, name)) &&
	          cJSON_AddNumberToObject(o, "deadLetters", (double)dead);
	return ok ? OP_OK : OP_ENOMEM;
}

static op_err get_pipelines(struct op_runtime *rt, const struct op_http_request *req,
                            const cJSON *params, struct op_http_response *resp)
{
	(void)params;
	static const char *const allowed[] = {NULL};
	op_err rc = query_check(req, resp, allowed);
	if (rc)
		return rc == OP_EINVAL ? OP_OK : rc;
	struct op_runtime_set *set = op_runtime_get(rt);
	const struct op_engine *e = op_runtime_engine(set);
	cJSON *a = cJSON_CreateArray();
	if (a == NULL)
		rc = OP_ENOMEM;
	for (size_t i = 0; rc == OP_OK && i < op_engine_count(e); i++) {
		const struct op_pipeline *p = op_engine_at(e, i);
		cJSON *o = cJSON_CreateObject();
		if (o == NULL || !cJSON_AddItemToArray(a, o)) {
			cJSON_Delete(o);
			rc = OP_ENOMEM;
			break;
		}
		if (!cJSON_AddStringToObject(o, "name", p->name) ||
		    !cJSON_AddStringToObject(o, "version", p->version ? p->version : "") ||
		    !cJSON_AddStringToObject(o, "status", "running") || !trigger_json(o, p))
			rc = OP_ENOMEM;
		else
			rc = queue_json(rt, o, p->name, resp);
	}
	op_runtime_put(rt, set);
	/* Pipelines a reload or deploy dropped, still running their queues. */
	cJSON *draining = rc == OP_OK ? op_runtime_draining(rt) : NULL;
	if (rc == OP_OK && draining == NULL)
		rc = OP_ENOMEM;
	while (rc == OP_OK && cJSON_GetArraySize(draining) > 0) {
		cJSON *o = cJSON_DetachItemFromArray(draining, 0);
		cJSON_DeleteItemFromObjectCaseSensitive(o, "origin");
		if (!cJSON_AddItemToArray(a, o)) {
			cJSON_Delete(o);
			rc = OP_ENOMEM;
			break;
		}
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
		if (!cJSON_AddStringToObject(o, "status", "draining"))
			rc = OP_ENOMEM;
		else
			rc = queue_json(rt, o, cJSON_GetStringValue(name), resp);
	}
	cJSON_Delete(draining);
	if (rc) {
		cJSON_Delete(a);
		return rc == OP_EINVAL ? OP_OK : rc;
	}
	return respond(resp, 200, a);
}

/* The ?limit=N&pipeline=P of the listings; OP_EINVAL with resp set to a 400. */
static op_err list_query(const struct op_http_request *req, struct op_http_response *resp,
                         size_t *limit, const char **pipeline)
{
	static const char *const allowed[] = {"limit", "pipeline", NULL};
	op_err rc = query_check(req, resp, allowed);
	if (rc == OP_OK)
		rc = query_limit(req, resp, limit);
	if (rc == OP_OK)
		rc = query_pipeline(req, resp, pipeline);
	return rc;
}

static op_err get_executions(struct op_runtime *rt, const struct op_http_request *req,
                             const cJSON *params, struct op_http_response *resp)
{
	(void)params;
	size_t limit;
	const char *pipeline = NULL;
	op_err rc = list_query(req, resp, &limit, &pipeline);
	if (rc)
		return rc == OP_EINVAL ? OP_OK : rc;
	struct op_store_exec **recs = NULL;
	size_t n = 0;
	/* The store keeps one newest-first index; one pipeline's records are
	 * found among the newest OP_ADMIN_EXEC_SCAN. */
	rc = op_store_list_execs(op_runtime_store(rt), pipeline ? OP_ADMIN_EXEC_SCAN : limit, &recs,
	                         &n);
	if (rc)
		return store_fail(resp, rc, "listing executions");
	cJSON *a = cJSON_CreateArray();
	size_t got = 0;
	for (size_t i = 0; a && i < n && got < limit; i++) {
		if (pipeline && strcmp(recs[i]->pipeline ? recs[i]->pipeline : "", pipeline) != 0)
			continue;
		cJSON *o = op_store_exec_json(recs[i]);
		if (o == NULL || !cJSON_AddItemToArray(a, o)) {
			cJSON_Delete(o);
			cJSON_Delete(a);
			a = NULL;
		}
		got++;
	}
	op_store_execs_free(recs, n);
	return respond(resp, 200, a);
}

static op_err get_execution(struct op_runtime *rt, const struct op_http_request *req,
                            const cJSON *params, struct op_http_response *resp)
{
	(void)req;
	const char *id = cJSON_GetObjectItemCaseSensitive(params, "id")->valuestring;
	struct op_store_exec *r = NULL;
	op_err rc = op_store_get_exec(op_runtime_store(rt), id, &r);
	if (rc == OP_ENOTFOUND || rc == OP_EINVAL)
		return not_found(resp, "execution", id);
	if (rc)
		return store_fail(resp, rc, "reading the execution");
	cJSON *o = op_store_exec_json(r);
	op_store_exec_free(r);
	return respond(resp, 200, o);
}

static op_err get_dead_list(struct op_runtime *rt, const struct op_http_request *req,
                            const cJSON *params, struct op_http_response *resp)
{
	(void)params;
	size_t limit;
	const char *pipeline = NULL;
	op_err rc = list_query(req, resp, &limit, &pipeline);
	if (rc)
		return rc == OP_EINVAL ? OP_OK : rc;
	struct op_store_event **evs = NULL;
	size_t n = 0;
	rc = op_store_list_dead(op_runtime_store(rt), pipeline, limit, &evs, &n);
	if (rc)
		return store_fail(resp, rc, "listing dead letters");
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; a && i < n; i++) {
		cJSON *o = dead_json(evs[i], false);
		if (o == NULL || !cJSON_AddItemToArray(a, o)) {
			cJSON_Delete(o);
			cJSON_Delete(a);
			a = NULL;
		}
	}
	op_store_events_free(evs, n);
	return respond(resp, 200, a);
}

static op_err get_dead(struct op_runtime *rt, const struct op_http_request *req,
                       const cJSON *params, struct op_http_response *resp)
{
	(void)req;
	const char *id = cJSON_GetObjectItemCaseSensitive(params, "id")->valuestring;
	struct op_store_event *ev = NULL;
	op_err rc = op_store_get_dead(op_runtime_store(rt), id, &ev);
	if (rc == OP_ENOTFOUND || rc == OP_EINVAL)
		return not_found(resp, "dead letter", id);
	if (rc)
		return store_fail(resp, rc, "reading the dead letter");
	cJSON *o = dead_json(ev, true);
	op_store_event_free(ev);
	return respond(resp, 200, o);
}

static op_err post_replay(struct op_runtime *rt, const struct op_http_request *req,
                          const cJSON *params, struct op_http_response *resp)
{
	(void)req;
	const char *id = cJSON_GetObjectItemCaseSensitive(params, "id")->valuestring;
	op_err rc = op_runtime_replay(rt, id);
	if (rc == OP_ENOTFOUND || rc == OP_EINVAL)
		return not_found(resp, "dead letter", id);
	if (rc)
		return store_fail(resp, rc, "replaying the dead letter");
	OP_LOGI("dead letter %s replayed", id);
	cJSON *o = cJSON_CreateObject();
	if (o && !cJSON_AddStringToObject(o, "replayed", id)) {
		cJSON_Delete(o);
		o = NULL;
	}
	return respond(resp, 200, o);
}

static const struct api_route api_routes[] = {
    {"GET", "/api/pipelines", get_pipelines},
    {"GET", "/api/executions", get_executions},
    {"GET", "/api/executions/{id}", get_execution},
    {"GET", "/api/dead", get_dead_list},
    {"GET", "/api/dead/{id}", get_dead},
    {"POST", "/api/dead/{id}/replay", post_replay},
};

bool op_admin_is_api(const char *path)
{
	return strncmp(path, "/api", 4) == 0 && (path[4] == '\0' || path[4] == '/');
}

op_err op_admin_handle(struct op_runtime *rt, const struct op_http_request *req,
                       struct op_http_response *resp)
{
	struct op_http_match m = {0};
	struct op_http_router *router = op_http_router_new();
	op_err rc = router ? OP_OK : OP_ENOMEM;
	for (size_t i = 0; rc == OP_OK && i < sizeof(api_routes) / sizeof(api_routes[0]); i++) {
		char err[128];
		rc = op_http_router_add(router, api_routes[i].method, api_routes[i].tmpl,
		                        (void *)&api_routes[i], err, sizeof(err));
		if (rc && rc != OP_ENOMEM) {
			OP_LOGE("admin route %s: %s", api_routes[i].tmpl, err);
			rc = OP_EINTERNAL;
		}
	}
	if (rc)
		goto out;
	rc = op_http_router_match(router, req->method, req->path, &m);
	if (rc == OP_OK) {
		const struct api_route *r = m.target;
		rc = r->fn(rt, req, m.params, resp);
	} else if (rc == OP_ENOTFOUND) {
		rc = op_http_respond_error(resp, 404, "NOT_FOUND",
		                           "the admin API has /api/pipelines, /api/executions and "
		                           "/api/dead");
	} else if (rc == OP_EUNSUPPORTED) {
		rc = op_http_respond_error(resp, 405, "METHOD_NOT_ALLOWED",
		                           "this path takes other methods");
		if (rc == OP_OK)
			rc = op_http_response_header(resp, "Allow", m.allow);
	} else if (rc == OP_EINVAL) {
		rc = op_http_respond_error(resp, 400, "BAD_PATH", "the path is malformed");
	}
out:
	op_http_match_fini(&m);
	op_http_router_free(router);
	return rc;
}
