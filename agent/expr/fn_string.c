/*
 * String functions of the expression language (CONCAT, SUBSTRING, UPPER,
 * FORMAT...) and the UTF-8 helpers the other function files share.
 *
 * Key invariant: strings are counted in code points, never in bytes, and no
 * function ever splits a valid UTF-8 sequence; bytes that are not valid
 * UTF-8 count as one code point each and are passed through unchanged.
 * Functions that only narrow a string (TRIM, SUBSTRING) return a slice of
 * their argument: borrowed when the argument was, else moved in place, so
 * they allocate nothing.
 */
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <wctype.h>

#include "agent/core/alloc.h"
#include "agent/core/utf8.h"
#include "agent/expr/expr_int.h"

/* ---- UTF-8 ---- */

/* Length of the code point at s: a valid sequence, or one byte. */
static size_t cp_len(const char *s, size_t len)
{
	if ((unsigned char)s[0] < 0x80)
		return 1;
	size_t n = op_utf8_valid_len((const unsigned char *)s, len);
	return n ? n : 1;
}

size_t op_expr__utf8_count(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; n++)
		i += cp_len(s + i, len - i);
	return n;
}

size_t op_expr__utf8_skip(const char *s, size_t len, size_t n)
{
	size_t i = 0;
	while (n-- > 0 && i < len)
		i += cp_len(s + i, len - i);
	return i;
}

/* Decodes the valid sequence of n bytes at s. */
static unsigned long cp_decode(const unsigned char *s, size_t n)
{
	if (n == 1)
		return s[0];
	unsigned long cp = s[0] & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
	for (size_t i = 1; i < n; i++)
		cp = (cp << 6) | (s[i] & 0x3F);
	return cp;
}

size_t op_expr__utf8_put(char *o, unsigned long cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Byte offset of code point index i (negative counts from the end), clamped. */
static size_t cp_offset(const char *s, size_t len, size_t count, long i)
{
	if (i < 0) {
		i += (long)count;
		if (i < 0)
			i = 0;
	}
	if ((size_t)i >= count)
		return len;
	return op_expr__utf8_skip(s, len, (size_t)i);
}

/* ---- shared result helpers ---- */

op_err op_expr__buf_result(struct op_expr__ctx *c, const struct op_node *call, struct op_buf *b,
                           op_err e, struct op_xv *out)
{
	if (e != OP_OK) {
		op_buf_fini(b);
		return op_expr__buf_fail(c, call, e);
	}
	size_t len = b->len;
	char *s = op_buf_take(b);
	if (s == NULL)
		return op_expr__buf_fail(c, call, OP_ENOMEM);
	op_expr__xv_str_take(out, s, len);
	return OP_OK;
}

/*
 * Makes *out the bytes [off, off + len) of the string x. A borrowed x gives a
 * borrowed slice; an owned one is moved and shifted in place.
 */
static void str_slice(struct op_xv *x, size_t off, size_t len, struct op_xv *out)
{
	if (!x->own) {
		op_expr__xv_null(out);
		out->kind = OP_XV_STR;
		out->s = x->s + off;
		out->len = len;
		/* j keeps naming a node only when the slice is the whole string. */
		out->j = off == 0 && len == x->len ? x->j : NULL;
		return;
	}
	char *buf = (char *)x->s;
	if (off)
		memmove(buf, buf + off, len);
	buf[len] = '\0';
	op_expr__xv_null(x);
	op_expr__xv_str_take(out, buf, len);
}

/* Converts every argument from first on to a string. */
static op_err want_strs(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t first, size_t argc)
{
	for (size_t i = first; i < argc; i++) {
		op_err e = op_expr__want_str(c, call, i, &argv[i]);
		if (e != OP_OK)
			return e;
	}
	return OP_OK;
}

/* ---- CONCAT, TOSTRING ---- */

static op_err fn_concat(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t argc, struct op_xv *out)
{
	if (argc == 1 && argv[0].kind == OP_XV_STR) {
		op_expr__xv_move(out, &argv[0]);
		return OP_OK;
	}
	struct op_buf b;
	op_buf_init(&b, OP_EXPR_MAX_OUT);
	op_err e = OP_OK;
	for (size_t i = 0; i < argc && e == OP_OK; i++)
		e = op_expr__xv_append_text(&b, &argv[i]);
	return op_expr__buf_result(c, call, &b, e, out);
}

static op_err fn_tostring(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                          size_t argc, struct op_xv *out)
{
	return fn_concat(c, call, argv, argc, out);
}

/* ---- LENGTH, SUBSTRING, TRIM ---- */

static op_err fn_length(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t argc, struct op_xv *out)
{
	(void)argc;
	op_err e = op_expr__want_str(c, call, 0, &argv[0]);
	if (e != OP_OK)
		return e;
	op_expr__xv_num(out, (double)op_expr__utf8_count(argv[0].s, argv[0].len));
	return OP_OK;
}

static op_err fn_substring(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                           size_t argc, struct op_xv *out)
{
	long start, end = 0;
	const long lim = (long)OP_EXPR_MAX_OUT;
	op_err e = op_expr__want_str(c, call, 0, &argv[0]);
	if (e == OP_OK)
		e = op_expr__want_int(c, call, 1, &argv[1], -lim, lim, &start);
	if (e == OP_OK && argc > 2 && argv[2].kind != OP_XV_NULL)
		e = op_expr__want_int(c, call, 2, &argv[2], -lim, lim, &end);
	if (e != OP_OK)
		return e;
	const char *s = argv[0].s;
	size_t len = argv[0].len;
	size_t count = op_expr__utf8_count(s, len);
	size_t a = cp_offset(s, len, count, start);
	size_t b = argc > 2 && argv[2].kind != OP_XV_NULL ? cp_offset(s, len, count, end) : len;
	if (b < a)
		b = a;
	str_slice(&argv[0], a, b - a, out);
	return OP_OK;
}

static bool is_space(unsigned char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static op_err trim_common(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                          struct op_xv *out, bool left, bool right)
{
	op_err e = op_expr__want_str(c, call, 0, &argv[0]);
	if (e != OP_OK)
		return e;
	const char *s = argv[0].s;
	size_t a = 0, b = argv[0].len;
	while (left && a < b && is_space((unsigned char)s[a]))
		a++;
	while (right && b > a && is_space((unsigned char)s[b - 1]))
		b--;
	str_slice(&argv[0], a, b - a, out);
	return OP_OK;
}

static op_err fn_trim(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                      size_t argc, struct op_xv *out)
{
	(void)argc;
	return trim_common(c, call, argv, out, true, true);
}

static op_err fn_ltrim(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                       size_t argc, struct op_xv *out)
{
	(void)argc;
	return trim_common(c, call, argv, out, true, false);
}

static op_err fn_rtrim(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                       size_t argc, struct op_xv *out)
{
	(void)argc;
	return trim_common(c, call, argv, out, false, true);
}

/* ---- UPPER, LOWER ---- */

static pthread_once_t case_once = PTHREAD_ONCE_INIT;
static locale_t case_loc; /* C.UTF-8 for Unicode case mapping; 0 = ASCII only */

static void case_init(void)
{
	case_loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static op_err change_case(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                          struct op_xv *out, bool upper)
{
	op_err e = op_expr__want_str(c, call, 0, &argv[0]);
	if (e != OP_OK)
		return e;
	const char *s = argv[0].s;
	size_t len = argv[0].len;
	bool ascii = true, same = true;
	for (size_t i = 0; i < len && ascii; i++) {
		unsigned char ch = (unsigned char)s[i];
		ascii = ch < 0x80;
		if (upper ? (ch >= 'a' && ch <= 'z') : (ch >= 'A' && ch <= 'Z'))
			same = false;
	}
	if (ascii && same) {
		op_expr__xv_move(out, &argv[0]);
		return OP_OK;
	}
	if (ascii) {
		/* An owned argument (a result of another function) is changed in place. */
		char *d = argv[0].own ? (char *)s : op_malloc(len + 1);
		if (d == NULL)
			return op_expr__buf_fail(c, call, OP_ENOMEM);
		for (size_t i = 0; i < len; i++) {
			char ch = s[i];
			if (upper && ch >= 'a' && ch <= 'z')
				ch = (char)(ch - 'a' + 'A');
			else if (!upper && ch >= 'A' && ch <= 'Z')
				ch = (char)(ch - 'A' + 'a');
			d[i] = ch;
		}
		d[len] = '\0';
		if (argv[0].own)
			op_expr__xv_null(&argv[0]); /* d is that buffer */
		op_expr__xv_str_take(out, d, len);
		return OP_OK;
	}
	pthread_once(&case_once, case_init);
	struct op_buf b;
	op_buf_init(&b, OP_EXPR_MAX_OUT);
	for (size_t i = 0; i < len && e == OP_OK;) {
		size_t n = op_utf8_valid_len((const unsigned char *)s + i, len - i);
		if (n == 0) {
			e = op_buf_addc(&b, s[i]);
			i++;
			continue;
		}
		unsigned long cp = cp_decode((const unsigned char *)s + i, n);
		unsigned long m = cp;
		if (cp < 0x80) {
			if (upper && cp >= 'a' && cp <= 'z')
				m = cp - 'a' + 'A';
			else if (!upper && cp >= 'A' && cp <= 'Z')
				m = cp - 'A' + 'a';
		} else if (case_loc != (locale_t)0) {
			m = upper ? towupper_l((wint_t)cp, case_loc)
			          : towlower_l((wint_t)cp, case_loc);
			if (m == 0 || m > 0x10FFFF || (m >= 0xD800 && m <= 0xDFFF))
				m = cp;
		}
		char tmp[4];
		e = op_buf_add(&b, tmp, op_expr__utf8_put(tmp, m));
		i += n;
	}
	return op_expr__buf_result(c, call, &b, e, out);
}

static op_err fn_upper(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                       size_t argc, struct op_xv *out)
{
	(void)argc;
	return change_case(c, call, argv, out, true);
}

static op_err fn_lower(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                       size_t argc, struct op_xv *out)
{
	(void)argc;
	return change_case(c, call, argv, out, false);
}

/* ---- REPLACE, SPLIT, JOIN ---- */

static const char *find_bytes(const char *h, size_t hl, const char *n, size_t nl)
{
	if (nl == 0)
		return h;
	return memmem(h, hl, n, nl);
}

static op_err fn_replace(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                         size_t argc, struct op_xv *out)
{
	op_err e = want_strs(c, call, argv, 0, argc);
	if (e != OP_OK)
		return e;
	if (argv[1].len == 0)
		return op_expr__fail(c, OP_EINVAL, "%s: argument 2: expected a non-empty string",
		                     call->call.fn->name);
	const char *s = argv[0].s, *end = s + argv[0].len;
	const char *hit = find_bytes(s, argv[0].len, argv[1].s, argv[1].len);
	if (hit == NULL) {
		op_expr__xv_move(out, &argv[0]);
		return OP_OK;
	}
	struct op_buf b;
	op_buf_init(&b, OP_EXPR_MAX_OUT);
	while (e == OP_OK && hit) {
		e = op_buf_add(&b, s, (size_t)(hit - s));
		if (e == OP_OK)
			e = op_buf_add(&b, argv[2].s, argv[2].len);
		s = hit + argv[1].len;
		hit = find_bytes(s, (size_t)(end - s), argv[1].s, argv[1].len);
	}
	if (e == OP_OK)
		e = op_buf_add(&b, s, (size_t)(end - s));
	return op_expr__buf_result(c, call, &b, e, out);
}

/* Appends a new string node holding s[0..len) to arr. */
static op_err push_str(cJSON *arr, const char *s, size_t len)
{
	char *d = op_strndup(s, len);
	if (d == NULL)
		return OP_ENOMEM;
	cJSON *v = cJSON_CreateNull();
	if (v == NULL) {
		op_free(d);
		return OP_ENOMEM;
	}
	v->type = cJSON_String;
	v->valuestring = d;
	cJSON_AddItemToArray(arr, v);
	return OP_OK;
}

static op_err fn_split(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                       size_t argc, struct op_xv *out)
{
	op_err e = want_strs(c, call, argv, 0, argc);
	if (e != OP_OK)
		return e;
	cJSON *arr = cJSON_CreateArray();
	if (arr == NULL)
		return op_expr__buf_fail(c, call, OP_ENOMEM);
	const char *s = argv[0].s, *end = s + argv[0].len;
	const char *sep = argv[1].s;
	size_t seplen = argv[1].len, n = 0;
	if (seplen == 0) {
		/* An empty separator splits into code points. */
		while (e == OP_OK && s < end) {
			size_t k = cp_len(s, (size_t)(end - s));
			e = ++n > OP_EXPR_MAX_ITEMS ? OP_ELIMIT : push_str(arr, s, k);
			s += k;
		}
	} else {
		for (;;) {
			const char *hit = memmem(s, (size_t)(end - s), sep, seplen);
			const char *stop = hit ? hit : end;
			e = ++n > OP_EXPR_MAX_ITEMS ? OP_ELIMIT
			                            : push_str(arr, s, (size_t)(stop - s));
			if (e != OP_OK || hit == NULL)
				break;
			s = hit + seplen;
		}
	}
	if (e != OP_OK) {
		cJSON_Delete(arr);
		if (e == OP_ELIMIT)
			return op_expr__fail(c, e, "%s: more than %u parts", call->call.fn->name,
			                     OP_EXPR_MAX_ITEMS);
		return op_expr__buf_fail(c, call, e);
	}
	op_expr__xv_json_take(out, arr);
	return OP_OK;
}

static op_err fn_join(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                      size_t argc, struct op_xv *out)
{
	if (argv[0].kind == OP_XV_NULL) {
		op_expr__xv_null(out);
		out->kind = OP_XV_STR;
		out->s = "";
		return OP_OK;
	}
	if (argv[0].kind != OP_XV_JSON || !cJSON_IsArray(argv[0].j))
		return op_expr__fail(c, OP_EINVAL, "%s: argument 1: expected an array, got %s",
		                     call->call.fn->name, op_expr__xv_type(&argv[0]));
	const char *sep = ",";
	size_t seplen = 1;
	if (argc > 1) {
		op_err e = op_expr__want_str(c, call, 1, &argv[1]);
		if (e != OP_OK)
			return e;
		sep = argv[1].s;
		seplen = argv[1].len;
	}
	struct op_buf b;
	op_buf_init(&b, OP_EXPR_MAX_OUT);
	op_err e = OP_OK;
	for (const cJSON *it = argv[0].j->child; it && e == OP_OK; it = it->next) {
		if (it != argv[0].j->child)
			e = op_buf_add(&b, sep, seplen);
		struct op_xv x;
		op_expr__xv_of(&x, it);
		if (e == OP_OK)
			e = op_expr__xv_append_text(&b, &x);
	}
	return op_expr__buf_result(c, call, &b, e, out);
}

/* ---- STARTSWITH, ENDSWITH, CONTAINS, INDEXOF ---- */

static op_err fn_startswith(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                            size_t argc, struct op_xv *out)
{
	op_err e = want_strs(c, call, argv, 0, argc);
	if (e != OP_OK)
		return e;
	op_expr__xv_bool(out, argv[1].len <= argv[0].len &&
	                          memcmp(argv[0].s, argv[1].s, argv[1].len) == 0);
	return OP_OK;
}

static op_err fn_endswith(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                          size_t argc, struct op_xv *out)
{
	op_err e = want_strs(c, call, argv, 0, argc);
	if (e != OP_OK)
		return e;
	op_expr__xv_bool(out,
	                 argv[1].len <= argv[0].len && memcmp(argv[0].s + argv[0].len - argv[1].len,
	                                                      argv[1].s, argv[1].len) == 0);
	return OP_OK;
}

/* CONTAINS(text, part) or CONTAINS(array, value) (deep equality). */
static op_err fn_contains(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                          size_t argc, struct op_xv *out)
{
	(void)argc;
	if (argv[0].kind == OP_XV_JSON && cJSON_IsArray(argv[0].j)) {
		bool found = false;
		for (const cJSON *it = argv[0].j->child; it && !found; it = it->next) {
			struct op_xv x;
			op_expr__xv_of(&x, it);
			int r = op_expr__xv_equal(&x, &argv[1]);
			if (r < 0)
				return op_expr__fail(c, OP_ELIMIT, "%s: values nest too deeply",
				                     call->call.fn->name);
			found = r == 1;
		}
		op_expr__xv_bool(out, found);
		return OP_OK;
	}
	op_err e = want_strs(c, call, argv, 0, 2);
	if (e != OP_OK)
		return e;
	op_expr__xv_bool(out, find_bytes(argv[0].s, argv[0].len, argv[1].s, argv[1].len) != NULL);
	return OP_OK;
}

static op_err fn_indexof(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                         size_t argc, struct op_xv *out)
{
	op_err e = want_strs(c, call, argv, 0, argc);
	if (e != OP_OK)
		return e;
	const char *hit = find_bytes(argv[0].s, argv[0].len, argv[1].s, argv[1].len);
	op_expr__xv_num(out, hit ? (double)op_expr__utf8_count(argv[0].s, (size_t)(hit - argv[0].s))
	                         : -1.0);
	return OP_OK;
}

/* ---- PADLEFT, PADRIGHT ---- */

static op_err pad(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                  size_t argc, struct op_xv *out, bool left)
{
	long width;
	const char *p = " ";
	size_t plen = 1;
	op_err e = op_expr__want_str(c, call, 0, &argv[0]);
	if (e == OP_OK)
		e = op_expr__want_int(c, call, 1, &argv[1], 0, 1000000, &width);
	if (e == OP_OK && argc > 2) {
		e = op_expr__want_str(c, call, 2, &argv[2]);
		if (e == OP_OK &&
		    (argv[2].len == 0 || cp_len(argv[2].s, argv[2].len) != argv[2].len))
			return op_expr__fail(c, OP_EINVAL,
			                     "%s: argument 3: expected one character, got \"%.*s\"",
			                     call->call.fn->name,
			                     (int)(argv[2].len > 20 ? 20 : argv[2].len), argv[2].s);
		p = argv[2].s;
		plen = argv[2].len;
	}
	if (e != OP_OK)
		return e;
	size_t have = op_expr__utf8_count(argv[0].s, argv[0].len);
	if (have >= (size_t)width) {
		op_expr__xv_move(out, &argv[0]);
		return OP_OK;
	}
	struct op_buf b;
	op_buf_init(&b, OP_EXPR_MAX_OUT);
	if (!left)
		e = op_buf_add(&b, argv[0].s, argv[0].len);
	for (size_t i = have; i < (size_t)width && e == OP_OK; i++)
		e = op_buf_add(&b, p, plen);
	if (left && e == OP_OK)
		e = op_buf_add(&b, argv[0].s, argv[0].len);
	return op_expr__buf_result(c, call, &b, e, out);
}

static op_err fn_padleft(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                         size_t argc, struct op_xv *out)
{
	return pad(c, call, argv, argc, out, true);
}

static op_err fn_padright(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                          size_t argc, struct op_xv *out)
{
	return pad(c, call, argv, argc, out, false);
}

/* ---- FORMAT ---- */

/*
 * FORMAT("{} of {}", a, b): "{}" takes the next argument, "{N}" argument N
 * (0 = the first after the format), "{:.D}" / "{N:.D}" a number with D
 * decimals; "{{" and "}}" are literal braces. One parser serves the
 * compile-time check of a literal format and evaluation.
 */
struct fmt_item {
	size_t lit_start, lit_len; /* literal text before the placeholder */
	bool brace;                /* the literal ends in an escaped brace */
	long arg;                  /* argument index, -1 for none (end of text) */
	int decimals;              /* -1 for plain text form */
	size_t at;                 /* offset of the placeholder, for messages */
};

/*
 * Reads the next item from f at *pos. Returns 0 and fills it, 1 at the end,
 * -1 on a malformed format with a message in msg.
 */
static int fmt_next(const char *f, size_t len, size_t *pos, long *auto_idx, struct fmt_item *it,
                    char *msg, size_t msglen)
{
	size_t i = *pos;
	if (i >= len)
		return 1;
	memset(it, 0, sizeof(*it));
	it->lit_start = i;
	it->arg = -1;
	it->decimals = -1;
	while (i < len && f[i] != '{' && f[i] != '}')
		i++;
	it->lit_len = i - it->lit_start;
	if (i == len) {
		*pos = i;
		return 0;
	}
	if (i + 1 < len && f[i + 1] == f[i]) {
		it->lit_len++; /* keep one brace */
		it->brace = true;
		*pos = i + 2;
		return 0;
	}
	if (f[i] == '}') {
		snprintf(msg, msglen, "unmatched '}' at offset %zu (write '}}' for a brace)", i);
		return -1;
	}
	it->at = i;
	size_t j = i + 1;
	if (j < len && f[j] >= '0' && f[j] <= '9') {
		long n = 0;
		while (j < len && f[j] >= '0' && f[j] <= '9' && n < 1000)
			n = n * 10 + (f[j++] - '0');
		it->arg = n;
	} else {
		it->arg = (*auto_idx)++;
	}
	if (j < len && f[j] == ':') {
		if (j + 2 < len && f[j + 1] == '.' && f[j + 2] >= '0' && f[j + 2] <= '9') {
			j += 2;
			int d = 0;
			while (j < len && f[j] >= '0' && f[j] <= '9' && d < 100)
				d = d * 10 + (f[j++] - '0');
			if (d > 20) {
				snprintf(msg, msglen, "at most 20 decimals at offset %zu", i);
				return -1;
			}
			it->decimals = d;
		} else {
			snprintf(msg, msglen,
			         "bad placeholder at offset %zu (expected {}, {N} or {:.D})", i);
			return -1;
		}
	}
	if (j >= len || f[j] != '}') {
		snprintf(msg, msglen, "bad placeholder at offset %zu (expected {}, {N} or {:.D})",
		         i);
		return -1;
	}
	*pos = j + 1;
	return 0;
}

/* Checks every placeholder of f against nargs values. */
static bool fmt_check(const char *f, size_t len, size_t nargs, char *msg, size_t msglen)
{
	size_t pos = 0;
	long auto_idx = 0;
	struct fmt_item it;
	int r;
	while ((r = fmt_next(f, len, &pos, &auto_idx, &it, msg, msglen)) == 0) {
		if (it.arg >= 0 && (size_t)it.arg >= nargs) {
			snprintf(msg, msglen,
			         "placeholder at offset %zu wants argument %ld, but %zu %s", it.at,
			         it.arg, nargs, nargs == 1 ? "is given" : "are given");
			return false;
		}
	}
	return r == 1;
}

static op_err prep_format(struct op_node *call, char *err, size_t errlen)
{
	const char *f;
	char msg[160];
	if (!op_expr__lit_str(call, 0, &f))
		return OP_OK;
	if (!fmt_check(f, strlen(f), call->call.n - 1, msg, sizeof(msg)))
		return op_expr__perr(err, errlen, call->call.args[0]->col, "FORMAT: argument 1: %s",
		                     msg);
	return OP_OK;
}

static op_err fn_format(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t argc, struct op_xv *out)
{
	op_err e = op_expr__want_str(c, call, 0, &argv[0]);
	if (e != OP_OK)
		return e;
	const char *f = argv[0].s;
	size_t len = argv[0].len;
	char msg[160];
	if (!fmt_check(f, len, argc - 1, msg, sizeof(msg)))
		return op_expr__fail(c, OP_EINVAL, "%s: argument 1: %s", call->call.fn->name, msg);
	struct op_buf b;
	op_buf_init(&b, OP_EXPR_MAX_OUT);
	size_t pos = 0;
	long auto_idx = 0;
	struct fmt_item it;
	while (e == OP_OK && fmt_next(f, len, &pos, &auto_idx, &it, msg, sizeof(msg)) == 0) {
		e = op_buf_add(&b, f + it.lit_start, it.lit_len);
		if (e != OP_OK || it.arg < 0)
			continue;
		const struct op_xv *a = &argv[1 + it.arg];
		if (it.decimals < 0) {
			e = op_expr__xv_append_text(&b, a);
			continue;
		}
		if (a->kind != OP_XV_NUM) {
			op_buf_fini(&b);
			return op_expr__fail(c, OP_EINVAL,
			                     "%s: argument %ld: expected a number, got %s",
			                     call->call.fn->name, it.arg + 2, op_expr__xv_type(a));
		}
		e = op_buf_addf(&b, "%.*f", it.decimals, a->n);
	}
	return op_expr__buf_result(c, call, &b, e, out);
}

const struct op_expr__fn op_expr__fns_string[] = {
    {"CONCAT", 1, OP_FN_VARIADIC, false, fn_concat, NULL, NULL},
    {"TOSTRING", 1, 1, false, fn_tostring, NULL, NULL},
    {"LENGTH", 1, 1, false, fn_length, NULL, NULL},
    {"SUBSTRING", 2, 3, false, fn_substring, NULL, NULL},
    {"TRIM", 1, 1, false, fn_trim, NULL, NULL},
    {"LTRIM", 1, 1, false, fn_ltrim, NULL, NULL},
    {"RTRIM", 1, 1, false, fn_rtrim, NULL, NULL},
    {"UPPER", 1, 1, false, fn_upper, NULL, NULL},
    {"LOWER", 1, 1, false, fn_lower, NULL, NULL},
    {"REPLACE", 3, 3, false, fn_replace, NULL, NULL},
    {"SPLIT", 2, 2, false, fn_split, NULL, NULL},
    {"JOIN", 1, 2, false, fn_join, NULL, NULL},
    {"STARTSWITH", 2, 2, false, fn_startswith, NULL, NULL},
    {"ENDSWITH", 2, 2, false, fn_endswith, NULL, NULL},
    {"CONTAINS", 2, 2, false, fn_contains, NULL, NULL},
    {"INDEXOF", 2, 2, false, fn_indexof, NULL, NULL},
    {"PADLEFT", 2, 3, false, fn_padleft, NULL, NULL},
    {"PADRIGHT", 2, 3, false, fn_padright, NULL, NULL},
    {"FORMAT", 1, OP_FN_VARIADIC, false, fn_format, prep_format, NULL},
    {NULL, 0, 0, false, NULL, NULL, NULL},
};
