/*
 * Identifier, hashing and encoding functions of the expression language:
 * UUID, HASH, HMAC, BASE64ENCODE, BASE64DECODE. Digests and base64 encoding
 * come from wolfSSL, the agent's own crypto library.
 *
 * Key invariant: decoding is strict. wolfSSL's Base64_Decode silently drops a
 * truncated last group and anything after padding, so BASE64DECODE has its
 * own decoder that refuses such input; and since expression strings are JSON
 * strings, decoded bytes must be UTF-8 text without NUL. HMAC keys are wiped
 * from the stack after use.
 */
#include <string.h>
#include <strings.h>

#include <wolfssl/options.h>

#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include "agent/core/alloc.h"
#include "agent/core/utf8.h"
#include "agent/core/uuid.h"
#include "agent/expr/expr_int.h"

/* ---- UUID ---- */

static op_err fn_uuid(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                      size_t argc, struct op_xv *out)
{
	(void)argv;
	(void)argc;
	char id[OP_UUID_LEN + 1];
	if (op_uuid_v4(id) != OP_OK)
		return op_expr__fail(c, OP_EIO, "%s: the system's random source failed",
		                     call->call.fn->name);
	return op_expr__xv_str_copy(c, out, id, OP_UUID_LEN);
}

/* ---- helpers ---- */

/*
 * The bytes of argument i: a string as is, anything else in its text form
 * (see CONCAT), written into tmp.
 */
static op_err bytes_of(struct op_expr__ctx *c, const struct op_node *call, const struct op_xv *x,
                       struct op_buf *tmp, const char **s, size_t *len)
{
	if (x->kind == OP_XV_STR) {
		*s = x->s;
		*len = x->len;
		return OP_OK;
	}
	op_err e = op_expr__xv_append_text(tmp, x);
	if (e != OP_OK)
		return op_expr__buf_fail(c, call, e);
	*s = op_buf_str(tmp);
	*len = tmp->len;
	return OP_OK;
}

struct alg {
	const char *name;
	enum wc_HashType type;
};

static const struct alg algs[] = {
    {"md5", WC_HASH_TYPE_MD5},           {"sha1", WC_HASH_TYPE_SHA},
    {"sha224", WC_HASH_TYPE_SHA224},     {"sha256", WC_HASH_TYPE_SHA256},
    {"sha384", WC_HASH_TYPE_SHA384},     {"sha512", WC_HASH_TYPE_SHA512},
    {"sha3-256", WC_HASH_TYPE_SHA3_256}, {"sha3-384", WC_HASH_TYPE_SHA3_384},
    {"sha3-512", WC_HASH_TYPE_SHA3_512},
};

#define ALG_NAMES "md5, sha1, sha224, sha256, sha384, sha512, sha3-256, sha3-384, sha3-512"

static const struct alg *alg_find(const char *s, size_t len)
{
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		if (strlen(algs[i].name) == len && strncasecmp(algs[i].name, s, len) == 0)
			return &algs[i];
	}
	return NULL;
}

static bool enc_known(const char *s, size_t len)
{
	return (len == 3 && strncasecmp(s, "hex", 3) == 0) ||
	       (len == 6 && strncasecmp(s, "base64", 6) == 0) ||
	       (len == 9 && strncasecmp(s, "base64url", 9) == 0);
}

/* Checks literal algorithm (argument ai) and encoding (ai + 1) at compile time. */
static op_err prep_alg(struct op_node *call, size_t ai, char *err, size_t errlen)
{
	const char *s;
	const char *name = call->call.fn->name;
	if (op_expr__lit_str(call, ai, &s) && alg_find(s, strlen(s)) == NULL)
		return op_expr__perr(err, errlen, call->call.args[ai]->col,
		                     "%s: argument %zu: unknown algorithm '%.20s' (expected one of "
		                     "%s)",
		                     name, ai + 1, s, ALG_NAMES);
	if (op_expr__lit_str(call, ai + 1, &s) && !enc_known(s, strlen(s)))
		return op_expr__perr(err, errlen, call->call.args[ai + 1]->col,
		                     "%s: argument %zu: unknown encoding '%.20s' (expected hex, "
		                     "base64 or base64url)",
		                     name, ai + 2, s);
	return OP_OK;
}

/* Algorithm from argument ai (default sha256). */
static op_err want_alg(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                       size_t argc, size_t ai, const struct alg **out)
{
	*out = &algs[3];
	if (ai >= argc || argv[ai].kind == OP_XV_NULL)
		return OP_OK;
	op_err e = op_expr__want_str(c, call, ai, &argv[ai]);
	if (e != OP_OK)
		return e;
	*out = alg_find(argv[ai].s, argv[ai].len);
	if (*out == NULL)
		return op_expr__fail(
		    c, OP_EINVAL, "%s: argument %zu: unknown algorithm '%.*s' (expected one of %s)",
		    call->call.fn->name, ai + 1, (int)(argv[ai].len > 20 ? 20 : argv[ai].len),
		    argv[ai].s, ALG_NAMES);
	return OP_OK;
}

static op_err b64_encode(const unsigned char *in, size_t n, bool url, struct op_buf *b)
{
	word32 olen = (word32)((n + 2) / 3 * 4 + 4);
	char *o = op_malloc(olen);
	if (o == NULL)
		return OP_ENOMEM;
	op_err e = OP_OK;
	if (n == 0) {
		olen = 0;
	} else if (Base64_Encode_NoNl(in, (word32)n, (byte *)o, &olen) != 0) {
		e = OP_EINTERNAL;
	}
	if (e == OP_OK && url) {
		size_t k = 0;
		for (size_t i = 0; i < olen; i++) {
			char ch = o[i];
			if (ch == '=')
				continue;
			o[k++] = ch == '+' ? '-' : ch == '/' ? '_' : ch;
		}
		olen = (word32)k;
	}
	if (e == OP_OK)
		e = op_buf_add(b, o, olen);
	op_free(o);
	return e;
}

/* Writes a digest in the encoding of argument ei (default hex). */
static op_err encode_digest(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                            size_t argc, size_t ei, const unsigned char *d, size_t n,
                            struct op_xv *out)
{
	static const char hex[] = "0123456789abcdef";
	const char *enc = "hex";
	size_t elen = 3;
	if (ei < argc && argv[ei].kind != OP_XV_NULL) {
		op_err e = op_expr__want_str(c, call, ei, &argv[ei]);
		if (e != OP_OK)
			return e;
		enc = argv[ei].s;
		elen = argv[ei].len;
		if (!enc_known(enc, elen))
			return op_expr__fail(
			    c, OP_EINVAL,
			    "%s: argument %zu: unknown encoding '%.*s' (expected hex, "
			    "base64 or base64url)",
			    call->call.fn->name, ei + 1, (int)(elen > 20 ? 20 : elen), enc);
	}
	struct op_buf b;
	op_buf_init(&b, OP_EXPR_MAX_OUT);
	op_err e = OP_OK;
	if (elen == 3) {
		char tmp[2 * WC_MAX_DIGEST_SIZE];
		for (size_t i = 0; i < n; i++) {
			tmp[2 * i] = hex[d[i] >> 4];
			tmp[2 * i + 1] = hex[d[i] & 15];
		}
		e = op_buf_add(&b, tmp, 2 * n);
	} else {
		e = b64_encode(d, n, elen == 9, &b);
	}
	return op_expr__buf_result(c, call, &b, e, out);
}

/* ---- HASH, HMAC ---- */

static op_err prep_hash(struct op_node *call, char *err, size_t errlen)
{
	return prep_alg(call, 1, err, errlen);
}

static op_err fn_hash(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                      size_t argc, struct op_xv *out)
{
	const struct alg *a = NULL;
	const char *s = NULL;
	size_t len = 0;
	struct op_buf tmp;
	op_buf_init(&tmp, OP_EXPR_MAX_OUT);
	op_err e = want_alg(c, call, argv, argc, 1, &a);
	if (e == OP_OK)
		e = bytes_of(c, call, &argv[0], &tmp, &s, &len);
	if (e != OP_OK) {
		op_buf_fini(&tmp);
		return e;
	}
	unsigned char d[WC_MAX_DIGEST_SIZE] = {0};
	int n = wc_HashGetDigestSize(a->type);
	int r = n > 0 ? wc_Hash(a->type, (const byte *)s, (word32)len, d, (word32)n) : -1;
	op_buf_fini(&tmp);
	if (r != 0)
		return op_expr__fail(c, OP_EINTERNAL, "%s: %s failed (wolfSSL error %d)",
		                     call->call.fn->name, a->name, r);
	return encode_digest(c, call, argv, argc, 2, d, (size_t)n, out);
}

static op_err prep_hmac(struct op_node *call, char *err, size_t errlen)
{
	return prep_alg(call, 2, err, errlen);
}

static op_err fn_hmac(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                      size_t argc, struct op_xv *out)
{
	const struct alg *a = NULL;
	const char *s = NULL, *k = NULL;
	size_t len = 0, klen = 0;
	struct op_buf tmp, ktmp;
	op_buf_init(&tmp, OP_EXPR_MAX_OUT);
	op_buf_init(&ktmp, OP_EXPR_MAX_OUT);
	op_err e = want_alg(c, call, argv, argc, 2, &a);
	if (e == OP_OK)
		e = bytes_of(c, call, &argv[0], &tmp, &s, &len);
	if (e == OP_OK)
		e = bytes_of(c, call, &argv[1], &ktmp, &k, &klen);
	unsigned char d[WC_MAX_DIGEST_SIZE] = {0};
	int n = 0, r = 0;
	if (e == OP_OK) {
		Hmac h;
		n = wc_HashGetDigestSize(a->type);
		r = wc_HmacInit(&h, NULL, INVALID_DEVID);
		if (r == 0) {
			r = wc_HmacSetKey(&h, (int)a->type, (const byte *)k, (word32)klen);
			if (r == 0)
				r = wc_HmacUpdate(&h, (const byte *)s, (word32)len);
			if (r == 0)
				r = wc_HmacFinal(&h, d);
			wc_HmacFree(&h);
		}
		explicit_bzero(&h, sizeof(h));
		if (r != 0)
			e = op_expr__fail(c, OP_EINTERNAL, "%s: %s failed (wolfSSL error %d)",
			                  call->call.fn->name, a->name, r);
	}
	if (ktmp.data)
		explicit_bzero(ktmp.data, ktmp.len);
	op_buf_fini(&ktmp);
	op_buf_fini(&tmp);
	if (e != OP_OK)
		return e;
	return encode_digest(c, call, argv, argc, 3, d, (size_t)n, out);
}

/* ---- BASE64 ---- */

static op_err prep_b64enc(struct op_node *call, char *err, size_t errlen)
{
	const char *s;
	if (op_expr__lit_str(call, 1, &s) && strcasecmp(s, "url") != 0 &&
	    strcasecmp(s, "standard") != 0)
		return op_expr__perr(err, errlen, call->call.args[1]->col,
		                     "BASE64ENCODE: argument 2: unknown variant '%.20s' (expected "
		                     "standard or url)",
		                     s);
	return OP_OK;
}

static op_err fn_b64encode(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                           size_t argc, struct op_xv *out)
{
	bool url = false;
	const char *s = NULL;
	size_t len = 0;
	if (argc > 1 && argv[1].kind != OP_XV_NULL) {
		op_err e = op_expr__want_str(c, call, 1, &argv[1]);
		if (e != OP_OK)
			return e;
		url = argv[1].len == 3 && strncasecmp(argv[1].s, "url", 3) == 0;
		if (!url && !(argv[1].len == 8 && strncasecmp(argv[1].s, "standard", 8) == 0))
			return op_expr__fail(
			    c, OP_EINVAL,
			    "%s: argument 2: unknown variant '%.*s' (expected standard "
			    "or url)",
			    call->call.fn->name, (int)(argv[1].len > 20 ? 20 : argv[1].len),
			    argv[1].s);
	}
	struct op_buf tmp, b;
	op_buf_init(&tmp, OP_EXPR_MAX_OUT);
	op_buf_init(&b, OP_EXPR_MAX_OUT);
	op_err e = bytes_of(c, call, &argv[0], &tmp, &s, &len);
	if (e != OP_OK) {
		op_buf_fini(&tmp);
		return e;
	}
	if (len > (OP_EXPR_MAX_OUT / 4) * 3)
		e = OP_ELIMIT;
	else
		e = b64_encode((const unsigned char *)s, len, url, &b);
	op_buf_fini(&tmp);
	return op_expr__buf_result(c, call, &b, e, out);
}

static int b64_val(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+' || ch == '-')
		return 62;
	if (ch == '/' || ch == '_')
		return 63;
	return -1;
}

static op_err fn_b64decode(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                           size_t argc, struct op_xv *out)
{
	(void)argc;
	op_err e = op_expr__want_str(c, call, 0, &argv[0]);
	if (e != OP_OK)
		return e;
	const unsigned char *s = (const unsigned char *)argv[0].s;
	size_t len = argv[0].len;
	const char *name = call->call.fn->name;
	char *o = op_malloc(len / 4 * 3 + 4);
	if (o == NULL)
		return op_expr__buf_fail(c, call, OP_ENOMEM);
	size_t n = 0, group = 0, pad = 0;
	unsigned long acc = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = s[i];
		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
			continue;
		if (ch == '=') {
			/* Padding only completes a group of 2 or 3 symbols. */
			if (group < 2 || group + pad >= 4) {
				e = op_expr__fail(
				    c, OP_EINVAL,
				    "%s: argument 1: invalid base64 (misplaced '=' at offset "
				    "%zu)",
				    name, i);
				goto out;
			}
			pad++;
			continue;
		}
		int v = b64_val(ch);
		if (v < 0 || pad) {
			if (v < 0 && ch >= 0x20 && ch < 0x7F)
				e = op_expr__fail(
				    c, OP_EINVAL,
				    "%s: argument 1: invalid base64 (unexpected '%c' at "
				    "offset %zu)",
				    name, ch, i);
			else if (v < 0)
				e = op_expr__fail(
				    c, OP_EINVAL,
				    "%s: argument 1: invalid base64 (unexpected byte 0x%02X at "
				    "offset %zu)",
				    name, ch, i);
			else
				e = op_expr__fail(
				    c, OP_EINVAL,
				    "%s: argument 1: invalid base64 (data after '=' at offset "
				    "%zu)",
				    name, i);
			goto out;
		}
		acc = (acc << 6) | (unsigned long)v;
		if (++group == 4) {
			o[n++] = (char)(acc >> 16);
			o[n++] = (char)(acc >> 8);
			o[n++] = (char)acc;
			group = 0;
			acc = 0;
		}
	}
	if (group == 1 || (pad && group + pad != 4)) {
		e = op_expr__fail(c, OP_EINVAL, "%s: argument 1: invalid base64 (truncated)", name);
		goto out;
	}
	if (group == 2) {
		o[n++] = (char)(acc >> 4);
	} else if (group == 3) {
		o[n++] = (char)(acc >> 10);
		o[n++] = (char)(acc >> 2);
	}
	if (memchr(o, '\0', n) != NULL || !op_utf8_valid(o, n)) {
		e = op_expr__fail(c, OP_EINVAL, "%s: the decoded bytes are not UTF-8 text", name);
		goto out;
	}
	o[n] = '\0';
	op_expr__xv_str_take(out, o, n);
	o = NULL;
out:
	op_free(o);
	return e;
}

const struct op_expr__fn op_expr__fns_crypto[] = {
    {"UUID", 0, 0, false, fn_uuid, NULL, NULL},
    {"HASH", 1, 3, false, fn_hash, prep_hash, NULL},
    {"HMAC", 2, 4, false, fn_hmac, prep_hmac, NULL},
    {"BASE64ENCODE", 1, 2, false, fn_b64encode, prep_b64enc, NULL},
    {"BASE64DECODE", 1, 1, false, fn_b64decode, NULL, NULL},
    {NULL, 0, 0, false, NULL, NULL, NULL},
};
