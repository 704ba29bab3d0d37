/*
 * The verifier front: picks the per-type compiler from the config's "type",
 * dispatches checks, and holds the helpers all types share (table-driven
 * config checking, header scheme parsing, constant-time comparison, reason
 * texts). Invariant: op_auth_check() never writes to the verifier, and every
 * failure path leaves *claims NULL and a reason in why.
 */
#include "agent/auth/auth.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/wc_port.h>

#include "agent/auth/auth_int.h"
#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"

static const char *const type_names[] = {
    [OP_AUTH__NONE] = "none",
    [OP_AUTH__APIKEY] = "apikey",
    [OP_AUTH__BASIC] = "basic",
    [OP_AUTH__JWT] = "jwt",
};

static const struct op_auth__field none_fields[] = {
    {.name = "type", .kind = OP_AUTH__STR, .required = true, .help = "\"none\""},
};

static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;
static pthread_key_t ecc_thread_key;
static bool ecc_thread_key_ok;

/*
 * Debian's wolfSSL is built with FP_ECC: each thread that verifies an ECC
 * signature gets a thread-local cache of precomputed points that only
 * wc_ecc_fp_free(), called by that thread, releases. A thread-specific key
 * with a destructor runs it when the thread exits, so short-lived HTTP
 * threads do not leak their caches.
 */
static void ecc_thread_exit(void *p)
{
	(void)p;
	wc_ecc_fp_free();
}

static void crypto_init_once(void)
{
	(void)wolfCrypt_Init();
	ecc_thread_key_ok = pthread_key_create(&ecc_thread_key, ecc_thread_exit) == 0;
}

void op_auth__ecc_thread_mark(void)
{
	if (ecc_thread_key_ok && pthread_getspecific(ecc_thread_key) == NULL)
		(void)pthread_setspecific(ecc_thread_key, &ecc_thread_key_ok);
}

void op_auth__crypto_init(void)
{
	(void)pthread_once(&crypto_once, crypto_init_once);
}

static const char *kind_name(enum op_auth__kind k)
{
	switch (k) {
	case OP_AUTH__STR:
		return "a string";
	case OP_AUTH__INT:
		return "an integer";
	case OP_AUTH__BOOL:
		return "a boolean";
	case OP_AUTH__ARR:
		return "an array";
	case OP_AUTH__OBJ:
		return "an object";
	case OP_AUTH__STRS:
		return "a string or an array of strings";
	}
	return "?";
}

static bool check_value(struct op_diag *d, const struct op_auth__field *f, const cJSON *v)
{
	switch (f->kind) {
	case OP_AUTH__STR:
		if (cJSON_IsString(v))
			return true;
		break;
	case OP_AUTH__BOOL:
		if (cJSON_IsBool(v))
			return true;
		break;
	case OP_AUTH__ARR:
		if (cJSON_IsArray(v))
			return true;
		break;
	case OP_AUTH__OBJ:
		if (cJSON_IsObject(v))
			return true;
		break;
	case OP_AUTH__INT:
		if (cJSON_IsNumber(v)) {
			double x = v->valuedouble;
			if (!(x >= (double)f->min && x <= (double)f->max) || x != floor(x)) {
				op_diag_add(
				    d, f->name,
				    "%g is out of range; expected an integer from %lld to %lld", x,
				    f->min, f->max);
				return false;
			}
			return true;
		}
		break;
	case OP_AUTH__STRS:
		if (cJSON_IsString(v))
			return true;
		if (cJSON_IsArray(v)) {
			bool ok = cJSON_GetArraySize(v) > 0;
			if (!ok)
				op_diag_add(d, f->name, "expected at least one string");
			size_t i = 0;
			const cJSON *it;
			cJSON_ArrayForEach (it, v) {
				if (!cJSON_IsString(it)) {
					size_t m = op_diag_push_key(d, f->name);
					op_diag_push_index(d, i);
					op_diag_add(d, NULL, "expected a string, got %s",
					            op_json_kind(it));
					op_diag_pop(d, m);
					ok = false;
				}
				i++;
			}
			return ok;
		}
		break;
	}
	op_diag_add(d, f->name, "expected %s, got %s", kind_name(f->kind), op_json_kind(v));
	return false;
}

bool op_auth__check_object(struct op_diag *d, const cJSON *obj, const struct op_auth__field *t,
                           size_t n)
{
	if (!cJSON_IsObject(obj)) {
		op_diag_add(d, NULL, "expected an object, got %s", op_json_kind(obj));
		return false;
	}
	bool ok = true;
	const cJSON *it;
	cJSON_ArrayForEach (it, obj) {
		const struct op_auth__field *f = NULL;
		for (size_t i = 0; i < n && f == NULL; i++) {
			if (strcmp(t[i].name, it->string) == 0)
				f = &t[i];
		}
		if (f == NULL) {
			struct op_buf b;
			op_buf_init(&b, 1024);
			for (size_t i = 0; i < n; i++) {
				if (op_buf_addf(&b, "%s%s", i ? ", " : "", t[i].name) != OP_OK)
					break;
			}
			op_diag_add(d, it->string, "unknown key; expected one of: %s",
			            op_buf_str(&b));
			op_buf_fini(&b);
			ok = false;
			continue;
		}
		/* cJSON keeps both copies of a repeated key; only the first would count. */
		bool dup = false;
		for (const cJSON *o = obj->child; o != it && !dup; o = o->next)
			dup = strcmp(o->string, it->string) == 0;
		if (dup) {
			op_diag_add(d, it->string, "key given more than once");
			ok = false;
			continue;
		}
		if (!check_value(d, f, it))
			ok = false;
	}
	for (size_t i = 0; i < n; i++) {
		if (t[i].required && !cJSON_GetObjectItemCaseSensitive(obj, t[i].name)) {
			op_diag_add(d, t[i].name, "missing required key (%s: %s)",
			            kind_name(t[i].kind), t[i].help);
			ok = false;
		}
	}
	return ok;
}

long long op_auth__int(const cJSON *obj, const char *name, long long def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	return cJSON_IsNumber(v) ? (long long)v->valuedouble : def;
}

op_err op_auth__strings(const cJSON *v, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	size_t cnt = cJSON_IsArray(v) ? (size_t)cJSON_GetArraySize(v) : 1;
	char **s = op_calloc(cnt, sizeof(*s));
	if (s == NULL)
		return OP_ENOMEM;
	const cJSON *it;
	size_t i = 0;
	if (cJSON_IsString(v)) {
		s[i++] = op_strdup(v->valuestring);
	} else {
		cJSON_ArrayForEach (it, v) {
			s[i++] = op_strdup(it->valuestring);
		}
	}
	for (size_t k = 0; k < cnt; k++) {
		if (s[k] == NULL) {
			op_auth__strings_free(s, cnt);
			return OP_ENOMEM;
		}
	}
	*out = s;
	*n = cnt;
	return OP_OK;
}

void op_auth__strings_free(char **v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		op_free(v[i]);
	op_free(v);
}

bool op_auth__header(const struct op_auth_request *req, const char *name, const char **v,
                     size_t *len)
{
	*v = NULL;
	*len = 0;
	if (req == NULL || req->header == NULL)
		return false;
	const char *p = NULL;
	size_t n = 0;
	if (!req->header(req->ud, name, &p, &n) || p == NULL)
		return false;
	*v = p;
	*len = n;
	return true;
}

bool op_auth__scheme(const char *v, size_t len, const char *scheme, const char **rest, size_t *rlen)
{
	size_t sl = strlen(scheme);
	if (len <= sl || strncasecmp(v, scheme, sl) != 0 || v[sl] != ' ')
		return false;
	size_t i = sl;
	while (i < len && v[i] == ' ')
		i++;
	*rest = v + i;
	*rlen = len - i;
	return true;
}

op_err op_auth__failc(op_err e, char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	op_verrf(why, whylen, e, fmt, ap);
	va_end(ap);
	return e;
}

op_err op_auth__fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	op_verrf(why, whylen, OP_EAUTH, fmt, ap);
	va_end(ap);
	return OP_EAUTH;
}

bool op_auth__ct_eq(const void *a, const void *b, size_t n)
{
	const volatile unsigned char *x = a, *y = b;
	unsigned char acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= (unsigned char)(x[i] ^ y[i]);
	return acc == 0;
}

void op_auth__printable(const char *s, size_t len, char *out, size_t cap)
{
	if (cap < 4) {
		if (cap)
			out[0] = '\0';
		return;
	}
	bool cut = len > cap - 1;
	size_t n = cut ? cap - 4 : len;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (cut)
		memcpy(out + n, "...", 4);
	else
		out[n] = '\0';
}

void op_auth__iso_time(double t, char *out, size_t outlen)
{
	/* Far outside time_t's comfortable range: print the number instead. */
	if (!(t > -62135596800.0 && t < 253402300800.0)) {
		snprintf(out, outlen, "%.0f", t);
		return;
	}
	time_t tt = (time_t)t;
	struct tm tm;
	if (gmtime_r(&tt, &tm) == NULL || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, outlen, "%.0f", t);
}

op_err op_auth_compile(const cJSON *config, struct op_diag *d, struct op_auth **out)
{
	*out = NULL;
	op_auth__crypto_init();
	if (!cJSON_IsObject(config)) {
		op_diag_add(d, NULL, "expected an object, got %s", op_json_kind(config));
		return OP_ECONFIG;
	}
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(config, "type");
	if (!cJSON_IsString(t)) {
		op_diag_add(d, "type", t ? "expected a string, got %s" : "missing required key%s",
		            t ? op_json_kind(t)
		              : " (one of \"apikey\", \"basic\", \"jwt\", \"none\")");
		return OP_ECONFIG;
	}
	enum op_auth__type type = OP_AUTH__NONE;
	bool found = false;
	for (size_t i = 0; i < OP_AUTH__N(type_names) && !found; i++) {
		if (strcmp(type_names[i], t->valuestring) == 0) {
			type = (enum op_auth__type)i;
			found = true;
		}
	}
	if (!found) {
		op_diag_add(d, "type",
		            "unknown value \"%.64s\"; expected one of \"apikey\", "
		            "\"basic\", \"jwt\", \"none\"",
		            t->valuestring);
		return OP_ECONFIG;
	}
	struct op_auth *a = op_calloc(1, sizeof(*a));
	if (a == NULL)
		return OP_ENOMEM;
	a->type = type;
	op_err rc = OP_OK;
	switch (type) {
	case OP_AUTH__NONE:
		if (!op_auth__check_object(d, config, none_fields, OP_AUTH__N(none_fields)))
			rc = OP_ECONFIG;
		break;
	case OP_AUTH__APIKEY:
		rc = op_auth__apikey_compile(config, d, a);
		break;
	case OP_AUTH__BASIC:
		rc = op_auth__basic_compile(config, d, a);
		break;
	case OP_AUTH__JWT:
		rc = op_auth__jwt_compile(config, d, a);
		break;
	}
	if (rc != OP_OK) {
		op_auth_free(a);
		return rc;
	}
	*out = a;
	return OP_OK;
}

void op_auth_free(struct op_auth *a)
{
	if (a == NULL)
		return;
	op_auth__apikey_free(a->apikey);
	op_auth__basic_free(a->basic);
	op_auth__jwt_free(a->jwt);
	op_free(a);
}

const char *op_auth_type(const struct op_auth *a)
{
	return type_names[a->type];
}

const char *op_auth_challenge(const struct op_auth *a)
{
	return a->challenge;
}

op_err op_auth_check(const struct op_auth *a, const struct op_auth_request *req, cJSON **claims,
                     char *why, size_t whylen)
{
	cJSON *c = NULL;
	if (claims != NULL)
		*claims = NULL;
	if (why != NULL && whylen > 0)
		why[0] = '\0';
	op_err rc = OP_OK;
	switch (a->type) {
	case OP_AUTH__NONE:
		break;
	case OP_AUTH__APIKEY:
		rc = op_auth__apikey_check(a, req, &c, why, whylen);
		break;
	case OP_AUTH__BASIC:
		rc = op_auth__basic_check(a, req, &c, why, whylen);
		break;
	case OP_AUTH__JWT:
		rc = op_auth__jwt_check(a, req, &c, why, whylen);
		break;
	}
	if (rc != OP_OK) {
		cJSON_Delete(c);
		return rc;
	}
	if (claims != NULL)
		*claims = c;
	else
		cJSON_Delete(c);
	return OP_OK;
}

uint64_t op_auth_hashes(const struct op_auth *a)
{
	return a && a->basic ? op_auth__basic_hashed(a->basic) : 0;
}
