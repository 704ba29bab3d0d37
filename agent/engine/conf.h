/*
 * Table-driven binding of JSON config objects into C structs. Every step
 * type (and the pipeline document itself) describes its keys in one
 * op_conf_table: name, type, default, bounds, required and secret flags and a
 * help line. The same table validates, fills defaults, frees, prints
 * `outpostctl steps TYPE` and generates the pipeline JSON Schema, so they can
 * never disagree. Binding records every problem (unknown key, wrong type,
 * out of bounds, bad expression) at its JSON path and goes on, so a load
 * reports all of them at once.
 */
#ifndef OP_ENGINE_CONF_H
#define OP_ENGINE_CONF_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/core/err.h"

struct op_load;

enum op_conf_type {
	OP_CONF_STRING,   /* literal string -> char * */
	OP_CONF_INT,      /* integer in [min, max] -> long long */
	OP_CONF_NUMBER,   /* number -> double */
	OP_CONF_BOOL,     /* -> bool */
	OP_CONF_ENUM,     /* one of choices -> int (index into choices) */
	OP_CONF_EXPR,     /* string that may hold {{ }} -> struct op_expr * */
	OP_CONF_TEMPLATE, /* any JSON whose strings may hold {{ }} -> struct op_tmpl * */
	OP_CONF_JSON,     /* any JSON, kept as given -> cJSON * */
	OP_CONF_STEPS,    /* array of steps -> struct op_steps */
	OP_CONF_LIST,     /* array of objects bound with sub -> struct op_conf_list */
	OP_CONF_OBJECT,   /* object bound with sub into an embedded struct at off */
	OP_CONF_STRINGS,  /* array of literal strings -> struct op_conf_strings */
};

struct op_conf_table;

struct op_conf_field {
	const char *name;
	enum op_conf_type type;
	size_t off;
	bool required;
	bool secret;     /* never printed or logged */
	const char *def; /* default as JSON text, NULL for none (zero/NULL) */
	long long min;   /* INT and NUMBER bounds; both 0 = unbounded */
	long long max;
	const char *const *choices;      /* ENUM: NULL-terminated */
	const struct op_conf_table *sub; /* LIST and OBJECT */
	const char *help;
};

struct op_conf_table {
	const char *name;
	const struct op_conf_field *fields;
	size_t n;
	size_t size; /* size of the struct it binds into (LIST elements) */
};

#define OP_CONF_TABLE(tname, ctype, arr)                                               \
	{                                                                              \
		.name = (tname), .fields = (arr), .n = sizeof(arr) / sizeof((arr)[0]), \
		.size = sizeof(ctype)                                                  \
	}

struct op_conf_list {
	void *v; /* n structs of sub->size bytes */
	size_t n;
};

struct op_conf_strings {
	char **v;
	size_t n;
};

/*
 * Binds obj (must be an object, or NULL for "absent": defaults only) into
 * out, which must be zeroed and t->size bytes. Problems go to the load's
 * diagnostics at its current path. Returns OP_OK, OP_ECONFIG when any
 * problem was found, or OP_ENOMEM. Whatever the result, out is left in a
 * state op_conf_release() can free.
 */
op_err op_conf_bind(struct op_load *ld, const struct op_conf_table *t, const cJSON *obj,
                    void *out) OP_WUR;

/* Frees everything binding stored in cfg (not cfg itself). */
void op_conf_release(const struct op_conf_table *t, void *cfg);

/* Name of a type for docs and errors ("string", "expression", ...). */
const char *op_conf_type_name(enum op_conf_type t);

/* The i-th element of a bound LIST. */
static inline void *op_conf_list_at(const struct op_conf_list *l, const struct op_conf_table *sub,
                                    size_t i)
{
	return (char *)l->v + i * sub->size;
}

#endif
