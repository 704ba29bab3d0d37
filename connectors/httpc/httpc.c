/*
 * The shared HTTP client (see httpc.h): a pool of curl easy handles, the
 * OAuth2 token cache, and the translation of curl's codes into classes.
 *
 * Invariant: a handle is used by one exchange at a time; between exchanges
 * it sits in the pool, reset (curl_easy_reset keeps its connections, TLS
 * sessions and DNS cache). Everything an exchange sets on a handle points
 * to memory that lives for the exchange only, so reset always comes before
 * the next use. Header lists holding credentials are wiped before they are
 * freed.
 */
#define OP_LOG_MODULE "httpc"
#include "connectors/httpc/httpc.h"
#include "agent/core/clock.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>

#include "agent/account/account.h"
#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/core/utf8.h"
#include "connectors/httpc/httpc_int.h"

#define MAX_REDIRECTS 10

struct op_httpc {
	pthread_mutex_t mu;
	CURL *idle[OP_HTTPC_POOL_MAX];
	size_t n_idle;
	struct op_httpc__tokens tokens;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

op_err op_httpc_new(struct op_httpc **out)
{
	*out = NULL;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return OP_EINTERNAL;
	struct op_httpc *c = op_calloc(1, sizeof(*c));
	if (c == NULL)
		return OP_ENOMEM;
	if (pthread_mutex_init(&c->mu, NULL) != 0) {
		op_free(c);
		return OP_ENOMEM;
	}
	if (op_httpc__tokens_init(&c->tokens) != OP_OK) {
		pthread_mutex_destroy(&c->mu);
		op_free(c);
		return OP_ENOMEM;
	}
	*out = c;
	return OP_OK;
}

void op_httpc_free(struct op_httpc *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n_idle; i++)
		curl_easy_cleanup(c->idle[i]);
	op_httpc__tokens_fini(&c->tokens);
	pthread_mutex_destroy(&c->mu);
	op_free(c);
}

/* ---- the pool ---- */

static CURL *handle_take(struct op_httpc *c)
{
	CURL *h = NULL;
	pthread_mutex_lock(&c->mu);
	if (c->n_idle > 0)
		h = c->idle[--c->n_idle];
	pthread_mutex_unlock(&c->mu);
	return h ? h : curl_easy_init();
}

static void handle_give(struct op_httpc *c, CURL *h)
{
	if (h == NULL)
		return;
	curl_easy_reset(h);
	pthread_mutex_lock(&c->mu);
	if (c->n_idle < OP_HTTPC_POOL_MAX) {
		c->idle[c->n_idle++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	if (h)
		curl_easy_cleanup(h);
}

/* ---- classes and messages ---- */

op_err op_httpc_status_class(long status)
{
	if (status >= 200 && status < 300)
		return OP_OK;
	if (status >= 500 && status < 600)
		return OP_ERETRY;
	switch (status) {
	case 408:
		return OP_ETIMEOUT;
	case 429:
		return OP_EBUSY;
	case 401:
	case 403:
		return OP_EAUTH;
	case 404:
	case 410:
		return OP_ENOTFOUND;
	case 413:
		return OP_ELIMIT;
	default:
		return OP_EREJECTED;
	}
}

op_err op_httpc__from_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_OK:
		return OP_OK;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SSL_CONNECT_ERROR:
		return OP_ENOCONN;
	case CURLE_OPERATION_TIMEDOUT:
		return OP_ETIMEOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_LOGIN_DENIED:
		return OP_EAUTH;
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_CIPHER:
		return OP_ECONFIG;
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_BAD_CONTENT_ENCODING:
		return OP_EPARSE;
	case CURLE_URL_MALFORMAT:
	case CURLE_BAD_FUNCTION_ARGUMENT:
		return OP_EINVAL;
	case CURLE_TOO_MANY_REDIRECTS:
		return OP_EREJECTED;
	case CURLE_FILESIZE_EXCEEDED:
		return OP_ELIMIT;
	case CURLE_OUT_OF_MEMORY:
		return OP_ENOMEM;
	case CURLE_ABORTED_BY_CALLBACK:
		return OP_ECANCELED;
	default:
		/* GOT_NOTHING, SEND_ERROR, RECV_ERROR, PARTIAL_FILE, HTTP2...: the
		 * connection broke; another attempt may go through. */
		return OP_EIO;
	}
}

void op_httpc_url_for_humans(const char *url, char *out, size_t outlen)
{
	const char *s = strstr(url, "://");
	size_t scheme = s ? (size_t)(s + 3 - url) : 0;
	const char *host = url + scheme;
	/* Drop user info: it may hold a password. */
	size_t auth_end = strcspn(host, "/?#");
	const char *at = memchr(host, '@', auth_end);
	if (at)
		host = at + 1;
	snprintf(out, outlen, "%.*s%.*s", (int)scheme, url, (int)strcspn(host, "?#"), host);
}

/* ---- one exchange ---- */

struct xfer {
	struct op_httpc_resp *resp;
	size_t header_bytes;
	bool body_too_large, headers_too_large, nomem;
	const struct op_httpc_req *req;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	op_err rc = op_buf_add(&x->resp->body, p, size * n);
	if (rc == OP_ELIMIT)
		x->body_too_large = true;
	else if (rc)
		x->nomem = true;
	/* Less than given fails the transfer. */
	return rc ? 0 : size * n;
}

/* A header value as JSON text: valid UTF-8 as is, other bytes as U+FFFD. */
static cJSON *header_string(const char *v, size_t n)
{
	if (op_utf8_valid(v, n)) {
		char *s = op_strndup(v, n);
		cJSON *j = s ? cJSON_CreateString(s) : NULL;
		op_free(s);
		return j;
	}
	struct op_buf b;
	op_buf_init(&b, 4 * n + 1);
	op_err rc = OP_OK;
	for (size_t i = 0; i < n && rc == OP_OK;) {
		size_t ok = op_utf8_valid_len((const unsigned char *)v + i, n - i);
		rc = op_buf_add(&b, v + i, ok);
		i += ok;
		if (i < n && rc == OP_OK) {
			rc = op_buf_adds(&b, "\xEF\xBF\xBD");
			i++;
		}
	}
	cJSON *j = rc == OP_OK ? cJSON_CreateString(op_buf_str(&b)) : NULL;
	op_buf_fini(&b);
	return j;
}

static op_err header_add(cJSON *headers, const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	if (colon == NULL || colon == line)
		return OP_OK; /* not a header line; curl checked the syntax */
	char name[256];
	size_t nlen = (size_t)(colon - line);
	if (nlen >= sizeof(name))
		return OP_OK;
	for (size_t i = 0; i < nlen; i++) {
		char ch = line[i];
		name[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch);
	}
	name[nlen] = '\0';
	const char *v = colon + 1, *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	cJSON *old = cJSON_GetObjectItemCaseSensitive(headers, name);
	cJSON *val = NULL;
	if (old && cJSON_IsString(old)) {
		struct op_buf b;
		op_buf_init(&b, OP_HTTPC_HEADERS_MAX * 2);
		op_err rc = op_buf_adds(&b, old->valuestring);
		/* Set-Cookie values hold commas (Expires=Thu, 01 Jan ...), so
		 * RFC 6265 forbids folding them: one per line instead. */
		if (rc == OP_OK)
			rc = op_buf_adds(&b, strcmp(name, "set-cookie") == 0 ? "\n" : ", ");
		if (rc == OP_OK)
			rc = op_buf_add(&b, v, (size_t)(end - v));
		val = rc == OP_OK ? header_string(op_buf_str(&b), b.len) : NULL;
		op_buf_fini(&b);
		if (val == NULL)
			return OP_ENOMEM;
		return cJSON_ReplaceItemInObjectCaseSensitive(headers, name, val) ? OP_OK
		                                                                  : OP_ENOMEM;
	}
	val = header_string(v, (size_t)(end - v));
	if (val == NULL || !cJSON_AddItemToObject(headers, name, val)) {
		cJSON_Delete(val);
		return OP_ENOMEM;
	}
	return OP_OK;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = size * n;
	/* A status line starts the headers of another response (a redirect
	 * followed, an interim 100): only the last response's are kept. */
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		cJSON_Delete(x->resp->headers);
		x->resp->headers = cJSON_CreateObject();
		x->header_bytes = 0;
		if (x->resp->headers == NULL) {
			x->nomem = true;
			return 0;
		}
		return len;
	}
	x->header_bytes += len;
	if (x->header_bytes > OP_HTTPC_HEADERS_MAX) {
		x->headers_too_large = true;
		return 0;
	}
	if (x->resp->headers && header_add(x->resp->headers, p, len) != OP_OK) {
		x->nomem = true;
		return 0;
	}
	return len;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt, (void)dn, (void)ut, (void)un;
	const struct xfer *x = ud;
	return x->req->cancelled(x->req->cancel_ud) ? 1 : 0;
}

/* Frees a header list after wiping it: it may hold credentials. */
static void slist_wipe_free(struct curl_slist *l)
{
	for (struct curl_slist *i = l; i; i = i->next)
		explicit_bzero(i->data, strlen(i->data));
	curl_slist_free_all(l);
}

/* Appends "name: value" to *l (a copy); false on ENOMEM. */
static bool slist_add(struct curl_slist **l, const char *line)
{
	struct curl_slist *n = curl_slist_append(*l, line);
	if (n == NULL)
		return false;
	*l = n;
	return true;
}

/* Base64 of user ":" pass after prefix into a new string (op_free_secret). */
op_err op_httpc__basic(const char *prefix, const char *user, const char *pass, char **out)
{
	*out = NULL;
	size_t ul = strlen(user), pl = strlen(pass), n = ul + 1 + pl;
	size_t plen = strlen(prefix), cap = plen + (n + 2) / 3 * 4 + 1;
	char *pair = op_malloc(n + 1), *line = op_malloc(cap);
	op_err rc = pair && line ? OP_OK : OP_ENOMEM;
	if (rc == OP_OK) {
		memcpy(pair, user, ul);
		pair[ul] = ':';
		memcpy(pair + ul + 1, pass, pl);
		memcpy(line, prefix, plen);
		word32 outlen = (word32)(cap - plen);
		if (Base64_Encode_NoNl((const byte *)pair, (word32)n, (byte *)line + plen,
		                       &outlen) != 0 ||
		    plen + outlen >= cap)
			rc = OP_EINTERNAL;
		else
			line[plen + outlen] = '\0';
	}
	if (pair)
		op_free_secret(pair, n + 1);
	if (rc) {
		if (line)
			op_free_secret(line, cap);
		return rc;
	}
	*out = line;
	return OP_OK;
}

static op_err auth_line(const struct op_account *a, const char *token, char **out)
{
	*out = NULL;
	if (a->type == OP_ACCOUNT_BASIC)
		return op_httpc__basic("Authorization: Basic ", a->username, a->password, out);
	const char *t = a->type == OP_ACCOUNT_BEARER ? a->token : token;
	/* No token: not an account type that authenticates requests. */
	if (t == NULL || strpbrk(t, "\r\n"))
		return OP_EINVAL;
	size_t cap = strlen(t) + sizeof("Authorization: Bearer ");
	char *line = op_malloc(cap);
	if (line == NULL)
		return OP_ENOMEM;
	snprintf(line, cap, "Authorization: Bearer %s", t);
	*out = line;
	return OP_OK;
}

/* Why a transfer failed: the system's word for a socket error, else curl's. */
static const char *curl_reason(CURL *h, const char *errbuf, CURLcode cc, char *buf, size_t len)
{
	long os = 0;
	if (curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os) == CURLE_OK && os > 0 &&
	    cc != CURLE_OPERATION_TIMEDOUT)
		return strerror_r((int)os, buf, len);
	return errbuf[0] ? errbuf : curl_easy_strerror(cc);
}

#define SET(opt, val)                                           \
	do {                                                    \
		if (cc == CURLE_OK)                             \
			cc = curl_easy_setopt(h, (opt), (val)); \
	} while (0)

/* One request on handle h; auth is the Authorization line or NULL. */
static op_err exchange(CURL *h, const struct op_httpc_req *r, const char *auth,
                       struct op_httpc_resp *resp, char *why, size_t whylen)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	char where[512];
	op_httpc_url_for_humans(r->url, where, sizeof(where));
	struct curl_slist *hdrs = NULL;
	struct xfer x = {.resp = resp, .req = r};
	op_buf_init(&resp->body, r->max_body);
	resp->headers = cJSON_CreateObject();
	op_err rc = resp->headers ? OP_OK : OP_ENOMEM;
	for (size_t i = 0; i < r->n_headers && rc == OP_OK; i++) {
		const char *nm = r->headers[i].name, *v = r->headers[i].value;
		if (nm[0] == '\0' || strpbrk(nm, ":\r\n \t") || strpbrk(v, "\r\n")) {
			rc = op_errf(why, whylen, OP_EINVAL,
			             "header \"%.80s\": names are tokens and values single lines",
			             nm);
			break;
		}
		size_t n = strlen(nm) + strlen(v) + 3;
		char *line = op_malloc(n);
		if (line == NULL) {
			rc = OP_ENOMEM;
			break;
		}
		/* "name;" is how curl sends a header with an empty value. */
		snprintf(line, n, v[0] ? "%s: %s" : "%s;", nm, v);
		if (!slist_add(&hdrs, line))
			rc = OP_ENOMEM;
		op_free(line);
	}
	/* No "Expect: 100-continue" round trip before bodies. */
	if (rc == OP_OK && !slist_add(&hdrs, "Expect:"))
		rc = OP_ENOMEM;
	if (rc == OP_OK && auth && !slist_add(&hdrs, auth))
		rc = OP_ENOMEM;
	if (rc == OP_ENOMEM)
		op_errf(why, whylen, rc, "out of memory");
	if (rc)
		goto out;

	CURLcode cc = CURLE_OK;
	SET(CURLOPT_URL, r->url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
	SET(CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(r->connect_timeout_ms < r->timeout_ms ? r->connect_timeout_ms : r->timeout_ms));
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, &x);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, &x);
	SET(CURLOPT_HTTPHEADER, hdrs);
	SET(CURLOPT_ACCEPT_ENCODING, ""); /* whatever curl can decode */
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body);
	if (r->direct)
		SET(CURLOPT_NOPROXY, "*");
	if (r->follow_redirects) {
		SET(CURLOPT_FOLLOWLOCATION, 1L);
		SET(CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
	}
	if (r->cancelled) {
		SET(CURLOPT_XFERINFOFUNCTION, on_progress);
		SET(CURLOPT_XFERINFODATA, &x);
		SET(CURLOPT_NOPROGRESS, 0L);
	}
	if (r->ca_file)
		SET(CURLOPT_CAINFO, r->ca_file);
	if (r->insecure) {
		SET(CURLOPT_SSL_VERIFYPEER, 0L);
		SET(CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (r->cert) {
		struct curl_blob cert = {.data = r->cert->certificate,
		                         .len = strlen(r->cert->certificate),
		                         .flags = CURL_BLOB_COPY};
		struct curl_blob key = {.data = r->cert->private_key,
		                        .len = strlen(r->cert->private_key),
		                        .flags = CURL_BLOB_COPY};
		SET(CURLOPT_SSLCERT_BLOB, &cert);
		SET(CURLOPT_SSLCERTTYPE, "PEM");
		SET(CURLOPT_SSLKEY_BLOB, &key);
		SET(CURLOPT_SSLKEYTYPE, "PEM");
		if (r->cert->passphrase)
			SET(CURLOPT_KEYPASSWD, r->cert->passphrase);
	}
	const char *m = r->method;
	if (strcmp(m, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else if (strcmp(m, "GET") != 0 || r->body) {
		if (strcmp(m, "POST") != 0)
			SET(CURLOPT_CUSTOMREQUEST, m);
		if (r->body || strcmp(m, "GET") != 0) {
			SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->body ? r->body_len : 0));
			SET(CURLOPT_POSTFIELDS, r->body ? (const char *)r->body : "");
		}
	}
	if (cc != CURLE_OK) {
		rc = op_errf(why, whylen, op_httpc__from_curl(cc), "%s %s: %s", m, where,
		             curl_easy_strerror(cc));
		goto out;
	}
	long long t0 = op_mono_ms();
	cc = curl_easy_perform(h);
	resp->elapsed_ms = op_mono_ms() - t0;
	if (x.nomem) {
		rc = op_errf(why, whylen, OP_ENOMEM, "out of memory");
	} else if (x.body_too_large || cc == CURLE_FILESIZE_EXCEEDED) {
		rc = op_errf(why, whylen, OP_ELIMIT,
		             "%s %s: the response body is larger than maxResponseBytes (%zu)", m,
		             where, r->max_body);
	} else if (x.headers_too_large) {
		rc = op_errf(why, whylen, OP_ELIMIT,
		             "%s %s: the response headers are larger than %u bytes", m, where,
		             OP_HTTPC_HEADERS_MAX);
	} else if (cc == CURLE_OPERATION_TIMEDOUT) {
		rc = op_errf(why, whylen, OP_ETIMEOUT, "%s %s: no complete answer within %lld ms",
		             m, where, r->timeout_ms);
	} else if (cc == CURLE_ABORTED_BY_CALLBACK) {
		rc = op_errf(why, whylen, OP_ECANCELED, "%s %s: cancelled", m, where);
	} else if (cc != CURLE_OK) {
		char eb[128];
		rc = op_errf(why, whylen, op_httpc__from_curl(cc), "%s %s: %s", m, where,
		             curl_reason(h, errbuf, cc, eb, sizeof(eb)));
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	}
out:
	slist_wipe_free(hdrs);
	if (rc)
		op_httpc_resp_fini(resp);
	return rc;
}

op_err op_httpc__exchange(struct op_httpc *c, const struct op_httpc_req *r, const char *auth,
                          struct op_httpc_resp *resp, char *why, size_t whylen)
{
	memset(resp, 0, sizeof(*resp));
	CURL *h = handle_take(c);
	if (h == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	op_err rc = exchange(h, r, auth, resp, why, whylen);
	handle_give(c, h);
	return rc;
}

/* The exchange with the Authorization line of r->auth and token. */
static op_err exchange_as(struct op_httpc *c, const struct op_httpc_req *r, const char *token,
                          struct op_httpc_resp *resp, char *why, size_t whylen)
{
	char *auth = NULL;
	op_err rc = r->auth ? auth_line(r->auth, token, &auth) : OP_OK;
	if (rc == OP_EINVAL)
		return op_errf(why, whylen, rc,
		               "account %s: not a basic, bearer or oauth2 account, or its token is "
		               "not a single line",
		               r->auth->name);
	if (rc)
		return op_errf(why, whylen, rc, "out of memory");
	rc = op_httpc__exchange(c, r, auth, resp, why, whylen);
	if (auth)
		op_free_secret(auth, strlen(auth) + 1);
	return rc;
}

static long long left_ms(long long deadline)
{
	long long t = deadline - op_mono_ms();
	return t < 1 ? 1 : t;
}

op_err op_httpc_perform(struct op_httpc *c, const struct op_httpc_req *r,
                        struct op_httpc_resp *resp, char *why, size_t whylen)
{
	memset(resp, 0, sizeof(*resp));
	if (r->auth == NULL || r->auth->type != OP_ACCOUNT_OAUTH2)
		return exchange_as(c, r, NULL, resp, why, whylen);
	long long deadline = op_mono_ms() + r->timeout_ms;
	char *token = NULL;
	bool fresh = false;
	op_err rc = op_httpc__token_get(c, &c->tokens, r, false, &token, &fresh, why, whylen);
	if (rc)
		return rc;
	struct op_httpc_req rr = *r;
	rr.timeout_ms = left_ms(deadline);
	rc = exchange_as(c, &rr, token, resp, why, whylen);
	/* A cached token the server no longer takes (revoked, or its clock runs
	 * ahead of ours): one more token, one more try. */
	if (rc == OP_OK && resp->status == 401 && !fresh) {
		op_httpc__token_drop(&c->tokens, r->auth, token);
		op_free_secret(token, strlen(token) + 1);
		token = NULL;
		op_httpc_resp_fini(resp);
		rr.timeout_ms = left_ms(deadline);
		rc = op_httpc__token_get(c, &c->tokens, &rr, true, &token, &fresh, why, whylen);
		if (rc == OP_OK) {
			rr.timeout_ms = left_ms(deadline);
			rc = exchange_as(c, &rr, token, resp, why, whylen);
		}
	}
	if (token)
		op_free_secret(token, strlen(token) + 1);
	return rc;
}

void op_httpc_resp_fini(struct op_httpc_resp *resp)
{
	cJSON_Delete(resp->headers);
	resp->headers = NULL;
	op_buf_fini(&resp->body);
	resp->status = 0;
}

static bool unreserved(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

op_err op_httpc_escape(struct op_buf *b, const char *s, size_t n)
{
	static const char hexd[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[3] = {'%', hexd[ch >> 4], hexd[ch & 15]};
		op_err rc = unreserved(ch) ? op_buf_addc(b, (char)ch) : op_buf_add(b, esc, 3);
		if (rc)
			return rc;
	}
	return OP_OK;
}

op_err op_httpc_form_add(struct op_buf *b, const char *key, const char *value)
{
	op_err rc = b->len ? op_buf_addc(b, '&') : OP_OK;
	if (rc == OP_OK)
		rc = op_httpc_escape(b, key, strlen(key));
	if (rc == OP_OK)
		rc = op_buf_addc(b, '=');
	if (rc == OP_OK)
		rc = op_httpc_escape(b, value, strlen(value));
	return rc;
}

const char *op_httpc_error_code(op_err cls)
{
	switch (cls) {
	case OP_ETIMEOUT:
		return "HTTP_TIMEOUT";
	case OP_ENOCONN:
		return "HTTP_CONNECT";
	case OP_ELIMIT:
		return "HTTP_RESPONSE_TOO_LARGE";
	case OP_EPARSE:
		return "HTTP_BAD_RESPONSE";
	case OP_ENOMEM:
		return "NOMEM";
	default:
		return "HTTP_ERROR";
	}
}
