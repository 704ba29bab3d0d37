/*
 * JSON values in and out of SQL: bind parameter text and exact decimals
 * (see db_int.h). A numeric column becomes a JSON number only when the
 * double that JSON readers will make of it is the same number; a longer
 * one stays a string with all its digits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "connectors/db/db_int.h"

#define PARAM_MAX (64u << 20)

op_err op_db__param_text(const cJSON *v, char **out)
{
	*out = NULL;
	if (v == NULL || cJSON_IsNull(v))
		return OP_OK;
	if (cJSON_IsString(v))
		return (*out = op_strdup(v->valuestring)) ? OP_OK : OP_ENOMEM;
	if (cJSON_IsBool(v))
		return (*out = op_strdup(cJSON_IsTrue(v) ? "true" : "false")) ? OP_OK : OP_ENOMEM;
	struct op_buf b;
	op_buf_init(&b, PARAM_MAX);
	op_err rc = op_json_append(&b, v, OP_JSON_COMPACT);
	if (rc == OP_OK && (*out = op_buf_take(&b)) == NULL)
		rc = OP_ENOMEM;
	op_buf_fini(&b);
	return rc;
}

/* The digits of a decimal text without sign, leading zeros, the point and
 * trailing fraction zeros, with the exponent that places them: "-012.50"
 * -> "125", -1. False if s is not a plain decimal. */
static bool normalize(const char *s, char *digits, size_t cap, long *exp, bool *neg)
{
	size_t k = 0;
	long point = -1, n = 0;
	*neg = *s == '-';
	if (*s == '-' || *s == '+')
		s++;
	for (; *s && *s != 'e' && *s != 'E'; s++) {
		if (*s == '.') {
			if (point >= 0)
				return false;
			point = n;
			continue;
		}
		if (*s < '0' || *s > '9' || k + 1 >= cap)
			return false;
		n++;
		if (k == 0 && *s == '0')
			continue; /* leading zeros: the exponent below accounts for them */
		digits[k++] = *s;
	}
	long e = 0;
	if (*s == 'e' || *s == 'E') {
		char *end = NULL;
		e = strtol(s + 1, &end, 10);
		if (end == s + 1 || *end != '\0')
			return false;
	}
	/* Position of the last kept digit relative to the decimal point. */
	long frac = point >= 0 ? n - point : 0;
	long trailing = 0;
	while (k > 0 && digits[k - 1] == '0') {
		k--;
		trailing++;
	}
	digits[k] = '\0';
	*exp = e - frac + trailing;
	if (k == 0) {
		*exp = 0;
		*neg = false;
	}
	return n > 0;
}

/* Significant digits of a plain decimal ("-0012.340" has 5), or 99 when
 * s has an exponent or anything else. */
static int sig_digits(const char *s)
{
	int n = 0;
	bool lead = true;
	if (*s == '-')
		s++;
	for (; *s; s++) {
		if (*s == '.')
			continue;
		if (*s < '0' || *s > '9')
			return 99;
		if (lead && *s == '0')
			continue;
		lead = false;
		n++;
	}
	return n;
}

cJSON *op_db__decimal(const char *s)
{
	char *end = NULL;
	double d = strtod(s, &end);
	if (end == s || *end != '\0' || d != d || d - d != 0)
		return cJSON_CreateString(s);
	/* Up to 15 significant digits a double always holds exactly (DBL_DIG). */
	if (sig_digits(s) <= 15)
		return cJSON_CreateNumber(d);
	char back[40], a[64], b[64];
	op_json_num_format(d, back, sizeof(back));
	long ea = 0, eb = 0;
	bool na = false, nb = false;
	if (normalize(s, a, sizeof(a), &ea, &na) && normalize(back, b, sizeof(b), &eb, &nb) &&
	    strcmp(a, b) == 0 && ea == eb && na == nb)
		return cJSON_CreateNumber(d);
	return cJSON_CreateString(s);
}

op_err op_db__sqlstate_class(const char *st)
{
	if (st == NULL || strlen(st) != 5)
		return OP_EIO;
	if (strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
	    strcmp(st, "57P03") == 0)
		return OP_ENOCONN;
	if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "55P03") == 0)
		return OP_ERETRY; /* serialization failure, deadlock, lock not available */
	if (strcmp(st, "53100") == 0)
		return OP_EFULL; /* disk full */
	if (strncmp(st, "53", 2) == 0)
		return OP_EBUSY; /* too many connections, out of memory on the server */
	if (strcmp(st, "57014") == 0 || strcmp(st, "HYT00") == 0 || strcmp(st, "HYT01") == 0)
		return OP_ETIMEOUT; /* cancelled at our deadline; ODBC's timeouts */
	if (strncmp(st, "28", 2) == 0 || strcmp(st, "42501") == 0)
		return OP_EAUTH;
	if (strncmp(st, "42", 2) == 0 || strncmp(st, "22", 2) == 0 || strncmp(st, "3F", 2) == 0 ||
	    strncmp(st, "07", 2) == 0)
		return OP_EINVAL; /* syntax, undefined objects, bad data, bad parameters */
	if (strncmp(st, "IM", 2) == 0)
		return OP_ECONFIG; /* ODBC: no such driver or data source */
	if (strncmp(st, "XX", 2) == 0 || strncmp(st, "58", 2) == 0)
		return OP_EIO;
	return OP_EREJECTED; /* constraint violations (23), raise_exception (P0001), ... */
}
