/* The known jq programs kept in the store (see jq_cache.h). */
#define OP_LOG_MODULE "jq"

#include "agent/daemon/jq_cache.h"

#include "agent/core/alloc.h"
#include "agent/core/log.h"
#include "connectors/transform/jq.h"

uint64_t op_jq_cache_load(struct op_store *s)
{
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
	/* What the store holds; after a failed import it is written again. */
	return rc == OP_OK ? op_jq_known_gen() : 0;
}

void op_jq_cache_save(struct op_store *s, uint64_t *saved)
{
	if (op_jq_known_gen() == *saved)
		return;
	void *buf = NULL;
	size_t len = 0;
	uint64_t gen;
	op_err rc = op_jq_known_export(&buf, &len, &gen);
	if (rc == OP_OK && len > 0)
		rc = op_store_put(s, OP_STORE_STATE, OP_JQ_CACHE_KEY, buf, len);
	op_free(buf);
	if (rc == OP_OK)
		*saved = gen;
	else
		OP_LOGW("store state %s: cannot save: %s (programs compile at the next start)",
		        OP_JQ_CACHE_KEY, op_err_str(rc));
}
