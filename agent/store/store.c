/*
 * Opening and closing the store, the format version and its upgrade steps,
 * crash recovery, and the public API: writes become requests for the writer
 * thread (writer.c), reads run in the calling thread in an LMDB read txn.
 * Key invariant: a read txn is only open while the map lock is held shared,
 * so the writer can resize the map with no txn open in the process, and a
 * reader never waits for the writer while holding it (corrupt records a
 * reader finds are handed to the writer after the read txn has ended).
 */
#define OP_LOG_MODULE "store"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/core/alloc.h"
#include "agent/core/clock.h"
#include "agent/core/log.h"
#include "agent/store/store_int.h"

#define MAX_BAD 4 /* corrupt records one read call reports to the writer */

/*
 * Format upgrades: step i turns format `from` into from + 1 inside the open
 * transaction. Format 1 is the first, so the table is empty; a future format
 * 2 adds {1, upgrade_1_to_2} and bumps OP_STORE__FORMAT.
 */
struct upgrade_step {
	uint32_t from;
	op_err (*run)(struct op_store *s, MDB_txn *t);
};
static const struct upgrade_step upgrades[] = {
    {0, NULL}, /* sentinel */
};

static void fail(char *err, size_t errlen, const char *fmt, ...) OP_PRINTF(3, 4);
static void fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

op_err op_store__put_meta(struct op_store *s, MDB_txn *t, const char *name, uint64_t v)
{
	MDB_val k = {strlen(name), (void *)name}, val = {OP_STORE__HDR + 8, NULL};
	int rc = mdb_put(t, s->dbi[OP_STORE_DB_META], &k, &val, MDB_RESERVE);
	if (rc)
		return op_store__from_mdb(rc);
	op_store__put_u64be((uint8_t *)val.mv_data + OP_STORE__HDR, v);
	op_store__seal(val.mv_data, &k, OP_STORE__K_META, 8);
	return OP_OK;
}

op_err op_store__get_meta(struct op_store *s, MDB_txn *t, const char *name, uint64_t *v)
{
	MDB_val k = {strlen(name), (void *)name}, val;
	const uint8_t *p;
	size_t n;
	int rc = mdb_get(t, s->dbi[OP_STORE_DB_META], &k, &val);
	if (rc)
		return op_store__from_mdb(rc);
	op_err e = op_store__open_rec(&k, &val, OP_STORE__K_META, &p, &n);
	if (e == OP_OK && n != 8)
		e = OP_ECORRUPT;
	if (e == OP_OK)
		*v = op_store__get_u64be(p);
	return e;
}

static uint64_t last_key_seq(struct op_store *s, MDB_txn *t, enum op_store_db db)
{
	MDB_cursor *c;
	MDB_val k, v;
	uint64_t seq = 0;
	if (mdb_cursor_open(t, s->dbi[db], &c) != 0)
		return 0;
	if (mdb_cursor_get(c, &k, &v, MDB_LAST) == 0 && k.mv_size == 8)
		seq = op_store__get_u64be(k.mv_data) + 1;
	mdb_cursor_close(c);
	return seq;
}

static op_err check_format(struct op_store *s, MDB_txn *t, char *err, size_t errlen)
{
	uint64_t ver = 0;
	op_err e = op_store__get_meta(s, t, "format", &ver);
	if (e == OP_ENOTFOUND) {
		for (int db = OP_STORE_DB_QUEUE; db < OP_STORE_DB_COUNT; db++) {
			MDB_stat st;
			if (mdb_stat(t, s->dbi[db], &st) == 0 && st.ms_entries > 0) {
				fail(err, errlen, "%s: data without a format version", s->dir);
				return OP_ECORRUPT;
			}
		}
		return op_store__put_meta(s, t, "format", OP_STORE__FORMAT);
	}
	if (e) {
		fail(err, errlen, "%s: cannot read the format version: %s", s->dir, op_err_str(e));
		return e;
	}
	if (ver > OP_STORE__FORMAT || ver == 0) {
		fail(err, errlen, "%s: store format %llu, this agent reads up to %u", s->dir,
		     (unsigned long long)ver, OP_STORE__FORMAT);
		return OP_EUNSUPPORTED;
	}
	while (ver < OP_STORE__FORMAT) {
		const struct upgrade_step *st = upgrades;
		while (st->run && st->from != ver)
			st++;
		if (st->run == NULL) {
			fail(err, errlen, "%s: no upgrade from format %llu", s->dir,
			     (unsigned long long)ver);
			return OP_EUNSUPPORTED;
		}
		e = st->run(s, t);
		if (e) {
			fail(err, errlen, "%s: upgrade from format %llu failed: %s", s->dir,
			     (unsigned long long)ver, op_err_str(e));
			return e;
		}
		OP_LOGI("store upgraded from format %llu", (unsigned long long)ver);
		ver++;
		e = op_store__put_meta(s, t, "format", ver);
		if (e)
			return e;
	}
	return OP_OK;
}

/*
 * Every in-flight event goes back to its queue, redelivered, as one more
 * attempt: the one the stop cut short counts (so that an event that stops the
 * agent every time it runs ends, in the runtime, in the dead letters), with
 * that as its last error.
 */
static op_err recover_inflight(struct op_store *s, MDB_txn *t)
{
	MDB_cursor *c = NULL;
	size_t n = 0;
	op_err e = OP_OK;
	int rc = mdb_cursor_open(t, s->dbi[OP_STORE_DB_INFLIGHT], &c);
	if (rc)
		return op_store__from_mdb(rc);
	for (;;) {
		MDB_val k, v;
		struct op_store_event *ev = NULL;
		uint64_t seq;
		rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
		if (rc == MDB_NOTFOUND)
			break;
		if (rc) {
			e = op_store__from_mdb(rc);
			break;
		}
		e = op_store__event_read(&k, &v, &ev, &seq);
		if (e == OP_ECORRUPT) {
			e = op_store__quarantine(s, t, OP_STORE_DB_INFLIGHT, &k, &v, NULL);
			if (e)
				break;
			continue;
		}
		if (e)
			break;
		ev->redelivered = true;
		char why[128];
		snprintf(why, sizeof(why),
		         "AGENT_STOPPED: the agent stopped (crash, kill or power loss) during "
		         "attempt %u",
		         ev->attempt);
		char *was = ev->error;
		ev->error = op_strdup(why);
		if (ev->error == NULL) {
			ev->error = was;
			op_store_event_free(ev);
			e = OP_ENOMEM;
			break;
		}
		op_free(was);
		if (ev->attempt < UINT32_MAX)
			ev->attempt++;
		uint8_t kb[OP_STORE__QKEY_MAX];
		MDB_val qk = {op_store__qkey(kb, ev->pipeline, ev->not_before_ms, seq), kb};
		MDB_val qv = {op_store__event_size(ev), NULL};
		rc = mdb_put(t, s->dbi[OP_STORE_DB_QUEUE], &qk, &qv, MDB_RESERVE | MDB_NOOVERWRITE);
		if (rc == 0) {
			op_store__event_write(qv.mv_data, &qk, ev, seq);
			MDB_val ik = {OP_UUID_LEN, ev->id};
			rc = mdb_del(t, s->dbi[OP_STORE_DB_INFLIGHT], &ik, NULL);
		}
		op_store_event_free(ev);
		if (rc) {
			e = op_store__from_mdb(rc);
			break;
		}
		n++;
	}
	mdb_cursor_close(c);
	if (n > 0 && e == OP_OK)
		OP_LOGW("%zu event(s) in flight at the last stop put back into their queues", n);
	return e;
}

/* Checks every record of db, quarantines corrupt ones, rebuilds counters. */
static op_err scan_db(struct op_store *s, MDB_txn *t, enum op_store_db db, uint64_t *count)
{
	MDB_cursor *c = NULL;
	op_err e = OP_OK;
	uint8_t seek[OP_STORE__KEY_MAX];
	MDB_val k, v;
	*count = 0;
	int rc = mdb_cursor_open(t, s->dbi[db], &c);
	if (rc)
		return op_store__from_mdb(rc);
	rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (rc == 0) {
		const uint8_t *p;
		size_t n;
		const uint8_t *nul = memchr(k.mv_data, 0, k.mv_size);
		size_t nlen = nul ? (size_t)(nul - (const uint8_t *)k.mv_data) : 0;
		bool bad = op_store__open_rec(&k, &v, op_store__db_kind(db), &p, &n) != OP_OK;
		if (db == OP_STORE_DB_QUEUE && (nul == NULL || k.mv_size != nlen + 17))
			bad = true;
		if (bad) {
			size_t klen = k.mv_size;
			memcpy(seek, k.mv_data, klen);
			e = op_store__quarantine(s, t, db, &k, &v, NULL);
			if (e)
				break;
			k = (MDB_val){klen, seek};
			rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
			continue;
		}
		(*count)++;
		if (db == OP_STORE_DB_QUEUE) {
			int pi = op_store__pipe_get(s, k.mv_data, nlen, true);
			if (pi < 0) {
				e = OP_ENOMEM;
				break;
			}
			s->pipes[pi].events++;
			s->pipes[pi].bytes += v.mv_size;
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (e == OP_OK && rc != MDB_NOTFOUND)
		e = op_store__from_mdb(rc);
	mdb_cursor_close(c);
	return e;
}

static op_err load(struct op_store *s, char *err, size_t errlen)
{
	MDB_txn *t = NULL;
	op_err e;
	int rc = mdb_txn_begin(s->env, NULL, 0, &t);
	if (rc) {
		fail(err, errlen, "%s: %s", s->dir, mdb_strerror(rc));
		return op_store__from_mdb(rc);
	}
	for (int i = 0; i < OP_STORE_DB_COUNT; i++) {
		rc =
		    mdb_dbi_open(t, op_store__db_name((enum op_store_db)i), MDB_CREATE, &s->dbi[i]);
		if (rc) {
			fail(err, errlen, "%s: database %s: %s", s->dir,
			     op_store__db_name((enum op_store_db)i), mdb_strerror(rc));
			e = op_store__from_mdb(rc);
			goto out;
		}
	}
	e = check_format(s, t, err, errlen);
	if (e)
		goto out;
	uint64_t seq = 0, a, b;
	e = op_store__get_meta(s, t, "seq", &seq);
	if (e && e != OP_ENOTFOUND && e != OP_ECORRUPT)
		goto out;
	a = last_key_seq(s, t, OP_STORE_DB_EXECS);
	b = last_key_seq(s, t, OP_STORE_DB_QUARANTINE);
	s->seq = seq > a ? seq : a;
	s->seq = s->seq > b ? s->seq : b;
	/* Queue keys hold sequence numbers too; a damaged counter restarts past them. */
	if (e == OP_ECORRUPT)
		s->seq += (uint64_t)1 << 40;
	uint64_t nq, nd;
	e = recover_inflight(s, t);
	if (!e)
		e = scan_db(s, t, OP_STORE_DB_QUEUE, &nq);
	if (!e)
		e = scan_db(s, t, OP_STORE_DB_DEAD, &nd);
	if (!e)
		e = op_store__outbox_load(s, t);
	if (!e)
		e = op_store__put_meta(s, t, "seq", s->seq);
	if (e) {
		fail(err, errlen, "%s: recovery failed: %s", s->dir, op_err_str(e));
		goto out;
	}
	s->dead = nd;
	s->seq_saved = s->seq;
	rc = mdb_txn_commit(t);
	t = NULL;
	if (rc) {
		fail(err, errlen, "%s: commit: %s", s->dir, mdb_strerror(rc));
		e = op_store__from_mdb(rc);
	}
out:
	if (t)
		mdb_txn_abort(t);
	return e;
}

/* Lets the completer finish what the writer handed over, then joins it. */
static void stop_completer(struct op_store *s)
{
	if (!s->completer_started)
		return;
	pthread_mutex_lock(&s->cmu);
	s->cstop = true;
	pthread_cond_signal(&s->cwake);
	pthread_mutex_unlock(&s->cmu);
	pthread_join(s->completer, NULL);
	s->completer_started = false;
}

static void destroy(struct op_store *s)
{
	stop_completer(s);
	if (s->env)
		mdb_env_close(s->env);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* and so unlocks */
	for (size_t i = 0; i < s->npipes; i++)
		op_free(s->pipes[i].name);
	op_free(s->pipes);
	op_free(s->dir);
	pthread_rwlock_destroy(&s->maplock);
	pthread_cond_destroy(&s->wake);
	pthread_cond_destroy(&s->ob_hook_cv);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cwake);
	pthread_mutex_destroy(&s->cmu);
	op_free(s);
}

/* One process owns a store: LMDB would let a second one in, whose recovery
 * would requeue the first one's running executions. The lock goes with
 * the process (a crash releases it); the file says who holds it. */
static op_err lock_owner(struct op_store *s, char *err, size_t errlen)
{
	char path[4096], buf[128];
	if ((size_t)snprintf(path, sizeof(path), "%s/owner.lock", s->dir) >= sizeof(path)) {
		fail(err, errlen, "%s: path too long", s->dir);
		return OP_EINVAL;
	}
	s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0) {
		fail(err, errlen, "%s: %s", path, strerror_r(errno, buf, sizeof(buf)));
		return op_err_from_errno(errno);
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		int en = errno;
		ssize_t n = en == EWOULDBLOCK ? pread(s->lock_fd, buf, sizeof(buf) - 1, 0) : -1;
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (en == EWOULDBLOCK) {
			fail(err, errlen, "%s: in use by another process%s%s%s", s->dir,
			     buf[0] ? " (pid " : "", buf, buf[0] ? " on this host)" : "");
			return OP_EBUSY;
		}
		fail(err, errlen, "%s: cannot lock: %s", path, strerror_r(en, buf, sizeof(buf)));
		return op_err_from_errno(en);
	}
	int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(s->lock_fd, 0) != 0 || pwrite(s->lock_fd, buf, (size_t)len, 0) != len)
		OP_LOGW("%s: cannot write the owner's pid", path);
	return OP_OK;
}

op_err op_store_open(const struct op_store_opts *opts, struct op_store **out, char *err,
                     size_t errlen)
{
	struct op_store *s = NULL;
	op_err e = OP_OK;
	int rc;
	*out = NULL;
	fail(err, errlen, "%s", "");
	if (opts == NULL || opts->dir == NULL || opts->dir[0] == 0) {
		fail(err, errlen, "store: no directory");
		return OP_EINVAL;
	}
	s = op_calloc(1, sizeof(*s));
	if (s == NULL)
		return OP_ENOMEM;
	s->lock_fd = -1;
	pthread_mutex_init(&s->mu, NULL);
	op_cond_init_mono(&s->wake);
	pthread_mutex_init(&s->cmu, NULL);
	pthread_cond_init(&s->cwake, NULL);
	pthread_cond_init(&s->ob_hook_cv, NULL);
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->maplock, &ra);
	pthread_rwlockattr_destroy(&ra);

	s->opts = *opts;
	s->dir = op_strdup(opts->dir);
	if (s->dir == NULL) {
		e = OP_ENOMEM;
		goto out;
	}
	s->opts.dir = s->dir;
	if (s->opts.map_initial == 0)
		s->opts.map_initial = (size_t)16 << 20;
	if (s->opts.map_max == 0)
		s->opts.map_max = (size_t)1 << 30;
	if (s->opts.exec_retention == 0)
		s->opts.exec_retention = 10000;
	if (s->opts.queue_max_events == 0)
		s->opts.queue_max_events = 100000;
	if (s->opts.queue_max_bytes == 0)
		s->opts.queue_max_bytes = (uint64_t)256 << 20;
	if (s->opts.disk_reserve == 0)
		s->opts.disk_reserve = (uint64_t)32 << 20;
	if (s->opts.map_initial > s->opts.map_max) {
		fail(err, errlen, "%s: map_initial is larger than map_max", s->dir);
		e = OP_EINVAL;
		goto out;
	}
	if (mkdir(s->dir, 0700) != 0 && errno != EEXIST) {
		char buf[128];
		fail(err, errlen, "%s: %s", s->dir, strerror_r(errno, buf, sizeof(buf)));
		e = op_err_from_errno(errno);
		goto out;
	}
	e = lock_owner(s, err, errlen);
	if (e)
		goto out;
	rc = mdb_env_create(&s->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(s->env, OP_STORE_DB_COUNT + 2);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(s->env, 256);
	if (rc == 0)
		rc = mdb_env_set_mapsize(s->env, s->opts.map_initial);
	if (rc == 0)
		rc = mdb_env_open(s->env, s->dir, MDB_NOTLS, 0600);
	if (rc) {
		fail(err, errlen, "%s: %s", s->dir, mdb_strerror(rc));
		e = op_store__from_mdb(rc);
		goto out;
	}
	MDB_stat st;
	MDB_envinfo info;
	mdb_env_stat(s->env, &st);
	mdb_env_info(s->env, &info);
	s->psize = st.ms_psize;
	s->opts.map_max -= s->opts.map_max % s->psize;
	/* A map left bigger by an earlier run with a larger map_max stays. */
	s->mapsize = info.me_mapsize;
	if (s->mapsize > s->opts.map_max)
		s->opts.map_max = s->mapsize;
	int dead = 0;
	mdb_reader_check(s->env, &dead);
	if (dead)
		OP_LOGW("%s: cleared %d stale reader slot(s)", s->dir, dead);
	s->last_reader_check = op_store__now_ms();
	e = load(s, err, errlen);
	if (e)
		goto out;
	rc = pthread_create(&s->completer, NULL, op_store__completer_main, s);
	s->completer_started = rc == 0;
	if (rc == 0)
		rc = pthread_create(&s->writer, NULL, op_store__writer_main, s);
	if (rc) {
		fail(err, errlen, "%s: cannot start the writer thread", s->dir);
		e = OP_ENOMEM;
		goto out;
	}
	s->writer_started = true;
	uint64_t queued = 0;
	for (size_t i = 0; i < s->npipes; i++)
		queued += s->pipes[i].events;
	OP_LOGI("%s: store open, %zu byte map, %llu queued, %llu dead", s->dir, s->mapsize,
	        (unsigned long long)queued, (unsigned long long)s->dead);
	*out = s;
	return OP_OK;
out:
	if (err && errlen && err[0] == 0)
		fail(err, errlen, "%s: %s", opts->dir, op_err_str(e));
	destroy(s);
	return e;
}

void op_store_close(struct op_store *s)
{
	if (s == NULL)
		return;
	if (s->writer_started) {
		pthread_mutex_lock(&s->mu);
		s->stopping = true;
		s->hold = false;
		pthread_cond_signal(&s->wake);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->writer, NULL);
	}
	stop_completer(s);
	destroy(s);
}

/* ---- writes ---- */

static bool id_ok(const char *id)
{
	return id != NULL && strnlen(id, OP_UUID_LEN + 1) == OP_UUID_LEN;
}

op_err op_store_enqueue(struct op_store *s, const char *pipeline, const char *trigger,
                        const char *payload, size_t payload_len, int64_t not_before_ms,
                        char id_out[OP_UUID_LEN + 1])
{
	if (id_out)
		id_out[0] = 0;
	if (!op_store__name_ok(pipeline, OP_STORE_NAME_MAX) || (payload == NULL && payload_len) ||
	    not_before_ms < 0 || (trigger && strlen(trigger) > 65536))
		return OP_EINVAL;
	if (payload_len > UINT32_MAX / 2 || payload_len > s->opts.queue_max_bytes)
		return OP_ELIMIT;
	struct op_store__req r = {.op = OP_STORE__ENQUEUE,
	                          .pipeline = pipeline,
	                          .trigger = trigger,
	                          .payload = payload,
	                          .payload_len = payload_len,
	                          .t = not_before_ms};
	op_err e = op_uuid_v7(r.id);
	if (e)
		return e;
	e = op_store__submit(s, &r);
	if (e == OP_OK && id_out)
		memcpy(id_out, r.id, sizeof(r.id));
	return e;
}

/* Bytes of s with its NUL, 0 for NULL. */
static size_t str_size(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

/* Copies s into *at and advances it; NULL stays NULL. */
static char *str_put(char **at, const char *s)
{
	if (s == NULL)
		return NULL;
	size_t n = strlen(s) + 1;
	char *d = memcpy(*at, s, n);
	*at += n;
	return d;
}

op_err op_store_take_n(struct op_store *s, const char *pipeline, int64_t now_ms,
                       struct op_store_event **evs, size_t max, size_t *n)
{
	*n = 0;
	if (pipeline == NULL || !op_store__name_ok(pipeline, OP_STORE_NAME_MAX) || max == 0)
		return OP_EINVAL;
	struct op_store__req r = {
	    .op = OP_STORE__TAKE_N, .pipeline = pipeline, .now = now_ms, .evs = evs, .maxev = max};
	op_err e = op_store__submit(s, &r);
	if (e == OP_OK)
		*n = r.nev;
	return e;
}

op_err op_store_ack_nowait(struct op_store *s, const char *event_id,
                           const struct op_store_exec *rec)
{
	if (!id_ok(event_id))
		return OP_EINVAL;
	struct blk {
		struct op_store__req r;
		struct op_store_exec rec;
		char id[OP_UUID_LEN + 1];
	};
	size_t strs = rec ? str_size(rec->pipeline) + str_size(rec->version) +
	                        str_size(rec->trigger) + str_size(rec->status) +
	                        str_size(rec->error)
	                  : 0;
	struct blk *b = op_calloc(1, sizeof(*b) + strs);
	if (b == NULL)
		return OP_ENOMEM;
	memcpy(b->id, event_id, OP_UUID_LEN);
	b->r.op = OP_STORE__ACK;
	b->r.event_id = b->id;
	if (rec) {
		char *at = (char *)(b + 1);
		b->rec = *rec;
		b->rec.pipeline = str_put(&at, rec->pipeline);
		b->rec.version = str_put(&at, rec->version);
		b->rec.trigger = str_put(&at, rec->trigger);
		b->rec.status = str_put(&at, rec->status);
		b->rec.error = str_put(&at, rec->error);
		b->r.rec = &b->rec;
	}
	return op_store__submit_detached(s, &b->r);
}

op_err op_store_enqueue_cb(struct op_store *s, const char *pipeline, const char *trigger,
                           const char *payload, size_t payload_len, int64_t not_before_ms,
                           void (*done)(void *ud, op_err rc, const char *id), void *ud)
{
	if (done == NULL || !op_store__name_ok(pipeline, OP_STORE_NAME_MAX) ||
	    (payload == NULL && payload_len) || not_before_ms < 0 ||
	    (trigger && strlen(trigger) > 65536))
		return OP_EINVAL;
	if (payload_len > UINT32_MAX / 2 || payload_len > s->opts.queue_max_bytes)
		return OP_ELIMIT;
	size_t np = strlen(pipeline) + 1, nt = trigger ? strlen(trigger) + 1 : 0;
	struct op_store__req *r = op_calloc(1, sizeof(*r) + np + nt + payload_len + 1);
	if (r == NULL)
		return OP_ENOMEM;
	char *at = (char *)(r + 1);
	r->pipeline = memcpy(at, pipeline, np);
	at += np;
	if (trigger) {
		r->trigger = memcpy(at, trigger, nt);
		at += nt;
	}
	if (payload_len)
		memcpy(at, payload, payload_len);
	r->payload = at;
	r->payload_len = payload_len;
	r->op = OP_STORE__ENQUEUE;
	r->t = not_before_ms;
	r->done_cb = done;
	r->done_ud = ud;
	op_err e = op_uuid_v7(r->id);
	if (e) {
		op_free(r);
		return e;
	}
	return op_store__submit_detached(s, r);
}

op_err op_store_take(struct op_store *s, const char *pipeline, int64_t now_ms,
                     struct op_store_event **out)
{
	*out = NULL;
	if (pipeline && !op_store__name_ok(pipeline, OP_STORE_NAME_MAX))
		return OP_EINVAL;
	struct op_store__req r = {.op = OP_STORE__TAKE, .pipeline = pipeline, .now = now_ms};
	op_err e = op_store__submit(s, &r);
	if (e == OP_OK)
		*out = r.ev;
	else
		op_store_event_free(r.ev);
	return e;
}

op_err op_store_ack(struct op_store *s, const char *event_id, const struct op_store_exec *rec)
{
	if (!id_ok(event_id))
		return OP_EINVAL;
	struct op_store__req r = {.op = OP_STORE__ACK, .event_id = event_id, .rec = rec};
	return op_store__submit(s, &r);
}

op_err op_store_record(struct op_store *s, const struct op_store_exec *rec)
{
	if (rec == NULL)
		return OP_EINVAL;
	struct op_store__req r = {.op = OP_STORE__RECORD, .rec = rec};
	return op_store__submit(s, &r);
}

op_err op_store_flush(struct op_store *s)
{
	struct op_store__req r = {.op = OP_STORE__NOP};
	return op_store__submit(s, &r);
}

op_err op_store_record_nowait(struct op_store *s, const struct op_store_exec *rec)
{
	if (rec == NULL)
		return OP_EINVAL;
	struct blk {
		struct op_store__req r;
		struct op_store_exec rec;
	};
	size_t strs = str_size(rec->pipeline) + str_size(rec->version) + str_size(rec->trigger) +
	              str_size(rec->status) + str_size(rec->error);
	struct blk *b = op_calloc(1, sizeof(*b) + strs);
	if (b == NULL)
		return OP_ENOMEM;
	char *at = (char *)(b + 1);
	b->rec = *rec;
	b->rec.pipeline = str_put(&at, rec->pipeline);
	b->rec.version = str_put(&at, rec->version);
	b->rec.trigger = str_put(&at, rec->trigger);
	b->rec.status = str_put(&at, rec->status);
	b->rec.error = str_put(&at, rec->error);
	b->r.op = OP_STORE__RECORD;
	b->r.rec = &b->rec;
	return op_store__submit_detached(s, &b->r);
}

op_err op_store_retry(struct op_store *s, const char *event_id, int64_t not_before_ms,
                      const char *error, const struct op_store_exec *rec)
{
	if (!id_ok(event_id) || not_before_ms < 0)
		return OP_EINVAL;
	struct op_store__req r = {.op = OP_STORE__RETRY,
	                          .event_id = event_id,
	                          .t = not_before_ms,
	                          .error = error,
	                          .rec = rec};
	return op_store__submit(s, &r);
}

op_err op_store_release(struct op_store *s, const char *event_id)
{
	if (!id_ok(event_id))
		return OP_EINVAL;
	struct op_store__req r = {.op = OP_STORE__RELEASE, .event_id = event_id};
	return op_store__submit(s, &r);
}

op_err op_store_dead(struct op_store *s, const char *event_id, const char *error,
                     const struct op_store_exec *rec)
{
	if (!id_ok(event_id))
		return OP_EINVAL;
	struct op_store__req r = {
	    .op = OP_STORE__DEAD, .event_id = event_id, .error = error, .rec = rec};
	return op_store__submit(s, &r);
}

op_err op_store_replay(struct op_store *s, const char *event_id)
{
	if (!id_ok(event_id))
		return OP_EINVAL;
	struct op_store__req r = {.op = OP_STORE__REPLAY, .event_id = event_id};
	return op_store__submit(s, &r);
}

static enum op_store_db kv_db(enum op_store_kv kv)
{
	return kv == OP_STORE_PIPELINES ? OP_STORE_DB_PIPELINES : OP_STORE_DB_STATE;
}

op_err op_store_put(struct op_store *s, enum op_store_kv kv, const char *key, const void *val,
                    size_t len)
{
	if (!op_store__name_ok(key, OP_STORE_KEY_MAX) || (val == NULL && len))
		return OP_EINVAL;
	if (len > UINT32_MAX / 2)
		return OP_ELIMIT;
	struct op_store__req r = {.op = OP_STORE__PUT,
	                          .db = kv_db(kv),
	                          .key = key,
	                          .key_len = strlen(key),
	                          .payload = val,
	                          .payload_len = len};
	return op_store__submit(s, &r);
}

op_err op_store_del(struct op_store *s, enum op_store_kv kv, const char *key)
{
	if (!op_store__name_ok(key, OP_STORE_KEY_MAX))
		return OP_EINVAL;
	struct op_store__req r = {
	    .op = OP_STORE__DEL, .db = kv_db(kv), .key = key, .key_len = strlen(key)};
	return op_store__submit(s, &r);
}

/* ---- reads ---- */

struct bad {
	int n;
	enum op_store_db db[MAX_BAD];
	size_t klen[MAX_BAD];
	uint8_t key[MAX_BAD][OP_STORE__KEY_MAX];
};

static void bad_add(struct bad *b, enum op_store_db db, const MDB_val *k)
{
	if (b->n == MAX_BAD || k->mv_size > OP_STORE__KEY_MAX)
		return;
	b->db[b->n] = db;
	b->klen[b->n] = k->mv_size;
	memcpy(b->key[b->n], k->mv_data, k->mv_size);
	b->n++;
}

/* Hands corrupt records found by a reader to the writer; call with no txn. */
static void bad_flush(struct op_store *s, struct bad *b)
{
	for (int i = 0; i < b->n; i++) {
		struct op_store__req r = {.op = OP_STORE__QUARANTINE,
		                          .db = b->db[i],
		                          .key = (const char *)b->key[i],
		                          .key_len = b->klen[i]};
		op_err e = op_store__submit(s, &r);
		if (e)
			OP_LOGW("cannot quarantine a corrupt record: %s", op_err_str(e));
	}
	b->n = 0;
}

op_err op_store__rd_begin(struct op_store *s, MDB_txn **t)
{
	pthread_rwlock_rdlock(&s->maplock);
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, t);
	if (rc) {
		pthread_rwlock_unlock(&s->maplock);
		*t = NULL;
		return op_store__from_mdb(rc);
	}
	return OP_OK;
}

void op_store__rd_end(struct op_store *s, MDB_txn *t)
{
	mdb_txn_abort(t);
	pthread_rwlock_unlock(&s->maplock);
}

/*
 * Walks the records of db in key order (or backwards) in one read
 * transaction, calling visit for each until it sets *stop or returns an
 * error. A record visit finds corrupt (OP_ECORRUPT) is skipped and handed to
 * the writer for quarantine after the transaction.
 */
typedef op_err (*visit_fn)(void *ud, const MDB_val *k, const MDB_val *d, bool *stop);

static op_err walk(struct op_store *s, enum op_store_db db, bool backwards, visit_fn visit,
                   void *ud)
{
	struct bad bad = {0};
	MDB_txn *t = NULL;
	MDB_cursor *c = NULL;
	op_err e = op_store__rd_begin(s, &t);
	if (e)
		return e;
	int rc = mdb_cursor_open(t, s->dbi[db], &c);
	MDB_val k, d;
	if (rc == 0)
		rc = mdb_cursor_get(c, &k, &d, backwards ? MDB_LAST : MDB_FIRST);
	bool stop = false;
	while (rc == 0 && !stop) {
		e = visit(ud, &k, &d, &stop);
		if (e == OP_ECORRUPT) {
			bad_add(&bad, db, &k);
			e = OP_OK;
		} else if (e) {
			break;
		}
		rc = mdb_cursor_get(c, &k, &d, backwards ? MDB_PREV : MDB_NEXT);
	}
	if (e == OP_OK && rc && rc != MDB_NOTFOUND)
		e = op_store__from_mdb(rc);
	if (c)
		mdb_cursor_close(c);
	op_store__rd_end(s, t);
	bad_flush(s, &bad);
	return e;
}

/* A growing array of decoded records, up to limit. */
struct collect {
	void **v;
	size_t n, cap, limit;
	const char *pipeline; /* filter, NULL for all */
	uint64_t count;       /* matching records (dead_count) */
};

static op_err collect_add(struct collect *c, void *item)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		if (cap > c->limit)
			cap = c->limit;
		void **v = op_realloc(c->v, cap * sizeof(*v));
		if (v == NULL)
			return OP_ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = item;
	return OP_OK;
}

static op_err visit_dead(void *ud, const MDB_val *k, const MDB_val *d, bool *stop)
{
	struct collect *c = ud;
	struct op_store_event *ev;
	op_err e = op_store__event_read_meta(k, d, &ev);
	if (e)
		return e;
	if (c->pipeline && strcmp(c->pipeline, ev->pipeline) != 0) {
		op_store_event_free(ev);
		return OP_OK;
	}
	e = collect_add(c, ev);
	if (e)
		op_store_event_free(ev);
	*stop = c->n >= c->limit;
	return e;
}

op_err op_store_list_dead(struct op_store *s, const char *pipeline, size_t limit,
                          struct op_store_event ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (limit == 0)
		return OP_OK;
	struct collect c = {.limit = limit, .pipeline = pipeline};
	op_err e = walk(s, OP_STORE_DB_DEAD, false, visit_dead, &c);
	if (e) {
		op_store_events_free((struct op_store_event **)c.v, c.n);
		return e;
	}
	*out = (struct op_store_event **)c.v;
	*n = c.n;
	return OP_OK;
}

op_err op_store_get_dead(struct op_store *s, const char *event_id, struct op_store_event **out)
{
	struct bad bad = {0};
	MDB_txn *t = NULL;
	*out = NULL;
	if (!id_ok(event_id))
		return OP_EINVAL;
	op_err e = op_store__rd_begin(s, &t);
	if (e)
		return e;
	MDB_val k = {OP_UUID_LEN, (void *)event_id}, v;
	int rc = mdb_get(t, s->dbi[OP_STORE_DB_DEAD], &k, &v);
	if (rc) {
		e = op_store__from_mdb(rc);
		goto out;
	}
	e = op_store__event_read(&k, &v, out, NULL);
	if (e == OP_ECORRUPT)
		bad_add(&bad, OP_STORE_DB_DEAD, &k);
out:
	op_store__rd_end(s, t);
	bad_flush(s, &bad);
	return e;
}

static op_err visit_count(void *ud, const MDB_val *k, const MDB_val *d, bool *stop)
{
	(void)stop;
	struct collect *c = ud;
	struct op_store_event *ev;
	op_err e = op_store__event_read(k, d, &ev, NULL);
	if (e)
		return e;
	if (c->pipeline == NULL || strcmp(c->pipeline, ev->pipeline) == 0)
		c->count++;
	op_store_event_free(ev);
	return OP_OK;
}

op_err op_store_dead_count(struct op_store *s, const char *pipeline, uint64_t *n)
{
	struct collect c = {.pipeline = pipeline};
	*n = 0;
	op_err e = walk(s, OP_STORE_DB_DEAD, false, visit_count, &c);
	if (e == OP_OK)
		*n = c.count;
	return e;
}

static op_err visit_exec(void *ud, const MDB_val *k, const MDB_val *d, bool *stop)
{
	struct collect *c = ud;
	struct op_store_exec *rec;
	op_err e = op_store__exec_read(k, d, &rec);
	if (e)
		return e;
	e = collect_add(c, rec);
	if (e)
		op_store_exec_free(rec);
	*stop = c->n >= c->limit;
	return e;
}

op_err op_store_list_execs(struct op_store *s, size_t limit, struct op_store_exec ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (limit == 0)
		return OP_OK;
	struct collect c = {.limit = limit};
	op_err e = walk(s, OP_STORE_DB_EXECS, true, visit_exec, &c);
	if (e) {
		op_store_execs_free((struct op_store_exec **)c.v, c.n);
		return e;
	}
	*out = (struct op_store_exec **)c.v;
	*n = c.n;
	return OP_OK;
}

op_err op_store_get_exec(struct op_store *s, const char *id, struct op_store_exec **out)
{
	struct bad bad = {0};
	MDB_txn *t = NULL;
	const uint8_t *p;
	size_t n;
	*out = NULL;
	if (!id_ok(id))
		return OP_EINVAL;
	op_err e = op_store__rd_begin(s, &t);
	if (e)
		return e;
	MDB_val ik = {OP_UUID_LEN, (void *)id}, iv, k, v;
	int rc = mdb_get(t, s->dbi[OP_STORE_DB_EXECIDX], &ik, &iv);
	if (rc) {
		e = op_store__from_mdb(rc);
		goto out;
	}
	e = op_store__open_rec(&ik, &iv, OP_STORE__K_INDEX, &p, &n);
	if (e == OP_OK && n != 8)
		e = OP_ECORRUPT;
	if (e) {
		bad_add(&bad, OP_STORE_DB_EXECIDX, &ik);
		goto out;
	}
	k = (MDB_val){8, (void *)p};
	rc = mdb_get(t, s->dbi[OP_STORE_DB_EXECS], &k, &v);
	if (rc) {
		e = op_store__from_mdb(rc);
		goto out;
	}
	e = op_store__exec_read(&k, &v, out);
	if (e == OP_ECORRUPT)
		bad_add(&bad, OP_STORE_DB_EXECS, &k);
out:
	op_store__rd_end(s, t);
	bad_flush(s, &bad);
	return e;
}

op_err op_store_get(struct op_store *s, enum op_store_kv kv, const char *key, char **val,
                    size_t *len)
{
	struct bad bad = {0};
	MDB_txn *t = NULL;
	const uint8_t *p;
	size_t n;
	*val = NULL;
	if (len)
		*len = 0;
	if (!op_store__name_ok(key, OP_STORE_KEY_MAX))
		return OP_EINVAL;
	op_err e = op_store__rd_begin(s, &t);
	if (e)
		return e;
	MDB_val k = {strlen(key), (void *)key}, v;
	int rc = mdb_get(t, s->dbi[kv_db(kv)], &k, &v);
	if (rc) {
		e = op_store__from_mdb(rc);
		goto out;
	}
	e = op_store__open_rec(&k, &v, OP_STORE__K_BLOB, &p, &n);
	if (e) {
		bad_add(&bad, kv_db(kv), &k);
		goto out;
	}
	*val = op_malloc(n + 1);
	if (*val == NULL) {
		e = OP_ENOMEM;
		goto out;
	}
	if (n)
		memcpy(*val, p, n);
	(*val)[n] = 0;
	if (len)
		*len = n;
out:
	op_store__rd_end(s, t);
	bad_flush(s, &bad);
	return e;
}

op_err op_store_list(struct op_store *s, enum op_store_kv kv, char ***keys, size_t *n)
{
	MDB_txn *t = NULL;
	MDB_cursor *c = NULL;
	char **v = NULL;
	size_t cnt = 0;
	*keys = NULL;
	*n = 0;
	op_err e = op_store__rd_begin(s, &t);
	if (e)
		return e;
	MDB_stat st;
	int rc = mdb_stat(t, s->dbi[kv_db(kv)], &st);
	if (rc == 0)
		rc = mdb_cursor_open(t, s->dbi[kv_db(kv)], &c);
	if (rc) {
		e = op_store__from_mdb(rc);
		goto out;
	}
	if (st.ms_entries == 0)
		goto out;
	v = op_calloc(st.ms_entries, sizeof(*v));
	if (v == NULL) {
		e = OP_ENOMEM;
		goto out;
	}
	MDB_val k, d;
	rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
	while (rc == 0 && cnt < st.ms_entries) {
		v[cnt] = op_strndup(k.mv_data, k.mv_size);
		if (v[cnt] == NULL) {
			e = OP_ENOMEM;
			goto out;
		}
		cnt++;
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	if (rc && rc != MDB_NOTFOUND)
		e = op_store__from_mdb(rc);
out:
	if (c)
		mdb_cursor_close(c);
	op_store__rd_end(s, t);
	if (e) {
		op_store_keys_free(v, cnt);
		return e;
	}
	*keys = v;
	*n = cnt;
	return OP_OK;
}

void op_store_queue_depth(struct op_store *s, const char *pipeline, uint64_t *events,
                          uint64_t *bytes)
{
	uint64_t ev = 0, by = 0;
	if (pipeline) {
		size_t len = strlen(pipeline);
		pthread_mutex_lock(&s->mu);
		for (size_t i = 0; i < s->npipes; i++) {
			if (strlen(s->pipes[i].name) == len &&
			    memcmp(s->pipes[i].name, pipeline, len) == 0) {
				ev = s->pipes[i].events;
				by = s->pipes[i].bytes;
				break;
			}
		}
		pthread_mutex_unlock(&s->mu);
	}
	if (events)
		*events = ev;
	if (bytes)
		*bytes = by;
}

bool op_store_room_low(struct op_store *s)
{
	pthread_mutex_lock(&s->mu);
	bool low = s->room_low_pub;
	pthread_mutex_unlock(&s->mu);
	return low;
}

op_err op_store_stats(struct op_store *s, struct op_store_stats *st)
{
	MDB_txn *t = NULL;
	memset(st, 0, sizeof(*st));
	op_err e = op_store__rd_begin(s, &t);
	if (e)
		return e;
	MDB_envinfo info;
	mdb_env_info(s->env, &info);
	for (int i = 0; i < OP_STORE_DB_COUNT; i++) {
		MDB_stat ms;
		if (mdb_stat(t, s->dbi[i], &ms) == 0)
			st->entries[i] = ms.ms_entries;
	}
	op_store__rd_end(s, t);
	st->map_size = info.me_mapsize;
	st->used = (uint64_t)(info.me_last_pgno + 1) * s->psize;
	st->free = st->used < st->map_size ? st->map_size - st->used : 0;
	pthread_mutex_lock(&s->mu);
	st->map_max = s->opts.map_max;
	for (size_t i = 0; i < s->npipes; i++)
		st->queued += s->pipes[i].events;
	st->inflight = s->inflight;
	st->dead = s->dead;
	st->quarantined = s->quarantined;
	st->txns = s->txns;
	st->requests = s->requests;
	st->full = s->full;
	st->map_grows = s->grows;
	st->room_low = s->room_low_pub;
	st->disk_low = s->disk_low_pub;
	st->disk_avail = s->disk_avail_pub;
	pthread_mutex_unlock(&s->mu);
	return OP_OK;
}
