/*
 * Unit tests of the date and time functions (agent/expr/fn_date.c) and the
 * time zones under them (agent/core/tz.c): real expressions compiled with
 * op_expr_compile and run with op_expr_eval. Expected instants around DST
 * changes and under the TZif footer rules were cross-checked with Python's
 * zoneinfo on the same tzdata. Some tests write TZif files of their own
 * into a temporary TZDIR.
 */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/tz.h"
#include "agent/expr/expr.h"
#include "agent/expr/expr_int.h"
#include "tests/unit/test.h"

/*
 * Compiles and evaluates src with message parsed from msg (may be NULL).
 * On success writes the result as text (strings raw, other values as JSON)
 * into out. Returns the first error, with its text in err.
 */
static op_err run(const char *src, const char *msg, char *out, size_t outlen, char *err,
                  size_t errlen)
{
	struct op_expr *e = NULL;
	cJSON *m = msg ? op_test_json(msg) : NULL;
	struct op_expr_env env = {.message = m};
	struct op_val v = {NULL, false};
	out[0] = '\0';
	err[0] = '\0';
	op_err rc = op_expr_compile(src, &e, err, errlen);
	if (rc == OP_OK)
		rc = op_expr_eval(e, &env, &v, err, errlen);
	if (rc == OP_OK) {
		if (cJSON_IsString(v.v)) {
			snprintf(out, outlen, "%s", v.v->valuestring);
		} else {
			char *t = cJSON_PrintUnformatted(v.v);
			snprintf(out, outlen, "%s", t ? t : "(oom)");
			cJSON_free(t);
		}
	}
	op_val_drop(&v);
	op_expr_free(e);
	cJSON_Delete(m);
	return rc;
}

static void check_eq(const char *src, const char *msg, const char *want, int line)
{
	char out[512], err[512];
	op_err rc = run(src, msg, out, sizeof(out), err, sizeof(err));
	ck_assert_msg(rc == OP_OK, "line %d: %s: failed: %s", line, src, err);
	ck_assert_msg(strcmp(out, want) == 0, "line %d: %s\n  got:  %s\n  want: %s", line, src, out,
	              want);
}

/* Expects failure with code (compile: OP_EPARSE) and want inside the message. */
static void check_err(const char *src, const char *msg, op_err code, const char *want, int line)
{
	char out[512], err[512];
	op_err rc = run(src, msg, out, sizeof(out), err, sizeof(err));
	ck_assert_msg(rc != OP_OK, "line %d: %s: succeeded with '%s'", line, src, out);
	ck_assert_msg(rc == code, "line %d: %s: error %s, want %s (%s)", line, src, op_err_name(rc),
	              op_err_name(code), err);
	ck_assert_msg(strstr(err, want) != NULL, "line %d: %s\n  error: %s\n  want inside: %s",
	              line, src, err, want);
}

#define EQ(src, want)        check_eq("{{ " src " }}", NULL, (want), __LINE__)
#define EQM(src, msg, want)  check_eq("{{ " src " }}", (msg), (want), __LINE__)
#define ERR(src, want)       check_err("{{ " src " }}", NULL, OP_EINVAL, (want), __LINE__)
#define ERRM(src, msg, want) check_err("{{ " src " }}", (msg), OP_EINVAL, (want), __LINE__)
#define CERR(src, want)      check_err("{{ " src " }}", NULL, OP_EPARSE, (want), __LINE__)

/* ---- a private zone directory ---- */

static char tzdir[64];

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void write_file(const char *name, const void *data, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", tzdir, name);
	char *slash = strrchr(path, '/');
	*slash = '\0';
	mkdir(path, 0700);
	*slash = '/';
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

/*
 * Writes a version 2 TZif file with one local time type (offset off,
 * abbreviation abbr), the given transitions (all to type `bad_idx` when
 * non-zero, to make a corrupt file) and footer.
 */
static void write_tzif(const char *name, int32_t off, const char *abbr, const int64_t *trans,
                       size_t ntrans, unsigned char bad_idx, const char *footer)
{
	unsigned char buf[4096];
	size_t n = 0, alen = strlen(abbr) + 1;
	for (int v = 0; v < 2; v++) {
		size_t tsize = v == 0 ? 4 : 8;
		memset(buf + n, 0, 44);
		memcpy(buf + n, "TZif2", 5);
		put32(buf + n + 32, (uint32_t)ntrans);
		put32(buf + n + 36, 1);
		put32(buf + n + 40, (uint32_t)alen);
		n += 44;
		for (size_t i = 0; i < ntrans; i++) {
			if (tsize == 4) {
				put32(buf + n, (uint32_t)(int32_t)trans[i]);
			} else {
				put32(buf + n, (uint32_t)((uint64_t)trans[i] >> 32));
				put32(buf + n + 4, (uint32_t)trans[i]);
			}
			n += tsize;
		}
		for (size_t i = 0; i < ntrans; i++)
			buf[n++] = bad_idx;
		put32(buf + n, (uint32_t)off);
		buf[n + 4] = 0;
		buf[n + 5] = 0;
		n += 6;
		memcpy(buf + n, abbr, alen);
		n += alen;
	}
	n += (size_t)snprintf((char *)buf + n, sizeof(buf) - n, "\n%s\n", footer);
	write_file(name, buf, n);
}

/*
 * An unchecked fixture: runs in the parent around the "tzdir" test case,
 * so the directory is removed even when a forked test fails.
 */
static void tzdir_setup(void)
{
	snprintf(tzdir, sizeof(tzdir), "/tmp/op-tz-XXXXXX");
	if (mkdtemp(tzdir) == NULL || setenv("TZDIR", tzdir, 1) != 0) {
		perror("tzdir_setup");
		exit(1);
	}
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void tzdir_teardown(void)
{
	unsetenv("TZDIR");
	if (nftw(tzdir, remove_one, 8, FTW_DEPTH | FTW_PHYS) != 0)
		perror("tzdir_teardown");
}

/* ---- calendar ---- */

START_TEST(calendar_round_trip)
{
	int64_t y;
	unsigned m, d;
	ck_assert_int_eq(op_days_from_civil(1970, 1, 1), 0);
	ck_assert_int_eq(op_days_from_civil(2000, 3, 1), 11017);
	ck_assert_int_eq(op_days_from_civil(1, 1, 1), -719162);
	for (int64_t z = -800000; z <= 3000000; z += 7) {
		op_civil_from_days(z, &y, &m, &d);
		ck_assert_int_eq(op_days_from_civil(y, m, d), z);
		ck_assert(m >= 1 && m <= 12 && d >= 1 && d <= 31);
	}
	op_civil_from_days(-1, &y, &m, &d);
	ck_assert(y == 1969 && m == 12 && d == 31);
}
END_TEST

/* ---- formatting ---- */

START_TEST(format_letters)
{
	EQ("FORMATDATE('2026-11-23T10:15:30.123Z', 'yyyy-MM-dd HH:mm:ss.SSS')",
	   "2026-11-23 10:15:30.123");
	EQ("FORMATDATE('2026-11-23T10:15:30.123Z', 'yy M MMM MMMM MMMMM d D')",
	   "26 11 Nov November N 23 327");
	EQ("FORMATDATE('2026-03-05T00:05:09.007Z', 'y/M/d H:m:s S SS SSS SSSSSS')",
	   "2026/3/5 0:5:9 0 00 007 007000");
	EQ("FORMATDATE('2026-11-23T00:15:00Z', 'hh:mm a, h a, k K, EEE EEEE EEEEE')",
	   "12:15 AM, 12 AM, 24 0, Mon Monday M");
	EQ("FORMATDATE('2026-11-23T13:15:00Z', 'hh:mm a HH k K')", "01:15 PM 13 13 1");
	EQ("FORMATDATE('2026-11-23T10:15:30Z', \"'at' HH''mm, 'o''clock'\")", "at 10'15, o'clock");
	EQ("FORMATDATE('2026-11-23T10:15:30Z', \"yyyy-MM-dd'T'HH:mm:ss\")", "2026-11-23T10:15:30");
	EQ("FORMATDATE('2026-11-23T10:15:30Z', 'HH:mm X XX XXX x xx xxx Z ZZZZ ZZZZZ z VV')",
	   "10:15 Z Z Z +00 +0000 +00:00 +0000 GMT Z UTC Z");
	EQ("FORMATDATE('2026-11-23T10:15:30Z', 'HH:mm X XX XXX x Z ZZZZ ZZZZZ z VV', "
	   "'Asia/Kolkata')",
	   "15:45 +0530 +0530 +05:30 +0530 +0530 GMT+05:30 +05:30 IST Asia/Kolkata");
	EQ("FORMATDATE('2026-11-23T10:15:30Z', 'HH:mm X z', 'Asia/Kathmandu')",
	   "16:00 +0545 +0545");
	EQ("FORMATDATE('2026-11-23T10:15:30Z', 'HH:mm X z', 'America/New_York')", "05:15 -05 EST");
	/* Non-letters are literal, even without quotes. */
	EQ("FORMATDATE('2026-11-23T10:15:30Z', 'dd.MM.yyyy [HH] #1 ü')", "23.11.2026 [10] #1 ü");
}
END_TEST

START_TEST(format_special_patterns)
{
	EQ("FORMATDATE(1700000000123, 'ISO')", "2023-11-14T22:13:20.123Z");
	EQ("FORMATDATE(1700000000123, 'EPOCH')", "1700000000");
	EQ("FORMATDATE(1700000000123, 'EPOCH_MS')", "1700000000123");
	EQ("FORMATDATE(-1, 'EPOCH')", "-1");
	EQ("FORMATDATE('1700000000123', 'ISO')", "2023-11-14T22:13:20.123Z");
	EQ("FORMATDATE(1700000000123, 'ISO', 'Europe/Berlin')", "2023-11-14T23:13:20.123+01:00");
	EQ("FORMATDATE(0, 'ISO', 'Europe/London')", "1970-01-01T01:00:00.000+01:00");
	/* Without a zone argument a date is shown in its own offset. */
	EQ("FORMATDATE('2026-07-01T09:00:00+02:00', 'HH:mm XXX')", "09:00 +02:00");
	EQ("FORMATDATE('2026-07-01T09:00:00+02:00', 'HH:mm XXX', 'UTC')", "07:00 Z");
	EQ("FORMATDATE('2026-07-01T09:00:00+02:00[Europe/Berlin]', 'HH:mm z VV')",
	   "09:00 CEST Europe/Berlin");
	/* ISO input forms: fractions, comma, lower case, space, no seconds, date only. */
	EQ("FORMATDATE('2026-07-01t09:00:00.123456789z', 'ISO')", "2026-07-01T09:00:00.123Z");
	EQ("FORMATDATE('2026-07-01 09:00:00,5-0130', 'ISO')", "2026-07-01T09:00:00.500-01:30");
	EQ("FORMATDATE('2026-07-01T09:00+0100', 'ISO', 'UTC')", "2026-07-01T08:00:00.000Z");
	EQ("FORMATDATE('2026-07-01', 'ISO')", "2026-07-01T00:00:00.000Z");
	/* Text without an offset is UTC, or wall time in the zone argument. */
	EQ("FORMATDATE('2026-07-01T09:00:00', 'ISO')", "2026-07-01T09:00:00.000Z");
	EQ("FORMATDATE('2026-07-01T09:00:00', 'ISO', 'Europe/Berlin')",
	   "2026-07-01T09:00:00.000+02:00");
	EQ("FORMATDATE('2026-07-01T09:00:00Z', 'ISO', 'Europe/Berlin')",
	   "2026-07-01T11:00:00.000+02:00");
	/* Fractional epoch milliseconds are floored. */
	EQ("FORMATDATE(1.9, 'EPOCH_MS')", "1");
	/* null in, null out. */
	EQ("FORMATDATE(message.missing, 'yyyy')", "null");
	EQ("TOEPOCH(message.missing)", "null");
	EQ("TOEPOCH('1970-01-01T00:00:01.5+00:00')", "1500");
	EQ("TOEPOCH('2026-03-29T03:00:00+02:00')", "1774746000000");
	/* Spliced into text. */
	check_eq("day {{ FORMATDATE(0, 'd') }} of {{ FORMATDATE(0, 'MMMM yyyy') }}", NULL,
	         "day 1 of January 1970", __LINE__);
}
END_TEST

START_TEST(computed_arguments)
{
	const char *msg = "{\"ts\": \"2026-10-25T00:30:00Z\", \"zone\": \"Europe/Berlin\", "
	                  "\"fmt\": \"HH:mm z\", \"ms\": 1700000000000, \"bad\": \"yyyy-QQ\"}";
	EQM("FORMATDATE(message.ts, message.fmt, message.zone)", msg, "02:30 CEST");
	EQM("FORMATDATE(message.ms, 'yyyy', message.zone)", msg, "2023");
	EQM("FORMATDATE(message.ts, message.fmt, message.nozone)", msg, "00:30 UTC");
	ERRM("FORMATDATE(message.ts, message.bad)", msg,
	     "FORMATDATE: bad pattern 'yyyy-QQ': unknown pattern letter 'Q' at position 5");
	ERRM("FORMATDATE(message.ts, 'HH', message.fmt)", msg,
	     "FORMATDATE: argument 3: bad time zone name 'HH:mm z'");
	ERRM("FORMATDATE(message, 'HH')", msg,
	     "FORMATDATE: argument 1: expected a date (ISO 8601 text or epoch milliseconds), got "
	     "object");
	ERRM("FORMATDATE(true, 'HH')", msg, "got boolean");
}
END_TEST

/* ---- DST ---- */

START_TEST(dst_berlin)
{
	/* Spring forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z). */
	EQ("FORMATDATE('2026-03-29T00:59:59Z', 'HH:mm:ss z XXX', 'Europe/Berlin')",
	   "01:59:59 CET +01:00");
	EQ("FORMATDATE('2026-03-29T01:00:00Z', 'HH:mm:ss z XXX', 'Europe/Berlin')",
	   "03:00:00 CEST +02:00");
	/* A wall time in the gap moves forward by the gap, as java.time. */
	EQ("PARSEDATE('2026-03-29 02:30', 'yyyy-MM-dd HH:mm', 'Europe/Berlin')",
	   "2026-03-29T01:30:00.000Z");
	EQ("PARSEDATE('2026-03-29 01:59', 'yyyy-MM-dd HH:mm', 'Europe/Berlin')",
	   "2026-03-29T00:59:00.000Z");
	EQ("PARSEDATE('2026-03-29 03:00', 'yyyy-MM-dd HH:mm', 'Europe/Berlin')",
	   "2026-03-29T01:00:00.000Z");
	EQ("FORMATDATE('2026-03-29T02:30:00[Europe/Berlin]', 'ISO')",
	   "2026-03-29T03:30:00.000+02:00");

	/* Fall back 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z): 02:xx twice. */
	EQ("FORMATDATE('2026-10-25T00:30:00Z', 'HH:mm z', 'Europe/Berlin')", "02:30 CEST");
	EQ("FORMATDATE('2026-10-25T01:30:00Z', 'HH:mm z', 'Europe/Berlin')", "02:30 CET");
	/* Ambiguous wall time: the earlier instant... */
	EQ("PARSEDATE('2026-10-25 02:30', 'yyyy-MM-dd HH:mm', 'Europe/Berlin')",
	   "2026-10-25T00:30:00.000Z");
	/* ...unless an offset or abbreviation says which. */
	EQ("PARSEDATE('2026-10-25 02:30 +01:00', 'yyyy-MM-dd HH:mm XXX', 'Europe/Berlin')",
	   "2026-10-25T01:30:00.000Z");
	EQ("PARSEDATE('2026-10-25 02:30 CET', 'yyyy-MM-dd HH:mm z', 'Europe/Berlin')",
	   "2026-10-25T01:30:00.000Z");
	EQ("PARSEDATE('2026-10-25 02:30 CEST', 'yyyy-MM-dd HH:mm z', 'Europe/Berlin')",
	   "2026-10-25T00:30:00.000Z");
	EQ("PARSEDATE('2026-07-01 12:00 UTC', 'yyyy-MM-dd HH:mm z', 'Europe/Berlin')",
	   "2026-07-01T12:00:00.000Z");
	ERR("PARSEDATE('2026-07-01 12:00 CET', 'yyyy-MM-dd HH:mm z', 'Europe/Berlin')",
	    "'CET' is not in use in time zone Europe/Berlin at that time");

	/* Calendar days keep the wall time across a change; hours are elapsed time. */
	EQ("ADDDURATION('2026-03-28T12:00:00+01:00[Europe/Berlin]', 'P1D')",
	   "2026-03-29T12:00:00.000+02:00[Europe/Berlin]");
	EQ("ADDDURATION('2026-03-28T12:00:00+01:00[Europe/Berlin]', 'PT24H')",
	   "2026-03-29T13:00:00.000+02:00[Europe/Berlin]");
	EQ("ADDDURATION('2026-03-28T11:00:00Z', 'P1D', 'Europe/Berlin')",
	   "2026-03-29T12:00:00.000+02:00");
	EQ("ADDDURATION('2026-03-28T11:00:00Z', 1, 'days', 'Europe/Berlin')",
	   "2026-03-29T12:00:00.000+02:00");
	/* Into the gap: 02:30 does not exist on 03-29, becomes 03:30. */
	EQ("ADDDURATION('2026-03-28T02:30:00+01:00[Europe/Berlin]', 'P1D')",
	   "2026-03-29T03:30:00.000+02:00[Europe/Berlin]");
	/* Into the overlap: the earlier offset is kept from a summer date. */
	EQ("ADDDURATION('2026-10-24T02:30:00+02:00[Europe/Berlin]', 'P1D')",
	   "2026-10-25T02:30:00.000+02:00[Europe/Berlin]");
	/* In a fixed offset nothing changes. */
	EQ("ADDDURATION('2026-03-28T12:00:00+01:00', 'P1D')", "2026-03-29T12:00:00.000+01:00");

	EQ("DATEDIFF('2026-03-28T12:00:00+01:00[Europe/Berlin]', "
	   "'2026-03-29T12:00:00+02:00[Europe/Berlin]', 'days')",
	   "1");
	EQ("DATEDIFF('2026-03-28T12:00:00+01:00[Europe/Berlin]', "
	   "'2026-03-29T12:00:00+02:00[Europe/Berlin]', 'hours')",
	   "23");
	EQ("DATEDIFF('2026-03-28T11:00:00Z', '2026-03-29T10:00:00Z', 'days', 'Europe/Berlin')",
	   "1");
	EQ("DATEDIFF('2026-03-28T11:00:00Z', '2026-03-29T10:00:00Z', 'days')", "0");
}
END_TEST

START_TEST(dst_new_york)
{
	/* 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z). */
	EQ("FORMATDATE('2026-03-08T06:59:59Z', 'HH:mm:ss z', 'America/New_York')", "01:59:59 EST");
	EQ("FORMATDATE('2026-03-08T07:00:00Z', 'HH:mm:ss z', 'America/New_York')", "03:00:00 EDT");
	EQ("PARSEDATE('03/08/2026 2:15 AM', 'MM/dd/yyyy h:mm a', 'America/New_York')",
	   "2026-03-08T07:15:00.000Z");
	/* 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z). */
	EQ("FORMATDATE('2026-11-01T05:30:00Z', 'h:mm a z', 'America/New_York')", "1:30 AM EDT");
	EQ("FORMATDATE('2026-11-01T06:30:00Z', 'h:mm a z', 'America/New_York')", "1:30 AM EST");
	EQ("PARSEDATE('2026-11-01 01:30', 'yyyy-MM-dd HH:mm', 'America/New_York')",
	   "2026-11-01T05:30:00.000Z");
	EQ("PARSEDATE('2026-11-01 01:30 EST', 'yyyy-MM-dd HH:mm z', 'America/New_York')",
	   "2026-11-01T06:30:00.000Z");
	EQ("PARSEDATE('Sun, 01 Nov 2026 01:30 PM', 'EEE, dd MMM yyyy hh:mm a', "
	   "'America/New_York')",
	   "2026-11-01T18:30:00.000Z");
	EQ("DATEDIFF('2026-11-01T00:00:00-04:00', '2026-11-02T00:00:00-05:00', 'hours')", "25");
}
END_TEST

/* ---- the footer rule past the last transition ---- */

START_TEST(far_future_footer)
{
	/* Past 2037 the fat TZif files have no transitions: the POSIX rule applies. */
	EQ("FORMATDATE('2100-03-28T00:59:59Z', 'yyyy-MM-dd HH:mm:ss z', 'Europe/Berlin')",
	   "2100-03-28 01:59:59 CET");
	EQ("FORMATDATE('2100-03-28T01:00:00Z', 'yyyy-MM-dd HH:mm:ss z', 'Europe/Berlin')",
	   "2100-03-28 03:00:00 CEST");
	EQ("FORMATDATE('2100-10-31T00:59:59Z', 'HH:mm:ss z', 'Europe/Berlin')", "02:59:59 CEST");
	EQ("FORMATDATE('2100-10-31T01:00:00Z', 'HH:mm:ss z', 'Europe/Berlin')", "02:00:00 CET");
	EQ("FORMATDATE('9999-12-01T00:00:00Z', 'ISO', 'Europe/Berlin')",
	   "9999-12-01T01:00:00.000+01:00");
	EQ("FORMATDATE('2500-03-14T06:59:59Z', 'HH:mm:ss z', 'America/New_York')", "01:59:59 EST");
	EQ("FORMATDATE('2500-03-14T07:00:00Z', 'HH:mm:ss z', 'America/New_York')", "03:00:00 EDT");
	EQ("FORMATDATE('2500-07-01T12:00:00Z', 'ISO', 'America/New_York')",
	   "2500-07-01T08:00:00.000-04:00");
	/* Southern hemisphere: DST spans the new year. */
	EQ("FORMATDATE('2300-01-15T00:00:00Z', 'HH:mm z', 'Australia/Sydney')", "11:00 AEDT");
	EQ("FORMATDATE('2300-06-15T00:00:00Z', 'HH:mm z', 'Australia/Sydney')", "10:00 AEST");
	EQ("FORMATDATE('9999-06-30T23:59:59Z', 'ISO', 'Australia/Sydney')",
	   "9999-07-01T09:59:59.000+10:00");
	/* A "<-03>3" rule: no DST, numeric abbreviation. */
	EQ("FORMATDATE('2060-01-01T00:00:00Z', 'yyyy-MM-dd HH:mm z', 'America/Sao_Paulo')",
	   "2059-12-31 21:00 -03");
	/* Before the first transition: the first local time type (LMT). */
	EQ("FORMATDATE('1850-01-01T00:00:00Z', 'HH:mm:ss z XXX', 'Europe/Berlin')",
	   "00:53:28 LMT +00:53");
	EQ("FORMATDATE('1850-01-01T00:00:00Z', 'ISO', 'Europe/Berlin')",
	   "1850-01-01T00:53:28.000+00:53:28");
	EQ("ADDDURATION('2026-01-15T12:00:00+01:00[Europe/Berlin]', 'P100Y6M')",
	   "2126-07-15T12:00:00.000+02:00[Europe/Berlin]");
}
END_TEST

START_TEST(posix_rule_forms)
{
	/* Jn: 1-based, Feb 29 never counted: J60 is March 1 even in 2028. */
	write_tzif("Test/Julian1", -3 * 3600, "XST", NULL, 0, 0, "XST3XDT,J60/2,J300/2");
	/* n: 0-based, Feb 29 counted: 59 is Feb 29 in 2028, Mar 1 in 2027. */
	write_tzif("Test/Julian0", -3 * 3600, "YST", NULL, 0, 0, "YST3YDT,59/2,299/2");
	/* Negative rule time (RFC 8536 extension) and a default end time. */
	write_tzif("Test/Negative", -3 * 3600, "ZZT", NULL, 0, 0, "ZZT3ZZD,M3.2.0/-1,M11.1.0");
	/* Quoted abbreviations and a half-hour offset, no DST. */
	write_tzif("Test/Quoted", 0, "LMT", NULL, 0, 0, "<+0530>-5:30");
	/* DST named without a rule: the US rules. */
	write_tzif("Test/NoRule", 0, "LMT", NULL, 0, 0, "EST5EDT");

	EQ("FORMATDATE('2028-03-01T04:59:59Z', 'MM-dd HH:mm:ss z', 'Test/Julian1')",
	   "03-01 01:59:59 XST");
	EQ("FORMATDATE('2028-03-01T05:00:00Z', 'MM-dd HH:mm:ss z', 'Test/Julian1')",
	   "03-01 03:00:00 XDT");
	EQ("FORMATDATE('2028-10-27T03:59:59Z', 'MM-dd HH:mm:ss z', 'Test/Julian1')",
	   "10-27 01:59:59 XDT");
	EQ("FORMATDATE('2028-10-27T04:00:00Z', 'MM-dd HH:mm:ss z', 'Test/Julian1')",
	   "10-27 01:00:00 XST");

	EQ("FORMATDATE('2028-02-29T04:59:59Z', 'MM-dd HH:mm:ss z', 'Test/Julian0')",
	   "02-29 01:59:59 YST");
	EQ("FORMATDATE('2028-02-29T05:00:00Z', 'MM-dd HH:mm:ss z', 'Test/Julian0')",
	   "02-29 03:00:00 YDT");
	EQ("FORMATDATE('2027-03-01T04:59:59Z', 'MM-dd HH:mm:ss z', 'Test/Julian0')",
	   "03-01 01:59:59 YST");
	EQ("FORMATDATE('2027-03-01T05:00:00Z', 'MM-dd HH:mm:ss z', 'Test/Julian0')",
	   "03-01 03:00:00 YDT");

	/* Second Sunday of March 2030 is the 10th; -1:00 is 23:00 the day before. */
	EQ("FORMATDATE('2030-03-10T01:59:59Z', 'MM-dd HH:mm:ss z', 'Test/Negative')",
	   "03-09 22:59:59 ZZT");
	EQ("FORMATDATE('2030-03-10T02:00:00Z', 'MM-dd HH:mm:ss z', 'Test/Negative')",
	   "03-10 00:00:00 ZZD");
	/* First Sunday of November 2030 is the 3rd, at 02:00 daylight time. */
	EQ("FORMATDATE('2030-11-03T03:59:59Z', 'MM-dd HH:mm:ss z', 'Test/Negative')",
	   "11-03 01:59:59 ZZD");
	EQ("FORMATDATE('2030-11-03T04:00:00Z', 'MM-dd HH:mm:ss z', 'Test/Negative')",
	   "11-03 01:00:00 ZZT");

	{
		/* Version 1: 32-bit times only, no footer; the last type stays in force. */
		unsigned char v1[44 + 2 * 4 + 2 + 2 * 6 + 8];
		unsigned char *q = v1 + 44;
		memset(v1, 0, 44);
		memcpy(v1, "TZif", 5); /* magic, then version byte 0: version 1 */
		put32(v1 + 32, 2);
		put32(v1 + 36, 2);
		put32(v1 + 40, 8);
		put32(q, 1000000000);
		put32(q + 4, 1100000000);
		q[8] = 1;
		q[9] = 0;
		q += 10;
		put32(q, 0);
		q[4] = 0;
		q[5] = 0;
		put32(q + 6, 3600);
		q[10] = 1;
		q[11] = 4;
		memcpy(q + 12, "AAA\0BBB\0", 8);
		write_file("Test/V1", v1, sizeof(v1));
	}
	EQ("FORMATDATE('2001-09-09T01:46:39Z', 'HH:mm:ss z', 'Test/V1')", "01:46:39 AAA");
	EQ("FORMATDATE('2001-09-09T01:46:40Z', 'HH:mm:ss z', 'Test/V1')", "02:46:40 BBB");
	EQ("FORMATDATE('2004-11-09T11:33:19Z', 'HH:mm:ss z', 'Test/V1')", "12:33:19 BBB");
	EQ("FORMATDATE('2004-11-09T11:33:20Z', 'HH:mm:ss z', 'Test/V1')", "11:33:20 AAA");
	EQ("FORMATDATE('2300-01-01T00:00:00Z', 'HH:mm:ss z', 'Test/V1')", "00:00:00 AAA");

	EQ("FORMATDATE('2030-01-01T00:00:00Z', 'HH:mm z XXX', 'Test/Quoted')",
	   "05:30 +0530 +05:30");
	EQ("FORMATDATE('2030-07-01T12:00:00Z', 'HH:mm z', 'Test/NoRule')", "08:00 EDT");
	EQ("FORMATDATE('2030-01-01T12:00:00Z', 'HH:mm z', 'Test/NoRule')", "07:00 EST");
}
END_TEST

START_TEST(corrupt_and_missing_zones)
{
	static const int64_t two[] = {1000, 2000};
	static const int64_t down[] = {2000, 1000};
	unsigned char big[300 * 1024];
	char junk[100];
	memset(junk, 'x', sizeof(junk));
	write_file("Bad/Junk", junk, sizeof(junk));
	write_file("Bad/Short", "TZif2", 5);
	write_tzif("Bad/Index", 3600, "ABC", two, 2, 7, "ABC-1");
	write_tzif("Bad/Order", 3600, "ABC", down, 2, 0, "ABC-1");
	write_tzif("Bad/Footer", 3600, "ABC", two, 2, 0, "ABC-1XYZ,M13.1.0,M1.1.0");
	memset(big, 0, sizeof(big));
	memcpy(big, "TZif2", sizeof("TZif2")); /* the NUL is version 2's reserved byte */
	write_file("Bad/Big", big, sizeof(big));
	{
		/* A real file cut short. */
		unsigned char part[300];
		FILE *f = fopen("/usr/share/zoneinfo/Europe/Berlin", "rb");
		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(fread(part, 1, sizeof(part), f), sizeof(part));
		fclose(f);
		write_file("Bad/Cut", part, sizeof(part));
	}

	ERR("FORMATDATE(0, 'HH', message.z ?? 'Bad/Junk')",
	    "time zone file for 'Bad/Junk' is corrupt: not a TZif file");
	ERR("FORMATDATE(0, 'HH', message.z ?? 'Bad/Short')", "is corrupt: truncated header");
	ERR("FORMATDATE(0, 'HH', message.z ?? 'Bad/Index')",
	    "is corrupt: transition names a missing local time type");
	ERR("FORMATDATE(0, 'HH', message.z ?? 'Bad/Order')",
	    "is corrupt: transition times not ascending");
	ERR("FORMATDATE(0, 'HH', message.z ?? 'Bad/Footer')",
	    "is corrupt: bad POSIX TZ rule in footer");
	ERR("FORMATDATE(0, 'HH', message.z ?? 'Bad/Big')", "is larger than 262144 bytes");
	ERR("FORMATDATE(0, 'HH', message.z ?? 'Bad/Cut')", "is corrupt: truncated data");
	/* A directory is not a zone; literal zones fail at compile time. */
	CERR("FORMATDATE(0, 'HH', 'Bad')",
	     "column 4: FORMATDATE: argument 3: unknown time zone 'Bad'");
	CERR("FORMATDATE(0, 'HH', 'Bad/Junk')", "is corrupt: not a TZif file");
	/* TZDIR is honoured: the system's zones are not there. */
	CERR("FORMATDATE(0, 'HH', 'Europe/Vienna')", "unknown time zone 'Europe/Vienna'");
}
END_TEST

START_TEST(bad_zone_names)
{
	CERR("FORMATDATE(0, 'HH', 'Mars/Olympus_Mons')", "unknown time zone 'Mars/Olympus_Mons'");
	CERR("NOW('../../../etc/passwd')", "NOW: argument 1: bad time zone name");
	CERR("NOW('/etc/localtime')", "bad time zone name '/etc/localtime'");
	CERR("NOW('Europe/../Europe/Berlin')", "bad time zone name");
	CERR("NOW('Europe/.hidden')", "bad time zone name");
	CERR("NOW('Europe//Berlin')", "bad time zone name");
	CERR("NOW('')", "bad time zone name ''");
	CERR("NOW('Europe/Berlin ')", "bad time zone name");
	CERR("NOW('europe/berlin')", "unknown time zone 'europe/berlin'");
	ERRM("NOW(message.z)", "{\"z\": \"Nowhere/City\"}",
	     "NOW: argument 1: unknown time zone 'Nowhere/City'");
	/* Leap-second zones are refused rather than silently off by 27 s. */
	if (access("/usr/share/zoneinfo/right/UTC", R_OK) == 0)
		CERR("NOW('right/UTC')", "leap-second zones are not supported");
}
END_TEST

START_TEST(fixed_offsets)
{
	EQ("FORMATDATE('2026-01-01T00:00:00Z', 'yyyy-MM-dd HH:mm XXX z VV', '+05:30')",
	   "2026-01-01 05:30 +05:30 +05:30 +05:30");
	EQ("FORMATDATE('2026-01-01T00:00:00Z', 'yyyy-MM-dd HH:mm XXX', '-0530')",
	   "2025-12-31 18:30 -05:30");
	EQ("FORMATDATE('2026-01-01T00:00:00Z', 'HH:mm XXX', '+01')", "01:00 +01:00");
	EQ("FORMATDATE('2026-01-01T00:00:00Z', 'HH:mm XXX', '-3')", "21:00 -03:00");
	EQ("FORMATDATE('2026-01-01T00:00:00Z', 'HH:mm XXX', '+18:00')", "18:00 +18:00");
	EQ("FORMATDATE('2026-01-01T00:00:00Z', 'HH:mm XXX z', 'Z')", "00:00 Z UTC");
	EQ("FORMATDATE('2026-01-01T00:00:00Z', 'HH:mm XXX z', 'UTC')", "00:00 Z UTC");
	EQ("FORMATDATE('2026-01-01T00:00:00Z', 'HH:mm xxx z', 'GMT')", "00:00 +00:00 GMT");
	CERR("FORMATDATE(0, 'HH', '+19:00')", "bad UTC offset '+19:00'");
	CERR("FORMATDATE(0, 'HH', '+1:00')", "bad UTC offset '+1:00'");
	CERR("FORMATDATE(0, 'HH', '+01:60')", "bad UTC offset");
	CERR("FORMATDATE(0, 'HH', '+')", "bad UTC offset");
	/* Offsets inside dates. */
	EQ("PARSEDATE('2026-01-01T05:30:00+05:30', 'ISO')", "2026-01-01T00:00:00.000Z");
	EQ("PARSEDATE('2026-01-01T05:30:00+0530', 'ISO')", "2026-01-01T00:00:00.000Z");
	EQ("PARSEDATE('2026-01-01T05:30:00+05', 'ISO')", "2026-01-01T00:30:00.000Z");
	EQ("PARSEDATE('2026-01-01T00:00:00-00:00', 'ISO')", "2026-01-01T00:00:00.000Z");
	ERR("PARSEDATE('2026-01-01T00:00:00+19:00', 'ISO')",
	    "is not an ISO 8601 date: offset beyond 18 hours at position 19");
	ERR("PARSEDATE('2026-01-01T00:00:00+01:7', 'ISO')",
	    "expected the offset's minutes as 2 digits at position 23");
}
END_TEST

/* ---- parsing ---- */

START_TEST(parse_patterns)
{
	EQ("PARSEDATE('2026-11-23', 'yyyy-MM-dd')", "2026-11-23T00:00:00.000Z");
	EQ("PARSEDATE('23.11.26 10:15:30,123', 'dd.MM.yy HH:mm:ss,SSS')",
	   "2026-11-23T10:15:30.123Z");
	EQ("PARSEDATE('20261123101530', 'yyyyMMddHHmmss')", "2026-11-23T10:15:30.000Z");
	EQ("PARSEDATE('3/5/2026 9:05', 'd/M/yyyy H:mm')", "2026-05-03T09:05:00.000Z");
	EQ("PARSEDATE('23 november 2026', 'dd MMMM yyyy')", "2026-11-23T00:00:00.000Z");
	EQ("PARSEDATE('Monday, 23-Nov-2026', 'EEEE, dd-MMM-yyyy')", "2026-11-23T00:00:00.000Z");
	EQ("PARSEDATE('12:05 AM 2026-11-23', 'hh:mm a yyyy-MM-dd')", "2026-11-23T00:05:00.000Z");
	EQ("PARSEDATE('12:05 PM 2026-11-23', 'hh:mm a yyyy-MM-dd')", "2026-11-23T12:05:00.000Z");
	EQ("PARSEDATE('2026-11-23T10:15:30.123456+0100', \"yyyy-MM-dd'T'HH:mm:ss.SSSSSSXX\")",
	   "2026-11-23T09:15:30.123Z");
	EQ("PARSEDATE('2026-11-23 10:15 Z', 'yyyy-MM-dd HH:mm X')", "2026-11-23T10:15:00.000Z");
	EQ("PARSEDATE('2026-11-23 10:15 GMT+02:00', 'yyyy-MM-dd HH:mm ZZZZ')",
	   "2026-11-23T08:15:00.000Z");
	EQ("PARSEDATE('2026-11-23 10:15 Asia/Kolkata', 'yyyy-MM-dd HH:mm VV')",
	   "2026-11-23T04:45:00.000Z");
	EQ("PARSEDATE('2026-327', 'yyyy-DDD')", "2026-11-23T00:00:00.000Z");
	EQ("PARSEDATE('10:15', 'HH:mm')", "1970-01-01T10:15:00.000Z");
	EQ("PARSEDATE('2026-11-23 10:15', 'yyyy-MM-dd HH:mm', '-05:00')",
	   "2026-11-23T15:15:00.000Z");
	/* ISO: RFC 3339 with an offset; without one, the zone argument. */
	EQ("PARSEDATE('2026-03-29T10:00:00+02:00', 'ISO')", "2026-03-29T08:00:00.000Z");
	EQ("PARSEDATE('2026-03-29T10:00:00', 'ISO', 'Europe/Berlin')", "2026-03-29T08:00:00.000Z");
	EQ("PARSEDATE('2026-03-29T10:00:00.5Z', 'ISO', 'Europe/Berlin')",
	   "2026-03-29T10:00:00.500Z");
	/* Epoch numbers. */
	EQ("PARSEDATE('1700000000', 'EPOCH')", "2023-11-14T22:13:20.000Z");
	EQ("PARSEDATE(1700000000.5, 'EPOCH')", "2023-11-14T22:13:20.500Z");
	EQ("PARSEDATE('1700000000123', 'EPOCH_MS')", "2023-11-14T22:13:20.123Z");
	EQ("PARSEDATE(1700000000123, 'ISO')", "2023-11-14T22:13:20.123Z");
	EQ("PARSEDATE(1700000000123, 'yyyy')", "2023-11-14T22:13:20.123Z");
	EQ("PARSEDATE(message.nothing, 'yyyy')", "null");
	ERR("PARSEDATE('17e8', 'EPOCH')", "PARSEDATE: '17e8' is not a number of seconds");
	ERR("PARSEDATE(true, 'EPOCH')", "expected a number or text, got boolean");
}
END_TEST

START_TEST(parse_errors)
{
	ERR("PARSEDATE('2026-13-01', 'yyyy-MM-dd')",
	    "PARSEDATE: '2026-13-01' does not match 'yyyy-MM-dd' at position 5: month 13 is out "
	    "of range (1 to 12)");
	ERR("PARSEDATE('2026-1-01', 'yyyy-MM-dd')",
	    "'2026-1-01' does not match 'yyyy-MM-dd' at position 5: expected 2 digits");
	ERR("PARSEDATE('2026/01/01', 'yyyy-MM-dd')", "at position 4: expected '-'");
	ERR("PARSEDATE('2026-01-01x', 'yyyy-MM-dd')",
	    "at position 10: unexpected text after the date");
	ERR("PARSEDATE('2026-01-01', 'yyyy-MM-dd HH')", "at position 10: expected ' '");
	ERR("PARSEDATE('2026-02-30', 'yyyy-MM-dd')",
	    "at position 8: day 30 is out of range for 2026-02");
	ERR("PARSEDATE('2026-04-31', 'yyyy-MM-dd')", "day 31 is out of range for 2026-04");
	ERR("PARSEDATE('2026-01-01 24:00', 'yyyy-MM-dd HH:mm')",
	    "at position 11: hour 24 is out of range (0 to 23)");
	ERR("PARSEDATE('2026-01-01 23:60', 'yyyy-MM-dd HH:mm')", "minute 60 is out of range");
	ERR("PARSEDATE('0000-01-01', 'yyyy-MM-dd')", "year 0 is out of range (1 to 9999)");
	ERR("PARSEDATE('Tue, 23 Nov 2026', 'EEE, dd MMM yyyy')",
	    "at position 0: 2026-11-23 is a Monday, not a Tuesday");
	ERR("PARSEDATE('23 Foo 2026', 'dd MMM yyyy')", "at position 3: expected a month name");
	ERR("PARSEDATE('10:00 XM', 'HH:mm a')", "at position 6: expected AM or PM");
	ERR("PARSEDATE('13:00 AM', 'HH:mm a')", "hour 13 conflicts with AM");
	ERR("PARSEDATE('2026-11-23 10:15 +25:00', 'yyyy-MM-dd HH:mm XXX')",
	    "at position 17: offset beyond 18 hours");
	ERR("PARSEDATE('2026-11-23 10:15 Mars/Base', 'yyyy-MM-dd HH:mm VV')",
	    "at position 17: unknown time zone 'Mars/Base'");
	ERR("PARSEDATE('2026-366', 'yyyy-DDD')", "2026 has no day 366");
	ERR("PARSEDATE('2026-11-23T10:15+', 'ISO')",
	    "PARSEDATE: argument 1: '2026-11-23T10:15+' is not an ISO 8601 date: expected the "
	    "offset's hours as 2 digits at position 17");
}
END_TEST

START_TEST(iso_errors)
{
	ERR("FORMATDATE('2026-13-01T00:00:00Z', 'ISO')",
	    "FORMATDATE: argument 1: '2026-13-01T00:00:00Z' is not an ISO 8601 date: month must be "
	    "01 to 12 at position 5");
	ERR("FORMATDATE('2023-02-29', 'ISO')", "day out of range for the month at position 8");
	ERR("FORMATDATE('2026-01-01T25:00:00Z', 'ISO')", "hour must be 00 to 23 at position 11");
	ERR("FORMATDATE('2026-01-01T10:00:60Z', 'ISO')", "seconds must be 00 to 59 at position 17");
	ERR("FORMATDATE('2026-01-01T10:00:00.Z', 'ISO')",
	    "expected digits after the decimal point at position 20");
	ERR("FORMATDATE('2026-01-01T10:00:00Zjunk', 'ISO')",
	    "unexpected text after the date at position 20");
	ERR("FORMATDATE('26-01-01', 'ISO')", "expected a 4-digit year at position 0");
	ERR("FORMATDATE('', 'ISO')", "expected a 4-digit year at position 0");
	ERR("FORMATDATE('2026-01-01T10:00:00Z[Europe/Berlin', 'ISO')",
	    "expected ']' after the zone");
	ERR("FORMATDATE('2026-01-01T10:00:00Z[Nowhere/X]', 'ISO')",
	    "FORMATDATE: argument 1: unknown time zone 'Nowhere/X'");
	ERR("FORMATDATE(1e300, 'ISO')",
	    "FORMATDATE: date out of range (0001-01-01 to 9999-12-31 UTC)");
	ERR("FORMATDATE(253402300800000, 'ISO')", "date out of range");
	EQ("FORMATDATE(253402300799999, 'ISO')", "9999-12-31T23:59:59.999Z");
	EQ("FORMATDATE(-62135596800000, 'ISO')", "0001-01-01T00:00:00.000Z");
	ERR("FORMATDATE(-62135596800001, 'ISO')", "date out of range");
	ERR("FORMATDATE('99999999999999999', 'ISO')", "is not an ISO 8601 date");
	/* Long text is cut in the message. */
	ERR("FORMATDATE('2026-01-01T00:00:00Z                                                    "
	    "x', "
	    "'ISO')",
	    "...' is not an ISO 8601 date");
}
END_TEST

START_TEST(pattern_errors)
{
	CERR("FORMATDATE(0, 'yyyy-QQ')", "column 4: FORMATDATE: bad pattern 'yyyy-QQ': unknown "
	                                 "pattern letter 'Q' at position 5");
	CERR("FORMATDATE(0, 'yyyy-MMMMMM')",
	     "'MMMMMM' at position 5: 'M' may repeat at most 5 times");
	CERR("FORMATDATE(0, 'HHH')", "'H' may repeat at most 2 times");
	CERR("FORMATDATE(0, \"yyyy 'at\")", "unterminated quote at position 5");
	CERR("FORMATDATE(0, '')", "empty pattern");
	CERR("FORMATDATE(0, 'V')", "the zone ID is 'VV'");
	CERR("PARSEDATE('x', 'MMMMM yyyy')", "'MMMMM' (a one-letter name) cannot be parsed");
	CERR("PARSEDATE('x', 'yyyy', 'Nowhere/Y')", "PARSEDATE: argument 3: unknown time zone");
	CERR("FORMATDATE(0)", "FORMATDATE takes 2 to 3 arguments, got 1");
	CERR("NOW(1, 2)", "NOW takes 0 to 1 arguments, got 2");
	char longpat[400];
	char src[512];
	for (int i = 0; i < 300; i++)
		longpat[i] = i % 2 ? '-' : 'd';
	longpat[300] = '\0';
	snprintf(src, sizeof(src), "{{ FORMATDATE(0, '%s') }}", longpat);
	check_err(src, NULL, OP_EPARSE, "pattern longer than 256 characters", __LINE__);
	/* FORMATDATE letters that are fine to format are fine; 'MMMMM' only fails parsing. */
	EQ("FORMATDATE(0, 'MMMMM EEEEE')", "J T");
}
END_TEST

/* ---- durations ---- */

START_TEST(durations)
{
	EQ("ADDDURATION('2026-01-31T10:00:00Z', 'P1M')", "2026-02-28T10:00:00.000Z");
	EQ("ADDDURATION('2024-01-31T10:00:00Z', 'P1M')", "2024-02-29T10:00:00.000Z");
	EQ("ADDDURATION('2024-02-29T10:00:00Z', 'P1Y')", "2025-02-28T10:00:00.000Z");
	EQ("ADDDURATION('2024-02-29T10:00:00Z', 'P4Y')", "2028-02-29T10:00:00.000Z");
	EQ("ADDDURATION('2026-03-31T10:00:00Z', '-P1M')", "2026-02-28T10:00:00.000Z");
	EQ("ADDDURATION('2026-05-31T00:00:00Z', 'P1M1D')", "2026-07-01T00:00:00.000Z");
	EQ("ADDDURATION('2026-01-01T00:00:00Z', 'P1DT2H')", "2026-01-02T02:00:00.000Z");
	EQ("ADDDURATION('2026-01-01T00:00:00Z', 'PT30M')", "2026-01-01T00:30:00.000Z");
	EQ("ADDDURATION('2026-01-01T00:00:00Z', 'PT1.5S')", "2026-01-01T00:00:01.500Z");
	EQ("ADDDURATION('2026-01-01T00:00:00Z', 'P2W')", "2026-01-15T00:00:00.000Z");
	EQ("ADDDURATION('2026-01-01T00:00:00Z', 'PT-6H3M')", "2025-12-31T18:03:00.000Z");
	EQ("ADDDURATION('2026-01-01T00:00:00Z', '-PT-6H')", "2026-01-01T06:00:00.000Z");
	EQ("ADDDURATION('2026-01-01T00:00:00Z', 'p1y2m3dt4h5m6s')", "2027-03-04T04:05:06.000Z");
	EQ("ADDDURATION('2026-12-31T23:00:00Z', 'PT1H')", "2027-01-01T00:00:00.000Z");
	EQ("ADDDURATION(0, 'P1D')", "1970-01-02T00:00:00.000Z");
	EQ("ADDDURATION(message.none, 'P1D')", "null");
	/* The number-and-unit form. */
	EQ("ADDDURATION('2026-01-31T10:00:00Z', 1, 'month')", "2026-02-28T10:00:00.000Z");
	EQ("ADDDURATION('2026-01-31T10:00:00Z', -2, 'Years')", "2024-01-31T10:00:00.000Z");
	EQ("ADDDURATION('2026-01-31T10:00:00Z', 3, 'weeks')", "2026-02-21T10:00:00.000Z");
	EQ("ADDDURATION('2026-01-31T10:00:00Z', 90, 'minutes')", "2026-01-31T11:30:00.000Z");
	EQ("ADDDURATION('2026-01-31T10:00:00Z', 1500, 'ms')", "2026-01-31T10:00:01.500Z");
	EQM("ADDDURATION(message.d, message.n, message.u)",
	    "{\"d\": \"2026-01-31T10:00:00Z\", \"n\": 2, \"u\": \"days\"}",
	    "2026-02-02T10:00:00.000Z");
	EQM("ADDDURATION(message.d, message.p)",
	    "{\"d\": \"2026-01-31T10:00:00Z\", \"p\": \"P1M\"}", "2026-02-28T10:00:00.000Z");
	/* Errors. */
	CERR("ADDDURATION(0, 'P')", "ADDDURATION: argument 2: 'P' is not an ISO 8601 duration");
	CERR("ADDDURATION(0, '1D')", "is not an ISO 8601 duration");
	CERR("ADDDURATION(0, 'PT')", "is not an ISO 8601 duration");
	CERR("ADDDURATION(0, 'P1H')", "is not an ISO 8601 duration");
	CERR("ADDDURATION(0, 'PT1D')", "is not an ISO 8601 duration");
	CERR("ADDDURATION(0, 'P1D1Y')", "is not an ISO 8601 duration");
	CERR("ADDDURATION(0, 'P1.5D')", "is not an ISO 8601 duration");
	CERR("ADDDURATION(0, 'P12345678901D')", "is not an ISO 8601 duration");
	CERR("ADDDURATION(0, 1, 'fortnights')",
	     "ADDDURATION: argument 3: unknown unit 'fortnights'");
	CERR("ADDDURATION(0, 1)", "needs the unit as argument 3");
	CERR("ADDDURATION(0, 'P1D', 'Nowhere/Z')", "ADDDURATION: argument 3: unknown time zone");
	ERRM("ADDDURATION(0, message.p)", "{\"p\": \"P1X\"}", "'P1X' is not an ISO 8601 duration");
	ERRM("ADDDURATION(0, 1.5, message.u)", "{\"u\": \"days\"}",
	     "ADDDURATION: argument 2: expected an integer");
	ERRM("ADDDURATION(0, 1, message.u)", "{\"u\": \"eons\"}", "unknown unit 'eons'");
	ERR("ADDDURATION('9999-12-31T00:00:00Z', 'P1D')", "ADDDURATION: date out of range");
	ERR("ADDDURATION('2026-01-01T00:00:00Z', 'P9999999999Y')", "date out of range");
	ERR("ADDDURATION('2026-01-01T00:00:00Z', 'P9999999999D')", "date out of range");
	ERR("ADDDURATION('2026-01-01T00:00:00Z', 'PT9999999999H')", "date out of range");
	ERR("ADDDURATION('0001-01-01T00:00:00Z', 'PT-1S')", "date out of range");
}
END_TEST

START_TEST(date_diff)
{
	EQ("DATEDIFF('2026-01-31T00:00:00Z', '2026-02-28T00:00:00Z', 'months')", "0");
	EQ("DATEDIFF('2026-01-31T00:00:00Z', '2026-03-01T00:00:00Z', 'months')", "1");
	EQ("DATEDIFF('2026-01-31T00:00:00Z', '2026-02-28T00:00:00Z', 'days')", "28");
	EQ("DATEDIFF('2026-02-28T00:00:00Z', '2026-01-31T00:00:00Z', 'days')", "-28");
	EQ("DATEDIFF('2024-02-29T00:00:00Z', '2025-02-28T00:00:00Z', 'years')", "0");
	EQ("DATEDIFF('2024-02-29T00:00:00Z', '2028-02-29T00:00:00Z', 'years')", "4");
	EQ("DATEDIFF('2026-03-15T12:00:00Z', '2026-01-15T12:00:01Z', 'months')", "-1");
	EQ("DATEDIFF('2026-01-01T00:00:00Z', '2026-01-15T00:00:00Z', 'weeks')", "2");
	EQ("DATEDIFF('2026-01-01T00:00:00Z', '2026-01-01T01:30:00Z', 'minutes')", "90");
	EQ("DATEDIFF('2026-01-01T00:00:00Z', '2026-01-01T01:30:00Z', 'hours')", "1");
	EQ("DATEDIFF(0, 1500, 'seconds')", "1");
	EQ("DATEDIFF(1500, 0, 'seconds')", "-1");
	EQ("DATEDIFF(0, 1500, 'millis')", "1500");
	EQ("DATEDIFF(message.x, 1500, 'millis')", "null");
	CERR("DATEDIFF(0, 1, 'parsecs')", "DATEDIFF: argument 3: unknown unit 'parsecs'");
}
END_TEST

START_TEST(leap_years)
{
	EQ("PARSEDATE('2024-02-29', 'yyyy-MM-dd')", "2024-02-29T00:00:00.000Z");
	EQ("PARSEDATE('2000-02-29', 'yyyy-MM-dd')", "2000-02-29T00:00:00.000Z");
	ERR("PARSEDATE('1900-02-29', 'yyyy-MM-dd')", "day 29 is out of range for 1900-02");
	ERR("PARSEDATE('2023-02-29', 'yyyy-MM-dd')", "day 29 is out of range for 2023-02");
	EQ("FORMATDATE('2024-12-31T00:00:00Z', 'D')", "366");
	EQ("FORMATDATE('2100-12-31T00:00:00Z', 'D')", "365");
	EQ("PARSEDATE('2024-366', 'yyyy-DDD')", "2024-12-31T00:00:00.000Z");
	EQ("ADDDURATION('2024-02-28T00:00:00Z', 'P1D')", "2024-02-29T00:00:00.000Z");
	EQ("ADDDURATION('2100-02-28T00:00:00Z', 'P1D')", "2100-03-01T00:00:00.000Z");
	EQ("FORMATDATE('2400-02-29T12:00:00Z', 'EEEE')", "Tuesday");
	EQ("FORMATDATE('0001-01-01T00:00:00Z', 'EEEE yyyy')", "Monday 0001");
}
END_TEST

START_TEST(now_shape)
{
	char out[128], err[256];
	struct timespec ts;
	ck_assert_int_eq(run("{{ NOW() }}", NULL, out, sizeof(out), err, sizeof(err)), OP_OK);
	/* 2026-11-23T10:15:30.123Z */
	ck_assert_uint_eq(strlen(out), 24);
	ck_assert(out[4] == '-' && out[7] == '-' && out[10] == 'T' && out[13] == ':' &&
	          out[16] == ':' && out[19] == '.' && out[23] == 'Z');
	clock_gettime(CLOCK_REALTIME, &ts);
	char sec[40];
	ck_assert_int_eq(run("{{ TOEPOCH(NOW()) }}", NULL, sec, sizeof(sec), err, sizeof(err)),
	                 OP_OK);
	long long ms = strtoll(sec, NULL, 10);
	long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	ck_assert_msg(ms > now - 5000 && ms < now + 5000, "NOW() is %lld, clock %lld", ms, now);
	ck_assert_int_eq(run("{{ NOW('+02:00') }}", NULL, out, sizeof(out), err, sizeof(err)),
	                 OP_OK);
	ck_assert_uint_eq(strlen(out), 29);
	ck_assert_str_eq(out + 23, "+02:00");
	ck_assert_int_eq(run("{{ NOW('Asia/Tokyo') }}", NULL, out, sizeof(out), err, sizeof(err)),
	                 OP_OK);
	ck_assert_str_eq(out + 23, "+09:00");
}
END_TEST

/* ---- threads ---- */

struct job {
	const struct op_expr *e;
	const char *zone;
	const char *want;
	int bad;
};

static void *worker(void *arg)
{
	struct job *j = arg;
	char json[128];
	snprintf(json, sizeof(json), "{\"zone\": \"%s\"}", j->zone);
	cJSON *m = cJSON_Parse(json);
	struct op_expr_env env = {.message = m};
	for (int i = 0; i < 3000; i++) {
		struct op_val v;
		char err[256];
		if (op_expr_eval(j->e, &env, &v, err, sizeof(err)) != OP_OK ||
		    !cJSON_IsString(v.v) || strcmp(v.v->valuestring, j->want) != 0)
			j->bad++;
		op_val_drop(&v);
	}
	cJSON_Delete(m);
	return NULL;
}

START_TEST(threads_share_zones)
{
	/* One compiled expression, zones looked up at run time: the cache is shared. */
	struct op_expr *e;
	char err[256];
	ck_assert_int_eq(op_expr_compile("{{ FORMATDATE('2100-07-01T12:00:00Z', "
	                                 "'yyyy-MM-dd HH:mm z XXX', message.zone) }}",
	                                 &e, err, sizeof(err)),
	                 OP_OK);
	struct job jobs[] = {
	    {e, "Europe/Berlin", "2100-07-01 14:00 CEST +02:00", 0},
	    {e, "America/New_York", "2100-07-01 08:00 EDT -04:00", 0},
	    {e, "Australia/Sydney", "2100-07-01 22:00 AEST +10:00", 0},
	    {e, "Asia/Kolkata", "2100-07-01 17:30 IST +05:30", 0},
	    {e, "America/Sao_Paulo", "2100-07-01 09:00 -03 -03:00", 0},
	    {e, "+03:30", "2100-07-01 15:30 +03:30 +03:30", 0},
	};
	enum { N = sizeof(jobs) / sizeof(jobs[0]) };
	pthread_t th[N];
	for (size_t i = 0; i < N; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
	for (size_t i = 0; i < N; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
	for (size_t i = 0; i < N; i++)
		ck_assert_msg(jobs[i].bad == 0, "%s: %d wrong results", jobs[i].zone, jobs[i].bad);
	op_expr_free(e);
}
END_TEST

/* ---- out of memory ---- */

START_TEST(out_of_memory)
{
	/* Every allocation in turn fails; each must fail cleanly, then all succeed. */
	const char *src = "{{ ADDDURATION('2026-01-31T10:00:00+01:00[Europe/Paris]', 'P1M', "
	                  "'Europe/Rome') + FORMATDATE(0, 'yyyy MMMM', message.z) }}";
	cJSON *m = op_test_json("{\"z\": \"Asia/Tokyo\"}");
	struct op_expr_env env = {.message = m};
	bool ok = false;
	for (uint64_t n = 1; n < 200 && !ok; n++) {
		struct op_expr *e = NULL;
		struct op_val v = {NULL, false};
		char err[256];
		op_alloc_fail_at(n);
		op_err rc = op_expr_compile(src, &e, err, sizeof(err));
		if (rc == OP_OK)
			rc = op_expr_eval(e, &env, &v, err, sizeof(err));
		op_alloc_fail_at(0);
		if (rc == OP_OK) {
			ck_assert_str_eq(v.v->valuestring,
			                 "2026-02-28T10:00:00.000+01:001970 January");
			ok = true;
		} else {
			ck_assert_msg(rc == OP_ENOMEM, "allocation %llu: %s", (unsigned long long)n,
			              err);
		}
		op_val_drop(&v);
		op_expr_free(e);
	}
	ck_assert(ok);
	cJSON_Delete(m);
}
END_TEST

static Suite *date_suite(void)
{
	Suite *s = suite_create("expr_date");
	TCase *tc = tcase_create("date");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, calendar_round_trip);
	tcase_add_test(tc, format_letters);
	tcase_add_test(tc, format_special_patterns);
	tcase_add_test(tc, computed_arguments);
	tcase_add_test(tc, dst_berlin);
	tcase_add_test(tc, dst_new_york);
	tcase_add_test(tc, far_future_footer);
	tcase_add_test(tc, bad_zone_names);
	tcase_add_test(tc, fixed_offsets);
	tcase_add_test(tc, parse_patterns);
	tcase_add_test(tc, parse_errors);
	tcase_add_test(tc, iso_errors);
	tcase_add_test(tc, pattern_errors);
	tcase_add_test(tc, durations);
	tcase_add_test(tc, date_diff);
	tcase_add_test(tc, leap_years);
	tcase_add_test(tc, now_shape);
	tcase_add_test(tc, threads_share_zones);
	tcase_add_test(tc, out_of_memory);
	suite_add_tcase(s, tc);

	/* Tests with TZif files of their own, in a TZDIR made for them. */
	TCase *own = tcase_create("tzdir");
	tcase_add_unchecked_fixture(own, tzdir_setup, tzdir_teardown);
	tcase_add_test(own, posix_rule_forms);
	tcase_add_test(own, corrupt_and_missing_zones);
	suite_add_tcase(s, own);
	return s;
}

OP_TEST_MAIN(date_suite)
