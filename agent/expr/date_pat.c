/*
 * Date patterns for FORMATDATE and PARSEDATE: a subset of the letters of
 * Java's DateTimeFormatter ("yyyy-MM-dd HH:mm:ss.SSS XXX", "EEE, d MMM yyyy",
 * 'quoted literals'), plus the names "ISO", "EPOCH" and "EPOCH_MS". A
 * pattern is compiled once into tokens; formatting writes the local fields
 * of an instant by those tokens, and parsing reads text by them into fields
 * that are checked against each other (day of year, weekday, AM/PM, zone
 * abbreviation) before they become an instant.
 *
 * Key invariant: a compiled pattern is read-only, so one compiled at
 * compile time is shared by every evaluation; parsing never reads past the
 * text's length and reports a mismatch as a reason and a position in the
 * text, which fn_date.c words for the user.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "agent/expr/date_int.h"
#include "agent/expr/expr_int.h"

static const char *const month_names[12] = {
    "January", "February", "March",     "April",   "May",      "June",
    "July",    "August",   "September", "October", "November", "December",
};
static const char *const day_names[7] = {
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
};

/* ---- compiling ---- */

/* Pattern letters and the most repetitions of each. */
static unsigned letter_max(char ch)
{
	switch (ch) {
	case 'y':
	case 'S':
		return 9;
	case 'M':
	case 'E':
	case 'Z':
		return 5;
	case 'D':
	case 'X':
	case 'x':
	case 'z':
		return 3;
	case 'd':
	case 'H':
	case 'h':
	case 'k':
	case 'K':
	case 'm':
	case 's':
	case 'V':
		return 2;
	case 'a':
		return 1;
	default:
		return 0;
	}
}

bool op_expr__pattern_compile(const char *s, size_t len, struct op_expr__pattern *p, char *msg,
                              size_t msglen)
{
	size_t nlit = 0;
	p->n = 0;
	p->kind = OP_EXPR__PAT_FIELDS;
	if (len > OP_EXPR__PAT_MAX) {
		snprintf(msg, msglen, "pattern longer than %u characters", OP_EXPR__PAT_MAX);
		return false;
	}
	memcpy(p->src, s, len);
	p->src[len] = '\0';
	if (len == 3 && memcmp(s, "ISO", 3) == 0) {
		p->kind = OP_EXPR__PAT_ISO;
		return true;
	}
	if (len == 5 && memcmp(s, "EPOCH", 5) == 0) {
		p->kind = OP_EXPR__PAT_EPOCH;
		return true;
	}
	if (len == 8 && memcmp(s, "EPOCH_MS", 8) == 0) {
		p->kind = OP_EXPR__PAT_EPOCH_MS;
		return true;
	}
	if (len == 0) {
		snprintf(msg, msglen, "empty pattern");
		return false;
	}
	for (size_t i = 0; i < len;) {
		char ch = s[i];
		bool letter = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
		struct op_expr__pat_tok *last = p->n ? &p->tok[p->n - 1] : NULL;
		if (letter) {
			size_t j = i;
			while (j < len && s[j] == ch)
				j++;
			unsigned max = letter_max(ch);
			if (max == 0) {
				snprintf(msg, msglen, "unknown pattern letter '%c' at position %zu",
				         ch, i);
				return false;
			}
			if (ch == 'V' && j - i != 2) {
				snprintf(msg, msglen, "'%.*s' at position %zu: the zone ID is 'VV'",
				         (int)(j - i), s + i, i);
				return false;
			}
			if (j - i > max) {
				snprintf(msg, msglen,
				         "'%.*s' at position %zu: '%c' may repeat at most %u times",
				         (int)(j - i), s + i, i, ch, max);
				return false;
			}
			if (p->n >= OP_EXPR__PAT_TOKS) {
				snprintf(msg, msglen, "pattern has more than %u fields",
				         OP_EXPR__PAT_TOKS);
				return false;
			}
			p->tok[p->n++] = (struct op_expr__pat_tok){ch, (uint8_t)(j - i), 0, 0};
			i = j;
			continue;
		}
		/* A literal: one character, or a quoted run ('' is a quote). */
		char buf[OP_EXPR__PAT_MAX];
		size_t bn = 0;
		if (ch == '\'') {
			size_t j = i + 1;
			if (j < len && s[j] == '\'') {
				buf[bn++] = '\'';
				j++;
			} else {
				for (;;) {
					if (j >= len) {
						snprintf(msg, msglen,
						         "unterminated quote at position %zu", i);
						return false;
					}
					if (s[j] == '\'') {
						if (j + 1 < len && s[j + 1] == '\'') {
							buf[bn++] = '\'';
							j += 2;
							continue;
						}
						j++;
						break;
					}
					buf[bn++] = s[j++];
				}
			}
			i = j;
		} else {
			buf[bn++] = ch;
			i++;
		}
		if (last && last->letter == 0 && last->off + last->len == nlit) {
			last->len = (uint16_t)(last->len + bn);
		} else {
			if (p->n >= OP_EXPR__PAT_TOKS) {
				snprintf(msg, msglen, "pattern has more than %u fields",
				         OP_EXPR__PAT_TOKS);
				return false;
			}
			p->tok[p->n++] =
			    (struct op_expr__pat_tok){0, 0, (uint16_t)nlit, (uint16_t)bn};
		}
		memcpy(p->lit + nlit, buf, bn);
		nlit += bn;
	}
	return true;
}

/* Tokens that can be formatted but not parsed back. */
bool op_expr__pattern_parseable(const struct op_expr__pattern *p, char *msg, size_t msglen)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct op_expr__pat_tok *t = &p->tok[i];
		if ((t->letter == 'M' || t->letter == 'E') && t->count == 5) {
			snprintf(msg, msglen, "'%c%c%c%c%c' (a one-letter name) cannot be parsed",
			         t->letter, t->letter, t->letter, t->letter, t->letter);
			return false;
		}
	}
	return true;
}

/* ---- formatting ---- */

static op_err add_num(struct op_buf *b, int64_t v, unsigned width)
{
	return op_buf_addf(b, "%0*lld", (int)width, (long long)v);
}

op_err op_expr__pattern_format(struct op_buf *b, const struct op_expr__pattern *p,
                               const struct op_expr__bd *t, const struct op_expr__zone *z)
{
	op_err e = OP_OK;
	char tmp[40];
	for (size_t i = 0; i < p->n && e == OP_OK; i++) {
		const struct op_expr__pat_tok *k = &p->tok[i];
		unsigned n = k->count;
		switch (k->letter) {
		case 0:
			e = op_buf_add(b, p->lit + k->off, k->len);
			break;
		case 'y':
			if (n == 2)
				e = add_num(b, t->year - op_expr__floor_div(t->year, 100) * 100, 2);
			else
				e = add_num(b, t->year, n);
			break;
		case 'M':
			if (n <= 2)
				e = add_num(b, t->mon, n);
			else if (n == 3)
				e = op_buf_add(b, month_names[t->mon - 1], 3);
			else if (n == 4)
				e = op_buf_adds(b, month_names[t->mon - 1]);
			else
				e = op_buf_addc(b, month_names[t->mon - 1][0]);
			break;
		case 'd':
			e = add_num(b, t->day, n);
			break;
		case 'D':
			e = add_num(b, t->yday, n);
			break;
		case 'H':
			e = add_num(b, t->hour, n);
			break;
		case 'h':
			e = add_num(b, t->hour % 12 == 0 ? 12 : t->hour % 12, n);
			break;
		case 'k':
			e = add_num(b, t->hour == 0 ? 24 : t->hour, n);
			break;
		case 'K':
			e = add_num(b, t->hour % 12, n);
			break;
		case 'm':
			e = add_num(b, t->min, n);
			break;
		case 's':
			e = add_num(b, t->sec, n);
			break;
		case 'S': {
			int ms = t->ms;
			if (n < 3)
				e = add_num(b, ms / (n == 1 ? 100 : 10), n);
			else
				e = op_buf_addf(b, "%03d%.*s", ms, (int)(n - 3), "000000");
			break;
		}
		case 'a':
			e = op_buf_adds(b, t->hour < 12 ? "AM" : "PM");
			break;
		case 'E':
			if (n <= 3)
				e = op_buf_add(b, day_names[t->wday], 3);
			else if (n == 4)
				e = op_buf_adds(b, day_names[t->wday]);
			else
				e = op_buf_addc(b, day_names[t->wday][0]);
			break;
		case 'X':
		case 'x':
			e = op_buf_add(
			    b, tmp,
			    op_expr__fmt_off(tmp, sizeof(tmp), t->off, (int)n, k->letter == 'X'));
			break;
		case 'Z':
			if (n <= 3) {
				e = op_buf_add(
				    b, tmp, op_expr__fmt_off(tmp, sizeof(tmp), t->off, 2, false));
			} else if (n == 4) {
				e = op_buf_adds(b, "GMT");
				if (e == OP_OK && t->off != 0)
					e = op_buf_add(
					    b, tmp,
					    op_expr__fmt_off(tmp, sizeof(tmp), t->off, 3, false));
			} else {
				e = op_buf_add(b, tmp,
				               op_expr__fmt_off(tmp, sizeof(tmp), t->off, 3, true));
			}
			break;
		case 'z':
			e = op_buf_adds(b, t->abbr);
			break;
		case 'V':
			if (z->tz)
				e = op_buf_adds(b, op_tz_name(z->tz));
			else
				e = op_buf_add(b, tmp,
				               op_expr__fmt_off(tmp, sizeof(tmp), t->off, 3, true));
			break;
		default:
			e = OP_EINTERNAL;
			break;
		}
	}
	return e;
}

/* ---- parsing ---- */

/* Fields read from a date text; -1 (or 0) where absent. */
struct fields {
	int64_t year;
	int mon, day, yday, wday, hour, h12, pm, min, sec, ms;
	bool has_off, has_md;
	int32_t off;
	const struct op_tz *vz; /* from VV */
	char abbr[32];
	size_t pos_day, pos_yday, pos_wday, pos_hour, pos_abbr;
};

/* Sets *bad to "why" at position pos of the text; returns OP_EINVAL. */
static op_err OP_PRINTF(3, 4)
    no_match(struct op_expr__mismatch *bad, size_t pos, const char *fmt, ...)
{
	va_list ap;
	bad->pos = pos;
	va_start(ap, fmt);
	vsnprintf(bad->why, sizeof(bad->why), fmt, ap);
	va_end(ap);
	return OP_EINVAL;
}

/* Case-insensitive match of one of names (full or 3-letter) at p. */
static int match_name(struct op_expr__scan *p, const char *const *names, int n, bool full)
{
	for (int k = 0; k < n; k++) {
		size_t l = full ? strlen(names[k]) : 3;
		if (p->len - p->i >= l && strncasecmp(p->s + p->i, names[k], l) == 0) {
			p->i += l;
			return k;
		}
	}
	return -1;
}

/* Widths of a numeric field: exactly count digits, or greedy for one letter. */
static void num_widths(char letter, unsigned count, unsigned *min, unsigned *max)
{
	*min = *max = count;
	if (letter == 'y' && count != 2) {
		*min = count >= 4 ? 4 : count;
		*max = count >= 4 ? count : 4;
	} else if (letter == 'D' && count < 3) {
		*max = 3;
	} else if (count == 1 && letter != 'S') {
		*max = 2;
	}
}

/* Reads s by p's fields into f. */
static op_err parse_fields(const char *s, size_t len, const struct op_expr__pattern *p,
                           struct fields *f, struct op_expr__mismatch *bad)
{
	struct op_expr__scan sc = {s, 0, len, NULL};
	memset(f, 0, sizeof(*f));
	f->year = 1970;
	f->mon = f->day = 1;
	f->yday = f->wday = f->hour = f->h12 = f->pm = -1;
	for (size_t i = 0; i < p->n; i++) {
		const struct op_expr__pat_tok *k = &p->tok[i];
		size_t pos = sc.i;
		char ch = k->letter;
		if (ch == 0) {
			if (len - sc.i < k->len || memcmp(s + sc.i, p->lit + k->off, k->len) != 0)
				return no_match(bad, pos, "expected '%.*s'", (int)k->len,
				                p->lit + k->off);
			sc.i += k->len;
			continue;
		}
		if (ch == 'M' && k->count >= 3) {
			int m = match_name(&sc, month_names, 12, k->count == 4);
			if (m < 0)
				return no_match(bad, pos, "expected a month name");
			f->mon = m + 1;
			f->has_md = true;
			continue;
		}
		if (ch == 'E') {
			int w = match_name(&sc, day_names, 7, k->count == 4);
			if (w < 0)
				return no_match(bad, pos, "expected a day name");
			f->wday = w;
			f->pos_wday = pos;
			continue;
		}
		if (ch == 'a') {
			if (len - sc.i >= 2 && strncasecmp(s + sc.i, "AM", 2) == 0)
				f->pm = 0;
			else if (len - sc.i >= 2 && strncasecmp(s + sc.i, "PM", 2) == 0)
				f->pm = 1;
			else
				return no_match(bad, pos, "expected AM or PM");
			sc.i += 2;
			continue;
		}
		if (ch == 'X' || ch == 'x' || ch == 'Z') {
			if (!op_expr__scan_offset(&sc, true, &f->off))
				return no_match(bad, sc.i, "%s", sc.why);
			f->has_off = true;
			continue;
		}
		if (ch == 'z' || ch == 'V') {
			size_t j = sc.i;
			while (j < len &&
			       (s[j] == '/' || s[j] == '_' || s[j] == '-' || s[j] == '+' ||
			        (s[j] >= '0' && s[j] <= '9') || (s[j] >= 'A' && s[j] <= 'Z') ||
			        (s[j] >= 'a' && s[j] <= 'z')) &&
			       (ch == 'V' || s[j] != '/'))
				j++;
			if (j == sc.i)
				return no_match(bad, pos, "expected a time zone %s",
				                ch == 'z' ? "abbreviation" : "ID");
			if (ch == 'V') {
				char msg[200];
				op_err e = op_tz_get(s + sc.i, j - sc.i, &f->vz, msg, sizeof(msg));
				if (e == OP_ENOMEM)
					return e;
				if (e != OP_OK)
					return no_match(bad, pos, "%s", msg);
			} else {
				if (j - sc.i >= sizeof(f->abbr))
					return no_match(bad, pos,
					                "time zone abbreviation too long");
				memcpy(f->abbr, s + sc.i, j - sc.i);
				f->abbr[j - sc.i] = '\0';
				f->pos_abbr = pos;
			}
			sc.i = j;
			continue;
		}
		/* Numeric fields. */
		unsigned min, max, nd = 0;
		int64_t v = 0;
		num_widths(ch, k->count, &min, &max);
		while (nd < max && op_expr__scan_digit(&sc)) {
			v = v * 10 + (s[sc.i++] - '0');
			nd++;
		}
		if (nd < min) {
			sc.i = pos;
			if (min == max)
				return no_match(bad, pos, "expected %u digit%s", min,
				                min == 1 ? "" : "s");
			return no_match(bad, pos, "expected %u to %u digits", min, max);
		}
		struct {
			int64_t lo, hi;
			const char *what;
		} r = {0, 59, NULL};
		switch (ch) {
		case 'y':
			if (k->count == 2)
				v += 2000;
			r.lo = 1, r.hi = 9999, r.what = "year";
			f->year = v;
			break;
		case 'M':
			r.lo = 1, r.hi = 12, r.what = "month";
			f->mon = (int)v;
			f->has_md = true;
			break;
		case 'd':
			r.lo = 1, r.hi = 31, r.what = "day";
			f->day = (int)v;
			f->pos_day = pos;
			f->has_md = true;
			break;
		case 'D':
			r.lo = 1, r.hi = 366, r.what = "day of year";
			f->yday = (int)v;
			f->pos_yday = pos;
			break;
		case 'H':
			r.hi = 23, r.what = "hour";
			f->hour = (int)v;
			break;
		case 'k':
			r.lo = 1, r.hi = 24, r.what = "hour";
			f->hour = (int)(v % 24);
			break;
		case 'h':
			r.lo = 1, r.hi = 12, r.what = "hour";
			f->h12 = (int)(v % 12);
			break;
		case 'K':
			r.hi = 11, r.what = "hour";
			f->h12 = (int)v;
			break;
		case 'm':
			r.what = "minute";
			f->min = (int)v;
			break;
		case 's':
			r.what = "second";
			f->sec = (int)v;
			break;
		default: /* 'S' */
			r.hi = INT64_MAX;
			for (; nd > 3; nd--)
				v /= 10;
			for (; nd < 3; nd++)
				v *= 10;
			f->ms = (int)v;
			break;
		}
		if (ch == 'H' || ch == 'h' || ch == 'k' || ch == 'K')
			f->pos_hour = pos;
		if (v < r.lo || v > r.hi)
			return no_match(bad, pos, "%s %lld is out of range (%lld to %lld)", r.what,
			                (long long)v, (long long)r.lo, (long long)r.hi);
	}
	if (sc.i != len)
		return no_match(bad, sc.i, "unexpected text after the date");
	return OP_OK;
}

/* The instant of local wall time `local` in tz whose abbreviation is abbr. */
static bool local_with_abbr(const struct op_tz *tz, int64_t local, const char *abbr, int64_t *out)
{
	int32_t cand[3] = {op_tz_offset(tz, local - 86400, NULL), op_tz_offset(tz, local, NULL),
	                   op_tz_offset(tz, local + 86400, NULL)};
	bool found = false;
	for (int i = 0; i < 3; i++) {
		const char *a;
		int64_t t = local - cand[i];
		if (op_tz_offset(tz, t, &a) == cand[i] && strcasecmp(a, abbr) == 0 &&
		    (!found || t < *out)) {
			*out = t;
			found = true;
		}
	}
	return found;
}

/* Turns parsed fields into an instant (ms); zone tz for wall times. */
static op_err fields_instant(struct fields *f, const struct op_tz *tz, int64_t *ms,
                             struct op_expr__mismatch *bad)
{
	*ms = 0;
	if (f->yday >= 0) {
		int64_t jan1 = op_days_from_civil(f->year, 1, 1);
		if (f->yday > (op_expr__is_leap(f->year) ? 366 : 365))
			return no_match(bad, f->pos_yday, "%lld has no day %d", (long long)f->year,
			                f->yday);
		int64_t y;
		unsigned m, d;
		op_civil_from_days(jan1 + f->yday - 1, &y, &m, &d);
		if (f->has_md && ((int)m != f->mon || (int)d != f->day))
			return no_match(bad, f->pos_yday, "day of year %d is not %04lld-%02d-%02d",
			                f->yday, (long long)f->year, f->mon, f->day);
		f->mon = (int)m;
		f->day = (int)d;
	}
	if ((unsigned)f->day > op_expr__month_days(f->year, (unsigned)f->mon))
		return no_match(bad, f->pos_day, "day %d is out of range for %04lld-%02d", f->day,
		                (long long)f->year, f->mon);
	int64_t days = op_days_from_civil(f->year, (unsigned)f->mon, (unsigned)f->day);
	if (f->wday >= 0) {
		int wd = (int)(days + 4 - op_expr__floor_div(days + 4, 7) * 7);
		if (wd != f->wday)
			return no_match(bad, f->pos_wday, "%04lld-%02d-%02d is a %s, not a %s",
			                (long long)f->year, f->mon, f->day, day_names[wd],
			                day_names[f->wday]);
	}
	int hour = f->hour >= 0 ? f->hour : 0;
	if (f->h12 >= 0) {
		int h = f->h12 + (f->pm == 1 ? 12 : 0);
		if (f->hour >= 0 && f->hour != h)
			return no_match(bad, f->pos_hour, "conflicting hours");
		hour = h;
	} else if (f->pm >= 0 && f->hour >= 0 && (f->hour >= 12) != (f->pm == 1)) {
		return no_match(bad, f->pos_hour, "hour %d conflicts with %s", f->hour,
		                f->pm ? "PM" : "AM");
	}
	int64_t local = days * 86400 + hour * 3600 + f->min * 60 + f->sec;
	int64_t sec = 0;
	if (f->has_off) {
		sec = local - f->off;
	} else if (f->vz) {
		struct op_expr__zone z = {f->vz, 0};
		sec = op_expr__zone_local(&z, local, NULL);
	} else if (f->abbr[0] && (strcmp(f->abbr, "UTC") == 0 || strcmp(f->abbr, "GMT") == 0 ||
	                          strcmp(f->abbr, "Z") == 0)) {
		sec = local;
	} else if (f->abbr[0]) {
		if (!local_with_abbr(tz, local, f->abbr, &sec))
			return no_match(bad, f->pos_abbr,
			                "'%s' is not in use in time zone %s at that time", f->abbr,
			                op_tz_name(tz));
	} else {
		struct op_expr__zone z = {tz, 0};
		sec = op_expr__zone_local(&z, local, NULL);
	}
	*ms = sec * 1000 + f->ms;
	return OP_OK;
}

op_err op_expr__pattern_parse(const char *s, size_t len, const struct op_expr__pattern *p,
                              const struct op_tz *tz, int64_t *ms, struct op_expr__mismatch *bad)
{
	struct fields f;
	*ms = 0;
	op_err e = parse_fields(s, len, p, &f, bad);
	if (e == OP_OK)
		e = fields_instant(&f, tz, ms, bad);
	return e;
}
