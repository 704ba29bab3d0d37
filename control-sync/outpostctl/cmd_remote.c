/*
 * `outpostctl invoke` and `outpostctl logs`: an agent reached through the
 * control plane's broker alone (docs/protocol.md). invoke runs one of the
 * agent's pipelines now, as a signed command (ctl_command.h), and prints
 * its output; logs follows the agent's out/logs stream, printing each
 * record once, until interrupted or for a given time.
 *
 * Key invariant: nothing waits without a bound but `logs --follow` without
 * --for, which ends on SIGINT or SIGTERM with a clean disconnect: the
 * signals are blocked in every thread (paho's included) and taken by one
 * thread with sigwait(), which wakes the main thread through ctl_mqtt.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/clock.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "control-sync/outpostctl/ctl.h"
#include "control-sync/outpostctl/ctl_command.h"
#include "control-sync/outpostctl/ctl_mqtt.h"
#include "control-sync/outpostctl/ctl_plane.h"

/* The agent's bounds of an invoke's timeoutMs, and its default. */
#define INVOKE_MS_MAX     300000L
#define INVOKE_MS_DEFAULT 30000L
/* Margin over timeoutMs for the answer to come back. */
#define ANSWER_SLACK_MS 5000
/* Longest pipeline name the agent takes in a command. */
#define PIPELINE_NAME_MAX 128
/* Largest out/logs message read: a batch is at most 256 KiB of records. */
#define LOGS_MSG_MAX (1u << 20)
#define FOLLOW_MAX_S 31536000.0

/* A positive integer option value from lo to hi. */
static bool int_arg(const char *s, long lo, long hi, long *out)
{
	char *end = NULL;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* Reads "--name VALUE" at argv[*i] into *v when argv[*i] is name: 1, or
 * -1 without a value (said on stderr); 0 when it is another argument. */
static int valued(const char *cmd, const char *name, int argc, char **argv, int *i, const char **v)
{
	if (strcmp(argv[*i], name) != 0)
		return 0;
	if (*i + 1 >= argc || argv[*i + 1][0] == '\0') {
		fprintf(stderr, "outpostctl %s: %s needs a value\n", cmd, name);
		return -1;
	}
	*v = argv[++*i];
	return 1;
}

static bool agent_ok(const char *cmd, const char *agent)
{
	if (agent == NULL) {
		fprintf(stderr, "outpostctl %s: which agent? give --agent ID\n", cmd);
		return false;
	}
	if (!op_ctl__agent_id_ok(agent, strlen(agent))) {
		op_ctl__emit(stderr,
		             "outpostctl %s: --agent \"%.100s\": an agent id is 1 to %d letters, "
		             "digits, '.', '_' or '-'\n",
		             cmd, agent, OP_CTL_AGENT_ID_MAX);
		return false;
	}
	return true;
}

/* Prints a command's usage, the connection options and its exit codes: on stdout for
 * --help (pr 1, CTL_OK), else on stderr (CTL_INVALID). */
static int usage(const char *text, const char *exits, int pr)
{
	FILE *f = pr > 0 ? stdout : stderr;
	fputs(text, f);
	fputs(op_ctl__conn_usage, f);
	fputs(exits, f);
	return pr > 0 ? CTL_OK : CTL_INVALID;
}

/* ---- invoke ---- */

static const char invoke_usage[] =
    "usage: outpostctl invoke --agent ID PIPELINE [--input FILE|-] [--timeout-ms N]\n"
    "                         --sign-key KEYFILE [--json] [--broker URL] [--ca FILE]\n"
    "                         [--cert FILE] [--key FILE] [--prefix P] [--timeout SECONDS]\n"
    "Runs the agent's pipeline PIPELINE now, as a signed command over the control\n"
    "plane's broker, with the JSON of FILE as input (default {}), and prints its\n"
    "output.\n"
    "  --agent ID       the agent\n"
    "  --input FILE     the input's JSON (\"-\" reads stdin)\n"
    "  --timeout-ms N   the execution's bound on the agent, 1 to 300000 (default 30000)\n"
    "  --sign-key FILE  the private key (outpostctl keygen) the agent trusts\n"
    "  --json           print the agent's whole answer, compact\n"
    "  --timeout S      seconds for connecting and each publish (default 30); the answer\n"
    "                   is awaited that long, or timeout-ms and 5 s if that is longer\n";
static const char invoke_exits[] =
    "Exit status: 0 the pipeline ran; 1 it failed or was not found, the agent refused\n"
    "the command or did not answer in time, or the broker is unreachable; 2 bad usage,\n"
    "an unreadable input or key.\n";

struct invoke {
	struct op_ctl_conn c;
	const char *agent, *pipeline, *input, *sign_key, *timeout_ms;
	long ms;
	bool json;
};

/* Parses the arguments. 0, 1 for --help, -1 after saying why. */
static int invoke_args(int argc, char **argv, struct invoke *a)
{
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		int r = op_ctl__conn_opt(&a->c, argc, argv, &i);
		if (r == 0)
			r = valued("invoke", "--agent", argc, argv, &i, &a->agent);
		if (r == 0)
			r = valued("invoke", "--input", argc, argv, &i, &a->input);
		if (r == 0)
			r = valued("invoke", "--sign-key", argc, argv, &i, &a->sign_key);
		if (r == 0)
			r = valued("invoke", "--timeout-ms", argc, argv, &i, &a->timeout_ms);
		if (r < 0)
			return -1;
		if (r > 0)
			continue;
		if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0)
			return 1;
		if (strcmp(s, "--json") == 0) {
			a->json = true;
		} else if (s[0] == '-' && s[1] != '\0') {
			fprintf(stderr, "outpostctl invoke: unknown option \"%s\"\n", s);
			return -1;
		} else if (a->pipeline == NULL) {
			a->pipeline = s;
		} else {
			fprintf(stderr,
			        "outpostctl invoke: one pipeline at a time (\"%s\", \"%s\")\n",
			        a->pipeline, s);
			return -1;
		}
	}
	if (!agent_ok("invoke", a->agent))
		return -1;
	if (a->pipeline == NULL) {
		fputs("outpostctl invoke: which pipeline? give its name\n", stderr);
		return -1;
	}
	size_t n = strlen(a->pipeline);
	bool ok = n > 0 && n <= PIPELINE_NAME_MAX;
	for (size_t i = 0; ok && i < n; i++) {
		char ch = a->pipeline[i];
		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		     (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
	}
	if (!ok) {
		op_ctl__emit(stderr,
		             "outpostctl invoke: pipeline \"%.100s\": a name is 1 to %d letters, "
		             "digits, '.', '_' or '-'\n",
		             a->pipeline, PIPELINE_NAME_MAX);
		return -1;
	}
	a->ms = INVOKE_MS_DEFAULT;
	if (a->timeout_ms && !int_arg(a->timeout_ms, 1, INVOKE_MS_MAX, &a->ms)) {
		fprintf(stderr, "outpostctl invoke: --timeout-ms \"%s\": expected 1 to %ld\n",
		        a->timeout_ms, INVOKE_MS_MAX);
		return -1;
	}
	if (a->sign_key == NULL) {
		fputs("outpostctl invoke: --sign-key KEYFILE is needed: agents run only commands "
		      "their trusted keys signed\n",
		      stderr);
		return -1;
	}
	return 0;
}

/* {"pipeline", "input", "timeoutMs"} into *out. CTL_OK, CTL_INVALID (the
 * input unreadable or not JSON, said why), CTL_FAILED (out of memory). */
static int invoke_members(const struct invoke *a, cJSON **out)
{
	*out = NULL;
	cJSON *input = NULL;
	if (a->input) {
		char *text = NULL, why[256];
		size_t len = 0;
		/* The envelope holds base64 of the document: 3/4 of 16 MiB. */
		if (op_ctl_read_file(a->input, OP_ENV_MAX / 4 * 3 - 4096, &text, &len) != OP_OK)
			return CTL_INVALID;
		op_err rc = op_json_parse(text, len, &input, why, sizeof(why));
		op_free(text);
		if (rc) {
			fprintf(stderr, "outpostctl invoke: --input %s: not JSON: %s\n", a->input,
			        why);
			return rc == OP_ENOMEM ? CTL_FAILED : CTL_INVALID;
		}
	} else if ((input = cJSON_CreateObject()) == NULL) {
		fputs("outpostctl: out of memory\n", stderr);
		return CTL_FAILED;
	}
	cJSON *o = cJSON_CreateObject();
	bool ok = o && cJSON_AddStringToObject(o, "pipeline", a->pipeline) &&
	          cJSON_AddItemToObject(o, "input", input);
	if (!ok)
		cJSON_Delete(input);
	if (!ok || !cJSON_AddNumberToObject(o, "timeoutMs", (double)a->ms)) {
		cJSON_Delete(o);
		fputs("outpostctl: out of memory\n", stderr);
		return CTL_FAILED;
	}
	*out = o;
	return CTL_OK;
}

static int print_compact(const cJSON *v)
{
	char *s = op_json_print(v, OP_JSON_COMPACT);
	if (s == NULL) {
		fputs("outpostctl: out of memory\n", stderr);
		return CTL_FAILED;
	}
	puts(s);
	op_free(s);
	return CTL_OK;
}

int op_ctl_invoke(int argc, char **argv)
{
	struct invoke a = {.c = {.cmd = "invoke"}};
	struct op_ctl_signer s = {0};
	struct op_ctl_mqtt *m = NULL;
	cJSON *args = NULL, *answer = NULL;
	int pr = invoke_args(argc, argv, &a);
	if (pr)
		return usage(invoke_usage, invoke_exits, pr);
	int ret = op_ctl__conn_finish(&a.c);
	if (ret == CTL_OK)
		ret = invoke_members(&a, &args);
	if (ret == CTL_OK)
		ret = op_ctl__signer_read(a.sign_key, &s);
	if (ret == CTL_OK)
		ret = op_ctl__conn_open(&a.c, OP_CTL_ANSWER_MAX, &m);
	if (ret != CTL_OK)
		goto out;
	long long wait = op_ctl__timeout_ms(&a.c);
	if (a.ms + ANSWER_SLACK_MS > wait)
		wait = a.ms + ANSWER_SLACK_MS;
	ret = op_ctl__command(m, &a.c, &s, a.agent, "invoke", args, wait, &answer);
	/* What follows needs no broker. */
	op_ctl_mqtt_close(m);
	m = NULL;
	if (ret != CTL_OK)
		goto out;
	bool ok = cJSON_IsTrue(op_ctl__member(answer, "ok"));
	if (a.json)
		ret = print_compact(answer);
	if (!ok) {
		(void)op_ctl__command_failed("invoke", a.agent, answer);
		ret = CTL_FAILED;
	} else if (!a.json) {
		const cJSON *out = op_ctl__member(op_ctl__member(answer, "result"), "output");
		cJSON *null = out ? NULL : cJSON_CreateNull();
		ret = op_ctl__print_json(out ? out : null);
		cJSON_Delete(null);
	}
out:
	op_ctl__signer_wipe(&s);
	op_ctl_mqtt_close(m);
	cJSON_Delete(args);
	cJSON_Delete(answer);
	return ret;
}

/* ---- logs ---- */

static const char logs_usage[] =
    "usage: outpostctl logs --agent ID --follow [--level L] [--for SECONDS] [--json]\n"
    "                       [--broker URL] [--ca FILE] [--cert FILE] [--key FILE]\n"
    "                       [--prefix P] [--timeout SECONDS]\n"
    "Follows the agent's log records on its out/logs topic and prints each one as\n"
    "AT LEVEL MODULE: MESSAGE, once (a record sent again after a reconnect is\n"
    "skipped), until interrupted (Ctrl-C) or for SECONDS. The agent sends what its\n"
    "[control] log_level lets through, and every command's audit line; it sends each\n"
    "record once to whoever is subscribed then, so only records sent after this\n"
    "command subscribed are shown: logs are a live stream, nothing is stored to read.\n"
    "  --level L        only records at L or more severe: error, warn, info, debug\n"
    "  --for SECONDS    stop after that long (exit 0)\n"
    "  --json           one record per line, as JSON\n"
    "  --timeout S      seconds for connecting and subscribing (default 30)\n";
static const char logs_exits[] =
    "Exit status: 0 interrupted or --for passed; 1 the broker is unreachable or the\n"
    "connection was lost; 2 bad usage.\n";

struct logs {
	struct op_ctl_conn c;
	const char *agent, *level, *for_s;
	bool follow, json, filter;
	enum op_log_level max;
	double secs;
	uint64_t top;          /* the highest seq printed */
	double dropped;        /* the outbox's drop count first seen, or -1 */
	unsigned long skipped; /* records without a seq */
};

static int logs_args(int argc, char **argv, struct logs *l)
{
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i];
		int r = op_ctl__conn_opt(&l->c, argc, argv, &i);
		if (r == 0)
			r = valued("logs", "--agent", argc, argv, &i, &l->agent);
		if (r == 0)
			r = valued("logs", "--level", argc, argv, &i, &l->level);
		if (r == 0)
			r = valued("logs", "--for", argc, argv, &i, &l->for_s);
		if (r < 0)
			return -1;
		if (r > 0)
			continue;
		if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0)
			return 1;
		if (strcmp(s, "--follow") == 0 || strcmp(s, "-f") == 0) {
			l->follow = true;
		} else if (strcmp(s, "--json") == 0) {
			l->json = true;
		} else {
			fprintf(stderr, "outpostctl logs: unexpected argument \"%s\"\n", s);
			return -1;
		}
	}
	if (!agent_ok("logs", l->agent))
		return -1;
	if (!l->follow) {
		fputs("outpostctl logs: an agent's logs are a live stream, not kept for reading: "
		      "give --follow to print the records it sends from now on\n",
		      stderr);
		return -1;
	}
	if (l->level && !op_log_level_from_name(l->level, &l->max)) {
		fprintf(stderr,
		        "outpostctl logs: --level \"%s\": expected error, warn, info or debug\n",
		        l->level);
		return -1;
	}
	l->filter = l->level != NULL;
	if (l->for_s) {
		char *end = (char *)l->for_s;
		errno = 0;
		l->secs = strtod(l->for_s, &end);
		if (*end == 's')
			end++;
		if (errno || end == l->for_s || *end != '\0' || !isfinite(l->secs) ||
		    l->secs <= 0 || l->secs > FOLLOW_MAX_S) {
			fprintf(stderr,
			        "outpostctl logs: --for \"%s\": expected seconds, above 0, at most "
			        "%.0f\n",
			        l->for_s, FOLLOW_MAX_S);
			return -1;
		}
	}
	return 0;
}

/* Prints one record when it is new and passes the level. */
static void log_record(struct logs *l, const cJSON *rec)
{
	uint64_t seq = 0;
	if (!cJSON_IsObject(rec) || !op_ctl__seq_of(op_ctl__member(rec, "seq"), &seq) || seq == 0) {
		l->skipped++;
		return;
	}
	if (seq <= l->top)
		return; /* sent again after a reconnect */
	l->top = seq;
	const char *level = op_ctl__str_of(rec, "level");
	enum op_log_level lvl;
	if (l->filter && (level == NULL || !op_log_level_from_name(level, &lvl) || lvl > l->max))
		return;
	if (l->json) {
		(void)print_compact(rec);
	} else {
		const char *at = op_ctl__str_of(rec, "at"), *mod = op_ctl__str_of(rec, "module");
		const char *msg = op_ctl__str_of(rec, "message");
		op_ctl__emit(stdout, "%s %s %s: %s\n", at ? at : "-", level ? level : "-",
		             mod ? mod : "-", msg ? msg : "");
	}
}

/* Takes one out/logs message: {"agent", "stream", "dropped", "records"}. */
static void log_message(struct logs *l, const struct op_ctl_msg *msg)
{
	char why[160];
	cJSON *v = NULL;
	const cJSON *recs = NULL, *rec;
	if (msg->too_large ||
	    op_json_parse(msg->payload, msg->len, &v, why, sizeof(why)) != OP_OK ||
	    !cJSON_IsArray(recs = op_ctl__member(v, "records"))) {
		op_ctl__emit(stderr,
		             "outpostctl logs: %.300s: not a batch of records (%zu bytes); "
		             "ignored\n",
		             msg->topic, msg->len);
		cJSON_Delete(v);
		return;
	}
	cJSON_ArrayForEach (rec, recs) {
		log_record(l, rec);
	}
	const cJSON *d = op_ctl__member(v, "dropped");
	if (cJSON_IsNumber(d) && l->dropped < 0)
		l->dropped = d->valuedouble;
	else if (cJSON_IsNumber(d) && d->valuedouble > l->dropped) {
		fprintf(stderr,
		        "outpostctl logs: agent %s: its outbox dropped %.0f log records meanwhile "
		        "(its bounds)\n",
		        l->agent, d->valuedouble - l->dropped);
		l->dropped = d->valuedouble;
	}
	cJSON_Delete(v);
	fflush(stdout);
}

/* The signals the watcher takes: SIGINT and SIGTERM end the command,
 * SIGUSR1 is how the main thread wakes the watcher to end it. Blocked in
 * every thread. */
static void watched(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGUSR1);
}

/* The thread that takes the signals. */
struct sigwatch {
	pthread_t t;
	pthread_mutex_t mu;
	struct op_ctl_mqtt *m;
	bool done; /* under mu: the main thread is finished with m */
	int sig;   /* under mu: SIGINT or SIGTERM when one came, else 0 */
};

static void *sig_main(void *arg)
{
	struct sigwatch *w = arg;
	sigset_t set;
	watched(&set);
	for (;;) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0)
			return NULL;
		pthread_mutex_lock(&w->mu);
		bool done = w->done;
		if (!done && sig != SIGUSR1) {
			w->sig = sig;
			op_ctl_mqtt_interrupt(w->m);
		}
		pthread_mutex_unlock(&w->mu);
		/* A SIGUSR1 from elsewhere is not the main thread's. */
		if (done || sig != SIGUSR1)
			return NULL;
	}
}

/* Ends the watcher: SIGUSR1 wakes it when no signal came. */
static void sigwatch_stop(struct sigwatch *w)
{
	pthread_mutex_lock(&w->mu);
	w->done = true;
	if (w->sig == 0)
		pthread_kill(w->t, SIGUSR1);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->t, NULL);
	pthread_mutex_destroy(&w->mu);
}

/* Prints the records until the deadline (0: none), a signal or the loss
 * of the connection. */
static int follow(struct logs *l, struct op_ctl_mqtt *m, const char *topic, long long until)
{
	for (;;) {
		struct op_ctl_msg *msg = NULL;
		char why[512];
		long long deadline = until ? until : op_mono_ms() + 3600000LL;
		op_err rc = op_ctl_mqtt_next(m, deadline, &msg, why, sizeof(why));
		if (rc == OP_ECANCELED || (rc == OP_ETIMEOUT && until))
			return CTL_OK;
		if (rc == OP_ETIMEOUT || rc == OP_ELIMIT) {
			if (rc == OP_ELIMIT)
				op_ctl__emit(stderr, "outpostctl logs: %s\n", why);
			continue;
		}
		if (rc) {
			op_ctl__emit(stderr, "outpostctl logs: agent %s: %s\n", l->agent, why);
			return CTL_FAILED;
		}
		if (strcmp(msg->topic, topic) == 0)
			log_message(l, msg);
		op_ctl_msg_free(msg);
	}
}

int op_ctl_logs(int argc, char **argv)
{
	struct logs l = {.c = {.cmd = "logs"}, .dropped = -1};
	int pr = logs_args(argc, argv, &l);
	if (pr)
		return usage(logs_usage, logs_exits, pr);
	int ret = op_ctl__conn_finish(&l.c);
	if (ret)
		return ret;
	/* Blocked before paho starts its threads, which inherit the mask. */
	sigset_t set, old;
	watched(&set);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	struct op_ctl_mqtt *m = NULL;
	struct sigwatch w = {.done = false};
	bool watching = false;
	struct op_buf topic;
	op_buf_init(&topic, 4096);
	if ((ret = op_ctl__conn_open(&l.c, LOGS_MSG_MAX, &m)) != CTL_OK)
		goto out;
	w.m = m;
	if (pthread_mutex_init(&w.mu, NULL) != 0) {
		fputs("outpostctl logs: out of memory\n", stderr);
		ret = CTL_FAILED;
		goto out;
	}
	if (pthread_create(&w.t, NULL, sig_main, &w) != 0) {
		pthread_mutex_destroy(&w.mu);
		fputs("outpostctl logs: cannot start a thread for the signals\n", stderr);
		ret = CTL_FAILED;
		goto out;
	}
	watching = true;
	char why[768] = "out of memory";
	const char *filter = NULL;
	long long deadline = op_mono_ms() + op_ctl__timeout_ms(&l.c);
	op_err rc = op_buf_addf(&topic, "%s%s/out/logs", op_ctl_mqtt_root(m), l.agent);
	if (rc == OP_OK) {
		filter = op_buf_str(&topic);
		rc = op_ctl_mqtt_subscribe(m, &filter, 1, deadline, why, sizeof(why));
	}
	if (rc) {
		op_ctl__emit(stderr, "outpostctl logs: %s\n", why);
		ret = CTL_FAILED;
		goto out;
	}
	op_ctl__emit(stderr, "outpostctl logs: following %s (records sent from now on)\n", filter);
	long long until = l.for_s ? op_mono_ms() + (long long)(l.secs * 1000) : 0;
	ret = follow(&l, m, filter, until);
	if (l.skipped)
		fprintf(stderr, "outpostctl logs: %lu records without a seq were skipped\n",
		        l.skipped);
out:
	if (watching)
		sigwatch_stop(&w);
	op_ctl_mqtt_close(m);
	op_buf_fini(&topic);
	fflush(stdout);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}
