/*
 * The sap step: SAP S/4HANA (and any SAP Gateway or CAP) OData services, V2
 * and V4, through the shared HTTP client (connectors/httpc).
 *
 * read follows server paging (__next, @odata.nextLink) to the end or to
 * `limit`; create, update (PATCH, MERGE or PUT with If-Match) and delete
 * change one entity; batch sends many operations in one $batch, writes in
 * change sets. Writes carry the X-CSRF-Token that SAP Gateway demands:
 * fetched once per step and account with the session cookies it is bound
 * to, reused, and fetched again once when the server answers 403 with
 * "x-csrf-token: Required" (the token or session expired).
 *
 * Values from the message go into $filter and keys as OData literals,
 * quoted and escaped, never as filter syntax. V2 answers are made plain
 * (no d/results envelope, no __metadata, ISO 8601 dates), so pipelines see
 * the same shape from V2 and V4. SAP error bodies become the step's error:
 * the SAP code and message.
 */
#define OP_LOG_MODULE "sap"
#include "connectors/sap/step.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/account/account.h"
#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/engine/engine.h"
#include "connectors/httpc/httpc.h"
#include "connectors/sap/batch.h"
#include "connectors/sap/odata.h"

#define URL_MAX     (64u << 10)
#define BODY_MAX    (64u << 20)
#define PAGES_MAX   100000
#define COOKIE_MAX  8192 /* bytes of the Cookie header */
#define COOKIES_MAX 50   /* cookies kept per session */

static const char *const versions[] = {"v2", "v4", NULL};
enum { V2, V4 };
static const char *const operations[] = {"read", "create", "update", "delete", "batch", NULL};
enum { OPER_READ, OPER_CREATE, OPER_UPDATE, OPER_DELETE, OPER_BATCH };
static const char *const update_methods[] = {"auto", "PATCH", "MERGE", "PUT", NULL};
enum { UPD_AUTO, UPD_PATCH, UPD_MERGE, UPD_PUT };

struct sap_cfg {
	char *service;
	int version;
	int operation;
	char *entity_set;
	struct op_tmpl *key;
	char *navigation;
	char *filter;
	char *select;
	char *expand;
	char *orderby;
	long long top;
	long long skip;
	bool count;
	long long limit;
	struct op_tmpl *body;
	struct op_expr *if_match;
	int update_method;
	struct op_tmpl *requests;
	bool fail_on_error;
	struct op_tmpl *params;
	char *account;
	char *ca_file;
	bool tls_verify;
	long long timeout_ms;
	long long connect_timeout_ms;
	long long max_response_bytes;
};

static const struct op_conf_field sap_fields[] = {
    {.name = "service",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sap_cfg, service),
     .required = true,
     .help = "the service root URL: https://HOST/sap/opu/odata/sap/API_SALES_ORDER_SRV (V2) "
             "or the V4 service's root"},
    {.name = "version",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct sap_cfg, version),
     .def = "\"v2\"",
     .choices = versions,
     .help = "OData version of the service: v2 or v4"},
    {.name = "operation",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct sap_cfg, operation),
     .def = "\"read\"",
     .choices = operations,
     .help = "read (a collection, or one entity with key), create, update, delete, or "
             "batch (the operations of `requests` in one $batch)"},
    {.name = "entitySet",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sap_cfg, entity_set),
     .help = "the entity set, e.g. A_SalesOrder (all operations but batch)"},
    {.name = "key",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct sap_cfg, key),
     .help = "the entity's key: a value (\"{{ message.id }}\") or an object of key "
             "properties; written as an OData literal. Needed by update and delete"},
    {.name = "navigation",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sap_cfg, navigation),
     .help = "a navigation property after the key (to_Item): read or create through it"},
    {.name = "filter",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sap_cfg, filter),
     .help = "$filter; each {{ }} becomes an OData literal ('text', 42, true, null), or "
             "escaped text inside a quoted literal such as datetime'{{ message.since }}'"},
    {.name = "select",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sap_cfg, select),
     .help = "$select: the properties to return, comma-separated"},
    {.name = "expand",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sap_cfg, expand),
     .help = "$expand: navigation properties to return inline"},
    {.name = "orderby",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sap_cfg, orderby),
     .help = "$orderby, e.g. \"CreationDate desc\""},
    {.name = "top",
     .type = OP_CONF_INT,
     .off = offsetof(struct sap_cfg, top),
     .def = "0",
     .min = 0,
     .max = 1000000000,
     .help = "$top: entities the server returns at most; 0 leaves it out"},
    {.name = "skip",
     .type = OP_CONF_INT,
     .off = offsetof(struct sap_cfg, skip),
     .def = "0",
     .min = 0,
     .max = 1000000000,
     .help = "$skip: entities the server leaves out first"},
    {.name = "count",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct sap_cfg, count),
     .def = "false",
     .help = "ask for the total count ($inlinecount / $count); the answer's `count`"},
    {.name = "limit",
     .type = OP_CONF_INT,
     .off = offsetof(struct sap_cfg, limit),
     .def = "0",
     .min = 0,
     .max = 1000000000,
     .help = "stop following server pages once this many entities are read; 0: read to "
             "the end"},
    {.name = "body",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct sap_cfg, body),
     .help = "create and update: the entity's properties (JSON); the message when absent"},
    {.name = "ifMatch",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct sap_cfg, if_match),
     .help = "update and delete: the ETag for If-Match (from @odata.etag), or \"*\""},
    {.name = "updateMethod",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct sap_cfg, update_method),
     .def = "\"auto\"",
     .choices = update_methods,
     .help = "auto (MERGE for v2, PATCH for v4), PATCH, MERGE or PUT"},
    {.name = "requests",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct sap_cfg, requests),
     .help = "batch: an array of {method, path, body, ifMatch, changeset}; writes with "
             "the same changeset value commit together, a write without one alone"},
    {.name = "failOnError",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct sap_cfg, fail_on_error),
     .def = "true",
     .help = "batch: fail the step when an operation failed; false: report each status"},
    {.name = "params",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct sap_cfg, params),
     .help = "object of further query parameters on every request (sap-client, "
             "sap-language)"},
    {.name = "account",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sap_cfg, account),
     .help = "account to log on with: basic, oauth2 (client credentials), bearer or "
             "certificate"},
    {.name = "caFile",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sap_cfg, ca_file),
     .help = "PEM file of the CAs to verify the server with, instead of the system's"},
    {.name = "tlsVerify",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct sap_cfg, tls_verify),
     .def = "true",
     .help = "verify the server's certificate and name; false is for tests only"},
    {.name = "timeoutMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct sap_cfg, timeout_ms),
     .def = "60000",
     .min = 1,
     .max = 3600000,
     .help = "longest time for each HTTP exchange, in milliseconds (never past the "
             "execution's deadline)"},
    {.name = "connectTimeoutMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct sap_cfg, connect_timeout_ms),
     .def = "10000",
     .min = 1,
     .max = 3600000,
     .help = "longest time to connect (TLS handshake included), in milliseconds"},
    {.name = "maxResponseBytes",
     .type = OP_CONF_INT,
     .off = offsetof(struct sap_cfg, max_response_bytes),
     .def = "67108864",
     .min = 1,
     .max = 1073741824,
     .help = "largest answer accepted, all pages of a read together; more fails the step "
             "with class limit"},
};
static const struct op_conf_table sap_table = OP_CONF_TABLE("sap", struct sap_cfg, sap_fields);

/* The CSRF token and session cookies of one account (SAP binds the token to
 * the session and its user). */
struct session {
	char *account;  /* "" without an account */
	char *token;    /* NULL: not fetched; "": the server wants none */
	cJSON *cookies; /* {name: value} */
	unsigned gen;   /* bumped when the token changes or the session goes */
	struct session *next;
};

struct sap_priv {
	struct op_httpc *http;
	struct op_odata_filter *filter;
	char *root;               /* the service URL without a trailing '/' */
	size_t origin_len;        /* bytes of scheme://authority in root */
	pthread_mutex_t mu;       /* sessions */
	pthread_mutex_t fetch_mu; /* one CSRF token fetch at a time */
	struct session *sessions;
};

/* ---- load ---- */

static void priv_free(struct sap_priv *p)
{
	if (p == NULL)
		return;
	op_httpc_free(p->http);
	op_odata_filter_free(p->filter);
	op_free(p->root);
	for (struct session *s = p->sessions, *n; s; s = n) {
		n = s->next;
		op_free(s->account);
		if (s->token)
			explicit_bzero(s->token, strlen(s->token));
		op_free(s->token);
		cJSON_Delete(s->cookies);
		op_free(s);
	}
	pthread_mutex_destroy(&p->mu);
	pthread_mutex_destroy(&p->fetch_mu);
	op_free(p);
}

static bool needs_key(int op)
{
	return op == OPER_UPDATE || op == OPER_DELETE;
}

static op_err check_cfg(struct op_load *ld, const struct sap_cfg *c)
{
	op_err rc = OP_OK;
#define PROBLEM(key, ...)                              \
	do {                                           \
		op_load_problem(ld, key, __VA_ARGS__); \
		rc = OP_ECONFIG;                       \
	} while (0)
	const char *s = c->service;
	if (strncasecmp(s, "http://", 7) != 0 && strncasecmp(s, "https://", 8) != 0)
		PROBLEM("service", "expected an absolute http:// or https:// URL, got \"%.80s\"",
		        s);
	else if (strchr(s, '@') && strchr(s, '@') < strchr(strstr(s, "://") + 3, '/'))
		PROBLEM("service", "user names and passwords go in an account, not in the URL");
	else if (strpbrk(s, "?#{} "))
		PROBLEM("service",
		        "the service root takes no query, fragment, spaces or "
		        "expressions: \"%.80s\"",
		        s);
	if (c->operation == OPER_BATCH) {
		if (c->requests == NULL)
			PROBLEM("requests", "batch needs requests, the array of operations");
	} else {
		if (c->entity_set == NULL)
			PROBLEM("entitySet", "%s needs the entity set", operations[c->operation]);
		else if (!op_odata_name_ok(c->entity_set))
			PROBLEM("entitySet", "\"%.80s\" is not an entity set name", c->entity_set);
		if (c->requests)
			PROBLEM("requests", "is only for operation batch");
		if (c->operation == OPER_CREATE && c->key && c->navigation == NULL)
			PROBLEM("key", "create takes a key only with navigation (a create through "
			               "it); the new entity's key goes in body");
	}
	if (needs_key(c->operation) && c->key == NULL)
		PROBLEM("key", "%s needs the entity's key", operations[c->operation]);
	if (c->navigation && !op_odata_name_ok(c->navigation))
		PROBLEM("navigation", "\"%.80s\" is not a navigation property name", c->navigation);
	if (c->navigation && c->key == NULL)
		PROBLEM("navigation", "needs key, the entity it starts from");
	if (c->navigation && c->operation != OPER_READ && c->operation != OPER_CREATE)
		PROBLEM("navigation", "is for read and create only");
	bool reading = c->operation == OPER_READ;
	if (!reading && (c->filter || c->select || c->expand || c->orderby || c->top || c->skip ||
	                 c->count || c->limit))
		PROBLEM("", "filter, select, expand, orderby, top, skip, count and limit are "
		            "for operation read");
	if (reading && c->key && (c->filter || c->orderby || c->top || c->skip || c->count))
		PROBLEM("key", "a read by key gives one entity: filter, orderby, top, skip and "
		               "count do not apply");
	if (c->body && c->operation != OPER_CREATE && c->operation != OPER_UPDATE)
		PROBLEM("body", "is for create and update");
	if (c->if_match && !needs_key(c->operation))
		PROBLEM("ifMatch", "is for update and delete (batch operations carry their own)");
	if (c->account && !op_account_name_ok(c->account))
		PROBLEM("account", "\"%.80s\" is not an account name", c->account);
#undef PROBLEM
	return rc;
}

static op_err sap_prepare(struct op_load *ld, struct op_step *st)
{
	const struct sap_cfg *c = st->cfg;
	op_err rc = check_cfg(ld, c);
	struct op_odata_filter *f = NULL;
	if (c->filter) {
		char why[256];
		op_err frc = op_odata_filter_compile(c->filter, &f, why, sizeof(why));
		if (frc == OP_ENOMEM)
			return frc;
		if (frc) {
			op_load_problem(ld, "filter", "%s", why);
			rc = OP_ECONFIG;
		}
	}
	if (rc) {
		op_odata_filter_free(f);
		return rc;
	}
	struct sap_priv *p = op_calloc(1, sizeof(*p));
	if (p == NULL || pthread_mutex_init(&p->mu, NULL) != 0) {
		op_free(p);
		op_odata_filter_free(f);
		return OP_ENOMEM;
	}
	if (pthread_mutex_init(&p->fetch_mu, NULL) != 0) {
		pthread_mutex_destroy(&p->mu);
		op_free(p);
		op_odata_filter_free(f);
		return OP_ENOMEM;
	}
	p->filter = f;
	size_t n = strlen(c->service);
	while (n > 0 && c->service[n - 1] == '/')
		n--;
	p->root = op_strndup(c->service, n);
	if (p->root == NULL) {
		priv_free(p);
		return OP_ENOMEM;
	}
	const char *auth = strstr(p->root, "://") + 3;
	const char *slash = strchr(auth, '/');
	p->origin_len = slash ? (size_t)(slash - p->root) : n;
	rc = op_httpc_new(&p->http);
	if (rc) {
		priv_free(p);
		if (rc == OP_EINTERNAL) {
			op_load_problem(ld, "", "libcurl could not be initialised");
			return OP_ECONFIG;
		}
		return rc;
	}
	if (!c->tls_verify)
		OP_LOGW("%s: tlsVerify is false: the server's certificate is not checked",
		        st->path);
	st->priv = p;
	return OP_OK;
}

static void sap_release(struct op_step *st)
{
	priv_free(st->priv);
	st->priv = NULL;
}

/* ---- sessions: CSRF token and cookies ---- */

static struct session *session_get(struct sap_priv *p, const char *account)
{
	for (struct session *s = p->sessions; s; s = s->next)
		if (strcmp(s->account, account) == 0)
			return s;
	struct session *s = op_calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->account = op_strdup(account);
	s->cookies = cJSON_CreateObject();
	if (s->account == NULL || s->cookies == NULL) {
		op_free(s->account);
		cJSON_Delete(s->cookies);
		op_free(s);
		return NULL;
	}
	s->next = p->sessions;
	p->sessions = s;
	return s;
}

/* One Set-Cookie line into the session's cookies: a new value, or gone
 * when empty or expired by Max-Age. */
static void cookie_take(struct session *s, const char *line, size_t len)
{
	char *l = op_strndup(line, len);
	if (l == NULL)
		return;
	char *semi = strchr(l, ';');
	if (semi)
		*semi++ = '\0';
	char *eq = strchr(l, '=');
	if (eq && eq > l) {
		*eq = '\0';
		const char *value = eq + 1;
		const char *age = semi ? strcasestr(semi, "max-age=") : NULL;
		bool gone = value[0] == '\0' || (age && (age[8] == '0' || age[8] == '-'));
		bool known = cJSON_GetObjectItemCaseSensitive(s->cookies, l) != NULL;
		cJSON_DeleteItemFromObjectCaseSensitive(s->cookies, l);
		if (!gone && (known || cJSON_GetArraySize(s->cookies) < COOKIES_MAX))
			cJSON_AddStringToObject(s->cookies, l, value);
		else if (!gone)
			OP_LOGW("a server sent more than %d cookies; \"%.60s\" is not kept",
			        COOKIES_MAX, l);
	}
	op_free(l);
}

/* Takes the cookies of "set-cookie" (one per line) into the session. */
static void session_absorb(struct sap_priv *p, const char *account, const cJSON *headers)
{
	const char *sc =
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(headers, "set-cookie"));
	if (sc == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	struct session *s = session_get(p, account);
	for (const char *line = sc; s && *line;) {
		const char *eol = strchr(line, '\n');
		size_t len = eol ? (size_t)(eol - line) : strlen(line);
		cookie_take(s, line, len);
		line += len + (eol ? 1 : 0);
	}
	pthread_mutex_unlock(&p->mu);
}

/* The session's Cookie header value and token, copied (NULL when none),
 * and its generation. */
static void session_read(struct sap_priv *p, const char *account, char **cookie, char **token,
                         unsigned *gen)
{
	*cookie = *token = NULL;
	*gen = 0;
	pthread_mutex_lock(&p->mu);
	struct session *s = session_get(p, account);
	if (s) {
		struct op_buf b;
		op_buf_init(&b, COOKIE_MAX);
		bool ok = true;
		for (const cJSON *c = s->cookies->child; c && ok; c = c->next)
			ok = op_buf_addf(&b, "%s%s=%s", b.len ? "; " : "", c->string,
			                 c->valuestring) == OP_OK;
		if (!ok)
			OP_LOGW("cookies past %u bytes are not sent", COOKIE_MAX);
		*cookie = b.len ? op_buf_take(&b) : NULL;
		op_buf_fini(&b);
		*token = s->token ? op_strdup(s->token) : NULL;
		*gen = s->gen;
	}
	pthread_mutex_unlock(&p->mu);
}

static void free_secret(char *t)
{
	if (t)
		explicit_bzero(t, strlen(t));
	op_free(t);
}

/* Whether the session has a token (fetched; maybe ""). */
static bool session_has_token(struct sap_priv *p, const char *account)
{
	pthread_mutex_lock(&p->mu);
	struct session *s = session_get(p, account);
	bool have = s && s->token;
	pthread_mutex_unlock(&p->mu);
	return have;
}

static void session_set_token(struct sap_priv *p, const char *account, const char *token)
{
	pthread_mutex_lock(&p->mu);
	struct session *s = session_get(p, account);
	if (s) {
		free_secret(s->token);
		s->token = op_strdup(token);
		s->gen++;
	}
	pthread_mutex_unlock(&p->mu);
}

/* Drops a refused token and its session, unless another execution has
 * replaced them since generation gen was used. */
static void session_drop(struct sap_priv *p, const char *account, unsigned gen)
{
	pthread_mutex_lock(&p->mu);
	struct session *s = session_get(p, account);
	cJSON *fresh = s && s->gen == gen ? cJSON_CreateObject() : NULL;
	if (fresh) {
		free_secret(s->token);
		s->token = NULL;
		cJSON_Delete(s->cookies);
		s->cookies = fresh;
		s->gen++;
	}
	pthread_mutex_unlock(&p->mu);
}

/* ---- one exchange ---- */

struct job {
	struct op_exec *x;
	const struct op_step *st;
	const struct sap_cfg *c;
	struct sap_priv *p;
	const cJSON *msg;
	struct op_account *acct;
	const char *acct_name; /* "" without an account */
	size_t total;          /* bytes of answers so far */
	int requests;          /* HTTP requests made */
};

static bool cancelled(void *ud)
{
	return op_exec_cancelled(ud);
}

static op_err nomem(struct op_exec *x)
{
	return op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
}

/*
 * One HTTP exchange with the session's cookies (and token for a write).
 * Transport errors fail the step; any status is returned in r.
 */
static op_err exchange(struct job *j, const char *method, const char *url, const char *ctype,
                       const char *body, size_t blen, const char *if_match, bool write, bool fetch,
                       struct op_httpc_resp *r, unsigned *gen)
{
	const struct sap_cfg *c = j->c;
	char *cookie = NULL, *token = NULL;
	unsigned g;
	session_read(j->p, j->acct_name, &cookie, &token, &g);
	if (gen)
		*gen = g;
	struct op_httpc_header h[8];
	size_t n = 0;
	/* A $batch answer must come as multipart too (CAP would answer JSON). */
	bool batch = ctype && strncmp(ctype, "multipart/", 10) == 0;
	h[n++] = (struct op_httpc_header){"Accept", batch ? "multipart/mixed" : "application/json"};
	if (c->version == V2) {
		h[n++] = (struct op_httpc_header){"DataServiceVersion", "2.0"};
		h[n++] = (struct op_httpc_header){"MaxDataServiceVersion", "2.0"};
	} else {
		h[n++] = (struct op_httpc_header){"OData-Version", "4.0"};
		h[n++] = (struct op_httpc_header){"OData-MaxVersion", "4.0"};
		/* Go on after a failed change set, as SAP Gateway does in V2. */
		if (batch)
			h[n++] = (struct op_httpc_header){"Prefer", "odata.continue-on-error"};
	}
	if (ctype)
		h[n++] = (struct op_httpc_header){"Content-Type", ctype};
	if (if_match)
		h[n++] = (struct op_httpc_header){"If-Match", if_match};
	if (fetch)
		h[n++] = (struct op_httpc_header){"X-CSRF-Token", "Fetch"};
	else if (write && token && token[0])
		h[n++] = (struct op_httpc_header){"X-CSRF-Token", token};
	if (cookie)
		h[n++] = (struct op_httpc_header){"Cookie", cookie};
	long long timeout = op_exec_timeout_ms(j->x, c->timeout_ms);
	size_t room =
	    (size_t)c->max_response_bytes > j->total ? (size_t)c->max_response_bytes - j->total : 0;
	struct op_httpc_req req = {
	    .method = method,
	    .url = url,
	    .headers = h,
	    .n_headers = n,
	    .body = body,
	    .body_len = blen,
	    .auth = j->acct && j->acct->type != OP_ACCOUNT_CERTIFICATE ? j->acct : NULL,
	    .cert = j->acct && j->acct->type == OP_ACCOUNT_CERTIFICATE ? j->acct : NULL,
	    .ca_file = c->ca_file,
	    .insecure = !c->tls_verify,
	    .timeout_ms = timeout,
	    .connect_timeout_ms = c->connect_timeout_ms,
	    .max_body = room,
	    .cancelled = cancelled,
	    .cancel_ud = j->x,
	};
	char why[1024] = "";
	op_err rc = op_httpc_perform(j->p->http, &req, r, why, sizeof(why));
	j->requests++;
	free_secret(token);
	free_secret(cookie);
	if (rc) {
		if (rc == OP_ELIMIT && strstr(why, "header") == NULL)
			return op_exec_fail(
			    j->x, rc, op_httpc_error_code(rc),
			    "%s: the answer is larger than maxResponseBytes (%lld bytes, "
			    "all pages together)",
			    why, c->max_response_bytes);
		return op_exec_fail(j->x, rc, op_httpc_error_code(rc), "%s", why);
	}
	j->total += r->body.len;
	session_absorb(j->p, j->acct_name, r->headers);
	return OP_OK;
}

/* Fails the step (code, "SAP_ERROR" but for the token fetch) with what the
 * server said: the SAP code and message. */
static op_err fail_as(struct job *j, const char *scode, const char *method, const char *url,
                      const struct op_httpc_resp *r)
{
	char where[512], code[128], msg[1024];
	op_httpc_url_for_humans(url, where, sizeof(where));
	op_odata_error(r->body.data, r->body.len, code, sizeof(code), msg, sizeof(msg));
	op_err cls = op_httpc_status_class(r->status);
	if (cls == OP_OK)
		cls = OP_EPARSE;
	return op_exec_fail(j->x, cls, scode, "%s%s %s answered %ld%s%s%s%s",
	                    strcmp(scode, "SAP_CSRF") == 0 ? "fetching the CSRF token: " : "",
	                    method, where, r->status, code[0] ? ", SAP error " : "", code,
	                    msg[0] ? ": " : "", msg);
}

static op_err fail_status(struct job *j, const char *method, const char *url,
                          const struct op_httpc_resp *r)
{
	return fail_as(j, "SAP_ERROR", method, url, r);
}

static const char *header(const struct op_httpc_resp *r, const char *name)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->headers, name));
}

/* Fetches a CSRF token and its session cookies with a HEAD on the service
 * root. A server that sends none wants none (token ""). */
static op_err csrf_fetch(struct job *j)
{
	char url[URL_MAX / 8];
	snprintf(url, sizeof(url), "%s/", j->p->root);
	struct op_httpc_resp r = {0};
	op_err rc = exchange(j, "HEAD", url, NULL, NULL, 0, NULL, false, true, &r, NULL);
	if (rc)
		return rc;
	if (op_httpc_status_class(r.status) != OP_OK) {
		rc = fail_as(j, "SAP_CSRF", "HEAD", url, &r);
	} else {
		const char *t = header(&r, "x-csrf-token");
		session_set_token(j->p, j->acct_name, t && strcasecmp(t, "Required") != 0 ? t : "");
	}
	op_httpc_resp_fini(&r);
	return rc;
}

static bool csrf_refused(const struct op_httpc_resp *r)
{
	const char *t = header(r, "x-csrf-token");
	return r->status == 403 && t && strcasecmp(t, "Required") == 0;
}

/* A write: with a token fetched first if there is none, and fetched again
 * once when the server refuses it. One execution fetches at a time; the
 * others wait and use its token. */
static op_err write_exchange(struct job *j, const char *method, const char *url, const char *ctype,
                             const char *body, size_t blen, const char *if_match,
                             struct op_httpc_resp *r)
{
	for (int attempt = 0;; attempt++) {
		op_err rc = OP_OK;
		if (!session_has_token(j->p, j->acct_name)) {
			pthread_mutex_lock(&j->p->fetch_mu);
			if (!session_has_token(j->p, j->acct_name))
				rc = csrf_fetch(j);
			pthread_mutex_unlock(&j->p->fetch_mu);
			if (rc)
				return rc;
		}
		unsigned gen = 0;
		rc = exchange(j, method, url, ctype, body, blen, if_match, true, false, r, &gen);
		if (rc || !csrf_refused(r) || attempt == 1)
			return rc;
		OP_LOGD("%s exec=%s: CSRF token refused; fetching a new one", j->st->name,
		        op_exec_id(j->x));
		op_httpc_resp_fini(r);
		*r = (struct op_httpc_resp){0};
		session_drop(j->p, j->acct_name, gen);
	}
}

/* ---- URLs ---- */

static op_err add_params(struct job *j, struct op_buf *u, bool *first)
{
	const struct sap_cfg *c = j->c;
	if (c->params == NULL)
		return OP_OK;
	cJSON *v = NULL;
	op_err rc = op_exec_render(j->x, c->params, "params", j->msg, &v);
	if (rc)
		return rc;
	if (!cJSON_IsObject(v)) {
		rc = op_exec_fail(j->x, OP_EINVAL, "SAP_REQUEST",
		                  "config.params: expected an object, got %s", op_json_kind(v));
		cJSON_Delete(v);
		return rc;
	}
	for (const cJSON *p = v->child; p && rc == OP_OK; p = p->next) {
		char num[64];
		const char *s = cJSON_GetStringValue(p);
		if (cJSON_IsNumber(p)) {
			op_json_num_format(p->valuedouble, num, sizeof(num));
			s = num;
		} else if (cJSON_IsBool(p)) {
			s = cJSON_IsTrue(p) ? "true" : "false";
		} else if (cJSON_IsNull(p)) {
			continue;
		}
		if (s == NULL) {
			rc =
			    op_exec_fail(j->x, OP_EINVAL, "SAP_REQUEST",
			                 "config.params.%s: %s; a parameter is a string, number or "
			                 "boolean",
			                 p->string, op_json_kind(p));
			break;
		}
		rc = op_buf_adds(u, *first ? "?" : "&");
		*first = false;
		if (rc == OP_OK)
			rc = op_httpc_form_add(u, p->string, s);
	}
	cJSON_Delete(v);
	return rc;
}

static op_err add_query(struct op_buf *u, bool *first, const char *name, const char *value)
{
	op_err rc = op_buf_adds(u, *first ? "?" : "&");
	*first = false;
	if (rc == OP_OK)
		rc = op_buf_adds(u, name);
	if (rc == OP_OK)
		rc = op_buf_adds(u, "=");
	return rc ? rc : op_httpc_escape(u, value, strlen(value));
}

/* Appends the key predicate p percent-encoded but for its own syntax:
 * ('a b/c') is written ('a%20b%2Fc'). */
static op_err add_key_path(struct op_buf *u, const char *p, size_t n)
{
	op_err rc = OP_OK;
	for (size_t i = 0; i < n && rc == OP_OK; i++) {
		char ch = p[i];
		if (strchr("'(),=", ch) && ch != '\0')
			rc = op_buf_addc(u, ch);
		else
			rc = op_httpc_escape(u, &p[i], 1);
	}
	return rc;
}

/* root/EntitySet[(key)][/navigation] */
static op_err entity_url(struct job *j, struct op_buf *u)
{
	const struct sap_cfg *c = j->c;
	op_err rc = op_buf_addf(u, "%s/%s", j->p->root, c->entity_set);
	if (rc || c->key == NULL)
		return rc;
	cJSON *key = NULL;
	rc = op_exec_render(j->x, c->key, "key", j->msg, &key);
	if (rc)
		return rc;
	struct op_buf k;
	op_buf_init(&k, URL_MAX);
	char why[256];
	rc = op_odata_key(&k, key, why, sizeof(why));
	cJSON_Delete(key);
	if (rc == OP_OK)
		rc = add_key_path(u, k.data, k.len);
	op_buf_fini(&k);
	if (rc == OP_EINVAL)
		return op_exec_fail(j->x, rc, "SAP_REQUEST", "config.%s", why);
	if (rc == OP_OK && c->navigation)
		rc = op_buf_addf(u, "/%s", c->navigation);
	return rc;
}

/* The URL of a read: entity_url plus the query options. */
static op_err read_url(struct job *j, struct op_buf *u)
{
	const struct sap_cfg *c = j->c;
	op_err rc = entity_url(j, u);
	bool first = true;
	char num[32];
	if (rc == OP_OK && c->filter) {
		struct op_buf f;
		op_buf_init(&f, URL_MAX);
		struct op_expr_env env;
		op_exec_env(j->x, j->msg, &env);
		char why[512];
		rc = op_odata_filter_render(j->p->filter, &env, &f, why, sizeof(why));
		if (rc == OP_OK)
			rc = add_query(u, &first, "$filter", op_buf_str(&f));
		op_buf_fini(&f);
		if (rc == OP_EINVAL)
			return op_exec_fail(j->x, rc, "EXPRESSION", "config.filter: %s", why);
	}
	if (rc == OP_OK && c->select)
		rc = add_query(u, &first, "$select", c->select);
	if (rc == OP_OK && c->expand)
		rc = add_query(u, &first, "$expand", c->expand);
	if (rc == OP_OK && c->orderby)
		rc = add_query(u, &first, "$orderby", c->orderby);
	if (rc == OP_OK && c->top) {
		snprintf(num, sizeof(num), "%lld", c->top);
		rc = add_query(u, &first, "$top", num);
	}
	if (rc == OP_OK && c->skip) {
		snprintf(num, sizeof(num), "%lld", c->skip);
		rc = add_query(u, &first, "$skip", num);
	}
	if (rc == OP_OK && c->count)
		rc = c->version == V2 ? add_query(u, &first, "$inlinecount", "allpages")
		                      : add_query(u, &first, "$count", "true");
	if (rc == OP_OK)
		rc = add_params(j, u, &first);
	return rc;
}

/*
 * The URL of a next link on the service's own origin: its path and query
 * only, so credentials never go to another host whatever the link says
 * (SAP writes its own host name into them, which may not be the one the
 * agent reaches it by).
 */
static op_err next_url(struct job *j, const char *link, struct op_buf *u)
{
	const char *scheme = strstr(link, "://");
	if (scheme && strcspn(link, "/?") > (size_t)(scheme - link)) {
		const char *path = strchr(scheme + 3, '/');
		return op_buf_addf(u, "%.*s%s", (int)j->p->origin_len, j->p->root,
		                   path ? path : "/");
	}
	if (link[0] == '/')
		return op_buf_addf(u, "%.*s%s", (int)j->p->origin_len, j->p->root, link);
	return op_buf_addf(u, "%s/%s", j->p->root, link);
}

/* ---- answers ---- */

/* The JSON body of r; a non-JSON answer fails the step. */
static op_err json_body(struct job *j, const char *url, const struct op_httpc_resp *r, cJSON **out)
{
	*out = NULL;
	if (r->body.len == 0)
		return OP_OK;
	char why[256], where[512];
	op_err rc = op_json_parse(r->body.data, r->body.len, out, why, sizeof(why));
	if (rc == OP_ENOMEM)
		return nomem(j->x);
	op_httpc_url_for_humans(url, where, sizeof(where));
	if (rc)
		return op_exec_fail(j->x, OP_EPARSE, "SAP_BAD_RESPONSE",
		                    "%s: the answer is not JSON (Content-Type %s): %s", where,
		                    header(r, "content-type") ? header(r, "content-type") : "none",
		                    why);
	return OP_OK;
}

/* The entity in a V2 {"d": {...}} or V4 answer, plain; takes doc. */
static cJSON *entity_of(int version, cJSON *doc)
{
	if (doc == NULL)
		return NULL;
	if (version == V2) {
		cJSON *d = cJSON_DetachItemFromObjectCaseSensitive(doc, "d");
		cJSON_Delete(doc);
		if (d == NULL)
			return NULL;
		cJSON *results = cJSON_GetObjectItemCaseSensitive(d, "results");
		if (cJSON_IsArray(results)) {
			cJSON *a = cJSON_DetachItemViaPointer(d, results);
			cJSON_Delete(d);
			d = a;
		}
		op_odata_v2_plain(d);
		return d;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(doc, "@odata.context");
	return doc;
}

static bool add(cJSON *o, const char *k, cJSON *v)
{
	if (v == NULL || !cJSON_AddItemToObject(o, k, v)) {
		cJSON_Delete(v);
		return false;
	}
	return true;
}

/* ---- read ---- */

static op_err do_read(struct job *j, cJSON **out)
{
	const struct sap_cfg *c = j->c;
	struct op_buf u;
	op_buf_init(&u, URL_MAX);
	cJSON *value = NULL, *res = NULL, *count = NULL;
	op_err rc = read_url(j, &u);
	if (rc == OP_ELIMIT)
		rc = op_exec_fail(j->x, rc, "SAP_REQUEST", "the URL is longer than %u bytes",
		                  URL_MAX);
	else if (rc == OP_ENOMEM)
		rc = nomem(j->x);
	bool single = c->key && c->navigation == NULL;
	int pages = 0;
	char *prev = NULL; /* the last next link followed */
	while (rc == OP_OK) {
		struct op_httpc_resp r = {0};
		char *url = op_buf_take(&u);
		if (url == NULL) {
			rc = nomem(j->x);
			break;
		}
		rc = exchange(j, "GET", url, NULL, NULL, 0, NULL, false, false, &r, NULL);
		pages++;
		if (rc == OP_OK && op_httpc_status_class(r.status) != OP_OK)
			rc = fail_status(j, "GET", url, &r);
		cJSON *doc = NULL;
		if (rc == OP_OK)
			rc = json_body(j, url, &r, &doc);
		op_httpc_resp_fini(&r);
		if (rc) {
			op_free(url);
			break;
		}
		/* The count and next link, before entity_of takes doc apart. */
		const cJSON *env =
		    c->version == V2 ? cJSON_GetObjectItemCaseSensitive(doc, "d") : doc;
		const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(
		    env, c->version == V2 ? "__count" : "@odata.count");
		if (cnt && count == NULL)
			count = cJSON_IsString(cnt)
			            ? cJSON_CreateNumber(strtod(cnt->valuestring, NULL))
			            : cJSON_Duplicate(cnt, false);
		const char *next = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
		    env, c->version == V2 ? "__next" : "@odata.nextLink"));
		char *next_copy = next ? op_strdup(next) : NULL;
		cJSON *got = NULL;
		if (c->version == V4 && !single &&
		    cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(doc, "value"))) {
			got = cJSON_DetachItemFromObjectCaseSensitive(doc, "value");
			cJSON_Delete(doc);
		} else {
			got = entity_of(c->version, doc);
		}
		if (next && next_copy == NULL) {
			cJSON_Delete(got);
			op_free(url);
			rc = nomem(j->x);
			break;
		}
		/* A navigation to one entity (to_SoldToParty) gives that entity. */
		if (!single && c->navigation && value == NULL && cJSON_IsObject(got))
			single = true;
		if (single) {
			value = got;
			op_free(next_copy);
			op_free(url);
			if (!cJSON_IsObject(value))
				rc = op_exec_fail(j->x, OP_EPARSE, "SAP_BAD_RESPONSE",
				                  "GET %s: the answer holds no entity",
				                  c->entity_set);
			break;
		}
		if (!cJSON_IsArray(got)) {
			cJSON_Delete(got);
			op_free(next_copy);
			char where[512];
			op_httpc_url_for_humans(url, where, sizeof(where));
			op_free(url);
			rc = op_exec_fail(j->x, OP_EPARSE, "SAP_BAD_RESPONSE",
			                  "GET %s: the answer holds no collection (%s)", where,
			                  c->version == V2 ? "d.results" : "value");
			break;
		}
		op_free(url);
		bool empty = got->child == NULL;
		if (value == NULL) {
			value = got;
		} else {
			for (cJSON *e; (e = got->child) != NULL;)
				cJSON_AddItemToArray(value, cJSON_DetachItemViaPointer(got, e));
			cJSON_Delete(got);
		}
		if (c->limit && cJSON_GetArraySize(value) >= c->limit) {
			while (cJSON_GetArraySize(value) > c->limit)
				cJSON_DeleteItemFromArray(value, (int)c->limit);
			op_free(next_copy);
			break;
		}
		if (next_copy == NULL)
			break;
		/* A server that pages without progress would be followed for long. */
		if (empty || (prev && strcmp(prev, next_copy) == 0)) {
			op_free(next_copy);
			rc =
			    op_exec_fail(j->x, OP_EPARSE, "SAP_PAGING",
			                 "page %d: %s, and a next link; paging makes no progress",
			                 pages, empty ? "no entities" : "the same next link again");
			break;
		}
		if (pages == PAGES_MAX) {
			op_free(next_copy);
			rc = op_exec_fail(j->x, OP_ELIMIT, "SAP_PAGING",
			                  "more than %d pages; set limit, or filter on the server",
			                  PAGES_MAX);
			break;
		}
		op_buf_reset(&u);
		rc = next_url(j, next_copy, &u);
		op_free(prev);
		prev = next_copy;
		if (rc)
			rc = rc == OP_ENOMEM
			         ? nomem(j->x)
			         : op_exec_fail(j->x, rc, "SAP_PAGING",
			                        "the next link is longer than %u bytes", URL_MAX);
	}
	op_buf_fini(&u);
	op_free(prev);
	if (rc == OP_OK) {
		res = cJSON_CreateObject();
		bool ok = res && add(res, "value", value);
		value = NULL;
		if (ok && count) {
			ok = add(res, "count", count);
			count = NULL;
		}
		if (ok && !single)
			ok = add(res, "pages", cJSON_CreateNumber(pages));
		if (!ok)
			rc = nomem(j->x);
	}
	cJSON_Delete(value);
	cJSON_Delete(count);
	if (rc) {
		cJSON_Delete(res);
		return rc;
	}
	*out = res;
	return OP_OK;
}

/* ---- create, update, delete ---- */

static const char *update_method(const struct sap_cfg *c)
{
	switch (c->update_method) {
	case UPD_PATCH:
		return "PATCH";
	case UPD_MERGE:
		return "MERGE";
	case UPD_PUT:
		return "PUT";
	default:
		return c->version == V2 ? "MERGE" : "PATCH";
	}
}

/* The body of create and update: `body`, or the message. */
static op_err entity_body(struct job *j, struct op_buf *b)
{
	cJSON *rendered = NULL;
	const cJSON *v = j->msg;
	if (j->c->body) {
		op_err rc = op_exec_render(j->x, j->c->body, "body", j->msg, &rendered);
		if (rc)
			return rc;
		v = rendered;
	}
	op_err rc = OP_OK;
	if (!cJSON_IsObject(v))
		rc = op_exec_fail(j->x, OP_EINVAL, "SAP_REQUEST",
		                  "%s: an entity is an object, got %s",
		                  j->c->body ? "config.body" : "the message", op_json_kind(v));
	else if ((rc = op_json_append(b, v, OP_JSON_COMPACT)) != OP_OK)
		rc = rc == OP_ENOMEM ? nomem(j->x)
		                     : op_exec_fail(j->x, rc, "SAP_REQUEST",
		                                    "the entity is larger than %u bytes", BODY_MAX);
	cJSON_Delete(rendered);
	return rc;
}

static op_err if_match_value(struct job *j, struct op_val *v, const char **out)
{
	*out = NULL;
	if (j->c->if_match == NULL)
		return OP_OK;
	op_err rc = op_exec_eval(j->x, j->c->if_match, "ifMatch", j->msg, v);
	if (rc)
		return rc;
	if (cJSON_IsNull(v->v))
		return OP_OK;
	*out = cJSON_GetStringValue(v->v);
	if (*out == NULL || strpbrk(*out, "\r\n"))
		return op_exec_fail(j->x, OP_EINVAL, "SAP_REQUEST",
		                    "config.ifMatch: expected an ETag string, got %s",
		                    op_json_kind(v->v));
	return OP_OK;
}

static op_err do_write(struct job *j, cJSON **out)
{
	const struct sap_cfg *c = j->c;
	const char *method = c->operation == OPER_CREATE   ? "POST"
	                     : c->operation == OPER_UPDATE ? update_method(c)
	                                                   : "DELETE";
	struct op_buf u, b;
	op_buf_init(&u, URL_MAX);
	op_buf_init(&b, BODY_MAX);
	struct op_val im = {0};
	struct op_httpc_resp r = {0};
	cJSON *res = NULL;
	const char *etag = NULL;
	bool first = true;
	op_err rc = entity_url(j, &u);
	if (rc == OP_OK)
		rc = add_params(j, &u, &first);
	if (rc == OP_ELIMIT)
		rc = op_exec_fail(j->x, rc, "SAP_REQUEST", "the URL is longer than %u bytes",
		                  URL_MAX);
	else if (rc == OP_ENOMEM)
		rc = nomem(j->x);
	if (rc == OP_OK && c->operation != OPER_DELETE)
		rc = entity_body(j, &b);
	if (rc == OP_OK)
		rc = if_match_value(j, &im, &etag);
	if (rc)
		goto out;
	const char *url = op_buf_str(&u);
	rc = write_exchange(j, method, url, b.len ? "application/json" : NULL,
	                    b.len ? b.data : NULL, b.len, etag, &r);
	if (rc)
		goto out;
	if (op_httpc_status_class(r.status) != OP_OK) {
		rc = fail_status(j, method, url, &r);
		goto out;
	}
	cJSON *doc = NULL;
	rc = json_body(j, url, &r, &doc);
	if (rc)
		goto out;
	cJSON *entity = entity_of(c->version, doc);
	res = cJSON_CreateObject();
	const char *tag = header(&r, "etag");
	if (res == NULL)
		cJSON_Delete(entity);
	bool ok = res && add(res, "value", entity ? entity : cJSON_CreateNull()) &&
	          add(res, "status", cJSON_CreateNumber((double)r.status)) &&
	          (tag == NULL || add(res, "etag", cJSON_CreateString(tag)));
	if (!ok)
		rc = nomem(j->x);
out:
	op_val_drop(&im);
	op_httpc_resp_fini(&r);
	op_buf_fini(&u);
	op_buf_fini(&b);
	if (rc) {
		cJSON_Delete(res);
		return rc;
	}
	*out = res;
	return OP_OK;
}

/* ---- batch ---- */

static const char *const batch_methods[] = {"GET", "POST", "PUT", "PATCH", "MERGE", "DELETE", NULL};

struct batch {
	struct op_sap_batch_op *ops;
	char **texts; /* bodies and paths we built, to free */
	size_t n, nt;
};

static void batch_fini(struct batch *b)
{
	for (size_t i = 0; i < b->nt; i++)
		op_free(b->texts[i]);
	op_free(b->texts);
	op_free(b->ops);
}

static char *batch_keep(struct batch *b, char *s)
{
	if (s)
		b->texts[b->nt++] = s;
	return s;
}

/* requests[i] as an operation; changesets are numbered in order of first
 * use, a write without one gets its own. */
static op_err batch_op(struct job *j, struct batch *b, size_t i, const cJSON *rq, int *next_cs,
                       const cJSON **cs_names)
{
	struct op_sap_batch_op *op = &b->ops[i];
	const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rq, "method"));
	const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rq, "path"));
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(rq, "body");
	const cJSON *im = cJSON_GetObjectItemCaseSensitive(rq, "ifMatch");
	const cJSON *cs = cJSON_GetObjectItemCaseSensitive(rq, "changeset");
	const char *method = NULL;
	for (size_t k = 0; m && batch_methods[k]; k++)
		if (strcasecmp(m, batch_methods[k]) == 0)
			method = batch_methods[k];
	if (!cJSON_IsObject(rq))
		return op_exec_fail(j->x, OP_EINVAL, "SAP_REQUEST",
		                    "config.requests[%zu]: expected an object, got %s", i,
		                    op_json_kind(rq));
	if (method == NULL)
		return op_exec_fail(j->x, OP_EINVAL, "SAP_REQUEST",
		                    "config.requests[%zu].method: expected GET, POST, PUT, PATCH, "
		                    "MERGE or DELETE",
		                    i);
	if (path == NULL || path[0] == '\0' || path[0] == '/' || strstr(path, "://") ||
	    strpbrk(path, " \r\n"))
		return op_exec_fail(j->x, OP_EINVAL, "SAP_REQUEST",
		                    "config.requests[%zu].path: expected a path relative to the "
		                    "service (A_SalesOrder('1')), without spaces",
		                    i);
	if (im && !cJSON_IsString(im) && !cJSON_IsNull(im))
		return op_exec_fail(j->x, OP_EINVAL, "SAP_REQUEST",
		                    "config.requests[%zu].ifMatch: expected a string", i);
	bool get = method == batch_methods[0];
	if (get && cs && !cJSON_IsNull(cs))
		return op_exec_fail(
		    j->x, OP_EINVAL, "SAP_REQUEST",
		    "config.requests[%zu].changeset: a GET is never in a change set", i);
	if (body && !cJSON_IsNull(body) && (get || method == batch_methods[5]))
		return op_exec_fail(j->x, OP_EINVAL, "SAP_REQUEST",
		                    "config.requests[%zu].body: %s takes no body", i, method);
	op->method = method;
	op->path = path;
	op->if_match = cJSON_GetStringValue(im);
	if (body && !cJSON_IsNull(body)) {
		char *t = batch_keep(b, op_json_print(body, OP_JSON_COMPACT));
		if (t == NULL)
			return nomem(j->x);
		op->body = t;
	}
	if (get) {
		op->changeset = -1;
	} else if (cs && !cJSON_IsNull(cs) && i > 0 && cs_names[i - 1] &&
	           cJSON_Compare(cs, cs_names[i - 1], true)) {
		op->changeset = b->ops[i - 1].changeset;
	} else {
		for (size_t k = 0; cs && !cJSON_IsNull(cs) && k < i; k++)
			if (cs_names[k] && cJSON_Compare(cs, cs_names[k], true))
				return op_exec_fail(
				    j->x, OP_EINVAL, "SAP_REQUEST",
				    "config.requests[%zu].changeset: the operations of "
				    "one change set must be next to each other",
				    i);
		op->changeset = (*next_cs)++;
	}
	cs_names[i] = cs && !cJSON_IsNull(cs) ? cs : NULL;
	return OP_OK;
}

/* One answer of a batch as {status, value | error, etag}. */
static cJSON *batch_answer(struct job *j, const struct op_sap_batch_resp *a)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL || !add(o, "status", cJSON_CreateNumber(a->status)))
		goto fail;
	if (a->status >= 200 && a->status < 300) {
		cJSON *doc = NULL;
		char why[256];
		if (a->body_len && op_json_parse(a->body, a->body_len, &doc, why, sizeof(why)))
			goto fail;
		cJSON *v = entity_of(j->c->version, doc);
		if (!add(o, "value", v ? v : cJSON_CreateNull()))
			goto fail;
	} else {
		char code[128], msg[1024];
		op_odata_error(a->body, a->body_len, code, sizeof(code), msg, sizeof(msg));
		cJSON *e = cJSON_CreateObject();
		if (!add(o, "error", e) || !add(e, "code", cJSON_CreateString(code)) ||
		    !add(e, "message", cJSON_CreateString(msg)))
			goto fail;
	}
	const char *tag =
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a->headers, "etag"));
	if (tag && !add(o, "etag", cJSON_CreateString(tag)))
		goto fail;
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

static op_err do_batch(struct job *j, cJSON **out)
{
	const struct sap_cfg *c = j->c;
	cJSON *rqs = NULL;
	struct batch b = {0};
	struct op_buf body, u;
	op_buf_init(&body, BODY_MAX);
	op_buf_init(&u, URL_MAX);
	struct op_httpc_resp r = {0};
	struct op_sap_batch_resp *answers = NULL;
	const cJSON **cs_names = NULL;
	cJSON *res = NULL;
	op_err rc = op_exec_render(j->x, c->requests, "requests", j->msg, &rqs);
	if (rc)
		goto out;
	if (!cJSON_IsArray(rqs) || rqs->child == NULL) {
		rc = op_exec_fail(j->x, OP_EINVAL, "SAP_REQUEST",
		                  "config.requests: expected a non-empty array, got %s",
		                  cJSON_IsArray(rqs) ? "an empty one" : op_json_kind(rqs));
		goto out;
	}
	size_t n = (size_t)cJSON_GetArraySize(rqs);
	if (n > OP_SAP_BATCH_MAX) {
		rc = op_exec_fail(j->x, OP_ELIMIT, "SAP_REQUEST",
		                  "config.requests: %zu operations; one batch takes at most %d", n,
		                  OP_SAP_BATCH_MAX);
		goto out;
	}
	b.ops = op_calloc(n, sizeof(*b.ops));
	b.texts = op_calloc(n, sizeof(*b.texts));
	cs_names = op_calloc(n, sizeof(*cs_names));
	answers = op_calloc(n, sizeof(*answers));
	if (b.ops == NULL || b.texts == NULL || cs_names == NULL || answers == NULL) {
		rc = nomem(j->x);
		goto out;
	}
	b.n = n;
	int next_cs = 0;
	size_t i = 0;
	for (const cJSON *rq = rqs->child; rq && rc == OP_OK; rq = rq->next, i++)
		rc = batch_op(j, &b, i, rq, &next_cs, cs_names);
	if (rc)
		goto out;
	/* The execution id makes the boundary: letters and digits only. */
	char id[48];
	size_t k = 0;
	for (const char *s = op_exec_id(j->x); *s && k < 40; s++)
		if ((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= 'A' && *s <= 'Z'))
			id[k++] = *s;
	id[k] = '\0';
	char ct[160], why[512];
	rc = op_sap_batch_build(&body, k ? id : "outpost", b.ops, n, ct, sizeof(ct), why,
	                        sizeof(why));
	if (rc) {
		rc = rc == OP_ENOMEM ? nomem(j->x)
		                     : op_exec_fail(j->x, rc, "SAP_REQUEST", "%s", why);
		goto out;
	}
	bool first = true;
	rc = op_buf_addf(&u, "%s/$batch", j->p->root);
	if (rc == OP_OK)
		rc = add_params(j, &u, &first);
	if (rc == OP_ELIMIT)
		rc = op_exec_fail(j->x, rc, "SAP_REQUEST", "the URL is longer than %u bytes",
		                  URL_MAX);
	else if (rc == OP_ENOMEM)
		rc = nomem(j->x);
	if (rc)
		goto out;
	const char *url = op_buf_str(&u);
	rc = write_exchange(j, "POST", url, ct, body.data, body.len, NULL, &r);
	if (rc)
		goto out;
	if (op_httpc_status_class(r.status) != OP_OK) {
		rc = fail_status(j, "POST", url, &r);
		goto out;
	}
	const char *rct = header(&r, "content-type");
	rc = op_sap_batch_parse(r.body.data ? r.body.data : "", r.body.len, rct ? rct : "", b.ops,
	                        n, answers, why, sizeof(why));
	if (rc) {
		rc = rc == OP_ENOMEM ? nomem(j->x)
		                     : op_exec_fail(j->x, OP_EPARSE, "SAP_BAD_RESPONSE",
		                                    "POST %s/$batch: %s", c->service, why);
		goto out;
	}
	if (c->fail_on_error) {
		for (i = 0; i < n; i++) {
			if (answers[i].status >= 200 && answers[i].status < 300)
				continue;
			char code[128], msg[1024];
			op_odata_error(answers[i].body, answers[i].body_len, code, sizeof(code),
			               msg, sizeof(msg));
			op_err cls = op_httpc_status_class(answers[i].status);
			rc = op_exec_fail(j->x, cls ? cls : OP_EPARSE, "SAP_ERROR",
			                  "$batch requests[%zu] (%s %s) answered %d%s%s%s%s", i,
			                  b.ops[i].method, b.ops[i].path, answers[i].status,
			                  code[0] ? ", SAP error " : "", code, msg[0] ? ": " : "",
			                  msg);
			goto out;
		}
	}
	res = cJSON_CreateObject();
	cJSON *list = cJSON_CreateArray();
	if (res == NULL || !add(res, "responses", list)) {
		rc = nomem(j->x);
		goto out;
	}
	for (i = 0; i < n; i++) {
		cJSON *doc = NULL;
		char why2[256];
		const struct op_sap_batch_resp *a = &answers[i];
		op_err prc = a->status >= 200 && a->status < 300 && a->body_len
		                 ? op_json_parse(a->body, a->body_len, &doc, why2, sizeof(why2))
		                 : OP_OK;
		cJSON_Delete(doc);
		if (prc == OP_ENOMEM) {
			rc = nomem(j->x);
			goto out;
		}
		if (prc) {
			rc = op_exec_fail(
			    j->x, OP_EPARSE, "SAP_BAD_RESPONSE",
			    "$batch requests[%zu] (%s %s) answered %d with a body that "
			    "is not JSON: %s",
			    i, b.ops[i].method, b.ops[i].path, a->status, why2);
			goto out;
		}
	}
	for (i = 0; i < n && rc == OP_OK; i++) {
		cJSON *a = batch_answer(j, &answers[i]);
		if (a == NULL)
			rc = nomem(j->x);
		else
			cJSON_AddItemToArray(list, a);
	}
out:
	if (answers)
		op_sap_batch_resp_free(answers, b.n);
	op_free(answers);
	op_free(cs_names);
	batch_fini(&b);
	cJSON_Delete(rqs);
	op_httpc_resp_fini(&r);
	op_buf_fini(&body);
	op_buf_fini(&u);
	if (rc) {
		cJSON_Delete(res);
		return rc;
	}
	*out = res;
	return OP_OK;
}

/* ---- the step ---- */

static op_err sap_view(struct op_exec *x, const struct op_step *st, const cJSON *msg, cJSON **out)
{
	const struct sap_cfg *c = st->cfg;
	*out = NULL;
	struct job j = {.x = x, .st = st, .c = c, .p = st->priv, .msg = msg, .acct_name = ""};
	if (c->account) {
		op_err rc =
		    op_exec_account(x, "account", c->account,
		                    1u << OP_ACCOUNT_BASIC | 1u << OP_ACCOUNT_BEARER |
		                        1u << OP_ACCOUNT_OAUTH2 | 1u << OP_ACCOUNT_CERTIFICATE,
		                    "sap takes basic, oauth2, bearer or certificate", &j.acct);
		if (rc)
			return rc;
		j.acct_name = c->account;
	}
	op_err rc;
	switch (c->operation) {
	case OPER_READ:
		rc = do_read(&j, out);
		break;
	case OPER_BATCH:
		rc = do_batch(&j, out);
		break;
	default:
		rc = do_write(&j, out);
		break;
	}
	/* Secrets live no longer than the step. */
	op_account_free(j.acct);
	OP_LOGD("%s exec=%s: %s made %d requests", st->name, op_exec_id(x),
	        operations[c->operation], j.requests);
	return rc;
}

static op_err sap_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	op_err rc = sap_view(x, st, msg, out);
	cJSON_Delete(msg);
	return rc;
}

const struct op_step_type op_step_sap = {
    .name = "sap",
    .summary = "read and change SAP OData (V2, V4) entities, with paging, CSRF and $batch",
    .conf = &sap_table,
    .prepare = sap_prepare,
    .run = sap_run,
    .view = sap_view,
    .release = sap_release,
    .waits = true,
};
