/*
 * The vault: accounts sealed at rest, one file per account in one directory,
 * under a 256-bit key kept outside it.
 *
 * Key: a file holding 32 bytes, raw or as base64 text. It must not be
 * readable by group or others (the vault refuses it, as ssh refuses a key).
 * A key file that does not exist is created with 32 random bytes (base64,
 * mode 0600) when the caller asks for it. Under systemd the key can come as a
 * credential (LoadCredential=): the caller passes its path.
 *
 * File <dir>/<name>.acct: "OPA1", the key id (the first 8 bytes of SHA-256 of
 * the key), a random 96-bit nonce, then the account's JSON document encrypted
 * with AES-256-GCM and its 128-bit tag. The additional data is
 * "outpost account\0" + name, so a file renamed to another account's name
 * does not open. Files are written to a temporary name, fsynced and renamed,
 * so a reader sees the old or the new account, never half of one; when the
 * directory belongs to another user (root managing the service's vault), the
 * file is given to that user.
 *
 * Errors name the account and what is wrong: a file sealed with another key
 * (OP_EAUTH, with both key ids), a damaged or renamed file (OP_ECORRUPT), a
 * missing account (OP_ENOTFOUND). No error text ever holds a secret.
 */
#ifndef OP_ACCOUNT_VAULT_H
#define OP_ACCOUNT_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include "agent/account/account.h"
#include "agent/core/err.h"

#define OP_VAULT_KEY_LEN  32
#define OP_VAULT_FILE_MAX (1u << 20) /* a sealed account is far smaller */

struct op_vault;

/*
 * Opens the vault in dir (created 0700 if missing) with the key in key_file
 * (created if missing and create_key). err gets a message naming the path.
 * OP_ECONFIG (key file unreadable, too open, not 32 bytes), OP_EIO, OP_ENOMEM.
 */
op_err op_vault_open(const char *dir, const char *key_file, bool create_key, struct op_vault **out,
                     char *err, size_t errlen) OP_WUR;
void op_vault_close(struct op_vault *v);

/* The key id, 16 hex digits, for messages and `account list`. */
const char *op_vault_key_id(const struct op_vault *v);

/* Seals a and replaces the account of its name; sets a->updated_ms. */
op_err op_vault_put(struct op_vault *v, struct op_account *a, char *err, size_t errlen) OP_WUR;
/* Opens the account name into *out (op_account_free). */
op_err op_vault_get(struct op_vault *v, const char *name, struct op_account **out, char *err,
                    size_t errlen) OP_WUR;
/* OP_ENOTFOUND if there is no such account. */
op_err op_vault_delete(struct op_vault *v, const char *name, char *err, size_t errlen) OP_WUR;
#define OP_VAULT_SECRET_LEN 32

/*
 * A secret of the agent's own (the control link's X25519 key), in
 * <dir>/<id>.secret sealed under the vault's key like an account (but never
 * listed or opened as one): read into out, or, when there is none yet, made
 * by make(ud, out) and written first. id is a name as accounts have.
 * OP_EAUTH (sealed with another key), OP_ECORRUPT, OP_EIO, a class of
 * make; err names the file.
 */
op_err op_vault_secret(struct op_vault *v, const char *id,
                       op_err (*make)(void *ud, uint8_t out[OP_VAULT_SECRET_LEN]), void *ud,
                       uint8_t out[OP_VAULT_SECRET_LEN], char *err, size_t errlen) OP_WUR;

/* The account names, sorted; free with op_vault_names_free. */
op_err op_vault_list(struct op_vault *v, char ***names, size_t *n) OP_WUR;
void op_vault_names_free(char **names, size_t n);

/*
 * The sealing itself, for tests and for other stores of sealed secrets:
 * seal writes the file format above for plain under key and name into a new
 * buffer (op_free); open checks and decrypts it into a new NUL-terminated
 * buffer (wipe it, then op_free). OP_EAUTH: another key; OP_ECORRUPT: the
 * tag does not verify or the format is wrong.
 */
op_err op_vault_seal(const uint8_t key[OP_VAULT_KEY_LEN], const char *name, const void *plain,
                     size_t len, uint8_t **out, size_t *outlen) OP_WUR;
op_err op_vault_unseal(const uint8_t key[OP_VAULT_KEY_LEN], const char *name, const uint8_t *in,
                       size_t len, char **plain, size_t *plen) OP_WUR;

#endif
