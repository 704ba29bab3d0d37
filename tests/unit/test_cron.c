/*
 * Unit tests of cron expressions (agent/trigger/cron.c): the parser with
 * every syntax element and its errors, fire times in UTC against
 * hand-verified lists (weekdays checked against a calendar), the DST rules
 * in Europe/Berlin and America/New_York across the 2026 changes, L, W, #,
 * leap days, expressions that never fire, and missed-run counting.
 * Instants are written as UTC ISO strings to keep expectations readable.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/tz.h"
#include "agent/trigger/cron.h"
#include "tests/unit/test.h"

/* "2026-03-29T01:00:00Z" to milliseconds. */
static int64_t ms(const char *iso)
{
	int y, mo, d, h, mi, s;
	ck_assert_int_eq(strlen(iso), 20);
	y = (iso[0] - '0') * 1000 + (iso[1] - '0') * 100 + (iso[2] - '0') * 10 + (iso[3] - '0');
	mo = (iso[5] - '0') * 10 + (iso[6] - '0');
	d = (iso[8] - '0') * 10 + (iso[9] - '0');
	h = (iso[11] - '0') * 10 + (iso[12] - '0');
	mi = (iso[14] - '0') * 10 + (iso[15] - '0');
	s = (iso[17] - '0') * 10 + (iso[18] - '0');
	return (op_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + s) *
	       1000;
}

static void iso(int64_t t_ms, char out[32])
{
	int64_t s = t_ms / 1000, days = s / 86400, y;
	unsigned mo, d;
	int sod = (int)(s % 86400);
	op_civil_from_days(days, &y, &mo, &d);
	snprintf(out, 32, "%04d-%02u-%02uT%02d:%02d:%02dZ", (int)y, mo, d, sod / 3600,
	         sod / 60 % 60, sod % 60);
}

static const struct op_tz *zone(const char *name)
{
	const struct op_tz *z;
	char msg[128];
	ck_assert_msg(op_tz_get(name, strlen(name), &z, msg, sizeof(msg)) == OP_OK, "%s", msg);
	return z;
}

static struct op_cron parse_ok(const char *expr)
{
	struct op_cron c;
	char msg[OP_CRON_MSG_LEN];
	op_err e = op_cron_parse(&c, expr, strlen(expr), msg, sizeof(msg));
	ck_assert_msg(e == OP_OK, "'%s': %s", expr, msg);
	return c;
}

/* Field by field: the struct has padding, so memcmp would compare garbage. */
static bool cron_eq(const struct op_cron *a, const struct op_cron *b)
{
	return a->sec == b->sec && a->min == b->min && a->hour == b->hour && a->dom == b->dom &&
	       a->dom_w == b->dom_w && a->mon == b->mon && a->dow == b->dow &&
	       a->dow_last == b->dow_last && memcmp(a->dow_nth, b->dow_nth, 7) == 0 &&
	       a->dom_last == b->dom_last && a->dom_last_w == b->dom_last_w &&
	       a->dom_star == b->dom_star && a->dow_star == b->dow_star &&
	       a->every_hour == b->every_hour;
}

/* Asserts the fire times after `from` in zone, a NULL-terminated list. */
static void expect_times(const char *expr, const char *tzname, const char *from,
                         const char *const *want)
{
	struct op_cron c = parse_ok(expr);
	const struct op_tz *z = zone(tzname);
	int64_t t = ms(from), nx;
	for (int i = 0; want[i] != NULL; i++) {
		char got[32];
		ck_assert_msg(op_cron_next(&c, z, t, &nx) == OP_OK, "'%s' #%d: no fire time", expr,
		              i);
		iso(nx, got);
		ck_assert_msg(strcmp(got, want[i]) == 0, "'%s' in %s #%d: got %s, want %s", expr,
		              tzname, i, got, want[i]);
		t = nx;
	}
}

#define EXPECT(expr, tzname, from, ...)                              \
	do {                                                         \
		static const char *const w_[] = {__VA_ARGS__, NULL}; \
		expect_times((expr), (tzname), (from), w_);          \
	} while (0)

/* ---- parsing ---- */

START_TEST(parse_fields_to_sets)
{
	struct op_cron c = parse_ok("*/15 10-50/5 1,2,23 * JAN-MAR MON-FRI");
	ck_assert_uint_eq(c.sec, 1ull << 0 | 1ull << 15 | 1ull << 30 | 1ull << 45);
	uint64_t m = 0;
	for (int v = 10; v <= 50; v += 5)
		m |= 1ull << v;
	ck_assert_uint_eq(c.min, m);
	ck_assert_uint_eq(c.hour, 1u << 1 | 1u << 2 | 1u << 23);
	ck_assert(c.dom_star);
	ck_assert_uint_eq(c.dom, 0xFFFFFFFEu); /* 1..31 */
	ck_assert_uint_eq(c.mon, 1u << 1 | 1u << 2 | 1u << 3);
	ck_assert(!c.dow_star);
	ck_assert_uint_eq(c.dow, 0x3Eu); /* 1..5 */
	ck_assert(!c.every_hour);

	/* Five fields: second 0. */
	c = parse_ok("5 4 * * *");
	ck_assert_uint_eq(c.sec, 1);
	ck_assert_uint_eq(c.min, 1ull << 5);
	ck_assert_uint_eq(c.hour, 1u << 4);
	ck_assert(c.every_hour == false);
	c = parse_ok("  */10\t* * * *  ");
	ck_assert_uint_eq(c.sec, 1);
	ck_assert(c.every_hour);

	/* A single value with a step runs to the top of the field. */
	c = parse_ok("0 50/3 * * * *");
	ck_assert_uint_eq(c.min, 1ull << 50 | 1ull << 53 | 1ull << 56 | 1ull << 59);
	/* Steps over ranges of names, and 7 as Sunday. */
	c = parse_ok("0 0 0 * FEB-DEC/5 7");
	ck_assert_uint_eq(c.mon, 1u << 2 | 1u << 7 | 1u << 12);
	ck_assert_uint_eq(c.dow, 1u);
	c = parse_ok("0 0 0 * * fri-sun");
	ck_assert_uint_eq(c.dow, 1u << 5 | 1u << 6 | 1u << 0);
	c = parse_ok("0 0 0 * * */2");
	ck_assert_uint_eq(c.dow, 1u << 0 | 1u << 2 | 1u << 4 | 1u << 6);
	c = parse_ok("0 0 0-23 * * *");
	ck_assert(c.every_hour);
}
END_TEST

START_TEST(parse_special_elements)
{
	struct op_cron c = parse_ok("0 0 0 ? * *");
	ck_assert(c.dom_star && c.dow_star);
	c = parse_ok("0 0 0 L * ?");
	ck_assert(c.dom_last && !c.dom_star && c.dow_star);
	ck_assert_uint_eq(c.dom, 0);
	c = parse_ok("0 0 0 LW,1 * ?");
	ck_assert(c.dom_last_w && !c.dom_last);
	ck_assert_uint_eq(c.dom, 1u << 1);
	c = parse_ok("0 0 0 15W * ?");
	ck_assert_uint_eq(c.dom_w, 1u << 15);
	c = parse_ok("0 0 0 ? * MON#2,5L");
	ck_assert_uint_eq(c.dow_nth[1], 1u << 2);
	ck_assert_uint_eq(c.dow_last, 1u << 5);
	ck_assert_uint_eq(c.dow, 0);
	c = parse_ok("0 0 0 ? * friL,7#1");
	ck_assert_uint_eq(c.dow_last, 1u << 5);
	ck_assert_uint_eq(c.dow_nth[0], 1u << 1);

	struct op_cron d;
	static const char *const mac[][2] = {
	    {"@yearly", "0 0 0 1 1 *"}, {"@annually", "0 0 0 1 1 *"}, {"@monthly", "0 0 0 1 * *"},
	    {"@weekly", "0 0 0 * * 0"}, {"@daily", "0 0 0 * * *"},    {"@midnight", "0 0 0 * * *"},
	    {"@hourly", "0 0 * * * *"}, {" @DAILY ", "0 0 0 * * *"},
	};
	for (size_t i = 0; i < sizeof(mac) / sizeof(mac[0]); i++) {
		c = parse_ok(mac[i][0]);
		d = parse_ok(mac[i][1]);
		ck_assert_msg(cron_eq(&c, &d), "%s", mac[i][0]);
	}
}
END_TEST

START_TEST(parse_errors_name_field_and_column)
{
	static const char *const cases[][2] = {
	    {"0 0 25 * * *", "field 3 (hour): 25 is out of range 0-23 (column 5)"},
	    {"0 25 * * *", "field 2 (hour): 25 is out of range 0-23 (column 3)"},
	    {"60 * * * * *", "field 1 (second): 60 is out of range 0-59 (column 1)"},
	    {"0 0 0 0 * *", "field 4 (day-of-month): 0 is out of range 1-31 (column 7)"},
	    {"0 0 0 * 13 *", "field 5 (month): 13 is out of range 1-12 (column 9)"},
	    {"0 0 0 * * 8", "field 6 (day-of-week): 8 is out of range 0-7 (column 11)"},
	    {"0 0 0 * FOO *", "field 5 (month): unknown name 'FOO' (column 9)"},
	    {"0 0 0 * * MON-FOO", "field 6 (day-of-week): unknown name 'FOO' (column 15)"},
	    {"0 0 0 * * 5-2", "field 6 (day-of-week): range 5-2 is reversed (column 11)"},
	    {"*/0 * * * * *", "field 1 (second): step 0 is out of range 1-60 (column 3)"},
	    {"0 0 */25 * * *", "field 3 (hour): step 25 is out of range 1-24 (column 7)"},
	    {"0 0 0 * * MON#6",
	     "field 6 (day-of-week): week number 6 is out of range 1-5 (column 15)"},
	    {"0 0 0 * * MON#", "field 6 (day-of-week): '#' needs a week number 1-5 (column 15)"},
	    {"0 0 0 * * 1-",
	     "field 6 (day-of-week): value expected at the end of the field (column 13)"},
	    {"0 0/ * * * *", "field 2 (minute): '/' needs a step number (column 5)"},
	    {"0 1,,2 * * * *", "field 2 (minute): empty list element (column 5)"},
	    {"0 1, * * * *", "field 2 (minute): empty list element (column 5)"},
	    {"? * * * * *", "field 1 (second): '?' is only allowed in day-of-month and day-of-week "
	                    "(column 1)"},
	    {"0 0 0 ?,1 * *", "field 4 (day-of-month): '?' must be the whole field (column 7)"},
	    {"0 0 0 L-3 * *", "field 4 (day-of-month): unexpected '-' (column 8)"},
	    {"0 0 0 * * L", "field 6 (day-of-week): 'L' needs a weekday before it, as in 5L or "
	                    "FRIL (column 11)"},
	    {"0 0 0 5L * *", "field 4 (day-of-month): unexpected 'L' (column 8)"},
	    {"0 0 0 * JAN#1 *", "field 5 (month): unexpected '#' (column 12)"},
	    {"0 0 0 * * 1x", "field 6 (day-of-week): unexpected 'x' (column 12)"},
	    {"0 123456 * * * *", "field 2 (minute): number too long (column 3)"},
	    {"1 2 3 4", "expected 5 or 6 fields (or a macro such as @daily), got 4 (column 8)"},
	    {"", "expected 5 or 6 fields (or a macro such as @daily), got 0 (column 1)"},
	    {"0 0 0 1 1 * 2026", "expected 5 or 6 fields (or a macro such as @daily), got 7 "
	                         "(column 13)"},
	    {"@reboot", "@reboot is not supported by the schedule trigger (column 1)"},
	    {" @often", "unknown macro '@often' (column 2)"},
	    {"0 0 0 * * \x01", "control character 0x01 (column 11)"},
	    {"0 0 0 * * \xc3\xa9", "non-ASCII byte 0xc3 (column 11)"},
	};
	static const struct op_cron zero = {0};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct op_cron c;
		char msg[OP_CRON_MSG_LEN];
		memset(&c, 0xAB, sizeof(c));
		op_err e = op_cron_parse(&c, cases[i][0], strlen(cases[i][0]), msg, sizeof(msg));
		ck_assert_msg(e == OP_EPARSE, "'%s' parsed", cases[i][0]);
		ck_assert_str_eq(msg, cases[i][1]);
		/* Nothing half applied. */
		ck_assert(cron_eq(&c, &zero));
	}
	/* Length is respected: text past len is not read. */
	struct op_cron c;
	char msg[OP_CRON_MSG_LEN];
	ck_assert_int_eq(op_cron_parse(&c, "0 0 0 * * *garbage", 11, msg, sizeof(msg)), OP_OK);
	/* A short message buffer truncates, never overflows; no buffer is fine. */
	char small[8];
	ck_assert_int_eq(op_cron_parse(&c, "0 0 25 * * *", 12, small, sizeof(small)), OP_EPARSE);
	ck_assert_str_eq(small, "field 3");
	ck_assert_int_eq(op_cron_parse(&c, "0 0 25 * * *", 12, NULL, 0), OP_EPARSE);
	char big[OP_CRON_MAX_LEN + 2];
	memset(big, ' ', sizeof(big));
	ck_assert_int_eq(op_cron_parse(&c, big, sizeof(big), msg, sizeof(msg)), OP_EPARSE);
	ck_assert_str_eq(msg, "expression longer than 1024 bytes (column 1)");
}
END_TEST

/* ---- fire times in UTC ---- */

START_TEST(next_basic_lists)
{
	EXPECT("*/15 * * * * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T00:00:15Z",
	       "2026-01-01T00:00:30Z", "2026-01-01T00:00:45Z", "2026-01-01T00:01:00Z");
	/* Strictly after: a start on a fire time skips it; milliseconds count. */
	struct op_cron c = parse_ok("* * * * * *");
	int64_t nx;
	ck_assert_int_eq(op_cron_next(&c, zone("UTC"), ms("2026-01-01T00:00:00Z") + 999, &nx),
	                 OP_OK);
	ck_assert_int_eq(nx, ms("2026-01-01T00:00:01Z"));
	ck_assert_int_eq(op_cron_next(&c, zone("UTC"), ms("2026-01-01T00:00:00Z") - 1, &nx), OP_OK);
	ck_assert_int_eq(nx, ms("2026-01-01T00:00:00Z"));

	EXPECT("0 10-50/20 9-10 * * *", "UTC", "2026-05-05T09:30:00Z", "2026-05-05T09:50:00Z",
	       "2026-05-05T10:10:00Z", "2026-05-05T10:30:00Z", "2026-05-05T10:50:00Z",
	       "2026-05-06T09:10:00Z");
	/* Classic five fields: weekdays at 08:30 (2026-01-01 is a Thursday). */
	EXPECT("30 8 * * MON-FRI", "UTC", "2026-01-01T12:00:00Z", "2026-01-02T08:30:00Z",
	       "2026-01-05T08:30:00Z", "2026-01-06T08:30:00Z");
	/* Month rolls and year rolls. */
	EXPECT("0 0 0 31 * *", "UTC", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z",
	       "2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z");
	EXPECT("@yearly", "UTC", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z",
	       "2028-01-01T00:00:00Z");
	EXPECT("@monthly", "UTC", "2026-12-15T00:00:00Z", "2027-01-01T00:00:00Z",
	       "2027-02-01T00:00:00Z");
	/* @weekly is Sunday midnight: 2026-01-04 is a Sunday. */
	EXPECT("@weekly", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z",
	       "2026-01-11T00:00:00Z");
	EXPECT("@hourly", "UTC", "2026-12-31T22:30:00Z", "2026-12-31T23:00:00Z",
	       "2027-01-01T00:00:00Z");
	EXPECT("59 59 23 31 12 *", "UTC", "2026-06-01T00:00:00Z", "2026-12-31T23:59:59Z",
	       "2027-12-31T23:59:59Z");
	/* Sunday as 0 and as 7. */
	EXPECT("0 0 12 * * 7", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T12:00:00Z",
	       "2026-01-11T12:00:00Z");
	/* A fixed-offset zone: 09:00 at +05:30 is 03:30Z. */
	EXPECT("0 0 9 * * *", "+05:30", "2026-01-01T00:00:00Z", "2026-01-01T03:30:00Z",
	       "2026-01-02T03:30:00Z");
}
END_TEST

START_TEST(next_dom_dow_vixie_rule)
{
	/* Both restricted: the 1st, the 15th, and every Friday. */
	EXPECT("0 0 13 1,15 * FRI", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T13:00:00Z",
	       "2026-01-02T13:00:00Z", "2026-01-09T13:00:00Z", "2026-01-15T13:00:00Z",
	       "2026-01-16T13:00:00Z", "2026-01-23T13:00:00Z", "2026-01-30T13:00:00Z",
	       "2026-02-01T13:00:00Z");
	/* Only one restricted: that one alone decides. */
	EXPECT("0 0 13 13 * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-13T13:00:00Z",
	       "2026-02-13T13:00:00Z");
	EXPECT("0 0 13 ? * FRI", "UTC", "2026-01-01T00:00:00Z", "2026-01-02T13:00:00Z",
	       "2026-01-09T13:00:00Z");
	/* "*" with a step counts as restricted: days 1, 11, 21, 31, or Mondays. */
	EXPECT("0 0 0 */10 * MON", "UTC", "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z",
	       "2026-01-11T00:00:00Z", "2026-01-12T00:00:00Z", "2026-01-19T00:00:00Z",
	       "2026-01-21T00:00:00Z", "2026-01-26T00:00:00Z", "2026-01-31T00:00:00Z",
	       "2026-02-01T00:00:00Z");
}
END_TEST

START_TEST(next_last_nth_nearest)
{
	/* L: Jan 31, Feb 28 (2026), Mar 31, Apr 30. */
	EXPECT("0 0 12 L * ?", "UTC", "2026-01-01T00:00:00Z", "2026-01-31T12:00:00Z",
	       "2026-02-28T12:00:00Z", "2026-03-31T12:00:00Z", "2026-04-30T12:00:00Z");
	EXPECT("0 0 12 L 2 ?", "UTC", "2027-06-01T00:00:00Z", "2028-02-29T12:00:00Z",
	       "2029-02-28T12:00:00Z");
	/* Second Monday: Jan 12, Feb 9, Mar 9 2026. */
	EXPECT("0 0 9 ? * MON#2", "UTC", "2026-01-01T00:00:00Z", "2026-01-12T09:00:00Z",
	       "2026-02-09T09:00:00Z", "2026-03-09T09:00:00Z");
	/* Fifth Friday: only in months that have one (Jan, May, Jul, Oct 2026). */
	EXPECT("0 0 9 ? * 5#5", "UTC", "2026-01-01T00:00:00Z", "2026-01-30T09:00:00Z",
	       "2026-05-29T09:00:00Z", "2026-07-31T09:00:00Z", "2026-10-30T09:00:00Z");
	/* Last Friday: Jan 30, Feb 27, Mar 27 2026. */
	EXPECT("0 0 0 ? * 5L", "UTC", "2026-01-01T00:00:00Z", "2026-01-30T00:00:00Z",
	       "2026-02-27T00:00:00Z", "2026-03-27T00:00:00Z");
	/* Thursday Dec 31 2026: the last Friday is the 25th, six days before the end. */
	EXPECT("0 0 0 ? * FRIL", "UTC", "2026-12-01T00:00:00Z", "2026-12-25T00:00:00Z",
	       "2027-01-29T00:00:00Z");
	/* 15W: Thu Jan 15; Feb 15 and Mar 15 are Sundays, so Mon 16th; Wed Apr 15. */
	EXPECT("0 0 0 15W * ?", "UTC", "2026-01-01T00:00:00Z", "2026-01-15T00:00:00Z",
	       "2026-02-16T00:00:00Z", "2026-03-16T00:00:00Z", "2026-04-15T00:00:00Z");
	/* 1W never leaves the month: Aug 1 2026 is a Saturday, so Mon Aug 3. */
	EXPECT("0 0 0 1W * ?", "UTC", "2026-07-15T00:00:00Z", "2026-08-03T00:00:00Z",
	       "2026-09-01T00:00:00Z");
	/* 31W: May 31 2026 is a Sunday, so Fri May 29; months without a 31st are skipped. */
	EXPECT("0 0 0 31W * ?", "UTC", "2026-04-01T00:00:00Z", "2026-05-29T00:00:00Z",
	       "2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z");
	/* LW: Sat Jan 31 gives Fri 30th, Sat Feb 28 gives Fri 27th, Tue Mar 31. */
	EXPECT("0 0 0 LW * ?", "UTC", "2026-01-01T00:00:00Z", "2026-01-30T00:00:00Z",
	       "2026-02-27T00:00:00Z", "2026-03-31T00:00:00Z");
}
END_TEST

START_TEST(next_leap_days_and_never)
{
	EXPECT("0 0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z",
	       "2032-02-29T00:00:00Z", "2036-02-29T00:00:00Z");
	/* 2100 is not a leap year; 2000 was. */
	EXPECT("0 0 0 29 2 *", "UTC", "2097-01-01T00:00:00Z", "2104-02-29T00:00:00Z");
	EXPECT("0 0 0 29 FEB *", "UTC", "1999-01-01T00:00:00Z", "2000-02-29T00:00:00Z",
	       "2004-02-29T00:00:00Z");

	static const char *const never[] = {"0 0 0 30 2 *", "0 0 0 31 4,6,9,11 *", "0 0 0 30W 2 ?",
	                                    "0 0 0 31W 2,4 ?"};
	for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
		struct op_cron c = parse_ok(never[i]);
		int64_t nx = 42;
		ck_assert_int_eq(
		    op_cron_next(&c, zone("Europe/Berlin"), ms("2026-01-01T00:00:00Z"), &nx),
		    OP_ENOTFOUND);
		ck_assert_int_eq(nx, 0);
	}
	/* The end of the calendar: nothing after 9999-12-31T23:59:59Z. */
	struct op_cron c = parse_ok("* * * * * *");
	int64_t nx;
	ck_assert_int_eq(op_cron_next(&c, zone("UTC"), ms("9999-12-31T23:59:58Z"), &nx), OP_OK);
	ck_assert_int_eq(nx, ms("9999-12-31T23:59:59Z"));
	ck_assert_int_eq(op_cron_next(&c, zone("UTC"), ms("9999-12-31T23:59:59Z"), &nx),
	                 OP_ENOTFOUND);
	ck_assert_int_eq(op_cron_next(&c, zone("UTC"), INT64_MAX, &nx), OP_ENOTFOUND);
	ck_assert_int_eq(op_cron_next(&c, zone("UTC"), INT64_MIN, &nx), OP_OK);
	ck_assert_int_eq(nx, ms("0001-01-01T00:00:00Z"));
	/* No leap day is left before the end of 9999. */
	c = parse_ok("0 0 0 29 2 *");
	ck_assert_int_eq(op_cron_next(&c, zone("UTC"), ms("9997-01-01T00:00:00Z"), &nx),
	                 OP_ENOTFOUND);
}
END_TEST

/* ---- time zones and DST ---- */

START_TEST(dst_berlin)
{
	/* 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00Z. 02:30 does not exist. */
	EXPECT("0 30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", "2026-03-28T01:30:00Z",
	       "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z");
	/* A whole missing hour of matches fires once, at 03:00 CEST. */
	EXPECT("0 * 2 * * *", "Europe/Berlin", "2026-03-29T00:59:00Z", "2026-03-29T01:00:00Z",
	       "2026-03-30T00:00:00Z", "2026-03-30T00:01:00Z");
	/* Hourly across the gap: every real hour, 03:00 CEST once. */
	EXPECT("0 0 * * * *", "Europe/Berlin", "2026-03-28T23:30:00Z", "2026-03-29T00:00:00Z",
	       "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z");
	/* 09:00 local moves from 08:00Z to 07:00Z. */
	EXPECT("0 0 9 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z", "2026-03-28T08:00:00Z",
	       "2026-03-29T07:00:00Z");

	/* 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00Z; 02:xx happens twice. */
	EXPECT("0 30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z",
	       "2026-10-26T01:30:00Z");
	/* Starting inside the repeat does not fire the second 02:30 again. */
	EXPECT("0 30 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z", "2026-10-26T01:30:00Z");
	/* Hourly across the overlap: every real hour, 02:00 local twice. */
	EXPECT("0 0 * * * *", "Europe/Berlin", "2026-10-24T22:30:00Z", "2026-10-24T23:00:00Z",
	       "2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z",
	       "2026-10-25T03:00:00Z");
	/* Every 20 minutes with a fixed hour: the repeated 02:xx fires once. */
	EXPECT("0 */20 2 * * *", "Europe/Berlin", "2026-10-24T23:50:00Z", "2026-10-25T00:00:00Z",
	       "2026-10-25T00:20:00Z", "2026-10-25T00:40:00Z", "2026-10-26T01:00:00Z");
	/* Every 20 minutes in every hour: by real time through the repeat. */
	EXPECT("0 */20 * * * *", "Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-25T00:40:00Z",
	       "2026-10-25T01:00:00Z", "2026-10-25T01:20:00Z", "2026-10-25T01:40:00Z",
	       "2026-10-25T02:00:00Z");
	/* A wall time in the repeat is caught even from just before the change. */
	EXPECT("0 15 * * * *", "Europe/Berlin", "2026-10-25T00:59:30Z", "2026-10-25T01:15:00Z",
	       "2026-10-25T02:15:00Z");
}
END_TEST

START_TEST(dst_new_york)
{
	/* 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00Z. */
	EXPECT("0 30 2 * * *", "America/New_York", "2026-03-07T00:00:00Z", "2026-03-07T07:30:00Z",
	       "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z");
	EXPECT("0 0 * * * *", "America/New_York", "2026-03-08T05:30:00Z", "2026-03-08T06:00:00Z",
	       "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z");
	/* 2026-11-01: 02:00 EDT falls back to 01:00 EST at 06:00Z; 01:30 fires at EDT only. */
	EXPECT("0 30 1 * * *", "America/New_York", "2026-10-31T00:00:00Z", "2026-10-31T05:30:00Z",
	       "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z");
	EXPECT("0 0 * * * *", "America/New_York", "2026-11-01T04:30:00Z", "2026-11-01T05:00:00Z",
	       "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z");
	/* Every second of 01:xx: the hour runs once, the repeat is skipped whole. */
	EXPECT("* * 1 * * *", "America/New_York", "2026-11-01T05:59:58Z", "2026-11-01T05:59:59Z",
	       "2026-11-02T06:00:00Z");
}
END_TEST

/* ---- missed runs ---- */

START_TEST(missed_runs)
{
	struct op_cron c = parse_ok("0 0 * * * *");
	const struct op_tz *utc = zone("UTC");
	uint32_t n = 7;
	int64_t latest = 7;
	/* Down from 10:00 (last run) to 13:30: 11:00, 12:00 and 13:00 missed. */
	ck_assert_int_eq(op_cron_missed(&c, utc, ms("2026-01-01T10:00:00Z"),
	                                ms("2026-01-01T13:30:00Z"), &n, &latest),
	                 OP_OK);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(latest, ms("2026-01-01T13:00:00Z"));
	/* A fire time equal to now counts as missed. */
	ck_assert_int_eq(op_cron_missed(&c, utc, ms("2026-01-01T10:00:00Z"),
	                                ms("2026-01-01T11:00:00Z"), &n, &latest),
	                 OP_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(latest, ms("2026-01-01T11:00:00Z"));
	/* Nothing missed, and now before the last run. */
	ck_assert_int_eq(op_cron_missed(&c, utc, ms("2026-01-01T10:00:00Z"),
	                                ms("2026-01-01T10:59:59Z"), &n, &latest),
	                 OP_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(latest, 0);
	ck_assert_int_eq(op_cron_missed(&c, utc, ms("2026-01-01T10:00:00Z"),
	                                ms("2026-01-01T09:00:00Z"), &n, &latest),
	                 OP_OK);
	ck_assert_uint_eq(n, 0);
	/* Across the Berlin overlap an hourly job missed 4 real hours. */
	ck_assert_int_eq(op_cron_missed(&c, zone("Europe/Berlin"), ms("2026-10-24T22:00:00Z"),
	                                ms("2026-10-25T02:00:00Z"), &n, &latest),
	                 OP_OK);
	ck_assert_uint_eq(n, 4);
	ck_assert_int_eq(latest, ms("2026-10-25T02:00:00Z"));

	/* A day down with an every-second job: capped, latest is still exact. */
	c = parse_ok("* * * * * *");
	ck_assert_int_eq(op_cron_missed(&c, utc, ms("2026-01-01T00:00:00Z"),
	                                ms("2026-01-02T00:00:00Z") + 500, &n, &latest),
	                 OP_OK);
	ck_assert_uint_eq(n, OP_CRON_MISSED_CAP);
	ck_assert_int_eq(latest, ms("2026-01-02T00:00:00Z"));
	/* Bursts: every second of 00:xx, down for three days until noon. */
	c = parse_ok("* * 0 * * *");
	ck_assert_int_eq(op_cron_missed(&c, utc, ms("2026-01-01T00:00:00Z"),
	                                ms("2026-01-04T12:00:00Z"), &n, &latest),
	                 OP_OK);
	ck_assert_uint_eq(n, OP_CRON_MISSED_CAP);
	ck_assert_int_eq(latest, ms("2026-01-04T00:59:59Z"));
	/* An expression that never fires missed nothing. */
	c = parse_ok("0 0 0 30 2 *");
	ck_assert_int_eq(op_cron_missed(&c, utc, ms("2026-01-01T00:00:00Z"),
	                                ms("2036-01-01T00:00:00Z"), &n, &latest),
	                 OP_OK);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(latest, 0);
}
END_TEST

/* ---- threads ---- */

struct shared {
	const struct op_cron *c;
	const struct op_tz *tz;
	int64_t sum;
};

static void *walk(void *arg)
{
	struct shared *s = arg;
	int64_t t = ms("2026-01-01T00:00:00Z"), nx;
	s->sum = 0;
	for (int i = 0; i < 2000; i++) {
		if (op_cron_next(s->c, s->tz, t, &nx) != OP_OK)
			break;
		s->sum += nx / 1000 % 100000;
		t = nx;
	}
	return NULL;
}

START_TEST(one_cron_many_threads)
{
	struct op_cron c = parse_ok("0 */7 * * * *");
	struct shared s[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		s[i] = (struct shared){&c, zone("Europe/Berlin"), -1};
		ck_assert_int_eq(pthread_create(&th[i], NULL, walk, &s[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
	struct shared one = {&c, zone("Europe/Berlin"), -1};
	walk(&one);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(s[i].sum, one.sum);
	ck_assert_int_ne(one.sum, 0);
}
END_TEST

static Suite *cron_suite(void)
{
	Suite *s = suite_create("cron");
	TCase *tc = tcase_create("cron");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, parse_fields_to_sets);
	tcase_add_test(tc, parse_special_elements);
	tcase_add_test(tc, parse_errors_name_field_and_column);
	tcase_add_test(tc, next_basic_lists);
	tcase_add_test(tc, next_dom_dow_vixie_rule);
	tcase_add_test(tc, next_last_nth_nearest);
	tcase_add_test(tc, next_leap_days_and_never);
	tcase_add_test(tc, dst_berlin);
	tcase_add_test(tc, dst_new_york);
	tcase_add_test(tc, missed_runs);
	tcase_add_test(tc, one_cron_many_threads);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(cron_suite)
