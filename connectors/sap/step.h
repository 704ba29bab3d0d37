/* The sap step type: SAP OData V2 and V4 services through connectors/httpc. */
#ifndef OP_CONNECTORS_SAP_STEP_H
#define OP_CONNECTORS_SAP_STEP_H

#include "agent/engine/step.h"

extern const struct op_step_type op_step_sap;

#endif
