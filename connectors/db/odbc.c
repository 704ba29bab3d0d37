/*
 * The ODBC driver, on unixODBC (see db_int.h): any database with an ODBC
 * driver (SQL Server, Oracle, MySQL/MariaDB, SAP HANA, PostgreSQL's
 * psqlODBC). The connection string names the driver and the server; the
 * account's user and password are added as UID and PWD (braced when they
 * hold ; { } or =), and the string is wiped after the connect.
 *
 * ODBC calls block, so deadlines are the driver's: SQL_ATTR_LOGIN_TIMEOUT
 * for the connect and SQL_ATTR_QUERY_TIMEOUT (whole seconds, rounded up)
 * for statements. Between rows the call checks its deadline and
 * cancellation itself and cancels the statement (SQLCancel). Values are
 * bound and read as text (binary columns as bytes, given as base64); the
 * column's SQL type decides the JSON type.
 */
#define OP_LOG_MODULE "db"
#include <sql.h>
#include <sqlext.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "connectors/db/db_int.h"

#define VALUE_MAX (64u << 20) /* one column's value */
#define NAME_MAX_ 256

struct conn {
	SQLHENV env;
	SQLHDBC dbc;
};

/* ---- errors ---- */

/* The first diagnostic of handle h as "SQLSTATE xxxxx: message" and its
 * class; ODBC's "[unixODBC][Driver]" prefixes are kept: they say who spoke. */
static op_err diag(SQLSMALLINT type, SQLHANDLE h, const char *what, char *why, size_t whylen)
{
	SQLCHAR state[6] = "", msg[512] = "";
	SQLINTEGER native = 0;
	SQLSMALLINT len = 0;
	SQLRETURN r = SQLGetDiagRec(type, h, 1, state, &native, msg, sizeof(msg), &len);
	if (!SQL_SUCCEEDED(r))
		return op_errf(why, whylen, OP_EIO, "%s failed (no diagnostic)", what);
	for (char *p = (char *)msg; *p; p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	}
	op_err cls = op_db__sqlstate_class((const char *)state);
	return op_errf(why, whylen, cls, "SQLSTATE %s: %s", state, msg);
}

/* ---- connect ---- */

/* Appends ";KEY=value", the value in braces with '}' doubled when it holds
 * what would end or change it (some drivers keep braces they do not need
 * as part of the value). */
static op_err add_braced(struct op_buf *b, const char *key, const char *v)
{
	size_t n = strlen(v);
	bool brace = strpbrk(v, ";{}=") != NULL || (n > 0 && (v[0] == ' ' || v[n - 1] == ' '));
	op_err rc = op_buf_addf(b, brace ? ";%s={" : ";%s=", key);
	for (; rc == OP_OK && *v; v++)
		rc = *v == '}' ? op_buf_adds(b, "}}") : op_buf_addc(b, *v);
	return rc == OP_OK && brace ? op_buf_addc(b, '}') : rc;
}

static void conn_free(struct conn *c)
{
	if (c == NULL)
		return;
	if (c->dbc) {
		SQLDisconnect(c->dbc);
		SQLFreeHandle(SQL_HANDLE_DBC, c->dbc);
	}
	if (c->env)
		SQLFreeHandle(SQL_HANDLE_ENV, c->env);
	op_free(c);
}

static op_err odbc_connect(const char *conninfo, const struct op_account *a,
                           const struct op_db_wait *w, void **h, char *why, size_t whylen)
{
	*h = NULL;
	struct conn *c = op_calloc(1, sizeof(*c));
	struct op_buf cs;
	op_buf_init(&cs, 64u << 10);
	op_err rc = c ? OP_OK : OP_ENOMEM;
	if (rc == OP_OK && !SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &c->env)))
		rc = OP_ENOMEM;
	if (rc == OP_OK && !SQL_SUCCEEDED(SQLSetEnvAttr(c->env, SQL_ATTR_ODBC_VERSION,
	                                                (SQLPOINTER)SQL_OV_ODBC3, 0)))
		rc = OP_EINTERNAL;
	if (rc == OP_OK && !SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_DBC, c->env, &c->dbc)))
		rc = OP_ENOMEM;
	if (rc) {
		conn_free(c);
		return op_errf(why, whylen, rc, "cannot set up an ODBC connection");
	}
	long long left = op_db__left_ms(w);
	SQLULEN secs = (SQLULEN)((left + 999) / 1000);
	/* ODBC passes integer attributes as pointers. */
	SQLPOINTER val = (SQLPOINTER)secs; /* NOLINT(performance-no-int-to-ptr) */
	SQLSetConnectAttr(c->dbc, SQL_ATTR_LOGIN_TIMEOUT, val, 0);
	SQLSetConnectAttr(c->dbc, SQL_ATTR_CONNECTION_TIMEOUT, val, 0);
	rc = op_buf_adds(&cs, conninfo);
	if (rc == OP_OK)
		rc = add_braced(&cs, "UID", a->username);
	if (rc == OP_OK)
		rc = add_braced(&cs, "PWD", a->password);
	if (rc) {
		explicit_bzero(cs.data, cs.len);
		op_buf_fini(&cs);
		conn_free(c);
		return op_errf(why, whylen, rc == OP_ENOMEM ? rc : OP_EINVAL,
		               "the connection string is too long");
	}
	SQLRETURN r = SQLDriverConnect(c->dbc, NULL, (SQLCHAR *)cs.data, (SQLSMALLINT)cs.len, NULL,
	                               0, NULL, SQL_DRIVER_NOPROMPT);
	explicit_bzero(cs.data, cs.len);
	op_buf_fini(&cs);
	if (!SQL_SUCCEEDED(r)) {
		char inner[768];
		op_err cls = diag(SQL_HANDLE_DBC, c->dbc, "connect", inner, sizeof(inner));
		conn_free(c);
		/* Drivers say "could not connect" with 08001 and refused logins
		 * with 28000; some put a refused password under 08001 too. */
		if (strstr(inner, "password authentication failed") ||
		    strstr(inner, "Login failed") || strstr(inner, "Access denied"))
			cls = OP_EAUTH;
		else if (cls == OP_EIO || cls == OP_EREJECTED)
			cls = OP_ENOCONN;
		return op_errf(why, whylen, cls, "cannot connect: %s", inner);
	}
	*h = c;
	return OP_OK;
}

static void odbc_close(void *h)
{
	conn_free(h);
}

static bool odbc_usable(void *h)
{
	struct conn *c = h;
	SQLUINTEGER dead = SQL_CD_FALSE;
	SQLRETURN r = SQLGetConnectAttr(c->dbc, SQL_ATTR_CONNECTION_DEAD, &dead, 0, NULL);
	return !SQL_SUCCEEDED(r) || dead != SQL_CD_TRUE;
}

static op_err odbc_ping(void *h, const struct op_db_wait *w, char *why, size_t whylen)
{
	(void)w;
	return odbc_usable(h) ? OP_OK : op_errf(why, whylen, OP_ENOCONN, "the connection is dead");
}

/* ---- statements ---- */

/* A statement handle with the deadline as its query timeout, prepared. */
static op_err stmt_open(struct conn *c, const char *sql, const struct op_db_wait *w, SQLHSTMT *out,
                        char *why, size_t whylen)
{
	*out = SQL_NULL_HSTMT;
	SQLHSTMT st = SQL_NULL_HSTMT;
	if (!SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_STMT, c->dbc, &st)))
		return diag(SQL_HANDLE_DBC, c->dbc, "statement", why, whylen);
	long long left = op_db__left_ms(w);
	SQLULEN secs = (SQLULEN)((left + 999) / 1000);
	SQLPOINTER val = (SQLPOINTER)secs; /* NOLINT(performance-no-int-to-ptr) */
	SQLSetStmtAttr(st, SQL_ATTR_QUERY_TIMEOUT, val, 0);
	if (!SQL_SUCCEEDED(SQLPrepare(st, (SQLCHAR *)sql, SQL_NTS))) {
		op_err rc = diag(SQL_HANDLE_STMT, st, "prepare", why, whylen);
		SQLFreeHandle(SQL_HANDLE_STMT, st);
		return rc;
	}
	*out = st;
	return OP_OK;
}

/* Binds row p (ind has p->n slots that must live until the execute). */
static op_err bind(SQLHSTMT st, const struct op_db_params *p, SQLLEN *ind, char *why, size_t whylen)
{
	for (size_t i = 0; i < p->n; i++) {
		const char *v = p->v[i];
		ind[i] = v ? (SQLLEN)strlen(v) : SQL_NULL_DATA;
		SQLULEN size = v && ind[i] > 0 ? (SQLULEN)ind[i] : 1;
		SQLRETURN r = SQLBindParameter(
		    st, (SQLUSMALLINT)(i + 1), SQL_PARAM_INPUT, SQL_C_CHAR, SQL_VARCHAR, size, 0,
		    (SQLPOINTER)(v ? v : ""), ind[i] > 0 ? ind[i] : 0, &ind[i]);
		if (!SQL_SUCCEEDED(r))
			return diag(SQL_HANDLE_STMT, st, "bind", why, whylen);
	}
	return OP_OK;
}

/* One column's value as JSON, by its SQL type. */
static op_err column_value(SQLHSTMT st, SQLUSMALLINT col, SQLSMALLINT type, struct op_buf *b,
                           cJSON **out, char *why, size_t whylen)
{
	*out = NULL;
	bool binary = type == SQL_BINARY || type == SQL_VARBINARY || type == SQL_LONGVARBINARY;
	SQLSMALLINT ctype = binary ? SQL_C_BINARY : SQL_C_CHAR;
	op_buf_reset(b);
	char chunk[8192];
	for (;;) {
		SQLLEN ind = 0;
		SQLRETURN r = SQLGetData(st, col, ctype, chunk, sizeof(chunk), &ind);
		if (r == SQL_NO_DATA)
			break;
		if (!SQL_SUCCEEDED(r))
			return diag(SQL_HANDLE_STMT, st, "fetch", why, whylen);
		if (ind == SQL_NULL_DATA)
			return (*out = cJSON_CreateNull()) ? OP_OK : OP_ENOMEM;
		/* SQL_SUCCESS_WITH_INFO (01004): more follows; text chunks end in NUL. */
		size_t got = ind == SQL_NO_TOTAL || ind >= (SQLLEN)sizeof(chunk)
		                 ? sizeof(chunk) - (binary ? 0 : 1)
		                 : (size_t)ind;
		op_err rc = op_buf_add(b, chunk, got);
		if (rc == OP_ELIMIT)
			return op_errf(why, whylen, rc, "a value of column %u is over %u bytes",
			               col, VALUE_MAX);
		if (rc)
			return op_errf(why, whylen, rc, "out of memory");
		if (r == SQL_SUCCESS)
			break;
	}
	const char *s = op_buf_str(b);
	switch (type) {
	case SQL_BIT:
		*out = cJSON_CreateBool(s[0] == '1' || s[0] == 't' || s[0] == 'T');
		break;
	case SQL_TINYINT:
	case SQL_SMALLINT:
	case SQL_INTEGER:
	case SQL_BIGINT:
	case SQL_DECIMAL:
	case SQL_NUMERIC:
		*out = op_db__decimal(s);
		break;
	case SQL_REAL:
	case SQL_FLOAT:
	case SQL_DOUBLE: {
		char *end = NULL;
		double d = strtod(s, &end);
		*out = end && *end == '\0' && end != s && d == d && d - d == 0
		           ? cJSON_CreateNumber(d)
		           : cJSON_CreateString(s);
		break;
	}
	case SQL_TYPE_TIMESTAMP:
	case SQL_TIMESTAMP: {
		/* "2026-05-01 10:00:00.250" -> "2026-05-01T10:00:00.250" */
		char t[64];
		snprintf(t, sizeof(t), "%s", s);
		if (strlen(t) >= 19 && t[10] == ' ')
			t[10] = 'T';
		*out = cJSON_CreateString(t);
		break;
	}
	default:
		*out = binary ? op_json_base64((const unsigned char *)b->data, b->len)
		              : cJSON_CreateString(s);
		break;
	}
	return *out ? OP_OK : op_errf(why, whylen, OP_ENOMEM, "out of memory");
}

static op_err fetch_rows(SQLHSTMT st, const struct op_db_wait *w, size_t page_size,
                         op_db_page_fn page, void *ud, cJSON **rows, long long *count, char *why,
                         size_t whylen)
{
	SQLSMALLINT ncols = 0;
	SQLNumResultCols(st, &ncols);
	char(*names)[NAME_MAX_] = op_calloc((size_t)ncols + 1, sizeof(*names));
	SQLSMALLINT *types = op_calloc((size_t)ncols + 1, sizeof(*types));
	struct op_buf b;
	op_buf_init(&b, VALUE_MAX);
	cJSON *acc = NULL;
	size_t in_page = 0;
	if (names == NULL || types == NULL) {
		op_free(names);
		op_free(types);
		op_buf_fini(&b);
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	}
	op_err rc = OP_OK;
	for (SQLSMALLINT i = 0; i < ncols && rc == OP_OK; i++) {
		SQLSMALLINT nl = 0, dd = 0, nullable = 0;
		SQLULEN size = 0;
		if (!SQL_SUCCEEDED(SQLDescribeCol(st, (SQLUSMALLINT)(i + 1), (SQLCHAR *)names[i],
		                                  NAME_MAX_, &nl, &types[i], &size, &dd,
		                                  &nullable)))
			rc = diag(SQL_HANDLE_STMT, st, "describe", why, whylen);
	}
	while (rc == OP_OK) {
		if ((w->cancelled && w->cancelled(w->ud)) || op_db__left_ms(w) == 0) {
			SQLCancel(st);
			rc = w->cancelled && w->cancelled(w->ud)
			         ? op_errf(why, whylen, OP_ECANCELED, "cancelled")
			         : op_errf(why, whylen, OP_ETIMEOUT,
			                   "no complete answer before the deadline; the statement "
			                   "was cancelled");
			break;
		}
		SQLRETURN r = SQLFetch(st);
		if (r == SQL_NO_DATA)
			break;
		if (!SQL_SUCCEEDED(r)) {
			rc = diag(SQL_HANDLE_STMT, st, "fetch", why, whylen);
			break;
		}
		if (acc == NULL && (acc = cJSON_CreateArray()) == NULL) {
			rc = op_errf(why, whylen, OP_ENOMEM, "out of memory");
			break;
		}
		cJSON *row = cJSON_CreateObject();
		if (row == NULL || !cJSON_AddItemToArray(acc, row)) {
			cJSON_Delete(row);
			rc = op_errf(why, whylen, OP_ENOMEM, "out of memory");
			break;
		}
		for (SQLSMALLINT i = 0; i < ncols && rc == OP_OK; i++) {
			cJSON *v = NULL;
			rc = column_value(st, (SQLUSMALLINT)(i + 1), types[i], &b, &v, why, whylen);
			if (rc == OP_OK && !cJSON_AddItemToObject(row, names[i], v)) {
				cJSON_Delete(v);
				rc = op_errf(why, whylen, OP_ENOMEM, "out of memory");
			}
		}
		(*count)++;
		if (rc == OP_OK && page && ++in_page >= page_size) {
			rc = page(ud, acc, why, whylen);
			acc = NULL;
			in_page = 0;
			if (rc)
				SQLCancel(st);
		}
	}
	if (rc == OP_OK && page && acc) {
		rc = page(ud, acc, why, whylen);
		acc = NULL;
	}
	if (rc == OP_OK && !page) {
		*rows = acc ? acc : cJSON_CreateArray();
		acc = NULL;
		if (*rows == NULL)
			rc = op_errf(why, whylen, OP_ENOMEM, "out of memory");
	}
	cJSON_Delete(acc);
	op_buf_fini(&b);
	op_free(names);
	op_free(types);
	return rc;
}

static op_err odbc_exec(void *h, const char *sql, const struct op_db_params *p,
                        const struct op_db_wait *w, size_t page_size, op_db_page_fn page, void *ud,
                        cJSON **rows, long long *count, char *why, size_t whylen)
{
	struct conn *c = h;
	*rows = NULL;
	*count = 0;
	SQLLEN *ind = op_calloc(p->n + 1, sizeof(*ind));
	if (ind == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	SQLHSTMT st = SQL_NULL_HSTMT;
	op_err rc = stmt_open(c, sql, w, &st, why, whylen);
	if (rc == OP_OK)
		rc = bind(st, p, ind, why, whylen);
	if (rc == OP_OK) {
		SQLRETURN r = SQLExecute(st);
		if (r == SQL_NO_DATA) {
			*count = 0; /* an UPDATE or DELETE that matched nothing */
		} else if (!SQL_SUCCEEDED(r)) {
			rc = diag(SQL_HANDLE_STMT, st, "execute", why, whylen);
		} else {
			SQLSMALLINT ncols = 0;
			SQLNumResultCols(st, &ncols);
			if (ncols > 0) {
				rc = fetch_rows(st, w, page_size, page, ud, rows, count, why,
				                whylen);
			} else {
				SQLLEN n = 0;
				SQLRowCount(st, &n);
				*count = n > 0 ? n : 0;
			}
		}
	}
	if (st != SQL_NULL_HSTMT)
		SQLFreeHandle(SQL_HANDLE_STMT, st);
	op_free(ind);
	return rc;
}

static op_err end_tran(struct conn *c, SQLSMALLINT how, char *why, size_t whylen)
{
	op_err rc = OP_OK;
	if (!SQL_SUCCEEDED(SQLEndTran(SQL_HANDLE_DBC, c->dbc, how)))
		rc = diag(SQL_HANDLE_DBC, c->dbc, how == SQL_COMMIT ? "commit" : "rollback", why,
		          whylen);
	SQLSetConnectAttr(c->dbc, SQL_ATTR_AUTOCOMMIT, (SQLPOINTER)SQL_AUTOCOMMIT_ON, 0);
	return rc;
}

static op_err odbc_batch(void *h, const struct op_db_batch *bt, op_db_row_fn row, void *ud,
                         const struct op_db_wait *w, long long *count, size_t *failed,
                         size_t *nfailed, char *why, size_t whylen)
{
	struct conn *c = h;
	*count = 0;
	*failed = (size_t)-1;
	*nfailed = 0;
	SQLLEN *ind = op_calloc(bt->nparams + 1, sizeof(*ind));
	if (ind == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	if (!SQL_SUCCEEDED(SQLSetConnectAttr(c->dbc, SQL_ATTR_AUTOCOMMIT,
	                                     (SQLPOINTER)SQL_AUTOCOMMIT_OFF, 0))) {
		op_free(ind);
		return diag(SQL_HANDLE_DBC, c->dbc, "begin", why, whylen);
	}
	SQLHSTMT st = SQL_NULL_HSTMT;
	op_err rc = stmt_open(c, bt->sql, w, &st, why, whylen);
	for (size_t i = 0; rc == OP_OK; i++) {
		if ((w->cancelled && w->cancelled(w->ud)) || op_db__left_ms(w) == 0) {
			rc = w->cancelled && w->cancelled(w->ud)
			         ? op_errf(why, whylen, OP_ECANCELED, "cancelled")
			         : op_errf(why, whylen, OP_ETIMEOUT,
			                   "the deadline passed at item %zu", i);
			break;
		}
		struct op_db_params p = {0};
		op_err rr = row(ud, i, &p, why, whylen);
		if (rr == OP_ENOTFOUND)
			break;
		if (rr == OP_OK)
			rr = bind(st, &p, ind, why, whylen);
		if (rr == OP_OK) {
			SQLRETURN r = SQLExecute(st);
			if (!SQL_SUCCEEDED(r) && r != SQL_NO_DATA)
				rr = diag(SQL_HANDLE_STMT, st, "execute", why, whylen);
			SQLLEN n = 0;
			if (rr == OP_OK && SQL_SUCCEEDED(SQLRowCount(st, &n)) && n > 0)
				*count += n;
			SQLFreeStmt(st, SQL_CLOSE);
		}
		if (rr) {
			*failed = i;
			*nfailed = 1;
			rc = rr;
		}
	}
	if (st != SQL_NULL_HSTMT)
		SQLFreeHandle(SQL_HANDLE_STMT, st);
	if (rc == OP_OK) {
		rc = end_tran(c, SQL_COMMIT, why, whylen);
	} else {
		char ignore[256];
		*count = 0;
		(void)end_tran(c, SQL_ROLLBACK, ignore, sizeof(ignore));
	}
	op_free(ind);
	return rc;
}

const struct op_db_driver op_db__odbc = {
    .name = "odbc",
    .connect = odbc_connect,
    .close = odbc_close,
    .usable = odbc_usable,
    .ping = odbc_ping,
    .exec = odbc_exec,
    .batch = odbc_batch,
};
