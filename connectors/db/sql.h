/*
 * SQL with expressions as bind parameters. A statement's text may hold
 * `{{ ... }}` expressions where values go; at load each becomes a
 * placeholder ($1, $2... for PostgreSQL, ? for ODBC) and a compiled
 * expression, so a value is always bound, never spliced into the SQL: a
 * message cannot change what a statement does (no SQL injection).
 *
 * An expression inside a quoted string, a quoted identifier or a comment is
 * refused at load: there it would not be a value, and quoting it is the
 * classic way to splice text. PostgreSQL's $tag$ strings count as quotes.
 */
#ifndef OP_CONNECTORS_DB_SQL_H
#define OP_CONNECTORS_DB_SQL_H

#include <stddef.h>

#include "agent/core/err.h"
#include "agent/expr/expr.h"

#define OP_SQL_PARAMS_MAX 1000 /* expressions in one statement */

enum op_sql_style {
	OP_SQL_DOLLAR,   /* $1, $2, ... (libpq) */
	OP_SQL_QUESTION, /* ?, ?, ... (ODBC) */
};

struct op_sql {
	char *text;              /* the statement with placeholders */
	struct op_expr **params; /* one per placeholder, in order */
	size_t n;
	/* Private: where the placeholders are in text, and for a statement of
	 * the shape INSERT ... VALUES (...) with every placeholder in its one
	 * tuple, where that tuple is (tuple_end 0 otherwise). */
	size_t *pos;
	size_t tuple_start, tuple_end;
};

/*
 * Compiles src into *out (op_sql_free). OP_EPARSE with err naming the
 * column (1-based, in bytes) of an expression inside quotes or a comment, an
 * unclosed `{{` or quote, or an expression that does not compile;
 * OP_ELIMIT past OP_SQL_PARAMS_MAX expressions; OP_ENOMEM.
 */
op_err op_sql_compile(const char *src, enum op_sql_style style, struct op_sql **out, char *err,
                      size_t errlen) OP_WUR;
void op_sql_free(struct op_sql *s);

/*
 * For INSERT ... VALUES (...) statements whose every expression stands in
 * the one VALUES tuple: the statement with that tuple written rows times,
 * its placeholders numbered on ($5.. for the second row of four), so one
 * execution inserts rows rows, as batches want (the rewrite of pgJDBC's
 * reWriteBatchedInserts). A new string (op_free), or NULL when q is not of
 * that shape, uses ? placeholders, or on ENOMEM.
 */
char *op_sql_rows_text(const struct op_sql *q, size_t rows);

#endif
