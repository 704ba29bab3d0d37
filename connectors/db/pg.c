/*
 * The PostgreSQL driver, on libpq (see db_int.h). Connections are
 * non-blocking: every wait is a poll() on the connection's socket with the
 * call's deadline, re-checked for cancellation every 200 ms. A statement
 * past its deadline, or of a cancelled execution, is cancelled on the server
 * (PQcancel) and its results drained so the connection can be reused; if
 * the server does not answer even that, the connection is dropped.
 *
 * Sessions run with DateStyle ISO, TimeZone UTC and client_encoding UTF8, so
 * values come back in one known text form that pg_value() turns into JSON.
 * Batches use libpq's pipeline mode: many executions of one prepared
 * statement per round trip, inside one transaction.
 */
#define OP_LOG_MODULE "db"
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/clock.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "connectors/db/db_int.h"

#define POLL_SLICE_MS   200
#define CANCEL_GRACE_MS 5000 /* waiting for a cancelled statement to end */
#define BATCH_CHUNK     1000 /* items per pipeline sync */

/* Type OIDs of pg_type.h (stable across releases). */
enum {
	OID_BOOL = 16,
	OID_BYTEA = 17,
	OID_INT8 = 20,
	OID_INT2 = 21,
	OID_INT4 = 23,
	OID_OID = 26,
	OID_JSON = 114,
	OID_FLOAT4 = 700,
	OID_FLOAT8 = 701,
	OID_DATE = 1082,
	OID_TIMESTAMP = 1114,
	OID_TIMESTAMPTZ = 1184,
	OID_NUMERIC = 1700,
	OID_JSONB = 3802,
};

/* ---- errors ---- */

/* libpq's message on one line, without its trailing newline. */
static void one_line(const char *msg, char *out, size_t cap)
{
	size_t k = 0;
	for (size_t i = 0; msg && msg[i] && k + 1 < cap; i++)
		out[k++] = msg[i] == '\n' || msg[i] == '\r' || msg[i] == '\t' ? ' ' : msg[i];
	while (k > 0 && out[k - 1] == ' ')
		k--;
	out[k] = '\0';
}

static op_err result_error(const PGresult *res, const PGconn *conn, char *why, size_t whylen)
{
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *prim = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *det = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	char m[512], d[512];
	one_line(prim ? prim : PQerrorMessage(conn), m, sizeof(m));
	one_line(det, d, sizeof(d));
	op_err cls = PQstatus(conn) == CONNECTION_BAD ? OP_EIO : op_db__sqlstate_class(st);
	if (st == NULL)
		return op_errf(why, whylen, cls, "%s", m);
	if (d[0])
		return op_errf(why, whylen, cls, "SQLSTATE %s: %s (%s)", st, m, d);
	return op_errf(why, whylen, cls, "SQLSTATE %s: %s", st, m);
}

/* ---- waiting ---- */

/* Waits until the socket is readable (or writable too when out), the
 * deadline passes (OP_ETIMEOUT) or the execution is cancelled. */
static op_err wait_io(PGconn *conn, const struct op_db_wait *w, bool out)
{
	for (;;) {
		if (w->cancelled && w->cancelled(w->ud))
			return OP_ECANCELED;
		long long left = op_db__left_ms(w);
		if (left == 0)
			return OP_ETIMEOUT;
		struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN | (out ? POLLOUT : 0)};
		if (p.fd < 0)
			return OP_EIO;
		int n = poll(&p, 1, (int)(left < POLL_SLICE_MS ? left : POLL_SLICE_MS));
		if (n > 0)
			return OP_OK;
	}
}

/* Sends what is buffered. */
static op_err flush(PGconn *conn, const struct op_db_wait *w)
{
	for (;;) {
		int f = PQflush(conn);
		if (f == 0)
			return OP_OK;
		if (f < 0)
			return OP_EIO;
		op_err rc = wait_io(conn, w, true);
		if (rc)
			return rc;
		if (!PQconsumeInput(conn))
			return OP_EIO;
	}
}

/* The next result (NULL at the end of a statement's results); *rc says why
 * there is none when waiting failed. */
static PGresult *next_result(PGconn *conn, const struct op_db_wait *w, op_err *rc)
{
	*rc = OP_OK;
	while (PQisBusy(conn)) {
		if ((*rc = wait_io(conn, w, false)) != OP_OK)
			return NULL;
		if (!PQconsumeInput(conn)) {
			*rc = OP_EIO;
			return NULL;
		}
	}
	return PQgetResult(conn);
}

/* Cancels the statement running on the server and drains its results;
 * false if the connection did not come back to idle (it is then dropped,
 * as pg_usable says). Not for pipeline mode. */
static bool cancel_and_drain(PGconn *conn)
{
	char eb[256];
	PGcancel *cn = PQgetCancel(conn);
	if (cn) {
		if (!PQcancel(cn, eb, (int)sizeof(eb)))
			OP_LOGD("cancel request failed: %s", eb);
		PQfreeCancel(cn);
	}
	struct op_db_wait grace = {.deadline_ms = op_mono_ms() + CANCEL_GRACE_MS};
	for (;;) {
		op_err rc;
		PGresult *r = next_result(conn, &grace, &rc);
		if (rc)
			return false;
		if (r == NULL)
			return PQtransactionStatus(conn) == PQTRANS_IDLE;
		PQclear(r);
	}
}

/* Reads and drops the rest of a statement's results. */
static void drain(PGconn *conn, const struct op_db_wait *w)
{
	op_err rc;
	for (PGresult *r; (r = next_result(conn, w, &rc)) != NULL;)
		PQclear(r);
}

static op_err wait_error(op_err rc, const struct op_db_wait *w, char *why, size_t whylen)
{
	(void)w;
	if (rc == OP_ETIMEOUT)
		return op_errf(why, whylen, rc,
		               "no answer before the deadline; the statement was "
		               "cancelled");
	if (rc == OP_ECANCELED)
		return op_errf(why, whylen, rc, "cancelled");
	return op_errf(why, whylen, rc, "the connection to the server broke");
}

/* ---- connect ---- */

static op_err pg_connect(const char *conninfo, const struct op_account *a,
                         const struct op_db_wait *w, void **h, char *why, size_t whylen)
{
	*h = NULL;
	long long left = op_db__left_ms(w);
	char timeout[32];
	/* libpq counts whole seconds (and treats 1 as 2). */
	snprintf(timeout, sizeof(timeout), "%lld", left / 1000 < 2 ? 2 : left / 1000);
	const char *keys[] = {
	    "dbname",          "user",    "password", "connect_timeout", "application_name",
	    "client_encoding", "options", NULL};
	const char *vals[] = {conninfo,
	                      a->username,
	                      a->password,
	                      timeout,
	                      "outpost",
	                      "UTF8",
	                      "-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=iso_8601",
	                      NULL};
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	if (PQstatus(conn) != CONNECTION_OK) {
		char m[512];
		one_line(PQerrorMessage(conn), m, sizeof(m));
		op_err cls = strstr(m, "authentication failed") || strstr(m, "pg_hba.conf")
		                 ? OP_EAUTH
		             : strstr(m, "timeout expired") ? OP_ETIMEOUT
		             : strstr(m, "does not exist")  ? OP_ENOTFOUND
		                                            : OP_ENOCONN;
		PQfinish(conn);
		return op_errf(why, whylen, cls, "cannot connect: %s", m);
	}
	if (PQsetnonblocking(conn, 1) != 0) {
		PQfinish(conn);
		return op_errf(why, whylen, OP_EIO, "cannot switch the connection to non-blocking");
	}
	*h = conn;
	return OP_OK;
}

static void pg_close(void *h)
{
	PQfinish(h);
}

static bool pg_usable(void *h)
{
	PGconn *conn = h;
	return PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE &&
	       PQpipelineStatus(conn) == PQ_PIPELINE_OFF;
}

/* ---- values ---- */

static cJSON *bytea_value(const char *s)
{
	size_t n = 0;
	unsigned char *raw = PQunescapeBytea((const unsigned char *)s, &n);
	if (raw == NULL)
		return NULL;
	cJSON *j = op_json_base64(raw, n);
	PQfreemem(raw);
	return j;
}

/* "2024-05-01 10:00:00.5+00" (TimeZone UTC) as "2024-05-01T10:00:00.5Z". */
static cJSON *timestamp_value(const char *s, bool tz)
{
	char buf[64];
	size_t n = strlen(s);
	if (n >= sizeof(buf) - 2 || n < 19 || s[10] != ' ')
		return cJSON_CreateString(s); /* infinity, BC dates: as PostgreSQL says */
	memcpy(buf, s, n + 1);
	buf[10] = 'T';
	if (tz && n > 3 && strcmp(buf + n - 3, "+00") == 0)
		memcpy(buf + n - 3, "Z", 2);
	return cJSON_CreateString(buf);
}

static cJSON *pg_value(const PGresult *res, int r, int c)
{
	if (PQgetisnull(res, r, c))
		return cJSON_CreateNull();
	const char *s = PQgetvalue(res, r, c);
	switch (PQftype(res, c)) {
	case OID_BOOL:
		return cJSON_CreateBool(s[0] == 't');
	case OID_INT2:
	case OID_INT4:
	case OID_OID:
	case OID_INT8: {
		char *end = NULL;
		long long v = strtoll(s, &end, 10);
		/* Beyond 2^53 a double would round it: the digits stay a string. */
		if (end && *end == '\0' && v <= (1LL << 53) && v >= -(1LL << 53))
			return cJSON_CreateNumber((double)v);
		return cJSON_CreateString(s);
	}
	case OID_NUMERIC:
		return op_db__decimal(s);
	case OID_FLOAT4:
	case OID_FLOAT8: {
		char *end = NULL;
		double d = strtod(s, &end);
		/* NaN and Infinity are not JSON numbers. */
		return end && *end == '\0' && d == d && d - d == 0 ? cJSON_CreateNumber(d)
		                                                   : cJSON_CreateString(s);
	}
	case OID_JSON:
	case OID_JSONB: {
		cJSON *j = NULL;
		char err[128];
		if (op_json_parse(s, strlen(s), &j, err, sizeof(err)) == OP_OK)
			return j;
		return cJSON_CreateString(s);
	}
	case OID_TIMESTAMP:
		return timestamp_value(s, false);
	case OID_TIMESTAMPTZ:
		return timestamp_value(s, true);
	case OID_BYTEA:
		return bytea_value(s);
	default:
		return cJSON_CreateString(s);
	}
}

/* Appends the rows of res to arr. */
static op_err add_rows(const PGresult *res, cJSON *arr)
{
	int nf = PQnfields(res);
	for (int r = 0; r < PQntuples(res); r++) {
		cJSON *row = cJSON_CreateObject();
		if (row == NULL || !cJSON_AddItemToArray(arr, row)) {
			cJSON_Delete(row);
			return OP_ENOMEM;
		}
		for (int c = 0; c < nf; c++) {
			cJSON *v = pg_value(res, r, c);
			if (v == NULL || !cJSON_AddItemToObject(row, PQfname(res, c), v)) {
				cJSON_Delete(v);
				return OP_ENOMEM;
			}
		}
	}
	return OP_OK;
}

static long long cmd_tuples(const PGresult *res)
{
	const char *t = PQcmdTuples((PGresult *)res);
	return t && t[0] ? strtoll(t, NULL, 10) : 0;
}

/* ---- statements ---- */

static op_err pg_exec(void *h, const char *sql, const struct op_db_params *p,
                      const struct op_db_wait *w, size_t page_size, op_db_page_fn page, void *ud,
                      cJSON **rows, long long *count, char *why, size_t whylen)
{
	PGconn *conn = h;
	*rows = NULL;
	*count = 0;
	if (!PQsendQueryParams(conn, sql, (int)p->n, NULL, p->v, NULL, NULL, 0)) {
		char m[512];
		one_line(PQerrorMessage(conn), m, sizeof(m));
		return op_errf(why, whylen, OP_EIO, "cannot send the statement: %s", m);
	}
	if (page)
		PQsetSingleRowMode(conn);
	op_err rc = flush(conn, w);
	cJSON *acc = NULL; /* all rows, or the page being filled */
	size_t in_page = 0;
	bool failed = rc != OP_OK, stopped = false;
	if (rc)
		wait_error(rc, w, why, whylen);
	while (!failed) {
		op_err wr;
		PGresult *res = next_result(conn, w, &wr);
		if (wr) {
			rc = wait_error(wr, w, why, whylen);
			failed = stopped = true;
			break;
		}
		if (res == NULL)
			break;
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) {
			if (acc == NULL && (acc = cJSON_CreateArray()) == NULL)
				rc = OP_ENOMEM;
			if (rc == OP_OK)
				rc = add_rows(res, acc);
			*count += PQntuples(res);
			if (rc == OP_ENOMEM)
				op_errf(why, whylen, rc, "out of memory");
			in_page += (size_t)PQntuples(res);
			if (rc == OP_OK && page && in_page >= page_size) {
				rc = page(ud, acc, why, whylen);
				acc = NULL;
				in_page = 0;
			}
			failed = rc != OP_OK;
			stopped = failed;
		} else if (st == PGRES_COMMAND_OK) {
			*count += cmd_tuples(res);
		} else if (st != PGRES_EMPTY_QUERY) {
			rc = result_error(res, conn, why, whylen);
			failed = true;
		}
		PQclear(res);
	}
	/* Stopped half way (deadline, cancelled, a page failed): end it on the
	 * server, so the connection can serve the next call. */
	if (stopped && !cancel_and_drain(conn))
		OP_LOGD("dropping a connection that did not end its statement");
	else if (failed && !stopped)
		drain(conn, w);
	if (rc == OP_OK && page && acc && in_page > 0) {
		rc = page(ud, acc, why, whylen);
		acc = NULL;
	}
	if (rc) {
		cJSON_Delete(acc);
		return rc;
	}
	if (!page)
		*rows = acc;
	else
		cJSON_Delete(acc);
	return OP_OK;
}

static op_err pg_ping(void *h, const struct op_db_wait *w, char *why, size_t whylen)
{
	static const struct op_db_params none = {0};
	cJSON *rows = NULL;
	long long n = 0;
	op_err rc = pg_exec(h, "SELECT 1", &none, w, 0, NULL, NULL, &rows, &n, why, whylen);
	cJSON_Delete(rows);
	return rc;
}

/* Runs a statement without parameters or rows (BEGIN, COMMIT, ROLLBACK). */
static op_err simple(PGconn *conn, const char *sql, const struct op_db_wait *w, char *why,
                     size_t whylen)
{
	static const struct op_db_params none = {0};
	cJSON *rows = NULL;
	long long n = 0;
	op_err rc = pg_exec(conn, sql, &none, w, 0, NULL, NULL, &rows, &n, why, whylen);
	cJSON_Delete(rows);
	return rc;
}

/* The statements of one pipeline sync: nfull of per rows each from item
 * base on, then ntail of one row each. */
struct chunk {
	size_t base, nfull, ntail;
};

/* Reads the results of one sync (the prepare's first when prepare):
 * counts rows affected; the first error goes to *first and why, and the
 * items of its statement to *failed and *nfailed. */
static op_err read_sync(PGconn *conn, const struct op_db_wait *w, bool prepare,
                        const struct chunk *ch, size_t per, long long *count, size_t *failed,
                        size_t *nfailed, op_err *first, char *why, size_t whylen)
{
	size_t j = 0;
	for (;;) {
		op_err wr;
		PGresult *res = next_result(conn, w, &wr);
		if (wr)
			return wr;
		if (res == NULL)
			continue; /* between two statements' results */
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_PIPELINE_SYNC) {
			PQclear(res);
			return OP_OK;
		}
		bool was_prepare = prepare;
		prepare = false;
		if (st == PGRES_FATAL_ERROR && *first == OP_OK) {
			*first = result_error(res, conn, why, whylen);
			*failed = ch->base +
			          (j < ch->nfull ? j * per : ch->nfull * per + (j - ch->nfull));
			*nfailed = was_prepare ? 0 : j < ch->nfull ? per : 1;
		} else if (!was_prepare && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
			*count += cmd_tuples(res);
		}
		if (!was_prepare)
			j++;
		PQclear(res);
	}
}

/* Values of up to per rows, copied: libpq takes a statement's values all at
 * once, and row() reuses its storage. */
struct rows {
	struct op_buf text;
	long long *off; /* into text, -1 for NULL */
	const char **v;
	size_t n; /* values held */
};

static op_err rows_add(struct rows *r, const struct op_db_params *p)
{
	for (size_t k = 0; k < p->n; k++) {
		r->off[r->n] = p->v[k] ? (long long)r->text.len : -1;
		op_err rc = p->v[k] ? op_buf_add(&r->text, p->v[k], strlen(p->v[k]) + 1) : OP_OK;
		if (rc)
			return rc;
		r->n++;
	}
	return OP_OK;
}

static const char *const *rows_values(struct rows *r)
{
	for (size_t k = 0; k < r->n; k++)
		r->v[k] = r->off[k] < 0 ? NULL : r->text.data + r->off[k];
	return r->v;
}

static op_err pg_batch(void *h, const struct op_db_batch *bt, op_db_row_fn row, void *ud,
                       const struct op_db_wait *w, long long *count, size_t *failed,
                       size_t *nfailed, char *why, size_t whylen)
{
	PGconn *conn = h;
	*count = 0;
	*failed = (size_t)-1;
	*nfailed = 0;
	size_t n = bt->nparams, per = bt->multi ? bt->per : 1;
	struct rows rs = {0};
	op_buf_init(&rs.text, 256u << 20);
	rs.off = op_calloc(n * per + 1, sizeof(*rs.off));
	rs.v = op_calloc(n * per + 1, sizeof(*rs.v));
	if (rs.off == NULL || rs.v == NULL) {
		op_free(rs.off);
		op_free(rs.v);
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	}
	op_err rc = simple(conn, "BEGIN", w, why, whylen);
	if (rc)
		goto out;
	const char *prep = bt->multi ? bt->multi : bt->sql;
	if (!PQenterPipelineMode(conn) || !PQsendPrepare(conn, "", prep, (int)(n * per), NULL)) {
		char m[512];
		one_line(PQerrorMessage(conn), m, sizeof(m));
		rc = op_errf(why, whylen, OP_EIO, "cannot start the batch: %s", m);
		goto out;
	}
	/* Two syncs in flight: the server runs one chunk while the next is
	 * built and sent, and its results are read after. */
	op_err first = OP_OK;
	bool more = true;
	size_t i = 0, pending = 0, done = 0;
	size_t per_sync = BATCH_CHUNK / per ? BATCH_CHUNK / per : 1;
	struct chunk ch[2];
	while (rc == OP_OK && ((more && first == OP_OK) || pending > 0)) {
		if (more && first == OP_OK && pending < 2) {
			struct chunk *c = &ch[(done + pending) % 2];
			*c = (struct chunk){.base = i};
			for (size_t k = 0; k < per_sync && more; k++) {
				rs.n = 0;
				op_buf_reset(&rs.text);
				size_t got = 0;
				for (; got < per; got++, i++) {
					struct op_db_params p = {0};
					op_err rr = row(ud, i, &p, why, whylen);
					if (rr == OP_ENOTFOUND) {
						more = false;
						break;
					}
					if (rr == OP_OK)
						rr = rows_add(&rs, &p);
					if (rr) {
						*failed = i;
						*nfailed = 1;
						rc = rr;
						goto out;
					}
				}
				const char *const *vals = rows_values(&rs);
				int ok = 1;
				if (got == per) {
					ok = PQsendQueryPrepared(conn, "", (int)(n * per), vals,
					                         NULL, NULL, 0);
					c->nfull++;
				} else {
					/* The last rows, fewer than a statement's: one by one. */
					for (size_t r = 0; r < got && ok; r++)
						ok = PQsendQueryParams(conn, bt->sql, (int)n, NULL,
						                       vals + r * n, NULL, NULL, 0);
					c->ntail += got;
				}
				if (!ok) {
					rc =
					    op_errf(why, whylen, OP_EIO, "cannot send item %zu", i);
					goto out;
				}
			}
			if (!PQpipelineSync(conn)) {
				rc = op_errf(why, whylen, OP_EIO, "cannot send the batch");
				goto out;
			}
			pending++;
			rc = flush(conn, w);
			if (rc == OP_OK && more && pending < 2)
				continue; /* a second chunk before reading the first */
		}
		if (rc == OP_OK) {
			rc = read_sync(conn, w, done == 0, &ch[done % 2], per, count, failed,
			               nfailed, &first, why, whylen);
			done++;
			pending--;
		}
		if (rc)
			wait_error(rc, w, why, whylen);
	}
	if (rc)
		goto out;
	if (!PQexitPipelineMode(conn)) {
		rc = op_errf(why, whylen, OP_EIO, "cannot end the batch");
		goto out;
	}
	rc = first ? first : simple(conn, "COMMIT", w, why, whylen);
out:
	if (rc) {
		*count = 0;
		/* A half-sent pipeline is not worth saving: the connection stays in
		 * pipeline mode, pg_usable refuses it and the pool closes it, which
		 * rolls the transaction back on the server. */
		if (PQpipelineStatus(conn) == PQ_PIPELINE_OFF &&
		    PQtransactionStatus(conn) != PQTRANS_IDLE) {
			char ignore[256];
			struct op_db_wait g = {.deadline_ms = op_mono_ms() + CANCEL_GRACE_MS};
			(void)simple(conn, "ROLLBACK", &g, ignore, sizeof(ignore));
		}
	}
	op_buf_fini(&rs.text);
	op_free(rs.off);
	op_free(rs.v);
	return rc;
}

const struct op_db_driver op_db__pg = {
    .name = "postgresql",
    .connect = pg_connect,
    .close = pg_close,
    .usable = pg_usable,
    .ping = pg_ping,
    .exec = pg_exec,
    .batch = pg_batch,
};
