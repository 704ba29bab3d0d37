/*
 * The durable store of the agent: one LMDB environment (a directory) holding
 * the per-pipeline event queues, in-flight leases, dead letters, execution
 * records, deployed pipeline documents and agent state. Key invariant: every
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
 * into the caller. Times are milliseconds since the Unix epoch.
 */
#ifndef OP_STORE_STORE_H
#define OP_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/err.h"
#include "agent/core/uuid.h"

/* Longest pipeline name, and longest key of the pipelines and state tables. */
#define OP_STORE_NAME_MAX 128
#define OP_STORE_KEY_MAX  256

struct op_store;

struct op_store_opts {
	const char *dir;           /* environment directory, created (0700) if missing */
	size_t map_initial;        /* initial map size in bytes; 0: 16 MiB */
	size_t map_max;            /* the map never grows past this; 0: 1 GiB */
	uint64_t exec_retention;   /* execution records kept; 0: 10000 */
	uint64_t queue_max_events; /* queued events per pipeline; 0: 100000 */
	uint64_t queue_max_bytes;  /* queued bytes per pipeline; 0: 256 MiB */
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
};

/*
 * Opens (creating if needed) the store in opts->dir, puts events that were in
 * flight back into their queues, rebuilds the counters, moves corrupt queue
 * records to quarantine and starts the writer thread. On error *out is NULL
 * and err holds a one-line reason. Errors: OP_EINVAL (bad options), OP_EIO,
 * OP_EAUTH (permissions), OP_EFULL, OP_ECORRUPT (not a store, or damaged),
 * OP_EUNSUPPORTED (written by a newer version), OP_ENOMEM, OP_EBUSY.
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
 * result, id) is called once, on the writer thread, after the commit (result
 * as op_store_enqueue's) — keep it short. A non-OK return means done will not
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

/* Sizes and counters for metrics. Opens a read transaction. */
op_err op_store_stats(struct op_store *s, struct op_store_stats *st) OP_WUR;

void op_store_event_free(struct op_store_event *ev);
void op_store_events_free(struct op_store_event **evs, size_t n);
void op_store_exec_free(struct op_store_exec *rec);
void op_store_execs_free(struct op_store_exec **recs, size_t n);
void op_store_keys_free(char **keys, size_t n);

#endif
