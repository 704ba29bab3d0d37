/*
 * Reading small files whole (pipelines, inputs, keys) with a size bound.
 */
#ifndef OP_CORE_FILE_H
#define OP_CORE_FILE_H

#include <stddef.h>

#include "agent/core/err.h"

/*
 * Reads path ("-" is standard input) into *out, NUL-terminated, length in
 * *len. A file larger than max bytes is OP_ELIMIT; errors from the system
 * are their errno class. err gets a one-line reason ("No such file or
 * directory", "larger than 4194304 bytes"). *out is NULL on error.
 */
op_err op_file_read(const char *path, size_t max, char **out, size_t *len, char *err,
                    size_t errlen) OP_WUR;

#endif
