/*
 * The SQL template compiler (see sql.h): one pass over the text that knows
 * enough of SQL's lexical rules to tell where a value may stand: outside
 * '...' (with '' and, after E, backslash escapes), "..." identifiers,
 * $tag$...$tag$ strings, -- line comments and nested block comments.
 */
#include "connectors/db/sql.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"

#define SQL_MAX (1u << 20)

void op_sql_free(struct op_sql *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		op_expr_free(s->params[i]);
	op_free(s->params);
	op_free(s->pos);
	op_free(s->text);
	op_free(s);
}

static bool ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool ident_char(char c)
{
	return ident_start(c) || (c >= '0' && c <= '9');
}

/* Length of a dollar-quote tag at s ("$$", "$x$"), 0 if none. */
static size_t dollar_tag(const char *s)
{
	if (s[0] != '$')
		return 0;
	size_t i = 1;
	if (ident_start(s[i])) {
		while (ident_char(s[i]))
			i++;
	}
	return s[i] == '$' ? i + 1 : 0;
}

/* The end of the expression that starts at s ("{{"): the index just past its
 * "}}", skipping quoted strings inside it; 0 if it never closes. */
static size_t expr_end(const char *s)
{
	char q = 0;
	for (size_t i = 2; s[i]; i++) {
		if (q) {
			if (s[i] == '\\' && s[i + 1])
				i++;
			else if (s[i] == q)
				q = 0;
		} else if (s[i] == '\'' || s[i] == '"') {
			q = s[i];
		} else if (s[i] == '}' && s[i + 1] == '}') {
			return i + 2;
		}
	}
	return 0;
}

/*
 * Finding the one VALUES tuple of an INSERT, in the characters outside
 * quotes and comments: the first word is INSERT, the word VALUES comes at
 * parenthesis depth 0, then a "(" opens the tuple and its ")" closes it; a
 * second tuple (a "," then "(" at depth 0) means the statement is already
 * multi-row. Offsets are in the output text.
 */
enum { SHAPE_START, SHAPE_INSERT, SHAPE_VALUES, SHAPE_TUPLE, SHAPE_AFTER, SHAPE_NO };

struct shape {
	int state;
	int depth;
	size_t start, end;
	bool comma; /* a "," at depth 0 after the tuple */
};

static bool word_is(const char *src, size_t i, const char *w)
{
	size_t n = strlen(w);
	if (i > 0 && ident_char(src[i - 1]))
		return false;
	for (size_t k = 0; k < n; k++) {
		char c = src[i + k];
		if (c == '\0' || (c | 0x20) != (w[k] | 0x20))
			return false;
	}
	return !ident_char(src[i + n]);
}

static void shape_step(struct shape *sh, const char *src, size_t i, size_t out)
{
	char c = src[i];
	if (sh->state == SHAPE_NO)
		return;
	if (sh->state == SHAPE_START) {
		if (ident_start(c))
			sh->state = word_is(src, i, "insert") ? SHAPE_INSERT : SHAPE_NO;
		return;
	}
	if (c == '(' && sh->depth == 0 && sh->state == SHAPE_VALUES) {
		sh->state = SHAPE_TUPLE;
		sh->start = out;
	} else if (c == '(' && sh->depth == 0 && sh->state == SHAPE_AFTER && sh->comma) {
		sh->state = SHAPE_NO; /* already more than one row */
		return;
	}
	if (c == '(')
		sh->depth++;
	else if (c == ')' && --sh->depth == 0 && sh->state == SHAPE_TUPLE) {
		sh->state = SHAPE_AFTER;
		sh->end = out + 1;
	} else if (c == ',' && sh->depth == 0 && sh->state == SHAPE_AFTER)
		sh->comma = true;
	else if (sh->depth == 0 && sh->state == SHAPE_INSERT && word_is(src, i, "values"))
		sh->state = SHAPE_VALUES;
	else if (sh->state == SHAPE_AFTER && c != ' ' && c != '\n' && c != '\t' && c != '\r' &&
	         c != ',')
		sh->comma = false;
}

static op_err add_param(struct op_sql *s, const char *src, size_t len, size_t col, char *err,
                        size_t errlen)
{
	if (s->n == OP_SQL_PARAMS_MAX)
		return op_errf(err, errlen, OP_ELIMIT, "more than %d expressions in one statement",
		               OP_SQL_PARAMS_MAX);
	char *text = op_strndup(src, len);
	if (text == NULL)
		return op_errf(err, errlen, OP_ENOMEM, "out of memory");
	struct op_expr *e = NULL;
	char why[256];
	op_err rc = op_expr_compile(text, &e, why, sizeof(why));
	op_free(text);
	if (rc == OP_ENOMEM)
		return op_errf(err, errlen, rc, "out of memory");
	if (rc)
		return op_errf(err, errlen, OP_EPARSE, "column %zu: %s", col, why);
	struct op_expr **v = op_realloc(s->params, (s->n + 1) * sizeof(*v));
	if (v != NULL)
		s->params = v;
	size_t *pv = v ? op_realloc(s->pos, (s->n + 1) * sizeof(*pv)) : NULL;
	if (pv == NULL) {
		op_expr_free(e);
		return op_errf(err, errlen, OP_ENOMEM, "out of memory");
	}
	s->pos = pv;
	s->params[s->n++] = e;
	return OP_OK;
}

op_err op_sql_compile(const char *src, enum op_sql_style style, struct op_sql **out, char *err,
                      size_t errlen)
{
	*out = NULL;
	struct op_sql *s = op_calloc(1, sizeof(*s));
	if (s == NULL)
		return op_errf(err, errlen, OP_ENOMEM, "out of memory");
	struct op_buf b;
	op_buf_init(&b, SQL_MAX);
	op_err rc = OP_OK;
	const char *where = NULL; /* what we are inside of, for errors */
	size_t open_at = 0;
	char quote = 0;       /* ' or " while inside one */
	bool escapes = false; /* E'...' */
	int depth = 0;        /* block comment nesting */
	bool line = false;    /* -- comment */
	char tag[64] = "";    /* $tag$ while inside one */
	size_t taglen = 0;
	struct shape sh = {0};
	for (size_t i = 0; src[i] && rc == OP_OK;) {
		const char *p = src + i;
		size_t col = i + 1;
		if (p[0] == '{' && p[1] == '{') {
			if (where) {
				rc = op_errf(
				    err, errlen, OP_EPARSE,
				    "column %zu: an expression inside %s (opened at column "
				    "%zu) would not be a value; write {{ }} where the value "
				    "goes, without quotes: it is bound, never spliced",
				    col, where, open_at);
				break;
			}
			size_t n = expr_end(p);
			if (n == 0) {
				rc = op_errf(err, errlen, OP_EPARSE, "column %zu: {{ without }}",
				             col);
				break;
			}
			rc = add_param(s, p, n, col, err, errlen);
			if (rc == OP_OK)
				s->pos[s->n - 1] = b.len;
			if (rc == OP_OK)
				rc = style == OP_SQL_DOLLAR ? op_buf_addf(&b, "$%zu", s->n)
				                            : op_buf_addc(&b, '?');
			i += n;
			continue;
		}
		size_t adv = 1;
		if (line) {
			if (*p == '\n') {
				line = false;
				where = NULL;
			}
		} else if (depth > 0) {
			if (p[0] == '/' && p[1] == '*') {
				depth++;
				adv = 2;
			} else if (p[0] == '*' && p[1] == '/') {
				adv = 2;
				if (--depth == 0)
					where = NULL;
			}
		} else if (quote) {
			if ((escapes && *p == '\\' && p[1]) || (*p == quote && p[1] == quote)) {
				adv = 2; /* an escaped character or a doubled quote */
			} else if (*p == quote) {
				quote = 0;
				where = NULL;
			}
		} else if (taglen) {
			if (strncmp(p, tag, taglen) == 0) {
				adv = taglen;
				taglen = 0;
				where = NULL;
			}
		} else if (*p == '\'' || *p == '"') {
			quote = *p;
			escapes = *p == '\'' && i > 0 && (p[-1] == 'E' || p[-1] == 'e') &&
			          (i == 1 || !ident_char(p[-2]));
			where = *p == '\'' ? "a quoted string" : "a quoted identifier";
			open_at = col;
		} else if (p[0] == '-' && p[1] == '-') {
			line = true;
			adv = 2;
			where = "a comment";
			open_at = col;
		} else if (p[0] == '/' && p[1] == '*') {
			depth = 1;
			adv = 2;
			where = "a comment";
			open_at = col;
		} else if (*p == '$' && dollar_tag(p) > 0 && (i == 0 || !ident_char(p[-1]))) {
			size_t t = dollar_tag(p);
			if (t >= sizeof(tag)) {
				rc = op_errf(err, errlen, OP_EPARSE, "column %zu: $tag$ too long",
				             col);
				break;
			}
			memcpy(tag, p, t);
			tag[t] = '\0';
			taglen = t;
			adv = t;
			where = "a $-quoted string";
			open_at = col;
		} else if (*p == '$' && p[1] >= '0' && p[1] <= '9' && style == OP_SQL_DOLLAR &&
		           (i == 0 || !ident_char(p[-1]))) {
			rc = op_errf(err, errlen, OP_EPARSE,
			             "column %zu: write values as {{ expressions }}, not $n", col);
			break;
		} else if (*p == '?' && style == OP_SQL_QUESTION) {
			rc = op_errf(err, errlen, OP_EPARSE,
			             "column %zu: write values as {{ expressions }}, not ?", col);
			break;
		} else {
			shape_step(&sh, src, i, b.len);
		}
		if (rc == OP_OK)
			rc = op_buf_add(&b, p, adv);
		i += adv;
	}
	if (rc == OP_OK && (quote || taglen || depth > 0))
		rc = op_errf(err, errlen, OP_EPARSE, "%s opened at column %zu is not closed", where,
		             open_at);
	if (rc == OP_ELIMIT && b.len == SQL_MAX)
		op_errf(err, errlen, rc, "statement longer than %u bytes", SQL_MAX);
	if (rc == OP_OK && sh.state == SHAPE_AFTER && style == OP_SQL_DOLLAR && s->n > 0 &&
	    s->pos[0] > sh.start && s->pos[s->n - 1] < sh.end) {
		s->tuple_start = sh.start;
		s->tuple_end = sh.end;
	}
	if (rc == OP_OK && b.len == 0)
		rc = op_errf(err, errlen, OP_EPARSE, "the statement is empty");
	if (rc == OP_OK && (s->text = op_buf_take(&b)) == NULL)
		rc = op_errf(err, errlen, OP_ENOMEM, "out of memory");
	op_buf_fini(&b);
	if (rc) {
		op_sql_free(s);
		return rc;
	}
	*out = s;
	return OP_OK;
}

char *op_sql_rows_text(const struct op_sql *q, size_t rows)
{
	if (q->tuple_end == 0 || rows == 0)
		return NULL;
	struct op_buf b;
	op_buf_init(&b, SQL_MAX * 4);
	op_err rc = op_buf_add(&b, q->text, q->tuple_start);
	for (size_t r = 0; r < rows && rc == OP_OK; r++) {
		if (r > 0)
			rc = op_buf_addc(&b, ',');
		size_t at = q->tuple_start;
		for (size_t k = 0; k < q->n && rc == OP_OK; k++) {
			rc = op_buf_add(&b, q->text + at, q->pos[k] - at);
			if (rc == OP_OK)
				rc = op_buf_addf(&b, "$%zu", r * q->n + k + 1);
			/* Skip the old "$k". */
			at = q->pos[k] + 1;
			while (q->text[at] >= '0' && q->text[at] <= '9')
				at++;
		}
		if (rc == OP_OK)
			rc = op_buf_add(&b, q->text + at, q->tuple_end - at);
	}
	if (rc == OP_OK)
		rc = op_buf_adds(&b, q->text + q->tuple_end);
	char *out = rc == OP_OK ? op_buf_take(&b) : NULL;
	op_buf_fini(&b);
	return out;
}
