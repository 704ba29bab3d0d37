/*
 * The daemon's own configuration: /etc/outpost/outpost.conf, an INI file read
 * with inih. Static tables (config.c; config_broker.c for [broker NAME]
 * sections) list every key with its section, type, bounds, default and help
 * line; the same tables fill defaults,
 * validates, prints the effective config (`outpostd --check-config`), writes
 * the shipped commented sample (packaging/outpost.conf), the key reference
 * in docs/configuration.md and the man page outpost.conf(5)
 * (packaging/man/outpost.conf.5.scd), so they cannot disagree.
 *
 * Besides the fixed sections there may be any number of named MQTT broker
 * sections, `[broker NAME]`, each bound through a second table of keys into
 * a struct op_config_broker; MQTT triggers and steps name them.
 *
 * A load parses into a new struct, records every problem it finds (not just
 * the first) as "FILE:LINE" (the diag path) plus "[section] key: what was
 * wrong, expected ..." (the message), and hands the struct over only when
 * there was none: a config is taken whole or refused whole.
 */
#ifndef OP_DAEMON_CONFIG_H
#define OP_DAEMON_CONFIG_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "agent/core/diag.h"
#include "agent/core/err.h"

/* Largest config file accepted. */
#define OP_CONFIG_MAX_FILE (1024 * 1024)

/* Where the packaged service's config is (outpost.service: --config). */
#define OP_CONFIG_FILE "/etc/outpost/outpost.conf"
/* The accounts' key when neither [accounts] key_file nor a systemd credential names one. */
#define OP_CONFIG_ACCOUNTS_KEY "/etc/outpost/accounts.key"

/* A listen address. Off (host NULL, port 0) when configured empty. */
struct op_config_listen {
	char *host;    /* IPv4 literal, IPv6 literal without brackets, or a name */
	unsigned port; /* 0..65535; 0 = any free port */
};

/* Longest broker name ("[broker NAME]"); names match [A-Za-z0-9._-]{1,64}. */
#define OP_CONFIG_BROKER_NAME_MAX 64
/* Most [broker NAME] sections in one config. */
#define OP_CONFIG_MAX_BROKERS 256

/*
 * One [broker NAME] section. After a load every string is non-NULL (empty when
 * not set) and url was checked and split into tls, host and port.
 */
struct op_config_broker {
	char *name;      /* NAME of the header */
	char *url;       /* as written: mqtt://, mqtts://, tcp:// or ssl:// host[:port] */
	char *ca_file;   /* "" = the system's CAs; mqtts only */
	char *cert_file; /* client certificate for mutual TLS, with key_file; mqtts only */
	char *key_file;
	char *username;
	char *password;  /* secret: masked by op_config_dump, wiped when freed */
	char *client_id; /* prefix of the client ids; "" = "outpost-" + agent id */
	uint64_t keepalive_ms;
	uint64_t connect_timeout_ms;
	long long max_inflight; /* QoS 1 messages in flight per client */
	int line;               /* line of the header, 0 if none */
	/* Derived from url at load. */
	bool tls;      /* mqtts:// or ssl:// */
	char *host;    /* IPv4 literal, IPv6 literal without brackets, or a name */
	unsigned port; /* 1..65535; 1883 (mqtt) or 8883 (mqtts) when not given */
	char *uri;     /* Paho's form: "tcp://host:port" or "ssl://host:port", [v6] */
};

struct op_config {
	struct {
		char *id; /* never empty after a load: defaults to the host name */
		char *data_dir;
		char *pipelines_dir;
		long long workers;
		int log_level;  /* enum op_log_level (agent/core/log.h) */
		int log_format; /* enum op_config_log_format */
		uint64_t shutdown_timeout_ms;
	} agent;
	struct {
		uint64_t map_initial; /* bytes */
		uint64_t map_max;     /* bytes */
		long long exec_retention;
		long long queue_max_events; /* per pipeline */
		uint64_t queue_max_bytes;   /* per pipeline */
		uint64_t disk_reserve;      /* bytes */
	} store;
	struct {
		struct op_config_listen listen;
		uint64_t max_body; /* bytes */
		uint64_t timeout_ms;
		long long threads;
		long long sync_threads; /* 0: sync pipelines that wait run on the HTTP threads */
		long long connection_limit;
		long long per_ip_limit; /* 0 = no limit */
		uint64_t client_timeout_ms;
		uint64_t header_timeout_ms;
		uint64_t body_timeout_ms;
		char *tls_cert; /* NULL or "": no TLS; set together with tls_key */
		char *tls_key;
	} http;
	struct {
		struct op_config_listen listen;
	} admin;
	struct {
		char *key_file; /* "" or NULL: see op_config_accounts_paths */
		char *dir;
	} accounts;
	struct {
		char *dirs; /* comma-separated absolute folders; see op_config_file_dirs */
	} files;
	struct {
		char *url; /* "": no control plane */
		char *ca_file, *cert_file, *key_file;
		char *trusted_keys; /* comma-separated absolute paths of KEY.pub files */
		char *group;
		char *topic_prefix;
		char *client_id; /* "" = "outpost-" + agent id */
		uint64_t keepalive_ms, heartbeat_ms;
		uint64_t reconnect_min_ms, reconnect_max_ms, connect_timeout_ms;
		int log_level; /* enum op_log_level: least severe line sent up */
		uint64_t metrics_interval_ms;
		long long outbox_max_records;
		uint64_t outbox_max_bytes;
		/* Derived from url at load, when it is set; else NULL. */
		char *uri; /* Paho's form: "ssl://host:port" */
	} control;
	struct op_config_broker *brokers; /* owned; in file order; NULL when none */
	size_t n_brokers;
	cJSON *globals; /* always an object after defaults or a load */
};

enum op_config_log_format { OP_CONFIG_LOG_TEXT, OP_CONFIG_LOG_JSON };

enum op_config_type {
	OP_CONFIG_STRING,   /* char * */
	OP_CONFIG_PATH,     /* char *; a file or folder name */
	OP_CONFIG_INT,      /* long long in [min, max] */
	OP_CONFIG_BYTES,    /* uint64_t bytes; "5MB", "1GiB" (1 KB = 1024 B); [min, max] */
	OP_CONFIG_DURATION, /* uint64_t ms; "30s", "1m30s", "250ms"; [min, max] in ms */
	OP_CONFIG_BOOL,     /* bool; true/false, yes/no, on/off, 1/0 */
	OP_CONFIG_ENUM,     /* int: index into choices */
	OP_CONFIG_LISTEN,   /* struct op_config_listen; "host:port", "[v6]:port", "" = off */
};

enum op_config_flags {
	OP_CONFIG_EMPTY_OK = 1, /* STRING, PATH: an empty value is allowed */
	OP_CONFIG_SECRET = 2,   /* masked as *** by op_config_dump, wiped when freed */
	OP_CONFIG_REQUIRED = 4, /* no default: a section without the key is refused */
	/*
	 * PATH: names a file the agent reads; STRING: a comma-separated list of
	 * such files. A file given as $CREDENTIALS_DIRECTORY/NAME or
	 * ${CREDENTIALS_DIRECTORY}/NAME (a systemd credential) is stored as its
	 * real path at load; the variable must be set and NAME a file name.
	 */
	OP_CONFIG_READ = 8,
	/* A SIGHUP reload applies it (op_daemon_reload); op_config_diff skips it. */
	OP_CONFIG_RELOAD = 16,
};

/* One key of the table. */
struct op_config_key {
	const char *section;
	const char *key;
	enum op_config_type type;
	size_t off;                 /* into struct op_config; for "broker", op_config_broker */
	const char *def;            /* default, as config text ("" for REQUIRED keys) */
	const char *def_doc;        /* default as shown in docs when it is computed, or NULL */
	long long min, max;         /* INT, BYTES (bytes), DURATION (ms) */
	const char *const *choices; /* ENUM: NULL-terminated */
	unsigned flags;             /* enum op_config_flags */
	const char *help;           /* one line */
	const char *example;        /* value shown in the sample for REQUIRED keys, or NULL */
};

/* The key table, borrowed for the life of the process. */
const struct op_config_key *op_config_keys(size_t *n);

/*
 * The keys of a [broker NAME] section (section "broker", offsets into struct
 * op_config_broker), borrowed for the life of the process.
 */
const struct op_config_key *op_config_broker_keys(size_t *n);

/*
 * The broker section called name, borrowed from c (valid until c is freed),
 * or NULL when c has none by that name (or name is NULL).
 */
const struct op_config_broker *op_config_broker(const struct op_config *c, const char *name);

/* Name of a type for docs and help ("bytes", "duration", ...). */
const char *op_config_type_name(enum op_config_type t);

/*
 * Fills c (any prior content is overwritten, not freed) with the defaults;
 * agent.id is left empty (the host name is filled in by a load). OP_ENOMEM
 * leaves c zeroed.
 */
op_err op_config_defaults(struct op_config *c) OP_WUR;

/*
 * Loads config text (NUL-terminated; name is used in messages as the file
 * name) over the defaults into out. Every problem goes to d (which the caller
 * initialised) as path "NAME:LINE" and message "[section] key: ...".
 * A file of an OP_CONFIG_READ key given as $CREDENTIALS_DIRECTORY/NAME is
 * stored as its real path, the variable read from the environment now.
 * Returns OP_OK (out owns a config: free it with op_config_free), OP_ECONFIG
 * when any problem was found, OP_ENOMEM. On error out is zeroed.
 */
op_err op_config_load_string(const char *text, const char *name, struct op_config *out,
                             struct op_diag *d) OP_WUR;

/*
 * Like op_config_load_string for the file at path. Files over
 * OP_CONFIG_MAX_FILE are refused (OP_ELIMIT); a file that cannot be opened or
 * read gives the errno class (OP_ENOTFOUND for a missing file) with the
 * system's text in d under the path.
 */
op_err op_config_load_file(const char *path, struct op_config *out, struct op_diag *d) OP_WUR;

/*
 * For the tools root runs beside the service (outpostctl account,
 * outpostd --check-config): when $CREDENTIALS_DIRECTORY is not set and the
 * service's credentials folder (OP_CONFIG_SERVICE_CREDENTIALS, where systemd
 * keeps them while outpost.service runs) exists, sets the variable to it, so
 * that a config naming $CREDENTIALS_DIRECTORY/NAME files loads as the
 * service's does.
 */
#define OP_CONFIG_SERVICE_CREDENTIALS "/run/credentials/outpost.service"
void op_config_service_credentials(void);

/* Frees what c holds (not c) and zeroes it. Safe on a zeroed struct. */
void op_config_free(struct op_config *c);

/*
 * Where the sealed accounts are (agent/account/vault.h): [accounts] dir, or
 * DATA_DIR/accounts; and their key: [accounts] key_file, or else the systemd
 * credential $CREDENTIALS_DIRECTORY/accounts.key when it exists, or else
 * /etc/outpost/accounts.key. Truncated to the buffer sizes.
 */
/*
 * The folders of [files] dirs, split and trimmed, in *dirs (n of them; free
 * with op_config_file_dirs_free). A load has checked each is absolute.
 * OP_ENOMEM.
 */
op_err op_config_file_dirs(const struct op_config *c, char ***dirs, size_t *n) OP_WUR;
void op_config_file_dirs_free(char **dirs, size_t n);

void op_config_accounts_paths(const struct op_config *c, char *dir, size_t dirlen, char *key,
                              size_t keylen);

/*
 * Prints the effective config as loadable INI text, [broker NAME] sections
 * after [admin], secrets (broker passwords) and globals whose
 * names look sensitive (password, secret, token, key, credential) masked as
 * ***. OP_ENOMEM, or OP_EIO when writing fails.
 */
op_err op_config_dump(const struct op_config *c, FILE *f) OP_WUR;

/*
 * Names what differs between the configs a and b, as text the way messages
 * name keys: "[section] key" for each key of the table (OP_CONFIG_RELOAD
 * keys left out) and "[broker NAME] key" for each key of a broker section
 * in both, "[broker NAME] (added)" or "(removed)" for one in only one of
 * them, joined by ", ". Values are compared as op_config_dump prints them;
 * [globals] is not compared. On OP_OK *out is a new string (op_free) and *n
 * the number of names, or NULL and 0 when nothing differs. OP_ENOMEM
 * leaves them NULL and 0.
 */
op_err op_config_diff(const struct op_config *a, const struct op_config *b, char **out,
                      size_t *n) OP_WUR;

/*
 * Writes the commented sample config shipped as /etc/outpost/outpost.conf:
 * every key commented out with its default and help line, and a commented
 * example [broker NAME] section. OP_EIO on a write error, OP_ENOMEM.
 */
op_err op_config_write_sample(FILE *f) OP_WUR;

/*
 * Writes the Markdown key reference (a paragraph on systemd credentials, one
 * table per section, [broker NAME] included, with a paragraph on brokers)
 * that docs/configuration.md holds between its generated-section markers.
 * OP_EIO on a write error, OP_ENOMEM.
 */
op_err op_config_write_doc(FILE *f) OP_WUR;

/*
 * Writes the man page outpost.conf(5) in scdoc (packaging/man/outpost.conf.5.scd):
 * the syntax, every key of every section with its type, default and help
 * line, the [broker NAME] and [globals] sections, the files. Every line is
 * valid scdoc: text from the tables is escaped. OP_EIO on a write error,
 * OP_ENOMEM.
 */
op_err op_config_write_man(FILE *f) OP_WUR;

/* Value parsers behind the table, for other modules' settings. */
/* "5MB", "1GiB", "512" (bytes). 1 KB = 1 KiB = 1024 bytes. False if not valid or too large. */
bool op_config_parse_bytes(const char *s, uint64_t *out);
/* "250ms", "30s", "1m30s", "2h", "0". False if not valid or too large. */
bool op_config_parse_duration(const char *s, uint64_t *ms);
/* true/false, yes/no, on/off, 1/0 (case-insensitive). */
bool op_config_parse_bool(const char *s, bool *out);

#endif
