/*
 * A growable byte buffer with a hard cap (curl's dynbuf): appending past the
 * cap is an OP_ELIMIT error, never silent truncation. The content is always
 * NUL-terminated so it can be used as a C string, but len is authoritative.
 */
#ifndef OP_CORE_BUF_H
#define OP_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "agent/core/err.h"

struct op_buf {
	char *data; /* NULL until the first append */
	size_t len;
	size_t cap;
	size_t max; /* hard cap on len */
};

/* Initialises an empty buffer that may hold at most max bytes. */
void op_buf_init(struct op_buf *b, size_t max);
/* Frees the content; the buffer is empty and usable again. */
void op_buf_fini(struct op_buf *b);
/* Empties the buffer, keeping its memory. */
void op_buf_reset(struct op_buf *b);
/* Appends bytes. OP_ELIMIT past the cap, OP_ENOMEM; on error b is unchanged. */
op_err op_buf_add(struct op_buf *b, const void *p, size_t n) OP_WUR;
op_err op_buf_adds(struct op_buf *b, const char *s) OP_WUR;
op_err op_buf_addc(struct op_buf *b, char c) OP_WUR;
op_err op_buf_addf(struct op_buf *b, const char *fmt, ...) OP_PRINTF(2, 3) OP_WUR;
op_err op_buf_vaddf(struct op_buf *b, const char *fmt, va_list ap) OP_PRINTF(2, 0) OP_WUR;
/* Returns the content (NUL-terminated, caller frees) and empties b. */
char *op_buf_take(struct op_buf *b);
/* The content as a C string, "" when empty; borrowed until the next change. */
const char *op_buf_str(const struct op_buf *b);

#endif
