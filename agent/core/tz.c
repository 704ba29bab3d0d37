/*
 * Time zones for the date functions and the schedule trigger: IANA zones
 * read from the system's TZif files (RFC 8536, versions 1 to 4, the 64-bit
 * section when there is one, and the footer's POSIX TZ rule for instants
 * past the last transition), UTC, and fixed offsets such as "+01:00"; plus
 * the proleptic Gregorian calendar arithmetic they share. The libc TZ
 * machinery (TZ, localtime_r) is not used: it holds one process-wide zone.
 *
 * Key invariant: a zone is never written after it is published in the
 * cache, and never freed, so any thread may read it without a lock. The
 * cache is a small hash of singly linked lists whose heads are published
 * with release stores; only inserting takes the mutex. Everything read
 * from a TZif file is checked (sizes, counts, indices, ordering) and a bad
 * file is an error naming what is wrong, never an assertion.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/core/alloc.h"
#include "agent/core/tz.h"

/* Largest TZif file read (real ones are under 5 KiB). */
#define TZ_MAX_FILE (256u * 1024u)
/* Most transitions, local time types and abbreviation bytes accepted. */
#define TZ_MAX_TIMES 65536u
#define TZ_MAX_TYPES 256u
#define TZ_MAX_CHARS 4096u
/* Longest zone name and abbreviation in a POSIX rule. */
#define TZ_MAX_NAME 255u
#define TZ_MAX_ABBR 31u
/* UTC offsets RFC 8536 allows (-24:59:59 to +25:59:59). */
#define TZ_MIN_OFF (-89999)
#define TZ_MAX_OFF 93599
/* Fixed offsets accepted by name, as java.time: up to 18 hours. */
#define TZ_MAX_FIXED (18 * 3600)

/* IANA zones are a few hundred; fixed offsets at most 2 * 18 * 3600 + 1. */
#define CACHE_BUCKETS 256u

enum tz_kind { TZ_FIXED, TZ_FILE };

struct tz_type {
	int32_t off;
	bool dst;
	const char *abbr; /* into op_tz.abbrs */
};

/* A day of the year in a POSIX TZ rule. */
enum rule_kind { RULE_JULIAN1, RULE_JULIAN0, RULE_MWD };

struct rule_date {
	uint8_t kind;
	uint16_t day; /* Jn: 1..365; n: 0..365 */
	uint8_t mon, week, wday;
	int32_t time; /* seconds after local midnight, may be negative or > 24h */
};

struct tz_rule {
	int32_t std_off, dst_off; /* east of UTC, seconds */
	bool has_dst;
	char std_abbr[TZ_MAX_ABBR + 1];
	char dst_abbr[TZ_MAX_ABBR + 1];
	struct rule_date start, end;
};

struct op_tz {
	struct op_tz *next; /* cache chain; set before the zone is published */
	char *name;
	uint8_t kind;
	/* TZ_FIXED */
	int32_t fixed_off;
	/* TZ_FILE */
	size_t ntrans;
	int64_t *trans; /* strictly ascending */
	uint8_t *idx;   /* type of each transition, < ntypes */
	size_t ntypes;  /* >= 1 */
	struct tz_type *types;
	char *abbrs; /* NUL-terminated strings */
	bool has_rule;
	struct tz_rule rule;
};

static struct op_tz tz_utc = {.name = "UTC", .kind = TZ_FIXED};
static struct op_tz tz_gmt = {.name = "GMT", .kind = TZ_FIXED};
static struct op_tz tz_z = {.name = "Z", .kind = TZ_FIXED};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct op_tz *_Atomic cache[CACHE_BUCKETS];

/* ---- calendar ---- */

/* Howard Hinnant's days_from_civil / civil_from_days, over int64. */
int64_t op_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (int64_t)(m > 2 ? m - 3 : m + 9) + 2) / 5 + (int64_t)d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void op_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

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

/* ---- POSIX TZ rules (the TZif footer) ---- */

/* Day number (days since the epoch) of a rule date in year y. */
static int64_t rule_day(const struct rule_date *r, int64_t y)
{
	int64_t jan1 = op_days_from_civil(y, 1, 1);
	switch (r->kind) {
	case RULE_JULIAN1:
		/* Jn counts 1..365 and never Feb 29. */
		return jan1 + r->day - 1 + (is_leap(y) && r->day >= 60);
	case RULE_JULIAN0:
		return jan1 + r->day;
	default: {
		int64_t first = op_days_from_civil(y, r->mon, 1);
		int64_t wd = first + 4 - floor_div(first + 4, 7) * 7; /* 0 = Sunday */
		int64_t day = first + (r->wday - wd + 7) % 7 + (int64_t)(r->week - 1) * 7;
		int64_t last = first + month_days(y, r->mon) - 1;
		while (day > last)
			day -= 7;
		return day;
	}
	}
}

static int32_t rule_offset(const struct tz_rule *r, int64_t t, const char **abbr)
{
	if (!r->has_dst) {
		*abbr = r->std_abbr;
		return r->std_off;
	}
	int64_t y;
	unsigned mo, d;
	op_civil_from_days(floor_div(t + r->std_off, 86400), &y, &mo, &d);
	/* Start is given in standard time, end in daylight time. */
	int64_t s = rule_day(&r->start, y) * 86400 + r->start.time - r->std_off;
	int64_t e = rule_day(&r->end, y) * 86400 + r->end.time - r->dst_off;
	bool dst = s < e ? (t >= s && t < e) : !(t >= e && t < s);
	*abbr = dst ? r->dst_abbr : r->std_abbr;
	return dst ? r->dst_off : r->std_off;
}

struct rp {
	const char *s;
	size_t i, len;
};

static bool rp_digit(const struct rp *p)
{
	return p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9';
}

/* Up to maxd digits, at least one; value <= max. */
static bool rp_num(struct rp *p, unsigned maxd, long max, long *out)
{
	long v = 0;
	unsigned n = 0;
	while (rp_digit(p) && n < maxd) {
		v = v * 10 + (p->s[p->i++] - '0');
		n++;
	}
	*out = v;
	return n > 0 && v <= max;
}

static bool rp_abbr(struct rp *p, char *out)
{
	size_t n = 0;
	if (p->i < p->len && p->s[p->i] == '<') {
		p->i++;
		while (p->i < p->len && p->s[p->i] != '>') {
			char c = p->s[p->i++];
			bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			          (c >= '0' && c <= '9') || c == '+' || c == '-';
			if (!ok || n >= TZ_MAX_ABBR)
				return false;
			out[n++] = c;
		}
		if (p->i >= p->len)
			return false;
		p->i++;
	} else {
		while (p->i < p->len && ((p->s[p->i] >= 'A' && p->s[p->i] <= 'Z') ||
		                         (p->s[p->i] >= 'a' && p->s[p->i] <= 'z'))) {
			if (n >= TZ_MAX_ABBR)
				return false;
			out[n++] = p->s[p->i++];
		}
	}
	out[n] = '\0';
	return n >= 3;
}

/* [+-]hh[:mm[:ss]] with hh <= maxh; seconds, sign applied. */
static bool rp_time(struct rp *p, long maxh, int32_t *out)
{
	long sign = 1, h, m = 0, s = 0;
	if (p->i < p->len && (p->s[p->i] == '+' || p->s[p->i] == '-'))
		sign = p->s[p->i++] == '-' ? -1 : 1;
	if (!rp_num(p, 3, maxh, &h))
		return false;
	if (p->i < p->len && p->s[p->i] == ':') {
		p->i++;
		if (!rp_num(p, 2, 59, &m))
			return false;
		if (p->i < p->len && p->s[p->i] == ':') {
			p->i++;
			if (!rp_num(p, 2, 59, &s))
				return false;
		}
	}
	*out = (int32_t)(sign * (h * 3600 + m * 60 + s));
	return true;
}

static bool rp_date(struct rp *p, struct rule_date *r)
{
	long v, w, d;
	memset(r, 0, sizeof(*r));
	if (p->i < p->len && p->s[p->i] == 'J') {
		p->i++;
		if (!rp_num(p, 3, 365, &v) || v < 1)
			return false;
		r->kind = RULE_JULIAN1;
		r->day = (uint16_t)v;
	} else if (p->i < p->len && p->s[p->i] == 'M') {
		p->i++;
		if (!rp_num(p, 2, 12, &v) || v < 1 || p->i >= p->len || p->s[p->i++] != '.' ||
		    !rp_num(p, 1, 5, &w) || w < 1 || p->i >= p->len || p->s[p->i++] != '.' ||
		    !rp_num(p, 1, 6, &d))
			return false;
		r->kind = RULE_MWD;
		r->mon = (uint8_t)v;
		r->week = (uint8_t)w;
		r->wday = (uint8_t)d;
	} else {
		if (!rp_num(p, 3, 365, &v))
			return false;
		r->kind = RULE_JULIAN0;
		r->day = (uint16_t)v;
	}
	r->time = 7200;
	if (p->i < p->len && p->s[p->i] == '/') {
		p->i++;
		/* RFC 8536 extends the range of rule times to -167..167 hours. */
		if (!rp_time(p, 167, &r->time))
			return false;
	}
	return true;
}

/* Parses a POSIX TZ string such as "CET-1CEST,M3.5.0,M10.5.0/3". */
static bool rule_parse(const char *s, size_t len, struct tz_rule *r)
{
	struct rp p = {s, 0, len};
	int32_t off;
	memset(r, 0, sizeof(*r));
	if (!rp_abbr(&p, r->std_abbr) || !rp_time(&p, 24, &off))
		return false;
	r->std_off = -off; /* POSIX offsets count west of UTC */
	if (p.i == p.len)
		return true;
	if (!rp_abbr(&p, r->dst_abbr))
		return false;
	r->has_dst = true;
	r->dst_off = r->std_off + 3600;
	if (p.i < p.len && p.s[p.i] != ',') {
		if (!rp_time(&p, 24, &off))
			return false;
		r->dst_off = -off;
	}
	if (p.i == p.len) {
		/* No rule: the US rules, as tzcode assumes. */
		struct rp d = {"M3.2.0,M11.1.0", 0, 14};
		return rp_date(&d, &r->start) && d.s[d.i++] == ',' && rp_date(&d, &r->end);
	}
	if (p.s[p.i++] != ',' || !rp_date(&p, &r->start) || p.i >= p.len || p.s[p.i++] != ',' ||
	    !rp_date(&p, &r->end))
		return false;
	return p.i == p.len;
}

/* ---- TZif files ---- */

struct tzif_hdr {
	char version;
	uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static const char *hdr_read(const unsigned char *p, size_t avail, struct tzif_hdr *h)
{
	if (avail < 44)
		return "truncated header";
	if (memcmp(p, "TZif", 4) != 0)
		return "not a TZif file";
	h->version = (char)p[4];
	if (h->version != 0 && (h->version < '2' || h->version > '9'))
		return "unknown version";
	h->isutcnt = be32(p + 20);
	h->isstdcnt = be32(p + 24);
	h->leapcnt = be32(p + 28);
	h->timecnt = be32(p + 32);
	h->typecnt = be32(p + 36);
	h->charcnt = be32(p + 40);
	if (h->typecnt == 0 || h->typecnt > TZ_MAX_TYPES)
		return "bad number of local time types";
	if (h->charcnt == 0 || h->charcnt > TZ_MAX_CHARS)
		return "bad size of the abbreviations";
	if (h->timecnt > TZ_MAX_TIMES)
		return "too many transitions";
	if (h->leapcnt > TZ_MAX_TIMES)
		return "too many leap second records";
	if ((h->isutcnt != 0 && h->isutcnt != h->typecnt) ||
	    (h->isstdcnt != 0 && h->isstdcnt != h->typecnt))
		return "bad standard/UT indicator counts";
	return NULL;
}

/* Size of the data block after a header, with times of tsize bytes. */
static size_t data_size(const struct tzif_hdr *h, size_t tsize)
{
	return (size_t)h->timecnt * tsize + h->timecnt + (size_t)h->typecnt * 6 + h->charcnt +
	       (size_t)h->leapcnt * (tsize + 4) + h->isstdcnt + h->isutcnt;
}

static void tz_free(struct op_tz *z)
{
	if (z == NULL)
		return;
	op_free(z->name);
	op_free(z->trans);
	op_free(z->idx);
	op_free(z->types);
	op_free(z->abbrs);
	op_free(z);
}

/*
 * Fills z from the file image. Returns NULL, or what is wrong ("nomem" for
 * an allocation failure).
 */
static const char *tzif_parse(struct op_tz *z, const unsigned char *p, size_t len)
{
	struct tzif_hdr h;
	size_t tsize = 4;
	const char *why = hdr_read(p, len, &h);
	if (why)
		return why;
	p += 44;
	len -= 44;
	if (h.version != 0) {
		/* Skip the 32-bit section: the 64-bit one follows with its own header. */
		size_t skip = data_size(&h, 4);
		if (skip > len)
			return "truncated data";
		p += skip;
		len -= skip;
		why = hdr_read(p, len, &h);
		if (why)
			return why;
		if (h.version == 0)
			return "second header has no version";
		p += 44;
		len -= 44;
		tsize = 8;
	}
	if (data_size(&h, tsize) > len)
		return "truncated data";
	if (h.leapcnt != 0)
		return "leap-second zones are not supported";

	z->ntrans = h.timecnt;
	z->ntypes = h.typecnt;
	z->trans = op_malloc((h.timecnt ? h.timecnt : 1) * sizeof(*z->trans));
	z->idx = op_malloc(h.timecnt ? h.timecnt : 1);
	z->types = op_calloc(h.typecnt, sizeof(*z->types));
	z->abbrs = op_malloc(h.charcnt);
	if (!z->trans || !z->idx || !z->types || !z->abbrs)
		return "nomem";
	for (size_t i = 0; i < h.timecnt; i++) {
		z->trans[i] = tsize == 8 ? be64(p) : (int64_t)(int32_t)be32(p);
		p += tsize;
		if (i > 0 && z->trans[i] <= z->trans[i - 1])
			return "transition times not ascending";
	}
	for (size_t i = 0; i < h.timecnt; i++) {
		z->idx[i] = *p++;
		if (z->idx[i] >= h.typecnt)
			return "transition names a missing local time type";
	}
	const unsigned char *tp = p;
	p += (size_t)h.typecnt * 6;
	memcpy(z->abbrs, p, h.charcnt);
	if (z->abbrs[h.charcnt - 1] != '\0')
		return "abbreviations not NUL-terminated";
	p += h.charcnt;
	for (size_t i = 0; i < h.typecnt; i++, tp += 6) {
		int32_t off = (int32_t)be32(tp);
		if (off < TZ_MIN_OFF || off > TZ_MAX_OFF)
			return "UTC offset out of range";
		if (tp[4] > 1)
			return "bad daylight saving flag";
		if (tp[5] >= h.charcnt)
			return "bad abbreviation index";
		z->types[i].off = off;
		z->types[i].dst = tp[4] != 0;
		z->types[i].abbr = z->abbrs + tp[5];
	}
	p += (size_t)h.leapcnt * (tsize + 4) + h.isstdcnt + h.isutcnt;
	len -= data_size(&h, tsize);
	if (tsize == 8) {
		/* The footer: "\n" POSIX-TZ "\n". */
		if (len < 2 || p[0] != '\n')
			return "missing footer";
		const unsigned char *nl = memchr(p + 1, '\n', len - 1);
		if (nl == NULL)
			return "unterminated footer";
		size_t flen = (size_t)(nl - (p + 1));
		if (flen > 0) {
			if (!rule_parse((const char *)p + 1, flen, &z->rule))
				return "bad POSIX TZ rule in footer";
			z->has_rule = true;
		}
	}
	return NULL;
}

static bool name_char_ok(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '+' || c == '/' || c == '.';
}

/* IANA names: no absolute paths, no "." or ".." components, no odd bytes. */
static bool name_ok(const char *s, size_t len)
{
	if (len == 0 || len > TZ_MAX_NAME || s[0] == '/' || s[len - 1] == '/')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!name_char_ok(s[i]))
			return false;
		bool comp_start = i == 0 || s[i - 1] == '/';
		if (comp_start && (s[i] == '.' || s[i] == '/'))
			return false;
	}
	return true;
}

/* Reads TZDIR/name into a new buffer; OP_EINVAL with msg when missing. */
static op_err read_file(const char *name, unsigned char **out, size_t *outlen, char *msg,
                        size_t msglen)
{
	const char *dir = getenv("TZDIR");
	char path[PATH_MAX];
	unsigned char *buf = NULL;
	op_err rc = OP_EINVAL;
	int fd = -1;
	struct stat st;
	*out = NULL;
	*outlen = 0;
	if (dir == NULL || dir[0] == '\0')
		dir = "/usr/share/zoneinfo";
	int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		snprintf(msg, msglen, "time zone path for '%s' too long", name);
		goto out;
	}
	/* O_NONBLOCK: a FIFO planted in the zone directory must not hang us. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		int en = fd < 0 ? errno : 0;
		if (fd < 0 && en != ENOENT && en != ENOTDIR) {
			char eb[128];
			snprintf(msg, msglen, "cannot open time zone file for '%s': %s", name,
			         strerror_r(en, eb, sizeof(eb)));
		} else {
			snprintf(msg, msglen, "unknown time zone '%s'", name);
		}
		goto out;
	}
	if (st.st_size > (off_t)TZ_MAX_FILE) {
		snprintf(msg, msglen, "time zone file for '%s' is larger than %u bytes", name,
		         TZ_MAX_FILE);
		goto out;
	}
	size_t size = (size_t)st.st_size, got = 0;
	buf = op_malloc(size ? size : 1);
	if (buf == NULL) {
		snprintf(msg, msglen, "out of memory");
		rc = OP_ENOMEM;
		goto out;
	}
	while (got < size) {
		ssize_t r = read(fd, buf + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	if (got != size) {
		snprintf(msg, msglen, "cannot read time zone file for '%s'", name);
		goto out;
	}
	*out = buf;
	*outlen = size;
	buf = NULL;
	rc = OP_OK;
out:
	if (fd >= 0)
		close(fd);
	op_free(buf);
	return rc;
}

static op_err load_file(const char *name, size_t len, struct op_tz **out, char *msg, size_t msglen)
{
	unsigned char *img = NULL;
	size_t imglen = 0;
	struct op_tz *z = op_calloc(1, sizeof(*z));
	op_err rc = OP_ENOMEM;
	*out = NULL;
	if (z == NULL || (z->name = op_strndup(name, len)) == NULL) {
		snprintf(msg, msglen, "out of memory");
		goto out;
	}
	z->kind = TZ_FILE;
	rc = read_file(z->name, &img, &imglen, msg, msglen);
	if (rc != OP_OK)
		goto out;
	const char *why = tzif_parse(z, img, imglen);
	if (why != NULL && strcmp(why, "nomem") == 0) {
		snprintf(msg, msglen, "out of memory");
		rc = OP_ENOMEM;
		goto out;
	}
	if (why != NULL) {
		snprintf(msg, msglen, "time zone file for '%s' is corrupt: %s", z->name, why);
		rc = OP_EINVAL;
		goto out;
	}
	*out = z;
	z = NULL;
	rc = OP_OK;
out:
	op_free(img);
	tz_free(z);
	return rc;
}

/* ---- fixed offsets ---- */

static bool two_digits(const char *s, long *v)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return false;
	*v = (s[0] - '0') * 10 + (s[1] - '0');
	return true;
}

/* "+h", "+hh", "+hhmm", "+hh:mm", "+hhmmss", "+hh:mm:ss" (java.time's forms). */
static bool fixed_parse(const char *s, size_t len, int32_t *off)
{
	long h = 0, m = 0, sec = 0;
	const char *p = s + 1;
	size_t n = len - 1;
	if (len < 2 || (s[0] != '+' && s[0] != '-'))
		return false;
	if (n == 1 && p[0] >= '0' && p[0] <= '9') {
		h = p[0] - '0';
	} else if (n == 2) {
		if (!two_digits(p, &h))
			return false;
	} else if (n == 4 || n == 6) {
		if (!two_digits(p, &h) || !two_digits(p + 2, &m) ||
		    (n == 6 && !two_digits(p + 4, &sec)))
			return false;
	} else if (n == 5 || n == 8) {
		if (!two_digits(p, &h) || p[2] != ':' || !two_digits(p + 3, &m) ||
		    (n == 8 && (p[5] != ':' || !two_digits(p + 6, &sec))))
			return false;
	} else {
		return false;
	}
	if (m > 59 || sec > 59)
		return false;
	long v = h * 3600 + m * 60 + sec;
	if (v > TZ_MAX_FIXED)
		return false;
	*off = (int32_t)(s[0] == '-' ? -v : v);
	return true;
}

/* ---- the cache ---- */

static unsigned hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h % CACHE_BUCKETS;
}

static const struct op_tz *cache_find(const char *name, size_t len, unsigned b)
{
	for (const struct op_tz *z = atomic_load_explicit(&cache[b], memory_order_acquire); z;
	     z = z->next) {
		if (strncmp(z->name, name, len) == 0 && z->name[len] == '\0')
			return z;
	}
	return NULL;
}

/* Publishes z unless another thread got there first; returns the cached one. */
static const struct op_tz *cache_add(struct op_tz *z)
{
	size_t len = strlen(z->name);
	unsigned b = hash(z->name, len);
	pthread_mutex_lock(&cache_mu);
	const struct op_tz *have = cache_find(z->name, len, b);
	if (have == NULL) {
		z->next = atomic_load_explicit(&cache[b], memory_order_relaxed);
		atomic_store_explicit(&cache[b], z, memory_order_release);
		have = z;
		z = NULL;
	}
	pthread_mutex_unlock(&cache_mu);
	tz_free(z);
	return have;
}

op_err op_tz_get(const char *name, size_t len, const struct op_tz **out, char *msg, size_t msglen)
{
	*out = NULL;
	if (len == 3 && memcmp(name, "UTC", 3) == 0) {
		*out = &tz_utc;
		return OP_OK;
	}
	if (len == 3 && memcmp(name, "GMT", 3) == 0) {
		*out = &tz_gmt;
		return OP_OK;
	}
	if (len == 1 && (name[0] == 'Z' || name[0] == 'z')) {
		*out = &tz_z;
		return OP_OK;
	}
	if (len > 0 && (name[0] == '+' || name[0] == '-')) {
		int32_t off;
		char canon[16];
		if (!fixed_parse(name, len, &off)) {
			snprintf(msg, msglen,
			         "bad UTC offset '%.*s' (expected e.g. +01:00, up to 18 hours)",
			         (int)(len > 40 ? 40 : len), name);
			return OP_EINVAL;
		}
		int32_t a = off < 0 ? -off : off;
		if (a % 60)
			snprintf(canon, sizeof(canon), "%c%02d:%02d:%02d", off < 0 ? '-' : '+',
			         a / 3600, a / 60 % 60, a % 60);
		else
			snprintf(canon, sizeof(canon), "%c%02d:%02d", off < 0 ? '-' : '+', a / 3600,
			         a / 60 % 60);
		size_t clen = strlen(canon);
		const struct op_tz *have = cache_find(canon, clen, hash(canon, clen));
		if (have) {
			*out = have;
			return OP_OK;
		}
		struct op_tz *z = op_calloc(1, sizeof(*z));
		if (z == NULL || (z->name = op_strdup(canon)) == NULL) {
			op_free(z);
			snprintf(msg, msglen, "out of memory");
			return OP_ENOMEM;
		}
		z->kind = TZ_FIXED;
		z->fixed_off = off;
		*out = cache_add(z);
		return OP_OK;
	}
	if (!name_ok(name, len)) {
		snprintf(msg, msglen, "bad time zone name '%.*s'", (int)(len > 60 ? 60 : len),
		         name);
		return OP_EINVAL;
	}
	const struct op_tz *have = cache_find(name, len, hash(name, len));
	if (have) {
		*out = have;
		return OP_OK;
	}
	/* Loaded outside the lock: a slow or missing file does not block readers. */
	struct op_tz *z;
	op_err rc = load_file(name, len, &z, msg, msglen);
	if (rc != OP_OK)
		return rc;
	*out = cache_add(z);
	return OP_OK;
}

/* ---- queries ---- */

int32_t op_tz_offset(const struct op_tz *z, int64_t t, const char **abbr)
{
	const char *dummy;
	if (abbr == NULL)
		abbr = &dummy;
	if (z->kind == TZ_FIXED) {
		*abbr = z == &tz_z ? "UTC" : z->name;
		return z->fixed_off;
	}
	if (z->ntrans == 0 || t >= z->trans[z->ntrans - 1]) {
		if (z->has_rule)
			return rule_offset(&z->rule, t, abbr);
		if (z->ntrans == 0) {
			*abbr = z->types[0].abbr;
			return z->types[0].off;
		}
	}
	if (t < z->trans[0]) {
		/* Before the first transition: type 0 (RFC 8536 section 3.2). */
		*abbr = z->types[0].abbr;
		return z->types[0].off;
	}
	size_t lo = 0, hi = z->ntrans; /* trans[lo] <= t < trans[hi] */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (z->trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	const struct tz_type *ty = &z->types[z->idx[lo]];
	*abbr = ty->abbr;
	return ty->off;
}

int64_t op_tz_local(const struct op_tz *z, int64_t local)
{
	if (z->kind == TZ_FIXED)
		return local - z->fixed_off;
	/*
	 * Offsets in force a day either side cover every real transition: the
	 * valid instants are local - o for those o that are in force at
	 * local - o. Two valid ones: an overlap, take the earlier. None: a gap,
	 * shift forward by it, which is local minus the offset before it.
	 */
	int32_t before = op_tz_offset(z, local - 86400, NULL);
	int32_t cand[3] = {before, op_tz_offset(z, local, NULL),
	                   op_tz_offset(z, local + 86400, NULL)};
	bool found = false;
	int64_t best = 0;
	for (int i = 0; i < 3; i++) {
		int64_t t = local - cand[i];
		if (op_tz_offset(z, t, NULL) == cand[i] && (!found || t < best)) {
			best = t;
			found = true;
		}
	}
	return found ? best : local - before;
}

const char *op_tz_name(const struct op_tz *z)
{
	return z->name;
}
