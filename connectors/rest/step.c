/*
 * The rest step: one HTTP request built from the message (method, URL,
 * query, headers and body may all hold expressions), its answer as the new
 * message: {status, headers, body}. It goes through the shared HTTP client
 * (connectors/httpc), one per step, whose pooled handles keep connections
 * open between executions.
 *
 * Credentials come from accounts the host lends (op_host.account_get),
 * opened for the one request and wiped right after; a pipeline only names
 * them. A status outside 2xx fails the step with the house mapping (408,
 * 429, 5xx retryable; other 4xx not), unless errorOnStatus is false, when
 * the answer is the message whatever its status.
 */
#define OP_LOG_MODULE "rest"
#include "connectors/rest/step.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "agent/account/account.h"
#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/core/utf8.h"
#include "agent/engine/engine.h"
#include "connectors/httpc/httpc.h"

#define BODY_MAX    (64u << 20) /* request bodies */
#define URL_MAX     (64u << 10)
#define HEADERS_MAX 100
#define EXCERPT     300 /* bytes of an error answer quoted in the step's error */

static const char *const methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                      "PATCH", "DELETE", "OPTIONS", NULL};
static const char *const body_types[] = {"json", "form", "raw", NULL};
enum { BODY_JSON, BODY_FORM, BODY_RAW };
static const char *const response_types[] = {"auto", "json", "text", "base64", NULL};
enum { RESP_AUTO, RESP_JSON, RESP_TEXT, RESP_BASE64 };

struct rest_cfg {
	struct op_expr *url;
	struct op_expr *method;
	struct op_tmpl *query;
	struct op_tmpl *headers;
	struct op_tmpl *body;
	int body_type;
	char *account;
	char *certificate_account;
	char *ca_file;
	bool tls_verify;
	bool follow_redirects;
	bool error_on_status;
	int response_type;
	long long timeout_ms;
	long long connect_timeout_ms;
	long long max_response_bytes;
};

static const struct op_conf_field rest_fields[] = {
    {.name = "url",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct rest_cfg, url),
     .required = true,
     .help = "absolute http:// or https:// URL; its query is kept and `query` is added"},
    {.name = "method",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct rest_cfg, method),
     .def = "\"GET\"",
     .help = "GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS"},
    {.name = "query",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct rest_cfg, query),
     .help = "object of query parameters, percent-encoded and added to the URL; an array "
             "repeats its key, null leaves the key out"},
    {.name = "headers",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct rest_cfg, headers),
     .help = "object of request headers (strings, numbers or booleans; null leaves the "
             "header out)"},
    {.name = "body",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct rest_cfg, body),
     .help = "the request body, sent as bodyType says; none when absent"},
    {.name = "bodyType",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct rest_cfg, body_type),
     .def = "\"json\"",
     .choices = body_types,
     .help = "json: the body as JSON; form: an object as application/x-www-form-urlencoded; "
             "raw: a string as it is (Content-Type text/plain unless headers say)"},
    {.name = "account",
     .type = OP_CONF_STRING,
     .off = offsetof(struct rest_cfg, account),
     .help = "account to authenticate with: basic (HTTP Basic), bearer, oauth2 (client "
             "credentials, tokens cached) or certificate (TLS client certificate)"},
    {.name = "certificateAccount",
     .type = OP_CONF_STRING,
     .off = offsetof(struct rest_cfg, certificate_account),
     .help = "certificate account for a TLS client certificate alongside `account`"},
    {.name = "caFile",
     .type = OP_CONF_STRING,
     .off = offsetof(struct rest_cfg, ca_file),
     .help = "PEM file of the CAs to verify the server with, instead of the system's"},
    {.name = "tlsVerify",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct rest_cfg, tls_verify),
     .def = "true",
     .help = "verify the server's certificate and name; false is for tests only"},
    {.name = "followRedirects",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct rest_cfg, follow_redirects),
     .def = "false",
     .help = "follow up to 10 redirects (http and https only); false: a 3xx fails the step "
             "(or is the answer, with errorOnStatus false)"},
    {.name = "errorOnStatus",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct rest_cfg, error_on_status),
     .def = "true",
     .help = "fail on a status outside 2xx (408, 429 and 5xx retryable); false: any "
             "status is the answer"},
    {.name = "responseType",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct rest_cfg, response_type),
     .def = "\"auto\"",
     .choices = response_types,
     .help = "auto: JSON when the Content-Type says so, else text, else base64; json, "
             "text, base64: always that"},
    {.name = "timeoutMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct rest_cfg, timeout_ms),
     .def = "30000",
     .min = 1,
     .max = 3600000,
     .help = "longest time for the whole exchange, in milliseconds (never past the "
             "execution's deadline)"},
    {.name = "connectTimeoutMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct rest_cfg, connect_timeout_ms),
     .def = "10000",
     .min = 1,
     .max = 3600000,
     .help = "longest time to connect (TLS handshake included), in milliseconds"},
    {.name = "maxResponseBytes",
     .type = OP_CONF_INT,
     .off = offsetof(struct rest_cfg, max_response_bytes),
     .def = "10485760",
     .min = 0,
     .max = 1073741824,
     .help = "largest response body accepted (after decompression); a larger one fails "
             "the step with class limit"},
};
static const struct op_conf_table rest_table = OP_CONF_TABLE("rest", struct rest_cfg, rest_fields);

/* ---- load ---- */

static bool method_ok(const char *m)
{
	for (size_t i = 0; methods[i]; i++) {
		if (strcmp(methods[i], m) == 0)
			return true;
	}
	return false;
}

static bool url_scheme_ok(const char *u)
{
	return strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0;
}

static op_err rest_prepare(struct op_load *ld, struct op_step *st)
{
	const struct rest_cfg *c = st->cfg;
	op_err rc = OP_OK;
	const char *m = c->method ? op_expr_source(c->method) : NULL;
	if (m && !op_expr_has_code(m) && !method_ok(m)) {
		op_load_problem(ld, "method",
		                "\"%.40s\" is not a method (GET, HEAD, POST, PUT, PATCH, DELETE, "
		                "OPTIONS)",
		                m);
		rc = OP_ECONFIG;
	}
	const char *u = c->url ? op_expr_source(c->url) : NULL;
	if (u && !op_expr_has_code(u) && !url_scheme_ok(u)) {
		op_load_problem(ld, "url",
		                "expected an absolute http:// or https:// URL, got "
		                "\"%.80s\"",
		                u);
		rc = OP_ECONFIG;
	}
	if (c->account && !op_account_name_ok(c->account)) {
		op_load_problem(ld, "account", "\"%.80s\" is not an account name", c->account);
		rc = OP_ECONFIG;
	}
	if (c->certificate_account && !op_account_name_ok(c->certificate_account)) {
		op_load_problem(ld, "certificateAccount", "\"%.80s\" is not an account name",
		                c->certificate_account);
		rc = OP_ECONFIG;
	}
	if (c->max_response_bytes < 0) {
		op_load_problem(ld, "maxResponseBytes", "must not be negative");
		rc = OP_ECONFIG;
	}
	if (rc)
		return rc;
	struct op_httpc *h = NULL;
	rc = op_httpc_new(&h);
	if (rc == OP_EINTERNAL) {
		op_load_problem(ld, "", "libcurl could not be initialised");
		return OP_ECONFIG;
	}
	if (rc)
		return rc;
	if (!c->tls_verify)
		OP_LOGW("%s: tlsVerify is false: the server's certificate is not checked",
		        st->path);
	st->priv = h;
	return OP_OK;
}

static void rest_release(struct op_step *st)
{
	op_httpc_free(st->priv);
	st->priv = NULL;
}

/* ---- the request ---- */

struct request {
	struct op_buf url, body;
	cJSON *query, *headers, *body_json;
	struct op_httpc_header *hv;
	size_t hn;
	char *method;
	bool has_body;
	struct op_account *auth, *cert;
};

static void request_fini(struct request *q)
{
	op_buf_fini(&q->url);
	op_buf_fini(&q->body);
	cJSON_Delete(q->query);
	cJSON_Delete(q->headers);
	cJSON_Delete(q->body_json);
	op_free(q->hv);
	op_free(q->method);
	op_account_free(q->auth);
	op_account_free(q->cert);
}

/* The text of a scalar for a query, form or header value; NULL for others. */
static op_err scalar_text(const cJSON *v, struct op_buf *b)
{
	if (cJSON_IsString(v))
		return op_buf_adds(b, v->valuestring);
	if (cJSON_IsBool(v))
		return op_buf_adds(b, cJSON_IsTrue(v) ? "true" : "false");
	if (cJSON_IsNumber(v))
		return op_json_append(b, v, OP_JSON_COMPACT);
	return OP_EINVAL;
}

/* Appends the members of obj as key=value pairs (escaped) to b, which ends
 * with sep's predecessor; what names the config key in errors. */
static op_err add_pairs(struct op_exec *x, const cJSON *obj, const char *what, struct op_buf *b,
                        bool first)
{
	if (!cJSON_IsObject(obj))
		return op_exec_fail(x, OP_EINVAL, "REST_REQUEST",
		                    "config.%s: expected an object, got %s", what,
		                    op_json_kind(obj));
	struct op_buf val;
	op_buf_init(&val, BODY_MAX);
	op_err rc = OP_OK;
	for (const cJSON *m = obj->child; m && rc == OP_OK; m = m->next) {
		const cJSON *one = m, *next_in_array = NULL;
		if (cJSON_IsArray(m))
			one = m->child;
		for (; one && rc == OP_OK; one = next_in_array) {
			next_in_array = cJSON_IsArray(m) ? one->next : NULL;
			if (cJSON_IsNull(one))
				continue;
			op_buf_reset(&val);
			rc = scalar_text(one, &val);
			if (rc == OP_EINVAL) {
				rc = op_exec_fail(
				    x, OP_EINVAL, "REST_REQUEST",
				    "config.%s.%.80s: expected a string, number, boolean, "
				    "null or an array of them, got %s",
				    what, m->string, op_json_kind(one));
				break;
			}
			if (rc == OP_OK && !first)
				rc = op_buf_addc(b, '&');
			first = false;
			if (rc == OP_OK)
				rc = op_httpc_escape(b, m->string, strlen(m->string));
			if (rc == OP_OK)
				rc = op_buf_addc(b, '=');
			if (rc == OP_OK)
				rc = op_httpc_escape(b, val.data ? val.data : "", val.len);
		}
	}
	op_buf_fini(&val);
	if (rc == OP_ELIMIT)
		return op_exec_fail(x, rc, "REST_REQUEST", "config.%s: too large", what);
	if (rc == OP_ENOMEM)
		return op_exec_fail(x, rc, "NOMEM", "out of memory");
	return rc;
}

static bool has_header(const struct request *q, const char *name)
{
	for (size_t i = 0; i < q->hn; i++) {
		if (strcasecmp(q->hv[i].name, name) == 0)
			return true;
	}
	return false;
}

/* The rendered headers object as name/value pairs pointing into it. */
static op_err build_headers(struct op_exec *x, struct request *q)
{
	if (q->headers == NULL)
		return OP_OK;
	if (!cJSON_IsObject(q->headers))
		return op_exec_fail(x, OP_EINVAL, "REST_REQUEST",
		                    "config.headers: expected an object, got %s",
		                    op_json_kind(q->headers));
	size_t n = (size_t)cJSON_GetArraySize(q->headers);
	if (n > HEADERS_MAX)
		return op_exec_fail(x, OP_EINVAL, "REST_REQUEST",
		                    "config.headers: %zu headers, at most %d", n, HEADERS_MAX);
	/* +2: Content-Type and Accept may be added. */
	q->hv = op_calloc(n + 2, sizeof(*q->hv));
	if (q->hv == NULL)
		return op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
	for (cJSON *m = q->headers->child; m; m = m->next) {
		if (cJSON_IsNull(m))
			continue;
		if (!cJSON_IsString(m)) {
			struct op_buf t;
			op_buf_init(&t, 4096);
			op_err rc = scalar_text(m, &t);
			if (rc == OP_EINVAL) {
				op_buf_fini(&t);
				return op_exec_fail(
				    x, rc, "REST_REQUEST",
				    "config.headers.%.80s: expected a string, number or "
				    "boolean, got %s",
				    m->string, op_json_kind(m));
			}
			cJSON *s = rc == OP_OK ? cJSON_CreateString(op_buf_str(&t)) : NULL;
			op_buf_fini(&t);
			if (s == NULL)
				return op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
			/* The name moves with the value (replacing keeps no name). */
			s->string = m->string;
			m->string = NULL;
			cJSON_ReplaceItemViaPointer(q->headers, m, s);
			m = s;
		}
		q->hv[q->hn].name = m->string;
		q->hv[q->hn].value = m->valuestring;
		q->hn++;
	}
	return OP_OK;
}

static op_err build_body(struct op_exec *x, const struct rest_cfg *c, struct request *q)
{
	if (c->body == NULL)
		return OP_OK;
	q->has_body = true;
	op_err rc = OP_OK;
	const char *type = NULL;
	switch (c->body_type) {
	case BODY_FORM:
		rc = add_pairs(x, q->body_json, "body", &q->body, true);
		if (rc)
			return rc;
		type = "application/x-www-form-urlencoded";
		break;
	case BODY_RAW:
		if (!cJSON_IsString(q->body_json))
			return op_exec_fail(x, OP_EINVAL, "REST_REQUEST",
			                    "config.body: bodyType raw takes a string, got %s",
			                    op_json_kind(q->body_json));
		rc = op_buf_adds(&q->body, q->body_json->valuestring);
		type = "text/plain; charset=utf-8";
		break;
	default:
		rc = op_json_append(&q->body, q->body_json, OP_JSON_COMPACT);
		type = "application/json";
		break;
	}
	if (rc == OP_ELIMIT)
		return op_exec_fail(x, rc, "REST_REQUEST",
		                    "config.body: larger than %u bytes, or nested too deep",
		                    BODY_MAX);
	if (rc)
		return op_exec_fail(x, rc, "NOMEM", "out of memory");
	if (!has_header(q, "content-type")) {
		q->hv[q->hn].name = "Content-Type";
		q->hv[q->hn].value = type;
		q->hn++;
	}
	return OP_OK;
}

static op_err accounts_open(struct op_exec *x, const struct rest_cfg *c, struct request *q)
{
	if (c->account) {
		op_err rc =
		    op_exec_account(x, "account", c->account,
		                    1u << OP_ACCOUNT_BASIC | 1u << OP_ACCOUNT_BEARER |
		                        1u << OP_ACCOUNT_OAUTH2 | 1u << OP_ACCOUNT_CERTIFICATE,
		                    "rest takes basic, bearer, oauth2 or certificate", &q->auth);
		if (rc)
			return rc;
		if (q->auth->type == OP_ACCOUNT_CERTIFICATE) {
			q->cert = q->auth;
			q->auth = NULL;
		} else if (has_header(q, "authorization")) {
			return op_exec_fail(
			    x, OP_ECONFIG, "REST_REQUEST",
			    "config.headers: an Authorization header and account '%s' "
			    "both authenticate; keep one",
			    c->account);
		}
	}
	if (c->certificate_account) {
		if (q->cert)
			return op_exec_fail(x, OP_ECONFIG, "ACCOUNT",
			                    "config.certificateAccount: account '%s' is already a "
			                    "certificate",
			                    c->account);
		op_err rc = op_exec_account(x, "certificateAccount", c->certificate_account,
		                            1u << OP_ACCOUNT_CERTIFICATE,
		                            "certificateAccount takes a certificate", &q->cert);
		if (rc)
			return rc;
	}
	return OP_OK;
}

static op_err build(struct op_exec *x, const struct rest_cfg *c, const cJSON *msg,
                    struct request *q)
{
	struct op_val url = {0}, method = {0};
	op_err rc = op_exec_eval(x, c->url, "url", msg, &url);
	if (rc == OP_OK && c->method)
		rc = op_exec_eval(x, c->method, "method", msg, &method);
	if (rc)
		goto out;
	if (!cJSON_IsString(url.v) || !url_scheme_ok(url.v->valuestring)) {
		rc =
		    op_exec_fail(x, OP_EINVAL, "REST_REQUEST",
		                 "config.url: expected an absolute http:// or https:// URL, got %s",
		                 cJSON_IsString(url.v) ? "another scheme" : op_json_kind(url.v));
		goto out;
	}
	const char *m = method.v ? cJSON_GetStringValue(method.v) : "GET";
	if (m == NULL || !method_ok(m)) {
		rc = op_exec_fail(x, OP_EINVAL, "REST_REQUEST",
		                  "config.method: expected GET, HEAD, POST, PUT, PATCH, DELETE or "
		                  "OPTIONS, got %s%.40s%s",
		                  m ? "\"" : "", m ? m : op_json_kind(method.v), m ? "\"" : "");
		goto out;
	}
	q->method = op_strdup(m);
	const char *u = url.v->valuestring;
	size_t ulen = strcspn(u, "#"); /* a fragment is not sent */
	rc = q->method ? op_buf_add(&q->url, u, ulen) : OP_ENOMEM;
	if (rc == OP_OK && c->query)
		rc = op_exec_render(x, c->query, "query", msg, &q->query);
	if (rc == OP_OK && q->query) {
		bool fresh = memchr(u, '?', ulen) == NULL;
		size_t before = q->url.len;
		rc = fresh ? op_buf_addc(&q->url, '?') : OP_OK;
		if (rc == OP_OK)
			rc = add_pairs(
			    x, q->query, "query", &q->url,
			    fresh || (ulen > 0 && (u[ulen - 1] == '?' || u[ulen - 1] == '&')));
		if (rc == OP_OK && q->url.len == before + (fresh ? 1u : 0u))
			q->url.len = before; /* nothing added: no lone '?' */
		if (q->url.data)
			q->url.data[q->url.len] = '\0';
	}
	if (rc == OP_OK && c->headers)
		rc = op_exec_render(x, c->headers, "headers", msg, &q->headers);
	if (rc == OP_OK && q->headers == NULL) {
		q->hv = op_calloc(2, sizeof(*q->hv));
		if (q->hv == NULL)
			rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
	}
	if (rc == OP_OK)
		rc = build_headers(x, q);
	if (rc == OP_OK && c->body)
		rc = op_exec_render(x, c->body, "body", msg, &q->body_json);
	if (rc == OP_OK)
		rc = build_body(x, c, q);
	if (rc == OP_OK)
		rc = accounts_open(x, c, q);
	if (rc == OP_ELIMIT)
		rc = op_exec_fail(x, rc, "REST_REQUEST", "config.url: longer than %u bytes",
		                  URL_MAX);
	else if (rc == OP_ENOMEM)
		rc = op_exec_fail(x, rc, "NOMEM", "out of memory");
out:
	op_val_drop(&url);
	op_val_drop(&method);
	return rc;
}

/* ---- the answer ---- */

static const char *content_type(const cJSON *headers)
{
	const char *ct =
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(headers, "content-type"));
	return ct ? ct : "";
}

/* The body as JSON per responseType; *encoding "base64" when it is that. */
static op_err body_value(struct op_exec *x, const struct rest_cfg *c, const char *what,
                         const struct op_httpc_resp *r, cJSON **out, bool *b64)
{
	*out = NULL;
	*b64 = false;
	const struct op_buf *b = &r->body;
	if (b->len == 0)
		return (*out = cJSON_CreateNull()) ? OP_OK : OP_ENOMEM;
	int t = c->response_type;
	const char *ct = content_type(r->headers);
	bool utf8 = op_utf8_valid(b->data, b->len) && memchr(b->data, '\0', b->len) == NULL;
	if (t == RESP_JSON || (t == RESP_AUTO && op_json_media_type(ct))) {
		char err[256];
		op_err rc = op_json_parse(b->data, b->len, out, err, sizeof(err));
		if (rc == OP_EPARSE)
			return op_exec_fail(x, rc, "HTTP_BAD_RESPONSE",
			                    "%s answered %ld with a body that is not JSON (%s): %s",
			                    what, r->status, ct[0] ? ct : "no Content-Type", err);
		return rc;
	}
	if (t == RESP_TEXT && !utf8)
		return op_exec_fail(x, OP_EPARSE, "HTTP_BAD_RESPONSE",
		                    "%s answered %ld with a body that is not UTF-8 text; "
		                    "responseType base64 takes any bytes",
		                    what, r->status);
	if (t == RESP_BASE64 || !utf8) {
		*b64 = true;
		*out = op_json_base64(b->data, b->len);
	} else {
		*out = cJSON_CreateString(b->data);
	}
	return *out ? OP_OK : OP_ENOMEM;
}

/* The start of an error answer, printable, for the step's error text. */
static void excerpt(const struct op_buf *b, char *out, size_t cap)
{
	size_t k = 0;
	for (size_t i = 0; i < b->len && k + 1 < cap && i < EXCERPT; i++) {
		unsigned char ch = (unsigned char)b->data[i];
		out[k++] = ch >= 0x20 && ch != 0x7f ? (char)ch : ' ';
	}
	out[k] = '\0';
}

static bool cancelled(void *ud)
{
	return op_exec_cancelled(ud);
}

static op_err rest_view(struct op_exec *x, const struct op_step *st, const cJSON *msg, cJSON **out)
{
	const struct rest_cfg *c = st->cfg;
	*out = NULL;
	struct request q = {0};
	struct op_httpc_resp r = {0};
	cJSON *res = NULL;
	op_buf_init(&q.url, URL_MAX);
	op_buf_init(&q.body, BODY_MAX);
	op_err rc = build(x, c, msg, &q);
	if (rc)
		goto out;
	long long timeout = op_exec_timeout_ms(x, c->timeout_ms);
	struct op_httpc_req req = {
	    .method = q.method,
	    .url = op_buf_str(&q.url),
	    .headers = q.hv,
	    .n_headers = q.hn,
	    .body = q.has_body ? (q.body.data ? q.body.data : "") : NULL,
	    .body_len = q.body.len,
	    .auth = q.auth,
	    .cert = q.cert,
	    .ca_file = c->ca_file,
	    .insecure = !c->tls_verify,
	    .follow_redirects = c->follow_redirects,
	    .timeout_ms = timeout,
	    .connect_timeout_ms = c->connect_timeout_ms,
	    .max_body = (size_t)c->max_response_bytes,
	    .cancelled = cancelled,
	    .cancel_ud = x,
	};
	char why[1024] = "";
	rc = op_httpc_perform(st->priv, &req, &r, why, sizeof(why));
	/* Secrets live no longer than the exchange. */
	op_account_free(q.auth);
	op_account_free(q.cert);
	q.auth = q.cert = NULL;
	if (rc) {
		rc = op_exec_fail(x, rc, op_httpc_error_code(rc), "%s", why);
		goto out;
	}
	char what[600];
	char where[512];
	op_httpc_url_for_humans(req.url, where, sizeof(where));
	snprintf(what, sizeof(what), "%s %s", q.method, where);
	OP_LOGD("%s exec=%s: %s answered %ld in %lld ms (%zu bytes)", st->name, op_exec_id(x), what,
	        r.status, r.elapsed_ms, r.body.len);
	op_err sc = op_httpc_status_class(r.status);
	if (sc && c->error_on_status) {
		char ex[EXCERPT + 1];
		excerpt(&r.body, ex, sizeof(ex));
		rc = op_exec_fail(x, sc, "HTTP_STATUS", "%s answered %ld%s%s", what, r.status,
		                  ex[0] ? ": " : "", ex);
		goto out;
	}
	cJSON *body = NULL;
	bool b64 = false;
	rc = body_value(x, c, what, &r, &body, &b64);
	if (rc == OP_ENOMEM)
		rc = op_exec_fail(x, rc, "NOMEM", "out of memory");
	if (rc)
		goto out;
	res = cJSON_CreateObject();
	if (res == NULL || !cJSON_AddNumberToObject(res, "status", (double)r.status) ||
	    !cJSON_AddItemToObject(res, "headers", r.headers)) {
		cJSON_Delete(body);
		rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	r.headers = NULL;
	if (!cJSON_AddItemToObject(res, "body", body)) {
		cJSON_Delete(body);
		rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	if (b64 && !cJSON_AddStringToObject(res, "bodyEncoding", "base64")) {
		rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	*out = res;
	res = NULL;
out:
	cJSON_Delete(res);
	op_httpc_resp_fini(&r);
	request_fini(&q);
	return rc;
}

static op_err rest_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	op_err rc = rest_view(x, st, msg, out);
	cJSON_Delete(msg);
	return rc;
}

const struct op_step_type op_step_rest = {
    .name = "rest",
    .summary = "call an HTTP API; its answer {status, headers, body} is the new message",
    .conf = &rest_table,
    .prepare = rest_prepare,
    .run = rest_run,
    .view = rest_view,
    .release = rest_release,
    .waits = true,
};
