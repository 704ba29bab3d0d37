/*
 * A runtime on a temporary folder, for the unit tests of the daemon's parts
 * (runtime, scheduler, admin API): real store, real pipelines from files,
 * real worker threads.
 */
#ifndef OP_TESTS_UNIT_RT_FIXTURE_H
#define OP_TESTS_UNIT_RT_FIXTURE_H

#include "agent/daemon/config.h"
#include "agent/daemon/runtime.h"

struct op_rt_fixture {
	char dir[256];  /* the temporary folder, the runtime's data_dir */
	char pdir[300]; /* dir/pipelines, its pipelines_dir */
	struct op_config cfg;
};

/* Makes the folders (prefix names the temporary one) and a config on the
 * defaults pointing at them, with 2 workers, a 200 ms shutdown bound and a
 * 1 MiB initial map. Fails the test on any error. */
void op_rt_fixture_init(struct op_rt_fixture *fx, const char *prefix);
/* Removes the folder and frees the config. */
void op_rt_fixture_fini(struct op_rt_fixture *fx);
/* Writes pdir/NAME.json. */
void op_rt_fixture_pipeline(const struct op_rt_fixture *fx, const char *name, const char *json);
/* Opens a runtime on the config (hooks may be NULL); prints problems and
 * fails the test unless it opens. */
struct op_runtime *op_rt_fixture_open(struct op_rt_fixture *fx,
                                      const struct op_runtime_hooks *hooks);

#endif
