/*
 * Request -> message and result -> answer for HTTP triggers, and the
 * per-trigger rate limiter. The shapes are documented in docs/triggers.md.
 * Invariant: the credential headers never reach a message, and every answer
 * built here is complete (status, body, content type) or nothing at all.
 */
#include "agent/trigger/http_map.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/http/route.h"

/* --- request -> message ---------------------------------------------------- */

static const char *const secret_headers[] = {"authorization", "proxy-authorization", "cookie",
                                             "x-api-key", NULL};

static bool is_secret_header(const struct op_http_trigger *t, const char *name)
{
	for (size_t i = 0; secret_headers[i]; i++) {
		if (strcasecmp(name, secret_headers[i]) == 0)
			return true;
	}
	return t && t->secret_header && strcasecmp(name, t->secret_header) == 0;
}

/* True when s (n bytes) is UTF-8 without NUL. */
static bool utf8_text(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t len = c == 0      ? 0
		             : c < 0x80  ? 1
		             : c >= 0xf5 ? 0
		             : c >= 0xf0 ? 4
		             : c >= 0xe0 ? 3
		             : c >= 0xc2 ? 2
		                         : 0;
		if (len == 0 || len > n - i)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
		}
		if (len > 2 && ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f) ||
		                (c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] > 0x8f)))
			return false;
		i += len;
	}
	return true;
}

/* A new cJSON string of s (n bytes) in standard base64 with padding. */
static cJSON *base64_string(const unsigned char *s, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = op_malloc((n + 2) / 3 * 4 + 1);
	if (out == NULL)
		return NULL;
	size_t o = 0, i = 0;
	for (; i + 2 < n; i += 3) {
		unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
		out[o++] = tab[v & 63];
	}
	if (i < n) {
		unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0);
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	cJSON *j = cJSON_CreateString(out);
	op_free(out);
	return j;
}

/* An object copy of src (borrowed; NULL gives {}), leaving out secret headers
 * when headers is set. */
static cJSON *copy_object(const cJSON *src, const struct op_http_trigger *t, bool headers)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL || !cJSON_IsObject(src))
		return o;
	const cJSON *it;
	cJSON_ArrayForEach (it, src) {
		if (headers && is_secret_header(t, it->string))
			continue;
		cJSON *c = cJSON_Duplicate(it, 1);
		if (c == NULL || !cJSON_AddItemToObject(o, it->string, c)) {
			cJSON_Delete(c);
			cJSON_Delete(o);
			return NULL;
		}
	}
	return o;
}

static bool add(cJSON *o, const char *key, cJSON *v)
{
	if (v != NULL && cJSON_AddItemToObject(o, key, v))
		return true;
	cJSON_Delete(v);
	return false;
}

op_err op_http_trigger_message(const struct op_http_trigger *t, const struct op_http_request *req,
                               const cJSON *params, cJSON **msg, struct op_http_response *err_resp)
{
	*msg = NULL;
	op_err rc = OP_ENOMEM;
	cJSON *body = NULL;
	cJSON *m = cJSON_CreateObject();
	char err[256];
	if (m == NULL)
		goto out;
	if (!add(m, "method", cJSON_CreateString(req->method)) ||
	    !add(m, "path", cJSON_CreateString(req->path)) ||
	    !add(m, "params", copy_object(params, t, false)) ||
	    !add(m, "query", copy_object(req->query, t, false)) ||
	    !add(m, "headers", copy_object(req->headers, t, true)))
		goto out;
	const char *ct = req->content_type ? req->content_type : "";
	bool b64 = false;
	if (req->body_len == 0) {
		body = cJSON_CreateNull();
	} else if (ct[0] == '\0' || op_json_media_type(ct)) {
		op_err e = op_http_json_body(req, &body, err, sizeof(err));
		if (e == OP_EPARSE || e == OP_EUNSUPPORTED) {
			if (op_http_respond_error(err_resp, op_http_status_for(e), "INVALID_BODY",
			                          err) != OP_OK)
				goto out;
			rc = e;
			goto out;
		}
		if (e != OP_OK)
			goto out;
	} else if (utf8_text((const unsigned char *)req->body, req->body_len)) {
		/* No NUL inside, and the server NUL-terminates the body. */
		body = cJSON_CreateString(req->body);
	} else {
		body = base64_string((const unsigned char *)req->body, req->body_len);
		b64 = true;
	}
	if (!add(m, "body", body)) {
		body = NULL;
		goto out;
	}
	body = NULL;
	if (b64 && !add(m, "bodyEncoding", cJSON_CreateString("base64")))
		goto out;
	*msg = m;
	m = NULL;
	rc = OP_OK;
out:
	cJSON_Delete(body);
	cJSON_Delete(m);
	return rc;
}

cJSON *op_http_trigger_data(const struct op_http_trigger *t, const struct op_http_request *req,
                            const cJSON *claims)
{
	cJSON *d = cJSON_CreateObject();
	if (d == NULL)
		return NULL;
	const char *tmpl = t && t->route ? op_http_route_template(t->route) : NULL;
	if (!add(d, "type", cJSON_CreateString("http")) ||
	    !add(d, "method", cJSON_CreateString(req->method)) ||
	    !add(d, "path", cJSON_CreateString(req->path)) ||
	    !add(d, "route", tmpl ? cJSON_CreateString(tmpl) : cJSON_CreateNull()) ||
	    !add(d, "remote", cJSON_CreateString(req->remote_addr ? req->remote_addr : "")) ||
	    !add(d, "auth", claims ? cJSON_Duplicate(claims, 1) : cJSON_CreateNull())) {
		cJSON_Delete(d);
		return NULL;
	}
	return d;
}

/* --- result -> answer ------------------------------------------------------ */

static const char *const reserved_headers[] = {
    "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "trailer", NULL};

bool op_http_header_reserved(const char *name)
{
	for (size_t i = 0; reserved_headers[i]; i++) {
		if (strcasecmp(name, reserved_headers[i]) == 0)
			return true;
	}
	return false;
}

static bool header_name_ok(const char *s)
{
	if (s[0] == '\0')
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool alnum =
		    (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		if (!alnum && strchr("!#$%&'*+-.^_`|~", c) == NULL)
			return false;
	}
	return true;
}

/* Checks the "$http" object; on a problem writes it to why and returns false. */
static bool check_http(const cJSON *hx, char *why, size_t whylen)
{
	if (!cJSON_IsObject(hx)) {
		snprintf(why, whylen, "\"$http\" must be an object {status, headers, body}");
		return false;
	}
	const cJSON *it;
	cJSON_ArrayForEach (it, hx) {
		if (strcmp(it->string, "status") != 0 && strcmp(it->string, "headers") != 0 &&
		    strcmp(it->string, "body") != 0) {
			snprintf(why, whylen, "\"$http\" has an unknown key \"%.64s\"", it->string);
			return false;
		}
	}
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(hx, "status");
	if (st && (!cJSON_IsNumber(st) || st->valuedouble != (double)(int)st->valuedouble ||
	           st->valuedouble < 200 || st->valuedouble > 599)) {
		snprintf(why, whylen, "\"$http\".status must be an integer from 200 to 599");
		return false;
	}
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(hx, "headers");
	if (h == NULL)
		return true;
	if (!cJSON_IsObject(h)) {
		snprintf(why, whylen, "\"$http\".headers must be an object of name -> string");
		return false;
	}
	cJSON_ArrayForEach (it, h) {
		if (!header_name_ok(it->string) || op_http_header_reserved(it->string)) {
			snprintf(why, whylen, "\"$http\".headers: \"%.64s\" cannot be set",
			         it->string);
			return false;
		}
		if (!cJSON_IsString(it) || strpbrk(it->valuestring, "\r\n") != NULL) {
			snprintf(why, whylen,
			         "\"$http\".headers.%.64s must be a string without CR/LF",
			         it->string);
			return false;
		}
		if (strcasecmp(it->string, "content-type") == 0 && strlen(it->valuestring) >= 128) {
			snprintf(why, whylen, "\"$http\".headers.content-type is too long");
			return false;
		}
	}
	return true;
}

static bool has_header(const cJSON *h, const char *name)
{
	const cJSON *it;
	cJSON_ArrayForEach (it, h) {
		if (strcasecmp(it->string, name) == 0)
			return true;
	}
	return false;
}

/* Adds the headers of h (object name -> string) to resp, except those named in
 * skip; Content-Type goes to resp->content_type. */
static op_err add_headers(struct op_http_response *resp, const cJSON *h, const cJSON *skip)
{
	const cJSON *it;
	cJSON_ArrayForEach (it, h) {
		if (!cJSON_IsString(it) || (skip && has_header(skip, it->string)))
			continue;
		if (strcasecmp(it->string, "content-type") == 0) {
			snprintf(resp->content_type, sizeof(resp->content_type), "%s",
			         it->valuestring);
			continue;
		}
		op_err e = op_http_response_header(resp, it->string, it->valuestring);
		if (e)
			return e;
	}
	return OP_OK;
}

op_err op_http_trigger_respond(const struct op_http_trigger *t, const cJSON *result,
                               struct op_http_response *resp)
{
	int status = t ? t->status : 200;
	const cJSON *defaults = t ? t->headers : NULL;
	const cJSON *hx = cJSON_IsObject(result)
	                      ? cJSON_GetObjectItemCaseSensitive(result, OP_HTTP_RESULT_KEY)
	                      : NULL;
	const cJSON *body = result, *hdrs = NULL;
	cJSON *rest = NULL;
	op_err rc = OP_ENOMEM;
	char why[160];

	if (hx) {
		if (!check_http(hx, why, sizeof(why))) {
			op_http_response_fini(resp);
			rc = op_http_respond_error(resp, 500, "INVALID_HTTP_RESPONSE", why);
			return rc == OP_OK ? OP_EINVAL : rc;
		}
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(hx, "status");
		if (st)
			status = st->valueint;
		hdrs = cJSON_GetObjectItemCaseSensitive(hx, "headers");
		body = cJSON_GetObjectItemCaseSensitive(hx, "body");
		if (body == NULL) {
			/* No body given: the result's other keys are the body. */
			if ((rest = cJSON_Duplicate(result, 1)) == NULL)
				goto out;
			cJSON_DeleteItemFromObjectCaseSensitive(rest, OP_HTTP_RESULT_KEY);
			body = rest;
		}
	}
	if (status == 204 || status == 304) {
		resp->status = status;
	} else if (cJSON_IsString(body) &&
	           (has_header(hdrs, "content-type") || has_header(defaults, "content-type"))) {
		/* A string with a Content-Type given is sent as it is (text, XML, ...). */
		char *text = op_strdup(body->valuestring);
		if (text == NULL)
			goto out;
		op_free(resp->body);
		resp->body = text;
		resp->body_len = strlen(text);
		resp->status = status;
	} else if (op_http_respond_json(resp, status, body ? body : result) != OP_OK) {
		goto out;
	}
	if (add_headers(resp, defaults, hdrs) != OP_OK || add_headers(resp, hdrs, NULL) != OP_OK)
		goto out;
	if (resp->body_len > 0 && resp->content_type[0] == '\0')
		snprintf(resp->content_type, sizeof(resp->content_type), "application/json");
	rc = OP_OK;
out:
	cJSON_Delete(rest);
	if (rc != OP_OK)
		op_http_response_fini(resp);
	return rc;
}

op_err op_http_trigger_respond_fail(const struct op_fail *f, struct op_http_response *resp)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON *e = doc ? cJSON_AddObjectToObject(doc, "error") : NULL;
	op_err rc = OP_ENOMEM;
	if (e == NULL || !add(e, "code", cJSON_CreateString(f->code)) ||
	    !add(e, "message", cJSON_CreateString(f->msg)) ||
	    !add(e, "step", cJSON_CreateString(f->step)))
		goto out;
	rc = op_http_respond_json(resp, op_http_status_for(f->cls), doc);
out:
	cJSON_Delete(doc);
	if (rc != OP_OK)
		op_http_response_fini(resp);
	return rc;
}

op_err op_http_trigger_respond_accepted(const char *event_id, struct op_http_response *resp)
{
	cJSON *doc = cJSON_CreateObject();
	op_err rc = OP_ENOMEM;
	if (doc && add(doc, "eventId", cJSON_CreateString(event_id)))
		rc = op_http_respond_json(resp, 202, doc);
	cJSON_Delete(doc);
	return rc;
}

op_err op_http_respond_rate_limited(uint64_t retry_after_ms, struct op_http_response *resp)
{
	char secs[24];
	uint64_t s = (retry_after_ms + 999) / 1000;
	snprintf(secs, sizeof(secs), "%llu", (unsigned long long)(s ? s : 1));
	op_err rc = op_http_respond_error(resp, 429, "RATE_LIMITED",
	                                  "too many requests for this trigger; retry later");
	if (rc == OP_OK)
		rc = op_http_response_header(resp, "Retry-After", secs);
	if (rc != OP_OK)
		op_http_response_fini(resp);
	return rc;
}

/* --- rate limiter ---------------------------------------------------------- */

/*
 * GCRA, the token bucket as one number: tat is the time at which the bucket
 * would be full again. A request is allowed when, after adding its cost,
 * tat is at most burst intervals ahead of now. Nanoseconds keep fractional
 * rates exact enough (1e6/s is 1000 ns).
 */
struct op_rate {
	_Atomic uint64_t tat_ns;
	uint64_t interval_ns;
	uint64_t tau_ns; /* burst * interval */
};

op_err op_rate_new(double per_second, long long burst, struct op_rate **out)
{
	*out = NULL;
	if (!(per_second > 0) || per_second > 1e9 || burst < 1 || burst > 1000000000)
		return OP_EINVAL;
	struct op_rate *r = op_calloc(1, sizeof(*r));
	if (r == NULL)
		return OP_ENOMEM;
	r->interval_ns = (uint64_t)(1e9 / per_second + 0.5);
	if (r->interval_ns == 0)
		r->interval_ns = 1;
	r->tau_ns = (uint64_t)burst * r->interval_ns;
	atomic_init(&r->tat_ns, 0);
	*out = r;
	return OP_OK;
}

void op_rate_free(struct op_rate *r)
{
	op_free(r);
}

bool op_rate_take(struct op_rate *r, uint64_t now_ms, uint64_t *retry_after_ms)
{
	uint64_t now = now_ms * 1000000u;
	uint64_t old = atomic_load_explicit(&r->tat_ns, memory_order_relaxed);
	for (;;) {
		uint64_t next = (old > now ? old : now) + r->interval_ns;
		if (next - now > r->tau_ns) {
			if (retry_after_ms) {
				uint64_t wait = next - now - r->tau_ns;
				*retry_after_ms = (wait + 999999) / 1000000;
			}
			return false;
		}
		if (atomic_compare_exchange_weak_explicit(
		        &r->tat_ns, &old, next, memory_order_relaxed, memory_order_relaxed))
			return true;
	}
}
