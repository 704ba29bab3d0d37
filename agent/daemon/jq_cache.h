/*
 * The daemon's side of the jq known-program set (connectors/transform/jq.h):
 * libjq 1.6 compiles its builtins for every program (about 20 ms each), which
 * would make a daemon with many transform steps slow to start. The set of
 * program texts that compiled before is kept in the store under the state key
 * "jq.known": read before the first pipeline set is built, written again after
 * any set that added to it.
 *
 * A missing or unreadable record only costs compiles; nothing depends on it.
 */
#ifndef OP_DAEMON_JQ_CACHE_H
#define OP_DAEMON_JQ_CACHE_H

#include <stdint.h>

#include "agent/core/err.h"
#include "agent/store/store.h"

#define OP_JQ_CACHE_KEY "jq.known"

/* Reads the known set from s into the jq module. Returns the set's generation
 * as stored (for op_jq_cache_save); a bad record is logged and ignored. */
uint64_t op_jq_cache_load(struct op_store *s);

/* After a pipeline set was built: stores the known set if its generation moved
 * from *saved, and updates *saved. A failure is logged. */
void op_jq_cache_save(struct op_store *s, uint64_t *saved);

#endif
