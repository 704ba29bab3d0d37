/*
 * `outpostctl keygen | sign | verify`: the control plane's signing keys and
 * the signed envelopes of desired state (control-sync/envelope.h,
 * docs/protocol.md), with nothing but files.
 *
 * A key file holds {"alg": "ed25519", "kid", "seed", "public"} (base64) and
 * is created 0600, never over an existing file; KEY.pub holds the public
 * half, {"alg", "kid", "public"}, which agents are given to trust.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "control-sync/envelope.h"
#include "control-sync/outpostctl/ctl.h"

#define KEY_FILE_MAX (64u << 10)
#define KEYS_MAX     16

static const char keygen_usage[] =
    "usage: outpostctl keygen KEYFILE [--kid KID]\n"
    "Makes an Ed25519 signing key: KEYFILE (0600, the private key) and\n"
    "KEYFILE.pub (the public key agents trust), and prints its key id. KID\n"
    "names the key in envelopes (default: ed25519- and 16 hex digits of its\n"
    "hash). An existing file is never overwritten.\n";
static const char sign_usage[] =
    "usage: outpostctl sign --key KEYFILE DOCUMENT.json\n"
    "Prints the signed envelope of the document, signed over its exact bytes\n"
    "(\"-\" reads stdin): a desired document (a JSON object with an integer\n"
    "seq) or a command (a JSON object with string id and op and a number\n"
    "expires, docs/protocol.md).\n";
static const char verify_usage[] =
    "usage: outpostctl verify --pub KEYFILE.pub... [--last-seq N] ENVELOPE\n"
    "Opens a signed envelope as an agent does (docs/protocol.md) and prints\n"
    "its document; up to 16 trusted keys. Exit 1 when it is refused.\n";

/* --help or -h among the arguments: usage on stdout. */
static bool wants_help(int argc, char **argv, const char *usage)
{
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			return true;
		}
	}
	return false;
}

/* Writes text into a new file path with mode; never over an existing one. */
static int write_new(const char *path, const char *text, int mode)
{
	char eb[256];
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		int e = errno;
		fprintf(stderr, "outpostctl keygen: %s: %s%s\n", path,
		        strerror_r(e, eb, sizeof(eb)),
		        e == EEXIST ? " (a key is never overwritten)" : "");
		return CTL_INVALID;
	}
	size_t n = strlen(text), off = 0;
	while (off < n) {
		ssize_t w = write(fd, text + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	bool ok = off == n && fsync(fd) == 0;
	if (close(fd) != 0)
		ok = false;
	if (!ok) {
		fprintf(stderr, "outpostctl keygen: %s: %s\n", path,
		        strerror_r(errno, eb, sizeof(eb)));
		unlink(path);
		return CTL_FAILED;
	}
	return CTL_OK;
}

/* {"alg", "kid", "public"[, "seed"]} as text (op_free), or NULL. */
static char *key_text(const char *kid, const unsigned char *pub, const unsigned char *seed)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o && cJSON_AddStringToObject(o, "alg", "ed25519") &&
	          cJSON_AddStringToObject(o, "kid", kid);
	cJSON *p = ok ? op_json_base64(pub, OP_ENV_KEY_LEN) : NULL;
	ok = p && cJSON_AddItemToObject(o, "public", p);
	if (!ok)
		cJSON_Delete(p);
	if (ok && seed) {
		cJSON *s = op_json_base64(seed, OP_ENV_KEY_LEN);
		ok = s && cJSON_AddItemToObject(o, "seed", s);
		if (!ok)
			cJSON_Delete(s);
	}
	char *t = NULL;
	if (ok) {
		struct op_buf b;
		op_buf_init(&b, KEY_FILE_MAX);
		if (op_json_append(&b, o, OP_JSON_PRETTY) == OP_OK &&
		    op_buf_addc(&b, '\n') == OP_OK)
			t = op_buf_take(&b);
		if (b.data)
			explicit_bzero(b.data, b.len);
		op_buf_fini(&b);
	}
	/* The seed's base64 lives in the tree: wipe it with the tree. */
	cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "seed");
	if (cJSON_IsString(s))
		explicit_bzero(s->valuestring, strlen(s->valuestring));
	cJSON_Delete(o);
	return t;
}

int op_ctl_keygen(int argc, char **argv)
{
	const char *path = NULL, *kid = NULL;
	if (wants_help(argc, argv, keygen_usage))
		return CTL_OK;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--kid") == 0 && i + 1 < argc)
			kid = argv[++i];
		else if (argv[i][0] != '-' && path == NULL)
			path = argv[i];
		else
			path = NULL, i = argc;
	}
	if (path == NULL) {
		fputs(keygen_usage, stderr);
		return CTL_INVALID;
	}
	if (kid && !op_env_kid_ok(kid)) {
		fprintf(stderr,
		        "outpostctl keygen: --kid \"%s\": 1 to %d letters, digits, '-', "
		        "'_', '.' or ':'\n",
		        kid, OP_ENV_KID_MAX);
		return CTL_INVALID;
	}
	unsigned char seed[OP_ENV_KEY_LEN], pub[OP_ENV_KEY_LEN];
	char why[256], id[OP_ENV_KID_MAX + 1];
	if (op_env_keygen(seed, pub, why, sizeof(why)) != OP_OK) {
		fprintf(stderr, "outpostctl keygen: %s\n", why);
		return CTL_FAILED;
	}
	if (kid == NULL)
		op_env_kid(pub, id);
	else
		snprintf(id, sizeof(id), "%s", kid);
	char *priv_text = key_text(id, pub, seed), *pub_text = key_text(id, pub, NULL);
	explicit_bzero(seed, sizeof(seed));
	struct op_buf pb;
	op_buf_init(&pb, 4096);
	char *pub_path = op_buf_addf(&pb, "%s.pub", path) == OP_OK ? op_buf_take(&pb) : NULL;
	op_buf_fini(&pb);
	int rc = CTL_FAILED;
	if (priv_text && pub_text && pub_path) {
		rc = write_new(path, priv_text, 0600);
		if (rc == CTL_OK) {
			rc = write_new(pub_path, pub_text, 0644);
			if (rc != CTL_OK)
				unlink(path);
		}
	} else {
		fputs("outpostctl keygen: out of memory\n", stderr);
	}
	if (rc == CTL_OK)
		printf("%s\n", id);
	if (priv_text)
		explicit_bzero(priv_text, strlen(priv_text));
	op_free(priv_text);
	op_free(pub_text);
	op_free(pub_path);
	return rc;
}

/* True when d is what an agent would take: a desired document (a
 * positive integer "seq") or a command (string "op" and "id", number
 * "expires"); the agent checks the rest. */
static bool signable(const cJSON *d)
{
	const cJSON *seq = cJSON_GetObjectItemCaseSensitive(d, "seq");
	if (cJSON_IsNumber(seq) && seq->valuedouble >= 1 &&
	    seq->valuedouble <= 9007199254740992.0 &&
	    (double)(long long)seq->valuedouble == seq->valuedouble)
		return true;
	return cJSON_IsString(cJSON_GetObjectItemCaseSensitive(d, "op")) &&
	       cJSON_IsString(cJSON_GetObjectItemCaseSensitive(d, "id")) &&
	       cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(d, "expires"));
}

/* Decodes member name of o, base64 of OP_ENV_KEY_LEN bytes, into out. */
static bool key_bytes(const cJSON *o, const char *name, unsigned char *out)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
	char *raw = NULL;
	size_t n = 0;
	if (s == NULL || op_base64_decode(s, &raw, &n) != OP_OK || n != OP_ENV_KEY_LEN) {
		op_free(raw);
		return false;
	}
	memcpy(out, raw, n);
	explicit_bzero(raw, n);
	op_free(raw);
	return true;
}

int op_ctl_read_key(const char *path, struct op_env_key *key, unsigned char *seed)
{
	char *text = NULL;
	size_t len = 0;
	if (op_ctl_read_file(path, KEY_FILE_MAX, &text, &len) != OP_OK)
		return CTL_INVALID;
	cJSON *o = cJSON_ParseWithLength(text, len);
	explicit_bzero(text, len);
	op_free(text);
	const char *alg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "alg"));
	const char *kid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "kid"));
	bool ok = alg && strcmp(alg, "ed25519") == 0 && kid && op_env_kid_ok(kid) &&
	          key_bytes(o, "public", key->pub) && (seed == NULL || key_bytes(o, "seed", seed));
	if (ok)
		snprintf(key->kid, sizeof(key->kid), "%s", kid);
	cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "seed");
	if (cJSON_IsString(s))
		explicit_bzero(s->valuestring, strlen(s->valuestring));
	cJSON_Delete(o);
	if (!ok) {
		fprintf(stderr,
		        "outpostctl: %s: not an Ed25519 %s key file (alg, kid, public%s, as "
		        "`outpostctl keygen` writes)\n",
		        path, seed ? "private" : "public", seed ? ", seed" : "");
		return CTL_INVALID;
	}
	return CTL_OK;
}

int op_ctl_sign(int argc, char **argv)
{
	const char *keyfile = NULL, *doc = NULL;
	if (wants_help(argc, argv, sign_usage))
		return CTL_OK;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
			keyfile = argv[++i];
		else if ((argv[i][0] != '-' || strcmp(argv[i], "-") == 0) && doc == NULL)
			doc = argv[i];
		else
			keyfile = NULL, i = argc;
	}
	if (keyfile == NULL || doc == NULL) {
		fputs(sign_usage, stderr);
		return CTL_INVALID;
	}
	struct op_env_key key;
	unsigned char seed[OP_ENV_KEY_LEN];
	int rc = op_ctl_read_key(keyfile, &key, seed);
	if (rc != CTL_OK)
		return rc;
	char *text = NULL, *env = NULL, why[256];
	size_t len = 0;
	rc = CTL_INVALID;
	if (op_ctl_read_file(doc, OP_ENV_MAX / 2, &text, &len) == OP_OK) {
		/* Only what an agent would take is signed. */
		cJSON *d = NULL;
		if (op_json_parse(text, len, &d, why, sizeof(why)) != OP_OK)
			fprintf(stderr, "outpostctl sign: %s: %s\n", doc, why);
		else if (!cJSON_IsObject(d) || !signable(d))
			fprintf(stderr,
			        "outpostctl sign: %s: the document needs \"seq\", an integer "
			        "above the last one the agents applied (desired state), or \"id\", "
			        "\"op\" and \"expires\" (a command)\n",
			        doc);
		else if (op_env_sign(seed, key.pub, key.kid, text, len, &env, why, sizeof(why)) !=
		         OP_OK)
			fprintf(stderr, "outpostctl sign: %s\n", why), rc = CTL_FAILED;
		else
			rc = CTL_OK;
		cJSON_Delete(d);
	}
	explicit_bzero(seed, sizeof(seed));
	if (rc == CTL_OK)
		printf("%s\n", env);
	op_free(env);
	op_free(text);
	return rc;
}

int op_ctl_verify(int argc, char **argv)
{
	struct op_env_key keys[KEYS_MAX];
	size_t n = 0;
	const char *envfile = NULL;
	unsigned long long last = 0;
	bool bad = false;
	if (wants_help(argc, argv, verify_usage))
		return CTL_OK;
	for (int i = 0; i < argc && !bad; i++) {
		if (strcmp(argv[i], "--pub") == 0 && i + 1 < argc && n < KEYS_MAX) {
			int rc = op_ctl_read_key(argv[++i], &keys[n], NULL);
			if (rc != CTL_OK)
				return rc;
			n++;
		} else if (strcmp(argv[i], "--last-seq") == 0 && i + 1 < argc) {
			char *end = NULL;
			last = strtoull(argv[++i], &end, 10);
			bad = *end != '\0' || argv[i][0] == '-';
		} else if ((argv[i][0] != '-' || strcmp(argv[i], "-") == 0) && envfile == NULL) {
			envfile = argv[i];
		} else {
			bad = true;
		}
	}
	if (bad || n == 0 || envfile == NULL) {
		fputs(verify_usage, stderr);
		return CTL_INVALID;
	}
	char *text = NULL, why[512];
	size_t len = 0;
	if (op_ctl_read_file(envfile, OP_ENV_MAX, &text, &len) != OP_OK)
		return CTL_INVALID;
	cJSON *doc = NULL;
	uint64_t seq = 0;
	op_err rc = op_env_open(text, len, keys, n, last, &doc, &seq, NULL, why, sizeof(why));
	op_free(text);
	if (rc) {
		fprintf(stderr, "outpostctl verify: %s: refused (%s): %s\n", envfile,
		        op_err_name(rc), why);
		return CTL_FAILED;
	}
	char *out = op_json_print(doc, OP_JSON_PRETTY);
	cJSON_Delete(doc);
	if (out == NULL)
		return CTL_FAILED;
	printf("%s\n", out);
	op_free(out);
	return CTL_OK;
}
