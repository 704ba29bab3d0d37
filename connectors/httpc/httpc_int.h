/*
 * Private to connectors/httpc: the OAuth2 token cache and what httpc.c and
 * oauth2.c share.
 */
#ifndef OP_CONNECTORS_HTTPC_INT_H
#define OP_CONNECTORS_HTTPC_INT_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdint.h>

#include "agent/account/account.h"
#include "agent/core/clock.h"
#include "connectors/httpc/httpc.h"

#define OP_HTTPC__TOKENS_MAX 64

struct op_httpc__token {
	char account[OP_ACCOUNT_NAME_MAX + 1];
	int64_t updated_ms;     /* the account's version: a changed account gets a new token */
	char *token;            /* wiped when dropped */
	long long use_until_ms; /* monotonic; a little before the server's expiry */
};

struct op_httpc__tokens {
	pthread_mutex_t mu;
	struct op_httpc__token v[OP_HTTPC__TOKENS_MAX];
	size_t n;
};

op_err op_httpc__tokens_init(struct op_httpc__tokens *t) OP_WUR;
void op_httpc__tokens_fini(struct op_httpc__tokens *t);

/*
 * A copy of a usable token of r->auth (an oauth2 account) in *token
 * (op_free_secret it): the cached one unless force, else one fetched from
 * the account's token endpoint, within r's timeout and TLS settings. *fresh
 * says it was just fetched. Classes as op_httpc_perform.
 */
op_err op_httpc__token_get(struct op_httpc *c, struct op_httpc__tokens *t,
                           const struct op_httpc_req *r, bool force, char **token, bool *fresh,
                           char *why, size_t whylen) OP_WUR;
/* Forgets the cached token of account a if it is still token. */
void op_httpc__token_drop(struct op_httpc__tokens *t, const struct op_account *a,
                          const char *token);

/* One exchange on a pooled handle; auth is a whole "Authorization: ..."
 * line or NULL (r->auth is not looked at). */
op_err op_httpc__exchange(struct op_httpc *c, const struct op_httpc_req *r, const char *auth,
                          struct op_httpc_resp *resp, char *why, size_t whylen) OP_WUR;

/* prefix + base64(user ":" pass) into a new string (op_free_secret it). */
op_err op_httpc__basic(const char *prefix, const char *user, const char *pass, char **out) OP_WUR;

op_err op_httpc__from_curl(CURLcode cc);

#endif
