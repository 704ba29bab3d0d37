/*
 * Account lookup over a lazily opened vault (see lookup.h). The vault handle
 * is read-only once open, so lookups share it without a lock; the mutex only
 * guards opening and replacing it. A replaced handle is kept until the
 * lookup is freed, because another thread may still be reading through it.
 */
#include "agent/account/lookup.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>

#include "agent/account/vault.h"
#include "agent/core/alloc.h"

/* Old handles kept after a key rotation; a few rotations per process life. */
#define RETIRED_MAX 8

struct op_accounts {
	char *dir, *key_file;
	pthread_mutex_t mu;
	struct op_vault *_Atomic vault;
	struct op_vault *retired[RETIRED_MAX];
	size_t n_retired;
	struct stat key_st; /* the key file the vault was opened with */
};

op_err op_accounts_new(const char *dir, const char *key_file, struct op_accounts **out)
{
	*out = NULL;
	struct op_accounts *a = op_calloc(1, sizeof(*a));
	if (a == NULL)
		return OP_ENOMEM;
	a->dir = op_strdup(dir);
	a->key_file = op_strdup(key_file);
	if (a->dir == NULL || a->key_file == NULL || pthread_mutex_init(&a->mu, NULL) != 0) {
		op_free(a->dir);
		op_free(a->key_file);
		op_free(a);
		return OP_ENOMEM;
	}
	*out = a;
	return OP_OK;
}

void op_accounts_free(struct op_accounts *a)
{
	if (a == NULL)
		return;
	op_vault_close(atomic_load(&a->vault));
	for (size_t i = 0; i < a->n_retired; i++)
		op_vault_close(a->retired[i]);
	pthread_mutex_destroy(&a->mu);
	op_free(a->dir);
	op_free(a->key_file);
	op_free(a);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The open vault; opens it first when there is none, and when reopen is set
 * and the key file is no longer the one it was opened with (rotated). */
static op_err vault_get(struct op_accounts *a, bool reopen, struct op_vault **out, char *why,
                        size_t whylen)
{
	*out = atomic_load(&a->vault);
	if (*out != NULL && !reopen)
		return OP_OK;
	pthread_mutex_lock(&a->mu);
	op_err rc = OP_OK;
	struct op_vault *cur = atomic_load(&a->vault);
	struct stat st;
	bool have = stat(a->key_file, &st) == 0;
	if (cur == NULL || (reopen && have && !same_file(&st, &a->key_st))) {
		struct op_vault *v = NULL;
		if (!have && errno == ENOENT) {
			rc = op_errf(why, whylen, OP_ENOTFOUND,
			             "no accounts key at %s yet (it is made when the first account "
			             "is set)",
			             a->key_file);
		} else if (cur != NULL && a->n_retired == RETIRED_MAX) {
			rc = op_errf(why, whylen, OP_EAUTH,
			             "the accounts key changed too often; restart the agent");
		} else {
			rc = op_vault_open(a->dir, a->key_file, false, &v, why, whylen);
		}
		if (rc == OP_OK) {
			if (cur != NULL)
				a->retired[a->n_retired++] = cur;
			a->key_st = st;
			atomic_store(&a->vault, v);
			cur = v;
		}
	}
	pthread_mutex_unlock(&a->mu);
	*out = rc ? NULL : cur;
	return rc;
}

op_err op_accounts_get(struct op_accounts *a, const char *name, struct op_account **out, char *why,
                       size_t whylen)
{
	*out = NULL;
	if (!op_account_name_ok(name))
		return op_errf(why, whylen, OP_ECONFIG, "\"%.80s\" is not an account name", name);
	struct op_vault *v = NULL;
	op_err rc = vault_get(a, false, &v, why, whylen);
	if (rc == OP_ENOTFOUND) {
		char inner[512];
		snprintf(inner, sizeof(inner), "%s", why);
		return op_errf(why, whylen, OP_ENOTFOUND, "no account named %s: %s", name, inner);
	}
	if (rc)
		return rc;
	rc = op_vault_get(v, name, out, why, whylen);
	/* Sealed with another key: the key file may have been replaced. */
	struct op_vault *again = NULL;
	char why2[512];
	if (rc == OP_EAUTH && vault_get(a, true, &again, why2, sizeof(why2)) == OP_OK && again != v)
		rc = op_vault_get(again, name, out, why, whylen);
	return rc;
}
