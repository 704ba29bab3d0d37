/*
 * JWT verification keys: loading them from config (HS256 shared secrets,
 * RS256 and ES256 public keys as PEM or JWK) and checking one JWS signature
 * with one key through wolfCrypt. Invariant: a loaded key holds only plain
 * bytes (secret, RSA n/e, P-256 x/y), already validated at load; a wolfCrypt
 * key object is built on the stack for each verification and freed before
 * returning, because wolfCrypt key objects are not safe to share between
 * threads and no wolfCrypt handle may leave this file.
 */
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/signature.h>

#include "agent/auth/jwt_int.h"
#include "agent/core/alloc.h"

#define PEM_MAX      16384
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192

static const char *const alg_names[] = {
    [OP_JWT_HS256] = "HS256",
    [OP_JWT_RS256] = "RS256",
    [OP_JWT_ES256] = "ES256",
};

const char *op_auth__jwt_alg_name(enum op_jwt_alg alg)
{
	return alg_names[alg];
}

bool op_auth__jwt_alg_parse(const char *s, enum op_jwt_alg *alg)
{
	for (size_t i = 0; i < OP_AUTH__N(alg_names); i++) {
		if (strcmp(s, alg_names[i]) == 0) {
			*alg = (enum op_jwt_alg)i;
			return true;
		}
	}
	return false;
}

void op_auth__jwt_key_fini(struct op_jwt_key *k)
{
	op_free(k->kid);
	if (k->secret)
		op_free_secret(k->secret, k->secretlen);
	op_free(k->n);
	memset(k, 0, sizeof(*k));
}

/* Public key bytes from PEM (SubjectPublicKeyInfo, or PKCS#1 for RSA). */
static op_err pem_to_der(const char *pem, unsigned char **der, int *dersz)
{
	size_t len = strlen(pem);
	*der = NULL;
	if (len == 0 || len > PEM_MAX)
		return OP_ECONFIG;
	unsigned char *buf = op_malloc(len);
	if (buf == NULL)
		return OP_ENOMEM;
	int n = wc_PubKeyPemToDer((const unsigned char *)pem, (int)len, buf, (int)len);
	if (n <= 0) {
		/* "-----BEGIN RSA PUBLIC KEY-----" (PKCS#1) */
		DerBuffer *db = NULL;
		if (wc_PemToDer((const unsigned char *)pem, (long)len, RSA_PUBLICKEY_TYPE, &db,
		                NULL, NULL, NULL) == 0 &&
		    db != NULL && db->length <= len) {
			memcpy(buf, db->buffer, db->length);
			n = (int)db->length;
		}
		wc_FreeDer(&db);
	}
	if (n <= 0) {
		op_free(buf);
		return OP_ECONFIG;
	}
	*der = buf;
	*dersz = n;
	return OP_OK;
}

static op_err rsa_store(struct op_jwt_key *k, RsaKey *rsa, char *err, size_t errlen)
{
	int bits = wc_RsaEncryptSize(rsa) * 8;
	if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
		op_auth__failc(OP_ECONFIG, err, errlen, "RSA key of %d bits; expected %d to %d",
		               bits, RSA_MIN_BITS, RSA_MAX_BITS);
		return OP_ECONFIG;
	}
	unsigned char n[RSA_MAX_BITS / 8], e[16];
	word32 nlen = sizeof(n), elen = sizeof(e);
	if (wc_RsaFlattenPublicKey(rsa, e, &elen, n, &nlen) != 0)
		return op_auth__failc(OP_ECONFIG, err, errlen, "cannot read the RSA public key");
	if ((k->n = op_malloc(nlen)) == NULL)
		return OP_ENOMEM;
	memcpy(k->n, n, nlen);
	k->nlen = nlen;
	memcpy(k->e, e, elen);
	k->elen = elen;
	k->sigsize = (size_t)bits / 8;
	return OP_OK;
}

static op_err ec_store(struct op_jwt_key *k, ecc_key *ec, char *err, size_t errlen)
{
	op_auth__ecc_thread_mark();
	if (ec->dp == NULL || ec->dp->id != ECC_SECP256R1)
		return op_auth__failc(OP_ECONFIG, err, errlen, "EC key is not on curve P-256");
	if (wc_ecc_check_key(ec) != 0)
		return op_auth__failc(OP_ECONFIG, err, errlen,
		                      "EC public key is not a valid point");
	word32 xl = sizeof(k->x), yl = sizeof(k->y);
	if (wc_ecc_export_public_raw(ec, k->x, &xl, k->y, &yl) != 0 || xl != 32 || yl != 32)
		return op_auth__failc(OP_ECONFIG, err, errlen, "cannot read the EC public key");
	k->sigsize = 64;
	return OP_OK;
}

op_err op_auth__jwt_key_pem(struct op_jwt_key *k, const char *pem, char *err, size_t errlen)
{
	unsigned char *der = NULL;
	int dersz = 0;
	op_err rc = pem_to_der(pem, &der, &dersz);
	if (rc != OP_OK)
		return op_auth__failc(rc, err, errlen,
		                      rc == OP_ENOMEM ? "out of memory"
		                                      : "not a PEM public key (\"-----BEGIN PUBLIC "
		                                        "KEY-----\")");
	word32 idx = 0;
	if (k->alg == OP_JWT_RS256) {
		RsaKey rsa;
		if (wc_InitRsaKey(&rsa, NULL) != 0) {
			rc = OP_EINTERNAL;
			goto out;
		}
		if (wc_RsaPublicKeyDecode(der, &idx, &rsa, (word32)dersz) != 0)
			rc = op_auth__failc(OP_ECONFIG, err, errlen,
			                    "PEM does not hold an RSA public key");
		else
			rc = rsa_store(k, &rsa, err, errlen);
		wc_FreeRsaKey(&rsa);
	} else {
		ecc_key ec;
		if (wc_ecc_init(&ec) != 0) {
			rc = OP_EINTERNAL;
			goto out;
		}
		if (wc_EccPublicKeyDecode(der, &idx, &ec, (word32)dersz) != 0)
			rc = op_auth__failc(OP_ECONFIG, err, errlen,
			                    "PEM does not hold an EC public key");
		else
			rc = ec_store(k, &ec, err, errlen);
		wc_ecc_free(&ec);
	}
out:
	op_free(der);
	return rc;
}

static bool jwk_bytes(const cJSON *jwk, const char *name, unsigned char *out, size_t cap,
                      size_t *len)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(jwk, name);
	return cJSON_IsString(v) &&
	       op_b64_decode(v->valuestring, strlen(v->valuestring), true, out, cap, len) &&
	       *len > 0;
}

op_err op_auth__jwt_key_jwk(struct op_jwt_key *k, const cJSON *jwk, char *err, size_t errlen)
{
	static const char *const private_members[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};
	for (size_t i = 0; i < OP_AUTH__N(private_members); i++) {
		if (cJSON_GetObjectItemCaseSensitive(jwk, private_members[i]))
			return op_auth__failc(
			    OP_ECONFIG, err, errlen,
			    "JWK holds private member \"%s\"; give the public key only",
			    private_members[i]);
	}
	const cJSON *kty = cJSON_GetObjectItemCaseSensitive(jwk, "kty");
	const char *want = k->alg == OP_JWT_RS256 ? "RSA" : "EC";
	if (!cJSON_IsString(kty) || strcmp(kty->valuestring, want) != 0)
		return op_auth__failc(OP_ECONFIG, err, errlen, "JWK for %s needs \"kty\": \"%s\"",
		                      op_auth__jwt_alg_name(k->alg), want);
	op_err rc = OP_OK;
	if (k->alg == OP_JWT_RS256) {
		unsigned char n[RSA_MAX_BITS / 8 + 1], e[16];
		size_t nl, el;
		if (!jwk_bytes(jwk, "n", n, sizeof(n), &nl) ||
		    !jwk_bytes(jwk, "e", e, sizeof(e), &el))
			return op_auth__failc(OP_ECONFIG, err, errlen,
			                      "JWK needs \"n\" and \"e\" in base64url");
		RsaKey rsa;
		if (wc_InitRsaKey(&rsa, NULL) != 0)
			return OP_EINTERNAL;
		if (wc_RsaPublicKeyDecodeRaw(n, (word32)nl, e, (word32)el, &rsa) != 0)
			rc = op_auth__failc(OP_ECONFIG, err, errlen, "JWK is not a valid RSA key");
		else
			rc = rsa_store(k, &rsa, err, errlen);
		wc_FreeRsaKey(&rsa);
		return rc;
	}
	const cJSON *crv = cJSON_GetObjectItemCaseSensitive(jwk, "crv");
	if (!cJSON_IsString(crv) || strcmp(crv->valuestring, "P-256") != 0)
		return op_auth__failc(OP_ECONFIG, err, errlen,
		                      "JWK for ES256 needs \"crv\": \"P-256\"");
	unsigned char x[33], y[33];
	size_t xl, yl;
	if (!jwk_bytes(jwk, "x", x, sizeof(x), &xl) || !jwk_bytes(jwk, "y", y, sizeof(y), &yl) ||
	    xl != 32 || yl != 32)
		return op_auth__failc(OP_ECONFIG, err, errlen,
		                      "JWK needs \"x\" and \"y\" of 32 bytes each in base64url");
	ecc_key ec;
	if (wc_ecc_init(&ec) != 0)
		return OP_EINTERNAL;
	if (wc_ecc_import_unsigned(&ec, x, y, NULL, ECC_SECP256R1) != 0)
		rc = op_auth__failc(OP_ECONFIG, err, errlen, "JWK is not a valid P-256 key");
	else
		rc = ec_store(k, &ec, err, errlen);
	wc_ecc_free(&ec);
	return rc;
}

op_err op_auth__jwt_key_verify(const struct op_jwt_key *k, const unsigned char *data, size_t len,
                               const unsigned char *sig, size_t siglen)
{
	if (siglen != k->sigsize)
		return OP_EAUTH;
	int r;
	if (k->alg == OP_JWT_HS256) {
		Hmac h;
		unsigned char mac[WC_SHA256_DIGEST_SIZE];
		if (wc_HmacInit(&h, NULL, INVALID_DEVID) != 0)
			return OP_EINTERNAL;
		r = wc_HmacSetKey(&h, WC_SHA256, k->secret, (word32)k->secretlen);
		if (r == 0)
			r = wc_HmacUpdate(&h, data, (word32)len);
		if (r == 0)
			r = wc_HmacFinal(&h, mac);
		wc_HmacFree(&h);
		if (r != 0)
			return r == MEMORY_E ? OP_ENOMEM : OP_EINTERNAL;
		bool eq = op_auth__ct_eq(mac, sig, sizeof(mac));
		explicit_bzero(mac, sizeof(mac));
		return eq ? OP_OK : OP_EAUTH;
	}
	if (k->alg == OP_JWT_RS256) {
		RsaKey rsa;
		if (wc_InitRsaKey(&rsa, NULL) != 0)
			return OP_EINTERNAL;
		r = wc_RsaPublicKeyDecodeRaw(k->n, (word32)k->nlen, k->e, (word32)k->elen, &rsa);
		if (r == 0)
			r = wc_SignatureVerify(WC_HASH_TYPE_SHA256, WC_SIGNATURE_TYPE_RSA_W_ENC,
			                       data, (word32)len, sig, (word32)siglen, &rsa,
			                       sizeof(rsa));
		wc_FreeRsaKey(&rsa);
	} else {
		/* JWS carries r||s (RFC 7518 3.4); wolfCrypt verifies DER. */
		unsigned char der[80];
		word32 derlen = sizeof(der);
		ecc_key ec;
		op_auth__ecc_thread_mark();
		if (wc_ecc_init(&ec) != 0)
			return OP_EINTERNAL;
		r = wc_ecc_import_unsigned(&ec, k->x, k->y, NULL, ECC_SECP256R1);
		if (r == 0)
			r = wc_ecc_rs_raw_to_sig(sig, 32, sig + 32, 32, der, &derlen);
		if (r == 0)
			r = wc_SignatureVerify(WC_HASH_TYPE_SHA256, WC_SIGNATURE_TYPE_ECC, data,
			                       (word32)len, der, derlen, &ec, sizeof(ec));
		wc_ecc_free(&ec);
	}
	if (r == MEMORY_E)
		return OP_ENOMEM;
	return r == 0 ? OP_OK : OP_EAUTH;
}
