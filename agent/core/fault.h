/*
 * Fault injection for tests: failures that a real machine gives only
 * rarely (a thread that cannot start, memory running out at one place) made
 * to happen on demand, so the code that recovers from them is tested.
 * Compiled in only with OP_FAULTS (the debug and asan builds); a release
 * build has none and never reads the environment for them.
 *
 * OUTPOST_FAULTS holds comma-separated POINT=NAME pairs; op_fault(POINT,
 * NAME) is true for each pair given. The points:
 *
 *   schedule-start=PIPELINE  the schedules of a set holding PIPELINE do
 *                            not start (as if out of memory)
 *   store-stall=PIPELINE     the store's writer hangs on a batch that
 *                            enqueues into PIPELINE (a disk that stopped
 *                            answering) until the store closes
 *   jq-check-hang=child      the child process that checks a jq program
 *                            never answers (connectors/transform/jq.c)
 */
#ifndef OP_CORE_FAULT_H
#define OP_CORE_FAULT_H

#include <stdbool.h>

#ifdef OP_FAULTS
bool op_fault(const char *point, const char *name);
#else
static inline bool op_fault(const char *point, const char *name)
{
	(void)point;
	(void)name;
	return false;
}
#endif

#endif
