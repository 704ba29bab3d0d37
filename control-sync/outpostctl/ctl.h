/*
 * outpostctl's commands. Each takes the arguments after its name and returns
 * the process exit code: 0 success, 1 the pipeline failed (or, for the admin
 * commands, the agent is unreachable or the call failed; for deploy and
 * status, the broker is unreachable, or an agent refused or did not report),
 * 2 invalid input (a bad pipeline, a bad argument, a file that cannot be
 * read), 3 what the command names does not exist (execution, dead letter,
 * agent, group, a seq in an agent's history).
 */
#ifndef OP_OUTPOSTCTL_CTL_H
#define OP_OUTPOSTCTL_CTL_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/core/err.h"

struct op_diag;
struct op_env_key;

#define CTL_OK       0
#define CTL_FAILED   1
#define CTL_INVALID  2
#define CTL_NOTFOUND 3

int op_ctl_run(int argc, char **argv);
int op_ctl_check(int argc, char **argv);
int op_ctl_steps(int argc, char **argv);
int op_ctl_schema(int argc, char **argv);

/* Local admin, through the running agent's admin endpoint (cmd_admin.c). */
int op_ctl_pipelines(int argc, char **argv);
int op_ctl_executions(int argc, char **argv);
int op_ctl_execution(int argc, char **argv);
int op_ctl_dead(int argc, char **argv);
int op_ctl_replay(int argc, char **argv);

/* The agent's accounts, through its vault on this host (cmd_account.c). */
int op_ctl_account(int argc, char **argv);
/* An account sealed to an agent, deployed with its running pipelines (cmd_deploy.c). */
int op_ctl_account_put(int argc, char **argv);
/* The vault folder and key file of the agent whose config is config (NULL:
 * $OUTPOST_CONFIG, else /etc/outpost/outpost.conf), or of `outpostd --dev`
 * when dev. CTL_OK, or CTL_INVALID after printing why. */
int op_ctl_accounts_paths(const char *config, bool dev, char *dir, size_t dirlen, char *key,
                          size_t keylen);
/* The same, and the config's [files] dirs (none for dev; free with
 * op_config_file_dirs_free). CTL_FAILED on ENOMEM. */
int op_ctl_agent_paths(const char *config, bool dev, char *dir, size_t dirlen, char *key,
                       size_t keylen, char ***file_dirs, size_t *n_file_dirs);

/* Signing keys and envelopes of the control-plane link (cmd_keys.c). */
int op_ctl_keygen(int argc, char **argv);
int op_ctl_sign(int argc, char **argv);
int op_ctl_verify(int argc, char **argv);
/* Reads the key file path into key and, when seed is not NULL, its private
 * seed (OP_ENV_KEY_LEN bytes, the caller's to wipe): a private key file as
 * `outpostctl keygen` writes, or, without seed, KEY.pub. CTL_OK, or
 * CTL_INVALID after printing why. */
int op_ctl_read_key(const char *path, struct op_env_key *key, unsigned char *seed);

/* The control plane over MQTT (cmd_deploy.c, docs/protocol.md): deploy
 * signed desired state to agents and wait for their reports; roll an agent
 * back to the pipelines of a document it applied before; show the fleet's
 * status. */
int op_ctl_deploy(int argc, char **argv);
int op_ctl_rollback(int argc, char **argv);
int op_ctl_status(int argc, char **argv);

/* One agent over MQTT (cmd_remote.c): run a pipeline now as a signed
 * command; follow its log records. The admin commands above take --agent
 * to ask an agent the same through the control plane (cmd_admin.c). */
int op_ctl_invoke(int argc, char **argv);
int op_ctl_logs(int argc, char **argv);

/* Prints the problems in d, one line each, prefixed with file. */
void op_ctl_print_problems(const char *file, const struct op_diag *d);

/* Reads a whole file ("-" is stdin) of at most max bytes into *out (NUL-
 * terminated, caller frees). On error prints why to stderr. */
op_err op_ctl_read_file(const char *path, size_t max, char **out, size_t *len) OP_WUR;

#endif
