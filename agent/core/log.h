/*
 * The process-wide logger: one line per event on stderr (journald collects
 * it) as "LEVEL module: message", or one JSON object per line in JSON mode.
 * Identical repeated lines from one call site are rate-limited: past a burst
 * they are dropped and a "suppressed N" summary follows. Each .c file that
 * logs defines OP_LOG_MODULE before including this header.
 */
#ifndef OP_CORE_LOG_H
#define OP_CORE_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include "agent/core/err.h"

enum op_log_level { OP_LOG_ERROR, OP_LOG_WARN, OP_LOG_INFO, OP_LOG_DEBUG };

/* Receives each formatted line (no trailing newline) instead of stderr. */
typedef void (*op_log_sink_fn)(enum op_log_level lvl, const char *module, const char *line,
                               void *ud);

void op_log_set_level(enum op_log_level lvl);
enum op_log_level op_log_get_level(void);
/* Level for "error", "warn", "info", "debug"; false if unknown. */
bool op_log_level_from_name(const char *name, enum op_log_level *out);
const char *op_log_level_name(enum op_log_level lvl);
void op_log_set_json(bool on);
/* When stderr is the systemd journal's stream (JOURNAL_STREAM names its
 * device and inode), lines start with their syslog priority ("<3>" for
 * error ... "<7>" for debug), so that journalctl -p selects them. Checked
 * once, at the call; true when on. */
bool op_log_detect_journal(void);
/* NULL restores stderr. The sink must be thread-safe. */
void op_log_set_sink(op_log_sink_fn fn, void *ud);

/*
 * Also hands every line logged (after the rate limit, whatever the sink)
 * to fn, outside the logger's lock, on the thread that logs; a line that fn
 * itself logs is not handed to it again. fn must be thread-safe and quick.
 * NULL removes it. For the control plane's outbox.
 */
void op_log_set_tap(op_log_sink_fn fn, void *ud);

/*
 * The execution the calling thread runs now, for the log lines of code that
 * does not know it (jq's `debug`): op_engine_run sets it around a run and
 * puts back what was there (NULL outside a run). The string must outlive
 * the setting.
 */
void op_log_set_exec_id(const char *id);
const char *op_log_exec_id(void);

bool op_log_enabled(enum op_log_level lvl);
void op_log_write(enum op_log_level lvl, const char *module, const char *fmt, ...) OP_PRINTF(3, 4);
/*
 * Like op_log_write without the rate limit. For lines a pipeline asks for
 * (the log step): they share one format, so the identical-message limit
 * would drop one pipeline's lines for another's.
 */
void op_log_write_always(enum op_log_level lvl, const char *module, const char *fmt, ...)
    OP_PRINTF(3, 4);
void op_log_vwrite(enum op_log_level lvl, const char *module, const char *fmt, va_list ap)
    OP_PRINTF(3, 0);
/*
 * Like op_log_write, but the line is not handed to the tap: for what the
 * tap's own path logs about itself (the outbox's publishes refused), which
 * would otherwise go round through the outbox again.
 */
void op_log_write_local(enum op_log_level lvl, const char *module, const char *fmt, ...)
    OP_PRINTF(3, 4);

#ifndef OP_LOG_MODULE
#define OP_LOG_MODULE "outpost"
#endif

#define OP_LOG_(l, ...)                                      \
	do {                                                 \
		if (!op_log_enabled(l))                      \
			break;                               \
		op_log_write(l, OP_LOG_MODULE, __VA_ARGS__); \
	} while (0)
#define OP_LOGE(...)       OP_LOG_(OP_LOG_ERROR, __VA_ARGS__)
#define OP_LOGW(...)       OP_LOG_(OP_LOG_WARN, __VA_ARGS__)
#define OP_LOGI(...)       OP_LOG_(OP_LOG_INFO, __VA_ARGS__)
#define OP_LOGD(...)       OP_LOG_(OP_LOG_DEBUG, __VA_ARGS__)
#define OP_LOGE_LOCAL(...) op_log_write_local(OP_LOG_ERROR, OP_LOG_MODULE, __VA_ARGS__)

#endif
