/*
 * Tests of the daemon's MQTT publisher (agent/daemon/mqtt_out.c) against a
 * real mosquitto started by each test on 127.0.0.1 (a plain listener and a
 * mutual-TLS one, free ports, a throwaway PKI made once with openssl), with
 * a paho subscriber in the test checking what arrives: payload bytes, QoS,
 * retained flag; a broker that is down; 200 concurrent QoS 1 publishes; the
 * in-flight window; a PUBACK that comes after the publisher gave up; a
 * broker restart; TLS with a trusted and an untrusted CA; the step through
 * the engine's host hook end to end; and the load-time broker check.
 * The broker's log is printed when a test fails.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "agent/daemon/config.h"
#include "agent/daemon/mqtt_out.h"
#include "agent/engine/engine.h"
#include "tests/unit/test.h"

/* ---- helpers: time, files, processes ---- */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The poll interval of the bounded wait loops below. */
static void pause_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_msg(f != NULL, "cannot write %s", path);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

/* The content of path (NUL-terminated, static, truncated to 64 KiB). */
static const char *read_file(const char *path)
{
	static char buf[65536];
	buf[0] = '\0';
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return buf;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Removes dir and what it holds, one level of folders deep. */
static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
			DIR *sub = opendir(p);
			struct dirent *f;
			while (sub && (f = readdir(sub)) != NULL) {
				char q[1024];
				snprintf(q, sizeof(q), "%s/%s", p, f->d_name);
				unlink(q);
			}
			if (sub)
				closedir(sub);
			rmdir(p);
		} else {
			unlink(p);
		}
	}
	closedir(d);
	rmdir(dir);
}

/* Starts argv[0] (searched in PATH, then /usr/sbin) with stdout and stderr
 * appended to out; it is killed when this process ends. */
static pid_t spawn(char *const argv[], const char *out)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(126);
		int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		int null = open("/dev/null", O_RDONLY);
		if (null >= 0) {
			dup2(null, 0);
			close(null);
		}
		execvp(argv[0], argv);
		char alt[256];
		snprintf(alt, sizeof(alt), "/usr/sbin/%s", argv[0]);
		execv(alt, argv);
		_exit(127);
	}
	return pid;
}

/* Runs argv to its end; its exit status, or -1. */
static int run_cmd(char *const argv[], const char *out)
{
	pid_t pid = spawn(argv, out);
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A TCP port nothing listens on right now (someone may take it later). */
static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(s, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t len = sizeof(a);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
	close(s);
	return ntohs(a.sin_port);
}

static bool tcp_connects(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		return false;
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bool ok = connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(s);
	return ok;
}

/* ---- the PKI, made once per test program (unchecked fixture) ---- */

static char pki[64];

static void ssl_cmd(const char *args)
{
	char *argv[40];
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s", args);
	int n = 0;
	argv[n++] = "openssl";
	for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && n < 39;
	     t = strtok_r(NULL, " ", &save))
		argv[n++] = t;
	argv[n] = NULL;
	char log[128];
	snprintf(log, sizeof(log), "%s/openssl.log", pki);
	if (run_cmd(argv, log) != 0) {
		fprintf(stderr, "openssl %s failed:\n%s\n", args, read_file(log));
		ck_abort_msg("openssl failed");
	}
}

static void passwd_setup(void)
{
	char file[128], log[128];
	snprintf(file, sizeof(file), "%s/passwd", pki);
	snprintf(log, sizeof(log), "%s/passwd.log", pki);
	if (run_cmd((char *const[]){"mosquitto_passwd", "-b", "-c", file, "unit", "secret", NULL},
	            log) != 0) {
		fprintf(stderr, "mosquitto_passwd failed:\n%s\n", read_file(log));
		ck_abort_msg("mosquitto_passwd failed");
	}
}

static void pki_setup(void)
{
	snprintf(pki, sizeof(pki), "/tmp/op-mqtt-pki-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(pki));
	char p[256], cmd[1024];
	snprintf(p, sizeof(p), "%s/ext.cnf", pki);
	write_file(p, "[server]\n"
	              "basicConstraints = critical, CA:FALSE\n"
	              "keyUsage = critical, digitalSignature\n"
	              "extendedKeyUsage = serverAuth\n"
	              "subjectAltName = IP:127.0.0.1\n"
	              "[client]\n"
	              "basicConstraints = critical, CA:FALSE\n"
	              "keyUsage = critical, digitalSignature\n"
	              "extendedKeyUsage = clientAuth\n");
	static const char *const cas[] = {"ca", "rogue"};
	for (int i = 0; i < 2; i++) {
		snprintf(cmd, sizeof(cmd),
		         "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
		         "%s/%s.key -out %s/%s.pem -subj /CN=unit-%s -days 2 -addext "
		         "basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
		         pki, cas[i], pki, cas[i], cas[i]);
		ssl_cmd(cmd);
	}
	static const char *const leaves[] = {"server", "client"};
	for (int i = 0; i < 2; i++) {
		snprintf(cmd, sizeof(cmd),
		         "req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
		         "%s/%s.key -out %s/%s.csr -subj /CN=127.0.0.1",
		         pki, leaves[i], pki, leaves[i]);
		ssl_cmd(cmd);
		snprintf(cmd, sizeof(cmd),
		         "x509 -req -in %s/%s.csr -CA %s/ca.pem -CAkey %s/ca.key -set_serial %d "
		         "-days 2 -extfile %s/ext.cnf -extensions %s -out %s/%s.pem",
		         pki, leaves[i], pki, pki, 100 + i, pki, leaves[i], pki, leaves[i]);
		ssl_cmd(cmd);
	}
	passwd_setup();
}

static void pki_teardown(void)
{
	remove_dir(pki);
}

/* ---- the broker (checked fixture: one per test) ---- */

/* The broker's folder is inside the PKI's, so that the unchecked teardown
 * removes it even when a failed check ended the test process early (Check
 * then skips the checked teardown and atexit handlers; the broker itself dies
 * with the test process: PR_SET_PDEATHSIG). */
static struct {
	char dir[128];
	int port, tls_port;
	pid_t pid;
} bk;

static void broker_conf(void)
{
	char conf[2048], p[256];
	struct passwd *pw = getpwuid(getuid());
	snprintf(conf, sizeof(conf),
	         "per_listener_settings false\n"
	         "allow_anonymous true\n"
	         "max_inflight_messages 1000\n"
	         "max_queued_messages 100000\n"
	         "persistence false\n"
	         "password_file %s/passwd\n"
	         "user %s\n"
	         "log_dest file %s/mosquitto.log\n"
	         "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
	         "listener %d 127.0.0.1\n"
	         "listener %d 127.0.0.1\n"
	         "cafile %s/ca.pem\n"
	         "certfile %s/server.pem\n"
	         "keyfile %s/server.key\n"
	         "require_certificate true\n",
	         pki, pw ? pw->pw_name : "root", bk.dir, bk.port, bk.tls_port, pki, pki, pki);
	snprintf(p, sizeof(p), "%s/mosquitto.conf", bk.dir);
	write_file(p, conf);
}

/* Starts mosquitto on the current ports and waits (bounded) until it runs
 * and takes TCP connections. 0 when ready, 2 when a port was taken, 1
 * otherwise. */
static int broker_launch(void)
{
	char conf[256], out[256], log[256];
	snprintf(conf, sizeof(conf), "%s/mosquitto.conf", bk.dir);
	snprintf(out, sizeof(out), "%s/mosquitto.out", bk.dir);
	snprintf(log, sizeof(log), "%s/mosquitto.log", bk.dir);
	unlink(log);
	bk.pid = spawn((char *const[]){"mosquitto", "-c", conf, NULL}, out);
	long long deadline = now_ms() + 10000;
	while (now_ms() < deadline) {
		int st;
		if (waitpid(bk.pid, &st, WNOHANG) == bk.pid) {
			bk.pid = 0;
			return strstr(read_file(log), "Address already in use") ? 2 : 1;
		}
		if (strstr(read_file(log), " running") && tcp_connects(bk.port))
			return 0;
		pause_ms(10);
	}
	return 1;
}

static void broker_kill(void)
{
	if (bk.pid > 0) {
		kill(bk.pid, SIGKILL);
		waitpid(bk.pid, NULL, 0);
		bk.pid = 0;
	}
}

static void broker_cleanup(void)
{
	broker_kill();
	if (bk.dir[0])
		remove_dir(bk.dir);
	bk.dir[0] = '\0';
}

static void broker_dump(void)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/mosquitto.log", bk.dir);
	fprintf(stderr, "mosquitto log:\n%s\n", read_file(p));
	snprintf(p, sizeof(p), "%s/mosquitto.out", bk.dir);
	fprintf(stderr, "mosquitto output:\n%s\n", read_file(p));
}

static void broker_start(void)
{
	snprintf(bk.dir, sizeof(bk.dir), "%s/broker-XXXXXX", pki);
	ck_assert_ptr_nonnull(mkdtemp(bk.dir));
	for (int i = 0; i < 10; i++) {
		bk.port = free_port();
		do
			bk.tls_port = free_port();
		while (bk.tls_port == bk.port);
		broker_conf();
		int rc = broker_launch();
		if (rc == 0)
			return;
		if (rc == 1) {
			broker_dump();
			ck_abort_msg("mosquitto did not start");
		}
	}
	ck_abort_msg("mosquitto: ports always taken");
}

/* Starts the broker again on the same ports and config. */
static void broker_restart(void)
{
	broker_kill();
	long long deadline = now_ms() + 10000;
	int rc;
	while ((rc = broker_launch()) == 2 && now_ms() < deadline)
		pause_ms(50); /* the old socket may linger a moment */
	if (rc) {
		broker_dump();
		ck_abort_msg("mosquitto did not restart");
	}
}

/* ---- a paho subscriber ---- */

struct got {
	char topic[128];
	char payload[128];
	int len, qos, retained;
};

struct sub {
	MQTTAsync cl;
	const char *filter;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool subscribed;
	int failed;
	struct got v[512];
	int n;
};

static int sub_on_msg(void *ctx, char *topic, int tlen, MQTTAsync_message *m)
{
	struct sub *s = ctx;
	pthread_mutex_lock(&s->mu);
	if (s->n < (int)(sizeof(s->v) / sizeof(s->v[0]))) {
		struct got *g = &s->v[s->n++];
		snprintf(g->topic, sizeof(g->topic), "%.*s", tlen > 0 ? tlen : (int)strlen(topic),
		         topic);
		g->len = m->payloadlen;
		memcpy(g->payload, m->payload,
		       (size_t)(m->payloadlen < (int)sizeof(g->payload) ? m->payloadlen
		                                                        : (int)sizeof(g->payload)));
		g->qos = m->qos;
		g->retained = m->retained;
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static void sub_on_subscribed(void *ctx, MQTTAsync_successData *r)
{
	(void)r;
	struct sub *s = ctx;
	pthread_mutex_lock(&s->mu);
	s->subscribed = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void sub_on_failed(void *ctx, MQTTAsync_failureData *r)
{
	struct sub *s = ctx;
	pthread_mutex_lock(&s->mu);
	s->failed = r ? r->code : -1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void sub_on_connected(void *ctx, MQTTAsync_successData *r)
{
	(void)r;
	struct sub *s = ctx;
	MQTTAsync_responseOptions o = MQTTAsync_responseOptions_initializer;
	o.onSuccess = sub_on_subscribed;
	o.onFailure = sub_on_failed;
	o.context = s;
	if (MQTTAsync_subscribe(s->cl, s->filter, 1, &o) != MQTTASYNC_SUCCESS)
		sub_on_failed(s, NULL);
}

/* Waits until pred(s) or timeout_ms; true if it held. */
static bool sub_wait(struct sub *s, bool (*pred)(struct sub *, int), int arg, long long timeout_ms)
{
	long long deadline = now_ms() + timeout_ms;
	pthread_mutex_lock(&s->mu);
	while (!pred(s, arg) && s->failed == 0 && now_ms() < deadline) {
		pthread_mutex_unlock(&s->mu);
		pause_ms(5);
		pthread_mutex_lock(&s->mu);
	}
	bool ok = pred(s, arg);
	pthread_mutex_unlock(&s->mu);
	return ok;
}

static bool is_subscribed(struct sub *s, int arg)
{
	(void)arg;
	return s->subscribed;
}

static bool has_n(struct sub *s, int n)
{
	return s->n >= n;
}

/* A subscriber on the plain port to filter (QoS 1), subscribed on return. */
static void sub_start(struct sub *s, const char *id, const char *filter)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->filter = filter;
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", bk.port);
	ck_assert_int_eq(MQTTAsync_create(&s->cl, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL),
	                 MQTTASYNC_SUCCESS);
	ck_assert_int_eq(MQTTAsync_setCallbacks(s->cl, s, NULL, sub_on_msg, NULL),
	                 MQTTASYNC_SUCCESS);
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
	co.cleansession = 1;
	co.onSuccess = sub_on_connected;
	co.onFailure = sub_on_failed;
	co.context = s;
	ck_assert_int_eq(MQTTAsync_connect(s->cl, &co), MQTTASYNC_SUCCESS);
	ck_assert_msg(sub_wait(s, is_subscribed, 0, 10000), "subscriber not subscribed (%d)",
	              s->failed);
}

static void sub_stop(struct sub *s)
{
	MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
	MQTTAsync_disconnect(s->cl, &d);
	MQTTAsync_destroy(&s->cl);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
}

/* ---- the publisher under test ---- */

static struct op_config cfg;
static struct op_mqtt_out *out;
static int down_port;

static void load_config(void)
{
	down_port = free_port();
	char text[4096];
	snprintf(text, sizeof(text),
	         "[agent]\n"
	         "id = unit\n"
	         "[broker local]\n"
	         "url = mqtt://127.0.0.1:%d\n"
	         "[broker small]\n"
	         "url = tcp://127.0.0.1:%d\n"
	         "client_id = small\n"
	         "max_inflight = 10\n"
	         "[broker auth]\n"
	         "url = mqtt://127.0.0.1:%d\n"
	         "client_id = auth\n"
	         "username = unit\n"
	         "password = wrong\n"
	         "[broker authok]\n"
	         "url = mqtt://127.0.0.1:%d\n"
	         "client_id = authok\n"
	         "username = unit\n"
	         "password = secret\n"
	         "[broker down]\n"
	         "url = mqtt://127.0.0.1:%d\n"
	         "connect_timeout = 2s\n"
	         "[broker tls]\n"
	         "url = mqtts://127.0.0.1:%d\n"
	         "client_id = tls\n"
	         "ca_file = %s/ca.pem\n"
	         "cert_file = %s/client.pem\n"
	         "key_file = %s/client.key\n"
	         "[broker rogue]\n"
	         "url = mqtts://127.0.0.1:%d\n"
	         "client_id = rogue\n"
	         "ca_file = %s/rogue.pem\n"
	         "cert_file = %s/client.pem\n"
	         "key_file = %s/client.key\n",
	         bk.port, bk.port, bk.port, bk.port, down_port, bk.tls_port, pki, pki, pki,
	         bk.tls_port, pki, pki, pki);
	struct op_diag d;
	op_diag_init(&d);
	op_err rc = op_config_load_string(text, "unit.conf", &cfg, &d);
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "%s: %s\n", d.v[i].path, d.v[i].msg);
	op_diag_fini(&d);
	ck_assert_int_eq(rc, OP_OK);
}

static void setup(void)
{
	broker_start();
	load_config();
	ck_assert_int_eq(op_mqtt_out_new(&cfg, &out), OP_OK);
}

static void teardown(void)
{
	op_mqtt_out_free(out);
	out = NULL;
	op_config_free(&cfg);
	broker_cleanup();
}

static op_err publish(const char *broker, const char *topic, const char *payload, size_t len,
                      int qos, bool retained, long long timeout_ms, char *why, size_t whylen)
{
	return op_mqtt_out_publish(out, broker, topic, payload, len, qos, retained, timeout_ms, why,
	                           whylen);
}

#define ck_publish_ok(broker, topic, payload, len, qos, retained)                              \
	do {                                                                                   \
		char why_[512];                                                                \
		op_err rc_ = publish(broker, topic, payload, len, qos, retained, 10000, why_,  \
		                     sizeof(why_));                                            \
		if (rc_ != OP_OK)                                                              \
			broker_dump();                                                         \
		ck_assert_msg(rc_ == OP_OK, "publish failed: %s: %s", op_err_name(rc_), why_); \
	} while (0)

/* ---- tests ---- */

START_TEST(qos1_arrives_with_its_bytes)
{
	struct sub s;
	sub_start(&s, "sub-1", "t/#");
	ck_publish_ok("local", "t/a", "a\0b\xff", 4, 1, false);
	ck_assert(sub_wait(&s, has_n, 1, 10000));
	ck_assert_str_eq(s.v[0].topic, "t/a");
	ck_assert_int_eq(s.v[0].len, 4);
	ck_assert_mem_eq(s.v[0].payload, "a\0b\xff", 4);
	ck_assert_int_eq(s.v[0].qos, 1);
	ck_assert_int_eq(s.v[0].retained, 0);

	/* An empty payload is a message too. */
	ck_publish_ok("local", "t/empty", NULL, 0, 1, false);
	ck_assert(sub_wait(&s, has_n, 2, 10000));
	ck_assert_str_eq(s.v[1].topic, "t/empty");
	ck_assert_int_eq(s.v[1].len, 0);

	struct op_mqtt_out_stats st;
	op_mqtt_out_stats(out, &st);
	ck_assert_uint_eq(st.published, 2);
	ck_assert_uint_eq(st.failed, 0);
	ck_assert_uint_eq(st.inflight, 0);
	ck_assert_uint_eq(st.connected, 1);
	sub_stop(&s);
	/* The client id is the agent's prefix and "-pub". */
	char p[256];
	snprintf(p, sizeof(p), "%s/mosquitto.log", bk.dir);
	ck_assert_ptr_nonnull(strstr(read_file(p), "as outpost-unit-pub"));
}
END_TEST

START_TEST(qos0_arrives)
{
	struct sub s;
	sub_start(&s, "sub-0", "q0/#");
	ck_publish_ok("local", "q0/x", "zero", 4, 0, false);
	ck_assert(sub_wait(&s, has_n, 1, 10000));
	ck_assert_str_eq(s.v[0].topic, "q0/x");
	ck_assert_mem_eq(s.v[0].payload, "zero", 4);
	ck_assert_int_eq(s.v[0].qos, 0);
	sub_stop(&s);
}
END_TEST

START_TEST(retained_is_kept_for_new_subscribers)
{
	ck_publish_ok("local", "r/1", "last", 4, 1, true);
	ck_publish_ok("local", "r/2", "gone", 4, 1, false);
	/* Subscribed after the publish: only the retained one comes. */
	struct sub s;
	sub_start(&s, "sub-r", "r/#");
	ck_assert(sub_wait(&s, has_n, 1, 10000));
	ck_assert_str_eq(s.v[0].topic, "r/1");
	ck_assert_mem_eq(s.v[0].payload, "last", 4);
	ck_assert_int_eq(s.v[0].retained, 1);
	ck_publish_ok("local", "r/3", "live", 4, 1, false);
	ck_assert(sub_wait(&s, has_n, 2, 10000));
	ck_assert_str_eq(s.v[1].topic, "r/3");
	ck_assert_int_eq(s.v[1].retained, 0);
	ck_assert_int_eq(s.n, 2);
	sub_stop(&s);
}
END_TEST

START_TEST(broker_down_is_noconn_in_time)
{
	char why[512], want[128];
	long long t0 = now_ms();
	op_err rc = publish("down", "t", "x", 1, 1, false, 5000, why, sizeof(why));
	long long took = now_ms() - t0;
	ck_assert_int_eq(rc, OP_ENOCONN);
	/* Waited for paho's retries up to the broker's connect_timeout (2 s). */
	ck_assert_int_ge(took, 1900);
	ck_assert_int_lt(took, 4000);
	snprintf(want, sizeof(want),
	         "broker down (tcp://127.0.0.1:%d) is not connected: ", down_port);
	ck_assert_msg(strncmp(why, want, strlen(want)) == 0, "why: %s", why);
	/* A shorter timeout bounds the wait. */
	t0 = now_ms();
	rc = publish("down", "t", "x", 1, 0, false, 300, why, sizeof(why));
	took = now_ms() - t0;
	ck_assert_int_eq(rc, OP_ENOCONN);
	ck_assert_int_ge(took, 290);
	ck_assert_int_lt(took, 1500);
	ck_assert_msg(strncmp(why, want, strlen(want)) == 0, "why: %s", why);
	struct op_mqtt_out_stats st;
	op_mqtt_out_stats(out, &st);
	ck_assert_uint_eq(st.failed, 2);
	ck_assert_uint_eq(st.published, 0);
}
END_TEST

START_TEST(bad_arguments_never_reach_the_broker)
{
	char why[512];
	ck_assert_int_eq(publish("nowhere", "t", "x", 1, 1, false, 1000, why, sizeof(why)),
	                 OP_ENOTFOUND);
	ck_assert_str_eq(why, "'nowhere' is not a broker of the agent's config, expected a "
	                      "[broker nowhere] section");
	ck_assert_int_eq(publish("local", "a/+/b", "x", 1, 1, false, 1000, why, sizeof(why)),
	                 OP_EINVAL);
	ck_assert_str_eq(why, "topic \"a/+/b\" is not a topic to publish to: '+' at byte 3: "
	                      "wildcards are for subscriptions, not for publishing");
	ck_assert_int_eq(publish("local", "", "x", 1, 1, false, 1000, why, sizeof(why)), OP_EINVAL);
	ck_assert_int_eq(publish("local", "t", "x", 1, 2, false, 1000, why, sizeof(why)),
	                 OP_EINVAL);
	ck_assert_str_eq(why, "QoS 2 is not supported, expected 0 or 1");
	/* Never read: the size is checked first. */
	ck_assert_int_eq(publish("local", "t", "x", 268435455u, 1, false, 1000, why, sizeof(why)),
	                 OP_ELIMIT);
	ck_assert_str_eq(why, "268435455 bytes of payload do not fit an MQTT message (at most "
	                      "268435450 with this topic)");
	/* whylen 0: no text, same class. */
	ck_assert_int_eq(publish("nowhere", "t", "x", 1, 1, false, 1000, NULL, 0), OP_ENOTFOUND);
	struct op_mqtt_out_stats st;
	op_mqtt_out_stats(out, &st);
	ck_assert_uint_eq(st.failed, 6);
	ck_assert_uint_eq(st.connected, 0); /* nothing was started */
}
END_TEST

struct burst {
	const char *broker;
	int thread, count;
	atomic_int *ok;
	char why[512];
	op_err first_rc;
};

static void *burst_run(void *arg)
{
	struct burst *b = arg;
	for (int i = 0; i < b->count; i++) {
		char topic[64], payload[64];
		snprintf(topic, sizeof(topic), "burst/%d", b->thread);
		int n = snprintf(payload, sizeof(payload), "m-%d-%d", b->thread, i);
		char why[512];
		op_err rc = op_mqtt_out_publish(out, b->broker, topic, payload, (size_t)n, 1, false,
		                                20000, why, sizeof(why));
		if (rc == OP_OK) {
			atomic_fetch_add(b->ok, 1);
		} else if (b->first_rc == OP_OK) {
			b->first_rc = rc;
			snprintf(b->why, sizeof(b->why), "%s", why);
		}
	}
	return NULL;
}

/* Publishes 8 x 25 QoS 1 messages at once through broker and checks that
 * all were acknowledged and all arrived, each once. */
static void burst(const char *broker, struct sub *s)
{
	enum { THREADS = 8, EACH = 25 };
	atomic_int ok = 0;
	struct burst b[THREADS];
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++) {
		b[i] = (struct burst){.broker = broker, .thread = i, .count = EACH, .ok = &ok};
		ck_assert_int_eq(pthread_create(&t[i], NULL, burst_run, &b[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < THREADS; i++)
		ck_assert_msg(b[i].first_rc == OP_OK, "thread %d: %s: %s", i,
		              op_err_name(b[i].first_rc), b[i].why);
	ck_assert_int_eq(atomic_load(&ok), THREADS * EACH);
	ck_assert(sub_wait(s, has_n, THREADS * EACH, 20000));
	bool seen[THREADS][EACH];
	memset(seen, 0, sizeof(seen));
	pthread_mutex_lock(&s->mu);
	ck_assert_int_eq(s->n, THREADS * EACH);
	for (int k = 0; k < s->n; k++) {
		int th, i;
		char extra;
		ck_assert_int_eq(s->v[k].qos, 1);
		char text[64];
		snprintf(text, sizeof(text), "%.*s", s->v[k].len, s->v[k].payload);
		ck_assert_msg(strncmp(text, "m-", 2) == 0, "payload %s", text);
		char *end;
		th = (int)strtol(text + 2, &end, 10);
		ck_assert(*end == '-');
		i = (int)strtol(end + 1, &end, 10);
		extra = *end;
		ck_assert(extra == '\0' && th >= 0 && th < THREADS && i >= 0 && i < EACH);
		ck_assert_msg(!seen[th][i], "%s arrived twice", text);
		seen[th][i] = true;
	}
	pthread_mutex_unlock(&s->mu);
	struct op_mqtt_out_stats st;
	op_mqtt_out_stats(out, &st);
	ck_assert_uint_eq(st.inflight, 0);
}

START_TEST(concurrent_qos1_all_acknowledged)
{
	struct sub s;
	sub_start(&s, "sub-burst", "burst/#");
	burst("local", &s);
	struct op_mqtt_out_stats st;
	op_mqtt_out_stats(out, &st);
	ck_assert_uint_eq(st.published, 200);
	ck_assert_uint_eq(st.failed, 0);
	sub_stop(&s);
}
END_TEST

static atomic_bool watching;
static atomic_int max_inflight_seen;

static void *watch_inflight(void *arg)
{
	(void)arg;
	while (atomic_load(&watching)) {
		struct op_mqtt_out_stats st;
		op_mqtt_out_stats(out, &st);
		if ((int)st.inflight > atomic_load(&max_inflight_seen))
			atomic_store(&max_inflight_seen, (int)st.inflight);
		sched_yield();
	}
	return NULL;
}

START_TEST(window_stays_below_max_inflight)
{
	/* max_inflight 10: our window is 5. */
	struct sub s;
	sub_start(&s, "sub-small", "burst/#");
	atomic_store(&watching, true);
	atomic_store(&max_inflight_seen, 0);
	pthread_t w;
	ck_assert_int_eq(pthread_create(&w, NULL, watch_inflight, NULL), 0);
	burst("small", &s);
	atomic_store(&watching, false);
	pthread_join(w, NULL);
	ck_assert_int_le(atomic_load(&max_inflight_seen), 5);
	ck_assert_int_ge(atomic_load(&max_inflight_seen), 1);
	char p[256];
	snprintf(p, sizeof(p), "%s/mosquitto.log", bk.dir);
	ck_assert_ptr_nonnull(strstr(read_file(p), "as small-pub"));
	sub_stop(&s);
}
END_TEST

static bool inflight_is(int n)
{
	struct op_mqtt_out_stats st;
	op_mqtt_out_stats(out, &st);
	return (int)st.inflight == n;
}

START_TEST(late_puback_after_timeout)
{
	struct sub s;
	sub_start(&s, "sub-late", "late/#");
	ck_publish_ok("local", "late/1", "one", 3, 1, false);
	/* A frozen broker takes the message into its socket but never acks. */
	ck_assert_int_eq(kill(bk.pid, SIGSTOP), 0);
	char why[512], want[128];
	long long t0 = now_ms();
	op_err rc = publish("local", "late/2", "two", 3, 1, false, 300, why, sizeof(why));
	long long took = now_ms() - t0;
	ck_assert_int_eq(rc, OP_ETIMEOUT);
	ck_assert_int_ge(took, 290);
	ck_assert_int_lt(took, 2000);
	snprintf(want, sizeof(want),
	         "broker local (tcp://127.0.0.1:%d) did not acknowledge the message within 300 ms",
	         bk.port);
	ck_assert_str_eq(why, want);
	ck_assert(inflight_is(1)); /* paho still holds it, and its slot */
	ck_assert_int_eq(kill(bk.pid, SIGCONT), 0);
	/* The PUBACK comes after the publisher left: handled, slot freed. */
	long long deadline = now_ms() + 10000;
	while (!inflight_is(0) && now_ms() < deadline)
		pause_ms(5);
	ck_assert(inflight_is(0));
	ck_publish_ok("local", "late/3", "three", 5, 1, false);
	ck_assert(sub_wait(&s, has_n, 3, 10000)); /* the late one did go out */
	sub_stop(&s);
}
END_TEST

struct pending_pub {
	op_err rc;
	char why[512];
};

static void *publish_slowly(void *arg)
{
	struct pending_pub *r = arg;
	r->rc = publish("local", "lost/1", "x", 1, 1, false, 15000, r->why, sizeof(r->why));
	return NULL;
}

START_TEST(connection_lost_before_the_ack)
{
	ck_publish_ok("local", "lost/0", "x", 1, 1, false);
	ck_assert_int_eq(kill(bk.pid, SIGSTOP), 0);
	struct pending_pub r = {0};
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, publish_slowly, &r), 0);
	long long deadline = now_ms() + 10000;
	while (!inflight_is(1) && now_ms() < deadline)
		pause_ms(5);
	ck_assert(inflight_is(1));
	long long t0 = now_ms();
	broker_kill(); /* the kernel closes its sockets: paho sees the loss */
	pthread_join(t, NULL);
	ck_assert_int_lt(now_ms() - t0, 10000);
	ck_assert_msg(r.rc == OP_ENOCONN, "%s: %s", op_err_name(r.rc), r.why);
	char want[160];
	snprintf(want, sizeof(want),
	         "the connection to broker local (tcp://127.0.0.1:%d) was lost before the broker "
	         "acknowledged the message",
	         bk.port);
	ck_assert_str_eq(r.why, want);
	ck_assert(inflight_is(0));
}
END_TEST

START_TEST(free_with_an_unanswered_message)
{
	ck_publish_ok("local", "x/1", "one", 3, 1, false);
	ck_assert_int_eq(kill(bk.pid, SIGSTOP), 0);
	char why[512];
	ck_assert_int_eq(publish("local", "x/2", "two", 3, 1, false, 200, why, sizeof(why)),
	                 OP_ETIMEOUT);
	ck_assert(inflight_is(1));
	long long t0 = now_ms();
	op_mqtt_out_free(out);
	out = NULL;
	ck_assert_int_lt(now_ms() - t0, 5000);
	kill(bk.pid, SIGCONT);
}
END_TEST

START_TEST(reconnects_after_a_broker_restart)
{
	ck_publish_ok("local", "re/1", "one", 3, 1, false);
	broker_kill();
	/* Until paho notices, a message may go into the dead socket. */
	char why[512];
	op_err rc = publish("local", "re/2", "two", 3, 1, false, 1000, why, sizeof(why));
	ck_assert_msg(rc == OP_ENOCONN || rc == OP_ETIMEOUT, "%s: %s", op_err_name(rc), why);
	struct op_mqtt_out_stats st;
	long long deadline = now_ms() + 10000;
	do {
		op_mqtt_out_stats(out, &st);
	} while (st.connected && now_ms() < deadline && (pause_ms(5), true));
	ck_assert_uint_eq(st.connected, 0);
	rc = publish("local", "re/2", "two", 3, 1, false, 1000, why, sizeof(why));
	ck_assert_int_eq(rc, OP_ENOCONN);
	char want[128];
	snprintf(want, sizeof(want),
	         "broker local (tcp://127.0.0.1:%d) is not connected: ", bk.port);
	ck_assert_msg(strncmp(why, want, strlen(want)) == 0, "why: %s", why);
	broker_restart();
	/* paho reconnects on its own (1 s, then 2 s, ... apart). */
	deadline = now_ms() + 20000;
	while ((rc = publish("local", "re/3", "three", 5, 1, false, 5000, why, sizeof(why))) !=
	           OP_OK &&
	       now_ms() < deadline)
		ck_assert_msg(rc == OP_ENOCONN, "%s: %s", op_err_name(rc), why);
	ck_assert_msg(rc == OP_OK, "no reconnection: %s", why);
}
END_TEST

START_TEST(credentials_are_sent_and_refusals_are_auth)
{
	struct sub s;
	sub_start(&s, "sub-auth", "auth/#");
	ck_publish_ok("authok", "auth/1", "in", 2, 1, false);
	ck_assert(sub_wait(&s, has_n, 1, 10000));
	/* A refusal ends the wait at once: retrying soon will not help. */
	char why[512], want[128];
	long long t0 = now_ms();
	op_err rc = publish("auth", "auth/2", "x", 1, 1, false, 20000, why, sizeof(why));
	ck_assert_msg(rc == OP_EAUTH, "%s: %s", op_err_name(rc), why);
	ck_assert_int_lt(now_ms() - t0, 8000);
	snprintf(want, sizeof(want),
	         "broker auth (tcp://127.0.0.1:%d) is not connected: the broker ", bk.port);
	ck_assert_msg(strncmp(why, want, strlen(want)) == 0, "why: %s", why);
	ck_assert_msg(strstr(why, "(CONNACK 4)") || strstr(why, "(CONNACK 5)"), "why: %s", why);
	ck_assert_int_eq(s.n, 1);
	sub_stop(&s);
}
END_TEST

START_TEST(tls_with_a_trusted_and_an_untrusted_ca)
{
	struct sub s;
	sub_start(&s, "sub-tls", "tls/#");
	ck_publish_ok("tls", "tls/1", "secure", 6, 1, false);
	ck_assert(sub_wait(&s, has_n, 1, 10000));
	ck_assert_mem_eq(s.v[0].payload, "secure", 6);
	char why[512], want[128];
	op_err rc = publish("rogue", "tls/2", "x", 1, 1, false, 5000, why, sizeof(why));
	ck_assert_int_eq(rc, OP_ENOCONN);
	snprintf(want, sizeof(want),
	         "broker rogue (ssl://127.0.0.1:%d) is not connected: ", bk.tls_port);
	ck_assert_msg(strncmp(why, want, strlen(want)) == 0, "why: %s", why);
	ck_assert_msg(strcmp(why + strlen(want), "TLS: certificate verify failed") == 0, "why: %s",
	              why);
	ck_assert_int_eq(s.n, 1);
	sub_stop(&s);
}
END_TEST

START_TEST(step_through_the_host_hook)
{
	struct sub s;
	sub_start(&s, "sub-step", "orders/#");
	struct op_engine *e = op_engine_new();
	struct op_host h = {0};
	op_mqtt_out_host(out, &h);
	ck_assert_ptr_eq(h.ud, out);
	op_engine_set_host(e, &h);
	const char *doc = "{\"name\":\"p\",\"version\":\"1\",\"steps\":[{\"type\":\"mqtt-publish\","
	                  "\"config\":{\"broker\":\"local\",\"topic\":\"orders/{{ message.id }}\","
	                  "\"payload\":{\"id\":\"{{ message.id }}\",\"n\":\"{{ message.n }}\"}}},"
	                  "{\"type\":\"mqtt-publish\",\"config\":{\"broker\":\"down\",\"topic\":"
	                  "\"x\",\"timeoutMs\":500}}]}";
	struct op_diag d;
	op_diag_init(&d);
	struct op_pipeline *p = NULL;
	ck_assert_int_eq(op_pipeline_load(doc, strlen(doc), "step.json", &d, &p), OP_OK);
	op_diag_fini(&d);
	cJSON *res = NULL;
	struct op_fail f;
	op_err rc = op_engine_run(e, p, op_test_json("{\"id\":\"o7\",\"n\":3}"), NULL, &res, &f);
	/* The first step published, the second could not. */
	ck_assert_int_eq(rc, OP_ENOCONN);
	ck_assert_str_eq(f.code, "MQTT_PUBLISH");
	ck_assert_str_eq(f.step, "steps[1]");
	char want[256];
	snprintf(want, sizeof(want),
	         "publishing to topic \"x\" at broker 'down' failed: broker down "
	         "(tcp://127.0.0.1:%d) is not connected: ",
	         down_port);
	ck_assert_msg(strncmp(f.msg, want, strlen(want)) == 0, "msg: %s", f.msg);
	ck_assert(sub_wait(&s, has_n, 1, 10000));
	ck_assert_str_eq(s.v[0].topic, "orders/o7");
	char text[128];
	snprintf(text, sizeof(text), "%.*s", s.v[0].len, s.v[0].payload);
	ck_assert_str_eq(text, "{\"id\":\"o7\",\"n\":3}");
	op_pipeline_free(p);
	op_engine_free(e);
	sub_stop(&s);
}
END_TEST

/* ---- the load-time check (no broker) ---- */

START_TEST(check_names_steps_with_unknown_brokers)
{
	struct op_config c;
	struct op_diag d;
	op_diag_init(&d);
	ck_assert_int_eq(op_config_load_string("[agent]\nid = u\n[broker plant]\nurl = "
	                                       "mqtt://127.0.0.1:1\n",
	                                       "c.conf", &c, &d),
	                 OP_OK);
	struct op_engine *e = op_engine_new();
	const char *good = "{\"name\":\"good\",\"version\":\"1\",\"steps\":[{\"type\":\"mqtt-"
	                   "publish\",\"config\":{\"broker\":\"plant\",\"topic\":\"t\"}}]}";
	const char *bad =
	    "{\"name\":\"bad\",\"version\":\"1\",\"steps\":[{\"type\":\"choice\",\"config\":{"
	    "\"when\":[{\"if\":\"{{ true }}\",\"steps\":[{\"type\":\"mqtt-publish\",\"config\":{"
	    "\"broker\":\"nowhere\",\"topic\":\"t\"}}]}]}},{\"type\":\"mqtt-publish\",\"config\":{"
	    "\"broker\":\"plant\",\"topic\":\"t\"}}],\"onError\":[{\"type\":\"mqtt-publish\","
	    "\"config\":{\"broker\":\"errors\",\"topic\":\"e\"}}]}";
	const char *docs[] = {good, bad};
	const char *names[] = {"good.json", "bad.json"};
	for (int i = 0; i < 2; i++) {
		struct op_pipeline *p = NULL;
		ck_assert_int_eq(op_pipeline_load(docs[i], strlen(docs[i]), names[i], &d, &p),
		                 OP_OK);
		char err[256];
		ck_assert_int_eq(op_engine_add(e, p, err, sizeof(err)), OP_OK);
	}
	ck_assert_int_eq(op_mqtt_out_check(&c, e, &d), OP_ECONFIG);
	ck_assert_uint_eq(op_diag_count(&d), 2);
	ck_assert_str_eq(d.v[0].path, "bad.json");
	ck_assert_str_eq(d.v[0].msg, "steps[0].config.when[0].steps[0].config.broker: 'nowhere' is "
	                             "not a broker of the agent's config, expected a [broker "
	                             "nowhere] section");
	ck_assert_str_eq(d.v[1].path, "bad.json");
	ck_assert_str_eq(d.v[1].msg, "onError[0].config.broker: 'errors' is not a broker of the "
	                             "agent's config, expected a [broker errors] section");
	op_diag_fini(&d);
	op_engine_free(e);

	/* A set with no such steps, or only known brokers, passes. */
	op_diag_init(&d);
	e = op_engine_new();
	struct op_pipeline *p = NULL;
	ck_assert_int_eq(op_pipeline_load(good, strlen(good), "good.json", &d, &p), OP_OK);
	char err[256];
	ck_assert_int_eq(op_engine_add(e, p, err, sizeof(err)), OP_OK);
	ck_assert_int_eq(op_mqtt_out_check(&c, e, &d), OP_OK);
	ck_assert_uint_eq(op_diag_count(&d), 0);
	op_diag_fini(&d);
	op_engine_free(e);
	op_config_free(&c);
}
END_TEST

/* How many times the broker's log says a client connected as id. */
static int connects_as(const char *id)
{
	char p[256], needle[128];
	snprintf(p, sizeof(p), "%s/mosquitto.log", bk.dir);
	snprintf(needle, sizeof(needle), " as %s ", id);
	int n = 0;
	for (const char *q = read_file(p); (q = strstr(q, needle)) != NULL; q += strlen(needle))
		n++;
	return n;
}

static void load_brokers(struct op_config *c, const char *brokers)
{
	char text[1024];
	snprintf(text, sizeof(text), "[agent]\nid = unit\n%s", brokers);
	struct op_diag d;
	op_diag_init(&d);
	ck_assert_int_eq(op_config_load_string(text, "reload.conf", c, &d), OP_OK);
	op_diag_fini(&d);
}

struct pubber {
	atomic_bool stop;
	atomic_int ok, retryable;
};

/* Publishes to "small" until told to stop: every answer is OP_OK or one
 * worth retrying, whatever the reloads do to the broker meanwhile. */
static void *publish_small(void *arg)
{
	struct pubber *pb = arg;
	while (!atomic_load(&pb->stop)) {
		char why[512];
		op_err rc =
		    publish("small", "reload/busy", "x", 1, 1, false, 3000, why, sizeof(why));
		if (rc == OP_OK)
			atomic_fetch_add(&pb->ok, 1);
		else if (rc == OP_ENOCONN || rc == OP_ETIMEOUT || rc == OP_EBUSY)
			atomic_fetch_add(&pb->retryable, 1);
		else
			ck_abort_msg("publish during a reload: %s: %s", op_err_name(rc), why);
	}
	return NULL;
}

/*
 * A reload's brokers: an unchanged broker keeps its client and connection,
 * a changed one connects anew with its new settings, a removed one stays
 * (for pipelines that drain) until pruned and is unknown after, an added
 * one works; publishes running meanwhile end well or retryably (ASan checks
 * that nothing retired is touched after its free). Out of memory changes
 * nothing.
 */
START_TEST(update_keeps_changes_adds_and_removes)
{
	ck_publish_ok("local", "reload/a", "1", 1, 1, false);
	ck_publish_ok("small", "reload/a", "1", 1, 1, false);
	ck_publish_ok("authok", "reload/a", "1", 1, 1, false);
	ck_assert_int_eq(connects_as("outpost-unit-pub"), 1);
	ck_assert_int_eq(connects_as("small-pub"), 1);

	struct op_config c2;
	char text[512];
	snprintf(text, sizeof(text),
	         "[broker local]\nurl = mqtt://127.0.0.1:%d\n"
	         "[broker small]\nurl = tcp://127.0.0.1:%d\nclient_id = small2\nmax_inflight = 10\n"
	         "[broker fresh]\nurl = mqtt://127.0.0.1:%d\nclient_id = fresh\n",
	         bk.port, bk.port, bk.port);
	load_brokers(&c2, text);

	/* Out of memory at each allocation: nothing changes. */
	for (uint64_t n = 1;; n++) {
		op_alloc_fail_at(n);
		op_err rc = op_mqtt_out_update(out, &cfg, c2.brokers, c2.n_brokers);
		op_alloc_fail_at(0);
		if (rc == OP_OK)
			break;
		ck_assert_int_eq(rc, OP_ENOMEM);
		char why[256];
		ck_assert_int_eq(
		    publish("fresh", "reload/a", "x", 1, 1, false, 100, why, sizeof(why)),
		    OP_ENOTFOUND);
	}
	/* Back and forth, with a publisher busy on the changed broker (started
	 * after the failure point: it is armed for every thread). */
	struct pubber pb = {0};
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, publish_small, &pb), 0);
	ck_assert_int_eq(op_mqtt_out_update(out, &cfg, c2.brokers, c2.n_brokers), OP_OK);
	ck_assert_int_eq(op_mqtt_out_update(out, &cfg, cfg.brokers, cfg.n_brokers), OP_OK);
	ck_assert_int_eq(op_mqtt_out_update(out, &cfg, c2.brokers, c2.n_brokers), OP_OK);
	ck_publish_ok("small", "reload/b", "2", 1, 1, false);
	/* The busy publisher goes on through the new client too. */
	int seen = atomic_load(&pb.ok);
	long long until = now_ms() + 10000;
	while (atomic_load(&pb.ok) < seen + 3 && now_ms() < until)
		pause_ms(1);
	atomic_store(&pb.stop, true);
	pthread_join(th, NULL);
	ck_assert_int_ge(atomic_load(&pb.ok), seen + 3);

	ck_publish_ok("local", "reload/b", "2", 1, 1, false);
	ck_publish_ok("fresh", "reload/b", "2", 1, 1, false);
	ck_assert_int_eq(connects_as("outpost-unit-pub"), 1); /* kept its connection */
	ck_assert_int_ge(connects_as("small2-pub"), 1);       /* the new settings */
	ck_assert_int_eq(connects_as("fresh-pub"), 1);
	struct op_mqtt_out_stats st;
	op_mqtt_out_stats(out, &st);
	ck_assert_uint_eq(st.connected, 3);
	/* Removed brokers stay for the pipelines that drain, until pruned. */
	ck_publish_ok("authok", "reload/c", "3", 1, 1, false);
	ck_assert_int_eq(connects_as("authok-pub"), 1);
	ck_assert_uint_eq(op_mqtt_out_prune(out), 5); /* auth, authok, down, tls, rogue */
	ck_assert_uint_eq(op_mqtt_out_prune(out), 0);
	char why[256];
	ck_assert_int_eq(publish("authok", "reload/a", "x", 1, 1, false, 100, why, sizeof(why)),
	                 OP_ENOTFOUND);
	ck_assert_int_eq(publish("down", "reload/a", "x", 1, 1, false, 100, why, sizeof(why)),
	                 OP_ENOTFOUND);
	/* Back once more: a removed broker's client is not reused after its prune. */
	ck_assert_int_eq(op_mqtt_out_update(out, &cfg, cfg.brokers, cfg.n_brokers), OP_OK);
	ck_publish_ok("authok", "reload/d", "4", 1, 1, false);
	ck_assert_int_eq(connects_as("authok-pub"), 2);
	op_config_free(&c2);
}
END_TEST

START_TEST(new_and_free_without_brokers)
{
	struct op_config c;
	struct op_diag d;
	op_diag_init(&d);
	ck_assert_int_eq(op_config_load_string("[agent]\nid = u\n", "c.conf", &c, &d), OP_OK);
	op_diag_fini(&d);
	struct op_mqtt_out *o = NULL;
	ck_assert_int_eq(op_mqtt_out_new(&c, &o), OP_OK);
	char why[256];
	ck_assert_int_eq(
	    op_mqtt_out_publish(o, "plant", "t", "x", 1, 1, false, 100, why, sizeof(why)),
	    OP_ENOTFOUND);
	op_mqtt_out_free(o);
	op_mqtt_out_free(NULL);
	/* Out of memory at each allocation of new: an error, nothing leaked. */
	op_config_free(&c);
	op_diag_init(&d);
	ck_assert_int_eq(op_config_load_string("[agent]\nid = u\n[broker a]\nurl = mqtt://h\n"
	                                       "[broker b]\nurl = mqtt://h\npassword = s\n",
	                                       "c.conf", &c, &d),
	                 OP_OK);
	op_diag_fini(&d);
	for (uint64_t n = 1;; n++) {
		op_alloc_fail_at(n);
		op_err rc = op_mqtt_out_new(&c, &o);
		op_alloc_fail_at(0);
		if (rc == OP_OK) {
			op_mqtt_out_free(o);
			ck_assert_uint_gt(n, 10);
			break;
		}
		ck_assert_int_eq(rc, OP_ENOMEM);
		ck_assert_ptr_null(o);
	}
	op_config_free(&c);
}
END_TEST

static Suite *mqtt_out_suite(void)
{
	Suite *s = suite_create("mqtt-out");
	TCase *tc = tcase_create("broker");
	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, pki_setup, pki_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, qos1_arrives_with_its_bytes);
	tcase_add_test(tc, qos0_arrives);
	tcase_add_test(tc, retained_is_kept_for_new_subscribers);
	tcase_add_test(tc, broker_down_is_noconn_in_time);
	tcase_add_test(tc, bad_arguments_never_reach_the_broker);
	tcase_add_test(tc, concurrent_qos1_all_acknowledged);
	tcase_add_test(tc, window_stays_below_max_inflight);
	tcase_add_test(tc, late_puback_after_timeout);
	tcase_add_test(tc, connection_lost_before_the_ack);
	tcase_add_test(tc, free_with_an_unanswered_message);
	tcase_add_test(tc, reconnects_after_a_broker_restart);
	tcase_add_test(tc, credentials_are_sent_and_refusals_are_auth);
	tcase_add_test(tc, tls_with_a_trusted_and_an_untrusted_ca);
	tcase_add_test(tc, step_through_the_host_hook);
	tcase_add_test(tc, update_keeps_changes_adds_and_removes);
	suite_add_tcase(s, tc);
	TCase *plain = tcase_create("plain");
	tcase_set_timeout(plain, 60);
	tcase_add_test(plain, check_names_steps_with_unknown_brokers);
	tcase_add_test(plain, new_and_free_without_brokers);
	suite_add_tcase(s, plain);
	return s;
}

OP_TEST_MAIN(mqtt_out_suite)
