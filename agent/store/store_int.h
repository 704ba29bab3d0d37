/*
 * Private to agent/store: the store handle, the write request that callers
 * hand to the writer thread, and the record codec. Key invariant: only the
 * writer thread (or op_store_open before it starts) opens write transactions
 * and changes the pending counters; the live counters change only after a
 * commit (or, for outbox adds dropped by a failed one, right after it), under
 * s->mu, and only the writer (or op_store_open) changes them.
 */
#ifndef OP_STORE_STORE_INT_H
#define OP_STORE_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "agent/store/store.h"

#define OP_STORE__FORMAT   1u /* current store format version */
#define OP_STORE__HDR      16u
#define OP_STORE__KEY_MAX  511u
#define OP_STORE__QKEY_MAX (OP_STORE_NAME_MAX + 1 + 16)
#define OP_STORE__OKEY     9u /* outbox key: stream (1 byte), seq (u64 BE) */

/* Record kinds, byte 1 of every value header. */
enum op_store__kind {
	OP_STORE__K_META = 1,
	OP_STORE__K_EVENT,
	OP_STORE__K_EXEC,
	OP_STORE__K_INDEX,
	OP_STORE__K_BLOB,
	OP_STORE__K_QUARANTINE,
	OP_STORE__K_OUTBOX,
};

enum op_store__op {
	OP_STORE__ENQUEUE,
	OP_STORE__TAKE,
	OP_STORE__ACK,
	OP_STORE__RETRY,
	OP_STORE__RELEASE,
	OP_STORE__DEAD,
	OP_STORE__REPLAY,
	OP_STORE__PUT,
	OP_STORE__DEL,
	OP_STORE__QUARANTINE,
	OP_STORE__RECORD,
	OP_STORE__TAKE_N,
	OP_STORE__NOP,
	OP_STORE__OUTBOX_ADD,
	OP_STORE__OUTBOX_ACK,
};

/* A counter change a request makes once committed. pipe < 0: none. */
struct op_store__delta {
	int pipe;
	int64_t events, bytes;
};
#define OP_STORE__MAXDELTA 8

/* Outbox counter changes of one stream: records and bytes kept, seqs
 * assigned, records dropped, records stored. */
struct op_store__obdelta {
	int64_t recs, bytes;
	uint64_t seqs, dropped, added;
};

/* One write request; lives on the caller's stack while it waits. */
struct op_store__req {
	struct op_store__req *next;
	enum op_store__op op;
	/* inputs, borrowed from the caller */
	const char *pipeline, *trigger, *payload, *error, *event_id, *key;
	size_t payload_len;
	int64_t t; /* not_before or now */
	int64_t now;
	enum op_store_db db;
	const struct op_store_exec *rec;
	char id[OP_UUID_LEN + 1];
	size_t key_len;
	/* outputs */
	struct op_store_event *ev;
	struct op_store_event **evs; /* OP_STORE__TAKE_N: the caller's array of maxev */
	size_t nev, maxev;
	op_err result;
	bool done;     /* under s->cmu: the completer has finished with it */
	bool detached; /* nobody waits: the completer frees it (op_free) */
	/* detached with a completion: called on the completer thread, outside
	 * any lock, after the commit (or the failure), before the request is
	 * freed */
	void (*done_cb)(void *ud, op_err rc, const char *id);
	void *done_ud;
	pthread_cond_t cv; /* the caller waits on it, with s->cmu */
	/* effects on the counters */
	struct op_store__delta d[OP_STORE__MAXDELTA];
	int nd;
	int64_t d_inflight, d_dead, d_quar;
	struct op_store__obdelta ob[OP_OUTBOX_STREAMS];
	/* OP_STORE__OUTBOX_ADD (payload, payload_len) and _ACK (upto) */
	enum op_outbox_stream stream;
	uint64_t upto;
	bool skip; /* dropped from a batch that did not fit: not applied again */
};

struct op_store__pipe {
	char *name;
	uint64_t events, bytes; /* committed */
	int64_t pend_events, pend_bytes;
};

struct op_store {
	MDB_env *env;
	MDB_dbi dbi[OP_STORE_DB_COUNT];
	struct op_store_opts opts;
	char *dir;
	size_t psize;
	int lock_fd; /* owner.lock, flock()ed while open; -1 before */

	/* readers hold it shared for a read txn; the writer exclusively to grow the map */
	pthread_rwlock_t maplock;

	pthread_mutex_t mu; /* everything below */
	pthread_cond_t wake;
	struct op_store__req *head, *tail;
	/* monotonic ms: head's arrival in an empty queue, the writer's batch
	 * began; 0: empty, between batches (op_store_stall_ms) */
	int64_t queued_since_ms, busy_since_ms;
	size_t pending;
	size_t waiting;            /* pending requests a caller waits for */
	int64_t detached_since_ms; /* when the oldest pending detached request came (monotonic) */
	int64_t detached_delay_ms; /* how long they may wait; 0: DETACHED_DELAY_MS, < 0: none */
	bool stopping, hold;
	bool writer_started;
	pthread_t writer;
	/* Requests the writer is done with (committed or failed) go to the
	 * completer thread, which wakes their callers and runs their callbacks
	 * while the writer starts the next transaction. Under cmu. */
	pthread_mutex_t cmu;
	pthread_cond_t cwake;
	struct op_store__req *done_head, *done_tail;
	bool cstop;
	bool completer_started;
	pthread_t completer;
	op_store_commit_fn on_commit; /* read by the writer under mu */
	void *on_commit_ud;
	void (*ob_hook)(void *ud); /* op_store_outbox_on_add, read by the writer under mu */
	void *ob_hook_ud;
	bool ob_hook_busy; /* the writer is calling ob_hook */
	pthread_cond_t ob_hook_cv;
	struct op_outbox_limits ob_lim;
	/* outbox, committed: written by the writer (or open) under mu */
	uint64_t ob_recs[OP_OUTBOX_STREAMS], ob_bytes[OP_OUTBOX_STREAMS];
	uint64_t ob_last[OP_OUTBOX_STREAMS], ob_dropped[OP_OUTBOX_STREAMS];

	struct op_store__pipe *pipes;
	size_t npipes, cappipes;
	uint64_t inflight, dead, quarantined;
	uint64_t txns, requests, full, grows;
	size_t mapsize;
	/* the writer's space_low, disk_low and disk_avail, as last published */
	bool room_low_pub, disk_low_pub;
	uint64_t disk_avail_pub;

	atomic_bool ob_on;     /* ob_lim.max_records != 0, for adds that must not lock */
	unsigned fail_commits; /* test hook, under mu */

	/* writer thread only */
	uint64_t seq, seq_saved;
	int64_t pend_inflight, pend_dead, pend_quar;
	struct op_store__obdelta pend_ob[OP_OUTBOX_STREAMS];
	uint64_t ob_saved_last[OP_OUTBOX_STREAMS], ob_saved_dropped[OP_OUTBOX_STREAMS];
	struct op_outbox_limits ob_cur; /* ob_lim as the current batch sees it */
	/* new data is refused: map_low, disk_low, or a commit found the disk full */
	bool space_low;
	bool map_low;        /* at map_max, less than the map's reserve left */
	bool disk_low;       /* less than disk_reserve free on the disk, free pages counted */
	bool disk_tight;     /* less than twice disk_reserve free on the disk: take one at a time */
	bool disk_known;     /* statvfs answered once */
	uint64_t disk_avail; /* the filesystem's free bytes at the last check */
	uint64_t disk_inside;    /* and the file's free pages, when they were counted */
	size_t disk_hw;          /* the map's high-water mark then */
	int64_t disk_checked_ms; /* when; 0 = check before the next batch */
	uint64_t disk_budget;    /* bytes of new data this batch may still add (admit) */
	int64_t full_until_ms;   /* a commit found the disk full: no new data until then */
	int64_t last_reader_check;
};

/* store.c */
/* A read txn, under the map lock held shared; op_store__rd_end ends both. */
op_err op_store__rd_begin(struct op_store *s, MDB_txn **t) OP_WUR;
void op_store__rd_end(struct op_store *s, MDB_txn *t);
op_err op_store__put_meta(struct op_store *s, MDB_txn *t, const char *name, uint64_t v) OP_WUR;
/* OP_ENOTFOUND if absent, OP_ECORRUPT if damaged. */
op_err op_store__get_meta(struct op_store *s, MDB_txn *t, const char *name, uint64_t *v) OP_WUR;

/* record.c */
op_err op_store__from_mdb(int rc);
/*
 * mdb_put for a key that most likely sorts after every key of d (a sequence
 * number, a v7 id, a queue key of a pipeline's latest event): tried with
 * MDB_APPEND first, as an ordinary put when it does not. Appended, a full
 * last page is split by starting a new one; otherwise LMDB shares the
 * records out between the two, and records of a few hundred bytes whose
 * keys only grow leave the pages behind them a fifth to a third empty:
 * more pages for each commit to write (test_store measures it).
 */
int op_store__put_last(MDB_txn *t, MDB_dbi d, MDB_val *key, MDB_val *val, unsigned flags);
int64_t op_store__now_ms(void);
void op_store__seal(void *dst, const MDB_val *key, enum op_store__kind kind, size_t plen);
op_err op_store__open_rec(const MDB_val *key, const MDB_val *val, enum op_store__kind kind,
                          const uint8_t **payload, size_t *plen) OP_WUR;
enum op_store__kind op_store__db_kind(enum op_store_db db);
const char *op_store__db_name(enum op_store_db db);
size_t op_store__event_size(const struct op_store_event *ev);
void op_store__event_write(void *dst, const MDB_val *key, const struct op_store_event *ev,
                           uint64_t seq);
op_err op_store__event_read(const MDB_val *key, const MDB_val *val, struct op_store_event **out,
                            uint64_t *seq) OP_WUR;
/* Like op_store__event_read without the payload: ev->payload is NULL and
 * ev->payload_len its size. For listings that show sizes only. */
op_err op_store__event_read_meta(const MDB_val *key, const MDB_val *val,
                                 struct op_store_event **out) OP_WUR;
size_t op_store__exec_size(const struct op_store_exec *rec);
void op_store__exec_write(void *dst, const MDB_val *key, const struct op_store_exec *rec,
                          uint64_t seq);
/* The execution id inside an opened execution record's payload; false if too short. */
bool op_store__exec_id(const uint8_t *p, size_t n, char id[OP_UUID_LEN]);
op_err op_store__exec_read(const MDB_val *key, const MDB_val *val,
                           struct op_store_exec **out) OP_WUR;
size_t op_store__qkey(uint8_t *buf, const char *pipeline, int64_t not_before, uint64_t seq);
void op_store__put_u64be(uint8_t *p, uint64_t v);
uint64_t op_store__get_u64be(const uint8_t *p);
bool op_store__name_ok(const char *name, size_t max);

/* writer.c. The two threads, started by op_store_open and stopped by
 * op_store_close, the writer first. */
void *op_store__writer_main(void *arg);
void *op_store__completer_main(void *arg);
op_err op_store__submit(struct op_store *s, struct op_store__req *r) OP_WUR;
/* Queues r (op_malloc'd, with everything it points to in the same block)
 * without waiting; the writer applies it and the completer frees it. */
op_err op_store__submit_detached(struct op_store *s, struct op_store__req *r) OP_WUR;
op_err op_store__quarantine(struct op_store *s, MDB_txn *txn, enum op_store_db db,
                            const MDB_val *key, const MDB_val *val, struct op_store__req *r) OP_WUR;
int op_store__pipe_get(struct op_store *s, const char *name, size_t len, bool create);
/* Adds d to the stream's part of *acc. */
void op_store__ob_add(struct op_store__obdelta *acc, const struct op_store__obdelta *d);

/* outbox.c. The writer's part runs inside request r's nested txn t; *mapfull
 * is set when LMDB ran out of map. */
op_err op_store__outbox_load(struct op_store *s, MDB_txn *t) OP_WUR;
op_err op_store__outbox_apply(struct op_store *s, MDB_txn *t, struct op_store__req *r,
                              bool *mapfull) OP_WUR;
/* The copy of execution record rec (with its final id) for OP_OUTBOX_EXECS. */
op_err op_store__outbox_exec(struct op_store *s, MDB_txn *t, struct op_store__req *r,
                             const struct op_store_exec *rec, bool *mapfull) OP_WUR;
/* Writes the outbox's seqs and drop counts to meta in t if they changed;
 * op_store__outbox_saved once t committed. */
op_err op_store__outbox_save(struct op_store *s, MDB_txn *t, bool *mapfull) OP_WUR;
void op_store__outbox_saved(struct op_store *s);
/* A key of the outbox database: false if it is not one. */
bool op_store__outbox_key(const MDB_val *k, enum op_outbox_stream *st, uint64_t *seq);

/* Test hooks: while held the writer takes no requests; pending count; the
 * next n commits fail as if the map were full. */
void op_store__hold(struct op_store *s, bool on);
size_t op_store__pending(struct op_store *s);
void op_store__fail_commits(struct op_store *s, unsigned n);
/* Test hook: how long requests nobody waits for may be held back (ms; 0:
 * the default; negative: not at all, so they join the next batch). */
void op_store__set_detached_delay(struct op_store *s, int64_t ms);

#endif
