/*
 * The daemon's side of the jq known-program set (connectors/transform/jq.h):
 * libjq 1.6 compiles its builtins for every program (about 20 ms each), which
 * would make a daemon with many transform steps slow to start. The set of
 * program texts that compiled before is kept in the store under the state key
 * "jq.known": read before the first pipeline set is built, written again after
 * any set that added to it. Programs accepted from it are compiled ahead by
 * one background thread at a low priority once the set runs.
 *
 * A missing or unreadable record only costs compiles; nothing depends on it.
 */
#ifndef OP_DAEMON_JQ_CACHE_H
#define OP_DAEMON_JQ_CACHE_H

#include "agent/core/err.h"
#include "agent/store/store.h"

#define OP_JQ_CACHE_KEY "jq.known"

struct op_jq_cache;

/* Reads the known set from s (borrowed until op_jq_cache_close) into the jq
 * module. OP_ENOMEM only; a bad record is logged and ignored. */
op_err op_jq_cache_open(struct op_store *s, struct op_jq_cache **out) OP_WUR;

/* After a pipeline set was built: stores the known set if it changed, and
 * compiles the programs accepted from it in the background. */
void op_jq_cache_loaded(struct op_jq_cache *c);

/* Stops the background compile (waiting for the one in progress) and frees c.
 * NULL is a no-op. Before the store closes. */
void op_jq_cache_close(struct op_jq_cache *c);

#endif
