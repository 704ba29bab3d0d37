/*
 * Files on the agent's own host for the sftp step (localDir + localPath):
 * the source of a put, the destination of a get.
 *
 * Invariant: a file opened here is below its base directory, whatever the
 * relative path says: absolute paths and ".." are refused, and every
 * component is opened relative to its parent without following symbolic
 * links (O_NOFOLLOW), so neither a link planted in the tree nor a rename
 * during the walk leads outside. A file being written is a hidden temp file
 * in the destination directory until op_sftp_local_commit renames it into
 * place, so readers never see part of a download. The base directory is
 * the step's localDir, which the step has checked against the agent's
 * [files] dirs (op_exec_file_dir) before it comes here.
 */
#ifndef OP_CONNECTORS_SFTP_LOCAL_H
#define OP_CONNECTORS_SFTP_LOCAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/err.h"

#define OP_SFTP_LOCAL_PATH_MAX 4096

struct op_sftp_local {
	int dir;    /* the directory that holds the file; -1 when none */
	int fd;     /* the file open for reading, or the temp file being written */
	char *name; /* the file's name in dir */
	char *temp; /* the temp file's name until committed; NULL otherwise */
};

/* An empty handle (nothing open); op_sftp_local_fini is then a no-op. */
void op_sftp_local_init(struct op_sftp_local *l);

/*
 * Checks rel as a path below a base directory: 1 to OP_SFTP_LOCAL_PATH_MAX
 * bytes, relative, no ".." component, ending in a file name. OP_EINVAL with
 * why (whylen bytes) saying what is wrong.
 */
op_err op_sftp_local_check(const char *rel, char *why, size_t whylen) OP_WUR;

/*
 * Opens the regular file base/rel for reading into l, *size its size.
 * OP_EINVAL (rel not acceptable, a symbolic link on the way, not a regular
 * file), OP_ENOTFOUND, OP_EAUTH (permission), OP_EIO, OP_ENOMEM; why names
 * the path. On error l is as op_sftp_local_init left it.
 */
op_err op_sftp_local_open(struct op_sftp_local *l, const char *base, const char *rel,
                          uint64_t *size, char *why, size_t whylen) OP_WUR;

/*
 * Creates the temp file for base/rel (in rel's directory, which must
 * exist) and opens it for writing into l. With overwrite false an existing
 * base/rel is OP_EREJECTED. Other classes as op_sftp_local_open, and
 * OP_EFULL.
 */
op_err op_sftp_local_create(struct op_sftp_local *l, const char *base, const char *rel,
                            bool overwrite, char *why, size_t whylen) OP_WUR;

/* Empties the temp file again (for a second attempt). OP_EIO. */
op_err op_sftp_local_rewind(struct op_sftp_local *l, char *why, size_t whylen) OP_WUR;

/*
 * Flushes the temp file to disk and renames it to its name (replacing an
 * existing file only with overwrite: else OP_EREJECTED), then flushes the
 * directory. OP_EIO, OP_EFULL.
 */
op_err op_sftp_local_commit(struct op_sftp_local *l, bool overwrite, char *why,
                            size_t whylen) OP_WUR;

/* Closes what l holds and removes a temp file not committed. */
void op_sftp_local_fini(struct op_sftp_local *l);

/*
 * A thread that writes a download into l's file, so that the network side
 * goes on while the disk writes (OpenSSH's sftp splits the same work across
 * two processes): a write that stalls (dirty page throttling, a slow disk)
 * no longer stops the transfer. Up to OP_SFTP_LOCAL_QUEUE chunks wait in a
 * ring of fixed buffers, so memory stays bounded. l must stay open, and its
 * fd untouched, until op_sftp_local_writer_finish or _free.
 */
struct op_sftp_local_writer;

#define OP_SFTP_LOCAL_QUEUE 4

/* A writer whose first byte goes at offset off of the file (pwrite(2):
 * the writers of a split get fill their parts of one file side by side).
 * OP_ENOMEM, OP_EIO (no thread could be started). */
op_err op_sftp_local_writer_start(struct op_sftp_local *l, uint64_t off,
                                  struct op_sftp_local_writer **out, char *why,
                                  size_t whylen) OP_WUR;

/*
 * Queues a copy of the n bytes at p, waiting while the ring is full. When
 * an earlier write failed, returns its class (errno's: OP_EFULL, OP_EIO,
 * ...) with why naming the file, and queues nothing.
 */
op_err op_sftp_local_writer_put(struct op_sftp_local_writer *w, const void *p, size_t n, char *why,
                                size_t whylen) OP_WUR;

/* Waits until everything queued is written, ends the thread and frees w:
 * OP_OK, or the class of the first write that failed. */
op_err op_sftp_local_writer_finish(struct op_sftp_local_writer *w, char *why, size_t whylen) OP_WUR;

/* Ends the thread (after the writes queued) and frees w, whatever happened.
 * NULL is a no-op. */
void op_sftp_local_writer_free(struct op_sftp_local_writer *w);

#endif
