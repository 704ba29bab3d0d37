/* The transform step type: reshape the message with a jq program. */
#ifndef OP_CONNECTORS_TRANSFORM_STEP_H
#define OP_CONNECTORS_TRANSFORM_STEP_H

#include "agent/engine/step.h"

extern const struct op_step_type op_step_transform;

#endif
