/*
 * Number functions of the expression language: TONUMBER, ROUND, ABS, FLOOR,
 * CEIL, MIN, MAX, SUM, AVG.
 *
 * Key invariant: every result is a finite double. ROUND rounds the shortest
 * decimal text of a number (the digits a user sees), half away from zero, so
 * ROUND(1.005, 2) is 1.01 even though the double nearest 1.005 lies below it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/expr/expr_int.h"

/* ---- TONUMBER ---- */

/* True when s[0..len) is a decimal number: [+-]digits[.digits][e[+-]digits]. */
static bool number_syntax(const char *s, size_t len)
{
	size_t i = 0, digits = 0;
	if (i < len && (s[i] == '+' || s[i] == '-'))
		i++;
	while (i < len && s[i] >= '0' && s[i] <= '9') {
		i++;
		digits++;
	}
	if (i < len && s[i] == '.') {
		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			i++;
			digits++;
		}
	}
	if (digits == 0)
		return false;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		size_t ed = 0;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			i++;
			ed++;
		}
		if (ed == 0)
			return false;
	}
	return i == len;
}

static op_err fn_tonumber(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                          size_t argc, struct op_xv *out)
{
	(void)argc;
	struct op_xv *a = &argv[0];
	switch (a->kind) {
	case OP_XV_NULL:
		op_expr__xv_null(out);
		return OP_OK;
	case OP_XV_NUM:
		op_expr__xv_num(out, a->n);
		return OP_OK;
	case OP_XV_BOOL:
		op_expr__xv_num(out, a->b ? 1 : 0);
		return OP_OK;
	case OP_XV_STR:
		break;
	default:
		return op_expr__fail(c, OP_EINVAL,
		                     "%s: argument 1: expected a string or a number, got %s",
		                     call->call.fn->name, op_expr__xv_type(a));
	}
	const char *s = a->s;
	size_t len = a->len;
	while (len && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) {
		s++;
		len--;
	}
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n' ||
	               s[len - 1] == '\r'))
		len--;
	char tmp[512];
	if (len >= sizeof(tmp) || !number_syntax(s, len))
		return op_expr__fail(c, OP_EINVAL, "%s: argument 1: \"%.*s%s\" is not a number",
		                     call->call.fn->name, (int)(a->len > 40 ? 40 : a->len), a->s,
		                     a->len > 40 ? "..." : "");
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	double d = strtod(tmp, NULL);
	if (!isfinite(d))
		return op_expr__fail(c, OP_EINVAL, "%s: argument 1: %s is out of range",
		                     call->call.fn->name, tmp);
	op_expr__xv_num(out, d);
	return OP_OK;
}

/* ---- ROUND, ABS, FLOOR, CEIL ---- */

/* Rounds x to `digits` decimals (negative: tens, hundreds...), half away from zero. */
static double round_decimal(double x, int digits)
{
	if (x == 0 || !isfinite(x))
		return x;
	char buf[48];
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*e", prec - 1, x);
		if (strtod(buf, NULL) == x)
			break;
	}
	/* buf is "[-]d[.ddd]e[+-]xx": collect the digits and the exponent. */
	const char *p = buf;
	bool neg = *p == '-';
	if (neg)
		p++;
	char dig[24];
	int nd = 0;
	for (; *p && *p != 'e'; p++) {
		if (*p >= '0' && *p <= '9' && nd < 20)
			dig[nd++] = *p;
	}
	int exp10 = *p == 'e' ? (int)strtol(p + 1, NULL, 10) : 0;
	int keep = exp10 + 1 + digits; /* significant digits that stay */
	if (keep >= nd)
		return x;
	if (keep < 0)
		return 0;
	bool up = dig[keep] >= '5';
	char m[32];
	int nm = keep;
	memcpy(m, dig, (size_t)keep);
	for (int i = keep - 1; up && i >= 0; i--) {
		if (m[i] == '9') {
			m[i] = '0';
		} else {
			m[i]++;
			up = false;
		}
	}
	if (up) {
		/* 9.99 -> 10.0: a carry out of the first digit. */
		memmove(m + 1, m, (size_t)nm);
		m[0] = '1';
		nm++;
		exp10++;
		keep++;
	}
	if (nm == 0)
		return 0;
	char txt[64];
	snprintf(txt, sizeof(txt), "%s%.*se%d", neg ? "-" : "", nm, m, exp10 - keep + 1);
	double r = strtod(txt, NULL);
	return r == 0 ? 0 : r;
}

static op_err fn_round(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                       size_t argc, struct op_xv *out)
{
	double x;
	long digits = 0;
	op_err e = op_expr__want_num(c, call, 0, &argv[0], &x);
	if (e == OP_OK && argc > 1)
		e = op_expr__want_int(c, call, 1, &argv[1], -15, 15, &digits);
	if (e != OP_OK)
		return e;
	op_expr__xv_num(out, round_decimal(x, (int)digits));
	return OP_OK;
}

static op_err unary(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                    struct op_xv *out, double (*f)(double))
{
	double x;
	op_err e = op_expr__want_num(c, call, 0, &argv[0], &x);
	if (e != OP_OK)
		return e;
	double r = f(x);
	op_expr__xv_num(out, r == 0 ? 0 : r);
	return OP_OK;
}

static op_err fn_abs(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                     size_t argc, struct op_xv *out)
{
	(void)argc;
	return unary(c, call, argv, out, fabs);
}

static op_err fn_floor(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                       size_t argc, struct op_xv *out)
{
	(void)argc;
	return unary(c, call, argv, out, floor);
}

static op_err fn_ceil(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                      size_t argc, struct op_xv *out)
{
	(void)argc;
	return unary(c, call, argv, out, ceil);
}

/* ---- MIN, MAX, SUM, AVG ---- */

enum agg { AGG_MIN, AGG_MAX, AGG_SUM, AGG_AVG };

struct acc {
	double v;
	size_t n;
};

static void acc_add(struct acc *a, int op, double x)
{
	bool first = a->n++ == 0;
	switch (op) {
	case AGG_MIN:
		a->v = first || x < a->v ? x : a->v;
		break;
	case AGG_MAX:
		a->v = first || x > a->v ? x : a->v;
		break;
	default:
		a->v = first ? x : a->v + x;
		break;
	}
}

/*
 * Each argument is a number, null (skipped) or an array of numbers and
 * nulls. The result of no numbers is null, except SUM which gives 0.
 */
static op_err aggregate(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                        size_t argc, struct op_xv *out, int op)
{
	struct acc a = {0, 0};
	for (size_t i = 0; i < argc; i++) {
		const struct op_xv *x = &argv[i];
		if (x->kind == OP_XV_NULL)
			continue;
		if (x->kind == OP_XV_NUM) {
			acc_add(&a, op, x->n);
			continue;
		}
		if (x->kind != OP_XV_JSON || !cJSON_IsArray(x->j))
			return op_expr__fail(c, OP_EINVAL,
			                     "%s: argument %zu: expected a number or an array of "
			                     "numbers, got %s",
			                     call->call.fn->name, i + 1, op_expr__xv_type(x));
		size_t k = 0;
		for (const cJSON *it = x->j->child; it; it = it->next, k++) {
			if (cJSON_IsNull(it))
				continue;
			if (!cJSON_IsNumber(it)) {
				struct op_xv t;
				op_expr__xv_of(&t, it);
				return op_expr__fail(
				    c, OP_EINVAL,
				    "%s: argument %zu: item %zu: expected a number, got "
				    "%s",
				    call->call.fn->name, i + 1, k, op_expr__xv_type(&t));
			}
			acc_add(&a, op, it->valuedouble);
		}
	}
	if (a.n == 0) {
		if (op == AGG_SUM)
			op_expr__xv_num(out, 0);
		else
			op_expr__xv_null(out);
		return OP_OK;
	}
	double r = op == AGG_AVG ? a.v / (double)a.n : a.v;
	if (!isfinite(r))
		return op_expr__fail(c, OP_EINVAL, "%s: result out of range", call->call.fn->name);
	op_expr__xv_num(out, r);
	return OP_OK;
}

static op_err fn_min(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                     size_t argc, struct op_xv *out)
{
	return aggregate(c, call, argv, argc, out, AGG_MIN);
}

static op_err fn_max(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                     size_t argc, struct op_xv *out)
{
	return aggregate(c, call, argv, argc, out, AGG_MAX);
}

static op_err fn_sum(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                     size_t argc, struct op_xv *out)
{
	return aggregate(c, call, argv, argc, out, AGG_SUM);
}

static op_err fn_avg(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                     size_t argc, struct op_xv *out)
{
	return aggregate(c, call, argv, argc, out, AGG_AVG);
}

const struct op_expr__fn op_expr__fns_num[] = {
    {"TONUMBER", 1, 1, false, fn_tonumber, NULL, NULL},
    {"ROUND", 1, 2, false, fn_round, NULL, NULL},
    {"ABS", 1, 1, false, fn_abs, NULL, NULL},
    {"FLOOR", 1, 1, false, fn_floor, NULL, NULL},
    {"CEIL", 1, 1, false, fn_ceil, NULL, NULL},
    {"MIN", 1, OP_FN_VARIADIC, false, fn_min, NULL, NULL},
    {"MAX", 1, OP_FN_VARIADIC, false, fn_max, NULL, NULL},
    {"SUM", 1, OP_FN_VARIADIC, false, fn_sum, NULL, NULL},
    {"AVG", 1, OP_FN_VARIADIC, false, fn_avg, NULL, NULL},
    {NULL, 0, 0, false, NULL, NULL, NULL},
};
