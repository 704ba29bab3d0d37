/*
 * Private to agent/expr: the syntax tree, the evaluation value type and the
 * function table shared by the parser (expr.c), the evaluator (eval.c), the
 * function libraries (fn_*.c) and templates (tmpl.c).
 *
 * Key invariant: a compiled tree is never written after compile returns,
 * except for the regex cache of MATCHES calls with a computed pattern, which
 * has its own mutex. Everything else an evaluation needs lives on its stack.
 */
#ifndef OP_EXPR_EXPR_INT_H
#define OP_EXPR_EXPR_INT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/buf.h"
#include "agent/core/err.h"
#include "agent/expr/expr.h"

/* Largest string or JSON text any value may become (bytes). */
#define OP_EXPR_MAX_OUT (16u << 20)
/* Most elements an array built by a function may have. */
#define OP_EXPR_MAX_ITEMS (1u << 20)
/* Nesting of the source (parentheses, calls, unary operators) and of the tree. */
#define OP_EXPR_MAX_DEPTH 64
/* Longest source text accepted by op_expr_compile (bytes). */
#define OP_EXPR_MAX_SRC (1u << 20)
/* Most arguments of one call, elements of one literal. */
#define OP_EXPR_MAX_ARGS 255
/* Deepest JSON value walked by TOJSON, ==, JSONPATH descent... */
#define OP_EXPR_JSON_DEPTH 1000

/*
 * A value during evaluation. Cheaper than a cJSON node: numbers and booleans
 * need no allocation and strings may be borrowed slices (TRIM and SUBSTRING
 * of a message field allocate nothing).
 *
 * STR: s/len, not NUL-terminated unless own. When own, s was allocated by
 *      op_malloc with len + 1 bytes and s[len] == '\0'.
 * JSON: j is an array or object (or raw); own says whether it is ours.
 * For NULL/BOOL/NUM/STR with own == false, j may name a borrowed node that
 * holds exactly this value, so a whole-value result can be returned borrowed.
 */
enum op_xv_kind { OP_XV_NULL, OP_XV_BOOL, OP_XV_NUM, OP_XV_STR, OP_XV_JSON };

struct op_xv {
	uint8_t kind;
	bool own;
	bool b;
	double n;
	const char *s;
	size_t len;
	cJSON *j;
};

/* Node kinds of the tree. */
enum op_node_kind {
	OP_N_CONST,  /* literal: k.v prebuilt, k.x a borrowed view of it */
	OP_N_ROOT,   /* message / globals / metadata */
	OP_N_PATH,   /* base followed by .key / [expr] segments */
	OP_N_CHAIN,  /* a run of binary operators of one precedence, left to right */
	OP_N_NOT,    /* !a */
	OP_N_NEG,    /* -a */
	OP_N_CALL,   /* FUNCTION(args) */
	OP_N_ARRAY,  /* [a, b] with at least one non-constant element */
	OP_N_OBJECT, /* {"k": a} with at least one non-constant value */
};

enum op_root { OP_ROOT_MESSAGE, OP_ROOT_GLOBALS, OP_ROOT_METADATA };

/* Binary operators, in a chain node. */
enum op_binop {
	OP_B_COALESCE,
	OP_B_OR,
	OP_B_AND,
	OP_B_EQ,
	OP_B_NE,
	OP_B_LT,
	OP_B_LE,
	OP_B_GT,
	OP_B_GE,
	OP_B_ADD,
	OP_B_SUB,
	OP_B_MUL,
	OP_B_DIV,
	OP_B_MOD,
};

enum op_seg_kind { OP_SEG_KEY, OP_SEG_INDEX, OP_SEG_DYN };

struct op_node;

struct op_seg {
	uint8_t kind;
	char *key;            /* OP_SEG_KEY, NUL-terminated */
	long idx;             /* OP_SEG_INDEX, negative counts from the end */
	struct op_node *expr; /* OP_SEG_DYN */
};

struct op_expr__fn;

struct op_node {
	uint8_t kind;
	uint8_t depth; /* height of this subtree, <= OP_EXPR_MAX_DEPTH */
	uint32_t col;  /* 1-based column in the source */
	union {
		struct {
			cJSON *v;
			struct op_xv x;
		} k;
		int root;
		struct {
			struct op_node *base;
			struct op_seg *segs;
			size_t n;
		} p;
		struct {
			struct op_node **items; /* n operands */
			uint8_t *ops; /* ops[i] joins items[i - 1] and items[i]; ops[0] unused */
			size_t n;
		} c;
		struct op_node *a; /* NOT, NEG */
		struct {
			const struct op_expr__fn *fn;
			struct op_node **args;
			size_t n;
			void *aux; /* prepared by fn->prepare, freed by fn->free_aux */
		} call;
		struct {
			struct op_node **items;
			char **keys; /* OBJECT only */
			size_t n;
		} l;
	};
};

/* One run of a template: literal text (node == NULL) or an expression. */
struct op_expr_part {
	char *text;
	size_t len;
	struct op_node *node;
};

struct op_expr {
	char *src;
	struct op_expr_part *parts;
	size_t n;
	bool whole;   /* exactly one expression and no text: the value is the result */
	cJSON *konst; /* no expression at all: the string result, returned borrowed */
};

/* Frees a tree (NULL is a no-op). */
void op_expr__node_free(struct op_node *n);

/* Per-evaluation state: the environment and where error text goes. */
struct op_expr__ctx {
	const struct op_expr_env *env;
	char *err;
	size_t errlen;
};

/*
 * A function. Eager functions get their evaluated arguments in argv (argc of
 * them), owned by the caller, which drops them afterwards; a function may
 * steal one (move it to *out and set the slot to null). Lazy functions get
 * argv == NULL and evaluate call->call.args themselves. On error *out must
 * be left null.
 */
typedef op_err (*op_expr__fn_call)(struct op_expr__ctx *c, const struct op_node *call,
                                   struct op_xv *argv, size_t argc, struct op_xv *out);
/*
 * Compile-time preparation of one call (literal arguments checked or
 * precompiled into call->call.aux). On error writes "column N: ..." to err
 * and returns OP_EPARSE or OP_ENOMEM.
 */
typedef op_err (*op_expr__fn_prepare)(struct op_node *call, char *err, size_t errlen);

#define OP_FN_VARIADIC 255

struct op_expr__fn {
	const char *name;
	uint8_t min, max;
	bool lazy;
	op_expr__fn_call call;
	op_expr__fn_prepare prepare; /* may be NULL */
	void (*free_aux)(void *aux); /* may be NULL */
};

/* Function tables, each ended by an entry with name NULL. */
extern const struct op_expr__fn op_expr__fns_string[];
extern const struct op_expr__fn op_expr__fns_num[];
extern const struct op_expr__fn op_expr__fns_json[];
extern const struct op_expr__fn op_expr__fns_date[];
extern const struct op_expr__fn op_expr__fns_crypto[];
extern const struct op_expr__fn op_expr__fns_regex[];

/* Looks a function up by name (case-insensitive); NULL if unknown. */
const struct op_expr__fn *op_expr__fn_find(const char *name, size_t len);

/* ---- eval.c ---- */

/* Writes "fmt..." into c->err and returns code. */
op_err op_expr__fail(struct op_expr__ctx *c, op_err code, const char *fmt, ...) OP_PRINTF(3, 4);
/* Writes "column N: fmt..." into err (compile errors) and returns OP_EPARSE. */
op_err op_expr__perr(char *err, size_t errlen, uint32_t col, const char *fmt, ...) OP_PRINTF(4, 5);
/* Evaluates one node into *out (null on error). */
op_err op_expr__eval(struct op_expr__ctx *c, const struct op_node *n, struct op_xv *out) OP_WUR;
/* Frees what x owns and makes it null. */
void op_expr__xv_drop(struct op_xv *x);
/* Moves *from to *to (to must be empty) and leaves from null. */
void op_expr__xv_move(struct op_xv *to, struct op_xv *from);
/* A borrowed view of a cJSON node (NULL reads as null). */
void op_expr__xv_of(struct op_xv *x, const cJSON *j);
/* Values that need no storage. */
void op_expr__xv_null(struct op_xv *x);
void op_expr__xv_num(struct op_xv *x, double n);
void op_expr__xv_bool(struct op_xv *x, bool b);
/* Takes ownership of buf (op_malloc'd, NUL at len) as a string value. */
void op_expr__xv_str_take(struct op_xv *x, char *buf, size_t len);
/* Takes ownership of an array or object node (or any node). */
void op_expr__xv_json_take(struct op_xv *x, cJSON *j);
/* An owned copy of bytes as a string; OP_ELIMIT past the output cap. */
op_err op_expr__xv_str_copy(struct op_expr__ctx *c, struct op_xv *x, const char *s,
                            size_t len) OP_WUR;
/* Converts x into a new cJSON node owned by the caller; x is emptied. */
op_err op_expr__xv_to_json(struct op_expr__ctx *c, struct op_xv *x, cJSON **out) OP_WUR;
/* Truthiness (see op_json_truthy). */
bool op_expr__xv_truthy(const struct op_xv *x);
/* Deep JSON equality. Returns 1, 0, or -1 when the values nest too deeply. */
int op_expr__xv_equal(const struct op_xv *a, const struct op_xv *b);
int op_expr__json_equal(const cJSON *a, const cJSON *b, int depth);
/* "null", "boolean", "number", "string", "array", "object". */
const char *op_expr__xv_type(const struct op_xv *x);
/*
 * Appends the text form of x: strings raw, numbers in shortest round-trip
 * form, booleans as true/false, null as nothing, arrays/objects compact JSON.
 */
op_err op_expr__xv_append_text(struct op_buf *b, const struct op_xv *x) OP_WUR;
/* Appends compact JSON of a node. OP_ELIMIT past the cap or too deep. */
op_err op_expr__json_append(struct op_buf *b, const cJSON *v, int depth) OP_WUR;
/* Appends JSON text of x. */
op_err op_expr__xv_append_json(struct op_buf *b, const struct op_xv *x) OP_WUR;
/* Shortest text that reads back as the same double; integers without ".0". */
size_t op_expr__num_format(double d, char *out, size_t outlen);

/*
 * Argument coercion for functions. Each reports "NAME: argument N: ..." on
 * failure. want_str makes x a string in place: null becomes "", booleans and
 * numbers their text; arrays and objects are an error.
 */
op_err op_expr__want_str(struct op_expr__ctx *c, const struct op_node *call, size_t i,
                         struct op_xv *x) OP_WUR;
op_err op_expr__want_num(struct op_expr__ctx *c, const struct op_node *call, size_t i,
                         const struct op_xv *x, double *out) OP_WUR;
/* An integral number in [lo, hi]. */
op_err op_expr__want_int(struct op_expr__ctx *c, const struct op_node *call, size_t i,
                         const struct op_xv *x, long lo, long hi, long *out) OP_WUR;
/* Translates a buffer error into the function's error text. */
op_err op_expr__buf_fail(struct op_expr__ctx *c, const struct op_node *call, op_err e);

/* True when arg i of call is a literal string; sets *s. */
bool op_expr__lit_str(const struct op_node *call, size_t i, const char **s);

/* ---- UTF-8 helpers (fn_string.c) ---- */

/* Number of code points (invalid bytes count one each). */
size_t op_expr__utf8_count(const char *s, size_t len);
/* Byte offset after skipping n code points from the start, clamped at len. */
size_t op_expr__utf8_skip(const char *s, size_t len, size_t n);
/* Writes code point cp as UTF-8 into o (room for 4 bytes); returns the length. */
size_t op_expr__utf8_put(char *o, unsigned long cp);
/*
 * Finishes a function's text result: on e == OP_OK moves b's content into
 * *out as an owned string; otherwise frees b and reports e as the function's
 * error (see op_expr__buf_fail). Returns e.
 */
op_err op_expr__buf_result(struct op_expr__ctx *c, const struct op_node *call, struct op_buf *b,
                           op_err e, struct op_xv *out) OP_WUR;

#endif
