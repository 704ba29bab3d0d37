/*
 * Boxes sealed to an agent's X25519 key (see seal.h), on wolfSSL.
 */
#include "control-sync/seal.h"

#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/core/uuid.h"

#define ALG       "x25519-hkdf-sha256-aes256gcm"
#define INFO      "outpost sealed v1"
#define NONCE_LEN 12
#define TAG_LEN   16

op_err op_seal_keygen(uint8_t priv[OP_SEAL_KEY_LEN], uint8_t pub[OP_SEAL_KEY_LEN], char *why,
                      size_t whylen)
{
	WC_RNG rng;
	if (wc_InitRng(&rng) != 0)
		return op_errf(why, whylen, OP_EINTERNAL, "wolfSSL: no random number generator");
	int r = wc_curve25519_make_priv(&rng, OP_SEAL_KEY_LEN, priv);
	wc_FreeRng(&rng);
	if (r != 0 || op_seal_public(priv, pub) != OP_OK) {
		explicit_bzero(priv, OP_SEAL_KEY_LEN);
		return op_errf(why, whylen, OP_EINTERNAL, "wolfSSL: cannot make an X25519 key (%d)",
		               r);
	}
	return OP_OK;
}

op_err op_seal_public(const uint8_t priv[OP_SEAL_KEY_LEN], uint8_t pub[OP_SEAL_KEY_LEN])
{
	return wc_curve25519_make_pub(OP_SEAL_KEY_LEN, pub, OP_SEAL_KEY_LEN, priv) == 0
	           ? OP_OK
	           : OP_EINTERNAL;
}

/* The box key: HKDF-SHA256(X25519(priv, peer), epk || agent_pub, INFO). */
static op_err box_key(const uint8_t priv[OP_SEAL_KEY_LEN], const uint8_t peer[OP_SEAL_KEY_LEN],
                      const uint8_t epk[OP_SEAL_KEY_LEN], const uint8_t agent[OP_SEAL_KEY_LEN],
                      uint8_t key[32])
{
	curve25519_key k, p;
	uint8_t shared[OP_SEAL_KEY_LEN], salt[2 * OP_SEAL_KEY_LEN];
	word32 slen = sizeof(shared);
	op_err rc = OP_EINTERNAL;
	if (wc_curve25519_init(&k) != 0)
		return rc;
	if (wc_curve25519_init(&p) != 0) {
		wc_curve25519_free(&k);
		return rc;
	}
	if (wc_curve25519_import_private_ex(priv, OP_SEAL_KEY_LEN, &k, EC25519_LITTLE_ENDIAN) ==
	        0 &&
	    wc_curve25519_import_public_ex(peer, OP_SEAL_KEY_LEN, &p, EC25519_LITTLE_ENDIAN) == 0 &&
	    wc_curve25519_shared_secret_ex(&k, &p, shared, &slen, EC25519_LITTLE_ENDIAN) == 0) {
		memcpy(salt, epk, OP_SEAL_KEY_LEN);
		memcpy(salt + OP_SEAL_KEY_LEN, agent, OP_SEAL_KEY_LEN);
		if (wc_HKDF(WC_SHA256, shared, slen, salt, sizeof(salt), (const byte *)INFO,
		            sizeof(INFO) - 1, key, 32) == 0)
			rc = OP_OK;
	}
	explicit_bzero(shared, sizeof(shared));
	wc_curve25519_free(&k);
	wc_curve25519_free(&p);
	return rc;
}

/* AES-256-GCM of in (n bytes) into out (n bytes) and tag, or back. */
static op_err gcm(bool seal, const uint8_t key[32], const uint8_t nonce[NONCE_LEN], const char *aad,
                  const uint8_t *in, size_t n, uint8_t *out, uint8_t *tag)
{
	Aes aes;
	if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0)
		return OP_EINTERNAL;
	int r = wc_AesGcmSetKey(&aes, key, 32);
	if (r == 0 && seal)
		r = wc_AesGcmEncrypt(&aes, out, in, (word32)n, nonce, NONCE_LEN, tag, TAG_LEN,
		                     (const byte *)aad, (word32)strlen(aad));
	else if (r == 0)
		r = wc_AesGcmDecrypt(&aes, out, in, (word32)n, nonce, NONCE_LEN, tag, TAG_LEN,
		                     (const byte *)aad, (word32)strlen(aad));
	wc_AesFree(&aes);
	explicit_bzero(&aes, sizeof(aes));
	if (r == 0)
		return OP_OK;
	return seal ? OP_EINTERNAL : OP_EAUTH;
}

op_err op_seal(const uint8_t pub[OP_SEAL_KEY_LEN], const char *aad, const void *plain, size_t len,
               cJSON **box, char *why, size_t whylen)
{
	*box = NULL;
	if (len > OP_SEAL_MAX)
		return op_errf(why, whylen, OP_ELIMIT, "more than %u bytes to seal", OP_SEAL_MAX);
	if (wc_curve25519_check_public(pub, OP_SEAL_KEY_LEN, EC25519_LITTLE_ENDIAN) != 0)
		return op_errf(why, whylen, OP_EINVAL, "not an X25519 public key");
	uint8_t epriv[OP_SEAL_KEY_LEN], epub[OP_SEAL_KEY_LEN], key[32], nonce[NONCE_LEN];
	uint8_t *ct = op_malloc(len + TAG_LEN);
	op_err rc = ct ? op_seal_keygen(epriv, epub, why, whylen) : OP_ENOMEM;
	if (rc == OP_OK) {
		rc = box_key(epriv, pub, epub, pub, key);
		explicit_bzero(epriv, sizeof(epriv));
	}
	if (rc == OP_OK)
		rc = op_random_bytes(nonce, sizeof(nonce));
	if (rc == OP_OK)
		rc = gcm(true, key, nonce, aad, plain, len, ct, ct + len);
	explicit_bzero(key, sizeof(key));
	cJSON *o = NULL;
	if (rc == OP_OK) {
		o = cJSON_CreateObject();
		cJSON *m[3] = {op_json_base64((const char *)epub, sizeof(epub)),
		               op_json_base64((const char *)nonce, sizeof(nonce)),
		               op_json_base64((const char *)ct, len + TAG_LEN)};
		static const char *const names[3] = {"epk", "nonce", "ct"};
		bool ok = o && cJSON_AddStringToObject(o, "alg", ALG);
		for (int i = 0; i < 3; i++) {
			ok = ok && m[i] && cJSON_AddItemToObject(o, names[i], m[i]);
			if (!ok)
				cJSON_Delete(m[i]);
		}
		if (!ok) {
			cJSON_Delete(o);
			o = NULL;
			rc = OP_ENOMEM;
		}
	}
	op_free(ct);
	if (rc == OP_ENOMEM)
		return op_errf(why, whylen, rc, "out of memory");
	if (rc == OP_EINTERNAL)
		return op_errf(why, whylen, rc, "wolfSSL cannot seal");
	if (rc)
		return rc;
	*box = o;
	return OP_OK;
}

/* Member name of box as base64 of exactly n bytes (n 0: any) into *out. */
static op_err b64_member(const cJSON *box, const char *name, size_t n, char **out, size_t *len)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(box, name));
	*out = NULL;
	op_err rc = s ? op_base64_decode(s, out, len) : OP_EPARSE;
	if (rc == OP_OK && n && *len != n)
		rc = OP_EPARSE;
	if (rc) {
		op_free(*out);
		*out = NULL;
	}
	return rc == OP_ENOMEM ? rc : rc ? OP_EPARSE : OP_OK;
}

op_err op_unseal(const uint8_t priv[OP_SEAL_KEY_LEN], const uint8_t pub[OP_SEAL_KEY_LEN],
                 const char *aad, const cJSON *box, char **plain, size_t *len, char *why,
                 size_t whylen)
{
	*plain = NULL;
	*len = 0;
	const char *alg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(box, "alg"));
	if (!cJSON_IsObject(box) || alg == NULL || strcmp(alg, ALG) != 0)
		return op_errf(why, whylen, OP_EPARSE, "not a sealed box: expected alg \"%s\"",
		               ALG);
	char *epk = NULL, *nonce = NULL, *ct = NULL;
	size_t elen = 0, nlen = 0, clen = 0;
	op_err rc = b64_member(box, "epk", OP_SEAL_KEY_LEN, &epk, &elen);
	if (rc == OP_OK)
		rc = b64_member(box, "nonce", NONCE_LEN, &nonce, &nlen);
	if (rc == OP_OK)
		rc = b64_member(box, "ct", 0, &ct, &clen);
	if (rc == OP_OK && (clen < TAG_LEN || clen - TAG_LEN > OP_SEAL_MAX))
		rc = OP_EPARSE;
	char *out = NULL;
	uint8_t key[32];
	if (rc == OP_OK) {
		out = op_malloc(clen - TAG_LEN + 1);
		if (out == NULL)
			rc = OP_ENOMEM;
	}
	if (rc == OP_OK &&
	    box_key(priv, (const uint8_t *)epk, (const uint8_t *)epk, pub, key) != OP_OK)
		rc = OP_EAUTH; /* a point wolfSSL refuses: not for this key */
	else if (rc == OP_OK) {
		rc = gcm(false, key, (const uint8_t *)nonce, aad, (const uint8_t *)ct,
		         clen - TAG_LEN, (uint8_t *)out, (uint8_t *)ct + clen - TAG_LEN);
		explicit_bzero(key, sizeof(key));
	}
	op_free(epk);
	op_free(nonce);
	op_free(ct);
	if (rc) {
		if (out)
			explicit_bzero(out, clen - TAG_LEN);
		op_free(out);
		if (rc == OP_ENOMEM)
			return op_errf(why, whylen, rc, "out of memory");
		if (rc == OP_EAUTH)
			return op_errf(why, whylen, rc,
			               "the box does not open: sealed to another agent's key, for "
			               "another name, or changed");
		return op_errf(why, whylen, rc,
		               "not a sealed box: epk, nonce and ct must be base64 of 32 bytes, "
		               "12 bytes and the ciphertext with its tag");
	}
	out[clen - TAG_LEN] = '\0';
	*plain = out;
	*len = clen - TAG_LEN;
	return OP_OK;
}
