/* The runtime fixture of rt_fixture.h. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tests/unit/rt_fixture.h"
#include "tests/unit/test.h"

void op_rt_fixture_init(struct op_rt_fixture *fx, const char *prefix)
{
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/%s_XXXXXX", prefix);
	ck_assert_ptr_nonnull(mkdtemp(fx->dir));
	snprintf(fx->pdir, sizeof(fx->pdir), "%s/pipelines", fx->dir);
	ck_assert_int_eq(mkdir(fx->pdir, 0700), 0);
	ck_assert_int_eq(op_config_defaults(&fx->cfg), OP_OK);
	op_free(fx->cfg.agent.data_dir);
	op_free(fx->cfg.agent.pipelines_dir);
	fx->cfg.agent.data_dir = op_strdup(fx->dir);
	fx->cfg.agent.pipelines_dir = op_strdup(fx->pdir);
	ck_assert(fx->cfg.agent.data_dir && fx->cfg.agent.pipelines_dir);
	fx->cfg.agent.workers = 2;
	fx->cfg.agent.shutdown_timeout_ms = 200;
	fx->cfg.store.map_initial = 1 << 20;
}

void op_rt_fixture_fini(struct op_rt_fixture *fx)
{
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
	ck_assert_int_eq(system(cmd), 0); /* lint: allow (test cleanup) */
	op_config_free(&fx->cfg);
}

void op_rt_fixture_pipeline(const struct op_rt_fixture *fx, const char *name, const char *json)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s.json", fx->pdir, name);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(json, f);
	ck_assert_int_eq(fclose(f), 0);
}

struct op_runtime *op_rt_fixture_open(struct op_rt_fixture *fx,
                                      const struct op_runtime_hooks *hooks)
{
	struct op_diag d;
	op_diag_init(&d);
	struct op_runtime *rt = NULL;
	op_err rc = op_runtime_open(&fx->cfg, hooks, &rt, &d);
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "%s: %s\n", d.v[i].path, d.v[i].msg);
	op_diag_fini(&d);
	ck_assert_int_eq(rc, OP_OK);
	return rt;
}
