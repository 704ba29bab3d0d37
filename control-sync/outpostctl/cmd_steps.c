/*
 * `outpostctl steps [TYPE]` and `outpostctl schema`: what the step types are
 * and which config keys they take, read straight from their tables.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"
#include "agent/engine/pipeline.h"
#include "control-sync/outpostctl/ctl.h"

static void print_fields(const struct op_conf_table *t, const char *prefix)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct op_conf_field *f = &t->fields[i];
		char name[128];
		snprintf(name, sizeof(name), "%s%s", prefix, f->name);
		char type[160];
		if (f->type == OP_CONF_ENUM) {
			size_t n = (size_t)snprintf(type, sizeof(type), "one of");
			for (int k = 0; f->choices[k] && n < sizeof(type); k++)
				n += (size_t)snprintf(type + n, sizeof(type) - n, "%s%s",
				                      k ? "|" : " ", f->choices[k]);
		} else if ((f->type == OP_CONF_INT || f->type == OP_CONF_NUMBER) &&
		           (f->min || f->max)) {
			snprintf(type, sizeof(type), "%s %lld..%lld",
			         f->type == OP_CONF_INT ? "integer" : "number", f->min, f->max);
		} else {
			snprintf(type, sizeof(type), "%s", op_conf_type_name(f->type));
		}
		printf("  %-22s %-30s %-9s %s\n", name, type,
		       f->required ? "required"
		       : f->def    ? ""
		                   : "optional",
		       f->help ? f->help : "");
		if (f->def && !f->required)
			printf("  %-22s %-30s %-9s default: %s\n", "", "", "", f->def);
		if (f->type == OP_CONF_LIST || f->type == OP_CONF_OBJECT) {
			char sub[160];
			snprintf(sub, sizeof(sub), "%s%s", name,
			         f->type == OP_CONF_LIST ? "[]." : ".");
			print_fields(f->sub, sub);
		}
	}
}

/* True when one of the n arguments is --help or -h. */
static bool wants_help(int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	}
	return false;
}

int op_ctl_steps(int argc, char **argv)
{
	static const char usage[] = "usage: outpostctl steps [TYPE]\n"
	                            "Lists the step types, or the config keys of step type TYPE.\n";
	const struct op_step_type *t;
	if (argc == 0) {
		for (size_t i = 0; (t = op_step_type_at(i)) != NULL; i++)
			printf("%-14s %s\n", t->name, t->summary);
		return CTL_OK;
	}
	if (wants_help(argc, argv)) {
		fputs(usage, stdout);
		return CTL_OK;
	}
	if (argc > 1 || argv[0][0] == '-') {
		fputs(usage, stderr);
		return CTL_INVALID;
	}
	char why[512];
	t = op_step_type_find(argv[0], why, sizeof(why));
	if (t == NULL) {
		fprintf(stderr, "outpostctl: %s\n", why);
		return CTL_INVALID;
	}
	printf("%s: %s\n\nconfig keys:\n", t->name, t->summary);
	print_fields(t->conf, "");
	return CTL_OK;
}

int op_ctl_schema(int argc, char **argv)
{
	static const char usage[] = "usage: outpostctl schema\n"
	                            "Prints the JSON Schema of pipeline files.\n";
	if (wants_help(argc, argv)) {
		fputs(usage, stdout);
		return CTL_OK;
	}
	if (argc != 0) {
		fputs(usage, stderr);
		return CTL_INVALID;
	}
	cJSON *s = op_pipeline_json_schema();
	char *text = s ? op_json_print(s, OP_JSON_PRETTY) : NULL;
	cJSON_Delete(s);
	if (text == NULL) {
		fputs("outpostctl: out of memory\n", stderr);
		return CTL_FAILED;
	}
	printf("%s\n", text);
	op_free(text);
	return CTL_OK;
}
