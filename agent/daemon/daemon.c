/*
 * The daemon: wires the runtime to the HTTP trigger server and the admin
 * endpoint, and keeps the metrics.
 *
 * Invariant: the HTTP routes always belong to the pipeline set that runs.
 * Routes are built from a candidate set before it is swapped in (so clashing
 * routes refuse a reload whole), and requests hold a reference to the route
 * table they matched in, so a reload never frees one under a request.
 */
#define OP_LOG_MODULE "daemon"
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agent/account/lookup.h"
#include "agent/account/vault.h"
#include "agent/auth/auth.h"
#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/core/pool.h"
#include "agent/core/version.h"
#include "agent/daemon/admin.h"
#include "agent/daemon/daemon.h"
#include "agent/daemon/events.h"
#include "agent/daemon/metrics.h"
#include "agent/daemon/mqtt_in.h"
#include "agent/daemon/mqtt_out.h"
#include "agent/daemon/remote.h"
#include "agent/daemon/runtime.h"
#include "agent/daemon/scheduler.h"
#include "agent/engine/loader.h"
#include "agent/http/route.h"
#include "agent/http/server.h"
#include "agent/trigger/http_map.h"
#include "agent/trigger/trigger.h"
#include "connectors/db/pool.h"
#include "control-sync/link.h"
#include "control-sync/seal.h"

/* A sync thread (the sync pool's) idle this long exits; it keeps its jq
 * states until then, so a burst that comes back soon compiles nothing. */
#define SYNC_IDLE_MS 120000
/* At a stop, how long cancelled sync runs get to answer themselves. */
#define SYNC_CANCEL_MS 2000

/* How long the start waits for mqtt triggers' consumers to subscribe. */
#define MQTT_READY_MS 5000

struct route_target {
	const char *pipeline; /* borrowed from the set the routes hold */
	const struct op_http_trigger *t;
	bool waits; /* a sync run goes to the sync pool (op_pipeline.waits) */
};

/* The HTTP routes of one pipeline set; they hold a reference to that set. */
struct routes {
	struct op_http_router *router;
	struct route_target *targets;
	size_t n;
	struct op_runtime_set *set; /* NULL until attached (and in op_daemon_check) */
	int refs;                   /* under dm->mu */
};

struct op_daemon {
	struct op_config *cfg;
	struct op_runtime *rt;
	struct op_scheduler *sched;   /* schedule triggers */
	struct op_mqtt_in *mqtt;      /* mqtt triggers */
	struct op_mqtt_out *pub;      /* mqtt-publish steps */
	struct op_accounts *accounts; /* for connector steps */
	struct op_db_pools *db_pools; /* db steps' connections */
	char **file_dirs;             /* [files] dirs, for file steps */
	size_t n_file_dirs;
	struct op_http_server *http, *admin;
	/* Sync pipelines that may wait run here, not on the HTTP threads; NULL
	 * with [http] sync_threads 0. sync_stop cancels them at the stop. */
	struct op_pool *sync_pool;
	atomic_bool sync_stop;
	long long http_timeout_ms; /* [http] timeout: no sync request waits longer; set at start */
	atomic_bool ready;
	_Atomic int64_t stall_limit_ms; /* /healthz: a writer stuck this long is not alive */

	pthread_mutex_t mu;
	struct routes *routes;

	/* Reloads (SIGHUP, main thread) and deploys (the link's thread) change
	 * the pipeline set one at a time. */
	pthread_mutex_t set_mu;
	/* Held to change cfg's brokers (a reload) and by the MQTT trigger
	 * thread while it reads them. */
	pthread_mutex_t brokers_mu;
	atomic_bool prune_brokers; /* a reload removed brokers: prune once nothing drains */
	struct op_link *link;      /* the control plane; NULL without [control] url */
	struct op_vault *vault;    /* where accounts from the control plane go */
	uint8_t seal_priv[OP_SEAL_KEY_LEN], seal_pub[OP_SEAL_KEY_LEN]; /* accounts are sealed to */
	char seal_error[600]; /* why there is no seal key ("" when there is) */

	struct op_metrics *m;
	struct op_metric *executions, *durations, *http_requests, *http_slow, *queue_depth, *dead,
	    *inflight, *map_bytes, *used_bytes, *free_bytes, *quarantined, *disk_free, *room_low,
	    *up, *workers, *sync_running;
	struct op_metric_child *commit_seconds; /* observed on the store's writer */
	struct op_metric *schedule_runs, *mqtt_consumers, *mqtt_connected, *mqtt_subscribed,
	    *mqtt_messages, *mqtt_restarts;
};

/* ---- metrics ---- */

static const double duration_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10,   30};

static void on_commit(void *ud, double seconds, size_t requests)
{
	(void)requests;
	struct op_daemon *dm = ud;
	if (dm->commit_seconds)
		op_metric_observe(dm->commit_seconds, seconds);
}

static void on_ended(void *ud, const char *pipeline, const char *status, int64_t duration_ms)
{
	struct op_daemon *dm = ud;
	const char *lv[] = {pipeline, status};
	op_metric_inc_labels(dm->executions, lv, 1);
	const char *pv[] = {pipeline};
	op_metric_observe_labels(dm->durations, pv, (double)duration_ms / 1000.0);
}

static void on_scrape(void *ud, struct op_metrics *m)
{
	(void)m;
	struct op_daemon *dm = ud;
	struct op_store *s = op_runtime_store(dm->rt);
	struct op_runtime_set *set = op_runtime_get(dm->rt);
	const struct op_engine *e = op_runtime_engine(set);
	for (size_t i = 0; i < op_engine_count(e); i++) {
		const struct op_pipeline *p = op_engine_at(e, i);
		uint64_t events = 0, bytes = 0;
		op_store_queue_depth(s, p->name, &events, &bytes);
		const char *lv[] = {p->name};
		op_metric_set(op_metric_with(dm->queue_depth, lv), (double)events);
	}
	op_runtime_put(dm->rt, set);
	struct op_store_stats st;
	if (op_store_stats(s, &st) == OP_OK) {
		op_metric_set(op_metric_with(dm->dead, NULL), (double)st.dead);
		op_metric_set(op_metric_with(dm->inflight, NULL), (double)st.inflight);
		op_metric_set(op_metric_with(dm->map_bytes, NULL), (double)st.map_size);
		op_metric_set(op_metric_with(dm->used_bytes, NULL), (double)st.used);
		op_metric_set(op_metric_with(dm->free_bytes, NULL), (double)(st.map_max - st.used));
		op_metric_set(op_metric_with(dm->quarantined, NULL),
		              (double)st.entries[OP_STORE_DB_QUARANTINE]);
		op_metric_set(op_metric_with(dm->disk_free, NULL), (double)st.disk_avail);
		op_metric_set(op_metric_with(dm->room_low, NULL), st.room_low ? 1 : 0);
	}
	struct op_runtime_counts rc;
	op_runtime_counts(dm->rt, &rc);
	op_metric_set(op_metric_with(dm->workers, NULL), (double)rc.workers);
	unsigned busy = 0;
	if (dm->sync_pool)
		op_pool_stats(dm->sync_pool, NULL, &busy, NULL);
	op_metric_set(op_metric_with(dm->sync_running, NULL), (double)busy);
	struct op_scheduler_stats ss;
	op_scheduler_stats(dm->sched, &ss);
	const struct {
		const char *result;
		uint64_t n;
	} runs[] = {{"fired", ss.fired},
	            {"skipped", ss.skipped},
	            {"missed", ss.missed},
	            {"caught_up", ss.caught_up},
	            {"failed", ss.failed}};
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		const char *lv[] = {runs[i].result};
		op_metric_set_total(op_metric_with(dm->schedule_runs, lv), (double)runs[i].n);
	}
	struct op_mqtt_in_stats ms;
	op_mqtt_in_stats(dm->mqtt, &ms);
	op_metric_set(op_metric_with(dm->mqtt_consumers, NULL), (double)ms.consumers);
	op_metric_set(op_metric_with(dm->mqtt_connected, NULL), (double)ms.connected);
	op_metric_set(op_metric_with(dm->mqtt_subscribed, NULL), (double)ms.subscribed);
	op_metric_set_total(op_metric_with(dm->mqtt_restarts, NULL), (double)ms.restarts);
	const struct {
		const char *result;
		uint64_t n;
	} msgs[] = {{"accepted", ms.accepted - ms.bad_payload},
	            {"bad_payload", ms.bad_payload},
	            {"busy", ms.busy}};
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		const char *lv[] = {msgs[i].result};
		op_metric_set_total(op_metric_with(dm->mqtt_messages, lv), (double)msgs[i].n);
	}
}

static op_err metrics_new(struct op_daemon *dm)
{
	static const char *const pipeline_status[] = {"pipeline", "status", NULL};
	static const char *const pipeline[] = {"pipeline", NULL};
	static const char *const code[] = {"code", NULL};
	struct op_metrics *m = dm->m = op_metrics_new();
	if (m == NULL)
		return OP_ENOMEM;
	dm->up = op_metrics_gauge(m, "outpost_up", "1 while the agent runs", NULL);
	dm->executions = op_metrics_counter(m, "outpost_executions_total",
	                                    "executions ended, by pipeline and status (success, "
	                                    "error, retry, interrupted)",
	                                    pipeline_status);
	static const double commit_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
	                                       0.025,  0.05,  0.1,    0.25,  1};
	struct op_metric *commits = op_metrics_histogram(
	    m, "outpost_store_commit_seconds",
	    "time each store commit took to write and fsync (a request waits about one)", NULL,
	    commit_bounds, sizeof(commit_bounds) / sizeof(commit_bounds[0]));
	dm->commit_seconds = commits ? op_metric_with(commits, NULL) : NULL;
	dm->durations = op_metrics_histogram(
	    m, "outpost_execution_duration_seconds", "execution durations, by pipeline", pipeline,
	    duration_bounds, sizeof(duration_bounds) / sizeof(duration_bounds[0]));
	dm->http_requests =
	    op_metrics_counter(m, "outpost_http_requests_total",
	                       "HTTP trigger requests answered, by status code", code);
	dm->http_slow = op_metrics_counter(
	    m, "outpost_http_slow_clients_closed_total",
	    "HTTP trigger connections closed for sending no whole request in time "
	    "([http] header_timeout, body_timeout)",
	    NULL);
	dm->queue_depth = op_metrics_gauge(m, "outpost_queue_depth",
	                                   "events waiting in a pipeline's queue", pipeline);
	dm->dead =
	    op_metrics_gauge(m, "outpost_dead_letters", "events in the dead-letter queue", NULL);
	dm->inflight = op_metrics_gauge(m, "outpost_inflight", "events being executed", NULL);
	dm->workers = op_metrics_gauge(m, "outpost_workers",
	                               "worker threads started (up to agent.workers)", NULL);
	dm->sync_running = op_metrics_gauge(
	    m, "outpost_http_sync_running",
	    "sync HTTP runs with a step that may wait, running on the sync threads", NULL);
	dm->map_bytes =
	    op_metrics_gauge(m, "outpost_store_map_bytes", "current size of the store's map", NULL);
	dm->used_bytes =
	    op_metrics_gauge(m, "outpost_store_used_bytes", "bytes of the store in use", NULL);
	dm->free_bytes = op_metrics_gauge(m, "outpost_store_free_bytes",
	                                  "bytes the store may still grow into (to map_max)", NULL);
	dm->quarantined =
	    op_metrics_gauge(m, "outpost_store_quarantined",
	                     "corrupt records set aside in the store's quarantine", NULL);
	dm->disk_free = op_metrics_gauge(m, "outpost_store_disk_free_bytes",
	                                 "bytes free on the store's filesystem", NULL);
	dm->room_low = op_metrics_gauge(
	    m, "outpost_store_refusing",
	    "1 while the store refuses new events for want of room (map_max or disk_reserve)",
	    NULL);
	static const char *const result[] = {"result", NULL};
	dm->schedule_runs = op_metrics_counter(
	    m, "outpost_schedule_runs_total",
	    "schedule fire times, by result (fired, skipped while busy, missed during downtime, "
	    "caught_up by missed: once, failed to enqueue)",
	    result);
	dm->mqtt_consumers = op_metrics_gauge(m, "outpost_mqtt_consumers",
	                                      "MQTT trigger consumer processes wanted", NULL);
	dm->mqtt_connected = op_metrics_gauge(m, "outpost_mqtt_consumers_connected",
	                                      "MQTT consumers connected to their broker", NULL);
	dm->mqtt_subscribed = op_metrics_gauge(m, "outpost_mqtt_consumers_subscribed",
	                                       "MQTT consumers subscribed to their topic", NULL);
	dm->mqtt_messages = op_metrics_counter(
	    m, "outpost_mqtt_messages_total",
	    "MQTT trigger messages, by result (accepted: queued, then acknowledged; bad_payload: "
	    "queued as a dead letter; busy: refused for backpressure, offered again)",
	    result);
	dm->mqtt_restarts =
	    op_metrics_counter(m, "outpost_mqtt_consumer_restarts_total",
	                       "MQTT consumer processes restarted after they died", NULL);
	if (!dm->schedule_runs || !dm->mqtt_consumers || !dm->mqtt_connected ||
	    !dm->mqtt_subscribed || !dm->mqtt_messages || !dm->mqtt_restarts)
		return OP_ENOMEM;
	if (!dm->up || !dm->executions || !dm->durations || !dm->http_requests || !dm->http_slow ||
	    !dm->queue_depth || !dm->dead || !dm->inflight || !dm->map_bytes || !dm->used_bytes ||
	    !dm->free_bytes || !dm->quarantined)
		return OP_ENOMEM;
	op_metric_set(op_metric_with(dm->up, NULL), 1);
	return op_metrics_on_scrape(m, on_scrape, dm);
}

/* ---- routes ---- */

static void routes_free(struct op_runtime *rt, struct routes *r)
{
	if (r == NULL)
		return;
	op_http_router_free(r->router);
	op_free(r->targets);
	if (r->set)
		op_runtime_put(rt, r->set);
	op_free(r);
}

static struct routes *routes_get(struct op_daemon *dm)
{
	pthread_mutex_lock(&dm->mu);
	struct routes *r = dm->routes;
	if (r)
		r->refs++;
	pthread_mutex_unlock(&dm->mu);
	return r;
}

/* One more reference to r, which the caller holds already. */
static void routes_hold(struct op_daemon *dm, struct routes *r)
{
	pthread_mutex_lock(&dm->mu);
	r->refs++;
	pthread_mutex_unlock(&dm->mu);
}

static void routes_put(struct op_daemon *dm, struct routes *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&dm->mu);
	bool last = --r->refs == 0;
	pthread_mutex_unlock(&dm->mu);
	if (last)
		routes_free(dm->rt, r);
}

/* Builds the route table of a pipeline set: clashing routes are problems. */
static op_err routes_build(const struct op_engine *e, struct routes **out, struct op_diag *d)
{
	*out = NULL;
	size_t n = op_engine_count(e);
	struct routes *r = op_calloc(1, sizeof(*r));
	if (r == NULL || (r->router = op_http_router_new()) == NULL ||
	    (r->targets = op_calloc(n ? n : 1, sizeof(*r->targets))) == NULL) {
		if (r)
			op_http_router_free(r->router);
		op_free(r);
		return OP_ENOMEM;
	}
	r->refs = 1;
	op_err rc = OP_OK;
	for (size_t i = 0; i < n; i++) {
		const struct op_pipeline *p = op_engine_at(e, i);
		const struct op_http_trigger *t = op_trigger_http(p);
		if (t == NULL)
			continue;
		struct route_target *tg = &r->targets[r->n++];
		*tg = (struct route_target){.pipeline = p->name, .t = t, .waits = p->waits};
		char err[256];
		const char *tmpl = op_http_route_template(t->route);
		op_err ar = op_http_router_add(r->router, t->method, tmpl, tg, err, sizeof(err));
		if (ar == OP_ENOMEM) {
			rc = ar;
			break;
		}
		if (ar) {
			op_diag_add_at(d, p->origin, "trigger.config.path: %s %s: %s", t->method,
			               tmpl, err);
			rc = OP_ECONFIG;
		}
	}
	if (rc) {
		routes_free(NULL, r);
		return rc;
	}
	*out = r;
	return OP_OK;
}

struct reload_ctx {
	struct op_daemon *dm;
	struct routes *built;
	/* A reload's config: the set is checked against its brokers, which
	 * become the agent's with it. NULL (deploys): the running config's. */
	struct op_config *next;
};

/*
 * Makes next's [broker NAME] sections the agent's: the publisher gets their
 * clients (unchanged ones keep their connection), then cfg gets the
 * sections, and the MQTT triggers follow with the new set (plan() in
 * mqtt_in.c). next gets the old sections, freed with it. Called once the
 * new set has passed every check; the set swap that follows cannot fail.
 */
static op_err brokers_apply(struct op_daemon *dm, struct op_config *next, struct op_diag *d)
{
	if (op_mqtt_out_update(dm->pub, dm->cfg, next->brokers, next->n_brokers) != OP_OK) {
		op_diag_add_at(d, "[broker]", "out of memory while applying the broker sections");
		return OP_ENOMEM;
	}
	pthread_mutex_lock(&dm->brokers_mu);
	struct op_config_broker *b = dm->cfg->brokers;
	size_t n = dm->cfg->n_brokers;
	dm->cfg->brokers = next->brokers;
	dm->cfg->n_brokers = next->n_brokers;
	next->brokers = b;
	next->n_brokers = n;
	pthread_mutex_unlock(&dm->brokers_mu);
	atomic_store(&dm->prune_brokers, true);
	return OP_OK;
}

static op_err check_set(void *ud, const struct op_engine *e, struct op_diag *d)
{
	struct reload_ctx *c = ud;
	const struct op_config *cfg = c->next ? c->next : c->dm->cfg;
	op_err rc = op_mqtt_in_check(cfg, e, d);
	op_err rp = op_mqtt_out_check(cfg, e, d);
	op_err rr = routes_build(e, &c->built, d);
	op_err e2 = rc ? rc : rp ? rp : rr;
	if (e2 == OP_OK && c->next != NULL)
		e2 = brokers_apply(c->dm, c->next, d);
	return e2;
}

/* Makes r the routes in use; r takes a reference to the set now running,
 * the one it was built from (reloads and deploys hold dm->set_mu). */
static void routes_swap(struct op_daemon *dm, struct routes *r)
{
	r->set = op_runtime_get(dm->rt);
	pthread_mutex_lock(&dm->mu);
	struct routes *old = dm->routes;
	dm->routes = r;
	pthread_mutex_unlock(&dm->mu);
	routes_put(dm, old);
}

/* ---- the HTTP trigger handler ---- */

struct hdr_view {
	const cJSON *headers;
};

static bool header_of(void *ud, const char *name, const char **val, size_t *len)
{
	const struct hdr_view *h = ud;
	const cJSON *it;
	cJSON_ArrayForEach (it, h->headers) {
		if (it->string && strcasecmp(it->string, name) == 0 && cJSON_IsString(it)) {
			*val = it->valuestring;
			*len = strlen(it->valuestring);
			return true;
		}
	}
	return false;
}

/* The answer of an async trigger once its enqueue ended with rc. */
static void accepted_answer(struct op_daemon *dm, op_err rc, const char *id,
                            struct op_http_response *resp)
{
	op_err e = rc;
	if (rc == OP_EFULL) {
		/* The store out of room, or only this pipeline's queue bound. */
		bool store = op_store_room_low(op_runtime_store(dm->rt));
		e = op_http_respond_error(resp, 503, store ? "STORE_FULL" : "QUEUE_FULL",
		                          store ? "the agent's store has no room for new events "
		                                  "(its disk or map_max); retry later"
		                                : "the pipeline's queue is full; retry later");
		if (e == OP_OK)
			e = op_http_response_header(resp, "Retry-After", "1");
	} else if (rc == OP_OK) {
		e = op_http_trigger_respond_accepted(id, resp);
	} else {
		int status = op_http_status_for(rc);
		e = op_http_respond_error(resp, status, "NOT_ACCEPTED", op_err_str(rc));
	}
	if (e != OP_OK) {
		op_http_response_fini(resp);
		resp->status = 503; /* out of memory: an empty 503 */
	}
}

/* An async request waiting for its durable commit (the connection is suspended). */
struct accept_wait {
	struct op_daemon *dm;
	struct op_http_deferred *d;
};

static void on_accepted(void *ud, op_err rc, const char *id)
{
	struct accept_wait *w = ud;
	struct op_http_response resp = {0};
	accepted_answer(w->dm, rc, id, &resp);
	op_http_complete(w->d, &resp);
	op_free(w);
}

/*
 * Enqueues an async trigger's event and answers 202 once it is committed.
 * The handler thread does not wait for the disk: the answer is deferred
 * and sent from the store's completion thread, so hundreds of requests
 * share one commit. Without memory for that it waits, as a last resort.
 */
static op_err submit_async(struct op_daemon *dm, const struct op_http_request *req,
                           const char *pipeline, const cJSON *msg, const cJSON *data,
                           struct op_http_response *resp)
{
	struct accept_wait *w = op_malloc(sizeof(*w));
	struct op_http_deferred *d = w ? op_http_defer(req) : NULL;
	if (d == NULL) {
		op_free(w);
		char id[OP_UUID_LEN + 1];
		op_err rc = op_runtime_submit(dm->rt, pipeline, msg, data, id);
		accepted_answer(dm, rc, id, resp);
		return OP_OK;
	}
	*w = (struct accept_wait){dm, d};
	op_err rc = op_runtime_submit_cb(dm->rt, pipeline, msg, data, on_accepted, w);
	if (rc) {
		/* Refused before the store saw it: answer now, through the token. */
		on_accepted(w, rc, "");
	}
	resp->deferred = true;
	return OP_OK;
}

/* How long a sync request's run may take: the trigger's timeoutMs, never
 * more than [http] timeout. */
static long long sync_timeout(const struct op_daemon *dm, const struct op_http_trigger *t)
{
	if (dm->http_timeout_ms > 0 && dm->http_timeout_ms < t->timeout_ms)
		return dm->http_timeout_ms;
	return t->timeout_ms;
}

/* The answer to a sync request from its run (on this thread or the sync
 * pool's): rc, out (taken), f; never an error left for the server. */
static void sync_answer(const struct op_http_trigger *t, op_err rc, cJSON *out,
                        const struct op_fail *f, struct op_http_response *resp)
{
	op_err e = rc == OP_OK ? op_http_trigger_respond(t, out, resp)
	                       : op_http_trigger_respond_fail(f, resp);
	cJSON_Delete(out);
	if (e != OP_OK && e != OP_EINVAL) { /* EINVAL: resp holds a 500 saying why */
		/* What the server answers for a handler's error, as it would. */
		op_http_response_fini(resp);
		if (op_http_respond_error(resp, op_http_status_for(e), op_err_name(e),
		                          op_err_str(e)) != OP_OK) {
			op_http_response_fini(resp);
			resp->status = 503; /* out of memory: an empty 503 */
		}
	}
}

/*
 * A sync request whose pipeline may wait, run on the sync pool while its
 * connection is suspended. It holds a reference to the routes, so its
 * trigger and its pipeline set stay until it is answered.
 */
struct sync_job {
	struct op_daemon *dm;
	struct routes *r;
	const struct route_target *tg;
	cJSON *msg, *data;
	struct op_http_deferred *d;
};

/* 503 with Retry-After: 1, code and message; an empty 503 without memory. */
static void answer_503(struct op_http_response *resp, const char *code, const char *msg)
{
	if (op_http_respond_error(resp, 503, code, msg) != OP_OK ||
	    op_http_response_header(resp, "Retry-After", "1") != OP_OK) {
		op_http_response_fini(resp);
		resp->status = 503;
	}
}

static void sync_job_run(void *ud)
{
	struct sync_job *j = ud;
	struct op_daemon *dm = j->dm;
	const struct op_http_trigger *t = j->tg->t;
	struct op_http_response resp = {0};
	if (atomic_load(&dm->sync_stop)) {
		/* Started after the stop gave up on it: it does not run. */
		cJSON_Delete(j->msg);
		answer_503(
		    &resp, "SHUTTING_DOWN",
		    "the agent is stopping; the pipeline did not run, send the request again");
	} else {
		cJSON *out = NULL;
		struct op_fail f;
		op_err rc = op_runtime_run_on(dm->rt, j->r->set, j->tg->pipeline, j->msg, j->data,
		                              sync_timeout(dm, t), &dm->sync_stop, &out, &f);
		sync_answer(t, rc, out, &f, &resp);
	}
	cJSON_Delete(j->data);
	op_http_complete(j->d, &resp);
	routes_put(dm, j->r);
	op_free(j);
}

/* The HTTP server stops with sync runs unanswered: they are cancelled now,
 * before the server answers them 503 "send it again", so that none goes on
 * after that; those that end in time answer with what they did. */
static void sync_give_up(void *ud)
{
	struct op_daemon *dm = ud;
	atomic_store(&dm->sync_stop, true);
	if (dm->sync_pool && !op_pool_wait_idle(dm->sync_pool, SYNC_CANCEL_MS))
		OP_LOGW("sync runs still running %d ms after they were cancelled", SYNC_CANCEL_MS);
}

/*
 * Hands a sync run to the pool: OP_OK, answered later; OP_EBUSY, every sync
 * thread runs (resp holds a 503); another class when it must run here after
 * all. msg and data are the pool's on OP_OK, the caller's otherwise.
 */
static op_err sync_offload(struct op_daemon *dm, const struct op_http_request *req,
                           struct routes *r, const struct route_target *tg, cJSON *msg, cJSON *data,
                           struct op_http_response *resp)
{
	struct sync_job *j = op_malloc(sizeof(*j));
	struct op_http_deferred *d = j ? op_http_defer(req) : NULL;
	if (d == NULL) {
		op_free(j);
		return OP_ENOMEM;
	}
	routes_hold(dm, r);
	*j = (struct sync_job){dm, r, tg, msg, data, d};
	op_err rc = op_pool_run(dm->sync_pool, sync_job_run, j);
	if (rc != OP_OK) {
		/* Complete the token unanswered: the handler answers instead. */
		struct op_http_response none = {0};
		op_http_complete(d, &none);
		routes_put(dm, r);
		op_free(j);
		if (rc == OP_EBUSY) {
			char msg503[160];
			snprintf(
			    msg503, sizeof(msg503),
			    "all %lld threads for sync pipelines that wait ([http] sync_threads) "
			    "are busy; retry later",
			    dm->cfg->http.sync_threads);
			answer_503(resp, "BUSY", msg503);
		}
		return rc;
	}
	resp->deferred = true;
	return OP_OK;
}

static op_err dispatch(struct op_daemon *dm, const struct op_http_request *req, struct routes *r,
                       const struct route_target *tg, const cJSON *params,
                       struct op_http_response *resp)
{
	const struct op_http_trigger *t = tg->t;
	/* The rate limit comes first: a flood of bad credentials must not buy
	 * password hashing. */
	uint64_t retry_ms = 0;
	if (t->rate && !op_rate_take(t->rate, op_http_now_ms(), &retry_ms))
		return op_http_respond_rate_limited(retry_ms, resp);
	char why[OP_AUTH_WHY_MAX] = "";
	cJSON *claims = NULL;
	struct hdr_view hv = {req->headers};
	struct op_auth_request ar = {.header = header_of, .ud = &hv};
	op_err rc = op_auth_check(t->auth, &ar, &claims, why, sizeof(why));
	if (rc == OP_EAUTH) {
		OP_LOGI("%s %s from %s: refused: %s", req->method, req->path, req->remote_addr,
		        why);
		rc = op_http_respond_error(resp, 401, "UNAUTHORIZED", "authentication required");
		const char *ch = op_auth_challenge(t->auth);
		if (rc == OP_OK && ch)
			rc = op_http_response_header(resp, "WWW-Authenticate", ch);
		return rc;
	}
	if (rc)
		return rc;
	cJSON *msg = NULL;
	rc = op_http_trigger_message(t, req, params, &msg, resp);
	cJSON *data = rc == OP_OK ? op_http_trigger_data(t, req, claims) : NULL;
	cJSON_Delete(claims);
	if (rc == OP_EPARSE)
		return OP_OK; /* resp holds the 400 */
	if (rc == OP_OK && data == NULL)
		rc = OP_ENOMEM;
	if (rc) {
		cJSON_Delete(msg);
		return rc;
	}
	if (t->mode == OP_HTTP_ASYNC) {
		rc = submit_async(dm, req, tg->pipeline, msg, data, resp);
		cJSON_Delete(msg);
		cJSON_Delete(data);
		return rc;
	}
	if (tg->waits && dm->sync_pool) {
		rc = sync_offload(dm, req, r, tg, msg, data, resp);
		if (rc == OP_OK || rc == OP_EBUSY) {
			if (rc == OP_EBUSY) {
				cJSON_Delete(msg);
				cJSON_Delete(data);
			}
			return OP_OK;
		}
	}
	cJSON *out = NULL;
	struct op_fail f;
	rc = op_runtime_run_on(dm->rt, r->set, tg->pipeline, msg, data, sync_timeout(dm, t), NULL,
	                       &out, &f);
	cJSON_Delete(data);
	sync_answer(t, rc, out, &f, resp);
	return OP_OK;
}

/* op_http_opts.answered of the triggers' listener: every answer it sends. */
static void count_code(void *ud, int status)
{
	struct op_daemon *dm = ud;
	char code[8];
	snprintf(code, sizeof(code), "%d", status);
	const char *lv[] = {code};
	op_metric_inc_labels(dm->http_requests, lv, 1);
}

static op_err http_handler(const struct op_http_request *req, struct op_http_response *resp,
                           void *ud)
{
	struct op_daemon *dm = ud;
	struct routes *r = routes_get(dm);
	struct op_http_match m = {0};
	op_err rc = r ? op_http_router_match(r->router, req->method, req->path, &m) : OP_ENOTFOUND;
	if (rc == OP_ENOTFOUND) {
		rc = op_http_respond_error(resp, 404, "NOT_FOUND", "no pipeline is triggered here");
	} else if (rc == OP_EUNSUPPORTED) {
		rc = op_http_respond_error(resp, 405, "METHOD_NOT_ALLOWED",
		                           "the pipeline here takes other methods");
		if (rc == OP_OK)
			rc = op_http_response_header(resp, "Allow", m.allow);
	} else if (rc == OP_EINVAL) {
		rc = op_http_respond_error(resp, 400, "BAD_PATH", "the path is malformed");
	} else if (rc == OP_OK) {
		rc = dispatch(dm, req, r, m.target, m.params, resp);
	}
	op_http_match_fini(&m);
	routes_put(dm, r);
	return rc;
}

/* ---- the admin endpoint ---- */

static op_err admin_handler(const struct op_http_request *req, struct op_http_response *resp,
                            void *ud)
{
	struct op_daemon *dm = ud;
	bool get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
	if (get && strcmp(req->path, "/healthz") == 0) {
		char why[128];
		bool alive =
		    op_daemon_alive(dm, atomic_load(&dm->stall_limit_ms), why, sizeof(why));
		cJSON *o = cJSON_CreateObject();
		op_err rc = o && cJSON_AddStringToObject(o, "status", alive ? "ok" : "stalled") &&
		                    (alive || cJSON_AddStringToObject(o, "reason", why))
		                ? op_http_respond_json(resp, alive ? 200 : 503, o)
		                : OP_ENOMEM;
		cJSON_Delete(o);
		return rc;
	}
	if (get && strcmp(req->path, "/readyz") == 0) {
		bool ready = atomic_load(&dm->ready);
		cJSON *o = cJSON_CreateObject();
		op_err rc = o && cJSON_AddStringToObject(o, "status", ready ? "ready" : "starting")
		                ? op_http_respond_json(resp, ready ? 200 : 503, o)
		                : OP_ENOMEM;
		cJSON_Delete(o);
		return rc;
	}
	if (get && strcmp(req->path, "/metrics") == 0) {
		struct op_buf b;
		op_buf_init(&b, 16u << 20);
		op_err rc = op_metrics_render(dm->m, &b);
		if (rc) {
			op_buf_fini(&b);
			return rc;
		}
		resp->status = 200;
		resp->body_len = b.len;
		resp->body = op_buf_take(&b);
		snprintf(resp->content_type, sizeof(resp->content_type),
		         "text/plain; version=0.0.4; charset=utf-8");
		return OP_OK;
	}
	if (strcmp(req->path, "/healthz") == 0 || strcmp(req->path, "/readyz") == 0 ||
	    strcmp(req->path, "/metrics") == 0) {
		op_err rc = op_http_respond_error(resp, 405, "METHOD_NOT_ALLOWED", "use GET");
		return rc ? rc : op_http_response_header(resp, "Allow", "GET, HEAD");
	}
	/* The JSON API for outpostctl; unauthenticated, so the admin listener
	 * must stay on loopback (see agent/daemon/admin.h). */
	if (op_admin_is_api(req->path))
		return op_admin_handle(dm->rt, req, resp);
	return op_http_respond_error(resp, 404, "NOT_FOUND",
	                             "the admin endpoint has /healthz, /readyz, /metrics, /api/");
}

/* ---- start, reload, stop ---- */

/* [http] threads 0: one HTTP thread per CPU this process may run on (its
 * affinity, which taskset and cpusets narrow), at least 2. Only pipelines
 * that compute run on them; more would only take turns on the same CPUs. */
static unsigned cpu_threads(void)
{
	cpu_set_t set;
	int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
	if (n <= 0)
		n = (int)sysconf(_SC_NPROCESSORS_ONLN);
	return n < 2 ? 2 : n > 256 ? 256 : (unsigned)n;
}

static op_err listen_start(const struct op_config_listen *l, const char *name,
                           const struct op_config *cfg, bool triggers, op_http_handler h,
                           struct op_daemon *dm, struct op_http_server **out, struct op_diag *d)
{
	*out = NULL;
	if (l->host == NULL)
		return OP_OK;
	struct op_http_opts o = {.host = l->host, .port = (uint16_t)l->port, .name = name};
	if (triggers) {
		o.threads = cfg->http.threads > 0 ? (unsigned)cfg->http.threads : cpu_threads();
		o.give_up = sync_give_up;
		o.answered = count_code;
		o.max_body = (size_t)cfg->http.max_body;
		o.request_ms = (unsigned)cfg->http.timeout_ms;
		dm->http_timeout_ms = cfg->http.timeout_ms;
		o.client_timeout = (unsigned)((cfg->http.client_timeout_ms + 999) / 1000);
		o.header_ms = (unsigned)cfg->http.header_timeout_ms;
		o.body_ms = (unsigned)cfg->http.body_timeout_ms;
		o.connection_limit = (unsigned)cfg->http.connection_limit;
		o.per_ip_limit = (unsigned)cfg->http.per_ip_limit;
		o.tls_cert = cfg->http.tls_cert && *cfg->http.tls_cert ? cfg->http.tls_cert : NULL;
		o.tls_key = cfg->http.tls_key && *cfg->http.tls_key ? cfg->http.tls_key : NULL;
	} else {
		o.threads = 1;
		o.max_body = 4096;
	}
	char err[384] = "";
	op_err rc = op_http_server_start(&o, h, dm, out, err, sizeof(err));
	if (rc) {
		/* err names the address; with TLS on, OP_ECONFIG may be about its files. */
		const char *path = triggers ? "[http] listen" : "[admin] listen";
		if (rc == OP_ECONFIG && o.tls_cert != NULL)
			path = "[http]";
		op_diag_add_at(d, path, "%s", err[0] ? err : op_err_str(rc));
	}
	return rc;
}

/* ---- what connector steps borrow (struct op_host) ---- */

static op_err host_publish(void *ud, const char *broker, const char *topic, const void *payload,
                           size_t len, int qos, bool retained, long long timeout_ms, char *why,
                           size_t whylen)
{
	struct op_daemon *dm = ud;
	return op_mqtt_out_publish(dm->pub, broker, topic, payload, len, qos, retained, timeout_ms,
	                           why, whylen);
}

static op_err host_account(void *ud, const char *name, struct op_account **out, char *why,
                           size_t whylen)
{
	struct op_daemon *dm = ud;
	return op_accounts_get(dm->accounts, name, out, why, whylen);
}

/* Each new pipeline set publishes its events through the runtime's queues. */
static void on_engine_new(void *ud, struct op_runtime *rt, struct op_engine *e)
{
	struct op_daemon *dm = ud;
	op_engine_set_publisher(e, op_events_publish, rt);
	struct op_host h = {.mqtt_publish = host_publish,
	                    .account_get = host_account,
	                    .db_pools = dm->db_pools,
	                    .file_dirs = (const char *const *)dm->file_dirs,
	                    .n_file_dirs = dm->n_file_dirs,
	                    .ud = dm};
	op_engine_set_host(e, &h);
}

/* ---- the control plane's link ---- */

/* Joins the problems of d into msg: "path: problem; path: problem". */
static void problems_text(const struct op_diag *d, char *msg, size_t len)
{
	size_t at = 0;
	msg[0] = '\0';
	for (size_t i = 0; i < d->n && at + 1 < len; i++) {
		int n = snprintf(msg + at, len - at, "%s%s%s%s", i ? "; " : "", d->v[i].path,
		                 d->v[i].path[0] ? ": " : "", d->v[i].msg);
		if (n < 0)
			break;
		at += (size_t)n;
	}
	if (d->lost && at + 1 < len)
		snprintf(msg + at, len - at, "; and %zu more", d->lost);
}

/* Swaps the routes and triggers to the set the runtime runs now; an error
 * when the schedules or the mqtt triggers did not start. */
static op_err triggers_follow(struct op_daemon *dm, struct routes *built)
{
	routes_swap(dm, built);
	op_err rc = op_scheduler_reload(dm->sched);
	op_err mrc = op_mqtt_in_reload(dm->mqtt);
	return rc ? rc : mrc;
}

/* The accounts of a document, opened and checked before anything changes. */
struct sealed_accounts {
	struct op_account **v;
	size_t n;
};

static void sealed_accounts_free(struct sealed_accounts *sa)
{
	for (size_t i = 0; i < sa->n; i++)
		op_account_free(sa->v[i]);
	op_free(sa->v);
	sa->v = NULL;
	sa->n = 0;
}

/* Opens doc's "accounts" (name -> box sealed to this agent) into sa. On
 * failure msg names the account and what is wrong, never a secret. */
static op_err accounts_open_sealed(struct op_daemon *dm, const cJSON *doc,
                                   struct sealed_accounts *sa, char *msg, size_t msglen)
{
	const cJSON *acc = cJSON_GetObjectItemCaseSensitive(doc, "accounts");
	if (acc == NULL)
		return OP_OK;
	if (dm->vault == NULL)
		return op_errf(msg, msglen, OP_EUNSUPPORTED, "%s", dm->seal_error);
	if (!cJSON_IsObject(acc))
		return op_errf(msg, msglen, OP_EPARSE,
		               "accounts: expected an object of sealed "
		               "accounts by name");
	size_t n = (size_t)cJSON_GetArraySize(acc);
	sa->v = op_calloc(n ? n : 1, sizeof(*sa->v));
	if (sa->v == NULL)
		return op_errf(msg, msglen, OP_ENOMEM, "out of memory");
	const cJSON *box;
	cJSON_ArrayForEach (box, acc) {
		const char *name = box->string;
		if (!op_account_name_ok(name))
			return op_errf(msg, msglen, OP_EPARSE,
			               "accounts: \"%.64s\" is not an account name", name);
		char aad[2 * OP_ACCOUNT_NAME_MAX + 2], why[256];
		snprintf(aad, sizeof(aad), "%s/%s", dm->cfg->agent.id, name);
		char *plain = NULL;
		size_t len = 0;
		op_err rc = op_unseal(dm->seal_priv, dm->seal_pub, aad, box, &plain, &len, why,
		                      sizeof(why));
		if (rc)
			return op_errf(msg, msglen, rc, "accounts.%s: %s", name, why);
		cJSON *j = cJSON_ParseWithLength(plain, len);
		explicit_bzero(plain, len);
		op_free(plain);
		struct op_diag d;
		op_diag_init(&d);
		struct op_account *a = NULL;
		rc = j ? op_account_parse(name, j, &a, &d) : OP_EPARSE;
		op_account_json_free(j);
		if (rc) {
			op_errf(msg, msglen, rc == OP_ENOMEM ? rc : OP_EPARSE,
			        "accounts.%s: %s%s%s", name,
			        d.n ? d.v[0].path : "not a JSON account",
			        d.n && d.v[0].path[0] ? ": " : "", d.n ? d.v[0].msg : "");
			op_diag_fini(&d);
			return rc == OP_ENOMEM ? rc : OP_EPARSE;
		}
		op_diag_fini(&d);
		sa->v[sa->n++] = a;
	}
	return OP_OK;
}

struct apply_ctx {
	struct reload_ctx rc;
	struct sealed_accounts *sa;
	bool accounts_failed;
};

/* The set checks as a reload's, then the document's accounts go into the
 * vault: just before the swap, once nothing else can refuse it. */
static op_err check_deploy(void *ud, const struct op_engine *e, struct op_diag *d)
{
	struct apply_ctx *c = ud;
	op_err rc = check_set(&c->rc, e, d);
	for (size_t i = 0; rc == OP_OK && i < c->sa->n; i++) {
		char err[256];
		rc = op_vault_put(c->rc.dm->vault, c->sa->v[i], err, sizeof(err));
		if (rc) {
			op_diag_add_at(d, "accounts", "%s: cannot store it: %s", c->sa->v[i]->name,
			               err);
			c->accounts_failed = true;
		}
	}
	return rc;
}

/* The link's apply hook (on its thread): the document's accounts go into the
 * vault and its pipelines become the deployed set, beside the folder's, or
 * nothing changes (but accounts stored before a store failure). */
static op_err link_apply(void *ud, const char *text, size_t len, const cJSON *doc,
                         const char **code, char *msg, size_t msglen)
{
	struct op_daemon *dm = ud;
	struct sealed_accounts sa = {NULL, 0};
	op_err rc = accounts_open_sealed(dm, doc, &sa, msg, msglen);
	if (rc) {
		sealed_accounts_free(&sa);
		*code = "ACCOUNTS";
		return rc;
	}
	struct op_diag d;
	op_diag_init(&d);
	char ignored[8];
	pthread_mutex_lock(&dm->set_mu);
	cJSON *previous = op_runtime_deployed(dm->rt, ignored, sizeof(ignored));
	struct apply_ctx c = {{dm, NULL, NULL}, &sa, false};
	rc = op_runtime_deploy(dm->rt, text, len, doc, check_deploy, &c, &d);
	sealed_accounts_free(&sa);
	if (rc) {
		routes_free(dm->rt, c.rc.built);
		*code = c.accounts_failed ? "ACCOUNTS" : rc == OP_ECONFIG ? "PIPELINES" : "STORE";
		problems_text(&d, msg, msglen);
		goto out;
	}
	rc = triggers_follow(dm, c.rc.built);
	if (rc == OP_OK)
		goto out;
	/* The new set's triggers did not start: back to the previous set. */
	*code = "START";
	snprintf(msg, msglen,
	         "the triggers of the new set did not start (%s); the previous "
	         "set was restored",
	         op_err_str(rc));
	op_runtime_unapplied(dm->rt, doc);
	cJSON *back = previous ? previous : cJSON_Parse("{\"seq\":0,\"pipelines\":[]}");
	char *btext = back ? cJSON_PrintUnformatted(back) : NULL;
	struct op_diag d2;
	op_diag_init(&d2);
	struct reload_ctx c2 = {dm, NULL, NULL};
	op_err rb = btext
	                ? op_runtime_deploy(dm->rt, btext, strlen(btext), back, check_set, &c2, &d2)
	                : OP_ENOMEM;
	if (rb == OP_OK)
		rb = triggers_follow(dm, c2.built);
	else
		routes_free(dm->rt, c2.built);
	if (rb) {
		OP_LOGE("the previous pipeline set could not be restored either: %s",
		        op_err_str(rb));
		snprintf(msg, msglen,
		         "the triggers of the new set did not start (%s), and the previous set "
		         "could not be restored (%s)",
		         op_err_str(rc), op_err_str(rb));
	}
	op_diag_fini(&d2);
	cJSON_free(btext);
	if (back != previous)
		cJSON_Delete(back);
	rc = OP_EIO;
out:
	pthread_mutex_unlock(&dm->set_mu);
	cJSON_Delete(previous);
	op_diag_fini(&d);
	return rc;
}

/* The reported pipelines: every pipeline of the running set, the
 * document's as deployed, the folder's as local. */
static cJSON *link_pipelines(void *ud)
{
	struct op_daemon *dm = ud;
	cJSON *a = cJSON_CreateArray();
	struct op_runtime_set *set = op_runtime_get(dm->rt);
	const struct op_engine *e = op_runtime_engine(set);
	for (size_t i = 0; a && i < op_engine_count(e); i++) {
		const struct op_pipeline *p = op_engine_at(e, i);
		bool deployed = op_runtime_is_deployed(p);
		cJSON *o = cJSON_CreateObject();
		bool ok = o && cJSON_AddStringToObject(o, "name", p->name) &&
		          cJSON_AddStringToObject(o, "version", p->version ? p->version : "") &&
		          cJSON_AddStringToObject(o, "origin", deployed ? "deployed" : "local") &&
		          cJSON_AddStringToObject(o, "status", "running");
		if (ok && cJSON_AddItemToArray(a, o))
			continue;
		cJSON_Delete(o);
		cJSON_Delete(a);
		a = NULL;
	}
	op_runtime_put(dm->rt, set);
	cJSON *draining = a ? op_runtime_draining(dm->rt) : NULL;
	cJSON *o;
	cJSON_ArrayForEach (o, draining) {
		if (!cJSON_AddStringToObject(o, "status", "draining"))
			break;
	}
	while (draining && cJSON_GetArraySize(draining) > 0)
		cJSON_AddItemToArray(a, cJSON_DetachItemFromArray(draining, 0));
	if (a && draining == NULL) {
		cJSON_Delete(a);
		a = NULL;
	}
	cJSON_Delete(draining);
	return a;
}

static op_err link_command(void *ud, const char *id, const char *op, const cJSON *doc,
                           const atomic_bool *stop, cJSON **result, const char **code, char *msg,
                           size_t msglen)
{
	struct op_daemon *dm = ud;
	return op_remote_command(dm->rt, id, op, doc, stop, result, code, msg, msglen);
}

static op_err link_metrics(void *ud, struct op_buf *out)
{
	struct op_daemon *dm = ud;
	return op_metrics_render(dm->m, out);
}

/* A dropped pipeline drained: reported lists it no more. */
static void on_drained(void *ud, const char *pipeline)
{
	(void)pipeline;
	struct op_daemon *dm = ud;
	pthread_mutex_lock(&dm->mu); /* against op_daemon_stop's */
	op_link_changed(dm->link);
	pthread_mutex_unlock(&dm->mu);
}

static op_err make_seal_key(void *ud, uint8_t out[OP_VAULT_SECRET_LEN])
{
	uint8_t pub[OP_SEAL_KEY_LEN];
	char why[128];
	(void)ud;
	return op_seal_keygen(out, pub, why, sizeof(why));
}

/* The vault the control plane's accounts go to, and the key they are
 * sealed to (made once, kept sealed in the vault). */
static op_err seal_open(struct op_daemon *dm)
{
	char dir[PATH_MAX], key[PATH_MAX], err[512];
	op_config_accounts_paths(dm->cfg, dir, sizeof(dir), key, sizeof(key));
	op_err rc = op_vault_open(dir, key, true, &dm->vault, err, sizeof(err));
	if (rc == OP_OK)
		rc = op_vault_secret(dm->vault, "control-seal", make_seal_key, NULL, dm->seal_priv,
		                     err, sizeof(err));
	if (rc == OP_OK && op_seal_public(dm->seal_priv, dm->seal_pub) != OP_OK) {
		snprintf(err, sizeof(err), "%.400s/control-seal.secret: not an X25519 key", dir);
		rc = OP_ECORRUPT;
	}
	if (rc) {
		/* The link runs without it; documents with accounts are refused. */
		snprintf(dm->seal_error, sizeof(dm->seal_error),
		         "this agent has no key to open sealed accounts: %s", err);
		OP_LOGW("%s", dm->seal_error);
		op_vault_close(dm->vault);
		dm->vault = NULL;
	}
	return rc;
}

static op_err link_start(struct op_daemon *dm, struct op_diag *d)
{
	char err[512] = "", why[512] = "";
	bool sealing = seal_open(dm) == OP_OK;
	cJSON *sk = sealing ? op_json_base64((const char *)dm->seal_pub, sizeof(dm->seal_pub))
	                    : cJSON_CreateString("");
	if (sk == NULL)
		return OP_ENOMEM;
	cJSON *doc = op_runtime_deployed(dm->rt, err, sizeof(err));
	const cJSON *seq = cJSON_GetObjectItemCaseSensitive(doc, "seq");
	/* The floor survives a stored document that no longer loads. */
	uint64_t applied =
	    cJSON_IsNumber(seq) && seq->valuedouble > 0 ? (uint64_t)seq->valuedouble : 0;
	uint64_t floor = op_runtime_seq_floor(dm->rt);
	if (floor > applied)
		applied = floor;
	struct op_link_opts o = {
	    .cfg = dm->cfg,
	    .store = op_runtime_store(dm->rt),
	    .applied_seq = applied,
	    .startup_error = err,
	    .version = OUTPOST_VERSION,
	    .seal_key = cJSON_GetStringValue(sk),
	};
	cJSON_Delete(doc);
	struct op_link_hooks h = {.apply = link_apply,
	                          .pipelines = link_pipelines,
	                          .command = link_command,
	                          .metrics = link_metrics,
	                          .ud = dm};
	op_err rc = op_link_start(&o, &h, &dm->link, why, sizeof(why));
	cJSON_Delete(sk);
	if (rc) /* why names its section and key */
		op_diag_add_at(d, "", "%s", why);
	return rc;
}

static op_err accounts_open(struct op_daemon *dm)
{
	char dir[PATH_MAX], key[PATH_MAX];
	op_config_accounts_paths(dm->cfg, dir, sizeof(dir), key, sizeof(key));
	return op_accounts_new(dir, key, &dm->accounts);
}

op_err op_daemon_start(struct op_config *cfg, struct op_daemon **out, struct op_diag *d)
{
	*out = NULL;
	struct op_daemon *dm = op_calloc(1, sizeof(*dm));
	if (dm == NULL)
		return OP_ENOMEM;
	dm->cfg = cfg;
	atomic_init(&dm->stall_limit_ms, 60000);
	if (pthread_mutex_init(&dm->mu, NULL)) {
		op_free(dm);
		return OP_ENOMEM;
	}
	if (pthread_mutex_init(&dm->set_mu, NULL)) {
		pthread_mutex_destroy(&dm->mu);
		op_free(dm);
		return OP_ENOMEM;
	}
	if (pthread_mutex_init(&dm->brokers_mu, NULL)) {
		pthread_mutex_destroy(&dm->set_mu);
		pthread_mutex_destroy(&dm->mu);
		op_free(dm);
		return OP_ENOMEM;
	}
	op_err rc = metrics_new(dm);
	/* Before the runtime: each pipeline set it builds publishes through it. */
	if (rc == OP_OK)
		rc = op_mqtt_out_new(cfg, &dm->pub);
	if (rc == OP_OK)
		rc = accounts_open(dm);
	if (rc == OP_OK)
		rc = op_db_pools_new(&dm->db_pools);
	if (rc == OP_OK)
		rc = op_config_file_dirs(cfg, &dm->file_dirs, &dm->n_file_dirs);
	struct op_runtime_hooks hooks = {
	    .ended = on_ended, .engine_new = on_engine_new, .drained = on_drained, .ud = dm};
	if (rc == OP_OK)
		rc = op_runtime_open(cfg, &hooks, &dm->rt, d);
	if (rc == OP_OK)
		op_store_on_commit(op_runtime_store(dm->rt), on_commit, dm);
	if (rc == OP_OK) {
		struct op_runtime_set *set = op_runtime_get(dm->rt);
		struct routes *r = NULL;
		rc = op_mqtt_in_check(cfg, op_runtime_engine(set), d);
		if (rc == OP_OK)
			rc = op_mqtt_out_check(cfg, op_runtime_engine(set), d);
		if (rc == OP_OK)
			rc = routes_build(op_runtime_engine(set), &r, d);
		op_runtime_put(dm->rt, set);
		if (rc == OP_OK)
			routes_swap(dm, r);
	}
	/* Before the listeners: scrapes read these pointers. */
	if (rc == OP_OK && (rc = op_scheduler_start(dm->rt, &dm->sched)) != OP_OK)
		op_diag_add_at(d, "scheduler", "cannot start the scheduler: %s", op_err_str(rc));
	/* Consumers are this binary run again (see agent/trigger/mqtt_wire.h). */
	if (rc == OP_OK && (rc = op_mqtt_in_start(dm->rt, cfg, &dm->brokers_mu, "/proc/self/exe",
	                                          &dm->mqtt)) != OP_OK)
		op_diag_add_at(d, "mqtt", "cannot start the MQTT triggers: %s", op_err_str(rc));
	if (rc == OP_OK)
		rc = listen_start(&cfg->admin.listen, "admin", cfg, false, admin_handler, dm,
		                  &dm->admin, d);
	if (rc == OP_OK && cfg->http.listen.host && cfg->http.sync_threads > 0) {
		/* No queue: past sync_threads a request is answered 503 at once,
		 * rather than wait unseen past its own timeout. */
		struct op_pool_opts po = {.name = "op-http-sync",
		                          .max_threads = (unsigned)cfg->http.sync_threads,
		                          .max_queued = 0,
		                          .idle_ms = SYNC_IDLE_MS};
		if ((rc = op_pool_new(&po, &dm->sync_pool)) != OP_OK)
			op_diag_add_at(d, "[http] sync_threads", "cannot start: %s",
			               op_err_str(rc));
	}
	if (rc == OP_OK)
		rc = listen_start(&cfg->http.listen, "http", cfg, true, http_handler, dm, &dm->http,
		                  d);
	/* Last: a document that comes down finds everything running. */
	if (rc == OP_OK && cfg->control.uri)
		rc = link_start(dm, d);
	if (rc) {
		op_daemon_stop(dm);
		return rc;
	}
	/* An mqtt trigger is live once its consumers are subscribed: the ready
	 * state (READY=1, /readyz) waits for them, for a broker that does not
	 * answer at most MQTT_READY_MS. */
	if (!op_mqtt_in_wait_subscribed(dm->mqtt, MQTT_READY_MS))
		OP_LOGW("not every MQTT trigger is subscribed %d s after the start; ready anyway, "
		        "their consumers keep trying (outpost_mqtt_consumers_subscribed)",
		        MQTT_READY_MS / 1000);
	atomic_store(&dm->ready, true);
	if (dm->http)
		OP_LOGI("HTTP triggers on %s:%u", cfg->http.listen.host, op_daemon_http_port(dm));
	if (dm->admin)
		OP_LOGI("admin endpoint on %s:%u", cfg->admin.listen.host,
		        op_daemon_admin_port(dm));
	*out = dm;
	return OP_OK;
}

/*
 * Says which settings of next a reload did not apply (all but the
 * OP_CONFIG_RELOAD keys, [globals] and the brokers): cfg still runs with
 * them.
 */
static void unapplied_warn(const struct op_config *cfg, const struct op_config *next)
{
	char *names = NULL;
	size_t n = 0;
	if (op_config_diff(cfg, next, &names, &n) != OP_OK) {
		OP_LOGW("reload: cannot compare the configs (out of memory); settings other "
		        "than pipelines_dir, [globals], the log's and the brokers take effect at "
		        "the next restart");
		return;
	}
	if (n > 0)
		OP_LOGW("reload: %s changed; %s effect at the next restart", names,
		        n == 1 ? "it takes" : "they take");
	op_free(names);
}

op_err op_daemon_reload(struct op_daemon *dm, struct op_config *next, struct op_diag *d)
{
	/* The pipelines folder, the globals and the log settings change without a
	 * restart (the OP_CONFIG_RELOAD keys and [globals]). */
	char *dir = next->agent.pipelines_dir;
	cJSON *globals = next->globals;
	char *old_dir = dm->cfg->agent.pipelines_dir;
	cJSON *old_globals = dm->cfg->globals;
	pthread_mutex_lock(&dm->set_mu);
	dm->cfg->agent.pipelines_dir = dir;
	dm->cfg->globals = globals;
	struct reload_ctx c = {dm, NULL, next};
	op_err rc = op_runtime_reload(dm->rt, check_set, &c, d);
	if (rc) {
		dm->cfg->agent.pipelines_dir = old_dir;
		dm->cfg->globals = old_globals;
		pthread_mutex_unlock(&dm->set_mu);
		routes_free(dm->rt, c.built);
		return rc;
	}
	next->agent.pipelines_dir = old_dir;
	next->globals = old_globals;
	/* The new set runs either way; on OP_ENOMEM the old schedules go on. */
	if (triggers_follow(dm, c.built) != OP_OK)
		OP_LOGW("pipelines reloaded, but not all of their triggers started");
	pthread_mutex_unlock(&dm->set_mu);
	/* With the set (a reload that is refused changes nothing), and only what
	 * the file changed: a level the control plane set stays otherwise. */
	if (next->agent.log_level != dm->cfg->agent.log_level) {
		dm->cfg->agent.log_level = next->agent.log_level;
		op_log_set_level((enum op_log_level)next->agent.log_level);
	}
	if (next->agent.log_format != dm->cfg->agent.log_format) {
		dm->cfg->agent.log_format = next->agent.log_format;
		op_log_set_json(next->agent.log_format == OP_CONFIG_LOG_JSON);
	}
	op_link_changed(dm->link);
	/* The brokers were applied (next holds the sections they replaced, to be
	 * freed with it): compare the rest. */
	struct op_config_broker *replaced = next->brokers;
	size_t nreplaced = next->n_brokers;
	next->brokers = dm->cfg->brokers;
	next->n_brokers = dm->cfg->n_brokers;
	unapplied_warn(dm->cfg, next);
	next->brokers = replaced;
	next->n_brokers = nreplaced;
	return OP_OK;
}

void op_daemon_stop(struct op_daemon *dm)
{
	if (dm == NULL)
		return;
	atomic_store(&dm->ready, false);
	/* The goodbye to the control plane while everything still runs. */
	pthread_mutex_lock(&dm->mu);
	struct op_link *link = dm->link;
	dm->link = NULL;
	pthread_mutex_unlock(&dm->mu);
	op_link_stop(link);
	op_vault_close(dm->vault);
	explicit_bzero(dm->seal_priv, sizeof(dm->seal_priv));
	/* First: scrapes read the scheduler and the MQTT triggers. */
	if (dm->admin && op_http_server_stop(dm->admin) != OP_OK)
		OP_LOGW("admin requests still running when the admin endpoint stopped");
	op_scheduler_stop(dm->sched);
	/* Before the runtime closes: their last commits still come back. */
	op_mqtt_in_stop(dm->mqtt);
	if (dm->http && op_http_server_stop(dm->http) != OP_OK)
		OP_LOGW("HTTP requests still running when the trigger server stopped");
	/* Their requests are answered (503 past the stop's bound): what still
	 * runs stops now, before the routes and the runtime go. */
	atomic_store(&dm->sync_stop, true);
	op_pool_free(dm->sync_pool);
	dm->sync_pool = NULL;
	routes_free(dm->rt, dm->routes);
	op_runtime_close(dm->rt);
	op_mqtt_out_free(dm->pub); /* after the workers: no publish runs */
	op_accounts_free(dm->accounts);
	op_db_pools_free(dm->db_pools); /* after the workers: no connection is out */
	op_config_file_dirs_free(dm->file_dirs, dm->n_file_dirs);
	op_metrics_free(dm->m);
	pthread_mutex_destroy(&dm->brokers_mu);
	pthread_mutex_destroy(&dm->set_mu);
	pthread_mutex_destroy(&dm->mu);
	op_free(dm);
}

bool op_daemon_alive(struct op_daemon *dm, int64_t limit_ms, char *why, size_t whylen)
{
	int64_t stall = op_store_stall_ms(op_runtime_store(dm->rt));
	if (stall < limit_ms)
		return true;
	snprintf(why, whylen, "the store's writer has been stuck for %lld s",
	         (long long)(stall / 1000));
	return false;
}

void op_daemon_set_stall_limit(struct op_daemon *dm, int64_t limit_ms)
{
	atomic_store(&dm->stall_limit_ms, limit_ms);
}

void op_daemon_tick(struct op_daemon *dm)
{
	uint64_t now = op_http_now_ms();
	unsigned n = op_http_server_sweep(dm->http, now);
	if (n > 0)
		op_metric_add(op_metric_with(dm->http_slow, NULL), n);
	(void)op_http_server_sweep(dm->admin, now);
	/* Brokers a reload removed go once no dropped pipeline drains. */
	if (atomic_load(&dm->prune_brokers)) {
		cJSON *draining = op_runtime_draining(dm->rt);
		if (draining && cJSON_GetArraySize(draining) == 0) {
			atomic_store(&dm->prune_brokers, false);
			(void)op_mqtt_out_prune(dm->pub);
		}
		cJSON_Delete(draining);
	}
}

unsigned op_daemon_http_port(const struct op_daemon *dm)
{
	return dm->http ? op_http_server_port(dm->http) : 0;
}

unsigned op_daemon_admin_port(const struct op_daemon *dm)
{
	return dm->admin ? op_http_server_port(dm->admin) : 0;
}

static void check_report(void *ud, const char *file, const struct op_diag *fd)
{
	struct op_diag *d = ud;
	for (size_t i = 0; i < fd->n; i++)
		op_diag_add_at(d, file, "%s%s%s", fd->v[i].path, fd->v[i].path[0] ? ": " : "",
		               fd->v[i].msg);
}

op_err op_daemon_check(const struct op_config *cfg, struct op_diag *d)
{
	struct op_engine *e = op_engine_new();
	if (e == NULL)
		return OP_ENOMEM;
	op_err rc = op_engine_load_dir(e, cfg->agent.pipelines_dir, NULL, 0, check_report, d, NULL);
	if (rc == OP_OK)
		rc = op_engine_link(e, d);
	struct routes *r = NULL;
	if (rc == OP_OK)
		rc = op_mqtt_in_check(cfg, e, d);
	if (rc == OP_OK)
		rc = op_mqtt_out_check(cfg, e, d);
	if (rc == OP_OK)
		rc = routes_build(e, &r, d);
	routes_free(NULL, r);
	op_engine_free(e);
	/* What the link's start reads (the trusted keys), whatever the pipelines gave. */
	if (cfg->control.uri) {
		char why[512] = "";
		op_err lrc = op_link_check_config(cfg, why, sizeof(why));
		if (lrc)
			op_diag_add_at(d, "", "%s", why);
		if (rc == OP_OK)
			rc = lrc;
	}
	return rc;
}
