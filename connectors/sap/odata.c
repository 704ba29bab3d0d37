/*
 * OData text: filters with values as literals, key predicates, the V2 JSON
 * shape made plain, and SAP's error bodies. See odata.h.
 */
#include "connectors/sap/odata.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"

#define FILTER_PARTS_MAX 200
#define DETAILS_MAX      3

struct part {
	char *text;        /* literal text, or NULL */
	struct op_expr *e; /* or an expression */
	bool quoted;       /* inside a '...' literal */
};

struct op_odata_filter {
	struct part *v;
	size_t n;
};

void op_odata_filter_free(struct op_odata_filter *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n; i++) {
		op_free(f->v[i].text);
		op_expr_free(f->v[i].e);
	}
	op_free(f->v);
	op_free(f);
}

static op_err part_add(struct op_odata_filter *f, const char *s, size_t len, bool expr, bool quoted,
                       size_t col, char *err, size_t errlen)
{
	if (len == 0 && !expr)
		return OP_OK;
	if (f->n == FILTER_PARTS_MAX)
		return op_errf(err, errlen, OP_EPARSE, "more than %d expressions",
		               FILTER_PARTS_MAX / 2);
	struct part *v = op_realloc(f->v, (f->n + 1) * sizeof(*v));
	if (v == NULL)
		return op_errf(err, errlen, OP_ENOMEM, "out of memory");
	f->v = v;
	struct part *p = &f->v[f->n];
	*p = (struct part){.quoted = quoted};
	char *text = op_strndup(s, len);
	if (text == NULL)
		return op_errf(err, errlen, OP_ENOMEM, "out of memory");
	if (!expr) {
		p->text = text;
		f->n++;
		return OP_OK;
	}
	char why[256];
	op_err rc = op_expr_compile(text, &p->e, why, sizeof(why));
	op_free(text);
	if (rc == OP_ENOMEM)
		return op_errf(err, errlen, rc, "out of memory");
	if (rc)
		return op_errf(err, errlen, OP_EPARSE, "column %zu: %s", col, why);
	f->n++;
	return OP_OK;
}

op_err op_odata_filter_compile(const char *src, struct op_odata_filter **out, char *err,
                               size_t errlen)
{
	*out = NULL;
	struct op_odata_filter *f = op_calloc(1, sizeof(*f));
	if (f == NULL)
		return op_errf(err, errlen, OP_ENOMEM, "out of memory");
	op_err rc = OP_OK;
	bool quoted = false;
	size_t run = 0, quote_at = 0, i = 0;
	while (src[i] && rc == OP_OK) {
		if (src[i] == '\'') {
			quoted = !quoted;
			quote_at = i;
			i++;
		} else if (src[i] == '{' && src[i + 1] == '{') {
			const char *end = strstr(src + i + 2, "}}");
			if (end == NULL) {
				rc = op_errf(err, errlen, OP_EPARSE,
				             "column %zu: `{{` is not closed", i + 1);
				break;
			}
			rc = part_add(f, src + run, i - run, false, quoted, 0, err, errlen);
			if (rc == OP_OK)
				rc = part_add(f, src + i, (size_t)(end + 2 - (src + i)), true,
				              quoted, i + 1, err, errlen);
			i = (size_t)(end + 2 - src);
			run = i;
		} else {
			i++;
		}
	}
	if (rc == OP_OK && quoted)
		rc = op_errf(err, errlen, OP_EPARSE, "column %zu: the quote is not closed",
		             quote_at + 1);
	if (rc == OP_OK)
		rc = part_add(f, src + run, i - run, false, false, 0, err, errlen);
	if (rc) {
		op_odata_filter_free(f);
		return rc;
	}
	*out = f;
	return OP_OK;
}

/* Appends s with every ' doubled. */
static op_err add_quoted_text(struct op_buf *b, const char *s)
{
	op_err rc = OP_OK;
	for (const char *q; rc == OP_OK && (q = strchr(s, '\'')) != NULL; s = q + 1) {
		rc = op_buf_add(b, s, (size_t)(q - s));
		if (rc == OP_OK)
			rc = op_buf_adds(b, "''");
	}
	return rc ? rc : op_buf_adds(b, s);
}

static op_err add_number(struct op_buf *b, double d)
{
	char num[64];
	size_t n = op_json_num_format(d, num, sizeof(num));
	return op_buf_add(b, num, n);
}

op_err op_odata_literal(struct op_buf *b, const cJSON *v)
{
	if (cJSON_IsString(v)) {
		op_err rc = op_buf_adds(b, "'");
		if (rc == OP_OK)
			rc = add_quoted_text(b, v->valuestring);
		return rc ? rc : op_buf_adds(b, "'");
	}
	if (cJSON_IsNumber(v))
		return add_number(b, v->valuedouble);
	if (cJSON_IsBool(v))
		return op_buf_adds(b, cJSON_IsTrue(v) ? "true" : "false");
	if (v == NULL || cJSON_IsNull(v))
		return op_buf_adds(b, "null");
	return OP_EINVAL;
}

/* A value spliced inside a quoted literal: its text, quotes doubled. */
static op_err add_in_quotes(struct op_buf *b, const cJSON *v)
{
	if (cJSON_IsString(v))
		return add_quoted_text(b, v->valuestring);
	if (cJSON_IsNumber(v))
		return add_number(b, v->valuedouble);
	if (cJSON_IsBool(v))
		return op_buf_adds(b, cJSON_IsTrue(v) ? "true" : "false");
	if (v == NULL || cJSON_IsNull(v))
		return OP_OK;
	return OP_EINVAL;
}

op_err op_odata_filter_render(const struct op_odata_filter *f, const struct op_expr_env *env,
                              struct op_buf *b, char *err, size_t errlen)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct part *p = &f->v[i];
		op_err rc;
		if (p->text) {
			rc = op_buf_adds(b, p->text);
			if (rc)
				return op_errf(err, errlen, rc, "the filter is too long");
			continue;
		}
		struct op_val v = {0};
		rc = op_expr_eval(p->e, env, &v, err, errlen);
		if (rc)
			return rc == OP_ENOMEM ? rc : OP_EINVAL;
		rc = p->quoted ? add_in_quotes(b, v.v) : op_odata_literal(b, v.v);
		if (rc == OP_EINVAL)
			op_errf(err, errlen, rc,
			        "%s gives %s; a filter takes strings, numbers, "
			        "booleans and null",
			        op_expr_source(p->e), op_json_kind(v.v));
		else if (rc)
			op_errf(err, errlen, rc, "the filter is too long");
		op_val_drop(&v);
		if (rc)
			return rc;
	}
	return OP_OK;
}

bool op_odata_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 128 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return false;
	}
	return true;
}

op_err op_odata_key(struct op_buf *b, const cJSON *key, char *err, size_t errlen)
{
	op_err rc = op_buf_adds(b, "(");
	if (rc == OP_OK && cJSON_IsObject(key)) {
		if (key->child == NULL)
			return op_errf(err, errlen, OP_EINVAL, "key: an empty object");
		for (const cJSON *k = key->child; k && rc == OP_OK; k = k->next) {
			if (!op_odata_name_ok(k->string))
				return op_errf(err, errlen, OP_EINVAL,
				               "key: \"%.80s\" is not a property name", k->string);
			if (cJSON_IsObject(k) || cJSON_IsArray(k) || cJSON_IsNull(k))
				return op_errf(err, errlen, OP_EINVAL,
				               "key.%s: %s; a key is a string, number or boolean",
				               k->string, op_json_kind(k));
			if (k != key->child)
				rc = op_buf_adds(b, ",");
			if (rc == OP_OK)
				rc = op_buf_adds(b, k->string);
			if (rc == OP_OK)
				rc = op_buf_adds(b, "=");
			if (rc == OP_OK)
				rc = op_odata_literal(b, k);
		}
	} else if (rc == OP_OK) {
		if (!(cJSON_IsString(key) || cJSON_IsNumber(key) || cJSON_IsBool(key)))
			return op_errf(
			    err, errlen, OP_EINVAL,
			    "key: %s; a key is a string, number, boolean or an object of "
			    "them",
			    op_json_kind(key));
		rc = op_odata_literal(b, key);
	}
	if (rc == OP_OK)
		rc = op_buf_adds(b, ")");
	return rc ? op_errf(err, errlen, rc, "key: too long") : OP_OK;
}

/* "/Date(1701302400000)/" or "/Date(1701302400000+0060)/" as ISO 8601 UTC;
 * false when s is not of that form. */
static bool v2_date(const char *s, char *out, size_t outlen)
{
	if (strncmp(s, "/Date(", 6) != 0)
		return false;
	char *end = NULL;
	long long ms = strtoll(s + 6, &end, 10);
	if (end == s + 6)
		return false;
	if (*end == '+' || *end == '-') {
		/* DateTimeOffset: the milliseconds are UTC already. */
		end++;
		for (int i = 0; i < 4; i++, end++)
			if (*end < '0' || *end > '9')
				return false;
	}
	if (strcmp(end, ")/") != 0)
		return false;
	long long sec = ms / 1000, frac = ms % 1000;
	if (frac < 0)
		frac += 1000, sec--;
	time_t t = (time_t)sec;
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL)
		return false;
	char day[40];
	if (strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		return false;
	if (frac)
		snprintf(out, outlen, "%s.%03lldZ", day, frac);
	else
		snprintf(out, outlen, "%sZ", day);
	return true;
}

static void v2_plain_object(cJSON *o);
static void v2_plain_value(cJSON *parent, cJSON *v);

/* Each element of the array a made plain; an element may be replaced. */
static void v2_plain_elements(cJSON *a)
{
	cJSON *next;
	for (cJSON *e = a->child; e; e = next) {
		next = e->next;
		v2_plain_value(a, e);
	}
}

static void v2_plain_value(cJSON *parent, cJSON *v)
{
	if (cJSON_IsArray(v)) {
		v2_plain_elements(v);
	} else if (cJSON_IsObject(v)) {
		cJSON *results = cJSON_GetObjectItemCaseSensitive(v, "results");
		if (cJSON_IsArray(results) && v->child == results && results->next == NULL &&
		    !(v->type & cJSON_StringIsConst)) {
			/* {"results": [...]} in place of v, under v's name. */
			cJSON_DetachItemViaPointer(v, results);
			v2_plain_elements(results);
			cJSON_free(results->string);
			results->string = v->string;
			v->string = NULL;
			cJSON_ReplaceItemViaPointer(parent, v, results);
			return;
		}
		v2_plain_object(v);
	} else if (cJSON_IsString(v)) {
		char iso[64];
		if (v2_date(v->valuestring, iso, sizeof(iso)))
			cJSON_SetValuestring(v, iso);
	}
}

static void v2_plain_object(cJSON *o)
{
	cJSON *meta = cJSON_DetachItemFromObjectCaseSensitive(o, "__metadata");
	const char *etag = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "etag"));
	if (etag)
		cJSON_AddStringToObject(o, "@odata.etag", etag);
	cJSON_Delete(meta);
	cJSON *next;
	for (cJSON *m = o->child; m; m = next) {
		next = m->next;
		if (cJSON_IsObject(m) && cJSON_GetObjectItemCaseSensitive(m, "__deferred")) {
			cJSON_Delete(cJSON_DetachItemViaPointer(o, m));
			continue;
		}
		v2_plain_value(o, m);
	}
}

void op_odata_v2_plain(cJSON *v)
{
	if (cJSON_IsArray(v)) {
		v2_plain_elements(v);
	} else if (cJSON_IsObject(v)) {
		v2_plain_object(v);
	}
}

/* The message of an error or detail: a string (V4, SAP details) or
 * {"lang", "value"} (V2). */
static const char *message_of(const cJSON *e)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
	if (cJSON_IsObject(m))
		m = cJSON_GetObjectItemCaseSensitive(m, "value");
	return cJSON_GetStringValue(m);
}

/* Copies s, bytes below 0x20 as spaces, into out. */
static void copy_clean(char *out, size_t outlen, const char *s, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < outlen; i++)
		out[k++] = (unsigned char)s[i] < 0x20 ? ' ' : s[i];
	out[k] = '\0';
}

static bool json_error(const char *body, size_t len, char *code, size_t codelen, char *msg,
                       size_t msglen)
{
	cJSON *doc = cJSON_ParseWithLength(body, len);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
	const char *m = message_of(e);
	if (!cJSON_IsObject(e) || m == NULL) {
		cJSON_Delete(doc);
		return false;
	}
	const char *c = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "code"));
	copy_clean(code, codelen, c ? c : "", c ? strlen(c) : 0);
	struct op_buf b;
	op_buf_init(&b, 64u << 10);
	op_err rc = op_buf_adds(&b, m);
	const char *target = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "target"));
	if (rc == OP_OK && target && target[0] && strcmp(target, "/#TRANSIENT#") != 0)
		rc = op_buf_addf(&b, " [%s]", target);
	const cJSON *details = cJSON_GetObjectItemCaseSensitive(e, "details");
	if (details == NULL)
		details = cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(e, "innererror"), "errordetails");
	int shown = 0;
	for (const cJSON *d = cJSON_IsArray(details) ? details->child : NULL;
	     d && rc == OP_OK && shown < DETAILS_MAX; d = d->next) {
		const char *dm = message_of(d);
		if (dm == NULL || strcmp(dm, m) == 0)
			continue;
		const char *dc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "code"));
		rc = op_buf_addf(&b, "; %s%s%s", dc ? dc : "", dc ? ": " : "", dm);
		shown++;
	}
	copy_clean(msg, msglen, b.data ? b.data : "", b.len);
	op_buf_fini(&b);
	cJSON_Delete(doc);
	return true;
}

/* The text between <tag...> and </tag> in s, or NULL. */
static const char *xml_text(const char *s, size_t len, const char *tag, size_t *n)
{
	char open[32], close[32];
	snprintf(open, sizeof(open), "<%s", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	const char *a = memmem(s, len, open, strlen(open));
	if (a == NULL)
		return NULL;
	const char *gt = memchr(a, '>', len - (size_t)(a - s));
	if (gt == NULL)
		return NULL;
	gt++;
	const char *z = memmem(gt, len - (size_t)(gt - s), close, strlen(close));
	if (z == NULL)
		return NULL;
	*n = (size_t)(z - gt);
	return gt;
}

void op_odata_error(const char *body, size_t len, char *code, size_t codelen, char *msg,
                    size_t msglen)
{
	code[0] = msg[0] = '\0';
	if (body == NULL || len == 0)
		return;
	if (json_error(body, len, code, codelen, msg, msglen))
		return;
	size_t cn = 0, mn = 0;
	const char *c = xml_text(body, len, "code", &cn);
	const char *m = xml_text(body, len, "message", &mn);
	if (m) {
		copy_clean(code, codelen, c ? c : "", c ? cn : 0);
		copy_clean(msg, msglen, m, mn);
		return;
	}
	/* Anything else (an HTML logon page, plain text): its text, tags left out. */
	size_t k = 0;
	bool tag = false, space = false;
	for (size_t i = 0; i < len && k + 1 < msglen && k < 200; i++) {
		char ch = body[i];
		if (ch == '<')
			tag = true;
		else if (ch == '>')
			tag = false, space = k > 0;
		else if (!tag && (unsigned char)ch <= ' ')
			space = k > 0;
		else if (!tag) {
			if (space && k + 2 < msglen)
				msg[k++] = ' ';
			space = false;
			msg[k++] = ch;
		}
	}
	msg[k] = '\0';
}
