/*
 * The HTTP client connectors share (rest, and sap for OData): one exchange
 * with an HTTP(S) server through libcurl, the only place curl handles live.
 *
 * A client is a pool of curl handles and an OAuth2 token cache. Handles go
 * back to the pool after each exchange, so their live connections, TLS
 * sessions and DNS entries serve the next one (connection reuse). Tokens of
 * oauth2 accounts (client-credentials grant) are cached until shortly before
 * they expire, and fetched again once when the server answers 401 to a
 * cached token. Secrets the client builds (Authorization headers, token
 * requests, cached tokens) are wiped before they are freed.
 *
 * An exchange makes one attempt (plus that one 401 refetch) and classifies
 * what went wrong; retries belong to the engine. A client is thread-safe:
 * exchanges run on many execution threads at once.
 */
#ifndef OP_CONNECTORS_HTTPC_H
#define OP_CONNECTORS_HTTPC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/core/buf.h"
#include "agent/core/err.h"

struct op_account;
struct op_httpc;

/* Idle handles kept per client; more may be in use at once. */
#define OP_HTTPC_POOL_MAX 16
/* Bytes of response headers accepted (all of them, per response). */
#define OP_HTTPC_HEADERS_MAX (64u << 10)

/* A client with an empty pool. OP_ENOMEM, OP_EINTERNAL (libcurl failed to
 * initialise). */
op_err op_httpc_new(struct op_httpc **out) OP_WUR;
/* Closes the pooled connections and wipes the cached tokens. NULL is a no-op. */
void op_httpc_free(struct op_httpc *c);

struct op_httpc_header {
	const char *name; /* without ':' */
	const char *value;
};

struct op_httpc_req {
	const char *method; /* GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS */
	const char *url;    /* absolute http:// or https:// URL, query included */
	const struct op_httpc_header *headers;
	size_t n_headers;
	const void *body; /* NULL: no body */
	size_t body_len;
	/* Authentication: a basic, bearer or oauth2 account (Authorization
	 * header), or NULL. The caller must not set Authorization itself then. */
	const struct op_account *auth;
	/* A TLS client certificate: a certificate account, or NULL. */
	const struct op_account *cert;
	const char *ca_file;   /* PEM bundle to verify servers with; NULL: the system's */
	bool insecure;         /* skip server verification (never by default) */
	bool follow_redirects; /* up to 10, http and https only */
	bool direct;           /* never through a proxy (else curl's *_proxy variables) */
	long long timeout_ms;  /* the whole exchange, token fetch included */
	long long connect_timeout_ms;
	size_t max_body; /* response body bytes, after content decoding */
	/* Polled while waiting; true aborts the exchange (OP_ECANCELED). */
	bool (*cancelled)(void *ud);
	void *cancel_ud;
};

struct op_httpc_resp {
	long status;
	/* {lower-case name: value}; repeated names joined with ", ", but
	 * set-cookie values with "\n" (they hold commas themselves) */
	cJSON *headers;
	struct op_buf body;
	long long elapsed_ms;
};

/*
 * Runs one exchange. OP_OK when the server answered, whatever the status
 * (map it with op_httpc_status_class); resp must then be finished with
 * op_httpc_resp_fini. Otherwise resp is empty and why (whylen bytes) says
 * what went wrong, naming the host, never a secret:
 *   OP_ENOCONN    cannot resolve or connect, TLS handshake failed
 *   OP_ETIMEOUT   no complete answer within timeout_ms
 *   OP_EIO        the connection broke, the answer was cut short, or nothing came
 *   OP_EPARSE     the answer is not HTTP, or its encoding is broken
 *   OP_EAUTH      the server's certificate did not verify; the client
 *                 certificate or key is unusable; the token endpoint refused
 *                 the client credentials
 *   OP_ELIMIT     the body is larger than max_body, or the headers than
 *                 OP_HTTPC_HEADERS_MAX
 *   OP_EREJECTED  too many redirects
 *   OP_EINVAL     the URL, method or a header is not acceptable
 *   OP_ECONFIG    the CA file cannot be used
 *   OP_ECANCELED, OP_ENOMEM; and for an oauth2 account the class of the
 *   token endpoint's answer (op_httpc_status_class)
 */
op_err op_httpc_perform(struct op_httpc *c, const struct op_httpc_req *r,
                        struct op_httpc_resp *resp, char *why, size_t whylen) OP_WUR;

void op_httpc_resp_fini(struct op_httpc_resp *resp);

/*
 * The class of an HTTP status (house rule): 2xx OP_OK; 408 OP_ETIMEOUT, 429
 * OP_EBUSY, 5xx OP_ERETRY (retryable); 401 and 403 OP_EAUTH, 404 and 410
 * OP_ENOTFOUND, 413 OP_ELIMIT, other 4xx (and 1xx, 3xx: not followed)
 * OP_EREJECTED.
 */
op_err op_httpc_status_class(long status);

/* The step error code of an op_httpc_perform failure: HTTP_TIMEOUT,
 * HTTP_CONNECT, HTTP_RESPONSE_TOO_LARGE, HTTP_BAD_RESPONSE, NOMEM or
 * HTTP_ERROR. */
const char *op_httpc_error_code(op_err cls);

/* Appends n bytes at s percent-encoded: all but A-Z a-z 0-9 - . _ ~
 * (RFC 3986 unreserved), so the result fits a query or a form. OP_ELIMIT,
 * OP_ENOMEM (b as op_buf_add leaves it). */
op_err op_httpc_escape(struct op_buf *b, const char *s, size_t n) OP_WUR;
/* Appends key=value, both escaped, after a '&' unless b is empty. */
op_err op_httpc_form_add(struct op_buf *b, const char *key, const char *value) OP_WUR;

/* The origin and path of url (no user info, query or fragment), for
 * messages: query strings may carry keys. */
void op_httpc_url_for_humans(const char *url, char *out, size_t outlen);

#endif
