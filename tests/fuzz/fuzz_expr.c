/*
 * libFuzzer target for the expression language: any bytes are compiled as a
 * template string and, when they compile, evaluated (as a value and as a
 * condition) against a fixed environment. Bytes that parse as a JSON object
 * or array are also compiled and rendered as a JSON template. Nothing may
 * crash, hang, leak, or return a value together with an error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/diag.h"
#include "agent/expr/expr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char env_text[] =
    "{\"order\":{\"id\":\"A-1\",\"customer\":{\"id\":42,\"name\":\"Ana\"},"
    "\"items\":[{\"sku\":\"S1\",\"qty\":2,\"price\":1.5},{\"sku\":\"S2\",\"qty\":1,"
    "\"price\":10}],\"tags\":[\"x\",\"y\"]},\"n\":42,\"f\":2.5,\"s\":\"  Hello World  \","
    "\"u\":\"\xc3\xa7\x61\x66\xc3\xa9\",\"nil\":null,\"t\":true,\"nums\":[3,-1,7,null],"
    "\"json\":\"{\\\"a\\\":[1,2]}\",\"deep\":{\"a\":{\"b\":{\"c\":[1,[2,[3]]]}}}}";

static struct op_expr_env env;

static void check_val(op_err rc, struct op_val *v)
{
	if (rc != OP_OK && (v->v != NULL || v->owned))
		abort();
	if (rc == OP_OK && v->v == NULL)
		abort();
	cJSON *c = op_val_take(v);
	cJSON_Delete(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (env.message == NULL) {
		op_alloc_init();
		env.message = cJSON_Parse(env_text);
		env.globals = cJSON_Parse("{\"region\":\"eu-1\",\"rates\":{\"DE\":0.19}}");
		env.metadata = cJSON_Parse("{\"pipeline\":{\"name\":\"p\"},\"attempt\":1}");
	}
	if (size > 8192)
		return 0;
	char *src = malloc(size + 1);
	if (src == NULL)
		return 0;
	memcpy(src, data, size);
	src[size] = '\0';

	struct op_expr *e = NULL;
	char err[256];
	if (op_expr_compile(src, &e, err, sizeof(err)) == OP_OK) {
		struct op_val v = {0};
		op_err rc = op_expr_eval(e, &env, &v, err, sizeof(err));
		check_val(rc, &v);
		bool b;
		(void)op_expr_eval_bool(e, &env, &b, err, sizeof(err));
		op_expr_free(e);
	} else if (e != NULL) {
		abort();
	}

	if (size && (src[0] == '{' || src[0] == '[')) {
		cJSON *j = cJSON_ParseWithLength(src, size);
		if (j) {
			struct op_diag d;
			struct op_tmpl *t = NULL;
			op_diag_init(&d);
			if (op_tmpl_compile(j, &d, &t) == OP_OK) {
				cJSON *out = NULL;
				if (op_tmpl_render(t, &env, &out, err, sizeof(err)) != OP_OK && out)
					abort();
				cJSON_Delete(out);
				op_tmpl_free(t);
			} else if (t != NULL) {
				abort();
			}
			op_diag_fini(&d);
			cJSON_Delete(j);
		}
	}
	free(src);
	return 0;
}
