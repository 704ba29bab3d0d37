/*
 * Connection pools (see pool.h). One mutex guards every pool: taking and
 * giving back are short list operations, and connecting or pinging happens
 * outside it. A pool is keyed by driver, conninfo, account name and the
 * account's version, so a changed password opens new connections and the
 * old ones age out.
 *
 * Invariant: out + idle count never exceeds the max of the step that asked
 * (the first max a pool saw bounds it: steps of one target share one).
 */
#include "connectors/db/pool.h"
#include "agent/core/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "connectors/db/db_int.h"

#define PING_AFTER_MS 30000 /* idle longer than this: a round trip before reuse */
#define IDLE_MAX      64    /* idle connections kept per pool */

struct pool {
	char *key;
	size_t max;
	size_t out; /* connections taken and not given back */
	struct op_db_conn *idle[IDLE_MAX];
	size_t n_idle;
	struct pool *next;
};

struct op_db_pools {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a connection came back */
	struct pool *pools;
};

long long op_db__left_ms(const struct op_db_wait *w)
{
	long long left = w->deadline_ms - op_mono_ms();
	return left > 0 ? left : 0;
}

op_err op_db_pools_new(struct op_db_pools **out)
{
	*out = NULL;
	struct op_db_pools *p = op_calloc(1, sizeof(*p));
	if (p == NULL)
		return OP_ENOMEM;
	pthread_condattr_t ca;
	bool ok = pthread_condattr_init(&ca) == 0;
	ok = ok && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0;
	if (!ok || pthread_mutex_init(&p->mu, NULL) != 0) {
		op_free(p);
		return OP_ENOMEM;
	}
	if (pthread_cond_init(&p->cv, &ca) != 0) {
		pthread_mutex_destroy(&p->mu);
		op_free(p);
		return OP_ENOMEM;
	}
	pthread_condattr_destroy(&ca);
	*out = p;
	return OP_OK;
}

static void conn_close(struct op_db_conn *c)
{
	if (c == NULL)
		return;
	c->drv->close(c->h);
	op_free(c->key);
	op_free(c);
}

void op_db_pools_free(struct op_db_pools *p)
{
	if (p == NULL)
		return;
	for (struct pool *q = p->pools, *next; q; q = next) {
		next = q->next;
		for (size_t i = 0; i < q->n_idle; i++)
			conn_close(q->idle[i]);
		op_free(q->key);
		op_free(q);
	}
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	op_free(p);
}

static struct pool *pool_find(struct op_db_pools *p, const char *key, size_t max)
{
	for (struct pool *q = p->pools; q; q = q->next) {
		if (strcmp(q->key, key) == 0)
			return q;
	}
	struct pool *q = op_calloc(1, sizeof(*q));
	if (q == NULL || (q->key = op_strdup(key)) == NULL) {
		op_free(q);
		return NULL;
	}
	q->max = max;
	q->next = p->pools;
	p->pools = q;
	return q;
}

/* Closes, under the lock, idle connections unused for too long. */
static void expire_locked(struct pool *q, long long now, struct op_db_conn **dead, size_t *nd)
{
	size_t k = 0;
	for (size_t i = 0; i < q->n_idle; i++) {
		if (now - q->idle[i]->idle_since_ms > OP_DB_POOL_IDLE_MS)
			dead[(*nd)++] = q->idle[i];
		else
			q->idle[k++] = q->idle[i];
	}
	q->n_idle = k;
}

static op_err make_key(const struct op_db_driver *drv, const char *conninfo,
                       const struct op_account *a, char **out)
{
	size_t n = strlen(drv->name) + strlen(conninfo) + strlen(a->name) + 64;
	*out = op_malloc(n);
	if (*out == NULL)
		return OP_ENOMEM;
	snprintf(*out, n, "%s\n%s\n%s\n%lld", drv->name, conninfo, a->name,
	         (long long)a->updated_ms);
	return OP_OK;
}

op_err op_db__conn_get(struct op_db_pools *pools, const struct op_db_driver *drv,
                       const char *conninfo, const struct op_account *a, size_t max,
                       const struct op_db_wait *w, struct op_db_conn **out, char *why,
                       size_t whylen)
{
	*out = NULL;
	char *key = NULL;
	if (make_key(drv, conninfo, a, &key) != OP_OK)
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	struct op_db_conn *dead[IDLE_MAX], *c = NULL;
	size_t nd = 0;
	op_err rc = OP_OK;
	pthread_mutex_lock(&pools->mu);
	struct pool *q = pool_find(pools, key, max);
	if (q == NULL) {
		pthread_mutex_unlock(&pools->mu);
		op_free(key);
		return op_errf(why, whylen, OP_ENOMEM, "out of memory");
	}
	while (rc == OP_OK) {
		expire_locked(q, op_mono_ms(), dead, &nd);
		if (q->n_idle > 0) {
			c = q->idle[--q->n_idle];
			q->out++;
			break;
		}
		if (q->out < q->max) {
			q->out++; /* reserved; connected below, outside the lock */
			break;
		}
		long long left = op_db__left_ms(w);
		if (left == 0) {
			rc = op_errf(why, whylen, OP_EBUSY,
			             "all %zu connections of the pool are in use (maxConnections)",
			             q->max);
			break;
		}
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		long long wait = left < 200 ? left : 200; /* also re-check cancellation */
		ts.tv_sec += wait / 1000;
		ts.tv_nsec += (wait % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&pools->cv, &pools->mu, &ts);
		if (w->cancelled && w->cancelled(w->ud))
			rc = op_errf(why, whylen, OP_ECANCELED, "cancelled");
	}
	pthread_mutex_unlock(&pools->mu);
	for (size_t i = 0; i < nd; i++)
		conn_close(dead[i]);
	if (rc) {
		op_free(key);
		return rc;
	}
	/* An idle connection: usable at a glance, and answering when it sat long. */
	if (c && (!c->drv->usable(c->h) || (op_mono_ms() - c->idle_since_ms > PING_AFTER_MS &&
	                                    c->drv->ping(c->h, w, why, whylen) != OP_OK))) {
		conn_close(c);
		c = NULL;
	}
	if (c == NULL) {
		c = op_calloc(1, sizeof(*c));
		if (c == NULL) {
			rc = op_errf(why, whylen, OP_ENOMEM, "out of memory");
		} else {
			c->drv = drv;
			c->key = key;
			key = NULL;
			rc = drv->connect(conninfo, a, w, &c->h, why, whylen);
		}
		if (rc) {
			if (c)
				op_free(c->key);
			op_free(c);
			c = NULL;
			pthread_mutex_lock(&pools->mu);
			q->out--;
			pthread_cond_signal(&pools->cv);
			pthread_mutex_unlock(&pools->mu);
		}
	}
	op_free(key);
	*out = c;
	return rc;
}

void op_db__conn_put(struct op_db_pools *pools, struct op_db_conn *c)
{
	if (c == NULL)
		return;
	bool keep = !c->broken && c->drv->usable(c->h);
	c->idle_since_ms = op_mono_ms();
	pthread_mutex_lock(&pools->mu);
	struct pool *q = pools->pools;
	while (q && strcmp(q->key, c->key) != 0)
		q = q->next;
	if (q) {
		q->out--;
		if (keep && q->n_idle < IDLE_MAX) {
			q->idle[q->n_idle++] = c;
			c = NULL;
		}
	}
	pthread_cond_signal(&pools->cv);
	pthread_mutex_unlock(&pools->mu);
	conn_close(c);
}
