/*
 * The expression language: `{{ ... }}` inside strings of a step config.
 *
 * A string is compiled once, at pipeline load, into an op_expr: a list of
 * literal text runs and expressions. Evaluating it against an environment
 * (the roots `message`, `globals`, `metadata`) gives a JSON value: when the
 * whole string is exactly one `{{ ... }}` the value of that expression (a
 * number, an object...), otherwise a string with every expression's value
 * spliced in as text. A string without `{{` is a constant.
 *
 * Compiled expressions are immutable and may be evaluated from many threads
 * at once. Syntax errors, unknown functions and wrong argument counts are
 * compile errors that give the column in the source string.
 */
#ifndef OP_EXPR_EXPR_H
#define OP_EXPR_EXPR_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/core/diag.h"
#include "agent/core/err.h"

struct op_expr;

/* The roots an expression can name. Any may be NULL (it reads as null). */
struct op_expr_env {
	const cJSON *message;
	const cJSON *globals;
	const cJSON *metadata;
};

/*
 * A value produced by evaluation. When owned is false, v is borrowed from the
 * environment (or from the compiled expression) and valid as long as they
 * are; when true, the holder must op_val_drop() it.
 */
struct op_val {
	cJSON *v;
	bool owned;
};

/* Frees v->v if owned; leaves {NULL, false}. */
void op_val_drop(struct op_val *v);
/* Returns an owned value (a copy if borrowed) and empties v; NULL on OOM. */
cJSON *op_val_take(struct op_val *v);

/* True when s contains "{{", i.e. is not a plain constant string. */
bool op_expr_has_code(const char *s);

/*
 * Compiles the template text src (NUL-terminated).
 * Returns OP_OK and *out, or OP_EPARSE with a message in err such as
 * "column 14: expected ')' to close CONCAT(", or OP_ENOMEM. *out is NULL on
 * error.
 */
op_err op_expr_compile(const char *src, struct op_expr **out, char *err, size_t errlen) OP_WUR;
void op_expr_free(struct op_expr *e);
/* The source text it was compiled from; valid for the life of e. */
const char *op_expr_source(const struct op_expr *e);

/*
 * Evaluates e. On OP_OK *out holds the result (maybe borrowed). On error
 * (OP_EINVAL for a type or domain error in a function, OP_ENOMEM,
 * OP_ELIMIT for a result past the size limit) *out is {NULL,false} and err
 * says what failed and where ("HASH: unknown algorithm 'md4'").
 */
op_err op_expr_eval(const struct op_expr *e, const struct op_expr_env *env, struct op_val *out,
                    char *err, size_t errlen) OP_WUR;

/* Evaluates e as a condition: see op_json_truthy(). */
op_err op_expr_eval_bool(const struct op_expr *e, const struct op_expr_env *env, bool *out,
                         char *err, size_t errlen) OP_WUR;

/* Truthiness of a value: null, false, 0, "" and a missing value are false. */
bool op_json_truthy(const cJSON *v);

/*
 * A JSON template: any JSON value whose strings may hold expressions (the
 * `set` step's template, any step config value). Compiled once; rendering
 * builds a new value. Object keys are literal.
 */
struct op_tmpl;

/*
 * Compiles src. Problems are recorded in d at d's current path extended by
 * the location inside src (e.g. `.order.id`), and the result is OP_ECONFIG;
 * every problem in src is recorded, not only the first.
 */
op_err op_tmpl_compile(const cJSON *src, struct op_diag *d, struct op_tmpl **out) OP_WUR;
void op_tmpl_free(struct op_tmpl *t);
/* True when the template contains no expression (rendering copies it). */
bool op_tmpl_is_constant(const struct op_tmpl *t);
/* Renders t into a new value *out (owned by the caller). Errors as op_expr_eval. */
op_err op_tmpl_render(const struct op_tmpl *t, const struct op_expr_env *env, cJSON **out,
                      char *err, size_t errlen) OP_WUR;

#endif
