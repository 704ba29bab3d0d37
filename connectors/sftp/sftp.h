/*
 * The SFTP client of the sftp step: SSH sessions to SFTP servers through
 * libssh2, the only place libssh2 handles live (nothing of libssh2 leaves
 * connectors/sftp/).
 *
 * A client (one per step) holds the host key policy and a pool of idle,
 * authenticated sessions. Opening a session is a TCP connect bounded by the
 * connect timeout, the SSH handshake, the host key check and a password or
 * public key login. The host key is always checked, against a SHA-256
 * fingerprint, an OpenSSH known_hosts file, or both; a key that does not
 * match is refused before any credential is sent.
 *
 * Every call makes one attempt and is bounded: each exchange with the
 * server by the call's timeout, all of them by its deadline, and waits are
 * cut short when the call is cancelled (polled every 100 ms). A session whose
 * exchange timed out, was cancelled or broke is closed, never pooled again.
 * Transfers stream through fixed buffers: memory does not grow with the
 * size of a file. A session is used by one thread at a time; a client is
 * thread-safe.
 */
#ifndef OP_CONNECTORS_SFTP_SFTP_H
#define OP_CONNECTORS_SFTP_SFTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/clock.h"
#include "agent/core/err.h"

struct op_account;
struct op_sftp;
struct op_sftp_conn;

#define OP_SFTP_FP_LEN  32 /* a SHA-256 host key fingerprint, in bytes */
#define OP_SFTP_FP_TEXT 52 /* "SHA256:" + 43 characters of base64 + NUL */
/* Idle sessions kept per client, and how long one may stay idle. */
#define OP_SFTP_POOL_MAX    4
#define OP_SFTP_IDLE_MAX_MS 60000

struct op_sftp_opts {
	/* SHA-256 of the server's host key (op_sftp_fingerprint_parse), or NULL. */
	const unsigned char *fingerprint;
	/* Path of an OpenSSH known_hosts file (read at each connect), or NULL.
	 * At least one of the two; with both, the key must pass both. */
	const char *known_hosts;
};

/* The bounds of one use of a session; borrowed for the use. */
struct op_sftp_call {
	long long timeout_ms;         /* each exchange with the server */
	long long connect_timeout_ms; /* the TCP connect (name lookup included) */
	long long deadline_ms;        /* op_mono_ms() time; LLONG_MAX: none */
	/* Polled while waiting; true stops the call (OP_ECANCELED). May be NULL. */
	bool (*cancelled)(void *ud);
	void *cancel_ud;
};

/* What went wrong, for users: a code and a message that names the host,
 * port and path, never a secret. */
struct op_sftp_fail {
	const char *code; /* static: "SFTP_NOT_FOUND", ... (README.md, Errors) */
	char msg[1024];
};

/* A client with an empty pool. OP_ENOMEM; OP_EINTERNAL when libssh2 cannot
 * be initialised. o is copied. */
op_err op_sftp_new(const struct op_sftp_opts *o, struct op_sftp **out) OP_WUR;
/* Closes the pooled sessions (politely, at most a second each). NULL is a no-op. */
void op_sftp_free(struct op_sftp *c);

/*
 * A pooled session to host:port logged in as account a (same name, user and
 * version: a changed account gets a new session), whose connection is still
 * open, or NULL. Sessions idle for longer than OP_SFTP_IDLE_MAX_MS are
 * closed on the way. call bounds the session's use until op_sftp_give.
 */
struct op_sftp_conn *op_sftp_take(struct op_sftp *c, const char *host, int port,
                                  const struct op_account *a, const struct op_sftp_call *call);

/*
 * Opens a session to host:port (a name or an address literal; port 1-65535)
 * and logs in with account a: basic (password) or key (private key in PEM or
 * OpenSSH format, with its passphrase if encrypted). a is read during the
 * call only: the caller may wipe it right after. On error *out is NULL:
 *   OP_ENOCONN    the name does not resolve, the connection is refused or
 *                 the host unreachable: retry later
 *   OP_ETIMEOUT   no connection within connect_timeout_ms, or no answer to
 *                 the handshake or login within timeout_ms
 *   OP_EIO        the connection broke during the handshake
 *   OP_EPARSE     the peer does not speak SSH (a banner or packets that are
 *                 not SSH), or no algorithms in common
 *   OP_EAUTH      the host key did not verify (code SFTP_HOST_KEY), the
 *                 login was refused, or the private key cannot be read or
 *                 decrypted (code SFTP_AUTH)
 *   OP_ECONFIG    the known_hosts file cannot be read (SFTP_HOST_KEY); the
 *                 account is neither basic nor key (ACCOUNT)
 *   OP_EREJECTED  the server refused the SFTP subsystem
 *   OP_EINVAL     host or port are not acceptable
 *   OP_ECANCELED, OP_ENOMEM
 */
op_err op_sftp_connect(struct op_sftp *c, const char *host, int port, const struct op_account *a,
                       const struct op_sftp_call *call, struct op_sftp_conn **out,
                       struct op_sftp_fail *f) OP_WUR;

/* Returns s to c's pool, or closes it when it broke, was given up on or the
 * pool is full. NULL is a no-op. */
void op_sftp_give(struct op_sftp *c, struct op_sftp_conn *s);

/*
 * True when s came from the pool, no request on it had succeeded yet and rc
 * says the connection failed (OP_EIO, OP_ENOCONN): the server closed an idle
 * session. The caller then gives s back (it is closed) and may open a fresh
 * session for one more attempt, which has nothing to undo.
 */
bool op_sftp_stale(const struct op_sftp_conn *s, op_err rc);

/* ---- operations ----
 * Paths are the server's: relative ones start at the session's directory
 * (usually the user's home). On error f says why; classes of the server's
 * answers: OP_ENOTFOUND (no such file or directory, code SFTP_NOT_FOUND),
 * OP_EAUTH (permission denied), OP_EREJECTED (the server refused: exists,
 * not empty, not a directory, failure), OP_EFULL (no space, quota),
 * OP_EUNSUPPORTED; and for the connection OP_ETIMEOUT (code SFTP_TIMEOUT),
 * OP_EIO (broken), OP_EPARSE (not SFTP), OP_ECANCELED, OP_ENOMEM. */

enum op_sftp_type { OP_SFTP_FILE, OP_SFTP_DIR, OP_SFTP_LINK, OP_SFTP_OTHER };

struct op_sftp_entry {
	char *name; /* op_sftp_list: the entry's name; op_sftp_stat: NULL */
	enum op_sftp_type type;
	bool has_size, has_mtime, has_mode;
	uint64_t size;
	int64_t mtime; /* Unix seconds */
	unsigned mode; /* permission bits (07777) */
};

/* The attributes of path, symbolic links followed. */
op_err op_sftp_stat(struct op_sftp_conn *s, const char *path, struct op_sftp_entry *out,
                    struct op_sftp_fail *f) OP_WUR;

/*
 * The entries of directory dir but "." and "..", sorted by name; with
 * pattern (may be NULL) only the names it matches (fnmatch(3) with
 * FNM_PERIOD: '*' matches no leading dot). Links are not followed. More
 * than max matching entries is OP_ELIMIT (code SFTP_TOO_MANY). *out
 * (op_sftp_entries_free) and *n are NULL and 0 on error.
 */
op_err op_sftp_list(struct op_sftp_conn *s, const char *dir, const char *pattern, size_t max,
                    struct op_sftp_entry **out, size_t *n, struct op_sftp_fail *f) OP_WUR;
void op_sftp_entries_free(struct op_sftp_entry *v, size_t n);

/* Takes n bytes at p (borrowed for the call). A class other than OP_OK stops
 * the transfer with that class and code SFTP_LOCAL, why saying what. */
typedef op_err (*op_sftp_sink_fn)(void *ud, const void *p, size_t n, char *why, size_t whylen);
/* Fills up to cap bytes at buf, *got 0 at the end; errors as the sink. */
typedef op_err (*op_sftp_source_fn)(void *ud, void *buf, size_t cap, size_t *got, char *why,
                                    size_t whylen);

/*
 * Streams the content of the file path to sink, in order, in chunks of at
 * most OP_SFTP_CHUNK bytes; *size is the number of bytes. A file larger than
 * max bytes (by its size, or by what arrives) is OP_ELIMIT, code
 * SFTP_TOO_LARGE; a directory is OP_EREJECTED. On error the sink may have
 * taken part of the file.
 */
op_err op_sftp_get(struct op_sftp_conn *s, const char *path, uint64_t max, op_sftp_sink_fn sink,
                   void *ud, uint64_t *size, struct op_sftp_fail *f) OP_WUR;

/*
 * Part of a get split over sessions: streams the bytes [off, off + len) of
 * the file path to sink, as op_sftp_get does; len UINT64_MAX reads from off
 * to the end, and *size says how many came. A file that ends before
 * off + len (it changed since its size was read) is OP_EREJECTED, code
 * SFTP_CHANGED. No maxBytes: parts go to a file.
 */
op_err op_sftp_get_part(struct op_sftp_conn *s, const char *path, uint64_t off, uint64_t len,
                        op_sftp_sink_fn sink, void *ud, uint64_t *size,
                        struct op_sftp_fail *f) OP_WUR;

/*
 * Writes what source gives to the file path, atomically as far as the
 * server allows: into a new hidden file in the same directory
 * (".NAME.outpost-<16 hex>.tmp"), flushed to disk when the server supports
 * fsync@openssh.com, then renamed to path. Where the server's rename does
 * not replace an existing file (OpenSSH), an existing path is removed just
 * before the rename: for that moment path does not exist, but no reader ever
 * sees part of a file. With overwrite false an existing path is OP_EREJECTED
 * (code SFTP_EXISTS), checked before anything is written. The temp file is
 * removed on failure, unless the session broke (it is then left behind).
 * *size is the number of bytes written.
 */
op_err op_sftp_put(struct op_sftp_conn *s, const char *path, bool overwrite,
                   op_sftp_source_fn source, void *ud, uint64_t *size,
                   struct op_sftp_fail *f) OP_WUR;

/* Renames from to to; an existing file at to is replaced when overwrite (as
 * for op_sftp_put), else OP_EREJECTED (SFTP_EXISTS). */
op_err op_sftp_move(struct op_sftp_conn *s, const char *from, const char *to, bool overwrite,
                    struct op_sftp_fail *f) OP_WUR;

/* Removes the file or empty directory path (a link itself, not its target).
 * A missing path is OP_ENOTFOUND, or OP_OK with *deleted false when
 * missing_ok. */
op_err op_sftp_delete(struct op_sftp_conn *s, const char *path, bool missing_ok, bool *deleted,
                      struct op_sftp_fail *f) OP_WUR;

/* Creates directory path (mode 0755 less the server's umask), with parents
 * its missing parents too. *created is false when it already was a
 * directory; something else there is OP_EREJECTED (SFTP_EXISTS). */
op_err op_sftp_mkdir(struct op_sftp_conn *s, const char *path, bool parents, bool *created,
                     struct op_sftp_fail *f) OP_WUR;

/* ---- helpers (pure) ---- */

/* Bytes handed to a sink at most at once. */
#define OP_SFTP_CHUNK (256u << 10)

/* Parses "SHA256:<base64>" as ssh-keygen -lf prints it (43 characters;
 * '=' padding accepted) into out. OP_EINVAL for anything else. */
op_err op_sftp_fingerprint_parse(const char *s, unsigned char out[OP_SFTP_FP_LEN]) OP_WUR;
/* The "SHA256:..." text of fp, as ssh-keygen prints it. */
void op_sftp_fingerprint_text(const unsigned char fp[OP_SFTP_FP_LEN], char out[OP_SFTP_FP_TEXT]);
/* Compares two fingerprints in constant time. */
bool op_sftp_fingerprint_equal(const unsigned char a[OP_SFTP_FP_LEN],
                               const unsigned char b[OP_SFTP_FP_LEN]);

/*
 * The temp path op_sftp_put writes path through: ".NAME.outpost-TAG.tmp" in
 * path's directory (NAME cut to keep the name within 255 bytes). OP_EINVAL
 * when path has no file name (empty, ends in '/', "." or ".."), OP_ELIMIT
 * when out (outlen bytes) is too small.
 */
op_err op_sftp_temp_path(const char *path, const char *tag, char *out, size_t outlen) OP_WUR;
/* dir and name joined with one '/' (none after an empty dir), into a new
 * string (op_free); NULL on ENOMEM. */
char *op_sftp_path_join(const char *dir, const char *name);

/* "0644": the permission bits of mode as 4 octal digits. */
void op_sftp_mode_text(unsigned mode, char out[8]);
/* "2024-05-01T12:00:00Z": t (Unix seconds) in ISO 8601, UTC. */
void op_sftp_time_text(int64_t t, char out[32]);
/* "file", "dir", "link", "other". */
const char *op_sftp_type_name(enum op_sftp_type t);

#endif
