/*
 * MQTT triggers: the consumer processes and the thread that serves them
 * (mqtt_in.h).
 *
 * Invariants:
 * - A consumer has at most one message in the daemon at a time (it waits
 *   for the REPLY), so `pending` is a flag, and a consumer is freed only
 *   when it is not pending: the commit callback's pointer stays valid.
 * - The mqtt-in thread owns consumers and reads their sockets. The commit
 *   callback, on the store's completion thread, answers on the reply socket
 *   itself (no hand-over, no extra wake-up per message); `pending`, `rfd`
 *   and the stats are under m->mu, and rfd is closed under it.
 */
#define OP_LOG_MODULE "mqtt"
#include "agent/daemon/mqtt_in.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>

#include <wolfssl/wolfcrypt/coding.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/clock.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/core/utf8.h"
#include "agent/trigger/mqtt_wire.h"
#include "agent/trigger/trigger.h"

extern char **environ;

/* Payloads past this are enqueued as BAD_PAYLOAD without their bytes. */
#define MAX_PAYLOAD (5u * 1024 * 1024)
/* What a consumer waits before offering a message again under backpressure. */
#define BUSY_RETRY_MS 1000
/* Restart backoff of a consumer process that died. */
#define RESTART_MIN_MS 1000
#define RESTART_MAX_MS 30000
/* How long a stopping consumer gets to disconnect before SIGKILL. */
#define STOP_GRACE_MS 3000

struct consumer {
	struct op_mqtt_in *m;
	char *pipeline;
	char *broker;
	int index;
	enum op_mqtt_payload payload;
	char *hello; /* the HELLO JSON: also what "unchanged settings" compares */
	int fd;      /* -1 when the process is not running */
	int rfd;     /* the reply socket; -1 likewise; under m->mu */
	pid_t pid;
	struct op_buf in;
	bool pending;     /* under m->mu */
	bool wanted;      /* false: stop it (and leave the subscription) */
	bool unsubscribe; /* with !wanted: STOP asks it to leave the subscription */
	bool stop_sent;
	int64_t stop_deadline;
	int64_t restart_at; /* when not running and wanted: start again at this time */
	int backoff_ms;
	bool connected, subscribed;
	bool lost_logged;
};

struct op_mqtt_in {
	struct op_runtime *rt;
	const struct op_config *cfg;
	pthread_mutex_t *cfg_mu; /* held while reading cfg's brokers */
	char *exe;
	pthread_t thread;
	bool started; /* thread runs; changed by start and reload only */
	int wake;     /* eventfd */

	pthread_mutex_t mu;
	pthread_cond_t cv; /* st.subscribed or planned changed */
	bool reload, stopping;
	bool planned; /* the thread has counted the consumers it wants */
	struct op_mqtt_in_stats st;

	/* Owned by the thread. */
	struct consumer **v;
	size_t n, cap;
};

static void wake(struct op_mqtt_in *m)
{
	uint64_t one = 1;
	while (write(m->wake, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void stat_add(struct op_mqtt_in *m, uint64_t *field, int64_t d)
{
	pthread_mutex_lock(&m->mu);
	*field = (uint64_t)((int64_t)*field + d);
	pthread_mutex_unlock(&m->mu);
}

static const char *payload_name(enum op_mqtt_payload p)
{
	return p == OP_MQTT_PAYLOAD_TEXT ? "text" : p == OP_MQTT_PAYLOAD_BASE64 ? "base64" : "json";
}

/* ---- what should run ---- */

static char *client_prefix(const struct op_config *cfg, const struct op_config_broker *b)
{
	if (b->client_id && *b->client_id)
		return op_strdup(b->client_id);
	struct op_buf s;
	op_buf_init(&s, 1024);
	if (op_buf_addf(&s, "outpost-%s", cfg->agent.id) != OP_OK) {
		op_buf_fini(&s);
		return NULL;
	}
	return op_buf_take(&s);
}

/* The HELLO settings of consumer i of pipeline p; NULL on OOM. */
static char *hello_of(const struct op_config *cfg, const struct op_pipeline *p,
                      const struct op_mqtt_trigger *t, const struct op_config_broker *b, int i)
{
	char *prefix = client_prefix(cfg, b);
	/* Whole seconds for paho (the config bounds them to 1 s .. 1 h); a
	 * connect timeout rounded up, as the publishers' (mqtt_out.c). */
	int keepalive_s = (int)(b->keepalive_ms / 1000),
	    connect_s = (int)((b->connect_timeout_ms + 999) / 1000);
	struct op_buf id, filter;
	op_buf_init(&id, 65535);
	op_buf_init(&filter, 65535 + 1024);
	cJSON *o = cJSON_CreateObject();
	char *out = NULL;
	bool ok = prefix && o && op_buf_addf(&id, "%s-%s-%d", prefix, p->name, i) == OP_OK;
	/* One client: a plain subscription (retained messages arrive too);
	 * several: one shared subscription whose members split the messages. */
	if (ok && t->consumers > 1)
		ok = op_buf_addf(&filter, "$share/%s-%s/%s", prefix, p->name, t->topic) == OP_OK;
	else if (ok)
		ok = op_buf_adds(&filter, t->topic) == OP_OK;
	ok =
	    ok && cJSON_AddStringToObject(o, "uri", b->uri) &&
	    cJSON_AddStringToObject(o, "clientId", op_buf_str(&id)) &&
	    cJSON_AddStringToObject(o, "filter", op_buf_str(&filter)) &&
	    cJSON_AddNumberToObject(o, "qos", t->qos) &&
	    cJSON_AddNumberToObject(o, "keepaliveS", keepalive_s) &&
	    cJSON_AddNumberToObject(o, "connectTimeoutS", connect_s) &&
	    cJSON_AddNumberToObject(o, "maxPayload", MAX_PAYLOAD) &&
	    (!b->ca_file || !*b->ca_file || cJSON_AddStringToObject(o, "caFile", b->ca_file)) &&
	    (!b->cert_file || !*b->cert_file ||
	     cJSON_AddStringToObject(o, "certFile", b->cert_file)) &&
	    (!b->key_file || !*b->key_file || cJSON_AddStringToObject(o, "keyFile", b->key_file)) &&
	    (!b->username || !*b->username ||
	     cJSON_AddStringToObject(o, "username", b->username)) &&
	    (!b->password || !*b->password || cJSON_AddStringToObject(o, "password", b->password));
	if (ok)
		out = op_json_print(o, OP_JSON_COMPACT);
	cJSON_Delete(o);
	op_buf_fini(&id);
	op_buf_fini(&filter);
	op_free(prefix);
	return out;
}

static void consumer_free(struct consumer *c)
{
	if (c == NULL)
		return;
	op_free(c->pipeline);
	op_free(c->broker);
	op_free(c->hello);
	op_buf_fini(&c->in);
	op_free(c);
}

static struct consumer *find(struct op_mqtt_in *m, const char *pipeline, int index,
                             const char *hello)
{
	for (size_t i = 0; i < m->n; i++) {
		struct consumer *c = m->v[i];
		if (c->wanted && c->index == index && strcmp(c->pipeline, pipeline) == 0 &&
		    strcmp(c->hello, hello) == 0)
			return c;
	}
	return NULL;
}

/*
 * Marks the consumers the current set wants (new ones start at once) and
 * the ones it no longer wants. Called on the thread.
 */
static void plan(struct op_mqtt_in *m)
{
	bool *keep = op_calloc(m->n ? m->n : 1, sizeof(*keep));
	if (keep == NULL) {
		OP_LOGE("out of memory: MQTT consumers not updated");
		return;
	}
	size_t old_n = m->n;
	/* A reload may change the brokers; the set's pipelines were checked
	 * against the brokers it made current before the set. */
	pthread_mutex_lock(m->cfg_mu);
	struct op_runtime_set *set = op_runtime_get(m->rt);
	const struct op_engine *e = op_runtime_engine(set);
	for (size_t pi = 0; pi < op_engine_count(e); pi++) {
		const struct op_pipeline *p = op_engine_at(e, pi);
		const struct op_mqtt_trigger *t = op_trigger_mqtt(p);
		if (t == NULL)
			continue;
		const struct op_config_broker *b = op_config_broker(m->cfg, t->broker);
		if (b == NULL)
			continue; /* refused at load by op_mqtt_in_check */
		for (int i = 0; i < t->consumers; i++) {
			char *hello = hello_of(m->cfg, p, t, b, i);
			struct consumer *c = hello ? find(m, p->name, i, hello) : NULL;
			if (c) {
				for (size_t k = 0; k < old_n; k++)
					if (m->v[k] == c)
						keep[k] = true;
				op_free(hello);
				continue;
			}
			if (m->n == m->cap) {
				size_t cap = m->cap ? m->cap * 2 : 8;
				struct consumer **v = op_realloc(m->v, cap * sizeof(*v));
				if (v == NULL) {
					op_free(hello);
					goto oom;
				}
				m->v = v;
				m->cap = cap;
			}
			c = op_calloc(1, sizeof(*c));
			if (c == NULL || hello == NULL ||
			    (c->pipeline = op_strdup(p->name)) == NULL ||
			    (c->broker = op_strdup(b->name)) == NULL) {
				op_free(hello);
				consumer_free(c);
				goto oom;
			}
			c->m = m;
			c->index = i;
			c->payload = t->payload;
			c->hello = hello;
			c->fd = -1;
			c->rfd = -1;
			c->wanted = true;
			op_buf_init(&c->in, OP_MQTT_WIRE_MAX_FRAME + 8);
			m->v[m->n++] = c;
			stat_add(m, &m->st.consumers, 1);
		}
	}
	op_runtime_put(m->rt, set);
	pthread_mutex_unlock(m->cfg_mu);
	for (size_t k = 0; k < old_n; k++) {
		struct consumer *c = m->v[k];
		if (c->wanted && !keep[k]) {
			c->wanted = false;
			c->unsubscribe = true; /* the pipeline or its trigger changed */
			stat_add(m, &m->st.consumers, -1);
		}
	}
	op_free(keep);
	return;
oom:
	op_runtime_put(m->rt, set);
	pthread_mutex_unlock(m->cfg_mu);
	op_free(keep);
	OP_LOGE("out of memory: MQTT consumers not all started");
}

/* ---- processes ---- */

/* Moves *fd (close-on-exec) above the child's fixed fds, so that dup2 onto
 * them always happens (a dup2 onto itself would keep close-on-exec). */
static bool lift(int *fd)
{
	if (*fd > OP_MQTT_REPLY_FD)
		return true;
	int d = fcntl(*fd, F_DUPFD_CLOEXEC, OP_MQTT_REPLY_FD + 1);
	close(*fd);
	*fd = d;
	return d >= 0;
}

static void spawn(struct op_mqtt_in *m, struct consumer *c)
{
	int sv[2] = {-1, -1}, rv[2] = {-1, -1};
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rv) != 0 || !lift(&sv[1]) ||
	    !lift(&rv[1])) {
		char eb[128];
		OP_LOGE("%s: consumer %d: socketpair: %s", c->pipeline, c->index,
		        strerror_r(errno, eb, sizeof(eb)));
		goto fail;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none;
	sigemptyset(&none);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_adddup2(&fa, sv[1], OP_MQTT_WIRE_FD);
	posix_spawn_file_actions_adddup2(&fa, rv[1], OP_MQTT_REPLY_FD);
	/* Its own process group (a terminal's ^C reaches the daemon only, which
	 * stops the consumers in order) and no blocked signals. */
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
	char *argv[] = {"outpostd", "--mqtt-consumer", NULL};
	int rc = posix_spawn(&c->pid, m->exe, &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(sv[1]);
	close(rv[1]);
	sv[1] = rv[1] = -1;
	if (rc != 0) {
		char eb[128];
		OP_LOGE("%s: consumer %d: cannot start %s: %s", c->pipeline, c->index, m->exe,
		        strerror_r(rc, eb, sizeof(eb)));
		goto fail;
	}
	c->fd = sv[0];
	pthread_mutex_lock(&m->mu);
	c->rfd = rv[0];
	pthread_mutex_unlock(&m->mu);
	op_buf_reset(&c->in);
	c->connected = c->subscribed = false;
	struct op_buf b;
	op_buf_init(&b, OP_MQTT_WIRE_MAX_FRAME);
	if (op_mqtt_frame_put(&b, OP_MQTT_HELLO, c->hello, strlen(c->hello)) != OP_OK ||
	    send(c->fd, b.data, b.len, MSG_NOSIGNAL) != (ssize_t)b.len)
		OP_LOGW("%s: consumer %d: cannot send its settings", c->pipeline, c->index);
	op_buf_fini(&b);
	OP_LOGD("%s: consumer %d started (pid %d)", c->pipeline, c->index, (int)c->pid);
	return;
fail:
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0)
			close(sv[i]);
		if (rv[i] >= 0)
			close(rv[i]);
	}
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : RESTART_MIN_MS;
	if (c->backoff_ms > RESTART_MAX_MS)
		c->backoff_ms = RESTART_MAX_MS;
	c->restart_at = op_mono_ms() + c->backoff_ms;
}

static void set_connected(struct consumer *c, bool connected, bool subscribed)
{
	struct op_mqtt_in *m = c->m;
	pthread_mutex_lock(&m->mu);
	m->st.connected += (uint64_t)((int)connected - (int)c->connected);
	m->st.subscribed += (uint64_t)((int)subscribed - (int)c->subscribed);
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	c->connected = connected;
	c->subscribed = subscribed;
}

/* The process ended (EOF on its socket): reap it, plan a restart. */
static void ended(struct op_mqtt_in *m, struct consumer *c)
{
	close(c->fd);
	c->fd = -1;
	pthread_mutex_lock(&m->mu);
	close(c->rfd);
	c->rfd = -1;
	pthread_mutex_unlock(&m->mu);
	set_connected(c, false, false);
	int status = 0;
	pid_t r;
	while ((r = waitpid(c->pid, &status, 0)) < 0 && errno == EINTR)
		;
	if (!c->wanted || m->stopping)
		return;
	char how[64];
	if (r > 0 && WIFSIGNALED(status))
		snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(status));
	else
		snprintf(how, sizeof(how), "exited with status %d",
		         r > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : RESTART_MIN_MS;
	if (c->backoff_ms > RESTART_MAX_MS)
		c->backoff_ms = RESTART_MAX_MS;
	c->restart_at = op_mono_ms() + c->backoff_ms;
	stat_add(m, &m->st.restarts, 1);
	OP_LOGW("%s: MQTT consumer %d %s; restarting in %d ms", c->pipeline, c->index, how,
	        c->backoff_ms);
}

/* With m->mu held: answers c's pending message. */
static void send_reply(struct consumer *c, enum op_mqtt_reply r, uint32_t retry_ms)
{
	char f[OP_MQTT_REPLY_LEN];
	uint32_t len = OP_MQTT_REPLY_LEN - 4;
	memcpy(f, &len, 4);
	f[4] = OP_MQTT_REPLY;
	f[5] = (char)r;
	memcpy(f + 6, &retry_ms, 4);
	/* A consumer that died shows up as EOF on its other socket. */
	if (c->rfd >= 0)
		(void)send(c->rfd, f, sizeof(f), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* ---- messages ---- */

/* On the store's completion thread: the event is committed (or refused). */
static void committed(void *ud, op_err rc, const char *id)
{
	(void)id;
	struct consumer *c = ud;
	struct op_mqtt_in *m = c->m;
	pthread_mutex_lock(&m->mu);
	c->pending = false;
	if (rc == OP_OK) {
		m->st.accepted++;
		send_reply(c, OP_MQTT_COMMITTED, 0);
	} else {
		m->st.busy++;
		OP_LOGW("%s: MQTT message not accepted (%s): the broker keeps it and it is offered "
		        "again",
		        c->pipeline, op_err_str(rc));
		send_reply(c, OP_MQTT_BUSY, BUSY_RETRY_MS);
	}
	/* A consumer whose process is gone waits for this to be freed. */
	bool gone = c->rfd < 0;
	pthread_mutex_unlock(&m->mu);
	if (gone)
		wake(m);
}

static cJSON *base64_of(const char *p, size_t n)
{
	word32 olen = (word32)((n + 2) / 3 * 4 + 1);
	char *o = op_malloc(olen);
	cJSON *s = NULL;
	if (o == NULL)
		return NULL;
	if (n == 0)
		olen = 0;
	else if (Base64_Encode_NoNl((const byte *)p, (word32)n, (byte *)o, &olen) != 0)
		goto out;
	o[olen] = '\0';
	s = cJSON_CreateString(o);
out:
	op_free(o);
	return s;
}

/* The event's message for payload mode mode; on a payload that does not fit,
 * NULL with why set (and *oom false). */
static cJSON *message_of(enum op_mqtt_payload mode, const struct op_mqtt_msg *msg, char *why,
                         size_t whylen, bool *oom)
{
	*oom = false;
	if (msg->truncated) {
		snprintf(why, whylen, "payload is %zu bytes, expected at most %u", msg->payload_len,
		         MAX_PAYLOAD);
		return NULL;
	}
	cJSON *v = NULL;
	switch (mode) {
	case OP_MQTT_PAYLOAD_JSON:
		v = cJSON_ParseWithLength(msg->payload, msg->payload_len);
		if (v == NULL)
			snprintf(why, whylen, "payload is not JSON (%zu bytes)", msg->payload_len);
		return v;
	case OP_MQTT_PAYLOAD_TEXT: {
		if (!op_utf8_valid(msg->payload, msg->payload_len) ||
		    memchr(msg->payload, '\0', msg->payload_len)) {
			snprintf(why, whylen, "payload is not UTF-8 text (%zu bytes)",
			         msg->payload_len);
			return NULL;
		}
		char *s = op_malloc(msg->payload_len + 1);
		if (s) {
			memcpy(s, msg->payload, msg->payload_len);
			s[msg->payload_len] = '\0';
			v = cJSON_CreateString(s);
			op_free(s);
		}
		break;
	}
	case OP_MQTT_PAYLOAD_BASE64:
		v = base64_of(msg->payload, msg->payload_len);
		break;
	}
	*oom = v == NULL;
	return v;
}

static void on_msg(struct op_mqtt_in *m, struct consumer *c, const char *body, size_t len)
{
	struct op_mqtt_msg msg;
	pthread_mutex_lock(&m->mu);
	bool pending = c->pending;
	pthread_mutex_unlock(&m->mu);
	if (pending || op_mqtt_msg_parse(body, len, &msg) != OP_OK) {
		OP_LOGE("%s: MQTT consumer %d sent a malformed message frame; restarting it",
		        c->pipeline, c->index);
		shutdown(c->fd, SHUT_RDWR);
		return;
	}
	stat_add(m, &m->st.received, 1);
	char why[160] = "";
	bool oom;
	cJSON *message = message_of(c->payload, &msg, why, sizeof(why), &oom);
	cJSON *trigger = cJSON_CreateObject();
	bool ok = !oom && trigger && cJSON_AddStringToObject(trigger, "type", "mqtt") &&
	          cJSON_AddStringToObject(trigger, "broker", c->broker);
	if (ok) {
		char *topic = op_malloc(msg.topic_len + 1);
		if (topic) {
			memcpy(topic, msg.topic, msg.topic_len);
			topic[msg.topic_len] = '\0';
		}
		/* Topics are UTF-8 by the MQTT spec; paho does not check. */
		ok = topic && op_utf8_valid(topic, msg.topic_len) &&
		     cJSON_AddStringToObject(trigger, "topic", topic);
		op_free(topic);
	}
	ok = ok && cJSON_AddNumberToObject(trigger, "qos", msg.qos) &&
	     cJSON_AddBoolToObject(trigger, "retained", msg.retained) &&
	     cJSON_AddBoolToObject(trigger, "dup", msg.dup);
	if (ok && message == NULL) {
		ok = cJSON_AddStringToObject(trigger, "payloadError", why) &&
		     cJSON_AddStringToObject(trigger, "payloadMode", payload_name(c->payload));
		message = ok ? cJSON_CreateNull() : NULL;
		ok = message != NULL;
		if (ok)
			stat_add(m, &m->st.bad_payload, 1);
	}
	op_err rc = OP_ENOMEM;
	if (ok) {
		pthread_mutex_lock(&m->mu);
		c->pending = true;
		pthread_mutex_unlock(&m->mu);
		rc = op_runtime_submit_cb(m->rt, c->pipeline, message, trigger, committed, c);
	}
	cJSON_Delete(message);
	cJSON_Delete(trigger);
	if (rc != OP_OK) {
		OP_LOGW("%s: MQTT message not accepted (%s): not acknowledged, offered again in %d "
		        "ms",
		        c->pipeline, op_err_str(rc), BUSY_RETRY_MS);
		pthread_mutex_lock(&m->mu);
		c->pending = false;
		m->st.busy++;
		send_reply(c, OP_MQTT_BUSY, BUSY_RETRY_MS);
		pthread_mutex_unlock(&m->mu);
	}
}

/* Logs once all wanted consumers of c's pipeline are subscribed. */
static void log_all_subscribed(struct op_mqtt_in *m, struct consumer *c, const char *filter, int n)
{
	int want = 0, have = 0;
	for (size_t i = 0; i < m->n; i++) {
		const struct consumer *o = m->v[i];
		if (!o->wanted || strcmp(o->pipeline, c->pipeline) != 0)
			continue;
		want++;
		have += o->subscribed;
	}
	if (want == have)
		OP_LOGI("%s: %d MQTT consumer%s subscribed to %.*s at broker %s", c->pipeline, want,
		        want == 1 ? "" : "s", n, filter, c->broker);
}

static void on_status(struct op_mqtt_in *m, struct consumer *c, const char *body, size_t len)
{
	if (len < 1)
		return;
	int st = (unsigned char)body[0];
	int n = (int)(len - 1 > 400 ? 400 : len - 1);
	const char *t = body + 1;
	switch (st) {
	case OP_MQTT_CONNECTED:
		set_connected(c, true, false);
		c->backoff_ms = 0;
		OP_LOGD("%s: MQTT consumer %d connected to %.*s", c->pipeline, c->index, n, t);
		c->lost_logged = false;
		break;
	case OP_MQTT_SUBSCRIBED:
		set_connected(c, true, true);
		OP_LOGD("%s: MQTT consumer %d subscribed to %.*s", c->pipeline, c->index, n, t);
		log_all_subscribed(m, c, t, n);
		break;
	case OP_MQTT_LOST:
		set_connected(c, false, false);
		OP_LOGW("%s: MQTT consumer %d: %.*s; reconnecting", c->pipeline, c->index, n, t);
		break;
	case OP_MQTT_CONNECT_FAIL:
		set_connected(c, false, false);
		/* Logged once per outage; the retries go on quietly. */
		if (!c->lost_logged)
			OP_LOGW("%s: MQTT consumer %d: %.*s; retrying with backoff", c->pipeline,
			        c->index, n, t);
		else
			OP_LOGD("%s: MQTT consumer %d: %.*s", c->pipeline, c->index, n, t);
		c->lost_logged = true;
		break;
	case OP_MQTT_SUB_FAIL:
	case OP_MQTT_FATAL:
		OP_LOGE("%s: MQTT consumer %d: %.*s", c->pipeline, c->index, n, t);
		break;
	default:
		break;
	}
}

/* Reads what c sent; handles whole frames. */
static void readable(struct op_mqtt_in *m, struct consumer *c)
{
	char chunk[65536];
	ssize_t got = recv(c->fd, chunk, sizeof(chunk), MSG_DONTWAIT);
	if (got < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (got <= 0 || op_buf_add(&c->in, chunk, (size_t)got) != OP_OK) {
		ended(m, c);
		return;
	}
	size_t off = 0;
	for (;;) {
		enum op_mqtt_frame type;
		const char *body;
		size_t blen, used;
		op_err rc = op_mqtt_frame_get(c->in.data + off, c->in.len - off, &type, &body,
		                              &blen, &used);
		if (rc == OP_ERETRY)
			break;
		if (rc != OP_OK) {
			OP_LOGE("%s: MQTT consumer %d sent a malformed frame; restarting it",
			        c->pipeline, c->index);
			shutdown(c->fd, SHUT_RDWR);
			break;
		}
		if (type == OP_MQTT_MSG)
			on_msg(m, c, body, blen);
		else if (type == OP_MQTT_STATUS)
			on_status(m, c, body, blen);
		off += used;
	}
	if (off) {
		memmove(c->in.data, c->in.data + off, c->in.len - off);
		c->in.len -= off;
	}
}

static void send_stop(struct consumer *c, bool unsubscribe)
{
	char u = unsubscribe;
	struct op_buf b;
	op_buf_init(&b, 64);
	if (op_mqtt_frame_put(&b, OP_MQTT_STOP, &u, 1) == OP_OK)
		(void)send(c->fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	op_buf_fini(&b);
	c->stop_sent = true;
	c->stop_deadline = op_mono_ms() + STOP_GRACE_MS;
}

/* ---- the thread ---- */

/* Starts, stops and frees consumers as wanted; returns the poll timeout. */
static int tend(struct op_mqtt_in *m, bool stopping)
{
	int64_t now = op_mono_ms(), next = -1;
	size_t k = 0;
	for (size_t i = 0; i < m->n; i++) {
		struct consumer *c = m->v[i];
		bool run = c->wanted && !stopping;
		if (c->fd >= 0 && !run && !c->stop_sent)
			send_stop(c, c->unsubscribe && !stopping);
		if (c->fd >= 0 && c->stop_sent && now >= c->stop_deadline) {
			kill(c->pid, SIGKILL);
			c->stop_deadline = now + STOP_GRACE_MS;
		}
		if (c->fd < 0 && run && now >= c->restart_at) {
			c->stop_sent = false;
			spawn(m, c);
		}
		pthread_mutex_lock(&m->mu);
		bool pending = c->pending;
		pthread_mutex_unlock(&m->mu);
		if (c->fd < 0 && !run && !pending) {
			consumer_free(c);
			continue;
		}
		int64_t due = c->fd >= 0 ? (c->stop_sent ? c->stop_deadline : -1)
		                         : (run ? c->restart_at : -1);
		if (due >= 0 && (next < 0 || due < next))
			next = due;
		m->v[k++] = c;
	}
	m->n = k;
	if (next < 0)
		return -1;
	return next <= now ? 0 : (int)(next - now);
}

static void *thread_main(void *arg)
{
	struct op_mqtt_in *m = arg;
	(void)pthread_setname_np(pthread_self(), "op-mqtt-in");
	struct pollfd *pf = NULL;
	size_t pf_cap = 0;
	struct consumer **who = NULL;
	plan(m);
	pthread_mutex_lock(&m->mu);
	m->planned = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	for (;;) {
		pthread_mutex_lock(&m->mu);
		bool reload = m->reload, stopping = m->stopping;
		m->reload = false;
		pthread_mutex_unlock(&m->mu);
		if (reload && !stopping)
			plan(m);
		int timeout = tend(m, stopping);
		if (stopping && m->n == 0)
			break;
		if (pf_cap < m->n + 1) {
			size_t cap = m->n + 8;
			struct pollfd *npf = op_realloc(pf, cap * sizeof(*pf));
			struct consumer **nw = npf ? op_realloc(who, cap * sizeof(*who)) : NULL;
			if (npf)
				pf = npf;
			if (nw)
				who = nw;
			if (npf == NULL || nw == NULL) {
				OP_LOGE("out of memory in the MQTT trigger thread");
				struct timespec ts = {0, 100 * 1000000};
				nanosleep(&ts, NULL);
				continue;
			}
			pf_cap = cap;
		}
		size_t np = 0;
		pf[np++] = (struct pollfd){.fd = m->wake, .events = POLLIN};
		for (size_t i = 0; i < m->n; i++) {
			if (m->v[i]->fd < 0)
				continue;
			who[np] = m->v[i];
			pf[np++] = (struct pollfd){.fd = m->v[i]->fd, .events = POLLIN};
		}
		int r = poll(pf, np, timeout);
		if (r < 0 && errno != EINTR) {
			char eb[128];
			OP_LOGE("poll: %s", strerror_r(errno, eb, sizeof(eb)));
			break;
		}
		if (r <= 0)
			continue;
		if (pf[0].revents) {
			uint64_t v;
			while (read(m->wake, &v, sizeof(v)) < 0 && errno == EINTR)
				;
		}
		for (size_t i = 1; i < np; i++) {
			if (pf[i].revents)
				readable(m, who[i]);
		}
	}
	op_free(pf);
	op_free(who);
	return NULL;
}

/* True if the running set has an mqtt trigger. */
static bool uses_mqtt(struct op_runtime *rt)
{
	struct op_runtime_set *set = op_runtime_get(rt);
	const struct op_engine *e = op_runtime_engine(set);
	bool any = false;
	for (size_t i = 0; i < op_engine_count(e) && !any; i++)
		any = op_trigger_mqtt(op_engine_at(e, i)) != NULL;
	op_runtime_put(rt, set);
	return any;
}

/* The thread starts with the first set that has an mqtt trigger (it costs a
 * stack and wolfSSL's thread-local block), and then stays. */
static op_err start_thread(struct op_mqtt_in *m)
{
	if (pthread_create(&m->thread, NULL, thread_main, m) != 0)
		return OP_ENOMEM;
	m->started = true;
	return OP_OK;
}

op_err op_mqtt_in_start(struct op_runtime *rt, const struct op_config *cfg, pthread_mutex_t *cfg_mu,
                        const char *exe, struct op_mqtt_in **out)
{
	*out = NULL;
	struct op_mqtt_in *m = op_calloc(1, sizeof(*m));
	if (m == NULL)
		return OP_ENOMEM;
	m->rt = rt;
	m->cfg = cfg;
	m->cfg_mu = cfg_mu;
	m->wake = -1;
	if ((m->exe = op_strdup(exe)) == NULL || pthread_mutex_init(&m->mu, NULL) != 0) {
		op_free(m->exe);
		op_free(m);
		return OP_ENOMEM;
	}
	if (op_cond_init_mono(&m->cv) != 0) {
		pthread_mutex_destroy(&m->mu);
		op_free(m->exe);
		op_free(m);
		return OP_ENOMEM;
	}
	m->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	op_err rc = m->wake < 0 ? op_err_from_errno(errno) : OP_OK;
	if (rc == OP_OK && uses_mqtt(rt))
		rc = start_thread(m);
	if (rc != OP_OK) {
		if (m->wake >= 0)
			close(m->wake);
		pthread_cond_destroy(&m->cv);
		pthread_mutex_destroy(&m->mu);
		op_free(m->exe);
		op_free(m);
		return rc;
	}
	*out = m;
	return OP_OK;
}

bool op_mqtt_in_wait_subscribed(struct op_mqtt_in *m, int64_t timeout_ms)
{
	if (m == NULL || !m->started)
		return true;
	struct timespec dl;
	op_mono_deadline(timeout_ms, &dl);
	pthread_mutex_lock(&m->mu);
	int rc = 0;
	while (rc == 0 && !m->stopping && !(m->planned && m->st.subscribed >= m->st.consumers))
		rc = pthread_cond_timedwait(&m->cv, &m->mu, &dl);
	bool all = m->planned && m->st.subscribed >= m->st.consumers;
	pthread_mutex_unlock(&m->mu);
	return all;
}

op_err op_mqtt_in_reload(struct op_mqtt_in *m)
{
	if (m == NULL)
		return OP_OK;
	if (!m->started) {
		if (uses_mqtt(m->rt) && start_thread(m) != OP_OK) {
			OP_LOGE("cannot start the MQTT trigger thread");
			return OP_ENOMEM;
		}
		return OP_OK;
	}
	pthread_mutex_lock(&m->mu);
	m->reload = true;
	pthread_mutex_unlock(&m->mu);
	wake(m);
	return OP_OK;
}

void op_mqtt_in_stop(struct op_mqtt_in *m)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->mu);
	m->stopping = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	wake(m);
	if (m->started)
		pthread_join(m->thread, NULL);
	close(m->wake);
	op_free(m->v);
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	op_free(m->exe);
	op_free(m);
}

void op_mqtt_in_stats(struct op_mqtt_in *m, struct op_mqtt_in_stats *st)
{
	if (m == NULL) {
		memset(st, 0, sizeof(*st));
		return;
	}
	pthread_mutex_lock(&m->mu);
	*st = m->st;
	pthread_mutex_unlock(&m->mu);
}

op_err op_mqtt_in_check(const struct op_config *cfg, const struct op_engine *e, struct op_diag *d)
{
	op_err rc = OP_OK;
	for (size_t i = 0; i < op_engine_count(e); i++) {
		const struct op_pipeline *p = op_engine_at(e, i);
		const struct op_mqtt_trigger *t = op_trigger_mqtt(p);
		if (t == NULL || op_config_broker(cfg, t->broker) != NULL)
			continue;
		op_diag_add_at(d, p->origin,
		               "trigger.config.broker: '%s' is not a broker of the agent's config, "
		               "expected a [broker %s] section",
		               t->broker, t->broker);
		rc = OP_ECONFIG;
	}
	return rc;
}
