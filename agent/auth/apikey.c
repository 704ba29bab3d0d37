/*
 * API key authentication. The config holds only SHA-256 digests of the keys
 * ("sha256:<hex>"): API keys are long random strings, so a fast unsalted hash
 * is enough to make a leaked config useless for calling us (GitHub and Stripe
 * store tokens the same way) and keeps each check to one hash. Invariant: a
 * presented key is compared with every configured digest in constant time,
 * whichever matches, so timing tells nothing about which digest came close.
 */
#include <string.h>
#include <strings.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "agent/auth/auth_int.h"
#include "agent/core/alloc.h"
#include "agent/core/b64.h"

#define KEY_MAX 1024 /* longest key looked at */

struct op_auth__apikey {
	char *header;       /* header to read, or NULL with scheme */
	const char *scheme; /* "ApiKey"/"Bearer" in Authorization, or NULL */
	size_t n;
	char **names;
	unsigned char (*digests)[WC_SHA256_DIGEST_SIZE];
};

static const struct op_auth__field apikey_fields[] = {
    {.name = "type", .kind = OP_AUTH__STR, .required = true, .help = "\"apikey\""},
    {.name = "keys",
     .kind = OP_AUTH__ARR,
     .required = true,
     .help = "array of {name, hash} with hash \"sha256:<hex>\""},
    {.name = "header",
     .kind = OP_AUTH__STR,
     .help = "header holding the key (default X-API-Key); not with scheme"},
    {.name = "scheme",
     .kind = OP_AUTH__STR,
     .help = "\"ApiKey\" or \"Bearer\": read \"Authorization: <scheme> <key>\" instead"},
};

static const struct op_auth__field key_fields[] = {
    {.name = "name", .kind = OP_AUTH__STR, .required = true, .help = "who holds the key"},
    {.name = "hash", .kind = OP_AUTH__STR, .required = true, .help = "\"sha256:<64 hex digits>\""},
};

static bool parse_digest(const char *s, unsigned char *out)
{
	if (strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 2 * WC_SHA256_DIGEST_SIZE)
		return false;
	s += 7;
	for (size_t i = 0; i < WC_SHA256_DIGEST_SIZE; i++) {
		int h = op_hex_value(s[2 * i]), l = op_hex_value(s[2 * i + 1]);
		if (h < 0 || l < 0)
			return false;
		out[i] = (unsigned char)(h << 4 | l);
	}
	return true;
}

static bool header_name_ok(const char *s)
{
	if (*s == '\0' || strlen(s) > 64)
		return false;
	for (; *s; s++) {
		/* RFC 9110 token characters. */
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("!#$%&'*+-.^_`|~", *s)))
			return false;
	}
	return true;
}

void op_auth__apikey_free(struct op_auth__apikey *k)
{
	if (k == NULL)
		return;
	op_free(k->header);
	op_auth__strings_free(k->names, k->n);
	if (k->digests)
		op_free_secret(k->digests, k->n * sizeof(*k->digests));
	op_free(k);
}

op_err op_auth__apikey_compile(const cJSON *cfg, struct op_diag *d, struct op_auth *a)
{
	if (!op_auth__check_object(d, cfg, apikey_fields, OP_AUTH__N(apikey_fields)))
		return OP_ECONFIG;
	op_err rc = OP_OK;
	struct op_auth__apikey *k = op_calloc(1, sizeof(*k));
	if (k == NULL)
		return OP_ENOMEM;
	a->apikey = k;
	const cJSON *hdr = cJSON_GetObjectItemCaseSensitive(cfg, "header");
	const cJSON *sch = cJSON_GetObjectItemCaseSensitive(cfg, "scheme");
	if (sch != NULL) {
		if (strcmp(sch->valuestring, "ApiKey") == 0)
			k->scheme = "ApiKey";
		else if (strcmp(sch->valuestring, "Bearer") == 0)
			k->scheme = "Bearer";
		else {
			op_diag_add(d, "scheme",
			            "unknown value \"%.64s\"; expected \"ApiKey\" or \"Bearer\"",
			            sch->valuestring);
			rc = OP_ECONFIG;
		}
		if (hdr != NULL) {
			op_diag_add(d, "header", "give either header or scheme, not both");
			rc = OP_ECONFIG;
		}
	} else {
		const char *h = hdr ? hdr->valuestring : "X-API-Key";
		if (!header_name_ok(h)) {
			op_diag_add(d, "header", "\"%.64s\" is not a header name", h);
			rc = OP_ECONFIG;
		} else if (strcasecmp(h, "Authorization") == 0) {
			op_diag_add(d, "header", "use scheme to read the Authorization header");
			rc = OP_ECONFIG;
		} else if ((k->header = op_strdup(h)) == NULL) {
			return OP_ENOMEM;
		}
	}
	const cJSON *keys = cJSON_GetObjectItemCaseSensitive(cfg, "keys");
	size_t n = (size_t)cJSON_GetArraySize(keys);
	if (n == 0) {
		op_diag_add(d, "keys", "expected at least one key");
		return OP_ECONFIG;
	}
	k->names = op_calloc(n, sizeof(*k->names));
	k->digests = op_calloc(n, sizeof(*k->digests));
	if (k->names == NULL || k->digests == NULL) {
		op_free(k->names);
		k->names = NULL;
		return OP_ENOMEM;
	}
	k->n = n;
	size_t m = op_diag_push_key(d, "keys");
	size_t i = 0;
	const cJSON *it;
	cJSON_ArrayForEach (it, keys) {
		size_t mi = op_diag_push_index(d, i);
		if (!op_auth__check_object(d, it, key_fields, OP_AUTH__N(key_fields))) {
			rc = OP_ECONFIG;
		} else {
			const char *name =
			    cJSON_GetObjectItemCaseSensitive(it, "name")->valuestring;
			const char *hash =
			    cJSON_GetObjectItemCaseSensitive(it, "hash")->valuestring;
			if (!parse_digest(hash, k->digests[i])) {
				op_diag_add(
				    d, "hash",
				    "expected \"sha256:\" and 64 hex digits (printf %%s \"$KEY\" | "
				    "sha256sum); never the key itself");
				rc = OP_ECONFIG;
			}
			for (size_t j = 0; j < i; j++) {
				if (k->names[j] && strcmp(k->names[j], name) == 0) {
					op_diag_add(d, "name",
					            "name \"%.64s\" is used by keys[%zu] too", name,
					            j);
					rc = OP_ECONFIG;
				} else if (memcmp(k->digests[j], k->digests[i],
				                  sizeof(*k->digests)) == 0) {
					op_diag_add(d, "hash", "same hash as keys[%zu]", j);
					rc = OP_ECONFIG;
				}
			}
			if ((k->names[i] = op_strdup(name)) == NULL) {
				op_diag_pop(d, m);
				return OP_ENOMEM;
			}
		}
		op_diag_pop(d, mi);
		i++;
	}
	op_diag_pop(d, m);
	if (rc == OP_OK)
		a->challenge = k->scheme;
	return rc;
}

op_err op_auth__apikey_check(const struct op_auth *a, const struct op_auth_request *req,
                             cJSON **claims, char *why, size_t whylen)
{
	const struct op_auth__apikey *k = a->apikey;
	const char *v;
	size_t len;
	const char *where = k->scheme ? "Authorization" : k->header;
	if (!op_auth__header(req, where, &v, &len))
		return op_auth__fail(why, whylen, "no %s header", where);
	if (k->scheme && !op_auth__scheme(v, len, k->scheme, &v, &len))
		return op_auth__fail(why, whylen, "Authorization header is not of scheme %s",
		                     k->scheme);
	while (len > 0 && v[len - 1] == ' ')
		len--;
	if (len == 0)
		return op_auth__fail(why, whylen, "empty API key");
	if (len > KEY_MAX)
		return op_auth__fail(why, whylen, "API key longer than %d bytes", KEY_MAX);
	unsigned char dig[WC_SHA256_DIGEST_SIZE];
	if (wc_Sha256Hash((const unsigned char *)v, (unsigned)len, dig) != 0)
		return op_auth__failc(OP_EINTERNAL, why, whylen, "SHA-256 failed");
	size_t found = k->n;
	for (size_t i = 0; i < k->n; i++) {
		/* No early exit: every digest is compared. */
		bool eq = op_auth__ct_eq(dig, k->digests[i], sizeof(dig));
		found = eq ? i : found;
	}
	if (found == k->n)
		return op_auth__fail(why, whylen, "API key not accepted");
	cJSON *c = cJSON_CreateObject();
	if (c == NULL || !cJSON_AddStringToObject(c, "type", "apikey") ||
	    !cJSON_AddStringToObject(c, "key", k->names[found])) {
		cJSON_Delete(c);
		return op_auth__failc(OP_ENOMEM, why, whylen, "out of memory");
	}
	*claims = c;
	return OP_OK;
}

op_err op_auth_hash_apikey(const char *key, size_t len, char *out, size_t outlen)
{
	unsigned char dig[WC_SHA256_DIGEST_SIZE];
	if (outlen < OP_AUTH_APIKEY_HASH_LEN + 1) {
		if (outlen)
			out[0] = '\0';
		return OP_EINVAL;
	}
	if (wc_Sha256Hash((const unsigned char *)key, (unsigned)len, dig) != 0) {
		out[0] = '\0';
		return OP_EINTERNAL;
	}
	static const char hx[] = "0123456789abcdef";
	memcpy(out, "sha256:", 7);
	for (size_t i = 0; i < sizeof(dig); i++) {
		out[7 + 2 * i] = hx[dig[i] >> 4];
		out[8 + 2 * i] = hx[dig[i] & 15];
	}
	out[OP_AUTH_APIKEY_HASH_LEN] = '\0';
	return OP_OK;
}
