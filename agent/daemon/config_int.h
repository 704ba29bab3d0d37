/*
 * Private to agent/daemon/config*.c: what config.c (the fixed sections, the
 * reader, the value binding and the dump), config_broker.c (the [broker NAME]
 * sections) and config_doc.c (the writers of the sample, the docs and the man
 * page) share. The load context is here so that config.c and config_broker.c
 * bind values into the same private struct op_config; the caller's struct is
 * still written only by config.c, and only when a load found no problem.
 */
#ifndef OP_DAEMON_CONFIG_INT_H
#define OP_DAEMON_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "agent/core/diag.h"
#include "agent/core/err.h"
#include "agent/daemon/config.h"

#define KiB  (1024LL)
#define MiB  (1024LL * KiB)
#define GiB  (1024LL * MiB)
#define TiB  (1024LL * GiB)
#define SEC  (1000LL)
#define MIN  (60LL * SEC)
#define HOUR (60LL * MIN)

/* Entries of the key tables; each file checks its own with _Static_assert. */
#define OP_CONFIG__N_KEYS  46 /* config.c keys[] */
#define OP_CONFIG__N_BKEYS 10 /* config_broker.c broker_keys[] */

/* The fixed sections in the order they are printed, [globals] last (config.c). */
#define OP_CONFIG__N_SECTIONS 8
extern const char *const op_config__sections[OP_CONFIG__N_SECTIONS];
#define SEC_GLOBALS 7 /* op_config__sections[SEC_GLOBALS] is "globals" */

/* struct load's sec besides an index into op_config__sections. */
#define SEC_NONE   (-1) /* before any [section] */
#define SEC_SKIP   (-2) /* unknown or malformed section: already reported */
#define SEC_BROKER (-3) /* a [broker NAME] section: struct load's broker */

/* One load in progress: the new config and what is known about its text. */
struct load {
	struct op_config cfg;
	struct op_diag *d;
	const char *name;
	const char *text;
	size_t len, pos;
	int line;
	int sec;                     /* index into sections, SEC_NONE, SEC_SKIP or SEC_BROKER */
	size_t broker;               /* SEC_BROKER: index into cfg.brokers */
	int seen[OP_CONFIG__N_KEYS]; /* line a key was set on, 0 = not set */
	int (*bseen)[OP_CONFIG__N_BKEYS]; /* the same per broker, beside cfg.brokers */
	size_t bcap;                      /* capacity of cfg.brokers and bseen */
	size_t problems;                  /* problems recorded by this load */
	bool nomem;
};

/* ---- config.c ---- */

/* Records a problem at "NAME:line" (just NAME when line is 0) in l's diag. */
void op_config__problem(struct load *l, int line, const char *fmt, ...) OP_PRINTF(3, 4);

/*
 * Applies one value through key k to the struct at base (struct op_config, or
 * struct op_config_broker for broker keys); label is the section as shown in
 * messages ("http", "broker plant"). On a bad value records a problem and
 * leaves the field at its previous value.
 */
void op_config__set_value(struct load *l, void *base, const char *label, int line,
                          const struct op_config_key *k, const char *v);

/* name is no key of section sec (the table's section) in table t; label names it. */
void op_config__unknown_key(struct load *l, const char *label, const char *sec,
                            const struct op_config_key *t, size_t nt, const char *name);

/* Reports path (the value of key in section label, set on line) if it cannot be read. */
void op_config__check_readable(struct load *l, int line, const char *label, const char *key,
                               const char *path);

/* Formats v bytes as config text: "64MB", "1025". */
void op_config__fmt_bytes(uint64_t v, char *out, size_t n);

/* Formats a bound of key k as config text: bytes, a duration (ms) or a plain number. */
void op_config__fmt_bound(const struct op_config_key *k, long long v, char *out, size_t n);

/* Reads a run of decimal digits at *sp and advances it; false on none or overflow. */
bool op_config__digits(const char **sp, uint64_t *out);

/* h (n bytes) is a host name: 1 to 253 letters, digits, '-' and '.'. */
bool op_config__valid_hostname(const char *h, size_t n);

/* Frees what the keys of table t hold in the struct at base. */
void op_config__free_values(void *base, const struct op_config_key *t, size_t nt);

/* Prints "PREFIXkey = val" ("PREFIXkey =" when val is empty). */
void op_config__put_kv(FILE *f, const char *prefix, const char *key, const char *val);

/* Prints the keys of table t in section sec with their values in base, secrets masked. */
void op_config__put_values(FILE *f, const void *base, const struct op_config_key *t, size_t nt,
                           const char *sec);

/* ---- config_doc.c ---- */

/* Writes the Markdown table of the keys of table t in section sec. */
void op_config__doc_table(FILE *f, const struct op_config_key *t, size_t nt, const char *sec);

/* Writes the keys of table t in section sec as scdoc, for op_config_write_man. */
void op_config__man_keys(FILE *f, const struct op_config_key *t, size_t nt, const char *sec);

/*
 * Writes text s (Markdown-style `code` spans, newlines allowed) as scdoc:
 * `code` in bold, '*', '_' and '\' escaped, and a line's first character
 * escaped when scdoc would read it as a list, header, table or comment.
 */
void op_config__man_text(FILE *f, const char *s);

/* ---- config_broker.c ---- */

/* Handles a [broker NAME] header; name is what follows "broker", trimmed. */
void op_config__broker_header(struct load *l, const char *name);

/* Binds key name = value in the current [broker NAME] section (l->broker). */
void op_config__broker_key(struct load *l, const char *name, const char *value);

/* Checks broker bi across its keys and fills the fields derived from its url. */
void op_config__broker_finish(struct load *l, size_t bi);

/* Splits an MQTT url into Paho's form ("ssl://host:port", *uri, caller
 * frees) and whether it is TLS. OP_EINVAL with why (the part of a problem
 * message after "url: "), OP_ENOMEM. */
op_err op_config__mqtt_uri(const char *url, bool *tls, char **uri, char *why, size_t n) OP_WUR;

/* Frees c's brokers (what they hold and the array); op_config_free zeroes c. */
void op_config__broker_free(struct op_config *c);

/* The [broker NAME] sections of op_config_dump, secrets masked. */
void op_config__broker_dump(const struct op_config *c, FILE *f);

/* The commented example [broker NAME] section of op_config_write_sample. */
void op_config__broker_write_sample(FILE *f);

/* The [broker NAME] part of op_config_write_doc: a paragraph, an example, the table. */
void op_config__broker_write_doc(FILE *f);

/* The [broker NAME] part of op_config_write_man: the same paragraph and example, the keys. */
void op_config__broker_write_man(FILE *f);

#endif
