/*
 * The outbox's drain and the logger's tap (see link.h): records wait in the
 * store; this thread sends them in seq order, a few messages per stream in
 * flight, the streams in turn, and the store deletes them once the broker
 * acknowledged them.
 */
#define OP_LOG_MODULE "control"
#include <MQTTAsync.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/clock.h"
#include "agent/core/log.h"
#include "control-sync/link_int.h"
#include "control-sync/outbox.h"

/* Under l->mu, as the connection comes up (before the drain can see it
 * up): each stream starts again after its last acknowledged record, and
 * callbacks of messages sent on the old connection no longer count. */
void op_link__drain_restart_locked(struct op_link *l)
{
	l->epoch++;
	for (int i = 0; i < OP_OUTBOX_STREAMS; i++) {
		struct drain_stream *d = &l->ds[i];
		d->sent = d->acked;
		d->head = d->count = 0;
	}
	l->drain_hint = true;
	pthread_cond_broadcast(&l->cv);
}

/* ---- the outbox's drain ---- */

/* The store committed outbox records (its writer thread). */
void op_link__on_outbox_add(void *ud)
{
	struct op_link *l = ud;
	pthread_mutex_lock(&l->mu);
	l->drain_hint = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

/* Under l->mu: message first..last of stream st ended (acknowledged, or
 * refused for good); returns the seq up to which the store may delete, or
 * 0 when the stream's oldest message in flight is still on its way. */
static uint64_t flight_done_locked(struct op_link *l, enum op_outbox_stream st, uint64_t first)
{
	struct drain_stream *d = &l->ds[st];
	for (unsigned k = 0; k < d->count; k++) {
		struct flight *f = &d->ring[(d->head + k) % WINDOW];
		if (f->first == first)
			f->done = true;
	}
	uint64_t upto = 0;
	while (d->count && d->ring[d->head].done) {
		upto = d->ring[d->head].last;
		d->acked = upto;
		d->head = (d->head + 1) % WINDOW;
		d->count--;
	}
	l->drain_hint = true;
	pthread_cond_broadcast(&l->cv);
	return upto;
}

/* Under l->mu: c leaves l->pubs. */
static void pub_unlink_locked(struct op_link *l, struct pub_ctx *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		l->pubs = c->next;
	if (c->next)
		c->next->prev = c->prev;
}

static void batch_ended(struct pub_ctx *c, bool refused)
{
	struct op_link *l = c->l;
	uint64_t upto = 0;
	pthread_mutex_lock(&l->mu);
	pub_unlink_locked(l, c);
	if (c->epoch == l->epoch) {
		upto = flight_done_locked(l, c->st, c->first);
		if (!refused) {
			l->stats.sent[c->st] += c->last - c->first + 1;
			l->stats.batches++;
		}
	}
	pthread_mutex_unlock(&l->mu);
	if (upto && op_store_outbox_ack(l->store, c->st, upto) != OP_OK)
		OP_LOGW("the outbox cannot delete %s records up to %llu; they may be sent again",
		        op_outbox_stream_name(c->st), (unsigned long long)upto);
	op_free(c);
}

/* With MQTT 5 a PUBACK may carry a refusal (not authorized, too large): the
 * broker will never take those records, so they go, said once (and not to
 * the outbox: that line would be refused again, and so on). */
static void batch_refused(struct pub_ctx *c, int reason)
{
	OP_LOGE_LOCAL("the broker refused outbox %s records %llu..%llu: %s; they are dropped",
	              op_outbox_stream_name(c->st), (unsigned long long)c->first,
	              (unsigned long long)c->last,
	              MQTTReasonCode_toString((enum MQTTReasonCodes)reason));
	batch_ended(c, true);
}

static void on_batch_ok(void *ctx, MQTTAsync_successData5 *r)
{
	struct pub_ctx *c = ctx;
	if (r && r->reasonCode >= 0x80)
		batch_refused(c, r->reasonCode);
	else
		batch_ended(c, false);
}

static void on_batch_failed(void *ctx, MQTTAsync_failureData5 *r)
{
	struct pub_ctx *c = ctx;
	struct op_link *l = c->l;
	if (r && r->reasonCode >= 0x80) {
		batch_refused(c, r->reasonCode);
		return;
	}
	/* Lost with the connection: sent again after the next connect. */
	pthread_mutex_lock(&l->mu);
	pub_unlink_locked(l, c);
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	op_free(c);
}

/*
 * Sends the next message of stream st if its window has room; true when it
 * sent one. Called without l->mu.
 */
static bool drain_one(struct op_link *l, enum op_outbox_stream st, struct op_buf *msg)
{
	pthread_mutex_lock(&l->mu);
	struct drain_stream *d = &l->ds[st];
	bool room = l->st == ST_UP && !l->stop && d->count < WINDOW;
	uint64_t after = d->sent;
	unsigned epoch = l->epoch;
	pthread_mutex_unlock(&l->mu);
	if (!room)
		return false;
	struct op_outbox_batch b;
	memset(&b, 0, sizeof(b));
	op_err rc = op_store_outbox_read(l->store, st, after, OP_OUTBOX_BATCH_RECORDS,
	                                 OP_OUTBOX_BATCH_BYTES, &b);
	if (rc) {
		OP_LOGW("cannot read the outbox's %s records: %s", op_outbox_stream_name(st),
		        op_err_str(rc));
		return false;
	}
	if (b.n == 0) {
		op_outbox_batch_free(&b);
		return false;
	}
	struct op_outbox_stats os;
	op_store_outbox_stats(l->store, &os);
	op_buf_reset(msg);
	rc = op_outbox_message(l->cfg->agent.id, st, os.dropped[st], &b, msg);
	struct pub_ctx *c = rc == OP_OK ? op_malloc(sizeof(*c)) : NULL;
	uint64_t first = b.v[0].seq, last = b.v[b.n - 1].seq;
	op_outbox_batch_free(&b);
	if (c == NULL) {
		OP_LOGW("out of memory for an outbox message; it is sent later");
		return false;
	}
	*c = (struct pub_ctx){.l = l, .epoch = epoch, .st = st, .first = first, .last = last};
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	ro.onSuccess5 = on_batch_ok;
	ro.onFailure5 = on_batch_failed;
	ro.context = c;
	MQTTAsync_message m = MQTTAsync_message_initializer;
	m.payload = msg->data;
	m.payloadlen = (int)msg->len;
	m.qos = 1;
	pthread_mutex_lock(&l->mu);
	/* Recorded before it is sent: its callback may come at once. */
	bool same = epoch == l->epoch && l->st == ST_UP;
	if (same) {
		d->ring[(d->head + d->count) % WINDOW] =
		    (struct flight){.first = first, .last = last, .done = false};
		d->count++;
		d->sent = last;
		c->next = l->pubs;
		if (l->pubs)
			l->pubs->prev = c;
		l->pubs = c;
	}
	pthread_mutex_unlock(&l->mu);
	if (!same) {
		op_free(c);
		return false;
	}
	int prc = MQTTAsync_sendMessage(l->cl, l->t_out[st], &m, &ro);
	if (prc != MQTTASYNC_SUCCESS) {
		/* Not sent: as if lost with the connection, from the last acked. */
		pthread_mutex_lock(&l->mu);
		pub_unlink_locked(l, c);
		if (epoch == l->epoch) {
			d->count--;
			d->sent =
			    d->count ? d->ring[(d->head + d->count - 1) % WINDOW].last : d->acked;
		}
		pthread_mutex_unlock(&l->mu);
		op_free(c);
		return false;
	}
	return true;
}

/* A metrics record into the outbox. */
static void metrics_record(struct op_link *l)
{
	if (l->h.metrics == NULL)
		return;
	struct op_buf prom;
	op_buf_init(&prom, (size_t)64 << 20);
	char *rec = NULL;
	size_t len = 0;
	op_err rc = l->h.metrics(l->h.ud, &prom);
	if (rc == OP_OK)
		rc = op_outbox_metrics_record(prom.data ? prom.data : "", prom.len, &rec, &len);
	if (rc == OP_OK)
		rc = op_store_outbox_add(l->store, OP_OUTBOX_METRICS, rec, len);
	if (rc)
		OP_LOGW("no metrics record this time: %s", op_err_str(rc));
	op_free(rec);
	op_buf_fini(&prom);
}

void *op_link__drain_main(void *arg)
{
	struct op_link *l = arg;
	(void)pthread_setname_np(pthread_self(), "op-drain");
	struct op_buf msg;
	op_buf_init(&msg, (size_t)OP_OUTBOX_BATCH_BYTES * 2 + ((size_t)1 << 20));
	int64_t every = (int64_t)l->cfg->control.metrics_interval_ms;
	int64_t metrics_due = op_mono_ms() + every;
	unsigned turn = 0;
	for (;;) {
		if (op_mono_ms() >= metrics_due) {
			metrics_record(l);
			metrics_due = op_mono_ms() + every;
		}
		/* The streams in turn, one message each, so that a backlog of
		 * one does not hold the others back. */
		bool sent = false;
		for (int k = 0; k < OP_OUTBOX_STREAMS; k++)
			sent = drain_one(l,
			                 (enum op_outbox_stream)((turn + (unsigned)k) %
			                                         OP_OUTBOX_STREAMS),
			                 &msg) ||
			       sent;
		turn++;
		pthread_mutex_lock(&l->mu);
		if (l->stop) {
			pthread_mutex_unlock(&l->mu);
			break;
		}
		if (!sent && !l->drain_hint)
			op_link__wait_until(l, metrics_due);
		l->drain_hint = false;
		pthread_mutex_unlock(&l->mu);
	}
	op_buf_fini(&msg);
	return NULL;
}

/* ---- the logger's tap: log lines into the outbox ---- */

static struct {
	atomic_bool on;
	atomic_int busy; /* taps running now */
	struct op_store *store;
	int level;
} tap;

static void log_tap(enum op_log_level lvl, const char *module, const char *line, void *ud)
{
	(void)ud;
	atomic_fetch_add(&tap.busy, 1);
	/* Audit lines (commands) go up whatever the level. */
	if (atomic_load(&tap.on) && ((int)lvl <= tap.level || strcmp(module, "audit") == 0)) {
		char *rec = NULL;
		size_t len = 0;
		if (op_outbox_log_record(lvl, module, line, &rec, &len) == OP_OK) {
			/* A failure here cannot be logged: it would come back here. */
			op_err rc = op_store_outbox_add(tap.store, OP_OUTBOX_LOGS, rec, len);
			(void)rc;
		}
		op_free(rec);
	}
	atomic_fetch_sub(&tap.busy, 1);
}

void op_link__tap_on(struct op_link *l)
{
	tap.store = l->store;
	tap.level = l->cfg->control.log_level;
	atomic_store(&tap.on, true);
	op_log_set_tap(log_tap, NULL);
}

void op_link__tap_off(void)
{
	op_log_set_tap(NULL, NULL);
	atomic_store(&tap.on, false);
	while (atomic_load(&tap.busy) > 0)
		sched_yield();
}

void op_link__pubs_free(struct op_link *l)
{
	/* Called once the client is gone: no callback comes any more. */
	while (l->pubs) {
		struct pub_ctx *next = l->pubs->next;
		op_free(l->pubs);
		l->pubs = next;
	}
}
