/*
 * Keyword compilation: one table row per keyword and dialect gives the
 * keyword's vocabulary, the shape of the subschemas it holds (which the
 * indexing walk follows) and the function that checks its value and stores
 * it, decoded, in the node. Invariant: a node that compiled without error
 * has only well-typed fields (counts are non-negative integers, regexes
 * compiled, every subschema and $ref target a node), so validation never
 * meets a malformed schema and needs no error path for one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "connectors/validate/schema_int.h"

#define D7    1u
#define D2020 2u
#define DBOTH 3u

struct op_schema__cc;
typedef op_err (*kw_parse_fn)(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                              const char *kw);

struct kwdef {
	const char *name;
	unsigned drafts;
	unsigned vocab; /* 2020-12 vocabulary; draft-07 has them all */
	int shape;      /* OP_SCHEMA__SUB_* */
	kw_parse_fn parse;
};

/* ---- value helpers ---- */

static char *kwpath(char *buf, size_t n, const char *kw, const char *key, long idx)
{
	if (key != NULL) {
		size_t k = (size_t)snprintf(buf, n, "%s/", kw);
		for (const char *p = key; *p && k + 3 < n; p++) {
			if (*p == '~' || *p == '/') {
				buf[k++] = '~';
				buf[k++] = *p == '~' ? '0' : '1';
			} else {
				buf[k++] = *p;
			}
		}
		buf[k < n ? k : n - 1] = '\0';
	} else {
		snprintf(buf, n, "%s/%ld", kw, idx);
	}
	return buf;
}

static bool is_schema_value(const cJSON *v)
{
	return cJSON_IsObject(v) || cJSON_IsBool(v);
}

/* The node of subschema v (found at kw or kw/key or kw/idx). */
static op_err sub(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                  const char *kw, const char *key, long idx, struct op_schema__node **out)
{
	char path[256];
	*out = NULL;
	if (!is_schema_value(v)) {
		const char *p = kw;
		if (key != NULL || idx >= 0)
			p = kwpath(path, sizeof(path), kw, key, idx);
		return op_schema__fail(cc, n, p, "expected a schema (object or boolean)");
	}
	*out = op_schema__pmap_get(&cc->nodes, v);
	if (*out != NULL)
		return OP_OK;
	/* Not reached by the walk (cannot happen for table keywords); index it
	 * now rather than trust that. */
	char *loc = op_schema__strndup(cc->s, n->loc, strlen(n->loc));
	if (loc == NULL)
		return OP_ENOMEM;
	return op_schema__index(cc, v, n->base, n->res, loc, n->draft, n->vocab, out);
}

static op_err sub_array(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                        const char *kw, bool nonempty, struct op_schema__node ***out, size_t *count)
{
	int len = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
	if (len < 0 || (nonempty && len == 0))
		return op_schema__fail(cc, n, kw, "expected %s array of schemas",
		                       nonempty ? "a non-empty" : "an");
	struct op_schema__node **a = op_schema__alloc(cc->s, sizeof(*a) * (size_t)len);
	if (a == NULL)
		return OP_ENOMEM;
	const cJSON *m;
	long i = 0;
	cJSON_ArrayForEach (m, v) {
		op_err e = sub(cc, n, m, kw, NULL, i, &a[i]);
		if (e)
			return e;
		i++;
	}
	*out = a;
	*count = (size_t)len;
	return OP_OK;
}

static op_err num(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                  const char *kw, double *out)
{
	if (!cJSON_IsNumber(v))
		return op_schema__fail(cc, n, kw, "expected a number");
	*out = v->valuedouble;
	return OP_OK;
}

static op_err count(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                    const char *kw, uint64_t *out)
{
	if (!cJSON_IsNumber(v) || !op_schema__is_integer(v->valuedouble) || v->valuedouble < 0)
		return op_schema__fail(cc, n, kw, "expected a non-negative integer");
	*out = v->valuedouble >= 1.8e19 ? UINT64_MAX : (uint64_t)v->valuedouble;
	return OP_OK;
}

static op_err string_array(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                           const char *kw, const char ***out, size_t *len)
{
	char path[256];
	int k = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
	if (k < 0)
		return op_schema__fail(cc, n, kw, "expected an array of strings");
	const char **a = op_schema__alloc(cc->s, sizeof(*a) * (size_t)k);
	if (a == NULL)
		return OP_ENOMEM;
	const cJSON *m;
	long i = 0;
	cJSON_ArrayForEach (m, v) {
		if (!cJSON_IsString(m) || m->valuestring == NULL)
			return op_schema__fail(cc, n, kwpath(path, sizeof(path), kw, NULL, i),
			                       "expected a string");
		a[i++] = m->valuestring;
	}
	*out = a;
	*len = (size_t)k;
	return OP_OK;
}

static op_err regex(struct op_schema__cc *cc, struct op_schema__node *n, const char *kwp,
                    const char *src, const struct op_schema__rx **out)
{
	struct op_schema *s = cc->s;
	struct op_buf text;
	int ec;
	PCRE2_SIZE off;

	const char *why;
	op_buf_init(&text, OP_SCHEMA__MAX_REGEX);
	op_err e = op_schema__rx_translate(src, &text, &why);
	if (e == OP_EPARSE)
		e = op_schema__fail(cc, n, kwp, "invalid regular expression: %s", why);
	else if (e == OP_ELIMIT)
		e = op_schema__fail(cc, n, kwp,
		                    "regular expression longer than %d bytes once translated",
		                    OP_SCHEMA__MAX_REGEX);
	if (e) {
		op_buf_fini(&text);
		return e;
	}
	/* No PCRE2_UCP: \d, \w and \b are ASCII-only in ECMA-262. */
	pcre2_code *code = pcre2_compile((PCRE2_SPTR)op_buf_str(&text), text.len,
	                                 PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_DOLLAR_ENDONLY |
	                                     PCRE2_ALLOW_EMPTY_CLASS,
	                                 &ec, &off, s->cctx);
	bool same = strcmp(op_buf_str(&text), src) == 0;
	op_buf_fini(&text);
	if (code == NULL) {
		PCRE2_UCHAR msg[160];
		if (ec == PCRE2_ERROR_HEAP_FAILED)
			return OP_ENOMEM;
		if (pcre2_get_error_message(ec, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", ec);
		/* Offsets count in the translated text; only quote one that is
		 * also right in the schema's. */
		if (same)
			return op_schema__fail(cc, n, kwp,
			                       "invalid regular expression: %s at offset %zu",
			                       (const char *)msg, (size_t)off);
		return op_schema__fail(cc, n, kwp, "invalid regular expression: %s",
		                       (const char *)msg);
	}
	/* JIT is an optimisation: without it (no memory, unsupported CPU) the
	 * interpreter gives the same answers. */
	(void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
	struct op_schema__rx *rx = op_schema__alloc(s, sizeof(*rx));
	if (rx == NULL) {
		pcre2_code_free(code);
		return OP_ENOMEM;
	}
	rx->code = code;
	rx->src = src;
	rx->next = s->rxs;
	s->rxs = rx;
	*out = rx;
	return OP_OK;
}

/* ---- keyword parsers ---- */

static op_err kw_string(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                        const char *kw)
{
	if (!cJSON_IsString(v))
		return op_schema__fail(cc, n, kw, "expected a string");
	return OP_OK;
}

static op_err kw_defs(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                      const char *kw)
{
	const cJSON *m;
	if (!cJSON_IsObject(v))
		return op_schema__fail(cc, n, kw, "expected an object");
	cJSON_ArrayForEach (m, v) {
		struct op_schema__node *d;
		op_err e = sub(cc, n, m, kw, m->string, -1, &d);
		if (e)
			return e;
	}
	return OP_OK;
}

static op_err kw_ref(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                     const char *kw)
{
	const char *anchor;
	if (!cJSON_IsString(v) || v->valuestring == NULL)
		return op_schema__fail(cc, n, kw, "expected a string");
	return op_schema__resolve(cc, n, kw, v->valuestring, &n->ref, &anchor);
}

static op_err kw_dynamic_ref(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                             const char *kw)
{
	const char *anchor;
	if (!cJSON_IsString(v) || v->valuestring == NULL)
		return op_schema__fail(cc, n, kw, "expected a string");
	op_err e = op_schema__resolve(cc, n, kw, v->valuestring, &n->dyn_ref, &anchor);
	if (e || anchor == NULL)
		return e;
	/* Dynamic only when the static target itself declares the anchor as
	 * dynamic (the "bookend"); otherwise it behaves as $ref. */
	const cJSON *da = cJSON_IsObject(n->dyn_ref->json)
	                      ? cJSON_GetObjectItemCaseSensitive(n->dyn_ref->json, "$dynamicAnchor")
	                      : NULL;
	const char *dname = cJSON_GetStringValue(da); /* NULL unless a string */
	if (dname != NULL && strcmp(dname, anchor) == 0) {
		n->dyn_name = op_schema__strndup(cc->s, anchor, strlen(anchor));
		if (n->dyn_name == NULL)
			return OP_ENOMEM;
	}
	return OP_OK;
}

static op_err kw_type(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                      const char *kw)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {
	    {"null", OP_SCHEMA__T_NULL},       {"boolean", OP_SCHEMA__T_BOOLEAN},
	    {"object", OP_SCHEMA__T_OBJECT},   {"array", OP_SCHEMA__T_ARRAY},
	    {"number", OP_SCHEMA__T_NUMBER},   {"string", OP_SCHEMA__T_STRING},
	    {"integer", OP_SCHEMA__T_INTEGER},
	};
	const cJSON *m;
	unsigned bits = 0;
	if (!cJSON_IsString(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0))
		return op_schema__fail(cc, n, kw, "expected a type name or an array of type names");
	for (m = cJSON_IsString(v) ? v : v->child; m != NULL;
	     m = cJSON_IsString(v) ? NULL : m->next) {
		unsigned bit = 0;
		if (cJSON_IsString(m) && m->valuestring != NULL)
			for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
				if (strcmp(m->valuestring, names[i].name) == 0)
					bit = names[i].bit;
		if (bit == 0)
			return op_schema__fail(
			    cc, n, kw,
			    "unknown type %s%s%s (expected null, boolean, object, array, "
			    "number, string or integer)",
			    cJSON_IsString(m) ? "\"" : "",
			    cJSON_IsString(m) ? m->valuestring : "value",
			    cJSON_IsString(m) ? "\"" : "");
		bits |= bit;
	}
	n->types = (uint8_t)bits;
	return OP_OK;
}

static op_err kw_enum(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                      const char *kw)
{
	if (!cJSON_IsArray(v))
		return op_schema__fail(cc, n, kw, "expected an array");
	n->enum_v = v;
	return OP_OK;
}

static op_err kw_const(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                       const char *kw)
{
	(void)cc;
	(void)kw;
	n->const_v = v;
	return OP_OK;
}

static op_err kw_number(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                        const char *kw)
{
	static const struct {
		const char *name;
		uint32_t bit;
		size_t off;
	} f[] = {
	    {"maximum", OP_SCHEMA__K_MAXIMUM, offsetof(struct op_schema__node, maximum)},
	    {"minimum", OP_SCHEMA__K_MINIMUM, offsetof(struct op_schema__node, minimum)},
	    {"exclusiveMaximum", OP_SCHEMA__K_EXCL_MAXIMUM,
	     offsetof(struct op_schema__node, excl_maximum)},
	    {"exclusiveMinimum", OP_SCHEMA__K_EXCL_MINIMUM,
	     offsetof(struct op_schema__node, excl_minimum)},
	    {"multipleOf", OP_SCHEMA__K_MULTIPLE_OF, offsetof(struct op_schema__node, multiple_of)},
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (strcmp(kw, f[i].name) != 0)
			continue;
		double d = 0;
		op_err e = num(cc, n, v, kw, &d);
		if (e)
			return e;
		if (f[i].bit == OP_SCHEMA__K_MULTIPLE_OF && !(d > 0 && isfinite(d)))
			return op_schema__fail(cc, n, kw, "expected a number > 0");
		*(double *)(void *)((char *)n + f[i].off) = d;
		n->kw |= f[i].bit;
		return OP_OK;
	}
	return OP_EINTERNAL;
}

static op_err kw_count(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                       const char *kw)
{
	static const struct {
		const char *name;
		uint32_t bit;
		size_t off;
	} f[] = {
	    {"maxLength", OP_SCHEMA__K_MAX_LENGTH, offsetof(struct op_schema__node, max_length)},
	    {"minLength", OP_SCHEMA__K_MIN_LENGTH, offsetof(struct op_schema__node, min_length)},
	    {"maxItems", OP_SCHEMA__K_MAX_ITEMS, offsetof(struct op_schema__node, max_items)},
	    {"minItems", OP_SCHEMA__K_MIN_ITEMS, offsetof(struct op_schema__node, min_items)},
	    {"maxContains", OP_SCHEMA__K_MAX_CONTAINS,
	     offsetof(struct op_schema__node, max_contains)},
	    {"minContains", OP_SCHEMA__K_MIN_CONTAINS,
	     offsetof(struct op_schema__node, min_contains)},
	    {"maxProperties", OP_SCHEMA__K_MAX_PROPS, offsetof(struct op_schema__node, max_props)},
	    {"minProperties", OP_SCHEMA__K_MIN_PROPS, offsetof(struct op_schema__node, min_props)},
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (strcmp(kw, f[i].name) != 0)
			continue;
		op_err e = count(cc, n, v, kw, (uint64_t *)(void *)((char *)n + f[i].off));
		if (!e)
			n->kw |= f[i].bit;
		return e;
	}
	return OP_EINTERNAL;
}

static op_err kw_unique(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                        const char *kw)
{
	if (!cJSON_IsBool(v))
		return op_schema__fail(cc, n, kw, "expected a boolean");
	if (cJSON_IsTrue(v))
		n->kw |= OP_SCHEMA__K_UNIQUE;
	return OP_OK;
}

static op_err kw_pattern(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                         const char *kw)
{
	if (!cJSON_IsString(v) || v->valuestring == NULL)
		return op_schema__fail(cc, n, kw, "expected a string");
	return regex(cc, n, kw, v->valuestring, &n->pattern);
}

static op_err kw_format(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                        const char *kw)
{
	if (!cJSON_IsString(v) || v->valuestring == NULL)
		return op_schema__fail(cc, n, kw, "expected a string");
	if (cc->s->format_assert || (n->vocab & OP_SCHEMA__V_FORMAT_ASSERT))
		n->format = (uint8_t)op_schema__format_id(v->valuestring);
	return OP_OK;
}

static op_err kw_required(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                          const char *kw)
{
	return string_array(cc, n, v, kw, &n->required, &n->nrequired);
}

static int prop_cmp(const void *a, const void *b)
{
	return strcmp(((const struct op_schema__prop *)a)->name,
	              ((const struct op_schema__prop *)b)->name);
}

static op_err kw_properties(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                            const char *kw)
{
	if (!cJSON_IsObject(v))
		return op_schema__fail(cc, n, kw, "expected an object");
	size_t k = (size_t)cJSON_GetArraySize(v), i = 0;
	n->props = op_schema__alloc(cc->s, sizeof(*n->props) * k);
	if (n->props == NULL)
		return OP_ENOMEM;
	const cJSON *m;
	cJSON_ArrayForEach (m, v) {
		op_err e = sub(cc, n, m, kw, m->string, -1, &n->props[i].node);
		if (e)
			return e;
		n->props[i++].name = m->string;
	}
	n->nprops = k;
	qsort(n->props, k, sizeof(*n->props), prop_cmp);
	return OP_OK;
}

static op_err kw_pattern_props(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                               const char *kw)
{
	char path[256];
	if (!cJSON_IsObject(v))
		return op_schema__fail(cc, n, kw, "expected an object");
	size_t k = (size_t)cJSON_GetArraySize(v), i = 0;
	n->pprops = op_schema__alloc(cc->s, sizeof(*n->pprops) * k);
	if (n->pprops == NULL)
		return OP_ENOMEM;
	const cJSON *m;
	cJSON_ArrayForEach (m, v) {
		op_err e = sub(cc, n, m, kw, m->string, -1, &n->pprops[i].node);
		if (!e)
			e = regex(cc, n, kwpath(path, sizeof(path), kw, m->string, -1), m->string,
			          &n->pprops[i].rx);
		if (e)
			return e;
		i++;
	}
	n->npprops = k;
	return OP_OK;
}

/* dependencies (draft-07), dependentRequired and dependentSchemas (2020-12)
 * all become entries of n->deps. */
static op_err kw_dependencies(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                              const char *kw)
{
	char path[256];
	bool req = strcmp(kw, "dependentRequired") == 0, sch = strcmp(kw, "dependentSchemas") == 0;
	if (!cJSON_IsObject(v))
		return op_schema__fail(cc, n, kw, "expected an object");
	size_t k = (size_t)cJSON_GetArraySize(v);
	struct op_schema__dep *d = op_schema__alloc(cc->s, sizeof(*d) * (n->ndeps + k));
	if (d == NULL)
		return OP_ENOMEM;
	if (n->ndeps > 0)
		memcpy(d, n->deps, sizeof(*d) * n->ndeps);
	const cJSON *m;
	cJSON_ArrayForEach (m, v) {
		struct op_schema__dep *x = &d[n->ndeps];
		op_err e;
		x->name = m->string;
		if (req || (!sch && cJSON_IsArray(m))) {
			e = string_array(cc, n, m, kwpath(path, sizeof(path), kw, m->string, -1),
			                 &x->req, &x->nreq);
		} else if (!sch && !is_schema_value(m)) {
			e = op_schema__fail(cc, n, kwpath(path, sizeof(path), kw, m->string, -1),
			                    "expected a schema or an array of strings");
		} else {
			e = sub(cc, n, m, kw, m->string, -1, &x->node);
		}
		if (e)
			return e;
		n->ndeps++;
	}
	n->deps = d;
	return OP_OK;
}

static op_err kw_items(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                       const char *kw)
{
	if (n->draft == OP_SCHEMA_DRAFT7 && cJSON_IsArray(v)) {
		n->kw |= OP_SCHEMA__K_ITEMS_ARRAY;
		return sub_array(cc, n, v, kw, false, &n->prefix, &n->nprefix);
	}
	return sub(cc, n, v, kw, NULL, -1, &n->items);
}

static op_err kw_prefix_items(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                              const char *kw)
{
	return sub_array(cc, n, v, kw, true, &n->prefix, &n->nprefix);
}

static op_err kw_applicators(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                             const char *kw)
{
	if (strcmp(kw, "allOf") == 0)
		return sub_array(cc, n, v, kw, true, &n->all_of, &n->nall_of);
	if (strcmp(kw, "anyOf") == 0)
		return sub_array(cc, n, v, kw, true, &n->any_of, &n->nany_of);
	return sub_array(cc, n, v, kw, true, &n->one_of, &n->none_of);
}

static op_err kw_single(struct op_schema__cc *cc, struct op_schema__node *n, const cJSON *v,
                        const char *kw)
{
	static const struct {
		const char *name;
		size_t off;
	} f[] = {
	    {"additionalItems", offsetof(struct op_schema__node, add_items)},
	    {"additionalProperties", offsetof(struct op_schema__node, add_props)},
	    {"contains", offsetof(struct op_schema__node, contains)},
	    {"else", offsetof(struct op_schema__node, else_)},
	    {"if", offsetof(struct op_schema__node, if_)},
	    {"not", offsetof(struct op_schema__node, not_)},
	    {"propertyNames", offsetof(struct op_schema__node, prop_names)},
	    {"then", offsetof(struct op_schema__node, then_)},
	    {"unevaluatedItems", offsetof(struct op_schema__node, uneval_items)},
	    {"unevaluatedProperties", offsetof(struct op_schema__node, uneval_props)},
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (strcmp(kw, f[i].name) == 0)
			return sub(cc, n, v, kw, NULL, -1,
			           (struct op_schema__node **)(void *)((char *)n + f[i].off));
	return OP_EINTERNAL;
}

/* clang-format off */
static const struct kwdef keywords[] = {
	{"$anchor", D2020, OP_SCHEMA__V_CORE, OP_SCHEMA__SUB_NONE, NULL},
	{"$comment", DBOTH, OP_SCHEMA__V_CORE, OP_SCHEMA__SUB_NONE, kw_string},
	{"$defs", D2020, OP_SCHEMA__V_CORE, OP_SCHEMA__SUB_MAP, kw_defs},
	{"$dynamicAnchor", D2020, OP_SCHEMA__V_CORE, OP_SCHEMA__SUB_NONE, NULL},
	{"$dynamicRef", D2020, OP_SCHEMA__V_CORE, OP_SCHEMA__SUB_NONE, kw_dynamic_ref},
	{"$id", DBOTH, OP_SCHEMA__V_CORE, OP_SCHEMA__SUB_NONE, NULL},
	{"$ref", DBOTH, OP_SCHEMA__V_CORE, OP_SCHEMA__SUB_NONE, kw_ref},
	{"$schema", DBOTH, OP_SCHEMA__V_CORE, OP_SCHEMA__SUB_NONE, kw_string},
	{"additionalItems", D7, 0, OP_SCHEMA__SUB_ONE, kw_single},
	{"additionalProperties", DBOTH, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_ONE, kw_single},
	{"allOf", DBOTH, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_ARRAY, kw_applicators},
	{"anyOf", DBOTH, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_ARRAY, kw_applicators},
	{"const", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_const},
	{"contains", DBOTH, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_ONE, kw_single},
	{"definitions", D7, 0, OP_SCHEMA__SUB_MAP, kw_defs},
	{"dependencies", D7, 0, OP_SCHEMA__SUB_DEPS7, kw_dependencies},
	{"dependentRequired", D2020, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_dependencies},
	{"dependentSchemas", D2020, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_MAP, kw_dependencies},
	{"else", DBOTH, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_ONE, kw_single},
	{"enum", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_enum},
	{"exclusiveMaximum", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_number},
	{"exclusiveMinimum", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_number},
	{"format", DBOTH, OP_SCHEMA__V_FORMAT | OP_SCHEMA__V_FORMAT_ASSERT, OP_SCHEMA__SUB_NONE, kw_format},
	{"if", DBOTH, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_ONE, kw_single},
	{"items", D7, 0, OP_SCHEMA__SUB_ITEMS7, kw_items},
	{"items", D2020, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_ONE, kw_items},
	{"maxContains", D2020, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_count},
	{"maxItems", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_count},
	{"maxLength", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_count},
	{"maxProperties", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_count},
	{"maximum", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_number},
	{"minContains", D2020, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_count},
	{"minItems", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_count},
	{"minLength", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_count},
	{"minProperties", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_count},
	{"minimum", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_number},
	{"multipleOf", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_number},
	{"not", DBOTH, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_ONE, kw_single},
	{"oneOf", DBOTH, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_ARRAY, kw_applicators},
	{"pattern", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_pattern},
	{"patternProperties", DBOTH, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_MAP, kw_pattern_props},
	{"prefixItems", D2020, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_ARRAY, kw_prefix_items},
	{"properties", DBOTH, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_MAP, kw_properties},
	{"propertyNames", DBOTH, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_ONE, kw_single},
	{"required", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_required},
	{"then", DBOTH, OP_SCHEMA__V_APPLICATOR, OP_SCHEMA__SUB_ONE, kw_single},
	{"type", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_type},
	{"unevaluatedItems", D2020, OP_SCHEMA__V_UNEVALUATED, OP_SCHEMA__SUB_ONE, kw_single},
	{"unevaluatedProperties", D2020, OP_SCHEMA__V_UNEVALUATED, OP_SCHEMA__SUB_ONE, kw_single},
	{"uniqueItems", DBOTH, OP_SCHEMA__V_VALIDATION, OP_SCHEMA__SUB_NONE, kw_unique},
};
/* clang-format on */

static const struct kwdef *lookup(const char *name, int draft, unsigned vocab)
{
	unsigned d = draft == OP_SCHEMA_DRAFT7 ? D7 : D2020;
	size_t lo = 0, hi = sizeof(keywords) / sizeof(keywords[0]);
	if (name == NULL)
		return NULL;
	/* Binary search for the first row with this name, then the row for
	 * this dialect among the (at most two) that share it. */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(keywords[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < sizeof(keywords) / sizeof(keywords[0]) && strcmp(keywords[lo].name, name) == 0;
	     lo++) {
		const struct kwdef *k = &keywords[lo];
		if (!(k->drafts & d))
			continue;
		if (d == D2020 && k->vocab != 0 && !(k->vocab & vocab))
			return NULL;
		return k;
	}
	return NULL;
}

int op_schema__kw_shape(const char *name, int draft, unsigned vocab)
{
	const struct kwdef *k = lookup(name, draft, vocab);
	return k != NULL ? k->shape : OP_SCHEMA__SUB_NONE;
}

op_err op_schema__compile_node(struct op_schema__cc *cc, struct op_schema__node *n)
{
	const cJSON *j = n->json;
	const cJSON *m;
	op_err e;

	if (cJSON_IsBool(j)) {
		n->is_bool = true;
		n->bool_val = cJSON_IsTrue(j);
		return OP_OK;
	}
	if (!cJSON_IsObject(j))
		return op_schema__fail(cc, n, NULL, "expected a schema (object or boolean)");
	const cJSON *ref = cJSON_GetObjectItemCaseSensitive(j, "$ref");
	if (n->draft == OP_SCHEMA_DRAFT7 && ref != NULL)
		return kw_ref(cc, n, ref, "$ref"); /* siblings are ignored */
	cJSON_ArrayForEach (m, j) {
		const struct kwdef *k = lookup(m->string, n->draft, n->vocab);
		if (k == NULL || k->parse == NULL)
			continue;
		if ((e = k->parse(cc, n, m, k->name)))
			return e;
	}
	/* Keywords that only act beside another one. */
	if (n->if_ == NULL)
		n->then_ = n->else_ = NULL;
	if (!(n->kw & OP_SCHEMA__K_ITEMS_ARRAY))
		n->add_items = NULL;
	if (n->contains == NULL)
		n->kw &= ~(uint32_t)(OP_SCHEMA__K_MIN_CONTAINS | OP_SCHEMA__K_MAX_CONTAINS);

	uint32_t k = n->kw;
	if (k & (OP_SCHEMA__K_MULTIPLE_OF | OP_SCHEMA__K_MAXIMUM | OP_SCHEMA__K_EXCL_MAXIMUM |
	         OP_SCHEMA__K_MINIMUM | OP_SCHEMA__K_EXCL_MINIMUM))
		n->kw |= OP_SCHEMA__G_NUMBER;
	if ((k & (OP_SCHEMA__K_MAX_LENGTH | OP_SCHEMA__K_MIN_LENGTH)) || n->pattern || n->format)
		n->kw |= OP_SCHEMA__G_STRING;
	if ((k & (OP_SCHEMA__K_MAX_ITEMS | OP_SCHEMA__K_MIN_ITEMS | OP_SCHEMA__K_UNIQUE)) ||
	    n->nprefix || n->items || n->add_items || n->contains || (k & OP_SCHEMA__K_ITEMS_ARRAY))
		n->kw |= OP_SCHEMA__G_ARRAY;
	if ((k & (OP_SCHEMA__K_MAX_PROPS | OP_SCHEMA__K_MIN_PROPS)) || n->nrequired || n->nprops ||
	    n->npprops || n->add_props || n->prop_names || n->ndeps)
		n->kw |= OP_SCHEMA__G_OBJECT;
	if (n->nall_of || n->nany_of || n->none_of || n->not_ || n->if_)
		n->kw |= OP_SCHEMA__G_INPLACE;
	return OP_OK;
}
