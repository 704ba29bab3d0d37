/*
 * The writers of the files generated from the key tables: the commented
 * sample config (packaging/outpost.conf), the Markdown key reference between
 * the markers of docs/configuration.md and the man page outpost.conf(5) in
 * scdoc (packaging/man/outpost.conf.5.scd). config.c and config_broker.c own
 * the tables; this file only reads them. Invariant: every word of the three
 * files comes from the tables or from the texts here, each fact written once,
 * so they cannot disagree; test_config checks the files are what this writes.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/buf.h"
#include "agent/daemon/config.h"
#include "agent/daemon/config_int.h"

/*
 * Facts of the syntax that the sample's header and the man page's
 * DESCRIPTION both state, one line each.
 */
static const char *const syntax_facts[] = {
    "Sizes: a whole number with B, KB, MB, GB or TB (1 KB = 1024 bytes).",
    "Durations: whole numbers with ms, s, m or h, e.g. 30s or 1m30s.",
    "Comments: lines starting with '#' or ';', or ' ;' after a value.",
};

/* What [globals] is, for the sample and the man page, and an example line. */
static const char *const globals_about[] = {
    "Free-form values pipelines read as globals (e.g. {{ globals.region }}).",
    "A value that parses as JSON (42, true, [1, 2], \"text\") is taken as JSON,",
    "anything else as a string. Names that look secret are masked in output.",
};
static const char globals_example[] = "region = eu-west";

/*
 * The paragraph on systemd credentials (Markdown-style `code` spans), for the
 * sample, the docs and the man page; the keys it names come from the tables
 * (OP_CONFIG_READ) and go between the two parts.
 */
static const char creds_before[] = "Systemd credentials: the keys that name files to read (";
static const char creds_after[] =
    ") take a file as `$CREDENTIALS_DIRECTORY/NAME` (or `${CREDENTIALS_DIRECTORY}/NAME`) too: the "
    "credential NAME that the service's `LoadCredential=NAME:/path` puts where the hardened "
    "service can read it. It becomes the real path when the config is loaded, as "
    "`outpostd --check-config` shows. NAME is a file name (no `/`); where "
    "`$CREDENTIALS_DIRECTORY` is not set, as outside the service, a config that uses the form "
    "is refused.";

/*
 * Adds the OP_CONFIG_READ keys of table t to b as "`[sec] a`, `b`; `[sec2] c`"
 * (label in place of the section when not NULL); *any says whether an earlier
 * call added a key.
 */
static op_err add_read_keys(struct op_buf *b, const struct op_config_key *t, size_t nt,
                            const char *label, bool *any)
{
	const char *prev = NULL;
	op_err e = OP_OK;
	for (size_t i = 0; i < nt && e == OP_OK; i++) {
		if (!(t[i].flags & OP_CONFIG_READ))
			continue;
		if (prev != NULL && strcmp(prev, t[i].section) == 0)
			e = op_buf_addf(b, ", `%s`", t[i].key);
		else
			e = op_buf_addf(b, "%s`[%s] %s`", *any ? "; " : "",
			                label ? label : t[i].section, t[i].key);
		prev = t[i].section;
		*any = true;
	}
	return e;
}

/*
 * Writes the credentials paragraph in lines of at most 78 characters, each
 * after prefix, broken at spaces outside `code` spans; as scdoc when man.
 * OP_ENOMEM; OP_ELIMIT if the text outgrows the buffers (test_config would
 * fail).
 */
static op_err put_credentials(FILE *f, const char *prefix, bool man)
{
	struct op_buf b, w;
	size_t n, room = 78 - strlen(prefix);
	bool any = false;
	op_buf_init(&b, 4096);
	op_buf_init(&w, 8192);
	op_err e = op_buf_adds(&b, creds_before);
	const struct op_config_key *t = op_config_keys(&n);
	if (e == OP_OK)
		e = add_read_keys(&b, t, n, NULL, &any);
	t = op_config_broker_keys(&n);
	if (e == OP_OK)
		e = add_read_keys(&b, t, n, "broker NAME", &any);
	if (e == OP_OK)
		e = op_buf_adds(&b, creds_after);
	for (const char *s = op_buf_str(&b); *s && e == OP_OK;) {
		size_t i, brk = 0;
		bool code = false;
		for (i = 0; (i <= room || brk == 0) && s[i]; i++) {
			if (s[i] == '`')
				code = !code;
			else if (s[i] == ' ' && !code)
				brk = i;
		}
		size_t len = (i <= room && s[i] == '\0') || brk == 0 ? i : brk;
		e = op_buf_addf(&w, "%s%.*s\n", prefix, (int)len, s);
		s += len;
		s += *s == ' ';
	}
	if (e == OP_OK) {
		if (man)
			op_config__man_text(f, op_buf_str(&w));
		else
			fputs(op_buf_str(&w), f);
	}
	op_buf_fini(&b);
	op_buf_fini(&w);
	return e;
}

op_err op_config_write_sample(FILE *f)
{
	size_t nk;
	const struct op_config_key *keys = op_config_keys(&nk);
	fputs("# Outpost agent configuration: " OP_CONFIG_FILE "\n"
	      "#\n"
	      "# Every key is listed, commented out, with its default. To change one,\n"
	      "# remove the leading '#' and edit the value; `outpostd --check-config`\n"
	      "# checks the file and prints the effective configuration.\n",
	      f);
	for (size_t i = 0; i < sizeof(syntax_facts) / sizeof(syntax_facts[0]); i++)
		fprintf(f, "# %s\n", syntax_facts[i]);
	op_err e = put_credentials(f, "# ", false);
	if (e != OP_OK)
		return e;
	fputs("# Reference: docs/configuration.md\n"
	      "# Generated from agent/daemon/config.c; edit the table there.\n",
	      f);
	for (size_t s = 0; s < SEC_GLOBALS; s++) {
		fprintf(f, "\n[%s]\n", op_config__sections[s]);
		for (size_t i = 0; i < nk; i++) {
			if (strcmp(keys[i].section, op_config__sections[s]) != 0)
				continue;
			fprintf(f, "\n# %s\n", keys[i].help);
			op_config__put_kv(f, "#", keys[i].key, keys[i].def);
		}
	}
	op_config__broker_write_sample(f);
	fputs("\n[globals]\n\n", f);
	for (size_t i = 0; i < sizeof(globals_about) / sizeof(globals_about[0]); i++)
		fprintf(f, "# %s\n", globals_about[i]);
	fprintf(f, "#%s\n", globals_example);
	return ferror(f) ? OP_EIO : OP_OK;
}

/*
 * scdoc's markup: '*' bold, '_' underline, '\\' escapes, "++" ending a
 * line breaks it; at the start of a line '-' and '.' begin lists, '#'
 * headers, ';' comments, '[', '|', ']' and ':' tables.
 */
void op_config__man_text(FILE *f, const char *s)
{
	bool bol = true, code = false;
	for (; *s; s++) {
		char c = *s;
		if (bol && c == '.') {
			/* scdoc passes "\." on as a roff request line: start it with an
			 * empty bold span instead. */
			fputs("**", f);
		} else if (bol && strchr("-#;[]|:", c) != NULL) {
			fputc('\\', f);
		}
		bol = c == '\n';
		if (c == '`' && (code || strchr(s + 1, '`') != NULL)) {
			code = !code;
			fputc('*', f);
			continue;
		}
		if (c == '\\' || c == '*' || c == '_' || (c == '+' && s[1] == '+'))
			fputc('\\', f);
		fputc(c, f);
	}
}

/*
 * Text of the docs (Markdown-style `code` spans allowed) in one of two
 * markups: Markdown, where it goes as it is, or scdoc (man).
 */
static void put_text(FILE *f, const char *s, bool man)
{
	if (man)
		op_config__man_text(f, s);
	else
		fputs(s, f);
}

/* s as code: `s` in Markdown, bold in scdoc. */
static void put_code(FILE *f, const char *s, bool man)
{
	fputs(man ? "*" : "`", f);
	put_text(f, s, man);
	fputs(man ? "*" : "`", f);
}

/* The type of key k with its bounds or choices: "integer, 1 to 256". */
static void put_type(FILE *f, const struct op_config_key *k, bool man)
{
	char lo[48], hi[48];
	fputs(op_config_type_name(k->type), f);
	if (k->type == OP_CONFIG_INT || k->type == OP_CONFIG_BYTES ||
	    k->type == OP_CONFIG_DURATION) {
		op_config__fmt_bound(k, k->min, lo, sizeof(lo));
		op_config__fmt_bound(k, k->max, hi, sizeof(hi));
		fprintf(f, ", %s to %s", lo, hi);
	} else if (k->type == OP_CONFIG_ENUM) {
		for (int j = 0; k->choices[j]; j++) {
			fputs(j ? ", " : ": ", f);
			put_code(f, k->choices[j], man);
		}
	}
}

/* The default of key k as the docs show it. */
static void put_default(FILE *f, const struct op_config_key *k, bool man)
{
	if (k->flags & OP_CONFIG_REQUIRED)
		fputs("(required)", f);
	else if (k->def_doc)
		put_text(f, k->def_doc, man);
	else if (*k->def)
		put_code(f, k->def, man);
	else
		fputs("(empty)", f);
}

/* Writes the Markdown table of the keys of table t in section sec. */
void op_config__doc_table(FILE *f, const struct op_config_key *t, size_t nt, const char *sec)
{
	fputs("| Key | Type | Default | Meaning |\n| --- | --- | --- | --- |\n", f);
	for (size_t i = 0; i < nt; i++) {
		if (strcmp(t[i].section, sec) != 0)
			continue;
		fprintf(f, "| `%s` | ", t[i].key);
		put_type(f, &t[i], false);
		fputs(" | ", f);
		put_default(f, &t[i], false);
		fprintf(f, " | %s |\n", t[i].help);
	}
}

/* Writes the keys of table t in section sec as scdoc: the key, its type, then
 * its help line and default indented below. */
void op_config__man_keys(FILE *f, const struct op_config_key *t, size_t nt, const char *sec)
{
	for (size_t i = 0; i < nt; i++) {
		if (strcmp(t[i].section, sec) != 0)
			continue;
		fputc('\n', f);
		put_code(f, t[i].key, true);
		fputs(" (", f);
		put_type(f, &t[i], true);
		fputs(")\n\t", f);
		put_text(f, t[i].help, true);
		if (t[i].flags & OP_CONFIG_REQUIRED) {
			fputs(" Required: there is no default.\n", f);
			continue;
		}
		fputs(" Default: ", f);
		put_default(f, &t[i], true);
		fputs(".\n", f);
	}
}

op_err op_config_write_doc(FILE *f)
{
	size_t nk;
	const struct op_config_key *keys = op_config_keys(&nk);
	fputc('\n', f);
	op_err e = put_credentials(f, "", false);
	if (e != OP_OK)
		return e;
	for (size_t s = 0; s < SEC_GLOBALS; s++) {
		fprintf(f, "\n### [%s]\n\n", op_config__sections[s]);
		op_config__doc_table(f, keys, nk, op_config__sections[s]);
	}
	op_config__broker_write_doc(f);
	fputc('\n', f);
	return ferror(f) ? OP_EIO : OP_OK;
}

/* The default of key in section sec, as config text. */
static const char *key_default(const char *sec, const char *key)
{
	size_t nk;
	const struct op_config_key *keys = op_config_keys(&nk);
	for (size_t i = 0; i < nk; i++) {
		if (strcmp(keys[i].section, sec) == 0 && strcmp(keys[i].key, key) == 0)
			return keys[i].def;
	}
	return "";
}

op_err op_config_write_man(FILE *f)
{
	size_t nk;
	const struct op_config_key *keys = op_config_keys(&nk);
	char max[48];
	op_config__fmt_bytes(OP_CONFIG_MAX_FILE, max, sizeof(max));
	fputs("outpost.conf(5) \"Outpost\"\n"
	      "\n"
	      "; Generated from the table in agent/daemon/config.c by op_config_write_man\n"
	      "; (config_doc.c); edit the table and run OP_CONFIG_REGEN=1\n"
	      "; build/debug/tests/unit/test_config.\n"
	      "\n# NAME\n\n"
	      "outpost.conf - configuration file of the Outpost agent\n"
	      "\n# SYNOPSIS\n\n" OP_CONFIG_FILE "\n"
	      "\n# DESCRIPTION\n\n"
	      "*outpostd*(8) reads its settings from one INI file, named with *--config*; the\n"
	      "packaged service reads *" OP_CONFIG_FILE "*. The file installed there lists\n"
	      "every key commented out with its default, so a key that is not set has the\n"
	      "default given below. *outpostd --check-config* loads the file, reports every\n"
	      "problem and prints the effective configuration, the values of secret keys and\n"
	      "of globals whose names look secret masked as \\*\\*\\*.\n"
	      "\n"
	      "- A line *[section]* starts a section; the *key = value* lines below it set\n"
	      "  keys of that section (*key: value* works too). A section may appear more\n"
	      "  than once, a key only once.\n"
	      "- Values are taken as written, surrounding spaces trimmed; do not quote them.\n"
	      "  Indentation is ignored: there are no continuation lines.\n",
	      f);
	for (size_t i = 0; i < sizeof(syntax_facts) / sizeof(syntax_facts[0]); i++) {
		fputs("- ", f);
		op_config__man_text(f, syntax_facts[i]);
		fputc('\n', f);
	}
	fprintf(f,
	        "- Addresses: *host:port* or *[ipv6]:port*, the host a literal address or a\n"
	        "  name; port 0 takes any free port; an empty value switches the listener off.\n"
	        "- The file holds at most %s.\n"
	        "\n"
	        "A config is taken whole or refused whole. Unknown sections and keys,\n"
	        "duplicate keys, values of the wrong type or out of range, and lines that are\n"
	        "not *key = value* are errors. Every problem is reported, not only the first,\n"
	        "with its line: *FILE:LINE: [section] key: what was wrong, expected ...*\n"
	        "\n"
	        "*outpostd* reads the file when it starts. On SIGHUP it reads it again but\n"
	        "takes only *pipelines\\_dir*, *log\\_level*, *log\\_format*, *[globals]* and\n"
	        "the *[broker NAME]* sections from it; other changes need a restart.\n\n",
	        max);
	op_err e = put_credentials(f, "", true);
	if (e != OP_OK)
		return e;
	fputs("\n# KEYS\n", f);
	for (size_t s = 0; s < SEC_GLOBALS; s++) {
		fprintf(f, "\n## [%s]\n", op_config__sections[s]);
		op_config__man_keys(f, keys, nk, op_config__sections[s]);
	}
	op_config__broker_write_man(f);
	fputs("\n## [globals]\n\n", f);
	for (size_t i = 0; i < sizeof(globals_about) / sizeof(globals_about[0]); i++) {
		op_config__man_text(f, globals_about[i]);
		fputc('\n', f);
	}
	fprintf(f, "\n```\n%s\n```\n", globals_example);
	fputs("\n# FILES\n\n*" OP_CONFIG_FILE
	      "*\n\tThis file, as the packaged service reads it.\n\n",
	      f);
	put_code(f, key_default("agent", "pipelines_dir"), true);
	fputs("\n\tThe default *pipelines\\_dir*: the pipeline files.\n\n", f);
	put_code(f, key_default("agent", "data_dir"), true);
	fputs("\n\tThe default *data\\_dir*: the store, and the sealed accounts in\n"
	      "\t*accounts/*.\n"
	      "\n*" OP_CONFIG_ACCOUNTS_KEY "*\n"
	      "\tThe key of the sealed accounts when *[accounts] key\\_file* is empty and\n"
	      "\tthere is no systemd credential *accounts.key*.\n"
	      "\n# SEE ALSO\n\n*outpostd*(8), *outpostctl*(1)\n",
	      f);
	return ferror(f) ? OP_EIO : OP_OK;
}
