/*
 * Cron expressions for the schedule trigger: the parser (fields into bit
 * sets, with L, W and # kept as their own rules) and the search for fire
 * times. The search works in two layers: next_wall() finds the next
 * matching wall-clock second by pure calendar arithmetic (no zone), and
 * op_cron_next() walks real instants, jumping from match to match and
 * stopping at every offset change of the zone, where the gap and overlap
 * rules of cron.h are applied.
 *
 * Key invariant: every loop is bounded. next_wall() stops at a year limit
 * (OP_CRON_SEARCH_YEARS past the start, never past 9999), op_cron_next()
 * makes progress on each turn and gives up after a fixed number of turns,
 * so an expression that never fires (Feb 30) costs a bounded search and
 * ends in OP_ENOTFOUND.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "agent/trigger/cron.h"

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, seconds since the epoch. */
#define MIN_SEC  (-62135596800LL)
#define MAX_SEC  (253402300799LL)
#define MAX_YEAR 9999
/* Turns of op_cron_next's walk; each is a match, an offset change or a skip. */
#define MAX_TURNS 100000
/* Steps of op_cron_missed's walk to the latest missed fire time. */
#define MAX_LATEST_STEPS (1u << 20)
/* Longest number in an expression (digits). */
#define MAX_DIGITS 5

enum field { F_SEC, F_MIN, F_HOUR, F_DOM, F_MON, F_DOW, F_COUNT };

static const char *const mon_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                        "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const dow_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

struct field_spec {
	const char *name;
	int lo, hi;  /* values accepted */
	int star_hi; /* top of "*" and of "n/step" (day-of-week: 6, as 7 is Sunday again) */
	const char *const *names;
	int nnames, name_base; /* names[i] is value i + name_base */
};

static const struct field_spec specs[F_COUNT] = {
    [F_SEC] = {"second", 0, 59, 59, NULL, 0, 0},
    [F_MIN] = {"minute", 0, 59, 59, NULL, 0, 0},
    [F_HOUR] = {"hour", 0, 23, 23, NULL, 0, 0},
    [F_DOM] = {"day-of-month", 1, 31, 31, NULL, 0, 0},
    [F_MON] = {"month", 1, 12, 12, mon_names, 12, 1},
    [F_DOW] = {"day-of-week", 0, 7, 6, dow_names, 7, 0},
};

/* Macros and what they stand for. */
static const struct {
	const char *name, *expr;
} macros[] = {
    {"@yearly", "0 0 0 1 1 *"}, {"@annually", "0 0 0 1 1 *"}, {"@monthly", "0 0 0 1 * *"},
    {"@weekly", "0 0 0 * * 0"}, {"@daily", "0 0 0 * * *"},    {"@midnight", "0 0 0 * * *"},
    {"@hourly", "0 0 * * * *"},
};

/* ---- calendar ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_days(int64_t y, unsigned m)
{
	static const unsigned char n[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && is_leap(y) ? 29 : n[m - 1];
}

/* 0 = Sunday; day 0 (1970-01-01) was a Thursday. */
static int weekday(int64_t days)
{
	return (int)(days + 4 - floor_div(days + 4, 7) * 7);
}

/* ---- parser ---- */

struct parser {
	const char *s;
	size_t len;    /* the whole expression, for columns */
	size_t i, end; /* cursor and end of the current field */
	int fieldno;   /* as written: 1-based among the user's fields */
	enum field f;
	struct op_cron *c;
	char *msg;
	size_t msglen;
};

static op_err fail(struct parser *p, size_t at, const char *fmt, ...) OP_PRINTF(3, 4);

static op_err fail(struct parser *p, size_t at, const char *fmt, ...)
{
	if (p->msg == NULL || p->msglen == 0)
		return OP_EPARSE;
	int n = 0;
	if (p->fieldno > 0)
		n = snprintf(p->msg, p->msglen, "field %d (%s): ", p->fieldno, specs[p->f].name);
	if (n < 0 || (size_t)n >= p->msglen)
		return OP_EPARSE;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(p->msg + n, p->msglen - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)n + (size_t)m >= p->msglen)
		return OP_EPARSE;
	snprintf(p->msg + n + m, p->msglen - (size_t)n - (size_t)m, " (column %zu)", at + 1);
	return OP_EPARSE;
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool is_alpha(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
}

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t';
}

static char peek(const struct parser *p)
{
	return p->i < p->end ? p->s[p->i] : '\0';
}

/* A number (up to MAX_DIGITS digits) or, where the field has them, a name. */
static op_err read_value(struct parser *p, int *out)
{
	const struct field_spec *sp = &specs[p->f];
	size_t at = p->i;
	*out = 0;
	if (is_digit(peek(p))) {
		int v = 0, n = 0;
		while (is_digit(peek(p))) {
			if (++n > MAX_DIGITS)
				return fail(p, at, "number too long");
			v = v * 10 + (p->s[p->i++] - '0');
		}
		*out = v;
		return OP_OK;
	}
	if (is_alpha(peek(p)) && sp->names != NULL) {
		/* Names are three letters: "FRIL" is FRI then L. */
		if (p->i + 3 <= p->end && is_alpha(p->s[p->i + 1]) && is_alpha(p->s[p->i + 2])) {
			for (int k = 0; k < sp->nnames; k++) {
				if (strncasecmp(p->s + p->i, sp->names[k], 3) == 0) {
					p->i += 3;
					*out = k + sp->name_base;
					return OP_OK;
				}
			}
		}
		size_t n = 0;
		while (at + n < p->end && is_alpha(p->s[at + n]) && n < 16)
			n++;
		return fail(p, at, "unknown name '%.*s'", (int)n, p->s + at);
	}
	if (at >= p->end)
		return fail(p, at, "value expected at the end of the field");
	return fail(p, at, "unexpected '%c'", p->s[at]);
}

static op_err read_checked(struct parser *p, int *out)
{
	const struct field_spec *sp = &specs[p->f];
	size_t at = p->i;
	op_err e = read_value(p, out);
	if (e != OP_OK)
		return e;
	if (*out < sp->lo || *out > sp->hi)
		return fail(p, at, "%d is out of range %d-%d", *out, sp->lo, sp->hi);
	return OP_OK;
}

static void set_bit(struct op_cron *c, enum field f, int v)
{
	switch (f) {
	case F_SEC:
		c->sec |= (uint64_t)1 << v;
		break;
	case F_MIN:
		c->min |= (uint64_t)1 << v;
		break;
	case F_HOUR:
		c->hour |= (uint32_t)1 << v;
		break;
	case F_DOM:
		c->dom |= (uint32_t)1 << v;
		break;
	case F_MON:
		c->mon |= (uint16_t)(1u << v);
		break;
	default:
		c->dow |= (uint8_t)(1u << (v % 7));
		break;
	}
}

/* The item ends at ',' or at the end of the field. */
static op_err item_end(struct parser *p)
{
	if (p->i < p->end && p->s[p->i] != ',')
		return fail(p, p->i, "unexpected '%c'", p->s[p->i]);
	return OP_OK;
}

/* One element of a list: *, value, range, with a step; or L, LW, nW, nL, n#k. */
static op_err parse_item(struct parser *p)
{
	const struct field_spec *sp = &specs[p->f];
	struct op_cron *c = p->c;
	size_t at = p->i;
	int lo = 0, hi = 0, step = 1;
	bool single = false;
	op_err e;

	if (peek(p) == '?')
		return fail(p, at, "'?' must be the whole field");
	if (peek(p) == '*') {
		p->i++;
		lo = sp->lo;
		hi = sp->star_hi;
	} else if (p->f == F_DOM && (peek(p) == 'L' || peek(p) == 'l')) {
		p->i++;
		if (peek(p) == 'W' || peek(p) == 'w') {
			p->i++;
			c->dom_last_w = true;
		} else {
			c->dom_last = true;
		}
		return item_end(p);
	} else if (p->f == F_DOW && (peek(p) == 'L' || peek(p) == 'l') &&
	           (p->i + 1 == p->end || p->s[p->i + 1] == ',')) {
		return fail(p, at, "'L' needs a weekday before it, as in 5L or FRIL");
	} else {
		if ((e = read_checked(p, &lo)) != OP_OK)
			return e;
		if (p->f == F_DOM && (peek(p) == 'W' || peek(p) == 'w')) {
			p->i++;
			c->dom_w |= (uint32_t)1 << lo;
			return item_end(p);
		}
		if (p->f == F_DOW && (peek(p) == 'L' || peek(p) == 'l')) {
			p->i++;
			c->dow_last |= (uint8_t)(1u << (lo % 7));
			return item_end(p);
		}
		if (p->f == F_DOW && peek(p) == '#') {
			p->i++;
			size_t nat = p->i;
			int n;
			if (!is_digit(peek(p)))
				return fail(p, nat, "'#' needs a week number 1-5");
			if ((e = read_value(p, &n)) != OP_OK)
				return e;
			if (n < 1 || n > 5)
				return fail(p, nat, "week number %d is out of range 1-5", n);
			c->dow_nth[lo % 7] |= (uint8_t)(1u << n);
			return item_end(p);
		}
		hi = lo;
		single = true;
		if (peek(p) == '-') {
			p->i++;
			if ((e = read_checked(p, &hi)) != OP_OK)
				return e;
			/* "FRI-SUN": Sunday closes a range as 7. */
			if (p->f == F_DOW && hi == 0 && lo > 0)
				hi = 7;
			if (hi < lo)
				return fail(p, at, "range %d-%d is reversed", lo, hi);
			single = false;
		}
	}
	if (peek(p) == '/') {
		p->i++;
		size_t sat = p->i;
		int span = sp->star_hi - sp->lo + 1;
		if (!is_digit(peek(p)))
			return fail(p, sat, "'/' needs a step number");
		if ((e = read_value(p, &step)) != OP_OK)
			return e;
		if (step < 1 || step > span)
			return fail(p, sat, "step %d is out of range 1-%d", step, span);
		/* "10/5" means from 10 to the top of the field. */
		if (single)
			hi = lo > sp->star_hi ? lo : sp->star_hi;
	}
	for (int v = lo; v <= hi; v += step)
		set_bit(c, p->f, v);
	return item_end(p);
}

static op_err parse_field(struct parser *p)
{
	size_t flen = p->end - p->i;
	if (flen == 1 && (p->s[p->i] == '*' || p->s[p->i] == '?')) {
		if (p->s[p->i] == '?' && p->f != F_DOM && p->f != F_DOW)
			return fail(p, p->i, "'?' is only allowed in day-of-month and day-of-week");
		if (p->f == F_DOM)
			p->c->dom_star = true;
		if (p->f == F_DOW)
			p->c->dow_star = true;
	}
	if (p->s[p->i] == '?' && flen == 1) {
		p->i++;
		return OP_OK;
	}
	for (;;) {
		op_err e = parse_item(p);
		if (e != OP_OK)
			return e;
		if (p->i == p->end)
			return OP_OK;
		p->i++; /* the ',' */
		if (p->i == p->end || p->s[p->i] == ',')
			return fail(p, p->i, "empty list element");
	}
}

static op_err parse_fields(struct parser *p)
{
	size_t start[7], stop[7];
	int n = 0;
	size_t i = 0;
	while (i < p->len) {
		while (i < p->len && is_space(p->s[i]))
			i++;
		if (i == p->len)
			break;
		size_t b = i;
		while (i < p->len && !is_space(p->s[i]))
			i++;
		if (n < 7) {
			start[n] = b;
			stop[n] = i;
		}
		n++;
	}
	if (n != 5 && n != 6)
		return fail(p, n > 6 ? start[6] : p->len,
		            "expected 5 or 6 fields (or a macro such as @daily), got %d", n);
	int first = n == 5 ? F_MIN : F_SEC;
	if (n == 5)
		p->c->sec = 1;
	for (int k = 0; k < n; k++) {
		p->fieldno = k + 1;
		p->f = (enum field)(first + k);
		p->i = start[k];
		p->end = stop[k];
		op_err e = parse_field(p);
		if (e != OP_OK)
			return e;
	}
	p->fieldno = 0;
	p->c->every_hour = p->c->hour == 0xFFFFFFu;
	return OP_OK;
}

op_err op_cron_parse(struct op_cron *c, const char *s, size_t len, char *msg, size_t msglen)
{
	struct parser p = {.s = s, .len = len, .c = c, .msg = msg, .msglen = msglen};
	memset(c, 0, sizeof(*c));
	if (msg != NULL && msglen > 0)
		msg[0] = '\0';
	if (len > OP_CRON_MAX_LEN)
		return fail(&p, 0, "expression longer than %u bytes", OP_CRON_MAX_LEN);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 && ch != '\t')
			return fail(&p, i, "control character 0x%02x", ch);
		if (ch >= 0x7f)
			return fail(&p, i, "non-ASCII byte 0x%02x", ch);
	}
	size_t b = 0, e = len;
	while (b < e && is_space(s[b]))
		b++;
	while (e > b && is_space(s[e - 1]))
		e--;
	op_err rc;
	if (b < e && s[b] == '@') {
		size_t n = e - b;
		rc = OP_EPARSE;
		for (size_t k = 0; k < sizeof(macros) / sizeof(macros[0]); k++) {
			if (strlen(macros[k].name) == n &&
			    strncasecmp(s + b, macros[k].name, n) == 0) {
				p.s = macros[k].expr;
				p.len = strlen(p.s);
				rc = parse_fields(&p);
				break;
			}
		}
		if (rc != OP_OK && n == 7 && strncasecmp(s + b, "@reboot", 7) == 0)
			(void)fail(&p, b, "@reboot is not supported by the schedule trigger");
		else if (rc != OP_OK)
			(void)fail(&p, b, "unknown macro '%.*s'", (int)(n > 20 ? 20 : n), s + b);
	} else {
		rc = parse_fields(&p);
	}
	if (rc != OP_OK)
		memset(c, 0, sizeof(*c));
	return rc;
}

/* ---- matching wall-clock times ---- */

/* The weekday nearest day n (Mon-Fri, within the month) of a month of mdays days. */
static unsigned nearest_weekday(unsigned n, int wd_n, unsigned mdays)
{
	if (wd_n == 6)
		return n == 1 ? 3 : n - 1;
	if (wd_n == 0)
		return n == mdays ? n - 2 : n + 1;
	return n;
}

/* Day d of month m of year y, which is day number days since the epoch. */
static bool day_match(const struct op_cron *c, int64_t y, unsigned m, unsigned d, int64_t days)
{
	if (c->dom_star && c->dow_star)
		return true;
	unsigned mdays = month_days(y, m);
	int wd = weekday(days);
	bool dom = false, dow = false;
	if (!c->dom_star) {
		dom = (c->dom >> d & 1) || (c->dom_last && d == mdays);
		int wd_last = (wd + (int)(mdays - d)) % 7;
		if (c->dom_last_w && d == nearest_weekday(mdays, wd_last, mdays))
			dom = true;
		for (unsigned n = 1; c->dom_w != 0 && n <= mdays && !dom; n++) {
			if (c->dom_w >> n & 1) {
				int wd_n = ((wd + (int)n - (int)d) % 7 + 7) % 7;
				dom = d == nearest_weekday(n, wd_n, mdays);
			}
		}
	}
	if (!c->dow_star) {
		dow = (c->dow >> wd & 1) || ((c->dow_last >> wd & 1) && d + 7 > mdays) ||
		      (c->dow_nth[wd] >> ((d - 1) / 7 + 1) & 1);
	}
	if (c->dom_star)
		return dow;
	if (c->dow_star)
		return dom;
	/* Both restricted: either fires (Vixie cron). */
	return dom || dow;
}

/* The first set bit at or above `from`, or -1. */
static int next_bit(uint64_t mask, int from, int n)
{
	if (from >= n)
		return -1;
	uint64_t m = mask >> from;
	return m == 0 ? -1 : from + __builtin_ctzll(m);
}

/*
 * The first matching wall-clock second at or after w (seconds as if UTC),
 * in a year no later than limit_year. Pure calendar: no zone.
 */
static bool next_wall(const struct op_cron *c, int64_t w, int64_t limit_year, int64_t *out)
{
	int64_t days = floor_div(w, 86400);
	int sod = (int)(w - days * 86400);
	int h = sod / 3600, mi = sod / 60 % 60, s = sod % 60;
	int64_t y;
	unsigned m, d;
	op_civil_from_days(days, &y, &m, &d);
	for (;;) {
		if (y > limit_year)
			return false;
		if (!(c->mon >> m & 1)) {
			d = month_days(y, m); /* so that the next day is the 1st */
			goto next_day;
		}
		days = op_days_from_civil(y, m, d);
		if (!day_match(c, y, m, d, days))
			goto next_day;
		int nh = next_bit(c->hour, h, 24);
		if (nh < 0)
			goto next_day;
		if (nh != h) {
			h = nh;
			mi = s = 0;
		}
		int nm = next_bit(c->min, mi, 60);
		if (nm < 0) {
			h++;
			mi = s = 0;
			continue;
		}
		if (nm != mi) {
			mi = nm;
			s = 0;
		}
		int ns = next_bit(c->sec, s, 60);
		if (ns < 0) {
			mi++;
			s = 0;
			if (mi == 60) {
				h++;
				mi = 0;
			}
			continue;
		}
		*out = days * 86400 + h * 3600 + mi * 60 + ns;
		return true;
	next_day:
		h = mi = s = 0;
		if (++d > month_days(y, m)) {
			d = 1;
			if (++m > 12) {
				m = 1;
				y++;
			}
		}
	}
}

/* ---- real instants ---- */

/*
 * The first instant in (lo, hi] whose offset differs from the offset at lo,
 * or -1. Scans a day at a time and bisects the day where it changes (zones
 * do not change twice within a day).
 */
static int64_t first_change(const struct op_tz *tz, int64_t lo, int64_t hi)
{
	int32_t o = op_tz_offset(tz, lo, NULL);
	for (int64_t x = lo; x < hi;) {
		int64_t nx = hi - x > 86400 ? x + 86400 : hi;
		if (op_tz_offset(tz, nx, NULL) != o) {
			int64_t a = x, b = nx; /* offset(a) == o, offset(b) != o */
			while (b - a > 1) {
				int64_t mid = a + (b - a) / 2;
				if (op_tz_offset(tz, mid, NULL) == o)
					a = mid;
				else
					b = mid;
			}
			return b;
		}
		x = nx;
	}
	return -1;
}

op_err op_cron_next(const struct op_cron *c, const struct op_tz *tz, int64_t after_ms,
                    int64_t *next_ms)
{
	*next_ms = 0;
	int64_t t = floor_div(after_ms, 1000) + 1;
	if (t < MIN_SEC)
		t = MIN_SEC;
	if (t > MAX_SEC)
		return OP_ENOTFOUND;
	int64_t y;
	unsigned mo, d;
	op_civil_from_days(floor_div(t + op_tz_offset(tz, t, NULL), 86400), &y, &mo, &d);
	int64_t limit = y + OP_CRON_SEARCH_YEARS > MAX_YEAR ? MAX_YEAR : y + OP_CRON_SEARCH_YEARS;

	for (int turn = 0; turn < MAX_TURNS && t <= MAX_SEC; turn++) {
		int32_t o = op_tz_offset(tz, t, NULL);
		int32_t before = op_tz_offset(tz, t - 1, NULL);
		int64_t w = t + o, m;
		if (before < o) {
			/* t ends a gap: the wall times [t + before, w) never happened. */
			if (!next_wall(c, t + before, limit, &m))
				return OP_ENOTFOUND;
			if (m < w) {
				*next_ms = t * 1000;
				return OP_OK;
			}
		}
		int64_t first = op_tz_local(tz, w);
		if (first < t && !c->every_hour) {
			/*
			 * t repeats a wall time (the second pass of an overlap), which
			 * fires only for every-hour expressions: skip to the instant
			 * whose wall time is the first one not seen before.
			 */
			int64_t tr = first_change(tz, first, t);
			int64_t nt = tr < 0 ? t + 1
			                    : tr + op_tz_offset(tz, tr - 1, NULL) -
			                          op_tz_offset(tz, tr, NULL);
			t = nt > t ? nt : t + 1;
			continue;
		}
		if (!next_wall(c, w, limit, &m))
			return OP_ENOTFOUND;
		if (m == w) {
			*next_ms = t * 1000;
			return OP_OK;
		}
		/* Jump to the match, or to the offset change before it. */
		int64_t tr = first_change(tz, t, t + (m - w));
		t = tr < 0 ? t + (m - w) : tr;
	}
	return OP_ENOTFOUND;
}

op_err op_cron_missed(const struct op_cron *c, const struct op_tz *tz, int64_t last_run_ms,
                      int64_t now_ms, uint32_t *count, int64_t *latest_ms)
{
	uint32_t n = 0;
	int64_t latest = 0, t = last_run_ms, nx;
	*count = 0;
	*latest_ms = 0;
	/* No fire time lies outside years 1..9999: clamping keeps the sums below exact. */
	if (now_ms > MAX_SEC * 1000 + 999)
		now_ms = MAX_SEC * 1000 + 999;
	if (t < MIN_SEC * 1000 - 1)
		t = MIN_SEC * 1000 - 1;
	while (n < OP_CRON_MISSED_CAP && t < now_ms) {
		if (op_cron_next(c, tz, t, &nx) != OP_OK || nx > now_ms)
			break;
		n++;
		latest = t = nx;
	}
	if (n == OP_CRON_MISSED_CAP) {
		/*
		 * Too many to walk: look back from now over a doubling window
		 * until one fire time falls in it, then walk that window forward.
		 */
		for (int64_t span = 1000;; span *= 2) {
			int64_t from = now_ms - span;
			if (from <= latest)
				from = latest;
			if (op_cron_next(c, tz, from, &nx) == OP_OK && nx <= now_ms) {
				latest = nx;
				for (uint32_t k = 0; k < MAX_LATEST_STEPS; k++) {
					if (op_cron_next(c, tz, latest, &nx) != OP_OK ||
					    nx > now_ms)
						break;
					latest = nx;
				}
				break;
			}
			if (from == latest)
				break;
		}
	}
	*count = n;
	*latest_ms = latest;
	return OP_OK;
}
