/*
 * The generic HTTP/1.1 server under HTTP triggers and the admin endpoint: a
 * thin, owned wrapper around libmicrohttpd's internal epoll thread pool. The
 * server reads a whole request (bounded by max_body), calls one handler on an
 * MHD thread with a complete request, and sends the response the handler
 * filled. Key invariant: every response, including the ones the server makes
 * itself (400, 413, 500, 503, 504), carries Content-Length, and every error
 * body has the one shape {"error":{"code":"...","message":"..."}}. No MHD
 * type leaves this module.
 */
#ifndef OP_HTTP_SERVER_H
#define OP_HTTP_SERVER_H

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/err.h"

#define OP_HTTP_DEFAULT_MAX_BODY       (5u * 1024 * 1024)
#define OP_HTTP_DEFAULT_REQUEST_MS     30000u
#define OP_HTTP_DEFAULT_CLIENT_TIMEOUT 30u
#define OP_HTTP_DEFAULT_HEADER_MS      10000u
#define OP_HTTP_DEFAULT_BODY_MS        60000u
#define OP_HTTP_DEFAULT_STOP_MS        5000u

/* Options; zero fields take the defaults. Strings are borrowed during start only. */
struct op_http_opts {
	const char *host;          /* address to bind, default "127.0.0.1" */
	uint16_t port;             /* 0 = ephemeral: see op_http_server_port() */
	unsigned threads;          /* MHD thread pool size, default 2 */
	size_t max_body;           /* bytes, default 5 MB; more is 413 */
	unsigned request_ms;       /* handler deadline, default 30 s; past it 504 */
	unsigned client_timeout;   /* seconds a connection may stay idle, default 30 */
	unsigned header_ms;        /* a header whole this long after its first line, 10 s */
	unsigned body_ms;          /* its body whole within this of the header, default 60 s */
	unsigned connection_limit; /* open connections before 503, default 1000 */
	unsigned per_ip_limit;     /* connections per client address, 0 = no limit */
	unsigned stop_ms;          /* how long stop waits for handlers and answers */
	const char *tls_cert;      /* PEM file of the server certificate (chain); NULL = plain */
	const char *tls_key;       /* PEM file of its private key */
	const char *name;          /* for log lines, default "http" */
	/* Called by op_http_server_stop once stop_ms passed with answers still
	 * missing, before the deferred ones among them are answered 503: the
	 * owner cancels the work that would answer them, and may wait (briefly)
	 * for it to answer itself. Gets ud (the handler's). NULL: none. */
	void (*give_up)(void *ud);
	/* Called with ud for every answer queued, on the thread that queues it:
	 * the handler's, deferred ones and the server's own (413, 503 past the
	 * connection limit or at a stop, 500). For counting. NULL: none. */
	void (*answered)(void *ud, int status);
};

/*
 * One complete request, valid only during the handler call. Strings are
 * NUL-terminated; body is also NUL-terminated but body_len is authoritative.
 */
struct op_http_request {
	const char *method;   /* "GET", "POST", ... */
	const char *path;     /* raw path, still percent-encoded, without the query */
	const cJSON *query;   /* object: decoded name -> string, repeated names -> array */
	const cJSON *headers; /* object: lower-case name -> value, repeats joined by ", " */
	const char *body;
	size_t body_len;
	const char *content_type;    /* the Content-Type header or "" */
	const char *remote_addr;     /* "127.0.0.1" or "::1" */
	uint64_t deadline_ms;        /* op_http_now_ms() value by which to answer */
	const atomic_bool *stopping; /* atomic_load: true once the server is stopping */
	void *conn;                  /* the server's, for op_http_defer() */
};

/*
 * What the handler fills. status 0 means "not set" (the server answers 500).
 * headers is an object name -> string (or array of strings for repeated
 * headers) or NULL; body is op_malloc'd. The server takes and frees all of it.
 */
struct op_http_response {
	int status;
	cJSON *headers;
	char *body;
	size_t body_len;
	char content_type[128];
	/* Set by the handler after op_http_defer(): the answer comes later
	 * through op_http_complete(); everything else here is ignored. */
	bool deferred;
};

/*
 * A request whose answer comes later, from any thread (e.g. after a durable
 * commit): the handler calls op_http_defer(req), hands the token to whoever
 * will answer, sets resp->deferred and returns at once; the connection is
 * suspended meanwhile, so a handler thread never waits for a disk. NULL
 * when out of memory (answer in resp instead). The token must be completed
 * exactly once, whatever happens to the request (also when the handler
 * does not set resp->deferred after all): completing frees the caller's
 * share of it.
 */
struct op_http_deferred;
struct op_http_deferred *op_http_defer(const struct op_http_request *req);
/*
 * Answers a deferred request with resp (taken, as from a handler). Safe at
 * any time, also after op_http_server_stop() returned: when the server
 * already answered the request (503 SHUTTING_DOWN at its stop) or the
 * connection is gone, resp is dropped. After the call d is invalid.
 */
void op_http_complete(struct op_http_deferred *d, struct op_http_response *resp);

/*
 * Called once per complete request on an MHD thread, concurrently from up
 * to opts.threads threads. Return OP_OK with resp filled; a non-OK class with
 * resp left empty makes the server answer with the matching status (timeout
 * 504, busy/full/nomem/retry/cancelled 503, limit 413, parse/invalid 400, notfound 404,
 * auth 401, anything else 500). The handler must honour req->deadline_ms and
 * *req->stopping: the server cannot interrupt it.
 */
typedef op_err (*op_http_handler)(const struct op_http_request *req, struct op_http_response *resp,
                                  void *ud);

struct op_http_server;

/*
 * Binds and starts serving. ud is passed to h and must outlive the server.
 * Errors: OP_ECONFIG (bad options, unreadable TLS files, TLS unsupported,
 * a certificate or key libmicrohttpd refuses), OP_EIO (cannot bind or
 * listen; err gives the system's reason, e.g. "cannot listen on
 * 127.0.0.1:8080: Address already in use"), OP_ENOMEM. err says which,
 * without opts.name: the caller names the listener. On error *out is NULL
 * and nothing is left running.
 */
op_err op_http_server_start(const struct op_http_opts *o, op_http_handler h, void *ud,
                            struct op_http_server **out, char *err, size_t errlen) OP_WUR;

/* The bound port (the ephemeral one when opts.port was 0). */
uint16_t op_http_server_port(const struct op_http_server *s);

/* Requests handed to the handler whose answer is not yet sent (or dropped). */
unsigned op_http_server_inflight(const struct op_http_server *s);

/*
 * Slow-client protection: shuts down every connection past its read
 * deadline (a request header not whole header_ms after the connection was
 * ready for it, a body not whole body_ms after its header), so that MHD
 * closes it, and returns how many. Call it about once a second, from one
 * thread, never after op_http_server_stop(); now_ms is op_http_now_ms() (a
 * test may pass a later time).
 */
unsigned op_http_server_sweep(struct op_http_server *s, uint64_t now_ms);

/*
 * Stops accepting, sets *req->stopping for running handlers, waits up to
 * opts.stop_ms for them to return and their answers to be sent (deferred
 * answers included). A deferred answer still outstanding then is not
 * waited for: its request is answered 503 {"error":{"code":"SHUTTING_DOWN"}}
 * with Retry-After (its completer's answer, when it comes, is dropped),
 * and stop waits a little more for those 503s to go out. Then it closes
 * every connection and frees s. Returns OP_ETIMEOUT when requests were
 * still unanswered after stop_ms (handlers still running: the stop then
 * also waits for them to return, as threads cannot be killed; or deferred
 * answers given up); OP_OK otherwise. NULL is a no-op.
 */
op_err op_http_server_stop(struct op_http_server *s);

/* CLOCK_MONOTONIC in milliseconds, the clock of deadline_ms. */
uint64_t op_http_now_ms(void);

/*
 * Parses the request body as JSON. Errors, with a user-facing text in err:
 * OP_EUNSUPPORTED when Content-Type is present and not JSON (answer 415);
 * OP_EPARSE for an empty body, a NUL byte or a syntax error, giving line and
 * column ("invalid JSON at line 3, column 7: ...") (answer 400); OP_ENOMEM.
 * On success *out is a new value the caller deletes; on error NULL.
 */
op_err op_http_json_body(const struct op_http_request *req, cJSON **out, char *err,
                         size_t errlen) OP_WUR;

/*
 * Sets resp to status with v printed as its JSON body (numbers kept exact).
 * v is borrowed. OP_ENOMEM leaves resp unchanged.
 */
op_err op_http_respond_json(struct op_http_response *resp, int status, const cJSON *v) OP_WUR;

/* Sets resp to status with {"error":{"code":code,"message":message}}. */
op_err op_http_respond_error(struct op_http_response *resp, int status, const char *code,
                             const char *message) OP_WUR;

/* Adds a response header (repeated names become repeated headers). OP_EINVAL for CR/LF. */
op_err op_http_response_header(struct op_http_response *resp, const char *name,
                               const char *value) OP_WUR;

/* Frees what resp holds and empties it. */
void op_http_response_fini(struct op_http_response *resp);

/* HTTP status for an error class, as described at op_http_handler. */
int op_http_status_for(op_err e);

#endif
