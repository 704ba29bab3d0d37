/*
 * Reference resolution for schema compilation: RFC 3986 reference
 * resolution against a base URI, percent-decoding and JSON Pointer
 * fragments, $anchor lookup, and loading of documents a $ref names (those
 * the caller supplied, then the built-in metaschemas). Invariant: a
 * document is looked for only among those two sets, so a schema can never
 * make the agent fetch anything; a URI found in neither is a compile error.
 */
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/b64.h"
#include "agent/core/buf.h"
#include "connectors/validate/schema_int.h"

#define URI_MAX ((size_t)64 * 1024)

struct uri {
	const char *scheme, *auth, *path, *query, *frag;
	size_t scheme_len, auth_len, path_len, query_len, frag_len;
	bool has_scheme, has_auth, has_query, has_frag;
};

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static void uri_parse(const char *s, struct uri *u)
{
	const char *p = s;
	memset(u, 0, sizeof(*u));
	if (is_alpha(*p)) {
		const char *q = p + 1;
		while (is_alpha(*q) || is_digit(*q) || *q == '+' || *q == '-' || *q == '.')
			q++;
		if (*q == ':') {
			u->has_scheme = true;
			u->scheme = p;
			u->scheme_len = (size_t)(q - p);
			p = q + 1;
		}
	}
	if (p[0] == '/' && p[1] == '/') {
		p += 2;
		u->has_auth = true;
		u->auth = p;
		while (*p && *p != '/' && *p != '?' && *p != '#')
			p++;
		u->auth_len = (size_t)(p - u->auth);
	}
	u->path = p;
	while (*p && *p != '?' && *p != '#')
		p++;
	u->path_len = (size_t)(p - u->path);
	if (*p == '?') {
		u->has_query = true;
		u->query = ++p;
		while (*p && *p != '#')
			p++;
		u->query_len = (size_t)(p - u->query);
	}
	if (*p == '#') {
		u->has_frag = true;
		u->frag = ++p;
		u->frag_len = strlen(p);
	}
}

/* Drops the last segment of out[start..] and the "/" before it. */
static void pop_segment(struct op_buf *out, size_t start)
{
	size_t i = out->len;
	while (i > start && out->data[i - 1] != '/')
		i--;
	if (i > start)
		i--;
	out->len = i;
	if (out->data != NULL)
		out->data[i] = '\0';
}

/* RFC 3986 section 5.2.4, appending the result to out. */
static op_err remove_dots(struct op_buf *out, const char *in, size_t n)
{
	size_t start = out->len, i = 0;
	op_err e = OP_OK;
	while (i < n && !e) {
		const char *r = in + i;
		size_t m = n - i;
		/* One branch per case of steps 2A-2E, in the RFC's order. */
		if (m >= 3 && memcmp(r, "../", 3) == 0) {
			i += 3;
			// NOLINTNEXTLINE(bugprone-branch-clone): 2A "./" and 2B "/./" stay apart
		} else if (m >= 2 && memcmp(r, "./", 2) == 0) {
			i += 2;
		} else if (m >= 3 && memcmp(r, "/./", 3) == 0) {
			i += 2; /* leaves the "/" in place of "/./" */
		} else if (m == 2 && memcmp(r, "/.", 2) == 0) {
			e = op_buf_addc(out, '/');
			i = n;
		} else if (m >= 4 && memcmp(r, "/../", 4) == 0) {
			pop_segment(out, start);
			i += 3;
		} else if (m == 3 && memcmp(r, "/..", 3) == 0) {
			pop_segment(out, start);
			e = op_buf_addc(out, '/');
			i = n;
		} else if ((m == 1 && r[0] == '.') || (m == 2 && memcmp(r, "..", 2) == 0)) {
			i = n;
		} else {
			size_t j = r[0] == '/' ? 1 : 0;
			while (j < m && r[j] != '/')
				j++;
			e = op_buf_add(out, r, j);
			i += j;
		}
	}
	return e;
}

static op_err resolve_into(struct op_buf *b, const char *base, const char *ref)
{
	struct uri bu, r;
	op_err e = OP_OK;
	uri_parse(base, &bu);
	uri_parse(ref, &r);

	const struct uri *sch = r.has_scheme ? &r : &bu;
	if (sch->has_scheme) {
		e = op_buf_add(b, sch->scheme, sch->scheme_len);
		if (!e)
			e = op_buf_addc(b, ':');
	}
	if (e)
		return e;
	if (r.has_scheme || r.has_auth) {
		if (r.has_auth) {
			if (!(e = op_buf_adds(b, "//")))
				e = op_buf_add(b, r.auth, r.auth_len);
		}
		if (!e)
			e = remove_dots(b, r.path, r.path_len);
		if (!e && r.has_query && !(e = op_buf_addc(b, '?')))
			e = op_buf_add(b, r.query, r.query_len);
	} else {
		if (bu.has_auth) {
			if (!(e = op_buf_adds(b, "//")))
				e = op_buf_add(b, bu.auth, bu.auth_len);
		}
		if (e)
			return e;
		if (r.path_len == 0) {
			e = op_buf_add(b, bu.path, bu.path_len);
			const struct uri *q = r.has_query ? &r : &bu;
			if (!e && q->has_query && !(e = op_buf_addc(b, '?')))
				e = op_buf_add(b, q->query, q->query_len);
		} else {
			if (r.path[0] == '/') {
				e = remove_dots(b, r.path, r.path_len);
			} else {
				struct op_buf m;
				op_buf_init(&m, URI_MAX);
				if (bu.has_auth && bu.path_len == 0) {
					e = op_buf_addc(&m, '/');
				} else {
					size_t k = bu.path_len;
					while (k > 0 && bu.path[k - 1] != '/')
						k--;
					e = op_buf_add(&m, bu.path, k);
				}
				if (!e)
					e = op_buf_add(&m, r.path, r.path_len);
				if (!e)
					e = remove_dots(b, op_buf_str(&m), m.len);
				op_buf_fini(&m);
			}
			if (!e && r.has_query && !(e = op_buf_addc(b, '?')))
				e = op_buf_add(b, r.query, r.query_len);
		}
	}
	if (!e && r.has_frag && !(e = op_buf_addc(b, '#')))
		e = op_buf_add(b, r.frag, r.frag_len);
	return e;
}

op_err op_schema__uri_resolve(struct op_schema *s, const char *base, const char *ref, char **out)
{
	struct op_buf b;
	op_buf_init(&b, URI_MAX);
	*out = NULL;
	op_err e = resolve_into(&b, base, ref);
	if (e == OP_ELIMIT)
		e = OP_ECONFIG;
	if (!e) {
		*out = op_schema__strndup(s, op_buf_str(&b), b.len);
		if (*out == NULL)
			e = OP_ENOMEM;
	}
	op_buf_fini(&b);
	return e;
}

/* Decodes %XX in place; false on a malformed escape or an encoded NUL. */
static bool percent_decode(char *s)
{
	char *w = s;
	for (const char *r = s; *r; r++) {
		if (*r != '%') {
			*w++ = *r;
			continue;
		}
		int hi = op_hex_value(r[1]), lo = hi < 0 ? -1 : op_hex_value(r[2]);
		if (lo < 0 || (hi == 0 && lo == 0))
			return false;
		*w++ = (char)(hi * 16 + lo);
		r += 2;
	}
	*w = '\0';
	return true;
}

/* Loads the document named by uri, if the caller or the built-in set has
 * it, into memory the schema owns. *out is NULL when nobody has it. */
static op_err load_doc(struct op_schema__cc *cc, const char *uri, cJSON **out)
{
	const struct op_schema_opts *o = cc->opts;
	size_t n = strlen(uri);
	cJSON *j = NULL;
	*out = NULL;
	for (size_t i = 0; i < o->ndocs && j == NULL; i++) {
		const char *u = o->docs[i].uri;
		size_t k = u != NULL ? strlen(u) : 0;
		if (k > 0 && u[k - 1] == '#')
			k--;
		if (u == NULL || k != n || memcmp(u, uri, n) != 0 || o->docs[i].json == NULL)
			continue;
		j = cJSON_Duplicate(o->docs[i].json, 1);
		if (j == NULL)
			return OP_ENOMEM;
	}
	if (j == NULL) {
		const char *text = op_schema__meta_text(uri);
		if (text == NULL)
			return OP_OK;
		j = cJSON_Parse(text);
		if (j == NULL)
			return OP_ENOMEM; /* the built-in texts are known to parse */
	}
	struct op_schema__doclist *dl = op_schema__alloc(cc->s, sizeof(*dl));
	if (dl == NULL) {
		cJSON_Delete(j);
		return OP_ENOMEM;
	}
	dl->json = j;
	dl->next = cc->s->docs;
	cc->s->docs = dl;
	*out = j;
	return OP_OK;
}

static op_err index_doc(struct op_schema__cc *cc, struct op_schema__node *from, const char *kw,
                        const char *uri, const cJSON *doc)
{
	struct op_schema__node *root;
	int draft = from->draft;
	const cJSON *sc =
	    cJSON_IsObject(doc) ? cJSON_GetObjectItemCaseSensitive(doc, "$schema") : NULL;
	const char *dialect = cJSON_GetStringValue(sc); /* NULL unless a string */
	if (dialect != NULL) {
		int d = op_schema__dialect(dialect);
		if (d == 0)
			return op_schema__fail(cc, from, kw,
			                       "document %s has an unsupported $schema \"%s\"", uri,
			                       dialect);
		draft = d;
	}
	size_t n = strlen(uri);
	char *base = op_schema__strndup(cc->s, uri, n);
	char *loc = op_schema__alloc(cc->s, n + 2);
	if (base == NULL || loc == NULL)
		return OP_ENOMEM;
	snprintf(loc, n + 2, "%s#", uri);
	return op_schema__index(cc, doc, base, NULL, loc, draft, OP_SCHEMA__V_ALL, &root);
}

/* Steps from cur into token tok (unescaped); NULL when there is no such member. */
static const cJSON *step(const cJSON *cur, const char *tok)
{
	if (cJSON_IsObject(cur))
		return cJSON_GetObjectItemCaseSensitive(cur, tok);
	if (!cJSON_IsArray(cur) || !is_digit(tok[0]) || (tok[0] == '0' && tok[1] != '\0'))
		return NULL;
	long idx = 0;
	for (const char *d = tok; *d; d++) {
		if (!is_digit(*d) || idx > 100000000)
			return NULL;
		idx = idx * 10 + (*d - '0');
	}
	return cJSON_GetArrayItem(cur, (int)idx);
}

/* Follows a JSON Pointer (already percent-decoded) from resource r. */
static op_err follow_pointer(struct op_schema__cc *cc, struct op_schema__node *from, const char *kw,
                             const char *ref, struct op_schema__node *r, const char *ptr,
                             struct op_schema__node **out)
{
	const cJSON *cur = r->json;
	struct op_schema__node *last = r;
	char *work = op_strdup(ptr);
	op_err e = OP_OK;
	if (work == NULL)
		return OP_ENOMEM;
	for (char *p = work; *p == '/' && !e;) {
		char *tok = ++p, *w = p;
		while (*p && *p != '/') {
			if (*p == '~' && p[1] != '0' && p[1] != '1') {
				e = op_schema__fail(cc, from, kw, "invalid JSON Pointer in \"%s\"",
				                    ref);
				break;
			}
			if (*p == '~') {
				*w++ = p[1] == '0' ? '~' : '/';
				p += 2;
			} else {
				*w++ = *p++;
			}
		}
		if (e)
			break;
		char saved = *p;
		*w = '\0';
		cur = step(cur, tok);
		if (cur == NULL) {
			e = op_schema__fail(cc, from, kw, "cannot resolve \"%s\": no such location",
			                    ref);
			break;
		}
		struct op_schema__node *known = op_schema__pmap_get(&cc->nodes, cur);
		if (known != NULL)
			last = known;
		*p = saved;
	}
	op_free(work);
	if (e)
		return e;
	struct op_schema__node *t = op_schema__pmap_get(&cc->nodes, cur);
	if (t != NULL) {
		*out = t;
		return OP_OK;
	}
	/* A location no walk reached (inside an unknown keyword, beside a
	 * draft-07 $ref): it becomes a schema now, in the scope of the
	 * deepest known schema above it. */
	size_t rl = strlen(r->loc), pl = strlen(ptr);
	char *loc = op_schema__alloc(cc->s, rl + pl + 1);
	if (loc == NULL)
		return OP_ENOMEM;
	memcpy(loc, r->loc, rl);
	memcpy(loc + rl, ptr, pl + 1);
	return op_schema__index(cc, cur, last->base, last->res, loc, last->draft, last->vocab, out);
}

op_err op_schema__resolve(struct op_schema__cc *cc, struct op_schema__node *n, const char *kw,
                          const char *ref, struct op_schema__node **out, const char **anchor)
{
	struct op_schema *s = cc->s;
	char *abs = NULL;
	op_err e;

	*out = NULL;
	*anchor = NULL;
	if ((e = op_schema__uri_resolve(s, n->base, ref, &abs)))
		return e == OP_ECONFIG ? op_schema__fail(cc, n, kw, "invalid URI \"%s\"", ref) : e;
	char *frag = strchr(abs, '#');
	if (frag != NULL) {
		*frag++ = '\0';
		if (!percent_decode(frag))
			return op_schema__fail(cc, n, kw, "invalid percent-encoding in \"%s\"",
			                       ref);
	}
	struct op_schema__node *r = op_schema__smap_get(&cc->resources, abs);
	if (r == NULL) {
		cJSON *doc;
		if ((e = load_doc(cc, abs, &doc)))
			return e;
		if (doc != NULL && (e = index_doc(cc, n, kw, abs, doc)))
			return e;
		r = op_schema__smap_get(&cc->resources, abs);
	}
	if (r == NULL)
		return op_schema__fail(cc, n, kw, "cannot resolve \"%s\" (unknown document %s)",
		                       ref, abs);
	if (frag == NULL || *frag == '\0') {
		*out = r;
		return OP_OK;
	}
	if (*frag == '/')
		return follow_pointer(cc, n, kw, ref, r, frag, out);
	/* A plain name: an $anchor, $dynamicAnchor or draft-07 "#name" $id. */
	frag[-1] = '#';
	r = op_schema__smap_get(&cc->anchors, abs);
	if (r == NULL)
		return op_schema__fail(cc, n, kw, "cannot resolve \"%s\": no such anchor", ref);
	*out = r;
	*anchor = frag;
	return OP_OK;
}
