/* The agent's version, in outpostd --version, its logs and what it reports
 * to the control plane; a build may set it (-DOUTPOST_VERSION=...). */
#ifndef OP_CORE_VERSION_H
#define OP_CORE_VERSION_H

#ifndef OUTPOST_VERSION
#define OUTPOST_VERSION "0.1.0"
#endif

#endif
