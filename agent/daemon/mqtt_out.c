/*
 * The daemon's MQTT publisher (see mqtt_out.h): one paho MQTTAsync client
 * per broker, started by the first publish to it, and the waits that turn
 * paho's callbacks into a blocking, bounded publish for worker threads.
 *
 * Locks: each client has start_mu (creating and connecting the paho client;
 * only publishers take it) and mu (its state, in-flight window and waiters;
 * paho's callbacks take it too). Paho calls some callbacks while it holds
 * its own global mutex, so nothing here calls into paho while holding mu.
 *
 * A QoS 1 publish waits on a waiter that both the publisher and paho's
 * callback hold a reference to (refs, under mu): whichever lets go last
 * frees it, so a PUBACK that comes after the publisher gave up touches
 * nothing freed. A waiter paho never answered is freed with its client.
 * The in-flight slot of a message is given back when paho answers (not when
 * the publisher gives up), because until then paho's window holds it.
 *
 * Reloads (op_mqtt_out_update) change the set of clients while publishers
 * run: o->v is an array of pointers under o->mu, and a publisher holds its
 * client (users, under o->mu) from the lookup to its return. A client whose
 * broker a reload changed or removed is retired: out of o->v, no longer
 * started, asked to disconnect once its messages in flight are through, and
 * freed by whoever lets go of it last, the reload or its last publisher.
 */
#define OP_LOG_MODULE "mqtt"
#include "agent/daemon/mqtt_out.h"
#include "agent/core/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <MQTTAsync.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/log.h"
#include "agent/engine/pipeline.h"
#include "connectors/mqtt/step.h"
#include "connectors/mqtt/topic.h"

/* Longest wait for the broker to answer our DISCONNECT at shutdown. */
#define DISCONNECT_WAIT_MS 2000
/* Longest publish wait honoured (a day), so deadlines cannot overflow. */
#define MAX_TIMEOUT_MS (24LL * 3600 * 1000)

struct client;

/* One QoS 1 message waiting for its PUBACK. */
struct waiter {
	struct client *c;
	pthread_cond_t cv;
	int refs;                   /* the publisher's and paho's; under c->mu */
	bool done;                  /* paho answered, or the send was refused */
	int code;                   /* MQTTASYNC_SUCCESS or paho's failure code */
	struct waiter *prev, *next; /* in c->pending until done */
};

struct client {
	struct op_mqtt_out *o;
	/* Under o->mu: */
	unsigned users;              /* publishers (and a retiring reload) holding it */
	bool gone;                   /* in o->retired: its last holder frees it */
	struct client *next_retired; /* in o->retired or o->removed */
	/* Under start_mu: a reload dropped it, it starts no more. */
	bool retired;
	struct client *next_retiring; /* the reload's own list of clients to retire */
	char *name, *uri, *client_id, *ca_file, *cert_file, *key_file, *username, *password;
	bool tls;
	int keepalive_s, connect_timeout_s;
	long long connect_timeout_ms;
	int window; /* our in-flight limit, below paho's maxInflight */
	int max_inflight;

	pthread_mutex_t start_mu;
	atomic_bool started; /* cl is created and connecting; set once */
	MQTTAsync cl;

	pthread_mutex_t mu; /* everything below */
	pthread_cond_t state_cv;
	pthread_cond_t window_cv;
	bool connected;
	bool disconnected;   /* our DISCONNECT at shutdown was answered */
	unsigned long fails; /* failed connection attempts and lost connections */
	/* Of those, refusals a quick retry will not fix: the broker's CONNACK
	 * said no, or TLS failed (a certificate, most often). */
	unsigned long refusals;
	op_err fail_cls; /* class of the last failure */
	char last_err[384];
	char tls_err[256]; /* OpenSSL's words during the current attempt */
	int inflight;
	struct waiter *pending;
};

struct op_mqtt_out {
	pthread_mutex_t mu; /* v, n, retired, removed, and the clients' users and links */
	struct client **v;
	size_t n;
	struct client *retired;   /* retired clients that publishers still hold */
	struct client *removed;   /* brokers a reload removed, kept for draining pipelines */
	pthread_condattr_t cattr; /* CLOCK_MONOTONIC */
	atomic_uint_fast64_t published;
	atomic_uint_fast64_t failed;
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

/* Waits on cv until signalled or deadline (CLOCK_MONOTONIC ms); ETIMEDOUT
 * once the deadline has passed. */
static int wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, long long deadline)
{
	if (op_mono_ms() >= deadline)
		return ETIMEDOUT;
	struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
	return pthread_cond_timedwait(cv, mu, &ts);
}

/* ---- paho codes ---- */

/* The class of a paho return or failure code (MQTTASYNC_*). */
static op_err op_err_from_paho(int code)
{
	switch (code) {
	case MQTTASYNC_SUCCESS:
		return OP_OK;
	case MQTTASYNC_DISCONNECTED:
	case MQTTASYNC_OPERATION_INCOMPLETE:
	case MQTTASYNC_FAILURE:
		return OP_ENOCONN;
	case MQTTASYNC_MAX_MESSAGES_INFLIGHT:
	case MQTTASYNC_NO_MORE_MSGIDS:
	case MQTTASYNC_MAX_BUFFERED_MESSAGES:
	case MQTTASYNC_MAX_BUFFERED:
		return OP_EBUSY;
	case MQTTASYNC_BAD_UTF8_STRING:
	case MQTTASYNC_TOPICNAME_TRUNCATED:
	case MQTTASYNC_BAD_QOS:
		return OP_EINVAL;
	case MQTTASYNC_PERSISTENCE_ERROR:
		return OP_EIO;
	default:
		return OP_EINTERNAL;
	}
}

/* The class of a failed connection attempt: CONNACK codes 1-5 are the
 * broker's answer, anything else is the network or TLS. */
static op_err connect_class(int code)
{
	switch (code) {
	case 1: /* unacceptable protocol version */
	case 2: /* identifier rejected */
		return OP_EREJECTED;
	case 4: /* bad user name or password */
	case 5: /* not authorized */
		return OP_EAUTH;
	default:
		return OP_ENOCONN;
	}
}

static const char *connack_text(int code)
{
	switch (code) {
	case 1:
		return "the broker refused the connection: unacceptable protocol version (CONNACK "
		       "1)";
	case 2:
		return "the broker refused the client id (CONNACK 2)";
	case 3:
		return "the broker is unavailable (CONNACK 3)";
	case 4:
		return "the broker refused the user name or password (CONNACK 4)";
	case 5:
		return "the broker says the client is not authorized (CONNACK 5)";
	default:
		return NULL;
	}
}

/* ---- paho callbacks (paho's threads; they take c->mu only) ---- */

static void set_connected(struct client *c)
{
	pthread_mutex_lock(&c->mu);
	bool was = c->connected;
	c->connected = true;
	c->tls_err[0] = '\0';
	pthread_cond_broadcast(&c->state_cv);
	pthread_mutex_unlock(&c->mu);
	if (!was)
		OP_LOGI("publisher connected to broker %s (%s) as %s", c->name, c->uri,
		        c->client_id);
}

static void on_connect_ok(void *ctx, MQTTAsync_successData *r)
{
	(void)r;
	set_connected(ctx);
}

/* Every successful (re)connection, paho's automatic ones included. */
static void on_connected(void *ctx, char *cause)
{
	(void)cause;
	set_connected(ctx);
}

static void on_connect_failed(void *ctx, MQTTAsync_failureData *r)
{
	struct client *c = ctx;
	int code = r ? r->code : MQTTASYNC_FAILURE;
	const char *msg = r && r->message && *r->message ? r->message : NULL;
	const char *connack = connack_text(code);
	char text[sizeof(c->last_err)];
	pthread_mutex_lock(&c->mu);
	if (connack)
		snprintf(text, sizeof(text), "%s", connack);
	else if (c->tls_err[0])
		snprintf(text, sizeof(text), "TLS: %s", c->tls_err);
	else if (msg)
		snprintf(text, sizeof(text), "%s", msg);
	else if (code == MQTTASYNC_FAILURE)
		snprintf(text, sizeof(text),
		         "no MQTT connection could be made (refused, unreachable "
		         "or timed out)");
	else
		snprintf(text, sizeof(text), "%s (paho code %d)", MQTTAsync_strerror(code), code);
	bool changed = strcmp(text, c->last_err) != 0;
	snprintf(c->last_err, sizeof(c->last_err), "%s", text);
	if ((connack && code != 3) || c->tls_err[0])
		c->refusals++;
	c->tls_err[0] = '\0';
	c->fail_cls = connect_class(code);
	c->connected = false;
	c->fails++;
	pthread_cond_broadcast(&c->state_cv);
	pthread_mutex_unlock(&c->mu);
	/* Retries fail the same way every few seconds: say it once. */
	if (changed)
		OP_LOGW("publisher cannot connect to broker %s (%s): %s; retrying", c->name, c->uri,
		        text);
}

static void on_lost(void *ctx, char *cause)
{
	struct client *c = ctx;
	pthread_mutex_lock(&c->mu);
	c->connected = false;
	c->fails++;
	c->fail_cls = OP_ENOCONN;
	snprintf(c->last_err, sizeof(c->last_err), "connection lost: %s",
	         cause && *cause ? cause : "closed by the broker or the network");
	pthread_cond_broadcast(&c->state_cv);
	pthread_mutex_unlock(&c->mu);
	OP_LOGW("publisher lost its connection to broker %s (%s); reconnecting", c->name, c->uri);
}

/*
 * OpenSSL 3 error lines read "<thread>:error:<code>:<library>:<function>:
 * <reason>:<file>:<line>:<data>"; users need the reason and the data only.
 * Other text is kept as it is.
 */
void op_mqtt_tls_reason(const char *s, size_t len, char *out, size_t outlen)
{
	size_t at[9];
	size_t n = 0;
	for (size_t i = 0; i < len && n < 8; i++) {
		if (s[i] == ':')
			at[n++] = i;
	}
	if (n < 6 || at[1] - at[0] != 6 || strncmp(s + at[0] + 1, "error", 5) != 0) {
		snprintf(out, outlen, "%.*s", (int)(len > 250 ? 250 : len), s);
		return;
	}
	const char *reason = s + at[4] + 1;
	int rlen = (int)(at[5] - at[4] - 1);
	const char *data = n == 8 ? s + at[7] + 1 : "";
	int dlen = n == 8 ? (int)(len - at[7] - 1) : 0;
	if (dlen > 0)
		snprintf(out, outlen, "%.*s (%.*s)", rlen, reason, dlen > 120 ? 120 : dlen, data);
	else
		snprintf(out, outlen, "%.*s", rlen, reason);
}

static int on_ssl_error(const char *str, size_t len, void *ctx)
{
	struct client *c = ctx;
	while (len && (str[len - 1] == '\n' || str[len - 1] == '\r'))
		len--;
	pthread_mutex_lock(&c->mu);
	/* The first line is the most specific ("certificate verify failed"). */
	if (c->tls_err[0] == '\0' && len)
		op_mqtt_tls_reason(str, len, c->tls_err, sizeof(c->tls_err));
	pthread_mutex_unlock(&c->mu);
	return 0;
}

static void on_disconnect_ok(void *ctx, MQTTAsync_successData *r)
{
	(void)r;
	struct client *c = ctx;
	pthread_mutex_lock(&c->mu);
	c->disconnected = true;
	c->connected = false;
	pthread_cond_broadcast(&c->state_cv);
	pthread_mutex_unlock(&c->mu);
}

static void on_disconnect_failed(void *ctx, MQTTAsync_failureData *r)
{
	(void)r;
	on_disconnect_ok(ctx, NULL);
}

/* Under c->mu: paho answered w (or will never): frees its slot and wakes
 * its publisher. */
static void finish(struct client *c, struct waiter *w, int code)
{
	if (w->done)
		return;
	w->done = true;
	w->code = code;
	if (w->prev)
		w->prev->next = w->next;
	else
		c->pending = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
	c->inflight--;
	pthread_cond_signal(&c->window_cv);
	pthread_cond_signal(&w->cv);
}

/* Under c->mu: drops one reference to w. */
static void put(struct waiter *w)
{
	if (--w->refs > 0)
		return;
	pthread_cond_destroy(&w->cv);
	op_free(w);
}

static void complete(struct waiter *w, int code)
{
	struct client *c = w->c;
	pthread_mutex_lock(&c->mu);
	finish(c, w, code);
	put(w);
	pthread_mutex_unlock(&c->mu);
}

static void on_pub_ok(void *ctx, MQTTAsync_successData *r)
{
	(void)r;
	complete(ctx, MQTTASYNC_SUCCESS);
}

static void on_pub_failed(void *ctx, MQTTAsync_failureData *r)
{
	int code = r ? r->code : MQTTASYNC_FAILURE;
	complete(ctx, code == MQTTASYNC_SUCCESS ? MQTTASYNC_FAILURE : code);
}

/* ---- clients ---- */

static char *dup_or_empty(const char *s)
{
	return op_strdup(s ? s : "");
}

static char *client_id_of(const struct op_config *cfg, const struct op_config_broker *b)
{
	struct op_buf s;
	op_buf_init(&s, 1024);
	op_err rc = b->client_id && *b->client_id
	                ? op_buf_addf(&s, "%s-pub", b->client_id)
	                : op_buf_addf(&s, "outpost-%s-pub", cfg->agent.id ? cfg->agent.id : "");
	if (rc) {
		op_buf_fini(&s);
		return NULL;
	}
	return op_buf_take(&s);
}

static void free_secret_str(char *s)
{
	if (s)
		op_free_secret(s, strlen(s));
}

static void client_strings_free(struct client *c)
{
	op_free(c->name);
	op_free(c->uri);
	op_free(c->client_id);
	op_free(c->ca_file);
	op_free(c->cert_file);
	op_free(c->key_file);
	op_free(c->username);
	free_secret_str(c->password);
}

static op_err client_init(struct op_mqtt_out *o, struct client *c, const struct op_config *cfg,
                          const struct op_config_broker *b)
{
	c->o = o;
	c->name = dup_or_empty(b->name);
	c->uri = dup_or_empty(b->uri);
	c->client_id = client_id_of(cfg, b);
	c->ca_file = dup_or_empty(b->ca_file);
	c->cert_file = dup_or_empty(b->cert_file);
	c->key_file = dup_or_empty(b->key_file);
	c->username = dup_or_empty(b->username);
	c->password = dup_or_empty(b->password);
	if (!c->name || !c->uri || !c->client_id || !c->ca_file || !c->cert_file || !c->key_file ||
	    !c->username || !c->password) {
		client_strings_free(c);
		return OP_ENOMEM;
	}
	c->tls = b->tls || strncmp(c->uri, "ssl://", 6) == 0;
	c->keepalive_s = b->keepalive_ms >= 1000 ? (int)(b->keepalive_ms / 1000) : 30;
	c->connect_timeout_ms =
	    b->connect_timeout_ms > 0 ? (long long)b->connect_timeout_ms : 10000;
	c->connect_timeout_s = (int)((c->connect_timeout_ms + 999) / 1000);
	c->max_inflight =
	    b->max_inflight >= 10 && b->max_inflight <= 65535 ? (int)b->max_inflight : 1000;
	/* A little room below paho's window: when it is full paho stalls. */
	c->window = c->max_inflight > 20 ? c->max_inflight - 10 : c->max_inflight / 2;
	c->fail_cls = OP_ENOCONN;
	int e = pthread_mutex_init(&c->start_mu, NULL);
	if (e == 0 && (e = pthread_mutex_init(&c->mu, NULL)) != 0)
		pthread_mutex_destroy(&c->start_mu);
	if (e == 0 && (e = pthread_cond_init(&c->state_cv, &o->cattr)) != 0) {
		pthread_mutex_destroy(&c->mu);
		pthread_mutex_destroy(&c->start_mu);
	}
	if (e == 0 && (e = pthread_cond_init(&c->window_cv, &o->cattr)) != 0) {
		pthread_cond_destroy(&c->state_cv);
		pthread_mutex_destroy(&c->mu);
		pthread_mutex_destroy(&c->start_mu);
	}
	if (e) {
		client_strings_free(c);
		return OP_ENOMEM;
	}
	return OP_OK;
}

static void client_fini(struct client *c)
{
	if (atomic_load(&c->started)) {
		pthread_mutex_lock(&c->mu);
		bool connected = c->connected;
		pthread_mutex_unlock(&c->mu);
		MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
		d.onSuccess = on_disconnect_ok;
		d.onFailure = on_disconnect_failed;
		d.context = c;
		if (connected && MQTTAsync_disconnect(c->cl, &d) == MQTTASYNC_SUCCESS) {
			long long deadline = op_mono_ms() + DISCONNECT_WAIT_MS;
			pthread_mutex_lock(&c->mu);
			while (!c->disconnected &&
			       wait_until(&c->state_cv, &c->mu, deadline) != ETIMEDOUT)
				;
			pthread_mutex_unlock(&c->mu);
		}
		/* paho fails what it still holds (our callbacks then run on this
		 * thread) or drops it; after this no callback of c runs again. */
		MQTTAsync_destroy(&c->cl);
	}
	/* Waiters paho never answered; their publishers have returned. */
	while (c->pending) {
		struct waiter *w = c->pending;
		c->pending = w->next;
		pthread_cond_destroy(&w->cv);
		op_free(w);
	}
	pthread_cond_destroy(&c->window_cv);
	pthread_cond_destroy(&c->state_cv);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->start_mu);
	client_strings_free(c);
}

static const char *nonempty(const char *s)
{
	return s && *s ? s : NULL;
}

/* Creates the paho client and starts connecting, once. */
static op_err client_start(struct client *c, char *why, size_t whylen)
{
	if (atomic_load(&c->started))
		return OP_OK;
	op_err rc = OP_OK;
	pthread_mutex_lock(&c->start_mu);
	if (atomic_load(&c->started))
		goto out;
	if (c->retired) {
		say(why, whylen, "broker %s changed with a reload; publish again", c->name);
		rc = OP_ENOCONN;
		goto out;
	}
	int prc = MQTTAsync_create(&c->cl, c->uri, c->client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
	if (prc == MQTTASYNC_SUCCESS)
		prc = MQTTAsync_setConnectionLostCallback(c->cl, c, on_lost);
	if (prc == MQTTASYNC_SUCCESS)
		prc = MQTTAsync_setConnected(c->cl, c, on_connected);
	if (prc == MQTTASYNC_SUCCESS) {
		MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
		MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
		co.MQTTVersion = MQTTVERSION_3_1_1;
		co.cleansession = 1; /* nothing to resume: a publisher holds no session */
		co.keepAliveInterval = c->keepalive_s;
		co.connectTimeout = c->connect_timeout_s;
		co.maxInflight = c->max_inflight;
		co.automaticReconnect = 1;
		co.minRetryInterval = 1;
		co.maxRetryInterval = 30;
		co.username = nonempty(c->username);
		co.password = nonempty(c->password);
		co.onSuccess = on_connect_ok;
		co.onFailure = on_connect_failed;
		co.context = c;
		if (c->tls) {
			ssl.trustStore = nonempty(c->ca_file);
			ssl.CApath = ssl.trustStore ? NULL : "/etc/ssl/certs";
			ssl.keyStore = nonempty(c->cert_file);
			ssl.privateKey = nonempty(c->key_file);
			ssl.enableServerCertAuth = 1;
			/* The broker's name or address must match its certificate. */
			ssl.verify = 1;
			ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
			ssl.ssl_error_cb = on_ssl_error;
			ssl.ssl_error_context = c;
			co.ssl = &ssl;
		}
		prc = MQTTAsync_connect(c->cl, &co);
	}
	if (prc != MQTTASYNC_SUCCESS) {
		if (c->cl)
			MQTTAsync_destroy(&c->cl);
		c->cl = NULL;
		say(why, whylen,
		    "cannot start an MQTT client for broker %s (%s): %s (paho code %d)", c->name,
		    c->uri, MQTTAsync_strerror(prc), prc);
		rc = OP_EINTERNAL;
		goto out;
	}
	atomic_store(&c->started, true);
out:
	pthread_mutex_unlock(&c->start_mu);
	return rc;
}

/*
 * Waits until c is connected, for at most the broker's connect timeout and
 * never past deadline. Network failures keep it waiting (paho retries, and
 * paho 1.3.12 fails a second client's first attempt now and then: "TCP
 * connect completion failure"); a refusal ends it at once.
 */
static op_err wait_connected(struct client *c, long long deadline, char *why, size_t whylen)
{
	pthread_mutex_lock(&c->mu);
	unsigned long refusals = c->refusals;
	long long t0 = op_mono_ms();
	long long until = t0 + c->connect_timeout_ms;
	if (until > deadline)
		until = deadline;
	while (!c->connected && c->refusals == refusals &&
	       wait_until(&c->state_cv, &c->mu, until) != ETIMEDOUT)
		;
	op_err rc = OP_OK;
	if (!c->connected) {
		rc = c->fails ? c->fail_cls : OP_ENOCONN;
		if (c->fails)
			say(why, whylen, "broker %s (%s) is not connected: %s", c->name, c->uri,
			    c->last_err);
		else
			say(why, whylen,
			    "broker %s (%s) is not connected: no connection within %lld ms",
			    c->name, c->uri, op_mono_ms() - t0);
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* What to say when paho did not take a message. */
static op_err send_refused(struct client *c, int prc, char *why, size_t whylen)
{
	op_err rc = op_err_from_paho(prc);
	if (rc == OP_ENOCONN)
		say(why, whylen, "broker %s (%s) is not connected: the connection was just lost",
		    c->name, c->uri);
	else
		say(why, whylen,
		    "the MQTT client for broker %s (%s) did not take the message: %s "
		    "(paho code %d)",
		    c->name, c->uri, MQTTAsync_strerror(prc), prc);
	return rc;
}

static op_err send_qos0(struct client *c, const char *topic, const void *payload, size_t len,
                        bool retained, char *why, size_t whylen)
{
	MQTTAsync_message m = MQTTAsync_message_initializer;
	m.payload = (void *)payload;
	m.payloadlen = (int)len;
	m.qos = 0;
	m.retained = retained;
	int prc = MQTTAsync_sendMessage(c->cl, topic, &m, NULL);
	return prc == MQTTASYNC_SUCCESS ? OP_OK : send_refused(c, prc, why, whylen);
}

static op_err send_qos1(struct client *c, const char *topic, const void *payload, size_t len,
                        bool retained, long long timeout_ms, long long deadline, char *why,
                        size_t whylen)
{
	pthread_mutex_lock(&c->mu);
	while (c->inflight >= c->window) {
		if (wait_until(&c->window_cv, &c->mu, deadline) == ETIMEDOUT) {
			int n = c->inflight;
			pthread_mutex_unlock(&c->mu);
			say(why, whylen,
			    "broker %s (%s) has %d messages in flight and acknowledged none of "
			    "them "
			    "within %lld ms",
			    c->name, c->uri, n, timeout_ms);
			return OP_EBUSY;
		}
	}
	struct waiter *w = op_calloc(1, sizeof(*w));
	if (w == NULL || pthread_cond_init(&w->cv, &c->o->cattr) != 0) {
		pthread_mutex_unlock(&c->mu);
		op_free(w);
		say(why, whylen, "out of memory");
		return OP_ENOMEM;
	}
	w->c = c;
	w->refs = 2;
	w->next = c->pending;
	if (c->pending)
		c->pending->prev = w;
	c->pending = w;
	c->inflight++;
	pthread_mutex_unlock(&c->mu);

	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	ro.onSuccess = on_pub_ok;
	ro.onFailure = on_pub_failed;
	ro.context = w;
	MQTTAsync_message m = MQTTAsync_message_initializer;
	m.payload = (void *)payload;
	m.payloadlen = (int)len;
	m.qos = 1;
	m.retained = retained;
	int prc = MQTTAsync_sendMessage(c->cl, topic, &m, &ro);

	pthread_mutex_lock(&c->mu);
	if (prc != MQTTASYNC_SUCCESS) {
		finish(c, w, prc);
		put(w); /* paho's: it never took the message, so it never answers */
	}
	while (!w->done && wait_until(&w->cv, &c->mu, deadline) != ETIMEDOUT)
		;
	bool done = w->done;
	int code = w->code;
	put(w);
	pthread_mutex_unlock(&c->mu);

	if (prc != MQTTASYNC_SUCCESS)
		return send_refused(c, prc, why, whylen);
	if (!done) {
		say(why, whylen, "broker %s (%s) did not acknowledge the message within %lld ms",
		    c->name, c->uri, timeout_ms);
		return OP_ETIMEOUT;
	}
	if (code == MQTTASYNC_SUCCESS)
		return OP_OK;
	op_err rc = op_err_from_paho(code);
	if (rc == OP_ENOCONN)
		say(why, whylen,
		    "the connection to broker %s (%s) was lost before the broker acknowledged the "
		    "message",
		    c->name, c->uri);
	else
		say(why, whylen, "broker %s (%s): the message failed: %s (paho code %d)", c->name,
		    c->uri, MQTTAsync_strerror(code), code);
	return rc;
}

/* ---- API ---- */

/* A new client for broker b (client ids from cfg's agent id), or NULL. */
static struct client *client_new(struct op_mqtt_out *o, const struct op_config *cfg,
                                 const struct op_config_broker *b)
{
	struct client *c = op_calloc(1, sizeof(*c));
	if (c != NULL && client_init(o, c, cfg, b) != OP_OK) {
		op_free(c);
		c = NULL;
	}
	return c;
}

static void client_free(struct client *c)
{
	client_fini(c);
	op_free(c);
}

/* Whether a and b connect the same way: a reload keeps a for b. */
static bool same_client(const struct client *a, const struct client *b)
{
	return strcmp(a->name, b->name) == 0 && strcmp(a->uri, b->uri) == 0 &&
	       strcmp(a->client_id, b->client_id) == 0 && strcmp(a->ca_file, b->ca_file) == 0 &&
	       strcmp(a->cert_file, b->cert_file) == 0 && strcmp(a->key_file, b->key_file) == 0 &&
	       strcmp(a->username, b->username) == 0 && strcmp(a->password, b->password) == 0 &&
	       a->tls == b->tls && a->keepalive_s == b->keepalive_s &&
	       a->connect_timeout_ms == b->connect_timeout_ms && a->max_inflight == b->max_inflight;
}

/*
 * Asks a retired client to disconnect once its messages in flight are
 * through (paho waits up to the timeout for them), so that it does not
 * fight a new client of the same id at the broker.
 */
static void retire_disconnect(struct client *c)
{
	if (!atomic_load(&c->started))
		return;
	MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
	d.timeout = DISCONNECT_WAIT_MS;
	d.onSuccess = on_disconnect_ok;
	d.onFailure = on_disconnect_failed;
	d.context = c;
	(void)MQTTAsync_disconnect(c->cl, &d);
}

/* Under o->mu: c leaves service, held by the caller until retire(). */
static void pin_locked(struct op_mqtt_out *o, struct client *c, struct client **retiring)
{
	c->users++;
	c->gone = true;
	c->next_retired = o->retired;
	o->retired = c;
	c->next_retiring = *retiring;
	*retiring = c;
}

static void release(struct op_mqtt_out *o, struct client *c);

/*
 * Ends the pinned clients of retiring: they start no more, disconnect once their
 * messages in flight are through, and are freed by whoever lets go of them
 * last. Without o->mu: starting and disconnecting wait for paho.
 */
static void retire(struct op_mqtt_out *o, struct client *retiring)
{
	while (retiring) {
		struct client *c = retiring;
		retiring = c->next_retiring;
		pthread_mutex_lock(&c->start_mu);
		c->retired = true;
		pthread_mutex_unlock(&c->start_mu);
		retire_disconnect(c);
		release(o, c);
	}
}

op_err op_mqtt_out_new(const struct op_config *cfg, struct op_mqtt_out **out)
{
	*out = NULL;
	struct op_mqtt_out *o = op_calloc(1, sizeof(*o));
	if (o == NULL)
		return OP_ENOMEM;
	if (pthread_condattr_init(&o->cattr) != 0) {
		op_free(o);
		return OP_ENOMEM;
	}
	if (pthread_mutex_init(&o->mu, NULL) != 0) {
		pthread_condattr_destroy(&o->cattr);
		op_free(o);
		return OP_ENOMEM;
	}
	pthread_condattr_setclock(&o->cattr, CLOCK_MONOTONIC);
	atomic_init(&o->published, 0);
	atomic_init(&o->failed, 0);
	if (cfg->n_brokers) {
		o->v = op_calloc(cfg->n_brokers, sizeof(*o->v));
		if (o->v == NULL) {
			op_mqtt_out_free(o);
			return OP_ENOMEM;
		}
	}
	for (size_t i = 0; i < cfg->n_brokers; i++) {
		if ((o->v[i] = client_new(o, cfg, &cfg->brokers[i])) == NULL) {
			op_mqtt_out_free(o);
			return OP_ENOMEM;
		}
		o->n++;
	}
	*out = o;
	return OP_OK;
}

/* Under o->mu: takes the removed client that connects as c does out of
 * o->removed, or returns NULL. */
static struct client *unremove_locked(struct op_mqtt_out *o, const struct client *c)
{
	for (struct client **p = &o->removed; *p; p = &(*p)->next_retired) {
		if (same_client(*p, c)) {
			struct client *r = *p;
			*p = r->next_retired;
			r->next_retired = NULL;
			return r;
		}
	}
	return NULL;
}

op_err op_mqtt_out_update(struct op_mqtt_out *o, const struct op_config *cfg,
                          const struct op_config_broker *brokers, size_t n)
{
	/* o->v and o->n change only here, on one thread: read without o->mu. */
	size_t on = o->n;
	struct client **nv = op_calloc(n ? n : 1, sizeof(*nv));
	struct client **unused = op_calloc(n ? n : 1, sizeof(*unused));
	size_t nu = 0, i = 0;
	for (; nv && unused && i < n; i++)
		if ((nv[i] = client_new(o, cfg, &brokers[i])) == NULL)
			break;
	if (nv == NULL || unused == NULL || i < n) {
		while (nv && i > 0)
			client_free(nv[--i]);
		op_free(nv);
		op_free(unused);
		return OP_ENOMEM;
	}
	/* From here nothing fails. An unchanged client carries over with its
	 * connection (also one a reload before removed); a changed one is
	 * retired; a removed one stays findable, for pipelines that drain,
	 * until op_mqtt_out_prune(). */
	struct client *retiring = NULL;
	pthread_mutex_lock(&o->mu);
	struct client **ov = o->v;
	for (i = 0; i < n; i++) {
		struct client *keep = NULL;
		for (size_t k = 0; k < on && keep == NULL; k++) {
			if (ov[k] != NULL && same_client(ov[k], nv[i])) {
				keep = ov[k];
				ov[k] = NULL;
			}
		}
		if (keep == NULL)
			keep = unremove_locked(o, nv[i]);
		if (keep != NULL) {
			unused[nu++] = nv[i];
			nv[i] = keep;
		}
	}
	for (size_t k = 0; k < on; k++) {
		if (ov[k] == NULL)
			continue;
		bool kept = false;
		for (i = 0; i < n && !kept; i++)
			kept = strcmp(nv[i]->name, ov[k]->name) == 0;
		if (kept) {
			OP_LOGI("broker %s (%s): changed by the reload; its publisher disconnects",
			        ov[k]->name, ov[k]->uri);
			pin_locked(o, ov[k], &retiring);
		} else {
			OP_LOGI("broker %s (%s): removed by the reload; its publisher stays while "
			        "pipelines drain",
			        ov[k]->name, ov[k]->uri);
			ov[k]->next_retired = o->removed;
			o->removed = ov[k];
		}
	}
	o->v = nv;
	o->n = n;
	pthread_mutex_unlock(&o->mu);
	op_free(ov);
	retire(o, retiring);
	for (i = 0; i < nu; i++)
		client_free(unused[i]);
	op_free(unused);
	return OP_OK;
}

unsigned op_mqtt_out_prune(struct op_mqtt_out *o)
{
	unsigned n = 0;
	struct client *retiring = NULL;
	pthread_mutex_lock(&o->mu);
	while (o->removed) {
		struct client *c = o->removed;
		o->removed = c->next_retired;
		OP_LOGI("broker %s (%s): no pipeline uses it any more; its publisher disconnects",
		        c->name, c->uri);
		pin_locked(o, c, &retiring);
		n++;
	}
	pthread_mutex_unlock(&o->mu);
	retire(o, retiring);
	return n;
}

void op_mqtt_out_free(struct op_mqtt_out *o)
{
	if (o == NULL)
		return;
	for (size_t i = 0; o->v && i < o->n; i++)
		client_free(o->v[i]);
	op_free(o->v);
	struct client *lists[] = {o->retired, o->removed};
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		while (lists[i]) {
			struct client *c = lists[i];
			lists[i] = c->next_retired;
			client_free(c);
		}
	}
	pthread_mutex_destroy(&o->mu);
	pthread_condattr_destroy(&o->cattr);
	op_free(o);
}

/* The client of broker name, held until release(), or NULL. */
static struct client *find(struct op_mqtt_out *o, const char *name)
{
	struct client *c = NULL;
	pthread_mutex_lock(&o->mu);
	for (size_t i = 0; name && c == NULL && i < o->n; i++)
		if (strcmp(o->v[i]->name, name) == 0)
			c = o->v[i];
	/* A broker a reload removed, for the pipelines still draining. */
	for (struct client *r = o->removed; name && c == NULL && r; r = r->next_retired)
		if (strcmp(r->name, name) == 0)
			c = r;
	if (c)
		c->users++;
	pthread_mutex_unlock(&o->mu);
	return c;
}

/* Lets go of c; the last publisher of a retired client frees it. */
static void release(struct op_mqtt_out *o, struct client *c)
{
	bool last = false;
	pthread_mutex_lock(&o->mu);
	if (--c->users == 0 && c->gone) {
		for (struct client **p = &o->retired; *p; p = &(*p)->next_retired) {
			if (*p == c) {
				*p = c->next_retired;
				last = true;
				break;
			}
		}
	}
	pthread_mutex_unlock(&o->mu);
	if (last)
		client_free(c);
}

op_err op_mqtt_out_publish(struct op_mqtt_out *o, const char *broker, const char *topic,
                           const void *payload, size_t len, int qos, bool retained,
                           long long timeout_ms, char *why, size_t whylen)
{
	if (whylen)
		why[0] = '\0';
	if (timeout_ms < 1)
		timeout_ms = 1;
	if (timeout_ms > MAX_TIMEOUT_MS)
		timeout_ms = MAX_TIMEOUT_MS;
	long long deadline = op_mono_ms() + timeout_ms;
	op_err rc = OP_OK;
	struct client *c = find(o, broker);
	char bad[160];
	size_t tlen = topic ? strlen(topic) : 0;
	if (c == NULL) {
		say(why, whylen,
		    "'%s' is not a broker of the agent's config, expected a [broker %s] "
		    "section",
		    broker ? broker : "(null)", broker ? broker : "NAME");
		rc = OP_ENOTFOUND;
	} else if (qos != 0 && qos != 1) {
		say(why, whylen, "QoS %d is not supported, expected 0 or 1", qos);
		rc = OP_EINVAL;
	} else if (topic == NULL || !op_mqtt_topic_name_valid(topic, tlen, bad, sizeof(bad))) {
		say(why, whylen, "topic \"%.200s\" is not a topic to publish to: %s",
		    topic ? topic : "", topic ? bad : "no topic");
		rc = OP_EINVAL;
	} else if (len > op_mqtt_payload_max(tlen, qos)) {
		say(why, whylen,
		    "%zu bytes of payload do not fit an MQTT message (at most %zu with "
		    "this topic)",
		    len, op_mqtt_payload_max(tlen, qos));
		rc = OP_ELIMIT;
	}
	if (rc == OP_OK)
		rc = client_start(c, why, whylen);
	if (rc == OP_OK)
		rc = wait_connected(c, deadline, why, whylen);
	if (rc == OP_OK) {
		const void *p = payload ? payload : "";
		rc = qos ? send_qos1(c, topic, p, len, retained, timeout_ms, deadline, why, whylen)
		         : send_qos0(c, topic, p, len, retained, why, whylen);
	}
	if (c != NULL)
		release(o, c);
	atomic_fetch_add(rc ? &o->failed : &o->published, 1);
	return rc;
}

static op_err host_publish(void *ud, const char *broker, const char *topic, const void *payload,
                           size_t len, int qos, bool retained, long long timeout_ms, char *why,
                           size_t whylen)
{
	return op_mqtt_out_publish(ud, broker, topic, payload, len, qos, retained, timeout_ms, why,
	                           whylen);
}

void op_mqtt_out_host(struct op_mqtt_out *o, struct op_host *h)
{
	h->mqtt_publish = host_publish;
	h->ud = o;
}

void op_mqtt_out_stats(struct op_mqtt_out *o, struct op_mqtt_out_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->published = atomic_load(&o->published);
	st->failed = atomic_load(&o->failed);
	/* Clients are freed only under o->mu or at op_mqtt_out_free. */
	pthread_mutex_lock(&o->mu);
	for (size_t i = 0; i < o->n; i++) {
		struct client *c = o->v[i];
		pthread_mutex_lock(&c->mu);
		st->inflight += (uint64_t)c->inflight;
		st->connected += c->connected;
		pthread_mutex_unlock(&c->mu);
	}
	pthread_mutex_unlock(&o->mu);
}

struct check_ctx {
	const struct op_config *cfg;
	const struct op_pipeline *p;
	struct op_diag *d;
	op_err rc;
};

static void check_step(const struct op_step *st, void *ud)
{
	struct check_ctx *x = ud;
	const char *b = op_mqtt_step_broker(st);
	if (b == NULL || op_config_broker(x->cfg, b) != NULL)
		return;
	op_diag_add_at(x->d, x->p->origin,
	               "%s.config.broker: '%s' is not a broker of the agent's config, expected a "
	               "[broker %s] section",
	               st->path, b, b);
	x->rc = OP_ECONFIG;
}

op_err op_mqtt_out_check(const struct op_config *cfg, const struct op_engine *e, struct op_diag *d)
{
	struct check_ctx x = {.cfg = cfg, .d = d, .rc = OP_OK};
	for (size_t i = 0; i < op_engine_count(e); i++) {
		x.p = op_engine_at(e, i);
		op_pipeline_walk(x.p, check_step, &x);
	}
	return x.rc;
}
