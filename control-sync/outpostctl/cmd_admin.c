/*
 * outpostctl's admin commands: pipelines, executions, execution, dead and
 * replay. Each is one call to the running agent's admin JSON API (see
 * agent/daemon/admin.h) over HTTP (connectors/httpc), or, with --agent, the
 * same call made of an agent through the control plane's broker as a
 * signed command (ctl_command.h; the agent answers with the admin API's
 * JSON), printed as an aligned table or, with --json, as the API's JSON.
 * Key invariant: every call is bounded (connect and total timeouts, a
 * capped response) and every failure ends in one line on stderr and an
 * exit code from ctl.h: 1 unreachable or failed, 2 bad usage, 3 not found.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "connectors/httpc/httpc.h"
#include "control-sync/outpostctl/ctl.h"
#include "control-sync/outpostctl/ctl_command.h"
#include "control-sync/outpostctl/ctl_plane.h"

#define ADMIN_DEFAULT      "127.0.0.1:9090"
#define CONNECT_TIMEOUT_MS 3000L
#define TOTAL_TIMEOUT_MS   30000L
#define RESPONSE_MAX       (64u << 20)
#define ERROR_COL_MAX      60

/* ---- options ---- */

enum opt_flags {
	OPT_PIPELINE = 1, /* --pipeline P */
	OPT_LIMIT = 2,    /* --limit N */
	OPT_ID = 4,       /* one ID argument, required */
	OPT_ID_MAYBE = 8, /* one ID argument, optional */
};

struct opts {
	const char *admin; /* HOST:PORT */
	const char *pipeline;
	const char *limit;
	const char *id;
	bool json;
	bool admin_given;
	/* Through the control plane: */
	const char *agent;
	const char *sign_key;
	struct op_ctl_conn conn;
	const char *conn_opt; /* the first connection option given */
};

struct cmd {
	const char *name;
	int flags;
	const char *usage; /* the arguments after the name */
	const char *help;
	/* The command's op (docs/protocol.md, "Commands"); with an ID, op_one
	 * (when not NULL) and the ID as member id_member. */
	const char *op, *op_one, *id_member;
};

static int usage(const struct cmd *c, FILE *f)
{
	fprintf(f,
	        "usage: outpostctl %s %s[--admin HOST:PORT | --agent ID --sign-key KEYFILE]\n"
	        "       [--json] [connection options]\n"
	        "%s\n"
	        "  --admin HOST:PORT  the agent's admin endpoint (default $OUTPOST_ADMIN or "
	        "%s)\n"
	        "  --json             print the admin API's JSON instead of a table\n"
	        "  --agent ID --sign-key KEYFILE\n"
	        "                     ask agent ID through the control plane's broker instead, as\n"
	        "                     a command signed with KEYFILE (outpostctl keygen); with the\n"
	        "                     connection options of deploy and --timeout S (default 30)\n",
	        c->name, c->usage, c->help, ADMIN_DEFAULT);
	fputs(op_ctl__conn_usage, f);
	fputs("Exit status: 0 ok, 1 failed or agent unreachable, 2 bad usage, 3 not found.\n", f);
	return f == stdout ? CTL_OK : CTL_INVALID;
}

/* Parses argv by c->flags into o. Returns -1 after printing why, 1 for --help. */
static int parse(const struct cmd *c, int argc, char **argv, struct opts *o)
{
	const char *env = getenv("OUTPOST_ADMIN");
	*o = (struct opts){.admin = env && *env ? env : ADMIN_DEFAULT, .conn = {.cmd = c->name}};
	static const struct {
		const char *name;
		int flag; /* 0: any command */
		size_t off;
	} valued[] = {
	    {"--admin", 0, offsetof(struct opts, admin)},
	    {"--pipeline", OPT_PIPELINE, offsetof(struct opts, pipeline)},
	    {"--limit", OPT_LIMIT, offsetof(struct opts, limit)},
	    {"--agent", 0, offsetof(struct opts, agent)},
	    {"--sign-key", 0, offsetof(struct opts, sign_key)},
	};
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return 1;
		int r = op_ctl__conn_opt(&o->conn, argc, argv, &i);
		if (r < 0)
			return -1;
		if (r > 0) {
			o->conn_opt = o->conn_opt ? o->conn_opt : a;
			continue;
		}
		if (strcmp(a, "--admin") == 0)
			o->admin_given = true;
		if (strcmp(a, "--json") == 0) {
			o->json = true;
			continue;
		}
		bool done = false;
		for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]) && !done; k++) {
			if (strcmp(a, valued[k].name) != 0 ||
			    (valued[k].flag && !(c->flags & valued[k].flag)))
				continue;
			if (i + 1 >= argc || argv[i + 1][0] == '\0') {
				fprintf(stderr, "outpostctl %s: %s needs a value\n", c->name, a);
				return -1;
			}
			*(const char **)((char *)o + valued[k].off) = argv[++i];
			done = true;
		}
		if (done)
			continue;
		if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "outpostctl %s: unknown option \"%s\"\n", c->name, a);
			return -1;
		}
		if ((c->flags & (OPT_ID | OPT_ID_MAYBE)) && o->id == NULL) {
			o->id = a;
			continue;
		}
		fprintf(stderr, "outpostctl %s: unexpected argument \"%s\"\n", c->name, a);
		return -1;
	}
	if ((c->flags & OPT_ID) && o->id == NULL) {
		fprintf(stderr, "outpostctl %s: which ID?\n", c->name);
		return -1;
	}
	if (o->agent == NULL && (o->conn_opt || o->sign_key)) {
		fprintf(stderr,
		        "outpostctl %s: %s is for --agent ID (through the control plane); without "
		        "it the local admin endpoint is called\n",
		        c->name, o->conn_opt ? o->conn_opt : "--sign-key");
		return -1;
	}
	if (o->agent && o->admin_given) {
		fprintf(stderr,
		        "outpostctl %s: --admin (the local endpoint) and --agent (through the "
		        "control plane) exclude each other\n",
		        c->name);
		return -1;
	}
	if (o->agent && !op_ctl__agent_id_ok(o->agent, strlen(o->agent))) {
		op_ctl__emit(stderr,
		             "outpostctl %s: --agent \"%.100s\": an agent id is 1 to %d letters, "
		             "digits, '.', '_' or '-'\n",
		             c->name, o->agent, OP_CTL_AGENT_ID_MAX);
		return -1;
	}
	if (o->agent && o->sign_key == NULL) {
		fprintf(stderr,
		        "outpostctl %s: --agent needs --sign-key KEYFILE: agents answer only "
		        "commands their trusted keys signed\n",
		        c->name);
		return -1;
	}
	if (o->limit) {
		char *end;
		long n = strtol(o->limit, &end, 10);
		if (*end != '\0' || n < 1 || n > 1000) {
			fprintf(stderr, "outpostctl %s: --limit must be 1 to 1000, got \"%s\"\n",
			        c->name, o->limit);
			return -1;
		}
	}
	return 0;
}

/* ---- the HTTP call ---- */

/* Appends s percent-encoded (pipeline names and ids come from the user). */
static op_err add_escaped(struct op_buf *b, const char *s)
{
	return op_httpc_escape(b, s, strlen(s));
}

/* The URL of path (and the query options of o) on the admin endpoint. */
static op_err build_url(const struct opts *o, const char *path, const char *id, const char *suffix,
                        struct op_buf *url)
{
	op_err rc = op_buf_addf(url, "http://%s%s", o->admin, path);
	if (rc == OP_OK && id) {
		rc = op_buf_addc(url, '/');
		if (rc == OP_OK)
			rc = add_escaped(url, id);
	}
	if (rc == OP_OK && suffix)
		rc = op_buf_adds(url, suffix);
	char sep = '?';
	if (rc == OP_OK && o->limit && id == NULL) {
		rc = op_buf_addf(url, "%climit=%s", sep, o->limit);
		sep = '&';
	}
	if (rc == OP_OK && o->pipeline && id == NULL) {
		rc = op_buf_addf(url, "%cpipeline=", sep);
		if (rc == OP_OK)
			rc = add_escaped(url, o->pipeline);
	}
	return rc;
}

/*
 * Calls the admin API and parses its JSON answer into *out. Returns CTL_OK,
 * or prints why and returns CTL_FAILED (unreachable, bad answer),
 * CTL_INVALID (400) or CTL_NOTFOUND (404).
 */
static int call(const struct opts *o, const char *method, const char *path, const char *id,
                const char *suffix, cJSON **out)
{
	*out = NULL;
	struct op_buf url;
	op_buf_init(&url, 8192);
	struct op_httpc *hc = NULL;
	struct op_httpc_resp resp = {0};
	int ret = CTL_FAILED;
	long status = 0;
	cJSON *v = NULL;
	if (build_url(o, path, id, suffix, &url) != OP_OK) {
		fprintf(stderr, "outpostctl: out of memory\n");
		goto out;
	}
	op_err rc = op_httpc_new(&hc);
	if (rc) {
		fprintf(stderr, "outpostctl: cannot start an HTTP client: %s\n", op_err_str(rc));
		goto out;
	}
	struct op_httpc_req req = {
	    .method = method,
	    .url = op_buf_str(&url),
	    .body = strcmp(method, "POST") == 0 ? "" : NULL,
	    .direct = true, /* local, never via a proxy */
	    .timeout_ms = TOTAL_TIMEOUT_MS,
	    .connect_timeout_ms = CONNECT_TIMEOUT_MS,
	    .max_body = RESPONSE_MAX,
	};
	char why[512];
	rc = op_httpc_perform(hc, &req, &resp, why, sizeof(why));
	if (rc) {
		/* why starts with the method and URL; the reason is after them. */
		const char *reason = strstr(why, ": ");
		fprintf(stderr, "outpostctl: cannot reach the agent's admin endpoint at %s: %s\n",
		        o->admin, reason ? reason + 2 : why);
		goto out;
	}
	status = resp.status;
	const struct op_buf *body = &resp.body;
	v = cJSON_ParseWithLength(body->data ? body->data : "", body->len);
	if (v == NULL) {
		fprintf(stderr,
		        "outpostctl: the admin endpoint at %s answered HTTP %ld without JSON "
		        "(is it an Outpost agent?)\n",
		        o->admin, status);
		goto out;
	}
	if (status >= 200 && status < 300) {
		*out = v;
		v = NULL;
		ret = CTL_OK;
		goto out;
	}
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(v, "error");
	const char *code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "code"));
	const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
	fprintf(stderr, "outpostctl: %s (HTTP %ld %s)\n", msg ? msg : "request failed", status,
	        code ? code : "");
	ret = status == 404 ? CTL_NOTFOUND : status == 400 ? CTL_INVALID : CTL_FAILED;
out:
	cJSON_Delete(v);
	op_httpc_resp_fini(&resp);
	op_httpc_free(hc);
	op_buf_fini(&url);
	return ret;
}

static int print_json(const cJSON *v)
{
	char *s = op_json_print(v, OP_JSON_PRETTY);
	if (s == NULL) {
		fprintf(stderr, "outpostctl: out of memory\n");
		return CTL_FAILED;
	}
	puts(s);
	op_free(s);
	return CTL_OK;
}

/* ---- tables ---- */

/* Cells row by row, every cell an op_malloc'd string; each column as wide as
 * its widest cell. */
struct table {
	size_t ncols, n, cap;
	char **cells;
	bool nomem;
};

static void table_add(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
	struct op_buf b;
	op_buf_init(&b, 4096);
	va_list ap;
	va_start(ap, fmt);
	op_err rc = op_buf_vaddf(&b, fmt, ap);
	va_end(ap);
	char *s = rc == OP_OK ? op_buf_take(&b) : NULL;
	op_buf_fini(&b);
	if (s == NULL) {
		t->nomem = true;
		return;
	}
	/* Control characters (in errors, names) would break the layout. */
	for (char *p = s; *p; p++) {
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	}
	t->cells[t->n++] = s;
}

/* Prints and frees the table. */
static int table_print(struct table *t)
{
	int ret = CTL_OK;
	size_t w[16] = {0};
	if (t->nomem || t->ncols > 16) {
		fprintf(stderr, "outpostctl: out of memory\n");
		ret = CTL_FAILED;
	}
	for (size_t i = 0; ret == CTL_OK && i < t->n; i++) {
		size_t l = strlen(t->cells[i]);
		if (l > w[i % t->ncols])
			w[i % t->ncols] = l;
	}
	for (size_t i = 0; ret == CTL_OK && i < t->n; i++) {
		bool last = i % t->ncols == t->ncols - 1;
		if (last)
			printf("%s\n", t->cells[i]);
		else
			printf("%-*s  ", (int)w[i % t->ncols], t->cells[i]);
	}
	for (size_t i = 0; i < t->n; i++)
		op_free(t->cells[i]);
	op_free(t->cells);
	return ret;
}

/* ---- reading the API's JSON ---- */

static const char *str(const cJSON *o, const char *name)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
	return s ? s : "-";
}

static double num(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* "2026-11-23T17:23:42.123Z" as "2026-11-23 17:23:42" (UTC). */
static const char *when(const cJSON *o, const char *name, char out[24])
{
	const char *s = str(o, name);
	if (strlen(s) < 19)
		return s;
	snprintf(out, 24, "%.10s %.8s", s, s + 11);
	return out;
}

static void trigger_text(const cJSON *p, char *out, size_t len)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "trigger");
	const char *type = str(t, "type");
	if (strcmp(type, "http") == 0)
		snprintf(out, len, "http %s %s (%s)", str(t, "method"), str(t, "path"),
		         str(t, "mode"));
	else if (strcmp(type, "schedule") == 0)
		snprintf(out, len, "schedule %s", str(t, "cron"));
	else if (strcmp(type, "event") == 0)
		snprintf(out, len, "event %s", str(t, "event"));
	else if (strcmp(type, "mqtt") == 0)
		snprintf(out, len, "mqtt %s %s", str(t, "broker"), str(t, "topic"));
	else
		snprintf(out, len, "%s", type);
}

/* ---- the commands ---- */

static const struct cmd cmd_pipelines = {
    "pipelines", 0,
    "",          "Lists the deployed pipelines with their trigger, queue and dead letters.",
    "pipelines", NULL,
    NULL};
static const struct cmd cmd_executions = {
    "executions",
    OPT_PIPELINE | OPT_LIMIT,
    "[--pipeline P] [--limit N] ",
    "Lists recent executions, newest first (N: 1 to 1000, default 50).",
    "executions",
    NULL,
    NULL};
static const struct cmd cmd_execution = {
    "execution", OPT_ID, "ID ", "Shows one execution record.", "execution", NULL, "execution"};
static const struct cmd cmd_dead = {
    "dead",
    OPT_PIPELINE | OPT_LIMIT | OPT_ID_MAYBE,
    "[ID] [--pipeline P] [--limit N] ",
    "Lists dead letters (N: 1 to 1000, default 50), or shows one with its payload.",
    "dead",
    "dead-letter",
    "eventId"};
static const struct cmd cmd_replay = {
    "replay",    OPT_ID,
    "EVENT_ID ", "Puts a dead letter back into its pipeline's queue as a first attempt.",
    "replay",    NULL,
    "eventId"};

/*
 * Makes c's call of agent o->agent through the control plane: the command
 * c->op (c->op_one with an ID) with limit, pipeline and the ID, as the
 * admin API's query would carry them. CTL_OK with *out (the answer's
 * result, the admin API's JSON), or the exit code after saying why: as
 * call(), NOT_FOUND is CTL_NOTFOUND and BAD_COMMAND CTL_INVALID.
 */
static int remote(const struct cmd *c, struct opts *o, cJSON **out)
{
	*out = NULL;
	struct op_ctl_signer s = {0};
	struct op_ctl_mqtt *m = NULL;
	cJSON *answer = NULL;
	cJSON *args = cJSON_CreateObject();
	const char *op = o->id && c->op_one ? c->op_one : c->op;
	bool ok = args != NULL;
	if (ok && o->limit)
		ok = cJSON_AddNumberToObject(args, "limit", strtod(o->limit, NULL)) != NULL;
	if (ok && o->pipeline)
		ok = cJSON_AddStringToObject(args, "pipeline", o->pipeline) != NULL;
	if (ok && o->id && c->id_member)
		ok = cJSON_AddStringToObject(args, c->id_member, o->id) != NULL;
	int ret = ok ? op_ctl__conn_finish(&o->conn) : CTL_FAILED;
	if (!ok)
		fputs("outpostctl: out of memory\n", stderr);
	if (ret == CTL_OK)
		ret = op_ctl__signer_read(o->sign_key, &s);
	if (ret == CTL_OK)
		ret = op_ctl__conn_open(&o->conn, OP_CTL_ANSWER_MAX, &m);
	if (ret == CTL_OK)
		ret = op_ctl__command(m, &o->conn, &s, o->agent, op, args,
		                      op_ctl__timeout_ms(&o->conn), &answer);
	op_ctl_mqtt_close(m);
	op_ctl__signer_wipe(&s);
	cJSON_Delete(args);
	if (ret == CTL_OK && !cJSON_IsTrue(op_ctl__member(answer, "ok")))
		ret = op_ctl__command_failed(c->name, o->agent, answer);
	if (ret == CTL_OK) {
		*out = cJSON_DetachItemFromObjectCaseSensitive(answer, "result");
		if (*out == NULL && (*out = cJSON_CreateNull()) == NULL) {
			fputs("outpostctl: out of memory\n", stderr);
			ret = CTL_FAILED;
		}
	}
	cJSON_Delete(answer);
	return ret;
}

/* Parses, calls, and hands the answer to show (NULL: print nothing more). */
static int run(const struct cmd *c, int argc, char **argv, const char *method, const char *path,
               const char *suffix, int (*show)(const struct opts *o, const cJSON *v))
{
	struct opts o;
	int pr = parse(c, argc, argv, &o);
	if (pr)
		return usage(c, pr > 0 ? stdout : stderr);
	cJSON *v = NULL;
	int ret = o.agent ? remote(c, &o, &v) : call(&o, method, path, o.id, suffix, &v);
	if (ret == CTL_OK)
		ret = o.json ? print_json(v) : show(&o, v);
	cJSON_Delete(v);
	return ret;
}

static int show_pipelines(const struct opts *o, const cJSON *v)
{
	(void)o;
	struct table t = {.ncols = 7};
	table_add(&t, "NAME");
	table_add(&t, "VERSION");
	table_add(&t, "STATUS");
	table_add(&t, "TRIGGER");
	table_add(&t, "QUEUED");
	table_add(&t, "RUNNING");
	table_add(&t, "DEAD");
	const cJSON *p;
	cJSON_ArrayForEach (p, v) {
		char trig[512];
		trigger_text(p, trig, sizeof(trig));
		table_add(&t, "%s", str(p, "name"));
		table_add(&t, "%s", str(p, "version"));
		table_add(&t, "%s", str(p, "status"));
		table_add(&t, "%s", trig);
		table_add(&t, "%.0f", num(p, "queued"));
		table_add(&t, "%.0f", num(p, "running"));
		table_add(&t, "%.0f", num(p, "deadLetters"));
	}
	return table_print(&t);
}

int op_ctl_pipelines(int argc, char **argv)
{
	return run(&cmd_pipelines, argc, argv, "GET", "/api/pipelines", NULL, show_pipelines);
}

static int show_executions(const struct opts *o, const cJSON *v)
{
	(void)o;
	struct table t = {.ncols = 7};
	static const char *const head[] = {"ID",      "STARTED (UTC)", "PIPELINE", "STATUS",
	                                   "ATTEMPT", "DURATION",      "ERROR"};
	for (size_t i = 0; i < 7; i++)
		table_add(&t, "%s", head[i]);
	const cJSON *e;
	cJSON_ArrayForEach (e, v) {
		char ts[24];
		table_add(&t, "%s", str(e, "id"));
		table_add(&t, "%s", when(e, "startedAt", ts));
		table_add(&t, "%s", str(e, "pipeline"));
		table_add(&t, "%s", str(e, "status"));
		table_add(&t, "%.0f", num(e, "attempt"));
		table_add(&t, "%.0f ms", num(e, "durationMs"));
		table_add(&t, "%.*s", ERROR_COL_MAX, str(e, "error"));
	}
	return table_print(&t);
}

int op_ctl_executions(int argc, char **argv)
{
	return run(&cmd_executions, argc, argv, "GET", "/api/executions", NULL, show_executions);
}

static int show_execution(const struct opts *o, const cJSON *v)
{
	(void)o;
	char ts[24];
	printf("id:         %s\n", str(v, "id"));
	printf("event:      %s\n", str(v, "eventId"));
	printf("pipeline:   %s (version %s)\n", str(v, "pipeline"), str(v, "version"));
	printf("trigger:    %s\n", str(v, "trigger"));
	printf("status:     %s\n", str(v, "status"));
	printf("attempt:    %.0f\n", num(v, "attempt"));
	printf("started:    %s UTC\n", when(v, "startedAt", ts));
	printf("duration:   %.0f ms\n", num(v, "durationMs"));
	printf("error:      %s\n", str(v, "error"));
	return CTL_OK;
}

int op_ctl_execution(int argc, char **argv)
{
	return run(&cmd_execution, argc, argv, "GET", "/api/executions", NULL, show_execution);
}

static int show_dead_one(const cJSON *v)
{
	char ts[24], ts2[24];
	printf("event:      %s\n", str(v, "eventId"));
	printf("pipeline:   %s\n", str(v, "pipeline"));
	printf("trigger:    %s\n", str(v, "triggerType"));
	printf("attempt:    %.0f\n", num(v, "attempt"));
	printf("enqueued:   %s UTC\n", when(v, "enqueuedAt", ts));
	printf("dead since: %s UTC\n", when(v, "deadAt", ts2));
	printf("error:      %s\n", str(v, "error"));
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(v, "payload");
	if (p == NULL) {
		printf("payload:    %.0f bytes, too large to show\n", num(v, "payloadBytes"));
		return CTL_OK;
	}
	fputs("payload:\n", stdout);
	return print_json(p);
}

static int show_dead(const struct opts *o, const cJSON *v)
{
	if (o->id)
		return show_dead_one(v);
	struct table t = {.ncols = 6};
	static const char *const head[] = {
	    "EVENT ID", "DEAD SINCE (UTC)", "PIPELINE", "ATTEMPT", "BYTES", "ERROR"};
	for (size_t i = 0; i < 6; i++)
		table_add(&t, "%s", head[i]);
	const cJSON *e;
	cJSON_ArrayForEach (e, v) {
		char ts[24];
		table_add(&t, "%s", str(e, "eventId"));
		table_add(&t, "%s", when(e, "deadAt", ts));
		table_add(&t, "%s", str(e, "pipeline"));
		table_add(&t, "%.0f", num(e, "attempt"));
		table_add(&t, "%.0f", num(e, "payloadBytes"));
		table_add(&t, "%.*s", ERROR_COL_MAX, str(e, "error"));
	}
	return table_print(&t);
}

int op_ctl_dead(int argc, char **argv)
{
	return run(&cmd_dead, argc, argv, "GET", "/api/dead", NULL, show_dead);
}

static int show_replay(const struct opts *o, const cJSON *v)
{
	(void)o;
	printf("replayed %s: queued again as attempt 1\n", str(v, "replayed"));
	return CTL_OK;
}

int op_ctl_replay(int argc, char **argv)
{
	return run(&cmd_replay, argc, argv, "POST", "/api/dead", "/replay", show_replay);
}
