/*
 * JWT bearer tokens (compact JWS, RFC 7515/7519) checked against the keys and
 * claim rules of one trigger. Order of checks: size, shape, strict base64url,
 * header JSON, algorithm and key choice, signature, and only then the payload
 * claims (exp, nbf, iat, aud, iss). Invariants: the algorithm a key verifies
 * is fixed by the config, never by the token ("none" and unconfigured
 * algorithms are refused, so an RS256 public key can never serve as an HS256
 * secret); keys are never taken from the token (jwk, jku, x5u are ignored);
 * no claim is believed before the signature verifies.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "agent/auth/jwt_int.h"
#include "agent/core/alloc.h"

#define HS256_MIN_SECRET 32

struct op_auth__jwt {
	struct op_jwt_key *keys;
	size_t n;
	char **aud;
	size_t naud;
	char **iss;
	size_t niss;
	long long leeway;
	long long max_token;
	long long max_age; /* 0: iat age not limited */
	bool require_exp;
	unsigned algs; /* bit per configured enum op_jwt_alg */
};

static const struct op_auth__field jwt_fields[] = {
    {.name = "type", .kind = OP_AUTH__STR, .required = true, .help = "\"jwt\""},
    {.name = "keys",
     .kind = OP_AUTH__ARR,
     .required = true,
     .help = "array of {kid, alg, secret | pem | jwk}"},
    {.name = "audience", .kind = OP_AUTH__STRS, .help = "accepted \"aud\" values"},
    {.name = "issuer", .kind = OP_AUTH__STRS, .help = "accepted \"iss\" values"},
    {.name = "leeway",
     .kind = OP_AUTH__INT,
     .min = 0,
     .max = 600,
     .help = "seconds of clock skew allowed for exp, nbf, iat (default 60)"},
    {.name = "max_token",
     .kind = OP_AUTH__INT,
     .min = 256,
     .max = OP_AUTH_JWT_MAX_LIMIT,
     .help = "largest token in bytes (default 8192)"},
    {.name = "require_exp",
     .kind = OP_AUTH__BOOL,
     .help = "refuse tokens without \"exp\" (default true)"},
    {.name = "max_age",
     .kind = OP_AUTH__INT,
     .min = 0,
     .max = 31536000,
     .help = "refuse tokens issued (\"iat\") longer ago than this many seconds (0 = off)"},
};

static const struct op_auth__field key_fields[] = {
    {.name = "kid", .kind = OP_AUTH__STR, .help = "key id matched against the token's \"kid\""},
    {.name = "alg",
     .kind = OP_AUTH__STR,
     .required = true,
     .help = "\"HS256\", \"RS256\" or \"ES256\": the only algorithm this key verifies"},
    {.name = "secret", .kind = OP_AUTH__STR, .help = "HS256 shared secret, at least 32 bytes"},
    {.name = "pem", .kind = OP_AUTH__STR, .help = "RS256/ES256 public key in PEM"},
    {.name = "jwk", .kind = OP_AUTH__OBJ, .help = "RS256/ES256 public key as a JWK"},
};

void op_auth__jwt_free(struct op_auth__jwt *j)
{
	if (j == NULL)
		return;
	for (size_t i = 0; j->keys && i < j->n; i++)
		op_auth__jwt_key_fini(&j->keys[i]);
	op_free(j->keys);
	op_auth__strings_free(j->aud, j->naud);
	op_auth__strings_free(j->iss, j->niss);
	op_free(j);
}

static op_err load_key(const cJSON *it, struct op_diag *d, struct op_jwt_key *k)
{
	if (!op_auth__check_object(d, it, key_fields, OP_AUTH__N(key_fields)))
		return OP_ECONFIG;
	const cJSON *alg = cJSON_GetObjectItemCaseSensitive(it, "alg");
	const cJSON *kid = cJSON_GetObjectItemCaseSensitive(it, "kid");
	const cJSON *secret = cJSON_GetObjectItemCaseSensitive(it, "secret");
	const cJSON *pem = cJSON_GetObjectItemCaseSensitive(it, "pem");
	const cJSON *jwk = cJSON_GetObjectItemCaseSensitive(it, "jwk");
	if (!op_auth__jwt_alg_parse(alg->valuestring, &k->alg)) {
		op_diag_add(d, "alg",
		            "unknown value \"%.64s\"; expected \"HS256\", \"RS256\" or \"ES256\"",
		            alg->valuestring);
		return OP_ECONFIG;
	}
	if (kid == NULL && jwk != NULL)
		kid = cJSON_GetObjectItemCaseSensitive(jwk, "kid");
	if (kid != NULL) {
		if (!cJSON_IsString(kid) || kid->valuestring[0] == '\0') {
			op_diag_add(d, "kid", "expected a non-empty string");
			return OP_ECONFIG;
		}
		if ((k->kid = op_strdup(kid->valuestring)) == NULL)
			return OP_ENOMEM;
	}
	if (k->alg == OP_JWT_HS256) {
		if (pem || jwk) {
			op_diag_add(d, pem ? "pem" : "jwk",
			            "HS256 takes a \"secret\", not a public key");
			return OP_ECONFIG;
		}
		if (secret == NULL) {
			op_diag_add(d, "secret", "missing required key for HS256 (string)");
			return OP_ECONFIG;
		}
		size_t len = strlen(secret->valuestring);
		if (len < HS256_MIN_SECRET) {
			op_diag_add(d, "secret", "HS256 secret of %zu bytes; expected at least %d",
			            len, HS256_MIN_SECRET);
			return OP_ECONFIG;
		}
		if ((k->secret = op_malloc(len)) == NULL)
			return OP_ENOMEM;
		memcpy(k->secret, secret->valuestring, len);
		k->secretlen = len;
		k->sigsize = 32;
		return OP_OK;
	}
	if (secret) {
		op_diag_add(d, "secret", "%s takes a public key (pem or jwk), not a secret",
		            op_auth__jwt_alg_name(k->alg));
		return OP_ECONFIG;
	}
	if ((pem == NULL) == (jwk == NULL)) {
		op_diag_add(d, pem ? "jwk" : "pem", "give exactly one of pem and jwk");
		return OP_ECONFIG;
	}
	if (jwk) {
		const cJSON *ja = cJSON_GetObjectItemCaseSensitive(jwk, "alg");
		if (ja && (!cJSON_IsString(ja) || strcmp(ja->valuestring, alg->valuestring) != 0)) {
			op_diag_add(d, "jwk.alg", "does not match \"alg\": \"%s\"",
			            alg->valuestring);
			return OP_ECONFIG;
		}
	}
	char err[160];
	op_err rc = pem ? op_auth__jwt_key_pem(k, pem->valuestring, err, sizeof(err))
	                : op_auth__jwt_key_jwk(k, jwk, err, sizeof(err));
	if (rc == OP_ECONFIG)
		op_diag_add(d, pem ? "pem" : "jwk", "%s", err);
	else if (rc == OP_EINTERNAL)
		op_diag_add(d, pem ? "pem" : "jwk", "wolfCrypt failed to load the key");
	return rc;
}

op_err op_auth__jwt_compile(const cJSON *cfg, struct op_diag *d, struct op_auth *a)
{
	if (!op_auth__check_object(d, cfg, jwt_fields, OP_AUTH__N(jwt_fields)))
		return OP_ECONFIG;
	op_err rc = OP_OK, e;
	struct op_auth__jwt *j = op_calloc(1, sizeof(*j));
	if (j == NULL)
		return OP_ENOMEM;
	a->jwt = j;
	j->leeway = op_auth__int(cfg, "leeway", 60);
	j->max_token = op_auth__int(cfg, "max_token", OP_AUTH_JWT_MAX_DEFAULT);
	j->max_age = op_auth__int(cfg, "max_age", 0);
	j->require_exp = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cfg, "require_exp"));
	const cJSON *aud = cJSON_GetObjectItemCaseSensitive(cfg, "audience");
	const cJSON *iss = cJSON_GetObjectItemCaseSensitive(cfg, "issuer");
	if (aud && (e = op_auth__strings(aud, &j->aud, &j->naud)) != OP_OK)
		return e;
	if (iss && (e = op_auth__strings(iss, &j->iss, &j->niss)) != OP_OK)
		return e;
	const cJSON *keys = cJSON_GetObjectItemCaseSensitive(cfg, "keys");
	size_t n = (size_t)cJSON_GetArraySize(keys);
	if (n == 0) {
		op_diag_add(d, "keys", "expected at least one key");
		return OP_ECONFIG;
	}
	if ((j->keys = op_calloc(n, sizeof(*j->keys))) == NULL)
		return OP_ENOMEM;
	j->n = n;
	size_t m = op_diag_push_key(d, "keys");
	size_t i = 0;
	const cJSON *it;
	cJSON_ArrayForEach (it, keys) {
		size_t mi = op_diag_push_index(d, i);
		e = load_key(it, d, &j->keys[i]);
		if (e == OP_ENOMEM || e == OP_EINTERNAL) {
			op_diag_pop(d, m);
			return e;
		}
		if (e != OP_OK)
			rc = e;
		for (size_t k = 0; k < i && j->keys[i].kid; k++) {
			if (j->keys[k].kid && strcmp(j->keys[k].kid, j->keys[i].kid) == 0) {
				op_diag_add(d, "kid", "kid \"%.64s\" is used by keys[%zu] too",
				            j->keys[i].kid, k);
				rc = OP_ECONFIG;
			}
		}
		if (e == OP_OK)
			j->algs |= 1u << j->keys[i].alg;
		op_diag_pop(d, mi);
		i++;
	}
	op_diag_pop(d, m);
	if (rc == OP_OK)
		a->challenge = "Bearer";
	return rc;
}

/* Parses decoded JSON text that must be an object without repeated top-level keys. */
static op_err parse_object(const unsigned char *p, size_t len, cJSON **out, const char **bad)
{
	*out = NULL;
	/* cJSON ends strings at NUL, so "a\u0000b" would compare equal to "a": refuse. */
	for (size_t i = 0; i < len; i++) {
		if (p[i] == 0 ||
		    (p[i] == '\\' && i + 5 < len && p[i + 1] == 'u' && p[i + 2] == '0' &&
		     p[i + 3] == '0' && p[i + 4] == '0' && p[i + 5] == '0')) {
			*bad = "holds a NUL character";
			return OP_EAUTH;
		}
	}
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts((const char *)p, len, &end, 0);
	if (j == NULL) {
		/* cJSON reports no reason; an allocation failure looks the same. */
		*bad = "is not valid JSON";
		return OP_EAUTH;
	}
	for (const char *q = end; q < (const char *)p + len; q++) {
		if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
			cJSON_Delete(j);
			*bad = "has data after the JSON value";
			return OP_EAUTH;
		}
	}
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		*bad = "is not a JSON object";
		return OP_EAUTH;
	}
	for (const cJSON *a = j->child; a; a = a->next) {
		for (const cJSON *b = j->child; b != a; b = b->next) {
			if (strcmp(a->string, b->string) == 0) {
				cJSON_Delete(j);
				*bad = "repeats a member name";
				return OP_EAUTH;
			}
		}
	}
	*out = j;
	return OP_OK;
}

static bool num_claim(const cJSON *c, const char *name, double *v, bool *present, bool *bad)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(c, name);
	*present = x != NULL;
	*bad = x != NULL && (!cJSON_IsNumber(x) || !isfinite(x->valuedouble));
	if (*present && !*bad)
		*v = x->valuedouble;
	return *present && !*bad;
}

static bool one_of(const char *s, char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(s, v[i]) == 0)
			return true;
	}
	return false;
}

static op_err check_claims(const struct op_auth__jwt *j, const cJSON *c, int64_t now64, char *why,
                           size_t whylen)
{
	double now = (double)now64, lw = (double)j->leeway, exp = 0, nbf = 0, iat = 0;
	bool has, bad;
	char t[40], s[72];
	if (num_claim(c, "exp", &exp, &has, &bad)) {
		if (now >= exp + lw) {
			op_auth__iso_time(exp, t, sizeof(t));
			return op_auth__fail(why, whylen, "token expired at %s", t);
		}
	} else if (bad) {
		return op_auth__fail(why, whylen, "claim \"exp\" is not a number");
	} else if (j->require_exp) {
		return op_auth__fail(why, whylen, "token has no \"exp\" claim");
	}
	if (num_claim(c, "nbf", &nbf, &has, &bad)) {
		if (now + lw < nbf) {
			op_auth__iso_time(nbf, t, sizeof(t));
			return op_auth__fail(why, whylen, "token not valid before %s", t);
		}
	} else if (bad) {
		return op_auth__fail(why, whylen, "claim \"nbf\" is not a number");
	}
	if (num_claim(c, "iat", &iat, &has, &bad)) {
		if (iat > now + lw) {
			op_auth__iso_time(iat, t, sizeof(t));
			return op_auth__fail(why, whylen, "token issued in the future (%s)", t);
		}
		if (j->max_age && now - iat > (double)j->max_age + lw) {
			op_auth__iso_time(iat, t, sizeof(t));
			return op_auth__fail(why, whylen,
			                     "token issued at %s, over max_age %llds ago", t,
			                     j->max_age);
		}
	} else if (bad) {
		return op_auth__fail(why, whylen, "claim \"iat\" is not a number");
	} else if (j->max_age) {
		return op_auth__fail(why, whylen, "token has no \"iat\" claim (max_age is set)");
	}
	if (j->naud) {
		const cJSON *aud = cJSON_GetObjectItemCaseSensitive(c, "aud");
		const char *first = NULL;
		bool ok = false;
		if (cJSON_IsString(aud)) {
			first = aud->valuestring;
			ok = one_of(first, j->aud, j->naud);
		} else if (cJSON_IsArray(aud)) {
			const cJSON *it;
			cJSON_ArrayForEach (it, aud) {
				if (!cJSON_IsString(it))
					return op_auth__fail(why, whylen,
					                     "claim \"aud\" holds a non-string");
				if (first == NULL)
					first = it->valuestring;
				ok = ok || one_of(it->valuestring, j->aud, j->naud);
			}
		} else if (aud != NULL) {
			return op_auth__fail(why, whylen, "claim \"aud\" is not a string or array");
		}
		if (first == NULL)
			return op_auth__fail(why, whylen, "token has no audience");
		if (!ok) {
			op_auth__printable(first, strlen(first), s, sizeof(s));
			return op_auth__fail(why, whylen, "audience '%s' not accepted", s);
		}
	}
	if (j->niss) {
		const cJSON *iss = cJSON_GetObjectItemCaseSensitive(c, "iss");
		if (iss == NULL)
			return op_auth__fail(why, whylen, "token has no issuer");
		if (!cJSON_IsString(iss))
			return op_auth__fail(why, whylen, "claim \"iss\" is not a string");
		if (!one_of(iss->valuestring, j->iss, j->niss)) {
			op_auth__printable(iss->valuestring, strlen(iss->valuestring), s,
			                   sizeof(s));
			return op_auth__fail(why, whylen, "issuer '%s' not accepted", s);
		}
	}
	return OP_OK;
}

static void configured_algs(unsigned algs, char *out, size_t cap)
{
	size_t o = 0;
	out[0] = '\0';
	for (unsigned i = 0; i < 3; i++) {
		if (!(algs & (1u << i)))
			continue;
		const char *n = op_auth__jwt_alg_name((enum op_jwt_alg)i);
		if (o + strlen(n) + 3 > cap)
			break;
		o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? ", " : "", n);
	}
}

op_err op_auth__jwt_check(const struct op_auth *a, const struct op_auth_request *req,
                          cJSON **claims, char *why, size_t whylen)
{
	const struct op_auth__jwt *j = a->jwt;
	const char *tok;
	size_t len;
	op_err rc = OP_OK;
	unsigned char *buf = NULL;
	cJSON *hdr = NULL, *payload = NULL;
	const char *bad = "";
	char shown[72], algs[32];
	if (!op_auth__header(req, "Authorization", &tok, &len))
		return op_auth__fail(why, whylen, "no Authorization header");
	if (!op_auth__scheme(tok, len, "Bearer", &tok, &len))
		return op_auth__fail(why, whylen, "Authorization header is not of scheme Bearer");
	while (len > 0 && tok[len - 1] == ' ')
		len--;
	if (len > (size_t)j->max_token)
		return op_auth__fail(why, whylen, "token of %zu bytes is over the %lld-byte limit",
		                     len, j->max_token);
	const char *d1 = memchr(tok, '.', len);
	const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
	if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)) != NULL)
		return op_auth__fail(why, whylen, "token does not have three segments");
	size_t hl = (size_t)(d1 - tok), pl = (size_t)(d2 - d1 - 1),
	       sl = len - (size_t)(d2 + 1 - tok);
	if (hl == 0 || pl == 0 || sl == 0)
		return op_auth__fail(why, whylen, "token has an empty segment");
	/* One buffer for the three decoded segments. */
	size_t hcap = op_b64_decoded_max(hl), pcap = op_b64_decoded_max(pl),
	       scap = op_b64_decoded_max(sl);
	if ((buf = op_malloc(hcap + pcap + scap)) == NULL)
		return op_auth__failc(OP_ENOMEM, why, whylen, "out of memory");
	unsigned char *hb = buf, *pb = buf + hcap, *sb = buf + hcap + pcap;
	size_t hn, pn, sn;
	if (!op_b64_decode(tok, hl, true, hb, hcap, &hn) ||
	    !op_b64_decode(d1 + 1, pl, true, pb, pcap, &pn) ||
	    !op_b64_decode(d2 + 1, sl, true, sb, scap, &sn)) {
		rc = op_auth__fail(why, whylen, "token segment is not valid base64url");
		goto out;
	}
	if (parse_object(hb, hn, &hdr, &bad) != OP_OK) {
		rc = op_auth__fail(why, whylen, "token header %s", bad);
		goto out;
	}
	const cJSON *alg = cJSON_GetObjectItemCaseSensitive(hdr, "alg");
	const cJSON *kid = cJSON_GetObjectItemCaseSensitive(hdr, "kid");
	enum op_jwt_alg want;
	configured_algs(j->algs, algs, sizeof(algs));
	if (!cJSON_IsString(alg)) {
		rc = op_auth__fail(why, whylen, "token header has no \"alg\" string");
		goto out;
	}
	if (strcasecmp(alg->valuestring, "none") == 0) {
		rc = op_auth__fail(why, whylen, "unsigned token (alg none) refused");
		goto out;
	}
	if (!op_auth__jwt_alg_parse(alg->valuestring, &want) || !(j->algs & (1u << want))) {
		op_auth__printable(alg->valuestring, strlen(alg->valuestring), shown,
		                   sizeof(shown));
		rc = op_auth__fail(why, whylen, "alg '%s' not accepted (configured: %s)", shown,
		                   algs);
		goto out;
	}
	if (cJSON_GetObjectItemCaseSensitive(hdr, "crit")) {
		rc = op_auth__fail(why, whylen,
		                   "token header has \"crit\" extensions, none supported");
		goto out;
	}
	if (kid != NULL && !cJSON_IsString(kid)) {
		rc = op_auth__fail(why, whylen, "token header \"kid\" is not a string");
		goto out;
	}
	/* Candidates: the key named by kid, or every key of the algorithm. */
	bool tried = false, ok = false;
	for (size_t i = 0; i < j->n && !ok; i++) {
		const struct op_jwt_key *k = &j->keys[i];
		if (kid && (k->kid == NULL || strcmp(k->kid, kid->valuestring) != 0))
			continue;
		if (k->alg != want) {
			if (kid) {
				op_auth__printable(kid->valuestring, strlen(kid->valuestring),
				                   shown, sizeof(shown));
				rc = op_auth__fail(why, whylen, "key '%s' is for %s, token says %s",
				                   shown, op_auth__jwt_alg_name(k->alg),
				                   op_auth__jwt_alg_name(want));
				goto out;
			}
			continue;
		}
		tried = true;
		op_err e = op_auth__jwt_key_verify(k, (const unsigned char *)tok,
		                                   (size_t)(d2 - tok), sb, sn);
		if (e == OP_OK)
			ok = true;
		else if (e != OP_EAUTH) {
			rc = op_auth__failc(e, why, whylen, "signature check failed: %s",
			                    op_err_str(e));
			goto out;
		}
	}
	if (!tried) {
		if (kid == NULL) {
			rc = op_auth__fail(why, whylen, "no key for alg %s",
			                   op_auth__jwt_alg_name(want));
			goto out;
		}
		op_auth__printable(kid->valuestring, strlen(kid->valuestring), shown,
		                   sizeof(shown));
		rc = op_auth__fail(why, whylen, "no key with kid '%s'", shown);
		goto out;
	}
	if (!ok) {
		rc = op_auth__fail(why, whylen, "signature does not verify");
		goto out;
	}
	if (parse_object(pb, pn, &payload, &bad) != OP_OK) {
		rc = op_auth__fail(why, whylen, "token payload %s", bad);
		goto out;
	}
	int64_t now = req && req->now ? req->now : (int64_t)time(NULL);
	if ((rc = check_claims(j, payload, now, why, whylen)) != OP_OK)
		goto out;
	*claims = payload;
	payload = NULL;
out:
	cJSON_Delete(hdr);
	cJSON_Delete(payload);
	op_free(buf);
	return rc;
}
