/*
 * libFuzzer target for the JSON Schema validator. Input: one flag byte
 * (bits 0-1: draft auto / 7 / 2020-12; bit 2: format assertion; bit 3: a
 * low max_depth), then schema text, optionally followed by a NUL byte and an
 * instance text. A schema that compiles validates that instance, the schema
 * itself and a few fixed values, with and without an error sink. Nothing
 * may crash, hang, leak, or answer differently with the sink on.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "connectors/validate/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fixed[] = {
    "null",
    "0",
    "-1.5",
    "\"\"",
    "\"2024-01-01T00:00:00Z\"",
    "[]",
    "{}",
    "[1, \"a\", [null], {\"a\": {\"b\": [true, false]}}]",
    "{\"a\": 1, \"b\": \"x\", \"c\": [1, 1], \"foo\": {\"bar\": null}}",
};

static void check(const struct op_schema *s, const cJSON *inst)
{
	bool v1 = false, v2 = false;
	struct op_buf errs;
	op_buf_init(&errs, 1 << 16);
	op_err e1 = op_schema_validate(s, inst, &v1, NULL, 0);
	op_err e2 = op_schema_validate(s, inst, &v2, &errs, 20);
	/* Same verdict with or without an error sink (unless either hit a
	 * limit, where the two walks may stop at different places). */
	if (e1 == OP_OK && e2 == OP_OK && (v1 != v2 || v1 != (errs.len == 0)))
		abort();
	if ((e1 != OP_OK && e1 != OP_ELIMIT) || (e2 != OP_OK && e2 != OP_ELIMIT))
		abort(); /* no OOM here, and nothing else is allowed */
	op_buf_fini(&errs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	if (!init) {
		op_alloc_init();
		init = 1;
	}
	if (size < 1 || size > 1 << 16)
		return 0;
	static const int drafts[] = {OP_SCHEMA_AUTO, OP_SCHEMA_DRAFT7, OP_SCHEMA_2020,
	                             OP_SCHEMA_AUTO};
	struct op_schema_opts o = {.draft = drafts[data[0] & 3],
	                           .format_assert = (data[0] & 4) != 0,
	                           .max_depth = (data[0] & 8) ? 16 : 0};
	char *text = op_malloc(size);
	if (text == NULL)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	/* The instance, if any, follows the schema's NUL. */
	size_t slen = strlen(text);
	const char *itext = slen + 1 < size - 1 ? text + slen + 1 : NULL;

	cJSON *schema = cJSON_Parse(text);
	if (schema == NULL)
		goto out;
	struct op_schema *s = NULL;
	char err[256];
	op_err e = op_schema_compile_opts(schema, &o, &s, err, sizeof(err));
	if (e != OP_OK) {
		if (s != NULL || e == OP_OK || err[0] == '\0')
			abort(); /* every failure explains itself */
		cJSON_Delete(schema);
		goto out;
	}
	check(s, schema);
	if (itext != NULL) {
		cJSON *inst = cJSON_Parse(itext);
		if (inst != NULL)
			check(s, inst);
		cJSON_Delete(inst);
	}
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		cJSON *inst = cJSON_Parse(fixed[i]);
		if (inst != NULL)
			check(s, inst);
		cJSON_Delete(inst);
	}
	op_schema_free(s);
	cJSON_Delete(schema);
out:
	op_free(text);
	return 0;
}
