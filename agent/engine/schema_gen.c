/*
 * Generates the JSON Schema of the pipeline format from the config tables
 * (the pipeline's own and every registered step type's), so the schema
 * shipped in docs/pipeline.schema.json is what the loader enforces.
 */
#include <stdio.h>
#include <string.h>

#include "agent/engine/engine_int.h"
#include "agent/trigger/trigger.h"

static cJSON *table_schema(const struct op_conf_table *t);

static cJSON *field_schema(const struct op_conf_field *f)
{
	cJSON *s = NULL;
	switch (f->type) {
	case OP_CONF_STRING:
	case OP_CONF_EXPR:
		s = cJSON_CreateObject();
		cJSON_AddStringToObject(s, "type", "string");
		break;
	case OP_CONF_INT:
	case OP_CONF_NUMBER:
		s = cJSON_CreateObject();
		cJSON_AddStringToObject(s, "type", f->type == OP_CONF_INT ? "integer" : "number");
		if (f->min || f->max) {
			cJSON_AddNumberToObject(s, "minimum", (double)f->min);
			cJSON_AddNumberToObject(s, "maximum", (double)f->max);
		}
		break;
	case OP_CONF_BOOL:
		s = cJSON_CreateObject();
		cJSON_AddStringToObject(s, "type", "boolean");
		break;
	case OP_CONF_ENUM: {
		s = cJSON_CreateObject();
		cJSON *e = cJSON_AddArrayToObject(s, "enum");
		for (int i = 0; e && f->choices[i]; i++)
			cJSON_AddItemToArray(e, cJSON_CreateString(f->choices[i]));
		break;
	}
	case OP_CONF_TEMPLATE:
	case OP_CONF_JSON:
		s = cJSON_CreateObject();
		break;
	case OP_CONF_STEPS:
		s = cJSON_CreateObject();
		cJSON_AddStringToObject(s, "$ref", "#/$defs/steps");
		break;
	case OP_CONF_LIST:
		s = cJSON_CreateObject();
		cJSON_AddStringToObject(s, "type", "array");
		cJSON_AddItemToObject(s, "items", table_schema(f->sub));
		break;
	case OP_CONF_OBJECT:
		s = table_schema(f->sub);
		break;
	case OP_CONF_STRINGS: {
		s = cJSON_CreateObject();
		cJSON_AddStringToObject(s, "type", "array");
		cJSON *it = cJSON_AddObjectToObject(s, "items");
		if (it)
			cJSON_AddStringToObject(it, "type", "string");
		break;
	}
	}
	if (s == NULL)
		return NULL;
	if (f->help)
		cJSON_AddStringToObject(s, "description", f->help);
	if (f->def)
		cJSON_AddItemToObject(s, "default", cJSON_Parse(f->def));
	return s;
}

static cJSON *table_schema(const struct op_conf_table *t)
{
	cJSON *s = cJSON_CreateObject();
	if (s == NULL)
		return NULL;
	cJSON_AddStringToObject(s, "type", "object");
	cJSON *props = cJSON_AddObjectToObject(s, "properties");
	cJSON *req = cJSON_CreateArray();
	for (size_t i = 0; props && i < t->n; i++) {
		cJSON_AddItemToObject(props, t->fields[i].name, field_schema(&t->fields[i]));
		if (t->fields[i].required)
			cJSON_AddItemToArray(req, cJSON_CreateString(t->fields[i].name));
	}
	if (cJSON_GetArraySize(req) > 0)
		cJSON_AddItemToObject(s, "required", req);
	else
		cJSON_Delete(req);
	cJSON_AddFalseToObject(s, "additionalProperties");
	return s;
}

static bool has_required(const struct op_conf_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		if (t->fields[i].required)
			return true;
	}
	return false;
}

/* Narrows trigger.config to the trigger type's table, one if/then per type. A
 * type other than manual must be named ("type" absent means manual). */
static void trigger_schema(cJSON *root, cJSON *defs)
{
	cJSON *props = cJSON_GetObjectItemCaseSensitive(root, "properties");
	cJSON *trig = cJSON_GetObjectItemCaseSensitive(props, "trigger");
	cJSON *tprops = cJSON_GetObjectItemCaseSensitive(trig, "properties");
	cJSON *cfg = cJSON_GetObjectItemCaseSensitive(tprops, "config");
	cJSON_AddStringToObject(cfg, "type", "object");
	cJSON *all = cJSON_AddArrayToObject(trig, "allOf");
	const struct op_trigger_type *t;
	for (size_t i = 0; (t = op_trigger_type_at(i)) != NULL; i++) {
		char ref[96];
		snprintf(ref, sizeof(ref), "trigger-%s", t->name);
		cJSON *cs;
		if (t->conf) {
			cs = table_schema(t->conf);
		} else {
			cs = cJSON_CreateObject();
			cJSON_AddStringToObject(cs, "type", "object");
			cJSON_AddFalseToObject(cs, "additionalProperties");
		}
		cJSON_AddStringToObject(cs, "description", t->summary);
		cJSON_AddItemToObject(defs, ref, cs);

		cJSON *rule = cJSON_CreateObject();
		cJSON *ifs = cJSON_AddObjectToObject(rule, "if");
		cJSON *ip = cJSON_AddObjectToObject(ifs, "properties");
		cJSON *it = cJSON_AddObjectToObject(ip, "type");
		cJSON_AddStringToObject(it, "const", t->name);
		if (i != OP_TRIGGER_MANUAL) {
			cJSON *r = cJSON_AddArrayToObject(ifs, "required");
			cJSON_AddItemToArray(r, cJSON_CreateString("type"));
		}
		cJSON *then = cJSON_AddObjectToObject(rule, "then");
		cJSON *tp = cJSON_AddObjectToObject(then, "properties");
		cJSON *tc = cJSON_AddObjectToObject(tp, "config");
		char full[128];
		snprintf(full, sizeof(full), "#/$defs/%s", ref);
		cJSON_AddStringToObject(tc, "$ref", full);
		if (t->conf && has_required(t->conf)) {
			cJSON *r = cJSON_AddArrayToObject(then, "required");
			cJSON_AddItemToArray(r, cJSON_CreateString("config"));
		}
		cJSON_AddItemToArray(all, rule);
	}
}

cJSON *op_pipeline_json_schema(void)
{
	cJSON *root = table_schema(&op_pipeline_table);
	if (root == NULL)
		return NULL;
	/* Put the header keys first, for readers of the file. */
	cJSON *hdr = cJSON_CreateObject();
	cJSON_AddStringToObject(hdr, "$schema", "https://json-schema.org/draft/2020-12/schema");
	cJSON_AddStringToObject(hdr, "$id", "urn:outpost:pipeline");
	cJSON_AddStringToObject(hdr, "title", "Outpost pipeline");
	cJSON_AddStringToObject(hdr, "description",
	                        "Generated by `outpostctl schema` from the config tables; "
	                        "docs/pipeline.md explains it.");
	while (root->child) {
		cJSON *c = cJSON_DetachItemViaPointer(root, root->child);
		cJSON_AddItemToArray(hdr, c);
	}
	cJSON_Delete(root);
	root = hdr;

	cJSON *defs = cJSON_AddObjectToObject(root, "$defs");
	trigger_schema(root, defs);
	cJSON *steps = cJSON_AddObjectToObject(defs, "steps");
	cJSON_AddStringToObject(steps, "type", "array");
	cJSON *items = cJSON_AddObjectToObject(steps, "items");
	cJSON_AddStringToObject(items, "$ref", "#/$defs/step");

	/* The step object from its table, with the type narrowed to the registry's. */
	cJSON *step = table_schema(&op_engine__step_table);
	cJSON_AddItemToObject(defs, "step", step);
	cJSON *props = cJSON_GetObjectItemCaseSensitive(step, "properties");
	cJSON *type = cJSON_CreateObject();
	cJSON_ReplaceItemInObjectCaseSensitive(props, "type", type);
	cJSON *types = cJSON_AddArrayToObject(type, "enum");
	cJSON_AddStringToObject(type, "description", "the step type (outpostctl steps lists them)");
	cJSON *cfg = cJSON_GetObjectItemCaseSensitive(props, "config");
	cJSON_AddStringToObject(cfg, "type", "object");
	cJSON *all = cJSON_AddArrayToObject(step, "allOf");

	const struct op_step_type *t;
	for (size_t i = 0; (t = op_step_type_at(i)) != NULL; i++) {
		cJSON_AddItemToArray(types, cJSON_CreateString(t->name));
		char ref[96];
		snprintf(ref, sizeof(ref), "config-%s", t->name);
		cJSON *cs = table_schema(t->conf);
		cJSON_AddStringToObject(cs, "description", t->summary);
		cJSON_AddItemToObject(defs, ref, cs);

		cJSON *rule = cJSON_CreateObject();
		cJSON *ifs = cJSON_AddObjectToObject(rule, "if");
		cJSON *ip = cJSON_AddObjectToObject(ifs, "properties");
		cJSON *it = cJSON_AddObjectToObject(ip, "type");
		cJSON_AddStringToObject(it, "const", t->name);
		cJSON *then = cJSON_AddObjectToObject(rule, "then");
		cJSON *tp = cJSON_AddObjectToObject(then, "properties");
		cJSON *tc = cJSON_AddObjectToObject(tp, "config");
		char full[128];
		snprintf(full, sizeof(full), "#/$defs/%s", ref);
		cJSON_AddStringToObject(tc, "$ref", full);
		if (has_required(t->conf)) {
			cJSON *r = cJSON_AddArrayToObject(then, "required");
			cJSON_AddItemToArray(r, cJSON_CreateString("config"));
		}
		cJSON_AddItemToArray(all, rule);
	}
	return root;
}
