/* The rest step type: call an HTTP API through connectors/httpc. */
#ifndef OP_CONNECTORS_REST_STEP_H
#define OP_CONNECTORS_REST_STEP_H

#include "agent/engine/step.h"

extern const struct op_step_type op_step_rest;

#endif
