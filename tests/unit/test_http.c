/*
 * Unit tests of the HTTP layer: path templates and the route table without a
 * server, then the server on 127.0.0.1 with an ephemeral port, driven by a
 * small raw HTTP/1.1 client over sockets (and wolfSSL for TLS). Every wait
 * polls a socket or a condition with a deadline.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "agent/core/alloc.h"
#include "agent/http/route.h"
#include "agent/http/server.h"
#include "tests/unit/test.h"

/* A self-signed P-256 certificate for CN=localhost / IP 127.0.0.1, valid until 2125. */
static const char test_cert_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBkDCCATagAwIBAgIUAN2YHdbcmbY87P0s/4mVrEYDSlUwCgYIKoZIzj0EAwIw\n"
    "FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMzE3MDUwOVoYDzIxMjYxMDMw\n"
    "MTcwNTA5WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO\n"
    "PQMBBwNCAASdOCnErUkNmg1t1i0+kCO0YtudA8ZKajZ7HPDG3Vo/VCAWLlxd5lBf\n"
    "P2iXNh4Ei5eN5djqT/C1fspIEdfubJ1oo2QwYjAdBgNVHQ4EFgQU6nGnw+AJGxTN\n"
    "HHXgRDBs6e8fZvswHwYDVR0jBBgwFoAU6nGnw+AJGxTNHHXgRDBs6e8fZvswDwYD\n"
    "VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0gAMEUC\n"
    "IQCq3nGJModADKYF3pEnb6j9YTOkhQNKtqVtsBnUJVQ3uAIgD14jMYrQJgzKIi8m\n"
    "TXk+dMiXCYfQBuFYDnRoeivIfxU=\n"
    "-----END CERTIFICATE-----\n";
static const char test_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgOt0XDFc2wUG6lpmU\n"
    "Rm8r3axjRj6Wu5DcvVJKL9aqdBmhRANCAASdOCnErUkNmg1t1i0+kCO0YtudA8ZK\n"
    "ajZ7HPDG3Vo/VCAWLlxd5lBfP2iXNh4Ei5eN5djqT/C1fspIEdfubJ1o\n"
    "-----END PRIVATE KEY-----\n";
/* --- routes ------------------------------------------------------------ */

static void compile_err(const char *tmpl, const char *want)
{
	struct op_http_route *r = (struct op_http_route *)1;
	char err[256] = "";
	ck_assert_int_eq(op_http_route_compile(tmpl, &r, err, sizeof(err)), OP_ECONFIG);
	ck_assert_ptr_null(r);
	if (strstr(err, want) == NULL)
		ck_abort_msg("template %s: error \"%s\" lacks \"%s\"", tmpl, err, want);
}

START_TEST(route_compile_errors)
{
	compile_err("orders", "must start with '/'");
	compile_err("/orders/{id", "whole segment");
	compile_err("/orders/x{id}", "not allowed in a literal");
	compile_err("/orders/{}", "1 to 64");
	compile_err("/orders/{1d}", "bad character '1'");
	compile_err("/a/{id}/b/{id}", "duplicate parameter name \"id\"");
	compile_err("/a/{rest*}/b", "must be the last segment");
	compile_err("/a//b", "empty segment at offset 3");
	compile_err("/a/", "empty segment");
	compile_err("/a%2Fb", "character '%' at offset 2");
	char big[200];
	for (int i = 0; i < 33; i++)
		snprintf(big + 2 * i, sizeof(big) - 2 * (size_t)i, "/a");
	compile_err(big, "more than 32 segments");
}
END_TEST

START_TEST(route_match_params)
{
	struct op_http_route *r;
	char err[256];
	cJSON *p;
	ck_assert_int_eq(op_http_route_compile("/v1/customers/{cid}/orders/{oid}", &r, err, 256),
	                 OP_OK);
	ck_assert_str_eq(op_http_route_template(r), "/v1/customers/{cid}/orders/{oid}");
	ck_assert_int_eq(op_http_route_match(r, "/v1/customers/c%20%C3%A9/orders/7", &p), OP_OK);
	ck_assert_json_text(p, "{\"cid\":\"c \u00e9\",\"oid\":\"7\"}");
	cJSON_Delete(p);
	p = (cJSON *)1;
	ck_assert_int_eq(op_http_route_match(r, "/v1/customers/c/orders", &p), OP_ENOTFOUND);
	ck_assert_ptr_null(p);
	ck_assert_int_eq(op_http_route_match(r, "/v1/customers//orders/7", &p), OP_ENOTFOUND);
	ck_assert_int_eq(op_http_route_match(r, "/v1/customers/c/orders/7/", &p), OP_ENOTFOUND);
	/* An encoded '/' or NUL, or a broken escape, is a bad request, never a match. */
	ck_assert_int_eq(op_http_route_match(r, "/v1/customers/a%2Fb/orders/7", &p), OP_EINVAL);
	ck_assert_int_eq(op_http_route_match(r, "/v1/customers/a%00/orders/7", &p), OP_EINVAL);
	ck_assert_int_eq(op_http_route_match(r, "/v1/customers/a%4/orders/7", &p), OP_EINVAL);
	ck_assert_int_eq(op_http_route_match(r, "/v1/customers/a%zz/orders/7", &p), OP_EINVAL);
	ck_assert_int_eq(op_http_route_match(r, "v1", &p), OP_EINVAL);
	op_http_route_free(r);

	ck_assert_int_eq(op_http_route_compile("/files/{rest*}", &r, err, 256), OP_OK);
	ck_assert_int_eq(op_http_route_match(r, "/files/a/b%20c/d", &p), OP_OK);
	ck_assert_json_text(p, "{\"rest\":\"a/b c/d\"}");
	cJSON_Delete(p);
	ck_assert_int_eq(op_http_route_match(r, "/files", &p), OP_OK);
	ck_assert_json_text(p, "{\"rest\":\"\"}");
	cJSON_Delete(p);
	ck_assert_int_eq(op_http_route_match(r, "/filesx/a", &p), OP_ENOTFOUND);
	op_http_route_free(r);

	ck_assert_int_eq(op_http_route_compile("/", &r, err, 256), OP_OK);
	ck_assert_int_eq(op_http_route_match(r, "/", NULL), OP_OK);
	ck_assert_int_eq(op_http_route_match(r, "/x", NULL), OP_ENOTFOUND);
	op_http_route_free(r);
}
END_TEST

START_TEST(router_specificity_404_405)
{
	struct op_http_router *rt = op_http_router_new();
	char err[256];
	int t_param, t_lit, t_wild, t_any, t_post;
	/* Added least specific first: the order must not matter. */
	ck_assert_int_eq(op_http_router_add(rt, "GET", "/orders/{rest*}", &t_wild, err, 256),
	                 OP_OK);
	ck_assert_int_eq(op_http_router_add(rt, "GET", "/orders/{id}", &t_param, err, 256), OP_OK);
	ck_assert_int_eq(op_http_router_add(rt, "GET", "/orders/latest", &t_lit, err, 256), OP_OK);
	ck_assert_int_eq(op_http_router_add(rt, "POST", "/orders", &t_post, err, 256), OP_OK);
	ck_assert_int_eq(op_http_router_add(rt, "*", "/any/{x}", &t_any, err, 256), OP_OK);
	ck_assert_int_eq(op_http_router_add(rt, "GET", "/orders/{other}", &t_any, err, 256),
	                 OP_ECONFIG);
	ck_assert_str_eq(err, "route GET /orders/{other} conflicts with GET /orders/{id}");
	ck_assert_int_eq(op_http_router_add(rt, "get", "/x", &t_any, err, 256), OP_ECONFIG);

	struct op_http_match m;
	ck_assert_int_eq(op_http_router_match(rt, "GET", "/orders/latest", &m), OP_OK);
	ck_assert_ptr_eq(m.target, &t_lit);
	op_http_match_fini(&m);
	ck_assert_int_eq(op_http_router_match(rt, "GET", "/orders/17", &m), OP_OK);
	ck_assert_ptr_eq(m.target, &t_param);
	ck_assert_str_eq(m.tmpl, "/orders/{id}");
	ck_assert_json_text(m.params, "{\"id\":\"17\"}");
	op_http_match_fini(&m);
	ck_assert_int_eq(op_http_router_match(rt, "HEAD", "/orders/17/lines", &m), OP_OK);
	ck_assert_ptr_eq(m.target, &t_wild);
	ck_assert_json_text(m.params, "{\"rest\":\"17/lines\"}");
	op_http_match_fini(&m);
	ck_assert_int_eq(op_http_router_match(rt, "PATCH", "/any/1", &m), OP_OK);
	ck_assert_ptr_eq(m.target, &t_any);
	op_http_match_fini(&m);

	ck_assert_int_eq(op_http_router_match(rt, "GET", "/nothing", &m), OP_ENOTFOUND);
	ck_assert_ptr_null(m.params);
	ck_assert_int_eq(op_http_router_match(rt, "DELETE", "/orders/17", &m), OP_EUNSUPPORTED);
	ck_assert_str_eq(m.allow, "GET, HEAD");
	/* A wildcard takes zero segments too; other methods there list every route's. */
	ck_assert_int_eq(op_http_router_match(rt, "GET", "/orders", &m), OP_OK);
	ck_assert_ptr_eq(m.target, &t_wild);
	ck_assert_json_text(m.params, "{\"rest\":\"\"}");
	op_http_match_fini(&m);
	ck_assert_int_eq(op_http_router_match(rt, "PUT", "/orders", &m), OP_EUNSUPPORTED);
	ck_assert_str_eq(m.allow, "GET, HEAD, POST");
	ck_assert_int_eq(op_http_router_match(rt, "GET", "/orders/a%2f", &m), OP_EINVAL);
	op_http_router_free(rt);
}
END_TEST

START_TEST(route_out_of_memory)
{
	/* Every allocation failure is OP_ENOMEM with nothing leaked (ASan checks). */
	for (uint64_t n = 1;; n++) {
		struct op_http_router *rt = NULL;
		struct op_http_match m;
		char err[256];
		op_err e = OP_OK;
		int t;
		op_alloc_fail_at(n);
		rt = op_http_router_new();
		if (rt == NULL)
			e = OP_ENOMEM;
		if (e == OP_OK)
			e = op_http_router_add(rt, "GET", "/a/{b}/{c*}", &t, err, 256);
		if (e == OP_OK)
			e = op_http_router_add(rt, "GET", "/a/x", &t, err, 256);
		if (e == OP_OK)
			e = op_http_router_match(rt, "GET", "/a/1/2/3", &m);
		op_alloc_fail_at(0);
		if (e == OP_OK) {
			ck_assert_json_text(m.params, "{\"b\":\"1\",\"c\":\"2/3\"}");
			op_http_match_fini(&m);
		}
		op_http_router_free(rt);
		if (e == OP_OK) {
			ck_assert_uint_gt(n, 5);
			break;
		}
		ck_assert_int_eq(e, OP_ENOMEM);
	}
}
END_TEST

/* --- a raw HTTP/1.1 client --------------------------------------------- */

struct conn {
	int fd;
	WOLFSSL *ssl;
	char *buf; /* bytes read and not yet consumed */
	size_t len, cap;
};

struct resp {
	int status;
	char head[8192]; /* the header block, lower-cased names */
	char *body;
	size_t body_len;
};

static uint64_t now_ms(void)
{
	return op_http_now_ms();
}

static int tcp_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void conn_open(struct conn *c, uint16_t port)
{
	memset(c, 0, sizeof(*c));
	c->fd = tcp_connect(port);
}

static void conn_close(struct conn *c)
{
	if (c->ssl != NULL)
		wolfSSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	c->fd = -1;
}

static void conn_send(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w =
		    c->ssl ? wolfSSL_write(c->ssl, p, (int)n) : send(c->fd, p, n, MSG_NOSIGNAL);
		ck_assert_msg(w > 0, "send failed");
		p += w;
		n -= (size_t)w;
	}
}

static void conn_sends(struct conn *c, const char *s)
{
	conn_send(c, s, strlen(s));
}

/* Reads more bytes before the deadline: >0 read, 0 closed, -1 timed out. */
static int conn_fill(struct conn *c, uint64_t deadline)
{
	if (c->cap - c->len < 4096) {
		c->cap = c->cap ? c->cap * 2 : 16384;
		c->buf = realloc(c->buf, c->cap);
		ck_assert_ptr_nonnull(c->buf);
	}
	for (;;) {
		if (c->ssl == NULL || wolfSSL_pending(c->ssl) == 0) {
			uint64_t t = now_ms();
			if (t >= deadline)
				return -1;
			struct pollfd pf = {.fd = c->fd, .events = POLLIN};
			int pr = poll(&pf, 1, (int)(deadline - t));
			if (pr == 0)
				return -1;
			if (pr < 0 && errno == EINTR)
				continue;
		}
		ssize_t r;
		if (c->ssl != NULL) {
			r = wolfSSL_read(c->ssl, c->buf + c->len, (int)(c->cap - c->len - 1));
			if (r < 0 && wolfSSL_get_error(c->ssl, (int)r) == WOLFSSL_ERROR_WANT_READ)
				continue;
		} else {
			r = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0; /* EOF or reset: closed */
		c->len += (size_t)r;
		c->buf[c->len] = '\0';
		return 1;
	}
}

static const char *resp_header(const struct resp *r, const char *name)
{
	static __thread char val[1024];
	size_t nl = strlen(name);
	for (const char *p = strstr(r->head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
			const char *v = p + 3 + nl;
			while (*v == ' ')
				v++;
			size_t n = strcspn(v, "\r");
			snprintf(val, sizeof(val), "%.*s", (int)n, v);
			return val;
		}
	}
	return NULL;
}

/* Reads one whole response (Content-Length framed). 0 ok, -1 timeout, -2 closed first. */
static int read_resp(struct conn *c, struct resp *r, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	memset(r, 0, sizeof(*r));
	char *end;
	while (c->buf == NULL || (end = strstr(c->buf, "\r\n\r\n")) == NULL) {
		int f = conn_fill(c, deadline);
		if (f <= 0)
			return f == 0 ? -2 : -1;
	}
	size_t hlen = (size_t)(end - c->buf) + 4;
	ck_assert_uint_lt(hlen, sizeof(r->head));
	memcpy(r->head, c->buf, hlen);
	r->head[hlen] = '\0';
	ck_assert_msg(strncmp(r->head, "HTTP/1.1 ", 9) == 0, "bad status line: %s", r->head);
	r->status = (int)strtol(r->head + 9, NULL, 10);
	const char *cl = resp_header(r, "content-length");
	ck_assert_msg(cl != NULL, "response without Content-Length: %s", r->head);
	size_t blen = strtoul(cl, NULL, 10);
	while (c->len < hlen + blen) {
		int f = conn_fill(c, deadline);
		if (f <= 0)
			return f == 0 ? -2 : -1;
	}
	r->body = malloc(blen + 1);
	memcpy(r->body, c->buf + hlen, blen);
	r->body[blen] = '\0';
	r->body_len = blen;
	memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
	c->len -= hlen + blen;
	c->buf[c->len] = '\0';
	return 0;
}

static void resp_fini(struct resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* Waits until the peer closes: true when it did before the deadline. */
static bool wait_closed(struct conn *c, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		int f = conn_fill(c, deadline);
		if (f == 0)
			return true;
		if (f < 0)
			return false;
		c->len = 0; /* discard what came */
	}
}

/* One request on a fresh connection; returns the response (caller resp_fini). */
static void roundtrip(uint16_t port, const char *req, struct resp *r)
{
	struct conn c;
	conn_open(&c, port);
	conn_sends(&c, req);
	ck_assert_int_eq(read_resp(&c, r, 5000), 0);
	conn_close(&c);
}

static cJSON *body_json(const struct resp *r)
{
	return op_test_json(r->body);
}

static void assert_error(const struct resp *r, int status, const char *code, const char *msg)
{
	ck_assert_int_eq(r->status, status);
	ck_assert_str_eq(resp_header(r, "content-type"), "application/json");
	cJSON *j = body_json(r);
	const cJSON *e = cJSON_GetObjectItem(j, "error");
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(e, "code")), code);
	const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(e, "message"));
	if (msg != NULL && (m == NULL || strstr(m, msg) == NULL))
		ck_abort_msg("error message \"%s\" lacks \"%s\"", m ? m : "(null)", msg);
	cJSON_Delete(j);
}

/* --- the server under test --------------------------------------------- */

enum target { T_ECHO, T_ORDER, T_CREATE, T_SLOW, T_STUBBORN, T_HEADERS, T_FAIL, T_DEFER };

struct fixture {
	struct op_http_router *rt;
	struct op_http_server *s;
	int targets[8];
	/* The last token T_DEFER left for the test to complete, as a store would. */
	_Atomic(struct op_http_deferred *) pending;
	/* A token the stop's give_up answers (server_stop_gives_up_first). */
	struct op_http_deferred *held;
	int gave_up;
};

/* The answer a deferred request gets from its completer. */
static void deferred_answer(struct op_http_deferred *d, const char *id)
{
	struct op_http_response r = {0};
	cJSON *v = cJSON_CreateObject();
	ck_assert_ptr_nonnull(v);
	cJSON_AddStringToObject(v, "id", id);
	ck_assert_int_eq(op_http_respond_json(&r, 202, v), OP_OK);
	cJSON_Delete(v);
	op_http_complete(d, &r);
	ck_assert_ptr_null(r.body); /* taken */
}

static op_err handler(const struct op_http_request *req, struct op_http_response *resp, void *ud)
{
	struct fixture *fx = ud;
	struct op_http_match m;
	cJSON *out = NULL, *doc = NULL;
	char err[256];
	op_err e = op_http_router_match(fx->rt, req->method, req->path, &m);
	if (e == OP_ENOTFOUND)
		return op_http_respond_error(resp, 404, "notfound", "no such route");
	if (e == OP_EUNSUPPORTED) {
		e = op_http_respond_error(resp, 405, "method", "method not allowed");
		if (e == OP_OK)
			e = op_http_response_header(resp, "Allow", m.allow);
		return e;
	}
	if (e == OP_EINVAL)
		return op_http_respond_error(resp, 400, "invalid", "malformed path");
	if (e != OP_OK)
		return e;
	enum target t = (enum target)(*(int *)m.target);
	switch (t) {
	case T_ECHO:
	case T_ORDER:
		out = cJSON_CreateObject();
		if (out == NULL) {
			e = OP_ENOMEM;
			break;
		}
		cJSON_AddStringToObject(out, "method", req->method);
		cJSON_AddStringToObject(out, "path", req->path);
		cJSON_AddStringToObject(out, "remote", req->remote_addr);
		cJSON_AddItemToObject(out, "params", m.params);
		m.params = NULL;
		cJSON_AddItemToObject(out, "query", cJSON_Duplicate(req->query, 1));
		cJSON_AddItemToObject(out, "headers", cJSON_Duplicate(req->headers, 1));
		cJSON_AddNumberToObject(out, "body_len", (double)req->body_len);
		e = op_http_respond_json(resp, 200, out);
		break;
	case T_CREATE:
		e = op_http_json_body(req, &doc, err, sizeof(err));
		if (e == OP_EPARSE || e == OP_EUNSUPPORTED) {
			e = op_http_respond_error(resp, op_http_status_for(e), op_err_name(e), err);
			break;
		}
		if (e != OP_OK)
			break;
		out = cJSON_CreateObject();
		if (out == NULL || !cJSON_AddItemToObject(out, "got", doc)) {
			cJSON_Delete(doc);
			e = OP_ENOMEM;
			break;
		}
		e = op_http_respond_json(resp, 201, out);
		break;
	case T_SLOW:
		/* Works until the server stops or the deadline passes. */
		while (!atomic_load(req->stopping) && op_http_now_ms() < req->deadline_ms) {
			struct timespec ts = {0, 2000000};
			nanosleep(&ts, NULL);
		}
		e = atomic_load(req->stopping) ? OP_EBUSY : OP_ETIMEOUT;
		break;
	case T_STUBBORN:
		/* Ignores stopping; only its deadline ends it. */
		while (op_http_now_ms() < req->deadline_ms) {
			struct timespec ts = {0, 2000000};
			nanosleep(&ts, NULL);
		}
		e = OP_ETIMEOUT;
		break;
	case T_HEADERS:
		resp->status = 201;
		e = op_http_response_header(resp, "X-One", "1");
		if (e == OP_OK)
			e = op_http_response_header(resp, "Set-Cookie", "a=1");
		if (e == OP_OK)
			e = op_http_response_header(resp, "Set-Cookie", "b=2");
		if (e == OP_OK)
			ck_assert_int_eq(op_http_response_header(resp, "X-Bad", "a\r\nb"),
			                 OP_EINVAL);
		resp->body = op_strdup("plain");
		resp->body_len = 5;
		snprintf(resp->content_type, sizeof(resp->content_type), "text/plain");
		break;
	case T_FAIL:
		e = OP_EFULL;
		break;
	case T_DEFER: {
		/* Answered later by the test, or at once on this thread with ?now. */
		struct op_http_deferred *d = op_http_defer(req);
		if (d == NULL) {
			e = OP_ENOMEM;
			break;
		}
		resp->deferred = true;
		if (cJSON_GetObjectItem(req->query, "now") != NULL)
			deferred_answer(d, "now");
		else
			atomic_store(&fx->pending, d);
		break;
	}
	}
	cJSON_Delete(out);
	op_http_match_fini(&m);
	return e;
}

static void fx_start(struct fixture *fx, struct op_http_opts *o)
{
	static const struct {
		const char *method, *tmpl;
		enum target t;
	} routes[] = {
	    {"GET", "/echo", T_ECHO},          {"GET", "/orders/{id}", T_ORDER},
	    {"POST", "/orders", T_CREATE},     {"POST", "/slow", T_SLOW},
	    {"POST", "/stubborn", T_STUBBORN}, {"GET", "/headers", T_HEADERS},
	    {"GET", "/fail", T_FAIL},          {"POST", "/defer", T_DEFER},
	};
	char err[256];
	memset(fx, 0, sizeof(*fx));
	fx->rt = op_http_router_new();
	ck_assert_ptr_nonnull(fx->rt);
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		fx->targets[i] = (int)routes[i].t;
		ck_assert_int_eq(op_http_router_add(fx->rt, routes[i].method, routes[i].tmpl,
		                                    &fx->targets[i], err, sizeof(err)),
		                 OP_OK);
	}
	o->host = "127.0.0.1";
	o->port = 0;
	op_err e = op_http_server_start(o, handler, fx, &fx->s, err, sizeof(err));
	ck_assert_msg(e == OP_OK, "start: %s", err);
	ck_assert_uint_gt(op_http_server_port(fx->s), 0);
}

static void fx_stop(struct fixture *fx)
{
	ck_assert_int_eq(op_http_server_stop(fx->s), OP_OK);
	op_http_router_free(fx->rt);
}

START_TEST(server_routes_query_headers)
{
	struct fixture fx;
	struct op_http_opts o = {0};
	struct resp r;
	fx_start(&fx, &o);
	uint16_t port = op_http_server_port(fx.s);

	roundtrip(port,
	          "GET /orders/42%20x?a=1&a=2&b=x+y%26z&flag HTTP/1.1\r\nHost: t\r\n"
	          "X-Test: hi\r\nX-Rep: a\r\nx-rep: b\r\n\r\n",
	          &r);
	ck_assert_int_eq(r.status, 200);
	cJSON *j = body_json(&r);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(j, "path")), "/orders/42%20x");
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(j, "remote")), "127.0.0.1");
	ck_assert_json_text(cJSON_GetObjectItem(j, "params"), "{\"id\":\"42 x\"}");
	ck_assert_json_text(cJSON_GetObjectItem(j, "query"),
	                    "{\"a\":[\"1\",\"2\"],\"b\":\"x y&z\",\"flag\":\"\"}");
	const cJSON *h = cJSON_GetObjectItem(j, "headers");
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(h, "x-test")), "hi");
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(h, "x-rep")), "a, b");
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(h, "host")), "t");
	cJSON_Delete(j);
	resp_fini(&r);

	roundtrip(port, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", &r);
	assert_error(&r, 404, "notfound", "no such route");
	resp_fini(&r);
	roundtrip(port, "DELETE /orders/1 HTTP/1.1\r\nHost: t\r\n\r\n", &r);
	assert_error(&r, 405, "method", NULL);
	ck_assert_str_eq(resp_header(&r, "allow"), "GET, HEAD");
	resp_fini(&r);
	roundtrip(port, "GET /orders/a%2Fb HTTP/1.1\r\nHost: t\r\n\r\n", &r);
	assert_error(&r, 400, "invalid", "malformed path");
	resp_fini(&r);
	roundtrip(port, "GET /echo?a=%zz HTTP/1.1\r\nHost: t\r\n\r\n", &r);
	assert_error(&r, 400, "invalid", "percent-encoding in the query");
	resp_fini(&r);

	/* Status and headers from the handler, repeated headers kept. */
	roundtrip(port, "GET /headers HTTP/1.1\r\nHost: t\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(r.body, "plain");
	ck_assert_str_eq(resp_header(&r, "content-type"), "text/plain");
	ck_assert_str_eq(resp_header(&r, "x-one"), "1");
	ck_assert_ptr_nonnull(strstr(r.head, "Set-Cookie: a=1\r\n"));
	ck_assert_ptr_nonnull(strstr(r.head, "Set-Cookie: b=2\r\n"));
	resp_fini(&r);

	/* A handler's error class becomes its status in the JSON error shape. */
	roundtrip(port, "GET /fail HTTP/1.1\r\nHost: t\r\n\r\n", &r);
	assert_error(&r, 503, "full", NULL);
	resp_fini(&r);
	fx_stop(&fx);
}
END_TEST

START_TEST(server_json_body)
{
	struct fixture fx;
	struct op_http_opts o = {0};
	struct resp r;
	fx_start(&fx, &o);
	uint16_t port = op_http_server_port(fx.s);

	roundtrip(
	    port,
	    "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json; "
	    "charset=utf-8\r\nContent-Length: 34\r\n\r\n{\"id\": 9007199254740993, \"x\": [1]}",
	    &r);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(r.body, "{\"got\":{\"id\":9007199254740992,\"x\":[1]}}");
	resp_fini(&r);

	const char *bad = "{\n  \"a\": tru }";
	char req[512];
	snprintf(req, sizeof(req),
	         "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	         "Content-Length: %zu\r\n\r\n%s",
	         strlen(bad), bad);
	roundtrip(port, req, &r);
	assert_error(&r, 400, "parse", "invalid JSON at line 2, column 8");
	resp_fini(&r);

	roundtrip(port,
	          "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	          "Content-Length: 5\r\n\r\n{} []",
	          &r);
	assert_error(&r, 400, "parse", "line 1, column 4: unexpected text near \"[]\"");
	resp_fini(&r);
	roundtrip(port,
	          "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	          "Content-Length: 4\r\n\r\n[1, ",
	          &r);
	assert_error(&r, 400, "parse", "unexpected end of input");
	resp_fini(&r);
	roundtrip(port, "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", &r);
	assert_error(&r, 400, "parse", "body is empty");
	resp_fini(&r);
	roundtrip(port,
	          "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: text/csv\r\n"
	          "Content-Length: 2\r\n\r\n{}",
	          &r);
	assert_error(&r, 415, "unsupported", "got \"text/csv\"");
	resp_fini(&r);
	fx_stop(&fx);
}
END_TEST

START_TEST(server_body_limit)
{
	struct fixture fx;
	struct op_http_opts o = {.max_body = 1000};
	struct resp r;
	struct conn c;
	fx_start(&fx, &o);
	uint16_t port = op_http_server_port(fx.s);

	/* Content-Length over the limit: 413 before the body is read, then close. */
	conn_open(&c, port);
	conn_sends(&c, "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	               "Content-Length: 1001\r\n\r\n");
	ck_assert_int_eq(read_resp(&c, &r, 5000), 0);
	assert_error(&r, 413, "limit", "larger than 1000 bytes");
	ck_assert_str_eq(resp_header(&r, "connection"), "close");
	resp_fini(&r);
	ck_assert(wait_closed(&c, 5000));
	conn_close(&c);

	/* Chunked, no length announced: counted as it arrives. */
	conn_open(&c, port);
	conn_sends(&c, "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	               "Transfer-Encoding: chunked\r\n\r\n");
	char chunk[700];
	memset(chunk, ' ', sizeof(chunk));
	for (int i = 0; i < 2; i++) {
		conn_sends(&c, "258\r\n"); /* 600 bytes */
		conn_send(&c, chunk, 600);
		conn_sends(&c, "\r\n");
	}
	conn_sends(&c, "0\r\n\r\n");
	ck_assert_int_eq(read_resp(&c, &r, 5000), 0);
	assert_error(&r, 413, "limit", "larger than 1000 bytes");
	resp_fini(&r);
	ck_assert(wait_closed(&c, 5000));
	conn_close(&c);

	/* An endless chunked body is not read forever: the connection is closed. */
	conn_open(&c, port);
	conn_sends(&c, "POST /orders HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
	bool closed = false;
	for (int i = 0; i < 1000 && !closed; i++) {
		char hdr[] = "258\r\n";
		closed = send(c.fd, hdr, 5, MSG_NOSIGNAL) < 0 ||
		         send(c.fd, chunk, 600, MSG_NOSIGNAL) < 0 ||
		         send(c.fd, "\r\n", 2, MSG_NOSIGNAL) < 0;
	}
	ck_assert(closed || wait_closed(&c, 5000));
	conn_close(&c);

	/* Exactly the limit is fine. */
	char req[1200];
	int n = snprintf(req, sizeof(req),
	                 "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n[1");
	memset(req + n, ' ', 997);
	req[n + 997] = ']';
	req[n + 998] = '\0';
	roundtrip(port, req, &r);
	ck_assert_int_eq(r.status, 201);
	resp_fini(&r);
	fx_stop(&fx);
}
END_TEST

START_TEST(server_keep_alive)
{
	struct fixture fx;
	struct op_http_opts o = {0};
	struct resp r;
	struct conn c;
	fx_start(&fx, &o);
	conn_open(&c, op_http_server_port(fx.s));
	for (int i = 0; i < 20; i++) {
		char req[256];
		snprintf(req, sizeof(req),
		         "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
		         "Content-Length: %d\r\n\r\n[%d]",
		         i < 10 ? 3 : 4, i);
		conn_sends(&c, req);
		ck_assert_int_eq(read_resp(&c, &r, 5000), 0);
		ck_assert_int_eq(r.status, 201);
		char want[64];
		snprintf(want, sizeof(want), "{\"got\":[%d]}", i);
		ck_assert_str_eq(r.body, want);
		ck_assert_ptr_null(resp_header(&r, "connection"));
		resp_fini(&r);
	}
	/* Two pipelined requests in one write. */
	conn_sends(&c, "GET /orders/1 HTTP/1.1\r\nHost: t\r\n\r\nGET /orders/2 HTTP/1.1\r\n"
	               "Host: t\r\n\r\n");
	for (int i = 1; i <= 2; i++) {
		ck_assert_int_eq(read_resp(&c, &r, 5000), 0);
		cJSON *j = body_json(&r);
		char want[32];
		snprintf(want, sizeof(want), "{\"id\":\"%d\"}", i);
		ck_assert_json_text(cJSON_GetObjectItem(j, "params"), want);
		cJSON_Delete(j);
		resp_fini(&r);
	}
	conn_close(&c);
	fx_stop(&fx);
}
END_TEST

START_TEST(server_slow_client_dropped)
{
	struct fixture fx;
	struct op_http_opts o = {.client_timeout = 1};
	struct conn c, idle;
	fx_start(&fx, &o);
	uint16_t port = op_http_server_port(fx.s);
	conn_open(&c, port);
	conn_open(&idle, port);
	uint64_t t0 = now_ms();
	conn_sends(&c, "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n{\"a\"");
	ck_assert(wait_closed(&c, 5000));
	uint64_t dt = now_ms() - t0;
	ck_assert_msg(dt >= 900 && dt < 4000, "closed after %llu ms", (unsigned long long)dt);
	ck_assert(wait_closed(&idle, 5000));
	conn_close(&c);
	conn_close(&idle);
	fx_stop(&fx);
}
END_TEST

struct worker {
	uint16_t port;
	int id;
	int ok;
};

static void *client_thread(void *arg)
{
	struct worker *w = arg;
	struct conn c;
	conn_open(&c, w->port);
	for (int i = 0; i < 100; i++) {
		char req[256], want[64];
		struct resp r;
		snprintf(req, sizeof(req), "GET /orders/%d-%d HTTP/1.1\r\nHost: t\r\n\r\n", w->id,
		         i);
		conn_sends(&c, req);
		if (read_resp(&c, &r, 5000) != 0)
			break;
		snprintf(want, sizeof(want), "\"params\":{\"id\":\"%d-%d\"}", w->id, i);
		if (r.status == 200 && strstr(r.body, want) != NULL)
			w->ok++;
		resp_fini(&r);
	}
	conn_close(&c);
	return NULL;
}

START_TEST(server_concurrent_clients)
{
	struct fixture fx;
	struct op_http_opts o = {.threads = 4};
	pthread_t th[8];
	struct worker w[8];
	fx_start(&fx, &o);
	for (int i = 0; i < 8; i++) {
		w[i] = (struct worker){op_http_server_port(fx.s), i, 0};
		ck_assert_int_eq(pthread_create(&th[i], NULL, client_thread, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(w[i].ok, 100);
	}
	fx_stop(&fx);
}
END_TEST

START_TEST(server_connection_limit)
{
	struct fixture fx;
	struct op_http_opts o = {.connection_limit = 2};
	struct conn c[3];
	struct resp r;
	fx_start(&fx, &o);
	for (int i = 0; i < 3; i++) {
		conn_open(&c[i], op_http_server_port(fx.s));
		conn_sends(&c[i], "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
		ck_assert_int_eq(read_resp(&c[i], &r, 5000), 0);
		if (i < 2) {
			ck_assert_int_eq(r.status, 200);
		} else {
			assert_error(&r, 503, "busy", "too many connections");
			ck_assert(wait_closed(&c[i], 5000));
		}
		resp_fini(&r);
	}
	for (int i = 0; i < 3; i++)
		conn_close(&c[i]);
	fx_stop(&fx);
}
END_TEST

START_TEST(server_per_ip_limit)
{
	struct fixture fx;
	struct op_http_opts o = {.per_ip_limit = 1};
	struct conn c1, c2;
	struct resp r;
	fx_start(&fx, &o);
	uint16_t port = op_http_server_port(fx.s);
	conn_open(&c1, port);
	conn_sends(&c1, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
	ck_assert_int_eq(read_resp(&c1, &r, 5000), 0);
	ck_assert_int_eq(r.status, 200);
	resp_fini(&r);
	/* A second connection from the same address is refused while c1 is open. */
	conn_open(&c2, port);
	const char *get = "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n";
	(void)send(c2.fd, get, strlen(get), MSG_NOSIGNAL); /* may fail: refused */
	ck_assert_int_eq(read_resp(&c2, &r, 5000), -2);
	conn_close(&c2);
	/* HEAD is served by the GET route, without a body but with its length. */
	conn_sends(&c1, "HEAD /orders/7 HTTP/1.1\r\nHost: t\r\n\r\n");
	uint64_t deadline = now_ms() + 5000;
	while (strstr(c1.buf, "\r\n\r\n") == NULL)
		ck_assert_int_gt(conn_fill(&c1, deadline), 0);
	ck_assert_msg(strncmp(c1.buf, "HTTP/1.1 200", 12) == 0, "%s", c1.buf);
	ck_assert_ptr_nonnull(strstr(c1.buf, "Content-Length: "));
	ck_assert_str_eq(strstr(c1.buf, "\r\n\r\n"), "\r\n\r\n");
	conn_close(&c1);
	fx_stop(&fx);
}
END_TEST

static void wait_inflight(struct op_http_server *s, unsigned n)
{
	uint64_t deadline = now_ms() + 5000;
	while (op_http_server_inflight(s) != n) {
		ck_assert_msg(now_ms() < deadline, "in-flight never reached %u", n);
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
}

START_TEST(server_stop_while_handler_runs)
{
	struct fixture fx;
	struct op_http_opts o = {.request_ms = 20000, .stop_ms = 3000};
	struct conn c;
	struct resp r;
	fx_start(&fx, &o);
	conn_open(&c, op_http_server_port(fx.s));
	conn_sends(&c, "POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
	wait_inflight(fx.s, 1);
	uint64_t t0 = now_ms();
	ck_assert_int_eq(op_http_server_stop(fx.s), OP_OK);
	ck_assert_uint_lt(now_ms() - t0, 2500); /* well before stop_ms: the handler saw the stop */
	/* The handler saw the stop and its answer went out before the close. */
	ck_assert_int_eq(read_resp(&c, &r, 5000), 0);
	assert_error(&r, 503, "busy", NULL);
	ck_assert_str_eq(resp_header(&r, "connection"), "close");
	resp_fini(&r);
	conn_close(&c);
	op_http_router_free(fx.rt);
}
END_TEST

static void *stop_thread(void *arg)
{
	struct op_http_server *s = arg;
	(void)op_http_server_stop(s);
	return NULL;
}

/* While stop waits for a running handler, a request on a new connection is
 * answered 503 `stopping` and its connection closed. */
START_TEST(server_stop_answers_new_requests)
{
	struct fixture fx;
	struct op_http_opts o = {.request_ms = 3000, .stop_ms = 6000};
	struct conn c, n;
	struct resp r;
	fx_start(&fx, &o);
	uint16_t port = op_http_server_port(fx.s);
	conn_open(&c, port);
	conn_sends(&c, "POST /stubborn HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
	wait_inflight(fx.s, 1);
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, stop_thread, fx.s), 0);
	/* Until the stop has begun, a new request may still be served. */
	bool refused = false;
	for (uint64_t t0 = now_ms(); !refused && now_ms() - t0 < 2500;) {
		conn_open(&n, port);
		conn_sends(&n, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
		ck_assert_int_eq(read_resp(&n, &r, 5000), 0);
		if (r.status == 503) {
			assert_error(&r, 503, "stopping", "shutting down");
			ck_assert_str_eq(resp_header(&r, "connection"), "close");
			ck_assert(wait_closed(&n, 5000));
			refused = true;
		} else {
			ck_assert_int_eq(r.status, 200);
		}
		resp_fini(&r);
		conn_close(&n);
	}
	ck_assert(refused);
	pthread_join(th, NULL);
	/* The running request was answered before the server went away. */
	ck_assert_int_eq(read_resp(&c, &r, 5000), 0);
	ck_assert_int_eq(r.status, 504);
	resp_fini(&r);
	conn_close(&c);
	op_http_router_free(fx.rt);
}
END_TEST

/* On c comes the error status/code or, before it, the close. */
static void error_or_closed(struct conn *c, int status, const char *code)
{
	struct resp r;
	int rr = read_resp(c, &r, 5000);
	if (rr == 0) {
		assert_error(&r, status, code, NULL);
		resp_fini(&r);
	} else {
		ck_assert_int_eq(rr, -2);
	}
}

START_TEST(server_stop_bounded)
{
	struct fixture fx;
	struct op_http_opts o = {.request_ms = 1500, .stop_ms = 200};
	struct conn c;
	fx_start(&fx, &o);
	conn_open(&c, op_http_server_port(fx.s));
	conn_sends(&c, "POST /stubborn HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
	wait_inflight(fx.s, 1);
	uint64_t t0 = now_ms();
	ck_assert_int_eq(op_http_server_stop(fx.s), OP_ETIMEOUT);
	uint64_t dt = now_ms() - t0;
	ck_assert_msg(dt < 3000, "stop took %llu ms", (unsigned long long)dt);
	/* The late handler's 504 may or may not be sent; the connection is closed. */
	error_or_closed(&c, 504, "timeout");
	conn_close(&c);
	op_http_router_free(fx.rt);
}
END_TEST

/* Waits until T_DEFER has left a token and takes it. */
static struct op_http_deferred *take_pending(struct fixture *fx)
{
	uint64_t deadline = now_ms() + 5000;
	struct op_http_deferred *d;
	while ((d = atomic_exchange(&fx->pending, NULL)) == NULL) {
		ck_assert_msg(now_ms() < deadline, "the handler never deferred");
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	return d;
}

/* Sends POST /defer on a new connection c; returns the token it left. */
static struct op_http_deferred *defer_on(struct fixture *fx, struct conn *c)
{
	conn_open(c, op_http_server_port(fx->s));
	conn_sends(c, "POST /defer HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
	return take_pending(fx);
}

/* A deferred answer comes from another thread later, or from the handler's
 * own thread before it returns; the connection serves on afterwards. */
START_TEST(server_deferred_answer)
{
	struct fixture fx;
	struct op_http_opts o = {0};
	struct conn c;
	struct resp r;
	fx_start(&fx, &o);
	struct op_http_deferred *d = defer_on(&fx, &c);
	/* Suspended: nothing comes until the answer does. */
	ck_assert_int_eq(read_resp(&c, &r, 200), -1);
	ck_assert_uint_eq(op_http_server_inflight(fx.s), 1);
	deferred_answer(d, "later");
	ck_assert_int_eq(read_resp(&c, &r, 5000), 0);
	ck_assert_int_eq(r.status, 202);
	ck_assert_str_eq(r.body, "{\"id\":\"later\"}");
	ck_assert_ptr_null(resp_header(&r, "connection"));
	resp_fini(&r);
	conn_sends(&c, "POST /defer?now=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
	ck_assert_int_eq(read_resp(&c, &r, 5000), 0);
	ck_assert_int_eq(r.status, 202);
	ck_assert_str_eq(r.body, "{\"id\":\"now\"}");
	resp_fini(&r);
	conn_close(&c);
	fx_stop(&fx);
}
END_TEST

/*
 * Sweeps at now + ahead until one closes a connection; fails after 5 s.
 * The server registers a connection, and restarts its deadline after an
 * answer, on its own threads: this waits for that, not for a time.
 */
static void sweep_closes_one(struct op_http_server *s, uint64_t ahead)
{
	uint64_t deadline = now_ms() + 5000;
	while (op_http_server_sweep(s, now_ms() + ahead) == 0) {
		ck_assert_msg(now_ms() < deadline,
		              "no connection was past its deadline (ahead %llu)",
		              (unsigned long long)ahead);
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
}

/*
 * Read deadlines, driven by op_http_server_sweep() with times ahead of the
 * clock: a header that trickles past header_ms closes its connection, a
 * body gets body_ms from its header on, a handler that runs long has no
 * deadline, and a kept-alive connection waits header_ms for its next
 * request. The idle timeout is far off, so only the sweep closes anything.
 */
START_TEST(server_read_deadlines)
{
	struct fixture fx;
	struct op_http_opts o = {.client_timeout = 600, .header_ms = 2000, .body_ms = 10000};
	struct conn h, b, k;
	struct resp r;
	fx_start(&fx, &o);
	uint16_t port = op_http_server_port(fx.s);

	/* A header that never ends. */
	conn_open(&h, port);
	conn_sends(&h, "POST /orders HTTP/1.1\r\nHost: t\r\n");
	ck_assert_uint_eq(op_http_server_sweep(fx.s, now_ms()), 0);
	sweep_closes_one(fx.s, 2000);
	ck_assert(wait_closed(&h, 5000));
	conn_close(&h);

	/* A header in, its body trickling: MHD's 100 Continue says the header
	 * was read, so from here the body's deadline counts, not the header's. */
	conn_open(&b, port);
	conn_sends(&b, "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
	               "Content-Length: 10\r\nExpect: 100-continue\r\n\r\n");
	uint64_t until = now_ms() + 5000;
	while (b.buf == NULL || strstr(b.buf, "\r\n\r\n") == NULL)
		ck_assert_int_gt(conn_fill(&b, until), 0);
	ck_assert_msg(strncmp(b.buf, "HTTP/1.1 100", 12) == 0, "got %s", b.buf);
	conn_sends(&b, "{\"a\"");
	ck_assert_uint_eq(op_http_server_sweep(fx.s, now_ms() + 5000), 0);
	sweep_closes_one(fx.s, 10000);
	ck_assert(wait_closed(&b, 5000));
	conn_close(&b);

	/* A handler still running: no deadline, however late. */
	struct op_http_deferred *d = defer_on(&fx, &k);
	ck_assert_uint_eq(op_http_server_sweep(fx.s, now_ms() + 3600000), 0);
	deferred_answer(d, "late");
	ck_assert_int_eq(read_resp(&k, &r, 5000), 0);
	ck_assert_int_eq(r.status, 202);
	resp_fini(&r);
	/* Answered and kept alive, it waits for its next request as long as the
	 * idle timeout allows, and closing it then is no slow client. */
	ck_assert_uint_eq(op_http_server_sweep(fx.s, now_ms() + 10000), 0);
	ck_assert(!wait_closed(&k, 100));
	bool closed = false;
	for (uint64_t end = now_ms() + 5000; !closed && now_ms() < end;) {
		ck_assert_uint_eq(op_http_server_sweep(fx.s, now_ms() + 601000), 0);
		closed = wait_closed(&k, 20);
	}
	ck_assert(closed);
	conn_close(&k);
	fx_stop(&fx);
}
END_TEST

/*
 * Handlers run on the MHD threads: while one runs, its thread reads none of
 * its other connections, and the sweep spares them (a request whose bytes
 * wait in the socket is not a slow client); once the thread is free again
 * the deadlines count.
 */
START_TEST(server_read_deadlines_busy_thread)
{
	struct fixture fx;
	struct op_http_opts o = {
	    .threads = 1, .client_timeout = 600, .header_ms = 2000, .request_ms = 1500};
	struct conn a, b;
	struct resp r;
	fx_start(&fx, &o);
	uint16_t port = op_http_server_port(fx.s);
	conn_open(&b, port);
	conn_sends(&b, "GET /orders/1 HTTP/1.1\r\nHost: t\r\n\r\n");
	ck_assert_int_eq(read_resp(&b, &r, 5000), 0);
	resp_fini(&r);
	conn_open(&a, port);
	conn_sends(&a, "POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
	wait_inflight(fx.s, 1);
	conn_sends(&b, "POST /orders HTTP/1.1\r\nHost: t\r\n");
	/* Past every deadline, but the thread is in /slow's handler. */
	ck_assert_uint_eq(op_http_server_sweep(fx.s, now_ms() + 3600000), 0);
	ck_assert(!wait_closed(&b, 100));
	ck_assert_int_eq(read_resp(&a, &r, 5000), 0);
	ck_assert_int_eq(r.status, 504);
	resp_fini(&r);
	/* Free again: b's header is late. */
	sweep_closes_one(fx.s, 5000);
	ck_assert(wait_closed(&b, 5000));
	conn_close(&a);
	conn_close(&b);
	fx_stop(&fx);
}
END_TEST

/*
 * A deferred answer that never comes (a store whose writer hangs) does not
 * hold the stop up, nor make libmicrohttpd abort on a suspended connection:
 * the client gets 503 SHUTTING_DOWN with Retry-After, and the answer that
 * comes after the server is gone, as the store's at its close, is dropped
 * (ASan checks that nothing freed is touched and nothing leaks).
 */
START_TEST(server_stop_answers_deferred)
{
	struct fixture fx;
	struct op_http_opts o = {.stop_ms = 300};
	struct conn c, k;
	struct resp r;
	fx_start(&fx, &o);
	struct op_http_deferred *d = defer_on(&fx, &c);
	/* A second one, answered before the stop: it is not touched. */
	struct op_http_deferred *answered = defer_on(&fx, &k);
	deferred_answer(answered, "in time");
	ck_assert_int_eq(read_resp(&k, &r, 5000), 0);
	ck_assert_int_eq(r.status, 202);
	resp_fini(&r);
	conn_close(&k);
	wait_inflight(fx.s, 1);

	uint64_t t0 = now_ms();
	ck_assert_int_eq(op_http_server_stop(fx.s), OP_ETIMEOUT);
	uint64_t dt = now_ms() - t0;
	ck_assert_msg(dt >= 300 && dt < 2000, "stop took %llu ms", (unsigned long long)dt);
	/* The 503 went out before the server went away. */
	ck_assert_int_eq(read_resp(&c, &r, 100), 0);
	assert_error(&r, 503, "SHUTTING_DOWN", "the request was not accepted, send it again");
	ck_assert_str_eq(resp_header(&r, "retry-after"), "5");
	ck_assert_str_eq(resp_header(&r, "connection"), "close");
	resp_fini(&r);
	ck_assert(wait_closed(&c, 5000));
	conn_close(&c);

	/* The store's answer, after the server is freed. */
	deferred_answer(d, "too late");
	op_http_router_free(fx.rt);
}
END_TEST

/* give_up: the owner answers what it holds itself. */
static void fx_give_up(void *ud)
{
	struct fixture *fx = ud;
	fx->gave_up++;
	deferred_answer(fx->held, "cancelled by the owner");
}

/*
 * With a give_up callback, a stop that runs out of time first lets the owner
 * end its work: the answer it then gives is the client's, not the server's
 * 503. Without answers missing, give_up is not called.
 */
START_TEST(server_stop_gives_up_first)
{
	struct fixture fx;
	struct op_http_opts o = {.stop_ms = 300, .give_up = fx_give_up};
	struct conn c;
	struct resp r;
	fx_start(&fx, &o);
	fx.gave_up = 0;
	fx.held = defer_on(&fx, &c);
	wait_inflight(fx.s, 1);
	ck_assert_int_eq(op_http_server_stop(fx.s), OP_ETIMEOUT);
	ck_assert_int_eq(fx.gave_up, 1);
	ck_assert_int_eq(read_resp(&c, &r, 1000), 0);
	ck_assert_int_eq(r.status, 202);
	ck_assert_str_eq(r.body, "{\"id\":\"cancelled by the owner\"}");
	resp_fini(&r);
	conn_close(&c);
	op_http_router_free(fx.rt);

	fx_start(&fx, &o);
	fx.gave_up = 0;
	ck_assert_int_eq(op_http_server_stop(fx.s), OP_OK);
	ck_assert_int_eq(fx.gave_up, 0);
	op_http_router_free(fx.rt);
}
END_TEST

/*
 * The same while the only worker thread is busy in a handler that ignores
 * the stop: the resumed connection cannot be served before the handler
 * returns, yet the stop neither aborts nor hangs on it.
 */
START_TEST(server_stop_deferred_busy_worker)
{
	struct fixture fx;
	struct op_http_opts o = {.threads = 1, .request_ms = 3500, .stop_ms = 200};
	struct conn c, b;
	fx_start(&fx, &o);
	struct op_http_deferred *d = defer_on(&fx, &c);
	conn_open(&b, op_http_server_port(fx.s));
	conn_sends(&b, "POST /stubborn HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
	wait_inflight(fx.s, 2);
	ck_assert_int_eq(op_http_server_stop(fx.s), OP_ETIMEOUT);
	/* Answered or closed; never left hanging. */
	error_or_closed(&c, 503, "SHUTTING_DOWN");
	conn_close(&c);
	conn_close(&b);
	deferred_answer(d, "too late");
	op_http_router_free(fx.rt);
}
END_TEST

START_TEST(server_start_errors)
{
	struct op_http_server *s = (struct op_http_server *)1;
	char err[256];
	struct op_http_opts o = {.host = "localhost"};
	ck_assert_int_eq(op_http_server_start(&o, handler, NULL, &s, err, sizeof(err)), OP_ECONFIG);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(err, "not a numeric IPv4 or IPv6 address"));
	o = (struct op_http_opts){.tls_cert = "/nonexistent/cert.pem", .tls_key = "/x"};
	ck_assert_int_eq(op_http_server_start(&o, handler, NULL, &s, err, sizeof(err)), OP_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "cannot open /nonexistent/cert.pem"));

	/* A port in use is OP_EIO. */
	struct fixture fx;
	struct op_http_opts a = {0};
	fx_start(&fx, &a);
	o = (struct op_http_opts){.host = "127.0.0.1", .port = op_http_server_port(fx.s)};
	ck_assert_int_eq(op_http_server_start(&o, handler, NULL, &s, err, sizeof(err)), OP_EIO);
	ck_assert_ptr_nonnull(strstr(err, "cannot listen on 127.0.0.1"));
	ck_assert_msg(strstr(err, "Address already in use") != NULL, "the reason is missing: %s",
	              err);
	fx_stop(&fx);
	ck_assert_int_eq(op_http_server_stop(NULL), OP_OK);
}
END_TEST

START_TEST(server_out_of_memory)
{
	struct fixture fx;
	struct op_http_opts o = {0};
	struct resp r;
	fx_start(&fx, &o);
	uint16_t port = op_http_server_port(fx.s);
	/* Fail every allocation from the n-th on: answered 503 or closed, never a crash. */
	for (uint64_t n = 1; n <= 40; n++) {
		struct conn c;
		conn_open(&c, port);
		op_alloc_fail_at(n);
		conn_sends(&c,
		           "POST /orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
		           "Content-Length: 9\r\n\r\n{\"a\":[1]}");
		int rr = read_resp(&c, &r, 5000);
		op_alloc_fail_at(0);
		if (rr == 0) {
			ck_assert_msg(r.status == 503 || r.status == 201, "status %d", r.status);
			resp_fini(&r);
		} else {
			ck_assert_int_eq(rr, -2);
		}
		conn_close(&c);
	}
	/* And it serves normally afterwards. */
	roundtrip(port, "GET /orders/1 HTTP/1.1\r\nHost: t\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	resp_fini(&r);
	fx_stop(&fx);
}
END_TEST

static void write_temp(char *path, const char *text)
{
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	size_t n = strlen(text);
	ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
	close(fd);
}

START_TEST(server_tls)
{
	char cert[] = "/tmp/op-http-cert-XXXXXX", key[] = "/tmp/op-http-key-XXXXXX";
	write_temp(cert, test_cert_pem);
	write_temp(key, test_key_pem);
	struct fixture fx;
	struct op_http_opts o = {.tls_cert = cert, .tls_key = key};
	fx_start(&fx, &o);
	unlink(cert);
	unlink(key);

	ck_assert_int_eq(wolfSSL_Init(), WOLFSSL_SUCCESS);
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLS_client_method());
	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(wolfSSL_CTX_load_verify_buffer(ctx, (const unsigned char *)test_cert_pem,
	                                                (long)strlen(test_cert_pem),
	                                                WOLFSSL_FILETYPE_PEM),
	                 WOLFSSL_SUCCESS);
	struct conn c;
	struct resp r;
	conn_open(&c, op_http_server_port(fx.s));
	c.ssl = wolfSSL_new(ctx);
	ck_assert_ptr_nonnull(c.ssl);
	wolfSSL_set_fd(c.ssl, c.fd);
	ck_assert_int_eq(wolfSSL_check_domain_name(c.ssl, "localhost"), WOLFSSL_SUCCESS);
	int rc = wolfSSL_connect(c.ssl);
	ck_assert_msg(rc == WOLFSSL_SUCCESS, "TLS handshake failed: %d",
	              wolfSSL_get_error(c.ssl, rc));
	for (int i = 0; i < 3; i++) {
		conn_sends(&c, "GET /orders/tls HTTP/1.1\r\nHost: t\r\n\r\n");
		ck_assert_int_eq(read_resp(&c, &r, 5000), 0);
		ck_assert_int_eq(r.status, 200);
		ck_assert_ptr_nonnull(strstr(r.body, "\"params\":{\"id\":\"tls\"}"));
		resp_fini(&r);
	}
	conn_close(&c);

	/* Plain HTTP on the TLS port gets no HTTP answer. */
	conn_open(&c, op_http_server_port(fx.s));
	conn_sends(&c, "GET /orders/1 HTTP/1.1\r\nHost: t\r\n\r\n");
	ck_assert_int_ne(read_resp(&c, &r, 3000), 0);
	conn_close(&c);

	wolfSSL_CTX_free(ctx);
	wolfSSL_Cleanup();
	fx_stop(&fx);
}
END_TEST

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("route");
	tcase_add_test(tc, route_compile_errors);
	tcase_add_test(tc, route_match_params);
	tcase_add_test(tc, router_specificity_404_405);
	tcase_add_test(tc, route_out_of_memory);
	suite_add_tcase(s, tc);
	tc = tcase_create("server");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, server_routes_query_headers);
	tcase_add_test(tc, server_json_body);
	tcase_add_test(tc, server_body_limit);
	tcase_add_test(tc, server_keep_alive);
	tcase_add_test(tc, server_slow_client_dropped);
	tcase_add_test(tc, server_read_deadlines);
	tcase_add_test(tc, server_read_deadlines_busy_thread);
	tcase_add_test(tc, server_concurrent_clients);
	tcase_add_test(tc, server_connection_limit);
	tcase_add_test(tc, server_per_ip_limit);
	tcase_add_test(tc, server_stop_while_handler_runs);
	tcase_add_test(tc, server_stop_bounded);
	tcase_add_test(tc, server_stop_answers_new_requests);
	tcase_add_test(tc, server_deferred_answer);
	tcase_add_test(tc, server_stop_answers_deferred);
	tcase_add_test(tc, server_stop_gives_up_first);
	tcase_add_test(tc, server_stop_deferred_busy_worker);
	tcase_add_test(tc, server_start_errors);
	tcase_add_test(tc, server_out_of_memory);
	tcase_add_test(tc, server_tls);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(http_suite)
