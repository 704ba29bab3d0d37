/*
 * The config binder: walks a table against a JSON object, storing each value
 * into the struct at the field's offset and recording every problem at its
 * JSON path. Invariant: whatever happens, the struct only ever holds fully
 * built values or zero, so op_conf_release() can always free it.
 */
#include "agent/engine/conf.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "agent/engine/engine_int.h"
#include "agent/expr/expr.h"

static const char *const type_names[] = {
    [OP_CONF_STRING] = "string",
    [OP_CONF_INT] = "integer",
    [OP_CONF_NUMBER] = "number",
    [OP_CONF_BOOL] = "boolean",
    [OP_CONF_ENUM] = "string (one of a set)",
    [OP_CONF_EXPR] = "expression string",
    [OP_CONF_TEMPLATE] = "JSON template",
    [OP_CONF_JSON] = "JSON value",
    [OP_CONF_STEPS] = "array of steps",
    [OP_CONF_LIST] = "array of objects",
    [OP_CONF_OBJECT] = "object",
    [OP_CONF_STRINGS] = "array of strings",
};

const char *op_conf_type_name(enum op_conf_type t)
{
	if ((unsigned)t >= sizeof(type_names) / sizeof(type_names[0]))
		return "?";
	return type_names[t];
}

static void *at(void *base, const struct op_conf_field *f)
{
	return (char *)base + f->off;
}

static op_err bind_value(struct op_load *ld, const struct op_conf_field *f, const cJSON *v,
                         void *out);

static op_err bind_enum(struct op_load *ld, const struct op_conf_field *f, const cJSON *v, int *out)
{
	if (cJSON_IsString(v)) {
		for (int i = 0; f->choices[i]; i++) {
			if (strcmp(f->choices[i], v->valuestring) == 0) {
				*out = i;
				return OP_OK;
			}
		}
	}
	struct op_buf b;
	op_buf_init(&b, 1024);
	for (int i = 0; f->choices[i]; i++) {
		if (op_buf_addf(&b, "%s\"%s\"", i ? ", " : "", f->choices[i]) != OP_OK)
			break;
	}
	if (cJSON_IsString(v) && !f->secret)
		op_diag_add(ld->d, NULL, "unknown value \"%.64s\"; expected one of %s",
		            v->valuestring, op_buf_str(&b));
	else
		op_diag_add(ld->d, NULL, "expected one of %s, got %s", op_buf_str(&b),
		            op_json_kind(v));
	op_buf_fini(&b);
	return OP_ECONFIG;
}

static op_err bind_strings(struct op_load *ld, const cJSON *v, struct op_conf_strings *out)
{
	if (!cJSON_IsArray(v)) {
		op_diag_add(ld->d, NULL, "expected an array of strings, got %s", op_json_kind(v));
		return OP_ECONFIG;
	}
	int n = cJSON_GetArraySize(v);
	op_err rc = OP_OK;
	out->v = op_calloc((size_t)n + 1, sizeof(char *));
	if (out->v == NULL)
		return OP_ENOMEM;
	size_t i = 0;
	const cJSON *it;
	cJSON_ArrayForEach (it, v) {
		if (!cJSON_IsString(it)) {
			size_t m = op_diag_push_index(ld->d, i);
			op_diag_add(ld->d, NULL, "expected a string, got %s", op_json_kind(it));
			op_diag_pop(ld->d, m);
			rc = OP_ECONFIG;
		} else if ((out->v[out->n++] = op_strdup(it->valuestring)) == NULL) {
			return OP_ENOMEM;
		}
		i++;
	}
	return rc;
}

static op_err bind_list(struct op_load *ld, const struct op_conf_field *f, const cJSON *v,
                        struct op_conf_list *out)
{
	if (!cJSON_IsArray(v)) {
		op_diag_add(ld->d, NULL, "expected an array of objects, got %s", op_json_kind(v));
		return OP_ECONFIG;
	}
	size_t n = (size_t)cJSON_GetArraySize(v);
	op_err rc = OP_OK;
	out->v = op_calloc(n ? n : 1, f->sub->size);
	if (out->v == NULL)
		return OP_ENOMEM;
	const cJSON *it;
	cJSON_ArrayForEach (it, v) {
		size_t m = op_diag_push_index(ld->d, out->n);
		op_err e = op_conf_bind(ld, f->sub, it, op_conf_list_at(out, f->sub, out->n));
		out->n++;
		op_diag_pop(ld->d, m);
		if (e == OP_ENOMEM)
			return e;
		if (e)
			rc = e;
	}
	return rc;
}

static op_err bind_int(struct op_load *ld, const struct op_conf_field *f, const cJSON *v,
                       long long *out)
{
	double d = v->valuedouble;
	if (!cJSON_IsNumber(v) || d != floor(d) || fabs(d) > 9007199254740992.0) {
		op_diag_add(ld->d, NULL, "expected an integer, got %s", op_json_kind(v));
		return OP_ECONFIG;
	}
	long long n = (long long)d;
	if ((f->min || f->max) && (n < f->min || n > f->max)) {
		op_diag_add(ld->d, NULL, "%lld is out of range; expected %lld to %lld", n, f->min,
		            f->max);
		return OP_ECONFIG;
	}
	*out = n;
	return OP_OK;
}

static op_err bind_value(struct op_load *ld, const struct op_conf_field *f, const cJSON *v,
                         void *out)
{
	char err[256];
	switch (f->type) {
	case OP_CONF_STRING:
		if (!cJSON_IsString(v))
			break;
		*(char **)out = op_strdup(v->valuestring);
		return *(char **)out ? OP_OK : OP_ENOMEM;
	case OP_CONF_INT:
		return bind_int(ld, f, v, out);
	case OP_CONF_NUMBER:
		if (!cJSON_IsNumber(v))
			break;
		if ((f->min || f->max) &&
		    (v->valuedouble < (double)f->min || v->valuedouble > (double)f->max)) {
			op_diag_add(ld->d, NULL, "%g is out of range; expected %lld to %lld",
			            v->valuedouble, f->min, f->max);
			return OP_ECONFIG;
		}
		*(double *)out = v->valuedouble;
		return OP_OK;
	case OP_CONF_BOOL:
		if (!cJSON_IsBool(v))
			break;
		*(bool *)out = cJSON_IsTrue(v);
		return OP_OK;
	case OP_CONF_ENUM:
		return bind_enum(ld, f, v, out);
	case OP_CONF_EXPR: {
		if (!cJSON_IsString(v))
			break;
		op_err e = op_expr_compile(v->valuestring, out, err, sizeof(err));
		if (e == OP_ENOMEM)
			return e;
		if (e) {
			op_diag_add(ld->d, NULL, "bad expression: %s", err);
			return OP_ECONFIG;
		}
		return OP_OK;
	}
	case OP_CONF_TEMPLATE:
		return op_tmpl_compile(v, ld->d, out);
	case OP_CONF_JSON:
		*(cJSON **)out = cJSON_Duplicate(v, 1);
		return *(cJSON **)out ? OP_OK : OP_ENOMEM;
	case OP_CONF_STEPS:
		if (!cJSON_IsArray(v))
			break;
		return op_engine__load_steps(ld, v, out);
	case OP_CONF_LIST:
		return bind_list(ld, f, v, out);
	case OP_CONF_OBJECT:
		if (!cJSON_IsObject(v))
			break;
		return op_conf_bind(ld, f->sub, v, out);
	case OP_CONF_STRINGS:
		return bind_strings(ld, v, out);
	}
	op_diag_add(ld->d, NULL, "expected %s, got %s", op_conf_type_name(f->type),
	            op_json_kind(v));
	return OP_ECONFIG;
}

static const struct op_conf_field *find_field(const struct op_conf_table *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->fields[i].name, name) == 0)
			return &t->fields[i];
	}
	return NULL;
}

static void unknown_key(struct op_load *ld, const struct op_conf_table *t, const char *key)
{
	struct op_buf b;
	op_buf_init(&b, 2048);
	for (size_t i = 0; i < t->n; i++) {
		if (op_buf_addf(&b, "%s%s", i ? ", " : "", t->fields[i].name) != OP_OK)
			break;
	}
	op_diag_add(ld->d, key, "unknown key; %s%s", t->n ? "expected one of: " : "",
	            t->n ? op_buf_str(&b) : "this object takes no keys");
	op_buf_fini(&b);
}

op_err op_conf_bind(struct op_load *ld, const struct op_conf_table *t, const cJSON *obj, void *out)
{
	op_err rc = OP_OK;
	if (obj != NULL && !cJSON_IsObject(obj)) {
		op_diag_add(ld->d, NULL, "expected an object, got %s", op_json_kind(obj));
		obj = NULL;
		rc = OP_ECONFIG;
	}
	const cJSON *it;
	if (obj) {
		cJSON_ArrayForEach (it, obj) {
			if (find_field(t, it->string) == NULL) {
				unknown_key(ld, t, it->string);
				rc = OP_ECONFIG;
				continue;
			}
			/* cJSON keeps both copies of a repeated key; only the first would count. */
			for (const cJSON *o = obj->child; o != it; o = o->next) {
				if (strcmp(o->string, it->string) == 0) {
					op_diag_add(ld->d, it->string, "key given more than once");
					rc = OP_ECONFIG;
					break;
				}
			}
		}
	}
	for (size_t i = 0; i < t->n; i++) {
		const struct op_conf_field *f = &t->fields[i];
		const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, f->name) : NULL;
		cJSON *def = NULL;
		if (v == NULL) {
			if (f->required) {
				op_diag_add(ld->d, f->name, "missing required key (%s)",
				            op_conf_type_name(f->type));
				rc = OP_ECONFIG;
				continue;
			}
			if (f->type == OP_CONF_OBJECT) {
				v = NULL; /* bind the sub-table's defaults */
			} else if (f->def == NULL) {
				continue;
			} else if ((v = def = cJSON_Parse(f->def)) == NULL) {
				return OP_ENOMEM;
			}
		}
		size_t m = op_diag_push_key(ld->d, f->name);
		op_err e;
		if (f->type == OP_CONF_OBJECT && v == NULL)
			e = op_conf_bind(ld, f->sub, NULL, at(out, f));
		else
			e = bind_value(ld, f, v, at(out, f));
		op_diag_pop(ld->d, m);
		cJSON_Delete(def);
		if (e == OP_ENOMEM)
			return e;
		if (e)
			rc = e;
	}
	return rc;
}

void op_conf_release(const struct op_conf_table *t, void *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < t->n; i++) {
		const struct op_conf_field *f = &t->fields[i];
		void *p = at(cfg, f);
		switch (f->type) {
		case OP_CONF_STRING:
			if (f->secret && *(char **)p)
				op_free_secret(*(char **)p, strlen(*(char **)p));
			else
				op_free(*(char **)p);
			*(char **)p = NULL;
			break;
		case OP_CONF_EXPR:
			op_expr_free(*(struct op_expr **)p);
			*(struct op_expr **)p = NULL;
			break;
		case OP_CONF_TEMPLATE:
			op_tmpl_free(*(struct op_tmpl **)p);
			*(struct op_tmpl **)p = NULL;
			break;
		case OP_CONF_JSON:
			cJSON_Delete(*(cJSON **)p);
			*(cJSON **)p = NULL;
			break;
		case OP_CONF_STEPS:
			op_engine__free_steps(p);
			break;
		case OP_CONF_LIST: {
			struct op_conf_list *l = p;
			for (size_t k = 0; k < l->n; k++)
				op_conf_release(f->sub, op_conf_list_at(l, f->sub, k));
			op_free(l->v);
			l->v = NULL;
			l->n = 0;
			break;
		}
		case OP_CONF_OBJECT:
			op_conf_release(f->sub, p);
			break;
		case OP_CONF_STRINGS: {
			struct op_conf_strings *s = p;
			for (size_t k = 0; k < s->n; k++)
				op_free(s->v[k]);
			op_free(s->v);
			s->v = NULL;
			s->n = 0;
			break;
		}
		case OP_CONF_INT:
		case OP_CONF_NUMBER:
		case OP_CONF_BOOL:
		case OP_CONF_ENUM:
			break;
		}
	}
}
