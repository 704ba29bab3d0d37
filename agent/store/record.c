/*
 * The on-disk record format of the store. Every LMDB value starts with a
 * 16-byte header: format version (1 byte), record kind (1), reserved (2),
 * payload length (4, little-endian) and an XXH3-64 checksum (8) that covers
 * the record's key, the first 8 header bytes and the payload. Key invariant:
 * nothing read from disk is trusted before op_store__open_rec() has checked
 * length, version, kind and checksum; the decoders below then bound-check
 * every field, so a damaged record is an OP_ECORRUPT error, never a crash.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "agent/core/alloc.h"
#include "agent/store/store_int.h"

#define EV_FIXED         (8 * 5 + 4 + 4 + OP_UUID_LEN)
#define EXEC_FIXED       (8 * 3 + 4 + 2 * OP_UUID_LEN)
#define EV_F_REDELIVERED 1u
#define EV_F_ERROR       2u

op_err op_store__from_mdb(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return OP_OK;
	case MDB_NOTFOUND:
		return OP_ENOTFOUND;
	case MDB_MAP_FULL:
		return OP_EFULL;
	case MDB_KEYEXIST:
		return OP_EINVAL;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
	case MDB_INCOMPATIBLE:
	case MDB_BAD_VALSIZE:
	case MDB_BAD_DBI:
		return OP_ECORRUPT;
	case MDB_READERS_FULL:
	case MDB_TLS_FULL:
	case MDB_TXN_FULL:
	case MDB_CURSOR_FULL:
	case MDB_PAGE_FULL:
	case MDB_MAP_RESIZED:
		return OP_EBUSY;
	case MDB_DBS_FULL:
		return OP_ELIMIT;
	case MDB_PANIC: /* a failed meta write: the environment must be reopened */
		return OP_EIO;
	case MDB_BAD_RSLOT:
	case MDB_BAD_TXN:
		return OP_EINTERNAL;
	default:
		if (rc > 0)
			return op_err_from_errno(rc) == OP_EINTERNAL ? OP_EIO
			                                             : op_err_from_errno(rc);
		return OP_EINTERNAL;
	}
}

int64_t op_store__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

void op_store__put_u64be(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

uint64_t op_store__get_u64be(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t checksum(const MDB_val *key, const uint8_t *hdr, const uint8_t *payload,
                         size_t plen)
{
	XXH64_hash_t seed = XXH3_64bits(key->mv_data, key->mv_size);
	seed = XXH3_64bits_withSeed(hdr, 8, seed);
	return XXH3_64bits_withSeed(payload, plen, seed);
}

int op_store__put_last(MDB_txn *t, MDB_dbi d, MDB_val *key, MDB_val *val, unsigned flags)
{
	/* MDB_KEYEXIST: the key does not sort after the last one (or is it). */
	int rc = mdb_put(t, d, key, val, flags | MDB_APPEND);
	if (rc == MDB_KEYEXIST)
		rc = mdb_put(t, d, key, val, flags);
	return rc;
}

void op_store__seal(void *dst, const MDB_val *key, enum op_store__kind kind, size_t plen)
{
	uint8_t *h = dst;
	h[0] = (uint8_t)OP_STORE__FORMAT;
	h[1] = (uint8_t)kind;
	h[2] = 0;
	h[3] = 0;
	put_u32(h + 4, (uint32_t)plen);
	put_u64(h + 8, checksum(key, h, h + OP_STORE__HDR, plen));
}

op_err op_store__open_rec(const MDB_val *key, const MDB_val *val, enum op_store__kind kind,
                          const uint8_t **payload, size_t *plen)
{
	const uint8_t *h = val->mv_data;
	*payload = NULL;
	*plen = 0;
	if (val->mv_size < OP_STORE__HDR || h[0] != OP_STORE__FORMAT || h[1] != (uint8_t)kind)
		return OP_ECORRUPT;
	size_t n = get_u32(h + 4);
	if (n != val->mv_size - OP_STORE__HDR)
		return OP_ECORRUPT;
	if (get_u64(h + 8) != checksum(key, h, h + OP_STORE__HDR, n))
		return OP_ECORRUPT;
	*payload = h + OP_STORE__HDR;
	*plen = n;
	return OP_OK;
}

const char *op_store__db_name(enum op_store_db db)
{
	static const char *const names[OP_STORE_DB_COUNT] = {
	    [OP_STORE_DB_META] = "meta",
	    [OP_STORE_DB_QUEUE] = "queue",
	    [OP_STORE_DB_INFLIGHT] = "inflight",
	    [OP_STORE_DB_DEAD] = "dead",
	    [OP_STORE_DB_EXECS] = "execs",
	    [OP_STORE_DB_EXECIDX] = "execidx",
	    [OP_STORE_DB_PIPELINES] = "pipelines",
	    [OP_STORE_DB_STATE] = "state",
	    [OP_STORE_DB_QUARANTINE] = "quarantine",
	    [OP_STORE_DB_OUTBOX] = "outbox",
	};
	return (unsigned)db < OP_STORE_DB_COUNT ? names[db] : "?";
}

enum op_store__kind op_store__db_kind(enum op_store_db db)
{
	switch (db) {
	case OP_STORE_DB_META:
		return OP_STORE__K_META;
	case OP_STORE_DB_QUEUE:
	case OP_STORE_DB_INFLIGHT:
	case OP_STORE_DB_DEAD:
		return OP_STORE__K_EVENT;
	case OP_STORE_DB_EXECS:
		return OP_STORE__K_EXEC;
	case OP_STORE_DB_EXECIDX:
		return OP_STORE__K_INDEX;
	case OP_STORE_DB_QUARANTINE:
		return OP_STORE__K_QUARANTINE;
	case OP_STORE_DB_OUTBOX:
		return OP_STORE__K_OUTBOX;
	default:
		return OP_STORE__K_BLOB;
	}
}

bool op_store__name_ok(const char *name, size_t max)
{
	if (name == NULL)
		return false;
	size_t n = strnlen(name, max + 1);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return false;
	return true;
}

size_t op_store__qkey(uint8_t *buf, const char *pipeline, int64_t not_before, uint64_t seq)
{
	size_t n = strlen(pipeline);
	memcpy(buf, pipeline, n);
	buf[n] = 0;
	op_store__put_u64be(buf + n + 1, (uint64_t)(not_before < 0 ? 0 : not_before));
	op_store__put_u64be(buf + n + 9, seq);
	return n + 17;
}

static size_t slen(const char *s)
{
	return s ? strlen(s) : 0;
}

/* A bounded writer and reader over a payload. */
struct wcur {
	uint8_t *p;
};

static void w_bytes(struct wcur *w, const void *b, size_t n)
{
	if (n)
		memcpy(w->p, b, n);
	w->p += n;
}

static void w_u32(struct wcur *w, uint32_t v)
{
	put_u32(w->p, v);
	w->p += 4;
}

static void w_u64(struct wcur *w, uint64_t v)
{
	put_u64(w->p, v);
	w->p += 8;
}

static void w_str(struct wcur *w, const char *s, size_t n)
{
	w_u32(w, (uint32_t)n);
	w_bytes(w, s, n);
}

struct rcur {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *r_take(struct rcur *r, size_t n)
{
	if (r->bad || r->left < n) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

static uint32_t r_u32(struct rcur *r)
{
	const uint8_t *p = r_take(r, 4);
	return p ? get_u32(p) : 0;
}

static uint64_t r_u64(struct rcur *r)
{
	const uint8_t *p = r_take(r, 8);
	return p ? get_u64(p) : 0;
}

/* A NUL-terminated copy of the next string; *nomem on allocation failure. */
static char *r_str(struct rcur *r, size_t *len, bool *nomem)
{
	uint32_t n = r_u32(r);
	const uint8_t *p = r_take(r, n);
	if (p == NULL)
		return NULL;
	char *s = op_malloc((size_t)n + 1);
	if (s == NULL) {
		*nomem = true;
		return NULL;
	}
	memcpy(s, p, n);
	s[n] = 0;
	if (len)
		*len = n;
	return s;
}

static void r_id(struct rcur *r, char out[OP_UUID_LEN + 1])
{
	const uint8_t *p = r_take(r, OP_UUID_LEN);
	out[0] = 0;
	if (p == NULL)
		return;
	memcpy(out, p, OP_UUID_LEN);
	out[OP_UUID_LEN] = 0;
	if (strlen(out) != OP_UUID_LEN)
		r->bad = true;
}

size_t op_store__event_size(const struct op_store_event *ev)
{
	return OP_STORE__HDR + EV_FIXED + 16 + slen(ev->pipeline) + slen(ev->trigger) +
	       ev->payload_len + slen(ev->error);
}

void op_store__event_write(void *dst, const MDB_val *key, const struct op_store_event *ev,
                           uint64_t seq)
{
	struct wcur w = {(uint8_t *)dst + OP_STORE__HDR};
	uint32_t flags = (ev->redelivered ? EV_F_REDELIVERED : 0) | (ev->error ? EV_F_ERROR : 0);
	w_u64(&w, seq);
	w_u64(&w, (uint64_t)ev->enqueued_ms);
	w_u64(&w, (uint64_t)ev->not_before_ms);
	w_u64(&w, (uint64_t)ev->taken_ms);
	w_u64(&w, (uint64_t)ev->dead_ms);
	w_u32(&w, ev->attempt);
	w_u32(&w, flags);
	w_bytes(&w, ev->id, OP_UUID_LEN);
	w_str(&w, ev->pipeline, slen(ev->pipeline));
	w_str(&w, ev->trigger, slen(ev->trigger));
	w_str(&w, ev->payload, ev->payload_len);
	w_str(&w, ev->error, slen(ev->error));
	op_store__seal(dst, key, OP_STORE__K_EVENT, op_store__event_size(ev) - OP_STORE__HDR);
}

/* Skips a string, giving its length: what r_str reads, without a copy. */
static void r_skip_str(struct rcur *r, size_t *len)
{
	uint32_t n = r_u32(r);
	if (r_take(r, n) != NULL)
		*len = n;
}

static op_err event_read(const MDB_val *key, const MDB_val *val, struct op_store_event **out,
                         uint64_t *seq, bool payload)
{
	const uint8_t *p;
	size_t n;
	*out = NULL;
	op_err e = op_store__open_rec(key, val, OP_STORE__K_EVENT, &p, &n);
	if (e)
		return e;
	struct op_store_event *ev = op_calloc(1, sizeof(*ev));
	if (ev == NULL)
		return OP_ENOMEM;
	struct rcur r = {p, n, false};
	bool nomem = false;
	uint64_t sq = r_u64(&r);
	ev->enqueued_ms = (int64_t)r_u64(&r);
	ev->not_before_ms = (int64_t)r_u64(&r);
	ev->taken_ms = (int64_t)r_u64(&r);
	ev->dead_ms = (int64_t)r_u64(&r);
	ev->attempt = r_u32(&r);
	uint32_t flags = r_u32(&r);
	ev->redelivered = (flags & EV_F_REDELIVERED) != 0;
	r_id(&r, ev->id);
	ev->pipeline = r_str(&r, NULL, &nomem);
	ev->trigger = r_str(&r, NULL, &nomem);
	if (payload)
		ev->payload = r_str(&r, &ev->payload_len, &nomem);
	else
		r_skip_str(&r, &ev->payload_len);
	char *err = r_str(&r, NULL, &nomem);
	if (flags & EV_F_ERROR)
		ev->error = err;
	else
		op_free(err);
	if (nomem || r.bad || r.left != 0) {
		op_store_event_free(ev);
		return nomem ? OP_ENOMEM : OP_ECORRUPT;
	}
	if (seq)
		*seq = sq;
	*out = ev;
	return OP_OK;
}

op_err op_store__event_read(const MDB_val *key, const MDB_val *val, struct op_store_event **out,
                            uint64_t *seq)
{
	return event_read(key, val, out, seq, true);
}

op_err op_store__event_read_meta(const MDB_val *key, const MDB_val *val,
                                 struct op_store_event **out)
{
	return event_read(key, val, out, NULL, false);
}

size_t op_store__exec_size(const struct op_store_exec *rec)
{
	return OP_STORE__HDR + EXEC_FIXED + 20 + slen(rec->pipeline) + slen(rec->version) +
	       slen(rec->trigger) + slen(rec->status) + slen(rec->error);
}

void op_store__exec_write(void *dst, const MDB_val *key, const struct op_store_exec *rec,
                          uint64_t seq)
{
	struct wcur w = {(uint8_t *)dst + OP_STORE__HDR};
	char ev[OP_UUID_LEN] = {0};
	memcpy(ev, rec->event_id, strnlen(rec->event_id, OP_UUID_LEN));
	w_u64(&w, seq);
	w_u64(&w, (uint64_t)rec->start_ms);
	w_u64(&w, (uint64_t)rec->duration_ms);
	w_u32(&w, rec->attempt);
	w_bytes(&w, rec->id, OP_UUID_LEN);
	w_bytes(&w, ev, OP_UUID_LEN);
	w_str(&w, rec->pipeline, slen(rec->pipeline));
	w_str(&w, rec->version, slen(rec->version));
	w_str(&w, rec->trigger, slen(rec->trigger));
	w_str(&w, rec->status, slen(rec->status));
	w_str(&w, rec->error, slen(rec->error));
	op_store__seal(dst, key, OP_STORE__K_EXEC, op_store__exec_size(rec) - OP_STORE__HDR);
}

bool op_store__exec_id(const uint8_t *p, size_t n, char id[OP_UUID_LEN])
{
	/* seq, start, duration, attempt, then the id. */
	const size_t at = 8 * 3 + 4;
	if (n < at + OP_UUID_LEN)
		return false;
	memcpy(id, p + at, OP_UUID_LEN);
	return true;
}

op_err op_store__exec_read(const MDB_val *key, const MDB_val *val, struct op_store_exec **out)
{
	const uint8_t *p;
	size_t n;
	*out = NULL;
	op_err e = op_store__open_rec(key, val, OP_STORE__K_EXEC, &p, &n);
	if (e)
		return e;
	struct op_store_exec *rec = op_calloc(1, sizeof(*rec));
	if (rec == NULL)
		return OP_ENOMEM;
	struct rcur r = {p, n, false};
	bool nomem = false;
	rec->seq = r_u64(&r);
	rec->start_ms = (int64_t)r_u64(&r);
	rec->duration_ms = (int64_t)r_u64(&r);
	rec->attempt = r_u32(&r);
	r_id(&r, rec->id);
	const uint8_t *evid = r_take(&r, OP_UUID_LEN);
	if (evid) {
		memcpy(rec->event_id, evid, OP_UUID_LEN);
		rec->event_id[OP_UUID_LEN] = 0;
	}
	rec->pipeline = r_str(&r, NULL, &nomem);
	rec->version = r_str(&r, NULL, &nomem);
	rec->trigger = r_str(&r, NULL, &nomem);
	rec->status = r_str(&r, NULL, &nomem);
	rec->error = r_str(&r, NULL, &nomem);
	if (nomem || r.bad || r.left != 0) {
		op_store_exec_free(rec);
		return nomem ? OP_ENOMEM : OP_ECORRUPT;
	}
	*out = rec;
	return OP_OK;
}

void op_store_event_free(struct op_store_event *ev)
{
	if (ev == NULL)
		return;
	op_free(ev->pipeline);
	op_free(ev->trigger);
	op_free(ev->payload);
	op_free(ev->error);
	op_free(ev);
}

void op_store_events_free(struct op_store_event **evs, size_t n)
{
	if (evs == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		op_store_event_free(evs[i]);
	op_free(evs);
}

void op_store_exec_free(struct op_store_exec *rec)
{
	if (rec == NULL)
		return;
	op_free(rec->pipeline);
	op_free(rec->version);
	op_free(rec->trigger);
	op_free(rec->status);
	op_free(rec->error);
	op_free(rec);
}

void op_store_execs_free(struct op_store_exec **recs, size_t n)
{
	if (recs == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		op_store_exec_free(recs[i]);
	op_free(recs);
}

void op_store_keys_free(char **keys, size_t n)
{
	if (keys == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		op_free(keys[i]);
	op_free(keys);
}
