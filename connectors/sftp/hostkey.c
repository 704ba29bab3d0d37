/*
 * Host key verification for the sftp step: SHA-256 fingerprints as
 * ssh-keygen prints them, OpenSSH known_hosts files, and the host key
 * algorithm preference that makes the server show the key we can check.
 *
 * Invariant: a session goes past the handshake only when the server's key
 * matches every check configured (the fingerprint, known_hosts, or both);
 * there is no mode without a check. The preference comes first because an
 * SSH server shows one of its keys, the one the client's preference picks:
 * with known_hosts, the types it holds for that host (ed25519 first); with
 * a fingerprint alone, ssh-ed25519 first as OpenSSH does (libssh2 1.10 on its
 * own would pick ECDSA).
 */
#define OP_LOG_MODULE "sftp"
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/file.h"
#include "agent/core/log.h"
#include "connectors/sftp/sftp_int.h"

#define KNOWN_HOSTS_MAX (4u << 20)
#define FP_CHARS        43 /* base64 of 32 bytes, without padding */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ---- fingerprints ---- */

op_err op_sftp_fingerprint_parse(const char *s, unsigned char out[OP_SFTP_FP_LEN])
{
	if (strncmp(s, "SHA256:", 7) != 0)
		return OP_EINVAL;
	s += 7;
	size_t n = strlen(s);
	/* 32 bytes are 43 characters and one '=' of padding, if any. */
	if (n == FP_CHARS + 1 && s[FP_CHARS] == '=')
		n--;
	if (n != FP_CHARS)
		return OP_EINVAL;
	unsigned long acc = 0;
	int bits = 0;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const char *p = s[i] ? strchr(b64, s[i]) : NULL;
		if (p == NULL)
			return OP_EINVAL;
		acc = (acc << 6) | (unsigned long)(p - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[k++] = (unsigned char)(acc >> bits);
			acc &= (1ul << bits) - 1;
		}
	}
	/* The two bits left over are zero in what ssh-keygen prints. */
	return k == OP_SFTP_FP_LEN && acc == 0 ? OP_OK : OP_EINVAL;
}

void op_sftp_fingerprint_text(const unsigned char fp[OP_SFTP_FP_LEN], char out[OP_SFTP_FP_TEXT])
{
	memcpy(out, "SHA256:", 7);
	size_t k = 7;
	unsigned long acc = 0;
	int bits = 0;
	for (size_t i = 0; i < OP_SFTP_FP_LEN; i++) {
		acc = (acc << 8) | fp[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[k++] = b64[(acc >> bits) & 63];
		}
	}
	if (bits)
		out[k++] = b64[(acc << (6 - bits)) & 63];
	out[k] = '\0';
}

bool op_sftp_fingerprint_equal(const unsigned char a[OP_SFTP_FP_LEN],
                               const unsigned char b[OP_SFTP_FP_LEN])
{
	volatile unsigned char d = 0;
	for (size_t i = 0; i < OP_SFTP_FP_LEN; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

/* ---- key types ---- */

static const struct {
	int hostkey;  /* LIBSSH2_HOSTKEY_TYPE_* */
	int knownkey; /* LIBSSH2_KNOWNHOST_KEY_* */
	const char *name;
} types[] = {
    /* In the order we prefer them. ssh-rsa is SHA-1, which OpenSSH 8.8 and
     * later refuse: only servers that still allow it get that far. */
    {LIBSSH2_HOSTKEY_TYPE_ED25519, LIBSSH2_KNOWNHOST_KEY_ED25519, "ssh-ed25519"},
    {LIBSSH2_HOSTKEY_TYPE_ECDSA_256, LIBSSH2_KNOWNHOST_KEY_ECDSA_256, "ecdsa-sha2-nistp256"},
    {LIBSSH2_HOSTKEY_TYPE_ECDSA_384, LIBSSH2_KNOWNHOST_KEY_ECDSA_384, "ecdsa-sha2-nistp384"},
    {LIBSSH2_HOSTKEY_TYPE_ECDSA_521, LIBSSH2_KNOWNHOST_KEY_ECDSA_521, "ecdsa-sha2-nistp521"},
    {LIBSSH2_HOSTKEY_TYPE_RSA, LIBSSH2_KNOWNHOST_KEY_SSHRSA, "ssh-rsa"},
};
#define N_TYPES (sizeof(types) / sizeof(types[0]))

/* True when known_hosts holds a key of that type for host:port: a probe
 * with a key no host has answers "mismatch" exactly then (hashed host
 * names included). */
static bool knows_type(LIBSSH2_KNOWNHOSTS *kh, const char *host, int port, int knownkey)
{
	static const char nokey[4] = {0};
	int r = libssh2_knownhost_checkp(
	    kh, host, port, nokey, sizeof(nokey),
	    LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | knownkey, NULL);
	return r == LIBSSH2_KNOWNHOST_CHECK_MISMATCH;
}

/* Reads path into kh line by line. Markers (@cert-authority, @revoked)
 * are refused rather than silently ignored: a @revoked line libssh2 does
 * not understand must not let the key in. */
static op_err read_known_hosts(struct op_sftp_conn *s, LIBSSH2_KNOWNHOSTS *kh, const char *path,
                               struct op_sftp_fail *f)
{
	char *text = NULL, why[256] = "";
	size_t len = 0;
	op_err rc = op_file_read(path, KNOWN_HOSTS_MAX, &text, &len, why, sizeof(why));
	if (rc == OP_ENOMEM)
		return op_sftp__fail(f, rc, "NOMEM", "out of memory");
	if (rc)
		return op_sftp__fail(f, OP_ECONFIG, "SFTP_HOST_KEY", "%s: knownHosts %s: %s",
		                     s->where, path, why);
	size_t lineno = 0;
	for (char *line = text; rc == OP_OK && line < text + len;) {
		char *nl = memchr(line, '\n', (size_t)(text + len - line));
		char *end = nl ? nl + 1 : text + len;
		lineno++;
		const char *p = line;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p < end && *p == '@') {
			rc = op_sftp__fail(f, OP_ECONFIG, "SFTP_HOST_KEY",
			                   "%s: knownHosts %s line %zu: markers (@cert-authority, "
			                   "@revoked) are not supported",
			                   s->where, path, lineno);
		} else if (memchr(line, '\0', (size_t)(end - line)) ||
		           libssh2_knownhost_readline(kh, line, (size_t)(end - line),
		                                      LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0) {
			rc = op_sftp__fail(f, OP_ECONFIG, "SFTP_HOST_KEY",
			                   "%s: knownHosts %s line %zu: not a known_hosts line",
			                   s->where, path, lineno);
		}
		line = end;
	}
	op_free(text);
	return rc;
}

op_err op_sftp__hostkey_prepare(const struct op_sftp *c, struct op_sftp_conn *s, const char *host,
                                int port, struct op_sftp__hostkeys *hk, struct op_sftp_fail *f)
{
	hk->kh = NULL;
	char prefs[160] = "";
	size_t n = 0;
	if (c->known_hosts) {
		hk->kh = libssh2_knownhost_init(s->ss);
		if (hk->kh == NULL)
			return op_sftp__fail(f, OP_ENOMEM, "NOMEM", "out of memory");
		op_err rc = read_known_hosts(s, hk->kh, c->known_hosts, f);
		if (rc)
			return rc;
		for (size_t i = 0; i < N_TYPES; i++) {
			if (knows_type(hk->kh, host, port, types[i].knownkey))
				n += (size_t)snprintf(prefs + n, sizeof(prefs) - n, "%s%s",
				                      n ? "," : "", types[i].name);
		}
	}
	/* Not in known_hosts: the check after the handshake refuses it, and
	 * says which key it saw. */
	if (n == 0) {
		for (size_t i = 0; i < N_TYPES; i++)
			n += (size_t)snprintf(prefs + n, sizeof(prefs) - n, "%s%s", i ? "," : "",
			                      types[i].name);
	}
	if (libssh2_session_method_pref(s->ss, LIBSSH2_METHOD_HOSTKEY, prefs) != 0)
		return op_sftp__fail(f, OP_EINTERNAL, "SFTP_CONNECT",
		                     "%s: libssh2 refused the host key preference %s", s->where,
		                     prefs);
	return OP_OK;
}

static const char *type_name(int hostkey)
{
	for (size_t i = 0; i < N_TYPES; i++) {
		if (types[i].hostkey == hostkey)
			return types[i].name;
	}
	return hostkey == LIBSSH2_HOSTKEY_TYPE_DSS ? "ssh-dss" : "unknown";
}

static int known_type(int hostkey)
{
	for (size_t i = 0; i < N_TYPES; i++) {
		if (types[i].hostkey == hostkey)
			return types[i].knownkey;
	}
	return hostkey == LIBSSH2_HOSTKEY_TYPE_DSS ? LIBSSH2_KNOWNHOST_KEY_SSHDSS
	                                           : LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
}

op_err op_sftp__hostkey_check(const struct op_sftp *c, struct op_sftp_conn *s, const char *host,
                              int port, const struct op_sftp__hostkeys *hk, struct op_sftp_fail *f)
{
	size_t klen = 0;
	int ktype = 0;
	const char *key = libssh2_session_hostkey(s->ss, &klen, &ktype);
	const char *hash = libssh2_hostkey_hash(s->ss, LIBSSH2_HOSTKEY_HASH_SHA256);
	if (key == NULL || hash == NULL || klen == 0)
		return op_sftp__fail(f, OP_EAUTH, "SFTP_HOST_KEY",
		                     "%s: the server showed no host key we can check; refused",
		                     s->where);
	unsigned char seen[OP_SFTP_FP_LEN];
	memcpy(seen, hash, sizeof(seen));
	char seen_text[OP_SFTP_FP_TEXT];
	op_sftp_fingerprint_text(seen, seen_text);
	const char *tname = type_name(ktype);
	if (c->has_fp && !op_sftp_fingerprint_equal(seen, c->fp)) {
		char want[OP_SFTP_FP_TEXT];
		op_sftp_fingerprint_text(c->fp, want);
		return op_sftp__fail(f, OP_EAUTH, "SFTP_HOST_KEY",
		                     "%s: host key mismatch: the server's %s key is %s, hostKey "
		                     "expects %s; refused",
		                     s->where, tname, seen_text, want);
	}
	if (hk->kh) {
		int r = libssh2_knownhost_checkp(
		    hk->kh, host, port, key, klen,
		    LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | known_type(ktype),
		    NULL);
		if (r == LIBSSH2_KNOWNHOST_CHECK_MISMATCH)
			return op_sftp__fail(f, OP_EAUTH, "SFTP_HOST_KEY",
			                     "%s: host key mismatch: the server's %s key %s is not "
			                     "the one knownHosts %s holds for it; refused",
			                     s->where, tname, seen_text, c->known_hosts);
		if (r != LIBSSH2_KNOWNHOST_CHECK_MATCH)
			return op_sftp__fail(
			    f, OP_EAUTH, "SFTP_HOST_KEY",
			    "%s: not in knownHosts %s (the server's %s key is %s); "
			    "refused",
			    s->where, c->known_hosts, tname, seen_text);
	}
	OP_LOGD("%s: host key %s %s verified", s->where, tname, seen_text);
	return OP_OK;
}

void op_sftp__hostkeys_fini(struct op_sftp__hostkeys *hk)
{
	if (hk->kh)
		libssh2_knownhost_free(hk->kh);
	hk->kh = NULL;
}
