/*
 * The store's single writer thread and the write requests it applies. Callers
 * put a request on s->head and sleep on their own condition variable; the
 * writer takes every pending request, applies each in a nested transaction of
 * one write transaction (so one failing request is rolled back alone), commits
 * once (group commit) and only then hands the batch to the completer thread,
 * which wakes the callers and runs the callbacks while the writer goes on
 * with the next batch. Key invariant: a caller
 * sees OP_OK only after the transaction holding its change is committed, and a
 * failed commit is retried with the requests one by one (a full one first
 * without its outbox adds, which are dropped and counted), so a request that
 * cannot fit (map or disk full) fails alone and nothing committed is lost.
 * Counter changes are collected per request and reach the live counters only
 * after the commit.
 */
#define OP_LOG_MODULE "store"

#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/clock.h"
#include "agent/core/fault.h"
#include "agent/core/log.h"
#include "agent/store/store_int.h"

#define READER_CHECK_MS 60000
#define MAX_QUARANTINE  4 /* corrupt queue records one take moves aside */
#define GROW_AT_PERCENT 80
/* At map_max, new data is refused while less than this is left, so that
 * takes, acks and dead-lettering (which need pages too) can still drain. */
#define RESERVE_PERCENT   10
#define RESERVE_MIN_PAGES 64
/* The writer asks statvfs how much disk is free when this long has passed
 * since it last did (sooner when the file grows fast). */
#define DISK_CHECK_MS 1000

struct ctx {
	struct op_store *s;
	MDB_txn *t;
	struct op_store__req *r;
	bool mapfull; /* an LMDB call failed with MDB_MAP_FULL */
	bool keep;    /* commit the nested txn although the result is an error */
	int nquar;
};

static op_err mfail(struct ctx *c, int rc)
{
	if (rc == MDB_MAP_FULL)
		c->mapfull = true;
	return op_store__from_mdb(rc);
}

int op_store__pipe_get(struct op_store *s, const char *name, size_t len, bool create)
{
	int idx = -1;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->npipes; i++) {
		if (strlen(s->pipes[i].name) == len && memcmp(s->pipes[i].name, name, len) == 0) {
			idx = (int)i;
			goto out;
		}
	}
	if (!create)
		goto out;
	if (s->npipes == s->cappipes) {
		size_t cap = s->cappipes ? s->cappipes * 2 : 8;
		struct op_store__pipe *p = op_realloc(s->pipes, cap * sizeof(*p));
		if (p == NULL)
			goto out;
		s->pipes = p;
		s->cappipes = cap;
	}
	char *n = op_strndup(name, len);
	if (n == NULL)
		goto out;
	memset(&s->pipes[s->npipes], 0, sizeof(s->pipes[0]));
	s->pipes[s->npipes].name = n;
	idx = (int)s->npipes++;
out:
	pthread_mutex_unlock(&s->mu);
	return idx;
}

static op_err delta(struct op_store__req *r, int pipe, int64_t events, int64_t bytes)
{
	if (r == NULL || pipe < 0)
		return OP_OK;
	for (int i = 0; i < r->nd; i++) {
		if (r->d[i].pipe == pipe) {
			r->d[i].events += events;
			r->d[i].bytes += bytes;
			return OP_OK;
		}
	}
	if (r->nd == OP_STORE__MAXDELTA)
		return OP_ELIMIT;
	r->d[r->nd++] = (struct op_store__delta){pipe, events, bytes};
	return OP_OK;
}

/* True if adding events/bytes to pipe stays within the queue bound, counting
 * what earlier requests of this batch and this request already added. */
static bool bound_ok(struct op_store *s, struct op_store__req *r, int pipe, size_t bytes)
{
	int64_t ev = 1, by = (int64_t)bytes;
	for (int i = 0; i < r->nd; i++) {
		if (r->d[i].pipe == pipe) {
			ev += r->d[i].events;
			by += r->d[i].bytes;
		}
	}
	pthread_mutex_lock(&s->mu);
	const struct op_store__pipe *p = &s->pipes[pipe];
	ev += (int64_t)p->events + p->pend_events;
	by += (int64_t)p->bytes + p->pend_bytes;
	pthread_mutex_unlock(&s->mu);
	return (uint64_t)ev <= s->opts.queue_max_events && (uint64_t)by <= s->opts.queue_max_bytes;
}

op_err op_store__quarantine(struct op_store *s, MDB_txn *txn, enum op_store_db db,
                            const MDB_val *key, const MDB_val *val, struct op_store__req *r)
{
	/* Copy first: key and val may point into pages this txn is about to touch. */
	size_t plen = 8 + key->mv_size + val->mv_size;
	uint8_t *copy = op_malloc(plen);
	if (copy == NULL)
		return OP_ENOMEM;
	copy[0] = (uint8_t)db;
	copy[1] = copy[2] = copy[3] = 0;
	uint32_t klen32 = (uint32_t)key->mv_size;
	memcpy(copy + 4, &klen32, 4);
	memcpy(copy + 8, key->mv_data, key->mv_size);
	memcpy(copy + 8 + key->mv_size, val->mv_data, val->mv_size);
	size_t vsize = val->mv_size;
	enum op_outbox_stream ost = OP_OUTBOX_LOGS;
	uint64_t oseq;
	bool outbox = db == OP_STORE_DB_OUTBOX && op_store__outbox_key(key, &ost, &oseq);
	int pipe = -1;
	if (db == OP_STORE_DB_QUEUE && r != NULL) {
		const uint8_t *nul = memchr(copy + 8, 0, key->mv_size);
		if (nul != NULL)
			pipe = op_store__pipe_get(s, (const char *)copy + 8,
			                          (size_t)(nul - (copy + 8)), false);
	}
	uint8_t kb[8];
	op_store__put_u64be(kb, s->seq++);
	MDB_val qk = {8, kb}, qv = {OP_STORE__HDR + plen, NULL};
	op_err e = OP_OK;
	int rc = mdb_put(txn, s->dbi[OP_STORE_DB_QUARANTINE], &qk, &qv, MDB_RESERVE);
	if (rc == 0) {
		memcpy((uint8_t *)qv.mv_data + OP_STORE__HDR, copy, plen);
		op_store__seal(qv.mv_data, &qk, OP_STORE__K_QUARANTINE, plen);
		MDB_val k = {key->mv_size, copy + 8};
		rc = mdb_del(txn, s->dbi[db], &k, NULL);
	}
	if (rc != 0) {
		e = op_store__from_mdb(rc);
		goto out;
	}
	if (r != NULL) {
		e = delta(r, pipe, -1, -(int64_t)vsize);
		if (e)
			goto out;
		if (db == OP_STORE_DB_INFLIGHT)
			r->d_inflight--;
		else if (db == OP_STORE_DB_DEAD)
			r->d_dead--;
		if (outbox) {
			r->ob[ost].recs--;
			r->ob[ost].bytes -=
			    vsize > OP_STORE__HDR ? (int64_t)(vsize - OP_STORE__HDR) : 0;
		}
		r->d_quar++;
	} else {
		s->quarantined++; /* op_store_open, before the writer runs */
	}
	OP_LOGE("corrupt record in database %s (key %zu bytes, value %zu bytes) moved to "
	        "quarantine",
	        op_store__db_name(db), key->mv_size, vsize);
out:
	op_free(copy);
	return e;
}

static op_err put_event(struct ctx *c, enum op_store_db db, MDB_val *key,
                        const struct op_store_event *ev, uint64_t seq)
{
	MDB_val v = {op_store__event_size(ev), NULL};
	int rc = op_store__put_last(c->t, c->s->dbi[db], key, &v, MDB_RESERVE | MDB_NOOVERWRITE);
	if (rc)
		return mfail(c, rc);
	op_store__event_write(v.mv_data, key, ev, seq);
	return OP_OK;
}

static op_err write_exec(struct ctx *c, const struct op_store_exec *in)
{
	struct op_store *s = c->s;
	struct op_store_exec rec = *in;
	op_err e;
	int rc;
	if (rec.id[0] == 0) {
		e = op_uuid_v7(rec.id);
		if (e)
			return e;
	}
	if (strnlen(rec.id, sizeof(rec.id)) != OP_UUID_LEN)
		return OP_EINVAL;
	MDB_val ik = {OP_UUID_LEN, rec.id}, iv;
	rc = mdb_get(c->t, s->dbi[OP_STORE_DB_EXECIDX], &ik, &iv);
	if (rc == 0)
		return OP_EINVAL;
	if (rc != MDB_NOTFOUND)
		return mfail(c, rc);
	uint64_t seq = s->seq++;
	uint8_t kb[8];
	op_store__put_u64be(kb, seq);
	MDB_val k = {8, kb}, v = {op_store__exec_size(&rec), NULL};
	rc = op_store__put_last(c->t, s->dbi[OP_STORE_DB_EXECS], &k, &v,
	                        MDB_RESERVE | MDB_NOOVERWRITE);
	if (rc)
		return mfail(c, rc);
	op_store__exec_write(v.mv_data, &k, &rec, seq);
	iv = (MDB_val){OP_STORE__HDR + 8, NULL};
	rc = op_store__put_last(c->t, s->dbi[OP_STORE_DB_EXECIDX], &ik, &iv, MDB_RESERVE);
	if (rc)
		return mfail(c, rc);
	memcpy((uint8_t *)iv.mv_data + OP_STORE__HDR, kb, 8);
	op_store__seal(iv.mv_data, &ik, OP_STORE__K_INDEX, 8);
	/* In this same nested txn: the record never commits without its copy. */
	e = op_store__outbox_exec(s, c->t, c->r, &rec, &c->mapfull);
	if (e)
		return e;

	/*
	 * Retention: past the bound, drop the oldest records (lowest keys) down
	 * to the bound less a 32nd of it. Dropping one record for each one added
	 * rewrote the first pages of `execs` and `execidx` in every commit; now
	 * that happens once every bound/32 records.
	 */
	uint64_t bound = s->opts.exec_retention == OP_STORE_KEEP_NONE ? 0 : s->opts.exec_retention;
	MDB_stat st;
	rc = mdb_stat(c->t, s->dbi[OP_STORE_DB_EXECS], &st);
	if (rc)
		return mfail(c, rc);
	MDB_cursor *cur = NULL;
	uint64_t entries = st.ms_entries;
	if (entries <= bound)
		return OP_OK;
	uint64_t keep = bound - bound / 32;
	rc = mdb_cursor_open(c->t, s->dbi[OP_STORE_DB_EXECS], &cur);
	if (rc)
		return mfail(c, rc);
	e = OP_OK;
	while (entries > keep) {
		MDB_val ok, ov;
		const uint8_t *p;
		size_t n;
		rc = mdb_cursor_get(cur, &ok, &ov, MDB_FIRST);
		if (rc) {
			e = mfail(c, rc);
			break;
		}
		char id[OP_UUID_LEN];
		if (op_store__open_rec(&ok, &ov, OP_STORE__K_EXEC, &p, &n) == OP_OK &&
		    op_store__exec_id(p, n, id)) {
			MDB_val dk = {OP_UUID_LEN, id};
			rc = mdb_del(c->t, s->dbi[OP_STORE_DB_EXECIDX], &dk, NULL);
			if (rc && rc != MDB_NOTFOUND) {
				e = mfail(c, rc);
				break;
			}
		}
		rc = mdb_cursor_del(cur, 0);
		if (rc) {
			e = mfail(c, rc);
			break;
		}
		entries--;
	}
	mdb_cursor_close(cur);
	return e;
}

/* Logs a change of disk_low from was, and publishes the store's room for
 * op_store_stats and op_store_room_low. */
static void space_changed(struct op_store *s, bool was)
{
	double mib = 1024.0 * 1024.0;
	if (s->disk_low && !was)
		OP_LOGW("the disk under %s has %.1f MiB free, too little to keep disk_reserve "
		        "(%.1f MiB) free: new events are refused until there is room; queued "
		        "events still run",
		        s->dir, (double)s->disk_avail / mib, (double)s->opts.disk_reserve / mib);
	else if (was && !s->disk_low)
		OP_LOGI("the disk under %s has room again (%.1f MiB free, and %.1f MiB free inside "
		        "the store): new events are accepted",
		        s->dir, (double)s->disk_avail / mib, (double)s->disk_inside / mib);
	pthread_mutex_lock(&s->mu);
	s->room_low_pub = s->space_low;
	s->disk_low_pub = s->disk_low;
	s->disk_avail_pub = s->disk_avail;
	pthread_mutex_unlock(&s->mu);
}

/*
 * Whether new data of size bytes may go into this batch: the store is not
 * short of room, and the disk's budget for the batch (what it has free over
 * its reserve, check_space) covers it and a page of overhead, which it then
 * takes. A batch of large events thus stops short of the reserve instead of
 * failing whole on a full disk; the first one refused makes the disk low.
 */
static bool admit(struct op_store *s, size_t size)
{
	if (s->space_low)
		return false;
	uint64_t need = (uint64_t)size + s->psize;
	if (need > s->disk_budget) {
		/* As low as if statvfs had said so, till it says otherwise. */
		bool was = s->disk_low;
		s->disk_low = true;
		s->space_low = true;
		space_changed(s, was);
		return false;
	}
	s->disk_budget -= need;
	return true;
}

static op_err do_enqueue(struct ctx *c)
{
	struct op_store *s = c->s;
	struct op_store__req *r = c->r;
	if (s->space_low)
		return OP_EFULL;
	struct op_store_event ev = {0};
	memcpy(ev.id, r->id, sizeof(ev.id));
	ev.pipeline = (char *)r->pipeline;
	ev.trigger = (char *)r->trigger;
	ev.payload = (char *)r->payload;
	ev.payload_len = r->payload_len;
	ev.attempt = 1;
	ev.enqueued_ms = r->now;
	ev.not_before_ms = r->t;
	size_t size = op_store__event_size(&ev);
	int pipe = op_store__pipe_get(s, r->pipeline, strlen(r->pipeline), true);
	if (pipe < 0)
		return OP_ENOMEM;
	if (!bound_ok(s, r, pipe, size) || !admit(s, size))
		return OP_EFULL;
	uint64_t seq = s->seq++;
	uint8_t kb[OP_STORE__QKEY_MAX];
	MDB_val k = {op_store__qkey(kb, r->pipeline, r->t, seq), kb};
	op_err e = put_event(c, OP_STORE_DB_QUEUE, &k, &ev, seq);
	if (e)
		return e;
	return delta(r, pipe, 1, (int64_t)size);
}

/* The queue key of the earliest due event, in kb/klen; false if none. A key
 * that does not parse is moved to quarantine and the walk starts over. */
static op_err find_due(struct ctx *c, MDB_cursor *cur, uint8_t *kb, size_t *klen)
{
	const char *only = c->r->pipeline;
	size_t olen = only ? strlen(only) : 0;
	int64_t now = c->r->now;
again:
	*klen = 0;
	uint8_t seek[OP_STORE__QKEY_MAX];
	MDB_val k, v;
	int rc;
	if (only) {
		memcpy(seek, only, olen + 1);
		k = (MDB_val){olen + 1, seek};
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	} else {
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	}
	while (rc == 0) {
		const uint8_t *kd = k.mv_data;
		const uint8_t *nul = memchr(kd, 0, k.mv_size);
		size_t nlen = nul ? (size_t)(nul - kd) : 0;
		if (nul == NULL || k.mv_size != nlen + 17 || nlen > OP_STORE_NAME_MAX) {
			if (c->nquar++ >= MAX_QUARANTINE)
				return OP_EBUSY;
			op_err e =
			    op_store__quarantine(c->s, c->t, OP_STORE_DB_QUEUE, &k, &v, c->r);
			if (e)
				return e;
			goto again;
		}
		if (only && (nlen != olen || memcmp(kd, only, olen) != 0))
			break;
		uint64_t nb = op_store__get_u64be(kd + nlen + 1);
		/* (not_before, seq) big-endian at the key's end: memcmp orders them. */
		if (nb <= (uint64_t)(now < 0 ? 0 : now) &&
		    (*klen == 0 || memcmp(kd + nlen + 1, kb + *klen - 16, 16) < 0)) {
			memcpy(kb, kd, k.mv_size);
			*klen = k.mv_size;
		}
		if (only)
			break;
		/* Skip the rest of this pipeline: its first key is its earliest. */
		memcpy(seek, kd, nlen);
		seek[nlen] = 1;
		k = (MDB_val){nlen + 1, seek};
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		return mfail(c, rc);
	return OP_OK;
}

static op_err do_take(struct ctx *c)
{
	struct op_store *s = c->s;
	MDB_cursor *cur = NULL;
	struct op_store_event *ev = NULL;
	uint8_t kb[OP_STORE__QKEY_MAX];
	size_t klen;
	uint64_t seq;
	op_err e;
	int rc = mdb_cursor_open(c->t, s->dbi[OP_STORE_DB_QUEUE], &cur);
	if (rc)
		return mfail(c, rc);
	for (;;) {
		e = find_due(c, cur, kb, &klen);
		if (e)
			goto out;
		if (klen == 0) {
			e = OP_ENOTFOUND;
			goto out;
		}
		MDB_val k = {klen, kb}, v;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
		if (rc) {
			e = mfail(c, rc);
			goto out;
		}
		e = op_store__event_read(&k, &v, &ev, &seq);
		if (e != OP_ECORRUPT)
			break;
		if (c->nquar++ >= MAX_QUARANTINE) {
			e = OP_EBUSY;
			goto out;
		}
		e = op_store__quarantine(s, c->t, OP_STORE_DB_QUEUE, &k, &v, c->r);
		if (e)
			goto out;
	}
	if (e)
		goto out;
	mdb_cursor_close(cur);
	cur = NULL;
	size_t old_size = op_store__event_size(ev);
	int pipe = op_store__pipe_get(s, ev->pipeline, strlen(ev->pipeline), true);
	if (pipe < 0) {
		e = OP_ENOMEM;
		goto out;
	}
	MDB_val k = {klen, kb};
	rc = mdb_del(c->t, s->dbi[OP_STORE_DB_QUEUE], &k, NULL);
	if (rc) {
		e = mfail(c, rc);
		goto out;
	}
	ev->taken_ms = c->r->now;
	MDB_val ik = {OP_UUID_LEN, ev->id};
	e = put_event(c, OP_STORE_DB_INFLIGHT, &ik, ev, seq);
	if (e)
		goto out;
	e = delta(c->r, pipe, -1, -(int64_t)old_size);
	if (e)
		goto out;
	c->r->d_inflight++;
	c->r->ev = ev;
	ev = NULL;
out:
	if (cur)
		mdb_cursor_close(cur);
	op_store_event_free(ev);
	/* Records quarantined on the way stay quarantined even if nothing was due. */
	if (c->nquar > 0 && (e == OP_ENOTFOUND || e == OP_EBUSY))
		c->keep = true;
	return e;
}

/*
 * Up to maxev due events of one pipeline into flight, in one transaction.
 * A lease is a copy of its event (the queued one's pages are free only after
 * the commit), so the leases count against the batch's disk budget: past it,
 * or short of room (near the map's or the disk's reserve), the first take
 * is the only one, and the drain fits in what the reserve kept.
 */
static op_err do_take_n(struct ctx *c)
{
	struct op_store *s = c->s;
	struct op_store__req *r = c->r;
	size_t maxev = s->space_low || s->disk_tight ? 1 : r->maxev;
	op_err e = OP_OK;
	while (r->nev < maxev) {
		e = do_take(c);
		if (e)
			break;
		uint64_t need = op_store__event_size(r->ev) + s->psize;
		r->evs[r->nev++] = r->ev;
		r->ev = NULL;
		if (need > s->disk_budget) {
			s->disk_budget = 0;
			break;
		}
		s->disk_budget -= need;
	}
	if (r->nev > 0 && (e == OP_ENOTFOUND || e == OP_EBUSY))
		e = OP_OK;
	return e;
}

/* Reads the event id from db into *ev; a corrupt one is quarantined. */
static op_err get_event(struct ctx *c, enum op_store_db db, struct op_store_event **ev,
                        uint64_t *seq)
{
	MDB_val k = {OP_UUID_LEN, (void *)c->r->event_id}, v;
	*ev = NULL;
	int rc = mdb_get(c->t, c->s->dbi[db], &k, &v);
	if (rc)
		return mfail(c, rc);
	op_err e = op_store__event_read(&k, &v, ev, seq);
	if (e == OP_ECORRUPT) {
		op_err q = op_store__quarantine(c->s, c->t, db, &k, &v, c->r);
		if (q)
			return q;
		c->keep = true;
	}
	return e;
}

/* How requeue changes the event it moves. */
enum requeue_as {
	AS_RETRY,   /* attempt + 1, the request's not-before and error */
	AS_REPLAY,  /* attempt 1, due at once, no error */
	AS_RELEASE, /* unchanged: taken, never started */
};

/* Moves an event from `from` to the queue (retry, replay, release). */
static op_err requeue(struct ctx *c, enum op_store_db from, enum requeue_as as)
{
	bool replay = as == AS_REPLAY;
	struct op_store *s = c->s;
	struct op_store__req *r = c->r;
	struct op_store_event *ev = NULL;
	uint64_t seq;
	op_err e = get_event(c, from, &ev, &seq);
	if (e)
		return e;
	int pipe = op_store__pipe_get(s, ev->pipeline, strlen(ev->pipeline), true);
	if (pipe < 0) {
		e = OP_ENOMEM;
		goto out;
	}
	char *olderr = ev->error;
	if (replay) {
		ev->attempt = 1;
		ev->not_before_ms = 0; /* due at once, ahead of later events by its seq */
		ev->error = NULL;
		ev->dead_ms = 0;
	} else if (as == AS_RETRY) {
		ev->attempt++;
		ev->not_before_ms = r->t;
		ev->error = (char *)r->error;
	}
	/* A released event keeps its mark: it may come back from a crash, and
	 * the runtime's guard against events that crash the agent reads it. */
	if (as != AS_RELEASE)
		ev->redelivered = false;
	size_t size = op_store__event_size(ev);
	if (replay && (!bound_ok(s, r, pipe, size) || !admit(s, size))) {
		e = OP_EFULL;
		goto restore;
	}
	uint8_t kb[OP_STORE__QKEY_MAX];
	MDB_val qk = {op_store__qkey(kb, ev->pipeline, ev->not_before_ms, seq), kb};
	e = put_event(c, OP_STORE_DB_QUEUE, &qk, ev, seq);
	if (e)
		goto restore;
	MDB_val k = {OP_UUID_LEN, ev->id};
	int rc = mdb_del(c->t, s->dbi[from], &k, NULL);
	if (rc) {
		e = mfail(c, rc);
		goto restore;
	}
	e = delta(r, pipe, 1, (int64_t)size);
	if (from == OP_STORE_DB_INFLIGHT)
		r->d_inflight--;
	else
		r->d_dead--;
	if (!e && r->rec)
		e = write_exec(c, r->rec);
restore:
	ev->error = olderr;
out:
	op_store_event_free(ev);
	return e;
}

static op_err do_dead(struct ctx *c)
{
	struct op_store *s = c->s;
	struct op_store__req *r = c->r;
	struct op_store_event *ev = NULL;
	uint64_t seq;
	op_err e = get_event(c, OP_STORE_DB_INFLIGHT, &ev, &seq);
	if (e)
		return e;
	char *olderr = ev->error;
	ev->error = (char *)(r->error ? r->error : "");
	ev->dead_ms = r->now;
	MDB_val k = {OP_UUID_LEN, ev->id};
	int rc = mdb_del(c->t, s->dbi[OP_STORE_DB_INFLIGHT], &k, NULL);
	if (rc)
		e = mfail(c, rc);
	if (!e)
		e = put_event(c, OP_STORE_DB_DEAD, &k, ev, seq);
	if (!e) {
		r->d_inflight--;
		r->d_dead++;
		if (r->rec)
			e = write_exec(c, r->rec);
	}
	ev->error = olderr;
	op_store_event_free(ev);
	return e;
}

static op_err do_ack(struct ctx *c)
{
	MDB_val k = {OP_UUID_LEN, (void *)c->r->event_id};
	int rc = mdb_del(c->t, c->s->dbi[OP_STORE_DB_INFLIGHT], &k, NULL);
	if (rc)
		return mfail(c, rc);
	c->r->d_inflight--;
	return c->r->rec ? write_exec(c, c->r->rec) : OP_OK;
}

static op_err do_put(struct ctx *c)
{
	struct op_store__req *r = c->r;
	if (!admit(c->s, OP_STORE__HDR + r->key_len + r->payload_len))
		return OP_EFULL;
	MDB_val k = {r->key_len, (void *)r->key}, v = {OP_STORE__HDR + r->payload_len, NULL};
	int rc = mdb_put(c->t, c->s->dbi[r->db], &k, &v, MDB_RESERVE);
	if (rc)
		return mfail(c, rc);
	if (r->payload_len)
		memcpy((uint8_t *)v.mv_data + OP_STORE__HDR, r->payload, r->payload_len);
	op_store__seal(v.mv_data, &k, OP_STORE__K_BLOB, r->payload_len);
	return OP_OK;
}

static op_err do_del(struct ctx *c)
{
	MDB_val k = {c->r->key_len, (void *)c->r->key};
	int rc = mdb_del(c->t, c->s->dbi[c->r->db], &k, NULL);
	return rc ? mfail(c, rc) : OP_OK;
}

/* A reader found a corrupt record: check again under the write txn. */
static op_err do_quarantine(struct ctx *c)
{
	struct op_store__req *r = c->r;
	MDB_val k = {r->key_len, (void *)r->key}, v;
	int rc = mdb_get(c->t, c->s->dbi[r->db], &k, &v);
	if (rc == MDB_NOTFOUND)
		return OP_OK;
	if (rc)
		return mfail(c, rc);
	const uint8_t *p;
	size_t n;
	op_err e = op_store__open_rec(&k, &v, op_store__db_kind(r->db), &p, &n);
	if (e == OP_OK && op_store__db_kind(r->db) == OP_STORE__K_EVENT) {
		struct op_store_event *ev;
		e = op_store__event_read(&k, &v, &ev, NULL);
		op_store_event_free(ev);
	} else if (e == OP_OK && r->db == OP_STORE_DB_EXECS) {
		struct op_store_exec *rec;
		e = op_store__exec_read(&k, &v, &rec);
		op_store_exec_free(rec);
	}
	if (e == OP_ECORRUPT)
		return op_store__quarantine(c->s, c->t, r->db, &k, &v, r);
	return e;
}

static op_err apply(struct ctx *c)
{
	switch (c->r->op) {
	case OP_STORE__ENQUEUE:
		return do_enqueue(c);
	case OP_STORE__TAKE:
		return do_take(c);
	case OP_STORE__ACK:
		return do_ack(c);
	case OP_STORE__RETRY:
		return requeue(c, OP_STORE_DB_INFLIGHT, AS_RETRY);
	case OP_STORE__RELEASE:
		return requeue(c, OP_STORE_DB_INFLIGHT, AS_RELEASE);
	case OP_STORE__DEAD:
		return do_dead(c);
	case OP_STORE__REPLAY:
		return requeue(c, OP_STORE_DB_DEAD, AS_REPLAY);
	case OP_STORE__PUT:
		return do_put(c);
	case OP_STORE__DEL:
		return do_del(c);
	case OP_STORE__RECORD:
		return write_exec(c, c->r->rec);
	case OP_STORE__TAKE_N:
		return do_take_n(c);
	case OP_STORE__QUARANTINE:
		return do_quarantine(c);
	case OP_STORE__NOP:
		return OP_OK;
	case OP_STORE__OUTBOX_ADD:
	case OP_STORE__OUTBOX_ACK:
		return op_store__outbox_apply(c->s, c->t, c->r, &c->mapfull);
	}
	return OP_EINTERNAL;
}

static void req_evs_free(struct op_store__req *r)
{
	for (size_t i = 0; i < r->nev; i++) {
		op_store_event_free(r->evs[i]);
		r->evs[i] = NULL;
	}
	r->nev = 0;
}

static void req_reset(struct op_store__req *r)
{
	op_store_event_free(r->ev);
	r->ev = NULL;
	req_evs_free(r);
	r->result = OP_OK;
	r->nd = 0;
	r->d_inflight = r->d_dead = r->d_quar = 0;
	memset(r->ob, 0, sizeof(r->ob));
}

static void pend_add(struct op_store *s, const struct op_store__req *r)
{
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < r->nd; i++) {
		s->pipes[r->d[i].pipe].pend_events += r->d[i].events;
		s->pipes[r->d[i].pipe].pend_bytes += r->d[i].bytes;
	}
	pthread_mutex_unlock(&s->mu);
	s->pend_inflight += r->d_inflight;
	s->pend_dead += r->d_dead;
	s->pend_quar += r->d_quar;
	for (int i = 0; i < OP_OUTBOX_STREAMS; i++)
		op_store__ob_add(&s->pend_ob[i], &r->ob[i]);
}

static uint64_t add_clamped(uint64_t v, int64_t d)
{
	if (d < 0 && (uint64_t)-d > v)
		return 0;
	return v + (uint64_t)d;
}

/* Commit (true) or drop (false) the pending counter changes of a batch. */
static void pend_end(struct op_store *s, bool commit, size_t nreq)
{
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->npipes; i++) {
		struct op_store__pipe *p = &s->pipes[i];
		if (commit) {
			p->events = add_clamped(p->events, p->pend_events);
			p->bytes = add_clamped(p->bytes, p->pend_bytes);
		}
		p->pend_events = p->pend_bytes = 0;
	}
	if (commit) {
		s->inflight = add_clamped(s->inflight, s->pend_inflight);
		s->dead = add_clamped(s->dead, s->pend_dead);
		s->quarantined = add_clamped(s->quarantined, s->pend_quar);
		for (int i = 0; i < OP_OUTBOX_STREAMS; i++) {
			const struct op_store__obdelta *d = &s->pend_ob[i];
			s->ob_recs[i] = add_clamped(s->ob_recs[i], d->recs);
			s->ob_bytes[i] = add_clamped(s->ob_bytes[i], d->bytes);
			s->ob_last[i] += d->seqs;
			s->ob_dropped[i] += d->dropped;
		}
		s->txns++;
		s->requests += nreq;
	}
	pthread_mutex_unlock(&s->mu);
	s->pend_inflight = s->pend_dead = s->pend_quar = 0;
	memset(s->pend_ob, 0, sizeof(s->pend_ob));
}

/* Outbox records stored by the batch about to be committed. */
static uint64_t pend_ob_added(const struct op_store *s)
{
	uint64_t n = 0;
	for (int i = 0; i < OP_OUTBOX_STREAMS; i++)
		n += s->pend_ob[i].added;
	return n;
}

/* An outbox add that failed after the batch's transaction: it took a seq and
 * is dropped, counted in memory until the next commit writes both. */
static void add_dropped(struct op_store *s, const struct op_store__req *r)
{
	if (r->op != OP_STORE__OUTBOX_ADD || s->ob_cur.max_records == 0)
		return;
	pthread_mutex_lock(&s->mu);
	s->ob_last[r->stream]++;
	s->ob_dropped[r->stream]++;
	pthread_mutex_unlock(&s->mu);
}

/* Grows the map by doubling (up to map_max) when it is past GROW_AT_PERCENT
 * used, or at once if force. Runs between transactions: readers are kept out
 * with the map lock, since LMDB forbids any open txn during a resize. */
static bool grow(struct op_store *s, bool force)
{
	MDB_envinfo info;
	if (mdb_env_info(s->env, &info) != 0)
		return false;
	size_t used = (info.me_last_pgno + 1) * s->psize;
	size_t cur = info.me_mapsize;
	if (cur >= s->opts.map_max)
		return false;
	if (!force && used * 100 < cur * GROW_AT_PERCENT)
		return false;
	size_t next = cur > s->opts.map_max / 2 ? s->opts.map_max : cur * 2;
	pthread_rwlock_wrlock(&s->maplock);
	int rc = mdb_env_set_mapsize(s->env, next);
	pthread_rwlock_unlock(&s->maplock);
	if (rc) {
		OP_LOGW("cannot grow the map to %zu bytes: %s", next, mdb_strerror(rc));
		return false;
	}
	pthread_mutex_lock(&s->mu);
	s->mapsize = next;
	s->grows++;
	pthread_mutex_unlock(&s->mu);
	OP_LOGI("map grown from %zu to %zu bytes (%zu used)", cur, next, used);
	return true;
}

/* Pages on LMDB's free list: room inside the file, reused before it grows. */
static size_t free_pages(struct op_store *s)
{
	size_t n = 0;
	MDB_txn *t;
	MDB_cursor *cur;
	/* LMDB opens a cursor on the free-page DB only in a read txn. */
	pthread_rwlock_rdlock(&s->maplock);
	if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t) != 0) {
		pthread_rwlock_unlock(&s->maplock);
		return 0;
	}
	if (mdb_cursor_open(t, 0, &cur) == 0) {
		MDB_val k, v;
		int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		while (rc == 0) {
			size_t c = 0;
			if (v.mv_size >= sizeof(size_t))
				memcpy(&c, v.mv_data, sizeof(c));
			n += c;
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(t);
	pthread_rwlock_unlock(&s->maplock);
	return n;
}

/* At map_max, admit new data only while real use (highest page minus free
 * pages) leaves the reserve free. */
static bool map_low(struct op_store *s, const MDB_envinfo *info)
{
	if (info->me_mapsize < s->opts.map_max)
		return false;
	size_t hw = (info->me_last_pgno + 1) * s->psize;
	size_t reserve = s->opts.map_max / 100 * RESERVE_PERCENT;
	if (reserve < RESERVE_MIN_PAGES * s->psize)
		reserve = RESERVE_MIN_PAGES * s->psize;
	if (reserve > s->opts.map_max / 2)
		reserve = s->opts.map_max / 2;
	if (hw + reserve <= s->opts.map_max)
		return false;
	size_t freeb = free_pages(s) * s->psize;
	size_t used = hw - (freeb < hw ? freeb : hw);
	return used + reserve > s->opts.map_max;
}

/*
 * Admit new data only while the filesystem under the store keeps
 * disk_reserve free, so that takes, acks and dead letters can still commit
 * and the queues drain: a commit that finds the disk full fails whole,
 * drains included. Free pages inside the file count as free, but admission
 * comes back only at twice the reserve, so a drain's first freed pages do
 * not let new events in at once. statvfs is asked again DISK_CHECK_MS after
 * the last time, or sooner when the file may have grown by half the margin
 * seen then; while the disk is low, before every batch.
 */
static bool disk_low(struct op_store *s, size_t hw)
{
	uint64_t reserve = s->opts.disk_reserve;
	uint64_t margin = s->disk_avail > reserve ? s->disk_avail - reserve : 0;
	int64_t now = op_mono_ms();
	if (!s->disk_low && s->disk_checked_ms != 0 && now - s->disk_checked_ms < DISK_CHECK_MS &&
	    (hw <= s->disk_hw || hw - s->disk_hw < margin / 2))
		return s->disk_low;
	int fd;
	struct statvfs v;
	if (mdb_env_get_fd(s->env, &fd) != 0 || fstatvfs(fd, &v) != 0)
		return s->disk_low; /* keep what the last check found */
	s->disk_checked_ms = now;
	s->disk_hw = hw;
	s->disk_known = true;
	s->disk_avail = (uint64_t)v.f_bavail * v.f_frsize;
	uint64_t need = s->disk_low ? 2 * reserve : reserve;
	s->disk_inside = 0;
	if (s->disk_avail >= need)
		return false;
	s->disk_inside = (uint64_t)free_pages(s) * s->psize;
	return s->disk_avail + s->disk_inside < need;
}

static void check_space(struct op_store *s)
{
	MDB_envinfo info;
	if (mdb_env_info(s->env, &info) != 0)
		return;
	bool was = s->disk_low;
	size_t hw = (info.me_last_pgno + 1) * s->psize;
	s->map_low = map_low(s, &info);
	s->disk_low = disk_low(s, hw);
	/* A commit found the disk full although statvfs shows room (a quota,
	 * say): new data waits a while before it is tried again. */
	bool hit = s->full_until_ms != 0 && op_mono_ms() < s->full_until_ms;
	s->space_low = s->map_low || s->disk_low || hit;
	uint64_t reserve = s->opts.disk_reserve;
	s->disk_tight = s->disk_known && s->disk_avail < 2 * reserve;
	/* What the disk has over its reserve now: as at the last check, less
	 * what the file grew by since. Free pages inside the file count half:
	 * pages readers still see are not reused yet, and a large record needs
	 * free pages side by side, or the file grows all the same. */
	uint64_t room = s->disk_avail + s->disk_inside / 2;
	uint64_t grown = hw > s->disk_hw ? hw - s->disk_hw : 0;
	room = room > grown ? room - grown : 0;
	s->disk_budget = !s->disk_known ? UINT64_MAX : room > reserve ? room - reserve : 0;
	space_changed(s, was);
}

/* Seconds since a (CLOCK_MONOTONIC). */
static double since(const struct timespec *a)
{
	struct timespec b;
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (double)(b.tv_sec - a->tv_sec) + (double)(b.tv_nsec - a->tv_nsec) / 1e9;
}

/* Whether request c->r, which failed with e, wrote nothing before it did:
 * a take that found nothing due, an enqueue refused by the queue's bound. */
static bool failed_clean(const struct ctx *c, op_err e)
{
	if (c->mapfull || c->nquar > 0)
		return false;
	switch (c->r->op) {
	case OP_STORE__TAKE:
	case OP_STORE__TAKE_N:
		return e == OP_ENOTFOUND || e == OP_EBUSY;
	case OP_STORE__ENQUEUE:
		return e == OP_EFULL;
	default:
		return false;
	}
}

/*
 * Applies every request of list in one child transaction of t. A request
 * that fails must undo only its own writes, which takes a child transaction
 * of its own, and LMDB allocates about 3 MiB for each (its dirty and free
 * page lists): so all go in one first. A request that failed without
 * writing (failed_clean) keeps its result; when another fails, the child is
 * dropped with every change of it: false then, and the caller applies them
 * one by one. With s->ob_cur already set for the batch.
 */
static bool apply_together(struct op_store *s, MDB_txn *t, struct op_store__req *list)
{
	MDB_txn *ct;
	if (mdb_txn_begin(s->env, t, 0, &ct) != 0)
		return false;
	struct op_store__req *r;
	for (r = list; r; r = r->next) {
		if (r->skip)
			continue;
		req_reset(r);
		struct ctx c = {.s = s, .t = ct, .r = r};
		op_err e = apply(&c);
		if (e != OP_OK && !failed_clean(&c, e))
			break;
		r->result = e;
		if (e == OP_OK)
			pend_add(s, r);
	}
	if (r == NULL && mdb_txn_commit(ct) == 0)
		return true;
	if (r != NULL)
		mdb_txn_abort(ct);
	pend_end(s, false, 0);
	pthread_mutex_lock(&s->mu);
	s->ob_cur = s->ob_lim;
	pthread_mutex_unlock(&s->mu);
	return false;
}

/* *commit_s: the time the final commit took, on success. */
static op_err try_batch(struct op_store *s, struct op_store__req *list, bool *mapfull,
                        double *commit_s)
{
	MDB_txn *t = NULL;
	*mapfull = false;
	check_space(s);
	pthread_mutex_lock(&s->mu);
	s->ob_cur = s->ob_lim;
	bool fail = s->fail_commits > 0;
	s->fail_commits -= fail;
	pthread_mutex_unlock(&s->mu);
	int rc = mdb_txn_begin(s->env, NULL, 0, &t);
	if (rc)
		return op_store__from_mdb(rc);
	bool together = apply_together(s, t, list);
	for (struct op_store__req *r = together ? NULL : list; r; r = r->next) {
		struct ctx c = {.s = s, .t = NULL, .r = r};
		if (r->skip)
			continue;
		req_reset(r);
		rc = mdb_txn_begin(s->env, t, 0, &c.t);
		if (rc) {
			r->result = mfail(&c, rc);
		} else {
			op_err e = apply(&c);
			if (e == OP_OK || c.keep) {
				rc = mdb_txn_commit(c.t);
				if (rc)
					e = mfail(&c, rc);
				else
					pend_add(s, r);
			} else {
				mdb_txn_abort(c.t);
			}
			r->result = e;
		}
		if (r->result != OP_OK && r->ev) {
			op_store_event_free(r->ev);
			r->ev = NULL;
		}
		if (r->result != OP_OK)
			req_evs_free(r);
		if (r->result != OP_OK && r->op == OP_STORE__OUTBOX_ADD && s->ob_cur.max_records) {
			/* Dropped rather than failed: it takes its seq and is
			 * counted, in this transaction. */
			s->pend_ob[r->stream].seqs++;
			s->pend_ob[r->stream].dropped++;
		}
		if (c.mapfull && s->mapsize < s->opts.map_max) {
			/* Grow and run the whole batch again. */
			mdb_txn_abort(t);
			*mapfull = true;
			return OP_EFULL;
		}
	}
	if (s->seq != s->seq_saved) {
		uint8_t kb[] = "seq";
		MDB_val k = {3, kb}, v = {OP_STORE__HDR + 8, NULL};
		rc = mdb_put(t, s->dbi[OP_STORE_DB_META], &k, &v, MDB_RESERVE);
		if (rc) {
			mdb_txn_abort(t);
			*mapfull = rc == MDB_MAP_FULL;
			return op_store__from_mdb(rc);
		}
		op_store__put_u64be((uint8_t *)v.mv_data + OP_STORE__HDR, s->seq);
		op_store__seal(v.mv_data, &k, OP_STORE__K_META, 8);
	}
	op_err e = op_store__outbox_save(s, t, mapfull);
	if (e) {
		mdb_txn_abort(t);
		return e;
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (fail) {
		mdb_txn_abort(t);
		rc = MDB_MAP_FULL;
	} else {
		rc = mdb_txn_commit(t);
	}
	*commit_s = since(&t0);
	if (rc == ENOSPC || rc == EDQUOT || rc == EIO) {
		/* LMDB reports a write cut short (the disk filled up) as EIO:
		 * with the disk below its reserve now, that is backpressure. */
		s->disk_checked_ms = 0;
		check_space(s);
		if (rc != EIO || s->disk_low) {
			OP_LOGW("commit failed: the disk under %s is full (%s); new events wait "
			        "%d ms",
			        s->dir, mdb_strerror(rc), DISK_CHECK_MS);
			s->full_until_ms = op_mono_ms() + DISK_CHECK_MS;
			return OP_EFULL;
		}
	}
	if (rc) {
		*mapfull = rc == MDB_MAP_FULL;
		OP_LOGW("commit failed: %s", mdb_strerror(rc));
		return op_store__from_mdb(rc);
	}
	s->seq_saved = s->seq;
	op_store__outbox_saved(s);
	return OP_OK;
}

/* Requests of the list still to apply. */
static size_t list_len(const struct op_store__req *r)
{
	size_t n = 0;
	for (; r; r = r->next)
		n += !r->skip;
	return n;
}

/*
 * The batch does not fit the map: its outbox adds (logs and metrics, which
 * nobody waits for) are dropped, so that the rest can commit without them.
 * Returns how many.
 */
static size_t skip_outbox_adds(struct op_store *s, struct op_store__req *list)
{
	size_t n = 0;
	for (struct op_store__req *r = list; r; r = r->next) {
		if (r->skip || r->op != OP_STORE__OUTBOX_ADD)
			continue;
		req_reset(r);
		r->skip = true;
		r->result = s->ob_cur.max_records ? OP_EFULL : OP_OK;
		add_dropped(s, r);
		n++;
	}
	return n;
}

/* Calls the outbox hook, and lets op_store_outbox_on_add wait for it. */
static void call_outbox_hook(struct op_store *s)
{
	pthread_mutex_lock(&s->mu);
	void (*fn)(void *) = s->ob_hook;
	void *ud = s->ob_hook_ud;
	s->ob_hook_busy = fn != NULL;
	pthread_mutex_unlock(&s->mu);
	if (fn == NULL)
		return;
	fn(ud);
	pthread_mutex_lock(&s->mu);
	s->ob_hook_busy = false;
	pthread_cond_broadcast(&s->ob_hook_cv);
	pthread_mutex_unlock(&s->mu);
}

static void run_batch(struct op_store *s, struct op_store__req *list)
{
	size_t n = list_len(list);
	op_err e = OP_OK;
	if (n == 0)
		return;
	for (int i = 0; i < 4; i++) {
		bool mapfull;
		double secs = 0;
		pend_end(s, false, 0);
		e = try_batch(s, list, &mapfull, &secs);
		if (e == OP_OK) {
			bool added = pend_ob_added(s) > 0;
			pend_end(s, true, n);
			pthread_mutex_lock(&s->mu);
			op_store_commit_fn fn = s->on_commit;
			void *ud = s->on_commit_ud;
			pthread_mutex_unlock(&s->mu);
			if (fn)
				fn(ud, secs, n);
			if (added)
				call_outbox_hook(s);
			return;
		}
		if (!(mapfull && grow(s, true)))
			break;
	}
	pend_end(s, false, 0);
	if (e == OP_EFULL && n > 1) {
		size_t k = skip_outbox_adds(s, list);
		if (k > 0) {
			if (k < n)
				run_batch(s, list);
			return;
		}
	}
	if (n > 1) {
		/* The commit failed as a whole: find who does not fit, alone. */
		for (struct op_store__req *r = list; r; r = r->next) {
			struct op_store__req *next = r->next;
			if (r->skip)
				continue;
			r->next = NULL;
			run_batch(s, r);
			r->next = next;
		}
		return;
	}
	for (struct op_store__req *r = list; r; r = r->next) {
		if (r->skip)
			continue;
		req_reset(r);
		r->result = e;
		add_dropped(s, r);
	}
}

static void reader_check(struct op_store *s)
{
	int dead = 0;
	int rc = mdb_reader_check(s->env, &dead);
	if (rc)
		OP_LOGW("reader check failed: %s", mdb_strerror(rc));
	else if (dead > 0)
		OP_LOGW("cleared %d stale reader slot(s)", dead);
	s->last_reader_check = op_store__now_ms();
}

/*
 * Requests nobody waits for (records of synchronous runs) are held up to
 * DETACHED_DELAY_MS, or until DETACHED_BATCH of them arrive, so that a
 * stream of them costs a few commits per second rather than one per batch
 * of a handful; batches of waited-for requests meanwhile go without them
 * (take_batch).
 */
#define DETACHED_DELAY_MS 10
#define DETACHED_BATCH    512

static int64_t detached_delay(const struct op_store *s)
{
	if (s->detached_delay_ms < 0)
		return 0;
	return s->detached_delay_ms > 0 ? s->detached_delay_ms : DETACHED_DELAY_MS;
}

/* With s->mu held: how long the pending detached requests nobody waits for
 * may still wait (ms); 0 once they must go. */
static int64_t detached_left_ms(const struct op_store *s)
{
	if (s->stopping || s->pending - s->waiting >= DETACHED_BATCH)
		return 0;
	int64_t left = s->detached_since_ms + detached_delay(s) - op_mono_ms();
	return left > 0 ? left : 0;
}

/* With s->mu held: true once a batch should start (something is waited
 * for, or the detached requests must go); else waits a while. */
static bool detached_due(struct op_store *s)
{
	if (s->waiting > 0)
		return true;
	int64_t left = detached_left_ms(s);
	if (left == 0)
		return true;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)left * 1000000L;
	while (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&s->wake, &s->mu, &ts);
	return false;
}

/* Fault injection (debug builds): a batch that enqueues into the pipeline
 * named by OUTPOST_FAULTS=store-stall=NAME hangs, as on a disk that stopped
 * answering, until the store closes. With s->mu held. */
static void stall_fault(struct op_store *s, const struct op_store__req *list)
{
	for (const struct op_store__req *r = list; r; r = r->next) {
		if (r->op != OP_STORE__ENQUEUE || r->pipeline == NULL ||
		    !op_fault("store-stall", r->pipeline))
			continue;
		OP_LOGW("fault injection: the writer stalls on a write to %s", r->pipeline);
		while (!s->stopping)
			pthread_cond_wait(&s->wake, &s->mu);
		return;
	}
}

int64_t op_store_stall_ms(struct op_store *s)
{
	pthread_mutex_lock(&s->mu);
	int64_t since = s->busy_since_ms;
	if (since == 0 || (s->queued_since_ms && s->queued_since_ms < since))
		since = s->queued_since_ms;
	pthread_mutex_unlock(&s->mu);
	return since ? op_mono_ms() - since : 0;
}

/* With s->mu held: whether the detached requests waiting with a waited-for
 * one may wait longer, by themselves. */
static bool detached_may_wait(const struct op_store *s)
{
	if (detached_left_ms(s) == 0)
		return false;
	for (const struct op_store__req *r = s->head; r; r = r->next)
		if (r->op == OP_STORE__NOP && !r->detached)
			return false; /* op_store_flush: everything goes */
	return true;
}

/*
 * With s->mu held: the pending requests for the next transaction. Waited-for
 * ones go at once; the detached ones nobody waits for (acknowledgements,
 * records) stay behind, in order, while they may still wait: a commit then
 * carries them once every DETACHED_DELAY_MS instead of in every batch, so
 * the pages of the lease, record and index tables are written a few times a
 * second and not once per commit.
 */
static struct op_store__req *take_batch(struct op_store *s)
{
	struct op_store__req *list = s->head;
	if (s->waiting == 0 || s->waiting == s->pending || !detached_may_wait(s)) {
		s->head = s->tail = NULL;
		s->pending = 0;
		s->waiting = 0;
		s->queued_since_ms = 0;
		return list;
	}
	struct op_store__req *go = NULL, **gt = &go, *stay = NULL, **st = &stay, *last = NULL;
	size_t left = 0;
	for (struct op_store__req *r = list, *next; r; r = next) {
		next = r->next;
		bool waited = !r->detached || r->done_cb;
		if (waited) {
			*gt = r;
			gt = &r->next;
		} else {
			*st = r;
			st = &r->next;
			last = r;
			left++;
		}
	}
	*gt = NULL;
	*st = NULL;
	s->head = stay;
	s->tail = last;
	s->pending = left;
	s->waiting = 0;
	s->queued_since_ms = s->detached_since_ms;
	return go;
}

void *op_store__writer_main(void *arg)
{
	struct op_store *s = arg;
	(void)pthread_setname_np(pthread_self(), "op-store");
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while ((s->head == NULL || s->hold) && !s->stopping) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += 10;
			pthread_cond_timedwait(&s->wake, &s->mu, &ts);
			if (op_store__now_ms() - s->last_reader_check >= READER_CHECK_MS) {
				pthread_mutex_unlock(&s->mu);
				reader_check(s);
				pthread_mutex_lock(&s->mu);
			}
		}
		if (s->head == NULL)
			break;
		if (!detached_due(s))
			continue;
		struct op_store__req *list = take_batch(s);
		s->busy_since_ms = op_mono_ms();
		stall_fault(s, list);
		pthread_mutex_unlock(&s->mu);

		grow(s, false);
		run_batch(s, list);
		if (op_store__now_ms() - s->last_reader_check >= READER_CHECK_MS)
			reader_check(s);

		pthread_mutex_lock(&s->mu);
		s->busy_since_ms = 0;
		struct op_store__req *last = list;
		for (struct op_store__req *r = list; r; r = r->next) {
			s->full += r->result == OP_EFULL;
			last = r;
		}
		pthread_mutex_unlock(&s->mu);
		/* The callers' wake-ups and callbacks run on the completer while
		 * this thread starts the next transaction. */
		pthread_mutex_lock(&s->cmu);
		if (s->done_tail)
			s->done_tail->next = list;
		else
			s->done_head = list;
		s->done_tail = last;
		pthread_cond_signal(&s->cwake);
		pthread_mutex_unlock(&s->cmu);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/*
 * Finishes the lists the writer hands over, in the order it committed them:
 * in each, wakes the callers first, then runs the callbacks and frees the
 * detached requests. A woken caller owns its request again (it lives on the
 * caller's stack), so nothing here touches a request after setting done.
 */
void *op_store__completer_main(void *arg)
{
	struct op_store *s = arg;
	(void)pthread_setname_np(pthread_self(), "op-store-done");
	pthread_mutex_lock(&s->cmu);
	for (;;) {
		while (s->done_head == NULL && !s->cstop)
			pthread_cond_wait(&s->cwake, &s->cmu);
		struct op_store__req *list = s->done_head;
		if (list == NULL)
			break;
		s->done_head = s->done_tail = NULL;
		struct op_store__req *detached = NULL, **dt = &detached;
		while (list) {
			struct op_store__req *next = list->next;
			if (list->detached) {
				*dt = list;
				dt = &list->next;
			} else {
				list->done = true;
				pthread_cond_signal(&list->cv);
			}
			list = next;
		}
		*dt = NULL;
		pthread_mutex_unlock(&s->cmu);
		size_t failed = 0;
		op_err why = OP_OK;
		while (detached) {
			struct op_store__req *next = detached->next;
			if (detached->done_cb) {
				detached->done_cb(detached->done_ud, detached->result,
				                  detached->id);
			} else if (detached->result != OP_OK &&
			           detached->op != OP_STORE__OUTBOX_ADD) {
				/* Outbox adds that failed are counted as dropped; a
				 * line for each would come back as a log record. */
				failed++;
				why = detached->result;
			}
			op_free(detached);
			detached = next;
		}
		if (failed)
			OP_LOGW(
			    "%zu write(s) nobody waited for (acknowledgements, records) failed: "
			    "%s",
			    failed, op_err_str(why));
		pthread_mutex_lock(&s->cmu);
	}
	pthread_mutex_unlock(&s->cmu);
	return NULL;
}

void op_store_on_commit(struct op_store *s, op_store_commit_fn fn, void *ud)
{
	pthread_mutex_lock(&s->mu);
	s->on_commit = fn;
	s->on_commit_ud = ud;
	pthread_mutex_unlock(&s->mu);
}

op_err op_store__submit_detached(struct op_store *s, struct op_store__req *r)
{
	r->next = NULL;
	r->done = false;
	r->detached = true;
	r->ev = NULL;
	r->result = OP_OK;
	r->now = r->now ? r->now : op_store__now_ms();
	pthread_mutex_lock(&s->mu);
	if (s->stopping) {
		pthread_mutex_unlock(&s->mu);
		op_free(r);
		return OP_ECANCELED;
	}
	bool first = s->head == NULL;
	if (first && s->queued_since_ms == 0)
		s->queued_since_ms = op_mono_ms();
	if (r->done_cb)
		s->waiting++; /* someone waits for it, if not on this thread */
	else if (first || s->waiting == s->pending)
		s->detached_since_ms = op_mono_ms();
	if (s->tail)
		s->tail->next = r;
	else
		s->head = r;
	s->tail = r;
	s->pending++;
	/* A writer holding records back wakes at its deadline anyway: wake it
	 * early only when this request should not wait. */
	if (first || r->done_cb || s->pending >= DETACHED_BATCH)
		pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->mu);
	return OP_OK;
}

op_err op_store__submit(struct op_store *s, struct op_store__req *r)
{
	if (pthread_cond_init(&r->cv, NULL) != 0)
		return OP_ENOMEM;
	r->next = NULL;
	r->done = false;
	r->ev = NULL;
	r->result = OP_OK;
	r->now = r->now ? r->now : op_store__now_ms();
	pthread_mutex_lock(&s->mu);
	if (s->stopping) {
		pthread_mutex_unlock(&s->mu);
		pthread_cond_destroy(&r->cv);
		return OP_ECANCELED;
	}
	if (s->tail)
		s->tail->next = r;
	else
		s->head = r;
	s->tail = r;
	if (s->queued_since_ms == 0)
		s->queued_since_ms = op_mono_ms();
	s->pending++;
	s->waiting++;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_lock(&s->cmu);
	while (!r->done)
		pthread_cond_wait(&r->cv, &s->cmu);
	pthread_mutex_unlock(&s->cmu);
	pthread_cond_destroy(&r->cv);
	return r->result;
}

void op_store__hold(struct op_store *s, bool on)
{
	pthread_mutex_lock(&s->mu);
	s->hold = on;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->mu);
}

void op_store__set_detached_delay(struct op_store *s, int64_t ms)
{
	pthread_mutex_lock(&s->mu);
	s->detached_delay_ms = ms;
	pthread_mutex_unlock(&s->mu);
}

void op_store__fail_commits(struct op_store *s, unsigned n)
{
	pthread_mutex_lock(&s->mu);
	s->fail_commits = n;
	pthread_mutex_unlock(&s->mu);
}

size_t op_store__pending(struct op_store *s)
{
	pthread_mutex_lock(&s->mu);
	size_t n = s->pending;
	pthread_mutex_unlock(&s->mu);
	return n;
}
