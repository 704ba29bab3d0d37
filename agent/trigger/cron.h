/*
 * Cron expressions for the schedule trigger: parsing (six fields with
 * seconds, the classic five, and the @daily-style macros) and the fire-time
 * arithmetic in a time zone, including the daylight-saving rules and the
 * count of runs missed during downtime. docs/schedule.md is the user's
 * description of the syntax and of the rules below.
 *
 * Key invariant: a parsed struct op_cron is plain data that no function
 * here writes after op_cron_parse returns, and every function is a pure
 * function of its arguments (the zones come from the thread-safe cache of
 * agent/core/tz.c), so any number of threads may share one op_cron.
 *
 * Time zone rules (the zone's wall clock is what the expression matches):
 * - Gap (clocks jump forward): a matching wall time that does not exist
 *   fires once, at the first instant after the gap (02:30 on a day Berlin
 *   jumps from 02:00 to 03:00 fires at 03:00 CEST; "every minute" fires
 *   once at 03:00 for the whole missing hour).
 * - Overlap (clocks fall back): a wall time that occurs twice fires once,
 *   at its first occurrence (01:30 on a day New York falls back fires at
 *   01:30 EDT only). Exception: an expression whose hour field covers every
 *   hour ("0 0 * * * *", every 15 minutes) follows real time and fires in
 *   the repeated hour too, so an hourly job runs every real hour.
 */
#ifndef OP_TRIGGER_CRON_H
#define OP_TRIGGER_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/err.h"
#include "agent/core/tz.h"

/* Longest expression accepted (bytes). */
#define OP_CRON_MAX_LEN 1024u
/* A message buffer of this size holds any parse error whole. */
#define OP_CRON_MSG_LEN 160u
/* op_cron_next searches this many years past `after` before OP_ENOTFOUND. */
#define OP_CRON_SEARCH_YEARS 50
/* op_cron_missed counts at most this many missed fire times. */
#define OP_CRON_MISSED_CAP 1000u

/*
 * A parsed expression. Plain data in caller storage (no _fini needed); the
 * fields are private to cron.c.
 */
struct op_cron {
	uint64_t sec;       /* bit n: second n, 0..59 */
	uint64_t min;       /* bit n: minute n, 0..59 */
	uint32_t hour;      /* bit n: hour n, 0..23 */
	uint32_t dom;       /* bit n: day of month n, 1..31 */
	uint32_t dom_w;     /* bit n: the weekday nearest day n ("15W") */
	uint16_t mon;       /* bit n: month n, 1..12 */
	uint8_t dow;        /* bit n: weekday n, 0 = Sunday */
	uint8_t dow_last;   /* bit n: last weekday n of the month ("5L") */
	uint8_t dow_nth[7]; /* bit k: k-th weekday n of the month ("MON#2"), 1..5 */
	bool dom_last;      /* "L": the last day of the month */
	bool dom_last_w;    /* "LW": the last weekday (Mon-Fri) of the month */
	bool dom_star;      /* day-of-month was "*" or "?" */
	bool dow_star;      /* day-of-week was "*" or "?" */
	bool every_hour;    /* the hour field covers all 24 hours */
};

/*
 * Parses a cron expression (s, len bytes, need not be NUL-terminated) into
 * *c: "sec min hour dom month dow", "min hour dom month dow" (second 0), or
 * one of @yearly @annually @monthly @weekly @daily @midnight @hourly.
 * On error returns OP_EPARSE (fix the expression), *c is zeroed and msg
 * (msglen bytes; OP_CRON_MSG_LEN is enough) names the field and the column:
 * "field 3 (hour): 25 is out of range 0-23 (column 7)".
 */
op_err op_cron_parse(struct op_cron *c, const char *s, size_t len, char *msg, size_t msglen) OP_WUR;

/*
 * The first fire time strictly after after_ms (milliseconds since the
 * epoch), in zone tz, following the gap and overlap rules above. Fire times
 * are whole seconds. Returns OP_OK with *next_ms set, or OP_ENOTFOUND (with
 * *next_ms = 0) when the expression does not fire within
 * OP_CRON_SEARCH_YEARS years after after_ms or before the end of year 9999
 * (such as "0 0 0 30 2 *"): the schedule never fires, so report it and do
 * not retry.
 */
op_err op_cron_next(const struct op_cron *c, const struct op_tz *tz, int64_t after_ms,
                    int64_t *next_ms) OP_WUR;

/*
 * Fire times missed while the agent was down: those in (last_run_ms,
 * now_ms]. *count is their number, capped at OP_CRON_MISSED_CAP (a count
 * equal to the cap means "that many or more"); *latest_ms is the latest of
 * them (the one a "run once" policy runs), or 0 when *count is 0. A "skip"
 * policy ignores both and waits for op_cron_next(now_ms). Always OP_OK
 * today; callers check it so that the contract can grow.
 */
op_err op_cron_missed(const struct op_cron *c, const struct op_tz *tz, int64_t last_run_ms,
                      int64_t now_ms, uint32_t *count, int64_t *latest_ms) OP_WUR;

#endif
