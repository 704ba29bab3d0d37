/*
 * A Prometheus metrics registry: families (counter, gauge, histogram) with
 * label names, each holding one series per label-value combination, rendered
 * as the Prometheus text exposition format 0.0.4 for the admin endpoint's
 * /metrics. There are no globals: the daemon owns one registry and passes it.
 *
 * Key invariants: updating a series (op_metric_add/set/observe) never locks
 * and never allocates; a series pointer stays valid for the registry's life;
 * memory is bounded because each family holds at most max_series series
 * (default OP_METRICS_MAX_SERIES), each with label values of bounded length.
 * Series refused past the cap are counted and rendered as
 * outpost_metrics_series_dropped_total{metric="..."}.
 *
 * Threads: registration, series lookup, updates and render may run
 * concurrently from any threads. A render is a consistent-enough snapshot:
 * each number is read atomically, and a histogram's _count always equals its
 * +Inf bucket. Numbers are formatted for the C locale (LC_NUMERIC "C"), which
 * the daemon never changes.
 */
#ifndef OP_DAEMON_METRICS_H
#define OP_DAEMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "agent/core/buf.h"
#include "agent/core/err.h"

/* Default cap on the series of one family. */
#define OP_METRICS_MAX_SERIES 10000
/* Cap on the label values of one series, all values together, in bytes. */
#define OP_METRICS_MAX_LABELS_LEN 1024
/* Cap on the label names of one family. */
#define OP_METRICS_MAX_LABELS 16
/* Cap on the bucket bounds of one histogram. */
#define OP_METRICS_MAX_BOUNDS 64
/* The family that counts refused series; its name cannot be registered. */
#define OP_METRICS_DROPPED_NAME "outpost_metrics_series_dropped_total"

struct op_metrics;      /* a registry */
struct op_metric;       /* a family: name, help, type, label names */
struct op_metric_child; /* one label-value combination (a time series) */

/* Called at the start of every render (see op_metrics_on_scrape). */
typedef void (*op_metrics_scrape_fn)(void *ud, struct op_metrics *m);

/* A new empty registry, or NULL when out of memory. Free with op_metrics_free. */
struct op_metrics *op_metrics_new(void);
/*
 * Frees the registry with every family and series; all their pointers become
 * invalid. No other thread may use the registry any more. NULL is a no-op.
 */
void op_metrics_free(struct op_metrics *m);

/*
 * Registers a family and returns it, borrowed: valid until op_metrics_free.
 *
 * name matches [a-zA-Z_:][a-zA-Z0-9_:]* (counters should end in _total, see
 * docs/metrics.md). help is any text (NULL = ""), escaped on output.
 * label_names is a NULL-terminated array of at most OP_METRICS_MAX_LABELS
 * distinct names matching [a-zA-Z_][a-zA-Z0-9_]* without a "__" prefix
 * (NULL = no labels); histograms may not use "le". Both arrays and all
 * strings are copied.
 *
 * Histogram bounds are the upper bounds of the buckets (inclusive, "le"):
 * finite and strictly increasing, at most OP_METRICS_MAX_BOUNDS; the +Inf
 * bucket is implicit. nbounds may be 0 (only +Inf).
 *
 * A family without labels has its one series created here, so it renders
 * (as 0) from the start; a labelled family renders once it has a series.
 *
 * Registering a name again returns the existing family when type, help,
 * label names (and bounds) are identical. Returns NULL for an invalid name,
 * label or bound, a name already registered differently, a name that
 * collides with a histogram's _bucket/_sum/_count series, the reserved
 * OP_METRICS_DROPPED_NAME, or out of memory: all are programming errors at
 * start-up, except out of memory, which the caller reports as OP_ENOMEM.
 */
struct op_metric *op_metrics_counter(struct op_metrics *m, const char *name, const char *help,
                                     const char *const *label_names);
struct op_metric *op_metrics_gauge(struct op_metrics *m, const char *name, const char *help,
                                   const char *const *label_names);
struct op_metric *op_metrics_histogram(struct op_metrics *m, const char *name, const char *help,
                                       const char *const *label_names, const double *bounds,
                                       size_t nbounds);

/*
 * Sets the cap on the number of series of f (default OP_METRICS_MAX_SERIES);
 * series already created stay. Call at registration, before f is in use.
 */
void op_metric_set_max_series(struct op_metric *f, size_t max_series);

/*
 * The series of f for these label values (exactly as many as f has label
 * names, each non-NULL, any bytes; NULL array for a family without labels),
 * created on first use. Borrowed: valid until op_metrics_free.
 *
 * Returns NULL when out of memory, when f already has its cap of series, or
 * when the values are NULL or together longer than OP_METRICS_MAX_LABELS_LEN;
 * the last two are counted in OP_METRICS_DROPPED_NAME. A NULL result is meant
 * to be passed on: every update function ignores a NULL series, so a metric
 * lost to a cap costs the caller no branch. Label values should be valid
 * UTF-8 (Prometheus requires it); they are escaped, not checked.
 *
 * Takes f's mutex; callers on a hot path keep the pointer instead.
 */
struct op_metric_child *op_metric_with(struct op_metric *f, const char *const *label_values);

/*
 * Updates, lock-free and allocation-free; c may be NULL (no-op).
 * op_metric_add: counters (v must be >= 0; negative or NaN v is ignored, a
 * counter never goes down) and gauges (any v). op_metric_set: gauges only.
 * op_metric_observe: histograms only (NaN lands in the +Inf bucket and makes
 * _sum NaN, as in the Go client). A call on the wrong type is ignored.
 */
void op_metric_add(struct op_metric_child *c, double v);
void op_metric_set(struct op_metric_child *c, double v);
void op_metric_observe(struct op_metric_child *c, double v);
/*
 * Counters whose count is kept elsewhere (a module's own stats, copied in
 * at scrape time): raises c to total. A total below the current value is
 * ignored, so the counter never goes down. Counters only.
 */
void op_metric_set_total(struct op_metric_child *c, double total);

/* op_metric_add(op_metric_with(f, label_values), v): a label lookup each call. */
void op_metric_inc_labels(struct op_metric *f, const char *const *label_values, double v);
/* op_metric_observe(op_metric_with(f, label_values), v). */
void op_metric_observe_labels(struct op_metric *f, const char *const *label_values, double v);

/*
 * Current value of a counter or gauge series; a histogram's number of
 * observations. 0 for NULL. For tests and for code that reads back a gauge.
 */
double op_metric_value(const struct op_metric_child *c);
/* Series refused so far by f (cap reached, label values too long). */
uint64_t op_metric_dropped(const struct op_metric *f);

/*
 * Registers fn to be called, with ud, at the start of every render, to
 * refresh gauges computed on demand (queue depth, store size). Callbacks run
 * in registration order on the rendering thread, one render at a time; fn may
 * update, look up series and register families, but must not render. ud is
 * borrowed: it must outlive the registry or its last render.
 * Returns OP_OK, OP_EINVAL (m or fn NULL) or OP_ENOMEM (nothing registered).
 */
op_err op_metrics_on_scrape(struct op_metrics *m, op_metrics_scrape_fn fn, void *ud) OP_WUR;

/*
 * Runs the scrape callbacks, then appends the Prometheus text format 0.0.4
 * (Content-Type "text/plain; version=0.0.4; charset=utf-8") to out: for each
 * family with a series, in registration order, "# HELP" and "# TYPE" lines,
 * then its series in creation order; histograms as cumulative _bucket lines
 * ending with le="+Inf", then _sum and _count. Returns OP_OK, OP_ELIMIT (out
 * reached its cap) or OP_ENOMEM; on error out is as it was before the call.
 */
op_err op_metrics_render(struct op_metrics *m, struct op_buf *out) OP_WUR;

#endif
