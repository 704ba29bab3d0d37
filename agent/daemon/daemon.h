/*
 * The daemon as a whole: the runtime, the HTTP trigger server, the admin
 * endpoint (/healthz, /readyz, /metrics) and the metrics they feed. main()
 * owns the config and the signals; everything else starts and stops here.
 */
#ifndef OP_DAEMON_DAEMON_H
#define OP_DAEMON_DAEMON_H

#include "agent/core/diag.h"
#include "agent/daemon/config.h"

struct op_daemon;

/*
 * Starts everything cfg describes; cfg must outlive the daemon (reloads
 * update its pipelines_dir and globals). Problems go to d.
 */
op_err op_daemon_start(struct op_config *cfg, struct op_daemon **out, struct op_diag *d) OP_WUR;

/*
 * Takes the pipelines folder, globals, log settings and [broker NAME]
 * sections of next (a freshly loaded config) and reloads the pipelines and
 * their triggers as one set, checked against next's brokers; on any problem
 * nothing changes, the running set goes on and d says why. A broker whose
 * settings changed gets a new publisher client and its MQTT triggers new
 * consumers; unchanged ones keep their connections. next gets the broker
 * sections it replaced (the caller frees them with it). Other settings need
 * a restart: one warning names every key of next that differs from the
 * running config (see op_config_diff).
 */
op_err op_daemon_reload(struct op_daemon *dm, struct op_config *next, struct op_diag *d) OP_WUR;

/* Stops accepting requests, drains and closes. NULL is a no-op. */
void op_daemon_stop(struct op_daemon *dm);

/*
 * Loads the pipelines of cfg and checks their triggers, and with a [control]
 * url what the link's start checks (the trusted keys read and parsed),
 * starting and connecting nothing and leaving the store closed. Every
 * problem goes to d. OP_ECONFIG and the loader's classes, OP_ENOMEM.
 */
op_err op_daemon_check(const struct op_config *cfg, struct op_diag *d) OP_WUR;

/*
 * Whether the agent is alive enough to say so (to systemd's watchdog, to
 * /healthz): false when the store's writer has been stuck for limit_ms or
 * longer (a disk that stopped answering); why then says so. A stuck agent
 * stops pinging the watchdog, and systemd restarts it.
 */
bool op_daemon_alive(struct op_daemon *dm, int64_t limit_ms, char *why, size_t whylen);
/* The limit /healthz uses (twice the watchdog's interval under systemd);
 * 60 s until set. */
void op_daemon_set_stall_limit(struct op_daemon *dm, int64_t limit_ms);

/* Housekeeping for the main thread, about once a second (OP_DAEMON_TICK_MS):
 * closes HTTP connections that send their request too slowly, and ends the
 * publishers of brokers a reload removed once no dropped pipeline drains. */
#define OP_DAEMON_TICK_MS 1000
void op_daemon_tick(struct op_daemon *dm);

/* The bound ports (tests use port 0); 0 when that server is off. */
unsigned op_daemon_http_port(const struct op_daemon *dm);
unsigned op_daemon_admin_port(const struct op_daemon *dm);

#endif
