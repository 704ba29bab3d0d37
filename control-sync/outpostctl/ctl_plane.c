/*
 * The control-plane commands' common ground (see ctl_plane.h): terminal
 * text, values from the wire, connection options, the signing key and the
 * fleet's retained messages. Moved here from cmd_deploy.c when rollback,
 * invoke and logs came to share them; the behaviour is deploy's and
 * status's, documented in docs/protocol.md.
 */
#include "control-sync/outpostctl/ctl_plane.h"
#include "agent/core/clock.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "control-sync/outpostctl/ctl.h"

#define TIMEOUT_DEFAULT_S 30.0
#define TIMEOUT_MAX_S     86400.0
/* Agents held at once: a bound, not a fleet size anyone should reach. */
#define AGENTS_MAX 100000

const char op_ctl__conn_usage[] =
    "  --broker URL     mqtts://HOST:PORT (default $OUTPOST_BROKER); plain mqtt:// is refused\n"
    "  --ca, --cert, --key FILE  TLS: the broker's CA, this client's certificate and key\n"
    "                   (default $OUTPOST_CA, $OUTPOST_CERT, $OUTPOST_KEY)\n"
    "  --prefix P       the fleet's topic prefix (default $OUTPOST_PREFIX, else none)\n";

/* ---- text for terminals ---- */

/* Replaces control characters (C0, DEL, and UTF-8 encoded C1) in s by '?',
 * so that text from the wire cannot drive the terminal. */
void op_ctl__clean(char *s)
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
void op_ctl__emit(FILE *f, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	size_t len = n < 0 ? 0 : (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
	bool nl = len && buf[len - 1] == '\n';
	buf[len - nl] = '\0';
	op_ctl__clean(buf);
	fputs(buf, f);
	if (nl || len == sizeof(buf) - 1)
		fputc('\n', f);
}

int op_ctl__print_json(const cJSON *v)
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
bool op_ctl__agent_id_ok(const char *id, size_t len)
{
	if (len == 0 || len > OP_CTL_AGENT_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

const cJSON *op_ctl__member(const cJSON *o, const char *name)
{
	return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, name) : NULL;
}

/* The string member name of o, or NULL. */
const char *op_ctl__str_of(const cJSON *o, const char *name)
{
	return cJSON_GetStringValue(op_ctl__member(o, name));
}

/* v as a seq: an integer from 0 to 2^53. */
bool op_ctl__seq_of(const cJSON *v, uint64_t *out)
{
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
	    v->valuedouble > (double)OP_CTL_SEQ_MAX || floor(v->valuedouble) != v->valuedouble)
		return false;
	*out = (uint64_t)v->valuedouble;
	return true;
}

long long op_ctl__wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- connection options ---- */

/* If argv[*i] is a connection option, takes it (and its value): 1. Not
 * one: 0. One without a value or with a bad one: -1 after saying why. */
int op_ctl__conn_opt(struct op_ctl_conn *c, int argc, char **argv, int *i)
{
	static const struct {
		const char *name;
		size_t off;
	} opts[] = {
	    {"--broker", offsetof(struct op_ctl_conn, broker)},
	    {"--ca", offsetof(struct op_ctl_conn, ca)},
	    {"--cert", offsetof(struct op_ctl_conn, cert)},
	    {"--key", offsetof(struct op_ctl_conn, key)},
	    {"--prefix", offsetof(struct op_ctl_conn, prefix)},
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
int op_ctl__conn_finish(struct op_ctl_conn *c)
{
	static const struct {
		const char *opt, *env, *what;
		size_t off;
		bool file;
	} need[] = {
	    {"--broker", "OUTPOST_BROKER", "the broker, mqtts://HOST:PORT",
	     offsetof(struct op_ctl_conn, broker), false},
	    {"--ca", "OUTPOST_CA", "the CA certificate that signed the broker's",
	     offsetof(struct op_ctl_conn, ca), true},
	    {"--cert", "OUTPOST_CERT", "the control plane's client certificate",
	     offsetof(struct op_ctl_conn, cert), true},
	    {"--key", "OUTPOST_KEY", "its private key", offsetof(struct op_ctl_conn, key), true},
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

long long op_ctl__timeout_ms(const struct op_ctl_conn *c)
{
	return (long long)(c->timeout_s * 1000);
}

/* Connects; CTL_OK, or CTL_INVALID (a bad URL or prefix) / CTL_FAILED
 * after saying why. */
int op_ctl__conn_open(const struct op_ctl_conn *c, size_t max_payload, struct op_ctl_mqtt **m)
{
	struct op_ctl_mqtt_opts o = {.broker = c->broker,
	                             .ca = c->ca,
	                             .cert = c->cert,
	                             .key = c->key,
	                             .prefix = c->prefix,
	                             .max_payload = max_payload};
	char why[768];
	op_err rc =
	    op_ctl_mqtt_connect(&o, op_mono_ms() + op_ctl__timeout_ms(c), m, why, sizeof(why));
	if (rc == OP_OK)
		return CTL_OK;
	op_ctl__emit(stderr, "outpostctl %s: %s\n", c->cmd, why);
	return rc == OP_EINVAL ? CTL_INVALID : CTL_FAILED;
}

/* ---- the fleet, as the broker's retained messages tell it ---- */

/* The seq of the document inside envelope text, read without verifying
 * the signature: only to choose the next seq. */
static bool envelope_seq(const char *text, size_t len, uint64_t *seq)
{
	char why[160];
	cJSON *env = NULL;
	if (op_json_parse(text, len, &env, why, sizeof(why)) != OP_OK)
		return false;
	const char *b64 = op_ctl__str_of(env, "payload");
	char *doc = NULL;
	size_t n = 0;
	bool ok = false;
	if (b64 && op_base64_decode(b64, &doc, &n) == OP_OK) {
		cJSON *d = NULL;
		if (op_json_parse(doc, n, &d, why, sizeof(why)) == OP_OK)
			ok = op_ctl__seq_of(op_ctl__member(d, "seq"), seq);
		cJSON_Delete(d);
	}
	op_free(doc);
	cJSON_Delete(env);
	return ok;
}

/* The entry of agent id (len bytes), made if missing; NULL when full or
 * out of memory. */
static cJSON *fleet_agent(struct op_ctl_fleet *f, const char *id, size_t len)
{
	char key[OP_CTL_AGENT_ID_MAX + 1];
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
cJSON *op_ctl__fleet_take(struct op_ctl_fleet *f, const struct op_ctl_msg *msg)
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
	if (!op_ctl__agent_id_ok(id, (size_t)(slash - id))) {
		op_ctl__emit(stderr, "outpostctl %s: %.300s: not an agent id; ignored\n", f->cmd,
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
			op_ctl__emit(
			    stderr,
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
	if (msg->too_large || msg->len > OP_CTL_STATE_MAX) {
		op_ctl__emit(stderr, "outpostctl %s: %.300s: %zu bytes, more than %u; ignored\n",
		             f->cmd, msg->topic, msg->len, OP_CTL_STATE_MAX);
		return NULL;
	}
	char why[160];
	if (op_json_parse(msg->payload, msg->len, &v, why, sizeof(why)) != OP_OK ||
	    !cJSON_IsObject(v)) {
		cJSON_Delete(v);
		op_ctl__emit(stderr,
		             "outpostctl %s: %.300s: not a JSON object (%zu bytes); ignored\n",
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
	(void)op_ctl__fleet_take(ud, msg);
}

/* Subscribes to the n filters (each after the root) and takes every
 * retained message they bring. CTL_OK, or CTL_FAILED after saying why. */
int op_ctl__fleet_load(struct op_ctl_fleet *f, struct op_ctl_mqtt *m, const struct op_ctl_conn *c,
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
	long long deadline = op_mono_ms() + op_ctl__timeout_ms(c);
	if (ret == CTL_OK &&
	    (op_ctl_mqtt_subscribe(m, (const char *const *)full, n, deadline, why, sizeof(why)) ||
	     op_ctl_mqtt_sync(m, deadline, fleet_msg, f, why, sizeof(why))))
		ret = CTL_FAILED;
	if (ret == CTL_OK && f->nomem) {
		snprintf(why, sizeof(why), "out of memory");
		ret = CTL_FAILED;
	}
	if (ret)
		op_ctl__emit(stderr, "outpostctl %s: %s\n", c->cmd, why);
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
bool op_ctl__fleet_sorted(const struct op_ctl_fleet *f, const cJSON ***out, size_t *n)
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

/* ---- the signing key ---- */

int op_ctl__signer_read(const char *path, struct op_ctl_signer *s)
{
	int rc = op_ctl_read_key(path, &s->key, s->seed);
	if (rc != CTL_OK)
		op_ctl__signer_wipe(s);
	return rc;
}

void op_ctl__signer_wipe(struct op_ctl_signer *s)
{
	explicit_bzero(s->seed, sizeof(s->seed));
}
