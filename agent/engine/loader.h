/*
 * Loading pipelines from files and folders into an engine: what both
 * `outpostctl run/check` and the daemon's pipelines_dir do. A folder is
 * every visible *.json file in it, in name order. Problems go to a report
 * callback with the file they belong to, so callers print or log them as
 * they like; nothing invalid is added to the engine.
 */
#ifndef OP_ENGINE_LOADER_H
#define OP_ENGINE_LOADER_H

#include <stddef.h>

#include "agent/core/diag.h"
#include "agent/engine/engine.h"

/* Called once per file (or folder, for read errors) that has problems. */
typedef void (*op_load_report_fn)(void *ud, const char *file, const struct op_diag *d);

/*
 * Loads one pipeline file and adds it to e. Returns OP_OK, OP_ECONFIG (the
 * file is invalid, or its name is taken: reported), OP_ENOMEM. A file that
 * cannot be read is reported and returns its errno class.
 */
op_err op_engine_load_file(struct op_engine *e, const char *path, op_load_report_fn report,
                           void *ud) OP_WUR;

/*
 * Loads every pipeline of dir except the nskip files in skip (paths naming
 * the same files are skipped, e.g. one already loaded by name). Counts the
 * files with problems in *bad (may be NULL). Returns OP_OK when every file
 * loaded, OP_ECONFIG when some did not, or the class of a folder error.
 */
op_err op_engine_load_dir(struct op_engine *e, const char *dir, char *const *skip, size_t nskip,
                          op_load_report_fn report, void *ud, size_t *bad) OP_WUR;

#endif
