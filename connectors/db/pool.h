/*
 * Database connection pools, one per connection target and account (the
 * same conninfo with the same account shares connections across steps and
 * pipelines). The host (outpostd, outpostctl run) owns the set for its life
 * and lends it to db steps through op_host.db_pools; a reload keeps the
 * pools, so connections survive it.
 *
 * Idle connections are checked before reuse (a cheap state check always, a
 * round trip after POOL_PING_AFTER of idleness) and closed after
 * OP_DB_POOL_IDLE_MS unused; a broken one is closed and replaced.
 * Thread-safe.
 */
#ifndef OP_CONNECTORS_DB_POOL_H
#define OP_CONNECTORS_DB_POOL_H

#include "agent/core/err.h"

#define OP_DB_POOL_IDLE_MS 300000 /* idle connections close after 5 minutes */

struct op_db_pools;

/* An empty set of pools. OP_ENOMEM. */
op_err op_db_pools_new(struct op_db_pools **out) OP_WUR;
/* Closes every connection; none may be out (call after the workers stop). */
void op_db_pools_free(struct op_db_pools *p);

#endif
