/*
 * Private to connectors/db: what the step asks of a database driver, and
 * the pooled connection both sides share.
 *
 * A driver (pg.c for libpq; odbc.c for unixODBC) turns one call into one
 * round of statements on one connection and its results into JSON rows. It
 * never retries and never sleeps; it waits on its socket with the call's
 * deadline and cancels the statement on the server when the deadline passes
 * or the execution is cancelled.
 */
#ifndef OP_CONNECTORS_DB_INT_H
#define OP_CONNECTORS_DB_INT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/account/account.h"
#include "agent/core/clock.h"
#include "agent/core/err.h"

struct op_db_pools;

/* What one call waits for and how it can be stopped. */
struct op_db_wait {
	long long deadline_ms; /* monotonic */
	bool (*cancelled)(void *ud);
	void *ud;
};

/* Values of one row of bind parameters: n strings, NULL for SQL NULL. */
struct op_db_params {
	const char *const *v;
	size_t n;
};

/* Called with each page of rows (taken), in order; a failure stops the
 * statement and is the call's result. */
typedef op_err (*op_db_page_fn)(void *ud, cJSON *rows, char *why, size_t whylen);
/* Fills the parameters of batch row i; OP_ENOTFOUND past the last row. */
typedef op_err (*op_db_row_fn)(void *ud, size_t i, struct op_db_params *p, char *why,
                               size_t whylen);

/* A batch statement: the text for one row, and optionally for per rows. */
struct op_db_batch {
	const char *sql;
	size_t nparams; /* per row */
	const char *multi;
	size_t per;
};

struct op_db_driver {
	const char *name;
	/* Connects with conninfo and the account's user and password. */
	op_err (*connect)(const char *conninfo, const struct op_account *a,
	                  const struct op_db_wait *w, void **h, char *why, size_t whylen);
	void (*close)(void *h);
	/* Cheap check that a pooled connection is usable (no round trip). */
	bool (*usable)(void *h);
	/* One round trip to check a connection that sat idle. */
	op_err (*ping)(void *h, const struct op_db_wait *w, char *why, size_t whylen);
	/*
	 * Runs sql with p. Rows go to page in pages of page_size when page is
	 * set, else into *rows (an array; NULL for a statement without
	 * results). *count: rows returned or affected.
	 */
	op_err (*exec)(void *h, const char *sql, const struct op_db_params *p,
	               const struct op_db_wait *w, size_t page_size, op_db_page_fn page, void *ud,
	               cJSON **rows, long long *count, char *why, size_t whylen);
	/*
	 * Runs b->sql once per row that row() gives, in one transaction: all
	 * rows or none. With b->multi (the statement for b->per rows at once,
	 * op_sql_rows_text), rows go per rows to a statement, the last ones
	 * one by one. *count: rows affected. On failure *failed is the first
	 * item of the statement that failed and *nfailed how many it had (0:
	 * the statement itself is wrong), or (size_t)-1 and 0.
	 */
	op_err (*batch)(void *h, const struct op_db_batch *b, op_db_row_fn row, void *ud,
	                const struct op_db_wait *w, long long *count, size_t *failed,
	                size_t *nfailed, char *why, size_t whylen);
};

extern const struct op_db_driver op_db__pg;
extern const struct op_db_driver op_db__odbc;

/* A connection taken from a pool. */
struct op_db_conn {
	const struct op_db_driver *drv;
	void *h;
	char *key;
	long long idle_since_ms;
	bool broken; /* set by the user: do not give it back to the pool */
};

/*
 * A connection for (drv, conninfo, account): an idle one of its pool (pinged
 * first when idle for long), or a new one while the pool has fewer than max
 * connections out, else waits for one until w's deadline (OP_EBUSY). Give
 * it back with op_db__conn_put.
 */
op_err op_db__conn_get(struct op_db_pools *pools, const struct op_db_driver *drv,
                       const char *conninfo, const struct op_account *a, size_t max,
                       const struct op_db_wait *w, struct op_db_conn **out, char *why,
                       size_t whylen) OP_WUR;
void op_db__conn_put(struct op_db_pools *pools, struct op_db_conn *c);
/* Milliseconds left to w's deadline (at least 1 while before it, 0 after). */
long long op_db__left_ms(const struct op_db_wait *w);

/* The class of a SQLSTATE (SQL standard classes, PostgreSQL's codes,
 * ODBC's HYT00/HYT01 and IMxxx). */
op_err op_db__sqlstate_class(const char *st);

/* Text of a JSON value as a bind parameter: strings as they are, numbers
 * exactly, booleans true/false, objects and arrays as compact JSON; NULL
 * for null. Into a new string (op_free) in *out. */
op_err op_db__param_text(const cJSON *v, char **out) OP_WUR;
/* A decimal number's text as JSON: a number when a double holds it exactly,
 * else the string itself (so no digit is lost). */
cJSON *op_db__decimal(const char *s);

#endif
