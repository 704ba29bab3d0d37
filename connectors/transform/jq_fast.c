/*
 * The transform step's fast path (jq_fast.h).
 *
 * Most transform programs only reshape a message: paths, literals, object
 * and array construction, a map over an array, arithmetic and comparisons.
 * For those, Debian's libjq 1.6 costs far more than the work: W1's program
 * (tests/bench/bench_jq.c) takes 12.5 us in libjq alone and another 6 us to
 * convert the message into jq values and the result back, where reading the
 * cJSON message directly takes a small fraction of that.
 *
 * The subset, in jq 1.6's grammar and precedence:
 *   .  .name  ."name"  .[]  .["name"]  .[N]  (N a non-negative integer)
 *   numbers, strings (with interpolation), true, false, null
 *   $globals  $metadata  ( )  [ ]  { name: ..., "name": ..., name, "name" }
 *   |  ,  //  or  and  == != < <= > >=  + - * /
 *   if ... then ... elif ... else ... end
 *   add length not empty type tostring ascii_downcase ascii_upcase
 *   keys keys_unsorted to_entries first last min max sort unique floor
 *   sqrt tonumber any all values nulls booleans numbers strings arrays
 *   objects iterables scalars
 *   map(f) select(f) has(f) startswith(f) endswith(f) ltrimstr(f)
 *   rtrimstr(f) join(f) split(f)
 * A program with anything else (definitions, `as`, reduce, try, `?`,
 * slices, formats, other builtins) is not taken. tostring and interpolation
 * write scalars as libjq does; arrays and objects there are left to libjq.
 *
 * A run gives up (and the caller runs libjq, so the answer is libjq's)
 * wherever this evaluator's answer could differ from libjq's:
 * - a jq error: a path on a value that has none, arithmetic or an order
 *   comparison this file does not implement for those types, `.[]` on a
 *   scalar, a division by zero, a non-finite result;
 * - an expression that gives other than one value where an operator, an
 *   object value, an interpolation or the whole program needs one;
 * - an input jq.c's conversion would refuse or change: nesting past
 *   OP_JQ_DEPTH_MAX, a raw value, invalid UTF-8 (libjq replaces it), a
 *   duplicate key (libjq keeps the last), a non-finite number (printed as
 *   the largest double on libjq's side);
 * - an output past the size or depth jq.c's conversion allows.
 * Programs are pure, so a run given up has no effect.
 *
 * Values are cJSON nodes. A value is either borrowed (part of the input, a
 * literal of the program, a static constant, or kept for the run) or owned:
 * new, attached nowhere, held by one list slot, and moved into the object or
 * array built from it. Reading an owned value as input to another
 * expression keeps it to the end of the run, since the results may point
 * into it.
 */
#include "connectors/transform/jq_fast.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/b64.h"
#include "agent/core/buf.h"
#include "agent/core/utf8.h"
#include "connectors/transform/jq.h"

/* Nesting of the program's own expressions, so the parser's recursion is bounded. */
#define PARSE_DEPTH_MAX 200
/* Objects with more keys than this are not checked for duplicates: the run gives up. */
#define DUP_CHECK_MAX 64

/* ---- the program ---- */

enum nk {
	N_ID,      /* . */
	N_FIELD,   /* a.key */
	N_INDEX,   /* a[idx] */
	N_ITER,    /* a[] */
	N_LIT,     /* lit */
	N_GLOBALS, /* $globals */
	N_META,    /* $metadata */
	N_PIPE,    /* a | b */
	N_COMMA,   /* a, b */
	N_ALT,     /* a // b */
	N_OR,      /* a or b */
	N_AND,     /* a and b */
	N_CMP,     /* a op b */
	N_ARITH,   /* a op b */
	N_ARRAY,   /* [a] */
	N_OBJECT,  /* {ents} */
	N_IF,      /* if a then b else c end */
	N_CALL,    /* op, on . */
	N_CALL1,   /* op(a), on . */
	N_MAP,     /* map(a) */
	N_SELECT,  /* select(a) */
	N_INTERP,  /* "text\(val)text...": ents, the last one's val NULL */
};

enum op {
	OP_EQ,
	OP_NE,
	OP_LT,
	OP_LE,
	OP_GT,
	OP_GE,
	OP_ADD,
	OP_SUB,
	OP_MUL,
	OP_DIV,
};

enum fn {
	FN_ADD,
	FN_LENGTH,
	FN_NOT,
	FN_EMPTY,
	FN_TYPE,
	FN_TOSTRING,
	FN_DOWNCASE,
	FN_UPCASE,
	FN_KEYS,
	FN_KEYS_UNSORTED,
	FN_TO_ENTRIES,
	FN_FIRST,
	FN_LAST,
	FN_MIN,
	FN_MAX,
	FN_SORT,
	FN_UNIQUE,
	FN_FLOOR,
	FN_SQRT,
	FN_TONUMBER,
	FN_ANY,
	FN_ALL,
	/* select(type ...) and select(. != null), by the kinds they keep */
	FN_VALUES,
	FN_NULLS,
	FN_BOOLEANS,
	FN_NUMBERS,
	FN_STRINGS,
	FN_ARRAYS,
	FN_OBJECTS,
	FN_ITERABLES,
	FN_SCALARS,
	/* with one argument, N_CALL1 */
	FN_HAS,
	FN_STARTSWITH,
	FN_ENDSWITH,
	FN_LTRIMSTR,
	FN_RTRIMSTR,
	FN_JOIN,
	FN_SPLIT,
};

struct entry {
	char *key;
	struct node *val;
};

struct node {
	enum nk k;
	int op;     /* enum op, enum fn, or the index of N_INDEX */
	char *key;  /* N_FIELD */
	cJSON *lit; /* N_LIT */
	struct node *a, *b, *c;
	struct entry *ents; /* N_OBJECT */
	size_t nents;
};

struct op_jqf {
	struct node *root;
};

static void node_free(struct node *n)
{
	if (n == NULL)
		return;
	node_free(n->a);
	node_free(n->b);
	node_free(n->c);
	for (size_t i = 0; i < n->nents; i++) {
		op_free(n->ents[i].key);
		node_free(n->ents[i].val);
	}
	op_free(n->ents);
	op_free(n->key);
	cJSON_Delete(n->lit);
	op_free(n);
}

/* ---- tokens ---- */

enum tok {
	T_END,
	T_BAD, /* anything outside the subset */
	T_DOT,
	T_FIELD, /* .name */
	T_STR,
	T_STR_PART, /* a string's text up to an interpolation */
	T_NUM,
	T_IDENT,
	T_VAR, /* $name */
	T_PIPE,
	T_COMMA,
	T_ALT, /* // */
	T_EQ,
	T_NE,
	T_LT,
	T_LE,
	T_GT,
	T_GE,
	T_PLUS,
	T_MINUS,
	T_STAR,
	T_SLASH,
	T_LPAREN,
	T_RPAREN,
	T_LBRACK,
	T_RBRACK,
	T_LBRACE,
	T_RBRACE,
	T_COLON,
	T_SEMI,
};

struct parser {
	const char *p; /* after the current token */
	enum tok t;    /* the current token */
	const char *s; /* its name (T_FIELD without the dot, T_IDENT, T_VAR) */
	size_t n;      /* its length */
	char *str;     /* T_STR: the decoded string (NUL-terminated), owned */
	double num;    /* T_NUM */
	int depth;
};

static bool ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool ident_char(char c)
{
	return ident_start(c) || (c >= '0' && c <= '9');
}

static bool digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * A string literal from p (after the quote, or after an interpolation's
 * closing parenthesis): T_STR up to the closing quote, T_STR_PART up to an
 * interpolation's \(, or T_BAD.
 */
static enum tok lex_string(struct parser *ps, const char *p)
{
	size_t cap = 16, len = 0;
	char *b = op_malloc(cap);
	if (b == NULL)
		return T_BAD;
	for (;;) {
		unsigned char ch = (unsigned char)*p++;
		char enc[4];
		size_t en = 1;
		if (ch == '"')
			break;
		if (ch < 0x20)
			goto bad; /* the end of the text, or a control character */
		enc[0] = (char)ch;
		if (ch == '\\') {
			switch (*p++) {
			case '"':
				enc[0] = '"';
				break;
			case '\\':
				enc[0] = '\\';
				break;
			case '/':
				enc[0] = '/';
				break;
			case 'b':
				enc[0] = '\b';
				break;
			case 'f':
				enc[0] = '\f';
				break;
			case 'n':
				enc[0] = '\n';
				break;
			case 'r':
				enc[0] = '\r';
				break;
			case 't':
				enc[0] = '\t';
				break;
			case 'u': {
				unsigned cp = 0;
				for (int i = 0; i < 4; i++) {
					int h = op_hex_value(p[i]);
					if (h < 0)
						goto bad;
					cp = cp << 4 | (unsigned)h;
				}
				p += 4;
				/* NUL cannot be in a cJSON string; surrogates are libjq's. */
				if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
					goto bad;
				if (cp < 0x80) {
					enc[0] = (char)cp;
				} else if (cp < 0x800) {
					enc[0] = (char)(0xC0 | cp >> 6);
					enc[1] = (char)(0x80 | (cp & 0x3F));
					en = 2;
				} else {
					enc[0] = (char)(0xE0 | cp >> 12);
					enc[1] = (char)(0x80 | (cp >> 6 & 0x3F));
					enc[2] = (char)(0x80 | (cp & 0x3F));
					en = 3;
				}
				break;
			}
			case '(': /* an interpolation: the text so far, then the parser */
				b[len] = '\0';
				if (!op_utf8_valid(b, len))
					goto bad;
				ps->p = p;
				ps->str = b;
				return T_STR_PART;
			default:
				goto bad; /* an escape jq refuses */
			}
		}
		if (len + en + 1 > cap) {
			char *nb = op_realloc(b, cap * 2);
			if (nb == NULL)
				goto bad;
			b = nb;
			cap *= 2;
		}
		memcpy(b + len, enc, en);
		len += en;
	}
	b[len] = '\0';
	if (!op_utf8_valid(b, len))
		goto bad;
	ps->p = p;
	ps->str = b;
	return T_STR;
bad:
	op_free(b);
	return T_BAD;
}

/*
 * A number: [0-9]+(\.[0-9]*)?|\.[0-9]+, then an exponent. That is jq 1.7's
 * rule; 1.6's lexer takes any run of digits and dots, but the texts where
 * the two differ (1.2.3, ..5) do not compile in 1.6.
 */
static enum tok lex_number(struct parser *ps, const char *start)
{
	const char *p = start;
	while (digit(*p))
		p++;
	if (*p == '.') {
		p++;
		while (digit(*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		const char *q = p + 1;
		if (*q == '+' || *q == '-')
			q++;
		if (digit(*q)) {
			while (digit(*q))
				q++;
			p = q;
		}
	}
	char buf[64];
	size_t n = (size_t)(p - start);
	if (n >= sizeof(buf))
		return T_BAD;
	memcpy(buf, start, n);
	buf[n] = '\0';
	char *end;
	double d = strtod(buf, &end);
	if (end != buf + n || !isfinite(d))
		return T_BAD; /* not all read: a locale with another decimal point */
	ps->num = d;
	ps->p = p;
	return T_NUM;
}

/* The tokens of one character, and what each is. */
static const char singles[] = ",()[]{}:;";
static const enum tok single_tok[] = {T_COMMA,  T_LPAREN, T_RPAREN, T_LBRACK, T_RBRACK,
                                      T_LBRACE, T_RBRACE, T_COLON,  T_SEMI};
/* The operators that may be followed by '=': what each is alone and with
 * it. T_BAD: outside the subset (=, +=, -=, *= assign) or not jq (! alone). */
static const char eq_ops[] = "=!<>+-*";
static const enum tok eq_tok[][2] = {{T_BAD, T_EQ},  {T_BAD, T_NE},   {T_LT, T_LE},
                                     {T_GT, T_GE},   {T_PLUS, T_BAD}, {T_MINUS, T_BAD},
                                     {T_STAR, T_BAD}};

/* Reads the next token into ps->t. */
static void next(struct parser *ps)
{
	const char *p = ps->p;
	op_free(ps->str);
	ps->str = NULL;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (*p != '#')
			break;
		while (*p != '\0' && *p != '\n' && *p != '\r')
			p++;
	}
	ps->s = p;
	ps->n = 0;
	enum tok t;
	switch (*p) {
	case '\0':
		t = T_END;
		ps->p = p;
		break;
	case '.':
		if (digit(p[1])) {
			t = lex_number(ps, p);
		} else if (ident_start(p[1])) {
			const char *q = p + 1;
			while (ident_char(*q))
				q++;
			ps->s = p + 1;
			ps->n = (size_t)(q - p - 1);
			ps->p = q;
			t = T_FIELD;
		} else {
			t = p[1] == '.' ? T_BAD : T_DOT; /* .. is recurse */
			ps->p = p + 1;
		}
		break;
	case '"':
		t = lex_string(ps, p + 1);
		break;
	case '$':
		if (!ident_start(p[1])) {
			t = T_BAD;
			break;
		}
		ps->s = ++p;
		while (ident_char(*p))
			p++;
		ps->n = (size_t)(p - ps->s);
		ps->p = p;
		t = (p[0] == ':' && p[1] == ':') ? T_BAD : T_VAR;
		break;
	case '|':
		t = p[1] == '=' ? T_BAD : T_PIPE;
		ps->p = p + 1;
		break;
	case '/':
		if (p[1] == '/')
			t = p[2] == '=' ? T_BAD : T_ALT;
		else
			t = p[1] == '=' ? T_BAD : T_SLASH;
		ps->p = p + (p[1] == '/' ? 2 : 1);
		break;
	default: {
		const char *one = *p != '\0' ? strchr(singles, *p) : NULL;
		const char *op = *p != '\0' ? strchr(eq_ops, *p) : NULL;
		if (one != NULL) {
			t = single_tok[one - singles];
			ps->p = p + 1;
		} else if (op != NULL) {
			bool eq = p[1] == '=';
			t = eq_tok[op - eq_ops][eq];
			ps->p = p + 1 + eq;
		} else if (digit(*p)) {
			t = lex_number(ps, p);
		} else if (ident_start(*p)) {
			const char *q = p;
			while (ident_char(*q))
				q++;
			ps->n = (size_t)(q - p);
			ps->p = q;
			t = (q[0] == ':' && q[1] == ':') ? T_BAD : T_IDENT;
		} else {
			t = T_BAD; /* % ? @ ... */
		}
		break;
	}
	}
	ps->t = t;
}

static bool is_word(const struct parser *ps, const char *w)
{
	size_t n = strlen(w);
	return ps->t == T_IDENT && ps->n == n && memcmp(ps->s, w, n) == 0;
}

static struct node *mk(enum nk k, struct node *a, struct node *b)
{
	struct node *n = op_calloc(1, sizeof(*n));
	if (n == NULL) {
		node_free(a);
		node_free(b);
		return NULL;
	}
	n->k = k;
	n->a = a;
	n->b = b;
	return n;
}

/* A binary node of a and b, or NULL (and both freed) when either is NULL. */
static struct node *bin(enum nk k, int op, struct node *a, struct node *b)
{
	if (a == NULL || b == NULL) {
		node_free(a);
		node_free(b);
		return NULL;
	}
	struct node *n = mk(k, a, b);
	if (n != NULL)
		n->op = op;
	return n;
}

static struct node *lit(cJSON *c)
{
	if (c == NULL)
		return NULL;
	struct node *n = mk(N_LIT, NULL, NULL);
	if (n == NULL)
		cJSON_Delete(c);
	else
		n->lit = c;
	return n;
}

static struct node *field(struct node *target, const char *key, size_t len)
{
	if (target == NULL)
		return NULL;
	char *k = op_malloc(len + 1);
	if (k == NULL) {
		node_free(target);
		return NULL;
	}
	struct node *n = mk(N_FIELD, target, NULL); /* frees target on failure */
	if (n == NULL) {
		op_free(k);
		return NULL;
	}
	memcpy(k, key, len);
	k[len] = '\0';
	n->key = k;
	return n;
}

static struct node *pipe_(struct parser *ps);

static bool expect(struct parser *ps, enum tok t)
{
	if (ps->t != t)
		return false;
	next(ps);
	return true;
}

/*
 * Each level of the tree being parsed counts against PARSE_DEPTH_MAX, so the
 * recursion of parsing, running and freeing a program is bounded. A function
 * that adds levels gives them back when it returns.
 */
static bool deeper(struct parser *ps, int *added)
{
	(*added)++;
	return ++ps->depth <= PARSE_DEPTH_MAX;
}

/* Postfix parts after a term: .name ."name" [] ["name"] [N]. */
static struct node *suffixes(struct parser *ps, struct node *n)
{
	int added = 0;
	while (n != NULL) {
		if (!deeper(ps, &added)) {
			node_free(n);
			n = NULL;
			break;
		}
		if (ps->t == T_FIELD) {
			n = field(n, ps->s, ps->n);
			next(ps);
		} else if (ps->t == T_DOT) {
			next(ps);
			if (ps->t != T_STR) {
				node_free(n);
				return NULL;
			}
			n = field(n, ps->str, strlen(ps->str));
			next(ps);
		} else if (ps->t == T_LBRACK) {
			next(ps);
			if (ps->t == T_RBRACK) {
				n = mk(N_ITER, n, NULL);
			} else if (ps->t == T_STR) {
				n = field(n, ps->str, strlen(ps->str));
				next(ps);
			} else if (ps->t == T_NUM && ps->num >= 0 && ps->num <= INT_MAX &&
			           ps->num == floor(ps->num)) {
				int idx = (int)ps->num;
				n = mk(N_INDEX, n, NULL);
				if (n != NULL)
					n->op = idx;
				next(ps);
			} else {
				node_free(n);
				return NULL;
			}
			if (n != NULL && !expect(ps, T_RBRACK)) {
				node_free(n);
				return NULL;
			}
		} else {
			break;
		}
	}
	ps->depth -= added;
	return n;
}

static const struct {
	const char *name;
	enum fn fn;
} builtins[] = {
    {"add", FN_ADD},
    {"length", FN_LENGTH},
    {"not", FN_NOT},
    {"empty", FN_EMPTY},
    {"type", FN_TYPE},
    {"tostring", FN_TOSTRING},
    {"ascii_downcase", FN_DOWNCASE},
    {"ascii_upcase", FN_UPCASE},
    {"keys", FN_KEYS},
    {"keys_unsorted", FN_KEYS_UNSORTED},
    {"to_entries", FN_TO_ENTRIES},
    {"first", FN_FIRST},
    {"last", FN_LAST},
    {"min", FN_MIN},
    {"max", FN_MAX},
    {"sort", FN_SORT},
    {"unique", FN_UNIQUE},
    {"floor", FN_FLOOR},
    {"sqrt", FN_SQRT},
    {"tonumber", FN_TONUMBER},
    {"any", FN_ANY},
    {"all", FN_ALL},
    {"values", FN_VALUES},
    {"nulls", FN_NULLS},
    {"booleans", FN_BOOLEANS},
    {"numbers", FN_NUMBERS},
    {"strings", FN_STRINGS},
    {"arrays", FN_ARRAYS},
    {"objects", FN_OBJECTS},
    {"iterables", FN_ITERABLES},
    {"scalars", FN_SCALARS},
};

/* Builtins of one argument: name(a). */
static const struct {
	const char *name;
	enum fn fn;
} builtins1[] = {
    {"has", FN_HAS},           {"startswith", FN_STARTSWITH}, {"endswith", FN_ENDSWITH},
    {"ltrimstr", FN_LTRIMSTR}, {"rtrimstr", FN_RTRIMSTR},     {"join", FN_JOIN},
    {"split", FN_SPLIT},
};

/* if ... then ... (elif ... then ...)* else ... end, after `if` or `elif`. */
static struct node *if_rest(struct parser *ps)
{
	int added = 0;
	if (!deeper(ps, &added)) {
		ps->depth -= added;
		return NULL;
	}
	struct node *cond = pipe_(ps);
	if (cond == NULL || !is_word(ps, "then")) {
		node_free(cond);
		return NULL;
	}
	next(ps);
	struct node *then = pipe_(ps);
	struct node *els = NULL;
	if (then != NULL && is_word(ps, "elif")) {
		next(ps);
		els = if_rest(ps);
	} else if (then != NULL && is_word(ps, "else")) {
		next(ps);
		els = pipe_(ps);
		if (els != NULL && !is_word(ps, "end")) {
			node_free(els);
			els = NULL;
		}
		if (els != NULL)
			next(ps);
	}
	ps->depth -= added;
	struct node *n = bin(N_IF, 0, cond, then);
	if (n == NULL || els == NULL) {
		node_free(n);
		node_free(els);
		return NULL;
	}
	n->c = els;
	return n;
}

static struct node *term(struct parser *ps);

/*
 * Which operator of one level of the grammar the current token is: the
 * node's kind and operator, or false.
 */
typedef bool (*op_fn)(const struct parser *ps, enum nk *k, int *op);

static bool op_pipe(const struct parser *ps, enum nk *k, int *op)
{
	*k = N_PIPE;
	*op = 0;
	return ps->t == T_PIPE;
}

static bool op_mul(const struct parser *ps, enum nk *k, int *op)
{
	*k = N_ARITH;
	*op = ps->t == T_STAR ? OP_MUL : OP_DIV;
	return ps->t == T_STAR || ps->t == T_SLASH;
}

static bool op_sum(const struct parser *ps, enum nk *k, int *op)
{
	*k = N_ARITH;
	*op = ps->t == T_PLUS ? OP_ADD : OP_SUB;
	return ps->t == T_PLUS || ps->t == T_MINUS;
}

static bool op_and(const struct parser *ps, enum nk *k, int *op)
{
	*k = N_AND;
	*op = 0;
	return is_word(ps, "and");
}

static bool op_or(const struct parser *ps, enum nk *k, int *op)
{
	*k = N_OR;
	*op = 0;
	return is_word(ps, "or");
}

static bool op_comma(const struct parser *ps, enum nk *k, int *op)
{
	*k = N_COMMA;
	*op = 0;
	return ps->t == T_COMMA;
}

/* operand (operator operand)*, left-associative, the operators is_op takes. */
static struct node *chain(struct parser *ps, struct node *(*operand)(struct parser *), op_fn is_op)
{
	int added = 0, op;
	enum nk k;
	struct node *n = operand(ps);
	while (n != NULL && is_op(ps, &k, &op)) {
		if (!deeper(ps, &added)) {
			node_free(n);
			n = NULL;
			break;
		}
		next(ps);
		n = bin(k, op, n, operand(ps));
	}
	ps->depth -= added;
	return n;
}

/* A value in an object: terms joined by | (jq's ExpD, without its unary minus). */
static struct node *obj_value(struct parser *ps)
{
	return chain(ps, term, op_pipe);
}

/* {key: value, "key": value, key, "key"}, after the brace. */
static struct node *object(struct parser *ps)
{
	struct node *n = mk(N_OBJECT, NULL, NULL);
	size_t cap = 0;
	if (n == NULL)
		return NULL;
	if (ps->t == T_RBRACE) {
		next(ps);
		return n;
	}
	for (;;) {
		const char *k;
		size_t klen;
		if (ps->t == T_IDENT) {
			k = ps->s;
			klen = ps->n;
		} else if (ps->t == T_STR) {
			k = ps->str;
			klen = strlen(ps->str);
		} else {
			break;
		}
		if (n->nents == cap) {
			size_t nc = cap ? cap * 2 : 8;
			struct entry *ne = op_realloc(n->ents, nc * sizeof(*ne));
			if (ne == NULL)
				break;
			n->ents = ne;
			cap = nc;
		}
		struct entry *e = &n->ents[n->nents];
		e->val = NULL;
		e->key = op_malloc(klen + 1);
		if (e->key == NULL)
			break;
		memcpy(e->key, k, klen);
		e->key[klen] = '\0';
		n->nents++;
		next(ps);
		if (ps->t == T_COLON) {
			next(ps);
			e->val = obj_value(ps);
		} else {
			e->val = field(mk(N_ID, NULL, NULL), e->key, klen);
		}
		if (e->val == NULL)
			break;
		if (ps->t == T_RBRACE) {
			next(ps);
			return n;
		}
		if (ps->t != T_COMMA)
			break;
		next(ps);
	}
	node_free(n);
	return NULL;
}

/* "text\(f)text...", from its first part (the current token). */
static struct node *interp(struct parser *ps)
{
	struct node *n = mk(N_INTERP, NULL, NULL);
	size_t cap = 0;
	if (n == NULL)
		return NULL;
	for (;;) {
		enum tok t = ps->t;
		if (n->nents == cap) {
			size_t nc = cap ? cap * 2 : 4;
			struct entry *ne = op_realloc(n->ents, nc * sizeof(*ne));
			if (ne == NULL)
				break;
			n->ents = ne;
			cap = nc;
		}
		struct entry *e = &n->ents[n->nents++];
		e->key = ps->str; /* the text before the next interpolation, or the last */
		e->val = NULL;
		ps->str = NULL;
		if (t == T_STR) {
			next(ps);
			return n;
		}
		next(ps);
		e->val = pipe_(ps);
		if (e->val == NULL || ps->t != T_RPAREN)
			break;
		/* The string goes on after the parenthesis. */
		ps->t = lex_string(ps, ps->p);
		if (ps->t != T_STR && ps->t != T_STR_PART)
			break;
	}
	node_free(n);
	return NULL;
}

/* f in map(f), select(f) or a builtin's name(f), after the name. */
static struct node *call1(struct parser *ps, enum nk k)
{
	if (!expect(ps, T_LPAREN))
		return NULL;
	struct node *a = pipe_(ps);
	if (a == NULL || !expect(ps, T_RPAREN)) {
		node_free(a);
		return NULL;
	}
	return mk(k, a, NULL);
}

static struct node *primary(struct parser *ps)
{
	struct node *n;
	switch (ps->t) {
	case T_DOT:
		next(ps);
		n = mk(N_ID, NULL, NULL);
		if (n != NULL && ps->t == T_STR) {
			n = field(n, ps->str, strlen(ps->str));
			next(ps);
		}
		return n;
	case T_FIELD:
		n = field(mk(N_ID, NULL, NULL), ps->s, ps->n);
		next(ps);
		return n;
	case T_NUM:
		n = lit(cJSON_CreateNumber(ps->num));
		next(ps);
		return n;
	case T_STR:
		n = lit(cJSON_CreateString(ps->str));
		next(ps);
		return n;
	case T_VAR:
		if (ps->n == 7 && memcmp(ps->s, "globals", 7) == 0)
			n = mk(N_GLOBALS, NULL, NULL);
		else if (ps->n == 8 && memcmp(ps->s, "metadata", 8) == 0)
			n = mk(N_META, NULL, NULL);
		else
			return NULL;
		next(ps);
		return n;
	case T_LPAREN:
		next(ps);
		n = pipe_(ps);
		if (n != NULL && !expect(ps, T_RPAREN)) {
			node_free(n);
			n = NULL;
		}
		return n;
	case T_LBRACK:
		next(ps);
		if (ps->t == T_RBRACK) {
			next(ps);
			return lit(cJSON_CreateArray());
		}
		n = pipe_(ps);
		if (n != NULL && !expect(ps, T_RBRACK)) {
			node_free(n);
			n = NULL;
		}
		return n != NULL ? mk(N_ARRAY, n, NULL) : NULL;
	case T_LBRACE:
		next(ps);
		return object(ps);
	case T_STR_PART:
		return interp(ps);
	case T_IDENT:
		break;
	default:
		return NULL;
	}
	if (is_word(ps, "true") || is_word(ps, "false") || is_word(ps, "null")) {
		cJSON *c = is_word(ps, "null") ? cJSON_CreateNull()
		                               : cJSON_CreateBool(is_word(ps, "true"));
		next(ps);
		return lit(c);
	}
	if (is_word(ps, "if")) {
		next(ps);
		return if_rest(ps);
	}
	if (is_word(ps, "map")) {
		next(ps);
		return call1(ps, N_MAP);
	}
	if (is_word(ps, "select")) {
		next(ps);
		return call1(ps, N_SELECT);
	}
	for (size_t i = 0; i < sizeof(builtins1) / sizeof(builtins1[0]); i++) {
		if (!is_word(ps, builtins1[i].name))
			continue;
		next(ps);
		if (ps->t != T_LPAREN)
			return NULL; /* not the builtin of that name */
		n = call1(ps, N_CALL1);
		if (n != NULL)
			n->op = (int)builtins1[i].fn;
		return n;
	}
	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
		if (!is_word(ps, builtins[i].name))
			continue;
		next(ps);
		if (ps->t == T_LPAREN)
			return NULL; /* not the builtin of that name */
		n = mk(N_CALL, NULL, NULL);
		if (n != NULL)
			n->op = (int)builtins[i].fn;
		return n;
	}
	return NULL;
}

/* A term with its suffixes (jq's Term). */
static struct node *term(struct parser *ps)
{
	int added = 0;
	struct node *n = NULL;
	if (deeper(ps, &added))
		n = suffixes(ps, primary(ps));
	ps->depth -= added;
	return n;
}

static struct node *mul(struct parser *ps)
{
	return chain(ps, term, op_mul);
}

static struct node *sum(struct parser *ps)
{
	return chain(ps, mul, op_sum);
}

static struct node *compare(struct parser *ps)
{
	struct node *n = sum(ps);
	int op;
	switch (ps->t) {
	case T_EQ:
		op = OP_EQ;
		break;
	case T_NE:
		op = OP_NE;
		break;
	case T_LT:
		op = OP_LT;
		break;
	case T_LE:
		op = OP_LE;
		break;
	case T_GT:
		op = OP_GT;
		break;
	case T_GE:
		op = OP_GE;
		break;
	default:
		return n;
	}
	if (n == NULL)
		return NULL;
	next(ps);
	/* The comparisons do not associate: a second one is jq's syntax error. */
	return bin(N_CMP, op, n, sum(ps));
}

static struct node *and_chain(struct parser *ps)
{
	return chain(ps, compare, op_and);
}

static struct node *or_chain(struct parser *ps)
{
	return chain(ps, and_chain, op_or);
}

static struct node *alt(struct parser *ps)
{
	int added = 0;
	struct node *n = NULL;
	if (deeper(ps, &added)) {
		n = or_chain(ps);
		if (n != NULL && ps->t == T_ALT) {
			next(ps);
			n = bin(N_ALT, 0, n, alt(ps)); /* right-associative */
		}
	}
	ps->depth -= added;
	return n;
}

static struct node *comma(struct parser *ps)
{
	return chain(ps, alt, op_comma);
}

static struct node *pipe_(struct parser *ps)
{
	int added = 0;
	struct node *n = NULL;
	if (deeper(ps, &added)) {
		n = comma(ps);
		if (n != NULL && ps->t == T_PIPE) {
			next(ps);
			n = bin(N_PIPE, 0, n, pipe_(ps));
		}
	}
	ps->depth -= added;
	return n;
}

struct op_jqf *op_jqf_compile(const char *program)
{
	struct parser ps = {.p = program};
	if (program == NULL)
		return NULL;
	next(&ps);
	struct node *root = pipe_(&ps);
	bool whole = ps.t == T_END;
	op_free(ps.str);
	if (root == NULL || !whole) {
		node_free(root);
		return NULL;
	}
	struct op_jqf *f = op_calloc(1, sizeof(*f));
	if (f == NULL) {
		node_free(root);
		return NULL;
	}
	f->root = root;
	return f;
}

void op_jqf_free(struct op_jqf *f)
{
	if (f == NULL)
		return;
	node_free(f->root);
	op_free(f);
}

/* ---- values ---- */

static cJSON k_null = {.type = cJSON_NULL};
static cJSON k_false = {.type = cJSON_False};
static cJSON k_true = {.type = cJSON_True};
static cJSON k_types[] = {
    {.type = cJSON_String, .valuestring = (char *)"null"},
    {.type = cJSON_String, .valuestring = (char *)"boolean"},
    {.type = cJSON_String, .valuestring = (char *)"number"},
    {.type = cJSON_String, .valuestring = (char *)"string"},
    {.type = cJSON_String, .valuestring = (char *)"array"},
    {.type = cJSON_String, .valuestring = (char *)"object"},
};

struct val {
	const cJSON *c;
	bool own; /* new, attached nowhere, held only here */
};

/* A list of values; small ones stay in the list itself. */
struct vl {
	struct val *v;
	size_t n, cap;
	struct val in[2];
};

struct run {
	cJSON **keep; /* owned values read as input: freed at the end */
	size_t nkeep, capkeep;
	const cJSON *globals;
	const cJSON *metadata;
};

static int kind(const cJSON *c)
{
	return c->type & 0xFF;
}

static bool truthy(const cJSON *c)
{
	return kind(c) != cJSON_NULL && kind(c) != cJSON_False;
}

static const cJSON *boolean(bool b)
{
	return b ? &k_true : &k_false;
}

static void vl_init(struct vl *l)
{
	l->v = l->in;
	l->n = 0;
	l->cap = sizeof(l->in) / sizeof(l->in[0]);
}

static void drop(struct val v)
{
	if (v.own)
		cJSON_Delete((cJSON *)v.c);
}

static void vl_clear(struct vl *l)
{
	for (size_t i = 0; i < l->n; i++)
		drop(l->v[i]);
	if (l->v != l->in)
		op_free(l->v);
	vl_init(l);
}

/* Appends c (an owned one is freed on failure). */
static bool push(struct vl *l, const cJSON *c, bool own)
{
	if (c == NULL)
		return false;
	if (l->n == l->cap) {
		size_t nc = l->cap * 2;
		struct val *nv = op_malloc(nc * sizeof(*nv));
		if (nv == NULL) {
			if (own)
				cJSON_Delete((cJSON *)c);
			return false;
		}
		memcpy(nv, l->v, l->n * sizeof(*nv));
		if (l->v != l->in)
			op_free(l->v);
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = (struct val){c, own};
	return true;
}

/* v to read as input to more of the program; NULL when memory ran out. */
static const cJSON *lend(struct run *r, struct val *v)
{
	if (!v->own)
		return v->c;
	if (r->nkeep == r->capkeep) {
		size_t nc = r->capkeep ? r->capkeep * 2 : 8;
		cJSON **nk = op_realloc(r->keep, nc * sizeof(*nk));
		if (nk == NULL)
			return NULL;
		r->keep = nk;
		r->capkeep = nc;
	}
	r->keep[r->nkeep++] = (cJSON *)v->c;
	v->own = false;
	return v->c;
}

/* A new copy of c, without the key c has as a member. */
static cJSON *copy(const cJSON *c)
{
	switch (c->type & 0xFF) {
	case cJSON_String:
		return cJSON_CreateString(c->valuestring);
	case cJSON_Number:
		return cJSON_CreateNumber(c->valuedouble);
	case cJSON_NULL:
		return cJSON_CreateNull();
	case cJSON_True:
	case cJSON_False:
		return cJSON_CreateBool((c->type & 0xFF) == cJSON_True);
	default:
		return cJSON_Duplicate(c, true);
	}
}

/* v as a node to attach: itself when owned (the slot gives it up), else a copy. */
static cJSON *take(struct val *v)
{
	cJSON *c;
	if (v->own) {
		c = (cJSON *)v->c;
		v->own = false;
		v->c = &k_null;
	} else {
		c = copy(v->c);
	}
	return c;
}

/* Whether two keys are the same; most keys differ in their first byte. */
static inline bool same_key(const char *a, const char *b)
{
	return a[0] == b[0] && strcmp(a, b) == 0;
}

/* Drops the key a copied member kept, so c can go into an array or under another key. */
static void unkey(cJSON *c)
{
	if (c->string != NULL && !(c->type & cJSON_StringIsConst))
		cJSON_free(c->string);
	c->string = NULL;
	c->type &= ~cJSON_StringIsConst;
}

/* Sets key in the new object o to c (consumed): in place when o has the key, as jq does. */
static bool obj_set(cJSON *o, const char *key, cJSON *c)
{
	if (c == NULL)
		return false;
	unkey(c);
	for (cJSON *ch = o->child; ch != NULL; ch = ch->next) {
		if (same_key(ch->string, key)) {
			/* The replaced member's key moves over, constant or not. */
			c->string = ch->string;
			c->type |= ch->type & cJSON_StringIsConst;
			ch->string = NULL;
			ch->type &= ~cJSON_StringIsConst;
			return cJSON_ReplaceItemViaPointer(o, ch, c);
		}
	}
	if (!cJSON_AddItemToObject(o, key, c)) {
		cJSON_Delete(c);
		return false;
	}
	return true;
}

static bool arr_add(cJSON *a, cJSON *c)
{
	if (c == NULL)
		return false;
	unkey(c);
	if (!cJSON_AddItemToArray(a, c)) {
		cJSON_Delete(c);
		return false;
	}
	return true;
}

/* Moves v into out; v no longer holds it. */
static bool move(struct vl *out, struct val *v)
{
	bool ok = push(out, v->c, v->own);
	v->own = false;
	v->c = &k_null;
	return ok;
}

/*
 * Whether jq.c's conversion would give libjq exactly c: nothing deeper than
 * OP_JQ_DEPTH_MAX, no raw value, valid UTF-8, no duplicate key, finite
 * numbers.
 */
static bool scan(const cJSON *c, int depth)
{
	switch (kind(c)) {
	case cJSON_NULL:
	case cJSON_False:
	case cJSON_True:
		return true;
	case cJSON_Number:
		return isfinite(c->valuedouble);
	case cJSON_String:
		return c->valuestring != NULL &&
		       op_utf8_valid(c->valuestring, strlen(c->valuestring));
	case cJSON_Array:
	case cJSON_Object:
		break;
	default:
		return false;
	}
	if (depth >= OP_JQ_DEPTH_MAX)
		return false;
	bool obj = kind(c) == cJSON_Object;
	size_t k = 0;
	for (const cJSON *ch = c->child; ch != NULL; ch = ch->next, k++) {
		if (obj) {
			if (ch->string == NULL || k >= DUP_CHECK_MAX ||
			    !op_utf8_valid(ch->string, strlen(ch->string)))
				return false;
			for (const cJSON *p = c->child; p != ch; p = p->next) {
				if (same_key(p->string, ch->string))
					return false;
			}
		}
		if (!scan(ch, depth + 1))
			return false;
	}
	return true;
}

/* jq's order of the kinds. */
static int rank(const cJSON *c)
{
	switch (kind(c)) {
	case cJSON_NULL:
		return 1;
	case cJSON_False:
		return 2;
	case cJSON_True:
		return 3;
	case cJSON_Number:
		return 4;
	case cJSON_String:
		return 5;
	case cJSON_Array:
		return 6;
	default:
		return 7;
	}
}

/* jq's jv_cmp of a and b as -1, 0 or 1; 2 for objects, which this file does not order. */
static int order(const cJSON *a, const cJSON *b)
{
	int ra = rank(a), rb = rank(b);
	if (ra != rb)
		return ra < rb ? -1 : 1;
	switch (kind(a)) {
	case cJSON_Number: {
		double x = a->valuedouble, y = b->valuedouble;
		return x < y ? -1 : x == y ? 0 : 1;
	}
	case cJSON_String: {
		size_t la = strlen(a->valuestring), lb = strlen(b->valuestring);
		int r = memcmp(a->valuestring, b->valuestring, la < lb ? la : lb);
		if (r != 0)
			return r < 0 ? -1 : 1;
		return la < lb ? -1 : la == lb ? 0 : 1;
	}
	case cJSON_Array:
		for (const cJSON *x = a->child, *y = b->child;; x = x->next, y = y->next) {
			if (x == NULL || y == NULL)
				return x == y ? 0 : x != NULL ? 1 : -1;
			int r = order(x, y);
			if (r != 0)
				return r;
		}
	case cJSON_Object:
		return 2;
	default:
		return 0;
	}
}

/* jq's `type` of c. */
static const cJSON *type_name(const cJSON *c)
{
	static const int by_rank[] = {0, 0, 1, 1, 2, 3, 4, 5};
	return &k_types[by_rank[rank(c)]];
}

static bool equal(const cJSON *a, const cJSON *b)
{
	if (rank(a) != rank(b))
		return false;
	switch (kind(a)) {
	case cJSON_Number:
		return a->valuedouble == b->valuedouble;
	case cJSON_String:
		return strcmp(a->valuestring, b->valuestring) == 0;
	case cJSON_Array: {
		const cJSON *x = a->child, *y = b->child;
		for (; x != NULL && y != NULL; x = x->next, y = y->next) {
			if (!equal(x, y))
				return false;
		}
		return x == NULL && y == NULL;
	}
	case cJSON_Object: {
		if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
			return false;
		for (const cJSON *x = a->child; x != NULL; x = x->next) {
			const cJSON *y = b->child;
			while (y != NULL && !same_key(y->string, x->string))
				y = y->next;
			if (y == NULL || !equal(x, y))
				return false;
		}
		return true;
	}
	default:
		return true;
	}
}

/* a op b into out, as jq 1.6's operators, for the types done here. */
static bool arith(int op, struct val *a, struct val *b, struct vl *out)
{
	int ka = kind(a->c), kb = kind(b->c);
	if (op == OP_ADD && ka == cJSON_NULL)
		return move(out, b);
	if (op == OP_ADD && kb == cJSON_NULL)
		return move(out, a);
	if (ka == cJSON_Number && kb == cJSON_Number) {
		double x = a->c->valuedouble, y = b->c->valuedouble, z;
		switch (op) {
		case OP_ADD:
			z = x + y;
			break;
		case OP_SUB:
			z = x - y;
			break;
		case OP_MUL:
			z = x * y;
			break;
		default:
			if (y == 0)
				return false; /* jq's error */
			z = x / y;
			break;
		}
		return isfinite(z) && push(out, cJSON_CreateNumber(z), true);
	}
	if (op != OP_ADD || ka != kb)
		return false;
	if (ka == cJSON_String) {
		size_t la = strlen(a->c->valuestring), lb = strlen(b->c->valuestring);
		char *s = op_malloc(la + lb + 1);
		if (s == NULL)
			return false;
		memcpy(s, a->c->valuestring, la);
		memcpy(s + la, b->c->valuestring, lb + 1);
		cJSON *c = cJSON_CreateString(s);
		op_free(s);
		return push(out, c, true);
	}
	if (ka != cJSON_Array && ka != cJSON_Object)
		return false;
	cJSON *c = take(a);
	if (c == NULL)
		return false;
	for (const cJSON *ch = b->c->child; ch != NULL; ch = ch->next) {
		cJSON *d = cJSON_Duplicate(ch, true);
		if (!(ka == cJSON_Array ? arr_add(c, d) : obj_set(c, ch->string, d))) {
			cJSON_Delete(c);
			return false;
		}
	}
	return push(out, c, true);
}

static bool ev(struct run *r, const struct node *n, const cJSON *in, struct vl *out);

/* The one value of n on in, into the empty list t. */
static bool ev1(struct run *r, const struct node *n, const cJSON *in, struct vl *t)
{
	return ev(r, n, in, t) && t->n == 1;
}

/* .key, .[i] or .[] of x. */
static bool path(const struct node *n, const cJSON *x, struct vl *out)
{
	int k = kind(x);
	if (n->k == N_ITER) {
		if (k != cJSON_Array && k != cJSON_Object)
			return false;
		for (const cJSON *ch = x->child; ch != NULL; ch = ch->next) {
			if (!push(out, ch, false))
				return false;
		}
		return true;
	}
	if (k == cJSON_NULL)
		return push(out, &k_null, false);
	if (n->k == N_FIELD) {
		if (k != cJSON_Object)
			return false;
		for (const cJSON *ch = x->child; ch != NULL; ch = ch->next) {
			if (same_key(ch->string, n->key))
				return push(out, ch, false);
		}
		return push(out, &k_null, false);
	}
	if (k != cJSON_Array)
		return false;
	const cJSON *ch = x->child;
	for (int i = 0; ch != NULL && i < n->op; i++)
		ch = ch->next;
	return push(out, ch != NULL ? ch : &k_null, false);
}

/*
 * libjq 1.6's text of the finite number d (jvp_dtoa_fmt): the shortest
 * digits that read back as d (the correctly rounded ones, as %.*e gives
 * them), plain unless the decimal point is more than 15 places past the
 * digits or 4 before them, else d.ddde+XX with at least two exponent digits.
 * out holds at least 48 bytes.
 *
 * false for a normal power of two that needs 16 digits or more: its
 * rounding interval is narrower below than above, and libjq's dtoa (mode 0)
 * may find a text one digit shorter in the wider side, which the correctly
 * rounded texts miss (2^-24 is 5.960464477539063e-08 in libjq). Below 16
 * digits the texts are too far apart for that.
 */
static bool jq_number(double d, char *out)
{
	char e[40], digits[20] = "0";
	int prec = 1;
	for (; prec <= 17; prec++) {
		snprintf(e, sizeof(e), "%.*e", prec - 1, d);
		if (strtod(e, NULL) == d)
			break;
	}
	int bexp;
	if (prec >= 16 && fabs(frexp(d, &bexp)) == 0.5 && fabs(d) >= DBL_MIN)
		return false;
	const char *p = e;
	char *o = out;
	if (*p == '-')
		*o++ = *p++;
	int nd = 0;
	for (; *p != 'e'; p++) {
		if (*p != '.')
			digits[nd++] = *p;
	}
	int decpt = (int)strtol(p + 1, NULL, 10) + 1;
	if (nd == 0)
		nd = 1; /* printf always writes a digit: for the analyzer */
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	if (d == 0)
		decpt = 1;
	if (decpt <= -4 || decpt > nd + 15) {
		*o++ = digits[0];
		if (nd > 1) {
			*o++ = '.';
			memcpy(o, digits + 1, (size_t)nd - 1);
			o += nd - 1;
		}
		int x = decpt - 1;
		o += snprintf(o, 8, "e%c%02d", x < 0 ? '-' : '+', x < 0 ? -x : x);
	} else if (decpt <= 0) {
		*o++ = '0';
		*o++ = '.';
		for (; decpt < 0; decpt++)
			*o++ = '0';
		memcpy(o, digits, (size_t)nd);
		o += nd;
	} else {
		for (int i = 0; i < nd; i++) {
			*o++ = digits[i];
			if (--decpt == 0 && i + 1 < nd)
				*o++ = '.';
		}
		for (; decpt > 0; decpt--)
			*o++ = '0';
	}
	*o = '\0';
	return true;
}

/* c as jq's tostring writes it, into tmp (48 bytes) if need be; NULL for
 * arrays and objects, and numbers jq_number leaves to libjq. */
static const char *to_text(const cJSON *c, char *tmp)
{
	switch (kind(c)) {
	case cJSON_String:
		return c->valuestring;
	case cJSON_Number:
		return jq_number(c->valuedouble, tmp) ? tmp : NULL;
	case cJSON_NULL:
		return "null";
	case cJSON_True:
		return "true";
	case cJSON_False:
		return "false";
	default:
		return NULL;
	}
}

/* jq's order of two strings: their bytes, then their lengths. */
static int str_order(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int r = memcmp(a, b, la < lb ? la : lb);
	if (r != 0)
		return r < 0 ? -1 : 1;
	return la < lb ? -1 : la == lb ? 0 : 1;
}

static int key_order(const void *a, const void *b)
{
	return str_order((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* The members of the array or object c, in their order, new; NULL when out of memory. */
static const cJSON **members(const cJSON *c, size_t *n)
{
	*n = (size_t)cJSON_GetArraySize(c);
	const cJSON **v = op_malloc((*n ? *n : 1) * sizeof(*v));
	if (v == NULL)
		return NULL;
	size_t i = 0;
	for (const cJSON *ch = c->child; ch != NULL; ch = ch->next)
		v[i++] = ch;
	return v;
}

/* Sorts v[0..n) by jq's order, keeping equal members in their order (jq's
 * sort is stable); false when two members cannot be ordered here (objects). */
static bool sort_stable(const cJSON **v, const cJSON **tmp, size_t n)
{
	if (n < 2)
		return true;
	size_t h = n / 2;
	if (!sort_stable(v, tmp, h) || !sort_stable(v + h, tmp, n - h))
		return false;
	size_t i = 0, j = h, o = 0;
	while (i < h && j < n) {
		int r = order(v[j], v[i]);
		if (r == 2)
			return false;
		tmp[o++] = r < 0 ? v[j++] : v[i++];
	}
	while (i < h)
		tmp[o++] = v[i++];
	while (j < n)
		tmp[o++] = v[j++];
	memcpy(v, tmp, n * sizeof(*v));
	return true;
}

/* An array of copies of v[0..n), each but those equal to the one before
 * when unique; pushed to out. */
static bool push_array_of(struct vl *out, const cJSON **v, size_t n, bool unique)
{
	cJSON *a = cJSON_CreateArray();
	bool ok = a != NULL;
	for (size_t i = 0; ok && i < n; i++) {
		if (unique && i > 0 && order(v[i], v[i - 1]) == 0)
			continue;
		ok = arr_add(a, copy(v[i]));
	}
	if (!ok) {
		cJSON_Delete(a);
		return false;
	}
	return push(out, a, true);
}

/* A JSON number text as jq's tonumber reads one: nothing around it. */
static bool number_text(const char *p)
{
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (digit(*p))
			p++;
	else
		return false;
	if (*p == '.') {
		if (!digit(*++p))
			return false;
		while (digit(*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!digit(*p))
			return false;
		while (digit(*p))
			p++;
	}
	return *p == '\0';
}

/* keys, keys_unsorted and to_entries of the object (or array) in. */
static bool keys_of(enum fn fn, const cJSON *in, struct vl *out)
{
	int k = kind(in);
	if (k == cJSON_Array && fn != FN_TO_ENTRIES) {
		cJSON *a = cJSON_CreateArray();
		bool ok = a != NULL;
		int len = cJSON_GetArraySize(in);
		for (int i = 0; ok && i < len; i++)
			ok = arr_add(a, cJSON_CreateNumber(i));
		if (!ok) {
			cJSON_Delete(a);
			return false;
		}
		return push(out, a, true);
	}
	if (k != cJSON_Object)
		return false;
	size_t n;
	const cJSON **v = members(in, &n);
	if (v == NULL)
		return false;
	if (fn == FN_KEYS)
		qsort(v, n, sizeof(*v), key_order);
	cJSON *a = cJSON_CreateArray();
	bool ok = a != NULL;
	for (size_t i = 0; ok && i < n; i++) {
		if (fn != FN_TO_ENTRIES) {
			ok = arr_add(a, cJSON_CreateString(v[i]->string));
			continue;
		}
		cJSON *e = cJSON_CreateObject();
		ok = e != NULL && obj_set(e, "key", cJSON_CreateString(v[i]->string)) &&
		     obj_set(e, "value", copy(v[i]));
		if (!ok)
			cJSON_Delete(e);
		else
			ok = arr_add(a, e);
	}
	op_free(v);
	if (!ok) {
		cJSON_Delete(a);
		return false;
	}
	return push(out, a, true);
}

/* min, max, sort and unique of the array in. */
static bool ordered(enum fn fn, const cJSON *in, struct vl *out)
{
	if (kind(in) != cJSON_Array)
		return false;
	size_t n;
	const cJSON **v = members(in, &n);
	if (v == NULL)
		return false;
	bool ok = true;
	if (fn == FN_MIN || fn == FN_MAX) {
		/* jq 1.6's minmax_by: the first least, or the last greatest. */
		const cJSON *best = n ? v[0] : &k_null;
		for (size_t i = 1; ok && i < n; i++) {
			int r = order(v[i], best);
			ok = r != 2;
			if (ok && (r < 0) == (fn == FN_MIN))
				best = v[i];
		}
		ok = ok && push(out, best, false);
	} else {
		const cJSON **tmp = op_malloc((n ? n : 1) * sizeof(*tmp));
		ok = tmp != NULL && sort_stable(v, tmp, n) &&
		     push_array_of(out, v, n, fn == FN_UNIQUE);
		op_free(tmp);
	}
	op_free(v);
	return ok;
}

/* Whether select(type ...) of fn keeps a value of kind k. */
static bool kind_kept(enum fn fn, int k)
{
	switch (fn) {
	case FN_VALUES:
		return k != cJSON_NULL;
	case FN_NULLS:
		return k == cJSON_NULL;
	case FN_BOOLEANS:
		return k == cJSON_True || k == cJSON_False;
	case FN_NUMBERS:
		return k == cJSON_Number;
	case FN_STRINGS:
		return k == cJSON_String;
	case FN_ARRAYS:
		return k == cJSON_Array;
	case FN_OBJECTS:
		return k == cJSON_Object;
	case FN_ITERABLES:
		return k == cJSON_Array || k == cJSON_Object;
	default: /* FN_SCALARS */
		return k != cJSON_Array && k != cJSON_Object;
	}
}

static bool call(const struct node *n, const cJSON *in, struct vl *out)
{
	int k = kind(in);
	switch ((enum fn)n->op) {
	case FN_ADD: {
		if (k != cJSON_Array && k != cJSON_Object)
			return false;
		struct val acc = {&k_null, false};
		bool ok = true;
		for (const cJSON *ch = in->child; ok && ch != NULL; ch = ch->next) {
			struct val e = {ch, false};
			struct vl u;
			vl_init(&u);
			ok = arith(OP_ADD, &acc, &e, &u) && u.n == 1;
			drop(acc);
			acc = (struct val){&k_null, false};
			if (ok) {
				acc = u.v[0];
				u.n = 0;
			}
			vl_clear(&u);
		}
		if (!ok) {
			drop(acc);
			return false;
		}
		return move(out, &acc);
	}
	case FN_LENGTH: {
		double len = 0;
		if (k == cJSON_Number) {
			len = fabs(in->valuedouble);
		} else if (k == cJSON_String) {
			for (const unsigned char *p = (const unsigned char *)in->valuestring; *p;
			     p++)
				len += (*p & 0xC0) != 0x80;
		} else if (k == cJSON_Array || k == cJSON_Object) {
			len = cJSON_GetArraySize(in);
		} else if (k != cJSON_NULL) {
			return false; /* jq: a boolean has no length */
		}
		return push(out, cJSON_CreateNumber(len), true);
	}
	case FN_NOT:
		return push(out, boolean(!truthy(in)), false);
	case FN_EMPTY:
		return true;
	case FN_TYPE:
		return push(out, type_name(in), false);
	case FN_TOSTRING: {
		char tmp[48];
		const char *t = to_text(in, tmp);
		if (t == NULL)
			return false; /* arrays and objects: jq's own JSON text */
		return k == cJSON_String ? push(out, in, false)
		                         : push(out, cJSON_CreateString(t), true);
	}
	case FN_DOWNCASE:
	case FN_UPCASE: {
		if (k != cJSON_String)
			return false;
		char *s = op_strdup(in->valuestring);
		if (s == NULL)
			return false;
		for (char *p = s; *p; p++) {
			if (n->op == FN_DOWNCASE && *p >= 'A' && *p <= 'Z')
				*p = (char)(*p + 32);
			else if (n->op == FN_UPCASE && *p >= 'a' && *p <= 'z')
				*p = (char)(*p - 32);
		}
		cJSON *c = cJSON_CreateString(s);
		op_free(s);
		return push(out, c, true);
	}
	case FN_KEYS:
	case FN_KEYS_UNSORTED:
	case FN_TO_ENTRIES:
		return keys_of((enum fn)n->op, in, out);
	case FN_FIRST:
	case FN_LAST: {
		if (k == cJSON_NULL)
			return push(out, &k_null, false);
		if (k != cJSON_Array)
			return false;
		const cJSON *c = in->child;
		while (n->op == FN_LAST && c != NULL && c->next != NULL)
			c = c->next;
		return push(out, c != NULL ? c : &k_null, false);
	}
	case FN_MIN:
	case FN_MAX:
	case FN_SORT:
	case FN_UNIQUE:
		return ordered((enum fn)n->op, in, out);
	case FN_FLOOR:
	case FN_SQRT: {
		if (k != cJSON_Number)
			return false;
		double d = n->op == FN_FLOOR ? floor(in->valuedouble) : sqrt(in->valuedouble);
		return isfinite(d) && push(out, cJSON_CreateNumber(d), true);
	}
	case FN_TONUMBER: {
		if (k == cJSON_Number)
			return push(out, in, false);
		if (k != cJSON_String || !number_text(in->valuestring))
			return false;
		double d = strtod(in->valuestring, NULL);
		return isfinite(d) && push(out, cJSON_CreateNumber(d), true);
	}
	case FN_ANY:
	case FN_ALL: {
		if (k != cJSON_Array && k != cJSON_Object)
			return false;
		bool all = n->op == FN_ALL, r = all;
		for (const cJSON *ch = in->child; ch != NULL && r == all; ch = ch->next)
			r = truthy(ch);
		return push(out, boolean(r), false);
	}
	case FN_VALUES:
	case FN_NULLS:
	case FN_BOOLEANS:
	case FN_NUMBERS:
	case FN_STRINGS:
	case FN_ARRAYS:
	case FN_OBJECTS:
	case FN_ITERABLES:
	case FN_SCALARS:
		return !kind_kept((enum fn)n->op, k) || push(out, in, false);
	default: /* the builtins of one argument come as N_CALL1 */
		return false;
	}
	return false;
}

/* join($x) of the array or object in, as jq 1.6 defines it: the members'
 * texts (null as "", strings as they are, numbers and booleans as JSON)
 * with x between them. */
static bool join(const cJSON *in, const char *x, struct vl *out)
{
	struct op_buf b;
	op_buf_init(&b, SIZE_MAX);
	bool ok = true;
	for (const cJSON *ch = in->child; ok && ch != NULL; ch = ch->next) {
		char tmp[48];
		int k = kind(ch);
		const char *t = k == cJSON_NULL ? "" : to_text(ch, tmp);
		ok = t != NULL && (ch == in->child || op_buf_adds(&b, x) == OP_OK) &&
		     op_buf_adds(&b, t) == OP_OK;
	}
	ok = ok && op_buf_addc(&b, '\0') == OP_OK && push(out, cJSON_CreateString(b.data), true);
	op_buf_fini(&b);
	return ok;
}

/* split($sep) of the string in by the string sep (not empty), as jq 1.6's
 * jv_string_split: "" gives [], a trailing sep a trailing "". */
static bool split(const char *in, const char *sep, struct vl *out)
{
	size_t len = strlen(in), sl = strlen(sep);
	cJSON *a = cJSON_CreateArray();
	bool ok = a != NULL;
	for (size_t p = 0; ok && p < len;) {
		const char *f = strstr(in + p, sep);
		size_t s = f != NULL ? (size_t)(f - in) : len;
		char *piece = op_malloc(s - p + 1);
		ok = piece != NULL;
		if (ok) {
			memcpy(piece, in + p, s - p);
			piece[s - p] = '\0';
			ok = arr_add(a, cJSON_CreateString(piece));
			op_free(piece);
		}
		if (ok && f != NULL && s + sl == len)
			ok = arr_add(a, cJSON_CreateString(""));
		p = f != NULL ? s + sl : len;
	}
	if (!ok) {
		cJSON_Delete(a);
		return false;
	}
	return push(out, a, true);
}

/* n's builtin of one argument, whose value is a, on in. */
static bool call_arg(const struct node *n, const cJSON *in, const cJSON *a, struct vl *out)
{
	int k = kind(in), ka = kind(a);
	bool strs = k == cJSON_String && ka == cJSON_String;
	size_t li = strs ? strlen(in->valuestring) : 0, la = strs ? strlen(a->valuestring) : 0;
	switch ((enum fn)n->op) {
	case FN_HAS:
		if (k == cJSON_Object && ka == cJSON_String)
			return push(out,
			            boolean(cJSON_GetObjectItemCaseSensitive(in, a->valuestring)),
			            false);
		if (k != cJSON_Array || ka != cJSON_Number || a->valuedouble < 0 ||
		    a->valuedouble >= INT_MAX || a->valuedouble != floor(a->valuedouble))
			return false;
		return push(out, boolean(a->valuedouble < cJSON_GetArraySize(in)), false);
	case FN_STARTSWITH:
	case FN_ENDSWITH: {
		if (!strs)
			return false; /* jq's error */
		size_t at = n->op == FN_STARTSWITH ? 0 : li - la;
		return push(
		    out, boolean(la <= li && memcmp(in->valuestring + at, a->valuestring, la) == 0),
		    false);
	}
	case FN_LTRIMSTR:
	case FN_RTRIMSTR: {
		bool left = n->op == FN_LTRIMSTR;
		if (!strs || la > li ||
		    memcmp(in->valuestring + (left ? 0 : li - la), a->valuestring, la) != 0)
			return push(out, in, false); /* jq: the input, unchanged */
		char *t = op_malloc(li - la + 1);
		if (t == NULL)
			return false;
		memcpy(t, in->valuestring + (left ? la : 0), li - la);
		t[li - la] = '\0';
		cJSON *c = cJSON_CreateString(t);
		op_free(t);
		return push(out, c, true);
	}
	case FN_JOIN:
		if ((k != cJSON_Array && k != cJSON_Object) || ka != cJSON_String)
			return false;
		return join(in, a->valuestring, out);
	case FN_SPLIT:
		if (!strs || la == 0)
			return false;
		return split(in->valuestring, a->valuestring, out);
	default:
		return false;
	}
}

static bool ev(struct run *r, const struct node *n, const cJSON *in, struct vl *out)
{
	struct vl t, u;
	bool ok = true;
	vl_init(&t);
	vl_init(&u);
	switch (n->k) {
	case N_ID:
		return push(out, in, false);
	case N_LIT:
		return push(out, n->lit, false);
	case N_GLOBALS:
		return push(out, r->globals != NULL ? r->globals : &k_null, false);
	case N_META:
		return push(out, r->metadata != NULL ? r->metadata : &k_null, false);
	case N_FIELD:
	case N_INDEX:
	case N_ITER:
		if (n->a->k == N_ID)
			return path(n, in, out);
		ok = ev(r, n->a, in, &t);
		for (size_t i = 0; ok && i < t.n; i++) {
			const cJSON *x = lend(r, &t.v[i]);
			ok = x != NULL && path(n, x, out);
		}
		break;
	case N_PIPE:
		ok = ev(r, n->a, in, &t);
		for (size_t i = 0; ok && i < t.n; i++) {
			const cJSON *x = lend(r, &t.v[i]);
			ok = x != NULL && ev(r, n->b, x, out);
		}
		break;
	case N_COMMA:
		return ev(r, n->a, in, out) && ev(r, n->b, in, out);
	case N_ALT: {
		size_t before = out->n;
		ok = ev(r, n->a, in, &t);
		for (size_t i = 0; ok && i < t.n; i++) {
			if (truthy(t.v[i].c))
				ok = move(out, &t.v[i]);
		}
		if (ok && out->n == before)
			ok = ev(r, n->b, in, out);
		break;
	}
	case N_AND:
	case N_OR:
		ok = ev(r, n->a, in, &t);
		for (size_t i = 0; ok && i < t.n; i++) {
			bool a = truthy(t.v[i].c);
			if (n->k == N_AND ? !a : a) {
				ok = push(out, boolean(a), false);
				continue;
			}
			ok = ev(r, n->b, in, &u);
			for (size_t j = 0; ok && j < u.n; j++)
				ok = push(out, boolean(truthy(u.v[j].c)), false);
			vl_clear(&u);
		}
		break;
	case N_CMP:
		ok = ev1(r, n->a, in, &t) && ev1(r, n->b, in, &u);
		if (ok && (n->op == OP_EQ || n->op == OP_NE)) {
			bool e = equal(t.v[0].c, u.v[0].c);
			ok = push(out, boolean(n->op == OP_EQ ? e : !e), false);
		} else if (ok) {
			int o = order(t.v[0].c, u.v[0].c);
			bool b = n->op == OP_LT   ? o < 0
			         : n->op == OP_LE ? o <= 0
			         : n->op == OP_GT ? o > 0
			                          : o >= 0;
			ok = o != 2 && push(out, boolean(b), false);
		}
		break;
	case N_ARITH:
		ok = ev1(r, n->a, in, &t) && ev1(r, n->b, in, &u) &&
		     arith(n->op, &t.v[0], &u.v[0], out);
		break;
	case N_ARRAY: {
		cJSON *a = NULL;
		ok = ev(r, n->a, in, &t) && (a = cJSON_CreateArray()) != NULL;
		for (size_t i = 0; ok && i < t.n; i++)
			ok = arr_add(a, take(&t.v[i]));
		if (ok)
			ok = push(out, a, true);
		else
			cJSON_Delete(a);
		break;
	}
	case N_OBJECT: {
		cJSON *o = cJSON_CreateObject();
		ok = o != NULL;
		for (size_t i = 0; ok && i < n->nents; i++) {
			ok = ev1(r, n->ents[i].val, in, &t) &&
			     obj_set(o, n->ents[i].key, take(&t.v[0]));
			vl_clear(&t);
		}
		if (ok)
			ok = push(out, o, true);
		else
			cJSON_Delete(o);
		break;
	}
	case N_IF:
		ok = ev(r, n->a, in, &t);
		for (size_t i = 0; ok && i < t.n; i++)
			ok = ev(r, truthy(t.v[i].c) ? n->b : n->c, in, out);
		break;
	case N_CALL:
		return call(n, in, out);
	case N_CALL1:
		ok = ev1(r, n->a, in, &t) && call_arg(n, in, t.v[0].c, out);
		break;
	case N_MAP: {
		int k = kind(in);
		cJSON *a = NULL;
		ok = (k == cJSON_Array || k == cJSON_Object) && (a = cJSON_CreateArray()) != NULL;
		for (const cJSON *ch = ok ? in->child : NULL; ok && ch != NULL; ch = ch->next) {
			ok = ev(r, n->a, ch, &t);
			for (size_t i = 0; ok && i < t.n; i++)
				ok = arr_add(a, take(&t.v[i]));
			vl_clear(&t);
		}
		if (ok)
			ok = push(out, a, true);
		else
			cJSON_Delete(a);
		break;
	}
	case N_INTERP: {
		struct op_buf b;
		op_buf_init(&b, SIZE_MAX);
		for (size_t i = 0; ok && i < n->nents; i++) {
			ok = op_buf_adds(&b, n->ents[i].key) == OP_OK;
			if (ok && n->ents[i].val != NULL) {
				char tmp[48];
				const char *v = NULL;
				ok = ev1(r, n->ents[i].val, in, &t) &&
				     (v = to_text(t.v[0].c, tmp)) != NULL &&
				     op_buf_adds(&b, v) == OP_OK;
				vl_clear(&t);
			}
		}
		ok = ok && op_buf_addc(&b, '\0') == OP_OK &&
		     push(out, cJSON_CreateString(b.data), true);
		op_buf_fini(&b);
		break;
	}
	case N_SELECT:
		ok = ev(r, n->a, in, &t);
		for (size_t i = 0; ok && i < t.n; i++) {
			if (truthy(t.v[i].c))
				ok = push(out, in, false);
		}
		break;
	}
	vl_clear(&t);
	vl_clear(&u);
	return ok;
}

static bool spend(size_t *budget, size_t n)
{
	if (n > *budget)
		return false;
	*budget -= n;
	return true;
}

/* Whether jq.c's conversion of libjq's result would accept c: its count of bytes and depth. */
static bool fits(const cJSON *c, int depth, size_t *budget)
{
	switch (kind(c)) {
	case cJSON_NULL:
	case cJSON_True:
		return spend(budget, 4);
	case cJSON_False:
		return spend(budget, 5);
	case cJSON_Number:
		return spend(budget, 8);
	case cJSON_String:
		return spend(budget, strlen(c->valuestring) + 2);
	case cJSON_Array:
		if (depth >= OP_JQ_DEPTH_MAX || !spend(budget, 2 + (size_t)cJSON_GetArraySize(c)))
			return false;
		break;
	default:
		if (depth >= OP_JQ_DEPTH_MAX || !spend(budget, 2))
			return false;
		break;
	}
	bool obj = kind(c) == cJSON_Object;
	for (const cJSON *ch = c->child; ch != NULL; ch = ch->next) {
		if (obj && !spend(budget, strlen(ch->string) + 4))
			return false;
		if (!fits(ch, depth + 1, budget))
			return false;
	}
	return true;
}

bool op_jqf_run(const struct op_jqf *f, const cJSON *in, const cJSON *globals,
                const cJSON *metadata, size_t output_max, cJSON **out)
{
	if (f == NULL || in == NULL || out == NULL || !scan(in, 0) ||
	    (globals != NULL && !scan(globals, 0)) || (metadata != NULL && !scan(metadata, 0)))
		return false;
	struct run r = {.globals = globals, .metadata = metadata};
	struct vl l;
	vl_init(&l);
	cJSON *res = NULL;
	if (ev(&r, f->root, in, &l)) {
		if (l.n == 0)
			res = cJSON_CreateNull();
		else if (l.n == 1)
			res = take(&l.v[0]);
	}
	vl_clear(&l);
	for (size_t i = 0; i < r.nkeep; i++)
		cJSON_Delete(r.keep[i]);
	op_free(r.keep);
	size_t budget = output_max;
	if (res == NULL || !fits(res, 0, &budget)) {
		cJSON_Delete(res);
		return false;
	}
	unkey(res);
	*out = res;
	return true;
}
