/*
 * ISO 8601 for the date functions: instants broken down into the wall-clock
 * fields of a zone and back, dates written as "2026-03-29T10:15:30.123+02:00"
 * (optionally with java.time's "[Zone/Name]" suffix), dates, offsets and
 * epoch milliseconds read from text, and durations such as "P1DT2H" read and
 * added to an instant. Zones come from agent/core/tz.c and never from libc.
 *
 * Key invariant: these are pure functions of their arguments and caller
 * storage. Readers never look past len (text is not NUL-terminated) and
 * report failure as false, with a reason and a position in the scanner
 * where there is one, never with an error text of their own: fn_date.c and
 * date_pat.c word errors for the user.
 */
#include <stdio.h>
#include <string.h>

#include "agent/expr/date_int.h"
#include "agent/expr/expr_int.h"

/* Largest number in one duration component (digits). */
#define DUR_DIGITS 10
/* Largest day count a duration may add (about 11,000 years). */
#define DUR_MAX_DAYS 4000000LL

/* ---- zones and broken-down times ---- */

size_t op_expr__fmt_off(char *out, size_t outlen, int32_t off, int style, bool z)
{
	int32_t a = off < 0 ? -off : off;
	int h = a / 3600, m = a / 60 % 60;
	char sign = off < 0 ? '-' : '+';
	int n;
	if (off == 0 && z)
		n = snprintf(out, outlen, "Z");
	else if (style == 1 && m == 0)
		n = snprintf(out, outlen, "%c%02d", sign, h);
	else if (style == 1 || style == 2)
		n = snprintf(out, outlen, "%c%02d%02d", sign, h, m);
	else
		n = snprintf(out, outlen, "%c%02d:%02d", sign, h, m);
	return n < 0 ? 0 : (size_t)n;
}

static int32_t zone_off(const struct op_expr__zone *z, int64_t sec, const char **abbr)
{
	*abbr = NULL;
	return z->tz ? op_tz_offset(z->tz, sec, abbr) : z->off;
}

void op_expr__breakdown(const struct op_expr__zone *z, int64_t ms, struct op_expr__bd *t)
{
	int64_t sec = op_expr__floor_div(ms, 1000);
	t->ms = (int)(ms - sec * 1000);
	t->off = zone_off(z, sec, &t->abbr);
	if (t->abbr == NULL) {
		if (t->off == 0)
			t->abbr = "UTC";
		else {
			op_expr__fmt_off(t->abbrbuf, sizeof(t->abbrbuf), t->off, 3, false);
			t->abbr = t->abbrbuf;
		}
	}
	int64_t local = sec + t->off;
	t->days = op_expr__floor_div(local, 86400);
	int64_t tod = local - t->days * 86400;
	t->hour = (int)(tod / 3600);
	t->min = (int)(tod / 60 % 60);
	t->sec = (int)(tod % 60);
	op_civil_from_days(t->days, &t->year, &t->mon, &t->day);
	t->wday = (int)(t->days + 4 - op_expr__floor_div(t->days + 4, 7) * 7);
	t->yday = (int)(t->days - op_days_from_civil(t->year, 1, 1) + 1);
}

int64_t op_expr__zone_local(const struct op_expr__zone *z, int64_t local, const int32_t *pref)
{
	if (z->tz == NULL)
		return local - z->off;
	if (pref) {
		int64_t t = local - *pref;
		if (op_tz_offset(z->tz, t, NULL) == *pref)
			return t;
	}
	return op_tz_local(z->tz, local);
}

/* ---- writing and reading ISO 8601 text ---- */

size_t op_expr__iso_write(char *out, size_t outlen, const struct op_expr__bd *t,
                          const char *bracket)
{
	char off[16];
	int32_t a = t->off < 0 ? -t->off : t->off;
	if (a % 60)
		snprintf(off, sizeof(off), "%c%02d:%02d:%02d", t->off < 0 ? '-' : '+', a / 3600,
		         a / 60 % 60, a % 60);
	else
		op_expr__fmt_off(off, sizeof(off), t->off, 3, true);
	int n = snprintf(out, outlen, "%04lld-%02u-%02uT%02d:%02d:%02d.%03d%s%s%s%s",
	                 (long long)t->year, t->mon, t->day, t->hour, t->min, t->sec, t->ms, off,
	                 bracket ? "[" : "", bracket ? bracket : "", bracket ? "]" : "");
	return n < 0 ? 0 : (size_t)n >= outlen ? outlen - 1 : (size_t)n;
}

/* Steps of the scanner over p->s[p->i .. p->len). */

static bool sc_eat(struct op_expr__scan *p, char ch)
{
	if (p->i < p->len && p->s[p->i] == ch) {
		p->i++;
		return true;
	}
	return false;
}

/* Exactly n digits. */
static bool sc_fixed(struct op_expr__scan *p, unsigned n, long *out, const char *why)
{
	long v = 0;
	size_t start = p->i;
	for (unsigned k = 0; k < n; k++) {
		if (!op_expr__scan_digit(p)) {
			p->i = start;
			p->why = why;
			return false;
		}
		v = v * 10 + (p->s[p->i++] - '0');
	}
	*out = v;
	return true;
}

/* A range check of a field that started at pos. */
static bool sc_range(struct op_expr__scan *p, size_t pos, long v, long lo, long hi, const char *why)
{
	if (v >= lo && v <= hi)
		return true;
	p->i = pos;
	p->why = why;
	return false;
}

bool op_expr__scan_offset(struct op_expr__scan *p, bool gmt, int32_t *off)
{
	long h, m = 0, s = 0;
	size_t start = p->i;
	if (p->i < p->len && (p->s[p->i] == 'Z' || p->s[p->i] == 'z')) {
		p->i++;
		*off = 0;
		return true;
	}
	if (gmt && p->len - p->i >= 3 &&
	    (strncmp(p->s + p->i, "GMT", 3) == 0 || strncmp(p->s + p->i, "UTC", 3) == 0)) {
		p->i += 3;
		if (p->i >= p->len || (p->s[p->i] != '+' && p->s[p->i] != '-')) {
			*off = 0;
			return true;
		}
	}
	if (p->i >= p->len || (p->s[p->i] != '+' && p->s[p->i] != '-')) {
		p->why = "expected an offset such as Z or +01:00";
		return false;
	}
	bool neg = p->s[p->i++] == '-';
	if (!sc_fixed(p, 2, &h, "expected the offset's hours as 2 digits"))
		return false;
	bool colon = sc_eat(p, ':');
	if (colon || op_expr__scan_digit(p)) {
		if (!sc_fixed(p, 2, &m, "expected the offset's minutes as 2 digits"))
			return false;
		if ((colon ? sc_eat(p, ':') : false) || (!colon && op_expr__scan_digit(p))) {
			if (!sc_fixed(p, 2, &s, "expected the offset's seconds as 2 digits"))
				return false;
		}
	}
	if (!sc_range(p, start, h * 3600 + m * 60 + s, 0, 18 * 3600, "offset beyond 18 hours") ||
	    !sc_range(p, start, m, 0, 59, "offset minutes out of range") ||
	    !sc_range(p, start, s, 0, 59, "offset seconds out of range"))
		return false;
	*off = (int32_t)((neg ? -1 : 1) * (h * 3600 + m * 60 + s));
	return true;
}

bool op_expr__iso_read(struct op_expr__scan *p, struct op_expr__iso *o)
{
	long v;
	size_t pos;
	memset(o, 0, sizeof(*o));
	pos = p->i;
	if (!sc_fixed(p, 4, &v, "expected a 4-digit year") ||
	    !sc_range(p, pos, v, 1, 9999, "year 0000 is out of range"))
		return false;
	o->year = v;
	if (!sc_eat(p, '-')) {
		p->why = "expected '-'";
		return false;
	}
	pos = p->i;
	if (!sc_fixed(p, 2, &v, "expected a 2-digit month") ||
	    !sc_range(p, pos, v, 1, 12, "month must be 01 to 12"))
		return false;
	o->mon = (unsigned)v;
	if (!sc_eat(p, '-')) {
		p->why = "expected '-'";
		return false;
	}
	pos = p->i;
	if (!sc_fixed(p, 2, &v, "expected a 2-digit day") ||
	    !sc_range(p, pos, v, 1, op_expr__month_days(o->year, o->mon),
	              "day out of range for the month"))
		return false;
	o->day = (unsigned)v;
	if (p->i < p->len && (p->s[p->i] == 'T' || p->s[p->i] == 't' || p->s[p->i] == ' ')) {
		p->i++;
		pos = p->i;
		if (!sc_fixed(p, 2, &v, "expected a 2-digit hour") ||
		    !sc_range(p, pos, v, 0, 23, "hour must be 00 to 23"))
			return false;
		o->hour = (int)v;
		if (!sc_eat(p, ':')) {
			p->why = "expected ':'";
			return false;
		}
		pos = p->i;
		if (!sc_fixed(p, 2, &v, "expected 2-digit minutes") ||
		    !sc_range(p, pos, v, 0, 59, "minutes must be 00 to 59"))
			return false;
		o->min = (int)v;
		if (sc_eat(p, ':')) {
			pos = p->i;
			if (!sc_fixed(p, 2, &v, "expected 2-digit seconds") ||
			    !sc_range(p, pos, v, 0, 59, "seconds must be 00 to 59"))
				return false;
			o->sec = (int)v;
			if (sc_eat(p, '.') || sc_eat(p, ',')) {
				unsigned nd = 0;
				int ms = 0;
				while (op_expr__scan_digit(p) && nd < 9) {
					if (nd < 3)
						ms = ms * 10 + (p->s[p->i] - '0');
					p->i++;
					nd++;
				}
				if (nd == 0) {
					p->why = "expected digits after the decimal point";
					return false;
				}
				for (; nd < 3; nd++)
					ms *= 10;
				o->ms = ms;
			}
		}
		if (p->i < p->len && p->s[p->i] != '[') {
			if (!op_expr__scan_offset(p, false, &o->off))
				return false;
			o->has_off = true;
		}
	}
	if (sc_eat(p, '[')) {
		o->zone = p->s + p->i;
		while (p->i < p->len && p->s[p->i] != ']')
			p->i++;
		o->zlen = (size_t)(p->s + p->i - o->zone);
		if (!sc_eat(p, ']')) {
			p->why = "expected ']' after the zone";
			return false;
		}
	}
	if (p->i != p->len) {
		p->why = "unexpected text after the date";
		return false;
	}
	return true;
}

/* An all-digit string (optionally signed) as epoch milliseconds. */
bool op_expr__epoch_text(const char *s, size_t len, int64_t *ms)
{
	size_t i = 0;
	bool neg = false;
	int64_t v = 0;
	if (len > 0 && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		i = 1;
	}
	if (i == len || len - i > 16)
		return false;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*ms = neg ? -v : v;
	return true;
}

/* ---- durations ---- */

bool op_expr__dur_parse(const char *s, size_t len, struct op_expr__dur *d)
{
	static const char date_units[] = "YMWD", time_units[] = "HMS";
	size_t i = 0;
	int64_t sign = 1;
	bool any = false, in_time = false;
	const char *order = date_units;
	memset(d, 0, sizeof(*d));
	if (i < len && (s[i] == '-' || s[i] == '+'))
		sign = s[i++] == '-' ? -1 : 1;
	if (i >= len || (s[i] != 'P' && s[i] != 'p'))
		return false;
	i++;
	while (i < len) {
		if ((s[i] == 'T' || s[i] == 't') && !in_time) {
			in_time = true;
			order = time_units;
			i++;
			if (i >= len)
				return false;
			continue;
		}
		int64_t nsign = 1, v = 0, frac = 0;
		unsigned nd = 0, nf = 0;
		if (s[i] == '-' || s[i] == '+')
			nsign = s[i++] == '-' ? -1 : 1;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (++nd > DUR_DIGITS)
				return false;
			v = v * 10 + (s[i++] - '0');
		}
		if (i < len && (s[i] == '.' || s[i] == ',')) {
			i++;
			while (i < len && s[i] >= '0' && s[i] <= '9') {
				if (++nf > 9)
					return false;
				if (nf <= 3)
					frac = frac * 10 + (s[i] - '0');
				i++;
			}
			if (nf == 0)
				return false;
			for (unsigned k = nf; k < 3; k++)
				frac *= 10;
		}
		if (nd == 0 || i >= len)
			return false;
		char u = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 32) : s[i];
		i++;
		const char *at = strchr(order, u);
		if (at == NULL || u == '\0')
			return false;
		if (nf && !(in_time && u == 'S'))
			return false;
		order = at + 1; /* components in order, each at most once */
		v *= nsign;
		frac *= nsign;
		any = true;
		if (!in_time) {
			if (u == 'Y')
				d->months += v * 12;
			else if (u == 'M')
				d->months += v;
			else if (u == 'W')
				d->days += v * 7;
			else
				d->days += v;
		} else {
			if (u == 'H')
				d->ms += v * 3600000;
			else if (u == 'M')
				d->ms += v * 60000;
			else
				d->ms += v * 1000 + frac;
		}
	}
	d->months *= sign;
	d->days *= sign;
	d->ms *= sign;
	return any;
}

/* Adds d to an instant, months and days on the wall clock of z. */
bool op_expr__dur_apply(const struct op_expr__zone *z, int64_t ms, const struct op_expr__dur *d,
                        int64_t *out)
{
	*out = 0;
	if (d->months != 0 || d->days != 0) {
		struct op_expr__bd t;
		op_expr__breakdown(z, ms, &t);
		int64_t total = t.year * 12 + (t.mon - 1) + d->months;
		int64_t y = op_expr__floor_div(total, 12);
		unsigned m = (unsigned)(total - y * 12) + 1;
		if (y < 1 || y > 9999 || d->days > DUR_MAX_DAYS || d->days < -DUR_MAX_DAYS)
			return false;
		unsigned day = t.day;
		if (day > op_expr__month_days(y, m))
			day = op_expr__month_days(y, m);
		int64_t days = op_days_from_civil(y, m, day) + d->days;
		int64_t local = days * 86400 + t.hour * 3600 + t.min * 60 + t.sec;
		ms = op_expr__zone_local(z, local, &t.off) * 1000 + t.ms;
	}
	ms += d->ms;
	if (ms < OP_EXPR__DATE_MIN_MS || ms > OP_EXPR__DATE_MAX_MS)
		return false;
	*out = ms;
	return true;
}
