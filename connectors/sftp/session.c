/*
 * SSH sessions for the sftp step (see sftp.h): libssh2's one-time set-up,
 * the name lookup and TCP connect, the handshake and login, the pool of idle
 * sessions, waiting on the socket, and the translation of libssh2's codes
 * into classes (op_sftp__err, the only place they are translated).
 *
 * Invariant: a session is in the pool only when its last use ended with
 * every exchange complete (nothing half sent or half read), and it is used
 * by one thread at a time. libssh2 runs non-blocking; every wait is a poll
 * of at most 100 ms that checks the deadline and cancellation, so no call
 * blocks past its bounds. libssh2 1.10 can also spin inside one call (an
 * SFTP packet cut short by the end of the channel loops on reads that
 * return 0), so every read from the socket goes through a guard that fails
 * when the SFTP channel has ended with nothing left to read, when the call
 * is cancelled, or a second past the exchange's end. All libssh2
 * allocations of a session go through its arena: closing a session frees
 * everything libssh2 kept for it, and the blocks of the connect (where
 * passwords and key signatures pass) are wiped before they are freed.
 */
#define OP_LOG_MODULE "sftp"
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/account/account.h"
#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/clock.h"
#include "agent/core/log.h"
#include "connectors/sftp/sftp_int.h"

#define WAIT_SLICE_MS  100  /* longest poll before the deadline and cancellation are checked */
#define CLOSE_WAIT_MS  1000 /* a polite close of a healthy session */
#define GUARD_GRACE_MS 1000 /* the receive guard's margin past an exchange's end */
#define SPARE_MIN      4096 /* freed blocks kept for reuse: at least this large, */
#define SPARE_BIG      (128u << 10) /* at most this large, */
#define SPARE_MAX      16           /* this many */
#define HOST_MAX       255
#define CIPHERS        "aes128-ctr,aes192-ctr,aes256-ctr,aes256-cbc,aes192-cbc,aes128-cbc"

/* ---- libssh2 set-up and allocations ---- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc = -1;

static void init_libssh2(void)
{
	init_rc = libssh2_init(0);
}

struct op_sftp__block {
	struct op_sftp__block *prev, *next;
	size_t n;   /* bytes lent to libssh2 */
	size_t cap; /* bytes allocated */
	bool wipe;
	_Alignas(max_align_t) unsigned char data[];
};

static void block_link(struct op_sftp__block **list, struct op_sftp__block *b)
{
	b->prev = NULL;
	b->next = *list;
	if (*list)
		(*list)->prev = b;
	*list = b;
}

static void block_unlink(struct op_sftp__block **list, struct op_sftp__block *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		*list = b->next;
	if (b->next)
		b->next->prev = b->prev;
}

static void lent(struct op_sftp__arena *a, struct op_sftp__block *b)
{
	block_link(&a->head, b);
	a->bytes += b->cap;
	if (a->bytes > a->peak)
		a->peak = a->bytes;
}

static void returned(struct op_sftp__arena *a, struct op_sftp__block *b)
{
	block_unlink(&a->head, b);
	a->bytes -= b->cap;
}

static struct op_sftp__block *block_of(void *p)
{
	return (struct op_sftp__block *)((char *)p - offsetof(struct op_sftp__block, data));
}

static void block_free(const struct op_sftp__arena *a, struct op_sftp__block *b)
{
	if (b->wipe || a->wipe)
		op_free_secret(b, sizeof(*b) + b->cap);
	else
		op_free(b);
}

/* A spare block for count bytes: large enough, at most twice as large. */
static struct op_sftp__block *spare_take(struct op_sftp__arena *a, size_t count)
{
	if (count < SPARE_MIN)
		return NULL;
	for (struct op_sftp__block *b = a->spare; b; b = b->next) {
		if (b->cap >= count && b->cap / 2 <= count) {
			block_unlink(&a->spare, b);
			a->n_spare--;
			return b;
		}
	}
	return NULL;
}

static struct op_sftp__arena *arena_of(void **abstract)
{
	struct op_sftp_conn *s = *abstract;
	return &s->arena;
}

static LIBSSH2_ALLOC_FUNC(arena_alloc)
{
	struct op_sftp__arena *a = arena_of(abstract);
	struct op_sftp__block *b = a->wipe ? NULL : spare_take(a, count);
	if (b == NULL) {
		if (count > SIZE_MAX - sizeof(struct op_sftp__block))
			return NULL;
		b = op_malloc(sizeof(*b) + count);
		if (b == NULL)
			return NULL;
		b->cap = count;
	}
	b->n = count;
	b->wipe = a->wipe;
	lent(a, b);
	return b->data;
}

static LIBSSH2_FREE_FUNC(arena_free)
{
	if (ptr == NULL)
		return;
	struct op_sftp__arena *a = arena_of(abstract);
	struct op_sftp__block *b = block_of(ptr);
	returned(a, b);
	/* Packets of a transfer come and go at the same few sizes: a few
	 * spare blocks save malloc the churn at the top of the heap (a page
	 * fault and a cleared page for every packet). */
	if (!b->wipe && !a->wipe && b->cap >= SPARE_MIN && b->cap <= SPARE_BIG &&
	    a->n_spare < SPARE_MAX) {
		block_link(&a->spare, b);
		a->n_spare++;
		return;
	}
	block_free(a, b);
}

static LIBSSH2_REALLOC_FUNC(arena_realloc)
{
	if (ptr == NULL)
		return arena_alloc(count, abstract);
	struct op_sftp__arena *a = arena_of(abstract);
	struct op_sftp__block *b = block_of(ptr);
	if (count <= b->cap) {
		b->n = count;
		return ptr;
	}
	if (b->wipe) {
		/* A secret may be in it: a new block, the old one wiped. */
		void *p = arena_alloc(count, abstract);
		if (p == NULL)
			return NULL;
		memcpy(p, ptr, b->n);
		arena_free(ptr, abstract);
		return p;
	}
	if (count > SIZE_MAX - sizeof(*b))
		return NULL;
	returned(a, b);
	struct op_sftp__block *nb = op_realloc(b, sizeof(*b) + count);
	if (nb == NULL) {
		lent(a, b);
		return NULL;
	}
	nb->n = nb->cap = count;
	lent(a, nb);
	return nb->data;
}

/* Frees the spare blocks (a session going idle in the pool keeps none). */
static void arena_trim(struct op_sftp__arena *a)
{
	while (a->spare) {
		struct op_sftp__block *b = a->spare;
		block_unlink(&a->spare, b);
		block_free(a, b);
	}
	a->n_spare = 0;
}

/* Frees what libssh2 left in the arena (libssh2 1.10 keeps the handles of
 * a session it could not close politely), and the spares. */
static void arena_sweep(struct op_sftp__arena *a)
{
	while (a->head) {
		struct op_sftp__block *b = a->head;
		returned(a, b);
		block_free(a, b);
	}
	arena_trim(a);
}

/* The bounds of a polite close (no cancellation: it is short). */
static const struct op_sftp_call close_call = {
    .timeout_ms = CLOSE_WAIT_MS,
    .connect_timeout_ms = CLOSE_WAIT_MS,
    .deadline_ms = LLONG_MAX,
};

/* Every read libssh2 makes from the socket (LIBSSH2_CALLBACK_RECV). */
static LIBSSH2_RECV_FUNC(guarded_recv)
{
	struct op_sftp_conn *s = *abstract;
	const struct op_sftp_call *call = s->call;
	if (s->stop == OP_OK && call) {
		if (call->cancelled && call->cancelled(call->cancel_ud))
			s->stop = OP_ECANCELED;
		else if (s->until > 0 && op_mono_ms() > s->until + GUARD_GRACE_MS)
			s->stop = OP_ETIMEOUT;
		else if (s->sftp && call != &close_call &&
		         libssh2_channel_eof(libssh2_sftp_get_channel(s->sftp)) == 1)
			s->stop = OP_EIO; /* no answer can come any more */
	}
	if (s->stop)
		return -ECONNABORTED;
	ssize_t r = recv(socket, buffer, length, flags);
	return r < 0 ? -errno : r;
}

/* ---- classes and messages ---- */

op_err op_sftp__err(int rc, unsigned long status)
{
	if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL) {
		switch (status) {
		case LIBSSH2_FX_OK:
			/* An error without a status: an answer libssh2 could not use. */
			return OP_EPARSE;
		case LIBSSH2_FX_NO_SUCH_FILE:
		case LIBSSH2_FX_NO_SUCH_PATH:
			return OP_ENOTFOUND;
		case LIBSSH2_FX_PERMISSION_DENIED:
		case LIBSSH2_FX_UNKNOWN_PRINCIPAL:
			return OP_EAUTH;
		case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM:
		case LIBSSH2_FX_QUOTA_EXCEEDED:
			return OP_EFULL;
		case LIBSSH2_FX_LOCK_CONFLICT:
			return OP_EBUSY;
		case LIBSSH2_FX_NO_CONNECTION:
			return OP_ENOCONN;
		case LIBSSH2_FX_CONNECTION_LOST:
			return OP_EIO;
		case LIBSSH2_FX_OP_UNSUPPORTED:
			return OP_EUNSUPPORTED;
		case LIBSSH2_FX_INVALID_HANDLE:
			return OP_EPARSE;
		default:
			/* failure, bad message, exists, not empty, not a directory,
			 * write protect, invalid name, link loop, no media, EOF where
			 * none belongs, and codes we do not know: the server said no. */
			return OP_EREJECTED;
		}
	}
	switch (rc) {
	case LIBSSH2_ERROR_NONE:
		return OP_OK;
	case LIBSSH2_ERROR_TIMEOUT:
	case LIBSSH2_ERROR_SOCKET_TIMEOUT:
		return OP_ETIMEOUT;
	case LIBSSH2_ERROR_SOCKET_NONE:
	case LIBSSH2_ERROR_BANNER_SEND:
	case LIBSSH2_ERROR_SOCKET_SEND:
	case LIBSSH2_ERROR_SOCKET_RECV:
	case LIBSSH2_ERROR_SOCKET_DISCONNECT:
	case LIBSSH2_ERROR_CHANNEL_CLOSED:
	case LIBSSH2_ERROR_CHANNEL_EOF_SENT:
	case LIBSSH2_ERROR_CHANNEL_WINDOW_FULL:
		/* The connection broke: another attempt may go through. */
		return OP_EIO;
	case LIBSSH2_ERROR_BANNER_RECV:
	case LIBSSH2_ERROR_INVALID_MAC:
	case LIBSSH2_ERROR_KEX_FAILURE:
	case LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE:
	case LIBSSH2_ERROR_HOSTKEY_INIT:
	case LIBSSH2_ERROR_DECRYPT:
	case LIBSSH2_ERROR_PROTO:
	case LIBSSH2_ERROR_CHANNEL_OUTOFORDER:
	case LIBSSH2_ERROR_CHANNEL_UNKNOWN:
	case LIBSSH2_ERROR_CHANNEL_WINDOW_EXCEEDED:
	case LIBSSH2_ERROR_CHANNEL_PACKET_EXCEEDED:
	case LIBSSH2_ERROR_ZLIB:
	case LIBSSH2_ERROR_COMPRESS:
	case LIBSSH2_ERROR_OUT_OF_BOUNDARY:
	case LIBSSH2_ERROR_PUBLICKEY_PROTOCOL:
	case LIBSSH2_ERROR_METHOD_NONE:
		/* Bytes that are not SSH as we speak it: garbage, a truncated or
		 * oversized packet, no algorithm in common. Not retryable. */
		return OP_EPARSE;
	case LIBSSH2_ERROR_HOSTKEY_SIGN:
	case LIBSSH2_ERROR_PASSWORD_EXPIRED:
	case LIBSSH2_ERROR_FILE:
	case LIBSSH2_ERROR_AUTHENTICATION_FAILED:
	case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
	case LIBSSH2_ERROR_KEYFILE_AUTH_FAILED:
		return OP_EAUTH;
	case LIBSSH2_ERROR_CHANNEL_FAILURE:
	case LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED:
	case LIBSSH2_ERROR_REQUEST_DENIED:
		return OP_EREJECTED;
	case LIBSSH2_ERROR_METHOD_NOT_SUPPORTED:
		return OP_EUNSUPPORTED;
	case LIBSSH2_ERROR_KNOWN_HOSTS:
		return OP_ECONFIG;
	case LIBSSH2_ERROR_BUFFER_TOO_SMALL:
		return OP_ELIMIT;
	case LIBSSH2_ERROR_ALLOC:
		return OP_ENOMEM;
	default:
		/* INVAL, BAD_USE, EAGAIN escaping, ENCRYPT, RANDGEN...: ours. */
		return OP_EINTERNAL;
	}
}

static const char *status_text(unsigned long st)
{
	static const char *const text[] = {
	    "ok",
	    "end of file",
	    "no such file or directory",
	    "permission denied",
	    "failure",
	    "bad message",
	    "no connection",
	    "connection lost",
	    "operation not supported",
	    "invalid handle",
	    "no such path",
	    "already exists",
	    "write protected",
	    "no media",
	    "no space left on the file system",
	    "quota exceeded",
	    "unknown principal",
	    "lock conflict",
	    "directory not empty",
	    "not a directory",
	    "invalid file name",
	    "too many symbolic links",
	};
	return st < sizeof(text) / sizeof(text[0]) ? text[st] : "unknown status";
}

op_err op_sftp__fail(struct op_sftp_fail *f, op_err cls, const char *code, const char *fmt, ...)
{
	/* A failure is never success, whatever a library said. */
	if (cls == OP_OK)
		cls = OP_EINTERNAL;
	f->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
	va_end(ap);
	return cls;
}

op_err op_sftp__fail_ssh(struct op_sftp_conn *s, int rc, const char *what, struct op_sftp_fail *f)
{
	if (s->stop) {
		s->broken = true;
		if (s->stop == OP_ECANCELED)
			return op_sftp__fail(f, s->stop, "CANCELLED", "%s: %s: cancelled", s->where,
			                     what);
		if (s->stop == OP_EIO)
			return op_sftp__fail(f, s->stop, "SFTP_ERROR",
			                     "%s: %s: the server ended the SFTP session", s->where,
			                     what);
		return op_sftp__fail(f, s->stop, "SFTP_TIMEOUT",
		                     "%s: %s: no complete answer within %lld ms", s->where, what,
		                     s->wait_ms);
	}
	if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL && s->sftp) {
		unsigned long st = libssh2_sftp_last_error(s->sftp);
		op_err cls = op_sftp__err(rc, st);
		return op_sftp__fail(f, cls, cls == OP_ENOTFOUND ? "SFTP_NOT_FOUND" : "SFTP_ERROR",
		                     "%s: %s: %s", s->where, what, status_text(st));
	}
	/* Not an answer of the server: the session is in no state to go on. */
	s->broken = true;
	char *m = NULL;
	libssh2_session_last_error(s->ss, &m, NULL, 0);
	op_err cls = op_sftp__err(rc, 0);
	return op_sftp__fail(f, cls, cls == OP_ETIMEOUT ? "SFTP_TIMEOUT" : "SFTP_ERROR",
	                     "%s: %s: %s", s->where, what, m && m[0] ? m : "libssh2 failed");
}

/* ---- waiting ---- */

static long long until_of(const struct op_sftp_call *call, long long ms)
{
	long long now = op_mono_ms();
	return ms < call->deadline_ms - now ? now + ms : call->deadline_ms;
}

long long op_sftp__until(struct op_sftp_conn *s)
{
	s->until = until_of(s->call, s->call->timeout_ms);
	s->wait_ms = s->until - op_mono_ms();
	return s->until;
}

/* Waits until fd is ready for events: OP_OK, OP_ETIMEOUT when until passed,
 * OP_ECANCELED, OP_EIO when poll fails. */
static op_err wait_fd(const struct op_sftp_call *call, int fd, short events, long long until)
{
	for (;;) {
		if (call->cancelled && call->cancelled(call->cancel_ud))
			return OP_ECANCELED;
		long long left = until - op_mono_ms();
		if (left <= 0)
			return OP_ETIMEOUT;
		struct pollfd p = {.fd = fd, .events = events};
		int r = poll(&p, 1, (int)(left < WAIT_SLICE_MS ? left : WAIT_SLICE_MS));
		if (r > 0)
			return OP_OK;
		if (r < 0 && errno != EINTR)
			return OP_EIO;
	}
}

bool op_sftp__again(struct op_sftp_conn *s, long long r, long long until, op_err *rc,
                    const char *what, struct op_sftp_fail *f)
{
	if (r != LIBSSH2_ERROR_EAGAIN)
		return false;
	int dir = libssh2_session_block_directions(s->ss);
	short ev = 0;
	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		ev |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		ev |= POLLOUT;
	op_err w = wait_fd(s->call, s->fd, ev ? ev : POLLIN, until);
	if (w == OP_OK)
		return true;
	s->broken = true;
	if (w == OP_ECANCELED)
		*rc = op_sftp__fail(f, w, "CANCELLED", "%s: %s: cancelled", s->where, what);
	else if (w == OP_ETIMEOUT)
		*rc = op_sftp__fail(f, w, "SFTP_TIMEOUT", "%s: %s: no answer within %lld ms",
		                    s->where, what, s->wait_ms);
	else
		*rc = op_sftp__fail(f, w, "SFTP_ERROR", "%s: %s: poll failed", s->where, what);
	return false;
}

int op_sftp__ptr_rc(struct op_sftp_conn *s, const void *p)
{
	if (p)
		return 0;
	int e = libssh2_session_last_errno(s->ss);
	return e ? e : LIBSSH2_ERROR_SOCKET_NONE;
}

/* ---- name lookup and TCP ---- */

/* A lookup in glibc's resolver threads (getaddrinfo_a), so that it is
 * bounded like everything else. Freed by whichever of the caller and the
 * completion notice lets go last: a caller that gives up does not wait. */
struct lookup {
	atomic_int refs;
	struct gaicb cb;
	struct addrinfo hints;
	char port[8];
	char host[HOST_MAX + 1];
};

static void lookup_unref(struct lookup *l)
{
	if (atomic_fetch_sub(&l->refs, 1) != 1)
		return;
	if (l->cb.ar_result)
		freeaddrinfo(l->cb.ar_result);
	op_free(l);
}

static void lookup_done(union sigval v)
{
	lookup_unref(v.sival_ptr);
}

static op_err resolve(struct op_sftp_conn *s, const char *host, int port, long long until,
                      struct addrinfo **out, struct op_sftp_fail *f)
{
	*out = NULL;
	char ps[8];
	snprintf(ps, sizeof(ps), "%d", port);
	/* An address literal needs no lookup. */
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	if (getaddrinfo(host, ps, &hints, out) == 0)
		return OP_OK;
	*out = NULL;
	struct lookup *l = op_calloc(1, sizeof(*l));
	if (l == NULL)
		return op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
	atomic_init(&l->refs, 2);
	snprintf(l->host, sizeof(l->host), "%s", host);
	memcpy(l->port, ps, sizeof(ps));
	l->hints.ai_family = AF_UNSPEC;
	l->hints.ai_socktype = SOCK_STREAM;
	l->hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
	l->cb.ar_name = l->host;
	l->cb.ar_service = l->port;
	l->cb.ar_request = &l->hints;
	struct gaicb *list[1] = {&l->cb};
	struct sigevent sev = {.sigev_notify = SIGEV_THREAD};
	sev.sigev_notify_function = lookup_done;
	sev.sigev_value.sival_ptr = l;
	int g = getaddrinfo_a(GAI_NOWAIT, list, 1, &sev);
	if (g != 0) {
		op_free(l);
		return op_sftp__fail(f, OP_ENOCONN, "SFTP_CONNECT", "%s: cannot look up %s: %s",
		                     s->where, host, gai_strerror(g));
	}
	op_err rc = OP_OK;
	for (;;) {
		g = gai_error(&l->cb);
		if (g != EAI_INPROGRESS)
			break;
		const struct op_sftp_call *call = s->call;
		if (call->cancelled && call->cancelled(call->cancel_ud)) {
			rc = op_sftp__fail(f, OP_ECANCELED, "CANCELLED", "%s: cancelled", s->where);
			break;
		}
		long long left = until - op_mono_ms();
		if (left <= 0) {
			rc = op_sftp__fail(f, OP_ETIMEOUT, "SFTP_TIMEOUT",
			                   "%s: no address for %s within %lld ms", s->where, host,
			                   call->connect_timeout_ms);
			break;
		}
		if (left > WAIT_SLICE_MS)
			left = WAIT_SLICE_MS;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = left * 1000000};
		const struct gaicb *wl[1] = {&l->cb};
		(void)gai_suspend(wl, 1, &ts);
	}
	if (rc == OP_OK && g == 0) {
		*out = l->cb.ar_result;
		l->cb.ar_result = NULL;
	} else if (rc == OP_OK) {
		rc = op_sftp__fail(f, OP_ENOCONN, "SFTP_CONNECT", "%s: cannot look up %s: %s",
		                   s->where, host, gai_strerror(g));
	}
	lookup_unref(l);
	return rc;
}

static op_err tcp_connect(struct op_sftp_conn *s, const char *host, int port,
                          struct op_sftp_fail *f)
{
	long long until = until_of(s->call, s->call->connect_timeout_ms);
	struct addrinfo *ai = NULL;
	op_err rc = resolve(s, host, port, until, &ai, f);
	if (rc)
		return rc;
	int err = ENOTCONN;
	for (const struct addrinfo *p = ai; p && s->fd < 0; p = p->ai_next) {
		int fd = socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		                p->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, p->ai_addr, p->ai_addrlen) != 0) {
			err = errno;
			if (err == EINPROGRESS) {
				rc = wait_fd(s->call, fd, POLLOUT, until);
				socklen_t len = sizeof(err);
				if (rc == OP_OK &&
				    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
					err = errno;
			}
			if (rc || err) {
				close(fd);
				if (rc)
					break;
				continue;
			}
		}
		s->fd = fd;
	}
	freeaddrinfo(ai);
	if (rc == OP_ETIMEOUT)
		return op_sftp__fail(f, rc, "SFTP_TIMEOUT", "%s: no connection within %lld ms",
		                     s->where, s->call->connect_timeout_ms);
	if (rc == OP_ECANCELED)
		return op_sftp__fail(f, rc, "CANCELLED", "%s: cancelled", s->where);
	if (s->fd < 0) {
		char eb[128];
		return op_sftp__fail(f, OP_ENOCONN, "SFTP_CONNECT", "%s: cannot connect: %s",
		                     s->where, strerror_r(err, eb, sizeof(eb)));
	}
	int one = 1;
	/* Requests are small and answered one by one: no Nagle delay. */
	(void)setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(s->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	return OP_OK;
}

/* ---- sessions ---- */

/* What pooled sessions are found by: where, and as whom in which version of
 * the account. A new string (op_free), NULL on ENOMEM. */
static char *pool_key(const char *host, int port, const struct op_account *a)
{
	struct op_buf k;
	op_buf_init(&k, 2 * OP_ACCOUNT_FIELD_MAX);
	if (op_buf_addf(&k, "%s\n%d\n%s\n%d\n%s\n%lld", host, port, a->name, (int)a->type,
	                a->username ? a->username : "", (long long)a->updated_ms) != OP_OK) {
		op_buf_fini(&k);
		return NULL;
	}
	return op_buf_take(&k);
}

static struct op_sftp_conn *conn_new(const char *host, int port, const struct op_account *a)
{
	struct op_sftp_conn *s = op_calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->fd = -1;
	snprintf(s->where, sizeof(s->where), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	s->key = pool_key(host, port, a);
	if (s->key == NULL) {
		op_free(s);
		return NULL;
	}
	return s;
}

/* Closes s: politely (SFTP channel closed, disconnect sent, a second at
 * most) when it is healthy, else at once. Frees everything it holds. */
static void conn_close(struct op_sftp_conn *s)
{
	if (s == NULL)
		return;
	s->arena.wipe = true;
	if (s->ss) {
		if (!s->broken && s->fd >= 0 && s->sftp) {
			struct op_sftp_fail f;
			op_err rc = OP_OK;
			s->call = &close_call;
			long long until = op_sftp__until(s);
			int r;
			do
				r = libssh2_sftp_shutdown(s->sftp);
			while (op_sftp__again(s, r, until, &rc, "close", &f));
			s->sftp = NULL;
			if (rc == OP_OK && r == 0) {
				do
					r = libssh2_session_disconnect_ex(
					    s->ss, SSH_DISCONNECT_BY_APPLICATION, "bye", "");
				while (op_sftp__again(s, r, until, &rc, "disconnect", &f));
			}
		}
		/* Whatever libssh2 still wants to send now fails at once. */
		if (s->fd >= 0)
			shutdown(s->fd, SHUT_RDWR);
		for (int i = 0; i < 10 && libssh2_session_free(s->ss) == LIBSSH2_ERROR_EAGAIN; i++)
			;
		OP_LOGD("%s: closed; libssh2 held %zu bytes at most, %zu left behind", s->where,
		        s->arena.peak, s->arena.bytes);
		arena_sweep(&s->arena);
	}
	if (s->fd >= 0)
		close(s->fd);
	op_free(s->key);
	op_free(s);
}

static op_err login(struct op_sftp_conn *s, const struct op_account *a, struct op_sftp_fail *f)
{
	const char *user = a->username;
	if (user == NULL || user[0] == '\0')
		return op_sftp__fail(f, OP_ECONFIG, "ACCOUNT", "account %s has no username",
		                     a->name);
	if (a->type != OP_ACCOUNT_KEY && a->type != OP_ACCOUNT_BASIC)
		return op_sftp__fail(f, OP_ECONFIG, "ACCOUNT",
		                     "account %s is of type %s; sftp takes basic (password) or "
		                     "key (SSH private key)",
		                     a->name, op_account_type_name(a->type));
	bool key = a->type == OP_ACCOUNT_KEY;
	const char *secret = key ? a->private_key : a->password;
	if (secret == NULL)
		return op_sftp__fail(f, OP_ECONFIG, "ACCOUNT", "account %s has no %s", a->name,
		                     key ? "privateKey" : "password");
	op_err rc = OP_OK;
	long long until = op_sftp__until(s);
	int r;
	do
		r = key ? libssh2_userauth_publickey_frommemory(s->ss, user, strlen(user), NULL, 0,
		                                                secret, strlen(secret),
		                                                a->passphrase)
		        : libssh2_userauth_password_ex(s->ss, user, (unsigned)strlen(user), secret,
		                                       (unsigned)strlen(secret), NULL);
	while (op_sftp__again(s, r, until, &rc, "login", f));
	if (rc)
		return rc;
	if (r == 0)
		return OP_OK;
	if (s->stop)
		return op_sftp__fail_ssh(s, r, "login", f);
	s->broken = true;
	const char *how = key ? "public key" : "password";
	switch (r) {
	case LIBSSH2_ERROR_AUTHENTICATION_FAILED:
	case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
		return op_sftp__fail(f, OP_EAUTH, "SFTP_AUTH",
		                     "%s: login as %.64s with the %s of account %s refused",
		                     s->where, user, how, a->name);
	case LIBSSH2_ERROR_PASSWORD_EXPIRED:
		return op_sftp__fail(f, OP_EAUTH, "SFTP_AUTH",
		                     "%s: the password of %.64s (account %s) has expired", s->where,
		                     user, a->name);
	case LIBSSH2_ERROR_FILE:
	case LIBSSH2_ERROR_KEYFILE_AUTH_FAILED:
		return op_sftp__fail(f, OP_EAUTH, "SFTP_AUTH",
		                     "%s: the private key of account %s cannot be used: a wrong or "
		                     "missing passphrase, or a key format libssh2 cannot read",
		                     s->where, a->name);
	default: {
		char *m = NULL;
		libssh2_session_last_error(s->ss, &m, NULL, 0);
		op_err cls = op_sftp__err(r, 0);
		return op_sftp__fail(f, cls,
		                     cls == OP_ETIMEOUT ? "SFTP_TIMEOUT"
		                     : cls == OP_EAUTH  ? "SFTP_AUTH"
		                                        : "SFTP_CONNECT",
		                     "%s: login as %.64s: %s", s->where, user,
		                     m && m[0] ? m : "failed");
	}
	}
}

static bool host_ok(const char *host)
{
	size_t n = strlen(host);
	if (n == 0 || n > HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)host[i];
		if (ch <= ' ' || ch == 0x7f || ch == '/' || ch == '[' || ch == ']' || ch == '@')
			return false;
	}
	return true;
}

op_err op_sftp_connect(struct op_sftp *c, const char *host, int port, const struct op_account *a,
                       const struct op_sftp_call *call, struct op_sftp_conn **out,
                       struct op_sftp_fail *f)
{
	*out = NULL;
	struct op_sftp__hostkeys hk = {0};
	struct op_sftp_conn *s = NULL;
	op_err rc = OP_OK;
	if (!host_ok(host) || port < 1 || port > 65535) {
		rc = op_sftp__fail(f, OP_EINVAL, "SFTP_REQUEST",
		                   "\"%.80s\" port %d: not a host name or address and a port", host,
		                   port);
		goto out;
	}
	s = conn_new(host, port, a);
	if (s == NULL) {
		rc = op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	s->call = call;
	rc = tcp_connect(s, host, port, f);
	if (rc)
		goto out;
	/* Secrets pass through libssh2's buffers from here to the login. */
	s->arena.wipe = true;
	s->ss = libssh2_session_init_ex(arena_alloc, arena_free, arena_realloc, s);
	if (s->ss == NULL) {
		rc = op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	libssh2_session_set_blocking(s->ss, 0);
	libssh2_session_callback_set(s->ss, LIBSSH2_CALLBACK_RECV, (void *)guarded_recv);
	/* OpenSSH's order of the ciphers libssh2 1.10 has (it picks aes256-ctr
	 * first; aes128-ctr costs less on both sides), CBC only for old servers,
	 * no arcfour, blowfish, cast or 3des. */
	if (libssh2_session_method_pref(s->ss, LIBSSH2_METHOD_CRYPT_CS, CIPHERS) != 0 ||
	    libssh2_session_method_pref(s->ss, LIBSSH2_METHOD_CRYPT_SC, CIPHERS) != 0) {
		rc = op_sftp__fail(f, OP_EINTERNAL, "SFTP_CONNECT",
		                   "%s: libssh2 refused the cipher preference", s->where);
		goto out;
	}
	rc = op_sftp__hostkey_prepare(c, s, host, port, &hk, f);
	if (rc)
		goto out;
	long long until = op_sftp__until(s);
	int r;
	do
		r = libssh2_session_handshake(s->ss, s->fd);
	while (op_sftp__again(s, r, until, &rc, "SSH handshake", f));
	if (rc)
		goto out;
	if (r && s->stop) {
		rc = op_sftp__fail_ssh(s, r, "SSH handshake", f);
		goto out;
	}
	if (r) {
		char *m = NULL;
		libssh2_session_last_error(s->ss, &m, NULL, 0);
		s->broken = true;
		rc = op_sftp__err(r, 0);
		rc = op_sftp__fail(f, rc, rc == OP_ETIMEOUT ? "SFTP_TIMEOUT" : "SFTP_CONNECT",
		                   "%s: SSH handshake failed: %s%s", s->where,
		                   m && m[0] ? m : "no reason given",
		                   rc == OP_EPARSE ? " (is this an SSH server?)" : "");
		goto out;
	}
	rc = op_sftp__hostkey_check(c, s, host, port, &hk, f);
	if (rc) {
		s->broken = true;
		goto out;
	}
	rc = login(s, a, f);
	if (rc)
		goto out;
	until = op_sftp__until(s);
	do {
		s->sftp = libssh2_sftp_init(s->ss);
		r = op_sftp__ptr_rc(s, s->sftp);
	} while (op_sftp__again(s, r, until, &rc, "starting SFTP", f));
	if (rc)
		goto out;
	if (r == LIBSSH2_ERROR_SFTP_PROTOCOL && !s->stop) {
		s->broken = true;
		rc = op_sftp__fail(f, OP_EPARSE, "SFTP_CONNECT",
		                   "%s: starting SFTP: the server's answer is not SFTP version 3",
		                   s->where);
		goto out;
	}
	if (r) {
		rc = op_sftp__fail_ssh(s, r, "starting SFTP", f);
		if (f->code && strcmp(f->code, "SFTP_ERROR") == 0)
			f->code = "SFTP_CONNECT";
		goto out;
	}
	OP_LOGD("%s: connected as %.64s (%s, %s)", s->where, a->username,
	        libssh2_session_methods(s->ss, LIBSSH2_METHOD_CRYPT_CS),
	        libssh2_session_methods(s->ss, LIBSSH2_METHOD_MAC_CS));
	s->arena.wipe = false;
	*out = s;
	s = NULL;
out:
	op_sftp__hostkeys_fini(&hk);
	if (s) {
		s->broken = true;
		conn_close(s);
	}
	return rc;
}

/* ---- the pool ---- */

op_err op_sftp_new(const struct op_sftp_opts *o, struct op_sftp **out)
{
	*out = NULL;
	pthread_once(&init_once, init_libssh2);
	if (init_rc != 0)
		return OP_EINTERNAL;
	struct op_sftp *c = op_calloc(1, sizeof(*c));
	if (c == NULL)
		return OP_ENOMEM;
	if (o->known_hosts && (c->known_hosts = op_strdup(o->known_hosts)) == NULL) {
		op_free(c);
		return OP_ENOMEM;
	}
	if (o->fingerprint) {
		c->has_fp = true;
		memcpy(c->fp, o->fingerprint, OP_SFTP_FP_LEN);
	}
	if (pthread_mutex_init(&c->mu, NULL) != 0) {
		op_free(c->known_hosts);
		op_free(c);
		return OP_ENOMEM;
	}
	*out = c;
	return OP_OK;
}

void op_sftp_free(struct op_sftp *c)
{
	if (c == NULL)
		return;
	while (c->idle) {
		struct op_sftp_conn *s = c->idle;
		c->idle = s->next;
		conn_close(s);
	}
	pthread_mutex_destroy(&c->mu);
	op_free(c->known_hosts);
	op_free(c);
}

/* The server closed it, or sent something unasked (a disconnect). Data
 * waiting alone (a late window adjustment) is fine. */
static bool alive(const struct op_sftp_conn *s)
{
	struct pollfd p = {.fd = s->fd, .events = POLLIN | POLLRDHUP};
	return poll(&p, 1, 0) == 0 || !(p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

struct op_sftp_conn *op_sftp_take(struct op_sftp *c, const char *host, int port,
                                  const struct op_account *a, const struct op_sftp_call *call)
{
	char *key = pool_key(host, port, a);
	if (key == NULL)
		return NULL;
	struct op_sftp_conn *hit = NULL, *dead = NULL;
	long long now = op_mono_ms();
	pthread_mutex_lock(&c->mu);
	for (struct op_sftp_conn **pp = &c->idle; *pp;) {
		struct op_sftp_conn *s = *pp;
		bool old = now - s->idle_since_ms > OP_SFTP_IDLE_MAX_MS;
		bool match = !old && hit == NULL && strcmp(s->key, key) == 0;
		if (!old && !match) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		c->n_idle--;
		if (match && alive(s)) {
			hit = s;
		} else {
			s->broken = !old;
			s->next = dead;
			dead = s;
		}
	}
	pthread_mutex_unlock(&c->mu);
	while (dead) {
		struct op_sftp_conn *s = dead;
		dead = s->next;
		conn_close(s);
	}
	op_free(key);
	if (hit) {
		hit->next = NULL;
		hit->call = call;
		hit->reused = true;
		hit->progressed = false;
	}
	return hit;
}

void op_sftp_give(struct op_sftp *c, struct op_sftp_conn *s)
{
	if (s == NULL)
		return;
	if (s->broken) {
		conn_close(s);
		return;
	}
	s->call = NULL;
	s->reused = false;
	s->idle_since_ms = op_mono_ms();
	arena_trim(&s->arena);
	struct op_sftp_conn *evict = NULL;
	pthread_mutex_lock(&c->mu);
	s->next = c->idle;
	c->idle = s;
	if (++c->n_idle > OP_SFTP_POOL_MAX) {
		struct op_sftp_conn **pp = &c->idle;
		while ((*pp)->next)
			pp = &(*pp)->next;
		evict = *pp;
		*pp = NULL;
		c->n_idle--;
	}
	pthread_mutex_unlock(&c->mu);
	conn_close(evict);
}

bool op_sftp_stale(const struct op_sftp_conn *s, op_err rc)
{
	return s && s->reused && !s->progressed && (rc == OP_EIO || rc == OP_ENOCONN);
}
