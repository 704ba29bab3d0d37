/*
 * JSON value semantics for validation: the JSON data model's equality (which
 * differs from cJSON_Compare: 1 equals 1.0 and object member order does not
 * matter), a hash consistent with it for uniqueItems on long arrays, type
 * classification (a number with no fractional part is an "integer"), the
 * multipleOf test done with tolerance for binary floating point, and the
 * length of a string in Unicode code points. Invariant: equal values hash
 * equal, and no function here allocates.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/validate/schema_int.h"

unsigned op_schema__type_of(const cJSON *v)
{
	switch (v->type & 0xff) {
	case cJSON_NULL:
		return OP_SCHEMA__T_NULL;
	case cJSON_True:
	case cJSON_False:
		return OP_SCHEMA__T_BOOLEAN;
	case cJSON_Object:
		return OP_SCHEMA__T_OBJECT;
	case cJSON_Array:
		return OP_SCHEMA__T_ARRAY;
	case cJSON_String:
		return OP_SCHEMA__T_STRING;
	case cJSON_Number:
		return OP_SCHEMA__T_NUMBER |
		       (op_schema__is_integer(v->valuedouble) ? OP_SCHEMA__T_INTEGER : 0u);
	default:
		return 0;
	}
}

bool op_schema__is_integer(double d)
{
	return isfinite(d) && floor(d) == d;
}

static const char *str_of(const cJSON *v)
{
	return v->valuestring != NULL ? v->valuestring : "";
}

bool op_schema__json_equal(const cJSON *a, const cJSON *b)
{
	int ta = a->type & 0xff, tb = b->type & 0xff;
	if (ta != tb)
		return false;
	switch (ta) {
	case cJSON_Number:
		return a->valuedouble == b->valuedouble;
	case cJSON_String:
		return strcmp(str_of(a), str_of(b)) == 0;
	case cJSON_Array: {
		const cJSON *x = a->child, *y = b->child;
		for (; x != NULL && y != NULL; x = x->next, y = y->next)
			if (!op_schema__json_equal(x, y))
				return false;
		return x == NULL && y == NULL;
	}
	case cJSON_Object: {
		size_t na = 0, nb = 0;
		const cJSON *x;
		for (x = a->child; x != NULL; x = x->next)
			na++;
		for (x = b->child; x != NULL; x = x->next)
			nb++;
		if (na != nb)
			return false;
		for (x = a->child; x != NULL; x = x->next) {
			const cJSON *y = x->string != NULL
			                     ? cJSON_GetObjectItemCaseSensitive(b, x->string)
			                     : NULL;
			if (y == NULL || !op_schema__json_equal(x, y))
				return false;
		}
		return true;
	}
	default:
		return true; /* null, true, false: the type is the value */
	}
}

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static uint64_t hash_bytes(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

uint64_t op_schema__json_hash(const cJSON *a)
{
	int t = a->type & 0xff;
	uint64_t h = (uint64_t)t * 0x9e3779b97f4a7c15ULL;
	switch (t) {
	case cJSON_Number: {
		double d = a->valuedouble;
		uint64_t bits;
		if (d == 0)
			d = 0; /* -0.0 equals 0.0 */
		memcpy(&bits, &d, sizeof(bits));
		return mix(h ^ bits);
	}
	case cJSON_String:
		return mix(h ^ hash_bytes(str_of(a)));
	case cJSON_Array:
		for (const cJSON *x = a->child; x != NULL; x = x->next)
			h = mix(h * 31 + op_schema__json_hash(x));
		return h;
	case cJSON_Object: {
		/* Order-independent: a sum of per-member hashes. */
		uint64_t sum = 0;
		for (const cJSON *x = a->child; x != NULL; x = x->next)
			sum += mix(hash_bytes(x->string != NULL ? x->string : "") ^
			           (op_schema__json_hash(x) * 0x9e3779b97f4a7c15ULL));
		return mix(h ^ sum);
	}
	default:
		return mix(h);
	}
}

size_t op_schema__utf8_len(const char *s)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((*p & 0xc0) != 0x80)
			n++;
	return n;
}

bool op_schema__multiple_of(double x, double m)
{
	if (!isfinite(x))
		return false;
	/* Exact when both are integers a double holds exactly. */
	if (op_schema__is_integer(x) && op_schema__is_integer(m) && fabs(x) < 9007199254740992.0 &&
	    m < 9007199254740992.0)
		return fmod(x, m) == 0;
	double q = x / m;
	/* The quotient overflows (1e308 / 0.5): fmod() is exact and cannot. */
	if (!isfinite(q))
		return fmod(x, m) == 0;
	/* x and m come from decimal text, so each carries a relative error of
	 * up to half an ulp, and the division adds another: a true multiple
	 * gives a quotient within a few ulps of an integer (0.0075 / 0.0001 is
	 * 74.99999999999999). Past 2^53 every double is an integer. */
	double r = nearbyint(q);
	return fabs(q - r) <= 4 * DBL_EPSILON * fabs(q);
}

void op_schema__fmt_num(double d, char *buf, size_t n)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, n, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			return;
	}
}
