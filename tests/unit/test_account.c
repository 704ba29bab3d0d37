/*
 * Unit tests of accounts and the vault (agent/account): the five types and
 * their errors, what describe shows, AES-256-GCM sealing (wrong key, damaged
 * or renamed files), the key file rules, and that no secret reaches a file
 * in clear or an error text.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/account/lookup.h"
#include "agent/account/vault.h"
#include "agent/core/alloc.h"
#include "tests/unit/test.h"

#define SECRET "s3cret-Pa55-w0rd"

static char dir[256];
static char vdir[300];
static char keyf[300];
static char err[512];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s/op_test_account_XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(vdir, sizeof(vdir), "%s/accounts", dir);
	snprintf(keyf, sizeof(keyf), "%s/accounts.key", dir);
}

static void teardown(void)
{
	op_test_rmtree(dir);
}

static struct op_account *parse_ok(const char *name, const char *json)
{
	cJSON *doc = op_test_json(json);
	struct op_diag d;
	op_diag_init(&d);
	struct op_account *a = NULL;
	op_err e = op_account_parse(name, doc, &a, &d);
	ck_assert_msg(e == OP_OK, "%s: %s: %s", json, d.n ? d.v[0].path : "",
	              d.n ? d.v[0].msg : "");
	op_diag_fini(&d);
	cJSON_Delete(doc);
	return a;
}

/* Parses json as account name and expects OP_ECONFIG with a problem at path
 * whose message holds msg. */
static void parse_fails(const char *name, const char *json, const char *path, const char *msg)
{
	cJSON *doc = op_test_json(json);
	struct op_diag d;
	op_diag_init(&d);
	struct op_account *a = (struct op_account *)1;
	ck_assert_int_eq(op_account_parse(name, doc, &a, &d), OP_ECONFIG);
	ck_assert_ptr_null(a);
	bool found = false;
	for (size_t i = 0; i < d.n && !found; i++)
		found = strcmp(d.v[i].path, path) == 0 && strstr(d.v[i].msg, msg) != NULL;
	ck_assert_msg(found, "%s: no problem at '%s' with '%s' (first: %s: %s)", json, path, msg,
	              d.n ? d.v[0].path : "-", d.n ? d.v[0].msg : "-");
	op_diag_fini(&d);
	cJSON_Delete(doc);
}

static char *text_of(cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);
	ck_assert_ptr_nonnull(s);
	cJSON_Delete(j);
	return s;
}

START_TEST(types_parse_and_describe_hides_secrets)
{
	static const char *docs[] = {
	    "{\"type\":\"basic\",\"username\":\"erp\",\"password\":\"" SECRET "\"}",
	    "{\"type\":\"key\",\"username\":\"ftp\",\"privateKey\":\"" SECRET
	    "\",\"passphrase\":\"" SECRET "\"}",
	    "{\"type\":\"bearer\",\"token\":\"" SECRET "\"}",
	    "{\"type\":\"oauth2\",\"tokenUrl\":\"https://login.example/"
	    "token\",\"clientId\":\"agent\","
	    "\"clientSecret\":\"" SECRET "\",\"scope\":\"api\"}",
	    "{\"type\":\"certificate\",\"certificate\":\"-----BEGIN CERTIFICATE-----\","
	    "\"privateKey\":\"" SECRET "\"}",
	};
	static const char *types[] = {"basic", "key", "bearer", "oauth2", "certificate"};
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		struct op_account *a = parse_ok("acct-1", docs[i]);
		ck_assert_str_eq(op_account_type_name(a->type), types[i]);
		char *shown = text_of(op_account_describe(a));
		ck_assert_msg(strstr(shown, SECRET) == NULL, "describe shows a secret: %s", shown);
		ck_assert_ptr_nonnull(strstr(shown, "\"name\":\"acct-1\""));
		cJSON_free(shown);
		/* The full document parses back to the same account. */
		char *full = text_of(op_account_to_json(a));
		ck_assert_ptr_nonnull(strstr(full, SECRET));
		struct op_account *b = parse_ok("acct-1", full);
		char *again = text_of(op_account_to_json(b));
		ck_assert_str_eq(full, again);
		cJSON_free(full);
		cJSON_free(again);
		op_account_free(a);
		op_account_free(b);
	}
}
END_TEST

START_TEST(bad_documents_are_refused_by_field)
{
	parse_fails("a", "{\"type\":\"ldap\"}", "type", "expected one of");
	parse_fails("a", "[]", "", "JSON object");
	parse_fails("a", "{\"type\":\"basic\",\"username\":\"u\"}", "password", "missing");
	parse_fails("a",
	            "{\"type\":\"basic\",\"username\":\"u\",\"password\":\"p\",\"token\":\"t\"}",
	            "token", "unknown key for a basic account");
	parse_fails("a", "{\"type\":\"bearer\",\"token\":5}", "token", "expected a string");
	parse_fails("a", "{\"type\":\"bearer\",\"token\":\"\"}", "token", "must not be empty");
	parse_fails("a",
	            "{\"type\":\"oauth2\",\"tokenUrl\":\"ftp://x\",\"clientId\":\"c\","
	            "\"clientSecret\":\"s\"}",
	            "tokenUrl", "http:// or https://");
	parse_fails("../etc", "{\"type\":\"bearer\",\"token\":\"t\"}", "name",
	            "not an account name");
	parse_fails("", "{\"type\":\"bearer\",\"token\":\"t\"}", "name", "not an account name");
	char longname[OP_ACCOUNT_NAME_MAX + 2];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	parse_fails(longname, "{\"type\":\"bearer\",\"token\":\"t\"}", "name",
	            "not an account name");
	ck_assert(op_account_name_ok("erp.prod_2-a"));
	ck_assert(!op_account_name_ok(".hidden"));
	ck_assert(!op_account_name_ok("a/b"));
}
END_TEST

START_TEST(sealing_detects_wrong_key_damage_and_renames)
{
	uint8_t k1[OP_VAULT_KEY_LEN], k2[OP_VAULT_KEY_LEN];
	memset(k1, 1, sizeof(k1));
	memset(k2, 2, sizeof(k2));
	const char *plain = "{\"type\":\"bearer\",\"token\":\"" SECRET "\"}";
	uint8_t *s = NULL;
	size_t slen = 0;
	ck_assert_int_eq(op_vault_seal(k1, "api", plain, strlen(plain), &s, &slen), OP_OK);
	ck_assert(memmem(s, slen, SECRET, strlen(SECRET)) == NULL);
	char *p = NULL;
	size_t plen = 0;
	ck_assert_int_eq(op_vault_unseal(k1, "api", s, slen, &p, &plen), OP_OK);
	ck_assert_str_eq(p, plain);
	ck_assert_uint_eq(plen, strlen(plain));
	op_free(p);
	/* Two seals of the same text differ (random nonce). */
	uint8_t *s2 = NULL;
	size_t s2len = 0;
	ck_assert_int_eq(op_vault_seal(k1, "api", plain, strlen(plain), &s2, &s2len), OP_OK);
	ck_assert_uint_eq(slen, s2len);
	ck_assert(memcmp(s, s2, slen) != 0);
	op_free(s2);
	ck_assert_int_eq(op_vault_unseal(k2, "api", s, slen, &p, &plen), OP_EAUTH);
	ck_assert_int_eq(op_vault_unseal(k1, "other", s, slen, &p, &plen), OP_ECORRUPT);
	ck_assert_int_eq(op_vault_unseal(k1, "api", s, slen - 1, &p, &plen), OP_ECORRUPT);
	ck_assert_int_eq(op_vault_unseal(k1, "api", s, 10, &p, &plen), OP_ECORRUPT);
	for (size_t i = 24; i < slen; i += 7) {
		s[i] ^= 0x20;
		ck_assert_int_eq(op_vault_unseal(k1, "api", s, slen, &p, &plen), OP_ECORRUPT);
		s[i] ^= 0x20;
	}
	ck_assert_ptr_null(p);
	op_free(s);
}
END_TEST

static bool file_has(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	return memmem(buf, n, needle, strlen(needle)) != NULL;
}

START_TEST(vault_put_get_list_delete)
{
	struct op_vault *v = NULL;
	ck_assert_int_eq(op_vault_open(vdir, keyf, false, &v, err, sizeof(err)), OP_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, keyf));
	ck_assert_int_eq(op_vault_open(vdir, keyf, true, &v, err, sizeof(err)), OP_OK);
	struct stat st;
	ck_assert_int_eq(stat(keyf, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(st.st_size, 45); /* 44 base64 characters and a newline */
	ck_assert_uint_eq(strlen(op_vault_key_id(v)), 16);

	struct op_account *a = parse_ok(
	    "erp", "{\"type\":\"basic\",\"username\":\"svc\",\"password\":\"" SECRET "\"}");
	ck_assert_int_eq(op_vault_put(v, a, err, sizeof(err)), OP_OK);
	ck_assert_int_gt(a->updated_ms, 0);
	struct op_account *b = parse_ok("api", "{\"type\":\"bearer\",\"token\":\"" SECRET "\"}");
	ck_assert_int_eq(op_vault_put(v, b, err, sizeof(err)), OP_OK);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/erp.acct", vdir);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert(!file_has(path, SECRET));
	ck_assert(!file_has(path, "svc"));

	struct op_account *got = NULL;
	ck_assert_int_eq(op_vault_get(v, "erp", &got, err, sizeof(err)), OP_OK);
	ck_assert_str_eq(got->username, "svc");
	ck_assert_str_eq(got->password, SECRET);
	ck_assert_int_eq(got->updated_ms, a->updated_ms);
	op_account_free(got);

	char **names;
	size_t n;
	ck_assert_int_eq(op_vault_list(v, &names, &n), OP_OK);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(names[0], "api");
	ck_assert_str_eq(names[1], "erp");
	op_vault_names_free(names, n);

	/* Replace, delete, miss. */
	op_free(a->password);
	a->password = op_strdup("new-one");
	ck_assert_int_eq(op_vault_put(v, a, err, sizeof(err)), OP_OK);
	ck_assert_int_eq(op_vault_get(v, "erp", &got, err, sizeof(err)), OP_OK);
	ck_assert_str_eq(got->password, "new-one");
	op_account_free(got);
	ck_assert_int_eq(op_vault_delete(v, "api", err, sizeof(err)), OP_OK);
	ck_assert_int_eq(op_vault_delete(v, "api", err, sizeof(err)), OP_ENOTFOUND);
	ck_assert_int_eq(op_vault_get(v, "api", &got, err, sizeof(err)), OP_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(err, "no account named api"));
	ck_assert_int_eq(op_vault_get(v, "../x", &got, err, sizeof(err)), OP_EINVAL);
	ck_assert_int_eq(op_vault_list(v, &names, &n), OP_OK);
	ck_assert_uint_eq(n, 1);
	op_vault_names_free(names, n);
	op_account_free(a);
	op_account_free(b);
	op_vault_close(v);
}
END_TEST

static int made;

static op_err make_secret(void *ud, uint8_t out[OP_VAULT_SECRET_LEN])
{
	made++;
	memset(out, *(const char *)ud, OP_VAULT_SECRET_LEN);
	return OP_OK;
}

/* A secret of the agent's own: made once, then read back; not an account;
 * another key does not open it. */
START_TEST(vault_secret_is_made_once_and_kept)
{
	struct op_vault *v = NULL;
	uint8_t got[OP_VAULT_SECRET_LEN], want[OP_VAULT_SECRET_LEN];
	memset(want, 'k', sizeof(want));
	made = 0;
	ck_assert_int_eq(op_vault_open(vdir, keyf, true, &v, err, sizeof(err)), OP_OK);
	ck_assert_int_eq(
	    op_vault_secret(v, "control-seal", make_secret, "k", got, err, sizeof(err)), OP_OK);
	ck_assert_mem_eq(got, want, sizeof(want));
	memset(got, 0, sizeof(got));
	ck_assert_int_eq(
	    op_vault_secret(v, "control-seal", make_secret, "x", got, err, sizeof(err)), OP_OK);
	ck_assert_mem_eq(got, want, sizeof(want));
	ck_assert_int_eq(made, 1);
	char **names = NULL;
	size_t n = 9;
	ck_assert_int_eq(op_vault_list(v, &names, &n), OP_OK);
	ck_assert_uint_eq(n, 0);
	op_vault_names_free(names, n);
	ck_assert_int_eq(op_vault_secret(v, "../x", make_secret, "k", got, err, sizeof(err)),
	                 OP_EINVAL);
	op_vault_close(v);
	char key2[PATH_MAX];
	snprintf(key2, sizeof(key2), "%s/other.key", dir);
	ck_assert_int_eq(op_vault_open(vdir, key2, true, &v, err, sizeof(err)), OP_OK);
	ck_assert_int_eq(
	    op_vault_secret(v, "control-seal", make_secret, "k", got, err, sizeof(err)), OP_EAUTH);
	ck_assert_int_eq(made, 1);
	op_vault_close(v);
}
END_TEST

START_TEST(vault_refuses_other_keys_and_damaged_files)
{
	struct op_vault *v = NULL;
	ck_assert_int_eq(op_vault_open(vdir, keyf, true, &v, err, sizeof(err)), OP_OK);
	struct op_account *a =
	    parse_ok("erp", "{\"type\":\"basic\",\"username\":\"u\",\"password\":\"" SECRET "\"}");
	ck_assert_int_eq(op_vault_put(v, a, err, sizeof(err)), OP_OK);
	char kid1[17];
	snprintf(kid1, sizeof(kid1), "%s", op_vault_key_id(v));
	op_vault_close(v);

	/* Renamed to another account's name: does not open. */
	char from[PATH_MAX], to[PATH_MAX];
	snprintf(from, sizeof(from), "%s/erp.acct", vdir);
	snprintf(to, sizeof(to), "%s/crm.acct", vdir);
	ck_assert_int_eq(link(from, to), 0);
	ck_assert_int_eq(op_vault_open(vdir, keyf, false, &v, err, sizeof(err)), OP_OK);
	struct op_account *got = NULL;
	ck_assert_int_eq(op_vault_get(v, "crm", &got, err, sizeof(err)), OP_ECORRUPT);
	ck_assert_ptr_nonnull(strstr(err, "renamed"));
	ck_assert(strstr(err, SECRET) == NULL);
	op_vault_close(v);

	/* Another key: refused, naming both key ids. */
	char key2[PATH_MAX];
	snprintf(key2, sizeof(key2), "%s/other.key", dir);
	ck_assert_int_eq(op_vault_open(vdir, key2, true, &v, err, sizeof(err)), OP_OK);
	ck_assert_int_eq(op_vault_get(v, "erp", &got, err, sizeof(err)), OP_EAUTH);
	ck_assert_ptr_nonnull(strstr(err, kid1));
	ck_assert_ptr_nonnull(strstr(err, op_vault_key_id(v)));
	op_vault_close(v);

	/* A key file others can read, and one of the wrong size. */
	ck_assert_int_eq(chmod(keyf, 0644), 0);
	ck_assert_int_eq(op_vault_open(vdir, keyf, false, &v, err, sizeof(err)), OP_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "chmod 600"));
	ck_assert_int_eq(chmod(keyf, 0600), 0);
	char bad[PATH_MAX];
	snprintf(bad, sizeof(bad), "%s/bad.key", dir);
	int fd = open(bad, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "c2hvcnQ=\n", 9), 9);
	close(fd);
	ck_assert_int_eq(op_vault_open(vdir, bad, false, &v, err, sizeof(err)), OP_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "32 bytes"));

	/* A raw 32-byte key is accepted. */
	char raw[PATH_MAX];
	snprintf(raw, sizeof(raw), "%s/raw.key", dir);
	fd = open(raw, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	uint8_t k[OP_VAULT_KEY_LEN];
	memset(k, 7, sizeof(k));
	ck_assert_int_eq(write(fd, k, sizeof(k)), (ssize_t)sizeof(k));
	close(fd);
	ck_assert_int_eq(op_vault_open(vdir, raw, false, &v, err, sizeof(err)), OP_OK);
	op_vault_close(v);

	/* A damaged file. */
	ck_assert_int_eq(op_vault_open(vdir, keyf, false, &v, err, sizeof(err)), OP_OK);
	/* One byte changed, whatever it was ("X" over an "X" damaged nothing: a
	 * CI run failed once that way). */
	fd = open(from, O_RDWR);
	ck_assert_int_ge(fd, 0);
	char byte;
	ck_assert_int_eq(pread(fd, &byte, 1, 30), 1);
	byte = byte == 'X' ? 'Y' : 'X';
	ck_assert_int_eq(pwrite(fd, &byte, 1, 30), 1);
	close(fd);
	ck_assert_int_eq(op_vault_get(v, "erp", &got, err, sizeof(err)), OP_ECORRUPT);
	ck_assert_ptr_nonnull(strstr(err, "damaged"));
	op_vault_close(v);
	op_account_free(a);
}
END_TEST

/* Stores a basic account name with password pw in the vault under keyf. */
static void put_basic(const char *name, const char *pw)
{
	struct op_vault *v = NULL;
	ck_assert_int_eq(op_vault_open(vdir, keyf, true, &v, err, sizeof(err)), OP_OK);
	char doc[256];
	snprintf(doc, sizeof(doc), "{\"type\":\"basic\",\"username\":\"u\",\"password\":\"%s\"}",
	         pw);
	struct op_account *a = parse_ok(name, doc);
	ck_assert_int_eq(op_vault_put(v, a, err, sizeof(err)), OP_OK);
	op_account_free(a);
	op_vault_close(v);
}

START_TEST(lookup_opens_late_and_follows_a_new_key)
{
	struct op_accounts *l = NULL;
	struct op_account *a = NULL;
	ck_assert_int_eq(op_accounts_new(vdir, keyf, &l), OP_OK);
	/* No key yet: not found, saying why, and nothing was created. */
	ck_assert_int_eq(op_accounts_get(l, "db", &a, err, sizeof(err)), OP_ENOTFOUND);
	ck_assert_ptr_null(a);
	ck_assert_ptr_nonnull(strstr(err, "no account named db: no accounts key at"));
	ck_assert_int_ne(access(keyf, F_OK), 0);
	ck_assert_int_eq(op_accounts_get(l, "../db", &a, err, sizeof(err)), OP_ECONFIG);

	/* Set after the lookup was made: found at the next call. */
	put_basic("db", SECRET);
	ck_assert_int_eq(op_accounts_get(l, "db", &a, err, sizeof(err)), OP_OK);
	ck_assert_str_eq(a->password, SECRET);
	op_account_free(a);
	a = NULL;
	ck_assert_int_eq(op_accounts_get(l, "other", &a, err, sizeof(err)), OP_ENOTFOUND);

	/* A new key file, the vault sealed again under it: the lookup reopens. */
	ck_assert_int_eq(unlink(keyf), 0);
	put_basic("db", "second-" SECRET);
	ck_assert_int_eq(op_accounts_get(l, "db", &a, err, sizeof(err)), OP_OK);
	ck_assert_str_eq(a->password, "second-" SECRET);
	op_account_free(a);
	a = NULL;

	/* A file sealed with a key that is gone stays refused with the same
	 * answer each time, naming both keys; the vault is not reopened again
	 * and again (which would end in "changed too often"). */
	put_basic("x", SECRET); /* under the second key */
	ck_assert_int_eq(unlink(keyf), 0);
	put_basic("y", SECRET); /* a third key */
	struct op_accounts *l2 = NULL;
	ck_assert_int_eq(op_accounts_new(vdir, keyf, &l2), OP_OK);
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(op_accounts_get(l2, "x", &a, err, sizeof(err)), OP_EAUTH);
		ck_assert_ptr_null(a);
		ck_assert_ptr_null(strstr(err, SECRET));
		ck_assert_ptr_null(strstr(err, "too often"));
	}
	ck_assert_int_eq(op_accounts_get(l2, "y", &a, err, sizeof(err)), OP_OK);
	op_account_free(a);
	op_accounts_free(l2);
	op_accounts_free(l);
}
END_TEST

static Suite *account_suite(void)
{
	Suite *s = suite_create("account");
	TCase *tc = tcase_create("account");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, types_parse_and_describe_hides_secrets);
	tcase_add_test(tc, bad_documents_are_refused_by_field);
	tcase_add_test(tc, sealing_detects_wrong_key_damage_and_renames);
	tcase_add_test(tc, vault_put_get_list_delete);
	tcase_add_test(tc, vault_refuses_other_keys_and_damaged_files);
	tcase_add_test(tc, vault_secret_is_made_once_and_kept);
	tcase_add_test(tc, lookup_opens_late_and_follows_a_new_key);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(account_suite)
