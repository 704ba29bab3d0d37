/* The validate step type: check the message against a JSON Schema. */
#ifndef OP_CONNECTORS_VALIDATE_STEP_H
#define OP_CONNECTORS_VALIDATE_STEP_H

#include "agent/engine/step.h"

extern const struct op_step_type op_step_validate;

#endif
