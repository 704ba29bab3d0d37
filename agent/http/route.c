/*
 * Path templates and the route table. A request path is split on '/' first,
 * then each segment is percent-decoded on its own, so the structure of the
 * path is fixed before any decoding; decoded segments are kept back to back,
 * separated by '/', so that a wildcard's value is one substring. The table is
 * a flat array scanned in full on every match: it holds tens of routes, and
 * the scan keeps specificity independent of insertion order.
 */
#include "agent/http/route.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/b64.h"

enum seg_kind { SEG_LIT = 0, SEG_PARAM = 1, SEG_WILD = 2 };

struct seg {
	enum seg_kind kind;
	char *text; /* literal text or parameter name */
	size_t len;
};

struct op_http_route {
	char *tmpl;
	int nseg;
	bool wild; /* last segment is a wildcard */
	struct seg seg[OP_HTTP_ROUTE_MAX_SEGMENTS];
};

struct entry {
	char method[16];
	struct op_http_route *route;
	void *target;
};

struct op_http_router {
	struct entry *v;
	size_t n, cap;
};

/* A request path split and decoded: segment i is dec[off[i] .. off[i]+len[i]). */
struct split {
	char *dec;
	int n;
	size_t off[OP_HTTP_ROUTE_MAX_SEGMENTS + 1];
	size_t len[OP_HTTP_ROUTE_MAX_SEGMENTS + 1];
};

static void fail(char *err, size_t errlen, const char *fmt, ...) OP_PRINTF(3, 4);
static void fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool is_pchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != 0 && strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

static bool is_name_char(unsigned char c, bool first)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
		return true;
	return !first && c >= '0' && c <= '9';
}

void op_http_route_free(struct op_http_route *r)
{
	if (r == NULL)
		return;
	for (int i = 0; i < r->nseg; i++)
		op_free(r->seg[i].text);
	op_free(r->tmpl);
	op_free(r);
}

const char *op_http_route_template(const struct op_http_route *r)
{
	return r->tmpl;
}

static op_err compile_seg(struct op_http_route *r, const char *s, size_t len, size_t pos, bool last,
                          char *err, size_t errlen)
{
	struct seg *g = &r->seg[r->nseg];
	const char *what = r->tmpl;
	if (len > 0 && s[0] == '{') {
		if (s[len - 1] != '}') {
			fail(err, errlen,
			     "template \"%s\": a parameter must be a whole segment "
			     "(\"{name}\") at offset %zu",
			     what, pos);
			return OP_ECONFIG;
		}
		size_t nlen = len - 2;
		bool wild = nlen > 0 && s[len - 2] == '*';
		if (wild)
			nlen--;
		if (nlen == 0 || nlen > OP_HTTP_ROUTE_MAX_NAME) {
			fail(err, errlen,
			     "template \"%s\": parameter name at offset %zu must be 1 to %d "
			     "characters",
			     what, pos, OP_HTTP_ROUTE_MAX_NAME);
			return OP_ECONFIG;
		}
		for (size_t i = 0; i < nlen; i++) {
			if (!is_name_char((unsigned char)s[1 + i], i == 0)) {
				fail(err, errlen,
				     "template \"%s\": bad character '%c' in parameter name "
				     "at offset %zu (use letters, digits, '_')",
				     what, s[1 + i], pos + 1 + i);
				return OP_ECONFIG;
			}
		}
		if (wild && !last) {
			fail(err, errlen,
			     "template \"%s\": wildcard {%.*s*} must be the last segment", what,
			     (int)nlen, s + 1);
			return OP_ECONFIG;
		}
		for (int i = 0; i < r->nseg; i++) {
			if (r->seg[i].kind != SEG_LIT && r->seg[i].len == nlen &&
			    memcmp(r->seg[i].text, s + 1, nlen) == 0) {
				fail(err, errlen,
				     "template \"%s\": duplicate parameter name \"%.*s\"", what,
				     (int)nlen, s + 1);
				return OP_ECONFIG;
			}
		}
		g->kind = wild ? SEG_WILD : SEG_PARAM;
		g->text = op_strndup(s + 1, nlen);
		g->len = nlen;
		r->wild = wild;
	} else {
		if (len == 0) {
			fail(err, errlen, "template \"%s\": empty segment at offset %zu", what,
			     pos);
			return OP_ECONFIG;
		}
		for (size_t i = 0; i < len; i++) {
			if (!is_pchar((unsigned char)s[i])) {
				fail(err, errlen,
				     "template \"%s\": character '%c' at offset %zu is not "
				     "allowed in a literal segment",
				     what, s[i], pos + i);
				return OP_ECONFIG;
			}
		}
		g->kind = SEG_LIT;
		g->text = op_strndup(s, len);
		g->len = len;
	}
	if (g->text == NULL)
		return OP_ENOMEM;
	r->nseg++;
	return OP_OK;
}

op_err op_http_route_compile(const char *tmpl, struct op_http_route **out, char *err, size_t errlen)
{
	op_err e = OP_OK;
	struct op_http_route *r = NULL;
	*out = NULL;
	if (tmpl == NULL || tmpl[0] != '/') {
		fail(err, errlen, "template \"%s\" must start with '/'", tmpl ? tmpl : "(null)");
		return OP_ECONFIG;
	}
	r = op_calloc(1, sizeof(*r));
	if (r == NULL)
		return OP_ENOMEM;
	r->tmpl = op_strdup(tmpl);
	if (r->tmpl == NULL) {
		e = OP_ENOMEM;
		goto out;
	}
	if (strcmp(tmpl, "/") == 0)
		goto out; /* the root: zero segments, matches "/" only */
	const char *p = tmpl + 1;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (r->nseg == OP_HTTP_ROUTE_MAX_SEGMENTS) {
			fail(err, errlen, "template \"%s\" has more than %d segments", tmpl,
			     OP_HTTP_ROUTE_MAX_SEGMENTS);
			e = OP_ECONFIG;
			goto out;
		}
		e = compile_seg(r, p, len, (size_t)(p - tmpl), slash == NULL, err, errlen);
		if (e != OP_OK)
			goto out;
		if (slash == NULL)
			break;
		p = slash + 1;
	}
out:
	if (e != OP_OK) {
		op_http_route_free(r);
		return e;
	}
	*out = r;
	return OP_OK;
}

static void split_fini(struct split *sp)
{
	op_free(sp->dec);
	sp->dec = NULL;
}

/* Splits and decodes path. "/" has zero segments; "/a/" has "a" and "". */
static op_err split_path(const char *path, struct split *sp)
{
	memset(sp, 0, sizeof(*sp));
	if (path == NULL || path[0] != '/')
		return OP_EINVAL;
	size_t plen = strlen(path);
	sp->dec = op_malloc(plen + 1);
	if (sp->dec == NULL)
		return OP_ENOMEM;
	sp->dec[0] = '\0';
	if (plen == 1)
		return OP_OK;
	size_t o = 0;
	const char *p = path + 1;
	for (;;) {
		if (sp->n == OP_HTTP_ROUTE_MAX_SEGMENTS + 1)
			goto bad; /* one more than any template can hold */
		if (sp->n > 0)
			sp->dec[o++] = '/';
		sp->off[sp->n] = o;
		while (*p != '\0' && *p != '/') {
			unsigned char c = (unsigned char)*p;
			if (c == '%') {
				int hi = op_hex_value((unsigned char)p[1]);
				int lo = hi < 0 ? -1 : op_hex_value((unsigned char)p[2]);
				if (lo < 0)
					goto bad;
				c = (unsigned char)(hi * 16 + lo);
				if (c == '/' || c == '\0')
					goto bad;
				p += 3;
			} else {
				p++;
			}
			sp->dec[o++] = (char)c;
		}
		sp->len[sp->n] = o - sp->off[sp->n];
		sp->n++;
		if (*p == '\0')
			break;
		p++;
	}
	sp->dec[o] = '\0';
	return OP_OK;
bad:
	split_fini(sp);
	return OP_EINVAL;
}

static bool route_matches(const struct op_http_route *r, const struct split *sp)
{
	int fixed = r->wild ? r->nseg - 1 : r->nseg;
	if (r->wild ? sp->n < fixed : sp->n != fixed)
		return false;
	for (int i = 0; i < fixed; i++) {
		const struct seg *g = &r->seg[i];
		if (g->kind == SEG_LIT) {
			if (g->len != sp->len[i] ||
			    memcmp(g->text, sp->dec + sp->off[i], g->len) != 0)
				return false;
		} else if (sp->len[i] == 0) {
			return false; /* a parameter is never empty */
		}
	}
	return true;
}

static op_err make_params(const struct op_http_route *r, const struct split *sp, cJSON **out)
{
	*out = NULL;
	cJSON *o = cJSON_CreateObject();
	if (o == NULL)
		return OP_ENOMEM;
	for (int i = 0; i < r->nseg; i++) {
		const struct seg *g = &r->seg[i];
		if (g->kind == SEG_LIT)
			continue;
		size_t off, len;
		if (g->kind == SEG_WILD) {
			off = i < sp->n ? sp->off[i] : 0;
			len = i < sp->n ? strlen(sp->dec + off) : 0;
		} else {
			off = sp->off[i];
			len = sp->len[i];
		}
		char *v = op_strndup(sp->dec + off, len);
		cJSON *s = v ? cJSON_CreateString(v) : NULL;
		op_free(v);
		if (s == NULL || !cJSON_AddItemToObject(o, g->text, s)) {
			cJSON_Delete(s);
			cJSON_Delete(o);
			return OP_ENOMEM;
		}
	}
	*out = o;
	return OP_OK;
}

op_err op_http_route_match(const struct op_http_route *r, const char *path, cJSON **params)
{
	struct split sp;
	if (params != NULL)
		*params = NULL;
	op_err e = split_path(path, &sp);
	if (e != OP_OK)
		return e;
	if (!route_matches(r, &sp))
		e = OP_ENOTFOUND;
	else if (params != NULL)
		e = make_params(r, &sp, params);
	split_fini(&sp);
	return e;
}

/*
 * <0 when a is more specific than b, >0 when b is, 0 when they have the same
 * shape. At the first differing segment kind the lower kind wins; when one
 * shape is a prefix of the other, the one without a wildcard wins.
 */
static int specificity_cmp(const struct op_http_route *a, const struct op_http_route *b)
{
	int n = a->nseg < b->nseg ? a->nseg : b->nseg;
	for (int i = 0; i < n; i++) {
		if (a->seg[i].kind != b->seg[i].kind)
			return (int)a->seg[i].kind - (int)b->seg[i].kind;
	}
	if (a->nseg == b->nseg)
		return 0;
	if (a->wild != b->wild)
		return a->wild ? 1 : -1;
	return a->nseg > b->nseg ? -1 : 1;
}

static bool same_shape(const struct op_http_route *a, const struct op_http_route *b)
{
	if (a->nseg != b->nseg)
		return false;
	for (int i = 0; i < a->nseg; i++) {
		if (a->seg[i].kind != b->seg[i].kind)
			return false;
		if (a->seg[i].kind == SEG_LIT &&
		    (a->seg[i].len != b->seg[i].len ||
		     memcmp(a->seg[i].text, b->seg[i].text, a->seg[i].len) != 0))
			return false;
	}
	return true;
}

struct op_http_router *op_http_router_new(void)
{
	return op_calloc(1, sizeof(struct op_http_router));
}

void op_http_router_free(struct op_http_router *rt)
{
	if (rt == NULL)
		return;
	for (size_t i = 0; i < rt->n; i++)
		op_http_route_free(rt->v[i].route);
	op_free(rt->v);
	op_free(rt);
}

static bool valid_method(const char *m)
{
	if (strcmp(m, "*") == 0)
		return true;
	size_t n = strlen(m);
	if (n == 0 || n >= sizeof(((struct entry *)0)->method))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (m[i] < 'A' || m[i] > 'Z')
			return false;
	}
	return true;
}

op_err op_http_router_add(struct op_http_router *rt, const char *method, const char *tmpl,
                          void *target, char *err, size_t errlen)
{
	struct op_http_route *r = NULL;
	if (method == NULL || !valid_method(method)) {
		fail(err, errlen, "route %s: method \"%s\" must be an upper-case token or \"*\"",
		     tmpl ? tmpl : "(null)", method ? method : "(null)");
		return OP_ECONFIG;
	}
	op_err e = op_http_route_compile(tmpl, &r, err, errlen);
	if (e != OP_OK)
		return e;
	for (size_t i = 0; i < rt->n; i++) {
		if (strcmp(rt->v[i].method, method) == 0 && same_shape(rt->v[i].route, r)) {
			fail(err, errlen, "route %s %s conflicts with %s %s", method, tmpl,
			     rt->v[i].method, rt->v[i].route->tmpl);
			op_http_route_free(r);
			return OP_ECONFIG;
		}
	}
	if (rt->n == rt->cap) {
		size_t cap = rt->cap ? rt->cap * 2 : 8;
		struct entry *v = op_realloc(rt->v, cap * sizeof(*v));
		if (v == NULL) {
			op_http_route_free(r);
			return OP_ENOMEM;
		}
		rt->v = v;
		rt->cap = cap;
	}
	struct entry *en = &rt->v[rt->n++];
	snprintf(en->method, sizeof(en->method), "%s", method);
	en->route = r;
	en->target = target;
	return OP_OK;
}

static bool method_ok(const char *route_m, const char *m)
{
	return strcmp(route_m, "*") == 0 || strcmp(route_m, m) == 0 ||
	       (strcmp(m, "HEAD") == 0 && strcmp(route_m, "GET") == 0);
}

static void allow_add(char *allow, size_t cap, const char *m)
{
	size_t ml = strlen(m), al = strlen(allow);
	for (const char *p = allow; *p != '\0';) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if (l == ml && memcmp(p, m, ml) == 0)
			return;
		p = c ? c + 2 : p + l;
	}
	if (al + ml + 3 > cap)
		return; /* the header lists what fits; 16-byte methods, 128 bytes */
	snprintf(allow + al, cap - al, "%s%s", al ? ", " : "", m);
}

op_err op_http_router_match(const struct op_http_router *rt, const char *method, const char *path,
                            struct op_http_match *m)
{
	struct split sp;
	memset(m, 0, sizeof(*m));
	op_err e = split_path(path, &sp);
	if (e != OP_OK)
		return e;
	const struct entry *best = NULL;
	bool path_seen = false;
	for (size_t i = 0; i < rt->n; i++) {
		const struct entry *en = &rt->v[i];
		if (!route_matches(en->route, &sp))
			continue;
		path_seen = true;
		if (!method_ok(en->method, method)) {
			allow_add(m->allow, sizeof(m->allow), en->method);
			if (strcmp(en->method, "GET") == 0)
				allow_add(m->allow, sizeof(m->allow), "HEAD");
			continue;
		}
		if (best == NULL) {
			best = en;
			continue;
		}
		int c = specificity_cmp(en->route, best->route);
		/* Same shape: an exact method beats "*" (and GET serving HEAD). */
		if (c < 0 || (c == 0 && strcmp(en->method, method) == 0 &&
		              strcmp(best->method, method) != 0))
			best = en;
	}
	if (best == NULL) {
		e = path_seen ? OP_EUNSUPPORTED : OP_ENOTFOUND;
		if (e == OP_ENOTFOUND)
			m->allow[0] = '\0';
		goto out;
	}
	m->allow[0] = '\0';
	e = make_params(best->route, &sp, &m->params);
	if (e != OP_OK)
		goto out;
	m->target = best->target;
	m->tmpl = best->route->tmpl;
out:
	split_fini(&sp);
	return e;
}

void op_http_match_fini(struct op_http_match *m)
{
	cJSON_Delete(m->params);
	m->params = NULL;
}
