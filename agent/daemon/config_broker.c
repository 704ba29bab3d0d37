/*
 * The [broker NAME] sections of the daemon's config file: their key table,
 * the header line, the url check that splits it into tls, host and port, and
 * the checks across a broker's keys; also the broker parts of the dump, the
 * sample and the docs. config.c reads the text and binds values; it hands
 * this file a [broker ...] header and the key lines under it.
 * Invariant: every broker counted in n_brokers has its own bseen row, and one
 * that failed to allocate half way is still freed by op_config_free.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/daemon/config.h"
#include "agent/daemon/config_int.h"

#define BOFF(m) offsetof(struct op_config_broker, m)

/* The keys of each [broker NAME] section. */
static const struct op_config_key broker_keys[] = {
    {.section = "broker",
     .key = "url",
     .type = OP_CONFIG_STRING,
     .off = BOFF(url),
     .def = "",
     .flags = OP_CONFIG_REQUIRED,
     .example = "mqtts://broker.example.internal:8883",
     .help = "Broker address, mqtt://host[:port] (1883) or mqtts://host[:port] (8883, TLS)."},
    {.section = "broker",
     .key = "ca_file",
     .type = OP_CONFIG_PATH,
     .off = BOFF(ca_file),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK | OP_CONFIG_READ,
     .help = "PEM CA bundle that verifies the broker (mqtts only); empty: the system's CAs."},
    {.section = "broker",
     .key = "cert_file",
     .type = OP_CONFIG_PATH,
     .off = BOFF(cert_file),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK | OP_CONFIG_READ,
     .help = "PEM client certificate for mutual TLS, set together with key_file (mqtts only)."},
    {.section = "broker",
     .key = "key_file",
     .type = OP_CONFIG_PATH,
     .off = BOFF(key_file),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK | OP_CONFIG_READ,
     .help = "PEM private key of cert_file, readable by the service user only."},
    {.section = "broker",
     .key = "username",
     .type = OP_CONFIG_STRING,
     .off = BOFF(username),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK,
     .help = "User name the agent connects with; empty: none."},
    {.section = "broker",
     .key = "password",
     .type = OP_CONFIG_STRING,
     .off = BOFF(password),
     .def = "",
     .flags = OP_CONFIG_EMPTY_OK | OP_CONFIG_SECRET,
     .help = "Password of username; empty: none."},
    {.section = "broker",
     .key = "client_id",
     .type = OP_CONFIG_STRING,
     .off = BOFF(client_id),
     .def = "",
     .def_doc = "`outpost-` and the agent id",
     .flags = OP_CONFIG_EMPTY_OK,
     .help = "Prefix of the MQTT client ids the agent uses; empty: outpost- and the agent id."},
    {.section = "broker",
     .key = "keepalive",
     .type = OP_CONFIG_DURATION,
     .off = BOFF(keepalive_ms),
     .def = "30s",
     .min = SEC,
     .max = HOUR,
     .help = "MQTT keep-alive: an idle connection is checked with a ping this often."},
    {.section = "broker",
     .key = "connect_timeout",
     .type = OP_CONFIG_DURATION,
     .off = BOFF(connect_timeout_ms),
     .def = "10s",
     .min = SEC,
     .max = 5 * MIN,
     .help = "Longest a connection attempt (TCP, TLS and MQTT CONNECT) may take."},
    {.section = "broker",
     .key = "max_inflight",
     .type = OP_CONFIG_INT,
     .off = BOFF(max_inflight),
     .def = "1000",
     .min = 10,
     .max = 65535,
     .help = "QoS 1 messages in flight per client; the broker must allow as many "
             "(mosquitto: max_inflight_messages) or QoS 1 stalls."},
};
#define N_BKEYS (sizeof(broker_keys) / sizeof(broker_keys[0]))
_Static_assert(N_BKEYS == OP_CONFIG__N_BKEYS, "OP_CONFIG__N_BKEYS follows broker_keys[]");

const struct op_config_key *op_config_broker_keys(size_t *n)
{
	*n = N_BKEYS;
	return broker_keys;
}

const struct op_config_broker *op_config_broker(const struct op_config *c, const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < c->n_brokers; i++) {
		if (strcmp(c->brokers[i].name, name) == 0)
			return &c->brokers[i];
	}
	return NULL;
}

/* A broker url split up; host points into the url. */
struct mqtt_url {
	bool tls;
	const char *host;
	size_t host_len;
	unsigned port;
};

static bool all_digits_dots(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]) && s[i] != '.')
			return false;
	}
	return true;
}

/*
 * Splits a broker url "scheme://host[:port]". On a bad url writes why (the
 * part of a problem message after "url: ") and returns false. The url itself
 * is not echoed when it holds user credentials.
 */
static bool parse_mqtt_url(const char *s, struct mqtt_url *u, char *why, size_t n)
{
	static const struct {
		const char *name;
		bool tls;
	} schemes[] = {{"mqtt", false}, {"tcp", false}, {"mqtts", true}, {"ssl", true}};
	const char *sep = strstr(s, "://");
	if (sep == NULL) {
		snprintf(why, n,
		         "'%.64s' is not a URL, expected mqtt://host[:port] or mqtts://host[:port]",
		         s);
		return false;
	}
	size_t sl = (size_t)(sep - s), i;
	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		if (strlen(schemes[i].name) == sl && strncasecmp(s, schemes[i].name, sl) == 0)
			break;
	}
	if (i == sizeof(schemes) / sizeof(schemes[0])) {
		snprintf(why, n, "'%.64s' has scheme '%.*s', expected mqtt:// or mqtts://", s,
		         (int)(sl > 16 ? 16 : sl), s);
		return false;
	}
	u->tls = schemes[i].tls;
	const char *a = sep + 3;
	if (strchr(a, '@') != NULL) {
		snprintf(why, n,
		         "holds user credentials, expected them in the username and password keys");
		return false;
	}
	size_t al = strcspn(a, "/?#");
	if (a[al]) {
		snprintf(why, n, "'%.64s' has a path, expected nothing after host[:port]", s);
		return false;
	}
	const char *end = a + al, *p;
	char tmp[INET6_ADDRSTRLEN + 1];
	unsigned char addr[sizeof(struct in6_addr)];
	bool host_ok;
	if (*a == '[') {
		const char *close = memchr(a, ']', al);
		u->host = a + 1;
		u->host_len = close ? (size_t)(close - u->host) : 0;
		p = close ? close + 1 : end;
		host_ok = close && u->host_len > 0 && u->host_len < sizeof(tmp);
		if (host_ok) {
			memcpy(tmp, u->host, u->host_len);
			tmp[u->host_len] = '\0';
			host_ok = inet_pton(AF_INET6, tmp, addr) == 1;
		}
	} else {
		p = memchr(a, ':', al);
		if (p == NULL)
			p = end;
		u->host = a;
		u->host_len = (size_t)(p - a);
		host_ok = op_config__valid_hostname(u->host, u->host_len);
		/* All digits and dots is meant as an IPv4 address: it must be one. */
		if (host_ok && all_digits_dots(u->host, u->host_len)) {
			host_ok = u->host_len < sizeof(tmp);
			if (host_ok) {
				memcpy(tmp, u->host, u->host_len);
				tmp[u->host_len] = '\0';
				host_ok = inet_pton(AF_INET, tmp, addr) == 1;
			}
		}
	}
	if (!host_ok || (p < end && *p != ':')) {
		snprintf(why, n,
		         "'%.64s' has no valid host, expected a host name, an IPv4 address or "
		         "an [IPv6] address",
		         s);
		return false;
	}
	u->port = u->tls ? 8883 : 1883;
	if (p < end) {
		const char *q = p + 1;
		uint64_t v = 0;
		if (!op_config__digits(&q, &v) || q != end || v == 0 || v > 65535) {
			snprintf(why, n, "'%.64s' has port '%.*s', expected 1 to 65535", s,
			         (int)((size_t)(end - p - 1) > 16 ? 16 : (size_t)(end - p - 1)),
			         p + 1);
			return false;
		}
		u->port = (unsigned)v;
	}
	return true;
}

/* Paho's form of u: "tcp://host:port" or "ssl://[v6]:port". */
static char *uri_of(const struct mqtt_url *u)
{
	size_t n = u->host_len + sizeof("mqtts://[]:65535");
	char *uri = op_malloc(n);
	if (uri == NULL)
		return NULL;
	bool v6 = memchr(u->host, ':', u->host_len) != NULL;
	snprintf(uri, n, "%s://%s%.*s%s:%u", u->tls ? "ssl" : "tcp", v6 ? "[" : "",
	         (int)u->host_len, u->host, v6 ? "]" : "", u->port);
	return uri;
}

op_err op_config__mqtt_uri(const char *url, bool *tls, char **uri, char *why, size_t n)
{
	struct mqtt_url u;
	*uri = NULL;
	if (!parse_mqtt_url(url, &u, why, n))
		return OP_EINVAL;
	*tls = u.tls;
	*uri = uri_of(&u);
	return *uri ? OP_OK : OP_ENOMEM;
}

static bool broker_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > OP_CONFIG_BROKER_NAME_MAX)
		return false;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
			return false;
	}
	return true;
}

void op_config__broker_key(struct load *l, const char *name, const char *value)
{
	struct op_config_broker *b = &l->cfg.brokers[l->broker];
	int *seen = l->bseen[l->broker];
	char label[16 + OP_CONFIG_BROKER_NAME_MAX];
	snprintf(label, sizeof(label), "broker %s", b->name);
	for (size_t i = 0; i < N_BKEYS; i++) {
		if (strcmp(broker_keys[i].key, name) != 0)
			continue;
		if (seen[i]) {
			op_config__problem(l, l->line,
			                   "[%s] %s: duplicate key, first set on line %d", label,
			                   name, seen[i]);
			return;
		}
		seen[i] = l->line;
		op_config__set_value(l, b, label, l->line, &broker_keys[i], value);
		return;
	}
	op_config__unknown_key(l, label, "broker", broker_keys, N_BKEYS, name);
}

/* Handles a [broker NAME] header; name is what follows "broker", trimmed. */
void op_config__broker_header(struct load *l, const char *name)
{
	struct op_config *c = &l->cfg;
	/* After a failed allocation the last broker may lack its name. */
	if (l->nomem)
		return;
	if (!*name) {
		op_config__problem(l, l->line, "[broker]: missing name, expected [broker NAME]");
		return;
	}
	if (!broker_name_ok(name)) {
		op_config__problem(
		    l, l->line,
		    "[broker %.64s]: not a valid broker name, expected [broker NAME] with NAME "
		    "1 to %d letters, digits, '.', '_' or '-'",
		    name, OP_CONFIG_BROKER_NAME_MAX);
		return;
	}
	for (size_t i = 0; i < c->n_brokers; i++) {
		if (strcmp(c->brokers[i].name, name) == 0) {
			op_config__problem(
			    l, l->line, "[broker %s]: duplicate broker section, first on line %d",
			    name, c->brokers[i].line);
			return;
		}
	}
	if (c->n_brokers == OP_CONFIG_MAX_BROKERS) {
		op_config__problem(l, l->line,
		                   "[broker %s]: more than %d broker sections, expected at most %d",
		                   name, OP_CONFIG_MAX_BROKERS, OP_CONFIG_MAX_BROKERS);
		return;
	}
	if (c->n_brokers == l->bcap) {
		size_t cap = l->bcap ? l->bcap * 2 : 4;
		struct op_config_broker *nb = op_realloc(c->brokers, cap * sizeof(*nb));
		if (nb == NULL) {
			l->nomem = true;
			return;
		}
		c->brokers = nb;
		int(*ns)[N_BKEYS] = op_realloc(l->bseen, cap * sizeof(*ns));
		if (ns == NULL) {
			l->nomem = true;
			return;
		}
		l->bseen = ns;
		l->bcap = cap;
	}
	/* Counted before its fields are filled, so a failure half way is freed. */
	struct op_config_broker *b = &c->brokers[c->n_brokers];
	memset(b, 0, sizeof(*b));
	memset(l->bseen[c->n_brokers], 0, sizeof(l->bseen[0]));
	c->n_brokers++;
	b->line = l->line;
	b->name = op_strdup(name);
	if (b->name == NULL) {
		l->nomem = true;
		return;
	}
	char label[16 + OP_CONFIG_BROKER_NAME_MAX];
	snprintf(label, sizeof(label), "broker %s", name);
	for (size_t i = 0; i < N_BKEYS && !l->nomem; i++) {
		if (!(broker_keys[i].flags & OP_CONFIG_REQUIRED))
			op_config__set_value(l, b, label, 0, &broker_keys[i], broker_keys[i].def);
	}
	if (l->nomem)
		return;
	l->sec = SEC_BROKER;
	l->broker = c->n_brokers - 1;
}

/* The line key was set on in broker bi, 0 if not set. */
static int broker_key_line(const struct load *l, size_t bi, const char *key)
{
	for (size_t i = 0; i < N_BKEYS; i++) {
		if (strcmp(broker_keys[i].key, key) == 0)
			return l->bseen[bi][i];
	}
	return 0;
}

static bool is_set(const char *s)
{
	return s != NULL && *s;
}

/* Checks broker bi across its keys and fills the fields derived from its url. */
void op_config__broker_finish(struct load *l, size_t bi)
{
	struct op_config_broker *b = &l->cfg.brokers[bi];
	char label[16 + OP_CONFIG_BROKER_NAME_MAX], why[256];
	struct mqtt_url u;
	bool url_ok = false;
	memset(&u, 0, sizeof(u));
	snprintf(label, sizeof(label), "broker %s", b->name);
	int url_line = broker_key_line(l, bi, "url");
	if (!url_line) {
		op_config__problem(l, b->line,
		                   "[%s]: url is not set, expected mqtt:// or mqtts:// URL", label);
	} else if (b->url != NULL) {
		/* NULL when its value was refused, which was reported. */
		url_ok = parse_mqtt_url(b->url, &u, why, sizeof(why));
		if (!url_ok)
			op_config__problem(l, url_line, "[%s] url: %s", label, why);
	}
	if (url_ok) {
		b->tls = u.tls;
		b->port = u.port;
		b->host = op_strndup(u.host, u.host_len);
		b->uri = uri_of(&u);
		if (b->host == NULL || b->uri == NULL) {
			l->nomem = true;
			return;
		}
	}

	bool cert = is_set(b->cert_file), key = is_set(b->key_file);
	if (cert != key) {
		const char *set = cert ? "cert_file" : "key_file",
		           *unset = cert ? "key_file" : "cert_file";
		op_config__problem(l, broker_key_line(l, bi, set),
		                   "[%s] %s: set without %s, expected both or neither", label, set,
		                   unset);
	}
	const struct {
		const char *key, *path;
	} files[] = {
	    {"ca_file", b->ca_file}, {"cert_file", b->cert_file}, {"key_file", b->key_file}};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (!is_set(files[i].path))
			continue;
		int line = broker_key_line(l, bi, files[i].key);
		if (url_ok && !u.tls)
			op_config__problem(
			    l, line,
			    "[%s] %s: set for the plain url '%.64s', expected an mqtts:// url or "
			    "no %s",
			    label, files[i].key, b->url, files[i].key);
		else
			op_config__check_readable(l, line, label, files[i].key, files[i].path);
	}
}

void op_config__broker_free(struct op_config *c)
{
	for (size_t i = 0; i < c->n_brokers; i++) {
		struct op_config_broker *b = &c->brokers[i];
		op_config__free_values(b, broker_keys, N_BKEYS);
		op_free(b->name);
		op_free(b->host);
		op_free(b->uri);
	}
	op_free(c->brokers);
}

void op_config__broker_dump(const struct op_config *c, FILE *f)
{
	for (size_t i = 0; i < c->n_brokers; i++) {
		fprintf(f, "\n[broker %s]\n", c->brokers[i].name);
		op_config__put_values(f, &c->brokers[i], broker_keys, N_BKEYS, "broker");
	}
}

void op_config__broker_write_sample(FILE *f)
{
	fputs("\n# MQTT brokers that MQTT triggers and steps name ({\"broker\": \"plant\"}),\n"
	      "# one [broker NAME] section each, as many as needed; NAME is 1 to 64\n"
	      "# letters, digits, '.', '_' or '-'. url is required, the other keys have\n"
	      "# the defaults shown. For example:\n"
	      "\n#[broker plant]\n",
	      f);
	for (size_t i = 0; i < N_BKEYS; i++) {
		const struct op_config_key *k = &broker_keys[i];
		fprintf(f, "\n# %s\n", k->help);
		op_config__put_kv(f, "#", k->key, k->example ? k->example : k->def);
	}
}

/* What a [broker NAME] section is, for the docs and the man page (Markdown-style
 * `code` spans), and an example section. */
static const char broker_about[] =
    "Any number of `[broker NAME]` sections may be given, one per MQTT broker, each name once\n"
    "(NAME: 1 to 64 letters, digits, `.`, `_` or `-`). Pipelines refer to a broker by its name,\n"
    "as in an MQTT trigger's `{\"type\": \"mqtt\", \"config\": {\"broker\": \"plant\", ...}}`. "
    "Brokers must\n"
    "allow `max_inflight` QoS 1 messages in flight per client (mosquitto:\n"
    "`max_inflight_messages 1000` and a large `max_queued_messages`), otherwise QoS 1 delivery\n"
    "stalls. A reload (SIGHUP) applies added, changed and removed broker sections together\n"
    "with the pipelines: unchanged brokers keep their connections.\n";
static const char broker_example[] = "[broker plant]\n"
                                     "url = mqtts://broker.example.internal:8883\n"
                                     "ca_file = /etc/outpost/plant-ca.pem\n"
                                     "username = outpost\n"
                                     "password = change-me\n";

void op_config__broker_write_doc(FILE *f)
{
	fprintf(f, "\n### [broker NAME]\n\n%s\n```ini\n%s```\n\n", broker_about, broker_example);
	op_config__doc_table(f, broker_keys, N_BKEYS, "broker");
}

void op_config__broker_write_man(FILE *f)
{
	fputs("\n## [broker NAME]\n\n", f);
	op_config__man_text(f, broker_about);
	fprintf(f, "\n```\n%s```\n", broker_example);
	op_config__man_keys(f, broker_keys, N_BKEYS, "broker");
}
