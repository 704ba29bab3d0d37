/*
 * Schema compilation, the driver: copies the schema into memory the compiled
 * schema owns, picks the dialect and vocabularies from $schema, walks the
 * document once to create a node for every subschema and record every $id,
 * $anchor and $dynamicAnchor (so that forward and cyclic $refs resolve), then
 * compiles the queued nodes one by one (schema_keyword.c), and finally
 * refuses $ref cycles that could never stop. Invariant: every node reachable
 * from the root is compiled before op_schema_compile_opts() returns OK, and
 * on any error nothing of the half-built schema survives.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "connectors/validate/schema_int.h"

/* Base URI of a root schema without $id; never shown to users. */
#define DEFAULT_BASE "outpost-schema:///root.json"
#define CHUNK_SIZE   4096

struct op_schema__chunk {
	struct op_schema__chunk *next;
	size_t used, cap;
	max_align_t data[];
};

void *op_schema__alloc(struct op_schema *s, size_t n)
{
	const size_t align = sizeof(max_align_t);
	n = (n + align - 1) / align * align;
	if (n == 0)
		n = align;
	struct op_schema__chunk *c = s->chunks;
	if (c != NULL && c->cap - c->used >= n) {
		void *p = (char *)c->data + c->used;
		c->used += n;
		return p;
	}
	size_t cap = n > CHUNK_SIZE / 4 ? n : CHUNK_SIZE;
	struct op_schema__chunk *nc = op_calloc(1, sizeof(*nc) + cap);
	if (nc == NULL)
		return NULL;
	nc->cap = cap;
	nc->used = n;
	if (c != NULL && cap == n) {
		/* A large block gets its own chunk; the current one keeps filling. */
		nc->next = c->next;
		c->next = nc;
	} else {
		nc->next = c;
		s->chunks = nc;
	}
	return nc->data;
}

char *op_schema__strndup(struct op_schema *s, const char *p, size_t n)
{
	char *d = op_schema__alloc(s, n + 1);
	if (d != NULL) {
		memcpy(d, p, n);
		d[n] = '\0';
	}
	return d;
}

op_err op_schema__fail(struct op_schema__cc *cc, const struct op_schema__node *n, const char *kw,
                       const char *fmt, ...)
{
	if (cc->err == NULL || cc->errlen == 0 || cc->err[0] != '\0')
		return OP_ECONFIG;
	int k = snprintf(cc->err, cc->errlen, "%s%s%s: ", n != NULL ? n->loc : "#",
	                 kw != NULL ? "/" : "", kw != NULL ? kw : "");
	if (k >= 0 && (size_t)k < cc->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(cc->err + k, cc->errlen - (size_t)k, fmt, ap);
		va_end(ap);
	}
	return OP_ECONFIG;
}

op_err op_schema__oom(struct op_schema__cc *cc, op_err e)
{
	if (cc->err != NULL && cc->errlen > 0 && cc->err[0] == '\0')
		snprintf(cc->err, cc->errlen, "%s", op_err_str(e));
	return e;
}

/* ---- maps: open addressing, linear probing, at most half full ---- */

static size_t hash_ptr(const void *p)
{
	uint64_t x = (uint64_t)(uintptr_t)p;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (size_t)x;
}

static size_t hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return (size_t)h;
}

struct op_schema__node *op_schema__pmap_get(const struct op_schema__pmap *m, const void *key)
{
	if (m->cap == 0)
		return NULL;
	for (size_t i = hash_ptr(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (m->v[i].key == NULL)
			return NULL;
		if (m->v[i].key == key)
			return m->v[i].node;
	}
}

op_err op_schema__pmap_put(struct op_schema__pmap *m, const void *key, struct op_schema__node *node)
{
	if ((m->n + 1) * 2 > m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 64;
		struct op_schema__pmap_ent *nv = op_calloc(ncap, sizeof(*nv));
		if (nv == NULL)
			return OP_ENOMEM;
		for (size_t i = 0; i < m->cap; i++) {
			if (m->v[i].key == NULL)
				continue;
			size_t j = hash_ptr(m->v[i].key) & (ncap - 1);
			while (nv[j].key != NULL)
				j = (j + 1) & (ncap - 1);
			nv[j] = m->v[i];
		}
		op_free(m->v);
		m->v = nv;
		m->cap = ncap;
	}
	size_t i = hash_ptr(key) & (m->cap - 1);
	while (m->v[i].key != NULL && m->v[i].key != key)
		i = (i + 1) & (m->cap - 1);
	if (m->v[i].key == NULL)
		m->n++;
	m->v[i].key = key;
	m->v[i].node = node;
	return OP_OK;
}

void *op_schema__smap_get(const struct op_schema__smap *m, const char *key)
{
	if (m->cap == 0)
		return NULL;
	for (size_t i = hash_str(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (m->v[i].key == NULL)
			return NULL;
		if (strcmp(m->v[i].key, key) == 0)
			return m->v[i].val;
	}
}

op_err op_schema__smap_put(struct op_schema__smap *m, const char *key, void *val)
{
	if ((m->n + 1) * 2 > m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 32;
		struct op_schema__smap_ent *nv = op_calloc(ncap, sizeof(*nv));
		if (nv == NULL)
			return OP_ENOMEM;
		for (size_t i = 0; i < m->cap; i++) {
			if (m->v[i].key == NULL)
				continue;
			size_t j = hash_str(m->v[i].key) & (ncap - 1);
			while (nv[j].key != NULL)
				j = (j + 1) & (ncap - 1);
			nv[j] = m->v[i];
		}
		op_free(m->v);
		m->v = nv;
		m->cap = ncap;
	}
	size_t i = hash_str(key) & (m->cap - 1);
	while (m->v[i].key != NULL && strcmp(m->v[i].key, key) != 0)
		i = (i + 1) & (m->cap - 1);
	if (m->v[i].key == NULL)
		m->n++;
	m->v[i].key = key;
	m->v[i].val = val;
	return OP_OK;
}

void op_schema__maps_fini(struct op_schema__cc *cc)
{
	op_free(cc->nodes.v);
	op_free(cc->resources.v);
	op_free(cc->anchors.v);
	op_free(cc->work);
	memset(&cc->nodes, 0, sizeof(cc->nodes));
	memset(&cc->resources, 0, sizeof(cc->resources));
	memset(&cc->anchors, 0, sizeof(cc->anchors));
	cc->work = NULL;
	cc->nwork = cc->capwork = 0;
}

/* ---- the indexing walk ---- */

/* "parent/kw[/key]" with key escaped as a JSON Pointer token. */
static char *child_loc(struct op_schema *s, const char *parent, const char *kw, const char *key,
                       long idx)
{
	struct op_buf b;
	op_buf_init(&b, (size_t)1 << 20);
	op_err e = op_buf_adds(&b, parent);
	if (!e)
		e = op_buf_addc(&b, '/');
	for (const char *p = kw; !e && *p; p++)
		e = *p == '~'   ? op_buf_adds(&b, "~0")
		    : *p == '/' ? op_buf_adds(&b, "~1")
		                : op_buf_addc(&b, *p);
	if (!e && key != NULL) {
		e = op_buf_addc(&b, '/');
		for (const char *p = key; !e && *p; p++)
			e = *p == '~'   ? op_buf_adds(&b, "~0")
			    : *p == '/' ? op_buf_adds(&b, "~1")
			                : op_buf_addc(&b, *p);
	} else if (!e && idx >= 0) {
		e = op_buf_addf(&b, "/%ld", idx);
	}
	char *r = e ? NULL : op_schema__strndup(s, op_buf_str(&b), b.len);
	op_buf_fini(&b);
	return r;
}

static op_err enqueue(struct op_schema__cc *cc, struct op_schema__node *n)
{
	if (cc->nwork == cc->capwork) {
		size_t ncap = cc->capwork ? cc->capwork * 2 : 64;
		struct op_schema__node **nw = op_realloc(cc->work, ncap * sizeof(*nw));
		if (nw == NULL)
			return OP_ENOMEM;
		cc->work = nw;
		cc->capwork = ncap;
	}
	cc->work[cc->nwork++] = n;
	n->state = 1;
	return OP_OK;
}

static op_err add_anchor(struct op_schema__cc *cc, struct op_schema__node *n, const char *kw,
                         const char *base, const char *name, bool dynamic)
{
	struct op_schema *s = cc->s;
	size_t bl = strlen(base), nl = strlen(name);
	char *key = op_schema__alloc(s, bl + nl + 2);
	if (key == NULL)
		return OP_ENOMEM;
	snprintf(key, bl + nl + 2, "%s#%s", base, name);
	struct op_schema__node *old = op_schema__smap_get(&cc->anchors, key);
	if (old != NULL && old != n)
		return op_schema__fail(cc, n, kw, "duplicate anchor \"%s\" in %s", name, base);
	if (old == NULL && op_schema__smap_put(&cc->anchors, key, n))
		return OP_ENOMEM;
	if (dynamic) {
		struct op_schema__dyn *d = op_schema__alloc(s, sizeof(*d));
		if (d == NULL)
			return OP_ENOMEM;
		d->name = key + bl + 1;
		d->node = n;
		d->next = n->res->dyn;
		n->res->dyn = d;
	}
	return OP_OK;
}

static bool anchor_name_ok(const char *p)
{
	/* ^[A-Za-z_][-A-Za-z0-9._]*$ as both metaschemas say. */
	if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_'))
		return false;
	for (p++; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
			return false;
	return true;
}

static op_err add_resource(struct op_schema__cc *cc, struct op_schema__node *n, const char *uri)
{
	struct op_schema__node *old = op_schema__smap_get(&cc->resources, uri);
	if (old == n)
		return OP_OK;
	if (old != NULL)
		return op_schema__fail(cc, n, "$id", "duplicate schema resource \"%s\"", uri);
	return op_schema__smap_put(&cc->resources, uri, n);
}

/* Applies $id and the anchors of an object schema; sets n->base and n->res. */
static op_err identify(struct op_schema__cc *cc, struct op_schema__node *n, const char *base,
                       struct op_schema__res *res)
{
	struct op_schema *s = cc->s;
	const cJSON *j = n->json;
	const cJSON *ref = cJSON_GetObjectItemCaseSensitive(j, "$ref");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "$id");
	op_err e;
	char *abs = NULL;

	bool doc_root = res == NULL;

	n->base = base;
	if (doc_root) {
		/* A document root: a resource under the URI it was loaded by. */
		res = op_schema__alloc(s, sizeof(*res));
		if (res == NULL)
			return OP_ENOMEM;
		res->uri = base;
		if ((e = add_resource(cc, n, base)))
			return e;
	}
	n->res = res;
	if (id != NULL && !(n->draft == OP_SCHEMA_DRAFT7 && ref != NULL)) {
		if (!cJSON_IsString(id) || id->valuestring == NULL)
			return op_schema__fail(cc, n, "$id", "expected a string");
		if ((e = op_schema__uri_resolve(s, base, id->valuestring, &abs)))
			return e == OP_ECONFIG ? op_schema__fail(cc, n, "$id", "invalid URI") : e;
		char *hash = strchr(abs, '#');
		const char *frag = NULL;
		if (hash != NULL) {
			*hash = '\0';
			frag = hash + 1;
		}
		if (frag != NULL && *frag != '\0' && n->draft != OP_SCHEMA_DRAFT7)
			return op_schema__fail(cc, n, "$id",
			                       "must not have a fragment (use $anchor)");
		if (strcmp(abs, base) != 0) {
			if (doc_root) {
				/* The document root names itself: one resource, two URIs. */
				res->uri = abs;
			} else {
				res = op_schema__alloc(s, sizeof(*res));
				if (res == NULL)
					return OP_ENOMEM;
				res->uri = abs;
				n->res = res;
			}
			if ((e = add_resource(cc, n, abs)))
				return e;
			n->base = abs;
		}
		if (frag != NULL && *frag != '\0') {
			/* draft-07 "#name" ids are location-independent anchors. */
			if (!anchor_name_ok(frag))
				return op_schema__fail(cc, n, "$id", "invalid anchor \"%s\"", frag);
			if ((e = add_anchor(cc, n, "$id", n->base, frag, false)))
				return e;
		}
	}
	if (n->draft != OP_SCHEMA_2020)
		return OP_OK;
	static const char *const kws[2] = {"$anchor", "$dynamicAnchor"};
	for (int i = 0; i < 2; i++) {
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, kws[i]);
		if (a == NULL)
			continue;
		if (!cJSON_IsString(a) || a->valuestring == NULL || !anchor_name_ok(a->valuestring))
			return op_schema__fail(cc, n, kws[i], "expected an anchor name");
		if ((e = add_anchor(cc, n, kws[i], n->base, a->valuestring, i == 1)))
			return e;
	}
	return OP_OK;
}

static bool is_schema_value(const cJSON *v)
{
	return cJSON_IsObject(v) || cJSON_IsBool(v);
}

static op_err walk(struct op_schema__cc *cc, const cJSON *json, const char *base,
                   struct op_schema__res *res, const char *loc, int draft, unsigned vocab,
                   unsigned depth, struct op_schema__node **out);

static op_err walk_child(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                         const char *kw, const char *key, long idx, unsigned depth)
{
	struct op_schema__node *child;
	if (!is_schema_value(v) || op_schema__pmap_get(&cc->nodes, v) != NULL)
		return OP_OK; /* wrong types are reported when n is compiled */
	char *loc = child_loc(cc->s, n->loc, kw, key, idx);
	if (loc == NULL)
		return OP_ENOMEM;
	return walk(cc, v, n->base, n->res, loc, n->draft, n->vocab, depth + 1, &child);
}

static op_err walk(struct op_schema__cc *cc, const cJSON *json, const char *base,
                   struct op_schema__res *res, const char *loc, int draft, unsigned vocab,
                   unsigned depth, struct op_schema__node **out)
{
	struct op_schema__node *n = op_schema__pmap_get(&cc->nodes, json);
	op_err e;

	*out = n;
	if (n != NULL)
		return OP_OK;
	n = op_schema__alloc(cc->s, sizeof(*n));
	if (n == NULL)
		return OP_ENOMEM;
	n->json = json;
	n->loc = loc;
	n->base = base;
	n->res = res;
	n->draft = (uint16_t)draft;
	n->vocab = (uint8_t)vocab;
	if (depth > OP_SCHEMA__MAX_NEST)
		return op_schema__fail(cc, n, NULL, "schema nested deeper than %d levels",
		                       OP_SCHEMA__MAX_NEST);
	if ((e = op_schema__pmap_put(&cc->nodes, json, n)) || (e = enqueue(cc, n)))
		return e;
	*out = n;
	if (!cJSON_IsObject(json)) {
		if (res == NULL) {
			/* A boolean document is still a resource. */
			n->res = op_schema__alloc(cc->s, sizeof(*n->res));
			if (n->res == NULL)
				return OP_ENOMEM;
			n->res->uri = base;
			return add_resource(cc, n, base);
		}
		return OP_OK;
	}
	if ((e = identify(cc, n, base, res)))
		return e;
	if (draft == OP_SCHEMA_DRAFT7 && cJSON_GetObjectItemCaseSensitive(json, "$ref") != NULL)
		return OP_OK; /* draft-07: everything beside $ref is ignored */
	const cJSON *m;
	cJSON_ArrayForEach (m, json) {
		const cJSON *v;
		long i = 0;
		int shape = op_schema__kw_shape(m->string, draft, vocab);
		if (shape == OP_SCHEMA__SUB_ITEMS7)
			shape = cJSON_IsArray(m) ? OP_SCHEMA__SUB_ARRAY : OP_SCHEMA__SUB_ONE;
		switch (shape) {
		case OP_SCHEMA__SUB_ONE:
			e = walk_child(cc, n, m, m->string, NULL, -1, depth);
			break;
		case OP_SCHEMA__SUB_ARRAY:
			if (!cJSON_IsArray(m))
				break;
			cJSON_ArrayForEach (v, m) {
				if ((e = walk_child(cc, n, v, m->string, NULL, i++, depth)))
					break;
			}
			break;
		case OP_SCHEMA__SUB_MAP:
		case OP_SCHEMA__SUB_DEPS7:
			if (!cJSON_IsObject(m))
				break;
			cJSON_ArrayForEach (v, m) {
				if ((e = walk_child(cc, n, v, m->string, v->string, -1, depth)))
					break;
			}
			break;
		default:
			break;
		}
		if (e)
			return e;
	}
	return OP_OK;
}

op_err op_schema__index(struct op_schema__cc *cc, const cJSON *json, const char *base,
                        struct op_schema__res *res, const char *loc, int draft, unsigned vocab,
                        struct op_schema__node **out)
{
	return walk(cc, json, base, res, loc, draft, vocab, 0, out);
}

/* ---- dialect and vocabularies ---- */

int op_schema__dialect(const char *uri)
{
	static const struct {
		const char *uri;
		int draft;
	} known[] = {
	    {"http://json-schema.org/draft-07/schema", OP_SCHEMA_DRAFT7},
	    {"https://json-schema.org/draft-07/schema", OP_SCHEMA_DRAFT7},
	    {"http://json-schema.org/draft-06/schema", OP_SCHEMA_DRAFT7},
	    {"https://json-schema.org/draft-06/schema", OP_SCHEMA_DRAFT7},
	    {"https://json-schema.org/draft/2020-12/schema", OP_SCHEMA_2020},
	    {"http://json-schema.org/draft/2020-12/schema", OP_SCHEMA_2020},
	};
	size_t n = strlen(uri);
	if (n > 0 && uri[n - 1] == '#')
		n--;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strlen(known[i].uri) == n && memcmp(known[i].uri, uri, n) == 0)
			return known[i].draft;
	return 0;
}

static const cJSON *caller_doc(const struct op_schema_opts *o, const char *uri)
{
	size_t n = strlen(uri);
	if (n > 0 && uri[n - 1] == '#')
		n--;
	for (size_t i = 0; i < o->ndocs; i++) {
		const char *u = o->docs[i].uri;
		if (u == NULL)
			continue;
		size_t k = strlen(u);
		if (k > 0 && u[k - 1] == '#')
			k--;
		if (k == n && memcmp(u, uri, n) == 0)
			return o->docs[i].json;
	}
	return NULL;
}

static op_err vocabularies(struct op_schema__cc *cc, const cJSON *voc, unsigned *vocab)
{
	static const struct {
		const char *name;
		unsigned bit;
	} known[] = {
	    {"core", OP_SCHEMA__V_CORE},
	    {"applicator", OP_SCHEMA__V_APPLICATOR},
	    {"unevaluated", OP_SCHEMA__V_UNEVALUATED},
	    {"validation", OP_SCHEMA__V_VALIDATION},
	    {"format-annotation", OP_SCHEMA__V_FORMAT},
	    {"format-assertion", OP_SCHEMA__V_FORMAT_ASSERT},
	    {"meta-data", OP_SCHEMA__V_META},
	    {"content", OP_SCHEMA__V_META},
	};
	static const char prefix[] = "https://json-schema.org/draft/2020-12/vocab/";
	const cJSON *m;
	*vocab = OP_SCHEMA__V_CORE;
	cJSON_ArrayForEach (m, voc) {
		unsigned bit = 0;
		if (strncmp(m->string, prefix, sizeof(prefix) - 1) == 0)
			for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
				if (strcmp(m->string + sizeof(prefix) - 1, known[i].name) == 0)
					bit = known[i].bit;
		if (bit != 0)
			*vocab |= bit;
		else if (cJSON_IsTrue(m))
			return op_schema__fail(cc, NULL, "$schema",
			                       "metaschema requires unsupported vocabulary \"%s\"",
			                       m->string);
	}
	return OP_OK;
}

static op_err pick_dialect(struct op_schema__cc *cc, const cJSON *root, int *draft, unsigned *vocab)
{
	int forced = cc->opts->draft;
	const cJSON *sc =
	    cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "$schema") : NULL;
	*vocab = OP_SCHEMA__V_ALL;
	*draft = forced ? forced : OP_SCHEMA_2020;
	if (sc == NULL)
		return OP_OK;
	if (!cJSON_IsString(sc) || sc->valuestring == NULL)
		return op_schema__fail(cc, NULL, "$schema", "expected a string");
	int d = op_schema__dialect(sc->valuestring);
	if (d != 0) {
		*draft = forced ? forced : d;
		return OP_OK;
	}
	/* A custom metaschema the caller supplied: its own $schema gives the
	 * dialect, its $vocabulary the keywords in force. */
	const cJSON *meta = caller_doc(cc->opts, sc->valuestring);
	const cJSON *msc =
	    cJSON_IsObject(meta) ? cJSON_GetObjectItemCaseSensitive(meta, "$schema") : NULL;
	const char *mdialect = cJSON_GetStringValue(msc); /* NULL unless a string */
	d = mdialect != NULL ? op_schema__dialect(mdialect) : 0;
	if (d == 0) {
		if (forced)
			return OP_OK;
		return op_schema__fail(cc, NULL, "$schema",
		                       "unsupported dialect \"%s\" (supported: draft-07, 2020-12)",
		                       sc->valuestring);
	}
	*draft = forced ? forced : d;
	const cJSON *voc = cJSON_GetObjectItemCaseSensitive(meta, "$vocabulary");
	if (*draft == OP_SCHEMA_2020 && cJSON_IsObject(voc))
		return vocabularies(cc, voc, vocab);
	return OP_OK;
}

/* ---- cycles of in-place applicators ---- */

/* The i-th subschema applied to the same instance location, or NULL past
 * the last. A cycle of these can never terminate. */
static struct op_schema__node *inplace_edge(const struct op_schema__node *n, size_t i)
{
	if (i == 0)
		return n->ref;
	if (i == 1)
		return n->dyn_name == NULL ? n->dyn_ref : NULL;
	if (i == 2)
		return n->not_;
	if (i == 3)
		return n->if_;
	if (i == 4)
		return n->if_ ? n->then_ : NULL;
	if (i == 5)
		return n->if_ ? n->else_ : NULL;
	i -= 6;
	if (i < n->nall_of)
		return n->all_of[i];
	i -= n->nall_of;
	if (i < n->nany_of)
		return n->any_of[i];
	i -= n->nany_of;
	if (i < n->none_of)
		return n->one_of[i];
	i -= n->none_of;
	if (i < n->ndeps)
		return n->deps[i].node;
	return NULL;
}

static size_t inplace_count(const struct op_schema__node *n)
{
	return 6 + n->nall_of + n->nany_of + n->none_of + n->ndeps;
}

static op_err check_cycles(struct op_schema__cc *cc)
{
	struct frame {
		struct op_schema__node *n;
		size_t next;
	} *st = NULL;
	size_t cap = 0;
	op_err e = OP_OK;

	/* Iterative depth-first search over every compiled node: mark 1 is
	 * "on the stack", 2 is "done". */
	for (size_t k = 0; k < cc->nodes.cap && !e; k++) {
		struct op_schema__node *start = cc->nodes.v[k].node;
		if (start == NULL || start->mark != 0)
			continue;
		size_t depth = 0;
		if (cap == 0) {
			cap = 64;
			st = op_malloc(cap * sizeof(*st));
			if (st == NULL)
				return OP_ENOMEM;
		}
		st[depth++] = (struct frame){start, 0};
		start->mark = 1;
		while (depth > 0) {
			struct frame *f = &st[depth - 1];
			if (f->next >= inplace_count(f->n)) {
				f->n->mark = 2;
				depth--;
				continue;
			}
			struct op_schema__node *c = inplace_edge(f->n, f->next++);
			if (c == NULL || c->mark == 2)
				continue;
			if (c->mark == 1) {
				e = op_schema__fail(
				    cc, c, NULL,
				    "schema refers to itself without descending into "
				    "the instance (via %s)",
				    f->n->loc);
				break;
			}
			if (depth == cap) {
				struct frame *ns = op_realloc(st, cap * 2 * sizeof(*st));
				if (ns == NULL) {
					e = OP_ENOMEM;
					break;
				}
				st = ns;
				cap *= 2;
			}
			c->mark = 1;
			st[depth++] = (struct frame){c, 0};
		}
	}
	op_free(st);
	return e;
}

/* ---- entry points ---- */

static void *pcre_alloc(PCRE2_SIZE n, void *ud)
{
	(void)ud;
	return op_malloc(n);
}

static void pcre_free(void *p, void *ud)
{
	(void)ud;
	op_free(p);
}

static op_err pcre_setup(struct op_schema *s)
{
	s->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
	if (s->gctx == NULL)
		return OP_ENOMEM;
	s->cctx = pcre2_compile_context_create(s->gctx);
	s->mctx = pcre2_match_context_create(s->gctx);
	if (s->cctx == NULL || s->mctx == NULL)
		return OP_ENOMEM;
	/* ECMA-262 \u escapes; patterns come from configuration, so limits
	 * only guard the match against catastrophic backtracking. */
	pcre2_set_compile_extra_options(s->cctx, PCRE2_EXTRA_ALT_BSUX);
	pcre2_set_match_limit(s->mctx, 10000000);
	pcre2_set_heap_limit(s->mctx, 16384);
	return OP_OK;
}

void op_schema_free(struct op_schema *s)
{
	if (s == NULL)
		return;
	for (struct op_schema__rx *r = s->rxs; r != NULL; r = r->next)
		pcre2_code_free(r->code);
	for (struct op_schema__doclist *d = s->docs; d != NULL; d = d->next)
		cJSON_Delete(d->json);
	pcre2_match_context_free(s->mctx);
	pcre2_compile_context_free(s->cctx);
	pcre2_general_context_free(s->gctx);
	struct op_schema__chunk *c = s->chunks;
	while (c != NULL) {
		struct op_schema__chunk *next = c->next;
		op_free(c);
		c = next;
	}
	op_free(s);
}

int op_schema_draft(const struct op_schema *s)
{
	return s->draft;
}

op_err op_schema_compile_opts(const cJSON *schema, const struct op_schema_opts *opts,
                              struct op_schema **out, char *err, size_t errlen)
{
	static const struct op_schema_opts defaults;
	struct op_schema__cc cc = {0};
	struct op_schema *s = NULL;
	struct op_schema__doclist *dl;
	cJSON *root = NULL;
	int draft;
	unsigned vocab;
	op_err e;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out != NULL)
		*out = NULL;
	if (schema == NULL || out == NULL)
		return OP_EINVAL;
	if (opts == NULL)
		opts = &defaults;
	cc.opts = opts;
	cc.err = err;
	cc.errlen = errlen;
	if (opts->draft != OP_SCHEMA_AUTO && opts->draft != OP_SCHEMA_DRAFT7 &&
	    opts->draft != OP_SCHEMA_2020) {
		op_schema__fail(&cc, NULL, NULL, "unknown draft %d", opts->draft);
		return OP_EINVAL;
	}
	s = op_calloc(1, sizeof(*s));
	if (s == NULL)
		return op_schema__oom(&cc, OP_ENOMEM);
	cc.s = s;
	s->max_depth = opts->max_depth ? opts->max_depth : OP_SCHEMA_DEFAULT_MAX_DEPTH;
	s->format_assert = opts->format_assert;
	if ((e = pcre_setup(s)))
		goto out;
	root = cJSON_Duplicate(schema, 1);
	dl = op_schema__alloc(s, sizeof(*dl));
	if (root == NULL || dl == NULL) {
		cJSON_Delete(root);
		e = OP_ENOMEM;
		goto out;
	}
	dl->json = root;
	dl->next = s->docs;
	s->docs = dl;
	if ((e = pick_dialect(&cc, root, &draft, &vocab)))
		goto out;
	s->draft = draft;
	if ((e = op_schema__index(&cc, root, DEFAULT_BASE, NULL, "#", draft, vocab, &s->root)))
		goto out;
	while (cc.nwork > 0) {
		struct op_schema__node *n = cc.work[--cc.nwork];
		if ((e = op_schema__compile_node(&cc, n)))
			goto out;
		n->state = 2;
	}
	e = check_cycles(&cc);
out:
	op_schema__maps_fini(&cc);
	if (e) {
		op_schema__oom(&cc, e);
		op_schema_free(s);
		return e;
	}
	pcre2_compile_context_free(s->cctx);
	s->cctx = NULL;
	*out = s;
	return OP_OK;
}

op_err op_schema_compile(const cJSON *schema, int draft, struct op_schema **out, char *err,
                         size_t errlen)
{
	struct op_schema_opts o = {.draft = draft};
	return op_schema_compile_opts(schema, &o, out, err, errlen);
}
