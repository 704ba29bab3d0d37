/*
 * OData $batch bodies (multipart/mixed, OData V2 and V4 alike): the request
 * body built from a list of operations, change sets included, and the
 * response body read back into one answer per operation.
 *
 * Pure text work, no I/O: the sap step sends what op_sap_batch_build writes
 * and hands the answer to op_sap_batch_parse.
 */
#ifndef OP_CONNECTORS_SAP_BATCH_H
#define OP_CONNECTORS_SAP_BATCH_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "agent/core/buf.h"
#include "agent/core/err.h"

/* Operations one batch may hold. */
#define OP_SAP_BATCH_MAX 1000

struct op_sap_batch_op {
	const char *method;   /* GET, POST, PUT, PATCH, MERGE, DELETE (any case) */
	const char *path;     /* relative to the service root: "A_SalesOrder('1')?$select=X",
	                         URL-encoded: no spaces or control characters */
	const char *body;     /* JSON text, or NULL (always NULL for a GET) */
	const char *if_match; /* ETag for If-Match (one line), or NULL */
	/* Operations with the same non-negative changeset number form one change
	 * set (all or nothing); -1 for none: always for a GET (never in a change
	 * set). A write with -1 is sent outside any change set, which OData V4
	 * allows and V2 servers refuse. Numbers of one change set are adjacent in
	 * the list. */
	int changeset;
};

/*
 * Appends to b the multipart/mixed body of the n operations with boundary
 * "batch_<id>" (change sets "changeset_<id>_<k>", k counting change sets
 * from 1 in order), CRLF line ends, each operation an application/http part
 * with "Accept: application/json" and, for a body, "Content-Type:
 * application/json" and "Content-Length". A part inside a change set carries
 * "Content-ID: <i + 1>", i the operation's index in ops (unique in the
 * batch, as V4 wants; V2 ignores it). Writes the request's Content-Type
 * value ("multipart/mixed; boundary=batch_<id>") into ct (ctlen bytes, 128
 * is enough). id is letters and digits, 1 to 40 of them.
 * OP_EINVAL, *why saying which and what ("requests[3]: ..."): no operations,
 * an op out of order, a bad method, path or If-Match, a GET with a body or
 * in a change set, a body containing the boundary (pick another id), a bad
 * id or a ct too small. OP_ELIMIT: more than OP_SAP_BATCH_MAX operations or
 * past b's cap. OP_ENOMEM. On error b is as it was and ct is "".
 */
op_err op_sap_batch_build(struct op_buf *b, const char *id, const struct op_sap_batch_op *ops,
                          size_t n, char *ct, size_t ctlen, char *why, size_t whylen) OP_WUR;

/* One operation's answer; owned by the array, freed by op_sap_batch_resp_free. */
struct op_sap_batch_resp {
	int status;     /* HTTP status of the part, e.g. 201 */
	cJSON *headers; /* {lower-case name: value} of the inner response; a repeated
	                   name's values joined with ", " */
	char *body;     /* op_malloc'd, NUL-terminated; "" when empty. Content-Length
	                   bytes when the part has one, else up to the boundary less
	                   one trailing line break */
	size_t body_len;
};

/*
 * Reads the response body (len bytes at s; content_type is the outer
 * response's Content-Type header, which carries the boundary) of a batch of
 * n operations (the ops given to op_sap_batch_build) into resp[0..n) (the
 * caller's array, zeroed first). Answers are matched to operations in
 * order; inside a change set, by Content-ID when every answer carries the
 * one its request had (V4 may reorder). A change set answered with a single
 * error response (>= 400; as SAP Gateway does when a change set fails,
 * either in place of the change set or inside it) gives every operation of
 * that change set that same status, headers and body (copies).
 * Liberal in framing: LF or CRLF, preamble and epilogue, padding after
 * boundaries, header names in any case, a quoted boundary.
 * OP_EPARSE, with *why saying where and what ("part 3 (requests[2]): no HTTP
 * status line, got ..."; "part 2.1" is the first part inside the change set
 * of part 2): content_type not multipart/mixed or without a boundary, a
 * truncated body, fewer or more answers than operations (an OData V4
 * server stops at the first failure unless the request says "Prefer:
 * odata.continue-on-error"), a part that is not an HTTP response, a body
 * shorter or longer than its Content-Length, nesting deeper than a change
 * set, header sections past 64 KiB or 200 lines. OP_EINVAL: ops out of
 * order or more than OP_SAP_BATCH_MAX. OP_ENOMEM.
 * On error resp is freed and zeroed.
 */
op_err op_sap_batch_parse(const char *s, size_t len, const char *content_type,
                          const struct op_sap_batch_op *ops, size_t n,
                          struct op_sap_batch_resp *resp, char *why, size_t whylen) OP_WUR;

/* Frees what op_sap_batch_parse put into resp[0..n) and zeroes it; resp may
 * be NULL when n is 0. The array itself is the caller's. */
void op_sap_batch_resp_free(struct op_sap_batch_resp *resp, size_t n);

#endif
