/*
 * Names, descriptions and retryability of the error classes, all generated
 * from OP_ERR_MAP so the three can never disagree.
 */
#include "agent/core/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	const char *desc;
	bool retry;
} err_tab[] = {
#define OP_ERR_TAB_(n, s, r, d) {s, d, r},
    OP_ERR_MAP(OP_ERR_TAB_)
#undef OP_ERR_TAB_
};

const char *op_err_name(op_err e)
{
	if ((unsigned)e >= OP_ERR_COUNT_)
		return "internal";
	return err_tab[e].name;
}

const char *op_err_str(op_err e)
{
	if ((unsigned)e >= OP_ERR_COUNT_)
		return "unknown error";
	return err_tab[e].desc;
}

bool op_err_retryable(op_err e)
{
	return (unsigned)e < OP_ERR_COUNT_ && err_tab[e].retry;
}

bool op_err_from_name(const char *name, op_err *out)
{
	for (unsigned i = 0; i < OP_ERR_COUNT_; i++) {
		if (strcmp(err_tab[i].name, name) == 0) {
			*out = (op_err)i;
			return true;
		}
	}
	return false;
}

op_err op_err_from_errno(int errnum)
{
	switch (errnum) {
	case 0:
		return OP_OK;
	case ENOMEM:
		return OP_ENOMEM;
	case ENOSPC:
	case EDQUOT:
		return OP_EFULL;
	case ENOENT:
		return OP_ENOTFOUND;
	case EACCES:
	case EPERM:
		return OP_EAUTH;
	case EAGAIN:
	case EINTR:
		return OP_ERETRY;
	case ETIMEDOUT:
		return OP_ETIMEOUT;
	case ECONNREFUSED:
	case ECONNRESET:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EPIPE:
		return OP_ENOCONN;
	case EINVAL:
	case ENAMETOOLONG:
		return OP_EINVAL;
	case EBUSY:
		return OP_EBUSY;
	default:
		return OP_EIO;
	}
}

op_err op_verrf(char *buf, size_t len, op_err e, const char *fmt, va_list ap)
{
	if (buf != NULL && len > 0)
		vsnprintf(buf, len, fmt, ap);
	return e;
}

op_err op_errf(char *buf, size_t len, op_err e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	op_verrf(buf, len, e, fmt, ap);
	va_end(ap);
	return e;
}
