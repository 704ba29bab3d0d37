/*
 * The metrics registry (metrics.h). Each series keeps its numbers in C11
 * atomics: a counter or gauge is one double stored as its uint64 bit pattern
 * and updated with a compare-and-swap loop; a histogram keeps one integer
 * count per bucket (not cumulative, so an observation is one fetch_add) plus
 * the sum as a double. The render derives _count from the buckets it read,
 * so _count always equals the +Inf bucket.
 *
 * Locks: the registry mutex guards the family and callback arrays; each
 * family's mutex guards its series array and its hash table (open
 * addressing, keyed by the label values joined with NUL bytes). A render
 * takes render_lock (one render at a time), runs the callbacks holding no
 * other lock, then takes the registry mutex and each family's in turn: the
 * order is always registry before family, so no cycle is possible.
 */
#include "agent/daemon/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

static const char *const type_names[] = {"counter", "gauge", "histogram"};

struct op_metric_child {
	struct op_metric *fam;
	uint64_t hash;
	char *key; /* the label values, each NUL-terminated, back to back */
	size_t keylen;
	_Atomic uint64_t value;     /* double bits: counter/gauge value, histogram sum */
	_Atomic uint64_t buckets[]; /* histogram: nbounds + 1 counts, last = above all bounds */
};

struct op_metric {
	struct op_metrics *reg;
	enum metric_type type;
	char *name;
	char *help;
	char **labels;
	size_t nlabels;
	double *bounds;
	size_t nbounds;
	struct op_metric_child *solo; /* the series of a family without labels */
	_Atomic uint64_t dropped;

	pthread_mutex_t lock; /* guards everything below */
	size_t max_series;
	struct op_metric_child **series; /* creation order */
	size_t nseries;
	size_t capseries;
	struct op_metric_child **table; /* open addressing, power-of-two size */
	size_t tablecap;
};

struct scrape_cb {
	op_metrics_scrape_fn fn;
	void *ud;
};

struct op_metrics {
	pthread_mutex_t render_lock; /* one render at a time */
	pthread_mutex_t lock;        /* guards everything below */
	struct op_metric **fams;     /* registration order */
	size_t nfams;
	size_t capfams;
	struct scrape_cb *cbs;
	size_t ncbs;
	size_t capcbs;
};

/* ---- doubles in atomics ---- */

static uint64_t dbits(double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof(u));
	return u;
}

static double bitsd(uint64_t u)
{
	double d;
	memcpy(&d, &u, sizeof(d));
	return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
	uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(p, &old, dbits(bitsd(old) + v),
	                                              memory_order_relaxed, memory_order_relaxed))
		;
}

/* ---- validation ---- */

static bool valid_name(const char *s, bool colon)
{
	if (s == NULL || *s == '\0')
		return false;
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		          (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

static bool valid_labels(const char *const *names, size_t n, enum metric_type type)
{
	for (size_t i = 0; i < n; i++) {
		if (!valid_name(names[i], false) || strncmp(names[i], "__", 2) == 0)
			return false;
		if (type == METRIC_HISTOGRAM && strcmp(names[i], "le") == 0)
			return false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				return false;
	}
	return true;
}

static bool valid_bounds(const double *b, size_t n)
{
	if (n > OP_METRICS_MAX_BOUNDS || (n > 0 && b == NULL))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(b[i]) || (i > 0 && !(b[i] > b[i - 1])))
			return false;
	}
	return true;
}

/* True when a series of one family would carry the same name as the other. */
static bool suffix_clash(const char *hist, const char *other)
{
	static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
	size_t hl = strlen(hist);
	if (strncmp(other, hist, hl) != 0)
		return false;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		if (strcmp(other + hl, suffixes[i]) == 0)
			return true;
	return false;
}

static bool same_family(const struct op_metric *f, enum metric_type type, const char *help,
                        const char *const *labels, size_t nlabels, const double *bounds,
                        size_t nbounds)
{
	if (f->type != type || strcmp(f->help, help) != 0 || f->nlabels != nlabels ||
	    f->nbounds != nbounds)
		return false;
	for (size_t i = 0; i < nlabels; i++)
		if (strcmp(f->labels[i], labels[i]) != 0)
			return false;
	for (size_t i = 0; i < nbounds; i++)
		if (dbits(f->bounds[i]) != dbits(bounds[i]))
			return false;
	return true;
}

/* ---- series ---- */

static uint64_t hash_key(const char *k, size_t n)
{
	uint64_t h = 14695981039346656037ULL; /* FNV-1a */
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)k[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static void child_free(struct op_metric_child *c)
{
	if (c == NULL)
		return;
	op_free(c->key);
	op_free(c);
}

static struct op_metric_child *child_new(struct op_metric *f, const char *key, size_t keylen,
                                         uint64_t hash)
{
	size_t nb = f->type == METRIC_HISTOGRAM ? f->nbounds + 1 : 0;
	struct op_metric_child *c = op_malloc(sizeof(*c) + nb * sizeof(c->buckets[0]));
	if (c == NULL)
		return NULL;
	c->fam = f;
	c->hash = hash;
	c->keylen = keylen;
	c->key = op_malloc(keylen ? keylen : 1);
	if (c->key == NULL) {
		op_free(c);
		return NULL;
	}
	if (keylen)
		memcpy(c->key, key, keylen);
	atomic_init(&c->value, dbits(0.0));
	for (size_t i = 0; i < nb; i++)
		atomic_init(&c->buckets[i], 0);
	return c;
}

static void table_put(struct op_metric_child **table, size_t cap, struct op_metric_child *c)
{
	size_t i = (size_t)c->hash & (cap - 1);
	while (table[i])
		i = (i + 1) & (cap - 1);
	table[i] = c;
}

/* Makes room for one more series in both arrays; f->lock held. */
static op_err reserve_series(struct op_metric *f)
{
	if (f->nseries == f->capseries) {
		size_t ncap = f->capseries ? f->capseries * 2 : 4;
		struct op_metric_child **p = op_realloc(f->series, ncap * sizeof(*p));
		if (p == NULL)
			return OP_ENOMEM;
		f->series = p;
		f->capseries = ncap;
	}
	/* Keep the table at most half full so probes stay short. */
	if ((f->nseries + 1) * 2 > f->tablecap) {
		size_t ncap = f->tablecap ? f->tablecap * 2 : 8;
		struct op_metric_child **t = op_calloc(ncap, sizeof(*t));
		if (t == NULL)
			return OP_ENOMEM;
		for (size_t i = 0; i < f->nseries; i++)
			table_put(t, ncap, f->series[i]);
		op_free(f->table);
		f->table = t;
		f->tablecap = ncap;
	}
	return OP_OK;
}

/* Finds or creates the series for key; f->lock held. */
static struct op_metric_child *lookup(struct op_metric *f, const char *key, size_t keylen)
{
	uint64_t h = hash_key(key, keylen);
	if (f->tablecap) {
		for (size_t i = (size_t)h & (f->tablecap - 1); f->table[i];
		     i = (i + 1) & (f->tablecap - 1)) {
			struct op_metric_child *c = f->table[i];
			if (c->hash == h && c->keylen == keylen && memcmp(c->key, key, keylen) == 0)
				return c;
		}
	}
	if (f->nseries >= f->max_series) {
		atomic_fetch_add_explicit(&f->dropped, 1, memory_order_relaxed);
		return NULL;
	}
	if (reserve_series(f) != OP_OK)
		return NULL;
	struct op_metric_child *c = child_new(f, key, keylen, h);
	if (c == NULL)
		return NULL;
	f->series[f->nseries++] = c;
	table_put(f->table, f->tablecap, c);
	return c;
}

struct op_metric_child *op_metric_with(struct op_metric *f, const char *const *label_values)
{
	if (f == NULL)
		return NULL;
	if (f->nlabels == 0)
		return f->solo;
	char key[OP_METRICS_MAX_LABELS_LEN + OP_METRICS_MAX_LABELS];
	size_t keylen = 0;
	for (size_t i = 0; i < f->nlabels; i++) {
		const char *v = label_values ? label_values[i] : NULL;
		size_t n = v ? strlen(v) : 0;
		/* The value bytes are capped; the NUL separators come on top. */
		if (v == NULL || n > OP_METRICS_MAX_LABELS_LEN + i - keylen) {
			atomic_fetch_add_explicit(&f->dropped, 1, memory_order_relaxed);
			return NULL;
		}
		memcpy(key + keylen, v, n + 1);
		keylen += n + 1;
	}
	pthread_mutex_lock(&f->lock);
	struct op_metric_child *c = lookup(f, key, keylen);
	pthread_mutex_unlock(&f->lock);
	return c;
}

void op_metric_set_max_series(struct op_metric *f, size_t max_series)
{
	if (f == NULL)
		return;
	pthread_mutex_lock(&f->lock);
	f->max_series = max_series;
	pthread_mutex_unlock(&f->lock);
}

/* ---- updates ---- */

void op_metric_add(struct op_metric_child *c, double v)
{
	if (c == NULL || c->fam->type == METRIC_HISTOGRAM)
		return;
	if (c->fam->type == METRIC_COUNTER && !(v >= 0))
		return;
	atomic_add_double(&c->value, v);
}

void op_metric_set(struct op_metric_child *c, double v)
{
	if (c == NULL || c->fam->type != METRIC_GAUGE)
		return;
	atomic_store_explicit(&c->value, dbits(v), memory_order_relaxed);
}

void op_metric_set_total(struct op_metric_child *c, double total)
{
	if (c == NULL || c->fam->type != METRIC_COUNTER)
		return;
	uint64_t cur = atomic_load_explicit(&c->value, memory_order_relaxed);
	while (total > bitsd(cur) &&
	       !atomic_compare_exchange_weak_explicit(&c->value, &cur, dbits(total),
	                                              memory_order_relaxed, memory_order_relaxed))
		;
}

void op_metric_observe(struct op_metric_child *c, double v)
{
	if (c == NULL || c->fam->type != METRIC_HISTOGRAM)
		return;
	const struct op_metric *f = c->fam;
	/* First bucket whose bound is >= v; NaN compares false everywhere: +Inf. */
	size_t lo = 0, hi = f->nbounds;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v <= f->bounds[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	if (isnan(v))
		lo = f->nbounds;
	atomic_fetch_add_explicit(&c->buckets[lo], 1, memory_order_relaxed);
	atomic_add_double(&c->value, v);
}

void op_metric_inc_labels(struct op_metric *f, const char *const *label_values, double v)
{
	op_metric_add(op_metric_with(f, label_values), v);
}

void op_metric_observe_labels(struct op_metric *f, const char *const *label_values, double v)
{
	op_metric_observe(op_metric_with(f, label_values), v);
}

double op_metric_value(const struct op_metric_child *c)
{
	if (c == NULL)
		return 0;
	if (c->fam->type != METRIC_HISTOGRAM)
		return bitsd(atomic_load_explicit(&c->value, memory_order_relaxed));
	uint64_t n = 0;
	for (size_t i = 0; i <= c->fam->nbounds; i++)
		n += atomic_load_explicit(&c->buckets[i], memory_order_relaxed);
	return (double)n;
}

uint64_t op_metric_dropped(const struct op_metric *f)
{
	return f ? atomic_load_explicit(&f->dropped, memory_order_relaxed) : 0;
}

/* ---- registry ---- */

static void family_free(struct op_metric *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->nseries; i++)
		child_free(f->series[i]);
	op_free(f->series);
	op_free(f->table);
	for (size_t i = 0; i < f->nlabels; i++)
		op_free(f->labels[i]);
	op_free(f->labels);
	op_free(f->bounds);
	op_free(f->name);
	op_free(f->help);
	pthread_mutex_destroy(&f->lock);
	op_free(f);
}

static struct op_metric *family_new(struct op_metrics *m, enum metric_type type, const char *name,
                                    const char *help, const char *const *labels, size_t nlabels,
                                    const double *bounds, size_t nbounds)
{
	struct op_metric *f = op_calloc(1, sizeof(*f));
	if (f == NULL)
		return NULL;
	if (pthread_mutex_init(&f->lock, NULL) != 0) {
		op_free(f);
		return NULL;
	}
	f->reg = m;
	f->type = type;
	f->max_series = OP_METRICS_MAX_SERIES;
	atomic_init(&f->dropped, 0);
	f->name = op_strdup(name);
	f->help = op_strdup(help);
	if (f->name == NULL || f->help == NULL)
		goto fail;
	if (nlabels) {
		f->labels = op_calloc(nlabels, sizeof(*f->labels));
		if (f->labels == NULL)
			goto fail;
		for (size_t i = 0; i < nlabels; i++) {
			f->labels[i] = op_strdup(labels[i]);
			if (f->labels[i] == NULL) {
				f->nlabels = i;
				goto fail;
			}
		}
		f->nlabels = nlabels;
	}
	if (nbounds) {
		f->bounds = op_malloc(nbounds * sizeof(*f->bounds));
		if (f->bounds == NULL)
			goto fail;
		memcpy(f->bounds, bounds, nbounds * sizeof(*f->bounds));
	}
	f->nbounds = nbounds;
	if (nlabels == 0) {
		f->solo = lookup(f, "", 0);
		if (f->solo == NULL)
			goto fail;
	}
	return f;
fail:
	family_free(f);
	return NULL;
}

static struct op_metric *add_family(struct op_metrics *m, enum metric_type type, const char *name,
                                    const char *help, const char *const *labels,
                                    const double *bounds, size_t nbounds)
{
	size_t nlabels = 0;
	struct op_metric *f = NULL;
	if (m == NULL || !valid_name(name, true) || strcmp(name, OP_METRICS_DROPPED_NAME) == 0)
		return NULL;
	if (help == NULL)
		help = "";
	while (labels && labels[nlabels] && nlabels <= OP_METRICS_MAX_LABELS)
		nlabels++;
	if (nlabels > OP_METRICS_MAX_LABELS || !valid_labels(labels, nlabels, type) ||
	    !valid_bounds(bounds, nbounds))
		return NULL;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->nfams; i++) {
		struct op_metric *o = m->fams[i];
		if (strcmp(o->name, name) == 0) {
			if (same_family(o, type, help, labels, nlabels, bounds, nbounds))
				f = o;
			goto out;
		}
		if ((o->type == METRIC_HISTOGRAM && suffix_clash(o->name, name)) ||
		    (type == METRIC_HISTOGRAM && suffix_clash(name, o->name)))
			goto out;
	}
	if (m->nfams == m->capfams) {
		size_t ncap = m->capfams ? m->capfams * 2 : 16;
		struct op_metric **p = op_realloc(m->fams, ncap * sizeof(*p));
		if (p == NULL)
			goto out;
		m->fams = p;
		m->capfams = ncap;
	}
	f = family_new(m, type, name, help, labels, nlabels, bounds, nbounds);
	if (f)
		m->fams[m->nfams++] = f;
out:
	pthread_mutex_unlock(&m->lock);
	return f;
}

struct op_metric *op_metrics_counter(struct op_metrics *m, const char *name, const char *help,
                                     const char *const *label_names)
{
	return add_family(m, METRIC_COUNTER, name, help, label_names, NULL, 0);
}

struct op_metric *op_metrics_gauge(struct op_metrics *m, const char *name, const char *help,
                                   const char *const *label_names)
{
	return add_family(m, METRIC_GAUGE, name, help, label_names, NULL, 0);
}

struct op_metric *op_metrics_histogram(struct op_metrics *m, const char *name, const char *help,
                                       const char *const *label_names, const double *bounds,
                                       size_t nbounds)
{
	return add_family(m, METRIC_HISTOGRAM, name, help, label_names, bounds, nbounds);
}

struct op_metrics *op_metrics_new(void)
{
	struct op_metrics *m = op_calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	if (pthread_mutex_init(&m->lock, NULL) != 0) {
		op_free(m);
		return NULL;
	}
	if (pthread_mutex_init(&m->render_lock, NULL) != 0) {
		pthread_mutex_destroy(&m->lock);
		op_free(m);
		return NULL;
	}
	return m;
}

void op_metrics_free(struct op_metrics *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nfams; i++)
		family_free(m->fams[i]);
	op_free(m->fams);
	op_free(m->cbs);
	pthread_mutex_destroy(&m->lock);
	pthread_mutex_destroy(&m->render_lock);
	op_free(m);
}

op_err op_metrics_on_scrape(struct op_metrics *m, op_metrics_scrape_fn fn, void *ud)
{
	op_err e = OP_OK;
	if (m == NULL || fn == NULL)
		return OP_EINVAL;
	pthread_mutex_lock(&m->lock);
	if (m->ncbs == m->capcbs) {
		size_t ncap = m->capcbs ? m->capcbs * 2 : 4;
		struct scrape_cb *p = op_realloc(m->cbs, ncap * sizeof(*p));
		if (p == NULL) {
			e = OP_ENOMEM;
			goto out;
		}
		m->cbs = p;
		m->capcbs = ncap;
	}
	m->cbs[m->ncbs].fn = fn;
	m->cbs[m->ncbs].ud = ud;
	m->ncbs++;
out:
	pthread_mutex_unlock(&m->lock);
	return e;
}

/* ---- render ---- */

/*
 * Shortest text that reads back as v: integers below 1e17 in plain digits
 * (exact), others with the fewest significant digits that round-trip;
 * +Inf, -Inf and NaN as Prometheus spells them.
 */
static void fmt_num(char out[32], double v)
{
	if (isnan(v)) {
		memcpy(out, "NaN", 4);
		return;
	}
	if (isinf(v)) {
		memcpy(out, v > 0 ? "+Inf" : "-Inf", 5);
		return;
	}
	if (v == 0) {
		memcpy(out, "0", 2);
		return;
	}
	if (fabs(v) < 1e17 && v == trunc(v)) {
		snprintf(out, 32, "%.0f", v);
		return;
	}
	for (int prec = 15; prec < 17; prec++) {
		snprintf(out, 32, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
	snprintf(out, 32, "%.17g", v);
}

static op_err add_escaped(struct op_buf *b, const char *s, bool quote)
{
	op_err e = OP_OK;
	const char *run = s;
	for (const char *p = s;; p++) {
		const char *rep = NULL;
		if (*p == '\\')
			rep = "\\\\";
		else if (*p == '\n')
			rep = "\\n";
		else if (quote && *p == '"')
			rep = "\\\"";
		else if (*p != '\0')
			continue;
		if ((e = op_buf_add(b, run, (size_t)(p - run))) != OP_OK)
			return e;
		if (rep == NULL)
			return OP_OK;
		if ((e = op_buf_adds(b, rep)) != OP_OK)
			return e;
		run = p + 1;
	}
}

/* name{labels,le="x"} value\n; le NULL for no le label. */
static op_err add_sample(struct op_buf *b, const struct op_metric *f, const char *suffix,
                         const struct op_metric_child *c, const char *le, double v)
{
	op_err e;
	char num[32];
	if ((e = op_buf_adds(b, f->name)) != OP_OK || (e = op_buf_adds(b, suffix)) != OP_OK)
		return e;
	if (f->nlabels || le) {
		if ((e = op_buf_addc(b, '{')) != OP_OK)
			return e;
		const char *lv = c->key;
		for (size_t i = 0; i < f->nlabels; i++) {
			if ((e = op_buf_adds(b, i ? "," : "")) != OP_OK ||
			    (e = op_buf_adds(b, f->labels[i])) != OP_OK ||
			    (e = op_buf_adds(b, "=\"")) != OP_OK ||
			    (e = add_escaped(b, lv, true)) != OP_OK ||
			    (e = op_buf_addc(b, '"')) != OP_OK)
				return e;
			lv += strlen(lv) + 1;
		}
		if (le && ((e = op_buf_adds(b, f->nlabels ? ",le=\"" : "le=\"")) != OP_OK ||
		           (e = op_buf_adds(b, le)) != OP_OK || (e = op_buf_addc(b, '"')) != OP_OK))
			return e;
		if ((e = op_buf_addc(b, '}')) != OP_OK)
			return e;
	}
	fmt_num(num, v);
	if ((e = op_buf_addc(b, ' ')) != OP_OK || (e = op_buf_adds(b, num)) != OP_OK ||
	    (e = op_buf_addc(b, '\n')) != OP_OK)
		return e;
	return OP_OK;
}

static op_err add_header(struct op_buf *b, const char *name, const char *help, const char *type)
{
	op_err e;
	if ((e = op_buf_adds(b, "# HELP ")) != OP_OK || (e = op_buf_adds(b, name)) != OP_OK ||
	    (e = op_buf_addc(b, ' ')) != OP_OK || (e = add_escaped(b, help, false)) != OP_OK ||
	    (e = op_buf_addf(b, "\n# TYPE %s %s\n", name, type)) != OP_OK)
		return e;
	return OP_OK;
}

static op_err render_histogram(struct op_buf *b, const struct op_metric *f,
                               const struct op_metric_child *c)
{
	op_err e;
	char le[32];
	uint64_t cum = 0;
	for (size_t i = 0; i <= f->nbounds; i++) {
		cum += atomic_load_explicit(&c->buckets[i], memory_order_relaxed);
		if (i < f->nbounds)
			fmt_num(le, f->bounds[i]);
		else
			memcpy(le, "+Inf", 5);
		if ((e = add_sample(b, f, "_bucket", c, le, (double)cum)) != OP_OK)
			return e;
	}
	double sum = bitsd(atomic_load_explicit(&c->value, memory_order_relaxed));
	if ((e = add_sample(b, f, "_sum", c, NULL, sum)) != OP_OK ||
	    (e = add_sample(b, f, "_count", c, NULL, (double)cum)) != OP_OK)
		return e;
	return OP_OK;
}

/* f->lock held. */
static op_err render_family(struct op_buf *b, const struct op_metric *f)
{
	op_err e;
	if (f->nseries == 0)
		return OP_OK;
	if ((e = add_header(b, f->name, f->help, type_names[f->type])) != OP_OK)
		return e;
	for (size_t i = 0; i < f->nseries; i++) {
		const struct op_metric_child *c = f->series[i];
		if (f->type == METRIC_HISTOGRAM)
			e = render_histogram(b, f, c);
		else
			e = add_sample(
			    b, f, "", c, NULL,
			    bitsd(atomic_load_explicit(&c->value, memory_order_relaxed)));
		if (e != OP_OK)
			return e;
	}
	return OP_OK;
}

/* The refused-series counter, one series per family that refused any; m->lock held. */
static op_err render_dropped(struct op_buf *b, struct op_metrics *m)
{
	op_err e;
	bool header = false;
	for (size_t i = 0; i < m->nfams; i++) {
		uint64_t n = op_metric_dropped(m->fams[i]);
		char num[32];
		if (n == 0)
			continue;
		if (!header &&
		    (e = add_header(b, OP_METRICS_DROPPED_NAME,
		                    "Series refused past a family's cardinality cap or label size "
		                    "limit.",
		                    "counter")) != OP_OK)
			return e;
		header = true;
		fmt_num(num, (double)n);
		if ((e = op_buf_adds(b, OP_METRICS_DROPPED_NAME "{metric=\"")) != OP_OK ||
		    (e = op_buf_adds(b, m->fams[i]->name)) != OP_OK ||
		    (e = op_buf_addf(b, "\"} %s\n", num)) != OP_OK)
			return e;
	}
	return OP_OK;
}

op_err op_metrics_render(struct op_metrics *m, struct op_buf *out)
{
	op_err e = OP_OK;
	size_t start = out ? out->len : 0;
	if (m == NULL || out == NULL)
		return OP_EINVAL;
	pthread_mutex_lock(&m->render_lock);
	/* By index, re-reading under the lock: a callback may register another. */
	for (size_t i = 0;; i++) {
		pthread_mutex_lock(&m->lock);
		struct scrape_cb cb = {NULL, NULL};
		if (i < m->ncbs)
			cb = m->cbs[i];
		pthread_mutex_unlock(&m->lock);
		if (cb.fn == NULL)
			break;
		cb.fn(cb.ud, m);
	}
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->nfams && e == OP_OK; i++) {
		struct op_metric *f = m->fams[i];
		pthread_mutex_lock(&f->lock);
		e = render_family(out, f);
		pthread_mutex_unlock(&f->lock);
	}
	if (e == OP_OK)
		e = render_dropped(out, m);
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&m->render_lock);
	if (e != OP_OK) {
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
	}
	return e;
}
