/*
 * Private to agent/auth: JWT verification keys, shared by the token checker
 * (jwt.c) and the key loader and signature verifier (jwt_key.c). Invariant:
 * every key is bound to exactly one algorithm at load, and a signature is
 * only ever checked with a key whose algorithm equals the token's "alg".
 */
#ifndef OP_AUTH_JWT_INT_H
#define OP_AUTH_JWT_INT_H

#include "agent/auth/auth_int.h"

enum op_jwt_alg { OP_JWT_HS256, OP_JWT_RS256, OP_JWT_ES256 };

struct op_jwt_key {
	char *kid; /* NULL when the config gives none */
	enum op_jwt_alg alg;
	size_t sigsize;        /* exact JWS signature length in bytes */
	unsigned char *secret; /* HS256 */
	size_t secretlen;
	unsigned char *n; /* RS256 modulus, big-endian */
	size_t nlen;
	unsigned char e[16];
	size_t elen;
	unsigned char x[32], y[32]; /* ES256 public point */
};

const char *op_auth__jwt_alg_name(enum op_jwt_alg alg);
/* Exact, case-sensitive match of "HS256", "RS256", "ES256". */
bool op_auth__jwt_alg_parse(const char *s, enum op_jwt_alg *alg);

/*
 * Fill k (alg already set) from a PEM public key or a public JWK. OP_ECONFIG
 * with the reason in err, OP_ENOMEM, OP_EINTERNAL.
 */
op_err op_auth__jwt_key_pem(struct op_jwt_key *k, const char *pem, char *err, size_t errlen) OP_WUR;
op_err op_auth__jwt_key_jwk(struct op_jwt_key *k, const cJSON *jwk, char *err,
                            size_t errlen) OP_WUR;
void op_auth__jwt_key_fini(struct op_jwt_key *k);

/*
 * Checks sig over data with k. OP_OK when it verifies, OP_EAUTH when it does
 * not (including a wrong length), OP_ENOMEM, OP_EINTERNAL. Thread-safe.
 */
op_err op_auth__jwt_key_verify(const struct op_jwt_key *k, const unsigned char *data, size_t len,
                               const unsigned char *sig, size_t siglen) OP_WUR;

#endif
