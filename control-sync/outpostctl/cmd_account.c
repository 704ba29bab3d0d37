/*
 * `outpostctl account set|list|delete`: the agent's accounts, managed on the
 * agent's host through its vault (agent/account/vault.h), found from the
 * agent's config. A document is read from a file or stdin, never from the
 * command line, so that no secret lands in a shell history or in ps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/account/vault.h"
#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/daemon/config.h"
#include "control-sync/outpostctl/ctl.h"

#define DEV_DIR ".outpost-data/accounts"
#define DEV_KEY ".outpost-data/accounts.key"

static void usage(FILE *f)
{
	fputs("usage: outpostctl account set NAME [--file FILE] [--config FILE | --dev]\n"
	      "       outpostctl account put --agent ID NAME [--file FILE] --sign-key KEYFILE\n"
	      "                              [connection options] (outpostctl account put --help)\n"
	      "       outpostctl account list [--json] [--config FILE | --dev]\n"
	      "       outpostctl account delete NAME [--config FILE | --dev]\n"
	      "\n"
	      "set reads the account's JSON document from FILE or, by default, stdin:\n"
	      "  {\"type\":\"basic\",\"username\":\"...\",\"password\":\"...\"}\n"
	      "  types: basic, key (username, privateKey, passphrase), bearer (token),\n"
	      "  oauth2 (tokenUrl, clientId, clientSecret, scope, audience),\n"
	      "  certificate (certificate, privateKey, passphrase)\n"
	      "list shows names, types and users, never a secret.\n"
	      "\n"
	      "  --config FILE  the agent's config (default $OUTPOST_CONFIG or " OP_CONFIG_FILE
	      ")\n"
	      "  --dev          the accounts of `outpostd --dev` (" DEV_DIR ")\n",
	      f);
}

struct args {
	const char *verb, *name, *file, *config;
	bool dev, json;
};

static int parse_args(int argc, char **argv, struct args *a)
{
	memset(a, 0, sizeof(*a));
	a->file = "-";
	for (int i = 0; i < argc; i++) {
		const char *o = argv[i];
		if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
			usage(stdout);
			return -1;
		} else if (strcmp(o, "--dev") == 0) {
			a->dev = true;
		} else if (strcmp(o, "--json") == 0) {
			a->json = true;
		} else if ((strcmp(o, "--file") == 0 || strcmp(o, "--config") == 0) &&
		           i + 1 < argc) {
			*(o[2] == 'f' ? &a->file : &a->config) = argv[++i];
		} else if (o[0] == '-') {
			fprintf(stderr, "outpostctl account: unknown option %s\n", o);
			return CTL_INVALID;
		} else if (a->verb == NULL) {
			a->verb = o;
		} else if (a->name == NULL) {
			a->name = o;
		} else {
			fprintf(stderr, "outpostctl account: unexpected argument %s\n", o);
			return CTL_INVALID;
		}
	}
	bool named = a->verb && (strcmp(a->verb, "set") == 0 || strcmp(a->verb, "delete") == 0);
	bool list = a->verb && strcmp(a->verb, "list") == 0;
	if ((!named && !list) || (named && a->name == NULL) || (list && a->name != NULL) ||
	    (a->dev && a->config != NULL)) {
		usage(stderr);
		return CTL_INVALID;
	}
	return CTL_OK;
}

int op_ctl_accounts_paths(const char *config, bool dev, char *dir, size_t dirlen, char *key,
                          size_t keylen)
{
	char **dirs = NULL;
	size_t n = 0;
	int rc = op_ctl_agent_paths(config, dev, dir, dirlen, key, keylen, &dirs, &n);
	op_config_file_dirs_free(dirs, n);
	return rc;
}

int op_ctl_agent_paths(const char *config, bool dev, char *dir, size_t dirlen, char *key,
                       size_t keylen, char ***file_dirs, size_t *n_file_dirs)
{
	if (dev) {
		snprintf(dir, dirlen, "%s", DEV_DIR);
		snprintf(key, keylen, "%s", DEV_KEY);
		return CTL_OK;
	}
	const char *path = config ? config : getenv("OUTPOST_CONFIG");
	if (path == NULL || path[0] == '\0')
		path = OP_CONFIG_FILE;
	struct op_config cfg;
	struct op_diag d;
	op_diag_init(&d);
	op_config_service_credentials();
	op_err e = op_config_load_file(path, &cfg, &d);
	if (e) {
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "%s: %s\n", d.v[i].path, d.v[i].msg);
		if (d.n == 0)
			fprintf(stderr, "outpostctl: %s: %s\n", path, op_err_str(e));
		op_diag_fini(&d);
		return CTL_INVALID;
	}
	op_diag_fini(&d);
	op_config_accounts_paths(&cfg, dir, dirlen, key, keylen);
	int rc = CTL_OK;
	if (file_dirs && op_config_file_dirs(&cfg, file_dirs, n_file_dirs) != OP_OK) {
		fprintf(stderr, "outpostctl: out of memory\n");
		rc = CTL_FAILED;
	}
	op_config_free(&cfg);
	return rc;
}

/* Opens the vault the config names; create_key only for set. */
static int open_vault(const struct args *a, bool create_key, struct op_vault **v)
{
	char dir[4096], key[4096], err[512];
	int rc = op_ctl_accounts_paths(a->config, a->dev, dir, sizeof(dir), key, sizeof(key));
	if (rc)
		return rc;
	op_err e = op_vault_open(dir, key, create_key, v, err, sizeof(err));
	if (e) {
		fprintf(stderr, "outpostctl account: %s\n", err);
		return e == OP_ECONFIG ? CTL_INVALID : CTL_FAILED;
	}
	return CTL_OK;
}

static int code_of(op_err e)
{
	if (e == OP_OK)
		return CTL_OK;
	return e == OP_ENOTFOUND                   ? CTL_NOTFOUND
	       : e == OP_EINVAL || e == OP_ECONFIG ? CTL_INVALID
	                                           : CTL_FAILED;
}

static int do_set(const struct args *a, struct op_vault *v)
{
	char *text = NULL;
	size_t len = 0;
	if (op_ctl_read_file(a->file, OP_VAULT_FILE_MAX, &text, &len) != OP_OK)
		return CTL_INVALID;
	cJSON *doc = cJSON_ParseWithLength(text, len);
	explicit_bzero(text, len);
	op_free(text);
	if (doc == NULL) {
		fprintf(stderr, "outpostctl account: %s: not a JSON document\n",
		        strcmp(a->file, "-") == 0 ? "stdin" : a->file);
		return CTL_INVALID;
	}
	struct op_diag d;
	op_diag_init(&d);
	struct op_account *acct = NULL;
	op_err e = op_account_parse(a->name, doc, &acct, &d);
	op_account_json_free(doc);
	if (e) {
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "account %s: %s%s%s\n", a->name, d.v[i].path,
			        d.v[i].path[0] ? ": " : "", d.v[i].msg);
		op_diag_fini(&d);
		return code_of(e);
	}
	op_diag_fini(&d);
	char err[512];
	e = op_vault_put(v, acct, err, sizeof(err));
	if (e)
		fprintf(stderr, "outpostctl account: %s\n", err);
	else
		printf("account %s (%s) sealed with key %s\n", acct->name,
		       op_account_type_name(acct->type), op_vault_key_id(v));
	op_account_free(acct);
	return code_of(e);
}

static void iso_ms(int64_t ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (ms <= 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, len, "-");
}

static int do_list(const struct args *a, struct op_vault *v)
{
	char **names;
	size_t n;
	op_err e = op_vault_list(v, &names, &n);
	if (e) {
		fprintf(stderr, "outpostctl account: cannot list the accounts: %s\n",
		        op_err_str(e));
		return CTL_FAILED;
	}
	cJSON *arr = a->json ? cJSON_CreateArray() : NULL;
	if (!a->json)
		printf("%-24s %-12s %-24s %s\n", "NAME", "TYPE", "USER", "UPDATED");
	int rc = CTL_OK;
	for (size_t i = 0; i < n; i++) {
		char err[512];
		struct op_account *acct = NULL;
		e = op_vault_get(v, names[i], &acct, err, sizeof(err));
		if (e) {
			fprintf(stderr, "outpostctl account: %s\n", err);
			rc = CTL_FAILED;
			continue;
		}
		if (arr != NULL) {
			cJSON *o = op_account_describe(acct);
			if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
				cJSON_Delete(o);
				rc = CTL_FAILED;
			}
		} else {
			char when[32];
			iso_ms(acct->updated_ms, when, sizeof(when));
			const char *user = acct->username    ? acct->username
			                   : acct->client_id ? acct->client_id
			                                     : "-";
			printf("%-24s %-12s %-24s %s\n", acct->name,
			       op_account_type_name(acct->type), user, when);
		}
		op_account_free(acct);
	}
	if (arr != NULL) {
		char *s = op_json_print(arr, OP_JSON_PRETTY);
		if (s)
			puts(s);
		else
			rc = CTL_FAILED;
		op_free(s);
		cJSON_Delete(arr);
	}
	op_vault_names_free(names, n);
	return rc;
}

int op_ctl_account(int argc, char **argv)
{
	/* put goes to an agent through the control plane (cmd_deploy.c). */
	if (argc > 0 && strcmp(argv[0], "put") == 0)
		return op_ctl_account_put(argc - 1, argv + 1);
	struct args a;
	int rc = parse_args(argc, argv, &a);
	if (rc != CTL_OK)
		return rc < 0 ? CTL_OK : rc;
	bool set = strcmp(a.verb, "set") == 0;
	struct op_vault *v = NULL;
	rc = open_vault(&a, set, &v);
	if (rc != CTL_OK)
		return rc;
	if (set) {
		rc = do_set(&a, v);
	} else if (strcmp(a.verb, "list") == 0) {
		rc = do_list(&a, v);
	} else {
		char err[512];
		op_err e = op_vault_delete(v, a.name, err, sizeof(err));
		if (e)
			fprintf(stderr, "outpostctl account: %s\n", err);
		else
			printf("account %s deleted\n", a.name);
		rc = code_of(e);
	}
	op_vault_close(v);
	return rc;
}
