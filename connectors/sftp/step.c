/*
 * The sftp step: one operation on an SFTP server (list, get, put, move,
 * delete, mkdir, stat) built from the message; its result is the new
 * message. It goes through the SFTP client (connectors/sftp/sftp.h), one
 * per step, whose pooled sessions stay open between executions.
 *
 * Credentials come from an account the host lends (op_host.account_get):
 * basic for a password, key for an SSH private key. It is opened for the
 * connect only and wiped right after the login; a pooled session needs it
 * only to be found. The server's host key is always verified (hostKey,
 * knownHosts): a step without either does not load. Files stream between
 * the server and the agent's disk (localDir + localPath) with constant
 * memory; into and out of the message they are capped by maxBytes. Like
 * the file step's dir, localDir must be one of the folders the host lends
 * (op_host.file_dirs, the agent's [files] dirs) or inside one.
 */
#define OP_LOG_MODULE "sftp"
#include "connectors/sftp/step.h"
#include "agent/core/clock.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/account/account.h"
#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/core/utf8.h"
#include "agent/engine/engine.h"
#include "connectors/sftp/local.h"
#include "connectors/sftp/sftp.h"

#define PATH_MAX_   4096
#define CONTENT_MAX (1u << 30) /* bytes put from the message */

static const char *const operations[] = {"list",   "get",   "put",  "move",
                                         "delete", "mkdir", "stat", NULL};
enum { OPER_LIST, OPER_GET, OPER_PUT, OPER_MOVE, OPER_DELETE, OPER_MKDIR, OPER_STAT };
static const char *const encodings[] = {"text", "base64", NULL};
enum { ENC_TEXT, ENC_BASE64 };

struct sftp_cfg {
	struct op_expr *host;
	long long port;
	char *account;
	char *host_key;
	char *known_hosts;
	int operation;
	struct op_expr *path;
	struct op_expr *pattern;
	struct op_expr *to;
	struct op_tmpl *content;
	int encoding;
	char *local_dir;
	struct op_expr *local_path;
	bool parents;
	bool overwrite;
	bool ignore_missing;
	long long max_bytes;
	long long max_entries;
	long long timeout_ms;
	long long connect_timeout_ms;
	long long streams;
};

#define SPLIT_MIN   (64ull << 20) /* a get to localPath this large is split */
#define PART_MIN    (32ull << 20) /* the smallest part of a split get */
#define STREAMS_MAX 8

static const struct op_conf_field sftp_fields[] = {
    {.name = "host",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct sftp_cfg, host),
     .required = true,
     .help = "the SFTP server: a host name or an IP address"},
    {.name = "port",
     .type = OP_CONF_INT,
     .off = offsetof(struct sftp_cfg, port),
     .def = "22",
     .min = 1,
     .max = 65535,
     .help = "the server's SSH port"},
    {.name = "account",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sftp_cfg, account),
     .required = true,
     .help = "account to log in with: basic (username and password) or key (username, "
             "privateKey in OpenSSH or PEM format, passphrase if it is encrypted)"},
    {.name = "hostKey",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sftp_cfg, host_key),
     .help = "the SHA256 fingerprint of the server's ed25519 host key (ECDSA if it has "
             "none), as `ssh-keygen -lf` prints it: SHA256:...; hostKey or knownHosts is "
             "required"},
    {.name = "knownHosts",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sftp_cfg, known_hosts),
     .help = "absolute path of an OpenSSH known_hosts file holding the server's key "
             "([host]:port entries for other ports than 22); read at each connect"},
    {.name = "operation",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct sftp_cfg, operation),
     .required = true,
     .choices = operations,
     .help = "list, get, put, move, delete, mkdir or stat"},
    {.name = "path",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct sftp_cfg, path),
     .required = true,
     .help = "the file or directory on the server; relative paths start in the login "
             "directory"},
    {.name = "pattern",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct sftp_cfg, pattern),
     .help = "list: only names matching this glob (*, ?, [...]); * does not match a "
             "leading dot"},
    {.name = "to",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct sftp_cfg, to),
     .help = "move: the new path"},
    {.name = "content",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct sftp_cfg, content),
     .help = "put: what to write (default: the message); a string as its text (or "
             "decoded, with encoding base64), anything else as compact JSON"},
    {.name = "encoding",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct sftp_cfg, encoding),
     .def = "\"text\"",
     .choices = encodings,
     .help = "get into the message: text (UTF-8, else the step fails) or base64; put: "
             "whether a string content is text or base64"},
    {.name = "localDir",
     .type = OP_CONF_STRING,
     .off = offsetof(struct sftp_cfg, local_dir),
     .help = "absolute path of a folder on the agent's host, one of the agent's [files] "
             "dirs or inside one, that localPath stays below"},
    {.name = "localPath",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct sftp_cfg, local_path),
     .help = "get: the file to write, put: the file to read, relative to localDir (no "
             "'..', symbolic links not followed) instead of the message"},
    {.name = "parents",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct sftp_cfg, parents),
     .def = "false",
     .help = "mkdir: make missing parent directories too"},
    {.name = "overwrite",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct sftp_cfg, overwrite),
     .def = "true",
     .help = "put, move, get to localPath: replace an existing file; false: fail with "
             "SFTP_EXISTS"},
    {.name = "ignoreMissing",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct sftp_cfg, ignore_missing),
     .def = "false",
     .help = "delete: a path that does not exist is success ({deleted: false})"},
    {.name = "maxBytes",
     .type = OP_CONF_INT,
     .off = offsetof(struct sftp_cfg, max_bytes),
     .def = "10485760",
     .min = 0,
     .max = 1073741824,
     .help = "get into the message: largest file accepted; a larger one fails the step "
             "with class limit"},
    {.name = "maxEntries",
     .type = OP_CONF_INT,
     .off = offsetof(struct sftp_cfg, max_entries),
     .def = "10000",
     .min = 1,
     .max = 1000000,
     .help = "list: most entries accepted; more fail the step with class limit"},
    {.name = "timeoutMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct sftp_cfg, timeout_ms),
     .def = "30000",
     .min = 1,
     .max = 3600000,
     .help = "longest wait for each answer of the server, in milliseconds (a transfer "
             "goes on while data flows; never past the execution's deadline)"},
    {.name = "connectTimeoutMs",
     .type = OP_CONF_INT,
     .off = offsetof(struct sftp_cfg, connect_timeout_ms),
     .def = "10000",
     .min = 1,
     .max = 3600000,
     .help = "longest time to look up the host and connect, in milliseconds"},
    {.name = "streams",
     .type = OP_CONF_INT,
     .off = offsetof(struct sftp_cfg, streams),
     .def = "3",
     .min = 1,
     .max = STREAMS_MAX,
     .help = "get to localPath: a file of 64 MiB or more is read over up to this many "
             "sessions at once, each its own part of it (one SSH connection each; 1: "
             "one session)"},
};
static const struct op_conf_table sftp_table = OP_CONF_TABLE("sftp", struct sftp_cfg, sftp_fields);

/* ---- load ---- */

static bool literal(const struct op_expr *e)
{
	return e && !op_expr_has_code(op_expr_source(e));
}

static op_err sftp_prepare(struct op_load *ld, struct op_step *st)
{
	const struct sftp_cfg *c = st->cfg;
	op_err rc = OP_OK;
	unsigned char fp[OP_SFTP_FP_LEN];
	char why[256];
#define PROBLEM(key, ...)                                \
	do {                                             \
		op_load_problem(ld, (key), __VA_ARGS__); \
		rc = OP_ECONFIG;                         \
	} while (0)
	if (c->host_key == NULL && c->known_hosts == NULL)
		PROBLEM("hostKey",
		        "set hostKey (the server's SHA256:... fingerprint) or knownHosts "
		        "(an OpenSSH known_hosts file): the server's host key is always "
		        "verified");
	if (c->host_key && op_sftp_fingerprint_parse(c->host_key, fp) != OP_OK)
		PROBLEM("hostKey",
		        "expected SHA256: and 43 characters of base64, as `ssh-keygen -lf KEY.pub` "
		        "prints it, got \"%.80s\"",
		        c->host_key);
	if (c->known_hosts && c->known_hosts[0] != '/')
		PROBLEM("knownHosts", "must be an absolute path, got \"%.200s\"", c->known_hosts);
	if (c->account && !op_account_name_ok(c->account))
		PROBLEM("account", "\"%.80s\" is not an account name", c->account);
	if (c->local_dir && c->local_dir[0] != '/')
		PROBLEM("localDir", "must be an absolute path, got \"%.200s\"", c->local_dir);
	if (c->local_path && c->local_dir == NULL)
		PROBLEM("localPath", "needs localDir, the directory it stays below");
	if (c->local_dir && c->local_path == NULL)
		PROBLEM("localDir", "is only used with localPath");
	if (literal(c->local_path) &&
	    op_sftp_local_check(op_expr_source(c->local_path), why, sizeof(why)) != OP_OK)
		PROBLEM("localPath", "%s", why);
	if (literal(c->path) && op_expr_source(c->path)[0] == '\0')
		PROBLEM("path", "is empty");
	int op = c->operation;
	if (c->to && op != OPER_MOVE)
		PROBLEM("to", "is only for operation move");
	if (c->to == NULL && op == OPER_MOVE)
		PROBLEM("to", "operation move needs the new path");
	if (c->pattern && op != OPER_LIST)
		PROBLEM("pattern", "is only for operation list");
	if (c->content && op != OPER_PUT)
		PROBLEM("content", "is only for operation put");
	if (c->local_path && op != OPER_GET && op != OPER_PUT)
		PROBLEM("localPath", "is only for operations get and put");
	if (c->content && c->local_path)
		PROBLEM("content", "content and localPath both say what to put; keep one");
#undef PROBLEM
	if (rc)
		return rc;
	struct op_sftp_opts o = {.fingerprint = c->host_key ? fp : NULL,
	                         .known_hosts = c->known_hosts};
	struct op_sftp *client = NULL;
	rc = op_sftp_new(&o, &client);
	if (rc == OP_EINTERNAL) {
		op_load_problem(ld, "", "libssh2 could not be initialised");
		return OP_ECONFIG;
	}
	if (rc)
		return rc;
	st->priv = client;
	return OP_OK;
}

static void sftp_release(struct op_step *st)
{
	op_sftp_free(st->priv);
	st->priv = NULL;
}

/* ---- one execution ---- */

struct job;

/* One part of a split get (a get to localPath over several sessions): the
 * bytes [off, off + len) read over its own session, written at their place
 * in the file by their own writer. Part 0 is the job's session and writer,
 * run on the execution's thread; the others run on threads of their own. */
struct part {
	struct job *j;
	struct op_sftp_conn *s;
	struct op_sftp_local_writer *writer;
	uint64_t off, len, size;
	struct op_sftp_call call;
	struct op_sftp_fail fail;
	op_err rc;
	pthread_t thread;
	bool running;
};

struct job {
	struct op_exec *x;
	const struct sftp_cfg *c;
	char *host, *path, *pattern, *to, *local_path;
	char *data; /* put from the message: the bytes, and how far they went */
	size_t len, off;
	struct op_buf got; /* get into the message */
	struct op_sftp_local local;
	struct op_sftp_local_writer *writer; /* get to a file: the disk side */
	bool to_file, from_file;
	uint64_t size;
	struct op_sftp_entry ent, *list;
	size_t n;
	bool flag; /* delete: deleted; mkdir: created */
	struct op_sftp_call call;
	struct op_sftp_fail fail;
	struct part part[STREAMS_MAX]; /* a split get: part[1..nparts) are extra */
	unsigned nparts;               /* 0 or 1: not split */
	atomic_bool stop;              /* a part failed: the others give up */
};

static void job_fini(struct job *j)
{
	op_free(j->host);
	op_free(j->path);
	op_free(j->pattern);
	op_free(j->to);
	op_free(j->local_path);
	op_free(j->data);
	op_buf_fini(&j->got);
	op_sftp_local_writer_free(j->writer);
	op_sftp_local_fini(&j->local);
	op_sftp_entries_free(j->list, j->n);
}

static op_err nomem(struct op_exec *x)
{
	return op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
}

/* The string e evaluates to, copied into *out; NULL when e is. */
static op_err eval_text(struct op_exec *x, const struct op_expr *e, const char *key,
                        const cJSON *msg, char **out)
{
	*out = NULL;
	if (e == NULL)
		return OP_OK;
	struct op_val v = {0};
	op_err rc = op_exec_eval(x, e, key, msg, &v);
	if (rc)
		return rc;
	const char *s = cJSON_GetStringValue(v.v);
	if (s == NULL)
		rc = op_exec_fail(x, OP_EINVAL, "SFTP_REQUEST",
		                  "config.%s: expected a string, got %s", key, op_json_kind(v.v));
	else if (s[0] == '\0')
		rc = op_exec_fail(x, OP_EINVAL, "SFTP_REQUEST", "config.%s is empty", key);
	else if (strlen(s) > PATH_MAX_)
		rc = op_exec_fail(x, OP_EINVAL, "SFTP_REQUEST", "config.%s is longer than %d bytes",
		                  key, PATH_MAX_);
	else if ((*out = op_strdup(s)) == NULL)
		rc = nomem(x);
	op_val_drop(&v);
	return rc;
}

/* "dir/" is "dir" (but "/" stays): for operations on directories too. */
static void trim_slashes(char *p)
{
	size_t n = p ? strlen(p) : 0;
	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
}

/* What put writes when it is not a local file: content, or the message. */
static op_err build_content(struct job *j, const cJSON *msg)
{
	struct op_exec *x = j->x;
	cJSON *rendered = NULL;
	const cJSON *v = msg;
	op_err rc = OP_OK;
	if (j->c->content) {
		rc = op_exec_render(x, j->c->content, "content", msg, &rendered);
		if (rc)
			return rc;
		v = rendered;
	}
	if (cJSON_IsString(v) && j->c->encoding == ENC_BASE64) {
		rc = op_base64_decode(v->valuestring, &j->data, &j->len);
		if (rc == OP_EINVAL)
			rc = op_exec_fail(x, rc, "SFTP_REQUEST",
			                  "config.content: not base64 (encoding is base64)");
		else if (rc)
			rc = nomem(x);
	} else if (j->c->encoding == ENC_BASE64) {
		rc = op_exec_fail(x, OP_EINVAL, "SFTP_REQUEST",
		                  "config.content: encoding base64 takes a string, got %s",
		                  op_json_kind(v));
	} else {
		struct op_buf b;
		op_buf_init(&b, CONTENT_MAX);
		rc = cJSON_IsString(v) ? op_buf_adds(&b, v->valuestring)
		                       : op_json_append(&b, v, OP_JSON_COMPACT);
		j->len = b.len;
		j->data = op_buf_take(&b);
		if (rc == OP_ELIMIT)
			rc =
			    op_exec_fail(x, rc, "SFTP_REQUEST",
			                 "config.content: larger than %u bytes, or nested too deep",
			                 CONTENT_MAX);
		else if (rc)
			rc = nomem(x);
	}
	cJSON_Delete(rendered);
	return rc;
}

static op_err local_fail(struct op_exec *x, op_err rc, const char *why)
{
	return op_exec_fail(x, rc, rc == OP_ENOMEM ? "NOMEM" : "SFTP_LOCAL", "%s", why);
}

static op_err build(struct job *j, const cJSON *msg)
{
	struct op_exec *x = j->x;
	const struct sftp_cfg *c = j->c;
	op_err rc = eval_text(x, c->host, "host", msg, &j->host);
	if (rc == OP_OK)
		rc = eval_text(x, c->path, "path", msg, &j->path);
	if (rc == OP_OK)
		rc = eval_text(x, c->pattern, "pattern", msg, &j->pattern);
	if (rc == OP_OK)
		rc = eval_text(x, c->to, "to", msg, &j->to);
	if (rc == OP_OK)
		rc = eval_text(x, c->local_path, "localPath", msg, &j->local_path);
	if (rc)
		return rc;
	if (c->operation != OPER_GET && c->operation != OPER_PUT) {
		trim_slashes(j->path);
		trim_slashes(j->to);
	}
	/* Before anything is opened or sent: localDir is a folder the agent
	 * allows. */
	if (j->local_path) {
		rc = op_exec_file_dir(x, "localDir", c->local_dir, "SFTP_LOCAL");
		if (rc)
			return rc;
	}
	char why[512] = "";
	if (j->local_path && c->operation == OPER_GET) {
		j->to_file = true;
		rc = op_sftp_local_create(&j->local, c->local_dir, j->local_path, c->overwrite, why,
		                          sizeof(why));
		if (rc == OP_OK)
			rc = op_sftp_local_writer_start(&j->local, 0, &j->writer, why, sizeof(why));
	} else if (j->local_path) {
		j->from_file = true;
		uint64_t size = 0;
		rc = op_sftp_local_open(&j->local, c->local_dir, j->local_path, &size, why,
		                        sizeof(why));
	} else if (c->operation == OPER_PUT) {
		return build_content(j, msg);
	}
	return rc ? local_fail(x, rc, why) : OP_OK;
}

/* The account name, if it is one sftp can log in with. */
static op_err account_open(struct op_exec *x, const char *name, struct op_account **out)
{
	return op_exec_account(x, "account", name, 1u << OP_ACCOUNT_BASIC | 1u << OP_ACCOUNT_KEY,
	                       "sftp takes basic (password) or key (SSH private key)", out);
}

/* ---- moving bytes ---- */

static op_err sink_buf(void *ud, const void *p, size_t n, char *why, size_t whylen)
{
	struct job *j = ud;
	op_err rc = op_buf_add(&j->got, p, n);
	if (rc == OP_ELIMIT)
		return op_errf(why, whylen, rc, "get %.300s: more than maxBytes (%lld)", j->path,
		               j->c->max_bytes);
	return rc ? op_errf(why, whylen, rc, "out of memory") : OP_OK;
}

static op_err sink_file(void *ud, const void *p, size_t n, char *why, size_t whylen)
{
	struct job *j = ud;
	return op_sftp_local_writer_put(j->writer, p, n, why, whylen);
}

static op_err source_mem(void *ud, void *buf, size_t cap, size_t *got, char *why, size_t whylen)
{
	(void)why, (void)whylen;
	struct job *j = ud;
	size_t n = j->len - j->off < cap ? j->len - j->off : cap;
	if (n)
		memcpy(buf, j->data + j->off, n);
	j->off += n;
	*got = n;
	return OP_OK;
}

static op_err source_file(void *ud, void *buf, size_t cap, size_t *got, char *why, size_t whylen)
{
	struct job *j = ud;
	ssize_t r;
	do
		r = read(j->local.fd, buf, cap);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		char eb[128];
		int e = errno;
		return op_errf(why, whylen, op_err_from_errno(e), "localPath %.300s: %s",
		               j->local_path, strerror_r(e, eb, sizeof(eb)));
	}
	*got = (size_t)r;
	return OP_OK;
}

/* ---- a split get ---- */

static bool part_cancelled(void *ud)
{
	struct part *p = ud;
	return atomic_load(&p->j->stop) || op_exec_cancelled(p->j->x);
}

static op_err sink_part(void *ud, const void *p, size_t n, char *why, size_t whylen)
{
	struct part *pt = ud;
	return op_sftp_local_writer_put(pt->writer, p, n, why, whylen);
}

/* A part: its bytes, then its writer's last writes. */
static void part_run(struct part *p)
{
	p->rc =
	    op_sftp_get_part(p->s, p->j->path, p->off, p->len, sink_part, p, &p->size, &p->fail);
	if (p != &p->j->part[0]) {
		char why[512] = "";
		op_err rc = op_sftp_local_writer_finish(p->writer, why, sizeof(why));
		p->writer = NULL;
		if (p->rc == OP_OK && rc) {
			p->rc = rc;
			p->fail.code = rc == OP_ENOMEM ? "NOMEM" : "SFTP_LOCAL";
			snprintf(p->fail.msg, sizeof(p->fail.msg), "%s", why);
		}
	}
	if (p->rc)
		atomic_store(&p->j->stop, true);
}

static void *part_main(void *arg)
{
	part_run(arg);
	return NULL;
}

/* Gives back the sessions of the extra parts and frees their writers. */
static void split_close(struct job *j, struct op_sftp *client)
{
	for (unsigned i = 1; i < j->nparts; i++) {
		struct part *p = &j->part[i];
		op_sftp_give(client, p->s);
		op_sftp_local_writer_free(p->writer);
		*p = (struct part){0};
	}
	j->nparts = 0;
}

/* A session for part p (not part 0): a pooled one that still answers, or a
 * new one. */
static op_err part_session(struct job *j, struct op_sftp *client, const struct op_account *a,
                           struct part *p)
{
	const struct sftp_cfg *c = j->c;
	struct op_sftp_entry e;
	p->s = op_sftp_take(client, j->host, (int)c->port, a, &p->call);
	if (p->s) {
		op_err rc = op_sftp_stat(p->s, j->path, &e, &p->fail);
		if (rc == OP_OK)
			return OP_OK;
		if (!op_sftp_stale(p->s, rc))
			return rc;
		op_sftp_give(client, p->s);
		p->s = NULL;
	}
	return op_sftp_connect(client, j->host, (int)c->port, a, &p->call, &p->s, &p->fail);
}

/*
 * For a get to localPath with streams > 1, while the account is open: the
 * file's size on s, and when it is SPLIT_MIN or more, sessions and writers
 * for the extra parts. A session that cannot be had means fewer parts (a
 * server may limit a user's sessions), not a failure. An error of s itself
 * is returned (op_sftp_stale may then apply); one of the server's answers
 * (no such file, a directory) leaves the get unsplit, to fail as a get.
 */
static op_err split_open(struct job *j, struct op_sftp *client, struct op_sftp_conn *s,
                         const struct op_account *a, const struct op_step *st)
{
	const struct sftp_cfg *c = j->c;
	struct op_sftp_entry e;
	op_err rc = op_sftp_stat(s, j->path, &e, &j->fail);
	if (rc == OP_ENOTFOUND || rc == OP_EAUTH || rc == OP_EREJECTED || rc == OP_EUNSUPPORTED)
		return OP_OK;
	if (rc)
		return rc;
	if (e.type != OP_SFTP_FILE || !e.has_size || e.size < SPLIT_MIN)
		return OP_OK;
	uint64_t want = e.size / PART_MIN;
	if (want > (uint64_t)c->streams)
		want = (uint64_t)c->streams;
	atomic_store(&j->stop, false);
	j->part[0] = (struct part){.j = j, .s = s, .writer = j->writer, .call = j->call};
	unsigned n = 1;
	for (; n < want; n++) {
		struct part *p = &j->part[n];
		*p = (struct part){.j = j, .call = j->call};
		p->call.cancelled = part_cancelled;
		p->call.cancel_ud = p;
		if (part_session(j, client, a, p) != OP_OK) {
			OP_LOGI("%s exec=%s: get %.300s over %u sessions, not %u: %s", st->name,
			        op_exec_id(j->x), j->path, n, (unsigned)want, p->fail.msg);
			op_sftp_give(client, p->s);
			*p = (struct part){0};
			break;
		}
	}
	j->nparts = n;
	if (n == 1) {
		j->nparts = 0;
		return OP_OK;
	}
	/* Equal parts, the last one takes the rest. */
	uint64_t each = e.size / n;
	for (unsigned i = 0; i < n; i++) {
		j->part[i].off = each * i;
		j->part[i].len = i + 1 < n ? each : e.size - each * i;
	}
	for (unsigned i = 1; i < n; i++) {
		struct part *p = &j->part[i];
		char why[512] = "";
		rc = op_sftp_local_writer_start(&j->local, p->off, &p->writer, why, sizeof(why));
		if (rc) {
			j->fail.code = rc == OP_ENOMEM ? "NOMEM" : "SFTP_LOCAL";
			snprintf(j->fail.msg, sizeof(j->fail.msg), "%s", why);
			return rc;
		}
	}
	return OP_OK;
}

/* The parts of a split get side by side: the extra ones on threads of their
 * own, part 0 on this one (its session bound by j->call, which watches the
 * stop flag meanwhile). The first part that fails stops the others and is
 * the get's failure. */
static op_err get_split(struct op_sftp_conn *s, struct job *j)
{
	op_err rc = OP_OK;
	for (unsigned i = 1; i < j->nparts; i++) {
		struct part *p = &j->part[i];
		int e = pthread_create(&p->thread, NULL, part_main, p);
		if (e) {
			char eb[128];
			rc = e == EAGAIN ? OP_ENOMEM : OP_EIO;
			j->fail.code = "SFTP_LOCAL";
			snprintf(j->fail.msg, sizeof(j->fail.msg),
			         "get %.300s: no thread for part %u: %s", j->path, i,
			         strerror_r(e, eb, sizeof(eb)));
			atomic_store(&j->stop, true);
			break;
		}
		p->running = true;
	}
	struct part *p0 = &j->part[0];
	if (rc == OP_OK) {
		struct op_sftp_call saved = j->call;
		j->call.cancelled = part_cancelled;
		j->call.cancel_ud = p0;
		p0->s = s;
		p0->writer = j->writer;
		part_run(p0);
		j->call = saved;
	}
	uint64_t total = 0;
	const struct part *failed = NULL;
	for (unsigned i = 0; i < j->nparts; i++) {
		struct part *p = &j->part[i];
		if (p->running) {
			pthread_join(p->thread, NULL);
			p->running = false;
		}
		total += p->size;
		/* A part that stopped because another failed is not the cause. */
		if (p->rc &&
		    (failed == NULL || (failed->rc == OP_ECANCELED && p->rc != OP_ECANCELED)))
			failed = p;
	}
	if (rc)
		return rc;
	if (failed) {
		j->fail = failed->fail;
		return failed->rc;
	}
	j->size = total;
	return OP_OK;
}

static op_err run_op(struct op_sftp_conn *s, struct job *j)
{
	const struct sftp_cfg *c = j->c;
	struct op_sftp_fail *f = &j->fail;
	switch (c->operation) {
	case OPER_LIST:
		return op_sftp_list(s, j->path, j->pattern, (size_t)c->max_entries, &j->list, &j->n,
		                    f);
	case OPER_STAT:
		return op_sftp_stat(s, j->path, &j->ent, f);
	case OPER_GET:
		if (j->nparts > 1)
			return get_split(s, j);
		return op_sftp_get(s, j->path, j->to_file ? UINT64_MAX : (uint64_t)c->max_bytes,
		                   j->to_file ? sink_file : sink_buf, j, &j->size, f);
	case OPER_PUT:
		return op_sftp_put(s, j->path, c->overwrite,
		                   j->from_file ? source_file : source_mem, j, &j->size, f);
	case OPER_MOVE:
		return op_sftp_move(s, j->path, j->to, c->overwrite, f);
	case OPER_DELETE:
		return op_sftp_delete(s, j->path, c->ignore_missing, &j->flag, f);
	default:
		return op_sftp_mkdir(s, j->path, c->parents, &j->flag, f);
	}
}
/* Back to the start before a second attempt (nothing should have moved). */
static op_err rewind_job(struct job *j)
{
	char why[512] = "";
	j->off = 0;
	op_buf_reset(&j->got);
	op_err rc = OP_OK;
	if (j->to_file) {
		op_sftp_local_writer_free(j->writer);
		j->writer = NULL;
		rc = op_sftp_local_rewind(&j->local, why, sizeof(why));
		if (rc == OP_OK)
			rc = op_sftp_local_writer_start(&j->local, 0, &j->writer, why, sizeof(why));
	} else if (j->from_file && lseek(j->local.fd, 0, SEEK_SET) != 0)
		rc = op_errf(why, sizeof(why), OP_EIO,
		             "localPath %.300s: cannot go back to its start", j->local_path);
	return rc ? local_fail(j->x, rc, why) : OP_OK;
}

/* One attempt: a session (pooled unless fresh, else new) into *sp, the
 * extra sessions of a split get, then the operation. The account is open
 * for the logins only. *reported says the failure is reported already. */
static op_err attempt(struct job *j, struct op_sftp *client, const struct op_step *st, bool fresh,
                      struct op_sftp_conn **sp, bool *reported)
{
	const struct sftp_cfg *c = j->c;
	struct op_account *a = NULL;
	*reported = false;
	op_err rc = account_open(j->x, c->account, &a);
	if (rc) {
		*reported = true;
		return rc;
	}
	struct op_sftp_conn *s =
	    fresh ? NULL : op_sftp_take(client, j->host, (int)c->port, a, &j->call);
	if (s == NULL)
		rc = op_sftp_connect(client, j->host, (int)c->port, a, &j->call, &s, &j->fail);
	if (rc == OP_OK && j->to_file && c->streams > 1)
		rc = split_open(j, client, s, a, st);
	/* Secrets live no longer than the logins. */
	op_account_free(a);
	*sp = s;
	if (rc == OP_OK)
		rc = run_op(s, j);
	return rc;
}

/* Takes or opens a session, runs the operation, gives the session back.
 * The failure is reported (op_exec_fail) when this returns. */
static op_err session_run(struct job *j, struct op_sftp *client, const struct op_step *st)
{
	struct op_exec *x = j->x;
	struct op_sftp_conn *s = NULL;
	bool reported = false;
	op_err rc = attempt(j, client, st, false, &s, &reported);
	if (rc && op_sftp_stale(s, rc)) {
		OP_LOGI("%s exec=%s: %s; the server closed the pooled session: connecting again",
		        st->name, op_exec_id(x), j->fail.msg);
		op_sftp_give(client, s);
		s = NULL;
		split_close(j, client);
		rc = rewind_job(j);
		if (rc)
			return rc;
		rc = attempt(j, client, st, true, &s, &reported);
	}
	op_sftp_give(client, s);
	split_close(j, client);
	if (rc && !reported)
		return op_exec_fail(x, rc, j->fail.code ? j->fail.code : "SFTP_ERROR", "%s",
		                    j->fail.msg);
	return rc;
}

/* ---- the answer ---- */

/* s as a JSON string; bytes that are not UTF-8 (names from a server) become
 * U+FFFD. */
static cJSON *text_json(const char *s, size_t n)
{
	if (op_utf8_valid(s, n) && memchr(s, '\0', n) == NULL)
		return cJSON_CreateString(s);
	struct op_buf b;
	op_buf_init(&b, 3 * n + 1);
	op_err rc = OP_OK;
	for (size_t i = 0; i < n && rc == OP_OK;) {
		size_t ok = s[i] ? op_utf8_valid_len((const unsigned char *)s + i, n - i) : 0;
		rc = op_buf_add(&b, s + i, ok);
		i += ok;
		if (i < n && rc == OP_OK && ok == 0) {
			rc = op_buf_adds(&b, "\xEF\xBF\xBD");
			i++;
		}
	}
	cJSON *j = rc == OP_OK ? cJSON_CreateString(op_buf_str(&b)) : NULL;
	op_buf_fini(&b);
	return j;
}

static bool add(cJSON *o, const char *key, cJSON *v)
{
	if (v == NULL || !cJSON_AddItemToObject(o, key, v)) {
		cJSON_Delete(v);
		return false;
	}
	return true;
}

static cJSON *entry_json(const struct op_sftp_entry *e, const char *name, const char *path)
{
	char mode[8], mtime[32];
	cJSON *o = cJSON_CreateObject();
	if (o == NULL)
		return NULL;
	op_sftp_mode_text(e->mode, mode);
	op_sftp_time_text(e->mtime, mtime);
	bool ok = add(o, "name", text_json(name, strlen(name))) &&
	          add(o, "path", text_json(path, strlen(path))) &&
	          add(o, "type", cJSON_CreateString(op_sftp_type_name(e->type))) &&
	          add(o, "size",
	              e->has_size ? cJSON_CreateNumber((double)e->size) : cJSON_CreateNull()) &&
	          add(o, "mtime", e->has_mtime ? cJSON_CreateString(mtime) : cJSON_CreateNull()) &&
	          add(o, "mode", e->has_mode ? cJSON_CreateString(mode) : cJSON_CreateNull());
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* The result of get into the message; OP_EPARSE when text is not text. */
static op_err get_content(struct job *j, cJSON **out)
{
	*out = NULL;
	const struct op_buf *b = &j->got;
	if (j->c->encoding == ENC_BASE64) {
		*out = op_json_base64(b->data, b->len);
		return *out ? OP_OK : nomem(j->x);
	}
	if (b->len > 0 &&
	    (b->data == NULL || !op_utf8_valid(b->data, b->len) || memchr(b->data, '\0', b->len)))
		return op_exec_fail(j->x, OP_EPARSE, "SFTP_NOT_TEXT",
		                    "get %.300s: the file is not UTF-8 text; encoding base64 takes "
		                    "any bytes",
		                    j->path);
	*out = cJSON_CreateString(op_buf_str(b));
	return *out ? OP_OK : nomem(j->x);
}

static op_err answer(struct job *j, cJSON **out)
{
	*out = NULL;
	const struct sftp_cfg *c = j->c;
	cJSON *r = c->operation == OPER_LIST ? cJSON_CreateArray() : cJSON_CreateObject();
	bool ok = r != NULL;
	switch (c->operation) {
	case OPER_LIST:
		for (size_t i = 0; ok && i < j->n; i++) {
			char *p = op_sftp_path_join(j->path, j->list[i].name);
			cJSON *e = p ? entry_json(&j->list[i], j->list[i].name, p) : NULL;
			op_free(p);
			ok = e && cJSON_AddItemToArray(r, e);
			if (!ok)
				cJSON_Delete(e);
		}
		break;
	case OPER_STAT: {
		const char *slash = strrchr(j->path, '/');
		const char *name = slash && slash[1] ? slash + 1 : j->path;
		cJSON_Delete(r);
		r = entry_json(&j->ent, name, j->path);
		ok = r != NULL;
		break;
	}
	case OPER_GET: {
		ok = ok && add(r, "path", cJSON_CreateString(j->path)) &&
		     add(r, "size", cJSON_CreateNumber((double)j->size));
		if (ok && j->to_file) {
			ok = add(r, "localPath", cJSON_CreateString(j->local_path));
		} else if (ok) {
			cJSON *content = NULL;
			op_err rc = get_content(j, &content);
			if (rc) {
				cJSON_Delete(r);
				return rc;
			}
			ok = add(r, "content", content) &&
			     add(r, "encoding", cJSON_CreateString(encodings[c->encoding]));
		}
		break;
	}
	case OPER_PUT:
		ok = ok && add(r, "path", cJSON_CreateString(j->path)) &&
		     add(r, "size", cJSON_CreateNumber((double)j->size));
		break;
	case OPER_MOVE:
		ok = ok && add(r, "from", cJSON_CreateString(j->path)) &&
		     add(r, "to", cJSON_CreateString(j->to));
		break;
	case OPER_DELETE:
		ok = ok && add(r, "path", cJSON_CreateString(j->path)) &&
		     add(r, "deleted", cJSON_CreateBool(j->flag));
		break;
	default:
		ok = ok && add(r, "path", cJSON_CreateString(j->path)) &&
		     add(r, "created", cJSON_CreateBool(j->flag));
		break;
	}
	if (!ok) {
		cJSON_Delete(r);
		return nomem(j->x);
	}
	*out = r;
	return OP_OK;
}

static bool cancelled(void *ud)
{
	return op_exec_cancelled(ud);
}

static op_err sftp_view(struct op_exec *x, const struct op_step *st, const cJSON *msg, cJSON **out)
{
	const struct sftp_cfg *c = st->cfg;
	*out = NULL;
	struct job j = {.x = x, .c = c};
	op_buf_init(&j.got, (size_t)c->max_bytes);
	op_sftp_local_init(&j.local);
	long long left = op_exec_remaining_ms(x);
	j.call = (struct op_sftp_call){
	    .timeout_ms = c->timeout_ms,
	    .connect_timeout_ms = c->connect_timeout_ms,
	    .deadline_ms = left == LLONG_MAX ? LLONG_MAX : op_mono_ms() + left,
	    .cancelled = cancelled,
	    .cancel_ud = x,
	};
	op_err rc = build(&j, msg);
	if (rc == OP_OK)
		rc = session_run(&j, st->priv, st);
	if (rc == OP_OK && j.to_file) {
		char why[512] = "";
		rc = op_sftp_local_writer_finish(j.writer, why, sizeof(why));
		j.writer = NULL;
		if (rc == OP_OK)
			rc = op_sftp_local_commit(&j.local, c->overwrite, why, sizeof(why));
		if (rc)
			rc = local_fail(x, rc, why);
	}
	if (rc == OP_OK)
		rc = answer(&j, out);
	if (rc == OP_OK)
		OP_LOGD("%s exec=%s: %s %s on %s:%lld done (%llu bytes)", st->name, op_exec_id(x),
		        operations[c->operation], j.path, j.host, c->port,
		        (unsigned long long)j.size);
	job_fini(&j);
	return rc;
}

static op_err sftp_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	op_err rc = sftp_view(x, st, msg, out);
	cJSON_Delete(msg);
	return rc;
}

const struct op_step_type op_step_sftp = {
    .name = "sftp",
    .summary = "files on an SFTP server: list, get, put (atomic), move, delete, mkdir, stat; "
               "the result is the new message",
    .conf = &sftp_table,
    .prepare = sftp_prepare,
    .run = sftp_run,
    .view = sftp_view,
    .release = sftp_release,
    .waits = true,
};
