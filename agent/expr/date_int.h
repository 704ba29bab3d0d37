/*
 * Private to the date files of agent/expr: the types and helpers shared by
 * the date functions (fn_date.c), ISO 8601 dates, offsets and durations
 * (date_iso.c) and Java-like date patterns (date_pat.c). Nothing here knows
 * about evaluation contexts or calls: errors come back as a status, or as a
 * reason and a position, and fn_date.c words them for the user.
 *
 * Key invariant: an instant is milliseconds since 1970-01-01T00:00:00Z
 * between OP_EXPR__DATE_MIN_MS and OP_EXPR__DATE_MAX_MS. Every function
 * here works on its arguments and caller storage only (and the zone cache
 * of agent/core/tz.c, which is thread-safe): no global is written, so any
 * thread may call it.
 */
#ifndef OP_EXPR_DATE_INT_H
#define OP_EXPR_DATE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/buf.h"
#include "agent/core/err.h"
#include "agent/core/tz.h"
#include "agent/expr/expr_int.h"

/* 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z. */
#define OP_EXPR__DATE_MIN_MS (-62135596800000LL)
#define OP_EXPR__DATE_MAX_MS (253402300799999LL)
/* Longest pattern and most fields in one. */
#define OP_EXPR__PAT_MAX  256u
#define OP_EXPR__PAT_TOKS 128u

static inline int64_t op_expr__floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static inline bool op_expr__is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static inline unsigned op_expr__month_days(int64_t y, unsigned m)
{
	static const unsigned char n[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && op_expr__is_leap(y) ? 29 : n[m - 1];
}

/* ---- zones and broken-down times (date_iso.c) ---- */

/* A zone: an op_tz, or (tz == NULL) a fixed offset read from a date string. */
struct op_expr__zone {
	const struct op_tz *tz;
	int32_t off;
};

/* Local fields of an instant in a zone. */
struct op_expr__bd {
	int64_t year;
	unsigned mon, day;
	int hour, min, sec, ms, wday, yday; /* wday 0 = Sunday, yday from 1 */
	int64_t days;                       /* local days since 1970-01-01 */
	int32_t off;
	const char *abbr; /* may point into abbrbuf: never copy a struct op_expr__bd */
	char abbrbuf[16];
};

/*
 * Writes offset off (seconds) into out: style 1 "+01" / "+0130", 2 "+0100",
 * 3 "+01:00"; zero as "Z" when z. Returns the length written.
 */
size_t op_expr__fmt_off(char *out, size_t outlen, int32_t off, int style, bool z);
/* The local fields of instant ms in z. */
void op_expr__breakdown(const struct op_expr__zone *z, int64_t ms, struct op_expr__bd *t);
/*
 * The instant (seconds) of local wall time `local` in z. pref, when
 * non-NULL, is an offset to keep if it is valid there (java.time keeps the
 * offset across an overlap); otherwise op_tz_local's rule applies.
 */
int64_t op_expr__zone_local(const struct op_expr__zone *z, int64_t local, const int32_t *pref);

/* ---- ISO 8601 text (date_iso.c) ---- */

/* The fields of an ISO 8601 date as written. */
struct op_expr__iso {
	int64_t year;
	unsigned mon, day;
	int hour, min, sec, ms;
	bool has_off;
	int32_t off;
	const char *zone; /* inside [...], not NUL-terminated */
	size_t zlen;
};

/* A cursor over text that is not NUL-terminated. */
struct op_expr__scan {
	const char *s;
	size_t i, len;
	const char *why; /* set on failure, with i at the problem */
};

static inline bool op_expr__scan_digit(const struct op_expr__scan *p)
{
	return p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9';
}

/*
 * The "2026-03-29T10:15:30.123+02:00" form, with "[bracket]" appended when
 * bracket is non-NULL; "Z" for a zero offset. Returns the length written
 * (cut to fit outlen).
 */
size_t op_expr__iso_write(char *out, size_t outlen, const struct op_expr__bd *t,
                          const char *bracket);
/*
 * Reads yyyy-MM-dd[(T| )HH:mm[:ss[.fraction]]][offset][[Zone]], all of the
 * text from p->i. Lenient in the ways RFC 3339 allows (lower-case t/z, a
 * space); the fraction is cut to milliseconds. On false p->why says what is
 * wrong and p->i where.
 */
bool op_expr__iso_read(struct op_expr__scan *p, struct op_expr__iso *o) OP_WUR;
/*
 * "Z", or [+-]hh[[:]mm[[:]ss]] up to 18 hours (also after "GMT"/"UTC" if
 * gmt), as an offset in seconds. On false p->why says what is wrong.
 */
bool op_expr__scan_offset(struct op_expr__scan *p, bool gmt, int32_t *off) OP_WUR;
/* An all-digit string (optionally signed) as epoch milliseconds. */
bool op_expr__epoch_text(const char *s, size_t len, int64_t *ms) OP_WUR;

/* ---- durations (date_iso.c) ---- */

struct op_expr__dur {
	int64_t months; /* years and months */
	int64_t days;   /* weeks and days */
	int64_t ms;     /* the time part: exact elapsed time */
};

/*
 * ISO 8601 durations: [+-]P[nY][nM][nW][nD][T[nH][nM][n[.f]S]], each n
 * optionally signed, as java.time reads them. Fractions only on seconds.
 */
bool op_expr__dur_parse(const char *s, size_t len, struct op_expr__dur *d) OP_WUR;
/*
 * Adds d to instant ms, months and days on the wall clock of z. False (and
 * *out = 0) when the result is out of range.
 */
bool op_expr__dur_apply(const struct op_expr__zone *z, int64_t ms, const struct op_expr__dur *d,
                        int64_t *out) OP_WUR;

/* ---- patterns (date_pat.c) ---- */

enum op_expr__pat_kind {
	OP_EXPR__PAT_FIELDS,
	OP_EXPR__PAT_ISO,
	OP_EXPR__PAT_EPOCH,
	OP_EXPR__PAT_EPOCH_MS
};

struct op_expr__pat_tok {
	char letter; /* 0: literal lit[off .. off + len) */
	uint8_t count;
	uint16_t off, len;
};

/* A compiled pattern: "ISO", "EPOCH", "EPOCH_MS", or letters and literals. */
struct op_expr__pattern {
	uint8_t kind;
	uint16_t n;
	struct op_expr__pat_tok tok[OP_EXPR__PAT_TOKS];
	char lit[OP_EXPR__PAT_MAX];
	char src[OP_EXPR__PAT_MAX + 1];
};

/* Why a text does not match a pattern, and where (0-based). */
struct op_expr__mismatch {
	size_t pos;
	char why[160];
};

/* Compiles s; on error writes why (with a 0-based position) into msg. */
bool op_expr__pattern_compile(const char *s, size_t len, struct op_expr__pattern *p, char *msg,
                              size_t msglen) OP_WUR;
/* False (and why in msg) for tokens that can be formatted but not parsed back. */
bool op_expr__pattern_parseable(const struct op_expr__pattern *p, char *msg, size_t msglen) OP_WUR;
/* Appends t (the local fields of an instant in z) formatted by p's fields. */
op_err op_expr__pattern_format(struct op_buf *b, const struct op_expr__pattern *p,
                               const struct op_expr__bd *t, const struct op_expr__zone *z) OP_WUR;
/*
 * Reads s (len bytes) by p's fields into an instant *ms, not yet range
 * checked; wall times without an offset or zone in the text are in tz.
 * Returns OP_OK, OP_EINVAL with *bad saying why, or OP_ENOMEM.
 */
op_err op_expr__pattern_parse(const char *s, size_t len, const struct op_expr__pattern *p,
                              const struct op_tz *tz, int64_t *ms,
                              struct op_expr__mismatch *bad) OP_WUR;

#endif
