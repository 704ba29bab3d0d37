/*
 * The step type registry: every step type Outpost knows, in one static
 * table, in the order `outpostctl steps` lists them.
 *
 * Built as-is (libop.a: outpostctl, the tests), every connector is linked in
 * and the table points at each type. Built with OP_PLUGINS (outpostd only),
 * the connectors that bring large libraries with them (db: libpq and
 * unixODBC; sftp: libssh2; rest and sap: libcurl, each with Kerberos, LDAP
 * and more behind it) are shared objects in the plugin folder, loaded the
 * first time a pipeline names one of their types. An agent whose pipelines
 * use none of them never maps those libraries, about 1.7 MiB of pages (an
 * idle agent needs about 10). The plugins resolve the agent's own op_
 * functions from the executable (linked with them exported); a plugin is
 * never unloaded.
 *
 * The plugin folder is OP_PLUGIN_DIR when the build names one (packages:
 * /usr/lib/outpost), else the folder "plugins" beside the executable (the
 * build tree: build/<variant>/plugins).
 */
#include <stdio.h>
#include <string.h>

#include "agent/engine/engine_int.h"
#include "connectors/file/step.h"
#include "connectors/mqtt/step.h"
#include "connectors/transform/step.h"
#include "connectors/validate/step.h"

#ifdef OP_PLUGINS
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <unistd.h>

#define OP_LOG_MODULE "plugins"
#include "agent/core/log.h"
#include "agent/core/version.h"
#else
#include "connectors/db/step.h"
#include "connectors/rest/step.h"
#include "connectors/sap/step.h"
#include "connectors/sftp/step.h"
#endif

struct entry {
	const char *name;
	/* The type; in a plugin build NULL until its plugin is loaded. */
	const struct op_step_type *type;
	/* The plugin the type is in (without ".so"); NULL: always linked in. */
	const char *plugin;
};

#ifdef OP_PLUGINS
#define CONNECTOR(n, sym, file)           \
	{                                 \
		.name = n, .plugin = file \
	}
#else
#define CONNECTOR(n, sym, file)                         \
	{                                               \
		.name = n, .type = &sym, .plugin = file \
	}
#endif

static struct entry entries[] = {
    /* logic */
    {.name = "set", .type = &op_step_set},
    {.name = "choice", .type = &op_step_choice},
    {.name = "for-each", .type = &op_step_for_each},
    {.name = "do-while", .type = &op_step_do_while},
    {.name = "parallel", .type = &op_step_parallel},
    {.name = "retry", .type = &op_step_retry},
    {.name = "block", .type = &op_step_block},
    {.name = "call", .type = &op_step_call},
    {.name = "log", .type = &op_step_log},
    {.name = "throw-error", .type = &op_step_throw_error},
    {.name = "event-publish", .type = &op_step_event_publish},
    /* data */
    {.name = "transform", .type = &op_step_transform},
    {.name = "validate", .type = &op_step_validate},
    /* connectors */
    CONNECTOR("rest", op_step_rest, "http"),
    CONNECTOR("sap", op_step_sap, "http"),
    CONNECTOR("sftp", op_step_sftp, "sftp"),
    CONNECTOR("db", op_step_db, "db"),
    {.name = "file", .type = &op_step_file},
    {.name = "mqtt-publish", .type = &op_step_mqtt_publish},
};

#define N_TYPES (sizeof(entries) / sizeof(entries[0]))

#ifdef OP_PLUGINS
static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;

/* The plugin folder into dir; false when the executable cannot be found. */
static bool plugin_dir(char *dir, size_t len)
{
#ifdef OP_PLUGIN_DIR
	return (size_t)snprintf(dir, len, "%s", OP_PLUGIN_DIR) < len;
#else
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return false;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash == NULL)
		return false;
	*slash = '\0';
	return (size_t)snprintf(dir, len, "%s/plugins", exe) < len;
#endif
}

/*
 * Loads e's plugin, checks that it is of this build's version, and finds
 * e's type in it (op_step_NAME, with '-' as '_'). Called with load_mu held.
 * A failure is not remembered: the next pipeline that names the type tries
 * again (after the admin installed what was missing, a reload is enough).
 */
static const struct op_step_type *load(struct entry *e, char *why, size_t whylen)
{
	char dir[PATH_MAX], path[PATH_MAX + 32], sym[64];
	if (!plugin_dir(dir, sizeof(dir))) {
		snprintf(why, whylen, "step type \"%s\": the plugin folder is not known", e->name);
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/%s.so", dir, e->plugin);
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		/* dlerror() names the file. */
		snprintf(why, whylen, "step type \"%s\": its plugin did not load: %s", e->name,
		         dlerror());
		return NULL;
	}
	const char *v = dlsym(h, "op_plugin_version");
	if (v == NULL || strcmp(v, OUTPOST_VERSION) != 0) {
		snprintf(why, whylen,
		         "step type \"%s\": the plugin %s is of version %.32s, this outpostd of %s "
		         "(an upgrade not finished: restart outpostd)",
		         e->name, path, v ? v : "(none)", OUTPOST_VERSION);
		dlclose(h);
		return NULL;
	}
	snprintf(sym, sizeof(sym), "op_step_%s", e->name);
	for (char *c = sym; *c; c++)
		*c = *c == '-' ? '_' : *c;
	const struct op_step_type *t = dlsym(h, sym);
	if (t == NULL || strcmp(t->name, e->name) != 0) {
		snprintf(why, whylen, "step type \"%s\": the plugin %s has no %s", e->name, path,
		         sym);
		return NULL; /* h stays open: the plugin's other types may use it */
	}
	OP_LOGI("step type %s loaded from %s", e->name, path);
	e->type = t;
	return t;
}

/* e's type, loading its plugin first when needed; NULL with why. */
static const struct op_step_type *type_of(struct entry *e, char *why, size_t whylen)
{
	pthread_mutex_lock(&load_mu);
	const struct op_step_type *t = e->type ? e->type : load(e, why, whylen);
	pthread_mutex_unlock(&load_mu);
	return t;
}
#else
static const struct op_step_type *type_of(struct entry *e, char *why, size_t whylen)
{
	(void)why;
	(void)whylen;
	return e->type;
}
#endif

const struct op_step_type *op_step_type_find(const char *name, char *why, size_t whylen)
{
	for (size_t i = 0; i < N_TYPES; i++) {
		if (strcmp(entries[i].name, name) == 0)
			return type_of(&entries[i], why, whylen);
	}
	snprintf(why, whylen, "unknown step type \"%.64s\" (outpostctl steps lists the types)",
	         name);
	return NULL;
}

const struct op_step_type *op_step_type_at(size_t i)
{
	char why[8];
	for (size_t k = 0; k < N_TYPES; k++) {
		const struct op_step_type *t = type_of(&entries[k], why, sizeof(why));
		if (t && i-- == 0)
			return t;
	}
	return NULL;
}
