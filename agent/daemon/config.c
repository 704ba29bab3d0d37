/*
 * The daemon's config file: one static table of keys, parsed with inih.
 *
 * inih (Debian's build) does not give the handler a line number, folds
 * indented lines into the previous value, splits lines longer than its buffer
 * into two, and reports only the first malformed line. So the text goes in
 * through ini_parse_stream with our own line reader, which counts lines,
 * strips indentation, refuses overlong lines, and checks section headers and
 * key lines itself; inih is left to split "key = value ; comment". The
 * handler then binds each value through the table into a private struct.
 * The [broker NAME] sections (their table, url check and cross-key checks)
 * are in config_broker.c, the writers of the generated files (sample, docs,
 * man page) in config_doc.c; config_int.h holds what the files share.
 * Invariant: the caller's struct is written only when the whole text loaded
 * with no problem; otherwise it is zeroed.
 */
#include "agent/daemon/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/daemon/config_int.h"

#define OFF(m) offsetof(struct op_config, m)

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

_Static_assert(OP_LOG_ERROR == 0 && OP_LOG_WARN == 1 && OP_LOG_INFO == 2 && OP_LOG_DEBUG == 3,
               "log_levels[] follows enum op_log_level");

/* Sections in the order they are printed. */
const char *const op_config__sections[] = {"agent",    "store", "http",    "admin",
                                           "accounts", "files", "control", "globals"};
#define N_SECTIONS (sizeof(op_config__sections) / sizeof(op_config__sections[0]))
_Static_assert(N_SECTIONS == OP_CONFIG__N_SECTIONS, "OP_CONFIG__N_SECTIONS follows the sections");

static const struct op_config_key keys[] = {
    {.section = "agent",
     .key = "id",
     .type = OP_CONFIG_STRING,
     .off = OFF(agent.id),
     .def = "",
     .def_doc = "the host name",
     .flags = OP_CONFIG_EMPTY_OK,
     .help = "Name of this agent in logs and to the control plane; empty: the host name."},
    {.section = "agent",
     .key = "data_dir",
     .type = OP_CONFIG_PATH,
     .off = OFF(agent.data_dir),
     .def = "/var/lib/outpost",
     .help = "Folder of the LMDB store (queues, executions, dead letters); created if missing."},
    {.section = "agent",
     .key = "pipelines_dir",
     .type = OP_CONFIG_PATH,
     .off = OFF(agent.pipelines_dir),
     .def = "/etc/outpost/pipelines.d",
     .flags = OP_CONFIG_RELOAD,
     .help = "Folder of local pipeline files (*.json); they run beside any pipelines a "
             "control plane deploys."},
    {.section = "agent",
     .key = "workers",
     .type = OP_CONFIG_INT,
     .off = OFF(agent.workers),
     .def = "4",
     .min = 1,
     .max = 256,
     .help = "Most worker threads that run queued executions; the pool starts with one "
             "and grows while executions run at once."},
    {.section = "agent",
     .key = "log_level",
     .type = OP_CONFIG_ENUM,
     .off = OFF(agent.log_level),
     .def = "info",
     .choices = log_levels,
     .flags = OP_CONFIG_RELOAD,
     .help = "Least severe level logged: error, warn, info or debug."},
    {.section = "agent",
     .key = "log_format",
     .type = OP_CONFIG_ENUM,
     .off = OFF(agent.log_format),
     .def = "text",
     .choices = log_formats,
     .flags = OP_CONFIG_RELOAD,
     .help = "Log lines on stderr as text, or json (one object per line)."},
    {.section = "agent",
     .key = "shutdown_timeout",
     .type = OP_CONFIG_DURATION,
     .off = OFF(agent.shutdown_timeout_ms),
     .def = "10s",
     .min = 0,
     .max = HOUR,
     .help = "How long a shutdown waits for running executions before requeueing them."},
    {.section = "store",
     .key = "map_initial",
     .type = OP_CONFIG_BYTES,
     .off = OFF(store.map_initial),
     .def = "64MB",
     .min = MiB,
     .max = 16 * TiB,
     .help = "Initial size of the store's memory map; it grows as needed up to map_max."},
    {.section = "store",
     .key = "map_max",
     .type = OP_CONFIG_BYTES,
     .off = OFF(store.map_max),
     .def = "4GB",
     .min = MiB,
     .max = 16 * TiB,
     .help = "Largest size of the store; when it is full, triggers refuse new events."},
    {.section = "store",
     .key = "exec_retention",
     .type = OP_CONFIG_INT,
     .off = OFF(store.exec_retention),
     .def = "10000",
     .min = 0,
     .max = 100000000,
     .help = "Execution records kept; the oldest are deleted past this (0: keep none)."},
    {.section = "store",
     .key = "queue_max_events",
     .type = OP_CONFIG_INT,
     .off = OFF(store.queue_max_events),
     .def = "100000",
     .min = 1,
     .max = 1000000000,
     .help = "Most events waiting in one pipeline's queue; past it triggers refuse events."},
    {.section = "store",
     .key = "queue_max_bytes",
     .type = OP_CONFIG_BYTES,
     .off = OFF(store.queue_max_bytes),
     .def = "256MB",
     .min = KiB,
     .max = 16 * TiB,
     .help = "Most bytes of events waiting in one pipeline's queue."},
    {.section = "store",
     .key = "disk_reserve",
     .type = OP_CONFIG_BYTES,
     .off = OFF(store.disk_reserve),
     .def = "32MB",
     .min = MiB,
     .max = 16 * TiB,
     .help = "Free space kept on the store's disk: with less, triggers refuse new events "
             "(503, MQTT not acknowledged) while queued events still run and free it."},
    {.section = "http",
     .key = "listen",
     .type = OP_CONFIG_LISTEN,
     .off = OFF(http.listen),
     .def = "127.0.0.1:8080",
     .help = "Address of the HTTP triggers, IPv4:port or [IPv6]:port; empty: off."},
    {.section = "http",
     .key = "max_body",
     .type = OP_CONFIG_BYTES,
     .off = OFF(http.max_body),
     .def = "5MB",
     .min = KiB,
     .max = GiB,
     .help = "Largest request body accepted; larger requests get 413."},
    {.section = "http",
     .key = "timeout",
     .type = OP_CONFIG_DURATION,
     .off = OFF(http.timeout_ms),
     .def = "30s",
     .min = 100,
     .max = HOUR,
     .help = "Longest a synchronous request waits for its pipeline, whatever its trigger's "
             "timeoutMs; then 504."},
    {.section = "http",
     .key = "threads",
     .type = OP_CONFIG_INT,
     .off = OFF(http.threads),
     .def = "0",
     .min = 0,
     .max = 256,
     .help = "Threads serving HTTP connections; sync pipelines that only compute run on them. "
             "0: one per CPU the agent may use, at least 2."},
    {.section = "http",
     .key = "sync_threads",
     .type = OP_CONFIG_INT,
     .off = OFF(http.sync_threads),
     .def = "64",
     .min = 0,
     .max = 4096,
     .help = "Most threads running sync pipelines with a step that may wait (a connector, a "
             "commit, a backoff), so that a slow peer holds up no other request. 0: on the HTTP "
             "threads."},
    {.section = "http",
     .key = "connection_limit",
     .type = OP_CONFIG_INT,
     .off = OFF(http.connection_limit),
     .def = "1000",
     .min = 1,
     .max = 1000000,
     .help = "Most open connections; further clients are refused."},
    {.section = "http",
     .key = "per_ip_limit",
     .type = OP_CONFIG_INT,
     .off = OFF(http.per_ip_limit),
     .def = "0",
     .min = 0,
     .max = 1000000,
     .help = "Most open connections from one client address (0: no limit)."},
    {.section = "http",
     .key = "client_timeout",
     .type = OP_CONFIG_DURATION,
     .off = OFF(http.client_timeout_ms),
     .def = "10s",
     .min = 100,
     .max = HOUR,
     .help = "A connection idle this long is closed (slow-client protection); whole "
             "seconds, rounded up."},
    {.section = "http",
     .key = "header_timeout",
     .type = OP_CONFIG_DURATION,
     .off = OFF(http.header_timeout_ms),
     .def = "10s",
     .min = 100,
     .max = HOUR,
     .help = "A request's header must arrive whole within this long of its first line, "
             "however slowly it trickles; else the connection is closed."},
    {.section = "http",
     .key = "body_timeout",
     .type = OP_CONFIG_DURATION,
     .off = OFF(http.body_timeout_ms),
     .def = "60s",
     .min = 100,
     .max = HOUR,
     .help = "A request's body must arrive whole within this long of its header; else the "
             "connection is closed (a max_body of 5 MB then needs about 85 KB/s)."},
    {.section = "http",
     .key = "tls_cert",
     .type = OP_CONFIG_PATH,
     .off = OFF(http.tls_cert),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK | OP_CONFIG_READ,
     .help = "PEM certificate (chain) for HTTPS, set together with tls_key; empty: plain HTTP."},
    {.section = "http",
     .key = "tls_key",
     .type = OP_CONFIG_PATH,
     .off = OFF(http.tls_key),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK | OP_CONFIG_READ,
     .help = "PEM private key of tls_cert, readable by the service user only."},
    {.section = "admin",
     .key = "listen",
     .type = OP_CONFIG_LISTEN,
     .off = OFF(admin.listen),
     .def = "127.0.0.1:9090",
     .help = "Address of /healthz, /readyz and /metrics, IPv4:port or [IPv6]:port; empty: off."},
    {.section = "accounts",
     .key = "key_file",
     .type = OP_CONFIG_PATH,
     .off = OFF(accounts.key_file),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK | OP_CONFIG_READ,
     .help = "File of the 32-byte key that seals accounts at rest (mode 0600, created "
             "on first use); empty: the systemd credential accounts.key if there is one, "
             "else /etc/outpost/accounts.key."},
    {.section = "accounts",
     .key = "dir",
     .type = OP_CONFIG_PATH,
     .off = OFF(accounts.dir),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK,
     .help = "Folder of the sealed accounts, one file each; empty: accounts/ in data_dir."},
    {.section = "files",
     .key = "dirs",
     .type = OP_CONFIG_STRING,
     .off = OFF(files.dirs),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK,
     .example = "/srv/exchange, /var/lib/outpost/files",
     .help = "Folders file steps may read and write, and an sftp step's localDir must "
             "be in, absolute paths separated by commas; a step's files stay inside them. "
             "Empty: none."},
    {.section = "control",
     .key = "url",
     .type = OP_CONFIG_STRING,
     .off = OFF(control.url),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK,
     .example = "mqtts://control.example.com:8883",
     .help = "The control plane's MQTT broker, mqtts://host[:port] (TLS with a client "
             "certificate, always); empty: no control plane, pipelines_dir only."},
    {.section = "control",
     .key = "ca_file",
     .type = OP_CONFIG_PATH,
     .off = OFF(control.ca_file),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK | OP_CONFIG_READ,
     .help = "PEM CA bundle that verifies the broker's certificate; required with url."},
    {.section = "control",
     .key = "cert_file",
     .type = OP_CONFIG_PATH,
     .off = OFF(control.cert_file),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK | OP_CONFIG_READ,
     .help = "PEM client certificate of this agent (its CN is usually the agent id); "
             "required with url."},
    {.section = "control",
     .key = "key_file",
     .type = OP_CONFIG_PATH,
     .off = OFF(control.key_file),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK | OP_CONFIG_READ,
     .help = "PEM private key of cert_file, readable by the service user only; required "
             "with url."},
    {.section = "control",
     .key = "trusted_keys",
     .type = OP_CONFIG_STRING,
     .off = OFF(control.trusted_keys),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK | OP_CONFIG_READ,
     .example = "/etc/outpost/control/ops.key.pub, /etc/outpost/control/ops-2027.key.pub",
     .help = "Public keys (outpostctl keygen's KEY.pub files) whose signatures the agent "
             "accepts on desired documents, absolute paths separated by commas; required "
             "with url."},
    {.section = "control",
     .key = "group",
     .type = OP_CONFIG_STRING,
     .off = OFF(control.group),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK,
     .help = "Group of this agent, reported to the control plane (outpostctl deploy "
             "--group); empty: none."},
    {.section = "control",
     .key = "topic_prefix",
     .type = OP_CONFIG_STRING,
     .off = OFF(control.topic_prefix),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK,
     .help = "Fleet prefix before outpost/v1/<agent id>/ in every topic, without a "
             "trailing slash; empty: none."},
    {.section = "control",
     .key = "client_id",
     .type = OP_CONFIG_STRING,
     .off = OFF(control.client_id),
     .def = "",
     .def_doc = "outpost- and the agent id",
     .flags = OP_CONFIG_EMPTY_OK,
     .help = "MQTT client id of the link; empty: outpost- and the agent id."},
    {.section = "control",
     .key = "keepalive",
     .type = OP_CONFIG_DURATION,
     .off = OFF(control.keepalive_ms),
     .def = "30s",
     .min = 5 * SEC,
     .max = HOUR,
     .help = "MQTT keep-alive of the link."},
    {.section = "control",
     .key = "heartbeat",
     .type = OP_CONFIG_DURATION,
     .off = OFF(control.heartbeat_ms),
     .def = "30s",
     .min = SEC,
     .max = HOUR,
     .help = "How often the agent republishes its status while connected."},
    {.section = "control",
     .key = "reconnect_min",
     .type = OP_CONFIG_DURATION,
     .off = OFF(control.reconnect_min_ms),
     .def = "1s",
     .min = 10,
     .max = HOUR,
     .help = "First wait before reconnecting; it doubles up to reconnect_max, with "
             "jitter."},
    {.section = "control",
     .key = "reconnect_max",
     .type = OP_CONFIG_DURATION,
     .off = OFF(control.reconnect_max_ms),
     .def = "60s",
     .min = 10,
     .max = HOUR,
     .help = "Longest wait before reconnecting."},
    {.section = "control",
     .key = "log_level",
     .type = OP_CONFIG_ENUM,
     .off = OFF(control.log_level),
     .def = "warn",
     .choices = log_levels,
     .help = "Least severe log level sent to the control plane (out/logs): error, warn, "
             "info or debug; lines below [agent] log_level are not logged at all."},
    {.section = "control",
     .key = "metrics_interval",
     .type = OP_CONFIG_DURATION,
     .off = OFF(control.metrics_interval_ms),
     .def = "60s",
     .min = SEC,
     .max = HOUR,
     .help = "How often a snapshot of the agent's metrics goes to the control plane "
             "(out/metrics)."},
    {.section = "control",
     .key = "outbox_max_records",
     .type = OP_CONFIG_INT,
     .off = OFF(control.outbox_max_records),
     .def = "1000000",
     .min = 1000,
     .max = 1000000000,
     .help = "Records the outbox keeps while the link is down; past it the oldest logs go, "
             "then metrics; execution records only past twice this."},
    {.section = "control",
     .key = "outbox_max_bytes",
     .type = OP_CONFIG_BYTES,
     .off = OFF(control.outbox_max_bytes),
     .def = "256MB",
     .min = MiB,
     .max = 64 * GiB,
     .help = "Bytes of records the outbox keeps, as outbox_max_records; at most half of "
             "[store] map_max (execution records may take twice it)."},
    {.section = "control",
     .key = "connect_timeout",
     .type = OP_CONFIG_DURATION,
     .off = OFF(control.connect_timeout_ms),
     .def = "10s",
     .min = 100,
     .max = 10 * MIN,
     .help = "Longest TCP, TLS and MQTT handshake of one connection attempt; whole seconds, "
             "rounded up."},
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(N_KEYS == OP_CONFIG__N_KEYS, "OP_CONFIG__N_KEYS follows keys[]");

const struct op_config_key *op_config_keys(size_t *n)
{
	*n = N_KEYS;
	return keys;
}

const char *op_config_type_name(enum op_config_type t)
{
	switch (t) {
	case OP_CONFIG_STRING:
		return "string";
	case OP_CONFIG_PATH:
		return "path";
	case OP_CONFIG_INT:
		return "integer";
	case OP_CONFIG_BYTES:
		return "size";
	case OP_CONFIG_DURATION:
		return "duration";
	case OP_CONFIG_BOOL:
		return "boolean";
	case OP_CONFIG_ENUM:
		return "enum";
	case OP_CONFIG_LISTEN:
		return "address";
	}
	return "?";
}

/* ---- value parsing ---- */

/* Reads a run of decimal digits; false on none or overflow. */
bool op_config__digits(const char **sp, uint64_t *out)
{
	const char *s = *sp;
	uint64_t v = 0;
	if (!isdigit((unsigned char)*s))
		return false;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*sp = s;
	*out = v;
	return true;
}

static bool parse_ll(const char *s, long long *out)
{
	bool neg = false;
	uint64_t v;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (!op_config__digits(&s, &v) || *s)
		return false;
	if (v > (uint64_t)LLONG_MAX)
		return false;
	*out = neg ? -(long long)v : (long long)v;
	return true;
}

bool op_config_parse_bytes(const char *s, uint64_t *out)
{
	static const struct {
		const char *name;
		uint64_t mul;
	} units[] = {
	    {"", 1},      {"b", 1},    {"k", KiB},   {"kb", KiB},  {"kib", KiB},
	    {"m", MiB},   {"mb", MiB}, {"mib", MiB}, {"g", GiB},   {"gb", GiB},
	    {"gib", GiB}, {"t", TiB},  {"tb", TiB},  {"tib", TiB},
	};
	uint64_t v;
	if (!op_config__digits(&s, &v))
		return false;
	while (*s == ' ')
		s++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(s, units[i].name) == 0) {
			if (v > UINT64_MAX / units[i].mul)
				return false;
			*out = v * units[i].mul;
			return true;
		}
	}
	return false;
}

bool op_config_parse_duration(const char *s, uint64_t *ms)
{
	uint64_t total = 0;
	if (strcmp(s, "0") == 0) {
		*ms = 0;
		return true;
	}
	if (!*s)
		return false;
	while (*s) {
		uint64_t v, mul;
		if (!op_config__digits(&s, &v))
			return false;
		if (s[0] == 'm' && s[1] == 's') {
			mul = 1;
			s += 2;
		} else if (*s == 's') {
			mul = SEC;
			s++;
		} else if (*s == 'm') {
			mul = MIN;
			s++;
		} else if (*s == 'h') {
			mul = HOUR;
			s++;
		} else {
			return false;
		}
		if (v > (UINT64_MAX - total) / mul)
			return false;
		total += v * mul;
	}
	*ms = total;
	return true;
}

bool op_config_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

bool op_config__valid_hostname(const char *h, size_t n)
{
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.')
			return false;
	}
	return true;
}

/* Splits "IPv4:port" / "[IPv6]:port" into a new host string and a port. */
static bool parse_listen(const char *s, char **host, unsigned *port, bool *nomem)
{
	const char *h, *colon;
	size_t hn;
	char tmp[INET6_ADDRSTRLEN + 1];
	unsigned char addr[sizeof(struct in6_addr)];
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return false;
		h = s + 1;
		hn = (size_t)(close - h);
		colon = close + 1;
		if (hn == 0 || hn >= sizeof(tmp))
			return false;
		memcpy(tmp, h, hn);
		tmp[hn] = '\0';
		if (inet_pton(AF_INET6, tmp, addr) != 1)
			return false;
	} else {
		/* Numeric only: the listener binds what it is given, and a name
		 * (localhost) could stand for several addresses. */
		colon = strrchr(s, ':');
		if (colon == NULL)
			return false;
		h = s;
		hn = (size_t)(colon - s);
		if (hn == 0 || hn >= sizeof(tmp))
			return false;
		memcpy(tmp, h, hn);
		tmp[hn] = '\0';
		if (inet_pton(AF_INET, tmp, addr) != 1)
			return false;
	}
	const char *p = colon + 1;
	uint64_t v;
	if (!op_config__digits(&p, &v) || *p || v > 65535)
		return false;
	char *dup = op_strndup(h, hn);
	if (dup == NULL) {
		*nomem = true;
		return false;
	}
	*host = dup;
	*port = (unsigned)v;
	return true;
}

static bool has_ctrl(const char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	}
	return false;
}

/* ---- formatting ---- */

void op_config__fmt_bytes(uint64_t v, char *out, size_t n)
{
	static const struct {
		const char *name;
		uint64_t mul;
	} units[] = {{"TB", TiB}, {"GB", GiB}, {"MB", MiB}, {"KB", KiB}};
	for (size_t i = 0; i < 4 && v; i++) {
		if (v % units[i].mul == 0) {
			snprintf(out, n, "%llu%s", (unsigned long long)(v / units[i].mul),
			         units[i].name);
			return;
		}
	}
	snprintf(out, n, "%llu", (unsigned long long)v);
}

static void fmt_duration(uint64_t ms, char *out, size_t n)
{
	static const struct {
		const char *name;
		uint64_t mul;
	} units[] = {{"h", HOUR}, {"m", MIN}, {"s", SEC}, {"ms", 1}};
	size_t len = 0;
	if (ms == 0) {
		snprintf(out, n, "0s");
		return;
	}
	out[0] = '\0';
	for (size_t i = 0; i < 4; i++) {
		uint64_t q = ms / units[i].mul;
		ms %= units[i].mul;
		if (q && len < n) {
			int w = snprintf(out + len, n - len, "%llu%s", (unsigned long long)q,
			                 units[i].name);
			if (w > 0)
				len += (size_t)w;
		}
	}
}

/* Formats a bound of key k (bytes, ms or a plain number). */
void op_config__fmt_bound(const struct op_config_key *k, long long v, char *out, size_t n)
{
	if (k->type == OP_CONFIG_BYTES)
		op_config__fmt_bytes((uint64_t)v, out, n);
	else if (k->type == OP_CONFIG_DURATION)
		fmt_duration((uint64_t)v, out, n);
	else
		snprintf(out, n, "%lld", v);
}

/* ---- load context ---- */

void op_config__problem(struct load *l, int line, const char *fmt, ...)
{
	char path[PATH_MAX + 32];
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(path, sizeof(path), "%s:%d", l->name, line);
	else
		snprintf(path, sizeof(path), "%s", l->name);
	op_diag_add_at(l->d, path, "%s", msg);
	l->problems++;
	if (l->d->nomem)
		l->nomem = true;
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[65];
	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost =
			    tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			size_t best = diag + cost;
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static bool near(const char *got, const char *want)
{
	size_t dist = edit_distance(got, want);
	return dist <= (strlen(want) <= 4 ? 1u : 2u);
}

static int find_section(const char *name)
{
	for (size_t i = 0; i < N_SECTIONS; i++) {
		if (strcmp(name, op_config__sections[i]) == 0)
			return (int)i;
	}
	return -1;
}

static void unknown_section(struct load *l, const char *name)
{
	char word[65];
	size_t wl = strcspn(name, " \t");
	for (size_t i = 0; i < N_SECTIONS; i++) {
		if (near(name, op_config__sections[i])) {
			op_config__problem(l, l->line,
			                   "[%.64s]: unknown section, did you mean [%s]?", name,
			                   op_config__sections[i]);
			return;
		}
	}
	if (wl < sizeof(word)) {
		memcpy(word, name, wl);
		word[wl] = '\0';
		if (near(word, "broker")) {
			op_config__problem(l, l->line,
			                   "[%.64s]: unknown section, did you mean [broker NAME]?",
			                   name);
			return;
		}
	}
	op_config__problem(
	    l, l->line,
	    "[%.64s]: unknown section, expected one of [agent], [store], [http], [admin], "
	    "[accounts], [broker NAME], [globals]",
	    name);
}

/* name is no key of section sec (the table's section) in table t; label names it. */
void op_config__unknown_key(struct load *l, const char *label, const char *sec,
                            const struct op_config_key *t, size_t nt, const char *name)
{
	char list[512];
	size_t len = 0;
	list[0] = '\0';
	for (size_t i = 0; i < nt; i++) {
		if (strcmp(t[i].section, sec) != 0)
			continue;
		if (near(name, t[i].key)) {
			op_config__problem(l, l->line,
			                   "[%s] %.64s: unknown key, did you mean '%s'?", label,
			                   name, t[i].key);
			return;
		}
		int w = snprintf(list + len, sizeof(list) - len, "%s%s", len ? ", " : "", t[i].key);
		if (w > 0 && (size_t)w < sizeof(list) - len)
			len += (size_t)w;
	}
	op_config__problem(l, l->line, "[%s] %.64s: unknown key, expected one of: %s", label, name,
	                   list);
}

/* Frees a string field, wiping it first when it holds a secret. */
static void free_str(const struct op_config_key *k, char *s)
{
	if (s != NULL && (k->flags & OP_CONFIG_SECRET))
		op_free_secret(s, strlen(s));
	else
		op_free(s);
}

/*
 * Length of the variable a file item (n bytes, trimmed) starts with when it is
 * $CREDENTIALS_DIRECTORY or ${CREDENTIALS_DIRECTORY}, alone or before a '/';
 * else 0.
 */
static size_t credentials_var(const char *item, size_t n)
{
	static const char *const forms[] = {"$CREDENTIALS_DIRECTORY", "${CREDENTIALS_DIRECTORY}"};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		size_t fl = strlen(forms[i]);
		if (n >= fl && memcmp(item, forms[i], fl) == 0 && (n == fl || item[fl] == '/'))
			return fl;
	}
	return 0;
}

/*
 * v, the value of key k (OP_CONFIG_READ) in section label, set on line, as a
 * new string in *out with each file written as $CREDENTIALS_DIRECTORY/NAME
 * made the real path; the rest stays as written. v is one file for a PATH
 * key, a comma-separated list of files for a STRING key. False with *out NULL
 * on a problem (recorded) or no memory (l->nomem).
 */
static bool expand_credentials(struct load *l, const char *label, int line,
                               const struct op_config_key *k, const char *v, char **out)
{
	struct op_buf b;
	op_err e = OP_OK;
	*out = NULL;
	op_buf_init(&b, PATH_MAX - 1);
	for (const char *s = v; e == OP_OK;) {
		const char *item = s + strspn(s, " \t");
		size_t n = k->type == OP_CONFIG_STRING ? strcspn(item, ",") : strlen(item), tn = n;
		while (tn && (item[tn - 1] == ' ' || item[tn - 1] == '\t'))
			tn--;
		size_t vl = credentials_var(item, tn);
		e = op_buf_add(&b, s, (size_t)(item - s));
		if (vl == 0) {
			if (e == OP_OK)
				e = op_buf_add(&b, item, n);
		} else {
			const char *name = vl < tn ? item + vl + 1 : item + vl;
			size_t nl = tn - (size_t)(name - item);
			if (nl == 0 || memchr(name, '/', nl) != NULL ||
			    (nl == 1 && name[0] == '.') ||
			    (nl == 2 && memcmp(name, "..", 2) == 0)) {
				op_config__problem(
				    l, line,
				    "[%s] %s: '%.*s' is not a credential, expected "
				    "$CREDENTIALS_DIRECTORY/NAME with NAME a file name (not "
				    "empty, no '/', not . or ..)",
				    label, k->key, (int)(tn > 200 ? 200 : tn), item);
				goto out;
			}
			const char *dir = getenv("CREDENTIALS_DIRECTORY");
			if (dir == NULL || *dir == '\0') {
				op_config__problem(
				    l, line,
				    "[%s] %s: $CREDENTIALS_DIRECTORY is not set (systemd "
				    "sets it for LoadCredential=; elsewhere set it to a "
				    "folder with the files)",
				    label, k->key);
				goto out;
			}
			size_t dl = strlen(dir);
			while (dl > 1 && dir[dl - 1] == '/')
				dl--;
			if (e == OP_OK)
				e = op_buf_add(&b, dir, dl);
			/* "/NAME" as written, after the variable */
			if (e == OP_OK)
				e = op_buf_add(&b, item + vl, n - vl);
		}
		s = item + n;
		if (*s == '\0')
			break;
		if (e == OP_OK)
			e = op_buf_addc(&b, *s++);
	}
	if (e == OP_ELIMIT) {
		op_config__problem(
		    l, line,
		    "[%s] %s: %d bytes or longer with $CREDENTIALS_DIRECTORY put in, "
		    "expected a shorter value",
		    label, k->key, PATH_MAX);
		goto out;
	}
	if (e != OP_OK || (*out = op_buf_take(&b)) == NULL) {
		l->nomem = true;
		goto out;
	}
	return true;
out:
	op_buf_fini(&b);
	return false;
}

/*
 * Applies one value through key k to the struct at base (struct op_config, or
 * struct op_config_broker for broker keys); label is the section as shown in
 * messages ("http", "broker plant"). On a bad value records a problem and
 * leaves the field at its previous value.
 */
void op_config__set_value(struct load *l, void *base, const char *label, int line,
                          const struct op_config_key *k, const char *v)
{
	void *p = (char *)base + k->off;
	char lo[48], hi[48], got[48];
	long long n = 0;
	uint64_t u = 0;
	bool b;

	switch (k->type) {
	case OP_CONFIG_STRING:
	case OP_CONFIG_PATH: {
		if (!*v && !(k->flags & OP_CONFIG_EMPTY_OK)) {
			op_config__problem(l, line, "[%s] %s: empty, expected %s", label, k->key,
			                   k->type == OP_CONFIG_PATH ? "a path" : "a value");
			return;
		}
		if (has_ctrl(v) || strlen(v) >= PATH_MAX) {
			op_config__problem(l, line,
			                   "[%s] %s: '%.64s' is not valid, expected printable text "
			                   "shorter than %d bytes",
			                   label, k->key, v, PATH_MAX);
			return;
		}
		char *dup = NULL;
		if (k->flags & OP_CONFIG_READ) {
			if (!expand_credentials(l, label, line, k, v, &dup))
				return;
		} else if ((dup = op_strdup(v)) == NULL) {
			l->nomem = true;
			return;
		}
		free_str(k, *(char **)p);
		*(char **)p = dup;
		return;
	}
	case OP_CONFIG_INT:
		if (!parse_ll(v, &n)) {
			op_config__problem(
			    l, line,
			    "[%s] %s: '%.64s' is not a whole number, expected %lld to %lld", label,
			    k->key, v, k->min, k->max);
			return;
		}
		break;
	case OP_CONFIG_BYTES:
		if (!op_config_parse_bytes(v, &u)) {
			op_config__problem(
			    l, line,
			    "[%s] %s: '%.64s' is not a size, expected a whole number with an "
			    "optional unit B, KB, MB, GB or TB (1 KB = 1024 bytes), e.g. 64MB",
			    label, k->key, v);
			return;
		}
		n = u > (uint64_t)LLONG_MAX ? LLONG_MAX : (long long)u;
		break;
	case OP_CONFIG_DURATION:
		if (!op_config_parse_duration(v, &u)) {
			op_config__problem(
			    l, line,
			    "[%s] %s: '%.64s' is not a duration, expected a whole number with a "
			    "unit ms, s, m or h, e.g. 30s or 1m30s",
			    label, k->key, v);
			return;
		}
		n = u > (uint64_t)LLONG_MAX ? LLONG_MAX : (long long)u;
		break;
	case OP_CONFIG_BOOL:
		if (!op_config_parse_bool(v, &b)) {
			op_config__problem(
			    l, line, "[%s] %s: '%.64s' is not a boolean, expected true or false",
			    label, k->key, v);
			return;
		}
		*(bool *)p = b;
		return;
	case OP_CONFIG_ENUM: {
		char list[256];
		size_t len = 0;
		for (int i = 0; k->choices[i]; i++) {
			if (strcmp(v, k->choices[i]) == 0) {
				*(int *)p = i;
				return;
			}
			int w = snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
			                 k->choices[i]);
			if (w > 0 && (size_t)w < sizeof(list) - len)
				len += (size_t)w;
		}
		op_config__problem(l, line, "[%s] %s: '%.64s' is not allowed, expected one of: %s",
		                   label, k->key, v, list);
		return;
	}
	case OP_CONFIG_LISTEN: {
		struct op_config_listen *a = p;
		char *host = NULL;
		unsigned port = 0;
		if (*v) {
			bool nomem = false;
			if (!parse_listen(v, &host, &port, &nomem)) {
				if (nomem) {
					l->nomem = true;
					return;
				}
				op_config__problem(
				    l, line,
				    "[%s] %s: '%.64s' is not an address, expected IPv4:port, "
				    "[IPv6]:port (port 0 to 65535; a numeric address such as "
				    "127.0.0.1 or [::1]), or empty for off",
				    label, k->key, v);
				return;
			}
		}
		op_free(a->host);
		a->host = host;
		a->port = port;
		return;
	}
	}

	if (n < k->min || n > k->max) {
		op_config__fmt_bound(k, k->min, lo, sizeof(lo));
		op_config__fmt_bound(k, k->max, hi, sizeof(hi));
		if (k->type == OP_CONFIG_INT)
			snprintf(got, sizeof(got), "%lld", n);
		else
			snprintf(got, sizeof(got), "%.40s", v);
		op_config__problem(l, line, "[%s] %s: %s is out of range, expected %s to %s", label,
		                   k->key, got, lo, hi);
		return;
	}
	if (k->type == OP_CONFIG_INT)
		*(long long *)p = n;
	else
		*(uint64_t *)p = u;
}

static bool global_name_ok(const char *s)
{
	if (!isalpha((unsigned char)*s) && *s != '_')
		return false;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return false;
	}
	return true;
}

static void set_global(struct load *l, const char *name, const char *v)
{
	if (!global_name_ok(name)) {
		op_config__problem(
		    l, l->line,
		    "[globals] %.64s: not a valid name, expected letters, digits, '_' and "
		    "'-', starting with a letter or '_'",
		    name);
		return;
	}
	if (cJSON_GetObjectItemCaseSensitive(l->cfg.globals, name) != NULL) {
		op_config__problem(l, l->line, "[globals] %s: duplicate key", name);
		return;
	}
	/*
	 * Anything that is not JSON is a string. A parse that failed for lack of
	 * memory looks the same, but then the string's allocation fails too.
	 */
	cJSON *val = cJSON_ParseWithOpts(v, NULL, 1);
	if (val == NULL)
		val = cJSON_CreateString(v);
	if (val == NULL || !cJSON_AddItemToObject(l->cfg.globals, name, val)) {
		cJSON_Delete(val);
		l->nomem = true;
	}
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct load *l = user;
	(void)section; /* tracked by the reader, which also saw malformed headers */
	if (l->nomem)
		return 1;
	if (l->sec == SEC_SKIP)
		return 1;
	if (l->sec == SEC_NONE) {
		op_config__problem(
		    l, l->line, "%.64s: set outside a section, expected a [section] line above it",
		    name);
		return 1;
	}
	if (l->sec == SEC_BROKER) {
		op_config__broker_key(l, name, value);
		return 1;
	}
	const char *sec = op_config__sections[l->sec];
	if (l->sec == SEC_GLOBALS) {
		set_global(l, name, value);
		return 1;
	}
	for (size_t i = 0; i < N_KEYS; i++) {
		if (strcmp(keys[i].section, sec) != 0 || strcmp(keys[i].key, name) != 0)
			continue;
		if (l->seen[i]) {
			op_config__problem(l, l->line,
			                   "[%s] %s: duplicate key, first set on line %d", sec,
			                   name, l->seen[i]);
			return 1;
		}
		l->seen[i] = l->line;
		op_config__set_value(l, &l->cfg, sec, l->line, &keys[i], value);
		return 1;
	}
	op_config__unknown_key(l, sec, sec, keys, N_KEYS, name);
	return 1;
}

/* Checks a [section] header line s (n bytes, trimmed); sets l->sec. */
static void header(struct load *l, const char *s, size_t n)
{
	const char *close = memchr(s, ']', n);
	l->sec = SEC_SKIP;
	if (close == NULL) {
		op_config__problem(l, l->line,
		                   "'%.*s': section header without ']', expected [section]",
		                   (int)(n > 64 ? 64 : n), s);
		return;
	}
	const char *rest = close + 1, *end = s + n;
	while (rest < end && (*rest == ' ' || *rest == '\t'))
		rest++;
	if (rest < end && *rest != ';' && *rest != '#') {
		op_config__problem(l, l->line,
		                   "text after the section header, expected a comment or nothing");
		return;
	}
	const char *b = s + 1, *e = close;
	while (b < e && (*b == ' ' || *b == '\t'))
		b++;
	while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	char name[256];
	size_t len = (size_t)(e - b);
	if (len >= sizeof(name))
		len = sizeof(name) - 1;
	memcpy(name, b, len);
	name[len] = '\0';
	size_t wl = strcspn(name, " \t");
	if (wl == 6 && memcmp(name, "broker", 6) == 0) {
		const char *nm = name + wl;
		nm += strspn(nm, " \t");
		op_config__broker_header(l, nm);
		return;
	}
	int i = find_section(name);
	if (i < 0) {
		unknown_section(l, name);
		return;
	}
	l->sec = i;
}

/*
 * inih's line source. Hands inih one line at a time, trimmed, so that its
 * continuation-line rule never fires; lines inih would misread are reported
 * here and replaced by an empty line.
 */
static char *reader(char *str, int num, void *stream)
{
	struct load *l = stream;
	if (l->pos >= l->len)
		return NULL;
	const char *s = l->text + l->pos;
	size_t rem = l->len - l->pos;
	const char *nl = memchr(s, '\n', rem);
	size_t n = nl ? (size_t)(nl - s) : rem;
	l->pos += n + (nl ? 1 : 0);
	l->line++;
	str[0] = '\0';
	if (num < 4)
		return str;
	if (l->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
		s += 3;
		n -= 3;
	}
	while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	while (n && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	if (memchr(s, '\0', n) != NULL) {
		op_config__problem(l, l->line, "line holds a NUL byte, expected text");
		return str;
	}
	if (n > (size_t)num - 3) {
		op_config__problem(l, l->line, "line is %zu characters long, expected at most %d",
		                   n, num - 3);
		return str;
	}
	if (n == 0 || *s == ';' || *s == '#')
		return str;
	if (*s == '[') {
		header(l, s, n);
		if (l->sec == SEC_SKIP)
			return str;
	} else {
		/* inih splits at the first '=' or ':'. */
		size_t i = 0;
		while (i < n && s[i] != '=' && s[i] != ':')
			i++;
		if (i == n) {
			op_config__problem(l, l->line, "'%.*s': expected key = value",
			                   (int)(n > 64 ? 64 : n), s);
			return str;
		}
	}
	memcpy(str, s, n);
	str[n] = '\0';
	return str;
}

static int key_line(const struct load *l, const char *sec, const char *key)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		if (strcmp(keys[i].section, sec) == 0 && strcmp(keys[i].key, key) == 0)
			return l->seen[i];
	}
	return 0;
}

/* Reports path (the value of key in section label, set on line) if it cannot be read. */
void op_config__check_readable(struct load *l, int line, const char *label, const char *key,
                               const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		char eb[128];
		const char *es = strerror_r(errno, eb, sizeof(eb));
		op_config__problem(l, line, "[%s] %s: cannot read '%.200s': %s", label, key, path,
		                   es);
		return;
	}
	close(fd);
}

static bool is_set(const char *s)
{
	return s != NULL && *s;
}

/* [control]: with a url, TLS and every file it needs; without, nothing else. */
static void control_finish(struct load *l)
{
	struct op_config *c = &l->cfg;
	const struct {
		const char *key, *val;
	} need[] = {{"ca_file", c->control.ca_file},
	            {"cert_file", c->control.cert_file},
	            {"key_file", c->control.key_file},
	            {"trusted_keys", c->control.trusted_keys}};
	if (!is_set(c->control.url)) {
		for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
			if (is_set(need[i].val))
				op_config__problem(
				    l, key_line(l, "control", need[i].key),
				    "[control] %s: set without url, expected a url or "
				    "no %s",
				    need[i].key, need[i].key);
		}
		return;
	}
	char why[256];
	bool tls = false;
	int url_line = key_line(l, "control", "url");
	op_err rc = op_config__mqtt_uri(c->control.url, &tls, &c->control.uri, why, sizeof(why));
	if (rc == OP_ENOMEM) {
		l->nomem = true;
		return;
	}
	if (rc)
		op_config__problem(l, url_line, "[control] url: %s", why);
	else if (!tls)
		op_config__problem(l, url_line,
		                   "[control] url: '%.64s' is plain MQTT, expected mqtts://: the "
		                   "control link always uses TLS with a client certificate",
		                   c->control.url);
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		int line = key_line(l, "control", need[i].key);
		if (!is_set(need[i].val)) {
			op_config__problem(l, line ? line : url_line,
			                   "[control] %s: not set, expected it with url",
			                   need[i].key);
			continue;
		}
		if (strcmp(need[i].key, "trusted_keys") != 0) {
			op_config__check_readable(l, line, "control", need[i].key, need[i].val);
			continue;
		}
		/* Each key file: absolute and readable (parsed when the link starts). */
		char *list = op_strdup(need[i].val);
		if (list == NULL) {
			l->nomem = true;
			return;
		}
		char *save = NULL;
		for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			while (*t == ' ' || *t == '\t')
				t++;
			size_t n = strlen(t);
			while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
				t[--n] = '\0';
			if (t[0] != '/')
				op_config__problem(
				    l, line,
				    "[control] trusted_keys: \"%.200s\" is not an absolute "
				    "path, expected KEY.pub files like /etc/outpost/ops.key.pub",
				    t);
			else
				op_config__check_readable(l, line, "control", "trusted_keys", t);
		}
		op_free(list);
	}
	const char *p = c->control.topic_prefix;
	if (is_set(p) && (p[0] == '/' || p[strlen(p) - 1] == '/' || strpbrk(p, "+#") != NULL))
		op_config__problem(
		    l, key_line(l, "control", "topic_prefix"),
		    "[control] topic_prefix: \"%.64s\" is not a topic prefix, expected "
		    "levels like fleet/eu without a leading or trailing '/', '+' or '#'",
		    p);
	if (c->control.outbox_max_bytes > c->store.map_max / 2) {
		char a[48], b[48];
		op_config__fmt_bytes(c->control.outbox_max_bytes, a, sizeof(a));
		op_config__fmt_bytes(c->store.map_max, b, sizeof(b));
		int lo = key_line(l, "control", "outbox_max_bytes"),
		    lm = key_line(l, "store", "map_max");
		op_config__problem(l, lo > lm ? lo : lm,
		                   "[control] outbox_max_bytes: %s does not fit twice in [store] "
		                   "map_max (%s), expected at most half of it",
		                   a, b);
	}
	if (c->control.reconnect_min_ms > c->control.reconnect_max_ms)
		op_config__problem(l, key_line(l, "control", "reconnect_max"),
		                   "[control] reconnect_max: less than reconnect_min, expected at "
		                   "least reconnect_min");
}

/* Checks across keys, once every value is in. */
static void finish(struct load *l)
{
	struct op_config *c = &l->cfg;
	if (c->store.map_initial > c->store.map_max) {
		char a[48], b[48];
		int li = key_line(l, "store", "map_initial"), lm = key_line(l, "store", "map_max");
		op_config__fmt_bytes(c->store.map_initial, a, sizeof(a));
		op_config__fmt_bytes(c->store.map_max, b, sizeof(b));
		op_config__problem(
		    l, lm > li ? lm : li,
		    "[store] map_max: %s is less than map_initial (%s), expected at least "
		    "map_initial",
		    b, a);
	}
	bool cert = c->http.tls_cert && *c->http.tls_cert;
	bool key = c->http.tls_key && *c->http.tls_key;
	if (cert != key) {
		const char *set = cert ? "tls_cert" : "tls_key",
		           *unset = cert ? "tls_key" : "tls_cert";
		op_config__problem(l, key_line(l, "http", set),
		                   "[http] %s: set without %s, expected both or neither", set,
		                   unset);
	} else if (cert) {
		op_config__check_readable(l, key_line(l, "http", "tls_cert"), "http", "tls_cert",
		                          c->http.tls_cert);
		op_config__check_readable(l, key_line(l, "http", "tls_key"), "http", "tls_key",
		                          c->http.tls_key);
	}
	if (c->http.listen.host && c->admin.listen.host && c->http.listen.port != 0 &&
	    c->http.listen.port == c->admin.listen.port &&
	    strcmp(c->http.listen.host, c->admin.listen.host) == 0) {
		op_config__problem(
		    l, key_line(l, "admin", "listen"),
		    "[admin] listen: same address as [http] listen, expected another port");
	}
	char **dirs = NULL;
	size_t nd = 0;
	if (op_config_file_dirs(c, &dirs, &nd) != OP_OK) {
		l->nomem = true;
		return;
	}
	for (size_t i = 0; i < nd; i++) {
		if (dirs[i][0] != '/' || strstr(dirs[i], "/../") || strstr(dirs[i], "/./"))
			op_config__problem(l, key_line(l, "files", "dirs"),
			                   "[files] dirs: \"%s\" is not an absolute path, expected "
			                   "folders like /srv/exchange",
			                   dirs[i]);
	}
	op_config_file_dirs_free(dirs, nd);
	for (size_t i = 0; i < c->n_brokers && !l->nomem; i++)
		op_config__broker_finish(l, i);
	if (!l->nomem)
		control_finish(l);
	if (l->nomem)
		return;
	if (!c->agent.id || !*c->agent.id) {
		char host[256];
		if (gethostname(host, sizeof(host)) != 0 || !host[0]) {
			op_config__problem(
			    l, 0, "[agent] id: empty and the host name is unknown, expected an id");
			return;
		}
		host[sizeof(host) - 1] = '\0';
		char *dup = op_strdup(host);
		if (dup == NULL) {
			l->nomem = true;
			return;
		}
		op_free(c->agent.id);
		c->agent.id = dup;
	}
}

static op_err load_text(const char *text, size_t len, const char *name, struct op_config *out,
                        struct op_diag *d)
{
	struct load l;
	op_err e;
	memset(out, 0, sizeof(*out));
	memset(&l, 0, sizeof(l));
	l.d = d;
	l.name = name;
	l.text = text;
	l.len = len;
	l.sec = SEC_NONE;
	e = op_config_defaults(&l.cfg);
	if (e != OP_OK)
		return e;
	int rc = ini_parse_stream(reader, &l, handler, &l);
	if (rc > 0 && l.problems == 0) {
		/* Every malformed line inih knows of is caught by reader(). */
		op_config__problem(&l, rc, "cannot parse this line");
	} else if (rc < 0) {
		l.nomem = true;
	}
	if (!l.nomem)
		finish(&l);
	if (l.nomem) {
		e = OP_ENOMEM;
		goto out;
	}
	if (l.problems) {
		e = OP_ECONFIG;
		goto out;
	}
	op_free(l.bseen);
	*out = l.cfg;
	return OP_OK;
out:
	op_free(l.bseen);
	op_config_free(&l.cfg);
	return e;
}

op_err op_config_load_string(const char *text, const char *name, struct op_config *out,
                             struct op_diag *d)
{
	return load_text(text, strlen(text), name, out, d);
}

op_err op_config_load_file(const char *path, struct op_config *out, struct op_diag *d)
{
	struct op_buf b;
	char chunk[16384];
	char eb[128];
	op_err e = OP_OK;
	int fd = -1;
	struct stat st;

	memset(out, 0, sizeof(*out));
	op_buf_init(&b, OP_CONFIG_MAX_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) != 0) {
		int err = errno;
		op_diag_add_at(d, path, "cannot open the config file: %s",
		               strerror_r(err, eb, sizeof(eb)));
		e = op_err_from_errno(err);
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		op_diag_add_at(d, path, "is a folder, expected a config file");
		e = OP_EINVAL;
		goto out;
	}
	if (st.st_size > OP_CONFIG_MAX_FILE) {
		op_diag_add_at(d, path, "file is %lld bytes, expected at most %d (1 MiB)",
		               (long long)st.st_size, OP_CONFIG_MAX_FILE);
		e = OP_ELIMIT;
		goto out;
	}
	for (;;) {
		ssize_t got = read(fd, chunk, sizeof(chunk));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int err = errno;
			op_diag_add_at(d, path, "cannot read the config file: %s",
			               strerror_r(err, eb, sizeof(eb)));
			e = op_err_from_errno(err);
			goto out;
		}
		if (got == 0)
			break;
		e = op_buf_add(&b, chunk, (size_t)got);
		if (e == OP_ELIMIT) {
			op_diag_add_at(d, path, "file is larger than %d bytes (1 MiB)",
			               OP_CONFIG_MAX_FILE);
			goto out;
		}
		if (e != OP_OK)
			goto out;
	}
	e = load_text(b.len ? op_buf_str(&b) : "", b.len, path, out, d);
out:
	if (fd >= 0)
		close(fd);
	op_buf_fini(&b);
	return e;
}

op_err op_config_defaults(struct op_config *c)
{
	struct load l;
	struct op_diag d;
	memset(c, 0, sizeof(*c));
	memset(&l, 0, sizeof(l));
	op_diag_init(&d);
	l.d = &d;
	l.name = "(defaults)";
	l.cfg.globals = cJSON_CreateObject();
	if (l.cfg.globals == NULL)
		return OP_ENOMEM;
	for (size_t i = 0; i < N_KEYS && !l.nomem; i++)
		op_config__set_value(&l, &l.cfg, keys[i].section, 0, &keys[i], keys[i].def);
	/* The defaults are code: a problem with one is a bug, caught by the tests. */
	op_err e = l.nomem ? OP_ENOMEM : l.problems ? OP_EINTERNAL : OP_OK;
	op_diag_fini(&d);
	if (e != OP_OK) {
		op_config_free(&l.cfg);
		return e;
	}
	*c = l.cfg;
	return OP_OK;
}

/* Frees what the keys of table t hold in the struct at base. */
void op_config__free_values(void *base, const struct op_config_key *t, size_t nt)
{
	for (size_t i = 0; i < nt; i++) {
		void *p = (char *)base + t[i].off;
		if (t[i].type == OP_CONFIG_STRING || t[i].type == OP_CONFIG_PATH)
			free_str(&t[i], *(char **)p);
		else if (t[i].type == OP_CONFIG_LISTEN)
			op_free(((struct op_config_listen *)p)->host);
	}
}

void op_config_free(struct op_config *c)
{
	op_config__free_values(c, keys, N_KEYS);
	op_config__broker_free(c);
	op_free(c->control.uri);
	cJSON_Delete(c->globals);
	memset(c, 0, sizeof(*c));
}

/* ---- printing ---- */

static bool sensitive_name(const char *name)
{
	static const char *const words[] = {"password", "passwd",     "secret", "token",
	                                    "key",      "credential", "private"};
	char low[128];
	size_t i;
	for (i = 0; i < sizeof(low) - 1 && name[i]; i++)
		low[i] = (char)tolower((unsigned char)name[i]);
	low[i] = '\0';
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (strstr(low, words[i]))
			return true;
	}
	return false;
}

/*
 * The value of key k in the struct at base (struct op_config, or struct
 * op_config_broker for broker keys) as config text: borrowed from base or
 * written into out.
 */
static const char *value_text(const void *base, const struct op_config_key *k, char *out, size_t n)
{
	const void *p = (const char *)base + k->off;
	switch (k->type) {
	case OP_CONFIG_STRING:
	case OP_CONFIG_PATH: {
		const char *s = *(char *const *)p;
		return s ? s : "";
	}
	case OP_CONFIG_INT:
		snprintf(out, n, "%lld", *(const long long *)p);
		return out;
	case OP_CONFIG_BYTES:
		op_config__fmt_bytes(*(const uint64_t *)p, out, n);
		return out;
	case OP_CONFIG_DURATION:
		fmt_duration(*(const uint64_t *)p, out, n);
		return out;
	case OP_CONFIG_BOOL:
		return *(const bool *)p ? "true" : "false";
	case OP_CONFIG_ENUM:
		return k->choices[*(const int *)p];
	case OP_CONFIG_LISTEN: {
		const struct op_config_listen *a = p;
		if (a->host == NULL)
			return "";
		if (strchr(a->host, ':'))
			snprintf(out, n, "[%s]:%u", a->host, a->port);
		else
			snprintf(out, n, "%s:%u", a->host, a->port);
		return out;
	}
	}
	return "";
}

void op_config__put_kv(FILE *f, const char *prefix, const char *key, const char *val)
{
	if (*val)
		fprintf(f, "%s%s = %s\n", prefix, key, val);
	else
		fprintf(f, "%s%s =\n", prefix, key);
}

/* Prints the keys of table t in section sec with their values in base. */
void op_config__put_values(FILE *f, const void *base, const struct op_config_key *t, size_t nt,
                           const char *sec)
{
	char buf[600];
	for (size_t i = 0; i < nt; i++) {
		if (strcmp(t[i].section, sec) != 0)
			continue;
		const char *v = value_text(base, &t[i], buf, sizeof(buf));
		if ((t[i].flags & OP_CONFIG_SECRET) && *v)
			v = "***";
		op_config__put_kv(f, "", t[i].key, v);
	}
}

op_err op_config_dump(const struct op_config *c, FILE *f)
{
	for (size_t s = 0; s < SEC_GLOBALS; s++) {
		fprintf(f, "%s[%s]\n", s ? "\n" : "", op_config__sections[s]);
		op_config__put_values(f, c, keys, N_KEYS, op_config__sections[s]);
	}
	op_config__broker_dump(c, f);
	fprintf(f, "\n[%s]\n", op_config__sections[SEC_GLOBALS]);
	const cJSON *g;
	cJSON_ArrayForEach (g, c->globals) {
		if (sensitive_name(g->string)) {
			op_config__put_kv(f, "", g->string, "***");
			continue;
		}
		char *text = op_json_print(g, OP_JSON_COMPACT);
		if (text == NULL)
			return OP_ENOMEM;
		op_config__put_kv(f, "", g->string, text);
		op_free(text);
	}
	return ferror(f) ? OP_EIO : OP_OK;
}

/* ---- comparing ---- */

/* Appends "[label] what" to b, after ", " when names came before; counts it in *n. */
static op_err diff_name(struct op_buf *b, size_t *n, const char *label, const char *what)
{
	op_err e = op_buf_addf(b, "%s[%s] %s", *n ? ", " : "", label, what);
	if (e == OP_OK)
		(*n)++;
	return e;
}

/*
 * Names the keys of table t whose values differ between the structs at a and
 * b (both bound by t); label is the section as named ("http", "broker
 * plant"), NULL for each key's own section.
 */
static op_err diff_values(struct op_buf *out, size_t *n, const void *a, const void *b,
                          const struct op_config_key *t, size_t nt, const char *label)
{
	char va[600], vb[600];
	op_err e = OP_OK;
	for (size_t i = 0; i < nt && e == OP_OK; i++) {
		if ((t[i].flags & OP_CONFIG_RELOAD) ||
		    strcmp(value_text(a, &t[i], va, sizeof(va)),
		           value_text(b, &t[i], vb, sizeof(vb))) == 0)
			continue;
		e = diff_name(out, n, label ? label : t[i].section, t[i].key);
	}
	return e;
}

op_err op_config_diff(const struct op_config *a, const struct op_config *b, char **out, size_t *n)
{
	struct op_buf buf;
	size_t count = 0, nbk = 0;
	char label[OP_CONFIG_BROKER_NAME_MAX + sizeof("broker ")];
	const struct op_config_key *bk = op_config_broker_keys(&nbk);
	*out = NULL;
	*n = 0;
	/* Bounded by the tables and OP_CONFIG_MAX_BROKERS: far below the cap. */
	op_buf_init(&buf, OP_CONFIG_MAX_FILE);
	op_err e = diff_values(&buf, &count, a, b, keys, N_KEYS, NULL);
	for (size_t i = 0; i < a->n_brokers && e == OP_OK; i++) {
		const struct op_config_broker *ba = &a->brokers[i];
		const struct op_config_broker *bb = op_config_broker(b, ba->name);
		snprintf(label, sizeof(label), "broker %s", ba->name);
		e = bb ? diff_values(&buf, &count, ba, bb, bk, nbk, label)
		       : diff_name(&buf, &count, label, "(removed)");
	}
	for (size_t i = 0; i < b->n_brokers && e == OP_OK; i++) {
		if (op_config_broker(a, b->brokers[i].name) != NULL)
			continue;
		snprintf(label, sizeof(label), "broker %s", b->brokers[i].name);
		e = diff_name(&buf, &count, label, "(added)");
	}
	if (e != OP_OK || count == 0) {
		op_buf_fini(&buf);
		return e == OP_OK ? OP_OK : OP_ENOMEM;
	}
	*out = op_buf_take(&buf);
	if (*out == NULL)
		return OP_ENOMEM;
	*n = count;
	return OP_OK;
}

void op_config_service_credentials(void)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	struct stat st;
	if ((dir == NULL || *dir == '\0') && stat(OP_CONFIG_SERVICE_CREDENTIALS, &st) == 0 &&
	    S_ISDIR(st.st_mode))
		setenv("CREDENTIALS_DIRECTORY", OP_CONFIG_SERVICE_CREDENTIALS, 1);
}

void op_config_accounts_paths(const struct op_config *c, char *dir, size_t dirlen, char *key,
                              size_t keylen)
{
	if (c->accounts.dir != NULL && c->accounts.dir[0] != '\0')
		snprintf(dir, dirlen, "%s", c->accounts.dir);
	else
		snprintf(dir, dirlen, "%s/accounts", c->agent.data_dir);
	if (c->accounts.key_file != NULL && c->accounts.key_file[0] != '\0') {
		snprintf(key, keylen, "%s", c->accounts.key_file);
		return;
	}
	const char *creds = getenv("CREDENTIALS_DIRECTORY");
	if (creds != NULL && creds[0] != '\0') {
		snprintf(key, keylen, "%s/accounts.key", creds);
		if (access(key, F_OK) == 0)
			return;
	}
	snprintf(key, keylen, "%s", OP_CONFIG_ACCOUNTS_KEY);
}

op_err op_config_file_dirs(const struct op_config *c, char ***dirs, size_t *n)
{
	*dirs = NULL;
	*n = 0;
	const char *s = c->files.dirs ? c->files.dirs : "";
	for (;;) {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		if (*s == '\0')
			return OP_OK;
		size_t len = strcspn(s, ",");
		size_t k = len;
		while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t'))
			k--;
		/* A trailing slash names the same folder. */
		while (k > 1 && s[k - 1] == '/')
			k--;
		char **v = op_realloc(*dirs, (*n + 1) * sizeof(*v));
		if (v == NULL || (v[*n] = op_strndup(s, k)) == NULL) {
			if (v)
				*dirs = v;
			op_config_file_dirs_free(*dirs, *n);
			*dirs = NULL;
			*n = 0;
			return OP_ENOMEM;
		}
		*dirs = v;
		(*n)++;
		s += len;
	}
}

void op_config_file_dirs_free(char **dirs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		op_free(dirs[i]);
	op_free(dirs);
}
