/*
 * UUIDs: version 7 (time-ordered) for event and execution ids, version 4
 * (random) where an id must reveal nothing, such as the UUID() expression
 * function. Random bits come from the kernel's random source.
 */
#ifndef OP_CORE_UUID_H
#define OP_CORE_UUID_H

#include <stddef.h>

#include "agent/core/err.h"

#define OP_UUID_LEN 36

/* Fills buf with len bytes from the kernel's random source (getrandom(2),
 * retried on EINTR). OP_EIO if it fails. Also for nonces and new keys. */
op_err op_random_bytes(void *buf, size_t len) OP_WUR;

/* Writes a lower-case UUID v4 and a NUL into out. OP_EIO if the kernel's
 * random source fails (it does not block once the system has booted). */
op_err op_uuid_v4(char out[OP_UUID_LEN + 1]) OP_WUR;

/* Writes a lower-case UUID v7 and a NUL into out: Unix milliseconds, a
 * counter, 62 random bits (RFC 9562). Ids from one process are strictly
 * increasing, in text order too. OP_EIO as op_uuid_v4. */
op_err op_uuid_v7(char out[OP_UUID_LEN + 1]) OP_WUR;

#endif
