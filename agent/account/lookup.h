/*
 * Account lookup for the processes that run pipelines (outpostd, and
 * outpostctl run with --config or --dev): the vault of the agent's config,
 * opened on first use and read again at every lookup, so an account set or
 * changed with `outpostctl account set` is used by the next execution
 * without a restart or a reload.
 *
 * The vault is opened lazily because its key may not exist yet when the
 * agent starts (it is made by the first `account set`); until it opens,
 * every lookup tries again. A lookup that meets a file sealed with another
 * key reopens the vault once, so a rotated key file is picked up too.
 *
 * Thread-safe: lookups run on execution threads, many at once.
 */
#ifndef OP_ACCOUNT_LOOKUP_H
#define OP_ACCOUNT_LOOKUP_H

#include <stddef.h>

#include "agent/account/account.h"
#include "agent/core/err.h"

struct op_accounts;

/* A lookup over the vault in dir with the key in key_file (both copied).
 * Nothing is opened yet. OP_ENOMEM. */
op_err op_accounts_new(const char *dir, const char *key_file, struct op_accounts **out) OP_WUR;
void op_accounts_free(struct op_accounts *a);

/*
 * Opens the account name into *out (op_account_free it). On error *out is
 * NULL and why (whylen bytes) says what is wrong, naming the account and
 * never holding a secret:
 *   OP_ENOTFOUND  no such account (or no vault key yet: nothing was set)
 *   OP_ECONFIG    the key file is unusable (mode, size), or name is not an
 *                 account name
 *   OP_EAUTH      the account was sealed with another key
 *   OP_ECORRUPT   the account's file is damaged
 *   OP_EIO, OP_ENOMEM: retryable
 */
op_err op_accounts_get(struct op_accounts *a, const char *name, struct op_account **out, char *why,
                       size_t whylen) OP_WUR;

#endif
