/*
 * JSON printer: cJSON's tree, our number and string formatting.
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>

#include "agent/core/alloc.h"
#include "agent/core/b64.h"
#include "agent/core/json.h"

/* Integers below this print digit by digit, without exponent. */
#define PLAIN_INT_LIMIT 1e17

/* Writes v in decimal (outlen >= 21); snprintf's result convention. */
static int format_int(int64_t v, char *out, size_t outlen)
{
	char tmp[24];
	size_t i = sizeof(tmp);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do {
		tmp[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		tmp[--i] = '-';
	size_t n = sizeof(tmp) - i;
	if (n >= outlen)
		return snprintf(out, outlen, "%" PRId64, v);
	memcpy(out, tmp + i, n);
	out[n] = '\0';
	return (int)n;
}

/*
 * A non-integer d with 1e-4 <= |d| < 1e15 as its shortest text when that
 * has at most 15 significant digits, without printf; 0 when there is none
 * (or out is short). The text of an integer r with k decimals reads back as
 * d exactly when r / 10^k == d in double arithmetic: 10^k (k <= 15) and r
 * (< 2^53) are exact, so the quotient and strtod both give the double
 * nearest the same rational. For the shortest text, r is the integer
 * nearest |d| * 10^k (the product's rounding error is far below a half), and
 * with at most 15 digits it is the only text of its length that reads back,
 * so it is the one %.15g gives.
 */
static int format_decimal(double d, char *out, size_t outlen)
{
	static const double p10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
	                             1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
	double a = fabs(d);
	if (!(a >= 1e-4 && a < 1e15) || outlen < 40)
		return 0;
	for (int k = 1; k <= 15; k++) {
		double r = nearbyint(a * p10[k]);
		if (r >= 1e15)
			return 0;
		if (r / p10[k] != a)
			continue;
		uint64_t u = (uint64_t)r, p = (uint64_t)p10[k];
		int n = 0;
		if (d < 0)
			out[n++] = '-';
		n += format_int((int64_t)(u / p), out + n, outlen - (size_t)n);
		out[n++] = '.';
		uint64_t f = u % p;
		for (int i = k - 1; i >= 0; i--, f /= 10)
			out[n + i] = (char)('0' + f % 10);
		n += k;
		out[n] = '\0';
		return n;
	}
	return 0;
}

/*
 * Writes the p significant digits r (p <= 17) of a number with decimal
 * exponent x as %.<p>g writes them: exponent notation when x < -4 or
 * x >= p, plain otherwise; the zeros after the last significant digit
 * dropped, and the point with them. outlen >= 32.
 */
static int g_style(bool neg, const char *r, int p, int x, char *out, size_t outlen)
{
	int k = p, n = 0;
	while (k > 1 && r[k - 1] == '0')
		k--;
	if (neg)
		out[n++] = '-';
	if (x < -4 || x >= p) {
		out[n++] = r[0];
		if (k > 1) {
			out[n++] = '.';
			memcpy(out + n, r + 1, (size_t)k - 1);
			n += k - 1;
		}
		n += snprintf(out + n, outlen - (size_t)n, "e%c%02d", x < 0 ? '-' : '+', abs(x));
		return n;
	}
	if (x >= 0) {
		memcpy(out + n, r, (size_t)x + 1);
		n += x + 1;
		if (k > x + 1) {
			out[n++] = '.';
			memcpy(out + n, r + x + 1, (size_t)(k - x - 1));
			n += k - x - 1;
		}
	} else {
		out[n++] = '0';
		out[n++] = '.';
		for (int i = -1; i > x; i--)
			out[n++] = '0';
		memcpy(out + n, r, (size_t)k);
		n += k;
	}
	out[n] = '\0';
	return n;
}

/*
 * The shortest of %.15g, %.16g and %.17g that reads back as d (normal, not
 * an integer below PLAIN_INT_LIMIT), with one printf instead of three: %.16e
 * gives the 17 significant digits, correctly rounded, and rounding those to
 * 15 or 16 gives what %.15g or %.16g would. A rounding boundary of 15 or 16
 * digits is itself a 17-digit text, so it cannot lie between d and its
 * nearest 17-digit text; only when that text is the boundary (the digits
 * dropped are exactly a half) does the side d is on decide, and printf is
 * asked at that precision. outlen >= 32.
 */
static int format_shortest(double d, char *out, size_t outlen)
{
	char e[40];
	snprintf(e, sizeof(e), "%.16e", fabs(d)); /* D.DDDDDDDDDDDDDDDDe+XX */
	char dig[17];
	dig[0] = e[0];
	memcpy(dig + 1, e + 2, 16);
	int x = (int)strtol(e + 19, NULL, 10);
	int n = 0;
	for (int p = 15; p <= 17; p++) {
		char r[17];
		int rx = x;
		memcpy(r, dig, (size_t)p);
		bool half = p < 17 && dig[p] == '5';
		for (int i = p + 1; half && i < 17; i++)
			half = dig[i] == '0';
		if (half) {
			n = snprintf(out, outlen, "%.*g", p, d);
		} else {
			if (p < 17 && dig[p] >= '5') {
				int i = p - 1;
				for (; i >= 0 && r[i] == '9'; i--)
					r[i] = '0';
				if (i >= 0) {
					r[i]++;
				} else {
					r[0] = '1';
					rx++;
				}
			}
			n = g_style(d < 0, r, p, rx, out, outlen);
		}
		if (strtod(out, NULL) == d)
			break;
	}
	return n;
}

size_t op_json_num_format(double d, char *out, size_t outlen)
{
	int n;
	if (!isfinite(d)) {
		n = snprintf(out, outlen, "null");
	} else if (d == 0) {
		n = snprintf(out, outlen, "%s", signbit(d) ? "-0" : "0");
	} else if (d == floor(d) && fabs(d) < PLAIN_INT_LIMIT) {
		n = format_int((int64_t)d, out, outlen);
	} else if ((n = format_decimal(d, out, outlen)) > 0) {
		/* prices, quantities and most decimals a JSON body carries */
	} else {
		/*
		 * The shortest of %.15g, %.16g, %.17g that reads back. If any text
		 * of 15 digits or fewer reads back as d, %.15g is that text: a
		 * double is closer to it than half a unit of the 15th digit, so
		 * rounding to 15 digits gives it, and %g drops the zeros after it.
		 * The closest 16-digit text reads back if any 16-digit text does.
		 * A non-integer needs more digits than its exponent, so the
		 * notation %g picks is the same as at the shortest precision
		 * (format_shortest). Subnormals have fewer bits, so for them
		 * every precision is tried.
		 */
		n = 0;
		if (fabs(d) >= DBL_MIN) {
			n = format_shortest(d, out, outlen);
		} else {
			for (int prec = 1; prec <= 17; prec++) {
				n = snprintf(out, outlen, "%.*g", prec, d);
				if (strtod(out, NULL) == d)
					break;
			}
		}
		/* "1.5e-07" -> "1.5e-7", "1e+21" -> "1e21", as JavaScript writes them. */
		char *e = strchr(out, 'e');
		if (e) {
			char *z = e + 1;
			char *q = z;
			if (*q == '+')
				q++;
			else if (*q == '-')
				q++, z++;
			while (*q == '0' && q[1])
				q++;
			if (q != z) {
				memmove(z, q, strlen(q) + 1);
				n = (int)strlen(out);
			}
		}
	}
	return n < 0 ? 0 : (size_t)n;
}

op_err op_json_append_string(struct op_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	op_err e = op_buf_addc(b, '"');
	size_t run = 0;
	for (size_t i = 0; e == OP_OK && i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		e = op_buf_add(b, s + run, i - run);
		run = i + 1;
		if (e != OP_OK)
			break;
		char esc[6] = {'\\', 0, 0, 0, 0, 0};
		size_t n = 2;
		switch (ch) {
		case '"':
		case '\\':
			esc[1] = (char)ch;
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
			n = 6;
			break;
		}
		e = op_buf_add(b, esc, n);
	}
	if (e == OP_OK)
		e = op_buf_add(b, s + run, len - run);
	if (e == OP_OK)
		e = op_buf_addc(b, '"');
	return e;
}

static op_err newline(struct op_buf *b, int flags, int depth)
{
	if (!(flags & OP_JSON_PRETTY))
		return OP_OK;
	op_err e = op_buf_addc(b, '\n');
	for (int i = 0; e == OP_OK && i < depth; i++)
		e = op_buf_add(b, "  ", 2);
	return e;
}

static op_err append(struct op_buf *b, const cJSON *v, int flags, int depth)
{
	if (depth > OP_JSON_MAX_DEPTH)
		return OP_ELIMIT;
	if (v == NULL || cJSON_IsNull(v) || cJSON_IsInvalid(v))
		return op_buf_add(b, "null", 4);
	if (cJSON_IsTrue(v))
		return op_buf_add(b, "true", 4);
	if (cJSON_IsFalse(v))
		return op_buf_add(b, "false", 5);
	if (cJSON_IsNumber(v)) {
		char tmp[64];
		size_t n = op_json_num_format(v->valuedouble, tmp, sizeof(tmp));
		return op_buf_add(b, tmp, n);
	}
	if (cJSON_IsString(v)) {
		const char *s = v->valuestring ? v->valuestring : "";
		return op_json_append_string(b, s, strlen(s));
	}
	if (cJSON_IsRaw(v))
		return op_buf_adds(b, v->valuestring ? v->valuestring : "null");

	bool obj = cJSON_IsObject(v);
	op_err e = op_buf_addc(b, obj ? '{' : '[');
	const cJSON *c = v->child;
	for (; e == OP_OK && c; c = c->next) {
		e = newline(b, flags, depth + 1);
		if (e == OP_OK && obj) {
			const char *k = c->string ? c->string : "";
			e = op_json_append_string(b, k, strlen(k));
			if (e == OP_OK)
				e = (flags & OP_JSON_PRETTY) ? op_buf_add(b, ": ", 2)
				                             : op_buf_addc(b, ':');
		}
		if (e == OP_OK)
			e = append(b, c, flags, depth + 1);
		if (e == OP_OK && c->next)
			e = op_buf_addc(b, ',');
	}
	if (e == OP_OK && v->child)
		e = newline(b, flags, depth);
	if (e == OP_OK)
		e = op_buf_addc(b, obj ? '}' : ']');
	return e;
}

op_err op_json_append(struct op_buf *b, const cJSON *v, int flags)
{
	return append(b, v, flags, 0);
}

char *op_json_print(const cJSON *v, int flags)
{
	struct op_buf b;
	op_buf_init(&b, SIZE_MAX / 2);
	if (op_json_append(&b, v, flags) != OP_OK) {
		op_buf_fini(&b);
		return NULL;
	}
	char *s = op_buf_take(&b);
	if (s == NULL)
		s = op_strdup("");
	return s;
}

const char *op_json_kind(const cJSON *v)
{
	if (v == NULL || cJSON_IsNull(v))
		return "null";
	if (cJSON_IsObject(v))
		return "an object";
	if (cJSON_IsArray(v))
		return "an array";
	if (cJSON_IsString(v))
		return "a string";
	if (cJSON_IsNumber(v))
		return "a number";
	if (cJSON_IsBool(v))
		return "a boolean";
	return "an invalid value";
}

op_err op_json_parse(const char *s, size_t len, cJSON **out, char *err, size_t errlen)
{
	*out = NULL;
	const char *nul = memchr(s, '\0', len);
	if (nul != NULL)
		return op_errf(err, errlen, OP_EPARSE, "invalid JSON: NUL byte at offset %zu",
		               (size_t)(nul - s));
	const char *end = NULL;
	/* len + 1: cJSON needs the NUL to refuse trailing text. */
	cJSON *v = cJSON_ParseWithLengthOpts(s, len + 1, &end, 1);
	if (v != NULL) {
		*out = v;
		return OP_OK;
	}
	size_t pos = end != NULL && end >= s ? (size_t)(end - s) : 0;
	if (pos > len)
		pos = len;
	size_t line = 1, col = 1;
	for (size_t i = 0; i < pos; i++) {
		if (s[i] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	if (pos >= len)
		return op_errf(err, errlen, OP_EPARSE,
		               "invalid JSON at line %zu, column %zu: unexpected end of input",
		               line, col);
	/* Up to 16 characters from the error position, printable only. */
	char near[17];
	size_t k = 0;
	for (size_t i = pos; i < len && k < 16 && s[i] != '\n'; i++) {
		unsigned char c = (unsigned char)s[i];
		near[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	near[k] = '\0';
	return op_errf(err, errlen, OP_EPARSE,
	               "invalid JSON at line %zu, column %zu: unexpected text near \"%s\"", line,
	               col, near);
}

bool op_json_media_type(const char *ct)
{
	size_t n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
		return true;
	/* application/<anything>+json (problem+json, vnd.x+json) */
	return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
	       strncasecmp(ct + n - 5, "+json", 5) == 0;
}

cJSON *op_json_base64(const void *p, size_t n)
{
	if (n > (size_t)UINT32_MAX / 4 * 3 - 3)
		return NULL;
	word32 cap = (word32)((n + 2) / 3 * 4 + 1), len = cap;
	char *s = op_malloc(cap);
	cJSON *j = NULL;
	if (s && (n == 0 || Base64_Encode_NoNl(p, (word32)n, (byte *)s, &len) == 0)) {
		s[n ? len : 0] = '\0';
		j = cJSON_CreateString(s);
	}
	op_free(s);
	return j;
}

op_err op_base64_decode(const char *s, char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	/* The text without its line breaks and blanks, padded to whole quads. */
	size_t n = strlen(s), k = 0;
	char *t = op_malloc(n + 3);
	if (t == NULL)
		return OP_ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (!strchr(" \t\r\n", s[i]))
			t[k++] = s[i];
	while (k % 4 == 2 || k % 4 == 3)
		t[k++] = '=';
	size_t cap = op_b64_decoded_max(k);
	char *d = op_malloc(cap + 1);
	size_t dn = 0;
	op_err rc = OP_OK;
	if (d == NULL)
		rc = OP_ENOMEM;
	else if (k > 0 && !op_b64_decode(t, k, false, (unsigned char *)d, cap, &dn))
		rc = OP_EINVAL;
	op_free(t);
	if (rc) {
		op_free(d);
		return rc;
	}
	d[dn] = '\0';
	*out = d;
	*len = dn;
	return OP_OK;
}

bool op_json_add_time_ms(cJSON *o, const char *name, int64_t ms)
{
	char key[64], iso[40];
	snprintf(key, sizeof(key), "%sMs", name);
	cJSON *t;
	struct tm tm;
	time_t secs = (time_t)(ms / 1000);
	if (ms > 0 && gmtime_r(&secs, &tm)) {
		size_t n = strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(iso + n, sizeof(iso) - n, ".%03dZ", (int)(ms % 1000));
		t = cJSON_AddStringToObject(o, name, iso);
	} else {
		t = cJSON_AddNullToObject(o, name);
	}
	return t && cJSON_AddNumberToObject(o, key, (double)ms);
}

bool op_json_add_str_or_null(cJSON *o, const char *name, const char *s)
{
	return (s && *s) ? cJSON_AddStringToObject(o, name, s) != NULL
	                 : cJSON_AddNullToObject(o, name) != NULL;
}
