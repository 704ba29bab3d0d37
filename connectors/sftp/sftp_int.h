/*
 * Private to connectors/sftp: the client and session structs with their
 * libssh2 handles, and what session.c, hostkey.c and ops.c share.
 *
 * Sessions run libssh2 in non-blocking mode. Every libssh2 call sits in a
 * loop that waits for the socket (op_sftp__again) while libssh2 answers
 * EAGAIN, so each exchange is bounded by the call's timeout and deadline and
 * a cancelled execution stops within about 100 ms.
 */
#ifndef OP_CONNECTORS_SFTP_SFTP_INT_H
#define OP_CONNECTORS_SFTP_SFTP_INT_H

#include <libssh2.h>
#include <libssh2_sftp.h>
#include <pthread.h>

#include "connectors/sftp/sftp.h"

struct op_sftp {
	pthread_mutex_t mu;
	bool has_fp;
	unsigned char fp[OP_SFTP_FP_LEN];
	char *known_hosts;
	struct op_sftp_conn *idle; /* most recently used first */
	size_t n_idle;
};

/* Every allocation libssh2 makes for one session, so that what libssh2
 * 1.10 leaves behind when a session is given up on (handles still open,
 * their queued packets) is freed with the session. */
struct op_sftp__arena {
	struct op_sftp__block *head;  /* lent to libssh2 */
	struct op_sftp__block *spare; /* freed, kept for reuse while in use */
	size_t n_spare;
	size_t bytes, peak; /* lent */
	bool wipe;          /* blocks made or freed now are wiped when freed (connect, close) */
};

struct op_sftp_conn {
	struct op_sftp_conn *next; /* in the pool */
	struct op_sftp__arena arena;
	LIBSSH2_SESSION *ss;
	LIBSSH2_SFTP *sftp;
	int fd;
	char where[300]; /* "host:port", "[::1]:22": for messages */
	char *key;       /* pool key: host, port, account name, type, user, version */
	long long idle_since_ms;
	const struct op_sftp_call *call; /* bounds of the current use */
	long long until;                 /* end of the current exchange (op_sftp__until) */
	long long wait_ms;               /* its length, for messages */
	op_err stop;     /* OP_ETIMEOUT, OP_ECANCELED, OP_EIO: the receive guard stopped libssh2 */
	bool reused;     /* taken from the pool */
	bool progressed; /* a request succeeded during this use */
	bool broken;     /* timed out, cancelled or failed: never pooled */
};

/*
 * The class of a libssh2 error: rc is a LIBSSH2_ERROR_* code, status the
 * SFTP status (LIBSSH2_FX_*) when rc is LIBSSH2_ERROR_SFTP_PROTOCOL. The one
 * place libssh2's codes become classes (see README.md, Errors).
 */
op_err op_sftp__err(int rc, unsigned long status);

/* Formats f and returns cls. */
op_err op_sftp__fail(struct op_sftp_fail *f, op_err cls, const char *code, const char *fmt, ...)
    OP_PRINTF(4, 5);

/*
 * Describes libssh2 error rc of s during what ("read /a/b.csv") in f and
 * returns its class; the code is SFTP_NOT_FOUND, SFTP_TIMEOUT or SFTP_ERROR
 * (CANCELLED when the receive guard stopped the call). An error of the
 * session rather than an SFTP status marks s broken.
 */
op_err op_sftp__fail_ssh(struct op_sftp_conn *s, int rc, const char *what, struct op_sftp_fail *f);

/* The end of one exchange on s: now + the call's timeout, or its deadline
 * when sooner; kept in s->until for the receive guard (session.c). */
long long op_sftp__until(struct op_sftp_conn *s);

/*
 * For `do r = libssh2_...(...); while (op_sftp__again(s, r, until, &rc, f, what));`:
 * false unless r is LIBSSH2_ERROR_EAGAIN; then waits until the socket is
 * ready as libssh2 needs and returns true. When until passes or the call is
 * cancelled it returns false with *rc OP_ETIMEOUT or OP_ECANCELED, f set and
 * s broken.
 */
bool op_sftp__again(struct op_sftp_conn *s, long long r, long long until, op_err *rc,
                    const char *what, struct op_sftp_fail *f);

/* For calls returning a pointer: 0 when p is set, else the session's error. */
int op_sftp__ptr_rc(struct op_sftp_conn *s, const void *p);

/* Host keys (hostkey.c). What a connect learns from the policy before the
 * handshake and checks after it. */
struct op_sftp__hostkeys {
	LIBSSH2_KNOWNHOSTS *kh; /* known_hosts entries, NULL without a file */
};

/* Reads the known_hosts file (OP_ECONFIG if it cannot) and sets s's host key
 * algorithm preference: the types known_hosts holds for host:port, else
 * ssh-ed25519 first. */
op_err op_sftp__hostkey_prepare(const struct op_sftp *c, struct op_sftp_conn *s, const char *host,
                                int port, struct op_sftp__hostkeys *hk,
                                struct op_sftp_fail *f) OP_WUR;
/* After the handshake: the server's key against the fingerprint and the
 * known_hosts entries. OP_EAUTH (code SFTP_HOST_KEY) naming the key type
 * and both fingerprints when it does not match. */
op_err op_sftp__hostkey_check(const struct op_sftp *c, struct op_sftp_conn *s, const char *host,
                              int port, const struct op_sftp__hostkeys *hk,
                              struct op_sftp_fail *f) OP_WUR;
void op_sftp__hostkeys_fini(struct op_sftp__hostkeys *hk);

#endif
