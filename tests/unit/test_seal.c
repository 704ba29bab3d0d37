/* Boxes sealed to an agent's X25519 key: what is sealed opens with that
 * key and aad only; another key, another aad, a changed byte and malformed
 * boxes are refused, naming why, never with the secret. */
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "control-sync/seal.h"
#include "tests/unit/test.h"

static const char secret[] = "{\"type\":\"basic\",\"username\":\"erp\",\"password\":\"s3cr3t\"}";

static cJSON *seal_to(const uint8_t *pub, const char *aad)
{
	cJSON *box = NULL;
	char why[128];
	ck_assert_int_eq(op_seal(pub, aad, secret, strlen(secret), &box, why, sizeof(why)), OP_OK);
	ck_assert_ptr_nonnull(box);
	return box;
}

/* Opens box with the key pair; the class, the text into *out (or NULL). */
static op_err open_box(const uint8_t *priv, const uint8_t *pub, const char *aad, const cJSON *box,
                       char **out, char *why, size_t whylen)
{
	size_t len = 0;
	op_err rc = op_unseal(priv, pub, aad, box, out, &len, why, whylen);
	if (rc == OP_OK)
		ck_assert_uint_eq(len, strlen(*out));
	else
		ck_assert_ptr_null(*out);
	ck_assert_ptr_null(strstr(why, "s3cr3t"));
	return rc;
}

START_TEST(sealed_opens_with_its_key_and_aad_only)
{
	uint8_t priv[OP_SEAL_KEY_LEN], pub[OP_SEAL_KEY_LEN], priv2[OP_SEAL_KEY_LEN],
	    pub2[OP_SEAL_KEY_LEN], again[OP_SEAL_KEY_LEN];
	char why[256] = "", *out = NULL;
	ck_assert_int_eq(op_seal_keygen(priv, pub, why, sizeof(why)), OP_OK);
	ck_assert_int_eq(op_seal_keygen(priv2, pub2, why, sizeof(why)), OP_OK);
	ck_assert_mem_ne(pub, pub2, OP_SEAL_KEY_LEN);
	ck_assert_int_eq(op_seal_public(priv, again), OP_OK);
	ck_assert_mem_eq(pub, again, OP_SEAL_KEY_LEN);

	cJSON *box = seal_to(pub, "agent-a/erp");
	char *text = op_json_print(box, OP_JSON_COMPACT);
	ck_assert_ptr_null(strstr(text, "s3cr3t"));
	ck_assert_ptr_nonnull(strstr(text, "\"alg\":\"x25519-hkdf-sha256-aes256gcm\""));
	op_free(text);
	ck_assert_int_eq(open_box(priv, pub, "agent-a/erp", box, &out, why, sizeof(why)), OP_OK);
	ck_assert_str_eq(out, secret);
	op_free(out);
	/* Each box its own ephemeral key and nonce. */
	cJSON *box2 = seal_to(pub, "agent-a/erp");
	ck_assert_str_ne(cJSON_GetStringValue(cJSON_GetObjectItem(box, "epk")),
	                 cJSON_GetStringValue(cJSON_GetObjectItem(box2, "epk")));
	cJSON_Delete(box2);
	/* Another agent's key, another agent, another name. */
	ck_assert_int_eq(open_box(priv2, pub2, "agent-a/erp", box, &out, why, sizeof(why)),
	                 OP_EAUTH);
	ck_assert_msg(strstr(why, "does not open") != NULL, "%s", why);
	ck_assert_int_eq(open_box(priv, pub, "agent-b/erp", box, &out, why, sizeof(why)), OP_EAUTH);
	ck_assert_int_eq(open_box(priv, pub, "agent-a/crm", box, &out, why, sizeof(why)), OP_EAUTH);
	/* One bit of the ciphertext flipped. */
	char *raw = NULL;
	size_t n = 0;
	ck_assert_int_eq(
	    op_base64_decode(cJSON_GetStringValue(cJSON_GetObjectItem(box, "ct")), &raw, &n),
	    OP_OK);
	raw[3] ^= 1;
	cJSON_ReplaceItemInObjectCaseSensitive(box, "ct", op_json_base64(raw, n));
	op_free(raw);
	ck_assert_int_eq(open_box(priv, pub, "agent-a/erp", box, &out, why, sizeof(why)), OP_EAUTH);
	cJSON_Delete(box);
	explicit_bzero(priv, sizeof(priv));
	explicit_bzero(priv2, sizeof(priv2));
}
END_TEST

START_TEST(malformed_boxes_and_bounds)
{
	uint8_t priv[OP_SEAL_KEY_LEN], pub[OP_SEAL_KEY_LEN];
	char why[256] = "", *out = NULL;
	ck_assert_int_eq(op_seal_keygen(priv, pub, why, sizeof(why)), OP_OK);
	static const char *const bad[] = {
	    "[]",
	    "{\"alg\":\"rsa\"}",
	    "{\"alg\":\"x25519-hkdf-sha256-aes256gcm\"}",
	    "{\"alg\":\"x25519-hkdf-sha256-aes256gcm\",\"epk\":\"AAAA\",\"nonce\":\"AAAA\","
	    "\"ct\":\"AAAA\"}",
	    "{\"alg\":\"x25519-hkdf-sha256-aes256gcm\",\"epk\":\"not base64!\",\"nonce\":1,"
	    "\"ct\":null}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *b = op_test_json(bad[i]);
		ck_assert_int_eq(open_box(priv, pub, "a/b", b, &out, why, sizeof(why)), OP_EPARSE);
		ck_assert_msg(strstr(why, "not a sealed box") != NULL, "%s: %s", bad[i], why);
		cJSON_Delete(b);
	}
	/* Too much to seal; not a public key. */
	cJSON *box = NULL;
	char *big = op_calloc(1, OP_SEAL_MAX + 1);
	ck_assert_int_eq(op_seal(pub, "a/b", big, OP_SEAL_MAX + 1, &box, why, sizeof(why)),
	                 OP_ELIMIT);
	op_free(big);
	ck_assert_ptr_null(box);
	uint8_t zero[OP_SEAL_KEY_LEN] = {0};
	ck_assert_int_eq(op_seal(zero, "a/b", "x", 1, &box, why, sizeof(why)), OP_EINVAL);
	ck_assert_ptr_null(box);
	/* An empty secret seals and opens. */
	ck_assert_int_eq(op_seal(pub, "a/b", "", 0, &box, why, sizeof(why)), OP_OK);
	size_t len = 1;
	ck_assert_int_eq(op_unseal(priv, pub, "a/b", box, &out, &len, why, sizeof(why)), OP_OK);
	ck_assert_uint_eq(len, 0);
	ck_assert_str_eq(out, "");
	op_free(out);
	cJSON_Delete(box);
}
END_TEST

static Suite *seal_suite(void)
{
	Suite *s = suite_create("seal");
	TCase *tc = tcase_create("seal");
	tcase_add_test(tc, sealed_opens_with_its_key_and_aad_only);
	tcase_add_test(tc, malformed_boxes_and_bounds);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(seal_suite)
