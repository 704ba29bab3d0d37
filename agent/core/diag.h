/*
 * Load-time diagnostics: a list of problems, each naming the JSON path where
 * it was found (`steps[2].config.when[0].if`) and what was expected. Loaders
 * keep going after a problem so that one pass reports all of them; a load with
 * any problem is refused whole. The current path is a stack the loader pushes
 * and pops as it descends.
 */
#ifndef OP_CORE_DIAG_H
#define OP_CORE_DIAG_H

#include <stddef.h>

#include "agent/core/err.h"

#define OP_DIAG_PATH_MAX 512

struct op_problem {
	char *path; /* "" for the document root */
	char *msg;
};

struct op_diag {
	struct op_problem *v;
	size_t n, cap;
	size_t max;  /* problems kept; later ones are counted only */
	size_t lost; /* problems past max */
	int nomem;   /* an allocation failed while recording */
	char path[OP_DIAG_PATH_MAX];
	size_t plen;
};

void op_diag_init(struct op_diag *d);
void op_diag_fini(struct op_diag *d);

/* Records a problem at the current path plus suffix (may be NULL or ""). */
void op_diag_add(struct op_diag *d, const char *suffix, const char *fmt, ...) OP_PRINTF(3, 4);
/* Records a problem at an explicit absolute path. */
void op_diag_add_at(struct op_diag *d, const char *path, const char *fmt, ...) OP_PRINTF(3, 4);

/* Path stack. push returns the previous length to give back to pop. */
size_t op_diag_push_key(struct op_diag *d, const char *key);
size_t op_diag_push_index(struct op_diag *d, size_t i);
void op_diag_pop(struct op_diag *d, size_t mark);
/* The current path; borrowed until the next push/pop. */
const char *op_diag_path(const struct op_diag *d);

/* Total problems seen, including those past max. */
size_t op_diag_count(const struct op_diag *d);

#endif
