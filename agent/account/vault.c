/*
 * Sealed accounts on disk (format and rules in vault.h). Every buffer that
 * held a key or a plaintext document is wiped before it is freed.
 */
#define OP_LOG_MODULE "vault"

#include "agent/account/vault.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hash.h>

#include "agent/core/alloc.h"
#include "agent/core/file.h"
#include "agent/core/json.h"
#include "agent/core/uuid.h"

#define MAGIC     "OPA1"
#define MAGIC_LEN 4
#define KID_LEN   8
#define NONCE_LEN 12
#define TAG_LEN   16
#define HDR_LEN   (MAGIC_LEN + KID_LEN + NONCE_LEN)
#define AAD_TAG   "outpost account"
#define SUFFIX    ".acct"

struct op_vault {
	char *dir;
	uint8_t key[OP_VAULT_KEY_LEN];
	uint8_t kid[KID_LEN];
	char kid_hex[2 * KID_LEN + 1];
};

static const char *errno_text(int e, char *buf, size_t len)
{
	return strerror_r(e, buf, len);
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static op_err key_id(const uint8_t key[OP_VAULT_KEY_LEN], uint8_t kid[KID_LEN])
{
	uint8_t h[32];
	if (wc_Sha256Hash(key, OP_VAULT_KEY_LEN, h) != 0)
		return OP_EINTERNAL;
	memcpy(kid, h, KID_LEN);
	return OP_OK;
}

/* AAD: the tag string, its NUL, then the name. */
static size_t make_aad(const char *name, uint8_t *aad, size_t cap)
{
	size_t t = sizeof(AAD_TAG), n = strlen(name);
	if (t + n > cap)
		return 0;
	memcpy(aad, AAD_TAG, t);
	for (size_t i = 0; i < n; i++)
		aad[t + i] = (uint8_t)name[i];
	return t + n;
}

op_err op_vault_seal(const uint8_t key[OP_VAULT_KEY_LEN], const char *name, const void *plain,
                     size_t len, uint8_t **out, size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	uint8_t aad[sizeof(AAD_TAG) + OP_ACCOUNT_NAME_MAX];
	size_t alen = make_aad(name, aad, sizeof(aad));
	if (alen == 0 || len > OP_VAULT_FILE_MAX)
		return OP_EINVAL;
	size_t total = HDR_LEN + len + TAG_LEN;
	uint8_t *b = op_malloc(total);
	if (b == NULL)
		return OP_ENOMEM;
	memcpy(b, MAGIC, MAGIC_LEN);
	op_err e = key_id(key, b + MAGIC_LEN);
	if (e == OP_OK)
		e = op_random_bytes(b + MAGIC_LEN + KID_LEN, NONCE_LEN);
	Aes aes;
	bool inited = false;
	if (e == OP_OK && wc_AesInit(&aes, NULL, INVALID_DEVID) == 0) {
		inited = true;
		if (wc_AesGcmSetKey(&aes, key, OP_VAULT_KEY_LEN) != 0 ||
		    wc_AesGcmEncrypt(&aes, b + HDR_LEN, plain, (word32)len, b + MAGIC_LEN + KID_LEN,
		                     NONCE_LEN, b + HDR_LEN + len, TAG_LEN, aad, (word32)alen) != 0)
			e = OP_EINTERNAL;
	} else if (e == OP_OK) {
		e = OP_EINTERNAL;
	}
	if (inited)
		wc_AesFree(&aes);
	explicit_bzero(&aes, sizeof(aes));
	if (e) {
		op_free(b);
		return e;
	}
	*out = b;
	*outlen = total;
	return OP_OK;
}

op_err op_vault_unseal(const uint8_t key[OP_VAULT_KEY_LEN], const char *name, const uint8_t *in,
                       size_t len, char **plain, size_t *plen)
{
	*plain = NULL;
	*plen = 0;
	uint8_t aad[sizeof(AAD_TAG) + OP_ACCOUNT_NAME_MAX];
	size_t alen = make_aad(name, aad, sizeof(aad));
	if (alen == 0)
		return OP_EINVAL;
	if (len < HDR_LEN + TAG_LEN || memcmp(in, MAGIC, MAGIC_LEN) != 0)
		return OP_ECORRUPT;
	uint8_t kid[KID_LEN];
	op_err e = key_id(key, kid);
	if (e)
		return e;
	if (memcmp(kid, in + MAGIC_LEN, KID_LEN) != 0)
		return OP_EAUTH;
	size_t n = len - HDR_LEN - TAG_LEN;
	char *p = op_malloc(n + 1);
	if (p == NULL)
		return OP_ENOMEM;
	Aes aes;
	e = OP_EINTERNAL;
	if (wc_AesInit(&aes, NULL, INVALID_DEVID) == 0) {
		if (wc_AesGcmSetKey(&aes, key, OP_VAULT_KEY_LEN) == 0) {
			int rc = wc_AesGcmDecrypt(&aes, (uint8_t *)p, in + HDR_LEN, (word32)n,
			                          in + MAGIC_LEN + KID_LEN, NONCE_LEN,
			                          in + HDR_LEN + n, TAG_LEN, aad, (word32)alen);
			e = rc == 0 ? OP_OK : OP_ECORRUPT;
		}
		wc_AesFree(&aes);
	}
	explicit_bzero(&aes, sizeof(aes));
	if (e) {
		explicit_bzero(p, n);
		op_free(p);
		return e;
	}
	p[n] = '\0';
	*plain = p;
	*plen = n;
	return OP_OK;
}

/* ---- the key file ---- */

static op_err key_create(const char *path, uint8_t key[OP_VAULT_KEY_LEN], char *err, size_t errlen)
{
	char eb[128];
	if (op_random_bytes(key, OP_VAULT_KEY_LEN) != OP_OK)
		return op_errf(err, errlen, OP_EIO, "%s: no random bytes for a new key", path);
	char text[64];
	word32 tlen = sizeof(text);
	if (Base64_Encode_NoNl(key, OP_VAULT_KEY_LEN, (byte *)text, &tlen) != 0 ||
	    tlen + 1 >= sizeof(text))
		return op_errf(err, errlen, OP_EINTERNAL, "%s: cannot encode the new key", path);
	text[tlen++] = '\n';
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return op_errf(err, errlen, OP_EIO, "%s: cannot create the accounts key: %s", path,
		               errno_text(errno, eb, sizeof(eb)));
	bool ok = write(fd, text, tlen) == (ssize_t)tlen && fsync(fd) == 0;
	int werr = errno;
	close(fd);
	explicit_bzero(text, sizeof(text));
	if (!ok) {
		unlink(path);
		return op_errf(err, errlen, OP_EIO, "%s: cannot write the accounts key: %s", path,
		               errno_text(werr, eb, sizeof(eb)));
	}
	return OP_OK;
}

static op_err key_load(const char *path, bool create, uint8_t key[OP_VAULT_KEY_LEN], char *err,
                       size_t errlen)
{
	char eb[128];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT && create)
		return key_create(path, key, err, errlen);
	if (fd < 0 && errno == ENOENT)
		return op_errf(err, errlen, OP_ECONFIG,
		               "%s: no accounts key (it is made when the first account is set)",
		               path);
	if (fd < 0)
		return op_errf(err, errlen, OP_ECONFIG, "%s: cannot open the accounts key: %s",
		               path, errno_text(errno, eb, sizeof(eb)));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return op_errf(err, errlen, OP_ECONFIG,
		               "%s: the accounts key is not a regular file", path);
	}
	if (st.st_mode & 077) {
		close(fd);
		return op_errf(err, errlen, OP_ECONFIG,
		               "%s: the accounts key is readable by group or others (mode %03o); "
		               "chmod 600 it",
		               path, (unsigned)(st.st_mode & 0777));
	}
	uint8_t buf[128];
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	op_err e = OP_OK;
	if (n == OP_VAULT_KEY_LEN) {
		memcpy(key, buf, OP_VAULT_KEY_LEN);
	} else {
		size_t len = n > 0 ? (size_t)n : 0;
		while (len > 0 &&
		       (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
			len--;
		uint8_t dec[sizeof(buf)]; /* Base64_Decode wants room for 3 bytes per 4 */
		word32 klen = sizeof(dec);
		if (n < 0 || len == (size_t)sizeof(buf) ||
		    Base64_Decode(buf, (word32)len, dec, &klen) != 0 || klen != OP_VAULT_KEY_LEN)
			e = op_errf(err, errlen, OP_ECONFIG,
			            "%s: the accounts key must be 32 bytes, raw or in base64",
			            path);
		else
			memcpy(key, dec, OP_VAULT_KEY_LEN);
		explicit_bzero(dec, sizeof(dec));
	}
	explicit_bzero(buf, sizeof(buf));
	return e;
}

/* ---- files ---- */

static op_err path_of(const struct op_vault *v, const char *name, bool tmp, char *out, size_t cap)
{
	if (!op_account_name_ok(name))
		return OP_EINVAL;
	int n = snprintf(out, cap, "%s/%s%s%s", v->dir, tmp ? "." : "", name,
	                 tmp ? SUFFIX ".tmp" : SUFFIX);
	return n > 0 && (size_t)n < cap ? OP_OK : OP_ELIMIT;
}

/* mkdir -p with mode 0700 for what it creates; 0 or -1 with errno. */
static int mkdir_p(const char *dir)
{
	char p[PATH_MAX];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof(p)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(p, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		char c = p[i];
		p[i] = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST)
			return -1;
		p[i] = c;
	}
	return 0;
}

op_err op_vault_open(const char *dir, const char *key_file, bool create_key, struct op_vault **out,
                     char *err, size_t errlen)
{
	char eb[128];
	*out = NULL;
	if (mkdir_p(dir) != 0)
		return op_errf(err, errlen, OP_EIO, "%s: cannot create the accounts folder: %s",
		               dir, errno_text(errno, eb, sizeof(eb)));
	struct op_vault *v = op_calloc(1, sizeof(*v));
	if (v == NULL || (v->dir = op_strdup(dir)) == NULL) {
		op_free(v);
		return op_errf(err, errlen, OP_ENOMEM, "out of memory");
	}
	op_err e = key_load(key_file, create_key, v->key, err, errlen);
	if (e == OP_OK)
		e = key_id(v->key, v->kid);
	if (e) {
		op_vault_close(v);
		return e;
	}
	hex(v->kid, KID_LEN, v->kid_hex);
	*out = v;
	return OP_OK;
}

void op_vault_close(struct op_vault *v)
{
	if (v == NULL)
		return;
	op_free(v->dir);
	explicit_bzero(v, sizeof(*v));
	op_free(v);
}

const char *op_vault_key_id(const struct op_vault *v)
{
	return v->kid_hex;
}

/* Writes data to path through the temporary file tmp and a rename. */
static op_err write_file(const struct op_vault *v, const char *path, const char *tmp,
                         const uint8_t *data, size_t len, char *err, size_t errlen)
{
	char eb[128];
	(void)unlink(tmp); /* left by a writer that died */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return op_errf(err, errlen, OP_EIO, "%s: cannot create: %s", tmp,
		               errno_text(errno, eb, sizeof(eb)));
	struct stat dst;
	bool ok = write(fd, data, len) == (ssize_t)len;
	/* root managing the service's vault: the file is the service's. */
	if (ok && stat(v->dir, &dst) == 0 && dst.st_uid != geteuid())
		ok = fchown(fd, dst.st_uid, dst.st_gid) == 0;
	ok = ok && fsync(fd) == 0;
	int werr = errno;
	close(fd);
	if (ok && rename(tmp, path) != 0) {
		ok = false;
		werr = errno;
	}
	if (!ok) {
		(void)unlink(tmp);
		return op_errf(err, errlen, werr == ENOSPC ? OP_EFULL : OP_EIO,
		               "%s: cannot write: %s", path, errno_text(werr, eb, sizeof(eb)));
	}
	int dfd = open(v->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return OP_OK;
}

/* Writes account name's file through a temporary file and a rename. */
static op_err write_atomic(const struct op_vault *v, const char *name, const uint8_t *data,
                           size_t len, char *err, size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	if (path_of(v, name, false, path, sizeof(path)) || path_of(v, name, true, tmp, sizeof(tmp)))
		return op_errf(err, errlen, OP_ELIMIT, "%s: the path is too long", v->dir);
	return write_file(v, path, tmp, data, len, err, errlen);
}

op_err op_vault_secret(struct op_vault *v, const char *id,
                       op_err (*make)(void *ud, uint8_t out[OP_VAULT_SECRET_LEN]), void *ud,
                       uint8_t out[OP_VAULT_SECRET_LEN], char *err, size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX], aad[OP_ACCOUNT_NAME_MAX], eb[128];
	if (!op_account_name_ok(id))
		return op_errf(err, errlen, OP_EINVAL, "'%s' is not a secret's name", id);
	/* Not an account: another file suffix, and a name no account has. */
	snprintf(path, sizeof(path), "%s/%s.secret", v->dir, id);
	snprintf(tmp, sizeof(tmp), "%s/.%s.secret.tmp", v->dir, id);
	snprintf(aad, sizeof(aad), "secret:%.40s", id);
	uint8_t *sealed = NULL;
	size_t slen = 0;
	op_err e = op_file_read(path, OP_VAULT_FILE_MAX, (char **)&sealed, &slen, eb, sizeof(eb));
	if (e == OP_OK) {
		char *plain = NULL;
		size_t plen = 0;
		e = op_vault_unseal(v->key, aad, sealed, slen, &plain, &plen);
		op_free(sealed);
		if (e == OP_OK && plen != OP_VAULT_SECRET_LEN)
			e = OP_ECORRUPT;
		if (e == OP_OK)
			memcpy(out, plain, OP_VAULT_SECRET_LEN);
		if (plain)
			explicit_bzero(plain, plen);
		op_free(plain);
		if (e == OP_EAUTH)
			return op_errf(err, errlen, e, "%s: sealed with another key than %s", path,
			               v->kid_hex);
		if (e)
			return op_errf(err, errlen, e, "%s: damaged (%s)", path, op_err_str(e));
		return OP_OK;
	}
	if (e != OP_ENOTFOUND)
		return op_errf(err, errlen, e, "%s: cannot read: %s", path, eb);
	e = make(ud, out);
	if (e == OP_OK)
		e = op_vault_seal(v->key, aad, out, OP_VAULT_SECRET_LEN, &sealed, &slen);
	if (e)
		return op_errf(err, errlen, e, "%s: cannot make the secret: %s", path,
		               op_err_str(e));
	e = write_file(v, path, tmp, sealed, slen, err, errlen);
	op_free(sealed);
	if (e)
		explicit_bzero(out, OP_VAULT_SECRET_LEN);
	return e;
}

op_err op_vault_put(struct op_vault *v, struct op_account *a, char *err, size_t errlen)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t was = a->updated_ms;
	a->updated_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	cJSON *doc = op_account_to_json(a);
	char *text = doc ? op_json_print(doc, OP_JSON_COMPACT) : NULL;
	op_account_json_free(doc);
	if (text == NULL) {
		a->updated_ms = was;
		return op_errf(err, errlen, OP_ENOMEM, "out of memory");
	}
	uint8_t *sealed = NULL;
	size_t slen = 0;
	size_t tlen = strlen(text);
	op_err e = op_vault_seal(v->key, a->name, text, tlen, &sealed, &slen);
	explicit_bzero(text, tlen);
	op_free(text);
	if (e == OP_OK)
		e = write_atomic(v, a->name, sealed, slen, err, errlen);
	else
		op_errf(err, errlen, e, "account %s: cannot seal it: %s", a->name, op_err_str(e));
	op_free(sealed);
	if (e)
		a->updated_ms = was;
	return e;
}

/* The file of account name, or an error naming what is wrong with name. */
static op_err account_path(const struct op_vault *v, const char *name, char *path, size_t cap,
                           char *err, size_t errlen)
{
	if (!op_account_name_ok(name))
		return op_errf(err, errlen, OP_EINVAL, "'%s' is not an account name",
		               name ? name : "");
	if (path_of(v, name, false, path, cap))
		return op_errf(err, errlen, OP_ELIMIT, "%s: the path is too long", v->dir);
	return OP_OK;
}

op_err op_vault_get(struct op_vault *v, const char *name, struct op_account **out, char *err,
                    size_t errlen)
{
	char path[PATH_MAX], eb[128];
	*out = NULL;
	op_err pe = account_path(v, name, path, sizeof(path), err, errlen);
	if (pe)
		return pe;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT
		           ? op_errf(err, errlen, OP_ENOTFOUND, "no account named %s", name)
		           : op_errf(err, errlen, OP_EIO, "%s: cannot open: %s", path,
		                     errno_text(errno, eb, sizeof(eb)));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > OP_VAULT_FILE_MAX) {
		close(fd);
		return op_errf(err, errlen, OP_ECORRUPT, "%s: not a sealed account (size or type)",
		               path);
	}
	size_t len = (size_t)st.st_size;
	uint8_t *buf = op_malloc(len ? len : 1);
	if (buf == NULL) {
		close(fd);
		return op_errf(err, errlen, OP_ENOMEM, "out of memory");
	}
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n <= 0 && !(n < 0 && errno == EINTR))
			break;
		if (n > 0)
			got += (size_t)n;
	}
	close(fd);
	char *text = NULL;
	size_t tlen = 0;
	op_err e = got == len ? op_vault_unseal(v->key, name, buf, len, &text, &tlen) : OP_EIO;
	if (e == OP_EAUTH) {
		char kid[2 * KID_LEN + 1];
		hex(buf + MAGIC_LEN, KID_LEN, kid);
		op_errf(err, errlen, e,
		        "account %s was sealed with another key (key id %s; this agent's is %s)",
		        name, kid, v->kid_hex);
	} else if (e == OP_ECORRUPT) {
		op_errf(err, errlen, e,
		        "account %s: %s does not open: damaged, or renamed from another "
		        "account",
		        name, path);
	} else if (e) {
		op_errf(err, errlen, e, "account %s: cannot read %s: %s", name, path,
		        op_err_str(e));
	}
	op_free(buf);
	if (e)
		return e;
	cJSON *doc = cJSON_ParseWithLength(text, tlen);
	explicit_bzero(text, tlen);
	op_free(text);
	struct op_diag d;
	op_diag_init(&d);
	e = doc ? op_account_parse(name, doc, out, &d) : OP_ECORRUPT;
	op_account_json_free(doc);
	if (e == OP_ENOMEM)
		op_errf(err, errlen, e, "out of memory");
	else if (e)
		op_errf(err, errlen, OP_ECORRUPT,
		        "account %s: the sealed document is not a valid account (%s%s%s)", name,
		        d.n ? d.v[0].path : "not JSON", d.n ? ": " : "", d.n ? d.v[0].msg : "");
	op_diag_fini(&d);
	return e == OP_OK ? OP_OK : (e == OP_ENOMEM ? e : OP_ECORRUPT);
}

op_err op_vault_delete(struct op_vault *v, const char *name, char *err, size_t errlen)
{
	char path[PATH_MAX], eb[128];
	op_err pe = account_path(v, name, path, sizeof(path), err, errlen);
	if (pe)
		return pe;
	if (unlink(path) != 0)
		return errno == ENOENT
		           ? op_errf(err, errlen, OP_ENOTFOUND, "no account named %s", name)
		           : op_errf(err, errlen, OP_EIO, "%s: cannot remove: %s", path,
		                     errno_text(errno, eb, sizeof(eb)));
	int dfd = open(v->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return OP_OK;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

op_err op_vault_list(struct op_vault *v, char ***names, size_t *n)
{
	*names = NULL;
	*n = 0;
	DIR *dp = opendir(v->dir);
	if (dp == NULL)
		return errno == ENOENT ? OP_OK : OP_EIO;
	char **vec = NULL;
	size_t cnt = 0, cap = 0;
	op_err e = OP_OK;
	for (struct dirent *de; (de = readdir(dp)) != NULL;) {
		size_t len = strlen(de->d_name), sl = sizeof(SUFFIX) - 1;
		if (len <= sl || strcmp(de->d_name + len - sl, SUFFIX) != 0)
			continue;
		char *name = op_strndup(de->d_name, len - sl);
		if (name == NULL) {
			e = OP_ENOMEM;
			break;
		}
		if (!op_account_name_ok(name)) {
			op_free(name);
			continue;
		}
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 16;
			char **nv = op_realloc(vec, nc * sizeof(*nv));
			if (nv == NULL) {
				op_free(name);
				e = OP_ENOMEM;
				break;
			}
			vec = nv;
			cap = nc;
		}
		vec[cnt++] = name;
	}
	closedir(dp);
	if (e) {
		op_vault_names_free(vec, cnt);
		return e;
	}
	if (cnt > 1)
		qsort(vec, cnt, sizeof(*vec), cmp_names);
	*names = vec;
	*n = cnt;
	return OP_OK;
}

void op_vault_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		op_free(names[i]);
	op_free(names);
}
