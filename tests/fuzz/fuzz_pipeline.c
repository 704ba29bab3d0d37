/*
 * libFuzzer target for the pipeline loader: any bytes are loaded as a
 * pipeline document; a document that loads is run once on a small message
 * with tight limits. Neither may crash, hang or leak.
 */
#include <stdint.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/log.h"
#include "agent/engine/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	if (!init) {
		op_alloc_init();
		op_log_set_level(OP_LOG_ERROR);
		init = 1;
	}
	struct op_diag d;
	op_diag_init(&d);
	struct op_pipeline *p = NULL;
	if (op_pipeline_load((const char *)data, size, "fuzz", &d, &p) == OP_OK) {
		/* Keep runs short: the fuzzer is after crashes, not slow loops. */
		p->settings.limits.max_steps = 200;
		p->settings.limits.max_iterations = 200;
		p->settings.limits.max_message_bytes = 1 << 16;
		p->settings.timeout_ms = 200;
		struct op_engine *e = op_engine_new();
		if (e) {
			cJSON *in = cJSON_Parse("{\"a\":1,\"b\":[1,2,3],\"s\":\"text\"}");
			cJSON *out = NULL;
			struct op_fail f;
			if (in)
				(void)op_engine_run(e, p, in, NULL, &out, &f);
			cJSON_Delete(out);
			op_engine_free(e);
		}
		op_pipeline_free(p);
	}
	op_diag_fini(&d);
	return 0;
}
