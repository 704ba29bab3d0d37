/*
 * The SFTP operations of the sftp step (see sftp.h): stat, list, get, put,
 * move, delete, mkdir on an open session, and the pure helpers for paths,
 * modes and times.
 *
 * Invariant: memory does not grow with the size of a file. get (and each
 * part of a split get) reads into one OP_SFTP_CHUNK buffer (libssh2 keeps four times that in read
 * requests ahead); put keeps at most PUT_WINDOW bytes unacknowledged, in a PUT_BUF buffer that is
 * filled from the source as the server acknowledges writes, so the server always has writes queued
 * and no byte moves in the buffer. A handle opened is closed on every path while the session is
 * healthy; when it broke, closing the session frees the handle.
 */
#define OP_LOG_MODULE "sftp"
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/clock.h"
#include "agent/core/uuid.h"
#include "connectors/sftp/sftp_int.h"

#define PUT_BUF    (2u << 20) /* the put buffer */
#define PUT_WINDOW (1u << 20) /* bytes written and not yet acknowledged, at most */
#define PUT_REFILL (128u << 10)
#define NAME_MAX_  4096 /* longest entry name accepted from the server */
#define WHAT_MAX   400
#define ENTRY_MAX  8192 /* a canonical directory and a name */
#define PATH_SHOWN "%.300s"

/* ---- helpers ---- */

const char *op_sftp_type_name(enum op_sftp_type t)
{
	switch (t) {
	case OP_SFTP_FILE:
		return "file";
	case OP_SFTP_DIR:
		return "dir";
	case OP_SFTP_LINK:
		return "link";
	default:
		return "other";
	}
}

void op_sftp_mode_text(unsigned mode, char out[8])
{
	snprintf(out, 8, "%04o", mode & 07777u);
}

void op_sftp_time_text(int64_t t, char out[32])
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 32, "1970-01-01T00:00:00Z");
}

char *op_sftp_path_join(const char *dir, const char *name)
{
	size_t dl = strlen(dir), n = dl + strlen(name) + 2;
	char *p = op_malloc(n);
	if (p)
		snprintf(p, n, "%s%s%s", dir, dl > 0 && dir[dl - 1] != '/' ? "/" : "", name);
	return p;
}

op_err op_sftp_temp_path(const char *path, const char *tag, char *out, size_t outlen)
{
	size_t len = strlen(path);
	if (len == 0 || path[len - 1] == '/')
		return OP_EINVAL;
	const char *slash = strrchr(path, '/');
	const char *name = slash ? slash + 1 : path;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return OP_EINVAL;
	size_t dirlen = (size_t)(name - path), nlen = strlen(name);
	size_t extra = strlen(".") + strlen(".outpost-") + strlen(tag) + strlen(".tmp");
	if (extra >= 255)
		return OP_EINVAL;
	if (nlen + extra > 255) {
		nlen = 255 - extra;
		/* Cut at a character, not inside one. */
		while (nlen > 0 && ((unsigned char)name[nlen] & 0xC0) == 0x80)
			nlen--;
	}
	int n = snprintf(out, outlen, "%.*s.%.*s.outpost-%s.tmp", (int)dirlen, path, (int)nlen,
	                 name, tag);
	return n >= 0 && (size_t)n < outlen ? OP_OK : OP_ELIMIT;
}

static void entry_from(const LIBSSH2_SFTP_ATTRIBUTES *a, struct op_sftp_entry *e)
{
	e->type = OP_SFTP_OTHER;
	if (a->flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) {
		e->has_mode = true;
		e->mode = (unsigned)(a->permissions & 07777u);
		switch (a->permissions & LIBSSH2_SFTP_S_IFMT) {
		case LIBSSH2_SFTP_S_IFREG:
			e->type = OP_SFTP_FILE;
			break;
		case LIBSSH2_SFTP_S_IFDIR:
			e->type = OP_SFTP_DIR;
			break;
		case LIBSSH2_SFTP_S_IFLNK:
			e->type = OP_SFTP_LINK;
			break;
		default:
			break;
		}
	}
	if (a->flags & LIBSSH2_SFTP_ATTR_SIZE) {
		e->has_size = true;
		e->size = a->filesize;
	}
	if (a->flags & LIBSSH2_SFTP_ATTR_ACMODTIME) {
		e->has_mtime = true;
		e->mtime = (int64_t)a->mtime;
	}
}

static bool is_dir(const LIBSSH2_SFTP_ATTRIBUTES *a)
{
	return (a->flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) &&
	       (a->permissions & LIBSSH2_SFTP_S_IFMT) == LIBSSH2_SFTP_S_IFDIR;
}

/* Between the chunks of a transfer, where data may flow without a wait:
 * OP_ECANCELED, or OP_ETIMEOUT once the call's deadline has passed. */
static op_err still_on(struct op_sftp_conn *s, const char *what, struct op_sftp_fail *f)
{
	const struct op_sftp_call *call = s->call;
	if (call->cancelled && call->cancelled(call->cancel_ud)) {
		s->broken = true;
		return op_sftp__fail(f, OP_ECANCELED, "CANCELLED", "%s: %s: cancelled", s->where,
		                     what);
	}
	if (op_mono_ms() >= call->deadline_ms) {
		s->broken = true;
		return op_sftp__fail(f, OP_ETIMEOUT, "SFTP_TIMEOUT",
		                     "%s: %s: the execution's time ran out", s->where, what);
	}
	return OP_OK;
}

/* ---- requests ---- */

/* stat (how LIBSSH2_SFTP_STAT) or lstat of path into *a; *exists false and
 * OP_OK when there is nothing there (exists NULL: that is OP_ENOTFOUND). */
static op_err stat_path(struct op_sftp_conn *s, const char *path, int how,
                        LIBSSH2_SFTP_ATTRIBUTES *a, bool *exists, struct op_sftp_fail *f)
{
	char what[WHAT_MAX];
	snprintf(what, sizeof(what), "stat " PATH_SHOWN, path);
	memset(a, 0, sizeof(*a));
	op_err rc = OP_OK;
	long long until = op_sftp__until(s);
	int r;
	do
		r = libssh2_sftp_stat_ex(s->sftp, path, (unsigned)strlen(path), how, a);
	while (op_sftp__again(s, r, until, &rc, what, f));
	if (rc)
		return rc;
	if (r == 0) {
		s->progressed = true;
		if (exists)
			*exists = true;
		return OP_OK;
	}
	rc = op_sftp__fail_ssh(s, r, what, f);
	if (rc == OP_ENOTFOUND && exists) {
		s->progressed = true;
		*exists = false;
		return OP_OK;
	}
	return rc;
}

static op_err open_path(struct op_sftp_conn *s, const char *path, unsigned long flags, long mode,
                        int type, const char *what, LIBSSH2_SFTP_HANDLE **out,
                        struct op_sftp_fail *f)
{
	*out = NULL;
	op_err rc = OP_OK;
	long long until = op_sftp__until(s);
	int r;
	do {
		*out =
		    libssh2_sftp_open_ex(s->sftp, path, (unsigned)strlen(path), flags, mode, type);
		r = op_sftp__ptr_rc(s, *out);
	} while (op_sftp__again(s, r, until, &rc, what, f));
	if (rc)
		return rc;
	if (r)
		return op_sftp__fail_ssh(s, r, what, f);
	s->progressed = true;
	return OP_OK;
}

static op_err close_handle(struct op_sftp_conn *s, LIBSSH2_SFTP_HANDLE *h, const char *what,
                           struct op_sftp_fail *f)
{
	op_err rc = OP_OK;
	long long until = op_sftp__until(s);
	int r;
	do
		r = libssh2_sftp_close_handle(h);
	while (op_sftp__again(s, r, until, &rc, what, f));
	if (rc)
		return rc;
	return r ? op_sftp__fail_ssh(s, r, what, f) : OP_OK;
}

/* Closes h on an error path: the error already in f stays. */
static void close_quietly(struct op_sftp_conn *s, LIBSSH2_SFTP_HANDLE *h)
{
	struct op_sftp_fail ignored;
	if (h && !s->broken)
		(void)close_handle(s, h, "close", &ignored);
}

static op_err unlink_path(struct op_sftp_conn *s, const char *path, bool dir, const char *what,
                          struct op_sftp_fail *f)
{
	op_err rc = OP_OK;
	long long until = op_sftp__until(s);
	int r;
	do
		r = dir ? libssh2_sftp_rmdir_ex(s->sftp, path, (unsigned)strlen(path))
		        : libssh2_sftp_unlink_ex(s->sftp, path, (unsigned)strlen(path));
	while (op_sftp__again(s, r, until, &rc, what, f));
	if (rc)
		return rc;
	if (r)
		return op_sftp__fail_ssh(s, r, what, f);
	s->progressed = true;
	return OP_OK;
}

/* ---- stat, list ---- */

op_err op_sftp_stat(struct op_sftp_conn *s, const char *path, struct op_sftp_entry *out,
                    struct op_sftp_fail *f)
{
	memset(out, 0, sizeof(*out));
	LIBSSH2_SFTP_ATTRIBUTES a;
	op_err rc = stat_path(s, path, LIBSSH2_SFTP_STAT, &a, NULL, f);
	if (rc == OP_OK)
		entry_from(&a, out);
	return rc;
}

void op_sftp_entries_free(struct op_sftp_entry *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		op_free(v[i].name);
	op_free(v);
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct op_sftp_entry *)a)->name,
	              ((const struct op_sftp_entry *)b)->name);
}

op_err op_sftp_list(struct op_sftp_conn *s, const char *dir, const char *pattern, size_t max,
                    struct op_sftp_entry **out, size_t *n, struct op_sftp_fail *f)
{
	*out = NULL;
	*n = 0;
	char what[WHAT_MAX];
	snprintf(what, sizeof(what), "list " PATH_SHOWN, dir);
	LIBSSH2_SFTP_HANDLE *h = NULL;
	struct op_sftp_entry *v = NULL;
	size_t cnt = 0, cap = 0;
	char *name = op_malloc(NAME_MAX_ + 1);
	if (name == NULL)
		return op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
	op_err rc = open_path(s, dir, 0, 0, LIBSSH2_SFTP_OPENDIR, what, &h, f);
	while (rc == OP_OK) {
		rc = still_on(s, what, f);
		if (rc)
			break;
		LIBSSH2_SFTP_ATTRIBUTES a;
		memset(&a, 0, sizeof(a));
		long long until = op_sftp__until(s);
		int r;
		do
			r = libssh2_sftp_readdir_ex(h, name, NAME_MAX_ + 1, NULL, 0, &a);
		while (op_sftp__again(s, r, until, &rc, what, f));
		if (rc)
			break;
		if (r == 0)
			break; /* the end */
		if (r < 0) {
			rc = op_sftp__fail_ssh(s, r, what, f);
			break;
		}
		name[r < NAME_MAX_ ? r : NAME_MAX_] = '\0';
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
		    (pattern && fnmatch(pattern, name, FNM_PERIOD) != 0))
			continue;
		if (cnt == max) {
			rc = op_sftp__fail(f, OP_ELIMIT, "SFTP_TOO_MANY",
			                   "%s: %s: more than %zu entries (maxEntries)", s->where,
			                   what, max);
			break;
		}
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 32;
			struct op_sftp_entry *nv = op_realloc(v, nc * sizeof(*v));
			if (nv == NULL) {
				rc = op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
				break;
			}
			v = nv;
			cap = nc;
		}
		memset(&v[cnt], 0, sizeof(v[cnt]));
		v[cnt].name = op_strdup(name);
		if (v[cnt].name == NULL) {
			rc = op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
			break;
		}
		entry_from(&a, &v[cnt]);
		cnt++;
	}
	if (h && rc == OP_OK) {
		rc = close_handle(s, h, what, f);
		h = NULL;
	}
	close_quietly(s, h);
	if (rc == OP_OK) {
		if (cnt > 1)
			qsort(v, cnt, sizeof(*v), entry_cmp);
		*out = v;
		*n = cnt;
		v = NULL;
		cnt = 0;
	}
	op_sftp_entries_free(v, cnt);
	op_free(name);
	return rc;
}

/* ---- get ---- */

/* The bytes [off, off + len) of path (len UINT64_MAX: to the end) to sink;
 * *size is the number of bytes. With part, the file must reach off + len
 * (SFTP_CHANGED otherwise) and max is not checked against its size. */
static op_err get_range(struct op_sftp_conn *s, const char *path, uint64_t off, uint64_t len,
                        bool part, uint64_t max, op_sftp_sink_fn sink, void *ud, uint64_t *size,
                        struct op_sftp_fail *f)
{
	*size = 0;
	char what[WHAT_MAX];
	if (part)
		snprintf(what, sizeof(what), "get " PATH_SHOWN " from byte %llu", path,
		         (unsigned long long)off);
	else
		snprintf(what, sizeof(what), "get " PATH_SHOWN, path);
	LIBSSH2_SFTP_HANDLE *h = NULL;
	char *buf = op_malloc(OP_SFTP_CHUNK);
	uint64_t total = 0;
	bool reading = false;
	if (buf == NULL)
		return op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
	op_err rc = open_path(s, path, LIBSSH2_FXF_READ, 0, LIBSSH2_SFTP_OPENFILE, what, &h, f);
	if (rc)
		goto out;
	LIBSSH2_SFTP_ATTRIBUTES a;
	memset(&a, 0, sizeof(a));
	long long until = op_sftp__until(s);
	int r;
	do
		r = libssh2_sftp_fstat_ex(h, &a, 0);
	while (op_sftp__again(s, r, until, &rc, what, f));
	if (rc == OP_OK && r)
		rc = op_sftp__fail_ssh(s, r, what, f);
	if (rc)
		goto out;
	if (is_dir(&a)) {
		rc = op_sftp__fail(f, OP_EREJECTED, "SFTP_ERROR", "%s: %s: is a directory",
		                   s->where, what);
		goto out;
	}
	if (!part && (a.flags & LIBSSH2_SFTP_ATTR_SIZE) && a.filesize > max) {
		rc = op_sftp__fail(f, OP_ELIMIT, "SFTP_TOO_LARGE",
		                   "%s: %s: %llu bytes, more than maxBytes (%llu)", s->where, what,
		                   (unsigned long long)a.filesize, (unsigned long long)max);
		goto out;
	}
	if (off)
		libssh2_sftp_seek64(h, off);
	/* Read requests go out ahead of what is read: a get given up half way
	 * leaves answers on their way, so the session is not used again. A
	 * part asks for no more than it needs; libssh2 drops what its read
	 * ahead brings past that when the handle closes. */
	reading = true;
	while (total < len) {
		rc = still_on(s, what, f);
		if (rc)
			goto out;
		size_t want = len - total < OP_SFTP_CHUNK ? (size_t)(len - total) : OP_SFTP_CHUNK;
		ssize_t got;
		until = op_sftp__until(s);
		do
			got = libssh2_sftp_read(h, buf, want);
		while (op_sftp__again(s, got, until, &rc, what, f));
		if (rc)
			goto out;
		if (got == 0)
			break;
		if (got < 0) {
			rc = op_sftp__fail_ssh(s, (int)got, what, f);
			goto out;
		}
		total += (uint64_t)got;
		if (total > max) {
			rc = op_sftp__fail(f, OP_ELIMIT, "SFTP_TOO_LARGE",
			                   "%s: %s: more than maxBytes (%llu)", s->where, what,
			                   (unsigned long long)max);
			goto out;
		}
		char why[512] = "";
		rc = sink(ud, buf, (size_t)got, why, sizeof(why));
		if (rc) {
			rc = op_sftp__fail(f, rc, rc == OP_ENOMEM ? "NOMEM" : "SFTP_LOCAL", "%s",
			                   why);
			goto out;
		}
	}
	if (part && len != UINT64_MAX && total < len) {
		rc = op_sftp__fail(f, OP_EREJECTED, "SFTP_CHANGED",
		                   "%s: %s: the file ends after %llu of %llu bytes: it changed "
		                   "during the get",
		                   s->where, what, (unsigned long long)total,
		                   (unsigned long long)len);
		goto out;
	}
	rc = close_handle(s, h, what, f);
	h = NULL;
	if (rc == OP_OK)
		*size = total;
out:
	if (rc && reading)
		s->broken = true;
	close_quietly(s, h);
	op_free(buf);
	return rc;
}

op_err op_sftp_get(struct op_sftp_conn *s, const char *path, uint64_t max, op_sftp_sink_fn sink,
                   void *ud, uint64_t *size, struct op_sftp_fail *f)
{
	return get_range(s, path, 0, UINT64_MAX, false, max, sink, ud, size, f);
}

op_err op_sftp_get_part(struct op_sftp_conn *s, const char *path, uint64_t off, uint64_t len,
                        op_sftp_sink_fn sink, void *ud, uint64_t *size, struct op_sftp_fail *f)
{
	return get_range(s, path, off, len, true, UINT64_MAX, sink, ud, size, f);
}

/* ---- put, move ---- */

/* The server's canonical form of path's directory (REALPATH) followed by
 * path's last name, into out (outlen bytes). */
static op_err entry_name(struct op_sftp_conn *s, const char *path, char *out, size_t outlen,
                         struct op_sftp_fail *f)
{
	const char *slash = strrchr(path, '/');
	const char *name = slash ? slash + 1 : path;
	char *dir = op_malloc(ENTRY_MAX);
	if (dir == NULL)
		return op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
	if (slash == path)
		snprintf(dir, ENTRY_MAX, "/");
	else
		snprintf(dir, ENTRY_MAX, "%.*s", slash ? (int)(slash - path) : 1,
		         slash ? path : ".");
	char what[WHAT_MAX];
	snprintf(what, sizeof(what), "realpath " PATH_SHOWN, dir);
	op_err rc = OP_OK;
	long long until = op_sftp__until(s);
	int r;
	do
		r = libssh2_sftp_symlink_ex(s->sftp, dir, (unsigned)strlen(dir), out,
		                            (unsigned)outlen - 1, LIBSSH2_SFTP_REALPATH);
	while (op_sftp__again(s, r, until, &rc, what, f));
	op_free(dir);
	if (rc)
		return rc;
	if (r < 0)
		return op_sftp__fail_ssh(s, r, what, f);
	size_t n = (size_t)r < outlen - 1 ? (size_t)r : outlen - 1;
	out[n] = '\0';
	int m = snprintf(out + n, outlen - n, "/%s", name);
	if (m < 0 || (size_t)m >= outlen - n)
		return op_sftp__fail(f, OP_ELIMIT, "SFTP_ERROR", "%s: %s: path too long", s->where,
		                     what);
	return OP_OK;
}

/*
 * Renames from to to. OpenSSH's rename (SFTP version 3) is a link and an
 * unlink: it never replaces, and libssh2 1.10 has no posix-rename@openssh.com.
 * So when the rename fails and something is at to, that is what is in the
 * way: with overwrite a file there is removed and the rename made again. The
 * removal happens only when from exists and is not the very entry to names
 * ("a" and "./a"), where removing it would lose the file.
 */
static op_err rename_over(struct op_sftp_conn *s, const char *from, const char *to, bool overwrite,
                          const char *what, struct op_sftp_fail *f)
{
	long flags = LIBSSH2_SFTP_RENAME_ATOMIC | LIBSSH2_SFTP_RENAME_NATIVE |
	             (overwrite ? LIBSSH2_SFTP_RENAME_OVERWRITE : 0);
	for (int attempt = 0;; attempt++) {
		op_err rc = OP_OK;
		long long until = op_sftp__until(s);
		int r;
		do
			r = libssh2_sftp_rename_ex(s->sftp, from, (unsigned)strlen(from), to,
			                           (unsigned)strlen(to), flags);
		while (op_sftp__again(s, r, until, &rc, what, f));
		if (rc)
			return rc;
		if (r == 0) {
			s->progressed = true;
			return OP_OK;
		}
		rc = op_sftp__fail_ssh(s, r, what, f);
		if (rc != OP_EREJECTED || attempt > 0)
			return rc;
		struct op_sftp_fail first = *f;
		LIBSSH2_SFTP_ATTRIBUTES a, fa;
		bool exists = false, from_exists = false;
		op_err prc = stat_path(s, to, LIBSSH2_SFTP_LSTAT, &a, &exists, f);
		if (prc == OP_OK && exists)
			prc = stat_path(s, from, LIBSSH2_SFTP_LSTAT, &fa, &from_exists, f);
		if (prc)
			return prc;
		if (!exists || !from_exists) {
			*f = first;
			return rc;
		}
		if (!overwrite || is_dir(&a))
			return op_sftp__fail(f, OP_EREJECTED, "SFTP_EXISTS",
			                     "%s: %s: " PATH_SHOWN " exists%s", s->where, what, to,
			                     overwrite ? " and is a directory"
			                               : " (overwrite is false)");
		char *ef = op_malloc(2 * ENTRY_MAX);
		if (ef == NULL)
			return op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
		prc = entry_name(s, from, ef, ENTRY_MAX, f);
		if (prc == OP_OK)
			prc = entry_name(s, to, ef + ENTRY_MAX, ENTRY_MAX, f);
		bool same = prc == OP_OK && strcmp(ef, ef + ENTRY_MAX) == 0;
		op_free(ef);
		if (prc)
			return prc;
		if (same)
			return OP_OK; /* the file is where it should be, as rename(2) says */
		char uwhat[WHAT_MAX];
		snprintf(uwhat, sizeof(uwhat), "remove " PATH_SHOWN " to replace it", to);
		prc = unlink_path(s, to, false, uwhat, f);
		if (prc && prc != OP_ENOTFOUND)
			return prc;
	}
}

/* With overwrite false, an existing path fails before anything is done. */
static op_err refuse_existing(struct op_sftp_conn *s, const char *path, const char *what,
                              struct op_sftp_fail *f)
{
	LIBSSH2_SFTP_ATTRIBUTES a;
	bool exists = false;
	op_err rc = stat_path(s, path, LIBSSH2_SFTP_LSTAT, &a, &exists, f);
	if (rc == OP_OK && exists)
		rc = op_sftp__fail(f, OP_EREJECTED, "SFTP_EXISTS",
		                   "%s: %s: " PATH_SHOWN " exists (overwrite is false)", s->where,
		                   what, path);
	return rc;
}

/* Writes everything source gives through h (see the file comment). */
static op_err put_data(struct op_sftp_conn *s, LIBSSH2_SFTP_HANDLE *h, op_sftp_source_fn source,
                       void *ud, const char *what, uint64_t *size, struct op_sftp_fail *f)
{
	char *buf = op_malloc(PUT_BUF);
	if (buf == NULL)
		return op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
	/* buf[base, end) was handed to libssh2 and is not acknowledged yet.
	 * libssh2 copies what it is given and, called again, reads only past
	 * what it already has, so new data goes at end and never moves. */
	size_t base = 0, end = 0;
	bool eof = false;
	op_err rc = OP_OK;
	while (rc == OP_OK) {
		if (!eof && end < PUT_BUF && end - base + PUT_REFILL <= PUT_WINDOW) {
			size_t want = base + PUT_WINDOW - end, got = 0;
			if (want > PUT_BUF - end)
				want = PUT_BUF - end;
			char why[512] = "";
			rc = source(ud, buf + end, want, &got, why, sizeof(why));
			if (rc) {
				rc = op_sftp__fail(f, rc, rc == OP_ENOMEM ? "NOMEM" : "SFTP_LOCAL",
				                   "%s", why);
				break;
			}
			eof = got == 0;
			end += got;
		}
		if (base == end) {
			if (eof)
				break;
			if (end == PUT_BUF)
				base = end = 0;
			continue;
		}
		rc = still_on(s, what, f);
		if (rc)
			break;
		long long until = op_sftp__until(s);
		ssize_t n;
		do {
			n = libssh2_sftp_write(h, buf + base, end - base);
			/* 0: nothing acknowledged yet; wait as for EAGAIN. */
		} while (op_sftp__again(s, n == 0 ? LIBSSH2_ERROR_EAGAIN : n, until, &rc, what, f));
		if (rc)
			break;
		if (n < 0) {
			rc = op_sftp__fail_ssh(s, (int)n, what, f);
			break;
		}
		s->progressed = true;
		base += (size_t)n;
		*size += (uint64_t)n;
		if (base == end && end == PUT_BUF)
			base = end = 0;
	}
	/* Given up half way, libssh2 may hold a write request partly sent (a
	 * full channel window): no other request may follow it on this session. */
	if (rc && base != end)
		s->broken = true;
	op_free(buf);
	return rc;
}

op_err op_sftp_put(struct op_sftp_conn *s, const char *path, bool overwrite,
                   op_sftp_source_fn source, void *ud, uint64_t *size, struct op_sftp_fail *f)
{
	*size = 0;
	char what[WHAT_MAX];
	snprintf(what, sizeof(what), "put " PATH_SHOWN, path);
	LIBSSH2_SFTP_HANDLE *h = NULL;
	bool created = false;
	size_t cap = strlen(path) + 64;
	char *tmp = op_malloc(cap);
	unsigned char rnd[8];
	char tag[2 * sizeof(rnd) + 1];
	uint64_t total = 0;
	op_err rc = OP_OK;
	if (tmp == NULL) {
		rc = op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	if (op_random_bytes(rnd, sizeof(rnd)) != OP_OK) {
		rc = op_sftp__fail(f, OP_EIO, "SFTP_ERROR", "no random bytes for a temp name");
		goto out;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(tag + 2 * i, 3, "%02x", rnd[i]);
	if (op_sftp_temp_path(path, tag, tmp, cap) != OP_OK) {
		rc = op_sftp__fail(f, OP_EINVAL, "SFTP_REQUEST", "%s: %s: not a file name",
		                   s->where, what);
		goto out;
	}
	if (!overwrite && (rc = refuse_existing(s, path, what, f)) != OP_OK)
		goto out;
	/* EXCL: a temp name that exists is not ours to write into. */
	rc = open_path(s, tmp, LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL,
	               LIBSSH2_SFTP_S_IRUSR | LIBSSH2_SFTP_S_IWUSR | LIBSSH2_SFTP_S_IRGRP |
	                   LIBSSH2_SFTP_S_IROTH,
	               LIBSSH2_SFTP_OPENFILE, what, &h, f);
	if (rc)
		goto out;
	created = true;
	rc = put_data(s, h, source, ud, what, &total, f);
	if (rc)
		goto out;
	long long until = op_sftp__until(s);
	int r;
	do
		r = libssh2_sftp_fsync(h);
	while (op_sftp__again(s, r, until, &rc, what, f));
	if (rc)
		goto out;
	/* Servers without fsync@openssh.com answer "unsupported": written, not flushed. */
	if (r && !(r == LIBSSH2_ERROR_SFTP_PROTOCOL &&
	           libssh2_sftp_last_error(s->sftp) == LIBSSH2_FX_OP_UNSUPPORTED)) {
		rc = op_sftp__fail_ssh(s, r, what, f);
		goto out;
	}
	rc = close_handle(s, h, what, f);
	h = NULL;
	if (rc == OP_OK)
		rc = rename_over(s, tmp, path, overwrite, what, f);
	if (rc == OP_OK) {
		created = false;
		*size = total;
	}
out:
	close_quietly(s, h);
	if (created && !s->broken) {
		struct op_sftp_fail ignored;
		(void)unlink_path(s, tmp, false, "remove the temp file", &ignored);
	}
	op_free(tmp);
	return rc;
}

op_err op_sftp_move(struct op_sftp_conn *s, const char *from, const char *to, bool overwrite,
                    struct op_sftp_fail *f)
{
	char what[WHAT_MAX];
	snprintf(what, sizeof(what), "move %.180s to %.180s", from, to);
	op_err rc = overwrite ? OP_OK : refuse_existing(s, to, what, f);
	return rc ? rc : rename_over(s, from, to, overwrite, what, f);
}

/* ---- delete, mkdir ---- */

op_err op_sftp_delete(struct op_sftp_conn *s, const char *path, bool missing_ok, bool *deleted,
                      struct op_sftp_fail *f)
{
	*deleted = false;
	char what[WHAT_MAX];
	snprintf(what, sizeof(what), "delete " PATH_SHOWN, path);
	LIBSSH2_SFTP_ATTRIBUTES a;
	bool exists = false;
	op_err rc = stat_path(s, path, LIBSSH2_SFTP_LSTAT, &a, &exists, f);
	if (rc == OP_OK && exists)
		rc = unlink_path(s, path, is_dir(&a), what, f);
	else if (rc == OP_OK)
		rc = op_sftp__fail(f, OP_ENOTFOUND, "SFTP_NOT_FOUND",
		                   "%s: %s: no such file or directory", s->where, what);
	if (rc == OP_ENOTFOUND && missing_ok)
		return OP_OK;
	*deleted = rc == OP_OK;
	return rc;
}

/* Makes one directory; an existing directory is fine (*created false). */
static op_err mkdir_one(struct op_sftp_conn *s, const char *path, bool *created,
                        struct op_sftp_fail *f)
{
	*created = false;
	char what[WHAT_MAX];
	snprintf(what, sizeof(what), "mkdir " PATH_SHOWN, path);
	op_err rc = OP_OK;
	long long until = op_sftp__until(s);
	int r;
	do
		r = libssh2_sftp_mkdir_ex(s->sftp, path, (unsigned)strlen(path), 0755);
	while (op_sftp__again(s, r, until, &rc, what, f));
	if (rc)
		return rc;
	if (r == 0) {
		s->progressed = true;
		*created = true;
		return OP_OK;
	}
	rc = op_sftp__fail_ssh(s, r, what, f);
	if (rc != OP_EREJECTED)
		return rc;
	/* OpenSSH says "failure" for EEXIST: see what is there. */
	struct op_sftp_fail first = *f;
	LIBSSH2_SFTP_ATTRIBUTES a;
	bool exists = false;
	op_err prc = stat_path(s, path, LIBSSH2_SFTP_STAT, &a, &exists, f);
	if (prc)
		return prc;
	if (!exists) {
		*f = first;
		return rc;
	}
	if (!is_dir(&a))
		return op_sftp__fail(f, OP_EREJECTED, "SFTP_EXISTS",
		                     "%s: %s: exists and is not a directory", s->where, what);
	return OP_OK;
}

op_err op_sftp_mkdir(struct op_sftp_conn *s, const char *path, bool parents, bool *created,
                     struct op_sftp_fail *f)
{
	*created = false;
	op_err rc = mkdir_one(s, path, created, f);
	if (rc != OP_ENOTFOUND || !parents)
		return rc;
	/* A parent is missing: make each one from the top, then path. */
	char *p = op_strdup(path);
	if (p == NULL)
		return op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
	rc = OP_OK;
	for (size_t i = 1; p[i] && rc == OP_OK; i++) {
		if (p[i] != '/' || p[i - 1] == '/')
			continue;
		bool made = false;
		p[i] = '\0';
		rc = mkdir_one(s, p, &made, f);
		p[i] = '/';
	}
	op_free(p);
	return rc ? rc : mkdir_one(s, path, created, f);
}
