/*
 * The scheduler: the daemon's one thread that starts the pipelines whose
 * trigger is `schedule` at their cron fire times (agent/trigger/cron.h), in
 * their time zones, through the runtime's durable enqueue.
 *
 * Rules (docs/schedule.md, "The scheduler"):
 * - No overlap: unless the trigger says `overlap: true`, a fire time is
 *   skipped (logged at info, counted) while the pipeline has an event queued
 *   or running (op_runtime_busy).
 * - Each fire time handled (run or skipped) is stored in the store's state
 *   table under "schedule/<pipeline>" as {"lastFireMs":N,"lastFire":ISO}.
 *   When the scheduler starts tracking a pipeline (at start, or when a reload
 *   adds it) it counts the fire times in (stored time, now] with
 *   op_cron_missed(): `missed: skip` logs their number and runs none,
 *   `missed: once` runs once now (trigger data "missed": count). A pipeline
 *   without a stored time has missed nothing; its time is stored as now.
 * - Clock: fire times are CLOCK_REALTIME (wall clock in the zone), but the
 *   thread sleeps with CLOCK_MONOTONIC timed waits of at most 10 s and reads
 *   the real-time clock again at each wake, so a clock set forward fires the
 *   overdue times (once each pipeline) within 10 s, and a clock set back more
 *   than a second recomputes every next fire time from the new now.
 *
 * Trigger data of a run: {"type":"schedule","cron":expr,"scheduledAt":
 * "2026-11-23T17:00:00Z","timezone":"Europe/Berlin"} (+ "missed":N).
 */
#ifndef OP_DAEMON_SCHEDULER_H
#define OP_DAEMON_SCHEDULER_H

#include <stdint.h>

#include "agent/core/err.h"
#include "agent/daemon/runtime.h"

struct op_scheduler;

/* Counters since start, for tests and metrics. */
struct op_scheduler_stats {
	uint64_t schedules; /* pipelines with a schedule trigger tracked now */
	uint64_t fired;     /* runs enqueued at a fire time */
	uint64_t skipped;   /* fire times skipped because the previous run was busy */
	uint64_t missed;    /* fire times missed during downtime (each capped at 1000) */
	uint64_t caught_up; /* runs enqueued by `missed: once` */
	uint64_t failed;    /* enqueues that failed (queue full, closing) */
};

/*
 * Tracks every schedule pipeline of rt's current set, applies their
 * missed-run policy (before it returns: a `missed: once` run is already
 * queued) and starts the thread. rt must outlive the scheduler.
 * OP_ENOMEM: nothing was started, *out is NULL.
 */
op_err op_scheduler_start(struct op_runtime *rt, struct op_scheduler **out) OP_WUR;

/*
 * Recomputes the schedules from rt's current set (call it after a
 * successful op_runtime_reload). A pipeline whose expression and zone are
 * unchanged keeps its next fire time; a changed one starts from now; a new
 * one gets the missed-run check. OP_ENOMEM: the old schedules go on.
 */
op_err op_scheduler_reload(struct op_scheduler *s) OP_WUR;

/* Stops the thread (it wakes at once) and frees s. NULL is a no-op. */
void op_scheduler_stop(struct op_scheduler *s);

/* Zeroes st when s is NULL. */
void op_scheduler_stats(struct op_scheduler *s, struct op_scheduler_stats *st);

#endif
