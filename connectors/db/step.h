/* The db step type: SQL with bound parameters (connectors/db). */
#ifndef OP_CONNECTORS_DB_STEP_H
#define OP_CONNECTORS_DB_STEP_H

#include "agent/engine/step.h"

extern const struct op_step_type op_step_db;

#endif
