/*
 * The step type registry: every step type Outpost knows, in one static
 * table. Adding a connector means adding its op_step_type here; there is no
 * dynamic loading.
 */
#include <string.h>

#include "agent/engine/engine_int.h"
#include "connectors/db/step.h"
#include "connectors/file/step.h"
#include "connectors/mqtt/step.h"
#include "connectors/rest/step.h"
#include "connectors/sap/step.h"
#include "connectors/sftp/step.h"
#include "connectors/transform/step.h"
#include "connectors/validate/step.h"

static const struct op_step_type *const step_types[] = {
    /* logic */
    &op_step_set,
    &op_step_choice,
    &op_step_for_each,
    &op_step_do_while,
    &op_step_parallel,
    &op_step_retry,
    &op_step_block,
    &op_step_call,
    &op_step_log,
    &op_step_throw_error,
    &op_step_event_publish,
    /* data */
    &op_step_transform,
    &op_step_validate,
    /* connectors */
    &op_step_rest,
    &op_step_sap,
    &op_step_sftp,
    &op_step_db,
    &op_step_file,
    &op_step_mqtt_publish,
};

#define N_TYPES (sizeof(step_types) / sizeof(step_types[0]))

const struct op_step_type *op_step_type_find(const char *name)
{
	for (size_t i = 0; i < N_TYPES; i++) {
		if (strcmp(step_types[i]->name, name) == 0)
			return step_types[i];
	}
	return NULL;
}

const struct op_step_type *op_step_type_at(size_t i)
{
	return i < N_TYPES ? step_types[i] : NULL;
}
