/*
 * libFuzzer target for JWT verification: a verifier with HS256, RS256 and
 * ES256 keys (the public keys made at start-up with wolfCrypt) checks the
 * input as a bearer token. When the first byte is odd the rest is taken as
 * "header.payload" and signed here with the HS256 secret, so the fuzzer also
 * reaches the claim checks behind the signature. Nothing may crash or leak,
 * and OP_OK must come with claims, an error without.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include "agent/auth/auth.h"
#include "agent/auth/auth_int.h"
#include "agent/core/alloc.h"
#include "agent/core/diag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "fuzz-secret-fuzz-secret-fuzz-secret!"

static struct op_auth *verifier;
static const char *token;
static size_t token_len;

static bool get_header(void *ud, const char *name, const char **val, size_t *len)
{
	(void)ud;
	if (strcmp(name, "Authorization") != 0)
		return false;
	*val = token;
	*len = token_len;
	return true;
}

static void pem_json(int is_rsa, void *key, char *out, size_t cap)
{
	unsigned char der[2048];
	char pem[4096];
	int n = is_rsa ? wc_RsaKeyToPublicDer(key, der, sizeof(der))
	               : wc_EccPublicKeyToDer(key, der, sizeof(der), 1);
	int m =
	    n > 0 ? wc_DerToPem(der, (word32)n, (byte *)pem, sizeof(pem) - 1, PUBLICKEY_TYPE) : 0;
	if (m <= 0)
		abort();
	pem[m] = '\0';
	size_t o = 0;
	out[o++] = '"';
	for (int i = 0; i < m && o + 3 < cap; i++) {
		if (pem[i] == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = pem[i];
		}
	}
	out[o++] = '"';
	out[o] = '\0';
}

static void init(void)
{
	op_alloc_init();
	WC_RNG rng;
	RsaKey rsa;
	ecc_key ec;
	char rpem[4096], epem[1024], cfg[8192];
	if (wc_InitRng(&rng) || wc_InitRsaKey(&rsa, NULL) ||
	    wc_MakeRsaKey(&rsa, 2048, 65537, &rng) || wc_ecc_init(&ec) ||
	    wc_ecc_make_key(&rng, 32, &ec))
		abort();
	pem_json(1, &rsa, rpem, sizeof(rpem));
	pem_json(0, &ec, epem, sizeof(epem));
	snprintf(cfg, sizeof(cfg),
	         "{\"type\":\"jwt\",\"audience\":[\"a\",\"b\"],\"issuer\":\"i\",\"max_age\":3600,"
	         "\"keys\":[{\"kid\":\"h\",\"alg\":\"HS256\",\"secret\":\"" SECRET "\"},"
	         "{\"kid\":\"r\",\"alg\":\"RS256\",\"pem\":%s},{\"alg\":\"ES256\",\"pem\":%s}]}",
	         rpem, epem);
	cJSON *c = cJSON_Parse(cfg);
	struct op_diag d;
	op_diag_init(&d);
	if (c == NULL || op_auth_compile(c, &d, &verifier) != OP_OK)
		abort();
	op_diag_fini(&d);
	cJSON_Delete(c);
	wc_FreeRsaKey(&rsa);
	wc_ecc_free(&ec);
	wc_FreeRng(&rng);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (verifier == NULL)
		init();
	if (size < 1 || size > 70000)
		return 0;
	char *buf = malloc(size + 64);
	if (buf == NULL)
		return 0;
	snprintf(buf, size + 64, "Bearer ");
	memcpy(buf + 7, data + 1, size - 1);
	size_t len = 7 + size - 1;
	if (data[0] & 1) {
		unsigned char mac[32];
		Hmac h;
		if (wc_HmacInit(&h, NULL, INVALID_DEVID) ||
		    wc_HmacSetKey(&h, WC_SHA256, (const byte *)SECRET, sizeof(SECRET) - 1) ||
		    wc_HmacUpdate(&h, (const byte *)buf + 7, (word32)(size - 1)) ||
		    wc_HmacFinal(&h, mac))
			abort();
		wc_HmacFree(&h);
		buf[len++] = '.';
		len += op_b64_encode(mac, sizeof(mac), true, buf + len, 64 - 1);
	}
	token = buf;
	token_len = len;
	struct op_auth_request req = {.header = get_header, .now = 1795000000};
	cJSON *claims = NULL;
	char why[OP_AUTH_WHY_MAX];
	op_err rc = op_auth_check(verifier, &req, &claims, why, sizeof(why));
	if ((rc == OP_OK) != (claims != NULL) || strlen(why) >= sizeof(why))
		abort();
	if (rc != OP_OK && rc != OP_EAUTH && rc != OP_ENOMEM)
		abort();
	cJSON_Delete(claims);
	free(buf);
	return 0;
}
