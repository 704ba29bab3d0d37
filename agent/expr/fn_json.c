/*
 * JSON and conditional functions of the expression language: TOJSON,
 * FROMJSON, SIZE, KEYS, VALUES, TYPEOF, JSONPATH, DEFAULT, IF, AND, OR, NOT,
 * EQUALS, ISNULL, ISEMPTY.
 *
 * JSONPATH implements a documented subset of JSONPath (see
 * docs/expressions.md): `$`, `.name`, `['name']`, `[N]` (negative from the
 * end), `*` / `[*]` wildcards and `..` recursive descent. A path without
 * wildcards or descent is "definite" and yields one value (null when
 * missing), borrowed from its argument; any other path yields a new array of
 * copies of every match, in document order.
 *
 * Key invariant: walking is bounded by OP_EXPR_JSON_DEPTH and the copies one
 * JSONPATH may make by OP_EXPR_MAX_ITEMS nodes, so `$..*` on a hostile
 * message is an error, not an explosion. IF, AND, OR and DEFAULT are lazy:
 * an argument that is not needed is not evaluated.
 */
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/expr/expr_int.h"

/* ---- TOJSON, FROMJSON ---- */

static op_err fn_tojson(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t argc, struct op_xv *out)
{
	(void)argc;
	struct op_buf b;
	op_buf_init(&b, OP_EXPR_MAX_OUT);
	op_err e = op_expr__xv_append_json(&b, &argv[0]);
	return op_expr__buf_result(c, call, &b, e, out);
}

static bool only_space(const char *s, const char *end)
{
	for (; s < end; s++) {
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			return false;
	}
	return true;
}

static op_err fn_fromjson(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                          size_t argc, struct op_xv *out)
{
	(void)argc;
	if (argv[0].kind == OP_XV_NULL) {
		op_expr__xv_null(out);
		return OP_OK;
	}
	if (argv[0].kind != OP_XV_STR)
		return op_expr__fail(c, OP_EINVAL, "%s: argument 1: expected a string, got %s",
		                     call->call.fn->name, op_expr__xv_type(&argv[0]));
	const char *s = argv[0].s, *end = s + argv[0].len, *stop = NULL;
	cJSON *v = cJSON_ParseWithLengthOpts(s, argv[0].len, &stop, false);
	if (v == NULL || stop == NULL || !only_space(stop, end)) {
		bool parsed = v != NULL;
		cJSON_Delete(v);
		/* cJSON reports a failed allocation as a syntax error: tell them apart. */
		void *probe = op_malloc(64);
		if (probe == NULL)
			return op_expr__buf_fail(c, call, OP_ENOMEM);
		op_free(probe);
		size_t at = stop && stop >= s && stop <= end ? (size_t)(stop - s) : 0;
		while (parsed && at < argv[0].len && only_space(s + at, s + at + 1))
			at++; /* point at the extra text, not at the space before it */
		return op_expr__fail(c, OP_EINVAL, "%s: argument 1: invalid JSON at offset %zu",
		                     call->call.fn->name, at);
	}
	op_expr__xv_json_take(out, v);
	return OP_OK;
}

/* ---- SIZE, KEYS, VALUES, TYPEOF ---- */

static op_err fn_size(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                      size_t argc, struct op_xv *out)
{
	(void)argc;
	const struct op_xv *x = &argv[0];
	size_t n = 0;
	if (x->kind == OP_XV_STR) {
		n = op_expr__utf8_count(x->s, x->len);
	} else if (x->kind == OP_XV_JSON && (cJSON_IsArray(x->j) || cJSON_IsObject(x->j))) {
		for (const cJSON *it = x->j->child; it; it = it->next)
			n++;
	} else if (x->kind != OP_XV_NULL) {
		return op_expr__fail(
		    c, OP_EINVAL,
		    "%s: argument 1: expected an array, an object or a string, got %s",
		    call->call.fn->name, op_expr__xv_type(x));
	}
	op_expr__xv_num(out, (double)n);
	return OP_OK;
}

static op_err keys_values(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                          struct op_xv *out, bool keys)
{
	const struct op_xv *x = &argv[0];
	if (x->kind != OP_XV_NULL && (x->kind != OP_XV_JSON || !cJSON_IsObject(x->j)))
		return op_expr__fail(c, OP_EINVAL, "%s: argument 1: expected an object, got %s",
		                     call->call.fn->name, op_expr__xv_type(x));
	cJSON *arr = cJSON_CreateArray();
	if (arr == NULL)
		return op_expr__buf_fail(c, call, OP_ENOMEM);
	for (const cJSON *it = x->kind == OP_XV_JSON ? x->j->child : NULL; it; it = it->next) {
		cJSON *v = keys ? cJSON_CreateString(it->string ? it->string : "")
		                : cJSON_Duplicate(it, 1);
		if (v == NULL) {
			cJSON_Delete(arr);
			return op_expr__buf_fail(c, call, OP_ENOMEM);
		}
		cJSON_AddItemToArray(arr, v);
	}
	op_expr__xv_json_take(out, arr);
	return OP_OK;
}

static op_err fn_keys(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                      size_t argc, struct op_xv *out)
{
	(void)argc;
	return keys_values(c, call, argv, out, true);
}

static op_err fn_values(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t argc, struct op_xv *out)
{
	(void)argc;
	return keys_values(c, call, argv, out, false);
}

static op_err fn_typeof(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t argc, struct op_xv *out)
{
	(void)c;
	(void)call;
	(void)argc;
	const char *t = op_expr__xv_type(&argv[0]);
	op_expr__xv_null(out);
	out->kind = OP_XV_STR;
	out->s = t;
	out->len = strlen(t);
	return OP_OK;
}

/* ---- JSONPATH ---- */

enum jp_sel { JP_KEY, JP_INDEX, JP_WILD };

struct jp_seg {
	uint8_t sel;
	bool desc; /* preceded by ".." */
	const char *key;
	size_t klen;
	long idx;
};

struct jp {
	struct jp_seg *segs;
	size_t n;
	bool definite;
	char *text; /* unescaped keys live here */
};

static void jp_free(struct jp *p)
{
	if (p == NULL)
		return;
	op_free(p->segs);
	op_free(p->text);
	op_free(p);
}

static void jp_free_aux(void *aux)
{
	jp_free(aux);
}

static bool name_char(char ch)
{
	return ch != '.' && ch != '[' && ch != ']' && ch != ' ' && ch != '\t' && ch != '\n' &&
	       ch != '\r' && ch != '\0';
}

/*
 * Compiles path text s (len bytes). Returns OP_OK, OP_ENOMEM, or OP_EINVAL
 * with a message in msg.
 */
static op_err jp_compile(const char *s, size_t len, struct jp **out, char *msg, size_t msglen)
{
	op_err rc = OP_EINVAL;
	size_t i = 0, cap = 0;
	struct jp *p = op_calloc(1, sizeof(*p));
	*out = NULL;
	if (p == NULL || (p->text = op_malloc(len + 1)) == NULL) {
		rc = OP_ENOMEM;
		goto fail;
	}
	char *t = p->text; /* keys are written here, each NUL-terminated */
	p->definite = true;
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	/* "$" is optional: "items[0]" reads as "$.items[0]". */
	bool bare = true;
	if (i < len && s[i] == '$') {
		i++;
		bare = false;
	}
	while (i < len) {
		struct jp_seg seg = {0};
		size_t at = i;
		if (bare && s[i] != '.' && s[i] != '[') {
			/* a leading name without '.': handled below as after a '.' */
		} else if (s[i] == '.' && i + 1 < len && s[i + 1] == '.') {
			seg.desc = true;
			i += 2;
			if (i < len && s[i] == '[')
				goto bracket;
		} else if (s[i] == '.') {
			i++;
		} else if (s[i] == '[') {
			goto bracket;
		} else {
			snprintf(msg, msglen, "expected '.' or '[' at offset %zu", at);
			goto fail;
		}
		bare = false;
		/* a name or * after '.' or '..' */
		if (i < len && s[i] == '*') {
			seg.sel = JP_WILD;
			i++;
		} else {
			size_t k = i;
			while (i < len && name_char(s[i]))
				i++;
			if (i == k) {
				snprintf(msg, msglen, "expected a name at offset %zu", k);
				goto fail;
			}
			seg.sel = JP_KEY;
			seg.key = t;
			seg.klen = i - k;
			memcpy(t, s + k, seg.klen);
			t += seg.klen;
			*t++ = '\0';
		}
		goto add;
	bracket:
		bare = false;
		i++; /* '[' */
		while (i < len && s[i] == ' ')
			i++;
		if (i < len && s[i] == '*') {
			seg.sel = JP_WILD;
			i++;
		} else if (i < len && (s[i] == '\'' || s[i] == '"')) {
			char q = s[i++];
			seg.sel = JP_KEY;
			seg.key = t;
			while (i < len && s[i] != q) {
				if (s[i] == '\\' && i + 1 < len)
					i++;
				*t++ = s[i++];
			}
			if (i >= len) {
				snprintf(msg, msglen, "unterminated quoted name at offset %zu", at);
				goto fail;
			}
			seg.klen = (size_t)(t - seg.key);
			*t++ = '\0';
			i++;
		} else if (i < len && (s[i] == '-' || (s[i] >= '0' && s[i] <= '9'))) {
			bool neg = s[i] == '-';
			if (neg)
				i++;
			size_t k = i;
			long v = 0;
			while (i < len && s[i] >= '0' && s[i] <= '9' && v < 1000000000L)
				v = v * 10 + (s[i++] - '0');
			if (i == k || (i < len && s[i] >= '0' && s[i] <= '9')) {
				snprintf(msg, msglen, "bad index at offset %zu", at);
				goto fail;
			}
			seg.sel = JP_INDEX;
			seg.idx = neg ? -v : v;
		} else {
			snprintf(msg, msglen,
			         "expected *, an index or a quoted name after '[' at offset %zu",
			         at);
			goto fail;
		}
		while (i < len && s[i] == ' ')
			i++;
		if (i >= len || s[i] != ']') {
			snprintf(msg, msglen, "expected ']' at offset %zu", i);
			goto fail;
		}
		i++;
	add:
		if (p->n == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			if (ncap > OP_EXPR_MAX_ARGS + 1) {
				snprintf(msg, msglen, "path longer than %d steps",
				         OP_EXPR_MAX_ARGS);
				goto fail;
			}
			struct jp_seg *v = op_realloc(p->segs, ncap * sizeof(*v));
			if (v == NULL) {
				rc = OP_ENOMEM;
				goto fail;
			}
			p->segs = v;
			cap = ncap;
		}
		if (seg.desc || seg.sel == JP_WILD)
			p->definite = false;
		p->segs[p->n++] = seg;
	}
	*out = p;
	return OP_OK;
fail:
	if (rc == OP_ENOMEM && msg && msglen)
		snprintf(msg, msglen, "out of memory");
	jp_free(p);
	return rc;
}

static op_err prep_jsonpath(struct op_node *call, char *err, size_t errlen)
{
	const char *s;
	char msg[128];
	if (!op_expr__lit_str(call, 1, &s))
		return OP_OK;
	struct jp *p;
	op_err e = jp_compile(s, strlen(s), &p, msg, sizeof(msg));
	if (e == OP_ENOMEM) {
		if (err && errlen)
			snprintf(err, errlen, "out of memory");
		return e;
	}
	if (e != OP_OK)
		return op_expr__perr(err, errlen, call->call.args[1]->col,
		                     "JSONPATH: argument 2: bad path: %s", msg);
	call->call.aux = p;
	return OP_OK;
}

static const cJSON *jp_member(const cJSON *o, const char *k, size_t len)
{
	for (const cJSON *it = o->child; it; it = it->next) {
		if (it->string && strncmp(it->string, k, len) == 0 && it->string[len] == '\0')
			return it;
	}
	return NULL;
}

static const cJSON *jp_index(const cJSON *a, long idx)
{
	if (idx < 0) {
		long n = 0;
		for (const cJSON *it = a->child; it; it = it->next)
			n++;
		idx += n;
		if (idx < 0)
			return NULL;
	}
	const cJSON *it = a->child;
	while (it && idx-- > 0)
		it = it->next;
	return it;
}

/* Applies a definite path. */
static const cJSON *jp_get(const struct jp *p, const cJSON *v)
{
	for (size_t i = 0; i < p->n && v; i++) {
		const struct jp_seg *s = &p->segs[i];
		if (s->sel == JP_KEY)
			v = cJSON_IsObject(v) ? jp_member(v, s->key, s->klen) : NULL;
		else
			v = cJSON_IsArray(v) ? jp_index(v, s->idx) : NULL;
	}
	return v;
}

struct jp_out {
	cJSON *arr;
	size_t budget; /* nodes that may still be copied */
	op_err e;
};

/* Number of nodes in v, counting at most limit + 1. */
static size_t count_nodes(const cJSON *v, size_t limit, int depth)
{
	size_t n = 1;
	if (depth > OP_EXPR_JSON_DEPTH)
		return limit + 1;
	for (const cJSON *it = v->child; it && n <= limit; it = it->next)
		n += count_nodes(it, limit - n, depth + 1);
	return n;
}

static void jp_emit(struct jp_out *o, const cJSON *v, int depth)
{
	if (o->e != OP_OK)
		return;
	size_t n = count_nodes(v, o->budget, depth);
	if (n > o->budget) {
		o->e = OP_ELIMIT;
		return;
	}
	o->budget -= n;
	cJSON *d = cJSON_Duplicate(v, 1);
	if (d == NULL) {
		o->e = OP_ENOMEM;
		return;
	}
	cJSON_AddItemToArray(o->arr, d);
}

static void jp_walk(const struct jp *p, size_t i, const cJSON *v, int depth, struct jp_out *o);

/* Applies selector s (without descent) to v, continuing with segment i + 1. */
static void jp_select(const struct jp *p, size_t i, const cJSON *v, int depth, struct jp_out *o)
{
	const struct jp_seg *s = &p->segs[i];
	if (s->sel == JP_WILD) {
		if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
			for (const cJSON *it = v->child; it && o->e == OP_OK; it = it->next)
				jp_walk(p, i + 1, it, depth + 1, o);
		}
		return;
	}
	const cJSON *r = NULL;
	if (s->sel == JP_KEY && cJSON_IsObject(v))
		r = jp_member(v, s->key, s->klen);
	else if (s->sel == JP_INDEX && cJSON_IsArray(v))
		r = jp_index(v, s->idx);
	if (r)
		jp_walk(p, i + 1, r, depth + 1, o);
}

/* Selects with descent: v and every node below it. */
static void jp_descend(const struct jp *p, size_t i, const cJSON *v, int depth, struct jp_out *o)
{
	if (depth > OP_EXPR_JSON_DEPTH) {
		o->e = OP_ELIMIT;
		return;
	}
	jp_select(p, i, v, depth, o);
	if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
		for (const cJSON *it = v->child; it && o->e == OP_OK; it = it->next)
			jp_descend(p, i, it, depth + 1, o);
	}
}

static void jp_walk(const struct jp *p, size_t i, const cJSON *v, int depth, struct jp_out *o)
{
	if (o->e != OP_OK)
		return;
	if (depth > OP_EXPR_JSON_DEPTH) {
		o->e = OP_ELIMIT;
		return;
	}
	if (i == p->n) {
		jp_emit(o, v, depth);
		return;
	}
	if (p->segs[i].desc)
		jp_descend(p, i, v, depth, o);
	else
		jp_select(p, i, v, depth, o);
}

static op_err fn_jsonpath(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                          size_t argc, struct op_xv *out)
{
	(void)argc;
	struct jp *own = NULL;
	const struct jp *p = call->call.aux;
	op_err e = OP_OK;
	if (p == NULL) {
		char msg[128];
		e = op_expr__want_str(c, call, 1, &argv[1]);
		if (e != OP_OK)
			return e;
		e = jp_compile(argv[1].s, argv[1].len, &own, msg, sizeof(msg));
		if (e == OP_ENOMEM)
			return op_expr__buf_fail(c, call, e);
		if (e != OP_OK)
			return op_expr__fail(c, e, "%s: argument 2: bad path: %s",
			                     call->call.fn->name, msg);
		p = own;
	}
	struct op_xv *a = &argv[0];
	if (p->n == 0) {
		op_expr__xv_move(out, a);
		goto done;
	}
	const cJSON *root = a->kind == OP_XV_JSON ? a->j : NULL;
	if (p->definite) {
		const cJSON *r = root ? jp_get(p, root) : NULL;
		if (r == NULL) {
			op_expr__xv_null(out);
		} else if (!a->own) {
			op_expr__xv_of(out, r);
		} else {
			cJSON *d = cJSON_Duplicate(r, 1);
			if (d == NULL) {
				e = op_expr__buf_fail(c, call, OP_ENOMEM);
				goto done;
			}
			op_expr__xv_json_take(out, d);
		}
		goto done;
	}
	struct jp_out o = {cJSON_CreateArray(), OP_EXPR_MAX_ITEMS, OP_OK};
	if (o.arr == NULL) {
		e = op_expr__buf_fail(c, call, OP_ENOMEM);
		goto done;
	}
	if (root)
		jp_walk(p, 0, root, 0, &o);
	if (o.e != OP_OK) {
		cJSON_Delete(o.arr);
		if (o.e == OP_ELIMIT)
			e = op_expr__fail(
			    c, o.e, "%s: result larger than %u values or nested deeper than %d",
			    call->call.fn->name, OP_EXPR_MAX_ITEMS, OP_EXPR_JSON_DEPTH);
		else
			e = op_expr__buf_fail(c, call, o.e);
		goto done;
	}
	op_expr__xv_json_take(out, o.arr);
done:
	jp_free(own);
	return e;
}

/* ---- conditionals ---- */

/* IF(cond, then[, else]): only the chosen branch is evaluated. */
static op_err fn_if(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                    size_t argc, struct op_xv *out)
{
	(void)argv;
	struct op_xv cond;
	op_err e = op_expr__eval(c, call->call.args[0], &cond);
	if (e != OP_OK)
		return e;
	bool t = op_expr__xv_truthy(&cond);
	op_expr__xv_drop(&cond);
	if (t)
		return op_expr__eval(c, call->call.args[1], out);
	if (argc > 2)
		return op_expr__eval(c, call->call.args[2], out);
	op_expr__xv_null(out);
	return OP_OK;
}

/* AND / OR: short-circuit, always a boolean. */
static op_err and_or(struct op_expr__ctx *c, const struct op_node *call, size_t argc,
                     struct op_xv *out, bool is_and)
{
	bool t = is_and;
	for (size_t i = 0; i < argc && t == is_and; i++) {
		struct op_xv x;
		op_err e = op_expr__eval(c, call->call.args[i], &x);
		if (e != OP_OK)
			return e;
		t = op_expr__xv_truthy(&x);
		op_expr__xv_drop(&x);
	}
	op_expr__xv_bool(out, t);
	return OP_OK;
}

static op_err fn_and(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                     size_t argc, struct op_xv *out)
{
	(void)argv;
	return and_or(c, call, argc, out, true);
}

static op_err fn_or(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                    size_t argc, struct op_xv *out)
{
	(void)argv;
	return and_or(c, call, argc, out, false);
}

/* DEFAULT(a, b, ...): the first argument that is not null; later ones are not evaluated. */
static op_err fn_default(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                         size_t argc, struct op_xv *out)
{
	(void)argv;
	for (size_t i = 0; i < argc; i++) {
		op_err e = op_expr__eval(c, call->call.args[i], out);
		if (e != OP_OK || out->kind != OP_XV_NULL)
			return e;
		op_expr__xv_drop(out);
	}
	op_expr__xv_null(out);
	return OP_OK;
}

static op_err fn_not(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                     size_t argc, struct op_xv *out)
{
	(void)c;
	(void)call;
	(void)argc;
	op_expr__xv_bool(out, !op_expr__xv_truthy(&argv[0]));
	return OP_OK;
}

static op_err fn_equals(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t argc, struct op_xv *out)
{
	(void)argc;
	int r = op_expr__xv_equal(&argv[0], &argv[1]);
	if (r < 0)
		return op_expr__fail(c, OP_ELIMIT, "%s: values nest too deeply",
		                     call->call.fn->name);
	op_expr__xv_bool(out, r == 1);
	return OP_OK;
}

static op_err fn_isnull(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t argc, struct op_xv *out)
{
	(void)c;
	(void)call;
	(void)argc;
	op_expr__xv_bool(out, argv[0].kind == OP_XV_NULL);
	return OP_OK;
}

/* ISEMPTY: null, "", [] and {}. */
static op_err fn_isempty(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                         size_t argc, struct op_xv *out)
{
	(void)c;
	(void)call;
	(void)argc;
	const struct op_xv *x = &argv[0];
	bool empty = x->kind == OP_XV_NULL || (x->kind == OP_XV_STR && x->len == 0) ||
	             (x->kind == OP_XV_JSON && (cJSON_IsArray(x->j) || cJSON_IsObject(x->j)) &&
	              x->j->child == NULL);
	op_expr__xv_bool(out, empty);
	return OP_OK;
}

const struct op_expr__fn op_expr__fns_json[] = {
    {"TOJSON", 1, 1, false, fn_tojson, NULL, NULL},
    {"FROMJSON", 1, 1, false, fn_fromjson, NULL, NULL},
    {"SIZE", 1, 1, false, fn_size, NULL, NULL},
    {"KEYS", 1, 1, false, fn_keys, NULL, NULL},
    {"VALUES", 1, 1, false, fn_values, NULL, NULL},
    {"TYPEOF", 1, 1, false, fn_typeof, NULL, NULL},
    {"JSONPATH", 2, 2, false, fn_jsonpath, prep_jsonpath, jp_free_aux},
    {"DEFAULT", 2, OP_FN_VARIADIC, true, fn_default, NULL, NULL},
    {"IF", 2, 3, true, fn_if, NULL, NULL},
    {"AND", 1, OP_FN_VARIADIC, true, fn_and, NULL, NULL},
    {"OR", 1, OP_FN_VARIADIC, true, fn_or, NULL, NULL},
    {"NOT", 1, 1, false, fn_not, NULL, NULL},
    {"EQUALS", 2, 2, false, fn_equals, NULL, NULL},
    {"ISNULL", 1, 1, false, fn_isnull, NULL, NULL},
    {"ISEMPTY", 1, 1, false, fn_isempty, NULL, NULL},
    {NULL, 0, 0, false, NULL, NULL, NULL},
};
