/*
 * Unit tests of agent/auth: API keys, HTTP Basic with PBKDF2 and its cache,
 * and JWT (HS256, RS256, ES256). RSA and EC keys are made at test time with
 * wolfCrypt and tokens are signed here, so no outside tooling is needed.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/signature.h>

#include "agent/auth/auth.h"
#include "agent/auth/auth_int.h"
#include "agent/core/diag.h"
#include "tests/unit/test.h"

#define NOW    1795000000 /* 2026-11-18 */
#define SECRET "0123456789abcdef0123456789abcdef-hs"

static WC_RNG rng;
static RsaKey rsa1, rsa2;
static ecc_key ec1, ec2;
static char rsa1_pem[2048], ec1_pem[512], ec2_pem[512];
static char rsa1_n[400], rsa1_e[16], ec1_x[64], ec1_y[64];

/* ---- helpers ---- */

struct hdrs {
	const char *name[4];
	const char *val[4];
};

static bool get_header(void *ud, const char *name, const char **val, size_t *len)
{
	const struct hdrs *h = ud;
	for (int i = 0; i < 4 && h->name[i]; i++) {
		if (strcasecmp(h->name[i], name) == 0) {
			*val = h->val[i];
			*len = strlen(h->val[i]);
			return true;
		}
	}
	return false;
}

static op_err check1(const struct op_auth *a, const char *name, const char *val, cJSON **claims,
                     char *why)
{
	struct hdrs h = {{name}, {val}};
	struct op_auth_request req = {.header = get_header, .ud = &h, .now = NOW};
	return op_auth_check(a, &req, claims, why, OP_AUTH_WHY_MAX);
}

static struct op_auth *compile_ok(const char *text)
{
	cJSON *c = op_test_json(text);
	struct op_diag d;
	op_diag_init(&d);
	struct op_auth *a = NULL;
	op_err e = op_auth_compile(c, &d, &a);
	if (e != OP_OK && d.n)
		ck_abort_msg("compile: %s: %s", d.v[0].path, d.v[0].msg);
	ck_assert_int_eq(e, OP_OK);
	op_diag_fini(&d);
	cJSON_Delete(c);
	return a;
}

/* Compiles text expecting a failure whose first problem is at path and mentions msg. */
static void compile_bad(const char *text, const char *path, const char *msg)
{
	cJSON *c = op_test_json(text);
	struct op_diag d;
	op_diag_init(&d);
	struct op_auth *a = NULL;
	ck_assert_int_eq(op_auth_compile(c, &d, &a), OP_ECONFIG);
	ck_assert_ptr_null(a);
	ck_assert_uint_ge(d.n, 1);
	ck_assert_str_eq(d.v[0].path, path);
	if (strstr(d.v[0].msg, msg) == NULL)
		ck_abort_msg("message \"%s\" lacks \"%s\"", d.v[0].msg, msg);
	op_diag_fini(&d);
	cJSON_Delete(c);
}

static void b64url(const void *p, size_t n, char *out, size_t cap)
{
	ck_assert_uint_gt(op_b64_encode(p, n, true, out, cap), 0);
}

enum talg { T_HS, T_RS, T_ES };

/* Signs header.payload; key is the secret (T_HS), RsaKey * or ecc_key *. */
static char *sign(enum talg alg, const void *key, size_t keylen, const char *header,
                  const char *payload)
{
	static char out[16384];
	char h[4096], p[8192], s[1024];
	b64url(header, strlen(header), h, sizeof(h));
	b64url(payload, strlen(payload), p, sizeof(p));
	snprintf(out, sizeof(out), "%s.%s", h, p);
	unsigned char sig[1024];
	word32 sl = sizeof(sig);
	if (alg == T_HS) {
		Hmac m;
		ck_assert_int_eq(wc_HmacInit(&m, NULL, INVALID_DEVID), 0);
		ck_assert_int_eq(wc_HmacSetKey(&m, WC_SHA256, key, (word32)keylen), 0);
		ck_assert_int_eq(wc_HmacUpdate(&m, (const byte *)out, (word32)strlen(out)), 0);
		ck_assert_int_eq(wc_HmacFinal(&m, sig), 0);
		wc_HmacFree(&m);
		sl = 32;
	} else if (alg == T_RS) {
		ck_assert_int_eq(wc_SignatureGenerate(WC_HASH_TYPE_SHA256,
		                                      WC_SIGNATURE_TYPE_RSA_W_ENC,
		                                      (const byte *)out, (word32)strlen(out), sig,
		                                      &sl, key, sizeof(RsaKey), &rng),
		                 0);
	} else {
		unsigned char der[128], r[32], ss[32];
		word32 dl = sizeof(der), rl = 32, sl2 = 32;
		ck_assert_int_eq(wc_SignatureGenerate(WC_HASH_TYPE_SHA256, WC_SIGNATURE_TYPE_ECC,
		                                      (const byte *)out, (word32)strlen(out), der,
		                                      &dl, key, sizeof(ecc_key), &rng),
		                 0);
		ck_assert_int_eq(wc_ecc_sig_to_rs(der, dl, r, &rl, ss, &sl2), 0);
		memset(sig, 0, 64);
		memcpy(sig + 32 - rl, r, rl);
		memcpy(sig + 64 - sl2, ss, sl2);
		sl = 64;
	}
	b64url(sig, sl, s, sizeof(s));
	size_t n = strlen(out);
	snprintf(out + n, sizeof(out) - n, ".%s", s);
	return out;
}

static char *bearer(const char *tok)
{
	static char b[20000];
	snprintf(b, sizeof(b), "Bearer %s", tok);
	return b;
}

static void pem_of(int is_rsa, void *key, char *out, size_t cap)
{
	unsigned char der[2048];
	int n = is_rsa ? wc_RsaKeyToPublicDer(key, der, sizeof(der))
	               : wc_EccPublicKeyToDer(key, der, sizeof(der), 1);
	ck_assert_int_gt(n, 0);
	int m = wc_DerToPem(der, (word32)n, (byte *)out, (word32)cap - 1, PUBLICKEY_TYPE);
	ck_assert_int_gt(m, 0);
	out[m] = '\0';
}

/* JSON string literal of s (newlines escaped). */
static const char *jstr(const char *s)
{
	static char buf[4][4096];
	static int k;
	char *o = buf[k++ % 4];
	size_t j = 0;
	o[j++] = '"';
	for (; *s; s++) {
		if (*s == '\n') {
			o[j++] = '\\';
			o[j++] = 'n';
		} else {
			o[j++] = *s;
		}
	}
	o[j++] = '"';
	o[j] = '\0';
	return o;
}

static void keys_setup(void)
{
	op_alloc_init();
	ck_assert_int_eq(wc_InitRng(&rng), 0);
	ck_assert_int_eq(wc_InitRsaKey(&rsa1, NULL), 0);
	ck_assert_int_eq(wc_InitRsaKey(&rsa2, NULL), 0);
	ck_assert_int_eq(wc_MakeRsaKey(&rsa1, 2048, 65537, &rng), 0);
	ck_assert_int_eq(wc_MakeRsaKey(&rsa2, 2048, 65537, &rng), 0);
	ck_assert_int_eq(wc_ecc_init(&ec1), 0);
	ck_assert_int_eq(wc_ecc_init(&ec2), 0);
	ck_assert_int_eq(wc_ecc_make_key(&rng, 32, &ec1), 0);
	ck_assert_int_eq(wc_ecc_make_key(&rng, 32, &ec2), 0);
	pem_of(1, &rsa1, rsa1_pem, sizeof(rsa1_pem));
	pem_of(0, &ec1, ec1_pem, sizeof(ec1_pem));
	pem_of(0, &ec2, ec2_pem, sizeof(ec2_pem));
	unsigned char n[512], e[8], x[32], y[32];
	word32 nl = sizeof(n), el = sizeof(e), xl = 32, yl = 32;
	ck_assert_int_eq(wc_RsaFlattenPublicKey(&rsa1, e, &el, n, &nl), 0);
	b64url(n, nl, rsa1_n, sizeof(rsa1_n));
	b64url(e, el, rsa1_e, sizeof(rsa1_e));
	ck_assert_int_eq(wc_ecc_export_public_raw(&ec1, x, &xl, y, &yl), 0);
	b64url(x, xl, ec1_x, sizeof(ec1_x));
	b64url(y, yl, ec1_y, sizeof(ec1_y));
}

static void keys_teardown(void)
{
	wc_FreeRsaKey(&rsa1);
	wc_FreeRsaKey(&rsa2);
	wc_ecc_free(&ec1);
	wc_ecc_free(&ec2);
	wc_FreeRng(&rng);
}

#define STD_CLAIMS "{\"sub\":\"erp\",\"iss\":\"idp\",\"aud\":\"outpost\",\"exp\":1795000600}"

static struct op_auth *jwt_all(void)
{
	char cfg[8192];
	snprintf(cfg, sizeof(cfg),
	         "{\"type\":\"jwt\",\"audience\":[\"outpost\",\"other\"],\"issuer\":\"idp\","
	         "\"leeway\":30,\"keys\":["
	         "{\"kid\":\"h\",\"alg\":\"HS256\",\"secret\":\"%s\"},"
	         "{\"kid\":\"r\",\"alg\":\"RS256\",\"pem\":%s},"
	         "{\"kid\":\"rj\",\"alg\":\"RS256\",\"jwk\":{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%"
	         "s\"}},"
	         "{\"kid\":\"e\",\"alg\":\"ES256\",\"pem\":%s},"
	         "{\"alg\":\"ES256\",\"jwk\":{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ej\","
	         "\"x\":\"%s\",\"y\":\"%s\"}},"
	         "{\"kid\":\"e2\",\"alg\":\"ES256\",\"pem\":%s}]}",
	         SECRET, jstr(rsa1_pem), rsa1_n, rsa1_e, jstr(ec1_pem), ec1_x, ec1_y,
	         jstr(ec2_pem));
	return compile_ok(cfg);
}

static op_err jwt_try(const struct op_auth *a, const char *tok, char *why)
{
	cJSON *c = NULL;
	op_err e = check1(a, "Authorization", bearer(tok), &c, why);
	if (e == OP_OK) {
		ck_assert_ptr_nonnull(c);
		ck_assert_str_eq(cJSON_GetObjectItem(c, "sub")->valuestring, "erp");
	} else {
		ck_assert_ptr_null(c);
	}
	cJSON_Delete(c);
	return e;
}

#define ck_fails_with(e, why, text)                                                \
	do {                                                                       \
		ck_assert_int_eq((e), OP_EAUTH);                                   \
		if (strstr((why), (text)) == NULL)                                 \
			ck_abort_msg("reason \"%s\" lacks \"%s\"", (why), (text)); \
	} while (0)

/* ---- JWT ---- */

START_TEST(jwt_valid_each_alg)
{
	struct op_auth *a = jwt_all();
	char why[OP_AUTH_WHY_MAX];
	ck_assert_str_eq(op_auth_challenge(a), "Bearer");
	ck_assert_int_eq(jwt_try(a,
	                         sign(T_HS, SECRET, strlen(SECRET),
	                              "{\"alg\":\"HS256\",\"kid\":\"h\"}", STD_CLAIMS),
	                         why),
	                 OP_OK);
	ck_assert_str_eq(why, "");
	ck_assert_int_eq(
	    jwt_try(a, sign(T_RS, &rsa1, 0, "{\"alg\":\"RS256\",\"kid\":\"r\"}", STD_CLAIMS), why),
	    OP_OK);
	ck_assert_int_eq(
	    jwt_try(a, sign(T_RS, &rsa1, 0, "{\"alg\":\"RS256\",\"kid\":\"rj\"}", STD_CLAIMS), why),
	    OP_OK);
	ck_assert_int_eq(
	    jwt_try(a, sign(T_ES, &ec1, 0, "{\"alg\":\"ES256\",\"kid\":\"e\"}", STD_CLAIMS), why),
	    OP_OK);
	ck_assert_int_eq(
	    jwt_try(a, sign(T_ES, &ec1, 0, "{\"alg\":\"ES256\",\"kid\":\"ej\"}", STD_CLAIMS), why),
	    OP_OK);
	/* No kid: every key of the algorithm is tried. */
	ck_assert_int_eq(jwt_try(a, sign(T_ES, &ec2, 0, "{\"alg\":\"ES256\"}", STD_CLAIMS), why),
	                 OP_OK);
	/* Claims are returned whole. */
	cJSON *c = NULL;
	ck_assert_int_eq(
	    check1(a, "authorization",
	           bearer(sign(T_HS, SECRET, strlen(SECRET), "{\"alg\":\"HS256\"}", STD_CLAIMS)),
	           &c, why),
	    OP_OK);
	ck_assert_json_text(c, STD_CLAIMS);
	cJSON_Delete(c);
	op_auth_free(a);
}
END_TEST

START_TEST(jwt_bad_signatures)
{
	struct op_auth *a = jwt_all();
	char why[OP_AUTH_WHY_MAX], tok[16384];
	/* Tampered payload: swap in another payload segment, keep the signature. */
	snprintf(tok, sizeof(tok), "%s",
	         sign(T_RS, &rsa1, 0, "{\"alg\":\"RS256\",\"kid\":\"r\"}", STD_CLAIMS));
	char other[16384];
	snprintf(other, sizeof(other), "%s",
	         sign(T_RS, &rsa1, 0, "{\"alg\":\"RS256\",\"kid\":\"r\"}",
	              "{\"sub\":\"erp\",\"iss\":\"idp\",\"aud\":\"outpost\",\"exp\":1795000601,"
	              "\"admin\":true}"));
	char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
	char *o1 = strchr(other, '.'), *o2 = strrchr(other, '.');
	char mixed[16384];
	snprintf(mixed, sizeof(mixed), "%.*s%.*s%s", (int)(d1 - tok), tok, (int)(o2 - o1), o1, d2);
	ck_fails_with(jwt_try(a, mixed, why), why, "signature does not verify");
	/* Wrong keys. */
	ck_fails_with(
	    jwt_try(a, sign(T_RS, &rsa2, 0, "{\"alg\":\"RS256\",\"kid\":\"r\"}", STD_CLAIMS), why),
	    why, "signature does not verify");
	ck_fails_with(
	    jwt_try(a, sign(T_ES, &ec2, 0, "{\"alg\":\"ES256\",\"kid\":\"e\"}", STD_CLAIMS), why),
	    why, "signature does not verify");
	ck_fails_with(jwt_try(a,
	                      sign(T_HS, "wrong-secret-wrong-secret-wrong!!", 33,
	                           "{\"alg\":\"HS256\"}", STD_CLAIMS),
	                      why),
	              why, "signature does not verify");
	/* A flipped bit in an ES256 signature. */
	snprintf(tok, sizeof(tok), "%s",
	         sign(T_ES, &ec1, 0, "{\"alg\":\"ES256\",\"kid\":\"e\"}", STD_CLAIMS));
	char *last = tok + strlen(tok) - 3;
	*last = *last == 'A' ? 'B' : 'A';
	ck_fails_with(jwt_try(a, tok, why), why, "signature does not verify");
	op_auth_free(a);
}
END_TEST

START_TEST(jwt_alg_none_and_confusion)
{
	char why[OP_AUTH_WHY_MAX], cfg[4096];
	snprintf(cfg, sizeof(cfg),
	         "{\"type\":\"jwt\",\"keys\":[{\"kid\":\"r\",\"alg\":\"RS256\",\"pem\":%s}]}",
	         jstr(rsa1_pem));
	struct op_auth *a = compile_ok(cfg);
	/* An HS256 token whose secret is the RSA public key PEM text. */
	const char *hs =
	    sign(T_HS, rsa1_pem, strlen(rsa1_pem), "{\"alg\":\"HS256\",\"kid\":\"r\"}", STD_CLAIMS);
	ck_fails_with(jwt_try(a, hs, why), why, "alg 'HS256' not accepted (configured: RS256)");
	char none[1024], h[128], p[512];
	b64url("{\"alg\":\"none\"}", 14, h, sizeof(h));
	b64url(STD_CLAIMS, strlen(STD_CLAIMS), p, sizeof(p));
	snprintf(none, sizeof(none), "%s.%s.AAAA", h, p);
	ck_fails_with(jwt_try(a, none, why), why, "alg none");
	snprintf(none, sizeof(none), "%s.%s.", h, p);
	ck_fails_with(jwt_try(a, none, why), why, "empty segment");
	b64url("{\"alg\":\"NoNe\"}", 14, h, sizeof(h));
	snprintf(none, sizeof(none), "%s.%s.AAAA", h, p);
	ck_fails_with(jwt_try(a, none, why), why, "alg none");
	op_auth_free(a);
	/* With HS256 configured too, a kid naming the RSA key still cannot use it as a secret. */
	a = jwt_all();
	ck_fails_with(jwt_try(a, hs, why), why, "key 'r' is for RS256, token says HS256");
	hs = sign(T_HS, rsa1_pem, strlen(rsa1_pem), "{\"alg\":\"HS256\"}", STD_CLAIMS);
	ck_fails_with(jwt_try(a, hs, why), why, "signature does not verify");
	op_auth_free(a);
}
END_TEST

START_TEST(jwt_claims)
{
	struct op_auth *a = jwt_all();
	char why[OP_AUTH_WHY_MAX];
	struct {
		const char *payload;
		const char *reason; /* NULL: accepted */
	} cases[] = {
	    /* leeway 30: exp 29 s ago is fine, 30 s ago is not */
	    {"{\"sub\":\"erp\",\"iss\":\"idp\",\"aud\":\"outpost\",\"exp\":1794999971}", NULL},
	    {"{\"sub\":\"erp\",\"iss\":\"idp\",\"aud\":\"outpost\",\"exp\":1794999970}",
	     "token expired at 2026-11-18T"},
	    {"{\"sub\":\"erp\",\"iss\":\"idp\",\"aud\":\"outpost\",\"exp\":1795000600,\"nbf\":"
	     "1795000030}",
	     NULL},
	    {"{\"sub\":\"erp\",\"iss\":\"idp\",\"aud\":\"outpost\",\"exp\":1795000600,\"nbf\":"
	     "1795000031}",
	     "token not valid before"},
	    {"{\"sub\":\"erp\",\"iss\":\"idp\",\"aud\":\"outpost\",\"exp\":1795000600,\"iat\":"
	     "1795000100}",
	     "issued in the future"},
	    {"{\"sub\":\"erp\",\"iss\":\"idp\",\"aud\":\"outpost\",\"exp\":\"soon\"}",
	     "\"exp\" is not a number"},
	    {"{\"sub\":\"erp\",\"iss\":\"idp\",\"aud\":\"outpost\"}", "no \"exp\""},
	    {"{\"sub\":\"erp\",\"iss\":\"idp\",\"aud\":\"x\",\"exp\":1795000600}",
	     "audience 'x' not accepted"},
	    {"{\"sub\":\"erp\",\"iss\":\"idp\",\"aud\":[\"x\",\"other\"],\"exp\":1795000600}",
	     NULL},
	    {"{\"sub\":\"erp\",\"iss\":\"idp\",\"aud\":[\"x\",\"y\"],\"exp\":1795000600}",
	     "audience 'x'"},
	    {"{\"sub\":\"erp\",\"iss\":\"idp\",\"exp\":1795000600}", "no audience"},
	    {"{\"sub\":\"erp\",\"iss\":\"evil\",\"aud\":\"outpost\",\"exp\":1795000600}",
	     "issuer 'evil' not accepted"},
	    {"{\"sub\":\"erp\",\"aud\":\"outpost\",\"exp\":1795000600}", "no issuer"},
	    {"{\"sub\":\"erp\",\"iss\":\"idp\\u0000x\",\"aud\":\"outpost\",\"exp\":1795000600}",
	     "NUL"},
	    {"{\"sub\":\"erp\",\"sub\":\"root\",\"iss\":\"idp\",\"aud\":\"outpost\",\"exp\":"
	     "1795000600}",
	     "repeats"},
	    {"[1,2]", "not a JSON object"},
	    {"{\"sub\":", "not valid JSON"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		op_err e = jwt_try(
		    a, sign(T_HS, SECRET, strlen(SECRET), "{\"alg\":\"HS256\"}", cases[i].payload),
		    why);
		if (cases[i].reason == NULL) {
			if (e != OP_OK)
				ck_abort_msg("case %zu refused: %s", i, why);
		} else {
			ck_fails_with(e, why, cases[i].reason);
		}
	}
	op_auth_free(a);
	/* The exact expiry time in the reason. */
	a = compile_ok(
	    "{\"type\":\"jwt\",\"leeway\":0,\"keys\":[{\"alg\":\"HS256\",\"secret\":\"" SECRET
	    "\"}]}");
	ck_fails_with(jwt_try(a,
	                      sign(T_HS, SECRET, strlen(SECRET), "{\"alg\":\"HS256\"}",
	                           "{\"exp\":1794823200}"),
	                      why),
	              why, "token expired at 2026-11-16T10:00:00Z");
	op_auth_free(a);
}
END_TEST

START_TEST(jwt_malformed)
{
	struct op_auth *a = jwt_all();
	char why[OP_AUTH_WHY_MAX], tok[20000];
	const char *good = sign(T_HS, SECRET, strlen(SECRET), "{\"alg\":\"HS256\"}", STD_CLAIMS);
	ck_assert_int_eq(jwt_try(a, good, why), OP_OK);
	struct {
		const char *tok;
		const char *reason;
	} cases[] = {
	    {"abc", "three segments"},
	    {"a.b", "three segments"},
	    {"a.b.c.d", "three segments"},
	    {".b.c", "empty segment"},
	    {"e30.e30.A", "base64url"},     /* length 1 mod 4 */
	    {"e30=.e30.AAAA", "base64url"}, /* padding */
	    {"e3+.e30.AAAA", "base64url"},  /* standard alphabet */
	    {"e31.e30.AAAA", "base64url"},  /* non-zero unused bits */
	    {"bm90IGpzb24.e30.AAAA", "header is not valid JSON"},
	    {"WzFd.e30.AAAA", "header is not a JSON object"},
	    {"e30.e30.AAAA", "no \"alg\""},
	    {"eyJhbGciOiJIUzI1NiIsImFsZyI6Im5vbmUifQ.e30.AAAA", "repeats"},
	    {"eyJhbGciOiJQUzI1NiJ9.e30.AAAA", "alg 'PS256' not accepted"},
	    {"eyJhbGciOiJIUzI1NiIsImNyaXQiOlsieCJdfQ.e30.AAAA", "crit"},
	    {"eyJhbGciOiJIUzI1NiIsImtpZCI6Im5vcGUifQ.e30.AAAA", "no key with kid 'nope'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_fails_with(jwt_try(a, cases[i].tok, why), why, cases[i].reason);
	/* Oversized: over the default 8 KiB limit. */
	memset(tok, 'A', 9000);
	tok[9000] = '\0';
	tok[10] = '.';
	tok[20] = '.';
	ck_fails_with(jwt_try(a, tok, why), why, "over the 8192-byte limit");
	/* Wrong scheme and missing header. */
	ck_fails_with(check1(a, "Authorization", "Basic abc", NULL, why), why, "scheme Bearer");
	ck_fails_with(check1(a, "X-Other", "x", NULL, why), why, "no Authorization header");
	op_auth_free(a);
}
END_TEST

START_TEST(jwt_kid_selection)
{
	struct op_auth *a = jwt_all();
	char why[OP_AUTH_WHY_MAX];
	ck_assert_int_eq(
	    jwt_try(a, sign(T_ES, &ec2, 0, "{\"alg\":\"ES256\",\"kid\":\"e2\"}", STD_CLAIMS), why),
	    OP_OK);
	/* Named key is the only one tried, even though another key would verify. */
	ck_fails_with(
	    jwt_try(a, sign(T_ES, &ec2, 0, "{\"alg\":\"ES256\",\"kid\":\"e\"}", STD_CLAIMS), why),
	    why, "signature does not verify");
	ck_fails_with(
	    jwt_try(a, sign(T_ES, &ec2, 0, "{\"alg\":\"ES256\",\"kid\":\"zz\"}", STD_CLAIMS), why),
	    why, "no key with kid 'zz'");
	ck_fails_with(
	    jwt_try(a, sign(T_ES, &ec2, 0, "{\"alg\":\"ES256\",\"kid\":7}", STD_CLAIMS), why), why,
	    "not a string");
	op_auth_free(a);
}
END_TEST

START_TEST(jwt_config_errors)
{
	compile_bad("{\"type\":\"jwt\",\"keys\":[{\"alg\":\"HS256\",\"secret\":\"short\"}]}",
	            "keys[0].secret", "at least 32");
	compile_bad("{\"type\":\"jwt\",\"keys\":[{\"alg\":\"none\",\"secret\":\"" SECRET "\"}]}",
	            "keys[0].alg", "unknown value");
	compile_bad("{\"type\":\"jwt\",\"keys\":[{\"alg\":\"RS256\",\"pem\":\"junk\"}]}",
	            "keys[0].pem", "not a PEM public key");
	compile_bad("{\"type\":\"jwt\",\"keys\":[{\"alg\":\"RS256\",\"secret\":\"" SECRET "\"}]}",
	            "keys[0].secret", "takes a public key");
	compile_bad("{\"type\":\"jwt\",\"keys\":[{\"alg\":\"ES256\",\"jwk\":{\"kty\":\"EC\","
	            "\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\",\"d\":\"AA\"}}]}",
	            "keys[0].jwk", "private member \"d\"");
	compile_bad(
	    "{\"type\":\"jwt\",\"leeway\":9999,\"keys\":[{\"alg\":\"HS256\",\"secret\":\"" SECRET
	    "\"}]}",
	    "leeway", "out of range");
	compile_bad("{\"type\":\"jwt\",\"keys\":[{\"alg\":\"HS256\",\"secret\":\"" SECRET
	            "\",\"colour\":1}]}",
	            "keys[0].colour", "unknown key");
	compile_bad(
	    "{\"type\":\"jwt\",\"audience\":[1],\"keys\":[{\"alg\":\"HS256\",\"secret\":\"" SECRET
	    "\"}]}",
	    "audience[0]", "expected a string");
	compile_bad("{\"type\":\"jwt\",\"keys\":[]}", "keys", "at least one");
	char cfg[4096];
	/* An EC key offered for RS256. */
	snprintf(cfg, sizeof(cfg), "{\"type\":\"jwt\",\"keys\":[{\"alg\":\"RS256\",\"pem\":%s}]}",
	         jstr(ec1_pem));
	compile_bad(cfg, "keys[0].pem", "RSA");
	snprintf(cfg, sizeof(cfg),
	         "{\"type\":\"jwt\",\"keys\":[{\"kid\":\"a\",\"alg\":\"ES256\",\"pem\":%s},"
	         "{\"kid\":\"a\",\"alg\":\"ES256\",\"pem\":%s}]}",
	         jstr(ec1_pem), jstr(ec2_pem));
	compile_bad(cfg, "keys[1].kid", "used by keys[0]");
	compile_bad("{\"type\":\"bearer\"}", "type", "unknown value");
	compile_bad("[]", "", "expected an object");
}
END_TEST

/* ---- API keys ---- */

START_TEST(apikey_checks)
{
	char h1[80], h2[80], cfg[512], why[OP_AUTH_WHY_MAX];
	ck_assert_int_eq(op_auth_hash_apikey("k-one-0123456789", 16, h1, sizeof(h1)), OP_OK);
	ck_assert_int_eq(op_auth_hash_apikey("k-two-0123456789", 16, h2, sizeof(h2)), OP_OK);
	/* printf %s abc | sha256sum */
	char abc[80];
	ck_assert_int_eq(op_auth_hash_apikey("abc", 3, abc, sizeof(abc)), OP_OK);
	ck_assert_str_eq(abc,
	                 "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	snprintf(cfg, sizeof(cfg),
	         "{\"type\":\"apikey\",\"keys\":[{\"name\":\"erp\",\"hash\":\"%s\"},"
	         "{\"name\":\"crm\",\"hash\":\"%s\"}]}",
	         h1, h2);
	struct op_auth *a = compile_ok(cfg);
	cJSON *c = NULL;
	ck_assert_int_eq(check1(a, "x-api-key", "k-two-0123456789", &c, why), OP_OK);
	ck_assert_json_text(c, "{\"type\":\"apikey\",\"key\":\"crm\"}");
	cJSON_Delete(c);
	ck_fails_with(check1(a, "X-API-Key", "k-two-012345678", &c, why), why, "not accepted");
	ck_assert_ptr_null(c);
	ck_fails_with(check1(a, "X-API-Key", "", &c, why), why, "empty");
	ck_fails_with(check1(a, "Authorization", "Bearer k-two-0123456789", &c, why), why,
	              "no X-API-Key header");
	op_auth_free(a);
	snprintf(cfg, sizeof(cfg),
	         "{\"type\":\"apikey\",\"scheme\":\"Bearer\",\"keys\":[{\"name\":\"erp\",\"hash\":"
	         "\"%s\"}]}",
	         h1);
	a = compile_ok(cfg);
	ck_assert_int_eq(check1(a, "Authorization", "bearer  k-one-0123456789", NULL, why), OP_OK);
	ck_fails_with(check1(a, "Authorization", "ApiKey k-one-0123456789", NULL, why), why,
	              "not of scheme Bearer");
	ck_fails_with(check1(a, "X-API-Key", "k-one-0123456789", NULL, why), why,
	              "no Authorization header");
	op_auth_free(a);
	compile_bad("{\"type\":\"apikey\",\"keys\":[{\"name\":\"erp\",\"hash\":\"k-one\"}]}",
	            "keys[0].hash", "sha256sum");
	snprintf(cfg, sizeof(cfg),
	         "{\"type\":\"apikey\",\"header\":\"X-Key\",\"scheme\":\"ApiKey\",\"keys\":[{"
	         "\"name\":\"erp\","
	         "\"hash\":\"%s\"}]}",
	         h1);
	compile_bad(cfg, "header", "not both");
}
END_TEST

/* ---- Basic ---- */

static char *basic_cfg(const char *extra)
{
	static char cfg[1024];
	char *h1 = NULL, *h2 = NULL;
	ck_assert_int_eq(op_auth_hash_password("s3cret:pw", 9, 10000, &h1), OP_OK);
	ck_assert_int_eq(op_auth_hash_password("other", 5, 10000, &h2), OP_OK);
	ck_assert(strncmp(h1, "pbkdf2-sha256$10000$", 20) == 0);
	snprintf(cfg, sizeof(cfg),
	         "{\"type\":\"basic\",%s\"users\":[{\"name\":\"alice\",\"hash\":\"%s\"},"
	         "{\"name\":\"bob\",\"hash\":\"%s\"}]}",
	         extra, h1, h2);
	op_free(h1);
	op_free(h2);
	return cfg;
}

/* Per thread: threads_verify_concurrently's workers build theirs at once
 * (a shared buffer showed one thread another's half-written header). */
static const char *basic_hdr(const char *userpass)
{
	static _Thread_local char b[512];
	snprintf(b, sizeof(b), "Basic ");
	ck_assert_uint_gt(op_b64_encode((const unsigned char *)userpass, strlen(userpass), false,
	                                b + 6, sizeof(b) - 6),
	                  0);
	return b;
}

START_TEST(basic_checks)
{
	struct op_auth *a = compile_ok(basic_cfg(""));
	char why[OP_AUTH_WHY_MAX];
	cJSON *c = NULL;
	ck_assert_str_eq(op_auth_challenge(a), "Basic realm=\"outpost\", charset=\"UTF-8\"");
	ck_assert_int_eq(check1(a, "Authorization", basic_hdr("alice:s3cret:pw"), &c, why), OP_OK);
	ck_assert_json_text(c, "{\"type\":\"basic\",\"user\":\"alice\"}");
	cJSON_Delete(c);
	/* A cached success does not let a wrong password in. */
	ck_fails_with(check1(a, "Authorization", basic_hdr("alice:s3cret:pX"), NULL, why), why,
	              "wrong password for user \"alice\"");
	ck_fails_with(check1(a, "Authorization", basic_hdr("bob:s3cret:pw"), NULL, why), why,
	              "wrong password");
	ck_fails_with(check1(a, "Authorization", basic_hdr("carol:x"), NULL, why), why,
	              "unknown user \"carol\"");
	ck_fails_with(check1(a, "Authorization", basic_hdr("alice"), NULL, why), why, "no ':'");
	ck_fails_with(check1(a, "Authorization", "Basic YWxpY2U6eA", NULL, why), why, "base64");
	ck_fails_with(check1(a, "Authorization", "Basic !!!!", NULL, why), why, "base64");
	ck_fails_with(check1(a, "Authorization", "Bearer abc", NULL, why), why, "scheme Basic");
	ck_fails_with(check1(a, "X", "y", NULL, why), why, "no Authorization");
	ck_assert_int_eq(check1(a, "Authorization", basic_hdr("bob:other"), NULL, why), OP_OK);
	op_auth_free(a);
	compile_bad("{\"type\":\"basic\",\"users\":[{\"name\":\"a\",\"hash\":\"pbkdf2-sha256$99$"
	            "AAAAAAAAAAA=$"
	            "AAAAAAAAAAAAAAAAAAAAAA==\"}]}",
	            "users[0].hash", "out of range");
	compile_bad("{\"type\":\"basic\",\"users\":[{\"name\":\"a\",\"hash\":\"plain\"}]}",
	            "users[0].hash", "expected \"pbkdf2-sha256$");
	compile_bad("{\"type\":\"basic\",\"cache_ttl\":-1,\"users\":[]}", "cache_ttl",
	            "out of range");
	ck_assert_int_eq(op_auth_hash_password("x", 1, 5, &(char *){NULL}), OP_EINVAL);
}
END_TEST

START_TEST(basic_cache_skips_pbkdf2)
{
	char *h = NULL, cfg[512], why[OP_AUTH_WHY_MAX];
	ck_assert_int_eq(op_auth_hash_password("pw", 2, 400000, &h), OP_OK);
	snprintf(
	    cfg, sizeof(cfg),
	    "{\"type\":\"basic\",\"cache_ttl\":60,\"users\":[{\"name\":\"u\",\"hash\":\"%s\"}]}",
	    h);
	op_free(h);
	struct op_auth *a = compile_ok(cfg);
	char good[512], wrong[512];
	snprintf(good, sizeof(good), "%s", basic_hdr("u:pw"));
	snprintf(wrong, sizeof(wrong), "%s", basic_hdr("u:nope"));
	struct hdrs hd = {{"Authorization"}, {good}};
	struct op_auth_request req = {.header = get_header, .ud = &hd, .now = NOW};
	ck_assert_int_eq(op_auth_check(a, &req, NULL, why, sizeof(why)), OP_OK);
	ck_assert_uint_eq(op_auth_hashes(a), 1);
	ck_assert_int_eq(op_auth_check(a, &req, NULL, why, sizeof(why)), OP_OK);
	ck_assert_uint_eq(op_auth_hashes(a), 1); /* from the cache */
	/* A wrong password is never answered from the cache. */
	struct hdrs bad = {{"Authorization"}, {wrong}};
	struct op_auth_request breq = {.header = get_header, .ud = &bad, .now = NOW};
	ck_assert_int_eq(op_auth_check(a, &breq, NULL, why, sizeof(why)), OP_EAUTH);
	ck_assert_uint_eq(op_auth_hashes(a), 2);
	/* Past the TTL the full check runs again (and still succeeds). */
	req.now = NOW + 61;
	ck_assert_int_eq(op_auth_check(a, &req, NULL, why, sizeof(why)), OP_OK);
	ck_assert_uint_eq(op_auth_hashes(a), 3);
	op_auth_free(a);
}
END_TEST

START_TEST(none_and_b64)
{
	struct op_auth *a = compile_ok("{\"type\":\"none\"}");
	cJSON *c = (cJSON *)1;
	char why[8];
	ck_assert_int_eq(op_auth_check(a, NULL, &c, why, sizeof(why)), OP_OK);
	ck_assert_ptr_null(c);
	ck_assert_ptr_null(op_auth_challenge(a));
	ck_assert_str_eq(op_auth_type(a), "none");
	op_auth_free(a);
	compile_bad("{\"type\":\"none\",\"x\":1}", "x", "unknown key");
	unsigned char out[16];
	size_t n;
	ck_assert(op_b64_decode("YWJj", 4, true, out, sizeof(out), &n) && n == 3);
	ck_assert(op_b64_decode("YWI", 3, true, out, sizeof(out), &n) && n == 2);
	ck_assert(!op_b64_decode("YWJ", 3, true, out, sizeof(out), &n));
	ck_assert(op_b64_decode("YWI=", 4, false, out, sizeof(out), &n) && n == 2);
	ck_assert(!op_b64_decode("YWI", 3, false, out, sizeof(out), &n));
	ck_assert(!op_b64_decode("Y=I=", 4, false, out, sizeof(out), &n));
	ck_assert(op_b64_decode("-_-_", 4, true, out, sizeof(out), &n) && n == 3);
	ck_assert(!op_b64_decode("-_-_", 4, false, out, sizeof(out), &n));
}
END_TEST

/* ---- threads ---- */

struct worker {
	const struct op_auth *jwt, *basic;
	const char *tok[3];
	const char *bad;
	int fails;
};

static void *work(void *p)
{
	struct worker *w = p;
	char why[OP_AUTH_WHY_MAX];
	for (int i = 0; i < 40; i++) {
		cJSON *c = NULL;
		struct hdrs h = {{"Authorization"}, {w->tok[i % 3]}};
		struct op_auth_request req = {.header = get_header, .ud = &h, .now = NOW};
		if (op_auth_check(w->jwt, &req, &c, why, sizeof(why)) != OP_OK || c == NULL)
			w->fails++;
		cJSON_Delete(c);
		h.val[0] = w->bad;
		if (op_auth_check(w->jwt, &req, NULL, why, sizeof(why)) != OP_EAUTH)
			w->fails++;
		h.val[0] = basic_hdr("alice:s3cret:pw");
		if (i % 8 == 0 && op_auth_check(w->basic, &req, NULL, why, sizeof(why)) != OP_OK)
			w->fails++;
	}
	return NULL;
}

START_TEST(threads_verify_concurrently)
{
	struct op_auth *a = jwt_all();
	struct op_auth *b = compile_ok(basic_cfg("\"cache_size\":1,\"max_hashing\":4,"));
	char t0[4096], t1[4096], t2[4096], bad[4096];
	snprintf(t0, sizeof(t0), "Bearer %s",
	         sign(T_HS, SECRET, strlen(SECRET), "{\"alg\":\"HS256\"}", STD_CLAIMS));
	snprintf(t1, sizeof(t1), "Bearer %s",
	         sign(T_RS, &rsa1, 0, "{\"alg\":\"RS256\"}", STD_CLAIMS));
	snprintf(t2, sizeof(t2), "Bearer %s",
	         sign(T_ES, &ec1, 0, "{\"alg\":\"ES256\"}", STD_CLAIMS));
	snprintf(bad, sizeof(bad), "Bearer %s",
	         sign(T_ES, &ec2, 0, "{\"alg\":\"ES256\",\"kid\":\"e\"}", STD_CLAIMS));
	pthread_t th[4];
	struct worker w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){.jwt = a, .basic = b, .tok = {t0, t1, t2}, .bad = bad};
		ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(w[i].fails, 0);
	}
	op_auth_free(a);
	op_auth_free(b);
}
END_TEST

/* ---- out of memory ---- */

static void oom_loop(const char *cfg, const char *hname, const char *hval)
{
	cJSON *c = op_test_json(cfg);
	bool done = false;
	for (uint64_t n = 1; n < 10000 && !done; n++) {
		struct op_diag d;
		op_diag_init(&d);
		struct op_auth *a = NULL;
		cJSON *claims = NULL;
		char why[OP_AUTH_WHY_MAX];
		op_alloc_fail_at(n);
		op_err e = op_auth_compile(c, &d, &a);
		op_err e2 = OP_ENOMEM;
		if (e == OP_OK)
			e2 = check1(a, hname, hval, &claims, why);
		op_alloc_fail_at(0);
		if (e != OP_OK) {
			ck_assert_msg(e == OP_ENOMEM, "compile at %llu: %s", (unsigned long long)n,
			              op_err_name(e));
			ck_assert_ptr_null(a);
		} else if (e2 != OP_OK) {
			/* cJSON cannot tell a failed allocation from bad JSON. */
			ck_assert_msg(e2 == OP_ENOMEM || e2 == OP_EAUTH, "check at %llu: %s",
			              (unsigned long long)n, op_err_name(e2));
			ck_assert_ptr_null(claims);
		} else {
			ck_assert_ptr_nonnull(claims);
			done = true;
		}
		cJSON_Delete(claims);
		op_auth_free(a);
		op_diag_fini(&d);
	}
	ck_assert(done);
	cJSON_Delete(c);
}

START_TEST(oom_every_type)
{
	char cfg[8192], tok[4096], h1[80];
	snprintf(cfg, sizeof(cfg),
	         "{\"type\":\"jwt\",\"audience\":[\"outpost\"],\"issuer\":\"idp\",\"keys\":["
	         "{\"kid\":\"h\",\"alg\":\"HS256\",\"secret\":\"%s\"},"
	         "{\"kid\":\"r\",\"alg\":\"RS256\",\"pem\":%s},"
	         "{\"kid\":\"e\",\"alg\":\"ES256\",\"jwk\":{\"kty\":\"EC\",\"crv\":\"P-256\","
	         "\"x\":\"%s\",\"y\":\"%s\"}}]}",
	         SECRET, jstr(rsa1_pem), ec1_x, ec1_y);
	snprintf(tok, sizeof(tok), "Bearer %s",
	         sign(T_ES, &ec1, 0, "{\"alg\":\"ES256\",\"kid\":\"e\"}", STD_CLAIMS));
	oom_loop(cfg, "Authorization", tok);
	ck_assert_int_eq(op_auth_hash_apikey("key", 3, h1, sizeof(h1)), OP_OK);
	snprintf(cfg, sizeof(cfg),
	         "{\"type\":\"apikey\",\"keys\":[{\"name\":\"n\",\"hash\":\"%s\"}]}", h1);
	oom_loop(cfg, "X-API-Key", "key");
	oom_loop(basic_cfg(""), "Authorization", basic_hdr("alice:s3cret:pw"));
}
END_TEST

static Suite *auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("auth");
	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, keys_setup, keys_teardown);
	tcase_add_test(tc, jwt_valid_each_alg);
	tcase_add_test(tc, jwt_bad_signatures);
	tcase_add_test(tc, jwt_alg_none_and_confusion);
	tcase_add_test(tc, jwt_claims);
	tcase_add_test(tc, jwt_malformed);
	tcase_add_test(tc, jwt_kid_selection);
	tcase_add_test(tc, jwt_config_errors);
	tcase_add_test(tc, apikey_checks);
	tcase_add_test(tc, basic_checks);
	tcase_add_test(tc, basic_cache_skips_pbkdf2);
	tcase_add_test(tc, none_and_b64);
	tcase_add_test(tc, threads_verify_concurrently);
	tcase_add_test(tc, oom_every_type);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(auth_suite)
