/*
 * Unit tests of the metrics registry (agent/daemon/metrics.h): the exact
 * exposition text, validation, caps, exact totals under concurrent updates,
 * scrape callbacks and out-of-memory at every allocation.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/buf.h"
#include "agent/daemon/metrics.h"
#include "tests/unit/test.h"

/* Renders m and asserts the text equals want. */
static void assert_render(struct op_metrics *m, const char *want)
{
	struct op_buf b;
	op_buf_init(&b, 1 << 24);
	ck_assert_int_eq(op_metrics_render(m, &b), OP_OK);
	ck_assert_str_eq(op_buf_str(&b), want);
	op_buf_fini(&b);
}

START_TEST(counter_without_and_with_labels)
{
	struct op_metrics *m = op_metrics_new();
	ck_assert_ptr_nonnull(m);
	/* Nothing registered: empty text. */
	assert_render(m, "");

	struct op_metric *plain = op_metrics_counter(m, "outpost_up_total", "Starts.", NULL);
	ck_assert_ptr_nonnull(plain);
	static const char *const labels[] = {"pipeline", "status", NULL};
	struct op_metric *ex =
	    op_metrics_counter(m, "outpost_executions_total", "Executions by outcome.", labels);
	ck_assert_ptr_nonnull(ex);
	/* The unlabelled series shows 0 from the start; the labelled family is hidden. */
	assert_render(m, "# HELP outpost_up_total Starts.\n"
	                 "# TYPE outpost_up_total counter\n"
	                 "outpost_up_total 0\n");

	struct op_metric_child *c = op_metric_with(plain, NULL);
	ck_assert_ptr_nonnull(c);
	op_metric_add(c, 1);
	op_metric_add(c, 2);
	op_metric_add(c, -5);  /* a counter never goes down */
	op_metric_add(c, NAN); /* nor becomes NaN */
	op_metric_set(c, 100); /* set is for gauges */
	op_metric_observe(c, 1);
	ck_assert(op_metric_value(c) == 3);
	/* A total kept elsewhere raises the counter, never lowers it. */
	op_metric_set_total(c, 10);
	ck_assert(op_metric_value(c) == 10);
	op_metric_set_total(c, 4);
	op_metric_set_total(c, NAN);
	ck_assert(op_metric_value(c) == 10);
	op_metric_add(c, -7);
	op_metric_set_total(c, 3);
	ck_assert(op_metric_value(c) == 10);
	op_metric_add(c, 1);
	op_metric_set_total(c, 3);
	ck_assert(op_metric_value(c) == 11);
	/* Not for gauges. */
	struct op_metric *g = op_metrics_gauge(m, "outpost_g", "G.", NULL);
	op_metric_set_total(op_metric_with(g, NULL), 5);
	ck_assert(op_metric_value(op_metric_with(g, NULL)) == 0);

	const char *ok[] = {"orders", "ok"};
	const char *err[] = {"orders", "error"};
	const char *ok2[] = {"invoices", "ok"};
	struct op_metric_child *s1 = op_metric_with(ex, ok);
	ck_assert_ptr_nonnull(s1);
	ck_assert_ptr_eq(op_metric_with(ex, ok), s1); /* same values, same series */
	op_metric_inc_labels(ex, err, 1);
	op_metric_inc_labels(ex, ok2, 1);
	op_metric_add(s1, 1);
	op_metric_inc_labels(ex, ok, 1);
	ck_assert_ptr_ne(op_metric_with(ex, err), s1);

	assert_render(m, "# HELP outpost_up_total Starts.\n"
	                 "# TYPE outpost_up_total counter\n"
	                 "outpost_up_total 11\n"
	                 "# HELP outpost_executions_total Executions by outcome.\n"
	                 "# TYPE outpost_executions_total counter\n"
	                 "outpost_executions_total{pipeline=\"orders\",status=\"ok\"} 2\n"
	                 "outpost_executions_total{pipeline=\"orders\",status=\"error\"} 1\n"
	                 "outpost_executions_total{pipeline=\"invoices\",status=\"ok\"} 1\n"
	                 "# HELP outpost_g G.\n"
	                 "# TYPE outpost_g gauge\n"
	                 "outpost_g 0\n");
	op_metrics_free(m);
}
END_TEST

START_TEST(gauge_values_and_number_format)
{
	struct op_metrics *m = op_metrics_new();
	static const char *const labels[] = {"k", NULL};
	struct op_metric *g = op_metrics_gauge(m, "g", NULL, labels);
	ck_assert_ptr_nonnull(g);
	static const struct {
		const char *k;
		double v;
	} cases[] = {
	    {"zero", 0.0},
	    {"negzero", -0.0},
	    {"int", 123456789012.0},
	    {"neg", -42},
	    {"frac", 0.1},
	    {"third", 1.0 / 3},
	    {"big", 1e20},
	    {"small", 2.5e-7},
	    {"max_exact", 9007199254740993.0}, /* rounds to 2^53 */
	    {"pinf", INFINITY},
	    {"ninf", -INFINITY},
	    {"nan", NAN},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *v[] = {cases[i].k};
		op_metric_set(op_metric_with(g, v), cases[i].v);
	}
	const char *v[] = {"added"};
	struct op_metric_child *c = op_metric_with(g, v);
	op_metric_set(c, 10);
	op_metric_add(c, -2.5);
	op_metric_add(c, 0.5);
	op_metric_observe(c, 100); /* observe is for histograms */
	ck_assert(op_metric_value(c) == 8);
	assert_render(m, "# HELP g \n"
	                 "# TYPE g gauge\n"
	                 "g{k=\"zero\"} 0\n"
	                 "g{k=\"negzero\"} 0\n"
	                 "g{k=\"int\"} 123456789012\n"
	                 "g{k=\"neg\"} -42\n"
	                 "g{k=\"frac\"} 0.1\n"
	                 "g{k=\"third\"} 0.3333333333333333\n"
	                 "g{k=\"big\"} 1e+20\n"
	                 "g{k=\"small\"} 2.5e-07\n"
	                 "g{k=\"max_exact\"} 9007199254740992\n"
	                 "g{k=\"pinf\"} +Inf\n"
	                 "g{k=\"ninf\"} -Inf\n"
	                 "g{k=\"nan\"} NaN\n"
	                 "g{k=\"added\"} 8\n");
	op_metrics_free(m);
}
END_TEST

START_TEST(numbers_round_trip)
{
	/* 1/3 printed with 15 digits does not read back; the render must use 17. */
	struct op_metrics *m = op_metrics_new();
	struct op_metric *g = op_metrics_gauge(m, "g", "h", NULL);
	struct op_metric_child *c = op_metric_with(g, NULL);
	static const double vals[] = {1.0 / 3, 0.1 + 0.2, 1e-300, -123.456, 4.35, 1e16 + 2, 5e-324};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		op_metric_set(c, vals[i]);
		struct op_buf b;
		op_buf_init(&b, 4096);
		ck_assert_int_eq(op_metrics_render(m, &b), OP_OK);
		const char *line = strstr(op_buf_str(&b), "\ng ");
		ck_assert_ptr_nonnull(line);
		ck_assert_msg(strtod(line + 3, NULL) == vals[i], "%.17g printed as %s", vals[i],
		              line + 3);
		/* Integers in plain digits, without a fraction or exponent. */
		if (vals[i] == trunc(vals[i]) && fabs(vals[i]) < 1e17)
			ck_assert_uint_eq(strspn(line + 3, "-0123456789"), strlen(line + 3) - 1);
		op_buf_fini(&b);
	}
	op_metrics_free(m);
}
END_TEST

START_TEST(histogram_buckets_cumulate)
{
	struct op_metrics *m = op_metrics_new();
	static const double bounds[] = {0.005, 0.1, 1, 10};
	struct op_metric *h =
	    op_metrics_histogram(m, "outpost_duration_seconds", "Durations.", NULL, bounds, 4);
	ck_assert_ptr_nonnull(h);
	assert_render(m, "# HELP outpost_duration_seconds Durations.\n"
	                 "# TYPE outpost_duration_seconds histogram\n"
	                 "outpost_duration_seconds_bucket{le=\"0.005\"} 0\n"
	                 "outpost_duration_seconds_bucket{le=\"0.1\"} 0\n"
	                 "outpost_duration_seconds_bucket{le=\"1\"} 0\n"
	                 "outpost_duration_seconds_bucket{le=\"10\"} 0\n"
	                 "outpost_duration_seconds_bucket{le=\"+Inf\"} 0\n"
	                 "outpost_duration_seconds_sum 0\n"
	                 "outpost_duration_seconds_count 0\n");
	struct op_metric_child *c = op_metric_with(h, NULL);
	op_metric_observe(c, 0.001);
	op_metric_observe(c, 0.1); /* on a bound: counts in that bucket (le) */
	op_metric_observe(c, 0.5);
	op_metric_observe(c, 0.75);
	op_metric_observe(c, 100);
	op_metric_observe(c, -1); /* below every bound: first bucket */
	op_metric_add(c, 5);      /* add is not for histograms */
	op_metric_set(c, 5);
	ck_assert(op_metric_value(c) == 6);
	assert_render(m, "# HELP outpost_duration_seconds Durations.\n"
	                 "# TYPE outpost_duration_seconds histogram\n"
	                 "outpost_duration_seconds_bucket{le=\"0.005\"} 2\n"
	                 "outpost_duration_seconds_bucket{le=\"0.1\"} 3\n"
	                 "outpost_duration_seconds_bucket{le=\"1\"} 5\n"
	                 "outpost_duration_seconds_bucket{le=\"10\"} 5\n"
	                 "outpost_duration_seconds_bucket{le=\"+Inf\"} 6\n"
	                 "outpost_duration_seconds_sum 100.351\n"
	                 "outpost_duration_seconds_count 6\n");
	op_metric_observe(c, NAN);
	assert_render(m, "# HELP outpost_duration_seconds Durations.\n"
	                 "# TYPE outpost_duration_seconds histogram\n"
	                 "outpost_duration_seconds_bucket{le=\"0.005\"} 2\n"
	                 "outpost_duration_seconds_bucket{le=\"0.1\"} 3\n"
	                 "outpost_duration_seconds_bucket{le=\"1\"} 5\n"
	                 "outpost_duration_seconds_bucket{le=\"10\"} 5\n"
	                 "outpost_duration_seconds_bucket{le=\"+Inf\"} 7\n"
	                 "outpost_duration_seconds_sum NaN\n"
	                 "outpost_duration_seconds_count 7\n");
	op_metrics_free(m);
}
END_TEST

START_TEST(histogram_with_labels)
{
	struct op_metrics *m = op_metrics_new();
	static const double bounds[] = {1, 2};
	static const char *const labels[] = {"pipeline", NULL};
	struct op_metric *h = op_metrics_histogram(m, "d", "D.", labels, bounds, 2);
	static const char *const none[] = {NULL};
	struct op_metric *h0 = op_metrics_histogram(m, "e", "E.", none, NULL, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_ptr_nonnull(h0);
	const char *a[] = {"a"};
	const char *b[] = {"b"};
	op_metric_observe_labels(h, b, 3);
	op_metric_observe_labels(h, a, 1.5);
	op_metric_observe_labels(h, a, 0.5);
	op_metric_observe(op_metric_with(h0, NULL), 7);
	assert_render(m, "# HELP d D.\n"
	                 "# TYPE d histogram\n"
	                 "d_bucket{pipeline=\"b\",le=\"1\"} 0\n"
	                 "d_bucket{pipeline=\"b\",le=\"2\"} 0\n"
	                 "d_bucket{pipeline=\"b\",le=\"+Inf\"} 1\n"
	                 "d_sum{pipeline=\"b\"} 3\n"
	                 "d_count{pipeline=\"b\"} 1\n"
	                 "d_bucket{pipeline=\"a\",le=\"1\"} 1\n"
	                 "d_bucket{pipeline=\"a\",le=\"2\"} 2\n"
	                 "d_bucket{pipeline=\"a\",le=\"+Inf\"} 2\n"
	                 "d_sum{pipeline=\"a\"} 2\n"
	                 "d_count{pipeline=\"a\"} 2\n"
	                 "# HELP e E.\n"
	                 "# TYPE e histogram\n"
	                 "e_bucket{le=\"+Inf\"} 1\n"
	                 "e_sum 7\n"
	                 "e_count 1\n");
	op_metrics_free(m);
}
END_TEST

START_TEST(escaping)
{
	struct op_metrics *m = op_metrics_new();
	static const char *const labels[] = {"path", NULL};
	struct op_metric *f =
	    op_metrics_counter(m, "req_total", "Back\\slash \"quoted\"\nsecond line", labels);
	ck_assert_ptr_nonnull(f);
	const char *v[] = {"a\\b\"c\"\nd"};
	op_metric_inc_labels(f, v, 1);
	const char *empty[] = {""};
	op_metric_inc_labels(f, empty, 2);
	assert_render(m, "# HELP req_total Back\\\\slash \"quoted\"\\nsecond line\n"
	                 "# TYPE req_total counter\n"
	                 "req_total{path=\"a\\\\b\\\"c\\\"\\nd\"} 1\n"
	                 "req_total{path=\"\"} 2\n");
	op_metrics_free(m);
}
END_TEST

START_TEST(label_values_are_not_confused)
{
	/* Joined keys must not collide: ("ab","c") vs ("a","bc"). */
	struct op_metrics *m = op_metrics_new();
	static const char *const labels[] = {"x", "y", NULL};
	struct op_metric *f = op_metrics_counter(m, "c", "h", labels);
	const char *v1[] = {"ab", "c"};
	const char *v2[] = {"a", "bc"};
	struct op_metric_child *c1 = op_metric_with(f, v1);
	struct op_metric_child *c2 = op_metric_with(f, v2);
	ck_assert_ptr_nonnull(c1);
	ck_assert_ptr_nonnull(c2);
	ck_assert_ptr_ne(c1, c2);
	/* Missing values are refused, not read past. */
	const char *v3[] = {"a", NULL};
	ck_assert_ptr_null(op_metric_with(f, v3));
	ck_assert_ptr_null(op_metric_with(f, NULL));
	ck_assert_uint_eq(op_metric_dropped(f), 2);
	/* Label values up to the size limit are fine, past it refused. */
	static char big[OP_METRICS_MAX_LABELS_LEN + 2];
	memset(big, 'v', sizeof(big) - 1);
	const char *v4[] = {big + 2, ""};
	ck_assert_ptr_nonnull(op_metric_with(f, v4));
	const char *v5[] = {big + 2, "x"};
	ck_assert_ptr_nonnull(op_metric_with(f, v5));
	const char *v6[] = {big + 2, "xy"};
	ck_assert_ptr_null(op_metric_with(f, v6));
	const char *v7[] = {big, "x"};
	ck_assert_ptr_null(op_metric_with(f, v7));
	ck_assert_uint_eq(op_metric_dropped(f), 4);
	op_metrics_free(m);
}
END_TEST

START_TEST(name_validation)
{
	struct op_metrics *m = op_metrics_new();
	static const char *const bad_names[] = {"", "1abc", "a-b", "a b", "a.b", "é", "a\n"};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
		ck_assert_ptr_null(op_metrics_counter(m, bad_names[i], "h", NULL));
	ck_assert_ptr_null(op_metrics_counter(m, NULL, "h", NULL));
	ck_assert_ptr_null(op_metrics_counter(NULL, "a", "h", NULL));
	static const char *const good_names[] = {"a", "_a", ":a", "a:b_c9", "ABC", "__x"};
	for (size_t i = 0; i < sizeof(good_names) / sizeof(good_names[0]); i++)
		ck_assert_ptr_nonnull(op_metrics_gauge(m, good_names[i], "h", NULL));

	static const char *const l_dash[] = {"a-b", NULL};
	static const char *const l_colon[] = {"a:b", NULL};
	static const char *const l_digit[] = {"1a", NULL};
	static const char *const l_reserved[] = {"__name", NULL};
	static const char *const l_empty[] = {"", NULL};
	static const char *const l_dup[] = {"a", "b", "a", NULL};
	static const char *const *const bad_labels[] = {l_dash,     l_colon, l_digit,
	                                                l_reserved, l_empty, l_dup};
	for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++)
		ck_assert_ptr_null(op_metrics_counter(m, "lc", "h", bad_labels[i]));
	static const char *const l_ok[] = {"_a", "B9", "le", NULL};
	ck_assert_ptr_nonnull(op_metrics_counter(m, "lc", "h", l_ok));
	/* le is the bucket label: not for histograms. */
	static const double b1[] = {1};
	static const char *const l_le[] = {"x", "le", NULL};
	ck_assert_ptr_null(op_metrics_histogram(m, "hh", "h", l_le, b1, 1));

	static const char *const many[OP_METRICS_MAX_LABELS + 2] = {
	    "l0", "l1",  "l2",  "l3",  "l4",  "l5",  "l6",  "l7",  "l8",
	    "l9", "l10", "l11", "l12", "l13", "l14", "l15", "l16", NULL};
	ck_assert_ptr_null(op_metrics_counter(m, "many", "h", many));

	/* Bounds: finite, strictly increasing, capped. */
	static const double unsorted[] = {1, 0.5};
	static const double equal[] = {1, 1};
	static const double inf[] = {1, INFINITY};
	static const double nan[] = {NAN};
	ck_assert_ptr_null(op_metrics_histogram(m, "hh", "h", NULL, unsorted, 2));
	ck_assert_ptr_null(op_metrics_histogram(m, "hh", "h", NULL, equal, 2));
	ck_assert_ptr_null(op_metrics_histogram(m, "hh", "h", NULL, inf, 2));
	ck_assert_ptr_null(op_metrics_histogram(m, "hh", "h", NULL, nan, 1));
	ck_assert_ptr_null(op_metrics_histogram(m, "hh", "h", NULL, NULL, 1));
	double lots[OP_METRICS_MAX_BOUNDS + 1];
	for (size_t i = 0; i < OP_METRICS_MAX_BOUNDS + 1; i++)
		lots[i] = (double)i;
	ck_assert_ptr_null(
	    op_metrics_histogram(m, "hh", "h", NULL, lots, OP_METRICS_MAX_BOUNDS + 1));
	ck_assert_ptr_nonnull(
	    op_metrics_histogram(m, "hh", "h", NULL, lots, OP_METRICS_MAX_BOUNDS));

	/* The dropped-series counter's name is reserved. */
	ck_assert_ptr_null(op_metrics_counter(m, OP_METRICS_DROPPED_NAME, "h", NULL));
	op_metrics_free(m);
}
END_TEST

START_TEST(duplicate_registration)
{
	struct op_metrics *m = op_metrics_new();
	static const char *const ab[] = {"a", "b", NULL};
	static const char *const ba[] = {"b", "a", NULL};
	static const char *const a[] = {"a", NULL};
	static const double b12[] = {1, 2};
	static const double b13[] = {1, 3};
	struct op_metric *c = op_metrics_counter(m, "c_total", "help", ab);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_eq(op_metrics_counter(m, "c_total", "help", ab), c);
	ck_assert_ptr_null(op_metrics_counter(m, "c_total", "other help", ab));
	ck_assert_ptr_null(op_metrics_counter(m, "c_total", "help", ba));
	ck_assert_ptr_null(op_metrics_counter(m, "c_total", "help", a));
	ck_assert_ptr_null(op_metrics_counter(m, "c_total", "help", NULL));
	ck_assert_ptr_null(op_metrics_gauge(m, "c_total", "help", ab));
	ck_assert_ptr_null(op_metrics_histogram(m, "c_total", "help", ab, b12, 2));

	struct op_metric *g = op_metrics_gauge(m, "g", NULL, NULL);
	ck_assert_ptr_eq(op_metrics_gauge(m, "g", "", NULL), g);
	static const char *const none[] = {NULL};
	ck_assert_ptr_eq(op_metrics_gauge(m, "g", NULL, none), g);

	struct op_metric *h = op_metrics_histogram(m, "h", "help", a, b12, 2);
	ck_assert_ptr_nonnull(h);
	ck_assert_ptr_eq(op_metrics_histogram(m, "h", "help", a, b12, 2), h);
	ck_assert_ptr_null(op_metrics_histogram(m, "h", "help", a, b13, 2));
	ck_assert_ptr_null(op_metrics_histogram(m, "h", "help", a, b12, 1));
	/* Names a histogram's series use are taken, both ways round. */
	ck_assert_ptr_null(op_metrics_counter(m, "h_count", "help", NULL));
	ck_assert_ptr_null(op_metrics_gauge(m, "h_sum", "help", NULL));
	ck_assert_ptr_null(op_metrics_gauge(m, "h_bucket", "help", NULL));
	ck_assert_ptr_nonnull(op_metrics_gauge(m, "h_total", "help", NULL));
	ck_assert_ptr_nonnull(op_metrics_histogram(m, "c", "help", NULL, b12, 2));
	ck_assert_ptr_nonnull(op_metrics_gauge(m, "x_sum", "help", NULL));
	ck_assert_ptr_null(op_metrics_histogram(m, "x", "help", NULL, b12, 2));

	/* Only one family per name renders. */
	struct op_buf b;
	op_buf_init(&b, 1 << 16);
	ck_assert_int_eq(op_metrics_render(m, &b), OP_OK);
	ck_assert_ptr_nonnull(strstr(op_buf_str(&b), "# TYPE g gauge\n"));
	ck_assert_ptr_null(strstr(strstr(op_buf_str(&b), "# TYPE g gauge\n") + 1, "# TYPE g "));
	op_buf_fini(&b);
	op_metrics_free(m);
}
END_TEST

START_TEST(cardinality_cap)
{
	struct op_metrics *m = op_metrics_new();
	static const char *const labels[] = {"id", NULL};
	struct op_metric *f = op_metrics_counter(m, "big_total", "h", labels);
	char v[32];
	const char *vals[] = {v};
	for (int i = 0; i < OP_METRICS_MAX_SERIES; i++) {
		snprintf(v, sizeof(v), "%d", i);
		ck_assert_ptr_nonnull(op_metric_with(f, vals));
	}
	snprintf(v, sizeof(v), "%d", OP_METRICS_MAX_SERIES);
	ck_assert_ptr_null(op_metric_with(f, vals));
	op_metric_inc_labels(f, vals, 1); /* dropped, and harmless */
	ck_assert_uint_eq(op_metric_dropped(f), 2);
	/* Existing series are still found, with stable pointers. */
	snprintf(v, sizeof(v), "%d", 1234);
	struct op_metric_child *c = op_metric_with(f, vals);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_eq(op_metric_with(f, vals), c);

	/* A small cap, and the dropped counter rendered per family. */
	struct op_metric *s = op_metrics_gauge(m, "small", "h", labels);
	op_metric_set_max_series(s, 1);
	const char *a[] = {"a"};
	const char *b[] = {"b"};
	op_metric_set(op_metric_with(s, a), 5);
	ck_assert_ptr_null(op_metric_with(s, b));
	op_metric_set(op_metric_with(s, b), 6);
	ck_assert_uint_eq(op_metric_dropped(s), 2);

	struct op_buf out;
	op_buf_init(&out, 1 << 24);
	ck_assert_int_eq(op_metrics_render(m, &out), OP_OK);
	const char *tail = strstr(op_buf_str(&out), "# HELP small h\n");
	ck_assert_ptr_nonnull(tail);
	ck_assert_str_eq(
	    tail, "# HELP small h\n"
	          "# TYPE small gauge\n"
	          "small{id=\"a\"} 5\n"
	          "# HELP " OP_METRICS_DROPPED_NAME
	          " Series refused past a family's cardinality cap or label size limit.\n"
	          "# TYPE " OP_METRICS_DROPPED_NAME " counter\n" OP_METRICS_DROPPED_NAME
	          "{metric=\"big_total\"} 2\n" OP_METRICS_DROPPED_NAME "{metric=\"small\"} 2\n");
	op_buf_fini(&out);
	op_metrics_free(m);
}
END_TEST

/* ---- concurrency ---- */

enum { THREADS = 4, ROUNDS = 50000 };

struct worker {
	struct op_metric *counter;
	struct op_metric *hist;
	struct op_metric *labelled;
	struct op_metric *gauge;
	int id;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	struct op_metric_child *c = op_metric_with(w->counter, NULL);
	struct op_metric_child *h = op_metric_with(w->hist, NULL);
	struct op_metric_child *g = op_metric_with(w->gauge, NULL);
	char v[16];
	const char *vals[] = {v};
	for (int i = 0; i < ROUNDS; i++) {
		op_metric_add(c, 1);
		op_metric_observe(h, (double)(i % 4)); /* 0,1,2,3 */
		op_metric_add(g, (w->id % 2) ? 0.5 : -0.5);
		/* Every thread creates and finds the same 100 series. */
		snprintf(v, sizeof(v), "s%d", i % 100);
		op_metric_inc_labels(w->labelled, vals, 1);
	}
	return NULL;
}

struct scraper {
	struct op_metrics *m;
	_Atomic int stop;
	int renders;
	int bad;
};

/* _count must equal the +Inf bucket in every render, even mid-update. */
static void *scrape(void *arg)
{
	struct scraper *s = arg;
	struct op_buf b;
	op_buf_init(&b, 1 << 24);
	while (!atomic_load(&s->stop) || s->renders == 0) {
		op_buf_reset(&b);
		if (op_metrics_render(s->m, &b) != OP_OK) {
			s->bad++;
			break;
		}
		const char *inf = strstr(op_buf_str(&b), "h_bucket{le=\"+Inf\"} ");
		const char *cnt = strstr(op_buf_str(&b), "h_count ");
		if (inf == NULL || cnt == NULL ||
		    strtoull(inf + strlen("h_bucket{le=\"+Inf\"} "), NULL, 10) !=
		        strtoull(cnt + strlen("h_count "), NULL, 10))
			s->bad++;
		s->renders++;
	}
	op_buf_fini(&b);
	return NULL;
}

START_TEST(concurrent_updates_are_exact)
{
	struct op_metrics *m = op_metrics_new();
	static const double bounds[] = {0, 1, 2};
	static const char *const labels[] = {"s", NULL};
	struct op_metric *counter = op_metrics_counter(m, "c_total", "h", NULL);
	struct op_metric *hist = op_metrics_histogram(m, "h", "h", NULL, bounds, 3);
	struct op_metric *labelled = op_metrics_counter(m, "l_total", "h", labels);
	struct op_metric *gauge = op_metrics_gauge(m, "g", "h", NULL);
	struct worker w[THREADS];
	pthread_t th[THREADS], sth;
	struct scraper s = {.m = m};
	atomic_init(&s.stop, 0);
	ck_assert_int_eq(pthread_create(&sth, NULL, scrape, &s), 0);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){counter, hist, labelled, gauge, i};
		ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_join(th[i], NULL), 0);
	atomic_store(&s.stop, 1);
	ck_assert_int_eq(pthread_join(sth, NULL), 0);
	ck_assert_int_eq(s.bad, 0);
	ck_assert_int_gt(s.renders, 0);

	ck_assert(op_metric_value(op_metric_with(counter, NULL)) == THREADS * ROUNDS);
	ck_assert(op_metric_value(op_metric_with(hist, NULL)) == THREADS * ROUNDS);
	ck_assert(op_metric_value(op_metric_with(gauge, NULL)) == 0);
	double total = 0;
	for (int i = 0; i < 100; i++) {
		char v[16];
		snprintf(v, sizeof(v), "s%d", i);
		const char *vals[] = {v};
		double x = op_metric_value(op_metric_with(labelled, vals));
		ck_assert(x == (double)(THREADS * ROUNDS) / 100);
		total += x;
	}
	ck_assert(total == THREADS * ROUNDS);
	ck_assert_uint_eq(op_metric_dropped(labelled), 0);

	/* Each value 0..3 was observed ROUNDS/4 times per thread. */
	char want[512];
	int q = THREADS * ROUNDS / 4;
	snprintf(want, sizeof(want),
	         "h_bucket{le=\"0\"} %d\nh_bucket{le=\"1\"} %d\nh_bucket{le=\"2\"} %d\n"
	         "h_bucket{le=\"+Inf\"} %d\nh_sum %d\nh_count %d\n",
	         q, 2 * q, 3 * q, 4 * q, 6 * q, 4 * q);
	struct op_buf b;
	op_buf_init(&b, 1 << 24);
	ck_assert_int_eq(op_metrics_render(m, &b), OP_OK);
	ck_assert_ptr_nonnull(strstr(op_buf_str(&b), want));
	/* All 100 labelled series, each once. */
	int lines = 0;
	for (const char *p = op_buf_str(&b); (p = strstr(p, "\nl_total{")); p++)
		lines++;
	ck_assert_int_eq(lines, 100);
	op_buf_fini(&b);
	op_metrics_free(m);
}
END_TEST

/* ---- scrape callbacks ---- */

struct refresh {
	struct op_metric *depth;
	int calls;
	bool register_more;
};

static void refresh_depth(void *ud, struct op_metrics *m)
{
	struct refresh *r = ud;
	r->calls++;
	op_metric_set(op_metric_with(r->depth, NULL), r->calls * 10);
	/* Registering from a callback must not deadlock. */
	if (r->register_more)
		ck_assert_ptr_nonnull(
		    op_metrics_gauge(m, "late", "Registered while scraping.", NULL));
}

static void second_cb(void *ud, struct op_metrics *m)
{
	(void)m;
	struct refresh *r = ud;
	/* Runs after the first: sees its update. */
	ck_assert(op_metric_value(op_metric_with(r->depth, NULL)) == r->calls * 10);
	op_metric_add(op_metric_with(r->depth, NULL), 1);
}

START_TEST(scrape_callbacks_refresh_gauges)
{
	struct op_metrics *m = op_metrics_new();
	struct refresh r = {.depth = op_metrics_gauge(m, "queue_depth", "Events queued.", NULL),
	                    .register_more = true};
	ck_assert_int_eq(op_metrics_on_scrape(m, NULL, NULL), OP_EINVAL);
	ck_assert_int_eq(op_metrics_on_scrape(NULL, refresh_depth, &r), OP_EINVAL);
	ck_assert_int_eq(op_metrics_on_scrape(m, refresh_depth, &r), OP_OK);
	ck_assert_int_eq(op_metrics_on_scrape(m, second_cb, &r), OP_OK);
	assert_render(m, "# HELP queue_depth Events queued.\n"
	                 "# TYPE queue_depth gauge\n"
	                 "queue_depth 11\n"
	                 "# HELP late Registered while scraping.\n"
	                 "# TYPE late gauge\n"
	                 "late 0\n");
	ck_assert_int_eq(r.calls, 1);
	assert_render(m, "# HELP queue_depth Events queued.\n"
	                 "# TYPE queue_depth gauge\n"
	                 "queue_depth 21\n"
	                 "# HELP late Registered while scraping.\n"
	                 "# TYPE late gauge\n"
	                 "late 0\n");
	ck_assert_int_eq(r.calls, 2);
	op_metrics_free(m);
}
END_TEST

START_TEST(render_cap_leaves_buffer)
{
	struct op_metrics *m = op_metrics_new();
	static const double bounds[] = {1, 2, 3};
	struct op_metric *h = op_metrics_histogram(m, "h", "a histogram", NULL, bounds, 3);
	ck_assert_ptr_nonnull(h);
	struct op_buf b;
	op_buf_init(&b, 64);
	ck_assert_int_eq(op_buf_adds(&b, "keep"), OP_OK);
	ck_assert_int_eq(op_metrics_render(m, &b), OP_ELIMIT);
	ck_assert_str_eq(op_buf_str(&b), "keep");
	ck_assert_uint_eq(b.len, 4);
	ck_assert_int_eq(op_metrics_render(NULL, &b), OP_EINVAL);
	ck_assert_int_eq(op_metrics_render(m, NULL), OP_EINVAL);
	op_buf_fini(&b);
	op_metrics_free(m);
}
END_TEST

/* ---- out of memory ---- */

static void nop_cb(void *ud, struct op_metrics *m)
{
	(void)ud;
	(void)m;
}

/*
 * Builds a small registry with every kind of family and renders it. Returns
 * true when everything succeeded; on any failure it checks that the failing
 * call reported it cleanly and frees what it made.
 */
static bool build_and_render(char **text)
{
	static const char *const labels[] = {"pipeline", "status", NULL};
	static const double bounds[] = {0.1, 1};
	bool ok = false;
	struct op_buf b;
	op_buf_init(&b, 1 << 20);
	struct op_metrics *m = op_metrics_new();
	if (m == NULL)
		goto out;
	struct op_metric *c = op_metrics_counter(m, "c_total", "C.", labels);
	struct op_metric *g = op_metrics_gauge(m, "g", "G.", NULL);
	struct op_metric *h = op_metrics_histogram(m, "h", "H.", labels, bounds, 2);
	if (c == NULL || g == NULL || h == NULL)
		goto out;
	if (op_metrics_on_scrape(m, nop_cb, NULL) != OP_OK)
		goto out;
	for (int i = 0; i < 20; i++) {
		char p[16];
		snprintf(p, sizeof(p), "p%d", i);
		const char *v[] = {p, i % 2 ? "ok" : "error"};
		struct op_metric_child *cc = op_metric_with(c, v);
		struct op_metric_child *hc = op_metric_with(h, v);
		if (cc == NULL || hc == NULL)
			goto out;
		op_metric_add(cc, i);
		op_metric_observe(hc, i * 0.1);
	}
	op_metric_set(op_metric_with(g, NULL), 3);
	op_err e = op_metrics_render(m, &b);
	if (e != OP_OK) {
		ck_assert_int_eq(e, OP_ENOMEM);
		ck_assert_uint_eq(b.len, 0);
		goto out;
	}
	*text = op_buf_take(&b);
	ok = *text != NULL;
out:
	op_buf_fini(&b);
	op_metrics_free(m);
	return ok;
}

START_TEST(out_of_memory_everywhere)
{
	char *want = NULL;
	ck_assert(build_and_render(&want));
	uint64_t n;
	for (n = 1; n < 10000; n++) {
		char *got = NULL;
		op_alloc_fail_at(n);
		bool ok = build_and_render(&got);
		op_alloc_fail_at(0);
		if (ok) {
			ck_assert_str_eq(got, want);
			op_free(got);
			break;
		}
	}
	ck_assert_uint_gt(n, 50); /* the loop did exercise many failure points */
	ck_assert_uint_lt(n, 10000);
	op_free(want);
}
END_TEST

START_TEST(free_null_and_null_children)
{
	op_metrics_free(NULL);
	op_metric_add(NULL, 1);
	op_metric_set(NULL, 1);
	op_metric_observe(NULL, 1);
	op_metric_inc_labels(NULL, NULL, 1);
	ck_assert(op_metric_value(NULL) == 0);
	ck_assert_ptr_null(op_metric_with(NULL, NULL));
	ck_assert_uint_eq(op_metric_dropped(NULL), 0);
}
END_TEST

static Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, counter_without_and_with_labels);
	tcase_add_test(tc, gauge_values_and_number_format);
	tcase_add_test(tc, numbers_round_trip);
	tcase_add_test(tc, histogram_buckets_cumulate);
	tcase_add_test(tc, histogram_with_labels);
	tcase_add_test(tc, escaping);
	tcase_add_test(tc, label_values_are_not_confused);
	tcase_add_test(tc, name_validation);
	tcase_add_test(tc, duplicate_registration);
	tcase_add_test(tc, cardinality_cap);
	tcase_add_test(tc, concurrent_updates_are_exact);
	tcase_add_test(tc, scrape_callbacks_refresh_gauges);
	tcase_add_test(tc, render_cap_leaves_buffer);
	tcase_add_test(tc, out_of_memory_everywhere);
	tcase_add_test(tc, free_null_and_null_children);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(metrics_suite)
