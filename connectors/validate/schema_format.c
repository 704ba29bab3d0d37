/*
 * The "format" values the validator can assert when asked to
 * (op_schema_opts.format_assert, or a metaschema with the format-assertion
 * vocabulary): date-time, date, time and duration (RFC 3339 and its
 * appendix A), email and idn-email (a pragmatic subset of RFC 5321/6531:
 * local@domain, quoted local parts, address literals), hostname (RFC 1123
 * LDH labels; A-labels are not Punycode-decoded), ipv4 and ipv6 (via
 * inet_pton, which takes dotted quads without leading zeros and no zone
 * ids), uuid (RFC 4122 text form), uri, uri-reference, iri and
 * iri-reference (RFC 3986/3987 syntax), uri-template (RFC 6570 syntax),
 * json-pointer and relative-json-pointer (RFC 6901 and its relative
 * draft) and regex (ECMA-262 as "pattern" reads it). Invariant: every check
 * is a pure function of the string; unknown formats are never asserted.
 */
#include <arpa/inet.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "connectors/validate/schema_int.h"

static const char *const names[] = {
    [OP_SCHEMA__F_DATE_TIME] = "date-time",
    [OP_SCHEMA__F_DATE] = "date",
    [OP_SCHEMA__F_EMAIL] = "email",
    [OP_SCHEMA__F_IPV4] = "ipv4",
    [OP_SCHEMA__F_IPV6] = "ipv6",
    [OP_SCHEMA__F_UUID] = "uuid",
    [OP_SCHEMA__F_TIME] = "time",
    [OP_SCHEMA__F_DURATION] = "duration",
    [OP_SCHEMA__F_HOSTNAME] = "hostname",
    [OP_SCHEMA__F_IDN_EMAIL] = "idn-email",
    [OP_SCHEMA__F_URI] = "uri",
    [OP_SCHEMA__F_URI_REF] = "uri-reference",
    [OP_SCHEMA__F_IRI] = "iri",
    [OP_SCHEMA__F_IRI_REF] = "iri-reference",
    [OP_SCHEMA__F_URI_TEMPLATE] = "uri-template",
    [OP_SCHEMA__F_JSON_POINTER] = "json-pointer",
    [OP_SCHEMA__F_REL_JSON_POINTER] = "relative-json-pointer",
    [OP_SCHEMA__F_REGEX] = "regex",
};

int op_schema__format_id(const char *name)
{
	for (size_t i = 1; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	return OP_SCHEMA__F_NONE;
}

const char *op_schema__format_name(int id)
{
	if (id <= 0 || (size_t)id >= sizeof(names) / sizeof(names[0]))
		return "?";
	return names[id];
}

/* n ASCII digits at p, as a number; -1 if any is not a digit. */
static int digits(const char *p, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* full-date: YYYY-MM-DD; returns the length parsed (10) or 0. */
static int date_part(const char *s)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y = digits(s, 4);
	if (y < 0 || s[4] != '-')
		return 0;
	int m = digits(s + 5, 2);
	if (m < 1 || m > 12 || s[7] != '-')
		return 0;
	int d = digits(s + 8, 2);
	int max = mdays[m - 1] + (m == 2 && leap(y) ? 1 : 0);
	return d >= 1 && d <= max ? 10 : 0;
}

/* full-time: HH:MM:SS[.frac](Z|+HH:MM|-HH:MM), leap second only at 23:59
 * UTC. */
static bool time_part(const char *s)
{
	/* Each field is read only once the one before it was there, so a
	 * short string never makes us read past its end. */
	int h = digits(s, 2);
	if (h < 0 || h > 23 || s[2] != ':')
		return false;
	int mi = digits(s + 3, 2);
	if (mi < 0 || mi > 59 || s[5] != ':')
		return false;
	int se = digits(s + 6, 2);
	if (se < 0 || se > 60)
		return false;
	const char *p = s + 8;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	int oh = 0, om = 0, sign = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		oh = digits(p + 1, 2);
		if (oh < 0 || oh > 23 || p[3] != ':')
			return false;
		om = digits(p + 4, 2);
		if (om < 0 || om > 59)
			return false;
		p += 6;
	} else {
		return false;
	}
	if (*p != '\0')
		return false;
	if (se == 60) {
		int utc = ((h * 60 + mi - sign * (oh * 60 + om)) % 1440 + 1440) % 1440;
		return utc == 23 * 60 + 59;
	}
	return true;
}

static bool is_date_time(const char *s)
{
	if (date_part(s) != 10 || (s[10] != 'T' && s[10] != 't'))
		return false;
	return time_part(s + 11);
}

/* A quoted local part: DQUOTE *(qtext / "\\" char) DQUOTE, from s to end. */
static bool quoted_local(const char *s, const char *end)
{
	if (end - s < 2 || s[0] != '"' || end[-1] != '"')
		return false;
	for (const char *p = s + 1; p < end - 1; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '\\') {
			if (++p >= end - 1)
				return false;
		} else if (c < ' ' || c == 0x7f || c == '"') {
			return false;
		}
	}
	return true;
}

/* idn: UTF-8 allowed in the local part and the domain (RFC 6531). */
static bool is_email(const char *s, bool idn)
{
	const char *at = strrchr(s, '@');
	if (at == NULL || at == s || at[1] == '\0')
		return false;
	if (!idn)
		for (const char *p = s; *p; p++)
			if ((unsigned char)*p >= 0x80)
				return false;
	if (s[0] == '"') {
		if (!quoted_local(s, at))
			return false;
	} else {
		/* Dot-atom: no spaces or controls, dots not first, last or
		 * doubled. */
		if (s[0] == '.' || at[-1] == '.')
			return false;
		for (const char *p = s; p < at; p++) {
			unsigned char c = (unsigned char)*p;
			if (c <= ' ' || c == 0x7f || c == '@' || c == '"' ||
			    (c == '.' && p[1] == '.'))
				return false;
		}
	}
	const char *d = at + 1;
	if (d[0] == '[') {
		/* An address literal: [IPv4] or [IPv6:...]. */
		size_t n = strlen(d);
		char buf[64];
		if (n < 3 || d[n - 1] != ']' || n - 2 >= sizeof(buf))
			return false;
		memcpy(buf, d + 1, n - 2);
		buf[n - 2] = '\0';
		unsigned char addr[16];
		if (strncmp(buf, "IPv6:", 5) == 0)
			return inet_pton(AF_INET6, buf + 5, addr) == 1;
		return inet_pton(AF_INET, buf, addr) == 1;
	}
	/* Domain: dot-separated labels of letters, digits and inner hyphens. */
	size_t label = 0;
	for (const char *p = d;; p++) {
		char c = *p;
		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63 || p[-1] == '-')
				return false;
			if (c == '\0')
				return true;
			label = 0;
			continue;
		}
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || (c == '-' && label > 0) ||
		          (unsigned char)c >= 0x80;
		if (!ok)
			return false;
		label++;
	}
}

static bool is_uuid(const char *s)
{
	static const char dash[] = {8, 13, 18, 23};
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		bool want_dash = i == dash[0] || i == dash[1] || i == dash[2] || i == dash[3];
		bool hex =
		    (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
		if (want_dash ? c != '-' : !hex)
			return false;
	}
	return true;
}

/* RFC 3339 appendix A: "P" then Y, M, D in that order, each only after the
 * one before it when that one is present (P1Y2D is not a duration), then
 * optionally "T" with H, M, S the same way; or a lone week count. */
static bool dur_units(const char **pp, const char *units)
{
	const char *p = *pp;
	int last = -1;
	bool any = false;
	while (*p >= '0' && *p <= '9') {
		while (*p >= '0' && *p <= '9')
			p++;
		const char *u = *p ? strchr(units, *p) : NULL;
		if (u == NULL)
			return false;
		int k = (int)(u - units);
		if (last >= 0 ? k != last + 1 : false)
			return false;
		last = k;
		any = true;
		p++;
	}
	*pp = p;
	return any;
}

static bool is_duration(const char *s)
{
	if (*s++ != 'P')
		return false;
	const char *p = s;
	while (*p >= '0' && *p <= '9')
		p++;
	if (p > s && *p == 'W')
		return p[1] == '\0';
	p = s;
	bool date = *p != 'T' && dur_units(&p, "YMD");
	if (!date && *p != 'T')
		return false;
	if (*p == 'T') {
		p++;
		if (!dur_units(&p, "HMS"))
			return false;
	}
	return *p == '\0';
}

static bool is_hostname(const char *s)
{
	size_t total = strlen(s), label = 0;
	if (total == 0 || total > 253)
		return false;
	for (const char *p = s;; p++) {
		char c = *p;
		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63 || p[-1] == '-')
				return false;
			if (c == '\0')
				return true;
			label = 0;
			continue;
		}
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || (c == '-' && label > 0);
		if (!ok)
			return false;
		label++;
	}
}

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 3986 character classes, plus any non-ASCII byte for IRIs. */
static bool unreserved(char c, bool iri)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
	       (iri && (unsigned char)c >= 0x80);
}

static bool sub_delim(char c)
{
	return c != '\0' && strchr("!$&'()*+,;=", c) != NULL;
}

/* Skips characters that are unreserved, sub-delims, pct-encoded or in
 * extra, stopping at the first other one; false on a bad %-escape. */
static bool uri_chars(const char **pp, const char *end, const char *extra, bool iri)
{
	const char *p = *pp;
	while (p < end) {
		char c = *p;
		if (c == '%') {
			if (end - p < 3 || !is_hex(p[1]) || !is_hex(p[2]))
				return false;
			p += 3;
		} else if (unreserved(c, iri) || sub_delim(c) || strchr(extra, c) != NULL) {
			p++;
		} else {
			break;
		}
	}
	*pp = p;
	return true;
}

/* authority = [ userinfo "@" ] host [ ":" port ], from p to end. */
static bool uri_authority(const char *p, const char *end, bool iri)
{
	const char *at = memchr(p, '@', (size_t)(end - p));
	if (at != NULL) {
		const char *u = p;
		if (!uri_chars(&u, at, ":", iri) || u != at)
			return false;
		p = at + 1;
	}
	if (p < end && *p == '[') {
		const char *close = memchr(p, ']', (size_t)(end - p));
		char buf[64];
		size_t n = close != NULL ? (size_t)(close - p - 1) : 0;
		if (close == NULL || n == 0 || n >= sizeof(buf))
			return false;
		memcpy(buf, p + 1, n);
		buf[n] = '\0';
		if (buf[0] == 'v' || buf[0] == 'V') {
			/* IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ) */
			const char *q = buf + 1;
			while (is_hex(*q))
				q++;
			if (q == buf + 1 || *q != '.' || q[1] == '\0')
				return false;
			for (q++; *q; q++)
				if (!unreserved(*q, false) && !sub_delim(*q) && *q != ':')
					return false;
		} else {
			unsigned char addr[16];
			if (inet_pton(AF_INET6, buf, addr) != 1)
				return false;
		}
		p = close + 1;
	} else if (!uri_chars(&p, end, "", iri)) {
		return false;
	}
	if (p < end && *p == ':')
		for (p++; p < end && is_digit(*p); p++)
			;
	return p == end;
}

/* URI-reference (RFC 3986 section 4.1); absolute: a scheme is required. */
static bool is_uri(const char *s, bool absolute, bool iri)
{
	const char *end = s + strlen(s);
	const char *p = s + strcspn(s, ":/?#");
	if (*p == ':') {
		if (!is_alpha(s[0]))
			return false;
		for (const char *q = s; q < p; q++)
			if (!is_alpha(*q) && !is_digit(*q) && *q != '+' && *q != '-' && *q != '.')
				return false;
		p++;
	} else if (absolute) {
		return false;
	} else {
		p = s;
	}
	if (p[0] == '/' && p[1] == '/') {
		p += 2;
		const char *a = p + strcspn(p, "/?#");
		if (!uri_authority(p, a, iri))
			return false;
		p = a;
	}
	if (!uri_chars(&p, end, ":@/", iri))
		return false;
	if (*p == '?') {
		p++;
		if (!uri_chars(&p, end, ":@/?", iri))
			return false;
	}
	if (*p == '#') {
		p++;
		if (!uri_chars(&p, end, ":@/?", iri))
			return false;
	}
	return p == end;
}

/* RFC 6570: literals and {op varspec,...} expressions, up to level 4. */
static bool is_uri_template(const char *s)
{
	const char *p = s;
	while (*p) {
		unsigned char c = (unsigned char)*p;
		if (c == '{') {
			p++;
			if (*p && strchr("+#./;?&", *p) != NULL)
				p++;
			for (;;) {
				/* varname = varchar *( ["."] varchar ) */
				bool need = true;
				while (is_alpha(*p) || is_digit(*p) || *p == '_' || *p == '%' ||
				       (*p == '.' && !need)) {
					if (*p == '%') {
						if (!is_hex(p[1]) || !is_hex(p[2]))
							return false;
						p += 2;
					}
					need = *p == '.';
					p++;
				}
				if (need)
					return false;
				if (*p == ':') {
					p++;
					if (*p < '1' || *p > '9')
						return false;
					int n = 0;
					while (is_digit(*p) && n < 5) {
						p++;
						n++;
					}
					if (n > 4)
						return false;
				} else if (*p == '*') {
					p++;
				}
				if (*p == ',') {
					p++;
					continue;
				}
				if (*p != '}')
					return false;
				p++;
				break;
			}
		} else if (c == '%') {
			if (!is_hex(p[1]) || !is_hex(p[2]))
				return false;
			p += 3;
		} else if (c <= ' ' || c == 0x7f || strchr("\"<>\\^`|}", c) != NULL) {
			return false;
		} else {
			p++;
		}
	}
	return true;
}

/* RFC 6901: "" or ("/" *(unescaped / "~0" / "~1"))*. */
static bool is_json_pointer(const char *s)
{
	if (*s != '\0' && *s != '/')
		return false;
	for (const char *p = s; *p; p++)
		if (*p == '~' && p[1] != '0' && p[1] != '1')
			return false;
	return true;
}

/* non-negative-integer then "#" or a JSON pointer. */
static bool is_rel_json_pointer(const char *s)
{
	const char *p = s;
	if (!is_digit(*p) || (*p == '0' && is_digit(p[1])))
		return false;
	while (is_digit(*p))
		p++;
	if (*p == '#')
		return p[1] == '\0';
	return is_json_pointer(p);
}

static void *rx_alloc(PCRE2_SIZE n, void *ud)
{
	(void)ud;
	return op_malloc(n);
}

static void rx_free(void *p, void *ud)
{
	(void)ud;
	op_free(p);
}

/* A pattern "pattern" would accept: translated and compiled by PCRE2. */
static op_err is_regex(const char *s, bool *ok)
{
	struct op_buf text;
	pcre2_general_context *gc = NULL;
	pcre2_compile_context *cc = NULL;
	pcre2_code *code = NULL;
	const char *why;
	int ec;
	PCRE2_SIZE off;
	op_err e;

	*ok = false;
	op_buf_init(&text, OP_SCHEMA__MAX_REGEX);
	e = op_schema__rx_translate(s, &text, &why);
	if (e == OP_EPARSE || e == OP_ELIMIT) {
		e = OP_OK;
		goto out;
	}
	if (e)
		goto out;
	gc = pcre2_general_context_create(rx_alloc, rx_free, NULL);
	cc = gc != NULL ? pcre2_compile_context_create(gc) : NULL;
	if (cc == NULL) {
		e = OP_ENOMEM;
		goto out;
	}
	pcre2_set_compile_extra_options(cc, PCRE2_EXTRA_ALT_BSUX);
	code = pcre2_compile((PCRE2_SPTR)op_buf_str(&text), text.len,
	                     PCRE2_UTF | PCRE2_ALT_BSUX | PCRE2_DOLLAR_ENDONLY |
	                         PCRE2_ALLOW_EMPTY_CLASS,
	                     &ec, &off, cc);
	if (code == NULL && ec == PCRE2_ERROR_HEAP_FAILED)
		e = OP_ENOMEM;
	*ok = code != NULL;
out:
	pcre2_code_free(code);
	pcre2_compile_context_free(cc);
	pcre2_general_context_free(gc);
	op_buf_fini(&text);
	return e;
}

op_err op_schema__format_check(int id, const char *s, bool *ok)
{
	unsigned char addr[16];
	switch (id) {
	case OP_SCHEMA__F_DATE_TIME:
		*ok = is_date_time(s);
		break;
	case OP_SCHEMA__F_DATE:
		*ok = date_part(s) == 10 && s[10] == '\0';
		break;
	case OP_SCHEMA__F_TIME:
		*ok = time_part(s);
		break;
	case OP_SCHEMA__F_DURATION:
		*ok = is_duration(s);
		break;
	case OP_SCHEMA__F_EMAIL:
		*ok = is_email(s, false);
		break;
	case OP_SCHEMA__F_IDN_EMAIL:
		*ok = is_email(s, true);
		break;
	case OP_SCHEMA__F_HOSTNAME:
		*ok = is_hostname(s);
		break;
	case OP_SCHEMA__F_IPV4:
		*ok = inet_pton(AF_INET, s, addr) == 1;
		break;
	case OP_SCHEMA__F_IPV6:
		*ok = inet_pton(AF_INET6, s, addr) == 1;
		break;
	case OP_SCHEMA__F_UUID:
		*ok = is_uuid(s);
		break;
	case OP_SCHEMA__F_URI:
		*ok = is_uri(s, true, false);
		break;
	case OP_SCHEMA__F_URI_REF:
		*ok = is_uri(s, false, false);
		break;
	case OP_SCHEMA__F_IRI:
		*ok = is_uri(s, true, true);
		break;
	case OP_SCHEMA__F_IRI_REF:
		*ok = is_uri(s, false, true);
		break;
	case OP_SCHEMA__F_URI_TEMPLATE:
		*ok = is_uri_template(s);
		break;
	case OP_SCHEMA__F_JSON_POINTER:
		*ok = is_json_pointer(s);
		break;
	case OP_SCHEMA__F_REL_JSON_POINTER:
		*ok = is_rel_json_pointer(s);
		break;
	case OP_SCHEMA__F_REGEX:
		return is_regex(s, ok);
	default:
		*ok = true;
		break;
	}
	return OP_OK;
}
