/*
 * `outpostctl deploy`, `rollback` and `status`: the control plane's side of
 * the control link (docs/protocol.md), with nothing but an MQTT broker.
 *
 * deploy checks the pipeline files as `outpostctl check` does, learns each
 * target agent's current seq from the broker's retained `desired` and
 * `reported` (ctl_mqtt's probe says when all retained messages are in),
 * signs one document per agent with the next seq, publishes it retained
 * and, unless told not to, waits for the agent's `reported` to say it was
 * applied or refused (ctl_rollout.h). rollback asks the agent for the
 * documents it applied last (a signed command, ctl_command.h) and deploys
 * an older one's pipelines the same way, with the next seq. status
 * collects the retained `status` and `reported` of the fleet, or of one
 * agent, and prints them.
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

#include "agent/account/account.h"
#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/diag.h"
#include "agent/core/json.h"
#include "agent/engine/engine.h"
#include "agent/engine/loader.h"
#include "agent/engine/pipeline.h"
#include "control-sync/envelope.h"
#include "control-sync/outpostctl/ctl.h"
#include "control-sync/outpostctl/ctl_command.h"
#include "control-sync/outpostctl/ctl_mqtt.h"
#include "control-sync/outpostctl/ctl_plane.h"
#include "control-sync/outpostctl/ctl_rollout.h"
#include "control-sync/seal.h"

#define GROUP_MAX 256
/* A status heartbeat older than three of the agent's heartbeats (its
 * heartbeatS; 30 s from agents that do not say) is stale. */
#define STALE_BEATS 3
#define HEARTBEAT_S 30
/* Widest table cell; longer text is cut with "...". */
#define CELL_MAX 60

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
	op_ctl__clean(cell);
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

struct deploy {
	struct op_ctl_conn c;
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
		int r = op_ctl__conn_opt(&d->c, argc, argv, &i);
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
		if (!op_ctl__agent_id_ok(d->agents[i], strlen(d->agents[i]))) {
			op_ctl__emit(
			    stderr,
			    "outpostctl deploy: --agent \"%.100s\": an agent id is 1 to %d "
			    "letters, "
			    "digits, '.', '_' or '-'\n",
			    d->agents[i], OP_CTL_AGENT_ID_MAX);
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
static int group_targets(const struct deploy *d, const struct op_ctl_fleet *f,
                         struct op_ctl_target **out, size_t *n)
{
	size_t k = 0;
	const cJSON **v = NULL;
	if (!op_ctl__fleet_sorted(f, &v, &k))
		return CTL_FAILED;
	struct op_ctl_target *t = op_calloc(k ? k : 1, sizeof(*t));
	if (t == NULL) {
		op_free(v);
		return CTL_FAILED;
	}
	for (size_t i = 0; i < k; i++) {
		const char *gs = op_ctl__str_of(op_ctl__member(v[i], "status"), "group");
		const char *gr = op_ctl__str_of(op_ctl__member(v[i], "reported"), "group");
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
static int find_targets(const struct deploy *d, struct op_ctl_mqtt *m, struct op_ctl_fleet *f,
                        struct op_ctl_target **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	int ret = CTL_OK;
	struct op_ctl_target *t = NULL;
	if (d->group) {
		static const char *const all[] = {"+/status", "+/reported"};
		ret = op_ctl__fleet_load(f, m, &d->c, all, 2);
		if (ret == CTL_OK)
			ret = group_targets(d, f, &t, n);
		if (ret == CTL_OK && *n == 0) {
			op_ctl__emit(
			    stderr,
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
		ret = op_ctl__fleet_load(f, m, &d->c, (const char *const *)filters, *n * per);
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

int op_ctl_deploy(int argc, char **argv)
{
	struct deploy d = {.c = {.cmd = "deploy"}, .wait = true};
	struct op_ctl_fleet f = {.cmd = "deploy"};
	struct op_ctl_mqtt *m = NULL;
	struct op_ctl_target *t = NULL;
	size_t nt = 0;
	cJSON *set = NULL;
	struct op_ctl_signer s = {0};
	struct op_ctl_rollout r;
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
	if ((ret = op_ctl__conn_finish(&d.c)) != CTL_OK || (ret = load_set(&d, &set)) != CTL_OK ||
	    (ret = op_ctl__set_fits("deploy", set)) != CTL_OK ||
	    (ret = op_ctl__signer_read(d.sign_key, &s)) != CTL_OK)
		goto out;
	op_ctl__rollout_init(&r, &d.c, &s, d.json);
	if ((ret = op_ctl__conn_open(&d.c, OP_ENV_MAX, &m)) != CTL_OK)
		goto out;
	f.root = op_ctl_mqtt_root(m);
	if ((ret = find_targets(&d, m, &f, &t, &nt)) != CTL_OK)
		goto out;
	for (size_t i = 0; i < nt; i++) {
		t[i].set = set;
		if (!op_ctl__next_seq(&f, &t[i])) {
			fprintf(stderr,
			        "outpostctl deploy: agent %s: its seq is at 2^53; nothing was "
			        "deployed\n",
			        t[i].id);
			ret = CTL_FAILED;
			goto out;
		}
		if (t[i].seq == 1 && !d.group)
			op_ctl__emit(stderr,
			             "outpostctl deploy: note: agent %s has nothing retained under "
			             "%s%s/ (a new agent, or a misspelt id)\n",
			             t[i].id, f.root, t[i].id);
	}
	for (size_t i = 0; i < nt; i++) {
		if ((ret = op_ctl__publish_desired(&r, m, &t[i])) != CTL_OK)
			goto out;
	}
	if (d.wait)
		op_ctl__wait_reports(&r, m, &f, t, nt);
	ret = op_ctl__print_results(&r, t, nt);
out:
	op_ctl__signer_wipe(&s);
	op_ctl_mqtt_close(m);
	op_free(t);
	cJSON_Delete(set);
	cJSON_Delete(f.agents);
	op_free(d.files);
	op_free(d.agents);
	return ret;
}

/* ---- rollback ---- */

static const char rollback_usage[] =
    "usage: outpostctl rollback --agent ID [--to SEQ] --sign-key KEYFILE [--wait | --no-wait]\n"
    "                           [--json] [--broker URL] [--ca FILE] [--cert FILE]\n"
    "                           [--key FILE] [--prefix P] [--timeout SECONDS]\n"
    "Asks the agent for the documents it applied last (a signed command), takes the\n"
    "pipelines of seq SEQ, or of the document before the running one, and deploys\n"
    "them as a new document with the next seq, as deploy does.\n"
    "  --to SEQ         the seq to bring back (outpostctl status --agent ID shows the\n"
    "                   running one; the agent keeps the last 10 applied)\n"
    "  --sign-key FILE  the private key (outpostctl keygen) the agent trusts\n"
    "  --json           print [{agent, seq, from, result, error, seconds}]\n"
    "Connection options and waiting as for deploy (outpostctl deploy --help).\n"
    "Exit status: 0 the agent applied it (or, with --no-wait, it was published);\n"
    "1 refused, no report or answer in time, or not published; 2 bad usage;\n"
    "3 no such seq in the agent's history.\n";

struct rollback {
	struct op_ctl_conn c;
	const char *agent, *to_s, *sign_key;
	uint64_t to;
	bool wait, json;
};

/* Parses the arguments. 0, 1 for --help, -1 after saying why. */
static int rollback_args(int argc, char **argv, struct rollback *b)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		int r = op_ctl__conn_opt(&b->c, argc, argv, &i);
		if (r < 0)
			return -1;
		if (r > 0)
			continue;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return 1;
		if (strcmp(a, "--wait") == 0 || strcmp(a, "--no-wait") == 0) {
			b->wait = strcmp(a, "--wait") == 0;
		} else if (strcmp(a, "--json") == 0) {
			b->json = true;
		} else if (strcmp(a, "--agent") == 0 || strcmp(a, "--to") == 0 ||
		           strcmp(a, "--sign-key") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "outpostctl rollback: %s needs a value\n", a);
				return -1;
			}
			const char *v = argv[++i];
			if (strcmp(a, "--agent") == 0)
				b->agent = v;
			else if (strcmp(a, "--to") == 0)
				b->to_s = v;
			else
				b->sign_key = v;
		} else {
			fprintf(stderr, "outpostctl rollback: unexpected argument \"%s\"\n", a);
			return -1;
		}
	}
	if (b->agent == NULL || !op_ctl__agent_id_ok(b->agent, strlen(b->agent))) {
		op_ctl__emit(stderr,
		             "outpostctl rollback: --agent ID: an agent id is 1 to %d letters, "
		             "digits, '.', '_' or '-'%s%.100s%s\n",
		             OP_CTL_AGENT_ID_MAX, b->agent ? ", not \"" : " (missing)",
		             b->agent ? b->agent : "", b->agent ? "\"" : "");
		return -1;
	}
	if (b->to_s) {
		char *end = NULL;
		errno = 0;
		unsigned long long v = strtoull(b->to_s, &end, 10);
		if (errno || end == b->to_s || *end != '\0' || b->to_s[0] == '-' || v == 0 ||
		    v > OP_CTL_SEQ_MAX) {
			fprintf(stderr,
			        "outpostctl rollback: --to \"%s\": expected a seq, 1 to 2^53\n",
			        b->to_s);
			return -1;
		}
		b->to = v;
	}
	if (b->sign_key == NULL) {
		fputs("outpostctl rollback: --sign-key KEYFILE is needed: agents apply only what "
		      "their trusted keys signed\n",
		      stderr);
		return -1;
	}
	return 0;
}

/* The seqs of the history's documents, "9, 8, 5", into out. */
static void history_seqs(const cJSON *docs, char *out, size_t len)
{
	size_t n = 0;
	const cJSON *d;
	out[0] = '\0';
	cJSON_ArrayForEach (d, docs) {
		uint64_t seq = 0;
		if (!op_ctl__seq_of(op_ctl__member(d, "seq"), &seq))
			continue;
		int k =
		    snprintf(out + n, len - n, "%s%llu", n ? ", " : "", (unsigned long long)seq);
		if (k < 0 || (size_t)k >= len - n)
			break;
		n += (size_t)k;
	}
	if (n == 0)
		snprintf(out, len, "none");
}

/*
 * Chooses the document to bring back from the agent's history docs: seq
 * b->to, or the newest before the running seq (reported.seq in f, else the
 * newest document's). CTL_OK with *doc (borrowed from docs), CTL_NOTFOUND
 * after saying which seqs there are.
 */
static int pick(const struct rollback *b, const struct op_ctl_fleet *f, const cJSON *docs,
                const cJSON **doc)
{
	*doc = NULL;
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(f->agents, b->agent);
	uint64_t running = 0, best = 0, seq = 0;
	if (!op_ctl__seq_of(op_ctl__member(op_ctl__member(a, "reported"), "seq"), &running) ||
	    running == 0) {
		const cJSON *d;
		cJSON_ArrayForEach (d, docs) {
			if (op_ctl__seq_of(op_ctl__member(d, "seq"), &seq) && seq > running)
				running = seq;
		}
	}
	const cJSON *d;
	cJSON_ArrayForEach (d, docs) {
		if (!op_ctl__seq_of(op_ctl__member(d, "seq"), &seq))
			continue;
		if (b->to ? seq == b->to : seq < running && seq > best) {
			best = seq;
			*doc = d;
		}
	}
	if (*doc)
		return CTL_OK;
	char seqs[400];
	history_seqs(docs, seqs, sizeof(seqs));
	if (b->to)
		op_ctl__emit(stderr,
		             "outpostctl rollback: agent %s: seq %llu is not in its history; it "
		             "keeps the last documents it applied: seqs %s\n",
		             b->agent, (unsigned long long)b->to, seqs);
	else
		op_ctl__emit(stderr,
		             "outpostctl rollback: agent %s: nothing to roll back to: no document "
		             "before the running seq %llu in its history (seqs %s)\n",
		             b->agent, (unsigned long long)running, seqs);
	return CTL_NOTFOUND;
}

/* Asks agent for its history into *answer; CTL_OK or the exit code. */
static int ask_history(const struct rollback *b, struct op_ctl_mqtt *m,
                       const struct op_ctl_signer *s, cJSON **answer, const cJSON **docs)
{
	*docs = NULL;
	int ret = op_ctl__command(m, &b->c, s, b->agent, "history", NULL, op_ctl__timeout_ms(&b->c),
	                          answer);
	if (ret != CTL_OK)
		return ret;
	if (!cJSON_IsTrue(op_ctl__member(*answer, "ok"))) {
		ret = op_ctl__command_failed("rollback", b->agent, *answer);
		return ret == CTL_NOTFOUND ? CTL_FAILED : ret;
	}
	*docs = op_ctl__member(op_ctl__member(*answer, "result"), "documents");
	if (!cJSON_IsArray(*docs)) {
		op_ctl__emit(stderr,
		             "outpostctl rollback: agent %s: its history is not a list of "
		             "documents (result.documents)\n",
		             b->agent);
		return CTL_FAILED;
	}
	return CTL_OK;
}

/* One target's document, as deploy does it: fits one envelope, the next
 * seq, signed and published, then (wait) its report; the exit code. */
static int roll_one(const char *cmd, const struct op_ctl_rollout *r, struct op_ctl_mqtt *m,
                    struct op_ctl_fleet *f, struct op_ctl_target *t, bool wait)
{
	int ret = op_ctl__set_fits(cmd, t->set);
	if (ret != CTL_OK)
		return ret;
	if (!op_ctl__next_seq(f, t)) {
		fprintf(stderr, "outpostctl %s: agent %s: its seq is at 2^53\n", cmd, t->id);
		return CTL_FAILED;
	}
	if ((ret = op_ctl__publish_desired(r, m, t)) != CTL_OK)
		return ret;
	if (wait)
		op_ctl__wait_reports(r, m, f, t, 1);
	return op_ctl__print_results(r, t, 1);
}

int op_ctl_rollback(int argc, char **argv)
{
	struct rollback b = {.c = {.cmd = "rollback"}, .wait = true};
	struct op_ctl_fleet f = {.cmd = "rollback"};
	struct op_ctl_signer s = {0};
	struct op_ctl_mqtt *m = NULL;
	struct op_ctl_target t = {0};
	struct op_ctl_rollout r;
	cJSON *answer = NULL;
	int pr = rollback_args(argc, argv, &b);
	if (pr) {
		fputs(rollback_usage, pr > 0 ? stdout : stderr);
		return pr > 0 ? CTL_OK : CTL_INVALID;
	}
	int ret = op_ctl__conn_finish(&b.c);
	if (ret == CTL_OK)
		ret = op_ctl__signer_read(b.sign_key, &s);
	if (ret != CTL_OK)
		return ret;
	op_ctl__rollout_init(&r, &b.c, &s, b.json);
	if ((f.agents = cJSON_CreateObject()) == NULL) {
		fputs("outpostctl: out of memory\n", stderr);
		ret = CTL_FAILED;
		goto out;
	}
	if ((ret = op_ctl__conn_open(&b.c, OP_CTL_ANSWER_MAX, &m)) != CTL_OK)
		goto out;
	f.root = op_ctl_mqtt_root(m);
	char fd[OP_CTL_AGENT_ID_MAX + 16], fr[OP_CTL_AGENT_ID_MAX + 16];
	snprintf(fd, sizeof(fd), "%s/desired", b.agent);
	snprintf(fr, sizeof(fr), "%s/reported", b.agent);
	const char *const filters[] = {fd, fr};
	const cJSON *docs = NULL, *doc = NULL;
	if ((ret = op_ctl__fleet_load(&f, m, &b.c, filters, 2)) != CTL_OK ||
	    (ret = ask_history(&b, m, &s, &answer, &docs)) != CTL_OK ||
	    (ret = pick(&b, &f, docs, &doc)) != CTL_OK)
		goto out;
	snprintf(t.id, sizeof(t.id), "%s", b.agent);
	t.set = op_ctl__member(doc, "pipelines");
	(void)op_ctl__seq_of(op_ctl__member(doc, "seq"), &t.from);
	if (!cJSON_IsArray(t.set)) {
		op_ctl__emit(
		    stderr,
		    "outpostctl rollback: agent %s: the document of seq %llu in its history "
		    "has no pipelines array\n",
		    b.agent, (unsigned long long)t.from);
		ret = CTL_FAILED;
		goto out;
	}
	ret = roll_one("rollback", &r, m, &f, &t, b.wait);
out:
	op_ctl__signer_wipe(&s);
	op_ctl_mqtt_close(m);
	cJSON_Delete(answer);
	cJSON_Delete(f.agents);
	return ret;
}

/* ---- account put ---- */

static const char put_usage[] =
    "usage: outpostctl account put --agent ID NAME [--file FILE] --sign-key KEYFILE\n"
    "                              [--wait | --no-wait] [--json] [--broker URL] [--ca FILE]\n"
    "                              [--cert FILE] [--key FILE] [--prefix P] [--timeout S]\n"
    "Seals the account NAME (its JSON document from FILE or stdin, as `outpostctl\n"
    "account set` takes it) to the agent's own key (its sealKey), and deploys it with\n"
    "the pipelines the agent runs, as a new document with the next seq; the agent\n"
    "opens it and keeps it in its vault. The secret never travels in the clear.\n"
    "  --sign-key FILE  the private key (outpostctl keygen) the agent trusts\n"
    "Connection options and waiting as for deploy (outpostctl deploy --help).\n"
    "Exit status: 0 the agent applied it (or, with --no-wait, it was published);\n"
    "1 refused, no report or answer in time, not published, or the agent has no\n"
    "sealKey; 2 bad usage or an invalid account.\n";

/* The running document among docs: the one of reported.seq, else the
 * newest; NULL when there is none (a new agent). */
static const cJSON *running_doc(const struct op_ctl_fleet *f, const char *agent, const cJSON *docs)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(f->agents, agent);
	uint64_t running = 0, seq = 0, best = 0;
	(void)op_ctl__seq_of(op_ctl__member(op_ctl__member(a, "reported"), "seq"), &running);
	const cJSON *d, *doc = NULL;
	cJSON_ArrayForEach (d, docs) {
		if (!op_ctl__seq_of(op_ctl__member(d, "seq"), &seq))
			continue;
		if (running ? seq == running : seq > best) {
			best = seq;
			doc = d;
		}
	}
	return doc;
}

/* The account document of file, checked as `account set` checks it, into
 * *text (compact JSON; wipe, then op_free). CTL_INVALID after saying why. */
static int account_text(const char *name, const char *file, char **text)
{
	char *raw = NULL;
	size_t len = 0;
	*text = NULL;
	if (op_ctl_read_file(file, 1u << 20, &raw, &len) != OP_OK)
		return CTL_INVALID;
	cJSON *j = cJSON_ParseWithLength(raw, len);
	explicit_bzero(raw, len);
	op_free(raw);
	struct op_diag d;
	op_diag_init(&d);
	struct op_account *acct = NULL;
	op_err rc = j ? op_account_parse(name, j, &acct, &d) : OP_EPARSE;
	op_account_free(acct);
	if (rc) {
		if (d.n)
			for (size_t i = 0; i < d.n; i++)
				fprintf(stderr, "outpostctl account put: %s%s%s\n", d.v[i].path,
				        d.v[i].path[0] ? ": " : "", d.v[i].msg);
		else
			fprintf(stderr, "outpostctl account put: %s: not a JSON account document\n",
			        file);
		op_diag_fini(&d);
		op_account_json_free(j);
		return rc == OP_ENOMEM ? CTL_FAILED : CTL_INVALID;
	}
	op_diag_fini(&d);
	*text = op_json_print(j, OP_JSON_COMPACT);
	op_account_json_free(j);
	return *text ? CTL_OK : CTL_FAILED;
}

int op_ctl_account_put(int argc, char **argv)
{
	struct rollback b = {.c = {.cmd = "account put"}, .wait = true};
	const char *name = NULL, *file = "-";
	/* Its own arguments first; the rest as rollback's (--agent, --sign-key,
	 * waiting, connection). */
	char **rest = op_calloc((size_t)argc + 1, sizeof(*rest));
	int nrest = 0;
	if (rest == NULL)
		return CTL_FAILED;
	static const char *const valued[] = {"--agent", "--sign-key", "--broker",  "--ca", "--cert",
	                                     "--key",   "--prefix",   "--timeout", "--to", NULL};
	for (int i = 0; i < argc; i++) {
		bool takes = false;
		for (size_t k = 0; valued[k] && !takes; k++)
			takes = strcmp(argv[i], valued[k]) == 0;
		if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
			file = argv[++i];
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			op_free(rest);
			fputs(put_usage, stdout);
			return CTL_OK;
		} else if (takes) {
			rest[nrest++] = argv[i];
			if (i + 1 < argc)
				rest[nrest++] = argv[++i];
		} else if (argv[i][0] == '-' || name != NULL) {
			rest[nrest++] = argv[i]; /* rollback_args says what is wrong */
		} else {
			name = argv[i];
		}
	}
	int pr = rollback_args(nrest, rest, &b);
	op_free(rest);
	if (pr || b.to_s || name == NULL || !op_account_name_ok(name)) {
		if (pr == 0 && name && !op_account_name_ok(name))
			fprintf(stderr, "outpostctl account put: \"%s\" is not an account name\n",
			        name);
		fputs(put_usage, stderr);
		return CTL_INVALID;
	}
	char *plain = NULL;
	int ret = account_text(name, file, &plain);
	if (ret != CTL_OK)
		return ret;
	struct op_ctl_fleet f = {.cmd = "account put"};
	struct op_ctl_signer s = {0};
	struct op_ctl_mqtt *m = NULL;
	struct op_ctl_target t = {0};
	struct op_ctl_rollout r;
	cJSON *answer = NULL, *accounts = NULL, *empty = NULL;
	ret = op_ctl__conn_finish(&b.c);
	if (ret == CTL_OK)
		ret = op_ctl__signer_read(b.sign_key, &s);
	if (ret != CTL_OK)
		goto out;
	op_ctl__rollout_init(&r, &b.c, &s, b.json);
	if ((f.agents = cJSON_CreateObject()) == NULL) {
		ret = CTL_FAILED;
		goto out;
	}
	if ((ret = op_ctl__conn_open(&b.c, OP_CTL_ANSWER_MAX, &m)) != CTL_OK)
		goto out;
	f.root = op_ctl_mqtt_root(m);
	char fd[OP_CTL_AGENT_ID_MAX + 16], fr[OP_CTL_AGENT_ID_MAX + 16],
	    fs[OP_CTL_AGENT_ID_MAX + 16];
	snprintf(fd, sizeof(fd), "%s/desired", b.agent);
	snprintf(fr, sizeof(fr), "%s/reported", b.agent);
	snprintf(fs, sizeof(fs), "%s/status", b.agent);
	const char *const filters[] = {fd, fr, fs};
	const cJSON *docs = NULL;
	if ((ret = op_ctl__fleet_load(&f, m, &b.c, filters, 3)) != CTL_OK ||
	    (ret = ask_history(&b, m, &s, &answer, &docs)) != CTL_OK)
		goto out;
	/* The key to seal to: what the agent says in its status. */
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(f.agents, b.agent);
	const char *sk = op_ctl__str_of(op_ctl__member(a, "status"), "sealKey");
	if (sk == NULL)
		sk = op_ctl__str_of(op_ctl__member(a, "reported"), "sealKey");
	char *pub = NULL;
	size_t publen = 0;
	if (sk == NULL || op_base64_decode(sk, &pub, &publen) != OP_OK ||
	    publen != OP_SEAL_KEY_LEN) {
		op_free(pub);
		op_ctl__emit(stderr,
		             "outpostctl account put: agent %s publishes no key to seal accounts "
		             "to (sealKey in its status): an older agent, or one without a vault "
		             "key\n",
		             b.agent);
		ret = CTL_FAILED;
		goto out;
	}
	char aad[2 * OP_CTL_AGENT_ID_MAX + 2], why[256];
	snprintf(aad, sizeof(aad), "%s/%s", b.agent, name);
	cJSON *box = NULL;
	op_err rc =
	    op_seal((const uint8_t *)pub, aad, plain, strlen(plain), &box, why, sizeof(why));
	op_free(pub);
	if (rc || (accounts = cJSON_CreateObject()) == NULL ||
	    !cJSON_AddItemToObject(accounts, name, box)) {
		if (!rc)
			cJSON_Delete(box);
		op_ctl__emit(stderr, "outpostctl account put: cannot seal the account: %s\n",
		             rc ? why : "out of memory");
		ret = CTL_FAILED;
		goto out;
	}
	const cJSON *doc = running_doc(&f, b.agent, docs);
	snprintf(t.id, sizeof(t.id), "%s", b.agent);
	t.set = op_ctl__member(doc, "pipelines");
	if (!cJSON_IsArray(t.set))
		t.set = empty = cJSON_CreateArray();
	t.accounts = accounts;
	if (t.set == NULL) {
		ret = CTL_FAILED;
		goto out;
	}
	ret = roll_one("account put", &r, m, &f, &t, b.wait);
out:
	explicit_bzero(plain, strlen(plain));
	op_free(plain);
	op_ctl__signer_wipe(&s);
	op_ctl_mqtt_close(m);
	cJSON_Delete(answer);
	cJSON_Delete(accounts);
	cJSON_Delete(empty);
	cJSON_Delete(f.agents);
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

/* Seconds after which st's heartbeat is stale. */
static long long stale_s(const cJSON *st)
{
	const cJSON *hb = cJSON_GetObjectItemCaseSensitive(st, "heartbeatS");
	double s = cJSON_IsNumber(hb) && hb->valuedouble >= 1 && hb->valuedouble <= 86400
	               ? hb->valuedouble
	               : HEARTBEAT_S;
	return STALE_BEATS * (long long)s;
}

/* ONLINE of a status: yes, stale, no, or - when there is none. */
static const char *online_text(const cJSON *st, long long now)
{
	const char *state = op_ctl__str_of(st, "state");
	long long at = 0;
	if (state == NULL)
		return st ? "?" : "-";
	if (strcmp(state, "online") != 0)
		return strcmp(state, "offline") == 0 ? "no" : "?";
	if (parse_time(op_ctl__str_of(st, "at"), &at) && now - at > stale_s(st) * 1000LL)
		return "stale";
	return "yes";
}

static void heartbeat_text(const cJSON *st, long long now, char *buf, size_t len)
{
	long long at = 0;
	if (parse_time(op_ctl__str_of(st, "at"), &at))
		age_text(now - at, buf, len);
	else
		snprintf(buf, len, "-");
}

static int show_fleet(const struct op_ctl_fleet *f)
{
	size_t n = 0;
	const cJSON **v = NULL;
	if (!op_ctl__fleet_sorted(f, &v, &n)) {
		fputs("outpostctl: out of memory\n", stderr);
		return CTL_FAILED;
	}
	if (n == 0) {
		op_ctl__emit(
		    stderr,
		    "outpostctl status: no agent has a retained status or reported under %s\n",
		    f->root);
		return CTL_OK;
	}
	long long now = op_ctl__wall_ms();
	struct table t = {.ncols = 6};
	static const char *const head[] = {"AGENT",     "ONLINE", "SEQ",
	                                   "PIPELINES", "ERRORS", "HEARTBEAT"};
	for (size_t i = 0; i < 6; i++)
		table_add(&t, "%s", head[i]);
	for (size_t i = 0; i < n; i++) {
		const cJSON *st = op_ctl__member(v[i], "status"),
		            *rep = op_ctl__member(v[i], "reported");
		const cJSON *pipes = op_ctl__member(rep, "pipelines");
		uint64_t seq = 0;
		char hb[32];
		heartbeat_text(st, now, hb, sizeof(hb));
		table_add(&t, "%s", v[i]->string);
		table_add(&t, "%s", online_text(st, now));
		if (op_ctl__seq_of(op_ctl__member(rep, "seq"), &seq))
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
				const char *ps = op_ctl__str_of(p, "status");
				/* A pipeline draining its queue after a deploy dropped
				 * it is not an error. */
				errors += ps == NULL || (strcmp(ps, "running") != 0 &&
				                         strcmp(ps, "draining") != 0);
			}
			const cJSON *le = op_ctl__member(rep, "lastError");
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
	const char *s = op_ctl__str_of(o, name);
	return s && *s ? s : "-";
}

static int show_agent(const cJSON *a)
{
	const cJSON *st = op_ctl__member(a, "status"), *rep = op_ctl__member(a, "reported");
	long long now = op_ctl__wall_ms();
	char hb[32];
	heartbeat_text(st, now, hb, sizeof(hb));
	const char *online = online_text(st, now);
	op_ctl__emit(stdout, "agent:      %s\n", a->string);
	if (st == NULL)
		op_ctl__emit(stdout, "state:      - (no retained status)\n");
	else if (strcmp(online, "stale") == 0)
		op_ctl__emit(stdout,
		             "state:      %s, but stale: no heartbeat for more than %lld s\n",
		             dash(st, "state"), stale_s(st));
	else
		op_ctl__emit(stdout, "state:      %s\n", dash(st, "state"));
	op_ctl__emit(stdout, "group:      %s\n",
	             op_ctl__str_of(st, "group") ? dash(st, "group") : dash(rep, "group"));
	op_ctl__emit(stdout, "version:    %s\n",
	             op_ctl__str_of(st, "version") ? dash(st, "version") : dash(rep, "version"));
	op_ctl__emit(stdout, "since:      %s\n", dash(st, "since"));
	op_ctl__emit(stdout, "heartbeat:  %s%s%s%s\n", dash(st, "at"), strcmp(hb, "-") ? " (" : "",
	             strcmp(hb, "-") ? hb : "", strcmp(hb, "-") ? ")" : "");
	uint64_t seq = 0;
	if (rep == NULL)
		op_ctl__emit(stdout, "applied:    - (no retained reported)\n");
	else if (!op_ctl__seq_of(op_ctl__member(rep, "seq"), &seq))
		op_ctl__emit(stdout, "applied:    ? (no valid seq)\n");
	else if (seq == 0)
		op_ctl__emit(stdout, "applied:    nothing yet (seq 0)\n");
	else
		op_ctl__emit(stdout, "applied:    seq %llu\n", (unsigned long long)seq);
	const cJSON *pipes = op_ctl__member(rep, "pipelines");
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
		op_ctl__emit(stdout, "pipelines:  none\n");
	}
	const cJSON *le = op_ctl__member(rep, "lastError");
	if (rep == NULL)
		return ret;
	if (le == NULL || cJSON_IsNull(le)) {
		op_ctl__emit(stdout, "last error: none\n");
	} else {
		uint64_t es = 0;
		char s[32] = "?";
		if (op_ctl__seq_of(op_ctl__member(le, "seq"), &es))
			snprintf(s, sizeof(s), "%llu", (unsigned long long)es);
		op_ctl__emit(stdout, "last error: seq %s at %s: %s: %s\n", s, dash(le, "at"),
		             dash(le, "code"), dash(le, "message"));
	}
	return ret;
}

int op_ctl_status(int argc, char **argv)
{
	struct op_ctl_conn c = {.cmd = "status"};
	struct op_ctl_fleet f = {.cmd = "status"};
	struct op_ctl_mqtt *m = NULL;
	const char *agent = NULL;
	bool json = false;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		int r = op_ctl__conn_opt(&c, argc, argv, &i);
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
	if (agent && !op_ctl__agent_id_ok(agent, strlen(agent))) {
		op_ctl__emit(
		    stderr,
		    "outpostctl status: --agent \"%.100s\": an agent id is 1 to %d letters, "
		    "digits, "
		    "'.', '_' or '-'\n",
		    agent, OP_CTL_AGENT_ID_MAX);
		return CTL_INVALID;
	}
	int ret = op_ctl__conn_finish(&c);
	if (ret)
		return ret;
	if ((f.agents = cJSON_CreateObject()) == NULL) {
		fputs("outpostctl: out of memory\n", stderr);
		return CTL_FAILED;
	}
	if ((ret = op_ctl__conn_open(&c, OP_CTL_STATE_MAX, &m)) != CTL_OK)
		goto out;
	char root[1100];
	snprintf(root, sizeof(root), "%s", op_ctl_mqtt_root(m));
	f.root = root;
	char fs[OP_CTL_AGENT_ID_MAX + 16], fr[OP_CTL_AGENT_ID_MAX + 16];
	snprintf(fs, sizeof(fs), "%s/status", agent ? agent : "+");
	snprintf(fr, sizeof(fr), "%s/reported", agent ? agent : "+");
	const char *const filters[] = {fs, fr};
	if ((ret = op_ctl__fleet_load(&f, m, &c, filters, 2)) != CTL_OK)
		goto out;
	/* What follows needs no broker: let go of it before printing. */
	op_ctl_mqtt_close(m);
	m = NULL;
	const cJSON *one = agent ? cJSON_GetObjectItemCaseSensitive(f.agents, agent) : NULL;
	if (agent && one == NULL) {
		op_ctl__emit(
		    stderr,
		    "outpostctl status: agent %s has no retained status or reported under %s%s/ "
		    "(never connected, or a misspelt id)\n",
		    agent, root, agent);
		ret = CTL_NOTFOUND;
	} else if (json) {
		ret = op_ctl__print_json(f.agents);
	} else {
		ret = agent ? show_agent(one) : show_fleet(&f);
	}
out:
	op_ctl_mqtt_close(m);
	cJSON_Delete(f.agents);
	return ret;
}
