/*
 * `outpostctl deploy` and `outpostctl status`: the control plane's side of
 * the control link (docs/protocol.md), with nothing but an MQTT broker.
 *
 * deploy checks the pipeline files as `outpostctl check` does, learns each
 * target agent's current seq from the broker's retained `desired` and
 * `reported` (ctl_mqtt's probe says when all retained messages are in),
 * signs one document per agent with the next seq, publishes it retained
 * and, unless told not to, waits for the agent's `reported` to say it was
 * applied or refused. status collects the retained `status` and
 * `reported` of the fleet, or of one agent, and prints them.
 *
 * Key invariant: what comes from the broker is never trusted. A payload is
 * bounded, parsed as JSON and read member by member with its type checked;
 * what does not parse is reported and skipped; text from the wire is
 * stripped of control characters before it reaches a terminal.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/diag.h"
#include "agent/core/json.h"
#include "agent/engine/engine.h"
#include "agent/engine/loader.h"
#include "agent/engine/pipeline.h"
#include "control-sync/envelope.h"
#include "control-sync/outpostctl/ctl.h"
#include "control-sync/outpostctl/ctl_mqtt.h"

#define TIMEOUT_DEFAULT_S 30.0
#define TIMEOUT_MAX_S     86400.0
#define AGENT_ID_MAX      64
#define GROUP_MAX         256
/* Largest status or reported payload read (docs/protocol.md). */
#define STATE_MAX (1u << 20)
/* Agents held at once: a bound, not a fleet size anyone should reach. */
#define AGENTS_MAX 100000
/* A status heartbeat older than this many seconds is stale (3 x 30 s). */
#define STALE_S 90
/* Highest seq: the largest integer a double holds exactly, 2^53. */
#define SEQ_MAX 9007199254740992ULL
/* Widest table cell; longer text is cut with "...". */
#define CELL_MAX 60

/* ---- text for terminals ---- */

/* Replaces control characters (C0, DEL, and UTF-8 encoded C1) in s by '?',
 * so that text from the wire cannot drive the terminal. */
static void clean(char *s)
{
	for (unsigned char *p = (unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
		else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			p[0] = p[1] = '?';
	}
}

/* Prints one line of fmt's text (which ends in a newline), cleaned, on f:
 * a newline from the wire cannot forge a line of its own. */
static void emit(FILE *f, const char *fmt, ...) OP_PRINTF(2, 3);

static void emit(FILE *f, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	size_t len = n < 0 ? 0 : (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
	bool nl = len && buf[len - 1] == '\n';
	buf[len - nl] = '\0';
	clean(buf);
	fputs(buf, f);
	if (nl || len == sizeof(buf) - 1)
		fputc('\n', f);
}

/* Cells row by row; each column as wide as its widest cell. */
struct table {
	size_t ncols, n, cap;
	char **cells;
	bool nomem;
};

static void table_add(struct table *t, const char *fmt, ...) OP_PRINTF(2, 3);

static void table_add(struct table *t, const char *fmt, ...)
{
	if (t->nomem)
		return;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **c = op_realloc(t->cells, cap * sizeof(*c));
		if (c == NULL) {
			t->nomem = true;
			return;
		}
		t->cells = c;
		t->cap = cap;
	}
	char cell[CELL_MAX + 4];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(cell, sizeof(cell), fmt, ap);
	va_end(ap);
	if (n > CELL_MAX)
		memcpy(cell + CELL_MAX - 3, "...", 4);
	clean(cell);
	if ((t->cells[t->n] = op_strdup(cell)) == NULL) {
		t->nomem = true;
		return;
	}
	t->n++;
}

/* Prints and frees the table. CTL_OK, or CTL_FAILED when out of memory. */
static int table_print(struct table *t)
{
	int ret = CTL_OK;
	size_t w[8] = {0};
	if (t->nomem || t->ncols > 8) {
		fputs("outpostctl: out of memory\n", stderr);
		ret = CTL_FAILED;
	}
	for (size_t i = 0; ret == CTL_OK && i < t->n; i++) {
		size_t l = strlen(t->cells[i]);
		if (l > w[i % t->ncols])
			w[i % t->ncols] = l;
	}
	for (size_t i = 0; ret == CTL_OK && i < t->n; i++) {
		if (i % t->ncols == t->ncols - 1)
			printf("%s\n", t->cells[i]);
		else
			printf("%-*s  ", (int)w[i % t->ncols], t->cells[i]);
	}
	for (size_t i = 0; i < t->n; i++)
		op_free(t->cells[i]);
	op_free(t->cells);
	return ret;
}

static int print_json(const cJSON *v)
{
	char *s = op_json_print(v, OP_JSON_PRETTY);
	if (s == NULL) {
		fputs("outpostctl: out of memory\n", stderr);
		return CTL_FAILED;
	}
	puts(s);
	op_free(s);
	return CTL_OK;
}

/* ---- values from the wire ---- */

/* True when id is 1 to 64 letters, digits, '.', '_' or '-'. */
static bool agent_id_ok(const char *id, size_t len)
{
	if (len == 0 || len > AGENT_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static const cJSON *member(const cJSON *o, const char *name)
{
	return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, name) : NULL;
}

/* The string member name of o, or NULL. */
static const char *str_of(const cJSON *o, const char *name)
{
	return cJSON_GetStringValue(member(o, name));
}

/* v as a seq: an integer from 0 to 2^53. */
static bool seq_of(const cJSON *v, uint64_t *out)
{
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
	    v->valuedouble > (double)SEQ_MAX || floor(v->valuedouble) != v->valuedouble)
		return false;
	*out = (uint64_t)v->valuedouble;
	return true;
}

/* Milliseconds since the epoch of an RFC 3339 time ("2026-11-24T05:10:30.000Z",
 * "...+01:00"). */
static bool parse_time(const char *s, long long *ms)
{
	if (s == NULL)
		return false;
	int v[6] = {0};
	static const int width[6] = {4, 2, 2, 2, 2, 2};
	static const char sep[6] = {'-', '-', 'T', ':', ':', '\0'};
	const char *p = s;
	for (int i = 0; i < 6; i++) {
		for (int k = 0; k < width[i]; k++, p++) {
			if (*p < '0' || *p > '9')
				return false;
			v[i] = v[i] * 10 + (*p - '0');
		}
		if (sep[i] && !(*p == sep[i] || (i == 2 && (*p == 't' || *p == ' '))))
			return false;
		if (sep[i])
			p++;
	}
	long long frac = 0;
	if (*p == '.') {
		int digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
			if (digits < 3)
				frac = frac * 10 + (*p - '0');
		}
		if (digits == 0)
			return false;
		for (; digits < 3; digits++)
			frac *= 10;
	}
	long long off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		if (!(p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' && p[3] == ':' &&
		      p[4] >= '0' && p[4] <= '9' && p[5] >= '0' && p[5] <= '9'))
			return false;
		off = sign * (((p[1] - '0') * 10 + (p[2] - '0')) * 60LL + (p[4] - '0') * 10 +
		              (p[5] - '0'));
		p += 6;
	} else {
		return false;
	}
	if (*p != '\0' || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 ||
	    v[4] > 59 || v[5] > 60)
		return false;
	struct tm tm = {.tm_year = v[0] - 1900,
	                .tm_mon = v[1] - 1,
	                .tm_mday = v[2],
	                .tm_hour = v[3],
	                .tm_min = v[4],
	                .tm_sec = v[5]};
	time_t t = timegm(&tm);
	*ms = ((long long)t - off * 60) * 1000 + frac;
	return true;
}

static long long wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "12s ago", "5m ago", "3h ago", "2d ago" for an age in milliseconds. */
static void age_text(long long age_ms, char *out_, size_t len)
{
	long long s = age_ms / 1000;
	if (age_ms < -5000)
		snprintf(out_, len, "%llds ahead", -s);
	else if (s < 120)
		snprintf(out_, len, "%llds ago", s < 0 ? 0 : s);
	else if (s < 7200)
		snprintf(out_, len, "%lldm ago", s / 60);
	else if (s < 172800)
		snprintf(out_, len, "%lldh ago", s / 3600);
	else
		snprintf(out_, len, "%lldd ago", s / 86400);
}

/* ---- connection options ---- */

struct conn {
	const char *cmd; /* "deploy", "status": for messages */
	const char *broker, *ca, *cert, *key, *prefix;
	double timeout_s;
	bool timeout_given;
};

/* If argv[*i] is a connection option, takes it (and its value): 1. Not
 * one: 0. One without a value or with a bad one: -1 after saying why. */
static int conn_opt(struct conn *c, int argc, char **argv, int *i)
{
	static const struct {
		const char *name;
		size_t off;
	} opts[] = {
	    {"--broker", offsetof(struct conn, broker)}, {"--ca", offsetof(struct conn, ca)},
	    {"--cert", offsetof(struct conn, cert)},     {"--key", offsetof(struct conn, key)},
	    {"--prefix", offsetof(struct conn, prefix)},
	};
	const char *a = argv[*i];
	bool timeout = strcmp(a, "--timeout") == 0;
	size_t k = 0;
	while (!timeout && k < sizeof(opts) / sizeof(opts[0]) && strcmp(a, opts[k].name) != 0)
		k++;
	if (!timeout && k == sizeof(opts) / sizeof(opts[0]))
		return 0;
	if (*i + 1 >= argc) {
		fprintf(stderr, "outpostctl %s: %s needs a value\n", c->cmd, a);
		return -1;
	}
	const char *v = argv[++*i];
	if (!timeout) {
		*(const char **)((char *)c + opts[k].off) = v;
		return 1;
	}
	char *end = (char *)v;
	errno = 0;
	double s = strtod(v, &end);
	if (*end == 's')
		end++;
	if (errno || end == v || *end != '\0' || !isfinite(s) || s < 0.1 || s > TIMEOUT_MAX_S) {
		fprintf(stderr, "outpostctl %s: --timeout \"%s\": expected seconds, 0.1 to %.0f\n",
		        c->cmd, v, TIMEOUT_MAX_S);
		return -1;
	}
	c->timeout_s = s;
	c->timeout_given = true;
	return 1;
}

/* Fills what the options left out from the environment and checks that
 * everything needed is there. CTL_OK or CTL_INVALID after saying why. */
static int conn_finish(struct conn *c)
{
	static const struct {
		const char *opt, *env, *what;
		size_t off;
		bool file;
	} need[] = {
	    {"--broker", "OUTPOST_BROKER", "the broker, mqtts://HOST:PORT",
	     offsetof(struct conn, broker), false},
	    {"--ca", "OUTPOST_CA", "the CA certificate that signed the broker's",
	     offsetof(struct conn, ca), true},
	    {"--cert", "OUTPOST_CERT", "the control plane's client certificate",
	     offsetof(struct conn, cert), true},
	    {"--key", "OUTPOST_KEY", "its private key", offsetof(struct conn, key), true},
	};
	int rc = CTL_OK;
	for (size_t k = 0; k < sizeof(need) / sizeof(need[0]); k++) {
		const char **v = (const char **)((char *)c + need[k].off);
		if (*v == NULL || **v == '\0')
			*v = getenv(need[k].env);
		if (*v == NULL || **v == '\0') {
			fprintf(stderr, "outpostctl %s: missing %s: give %s or set %s\n", c->cmd,
			        need[k].what, need[k].opt, need[k].env);
			rc = CTL_INVALID;
		} else if (need[k].file && access(*v, R_OK) != 0) {
			char eb[128];
			fprintf(stderr, "outpostctl %s: %s %s: %s\n", c->cmd, need[k].opt, *v,
			        strerror_r(errno, eb, sizeof(eb)));
			rc = CTL_INVALID;
		}
	}
	if (c->prefix == NULL)
		c->prefix = getenv("OUTPOST_PREFIX");
	if (c->prefix == NULL)
		c->prefix = "";
	if (!c->timeout_given)
		c->timeout_s = TIMEOUT_DEFAULT_S;
	return rc;
}

static long long timeout_ms(const struct conn *c)
{
	return (long long)(c->timeout_s * 1000);
}

/* Connects; CTL_OK, or CTL_INVALID (a bad URL or prefix) / CTL_FAILED
 * after saying why. */
static int conn_open(const struct conn *c, size_t max_payload, struct op_ctl_mqtt **m)
{
	struct op_ctl_mqtt_opts o = {.broker = c->broker,
	                             .ca = c->ca,
	                             .cert = c->cert,
	                             .key = c->key,
	                             .prefix = c->prefix,
	                             .max_payload = max_payload};
	char why[768];
	op_err rc =
	    op_ctl_mqtt_connect(&o, op_ctl_mqtt_now_ms() + timeout_ms(c), m, why, sizeof(why));
	if (rc == OP_OK)
		return CTL_OK;
	emit(stderr, "outpostctl %s: %s\n", c->cmd, why);
	return rc == OP_EINVAL ? CTL_INVALID : CTL_FAILED;
}

/* ---- the fleet, as the broker's retained messages tell it ---- */

/*
 * {"<agent id>": {"status": {...}, "reported": {...}}}, from messages on
 * <root><id>/status, /reported and /desired (whose document's seq is kept
 * as "desiredSeq", for deploy). Messages that are not an agent's, or whose
 * payload does not parse, are reported on stderr and skipped.
 */
struct fleet {
	const char *cmd;
	const char *root;
	cJSON *agents;
	size_t n;
	bool full, nomem;
};

/* The seq of the document inside envelope text, read without verifying
 * the signature: only to choose the next seq. */
static bool envelope_seq(const char *text, size_t len, uint64_t *seq)
{
	char why[160];
	cJSON *env = NULL;
	if (op_json_parse(text, len, &env, why, sizeof(why)) != OP_OK)
		return false;
	const char *b64 = str_of(env, "payload");
	char *doc = NULL;
	size_t n = 0;
	bool ok = false;
	if (b64 && op_base64_decode(b64, &doc, &n) == OP_OK) {
		cJSON *d = NULL;
		if (op_json_parse(doc, n, &d, why, sizeof(why)) == OP_OK)
			ok = seq_of(member(d, "seq"), seq);
		cJSON_Delete(d);
	}
	op_free(doc);
	cJSON_Delete(env);
	return ok;
}

/* The entry of agent id (len bytes), made if missing; NULL when full or
 * out of memory. */
static cJSON *fleet_agent(struct fleet *f, const char *id, size_t len)
{
	char key[AGENT_ID_MAX + 1];
	snprintf(key, sizeof(key), "%.*s", (int)len, id);
	cJSON *a = cJSON_GetObjectItemCaseSensitive(f->agents, key);
	if (a)
		return a;
	if (f->n >= AGENTS_MAX) {
		if (!f->full)
			fprintf(stderr,
			        "outpostctl %s: more than %d agents; the rest are left out\n",
			        f->cmd, AGENTS_MAX);
		f->full = true;
		return NULL;
	}
	a = cJSON_CreateObject();
	if (a == NULL || !cJSON_AddItemToObject(f->agents, key, a)) {
		cJSON_Delete(a);
		f->nomem = true;
		return NULL;
	}
	f->n++;
	return a;
}

/* Takes one message into the fleet; returns the agent's entry when the
 * message changed it, else NULL. */
static cJSON *fleet_take(struct fleet *f, const struct op_ctl_msg *msg)
{
	size_t rl = strlen(f->root);
	if (strncmp(msg->topic, f->root, rl) != 0)
		return NULL;
	const char *id = msg->topic + rl;
	const char *slash = strchr(id, '/');
	const char *kind = slash ? slash + 1 : "";
	bool status = strcmp(kind, "status") == 0, reported = strcmp(kind, "reported") == 0,
	     desired = strcmp(kind, "desired") == 0;
	if (!(status || reported || desired))
		return NULL;
	if (!agent_id_ok(id, (size_t)(slash - id))) {
		emit(stderr, "outpostctl %s: %.300s: not an agent id; ignored\n", f->cmd,
		     msg->topic);
		return NULL;
	}
	cJSON *a = fleet_agent(f, id, (size_t)(slash - id));
	if (a == NULL)
		return NULL;
	if (msg->len == 0) {
		/* An empty retained message clears the topic. */
		cJSON_DeleteItemFromObjectCaseSensitive(a, desired ? "desiredSeq" : kind);
		return a;
	}
	if (desired) {
		uint64_t seq = 0;
		if (msg->too_large || !envelope_seq(msg->payload, msg->len, &seq)) {
			emit(stderr,
			     "outpostctl %s: %.300s: not a signed envelope with a seq (%zu bytes); "
			     "ignored\n",
			     f->cmd, msg->topic, msg->len);
			return NULL;
		}
		cJSON_DeleteItemFromObjectCaseSensitive(a, "desiredSeq");
		if (cJSON_AddNumberToObject(a, "desiredSeq", (double)seq) == NULL) {
			f->nomem = true;
			return NULL;
		}
		return a;
	}
	cJSON *v = NULL;
	if (msg->too_large || msg->len > STATE_MAX) {
		emit(stderr, "outpostctl %s: %.300s: %zu bytes, more than %u; ignored\n", f->cmd,
		     msg->topic, msg->len, STATE_MAX);
		return NULL;
	}
	char why[160];
	if (op_json_parse(msg->payload, msg->len, &v, why, sizeof(why)) != OP_OK ||
	    !cJSON_IsObject(v)) {
		cJSON_Delete(v);
		emit(stderr, "outpostctl %s: %.300s: not a JSON object (%zu bytes); ignored\n",
		     f->cmd, msg->topic, msg->len);
		return NULL;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(a, kind);
	if (!cJSON_AddItemToObject(a, kind, v)) {
		cJSON_Delete(v);
		f->nomem = true;
		return NULL;
	}
	return a;
}

static void fleet_msg(void *ud, const struct op_ctl_msg *msg)
{
	(void)fleet_take(ud, msg);
}

/* Subscribes to the n filters (each after the root) and takes every
 * retained message they bring. CTL_OK, or CTL_FAILED after saying why. */
static int fleet_load(struct fleet *f, struct op_ctl_mqtt *m, const struct conn *c,
                      const char *const *filters, size_t n)
{
	char **full = op_calloc(n ? n : 1, sizeof(*full));
	int ret = full ? CTL_OK : CTL_FAILED;
	for (size_t i = 0; ret == CTL_OK && i < n; i++) {
		struct op_buf b;
		op_buf_init(&b, 4096);
		if (op_buf_addf(&b, "%s%s", f->root, filters[i]) != OP_OK ||
		    (full[i] = op_buf_take(&b)) == NULL)
			ret = CTL_FAILED;
		op_buf_fini(&b);
	}
	char why[768] = "out of memory";
	long long deadline = op_ctl_mqtt_now_ms() + timeout_ms(c);
	if (ret == CTL_OK &&
	    (op_ctl_mqtt_subscribe(m, (const char *const *)full, n, deadline, why, sizeof(why)) ||
	     op_ctl_mqtt_sync(m, deadline, fleet_msg, f, why, sizeof(why))))
		ret = CTL_FAILED;
	if (ret == CTL_OK && f->nomem) {
		snprintf(why, sizeof(why), "out of memory");
		ret = CTL_FAILED;
	}
	if (ret)
		emit(stderr, "outpostctl %s: %s\n", c->cmd, why);
	for (size_t i = 0; full && i < n; i++)
		op_free(full[i]);
	op_free(full);
	return ret;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* The fleet's entries sorted by agent id into *out (op_free; NULL when
 * there are none) and *n. False when out of memory. */
static bool fleet_sorted(const struct fleet *f, const cJSON ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	size_t k = (size_t)cJSON_GetArraySize(f->agents);
	if (k == 0)
		return true;
	const cJSON **v = op_calloc(k, sizeof(*v));
	if (v == NULL)
		return false;
	const cJSON *a;
	cJSON_ArrayForEach (a, f->agents) {
		if (*n < k)
			v[(*n)++] = a;
	}
	qsort(v, *n, sizeof(*v), cmp_names);
	*out = v;
	return true;
}

/* ---- deploy ---- */

static const char deploy_usage[] =
    "usage: outpostctl deploy PIPELINE.json... (--agent ID... | --group G) --sign-key KEYFILE\n"
    "                         [--wait | --no-wait] [--json] [--pipelines DIR]\n"
    "                         [--broker URL] [--ca FILE] [--cert FILE] [--key FILE]\n"
    "                         [--prefix P] [--timeout SECONDS]\n"
    "Checks the pipelines as `outpostctl check` does, signs for each agent a desired\n"
    "document with the next seq, publishes it retained to the agent's desired topic\n"
    "and waits (--wait, the default) until the agent reports it applied or refused.\n"
    "  --agent ID       an agent (repeatable); --group G: every agent whose retained\n"
    "                   status or reported names group G\n"
    "  --sign-key FILE  the private key (outpostctl keygen) agents trust\n"
    "  --pipelines DIR  pipelines the agents have locally, for checking calls only\n"
    "  --broker URL     mqtts://HOST:PORT (default $OUTPOST_BROKER); plain mqtt:// is refused\n"
    "  --ca, --cert, --key FILE  TLS: the broker's CA, this client's certificate and key\n"
    "                   (default $OUTPOST_CA, $OUTPOST_CERT, $OUTPOST_KEY)\n"
    "  --prefix P       the fleet's topic prefix (default $OUTPOST_PREFIX, else none)\n"
    "  --timeout S      seconds for each step and for the agents' reports (default 30)\n"
    "  --json           print [{agent, seq, result, error, seconds}]\n"
    "Exit status: 0 every agent applied it (or, with --no-wait, it was published);\n"
    "1 refused, no report in time, or not published; 2 bad usage or invalid pipelines;\n"
    "3 no agent in the group.\n";

enum result { R_PENDING, R_PUBLISHED, R_APPLIED, R_REFUSED, R_TIMEOUT, R_FAILED };

static const char *const result_names[] = {"pending", "published", "applied",
                                           "refused", "timeout",   "failed"};

struct target {
	char id[AGENT_ID_MAX + 1];
	uint64_t seq;
	enum result result;
	char code[64];
	char message[1024];
	long long t0, t1, deadline; /* monotonic ms: publish start, outcome, report due */
};

struct deploy {
	struct conn c;
	const char **files;
	size_t nfiles;
	const char **agents;
	size_t nagents;
	const char *group;
	const char *sign_key;
	const char *dir;
	bool wait;
	bool json;
};

/* Parses the arguments. 0, 1 for --help, -1 after saying why. */
static int deploy_args(int argc, char **argv, struct deploy *d)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		int r = conn_opt(&d->c, argc, argv, &i);
		if (r < 0)
			return -1;
		if (r > 0)
			continue;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return 1;
		if (strcmp(a, "--wait") == 0) {
			d->wait = true;
		} else if (strcmp(a, "--no-wait") == 0) {
			d->wait = false;
		} else if (strcmp(a, "--json") == 0) {
			d->json = true;
		} else if (strcmp(a, "--agent") == 0 || strcmp(a, "--group") == 0 ||
		           strcmp(a, "--sign-key") == 0 || strcmp(a, "--pipelines") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "outpostctl deploy: %s needs a value\n", a);
				return -1;
			}
			const char *v = argv[++i];
			if (strcmp(a, "--agent") == 0)
				d->agents[d->nagents++] = v;
			else if (strcmp(a, "--group") == 0)
				d->group = v;
			else if (strcmp(a, "--sign-key") == 0)
				d->sign_key = v;
			else
				d->dir = v;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "outpostctl deploy: unknown option \"%s\"\n", a);
			return -1;
		} else {
			d->files[d->nfiles++] = a;
		}
	}
	if (d->nfiles == 0) {
		fputs("outpostctl deploy: deploy what? give PIPELINE.json files\n", stderr);
		return -1;
	}
	if ((d->nagents == 0) == (d->group == NULL)) {
		fputs(
		    "outpostctl deploy: give the targets: --agent ID (one or more) or --group G\n",
		    stderr);
		return -1;
	}
	if (d->sign_key == NULL) {
		fputs("outpostctl deploy: --sign-key KEYFILE is needed: agents apply only what "
		      "their trusted keys signed\n",
		      stderr);
		return -1;
	}
	for (size_t i = 0; i < d->nagents; i++) {
		if (!agent_id_ok(d->agents[i], strlen(d->agents[i]))) {
			emit(stderr,
			     "outpostctl deploy: --agent \"%.100s\": an agent id is 1 to %d "
			     "letters, "
			     "digits, '.', '_' or '-'\n",
			     d->agents[i], AGENT_ID_MAX);
			return -1;
		}
		for (size_t k = 0; k < i; k++) {
			if (strcmp(d->agents[k], d->agents[i]) == 0) {
				fprintf(stderr, "outpostctl deploy: --agent %s is given twice\n",
				        d->agents[i]);
				return -1;
			}
		}
	}
	if (d->group) {
		size_t n = strlen(d->group);
		bool ok = n > 0 && n <= GROUP_MAX;
		for (size_t i = 0; ok && i < n; i++)
			ok = (unsigned char)d->group[i] >= 0x20 && d->group[i] != 0x7f;
		if (!ok) {
			fprintf(
			    stderr,
			    "outpostctl deploy: --group: expected 1 to %d characters, no control "
			    "characters\n",
			    GROUP_MAX);
			return -1;
		}
	}
	return 0;
}

/* The loader's report callback: prints the problems, counts them in *ud. */
static void report(void *ud, const char *file, const struct op_diag *d)
{
	op_ctl_print_problems(file, d);
	*(int *)ud += (int)op_diag_count(d);
}

/*
 * Loads and checks the pipeline files as `outpostctl check` does (with
 * dir's pipelines for calls, not deployed) and collects their documents
 * into *set, a JSON array. Names must be unique. CTL_OK, CTL_INVALID after
 * printing every problem, CTL_FAILED when out of memory.
 */
static int load_set(const struct deploy *d, cJSON **set)
{
	*set = NULL;
	int problems = 0, ret = CTL_FAILED;
	struct op_engine *e = op_engine_new();
	cJSON *arr = cJSON_CreateArray();
	char **given = op_calloc(d->nfiles + 1, sizeof(*given));
	if (e == NULL || arr == NULL || given == NULL)
		goto nomem;
	for (size_t i = 0; i < d->nfiles; i++) {
		const char *file = d->files[i];
		given[i] = (char *)file;
		char *text = NULL, err[512];
		size_t len = 0;
		if (op_ctl_read_file(file, OP_PIPELINE_MAX_BYTES, &text, &len) != OP_OK) {
			problems++;
			continue;
		}
		struct op_diag diag;
		op_diag_init(&diag);
		struct op_pipeline *p = NULL;
		op_err rc = op_pipeline_load(text, len, file, &diag, &p);
		if (rc) {
			if (op_diag_count(&diag) == 0)
				op_diag_add_at(&diag, "", "%s", op_err_str(rc));
			op_ctl_print_problems(file, &diag);
			problems += (int)op_diag_count(&diag);
		}
		op_diag_fini(&diag);
		cJSON *doc = NULL;
		if (rc == OP_OK && op_engine_add(e, p, err, sizeof(err)) != OP_OK) {
			fprintf(stderr, "%s (names are unique in a deployed set)\n", err);
			problems++;
		} else if (rc == OP_OK &&
		           op_json_parse(text, len, &doc, err, sizeof(err)) != OP_OK) {
			fprintf(stderr, "%s: %s\n", file, err);
			problems++;
		} else if (doc && !cJSON_AddItemToArray(arr, doc)) {
			cJSON_Delete(doc);
			op_free(text);
			goto nomem;
		}
		op_free(text);
	}
	if (d->dir && op_engine_load_dir(e, d->dir, given, d->nfiles, report, &problems, NULL) &&
	    problems == 0)
		problems++;
	if (problems == 0) {
		struct op_diag diag;
		op_diag_init(&diag);
		if (op_engine_link(e, &diag) != OP_OK) {
			op_ctl_print_problems(d->dir ? d->dir : "pipelines", &diag);
			problems += (int)op_diag_count(&diag);
		}
		op_diag_fini(&diag);
	}
	if (problems) {
		fprintf(stderr, "%d problem%s; nothing was deployed\n", problems,
		        problems == 1 ? "" : "s");
		ret = CTL_INVALID;
		goto out;
	}
	*set = arr;
	arr = NULL;
	ret = CTL_OK;
	goto out;
nomem:
	fputs("outpostctl: out of memory\n", stderr);
out:
	op_free(given);
	cJSON_Delete(arr);
	op_engine_free(e);
	return ret;
}

/* The agents of group g in the fleet, in id order, as new targets. */
static int group_targets(const struct deploy *d, const struct fleet *f, struct target **out,
                         size_t *n)
{
	size_t k = 0;
	const cJSON **v = NULL;
	if (!fleet_sorted(f, &v, &k))
		return CTL_FAILED;
	struct target *t = op_calloc(k ? k : 1, sizeof(*t));
	if (t == NULL) {
		op_free(v);
		return CTL_FAILED;
	}
	for (size_t i = 0; i < k; i++) {
		const char *gs = str_of(member(v[i], "status"), "group");
		const char *gr = str_of(member(v[i], "reported"), "group");
		if ((gs && strcmp(gs, d->group) == 0) || (gr && strcmp(gr, d->group) == 0))
			snprintf(t[(*n)++].id, sizeof(t->id), "%s", v[i]->string);
	}
	op_free(v);
	*out = t;
	return CTL_OK;
}

/*
 * Finds the targets and what the broker holds for them: with --group, the
 * fleet's retained status and reported first; then each target's retained
 * desired (and reported). CTL_OK, CTL_NOTFOUND (an empty group),
 * CTL_FAILED, after saying why.
 */
static int find_targets(const struct deploy *d, struct op_ctl_mqtt *m, struct fleet *f,
                        struct target **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	int ret = CTL_OK;
	struct target *t = NULL;
	if (d->group) {
		static const char *const all[] = {"+/status", "+/reported"};
		ret = fleet_load(f, m, &d->c, all, 2);
		if (ret == CTL_OK)
			ret = group_targets(d, f, &t, n);
		if (ret == CTL_OK && *n == 0) {
			emit(stderr,
			     "outpostctl deploy: no agent of group \"%s\": none has a retained "
			     "status or "
			     "reported under %s (outpostctl status lists the fleet)\n",
			     d->group, f->root);
			ret = CTL_NOTFOUND;
		}
	} else {
		t = op_calloc(d->nagents, sizeof(*t));
		ret = t ? CTL_OK : CTL_FAILED;
		for (size_t i = 0; t && i < d->nagents; i++)
			snprintf(t[(*n)++].id, sizeof(t->id), "%s", d->agents[i]);
	}
	size_t per = d->group ? 1 : 2;
	char **filters = ret == CTL_OK ? op_calloc(*n * per, sizeof(*filters)) : NULL;
	if (ret == CTL_OK && filters == NULL)
		ret = CTL_FAILED;
	for (size_t i = 0; ret == CTL_OK && i < *n; i++) {
		for (size_t k = 0; k < per; k++) {
			struct op_buf b;
			op_buf_init(&b, 256);
			if (op_buf_addf(&b, "%s/%s", t[i].id, k ? "reported" : "desired") !=
			        OP_OK ||
			    (filters[i * per + k] = op_buf_take(&b)) == NULL)
				ret = CTL_FAILED;
			op_buf_fini(&b);
		}
	}
	if (ret == CTL_FAILED && filters == NULL)
		fputs("outpostctl deploy: out of memory\n", stderr);
	else if (ret == CTL_OK)
		ret = fleet_load(f, m, &d->c, (const char *const *)filters, *n * per);
	for (size_t i = 0; filters && i < *n * per; i++)
		op_free(filters[i]);
	op_free(filters);
	if (ret) {
		op_free(t);
		*n = 0;
		return ret;
	}
	*out = t;
	return CTL_OK;
}

/* The next seq of target t: above its desired document's, its reported
 * seq and its last refused seq. False past 2^53. */
static bool next_seq(const struct fleet *f, struct target *t)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(f->agents, t->id);
	const cJSON *rep = member(a, "reported");
	uint64_t top = 0, v = 0;
	if (seq_of(member(a, "desiredSeq"), &v) && v > top)
		top = v;
	if (seq_of(member(rep, "seq"), &v) && v > top)
		top = v;
	/* A seq the agent refused is not used again, so that a refusal
	 * reported for it means this document. */
	if (seq_of(member(member(rep, "lastError"), "seq"), &v) && v > top)
		top = v;
	t->seq = top + 1;
	return t->seq <= SEQ_MAX;
}

struct signer {
	struct op_env_key key;
	unsigned char seed[OP_ENV_KEY_LEN];
	const cJSON *set;
	char issued[32];
};

/* Signs t's document and publishes it retained on its desired topic;
 * t->result says how it went. CTL_FAILED only when out of memory. */
static int publish_one(const struct deploy *d, struct op_ctl_mqtt *m, const struct signer *s,
                       struct target *t)
{
	int ret = CTL_OK;
	char why[768] = "", *env = NULL;
	struct op_buf b, topic;
	op_buf_init(&b, OP_ENV_MAX);
	op_buf_init(&topic, 4096);
	cJSON *doc = cJSON_CreateObject();
	t->t0 = op_ctl_mqtt_now_ms();
	if (doc == NULL || !cJSON_AddNumberToObject(doc, "seq", (double)t->seq) ||
	    !cJSON_AddStringToObject(doc, "agent", t->id) ||
	    !cJSON_AddStringToObject(doc, "issued", s->issued) ||
	    !cJSON_AddItemReferenceToObject(doc, "pipelines", (cJSON *)s->set) ||
	    op_json_append(&b, doc, OP_JSON_COMPACT) != OP_OK ||
	    op_buf_addf(&topic, "%s%s/desired", op_ctl_mqtt_root(m), t->id) != OP_OK) {
		ret = CTL_FAILED;
		snprintf(why, sizeof(why), "out of memory");
	} else if (op_env_sign(s->seed, s->key.pub, s->key.kid, b.data, b.len, &env, why,
	                       sizeof(why)) == OP_OK) {
		long long deadline = op_ctl_mqtt_now_ms() + timeout_ms(&d->c);
		if (op_ctl_mqtt_publish(m, op_buf_str(&topic), env, strlen(env), true, deadline,
		                        why, sizeof(why)) == OP_OK)
			why[0] = '\0';
	}
	t->t1 = op_ctl_mqtt_now_ms();
	if (why[0]) {
		t->result = R_FAILED;
		snprintf(t->code, sizeof(t->code), "PUBLISH");
		snprintf(t->message, sizeof(t->message), "%s", why);
	} else {
		t->result = R_PUBLISHED;
		t->deadline = t->t1 + timeout_ms(&d->c);
	}
	cJSON_Delete(doc);
	op_free(env);
	op_buf_fini(&b);
	op_buf_fini(&topic);
	return ret;
}

/* Judges t by its agent's entry a after a change. */
static void judge(struct target *t, const cJSON *a)
{
	const cJSON *rep = member(a, "reported");
	const cJSON *le = member(rep, "lastError");
	uint64_t v = 0;
	if (seq_of(member(rep, "seq"), &v) && v >= t->seq) {
		t->result = R_APPLIED;
	} else if (seq_of(member(le, "seq"), &v) && v == t->seq) {
		t->result = R_REFUSED;
		const char *code = str_of(le, "code"), *msg = str_of(le, "message");
		snprintf(t->code, sizeof(t->code), "%s", code ? code : "?");
		snprintf(t->message, sizeof(t->message), "%s", msg ? msg : "(no message)");
	} else {
		return;
	}
	t->t1 = op_ctl_mqtt_now_ms();
}

/* Waits for the published targets' reports until each one's deadline. */
static void wait_reports(const struct deploy *d, struct op_ctl_mqtt *m, struct fleet *f,
                         struct target *t, size_t n)
{
	for (;;) {
		long long now = op_ctl_mqtt_now_ms(), next = 0;
		size_t pending = 0;
		for (size_t i = 0; i < n; i++) {
			if (t[i].result != R_PUBLISHED)
				continue;
			if (now >= t[i].deadline) {
				t[i].result = R_TIMEOUT;
				t[i].t1 = now;
				snprintf(t[i].code, sizeof(t[i].code), "TIMEOUT");
				snprintf(t[i].message, sizeof(t[i].message),
				         "no report from agent %s within %g s; it may be offline: "
				         "outpostctl status --agent %s",
				         t[i].id, d->c.timeout_s, t[i].id);
				continue;
			}
			if (pending++ == 0 || t[i].deadline < next)
				next = t[i].deadline;
		}
		if (pending == 0)
			return;
		struct op_ctl_msg *msg = NULL;
		char why[512];
		op_err rc = op_ctl_mqtt_next(m, next, &msg, why, sizeof(why));
		if (rc == OP_ENOCONN) {
			for (size_t i = 0; i < n; i++) {
				if (t[i].result != R_PUBLISHED)
					continue;
				t[i].result = R_TIMEOUT;
				t[i].t1 = op_ctl_mqtt_now_ms();
				snprintf(t[i].code, sizeof(t[i].code), "NOCONN");
				snprintf(t[i].message, sizeof(t[i].message),
				         "%s; agent %s's report was not seen", why, t[i].id);
			}
			return;
		}
		if (rc && rc != OP_ETIMEOUT)
			emit(stderr, "outpostctl deploy: %s\n", why);
		const cJSON *a = msg ? fleet_take(f, msg) : NULL;
		for (size_t i = 0; a && i < n; i++) {
			if (t[i].result == R_PUBLISHED && strcmp(t[i].id, a->string) == 0)
				judge(&t[i], a);
		}
		op_ctl_msg_free(msg);
	}
}

/* Prints the outcome; the exit code: CTL_OK when every target applied it
 * (or, without waiting, it was published), else CTL_FAILED. */
static int print_results(const struct deploy *d, const struct target *t, size_t n, size_t npipe)
{
	int ret = CTL_OK;
	cJSON *arr = d->json ? cJSON_CreateArray() : NULL;
	if (d->json && arr == NULL)
		ret = CTL_FAILED;
	for (size_t i = 0; i < n; i++) {
		const struct target *x = &t[i];
		double secs = (double)(x->t1 - x->t0) / 1000;
		unsigned long long seq = (unsigned long long)x->seq;
		if (x->result != R_APPLIED && x->result != R_PUBLISHED)
			ret = CTL_FAILED;
		if (x->result == R_REFUSED)
			emit(stderr, "outpostctl deploy: agent %s: seq %llu refused: %s: %s\n",
			     x->id, seq, x->code, x->message);
		else if (x->result == R_TIMEOUT)
			emit(stderr, "outpostctl deploy: agent %s: seq %llu published, but %s\n",
			     x->id, seq, x->message);
		else if (x->result == R_FAILED)
			emit(stderr, "outpostctl deploy: agent %s: seq %llu not published: %s\n",
			     x->id, seq, x->message);
		else if (!d->json && x->result == R_APPLIED)
			printf("agent %s: seq %llu applied (%zu pipeline%s) in %.2f s\n", x->id,
			       seq, npipe, npipe == 1 ? "" : "s", secs);
		else if (!d->json)
			printf("agent %s: seq %llu published (%zu pipeline%s)\n", x->id, seq, npipe,
			       npipe == 1 ? "" : "s");
		if (arr == NULL)
			continue;
		cJSON *o = cJSON_CreateObject(), *e = NULL;
		bool ok = o && cJSON_AddStringToObject(o, "agent", x->id) &&
		          cJSON_AddNumberToObject(o, "seq", (double)x->seq) &&
		          cJSON_AddStringToObject(o, "result", result_names[x->result]);
		if (ok && x->code[0])
			ok = (e = cJSON_AddObjectToObject(o, "error")) &&
			     cJSON_AddStringToObject(e, "code", x->code) &&
			     cJSON_AddStringToObject(e, "message", x->message);
		else if (ok)
			ok = cJSON_AddNullToObject(o, "error") != NULL;
		ok = ok && cJSON_AddNumberToObject(o, "seconds", round(secs * 1000) / 1000) &&
		     cJSON_AddItemToArray(arr, o);
		if (!ok) {
			cJSON_Delete(o);
			cJSON_Delete(arr);
			arr = NULL;
			fputs("outpostctl: out of memory\n", stderr);
			ret = CTL_FAILED;
		}
	}
	if (arr && print_json(arr) != CTL_OK)
		ret = CTL_FAILED;
	cJSON_Delete(arr);
	return ret;
}

int op_ctl_deploy(int argc, char **argv)
{
	struct deploy d = {.c = {.cmd = "deploy"}, .wait = true};
	struct fleet f = {.cmd = "deploy"};
	struct op_ctl_mqtt *m = NULL;
	struct target *t = NULL;
	size_t nt = 0;
	cJSON *set = NULL;
	struct signer s = {0};
	int ret = CTL_FAILED;
	d.files = op_calloc((size_t)argc + 1, sizeof(*d.files));
	d.agents = op_calloc((size_t)argc + 1, sizeof(*d.agents));
	f.agents = cJSON_CreateObject();
	if (d.files == NULL || d.agents == NULL || f.agents == NULL) {
		fputs("outpostctl: out of memory\n", stderr);
		goto out;
	}
	int pr = deploy_args(argc, argv, &d);
	if (pr) {
		fputs(deploy_usage, pr > 0 ? stdout : stderr);
		ret = pr > 0 ? CTL_OK : CTL_INVALID;
		goto out;
	}
	if ((ret = conn_finish(&d.c)) != CTL_OK || (ret = load_set(&d, &set)) != CTL_OK)
		goto out;
	char *text = op_json_print(set, OP_JSON_COMPACT);
	size_t len = text ? strlen(text) : 0;
	op_free(text);
	/* The envelope (base64 of the document, and ~200 bytes) must fit. */
	if (text == NULL || len + 1024 > (OP_ENV_MAX - 1024) / 4 * 3) {
		if (text == NULL)
			fputs("outpostctl: out of memory\n", stderr);
		else
			fprintf(stderr,
			        "outpostctl deploy: the pipelines are %zu bytes of JSON; a signed "
			        "document holds at most about %u\n",
			        len, (OP_ENV_MAX - 1024) / 4 * 3 - 1024);
		ret = text ? CTL_INVALID : CTL_FAILED;
		goto out;
	}
	if ((ret = op_ctl_read_key(d.sign_key, &s.key, s.seed)) != CTL_OK)
		goto out;
	s.set = set;
	struct tm tm;
	time_t now = time(NULL);
	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(s.issued, sizeof(s.issued), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(s.issued, sizeof(s.issued), "1970-01-01T00:00:00Z");
	if ((ret = conn_open(&d.c, OP_ENV_MAX, &m)) != CTL_OK)
		goto out;
	f.root = op_ctl_mqtt_root(m);
	if ((ret = find_targets(&d, m, &f, &t, &nt)) != CTL_OK)
		goto out;
	for (size_t i = 0; i < nt; i++) {
		if (!next_seq(&f, &t[i])) {
			fprintf(stderr,
			        "outpostctl deploy: agent %s: its seq is at 2^53; nothing was "
			        "deployed\n",
			        t[i].id);
			ret = CTL_FAILED;
			goto out;
		}
		if (t[i].seq == 1 && !d.group)
			emit(stderr,
			     "outpostctl deploy: note: agent %s has nothing retained under %s%s/ "
			     "(a new agent, or a misspelt id)\n",
			     t[i].id, f.root, t[i].id);
	}
	for (size_t i = 0; i < nt; i++) {
		if ((ret = publish_one(&d, m, &s, &t[i])) != CTL_OK)
			goto out;
	}
	if (d.wait)
		wait_reports(&d, m, &f, t, nt);
	ret = print_results(&d, t, nt, (size_t)cJSON_GetArraySize(set));
out:
	explicit_bzero(s.seed, sizeof(s.seed));
	op_ctl_mqtt_close(m);
	op_free(t);
	cJSON_Delete(set);
	cJSON_Delete(f.agents);
	op_free(d.files);
	op_free(d.agents);
	return ret;
}

/* ---- status ---- */

static const char status_usage[] =
    "usage: outpostctl status [--agent ID] [--json] [--broker URL] [--ca FILE] [--cert FILE]\n"
    "                         [--key FILE] [--prefix P] [--timeout SECONDS]\n"
    "Shows the fleet's agents from the broker's retained status and reported\n"
    "messages: a table (AGENT ONLINE SEQ PIPELINES ERRORS HEARTBEAT), or one agent\n"
    "in detail with --agent. An agent whose heartbeat is older than 90 s is \"stale\".\n"
    "  --json           print {agent: {status, reported}} as collected\n"
    "Connection options as for deploy (outpostctl deploy --help).\n"
    "Exit status: 0 ok; 1 the broker is unreachable; 2 bad usage; 3 --agent names an\n"
    "agent with no retained status or reported.\n";

/* ONLINE of a status: yes, stale, no, or - when there is none. */
static const char *online_text(const cJSON *st, long long now)
{
	const char *state = str_of(st, "state");
	long long at = 0;
	if (state == NULL)
		return st ? "?" : "-";
	if (strcmp(state, "online") != 0)
		return strcmp(state, "offline") == 0 ? "no" : "?";
	if (parse_time(str_of(st, "at"), &at) && now - at > STALE_S * 1000LL)
		return "stale";
	return "yes";
}

static void heartbeat_text(const cJSON *st, long long now, char *buf, size_t len)
{
	long long at = 0;
	if (parse_time(str_of(st, "at"), &at))
		age_text(now - at, buf, len);
	else
		snprintf(buf, len, "-");
}

static int show_fleet(const struct fleet *f)
{
	size_t n = 0;
	const cJSON **v = NULL;
	if (!fleet_sorted(f, &v, &n)) {
		fputs("outpostctl: out of memory\n", stderr);
		return CTL_FAILED;
	}
	if (n == 0) {
		emit(stderr,
		     "outpostctl status: no agent has a retained status or reported under %s\n",
		     f->root);
		return CTL_OK;
	}
	long long now = wall_ms();
	struct table t = {.ncols = 6};
	static const char *const head[] = {"AGENT",     "ONLINE", "SEQ",
	                                   "PIPELINES", "ERRORS", "HEARTBEAT"};
	for (size_t i = 0; i < 6; i++)
		table_add(&t, "%s", head[i]);
	for (size_t i = 0; i < n; i++) {
		const cJSON *st = member(v[i], "status"), *rep = member(v[i], "reported");
		const cJSON *pipes = member(rep, "pipelines");
		uint64_t seq = 0;
		char hb[32];
		heartbeat_text(st, now, hb, sizeof(hb));
		table_add(&t, "%s", v[i]->string);
		table_add(&t, "%s", online_text(st, now));
		if (seq_of(member(rep, "seq"), &seq))
			table_add(&t, "%llu", (unsigned long long)seq);
		else
			table_add(&t, "-");
		if (cJSON_IsArray(pipes))
			table_add(&t, "%d", cJSON_GetArraySize(pipes));
		else
			table_add(&t, "-");
		if (rep) {
			int errors = 0;
			const cJSON *p, *list = cJSON_IsArray(pipes) ? pipes : NULL;
			cJSON_ArrayForEach (p, list) {
				const char *ps = str_of(p, "status");
				/* A pipeline draining its queue after a deploy dropped
				 * it is not an error. */
				errors += ps == NULL ||
				          (strcmp(ps, "running") != 0 && strcmp(ps, "draining") != 0);
			}
			const cJSON *le = member(rep, "lastError");
			errors += le != NULL && !cJSON_IsNull(le);
			table_add(&t, "%d", errors);
		} else {
			table_add(&t, "-");
		}
		table_add(&t, "%s", hb);
	}
	op_free(v);
	return table_print(&t);
}

/* The string member name of o, or "-". */
static const char *dash(const cJSON *o, const char *name)
{
	const char *s = str_of(o, name);
	return s && *s ? s : "-";
}

static int show_agent(const cJSON *a)
{
	const cJSON *st = member(a, "status"), *rep = member(a, "reported");
	long long now = wall_ms();
	char hb[32];
	heartbeat_text(st, now, hb, sizeof(hb));
	const char *online = online_text(st, now);
	emit(stdout, "agent:      %s\n", a->string);
	if (st == NULL)
		emit(stdout, "state:      - (no retained status)\n");
	else if (strcmp(online, "stale") == 0)
		emit(stdout, "state:      %s, but stale: no heartbeat for more than %d s\n",
		     dash(st, "state"), STALE_S);
	else
		emit(stdout, "state:      %s\n", dash(st, "state"));
	emit(stdout, "group:      %s\n",
	     str_of(st, "group") ? dash(st, "group") : dash(rep, "group"));
	emit(stdout, "version:    %s\n",
	     str_of(st, "version") ? dash(st, "version") : dash(rep, "version"));
	emit(stdout, "since:      %s\n", dash(st, "since"));
	emit(stdout, "heartbeat:  %s%s%s%s\n", dash(st, "at"), strcmp(hb, "-") ? " (" : "",
	     strcmp(hb, "-") ? hb : "", strcmp(hb, "-") ? ")" : "");
	uint64_t seq = 0;
	if (rep == NULL)
		emit(stdout, "applied:    - (no retained reported)\n");
	else if (!seq_of(member(rep, "seq"), &seq))
		emit(stdout, "applied:    ? (no valid seq)\n");
	else if (seq == 0)
		emit(stdout, "applied:    nothing yet (seq 0)\n");
	else
		emit(stdout, "applied:    seq %llu\n", (unsigned long long)seq);
	const cJSON *pipes = member(rep, "pipelines");
	int ret = CTL_OK;
	if (cJSON_IsArray(pipes) && cJSON_GetArraySize(pipes) > 0) {
		fputs("\n", stdout);
		struct table t = {.ncols = 4};
		table_add(&t, "NAME");
		table_add(&t, "VERSION");
		table_add(&t, "ORIGIN");
		table_add(&t, "STATUS");
		const cJSON *p;
		cJSON_ArrayForEach (p, pipes) {
			table_add(&t, "%s", dash(p, "name"));
			table_add(&t, "%s", dash(p, "version"));
			table_add(&t, "%s", dash(p, "origin"));
			table_add(&t, "%s", dash(p, "status"));
		}
		ret = table_print(&t);
		fputs("\n", stdout);
	} else if (rep) {
		emit(stdout, "pipelines:  none\n");
	}
	const cJSON *le = member(rep, "lastError");
	if (rep == NULL)
		return ret;
	if (le == NULL || cJSON_IsNull(le)) {
		emit(stdout, "last error: none\n");
	} else {
		uint64_t es = 0;
		char s[32] = "?";
		if (seq_of(member(le, "seq"), &es))
			snprintf(s, sizeof(s), "%llu", (unsigned long long)es);
		emit(stdout, "last error: seq %s at %s: %s: %s\n", s, dash(le, "at"),
		     dash(le, "code"), dash(le, "message"));
	}
	return ret;
}

int op_ctl_status(int argc, char **argv)
{
	struct conn c = {.cmd = "status"};
	struct fleet f = {.cmd = "status"};
	struct op_ctl_mqtt *m = NULL;
	const char *agent = NULL;
	bool json = false;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		int r = conn_opt(&c, argc, argv, &i);
		if (r < 0) {
			fputs(status_usage, stderr);
			return CTL_INVALID;
		}
		if (r > 0)
			continue;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(status_usage, stdout);
			return CTL_OK;
		}
		if (strcmp(a, "--json") == 0) {
			json = true;
		} else if (strcmp(a, "--agent") == 0) {
			if (i + 1 >= argc) {
				fputs("outpostctl status: --agent needs a value\n", stderr);
				return CTL_INVALID;
			}
			agent = argv[++i];
		} else {
			fprintf(stderr, "outpostctl status: unexpected argument \"%s\"\n", a);
			fputs(status_usage, stderr);
			return CTL_INVALID;
		}
	}
	if (agent && !agent_id_ok(agent, strlen(agent))) {
		emit(stderr,
		     "outpostctl status: --agent \"%.100s\": an agent id is 1 to %d letters, "
		     "digits, "
		     "'.', '_' or '-'\n",
		     agent, AGENT_ID_MAX);
		return CTL_INVALID;
	}
	int ret = conn_finish(&c);
	if (ret)
		return ret;
	if ((f.agents = cJSON_CreateObject()) == NULL) {
		fputs("outpostctl: out of memory\n", stderr);
		return CTL_FAILED;
	}
	if ((ret = conn_open(&c, STATE_MAX, &m)) != CTL_OK)
		goto out;
	char root[1100];
	snprintf(root, sizeof(root), "%s", op_ctl_mqtt_root(m));
	f.root = root;
	char fs[AGENT_ID_MAX + 16], fr[AGENT_ID_MAX + 16];
	snprintf(fs, sizeof(fs), "%s/status", agent ? agent : "+");
	snprintf(fr, sizeof(fr), "%s/reported", agent ? agent : "+");
	const char *const filters[] = {fs, fr};
	if ((ret = fleet_load(&f, m, &c, filters, 2)) != CTL_OK)
		goto out;
	/* What follows needs no broker: let go of it before printing. */
	op_ctl_mqtt_close(m);
	m = NULL;
	const cJSON *one = agent ? cJSON_GetObjectItemCaseSensitive(f.agents, agent) : NULL;
	if (agent && one == NULL) {
		emit(stderr,
		     "outpostctl status: agent %s has no retained status or reported under %s%s/ "
		     "(never connected, or a misspelt id)\n",
		     agent, root, agent);
		ret = CTL_NOTFOUND;
	} else if (json) {
		ret = print_json(f.agents);
	} else {
		ret = agent ? show_agent(one) : show_fleet(&f);
	}
out:
	op_ctl_mqtt_close(m);
	cJSON_Delete(f.agents);
	return ret;
}
