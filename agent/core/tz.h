/*
 * Time zones and the proleptic Gregorian calendar, shared by the date
 * functions of the expression language and the schedule trigger: IANA zones
 * read from the system's TZif files, "UTC"/"Z"/"GMT", and fixed offsets.
 * Instants here are seconds since 1970-01-01T00:00:00Z.
 *
 * Key invariant: a zone returned by op_tz_get is immutable and lives until
 * the process ends, so any thread may use it without a lock.
 */
#ifndef OP_CORE_TZ_H
#define OP_CORE_TZ_H

#include <stddef.h>
#include <stdint.h>

#include "agent/core/err.h"

struct op_tz;

/*
 * Finds a time zone: an IANA name ("Europe/Berlin", read from $TZDIR or
 * /usr/share/zoneinfo and cached for the life of the process),
 * "UTC"/"Z"/"GMT", or a fixed offset "+01:00". name need not be
 * NUL-terminated. *out is borrowed and stays valid until the process ends.
 * On error *out is NULL and msg (msglen bytes, may be truncated) says why:
 * OP_EINVAL for a bad or unknown name or a corrupt zone file (fix the
 * input), OP_ENOMEM (may be retried).
 */
op_err op_tz_get(const char *name, size_t len, const struct op_tz **out, char *msg,
                 size_t msglen) OP_WUR;
/*
 * Offset from UTC in seconds at instant t (seconds since the epoch). If abbr
 * is not NULL, *abbr is set to the zone abbreviation in force ("CEST"),
 * valid as long as the zone.
 */
int32_t op_tz_offset(const struct op_tz *z, int64_t t, const char **abbr);
/*
 * The instant for local wall time `local` (seconds since the epoch as if UTC).
 * In a gap (spring forward) the wall time is moved forward by the gap; in an
 * overlap (fall back) the earlier instant is chosen, as java.time does.
 */
int64_t op_tz_local(const struct op_tz *z, int64_t local);
/* The zone's name as given ("Europe/Berlin", "UTC", "+01:00"); valid as long as the zone. */
const char *op_tz_name(const struct op_tz *z);

/* Days since 1970-01-01 of a proleptic Gregorian date (m 1..12, d 1..31), and back. */
int64_t op_days_from_civil(int64_t y, unsigned m, unsigned d);
void op_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);

#endif
