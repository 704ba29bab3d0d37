/*
 * Signed envelopes of the control-plane link (docs/protocol.md): the desired
 * state travels as
 *
 *   {"alg": "ed25519", "kid": "...", "payload": "<base64 of the JSON
 *    document>", "sig": "<base64 of the Ed25519 signature>"}
 *
 * The signature covers the exact payload bytes, so no JSON canonical form
 * is needed. An agent trusts a set of public keys, each named by its key id
 * (kid), so keys can rotate: a new key is added to the agents, then used,
 * then the old one removed. The document inside carries a strictly
 * increasing "seq"; an envelope whose seq is not above the last one applied
 * is a replay and is refused. Nothing in the payload is parsed before the
 * signature is verified. Ed25519 from wolfSSL.
 */
#ifndef OP_CONTROL_SYNC_ENVELOPE_H
#define OP_CONTROL_SYNC_ENVELOPE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/err.h"

#define OP_ENV_KEY_LEN 32 /* Ed25519 private seeds and public keys */
#define OP_ENV_KID_MAX 64
/* Largest envelope accepted, in bytes. */
#define OP_ENV_MAX (16u << 20)

struct op_env_key {
	char kid[OP_ENV_KID_MAX + 1];
	unsigned char pub[OP_ENV_KEY_LEN];
};

/* A new key pair from the system's random source. OP_EINTERNAL when wolfSSL
 * fails (why says where). The private seed is the caller's to wipe. */
op_err op_env_keygen(unsigned char priv[OP_ENV_KEY_LEN], unsigned char pub[OP_ENV_KEY_LEN],
                     char *why, size_t whylen) OP_WUR;

/* The default key id of pub: "ed25519-" and the first 16 hex digits of
 * its SHA-256. out holds OP_ENV_KID_MAX + 1 bytes. */
void op_env_kid(const unsigned char pub[OP_ENV_KEY_LEN], char *out);

/* The SHA-256 of an envelope's bytes as 64 hex digits and a NUL: how an
 * agent names the envelope it refused before it could trust anything in
 * it (reported lastError.envelope), and how outpostctl knows it is its own. */
#define OP_ENV_DIGEST_LEN 64
void op_env_digest(const char *text, size_t len, char out[OP_ENV_DIGEST_LEN + 1]);

/* True when kid is 1..64 of letters, digits, '-', '_', '.', ':'. */
bool op_env_kid_ok(const char *kid);

/*
 * Signs the len bytes of payload (a JSON document) with the key pair and
 * writes the envelope's JSON text into *out (op_free). OP_EINVAL for a bad
 * kid or an empty payload, OP_ELIMIT past OP_ENV_MAX, OP_EINTERNAL (wolfSSL),
 * OP_ENOMEM; why says which.
 */
op_err op_env_sign(const unsigned char priv[OP_ENV_KEY_LEN],
                   const unsigned char pub[OP_ENV_KEY_LEN], const char *kid, const char *payload,
                   size_t len, char **out, char *why, size_t whylen) OP_WUR;

/*
 * Opens the envelope text (len bytes): checks its form, finds its kid among
 * keys[0..n), verifies the signature over the payload bytes, and only then
 * parses the payload, which must be a JSON object with an integer "seq"
 * (1 .. 2^53) above last_seq. On OP_OK *doc is the document (cJSON_Delete)
 * and *seq its seq. Errors, with why naming what was wrong and *code (may
 * be NULL) the protocol's name of the failure (docs/protocol.md: ENVELOPE,
 * KEY_UNKNOWN, SIGNATURE, DOCUMENT, REPLAY):
 *   OP_EPARSE     not an envelope (not JSON, a member missing or of the
 *                 wrong type, alg not ed25519, bad base64, a payload that is
 *                 not a JSON object, no integer seq)
 *   OP_EAUTH      an unknown kid, or a signature that does not verify
 *   OP_EREJECTED  seq not above last_seq (a replay, or an older document;
 *                 *seq is set: the document already applied is a replay too)
 *   OP_ELIMIT     larger than OP_ENV_MAX
 *   OP_ENOMEM
 */
op_err op_env_open(const char *text, size_t len, const struct op_env_key *keys, size_t n,
                   uint64_t last_seq, cJSON **doc, uint64_t *seq, const char **code, char *why,
                   size_t whylen) OP_WUR;

/*
 * op_env_open without the seq: the form, the key, the signature, then the
 * payload as a JSON object into *doc; codes ENVELOPE, KEY_UNKNOWN,
 * SIGNATURE, DOCUMENT. For signed commands, which carry an id and an
 * expiry instead of a seq.
 */
op_err op_env_verify(const char *text, size_t len, const struct op_env_key *keys, size_t n,
                     cJSON **doc, const char **code, char *why, size_t whylen) OP_WUR;

/*
 * Parses the text (len bytes) of a public key file, as `outpostctl keygen`
 * writes KEY.pub ({"alg": "ed25519", "kid": ..., "public": base64}), into
 * key. OP_EPARSE with why.
 */
op_err op_env_pub_parse(const char *text, size_t len, struct op_env_key *key, char *why,
                        size_t whylen) OP_WUR;

#endif
