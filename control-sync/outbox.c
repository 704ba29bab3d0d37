/*
 * The outbox's records and messages (see outbox.h). Messages are spliced
 * as text, not rebuilt through cJSON: a drain after a long outage sends
 * tens of thousands of records a second, and each record is already JSON.
 */
#include "control-sync/outbox.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"

const char *op_outbox_stream_name(enum op_outbox_stream st)
{
	switch (st) {
	case OP_OUTBOX_LOGS:
		return "logs";
	case OP_OUTBOX_METRICS:
		return "metrics";
	default:
		return "executions";
	}
}

/* Appends "at": now, RFC 3339 UTC with milliseconds. */
static op_err add_at(struct op_buf *b)
{
	struct timespec ts;
	struct tm tm;
	char at[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(at + n, sizeof(at) - n, ".%03ldZ", ts.tv_nsec / 1000000);
	return op_buf_addf(b, "{\"at\":\"%s\"", at);
}

static op_err done(struct op_buf *b, op_err rc, char **out, size_t *len)
{
	if (rc == OP_OK)
		rc = op_buf_addc(b, '}');
	if (rc) {
		op_buf_fini(b);
		return rc;
	}
	*len = b->len;
	*out = op_buf_take(b);
	return *out ? OP_OK : OP_ENOMEM;
}

op_err op_outbox_log_record(enum op_log_level lvl, const char *module, const char *line, char **out,
                            size_t *len)
{
	*out = NULL;
	struct op_buf b;
	op_buf_init(&b, (size_t)1 << 20);
	op_err rc = add_at(&b);
	if (rc == OP_OK)
		rc = op_buf_addf(&b, ",\"level\":\"%s\",\"module\":", op_log_level_name(lvl));
	if (rc == OP_OK)
		rc = op_json_append_string(&b, module, strlen(module));
	if (rc == OP_OK)
		rc = op_buf_adds(&b, ",\"message\":");
	if (rc == OP_OK)
		rc = op_json_append_string(&b, line, strlen(line));
	return done(&b, rc, out, len);
}

op_err op_outbox_metrics_record(const char *prom, size_t len, char **out, size_t *outlen)
{
	*out = NULL;
	struct op_buf b;
	op_buf_init(&b, (size_t)64 << 20);
	op_err rc = add_at(&b);
	if (rc == OP_OK)
		rc = op_buf_adds(&b, ",\"samples\":{");
	bool first = true;
	for (size_t i = 0; i < len && rc == OP_OK;) {
		const char *l = prom + i;
		const char *nl = memchr(l, '\n', len - i);
		size_t n = nl ? (size_t)(nl - l) : len - i;
		i += n + 1;
		if (n == 0 || l[0] == '#')
			continue;
		/* "series value": the value is after the last space. */
		const char *sp = NULL;
		for (size_t k = n; k > 0 && sp == NULL; k--)
			if (l[k - 1] == ' ')
				sp = l + k - 1;
		if (sp == NULL || sp == l)
			continue;
		char num[64];
		size_t vl = (size_t)(l + n - sp - 1);
		if (vl == 0 || vl >= sizeof(num))
			continue;
		memcpy(num, sp + 1, vl);
		num[vl] = '\0';
		char *end;
		double v = strtod(num, &end);
		if (*end != '\0')
			continue;
		rc = first ? OP_OK : op_buf_addc(&b, ',');
		first = false;
		if (rc == OP_OK)
			rc = op_json_append_string(&b, l, (size_t)(sp - l));
		if (rc == OP_OK) {
			/* NaN and infinities are not JSON numbers. */
			char f[64];
			bool finite = isfinite(v) && op_json_num_format(v, f, sizeof(f)) > 0;
			rc = finite ? op_buf_addf(&b, ":%s", f) : op_buf_adds(&b, ":null");
		}
	}
	if (rc == OP_OK)
		rc = op_buf_addc(&b, '}');
	return done(&b, rc, out, outlen);
}

/* Appends record r (a JSON object's text) with "seq" as its first member. */
static op_err add_record(struct op_buf *out, const struct op_outbox_rec *r)
{
	const char *p = r->data, *end = r->data + r->len;
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	if (end - p < 2 || *p != '{' || end[-1] != '}')
		return op_buf_addf(out, "{\"seq\":%llu,\"invalid\":true}",
		                   (unsigned long long)r->seq);
	const char *q = p + 1;
	while (q < end && (*q == ' ' || *q == '\n' || *q == '\t' || *q == '\r'))
		q++;
	op_err rc =
	    op_buf_addf(out, "{\"seq\":%llu%s", (unsigned long long)r->seq, *q == '}' ? "" : ",");
	return rc ? rc : op_buf_add(out, q, (size_t)(end - q));
}

op_err op_outbox_message(const char *agent, enum op_outbox_stream st, uint64_t dropped,
                         const struct op_outbox_batch *b, struct op_buf *out)
{
	op_err rc = op_buf_adds(out, "{\"agent\":");
	if (rc == OP_OK)
		rc = op_json_append_string(out, agent, strlen(agent));
	if (rc == OP_OK)
		rc = op_buf_addf(out, ",\"stream\":\"%s\",\"dropped\":%llu,\"records\":[",
		                 op_outbox_stream_name(st), (unsigned long long)dropped);
	for (size_t i = 0; i < b->n && rc == OP_OK; i++) {
		if (i)
			rc = op_buf_addc(out, ',');
		if (rc == OP_OK)
			rc = add_record(out, &b->v[i]);
	}
	if (rc == OP_OK)
		rc = op_buf_adds(out, "]}");
	return rc;
}
