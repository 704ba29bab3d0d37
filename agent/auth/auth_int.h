/*
 * Private to agent/auth: the compiled verifier and the helpers the API key,
 * Basic and JWT files share (config tables, header parsing, base64, constant
 * time comparison, reason texts). Invariant: every per-type state hangs off
 * struct op_auth and is never written after compilation, except the Basic
 * cache, which only its own mutex guards.
 */
#ifndef OP_AUTH_AUTH_INT_H
#define OP_AUTH_AUTH_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/auth/auth.h"
#include "agent/core/b64.h"

enum op_auth__type { OP_AUTH__NONE, OP_AUTH__APIKEY, OP_AUTH__BASIC, OP_AUTH__JWT };

struct op_auth__apikey;
struct op_auth__basic;
struct op_auth__jwt;

struct op_auth {
	enum op_auth__type type;
	const char *challenge; /* static or owned by the per-type state */
	struct op_auth__apikey *apikey;
	struct op_auth__basic *basic;
	struct op_auth__jwt *jwt;
};

/* Config tables: one row per key an object accepts (the "type" key included). */
enum op_auth__kind {
	OP_AUTH__STR,  /* string */
	OP_AUTH__INT,  /* integer in [min, max] */
	OP_AUTH__BOOL, /* true or false */
	OP_AUTH__ARR,  /* array (elements checked by the caller) */
	OP_AUTH__OBJ,  /* object (members checked by the caller) */
	OP_AUTH__STRS, /* string or non-empty array of strings */
};

struct op_auth__field {
	const char *name;
	enum op_auth__kind kind;
	bool required;
	long long min, max; /* INT only */
	const char *help;
};

#define OP_AUTH__N(arr) (sizeof(arr) / sizeof((arr)[0]))

/*
 * Checks obj against a table: an object, no unknown or repeated keys, required
 * keys present, each value of its kind and within bounds. Problems go to d
 * below its current path. Returns true when obj passed; the caller may then
 * read every present value as its kind.
 */
bool op_auth__check_object(struct op_diag *d, const cJSON *obj, const struct op_auth__field *t,
                           size_t n);
/* Integer value of a checked INT member, or def when absent. */
long long op_auth__int(const cJSON *obj, const char *name, long long def);
/* Copies every string of a checked STRS value (string or array) into a new array. */
op_err op_auth__strings(const cJSON *v, char ***out, size_t *n) OP_WUR;
void op_auth__strings_free(char **v, size_t n);

/* Looks a header up through req; false when absent. */
bool op_auth__header(const struct op_auth_request *req, const char *name, const char **v,
                     size_t *len);
/*
 * If v starts with the scheme (case-insensitive) and one or more spaces, the
 * rest after the spaces goes to rest and rlen and it returns true.
 */
bool op_auth__scheme(const char *v, size_t len, const char *scheme, const char **rest,
                     size_t *rlen);
/* Formats the reason text; why may be NULL. Returns OP_EAUTH for convenience. */
op_err op_auth__fail(char *why, size_t whylen, const char *fmt, ...) OP_PRINTF(3, 4);
/* The same for any class. */
op_err op_auth__failc(op_err e, char *why, size_t whylen, const char *fmt, ...) OP_PRINTF(4, 5);

/* Constant-time equality of two n-byte buffers (time depends on n only). */
bool op_auth__ct_eq(const void *a, const void *b, size_t n);

/*
 * Copies len bytes of s into out (cap bytes) for a log text: bytes outside
 * printable ASCII become '?', and a long value is cut with "...".
 */
void op_auth__printable(const char *s, size_t len, char *out, size_t cap);

/* Formats a Unix time as 2026-11-23T10:00:00Z into out (at least 32 bytes). */
void op_auth__iso_time(double t, char *out, size_t outlen);

/* Per-type parts. compile records problems in d; check fills claims and why. */
op_err op_auth__apikey_compile(const cJSON *cfg, struct op_diag *d, struct op_auth *a) OP_WUR;
op_err op_auth__apikey_check(const struct op_auth *a, const struct op_auth_request *req,
                             cJSON **claims, char *why, size_t whylen) OP_WUR;
void op_auth__apikey_free(struct op_auth__apikey *k);

op_err op_auth__basic_compile(const cJSON *cfg, struct op_diag *d, struct op_auth *a) OP_WUR;
op_err op_auth__basic_check(const struct op_auth *a, const struct op_auth_request *req,
                            cJSON **claims, char *why, size_t whylen) OP_WUR;
void op_auth__basic_free(struct op_auth__basic *b);
uint64_t op_auth__basic_hashed(struct op_auth__basic *b);

op_err op_auth__jwt_compile(const cJSON *cfg, struct op_diag *d, struct op_auth *a) OP_WUR;
op_err op_auth__jwt_check(const struct op_auth *a, const struct op_auth_request *req,
                          cJSON **claims, char *why, size_t whylen) OP_WUR;
void op_auth__jwt_free(struct op_auth__jwt *j);

/* wolfCrypt_Init() once per process. */
void op_auth__crypto_init(void);
/* Call before ECC work in a thread: frees wolfCrypt's per-thread ECC cache at its exit. */
void op_auth__ecc_thread_mark(void);

#endif
