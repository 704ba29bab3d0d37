/* outpostctl: arguments and dispatch to the commands. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/version.h"
#include "control-sync/outpostctl/ctl.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} commands[] = {
    {"run", op_ctl_run, "run a pipeline once and print its result"},
    {"check", op_ctl_check, "load pipelines and report every problem"},
    {"steps", op_ctl_steps, "list step types, or the config keys of one"},
    {"schema", op_ctl_schema, "print the JSON Schema of the pipeline format"},
    {"pipelines", op_ctl_pipelines, "list the agent's pipelines with queue depths"},
    {"executions", op_ctl_executions, "list the agent's recent executions"},
    {"execution", op_ctl_execution, "show one execution record"},
    {"dead", op_ctl_dead, "list dead letters, or show one"},
    {"replay", op_ctl_replay, "put a dead letter back into its queue"},
    {"account", op_ctl_account, "set, list or delete the agent's accounts (credentials)"},
    {"keygen", op_ctl_keygen, "make an Ed25519 key for signing desired state"},
    {"sign", op_ctl_sign, "sign a desired-state or command document into an envelope"},
    {"verify", op_ctl_verify, "open a signed envelope as an agent does"},
    {"deploy", op_ctl_deploy, "sign pipelines and publish them to agents over MQTT"},
    {"rollback", op_ctl_rollback, "deploy an agent's previous pipelines again, over MQTT"},
    {"status", op_ctl_status, "show the fleet's agents, or one in detail, over MQTT"},
    {"invoke", op_ctl_invoke, "run an agent's pipeline now, over MQTT"},
    {"logs", op_ctl_logs, "follow an agent's log records, over MQTT"},
};

static void usage(FILE *f)
{
	fputs("usage: outpostctl COMMAND [ARGS]\n       outpostctl --version\n\ncommands:\n", f);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fputs(
	    "\n'outpostctl COMMAND --help' describes a command.\n"
	    "The admin commands (pipelines ... replay) call a running agent's admin endpoint:\n"
	    "--admin HOST:PORT (default $OUTPOST_ADMIN or 127.0.0.1:9090), --json for raw JSON;\n"
	    "with --agent ID --sign-key KEYFILE they ask that agent over MQTT instead.\n"
	    "deploy, rollback, status, invoke, logs and --agent talk to the fleet's MQTT broker\n"
	    "over TLS: --broker mqtts://HOST:PORT, --ca, --cert, --key (default $OUTPOST_BROKER,\n"
	    "$OUTPOST_CA, $OUTPOST_CERT, $OUTPOST_KEY); what changes or runs something on an\n"
	    "agent is signed with --sign-key (outpostctl keygen).\n"
	    "\nExit status: 0 ok; 1 the pipeline or call failed, or the agent or broker is\n"
	    "unreachable; 2 bad usage or invalid input; 3 not found.\n",
	    f);
}

int main(int argc, char **argv)
{
	op_alloc_init();
	/* paho's threads may still be ending when main returns: OpenSSL's own
	 * cleanup at exit would pull libcrypto from under their thread-local
	 * destructors (a crash at exit, seen under ASan). Leave it loaded. */
	(void)OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
	if (argc < 2) {
		usage(stderr);
		return CTL_INVALID;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return CTL_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("outpostctl %s\n", OUTPOST_VERSION);
		return CTL_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 2, argv + 2);
	}
	fprintf(stderr, "outpostctl: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return CTL_INVALID;
}
