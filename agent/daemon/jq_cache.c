/*
 * The known jq programs kept in the store, and the warm-up thread. One thread
 * at most: op_jq_cache_loaded starts it, or, while it runs, asks it for one
 * more pass, so a set loaded during a pass is never missed. It runs at nice
 * 10, since it only saves the first request of each program a compile.
 */
#define OP_LOG_MODULE "jq"

#include "agent/daemon/jq_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <unistd.h>

#include "agent/core/alloc.h"
#include "agent/core/log.h"
#include "connectors/transform/jq.h"

struct op_jq_cache {
	struct op_store *store;
	uint64_t saved_gen; /* op_jq_known_gen() of what the store holds */
	pthread_mutex_t mu;
	pthread_t th;
	bool started; /* th was created and not joined; mu */
	bool running; /* th is in its loop; mu */
	bool again;   /* another pass wanted; mu */
	atomic_bool stop;
};

op_err op_jq_cache_open(struct op_store *s, struct op_jq_cache **out)
{
	*out = NULL;
	struct op_jq_cache *c = op_calloc(1, sizeof(*c));
	if (c == NULL || pthread_mutex_init(&c->mu, NULL) != 0) {
		op_free(c);
		return OP_ENOMEM;
	}
	c->store = s;
	atomic_init(&c->stop, false);
	char *val = NULL;
	size_t len = 0;
	op_err rc = op_store_get(s, OP_STORE_STATE, OP_JQ_CACHE_KEY, &val, &len);
	if (rc == OP_OK) {
		rc = op_jq_known_import(val, len);
		if (rc == OP_EINVAL)
			OP_LOGW("store state %s: %zu bytes, not whole hashes: ignored, programs "
			        "compile at load",
			        OP_JQ_CACHE_KEY, len);
		else if (rc)
			OP_LOGW("store state %s: cannot load: %s", OP_JQ_CACHE_KEY, op_err_str(rc));
	} else if (rc != OP_ENOTFOUND) {
		OP_LOGW("store state %s: cannot read: %s", OP_JQ_CACHE_KEY, op_err_str(rc));
	}
	op_free(val);
	/* What the store holds; an import that failed is stored again later. */
	c->saved_gen = rc == OP_OK ? op_jq_known_gen() : 0;
	*out = c;
	return OP_OK;
}

static void *warm_main(void *arg)
{
	struct op_jq_cache *c = arg;
	(void)pthread_setname_np(pthread_self(), "op-jq-warm");
	/* Per thread on Linux: only this one yields to the others. */
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
	for (;;) {
		size_t n = op_jq_warm(&c->stop);
		if (n > 0)
			OP_LOGD("compiled %zu known jq programs ahead", n);
		pthread_mutex_lock(&c->mu);
		if (!c->again || atomic_load(&c->stop)) {
			c->running = false;
			pthread_mutex_unlock(&c->mu);
			return NULL;
		}
		c->again = false;
		pthread_mutex_unlock(&c->mu);
	}
}

static void save(struct op_jq_cache *c)
{
	if (op_jq_known_gen() == c->saved_gen)
		return;
	void *buf = NULL;
	size_t len = 0;
	uint64_t gen;
	op_err rc = op_jq_known_export(&buf, &len, &gen);
	if (rc == OP_OK && len > 0)
		rc = op_store_put(c->store, OP_STORE_STATE, OP_JQ_CACHE_KEY, buf, len);
	op_free(buf);
	if (rc == OP_OK)
		c->saved_gen = gen;
	else
		OP_LOGW("store state %s: cannot save: %s (programs compile at the next start)",
		        OP_JQ_CACHE_KEY, op_err_str(rc));
}

void op_jq_cache_loaded(struct op_jq_cache *c)
{
	if (c == NULL)
		return;
	save(c);
	pthread_mutex_lock(&c->mu);
	if (c->running) {
		c->again = true;
	} else if (!atomic_load(&c->stop)) {
		if (c->started)
			pthread_join(c->th, NULL); /* out of its loop: returns at once */
		c->started = pthread_create(&c->th, NULL, warm_main, c) == 0;
		c->running = c->started;
		if (!c->started)
			OP_LOGW("cannot start the jq warm-up thread: first runs compile");
	}
	pthread_mutex_unlock(&c->mu);
}

void op_jq_cache_close(struct op_jq_cache *c)
{
	if (c == NULL)
		return;
	atomic_store(&c->stop, true);
	pthread_mutex_lock(&c->mu);
	bool join = c->started;
	c->started = false;
	pthread_mutex_unlock(&c->mu);
	if (join)
		pthread_join(c->th, NULL);
	pthread_mutex_destroy(&c->mu);
	op_free(c);
}
