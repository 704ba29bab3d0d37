/*
 * Date and time functions of the expression language: NOW, FORMATDATE,
 * PARSEDATE, ADDDURATION, DATEDIFF and TOEPOCH, with their compile-time
 * preparation and the reading of their arguments.
 *
 * A date is an instant with millisecond precision between 0001-01-01 and
 * 9999-12-31 (UTC), read from an ISO 8601 string with an offset (and
 * optionally a "[Zone/Name]" suffix, as java.time writes) or from a number
 * of epoch milliseconds, together with "its zone": the bracketed zone, else
 * the written offset, else UTC. ISO 8601 text and durations are in
 * date_iso.c, patterns (a subset of Java's DateTimeFormatter letters) in
 * date_pat.c; time zones come from agent/core/tz.c and never from libc.
 *
 * Key invariant: literal patterns, zones, durations and units are checked
 * once at compile time and kept in the call's aux, which is read-only after
 * compile; non-literal ones are checked at every call into stack storage,
 * so evaluation never writes shared state.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/expr/date_int.h"
#include "agent/expr/expr_int.h"

#define MS_PER_DAY 86400000LL
/* Longest date text quoted back in an error message. */
#define QUOTE_MAX 64

/* A date argument: the instant and its own zone. */
struct date {
	int64_t ms;
	struct op_expr__zone z;
	bool bracket; /* written with "[Zone]": written back that way */
};

/* The result: instant ms in z as ISO 8601 text (see op_expr__iso_write). */
static op_err ret_iso(struct op_expr__ctx *c, const struct op_expr__zone *z, int64_t ms,
                      const char *bracket, struct op_xv *out)
{
	struct op_expr__bd t;
	char buf[400];
	op_expr__breakdown(z, ms, &t);
	size_t n = op_expr__iso_write(buf, sizeof(buf), &t, bracket);
	return op_expr__xv_str_copy(c, out, buf, n);
}

/* ---- errors and date arguments ---- */

static const char *fn_name(const struct op_node *call)
{
	return call->call.fn->name;
}

/* Length and "..." suffix for quoting user text back. */
static int qlen(size_t len)
{
	return (int)(len > QUOTE_MAX ? QUOTE_MAX : len);
}

static const char *qmore(size_t len)
{
	return len > QUOTE_MAX ? "..." : "";
}

static op_err range_fail(struct op_expr__ctx *c, const struct op_node *call)
{
	return op_expr__fail(c, OP_EINVAL, "%s: date out of range (0001-01-01 to 9999-12-31 UTC)",
	                     fn_name(call));
}

static op_err zone_fail(struct op_expr__ctx *c, const struct op_node *call, size_t i, op_err e,
                        const char *msg)
{
	return op_expr__fail(c, e, "%s: argument %zu: %s", fn_name(call), i + 1, msg);
}

/*
 * Reads argument i (not null) as a date. Text without an offset is wall
 * time in deflt.
 */
static op_err want_date(struct op_expr__ctx *c, const struct op_node *call, size_t i,
                        const struct op_xv *x, const struct op_tz *deflt, struct date *d)
{
	memset(d, 0, sizeof(*d));
	d->z.tz = deflt;
	if (x->kind == OP_XV_NUM) {
		if (!isfinite(x->n) || x->n < (double)OP_EXPR__DATE_MIN_MS ||
		    x->n >= (double)OP_EXPR__DATE_MAX_MS + 1)
			return range_fail(c, call);
		d->ms = (int64_t)floor(x->n);
		return OP_OK;
	}
	if (x->kind != OP_XV_STR)
		return op_expr__fail(c, OP_EINVAL,
		                     "%s: argument %zu: expected a date (ISO 8601 text or epoch "
		                     "milliseconds), got %s",
		                     fn_name(call), i + 1, op_expr__xv_type(x));
	if (op_expr__epoch_text(x->s, x->len, &d->ms)) {
		if (d->ms < OP_EXPR__DATE_MIN_MS || d->ms > OP_EXPR__DATE_MAX_MS)
			return range_fail(c, call);
		return OP_OK;
	}
	struct op_expr__scan p = {x->s, 0, x->len, NULL};
	struct op_expr__iso o;
	if (!op_expr__iso_read(&p, &o))
		return op_expr__fail(c, OP_EINVAL,
		                     "%s: argument %zu: '%.*s%s' is not an ISO 8601 date: %s at "
		                     "position %zu",
		                     fn_name(call), i + 1, qlen(x->len), x->s, qmore(x->len), p.why,
		                     p.i);
	if (o.zone) {
		char msg[200];
		const struct op_tz *tz;
		op_err e = op_tz_get(o.zone, o.zlen, &tz, msg, sizeof(msg));
		if (e != OP_OK)
			return zone_fail(c, call, i, e, msg);
		d->z.tz = tz;
		d->bracket = true;
	} else if (o.has_off) {
		d->z.tz = NULL;
		d->z.off = o.off;
	}
	int64_t local =
	    op_days_from_civil(o.year, o.mon, o.day) * 86400 + o.hour * 3600 + o.min * 60 + o.sec;
	int64_t sec = o.has_off ? local - o.off : op_expr__zone_local(&d->z, local, NULL);
	d->ms = sec * 1000 + o.ms;
	if (d->ms < OP_EXPR__DATE_MIN_MS || d->ms > OP_EXPR__DATE_MAX_MS)
		return range_fail(c, call);
	return OP_OK;
}

/* ---- units ---- */

enum unit {
	U_NONE = -1,
	U_YEARS,
	U_MONTHS,
	U_WEEKS,
	U_DAYS,
	U_HOURS,
	U_MINUTES,
	U_SECONDS,
	U_MILLIS,
};

static const struct {
	const char *name;
	int unit;
} unit_names[] = {
    {"years", U_YEARS},         {"year", U_YEARS},         {"months", U_MONTHS},
    {"month", U_MONTHS},        {"weeks", U_WEEKS},        {"week", U_WEEKS},
    {"days", U_DAYS},           {"day", U_DAYS},           {"hours", U_HOURS},
    {"hour", U_HOURS},          {"minutes", U_MINUTES},    {"minute", U_MINUTES},
    {"seconds", U_SECONDS},     {"second", U_SECONDS},     {"millis", U_MILLIS},
    {"milliseconds", U_MILLIS}, {"millisecond", U_MILLIS}, {"ms", U_MILLIS},
};

static int unit_find(const char *s, size_t len)
{
	for (size_t i = 0; i < sizeof(unit_names) / sizeof(unit_names[0]); i++) {
		if (strlen(unit_names[i].name) == len &&
		    strncasecmp(unit_names[i].name, s, len) == 0)
			return unit_names[i].unit;
	}
	return U_NONE;
}

#define UNIT_LIST "years, months, weeks, days, hours, minutes, seconds or millis"

static const int64_t unit_ms[] = {
    [U_WEEKS] = 7 * MS_PER_DAY, [U_DAYS] = MS_PER_DAY, [U_HOURS] = 3600000,
    [U_MINUTES] = 60000,        [U_SECONDS] = 1000,    [U_MILLIS] = 1,
};

/* ---- compile-time preparation ---- */

struct aux {
	int zone_arg; /* index of the literal zone argument, or -1 */
	const struct op_tz *zone;
	int pat_arg; /* 1 when the pattern was literal, else -1 */
	struct op_expr__pattern pat;
	bool has_dur;
	struct op_expr__dur dur;
	int unit_arg; /* index of the literal unit argument, or -1 */
	int unit;
};

static void aux_free(void *a)
{
	op_free(a);
}

/* Gets (allocating on first use) the aux of call. */
static struct aux *aux_of(struct op_node *call)
{
	if (call->call.aux == NULL) {
		struct aux *a = op_calloc(1, sizeof(*a));
		if (a == NULL)
			return NULL;
		a->zone_arg = a->pat_arg = a->unit_arg = -1;
		a->unit = U_NONE;
		call->call.aux = a;
	}
	return call->call.aux;
}

static op_err nomem_err(char *err, size_t errlen)
{
	snprintf(err, errlen, "out of memory");
	return OP_ENOMEM;
}

static op_err prep_zone(struct op_node *call, size_t i, char *err, size_t errlen)
{
	const char *s;
	const struct op_tz *tz;
	char msg[200];
	if (!op_expr__lit_str(call, i, &s))
		return OP_OK;
	op_err e = op_tz_get(s, strlen(s), &tz, msg, sizeof(msg));
	if (e == OP_ENOMEM)
		return nomem_err(err, errlen);
	if (e != OP_OK)
		return op_expr__perr(err, errlen, call->col, "%s: argument %zu: %s", fn_name(call),
		                     i + 1, msg);
	struct aux *a = aux_of(call);
	if (a == NULL)
		return nomem_err(err, errlen);
	a->zone_arg = (int)i;
	a->zone = tz;
	return OP_OK;
}

static op_err prep_pattern(struct op_node *call, bool parsing, char *err, size_t errlen)
{
	const char *s;
	char msg[200];
	if (!op_expr__lit_str(call, 1, &s))
		return OP_OK;
	struct aux *a = aux_of(call);
	if (a == NULL)
		return nomem_err(err, errlen);
	if (!op_expr__pattern_compile(s, strlen(s), &a->pat, msg, sizeof(msg)) ||
	    (parsing && !op_expr__pattern_parseable(&a->pat, msg, sizeof(msg))))
		return op_expr__perr(err, errlen, call->col, "%s: bad pattern '%.*s%s': %s",
		                     fn_name(call), qlen(strlen(s)), s, qmore(strlen(s)), msg);
	a->pat_arg = 1;
	return OP_OK;
}

static op_err prep_unit(struct op_node *call, size_t i, char *err, size_t errlen)
{
	const char *s;
	if (!op_expr__lit_str(call, i, &s))
		return OP_OK;
	int u = unit_find(s, strlen(s));
	if (u == U_NONE)
		return op_expr__perr(err, errlen, call->col,
		                     "%s: argument %zu: unknown unit '%.*s%s' (expected " UNIT_LIST
		                     ")",
		                     fn_name(call), i + 1, qlen(strlen(s)), s, qmore(strlen(s)));
	struct aux *a = aux_of(call);
	if (a == NULL)
		return nomem_err(err, errlen);
	a->unit_arg = (int)i;
	a->unit = u;
	return OP_OK;
}

static op_err prepare_now(struct op_node *call, char *err, size_t errlen)
{
	return prep_zone(call, 0, err, errlen);
}

static op_err prepare_format(struct op_node *call, char *err, size_t errlen)
{
	op_err e = prep_pattern(call, false, err, errlen);
	return e != OP_OK ? e : prep_zone(call, 2, err, errlen);
}

static op_err prepare_parse(struct op_node *call, char *err, size_t errlen)
{
	op_err e = prep_pattern(call, true, err, errlen);
	return e != OP_OK ? e : prep_zone(call, 2, err, errlen);
}

static bool lit_num(const struct op_node *call, size_t i)
{
	return i < call->call.n && call->call.args[i]->kind == OP_N_CONST &&
	       cJSON_IsNumber(call->call.args[i]->k.v);
}

static op_err prepare_add(struct op_node *call, char *err, size_t errlen)
{
	const char *s;
	size_t n = call->call.n;
	if (op_expr__lit_str(call, 1, &s) && n <= 3) {
		struct op_expr__dur d;
		if (!op_expr__dur_parse(s, strlen(s), &d))
			return op_expr__perr(err, errlen, call->col,
			                     "%s: argument 2: '%.*s%s' is not an ISO 8601 duration "
			                     "(e.g. P1DT2H, PT30M, -P1M)",
			                     fn_name(call), qlen(strlen(s)), s, qmore(strlen(s)));
		struct aux *a = aux_of(call);
		if (a == NULL)
			return nomem_err(err, errlen);
		a->has_dur = true;
		a->dur = d;
		return prep_zone(call, 2, err, errlen);
	}
	if (n == 4 || (n == 3 && lit_num(call, 1))) {
		op_err e = prep_unit(call, 2, err, errlen);
		return e != OP_OK ? e : prep_zone(call, 3, err, errlen);
	}
	if (n == 2 && lit_num(call, 1))
		return op_expr__perr(err, errlen, call->col,
		                     "%s: a number of units needs the unit as argument 3 (e.g. "
		                     "ADDDURATION(date, 2, 'hours'))",
		                     fn_name(call));
	return OP_OK;
}

static op_err prepare_diff(struct op_node *call, char *err, size_t errlen)
{
	op_err e = prep_unit(call, 2, err, errlen);
	return e != OP_OK ? e : prep_zone(call, 3, err, errlen);
}

/* ---- run-time arguments ---- */

static const struct op_tz *utc(void)
{
	const struct op_tz *z = NULL;
	char msg[8];
	/* "UTC" is built in: never fails, never allocates. */
	if (op_tz_get("UTC", 3, &z, msg, sizeof(msg)) != OP_OK)
		return NULL;
	return z;
}

/* The zone argument i, or *out = NULL when absent or null. */
static op_err want_zone(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t argc, size_t i, const struct op_tz **out)
{
	const struct aux *a = call->call.aux;
	char msg[200];
	*out = NULL;
	if (i >= argc || argv[i].kind == OP_XV_NULL)
		return OP_OK;
	if (a && a->zone_arg == (int)i) {
		*out = a->zone;
		return OP_OK;
	}
	op_err e = op_expr__want_str(c, call, i, &argv[i]);
	if (e != OP_OK)
		return e;
	e = op_tz_get(argv[i].s, argv[i].len, out, msg, sizeof(msg));
	return e == OP_OK ? OP_OK : zone_fail(c, call, i, e, msg);
}

static op_err want_pattern(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                           bool parsing, struct op_expr__pattern *tmp,
                           const struct op_expr__pattern **out)
{
	const struct aux *a = call->call.aux;
	char msg[200];
	*out = NULL;
	if (a && a->pat_arg == 1) {
		*out = &a->pat;
		return OP_OK;
	}
	op_err e = op_expr__want_str(c, call, 1, &argv[1]);
	if (e != OP_OK)
		return e;
	if (!op_expr__pattern_compile(argv[1].s, argv[1].len, tmp, msg, sizeof(msg)) ||
	    (parsing && !op_expr__pattern_parseable(tmp, msg, sizeof(msg)))) {
		op_expr__fail(c, OP_EINVAL, "%s: bad pattern '%.*s%s': %s", fn_name(call),
		              qlen(argv[1].len), argv[1].s, qmore(argv[1].len), msg);
		return OP_EINVAL; /* spelled out: the analyzer cannot see fail's result */
	}
	*out = tmp;
	return OP_OK;
}

static op_err want_unit(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t i, int *out)
{
	const struct aux *a = call->call.aux;
	*out = U_NONE;
	if (a && a->unit_arg == (int)i) {
		*out = a->unit;
		return OP_OK;
	}
	op_err e = op_expr__want_str(c, call, i, &argv[i]);
	if (e != OP_OK)
		return e;
	*out = unit_find(argv[i].s, argv[i].len);
	if (*out == U_NONE) {
		op_expr__fail(c, OP_EINVAL,
		              "%s: argument %zu: unknown unit '%.*s%s' (expected " UNIT_LIST ")",
		              fn_name(call), i + 1, qlen(argv[i].len), argv[i].s,
		              qmore(argv[i].len));
		return OP_EINVAL; /* spelled out: the analyzer cannot see fail's result */
	}
	return OP_OK;
}

/* ---- NOW ---- */

static op_err fn_now(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                     size_t argc, struct op_xv *out)
{
	struct timespec ts;
	const struct op_tz *tz;
	op_err e = want_zone(c, call, argv, argc, 0, &tz);
	if (e != OP_OK)
		return e;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	struct op_expr__zone z = {tz ? tz : utc(), 0};
	return ret_iso(c, &z, ms, NULL, out);
}

/* ---- FORMATDATE ---- */

static op_err fn_format(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t argc, struct op_xv *out)
{
	struct op_expr__pattern tmp;
	const struct op_expr__pattern *p;
	const struct op_tz *tz;
	struct date d;
	op_err e;
	if (argv[0].kind == OP_XV_NULL) {
		op_expr__xv_null(out);
		return OP_OK;
	}
	if ((e = want_pattern(c, call, argv, false, &tmp, &p)) != OP_OK ||
	    (e = want_zone(c, call, argv, argc, 2, &tz)) != OP_OK ||
	    (e = want_date(c, call, 0, &argv[0], tz ? tz : utc(), &d)) != OP_OK)
		return e;
	if (p->kind == OP_EXPR__PAT_EPOCH || p->kind == OP_EXPR__PAT_EPOCH_MS) {
		op_expr__xv_num(out, (double)(p->kind == OP_EXPR__PAT_EPOCH
		                                  ? op_expr__floor_div(d.ms, 1000)
		                                  : d.ms));
		return OP_OK;
	}
	struct op_expr__zone z = d.z;
	if (tz) {
		z.tz = tz;
		z.off = 0;
	}
	if (p->kind == OP_EXPR__PAT_ISO)
		return ret_iso(c, &z, d.ms, NULL, out);
	struct op_expr__bd t;
	struct op_buf b;
	op_expr__breakdown(&z, d.ms, &t);
	op_buf_init(&b, OP_EXPR_MAX_OUT);
	e = op_expr__pattern_format(&b, p, &t, &z);
	if (e == OP_OK && b.data == NULL)
		e = op_buf_add(&b, "", 0);
	if (e != OP_OK) {
		op_buf_fini(&b);
		return op_expr__buf_fail(c, call, e);
	}
	size_t len = b.len;
	op_expr__xv_str_take(out, op_buf_take(&b), len);
	return OP_OK;
}

/* ---- PARSEDATE ---- */

/* Reports "NAME: 'text' does not match 'pattern' at position N: why". */
static op_err no_match(struct op_expr__ctx *c, const struct op_node *call, const char *s,
                       size_t len, const struct op_expr__pattern *p,
                       const struct op_expr__mismatch *bad)
{
	return op_expr__fail(c, OP_EINVAL, "%s: '%.*s%s' does not match '%s' at position %zu: %s",
	                     fn_name(call), qlen(len), s, qmore(len), p->src, bad->pos, bad->why);
}

/* EPOCH / EPOCH_MS text: a decimal number. */
static bool epoch_number(const char *s, size_t len, double *out)
{
	char buf[64];
	char *end;
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	for (size_t i = 0; i < len; i++) {
		if (!((buf[i] >= '0' && buf[i] <= '9') || buf[i] == '.' ||
		      (i == 0 && (buf[i] == '-' || buf[i] == '+'))))
			return false;
	}
	*out = strtod(buf, &end);
	return *end == '\0' && isfinite(*out);
}

static op_err fn_parse(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                       size_t argc, struct op_xv *out)
{
	struct op_expr__pattern tmp;
	const struct op_expr__pattern *p;
	const struct op_tz *tz;
	struct op_expr__zone utcz = {utc(), 0};
	int64_t ms;
	op_err e;
	if (argv[0].kind == OP_XV_NULL) {
		op_expr__xv_null(out);
		return OP_OK;
	}
	if ((e = want_pattern(c, call, argv, true, &tmp, &p)) != OP_OK ||
	    (e = want_zone(c, call, argv, argc, 2, &tz)) != OP_OK)
		return e;
	if (tz == NULL)
		tz = utcz.tz;
	if (p->kind == OP_EXPR__PAT_EPOCH || p->kind == OP_EXPR__PAT_EPOCH_MS) {
		double v = 0;
		if (argv[0].kind == OP_XV_NUM)
			v = argv[0].n;
		else if (argv[0].kind != OP_XV_STR)
			return op_expr__fail(c, OP_EINVAL,
			                     "%s: argument 1: expected a number or text, got %s",
			                     fn_name(call), op_expr__xv_type(&argv[0]));
		else if (!epoch_number(argv[0].s, argv[0].len, &v))
			return op_expr__fail(
			    c, OP_EINVAL, "%s: '%.*s%s' is not a number of %s", fn_name(call),
			    qlen(argv[0].len), argv[0].s, qmore(argv[0].len),
			    p->kind == OP_EXPR__PAT_EPOCH ? "seconds" : "milliseconds");
		v = floor(p->kind == OP_EXPR__PAT_EPOCH ? v * 1000 : v);
		if (!(v >= (double)OP_EXPR__DATE_MIN_MS && v <= (double)OP_EXPR__DATE_MAX_MS))
			return range_fail(c, call);
		return ret_iso(c, &utcz, (int64_t)v, NULL, out);
	}
	if (p->kind == OP_EXPR__PAT_ISO || argv[0].kind == OP_XV_NUM) {
		struct date d;
		e = want_date(c, call, 0, &argv[0], tz, &d);
		if (e != OP_OK)
			return e;
		return ret_iso(c, &utcz, d.ms, NULL, out);
	}
	if ((e = op_expr__want_str(c, call, 0, &argv[0])) != OP_OK)
		return e;
	struct op_expr__mismatch bad;
	e = op_expr__pattern_parse(argv[0].s, argv[0].len, p, tz, &ms, &bad);
	if (e == OP_ENOMEM)
		return op_expr__buf_fail(c, call, e);
	if (e != OP_OK)
		return no_match(c, call, argv[0].s, argv[0].len, p, &bad);
	if (ms < OP_EXPR__DATE_MIN_MS || ms > OP_EXPR__DATE_MAX_MS)
		return range_fail(c, call);
	return ret_iso(c, &utcz, ms, NULL, out);
}

/* ---- ADDDURATION ---- */

static op_err fn_add(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                     size_t argc, struct op_xv *out)
{
	const struct aux *a = call->call.aux;
	const struct op_tz *tz;
	struct date d;
	struct op_expr__dur dur;
	size_t zi;
	op_err e;
	if (argv[0].kind == OP_XV_NULL) {
		op_expr__xv_null(out);
		return OP_OK;
	}
	if (argv[1].kind == OP_XV_STR && argc <= 3) {
		zi = 2;
		if (a && a->has_dur) {
			dur = a->dur;
		} else if (!op_expr__dur_parse(argv[1].s, argv[1].len, &dur)) {
			return op_expr__fail(c, OP_EINVAL,
			                     "%s: argument 2: '%.*s%s' is not an ISO 8601 duration "
			                     "(e.g. P1DT2H, PT30M, -P1M)",
			                     fn_name(call), qlen(argv[1].len), argv[1].s,
			                     qmore(argv[1].len));
		}
	} else {
		long amount;
		int unit;
		if (argc < 3)
			return op_expr__fail(
			    c, OP_EINVAL,
			    "%s: argument 2: expected an ISO 8601 duration, or a number "
			    "followed by a unit, got %s",
			    fn_name(call), op_expr__xv_type(&argv[1]));
		zi = 3;
		if ((e = op_expr__want_int(c, call, 1, &argv[1], -1000000000000L, 1000000000000L,
		                           &amount)) != OP_OK ||
		    (e = want_unit(c, call, argv, 2, &unit)) != OP_OK)
			return e;
		memset(&dur, 0, sizeof(dur));
		if (unit == U_YEARS || unit == U_MONTHS) {
			dur.months = (int64_t)amount * (unit == U_YEARS ? 12 : 1);
		} else if (unit == U_DAYS || unit == U_WEEKS) {
			dur.days = (int64_t)amount * (unit == U_WEEKS ? 7 : 1);
		} else {
			/* |amount| <= 1e12 and a unit <= 3.6e6 ms: no overflow. */
			dur.ms = (int64_t)amount * unit_ms[unit];
		}
	}
	if ((e = want_zone(c, call, argv, argc, zi, &tz)) != OP_OK ||
	    (e = want_date(c, call, 0, &argv[0], tz ? tz : utc(), &d)) != OP_OK)
		return e;
	if (tz) {
		d.z.tz = tz;
		d.z.off = 0;
		d.bracket = false;
	}
	int64_t ms;
	if (!op_expr__dur_apply(&d.z, d.ms, &dur, &ms))
		return range_fail(c, call);
	return ret_iso(c, &d.z, ms, d.bracket ? op_tz_name(d.z.tz) : NULL, out);
}

/* ---- DATEDIFF, TOEPOCH ---- */

/* Whole calendar units (months or days) from a to b, truncated toward zero. */
static int64_t calendar_between(const struct op_expr__bd *a, const struct op_expr__bd *b,
                                bool months)
{
	int64_t n;
	int cmp;
	int64_t ta = ((int64_t)a->hour * 3600 + a->min * 60 + a->sec) * 1000 + a->ms;
	int64_t tb = ((int64_t)b->hour * 3600 + b->min * 60 + b->sec) * 1000 + b->ms;
	if (months) {
		n = (b->year * 12 + b->mon) - (a->year * 12 + a->mon);
		cmp = b->day != a->day ? (b->day < a->day ? -1 : 1) : (tb < ta ? -1 : tb > ta);
	} else {
		n = b->days - a->days;
		cmp = tb < ta ? -1 : tb > ta;
	}
	if (n > 0 && cmp < 0)
		n--;
	else if (n < 0 && cmp > 0)
		n++;
	return n;
}

static op_err fn_diff(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                      size_t argc, struct op_xv *out)
{
	const struct op_tz *tz;
	struct date a, b;
	int unit;
	op_err e;
	if (argv[0].kind == OP_XV_NULL || argv[1].kind == OP_XV_NULL) {
		op_expr__xv_null(out);
		return OP_OK;
	}
	if ((e = want_unit(c, call, argv, 2, &unit)) != OP_OK ||
	    (e = want_zone(c, call, argv, argc, 3, &tz)) != OP_OK ||
	    (e = want_date(c, call, 0, &argv[0], tz ? tz : utc(), &a)) != OP_OK ||
	    (e = want_date(c, call, 1, &argv[1], tz ? tz : utc(), &b)) != OP_OK)
		return e;
	int64_t n;
	if (unit == U_YEARS || unit == U_MONTHS || unit == U_DAYS || unit == U_WEEKS) {
		/* Calendar units on the wall clock of the first date's zone. */
		struct op_expr__zone z = a.z;
		struct op_expr__bd ta, tb;
		if (tz) {
			z.tz = tz;
			z.off = 0;
		}
		op_expr__breakdown(&z, a.ms, &ta);
		op_expr__breakdown(&z, b.ms, &tb);
		n = calendar_between(&ta, &tb, unit == U_YEARS || unit == U_MONTHS);
		n = unit == U_YEARS ? n / 12 : unit == U_WEEKS ? n / 7 : n;
	} else {
		n = (b.ms - a.ms) / unit_ms[unit];
	}
	op_expr__xv_num(out, (double)n);
	return OP_OK;
}

static op_err fn_toepoch(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                         size_t argc, struct op_xv *out)
{
	struct date d;
	(void)argc;
	if (argv[0].kind == OP_XV_NULL) {
		op_expr__xv_null(out);
		return OP_OK;
	}
	op_err e = want_date(c, call, 0, &argv[0], utc(), &d);
	if (e != OP_OK)
		return e;
	op_expr__xv_num(out, (double)d.ms);
	return OP_OK;
}

const struct op_expr__fn op_expr__fns_date[] = {
    {"NOW", 0, 1, false, fn_now, prepare_now, aux_free},
    {"FORMATDATE", 2, 3, false, fn_format, prepare_format, aux_free},
    {"PARSEDATE", 2, 3, false, fn_parse, prepare_parse, aux_free},
    {"ADDDURATION", 2, 4, false, fn_add, prepare_add, aux_free},
    {"DATEDIFF", 3, 4, false, fn_diff, prepare_diff, aux_free},
    {"TOEPOCH", 1, 1, false, fn_toepoch, NULL, NULL},
    {NULL, 0, 0, false, NULL, NULL, NULL},
};
