/*
 * Strict base64 and base64url. wolfSSL's Base64_Decode skips line breaks and
 * accepts the standard alphabet only, but a JWS segment must be base64url
 * without padding, and a token must have exactly one spelling: so this decoder
 * refuses every byte outside the alphabet, lengths that cannot occur, and
 * non-zero unused bits in the last character (which would otherwise let
 * several strings decode to the same bytes). Not a cryptographic primitive:
 * plain data coding.
 */
#include <stdint.h>

#include "agent/core/b64.h"

static const char std_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int sextet(unsigned char c, bool url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

size_t op_b64_decoded_max(size_t len)
{
	return len / 4 * 3 + 3;
}

bool op_b64_decode(const char *s, size_t len, bool url, unsigned char *out, size_t cap,
                   size_t *outlen)
{
	*outlen = 0;
	if (!url && len % 4 == 0 && len > 0) {
		/* Standard form: up to two "=" of padding, only at the end. */
		if (s[len - 1] == '=')
			len--;
		if (len > 0 && s[len - 1] == '=')
			len--;
	} else if (!url && len % 4 != 0) {
		return false; /* the standard form is always padded here */
	}
	if (len % 4 == 1)
		return false;
	size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
	if (need > cap)
		return false;
	size_t o = 0;
	uint32_t acc = 0;
	unsigned bits = 0;
	for (size_t i = 0; i < len; i++) {
		int v = sextet((unsigned char)s[i], url);
		if (v < 0)
			return false;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		return false; /* non-canonical: unused low bits set */
	*outlen = o;
	return true;
}

size_t op_b64_encode(const unsigned char *in, size_t n, bool url, char *out, size_t cap)
{
	const char *a = url ? url_alpha : std_alpha;
	size_t full = (n + 2) / 3 * 4;
	size_t want = url ? (n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0)) : full;
	if (want + 1 > cap)
		return 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = a[(v >> 6) & 63];
		else if (!url)
			out[o++] = '=';
		if (i + 2 < n)
			out[o++] = a[v & 63];
		else if (!url)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

int op_hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
