/*
 * Files on the agent's host below the sftp step's localDir (see local.h):
 * path checks, a walk that opens one component at a time without following
 * links, temp files renamed into place, and the writer thread of downloads.
 */
#include "connectors/sftp/local.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/core/alloc.h"
#include "agent/core/uuid.h"
#include "connectors/sftp/sftp.h"

#define SHOWN "%.200s"

void op_sftp_local_init(struct op_sftp_local *l)
{
	l->dir = -1;
	l->fd = -1;
	l->name = NULL;
	l->temp = NULL;
}

op_err op_sftp_local_check(const char *rel, char *why, size_t whylen)
{
	size_t n = strlen(rel);
	if (n == 0)
		return op_errf(why, whylen, OP_EINVAL, "localPath is empty");
	if (n > OP_SFTP_LOCAL_PATH_MAX)
		return op_errf(why, whylen, OP_EINVAL, "localPath is longer than %d bytes",
		               OP_SFTP_LOCAL_PATH_MAX);
	if (rel[0] == '/')
		return op_errf(why, whylen, OP_EINVAL,
		               "localPath \"" SHOWN "\" is absolute; it is relative to localDir",
		               rel);
	for (const char *p = rel; *p;) {
		size_t len = strcspn(p, "/");
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return op_errf(why, whylen, OP_EINVAL,
			               "localPath \"" SHOWN "\" has a \"..\": it must stay below "
			               "localDir",
			               rel);
		p += len;
		p += *p == '/';
	}
	const char *last = strrchr(rel, '/');
	last = last ? last + 1 : rel;
	if (last[0] == '\0' || strcmp(last, ".") == 0)
		return op_errf(why, whylen, OP_EINVAL,
		               "localPath \"" SHOWN "\" does not end in a file name", rel);
	return OP_OK;
}

static op_err errno_fail(int e, const char *what, const char *path, char *why, size_t whylen)
{
	char eb[128];
	op_err cls = op_err_from_errno(e);
	/* ELOOP, ENOTDIR: a link or a file where a directory belongs. */
	if (e == ELOOP || e == ENOTDIR || e == EISDIR)
		cls = OP_EINVAL;
	if (e == EROFS) /* a folder the service may not write (no ReadWritePaths=) */
		cls = OP_EAUTH;
	if (e == ELOOP || e == ENOTDIR)
		return op_errf(why, whylen, cls,
		               "%s " SHOWN ": a symbolic link or a file on the way (symbolic links "
		               "are not followed below localDir)",
		               what, path);
	return op_errf(why, whylen, cls, "%s " SHOWN ": %s", what, path,
	               strerror_r(e, eb, sizeof(eb)));
}

/* Opens base and every directory of rel below it into l->dir, and sets
 * l->name to rel's last component. */
static op_err open_parent(struct op_sftp_local *l, const char *base, const char *rel, char *why,
                          size_t whylen)
{
	op_err rc = op_sftp_local_check(rel, why, whylen);
	if (rc)
		return rc;
	int d = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d < 0)
		return errno_fail(errno, "localDir", base, why, whylen);
	char *copy = op_strdup(rel);
	if (copy == NULL) {
		close(d);
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	}
	char *p = copy;
	for (char *slash; (slash = strchr(p, '/')) != NULL; p = slash + 1) {
		*slash = '\0';
		if (p[0] == '\0' || strcmp(p, ".") == 0)
			continue;
		int nd = openat(d, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nd < 0) {
			int e = errno;
			close(d);
			*slash = '\0';
			rc = errno_fail(e, "localPath", rel, why, whylen);
			op_free(copy);
			return rc;
		}
		close(d);
		d = nd;
	}
	l->name = op_strdup(p);
	op_free(copy);
	if (l->name == NULL) {
		close(d);
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	}
	l->dir = d;
	return OP_OK;
}

op_err op_sftp_local_open(struct op_sftp_local *l, const char *base, const char *rel,
                          uint64_t *size, char *why, size_t whylen)
{
	*size = 0;
	op_err rc = open_parent(l, base, rel, why, whylen);
	if (rc)
		return rc;
	/* O_NONBLOCK: a FIFO must not hang the open; it is refused below. */
	int fd = openat(l->dir, l->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	struct stat st = {0};
	int e = 0;
	if (fd < 0 || fstat(fd, &st) != 0 || (S_ISREG(st.st_mode) && fcntl(fd, F_SETFL, 0) != 0))
		e = errno;
	if (e || !S_ISREG(st.st_mode)) {
		rc = e ? errno_fail(e, "localPath", rel, why, whylen)
		       : op_errf(why, whylen, OP_EINVAL, "localPath " SHOWN ": not a regular file",
		                 rel);
		if (fd >= 0)
			close(fd);
		op_sftp_local_fini(l);
		return rc;
	}
	/* Read once, front to back: ask for a large read-ahead. */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	l->fd = fd;
	*size = (uint64_t)st.st_size;
	return OP_OK;
}

op_err op_sftp_local_create(struct op_sftp_local *l, const char *base, const char *rel,
                            bool overwrite, char *why, size_t whylen)
{
	op_err rc = open_parent(l, base, rel, why, whylen);
	if (rc)
		return rc;
	struct stat st;
	if (!overwrite && fstatat(l->dir, l->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		rc = op_errf(why, whylen, OP_EREJECTED,
		             "localPath " SHOWN " exists (overwrite is false)", rel);
		goto out;
	}
	unsigned char rnd[8];
	char tag[2 * sizeof(rnd) + 1];
	if (op_random_bytes(rnd, sizeof(rnd)) != OP_OK) {
		rc = op_errf(why, whylen, OP_EIO, "no random bytes for a temp name");
		goto out;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(tag + 2 * i, 3, "%02x", rnd[i]);
	size_t cap = strlen(l->name) + 64;
	l->temp = op_malloc(cap);
	if (l->temp == NULL || op_sftp_temp_path(l->name, tag, l->temp, cap) != OP_OK) {
		op_free(l->temp);
		l->temp = NULL;
		rc = op_errf(why, whylen, OP_ENOMEM, "out of memory");
		goto out;
	}
	l->fd = openat(l->dir, l->temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (l->fd < 0) {
		rc = errno_fail(errno, "localPath", rel, why, whylen);
		op_free(l->temp);
		l->temp = NULL;
	}
out:
	if (rc)
		op_sftp_local_fini(l);
	return rc;
}

op_err op_sftp_local_rewind(struct op_sftp_local *l, char *why, size_t whylen)
{
	if (ftruncate(l->fd, 0) != 0 || lseek(l->fd, 0, SEEK_SET) != 0)
		return errno_fail(errno, "localPath", l->name, why, whylen);
	return OP_OK;
}

op_err op_sftp_local_commit(struct op_sftp_local *l, bool overwrite, char *why, size_t whylen)
{
	if (fsync(l->fd) != 0)
		return errno_fail(errno, "localPath", l->name, why, whylen);
	if (close(l->fd) != 0) {
		l->fd = -1;
		return errno_fail(errno, "localPath", l->name, why, whylen);
	}
	l->fd = -1;
	if (renameat2(l->dir, l->temp, l->dir, l->name, overwrite ? 0 : RENAME_NOREPLACE) != 0) {
		if (errno == EEXIST)
			return op_errf(why, whylen, OP_EREJECTED,
			               "localPath " SHOWN " exists (overwrite is false)", l->name);
		return errno_fail(errno, "localPath", l->name, why, whylen);
	}
	op_free(l->temp);
	l->temp = NULL;
	/* The new name is durable once the directory is. */
	if (fsync(l->dir) != 0)
		return errno_fail(errno, "localPath", l->name, why, whylen);
	return OP_OK;
}

void op_sftp_local_fini(struct op_sftp_local *l)
{
	if (l->fd >= 0)
		close(l->fd);
	if (l->temp && l->dir >= 0)
		(void)unlinkat(l->dir, l->temp, 0);
	if (l->dir >= 0)
		close(l->dir);
	op_free(l->name);
	op_free(l->temp);
	op_sftp_local_init(l);
}

/* ---- the writer thread ---- */

struct op_sftp_local_writer {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* signalled at every change below */
	const struct op_sftp_local *l;
	char *slot[OP_SFTP_LOCAL_QUEUE];
	size_t len[OP_SFTP_LOCAL_QUEUE];
	off_t pos;            /* where the next chunk goes in the file */
	unsigned head, count; /* the ring: next to write, how many wait */
	bool done;            /* nothing more will be queued */
	int err;              /* errno of the first write that failed */
};

static void *writer_main(void *arg)
{
	struct op_sftp_local_writer *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->count == 0 && !w->done)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->count == 0)
			break;
		unsigned i = w->head;
		pthread_mutex_unlock(&w->mu);
		/* The slot is ours until head moves on: no lock while writing. */
		const char *p = w->slot[i];
		size_t n = w->len[i];
		int err = 0;
		while (n > 0 && err == 0) {
			ssize_t r = pwrite(w->l->fd, p, n, w->pos);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				err = r < 0 ? errno : EIO;
				break;
			}
			p += r;
			n -= (size_t)r;
			w->pos += r;
		}
		pthread_mutex_lock(&w->mu);
		w->head = (w->head + 1) % OP_SFTP_LOCAL_QUEUE;
		w->count--;
		if (err && w->err == 0)
			w->err = err;
		pthread_cond_broadcast(&w->cv);
		if (w->err) {
			/* Drop what is queued: the download fails. */
			w->head = (w->head + w->count) % OP_SFTP_LOCAL_QUEUE;
			w->count = 0;
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void writer_release(struct op_sftp_local_writer *w)
{
	for (size_t i = 0; i < OP_SFTP_LOCAL_QUEUE; i++)
		op_free(w->slot[i]);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	op_free(w);
}

op_err op_sftp_local_writer_start(struct op_sftp_local *l, uint64_t off,
                                  struct op_sftp_local_writer **out, char *why, size_t whylen)
{
	*out = NULL;
	if (off > (uint64_t)INT64_MAX)
		return op_errf(why, whylen, OP_EINVAL, "localPath: offset %llu is too large",
		               (unsigned long long)off);
	struct op_sftp_local_writer *w = op_calloc(1, sizeof(*w));
	if (w == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	w->l = l;
	w->pos = (off_t)off;
	bool ok = pthread_mutex_init(&w->mu, NULL) == 0;
	if (ok && pthread_cond_init(&w->cv, NULL) != 0) {
		pthread_mutex_destroy(&w->mu);
		ok = false;
	}
	if (!ok) {
		op_free(w);
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < OP_SFTP_LOCAL_QUEUE; i++) {
		if ((w->slot[i] = op_malloc(OP_SFTP_CHUNK)) == NULL) {
			writer_release(w);
			return op_errf(why, whylen, OP_ENOMEM, "out of memory");
		}
	}
	int e = pthread_create(&w->thread, NULL, writer_main, w);
	if (e) {
		writer_release(w);
		char eb[128];
		return op_errf(why, whylen, e == EAGAIN ? OP_ENOMEM : OP_EIO,
		               "no thread to write localPath: %s", strerror_r(e, eb, sizeof(eb)));
	}
	*out = w;
	return OP_OK;
}

static op_err writer_fail(const struct op_sftp_local_writer *w, int err, char *why, size_t whylen)
{
	return errno_fail(err, "localPath", w->l->name ? w->l->name : "", why, whylen);
}

op_err op_sftp_local_writer_put(struct op_sftp_local_writer *w, const void *p, size_t n, char *why,
                                size_t whylen)
{
	const char *b = p;
	while (n > 0) {
		size_t k = n < OP_SFTP_CHUNK ? n : OP_SFTP_CHUNK;
		pthread_mutex_lock(&w->mu);
		while (w->count == OP_SFTP_LOCAL_QUEUE && w->err == 0)
			pthread_cond_wait(&w->cv, &w->mu);
		int err = w->err;
		if (err == 0) {
			unsigned i = (w->head + w->count) % OP_SFTP_LOCAL_QUEUE;
			memcpy(w->slot[i], b, k);
			w->len[i] = k;
			w->count++;
			pthread_cond_broadcast(&w->cv);
		}
		pthread_mutex_unlock(&w->mu);
		if (err)
			return writer_fail(w, err, why, whylen);
		b += k;
		n -= k;
	}
	return OP_OK;
}

op_err op_sftp_local_writer_finish(struct op_sftp_local_writer *w, char *why, size_t whylen)
{
	pthread_mutex_lock(&w->mu);
	w->done = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	op_err rc = w->err ? writer_fail(w, w->err, why, whylen) : OP_OK;
	writer_release(w);
	return rc;
}

void op_sftp_local_writer_free(struct op_sftp_local_writer *w)
{
	char why[8];
	if (w) {
		op_err ignored = op_sftp_local_writer_finish(w, why, sizeof(why));
		(void)ignored;
	}
}
