/* The sftp step type: files on SFTP servers through connectors/sftp. */
#ifndef OP_CONNECTORS_SFTP_STEP_H
#define OP_CONNECTORS_SFTP_STEP_H

#include "agent/engine/step.h"

extern const struct op_step_type op_step_sftp;

#endif
