/*
 * HTTP Basic authentication against PBKDF2-SHA256 password hashes
 * ("pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>"), with a small cache of
 * recent successes. PBKDF2 at 100,000 iterations costs tens of milliseconds
 * per request on small hardware, and Basic clients send the password on every
 * request, so without a cache one busy client would keep a core busy hashing.
 * The cache stores only HMAC-SHA256(per-verifier random key, user index,
 * password) with a deadline, never a password; only successes are cached, so
 * a wrong password always pays the full PBKDF2 price (guessing is not made
 * cheaper), and at most max_hashing PBKDF2 runs go on at once per verifier
 * (past it: OP_EBUSY), so a flood of wrong passwords cannot take every core. Invariants: the cache
 * is the only state written after compile and is touched only under its mutex; an unknown user
 * costs the same PBKDF2 as a known one, so timing does not tell which user names exist.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/pwdbased.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "agent/auth/auth_int.h"
#include "agent/core/alloc.h"

#define SALT_MIN     8
#define SALT_MAX     64
#define DK_MIN       16
#define DK_MAX       64
#define HEADER_MAX   4096 /* longest base64 credential looked at */
#define PREFIX       "pbkdf2-sha256$"
#define NEW_SALT_LEN 16
#define NEW_DK_LEN   32

struct user {
	char *name;
	size_t nlen;
	unsigned iter;
	unsigned char salt[SALT_MAX];
	size_t saltlen;
	unsigned char dk[DK_MAX];
	size_t dklen;
};

struct cache_ent {
	unsigned char tag[WC_SHA256_DIGEST_SIZE];
	size_t user;
	int64_t born; /* request time it was stored; 0 = free slot */
	uint64_t used;
};

struct op_auth__basic {
	char *challenge;
	struct user *users;
	size_t n;
	struct user dummy; /* for unknown names: same cost as a real check */
	int64_t ttl;       /* 0: no cache */
	size_t cache_n;
	struct cache_ent *cache;
	unsigned char cache_key[32];
	uint64_t tick;
	long long max_hashing; /* PBKDF2 runs at once; past it OP_EBUSY */
	long long hashing;
	uint64_t hashed; /* PBKDF2 runs so far, for metrics and tests; under mu */
	pthread_mutex_t mu;
	bool mu_init;
};

static const struct op_auth__field basic_fields[] = {
    {.name = "type", .kind = OP_AUTH__STR, .required = true, .help = "\"basic\""},
    {.name = "users",
     .kind = OP_AUTH__ARR,
     .required = true,
     .help = "array of {name, hash} with hash \"pbkdf2-sha256$...\""},
    {.name = "realm", .kind = OP_AUTH__STR, .help = "realm in the 401 challenge (default outpost)"},
    {.name = "cache_ttl",
     .kind = OP_AUTH__INT,
     .min = 0,
     .max = 3600,
     .help = "seconds a verified password is remembered (default 60, 0 = off)"},
    {.name = "cache_size",
     .kind = OP_AUTH__INT,
     .min = 1,
     .max = 4096,
     .help = "successful verifications remembered (default 64)"},
    {.name = "max_hashing",
     .kind = OP_AUTH__INT,
     .min = 1,
     .max = 256,
     .help = "password hashes computed at once; more requests get busy (default 2)"},
};

static const struct op_auth__field user_fields[] = {
    {.name = "name", .kind = OP_AUTH__STR, .required = true, .help = "user name (no ':')"},
    {.name = "hash",
     .kind = OP_AUTH__STR,
     .required = true,
     .help = "\"pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>\""},
};

/* Parses a stored hash into u; on failure writes a reason into err. */
static bool parse_hash(const char *s, struct user *u, char *err, size_t errlen)
{
	size_t pl = strlen(PREFIX);
	if (strncmp(s, PREFIX, pl) != 0) {
		snprintf(err, errlen, "expected \"%s<iterations>$<salt base64>$<hash base64>\"",
		         PREFIX);
		return false;
	}
	s += pl;
	unsigned long long it = 0;
	size_t nd = 0;
	while (s[nd] >= '0' && s[nd] <= '9' && nd < 9) {
		it = it * 10 + (unsigned)(s[nd] - '0');
		nd++;
	}
	if (nd == 0 || s[nd] != '$' || (s[0] == '0')) {
		snprintf(err, errlen, "bad iteration count; expected a decimal number");
		return false;
	}
	if (it < OP_AUTH_PBKDF2_ITER_MIN || it > OP_AUTH_PBKDF2_ITER_MAX) {
		snprintf(err, errlen, "%llu iterations is out of range; expected %d to %d", it,
		         OP_AUTH_PBKDF2_ITER_MIN, OP_AUTH_PBKDF2_ITER_MAX);
		return false;
	}
	s += nd + 1;
	const char *dollar = strchr(s, '$');
	if (dollar == NULL ||
	    !op_b64_decode(s, (size_t)(dollar - s), false, u->salt, sizeof(u->salt), &u->saltlen) ||
	    u->saltlen < SALT_MIN) {
		snprintf(err, errlen, "bad salt; expected %d to %d bytes in base64", SALT_MIN,
		         SALT_MAX);
		return false;
	}
	s = dollar + 1;
	if (!op_b64_decode(s, strlen(s), false, u->dk, sizeof(u->dk), &u->dklen) ||
	    u->dklen < DK_MIN) {
		snprintf(err, errlen, "bad hash; expected %d to %d bytes in base64", DK_MIN,
		         DK_MAX);
		return false;
	}
	u->iter = (unsigned)it;
	return true;
}

static void wipe_user(struct user *u)
{
	op_free(u->name);
	u->name = NULL;
	explicit_bzero(u->dk, sizeof(u->dk));
	explicit_bzero(u->salt, sizeof(u->salt));
}

void op_auth__basic_free(struct op_auth__basic *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; b->users && i < b->n; i++)
		wipe_user(&b->users[i]);
	op_free(b->users);
	if (b->cache)
		op_free_secret(b->cache, b->cache_n * sizeof(*b->cache));
	op_free(b->challenge);
	if (b->mu_init)
		pthread_mutex_destroy(&b->mu);
	op_free_secret(b, sizeof(*b));
}

static op_err random_bytes(unsigned char *p, size_t n)
{
	WC_RNG rng;
	if (wc_InitRng(&rng) != 0)
		return OP_EINTERNAL;
	int r = wc_RNG_GenerateBlock(&rng, p, (unsigned)n);
	wc_FreeRng(&rng);
	return r == 0 ? OP_OK : OP_EINTERNAL;
}

op_err op_auth__basic_compile(const cJSON *cfg, struct op_diag *d, struct op_auth *a)
{
	if (!op_auth__check_object(d, cfg, basic_fields, OP_AUTH__N(basic_fields)))
		return OP_ECONFIG;
	op_err rc = OP_OK;
	struct op_auth__basic *b = op_calloc(1, sizeof(*b));
	if (b == NULL)
		return OP_ENOMEM;
	a->basic = b;
	const cJSON *realm = cJSON_GetObjectItemCaseSensitive(cfg, "realm");
	const char *rs = realm ? realm->valuestring : "outpost";
	for (const char *p = rs; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\') {
			op_diag_add(d, "realm",
			            "must not hold quotes, backslashes or control characters");
			rc = OP_ECONFIG;
			break;
		}
	}
	size_t clen = strlen(rs) + sizeof("Basic realm=\"\", charset=\"UTF-8\"");
	if ((b->challenge = op_malloc(clen)) == NULL)
		return OP_ENOMEM;
	snprintf(b->challenge, clen, "Basic realm=\"%s\", charset=\"UTF-8\"", rs);
	b->ttl = op_auth__int(cfg, "cache_ttl", 60);
	b->cache_n = (size_t)op_auth__int(cfg, "cache_size", 64);
	b->max_hashing = op_auth__int(cfg, "max_hashing", 2);

	const cJSON *users = cJSON_GetObjectItemCaseSensitive(cfg, "users");
	size_t n = (size_t)cJSON_GetArraySize(users);
	if (n == 0) {
		op_diag_add(d, "users", "expected at least one user");
		return OP_ECONFIG;
	}
	if ((b->users = op_calloc(n, sizeof(*b->users))) == NULL)
		return OP_ENOMEM;
	b->n = n;
	size_t m = op_diag_push_key(d, "users");
	size_t i = 0;
	const cJSON *it;
	cJSON_ArrayForEach (it, users) {
		size_t mi = op_diag_push_index(d, i);
		struct user *u = &b->users[i];
		if (!op_auth__check_object(d, it, user_fields, OP_AUTH__N(user_fields))) {
			rc = OP_ECONFIG;
		} else {
			const char *name =
			    cJSON_GetObjectItemCaseSensitive(it, "name")->valuestring;
			const char *hash =
			    cJSON_GetObjectItemCaseSensitive(it, "hash")->valuestring;
			char err[128];
			if (*name == '\0' || strchr(name, ':') || strlen(name) > 256) {
				op_diag_add(d, "name", "expected 1 to 256 characters without ':'");
				rc = OP_ECONFIG;
			}
			if (!parse_hash(hash, u, err, sizeof(err))) {
				op_diag_add(d, "hash", "%s", err);
				rc = OP_ECONFIG;
			}
			for (size_t j = 0; j < i; j++) {
				if (b->users[j].name && strcmp(b->users[j].name, name) == 0) {
					op_diag_add(d, "name",
					            "user \"%.64s\" is given by users[%zu] too",
					            name, j);
					rc = OP_ECONFIG;
				}
			}
			if ((u->name = op_strdup(name)) == NULL) {
				op_diag_pop(d, m);
				return OP_ENOMEM;
			}
			u->nlen = strlen(name);
		}
		op_diag_pop(d, mi);
		i++;
	}
	op_diag_pop(d, m);
	if (rc != OP_OK)
		return rc;
	/* The decoy for unknown names costs what the first user costs. */
	b->dummy = b->users[0];
	b->dummy.name = NULL;
	if (b->ttl > 0 && (b->cache = op_calloc(b->cache_n, sizeof(*b->cache))) == NULL)
		return OP_ENOMEM;
	if ((rc = random_bytes(b->cache_key, sizeof(b->cache_key))) != OP_OK)
		return rc;
	if (pthread_mutex_init(&b->mu, NULL) != 0)
		return OP_EINTERNAL;
	b->mu_init = true;
	a->challenge = b->challenge;
	return OP_OK;
}

static bool cache_tag(const struct op_auth__basic *b, size_t user, const char *pw, size_t pwlen,
                      unsigned char *tag)
{
	Hmac h;
	unsigned char u[sizeof(uint64_t)];
	uint64_t x = user;
	memcpy(u, &x, sizeof(u));
	bool ok = wc_HmacInit(&h, NULL, INVALID_DEVID) == 0;
	if (!ok)
		return false;
	ok = wc_HmacSetKey(&h, WC_SHA256, b->cache_key, sizeof(b->cache_key)) == 0 &&
	     wc_HmacUpdate(&h, u, sizeof(u)) == 0 &&
	     wc_HmacUpdate(&h, (const unsigned char *)pw, (unsigned)pwlen) == 0 &&
	     wc_HmacFinal(&h, tag) == 0;
	wc_HmacFree(&h);
	return ok;
}

static bool fresh(const struct op_auth__basic *b, const struct cache_ent *e, int64_t now)
{
	return e->born != 0 && now >= e->born && now < e->born + b->ttl;
}

/* Looks the tag up, and stores it when store is set. Takes the mutex. */
static bool cache_op(struct op_auth__basic *b, size_t user, const unsigned char *tag, int64_t now,
                     bool store)
{
	bool hit = false;
	pthread_mutex_lock(&b->mu);
	b->tick++;
	if (!store) {
		for (size_t i = 0; i < b->cache_n; i++) {
			struct cache_ent *e = &b->cache[i];
			bool eq = op_auth__ct_eq(e->tag, tag, sizeof(e->tag));
			if (eq && e->user == user && fresh(b, e, now)) {
				e->used = b->tick;
				hit = true;
			}
		}
	} else {
		/* A free or stale slot, else the least recently used one. */
		size_t victim = 0;
		for (size_t i = 0; i < b->cache_n; i++) {
			struct cache_ent *e = &b->cache[i];
			if (!fresh(b, e, now)) {
				victim = i;
				break;
			}
			if (e->used < b->cache[victim].used)
				victim = i;
		}
		struct cache_ent *e = &b->cache[victim];
		memcpy(e->tag, tag, sizeof(e->tag));
		e->user = user;
		e->born = now;
		e->used = b->tick;
	}
	pthread_mutex_unlock(&b->mu);
	return hit;
}

op_err op_auth__basic_check(const struct op_auth *a, const struct op_auth_request *req,
                            cJSON **claims, char *why, size_t whylen)
{
	struct op_auth__basic *b = a->basic;
	const char *v;
	size_t len;
	op_err rc = OP_OK;
	unsigned char *cred = NULL;
	size_t clen = 0, cap = 0;
	char shown[72];
	unsigned char tag[WC_SHA256_DIGEST_SIZE] = {0};
	if (!op_auth__header(req, "Authorization", &v, &len))
		return op_auth__fail(why, whylen, "no Authorization header");
	if (!op_auth__scheme(v, len, "Basic", &v, &len))
		return op_auth__fail(why, whylen, "Authorization header is not of scheme Basic");
	while (len > 0 && v[len - 1] == ' ')
		len--;
	if (len > HEADER_MAX)
		return op_auth__fail(why, whylen, "Basic credentials longer than %d bytes",
		                     HEADER_MAX);
	cap = op_b64_decoded_max(len);
	if ((cred = op_malloc(cap)) == NULL)
		return op_auth__failc(OP_ENOMEM, why, whylen, "out of memory");
	if (!op_b64_decode(v, len, false, cred, cap, &clen)) {
		rc = op_auth__fail(why, whylen, "Basic credentials are not valid base64");
		goto out;
	}
	const unsigned char *colon = memchr(cred, ':', clen);
	if (colon == NULL) {
		rc = op_auth__fail(why, whylen, "Basic credentials have no ':'");
		goto out;
	}
	size_t nlen = (size_t)(colon - cred);
	const char *pw = (const char *)colon + 1;
	size_t pwlen = clen - nlen - 1;
	op_auth__printable((const char *)cred, nlen, shown, sizeof(shown));
	size_t ui = b->n;
	for (size_t i = 0; i < b->n; i++) {
		if (b->users[i].nlen == nlen && memcmp(b->users[i].name, cred, nlen) == 0)
			ui = i;
	}
	const struct user *u = ui < b->n ? &b->users[ui] : &b->dummy;
	int64_t now = req && req->now ? req->now : (int64_t)time(NULL);
	bool tagged = false;
	if (ui < b->n && b->cache) {
		tagged = cache_tag(b, ui, pw, pwlen, tag);
		if (tagged && cache_op(b, ui, tag, now, false))
			goto ok;
	}
	/*
	 * Each uncached check burns a core for PBKDF2's duration; bounding how
	 * many run at once keeps a flood of wrong passwords from starving the
	 * agent. The caller answers 503 and the client retries.
	 */
	pthread_mutex_lock(&b->mu);
	bool admitted = b->hashing < b->max_hashing;
	if (admitted)
		b->hashing++;
	pthread_mutex_unlock(&b->mu);
	if (!admitted) {
		rc = op_auth__failc(OP_EBUSY, why, whylen,
		                    "%lld password checks already running (max_hashing)",
		                    b->max_hashing);
		goto out;
	}
	unsigned char dk[DK_MAX];
	int pr = wc_PBKDF2(dk, (const unsigned char *)pw, (int)pwlen, u->salt, (int)u->saltlen,
	                   (int)u->iter, (int)u->dklen, WC_SHA256);
	pthread_mutex_lock(&b->mu);
	b->hashing--;
	b->hashed++;
	pthread_mutex_unlock(&b->mu);
	if (pr != 0) {
		rc = op_auth__failc(OP_EINTERNAL, why, whylen, "PBKDF2 failed");
		goto out;
	}
	bool eq = op_auth__ct_eq(dk, u->dk, u->dklen);
	explicit_bzero(dk, sizeof(dk));
	if (ui == b->n) {
		rc = op_auth__fail(why, whylen, "unknown user \"%s\"", shown);
		goto out;
	}
	if (!eq) {
		rc = op_auth__fail(why, whylen, "wrong password for user \"%s\"", shown);
		goto out;
	}
	if (tagged)
		(void)cache_op(b, ui, tag, now, true);
ok:;
	cJSON *c = cJSON_CreateObject();
	if (c == NULL || !cJSON_AddStringToObject(c, "type", "basic") ||
	    !cJSON_AddStringToObject(c, "user", u->name)) {
		cJSON_Delete(c);
		rc = op_auth__failc(OP_ENOMEM, why, whylen, "out of memory");
		goto out;
	}
	*claims = c;
out:
	explicit_bzero(tag, sizeof(tag));
	op_free_secret(cred, cap);
	return rc;
}

op_err op_auth_hash_password(const char *password, size_t len, unsigned iterations, char **out)
{
	*out = NULL;
	op_auth__crypto_init();
	if (iterations == 0)
		iterations = OP_AUTH_PBKDF2_ITER_DEFAULT;
	if (iterations < OP_AUTH_PBKDF2_ITER_MIN || iterations > OP_AUTH_PBKDF2_ITER_MAX)
		return OP_EINVAL;
	unsigned char salt[NEW_SALT_LEN], dk[NEW_DK_LEN];
	op_err rc = random_bytes(salt, sizeof(salt));
	if (rc != OP_OK)
		return rc;
	if (wc_PBKDF2(dk, (const unsigned char *)password, (int)len, salt, sizeof(salt),
	              (int)iterations, sizeof(dk), WC_SHA256) != 0)
		return OP_EINTERNAL;
	char s64[32], d64[64];
	op_b64_encode(salt, sizeof(salt), false, s64, sizeof(s64));
	op_b64_encode(dk, sizeof(dk), false, d64, sizeof(d64));
	explicit_bzero(dk, sizeof(dk));
	size_t n = strlen(PREFIX) + 12 + strlen(s64) + strlen(d64) + 3;
	char *s = op_malloc(n);
	if (s == NULL)
		return OP_ENOMEM;
	snprintf(s, n, "%s%u$%s$%s", PREFIX, iterations, s64, d64);
	*out = s;
	return OP_OK;
}

uint64_t op_auth__basic_hashed(struct op_auth__basic *b)
{
	pthread_mutex_lock(&b->mu);
	uint64_t n = b->hashed;
	pthread_mutex_unlock(&b->mu);
	return n;
}
