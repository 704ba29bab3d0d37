/*
 * Problem list and path stack for loaders. Keys that are not plain
 * identifiers are written in bracket form (["key with spaces"]) so a path can
 * always be read back unambiguously.
 */
#include "agent/core/diag.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"

void op_diag_init(struct op_diag *d)
{
	memset(d, 0, sizeof(*d));
	d->max = 200;
}

void op_diag_fini(struct op_diag *d)
{
	for (size_t i = 0; i < d->n; i++) {
		op_free(d->v[i].path);
		op_free(d->v[i].msg);
	}
	op_free(d->v);
	op_diag_init(d);
}

static void vadd(struct op_diag *d, const char *path, const char *fmt, va_list ap)
{
	if (d->n >= d->max) {
		d->lost++;
		return;
	}
	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 8;
		struct op_problem *v = op_realloc(d->v, ncap * sizeof(*v));
		if (v == NULL) {
			d->nomem = 1;
			d->lost++;
			return;
		}
		d->v = v;
		d->cap = ncap;
	}
	struct op_buf b;
	op_buf_init(&b, 4096);
	if (op_buf_vaddf(&b, fmt, ap) != OP_OK) {
		op_buf_fini(&b);
		d->nomem = 1;
		d->lost++;
		return;
	}
	char *p = op_strdup(path);
	char *m = op_buf_take(&b);
	if (p == NULL || m == NULL) {
		op_free(p);
		op_free(m);
		d->nomem = 1;
		d->lost++;
		return;
	}
	d->v[d->n].path = p;
	d->v[d->n].msg = m;
	d->n++;
}

void op_diag_add(struct op_diag *d, const char *suffix, const char *fmt, ...)
{
	size_t mark = d->plen;
	if (suffix && *suffix)
		op_diag_push_key(d, suffix);
	va_list ap;
	va_start(ap, fmt);
	vadd(d, d->path, fmt, ap);
	va_end(ap);
	op_diag_pop(d, mark);
}

void op_diag_add_at(struct op_diag *d, const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vadd(d, path, fmt, ap);
	va_end(ap);
}

static int plain_key(const char *k)
{
	if (!*k || isdigit((unsigned char)*k))
		return 0;
	for (; *k; k++) {
		if (!isalnum((unsigned char)*k) && *k != '_' && *k != '-' && *k != '$')
			return 0;
	}
	return 1;
}

static void append(struct op_diag *d, const char *s, size_t n)
{
	if (d->plen + n >= sizeof(d->path)) {
		/* Overlong paths are cut; they still point at the right region. */
		n = sizeof(d->path) - 1 - d->plen;
	}
	memcpy(d->path + d->plen, s, n);
	d->plen += n;
	d->path[d->plen] = '\0';
}

size_t op_diag_push_key(struct op_diag *d, const char *key)
{
	size_t mark = d->plen;
	if (plain_key(key)) {
		if (d->plen)
			append(d, ".", 1);
		append(d, key, strlen(key));
	} else {
		append(d, "[\"", 2);
		for (const char *k = key; *k; k++) {
			if (*k == '"' || *k == '\\')
				append(d, "\\", 1);
			append(d, k, 1);
		}
		append(d, "\"]", 2);
	}
	return mark;
}

size_t op_diag_push_index(struct op_diag *d, size_t i)
{
	size_t mark = d->plen;
	char tmp[32];
	int n = snprintf(tmp, sizeof(tmp), "[%zu]", i);
	append(d, tmp, (size_t)n);
	return mark;
}

void op_diag_pop(struct op_diag *d, size_t mark)
{
	if (mark <= d->plen) {
		d->plen = mark;
		d->path[mark] = '\0';
	}
}

const char *op_diag_path(const struct op_diag *d)
{
	return d->path;
}

size_t op_diag_count(const struct op_diag *d)
{
	return d->n + d->lost;
}
