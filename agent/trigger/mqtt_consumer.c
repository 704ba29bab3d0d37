/*
 * An MQTT consumer process (see mqtt_wire.h for why it is a process).
 *
 * Threads: the main thread reads the daemon's frames (HELLO, STOP) and paces
 * connection retries; paho's threads run the callbacks. The message callback
 * forwards the message and reads the daemon's REPLY from its own socket;
 * only a COMMITTED reply lets it return, so paho acks (QoS 1) only what is
 * durably queued. BUSY means backpressure: wait and offer the same message
 * again. When the daemon goes away (EOF) the process exits at once without
 * acking what it holds; the broker redelivers it (persistent session).
 *
 * Nothing here logs: states go to the daemon as STATUS frames, which it logs
 * with the pipeline's name, so the agent's log has one format.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "agent/core/alloc.h"
#include "agent/core/clock.h"
#include "agent/trigger/mqtt_wire.h"

struct consumer {
	MQTTAsync client;
	char *uri, *client_id, *filter, *ca_file, *cert_file, *key_file, *username, *password;
	int qos, keepalive_s, connect_timeout_s;
	size_t max_payload;

	pthread_mutex_t wmu; /* one writer of frames at a time */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping; /* the daemon asked to stop or went away */
	bool connecting;
	bool connected;
	int64_t retry_at_ms; /* next connect attempt, 0 = none due */
	int backoff_ms;
	int wake; /* eventfd: wakes the main thread when retry_at_ms changes */
};

static void send_frame(struct consumer *c, enum op_mqtt_frame type, const void *body, size_t len)
{
	struct op_buf b;
	op_buf_init(&b, OP_MQTT_WIRE_MAX_FRAME + 8);
	pthread_mutex_lock(&c->wmu);
	if (op_mqtt_frame_put(&b, type, body, len) == OP_OK &&
	    op_mqtt_write_all(OP_MQTT_WIRE_FD, b.data, b.len) != OP_OK)
		_exit(0); /* the daemon is gone */
	pthread_mutex_unlock(&c->wmu);
	op_buf_fini(&b);
}

static void status(struct consumer *c, enum op_mqtt_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void status(struct consumer *c, enum op_mqtt_state st, const char *fmt, ...)
{
	char text[512];
	text[0] = (char)st;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(text + 1, sizeof(text) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(text) - 1)
		n = (int)sizeof(text) - 2;
	send_frame(c, OP_MQTT_STATUS, text, (size_t)n + 1);
}

/* ---- paho callbacks ---- */

static void schedule_retry(struct consumer *c)
{
	pthread_mutex_lock(&c->mu);
	c->connecting = false;
	c->connected = false;
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 500;
	if (c->backoff_ms > 30000)
		c->backoff_ms = 30000;
	/* Jitter: 75% to 100% of the backoff, so a fleet does not retry in step. */
	int jitter = c->backoff_ms / 4;
	unsigned r = 0;
	if (jitter && getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = (unsigned)op_mono_ms();
	c->retry_at_ms = op_mono_ms() + c->backoff_ms - (jitter ? (int)(r % (unsigned)jitter) : 0);
	pthread_mutex_unlock(&c->mu);
	uint64_t one = 1;
	while (write(c->wake, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void on_subscribed(void *ctx, MQTTAsync_successData *r)
{
	struct consumer *c = ctx;
	int granted = r ? r->alt.qos : c->qos;
	if (granted == 0x80)
		status(c, OP_MQTT_SUB_FAIL, "the broker refused the subscription to %s", c->filter);
	else
		status(c, OP_MQTT_SUBSCRIBED, "%s", c->filter);
}

static void on_subscribe_failed(void *ctx, MQTTAsync_failureData *r)
{
	struct consumer *c = ctx;
	status(c, OP_MQTT_SUB_FAIL, "subscribing to %s failed: %s (%d)", c->filter,
	       r && r->message ? r->message : MQTTAsync_strerror(r ? r->code : -1),
	       r ? r->code : -1);
}

/* On every (re)connection: subscribe again (the session may be new). */
static void on_connected(void *ctx, char *cause)
{
	(void)cause;
	struct consumer *c = ctx;
	pthread_mutex_lock(&c->mu);
	c->connecting = false;
	c->connected = true;
	c->backoff_ms = 0;
	pthread_mutex_unlock(&c->mu);
	status(c, OP_MQTT_CONNECTED, "%s", c->uri);
	MQTTAsync_responseOptions o = MQTTAsync_responseOptions_initializer;
	o.onSuccess = on_subscribed;
	o.onFailure = on_subscribe_failed;
	o.context = c;
	int rc = MQTTAsync_subscribe(c->client, c->filter, c->qos, &o);
	if (rc != MQTTASYNC_SUCCESS)
		status(c, OP_MQTT_SUB_FAIL, "subscribing to %s failed: %s (%d)", c->filter,
		       MQTTAsync_strerror(rc), rc);
}

static void on_connect_failed(void *ctx, MQTTAsync_failureData *r)
{
	struct consumer *c = ctx;
	const char *why = r && r->message ? r->message : MQTTAsync_strerror(r ? r->code : -1);
	status(c, OP_MQTT_CONNECT_FAIL, "cannot connect to %s: %s (%d)", c->uri, why,
	       r ? r->code : -1);
	schedule_retry(c);
}

static void on_lost(void *ctx, char *cause)
{
	struct consumer *c = ctx;
	status(c, OP_MQTT_LOST, "connection to %s lost: %s", c->uri,
	       cause && *cause ? cause : "closed by the broker or the network");
	schedule_retry(c); /* the main thread reconnects, with backoff */
}

static int on_ssl_error(const char *str, size_t len, void *ctx)
{
	struct consumer *c = ctx;
	while (len && (str[len - 1] == '\n' || str[len - 1] == '\r'))
		len--;
	status(c, OP_MQTT_CONNECT_FAIL, "TLS with %s: %.*s", c->uri, (int)(len > 400 ? 400 : len),
	       str);
	return 0;
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
	struct consumer *c = ctx;
	size_t tl = topic_len > 0 ? (size_t)topic_len : strlen(topic);
	size_t pl = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
	struct op_mqtt_msg msg = {.qos = m->qos,
	                          .retained = m->retained != 0,
	                          .dup = m->dup != 0,
	                          .truncated = pl > c->max_payload,
	                          .topic = topic,
	                          .topic_len = tl,
	                          .payload = m->payload,
	                          .payload_len = pl};
	struct op_buf b;
	op_buf_init(&b, OP_MQTT_WIRE_MAX_FRAME + 8);
	if (op_mqtt_frame_msg(&b, &msg) != OP_OK)
		_exit(1); /* only out of memory: let the daemon restart us, unacked */
	for (;;) {
		pthread_mutex_lock(&c->wmu);
		if (op_mqtt_write_all(OP_MQTT_WIRE_FD, b.data, b.len) != OP_OK)
			_exit(0);
		pthread_mutex_unlock(&c->wmu);

		char rep[OP_MQTT_REPLY_LEN];
		size_t have = 0;
		while (have < sizeof(rep)) {
			ssize_t got = read(OP_MQTT_REPLY_FD, rep + have, sizeof(rep) - have);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				_exit(0); /* the daemon is gone: never return, returning acks */
			have += (size_t)got;
		}
		uint32_t len, wait;
		memcpy(&len, rep, 4);
		memcpy(&wait, rep + 6, 4);
		if (len != OP_MQTT_REPLY_LEN - 4 || rep[4] != OP_MQTT_REPLY)
			_exit(1);
		if (rep[5] == OP_MQTT_COMMITTED)
			break;
		pthread_mutex_lock(&c->mu);
		/* Backpressure: offer the same message again after the pause. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += wait / 1000;
		ts.tv_nsec += (long)(wait % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		while (!c->stopping && pthread_cond_timedwait(&c->cv, &c->mu, &ts) != ETIMEDOUT)
			;
		if (c->stopping) {
			/* Never return: returning acks. The main thread exits. */
			for (;;)
				pthread_cond_wait(&c->cv, &c->mu);
		}
		pthread_mutex_unlock(&c->mu);
	}
	op_buf_fini(&b);
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

/* ---- setup ---- */

static char *str_of(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) && v->valuestring[0] ? op_strdup(v->valuestring) : NULL;
}

static int int_of(const cJSON *o, const char *k, int def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? (int)v->valuedouble : def;
}

static bool hello(struct consumer *c, const char *body, size_t len)
{
	cJSON *o = cJSON_ParseWithLength(body, len);
	if (o == NULL)
		return false;
	c->uri = str_of(o, "uri");
	c->client_id = str_of(o, "clientId");
	c->filter = str_of(o, "filter");
	c->ca_file = str_of(o, "caFile");
	c->cert_file = str_of(o, "certFile");
	c->key_file = str_of(o, "keyFile");
	c->username = str_of(o, "username");
	c->password = str_of(o, "password");
	c->qos = int_of(o, "qos", 1);
	c->keepalive_s = int_of(o, "keepaliveS", 30);
	c->connect_timeout_s = int_of(o, "connectTimeoutS", 10);
	c->max_payload = (size_t)int_of(o, "maxPayload", 5 * 1024 * 1024);
	cJSON_Delete(o);
	return c->uri && c->client_id && c->filter;
}

static void connect_now(struct consumer *c)
{
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
	co.keepAliveInterval = c->keepalive_s;
	co.cleansession = 0; /* the broker keeps our subscription and unacked messages */
	co.connectTimeout = c->connect_timeout_s;
	co.username = c->username;
	co.password = c->password;
	co.onFailure = on_connect_failed;
	co.context = c;
	if (strncmp(c->uri, "ssl://", 6) == 0) {
		ssl.trustStore = c->ca_file;
		ssl.CApath = c->ca_file ? NULL : "/etc/ssl/certs";
		ssl.keyStore = c->cert_file;
		ssl.privateKey = c->key_file;
		ssl.enableServerCertAuth = 1;
		ssl.verify = 1; /* the broker's name or address must match its certificate */
		ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
		ssl.ssl_error_cb = on_ssl_error;
		ssl.ssl_error_context = c;
		co.ssl = &ssl;
	}
	pthread_mutex_lock(&c->mu);
	c->connecting = true;
	c->retry_at_ms = 0;
	pthread_mutex_unlock(&c->mu);
	int rc = MQTTAsync_connect(c->client, &co);
	if (rc != MQTTASYNC_SUCCESS) {
		status(c, OP_MQTT_CONNECT_FAIL, "cannot connect to %s: %s (%d)", c->uri,
		       MQTTAsync_strerror(rc), rc);
		schedule_retry(c);
	}
}

/* STOP: optionally leave the subscription, then disconnect and exit. */
static void stop(struct consumer *c, bool unsubscribe)
{
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	bool connected = c->connected;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (connected && unsubscribe) {
		MQTTAsync_responseOptions o = MQTTAsync_responseOptions_initializer;
		if (MQTTAsync_unsubscribe(c->client, c->filter, &o) == MQTTASYNC_SUCCESS)
			(void)MQTTAsync_waitForCompletion(c->client, o.token, 2000);
	}
	if (connected) {
		MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
		d.timeout = 1000;
		(void)MQTTAsync_disconnect(c->client, &d);
	}
	/* Not MQTTAsync_destroy: a callback may be parked, never to return. */
	_exit(0);
}

int op_mqtt_consumer_main(void)
{
	static struct consumer c;
	char buf[65536];
	size_t have = 0;
	bool started = false;

	/* Only fd 0-2 and the sockets: nothing else of the daemon's. */
	(void)close_range(OP_MQTT_REPLY_FD + 1, ~0u, 0);
	if ((c.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return 1;
	pthread_mutex_init(&c.wmu, NULL);
	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.cv, NULL);
	for (;;) {
		int timeout = -1;
		pthread_mutex_lock(&c.mu);
		if (c.retry_at_ms) {
			int64_t left = c.retry_at_ms - op_mono_ms();
			timeout = left < 0 ? 0 : (int)left;
		}
		pthread_mutex_unlock(&c.mu);
		struct pollfd p[2] = {{.fd = OP_MQTT_WIRE_FD, .events = POLLIN},
		                      {.fd = c.wake, .events = POLLIN}};
		int n = poll(p, 2, timeout);
		if (n < 0 && errno != EINTR)
			return 1;
		if (n == 0) {
			connect_now(&c);
			continue;
		}
		if (n < 0)
			continue;
		if (p[1].revents) {
			uint64_t v;
			(void)!read(c.wake, &v, sizeof(v));
		}
		if (!p[0].revents)
			continue;
		ssize_t got = read(OP_MQTT_WIRE_FD, buf + have, sizeof(buf) - have);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			_exit(0); /* the daemon is gone: exit without acking anything held */
		have += (size_t)got;
		for (;;) {
			enum op_mqtt_frame type;
			const char *body;
			size_t blen, used;
			op_err rc = op_mqtt_frame_get(buf, have, &type, &body, &blen, &used);
			if (rc == OP_ERETRY && have < sizeof(buf))
				break;
			if (rc != OP_OK)
				return 1; /* the daemon never sends frames this large */
			if (type == OP_MQTT_HELLO && !started) {
				if (!hello(&c, body, blen)) {
					status(&c, OP_MQTT_FATAL, "bad settings from the daemon");
					return 1;
				}
				int rc2 = MQTTAsync_create(&c.client, c.uri, c.client_id,
				                           MQTTCLIENT_PERSISTENCE_NONE, NULL);
				if (rc2 == MQTTASYNC_SUCCESS)
					rc2 = MQTTAsync_setCallbacks(c.client, &c, on_lost,
					                             on_message, NULL);
				if (rc2 == MQTTASYNC_SUCCESS)
					rc2 = MQTTAsync_setConnected(c.client, &c, on_connected);
				if (rc2 != MQTTASYNC_SUCCESS) {
					status(&c, OP_MQTT_FATAL,
					       "cannot create the MQTT client: %s",
					       MQTTAsync_strerror(rc2));
					return 1;
				}
				started = true;
				connect_now(&c);
			} else if (type == OP_MQTT_STOP) {
				stop(&c, blen > 0 && body[0]);
			} else {
				return 1;
			}
			memmove(buf, buf + used, have - used);
			have -= used;
		}
	}
}
