/*
 * Compiling templates: splitting a string into literal text and `{{ ... }}`
 * parts, and the lexer and recursive-descent parser that turn each part into
 * a tree of op_node (see expr_int.h), checking function names and argument
 * counts and letting functions precompile literal arguments.
 *
 * Key invariant: hostile source cannot exhaust the stack or memory. Parser
 * recursion and the height of every tree are bounded by OP_EXPR_MAX_DEPTH,
 * runs of one operator are flattened into one chain node, and the source is
 * at most OP_EXPR_MAX_SRC bytes. Every error leaves nothing allocated.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/core/alloc.h"
#include "agent/core/b64.h"
#include "agent/expr/expr_int.h"

enum tok {
	T_END,
	T_NUM,
	T_STR,
	T_IDENT,
	T_LP,
	T_RP,
	T_LB,
	T_RB,
	T_LC,
	T_RC,
	T_CLOSE, /* "}}" */
	T_COMMA,
	T_DOT,
	T_COLON,
	T_PLUS,
	T_MINUS,
	T_STAR,
	T_SLASH,
	T_PCT,
	T_BANG,
	T_EQ,
	T_NE,
	T_LT,
	T_LE,
	T_GT,
	T_GE,
	T_AND,
	T_OR,
	T_QQ,
};

struct parser {
	const char *src;
	size_t pos; /* where the next token starts to be looked for */
	/* current token */
	int tok;
	size_t tstart, tlen;
	double num;
	char *str; /* T_STR: decoded text, owned until taken */
	size_t slen;
	int depth;
	char *err;
	size_t errlen;
	op_err rc;
};

static uint32_t col_of(size_t off)
{
	return (uint32_t)(off + 1);
}

static void perr(struct parser *p, size_t off, const char *fmt, ...) OP_PRINTF(3, 4);

static void perr(struct parser *p, size_t off, const char *fmt, ...)
{
	if (p->rc != OP_OK)
		return;
	p->rc = OP_EPARSE;
	if (p->err == NULL || p->errlen == 0)
		return;
	int n = snprintf(p->err, p->errlen, "column %u: ", col_of(off));
	if (n < 0 || (size_t)n >= p->errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

static void nomem(struct parser *p)
{
	if (p->rc != OP_OK)
		return;
	p->rc = OP_ENOMEM;
	if (p->err && p->errlen)
		snprintf(p->err, p->errlen, "out of memory");
}

/* A short description of the current token for "found ..." messages. */
static void tok_desc(const struct parser *p, char *out, size_t outlen)
{
	if (p->tok == T_END) {
		snprintf(out, outlen, "end of text");
		return;
	}
	size_t n = p->tlen > 20 ? 20 : p->tlen;
	snprintf(out, outlen, "'%.*s%s'", (int)n, p->src + p->tstart, p->tlen > 20 ? "..." : "");
}

static bool is_ident_start(int c)
{
	return isalpha(c) || c == '_';
}

static bool is_ident(int c)
{
	return isalnum(c) || c == '_';
}

static bool read_hex4(const char *s, unsigned long *out)
{
	unsigned long v = 0;
	for (int i = 0; i < 4; i++) {
		int h = op_hex_value((unsigned char)s[i]);
		if (h < 0)
			return false;
		v = v * 16 + (unsigned long)h;
	}
	*out = v;
	return true;
}

/* Lexes a quoted string starting at p->pos (the quote). */
static bool lex_string(struct parser *p)
{
	const char *s = p->src;
	size_t start = p->pos;
	char q = s[start];
	size_t i = start + 1;
	/* Decoded text is never longer than the source. */
	size_t end = i;
	while (s[end] && s[end] != q) {
		if (s[end] == '\\' && s[end + 1])
			end++;
		end++;
	}
	if (s[end] != q) {
		perr(p, start, "unterminated string");
		return false;
	}
	char *o = op_malloc(end - i + 1);
	if (o == NULL) {
		nomem(p);
		return false;
	}
	size_t n = 0;
	while (i < end) {
		char ch = s[i];
		if (ch != '\\') {
			o[n++] = ch;
			i++;
			continue;
		}
		size_t esc = i;
		ch = s[++i];
		i++;
		switch (ch) {
		case '"':
		case '\'':
		case '\\':
		case '/':
			o[n++] = ch;
			break;
		case 'b':
			o[n++] = '\b';
			break;
		case 'f':
			o[n++] = '\f';
			break;
		case 'n':
			o[n++] = '\n';
			break;
		case 'r':
			o[n++] = '\r';
			break;
		case 't':
			o[n++] = '\t';
			break;
		case 'u': {
			unsigned long cp, lo;
			if (i + 4 > end || !read_hex4(s + i, &cp)) {
				perr(p, esc, "expected 4 hex digits after \\u");
				goto fail;
			}
			i += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (i + 6 > end || s[i] != '\\' || s[i + 1] != 'u' ||
				    !read_hex4(s + i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
					perr(p, esc, "unpaired surrogate in \\u escape");
					goto fail;
				}
				i += 6;
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				perr(p, esc, "unpaired surrogate in \\u escape");
				goto fail;
			}
			if (cp == 0) {
				perr(p, esc, "\\u0000 is not allowed in strings");
				goto fail;
			}
			/* An escape is 6+ source bytes and yields at most 4. */
			n += op_expr__utf8_put(o + n, cp);
			break;
		}
		default:
			perr(p, esc, "unknown escape '\\%c' in string", ch ? ch : ' ');
			goto fail;
		}
	}
	o[n] = '\0';
	p->str = o;
	p->slen = n;
	p->tok = T_STR;
	p->pos = end + 1;
	return true;
fail:
	op_free(o);
	return false;
}

static bool lex_number(struct parser *p)
{
	const char *s = p->src;
	size_t i = p->pos;
	while (isdigit((unsigned char)s[i]))
		i++;
	if (s[i] == '.') {
		if (!isdigit((unsigned char)s[i + 1])) {
			perr(p, i, "expected a digit after '.'");
			return false;
		}
		i++;
		while (isdigit((unsigned char)s[i]))
			i++;
	}
	if (s[i] == 'e' || s[i] == 'E') {
		size_t e = i + 1;
		if (s[e] == '+' || s[e] == '-')
			e++;
		if (!isdigit((unsigned char)s[e])) {
			perr(p, i, "expected a digit in the exponent");
			return false;
		}
		while (isdigit((unsigned char)s[e]))
			e++;
		i = e;
	}
	if (is_ident_start((unsigned char)s[i])) {
		perr(p, p->pos, "unexpected '%c' after a number", s[i]);
		return false;
	}
	char tmp[64];
	size_t n = i - p->pos;
	if (n >= sizeof(tmp)) {
		perr(p, p->pos, "number too long");
		return false;
	}
	memcpy(tmp, s + p->pos, n);
	tmp[n] = '\0';
	errno = 0;
	double d = strtod(tmp, NULL);
	if (!isfinite(d)) {
		perr(p, p->pos, "number out of range");
		return false;
	}
	p->num = d;
	p->tok = T_NUM;
	p->pos = i;
	return true;
}

/* Moves to the next token. False on a lexical error (p->rc set). */
static bool next(struct parser *p)
{
	op_free(p->str);
	p->str = NULL;
	const char *s = p->src;
	while (s[p->pos] == ' ' || s[p->pos] == '\t' || s[p->pos] == '\n' || s[p->pos] == '\r')
		p->pos++;
	p->tstart = p->pos;
	unsigned char c = (unsigned char)s[p->pos];
	bool ok = true;
	int t = -1;
	size_t w = 1;
	switch (c) {
	case '\0':
		t = T_END;
		w = 0;
		break;
	case '(':
		t = T_LP;
		break;
	case ')':
		t = T_RP;
		break;
	case '[':
		t = T_LB;
		break;
	case ']':
		t = T_RB;
		break;
	case '{':
		t = T_LC;
		break;
	case '}':
		t = s[p->pos + 1] == '}' ? T_CLOSE : T_RC;
		w = t == T_CLOSE ? 2 : 1;
		break;
	case ',':
		t = T_COMMA;
		break;
	case '.':
		t = T_DOT;
		break;
	case ':':
		t = T_COLON;
		break;
	case '+':
		t = T_PLUS;
		break;
	case '-':
		t = T_MINUS;
		break;
	case '*':
		t = T_STAR;
		break;
	case '/':
		t = T_SLASH;
		break;
	case '%':
		t = T_PCT;
		break;
	case '!':
		t = s[p->pos + 1] == '=' ? T_NE : T_BANG;
		w = t == T_NE ? 2 : 1;
		break;
	case '=':
		if (s[p->pos + 1] == '=') {
			t = T_EQ;
			w = 2;
		}
		break;
	case '<':
		t = s[p->pos + 1] == '=' ? T_LE : T_LT;
		w = t == T_LE ? 2 : 1;
		break;
	case '>':
		t = s[p->pos + 1] == '=' ? T_GE : T_GT;
		w = t == T_GE ? 2 : 1;
		break;
	case '&':
		if (s[p->pos + 1] == '&') {
			t = T_AND;
			w = 2;
		}
		break;
	case '|':
		if (s[p->pos + 1] == '|') {
			t = T_OR;
			w = 2;
		}
		break;
	case '?':
		if (s[p->pos + 1] == '?') {
			t = T_QQ;
			w = 2;
		}
		break;
	case '"':
	case '\'':
		ok = lex_string(p);
		p->tlen = p->pos - p->tstart;
		return ok;
	default:
		if (isdigit(c)) {
			ok = lex_number(p);
			p->tlen = p->pos - p->tstart;
			return ok;
		}
		if (is_ident_start(c)) {
			size_t i = p->pos;
			while (is_ident((unsigned char)s[i]))
				i++;
			p->tok = T_IDENT;
			p->pos = i;
			p->tlen = i - p->tstart;
			return true;
		}
		break;
	}
	if (t < 0) {
		if (c == '=')
			perr(p, p->pos, "unexpected '=' (use '==' to compare)");
		else if (c >= 0x20 && c < 0x7F)
			perr(p, p->pos, "unexpected character '%c'", c);
		else
			perr(p, p->pos, "unexpected byte 0x%02X", c);
		return false;
	}
	p->tok = t;
	p->pos += w;
	p->tlen = w;
	return true;
}

/* ---- node construction ---- */

static struct op_node *node_new(struct parser *p, int kind, size_t off)
{
	struct op_node *n = op_calloc(1, sizeof(*n));
	if (n == NULL) {
		nomem(p);
		return NULL;
	}
	n->kind = (uint8_t)kind;
	n->depth = 1;
	n->col = col_of(off);
	return n;
}

void op_expr__node_free(struct op_node *n)
{
	if (n == NULL)
		return;
	switch (n->kind) {
	case OP_N_CONST:
		cJSON_Delete(n->k.v);
		break;
	case OP_N_ROOT:
		break;
	case OP_N_PATH:
		op_expr__node_free(n->p.base);
		for (size_t i = 0; i < n->p.n; i++) {
			op_free(n->p.segs[i].key);
			op_expr__node_free(n->p.segs[i].expr);
		}
		op_free(n->p.segs);
		break;
	case OP_N_CHAIN:
		for (size_t i = 0; i < n->c.n; i++)
			op_expr__node_free(n->c.items[i]);
		op_free(n->c.items);
		op_free(n->c.ops);
		break;
	case OP_N_NOT:
	case OP_N_NEG:
		op_expr__node_free(n->a);
		break;
	case OP_N_CALL:
		for (size_t i = 0; i < n->call.n; i++)
			op_expr__node_free(n->call.args[i]);
		op_free(n->call.args);
		if (n->call.aux && n->call.fn->free_aux)
			n->call.fn->free_aux(n->call.aux);
		break;
	case OP_N_ARRAY:
	case OP_N_OBJECT:
		for (size_t i = 0; i < n->l.n; i++) {
			op_expr__node_free(n->l.items[i]);
			if (n->l.keys)
				op_free(n->l.keys[i]);
		}
		op_free(n->l.items);
		op_free(n->l.keys);
		break;
	default:
		break;
	}
	op_free(n);
}

/* Makes a constant node owning v (v is deleted on failure). */
static struct op_node *const_new(struct parser *p, cJSON *v, size_t off)
{
	if (v == NULL) {
		nomem(p);
		return NULL;
	}
	struct op_node *n = node_new(p, OP_N_CONST, off);
	if (n == NULL) {
		cJSON_Delete(v);
		return NULL;
	}
	n->k.v = v;
	op_expr__xv_of(&n->k.x, v);
	return n;
}

/* Checks the height of n after its children are attached. */
static bool height_ok(struct parser *p, struct op_node *n, unsigned child_depth)
{
	if (child_depth + 1 > OP_EXPR_MAX_DEPTH) {
		perr(p, n->col - 1, "expression nested too deeply (limit %d)", OP_EXPR_MAX_DEPTH);
		return false;
	}
	if (child_depth + 1 > n->depth)
		n->depth = (uint8_t)(child_depth + 1);
	return true;
}

/* Grows a pointer array by one slot. */
static bool push_ptr(struct parser *p, void ***arr, size_t *n, void *v)
{
	if (*n >= OP_EXPR_MAX_ARGS) {
		perr(p, p->tstart, "too many items (limit %d)", OP_EXPR_MAX_ARGS);
		return false;
	}
	void **a = op_realloc(*arr, (*n + 1) * sizeof(*a));
	if (a == NULL) {
		nomem(p);
		return false;
	}
	a[(*n)++] = v;
	*arr = a;
	return true;
}

static struct op_node *parse_expr(struct parser *p);

static bool enter(struct parser *p)
{
	if (++p->depth > OP_EXPR_MAX_DEPTH) {
		perr(p, p->tstart, "expression nested too deeply (limit %d)", OP_EXPR_MAX_DEPTH);
		return false;
	}
	return true;
}

static struct op_node *parse_call(struct parser *p, const struct op_expr__fn *fn, size_t off)
{
	struct op_node *n = node_new(p, OP_N_CALL, off);
	if (n == NULL)
		return NULL;
	n->call.fn = fn;
	/* current token is '(' */
	if (!next(p))
		goto fail;
	if (p->tok != T_RP) {
		for (;;) {
			struct op_node *a = parse_expr(p);
			if (a == NULL)
				goto fail;
			if (!push_ptr(p, (void ***)&n->call.args, &n->call.n, a)) {
				op_expr__node_free(a);
				goto fail;
			}
			if (!height_ok(p, n, a->depth))
				goto fail;
			if (p->tok == T_COMMA) {
				if (!next(p))
					goto fail;
				continue;
			}
			if (p->tok == T_RP)
				break;
			char d[48];
			tok_desc(p, d, sizeof(d));
			perr(p, p->tstart, "expected ')' to close %s( at column %u, found %s",
			     fn->name, n->col, d);
			goto fail;
		}
	}
	if (!next(p))
		goto fail;
	if (n->call.n < fn->min || (fn->max != OP_FN_VARIADIC && n->call.n > fn->max)) {
		if (fn->min == fn->max)
			perr(p, off, "%s takes %u argument%s, got %zu", fn->name, fn->min,
			     fn->min == 1 ? "" : "s", n->call.n);
		else if (fn->max == OP_FN_VARIADIC)
			perr(p, off, "%s takes at least %u argument%s, got %zu", fn->name, fn->min,
			     fn->min == 1 ? "" : "s", n->call.n);
		else
			perr(p, off, "%s takes %u to %u arguments, got %zu", fn->name, fn->min,
			     fn->max, n->call.n);
		goto fail;
	}
	if (fn->prepare) {
		op_err e = fn->prepare(n, p->err, p->errlen);
		if (e != OP_OK) {
			p->rc = e;
			goto fail;
		}
	}
	return n;
fail:
	op_expr__node_free(n);
	return NULL;
}

/* [a, b, ...] — folded into a constant when every element is one. */
static struct op_node *parse_array(struct parser *p)
{
	size_t off = p->tstart;
	bool all_const = true;
	struct op_node *n = node_new(p, OP_N_ARRAY, off);
	if (n == NULL || !next(p))
		goto fail;
	if (p->tok != T_RB) {
		for (;;) {
			struct op_node *a = parse_expr(p);
			if (a == NULL)
				goto fail;
			if (!push_ptr(p, (void ***)&n->l.items, &n->l.n, a)) {
				op_expr__node_free(a);
				goto fail;
			}
			if (!height_ok(p, n, a->depth))
				goto fail;
			all_const = all_const && a->kind == OP_N_CONST;
			if (p->tok == T_COMMA) {
				if (!next(p))
					goto fail;
				continue;
			}
			if (p->tok == T_RB)
				break;
			char d[48];
			tok_desc(p, d, sizeof(d));
			perr(p, p->tstart, "expected ',' or ']' in array, found %s", d);
			goto fail;
		}
	}
	if (!next(p))
		goto fail;
	if (all_const) {
		cJSON *arr = cJSON_CreateArray();
		if (arr == NULL) {
			nomem(p);
			goto fail;
		}
		for (size_t i = 0; i < n->l.n; i++) {
			cJSON_AddItemToArray(arr, n->l.items[i]->k.v);
			n->l.items[i]->k.v = NULL;
		}
		op_expr__node_free(n);
		return const_new(p, arr, off);
	}
	return n;
fail:
	op_expr__node_free(n);
	return NULL;
}

/* {"key": value, name: value} — keys are literal. */
static struct op_node *parse_object(struct parser *p)
{
	size_t off = p->tstart;
	bool all_const = true;
	size_t nkeys = 0; /* keys may run one ahead of values while parsing */
	struct op_node *n = node_new(p, OP_N_OBJECT, off);
	if (n == NULL || !next(p))
		goto fail;
	while (p->tok != T_RC && p->tok != T_CLOSE) {
		char *key;
		size_t koff = p->tstart;
		if (p->tok == T_STR) {
			key = p->str;
			p->str = NULL;
		} else if (p->tok == T_IDENT) {
			key = op_strndup(p->src + p->tstart, p->tlen);
			if (key == NULL) {
				nomem(p);
				goto fail;
			}
		} else {
			char d[48];
			tok_desc(p, d, sizeof(d));
			perr(p, p->tstart, "expected a key in object, found %s", d);
			goto fail;
		}
		for (size_t i = 0; i < nkeys; i++) {
			if (strcmp(n->l.keys[i], key) == 0) {
				perr(p, koff, "duplicate key \"%s\" in object", key);
				op_free(key);
				goto fail;
			}
		}
		if (!push_ptr(p, (void ***)&n->l.keys, &nkeys, key)) {
			op_free(key);
			goto fail;
		}
		if (!next(p))
			goto fail;
		if (p->tok != T_COLON) {
			char d[48];
			tok_desc(p, d, sizeof(d));
			perr(p, p->tstart, "expected ':' after object key, found %s", d);
			goto fail;
		}
		if (!next(p))
			goto fail;
		struct op_node *a = parse_expr(p);
		if (a == NULL)
			goto fail;
		if (!push_ptr(p, (void ***)&n->l.items, &n->l.n, a)) {
			op_expr__node_free(a);
			goto fail;
		}
		if (!height_ok(p, n, a->depth))
			goto fail;
		all_const = all_const && a->kind == OP_N_CONST;
		if (p->tok == T_COMMA) {
			if (!next(p))
				goto fail;
			continue;
		}
		if (p->tok != T_RC && p->tok != T_CLOSE) {
			char d[48];
			tok_desc(p, d, sizeof(d));
			perr(p, p->tstart, "expected ',' or '}' in object, found %s", d);
			goto fail;
		}
	}
	if (p->tok == T_CLOSE) {
		/* "}}" closing this object and an outer one: consume only one brace. */
		p->pos = p->tstart + 1;
	}
	if (!next(p))
		goto fail;
	if (all_const) {
		cJSON *obj = cJSON_CreateObject();
		if (obj == NULL) {
			nomem(p);
			goto fail;
		}
		for (size_t i = 0; i < n->l.n; i++) {
			cJSON *v = n->l.items[i]->k.v;
			if (!cJSON_AddItemToObject(obj, n->l.keys[i], v)) {
				cJSON_Delete(obj);
				nomem(p);
				goto fail;
			}
			n->l.items[i]->k.v = NULL;
		}
		op_expr__node_free(n);
		return const_new(p, obj, off);
	}
	return n;
fail:
	/* node_free pairs keys with values; a key still waiting for its value is freed here. */
	for (size_t i = n ? n->l.n : 0; n && i < nkeys; i++)
		op_free(n->l.keys[i]);
	op_expr__node_free(n);
	return NULL;
}

static struct op_node *parse_primary(struct parser *p)
{
	size_t off = p->tstart;
	struct op_node *n = NULL;
	switch (p->tok) {
	case T_NUM:
		n = const_new(p, cJSON_CreateNumber(p->num), off);
		if (n && !next(p))
			goto fail;
		return n;
	case T_STR: {
		/* Build the node around the decoded text without copying it. */
		cJSON *v = cJSON_CreateNull();
		if (v == NULL) {
			nomem(p);
			return NULL;
		}
		v->type = cJSON_String;
		v->valuestring = p->str;
		p->str = NULL;
		n = const_new(p, v, off);
		if (n && !next(p))
			goto fail;
		return n;
	}
	case T_LP:
		if (!next(p))
			return NULL;
		n = parse_expr(p);
		if (n == NULL)
			return NULL;
		if (p->tok != T_RP) {
			char d[48];
			tok_desc(p, d, sizeof(d));
			perr(p, p->tstart, "expected ')' to close '(' at column %u, found %s",
			     col_of(off), d);
			goto fail;
		}
		if (!next(p))
			goto fail;
		return n;
	case T_LB:
		return parse_array(p);
	case T_LC:
		return parse_object(p);
	case T_IDENT:
		break;
	default: {
		char d[48];
		tok_desc(p, d, sizeof(d));
		perr(p, off, "expected an expression, found %s", d);
		return NULL;
	}
	}
	const char *id = p->src + p->tstart;
	size_t len = p->tlen;
	if (p->src[p->pos + strspn(p->src + p->pos, " \t\r\n")] == '(') {
		const struct op_expr__fn *fn = op_expr__fn_find(id, len);
		if (fn == NULL) {
			perr(p, off, "unknown function %.*s", (int)(len > 40 ? 40 : len), id);
			return NULL;
		}
		if (!next(p))
			return NULL;
		return parse_call(p, fn, off);
	}
#define IS(w) (len == sizeof(w) - 1 && memcmp(id, w, len) == 0)
	if (IS("true") || IS("false")) {
		n = const_new(p, cJSON_CreateBool(IS("true")), off);
	} else if (IS("null")) {
		n = const_new(p, cJSON_CreateNull(), off);
	} else if (IS("message") || IS("globals") || IS("metadata")) {
		n = node_new(p, OP_N_ROOT, off);
		if (n)
			n->root = IS("message")   ? OP_ROOT_MESSAGE
			          : IS("globals") ? OP_ROOT_GLOBALS
			                          : OP_ROOT_METADATA;
	} else {
		perr(p, off,
		     "unknown name '%.*s' (expected message, globals, metadata, true, false, null "
		     "or a function call)",
		     (int)(len > 40 ? 40 : len), id);
		return NULL;
	}
#undef IS
	if (n && !next(p))
		goto fail;
	return n;
fail:
	op_expr__node_free(n);
	return NULL;
}

/* Appends one path segment to n, turning n into a path node if needed. */
static struct op_node *add_seg(struct parser *p, struct op_node *n, struct op_seg *seg, size_t off)
{
	if (n->kind != OP_N_PATH) {
		struct op_node *pn = node_new(p, OP_N_PATH, off);
		if (pn == NULL)
			return NULL;
		pn->p.base = n;
		pn->col = n->col;
		if (!height_ok(p, pn, n->depth)) {
			pn->p.base = NULL;
			op_expr__node_free(pn);
			return NULL;
		}
		n = pn;
	} else if (n->p.n >= OP_EXPR_MAX_ARGS) {
		perr(p, off, "path too long (limit %d segments)", OP_EXPR_MAX_ARGS);
		return NULL;
	}
	struct op_seg *s = op_realloc(n->p.segs, (n->p.n + 1) * sizeof(*s));
	if (s == NULL) {
		nomem(p);
		if (n->p.n == 0) {
			n->p.base = NULL;
			op_expr__node_free(n);
		}
		return NULL;
	}
	n->p.segs = s;
	s[n->p.n++] = *seg;
	return n;
}

static struct op_node *parse_postfix(struct parser *p)
{
	struct op_node *n = parse_primary(p);
	while (n && (p->tok == T_DOT || p->tok == T_LB)) {
		size_t off = p->tstart;
		struct op_seg seg = {0};
		if (p->tok == T_DOT) {
			if (!next(p))
				goto fail;
			if (p->tok != T_IDENT) {
				char d[48];
				tok_desc(p, d, sizeof(d));
				perr(p, p->tstart, "expected a name after '.', found %s", d);
				goto fail;
			}
			seg.kind = OP_SEG_KEY;
			seg.key = op_strndup(p->src + p->tstart, p->tlen);
			if (seg.key == NULL) {
				nomem(p);
				goto fail;
			}
		} else {
			if (!next(p))
				goto fail;
			struct op_node *ix = parse_expr(p);
			if (ix == NULL)
				goto fail;
			if (p->tok != T_RB) {
				char d[48];
				tok_desc(p, d, sizeof(d));
				perr(p, p->tstart,
				     "expected ']' to close '[' at column %u, found %s",
				     col_of(off), d);
				op_expr__node_free(ix);
				goto fail;
			}
			if (ix->kind == OP_N_CONST && cJSON_IsString(ix->k.v)) {
				seg.kind = OP_SEG_KEY;
				seg.key = ix->k.v->valuestring;
				ix->k.v->valuestring = NULL;
				op_expr__node_free(ix);
			} else if (ix->kind == OP_N_CONST && cJSON_IsNumber(ix->k.v)) {
				double d = ix->k.v->valuedouble;
				op_expr__node_free(ix);
				if (d != floor(d) || fabs(d) > 1e15) {
					perr(p, off + 1, "index must be an integer");
					goto fail;
				}
				seg.kind = OP_SEG_INDEX;
				seg.idx = (long)d;
			} else if (ix->kind == OP_N_CONST) {
				op_expr__node_free(ix);
				perr(p, off + 1, "index must be a number or a string");
				goto fail;
			} else {
				seg.kind = OP_SEG_DYN;
				seg.expr = ix;
			}
		}
		unsigned dd = seg.expr ? seg.expr->depth : 0;
		struct op_node *r = add_seg(p, n, &seg, off);
		if (r == NULL) {
			op_free(seg.key);
			op_expr__node_free(seg.expr);
			goto fail;
		}
		n = r;
		if (!height_ok(p, n, dd))
			goto fail;
		if (!next(p))
			goto fail;
	}
	return n;
fail:
	op_expr__node_free(n);
	return NULL;
}

static struct op_node *parse_unary(struct parser *p)
{
	if (p->tok != T_BANG && p->tok != T_MINUS)
		return parse_postfix(p);
	size_t off = p->tstart;
	int kind = p->tok == T_BANG ? OP_N_NOT : OP_N_NEG;
	if (!enter(p) || !next(p))
		return NULL;
	struct op_node *a = parse_unary(p);
	p->depth--;
	if (a == NULL)
		return NULL;
	if (kind == OP_N_NEG && a->kind == OP_N_CONST && cJSON_IsNumber(a->k.v)) {
		/* Fold "-5" so that it is a literal (e.g. an index). */
		double d = -a->k.v->valuedouble;
		cJSON_SetNumberHelper(a->k.v, d);
		op_expr__xv_of(&a->k.x, a->k.v);
		a->col = col_of(off);
		return a;
	}
	struct op_node *n = node_new(p, kind, off);
	if (n == NULL) {
		op_expr__node_free(a);
		return NULL;
	}
	n->a = a;
	if (!height_ok(p, n, a->depth)) {
		op_expr__node_free(n);
		return NULL;
	}
	return n;
}

/* Operator of token t at precedence level lvl, or -1. */
static int binop_at(int t, int lvl)
{
	switch (lvl) {
	case 0:
		return t == T_QQ ? OP_B_COALESCE : -1;
	case 1:
		return t == T_OR ? OP_B_OR : -1;
	case 2:
		return t == T_AND ? OP_B_AND : -1;
	case 3:
		return t == T_EQ ? OP_B_EQ : t == T_NE ? OP_B_NE : -1;
	case 4:
		return t == T_LT   ? OP_B_LT
		       : t == T_LE ? OP_B_LE
		       : t == T_GT ? OP_B_GT
		       : t == T_GE ? OP_B_GE
		                   : -1;
	case 5:
		return t == T_PLUS ? OP_B_ADD : t == T_MINUS ? OP_B_SUB : -1;
	case 6:
		return t == T_STAR    ? OP_B_MUL
		       : t == T_SLASH ? OP_B_DIV
		       : t == T_PCT   ? OP_B_MOD
		                      : -1;
	default:
		return -1;
	}
}

#define N_LEVELS 7

static struct op_node *parse_level(struct parser *p, int lvl)
{
	if (lvl == N_LEVELS)
		return parse_unary(p);
	struct op_node *first = parse_level(p, lvl + 1);
	if (first == NULL)
		return NULL;
	int op = binop_at(p->tok, lvl);
	if (op < 0)
		return first;
	struct op_node *n = node_new(p, OP_N_CHAIN, first->col - 1);
	if (n == NULL) {
		op_expr__node_free(first);
		return NULL;
	}
	if (!push_ptr(p, (void ***)&n->c.items, &n->c.n, first)) {
		op_expr__node_free(first);
		goto fail;
	}
	if (!height_ok(p, n, first->depth))
		goto fail;
	while (op >= 0) {
		/* ops[] is kept as long as items[]; ops[0] is unused. */
		uint8_t *ops = op_realloc(n->c.ops, n->c.n + 1);
		if (ops == NULL) {
			nomem(p);
			goto fail;
		}
		n->c.ops = ops;
		ops[n->c.n] = (uint8_t)op;
		if (!next(p))
			goto fail;
		struct op_node *b = parse_level(p, lvl + 1);
		if (b == NULL)
			goto fail;
		if (!push_ptr(p, (void ***)&n->c.items, &n->c.n, b)) {
			op_expr__node_free(b);
			goto fail;
		}
		if (!height_ok(p, n, b->depth))
			goto fail;
		op = binop_at(p->tok, lvl);
	}
	return n;
fail:
	op_expr__node_free(n);
	return NULL;
}

static struct op_node *parse_expr(struct parser *p)
{
	if (!enter(p))
		return NULL;
	struct op_node *n = parse_level(p, 0);
	p->depth--;
	return n;
}

/* ---- templates ---- */

static bool add_part(struct op_expr *e, struct parser *p, char *text, size_t len,
                     struct op_node *node)
{
	struct op_expr_part *v = op_realloc(e->parts, (e->n + 1) * sizeof(*v));
	if (v == NULL) {
		nomem(p);
		return false;
	}
	e->parts = v;
	v[e->n].text = text;
	v[e->n].len = len;
	v[e->n].node = node;
	e->n++;
	return true;
}

static bool flush_text(struct op_expr *e, struct parser *p, struct op_buf *b)
{
	if (b->len == 0)
		return true;
	size_t len = b->len;
	char *t = op_buf_take(b);
	if (t == NULL) {
		nomem(p);
		return false;
	}
	if (!add_part(e, p, t, len, NULL)) {
		op_free(t);
		return false;
	}
	return true;
}

bool op_expr_has_code(const char *s)
{
	return s != NULL && strstr(s, "{{") != NULL;
}

const char *op_expr_source(const struct op_expr *e)
{
	return e->src;
}

void op_expr_free(struct op_expr *e)
{
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->n; i++) {
		op_free(e->parts[i].text);
		op_expr__node_free(e->parts[i].node);
	}
	op_free(e->parts);
	cJSON_Delete(e->konst);
	op_free(e->src);
	op_free(e);
}

op_err op_expr_compile(const char *src, struct op_expr **out, char *err, size_t errlen)
{
	struct parser p = {.src = src, .err = err, .errlen = errlen};
	struct op_buf text;
	struct op_expr *e = NULL;
	op_buf_init(&text, OP_EXPR_MAX_SRC);
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	size_t srclen = strlen(src);
	if (srclen > OP_EXPR_MAX_SRC) {
		perr(&p, 0, "template longer than %u bytes", OP_EXPR_MAX_SRC);
		goto out;
	}
	e = op_calloc(1, sizeof(*e));
	if (e == NULL || (e->src = op_strndup(src, srclen)) == NULL) {
		nomem(&p);
		goto out;
	}
	size_t i = 0;
	size_t nexpr = 0;
	while (src[i]) {
		const char *open = strstr(src + i, "{{");
		size_t stop = open ? (size_t)(open - src) : srclen;
		/* Backslashes right before "{{": pairs are one literal backslash; an odd one
		 * escapes the braces. */
		size_t nbs = 0;
		while (nbs < stop - i && src[stop - 1 - nbs] == '\\')
			nbs++;
		size_t plain = open ? stop - nbs : stop;
		op_err be = op_buf_add(&text, src + i, plain - i);
		for (size_t k = 0; be == OP_OK && open && k < nbs / 2; k++)
			be = op_buf_addc(&text, '\\');
		if (be != OP_OK) {
			nomem(&p);
			goto out;
		}
		if (open == NULL)
			break;
		if (nbs % 2 == 1) {
			if (op_buf_add(&text, "{{", 2) != OP_OK) {
				nomem(&p);
				goto out;
			}
			i = stop + 2;
			continue;
		}
		if (!flush_text(e, &p, &text))
			goto out;
		p.pos = stop + 2;
		if (!next(&p))
			goto out;
		struct op_node *n = parse_expr(&p);
		if (n == NULL)
			goto out;
		if (p.tok != T_CLOSE) {
			char d[48];
			tok_desc(&p, d, sizeof(d));
			perr(&p, p.tstart, "expected '}}' to close '{{' at column %u, found %s",
			     col_of(stop), d);
			op_expr__node_free(n);
			goto out;
		}
		op_free(p.str);
		p.str = NULL;
		if (!add_part(e, &p, NULL, 0, n)) {
			op_expr__node_free(n);
			goto out;
		}
		nexpr++;
		i = p.pos;
		if (stop == 0 && src[i] == '\0' && e->n == 1)
			e->whole = true;
	}
	if (!flush_text(e, &p, &text))
		goto out;
	if (nexpr == 0) {
		/* Constant: one string node returned borrowed by every evaluation. */
		cJSON *k = cJSON_CreateString(e->n ? e->parts[0].text : "");
		if (k == NULL) {
			nomem(&p);
			goto out;
		}
		e->konst = k;
	}
out:
	op_free(p.str);
	op_buf_fini(&text);
	if (p.rc != OP_OK) {
		op_expr_free(e);
		return p.rc;
	}
	*out = e;
	return OP_OK;
}

/* ---- function lookup ---- */

static const struct op_expr__fn *const fn_tables[] = {
    op_expr__fns_string, op_expr__fns_num,    op_expr__fns_json,
    op_expr__fns_date,   op_expr__fns_crypto, op_expr__fns_regex,
};

const struct op_expr__fn *op_expr__fn_find(const char *name, size_t len)
{
	for (size_t t = 0; t < sizeof(fn_tables) / sizeof(fn_tables[0]); t++) {
		for (const struct op_expr__fn *f = fn_tables[t]; f->name; f++) {
			if (strncasecmp(f->name, name, len) == 0 && f->name[len] == '\0')
				return f;
		}
	}
	return NULL;
}
