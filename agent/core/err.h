/*
 * Project-wide error classes. A class tells the caller what it can do about a
 * failure (retry it, fix the input, give up); the text that explains one
 * particular failure lives on the handle that failed, never in the code.
 * Foreign codes (errno, libraries) are translated once, at the module that
 * wraps the library, and never cross a module boundary raw.
 */
#ifndef OP_CORE_ERR_H
#define OP_CORE_ERR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define OP_WUR          __attribute__((warn_unused_result))
#define OP_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* X(NAME, "name", retryable, "description") */
#define OP_ERR_MAP(X)                                                    \
	X(OK, "ok", false, "success")                                    \
	X(RETRY, "retry", true, "temporary failure, try again")          \
	X(TIMEOUT, "timeout", true, "timed out")                         \
	X(NOCONN, "noconn", true, "no connection to the peer")           \
	X(BUSY, "busy", true, "busy, try again later")                   \
	X(FULL, "full", true, "storage or queue full")                   \
	X(NOMEM, "nomem", true, "out of memory")                         \
	X(IO, "io", true, "input/output error")                          \
	X(INVAL, "invalid", false, "invalid input")                      \
	X(CONFIG, "config", false, "invalid configuration")              \
	X(AUTH, "auth", false, "authentication or authorization failed") \
	X(REJECTED, "rejected", false, "rejected by the peer")           \
	X(PARSE, "parse", false, "could not parse")                      \
	X(NOTFOUND, "notfound", false, "not found")                      \
	X(CORRUPT, "corrupt", false, "corrupt data")                     \
	X(LIMIT, "limit", false, "a limit was exceeded")                 \
	X(UNSUPPORTED, "unsupported", false, "not supported")            \
	X(USER, "user", false, "error raised by the pipeline")           \
	X(CANCELED, "cancelled", false, "cancelled")                     \
	X(INTERNAL, "internal", false, "internal error")

typedef enum op_err {
#define OP_ERR_ENUM_(n, s, r, d) OP_E##n,
	OP_ERR_MAP(OP_ERR_ENUM_)
#undef OP_ERR_ENUM_
	    OP_ERR_COUNT_
} op_err;

#define OP_OK OP_EOK

/* Short lower-case name of a class ("timeout"), as used in error objects. */
const char *op_err_name(op_err e);
/* One-line description of a class. */
const char *op_err_str(op_err e);
/* True for classes where trying the same operation again may succeed. */
bool op_err_retryable(op_err e);
/* Class for a name from op_err_name(); returns false if the name is unknown. */
bool op_err_from_name(const char *name, op_err *out);
/* Class for an errno value. */
op_err op_err_from_errno(int errnum);

/* Formats a message into buf (len bytes, truncated, NUL-terminated; nothing
 * when buf is NULL or len 0) and returns e: `return op_errf(err, errlen,
 * OP_EIO, "%s: cannot open", path);`. */
op_err op_errf(char *buf, size_t len, op_err e, const char *fmt, ...) OP_PRINTF(4, 5);
/* The same with a va_list, for functions that wrap it. */
op_err op_verrf(char *buf, size_t len, op_err e, const char *fmt, va_list ap) OP_PRINTF(4, 0);

#endif
