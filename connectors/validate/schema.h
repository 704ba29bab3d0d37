/*
 * JSON Schema validation (draft 2020-12 and draft-07) over cJSON. A schema is
 * compiled once into an immutable object; that object then validates any
 * number of instances, from any number of threads at once. The compiled
 * schema owns a private copy of every document it was built from, so the
 * caller's cJSON trees are only read during op_schema_compile(). Nothing is
 * ever fetched over the network: a $ref resolves inside the schema, to a
 * document the caller supplied in op_schema_opts.docs, or to the built-in
 * draft-07 and 2020-12 metaschemas; anything else is a compile error.
 */
#ifndef OP_CONNECTORS_VALIDATE_SCHEMA_H
#define OP_CONNECTORS_VALIDATE_SCHEMA_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/core/buf.h"
#include "agent/core/err.h"

/* Schema dialects, as given to op_schema_opts.draft and op_schema_compile(). */
#define OP_SCHEMA_AUTO   0    /* from the root's $schema; 2020-12 when absent */
#define OP_SCHEMA_DRAFT7 7    /* http://json-schema.org/draft-07/schema# (and draft-06) */
#define OP_SCHEMA_2020   2020 /* https://json-schema.org/draft/2020-12/schema */

/* Default for op_schema_opts.max_depth. */
#define OP_SCHEMA_DEFAULT_MAX_DEPTH 512

struct op_schema;

/* A document that a $ref may name by URI, e.g. a shared definitions file. */
struct op_schema_doc {
	const char *uri;   /* absolute URI without fragment ("http://h/defs.json") */
	const cJSON *json; /* read during compile only; the schema keeps a copy */
};

struct op_schema_opts {
	/* OP_SCHEMA_AUTO, OP_SCHEMA_DRAFT7 or OP_SCHEMA_2020. A forced draft
	 * wins over the root's $schema. */
	int draft;
	/* Assert the formats date-time, date, time, duration, email,
	 * idn-email, hostname, ipv4, ipv6, uuid, uri, uri-reference, iri,
	 * iri-reference, uri-template, json-pointer, relative-json-pointer and
	 * regex (others stay annotations). Off: "format" never fails, as both
	 * drafts specify by default. */
	bool format_assert;
	/* Limit on nested schema evaluations during one validation (each
	 * subschema or $ref entered counts one); 0 means
	 * OP_SCHEMA_DEFAULT_MAX_DEPTH. Stops $ref loops and hostile instances. */
	unsigned max_depth;
	/* Extra documents by URI; only those a $ref names are copied. */
	const struct op_schema_doc *docs;
	size_t ndocs;
};

/*
 * Compiles a schema: checks every keyword, compiles every "pattern" and
 * "patternProperties" regular expression (ECMA-262 syntax, translated for
 * PCRE2) and resolves every $ref, so that
 * validation cannot meet a schema problem. Unknown keywords are ignored, as
 * the specification says. In draft-07 a $ref makes its sibling keywords
 * (including $id) ignored; in 2020-12 they apply alongside it.
 *
 * schema  the schema (object or boolean); only read during the call.
 * opts    options, or NULL for the defaults (all zero).
 * out     receives the compiled schema, to be released with
 *         op_schema_free(); NULL on error.
 * err     receives a one-line message on error, naming the schema location,
 *         e.g. "#/properties/age/minimum: expected a number"; truncated to
 *         errlen. May be NULL when errlen is 0.
 *
 * Returns OP_OK; OP_EINVAL for a NULL schema or out; OP_ECONFIG when the
 * schema is wrong (a keyword of the wrong type, an invalid regular
 * expression, a $ref that resolves nowhere, a $ref cycle that never descends
 * into the instance, an unsupported $schema or required vocabulary, nesting
 * deeper than 200 levels): fix the schema; OP_ENOMEM: nothing was kept, the
 * same call may succeed later.
 */
op_err op_schema_compile_opts(const cJSON *schema, const struct op_schema_opts *opts,
                              struct op_schema **out, char *err, size_t errlen) OP_WUR;

/* op_schema_compile_opts() with only the draft set (OP_SCHEMA_AUTO, ..._DRAFT7
 * or ..._2020) and every other option at its default. */
op_err op_schema_compile(const cJSON *schema, int draft, struct op_schema **out, char *err,
                         size_t errlen) OP_WUR;

/* Releases a compiled schema. NULL is a no-op. No validation may be running
 * on it. */
void op_schema_free(struct op_schema *s);

/* The dialect a compiled schema was compiled as: OP_SCHEMA_DRAFT7 or
 * OP_SCHEMA_2020. */
int op_schema_draft(const struct op_schema *s);

/*
 * Validates an instance against a compiled schema.
 *
 * s           a compiled schema; may be used by many threads at once.
 * instance    the value to check; only read.
 * valid       set to true or false; false on any error return.
 * errors      when not NULL, each problem found is appended as one line
 *             "instance path: what failed (schema path)\n", e.g.
 *             "/items/2/price: must be >= 0 (#/properties/items/items/properties/price/minimum)";
 *             the instance path is a JSON Pointer ("(root)" for the whole
 *             instance) and the schema path is the location of the keyword
 *             in its document ("uri#/pointer" outside the root document).
 *             Only problems that make the instance invalid are listed: for
 *             anyOf, oneOf, not, contains and propertyNames one line says the
 *             keyword failed, without the branches' reasons.
 * max_errors  at most this many lines are appended; 0 appends none.
 *
 * Without errors (or once max_errors lines are written) validation stops at
 * the first failure, and a valid instance costs no allocation unless an
 * array or object with over 256 members meets unevaluatedItems/Properties, or
 * uniqueItems meets over 32 items, or a regular expression cannot use PCRE2's
 * JIT, or format "regex" is asserted.
 *
 * Returns OP_OK when *valid says the answer, whatever it is; OP_EINVAL for
 * NULL arguments; OP_ELIMIT when max_depth nested evaluations were exceeded
 * (a recursive schema on a deep instance, or a $dynamicRef loop), when a
 * regular expression hit PCRE2's match or memory limit, or when errors hit
 * its cap; OP_ENOMEM when memory ran out. On error, errors may hold some
 * lines; the instance should be treated as not validated.
 */
op_err op_schema_validate(const struct op_schema *s, const cJSON *instance, bool *valid,
                          struct op_buf *errors, size_t max_errors) OP_WUR;

#endif
