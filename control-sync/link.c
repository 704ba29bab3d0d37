/*
 * The control-plane link (see link.h and docs/protocol.md).
 *
 * One thread runs the link: connect, say online, subscribe, report; then
 * wait for a desired envelope, a heartbeat, a report to send, a lost
 * connection or the stop. paho's callbacks (on paho's own thread, shared
 * with every client of the process) only record what happened under l->mu
 * and signal l->cv. Publishes are QoS 1 and not waited for: status and
 * reported are retained and sent again on every connect, so one lost with
 * a connection is replaced by the next.
 */
#define OP_LOG_MODULE "control"
#include "control-sync/link.h"
#include "agent/core/clock.h"

#include <MQTTAsync.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/file.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/daemon/mqtt_out.h"
#include "control-sync/envelope.h"
#include "control-sync/link_int.h"

/* ---- small helpers ---- */

void op_link__utc_now(char out[32])
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

void op_link__wait_until(struct op_link *l, int64_t until)
{
	int64_t left = until - op_mono_ms();
	if (left <= 0)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += left / 1000;
	ts.tv_nsec += (left % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&l->cv, &l->mu, &ts);
}

static bool agent_id_ok(const char *s)
{
	size_t n = strlen(s);
	/* _ctl is outpostctl's probe topic (docs/protocol.md). */
	if (n == 0 || n > AGENT_ID_MAX || strcmp(s, "_ctl") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* ---- paho's callbacks: record and signal ---- */

static void on_connect_ok(void *ctx, MQTTAsync_successData5 *r)
{
	struct op_link *l = ctx;
	/* What the broker takes in one packet, if it says (CONNACK). */
	int max = r ? MQTTProperties_getNumericValue(&r->properties,
	                                             MQTTPROPERTY_CODE_MAXIMUM_PACKET_SIZE)
	            : -1;
	pthread_mutex_lock(&l->mu);
	l->max_packet = max > 0 ? (uint32_t)max : 0;
	l->attempt_done = true;
	l->attempt_ok = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

static void on_connect_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct op_link *l = ctx;
	pthread_mutex_lock(&l->mu);
	const char *msg = r && r->message && *r->message ? r->message : NULL;
	if (l->tls_err[0])
		snprintf(l->conn_err, sizeof(l->conn_err), "TLS: %.400s", l->tls_err);
	else if (r && r->reasonCode >= 0x80)
		snprintf(l->conn_err, sizeof(l->conn_err), "the broker refused the connection: %s",
		         MQTTReasonCode_toString(r->reasonCode));
	else if (msg)
		snprintf(l->conn_err, sizeof(l->conn_err), "%s", msg);
	else
		snprintf(l->conn_err, sizeof(l->conn_err),
		         "no MQTT connection could be made (refused, unreachable or timed out)");
	l->tls_err[0] = '\0';
	l->attempt_done = true;
	l->attempt_ok = false;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

/* The broker said goodbye (an MQTT 5 DISCONNECT: a packet too large, a
 * session taken over, the broker shutting down). */
static void on_disconnected_by_broker(void *ctx, MQTTProperties *props, enum MQTTReasonCodes rc)
{
	(void)props;
	struct op_link *l = ctx;
	pthread_mutex_lock(&l->mu);
	l->lost = true;
	snprintf(l->conn_err, sizeof(l->conn_err), "the broker disconnected the agent: %s",
	         MQTTReasonCode_toString(rc));
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

void op_link__send_failed(struct op_link *l, int prc)
{
	if (prc != MQTTASYNC_DISCONNECTED)
		return;
	pthread_mutex_lock(&l->mu);
	if (l->st == ST_UP && !l->lost) {
		l->lost = true;
		snprintf(l->conn_err, sizeof(l->conn_err),
		         "the client is no longer connected (a send failed)");
		pthread_cond_broadcast(&l->cv);
	}
	pthread_mutex_unlock(&l->mu);
}

static void on_lost(void *ctx, char *cause)
{
	struct op_link *l = ctx;
	pthread_mutex_lock(&l->mu);
	l->lost = true;
	snprintf(l->conn_err, sizeof(l->conn_err), "connection lost: %s",
	         cause && *cause ? cause : "closed by the broker or the network");
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
	struct op_link *l = ctx;
	(void)topic_len;
	if (strcmp(topic, l->t_desired) != 0) {
		/* The only other subscription: cmd/+. */
		op_link__cmd_arrived(l, topic, m);
		MQTTAsync_freeMessage(&m);
		MQTTAsync_free(topic);
		return 1;
	}
	size_t n = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
	/* Only the latest desired envelope matters: it replaces one waiting. */
	char *copy = NULL;
	bool too_large = n > OP_ENV_MAX;
	if (!too_large) {
		copy = op_malloc(n + 1);
		if (copy) {
			if (n)
				memcpy(copy, m->payload, n);
			copy[n] = '\0';
		}
	}
	pthread_mutex_lock(&l->mu);
	if (copy || too_large) {
		op_free(l->inbox);
		l->inbox = copy;
		l->inbox_len = n;
		l->inbox_too_large = too_large;
		pthread_cond_broadcast(&l->cv);
	}
	pthread_mutex_unlock(&l->mu);
	if (copy == NULL && !too_large)
		OP_LOGE("out of memory for a desired envelope of %zu bytes; it is handled at the "
		        "next connect",
		        n);
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static int on_ssl_error(const char *str, size_t len, void *ctx)
{
	struct op_link *l = ctx;
	while (len && (str[len - 1] == '\n' || str[len - 1] == '\r'))
		len--;
	pthread_mutex_lock(&l->mu);
	if (l->tls_err[0] == '\0' && len)
		op_mqtt_tls_reason(str, len, l->tls_err, sizeof(l->tls_err));
	pthread_mutex_unlock(&l->mu);
	return 0;
}

static void on_goodbye_sent(void *ctx, MQTTAsync_successData5 *r)
{
	(void)r;
	struct op_link *l = ctx;
	pthread_mutex_lock(&l->mu);
	l->goodbye_pending = 0;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

static void on_goodbye_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	(void)r;
	on_goodbye_sent(ctx, NULL);
}

static void on_disconnected(void *ctx, MQTTAsync_successData5 *r)
{
	(void)r;
	struct op_link *l = ctx;
	pthread_mutex_lock(&l->mu);
	l->disconnected = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

static void on_disconnect_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	(void)r;
	on_disconnected(ctx, NULL);
}

static void on_sub_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct op_link *l = ctx;
	OP_LOGE("cannot subscribe to the link's topics under %.*s: %s",
	        (int)(strlen(l->t_desired) - strlen("desired")), l->t_desired,
	        r && r->reasonCode >= 0x80 ? MQTTReasonCode_toString(r->reasonCode)
	        : r && r->message          ? r->message
	                                   : "failed");
}

static void on_sub_ok(void *ctx, MQTTAsync_successData5 *r)
{
	struct op_link *l = ctx;
	/* A SUBACK's reason code of 0x80 and up is a refusal (the ACL). */
	if (r && r->reasonCode >= 0x80)
		OP_LOGE("the broker refused a subscription under %.*s: %s",
		        (int)(strlen(l->t_desired) - strlen("desired")), l->t_desired,
		        MQTTReasonCode_toString(r->reasonCode));
}

/* ---- publishing ---- */

/* Publishes text, QoS 1, retained, to topic; not waited for. */
static void publish(struct op_link *l, const char *topic, const char *text,
                    MQTTAsync_responseOptions *ro)
{
	MQTTAsync_message m = MQTTAsync_message_initializer;
	m.payload = (void *)text;
	m.payloadlen = (int)strlen(text);
	m.qos = 1;
	m.retained = 1;
	int prc = MQTTAsync_sendMessage(l->cl, topic, &m, ro);
	if (prc != MQTTASYNC_SUCCESS) {
		OP_LOGW("cannot publish to %s: %s", topic, MQTTAsync_strerror(prc));
		op_link__send_failed(l, prc);
	}
}

/* A PUBACK with a refusal (MQTT 5: 0x80 and up) for the agent's own state:
 * most likely the broker's ACL keys on the certificate's name and that is
 * not this agent's id, so say so; nothing else would. */
static void own_state_refused(struct op_link *l, const char *topic, int reason)
{
	if (reason < 0x80)
		return;
	OP_LOGE_LOCAL("the broker refused the publish to %s: %s; does its ACL let this client "
	              "(its certificate) use the topics of agent %s?",
	              topic, MQTTReasonCode_toString((enum MQTTReasonCodes)reason),
	              l->cfg->agent.id);
}

/* paho calls the failure callback for a PUBACK refusal, the success one
 * with its reason code in some versions: both are looked at. */
static void on_status_acked(void *ctx, MQTTAsync_successData5 *r)
{
	struct op_link *l = ctx;
	own_state_refused(l, l->t_status, r ? r->reasonCode : 0);
}

static void on_status_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct op_link *l = ctx;
	own_state_refused(l, l->t_status, r ? r->reasonCode : 0);
}

static void on_reported_acked(void *ctx, MQTTAsync_successData5 *r)
{
	struct op_link *l = ctx;
	own_state_refused(l, l->t_reported, r ? r->reasonCode : 0);
}

static void on_reported_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct op_link *l = ctx;
	own_state_refused(l, l->t_reported, r ? r->reasonCode : 0);
}

/* status: online with this connection's since and now as the heartbeat. */
static void publish_status(struct op_link *l)
{
	char at[32];
	op_link__utc_now(at);
	uint64_t beat_s = (l->cfg->control.heartbeat_ms + 999) / 1000; /* rounded up */
	cJSON *o = cJSON_CreateObject();
	if (o && cJSON_AddStringToObject(o, "state", "online") &&
	    cJSON_AddStringToObject(o, "agent", l->cfg->agent.id) &&
	    cJSON_AddStringToObject(o, "group", l->cfg->control.group) &&
	    cJSON_AddStringToObject(o, "version", l->version) &&
	    cJSON_AddStringToObject(o, "sealKey", l->seal_key) &&
	    cJSON_AddStringToObject(o, "since", l->since) && cJSON_AddStringToObject(o, "at", at) &&
	    cJSON_AddNumberToObject(o, "heartbeatS", (double)beat_s)) {
		char *text = op_json_print(o, OP_JSON_COMPACT);
		MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
		ro.onSuccess5 = on_status_acked;
		ro.onFailure5 = on_status_failed;
		ro.context = l;
		if (text)
			publish(l, l->t_status, text, &ro);
		op_free(text);
	}
	cJSON_Delete(o);
}

static void publish_reported(struct op_link *l)
{
	pthread_mutex_lock(&l->mu);
	l->report_due = false;
	uint64_t seq = l->stats.seq;
	pthread_mutex_unlock(&l->mu);
	cJSON *o = cJSON_CreateObject();
	cJSON *pl = l->h.pipelines ? l->h.pipelines(l->h.ud) : cJSON_CreateArray();
	cJSON *err = l->last_error ? cJSON_Duplicate(l->last_error, 1) : cJSON_CreateNull();
	bool ok = o && pl && err && cJSON_AddStringToObject(o, "agent", l->cfg->agent.id) &&
	          cJSON_AddStringToObject(o, "group", l->cfg->control.group) &&
	          cJSON_AddStringToObject(o, "version", l->version) &&
	          cJSON_AddStringToObject(o, "sealKey", l->seal_key) &&
	          cJSON_AddNumberToObject(o, "seq", (double)seq) &&
	          cJSON_AddItemToObject(o, "pipelines", pl);
	if (ok)
		pl = NULL;
	ok = ok && cJSON_AddItemToObject(o, "lastError", err);
	if (ok)
		err = NULL;
	char *text = ok ? op_json_print(o, OP_JSON_COMPACT) : NULL;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	ro.onSuccess5 = on_reported_acked;
	ro.onFailure5 = on_reported_failed;
	ro.context = l;
	if (text)
		publish(l, l->t_reported, text, &ro);
	else
		OP_LOGE("out of memory for the reported state; it is sent again later");
	op_free(text);
	cJSON_Delete(pl);
	cJSON_Delete(err);
	cJSON_Delete(o);
}

/* ---- desired ---- */

/* Records a refused document as lastError (seq 0: not known) and logs it. */
static void refuse(struct op_link *l, const char *code, uint64_t seq, const char *msg)
{
	char at[32];
	op_link__utc_now(at);
	cJSON *e = cJSON_CreateObject();
	if (e &&
	    (seq ? cJSON_AddNumberToObject(e, "seq", (double)seq)
	         : cJSON_AddNullToObject(e, "seq")) &&
	    cJSON_AddStringToObject(e, "at", at) && cJSON_AddStringToObject(e, "code", code) &&
	    cJSON_AddStringToObject(e, "message", msg) &&
	    (l->env_digest[0] ? cJSON_AddStringToObject(e, "envelope", l->env_digest)
	                      : cJSON_AddNullToObject(e, "envelope"))) {
		cJSON_Delete(l->last_error);
		l->last_error = e;
	} else {
		cJSON_Delete(e);
	}
	pthread_mutex_lock(&l->mu);
	l->stats.refused++;
	l->stats.last_error_ms = (uint64_t)op_mono_ms();
	pthread_mutex_unlock(&l->mu);
	OP_LOGE("desired document refused (%s): %s; the running set goes on", code, msg);
}

/* Opens, checks and applies one envelope. True when reported changed. */
static bool handle_desired(struct op_link *l, const char *text, size_t len, bool too_large)
{
	char why[ERR_MAX];
	l->env_digest[0] = '\0';
	if (too_large) {
		snprintf(why, sizeof(why), "the envelope is larger than %u bytes", OP_ENV_MAX);
		refuse(l, "ENVELOPE", 0, why);
		return true;
	}
	op_env_digest(text, len, l->env_digest);
	if (len == 0)
		return false; /* the retained document was cleared: nothing to do */
	/* One refused already, handed again on a reconnect: its refusal stands
	 * (applying it again could only fail again, or flap a START). */
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)text[i]) * 1099511628211ULL;
	if (h == l->refused_hash)
		return false;
	l->refused_hash = h;
	pthread_mutex_lock(&l->mu);
	uint64_t applied = l->stats.seq;
	pthread_mutex_unlock(&l->mu);
	cJSON *doc = NULL;
	uint64_t seq = 0;
	const char *code = "ENVELOPE";
	op_err rc =
	    op_env_open(text, len, l->keys, l->nkeys, applied, &doc, &seq, &code, why, sizeof(why));
	if (rc == OP_EREJECTED && seq == applied) {
		l->refused_hash = 0;
		return false; /* the document that runs, handed again on a connect */
	}
	if (rc) {
		bool verified = strcmp(code, "REPLAY") == 0;
		refuse(l, code, verified ? seq : 0, why);
		return true;
	}
	const char *agent = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "agent"));
	const cJSON *pl = cJSON_GetObjectItemCaseSensitive(doc, "pipelines");
	if (agent == NULL || strcmp(agent, l->cfg->agent.id) != 0) {
		snprintf(why, sizeof(why), "agent: the document is for %s%.64s%s, this is agent %s",
		         agent ? "agent \"" : "no agent", agent ? agent : "", agent ? "\"" : "",
		         l->cfg->agent.id);
		refuse(l, "DOCUMENT", seq, why);
		cJSON_Delete(doc);
		return true;
	}
	if (!cJSON_IsArray(pl)) {
		snprintf(why, sizeof(why), "pipelines: expected an array of pipelines, got %s",
		         op_json_kind(pl));
		refuse(l, "DOCUMENT", seq, why);
		cJSON_Delete(doc);
		return true;
	}
	char *stored = op_json_print(doc, OP_JSON_COMPACT);
	const char *acode = "STORE";
	rc = stored ? l->h.apply(l->h.ud, stored, strlen(stored), doc, &acode, why, sizeof(why))
	            : OP_ENOMEM;
	if (stored == NULL)
		snprintf(why, sizeof(why), "out of memory");
	op_free(stored);
	cJSON_Delete(doc);
	if (rc) {
		refuse(l, acode, seq, why);
		/* A store that was full or failing may take it at the next try. */
		if (strcmp(acode, "STORE") == 0)
			l->refused_hash = 0;
		return true;
	}
	cJSON_Delete(l->last_error);
	l->last_error = NULL;
	l->refused_hash = 0;
	pthread_mutex_lock(&l->mu);
	l->stats.seq = seq;
	l->stats.applied++;
	pthread_mutex_unlock(&l->mu);
	OP_LOGI("desired document seq %llu applied", (unsigned long long)seq);
	return true;
}

/* ---- the connection ---- */

/* Starts one connect attempt; false when paho refused to start it. */
static bool connect_start(struct op_link *l)
{
	const struct op_config *cfg = l->cfg;
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
	MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
	MQTTProperties props = MQTTProperties_initializer;
	MQTTProperty p = {.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL,
	                  .value.integer4 = SESSION_EXPIRY};
	/* Nothing larger than an envelope and its packet comes in. */
	MQTTProperty mp = {.identifier = MQTTPROPERTY_CODE_MAXIMUM_PACKET_SIZE,
	                   .value.integer4 = OP_ENV_MAX + (64u << 10)};
	if (MQTTProperties_add(&props, &p) != 0 || MQTTProperties_add(&props, &mp) != 0) {
		MQTTProperties_free(&props);
		return false;
	}
	co.cleanstart = 0;
	co.keepAliveInterval = (int)(cfg->control.keepalive_ms / 1000);
	co.connectTimeout = (int)((cfg->control.connect_timeout_ms + 999) / 1000);
	co.automaticReconnect = 0; /* ours: backoff with jitter */
	co.maxInflight = 100;
	co.connectProperties = &props;
	co.onSuccess5 = on_connect_ok;
	co.onFailure5 = on_connect_failed;
	co.context = l;
	will.topicName = l->t_status;
	will.payload.data = l->offline;
	will.payload.len = (int)strlen(l->offline);
	will.message = NULL;
	will.retained = 1;
	will.qos = 1;
	co.will = &will;
	ssl.trustStore = cfg->control.ca_file;
	ssl.keyStore = cfg->control.cert_file;
	ssl.privateKey = cfg->control.key_file;
	ssl.enableServerCertAuth = 1;
	ssl.verify = 1; /* the broker's name or address must match its certificate */
	ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
	ssl.ssl_error_cb = on_ssl_error;
	ssl.ssl_error_context = l;
	co.ssl = &ssl;
	pthread_mutex_lock(&l->mu);
	l->attempt_done = false;
	l->attempt_ok = false;
	l->lost = false;
	l->tls_err[0] = '\0';
	l->st = ST_CONNECTING;
	pthread_mutex_unlock(&l->mu);
	int prc = MQTTAsync_connect(l->cl, &co);
	MQTTProperties_free(&props);
	if (prc != MQTTASYNC_SUCCESS) {
		pthread_mutex_lock(&l->mu);
		snprintf(l->conn_err, sizeof(l->conn_err), "paho cannot start a connection: %s",
		         MQTTAsync_strerror(prc));
		l->st = ST_DOWN;
		pthread_mutex_unlock(&l->mu);
		return false;
	}
	return true;
}

/* Under l->mu: waits for the attempt's outcome or the stop. True: up. */
static bool connect_wait(struct op_link *l)
{
	/* paho ends an attempt within its connect timeout; a margin past it
	 * guards against an outcome that never comes. */
	int64_t until = op_mono_ms() + (int64_t)l->cfg->control.connect_timeout_ms + 5000;
	while (!l->attempt_done && !l->stop && op_mono_ms() < until)
		op_link__wait_until(l, until);
	if (!l->attempt_done) {
		if (!l->stop)
			snprintf(l->conn_err, sizeof(l->conn_err), "no answer to the connect");
		return false;
	}
	return l->attempt_ok;
}

/* Once up: online, the subscription, reported. */
static void came_up(struct op_link *l)
{
	op_link__utc_now(l->since);
	publish_status(l);
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	ro.onSuccess5 = on_sub_ok;
	ro.onFailure5 = on_sub_failed;
	ro.context = l;
	int prc = MQTTAsync_subscribe(l->cl, l->t_desired, 1, &ro);
	if (prc != MQTTASYNC_SUCCESS)
		OP_LOGE("cannot subscribe to %s: %s", l->t_desired, MQTTAsync_strerror(prc));
	prc = MQTTAsync_subscribe(l->cl, l->t_cmd, 1, &ro);
	if (prc != MQTTASYNC_SUCCESS)
		OP_LOGE("cannot subscribe to %s: %s", l->t_cmd, MQTTAsync_strerror(prc));
	publish_reported(l);
}

/* The wait before reconnect attempt n (0 is the first after a loss):
 * between half and all of min(reconnect_max, reconnect_min * 2^n). */
static int64_t backoff_ms(const struct op_link *l, unsigned n, unsigned *rnd)
{
	uint64_t cap = l->cfg->control.reconnect_min_ms;
	for (unsigned i = 0; i < n && cap < l->cfg->control.reconnect_max_ms; i++)
		cap *= 2;
	if (cap > l->cfg->control.reconnect_max_ms)
		cap = l->cfg->control.reconnect_max_ms;
	uint64_t half = cap / 2;
	return (int64_t)(half + (half ? (uint64_t)rand_r(rnd) % (half + 1) : 0));
}

/* The goodbye: offline status, acknowledged or a second passed, then an
 * MQTT 5 normal disconnect (no Last Will). */
static void goodbye(struct op_link *l)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	ro.onSuccess5 = on_goodbye_sent;
	ro.onFailure5 = on_goodbye_failed;
	ro.context = l;
	pthread_mutex_lock(&l->mu);
	l->goodbye_pending = 1;
	pthread_mutex_unlock(&l->mu);
	publish(l, l->t_status, l->offline, &ro);
	int64_t until = op_mono_ms() + STOP_WAIT_MS;
	pthread_mutex_lock(&l->mu);
	while (l->goodbye_pending && !l->lost && op_mono_ms() < until)
		op_link__wait_until(l, until);
	l->disconnected = false;
	pthread_mutex_unlock(&l->mu);
	MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;
	d.timeout = STOP_WAIT_MS;
	d.reasonCode = MQTTREASONCODE_NORMAL_DISCONNECTION;
	d.onSuccess5 = on_disconnected;
	d.onFailure5 = on_disconnect_failed;
	d.context = l;
	if (MQTTAsync_disconnect(l->cl, &d) != MQTTASYNC_SUCCESS)
		return;
	until = op_mono_ms() + 2 * STOP_WAIT_MS;
	pthread_mutex_lock(&l->mu);
	while (!l->disconnected && op_mono_ms() < until)
		op_link__wait_until(l, until);
	pthread_mutex_unlock(&l->mu);
}

static void *link_main(void *arg)
{
	struct op_link *l = arg;
	const struct op_config *cfg = l->cfg;
	unsigned rnd = (unsigned)op_mono_ms() ^ (unsigned)(uintptr_t)l;
	unsigned attempt = 0;
	char said[ERR_MAX] = "";
	for (;;) {
		pthread_mutex_lock(&l->mu);
		bool stop = l->stop;
		pthread_mutex_unlock(&l->mu);
		if (stop)
			break;
		bool up = false;
		if (connect_start(l)) {
			pthread_mutex_lock(&l->mu);
			up = connect_wait(l);
			l->st = up ? ST_UP : ST_DOWN;
			if (up) {
				l->stats.connects++;
				op_link__drain_restart_locked(l);
			}
			stop = l->stop;
			pthread_mutex_unlock(&l->mu);
		}
		if (up) {
			OP_LOGI("connected to the control plane %s as %s", cfg->control.uri,
			        l->client_id);
			said[0] = '\0';
			int64_t up_at = op_mono_ms();
			came_up(l);
			int64_t beat = op_mono_ms() + (int64_t)cfg->control.heartbeat_ms;
			pthread_mutex_lock(&l->mu);
			for (;;) {
				while (!l->stop && !l->lost && l->inbox == NULL &&
				       !l->inbox_too_large && !l->report_due &&
				       l->cmd_head == NULL && op_mono_ms() < beat)
					op_link__wait_until(l, beat);
				if (l->stop || l->lost)
					break;
				char *in = l->inbox;
				size_t in_len = l->inbox_len;
				bool too_large = l->inbox_too_large;
				l->inbox = NULL;
				l->inbox_too_large = false;
				bool report = l->report_due;
				pthread_mutex_unlock(&l->mu);
				op_link__cmd_start_queued(l);
				if (in || too_large)
					report =
					    handle_desired(l, in ? in : "", in_len, too_large) ||
					    report;
				op_free(in);
				if (report)
					publish_reported(l);
				if (op_mono_ms() >= beat) {
					publish_status(l);
					beat = op_mono_ms() + (int64_t)cfg->control.heartbeat_ms;
				}
				pthread_mutex_lock(&l->mu);
			}
			stop = l->stop;
			l->st = ST_DOWN;
			if (stop) {
				pthread_mutex_unlock(&l->mu);
				goodbye(l);
				break;
			}
			char why[ERR_MAX];
			snprintf(why, sizeof(why), "%s", l->conn_err);
			pthread_mutex_unlock(&l->mu);
			OP_LOGW("control plane %s: %s; reconnecting", cfg->control.uri, why);
			if (op_mono_ms() - up_at >= STABLE_MS)
				attempt = 0;
		} else if (!stop) {
			/* The same failure every retry: say it once. */
			pthread_mutex_lock(&l->mu);
			if (strcmp(said, l->conn_err) != 0) {
				snprintf(said, sizeof(said), "%s", l->conn_err);
				OP_LOGW("cannot connect to the control plane %s: %s; retrying",
				        cfg->control.uri, said);
			}
			pthread_mutex_unlock(&l->mu);
		}
		if (stop)
			break;
		int64_t until = op_mono_ms() + backoff_ms(l, attempt, &rnd);
		if (attempt < 32)
			attempt++;
		pthread_mutex_lock(&l->mu);
		while (!l->stop && op_mono_ms() < until)
			op_link__wait_until(l, until);
		pthread_mutex_unlock(&l->mu);
	}
	return NULL;
}

/* ---- start, stop ---- */

/*
 * Reads and parses the trusted key files of cfg into keys (KEYS_MAX of
 * them), their number in *n. OP_ECONFIG naming the file, OP_ENOMEM.
 */
static op_err read_keys(const struct op_config *cfg, struct op_env_key *keys, size_t *n, char *why,
                        size_t whylen)
{
	*n = 0;
	char *list = op_strdup(cfg->control.trusted_keys);
	if (list == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "[control]: out of memory");
	op_err rc = OP_OK;
	char *save = NULL;
	for (char *t = strtok_r(list, ",", &save); t && rc == OP_OK;
	     t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ' || *t == '\t')
			t++;
		size_t tn = strlen(t);
		while (tn && (t[tn - 1] == ' ' || t[tn - 1] == '\t'))
			t[--tn] = '\0';
		if (tn == 0)
			continue;
		if (*n == KEYS_MAX) {
			rc = op_errf(why, whylen, OP_ECONFIG,
			             "[control] trusted_keys: more than %d keys", KEYS_MAX);
			break;
		}
		char *text = NULL, err[256] = "";
		size_t len = 0;
		rc = op_file_read(t, KEY_FILE_MAX, &text, &len, err, sizeof(err));
		if (rc) {
			rc = op_errf(why, whylen, OP_ECONFIG, "[control] trusted_keys: %s: %s", t,
			             err);
			break;
		}
		rc = op_env_pub_parse(text, len, &keys[*n], err, sizeof(err));
		op_free(text);
		if (rc) {
			rc = op_errf(why, whylen, OP_ECONFIG, "[control] trusted_keys: %s: %s", t,
			             err);
			break;
		}
		for (size_t i = 0; i < *n; i++) {
			if (strcmp(keys[i].kid, keys[*n].kid) == 0) {
				rc = op_errf(
				    why, whylen, OP_ECONFIG,
				    "[control] trusted_keys: %s: key id \"%s\" is there twice", t,
				    keys[i].kid);
				break;
			}
		}
		(*n)++;
	}
	op_free(list);
	if (rc == OP_OK && *n == 0)
		rc = op_errf(why, whylen, OP_ECONFIG, "[control] trusted_keys: no key");
	return rc;
}

static void stop_threads(struct op_link *l)
{
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (l->drain_started)
		pthread_join(l->drain_thread, NULL);
	if (l->thread_started)
		pthread_join(l->thread, NULL);
	l->drain_started = l->thread_started = false;
}

static void link_free(struct op_link *l)
{
	if (l->cl)
		MQTTAsync_destroy(&l->cl);
	op_link__pubs_free(l);
	op_free(l->inbox);
	op_free(l->client_id);
	op_free(l->offline);
	op_free(l->version);
	op_free(l->seal_key);
	cJSON_Delete(l->last_error);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	explicit_bzero(l->keys, sizeof(l->keys));
	op_free(l);
}

/* prefix + "outpost/v1/" + id + "/" + leaf into out. */
bool op_link__topic(const struct op_config *cfg, const char *leaf, char *out)
{
	const char *p = cfg->control.topic_prefix;
	int n =
	    snprintf(out, TOPIC_MAX, "%s%soutpost/v1/%s/%s", p, *p ? "/" : "", cfg->agent.id, leaf);
	return n > 0 && n < TOPIC_MAX;
}

/* The link's topics: the leaf of each and where struct op_link keeps it. */
static const struct {
	const char *leaf;
	size_t off;
} topics[] = {
    {"desired", offsetof(struct op_link, t_desired)},
    {"reported", offsetof(struct op_link, t_reported)},
    {"status", offsetof(struct op_link, t_status)},
    {"out/logs", offsetof(struct op_link, t_out[OP_OUTBOX_LOGS])},
    {"out/metrics", offsetof(struct op_link, t_out[OP_OUTBOX_METRICS])},
    {"out/executions", offsetof(struct op_link, t_out[OP_OUTBOX_EXECS])},
    {"cmd/+", offsetof(struct op_link, t_cmd)},
    {"cmd-result/", offsetof(struct op_link, t_cmd_result)},
};

/*
 * What the start checks in cfg before it makes anything: the agent id as a
 * topic level, the length of every topic, and the trusted keys, read into
 * keys (KEYS_MAX) with their number in *nkeys.
 */
static op_err check_config(const struct op_config *cfg, struct op_env_key *keys, size_t *nkeys,
                           char *why, size_t whylen)
{
	*nkeys = 0;
	if (!agent_id_ok(cfg->agent.id))
		return op_errf(why, whylen, OP_ECONFIG,
		               "[agent] id \"%.80s\" cannot name the agent to the control plane: "
		               "expected 1 to %d letters, digits, '.', '_' or '-', not _ctl",
		               cfg->agent.id, AGENT_ID_MAX);
	char topic[TOPIC_MAX];
	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		if (!op_link__topic(cfg, topics[i].leaf, topic))
			return op_errf(why, whylen, OP_ECONFIG,
			               "[control] topic_prefix: too long, expected topics of at "
			               "most %d bytes",
			               TOPIC_MAX - 1);
	}
	return read_keys(cfg, keys, nkeys, why, whylen);
}

op_err op_link_check_config(const struct op_config *cfg, char *why, size_t whylen)
{
	struct op_env_key keys[KEYS_MAX];
	size_t n = 0;
	return check_config(cfg, keys, &n, why, whylen);
}

op_err op_link_start(const struct op_link_opts *o, const struct op_link_hooks *h,
                     struct op_link **out, char *why, size_t whylen)
{
	*out = NULL;
	const struct op_config *cfg = o->cfg;
	struct op_link *l = op_calloc(1, sizeof(*l));
	if (l == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "[control]: out of memory");
	pthread_mutex_init(&l->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	l->cfg = cfg;
	l->h = *h;
	l->stats.seq = o->applied_seq;
	l->store = o->store;
	op_err rc = check_config(cfg, l->keys, &l->nkeys, why, whylen);
	/* check_config has made sure that every topic fits. */
	for (size_t i = 0; rc == OP_OK && i < sizeof(topics) / sizeof(topics[0]); i++)
		(void)op_link__topic(cfg, topics[i].leaf, (char *)l + topics[i].off);
	if (rc == OP_OK) {
		const char *cid = cfg->control.client_id;
		size_t n = strlen(cfg->agent.id) + sizeof("outpost-");
		l->client_id = *cid ? op_strdup(cid) : op_malloc(n);
		if (l->client_id && !*cid)
			snprintf(l->client_id, n, "outpost-%s", cfg->agent.id);
		l->version = op_strdup(o->version ? o->version : "");
		l->seal_key = op_strdup(o->seal_key ? o->seal_key : "");
		cJSON *off = cJSON_CreateObject();
		if (off && cJSON_AddStringToObject(off, "state", "offline") &&
		    cJSON_AddStringToObject(off, "agent", cfg->agent.id))
			l->offline = op_json_print(off, OP_JSON_COMPACT);
		cJSON_Delete(off);
		if (l->client_id == NULL || l->version == NULL || l->seal_key == NULL ||
		    l->offline == NULL)
			rc = op_errf(why, whylen, OP_ENOMEM, "[control]: out of memory");
	}
	if (rc == OP_OK && o->startup_error && *o->startup_error) {
		refuse(l, "STORE", 0, o->startup_error);
		l->stats.refused = 0;
	}
	if (rc == OP_OK) {
		MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
		int prc = MQTTAsync_createWithOptions(&l->cl, cfg->control.uri, l->client_id,
		                                      MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
		if (prc == MQTTASYNC_SUCCESS)
			prc = MQTTAsync_setCallbacks(l->cl, l, on_lost, on_message, NULL);
		if (prc == MQTTASYNC_SUCCESS)
			prc = MQTTAsync_setDisconnected(l->cl, l, on_disconnected_by_broker);
		if (prc != MQTTASYNC_SUCCESS)
			rc = op_errf(
			    why, whylen, OP_EINTERNAL,
			    "[control] url: cannot create the control link's MQTT client: %s",
			    MQTTAsync_strerror(prc));
	}
	if (rc == OP_OK) {
		struct op_outbox_limits lim = {.max_records =
		                                   (uint64_t)cfg->control.outbox_max_records,
		                               .max_bytes = cfg->control.outbox_max_bytes};
		op_store_outbox_limits(l->store, &lim);
		op_store_outbox_on_add(l->store, op_link__on_outbox_add, l);
		op_link__cmd_load_seen(l);
		int e = pthread_create(&l->thread, NULL, link_main, l);
		if (e == 0) {
			l->thread_started = true;
			e = pthread_create(&l->drain_thread, NULL, op_link__drain_main, l);
			l->drain_started = e == 0;
		}
		if (e)
			rc = op_errf(why, whylen, OP_ENOMEM,
			             "[control]: cannot start the control link's threads");
	}
	if (rc) {
		if (l->store)
			op_store_outbox_on_add(l->store, NULL, NULL);
		stop_threads(l);
		op_link__cmd_fini(l);
		link_free(l);
		return rc;
	}
	op_link__tap_on(l);
	OP_LOGI("control link to %s for agent %s, %zu trusted keys, applied seq %llu",
	        cfg->control.uri, cfg->agent.id, l->nkeys, (unsigned long long)o->applied_seq);
	*out = l;
	return OP_OK;
}

void op_link_stop(struct op_link *l)
{
	if (l == NULL)
		return;
	op_link__tap_off();
	op_store_outbox_on_add(l->store, NULL, NULL);
	stop_threads(l);
	/* Commands still running answer into a closed connection. */
	op_link__cmd_fini(l);
	link_free(l);
}

void op_link_changed(struct op_link *l)
{
	if (l == NULL)
		return;
	pthread_mutex_lock(&l->mu);
	l->report_due = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

void op_link_stats(struct op_link *l, struct op_link_stats *st)
{
	pthread_mutex_lock(&l->mu);
	*st = l->stats;
	st->connected = l->st == ST_UP;
	pthread_mutex_unlock(&l->mu);
}
