/*
 * One signed command and its answer (see ctl_command.h): the document is
 * built in the protocol's member order, signed with the --sign-key, and
 * sent once the answer's topic is subscribed; the answer is the first
 * message there whose correlation data is the command's id.
 */
#include "control-sync/outpostctl/ctl_command.h"
#include "agent/core/clock.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "control-sync/outpostctl/ctl.h"

/* The furthest ahead an agent accepts "expires" (docs/protocol.md). */
#define TTL_MAX_MS (10LL * 60 * 1000)
/* How long a command stays valid after the wait for its answer ends. */
#define TTL_SLACK_MS (60LL * 1000)
#define ID_BYTES     16

/* 32 random hex digits into id (33 bytes). False when the system has no
 * randomness to give. */
static bool new_id(char *id)
{
	unsigned char r[ID_BYTES];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return false;
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(id + 2 * i, 3, "%02x", r[i]);
	return true;
}

/* The document {"id", "agent", "expires", "op", args...} as compact JSON
 * in b. False when out of memory. */
static bool document(struct op_buf *b, const char *id, const char *agent, const char *op,
                     const cJSON *args, long long expires)
{
	cJSON *d = cJSON_CreateObject();
	bool ok = d && cJSON_AddStringToObject(d, "id", id) &&
	          cJSON_AddStringToObject(d, "agent", agent) &&
	          cJSON_AddNumberToObject(d, "expires", (double)expires) &&
	          cJSON_AddStringToObject(d, "op", op);
	const cJSON *a, *members = cJSON_IsObject(args) ? args : NULL;
	/* References: deleting d leaves args alone. */
	cJSON_ArrayForEach (a, members) {
		ok = ok && cJSON_AddItemReferenceToObject(d, a->string, (cJSON *)a);
	}
	ok = ok && op_json_append(b, d, OP_JSON_COMPACT) == OP_OK;
	cJSON_Delete(d);
	return ok;
}

/* Takes msg as the answer when it is one (*answer set, true); says on
 * stderr why a message on the answer's topic is not one. */
static bool take_answer(const char *cmd, const char *agent, const struct op_ctl_msg *msg,
                        cJSON **answer)
{
	char why[160];
	cJSON *v = NULL;
	if (msg->too_large) {
		op_ctl__emit(stderr,
		             "outpostctl %s: agent %s: the answer is %zu bytes, more than %u; "
		             "ignored\n",
		             cmd, agent, msg->len, OP_CTL_ANSWER_MAX);
		return false;
	}
	if (op_json_parse(msg->payload, msg->len, &v, why, sizeof(why)) != OP_OK ||
	    !cJSON_IsBool(op_ctl__member(v, "ok"))) {
		cJSON_Delete(v);
		op_ctl__emit(stderr,
		             "outpostctl %s: agent %s: %.300s: not an answer (a JSON object with "
		             "a boolean \"ok\", %zu bytes); ignored\n",
		             cmd, agent, msg->topic, msg->len);
		return false;
	}
	*answer = v;
	return true;
}

int op_ctl__command(struct op_ctl_mqtt *m, const struct op_ctl_conn *c,
                    const struct op_ctl_signer *s, const char *agent, const char *op,
                    const cJSON *args, long long wait_ms, cJSON **answer)
{
	*answer = NULL;
	int ret = CTL_FAILED;
	char id[2 * ID_BYTES + 1], why[768] = "out of memory", *env = NULL;
	struct op_buf doc, rtopic, ctopic;
	op_buf_init(&doc, OP_ENV_MAX);
	op_buf_init(&rtopic, 4096);
	op_buf_init(&ctopic, 4096);
	if (!new_id(id)) {
		snprintf(why, sizeof(why), "no command id: the system's random source failed");
		goto out;
	}
	long long ttl = wait_ms + TTL_SLACK_MS < TTL_MAX_MS ? wait_ms + TTL_SLACK_MS : TTL_MAX_MS;
	const char *root = op_ctl_mqtt_root(m);
	if (!document(&doc, id, agent, op, args, op_ctl__wall_ms() + ttl) ||
	    op_buf_addf(&rtopic, "%s%s/cmd-result/%s", root, agent, id) != OP_OK ||
	    op_buf_addf(&ctopic, "%s%s/cmd/%s", root, agent, id) != OP_OK)
		goto out;
	op_err rc =
	    op_env_sign(s->seed, s->key.pub, s->key.kid, doc.data, doc.len, &env, why, sizeof(why));
	if (rc) {
		ret = rc == OP_ELIMIT ? CTL_INVALID : CTL_FAILED;
		goto out;
	}
	const char *filter = op_buf_str(&rtopic);
	long long deadline = op_mono_ms() + op_ctl__timeout_ms(c);
	if (op_ctl_mqtt_subscribe(m, &filter, 1, deadline, why, sizeof(why)) != OP_OK)
		goto out;
	struct op_ctl_mqtt_req req = {.response_topic = filter, .corr = id, .corr_len = strlen(id)};
	deadline = op_mono_ms() + op_ctl__timeout_ms(c);
	rc = op_ctl_mqtt_request(m, op_buf_str(&ctopic), env, strlen(env), &req, deadline, why,
	                         sizeof(why));
	if (rc) {
		ret = rc == OP_EINVAL ? CTL_INVALID : CTL_FAILED;
		goto out;
	}
	deadline = op_mono_ms() + wait_ms;
	for (;;) {
		struct op_ctl_msg *msg = NULL;
		rc = op_ctl_mqtt_next(m, deadline, &msg, why, sizeof(why));
		if (rc == OP_ETIMEOUT)
			snprintf(why, sizeof(why),
			         "no answer to command %s (%s) within %.1f s; the agent may be "
			         "offline or busy: outpostctl status --agent %s",
			         id, op, (double)wait_ms / 1000, agent);
		if (rc == OP_ELIMIT) {
			op_ctl__emit(stderr, "outpostctl %s: %s\n", c->cmd, why);
			continue;
		}
		if (rc)
			goto out;
		bool mine = strcmp(msg->topic, filter) == 0 && msg->corr_len == strlen(id) &&
		            memcmp(msg->corr, id, msg->corr_len) == 0;
		bool got = mine && take_answer(c->cmd, agent, msg, answer);
		op_ctl_msg_free(msg);
		if (got)
			break;
	}
	ret = CTL_OK;
out:
	if (ret != CTL_OK)
		op_ctl__emit(stderr, "outpostctl %s: agent %s: %s\n", c->cmd, agent, why);
	op_free(env);
	op_buf_fini(&doc);
	op_buf_fini(&rtopic);
	op_buf_fini(&ctopic);
	return ret;
}

int op_ctl__command_failed(const char *cmd, const char *agent, const cJSON *answer)
{
	const cJSON *e = op_ctl__member(answer, "error");
	const cJSON *r = op_ctl__member(answer, "result");
	const char *code = op_ctl__str_of(e, "code"), *msg = op_ctl__str_of(e, "message");
	const char *rcode = op_ctl__str_of(r, "code"), *step = op_ctl__str_of(r, "step");
	const char *cls = op_ctl__str_of(r, "class");
	char detail[600] = "";
	size_t n = 0;
	/* What the execution's own error says, when the agent sent it. */
	const struct {
		const char *label, *value;
	} parts[] = {{"code", rcode}, {"step", step}, {"class", cls}};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		const char *v = parts[i].value;
		if (v == NULL || *v == '\0' || (i == 0 && code && strcmp(v, code) == 0))
			continue;
		int k = snprintf(detail + n, sizeof(detail) - n, "%s%s %.150s", n ? ", " : " (",
		                 parts[i].label, v);
		if (k > 0 && (size_t)k < sizeof(detail) - n)
			n += (size_t)k;
	}
	if (n && n + 1 < sizeof(detail)) {
		detail[n] = ')';
		detail[n + 1] = '\0';
	}
	op_ctl__emit(stderr, "outpostctl %s: agent %s: %s: %s%s\n", cmd, agent,
	             code ? code : "ERROR", msg && *msg ? msg : "(no message)", detail);
	if (code && (strcmp(code, "NOT_FOUND") == 0 || strcmp(code, "PIPELINE_NOT_FOUND") == 0))
		return CTL_NOTFOUND;
	if (code && strcmp(code, "BAD_COMMAND") == 0)
		return CTL_INVALID;
	return CTL_FAILED;
}
