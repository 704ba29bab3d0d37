/*
 * OData text the sap step writes and reads: $filter expressions with values
 * from the message, key predicates, the V2 JSON shape turned into plain
 * entities, and SAP error bodies turned into a code and a message.
 */
#ifndef OP_CONNECTORS_SAP_ODATA_H
#define OP_CONNECTORS_SAP_ODATA_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/core/buf.h"
#include "agent/core/err.h"
#include "agent/expr/expr.h"

/*
 * A $filter text whose `{{ }}` expressions become OData literals, so a
 * value from a message is always a value and never filter syntax (no
 * injection). Outside quotes a value is written as its own literal: a
 * string as 'text' with quotes doubled, a number, true, false or null.
 * Inside a quoted literal (datetime'{{ x }}', 'ABC{{ x }}') a value is
 * spliced as text with its quotes doubled. Objects and arrays are refused.
 */
struct op_odata_filter;

/* OP_EPARSE with err naming the column of an unclosed `{{` or quote, or of
 * an expression that does not compile; OP_ENOMEM. */
op_err op_odata_filter_compile(const char *src, struct op_odata_filter **out, char *err,
                               size_t errlen) OP_WUR;
void op_odata_filter_free(struct op_odata_filter *f);

/* Appends the filter with the values of env to b. OP_EINVAL (an object or
 * array, or an expression error; err says which), OP_ELIMIT, OP_ENOMEM. */
op_err op_odata_filter_render(const struct op_odata_filter *f, const struct op_expr_env *env,
                              struct op_buf *b, char *err, size_t errlen) OP_WUR;

/* Appends v as an OData literal ('it''s', 42, true, null). OP_EINVAL for
 * an object or array, OP_ELIMIT, OP_ENOMEM. */
op_err op_odata_literal(struct op_buf *b, const cJSON *v) OP_WUR;

/*
 * Appends the key predicate of key: a scalar as ('5000001') or (42), an
 * object as (SalesOrder='1',SalesOrderItem='10') in the object's order.
 * OP_EINVAL for an empty object, nested values or a name that is not an
 * OData identifier, with err saying which; OP_ELIMIT, OP_ENOMEM.
 */
op_err op_odata_key(struct op_buf *b, const cJSON *key, char *err, size_t errlen) OP_WUR;

/*
 * Turns a V2 entity (or an array of them) into the plain shape, in place:
 * `__metadata` goes, its etag kept as "@odata.etag"; deferred navigation
 * properties go; expanded collections ({"results": [...]}) become arrays;
 * /Date(ms)/ and /Date(ms+0060)/ become ISO 8601 UTC text
 * ("2024-05-01T10:00:00Z", with milliseconds when there are any).
 */
void op_odata_v2_plain(cJSON *v);

/*
 * Reads an error answer: OData JSON (V2 {"error": {"code", "message":
 * {"value"}, "innererror": {"errordetails": [...]}}} and V4 {"error":
 * {"code", "message", "details"}}), SAP's XML form, or any text. code gets
 * the SAP code ("" if none), msg the message with the details that add
 * something after "; " and the target in brackets, or an excerpt of the
 * body. Both are always NUL-terminated.
 */
void op_odata_error(const char *body, size_t len, char *code, size_t codelen, char *msg,
                    size_t msglen);

/* True when s is an OData simple identifier (letters, digits, _; not
 * starting with a digit; at most 128 characters). */
bool op_odata_name_ok(const char *s);

#endif
