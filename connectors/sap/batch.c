/*
 * OData $batch bodies (see batch.h): the multipart/mixed request written from
 * a list of operations, and the multipart/mixed answer read back into one
 * response per operation.
 *
 * Invariant: reading is linear in the size of the answer, whatever its shape.
 * Delimiters are found line by line from where the previous one ended, header
 * sections are read line by line and capped (HEADERS_MAX bytes,
 * HEADERS_COUNT_MAX lines), every part is matched to operations as soon as it
 * is read so a flood of parts stops at the first one too many, and each body
 * is copied once (plus once per extra operation of a change set answered by
 * a single error). Nesting stops at one change set: the change set reader
 * rejects a multipart part instead of descending into it.
 */
#include "connectors/sap/batch.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "agent/core/alloc.h"
#include "agent/core/utf8.h"

#define ID_MAX            40
#define BOUNDARY_MAX      200   /* RFC 2046 says 70; be liberal, but bounded */
#define HEADERS_MAX       65536 /* bytes of one header section */
#define HEADERS_COUNT_MAX 200   /* lines of one header section */
#define NAME_MAX_         256   /* a header name, NUL included */

static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "MERGE", "DELETE"};

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* The canonical spelling of method m (any case), NULL if not one we send. */
static const char *method_name(const char *m)
{
	for (size_t i = 0; m && i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcasecmp(m, methods[i]) == 0)
			return methods[i];
	return NULL;
}

/* The first byte of s that may not stand in a request line (space_ok false)
 * or a header value (space_ok true): control characters, and space in the
 * path, where it would end the request target. NULL when there is none. */
static const char *bad_byte(const char *s, bool space_ok)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == 0x7f || (c < 0x20 && !(space_ok && c == '\t')) || (c == ' ' && !space_ok))
			return s;
	}
	return NULL;
}

/* The operations of one change set must be adjacent: the request holds
 * each change set once, and answers are matched in that order. */
static op_err check_order(const struct op_sap_batch_op *ops, size_t n, char *why, size_t whylen)
{
	for (size_t i = 0; i < n; i++) {
		int cs = ops[i].changeset;
		if (cs < -1)
			return op_errf(why, whylen, OP_EINVAL,
			               "requests[%zu]: changeset %d: -1 (none) or a number from 0",
			               i, cs);
		if (cs < 0 || (i > 0 && ops[i - 1].changeset == cs))
			continue;
		/* A change set starts here: it must not have been seen before.
		 * At most n * n / 2 comparisons, n <= OP_SAP_BATCH_MAX. */
		for (size_t j = 0; j + 1 < i; j++)
			if (ops[j].changeset == cs)
				return op_errf(
				    why, whylen, OP_EINVAL,
				    "requests[%zu]: change set %d also holds requests[%zu], "
				    "with other requests in between; the requests of one "
				    "change set must be adjacent",
				    i, cs, j);
	}
	return OP_OK;
}

/* One past the last operation of the unit (a change set, or one operation
 * outside any) that starts at ops[i]. */
static size_t unit_end(const struct op_sap_batch_op *ops, size_t n, size_t i)
{
	size_t j = i + 1;
	if (ops[i].changeset >= 0)
		while (j < n && ops[j].changeset == ops[i].changeset)
			j++;
	return j;
}

/* ---- writing ---- */

/* Everything wrong with ops[i] for the request, before anything is written. */
static op_err check_op(const struct op_sap_batch_op *op, size_t i, const char *id, char *why,
                       size_t whylen)
{
	const char *m = method_name(op->method);
	if (m == NULL)
		return op_errf(why, whylen, OP_EINVAL,
		               "requests[%zu]: method \"%.20s\": GET, POST, PUT, PATCH, MERGE or "
		               "DELETE",
		               i, op->method ? op->method : "(none)");
	if (op->path == NULL || op->path[0] == '\0')
		return op_errf(why, whylen, OP_EINVAL, "requests[%zu]: no path", i);
	const char *bad = bad_byte(op->path, false);
	if (bad)
		return op_errf(why, whylen, OP_EINVAL,
		               "requests[%zu]: the path has a space or control character at "
		               "offset %zu; encode it (%%20)",
		               i, (size_t)(bad - op->path));
	if (op->if_match && (op->if_match[0] == '\0' || bad_byte(op->if_match, true)))
		return op_errf(why, whylen, OP_EINVAL,
		               "requests[%zu]: ifMatch must be one non-empty line", i);
	if (m == methods[0] && op->changeset >= 0)
		return op_errf(why, whylen, OP_EINVAL,
		               "requests[%zu]: a GET is never in a change set", i);
	if (m == methods[0] && op->body)
		return op_errf(why, whylen, OP_EINVAL, "requests[%zu]: a GET takes no body", i);
	if (op->body) {
		/* A body holding a delimiter would end its part early. */
		char d[16 + ID_MAX], c[24 + ID_MAX];
		size_t blen = strlen(op->body);
		int dn = snprintf(d, sizeof(d), "--batch_%s", id);
		int cn = snprintf(c, sizeof(c), "--changeset_%s_", id);
		if (memmem(op->body, blen, d, (size_t)dn) || memmem(op->body, blen, c, (size_t)cn))
			return op_errf(why, whylen, OP_EINVAL,
			               "requests[%zu]: the body contains the boundary \"%s\" or "
			               "\"%s\"; use another batch id",
			               i, d + 2, c + 2);
	}
	return OP_OK;
}

/* One operation as an application/http part after delimiter "--bnd";
 * content_id 0 for none. Ends with the CRLF that belongs to the next
 * delimiter. */
static op_err add_part(struct op_buf *b, const char *bnd, const struct op_sap_batch_op *op,
                       size_t content_id)
{
	op_err rc = op_buf_addf(b,
	                        "--%s\r\nContent-Type: application/http\r\n"
	                        "Content-Transfer-Encoding: binary\r\n",
	                        bnd);
	if (rc == OP_OK && content_id)
		rc = op_buf_addf(b, "Content-ID: %zu\r\n", content_id);
	if (rc == OP_OK)
		rc = op_buf_addf(b, "\r\n%s %s HTTP/1.1\r\n", method_name(op->method), op->path);
	if (rc == OP_OK && op->body)
		rc = op_buf_adds(b, "Content-Type: application/json\r\n");
	if (rc == OP_OK)
		rc = op_buf_adds(b, "Accept: application/json\r\n");
	if (rc == OP_OK && op->if_match)
		rc = op_buf_addf(b, "If-Match: %s\r\n", op->if_match);
	if (rc == OP_OK && op->body)
		rc = op_buf_addf(b, "Content-Length: %zu\r\n", strlen(op->body));
	if (rc == OP_OK)
		rc = op_buf_adds(b, "\r\n");
	if (rc == OP_OK && op->body)
		rc = op_buf_adds(b, op->body);
	if (rc == OP_OK)
		rc = op_buf_adds(b, "\r\n");
	return rc;
}

op_err op_sap_batch_build(struct op_buf *b, const char *id, const struct op_sap_batch_op *ops,
                          size_t n, char *ct, size_t ctlen, char *why, size_t whylen)
{
	size_t start = b->len;
	if (ct && ctlen)
		ct[0] = '\0';
	size_t idlen = id ? strlen(id) : 0;
	bool id_ok = idlen > 0 && idlen <= ID_MAX;
	for (size_t i = 0; id_ok && i < idlen; i++)
		id_ok = is_alnum(id[i]);
	if (!id_ok)
		return op_errf(why, whylen, OP_EINVAL,
		               "batch id \"%.60s\": 1 to %d letters and digits", id ? id : "",
		               ID_MAX);
	if (n == 0)
		return op_errf(why, whylen, OP_EINVAL, "no requests");
	if (n > OP_SAP_BATCH_MAX)
		return op_errf(why, whylen, OP_ELIMIT, "%zu requests; one batch takes at most %d",
		               n, OP_SAP_BATCH_MAX);
	int need = snprintf(NULL, 0, "multipart/mixed; boundary=batch_%s", id);
	if (ct == NULL || need < 0 || (size_t)need >= ctlen)
		return op_errf(why, whylen, OP_EINVAL, "ct: %zu bytes, the Content-Type needs %d",
		               ct ? ctlen : 0, need + 1);
	op_err rc = check_order(ops, n, why, whylen);
	for (size_t i = 0; i < n && rc == OP_OK; i++)
		rc = check_op(&ops[i], i, id, why, whylen);
	if (rc)
		return rc;

	char outer[16 + ID_MAX], inner[48 + ID_MAX];
	snprintf(outer, sizeof(outer), "batch_%s", id);
	size_t k = 0;
	for (size_t i = 0; i < n && rc == OP_OK;) {
		if (ops[i].changeset < 0) {
			rc = add_part(b, outer, &ops[i], 0);
			i++;
			continue;
		}
		size_t j = unit_end(ops, n, i);
		snprintf(inner, sizeof(inner), "changeset_%s_%zu", id, ++k);
		rc = op_buf_addf(b, "--%s\r\nContent-Type: multipart/mixed; boundary=%s\r\n\r\n",
		                 outer, inner);
		/* Content-ID i + 1: unique in the whole batch, as V4.01 wants. */
		for (; i < j && rc == OP_OK; i++)
			rc = add_part(b, inner, &ops[i], i + 1);
		if (rc == OP_OK)
			rc = op_buf_addf(b, "--%s--\r\n\r\n", inner);
	}
	if (rc == OP_OK)
		rc = op_buf_addf(b, "--%s--\r\n", outer);
	if (rc) {
		/* Nothing half written: back to what the caller had. */
		b->len = start;
		if (b->data)
			b->data[start] = '\0';
		if (rc == OP_ELIMIT)
			return op_errf(why, whylen, rc, "the batch body is larger than %zu bytes",
			               b->max);
		return op_errf(why, whylen, rc, "out of memory");
	}
	snprintf(ct, ctlen, "multipart/mixed; boundary=%s", outer);
	return OP_OK;
}

/* ---- reading: MIME pieces ---- */

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* True when the media type of the Content-Type value v is type (any case). */
static bool media_is(const char *v, const char *type)
{
	while (is_space(*v))
		v++;
	size_t n = strcspn(v, ";");
	while (n > 0 && is_space(v[n - 1]))
		n--;
	return n == strlen(type) && strncasecmp(v, type, n) == 0;
}

/*
 * The boundary parameter of the Content-Type value v, unquoted, into out
 * (BOUNDARY_MAX + 1 bytes). False when there is none, or it is empty or
 * longer than BOUNDARY_MAX.
 */
static bool boundary_param(const char *v, char *out)
{
	const char *p = strchr(v, ';');
	while (p && *p == ';') {
		p++;
		while (is_space(*p))
			p++;
		const char *name = p;
		while (*p && *p != '=' && *p != ';' && !is_space(*p))
			p++;
		size_t nlen = (size_t)(p - name);
		while (is_space(*p))
			p++;
		if (*p != '=') {
			p = strchr(p, ';');
			continue;
		}
		p++;
		while (is_space(*p))
			p++;
		size_t olen = 0;
		bool too_long = false;
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1])
					p++;
				if (olen < BOUNDARY_MAX)
					out[olen++] = *p;
				else
					too_long = true;
			}
			if (*p == '"')
				p++;
		} else {
			for (; *p && *p != ';' && !is_space(*p); p++) {
				if (olen < BOUNDARY_MAX)
					out[olen++] = *p;
				else
					too_long = true;
			}
		}
		out[olen] = '\0';
		if (nlen == 8 && strncasecmp(name, "boundary", 8) == 0)
			return olen > 0 && !too_long;
		p = strchr(p, ';');
	}
	out[0] = '\0';
	return false;
}

/* Up to 40 bytes of s[0..n) for an error text: quoted, with anything but
 * printable ASCII shown as '?'; "nothing" when n is 0. */
static const char *excerpt(const char *s, size_t n, char *out, size_t outlen)
{
	if (n == 0)
		return "nothing";
	size_t k = 0, max = n < 40 ? n : 40;
	out[k++] = '"';
	for (size_t i = 0; i < max && k + 5 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];
		out[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	if (max < n && k + 5 < outlen) {
		memcpy(out + k, "...", 3);
		k += 3;
	}
	out[k++] = '"';
	out[k] = '\0';
	return out;
}

/* A header value as a JSON string: valid UTF-8 as is, other bytes as U+FFFD. */
static cJSON *header_string(const char *v, size_t n)
{
	struct op_buf b;
	op_buf_init(&b, 3 * n + 1);
	op_err rc = OP_OK;
	for (size_t i = 0; i < n && rc == OP_OK;) {
		size_t ok = op_utf8_valid_len((const unsigned char *)v + i, n - i);
		if (ok) {
			rc = op_buf_add(&b, v + i, ok);
			i += ok;
		} else {
			rc = op_buf_adds(&b, "\xEF\xBF\xBD");
			i++;
		}
	}
	cJSON *j = rc == OP_OK ? cJSON_CreateString(op_buf_str(&b)) : NULL;
	op_buf_fini(&b);
	return j;
}

/* Replaces item old of h by old's value, sep and v[0..n); *last is the new
 * item. */
static op_err header_join(cJSON *h, cJSON *old, const char *sep, const char *v, size_t n,
                          cJSON **last)
{
	struct op_buf b;
	op_buf_init(&b, HEADERS_MAX * 2);
	op_err rc = op_buf_adds(&b, old->valuestring);
	if (rc == OP_OK)
		rc = op_buf_adds(&b, sep);
	if (rc == OP_OK)
		rc = op_buf_add(&b, v, n);
	cJSON *val = rc == OP_OK ? header_string(op_buf_str(&b), b.len) : NULL;
	op_buf_fini(&b);
	/* The replacement takes a copy of the name, made before old goes. */
	char name[NAME_MAX_];
	snprintf(name, sizeof(name), "%s", old->string);
	if (val == NULL || !cJSON_ReplaceItemInObjectCaseSensitive(h, name, val)) {
		cJSON_Delete(val);
		return OP_ENOMEM;
	}
	*last = val;
	return OP_OK;
}

/* One header line (no line break) into h; *last is the item it set, for a
 * continuation line. Lines that are not headers are skipped. */
static op_err header_line(cJSON *h, const char *line, size_t len, cJSON **last)
{
	const char *end = line + len;
	if (is_space(line[0])) {
		/* obs-fold: the value of the previous header goes on */
		const char *v = line;
		while (v < end && is_space(*v))
			v++;
		while (end > v && is_space(end[-1]))
			end--;
		if (*last == NULL || v == end)
			return OP_OK;
		return header_join(h, *last, " ", v, (size_t)(end - v), last);
	}
	*last = NULL;
	const char *colon = memchr(line, ':', len);
	size_t nlen = colon ? (size_t)(colon - line) : 0;
	while (nlen > 0 && is_space(line[nlen - 1]))
		nlen--;
	if (nlen == 0 || nlen >= NAME_MAX_)
		return OP_OK;
	char name[NAME_MAX_];
	for (size_t i = 0; i < nlen; i++) {
		char c = line[i];
		if (c <= ' ' || c >= 0x7f)
			return OP_OK; /* not a token: not a header we could name */
		name[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
	}
	name[nlen] = '\0';
	const char *v = colon + 1;
	while (v < end && is_space(*v))
		v++;
	while (end > v && is_space(end[-1]))
		end--;
	cJSON *old = cJSON_GetObjectItemCaseSensitive(h, name);
	if (old && cJSON_IsString(old))
		return header_join(h, old, ", ", v, (size_t)(end - v), last);
	cJSON *val = header_string(v, (size_t)(end - v));
	if (val == NULL || !cJSON_AddItemToObject(h, name, val)) {
		cJSON_Delete(val);
		return OP_ENOMEM;
	}
	*last = val;
	return OP_OK;
}

/*
 * Reads the header section at s[*pos..end) into h ({lower-case name: value},
 * a repeated name's values joined with ", "). It ends at a blank line, which
 * *pos is moved past, or at end (no body). LF or CRLF line ends.
 */
static op_err read_headers(const char *s, size_t *pos, size_t end, cJSON *h, const char *where,
                           char *why, size_t whylen)
{
	size_t p = *pos, count = 0;
	cJSON *last = NULL;
	while (p < end) {
		const char *nl = memchr(s + p, '\n', end - p);
		size_t le = nl ? (size_t)(nl - s) : end, next = nl ? le + 1 : end;
		if (le > p && s[le - 1] == '\r')
			le--;
		if (le == p) {
			p = next;
			break;
		}
		if (next - *pos > HEADERS_MAX)
			return op_errf(why, whylen, OP_EPARSE,
			               "%s: the headers are longer than %d bytes", where,
			               HEADERS_MAX);
		if (++count > HEADERS_COUNT_MAX)
			return op_errf(why, whylen, OP_EPARSE, "%s: more than %d headers", where,
			               HEADERS_COUNT_MAX);
		if (header_line(h, s + p, le - p, &last) != OP_OK)
			return op_errf(why, whylen, OP_ENOMEM, "out of memory");
		p = next;
	}
	*pos = p;
	return OP_OK;
}

/* The digits-only value of header name in h into *out; 0 when absent, 1 when
 * read, -1 when not a number (or too large to be one we believe). */
static int header_number(const cJSON *h, const char *name, size_t *out)
{
	const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, name));
	if (v == NULL)
		return 0;
	size_t n = 0, k = 0;
	for (; v[k] >= '0' && v[k] <= '9'; k++) {
		if (k >= 15)
			return -1;
		n = n * 10 + (size_t)(v[k] - '0');
	}
	if (k == 0 || v[k] != '\0')
		return -1;
	*out = n;
	return 1;
}

/* ---- reading: multipart ---- */

/* A multipart body s[0..len) being read part by part. */
struct mp {
	const char *s;
	size_t len;
	char delim[BOUNDARY_MAX + 2]; /* "--" boundary, not NUL-terminated */
	size_t dlen;
	size_t pos;  /* first byte after the last delimiter line */
	bool closed; /* the close delimiter has been read */
};

/*
 * Finds the next delimiter line at or after from: "--boundary" at the start
 * of a line, followed by "--" (the close delimiter, *close set; what follows
 * is epilogue) or by transport padding and a line break. *at is where it
 * starts, *next the first byte after it. False when there is none.
 *
 * Line by line with memchr rather than memmem over the rest of the body:
 * each byte is looked at once either way, but a memmem call per candidate
 * makes ASan check the whole remaining body every time, which is quadratic
 * in sanitizer builds and under the fuzzer.
 */
static bool find_delim(const struct mp *m, size_t from, size_t *at, size_t *next, bool *close)
{
	const char *s = m->s;
	size_t a = from;
	if (a > 0 && a < m->len && s[a - 1] != '\n') {
		const char *nl = memchr(s + a, '\n', m->len - a);
		a = nl ? (size_t)(nl - s) + 1 : m->len;
	}
	while (a < m->len) {
		size_t q = a + m->dlen;
		if (m->len - a >= m->dlen && memcmp(s + a, m->delim, m->dlen) == 0) {
			if (m->len - q >= 2 && s[q] == '-' && s[q + 1] == '-') {
				*at = a;
				*next = m->len;
				*close = true;
				return true;
			}
			while (q < m->len && is_space(s[q]))
				q++;
			if (q < m->len && s[q] == '\r')
				q++;
			if (q < m->len && s[q] == '\n') {
				*at = a;
				*next = q + 1;
				*close = false;
				return true;
			}
		}
		const char *nl = memchr(s + a, '\n', m->len - a);
		if (nl == NULL)
			return false;
		a = (size_t)(nl - s) + 1;
	}
	return false;
}

/* Starts reading s[0..len) with boundary bnd: skips the preamble. False when
 * no delimiter line is found at all. */
static bool mp_start(struct mp *m, const char *s, size_t len, const char *bnd)
{
	size_t blen = strlen(bnd), at = 0, next = 0;
	m->s = s;
	m->len = len;
	m->delim[0] = m->delim[1] = '-';
	memcpy(m->delim + 2, bnd, blen);
	m->dlen = blen + 2;
	m->closed = false;
	if (!find_delim(m, 0, &at, &next, &m->closed))
		return false;
	m->pos = next;
	return true;
}

/* The next part, s[*ps..*pe) without the line break that belongs to the
 * delimiter after it: 1; 0 after the close delimiter; -1 when the body ends
 * without one (truncated). */
static int mp_next(struct mp *m, size_t *ps, size_t *pe)
{
	if (m->closed)
		return 0;
	size_t at = 0, next = 0;
	bool close = false;
	if (!find_delim(m, m->pos, &at, &next, &close))
		return -1;
	size_t e = at;
	if (e > m->pos && m->s[e - 1] == '\n')
		e--;
	if (e > m->pos && m->s[e - 1] == '\r')
		e--;
	*ps = m->pos;
	*pe = e;
	m->pos = next;
	m->closed = close;
	return 1;
}

/* ---- reading: parts ---- */

/* What a part holds, from its MIME headers. */
struct part {
	bool multi;  /* a change set (multipart/mixed); else an HTTP response */
	size_t body; /* where the response or the change set's parts begin */
	size_t cid;  /* Content-ID, 0 when absent or not a number */
	char boundary[BOUNDARY_MAX + 1];
};

static op_err read_part(const char *s, size_t start, size_t end, const char *where, struct part *p,
                        char *why, size_t whylen)
{
	p->multi = false;
	p->body = start;
	p->cid = 0;
	p->boundary[0] = '\0';
	/* No part headers at all, straight to the status line: take it. */
	if (end - start >= 5 && memcmp(s + start, "HTTP/", 5) == 0)
		return OP_OK;
	cJSON *h = cJSON_CreateObject();
	if (h == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	size_t pos = start;
	op_err rc = read_headers(s, &pos, end, h, where, why, whylen);
	if (rc)
		goto out;
	p->body = pos;
	size_t cid = 0;
	if (header_number(h, "content-id", &cid) == 1)
		p->cid = cid;
	const char *ct = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "content-type"));
	char ex[64];
	/* No Content-Type: the status line check below says whether it is one. */
	if (ct == NULL || media_is(ct, "application/http"))
		goto out;
	if (!media_is(ct, "multipart/mixed")) {
		rc = op_errf(why, whylen, OP_EPARSE,
		             "%s: Content-Type %s, expected application/http or multipart/mixed",
		             where, excerpt(ct, strlen(ct), ex, sizeof(ex)));
		goto out;
	}
	if (!boundary_param(ct, p->boundary)) {
		rc = op_errf(why, whylen, OP_EPARSE,
		             "%s: a change set (multipart/mixed) without a usable boundary "
		             "parameter: %s",
		             where, excerpt(ct, strlen(ct), ex, sizeof(ex)));
		goto out;
	}
	p->multi = true;
out:
	cJSON_Delete(h);
	return rc;
}

/* "HTTP/x.y NNN [reason]": the status, or 0 when line is not one. */
static int status_line(const char *line, size_t n)
{
	if (n < 5 || memcmp(line, "HTTP/", 5) != 0)
		return 0;
	size_t i = 5;
	while (i < n && line[i] != ' ')
		i++;
	if (i == 5)
		return 0;
	while (i < n && line[i] == ' ')
		i++;
	if (n - i < 3 || (n - i > 3 && line[i + 3] != ' '))
		return 0;
	int st = 0;
	for (size_t k = i; k < i + 3; k++) {
		if (line[k] < '0' || line[k] > '9')
			return 0;
		st = st * 10 + (line[k] - '0');
	}
	return st >= 100 && st <= 599 ? st : 0;
}

/* The HTTP response at s[start..end) into r. */
static op_err read_http(const char *s, size_t start, size_t end, const char *where,
                        struct op_sap_batch_resp *r, char *why, size_t whylen)
{
	char ex[64];
	size_t p = start;
	/* Blank lines before the status line: some servers add one. */
	while (p < end && (s[p] == '\r' || s[p] == '\n'))
		p++;
	const char *nl = memchr(s + p, '\n', end - p);
	size_t le = nl ? (size_t)(nl - s) : end;
	if (le > p && s[le - 1] == '\r')
		le--;
	r->status = status_line(s + p, le - p);
	if (r->status == 0)
		return op_errf(why, whylen, OP_EPARSE, "%s: no HTTP status line, got %s", where,
		               excerpt(s + p, le - p, ex, sizeof(ex)));
	p = nl ? (size_t)(nl - s) + 1 : end;
	r->headers = cJSON_CreateObject();
	if (r->headers == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	op_err rc = read_headers(s, &p, end, r->headers, where, why, whylen);
	if (rc)
		return rc;
	size_t blen = end - p, cl = 0;
	int has_cl = header_number(r->headers, "content-length", &cl);
	if (has_cl < 0) {
		const char *v = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(r->headers, "content-length"));
		return op_errf(why, whylen, OP_EPARSE, "%s: Content-Length %s is not a number",
		               where, excerpt(v, strlen(v), ex, sizeof(ex)));
	}
	if (has_cl) {
		if (cl > blen)
			return op_errf(why, whylen, OP_EPARSE,
			               "%s: truncated: the body has %zu bytes, its Content-Length "
			               "says %zu",
			               where, blen, cl);
		/* Past Content-Length only line ends may follow; anything else
		 * means the two framings disagree, and neither can be trusted. */
		for (size_t i = p + cl; i < end; i++)
			if (s[i] != '\r' && s[i] != '\n' && !is_space(s[i]))
				return op_errf(why, whylen, OP_EPARSE,
				               "%s: the body has %zu bytes, more than its "
				               "Content-Length %zu",
				               where, blen, cl);
		blen = cl;
	} else {
		/* A line break before the delimiter's own belongs to the body by
		 * RFC 2046, but servers mean it as framing. */
		if (blen > 0 && s[p + blen - 1] == '\n')
			blen--;
		if (blen > 0 && s[p + blen - 1] == '\r')
			blen--;
	}
	r->body = op_malloc(blen + 1);
	if (r->body == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	memcpy(r->body, s + p, blen);
	r->body[blen] = '\0';
	r->body_len = blen;
	return OP_OK;
}

static op_err resp_copy(struct op_sap_batch_resp *dst, const struct op_sap_batch_resp *src,
                        char *why, size_t whylen)
{
	dst->status = src->status;
	dst->headers = cJSON_Duplicate(src->headers, true);
	dst->body = op_malloc(src->body_len + 1);
	if (dst->headers == NULL || dst->body == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	memcpy(dst->body, src->body, src->body_len + 1);
	dst->body_len = src->body_len;
	return OP_OK;
}

/* "requests[3]" or "requests[3..5]" for ops [a, b). */
static const char *req_range(size_t a, size_t b, char *out, size_t outlen)
{
	if (b - a == 1)
		snprintf(out, outlen, "requests[%zu]", a);
	else
		snprintf(out, outlen, "requests[%zu..%zu]", a, b - 1);
	return out;
}

/*
 * V4 may answer a change set in any order, with the Content-ID of each
 * request on its answer. When the answers in r[0..k) carry exactly the
 * Content-IDs first + 1 .. first + k that the request had, puts them in
 * request order; otherwise leaves them in the order given.
 */
static op_err order_by_content_id(struct op_sap_batch_resp *r, size_t *cid, size_t first, size_t k)
{
	bool *seen = op_calloc(k, sizeof(*seen));
	if (seen == NULL)
		return OP_ENOMEM;
	bool ok = true;
	for (size_t i = 0; i < k && ok; i++) {
		ok = cid[i] > first && cid[i] <= first + k && !seen[cid[i] - first - 1];
		if (ok)
			seen[cid[i] - first - 1] = true;
	}
	op_free(seen);
	for (size_t i = 0; ok && i < k; i++) {
		while (cid[i] - first - 1 != i) {
			size_t t = cid[i] - first - 1;
			struct op_sap_batch_resp tr = r[i];
			size_t tc = cid[i];
			r[i] = r[t];
			cid[i] = cid[t];
			r[t] = tr;
			cid[t] = tc;
		}
	}
	return OP_OK;
}

/*
 * The change set part p (outer part number partno) answering ops
 * [first, first + k) into r[0..k): one answer per operation, or a single
 * error answer for all of them.
 */
static op_err read_changeset(const char *s, size_t end, const struct part *p, size_t partno,
                             size_t first, size_t k, struct op_sap_batch_resp *r, char *why,
                             size_t whylen)
{
	char where[96], rr[48];
	struct mp m;
	size_t *cid = op_calloc(k, sizeof(*cid));
	if (cid == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	op_err rc = OP_OK;
	if (!mp_start(&m, s + p->body, end - p->body, p->boundary)) {
		rc = op_errf(why, whylen, OP_EPARSE, "part %zu (%s): no boundary line \"--%s\"",
		             partno, req_range(first, first + k, rr, sizeof(rr)), p->boundary);
		goto out;
	}
	size_t q = 0, ps = 0, pe = 0;
	int more;
	while ((more = mp_next(&m, &ps, &pe)) == 1) {
		if (q == k) {
			rc = op_errf(
			    why, whylen, OP_EPARSE,
			    "part %zu.%zu: more answers than the %zu requests of the change "
			    "set (%s)",
			    partno, q + 1, k, req_range(first, first + k, rr, sizeof(rr)));
			goto out;
		}
		snprintf(where, sizeof(where), "part %zu.%zu (requests[%zu])", partno, q + 1,
		         first + q);
		struct part ip;
		rc = read_part(m.s, ps, pe, where, &ip, why, whylen);
		if (rc)
			goto out;
		if (ip.multi) {
			rc = op_errf(
			    why, whylen, OP_EPARSE,
			    "%s: a multipart inside a change set; only one level of nesting "
			    "is allowed",
			    where);
			goto out;
		}
		rc = read_http(m.s, ip.body, pe, where, &r[q], why, whylen);
		if (rc)
			goto out;
		cid[q++] = ip.cid;
	}
	if (more < 0) {
		rc = op_errf(why, whylen, OP_EPARSE,
		             "part %zu.%zu: truncated, no boundary line \"--%s\" after it", partno,
		             q + 1, p->boundary);
		goto out;
	}
	if (q == k) {
		rc = order_by_content_id(r, cid, first, k);
		if (rc)
			rc = op_errf(why, whylen, rc, "out of memory");
	} else if (q == 1 && r[0].status >= 400) {
		for (size_t i = 1; i < k && rc == OP_OK; i++)
			rc = resp_copy(&r[i], &r[0], why, whylen);
	} else {
		rc = op_errf(why, whylen, OP_EPARSE,
		             "part %zu: %zu answer%s for the change set of %zu requests (%s)",
		             partno, q, q == 1 ? "" : "s", k,
		             req_range(first, first + k, rr, sizeof(rr)));
	}
out:
	op_free(cid);
	return rc;
}

/* The outer part s[ps..pe), number partno, answering the unit of ops
 * [i, j): a change set or one operation outside any. */
static op_err read_unit(const char *s, size_t ps, size_t pe, size_t partno,
                        const struct op_sap_batch_op *ops, size_t i, size_t j,
                        struct op_sap_batch_resp *resp, char *why, size_t whylen)
{
	char where[96], rr[48];
	snprintf(where, sizeof(where), "part %zu (%s)", partno, req_range(i, j, rr, sizeof(rr)));
	struct part p;
	op_err rc = read_part(s, ps, pe, where, &p, why, whylen);
	if (rc)
		return rc;
	if (p.multi && ops[i].changeset < 0)
		return op_errf(why, whylen, OP_EPARSE,
		               "%s: a change set answers a request that is in none", where);
	if (p.multi)
		return read_changeset(s, pe, &p, partno, i, j - i, &resp[i], why, whylen);
	rc = read_http(s, p.body, pe, where, &resp[i], why, whylen);
	if (rc || j - i == 1)
		return rc;
	/* One response for a whole change set: SAP Gateway's way of saying
	 * that the change set failed. Anything else would be a mismatch. */
	if (resp[i].status < 400)
		return op_errf(why, whylen, OP_EPARSE,
		               "%s: a single %d answer for a change set of %zu requests", where,
		               resp[i].status, j - i);
	for (size_t k = i + 1; k < j && rc == OP_OK; k++)
		rc = resp_copy(&resp[k], &resp[i], why, whylen);
	return rc;
}

op_err op_sap_batch_parse(const char *s, size_t len, const char *content_type,
                          const struct op_sap_batch_op *ops, size_t n,
                          struct op_sap_batch_resp *resp, char *why, size_t whylen)
{
	char bnd[BOUNDARY_MAX + 1], ex[64];
	if (n > 0 && (resp == NULL || ops == NULL))
		return op_errf(why, whylen, OP_EINVAL, "%zu requests but no %s", n,
		               ops ? "answer array" : "operations");
	if (n > 0)
		memset(resp, 0, n * sizeof(*resp));
	if (n > OP_SAP_BATCH_MAX)
		return op_errf(why, whylen, OP_EINVAL, "%zu requests; one batch takes at most %d",
		               n, OP_SAP_BATCH_MAX);
	op_err rc = check_order(ops, n, why, whylen);
	if (rc)
		return rc;
	const char *ct = content_type ? content_type : "";
	if (!media_is(ct, "multipart/mixed"))
		return op_errf(why, whylen, OP_EPARSE,
		               "the response is not multipart/mixed (Content-Type %s)",
		               excerpt(ct, strlen(ct), ex, sizeof(ex)));
	if (!boundary_param(ct, bnd))
		return op_errf(why, whylen, OP_EPARSE,
		               "the response's Content-Type has no usable boundary parameter: %s",
		               excerpt(ct, strlen(ct), ex, sizeof(ex)));
	struct mp m;
	if (!mp_start(&m, s, len, bnd))
		return op_errf(why, whylen, OP_EPARSE,
		               "no boundary line \"--%s\" in the response (it starts %s)", bnd,
		               excerpt(s, len, ex, sizeof(ex)));
	size_t i = 0, partno = 0, ps = 0, pe = 0;
	int more;
	while ((more = mp_next(&m, &ps, &pe)) == 1) {
		partno++;
		if (i == n) {
			rc = op_errf(why, whylen, OP_EPARSE,
			             "part %zu: more answers than the %zu requests", partno, n);
			goto out;
		}
		size_t j = unit_end(ops, n, i);
		rc = read_unit(s, ps, pe, partno, ops, i, j, resp, why, whylen);
		if (rc)
			goto out;
		i = j;
	}
	if (more < 0) {
		rc = op_errf(why, whylen, OP_EPARSE,
		             "part %zu: truncated, no boundary line \"--%s\" after it", partno + 1,
		             bnd);
		goto out;
	}
	if (i < n) {
		/* V4 stops at the first failure unless continue-on-error was asked
		 * for: say so when that is what it looks like. */
		int last = partno ? resp[i - 1].status : 0;
		rc = op_errf(why, whylen, OP_EPARSE,
		             "part %zu (requests[%zu]): missing; the response ends after %zu "
		             "part%s for %zu requests%s",
		             partno + 1, i, partno, partno == 1 ? "" : "s", n,
		             last >= 400 ? ", the last one an error: the server stopped there "
		                           "(OData V4 does without Prefer: odata.continue-on-error)"
		                         : "");
		goto out;
	}
out:
	if (rc)
		op_sap_batch_resp_free(resp, n);
	return rc;
}

void op_sap_batch_resp_free(struct op_sap_batch_resp *resp, size_t n)
{
	for (size_t i = 0; resp && i < n; i++) {
		cJSON_Delete(resp[i].headers);
		op_free(resp[i].body);
		memset(&resp[i], 0, sizeof(resp[i]));
	}
}
