/*
 * The monotonic clock, for deadlines, waits and durations: it does not jump
 * when the wall clock is set.
 */
#ifndef OP_CORE_CLOCK_H
#define OP_CORE_CLOCK_H

#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC (since some point in the past). */
int64_t op_mono_ms(void);

#endif
