/*
 * mqtt_load: the load generator of tests/bench/bench_mqtt.sh.
 *
 *   mqtt_load PORT PUB_TOPIC SUB_TOPIC N
 *
 * Subscribes (QoS 1, a callback that returns at once) to SUB_TOPIC on
 * 127.0.0.1:PORT, then publishes N QoS 1 messages of about 300 bytes
 * ({"id":I,...}, I = 0..N-1) to PUB_TOPIC with one paho client whose
 * in-flight window is 1000 (we keep ours at 900: DESIGN.md, paho stalls when
 * its window fills), and waits until N distinct ids arrived on SUB_TOPIC (or
 * 120 s passed). With PUB_TOPIC == SUB_TOPIC this is the broker's own QoS 1
 * pub->sub rate; with an agent pipeline between the two topics it is the
 * agent's. Prints one line:
 *   mqtt_load: N sent, R received (D duplicates) in MS ms: RATE msg/s
 * and exits 0 when all N arrived, 2 otherwise. SUB_TOPIC "-" subscribes to
 * nothing and waits for the N PUBACKs instead.
 *
 *   mqtt_load relay PORT IN_TOPIC OUT_TOPIC
 *
 * Runs until killed as the least any agent must do between two topics: a
 * QoS 1 subscriber to IN_TOPIC whose callback only copies the message and
 * returns (so its PUBACK goes at once, nothing durable), and a publisher that
 * sends each copy QoS 1 to OUT_TOPIC with the same 900-message window. Prints
 * "mqtt_load: relaying" once both are ready.
 */
#include <MQTTAsync.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 900

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long n_total, received, dups, outstanding, acked;
static unsigned char *seen;
static int subscribed, connected;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int on_message(void *ctx, char *topic, int tl, MQTTAsync_message *m)
{
	(void)ctx;
	(void)tl;
	const char *p = m->payload;
	long id = -1;
	const char *k = memmem(p, (size_t)m->payloadlen, "\"id\":", 5);
	if (k)
		id = strtol(k + 5, NULL, 10);
	pthread_mutex_lock(&mu);
	if (id >= 0 && id < n_total) {
		if (seen[id])
			dups++;
		else {
			seen[id] = 1;
			received++;
		}
	}
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static void on_sub(void *ctx, MQTTAsync_successData *r)
{
	(void)ctx;
	(void)r;
	pthread_mutex_lock(&mu);
	subscribed = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void on_fail(void *ctx, MQTTAsync_failureData *r)
{
	fprintf(stderr, "mqtt_load: %s failed: %s\n", (const char *)ctx,
	        r && r->message ? r->message : MQTTAsync_strerror(r ? r->code : -1));
	exit(1);
}

static void on_connect(void *ctx, MQTTAsync_successData *r)
{
	(void)ctx;
	(void)r;
	pthread_mutex_lock(&mu);
	connected++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void on_delivered(void *ctx, MQTTAsync_token t)
{
	(void)ctx;
	(void)t;
	pthread_mutex_lock(&mu);
	outstanding--;
	acked++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static MQTTAsync client(const char *uri, const char *id, MQTTAsync_messageArrived *ma,
                        MQTTAsync_deliveryComplete *dc)
{
	MQTTAsync c;
	if (MQTTAsync_create(&c, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL) != MQTTASYNC_SUCCESS ||
	    MQTTAsync_setCallbacks(c, NULL, NULL, ma, dc) != MQTTASYNC_SUCCESS) {
		fprintf(stderr, "mqtt_load: cannot create a client\n");
		exit(1);
	}
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
	co.cleansession = 1;
	co.keepAliveInterval = 30;
	co.maxInflight = 1000;
	co.onSuccess = on_connect;
	co.onFailure = on_fail;
	co.context = "connect";
	if (MQTTAsync_connect(c, &co) != MQTTASYNC_SUCCESS) {
		fprintf(stderr, "mqtt_load: cannot connect\n");
		exit(1);
	}
	return c;
}

static void wait_for(int *flag, int want)
{
	pthread_mutex_lock(&mu);
	while (*flag < want)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
}

/* Subscribes c to topic at QoS 1 and waits until the broker granted it. */
static void subscribe(MQTTAsync c, const char *topic)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	ro.onSuccess = on_sub;
	ro.onFailure = on_fail;
	ro.context = "subscribe";
	if (MQTTAsync_subscribe(c, topic, 1, &ro) != MQTTASYNC_SUCCESS) {
		fprintf(stderr, "mqtt_load: cannot subscribe\n");
		exit(1);
	}
	wait_for(&subscribed, 1);
}

/* Publishes one QoS 1 message once the window has room; exits on failure. */
static void publish(MQTTAsync c, const char *topic, void *payload, int len)
{
	pthread_mutex_lock(&mu);
	while (outstanding >= WINDOW)
		pthread_cond_wait(&cv, &mu);
	outstanding++;
	pthread_mutex_unlock(&mu);
	MQTTAsync_message m = MQTTAsync_message_initializer;
	m.payload = payload;
	m.payloadlen = len;
	m.qos = 1;
	int rc;
	while ((rc = MQTTAsync_sendMessage(c, topic, &m, NULL)) == MQTTASYNC_MAX_BUFFERED_MESSAGES)
		usleep(100);
	if (rc != MQTTASYNC_SUCCESS) {
		fprintf(stderr, "mqtt_load: publish: %s\n", MQTTAsync_strerror(rc));
		exit(1);
	}
}

/* relay: the subscriber's callback appends copies here; main() sends them. */
struct copy {
	struct copy *next;
	int len;
	char payload[];
};
static struct copy *q_head, **q_tail = &q_head;

static int on_relay_message(void *ctx, char *topic, int tl, MQTTAsync_message *m)
{
	(void)ctx;
	(void)tl;
	struct copy *c = malloc(sizeof(*c) + (size_t)m->payloadlen);
	if (c == NULL) {
		fprintf(stderr, "mqtt_load: out of memory\n");
		exit(1);
	}
	c->next = NULL;
	c->len = m->payloadlen;
	memcpy(c->payload, m->payload, (size_t)m->payloadlen);
	pthread_mutex_lock(&mu);
	*q_tail = c;
	q_tail = &c->next;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static int relay(const char *uri, const char *in, const char *out)
{
	char sid[64], pid[64];
	snprintf(sid, sizeof(sid), "mqtt-relay-sub-%d", (int)getpid());
	snprintf(pid, sizeof(pid), "mqtt-relay-pub-%d", (int)getpid());
	MQTTAsync sub = client(uri, sid, on_relay_message, NULL);
	MQTTAsync pub = client(uri, pid, on_message, on_delivered);
	wait_for(&connected, 2);
	subscribe(sub, in);
	printf("mqtt_load: relaying\n");
	fflush(stdout);
	for (;;) {
		pthread_mutex_lock(&mu);
		while (q_head == NULL)
			pthread_cond_wait(&cv, &mu);
		struct copy *c = q_head;
		q_head = c->next;
		if (q_head == NULL)
			q_tail = &q_head;
		pthread_mutex_unlock(&mu);
		publish(pub, out, c->payload, c->len);
		free(c);
	}
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "relay") == 0) {
		char ruri[64];
		snprintf(ruri, sizeof(ruri), "tcp://127.0.0.1:%s", argv[2]);
		return relay(ruri, argv[3], argv[4]);
	}
	if (argc != 5) {
		fprintf(stderr, "usage: mqtt_load PORT PUB_TOPIC SUB_TOPIC N\n"
		                "       mqtt_load relay PORT IN_TOPIC OUT_TOPIC\n");
		return 1;
	}
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%s", argv[1]);
	const char *pub_topic = argv[2], *sub_topic = argv[3];
	n_total = strtol(argv[4], NULL, 10);
	if (n_total <= 0 || (seen = calloc((size_t)n_total, 1)) == NULL)
		return 1;
	char sid[64], pid[64];
	snprintf(sid, sizeof(sid), "mqtt-load-sub-%d", (int)getpid());
	snprintf(pid, sizeof(pid), "mqtt-load-pub-%d", (int)getpid());
	bool acks_only = strcmp(sub_topic, "-") == 0;
	MQTTAsync sub = acks_only ? NULL : client(uri, sid, on_message, NULL);
	MQTTAsync pub = client(uri, pid, on_message, on_delivered);
	wait_for(&connected, acks_only ? 1 : 2);
	if (!acks_only)
		subscribe(sub, sub_topic);

	char payload[400];
	double t0 = now_s(), deadline = t0 + 120;
	for (long i = 0; i < n_total; i++) {
		int len =
		    snprintf(payload, sizeof(payload),
		             "{\"id\":%ld,\"order\":\"A-%06ld\",\"customer\":{\"id\":\"c-42\","
		             "\"name\":\"ACME Industrial Supplies\",\"country\":\"DE\"},"
		             "\"lines\":[{\"sku\":\"X-100\",\"qty\":3,\"price\":19.90},"
		             "{\"sku\":\"Y-220\",\"qty\":1,\"price\":249.00},"
		             "{\"sku\":\"Z-007\",\"qty\":12,\"price\":1.25}],"
		             "\"currency\":\"EUR\",\"note\":\"deliver to dock 4\"}",
		             i, i);
		publish(pub, pub_topic, payload, len);
	}
	pthread_mutex_lock(&mu);
	while ((acks_only ? acked : received) < n_total && now_s() < deadline) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&cv, &mu, &ts);
	}
	double ms = (now_s() - t0) * 1000;
	long got = acks_only ? acked : received, d = dups;
	pthread_mutex_unlock(&mu);
	printf("mqtt_load: %ld sent, %ld received (%ld duplicates) in %.0f ms: %.0f msg/s\n",
	       n_total, got, d, ms, (double)got / (ms / 1000));
	fflush(stdout);
	/* Exit without a clean disconnect: nothing more to wait for. */
	_exit(got == n_total ? 0 : 2);
	(void)sub;
	(void)pub;
}
