/*
 * Signed envelopes: Ed25519 over the exact payload bytes. See envelope.h.
 */
#include "control-sync/envelope.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"

#define SEQ_MAX 9007199254740992.0 /* 2^53: exact in a JSON number */

op_err op_env_keygen(unsigned char priv[OP_ENV_KEY_LEN], unsigned char pub[OP_ENV_KEY_LEN],
                     char *why, size_t whylen)
{
	WC_RNG rng;
	ed25519_key key;
	if (wc_InitRng(&rng) != 0)
		return op_errf(why, whylen, OP_EINTERNAL, "the random source cannot be used");
	op_err rc = OP_OK;
	word32 pl = OP_ENV_KEY_LEN, ql = OP_ENV_KEY_LEN;
	if (wc_ed25519_init(&key) != 0) {
		rc = op_errf(why, whylen, OP_EINTERNAL, "Ed25519 cannot be set up");
	} else {
		if (wc_ed25519_make_key(&rng, ED25519_KEY_SIZE, &key) != 0 ||
		    wc_ed25519_export_private_only(&key, priv, &pl) != 0 ||
		    wc_ed25519_export_public(&key, pub, &ql) != 0)
			rc = op_errf(why, whylen, OP_EINTERNAL, "Ed25519 key generation failed");
		wc_ed25519_free(&key);
	}
	wc_FreeRng(&rng);
	return rc;
}

void op_env_digest(const char *text, size_t len, char out[OP_ENV_DIGEST_LEN + 1])
{
	unsigned char h[WC_SHA256_DIGEST_SIZE] = {0};
	wc_Sha256Hash((const unsigned char *)text, (word32)len, h);
	for (int i = 0; i < WC_SHA256_DIGEST_SIZE; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

void op_env_kid(const unsigned char pub[OP_ENV_KEY_LEN], char *out)
{
	unsigned char h[WC_SHA256_DIGEST_SIZE] = {0};
	wc_Sha256Hash(pub, OP_ENV_KEY_LEN, h);
	int k = snprintf(out, OP_ENV_KID_MAX + 1, "ed25519-");
	for (int i = 0; i < 8; i++)
		k += snprintf(out + k, OP_ENV_KID_MAX + 1 - (size_t)k, "%02x", h[i]);
}

bool op_env_kid_ok(const char *kid)
{
	if (kid == NULL)
		return false;
	size_t n = strlen(kid);
	if (n == 0 || n > OP_ENV_KID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = kid[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("-_.:", c)))
			return false;
	}
	return true;
}

op_err op_env_sign(const unsigned char priv[OP_ENV_KEY_LEN],
                   const unsigned char pub[OP_ENV_KEY_LEN], const char *kid, const char *payload,
                   size_t len, char **out, char *why, size_t whylen)
{
	*out = NULL;
	if (!op_env_kid_ok(kid))
		return op_errf(why, whylen, OP_EINVAL,
		               "key id \"%.80s\": 1 to %d letters, digits, '-', '_', '.' or ':'",
		               kid, OP_ENV_KID_MAX);
	if (len == 0)
		return op_errf(why, whylen, OP_EINVAL, "the payload is empty");
	if (len > OP_ENV_MAX / 4 * 3 - 1024)
		return op_errf(why, whylen, OP_ELIMIT, "the payload is larger than %u bytes",
		               OP_ENV_MAX / 4 * 3 - 1024);
	ed25519_key key;
	unsigned char sig[ED25519_SIG_SIZE];
	word32 siglen = sizeof(sig);
	if (wc_ed25519_init(&key) != 0)
		return op_errf(why, whylen, OP_EINTERNAL, "Ed25519 cannot be set up");
	int r = wc_ed25519_import_private_key(priv, OP_ENV_KEY_LEN, pub, OP_ENV_KEY_LEN, &key);
	if (r == 0)
		r = wc_ed25519_sign_msg((const byte *)payload, (word32)len, sig, &siglen, &key);
	wc_ed25519_free(&key);
	if (r != 0)
		return op_errf(why, whylen, OP_EINTERNAL,
		               "signing failed (wolfSSL error %d): is the public key the private "
		               "key's?",
		               r);
	cJSON *env = cJSON_CreateObject();
	bool ok = env && cJSON_AddStringToObject(env, "alg", "ed25519") &&
	          cJSON_AddStringToObject(env, "kid", kid);
	cJSON *p = ok ? op_json_base64(payload, len) : NULL;
	ok = p && cJSON_AddItemToObject(env, "payload", p);
	if (!ok)
		cJSON_Delete(p);
	cJSON *s = ok ? op_json_base64(sig, siglen) : NULL;
	ok = s && cJSON_AddItemToObject(env, "sig", s);
	if (!ok)
		cJSON_Delete(s);
	*out = ok ? op_json_print(env, OP_JSON_COMPACT) : NULL;
	cJSON_Delete(env);
	return *out ? OP_OK : op_errf(why, whylen, OP_ENOMEM, "out of memory");
}

static const char *member(const cJSON *env, const char *name)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, name));
}

op_err op_env_pub_parse(const char *text, size_t len, struct op_env_key *key, char *why,
                        size_t whylen)
{
	cJSON *o = cJSON_ParseWithLength(text, len);
	const char *alg = member(o, "alg"), *kid = member(o, "kid"), *pub = member(o, "public");
	char *raw = NULL;
	size_t n = 0;
	bool ok = cJSON_IsObject(o) && alg && strcmp(alg, "ed25519") == 0 && kid &&
	          op_env_kid_ok(kid) && pub && op_base64_decode(pub, &raw, &n) == OP_OK &&
	          n == OP_ENV_KEY_LEN;
	if (ok) {
		snprintf(key->kid, sizeof(key->kid), "%s", kid);
		memcpy(key->pub, raw, OP_ENV_KEY_LEN);
	}
	op_free(raw);
	cJSON_Delete(o);
	if (!ok)
		return op_errf(why, whylen, OP_EPARSE,
		               "not an Ed25519 public key file (alg, kid, public, as `outpostctl "
		               "keygen` writes KEY.pub)");
	return OP_OK;
}

/* Checks sig over payload with the key named kid. */
static op_err verify(const struct op_env_key *k, const char *kid, const char *payload, size_t plen,
                     const char *sig64, char *why, size_t whylen)
{
	char *sig = NULL;
	size_t siglen = 0;
	op_err rc = op_base64_decode(sig64, &sig, &siglen);
	if (rc == OP_ENOMEM)
		return op_errf(why, whylen, rc, "out of memory");
	if (rc || siglen != ED25519_SIG_SIZE) {
		op_free(sig);
		return op_errf(why, whylen, OP_EPARSE, "sig: not the base64 of a %d-byte signature",
		               ED25519_SIG_SIZE);
	}
	ed25519_key key;
	int res = 0, r = wc_ed25519_init(&key);
	if (r == 0) {
		r = wc_ed25519_import_public(k->pub, OP_ENV_KEY_LEN, &key);
		if (r == 0)
			r = wc_ed25519_verify_msg((const byte *)sig, (word32)siglen,
			                          (const byte *)payload, (word32)plen, &res, &key);
		wc_ed25519_free(&key);
	}
	op_free(sig);
	if (r != 0 || res != 1)
		return op_errf(why, whylen, OP_EAUTH,
		               "the signature does not verify with key \"%s\": the payload was "
		               "changed, or signed with another key",
		               kid);
	return OP_OK;
}

op_err op_env_verify(const char *text, size_t len, const struct op_env_key *keys, size_t n,
                     cJSON **doc, const char **code, char *why, size_t whylen)
{
	const char *ignored;
	if (code == NULL)
		code = &ignored;
	*code = "ENVELOPE";
	*doc = NULL;
	if (len > OP_ENV_MAX)
		return op_errf(why, whylen, OP_ELIMIT, "the envelope is larger than %u bytes",
		               OP_ENV_MAX);
	cJSON *env = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(env)) {
		cJSON_Delete(env);
		return op_errf(why, whylen, OP_EPARSE, "not an envelope: not a JSON object");
	}
	const char *alg = member(env, "alg"), *kid = member(env, "kid");
	const char *p64 = member(env, "payload"), *sig = member(env, "sig");
	op_err rc = OP_OK;
	char *payload = NULL;
	size_t plen = 0;
	if (alg == NULL || kid == NULL || p64 == NULL || sig == NULL)
		rc = op_errf(why, whylen, OP_EPARSE,
		             "not an envelope: alg, kid, payload and sig must be strings");
	else if (strcmp(alg, "ed25519") != 0)
		/* Only what cannot upset a log line or a terminal is echoed. */
		rc = op_errf(why, whylen, OP_EPARSE, "alg \"%.40s\": only ed25519 is accepted",
		             op_env_kid_ok(alg) ? alg : "(not a name)");
	else if ((rc = op_base64_decode(p64, &payload, &plen)) != OP_OK)
		rc = rc == OP_ENOMEM ? op_errf(why, whylen, rc, "out of memory")
		                     : op_errf(why, whylen, OP_EPARSE, "payload: not base64");
	const struct op_env_key *k = NULL;
	for (size_t i = 0; rc == OP_OK && kid && i < n && k == NULL; i++)
		if (strcmp(keys[i].kid, kid) == 0)
			k = &keys[i];
	if (rc == OP_OK && k == NULL) {
		*code = "KEY_UNKNOWN";
		rc = op_errf(why, whylen, OP_EAUTH,
		             "signed with key \"%.80s\", which is not one of the %zu trusted keys",
		             op_env_kid_ok(kid) ? kid : "(not a key id)", n);
	}
	if (rc == OP_OK) {
		rc = verify(k, kid, payload, plen, sig, why, whylen);
		if (rc == OP_EAUTH)
			*code = "SIGNATURE";
	}
	cJSON_Delete(env);
	/* Verified: now the document may be read. */
	cJSON *d = NULL;
	if (rc == OP_OK) {
		*code = "DOCUMENT";
		char err[256];
		rc = op_json_parse(payload, plen, &d, err, sizeof(err));
		if (rc == OP_ENOMEM)
			op_errf(why, whylen, rc, "out of memory");
		else if (rc)
			op_errf(why, whylen, OP_EPARSE, "payload: %s", err);
		else if (!cJSON_IsObject(d))
			rc = op_errf(why, whylen, OP_EPARSE, "payload: %s, not an object",
			             op_json_kind(d));
	}
	op_free(payload);
	if (rc) {
		cJSON_Delete(d);
		return rc;
	}
	*doc = d;
	return OP_OK;
}

op_err op_env_open(const char *text, size_t len, const struct op_env_key *keys, size_t n,
                   uint64_t last_seq, cJSON **doc, uint64_t *seq, const char **code, char *why,
                   size_t whylen)
{
	const char *ignored;
	if (code == NULL)
		code = &ignored;
	*seq = 0;
	cJSON *d = NULL;
	op_err rc = op_env_verify(text, len, keys, n, &d, code, why, whylen);
	if (rc == OP_OK) {
		const cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "seq");
		double v = cJSON_IsNumber(s) ? s->valuedouble : 0;
		if (!cJSON_IsNumber(s) || v < 1 || v > SEQ_MAX || floor(v) != v)
			rc = op_errf(why, whylen, OP_EPARSE,
			             "payload.seq: expected an integer from 1 to 2^53, got %s",
			             cJSON_IsNumber(s) ? "another number" : op_json_kind(s));
		else if ((uint64_t)v <= last_seq) {
			*seq = (uint64_t)v;
			*code = "REPLAY";
			rc =
			    op_errf(why, whylen, OP_EREJECTED,
			            "seq %.0f is not above %llu, the last one applied: a replay or "
			            "an older document",
			            v, (unsigned long long)last_seq);
		} else
			*seq = (uint64_t)v;
	}
	if (rc) {
		cJSON_Delete(d);
		return rc;
	}
	*doc = d;
	return OP_OK;
}
