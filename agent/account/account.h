/*
 * Accounts: named credentials that steps refer to by name, so that no secret
 * is ever written in a pipeline. One account is one of five types:
 *
 *   basic        username, password                 (HTTP Basic, databases, SFTP)
 *   key          username, privateKey [, passphrase] (SSH keys)
 *   bearer       token                              (static API tokens)
 *   oauth2       tokenUrl, clientId, clientSecret [, scope, audience]
 *                                                    (client-credentials grant)
 *   certificate  certificate, privateKey [, passphrase] (TLS client certificates, PEM)
 *
 * Its JSON document is {"type": ..., fields...}; unknown keys, missing fields
 * and values that are not strings are refused by name. Secrets are wiped from
 * memory when an account is freed. op_account_describe gives what may be
 * shown (name, type, username, tokenUrl, clientId, scope, audience, updated):
 * never a password, key, token or secret.
 *
 * Stored sealed, one file per account: see agent/account/vault.h.
 */
#ifndef OP_ACCOUNT_ACCOUNT_H
#define OP_ACCOUNT_ACCOUNT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/core/diag.h"
#include "agent/core/err.h"

#define OP_ACCOUNT_NAME_MAX  64
#define OP_ACCOUNT_FIELD_MAX (64u << 10) /* bytes in one field (a PEM chain fits) */

enum op_account_type {
	OP_ACCOUNT_BASIC,
	OP_ACCOUNT_KEY,
	OP_ACCOUNT_BEARER,
	OP_ACCOUNT_OAUTH2,
	OP_ACCOUNT_CERTIFICATE,
};

struct op_account {
	char name[OP_ACCOUNT_NAME_MAX + 1];
	enum op_account_type type;
	int64_t updated_ms; /* Unix ms of the last op_vault_put; 0 if never stored */
	/* NULL when the type has no such field or it is optional and absent. */
	char *username;
	char *password;
	char *private_key; /* PEM or OpenSSH text */
	char *passphrase;
	char *token;
	char *token_url;
	char *client_id;
	char *client_secret;
	char *scope;
	char *audience;
	char *certificate; /* PEM */
};

/* True for 1..OP_ACCOUNT_NAME_MAX characters of [A-Za-z0-9._-], the first a
 * letter or digit (names are file names in the vault). */
bool op_account_name_ok(const char *name);

/* The type's name ("basic", ...), and back (false if unknown). */
const char *op_account_type_name(enum op_account_type t);
bool op_account_type_parse(const char *s, enum op_account_type *out);

/*
 * Builds an account named name from its JSON document (borrowed). Problems go
 * to d, one per field, with the field as path: OP_ECONFIG, and *out NULL.
 * "updated" (a number) is accepted and kept, as op_account_to_json writes it.
 * OP_ENOMEM.
 */
op_err op_account_parse(const char *name, const cJSON *doc, struct op_account **out,
                        struct op_diag *d) OP_WUR;

/* The full document, secrets included (for sealing only); NULL on ENOMEM. */
cJSON *op_account_to_json(const struct op_account *a);

/* What may be shown: no secret field. NULL on ENOMEM. */
cJSON *op_account_describe(const struct op_account *a);

/* Deletes an account document (op_account_to_json, or one read from a user
 * or a file) after wiping its string values, which cJSON_Delete leaves in
 * freed memory. Account documents are flat. NULL is a no-op. */
void op_account_json_free(cJSON *doc);

/* Wipes the secrets and frees. NULL is a no-op. */
void op_account_free(struct op_account *a);

#endif
