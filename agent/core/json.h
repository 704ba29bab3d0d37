/*
 * Printing JSON without losing numbers.
 *
 * cJSON 1.7.15 prints a number with "%1.15g" whenever that reads back within
 * DBL_EPSILON of the value, so 9007199254740993-sized order numbers and ids
 * come out as 9.00719925474099e+15: a silent change of data. Everything the
 * agent writes (results, stored events, responses) goes through this printer
 * instead, which writes the shortest text that reads back as exactly the same
 * double, and integers without exponent or fraction.
 */
#ifndef OP_CORE_JSON_H
#define OP_CORE_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/buf.h"
#include "agent/core/err.h"

/* Deepest value the printer walks; deeper input is OP_ELIMIT. */
#define OP_JSON_MAX_DEPTH 1000

enum op_json_flags {
	OP_JSON_COMPACT = 0,
	OP_JSON_PRETTY = 1, /* two-space indents, one member per line */
};

/*
 * Writes the shortest decimal text of d that strtod() reads back as d
 * ("0.1", "1e+21" -> "1e21", 12 -> "12") into out (at least 32 bytes).
 * NaN and infinities, which JSON cannot hold, are written as "null".
 * Returns the length.
 */
size_t op_json_num_format(double d, char *out, size_t outlen);

/* Appends the JSON text of v (NULL prints null). OP_ELIMIT past b's cap or too deep. */
op_err op_json_append(struct op_buf *b, const cJSON *v, int flags) OP_WUR;

/* Appends s[0..len) as a JSON string literal with quotes. */
op_err op_json_append_string(struct op_buf *b, const char *s, size_t len) OP_WUR;

/*
 * Parses the len bytes at s, which must be followed by a NUL (s[len] == 0),
 * as one JSON document into *out (cJSON_Delete). OP_EPARSE with err saying
 * where and what ("invalid JSON at line 2, column 8: unexpected text near
 * \"}\"", "NUL byte at offset 3"), OP_ENOMEM.
 */
op_err op_json_parse(const char *s, size_t len, cJSON **out, char *err, size_t errlen) OP_WUR;

/* True for the media type of JSON: application/json and application/X+json
 * (problem+json, vnd.x+json), parameters (; charset) ignored. */
bool op_json_media_type(const char *content_type);

/* "an object", "an array", "a string", "a number", "a boolean", "null" (also for
 * NULL): the kind of v, for error texts ("expected an array, got a string"). */
const char *op_json_kind(const cJSON *v);

/* A JSON string holding the base64 (standard alphabet, padded, one line) of
 * the n bytes at p; NULL when out of memory. */
cJSON *op_json_base64(const void *p, size_t n);

/*
 * Decodes the base64 text s (standard alphabet; line breaks and blanks
 * skipped, "=" padding optional; anything else refused) into a new op_malloc'd buffer *out of *len
 * bytes, NUL-terminated for convenience. OP_EINVAL for anything else,
 * OP_ENOMEM.
 */
op_err op_base64_decode(const char *s, char **out, size_t *len) OP_WUR;

/* The JSON text of v, op_malloc'd and NUL-terminated; NULL when out of memory or too deep. */
char *op_json_print(const cJSON *v, int flags);

/* Adds name: ms (Unix milliseconds) as RFC 3339 UTC with milliseconds, or
 * null when 0 or less, and nameMs: ms as a number. False on ENOMEM. */
bool op_json_add_time_ms(cJSON *o, const char *name, int64_t ms);
/* Adds name: s, or null when s is NULL or empty. False on ENOMEM. */
bool op_json_add_str_or_null(cJSON *o, const char *name, const char *s);

#endif
