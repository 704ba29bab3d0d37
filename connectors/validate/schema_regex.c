/*
 * ECMA-262 to PCRE2 pattern translation. JSON Schema patterns are ECMA-262
 * regular expressions in Unicode mode; PCRE2 (compiled with UTF but without
 * UCP, so \d, \w and \b stay ASCII as in ECMA-262) agrees on almost all of
 * the syntax. This file rewrites the few places where the two differ: long
 * General_Category names in \p{...} (PCRE2 only knows the short ones),
 * \p{Assigned}, \s and \S (ECMA-262 includes the Unicode spaces and U+FEFF),
 * "." (which must not match the ECMA-262 line terminators) and a "[" inside
 * a class (a POSIX class opener in PCRE2), and it refuses the PCRE2-only
 * escapes and group syntaxes that ECMA-262 rejects. Invariant: the output is a
 * well-formed translation of every construct it understands and passes
 * everything else through unchanged, so that PCRE2 reports the errors.
 */
#include <string.h>

#include "agent/core/buf.h"
#include "connectors/validate/schema_int.h"

/* ECMA-262 WhiteSpace and LineTerminator code points, as class members in
 * PCRE2 syntax (PCRE2_ALT_BSUX: \x takes exactly two digits, \u four). */
#define WS_SET               \
	"\\t\\n\\x0b\\f\\r " \
	"\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
/* Everything "." matches in ECMA-262 without the s flag. */
#define DOT_SET "[^\\n\\r\\u2028\\u2029]"

/* Long General_Category names and aliases (Unicode PropertyValueAliases.txt)
 * with the short name PCRE2 knows. */
static const struct {
	const char *name, *pcre;
} gc_names[] = {
    {"Other", "C"},
    {"Control", "Cc"},
    {"cntrl", "Cc"},
    {"Format", "Cf"},
    {"Unassigned", "Cn"},
    {"Private_Use", "Co"},
    {"Surrogate", "Cs"},
    {"Letter", "L"},
    {"Cased_Letter", "L&"},
    {"LC", "L&"},
    {"Lowercase_Letter", "Ll"},
    {"Modifier_Letter", "Lm"},
    {"Other_Letter", "Lo"},
    {"Titlecase_Letter", "Lt"},
    {"Uppercase_Letter", "Lu"},
    {"Mark", "M"},
    {"Combining_Mark", "M"},
    {"Spacing_Mark", "Mc"},
    {"Enclosing_Mark", "Me"},
    {"Nonspacing_Mark", "Mn"},
    {"Number", "N"},
    {"Decimal_Number", "Nd"},
    {"digit", "Nd"},
    {"Letter_Number", "Nl"},
    {"Other_Number", "No"},
    {"Punctuation", "P"},
    {"punct", "P"},
    {"Connector_Punctuation", "Pc"},
    {"Dash_Punctuation", "Pd"},
    {"Close_Punctuation", "Pe"},
    {"Final_Punctuation", "Pf"},
    {"Initial_Punctuation", "Pi"},
    {"Other_Punctuation", "Po"},
    {"Open_Punctuation", "Ps"},
    {"Symbol", "S"},
    {"Currency_Symbol", "Sc"},
    {"Modifier_Symbol", "Sk"},
    {"Math_Symbol", "Sm"},
    {"Other_Symbol", "So"},
    {"Separator", "Z"},
    {"Line_Separator", "Zl"},
    {"Paragraph_Separator", "Zp"},
    {"Space_Separator", "Zs"},
};

static const char *gc_short(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(gc_names) / sizeof(gc_names[0]); i++)
		if (strlen(gc_names[i].name) == len && memcmp(gc_names[i].name, name, len) == 0)
			return gc_names[i].pcre;
	return NULL;
}

static bool is(const char *p, size_t len, const char *word)
{
	return strlen(word) == len && memcmp(p, word, len) == 0;
}

/* Appends the PCRE2 form of \p{body} (\P{body} when neg), body being len
 * bytes. */
static op_err property(struct op_buf *b, bool neg, const char *body, size_t len)
{
	const char *eq = memchr(body, '=', len);
	const char *val = body;
	size_t vlen = len;
	if (eq != NULL) {
		size_t klen = (size_t)(eq - body);
		/* Script=, sc=, Script_Extensions=, scx=: PCRE2 reads these. */
		if (!is(body, klen, "General_Category") && !is(body, klen, "gc"))
			goto verbatim;
		val = eq + 1;
		vlen = len - klen - 1;
	}
	if (is(val, vlen, "Assigned"))
		return op_buf_adds(b, neg ? "\\p{Cn}" : "\\P{Cn}");
	const char *gc = gc_short(val, vlen);
	if (gc != NULL)
		return op_buf_addf(b, "\\%c{%s}", neg ? 'P' : 'p', gc);
	if (eq != NULL) /* gc=Lu: the short value */
		return op_buf_addf(b, "\\%c{%.*s}", neg ? 'P' : 'p', (int)vlen, val);
verbatim:
	return op_buf_addf(b, "\\%c{%.*s}", neg ? 'P' : 'p', (int)len, body);
}

/* Letters that may follow a backslash in an ECMA-262 Unicode-mode pattern
 * (any other letter is an error there, while PCRE2 gives many a meaning of
 * its own: \a, \e, \Q, \A, \Z, \h, \R, \K...). */
static bool ecma_escape(char n)
{
	if ((n >= 'a' && n <= 'z') || (n >= 'A' && n <= 'Z'))
		return strchr("dDwWsSbBfnrtvcxupPk", n) != NULL;
	return true;
}

/* After "(?": ECMA-262 knows only (?: (?= (?! (?<= (?<! and (?<name>. */
static bool ecma_group(const char *p)
{
	if (*p == ':' || *p == '=' || *p == '!')
		return true;
	return *p == '<' && p[1] != '\0';
}

op_err op_schema__rx_translate(const char *src, struct op_buf *b, const char **why)
{
	bool in_class = false;
	op_err e = OP_OK;
	const char *p = src;

	*why = NULL;
	while (*p != '\0' && e == OP_OK) {
		char c = *p;
		if (c == '\\' && !ecma_escape(p[1])) {
			*why = "escape sequence not in ECMA-262";
			return OP_EPARSE;
		}
		if (c == '(' && !in_class && p[1] == '?' && !ecma_group(p + 2)) {
			*why = "group syntax not in ECMA-262";
			return OP_EPARSE;
		}
		if (c == '\\') {
			char n = p[1];
			if (n == '\0') {
				e = op_buf_addc(b, c); /* PCRE2 reports the dangling \ */
				p++;
			} else if ((n == 'p' || n == 'P') && p[2] == '{' &&
			           strchr(p + 3, '}') != NULL) {
				const char *end = strchr(p + 3, '}');
				e = property(b, n == 'P', p + 3, (size_t)(end - (p + 3)));
				p = end + 1;
			} else if (n == 's') {
				e = op_buf_adds(b, in_class ? WS_SET : "[" WS_SET "]");
				p += 2;
			} else if (n == 'S' && !in_class) {
				e = op_buf_adds(b, "[^" WS_SET "]");
				p += 2;
			} else {
				e = op_buf_add(b, p, 2);
				p += 2;
			}
		} else if (in_class) {
			if (c == ']')
				in_class = false;
			e = c == '[' ? op_buf_adds(b, "\\[") : op_buf_addc(b, c);
			p++;
		} else if (c == '[') {
			in_class = true;
			e = op_buf_addc(b, c);
			p++;
			if (e == OP_OK && *p == '^') {
				e = op_buf_addc(b, '^');
				p++;
			}
			/* A "]" right here closes an empty class in ECMA-262, as
			 * with PCRE2_ALLOW_EMPTY_CLASS. */
			if (e == OP_OK && *p == ']') {
				e = op_buf_addc(b, ']');
				in_class = false;
				p++;
			}
		} else if (c == '.') {
			e = op_buf_adds(b, DOT_SET);
			p++;
		} else {
			e = op_buf_addc(b, c);
			p++;
		}
	}
	return e;
}
