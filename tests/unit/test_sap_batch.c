/*
 * Unit tests of the OData $batch bodies (connectors/sap/batch.h): the exact
 * request text, and reading answers as SAP Gateway, CAP (V2 and V4) and
 * looser servers write them. The "captured" fixtures are bytes the sap-peer
 * (shared/sap-peer, SAP CAP 9 with the V2 adapter) sent back for requests
 * op_sap_batch_build wrote; only the boundaries were replaced by SAP-style
 * ones, because the peer echoes the request's and SAP Gateway does not.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "connectors/sap/batch.h"
#include "tests/unit/test.h"

#define WHY_LEN 512

/* ---- fixtures ---- */

/* The operations of the brief's example: a GET, then a change set of two. */
static const struct op_sap_batch_op example_ops[] = {
    {"GET", "A_SalesOrder?$top=2&$select=SalesOrder,TotalNetAmount", NULL, NULL, -1},
    {"POST", "A_SalesOrder",
     "{\"SoldToParty\":\"1000002\",\"PurchaseOrderByCustomer\":\"PO-BATCH\"}", NULL, 0},
    {"MERGE", "A_SalesOrder('5000003')", "{\"PurchaseOrderByCustomer\":\"PO-MERGED\"}", "*", 0},
};

#define SO_LIST                                                                                   \
	"{\"d\":{\"results\":[{\"SalesOrder\":\"5000001\",\"TotalNetAmount\":\"25640\","          \
	"\"LastChangeDateTime\":\"/Date(1725335673000+0000)/\",\"__metadata\":{\"type\":\"API_"   \
	"SALES_ORDER_SRV.A_SalesOrder\",\"uri\":\"http://localhost:18473/sap/opu/odata/sap/API_"  \
	"SALES_ORDER_SRV/A_SalesOrder('5000001')\",\"etag\":\"W/\\\"2024-09-03T03:54:33.000Z\\\"" \
	"\"}}]}}"

#define SO_NEW                                                                                     \
	"{\"d\":{\"SalesOrder\":\"5000205\",\"SalesOrderType\":\"OR\",\"SalesOrganization\":"      \
	"\"1010\",\"DistributionChannel\":\"10\",\"OrganizationDivision\":\"00\",\"SoldToParty\":" \
	"\"1000002\",\"PurchaseOrderByCustomer\":\"PO-BATCH\",\"TotalNetAmount\":\"0\","           \
	"\"TransactionCurrency\":\"EUR\",\"OverallSDProcessStatus\":\"A\",\"CreatedByUser\":"      \
	"\"alice\",\"CreationDate\":\"/Date(1795478400000)/\",\"LastChangeDateTime\":\"/Date("     \
	"1795487272755+0000)/\",\"to_Item\":{\"__deferred\":{\"uri\":\"http://localhost:18473/"    \
	"sap/opu/odata/sap/API_SALES_ORDER_SRV/A_SalesOrder('5000205')/to_Item\"}},"               \
	"\"__metadata\":{\"type\":\"API_SALES_ORDER_SRV.A_SalesOrder\",\"uri\":\"http://"          \
	"localhost:18473/sap/opu/odata/sap/API_SALES_ORDER_SRV/A_SalesOrder('5000205')\","         \
	"\"etag\":\"W/\\\"2026-11-24T02:27:52.755Z\\\"\"}}}"

#define OUTER "batch_005056A5-09B1-1EDE-B4E1-8C3F4B0A2D61"
#define INNER "changeset_005056A5-09B1-1EDE-B4E1-8C3F4B0A6E23"

/* Captured: the answer to example_ops (with $top=1), OData V2. */
static const char sap_ok[] =
    "--" OUTER "\r\n"
    "content-type: application/http\r\n"
    "content-transfer-encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 200 OK\r\n"
    "content-type: application/json; charset=utf-8\r\n"
    "content-length: 309\r\n"
    "dataserviceversion: 2.0\r\n"
    "\r\n" SO_LIST "\r\n"
    "--" OUTER "\r\n"
    "content-type: multipart/mixed;boundary=" INNER "\r\n"
    "\r\n"
    "--" INNER "\r\n"
    "content-type: application/http\r\n"
    "content-transfer-encoding: binary\r\n"
    "content-id: 2\r\n"
    "\r\n"
    "HTTP/1.1 201 Created\r\n"
    "location: http://localhost:18473/sap/opu/odata/sap/API_SALES_ORDER_SRV/"
    "A_SalesOrder('5000205')\r\n"
    "etag: W/\"2026-11-24T02:27:52.755Z\"\r\n"
    "content-type: application/json; charset=utf-8\r\n"
    "content-length: 704\r\n"
    "dataserviceversion: 2.0\r\n"
    "content-id: 2\r\n"
    "\r\n" SO_NEW "\r\n"
    "--" INNER "\r\n"
    "content-type: application/http\r\n"
    "content-transfer-encoding: binary\r\n"
    "content-id: 3\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "etag: W/\"2026-11-24T02:27:52.755Z\"\r\n"
    "preference-applied: return=minimal\r\n"
    "dataserviceversion: 2.0\r\n"
    "content-id: 3\r\n"
    "\r\n"
    "\r\n"
    "--" INNER "--\r\n"
    "--" OUTER "--\r\n";

#define SAP_OK_CT "multipart/mixed; boundary=\"" OUTER "\""

#define ERR_999                                                                                 \
	"{\"error\":{\"message\":{\"lang\":\"en\",\"value\":\"Sold-to party 999 does not "      \
	"exist\"},"                                                                             \
	"\"code\":\"V1/302\",\"target\":\"SoldToParty\",\"severity\":\"error\",\"ContentID\":"  \
	"\"1\",\"innererror\":{\"errordetails\":[{\"message\":{\"lang\":\"en\",\"value\":"      \
	"\"Sold-to party 999 does not exist\"},\"code\":\"V1/302\",\"target\":\"SoldToParty\"," \
	"\"severity\":\"error\",\"ContentID\":\"1\"}]}}}"

#define SO_3                                                                                    \
	"{\"d\":{\"PurchaseOrderByCustomer\":\"PO-MERGED\",\"SalesOrder\":\"5000003\","         \
	"\"LastChangeDateTime\":\"/Date(1795487058909+0000)/\",\"to_Item\":{\"__deferred\":{"   \
	"\"uri\":\"http://localhost:18473/sap/opu/odata/sap/API_SALES_ORDER_SRV/A_SalesOrder("  \
	"'5000003')/to_Item\"}},\"__metadata\":{\"type\":\"API_SALES_ORDER_SRV.A_SalesOrder\"," \
	"\"uri\":\"http://localhost:18473/sap/opu/odata/sap/API_SALES_ORDER_SRV/A_SalesOrder("  \
	"'5000003')\",\"etag\":\"W/\\\"2026-11-24T02:24:18.909Z\\\"\"}}}"

/* Captured: a change set whose POST failed (so did the whole change set),
 * answered by one error part in its place, then a GET, OData V2. */
static const struct op_sap_batch_op failed_ops[] = {
    {"POST", "A_SalesOrder", "{\"SoldToParty\":\"999\",\"PurchaseOrderByCustomer\":\"PO-FAIL\"}",
     NULL, 0},
    {"MERGE", "A_SalesOrder('5000003')", "{\"PurchaseOrderByCustomer\":\"PO-MERGED\"}", "*", 0},
    {"GET", "A_SalesOrder('5000003')?$select=PurchaseOrderByCustomer", NULL, NULL, -1},
};

static const char sap_failed[] = "--batch_7\r\n"
                                 "content-type: application/http\r\n"
                                 "content-transfer-encoding: binary\r\n"
                                 "content-id: 1\r\n"
                                 "\r\n"
                                 "HTTP/1.1 400 Bad Request\r\n"
                                 "content-type: application/json; charset=utf-8\r\n"
                                 "content-length: 327\r\n"
                                 "dataserviceversion: 2.0\r\n"
                                 "\r\n" ERR_999 "\r\n"
                                 "--batch_7\r\n"
                                 "content-type: application/http\r\n"
                                 "content-transfer-encoding: binary\r\n"
                                 "\r\n"
                                 "HTTP/1.1 200 OK\r\n"
                                 "etag: W/\"2026-11-24T02:24:18.909Z\"\r\n"
                                 "content-type: application/json; charset=utf-8\r\n"
                                 "content-length: 436\r\n"
                                 "dataserviceversion: 2.0\r\n"
                                 "\r\n" SO_3 "\r\n"
                                 "--batch_7--\r\n";

/* ---- helpers ---- */

static op_err parse(const char *text, const char *ct, const struct op_sap_batch_op *ops, size_t n,
                    struct op_sap_batch_resp *r, char *why)
{
	why[0] = '\0';
	return op_sap_batch_parse(text, strlen(text), ct, ops, n, r, why, WHY_LEN);
}

/* An op_malloc'd copy of s without its CRs. */
static char *lf_only(const char *s)
{
	char *o = op_malloc(strlen(s) + 1);
	ck_assert_ptr_nonnull(o);
	size_t k = 0;
	for (; *s; s++)
		if (*s != '\r')
			o[k++] = *s;
	o[k] = '\0';
	return o;
}

static const char *hdr(const struct op_sap_batch_resp *r, const char *name)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->headers, name));
}

static void assert_zeroed(const struct op_sap_batch_resp *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(r[i].status, 0);
		ck_assert_ptr_null(r[i].headers);
		ck_assert_ptr_null(r[i].body);
		ck_assert_uint_eq(r[i].body_len, 0);
	}
}

static void assert_sap_ok(const struct op_sap_batch_resp *r)
{
	ck_assert_int_eq(r[0].status, 200);
	ck_assert_uint_eq(r[0].body_len, 309);
	ck_assert_str_eq(r[0].body, SO_LIST);
	ck_assert_str_eq(hdr(&r[0], "content-type"), "application/json; charset=utf-8");
	ck_assert_str_eq(hdr(&r[0], "dataserviceversion"), "2.0");
	ck_assert_int_eq(r[1].status, 201);
	ck_assert_uint_eq(r[1].body_len, 704);
	ck_assert_str_eq(r[1].body, SO_NEW);
	ck_assert_str_eq(hdr(&r[1], "location"), "http://localhost:18473/sap/opu/odata/sap/"
	                                         "API_SALES_ORDER_SRV/A_SalesOrder('5000205')");
	ck_assert_str_eq(hdr(&r[1], "etag"), "W/\"2026-11-24T02:27:52.755Z\"");
	ck_assert_int_eq(r[2].status, 204);
	ck_assert_uint_eq(r[2].body_len, 0);
	ck_assert_str_eq(r[2].body, "");
	ck_assert_str_eq(hdr(&r[2], "preference-applied"), "return=minimal");
	ck_assert_int_eq(cJSON_GetArraySize(r[2].headers), 4);
}

/* ---- building ---- */

START_TEST(build_exact_get_and_changeset)
{
	static const char want[] =
	    "--batch_1\r\n"
	    "Content-Type: application/http\r\n"
	    "Content-Transfer-Encoding: binary\r\n"
	    "\r\n"
	    "GET A_SalesOrder?$top=2&$select=SalesOrder,TotalNetAmount HTTP/1.1\r\n"
	    "Accept: application/json\r\n"
	    "\r\n"
	    "\r\n"
	    "--batch_1\r\n"
	    "Content-Type: multipart/mixed; boundary=changeset_1_1\r\n"
	    "\r\n"
	    "--changeset_1_1\r\n"
	    "Content-Type: application/http\r\n"
	    "Content-Transfer-Encoding: binary\r\n"
	    "Content-ID: 2\r\n"
	    "\r\n"
	    "POST A_SalesOrder HTTP/1.1\r\n"
	    "Content-Type: application/json\r\n"
	    "Accept: application/json\r\n"
	    "Content-Length: 62\r\n"
	    "\r\n"
	    "{\"SoldToParty\":\"1000002\",\"PurchaseOrderByCustomer\":\"PO-BATCH\"}\r\n"
	    "--changeset_1_1\r\n"
	    "Content-Type: application/http\r\n"
	    "Content-Transfer-Encoding: binary\r\n"
	    "Content-ID: 3\r\n"
	    "\r\n"
	    "MERGE A_SalesOrder('5000003') HTTP/1.1\r\n"
	    "Content-Type: application/json\r\n"
	    "Accept: application/json\r\n"
	    "If-Match: *\r\n"
	    "Content-Length: 39\r\n"
	    "\r\n"
	    "{\"PurchaseOrderByCustomer\":\"PO-MERGED\"}\r\n"
	    "--changeset_1_1--\r\n"
	    "\r\n"
	    "--batch_1--\r\n";
	struct op_buf b;
	op_buf_init(&b, 1 << 20);
	char ct[128], why[WHY_LEN] = "";
	ck_assert_int_eq(
	    op_sap_batch_build(&b, "1", example_ops, 3, ct, sizeof(ct), why, sizeof(why)), OP_OK);
	ck_assert_str_eq(op_buf_str(&b), want);
	ck_assert_uint_eq(b.len, sizeof(want) - 1);
	ck_assert_str_eq(ct, "multipart/mixed; boundary=batch_1");
	op_buf_fini(&b);
}
END_TEST

START_TEST(build_appends_and_numbers_changesets)
{
	static const struct op_sap_batch_op ops[] = {
	    {"get", "A_SalesOrder/$count", NULL, NULL, -1},
	    {"post", "A_SalesOrder", "{}", NULL, 7},
	    {"PUT", "A_SalesOrder('1')", "{\"a\":1}", "W/\"x\"", -1},
	    {"Patch", "A_SalesOrder('2')", "{\"b\":2}", "*", 0},
	    {"DELETE", "A_SalesOrder('3')", NULL, "*", 0},
	};
	struct op_buf b;
	op_buf_init(&b, 1 << 20);
	ck_assert_int_eq(op_buf_adds(&b, "kept|"), OP_OK);
	char ct[128], why[WHY_LEN] = "";
	ck_assert_int_eq(op_sap_batch_build(&b, "Ab12", ops, 5, ct, sizeof(ct), why, sizeof(why)),
	                 OP_OK);
	const char *s = op_buf_str(&b);
	ck_assert(strncmp(s, "kept|--batch_Ab12\r\n", 19) == 0);
	ck_assert_str_eq(ct, "multipart/mixed; boundary=batch_Ab12");
	/* Methods in their canonical spelling. */
	ck_assert_ptr_nonnull(strstr(s, "\r\nGET A_SalesOrder/$count HTTP/1.1\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "\r\nPOST A_SalesOrder HTTP/1.1\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "\r\nPATCH A_SalesOrder('2') HTTP/1.1\r\n"));
	/* Change sets numbered in order, whatever the caller's numbers; the
	 * Content-ID is the operation's index + 1. */
	ck_assert_ptr_nonnull(strstr(s, "boundary=changeset_Ab12_1\r\n\r\n--changeset_Ab12_1\r\n"
	                                "Content-Type: application/http\r\n"
	                                "Content-Transfer-Encoding: binary\r\n"
	                                "Content-ID: 2\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "--changeset_Ab12_1--\r\n\r\n--batch_Ab12\r\n"
	                                "Content-Type: application/http\r\n"
	                                "Content-Transfer-Encoding: binary\r\n\r\n"
	                                "PUT A_SalesOrder('1') HTTP/1.1\r\n"
	                                "Content-Type: application/json\r\n"
	                                "Accept: application/json\r\n"
	                                "If-Match: W/\"x\"\r\n"
	                                "Content-Length: 7\r\n\r\n"
	                                "{\"a\":1}\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "Content-ID: 4\r\n\r\nPATCH"));
	ck_assert_ptr_nonnull(strstr(s, "--changeset_Ab12_2\r\n"
	                                "Content-Type: application/http\r\n"
	                                "Content-Transfer-Encoding: binary\r\n"
	                                "Content-ID: 5\r\n\r\n"
	                                "DELETE A_SalesOrder('3') HTTP/1.1\r\n"
	                                "Accept: application/json\r\n"
	                                "If-Match: *\r\n\r\n\r\n"
	                                "--changeset_Ab12_2--\r\n\r\n--batch_Ab12--\r\n"));
	ck_assert_ptr_null(strstr(s, "changeset_Ab12_3"));
	ck_assert_ptr_null(strstr(s, "Content-ID: 1\r\n"));
	ck_assert_ptr_null(strstr(s, "Content-ID: 3\r\n"));
	size_t parts = 0;
	for (const char *p = s; (p = strstr(p, "\r\n--batch_Ab12\r\n")) != NULL; p++)
		parts++;
	ck_assert_uint_eq(parts, 3); /* 4 units, the first right after "kept|" */
	op_buf_fini(&b);
}
END_TEST

struct bad_build {
	struct op_sap_batch_op ops[3];
	size_t n;
	const char *id;
	op_err rc;
	const char *why;
};

START_TEST(build_rejects_bad_input)
{
	static const struct bad_build cases[] = {
	    {{{"GET", "A", NULL, NULL, -1}, {"FETCH", "A", NULL, NULL, -1}},
	     2,
	     "x1",
	     OP_EINVAL,
	     "requests[1]: method \"FETCH\": GET, POST, PUT, PATCH, MERGE or DELETE"},
	    {{{"GET", "A", NULL, NULL, -1}, {NULL, "A", NULL, NULL, -1}},
	     2,
	     "x1",
	     OP_EINVAL,
	     "requests[1]: method \"(none)\": GET, POST, PUT, PATCH, MERGE or DELETE"},
	    {{{"POST", "A", "{}", NULL, 0},
	      {"POST", "B", "{}", NULL, 1},
	      {"POST", "C", "{}", NULL, 0}},
	     3,
	     "x1",
	     OP_EINVAL,
	     "requests[2]: change set 0 also holds requests[0], with other requests in between; "
	     "the requests of one change set must be adjacent"},
	    {{{"POST", "A", "{}", NULL, 0},
	      {"GET", "B", NULL, NULL, -1},
	      {"POST", "C", "{}", NULL, 0}},
	     3,
	     "x1",
	     OP_EINVAL,
	     "requests[2]: change set 0 also holds requests[0], with other requests in between; "
	     "the requests of one change set must be adjacent"},
	    {{{"POST", "A", "{}", NULL, -2}},
	     1,
	     "x1",
	     OP_EINVAL,
	     "requests[0]: changeset -2: -1 (none) or a number from 0"},
	    {{{"GET", "A", NULL, NULL, 3}},
	     1,
	     "x1",
	     OP_EINVAL,
	     "requests[0]: a GET is never in a change set"},
	    {{{"GET", "A", "{}", NULL, -1}},
	     1,
	     "x1",
	     OP_EINVAL,
	     "requests[0]: a GET takes no body"},
	    {{{"GET", "A", NULL, NULL, -1}, {"GET", "A_SalesOrder?$filter=a eq 1", NULL, NULL, -1}},
	     2,
	     "x1",
	     OP_EINVAL,
	     "requests[1]: the path has a space or control character at offset 22; encode it "
	     "(%20)"},
	    {{{"GET", "A\r\nX-Evil: 1", NULL, NULL, -1}},
	     1,
	     "x1",
	     OP_EINVAL,
	     "requests[0]: the path has a space or control character at offset 1; encode it (%20)"},
	    {{{"GET", "", NULL, NULL, -1}}, 1, "x1", OP_EINVAL, "requests[0]: no path"},
	    {{{"PATCH", "A('1')", "{}", "*\r\nX: y", 0}},
	     1,
	     "x1",
	     OP_EINVAL,
	     "requests[0]: ifMatch must be one non-empty line"},
	    {{{"POST", "A", "{\"t\":\"\r\n--batch_x1\r\n\"}", NULL, 0}},
	     1,
	     "x1",
	     OP_EINVAL,
	     "requests[0]: the body contains the boundary \"batch_x1\" or \"changeset_x1_\"; use "
	     "another batch id"},
	    {{{"POST", "A", "--changeset_x1_1", NULL, 0}},
	     1,
	     "x1",
	     OP_EINVAL,
	     "requests[0]: the body contains the boundary \"batch_x1\" or \"changeset_x1_\"; use "
	     "another batch id"},
	    {{{"GET", "A", NULL, NULL, -1}},
	     1,
	     "a-b",
	     OP_EINVAL,
	     "batch id \"a-b\": 1 to 40 letters and digits"},
	    {{{"GET", "A", NULL, NULL, -1}},
	     1,
	     "",
	     OP_EINVAL,
	     "batch id \"\": 1 to 40 letters and digits"},
	    {{{"GET", "A", NULL, NULL, -1}},
	     1,
	     "a23456789012345678901234567890123456789012",
	     OP_EINVAL,
	     "batch id \"a23456789012345678901234567890123456789012\": 1 to 40 letters and digits"},
	    {{{"GET", "A", NULL, NULL, -1}}, 0, "x1", OP_EINVAL, "no requests"},
	    {{{"GET", "A", NULL, NULL, -1}},
	     OP_SAP_BATCH_MAX + 1,
	     "x1",
	     OP_ELIMIT,
	     "1001 requests; one batch takes at most 1000"},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct op_buf b;
		op_buf_init(&b, 1 << 20);
		char ct[128] = "junk", why[WHY_LEN] = "";
		op_err rc = op_sap_batch_build(&b, cases[c].id, cases[c].ops, cases[c].n, ct,
		                               sizeof(ct), why, sizeof(why));
		ck_assert_msg(rc == cases[c].rc, "case %zu: %s: %s", c, op_err_name(rc), why);
		ck_assert_msg(strcmp(why, cases[c].why) == 0, "case %zu: %s", c, why);
		ck_assert_uint_eq(b.len, 0);
		ck_assert_ptr_null(b.data);
		ck_assert_str_eq(ct, "");
		op_buf_fini(&b);
	}
	/* A Content-Type buffer too small for the boundary. */
	struct op_buf b;
	op_buf_init(&b, 1 << 20);
	char ct[20], why[WHY_LEN];
	ck_assert_int_eq(
	    op_sap_batch_build(&b, "1", example_ops, 3, ct, sizeof(ct), why, sizeof(why)),
	    OP_EINVAL);
	ck_assert_str_eq(why, "ct: 20 bytes, the Content-Type needs 34");
	ck_assert_uint_eq(b.len, 0);
	op_buf_fini(&b);
}
END_TEST

START_TEST(build_cap_and_memory_leave_buffer)
{
	struct op_buf b;
	op_buf_init(&b, 600);
	ck_assert_int_eq(op_buf_adds(&b, "before"), OP_OK);
	char ct[128], why[WHY_LEN];
	ck_assert_int_eq(
	    op_sap_batch_build(&b, "1", example_ops, 3, ct, sizeof(ct), why, sizeof(why)),
	    OP_ELIMIT);
	ck_assert_str_eq(why, "the batch body is larger than 600 bytes");
	ck_assert_str_eq(op_buf_str(&b), "before");
	ck_assert_uint_eq(b.len, 6);
	ck_assert_str_eq(ct, "");
	op_buf_fini(&b);

	struct op_buf ref;
	op_buf_init(&ref, 1 << 20);
	ck_assert_int_eq(
	    op_sap_batch_build(&ref, "1", example_ops, 3, ct, sizeof(ct), why, sizeof(why)), OP_OK);
	bool done = false;
	for (uint64_t n = 1; n < 1000 && !done; n++) {
		op_buf_init(&b, 1 << 20);
		op_alloc_fail_at(n);
		op_err rc =
		    op_sap_batch_build(&b, "1", example_ops, 3, ct, sizeof(ct), why, sizeof(why));
		op_alloc_fail_at(0);
		if (rc == OP_OK) {
			ck_assert_str_eq(op_buf_str(&b), op_buf_str(&ref));
			done = true;
		} else {
			ck_assert_msg(rc == OP_ENOMEM, "n=%llu: %s", (unsigned long long)n,
			              op_err_name(rc));
			ck_assert_str_eq(why, "out of memory");
			ck_assert_uint_eq(b.len, 0);
		}
		op_buf_fini(&b);
	}
	ck_assert(done);
	op_buf_fini(&ref);
}
END_TEST

/* ---- reading what servers send ---- */

START_TEST(parse_sap_answer_other_boundary_quoted)
{
	struct op_sap_batch_resp r[3];
	char why[WHY_LEN];
	/* The request's boundary was batch_1: the answer's is its own. */
	ck_assert_int_eq(parse(sap_ok, SAP_OK_CT, example_ops, 3, r, why), OP_OK);
	assert_sap_ok(r);
	op_sap_batch_resp_free(r, 3);
	assert_zeroed(r, 3);
	/* Content-Type as CAP writes it: no space, no quotes, upper case. */
	ck_assert_int_eq(parse(sap_ok, "Multipart/Mixed;Boundary=" OUTER, example_ops, 3, r, why),
	                 OP_OK);
	assert_sap_ok(r);
	op_sap_batch_resp_free(r, 3);
}
END_TEST

START_TEST(parse_lf_only)
{
	char *lf = lf_only(sap_ok);
	struct op_sap_batch_resp r[3];
	char why[WHY_LEN];
	ck_assert_int_eq(parse(lf, "multipart/mixed;boundary=" OUTER, example_ops, 3, r, why),
	                 OP_OK);
	assert_sap_ok(r);
	op_sap_batch_resp_free(r, 3);
	op_free(lf);
}
END_TEST

START_TEST(parse_failed_changeset_one_outer_part)
{
	struct op_sap_batch_resp r[3];
	char why[WHY_LEN];
	ck_assert_int_eq(
	    parse(sap_failed, "multipart/mixed;boundary=batch_7", failed_ops, 3, r, why), OP_OK);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(r[i].status, 400);
		ck_assert_uint_eq(r[i].body_len, 327);
		ck_assert_str_eq(r[i].body, ERR_999);
		ck_assert_str_eq(hdr(&r[i], "content-length"), "327");
	}
	/* Copies, not shared: each frees its own. */
	ck_assert_ptr_ne(r[0].body, r[1].body);
	ck_assert_ptr_ne(r[0].headers, r[1].headers);
	ck_assert_int_eq(r[2].status, 200);
	ck_assert_uint_eq(r[2].body_len, 436);
	ck_assert_str_eq(r[2].body, SO_3);
	op_sap_batch_resp_free(r, 3);

	/* The same for a change set of one. */
	static const struct op_sap_batch_op one[] = {
	    {"POST", "A_SalesOrder", "{}", NULL, 4},
	    {"GET", "A_SalesOrder('5000003')", NULL, NULL, -1},
	};
	ck_assert_int_eq(parse(sap_failed, "multipart/mixed; boundary=batch_7", one, 2, r, why),
	                 OP_OK);
	ck_assert_int_eq(r[0].status, 400);
	ck_assert_int_eq(r[1].status, 200);
	op_sap_batch_resp_free(r, 2);
}
END_TEST

/* V4 (CAP) when one request of a change set fails, with continue-on-error. */
static const char v4_inner_error[] =
    "--batch_9\r\n"
    "content-type: multipart/mixed;boundary=changeset_q\r\n"
    "\r\n"
    "--changeset_q\r\n"
    "content-type: application/http\r\n"
    "content-transfer-encoding: binary\r\n"
    "content-id: 1\r\n"
    "\r\n"
    "HTTP/1.1 400 Bad Request\r\n"
    "odata-version: 4.0\r\n"
    "content-type: application/json; charset=utf-8\r\n"
    "content-length: 145\r\n"
    "\r\n"
    "{\"error\":{\"message\":\"Sold-to party 999 does not exist\",\"code\":\"V1/302\","
    "\"target\":\"SoldToParty\",\"@Common.numericSeverity\":4,\"@Core.ContentID\":\"1\"}}\r\n"
    "--changeset_q--\r\n"
    "--batch_9\r\n"
    "content-type: application/http\r\n"
    "content-transfer-encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 404 Not Found\r\n"
    "content-type: application/json\r\n"
    "\r\n"
    "{\"error\":{\"code\":\"404\",\"message\":\"Not Found\"}}\r\n"
    "--batch_9--\r\n";

START_TEST(parse_failed_changeset_error_inside)
{
	static const struct op_sap_batch_op ops[] = {
	    {"POST", "A_SalesOrder", "{\"SoldToParty\":\"999\"}", NULL, 0},
	    {"PATCH", "A_SalesOrder('5000003')", "{}", "*", 0},
	    {"PATCH", "A_SalesOrder('5000004')", "{}", "*", 0},
	    {"GET", "A_SalesOrder('1')", NULL, NULL, -1},
	};
	struct op_sap_batch_resp r[4];
	char why[WHY_LEN];
	ck_assert_int_eq(parse(v4_inner_error, "multipart/mixed;boundary=batch_9", ops, 4, r, why),
	                 OP_OK);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(r[i].status, 400);
		ck_assert_uint_eq(r[i].body_len, 145);
		ck_assert(strncmp(r[i].body, "{\"error\":{\"message\":\"Sold-to party 999", 38) ==
		          0);
		ck_assert_str_eq(hdr(&r[i], "odata-version"), "4.0");
	}
	ck_assert_int_eq(r[3].status, 404);
	ck_assert_str_eq(r[3].body, "{\"error\":{\"code\":\"404\",\"message\":\"Not Found\"}}");
	op_sap_batch_resp_free(r, 4);
}
END_TEST

START_TEST(parse_liberal_framing)
{
	/* Preamble and epilogue, padding after boundaries, a bare LF here and
	 * there, header names in any case, a body without Content-Length and
	 * with its own CRLF before the delimiter's, a status line after a blank
	 * line, a part without MIME headers, a response without a blank line. */
	static const char text[] =
	    "This is a multi-part message in MIME format.\r\n"
	    "--b  \t\r\n"
	    "CONTENT-TYPE: Application/HTTP; msgtype=response\r\n"
	    "\r\n"
	    "\r\n"
	    "HTTP/1.0 200 OK\r\n"
	    "Content-Type: text/plain\r\n"
	    "\r\n"
	    "203\r\n"
	    "\r\n"
	    "--b\n"
	    "HTTP/1.1 201 Created\n"
	    "ETag: W/\"1\"\n"
	    "\n"
	    "{\"d\":{}}\n"
	    "--b \r\n"
	    "Content-Type: multipart/mixed; charset=x; Boundary = \"c s;1\"\r\n"
	    "\r\n"
	    "preamble of the change set\r\n"
	    "--c s;1\r\n"
	    "Content-Type: application/http\r\n"
	    "\r\n"
	    "HTTP/1.1 204 No Content\r\n"
	    "--c s;1\r\n"
	    "Content-Type: application/http\r\n"
	    "\r\n"
	    "HTTP/1.1 204\r\n"
	    "\r\n"
	    "--c s;1--   \r\n"
	    "epilogue of the change set\r\n"
	    "--b\r\n"
	    "Content-Type: application/http\r\n"
	    "\r\n"
	    "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 2\r\n"
	    "\r\n"
	    "{}\r\n"
	    "\r\n"
	    "--b--\r\n"
	    "trailing words\r\n--b\r\nnot a part\r\n";
	static const struct op_sap_batch_op ops[] = {
	    {"GET", "A/$count", NULL, NULL, -1}, {"POST", "A", "{}", NULL, 0},
	    {"PATCH", "A('1')", "{}", "*", 1},   {"DELETE", "A('2')", NULL, "*", 1},
	    {"GET", "A('3')", NULL, NULL, -1},
	};
	struct op_sap_batch_resp r[5];
	char why[WHY_LEN];
	ck_assert_int_eq(parse(text, "multipart/mixed; boundary=\"b\"", ops, 5, r, why), OP_OK);
	ck_assert_int_eq(r[0].status, 200);
	ck_assert_str_eq(r[0].body, "203");
	ck_assert_uint_eq(r[0].body_len, 3);
	ck_assert_str_eq(hdr(&r[0], "content-type"), "text/plain");
	ck_assert_int_eq(r[1].status, 201);
	ck_assert_str_eq(r[1].body, "{\"d\":{}}");
	ck_assert_str_eq(hdr(&r[1], "etag"), "W/\"1\"");
	ck_assert_int_eq(r[2].status, 204);
	ck_assert_str_eq(r[2].body, "");
	ck_assert_int_eq(cJSON_GetArraySize(r[2].headers), 0);
	ck_assert_int_eq(r[3].status, 204);
	ck_assert_str_eq(r[3].body, "");
	ck_assert_int_eq(r[4].status, 200);
	ck_assert_str_eq(r[4].body, "{}");
	ck_assert_uint_eq(r[4].body_len, 2);
	op_sap_batch_resp_free(r, 5);
}
END_TEST

START_TEST(parse_not_delimiters_inside_bodies)
{
	/* The boundary inside a line, or as the start of a longer word at
	 * the start of a line, does not end a part. */
	static const char text[] = "--xy\r\n"
	                           "Content-Type: application/http\r\n"
	                           "\r\n"
	                           "HTTP/1.1 200 OK\r\n"
	                           "\r\n"
	                           "a --xy b\r\n"
	                           "--xyz\r\n"
	                           "--xy-\r\n"
	                           "--xy x\r\n"
	                           "tail --xy\r\n"
	                           "mid--xy--\r\n"
	                           "end\r\n"
	                           "--xy--";
	static const struct op_sap_batch_op ops[] = {{"GET", "A", NULL, NULL, -1}};
	struct op_sap_batch_resp r[1];
	char why[WHY_LEN];
	ck_assert_int_eq(parse(text, "multipart/mixed; boundary=xy", ops, 1, r, why), OP_OK);
	ck_assert_str_eq(r[0].body,
	                 "a --xy b\r\n--xyz\r\n--xy-\r\n--xy x\r\ntail --xy\r\nmid--xy--\r\nend");
	op_sap_batch_resp_free(r, 1);
}
END_TEST

START_TEST(parse_v4_content_ids_reorder)
{
	/* V4 may answer a change set in another order; the Content-IDs (the
	 * request's index + 1) say which answer is whose. */
	static const char text[] = "--B\r\n"
	                           "Content-Type: application/http\r\n\r\n"
	                           "HTTP/1.1 200 OK\r\n\r\n"
	                           "{\"value\":[]}\r\n"
	                           "--B\r\n"
	                           "Content-Type: multipart/mixed; boundary=C\r\n\r\n"
	                           "--C\r\n"
	                           "Content-Type: application/http\r\n"
	                           "Content-ID: 4\r\n\r\n"
	                           "HTTP/1.1 204 No Content\r\n\r\n\r\n"
	                           "--C\r\n"
	                           "Content-Type: application/http\r\n"
	                           "Content-ID: 2\r\n\r\n"
	                           "HTTP/1.1 201 Created\r\n\r\n"
	                           "{\"id\":2}\r\n"
	                           "--C\r\n"
	                           "Content-Type: application/http\r\n"
	                           "Content-ID: 3\r\n\r\n"
	                           "HTTP/1.1 200 OK\r\n\r\n"
	                           "{\"id\":3}\r\n"
	                           "--C--\r\n"
	                           "--B--\r\n";
	static const struct op_sap_batch_op ops[] = {
	    {"GET", "A", NULL, NULL, -1},
	    {"POST", "A", "{}", NULL, 0},
	    {"PATCH", "A('1')", "{}", NULL, 0},
	    {"DELETE", "A('2')", NULL, NULL, 0},
	};
	struct op_sap_batch_resp r[4];
	char why[WHY_LEN];
	ck_assert_int_eq(parse(text, "multipart/mixed; boundary=B", ops, 4, r, why), OP_OK);
	ck_assert_int_eq(r[0].status, 200);
	ck_assert_int_eq(r[1].status, 201);
	ck_assert_str_eq(r[1].body, "{\"id\":2}");
	ck_assert_int_eq(r[2].status, 200);
	ck_assert_str_eq(r[2].body, "{\"id\":3}");
	ck_assert_int_eq(r[3].status, 204);
	op_sap_batch_resp_free(r, 4);

	/* Content-IDs that are not the request's: answers in the order given. */
	static const struct op_sap_batch_op two[] = {
	    {"POST", "A", "{}", NULL, 0},
	    {"POST", "A", "{}", NULL, 0},
	};
	static const char dup[] = "--B\r\n"
	                          "Content-Type: multipart/mixed; boundary=C\r\n\r\n"
	                          "--C\r\n"
	                          "Content-Type: application/http\r\nContent-ID: 2\r\n\r\n"
	                          "HTTP/1.1 201 Created\r\n\r\n"
	                          "first\r\n"
	                          "--C\r\n"
	                          "Content-Type: application/http\r\nContent-ID: 2\r\n\r\n"
	                          "HTTP/1.1 202 Accepted\r\n\r\n"
	                          "second\r\n"
	                          "--C--\r\n"
	                          "--B--\r\n";
	ck_assert_int_eq(parse(dup, "multipart/mixed; boundary=B", two, 2, r, why), OP_OK);
	ck_assert_int_eq(r[0].status, 201);
	ck_assert_str_eq(r[0].body, "first");
	ck_assert_int_eq(r[1].status, 202);
	ck_assert_str_eq(r[1].body, "second");
	op_sap_batch_resp_free(r, 2);
}
END_TEST

START_TEST(parse_headers)
{
	static const char text[] = "--B\r\n"
	                           "Content-Type: application/http\r\n\r\n"
	                           "HTTP/1.1 200 OK\r\n"
	                           "Set-Cookie: a=1\r\n"
	                           "X-Long: part one\r\n"
	                           "   part two\r\n"
	                           "set-cookie: b=2\r\n"
	                           "X-Bytes: caf\xE9!\r\n"
	                           "Empty:\r\n"
	                           "no colon here\r\n"
	                           "X-Pad :  v  \r\n"
	                           "\r\n"
	                           "{}\r\n"
	                           "--B--\r\n";
	static const struct op_sap_batch_op ops[] = {{"GET", "A", NULL, NULL, -1}};
	struct op_sap_batch_resp r[1];
	char why[WHY_LEN];
	ck_assert_int_eq(parse(text, "multipart/mixed; boundary=B", ops, 1, r, why), OP_OK);
	ck_assert_json_text(r[0].headers, "{\"set-cookie\":\"a=1, b=2\",\"x-long\":\"part one part "
	                                  "two\",\"x-bytes\":\"caf\\ufffd!\",\"empty\":\"\","
	                                  "\"x-pad\":\"v\"}");
	op_sap_batch_resp_free(r, 1);
}
END_TEST

/* ---- reading what must be refused ---- */

struct bad_parse {
	const char *text;
	const char *ct;
	const char *why;
};

START_TEST(parse_malformed)
{
	/* The GET and the change set of the example, answered wrongly. */
	static const struct bad_parse cases[] = {
	    {sap_ok, "multipart/mixed",
	     "the response's Content-Type has no usable boundary parameter: "
	     "\"multipart/mixed\""},
	    {sap_ok, "multipart/mixed; boundary=\"\"",
	     "the response's Content-Type has no usable boundary parameter: \"multipart/mixed; "
	     "boundary=\"\"\""},
	    {sap_ok, "application/json; charset=utf-8",
	     "the response is not multipart/mixed (Content-Type \"application/json; "
	     "charset=utf-8\")"},
	    {sap_ok, "", "the response is not multipart/mixed (Content-Type nothing)"},
	    {sap_ok, "multipart/mixed; boundary=batch_1",
	     "no boundary line \"--batch_1\" in the response (it starts "
	     "\"--batch_005056A5-09B1-1EDE-B4E1-8C3F4B0A...\")"},
	    /* Truncated in the middle of the second part. */
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n"
	     "--B\r\nContent-Type: multipart/mixed; boundary=C\r\n\r\n--C\r\n"
	     "Content-Type: application/http\r\n\r\nHTTP/1.1 201 Created\r\n\r\n{\"d\":",
	     "multipart/mixed; boundary=B", "part 2: truncated, no boundary line \"--B\" after it"},
	    /* Truncated before the close delimiter of the change set. */
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n"
	     "--B\r\nContent-Type: multipart/mixed; boundary=C\r\n\r\n--C\r\n"
	     "Content-Type: application/http\r\n\r\nHTTP/1.1 201 Created\r\n\r\n{}\r\n--C\r\n"
	     "Content-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 2.2: truncated, no boundary line \"--C\" after it"},
	    /* The body shorter than its Content-Length. */
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: "
	     "10\r\n"
	     "\r\n{\"d\":1}\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 1 (requests[0]): truncated: the body has 7 bytes, its Content-Length says 10"},
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
	     "\r\n{\"d\":1}\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 1 (requests[0]): the body has 7 bytes, more than its Content-Length 3"},
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: "
	     "1e3\r\n"
	     "\r\n{}\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 1 (requests[0]): Content-Length \"1e3\" is not a number"},
	    /* No status line. */
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n"
	     "--B\r\nContent-Type: multipart/mixed; boundary=C\r\n\r\n--C\r\n"
	     "Content-Type: application/http\r\n\r\n{\"d\":{}}\r\n--C--\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 2.1 (requests[1]): no HTTP status line, got \"{\"d\":{}}\""},
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 OK\r\n\r\n{}\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 1 (requests[0]): no HTTP status line, got \"HTTP/1.1 OK\""},
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 2000 OK\r\n\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 1 (requests[0]): no HTTP status line, got \"HTTP/1.1 2000 OK\""},
	    {"--B\r\nContent-Type: application/http\r\n\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 1 (requests[0]): no HTTP status line, got nothing"},
	    /* Fewer answers than operations. */
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 2 (requests[1]): missing; the response ends after 1 part for 3 requests"},
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\n{}\r\n"
	     "--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 2 (requests[1]): missing; the response ends after 1 part for 3 requests, the "
	     "last one an error: the server stopped there (OData V4 does without Prefer: "
	     "odata.continue-on-error)"},
	    {"preamble only", "multipart/mixed; boundary=B",
	     "no boundary line \"--B\" in the response (it starts \"preamble only\")"},
	    {"", "multipart/mixed; boundary=B",
	     "no boundary line \"--B\" in the response (it starts nothing)"},
	    {"--B--\r\n", "multipart/mixed; boundary=B",
	     "part 1 (requests[0]): missing; the response ends after 0 parts for 3 requests"},
	    /* More answers than operations. */
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n"
	     "--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\n{}\r\n"
	     "--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n--B--\r\n",
	     "multipart/mixed; boundary=B", "part 3: more answers than the 3 requests"},
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n"
	     "--B\r\nContent-Type: multipart/mixed; boundary=C\r\n\r\n"
	     "--C\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 201 Created\r\n\r\n\r\n"
	     "--C\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n"
	     "--C\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n"
	     "--C--\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 2.3: more answers than the 2 requests of the change set (requests[1..2])"},
	    /* A change set with one success answer for two requests. */
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n"
	     "--B\r\nContent-Type: multipart/mixed; boundary=C\r\n\r\n"
	     "--C\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 201 Created\r\n\r\n\r\n"
	     "--C--\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 2: 1 answer for the change set of 2 requests (requests[1..2])"},
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n"
	     "--B\r\nContent-Type: multipart/mixed; boundary=C\r\n\r\n--C--\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 2: 0 answers for the change set of 2 requests (requests[1..2])"},
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n"
	     "--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 201 Created\r\n\r\n{}\r\n"
	     "--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 2 (requests[1..2]): a single 201 answer for a change set of 2 requests"},
	    /* A change set where a single request was. */
	    {"--B\r\nContent-Type: multipart/mixed; boundary=C\r\n\r\n--C--\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 1 (requests[0]): a change set answers a request that is in none"},
	    /* Nesting deeper than a change set. */
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n"
	     "--B\r\nContent-Type: multipart/mixed; boundary=C\r\n\r\n"
	     "--C\r\nContent-Type: multipart/mixed; boundary=D\r\n\r\n--D--\r\n--C--\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 2.1 (requests[1]): a multipart inside a change set; only one level of nesting "
	     "is "
	     "allowed"},
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n"
	     "--B\r\nContent-Type: multipart/mixed\r\n\r\n--C--\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 2 (requests[1..2]): a change set (multipart/mixed) without a usable boundary "
	     "parameter: \"multipart/mixed\""},
	    {"--B\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n"
	     "--B\r\nContent-Type: multipart/mixed; boundary=C\r\n\r\n--D--\r\n--B--\r\n",
	     "multipart/mixed; boundary=B", "part 2 (requests[1..2]): no boundary line \"--C\""},
	    {"--B\r\nContent-Type: text/html\r\n\r\n<html>\r\n--B--\r\n",
	     "multipart/mixed; boundary=B",
	     "part 1 (requests[0]): Content-Type \"text/html\", expected application/http or "
	     "multipart/mixed"},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct op_sap_batch_resp r[3];
		memset(r, 0x5a, sizeof(r));
		char why[WHY_LEN];
		op_err rc = parse(cases[c].text, cases[c].ct, example_ops, 3, r, why);
		ck_assert_msg(rc == OP_EPARSE, "case %zu: %s: %s", c, op_err_name(rc), why);
		ck_assert_msg(strcmp(why, cases[c].why) == 0, "case %zu: %s", c, why);
		assert_zeroed(r, 3);
	}
}
END_TEST

START_TEST(parse_bounded_headers)
{
	static const struct op_sap_batch_op ops[] = {{"GET", "A", NULL, NULL, -1}};
	struct op_sap_batch_resp r[3];
	char why[WHY_LEN];
	struct op_buf b;
	op_buf_init(&b, 1 << 22);
	ck_assert_int_eq(op_buf_adds(&b, "--B\r\nContent-Type: application/http\r\n\r\n"
	                                 "HTTP/1.1 200 OK\r\n"),
	                 OP_OK);
	for (int i = 0; i < 201; i++)
		ck_assert_int_eq(op_buf_addf(&b, "X-H%d: v\r\n", i), OP_OK);
	ck_assert_int_eq(op_buf_adds(&b, "\r\n{}\r\n--B--\r\n"), OP_OK);
	ck_assert_int_eq(op_sap_batch_parse(b.data, b.len, "multipart/mixed; boundary=B", ops, 1, r,
	                                    why, sizeof(why)),
	                 OP_EPARSE);
	ck_assert_str_eq(why, "part 1 (requests[0]): more than 200 headers");
	assert_zeroed(r, 1);

	op_buf_reset(&b);
	ck_assert_int_eq(op_buf_adds(&b, "--B\r\nContent-Type: application/http\r\nX-Big: "),
	                 OP_OK);
	for (int i = 0; i < 70000; i++)
		ck_assert_int_eq(op_buf_addc(&b, 'x'), OP_OK);
	ck_assert_int_eq(op_buf_adds(&b, "\r\n\r\nHTTP/1.1 200 OK\r\n\r\n--B--\r\n"), OP_OK);
	ck_assert_int_eq(op_sap_batch_parse(b.data, b.len, "multipart/mixed; boundary=B", ops, 1, r,
	                                    why, sizeof(why)),
	                 OP_EPARSE);
	ck_assert_str_eq(why, "part 1 (requests[0]): the headers are longer than 65536 bytes");

	/* A boundary parameter longer than anyone sends. */
	op_buf_reset(&b);
	ck_assert_int_eq(op_buf_adds(&b, "multipart/mixed; boundary="), OP_OK);
	for (int i = 0; i < 201; i++)
		ck_assert_int_eq(op_buf_addc(&b, 'b'), OP_OK);
	ck_assert_int_eq(
	    op_sap_batch_parse(sap_ok, strlen(sap_ok), b.data, example_ops, 3, r, why, sizeof(why)),
	    OP_EPARSE);
	ck_assert(strncmp(why, "the response's Content-Type has no usable boundary", 50) == 0);
	op_buf_fini(&b);
}
END_TEST

START_TEST(parse_large_batch)
{
	/* OP_SAP_BATCH_MAX answers of 4 KiB, each body full of lines that start
	 * like the delimiter and are not one: all read, none split. */
	enum { N = OP_SAP_BATCH_MAX };
	static struct op_sap_batch_op ops[N];
	for (size_t i = 0; i < N; i++)
		ops[i] = (struct op_sap_batch_op){"GET", "A", NULL, NULL, -1};
	struct op_buf body, b;
	op_buf_init(&body, 1 << 16);
	while (body.len < 4000)
		ck_assert_int_eq(op_buf_adds(&body, "--batchy\r\n"), OP_OK);
	op_buf_init(&b, 1 << 24);
	for (size_t i = 0; i < N; i++)
		ck_assert_int_eq(op_buf_addf(&b,
		                             "--batch\r\nContent-Type: application/http\r\n\r\n"
		                             "HTTP/1.1 200 OK\r\nX-I: %zu\r\n\r\n%s\r\n",
		                             i, body.data),
		                 OP_OK);
	ck_assert_int_eq(op_buf_adds(&b, "--batch--\r\n"), OP_OK);
	struct op_sap_batch_resp *r = op_calloc(N + 1, sizeof(*r));
	char why[WHY_LEN];
	ck_assert_int_eq(op_sap_batch_parse(b.data, b.len, "multipart/mixed; boundary=batch", ops,
	                                    N, r, why, sizeof(why)),
	                 OP_OK);
	for (size_t i = 0; i < N; i++) {
		char want[16];
		snprintf(want, sizeof(want), "%zu", i);
		ck_assert_int_eq(r[i].status, 200);
		ck_assert_str_eq(hdr(&r[i], "x-i"), want);
		/* The body's own last CRLF is taken for framing (no Content-Length). */
		ck_assert_uint_eq(r[i].body_len, body.len - 2);
		ck_assert(memcmp(r[i].body, body.data, body.len - 2) == 0);
	}
	op_sap_batch_resp_free(r, N);
	ck_assert_int_eq(op_sap_batch_parse(b.data, b.len, "multipart/mixed; boundary=batch", ops,
	                                    N + 1, r, why, sizeof(why)),
	                 OP_EINVAL);
	op_free(r);
	op_buf_fini(&b);
	op_buf_fini(&body);
}
END_TEST

START_TEST(parse_bad_order)
{
	static const struct op_sap_batch_op ops[] = {
	    {"POST", "A", "{}", NULL, 1},
	    {"GET", "A", NULL, NULL, -1},
	    {"POST", "A", "{}", NULL, 1},
	};
	struct op_sap_batch_resp r[3];
	char why[WHY_LEN];
	ck_assert_int_eq(parse(sap_failed, "multipart/mixed; boundary=batch_7", ops, 3, r, why),
	                 OP_EINVAL);
	ck_assert_str_eq(why, "requests[2]: change set 1 also holds requests[0], with other "
	                      "requests in between; the requests of one change set must be "
	                      "adjacent");
	assert_zeroed(r, 3);
}
END_TEST

START_TEST(parse_out_of_memory)
{
	const char *texts[] = {sap_ok, sap_failed};
	const char *cts[] = {SAP_OK_CT, "multipart/mixed; boundary=batch_7"};
	const struct op_sap_batch_op *opss[] = {example_ops, failed_ops};
	for (int t = 0; t < 2; t++) {
		bool done = false;
		for (uint64_t n = 1; n < 10000 && !done; n++) {
			struct op_sap_batch_resp r[3];
			char why[WHY_LEN];
			op_alloc_fail_at(n);
			op_err rc = parse(texts[t], cts[t], opss[t], 3, r, why);
			op_alloc_fail_at(0);
			if (rc == OP_OK) {
				if (t == 0)
					assert_sap_ok(r);
				else
					ck_assert_str_eq(r[1].body, ERR_999);
				op_sap_batch_resp_free(r, 3);
				done = true;
			} else {
				ck_assert_msg(rc == OP_ENOMEM, "n=%llu: %s: %s",
				              (unsigned long long)n, op_err_name(rc), why);
				ck_assert_str_eq(why, "out of memory");
				assert_zeroed(r, 3);
			}
		}
		ck_assert(done);
	}
}
END_TEST

START_TEST(parse_round_trip_shapes)
{
	/* What build writes, parsed as an answer would be if the server echoed
	 * requests: the request lines are not status lines. */
	struct op_buf b;
	op_buf_init(&b, 1 << 20);
	char ct[128], why[WHY_LEN];
	ck_assert_int_eq(
	    op_sap_batch_build(&b, "rt", example_ops, 3, ct, sizeof(ct), why, sizeof(why)), OP_OK);
	struct op_sap_batch_resp r[3];
	ck_assert_int_eq(op_sap_batch_parse(b.data, b.len, ct, example_ops, 3, r, why, sizeof(why)),
	                 OP_EPARSE);
	ck_assert_str_eq(why, "part 1 (requests[0]): no HTTP status line, got \"GET "
	                      "A_SalesOrder?$top=2&$select=SalesOrd...\"");
	op_buf_fini(&b);
	/* Nothing to free is fine. */
	op_sap_batch_resp_free(NULL, 0);
	op_sap_batch_resp_free(r, 3);
	assert_zeroed(r, 3);
}
END_TEST

static Suite *sap_batch_suite(void)
{
	Suite *s = suite_create("sap_batch");
	TCase *tc = tcase_create("sap_batch");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, build_exact_get_and_changeset);
	tcase_add_test(tc, build_appends_and_numbers_changesets);
	tcase_add_test(tc, build_rejects_bad_input);
	tcase_add_test(tc, build_cap_and_memory_leave_buffer);
	tcase_add_test(tc, parse_sap_answer_other_boundary_quoted);
	tcase_add_test(tc, parse_lf_only);
	tcase_add_test(tc, parse_failed_changeset_one_outer_part);
	tcase_add_test(tc, parse_failed_changeset_error_inside);
	tcase_add_test(tc, parse_liberal_framing);
	tcase_add_test(tc, parse_not_delimiters_inside_bodies);
	tcase_add_test(tc, parse_v4_content_ids_reorder);
	tcase_add_test(tc, parse_headers);
	tcase_add_test(tc, parse_malformed);
	tcase_add_test(tc, parse_bounded_headers);
	tcase_add_test(tc, parse_large_batch);
	tcase_add_test(tc, parse_bad_order);
	tcase_add_test(tc, parse_out_of_memory);
	tcase_add_test(tc, parse_round_trip_shapes);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(sap_batch_suite)
