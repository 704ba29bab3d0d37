/*
 * The outbox: per-stream queues of records (JSON text) waiting to go up to
 * the control plane, in the `outbox` database under the key stream (1 byte)
 * and seq (u64 big-endian), so that each stream is one key range in seq
 * order. Adds and acknowledgements are detached writer requests; reads are
 * a cursor walk in the caller's read transaction. Key invariant: a stream's
 * seqs are assigned by the writer inside the transaction that stores (or
 * drops) the record, from the committed last seq plus what earlier requests
 * of the same batch took, and the last seq and the drop counts go to `meta`
 * in that same transaction, so a seq is never handed out twice, also across
 * restarts and after every record was acknowledged. The bounds are enforced
 * in the writer on every add: logs go first, then metrics, and execution
 * records only past twice the bounds.
 */
#define OP_LOG_MODULE "store"

#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/store/store_int.h"

static const char *const stream_names[OP_OUTBOX_STREAMS] = {
    [OP_OUTBOX_LOGS] = "logs",
    [OP_OUTBOX_METRICS] = "metrics",
    [OP_OUTBOX_EXECS] = "execs",
};

static bool stream_ok(enum op_outbox_stream st)
{
	return (unsigned)st < OP_OUTBOX_STREAMS;
}

/* ---- execution records as JSON ---- */

cJSON *op_store_exec_json(const struct op_store_exec *r)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o && cJSON_AddStringToObject(o, "id", r->id) &&
	          op_json_add_str_or_null(o, "eventId", r->event_id) &&
	          cJSON_AddStringToObject(o, "pipeline", r->pipeline ? r->pipeline : "") &&
	          cJSON_AddStringToObject(o, "version", r->version ? r->version : "") &&
	          op_json_add_str_or_null(o, "trigger", r->trigger) &&
	          cJSON_AddStringToObject(o, "status", r->status ? r->status : "") &&
	          op_json_add_str_or_null(o, "error", r->error) &&
	          cJSON_AddNumberToObject(o, "attempt", r->attempt) &&
	          op_json_add_time_ms(o, "startedAt", r->start_ms) &&
	          cJSON_AddNumberToObject(o, "durationMs", (double)r->duration_ms);
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* ---- keys, counters, meta ---- */

static void make_key(uint8_t kb[OP_STORE__OKEY], enum op_outbox_stream st, uint64_t seq)
{
	kb[0] = (uint8_t)st;
	op_store__put_u64be(kb + 1, seq);
}

bool op_store__outbox_key(const MDB_val *k, enum op_outbox_stream *st, uint64_t *seq)
{
	const uint8_t *p = k->mv_data;
	if (k->mv_size != OP_STORE__OKEY || p[0] >= OP_OUTBOX_STREAMS)
		return false;
	*st = (enum op_outbox_stream)p[0];
	*seq = op_store__get_u64be(p + 1);
	return true;
}

/* The record data a value holds: what the byte counters count. Taken from
 * the size alone, so that a damaged record is counted as it was stored. */
static uint64_t data_len(const MDB_val *v)
{
	return v->mv_size > OP_STORE__HDR ? v->mv_size - OP_STORE__HDR : 0;
}

void op_store__ob_add(struct op_store__obdelta *acc, const struct op_store__obdelta *d)
{
	acc->recs += d->recs;
	acc->bytes += d->bytes;
	acc->seqs += d->seqs;
	acc->dropped += d->dropped;
	acc->added += d->added;
}

static void meta_name(char *buf, size_t len, enum op_outbox_stream st, const char *what)
{
	snprintf(buf, len, "outbox.%s.%s", stream_names[st], what);
}

/* Like op_store__put_meta, telling a full map apart. */
static op_err put_meta(struct op_store *s, MDB_txn *t, const char *name, uint64_t v, bool *mapfull)
{
	MDB_val k = {strlen(name), (void *)name}, val = {OP_STORE__HDR + 8, NULL};
	int rc = mdb_put(t, s->dbi[OP_STORE_DB_META], &k, &val, MDB_RESERVE);
	if (rc) {
		*mapfull = rc == MDB_MAP_FULL;
		return op_store__from_mdb(rc);
	}
	op_store__put_u64be((uint8_t *)val.mv_data + OP_STORE__HDR, v);
	op_store__seal(val.mv_data, &k, OP_STORE__K_META, 8);
	return OP_OK;
}

/*
 * Reads meta counter `what` of st into *v; absent is 0. A damaged one is
 * *v = 0 with *bad set. Writes it back (in t, the open transaction) when
 * want differs, so that meta and memory agree from the start.
 */
static op_err load_meta(struct op_store *s, MDB_txn *t, enum op_outbox_stream st, const char *what,
                        uint64_t *v, bool *bad)
{
	char name[64];
	meta_name(name, sizeof(name), st, what);
	*v = 0;
	*bad = false;
	op_err e = op_store__get_meta(s, t, name, v);
	if (e == OP_ECORRUPT) {
		*bad = true;
		*v = 0;
		OP_LOGW("the outbox's %s counter %s is damaged: reset", stream_names[st], what);
		return OP_OK;
	}
	return e == OP_ENOTFOUND ? OP_OK : e;
}

op_err op_store__outbox_load(struct op_store *s, MDB_txn *t)
{
	MDB_cursor *c = NULL;
	uint64_t lastkey[OP_OUTBOX_STREAMS] = {0};
	uint8_t seek[OP_STORE__KEY_MAX];
	op_err e = OP_OK;
	MDB_val k, v;
	int rc = mdb_cursor_open(t, s->dbi[OP_STORE_DB_OUTBOX], &c);
	if (rc)
		return op_store__from_mdb(rc);
	/* Counts without checking checksums: a backlog of a million records
	 * must not cost seconds at every start, and reads check each record. A
	 * key that is not one cannot be addressed by seq: it goes now. */
	rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (rc == 0) {
		enum op_outbox_stream st;
		uint64_t seq;
		if (!op_store__outbox_key(&k, &st, &seq)) {
			size_t klen = k.mv_size < sizeof(seek) ? k.mv_size : sizeof(seek);
			memcpy(seek, k.mv_data, klen);
			e = op_store__quarantine(s, t, OP_STORE_DB_OUTBOX, &k, &v, NULL);
			if (e)
				goto out;
			k = (MDB_val){klen, seek};
			rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
			continue;
		}
		s->ob_recs[st]++;
		s->ob_bytes[st] += data_len(&v);
		lastkey[st] = seq;
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (rc != MDB_NOTFOUND) {
		e = op_store__from_mdb(rc);
		goto out;
	}
	for (int i = 0; i < OP_OUTBOX_STREAMS; i++) {
		enum op_outbox_stream st = (enum op_outbox_stream)i;
		uint64_t last, dropped;
		bool bad_last, bad_dropped, full;
		e = load_meta(s, t, st, "seq", &last, &bad_last);
		if (!e)
			e = load_meta(s, t, st, "dropped", &dropped, &bad_dropped);
		if (e)
			goto out;
		uint64_t want = last > lastkey[st] ? last : lastkey[st];
		/* Seqs handed out since the last key was acknowledged are unknown:
		 * jump far past them rather than risk giving one out twice. */
		if (bad_last)
			want += (uint64_t)1 << 40;
		char name[64];
		if (want != last || bad_last) {
			meta_name(name, sizeof(name), st, "seq");
			e = put_meta(s, t, name, want, &full);
		}
		if (!e && bad_dropped) {
			meta_name(name, sizeof(name), st, "dropped");
			e = put_meta(s, t, name, dropped, &full);
		}
		if (e)
			goto out;
		s->ob_last[st] = s->ob_saved_last[st] = want;
		s->ob_dropped[st] = s->ob_saved_dropped[st] = dropped;
	}
out:
	mdb_cursor_close(c);
	return e;
}

op_err op_store__outbox_save(struct op_store *s, MDB_txn *t, bool *mapfull)
{
	char name[64];
	for (int i = 0; i < OP_OUTBOX_STREAMS; i++) {
		enum op_outbox_stream st = (enum op_outbox_stream)i;
		uint64_t last = s->ob_last[i] + s->pend_ob[i].seqs;
		uint64_t dropped = s->ob_dropped[i] + s->pend_ob[i].dropped;
		op_err e = OP_OK;
		if (last != s->ob_saved_last[i]) {
			meta_name(name, sizeof(name), st, "seq");
			e = put_meta(s, t, name, last, mapfull);
		}
		if (!e && dropped != s->ob_saved_dropped[i]) {
			meta_name(name, sizeof(name), st, "dropped");
			e = put_meta(s, t, name, dropped, mapfull);
		}
		if (e)
			return e;
	}
	return OP_OK;
}

void op_store__outbox_saved(struct op_store *s)
{
	for (int i = 0; i < OP_OUTBOX_STREAMS; i++) {
		s->ob_saved_last[i] = s->ob_last[i] + s->pend_ob[i].seqs;
		s->ob_saved_dropped[i] = s->ob_dropped[i] + s->pend_ob[i].dropped;
	}
}

/* ---- the writer's part ---- */

static int64_t clamp0(int64_t v)
{
	return v < 0 ? 0 : v;
}

/* The outbox as request r sees it: committed, plus what earlier requests of
 * this batch and r itself changed. */
static void view(const struct op_store *s, const struct op_store__req *r, int64_t *recs,
                 int64_t *bytes, int64_t per_recs[OP_OUTBOX_STREAMS],
                 int64_t per_bytes[OP_OUTBOX_STREAMS])
{
	*recs = *bytes = 0;
	for (int i = 0; i < OP_OUTBOX_STREAMS; i++) {
		per_recs[i] = clamp0((int64_t)s->ob_recs[i] + s->pend_ob[i].recs + r->ob[i].recs);
		per_bytes[i] =
		    clamp0((int64_t)s->ob_bytes[i] + s->pend_ob[i].bytes + r->ob[i].bytes);
		*recs += per_recs[i];
		*bytes += per_bytes[i];
	}
}

static uint64_t sat_double(uint64_t v)
{
	return v > UINT64_MAX / 2 ? UINT64_MAX : v * 2;
}

static op_err mfail(int rc, bool *mapfull)
{
	if (rc == MDB_MAP_FULL)
		*mapfull = true;
	return op_store__from_mdb(rc);
}

/*
 * Positions cur on the oldest record of st (a key that is not an outbox key
 * but sorts into st's range is quarantined on the way). OP_ENOTFOUND: st
 * has none.
 */
static op_err first_of(struct op_store *s, MDB_txn *t, struct op_store__req *r, MDB_cursor *cur,
                       enum op_outbox_stream st, MDB_val *k, MDB_val *v, uint64_t *seq,
                       bool *mapfull)
{
	*seq = 0;
	for (;;) {
		uint8_t kb[OP_STORE__OKEY];
		enum op_outbox_stream kst;
		make_key(kb, st, 0);
		*k = (MDB_val){sizeof(kb), kb};
		int rc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND)
			return OP_ENOTFOUND;
		if (rc)
			return mfail(rc, mapfull);
		if (op_store__outbox_key(k, &kst, seq))
			return kst == st ? OP_OK : OP_ENOTFOUND;
		if (k->mv_size == 0 || ((const uint8_t *)k->mv_data)[0] != (uint8_t)st)
			return OP_ENOTFOUND;
		op_err e = op_store__quarantine(s, t, OP_STORE_DB_OUTBOX, k, v, r);
		if (e)
			return e;
	}
}

/* Drops the oldest record of st unless it is keep (0: none). OP_ENOTFOUND:
 * nothing to drop. */
static op_err drop_oldest(struct op_store *s, MDB_txn *t, struct op_store__req *r, MDB_cursor *cur,
                          enum op_outbox_stream st, uint64_t keep, bool *mapfull)
{
	MDB_val k, v;
	uint64_t seq = 0;
	op_err e = first_of(s, t, r, cur, st, &k, &v, &seq, mapfull);
	if (e)
		return e;
	if (seq == keep)
		return OP_ENOTFOUND;
	uint64_t n = data_len(&v);
	int rc = mdb_cursor_del(cur, 0);
	if (rc)
		return mfail(rc, mapfull);
	r->ob[st].recs--;
	r->ob[st].bytes -= (int64_t)n;
	r->ob[st].dropped++;
	return OP_OK;
}

/* Brings the outbox within its bounds: logs, then metrics, down to the
 * bounds; execution records down to twice the bounds. Never the record
 * keep of stream kst that this request just stored. */
static op_err trim(struct op_store *s, MDB_txn *t, struct op_store__req *r,
                   enum op_outbox_stream kst, uint64_t keep, bool *mapfull)
{
	static const enum op_outbox_stream order[] = {OP_OUTBOX_LOGS, OP_OUTBOX_METRICS,
	                                              OP_OUTBOX_EXECS};
	uint64_t max_r = s->ob_cur.max_records;
	uint64_t max_b = s->ob_cur.max_bytes ? s->ob_cur.max_bytes : UINT64_MAX;
	MDB_cursor *cur = NULL;
	op_err e = OP_OK;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		enum op_outbox_stream st = order[i];
		uint64_t lim_r = st == OP_OUTBOX_EXECS ? sat_double(max_r) : max_r;
		uint64_t lim_b = st == OP_OUTBOX_EXECS ? sat_double(max_b) : max_b;
		for (;;) {
			int64_t recs, bytes, pr[OP_OUTBOX_STREAMS], pb[OP_OUTBOX_STREAMS];
			view(s, r, &recs, &bytes, pr, pb);
			if ((uint64_t)recs <= lim_r && (uint64_t)bytes <= lim_b)
				break;
			if (cur == NULL) {
				int rc = mdb_cursor_open(t, s->dbi[OP_STORE_DB_OUTBOX], &cur);
				if (rc)
					return mfail(rc, mapfull);
			}
			e = drop_oldest(s, t, r, cur, st, st == kst ? keep : 0, mapfull);
			if (e == OP_ENOTFOUND) {
				e = OP_OK;
				break;
			}
			if (e)
				goto out;
		}
	}
out:
	if (cur)
		mdb_cursor_close(cur);
	return e;
}

/* Appends data to st under the bounds; a log or metrics record that cannot
 * fit even with every older one of its rank gone is dropped itself. */
static op_err add_record(struct op_store *s, MDB_txn *t, struct op_store__req *r,
                         enum op_outbox_stream st, const void *data, size_t len, bool *mapfull)
{
	if (s->ob_cur.max_records == 0)
		return OP_OK;
	/* Near map_max, space is kept for what drains the store. */
	if (st != OP_OUTBOX_EXECS && s->space_low)
		return OP_EFULL;
	uint64_t seq = s->ob_last[st] + s->pend_ob[st].seqs + r->ob[st].seqs + 1;
	r->ob[st].seqs++;
	bool keep = true;
	if (st != OP_OUTBOX_EXECS) {
		int64_t recs, bytes, pr[OP_OUTBOX_STREAMS], pb[OP_OUTBOX_STREAMS];
		view(s, r, &recs, &bytes, pr, pb);
		uint64_t left_r = (uint64_t)(recs - pr[OP_OUTBOX_LOGS]);
		uint64_t left_b = (uint64_t)(bytes - pb[OP_OUTBOX_LOGS]);
		if (st == OP_OUTBOX_METRICS) {
			left_r -= (uint64_t)pr[OP_OUTBOX_METRICS];
			left_b -= (uint64_t)pb[OP_OUTBOX_METRICS];
		}
		uint64_t max_b = s->ob_cur.max_bytes ? s->ob_cur.max_bytes : UINT64_MAX;
		keep = left_r + 1 <= s->ob_cur.max_records && len <= max_b && left_b <= max_b - len;
	}
	if (keep) {
		uint8_t kb[OP_STORE__OKEY];
		make_key(kb, st, seq);
		MDB_val k = {sizeof(kb), kb}, v = {OP_STORE__HDR + len, NULL};
		int rc = op_store__put_last(t, s->dbi[OP_STORE_DB_OUTBOX], &k, &v,
		                            MDB_RESERVE | MDB_NOOVERWRITE);
		if (rc)
			return mfail(rc, mapfull);
		memcpy((uint8_t *)v.mv_data + OP_STORE__HDR, data, len);
		op_store__seal(v.mv_data, &k, OP_STORE__K_OUTBOX, len);
		r->ob[st].recs++;
		r->ob[st].bytes += (int64_t)len;
		r->ob[st].added++;
	} else {
		r->ob[st].dropped++;
	}
	return trim(s, t, r, st, keep ? seq : 0, mapfull);
}

/* Deletes the records of r->stream up to r->upto, oldest first. */
static op_err ack_upto(struct op_store *s, MDB_txn *t, struct op_store__req *r, bool *mapfull)
{
	MDB_cursor *cur = NULL;
	enum op_outbox_stream st = r->stream;
	int rc = mdb_cursor_open(t, s->dbi[OP_STORE_DB_OUTBOX], &cur);
	if (rc)
		return mfail(rc, mapfull);
	op_err e;
	for (;;) {
		MDB_val k, v;
		uint64_t seq = 0;
		e = first_of(s, t, r, cur, st, &k, &v, &seq, mapfull);
		if (e == OP_ENOTFOUND || (e == OP_OK && seq > r->upto)) {
			e = OP_OK;
			break;
		}
		if (e)
			break;
		uint64_t n = data_len(&v);
		rc = mdb_cursor_del(cur, 0);
		if (rc) {
			e = mfail(rc, mapfull);
			break;
		}
		r->ob[st].recs--;
		r->ob[st].bytes -= (int64_t)n;
	}
	mdb_cursor_close(cur);
	return e;
}

op_err op_store__outbox_apply(struct op_store *s, MDB_txn *t, struct op_store__req *r,
                              bool *mapfull)
{
	if (r->op == OP_STORE__OUTBOX_ADD)
		return add_record(s, t, r, r->stream, r->payload, r->payload_len, mapfull);
	return ack_upto(s, t, r, mapfull);
}

op_err op_store__outbox_exec(struct op_store *s, MDB_txn *t, struct op_store__req *r,
                             const struct op_store_exec *rec, bool *mapfull)
{
	if (s->ob_cur.max_records == 0)
		return OP_OK;
	cJSON *j = op_store_exec_json(rec);
	char *text = j ? cJSON_PrintUnformatted(j) : NULL;
	cJSON_Delete(j);
	if (text == NULL)
		return OP_ENOMEM;
	op_err e = add_record(s, t, r, OP_OUTBOX_EXECS, text, strlen(text), mapfull);
	cJSON_free(text);
	return e;
}

/* ---- the public API ---- */

void op_store_outbox_limits(struct op_store *s, const struct op_outbox_limits *l)
{
	pthread_mutex_lock(&s->mu);
	s->ob_lim = l ? *l : (struct op_outbox_limits){0};
	atomic_store(&s->ob_on, s->ob_lim.max_records != 0);
	pthread_mutex_unlock(&s->mu);
}

op_err op_store_outbox_add(struct op_store *s, enum op_outbox_stream st, const char *rec,
                           size_t len)
{
	if (!stream_ok(st) || st == OP_OUTBOX_EXECS || rec == NULL || len == 0)
		return OP_EINVAL;
	if (len > OP_OUTBOX_RECORD_MAX)
		return OP_ELIMIT;
	if (!atomic_load_explicit(&s->ob_on, memory_order_relaxed))
		return OP_OK;
	struct op_store__req *r = op_malloc(sizeof(*r) + len);
	if (r == NULL)
		return OP_ENOMEM;
	memset(r, 0, sizeof(*r));
	char *data = (char *)(r + 1);
	memcpy(data, rec, len);
	r->op = OP_STORE__OUTBOX_ADD;
	r->stream = st;
	r->payload = data;
	r->payload_len = len;
	return op_store__submit_detached(s, r);
}

op_err op_store_outbox_ack(struct op_store *s, enum op_outbox_stream st, uint64_t upto)
{
	if (!stream_ok(st))
		return OP_EINVAL;
	if (upto == 0)
		return OP_OK;
	struct op_store__req *r = op_calloc(1, sizeof(*r));
	if (r == NULL)
		return OP_ENOMEM;
	r->op = OP_STORE__OUTBOX_ACK;
	r->stream = st;
	r->upto = upto;
	return op_store__submit_detached(s, r);
}

/* Hands a corrupt record to the writer without waiting for it. */
static void quarantine_later(struct op_store *s, const uint8_t key[OP_STORE__OKEY])
{
	struct op_store__req *q = op_calloc(1, sizeof(*q) + OP_STORE__OKEY);
	if (q == NULL)
		return; /* found again by the next read */
	memcpy(q + 1, key, OP_STORE__OKEY);
	q->op = OP_STORE__QUARANTINE;
	q->db = OP_STORE_DB_OUTBOX;
	q->key = (const char *)(q + 1);
	q->key_len = OP_STORE__OKEY;
	/* On failure (closing) q is freed; the next open reads it again. */
	op_err e = op_store__submit_detached(s, q);
	(void)e;
}

op_err op_store_outbox_read(struct op_store *s, enum op_outbox_stream st, uint64_t after,
                            size_t max_n, size_t max_bytes, struct op_outbox_batch *b)
{
	struct op_outbox_rec *v = NULL;
	uint8_t(*bad)[OP_STORE__OKEY] = NULL;
	size_t n = 0, cap = 0, nbad = 0, capbad = 0, total = 0;
	char *buf = NULL;
	MDB_txn *t = NULL;
	MDB_cursor *c = NULL;
	memset(b, 0, sizeof(*b));
	if (!stream_ok(st) || max_n == 0)
		return OP_EINVAL;
	if (after == UINT64_MAX)
		return OP_OK;
	op_err e = op_store__rd_begin(s, &t);
	if (e)
		return e;
	uint8_t kb[OP_STORE__OKEY];
	make_key(kb, st, after + 1);
	MDB_val k = {sizeof(kb), kb}, d;
	int rc = mdb_cursor_open(t, s->dbi[OP_STORE_DB_OUTBOX], &c);
	if (rc == 0)
		rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	while (rc == 0 && n < max_n) {
		enum op_outbox_stream kst;
		uint64_t seq;
		const uint8_t *p;
		size_t plen;
		if (!op_store__outbox_key(&k, &kst, &seq)) {
			/* Not ours (written behind the store's back): the next open
			 * quarantines it. Past it if it sorts into this stream. */
			if (k.mv_size == 0 || ((const uint8_t *)k.mv_data)[0] != (uint8_t)st)
				break;
			rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
			continue;
		}
		if (kst != st)
			break;
		if (op_store__open_rec(&k, &d, OP_STORE__K_OUTBOX, &p, &plen) != OP_OK) {
			if (nbad == capbad) {
				size_t nc = capbad ? capbad * 2 : 4;
				void *nb = op_realloc(bad, nc * sizeof(*bad));
				if (nb) {
					bad = nb;
					capbad = nc;
				}
			}
			if (nbad < capbad)
				memcpy(bad[nbad++], k.mv_data, OP_STORE__OKEY);
			rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
			continue;
		}
		if (n > 0 && (plen > max_bytes || total > max_bytes - plen))
			break;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			if (nc > max_n)
				nc = max_n;
			struct op_outbox_rec *nv = op_realloc(v, nc * sizeof(*v));
			if (nv == NULL) {
				e = OP_ENOMEM;
				goto out;
			}
			v = nv;
			cap = nc;
		}
		/* Points into the map until copied below, inside the txn. */
		v[n++] = (struct op_outbox_rec){seq, (const char *)p, plen};
		total += plen;
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	if (rc && rc != MDB_NOTFOUND) {
		e = op_store__from_mdb(rc);
		goto out;
	}
	if (n > 0) {
		buf = op_malloc(total + n);
		if (buf == NULL) {
			e = OP_ENOMEM;
			goto out;
		}
		char *at = buf;
		for (size_t i = 0; i < n; i++) {
			if (v[i].len)
				memcpy(at, v[i].data, v[i].len);
			at[v[i].len] = 0;
			v[i].data = at;
			at += v[i].len + 1;
		}
	}
out:
	if (c)
		mdb_cursor_close(c);
	op_store__rd_end(s, t);
	for (size_t i = 0; i < nbad; i++)
		quarantine_later(s, bad[i]);
	op_free(bad);
	if (e) {
		op_free(v);
		op_free(buf);
		return e;
	}
	if (n == 0) {
		op_free(v);
		v = NULL;
	}
	b->v = v;
	b->n = n;
	b->buf = buf;
	return OP_OK;
}

void op_outbox_batch_free(struct op_outbox_batch *b)
{
	if (b == NULL)
		return;
	op_free(b->v);
	op_free(b->buf);
	memset(b, 0, sizeof(*b));
}

void op_store_outbox_stats(struct op_store *s, struct op_outbox_stats *st)
{
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < OP_OUTBOX_STREAMS; i++) {
		st->records[i] = s->ob_recs[i];
		st->bytes[i] = s->ob_bytes[i];
		st->dropped[i] = s->ob_dropped[i];
		st->last_seq[i] = s->ob_last[i];
	}
	pthread_mutex_unlock(&s->mu);
}

void op_store_outbox_on_add(struct op_store *s, void (*fn)(void *ud), void *ud)
{
	pthread_mutex_lock(&s->mu);
	s->ob_hook = fn;
	s->ob_hook_ud = ud;
	/* A call of the old hook may be under way: its ud must outlive it. */
	bool self = s->writer_started && pthread_equal(pthread_self(), s->writer);
	while (s->ob_hook_busy && !self)
		pthread_cond_wait(&s->ob_hook_cv, &s->mu);
	pthread_mutex_unlock(&s->mu);
}
