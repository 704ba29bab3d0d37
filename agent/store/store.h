/*
 * The durable store of the agent: one LMDB environment (a directory) holding
 * the per-pipeline event queues, in-flight leases, dead letters, execution
 * records, deployed pipeline documents, agent state and the outbox (records
 * waiting to go up to the control plane). Key invariant: every
 * write goes through the store's single writer thread, which applies all
 * pending requests in one write transaction (group commit) and wakes each
 * caller only after that transaction is durably committed, so a function of
 * this API that returned OP_OK has its effect on disk, and one that returned
 * an error has no effect at all. Delivery is at-least-once: an event leaves
 * the store's queues only through op_store_ack() or the dead-letter queue,
 * and events that were in flight when the process died are put back into
 * their queue when the store is opened again.
 *
 * Every function is safe to call from any number of threads at once, except
 * op_store_close(), which must be the last call. Functions never call back
 * into the caller, except through the callbacks it registers
 * (op_store_enqueue_cb's, on the store's completion thread, in commit
 * order; op_store_on_commit and op_store_outbox_on_add, on the writer
 * thread). Times are milliseconds since the Unix epoch.
 */
#ifndef OP_STORE_STORE_H
#define OP_STORE_STORE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/err.h"
#include "agent/core/uuid.h"

/* Longest pipeline name, and longest key of the pipelines and state tables. */
#define OP_STORE_NAME_MAX 128
#define OP_STORE_KEY_MAX  256

struct op_store;

/* op_store_opts.exec_retention: keep no execution records. */
#define OP_STORE_KEEP_NONE UINT64_MAX

struct op_store_opts {
	const char *dir;           /* environment directory, created (0700) if missing */
	size_t map_initial;        /* initial map size in bytes; 0: 16 MiB */
	size_t map_max;            /* the map never grows past this; 0: 1 GiB */
	uint64_t exec_retention;   /* execution records kept; 0: 10000; OP_STORE_KEEP_NONE */
	uint64_t queue_max_events; /* queued events per pipeline; 0: 100000 */
	uint64_t queue_max_bytes;  /* queued bytes per pipeline; 0: 256 MiB */
	uint64_t disk_reserve;     /* free disk kept for draining; 0: 32 MiB */
};

/* An event as the store returns it. Owned by the caller: op_store_event_free. */
struct op_store_event {
	char id[OP_UUID_LEN + 1]; /* stable event id */
	char *pipeline;
	char *trigger; /* trigger info as given to op_store_enqueue ("" if none) */
	char *payload; /* payload_len bytes plus a NUL */
	size_t payload_len;
	char *error;      /* last error (dead letters, retried events), NULL if none */
	uint32_t attempt; /* 1 for the first attempt */
	bool redelivered; /* was in flight when the process stopped */
	int64_t enqueued_ms;
	int64_t not_before_ms;
	int64_t taken_ms;                  /* when it was last taken */
	int64_t dead_ms;                   /* when it was dead-lettered */
	struct op_store_event *next_ready; /* free for the caller's lists */
};

/*
 * One execution record. As input (op_store_ack, op_store_retry, op_store_dead)
 * the store only reads it; the strings may be NULL (stored as ""). As output
 * it is owned by the caller: op_store_exec_free.
 */
struct op_store_exec {
	uint64_t seq;             /* output only: commit order, increasing */
	char id[OP_UUID_LEN + 1]; /* input: "" lets the store make one */
	char event_id[OP_UUID_LEN + 1];
	char *pipeline;
	char *version; /* the pipeline's version string */
	char *trigger;
	int64_t start_ms;
	int64_t duration_ms;
	char *status; /* "success", "error", ... */
	char *error;
	uint32_t attempt;
};

enum op_store_kv { OP_STORE_PIPELINES, OP_STORE_STATE };

enum op_store_db {
	OP_STORE_DB_META,
	OP_STORE_DB_QUEUE,
	OP_STORE_DB_INFLIGHT,
	OP_STORE_DB_DEAD,
	OP_STORE_DB_EXECS,
	OP_STORE_DB_EXECIDX,
	OP_STORE_DB_PIPELINES,
	OP_STORE_DB_STATE,
	OP_STORE_DB_QUARANTINE,
	OP_STORE_DB_OUTBOX,
	OP_STORE_DB_COUNT
};

struct op_store_stats {
	uint64_t map_size; /* current map size in bytes */
	uint64_t map_max;  /* configured maximum */
	uint64_t used;     /* bytes up to the highest page used (free pages inside included) */
	uint64_t free;     /* map_size - used */
	uint64_t entries[OP_STORE_DB_COUNT];
	uint64_t queued;      /* events in all queues (counter) */
	uint64_t inflight;    /* events taken and not yet acked (counter) */
	uint64_t dead;        /* dead letters (counter) */
	uint64_t quarantined; /* corrupt records moved aside since open */
	uint64_t txns;        /* write transactions committed since open */
	uint64_t requests;    /* write requests committed since open */
	uint64_t full;        /* requests refused with OP_EFULL since open */
	uint64_t map_grows;   /* map growths since open */
	bool room_low;        /* new data is refused: the map's or the disk's reserve reached */
	bool disk_low;        /* the disk's, in particular */
	uint64_t disk_avail;  /* bytes free on the store's filesystem at the last check */
};

/*
 * Opens (creating if needed) the store in opts->dir, puts events that were in
 * flight back into their queues, rebuilds the counters, moves corrupt queue
 * records to quarantine and starts the writer thread. On error *out is NULL
 * and err holds a one-line reason. Errors: OP_EINVAL (bad options), OP_EIO,
 * OP_EAUTH (permissions), OP_EFULL, OP_ECORRUPT (not a store, or damaged),
 * OP_EUNSUPPORTED (written by a newer version), OP_ENOMEM, OP_EBUSY (another
 * process has it open: one process owns a store).
 */
op_err op_store_open(const struct op_store_opts *opts, struct op_store **out, char *err,
                     size_t errlen) OP_WUR;
/* Applies every pending write, stops the writer and closes. NULL is a no-op.
 * No other call may run on s at the same time or after. */
void op_store_close(struct op_store *s);

/*
 * Appends an event to the queue of pipeline, due at not_before_ms (0: now),
 * and returns once it is committed; its new id goes to id_out (may be NULL).
 * payload is payload_len bytes (JSON text), trigger a string or NULL.
 * OP_EFULL: the pipeline's queue bound or the map is full (answer 503/429
 * with Retry-After, do not acknowledge). OP_EINVAL: bad name or arguments.
 * OP_ENOMEM, OP_EIO: not stored, may be retried. OP_ECANCELED: closing.
 */
op_err op_store_enqueue(struct op_store *s, const char *pipeline, const char *trigger,
                        const char *payload, size_t payload_len, int64_t not_before_ms,
                        char id_out[OP_UUID_LEN + 1]) OP_WUR;

/*
 * op_store_enqueue without waiting: the arguments are copied and done(ud,
 * result, id) is called once, on the store's completion thread, after the
 * commit (result as op_store_enqueue's) — keep it short: the callbacks of
 * later commits wait for it. A non-OK return means done will not
 * be called. For callers that must not block on the disk (HTTP handlers).
 */
op_err op_store_enqueue_cb(struct op_store *s, const char *pipeline, const char *trigger,
                           const char *payload, size_t payload_len, int64_t not_before_ms,
                           void (*done)(void *ud, op_err rc, const char *id), void *ud) OP_WUR;

/*
 * Moves the earliest due event (not_before <= now_ms; FIFO among equals) of
 * pipeline, or of all pipelines if pipeline is NULL, into flight (a lease)
 * and returns it in *out (caller frees). now_ms 0: the current time.
 * OP_ENOTFOUND: nothing is due. Corrupt queue records met on the way are
 * quarantined and skipped; OP_EBUSY if too many for one call (call again).
 */
op_err op_store_take(struct op_store *s, const char *pipeline, int64_t now_ms,
                     struct op_store_event **out) OP_WUR;

/*
 * Takes up to max due events of pipeline (not NULL) into flight in one
 * transaction: evs gets *n of them (caller frees each). OP_ENOTFOUND when
 * none is due. For workers that serve many events per commit.
 */
op_err op_store_take_n(struct op_store *s, const char *pipeline, int64_t now_ms,
                       struct op_store_event **evs, size_t max, size_t *n) OP_WUR;

/*
 * op_store_ack without waiting for the commit (rec is copied). A crash
 * before the commit leaves the event in flight, so it runs again after the
 * restart: at-least-once, as always. A failure is logged.
 */
op_err op_store_ack_nowait(struct op_store *s, const char *event_id,
                           const struct op_store_exec *rec) OP_WUR;

/* The execution of an in-flight event ended: removes the lease and writes
 * the execution record rec (may be NULL) in one transaction. OP_ENOTFOUND: no
 * such event in flight. OP_EINVAL: rec has an id that is already stored. */
op_err op_store_ack(struct op_store *s, const char *event_id,
                    const struct op_store_exec *rec) OP_WUR;

/*
 * Writes an execution record that has no queued event (a synchronous run),
 * under the same retention bound. Returns after the commit.
 */
op_err op_store_record(struct op_store *s, const struct op_store_exec *rec) OP_WUR;

/*
 * The same without waiting for the commit (the record is copied): for
 * answers that must not wait for an fsync. A record lost to a crash before
 * the next commit is the price; a failure to store it is logged.
 */
op_err op_store_record_nowait(struct op_store *s, const struct op_store_exec *rec) OP_WUR;

/* Returns once every write queued before it is committed. */
op_err op_store_flush(struct op_store *s) OP_WUR;

/* Puts an in-flight event back into its queue with attempt + 1, due at
 * not_before_ms, remembering error (may be NULL); writes rec if not NULL.
 * Not subject to the queue bound (the event was already accepted). */
op_err op_store_retry(struct op_store *s, const char *event_id, int64_t not_before_ms,
                      const char *error, const struct op_store_exec *rec) OP_WUR;

/* Puts an in-flight event that never started back into its queue as it was
 * (attempt, not-before and error unchanged): what a graceful stop does with
 * the events it took but did not run. OP_ENOTFOUND: no such event in flight. */
op_err op_store_release(struct op_store *s, const char *event_id) OP_WUR;

/* Moves an in-flight event to the dead letters with its last error; writes
 * rec if not NULL. OP_ENOTFOUND: no such event in flight. */
op_err op_store_dead(struct op_store *s, const char *event_id, const char *error,
                     const struct op_store_exec *rec) OP_WUR;

/* Puts a dead letter back into its queue, due now, attempt reset to 1.
 * OP_ENOTFOUND: no such dead letter. OP_EFULL: the queue is full. */
op_err op_store_replay(struct op_store *s, const char *event_id) OP_WUR;

/* Up to limit dead letters (of pipeline, or all if NULL), in event id order,
 * without their payloads (payload NULL, payload_len its size: a listing of
 * large events costs no more than one of small ones; op_store_get_dead has
 * the payload). *out is an array of *n events (caller frees with
 * op_store_events_free). */
op_err op_store_list_dead(struct op_store *s, const char *pipeline, size_t limit,
                          struct op_store_event ***out, size_t *n) OP_WUR;

/* One dead letter by event id, in *out (caller frees with op_store_event_free).
 * OP_ENOTFOUND: no such dead letter. OP_EINVAL: not an event id. */
op_err op_store_get_dead(struct op_store *s, const char *event_id,
                         struct op_store_event **out) OP_WUR;

/* Counts the dead letters of pipeline (all if NULL) into *n. Reads every
 * dead letter, one at a time: O(dead letters), for admin listings. */
op_err op_store_dead_count(struct op_store *s, const char *pipeline, uint64_t *n) OP_WUR;

/* The most recent execution records, newest first, at most limit. */
op_err op_store_list_execs(struct op_store *s, size_t limit, struct op_store_exec ***out,
                           size_t *n) OP_WUR;
/* One execution record by id. OP_ENOTFOUND if not stored (or retired). */
op_err op_store_get_exec(struct op_store *s, const char *id, struct op_store_exec **out) OP_WUR;

/* Deployed pipelines and agent state: committed put, get, delete, key list.
 * Keys are 1..OP_STORE_KEY_MAX bytes. get returns a copy (plus a NUL) the
 * caller frees with op_free. list returns *n keys (op_store_keys_free). */
op_err op_store_put(struct op_store *s, enum op_store_kv kv, const char *key, const void *val,
                    size_t len) OP_WUR;
op_err op_store_get(struct op_store *s, enum op_store_kv kv, const char *key, char **val,
                    size_t *len) OP_WUR;
op_err op_store_del(struct op_store *s, enum op_store_kv kv, const char *key) OP_WUR;
op_err op_store_list(struct op_store *s, enum op_store_kv kv, char ***keys, size_t *n) OP_WUR;

/* Queued events and bytes of one pipeline (0, 0 if unknown). Cheap. */
void op_store_queue_depth(struct op_store *s, const char *pipeline, uint64_t *events,
                          uint64_t *bytes);
/*
 * Calls fn(ud, seconds, requests) on the writer thread after each committed
 * write transaction, with the time mdb_txn_commit took (writing the pages and
 * the two fsyncs) and the number of requests it carried. fn must be quick and
 * must not call the store. NULL stops the calls. For the commit-latency
 * histogram; set once, after op_store_open.
 */
typedef void (*op_store_commit_fn)(void *ud, double seconds, size_t requests);
void op_store_on_commit(struct op_store *s, op_store_commit_fn fn, void *ud);

/*
 * How long the writer has been stuck, in ms: since it began the batch it is
 * on, or since the oldest write it has not picked up arrived; 0 when it is
 * idle. A disk that stopped answering (fsync never returns) shows here, for
 * the watchdog and /healthz. Cheap: no transaction.
 */
int64_t op_store_stall_ms(struct op_store *s);

/* Sizes and counters for metrics. Opens a read transaction. */
op_err op_store_stats(struct op_store *s, struct op_store_stats *st) OP_WUR;
/* Whether new data is refused for want of room (the map's reserve at
 * map_max, or the disk's disk_reserve) as of the writer's last batch: an
 * OP_EFULL then means the store, not a queue's bound. */
bool op_store_room_low(struct op_store *s);

/* JSON object of an execution record, as the admin API shows it and the
 * outbox sends it: {"id", "eventId", "pipeline", "version", "trigger",
 * "status", "error", "attempt", "startedAt" (ISO 8601 UTC with milliseconds),
 * "startedAtMs", "durationMs"}; eventId, trigger and error are null when
 * empty, startedAt when start_ms is 0. The caller deletes it. NULL: out of
 * memory. */
cJSON *op_store_exec_json(const struct op_store_exec *r);

/*
 * The outbox: durable queues of records (JSON object text) for the control
 * plane, one per stream, each drained in seq order by one reader that reads
 * a batch, sends it and acknowledges it (the records are deleted only then,
 * so a crash sends them again: at-least-once). Off until
 * op_store_outbox_limits turns it on. When on, every execution record the
 * store writes (op_store_record, op_store_record_nowait, and the rec of
 * op_store_ack, op_store_ack_nowait, op_store_retry, op_store_dead) is also
 * appended to OP_OUTBOX_EXECS as op_store_exec_json's compact text, in the
 * same transaction (one is never committed without the other). The stream
 * numbers are on disk: never renumber them.
 */
enum op_outbox_stream { OP_OUTBOX_LOGS, OP_OUTBOX_METRICS, OP_OUTBOX_EXECS, OP_OUTBOX_STREAMS };

/* Largest record op_store_outbox_add takes. */
#define OP_OUTBOX_RECORD_MAX ((size_t)1 << 20)

struct op_outbox_limits {
	uint64_t max_records; /* the bound, all streams together; 0: the outbox is off */
	uint64_t max_bytes;   /* of record data, all streams together; 0: no byte bound */
};

/*
 * Turns the outbox on (or changes its bounds); l NULL or max_records 0 turns
 * it off. Off (the default): adds are no-ops and execution records are not
 * copied; records kept earlier stay readable. Safe to call any time; takes
 * effect from the writer's next transaction. The bounds are enforced when
 * records are added: past max_records or max_bytes (all streams together)
 * the oldest log records are dropped first, then the oldest metrics;
 * execution records only past twice the bounds, the oldest first. A log or
 * metrics record that cannot fit even so is dropped itself. Every drop is
 * counted (op_store_outbox_stats).
 */
void op_store_outbox_limits(struct op_store *s, const struct op_outbox_limits *l);

/*
 * Appends a copy of rec (JSON object text, len bytes; not checked) to
 * stream st without waiting for the commit, like op_store_record_nowait: a
 * crash before the next commit loses it. Cheap: one allocation and a queue
 * insert; never logs (it may be called from the logger). Its seq is
 * assigned in the commit: per stream from 1, strictly increasing, never
 * reused (also across restarts, also once every record was acknowledged).
 * Every record added while the outbox is on takes a seq, also one dropped
 * by the bounds or because the store is full (counted in dropped), so the
 * seqs missing from what a reader got are what was dropped or quarantined.
 * OP_EINVAL: st is OP_OUTBOX_EXECS (those come from the execution records)
 * or not a stream, or rec is NULL or empty. OP_ELIMIT: len is over
 * OP_OUTBOX_RECORD_MAX. OP_ENOMEM. OP_ECANCELED: the store is closing.
 * OP_OK when off (nothing kept).
 */
op_err op_store_outbox_add(struct op_store *s, enum op_outbox_stream st, const char *rec,
                           size_t len) OP_WUR;

/* One record of a batch: data is len bytes plus a NUL, owned by the batch. */
struct op_outbox_rec {
	uint64_t seq;
	const char *data;
	size_t len;
};
struct op_outbox_batch {
	struct op_outbox_rec *v;
	size_t n;
	char *buf; /* holds every record's bytes */
};

/*
 * The oldest records of stream st with seq > after, in seq order, into *b:
 * at most max_n records and max_bytes of data, but at least one when there
 * is one (a record larger than max_bytes comes alone). OP_OK with b->n == 0
 * when there is none. A record whose checksum fails is skipped, and handed
 * to the writer (without waiting) to be moved to the quarantine database
 * and counted. Runs in the caller's thread in a read transaction and never
 * waits for the writer (only for a map resize, which is rare and short).
 * Costs a cursor walk and one copy of the bytes. OP_EINVAL: st is not a
 * stream or max_n is 0. OP_ENOMEM, OP_ECORRUPT (damaged LMDB), OP_EBUSY (no
 * reader slot): b is empty; try again later. Free with op_outbox_batch_free
 * (also after an error, or a b that was zeroed).
 */
op_err op_store_outbox_read(struct op_store *s, enum op_outbox_stream st, uint64_t after,
                            size_t max_n, size_t max_bytes, struct op_outbox_batch *b) OP_WUR;
void op_outbox_batch_free(struct op_outbox_batch *b);

/*
 * Deletes the records of stream st with seq <= upto (the broker has them)
 * without waiting for the commit: a crash before it commits sends them
 * again (at least once). upto 0 does nothing. OP_EINVAL: st is not a
 * stream. OP_ENOMEM. OP_ECANCELED: the store is closing. Never logs.
 */
op_err op_store_outbox_ack(struct op_store *s, enum op_outbox_stream st, uint64_t upto) OP_WUR;

struct op_outbox_stats {
	uint64_t records[OP_OUTBOX_STREAMS];  /* kept now (committed) */
	uint64_t bytes[OP_OUTBOX_STREAMS];    /* of record data */
	uint64_t dropped[OP_OUTBOX_STREAMS];  /* by the bounds or a full store, since the
	                                         store was created (persisted) */
	uint64_t last_seq[OP_OUTBOX_STREAMS]; /* the last seq assigned (committed) */
};
/* Committed counters, from memory: cheap, takes the store's lock only. */
void op_store_outbox_stats(struct op_store *s, struct op_outbox_stats *st);

/*
 * fn(ud) is called on the writer thread after each commit that stored
 * outbox records (logs, metrics or execution copies), so a drain wakes
 * without polling. It must be quick and must not wait for the store (a
 * detached call such as op_store_outbox_ack is fine; op_store_flush would
 * deadlock). One hook; NULL clears it. When this returns, the hook it
 * replaced is not running and is not called again (unless this is called
 * from inside that hook, which then returns first), so its ud may go.
 */
void op_store_outbox_on_add(struct op_store *s, void (*fn)(void *ud), void *ud);

void op_store_event_free(struct op_store_event *ev);
void op_store_events_free(struct op_store_event **evs, size_t n);
void op_store_exec_free(struct op_store_exec *rec);
void op_store_execs_free(struct op_store_exec **recs, size_t n);
void op_store_keys_free(char **keys, size_t n);

#endif
