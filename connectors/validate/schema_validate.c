/*
 * Validation: walks a compiled schema and an instance together. Each call
 * keeps its state (instance path, dynamic scope, depth, error count, regex
 * match data) on the caller's stack, and the compiled schema is only read,
 * so any number of threads may validate with one schema at once.
 * Invariants: an error line is written only on a conjunctive path (never
 * under anyOf, oneOf, not, if, contains or propertyNames, which are
 * evaluated "quietly"), so every line is a real reason for failure; without
 * an error sink the first failure ends the walk; and annotations (which
 * members and items were evaluated, for unevaluatedProperties/Items) are
 * tracked only below a node that has those keywords, in bit sets that live
 * on the stack for up to 256 members.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "connectors/validate/schema_int.h"

enum { V_VALID = 0, V_INVALID = 1, V_ABORT = 2 };

/* The instance location, as a linked list from the leaf up. */
struct ipath {
	const struct ipath *up;
	const char *key; /* member name, or NULL for an array index */
	size_t idx;
};

/* The dynamic scope: schema resources entered, innermost first. */
struct scope {
	const struct op_schema__res *res;
	const struct scope *up;
};

#define ANN_INLINE 4 /* words of inline bits: 256 members or items */

/* Which members (objects) or items (arrays) of one instance were evaluated. */
struct ann {
	uint64_t *bits;
	size_t n;
	size_t prefix; /* items [0, prefix) evaluated */
	bool all;
	uint64_t inl[ANN_INLINE];
};

struct vctx {
	const struct op_schema *s;
	struct op_buf *errors;
	size_t max_errors, nerr;
	unsigned quiet, depth;
	const struct scope *scope;
	op_err err; /* set when returning V_ABORT */
	pcre2_general_context *gc;
	pcre2_match_data *md;
	size_t arena_used;
	/* PCRE2's context and match data come from here, so a call costs no
	 * allocation for them. */
	max_align_t arena[512 / sizeof(max_align_t)];
};

/* Stop at the first failure: nobody wants (more) error lines. */
#define FAST(c) ((c)->quiet > 0 || (c)->nerr >= (c)->max_errors)

/* Folds a sub-result into `bad`, or returns it when nothing more is needed. */
#define MERGE(expr)                                   \
	do {                                          \
		int r_ = (expr);                      \
		if (r_ != V_VALID) {                  \
			if (r_ == V_ABORT || FAST(c)) \
				return r_;            \
			bad = true;                   \
		}                                     \
	} while (0)

static int v_node(struct vctx *c, const struct op_schema__node *n, const cJSON *inst,
                  const struct ipath *p, struct ann *a);

/* ---- annotations ---- */

static bool ann_init(struct ann *a, size_t n)
{
	size_t words = (n + 63) / 64;
	a->n = n;
	a->prefix = 0;
	a->all = false;
	if (words <= ANN_INLINE) {
		memset(a->inl, 0, sizeof(a->inl));
		a->bits = a->inl;
		return true;
	}
	a->bits = op_calloc(words, sizeof(uint64_t));
	return a->bits != NULL;
}

static void ann_fini(struct ann *a)
{
	if (a->bits != a->inl)
		op_free(a->bits);
}

static void ann_mark(struct ann *a, size_t i)
{
	if (i < a->n)
		a->bits[i / 64] |= (uint64_t)1 << (i % 64);
}

static bool ann_has(const struct ann *a, size_t i)
{
	return a->all || i < a->prefix || (i < a->n && ((a->bits[i / 64] >> (i % 64)) & 1));
}

static void ann_merge(struct ann *d, const struct ann *s)
{
	d->all = d->all || s->all;
	if (s->prefix > d->prefix)
		d->prefix = s->prefix;
	for (size_t w = 0; w < (d->n + 63) / 64; w++)
		d->bits[w] |= s->bits[w];
}

static size_t children(const cJSON *v)
{
	size_t n = 0;
	for (const cJSON *m = v->child; m != NULL; m = m->next)
		n++;
	return n;
}

/* ---- error lines ---- */

/* Appends s with control characters escaped, so a line stays one line. */
static op_err add_escaped(struct op_buf *b, const char *s, bool pointer)
{
	const char *run = s;
	op_err e = OP_OK;
	for (const char *q = s; *q && !e; q++) {
		unsigned char ch = (unsigned char)*q;
		const char *rep = NULL;
		char hex[8];
		if (ch < 0x20 || ch == 0x7f) {
			hex[0] = '\\';
			hex[1] = 'u';
			hex[2] = '0';
			hex[3] = '0';
			hex[4] = "0123456789abcdef"[ch >> 4];
			hex[5] = "0123456789abcdef"[ch & 15];
			hex[6] = '\0';
			rep = hex;
		} else if (pointer && ch == '~') {
			rep = "~0";
		} else if (pointer && ch == '/') {
			rep = "~1";
		}
		if (rep == NULL)
			continue;
		e = op_buf_add(b, run, (size_t)(q - run));
		if (!e)
			e = op_buf_adds(b, rep);
		run = q + 1;
	}
	return e ? e : op_buf_adds(b, run);
}

static op_err add_path(struct op_buf *b, const struct ipath *p)
{
	if (p == NULL)
		return OP_OK;
	op_err e = add_path(b, p->up);
	if (!e)
		e = op_buf_addc(b, '/');
	if (!e)
		e = p->key != NULL ? add_escaped(b, p->key, true) : op_buf_addf(b, "%zu", p->idx);
	return e;
}

static int report(struct vctx *c, const struct ipath *p, const struct op_schema__node *n,
                  const char *kw, const char *fmt, ...) OP_PRINTF(5, 6);

static int report(struct vctx *c, const struct ipath *p, const struct op_schema__node *n,
                  const char *kw, const char *fmt, ...)
{
	if (FAST(c))
		return V_INVALID;
	struct op_buf *b = c->errors;
	size_t mark = b->len;
	struct op_buf msg;
	va_list ap;

	op_buf_init(&msg, b->max);
	va_start(ap, fmt);
	op_err e = op_buf_vaddf(&msg, fmt, ap);
	va_end(ap);
	if (!e)
		e = p != NULL ? add_path(b, p) : op_buf_adds(b, "(root)");
	if (!e)
		e = op_buf_adds(b, ": ");
	if (!e)
		e = add_escaped(b, op_buf_str(&msg), false);
	if (!e)
		e = op_buf_adds(b, " (");
	if (!e)
		e = add_escaped(b, n->loc, false);
	if (!e && kw != NULL)
		e = op_buf_addf(b, "/%s", kw);
	if (!e)
		e = op_buf_adds(b, ")\n");
	op_buf_fini(&msg);
	if (e) {
		b->len = mark;
		if (b->data != NULL)
			b->data[mark] = '\0';
		c->err = e;
		return V_ABORT;
	}
	c->nerr++;
	return V_INVALID;
}

static const char *type_name(unsigned t)
{
	if (t & OP_SCHEMA__T_INTEGER)
		return "integer";
	switch (t) {
	case OP_SCHEMA__T_NULL:
		return "null";
	case OP_SCHEMA__T_BOOLEAN:
		return "boolean";
	case OP_SCHEMA__T_OBJECT:
		return "object";
	case OP_SCHEMA__T_ARRAY:
		return "array";
	case OP_SCHEMA__T_NUMBER:
		return "number";
	case OP_SCHEMA__T_STRING:
		return "string";
	default:
		return "unsupported value";
	}
}

static int report_type(struct vctx *c, const struct ipath *p, const struct op_schema__node *n,
                       unsigned t)
{
	static const unsigned order[] = {
	    OP_SCHEMA__T_NULL,   OP_SCHEMA__T_BOOLEAN, OP_SCHEMA__T_OBJECT, OP_SCHEMA__T_ARRAY,
	    OP_SCHEMA__T_NUMBER, OP_SCHEMA__T_STRING,  OP_SCHEMA__T_INTEGER};
	char want[80];
	size_t k = 0;
	if (FAST(c))
		return V_INVALID;
	want[0] = '\0';
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (!(n->types & order[i]))
			continue;
		const char *name = type_name(order[i]);
		size_t l = strlen(name);
		if (k + l + 5 >= sizeof(want))
			break;
		if (k > 0) {
			memcpy(want + k, " or ", 4);
			k += 4;
		}
		memcpy(want + k, name, l + 1);
		k += l;
	}
	return report(c, p, n, "type", "must be %s, not %s", want, type_name(t));
}

/* ---- regular expressions ---- */

static void *rx_alloc(PCRE2_SIZE n, void *ud)
{
	struct vctx *c = ud;
	size_t a = sizeof(max_align_t), need = (n + a - 1) / a * a;
	if (need <= sizeof(c->arena) - c->arena_used) {
		void *p = (char *)c->arena + c->arena_used;
		c->arena_used += need;
		return p;
	}
	return op_malloc(n);
}

static void rx_free(void *p, void *ud)
{
	struct vctx *c = ud;
	uintptr_t u = (uintptr_t)p, lo = (uintptr_t)c->arena;
	if (u >= lo && u < lo + sizeof(c->arena))
		return; /* arena memory goes with the call */
	op_free(p);
}

static int rx_match(struct vctx *c, const struct op_schema__rx *rx, const char *str, bool *m)
{
	*m = false;
	if (c->md == NULL) {
		if (c->gc == NULL)
			c->gc = pcre2_general_context_create(rx_alloc, rx_free, c);
		if (c->gc != NULL)
			c->md = pcre2_match_data_create(1, c->gc);
		if (c->md == NULL) {
			c->err = OP_ENOMEM;
			return V_ABORT;
		}
	}
	int rc = pcre2_match(rx->code, (PCRE2_SPTR)str, strlen(str), 0, 0, c->md, c->s->mctx);
	if (rc >= 0) {
		*m = true;
		return V_VALID;
	}
	if (rc == PCRE2_ERROR_NOMATCH ||
	    (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21))
		return V_VALID; /* text that is not UTF-8 matches no pattern */
	c->err = rc == PCRE2_ERROR_NOMEMORY ? OP_ENOMEM : OP_ELIMIT;
	return V_ABORT;
}

/* ---- keyword groups ---- */

static int v_number(struct vctx *c, const struct op_schema__node *n, const cJSON *inst,
                    const struct ipath *p)
{
	double x = inst->valuedouble;
	uint32_t k = n->kw;
	bool bad = false;
	char b[32];

	if ((k & OP_SCHEMA__K_MULTIPLE_OF) && !op_schema__multiple_of(x, n->multiple_of)) {
		op_schema__fmt_num(n->multiple_of, b, sizeof(b));
		MERGE(report(c, p, n, "multipleOf", "must be a multiple of %s", b));
	}
	if ((k & OP_SCHEMA__K_MAXIMUM) && !(x <= n->maximum)) {
		op_schema__fmt_num(n->maximum, b, sizeof(b));
		MERGE(report(c, p, n, "maximum", "must be <= %s", b));
	}
	if ((k & OP_SCHEMA__K_EXCL_MAXIMUM) && !(x < n->excl_maximum)) {
		op_schema__fmt_num(n->excl_maximum, b, sizeof(b));
		MERGE(report(c, p, n, "exclusiveMaximum", "must be < %s", b));
	}
	if ((k & OP_SCHEMA__K_MINIMUM) && !(x >= n->minimum)) {
		op_schema__fmt_num(n->minimum, b, sizeof(b));
		MERGE(report(c, p, n, "minimum", "must be >= %s", b));
	}
	if ((k & OP_SCHEMA__K_EXCL_MINIMUM) && !(x > n->excl_minimum)) {
		op_schema__fmt_num(n->excl_minimum, b, sizeof(b));
		MERGE(report(c, p, n, "exclusiveMinimum", "must be > %s", b));
	}
	return bad ? V_INVALID : V_VALID;
}

static int v_string(struct vctx *c, const struct op_schema__node *n, const cJSON *inst,
                    const struct ipath *p)
{
	const char *s = inst->valuestring != NULL ? inst->valuestring : "";
	uint32_t k = n->kw;
	bool bad = false;

	if (k & (OP_SCHEMA__K_MAX_LENGTH | OP_SCHEMA__K_MIN_LENGTH)) {
		size_t len = op_schema__utf8_len(s);
		if ((k & OP_SCHEMA__K_MAX_LENGTH) && len > n->max_length)
			MERGE(report(c, p, n, "maxLength",
			             "must be at most %llu characters long (found %zu)",
			             (unsigned long long)n->max_length, len));
		if ((k & OP_SCHEMA__K_MIN_LENGTH) && len < n->min_length)
			MERGE(report(c, p, n, "minLength",
			             "must be at least %llu characters long (found %zu)",
			             (unsigned long long)n->min_length, len));
	}
	if (n->pattern != NULL) {
		bool m;
		if (rx_match(c, n->pattern, s, &m) == V_ABORT)
			return V_ABORT;
		if (!m)
			MERGE(report(c, p, n, "pattern", "must match the pattern \"%s\"",
			             n->pattern->src));
	}
	if (n->format != OP_SCHEMA__F_NONE) {
		bool ok;
		op_err fe = op_schema__format_check(n->format, s, &ok);
		if (fe) {
			c->err = fe;
			return V_ABORT;
		}
		if (!ok)
			MERGE(report(c, p, n, "format", "must be a valid %s",
			             op_schema__format_name(n->format)));
	}
	return bad ? V_INVALID : V_VALID;
}

struct hashed {
	uint64_t h;
	const cJSON *v;
	size_t i;
};

static int hashed_cmp(const void *a, const void *b)
{
	const struct hashed *x = a, *y = b;
	if (x->h != y->h)
		return x->h < y->h ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

static int v_unique(struct vctx *c, const struct op_schema__node *n, const cJSON *inst,
                    const struct ipath *p, size_t len)
{
	size_t di = 0, dj = 0;
	bool dup = false;
	if (len <= 32) {
		size_t i = 0;
		for (const cJSON *x = inst->child; x != NULL && !dup; x = x->next, i++) {
			size_t j = i + 1;
			for (const cJSON *y = x->next; y != NULL; y = y->next, j++) {
				if (op_schema__json_equal(x, y)) {
					dup = true;
					di = i;
					dj = j;
					break;
				}
			}
		}
	} else {
		/* Sort by hash and compare only within runs of equal hashes. */
		struct hashed *h = op_malloc(len * sizeof(*h));
		size_t i = 0;
		if (h == NULL) {
			c->err = OP_ENOMEM;
			return V_ABORT;
		}
		for (const cJSON *x = inst->child; x != NULL; x = x->next, i++)
			h[i] = (struct hashed){op_schema__json_hash(x), x, i};
		qsort(h, len, sizeof(*h), hashed_cmp);
		for (i = 0; i + 1 < len && !dup; i++)
			for (size_t j = i + 1; j < len && h[j].h == h[i].h; j++)
				if (op_schema__json_equal(h[i].v, h[j].v)) {
					dup = true;
					di = h[i].i;
					dj = h[j].i;
					break;
				}
		op_free(h);
	}
	if (!dup)
		return V_VALID;
	return report(c, p, n, "uniqueItems",
	              "must not contain duplicates (items %zu and %zu are equal)", di, dj);
}

static int v_contains(struct vctx *c, const struct op_schema__node *n, const cJSON *inst,
                      const struct ipath *p, struct ann *a)
{
	uint64_t min = (n->kw & OP_SCHEMA__K_MIN_CONTAINS) ? n->min_contains : 1;
	bool has_max = (n->kw & OP_SCHEMA__K_MAX_CONTAINS) != 0;
	size_t found = 0, i = 0;

	c->quiet++;
	for (const cJSON *it = inst->child; it != NULL; it = it->next, i++) {
		struct ipath cp = {p, NULL, i};
		int r = v_node(c, n->contains, it, &cp, NULL);
		if (r == V_ABORT) {
			c->quiet--;
			return r;
		}
		if (r != V_VALID)
			continue;
		found++;
		if (a != NULL)
			ann_mark(a, i);
		else if (!has_max && found >= min)
			break;
	}
	c->quiet--;
	if (found < min)
		return report(
		    c, p, n, (n->kw & OP_SCHEMA__K_MIN_CONTAINS) ? "minContains" : "contains",
		    "must contain at least %llu item(s) valid against contains (found %zu)",
		    (unsigned long long)min, found);
	if (has_max && found > n->max_contains)
		return report(
		    c, p, n, "maxContains",
		    "must contain at most %llu item(s) valid against contains (found %zu)",
		    (unsigned long long)n->max_contains, found);
	return V_VALID;
}

static int v_array(struct vctx *c, const struct op_schema__node *n, const cJSON *inst,
                   const struct ipath *p, struct ann *a)
{
	size_t len = children(inst), i = 0;
	uint32_t k = n->kw;
	bool bad = false;

	if ((k & OP_SCHEMA__K_MAX_ITEMS) && len > n->max_items)
		MERGE(report(c, p, n, "maxItems", "must have at most %llu item(s) (found %zu)",
		             (unsigned long long)n->max_items, len));
	if ((k & OP_SCHEMA__K_MIN_ITEMS) && len < n->min_items)
		MERGE(report(c, p, n, "minItems", "must have at least %llu item(s) (found %zu)",
		             (unsigned long long)n->min_items, len));
	if (k & OP_SCHEMA__K_UNIQUE)
		MERGE(v_unique(c, n, inst, p, len));
	const cJSON *it = inst->child;
	for (; i < n->nprefix && it != NULL; i++, it = it->next) {
		struct ipath cp = {p, NULL, i};
		MERGE(v_node(c, n->prefix[i], it, &cp, NULL));
	}
	if (a != NULL && i > a->prefix)
		a->prefix = i;
	const struct op_schema__node *rest =
	    (k & OP_SCHEMA__K_ITEMS_ARRAY) ? n->add_items : n->items;
	if (rest != NULL) {
		for (; it != NULL; i++, it = it->next) {
			struct ipath cp = {p, NULL, i};
			MERGE(v_node(c, rest, it, &cp, NULL));
		}
		if (a != NULL)
			a->all = true;
	}
	if (n->contains != NULL)
		MERGE(v_contains(c, n, inst, p, a));
	return bad ? V_INVALID : V_VALID;
}

static const struct op_schema__prop *find_prop(const struct op_schema__node *n, const char *key)
{
	size_t lo = 0, hi = n->nprops;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strcmp(n->props[mid].name, key);
		if (r == 0)
			return &n->props[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int v_object(struct vctx *c, const struct op_schema__node *n, const cJSON *inst,
                    const struct ipath *p, struct ann *a)
{
	uint32_t k = n->kw;
	bool bad = false;
	const cJSON *m;
	size_t i;

	if (k & (OP_SCHEMA__K_MAX_PROPS | OP_SCHEMA__K_MIN_PROPS)) {
		size_t cnt = children(inst);
		if ((k & OP_SCHEMA__K_MAX_PROPS) && cnt > n->max_props)
			MERGE(report(c, p, n, "maxProperties",
			             "must have at most %llu propert%s (found %zu)",
			             (unsigned long long)n->max_props,
			             n->max_props == 1 ? "y" : "ies", cnt));
		if ((k & OP_SCHEMA__K_MIN_PROPS) && cnt < n->min_props)
			MERGE(report(c, p, n, "minProperties",
			             "must have at least %llu propert%s (found %zu)",
			             (unsigned long long)n->min_props,
			             n->min_props == 1 ? "y" : "ies", cnt));
	}
	for (i = 0; i < n->nrequired; i++)
		if (cJSON_GetObjectItemCaseSensitive(inst, n->required[i]) == NULL)
			MERGE(report(c, p, n, "required", "must have the required property \"%s\"",
			             n->required[i]));
	if (n->nprops > 0 || n->npprops > 0 || n->add_props != NULL) {
		i = 0;
		for (m = inst->child; m != NULL; m = m->next, i++) {
			const char *key = m->string != NULL ? m->string : "";
			struct ipath cp = {p, key, 0};
			bool hit = false;
			if (n->nprops > 0) {
				const struct op_schema__prop *pr = find_prop(n, key);
				if (pr != NULL) {
					hit = true;
					MERGE(v_node(c, pr->node, m, &cp, NULL));
				}
			}
			for (size_t j = 0; j < n->npprops; j++) {
				bool mm;
				if (rx_match(c, n->pprops[j].rx, key, &mm) == V_ABORT)
					return V_ABORT;
				if (!mm)
					continue;
				hit = true;
				MERGE(v_node(c, n->pprops[j].node, m, &cp, NULL));
			}
			if (!hit && n->add_props != NULL) {
				hit = true;
				MERGE(v_node(c, n->add_props, m, &cp, NULL));
			}
			if (hit && a != NULL)
				ann_mark(a, i);
		}
	}
	if (n->prop_names != NULL) {
		for (m = inst->child; m != NULL; m = m->next) {
			cJSON name;
			memset(&name, 0, sizeof(name));
			name.type = cJSON_String;
			name.valuestring = m->string != NULL ? m->string : (char *)"";
			struct ipath cp = {p, name.valuestring, 0};
			c->quiet++;
			int r = v_node(c, n->prop_names, &name, &cp, NULL);
			c->quiet--;
			if (r == V_ABORT)
				return r;
			if (r != V_VALID)
				MERGE(report(
				    c, p, n, "propertyNames",
				    "property name \"%s\" is not valid against propertyNames",
				    name.valuestring));
		}
	}
	for (i = 0; i < n->ndeps; i++) {
		const struct op_schema__dep *d = &n->deps[i];
		if (cJSON_GetObjectItemCaseSensitive(inst, d->name) == NULL)
			continue;
		for (size_t j = 0; j < d->nreq; j++)
			if (cJSON_GetObjectItemCaseSensitive(inst, d->req[j]) == NULL)
				MERGE(report(c, p, n,
				             n->draft == OP_SCHEMA_DRAFT7 ? "dependencies"
				                                          : "dependentRequired",
				             "property \"%s\" requires property \"%s\"", d->name,
				             d->req[j]));
		if (d->node != NULL)
			MERGE(v_node(c, d->node, inst, p, a));
	}
	return bad ? V_INVALID : V_VALID;
}

/* Evaluates sub quietly; with annotations on, into a scratch set that is
 * merged only when sub passes. */
static int v_quiet(struct vctx *c, const struct op_schema__node *sub, const cJSON *inst,
                   const struct ipath *p, struct ann *a)
{
	struct ann t;
	int r;
	c->quiet++;
	if (a == NULL) {
		r = v_node(c, sub, inst, p, NULL);
	} else if (!ann_init(&t, a->n)) {
		c->err = OP_ENOMEM;
		r = V_ABORT;
	} else {
		r = v_node(c, sub, inst, p, &t);
		if (r == V_VALID)
			ann_merge(a, &t);
		ann_fini(&t);
	}
	c->quiet--;
	return r;
}

static int v_inplace(struct vctx *c, const struct op_schema__node *n, const cJSON *inst,
                     const struct ipath *p, struct ann *a)
{
	bool bad = false;
	size_t i;
	int r;

	for (i = 0; i < n->nall_of; i++)
		MERGE(v_node(c, n->all_of[i], inst, p, a));
	if (n->nany_of > 0) {
		/* Every branch must run when annotations are wanted: the
		 * evaluated members of all passing branches count. */
		size_t hits = 0;
		for (i = 0; i < n->nany_of && (hits == 0 || a != NULL); i++) {
			if ((r = v_quiet(c, n->any_of[i], inst, p, a)) == V_ABORT)
				return r;
			hits += r == V_VALID;
		}
		if (hits == 0)
			MERGE(report(c, p, n, "anyOf",
			             "must be valid against at least one schema in anyOf"));
	}
	if (n->none_of > 0) {
		size_t hits = 0, first = 0, second = 0;
		for (i = 0; i < n->none_of && hits < 2; i++) {
			/* Annotations are only kept if exactly one passes; a
			 * second pass fails the keyword, so merging early is
			 * harmless. */
			if ((r = v_quiet(c, n->one_of[i], inst, p, a)) == V_ABORT)
				return r;
			if (r == V_VALID) {
				if (hits++ == 0)
					first = i;
				else
					second = i;
			}
		}
		if (hits == 0)
			MERGE(
			    report(c, p, n, "oneOf",
			           "must be valid against exactly one schema in oneOf (none is)"));
		else if (hits > 1)
			MERGE(
			    report(c, p, n, "oneOf",
			           "must be valid against exactly one schema in oneOf (%zu and %zu "
			           "both are)",
			           first, second));
	}
	if (n->not_ != NULL) {
		c->quiet++;
		r = v_node(c, n->not_, inst, p, NULL);
		c->quiet--;
		if (r == V_ABORT)
			return r;
		if (r == V_VALID)
			MERGE(
			    report(c, p, n, "not", "must not be valid against the schema in not"));
	}
	if (n->if_ != NULL) {
		if ((r = v_quiet(c, n->if_, inst, p, a)) == V_ABORT)
			return r;
		const struct op_schema__node *branch = r == V_VALID ? n->then_ : n->else_;
		if (branch != NULL)
			MERGE(v_node(c, branch, inst, p, a));
	}
	return bad ? V_INVALID : V_VALID;
}

/* The target of a $dynamicRef: the outermost resource in the dynamic scope
 * with a matching $dynamicAnchor, else the static target. */
static const struct op_schema__node *dyn_target(const struct vctx *c,
                                                const struct op_schema__node *n)
{
	const struct op_schema__node *found = NULL;
	if (n->dyn_name == NULL)
		return n->dyn_ref;
	for (const struct scope *f = c->scope; f != NULL; f = f->up)
		for (const struct op_schema__dyn *d = f->res->dyn; d != NULL; d = d->next)
			if (strcmp(d->name, n->dyn_name) == 0) {
				found = d->node;
				break;
			}
	return found != NULL ? found : n->dyn_ref;
}

static int v_body(struct vctx *c, const struct op_schema__node *n, const cJSON *inst,
                  const struct ipath *p, struct ann *a)
{
	bool bad = false;
	unsigned t = op_schema__type_of(inst);

	if (n->ref != NULL)
		MERGE(v_node(c, n->ref, inst, p, a));
	if (n->dyn_ref != NULL)
		MERGE(v_node(c, dyn_target(c, n), inst, p, a));
	if (n->types != 0 && !(n->types & t))
		MERGE(report_type(c, p, n, t));
	if (n->const_v != NULL && !op_schema__json_equal(inst, n->const_v))
		MERGE(report(c, p, n, "const", "must be equal to the constant"));
	if (n->enum_v != NULL) {
		const cJSON *e;
		bool found = false;
		cJSON_ArrayForEach (e, n->enum_v) {
			if (op_schema__json_equal(inst, e)) {
				found = true;
				break;
			}
		}
		if (!found)
			MERGE(report(c, p, n, "enum", "must be one of the values in enum"));
	}
	if ((t & OP_SCHEMA__T_NUMBER) && (n->kw & OP_SCHEMA__G_NUMBER))
		MERGE(v_number(c, n, inst, p));
	else if (t == OP_SCHEMA__T_STRING && (n->kw & OP_SCHEMA__G_STRING))
		MERGE(v_string(c, n, inst, p));
	else if (t == OP_SCHEMA__T_ARRAY && (n->kw & OP_SCHEMA__G_ARRAY))
		MERGE(v_array(c, n, inst, p, a));
	else if (t == OP_SCHEMA__T_OBJECT && (n->kw & OP_SCHEMA__G_OBJECT))
		MERGE(v_object(c, n, inst, p, a));
	if (n->kw & OP_SCHEMA__G_INPLACE)
		MERGE(v_inplace(c, n, inst, p, a));
	return bad ? V_INVALID : V_VALID;
}

/* A node with unevaluatedProperties/Items on a matching instance: collects
 * the annotations of everything else first, then checks what is left against
 * u, the unevaluatedProperties or unevaluatedItems subschema for inst. */
static int v_uneval(struct vctx *c, const struct op_schema__node *n,
                    const struct op_schema__node *u, const cJSON *inst, const struct ipath *p,
                    struct ann *a)
{
	bool object = cJSON_IsObject(inst);
	struct ann local;
	size_t i = 0;

	if (!ann_init(&local, children(inst))) {
		c->err = OP_ENOMEM;
		return V_ABORT;
	}
	int r = v_body(c, n, inst, p, &local);
	bool bad = r == V_INVALID;
	if (r == V_ABORT || (bad && FAST(c)))
		goto out;
	for (const cJSON *m = inst->child; m != NULL; m = m->next, i++) {
		if (ann_has(&local, i))
			continue;
		struct ipath cp = {p, object ? (m->string != NULL ? m->string : "") : NULL, i};
		r = v_node(c, u, m, &cp, NULL);
		if (r == V_ABORT || (r == V_INVALID && FAST(c)))
			goto out;
		bad = bad || r == V_INVALID;
	}
	r = bad ? V_INVALID : V_VALID;
	if (r == V_VALID && a != NULL)
		a->all = true; /* every member or item has now been evaluated */
out:
	ann_fini(&local);
	return r;
}

static int v_node(struct vctx *c, const struct op_schema__node *n, const cJSON *inst,
                  const struct ipath *p, struct ann *a)
{
	if (n->is_bool)
		return n->bool_val
		           ? V_VALID
		           : report(c, p, n, NULL, "is not allowed here (the schema is false)");
	if (c->depth >= c->s->max_depth) {
		c->err = OP_ELIMIT;
		return V_ABORT;
	}
	const struct scope *saved = c->scope;
	struct scope fr;
	if (saved == NULL || saved->res != n->res) {
		fr.res = n->res;
		fr.up = saved;
		c->scope = &fr;
	}
	c->depth++;
	const struct op_schema__node *u = cJSON_IsObject(inst)  ? n->uneval_props
	                                  : cJSON_IsArray(inst) ? n->uneval_items
	                                                        : NULL;
	int r;
	if (u != NULL)
		r = v_uneval(c, n, u, inst, p, a);
	else
		r = v_body(c, n, inst, p, a);
	c->depth--;
	c->scope = saved;
	return r;
}

op_err op_schema_validate(const struct op_schema *s, const cJSON *instance, bool *valid,
                          struct op_buf *errors, size_t max_errors)
{
	struct vctx c;

	if (valid != NULL)
		*valid = false;
	if (s == NULL || instance == NULL || valid == NULL)
		return OP_EINVAL;
	c.s = s;
	c.errors = errors;
	c.max_errors = errors != NULL ? max_errors : 0;
	c.nerr = 0;
	c.quiet = 0;
	c.depth = 0;
	c.scope = NULL;
	c.err = OP_OK;
	c.gc = NULL;
	c.md = NULL;
	c.arena_used = 0;
	int r = v_node(&c, s->root, instance, NULL, NULL);
	pcre2_match_data_free(c.md);
	pcre2_general_context_free(c.gc);
	if (r == V_ABORT)
		return c.err;
	*valid = r == V_VALID;
	return OP_OK;
}
