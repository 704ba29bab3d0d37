/*
 * outpostctl's MQTT client (see ctl_mqtt.h): one paho MQTTAsync client,
 * MQTT 5 over TLS, whose callbacks only record what happened under mu and
 * signal cv; the caller's thread waits on cv with a deadline.
 *
 * Paho calls its callbacks while it holds its own global mutex, so nothing
 * here calls into paho while holding mu. Each request (connect,
 * subscribe, publish, disconnect) has a struct req that paho's callback
 * finishes; a request whose caller gave up stays on m->reqs and is freed
 * only after MQTTAsync_destroy(), after which paho calls nothing more, so
 * a late answer never touches freed memory.
 *
 * Received messages are copied into a queue bounded in bytes; past the
 * bound they are dropped and the next op_ctl_mqtt_next() says so, because
 * blocking paho's receive thread would also hold back the acks callers
 * wait for.
 */
#include "control-sync/outpostctl/ctl_mqtt.h"
#include "agent/core/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/daemon/mqtt_out.h"
#include "connectors/mqtt/topic.h"

/* Queued payload bytes beyond max_payload before messages are dropped. */
#define QUEUE_SLACK (64u << 20)
/* Filters per SUBSCRIBE packet. */
#define SUB_BATCH 64
/* Longest wait for the broker to answer our DISCONNECT. */
#define DISCONNECT_WAIT_MS 2000
/* Connection attempts, and the first pause between them (doubling): enough
 * to ride out a blip, not so many that a wrong port or a refused
 * certificate keeps the user waiting for the whole timeout. */
#define ATTEMPTS     3
#define RETRY_MIN_MS 250
#define KEEPALIVE_S  30
#define PREFIX_MAX   1024

struct req {
	bool done;
	int code;   /* paho's code: MQTTASYNC_SUCCESS or a failure */
	int reason; /* MQTT 5 reason code (>= 0x80 is a refusal) */
	int nreasons;
	int reasons[SUB_BATCH]; /* a SUBACK's, one per filter */
	char msg[160];          /* paho's text, if any */
	struct op_ctl_mqtt *m;
	struct req *next;
};

struct op_ctl_mqtt {
	MQTTAsync cl;
	char client_id[64];
	char root[PREFIX_MAX + 16];
	char *probe_topic;
	char probe_payload[96];
	unsigned long probes;
	size_t max_payload;

	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	/* Under mu: */
	bool connected;
	bool lost;
	char lost_why[256];
	char tls_err[256]; /* OpenSSL's words during the current attempt */
	struct req *reqs;  /* every request made; freed at close */
	struct op_ctl_msg *head, *tail;
	size_t queued; /* payload bytes in the queue */
	unsigned long dropped;
	bool nomem;
	bool interrupted;
};

static void say(char *why, size_t whylen, const char *fmt, ...) OP_PRINTF(3, 4);

static void say(char *why, size_t whylen, const char *fmt, ...)
{
	if (whylen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* Under m->mu: waits for a signal or the deadline; false once it passed. */
static bool wait_until(struct op_ctl_mqtt *m, long long deadline)
{
	if (op_mono_ms() >= deadline)
		return false;
	struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
	return pthread_cond_timedwait(&m->cv, &m->mu, &ts) != ETIMEDOUT || op_mono_ms() < deadline;
}

/* "Not authorized (0x87)" */
static void reason_text(int reason, char *out, size_t len)
{
	const char *s = MQTTReasonCode_toString((enum MQTTReasonCodes)reason);
	snprintf(out, len, "%s (0x%02x)", s ? s : "unknown reason", (unsigned)reason);
}

/* ---- requests ---- */

static struct req *req_new(struct op_ctl_mqtt *m)
{
	struct req *r = op_calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->m = m;
	pthread_mutex_lock(&m->mu);
	r->next = m->reqs;
	m->reqs = r;
	pthread_mutex_unlock(&m->mu);
	return r;
}

static void finish(struct req *r, int code, int reason, const char *msg)
{
	struct op_ctl_mqtt *m = r->m;
	pthread_mutex_lock(&m->mu);
	r->done = true;
	r->code = code;
	r->reason = reason;
	if (msg && *msg)
		snprintf(r->msg, sizeof(r->msg), "%s", msg);
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

static void on_ok(void *ctx, MQTTAsync_successData5 *d)
{
	finish(ctx, MQTTASYNC_SUCCESS, d ? (int)d->reasonCode : 0, NULL);
}

static void on_fail(void *ctx, MQTTAsync_failureData5 *d)
{
	int code = d ? d->code : MQTTASYNC_FAILURE;
	int reason = d ? (int)d->reasonCode : 0;
	/* A refusal by reason code comes with code 0 (success) from paho. */
	if (code == MQTTASYNC_SUCCESS && reason < MQTTREASONCODE_UNSPECIFIED_ERROR)
		code = MQTTASYNC_FAILURE;
	finish(ctx, code, reason, d ? d->message : NULL);
}

/* A SUBACK: paho passes one reason code in reasonCode, several in a list
 * (whose failures it does not report as failures). */
static void on_sub_ok(void *ctx, MQTTAsync_successData5 *d)
{
	struct req *r = ctx;
	struct op_ctl_mqtt *m = r->m;
	pthread_mutex_lock(&m->mu);
	r->done = true;
	r->code = MQTTASYNC_SUCCESS;
	if (d && d->alt.sub.reasonCodeCount > 1 && d->alt.sub.reasonCodes) {
		int n = d->alt.sub.reasonCodeCount;
		if (n > SUB_BATCH)
			n = SUB_BATCH;
		for (int i = 0; i < n; i++)
			r->reasons[i] = (int)d->alt.sub.reasonCodes[i];
		r->nreasons = n;
	} else {
		r->reasons[0] = d ? (int)d->reasonCode : 0;
		r->nreasons = 1;
	}
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

/* Under m->mu: waits for r until deadline; false if it never came. */
static bool req_wait(struct op_ctl_mqtt *m, struct req *r, long long deadline)
{
	while (!r->done && wait_until(m, deadline))
		;
	return r->done;
}

/* ---- connection callbacks ---- */

static void on_lost(void *ctx, char *cause)
{
	struct op_ctl_mqtt *m = ctx;
	pthread_mutex_lock(&m->mu);
	m->connected = false;
	m->lost = true;
	snprintf(m->lost_why, sizeof(m->lost_why), "the connection to the broker was lost: %s",
	         cause && *cause ? cause : "closed by the broker or the network");
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

static int on_ssl_error(const char *str, size_t len, void *ctx)
{
	struct op_ctl_mqtt *m = ctx;
	while (len && (str[len - 1] == '\n' || str[len - 1] == '\r'))
		len--;
	pthread_mutex_lock(&m->mu);
	/* The first line is the most specific ("certificate verify failed"). */
	if (m->tls_err[0] == '\0' && len)
		op_mqtt_tls_reason(str, len, m->tls_err, sizeof(m->tls_err));
	pthread_mutex_unlock(&m->mu);
	return 0;
}

/* ---- received messages ---- */

static void queue_msg(struct op_ctl_mqtt *m, struct op_ctl_msg *msg)
{
	msg->next = NULL;
	if (m->tail)
		m->tail->next = msg;
	else
		m->head = msg;
	m->tail = msg;
	m->queued += msg->payload ? msg->len : 0;
	pthread_cond_broadcast(&m->cv);
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *pm)
{
	struct op_ctl_mqtt *m = ctx;
	size_t tlen = strlen(topic);
	size_t plen = pm->payloadlen > 0 ? (size_t)pm->payloadlen : 0;
	/* topic_len is 0, or the length when the topic holds a NUL: no topic
	 * of ours does, so such a message is not for us. */
	bool ours = topic_len == 0 || (size_t)topic_len == tlen;
	bool too_large = plen > m->max_payload;
	struct op_ctl_msg *msg = NULL;
	if (ours) {
		msg = op_calloc(1, sizeof(*msg));
		if (msg) {
			msg->topic = op_strndup(topic, tlen);
			msg->len = plen;
			msg->too_large = too_large;
			msg->retained = pm->retained != 0;
			if (!too_large && (msg->payload = op_malloc(plen + 1)) != NULL) {
				if (plen)
					memcpy(msg->payload, pm->payload, plen);
				msg->payload[plen] = '\0';
			}
			MQTTProperty *cd = MQTTProperties_getProperty(
			    &pm->properties, MQTTPROPERTY_CODE_CORRELATION_DATA);
			bool corr = cd && cd->value.data.len > 0;
			if (corr && (msg->corr = op_malloc((size_t)cd->value.data.len)) != NULL) {
				memcpy(msg->corr, cd->value.data.data, (size_t)cd->value.data.len);
				msg->corr_len = (size_t)cd->value.data.len;
			}
			if (msg->topic == NULL || (!too_large && msg->payload == NULL) ||
			    (corr && msg->corr == NULL)) {
				op_ctl_msg_free(msg);
				msg = NULL;
			}
		}
	}
	pthread_mutex_lock(&m->mu);
	if (ours && msg == NULL) {
		m->nomem = true;
		pthread_cond_broadcast(&m->cv);
	} else if (msg && m->queued + (msg->payload ? plen : 0) > m->max_payload + QUEUE_SLACK) {
		m->dropped++;
		pthread_cond_broadcast(&m->cv);
	} else if (msg) {
		queue_msg(m, msg);
		msg = NULL;
	}
	pthread_mutex_unlock(&m->mu);
	op_ctl_msg_free(msg);
	MQTTAsync_freeMessage(&pm);
	MQTTAsync_free(topic);
	return 1;
}

void op_ctl_msg_free(struct op_ctl_msg *msg)
{
	if (msg == NULL)
		return;
	op_free(msg->topic);
	op_free(msg->payload);
	op_free(msg->corr);
	op_free(msg);
}

/* ---- connecting ---- */

/* Checks that url is mqtts://HOST[:PORT] with nothing after. */
static bool url_ok(const char *url, char *why, size_t whylen)
{
	static const char scheme[] = "mqtts://";
	if (strncmp(url, "mqtt://", 7) == 0 || strncmp(url, "tcp://", 6) == 0 ||
	    strncmp(url, "ws://", 5) == 0) {
		say(why, whylen,
		    "broker \"%.200s\": plain MQTT is refused, the control link is always TLS "
		    "(mqtts://HOST:PORT)",
		    url);
		return false;
	}
	if (strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
		say(why, whylen, "broker \"%.200s\": expected mqtts://HOST:PORT", url);
		return false;
	}
	const char *h = url + sizeof(scheme) - 1;
	size_t n = strlen(h);
	bool ok = n > 0 && n < 512 && h[0] != ':';
	for (size_t i = 0; ok && i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		ok = c > 0x20 && c < 0x7f && c != '/' && c != '?' && c != '#' && c != '@';
	}
	const char *colon = ok ? strrchr(h, ':') : NULL;
	if (ok && colon && (h[0] != '[' || colon > strchr(h, ']'))) {
		const char *p = colon + 1;
		long port = 0;
		ok = *p != '\0';
		for (; ok && *p; p++) {
			ok = *p >= '0' && *p <= '9' && port <= 65535;
			port = port * 10 + (*p - '0');
		}
		ok = ok && port >= 1 && port <= 65535;
	}
	if (!ok)
		say(why, whylen, "broker \"%.200s\": expected mqtts://HOST:PORT", url);
	return ok;
}

/* Checks the fleet prefix and writes the topic root. */
static bool root_init(struct op_ctl_mqtt *m, const char *prefix, char *why, size_t whylen)
{
	size_t n = prefix ? strlen(prefix) : 0;
	char bad[160] = "";
	if (n == 0) {
		snprintf(m->root, sizeof(m->root), "outpost/v1/");
		return true;
	}
	if (n > PREFIX_MAX || prefix[0] == '/' || prefix[n - 1] == '/' ||
	    !op_mqtt_topic_name_valid(prefix, n, bad, sizeof(bad))) {
		say(why, whylen,
		    "prefix \"%.200s\": expected topic levels without wildcards, without a "
		    "leading or trailing '/', at most %d bytes%s%s",
		    prefix, PREFIX_MAX, bad[0] ? ": " : "", bad);
		return false;
	}
	snprintf(m->root, sizeof(m->root), "%s/outpost/v1/", prefix);
	return true;
}

static void client_id_init(struct op_ctl_mqtt *m)
{
	unsigned char r[4] = {0};
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		long long t = op_mono_ms();
		memcpy(r, &t, sizeof(r));
	}
	snprintf(m->client_id, sizeof(m->client_id), "outpostctl-%ld-%02x%02x%02x%02x",
	         (long)getpid(), r[0], r[1], r[2], r[3]);
}

/* One connection attempt, waited for until deadline. OP_OK, OP_EAUTH (a
 * refusal: do not retry), OP_ENOCONN; why says why. */
static op_err attempt(struct op_ctl_mqtt *m, const struct op_ctl_mqtt_opts *o, long long deadline,
                      char *why, size_t whylen)
{
	struct req *r = req_new(m);
	if (r == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	long long left = deadline - op_mono_ms();
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
	co.keepAliveInterval = KEEPALIVE_S;
	co.cleanstart = 1;
	co.connectTimeout = left > 1000 ? (int)((left + 999) / 1000) : 1;
	co.automaticReconnect = 0;
	co.onSuccess5 = on_ok;
	co.onFailure5 = on_fail;
	co.context = r;
	ssl.trustStore = o->ca;
	ssl.keyStore = o->cert;
	ssl.privateKey = o->key;
	ssl.enableServerCertAuth = 1;
	ssl.verify = 1; /* the broker's host name must match its certificate */
	ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
	ssl.ssl_error_cb = on_ssl_error;
	ssl.ssl_error_context = m;
	co.ssl = &ssl;
	pthread_mutex_lock(&m->mu);
	m->tls_err[0] = '\0';
	pthread_mutex_unlock(&m->mu);
	int prc = MQTTAsync_connect(m->cl, &co);
	if (prc != MQTTASYNC_SUCCESS)
		return op_errf(why, whylen, OP_EINTERNAL, "cannot start connecting: %s (paho %d)",
		               MQTTAsync_strerror(prc), prc);
	op_err rc = OP_OK;
	pthread_mutex_lock(&m->mu);
	bool done = req_wait(m, r, deadline);
	if (done && r->code == MQTTASYNC_SUCCESS && r->reason < MQTTREASONCODE_UNSPECIFIED_ERROR) {
		m->connected = true;
	} else if (!done) {
		rc = op_errf(why, whylen, OP_ENOCONN, "no connection%s%s",
		             m->tls_err[0] ? ": " : "", m->tls_err);
	} else {
		/* CONNACK refusals come as an MQTT 5 reason code, or as paho's
		 * code when it is above 0x80. */
		int reason = r->reason >= MQTTREASONCODE_UNSPECIFIED_ERROR ? r->reason
		             : r->code >= MQTTREASONCODE_UNSPECIFIED_ERROR ? r->code
		                                                           : 0;
		if (reason) {
			char t[96];
			reason_text(reason, t, sizeof(t));
			rc = op_errf(why, whylen, OP_EAUTH, "the broker refused the connection: %s",
			             t);
		} else if (m->tls_err[0]) {
			rc = op_errf(why, whylen, OP_EAUTH, "TLS: %s", m->tls_err);
		} else {
			rc =
			    op_errf(why, whylen, OP_ENOCONN, "%s",
			            r->msg[0] && strcmp(r->msg, "TCP/TLS connect failure") != 0
			                ? r->msg
			                : "no MQTT connection could be made (refused, unreachable, "
			                  "timed out, or this client's certificate was not "
			                  "accepted)");
		}
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

op_err op_ctl_mqtt_connect(const struct op_ctl_mqtt_opts *o, long long deadline,
                           struct op_ctl_mqtt **out, char *why, size_t whylen)
{
	*out = NULL;
	if (!url_ok(o->broker, why, whylen))
		return OP_EINVAL;
	struct op_ctl_mqtt *m = op_calloc(1, sizeof(*m));
	if (m == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	if (!root_init(m, o->prefix, why, whylen)) {
		op_free(m);
		return OP_EINVAL;
	}
	pthread_condattr_t ca;
	bool cv_ok = false, mu_ok = pthread_mutex_init(&m->mu, NULL) == 0;
	if (mu_ok && pthread_condattr_init(&ca) == 0) {
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		cv_ok = pthread_cond_init(&m->cv, &ca) == 0;
		pthread_condattr_destroy(&ca);
	}
	if (!cv_ok) {
		if (mu_ok)
			pthread_mutex_destroy(&m->mu);
		op_free(m);
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	}
	m->max_payload = o->max_payload;
	client_id_init(m);
	op_err rc = OP_OK;
	struct op_buf pt;
	op_buf_init(&pt, sizeof(m->root) + sizeof(m->client_id) + 8);
	if (op_buf_addf(&pt, "%s_ctl/%s", m->root, m->client_id) != OP_OK ||
	    (m->probe_topic = op_buf_take(&pt)) == NULL) {
		op_buf_fini(&pt);
		rc = op_errf(why, whylen, OP_ENOMEM, "out of memory");
		goto out;
	}
	MQTTAsync_createOptions cro = MQTTAsync_createOptions_initializer5;
	int prc = MQTTAsync_createWithOptions(&m->cl, o->broker, m->client_id,
	                                      MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro);
	if (prc == MQTTASYNC_SUCCESS)
		prc = MQTTAsync_setCallbacks(m->cl, m, on_lost, on_message, NULL);
	if (prc != MQTTASYNC_SUCCESS) {
		rc = op_errf(why, whylen, OP_EINTERNAL, "cannot create an MQTT client for %s: %s",
		             o->broker, MQTTAsync_strerror(prc));
		goto out;
	}
	/* Retry what the network refused (not a refusal by TLS or CONNACK). */
	long long pause = RETRY_MIN_MS;
	char last[384] = "";
	for (int n = 1;; n++) {
		rc = attempt(m, o, deadline, last, sizeof(last));
		if (rc != OP_ENOCONN || n == ATTEMPTS || op_mono_ms() + pause >= deadline)
			break;
		pthread_mutex_lock(&m->mu);
		long long until = op_mono_ms() + pause;
		while (wait_until(m, until))
			;
		pthread_mutex_unlock(&m->mu);
		pause *= 2;
	}
	if (rc) {
		say(why, whylen, "cannot connect to the broker at %s: %s", o->broker, last);
		goto out;
	}
	const char *probe = m->probe_topic;
	rc = op_ctl_mqtt_subscribe(m, &probe, 1, deadline, why, whylen);
out:
	if (rc) {
		op_ctl_mqtt_close(m);
		return rc;
	}
	*out = m;
	return OP_OK;
}

void op_ctl_mqtt_close(struct op_ctl_mqtt *m)
{
	if (m == NULL)
		return;
	if (m->cl) {
		pthread_mutex_lock(&m->mu);
		bool connected = m->connected;
		pthread_mutex_unlock(&m->mu);
		struct req *r = connected ? req_new(m) : NULL;
		if (r) {
			MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;
			d.timeout = DISCONNECT_WAIT_MS;
			d.onSuccess5 = on_ok;
			d.onFailure5 = on_fail;
			d.context = r;
			if (MQTTAsync_disconnect(m->cl, &d) == MQTTASYNC_SUCCESS) {
				pthread_mutex_lock(&m->mu);
				req_wait(m, r, op_mono_ms() + DISCONNECT_WAIT_MS);
				pthread_mutex_unlock(&m->mu);
			}
		}
		/* After this paho calls none of our callbacks again. */
		MQTTAsync_destroy(&m->cl);
	}
	while (m->reqs) {
		struct req *r = m->reqs;
		m->reqs = r->next;
		op_free(r);
	}
	while (m->head) {
		struct op_ctl_msg *msg = m->head;
		m->head = msg->next;
		op_ctl_msg_free(msg);
	}
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	op_free(m->probe_topic);
	op_free(m);
}

const char *op_ctl_mqtt_root(const struct op_ctl_mqtt *m)
{
	return m->root;
}

const char *op_ctl_mqtt_client_id(const struct op_ctl_mqtt *m)
{
	return m->client_id;
}

/* Under m->mu: the error of a request that did not succeed. */
static op_err req_error(struct op_ctl_mqtt *m, struct req *r, bool done, const char *what,
                        char *why, size_t whylen)
{
	if (!done && m->lost)
		return op_errf(why, whylen, OP_ENOCONN, "%s: %s", what, m->lost_why);
	if (!done)
		return op_errf(why, whylen, OP_ETIMEOUT, "%s: the broker did not answer in time",
		               what);
	if (r->reason >= MQTTREASONCODE_UNSPECIFIED_ERROR) {
		char t[96];
		reason_text(r->reason, t, sizeof(t));
		return op_errf(why, whylen, OP_EAUTH, "%s: the broker refused it: %s", what, t);
	}
	if (m->lost)
		return op_errf(why, whylen, OP_ENOCONN, "%s: %s", what, m->lost_why);
	return op_errf(why, whylen, OP_ENOCONN, "%s: %s (paho %d)", what,
	               r->msg[0] ? r->msg : MQTTAsync_strerror(r->code), r->code);
}

op_err op_ctl_mqtt_subscribe(struct op_ctl_mqtt *m, const char *const *filters, size_t n,
                             long long deadline, char *why, size_t whylen)
{
	for (size_t at = 0; at < n; at += SUB_BATCH) {
		int k = (int)(n - at > SUB_BATCH ? SUB_BATCH : n - at);
		int qos[SUB_BATCH];
		for (int i = 0; i < k; i++)
			qos[i] = 1;
		struct req *r = req_new(m);
		if (r == NULL)
			return op_errf(why, whylen, OP_ENOMEM, "out of memory");
		MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
		ro.onSuccess5 = on_sub_ok;
		ro.onFailure5 = on_fail;
		ro.context = r;
		int prc =
		    MQTTAsync_subscribeMany(m->cl, k, (char *const *)(filters + at), qos, &ro);
		if (prc != MQTTASYNC_SUCCESS)
			return op_errf(why, whylen,
			               prc == MQTTASYNC_DISCONNECTED ? OP_ENOCONN : OP_EINVAL,
			               "subscribing to %s: %s (paho %d)", filters[at],
			               MQTTAsync_strerror(prc), prc);
		pthread_mutex_lock(&m->mu);
		bool done = req_wait(m, r, deadline);
		op_err rc = OP_OK;
		if (!done || r->code != MQTTASYNC_SUCCESS) {
			char what[320];
			snprintf(what, sizeof(what), "subscribing to %.256s", filters[at]);
			rc = req_error(m, r, done, what, why, whylen);
		}
		for (int i = 0; rc == OP_OK && i < r->nreasons && i < k; i++) {
			if (r->reasons[i] >= MQTTREASONCODE_UNSPECIFIED_ERROR) {
				char t[96];
				reason_text(r->reasons[i], t, sizeof(t));
				rc = op_errf(why, whylen, OP_EAUTH,
				             "the broker refused the subscription to %.256s: %s",
				             filters[at + (size_t)i], t);
			}
		}
		pthread_mutex_unlock(&m->mu);
		if (rc)
			return rc;
	}
	return OP_OK;
}

/* Publishes (QoS 1) and waits for the PUBACK; r, when not NULL, gives the
 * request's properties. */
static op_err publish(struct op_ctl_mqtt *m, const char *topic, const void *payload, size_t len,
                      bool retained, const struct op_ctl_mqtt_req *q, long long deadline, char *why,
                      size_t whylen)
{
	char bad[160];
	size_t tlen = strlen(topic);
	if (!op_mqtt_topic_name_valid(topic, tlen, bad, sizeof(bad)))
		return op_errf(why, whylen, OP_EINVAL, "topic \"%.200s\": %s", topic, bad);
	size_t rtlen = q && q->response_topic ? strlen(q->response_topic) : 0;
	if (rtlen && !op_mqtt_topic_name_valid(q->response_topic, rtlen, bad, sizeof(bad)))
		return op_errf(why, whylen, OP_EINVAL, "response topic \"%.200s\": %s",
		               q->response_topic, bad);
	size_t extra = rtlen + (q ? q->corr_len : 0);
	if (len > op_mqtt_payload_max(tlen, 1) || len + extra > op_mqtt_payload_max(tlen, 1) ||
	    len > (size_t)0x7fffffff || (q && q->corr_len > 0xffff))
		return op_errf(why, whylen, OP_EINVAL, "%zu bytes do not fit one MQTT message",
		               len);
	struct req *r = req_new(m);
	if (r == NULL)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	ro.onSuccess5 = on_ok;
	ro.onFailure5 = on_fail;
	ro.context = r;
	MQTTAsync_message pm = MQTTAsync_message_initializer;
	pm.payload = (void *)(payload ? payload : "");
	pm.payloadlen = (int)len;
	pm.qos = 1;
	pm.retained = retained;
	/* paho copies the properties' data, and the message's on sending. */
	MQTTProperty rt = {.identifier = MQTTPROPERTY_CODE_RESPONSE_TOPIC};
	MQTTProperty cd = {.identifier = MQTTPROPERTY_CODE_CORRELATION_DATA};
	bool props_ok = true;
	if (rtlen) {
		rt.value.data.data = (char *)q->response_topic;
		rt.value.data.len = (int)rtlen;
		props_ok = MQTTProperties_add(&pm.properties, &rt) == 0;
	}
	if (props_ok && q && q->corr_len) {
		cd.value.data.data = (char *)q->corr;
		cd.value.data.len = (int)q->corr_len;
		props_ok = MQTTProperties_add(&pm.properties, &cd) == 0;
	}
	int prc = props_ok ? MQTTAsync_sendMessage(m->cl, topic, &pm, &ro) : MQTTASYNC_FAILURE;
	MQTTProperties_free(&pm.properties);
	if (!props_ok)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	if (prc != MQTTASYNC_SUCCESS)
		return op_errf(
		    why, whylen, prc == MQTTASYNC_DISCONNECTED ? OP_ENOCONN : OP_EINTERNAL,
		    "publishing to %.200s: %s (paho %d)", topic, MQTTAsync_strerror(prc), prc);
	pthread_mutex_lock(&m->mu);
	bool done = req_wait(m, r, deadline);
	op_err rc = OP_OK;
	if (!done || r->code != MQTTASYNC_SUCCESS ||
	    r->reason >= MQTTREASONCODE_UNSPECIFIED_ERROR) {
		char what[320];
		snprintf(what, sizeof(what), "publishing to %.256s", topic);
		rc = req_error(m, r, done, what, why, whylen);
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

op_err op_ctl_mqtt_publish(struct op_ctl_mqtt *m, const char *topic, const void *payload,
                           size_t len, bool retained, long long deadline, char *why, size_t whylen)
{
	return publish(m, topic, payload, len, retained, NULL, deadline, why, whylen);
}

op_err op_ctl_mqtt_request(struct op_ctl_mqtt *m, const char *topic, const void *payload,
                           size_t len, const struct op_ctl_mqtt_req *r, long long deadline,
                           char *why, size_t whylen)
{
	return publish(m, topic, payload, len, false, r, deadline, why, whylen);
}

/* Under m->mu: takes the first queued message. */
static struct op_ctl_msg *dequeue(struct op_ctl_mqtt *m)
{
	struct op_ctl_msg *msg = m->head;
	if (msg == NULL)
		return NULL;
	m->head = msg->next;
	if (m->head == NULL)
		m->tail = NULL;
	m->queued -= msg->payload ? msg->len : 0;
	msg->next = NULL;
	return msg;
}

/* Next message, probes included. */
static op_err next_any(struct op_ctl_mqtt *m, long long deadline, struct op_ctl_msg **out,
                       char *why, size_t whylen)
{
	*out = NULL;
	op_err rc = OP_OK;
	pthread_mutex_lock(&m->mu);
	for (;;) {
		if (m->dropped) {
			rc = op_errf(why, whylen, OP_ELIMIT,
			             "%lu messages were dropped: more than %zu bytes were waiting",
			             m->dropped, m->max_payload + QUEUE_SLACK);
			m->dropped = 0;
			break;
		}
		if (m->interrupted) {
			rc = op_errf(why, whylen, OP_ECANCELED, "interrupted");
			break;
		}
		if (m->nomem) {
			m->nomem = false;
			rc = op_errf(why, whylen, OP_ENOMEM, "out of memory receiving a message");
			break;
		}
		if ((*out = dequeue(m)) != NULL)
			break;
		if (m->lost) {
			rc = op_errf(why, whylen, OP_ENOCONN, "%s", m->lost_why);
			break;
		}
		if (!wait_until(m, deadline)) {
			rc = op_errf(why, whylen, OP_ETIMEOUT, "no message in time");
			break;
		}
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

void op_ctl_mqtt_interrupt(struct op_ctl_mqtt *m)
{
	pthread_mutex_lock(&m->mu);
	m->interrupted = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

static bool is_probe(const struct op_ctl_mqtt *m, const struct op_ctl_msg *msg)
{
	return strcmp(msg->topic, m->probe_topic) == 0;
}

op_err op_ctl_mqtt_next(struct op_ctl_mqtt *m, long long deadline, struct op_ctl_msg **msg,
                        char *why, size_t whylen)
{
	for (;;) {
		op_err rc = next_any(m, deadline, msg, why, whylen);
		if (rc || *msg == NULL || !is_probe(m, *msg))
			return rc;
		op_ctl_msg_free(*msg);
		*msg = NULL;
	}
}

op_err op_ctl_mqtt_sync(struct op_ctl_mqtt *m, long long deadline, op_ctl_msg_fn fn, void *ud,
                        char *why, size_t whylen)
{
	unsigned char r[8] = {0};
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		long long t = op_mono_ms();
		memcpy(r, &t, sizeof(r));
	}
	snprintf(m->probe_payload, sizeof(m->probe_payload),
	         "probe %lu %02x%02x%02x%02x%02x%02x%02x%02x", ++m->probes, r[0], r[1], r[2], r[3],
	         r[4], r[5], r[6], r[7]);
	size_t plen = strlen(m->probe_payload);
	op_err rc = op_ctl_mqtt_publish(m, m->probe_topic, m->probe_payload, plen, false, deadline,
	                                why, whylen);
	while (rc == OP_OK) {
		struct op_ctl_msg *msg = NULL;
		rc = next_any(m, deadline, &msg, why, whylen);
		if (rc == OP_ETIMEOUT)
			say(why, whylen,
			    "the broker did not deliver the retained messages in time (probe on %s "
			    "not back)",
			    m->probe_topic);
		if (rc)
			break;
		if (msg == NULL)
			continue;
		if (is_probe(m, msg)) {
			bool mine =
			    msg->len == plen && memcmp(msg->payload, m->probe_payload, plen) == 0;
			op_ctl_msg_free(msg);
			if (mine)
				break;
			continue; /* an earlier sync's, which gave up */
		}
		fn(ud, msg);
		op_ctl_msg_free(msg);
	}
	return rc;
}
