/*
 * Secrets sealed to one agent (docs/protocol.md, "Accounts"): the control
 * plane seals an account to the agent's X25519 public key, so the broker
 * and whatever carries the desired document never see it, and only that
 * agent can open it.
 *
 * A box is {"alg": "x25519-hkdf-sha256-aes256gcm", "epk": base64 of an
 * ephemeral X25519 public key, "nonce": base64 of 12 bytes, "ct": base64 of
 * the ciphertext and its 16-byte tag}. The key is HKDF-SHA256 of the X25519
 * shared secret of the ephemeral key and the agent's key, salt epk || the
 * agent's public key, info "outpost sealed v1"; AES-256-GCM with aad as its
 * additional data (the agent id and the account's name: a box moved to
 * another agent or another name does not open). Keys are raw 32-byte
 * little-endian X25519 keys (RFC 7748), from wolfSSL.
 */
#ifndef OP_CONTROL_SYNC_SEAL_H
#define OP_CONTROL_SYNC_SEAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/err.h"

#define OP_SEAL_KEY_LEN 32
#define OP_SEAL_MAX     (1u << 20) /* bytes of plaintext in one box */

/* A new key pair. OP_EINTERNAL (wolfSSL) with why. The private key is the
 * caller's to wipe. */
op_err op_seal_keygen(uint8_t priv[OP_SEAL_KEY_LEN], uint8_t pub[OP_SEAL_KEY_LEN], char *why,
                      size_t whylen) OP_WUR;

/* The public key of priv. OP_EINTERNAL when priv is not a key. */
op_err op_seal_public(const uint8_t priv[OP_SEAL_KEY_LEN], uint8_t pub[OP_SEAL_KEY_LEN]) OP_WUR;

/* Seals len bytes at plain to pub, bound to aad, into *box (a new object).
 * OP_ELIMIT past OP_SEAL_MAX, OP_EINVAL (pub is not a key), OP_EINTERNAL,
 * OP_ENOMEM; why says which. */
op_err op_seal(const uint8_t pub[OP_SEAL_KEY_LEN], const char *aad, const void *plain, size_t len,
               cJSON **box, char *why, size_t whylen) OP_WUR;

/* Opens box with the key pair, bound to aad, into *plain (NUL-terminated,
 * *len bytes; wipe it, then op_free). OP_EPARSE (not a box), OP_EAUTH (not
 * sealed to this key, or for another aad, or changed), OP_ENOMEM; why says
 * which, never with a secret. */
op_err op_unseal(const uint8_t priv[OP_SEAL_KEY_LEN], const uint8_t pub[OP_SEAL_KEY_LEN],
                 const char *aad, const cJSON *box, char **plain, size_t *len, char *why,
                 size_t whylen) OP_WUR;

#endif
