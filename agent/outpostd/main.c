/*
 * outpostd: the agent daemon. Reads its config, opens the runtime (store,
 * pipelines, workers), starts the triggers and the admin endpoint, tells
 * systemd it is ready, and then only handles signals: SIGHUP reloads the
 * pipelines, SIGTERM/SIGINT stop it gracefully. Every other thread has the
 * signals blocked, so the main thread's sigtimedwait() is the one place they
 * arrive; it also paces the systemd watchdog and the daemon's once-a-second
 * housekeeping (op_daemon_tick: slow HTTP clients).
 */
#define OP_LOG_MODULE "outpostd"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/clock.h"
#include "agent/core/log.h"
#include "agent/core/version.h"
#include "agent/daemon/config.h"
#include "agent/daemon/daemon.h"
#include "agent/daemon/runtime.h"
#include "agent/trigger/mqtt_wire.h"

/*
 * The development config of `outpostd --dev`: everything on loopback, the
 * store in ./.outpost-data, pipelines from --pipelines (or ./pipelines.d).
 */
static const char dev_config[] = "[agent]\n"
                                 "id = dev\n"
                                 "data_dir = .outpost-data\n"
                                 "pipelines_dir = pipelines.d\n"
                                 "workers = 4\n"
                                 "shutdown_timeout = 5s\n"
                                 "[store]\n"
                                 "map_initial = 16MB\n"
                                 "map_max = 1GB\n"
                                 "[http]\n"
                                 "listen = 127.0.0.1:8080\n"
                                 "[admin]\n"
                                 "listen = 127.0.0.1:9090\n"
                                 "[accounts]\n"
                                 "key_file = .outpost-data/accounts.key\n";

static void usage(FILE *f)
{
	fputs("usage: outpostd --config FILE [--check-config]\n"
	      "       outpostd --dev [--pipelines DIR]\n"
	      "       outpostd --version | --help\n"
	      "\n"
	      "  --config FILE    the agent's config (INI; see outpost.conf(5))\n"
	      "  --check-config   load the config and the pipelines, print the effective\n"
	      "                   config and every problem, and exit (0 ok, 2 invalid)\n"
	      "  --dev            run on the built-in development config: HTTP triggers on\n"
	      "                   127.0.0.1:8080, admin on 127.0.0.1:9090, store in\n"
	      "                   ./.outpost-data\n"
	      "  --pipelines DIR  with --dev: where the pipelines are (default ./pipelines.d)\n"
	      "\n"
	      "Signals: SIGHUP reloads the pipelines, SIGTERM and SIGINT stop gracefully.\n",
	      f);
}

static void print_diag(const struct op_diag *d)
{
	for (size_t i = 0; i < d->n; i++) {
		if (d->v[i].path[0])
			fprintf(stderr, "%s: %s\n", d->v[i].path, d->v[i].msg);
		else
			fprintf(stderr, "%s\n", d->v[i].msg);
	}
	if (d->lost)
		fprintf(stderr, "... and %zu more problems\n", d->lost);
}

struct args {
	const char *config;
	const char *pipelines;
	bool check;
	bool dev;
};

static int parse_args(int argc, char **argv, struct args *a)
{
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		if (strcmp(o, "--config") == 0 && i + 1 < argc) {
			a->config = argv[++i];
		} else if (strcmp(o, "--pipelines") == 0 && i + 1 < argc) {
			a->pipelines = argv[++i];
		} else if (strcmp(o, "--check-config") == 0) {
			a->check = true;
		} else if (strcmp(o, "--dev") == 0) {
			a->dev = true;
		} else if (strcmp(o, "--version") == 0) {
			printf("outpostd %s\n", OUTPOST_VERSION);
			exit(0);
		} else if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
			usage(stdout);
			exit(0);
		} else {
			fprintf(stderr, "outpostd: unknown argument \"%s\"\n", o);
			usage(stderr);
			return 2;
		}
	}
	if ((a->config == NULL) == !a->dev) {
		fputs("outpostd: give either --config FILE or --dev\n", stderr);
		usage(stderr);
		return 2;
	}
	if (a->pipelines && !a->dev) {
		fputs("outpostd: --pipelines goes with --dev; set pipelines_dir in the config\n",
		      stderr);
		return 2;
	}
	return 0;
}

static op_err load_config(const struct args *a, struct op_config *cfg, struct op_diag *d)
{
	op_err rc = a->dev ? op_config_load_string(dev_config, "(built-in --dev config)", cfg, d)
	                   : op_config_load_file(a->config, cfg, d);
	if (rc == OP_OK && a->pipelines) {
		char *p = op_strdup(a->pipelines);
		if (p == NULL) {
			op_config_free(cfg);
			return OP_ENOMEM;
		}
		op_free(cfg->agent.pipelines_dir);
		cfg->agent.pipelines_dir = p;
	}
	return rc;
}

/* Under systemd's watchdog: a ping every half interval, on a deadline that
 * signals (reloads) do not push back, and only while the agent is alive (a
 * store writer stuck for two whole intervals is not, a slow disk's long
 * fsync is: then systemd restarts it). */
static void watchdog_tick(struct op_daemon *dm, int64_t interval_ms, int64_t *next)
{
	int64_t now = op_mono_ms();
	if (now < *next)
		return;
	*next = now + interval_ms / 2;
	char why[128];
	if (op_daemon_alive(dm, 2 * interval_ms, why, sizeof(why)))
		sd_notify(0, "WATCHDOG=1");
	else
		OP_LOGE("not alive: %s; the watchdog is not told otherwise", why);
}

/* Waits for signals; returns when asked to stop. */
static void serve(struct op_daemon *dm, const struct args *a, struct op_config *cfg,
                  const sigset_t *set)
{
	uint64_t wd_usec = 0;
	bool watchdog = sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec >= 2000;
	int64_t interval_ms = watchdog ? (int64_t)(wd_usec / 1000) : 0, ping_at = 0;
	int64_t tick_at = op_mono_ms() + OP_DAEMON_TICK_MS;
	if (watchdog)
		op_daemon_set_stall_limit(dm, 2 * interval_ms);
	for (;;) {
		if (watchdog)
			watchdog_tick(dm, interval_ms, &ping_at);
		int64_t now = op_mono_ms();
		if (now >= tick_at) {
			op_daemon_tick(dm);
			tick_at = now + OP_DAEMON_TICK_MS;
		}
		int64_t due = watchdog && ping_at < tick_at ? ping_at : tick_at;
		int64_t wait = due - op_mono_ms();
		wait = wait > 0 ? wait : 1;
		struct timespec ts = {.tv_sec = (time_t)(wait / 1000),
		                      .tv_nsec = (long)(wait % 1000) * 1000000};
		int sig = sigtimedwait(set, NULL, &ts);
		if (sig < 0)
			continue;
		if (sig == SIGHUP) {
			sd_notify(0, "RELOADING=1");
			struct op_config next;
			struct op_diag d;
			op_diag_init(&d);
			op_err rc = load_config(a, &next, &d);
			if (rc == OP_OK) {
				rc = op_daemon_reload(dm, &next, &d);
				op_config_free(&next);
			}
			if (rc) {
				OP_LOGE(
				    "reload refused, the running pipelines go on: %zu problem%s",
				    op_diag_count(&d), op_diag_count(&d) == 1 ? "" : "s");
				for (size_t i = 0; i < d.n; i++)
					OP_LOGE("%s: %s", d.v[i].path, d.v[i].msg);
			}
			op_diag_fini(&d);
			sd_notify(0, "READY=1");
			(void)cfg;
			continue;
		}
		OP_LOGI("%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		return;
	}
}

int main(int argc, char **argv)
{
	/* Internal: the daemon runs its MQTT consumers as this binary with this
	 * one argument and their socket on fd 3 (agent/trigger/mqtt_wire.h). */
	if (argc == 2 && strcmp(argv[1], "--mqtt-consumer") == 0)
		return op_mqtt_consumer_main();
	op_alloc_init();
	struct args a = {0};
	int rc = parse_args(argc, argv, &a);
	if (rc)
		return rc;

	struct op_config cfg;
	struct op_diag d;
	op_diag_init(&d);
	/* A check run by hand reads the credentials the service has now. */
	if (a.check)
		op_config_service_credentials();
	if (load_config(&a, &cfg, &d) != OP_OK) {
		print_diag(&d);
		fprintf(stderr, "outpostd: the config is invalid (%zu problem%s)\n",
		        op_diag_count(&d), op_diag_count(&d) == 1 ? "" : "s");
		op_diag_fini(&d);
		return 2;
	}
	op_log_set_level((enum op_log_level)cfg.agent.log_level);
	op_log_set_json(cfg.agent.log_format == OP_CONFIG_LOG_JSON);
	(void)op_log_detect_journal();

	if (a.check) {
		op_err ce = op_daemon_check(&cfg, &d);
		if (op_config_dump(&cfg, stdout) != OP_OK)
			ce = OP_EIO;
		print_diag(&d);
		op_diag_fini(&d);
		op_config_free(&cfg);
		if (ce) {
			fprintf(stderr, "outpostd: not ready to run\n");
			return 2;
		}
		fprintf(stderr, "outpostd: config and pipelines are valid\n");
		return 0;
	}

	/* Block the signals before any thread starts, so only sigtimedwait sees them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct op_daemon *dm = NULL;
	if (op_daemon_start(&cfg, &dm, &d) != OP_OK) {
		print_diag(&d);
		fprintf(stderr, "outpostd: cannot start\n");
		op_diag_fini(&d);
		op_config_free(&cfg);
		return 1;
	}
	op_diag_fini(&d);
	sd_notify(0, "READY=1\nSTATUS=running");
	OP_LOGI("outpostd %s ready (agent %s)", OUTPOST_VERSION, cfg.agent.id);
	serve(dm, &a, &cfg, &set);
	sd_notify(0, "STOPPING=1");
	op_daemon_stop(dm);
	op_config_free(&cfg);
	OP_LOGI("stopped");
	return 0;
}
