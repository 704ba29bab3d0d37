/*
 * The capped growable buffer. Growth doubles up to the cap; every append
 * either lands whole or leaves the buffer as it was.
 */
#include "agent/core/buf.h"

#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"

void op_buf_init(struct op_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void op_buf_fini(struct op_buf *b)
{
	op_free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void op_buf_reset(struct op_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

static op_err grow(struct op_buf *b, size_t extra)
{
	if (extra > b->max || b->len > b->max - extra)
		return OP_ELIMIT;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return OP_OK;
	size_t ncap = b->cap ? b->cap : 64;
	while (ncap < need)
		ncap *= 2;
	char *p = op_realloc(b->data, ncap);
	if (p == NULL)
		return OP_ENOMEM;
	b->data = p;
	b->cap = ncap;
	return OP_OK;
}

op_err op_buf_add(struct op_buf *b, const void *p, size_t n)
{
	op_err e = grow(b, n);
	if (e)
		return e;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return OP_OK;
}

op_err op_buf_adds(struct op_buf *b, const char *s)
{
	return op_buf_add(b, s, strlen(s));
}

op_err op_buf_addc(struct op_buf *b, char c)
{
	return op_buf_add(b, &c, 1);
}

op_err op_buf_vaddf(struct op_buf *b, const char *fmt, va_list ap)
{
	va_list aq;
	va_copy(aq, ap);
	int n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0)
		return OP_EINVAL;
	op_err e = grow(b, (size_t)n);
	if (e)
		return e;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return OP_OK;
}

op_err op_buf_addf(struct op_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	op_err e = op_buf_vaddf(b, fmt, ap);
	va_end(ap);
	return e;
}

char *op_buf_take(struct op_buf *b)
{
	char *p = b->data;
	if (p == NULL)
		p = op_strdup("");
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}

const char *op_buf_str(const struct op_buf *b)
{
	return b->data ? b->data : "";
}
