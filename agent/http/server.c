/*
 * The HTTP server: libmicrohttpd with its internal epoll thread pool. MHD
 * calls on_request() several times per request: once when the headers are
 * in (we check limits and may answer at once), once per body chunk (we copy
 * it into a capped buffer), and once more when the request is complete (we
 * call the handler and queue its response). Per-request state lives in
 * MHD's con_cls and is freed in on_completed(). MHD is told not to decode
 * anything (an identity unescape callback) so the router sees the raw path
 * and splits it before decoding; query arguments are decoded here. Key
 * invariant: the in-flight count is raised before a handler is called and
 * lowered when MHD reports the request completed (answer sent or connection
 * gone), under one mutex, so stop can wait for answers to go out. The listen
 * socket is bound here and handed to MHD, so that a failed bind tells the
 * system's reason (port in use, no permission, not this host's address).
 *
 * Deferred answers. A token (struct op_http_deferred) is shared by two
 * owners, each holding one reference: the connection, from op_http_defer()
 * until MHD reports the request completed (on_completed()), and the
 * completer, until op_http_complete(). The last one to let go frees it, so
 * the completer may come at any time, also after op_http_server_stop() has
 * freed the server: the token never points to the server. Invariants, each
 * under the token's lock:
 *  - d->done is set once, by the completer or by stop (a 503 when the
 *    answer did not come within stop_ms); whoever finds it set drops its
 *    own answer, so a request is answered once.
 *  - d->suspended is true from MHD_suspend_connection() (done on the
 *    handler's thread with the lock held, so "suspend" comes before
 *    "resume" whatever the threads) until one resume, by whoever set done.
 *    d->c is used only while d->suspended: MHD never closes a suspended
 *    connection, so it is alive.
 * The server lists live tokens (s->defs, under s->mu, no reference of its
 * own) from op_http_defer() to on_completed(); stop takes a reference on
 * each under s->mu, answers 503 what is not done and resumes what is
 * suspended, then waits (bounded) for the resumed connections to complete,
 * because MHD_stop_daemon() aborts the process on a suspended connection.
 * Tokens made after that are born answered. So once stop returns every
 * token is done and has no connection: a late completer only drops its
 * answer and its reference. Lock order: a token's lock, then MHD's own
 * locks (suspend, resume), then s->mu (MHD's logger callback takes it);
 * s->mu is never held while taking another lock or calling MHD.
 *
 * Read deadlines (slow-client protection). MHD's idle timeout does not stop
 * a client that trickles a byte now and then. Each connection (struct conn,
 * MHD's socket_context) carries a deadline: once a request's first line is
 * in (on_uri), its header must be whole within header_ms, then its body
 * within body_ms; while a handler runs or an answer goes out there is none;
 * a connection waiting for a request (new, or kept alive) gets the longer
 * of header_ms and the idle timeout, and closing it is not counted as a
 * slow client. op_http_server_sweep() shuts down the socket of every
 * connection past its deadline, and MHD, reading end of file, closes it.
 *  - The list is under s->cmu, and MHD reports a connection closed
 *    (on_connection, which takes s->cmu) before it closes the socket, so
 *    the sweep never shuts down a descriptor number already reused.
 *  - The sweep claims a connection by swapping its deadline for SHUT; the
 *    MHD thread swaps in each new deadline and, finding SHUT, drops the
 *    request rather than run a handler whose answer would be lost.
 *  - Handlers run on the MHD threads, and a busy thread reads none of its
 *    other connections: the sweep spares connections whose thread is in a
 *    handler or left one less than BUSY_GRACE_MS ago.
 */
#include "agent/http/server.h"
#include "agent/core/b64.h"
#include "agent/core/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OP_LOG_MODULE "http"
#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "agent/core/log.h"

/* Connections MHD accepts beyond connection_limit so that we can answer 503. */
#define CONN_SLACK 64u

/* How long stop waits for the worker threads to send the 503s of the
 * deferred answers it gave up on. */
#define STOP_ANSWER_MS 2000u

/* What a deferred request gets when the server stops before its answer came. */
#define STOPPING_CODE    "SHUTTING_DOWN"
#define STOPPING_MESSAGE "the agent is stopping; the request was not accepted, send it again"
#define STOPPING_RETRY   "5"

/* What a connection's deadline is when the sweep has shut it down. */
#define SHUT UINT64_MAX
/* How long after its last handler an MHD thread's connections are spared. */
#define BUSY_GRACE_MS 1000u

/* An MHD thread, claimed by its first connection. */
struct worker {
	atomic_ulong tid;                /* pthread_self(); 0: free */
	atomic_uint_fast64_t busy_since; /* in a handler since; 0: not */
	atomic_uint_fast64_t idle_since; /* when its last handler returned */
};

/* A connection's read deadline: see "Read deadlines" above. */
struct conn {
	struct conn *prev, *next; /* in s->live, under s->cmu */
	int fd;
	struct worker *w;            /* the thread serving it; NULL: unknown */
	atomic_uint_fast64_t due_ms; /* op_http_now_ms() deadline; 0: none; SHUT */
	atomic_bool request;         /* a request's first line is in */
};

struct op_http_server {
	struct MHD_Daemon *d;
	op_http_handler h;
	void *ud;
	size_t max_body;
	unsigned request_ms;
	unsigned header_ms, body_ms;
	unsigned connection_limit;
	unsigned stop_ms;
	void (*give_up)(void *ud);
	void (*answered)(void *ud, int status);
	uint16_t port;
	char name[32];
	atomic_uint conns;
	atomic_bool stopping;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* signalled when inflight or parked drops */
	unsigned inflight;
	unsigned parked; /* suspended connections not yet completed */
	bool late;       /* stop has answered the deferred: new tokens are born done */
	struct op_http_deferred *defs; /* tokens whose connection is live */
	char *cert;
	char *key;
	size_t key_len;
	char mhd_err[160]; /* libmicrohttpd's last message (cut), under mu: why a start failed */
	pthread_mutex_t cmu;
	struct conn *live; /* every connection, for the sweep */
	unsigned idle_ms;  /* a connection's deadline while it waits for a request */
	struct worker *workers;
	unsigned nworkers;
};

/*
 * A deferred answer: made by op_http_defer(), answered once (done) by
 * op_http_complete() or by stop, queued by on_request() when MHD calls it
 * again after the resume. Shared by the connection and the completer; see
 * the invariants at the top of the file.
 */
struct op_http_deferred {
	pthread_mutex_t mu;
	atomic_uint refs;         /* the connection's and the completer's */
	struct MHD_Connection *c; /* under mu; NULL once the connection completed */
	bool suspended;           /* under mu: suspended, its one resume not yet asked */
	bool done;                /* under mu: resp holds the answer */
	struct op_http_response resp;
	/* Under the server's mu: */
	struct op_http_deferred *prev, *next; /* in s->defs while the connection is live */
	bool seen;                            /* stop has dealt with it */
};

struct reqstate {
	struct op_buf body;
	bool too_large; /* the body passed max_body; it is being dropped */
	size_t dropped;
	bool nomem;
	bool counted;                 /* in s->inflight until completed */
	bool answered;                /* a response was queued early; ignore the rest */
	struct op_http_deferred *def; /* a deferred answer: our reference, until completed */
	bool def_queued;              /* its answer is queued */
	bool parked;                  /* counted in s->parked until completed */
	struct MHD_Connection *conn;  /* for op_http_defer() */
	struct op_http_server *server;
	struct conn *k; /* the connection's deadline; NULL if it has none */
};

uint64_t op_http_now_ms(void)
{
	return (uint64_t)op_mono_ms();
}

static void fail(char *err, size_t errlen, const char *fmt, ...) OP_PRINTF(3, 4);
static void fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int op_http_status_for(op_err e)
{
	switch (e) {
	case OP_OK:
		return 200;
	case OP_ETIMEOUT:
		return 504;
	case OP_EBUSY:
	case OP_EFULL:
	case OP_ENOMEM:
	case OP_ERETRY:
	case OP_ECANCELED: /* the agent is stopping */
		return 503;
	case OP_ELIMIT:
		return 413;
	case OP_EPARSE:
	case OP_EINVAL:
		return 400;
	case OP_ENOTFOUND:
		return 404;
	case OP_EAUTH:
		return 401;
	case OP_EUNSUPPORTED:
		return 415;
	default:
		return 500;
	}
}

void op_http_response_fini(struct op_http_response *resp)
{
	cJSON_Delete(resp->headers);
	op_free(resp->body);
	memset(resp, 0, sizeof(*resp));
}

op_err op_http_respond_json(struct op_http_response *resp, int status, const cJSON *v)
{
	char *text = op_json_print(v, OP_JSON_COMPACT);
	if (text == NULL)
		return OP_ENOMEM;
	op_free(resp->body);
	resp->body = text;
	resp->body_len = strlen(text);
	resp->status = status;
	snprintf(resp->content_type, sizeof(resp->content_type), "application/json");
	return OP_OK;
}

/* Appends {"error":{"code":...,"message":...}} to b. */
static op_err error_body(struct op_buf *b, const char *code, const char *message)
{
	op_err e = op_buf_adds(b, "{\"error\":{\"code\":");
	if (e == OP_OK)
		e = op_json_append_string(b, code, strlen(code));
	if (e == OP_OK)
		e = op_buf_adds(b, ",\"message\":");
	if (e == OP_OK)
		e = op_json_append_string(b, message, strlen(message));
	if (e == OP_OK)
		e = op_buf_adds(b, "}}");
	return e;
}

op_err op_http_respond_error(struct op_http_response *resp, int status, const char *code,
                             const char *message)
{
	struct op_buf b;
	op_buf_init(&b, 1 << 20);
	op_err e = error_body(&b, code, message);
	if (e != OP_OK) {
		op_buf_fini(&b);
		return e;
	}
	op_free(resp->body);
	resp->body_len = b.len;
	resp->body = op_buf_take(&b);
	resp->status = status;
	snprintf(resp->content_type, sizeof(resp->content_type), "application/json");
	return OP_OK;
}

op_err op_http_response_header(struct op_http_response *resp, const char *name, const char *value)
{
	if (strpbrk(name, "\r\n: ") != NULL || name[0] == '\0' || strpbrk(value, "\r\n") != NULL)
		return OP_EINVAL;
	if (resp->headers == NULL) {
		resp->headers = cJSON_CreateObject();
		if (resp->headers == NULL)
			return OP_ENOMEM;
	}
	cJSON *v = cJSON_CreateString(value);
	if (v == NULL)
		return OP_ENOMEM;
	cJSON *old = cJSON_GetObjectItemCaseSensitive(resp->headers, name);
	if (old == NULL) {
		if (!cJSON_AddItemToObject(resp->headers, name, v))
			goto nomem;
		return OP_OK;
	}
	if (!cJSON_IsArray(old)) {
		cJSON *arr = cJSON_CreateArray();
		if (arr == NULL)
			goto nomem;
		cJSON_DetachItemViaPointer(resp->headers, old);
		cJSON_AddItemToArray(arr, old);
		if (!cJSON_AddItemToObject(resp->headers, name, arr)) {
			cJSON_Delete(arr);
			goto nomem;
		}
		old = arr;
	}
	if (!cJSON_AddItemToArray(old, v))
		goto nomem;
	return OP_OK;
nomem:
	cJSON_Delete(v);
	return OP_ENOMEM;
}

op_err op_http_json_body(const struct op_http_request *req, cJSON **out, char *err, size_t errlen)
{
	*out = NULL;
	if (req->content_type[0] != '\0' && !op_json_media_type(req->content_type)) {
		fail(err, errlen,
		     "expected a JSON body (Content-Type: application/json), got \"%.64s\"",
		     req->content_type);
		return OP_EUNSUPPORTED;
	}
	if (req->body_len == 0) {
		fail(err, errlen, "the request body is empty; a JSON document was expected");
		return OP_EPARSE;
	}
	/* The server NUL-terminates bodies. */
	op_err rc = op_json_parse(req->body, req->body_len, out, err, errlen);
	return rc == OP_ENOMEM ? OP_ENOMEM : rc ? OP_EPARSE : OP_OK;
}

/* --- MHD glue ------------------------------------------------------------ */

static void free_body(void *p)
{
	op_free(p);
}

/*
 * Queues status with body (taken; may be NULL) and the given headers, always
 * with a Content-Length (MHD adds it for buffer responses).
 */
static enum MHD_Result queue(struct op_http_server *s, struct MHD_Connection *c, int status,
                             char *body, size_t len, const char *ctype, const cJSON *headers,
                             const char *allow, bool close)
{
	struct MHD_Response *r;
	if (body != NULL) {
		r = MHD_create_response_from_buffer_with_free_callback(len, body, free_body);
		if (r == NULL)
			op_free(body);
	} else {
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	}
	if (r == NULL)
		return MHD_NO; /* out of memory: MHD closes the connection */
	bool ok = true;
	const cJSON *h;
	cJSON_ArrayForEach (h, headers) {
		if (cJSON_IsString(h)) {
			ok = ok && MHD_add_response_header(r, h->string, h->valuestring) == MHD_YES;
			continue;
		}
		const cJSON *v;
		cJSON_ArrayForEach (v, h) {
			if (cJSON_IsString(v))
				ok = ok && MHD_add_response_header(r, h->string, v->valuestring) ==
				               MHD_YES;
		}
	}
	if (ctype != NULL && ctype[0] != '\0')
		ok = ok &&
		     MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) == MHD_YES;
	if (allow != NULL && allow[0] != '\0')
		ok = ok && MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow) == MHD_YES;
	if (close || atomic_load(&s->stopping))
		ok = ok &&
		     MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") == MHD_YES;
	if (!ok) {
		/* A handler set a header MHD refuses (bad characters): that is our 500. */
		MHD_destroy_response(r);
		OP_LOGW("%s: response header refused, answering 500", s->name);
		struct op_buf b;
		op_buf_init(&b, 4096);
		if (error_body(&b, "internal", "the response had an invalid header") != OP_OK) {
			op_buf_fini(&b);
			return MHD_NO;
		}
		size_t n = b.len;
		return queue(s, c, 500, op_buf_take(&b), n, "application/json", NULL, NULL, close);
	}
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	if (ret == MHD_YES && s->answered != NULL)
		s->answered(s->ud, status);
	return ret;
}

static enum MHD_Result queue_error(struct op_http_server *s, struct MHD_Connection *c, int status,
                                   const char *code, const char *message, bool close)
{
	struct op_buf b;
	op_buf_init(&b, 4096);
	if (error_body(&b, code, message) != OP_OK) {
		op_buf_fini(&b);
		return MHD_NO;
	}
	size_t n = b.len;
	return queue(s, c, status, op_buf_take(&b), n, "application/json", NULL, NULL, close);
}

/* Decodes a query component in place ('+' is a space). False on bad %XX or NUL. */
static bool query_decode(char *s)
{
	char *w = s;
	for (const char *r = s; *r != '\0'; r++) {
		if (*r == '+') {
			*w++ = ' ';
		} else if (*r == '%') {
			int hi = op_hex_value((unsigned char)r[1]);
			int lo = hi < 0 ? -1 : op_hex_value((unsigned char)r[2]);
			if (lo < 0 || (hi == 0 && lo == 0))
				return false;
			*w++ = (char)(hi * 16 + lo);
			r += 2;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return true;
}

struct collect {
	cJSON *obj;
	op_err e;
};

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
	struct collect *co = cls;
	(void)kind;
	char *name = op_strdup(key);
	if (name == NULL) {
		co->e = OP_ENOMEM;
		return MHD_NO;
	}
	for (char *p = name; *p; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	value = value ? value : "";
	cJSON *old = cJSON_GetObjectItemCaseSensitive(co->obj, name);
	if (old != NULL) {
		/* RFC 9110: repeated fields are one comma-separated list. */
		size_t n = strlen(old->valuestring) + strlen(value) + 3;
		char *j = op_malloc(n);
		if (j != NULL)
			snprintf(j, n, "%s, %s", old->valuestring, value);
		bool ok = j != NULL && cJSON_SetValuestring(old, j) != NULL;
		op_free(j);
		op_free(name);
		if (!ok) {
			co->e = OP_ENOMEM;
			return MHD_NO;
		}
		return MHD_YES;
	}
	cJSON *v = cJSON_CreateString(value);
	if (v == NULL || !cJSON_AddItemToObject(co->obj, name, v)) {
		cJSON_Delete(v);
		op_free(name);
		co->e = OP_ENOMEM;
		return MHD_NO;
	}
	op_free(name);
	return MHD_YES;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	struct collect *co = cls;
	(void)kind;
	char *k = op_strdup(key);
	char *v = op_strdup(value ? value : "");
	cJSON *sv = NULL;
	if (k == NULL || v == NULL) {
		co->e = OP_ENOMEM;
		goto out;
	}
	if (!query_decode(k) || !query_decode(v)) {
		co->e = OP_EINVAL;
		goto out;
	}
	sv = cJSON_CreateString(v);
	if (sv == NULL) {
		co->e = OP_ENOMEM;
		goto out;
	}
	cJSON *old = cJSON_GetObjectItemCaseSensitive(co->obj, k);
	if (old == NULL) {
		if (!cJSON_AddItemToObject(co->obj, k, sv))
			co->e = OP_ENOMEM;
		else
			sv = NULL;
		goto out;
	}
	if (!cJSON_IsArray(old)) {
		cJSON *arr = cJSON_CreateArray();
		if (arr == NULL) {
			co->e = OP_ENOMEM;
			goto out;
		}
		cJSON_DetachItemViaPointer(co->obj, old);
		cJSON_AddItemToArray(arr, old);
		if (!cJSON_AddItemToObject(co->obj, k, arr)) {
			cJSON_Delete(arr);
			co->e = OP_ENOMEM;
			goto out;
		}
		old = arr;
	}
	if (!cJSON_AddItemToArray(old, sv))
		co->e = OP_ENOMEM;
	else
		sv = NULL;
out:
	cJSON_Delete(sv);
	op_free(k);
	op_free(v);
	return co->e == OP_OK ? MHD_YES : MHD_NO;
}

static void remote_addr(struct MHD_Connection *c, char *out, size_t outlen)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	snprintf(out, outlen, "unknown");
	if (ci == NULL || ci->client_addr == NULL)
		return;
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
		          (socklen_t)outlen);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		          out, (socklen_t)outlen);
}

/* The 503 of a deferred request the server stops before its answer came. */
static void stopping_answer(struct op_http_response *r)
{
	op_err e = op_http_respond_error(r, 503, STOPPING_CODE, STOPPING_MESSAGE);
	if (e == OP_OK)
		e = op_http_response_header(r, "Retry-After", STOPPING_RETRY);
	if (e != OP_OK) {
		op_http_response_fini(r);
		r->status = 503; /* out of memory: an empty 503 */
	}
}

/* Drops one reference; the last one frees the token and its answer. */
static void deferred_release(struct op_http_deferred *d)
{
	if (atomic_fetch_sub(&d->refs, 1) != 1)
		return;
	op_http_response_fini(&d->resp);
	pthread_mutex_destroy(&d->mu);
	op_free(d);
}

struct op_http_deferred *op_http_defer(const struct op_http_request *req)
{
	struct reqstate *st = req->conn;
	if (st == NULL || st->def)
		return NULL;
	struct op_http_server *s = st->server;
	struct op_http_deferred *d = op_calloc(1, sizeof(*d));
	if (d == NULL || pthread_mutex_init(&d->mu, NULL) != 0) {
		op_free(d);
		return NULL;
	}
	atomic_init(&d->refs, 2);
	d->c = st->conn;
	pthread_mutex_lock(&s->mu);
	bool late = s->late;
	d->seen = late;
	d->next = s->defs;
	if (s->defs != NULL)
		s->defs->prev = d;
	s->defs = d;
	pthread_mutex_unlock(&s->mu);
	if (late) {
		/* Stop has already answered the others: this one is, too. */
		pthread_mutex_lock(&d->mu);
		stopping_answer(&d->resp);
		d->done = true;
		pthread_mutex_unlock(&d->mu);
	}
	st->def = d;
	return d;
}

void op_http_complete(struct op_http_deferred *d, struct op_http_response *resp)
{
	pthread_mutex_lock(&d->mu);
	if (d->done) {
		/* The server answered 503 at its stop: this answer goes nowhere. */
		pthread_mutex_unlock(&d->mu);
		op_http_response_fini(resp);
		deferred_release(d);
		return;
	}
	d->resp = *resp;
	memset(resp, 0, sizeof(*resp));
	d->done = true;
	if (d->suspended) {
		d->suspended = false;
		MHD_resume_connection(d->c); /* MHD calls on_request() again */
	}
	pthread_mutex_unlock(&d->mu);
	deferred_release(d);
}

/* Queues a done deferred answer; the token stays ours until on_completed(). */
static enum MHD_Result queue_deferred(struct op_http_server *s, struct MHD_Connection *c,
                                      struct reqstate *st)
{
	struct op_http_response *r = &st->def->resp;
	enum MHD_Result ret;
	/* A keep-alive connection would only get 503 for its next request. */
	bool close = atomic_load(&s->stopping);
	st->def_queued = true;
	if (r->status < 100 || r->status > 999) {
		ret = queue_error(s, c, 500, "internal", "the deferred answer has no valid status",
		                  close);
	} else {
		char *body = r->body;
		r->body = NULL;
		ret = queue(s, c, r->status, body, r->body_len, r->content_type, r->headers, NULL,
		            close);
	}
	op_http_response_fini(r);
	return ret;
}

static enum MHD_Result dispatch(struct op_http_server *s, struct MHD_Connection *c, const char *url,
                                const char *method, struct reqstate *st)
{
	struct op_http_response resp;
	struct collect hq = {NULL, OP_OK}, qq = {NULL, OP_OK};
	enum MHD_Result ret = MHD_NO;
	char addr[INET6_ADDRSTRLEN + 1];
	memset(&resp, 0, sizeof(resp));

	hq.obj = cJSON_CreateObject();
	qq.obj = cJSON_CreateObject();
	if (hq.obj == NULL || qq.obj == NULL) {
		ret = queue_error(s, c, 503, "nomem", "out of memory", true);
		goto out;
	}
	MHD_get_connection_values(c, MHD_HEADER_KIND, collect_header, &hq);
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &qq);
	if (hq.e == OP_ENOMEM || qq.e == OP_ENOMEM) {
		ret = queue_error(s, c, 503, "nomem", "out of memory", true);
		goto out;
	}
	if (qq.e != OP_OK) {
		ret = queue_error(s, c, 400, "invalid", "malformed percent-encoding in the query",
		                  false);
		goto out;
	}
	remote_addr(c, addr, sizeof(addr));
	const cJSON *ct = cJSON_GetObjectItemCaseSensitive(hq.obj, "content-type");
	struct op_http_request req = {
	    .method = method,
	    .path = url,
	    .query = qq.obj,
	    .headers = hq.obj,
	    .body = st->body.data ? st->body.data : "",
	    .body_len = st->body.len,
	    .content_type = cJSON_IsString(ct) ? ct->valuestring : "",
	    .remote_addr = addr,
	    .deadline_ms = op_http_now_ms() + s->request_ms,
	    .stopping = &s->stopping,
	    .conn = st,
	};
	st->conn = c;
	st->server = s;

	/* Counted until on_completed(): stop waits for the answer to be sent, too. */
	pthread_mutex_lock(&s->mu);
	s->inflight++;
	pthread_mutex_unlock(&s->mu);
	st->counted = true;
	op_err e = s->h(&req, &resp, s->ud);

	if (e == OP_OK && resp.deferred && st->def) {
		struct op_http_deferred *d = st->def;
		pthread_mutex_lock(&d->mu);
		if (d->done) {
			/* Already answered on another thread: send it now. */
			pthread_mutex_unlock(&d->mu);
			ret = queue_deferred(s, c, st);
		} else {
			d->suspended = true;
			st->parked = true;
			pthread_mutex_lock(&s->mu);
			s->parked++;
			pthread_mutex_unlock(&s->mu);
			MHD_suspend_connection(c);
			pthread_mutex_unlock(&d->mu);
			ret = MHD_YES;
		}
		goto out;
	}
	if (resp.status == 0) {
		int status = e == OP_OK ? 500 : op_http_status_for(e);
		const char *msg = e == OP_OK ? "the handler produced no response" : op_err_str(e);
		ret =
		    queue_error(s, c, status, e == OP_OK ? "internal" : op_err_name(e), msg, false);
		goto out;
	}
	if (resp.status < 100 || resp.status > 999) {
		ret =
		    queue_error(s, c, 500, "internal", "the handler set an invalid status", false);
		goto out;
	}
	char *body = resp.body;
	resp.body = NULL;
	ret = queue(s, c, resp.status, body, resp.body_len, resp.content_type, resp.headers, NULL,
	            false);
out:
	op_http_response_fini(&resp);
	cJSON_Delete(hq.obj);
	cJSON_Delete(qq.obj);
	return ret;
}

/* The calling MHD thread's slot, claimed on first use; NULL if all are taken. */
static struct worker *worker_self(struct op_http_server *s)
{
	unsigned long me = (unsigned long)pthread_self();
	for (unsigned i = 0; i < s->nworkers; i++)
		if (atomic_load(&s->workers[i].tid) == me)
			return &s->workers[i];
	for (unsigned i = 0; i < s->nworkers; i++) {
		unsigned long free_slot = 0;
		if (atomic_compare_exchange_strong(&s->workers[i].tid, &free_slot, me))
			return &s->workers[i];
	}
	return NULL;
}

/* Connection c's deadline record, or NULL. */
static struct conn *conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

/* Sets k's deadline to due; false when the sweep has shut k down. */
static bool due_set(struct conn *k, uint64_t due)
{
	if (k == NULL)
		return true;
	uint64_t was = atomic_load(&k->due_ms);
	do {
		if (was == SHUT)
			return false;
	} while (!atomic_compare_exchange_weak(&k->due_ms, &was, due));
	return true;
}

/* MHD_OPTION_URI_LOG_CALLBACK: a request's first line is in. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct op_http_server *s = cls;
	(void)uri;
	struct conn *k = conn_of(c);
	if (k != NULL) {
		atomic_store(&k->request, true);
		(void)due_set(k, op_http_now_ms() + s->header_ms);
	}
	return NULL; /* *con_cls stays NULL for on_request's first call */
}

static enum MHD_Result queue_413(struct op_http_server *s, struct MHD_Connection *c)
{
	char msg[96];
	snprintf(msg, sizeof(msg), "the request body is larger than %zu bytes", s->max_body);
	return queue_error(s, c, 413, "limit", msg, true);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
	struct op_http_server *s = cls;
	struct reqstate *st = *con_cls;
	(void)version;
	if (st == NULL) {
		st = op_calloc(1, sizeof(*st));
		if (st == NULL)
			return MHD_NO;
		op_buf_init(&st->body, s->max_body);
		*con_cls = st;
		st->k = conn_of(c);
		if (!due_set(st->k, op_http_now_ms() + s->body_ms))
			return MHD_NO; /* the sweep shut it down */
		if (atomic_load(&s->conns) > s->connection_limit) {
			st->answered = true;
			return queue_error(s, c, 503, "busy",
			                   "too many connections, try again later", true);
		}
		if (atomic_load(&s->stopping)) {
			st->answered = true;
			return queue_error(s, c, 503, "stopping",
			                   "the server is shutting down, try again later", true);
		}
		const char *cl =
		    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl != NULL) {
			char *end;
			errno = 0;
			unsigned long long n = strtoull(cl, &end, 10);
			if (errno == 0 && *end == '\0' && n > s->max_body) {
				st->answered = true;
				return queue_413(s, c); /* before reading any of the body */
			}
		}
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (st->answered || st->nomem)
			return MHD_YES;
		if (st->too_large) {
			/*
			 * MHD 0.9.75 cannot queue a response in the middle of a body, so
			 * a chunked body past the limit is read and dropped to its end
			 * for the 413, but only up to another max_body: an endless
			 * stream gets its connection closed instead.
			 */
			st->dropped += n;
			return st->dropped > s->max_body ? MHD_NO : MHD_YES;
		}
		op_err e = op_buf_add(&st->body, upload_data, n);
		if (e == OP_ELIMIT) {
			st->too_large = true;
			st->dropped = n;
			op_buf_fini(&st->body);
		} else if (e != OP_OK) {
			st->nomem = true;
		}
		return MHD_YES;
	}
	if (!due_set(st->k, 0)) /* the whole request is in */
		return MHD_NO;  /* but the sweep shut the connection down */
	if (st->def != NULL && !st->def_queued) {
		/* Called again after op_http_complete() or stop resumed us. */
		bool done;
		pthread_mutex_lock(&st->def->mu);
		done = st->def->done;
		pthread_mutex_unlock(&st->def->mu);
		return done ? queue_deferred(s, c, st) : MHD_YES;
	}
	if (st->answered)
		return MHD_YES;
	st->answered = true;
	if (st->too_large)
		return queue_413(s, c);
	if (st->nomem)
		return queue_error(s, c, 503, "nomem", "out of memory", true);
	/* While the handler runs this thread reads none of its connections. */
	struct worker *w = st->k ? st->k->w : NULL;
	if (w)
		atomic_store(&w->busy_since, op_http_now_ms());
	enum MHD_Result r = dispatch(s, c, url, method, st);
	if (w) {
		atomic_store(&w->idle_since, op_http_now_ms());
		atomic_store(&w->busy_since, 0);
	}
	return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct op_http_server *s = cls;
	(void)c;
	(void)toe;
	struct reqstate *st = *con_cls;
	if (st == NULL)
		return;
	/* The connection now waits for its next request. */
	if (st->k) {
		atomic_store(&st->k->request, false);
		(void)due_set(st->k, op_http_now_ms() + s->idle_ms);
	}
	struct op_http_deferred *d = st->def;
	if (st->counted || d != NULL) {
		pthread_mutex_lock(&s->mu);
		if (st->counted)
			s->inflight--;
		if (st->parked)
			s->parked--;
		if (d != NULL) {
			if (d->prev != NULL)
				d->prev->next = d->next;
			else
				s->defs = d->next;
			if (d->next != NULL)
				d->next->prev = d->prev;
		}
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
	}
	if (d != NULL) {
		/* Never suspended here: MHD completes no suspended connection.
		 * The answer, if it comes later, goes nowhere. */
		pthread_mutex_lock(&d->mu);
		d->c = NULL;
		d->suspended = false;
		pthread_mutex_unlock(&d->mu);
		deferred_release(d);
	}
	op_buf_fini(&st->body);
	op_free(st);
	*con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
	struct op_http_server *s = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		atomic_fetch_add(&s->conns, 1);
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		/* Without memory the connection goes without a deadline. */
		struct conn *k = ci ? op_calloc(1, sizeof(*k)) : NULL;
		if (k == NULL)
			return;
		k->fd = ci->connect_fd;
		k->w = worker_self(s);
		atomic_init(&k->request, false);
		atomic_init(&k->due_ms, op_http_now_ms() + s->idle_ms);
		pthread_mutex_lock(&s->cmu);
		k->next = s->live;
		if (s->live)
			s->live->prev = k;
		s->live = k;
		pthread_mutex_unlock(&s->cmu);
		*socket_context = k;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		atomic_fetch_sub(&s->conns, 1);
		struct conn *k = *socket_context;
		if (k == NULL)
			return;
		pthread_mutex_lock(&s->cmu);
		if (k->prev)
			k->prev->next = k->next;
		else
			s->live = k->next;
		if (k->next)
			k->next->prev = k->prev;
		pthread_mutex_unlock(&s->cmu);
		op_free(k);
		*socket_context = NULL;
	}
}

unsigned op_http_server_sweep(struct op_http_server *s, uint64_t now_ms)
{
	unsigned n = 0, idle = 0;
	if (s == NULL)
		return 0;
	pthread_mutex_lock(&s->cmu);
	for (struct conn *k = s->live; k; k = k->next) {
		uint64_t due = atomic_load(&k->due_ms);
		if (due == 0 || due == SHUT || now_ms < due)
			continue;
		if (k->w && (atomic_load(&k->w->busy_since) != 0 ||
		             now_ms < atomic_load(&k->w->idle_since) + BUSY_GRACE_MS))
			continue; /* its thread could not read it */
		if (!atomic_compare_exchange_strong(&k->due_ms, &due, SHUT))
			continue; /* its thread moved on meanwhile */
		/* Read first: once shut down, MHD may end the request at once. */
		if (atomic_load(&k->request))
			n++;
		else
			idle++;
		/* MHD reads end of file and closes the connection. */
		(void)shutdown(k->fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&s->cmu);
	if (n > 0)
		OP_LOGW("%s: closed %u connection%s that sent no whole request in time "
		        "(header within %u ms, body within %u ms)",
		        s->name, n, n == 1 ? "" : "s", s->header_ms, s->body_ms);
	if (idle > 0)
		OP_LOGD("%s: closed %u connection%s that sent no request in %u ms", s->name, idle,
		        idle == 1 ? "" : "s", s->idle_ms);
	return n;
}

/* Leaves the path and arguments raw: the router and collect_arg decode. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) OP_PRINTF(2, 0);
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct op_http_server *s = cls;
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	size_t n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	OP_LOGD("%s: libmicrohttpd: %s", s->name, line);
	pthread_mutex_lock(&s->mu);
	if (n >= sizeof(s->mhd_err))
		n = sizeof(s->mhd_err) - 1;
	memcpy(s->mhd_err, line, n);
	s->mhd_err[n] = '\0';
	pthread_mutex_unlock(&s->mu);
}

/* Reads a whole (small) file; OP_ECONFIG with err when unreadable. */
static op_err read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
	*out = NULL;
	*len = 0;
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		char eb[128];
		fail(err, errlen, "cannot open %s: %s", path, strerror_r(errno, eb, sizeof(eb)));
		return OP_ECONFIG;
	}
	struct op_buf b;
	op_buf_init(&b, 1 << 20);
	op_err e = OP_OK;
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		e = op_buf_add(&b, chunk, n);
		if (e != OP_OK)
			break;
	}
	if (e == OP_OK && ferror(f))
		e = OP_EIO;
	fclose(f);
	if (e != OP_OK) {
		fail(err, errlen, "cannot read %s: %s", path, op_err_str(e));
		op_buf_fini(&b);
		return e == OP_ENOMEM ? e : OP_ECONFIG;
	}
	*len = b.len;
	*out = op_buf_take(&b);
	if (*out == NULL) {
		fail(err, errlen, "%s is empty", path);
		return OP_ECONFIG;
	}
	return OP_OK;
}

static void server_free(struct op_http_server *s)
{
	if (s == NULL)
		return;
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->cmu);
	op_free(s->workers);
	op_free(s->cert);
	op_free_secret(s->key, s->key_len);
	op_free(s);
}

/*
 * Binds and listens on ss (sslen bytes; where names it in err) for MHD; the
 * socket in *out is ours until it is handed to MHD_start_daemon. Binding
 * here rather than in libmicrohttpd is what lets the error say why (MHD
 * logs errno only at debug level). OP_EIO with the system's reason.
 */
static op_err listen_socket(const struct sockaddr_storage *ss, socklen_t sslen, const char *where,
                            unsigned port, int *out, char *err, size_t errlen)
{
	char eb[128];
	const char *step = "socket: "; /* "" for bind, whose errors need no name */
	const char *hint = "";
	int one = 1, en = 0;
	int fd = -1;
	*out = -1;
	if ((fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		goto out;
	/* As libmicrohttpd does on its own socket: a restart binds at once,
	 * whatever connections of the last run are in TIME_WAIT. */
	step = "setsockopt: ";
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (ss->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0))
		goto out;
	step = "";
	if (bind(fd, (const struct sockaddr *)ss, sslen) != 0)
		goto out;
	step = "listen: ";
	if (listen(fd, 1024) != 0)
		goto out;
	*out = fd;
	return OP_OK;
out:
	en = errno;
	if (en == EACCES && port > 0 && port < 1024)
		hint = " (a port below 1024 needs CAP_NET_BIND_SERVICE)";
	else if (en == EADDRNOTAVAIL)
		hint = " (not an address of this host)";
	fail(err, errlen, "cannot listen on %s: %s%s%s", where, step,
	     strerror_r(en, eb, sizeof(eb)), hint);
	if (fd >= 0)
		close(fd);
	return OP_EIO;
}

op_err op_http_server_start(const struct op_http_opts *o, op_http_handler h, void *ud,
                            struct op_http_server **out, char *err, size_t errlen)
{
	op_err e = OP_OK;
	struct op_http_server *s = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	int fd = -1;
	char where[INET6_ADDRSTRLEN + 16];
	*out = NULL;
	memset(&ss, 0, sizeof(ss));

	s = op_calloc(1, sizeof(*s));
	if (s == NULL)
		return OP_ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->cmu, NULL);
	pthread_cond_init(&s->cv, NULL);
	atomic_init(&s->conns, 0);
	atomic_init(&s->stopping, false);
	s->h = h;
	s->ud = ud;
	s->max_body = o->max_body ? o->max_body : OP_HTTP_DEFAULT_MAX_BODY;
	s->request_ms = o->request_ms ? o->request_ms : OP_HTTP_DEFAULT_REQUEST_MS;
	s->header_ms = o->header_ms ? o->header_ms : OP_HTTP_DEFAULT_HEADER_MS;
	s->body_ms = o->body_ms ? o->body_ms : OP_HTTP_DEFAULT_BODY_MS;
	s->connection_limit = o->connection_limit ? o->connection_limit : 1000;
	s->stop_ms = o->stop_ms ? o->stop_ms : OP_HTTP_DEFAULT_STOP_MS;
	s->give_up = o->give_up;
	s->answered = o->answered;
	snprintf(s->name, sizeof(s->name), "%s", o->name ? o->name : "http");
	unsigned threads = o->threads ? o->threads : 2;
	unsigned client_timeout =
	    o->client_timeout ? o->client_timeout : OP_HTTP_DEFAULT_CLIENT_TIMEOUT;
	s->idle_ms = client_timeout * 1000u > s->header_ms ? client_timeout * 1000u : s->header_ms;
	const char *host = o->host ? o->host : "127.0.0.1";
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
	                 MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME;

	if (h == NULL || threads > 256) {
		fail(err, errlen, "a handler and 1 to 256 threads are required");
		e = OP_ECONFIG;
		goto out;
	}
	s->nworkers = threads + 1; /* the pool's threads, or the one polling thread */
	s->workers = op_calloc(s->nworkers, sizeof(*s->workers));
	if (s->workers == NULL) {
		e = OP_ENOMEM;
		goto out;
	}
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(o->port);
		sslen = sizeof(*sin);
		snprintf(where, sizeof(where), "%s:%u", host, (unsigned)o->port);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(o->port);
		sslen = sizeof(*sin6);
		snprintf(where, sizeof(where), "[%s]:%u", host, (unsigned)o->port);
		flags |= MHD_USE_IPv6;
	} else {
		fail(err, errlen, "host \"%s\" is not a numeric IPv4 or IPv6 address", host);
		e = OP_ECONFIG;
		goto out;
	}
	if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
		fail(err, errlen, "TLS needs both a certificate and a key");
		e = OP_ECONFIG;
		goto out;
	}
	if (o->tls_cert != NULL) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			fail(err, errlen, "this libmicrohttpd has no TLS support");
			e = OP_ECONFIG;
			goto out;
		}
		size_t clen;
		e = read_file(o->tls_cert, &s->cert, &clen, err, errlen);
		if (e == OP_OK)
			e = read_file(o->tls_key, &s->key, &s->key_len, err, errlen);
		if (e != OP_OK)
			goto out;
		flags |= MHD_USE_TLS;
	}
	if (MHD_is_feature_supported(MHD_FEATURE_AUTOSUPPRESS_SIGPIPE) != MHD_YES)
		OP_LOGW("%s: libmicrohttpd cannot suppress SIGPIPE; ignore it in the process",
		        s->name);
	e = listen_socket(&ss, sslen, where, o->port, &fd, err, errlen);
	if (e != OP_OK)
		goto out;
	struct sockaddr_storage bound = {0};
	socklen_t blen = sizeof(bound);
	if (getsockname(fd, (struct sockaddr *)&bound, &blen) != 0) {
		char eb[128];
		fail(err, errlen, "cannot listen on %s: getsockname: %s", where,
		     strerror_r(errno, eb, sizeof(eb)));
		e = OP_EIO;
		goto out;
	}
	if (bound.ss_family == AF_INET6) {
		struct sockaddr_in6 a6;
		memcpy(&a6, &bound, sizeof(a6));
		s->port = ntohs(a6.sin6_port);
	} else {
		struct sockaddr_in a4;
		memcpy(&a4, &bound, sizeof(a4));
		s->port = ntohs(a4.sin_port);
	}

	struct MHD_OptionItem opts[16];
	int n = 0;
#define OPT(opt, v, p) opts[n++] = (struct MHD_OptionItem){(opt), (intptr_t)(v), (p)}
	OPT(MHD_OPTION_LISTEN_SOCKET, fd, NULL);
	if (threads > 1)
		OPT(MHD_OPTION_THREAD_POOL_SIZE, threads, NULL);
	OPT(MHD_OPTION_CONNECTION_TIMEOUT, client_timeout, NULL);
	OPT(MHD_OPTION_CONNECTION_LIMIT, s->connection_limit + CONN_SLACK, NULL);
	if (o->per_ip_limit)
		OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, o->per_ip_limit, NULL);
	OPT(MHD_OPTION_NOTIFY_COMPLETED, on_completed, s);
	OPT(MHD_OPTION_NOTIFY_CONNECTION, on_connection, s);
	OPT(MHD_OPTION_URI_LOG_CALLBACK, on_uri, s);
	OPT(MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, s);
	OPT(MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s);
	if (s->cert != NULL) {
		OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, s->cert);
		OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, s->key);
	}
	OPT(MHD_OPTION_END, 0, NULL);
#undef OPT

	/*
	 * From here the socket is MHD's: MHD_stop_daemon closes it, and so does
	 * a failed start (libmicrohttpd 0.9.75 closes it on every failure past
	 * option parsing, which these fixed options always pass).
	 */
	s->d = MHD_start_daemon(flags | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
	                        MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	fd = -1;
	if (s->d == NULL) {
		char why[sizeof(s->mhd_err)];
		pthread_mutex_lock(&s->mu);
		snprintf(why, sizeof(why), "%s", s->mhd_err);
		pthread_mutex_unlock(&s->mu);
		if (s->cert != NULL)
			fail(err, errlen,
			     "cannot serve TLS on %s: the certificate or key is refused "
			     "(libmicrohttpd: %s)",
			     where, why[0] ? why : "no reason given");
		else
			fail(err, errlen, "cannot serve on %s: libmicrohttpd: %s", where,
			     why[0] ? why : "no reason given (out of threads or memory?)");
		e = s->cert ? OP_ECONFIG : OP_EIO;
		goto out;
	}
out:
	if (fd >= 0)
		close(fd);
	if (e != OP_OK) {
		server_free(s);
		return e;
	}
	*out = s;
	return OP_OK;
}

uint16_t op_http_server_port(const struct op_http_server *s)
{
	return s->port;
}

unsigned op_http_server_inflight(const struct op_http_server *s)
{
	struct op_http_server *m = (struct op_http_server *)s;
	pthread_mutex_lock(&m->mu);
	unsigned n = m->inflight;
	pthread_mutex_unlock(&m->mu);
	return n;
}

/* The CLOCK_REALTIME time ms from now, for pthread_cond_timedwait. */
static struct timespec deadline_in(unsigned ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	return until;
}

/*
 * Answers 503 every deferred request whose answer has not come and resumes
 * every suspended connection, so that MHD_stop_daemon() finds none; tokens
 * made from here on are born answered. Returns how many it answered.
 */
static unsigned answer_deferred(struct op_http_server *s)
{
	unsigned n = 0;
	pthread_mutex_lock(&s->mu);
	s->late = true;
	pthread_mutex_unlock(&s->mu);
	for (;;) {
		/* One at a time: the list changes while s->mu is not held. */
		struct op_http_deferred *d;
		pthread_mutex_lock(&s->mu);
		for (d = s->defs; d != NULL && d->seen; d = d->next)
			;
		if (d != NULL) {
			d->seen = true;
			atomic_fetch_add(&d->refs, 1); /* listed: the connection's is held */
		}
		pthread_mutex_unlock(&s->mu);
		if (d == NULL)
			return n;
		struct op_http_response r = {0};
		stopping_answer(&r);
		pthread_mutex_lock(&d->mu);
		if (!d->done) {
			d->resp = r;
			memset(&r, 0, sizeof(r));
			d->done = true;
			n++;
		}
		if (d->suspended) {
			d->suspended = false;
			MHD_resume_connection(d->c);
		}
		pthread_mutex_unlock(&d->mu);
		op_http_response_fini(&r);
		deferred_release(d);
	}
}

op_err op_http_server_stop(struct op_http_server *s)
{
	if (s == NULL)
		return OP_OK;
	op_err e = OP_OK;
	/*
	 * New requests are answered 503 from here on; the listen socket stays
	 * MHD's until MHD_stop_daemon. Not MHD_quiesce_daemon: with a thread pool
	 * and epoll, libmicrohttpd 0.9.75 takes the listen socket out of a
	 * worker's epoll set when that worker is at its share of the connection
	 * limit, and quiesce, racing with it, aborts the process ("Failed to
	 * remove listen FD from epoll set", seen under ASan in the connection
	 * limit test).
	 */
	atomic_store(&s->stopping, true);
	struct timespec until = deadline_in(s->stop_ms);
	pthread_mutex_lock(&s->mu);
	while (s->inflight > 0) {
		if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
			break;
	}
	unsigned left = s->inflight;
	pthread_mutex_unlock(&s->mu);
	if (left > 0 && s->give_up != NULL)
		s->give_up(s->ud);
	/* Also when nothing is left: a request whose body was still coming in
	 * may yet reach its handler and defer. */
	unsigned gave_up = answer_deferred(s);
	/*
	 * The worker threads send the 503s. MHD_stop_daemon() aborts the process
	 * on a connection still suspended; one whose resume was asked but not yet
	 * run (its worker is busy in a handler that ignores the stop) is closed
	 * without its answer by libmicrohttpd 0.9.75, as the busy-worker test
	 * shows: such a client loses the 503, the process lives on.
	 */
	until = deadline_in(STOP_ANSWER_MS);
	pthread_mutex_lock(&s->mu);
	while (s->parked > 0) {
		if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
			break;
	}
	unsigned parked = s->parked;
	pthread_mutex_unlock(&s->mu);
	if (gave_up > 0)
		OP_LOGW("%s: %u deferred answer(s) still missing after %u ms of stopping: "
		        "answered 503",
		        s->name, gave_up, s->stop_ms);
	if (left > gave_up)
		OP_LOGW("%s: %u handler(s) still running after %u ms of stopping", s->name,
		        left - gave_up, s->stop_ms);
	if (left > 0)
		e = OP_ETIMEOUT;
	if (parked > 0)
		OP_LOGW("%s: %u deferred 503(s) not sent after %u ms; their connections are closed",
		        s->name, parked, STOP_ANSWER_MS);
	MHD_stop_daemon(s->d);
	server_free(s);
	return e;
}
