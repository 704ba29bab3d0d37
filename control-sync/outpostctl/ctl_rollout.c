/*
 * Rolling desired state out to agents (see ctl_rollout.h): the next seq,
 * the signed document published retained, the wait for the agents'
 * reports and the printed outcome, shared by deploy and rollback. Moved
 * here from cmd_deploy.c; a rollback's target carries the seq whose
 * pipelines it brings back, which only changes how its line reads.
 */
#include "control-sync/outpostctl/ctl_rollout.h"
#include "agent/core/clock.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "control-sync/envelope.h"
#include "control-sync/outpostctl/ctl.h"

static const char *const result_names[] = {"pending", "published", "applied",
                                           "refused", "timeout",   "failed"};

void op_ctl__rollout_init(struct op_ctl_rollout *r, const struct op_ctl_conn *c,
                          const struct op_ctl_signer *s, bool json)
{
	*r = (struct op_ctl_rollout){.c = c, .s = s, .json = json};
	struct tm tm;
	time_t now = time(NULL);
	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(r->issued, sizeof(r->issued), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(r->issued, sizeof(r->issued), "1970-01-01T00:00:00Z");
}

int op_ctl__set_fits(const char *cmd, const cJSON *set)
{
	char *text = op_json_print(set, OP_JSON_COMPACT);
	size_t len = text ? strlen(text) : 0;
	op_free(text);
	if (text == NULL) {
		fputs("outpostctl: out of memory\n", stderr);
		return CTL_FAILED;
	}
	/* The envelope (base64 of the document, and ~200 bytes) must fit. */
	if (len + 1024 > (OP_ENV_MAX - 1024) / 4 * 3) {
		fprintf(stderr,
		        "outpostctl %s: the pipelines are %zu bytes of JSON; a signed "
		        "document holds at most about %u\n",
		        cmd, len, (OP_ENV_MAX - 1024) / 4 * 3 - 1024);
		return CTL_INVALID;
	}
	return CTL_OK;
}

bool op_ctl__next_seq(const struct op_ctl_fleet *f, struct op_ctl_target *t)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(f->agents, t->id);
	const cJSON *rep = op_ctl__member(a, "reported");
	uint64_t top = 0, v = 0;
	if (op_ctl__seq_of(op_ctl__member(a, "desiredSeq"), &v) && v > top)
		top = v;
	if (op_ctl__seq_of(op_ctl__member(rep, "seq"), &v) && v > top)
		top = v;
	/* A seq the agent refused is not used again, so that a refusal
	 * reported for it means this document. */
	if (op_ctl__seq_of(op_ctl__member(op_ctl__member(rep, "lastError"), "seq"), &v) && v > top)
		top = v;
	t->seq = top + 1;
	return t->seq <= OP_CTL_SEQ_MAX;
}

int op_ctl__publish_desired(const struct op_ctl_rollout *r, struct op_ctl_mqtt *m,
                            struct op_ctl_target *t)
{
	int ret = CTL_OK;
	char why[768] = "", *env = NULL;
	struct op_buf b, topic;
	op_buf_init(&b, OP_ENV_MAX);
	op_buf_init(&topic, 4096);
	cJSON *doc = cJSON_CreateObject();
	t->t0 = op_mono_ms();
	if (doc == NULL || !cJSON_AddNumberToObject(doc, "seq", (double)t->seq) ||
	    !cJSON_AddStringToObject(doc, "agent", t->id) ||
	    !cJSON_AddStringToObject(doc, "issued", r->issued) ||
	    !cJSON_AddItemReferenceToObject(doc, "pipelines", (cJSON *)t->set) ||
	    (t->accounts &&
	     !cJSON_AddItemReferenceToObject(doc, "accounts", (cJSON *)t->accounts)) ||
	    op_json_append(&b, doc, OP_JSON_COMPACT) != OP_OK ||
	    op_buf_addf(&topic, "%s%s/desired", op_ctl_mqtt_root(m), t->id) != OP_OK) {
		ret = CTL_FAILED;
		snprintf(why, sizeof(why), "out of memory");
	} else if (op_env_sign(r->s->seed, r->s->key.pub, r->s->key.kid, b.data, b.len, &env, why,
	                       sizeof(why)) == OP_OK) {
		op_env_digest(env, strlen(env), t->env_digest);
		long long deadline = op_mono_ms() + op_ctl__timeout_ms(r->c);
		if (op_ctl_mqtt_publish(m, op_buf_str(&topic), env, strlen(env), true, deadline,
		                        why, sizeof(why)) == OP_OK)
			why[0] = '\0';
	}
	t->t1 = op_mono_ms();
	if (why[0]) {
		t->result = OP_CTL_R_FAILED;
		snprintf(t->code, sizeof(t->code), "PUBLISH");
		snprintf(t->message, sizeof(t->message), "%s", why);
	} else {
		t->result = OP_CTL_R_PUBLISHED;
		t->deadline = t->t1 + op_ctl__timeout_ms(r->c);
	}
	cJSON_Delete(doc);
	op_free(env);
	op_buf_fini(&b);
	op_buf_fini(&topic);
	return ret;
}

/* Judges t by its agent's entry a after a change. */
static void judge(struct op_ctl_target *t, const cJSON *a)
{
	const cJSON *rep = op_ctl__member(a, "reported");
	const cJSON *le = op_ctl__member(rep, "lastError");
	uint64_t v = 0;
	if (op_ctl__seq_of(op_ctl__member(rep, "seq"), &v) && v >= t->seq) {
		t->result = OP_CTL_R_APPLIED;
	} else if ((op_ctl__seq_of(op_ctl__member(le, "seq"), &v) && v == t->seq) ||
	           (t->env_digest[0] && op_ctl__str_of(le, "envelope") &&
	            strcmp(op_ctl__str_of(le, "envelope"), t->env_digest) == 0)) {
		/* By seq, or, for an envelope the agent could not trust enough to
		 * read its seq (a key it does not know, a bad signature), by its
		 * digest. */
		t->result = OP_CTL_R_REFUSED;
		const char *code = op_ctl__str_of(le, "code"), *msg = op_ctl__str_of(le, "message");
		snprintf(t->code, sizeof(t->code), "%s", code ? code : "?");
		snprintf(t->message, sizeof(t->message), "%s", msg ? msg : "(no message)");
	} else {
		return;
	}
	t->t1 = op_mono_ms();
}

void op_ctl__wait_reports(const struct op_ctl_rollout *r, struct op_ctl_mqtt *m,
                          struct op_ctl_fleet *f, struct op_ctl_target *t, size_t n)
{
	for (;;) {
		long long now = op_mono_ms(), next = 0;
		size_t pending = 0;
		for (size_t i = 0; i < n; i++) {
			if (t[i].result != OP_CTL_R_PUBLISHED)
				continue;
			if (now >= t[i].deadline) {
				t[i].result = OP_CTL_R_TIMEOUT;
				t[i].t1 = now;
				snprintf(t[i].code, sizeof(t[i].code), "TIMEOUT");
				snprintf(t[i].message, sizeof(t[i].message),
				         "no report from agent %s within %g s; it may be offline: "
				         "outpostctl status --agent %s",
				         t[i].id, r->c->timeout_s, t[i].id);
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
				if (t[i].result != OP_CTL_R_PUBLISHED)
					continue;
				t[i].result = OP_CTL_R_TIMEOUT;
				t[i].t1 = op_mono_ms();
				snprintf(t[i].code, sizeof(t[i].code), "NOCONN");
				snprintf(t[i].message, sizeof(t[i].message),
				         "%s; agent %s's report was not seen", why, t[i].id);
			}
			return;
		}
		if (rc && rc != OP_ETIMEOUT)
			op_ctl__emit(stderr, "outpostctl %s: %s\n", r->c->cmd, why);
		const cJSON *a = msg ? op_ctl__fleet_take(f, msg) : NULL;
		for (size_t i = 0; a && i < n; i++) {
			if (t[i].result == OP_CTL_R_PUBLISHED && strcmp(t[i].id, a->string) == 0)
				judge(&t[i], a);
		}
		op_ctl_msg_free(msg);
	}
}

/* One target's line: "seq 8" for a deploy, "rolled back to seq 5 as seq
 * 9," (done) or "rollback to seq 5 as seq 9" (failed) for a rollback. */
static void what_text(const struct op_ctl_target *x, bool done, char *out, size_t len)
{
	unsigned long long seq = (unsigned long long)x->seq, from = (unsigned long long)x->from;
	if (x->from == 0)
		snprintf(out, len, "seq %llu", seq);
	else if (done)
		snprintf(out, len, "rolled back to seq %llu as seq %llu,", from, seq);
	else
		snprintf(out, len, "rollback to seq %llu as seq %llu", from, seq);
}

/* One target's JSON object into arr. False when out of memory. */
static bool add_json(cJSON *arr, const struct op_ctl_target *x, double secs)
{
	cJSON *o = cJSON_CreateObject(), *e = NULL;
	bool ok = o && cJSON_AddStringToObject(o, "agent", x->id) &&
	          cJSON_AddNumberToObject(o, "seq", (double)x->seq) &&
	          (x->from == 0 || cJSON_AddNumberToObject(o, "from", (double)x->from)) &&
	          cJSON_AddStringToObject(o, "result", result_names[x->result]);
	if (ok && x->code[0])
		ok = (e = cJSON_AddObjectToObject(o, "error")) &&
		     cJSON_AddStringToObject(e, "code", x->code) &&
		     cJSON_AddStringToObject(e, "message", x->message);
	else if (ok)
		ok = cJSON_AddNullToObject(o, "error") != NULL;
	ok = ok && cJSON_AddNumberToObject(o, "seconds", round(secs * 1000) / 1000) &&
	     cJSON_AddItemToArray(arr, o);
	if (!ok)
		cJSON_Delete(o);
	return ok;
}

int op_ctl__print_results(const struct op_ctl_rollout *r, const struct op_ctl_target *t, size_t n)
{
	int ret = CTL_OK;
	const char *cmd = r->c->cmd;
	cJSON *arr = r->json ? cJSON_CreateArray() : NULL;
	if (r->json && arr == NULL)
		ret = CTL_FAILED;
	for (size_t i = 0; i < n; i++) {
		const struct op_ctl_target *x = &t[i];
		double secs = (double)(x->t1 - x->t0) / 1000;
		size_t np = (size_t)cJSON_GetArraySize(x->set);
		const char *s = np == 1 ? "" : "s";
		bool done = x->result == OP_CTL_R_APPLIED || x->result == OP_CTL_R_PUBLISHED;
		char what[96];
		what_text(x, done, what, sizeof(what));
		if (!done)
			ret = CTL_FAILED;
		if (x->result == OP_CTL_R_REFUSED)
			op_ctl__emit(stderr, "outpostctl %s: agent %s: %s refused: %s: %s\n", cmd,
			             x->id, what, x->code, x->message);
		else if (x->result == OP_CTL_R_TIMEOUT)
			op_ctl__emit(stderr, "outpostctl %s: agent %s: %s published, but %s\n", cmd,
			             x->id, what, x->message);
		else if (!done)
			op_ctl__emit(stderr, "outpostctl %s: agent %s: %s not published: %s\n", cmd,
			             x->id, what, x->message);
		else if (!r->json && x->result == OP_CTL_R_APPLIED)
			printf("agent %s: %s applied (%zu pipeline%s) in %.2f s\n", x->id, what, np,
			       s, secs);
		else if (!r->json)
			printf("agent %s: %s published (%zu pipeline%s)\n", x->id, what, np, s);
		if (arr && !add_json(arr, x, secs)) {
			cJSON_Delete(arr);
			arr = NULL;
			fputs("outpostctl: out of memory\n", stderr);
			ret = CTL_FAILED;
		}
	}
	if (arr && op_ctl__print_json(arr) != CTL_OK)
		ret = CTL_FAILED;
	cJSON_Delete(arr);
	return ret;
}
