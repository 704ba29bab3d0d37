/*
 * The db step: one SQL statement on a database, with the values of its
 * {{ expressions }} bound as parameters (connectors/db/sql.c), on a
 * connection from the host's pool for its target and account
 * (connectors/db/pool.c). Four modes:
 *
 *   query    the rows, as an array of objects, become the message
 *   execute  {"rowCount": n} becomes the message
 *   batch    the statement runs once per item of `items` (each item is
 *            `message` for the expressions), all in one transaction
 *   stream   rows are read page by page and each page goes through `steps`,
 *            so a result of any size runs in bounded memory
 *
 * Invariant: no message text ever reaches the SQL: values are bound.
 */
#define OP_LOG_MODULE "db"
#include "connectors/db/step.h"
#include "agent/core/clock.h"

#include <stdio.h>
#include <string.h>

#include "agent/account/account.h"
#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/engine/engine.h"
#include "connectors/db/db_int.h"
#include "connectors/db/sql.h"

static const char *const drivers[] = {"postgresql", "odbc", NULL};
enum { DRIVER_PG, DRIVER_ODBC };
static const char *const modes[] = {"query", "execute", "batch", "stream", NULL};
enum { MODE_QUERY, MODE_EXECUTE, MODE_BATCH, MODE_STREAM };

struct db_cfg {
	int driver;
	char *connection;
	char *account;
	char *sql;
	int mode;
	struct op_expr *items;
	struct op_steps steps;
	long long page_size;
	long long max_rows;
	long long max_connections;
	long long timeout_ms;
};

static const struct op_conf_field db_fields[] = {
    {.name = "driver",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct db_cfg, driver),
     .def = "\"postgresql\"",
     .choices = drivers,
     .help = "postgresql (libpq), or odbc (unixODBC: any database with an ODBC driver)"},
    {.name = "connection",
     .type = OP_CONF_STRING,
     .off = offsetof(struct db_cfg, connection),
     .required = true,
     .help = "where to connect, without credentials: for postgresql a libpq conninfo "
             "(\"host=db port=5432 dbname=erp sslmode=verify-full\") or URI; for odbc a "
             "connection string (\"Driver=...;Server=...;Database=...\")"},
    {.name = "account",
     .type = OP_CONF_STRING,
     .off = offsetof(struct db_cfg, account),
     .required = true,
     .help = "basic account with the database user and password"},
    {.name = "sql",
     .type = OP_CONF_STRING,
     .off = offsetof(struct db_cfg, sql),
     .required = true,
     .help = "one statement; {{ expressions }} stand where values go and are bound as "
             "parameters, never spliced into the text"},
    {.name = "mode",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct db_cfg, mode),
     .def = "\"query\"",
     .choices = modes,
     .help = "query: the rows become the message; execute: {rowCount}; batch: once per "
             "item of `items` in one transaction; stream: pages of rows through `steps`"},
    {.name = "items",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct db_cfg, items),
     .def = "\"{{ message }}\"",
     .help = "batch: the array to run the statement for; each item is `message` in the "
             "statement's expressions"},
    {.name = "steps",
     .type = OP_CONF_STEPS,
     .off = offsetof(struct db_cfg, steps),
     .help = "stream: steps each page (an array of up to pageSize rows) goes through"},
    {.name = "pageSize",
     .type = OP_CONF_INT,
     .off = offsetof(struct db_cfg, page_size),
     .def = "1000",
     .min = 1,
     .max = 1000000,
     .help = "stream: rows per page"},
    {.name = "maxRows",
     .type = OP_CONF_INT,
     .off = offsetof(struct db_cfg, max_rows),
     .def = "100000",
     .min = 1,
     .max = 100000000,
     .help = "query: most rows taken into the message; more fail the step (use stream)"},
    {.name = "maxConnections",
     .type = OP_CONF_INT,
     .off = offsetof(struct db_cfg, max_connections),
     .def = "4",
     .min = 1,
     .max = 256,
     .help = "connections the pool of this connection and account may open"},
    {.name = "timeoutMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct db_cfg, timeout_ms),
     .def = "30000",
     .min = 1,
     .max = 86400000,
     .help = "longest time for a connection from the pool and the statement, in "
             "milliseconds (never past the execution's deadline); past it the statement is "
             "cancelled on the server"},
};
static const struct op_conf_table db_table = OP_CONF_TABLE("db", struct db_cfg, db_fields);

static const struct op_db_driver *driver_of(const struct db_cfg *c)
{
	return c->driver == DRIVER_ODBC ? &op_db__odbc : &op_db__pg;
}

/* What prepare() compiles: the statement, and for batches of inserts the
 * same with PER_STATEMENT rows. */
struct db_priv {
	struct op_sql *q;
	char *multi;
	size_t per;
};

#define ROWS_PER_STATEMENT 100
#define PARAMS_MAX         65535 /* in one PostgreSQL statement */

static void priv_free(struct db_priv *p)
{
	if (p == NULL)
		return;
	op_sql_free(p->q);
	op_free(p->multi);
	op_free(p);
}

static op_err db_prepare(struct op_load *ld, struct op_step *st)
{
	const struct db_cfg *c = st->cfg;
	op_err rc = OP_OK;
	if (c->account && !op_account_name_ok(c->account)) {
		op_load_problem(ld, "account", "\"%.80s\" is not an account name", c->account);
		rc = OP_ECONFIG;
	}
	if (c->connection &&
	    (strcasestr(c->connection, "password") || strcasestr(c->connection, "pwd="))) {
		op_load_problem(ld, "connection",
		                "holds a password: credentials belong in the account");
		rc = OP_ECONFIG;
	}
	if (c->mode == MODE_STREAM && c->steps.n == 0) {
		op_load_problem(ld, "steps", "mode stream needs steps for its pages");
		rc = OP_ECONFIG;
	}
	if (c->mode != MODE_STREAM && c->steps.n > 0) {
		op_load_problem(ld, "steps", "only mode stream runs steps");
		rc = OP_ECONFIG;
	}
	if (c->sql == NULL)
		return OP_ECONFIG;
	struct op_sql *q = NULL;
	char err[512];
	enum op_sql_style style = c->driver == DRIVER_ODBC ? OP_SQL_QUESTION : OP_SQL_DOLLAR;
	op_err sr = op_sql_compile(c->sql, style, &q, err, sizeof(err));
	if (sr == OP_ENOMEM)
		return sr;
	if (sr) {
		op_load_problem(ld, "sql", "%s", err);
		return OP_ECONFIG;
	}
	struct db_priv *pv = rc ? NULL : op_calloc(1, sizeof(*pv));
	if (pv == NULL) {
		op_sql_free(q);
		return rc ? rc : OP_ENOMEM;
	}
	pv->q = q;
	if (c->mode == MODE_BATCH && q->n > 0) {
		pv->per =
		    PARAMS_MAX / q->n < ROWS_PER_STATEMENT ? PARAMS_MAX / q->n : ROWS_PER_STATEMENT;
		/* NULL (not an INSERT of one VALUES tuple): one row per statement. */
		pv->multi = pv->per > 1 ? op_sql_rows_text(q, pv->per) : NULL;
	}
	st->priv = pv;
	return OP_OK;
}

static void db_release(struct op_step *st)
{
	priv_free(st->priv);
	st->priv = NULL;
}

/* ---- parameters ---- */

struct params {
	char **text;
	const char **v;
	size_t n;
};

static void params_clear(struct params *p)
{
	for (size_t i = 0; i < p->n; i++) {
		op_free(p->text[i]);
		p->text[i] = NULL;
		p->v[i] = NULL;
	}
}

static void params_fini(struct params *p)
{
	params_clear(p);
	op_free(p->text);
	op_free(p->v);
}

static op_err params_init(struct params *p, size_t n)
{
	p->n = n;
	p->text = op_calloc(n ? n : 1, sizeof(*p->text));
	p->v = op_calloc(n ? n : 1, sizeof(*p->v));
	return p->text && p->v ? OP_OK : OP_ENOMEM;
}

/* Evaluates the statement's expressions against msg into p. */
static op_err params_eval(struct op_exec *x, const struct op_sql *q, const cJSON *msg,
                          struct params *p, char *why, size_t whylen)
{
	params_clear(p);
	struct op_expr_env env;
	op_exec_env(x, msg, &env);
	for (size_t i = 0; i < q->n; i++) {
		struct op_val v = {0};
		char err[512];
		op_err rc = op_expr_eval(q->params[i], &env, &v, err, sizeof(err));
		if (rc)
			return op_errf(why, whylen, rc, "sql: %s: %s", op_expr_source(q->params[i]),
			               err);
		rc = op_db__param_text(v.v, &p->text[i]);
		op_val_drop(&v);
		if (rc)
			return op_errf(why, whylen, rc, "sql: %s: %s", op_expr_source(q->params[i]),
			               rc == OP_ENOMEM ? "out of memory" : "value too large");
		p->v[i] = p->text[i];
	}
	return OP_OK;
}

/* ---- the run ---- */

static bool cancelled(void *ud)
{
	return op_exec_cancelled(ud);
}

static const char *code_of(op_err cls)
{
	switch (cls) {
	case OP_ENOCONN:
		return "DB_CONNECT";
	case OP_ETIMEOUT:
		return "DB_TIMEOUT";
	case OP_EAUTH:
		return "DB_AUTH";
	case OP_EBUSY:
		return "DB_BUSY";
	case OP_ELIMIT:
		return "DB_LIMIT";
	case OP_ENOMEM:
		return "NOMEM";
	default:
		return "DB_ERROR";
	}
}

struct batch_ctx {
	struct op_exec *x;
	const struct op_sql *q;
	const cJSON *items;
	const cJSON *cur;
	struct params p;
};

static op_err batch_row(void *ud, size_t i, struct op_db_params *out, char *why, size_t whylen)
{
	struct batch_ctx *b = ud;
	/* Rows come in order: walk the array instead of indexing it. */
	b->cur = i == 0 ? b->items->child : b->cur ? b->cur->next : NULL;
	if (b->cur == NULL)
		return OP_ENOTFOUND;
	op_err rc = params_eval(b->x, b->q, b->cur, &b->p, why, whylen);
	if (rc == OP_OK) {
		out->v = b->p.v;
		out->n = b->p.n;
	}
	return rc;
}

struct stream_ctx {
	struct op_exec *x;
	const struct db_cfg *c;
	long long pages;
	bool steps_failed; /* the failure is described on the execution */
};

static op_err stream_page(void *ud, cJSON *rows, char *why, size_t whylen)
{
	struct stream_ctx *s = ud;
	op_err rc = op_exec_iteration(s->x);
	if (rc) {
		cJSON_Delete(rows);
		return op_errf(why, whylen, rc, "stopped at page %lld", s->pages + 1);
	}
	cJSON *out = NULL;
	rc = op_exec_steps(s->x, &s->c->steps, rows, &out);
	cJSON_Delete(out);
	s->pages++;
	if (rc) {
		s->steps_failed = true;
		return op_errf(why, whylen, rc, "page %lld failed in its steps", s->pages);
	}
	return OP_OK;
}

static op_err db_view(struct op_exec *x, const struct op_step *st, const cJSON *msg, cJSON **out)
{
	const struct db_cfg *c = st->cfg;
	const struct db_priv *pv = st->priv;
	const struct op_sql *q = pv->q;
	*out = NULL;
	char why[1024] = "";
	struct op_account *a = NULL;
	struct op_db_conn *conn = NULL;
	struct batch_ctx b = {.x = x, .q = q};
	struct op_val items = {0};
	cJSON *rows = NULL, *res = NULL;
	struct stream_ctx s = {.x = x, .c = c};
	const struct op_host *h = op_exec_host(x);
	op_err rc = params_init(&b.p, q->n);
	if (rc) {
		rc = op_exec_fail(x, rc, "NOMEM", "out of memory");
		goto out;
	}
	if (h == NULL || h->account_get == NULL || h->db_pools == NULL) {
		rc =
		    op_exec_fail(x, OP_EUNSUPPORTED, "ACCOUNT",
		                 "config.account: no accounts or database pools here: account '%s' "
		                 "cannot be opened (outpostctl run needs --config or --dev)",
		                 c->account);
		goto out;
	}
	rc = op_exec_account(x, "account", c->account, 1u << OP_ACCOUNT_BASIC,
	                     "db takes basic (user and password)", &a);
	if (rc)
		goto out;
	if (c->mode == MODE_BATCH) {
		rc = op_exec_eval(x, c->items, "items", msg, &items);
		if (rc)
			goto out;
		if (!cJSON_IsArray(items.v)) {
			rc = op_exec_fail(x, OP_EINVAL, "DB_ITEMS",
			                  "config.items: expected an array, got %s",
			                  op_json_kind(items.v));
			goto out;
		}
		b.items = items.v;
	} else {
		rc = params_eval(x, q, msg, &b.p, why, sizeof(why));
		if (rc) {
			rc = op_exec_fail(x, rc, "EXPRESSION", "%s", why);
			goto out;
		}
	}
	long long timeout = op_exec_timeout_ms(x, c->timeout_ms);
	struct op_db_wait w = {
	    .deadline_ms = op_mono_ms() + timeout, .cancelled = cancelled, .ud = x};
	const struct op_db_driver *drv = driver_of(c);
	rc = op_db__conn_get(h->db_pools, drv, c->connection, a, (size_t)c->max_connections, &w,
	                     &conn, why, sizeof(why));
	/* The password lives no longer than the connect. */
	op_account_free(a);
	a = NULL;
	if (rc) {
		rc = op_exec_fail(x, rc, code_of(rc), "%s", why);
		goto out;
	}
	long long count = 0;
	if (c->mode == MODE_BATCH) {
		size_t failed = (size_t)-1, nfailed = 0;
		struct op_db_batch bt = {
		    .sql = q->text, .nparams = q->n, .multi = pv->multi, .per = pv->per};
		rc = drv->batch(conn->h, &bt, batch_row, &b, &w, &count, &failed, &nfailed, why,
		                sizeof(why));
		if (rc && failed != (size_t)-1) {
			char at[64] = "";
			if (nfailed > 1)
				snprintf(at, sizeof(at), "items %zu to %zu: ", failed,
				         failed + nfailed - 1);
			else if (nfailed == 1)
				snprintf(at, sizeof(at), "item %zu: ", failed);
			rc = op_exec_fail(x, rc, code_of(rc), "%s%s (nothing was committed)", at,
			                  why);
			goto out;
		}
	} else {
		struct op_db_params p = {.v = b.p.v, .n = b.p.n};
		bool stream = c->mode == MODE_STREAM;
		rc = drv->exec(conn->h, q->text, &p, &w, stream ? (size_t)c->page_size : 0,
		               stream ? stream_page : NULL, &s, &rows, &count, why, sizeof(why));
		if (rc == OP_OK && c->mode == MODE_QUERY && count > c->max_rows)
			rc = op_errf(why, sizeof(why), OP_ELIMIT,
			             "%lld rows, more than maxRows (%lld); use mode stream", count,
			             c->max_rows);
		if (rc == OP_OK && stream) {
			res = cJSON_CreateObject();
			if (res && (!cJSON_AddNumberToObject(res, "rowCount", (double)count) ||
			            !cJSON_AddNumberToObject(res, "pages", (double)s.pages))) {
				cJSON_Delete(res);
				res = NULL;
			}
		}
	}
	/* A failing page's steps described the failure themselves. */
	if (rc) {
		if (!s.steps_failed)
			rc = op_exec_fail(x, rc, code_of(rc), "%s", why);
		goto out;
	}
	if (c->mode == MODE_QUERY) {
		res = rows ? rows : cJSON_CreateArray();
		rows = NULL;
	} else if (c->mode != MODE_STREAM) {
		res = cJSON_CreateObject();
		if (res && !cJSON_AddNumberToObject(res, "rowCount", (double)count)) {
			cJSON_Delete(res);
			res = NULL;
		}
	}
	if (res == NULL) {
		rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
	OP_LOGD("%s exec=%s: %lld rows", st->name, op_exec_id(x), count);
	*out = res;
out:
	op_db__conn_put(h ? h->db_pools : NULL, conn);
	cJSON_Delete(rows);
	op_val_drop(&items);
	params_fini(&b.p);
	op_account_free(a);
	return rc;
}

static op_err db_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	op_err rc = db_view(x, st, msg, out);
	cJSON_Delete(msg);
	return rc;
}

const struct op_step_type op_step_db = {
    .name = "db",
    .summary = "run a SQL statement with bound parameters: rows, a row count, a batch in one "
               "transaction, or pages of rows through steps",
    .conf = &db_table,
    .prepare = db_prepare,
    .run = db_run,
    .view = db_view,
    .release = db_release,
    .waits = true,
};
