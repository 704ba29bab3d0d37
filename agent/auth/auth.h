/*
 * Authentication of HTTP trigger requests: a verifier compiled once per
 * trigger from its "auth" config object (API keys, HTTP Basic, JWT or none),
 * then asked about each request through a header getter. No HTTP server code
 * lives here: the functions are pure apart from the Basic verification cache.
 * Key invariant: a compiled verifier is immutable (the Basic cache has its own
 * mutex), so any number of threads may call op_auth_check() on it at once, and
 * a credential is accepted only by a key configured for exactly its kind (an
 * RS256 key never verifies an HS256 token, a token never chooses its own key).
 */
#ifndef OP_AUTH_AUTH_H
#define OP_AUTH_AUTH_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/diag.h"
#include "agent/core/err.h"

struct op_auth;

/* Longest header value looked at; longer values are refused (OP_EAUTH). */
#define OP_AUTH_HEADER_MAX 16384
/* Default and largest JWT size in bytes ("max_token" in the config). */
#define OP_AUTH_JWT_MAX_DEFAULT 8192
#define OP_AUTH_JWT_MAX_LIMIT   65536
/* Default PBKDF2 iteration count of op_auth_hash_password(); smallest accepted. */
#define OP_AUTH_PBKDF2_ITER_DEFAULT 100000
#define OP_AUTH_PBKDF2_ITER_MIN     10000
#define OP_AUTH_PBKDF2_ITER_MAX     10000000
/* Suggested size of the why buffer of op_auth_check(). */
#define OP_AUTH_WHY_MAX 256

/*
 * Looks up a request header by name (ASCII case-insensitive, as HTTP). On
 * success stores a view of the value (not necessarily NUL-terminated, valid
 * until op_auth_check() returns) and returns true; false when absent. With a
 * repeated header it should return the first one.
 */
typedef bool (*op_auth_header_fn)(void *ud, const char *name, const char **val, size_t *len);

struct op_auth_request {
	op_auth_header_fn header;
	void *ud;
	int64_t now; /* Unix seconds for exp/nbf/iat; 0 means the current time */
};

/*
 * Compiles a verifier from config, an object {"type": "apikey" | "basic" |
 * "jwt" | "none", ...} (docs/auth.md lists every key). Every problem is
 * recorded in d at its JSON path below d's current path and compilation goes
 * on, so one call reports all of them.
 * Returns OP_OK with *out set (free with op_auth_free()), OP_ECONFIG when any
 * problem was recorded (fix the config), OP_ENOMEM, or OP_EINTERNAL when
 * wolfCrypt fails. On error *out is NULL. config is only borrowed.
 */
op_err op_auth_compile(const cJSON *config, struct op_diag *d, struct op_auth **out) OP_WUR;

/* Frees a verifier; NULL is a no-op. Secrets are wiped first. */
void op_auth_free(struct op_auth *a);

/* Password hashes (PBKDF2 runs) a basic verifier has computed; 0 for other types. */
uint64_t op_auth_hashes(const struct op_auth *a);

/* The config's type name ("apikey", "basic", "jwt", "none"). */
const char *op_auth_type(const struct op_auth *a);

/*
 * The WWW-Authenticate value to send with a 401 ("Basic realm=\"outpost\"",
 * "Bearer"), or NULL for types that have none. Borrowed from a.
 */
const char *op_auth_challenge(const struct op_auth *a);

/*
 * Checks one request. Thread-safe. On OP_OK and claims != NULL, *claims is
 * the verified identity, owned by the caller: the JWT payload object for
 * "jwt", {"type":"apikey","key":NAME} for "apikey", {"type":"basic",
 * "user":NAME} for "basic", NULL for "none".
 * Errors: OP_EAUTH when the request is not authenticated (missing, malformed,
 * wrong, expired, ... credentials): answer 401 with a generic message; why
 * holds the reason for the log only (it may name a key id or a user name, never
 * a secret). OP_EBUSY ("basic" only: too many password hashes being computed
 * at once; answer 503 with Retry-After), OP_ENOMEM (503) and OP_EINTERNAL
 * (500) are our failures.
 * On error *claims is NULL. why (may be NULL) always receives a NUL-terminated
 * text, "" on success; OP_AUTH_WHY_MAX bytes are enough.
 */
op_err op_auth_check(const struct op_auth *a, const struct op_auth_request *req, cJSON **claims,
                     char *why, size_t whylen) OP_WUR;

/*
 * Makes the stored form of a Basic password, "pbkdf2-sha256$<iterations>$
 * <salt base64>$<hash base64>", with a random 16-byte salt; iterations 0 means
 * OP_AUTH_PBKDF2_ITER_DEFAULT. *out is op_malloc'd (caller op_free()s).
 * OP_EINVAL for iterations out of [OP_AUTH_PBKDF2_ITER_MIN,
 * OP_AUTH_PBKDF2_ITER_MAX], OP_ENOMEM, OP_EINTERNAL (RNG failure).
 */
op_err op_auth_hash_password(const char *password, size_t len, unsigned iterations,
                             char **out) OP_WUR;

/*
 * Makes the stored form of an API key, "sha256:<64 lower-case hex digits>",
 * into out (at least OP_AUTH_APIKEY_HASH_LEN + 1 bytes). Same as
 * `printf %s "$KEY" | sha256sum`. OP_EINVAL when outlen is too small,
 * OP_EINTERNAL when hashing fails; on error out is "" (if outlen > 0).
 */
#define OP_AUTH_APIKEY_HASH_LEN 71
op_err op_auth_hash_apikey(const char *key, size_t len, char *out, size_t outlen) OP_WUR;

#endif
