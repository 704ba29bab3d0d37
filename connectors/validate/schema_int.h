/*
 * Private to connectors/validate: the compiled form of a JSON Schema and the
 * helpers the schema_*.c files share. A compiled schema is a graph of nodes,
 * one per (sub)schema, whose keywords are decoded into typed fields and whose
 * $refs are pointers to their target nodes. Everything in it lives in one
 * arena owned by struct op_schema and is never written after compile, which
 * is what makes concurrent validation safe.
 */
#ifndef OP_CONNECTORS_VALIDATE_SCHEMA_INT_H
#define OP_CONNECTORS_VALIDATE_SCHEMA_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/err.h"
#include "connectors/validate/schema.h"

/* Schema nesting depth accepted by the compiler (objects inside keywords). */
#define OP_SCHEMA__MAX_NEST 200

/* Instance types, as bits of op_schema__node.types. */
enum {
	OP_SCHEMA__T_NULL = 1u << 0,
	OP_SCHEMA__T_BOOLEAN = 1u << 1,
	OP_SCHEMA__T_OBJECT = 1u << 2,
	OP_SCHEMA__T_ARRAY = 1u << 3,
	OP_SCHEMA__T_NUMBER = 1u << 4,
	OP_SCHEMA__T_STRING = 1u << 5,
	OP_SCHEMA__T_INTEGER = 1u << 6,
};

/* 2020-12 vocabularies, as bits of op_schema__node.vocab. */
enum {
	OP_SCHEMA__V_CORE = 1u << 0,
	OP_SCHEMA__V_APPLICATOR = 1u << 1,
	OP_SCHEMA__V_UNEVALUATED = 1u << 2,
	OP_SCHEMA__V_VALIDATION = 1u << 3,
	OP_SCHEMA__V_FORMAT = 1u << 4, /* format-annotation */
	OP_SCHEMA__V_FORMAT_ASSERT = 1u << 5,
	OP_SCHEMA__V_META = 1u << 6, /* meta-data and content: annotations only */
	OP_SCHEMA__V_ALL = 0x5f,     /* every vocabulary but format-assertion */
};

/* Keywords present on a node that have no pointer or count of their own. */
enum {
	OP_SCHEMA__K_MULTIPLE_OF = 1u << 0,
	OP_SCHEMA__K_MAXIMUM = 1u << 1,
	OP_SCHEMA__K_EXCL_MAXIMUM = 1u << 2,
	OP_SCHEMA__K_MINIMUM = 1u << 3,
	OP_SCHEMA__K_EXCL_MINIMUM = 1u << 4,
	OP_SCHEMA__K_MAX_LENGTH = 1u << 5,
	OP_SCHEMA__K_MIN_LENGTH = 1u << 6,
	OP_SCHEMA__K_MAX_ITEMS = 1u << 7,
	OP_SCHEMA__K_MIN_ITEMS = 1u << 8,
	OP_SCHEMA__K_UNIQUE = 1u << 9,
	OP_SCHEMA__K_MAX_CONTAINS = 1u << 10,
	OP_SCHEMA__K_MIN_CONTAINS = 1u << 11,
	OP_SCHEMA__K_MAX_PROPS = 1u << 12,
	OP_SCHEMA__K_MIN_PROPS = 1u << 13,
	OP_SCHEMA__K_ITEMS_ARRAY = 1u << 14, /* draft-07 "items": [...] */
	/* Summary bits set after compile: which validation groups to visit. */
	OP_SCHEMA__G_NUMBER = 1u << 20,
	OP_SCHEMA__G_STRING = 1u << 21,
	OP_SCHEMA__G_ARRAY = 1u << 22,
	OP_SCHEMA__G_OBJECT = 1u << 23,
	OP_SCHEMA__G_INPLACE = 1u << 24,
};

/* Formats the validator can assert (op_schema_opts.format_assert). */
enum {
	OP_SCHEMA__F_NONE = 0,
	OP_SCHEMA__F_DATE_TIME,
	OP_SCHEMA__F_DATE,
	OP_SCHEMA__F_EMAIL,
	OP_SCHEMA__F_IPV4,
	OP_SCHEMA__F_IPV6,
	OP_SCHEMA__F_UUID,
	OP_SCHEMA__F_TIME,
	OP_SCHEMA__F_DURATION,
	OP_SCHEMA__F_HOSTNAME,
	OP_SCHEMA__F_IDN_EMAIL,
	OP_SCHEMA__F_URI,
	OP_SCHEMA__F_URI_REF,
	OP_SCHEMA__F_IRI,
	OP_SCHEMA__F_IRI_REF,
	OP_SCHEMA__F_URI_TEMPLATE,
	OP_SCHEMA__F_JSON_POINTER,
	OP_SCHEMA__F_REL_JSON_POINTER,
	OP_SCHEMA__F_REGEX,
};

struct op_schema__node;

struct op_schema__rx {
	pcre2_code *code;
	const char *src; /* the pattern text, for messages */
	struct op_schema__rx *next;
};

struct op_schema__prop {
	const char *name;
	struct op_schema__node *node;
};

struct op_schema__pprop {
	const struct op_schema__rx *rx;
	struct op_schema__node *node;
};

/* One entry of dependencies / dependentRequired / dependentSchemas. */
struct op_schema__dep {
	const char *name;
	const char **req; /* properties required when name is present */
	size_t nreq;
	struct op_schema__node *node; /* or a schema applied in place */
};

/* A $dynamicAnchor of a schema resource. */
struct op_schema__dyn {
	const char *name;
	struct op_schema__node *node;
	struct op_schema__dyn *next;
};

/* A schema resource: a document root or a subschema with its own $id. */
struct op_schema__res {
	const char *uri;
	struct op_schema__dyn *dyn;
};

struct op_schema__node {
	const cJSON *json; /* the schema text, in a document the schema owns */
	const char *loc;   /* "#/properties/a" or "uri#/pointer", for messages */
	const char *base;  /* base URI for $ref, compile time only */
	struct op_schema__res *res;
	uint16_t draft; /* OP_SCHEMA_DRAFT7 or OP_SCHEMA_2020 */
	uint8_t vocab;  /* OP_SCHEMA__V_* in force (2020-12) */
	uint8_t state;  /* compile bookkeeping: 0 new, 1 queued, 2 compiled */
	uint8_t mark;   /* cycle check bookkeeping */
	bool is_bool, bool_val;
	uint8_t types;  /* OP_SCHEMA__T_*, 0 when no "type" */
	uint8_t format; /* OP_SCHEMA__F_* when asserted, else 0 */
	uint32_t kw;    /* OP_SCHEMA__K_* and OP_SCHEMA__G_* */

	double multiple_of, maximum, excl_maximum, minimum, excl_minimum;
	uint64_t max_length, min_length, max_items, min_items;
	uint64_t max_contains, min_contains, max_props, min_props;
	const cJSON *const_v, *enum_v;
	const struct op_schema__rx *pattern;

	struct op_schema__node **prefix; /* prefixItems, or draft-07 items array */
	size_t nprefix;
	struct op_schema__node *items, *add_items, *contains;
	struct op_schema__prop *props; /* sorted by name (strcmp) */
	size_t nprops;
	struct op_schema__pprop *pprops;
	size_t npprops;
	struct op_schema__node *add_props, *prop_names;
	const char **required;
	size_t nrequired;
	struct op_schema__dep *deps;
	size_t ndeps;
	struct op_schema__node *if_, *then_, *else_, *not_;
	struct op_schema__node **all_of, **any_of, **one_of;
	size_t nall_of, nany_of, none_of;
	struct op_schema__node *ref, *dyn_ref;
	const char *dyn_name; /* set when dyn_ref is dynamic ("bookended") */
	struct op_schema__node *uneval_items, *uneval_props;
};

struct op_schema__chunk;

struct op_schema__doclist {
	cJSON *json;
	struct op_schema__doclist *next;
};

struct op_schema {
	struct op_schema__chunk *chunks;
	struct op_schema__doclist *docs;
	struct op_schema__rx *rxs;
	pcre2_general_context *gctx;
	pcre2_compile_context *cctx;
	pcre2_match_context *mctx;
	struct op_schema__node *root;
	unsigned max_depth;
	int draft;
	bool format_assert;
};

/* Arena: zeroed memory that lives until op_schema_free(). NULL on OOM. */
void *op_schema__alloc(struct op_schema *s, size_t n);
char *op_schema__strndup(struct op_schema *s, const char *p, size_t n);

/* ---- compile state shared by schema_compile.c, schema_ref.c, schema_keyword.c ---- */

struct op_schema__pmap_ent {
	const void *key;
	struct op_schema__node *node;
};
struct op_schema__pmap {
	struct op_schema__pmap_ent *v;
	size_t cap, n;
};
struct op_schema__smap_ent {
	const char *key;
	void *val;
};
struct op_schema__smap {
	struct op_schema__smap_ent *v;
	size_t cap, n;
};

struct op_schema__cc {
	struct op_schema *s;
	const struct op_schema_opts *opts;
	char *err;
	size_t errlen;
	struct op_schema__pmap nodes;     /* cJSON * -> node */
	struct op_schema__smap resources; /* absolute URI (no fragment) -> node */
	struct op_schema__smap anchors;   /* "uri#name" -> node */
	struct op_schema__node **work;    /* nodes waiting to be compiled */
	size_t nwork, capwork;
};

/* Records "loc[/kw]: message" as the compile error (the first one wins) and
 * returns OP_ECONFIG. */
op_err op_schema__fail(struct op_schema__cc *cc, const struct op_schema__node *n, const char *kw,
                       const char *fmt, ...) OP_PRINTF(4, 5);
/* Returns e, recording a message for OP_ENOMEM / OP_ELIMIT when none is set. */
op_err op_schema__oom(struct op_schema__cc *cc, op_err e);

/* Maps. Keys are borrowed (arena or document strings). */
struct op_schema__node *op_schema__pmap_get(const struct op_schema__pmap *m, const void *key);
op_err op_schema__pmap_put(struct op_schema__pmap *m, const void *key,
                           struct op_schema__node *node) OP_WUR;
void *op_schema__smap_get(const struct op_schema__smap *m, const char *key);
op_err op_schema__smap_put(struct op_schema__smap *m, const char *key, void *val) OP_WUR;
void op_schema__maps_fini(struct op_schema__cc *cc);

/* Walks the schema at json (a document root, or a $ref target no walk has
 * reached), creating a node for it and every subschema under it, recording
 * $id, $anchor and $dynamicAnchor, and queueing the nodes for compilation.
 * *out receives json's node. */
op_err op_schema__index(struct op_schema__cc *cc, const cJSON *json, const char *base,
                        struct op_schema__res *res, const char *loc, int draft, unsigned vocab,
                        struct op_schema__node **out) OP_WUR;

/* Resolves a $ref / $dynamicRef value found on n (keyword kw) to a node,
 * loading a caller or built-in document when the URI names one. *anchor
 * receives the plain-name fragment, or NULL. */
op_err op_schema__resolve(struct op_schema__cc *cc, struct op_schema__node *n, const char *kw,
                          const char *ref, struct op_schema__node **out,
                          const char **anchor) OP_WUR;

/* URI helpers (schema_ref.c). Results are arena strings. */
op_err op_schema__uri_resolve(struct op_schema *s, const char *base, const char *ref,
                              char **out) OP_WUR;
/* Finds a caller or built-in document by absolute URI (no fragment); the
 * returned tree is borrowed (caller's) or owned by the schema (built-in). */
op_err op_schema__find_doc(struct op_schema__cc *cc, const char *uri, const cJSON **out) OP_WUR;

/* Compiles the keywords of one node (schema_keyword.c). */
op_err op_schema__compile_node(struct op_schema__cc *cc, struct op_schema__node *n) OP_WUR;

/* Keyword table lookup: the subschema shape of a keyword in a dialect. */
enum {
	OP_SCHEMA__SUB_NONE = 0,
	OP_SCHEMA__SUB_ONE,    /* a schema */
	OP_SCHEMA__SUB_ARRAY,  /* an array of schemas */
	OP_SCHEMA__SUB_MAP,    /* an object whose values are schemas */
	OP_SCHEMA__SUB_ITEMS7, /* a schema or an array of schemas */
	OP_SCHEMA__SUB_DEPS7,  /* an object of schemas or string arrays */
};
int op_schema__kw_shape(const char *name, int draft, unsigned vocab);

/* Dialect of a $schema URI: OP_SCHEMA_DRAFT7, OP_SCHEMA_2020 or 0. */
int op_schema__dialect(const char *uri);

/* Built-in metaschema text for an absolute URI, or NULL (schema_meta.c). */
const char *op_schema__meta_text(const char *uri);

/* ---- regular expressions (schema_regex.c) ---- */

/* Longest PCRE2 pattern text a schema pattern may translate to. */
#define OP_SCHEMA__MAX_REGEX 65536

/* Appends the PCRE2 form of the ECMA-262 pattern src to b. Returns OP_OK;
 * OP_EPARSE with *why set (a static string) for syntax ECMA-262 does not
 * have; OP_ELIMIT past b's cap; OP_ENOMEM. */
op_err op_schema__rx_translate(const char *src, struct op_buf *b, const char **why) OP_WUR;

/* ---- values (schema_value.c) ---- */
bool op_schema__json_equal(const cJSON *a, const cJSON *b);
uint64_t op_schema__json_hash(const cJSON *a);
size_t op_schema__utf8_len(const char *s);
bool op_schema__is_integer(double d);
bool op_schema__multiple_of(double x, double m);
/* Shortest "%g" form of d that reads back as d; buf of at least 32 bytes. */
void op_schema__fmt_num(double d, char *buf, size_t n);
/* Type bit of a cJSON value (T_INTEGER also has T_NUMBER), 0 if none. */
unsigned op_schema__type_of(const cJSON *v);

/* ---- formats (schema_format.c) ---- */
int op_schema__format_id(const char *name);
const char *op_schema__format_name(int id);
/* Sets *ok to whether s is a valid instance of format id (true for
 * OP_SCHEMA__F_NONE). Returns OP_OK, or OP_ENOMEM (only "regex" allocates). */
op_err op_schema__format_check(int id, const char *s, bool *ok) OP_WUR;

#endif
