/* The file step type: local files in allowed folders (connectors/file). */
#ifndef OP_CONNECTORS_FILE_STEP_H
#define OP_CONNECTORS_FILE_STEP_H

#include "agent/engine/step.h"

extern const struct op_step_type op_step_file;

#endif
