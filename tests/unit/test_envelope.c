/* Signed envelopes of the control-plane link: what is signed opens; a
 * changed payload, a changed signature, an unknown or wrong key, a replayed
 * or older seq and malformed envelopes are refused, naming why. */
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "control-sync/envelope.h"
#include "tests/unit/test.h"

static unsigned char priv[OP_ENV_KEY_LEN], pub[OP_ENV_KEY_LEN];
static unsigned char priv2[OP_ENV_KEY_LEN], pub2[OP_ENV_KEY_LEN];
static struct op_env_key trusted[2];

static void keys(void)
{
	char why[256];
	ck_assert_int_eq(op_env_keygen(priv, pub, why, sizeof(why)), OP_OK);
	ck_assert_int_eq(op_env_keygen(priv2, pub2, why, sizeof(why)), OP_OK);
	ck_assert_mem_ne(pub, pub2, OP_ENV_KEY_LEN);
	op_env_kid(pub, trusted[0].kid);
	memcpy(trusted[0].pub, pub, OP_ENV_KEY_LEN);
	snprintf(trusted[1].kid, sizeof(trusted[1].kid), "next-key");
	memcpy(trusted[1].pub, pub2, OP_ENV_KEY_LEN);
}

static char *sign(const unsigned char *k, const unsigned char *p, const char *kid,
                  const char *payload)
{
	char *env = NULL, why[256];
	ck_assert_int_eq(op_env_sign(k, p, kid, payload, strlen(payload), &env, why, sizeof(why)),
	                 OP_OK);
	return env;
}

/* Opens env against the trusted keys after last; returns the class, with
 * why copied into out. */
static const char *code; /* the protocol's name of the last open's failure */

static op_err open_env(const char *env, uint64_t last, uint64_t *seq, char *out, size_t outlen)
{
	cJSON *doc = NULL;
	op_err rc = op_env_open(env, strlen(env), trusted, 2, last, &doc, seq, &code, out, outlen);
	if (rc == OP_OK) {
		ck_assert_ptr_nonnull(doc);
		ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(doc, "pipelines"));
	} else {
		ck_assert_ptr_null(doc);
	}
	cJSON_Delete(doc);
	return rc;
}

START_TEST(signed_opens_with_either_key)
{
	keys();
	ck_assert_msg(strncmp(trusted[0].kid, "ed25519-", 8) == 0 && strlen(trusted[0].kid) == 24,
	              "%s", trusted[0].kid);
	char why[256];
	uint64_t seq = 0;
	char *env = sign(priv, pub, trusted[0].kid, "{\"seq\":7,\"pipelines\":[]}");
	ck_assert_int_eq(open_env(env, 6, &seq, why, sizeof(why)), OP_OK);
	ck_assert_uint_eq(seq, 7);
	op_free(env);
	/* A rotated key: the second trusted one. */
	env = sign(priv2, pub2, "next-key", "{\"seq\":8,\"pipelines\":[]}");
	ck_assert_int_eq(open_env(env, 7, &seq, why, sizeof(why)), OP_OK);
	ck_assert_uint_eq(seq, 8);
	op_free(env);
}
END_TEST

START_TEST(tampering_and_wrong_keys_are_refused)
{
	keys();
	char why[256];
	uint64_t seq = 0;
	/* Signed by key 2 but naming key 1. */
	char *env = sign(priv2, pub2, trusted[0].kid, "{\"seq\":7,\"pipelines\":[]}");
	ck_assert_int_eq(open_env(env, 0, &seq, why, sizeof(why)), OP_EAUTH);
	ck_assert_msg(strstr(why, "does not verify") != NULL, "%s", why);
	ck_assert_str_eq(code, "SIGNATURE");
	op_free(env);
	/* An unknown key id. */
	env = sign(priv, pub, "retired", "{\"seq\":7,\"pipelines\":[]}");
	ck_assert_int_eq(open_env(env, 0, &seq, why, sizeof(why)), OP_EAUTH);
	ck_assert_str_eq(code, "KEY_UNKNOWN");
	ck_assert_msg(strstr(why, "\"retired\"") != NULL, "%s", why);
	op_free(env);
	/* The payload changed after signing: seq 7 -> 9. */
	env = sign(priv, pub, trusted[0].kid, "{\"seq\":7,\"pipelines\":[]}");
	cJSON *e = op_test_json(env);
	cJSON *forged = op_json_base64("{\"seq\":9,\"pipelines\":[]}", 24);
	cJSON_ReplaceItemInObjectCaseSensitive(e, "payload", forged);
	char *bad = op_json_print(e, OP_JSON_COMPACT);
	ck_assert_int_eq(open_env(bad, 0, &seq, why, sizeof(why)), OP_EAUTH);
	op_free(bad);
	/* One bit of the signature flipped. */
	cJSON *sig = cJSON_GetObjectItemCaseSensitive(e, "sig");
	char *raw = NULL;
	size_t n = 0;
	ck_assert_int_eq(op_base64_decode(sig->valuestring, &raw, &n), OP_OK);
	raw[10] ^= 1;
	cJSON_ReplaceItemInObjectCaseSensitive(e, "sig", op_json_base64(raw, n));
	cJSON_ReplaceItemInObjectCaseSensitive(e, "payload",
	                                       op_json_base64("{\"seq\":7,\"pipelines\":[]}", 24));
	op_free(raw);
	bad = op_json_print(e, OP_JSON_COMPACT);
	ck_assert_int_eq(open_env(bad, 0, &seq, why, sizeof(why)), OP_EAUTH);
	ck_assert_str_eq(code, "SIGNATURE");
	op_free(bad);
	cJSON_Delete(e);
	op_free(env);
}
END_TEST

START_TEST(replays_are_refused)
{
	keys();
	char why[256];
	uint64_t seq = 0;
	char *env = sign(priv, pub, trusted[0].kid, "{\"seq\":7,\"pipelines\":[]}");
	ck_assert_int_eq(open_env(env, 7, &seq, why, sizeof(why)), OP_EREJECTED);
	ck_assert_msg(strstr(why, "seq 7 is not above 7") != NULL, "%s", why);
	ck_assert_str_eq(code, "REPLAY");
	ck_assert_int_eq(open_env(env, 9, &seq, why, sizeof(why)), OP_EREJECTED);
	op_free(env);
}
END_TEST

static void expect_malformed(const char *env, const char *says)
{
	char why[256];
	uint64_t seq = 0;
	ck_assert_int_eq(open_env(env, 0, &seq, why, sizeof(why)), OP_EPARSE);
	ck_assert_msg(strstr(why, says) != NULL, "%s: %s", env, why);
	/* Before the signature is checked: the envelope; after it: the document. */
	ck_assert_str_eq(code,
	                 strncmp(why, "payload", 7) == 0 && strcmp(says, "payload: not base64") != 0
	                     ? "DOCUMENT"
	                     : "ENVELOPE");
}

START_TEST(malformed_envelopes_say_what)
{
	keys();
	expect_malformed("not json", "not a JSON object");
	expect_malformed("{\"alg\":\"ed25519\",\"kid\":\"k\",\"payload\":\"e30=\"}",
	                 "alg, kid, payload and sig must be strings");
	expect_malformed("{\"alg\":\"none\",\"kid\":\"k\",\"payload\":\"e30=\",\"sig\":\"AA==\"}",
	                 "only ed25519");
	expect_malformed("{\"alg\":\"ed25519\",\"kid\":\"k\",\"payload\":\"**\",\"sig\":\"AA==\"}",
	                 "payload: not base64");
	char kid[160];
	snprintf(kid, sizeof(kid),
	         "{\"alg\":\"ed25519\",\"kid\":\"%s\",\"payload\":\"e30=\",\"sig\":\"AA==\"}",
	         trusted[0].kid);
	expect_malformed(kid, "64-byte signature");
	/* Signed, but the document is not what the link takes. */
	char *env = sign(priv, pub, trusted[0].kid, "[1]");
	expect_malformed(env, "an array, not an object");
	op_free(env);
	env = sign(priv, pub, trusted[0].kid, "{\"seq\":1.5}");
	expect_malformed(env, "payload.seq: expected an integer");
	op_free(env);
	env = sign(priv, pub, trusted[0].kid, "{\"seq\":1,");
	expect_malformed(env, "payload: invalid JSON");
	op_free(env);
	char *out = NULL, why[128];
	ck_assert_int_eq(op_env_sign(priv, pub, "bad kid", "{}", 2, &out, why, sizeof(why)),
	                 OP_EINVAL);
	ck_assert_ptr_null(out);
}
END_TEST

static Suite *envelope_suite(void)
{
	Suite *s = suite_create("envelope");
	TCase *tc = tcase_create("envelope");
	tcase_add_test(tc, signed_opens_with_either_key);
	tcase_add_test(tc, tampering_and_wrong_keys_are_refused);
	tcase_add_test(tc, replays_are_refused);
	tcase_add_test(tc, malformed_envelopes_say_what);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(envelope_suite)
