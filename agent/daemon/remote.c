/*
 * The control plane's commands (see remote.h). Queries go through the admin
 * API's handler with a request made here, so an answer is the same JSON
 * whether outpostctl asks on the host or through the control plane.
 */
#define OP_LOG_MODULE "remote"
#include "agent/daemon/remote.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/daemon/admin.h"
#include "agent/engine/engine.h"
#include "agent/http/server.h"

#define ARG_MAX 128 /* longest name or id taken into a path */

static op_err bad(const char **code, char *msg, size_t msglen, const char *fmt, ...)
    OP_PRINTF(4, 5);

static op_err bad(const char **code, char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	*code = "BAD_COMMAND";
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
	return OP_EINVAL;
}

/* A string member that may go into a path or query: letters, digits, '.',
 * '_', '-'; NULL when absent. */
static op_err arg(const cJSON *doc, const char *name, bool required, const char **out,
                  const char **code, char *msg, size_t msglen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);
	*out = NULL;
	if (v == NULL && !required)
		return OP_OK;
	const char *s = cJSON_GetStringValue(v);
	size_t n = s ? strlen(s) : 0;
	bool ok = n > 0 && n <= ARG_MAX;
	for (size_t i = 0; ok && i < n; i++) {
		char c = s[i];
		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		     c == '.' || c == '_' || c == '-';
	}
	if (!ok)
		return bad(code, msg, msglen,
		           "%s: expected 1 to 128 letters, digits, '.', '_' or '-'", name);
	*out = s;
	return OP_OK;
}

/* Asks the admin API: method path, with the query members of q (may be NULL). */
static op_err admin(struct op_runtime *rt, const char *method, const char *path, cJSON *q,
                    cJSON **result, const char **code, char *msg, size_t msglen)
{
	cJSON *headers = cJSON_CreateObject();
	cJSON *query = q ? q : cJSON_CreateObject();
	if (headers == NULL || query == NULL) {
		cJSON_Delete(headers);
		cJSON_Delete(query);
		*code = "NOMEM";
		snprintf(msg, msglen, "out of memory");
		return OP_ENOMEM;
	}
	struct op_http_request req = {.method = method,
	                              .path = path,
	                              .query = query,
	                              .headers = headers,
	                              .body = "",
	                              .content_type = "",
	                              .remote_addr = "control-plane"};
	struct op_http_response resp;
	memset(&resp, 0, sizeof(resp));
	op_err rc = op_admin_handle(rt, &req, &resp);
	cJSON_Delete(headers);
	cJSON_Delete(query);
	cJSON *body = NULL;
	if (rc == OP_OK && resp.body) {
		char err[128];
		rc = op_json_parse(resp.body, resp.body_len, &body, err, sizeof(err));
	}
	op_free(resp.body);
	cJSON_Delete(resp.headers);
	if (rc) {
		*code = rc == OP_ENOMEM ? "NOMEM" : "INTERNAL";
		snprintf(msg, msglen, "the admin API could not answer: %s", op_err_str(rc));
		return rc;
	}
	if (resp.status >= 200 && resp.status < 300) {
		*result = body;
		return OP_OK;
	}
	/* {"error": {"code", "message"}}; the code must outlive body. */
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(body, "error");
	const char *c = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "code"));
	const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
	static const char *const known[] = {"NOT_FOUND",   "BAD_REQUEST", "STORE_FULL",
	                                    "STORE_ERROR", "CONFLICT",    NULL};
	*code = "ERROR";
	for (size_t i = 0; c && known[i]; i++)
		if (strcmp(c, known[i]) == 0)
			*code = known[i];
	snprintf(msg, msglen, "%s", m ? m : "the admin API refused the request");
	cJSON_Delete(body);
	return resp.status == 404 ? OP_ENOTFOUND : OP_EREJECTED;
}

/* The query of a list: ?limit=N&pipeline=P from the document. */
static op_err list_query(const cJSON *doc, cJSON **q, const char **code, char *msg, size_t msglen)
{
	const char *pipeline = NULL;
	op_err rc = arg(doc, "pipeline", false, &pipeline, code, msg, msglen);
	if (rc)
		return rc;
	const cJSON *limit = cJSON_GetObjectItemCaseSensitive(doc, "limit");
	if (limit && (!cJSON_IsNumber(limit) || limit->valuedouble < 1 ||
	              limit->valuedouble > OP_ADMIN_LIMIT_MAX))
		return bad(code, msg, msglen, "%s: expected a number from 1 to 1000", "limit");
	*q = cJSON_CreateObject();
	char n[32];
	if (limit)
		snprintf(n, sizeof(n), "%.0f", limit->valuedouble);
	if (*q == NULL || (limit && !cJSON_AddStringToObject(*q, "limit", n)) ||
	    (pipeline && !cJSON_AddStringToObject(*q, "pipeline", pipeline))) {
		cJSON_Delete(*q);
		*q = NULL;
		*code = "NOMEM";
		snprintf(msg, msglen, "out of memory");
		return OP_ENOMEM;
	}
	return OP_OK;
}

static op_err invoke(struct op_runtime *rt, const char *id, const cJSON *doc,
                     const atomic_bool *stop, cJSON **result, const char **code, char *msg,
                     size_t msglen)
{
	const char *pipeline = NULL;
	op_err rc = arg(doc, "pipeline", true, &pipeline, code, msg, msglen);
	if (rc)
		return rc;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "timeoutMs");
	if (t &&
	    (!cJSON_IsNumber(t) || t->valuedouble < 1 || t->valuedouble > OP_REMOTE_INVOKE_MAX_MS))
		return bad(code, msg, msglen, "%s: expected milliseconds from 1 to 300000",
		           "timeoutMs");
	const cJSON *input = cJSON_GetObjectItemCaseSensitive(doc, "input");
	cJSON *in = input ? cJSON_Duplicate(input, 1) : cJSON_CreateObject();
	cJSON *trigger = cJSON_CreateObject();
	if (in == NULL || trigger == NULL || !cJSON_AddStringToObject(trigger, "type", "command") ||
	    !cJSON_AddStringToObject(trigger, "command", id)) {
		cJSON_Delete(in);
		cJSON_Delete(trigger);
		*code = "NOMEM";
		snprintf(msg, msglen, "out of memory");
		return OP_ENOMEM;
	}
	struct op_fail f;
	memset(&f, 0, sizeof(f));
	cJSON *out = NULL;
	rc = op_runtime_run_stoppable(rt, pipeline, in, trigger,
	                              t ? (long long)t->valuedouble : OP_REMOTE_INVOKE_MAX_MS / 10,
	                              stop, &out, &f);
	cJSON_Delete(trigger);
	if (rc == OP_OK) {
		*result = cJSON_CreateObject();
		if (*result && cJSON_AddItemToObject(*result, "output", out))
			return OP_OK;
		cJSON_Delete(out);
		cJSON_Delete(*result);
		*result = NULL;
		*code = "NOMEM";
		snprintf(msg, msglen, "out of memory");
		return OP_ENOMEM;
	}
	/* f.code lives in f: the hook's code must be static. */
	*code = rc == OP_ENOTFOUND ? "PIPELINE_NOT_FOUND" : "EXECUTION_FAILED";
	snprintf(msg, msglen, "%s", f.msg);
	*result = op_fail_to_json(&f);
	return rc;
}

op_err op_remote_command(struct op_runtime *rt, const char *id, const char *op, const cJSON *doc,
                         const atomic_bool *stop, cJSON **result, const char **code, char *msg,
                         size_t msglen)
{
	*result = NULL;
	*code = "UNKNOWN_OP";
	msg[0] = '\0';
	char path[64 + ARG_MAX];
	const char *which = NULL;
	cJSON *q = NULL;
	op_err rc;
	if (strcmp(op, "invoke") == 0)
		return invoke(rt, id, doc, stop, result, code, msg, msglen);
	if (strcmp(op, "pipelines") == 0)
		return admin(rt, "GET", "/api/pipelines", NULL, result, code, msg, msglen);
	if (strcmp(op, "executions") == 0 || strcmp(op, "dead") == 0) {
		rc = list_query(doc, &q, code, msg, msglen);
		if (rc)
			return rc;
		return admin(rt, "GET", op[0] == 'e' ? "/api/executions" : "/api/dead", q, result,
		             code, msg, msglen);
	}
	if (strcmp(op, "execution") == 0) {
		rc = arg(doc, "execution", true, &which, code, msg, msglen);
		if (rc)
			return rc;
		snprintf(path, sizeof(path), "/api/executions/%s", which);
		return admin(rt, "GET", path, NULL, result, code, msg, msglen);
	}
	if (strcmp(op, "dead-letter") == 0 || strcmp(op, "replay") == 0) {
		rc = arg(doc, "eventId", true, &which, code, msg, msglen);
		if (rc)
			return rc;
		bool replay = op[0] == 'r';
		snprintf(path, sizeof(path), "/api/dead/%s%s", which, replay ? "/replay" : "");
		return admin(rt, replay ? "POST" : "GET", path, NULL, result, code, msg, msglen);
	}
	if (strcmp(op, "history") == 0) {
		cJSON *h = op_runtime_history(rt);
		*result = cJSON_CreateObject();
		if (h == NULL || *result == NULL ||
		    !cJSON_AddItemToObject(*result, "documents", h)) {
			cJSON_Delete(h);
			cJSON_Delete(*result);
			*result = NULL;
			*code = "STORE_ERROR";
			snprintf(msg, msglen, "the history of applied documents cannot be read");
			return OP_EIO;
		}
		return OP_OK;
	}
	if (strcmp(op, "log-level") == 0) {
		const char *name =
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "level"));
		enum op_log_level lvl;
		if (name == NULL || !op_log_level_from_name(name, &lvl))
			return bad(code, msg, msglen, "%s: expected error, warn, info or debug",
			           "level");
		enum op_log_level before = op_log_get_level();
		op_log_set_level(lvl);
		*result = cJSON_CreateObject();
		if (*result == NULL ||
		    !cJSON_AddStringToObject(*result, "level", op_log_level_name(lvl)) ||
		    !cJSON_AddStringToObject(*result, "was", op_log_level_name(before))) {
			cJSON_Delete(*result);
			*result = NULL;
		}
		return OP_OK;
	}
	snprintf(msg, msglen,
	         "op \"%.64s\": expected invoke, pipelines, executions, execution, dead, "
	         "dead-letter, replay, history or log-level",
	         op);
	return OP_EUNSUPPORTED;
}
