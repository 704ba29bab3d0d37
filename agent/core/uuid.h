/*
 * Random identifiers: version 4 UUIDs from the kernel's random source, used
 * for execution and event ids.
 */
#ifndef OP_CORE_UUID_H
#define OP_CORE_UUID_H

#include "agent/core/err.h"

#define OP_UUID_LEN 36

/* Writes a lower-case UUID v4 and a NUL into out. OP_EIO if the kernel's
 * random source fails (it does not block once the system has booted). */
op_err op_uuid_v4(char out[OP_UUID_LEN + 1]) OP_WUR;

#endif
