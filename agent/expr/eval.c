/*
 * Evaluating compiled expressions: the tree walk, operators, paths, the
 * op_xv value helpers, text and JSON output of values, and the public
 * op_expr_eval / op_val API.
 *
 * Key invariant: evaluation never writes to the compiled tree or to the
 * environment, so one op_expr can be evaluated by many threads at once, and
 * a path lookup that lands on an existing node borrows it (no allocation).
 * Every value leaving a function is either borrowed from the environment or
 * the tree, or owned by exactly one op_xv; every string and JSON text built
 * is capped at OP_EXPR_MAX_OUT bytes (OP_ELIMIT past it).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/expr/expr_int.h"

/* The null returned (borrowed) for missing values. Never written. */
static cJSON null_node = {.type = cJSON_NULL};

/* ---- errors ---- */

op_err op_expr__fail(struct op_expr__ctx *c, op_err code, const char *fmt, ...)
{
	if (c->err && c->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->err, c->errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

op_err op_expr__perr(char *err, size_t errlen, uint32_t col, const char *fmt, ...)
{
	if (err && errlen) {
		int n = snprintf(err, errlen, "column %u: ", col);
		if (n >= 0 && (size_t)n < errlen) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return OP_EPARSE;
}

op_err op_expr__buf_fail(struct op_expr__ctx *c, const struct op_node *call, op_err e)
{
	if (e == OP_ELIMIT)
		return op_expr__fail(c, e, "%s: result longer than %u bytes", call->call.fn->name,
		                     OP_EXPR_MAX_OUT);
	if (e == OP_ENOMEM)
		return op_expr__fail(c, e, "%s: out of memory", call->call.fn->name);
	return op_expr__fail(c, e, "%s: %s", call->call.fn->name, op_err_str(e));
}

static op_err oom(struct op_expr__ctx *c)
{
	return op_expr__fail(c, OP_ENOMEM, "out of memory");
}

/* ---- values ---- */

void op_expr__xv_null(struct op_xv *x)
{
	memset(x, 0, sizeof(*x));
	x->kind = OP_XV_NULL;
}

void op_expr__xv_num(struct op_xv *x, double n)
{
	op_expr__xv_null(x);
	x->kind = OP_XV_NUM;
	x->n = n;
}

void op_expr__xv_bool(struct op_xv *x, bool b)
{
	op_expr__xv_null(x);
	x->kind = OP_XV_BOOL;
	x->b = b;
}

void op_expr__xv_str_take(struct op_xv *x, char *buf, size_t len)
{
	op_expr__xv_null(x);
	x->kind = OP_XV_STR;
	x->own = true;
	x->s = buf;
	x->len = len;
}

void op_expr__xv_json_take(struct op_xv *x, cJSON *j)
{
	op_expr__xv_of(x, j);
	x->own = true;
	if (x->kind != OP_XV_JSON) {
		/* A scalar node: keep its value, drop the node. */
		if (x->kind == OP_XV_STR) {
			char *s = j->valuestring;
			size_t len = x->len;
			j->valuestring = NULL;
			cJSON_Delete(j);
			if (s == NULL) {
				op_expr__xv_null(x);
				x->kind = OP_XV_STR;
				x->s = "";
				return;
			}
			op_expr__xv_str_take(x, s, len);
			return;
		}
		struct op_xv v = *x;
		cJSON_Delete(j);
		v.own = false;
		v.j = NULL;
		*x = v;
	}
}

void op_expr__xv_of(struct op_xv *x, const cJSON *j)
{
	op_expr__xv_null(x);
	x->j = (cJSON *)j;
	if (j == NULL || cJSON_IsNull(j) || cJSON_IsInvalid(j)) {
		x->kind = OP_XV_NULL;
	} else if (cJSON_IsBool(j)) {
		x->kind = OP_XV_BOOL;
		x->b = cJSON_IsTrue(j);
	} else if (cJSON_IsNumber(j)) {
		x->kind = OP_XV_NUM;
		x->n = j->valuedouble;
	} else if (cJSON_IsString(j)) {
		x->kind = OP_XV_STR;
		x->s = j->valuestring ? j->valuestring : "";
		x->len = strlen(x->s);
	} else {
		x->kind = OP_XV_JSON;
	}
}

void op_expr__xv_drop(struct op_xv *x)
{
	if (x->own) {
		if (x->kind == OP_XV_STR)
			op_free((char *)x->s);
		else if (x->kind == OP_XV_JSON)
			cJSON_Delete(x->j);
	}
	op_expr__xv_null(x);
}

void op_expr__xv_move(struct op_xv *to, struct op_xv *from)
{
	*to = *from;
	op_expr__xv_null(from);
}

op_err op_expr__xv_str_copy(struct op_expr__ctx *c, struct op_xv *x, const char *s, size_t len)
{
	op_expr__xv_null(x);
	if (len > OP_EXPR_MAX_OUT)
		return op_expr__fail(c, OP_ELIMIT, "result longer than %u bytes", OP_EXPR_MAX_OUT);
	char *d = op_strndup(s, len);
	if (d == NULL)
		return oom(c);
	op_expr__xv_str_take(x, d, len);
	return OP_OK;
}

/* A string node that takes buf (allocated like cJSON's own strings). */
static cJSON *string_node(char *buf)
{
	cJSON *v = cJSON_CreateNull();
	if (v == NULL)
		return NULL;
	v->type = cJSON_String;
	v->valuestring = buf;
	return v;
}

op_err op_expr__xv_to_json(struct op_expr__ctx *c, struct op_xv *x, cJSON **out)
{
	cJSON *v = NULL;
	*out = NULL;
	if (x->kind == OP_XV_JSON && x->own) {
		v = x->j;
		op_expr__xv_null(x);
		*out = v;
		return OP_OK;
	}
	if (!x->own && x->j) {
		v = cJSON_Duplicate(x->j, 1);
	} else {
		switch (x->kind) {
		case OP_XV_NULL:
			v = cJSON_CreateNull();
			break;
		case OP_XV_BOOL:
			v = cJSON_CreateBool(x->b);
			break;
		case OP_XV_NUM:
			v = cJSON_CreateNumber(x->n);
			break;
		case OP_XV_STR: {
			char *buf = x->own ? (char *)x->s : op_strndup(x->s, x->len);
			if (buf == NULL)
				break;
			v = string_node(buf);
			if (v == NULL) {
				if (!x->own)
					op_free(buf);
				break;
			}
			if (x->own)
				op_expr__xv_null(x); /* buf moved into v */
			break;
		}
		default:
			break;
		}
	}
	if (v == NULL)
		return oom(c);
	op_expr__xv_drop(x);
	*out = v;
	return OP_OK;
}

bool op_expr__xv_truthy(const struct op_xv *x)
{
	switch (x->kind) {
	case OP_XV_BOOL:
		return x->b;
	case OP_XV_NUM:
		return x->n != 0;
	case OP_XV_STR:
		return x->len > 0;
	case OP_XV_JSON:
		return true;
	default:
		return false;
	}
}

bool op_json_truthy(const cJSON *v)
{
	struct op_xv x;
	op_expr__xv_of(&x, v);
	return op_expr__xv_truthy(&x);
}

const char *op_expr__xv_type(const struct op_xv *x)
{
	switch (x->kind) {
	case OP_XV_BOOL:
		return "boolean";
	case OP_XV_NUM:
		return "number";
	case OP_XV_STR:
		return "string";
	case OP_XV_JSON:
		return cJSON_IsArray(x->j) ? "array" : cJSON_IsObject(x->j) ? "object" : "raw JSON";
	default:
		return "null";
	}
}

int op_expr__json_equal(const cJSON *a, const cJSON *b, int depth)
{
	if (depth > OP_EXPR_JSON_DEPTH)
		return -1;
	struct op_xv xa, xb;
	op_expr__xv_of(&xa, a);
	op_expr__xv_of(&xb, b);
	if (xa.kind != xb.kind)
		return 0;
	switch (xa.kind) {
	case OP_XV_NULL:
		return 1;
	case OP_XV_BOOL:
		return xa.b == xb.b;
	case OP_XV_NUM:
		return xa.n == xb.n;
	case OP_XV_STR:
		return xa.len == xb.len && memcmp(xa.s, xb.s, xa.len) == 0;
	default:
		break;
	}
	if (cJSON_IsArray(a) != cJSON_IsArray(b) || cJSON_IsObject(a) != cJSON_IsObject(b))
		return 0;
	if (cJSON_IsRaw(a))
		return strcmp(a->valuestring ? a->valuestring : "",
		              b->valuestring ? b->valuestring : "") == 0;
	if (cJSON_IsArray(a)) {
		const cJSON *ea = a->child, *eb = b->child;
		for (; ea && eb; ea = ea->next, eb = eb->next) {
			int r = op_expr__json_equal(ea, eb, depth + 1);
			if (r != 1)
				return r;
		}
		return ea == NULL && eb == NULL;
	}
	size_t na = 0, nb = 0;
	for (const cJSON *e = a->child; e; e = e->next)
		na++;
	for (const cJSON *e = b->child; e; e = e->next)
		nb++;
	if (na != nb)
		return 0;
	for (const cJSON *e = a->child; e; e = e->next) {
		const cJSON *o = e->string ? cJSON_GetObjectItemCaseSensitive(b, e->string) : NULL;
		if (o == NULL)
			return 0;
		int r = op_expr__json_equal(e, o, depth + 1);
		if (r != 1)
			return r;
	}
	return 1;
}

int op_expr__xv_equal(const struct op_xv *a, const struct op_xv *b)
{
	if (a->kind != b->kind)
		return 0;
	switch (a->kind) {
	case OP_XV_NULL:
		return 1;
	case OP_XV_BOOL:
		return a->b == b->b;
	case OP_XV_NUM:
		return a->n == b->n;
	case OP_XV_STR:
		return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
	default:
		return op_expr__json_equal(a->j, b->j, 0);
	}
}

/* ---- text output ---- */

size_t op_expr__num_format(double d, char *out, size_t outlen)
{
	return op_json_num_format(d, out, outlen);
}

static op_err num_append(struct op_buf *b, double d)
{
	char tmp[64];
	size_t n = op_json_num_format(d, tmp, sizeof(tmp));
	return op_buf_add(b, tmp, n);
}

op_err op_expr__json_append(struct op_buf *b, const cJSON *v, int depth)
{
	(void)depth; /* op_json_append bounds the depth itself */
	return op_json_append(b, v, OP_JSON_COMPACT);
}

op_err op_expr__xv_append_text(struct op_buf *b, const struct op_xv *x)
{
	switch (x->kind) {
	case OP_XV_NULL:
		return OP_OK;
	case OP_XV_BOOL:
		return op_buf_adds(b, x->b ? "true" : "false");
	case OP_XV_NUM:
		return num_append(b, x->n);
	case OP_XV_STR:
		return op_buf_add(b, x->s, x->len);
	default:
		return op_expr__json_append(b, x->j, 0);
	}
}

op_err op_expr__xv_append_json(struct op_buf *b, const struct op_xv *x)
{
	switch (x->kind) {
	case OP_XV_NULL:
		return op_buf_add(b, "null", 4);
	case OP_XV_STR:
		return op_json_append_string(b, x->s, x->len);
	default:
		return op_expr__xv_append_text(b, x);
	}
}

/* ---- argument coercion ---- */

op_err op_expr__want_str(struct op_expr__ctx *c, const struct op_node *call, size_t i,
                         struct op_xv *x)
{
	char tmp[40];
	switch (x->kind) {
	case OP_XV_STR:
		return OP_OK;
	case OP_XV_NULL:
		op_expr__xv_null(x);
		x->kind = OP_XV_STR;
		x->s = "";
		return OP_OK;
	case OP_XV_BOOL: {
		bool b = x->b;
		op_expr__xv_null(x);
		x->kind = OP_XV_STR;
		x->s = b ? "true" : "false";
		x->len = strlen(x->s);
		return OP_OK;
	}
	case OP_XV_NUM: {
		size_t n = op_expr__num_format(x->n, tmp, sizeof(tmp));
		char *d = op_strndup(tmp, n);
		if (d == NULL)
			return op_expr__buf_fail(c, call, OP_ENOMEM);
		op_expr__xv_str_take(x, d, n);
		return OP_OK;
	}
	default:
		return op_expr__fail(c, OP_EINVAL, "%s: argument %zu: expected a string, got %s",
		                     call->call.fn->name, i + 1, op_expr__xv_type(x));
	}
}

op_err op_expr__want_num(struct op_expr__ctx *c, const struct op_node *call, size_t i,
                         const struct op_xv *x, double *out)
{
	if (x->kind != OP_XV_NUM) {
		*out = 0;
		return op_expr__fail(c, OP_EINVAL, "%s: argument %zu: expected a number, got %s",
		                     call->call.fn->name, i + 1, op_expr__xv_type(x));
	}
	*out = x->n;
	return OP_OK;
}

op_err op_expr__want_int(struct op_expr__ctx *c, const struct op_node *call, size_t i,
                         const struct op_xv *x, long lo, long hi, long *out)
{
	double d;
	*out = 0;
	op_err e = op_expr__want_num(c, call, i, x, &d);
	if (e != OP_OK)
		return e;
	if (d != floor(d) || d < (double)lo || d > (double)hi)
		return op_expr__fail(
		    c, OP_EINVAL, "%s: argument %zu: expected an integer from %ld to %ld, got %g",
		    call->call.fn->name, i + 1, lo, hi, d);
	*out = (long)d;
	return OP_OK;
}

bool op_expr__lit_str(const struct op_node *call, size_t i, const char **s)
{
	if (i >= call->call.n)
		return false;
	const struct op_node *a = call->call.args[i];
	if (a->kind != OP_N_CONST || !cJSON_IsString(a->k.v))
		return false;
	*s = a->k.v->valuestring;
	return true;
}

/* ---- paths ---- */

static const cJSON *array_at(const cJSON *a, long idx)
{
	if (!cJSON_IsArray(a))
		return NULL;
	if (idx < 0) {
		long n = 0;
		for (const cJSON *c = a->child; c; c = c->next)
			n++;
		idx += n;
		if (idx < 0)
			return NULL;
	}
	const cJSON *c = a->child;
	while (c && idx-- > 0)
		c = c->next;
	return c;
}

/* Object member by a key that need not be NUL-terminated. */
static const cJSON *member(const cJSON *o, const char *k, size_t len)
{
	if (!cJSON_IsObject(o))
		return NULL;
	for (const cJSON *c = o->child; c; c = c->next) {
		if (c->string && strncmp(c->string, k, len) == 0 && c->string[len] == '\0')
			return c;
	}
	return NULL;
}

static op_err eval_path(struct op_expr__ctx *c, const struct op_node *n, struct op_xv *out)
{
	struct op_xv base;
	op_err e = op_expr__eval(c, n->p.base, &base);
	if (e != OP_OK)
		return e;
	const cJSON *cur = base.kind == OP_XV_NULL ? NULL : base.j;
	const cJSON *parent = NULL;
	for (size_t i = 0; i < n->p.n && cur; i++) {
		const struct op_seg *s = &n->p.segs[i];
		parent = cur;
		if (s->kind == OP_SEG_KEY) {
			cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, s->key)
			                          : NULL;
		} else if (s->kind == OP_SEG_INDEX) {
			cur = array_at(cur, s->idx);
		} else {
			struct op_xv k;
			e = op_expr__eval(c, s->expr, &k);
			if (e != OP_OK) {
				op_expr__xv_drop(&base);
				return e;
			}
			if (k.kind == OP_XV_NUM) {
				cur = k.n == floor(k.n) && fabs(k.n) < 1e15
				          ? array_at(cur, (long)k.n)
				          : NULL;
			} else if (k.kind == OP_XV_STR) {
				cur = member(cur, k.s, k.len);
			} else if (k.kind == OP_XV_NULL) {
				cur = NULL;
			} else {
				const char *t = op_expr__xv_type(&k);
				op_expr__xv_drop(&k);
				op_expr__xv_drop(&base);
				return op_expr__fail(c, OP_EINVAL,
				                     "column %u: an index must be a number or a "
				                     "string, got %s",
				                     s->expr->col, t);
			}
			op_expr__xv_drop(&k);
		}
	}
	if (!base.own) {
		op_expr__xv_of(out, cur);
		return OP_OK;
	}
	/* The base is a value we built (FROMJSON(...).a): keep only the part we reached.
	 * A built scalar (CONCAT(...).a) has no members, so any segment gives null. */
	if (base.kind != OP_XV_JSON || cur == NULL) {
		op_expr__xv_drop(&base);
		op_expr__xv_null(out);
		return OP_OK;
	}
	if (cur == base.j) {
		op_expr__xv_move(out, &base);
		return OP_OK;
	}
	cJSON *d = cJSON_DetachItemViaPointer((cJSON *)parent, (cJSON *)cur);
	op_expr__xv_drop(&base);
	op_expr__xv_json_take(out, d);
	return OP_OK;
}

/* ---- operators ---- */

static const char *const op_names[] = {
    [OP_B_COALESCE] = "??", [OP_B_OR] = "||", [OP_B_AND] = "&&", [OP_B_EQ] = "==", [OP_B_NE] = "!=",
    [OP_B_LT] = "<",        [OP_B_LE] = "<=", [OP_B_GT] = ">",   [OP_B_GE] = ">=", [OP_B_ADD] = "+",
    [OP_B_SUB] = "-",       [OP_B_MUL] = "*", [OP_B_DIV] = "/",  [OP_B_MOD] = "%",
};

static op_err concat_text(struct op_expr__ctx *c, struct op_xv *a, struct op_xv *b,
                          struct op_xv *out)
{
	struct op_buf buf;
	op_buf_init(&buf, OP_EXPR_MAX_OUT);
	op_err e = op_expr__xv_append_text(&buf, a);
	if (e == OP_OK)
		e = op_expr__xv_append_text(&buf, b);
	if (e == OP_OK && buf.data == NULL)
		e = op_buf_add(&buf, "", 0);
	if (e != OP_OK) {
		op_buf_fini(&buf);
		if (e == OP_ENOMEM)
			return oom(c);
		return op_expr__fail(c, e, "operator '+': result longer than %u bytes",
		                     OP_EXPR_MAX_OUT);
	}
	size_t len = buf.len;
	op_expr__xv_str_take(out, op_buf_take(&buf), len);
	return OP_OK;
}

static op_err concat_arrays(struct op_expr__ctx *c, struct op_xv *a, struct op_xv *b,
                            struct op_xv *out)
{
	cJSON *r = NULL;
	op_err e = op_expr__xv_to_json(c, a, &r);
	if (e != OP_OK)
		return e;
	struct op_xv *src = b;
	size_t n = 0;
	for (const cJSON *it = r->child; it; it = it->next)
		n++;
	for (const cJSON *it = src->j->child; it; it = it->next) {
		if (n++ >= OP_EXPR_MAX_ITEMS) {
			cJSON_Delete(r);
			return op_expr__fail(c, OP_ELIMIT,
			                     "operator '+': array longer than %u items",
			                     OP_EXPR_MAX_ITEMS);
		}
		cJSON *d = cJSON_Duplicate(it, 1);
		if (d == NULL) {
			cJSON_Delete(r);
			return oom(c);
		}
		cJSON_AddItemToArray(r, d);
	}
	op_expr__xv_json_take(out, r);
	return OP_OK;
}

static op_err compare(struct op_expr__ctx *c, int op, const struct op_xv *a, const struct op_xv *b,
                      bool *res)
{
	int r;
	*res = false;
	if (a->kind == OP_XV_NULL || b->kind == OP_XV_NULL)
		return OP_OK;
	if (a->kind == OP_XV_NUM && b->kind == OP_XV_NUM) {
		r = a->n < b->n ? -1 : a->n > b->n ? 1 : 0;
	} else if (a->kind == OP_XV_STR && b->kind == OP_XV_STR) {
		size_t m = a->len < b->len ? a->len : b->len;
		r = memcmp(a->s, b->s, m);
		if (r == 0)
			r = a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
	} else {
		return op_expr__fail(c, OP_EINVAL, "operator '%s': cannot compare %s and %s",
		                     op_names[op], op_expr__xv_type(a), op_expr__xv_type(b));
	}
	switch (op) {
	case OP_B_LT:
		*res = r < 0;
		break;
	case OP_B_LE:
		*res = r <= 0;
		break;
	case OP_B_GT:
		*res = r > 0;
		break;
	default:
		*res = r >= 0;
		break;
	}
	return OP_OK;
}

/* Applies a non-short-circuit operator; a and b are consumed. */
static op_err binop(struct op_expr__ctx *c, int op, struct op_xv *a, struct op_xv *b,
                    struct op_xv *out)
{
	op_err e = OP_OK;
	op_expr__xv_null(out);
	switch (op) {
	case OP_B_EQ:
	case OP_B_NE: {
		int r = op_expr__xv_equal(a, b);
		if (r < 0)
			e = op_expr__fail(c, OP_ELIMIT, "operator '%s': values nest too deeply",
			                  op_names[op]);
		else
			op_expr__xv_bool(out, (r == 1) == (op == OP_B_EQ));
		break;
	}
	case OP_B_LT:
	case OP_B_LE:
	case OP_B_GT:
	case OP_B_GE: {
		bool r;
		e = compare(c, op, a, b, &r);
		if (e == OP_OK)
			op_expr__xv_bool(out, r);
		break;
	}
	case OP_B_ADD:
		if (a->kind == OP_XV_NUM && b->kind == OP_XV_NUM) {
			op_expr__xv_num(out, a->n + b->n);
			break;
		}
		if (a->kind == OP_XV_STR || b->kind == OP_XV_STR) {
			e = concat_text(c, a, b, out);
			break;
		}
		if (a->kind == OP_XV_JSON && b->kind == OP_XV_JSON && cJSON_IsArray(a->j) &&
		    cJSON_IsArray(b->j)) {
			e = concat_arrays(c, a, b, out);
			break;
		}
		e = op_expr__fail(c, OP_EINVAL, "operator '+': cannot add %s and %s",
		                  op_expr__xv_type(a), op_expr__xv_type(b));
		break;
	default:
		if (a->kind != OP_XV_NUM || b->kind != OP_XV_NUM) {
			e = op_expr__fail(c, OP_EINVAL,
			                  "operator '%s': expected numbers, got %s and %s",
			                  op_names[op], op_expr__xv_type(a), op_expr__xv_type(b));
			break;
		}
		if ((op == OP_B_DIV || op == OP_B_MOD) && b->n == 0) {
			e = op_expr__fail(c, OP_EINVAL, "operator '%s': division by zero",
			                  op_names[op]);
			break;
		}
		op_expr__xv_num(out, op == OP_B_SUB   ? a->n - b->n
		                     : op == OP_B_MUL ? a->n * b->n
		                     : op == OP_B_DIV ? a->n / b->n
		                                      : fmod(a->n, b->n));
		break;
	}
	if (e == OP_OK && out->kind == OP_XV_NUM && !isfinite(out->n)) {
		op_expr__xv_null(out);
		e = op_expr__fail(c, OP_EINVAL, "operator '%s': result out of range", op_names[op]);
	}
	if (e == OP_OK && op == OP_B_ADD && a->kind == OP_XV_NUM && b->kind == OP_XV_NUM &&
	    !isfinite(out->n))
		e = OP_EINVAL;
	op_expr__xv_drop(a);
	op_expr__xv_drop(b);
	if (e != OP_OK)
		op_expr__xv_drop(out);
	return e;
}

static op_err eval_chain(struct op_expr__ctx *c, const struct op_node *n, struct op_xv *out)
{
	struct op_xv acc, rhs;
	op_err e = op_expr__eval(c, n->c.items[0], &acc);
	if (e != OP_OK)
		return e;
	int op = n->c.ops[1];
	if (op == OP_B_COALESCE) {
		for (size_t i = 1; i < n->c.n && acc.kind == OP_XV_NULL; i++) {
			op_expr__xv_drop(&acc);
			e = op_expr__eval(c, n->c.items[i], &acc);
			if (e != OP_OK)
				return e;
		}
		op_expr__xv_move(out, &acc);
		return OP_OK;
	}
	if (op == OP_B_OR || op == OP_B_AND) {
		bool t = op_expr__xv_truthy(&acc);
		op_expr__xv_drop(&acc);
		for (size_t i = 1; i < n->c.n && t == (op == OP_B_AND); i++) {
			e = op_expr__eval(c, n->c.items[i], &acc);
			if (e != OP_OK)
				return e;
			t = op_expr__xv_truthy(&acc);
			op_expr__xv_drop(&acc);
		}
		op_expr__xv_bool(out, t);
		return OP_OK;
	}
	for (size_t i = 1; i < n->c.n; i++) {
		e = op_expr__eval(c, n->c.items[i], &rhs);
		if (e != OP_OK) {
			op_expr__xv_drop(&acc);
			return e;
		}
		struct op_xv r;
		e = binop(c, n->c.ops[i], &acc, &rhs, &r);
		if (e != OP_OK)
			return e;
		acc = r;
	}
	op_expr__xv_move(out, &acc);
	return OP_OK;
}

/* ---- calls and literals ---- */

#define ARGS_ON_STACK 8

static op_err eval_call(struct op_expr__ctx *c, const struct op_node *n, struct op_xv *out)
{
	const struct op_expr__fn *fn = n->call.fn;
	op_err e;
	if (fn->lazy) {
		e = fn->call(c, n, NULL, n->call.n, out);
		if (e != OP_OK)
			op_expr__xv_drop(out);
		return e;
	}
	struct op_xv local[ARGS_ON_STACK];
	struct op_xv *argv = local;
	size_t argc = n->call.n, done = 0;
	if (argc > ARGS_ON_STACK) {
		argv = op_calloc(argc, sizeof(*argv));
		if (argv == NULL)
			return oom(c);
	}
	for (; done < argc; done++) {
		e = op_expr__eval(c, n->call.args[done], &argv[done]);
		if (e != OP_OK)
			goto out;
	}
	e = fn->call(c, n, argv, argc, out);
	if (e != OP_OK)
		op_expr__xv_drop(out);
out:
	for (size_t i = 0; i < done; i++)
		op_expr__xv_drop(&argv[i]);
	if (argv != local)
		op_free(argv);
	return e;
}

static op_err eval_list(struct op_expr__ctx *c, const struct op_node *n, struct op_xv *out)
{
	bool obj = n->kind == OP_N_OBJECT;
	cJSON *r = obj ? cJSON_CreateObject() : cJSON_CreateArray();
	if (r == NULL)
		return oom(c);
	for (size_t i = 0; i < n->l.n; i++) {
		struct op_xv x;
		cJSON *v;
		op_err e = op_expr__eval(c, n->l.items[i], &x);
		if (e == OP_OK)
			e = op_expr__xv_to_json(c, &x, &v);
		if (e != OP_OK) {
			op_expr__xv_drop(&x);
			cJSON_Delete(r);
			return e;
		}
		if (obj) {
			if (!cJSON_AddItemToObject(r, n->l.keys[i], v)) {
				cJSON_Delete(v);
				cJSON_Delete(r);
				return oom(c);
			}
		} else {
			cJSON_AddItemToArray(r, v);
		}
	}
	op_expr__xv_json_take(out, r);
	return OP_OK;
}

static const cJSON *root_of(const struct op_expr__ctx *c, int root)
{
	if (c->env == NULL)
		return NULL;
	switch (root) {
	case OP_ROOT_MESSAGE:
		return c->env->message;
	case OP_ROOT_GLOBALS:
		return c->env->globals;
	default:
		return c->env->metadata;
	}
}

op_err op_expr__eval(struct op_expr__ctx *c, const struct op_node *n, struct op_xv *out)
{
	op_err e;
	op_expr__xv_null(out);
	switch (n->kind) {
	case OP_N_CONST:
		*out = n->k.x;
		return OP_OK;
	case OP_N_ROOT:
		op_expr__xv_of(out, root_of(c, n->root));
		return OP_OK;
	case OP_N_PATH:
		return eval_path(c, n, out);
	case OP_N_CHAIN:
		return eval_chain(c, n, out);
	case OP_N_NOT: {
		struct op_xv a;
		e = op_expr__eval(c, n->a, &a);
		if (e != OP_OK)
			return e;
		bool t = op_expr__xv_truthy(&a);
		op_expr__xv_drop(&a);
		op_expr__xv_bool(out, !t);
		return OP_OK;
	}
	case OP_N_NEG: {
		struct op_xv a;
		e = op_expr__eval(c, n->a, &a);
		if (e != OP_OK)
			return e;
		if (a.kind != OP_XV_NUM) {
			const char *t = op_expr__xv_type(&a);
			op_expr__xv_drop(&a);
			return op_expr__fail(c, OP_EINVAL,
			                     "column %u: operator '-': expected a number, got %s",
			                     n->col, t);
		}
		op_expr__xv_num(out, -a.n);
		return OP_OK;
	}
	case OP_N_CALL:
		return eval_call(c, n, out);
	case OP_N_ARRAY:
	case OP_N_OBJECT:
		return eval_list(c, n, out);
	default:
		return op_expr__fail(c, OP_EINTERNAL, "bad expression node");
	}
}

/* ---- public API ---- */

void op_val_drop(struct op_val *v)
{
	if (v->owned)
		cJSON_Delete(v->v);
	v->v = NULL;
	v->owned = false;
}

cJSON *op_val_take(struct op_val *v)
{
	cJSON *r = v->v;
	if (r != NULL && !v->owned)
		r = cJSON_Duplicate(r, 1);
	v->v = NULL;
	v->owned = false;
	return r;
}

op_err op_expr_eval(const struct op_expr *e, const struct op_expr_env *env, struct op_val *out,
                    char *err, size_t errlen)
{
	struct op_expr__ctx c = {.env = env, .err = err, .errlen = errlen};
	struct op_xv x;
	op_err rc = OP_OK;
	out->v = NULL;
	out->owned = false;
	if (err && errlen)
		err[0] = '\0';
	if (e->konst) {
		out->v = e->konst;
		return OP_OK;
	}
	if (e->whole) {
		rc = op_expr__eval(&c, e->parts[0].node, &x);
		if (rc != OP_OK)
			return rc;
		if (x.kind == OP_XV_NULL) {
			out->v = x.j ? x.j : &null_node;
			return OP_OK;
		}
		if (!x.own && x.j) {
			out->v = x.j;
			return OP_OK;
		}
		cJSON *v;
		rc = op_expr__xv_to_json(&c, &x, &v);
		if (rc != OP_OK) {
			op_expr__xv_drop(&x);
			return rc;
		}
		out->v = v;
		out->owned = true;
		return OP_OK;
	}
	struct op_buf b;
	op_buf_init(&b, OP_EXPR_MAX_OUT);
	for (size_t i = 0; i < e->n && rc == OP_OK; i++) {
		const struct op_expr_part *p = &e->parts[i];
		if (p->node == NULL) {
			rc = op_buf_add(&b, p->text, p->len);
		} else {
			rc = op_expr__eval(&c, p->node, &x);
			if (rc != OP_OK)
				break;
			rc = op_expr__xv_append_text(&b, &x);
			op_expr__xv_drop(&x);
		}
		if (rc == OP_ELIMIT)
			op_expr__fail(&c, rc, "result longer than %u bytes", OP_EXPR_MAX_OUT);
		else if (rc == OP_ENOMEM)
			oom(&c);
	}
	char *s = rc == OP_OK ? op_buf_take(&b) : NULL;
	op_buf_fini(&b);
	if (rc != OP_OK)
		return rc;
	cJSON *v = s ? string_node(s) : NULL;
	if (v == NULL) {
		op_free(s);
		return oom(&c);
	}
	out->v = v;
	out->owned = true;
	return OP_OK;
}

op_err op_expr_eval_bool(const struct op_expr *e, const struct op_expr_env *env, bool *out,
                         char *err, size_t errlen)
{
	*out = false;
	if (e->whole) {
		struct op_expr__ctx c = {.env = env, .err = err, .errlen = errlen};
		struct op_xv x;
		if (err && errlen)
			err[0] = '\0';
		op_err rc = op_expr__eval(&c, e->parts[0].node, &x);
		if (rc != OP_OK)
			return rc;
		*out = op_expr__xv_truthy(&x);
		op_expr__xv_drop(&x);
		return OP_OK;
	}
	struct op_val v;
	op_err rc = op_expr_eval(e, env, &v, err, errlen);
	if (rc != OP_OK)
		return rc;
	*out = op_json_truthy(v.v);
	op_val_drop(&v);
	return OP_OK;
}
