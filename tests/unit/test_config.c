/*
 * Unit tests of the daemon config (agent/daemon/config.c): defaults, every
 * value type, problems with their lines, globals, TLS pairing, [broker NAME]
 * sections, files given as systemd credentials, file reading, out-of-memory,
 * and that packaging/outpost.conf, the key tables in docs/configuration.md
 * and the man page packaging/man/outpost.conf.5.scd are exactly what the key
 * table generates.
 *
 * After changing the table, regenerate the three files with
 *   OP_CONFIG_REGEN=1 build/debug/tests/unit/test_config
 * (run from the repository root, as tests/run.sh does).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/core/buf.h"
#include "agent/core/diag.h"
#include "agent/core/log.h"
#include "agent/daemon/config.h"
#include "agent/daemon/config_int.h" /* op_config__man_text */
#include "tests/unit/test.h"

#define SAMPLE_PATH "packaging/outpost.conf"
#define DOC_PATH    "docs/configuration.md"
#define MAN_PATH    "packaging/man/outpost.conf.5.scd"
#define DOC_BEGIN   "<!-- BEGIN GENERATED KEYS"
#define DOC_END     "<!-- END GENERATED KEYS -->"

static void load_ok(const char *text, struct op_config *c)
{
	struct op_diag d;
	op_diag_init(&d);
	op_err e = op_config_load_string(text, "t.conf", c, &d);
	if (e != OP_OK) {
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "%s: %s\n", d.v[i].path, d.v[i].msg);
	}
	ck_assert_int_eq(e, OP_OK);
	ck_assert_uint_eq(op_diag_count(&d), 0);
	op_diag_fini(&d);
}

/* Loads text expecting failure; returns every problem as "path: msg\n" lines. */
static char *load_bad(const char *text)
{
	struct op_diag d;
	struct op_config c;
	struct op_buf b;
	op_diag_init(&d);
	memset(&c, 0xa5, sizeof(c));
	op_err e = op_config_load_string(text, "t.conf", &c, &d);
	ck_assert_int_eq(e, OP_ECONFIG);
	/* Refused whole: nothing handed out. */
	ck_assert_ptr_null(c.agent.data_dir);
	ck_assert_ptr_null(c.globals);
	ck_assert_ptr_null(c.brokers);
	ck_assert_uint_eq(c.n_brokers, 0);
	ck_assert_uint_gt(d.n, 0);
	op_buf_init(&b, 1 << 20);
	for (size_t i = 0; i < d.n; i++)
		ck_assert_int_eq(op_buf_addf(&b, "%s: %s\n", d.v[i].path, d.v[i].msg), OP_OK);
	op_diag_fini(&d);
	return op_buf_take(&b);
}

#define ck_bad(text, want)                    \
	do {                                  \
		char *got_ = load_bad(text);  \
		ck_assert_str_eq(got_, want); \
		op_free(got_);                \
	} while (0)

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s (tests run from the repository root)", path);
	struct op_buf b;
	char chunk[4096];
	size_t n;
	op_buf_init(&b, 1 << 22);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		ck_assert_int_eq(op_buf_add(&b, chunk, n), OP_OK);
	fclose(f);
	return op_buf_take(&b);
}

typedef op_err (*gen_fn)(FILE *f);

static char *generate(gen_fn fn)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fn(f), OP_OK);
	fclose(f);
	char *dup = op_strdup(text);
	free(text);
	return dup;
}

static char *dump(const struct op_config *c)
{
	op_err (*fn)(const struct op_config *, FILE *) = op_config_dump;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fn(c, f), OP_OK);
	fclose(f);
	char *dup = op_strdup(text);
	free(text);
	return dup;
}

static void write_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

START_TEST(defaults)
{
	struct op_config c;
	ck_assert_int_eq(op_config_defaults(&c), OP_OK);
	ck_assert_str_eq(c.agent.id, "");
	ck_assert_str_eq(c.agent.data_dir, "/var/lib/outpost");
	ck_assert_str_eq(c.agent.pipelines_dir, "/etc/outpost/pipelines.d");
	ck_assert_int_eq(c.agent.workers, 4);
	ck_assert_int_eq(c.agent.log_level, OP_LOG_INFO);
	ck_assert_int_eq(c.agent.log_format, OP_CONFIG_LOG_TEXT);
	ck_assert_uint_eq(c.agent.shutdown_timeout_ms, 10000);
	ck_assert_uint_eq(c.store.map_initial, 64ull << 20);
	ck_assert_uint_eq(c.store.map_max, 4ull << 30);
	ck_assert_int_eq(c.store.exec_retention, 10000);
	ck_assert_int_eq(c.store.queue_max_events, 100000);
	ck_assert_uint_eq(c.store.queue_max_bytes, 256ull << 20);
	ck_assert_str_eq(c.http.listen.host, "127.0.0.1");
	ck_assert_uint_eq(c.http.listen.port, 8080);
	ck_assert_uint_eq(c.http.max_body, 5ull << 20);
	ck_assert_uint_eq(c.http.timeout_ms, 30000);
	ck_assert_int_eq(c.http.threads, 0);
	ck_assert_int_eq(c.http.connection_limit, 1000);
	ck_assert_int_eq(c.http.per_ip_limit, 0);
	ck_assert_uint_eq(c.http.client_timeout_ms, 10000);
	ck_assert_str_eq(c.http.tls_cert, "");
	ck_assert_str_eq(c.http.tls_key, "");
	ck_assert_str_eq(c.admin.listen.host, "127.0.0.1");
	ck_assert_uint_eq(c.admin.listen.port, 9090);
	ck_assert(cJSON_IsObject(c.globals));
	ck_assert_ptr_null(c.globals->child);
	ck_assert_ptr_null(c.brokers);
	ck_assert_uint_eq(c.n_brokers, 0);
	ck_assert_ptr_null(op_config_broker(&c, "plant"));
	op_config_free(&c);
	ck_assert_ptr_null(c.agent.data_dir);
	op_config_free(&c); /* twice is harmless */

	/* An empty file is the defaults, with the host name as id. */
	char host[256] = "";
	ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
	load_ok("", &c);
	ck_assert_str_eq(c.agent.id, host);
	ck_assert_int_eq(c.agent.workers, 4);
	op_config_free(&c);

	/* Every default sits inside its own bounds (else defaults() would fail). */
	size_t n;
	const struct op_config_key *k = op_config_keys(&n);
	ck_assert_uint_eq(n, 46);
	for (size_t i = 0; i < n; i++) {
		ck_assert_ptr_nonnull(k[i].help);
		ck_assert_ptr_null(strchr(k[i].help, '\n'));
		ck_assert_ptr_null(strchr(k[i].help, '|'));
		ck_assert(!(k[i].flags & OP_CONFIG_REQUIRED));
	}
	k = op_config_broker_keys(&n);
	ck_assert_uint_eq(n, 10);
	for (size_t i = 0; i < n; i++) {
		ck_assert_str_eq(k[i].section, "broker");
		ck_assert_ptr_nonnull(k[i].help);
		ck_assert_ptr_null(strchr(k[i].help, '\n'));
		ck_assert_ptr_null(strchr(k[i].help, '|'));
		/* A required key has an example for the sample, and no default. */
		ck_assert((k[i].flags & OP_CONFIG_REQUIRED) ? k[i].example && !*k[i].def : 1);
	}
}
END_TEST

START_TEST(value_types)
{
	struct op_config c;
	load_ok("[agent]\n"
	        "id = edge-01\n"
	        "data_dir = build/run/data\n"
	        "pipelines_dir = /srv/p\n"
	        "workers = 256\n"
	        "log_level = debug\n"
	        "log_format = json\n"
	        "shutdown_timeout = 1m30s\n"
	        "[store]\n"
	        "map_initial = 1GiB\n"
	        "map_max = 2 tb\n"
	        "exec_retention = 0\n"
	        "queue_max_events = 1\n"
	        "queue_max_bytes = 1048576\n"
	        "[http]\n"
	        "listen = [::1]:0\n"
	        "max_body = 64k\n"
	        "timeout = 250ms\n"
	        "threads = 1\n"
	        "connection_limit = 1000000\n"
	        "per_ip_limit = 10\n"
	        "client_timeout = 1h\n"
	        "[admin]\n"
	        "listen =\n",
	        &c);
	ck_assert_str_eq(c.agent.id, "edge-01");
	ck_assert_str_eq(c.agent.data_dir, "build/run/data");
	ck_assert_str_eq(c.agent.pipelines_dir, "/srv/p");
	ck_assert_int_eq(c.agent.workers, 256);
	ck_assert_int_eq(c.agent.log_level, OP_LOG_DEBUG);
	ck_assert_int_eq(c.agent.log_format, OP_CONFIG_LOG_JSON);
	ck_assert_uint_eq(c.agent.shutdown_timeout_ms, 90000);
	ck_assert_uint_eq(c.store.map_initial, 1ull << 30);
	ck_assert_uint_eq(c.store.map_max, 2ull << 40);
	ck_assert_int_eq(c.store.exec_retention, 0);
	ck_assert_int_eq(c.store.queue_max_events, 1);
	ck_assert_uint_eq(c.store.queue_max_bytes, 1ull << 20);
	ck_assert_str_eq(c.http.listen.host, "::1");
	ck_assert_uint_eq(c.http.listen.port, 0);
	ck_assert_uint_eq(c.http.max_body, 64 * 1024);
	ck_assert_uint_eq(c.http.timeout_ms, 250);
	ck_assert_int_eq(c.http.threads, 1);
	ck_assert_int_eq(c.http.connection_limit, 1000000);
	ck_assert_int_eq(c.http.per_ip_limit, 10);
	ck_assert_uint_eq(c.http.client_timeout_ms, 3600000);
	ck_assert_ptr_null(c.admin.listen.host);
	ck_assert_uint_eq(c.admin.listen.port, 0);
	op_config_free(&c);

	load_ok("[http]\nlisten = 127.0.0.2:65535\n[admin]\nlisten = 0.0.0.0:9\n", &c);
	ck_assert_str_eq(c.http.listen.host, "127.0.0.2");
	ck_assert_uint_eq(c.http.listen.port, 65535);
	ck_assert_str_eq(c.admin.listen.host, "0.0.0.0");
	ck_assert_uint_eq(c.admin.listen.port, 9);
	op_config_free(&c);
}
END_TEST

START_TEST(unit_parsers)
{
	uint64_t v;
	bool b;
	struct {
		const char *s;
		uint64_t want;
	} sizes[] = {{"0", 0},
	             {"512", 512},
	             {"512B", 512},
	             {"5MB", 5ull << 20},
	             {"5mb", 5ull << 20},
	             {"5 MiB", 5ull << 20},
	             {"1GiB", 1ull << 30},
	             {"3k", 3072},
	             {"2TB", 2ull << 40},
	             {"16777215TiB", 16777215ull << 40}};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		ck_assert_msg(op_config_parse_bytes(sizes[i].s, &v), "%s", sizes[i].s);
		ck_assert_uint_eq(v, sizes[i].want);
	}
	const char *bad_sizes[] = {
	    "",  "MB", "-1", "1.5GB", "5XB", "5 M B", "5MBs", "18446744073709551616", "16777216TiB",
	    " 5"};
	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++)
		ck_assert_msg(!op_config_parse_bytes(bad_sizes[i], &v), "%s", bad_sizes[i]);

	struct {
		const char *s;
		uint64_t want;
	} durs[] = {{"0", 0},       {"0s", 0},       {"250ms", 250},   {"30s", 30000},
	            {"5m", 300000}, {"2h", 7200000}, {"1m30s", 90000}, {"1h1m1s1ms", 3661001}};
	for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
		ck_assert_msg(op_config_parse_duration(durs[i].s, &v), "%s", durs[i].s);
		ck_assert_uint_eq(v, durs[i].want);
	}
	const char *bad_durs[] = {"",    "10",   "s",    "5d",  "1.5s",
	                          "-1s", "1m30", "10 s", "30S", "99999999999999999999h"};
	for (size_t i = 0; i < sizeof(bad_durs) / sizeof(bad_durs[0]); i++)
		ck_assert_msg(!op_config_parse_duration(bad_durs[i], &v), "%s", bad_durs[i]);

	const char *yes[] = {"true", "YES", "on", "1"}, *no[] = {"false", "No", "OFF", "0"};
	for (size_t i = 0; i < 4; i++) {
		b = false;
		ck_assert(op_config_parse_bool(yes[i], &b) && b);
		b = true;
		ck_assert(op_config_parse_bool(no[i], &b) && !b);
	}
	ck_assert(!op_config_parse_bool("", &b));
	ck_assert(!op_config_parse_bool("2", &b));
	ck_assert(!op_config_parse_bool("truee", &b));
}
END_TEST

START_TEST(bad_values_and_bounds)
{
	ck_bad("[agent]\n"
	       "workers = 0\n"
	       "workers2 = 1\n"
	       "log_level = verbose\n"
	       "shutdown_timeout = 10\n"
	       "data_dir =\n"
	       "[http]\n"
	       "max_body = 512\n"
	       "timeout = 50ms\n"
	       "threads = four\n"
	       "connection_limit = 1000001\n"
	       "listen = 127.0.0.1\n"
	       "[admin]\n"
	       "listen = [::1]:70000\n"
	       "[store]\n"
	       "map_max = 5XB\n",
	       "t.conf:2: [agent] workers: 0 is out of range, expected 1 to 256\n"
	       "t.conf:3: [agent] workers2: unknown key, did you mean 'workers'?\n"
	       "t.conf:4: [agent] log_level: 'verbose' is not allowed, expected one of: error, "
	       "warn, info, debug\n"
	       "t.conf:5: [agent] shutdown_timeout: '10' is not a duration, expected a whole "
	       "number with a unit ms, s, m or h, e.g. 30s or 1m30s\n"
	       "t.conf:6: [agent] data_dir: empty, expected a path\n"
	       "t.conf:8: [http] max_body: 512 is out of range, expected 1KB to 1GB\n"
	       "t.conf:9: [http] timeout: 50ms is out of range, expected 100ms to 1h\n"
	       "t.conf:10: [http] threads: 'four' is not a whole number, expected 0 to 256\n"
	       "t.conf:11: [http] connection_limit: 1000001 is out of range, expected 1 to "
	       "1000000\n"
	       "t.conf:12: [http] listen: '127.0.0.1' is not an address, expected IPv4:port, "
	       "[IPv6]:port (port 0 to 65535; a numeric address such as 127.0.0.1 or [::1]), or "
	       "empty for off\n"
	       "t.conf:14: [admin] listen: '[::1]:70000' is not an address, expected IPv4:port, "
	       "[IPv6]:port (port 0 to 65535; a numeric address such as 127.0.0.1 or [::1]), or "
	       "empty for off\n"
	       "t.conf:16: [store] map_max: '5XB' is not a size, expected a whole number with an "
	       "optional unit B, KB, MB, GB or TB (1 KB = 1024 bytes), e.g. 64MB\n");
	ck_bad("[store]\nmap_max = 17TB\nexec_retention = -1\n",
	       "t.conf:2: [store] map_max: 17TB is out of range, expected 1MB to 16TB\n"
	       "t.conf:3: [store] exec_retention: -1 is out of range, expected 0 to 100000000\n");
	ck_bad("[agent]\nid = a\tb\n",
	       "t.conf:2: [agent] id: 'a\tb' is not valid, expected printable text shorter than "
	       "4096 bytes\n");
	ck_bad("[http]\nlisten = localhost:80\n[admin]\nlisten = [::1]8080\n",
	       "t.conf:2: [http] listen: 'localhost:80' is not an address, expected IPv4:port, "
	       "[IPv6]:port (port 0 to 65535; a numeric address such as 127.0.0.1 or [::1]), or "
	       "empty for off\n"
	       "t.conf:4: [admin] listen: '[::1]8080' is not an address, expected IPv4:port, "
	       "[IPv6]:port (port 0 to 65535; a numeric address such as 127.0.0.1 or [::1]), or "
	       "empty for off\n");
}
END_TEST

START_TEST(structure_problems_with_lines)
{
	ck_bad("# comment\n"
	       "workers = 2\n"
	       "[agnet]\n"
	       "workers = 3\n"
	       "[agent]\n"
	       "workers = 2\n"
	       "log_level = warn\n"
	       "workers = 3\n"
	       "no value here\n"
	       "[http\n"
	       "max_body = 1MB\n"
	       "[http] junk\n"
	       "[frobnicate]\n"
	       "[http]\n"
	       "bogus = 1\n",
	       "t.conf:2: workers: set outside a section, expected a [section] line above it\n"
	       "t.conf:3: [agnet]: unknown section, did you mean [agent]?\n"
	       "t.conf:8: [agent] workers: duplicate key, first set on line 6\n"
	       "t.conf:9: 'no value here': expected key = value\n"
	       "t.conf:10: '[http': section header without ']', expected [section]\n"
	       "t.conf:12: text after the section header, expected a comment or nothing\n"
	       "t.conf:13: [frobnicate]: unknown section, expected one of [agent], [store], "
	       "[http], [admin], [accounts], [broker NAME], [globals]\n"
	       "t.conf:15: [http] bogus: unknown key, expected one of: listen, max_body, timeout, "
	       "threads, sync_threads, connection_limit, per_ip_limit, client_timeout, "
	       "header_timeout, "
	       "body_timeout, tls_cert, tls_key\n");

	/* A line longer than inih's buffer is refused, not split in two. */
	char text[400];
	snprintf(text, sizeof(text), "[agent]\ndata_dir = /%0250d\nworkers = 0\n", 0);
	ck_bad(text, "t.conf:2: line is 262 characters long, expected at most 197\n"
	             "t.conf:3: [agent] workers: 0 is out of range, expected 1 to 256\n");

	/* A NUL byte inside the file (only load_file can see one). */
	const char nul[] = "[agent]\nworkers = 2\0\nworkers = 3\n";
	char path[] = "/tmp/op-config-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	write_file(path, nul, sizeof(nul) - 1);
	struct op_config c;
	struct op_diag d;
	op_diag_init(&d);
	ck_assert_int_eq(op_config_load_file(path, &c, &d), OP_ECONFIG);
	ck_assert_uint_eq(d.n, 1);
	ck_assert_str_eq(d.v[0].msg, "line holds a NUL byte, expected text");
	char want[64];
	snprintf(want, sizeof(want), "%s:2", path);
	ck_assert_str_eq(d.v[0].path, want);
	op_diag_fini(&d);
	unlink(path);
}
END_TEST

START_TEST(syntax_accepted)
{
	struct op_config c;
	/* BOM, CRLF, indentation, inline comments, ':' separator, spaces in headers. */
	load_ok("\xEF\xBB\xBF; leading comment\r\n"
	        "[ agent ]   ; the agent\r\n"
	        "    workers = 8 ; eight\r\n"
	        "\tlog_level: error\r\n"
	        "  # indented comment\n"
	        "[http]\n"
	        "  listen = 127.0.0.1:18080\n"
	        "  timeout = 5s\n",
	        &c);
	ck_assert_int_eq(c.agent.workers, 8);
	ck_assert_int_eq(c.agent.log_level, OP_LOG_ERROR);
	ck_assert_str_eq(c.http.listen.host, "127.0.0.1");
	ck_assert_uint_eq(c.http.listen.port, 18080);
	ck_assert_uint_eq(c.http.timeout_ms, 5000);
	op_config_free(&c);

	/* Sections may repeat; keys still may not. */
	load_ok("[agent]\nworkers = 2\n[http]\nthreads = 2\n[agent]\nlog_level = warn\n", &c);
	ck_assert_int_eq(c.agent.workers, 2);
	ck_assert_int_eq(c.agent.log_level, OP_LOG_WARN);
	op_config_free(&c);
	ck_bad("[agent]\nworkers = 2\n[http]\n[agent]\nworkers = 2\n",
	       "t.conf:5: [agent] workers: duplicate key, first set on line 2\n");
}
END_TEST

START_TEST(globals)
{
	struct op_config c;
	load_ok("[globals]\n"
	        "region = eu-west\n"
	        "rate = 0.25\n"
	        "big = 42\n"
	        "on = true\n"
	        "list = [1, \"a\"]\n"
	        "quoted = \"hello world\"\n"
	        "obj = {\"k\": null}\n"
	        "empty =\n"
	        "api_token = s3cr3t\n",
	        &c);
	ck_assert_json_text(c.globals, "{\"region\": \"eu-west\", \"rate\": 0.25, \"big\": 42, "
	                               "\"on\": true, \"list\": [1, \"a\"], "
	                               "\"quoted\": \"hello world\", \"obj\": {\"k\": null}, "
	                               "\"empty\": \"\", \"api_token\": \"s3cr3t\"}");
	char *text = dump(&c);
	ck_assert_ptr_nonnull(strstr(text, "\n[globals]\nregion = \"eu-west\"\nrate = 0.25\n"));
	ck_assert_ptr_nonnull(strstr(text, "\napi_token = ***\n"));
	ck_assert_ptr_null(strstr(text, "s3cr3t"));
	op_free(text);
	op_config_free(&c);

	ck_bad("[globals]\na = 1\n2b = 1\na = 2\nwith.dot = 3\n",
	       "t.conf:3: [globals] 2b: not a valid name, expected letters, digits, '_' and '-', "
	       "starting with a letter or '_'\n"
	       "t.conf:4: [globals] a: duplicate key\n"
	       "t.conf:5: [globals] with.dot: not a valid name, expected letters, digits, '_' and "
	       "'-', starting with a letter or '_'\n");
}
END_TEST

START_TEST(control_section)
{
	ck_bad("[control]\nurl = mqtt://cp.example:1883\nca_file = /nonexistent/ca.pem\n"
	       "cert_file = /nonexistent/c.pem\nkey_file = /nonexistent/k.pem\n"
	       "trusted_keys = ops.pub, /nonexistent/b.pub\ntopic_prefix = /eu/\n"
	       "reconnect_min = 2m\nreconnect_max = 1m\n",
	       "t.conf:2: [control] url: 'mqtt://cp.example:1883' is plain MQTT, expected "
	       "mqtts://: the control link always uses TLS with a client certificate\n"
	       "t.conf:3: [control] ca_file: cannot read '/nonexistent/ca.pem': No such file or "
	       "directory\n"
	       "t.conf:4: [control] cert_file: cannot read '/nonexistent/c.pem': No such file or "
	       "directory\n"
	       "t.conf:5: [control] key_file: cannot read '/nonexistent/k.pem': No such file or "
	       "directory\n"
	       "t.conf:6: [control] trusted_keys: \"ops.pub\" is not an absolute path, expected "
	       "KEY.pub files like /etc/outpost/ops.key.pub\n"
	       "t.conf:6: [control] trusted_keys: cannot read '/nonexistent/b.pub': No such file "
	       "or directory\n"
	       "t.conf:7: [control] topic_prefix: \"/eu/\" is not a topic prefix, expected levels "
	       "like fleet/eu without a leading or trailing '/', '+' or '#'\n"
	       "t.conf:9: [control] reconnect_max: less than reconnect_min, expected at least "
	       "reconnect_min\n");
	ck_bad("[control]\nurl = mqtts://cp.example\n",
	       "t.conf:2: [control] ca_file: not set, expected it with url\n"
	       "t.conf:2: [control] cert_file: not set, expected it with url\n"
	       "t.conf:2: [control] key_file: not set, expected it with url\n"
	       "t.conf:2: [control] trusted_keys: not set, expected it with url\n");
	ck_bad("[control]\n\ncert_file = /etc/outpost/agent.pem\n",
	       "t.conf:3: [control] cert_file: set without url, expected a url or no "
	       "cert_file\n");
	ck_bad("[control]\nurl = https://cp.example\n",
	       "t.conf:2: [control] url: 'https://cp.example' has scheme 'https', expected "
	       "mqtt:// or mqtts://\n"
	       "t.conf:2: [control] ca_file: not set, expected it with url\n"
	       "t.conf:2: [control] cert_file: not set, expected it with url\n"
	       "t.conf:2: [control] key_file: not set, expected it with url\n"
	       "t.conf:2: [control] trusted_keys: not set, expected it with url\n");

	char f[] = "/tmp/op-ctl-XXXXXX";
	int fd = mkstemp(f);
	ck_assert(fd >= 0);
	close(fd);
	char text[512];
	snprintf(text, sizeof(text),
	         "[control]\nurl = mqtts://[fd00::1]:8884\nca_file = %s\ncert_file = %s\n"
	         "key_file = %s\ntrusted_keys = %s , %s\ngroup = plants\ntopic_prefix = eu/west\n",
	         f, f, f, f, f);
	struct op_config c;
	load_ok(text, &c);
	ck_assert_str_eq(c.control.uri, "ssl://[fd00::1]:8884");
	ck_assert_str_eq(c.control.group, "plants");
	ck_assert_uint_eq(c.control.heartbeat_ms, 30000);
	op_config_free(&c);
	/* The outbox's hard limit must fit the store. */
	char small[700];
	snprintf(small, sizeof(small), "[store]\nmap_max = 100MB\n%s", text);
	char *got = load_bad(small);
	ck_assert_str_eq(got, "t.conf:2: [control] outbox_max_bytes: 256MB does not fit twice in "
	                      "[store] map_max (100MB), expected at most half of it\n");
	op_free(got);
	load_ok("", &c);
	ck_assert_ptr_null(c.control.uri);
	ck_assert_str_eq(c.control.url, "");
	op_config_free(&c);
	unlink(f);
}
END_TEST

START_TEST(tls_pairing)
{
	ck_bad("[http]\ntls_cert = /etc/outpost/cert.pem\n",
	       "t.conf:2: [http] tls_cert: set without tls_key, expected both or neither\n");
	ck_bad("[http]\n\ntls_key = /etc/outpost/key.pem\n",
	       "t.conf:3: [http] tls_key: set without tls_cert, expected both or neither\n");
	ck_bad("[http]\ntls_cert = /nonexistent/cert.pem\ntls_key = /nonexistent/key.pem\n",
	       "t.conf:2: [http] tls_cert: cannot read '/nonexistent/cert.pem': No such file or "
	       "directory\n"
	       "t.conf:3: [http] tls_key: cannot read '/nonexistent/key.pem': No such file or "
	       "directory\n");

	char cert[] = "/tmp/op-cert-XXXXXX", key[] = "/tmp/op-key-XXXXXX";
	int fc = mkstemp(cert), fk = mkstemp(key);
	ck_assert(fc >= 0 && fk >= 0);
	close(fc);
	close(fk);
	char text[256];
	snprintf(text, sizeof(text), "[http]\ntls_cert = %s\ntls_key = %s\n", cert, key);
	struct op_config c;
	load_ok(text, &c);
	ck_assert_str_eq(c.http.tls_cert, cert);
	ck_assert_str_eq(c.http.tls_key, key);
	op_config_free(&c);
	unlink(cert);
	unlink(key);
}
END_TEST

START_TEST(cross_checks)
{
	ck_bad("[store]\nmap_initial = 8GB\n",
	       "t.conf:2: [store] map_max: 4GB is less than map_initial (8GB), expected at least "
	       "map_initial\n");
	ck_bad("[store]\nmap_max = 16MB\n",
	       "t.conf:2: [store] map_max: 16MB is less than map_initial (64MB), expected at "
	       "least map_initial\n");
	ck_bad("[http]\nlisten = 127.0.0.1:9090\n",
	       "t.conf: [admin] listen: same address as [http] listen, expected another port\n");
	struct op_config c;
	load_ok("[http]\nlisten = 127.0.0.1:0\n[admin]\nlisten = 127.0.0.1:0\n", &c);
	op_config_free(&c);
}
END_TEST

START_TEST(broker_all_keys)
{
	char ca[] = "/tmp/op-ca-XXXXXX", cert[] = "/tmp/op-cert-XXXXXX",
	     key[] = "/tmp/op-key-XXXXXX";
	int fa = mkstemp(ca), fc = mkstemp(cert), fk = mkstemp(key);
	ck_assert(fa >= 0 && fc >= 0 && fk >= 0);
	close(fa);
	close(fc);
	close(fk);
	char text[1024];
	snprintf(text, sizeof(text),
	         "[agent]\n"
	         "id = edge\n"
	         "[broker plant]\n"
	         "url = mqtts://broker.example.internal:18883\n"
	         "ca_file = %s\n"
	         "cert_file = %s\n"
	         "key_file = %s\n"
	         "username = outpost\n"
	         "password = pa ss\n"
	         "client_id = edge-7\n"
	         "keepalive = 1h\n"
	         "connect_timeout = 5m\n"
	         "max_inflight = 65535\n",
	         ca, cert, key);
	struct op_config c;
	load_ok(text, &c);
	ck_assert_uint_eq(c.n_brokers, 1);
	const struct op_config_broker *b = op_config_broker(&c, "plant");
	ck_assert_ptr_eq(b, &c.brokers[0]);
	ck_assert_str_eq(b->name, "plant");
	ck_assert_int_eq(b->line, 3);
	ck_assert_str_eq(b->url, "mqtts://broker.example.internal:18883");
	ck_assert_str_eq(b->ca_file, ca);
	ck_assert_str_eq(b->cert_file, cert);
	ck_assert_str_eq(b->key_file, key);
	ck_assert_str_eq(b->username, "outpost");
	ck_assert_str_eq(b->password, "pa ss");
	ck_assert_str_eq(b->client_id, "edge-7");
	ck_assert_uint_eq(b->keepalive_ms, 3600000);
	ck_assert_uint_eq(b->connect_timeout_ms, 300000);
	ck_assert_int_eq(b->max_inflight, 65535);
	ck_assert(b->tls);
	ck_assert_str_eq(b->host, "broker.example.internal");
	ck_assert_uint_eq(b->port, 18883);
	ck_assert_str_eq(b->uri, "ssl://broker.example.internal:18883");
	ck_assert_ptr_null(op_config_broker(&c, "Plant"));
	ck_assert_ptr_null(op_config_broker(&c, NULL));
	op_config_free(&c);
	ck_assert_ptr_null(c.brokers);
	ck_assert_uint_eq(c.n_brokers, 0);
	unlink(ca);
	unlink(cert);
	unlink(key);
}
END_TEST

START_TEST(broker_two_and_defaults)
{
	struct op_config c;
	char name64[65];
	memset(name64, 'n', 64);
	name64[64] = '\0';
	char text[512];
	snprintf(text, sizeof(text),
	         "[agent]\n"
	         "workers = 2\n"
	         "\n"
	         "[broker plant]\n"
	         "url = mqtt://10.1.2.3\n"
	         "[ broker\tPlant-2_b.x ]  ; second\n"
	         "url = ssl://[::1]\n"
	         "[agent]\n"
	         "log_level = warn\n"
	         "[broker %s]\n"
	         "url = tcp://h:1\n",
	         name64);
	load_ok(text, &c);
	ck_assert_int_eq(c.agent.workers, 2);
	ck_assert_int_eq(c.agent.log_level, OP_LOG_WARN);
	ck_assert_uint_eq(c.n_brokers, 3);

	const struct op_config_broker *b = &c.brokers[0];
	ck_assert_str_eq(b->name, "plant");
	ck_assert_int_eq(b->line, 4);
	ck_assert_str_eq(b->url, "mqtt://10.1.2.3");
	ck_assert_str_eq(b->ca_file, "");
	ck_assert_str_eq(b->cert_file, "");
	ck_assert_str_eq(b->key_file, "");
	ck_assert_str_eq(b->username, "");
	ck_assert_str_eq(b->password, "");
	ck_assert_str_eq(b->client_id, "");
	ck_assert_uint_eq(b->keepalive_ms, 30000);
	ck_assert_uint_eq(b->connect_timeout_ms, 10000);
	ck_assert_int_eq(b->max_inflight, 1000);
	ck_assert(!b->tls);
	ck_assert_str_eq(b->host, "10.1.2.3");
	ck_assert_uint_eq(b->port, 1883);
	ck_assert_str_eq(b->uri, "tcp://10.1.2.3:1883");

	b = &c.brokers[1];
	ck_assert_str_eq(b->name, "Plant-2_b.x");
	ck_assert_int_eq(b->line, 6);
	ck_assert(b->tls);
	ck_assert_str_eq(b->host, "::1");
	ck_assert_uint_eq(b->port, 8883);
	ck_assert_str_eq(b->uri, "ssl://[::1]:8883");
	ck_assert_uint_eq(b->keepalive_ms, 30000);

	ck_assert_str_eq(c.brokers[2].name, name64);
	ck_assert_str_eq(c.brokers[2].uri, "tcp://h:1");

	ck_assert_ptr_eq(op_config_broker(&c, "plant"), &c.brokers[0]);
	ck_assert_ptr_eq(op_config_broker(&c, "Plant-2_b.x"), &c.brokers[1]);
	ck_assert_ptr_eq(op_config_broker(&c, name64), &c.brokers[2]);
	ck_assert_ptr_null(op_config_broker(&c, "plant-2_b.x"));
	ck_assert_ptr_null(op_config_broker(&c, ""));
	op_config_free(&c);

	/* Schemes and ports. */
	struct {
		const char *url, *uri;
		bool tls;
	} good[] = {
	    {"mqtt://localhost", "tcp://localhost:1883", false},
	    {"MQTTS://Broker.Example:8884", "ssl://Broker.Example:8884", true},
	    {"tcp://h", "tcp://h:1883", false},
	    {"ssl://h", "ssl://h:8883", true},
	    {"mqtts://[fe80::1]:65535", "ssl://[fe80::1]:65535", true},
	    {"mqtt://192.168.0.1:1", "tcp://192.168.0.1:1", false},
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "[broker x]\nurl = %s\n", good[i].url);
		load_ok(text, &c);
		ck_assert_str_eq(c.brokers[0].url, good[i].url);
		ck_assert_str_eq(c.brokers[0].uri, good[i].uri);
		ck_assert(c.brokers[0].tls == good[i].tls);
		op_config_free(&c);
	}
}
END_TEST

START_TEST(broker_header_problems)
{
	char text[512];
	char name65[66];
	memset(name65, 'a', 65);
	name65[65] = '\0';
	snprintf(text, sizeof(text),
	         "[broker]\n"
	         "url = mqtt://h\n"
	         "[broker a b]\n"
	         "[broker plant]\n"
	         "url = mqtt://h\n"
	         "[broker ]\n"
	         "[broker plant]\n"
	         "url = mqtt://other\n"
	         "[brokers]\n"
	         "[broker x/y]\n"
	         "[broker %s]\n"
	         "[brokr plant]\n",
	         name65);
	ck_bad(text, "t.conf:1: [broker]: missing name, expected [broker NAME]\n"
	             "t.conf:3: [broker a b]: not a valid broker name, expected [broker NAME] "
	             "with NAME 1 to 64 letters, digits, '.', '_' or '-'\n"
	             "t.conf:6: [broker]: missing name, expected [broker NAME]\n"
	             "t.conf:7: [broker plant]: duplicate broker section, first on line 4\n"
	             "t.conf:9: [brokers]: unknown section, did you mean [broker NAME]?\n"
	             "t.conf:10: [broker x/y]: not a valid broker name, expected [broker NAME] "
	             "with NAME 1 to 64 letters, digits, '.', '_' or '-'\n"
	             "t.conf:11: [broker aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	             "aaaaaa]: not a valid broker name, expected [broker NAME] with NAME 1 to 64 "
	             "letters, digits, '.', '_' or '-'\n"
	             "t.conf:12: [brokr plant]: unknown section, did you mean [broker NAME]?\n");

	/* At most OP_CONFIG_MAX_BROKERS sections. */
	struct op_buf b;
	op_buf_init(&b, 1 << 20);
	for (int i = 0; i < OP_CONFIG_MAX_BROKERS; i++)
		ck_assert_int_eq(op_buf_addf(&b, "[broker b%d]\nurl = mqtt://h\n", i), OP_OK);
	struct op_config c;
	load_ok(op_buf_str(&b), &c);
	ck_assert_uint_eq(c.n_brokers, OP_CONFIG_MAX_BROKERS);
	ck_assert_ptr_eq(op_config_broker(&c, "b255"), &c.brokers[255]);
	ck_assert_int_eq(c.brokers[255].line, 511);
	op_config_free(&c);
	ck_assert_int_eq(op_buf_adds(&b, "[broker one-more]\nurl = mqtt://h\n"), OP_OK);
	ck_bad(op_buf_str(&b), "t.conf:513: [broker one-more]: more than 256 broker sections, "
	                       "expected at most 256\n");
	op_buf_fini(&b);
}
END_TEST

START_TEST(broker_key_problems)
{
	/* Every problem of every broker, in one load. */
	ck_bad("[broker plant]\n"
	       "url = http://x\n"
	       "keepalive = 0s\n"
	       "connect_timeout = 6m\n"
	       "max_inflight = 9\n"
	       "uri = me\n"
	       "url = mqtt://h\n"
	       "password =\n"
	       "keepalive = 2h\n"
	       "[broker empty]\n"
	       "url =\n"
	       "tls = on\n"
	       "[broker none]\n"
	       "username = u\n"
	       "[broker plain]\n"
	       "url = mqtt://h:1883\n"
	       "ca_file = /etc/outpost/ca.pem\n"
	       "cert_file = /etc/outpost/c.pem\n"
	       "[broker pair]\n"
	       "url = mqtts://h\n"
	       "key_file = /nonexistent/k.pem\n",
	       "t.conf:3: [broker plant] keepalive: 0s is out of range, expected 1s to 1h\n"
	       "t.conf:4: [broker plant] connect_timeout: 6m is out of range, expected 1s to 5m\n"
	       "t.conf:5: [broker plant] max_inflight: 9 is out of range, expected 10 to 65535\n"
	       "t.conf:6: [broker plant] uri: unknown key, did you mean 'url'?\n"
	       "t.conf:7: [broker plant] url: duplicate key, first set on line 2\n"
	       "t.conf:9: [broker plant] keepalive: duplicate key, first set on line 3\n"
	       "t.conf:11: [broker empty] url: empty, expected a value\n"
	       "t.conf:12: [broker empty] tls: unknown key, expected one of: url, ca_file, "
	       "cert_file, key_file, username, password, client_id, keepalive, connect_timeout, "
	       "max_inflight\n"
	       "t.conf:2: [broker plant] url: 'http://x' has scheme 'http', expected mqtt:// or "
	       "mqtts://\n"
	       "t.conf:13: [broker none]: url is not set, expected mqtt:// or mqtts:// URL\n"
	       "t.conf:18: [broker plain] cert_file: set without key_file, expected both or "
	       "neither\n"
	       "t.conf:17: [broker plain] ca_file: set for the plain url 'mqtt://h:1883', "
	       "expected an mqtts:// url or no ca_file\n"
	       "t.conf:18: [broker plain] cert_file: set for the plain url 'mqtt://h:1883', "
	       "expected an mqtts:// url or no cert_file\n"
	       "t.conf:21: [broker pair] key_file: set without cert_file, expected both or "
	       "neither\n"
	       "t.conf:21: [broker pair] key_file: cannot read '/nonexistent/k.pem': No such "
	       "file or directory\n");

	/* TLS files must be readable; each one is checked. */
	ck_bad("[broker m]\n"
	       "url = ssl://h\n"
	       "ca_file = /nonexistent/ca.pem\n"
	       "cert_file = /nonexistent/c.pem\n"
	       "key_file = /nonexistent/k.pem\n",
	       "t.conf:3: [broker m] ca_file: cannot read '/nonexistent/ca.pem': No such file or "
	       "directory\n"
	       "t.conf:4: [broker m] cert_file: cannot read '/nonexistent/c.pem': No such file or "
	       "directory\n"
	       "t.conf:5: [broker m] key_file: cannot read '/nonexistent/k.pem': No such file or "
	       "directory\n");

	/* A problem elsewhere still refuses the brokers. */
	ck_bad("[broker ok]\nurl = mqtt://h\n[agent]\nworkers = 0\n",
	       "t.conf:4: [agent] workers: 0 is out of range, expected 1 to 256\n");
}
END_TEST

START_TEST(broker_bad_urls)
{
	struct {
		const char *url, *why;
	} bad[] = {
	    {"broker.example:1883", "'broker.example:1883' is not a URL, expected "
	                            "mqtt://host[:port] or mqtts://host[:port]"},
	    {"http://x", "'http://x' has scheme 'http', expected mqtt:// or mqtts://"},
	    {"://x", "'://x' has scheme '', expected mqtt:// or mqtts://"},
	    {"mqtt://", "'mqtt://' has no valid host, expected a host name, an IPv4 address or an "
	                "[IPv6] address"},
	    {"mqtt://:1883", "'mqtt://:1883' has no valid host, expected a host name, an IPv4 "
	                     "address or an [IPv6] address"},
	    {"mqtt://exa mple", "'mqtt://exa mple' has no valid host, expected a host name, an "
	                        "IPv4 address or an [IPv6] address"},
	    {"mqtt://999.1.1.1", "'mqtt://999.1.1.1' has no valid host, expected a host name, an "
	                         "IPv4 address or an [IPv6] address"},
	    {"mqtt://::1", "'mqtt://::1' has no valid host, expected a host name, an IPv4 address "
	                   "or an [IPv6] address"},
	    {"mqtt://[::1", "'mqtt://[::1' has no valid host, expected a host name, an IPv4 "
	                    "address or an [IPv6] address"},
	    {"mqtt://[::g]:1", "'mqtt://[::g]:1' has no valid host, expected a host name, an IPv4 "
	                       "address or an [IPv6] address"},
	    {"mqtt://[::1]x", "'mqtt://[::1]x' has no valid host, expected a host name, an IPv4 "
	                      "address or an [IPv6] address"},
	    {"mqtt://[]:1", "'mqtt://[]:1' has no valid host, expected a host name, an IPv4 "
	                    "address or an [IPv6] address"},
	    {"mqtt://h:0", "'mqtt://h:0' has port '0', expected 1 to 65535"},
	    {"mqtt://h:65536", "'mqtt://h:65536' has port '65536', expected 1 to 65535"},
	    {"mqtts://h:", "'mqtts://h:' has port '', expected 1 to 65535"},
	    {"mqtt://h:12x", "'mqtt://h:12x' has port '12x', expected 1 to 65535"},
	    {"mqtt://h:1:2", "'mqtt://h:1:2' has port '1:2', expected 1 to 65535"},
	    {"mqtt://h/", "'mqtt://h/' has a path, expected nothing after host[:port]"},
	    {"mqtt://h:1883/topic", "'mqtt://h:1883/topic' has a path, expected nothing after "
	                            "host[:port]"},
	    {"mqtt://h?x=1", "'mqtt://h?x=1' has a path, expected nothing after host[:port]"},
	    /* Credentials in the url are refused without being echoed. */
	    {"mqtt://user:pw@h", "holds user credentials, expected them in the username and "
	                         "password keys"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256], want[512];
		snprintf(text, sizeof(text), "[broker u]\nurl = %s\n", bad[i].url);
		snprintf(want, sizeof(want), "t.conf:2: [broker u] url: %s\n", bad[i].why);
		ck_bad(text, want);
	}
}
END_TEST

START_TEST(load_file_errors)
{
	struct op_config c;
	struct op_diag d;
	op_diag_init(&d);
	memset(&c, 0xa5, sizeof(c));
	ck_assert_int_eq(op_config_load_file("/nonexistent/outpost.conf", &c, &d), OP_ENOTFOUND);
	ck_assert_ptr_null(c.globals);
	ck_assert_uint_eq(d.n, 1);
	ck_assert_str_eq(d.v[0].path, "/nonexistent/outpost.conf");
	ck_assert_str_eq(d.v[0].msg, "cannot open the config file: No such file or directory");
	op_diag_fini(&d);

	op_diag_init(&d);
	ck_assert_int_eq(op_config_load_file("/tmp", &c, &d), OP_EINVAL);
	ck_assert_str_eq(d.v[0].msg, "is a folder, expected a config file");
	op_diag_fini(&d);

	char path[] = "/tmp/op-config-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	size_t big = OP_CONFIG_MAX_FILE + 1;
	char *text = malloc(big);
	ck_assert_ptr_nonnull(text);
	memset(text, '\n', big);
	write_file(path, text, big);
	op_diag_init(&d);
	ck_assert_int_eq(op_config_load_file(path, &c, &d), OP_ELIMIT);
	ck_assert_str_eq(d.v[0].msg, "file is 1048577 bytes, expected at most 1048576 (1 MiB)");
	op_diag_fini(&d);

	/* Exactly 1 MiB is fine, and lines count across the whole file. */
	static const char line[] = "workers = 0\n";
	const size_t linelen = sizeof(line) - 1; /* written without its NUL */
	memcpy(text + big - 1 - linelen, line, linelen);
	write_file(path, text, big - 1);
	op_diag_init(&d);
	ck_assert_int_eq(op_config_load_file(path, &c, &d), OP_ECONFIG);
	ck_assert_uint_eq(d.n, 1);
	ck_assert_str_eq(d.v[0].msg, "workers: set outside a section, expected a [section] line "
	                             "above it");
	char want[64];
	/* 1 MiB - 12 newlines come before it. */
	snprintf(want, sizeof(want), "%s:%d", path, OP_CONFIG_MAX_FILE - 12 + 1);
	ck_assert_str_eq(d.v[0].path, want);
	op_diag_fini(&d);
	free(text);

	if (geteuid() != 0) {
		write_file(path, "[agent]\n", 8);
		ck_assert_int_eq(chmod(path, 0), 0);
		op_diag_init(&d);
		ck_assert_int_eq(op_config_load_file(path, &c, &d), OP_EAUTH);
		ck_assert_str_eq(d.v[0].msg, "cannot open the config file: Permission denied");
		op_diag_fini(&d);
	}
	unlink(path);
}
END_TEST

START_TEST(dump_round_trip)
{
	struct op_config c, c2;
	load_ok("[agent]\nid = edge\nshutdown_timeout = 90500ms\n[store]\nmap_max = 1536MB\n"
	        "queue_max_bytes = 1025\n[http]\nlisten = [::]:8443\n"
	        "[broker plant]\nurl = tcp://[fd00::7]:1884\nusername = op\npassword = s3cr3t\n"
	        "keepalive = 90s\nmax_inflight = 10\n"
	        "[admin]\nlisten =\n"
	        "[globals]\nregion = eu\nn = [1,2]\n"
	        "[broker b.2]\nurl = mqtt://10.0.0.1\nclient_id = line-7\n",
	        &c);
	char *text = dump(&c);
	ck_assert_str_eq(text, "[agent]\n"
	                       "id = edge\n"
	                       "data_dir = /var/lib/outpost\n"
	                       "pipelines_dir = /etc/outpost/pipelines.d\n"
	                       "workers = 4\n"
	                       "log_level = info\n"
	                       "log_format = text\n"
	                       "shutdown_timeout = 1m30s500ms\n"
	                       "\n[store]\n"
	                       "map_initial = 64MB\n"
	                       "map_max = 1536MB\n"
	                       "exec_retention = 10000\n"
	                       "queue_max_events = 100000\n"
	                       "queue_max_bytes = 1025\n"
	                       "disk_reserve = 32MB\n"
	                       "\n[http]\n"
	                       "listen = [::]:8443\n"
	                       "max_body = 5MB\n"
	                       "timeout = 30s\n"
	                       "threads = 0\n"
	                       "sync_threads = 64\n"
	                       "connection_limit = 1000\n"
	                       "per_ip_limit = 0\n"
	                       "client_timeout = 10s\n"
	                       "header_timeout = 10s\n"
	                       "body_timeout = 1m\n"
	                       "tls_cert =\n"
	                       "tls_key =\n"
	                       "\n[admin]\n"
	                       "listen =\n"
	                       "\n[accounts]\n"
	                       "key_file =\n"
	                       "dir =\n"
	                       "\n[files]\n"
	                       "dirs =\n"
	                       "\n[control]\n"
	                       "url =\n"
	                       "ca_file =\n"
	                       "cert_file =\n"
	                       "key_file =\n"
	                       "trusted_keys =\n"
	                       "group =\n"
	                       "topic_prefix =\n"
	                       "client_id =\n"
	                       "keepalive = 30s\n"
	                       "heartbeat = 30s\n"
	                       "reconnect_min = 1s\n"
	                       "reconnect_max = 1m\n"
	                       "log_level = warn\n"
	                       "metrics_interval = 1m\n"
	                       "outbox_max_records = 1000000\n"
	                       "outbox_max_bytes = 256MB\n"
	                       "connect_timeout = 10s\n"
	                       "\n[broker plant]\n"
	                       "url = tcp://[fd00::7]:1884\n"
	                       "ca_file =\n"
	                       "cert_file =\n"
	                       "key_file =\n"
	                       "username = op\n"
	                       "password = ***\n"
	                       "client_id =\n"
	                       "keepalive = 1m30s\n"
	                       "connect_timeout = 10s\n"
	                       "max_inflight = 10\n"
	                       "\n[broker b.2]\n"
	                       "url = mqtt://10.0.0.1\n"
	                       "ca_file =\n"
	                       "cert_file =\n"
	                       "key_file =\n"
	                       "username =\n"
	                       "password =\n"
	                       "client_id = line-7\n"
	                       "keepalive = 30s\n"
	                       "connect_timeout = 10s\n"
	                       "max_inflight = 1000\n"
	                       "\n[globals]\n"
	                       "region = \"eu\"\n"
	                       "n = [1,2]\n");
	ck_assert_ptr_null(strstr(text, "s3cr3t"));
	load_ok(text, &c2);
	char *text2 = dump(&c2);
	ck_assert_str_eq(text, text2);
	ck_assert_json_eq(c.globals, c2.globals);
	/* The dump loads to the same brokers, the password aside. */
	ck_assert_uint_eq(c2.n_brokers, 2);
	ck_assert_str_eq(c2.brokers[0].password, "***");
	for (size_t i = 0; i < 2; i++) {
		ck_assert_str_eq(c2.brokers[i].name, c.brokers[i].name);
		ck_assert_str_eq(c2.brokers[i].uri, c.brokers[i].uri);
		ck_assert_uint_eq(c2.brokers[i].keepalive_ms, c.brokers[i].keepalive_ms);
		ck_assert_int_eq(c2.brokers[i].max_inflight, c.brokers[i].max_inflight);
	}
	op_free(text);
	op_free(text2);
	op_config_free(&c);
	op_config_free(&c2);
}
END_TEST

static void regen_sample(const char *want)
{
	write_file(SAMPLE_PATH, want, strlen(want));
}

START_TEST(sample_file_is_generated)
{
	char *want = generate(op_config_write_sample);
	if (getenv("OP_CONFIG_REGEN"))
		regen_sample(want);
	char *got = slurp(SAMPLE_PATH);
	ck_assert_msg(strcmp(got, want) == 0,
	              SAMPLE_PATH " differs from op_config_write_sample(); regenerate with "
	                          "OP_CONFIG_REGEN=1 build/debug/tests/unit/test_config");
	/* Every key is in it, commented out with its default. */
	size_t n;
	const struct op_config_key *k = op_config_keys(&n);
	for (size_t i = 0; i < n; i++) {
		char line[256];
		if (*k[i].def)
			snprintf(line, sizeof(line), "\n#%s = %s\n", k[i].key, k[i].def);
		else
			snprintf(line, sizeof(line), "\n#%s =\n", k[i].key);
		ck_assert_msg(strstr(got, line) != NULL, "%s missing", k[i].key);
	}
	/* The example broker section lists every broker key, commented out. */
	const char *bs = strstr(got, "\n#[broker plant]\n");
	ck_assert_ptr_nonnull(bs);
	k = op_config_broker_keys(&n);
	for (size_t i = 0; i < n; i++) {
		char line[300];
		const char *v = k[i].example ? k[i].example : k[i].def;
		snprintf(line, sizeof(line), "\n# %s\n#%s%s%s\n", k[i].help, k[i].key,
		         *v ? " = " : " =", v);
		ck_assert_msg(strstr(bs, line) != NULL, "broker %s missing", k[i].key);
	}
	ck_assert_ptr_nonnull(strstr(bs, "\n#url = mqtts://broker.example.internal:8883\n"));
	/* Loading it gives the defaults. */
	struct op_config c, def;
	load_ok(got, &c);
	ck_assert_int_eq(op_config_defaults(&def), OP_OK);
	op_free(def.agent.id);
	def.agent.id = op_strdup(c.agent.id);
	char *a = dump(&c), *b = dump(&def);
	ck_assert_str_eq(a, b);
	op_free(a);
	op_free(b);
	op_config_free(&c);
	op_config_free(&def);
	op_free(got);
	op_free(want);
}
END_TEST

START_TEST(doc_tables_are_generated)
{
	char *want = generate(op_config_write_doc);
	char *doc = slurp(DOC_PATH);
	char *b = strstr(doc, DOC_BEGIN);
	ck_assert_msg(b != NULL, DOC_PATH " lacks the " DOC_BEGIN " marker");
	b = strchr(b, '\n');
	ck_assert_ptr_nonnull(b);
	b++;
	char *e = strstr(b, DOC_END);
	ck_assert_msg(e != NULL, DOC_PATH " lacks the " DOC_END " marker");
	if (getenv("OP_CONFIG_REGEN")) {
		struct op_buf nb;
		op_buf_init(&nb, 1 << 22);
		ck_assert_int_eq(op_buf_add(&nb, doc, (size_t)(b - doc)), OP_OK);
		ck_assert_int_eq(op_buf_adds(&nb, want), OP_OK);
		ck_assert_int_eq(op_buf_adds(&nb, e), OP_OK);
		write_file(DOC_PATH, op_buf_str(&nb), nb.len);
		op_buf_fini(&nb);
		op_free(doc);
		doc = slurp(DOC_PATH);
		b = strchr(strstr(doc, DOC_BEGIN), '\n') + 1;
		e = strstr(b, DOC_END);
	}
	*e = '\0';
	ck_assert_msg(strcmp(b, want) == 0,
	              DOC_PATH " key tables differ from op_config_write_doc(); regenerate with "
	                       "OP_CONFIG_REGEN=1 build/debug/tests/unit/test_config");
	/* Spot check that the generator says what the table says. */
	ck_assert_ptr_nonnull(
	    strstr(b, "| `workers` | integer, 1 to 256 | `4` | Most worker threads that run"));
	ck_assert_ptr_nonnull(strstr(b, "| `id` | string | the host name |"));
	ck_assert_ptr_nonnull(strstr(b, "\n### [broker NAME]\n"));
	ck_assert_ptr_nonnull(strstr(b, "| `url` | string | (required) | "));
	ck_assert_ptr_nonnull(strstr(b, "| `max_inflight` | integer, 10 to 65535 | `1000` | "));
	ck_assert_ptr_nonnull(strstr(b, "`max_inflight_messages 1000`"));
	op_free(doc);
	op_free(want);
}
END_TEST

/* True when man has key's headline "*KEY* (TYPE)" and its indented help
 * line; key as the page spells it ('_' escaped). */
static bool man_has_key(const char *man, const char *key, const char *type)
{
	char want[200];
	snprintf(want, sizeof(want), "\n*%s* (%s)\n\t", key, type);
	return strstr(man, want) != NULL;
}

/* True when key (as the table spells it) heads an entry under the "## "
 * header of section, before the next header. */
static bool man_key_in(const char *man, const char *section, const char *key)
{
	char head[128], want[160];
	snprintf(head, sizeof(head), "\n## %s\n", section);
	const char *s = strstr(man, head);
	if (s == NULL)
		return false;
	const char *next = strstr(s + 1, "\n## ");
	size_t n = (size_t)snprintf(want, sizeof(want), "\n*");
	for (const char *p = key; *p && n < sizeof(want) - 4; p++) {
		if (*p == '_')
			want[n++] = '\\';
		want[n++] = *p;
	}
	snprintf(want + n, sizeof(want) - n, "* (");
	const char *at = strstr(s, want);
	return at != NULL && (next == NULL || at < next);
}

START_TEST(man_page_is_generated)
{
	char *want = generate(op_config_write_man);
	if (getenv("OP_CONFIG_REGEN"))
		write_file(MAN_PATH, want, strlen(want));
	char *got = slurp(MAN_PATH);
	ck_assert_msg(strcmp(got, want) == 0,
	              MAN_PATH " differs from op_config_write_man(); regenerate with "
	                       "OP_CONFIG_REGEN=1 build/debug/tests/unit/test_config");
	/* The preamble scdoc needs comes first. */
	ck_assert_ptr_eq(strstr(got, "outpost.conf(5)"), got);
	/* Every key of every section, in its section, and every broker key. */
	size_t n;
	const struct op_config_key *k = op_config_keys(&n);
	for (size_t i = 0; i < n; i++) {
		char sec[64];
		snprintf(sec, sizeof(sec), "[%s]", k[i].section);
		ck_assert_msg(man_key_in(got, sec, k[i].key), "[%s] %s missing", k[i].section,
		              k[i].key);
	}
	k = op_config_broker_keys(&n);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(man_key_in(got, "[broker NAME]", k[i].key), "broker %s missing",
		              k[i].key);
	const char *bs = strstr(got, "\n## [broker NAME]\n");
	ck_assert_ptr_nonnull(bs);
	ck_assert(man_has_key(bs, "url", "string"));
	ck_assert_ptr_nonnull(strstr(bs, "Required: there is no default.\n"));
	ck_assert(man_has_key(bs, "max\\_inflight", "integer, 10 to 65535"));
	/* Types, bounds, choices and defaults as the table says. */
	ck_assert(man_has_key(got, "workers", "integer, 1 to 256"));
	ck_assert(man_has_key(got, "map\\_max", "size, 1MB to 16TB"));
	ck_assert(man_has_key(got, "log\\_level", "enum: *error*, *warn*, *info*, *debug*"));
	ck_assert_ptr_nonnull(strstr(got, " Default: *4*.\n"));
	ck_assert_ptr_nonnull(strstr(got, " Default: the host name.\n"));
	ck_assert_ptr_nonnull(strstr(got, " Default: *outpost-* and the agent id.\n"));
	ck_assert_ptr_nonnull(strstr(got, "\n## [globals]\n"));
	ck_assert_ptr_nonnull(strstr(got, "\n# FILES\n"));
	/* Nothing scdoc would read as markup is left bare: no line starts with
	 * '.', and every '_' of text is escaped (in literal blocks and comments
	 * it is not markup). */
	bool literal = false;
	for (const char *p = got; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : "") {
		ck_assert_msg(*p != '.', "a line starts with '.': %.40s", p);
		if (strncmp(p, "```", 3) == 0)
			literal = !literal;
		if (literal || *p == ';')
			continue;
		for (const char *q = p; *q && *q != '\n'; q++)
			ck_assert_msg(*q != '_' || q[-1] == '\\', "bare '_' in: %.60s", p);
	}
	ck_assert(!literal);
	op_free(got);
	op_free(want);
}
END_TEST

/* scdoc escaping of text from the tables. */
START_TEST(man_text_escapes)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"plain text", "plain text"},
	    {"a_b *c* d\\e", "a\\_b \\*c\\* d\\\\e"},
	    {"`code_x` and `y`", "*code\\_x* and *y*"},
	    {"one ` alone", "one ` alone"},
	    {"-x\n#y\n;z\n[w]\n|v\n:u", "\\-x\n\\#y\n\\;z\n\\[w]\n\\|v\n\\:u"},
	    {".dot\nx.y", "**.dot\nx.y"},
	    {"a ++\nb+c", "a \\++\nb+c"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		ck_assert_ptr_nonnull(f);
		op_config__man_text(f, cases[i].in);
		fclose(f);
		ck_assert_str_eq(text, cases[i].out);
		free(text);
	}
}
END_TEST

START_TEST(out_of_memory)
{
	const char *text = "[agent]\nid = edge\ndata_dir = /d\nworkers = 9\n"
	                   "[http]\nlisten = [::1]:80\ntls_cert =\n"
	                   "[broker a]\nurl = mqtt://[::1]\npassword = pw\n"
	                   "[broker b]\nurl = mqtts://h\n[broker c]\nurl = mqtt://h\n"
	                   "[broker d]\nurl = mqtt://h\n[broker e]\nurl = mqtt://h:2\n"
	                   "[accounts]\nkey_file = $CREDENTIALS_DIRECTORY/a.key\n"
	                   "[globals]\na = 1\nb = [1, {\"x\": \"y\"}]\nc = text\n";
	setenv("CREDENTIALS_DIRECTORY", "/run/credentials/outpost.service", 1);
	struct op_config ref;
	load_ok(text, &ref);
	char *want = dump(&ref);
	op_config_free(&ref);
	bool done = false;
	for (uint64_t n = 1; n < 10000 && !done; n++) {
		struct op_config c;
		struct op_diag d;
		op_diag_init(&d);
		op_alloc_fail_at(n);
		op_err e = op_config_load_string(text, "t.conf", &c, &d);
		op_alloc_fail_at(0);
		if (e == OP_OK) {
			char *got = dump(&c);
			ck_assert_str_eq(got, want);
			op_free(got);
			op_config_free(&c);
			done = true;
		} else {
			ck_assert_msg(e == OP_ENOMEM, "n=%llu: %s", (unsigned long long)n,
			              op_err_name(e));
			ck_assert_ptr_null(c.globals);
			ck_assert_ptr_null(c.agent.id);
			ck_assert_ptr_null(c.brokers);
		}
		op_diag_fini(&d);
	}
	ck_assert(done);
	op_free(want);
	unsetenv("CREDENTIALS_DIRECTORY");

	for (uint64_t n = 1; n < 1000; n++) {
		struct op_config c;
		op_alloc_fail_at(n);
		op_err e = op_config_defaults(&c);
		op_alloc_fail_at(0);
		if (e == OP_OK) {
			op_config_free(&c);
			break;
		}
		ck_assert_int_eq(e, OP_ENOMEM);
		ck_assert_ptr_null(c.globals);
	}
}
END_TEST

/* What a reload leaves for the restart: changed keys by name, brokers added,
 * removed or changed, values compared as printed; pipelines_dir and globals
 * (which a reload applies) left out. */
START_TEST(diff_names_changes)
{
	struct op_config a, b;
	char *names = (char *)1;
	size_t n = 99;
	load_ok("[agent]\ndata_dir = /d\npipelines_dir = /p1\n[store]\nmap_initial = 64MB\n"
	        "[broker plant]\nurl = mqtt://h1\npassword = one\n"
	        "[broker gone]\nurl = mqtt://g\n[globals]\nx = 1\n",
	        &a);
	/* The same settings written otherwise, a new pipelines_dir and globals. */
	load_ok("[store]\nmap_initial = 65536KB\n[agent]\npipelines_dir = /p2\ndata_dir = /d\n"
	        "[broker gone]\nurl = mqtt://g\n"
	        "[broker plant]\nurl = mqtt://h1\npassword = one\nkeepalive = 30000ms\n"
	        "[globals]\nx = 2\ny = 3\n",
	        &b);
	ck_assert_int_eq(op_config_diff(&a, &b, &names, &n), OP_OK);
	ck_assert_ptr_null(names);
	ck_assert_uint_eq(n, 0);
	op_config_free(&b);

	load_ok("[agent]\ndata_dir = /d\nlog_level = debug\n[http]\nlisten = [::1]:81\n"
	        "[broker plant]\nurl = mqtt://h2\npassword = two\n"
	        "[broker new]\nurl = mqtt://n\n[control]\nheartbeat = 31s\n",
	        &b);
	ck_assert_int_eq(op_config_diff(&a, &b, &names, &n), OP_OK);
	/* log_level is reloaded, not named. */
	ck_assert_str_eq(names, "[http] listen, [control] heartbeat, "
	                        "[broker plant] url, [broker plant] password, "
	                        "[broker gone] (removed), [broker new] (added)");
	ck_assert_uint_eq(n, 6);
	op_free(names);

	/* Out of memory: nothing is handed out. */
	bool done = false;
	for (uint64_t i = 1; i < 100 && !done; i++) {
		op_alloc_fail_at(i);
		op_err e = op_config_diff(&a, &b, &names, &n);
		op_alloc_fail_at(0);
		if (e == OP_OK) {
			ck_assert_uint_eq(n, 6);
			op_free(names);
			done = true;
			continue;
		}
		ck_assert_int_eq(e, OP_ENOMEM);
		ck_assert_ptr_null(names);
		ck_assert_uint_eq(n, 0);
	}
	ck_assert(done);
	op_config_free(&a);
	op_config_free(&b);
}
END_TEST

/* Where accounts and their key are: explicit keys, the systemd credential
 * when it exists, else the defaults. */
START_TEST(accounts_paths)
{
	struct op_config c;
	char dir[512], key[512];
	unsetenv("CREDENTIALS_DIRECTORY");
	load_ok("[agent]\ndata_dir = /srv/op\n", &c);
	op_config_accounts_paths(&c, dir, sizeof(dir), key, sizeof(key));
	ck_assert_str_eq(dir, "/srv/op/accounts");
	ck_assert_str_eq(key, "/etc/outpost/accounts.key");

	char creds[] = "/tmp/op_test_creds_XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(creds));
	setenv("CREDENTIALS_DIRECTORY", creds, 1);
	op_config_accounts_paths(&c, dir, sizeof(dir), key, sizeof(key));
	ck_assert_str_eq(key, "/etc/outpost/accounts.key"); /* no such credential */
	char cred[600];
	snprintf(cred, sizeof(cred), "%s/accounts.key", creds);
	FILE *f = fopen(cred, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	op_config_accounts_paths(&c, dir, sizeof(dir), key, sizeof(key));
	ck_assert_str_eq(key, cred);
	op_config_free(&c);

	load_ok("[accounts]\nkey_file = /k/acc.key\ndir = /v/acc\n", &c);
	op_config_accounts_paths(&c, dir, sizeof(dir), key, sizeof(key));
	ck_assert_str_eq(dir, "/v/acc");
	ck_assert_str_eq(key, "/k/acc.key");
	op_config_free(&c);
	unlink(cred);
	rmdir(creds);
	unsetenv("CREDENTIALS_DIRECTORY");
}
END_TEST

/* Writes an empty file dir/name; path gets its name. */
static void touch_in(const char *dir, const char *name, char *path, size_t n)
{
	snprintf(path, n, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fclose(f), 0);
}

/* Files to read given as systemd credentials, $CREDENTIALS_DIRECTORY/NAME. */
START_TEST(credentials)
{
	/* Every key that names a file to read takes them, and only those. */
	size_t n;
	const struct op_config_key *k = op_config_keys(&n);
	size_t nread = 0;
	for (int t = 0; t < 2; t++, k = op_config_broker_keys(&n)) {
		for (size_t i = 0; i < n; i++) {
			size_t kl = strlen(k[i].key);
			bool file = (kl > 5 && strcmp(k[i].key + kl - 5, "_file") == 0) ||
			            strncmp(k[i].key, "tls_", 4) == 0 ||
			            strcmp(k[i].key, "trusted_keys") == 0;
			ck_assert_msg(file == !!(k[i].flags & OP_CONFIG_READ), "[%s] %s",
			              k[i].section, k[i].key);
			ck_assert(!(k[i].flags & OP_CONFIG_READ) || k[i].type == OP_CONFIG_PATH ||
			          k[i].type == OP_CONFIG_STRING);
			nread += file;
		}
	}
	ck_assert_uint_eq(nread, 10);

	char creds[] = "/tmp/op-creds-XXXXXX", plain[] = "/tmp/op-plain-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(creds));
	int fd = mkstemp(plain);
	ck_assert(fd >= 0);
	close(fd);
	char crt[600], tkey[600], ca[600], pub[600], env[600];
	touch_in(creds, "tls.crt", crt, sizeof(crt));
	touch_in(creds, "tls.key", tkey, sizeof(tkey));
	touch_in(creds, "ca.pem", ca, sizeof(ca));
	touch_in(creds, "ops.pub", pub, sizeof(pub));
	/* A trailing '/' of the variable is not doubled. */
	snprintf(env, sizeof(env), "%s/", creds);
	setenv("CREDENTIALS_DIRECTORY", env, 1);
	char text[2048];
	snprintf(text, sizeof(text),
	         "[http]\n"
	         "tls_cert = $CREDENTIALS_DIRECTORY/tls.crt\n"
	         "tls_key = ${CREDENTIALS_DIRECTORY}/tls.key\n"
	         "[accounts]\n"
	         "key_file = /k/$CREDENTIALS_DIRECTORY/accounts.key\n"
	         "[control]\n"
	         "url = mqtts://cp.example\n"
	         "ca_file = %s\n"
	         "cert_file = $CREDENTIALS_DIRECTORY/tls.crt\n"
	         "key_file = $CREDENTIALS_DIRECTORY/tls.key\n"
	         "trusted_keys = %s ,  $CREDENTIALS_DIRECTORY/ops.pub , %s\n"
	         "[broker plant]\n"
	         "url = mqtts://broker.example\n"
	         "ca_file = ${CREDENTIALS_DIRECTORY}/ca.pem\n"
	         "[globals]\n"
	         "path = $CREDENTIALS_DIRECTORY/x\n",
	         plain, plain, plain);
	struct op_config c;
	load_ok(text, &c);
	ck_assert_str_eq(c.http.tls_cert, crt);
	ck_assert_str_eq(c.http.tls_key, tkey);
	ck_assert_str_eq(c.control.ca_file, plain); /* a plain path as it is */
	ck_assert_str_eq(c.control.cert_file, crt);
	ck_assert_str_eq(c.control.key_file, tkey);
	char list[2048];
	snprintf(list, sizeof(list), "%s ,  %s , %s", plain, pub, plain);
	ck_assert_str_eq(c.control.trusted_keys, list);
	ck_assert_str_eq(c.brokers[0].ca_file, ca);
	/* Only at the start of a path, and only in keys of files to read. */
	ck_assert_str_eq(c.accounts.key_file, "/k/$CREDENTIALS_DIRECTORY/accounts.key");
	ck_assert_str_eq(cJSON_GetObjectItem(c.globals, "path")->valuestring,
	                 "$CREDENTIALS_DIRECTORY/x");
	/* --check-config prints the real paths. */
	char *out = dump(&c), line[700];
	snprintf(line, sizeof(line), "\ntls_key = %s\n", tkey);
	ck_assert_ptr_nonnull(strstr(out, line));
	snprintf(line, sizeof(line),
	         "\n[broker plant]\nurl = mqtts://broker.example\nca_file = %s\n", ca);
	ck_assert_ptr_nonnull(strstr(out, line));
	ck_assert_ptr_null(strstr(out, "$CREDENTIALS_DIRECTORY/tls"));
	op_free(out);
	op_config_free(&c);
	load_ok("[accounts]\nkey_file = $CREDENTIALS_DIRECTORY/accounts.key\n", &c);
	char dir[512], key[512], want[600];
	op_config_accounts_paths(&c, dir, sizeof(dir), key, sizeof(key));
	snprintf(want, sizeof(want), "%s/accounts.key", creds);
	ck_assert_str_eq(key, want);
	op_config_free(&c);

	/* NAME is a file name in the folder. */
	ck_bad("[accounts]\nkey_file = $CREDENTIALS_DIRECTORY/a/b\n",
	       "t.conf:2: [accounts] key_file: '$CREDENTIALS_DIRECTORY/a/b' is not a credential, "
	       "expected $CREDENTIALS_DIRECTORY/NAME with NAME a file name (not empty, no '/', "
	       "not . or ..)\n");
	ck_bad("[control]\ntrusted_keys = /a.pub, ${CREDENTIALS_DIRECTORY}/.. \n"
	       "[http]\ntls_cert = $CREDENTIALS_DIRECTORY\ntls_key = $CREDENTIALS_DIRECTORY/\n"
	       "[broker b]\nurl = mqtts://h\nca_file = ${CREDENTIALS_DIRECTORY}/.\n",
	       "t.conf:2: [control] trusted_keys: '${CREDENTIALS_DIRECTORY}/..' is not a "
	       "credential, expected $CREDENTIALS_DIRECTORY/NAME with NAME a file name (not "
	       "empty, no '/', not . or ..)\n"
	       "t.conf:4: [http] tls_cert: '$CREDENTIALS_DIRECTORY' is not a credential, expected "
	       "$CREDENTIALS_DIRECTORY/NAME with NAME a file name (not empty, no '/', not . or "
	       "..)\n"
	       "t.conf:5: [http] tls_key: '$CREDENTIALS_DIRECTORY/' is not a credential, expected "
	       "$CREDENTIALS_DIRECTORY/NAME with NAME a file name (not empty, no '/', not . or "
	       "..)\n"
	       "t.conf:8: [broker b] ca_file: '${CREDENTIALS_DIRECTORY}/.' is not a credential, "
	       "expected $CREDENTIALS_DIRECTORY/NAME with NAME a file name (not empty, no '/', "
	       "not . or ..)\n");
	/* The real path is a path: too long is refused, not cut. */
	char longdir[PATH_MAX];
	memset(longdir, 'd', sizeof(longdir) - 1);
	longdir[0] = '/';
	longdir[sizeof(longdir) - 1] = '\0';
	setenv("CREDENTIALS_DIRECTORY", longdir, 1);
	ck_bad("[accounts]\n\nkey_file = $CREDENTIALS_DIRECTORY/a.key\n",
	       "t.conf:3: [accounts] key_file: 4096 bytes or longer with $CREDENTIALS_DIRECTORY "
	       "put in, expected a shorter value\n");

	/* Without the variable (or with it empty), the form is an error. */
	for (int i = 0; i < 2; i++) {
		if (i == 0)
			unsetenv("CREDENTIALS_DIRECTORY");
		else
			setenv("CREDENTIALS_DIRECTORY", "", 1);
		ck_bad(
		    "[broker plant]\nurl = mqtts://h\n\nkey_file = ${CREDENTIALS_DIRECTORY}/k.pem\n"
		    "[control]\ntrusted_keys = /a.pub, $CREDENTIALS_DIRECTORY/ops.pub\n",
		    "t.conf:4: [broker plant] key_file: $CREDENTIALS_DIRECTORY is not set "
		    "(systemd sets it for LoadCredential=; elsewhere set it to a folder with the "
		    "files)\n"
		    "t.conf:6: [control] trusted_keys: $CREDENTIALS_DIRECTORY is not set "
		    "(systemd sets it for LoadCredential=; elsewhere set it to a folder with the "
		    "files)\n");
	}
	/* A plain path does not need it. */
	unsetenv("CREDENTIALS_DIRECTORY");
	load_ok("[accounts]\nkey_file = /etc/outpost/a.key\n", &c);
	ck_assert_str_eq(c.accounts.key_file, "/etc/outpost/a.key");
	op_config_free(&c);

	unlink(crt);
	unlink(tkey);
	unlink(ca);
	unlink(pub);
	unlink(plain);
	rmdir(creds);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, value_types);
	tcase_add_test(tc, unit_parsers);
	tcase_add_test(tc, bad_values_and_bounds);
	tcase_add_test(tc, structure_problems_with_lines);
	tcase_add_test(tc, syntax_accepted);
	tcase_add_test(tc, globals);
	tcase_add_test(tc, tls_pairing);
	tcase_add_test(tc, control_section);
	tcase_add_test(tc, cross_checks);
	tcase_add_test(tc, broker_all_keys);
	tcase_add_test(tc, broker_two_and_defaults);
	tcase_add_test(tc, broker_header_problems);
	tcase_add_test(tc, broker_key_problems);
	tcase_add_test(tc, broker_bad_urls);
	tcase_add_test(tc, load_file_errors);
	tcase_add_test(tc, dump_round_trip);
	tcase_add_test(tc, sample_file_is_generated);
	tcase_add_test(tc, doc_tables_are_generated);
	tcase_add_test(tc, man_page_is_generated);
	tcase_add_test(tc, man_text_escapes);
	tcase_add_test(tc, out_of_memory);
	tcase_add_test(tc, diff_names_changes);
	tcase_add_test(tc, accounts_paths);
	tcase_add_test(tc, credentials);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(config_suite)
