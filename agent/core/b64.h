/*
 * Base64 and base64url (RFC 4648), strict: one spelling per byte string.
 */
#ifndef OP_CORE_B64_H
#define OP_CORE_B64_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Strict base64 decoding: url selects the base64url alphabet without padding
 * (RFC 7515), otherwise the standard alphabet with its "=" padding. Any
 * other byte, a bad length or non-zero unused bits is refused (false).
 * Decodes into out of cap bytes; false too when it would not fit.
 */
bool op_b64_decode(const char *s, size_t len, bool url, unsigned char *out, size_t cap,
                   size_t *outlen);
/* The value of a hexadecimal digit (either case), or -1. */
int op_hex_value(int c);

/* Largest decoded size of len encoded characters. */
size_t op_b64_decoded_max(size_t len);
/* Encodes (standard with padding, or url without); returns the length or 0 if cap is short. */
size_t op_b64_encode(const unsigned char *in, size_t n, bool url, char *out, size_t cap);

#endif
