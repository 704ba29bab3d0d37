/*
 * The logger. State is process-wide (one of the two allowed singletons) and
 * guarded by one mutex; formatting happens outside it. Rate limiting keys on
 * module and format string: more than RL_BURST identical lines within
 * RL_WINDOW seconds are suppressed, and the next line after the window says
 * how many were dropped.
 */
#include "agent/core/log.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "agent/core/alloc.h"
#include "agent/core/json.h"

#define RL_SLOTS  64
#define RL_BURST  10
#define RL_WINDOW 10

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static atomic_int cur_level = OP_LOG_INFO;
static atomic_bool json_mode;
static atomic_bool journal; /* stderr is the journal: priority prefixes */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static op_log_sink_fn sink;
static void *sink_ud;
static op_log_sink_fn tap;
static void *tap_ud;
static _Thread_local bool in_tap;         /* a tap that logs does not tap again */
static _Thread_local const char *exec_id; /* op_log_set_exec_id */

static struct rl_slot {
	const char *module;
	const char *fmt;
	time_t window;
	unsigned count;
	unsigned suppressed;
} rl[RL_SLOTS];

void op_log_set_level(enum op_log_level lvl)
{
	atomic_store(&cur_level, (int)lvl);
}

enum op_log_level op_log_get_level(void)
{
	return (enum op_log_level)atomic_load(&cur_level);
}

bool op_log_level_from_name(const char *name, enum op_log_level *out)
{
	for (int i = 0; i <= OP_LOG_DEBUG; i++) {
		if (strcmp(level_names[i], name) == 0) {
			*out = (enum op_log_level)i;
			return true;
		}
	}
	return false;
}

const char *op_log_level_name(enum op_log_level lvl)
{
	return (unsigned)lvl <= OP_LOG_DEBUG ? level_names[lvl] : "?";
}

void op_log_set_json(bool on)
{
	atomic_store(&json_mode, on);
}

void op_log_set_sink(op_log_sink_fn fn, void *ud)
{
	pthread_mutex_lock(&log_lock);
	sink = fn;
	sink_ud = ud;
	pthread_mutex_unlock(&log_lock);
}

void op_log_set_tap(op_log_sink_fn fn, void *ud)
{
	pthread_mutex_lock(&log_lock);
	tap = fn;
	tap_ud = ud;
	pthread_mutex_unlock(&log_lock);
}

/* Hands line to the tap, outside log_lock (the tap may take locks that
 * logging code holds). The tap and its ud are read under the lock: a tap
 * cleared while a line is on its way may still get that line. */
static void tap_line(enum op_log_level lvl, const char *module, const char *line)
{
	pthread_mutex_lock(&log_lock);
	op_log_sink_fn fn = tap;
	void *ud = tap_ud;
	pthread_mutex_unlock(&log_lock);
	if (fn == NULL || in_tap)
		return;
	in_tap = true;
	fn(lvl, module, line, ud);
	in_tap = false;
}

bool op_log_enabled(enum op_log_level lvl)
{
	return (int)lvl <= atomic_load_explicit(&cur_level, memory_order_relaxed);
}

/* Returns false to drop the line; *dropped gets the count to report now. */
static bool rate_ok(const char *module, const char *fmt, unsigned *dropped)
{
	size_t h = ((size_t)(uintptr_t)fmt >> 3) % RL_SLOTS;
	struct rl_slot *s = &rl[h];
	time_t now = time(NULL);
	*dropped = 0;
	if (s->fmt != fmt || s->module != module || now - s->window >= RL_WINDOW) {
		if (s->fmt == fmt && s->module == module)
			*dropped = s->suppressed;
		s->module = module;
		s->fmt = fmt;
		s->window = now;
		s->count = 0;
		s->suppressed = 0;
	}
	if (++s->count > RL_BURST) {
		s->suppressed++;
		return false;
	}
	return true;
}

bool op_log_detect_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	char *end = NULL;
	unsigned long long dev = 0, ino = 0;
	if (js && *js) {
		dev = strtoull(js, &end, 10);
		if (*end == ':' && end[1])
			ino = strtoull(end + 1, &end, 10);
		else
			end = NULL;
	}
	struct stat st;
	bool on = end && *end == '\0' && fstat(2, &st) == 0 &&
	          (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
	atomic_store(&journal, on);
	return on;
}

/* "<3>" .. "<7>": sd-daemon's SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG. */
static const char *prio(enum op_log_level lvl)
{
	static const char *const p[] = {"<3>", "<4>", "<6>", "<7>"};
	return atomic_load(&journal) ? p[lvl] : "";
}

static void emit(enum op_log_level lvl, const char *module, const char *msg)
{
	if (sink) {
		sink(lvl, module, msg, sink_ud);
		return;
	}
	if (atomic_load(&json_mode)) {
		cJSON *o = cJSON_CreateObject();
		char *s = NULL;
		if (o && cJSON_AddStringToObject(o, "level", level_names[lvl]) &&
		    cJSON_AddStringToObject(o, "module", module) &&
		    cJSON_AddStringToObject(o, "msg", msg))
			s = op_json_print(o, OP_JSON_COMPACT);
		cJSON_Delete(o);
		if (s) {
			fprintf(stderr, "%s%s\n", prio(lvl), s);
			op_free(s);
			return;
		}
	}
	fprintf(stderr, "%s%-5s %s: %s\n", prio(lvl), level_names[lvl], module, msg);
}

void op_log_vwrite(enum op_log_level lvl, const char *module, const char *fmt, va_list ap)
{
	char line[2048];
	if ((unsigned)lvl > OP_LOG_DEBUG)
		lvl = OP_LOG_ERROR;
	vsnprintf(line, sizeof(line), fmt, ap);
	pthread_mutex_lock(&log_lock);
	unsigned dropped;
	bool ok = rate_ok(module, fmt, &dropped);
	char note[96] = "";
	if (ok) {
		if (dropped) {
			snprintf(note, sizeof(note), "suppressed %u identical messages", dropped);
			emit(lvl, module, note);
		}
		emit(lvl, module, line);
	}
	pthread_mutex_unlock(&log_lock);
	if (note[0])
		tap_line(lvl, module, note);
	if (ok)
		tap_line(lvl, module, line);
}

void op_log_write_always(enum op_log_level lvl, const char *module, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if ((unsigned)lvl > OP_LOG_DEBUG)
		lvl = OP_LOG_ERROR;
	pthread_mutex_lock(&log_lock);
	emit(lvl, module, line);
	pthread_mutex_unlock(&log_lock);
	tap_line(lvl, module, line);
}

void op_log_write_local(enum op_log_level lvl, const char *module, const char *fmt, ...)
{
	bool was = in_tap;
	in_tap = true;
	va_list ap;
	va_start(ap, fmt);
	op_log_vwrite(lvl, module, fmt, ap);
	va_end(ap);
	in_tap = was;
}

void op_log_write(enum op_log_level lvl, const char *module, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	op_log_vwrite(lvl, module, fmt, ap);
	va_end(ap);
}

void op_log_set_exec_id(const char *id)
{
	exec_id = id;
}

const char *op_log_exec_id(void)
{
	return exec_id;
}
