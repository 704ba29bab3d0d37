/*
 * cmd/<id> requests (docs/protocol.md, "Commands"): a signed envelope whose
 * document names this agent, the command's id, an expiry and an op. paho's
 * thread only queues them; the link thread checks them (signature, agent,
 * id, expiry, replay, room) and starts a thread per command, which runs it
 * through the daemon's hook and publishes the answer to the request's MQTT 5
 * response topic with its correlation data. Every command and its outcome
 * is logged to the "audit" module, which goes to the outbox whatever the
 * log level.
 */
#define OP_LOG_MODULE "control"
#include <MQTTAsync.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/clock.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "control-sync/link_int.h"

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void cmd_free(struct cmd *c)
{
	if (c == NULL)
		return;
	op_free(c->payload);
	op_free(c->resp_topic);
	op_free(c->corr);
	op_free(c);
}

static bool id_ok(const char *s, size_t n)
{
	if (n == 0 || n > CMD_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static void audit(const char *id, const char *op, const char *outcome)
{
	op_log_write_always(OP_LOG_INFO, "audit", "command %s (%s): %s", id, op ? op : "?",
	                    outcome);
}

/* Publishes the answer of c: {"id", "agent", "ok", "result"} or
 * {"id", "agent", "ok": false, "error": {"code", "message"}, "result"?}. */
static void answer(struct cmd *c, const char *code, const char *msg, cJSON *result);

static void answer(struct cmd *c, const char *code, const char *msg, cJSON *result)
{
	struct op_link *l = c->l;
	cJSON *o = cJSON_CreateObject();
	bool ok = o && cJSON_AddStringToObject(o, "id", c->id) &&
	          cJSON_AddStringToObject(o, "agent", l->cfg->agent.id) &&
	          cJSON_AddBoolToObject(o, "ok", code == NULL);
	if (ok && code) {
		cJSON *e = cJSON_AddObjectToObject(o, "error");
		ok = e && cJSON_AddStringToObject(e, "code", code) &&
		     cJSON_AddStringToObject(e, "message", msg ? msg : "");
	}
	if (ok && result) {
		ok = cJSON_AddItemToObject(o, "result", result);
		if (ok)
			result = NULL;
	}
	char *text = ok ? op_json_print(o, OP_JSON_COMPACT) : NULL;
	cJSON_Delete(result);
	cJSON_Delete(o);
	if (text == NULL) {
		OP_LOGE("out of memory for the answer to command %s", c->id);
		return;
	}
	/* What the broker takes: a packet past its limit makes it drop the
	 * agent, and the session would send it again at every connect. */
	pthread_mutex_lock(&l->mu);
	size_t cap = l->max_packet ? l->max_packet : ANSWER_MAX;
	pthread_mutex_unlock(&l->mu);
	cap = cap > (64u << 10) ? cap - (64u << 10) : cap / 2;
	if (cap > ANSWER_MAX)
		cap = ANSWER_MAX;
	if (strlen(text) > cap && code == NULL) {
		size_t was = strlen(text);
		op_free(text);
		char why[160];
		snprintf(why, sizeof(why),
		         "the answer is %zu bytes, more than the %zu the link sends", was, cap);
		answer(c, "RESULT_TOO_LARGE", why, NULL);
		return;
	}
	MQTTAsync_message m = MQTTAsync_message_initializer;
	m.payload = text;
	m.payloadlen = (int)strlen(text);
	m.qos = 1;
	if (c->corr) {
		MQTTProperty p = {.identifier = MQTTPROPERTY_CODE_CORRELATION_DATA};
		p.value.data.data = c->corr;
		p.value.data.len = (int)c->corr_len;
		if (MQTTProperties_add(&m.properties, &p) != 0)
			OP_LOGW("command %s: its correlation data cannot be echoed", c->id);
	}
	/* paho sends a message's properties only with response options. */
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	int prc = MQTTAsync_sendMessage(l->cl, c->resp_topic, &m, &ro);
	MQTTProperties_free(&m.properties);
	if (prc != MQTTASYNC_SUCCESS) {
		OP_LOGW("command %s: its answer cannot be sent to %s: %s", c->id, c->resp_topic,
		        MQTTAsync_strerror(prc));
		op_link__send_failed(l, prc);
	}
	op_free(text);
}

void op_link__cmd_arrived(struct op_link *l, const char *topic, MQTTAsync_message *m)
{
	/* The topic's last level is the command's id. */
	const char *slash = strrchr(topic, '/');
	const char *id = slash ? slash + 1 : topic;
	size_t idlen = strlen(id), n = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
	if (!id_ok(id, idlen)) {
		OP_LOGW("a command on %.200s is ignored: its id is not 1 to 64 letters, digits, "
		        "'.', '_' or '-'",
		        topic);
		return;
	}
	bool too_large = n > CMD_IN_MAX;
	struct cmd *c = op_calloc(1, sizeof(*c));
	if (c == NULL)
		goto nomem;
	c->l = l;
	memcpy(c->id, id, idlen + 1);
	c->payload = op_malloc(too_large ? 1 : n + 1);
	if (c->payload == NULL)
		goto nomem;
	if (n && !too_large)
		memcpy(c->payload, m->payload, n);
	c->payload[too_large ? 0 : n] = '\0';
	c->len = too_large ? 0 : n;
	/* The answer goes to the response topic the request names, when it
	 * is one of this agent's cmd-result/ topics, else cmd-result/<id>. */
	MQTTProperty *rt =
	    MQTTProperties_getProperty(&m->properties, MQTTPROPERTY_CODE_RESPONSE_TOPIC);
	size_t pre = strlen(l->t_cmd_result);
	if (rt && (size_t)rt->value.data.len > pre && (size_t)rt->value.data.len < TOPIC_MAX &&
	    memcmp(rt->value.data.data, l->t_cmd_result, pre) == 0 &&
	    memchr(rt->value.data.data, '\0', (size_t)rt->value.data.len) == NULL &&
	    memchr(rt->value.data.data + pre, '+', (size_t)rt->value.data.len - pre) == NULL &&
	    memchr(rt->value.data.data + pre, '#', (size_t)rt->value.data.len - pre) == NULL)
		c->resp_topic = op_strndup(rt->value.data.data, (size_t)rt->value.data.len);
	else {
		size_t tn = pre + idlen + 1;
		c->resp_topic = op_malloc(tn);
		if (c->resp_topic)
			snprintf(c->resp_topic, tn, "%s%s", l->t_cmd_result, id);
	}
	if (c->resp_topic == NULL)
		goto nomem;
	MQTTProperty *cd =
	    MQTTProperties_getProperty(&m->properties, MQTTPROPERTY_CODE_CORRELATION_DATA);
	if (cd && cd->value.data.len > 0) {
		c->corr = op_malloc((size_t)cd->value.data.len);
		if (c->corr == NULL)
			goto nomem;
		memcpy(c->corr, cd->value.data.data, (size_t)cd->value.data.len);
		c->corr_len = (size_t)cd->value.data.len;
	}
	pthread_mutex_lock(&l->mu);
	bool room = l->cmd_queued < CMD_QUEUED;
	if (room && !too_large) {
		if (l->cmd_tail)
			l->cmd_tail->next = c;
		else
			l->cmd_head = c;
		l->cmd_tail = c;
		l->cmd_queued++;
		pthread_cond_broadcast(&l->cv);
	}
	pthread_mutex_unlock(&l->mu);
	if (too_large || !room) {
		char why[128];
		snprintf(why, sizeof(why),
		         too_large ? "the command is larger than %u bytes"
		                   : "%u commands are waiting; try again later",
		         too_large ? CMD_IN_MAX : CMD_QUEUED);
		char outcome[200];
		snprintf(outcome, sizeof(outcome), "refused: %s: %s",
		         too_large ? "ENVELOPE" : "BUSY", why);
		audit(c->id, NULL, outcome);
		answer(c, too_large ? "ENVELOPE" : "BUSY", why, NULL);
		cmd_free(c);
	}
	return;
nomem:
	OP_LOGE("out of memory for command %.64s; it is dropped", id);
	cmd_free(c);
}

/* What a command thread runs: the op, the answer, the audit line. */
struct job {
	struct cmd *c;
	cJSON *doc;
	char op[64];
};

static void *cmd_main(void *arg)
{
	struct job *j = arg;
	struct cmd *c = j->c;
	struct op_link *l = c->l;
	(void)pthread_setname_np(pthread_self(), "op-command");
	cJSON *result = NULL;
	const char *code = "UNSUPPORTED";
	char msg[1024] = "";
	op_err rc = OP_EUNSUPPORTED;
	if (l->h.command)
		rc = l->h.command(l->h.ud, c->id, j->op, j->doc, &l->cmd_stop, &result, &code, msg,
		                  sizeof(msg));
	else
		snprintf(msg, sizeof(msg), "this agent runs no commands");
	char outcome[1200];
	if (rc == OP_OK)
		snprintf(outcome, sizeof(outcome), "ok");
	else
		snprintf(outcome, sizeof(outcome), "failed: %s: %s", code, msg);
	audit(c->id, j->op, outcome);
	answer(c, rc == OP_OK ? NULL : code, msg, result);
	cJSON_Delete(j->doc);
	op_free(j);
	cmd_free(c);
	pthread_mutex_lock(&l->mu);
	l->cmd_running--;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

#define FORGET_MAX 16

/* Under l->mu: true when id was accepted before and has not expired;
 * forgets what expired on the way, up to FORGET_MAX ids into gone (*ngone)
 * for the caller to drop from the store after unlocking. */
static bool seen_locked(struct op_link *l, const char *id, int64_t now,
                        char gone[FORGET_MAX][CMD_ID_MAX + 1], size_t *ngone)
{
	bool seen = false;
	for (size_t i = 0; i < l->nseen;) {
		if (l->seen[i].expires_ms <= now && *ngone < FORGET_MAX) {
			memcpy(gone[(*ngone)++], l->seen[i].id, sizeof(l->seen[i].id));
			l->seen[i] = l->seen[--l->nseen];
			continue;
		}
		if (strcmp(l->seen[i].id, id) == 0)
			seen = true;
		i++;
	}
	return seen;
}

#define SEEN_PREFIX "control.cmd."

/* Keeps id (until expires_ms) in the store: a restart does not forget it. */
static op_err seen_keep(struct op_link *l, const char *id, int64_t expires_ms)
{
	char key[sizeof(SEEN_PREFIX) + CMD_ID_MAX], val[32];
	snprintf(key, sizeof(key), SEEN_PREFIX "%s", id);
	int n = snprintf(val, sizeof(val), "%lld", (long long)expires_ms);
	return op_store_put(l->store, OP_STORE_STATE, key, val, (size_t)n);
}

void op_link__cmd_load_seen(struct op_link *l)
{
	char **keys = NULL;
	size_t n = 0;
	if (op_store_list(l->store, OP_STORE_STATE, &keys, &n) != OP_OK)
		return;
	int64_t now = wall_ms();
	size_t pre = strlen(SEEN_PREFIX);
	for (size_t i = 0; i < n; i++) {
		if (strncmp(keys[i], SEEN_PREFIX, pre) != 0)
			continue;
		char *val = NULL;
		size_t len = 0;
		long long exp = 0;
		if (op_store_get(l->store, OP_STORE_STATE, keys[i], &val, &len) == OP_OK)
			exp = strtoll(val, NULL, 10);
		op_free(val);
		const char *id = keys[i] + pre;
		if (exp > now && l->nseen < CMD_RECENT && strlen(id) <= CMD_ID_MAX) {
			struct cmd_seen *s = &l->seen[l->nseen++];
			snprintf(s->id, sizeof(s->id), "%s", id);
			s->expires_ms = exp;
		} else if (op_store_del(l->store, OP_STORE_STATE, keys[i]) != OP_OK) {
			OP_LOGW("cannot forget the expired command %s", id);
		}
	}
	op_store_keys_free(keys, n);
}

/* Checks c and starts its thread, or answers why not. Takes c. */
static void start_one(struct op_link *l, struct cmd *c)
{
	char why[512];
	const char *code = "ENVELOPE";
	cJSON *doc = NULL;
	op_err rc =
	    op_env_verify(c->payload, c->len, l->keys, l->nkeys, &doc, &code, why, sizeof(why));
	const char *op = NULL;
	if (rc == OP_OK) {
		code = "DOCUMENT";
		const char *agent =
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "agent"));
		const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "id"));
		const cJSON *exp = cJSON_GetObjectItemCaseSensitive(doc, "expires");
		op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "op"));
		int64_t now = wall_ms();
		rc = OP_EPARSE;
		if (agent == NULL || strcmp(agent, l->cfg->agent.id) != 0)
			snprintf(why, sizeof(why), "agent: the command is for %s, this is agent %s",
			         agent ? agent : "no agent", l->cfg->agent.id);
		else if (id == NULL || strcmp(id, c->id) != 0)
			snprintf(why, sizeof(why), "id: \"%.64s\", not the topic's \"%s\"",
			         id ? id : "", c->id);
		else if (op == NULL || strlen(op) >= sizeof(((struct job *)0)->op))
			snprintf(why, sizeof(why), "op: expected the command's name");
		else if (!cJSON_IsNumber(exp))
			snprintf(why, sizeof(why), "expires: expected Unix time in milliseconds");
		else if (exp->valuedouble <= (double)now) {
			code = "EXPIRED";
			snprintf(why, sizeof(why), "the command expired %.0f ms ago",
			         (double)now - exp->valuedouble);
		} else if (exp->valuedouble > (double)(now + CMD_TTL_MAX_MS))
			snprintf(
			    why, sizeof(why),
			    "expires: more than %lld minutes ahead (the agent's clock says %lld)",
			    CMD_TTL_MAX_MS / 60000, (long long)now);
		else
			rc = OP_OK;
		char gone[FORGET_MAX][CMD_ID_MAX + 1];
		size_t ngone = 0;
		if (rc == OP_OK) {
			pthread_mutex_lock(&l->mu);
			if (seen_locked(l, c->id, now, gone, &ngone)) {
				code = "REPLAY";
				snprintf(why, sizeof(why), "command %s ran already", c->id);
				rc = OP_EREJECTED;
			} else if (l->cmd_running >= CMD_RUNNING) {
				code = "BUSY";
				snprintf(why, sizeof(why),
				         "%d commands are running; try again later", CMD_RUNNING);
				rc = OP_EBUSY;
			} else if (l->nseen == CMD_RECENT) {
				code = "BUSY";
				snprintf(why, sizeof(why),
				         "%d commands not yet expired are remembered; try later",
				         CMD_RECENT);
				rc = OP_EBUSY;
			} else {
				struct cmd_seen *s = &l->seen[l->nseen++];
				snprintf(s->id, sizeof(s->id), "%s", c->id);
				s->expires_ms = (int64_t)exp->valuedouble;
				l->cmd_running++;
			}
			pthread_mutex_unlock(&l->mu);
		}
		for (size_t i = 0; i < ngone; i++) {
			char key[sizeof(SEEN_PREFIX) + CMD_ID_MAX];
			/* gone[i] is at most CMD_ID_MAX long; gcc cannot tell. */
			if ((size_t)snprintf(key, sizeof(key), SEEN_PREFIX "%s", gone[i]) >=
			    sizeof(key))
				continue;
			if (op_store_del(l->store, OP_STORE_STATE, key) != OP_OK)
				OP_LOGW("cannot forget the expired command %s", gone[i]);
		}
		/* Remembered across restarts too: kept before it runs. */
		if (rc == OP_OK && seen_keep(l, c->id, (int64_t)exp->valuedouble) != OP_OK) {
			pthread_mutex_lock(&l->mu);
			l->cmd_running--;
			pthread_mutex_unlock(&l->mu);
			code = "STORE_ERROR";
			snprintf(why, sizeof(why), "the store cannot remember the command's id");
			rc = OP_EIO;
		}
	}
	struct job *j = NULL;
	if (rc == OP_OK) {
		j = op_calloc(1, sizeof(*j));
		pthread_t t;
		pthread_attr_t a;
		int e = j ? pthread_attr_init(&a) : -1;
		if (e == 0) {
			j->c = c;
			j->doc = doc;
			snprintf(j->op, sizeof(j->op), "%s", op);
			pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
			e = pthread_create(&t, &a, cmd_main, j);
			pthread_attr_destroy(&a);
		}
		if (e == 0)
			return;
		op_free(j);
		pthread_mutex_lock(&l->mu);
		l->cmd_running--;
		pthread_mutex_unlock(&l->mu);
		code = "BUSY";
		snprintf(why, sizeof(why), "no thread for the command");
	}
	char outcome[700];
	snprintf(outcome, sizeof(outcome), "refused: %s: %s", code, why);
	audit(c->id, op, outcome);
	answer(c, code, why, NULL);
	cJSON_Delete(doc);
	cmd_free(c);
}

void op_link__cmd_start_queued(struct op_link *l)
{
	for (;;) {
		pthread_mutex_lock(&l->mu);
		/* The others wait their turn (a finished command wakes the link). */
		struct cmd *c = l->cmd_running < CMD_RUNNING ? l->cmd_head : NULL;
		if (c) {
			l->cmd_head = c->next;
			if (l->cmd_head == NULL)
				l->cmd_tail = NULL;
			l->cmd_queued--;
			c->next = NULL;
		}
		pthread_mutex_unlock(&l->mu);
		if (c == NULL)
			return;
		start_one(l, c);
	}
}

void op_link__cmd_fini(struct op_link *l)
{
	/* Running commands get the agent's shutdown bound to end, then are
	 * told to stop (at their next step). */
	int64_t until = op_mono_ms() + (int64_t)l->cfg->agent.shutdown_timeout_ms;
	pthread_mutex_lock(&l->mu);
	while (l->cmd_running > 0 && op_mono_ms() < until)
		op_link__wait_until(l, until);
	atomic_store(&l->cmd_stop, true);
	while (l->cmd_running > 0)
		pthread_cond_wait(&l->cv, &l->mu);
	struct cmd *c = l->cmd_head;
	l->cmd_head = l->cmd_tail = NULL;
	l->cmd_queued = 0;
	pthread_mutex_unlock(&l->mu);
	while (c) {
		struct cmd *next = c->next;
		cmd_free(c);
		c = next;
	}
}
