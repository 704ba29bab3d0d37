/*
 * UTF-8 validation (RFC 3629), shared by the expression functions and the
 * triggers that turn bytes into text.
 */
#ifndef OP_CORE_UTF8_H
#define OP_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (1-4) of the valid UTF-8 sequence at s (len bytes), 0 if invalid. */
size_t op_utf8_valid_len(const unsigned char *s, size_t len);

/* True when all len bytes of s are valid UTF-8 (NUL bytes included). */
bool op_utf8_valid(const char *s, size_t len);

#endif
