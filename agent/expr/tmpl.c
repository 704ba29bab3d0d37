/*
 * JSON templates: any JSON value whose strings may hold `{{ ... }}`
 * expressions (a `set` step's template, step config values). Compiling
 * mirrors the value as a tree in which every subtree without an expression is
 * one prebuilt constant, and every string with code is a compiled op_expr.
 * Rendering walks the tree and builds a new value: constants are copied,
 * expressions evaluated (a whole `{{ }}` string gives its typed value).
 *
 * Key invariant: a compiled template is never written after compile, so it
 * may be rendered from many threads at once; a render either returns a
 * complete new value or nothing.
 */
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/expr/expr_int.h"

enum { T_CONST, T_EXPR, T_ARRAY, T_OBJECT };

struct tnode {
	uint8_t kind;
	char *key;            /* member name when the parent is an object */
	cJSON *konst;         /* T_CONST */
	struct op_expr *expr; /* T_EXPR */
	char *where;          /* T_EXPR: its path inside the template, "" at the root */
	struct tnode *kids;   /* T_ARRAY, T_OBJECT */
	size_t n;
};

struct op_tmpl {
	struct tnode root;
};

/* ---- compiling ---- */

static bool has_code(const cJSON *v)
{
	if (cJSON_IsString(v))
		return op_expr_has_code(v->valuestring);
	for (const cJSON *it = (cJSON_IsArray(v) || cJSON_IsObject(v)) ? v->child : NULL; it;
	     it = it->next) {
		if (has_code(it))
			return true;
	}
	return false;
}

static void tnode_fini(struct tnode *t)
{
	op_free(t->key);
	cJSON_Delete(t->konst);
	op_expr_free(t->expr);
	op_free(t->where);
	for (size_t i = 0; i < t->n; i++)
		tnode_fini(&t->kids[i]);
	op_free(t->kids);
	memset(t, 0, sizeof(*t));
}

struct build {
	struct op_diag *d;
	size_t base; /* length of d's path when compile started */
	size_t problems;
};

/* Builds t from v. Returns OP_OK (problems are counted in b) or OP_ENOMEM. */
static op_err build(struct build *b, const cJSON *v, struct tnode *t)
{
	if (!has_code(v)) {
		t->kind = T_CONST;
		t->konst = cJSON_Duplicate(v, 1);
		return t->konst ? OP_OK : OP_ENOMEM;
	}
	if (cJSON_IsString(v)) {
		char err[256];
		t->kind = T_EXPR;
		op_err e = op_expr_compile(v->valuestring, &t->expr, err, sizeof(err));
		if (e == OP_ENOMEM)
			return e;
		if (e != OP_OK) {
			op_diag_add(b->d, NULL, "bad expression: %s", err);
			b->problems++;
			return OP_OK;
		}
		const char *p = op_diag_path(b->d) + b->base;
		t->where = op_strdup(*p == '.' ? p + 1 : p);
		return t->where ? OP_OK : OP_ENOMEM;
	}
	bool obj = cJSON_IsObject(v);
	t->kind = obj ? T_OBJECT : T_ARRAY;
	size_t n = 0;
	for (const cJSON *it = v->child; it; it = it->next)
		n++;
	t->kids = op_calloc(n, sizeof(*t->kids));
	if (t->kids == NULL)
		return OP_ENOMEM;
	t->n = n;
	size_t i = 0;
	for (const cJSON *it = v->child; it; it = it->next, i++) {
		struct tnode *k = &t->kids[i];
		size_t mark;
		if (obj) {
			k->key = op_strdup(it->string ? it->string : "");
			if (k->key == NULL)
				return OP_ENOMEM;
			mark = op_diag_push_key(b->d, k->key);
		} else {
			mark = op_diag_push_index(b->d, i);
		}
		op_err e = build(b, it, k);
		op_diag_pop(b->d, mark);
		if (e != OP_OK)
			return e;
	}
	return OP_OK;
}

op_err op_tmpl_compile(const cJSON *src, struct op_diag *d, struct op_tmpl **out)
{
	*out = NULL;
	struct op_tmpl *t = op_calloc(1, sizeof(*t));
	if (t == NULL)
		return OP_ENOMEM;
	struct build b = {.d = d, .base = strlen(op_diag_path(d))};
	size_t mark = b.base;
	op_err e = build(&b, src, &t->root);
	op_diag_pop(d, mark);
	if (e == OP_OK && b.problems)
		e = OP_ECONFIG;
	if (e != OP_OK) {
		op_tmpl_free(t);
		return e;
	}
	*out = t;
	return OP_OK;
}

void op_tmpl_free(struct op_tmpl *t)
{
	if (t == NULL)
		return;
	tnode_fini(&t->root);
	op_free(t);
}

bool op_tmpl_is_constant(const struct op_tmpl *t)
{
	return t->root.kind == T_CONST;
}

/* ---- rendering ---- */

/* Puts "at <where>: " before the message already in err. */
static void prefix_err(char *err, size_t errlen, const char *where)
{
	if (err == NULL || errlen == 0 || *where == '\0')
		return;
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "at %s: %s", where, err);
	snprintf(err, errlen, "%s", tmp);
}

static op_err render(const struct tnode *t, const struct op_expr_env *env, cJSON **out, char *err,
                     size_t errlen)
{
	*out = NULL;
	switch (t->kind) {
	case T_CONST:
		*out = cJSON_Duplicate(t->konst, 1);
		break;
	case T_EXPR: {
		struct op_val v;
		op_err e = op_expr_eval(t->expr, env, &v, err, errlen);
		if (e != OP_OK) {
			prefix_err(err, errlen, t->where);
			return e;
		}
		*out = op_val_take(&v);
		break;
	}
	default: {
		bool obj = t->kind == T_OBJECT;
		cJSON *r = obj ? cJSON_CreateObject() : cJSON_CreateArray();
		if (r == NULL)
			break;
		for (size_t i = 0; i < t->n; i++) {
			cJSON *k;
			op_err e = render(&t->kids[i], env, &k, err, errlen);
			if (e != OP_OK) {
				cJSON_Delete(r);
				return e;
			}
			if (obj) {
				if (!cJSON_AddItemToObject(r, t->kids[i].key, k)) {
					cJSON_Delete(k);
					cJSON_Delete(r);
					r = NULL;
					break;
				}
			} else {
				cJSON_AddItemToArray(r, k);
			}
		}
		*out = r;
		break;
	}
	}
	if (*out == NULL) {
		if (err && errlen)
			snprintf(err, errlen, "out of memory");
		return OP_ENOMEM;
	}
	return OP_OK;
}

op_err op_tmpl_render(const struct op_tmpl *t, const struct op_expr_env *env, cJSON **out,
                      char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	return render(&t->root, env, out, err, errlen);
}
