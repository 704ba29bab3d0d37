/*
 * The monotonic clock, for deadlines, waits and durations: it does not jump
 * when the wall clock is set.
 */
#ifndef OP_CORE_CLOCK_H
#define OP_CORE_CLOCK_H

#include <pthread.h>
#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC (since some point in the past). */
int64_t op_mono_ms(void);

/* The CLOCK_MONOTONIC time ms_from_now milliseconds ahead, for
 * pthread_cond_timedwait on a condition variable set to that clock. */
struct timespec;
void op_mono_deadline(int64_t ms_from_now, struct timespec *ts);

/* pthread_cond_init on the monotonic clock, so that op_mono_deadline's
 * deadlines fit it; pthread_cond_init's result. */
int op_cond_init_mono(pthread_cond_t *cv);

#endif
